//! Helpers shared by the integration tests.
#![allow(dead_code)]
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `lt` binary cargo built for these tests.
pub fn lt_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lt"))
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// libtorch intra-op threads for the `lt` processes tests start: `LT_TEST_THREADS` (default 1;
/// `tools/test_matrix.sh` runs the suite with 1 and 2).
pub fn threads() -> String {
    std::env::var("LT_TEST_THREADS").unwrap_or_else(|_| "1".into())
}

/// Runs `lt` with `args` in `dir` (`threads()` libtorch threads, 1 by default).
pub fn lt_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(lt_bin())
        .args(args)
        .current_dir(dir)
        .env("OMP_NUM_THREADS", crate::common::threads())
        .output()
        .expect("cannot start the lt binary")
}

pub fn lt(args: &[&str]) -> Output {
    lt_in(&root(), args)
}

/// Writes `source` to a fresh temp dir as `name` and runs `lt run` on it.
pub fn run_script(name: &str, source: &str) -> Output {
    let dir = temp_dir(name);
    let path = dir.join(name);
    std::fs::write(&path, source).expect("write script");
    lt_in(&dir, &["run", name])
}

/// A new, empty directory under the target dir for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let base = std::env::temp_dir().join(format!(
        "lt-test-{}-{}-{}",
        std::process::id(),
        tag.replace(['/', '.'], "_"),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("create temp dir");
    base
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// libtorch's random generator is global to the process and tests run on parallel threads: every
/// in-process test that seeds or draws random numbers holds this lock.
pub fn rng_guard() -> std::sync::MutexGuard<'static, ()> {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    RNG.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs a script in-process with a fresh engine and returns the value of its last expression.
pub fn eval(source: &str) -> Result<rhai::Dynamic, String> {
    let _rng = rng_guard();
    let script = lt::script::runner::Script::from_source(Path::new("test.rhai"), source.to_string())
        .map_err(|e| e.to_string())?;
    script.run(&mut rhai::Scope::new()).map_err(|e| e.to_string())
}

/// Like [`eval`], expecting a FLOAT.
pub fn eval_f64(source: &str) -> f64 {
    let v = eval(source).unwrap_or_else(|e| panic!("script failed:\n{e}"));
    v.as_float().unwrap_or_else(|_| panic!("expected a float, got {}", v.type_name()))
}

/// Like [`eval`], expecting a BOOL.
pub fn eval_bool(source: &str) -> bool {
    let v = eval(source).unwrap_or_else(|e| panic!("script failed:\n{e}"));
    v.as_bool().unwrap_or_else(|_| panic!("expected a bool, got {}", v.type_name()))
}

/// Every file under `dir` (not `.git` or `target`) with its size and modification time, to show
/// that a run changed nothing there.
pub fn tree_snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
            if m.is_dir() {
                if !matches!(e.file_name().to_str(), Some(".git" | "target")) {
                    todo.push(p);
                }
            } else {
                out.insert(p, (m.len(), m.modified().unwrap_or(std::time::UNIX_EPOCH)));
            }
        }
    }
    out
}

/// Runs `lt args` in `dir` with `input` piped to stdin.
pub fn lt_with_input(dir: &Path, args: &[&str], input: &str) -> Output {
    lt_with_bytes(dir, args, input.as_bytes())
}

/// Runs `lt args` in `dir` with the bytes `input` piped to stdin.
pub fn lt_with_bytes(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(lt_bin())
        .args(args)
        .current_dir(dir)
        .env("OMP_NUM_THREADS", threads())
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lt");
    child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
    child.wait_with_output().expect("wait for lt")
}
