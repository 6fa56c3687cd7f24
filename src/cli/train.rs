//! `lt fit | validate | test | predict | run` on a module script.
use crate::script::lightning::{trainer_options, ScriptModule};
use crate::script::runner::Script;
use crate::trainer::config::TrainerConfig;
use crate::trainer::Trainer;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Fit,
    Validate,
    Test,
    Predict,
    /// fit, then test when the script has a test step and test data
    Run,
}

/// Whether a compiled script is a LightningModule script (it defines training/eval steps).
pub fn is_module_script(script: &Script) -> bool {
    script
        .ast
        .iter_functions()
        .any(|f| ["training_step", "validation_step", "test_step", "predict_step"].contains(&f.name))
}

/// How many folders deep `--ckpt last|best` looks under the root dir
/// (`lightning_logs/version_N/checkpoints` is 3).
pub const MAX_CKPT_SEARCH_DEPTH: usize = 16;

/// Finds the checkpoint `--ckpt` names: a path, `last` (the newest `last.ckpt`, else the newest
/// full checkpoint under `root`), or `best` (the best_model_path recorded in that checkpoint).
pub fn resolve_ckpt(spec: &str, root: &Path) -> Result<PathBuf, String> {
    if spec != "last" && spec != "best" {
        return Ok(PathBuf::from(spec));
    }
    // Real folders only (a symbolic link to a folder is not followed, so `ck/a -> .` cannot make
    // the search loop or explode), at most MAX_CKPT_SEARCH_DEPTH deep; `.ckpt` entries count
    // when they are regular files (a link to one is fine, a FIFO is not).
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if depth < MAX_CKPT_SEARCH_DEPTH {
                    walk(&p, depth + 1, out);
                }
            } else if p.extension().is_some_and(|x| x == "ckpt") && p.is_file() {
                out.push(p);
            }
        }
    }
    let mut all = Vec::new();
    walk(root, 0, &mut all);
    // a run resumes from full checkpoints: weights-only files (save_weights_only, SWA's final
    // model) are candidates only when there is nothing else
    let weights_only = |p: &PathBuf| {
        crate::checkpoint::Checkpoint::read_meta(p).ok().and_then(|m| m.get("weights_only").and_then(Value::as_bool))
            == Some(true)
    };
    if all.iter().any(|p| !weights_only(p)) {
        all.retain(|p| !weights_only(p));
    }
    let newest = |v: Vec<PathBuf>| v.into_iter().max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let lasts: Vec<PathBuf> = all.iter().filter(|p| p.file_name().is_some_and(|n| n == "last.ckpt")).cloned().collect();
    let last = newest(if lasts.is_empty() { all } else { lasts })
        .ok_or_else(|| format!("--ckpt {spec}: no checkpoint found under {}", root.display()))?;
    if spec == "last" {
        return Ok(last);
    }
    let ck = crate::checkpoint::Checkpoint::load(&last)?;
    let best = ck
        .meta
        .get("callbacks")
        .and_then(|c| c.as_object())
        .and_then(|c| c.iter().find(|(k, _)| k.starts_with("ModelCheckpoint")))
        .and_then(|(_, v)| v.get("best_model_path").and_then(Value::as_str))
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| format!("--ckpt best: {} records no best_model_path", last.display()))?;
    Ok(best)
}

/// A `--callback` expression evaluated with the script engine: `early_stopping(#{…})` or
/// `callbacks::early_stopping(#{…})`.
fn cli_callback(engine: &rhai::Engine, expr: &str) -> Result<Box<dyn crate::trainer::callback::Callback>, String> {
    let code = if expr.trim_start().starts_with("callbacks::") {
        expr.to_string()
    } else {
        format!("callbacks::{}", expr.trim_start())
    };
    let v: rhai::Dynamic = engine.eval(&code).map_err(|e| format!("--callback {expr}: {e}"))?;
    native_callback(v, &format!("--callback {expr}"))
}

/// A config file's `trainer.callbacks` entry (`class_path` / `init_args`) as the lt callback it
/// names, built with the init args as its options.
fn config_callback(
    engine: &rhai::Engine,
    entry: &Value,
) -> Result<Box<dyn crate::trainer::callback::Callback>, String> {
    let (name, init_args) = super::config::callback_entry(entry)?;
    let mut scope = rhai::Scope::new();
    scope.push_dynamic("init_args", crate::script::lightning::from_json(&init_args));
    let what = format!("trainer.callbacks: {}", entry.get("class_path").and_then(Value::as_str).unwrap_or(name));
    let v: rhai::Dynamic = engine
        .eval_with_scope(&mut scope, &format!("callbacks::{name}(init_args)"))
        .map_err(|e| format!("{what}: {}", crate::script::error::message_of(&e)))?;
    native_callback(v, &what)
}

