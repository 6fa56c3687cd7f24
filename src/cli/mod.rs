//! The `lt` command line.
pub mod ckpt;
pub mod config;
pub mod dist;
pub mod predict;
pub mod train;
pub mod tune;
pub mod yaml;

use crate::script::runner::Script;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lt",
    about = "Lightning-style training of Rhai-scripted models on libtorch",
    disable_version_flag = true
)]
pub struct Cli {
    /// Print lt and libtorch versions, CUDA availability and thread count.
    #[arg(short = 'V', long = "version")]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What every stage command takes: the script, overrides, a checkpoint, distributed options.
#[derive(clap::Args)]
pub struct StageArgs {
    /// The .rhai file.
    pub script: PathBuf,
    /// Override a Trainer option, a hyperparameter or a DataModule hyperparameter:
    /// --set trainer.max_epochs=3 --set model.lr=0.01 --set data.batch_size=64. LightningCLI's
    /// spellings --trainer.max_epochs=3, --model.lr 0.01, --data.batch_size=64 and
    /// --seed_everything=42 are the same.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// A LightningCLI-style YAML config (keys trainer, model, data, seed_everything, ckpt_path;
    /// trainer.callbacks as class_path/init_args). Repeatable: merged in order, later wins; the
    /// --set flags win over every config file.
    #[arg(long = "config", value_name = "FILE")]
    pub configs: Vec<PathBuf>,
    /// Print the merged configuration (the script's trainer(), hparams() and datamodule_hparams()
    /// with every --config and --set applied) as YAML that --config reads back, and exit.
    #[arg(long = "print_config", alias = "print-config")]
    pub print_config: bool,
    /// Checkpoint: resume fit from it, or load its weights for validate/test/predict. A path,
    /// `last` or `best` (also --ckpt_path, as LightningCLI spells it).
    #[arg(long, alias = "ckpt_path")]
    pub ckpt: Option<String>,
    /// Add a built-in callback, as the script would write it:
    /// --callback 'early_stopping(#{monitor: "val_loss", patience: 3})' (repeatable).
    #[arg(long = "callback", value_name = "EXPR")]
    pub callbacks: Vec<String>,
    /// validate/test/predict: load the --ckpt weights without requiring every key to match
    /// (Lightning's strict=False).
    #[arg(long)]
    pub no_strict: bool,
    /// No progress bars or lines, model summary or Trainer messages: only results tables, what the
    /// script prints, and errors.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub dist: dist::DistArgs,
}

impl StageArgs {
    /// The options a stage runs with (`sets` from [`StageArgs::all_sets`]).
    fn options<'a>(&'a self, sets: &'a [String], watch: bool) -> train::StageOptions<'a> {
        train::StageOptions {
            sets,
            callbacks: &self.callbacks,
            ckpt: self.ckpt.as_deref(),
            non_strict: self.no_strict,
            dist: Some(&self.dist),
            watch,
            output: None,
            configs: &self.configs,
            print_config: self.print_config,
        }
    }

