//! The Trainer option `profiler`: Lightning's `SimpleProfiler` (`"simple"`), timing the actions
//! Lightning times under the names it gives them (`[LightningModule]<module>.<hook>`,
//! `[Callback]<state_key>.<hook>`, `[Strategy]SingleDeviceStrategy.training_step`, `…backward`,
//! `[_TrainingEpochLoop].train_dataloader_next`, `run_training_batch`, `save_checkpoint`, …), with
//! its report at the end; and what only a scripting host can show beside it: how much of each
//! action ran inside libtorch's ops and how much in the Rhai interpreter and lt itself.
//! `"pytorch"` records libtorch's own autograd profiler (Kineto) for a window of training steps
//! and writes its Chrome trace (Lightning's `PyTorchProfiler`).
//!
//! Nothing here runs when the option is off: the Trainer holds no profiler, and the op timer (a
//! thread-local RecordFunction callback in csrc/profiler.cpp) is registered only while one runs.
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

extern "C" {
    fn lt_op_timer_start(buf: *mut u8, len: usize) -> i32;
    fn lt_op_timer_stop(buf: *mut u8, len: usize) -> i32;
    fn lt_op_time_ns() -> u64;
    fn lt_kineto_start(cuda: i32, buf: *mut u8, len: usize) -> i32;
    fn lt_kineto_stop_save(path: *const std::ffi::c_char, buf: *mut u8, len: usize) -> i32;
}

/// Runs a shim call that reports errors in a buffer.
fn shim(what: &str, f: impl FnOnce(*mut u8, usize) -> i32) -> Result<(), String> {
    let mut buf = [0u8; 1024];
    if f(buf.as_mut_ptr(), buf.len()) == 0 {
        return Ok(());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Err(format!("{what}: {}", String::from_utf8_lossy(&buf[..end])))
}

/// Seconds this thread has spent inside libtorch ops while the op timer runs.
fn op_secs() -> f64 {
    // SAFETY: reads a thread-local counter.
    (unsafe { lt_op_time_ns() }) as f64 * 1e-9
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfilerKind {
    Simple,
    PyTorch,
}

/// The `profiler` option: `"simple"`, `"pytorch"`, or a map with `kind` and the profiler's options
/// (`dirpath`, `filename`; simple: `extended`; pytorch: `wait`, `active`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProfilerConfig {
    pub kind: ProfilerKind,
    /// Where the report (or trace) goes; default: the run's log_dir when `filename` is given.
    pub dirpath: Option<PathBuf>,
    /// Writes the report to `<dirpath>/<stage>-<filename>.txt` (appending) instead of printing it.
    pub filename: Option<String>,
    /// The simple profiler's extra columns (calls, percentage); Lightning's default true.
    pub extended: bool,
    /// The pytorch profiler's schedule: training steps skipped first, then steps recorded
    /// (Lightning's default schedule waits 1 and warms up 1 before 3 active steps).
    pub wait: usize,
    pub active: usize,
}

const PROFILER_KEYS: &[&str] = &["kind", "dirpath", "filename", "extended", "wait", "active"];

impl ProfilerConfig {
    fn of_kind(kind: &str) -> Result<ProfilerConfig, String> {
        let kind = match kind {
            "simple" => ProfilerKind::Simple,
            "pytorch" => ProfilerKind::PyTorch,
            "advanced" => {
                return Err("profiler \"advanced\" is Lightning's cProfile of Python functions, which has no counterpart in lt; valid profilers: \"simple\", \"pytorch\" (libtorch's autograd profiler, a Chrome trace)".into())
            }
            o => return Err(format!("unknown profiler \"{o}\"; valid profilers: \"simple\", \"pytorch\"")),
        };
        Ok(ProfilerConfig { kind, dirpath: None, filename: None, extended: true, wait: 2, active: 3 })
    }

    /// Parses the option (`()` / null: no profiler).
    pub fn parse(v: &Value) -> Result<Option<ProfilerConfig>, String> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => ProfilerConfig::of_kind(s).map(Some),
            Value::Object(m) => {
                if let Some(k) = m.keys().find(|k| !PROFILER_KEYS.contains(&k.as_str())) {
                    return Err(format!(
                        "trainer option 'profiler': unknown key '{k}'; valid keys: {}",
                        PROFILER_KEYS.join(", ")
                    ));
                }
                let kind = m.get("kind").and_then(Value::as_str).ok_or_else(|| {
                    "trainer option 'profiler' as a map needs `kind`: \"simple\" or \"pytorch\"".to_string()
                })?;
                let mut c = ProfilerConfig::of_kind(kind)?;
                let string = |k: &str| -> Result<Option<String>, String> {
                    match m.get(k) {
                        None | Some(Value::Null) => Ok(None),
                        Some(Value::String(s)) => Ok(Some(s.clone())),
                        Some(o) => Err(format!("trainer option 'profiler': '{k}' must be a string, got {o}")),
                    }
                };
                c.dirpath = string("dirpath")?.map(PathBuf::from);
                c.filename = string("filename")?;
                if let Some(e) = m.get("extended") {
                    c.extended = e.as_bool().ok_or_else(|| {
                        format!("trainer option 'profiler': 'extended' must be true or false, got {e}")
                    })?;
                }
                for (k, slot) in [("wait", &mut c.wait), ("active", &mut c.active)] {
                    if let Some(x) = m.get(k) {
                        *slot = x
                            .as_u64()
                            .map(|x| x as usize)
                            .ok_or_else(|| format!("trainer option 'profiler': '{k}' must be an int >= 0, got {x}"))?;
                    }
                }
                let simple_only = c.kind == ProfilerKind::Simple;
                for (k, only) in [("extended", true), ("wait", false), ("active", false)] {
                    if m.contains_key(k) && only != simple_only {
                        return Err(format!(
                            "trainer option 'profiler': '{k}' is not an option of the \"{kind}\" profiler"
                        ));
                    }
                }
                if c.kind == ProfilerKind::PyTorch && c.active == 0 {
                    return Err("trainer option 'profiler': 'active' must be >= 1 (the steps recorded)".into());
                }
                Ok(Some(c))
            }
            o => {
                Err(format!("trainer option 'profiler' must be \"simple\", \"pytorch\" or a map with `kind`, got {o}"))
            }
        }
    }
}