fn native_callback(v: rhai::Dynamic, what: &str) -> Result<Box<dyn crate::trainer::callback::Callback>, String> {
    let cb = v
        .try_cast::<crate::callbacks::api::NativeCallback>()
        .ok_or_else(|| format!("{what}: not a callback (try `lt doc callbacks::` for the list)"))?;
    cb.take().ok_or_else(|| format!("{what}: this callback was already used"))
}

/// What a stage command was asked besides the script.
#[derive(Default)]
pub struct StageOptions<'a> {
    /// `--set trainer.k=v` / `--set model.k=v`.
    pub sets: &'a [String],
    /// `--callback` expressions (`early_stopping(#{monitor: "val_loss"})`), added after the
    /// script's own.
    pub callbacks: &'a [String],
    /// `--ckpt PATH|last|best`.
    pub ckpt: Option<&'a str>,
    /// `--no-strict`: validate/test/predict load `--ckpt` weights without requiring every key.
    pub non_strict: bool,
    pub dist: Option<&'a super::dist::DistArgs>,
    /// `--watch`: hot-reload the script when saved.
    pub watch: bool,
    /// `lt predict --output FILE`: where the predictions go.
    pub output: Option<&'a Path>,
    /// `--config FILE`s, merged in order before the `--set`s.
    pub configs: &'a [PathBuf],
    /// `--print_config`: print the merged configuration as YAML and stop.
    pub print_config: bool,
}

/// Runs a stage on a module script; returns an error text for the user.
pub fn run_stage(
    stage: Stage,
    script: Script,
    sets: &[String],
    ckpt: Option<&str>,
    dist: Option<&super::dist::DistArgs>,
) -> Result<(), String> {
    run_stage_with(stage, script, &StageOptions { sets, ckpt, dist, ..Default::default() })
}

/// [`run_stage`] with every option. With `--ckpt`, validate/test/predict build the module with the
/// checkpoint's hyperparameters (`--set model.k=v` wins), as `load_from_checkpoint` does.
pub fn run_stage_with(stage: Stage, script: Script, o: &StageOptions) -> Result<(), String> {
    let mut settings = super::config::Settings::gather(o.configs, o.sets)?;
    settings.resolve(&script)?;
    if o.print_config {
        let mut y = String::new();
        crate::trainer::logger::to_yaml(&settings.effective(&script)?, 0, &mut y);
        out!("{y}");
        return Ok(());
    }
    let super::config::Settings {
        model: mut model_sets,
        data: mut data_sets,
        trainer: trainer_sets,
        callbacks,
        ckpt_path,
    } = settings;
    let eval_stage = matches!(stage, Stage::Validate | Stage::Test | Stage::Predict);
    let ck = match o.ckpt.or(ckpt_path.as_deref()) {
        Some(spec) => {
            let root = TrainerConfig::from_map(&trainer_options(&script, &trainer_sets)?)?.default_root_dir;
            Some(crate::checkpoint::Checkpoint::load(&resolve_ckpt(spec, &root)?)?)
        }
        None => None,
    };
    // evaluating a checkpoint: the model (and DataModule) are built with the hyperparameters it
    // was trained with; the command line wins
    if let (Some(c), true) = (&ck, eval_stage) {
        for (key, sets) in [("hyper_parameters", &mut model_sets), ("datamodule_hyper_parameters", &mut data_sets)] {
            if let Some(Value::Object(saved)) = c.meta.get(key) {
                let mut merged: BTreeMap<String, Value> = saved.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                merged.extend(std::mem::take(sets));
                *sets = merged;
            }
        }
    }
    let (mut module, opts) = ScriptModule::load_with_data(script, &model_sets, &data_sets, &trainer_sets)?;
    let config = TrainerConfig::from_map(&opts)?;
    // A DDP worker (started by the launcher or torchrun) joins its process group first.
    let mut pg = None;
    if let Some(dist) = o.dist {
        if let Some(env) = super::dist::worker_env(dist)? {
            let backend = crate::dist::Backend::for_device(config.device()?);
            pg = Some(crate::dist::ProcessGroup::new(backend, &env, dist.timeout()).map_err(|e| e.to_string())?);
        }
    }
    let purpose = match stage {
        Stage::Fit | Stage::Run => Purpose::Fit,
        Stage::Validate | Stage::Test => Purpose::Evaluate,
        Stage::Predict => Purpose::Predict,
    };
    let mut trainer =
        build_trainer(&mut module, config, purpose, &CliCallbacks { exprs: o.callbacks, config: &callbacks }, pg)?;
    if o.watch {
        module.watch()?;
        outln!("watching {} for changes: saved edits apply at the next training step", module.script.name());
    }
    let rank0 = trainer.state.borrow().global_rank == 0;
    let alone = trainer.state.borrow().world_size <= 1;
    if alone
        && matches!(stage, Stage::Fit | Stage::Run)
        && module.enable_pause_key()
        && trainer.config.enable_progress_bar
    {
        outln!("press Enter to pause into the REPL (:continue resumes)");
    }
    if let (Some(c), true) = (&ck, eval_stage) {
        crate::trainer::module::LightningModule::load_state_dict(&mut module, &c.section("state_dict"), !o.non_strict)?;
    }
    match stage {
        Stage::Fit => trainer.fit_from(&mut module, ck.as_ref()),
        Stage::Run => {
            trainer.fit_from(&mut module, ck.as_ref())?;
            let has_test =
                crate::trainer::module::LightningModule::has_step(&module, crate::trainer::module::StepKind::Test);
            if has_test {
                if let Some(r) = trainer.test_if_data(&mut module)? {
                    if rank0 {
                        outln!("{}", Trainer::results_table("Test", &r));
                    }
                }
            }
            Ok(())
        }
        Stage::Validate => {
            let r = trainer.validate(&mut module)?;
            if rank0 {
                outln!("{}", Trainer::results_table("Validate", &r));
            }
            Ok(())
        }
        Stage::Test => {
            let r = trainer.test(&mut module)?;
            if rank0 {
                outln!("{}", Trainer::results_table("Test", &r));
            }
            Ok(())
        }
        Stage::Predict => {
            let outs = trainer.predict(&mut module)?;
            if !rank0 {
                return Ok(());
            }
            let predictions = super::predict::collect(&outs)?;
            match o.output {
                Some(path) => {
                    super::predict::write(path, &predictions)?;
                    outln!("predictions written to {}:\n{}", path.display(), super::predict::summary(&predictions));
                }
                None => outln!("{}", super::predict::summary(&predictions)),
            }
            Ok(())
        }
    }
}

