//! Golden tests of scripts: run each `.rhai`, capture what it prints (and the error report, if it
//! fails), compare with the `.golden` file beside it. Numbers may differ by a tolerance; `--bless`
//! rewrites the golden files.
pub mod compare;

use crate::script::runner::Script;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

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
    let actual = capture(script);
    let gp = golden_path(script);
    if bless {
        return match crate::golden::compare::write_atomic(&gp, &actual) {
            Ok(()) => Outcome::Blessed,
            Err(e) => Outcome::Fail(format!("cannot write {}: {e}", gp.display())),
        };
    }
    let expected = match std::fs::read_to_string(&gp) {
        Ok(s) => s,
        Err(_) => return Outcome::Missing,
    };
    match compare::diff(&expected, &actual, tolerance) {
        None => Outcome::Pass,
        Some(d) => Outcome::Fail(d),
    }
}