/// Lightning's `Profiler._prepare_filename`: `<stage>-<filename>[-<local_rank>]<extension>`, with
/// path-unsafe characters replaced.
pub fn prepare_filename(stage: Option<&str>, filename: Option<&str>, local_rank: Option<usize>, ext: &str) -> String {
    let rank = local_rank.map(|r| r.to_string());
    let parts: Vec<&str> = [stage, filename, rank.as_deref()].into_iter().flatten().collect();
    let mut base = String::new();
    for c in parts.join("-").chars() {
        let c = if "\\/:*?\"<>|\n\r\t".contains(c) { '_' } else { c };
        if !(c == '_' && base.ends_with('_')) {
            base.push(c);
        }
    }
    let base = base.trim();
    format!("{}{ext}", if base.is_empty() { "profile" } else { base })
}

/// Python's `format(v, ".5")`: like `.5g`, but fixed-point keeps a digit after the point (`3.0`).
fn py5(v: f64) -> String {
    let s = crate::pyfmt::format_g(v, 5);
    if s.contains(['.', 'e', 'n', 'i']) {
        s
    } else {
        format!("{s}.0")
    }
}

#[derive(Debug, Default)]
struct Action {
    name: String,
    durations: Vec<f64>,
    /// Seconds of the action spent inside libtorch ops.
    in_torch: f64,
}

/// Lightning's `SimpleProfiler`, plus the libtorch share of each action.
pub struct SimpleProfiler {
    config: ProfilerConfig,
    start: Instant,
    running: HashMap<String, (Instant, f64)>,
    /// In the order first recorded (Lightning's dict order breaks ties of its sort).
    actions: Vec<Action>,
    index: HashMap<String, usize>,
    stage: Option<String>,
    local_rank: Option<usize>,
    dirpath: Option<PathBuf>,
}

