//! The `lt` command line.
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
    /// Run a script.
    Run {
        /// The .rhai file.
        script: PathBuf,
    },
    /// List every script function, or show the full doc of one (`lt doc zeros`, `lt doc torch::cat`).
    Doc { name: Option<String> },
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
    /// Measure figures (not tests): `dispatch` (script op overhead vs Rust), `data` (loader throughput).
    Bench {
        #[arg(default_value = "dispatch")]
        which: String,
        /// Number of ops for the dispatch benchmark.
        #[arg(long, default_value_t = 100_000)]
        ops: usize,
    },
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
        Command::Run { script } => run(&script),
        Command::Doc { name } => doc(name.as_deref()),
        Command::Bench { which, ops } => bench(&which, ops),
        Command::Golden { paths, bless, tolerance } => golden(paths, bless, tolerance),
    }
}

fn run(path: &PathBuf) -> ExitCode {
    let script = match Script::load(path) {
        Ok(s) => s,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
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
        "data" => match crate::bench::data::run() {
            Ok(f) => {
                println!("data: 1 libtorch thread, best of several epochs");
                println!("  tensor dataset 60000x784 float32 + labels, batch 64, shuffled ({} batches/epoch):", f.tensor_batches);
                println!("    rust iterator, 0 workers   {:>9.0} batches/s", f.tensor_bps);
                println!("    rust iterator, 2 workers   {:>9.0} batches/s", f.tensor_bps_2_workers);
                println!("    script `for b in loader`   {:>9.0} batches/s", f.tensor_bps_script);
                println!("    (PyTorch DataLoader over a TensorDataset: run tools/bench_data_torch.py; aim >= 5x)");
                println!("  image folder, {} PNGs 3x128x128, batch 64 ({} batches/epoch):", f.images, f.image_batches);
                println!("    1 worker                   {:>9.1} batches/s  ({:.2} cores busy)", f.image_bps_1_worker, f.image_cores_1_worker);
                println!("    2 workers                  {:>9.1} batches/s  ({:.2} cores busy)", f.image_bps_2_workers, f.image_cores_2_workers);
                println!("    speed-up                   {:>9.2}x  (aim >= 1.7x)", f.image_speedup());
                println!("    control: two busy threads got {:.2} cores on this machine just now", f.cores_available);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        other => {
            eprintln!("error: unknown benchmark '{other}'; available: dispatch, data");
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