/// The callbacks the command line adds after the script's: `--callback` expressions, then the
/// config files' `trainer.callbacks` entries.
#[derive(Default)]
pub struct CliCallbacks<'a> {
    pub exprs: &'a [String],
    pub config: &'a [Value],
}

/// What a Trainer is built for: which loggers and default callbacks it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `lt fit` / `lt run`: loggers, the script's callbacks, Lightning's default ModelCheckpoint.
    Fit,
    /// `lt validate` / `lt test`: loggers and the script's callbacks.
    Evaluate,
    /// `lt predict`: the script's callbacks.
    Predict,
    /// The REPL, which fits, validates and tests: as `Fit`.
    Repl,
    /// `lt lr-find`: none of them (Lightning's finder runs without the callbacks).
    LrFind,
}

/// The one place a Trainer is put together for a script module — `lt fit/validate/test/predict/
/// run`, the REPL and `lt lr-find`: the process group (DDP), the module attached, the loggers
/// (rank 0), the script's built-in callbacks and `--callback`s, and Lightning's default
/// ModelCheckpoint when checkpointing is on and the script has none.
pub fn build_trainer(
    module: &mut ScriptModule,
    config: TrainerConfig,
    purpose: Purpose,
    cli_callbacks: &CliCallbacks,
    pg: Option<crate::dist::ProcessGroup>,
) -> Result<Trainer, String> {
    let mut trainer = Trainer::new(config)?;
    if let Some(pg) = pg {
        trainer.set_process_group(pg);
    }
    module.attach(trainer.state.clone())?;
    if purpose == Purpose::LrFind {
        drop(module.take_native_callbacks());
        return Ok(trainer);
    }
    let rank0 = trainer.state.borrow().global_rank == 0;
    if rank0 && trainer.config.logger && purpose != Purpose::Predict {
        let loggers = crate::trainer::logger::make_loggers(&trainer.config.default_root_dir, &trainer.config.loggers)?;
        trainer.loggers.extend(loggers);
    }
    trainer.callbacks.extend(module.take_native_callbacks());
    for expr in cli_callbacks.exprs {
        trainer.callbacks.push(cli_callback(&module.script.engine, expr)?);
    }
    for entry in cli_callbacks.config {
        trainer.callbacks.push(config_callback(&module.script.engine, entry)?);
    }
    let has_ckpt_cb = trainer.callbacks.iter().any(|c| c.state_key().starts_with("ModelCheckpoint"));
    if trainer.config.enable_checkpointing && !has_ckpt_cb && matches!(purpose, Purpose::Fit | Purpose::Repl) {
        trainer.callbacks.push(Box::new(crate::callbacks::ModelCheckpoint::new(Default::default())?));
    }
    Ok(trainer)
}

/// Loads a script file for a stage.
pub fn load(path: &Path) -> Result<Script, String> {
    Script::load(path).map_err(|e| {
        let mut s = e.to_string();
        while s.ends_with('\n') {
            s.pop();
        }
        s
    })
}