    /// The `--set` overrides, with what `--quiet` implies (which also silences info lines).
    fn all_sets(&self) -> Vec<String> {
        crate::console::set_quiet(self.quiet);
        let mut sets = self.sets.clone();
        if self.quiet {
            sets.push("trainer.enable_progress_bar=false".into());
            sets.push("trainer.enable_model_summary=false".into());
        }
        sets
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a script: a module script (one with training_step) is fit, then tested when it has a
    /// test step and test data; any other script runs top to bottom.
    Run {
        #[command(flatten)]
        stage: StageArgs,
        /// Hot reload: when the script is saved, swap its functions in at the next training step
        /// (weights, optimizer state and counters are kept).
        #[arg(long)]
        watch: bool,
    },
    /// Train a module script (Lightning's trainer.fit).
    Fit {
        #[command(flatten)]
        stage: StageArgs,
        /// Hot reload: when the script is saved, swap its functions in at the next training step
        /// (weights, optimizer state and counters are kept).
        #[arg(long)]
        watch: bool,
    },
    /// Run the validation loop of a module script.
    Validate {
        #[command(flatten)]
        stage: StageArgs,
    },
    /// Run the test loop of a module script.
    Test {
        #[command(flatten)]
        stage: StageArgs,
    },
    /// Run predict_step over the predict data of a module script.
    Predict {
        #[command(flatten)]
        stage: StageArgs,
        /// Write the predictions (each dataloader's predict_step outputs, joined along the batch
        /// dimension) to FILE: .safetensors, .npy or .csv. An existing file is not overwritten.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Interactive Rhai on libtorch; with a module script, the model and a Trainer (`:fit N`).
    Repl {
        /// A script to load first (a module script becomes the model).
        script: Option<PathBuf>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// List every script function, or show the full doc of one (`lt doc zeros`, `lt doc torch::cat`).
    Doc { name: Option<String> },
    /// Inspect a checkpoint: `lt ckpt show FILE` (metadata and tensors), `lt ckpt verify FILE` (check
    /// the header's and every tensor's checksum); convert one: `lt ckpt convert IN --to
    /// lightning|pytorch|safetensors|lt OUT`.
    Ckpt(ckpt::CkptArgs),
    /// Run scripts and compare what they print with the `.golden` file beside each.
    Golden {
        /// Scripts or folders (searched for .rhai files); default: tests/golden.
        paths: Vec<PathBuf>,
        /// Rewrite the golden files with the current output.
        #[arg(long)]
        bless: bool,
        /// Tolerance for floats: relative above 1, absolute below (default 1e-3, which absorbs
        /// float32 kernel differences between CPUs). Integers and text always compare exactly.
        #[arg(long, default_value_t = crate::golden::compare::DEFAULT_TOLERANCE, conflicts_with = "exact")]
        tolerance: f64,
        /// Compare bit for bit (for lt against itself on one machine).
        #[arg(long)]
        exact: bool,
    },
    /// Measure figures (not tests): `dispatch` (script op overhead vs Rust), `optim` (one Adam step), `data` (loader throughput).
    Bench {
        #[arg(default_value = "dispatch")]
        which: String,
        /// Number of ops for the dispatch benchmark.
        #[arg(long, default_value_t = 100_000)]
        ops: usize,
    },
    /// Draw a run's metrics.csv as a PNG: one panel per metric family (loss, acc, …), train and
    /// val overlaid (`lt plot lightning_logs/version_0 -o run.png --x epoch`).
    Plot {
        /// A `lightning_logs/version_N` folder, or a metrics.csv file.
        run: PathBuf,
        /// Output PNG (default: metrics.png beside metrics.csv).
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        /// x axis: `step`, or `epoch` (each metric averaged per epoch).
        #[arg(long = "x", default_value = "step")]
        x: String,
        /// y axes in powers of ten (values that are not positive are left out).
        #[arg(long = "logy")]
        logy: bool,
    },
    /// Learning-rate finder: ramps the LR over `--num-training` steps of the script's training,
    /// prints the suggested LR and writes a plot (the weights are not changed).
    LrFind(tune::LrFindArgs),
    /// Checks the distributed backend (collectives, gradient sync) or times all-reduce.
    #[command(hide = true)]
    DistSelftest(dist::SelftestArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse_from(config::rewrite_args(std::env::args_os().collect()));
    if cli.version {
        outln!("{}", crate::version_text());
        return ExitCode::SUCCESS;
    }
    let Some(cmd) = cli.command else {
        errln!("lt: no command given; try `lt --help`");
        return ExitCode::from(2);
    };
    match cmd {
        Command::Run { stage: a, watch } => {
            match (!a.print_config).then(|| dist::launch_if_needed(&a.dist)).flatten() {
                Some(code) => code,
                None => run(&a, watch),
            }
        }
        Command::Fit { stage: a, watch } => launch_stage(train::Stage::Fit, &a, watch),
        Command::Validate { stage: a } => launch_stage(train::Stage::Validate, &a, false),
        Command::Test { stage: a } => launch_stage(train::Stage::Test, &a, false),
        Command::Predict { stage: a, output } => launch_predict(&a, output.as_deref()),
        Command::Repl { script, sets } => crate::repl::main(script.as_deref(), &sets),
        Command::Ckpt(a) => match a.convert_or_check() {
            Some(code) => code,
            None => ckpt_cmd(&a.action, &a.file),
        },
        Command::DistSelftest(args) => dist::selftest(&args),
        Command::Doc { name } => doc(name.as_deref()),
        Command::Bench { which, ops } => bench(&which, ops),
        Command::Golden { paths, bless, tolerance, exact } => golden(paths, bless, if exact { 0.0 } else { tolerance }),
        Command::Plot { run, out, x, logy } => plot(&run, out.as_deref(), &x, logy),
        Command::LrFind(args) => report(tune::lr_find_cmd(&args).map_err(anyhow::Error::msg)),
    }
}

/// A command's outcome as its exit code; a failure is printed once, with its causes
/// (`error: lt plot runs/x: cannot read runs/x/metrics.csv: No such file or directory`).
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = format!("{e:#}");
            errorln!("{text}");
            ExitCode::FAILURE
        }
    }
}

fn plot(run: &std::path::Path, out: Option<&std::path::Path>, x: &str, logy: bool) -> ExitCode {
    use anyhow::Context;
    report(
        crate::plot::XAxis::parse(x)
            .and_then(|x| crate::plot::plot_run(run, out, x, logy))
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("lt plot {}", run.display()))
            .map(|(path, (w, h))| outln!("wrote {} ({w}x{h})", path.display())),
    )
}

fn ckpt_cmd(action: &str, file: &std::path::Path) -> ExitCode {
    use crate::checkpoint::Checkpoint;
    match action {
        "show" => report(Checkpoint::load(file).map_err(anyhow::Error::msg).map(|c| out!("{}", c.describe()))),
        "verify" => ckpt_verify(file),
        _ => {
            errorln!(
                "unknown ckpt action '{action}'; the actions are `lt ckpt show FILE` (metadata and tensors), `lt ckpt verify FILE` (check every checksum) and `lt ckpt convert IN --to FORMAT OUT`"
            );
            ExitCode::from(2)
        }
    }
}

/// `lt ckpt verify FILE`: one line when the header and every tensor match their checksums, else
/// every problem found (each failing tensor by name) and exit status 1.
fn ckpt_verify(file: &std::path::Path) -> ExitCode {
    let v = match crate::checkpoint::Checkpoint::verify_file(file) {
        Ok(v) => v,
        Err(e) => return report(Err(anyhow::Error::msg(e))),
    };
    let counts = format!("{} tensors, {} values", v.tensors, v.values);
    if v.format_version < 2 {
        outln!(
            "ok: {counts}, format {}: no checksums to verify (written by an earlier lt; the structure was checked)",
            v.format_version
        );
        return ExitCode::SUCCESS;
    }
    if v.ok() {
        outln!("ok: {counts}, header and every tensor checksum match, format {}", v.format_version);
        return ExitCode::SUCCESS;
    }
    for p in v.header.iter().chain(&v.tensor_problems) {
        errln!("{}: {p}", file.display());
    }
    let header = if v.header.is_some() { "the header fails its checksum" } else { "the header matches" };
    errorln!(
        "{} is corrupt: {header}; {} tensor problem(s) among its {} tensors",
        file.display(),
        v.tensor_problems.len(),
        v.tensors
    );
    ExitCode::FAILURE
}

/// A stage command: the DDP launcher when asked for, else this process runs the stage.
fn launch_stage(stage: train::Stage, a: &StageArgs, watch: bool) -> ExitCode {
    // (--print_config prints once, launching nothing)
    if let Some(code) = (!a.print_config).then(|| dist::launch_if_needed(&a.dist)).flatten() {
        return code;
    }
    let sets = a.all_sets();
    report(
        train::load(&a.script)
            .and_then(|script| train::run_stage_with(stage, script, &a.options(&sets, watch)))
            .map_err(anyhow::Error::msg),
    )
}

/// `lt predict`, with `--output FILE` for the predictions.
fn launch_predict(a: &StageArgs, output: Option<&std::path::Path>) -> ExitCode {
    if let Some(code) = (!a.print_config).then(|| dist::launch_if_needed(&a.dist)).flatten() {
        return code;
    }
    let sets = a.all_sets();
    let options = train::StageOptions { output, ..a.options(&sets, false) };
    report(
        train::load(&a.script)
            .and_then(|script| train::run_stage_with(train::Stage::Predict, script, &options))
            .map_err(anyhow::Error::msg),
    )
}

fn run(a: &StageArgs, watch: bool) -> ExitCode {
    let script = match Script::load(&a.script) {
        Ok(s) => s,
        Err(e) => {
            errorln!("{}", e.to_string().trim_end());
            return ExitCode::FAILURE;
        }
    };
    if train::is_module_script(&script) {
        let sets = a.all_sets();
        return report(
            train::run_stage_with(train::Stage::Run, script, &a.options(&sets, watch)).map_err(anyhow::Error::msg),
        );
    }
    if watch {
        errorln!("--watch applies to module scripts (scripts with a training_step)");
        return ExitCode::from(2);
    }
    if !a.callbacks.is_empty() {
        errorln!("--callback applies to module scripts (scripts with a training_step)");
        return ExitCode::from(2);
    }
    if !a.sets.is_empty() {
        errorln!("--set applies to module scripts (scripts with a training_step)");
        return ExitCode::from(2);
    }
    if !a.configs.is_empty() || a.print_config {
        errln!("error: --config and --print_config apply to module scripts (scripts with a training_step)");
        return ExitCode::from(2);
    }
    match script.run(&mut rhai::Scope::new()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            errorln!("{}", e.to_string().trim_end());
            ExitCode::FAILURE
        }
    }
}

