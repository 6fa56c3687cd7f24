//! The `lt` command line.
pub mod train;
pub mod dist;

use crate::script::runner::Script;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "lt", about = "Lightning-style training of Rhai-scripted models on libtorch", disable_version_flag = true)]
pub struct Cli {
    /// Print lt and libtorch versions, CUDA availability and thread count.
    #[arg(short = 'V', long = "version")]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a script: a module script (one with training_step) is fit, then tested when it has a
    /// test step and test data; any other script runs top to bottom.
    Run {
        /// The .rhai file.
        script: PathBuf,
        /// Override a Trainer option or hyperparameter: --set trainer.max_epochs=3 --set model.lr=0.01
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Checkpoint: resume fit from it, or load its weights for validate/test/predict. A path,
        /// `last` or `best`.
        #[arg(long)]
        ckpt: Option<String>,
        /// Hot reload: when the script is saved, swap its functions in at the next training step
        /// (weights, optimizer state and counters are kept).
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        dist: dist::DistArgs,
    },
    /// Train a module script (Lightning's trainer.fit).
    Fit {
        script: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Checkpoint: resume fit from it, or load its weights for validate/test/predict. A path,
        /// `last` or `best`.
        #[arg(long)]
        ckpt: Option<String>,
        /// Hot reload: when the script is saved, swap its functions in at the next training step
        /// (weights, optimizer state and counters are kept).
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        dist: dist::DistArgs,
    },
    /// Run the validation loop of a module script.
    Validate {
        script: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Checkpoint: resume fit from it, or load its weights for validate/test/predict. A path,
        /// `last` or `best`.
        #[arg(long)]
        ckpt: Option<String>,
        #[command(flatten)]
        dist: dist::DistArgs,
    },
    /// Run the test loop of a module script.
    Test {
        script: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Checkpoint: resume fit from it, or load its weights for validate/test/predict. A path,
        /// `last` or `best`.
        #[arg(long)]
        ckpt: Option<String>,
        #[command(flatten)]
        dist: dist::DistArgs,
    },
    /// Run predict_step over the predict data of a module script.
    Predict {
        script: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Checkpoint: resume fit from it, or load its weights for validate/test/predict. A path,
        /// `last` or `best`.
        #[arg(long)]
        ckpt: Option<String>,
        #[command(flatten)]
        dist: dist::DistArgs,
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
    /// Inspect a checkpoint: `lt ckpt show FILE`.
    Ckpt { action: String, file: PathBuf },
    /// Run scripts and compare what they print with the `.golden` file beside each.
    Golden {
        /// Scripts or folders (searched for .rhai files); default: tests/golden.
        paths: Vec<PathBuf>,
        /// Rewrite the golden files with the current output.
        #[arg(long)]
        bless: bool,
        /// Relative tolerance for numbers (0 = exact).
        #[arg(long, default_value_t = 0.0)]
        tolerance: f64,
    },
    /// Measure figures (not tests): `dispatch` (script op overhead vs Rust), `optim` (one Adam step).
    Bench {
        #[arg(default_value = "dispatch")]
        which: String,
        /// Number of ops for the dispatch benchmark.
        #[arg(long, default_value_t = 100_000)]
        ops: usize,
    },
    /// Checks the distributed backend (collectives, gradient sync) or times all-reduce.
    #[command(hide = true)]
    DistSelftest(dist::SelftestArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        println!("{}", crate::version_text());
        return ExitCode::SUCCESS;
    }
    let Some(cmd) = cli.command else {
        eprintln!("lt: no command given; try `lt --help`");
        return ExitCode::from(2);
    };
    match cmd {
        Command::Run { script, sets, ckpt, watch, dist } => match dist::launch_if_needed(&dist) {
            Some(code) => code,
            None => run(&script, &sets, ckpt.as_deref(), watch),
        },
        Command::Fit { script, sets, ckpt, watch, dist } => match dist::launch_if_needed(&dist) {
            Some(code) => code,
            None => stage_watch(train::Stage::Fit, &script, &sets, ckpt.as_deref(), watch),
        },
        Command::Repl { script, sets } => crate::repl::main(script.as_deref(), &sets),
        Command::Validate { script, sets, ckpt, dist } => match dist::launch_if_needed(&dist) {
            Some(code) => code,
            None => stage(train::Stage::Validate, &script, &sets, ckpt.as_deref()),
        },
        Command::Test { script, sets, ckpt, dist } => match dist::launch_if_needed(&dist) {
            Some(code) => code,
            None => stage(train::Stage::Test, &script, &sets, ckpt.as_deref()),
        },
        Command::Predict { script, sets, ckpt, dist } => match dist::launch_if_needed(&dist) {
            Some(code) => code,
            None => stage(train::Stage::Predict, &script, &sets, ckpt.as_deref()),
        },
        Command::Ckpt { action, file } => ckpt_cmd(&action, &file),
        Command::DistSelftest(args) => dist::selftest(&args),
        Command::Doc { name } => doc(name.as_deref()),
        Command::Bench { which, ops } => bench(&which, ops),
        Command::Golden { paths, bless, tolerance } => golden(paths, bless, tolerance),
    }
}

fn ckpt_cmd(action: &str, file: &std::path::Path) -> ExitCode {
    if action != "show" {
        eprintln!("error: unknown ckpt action '{action}'; try `lt ckpt show FILE`");
        return ExitCode::from(2);
    }
    match crate::checkpoint::Checkpoint::load(file) {
        Ok(c) => {
            print!("{}", c.describe());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn stage(stage: train::Stage, path: &std::path::Path, sets: &[String], ckpt: Option<&str>) -> ExitCode {
    stage_watch(stage, path, sets, ckpt, false)
}

fn stage_watch(stage: train::Stage, path: &std::path::Path, sets: &[String], ckpt: Option<&str>, watch: bool) -> ExitCode {
    let result = train::load(path).and_then(|script| train::run_stage_watch(stage, script, sets, ckpt, watch));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", if e.starts_with("error:") { e } else { format!("error: {e}") });
            ExitCode::FAILURE
        }
    }
}

fn run(path: &PathBuf, sets: &[String], ckpt: Option<&str>, watch: bool) -> ExitCode {
    let script = match Script::load(path) {
        Ok(s) => s,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if train::is_module_script(&script) {
        return match train::run_stage_watch(train::Stage::Run, script, sets, ckpt, watch) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{}", if e.starts_with("error:") { e } else { format!("error: {e}") });
                ExitCode::FAILURE
            }
        };
    }
    if watch {
        eprintln!("error: --watch applies to module scripts (scripts with a training_step)");
        return ExitCode::from(2);
    }
    if !sets.is_empty() {
        eprintln!("error: --set applies to module scripts (scripts with a training_step)");
        return ExitCode::from(2);
    }
    match script.run(&mut rhai::Scope::new()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprint!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn doc(name: Option<&str>) -> ExitCode {
    let engine = match crate::script::engine::new_engine() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match crate::script::doc::render(&engine, name) {
        Ok(s) => {
            print!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(which: &str, ops: usize) -> ExitCode {
    tch::set_num_threads(1);
    match which {
        "dispatch" => match crate::bench::dispatch::run(ops, 5) {
            Ok(f) => {
                println!("dispatch: {} small-tensor ops (x + x on 4 floats), 1 thread, best of 5", f.ops);
                println!("  rust loop   {:>8.0} ns/op", f.rust_ns_per_op);
                println!("  rhai loop   {:>8.0} ns/op", f.rhai_ns_per_op);
                println!("  ratio       {:>8.2}x  (aim <= 1.5x)", f.ratio());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        "optim" => match crate::bench::optim::run(20) {
            Ok(f) => {
                let (n, size) = (crate::bench::optim::TENSORS, crate::bench::optim::SIZE);
                println!("optim: one Adam step over {n} tensors of {size} float32 values, 1 thread, best of 20");
                println!("  lt Adam (per-tensor)  {:>8.2} ms/step", f.lt_per_tensor_ms);
                println!("  lt Adam (fused)       {:>8.2} ms/step", f.lt_fused_ms);
                println!("  tch nn::Adam          {:>8.2} ms/step", f.tch_ms);
                println!("  ratio per-tensor/tch  {:>8.2}x", f.lt_per_tensor_ms / f.tch_ms);
                println!("  ratio fused/tch       {:>8.2}x", f.lt_fused_ms / f.tch_ms);
                println!("  (PyTorch: python3 benches/optim_adam.py)");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        other => {
            eprintln!("error: unknown benchmark '{other}'; available: dispatch, optim");
            ExitCode::from(2)
        }
    }
}

fn golden(paths: Vec<PathBuf>, bless: bool, tolerance: f64) -> ExitCode {
    use crate::golden::{check, discover, Outcome};
    // One thread and a fixed seed so outputs are deterministic on CPU.
    tch::set_num_threads(1);
    let paths = if paths.is_empty() { vec![PathBuf::from("tests/golden")] } else { paths };
    let scripts = match discover(&paths) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for s in &scripts {
        tch::manual_seed(0);
        match check(s, bless, tolerance) {
            Outcome::Pass => {
                passed += 1;
                println!("ok      {}", s.display());
            }
            Outcome::Blessed => {
                passed += 1;
                println!("blessed {}", s.display());
            }
            Outcome::Missing => {
                failed += 1;
                println!("MISSING {} (no {}; run with --bless to create it)", s.display(), crate::golden::golden_path(s).display());
            }
            Outcome::Fail(d) => {
                failed += 1;
                println!("FAIL    {}\n{d}", s.display());
            }
        }
    }
    println!("golden: {passed} passed, {failed} failed");
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