impl SimpleProfiler {
    pub fn new(config: ProfilerConfig) -> Result<SimpleProfiler, String> {
        // SAFETY: the shim catches C++ exceptions and writes at most `len` bytes.
        shim("cannot start the libtorch op timer", |b, l| unsafe { lt_op_timer_start(b, l) })?;
        let dirpath = config.dirpath.clone();
        Ok(SimpleProfiler {
            config,
            start: Instant::now(),
            running: HashMap::new(),
            actions: Vec::new(),
            index: HashMap::new(),
            stage: None,
            local_rank: None,
            dirpath,
        })
    }

    /// Lightning's `setup(stage, local_rank, log_dir)`: the report's title and file.
    pub fn setup(&mut self, stage: &str, local_rank: Option<usize>, log_dir: &Path) {
        self.stage = Some(stage.to_string());
        self.local_rank = local_rank;
        if self.dirpath.is_none() {
            self.dirpath = Some(log_dir.to_path_buf());
        }
    }

    pub fn start(&mut self, action: &str) {
        // an action already running (a hook that re-enters itself) keeps its first start
        self.running.entry(action.to_string()).or_insert_with(|| (Instant::now(), op_secs()));
    }

    pub fn stop(&mut self, action: &str) {
        let Some((t0, torch0)) = self.running.remove(action) else { return };
        let (d, torch) = (t0.elapsed().as_secs_f64(), op_secs() - torch0);
        let i = match self.index.get(action) {
            Some(i) => *i,
            None => {
                self.actions.push(Action { name: action.to_string(), ..Default::default() });
                self.index.insert(action.to_string(), self.actions.len() - 1);
                self.actions.len() - 1
            }
        };
        self.actions[i].durations.push(d);
        self.actions[i].in_torch += torch;
    }

    /// Lightning's report (`SimpleProfiler.summary`), then lt's libtorch / script split.
    pub fn summary(&self) -> String {
        let sep = "\n";
        let mut out = String::new();
        if let Some(s) = &self.stage {
            out.push_str(&format!("{} ", s.to_uppercase()));
        }
        out.push_str(&format!("Profiler Report{sep}"));
        if self.actions.is_empty() {
            return out;
        }
        let w = self.actions.iter().map(|a| a.name.chars().count()).max().unwrap_or(0);
        let total_duration = self.start.elapsed().as_secs_f64();
        let sum = |a: &Action| a.durations.iter().sum::<f64>();
        let mut sorted: Vec<&Action> = self.actions.iter().collect();
        if self.config.extended {
            let row = |a: &str, mean: &str, calls: &str, total: &str, per: &str| {
                table_row(sep, &[(a, w), (mean, 15), (calls, 15), (total, 15), (per, 15)])
            };
            let header = row("Action", "Mean duration (s)", "Num calls", "Total time (s)", "Percentage %");
            let line = format!("{sep}{}", "-".repeat(expanded_len(&header)));
            out.push_str(&format!("{line}{header}{line}"));
            sorted.sort_by(|a, b| sum(b).total_cmp(&sum(a)));
            let calls: usize = sorted.iter().map(|a| a.durations.len()).sum();
            out.push_str(&row("Total", "-", &calls.to_string(), &py5(total_duration), "100 %"));
            out.push_str(&line);
            for a in &sorted {
                let s = sum(a);
                let n = a.durations.len();
                out.push_str(&row(
                    &a.name,
                    &py5(s / n as f64),
                    &n.to_string(),
                    &py5(s),
                    &py5(100.0 * s / total_duration),
                ));
            }
            out.push_str(&line);
        } else {
            let row = |a: &str, mean: &str, total: &str| table_row(sep, &[(a, w), (mean, 15), (total, 15)]);
            let header = row("Action", "Mean duration (s)", "Total time (s)");
            let line = format!("{sep}{}", "-".repeat(expanded_len(&header)));
            out.push_str(&format!("{line}{header}{line}"));
            sorted.sort_by(|a, b| (sum(b) / b.durations.len() as f64).total_cmp(&(sum(a) / a.durations.len() as f64)));
            for a in &sorted {
                let s = sum(a);
                out.push_str(&row(&a.name, &py5(s / a.durations.len() as f64), &py5(s)));
            }
            out.push_str(&line);
        }
        out.push_str(sep);
        // what a scripting host adds: each action's time inside libtorch's ops vs the rest
        // (the Rhai interpreter running the script, and lt's own Rust)
        let row = |a: &str, total: &str, torch: &str, script: &str, per: &str| {
            table_row(sep, &[(a, w), (total, 15), (torch, 15), (script, 18), (per, 15)])
        };
        let header = row("Action", "Total time (s)", "libtorch (s)", "Rhai + lt (s)", "libtorch %");
        let line = format!("{sep}{}", "-".repeat(expanded_len(&header)));
        out.push_str(&format!(
            "{sep}Time inside libtorch ops vs the script (Rhai interpreter and lt){line}{header}{line}"
        ));
        for a in &sorted {
            let s = sum(a);
            let torch = a.in_torch.min(s);
            let per = if s > 0.0 { py5(100.0 * torch / s) } else { "-".into() };
            out.push_str(&row(&a.name, &py5(s), &py5(torch), &py5(s - torch), &per));
        }
        out.push_str(&line);
        out.push_str(sep);
        out
    }

