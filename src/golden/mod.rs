//! Golden tests of scripts: run each `.rhai`, capture what it prints (and the error report, if it
//! fails), compare with the `.golden` file beside it. Numbers may differ by a tolerance; `--bless`
//! rewrites the golden files.
//!
//! A module script (one with `training_step`) runs as `lt run` would (fit, then test), in a child
//! process of this binary so everything the Trainer prints is captured: progress bars off, one
//! libtorch thread (or OMP_NUM_THREADS), libtorch's fixed default seed, breakpoints off, logs in a temp folder. A
//! `// golden-args: --set trainer.fast_dev_run=2` line adds arguments. When `x.metrics.golden`
//! exists beside `x.rhai`, the run's `metrics.csv` is compared with it too.
pub mod compare;

use crate::script::runner::Script;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// libtorch threads golden runs use: `OMP_NUM_THREADS` when set to a positive number, else 1.
pub fn threads() -> i32 {
    std::env::var("OMP_NUM_THREADS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(1)
}

/// Outcome of one script.
#[derive(Debug)]
pub enum Outcome {
    Pass,
    /// The readable diff, expected vs actual.
    Fail(String),
    Blessed,
    /// No `.golden` file (and not blessing).
    Missing,
}

/// Runs `path` in-process and returns everything it printed, then its error report if it failed.
pub fn capture(path: &Path) -> String {
    let out = Rc::new(RefCell::new(String::new()));
    let source = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => return format!("error: cannot read {}: {e}\n", path.display()),
    };
    let mut script = match Script::from_source(path, source) {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    let sink = out.clone();
    script.engine.on_print(move |s| {
        let mut o = sink.borrow_mut();
        o.push_str(s);
        o.push('\n');
    });
    let sink = out.clone();
    script.engine.on_debug(move |s, _, _| {
        let mut o = sink.borrow_mut();
        o.push_str(s);
        o.push('\n');
    });
    let result = script.run(&mut rhai::Scope::new());
    let mut text = out.borrow().clone();
    if let Err(e) = result {
        text.push_str(&e.to_string());
    }
    text
}

/// Whether `path` compiles as a module script.
fn is_module(path: &Path) -> bool {
    Script::load(path).is_ok_and(|s| crate::cli::train::is_module_script(&s))
}

/// The arguments of `// golden-args:` lines.
pub fn golden_args(source: &str) -> Vec<String> {
    source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("// golden-args:"))
        .flat_map(|a| a.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// Runs a module script like `lt run` in a child process; returns what it printed (stdout, then
/// stderr, then the exit status when it failed) and its `metrics.csv`, if it wrote one.
pub fn capture_module(path: &Path) -> (String, Option<String>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let source = std::fs::read_to_string(path).unwrap_or_default();
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return (format!("error: cannot find the lt binary: {e}\n"), None),
    };
    let root =
        std::env::temp_dir().join(format!("lt-golden-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::create_dir_all(&root);
    let out = std::process::Command::new(exe)
        .arg("run")
        .arg(path)
        .args(["--set", "trainer.enable_progress_bar=false", "--set"])
        .arg(format!("trainer.default_root_dir={}", root.display()))
        // `<root>` in golden-args is the run's temp folder (for files a script writes)
        .args(golden_args(&source).into_iter().map(|a| a.replace("<root>", &root.display().to_string())))
        .env("OMP_NUM_THREADS", threads().to_string())
        .env("LT_BREAKPOINTS", "off")
        .stdin(std::process::Stdio::null())
        .output();
    let mut text = match out {
        Ok(o) => {
            let mut t = String::from_utf8_lossy(&o.stdout).to_string();
            t.push_str(&String::from_utf8_lossy(&o.stderr));
            if !o.status.success() {
                t.push_str(&format!("exit status: {}\n", o.status.code().unwrap_or(-1)));
            }
            t
        }
        Err(e) => format!("error: cannot run the lt binary: {e}\n"),
    };
    text = text.replace(&root.display().to_string(), "<root>");
    let metrics = find_file(&root, "metrics.csv").and_then(|p| std::fs::read_to_string(p).ok());
    let _ = std::fs::remove_dir_all(&root);
    (text, metrics)
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in &entries {
        if p.is_file() && p.file_name().is_some_and(|n| n == name) {
            return Some(p.clone());
        }
    }
    entries.iter().filter(|p| p.is_dir()).find_map(|p| find_file(p, name))
}

/// The metrics golden file of a module script: `x.rhai` → `x.metrics.golden`.
pub fn metrics_golden_path(script: &Path) -> PathBuf {
    script.with_extension("metrics.golden")
}

/// The golden file of a script: `x.rhai` → `x.golden`.
pub fn golden_path(script: &Path) -> PathBuf {
    script.with_extension("golden")
}

/// Every `.rhai` under `paths` (files as given, folders recursively), sorted.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            for entry in rd {
                let entry = entry.map_err(|e| e.to_string())?;
                walk(&entry.path(), out)?;
            }
        } else if p.extension().is_some_and(|e| e == "rhai") {
            out.push(p.to_path_buf());
        } else if !p.exists() {
            return Err(format!("no such file or folder: {}", p.display()));
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out)?;
    }
    out.sort();
    Ok(out)
}

/// Runs one script against its golden file.
pub fn check(script: &Path, bless: bool, tolerance: f64) -> Outcome {
    let (actual, metrics) = if is_module(script) { capture_module(script) } else { (capture(script), None) };
    let (gp, mp) = (golden_path(script), metrics_golden_path(script));
    if bless {
        let mut r = compare::write_atomic(&gp, &actual).map_err(|e| format!("cannot write {}: {e}", gp.display()));
        if let (Ok(()), Some(m)) = (&r, &metrics) {
            r = compare::write_atomic(&mp, m).map_err(|e| format!("cannot write {}: {e}", mp.display()));
        }
        return match r {
            Ok(()) => Outcome::Blessed,
            Err(e) => Outcome::Fail(e),
        };
    }
    let expected = match std::fs::read_to_string(&gp) {
        Ok(s) => s,
        Err(_) => return Outcome::Missing,
    };
    if let Some(d) = compare::diff(&expected, &actual, tolerance) {
        return Outcome::Fail(d);
    }
    if let Ok(expected) = std::fs::read_to_string(&mp) {
        return match metrics {
            None => Outcome::Fail(format!("{} exists but the run wrote no metrics.csv", mp.display())),
            Some(m) => match compare::diff(&expected, &m, tolerance) {
                None => Outcome::Pass,
                Some(d) => Outcome::Fail(format!("metrics.csv differs from {}:\n{d}", mp.display())),
            },
        };
    }
    Outcome::Pass
}
