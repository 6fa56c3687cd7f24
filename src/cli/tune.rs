//! `lt lr-find script.rhai`: the learning-rate finder on a module script.
use crate::script::lightning::ScriptModule;
use crate::trainer::config::TrainerConfig;
use crate::tuner::lr_find::{lr_find, LrFindConfig, RampMode};
use std::path::{Path, PathBuf};

/// Options of `lt lr-find`.
#[derive(clap::Args, Debug, Clone)]
pub struct LrFindArgs {
    /// The module script.
    pub script: PathBuf,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    #[arg(long = "min-lr", default_value_t = 1e-8)]
    pub min_lr: f64,
    #[arg(long = "max-lr", default_value_t = 1.0)]
    pub max_lr: f64,
    /// Optimizer steps to ramp over.
    #[arg(long = "num-training", default_value_t = 100)]
    pub num_training: usize,
    /// `exponential` or `linear`.
    #[arg(long, default_value = "exponential")]
    pub mode: String,
    /// Stop when the smoothed loss exceeds this × its best; 0 disables.
    #[arg(long = "early-stop-threshold", default_value_t = 4.0)]
    pub early_stop_threshold: f64,
    /// The plot (default: lr_find.png in the trainer's default_root_dir).
    #[arg(short = 'o', long = "out")]
    pub out: Option<PathBuf>,
}

/// Runs the finder, prints the suggestion and writes the plot.
pub fn lr_find_cmd(a: &LrFindArgs) -> Result<(), String> {
    let cfg = LrFindConfig {
        min_lr: a.min_lr,
        max_lr: a.max_lr,
        num_training: a.num_training,
        mode: RampMode::parse(&a.mode)?,
        early_stop_threshold: if a.early_stop_threshold > 0.0 { Some(a.early_stop_threshold) } else { None },
    };
    let script = super::train::load(&a.script)?;
    let mut sets = super::config::Settings::gather(&[], &a.sets)?;
    sets.resolve(&script)?;
    let (mut module, opts) = ScriptModule::load_with_data(script, &sets.model, &sets.data, &sets.trainer)?;
    if !module.has_fn("configure_optimizers") {
        return Err(format!(
            "{}: lt lr-find needs `fn configure_optimizers` (the finder ramps its optimizer's learning rate)",
            a.script.display()
        ));
    }
    let config = TrainerConfig::from_map(&opts)?;
    // built-in callbacks do not run during the search (Lightning's finder replaces them)
    let mut trainer =
        super::train::build_trainer(&mut module, config, super::train::Purpose::LrFind, &Default::default(), None)?;
    let res = lr_find(&mut trainer, &mut module, &cfg)?;
    let out = a.out.clone().unwrap_or_else(|| trainer.config.default_root_dir.join("lr_find.png"));
    let (png, _) = crate::plot::render_png(&[crate::tuner::lr_find::plot(&res)])?;
    crate::trainer::logger::write_atomic(Path::new(&out), &png)?;
    if res.stopped_early {
        outln!("LR finder stopped early after {} steps due to diverging loss.", res.losses.len());
    }
    match res.suggestion() {
        Some(lr) => outln!("Suggested learning rate: {lr:e}"),
        None => outln!("No suggestion: too few finite losses were recorded ({} steps); try a larger --num-training or a smaller --max-lr", res.losses.len()),
    }
    outln!("Plot: {}", out.display());
    Ok(())
}