    /// Lightning's `describe()`: the report to `<dirpath>/<stage>-<filename>.txt` (appended) when
    /// a filename was given, else to the log.
    pub fn describe(&mut self) -> Result<(), String> {
        let summary = self.summary();
        match (&self.config.filename, &self.dirpath) {
            (Some(f), Some(dir)) => {
                let name = prepare_filename(self.stage.as_deref(), Some(f), self.local_rank, ".txt");
                std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                let path = dir.join(name);
                use std::io::Write;
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .and_then(|mut f| f.write_all(summary.as_bytes()))
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))
            }
            _ => {
                if self.local_rank.is_none_or(|r| r == 0) {
                    infoln!("{summary}");
                }
                Ok(())
            }
        }
    }
}

impl Drop for SimpleProfiler {
    fn drop(&mut self) {
        // SAFETY: as in `new`.
        let _ = shim("", |b, l| unsafe { lt_op_timer_stop(b, l) });
    }
}

/// The length of a row with its tabs expanded to 8-column stops (Python's `expandtabs()`).
/// One row of the report: `sep`, then each cell padded to its width as `|  cell\t`, then `|`.
fn table_row(sep: &str, cells: &[(&str, usize)]) -> String {
    let mut row = format!("{sep}|");
    for (cell, width) in cells {
        row.push_str(&format!("  {cell:<width$}\t|", width = *width));
    }
    row
}

fn expanded_len(s: &str) -> usize {
    let mut col = 0;
    for c in s.chars() {
        match c {
            '\t' => col += 8 - col % 8,
            '\n' => col = 0,
            _ => col += 1,
        }
    }
    col
}

/// Lightning's `PyTorchProfiler` reduced to what libtorch offers a C++ host: Kineto records the
/// training steps `wait .. wait + active` (CPU ops with input shapes, CUDA kernels on a GPU) and
/// the trace is written as Chrome trace JSON to `<dirpath>/<stage>-<filename>.pt.trace.json`.
pub struct PyTorchProfiler {
    config: ProfilerConfig,
    /// Training steps seen so far.
    steps: usize,
    recording: bool,
    stage: Option<String>,
    local_rank: Option<usize>,
    dirpath: Option<PathBuf>,
    cuda: bool,
    /// The trace written, once written.
    pub written: Option<PathBuf>,
}