fn doc(name: Option<&str>) -> ExitCode {
    let engine = match crate::script::engine::new_engine() {
        Ok(e) => e,
        Err(e) => {
            errorln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match crate::script::doc::render(&engine, name, crate::console::terminal_width(crate::console::Stream::Stdout)) {
        Ok(s) => {
            out!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            errorln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(which: &str, ops: usize) -> ExitCode {
    tch::set_num_threads(1);
    match which {
        "dispatch" => match crate::bench::dispatch::run(ops, 5) {
            Ok(f) => {
                outln!("dispatch: {} small-tensor ops (x + x on 4 floats), 1 thread, best of 5", f.ops);
                outln!("  rust loop   {:>8.0} ns/op", f.rust_ns_per_op);
                outln!("  rhai loop   {:>8.0} ns/op", f.rhai_ns_per_op);
                outln!("  ratio       {:>8.2}x  (aim <= 1.5x)", f.ratio());
                ExitCode::SUCCESS
            }
            Err(e) => {
                errorln!("{e}");
                ExitCode::FAILURE
            }
        },
        "optim" => match crate::bench::optim::run(20) {
            Ok(f) => {
                let (n, size) = (crate::bench::optim::TENSORS, crate::bench::optim::SIZE);
                outln!("optim: one Adam step over {n} tensors of {size} float32 values, 1 thread, best of 20");
                outln!("  lt Adam (per-tensor)  {:>8.2} ms/step", f.lt_per_tensor_ms);
                outln!("  lt Adam (fused)       {:>8.2} ms/step", f.lt_fused_ms);
                outln!("  tch nn::Adam          {:>8.2} ms/step", f.tch_ms);
                outln!("  ratio per-tensor/tch  {:>8.2}x", f.lt_per_tensor_ms / f.tch_ms);
                outln!("  ratio fused/tch       {:>8.2}x", f.lt_fused_ms / f.tch_ms);
                outln!("  (PyTorch: python3 benches/optim_adam.py)");
                ExitCode::SUCCESS
            }
            Err(e) => {
                errorln!("{e}");
                ExitCode::FAILURE
            }
        },
        "data" => match crate::bench::data::run() {
            Ok(f) => {
                outln!("data: 1 libtorch thread, best of several epochs");
                outln!(
                    "  tensor dataset 60000x784 float32 + labels, batch 64, shuffled ({} batches/epoch):",
                    f.tensor_batches
                );
                outln!("    rust iterator, 0 workers   {:>9.0} batches/s", f.tensor_bps);
                outln!("    rust iterator, 2 workers   {:>9.0} batches/s", f.tensor_bps_2_workers);
                outln!("    script `for b in loader`   {:>9.0} batches/s", f.tensor_bps_script);
                outln!("    (PyTorch DataLoader over a TensorDataset: run tools/bench_data_torch.py; aim >= 5x)");
                outln!("  image folder, {} PNGs 3x128x128, batch 64 ({} batches/epoch):", f.images, f.image_batches);
                outln!(
                    "    1 worker                   {:>9.1} batches/s  ({:.2} cores busy)",
                    f.image_bps_1_worker,
                    f.image_cores_1_worker
                );
                outln!(
                    "    2 workers                  {:>9.1} batches/s  ({:.2} cores busy)",
                    f.image_bps_2_workers,
                    f.image_cores_2_workers
                );
                outln!("    speed-up                   {:>9.2}x  (aim >= 1.7x)", f.image_speedup());
                outln!("    control: two busy threads got {:.2} cores on this machine just now", f.cores_available);
                ExitCode::SUCCESS
            }
            Err(e) => {
                errorln!("{e}");
                ExitCode::FAILURE
            }
        },
        "checkpoint" => match crate::bench::checkpoint::run(&std::env::temp_dir()) {
            Ok(f) => {
                outln!("checkpoint: {:.0} MB (100M float32 parameters in 10 tensors), best of 3", f.megabytes);
                outln!("  lt save (atomic, fsync)  {:>8.0} MB/s", f.save_mb_s);
                outln!("  lt load (checksums checked) {:>5.0} MB/s", f.load_mb_s);
                outln!("  crc32c alone             {:>8.0} MB/s (part of both)", f.crc_mb_s);
                outln!("  (PyTorch: python3 tools/bench_checkpoint_torch.py)");
                ExitCode::SUCCESS
            }
            Err(e) => {
                errorln!("{e}");
                ExitCode::FAILURE
            }
        },
        "trainer" => match bench_trainer(ops) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                errorln!("{e}");
                ExitCode::FAILURE
            }
        },
        other => {
            errorln!("unknown benchmark '{other}'; available: dispatch, optim, data, trainer, checkpoint");
            ExitCode::from(2)
        }
    }
}

fn golden(paths: Vec<PathBuf>, bless: bool, tolerance: f64) -> ExitCode {
    use crate::golden::{check, discover, Outcome};
    // A fixed seed and one libtorch thread (unless OMP_NUM_THREADS says otherwise) so outputs are
    // deterministic on one CPU.
    tch::set_num_threads(crate::golden::threads());
    let paths = if paths.is_empty() { vec![PathBuf::from("tests/golden")] } else { paths };
    let scripts = match discover(&paths) {
        Ok(s) => s,
        Err(e) => {
            errorln!("{e}");
            return ExitCode::from(2);
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for s in &scripts {
        tch::manual_seed(0);
        match check(s, bless, tolerance) {
            Outcome::Pass => {
                passed += 1;
                outln!("ok      {}", s.display());
            }
            Outcome::Blessed => {
                passed += 1;
                outln!("blessed {}", s.display());
            }
            Outcome::Missing => {
                failed += 1;
                outln!(
                    "MISSING {} (no {}; run with --bless to create it)",
                    s.display(),
                    crate::golden::golden_path(s).display()
                );
            }
            Outcome::Fail(d) => {
                failed += 1;
                outln!("FAIL    {}\n{d}", s.display());
            }
        }
    }
    outln!("golden: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `lt bench trainer`: lt and the raw tch floor, then — when a Python with torch is at hand —
/// raw PyTorch and PyTorch Lightning in the same run (`tools/bench_trainer_torch.py`), as one table.
fn bench_trainer(ops: usize) -> Result<(), String> {
    let steps = ops.clamp(200, 2000);
    let mut rows = Vec::new();
    for (h, b) in [(256, 64), (32, 32)] {
        rows.push(crate::bench::trainer::run(h, b, steps)?);
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let (start_s, rss) = crate::bench::trainer::startup(&exe)?;
    let peers = crate::bench::trainer::python_peers();
    let mut t = crate::console::style::table(crate::console::Stream::Stdout);
    t.set_header(crate::console::style::header([
        "MLP 784-H-10, Adam, log every step, 1 thread",
        "H=256 b=64 ms/step",
        "ratio",
        "H=32 b=32 ms/step",
        "ratio",
        "start-up s",
        "peak RSS MB",
    ]));
    let cell = |v: f64| format!("{v:.3}");
    let ratio = |v: f64, lt: f64| format!("{:.2}x", v / lt);
    t.add_row(vec![
        "lt Trainer".to_string(),
        cell(rows[0].lt_ms),
        "1.00x".into(),
        cell(rows[1].lt_ms),
        "1.00x".into(),
        format!("{start_s:.2}"),
        format!("{rss:.0}"),
    ]);
    t.add_row(vec![
        "raw tch loop (floor)".to_string(),
        cell(rows[0].floor_ms),
        ratio(rows[0].floor_ms, rows[0].lt_ms),
        cell(rows[1].floor_ms),
        ratio(rows[1].floor_ms, rows[1].lt_ms),
        String::new(),
        String::new(),
    ]);
    match &peers {
        Ok(p) => {
            for (name, v, st) in [
                ("raw PyTorch + DataLoader", &p.raw, p.raw_start),
                ("PyTorch Lightning", &p.lightning, p.lightning_start),
            ] {
                t.add_row(vec![
                    name.to_string(),
                    cell(v[0]),
                    ratio(v[0], rows[0].lt_ms),
                    cell(v[1]),
                    ratio(v[1], rows[1].lt_ms),
                    format!("{:.2}", st.0),
                    format!("{:.0}", st.1),
                ]);
            }
        }
        Err(e) => outln!("(Python peers not measured: {e})"),
    }
    outln!("{t}");
    Ok(())
}