impl PyTorchProfiler {
    pub fn new(config: ProfilerConfig, cuda: bool) -> PyTorchProfiler {
        let dirpath = config.dirpath.clone();
        PyTorchProfiler {
            config,
            steps: 0,
            recording: false,
            stage: None,
            local_rank: None,
            dirpath,
            cuda,
            written: None,
        }
    }

    pub fn setup(&mut self, stage: &str, local_rank: Option<usize>, log_dir: &Path) {
        self.stage = Some(stage.to_string());
        self.local_rank = local_rank;
        if self.dirpath.is_none() {
            self.dirpath = Some(log_dir.to_path_buf());
        }
    }

    /// Called as each training step (batch) starts: starts recording at step `wait`.
    pub fn step_start(&mut self) -> Result<(), String> {
        if self.written.is_none() && !self.recording && self.steps == self.config.wait {
            // SAFETY: the shim catches C++ exceptions and writes at most `len` bytes.
            shim("cannot start the libtorch profiler", |b, l| unsafe { lt_kineto_start(self.cuda as i32, b, l) })?;
            self.recording = true;
        }
        Ok(())
    }

    /// Called as each training step ends: writes the trace after `active` recorded steps.
    pub fn step_end(&mut self) -> Result<(), String> {
        self.steps += 1;
        if self.recording && self.steps >= self.config.wait + self.config.active {
            self.finish()?;
        }
        Ok(())
    }

    /// Stops recording (if it runs) and writes the trace of what was recorded.
    pub fn finish(&mut self) -> Result<(), String> {
        if !self.recording {
            return Ok(());
        }
        self.recording = false;
        let dir = self.dirpath.clone().unwrap_or_else(|| PathBuf::from("."));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let name = prepare_filename(
            self.stage.as_deref(),
            Some(self.config.filename.as_deref().unwrap_or("profile")),
            self.local_rank,
            ".pt.trace.json",
        );
        let path = dir.join(name);
        let c = std::ffi::CString::new(path.to_string_lossy().as_bytes())
            .map_err(|_| format!("the trace path {} holds a NUL byte", path.display()))?;
        // SAFETY: `c` outlives the call; the shim catches C++ exceptions.
        shim("cannot write the libtorch profiler's trace", |b, l| unsafe { lt_kineto_stop_save(c.as_ptr(), b, l) })?;
        infoln!("the libtorch profiler's trace of {} training step(s) is in {}", self.config.active, path.display());
        self.written = Some(path);
        Ok(())
    }
}

impl Drop for PyTorchProfiler {
    fn drop(&mut self) {
        if self.recording {
            let _ = self.finish();
        }
    }
}

/// The Trainer's profiler, if the option asks for one.
pub enum Profiler {
    Simple(SimpleProfiler),
    PyTorch(PyTorchProfiler),
}

impl Profiler {
    pub fn new(config: &ProfilerConfig, cuda: bool) -> Result<Profiler, String> {
        Ok(match config.kind {
            ProfilerKind::Simple => Profiler::Simple(SimpleProfiler::new(config.clone())?),
            ProfilerKind::PyTorch => Profiler::PyTorch(PyTorchProfiler::new(config.clone(), cuda)),
        })
    }

    pub fn setup(&mut self, stage: &str, local_rank: Option<usize>, log_dir: &Path) {
        match self {
            Profiler::Simple(p) => p.setup(stage, local_rank, log_dir),
            Profiler::PyTorch(p) => p.setup(stage, local_rank, log_dir),
        }
    }

    pub fn start(&mut self, action: &str) {
        if let Profiler::Simple(p) = self {
            p.start(action);
        }
    }

    pub fn stop(&mut self, action: &str) {
        if let Profiler::Simple(p) = self {
            p.stop(action);
        }
    }

    /// The end of a run: the simple profiler's report, the pytorch profiler's trace if its window
    /// was cut short.
    pub fn describe(&mut self) -> Result<(), String> {
        match self {
            Profiler::Simple(p) => p.describe(),
            Profiler::PyTorch(p) => p.finish(),
        }
    }
}
