//! Experiment loggers: where `logged_metrics` go. The CSV logger writes Lightning's layout,
//! `lightning_logs/version_N/metrics.csv` and `hparams.yaml`: one row per `log_metrics` call (so
//! training and validation metrics of one step are separate rows, as Lightning writes them).
//!
//! Besides scalars, a logger takes histograms, images and text ([`super::media`]): TensorBoard
//! writes them as its own summaries, the CSV logger as files under the version folder
//! (`histograms/<tag>/step_<N>.json`, `images/<tag>/step_<N>.png`, `text/<tag>/step_<N>.txt`).
use super::media::{Histogram, Image};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub trait Logger {
    /// Lightning's `log_hyperparams(params, metrics)`: records `hparams` (merged into those
    /// recorded before, written to `hparams.yaml`); `metrics` (the HParams plugin's metrics,
    /// logged as scalars at step 0) default to TensorBoard's `hp_metric = -1` placeholder.
    fn log_hyperparams(&mut self, hparams: &Value, metrics: Option<&BTreeMap<String, f64>>) -> Result<(), String>;
    fn log_metrics(&mut self, metrics: &BTreeMap<String, f64>, step: usize) -> Result<(), String>;
    /// A histogram of values (TensorBoard's `add_histogram`).
    fn log_histogram(&mut self, tag: &str, histogram: &Histogram, step: usize) -> Result<(), String>;
    /// An image (TensorBoard's `add_image`).
    fn log_image(&mut self, tag: &str, image: &Image, step: usize) -> Result<(), String>;
    /// A text (TensorBoard's `add_text`).
    fn log_text(&mut self, tag: &str, text: &str, step: usize) -> Result<(), String>;
    /// Writes out what is buffered.
    fn save(&mut self) -> Result<(), String>;
    fn log_dir(&self) -> Option<PathBuf>;
    /// Lightning's class name (`CSVLogger`, `TensorBoardLogger`).
    fn class_name(&self) -> &'static str;
}

/// The run's loggers, shared by the Trainer (which logs what `this.log` collected) and the script
/// (`this.logger`, `this.loggers`, which log through them directly). Never borrowed across a hook.
#[derive(Clone, Default)]
pub struct Loggers(Rc<RefCell<Vec<Box<dyn Logger>>>>);

impl Loggers {
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn extend(&self, loggers: Vec<Box<dyn Logger>>) {
        self.0.borrow_mut().extend(loggers);
    }
    /// Removes every logger, returning them (the LR finder runs without loggers, then puts them back).
    pub fn take(&self) -> Vec<Box<dyn Logger>> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
    pub fn clear(&self) {
        self.0.borrow_mut().clear();
    }
    /// The first logger's version folder (Lightning's `trainer.log_dir`).
    pub fn log_dir(&self) -> Option<PathBuf> {
        self.0.borrow().first().and_then(|l| l.log_dir())
    }
    /// Runs `f` on every logger, stopping at the first error.
    pub fn each(&self, mut f: impl FnMut(&mut dyn Logger) -> Result<(), String>) -> Result<(), String> {
        let mut ls = self.0.try_borrow_mut().map_err(|_| "the loggers are in use".to_string())?;
        for l in ls.iter_mut() {
            f(l.as_mut())?;
        }
        Ok(())
    }
    /// Runs `f` on logger `index` (None when there is no such logger).
    pub fn with<T>(&self, index: usize, f: impl FnOnce(&mut dyn Logger) -> T) -> Result<Option<T>, String> {
        let mut ls = self.0.try_borrow_mut().map_err(|_| "the loggers are in use".to_string())?;
        Ok(ls.get_mut(index).map(|l| f(l.as_mut())))
    }
}

/// The loggers a run writes with, all into one `lightning_logs/version_N` folder (the Trainer
/// option `loggers`, default both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoggerKind {
    /// `metrics.csv` + `hparams.yaml` ([`CsvLogger`]).
    Csv,
    /// TensorBoard event files ([`super::tensorboard::TensorBoardLogger`]).
    TensorBoard,
}

impl LoggerKind {
    /// `"csv"` or `"tensorboard"` (also `"tb"`).
    pub fn parse(s: &str) -> Result<LoggerKind, String> {
        match s {
            "csv" => Ok(LoggerKind::Csv),
            "tensorboard" | "tb" => Ok(LoggerKind::TensorBoard),
            o => Err(format!("unknown logger \"{o}\"; expected \"csv\" or \"tensorboard\"")),
        }
    }
}

/// Creates the loggers of `kinds` in the next free `root/lightning_logs/version_N` folder.
pub fn make_loggers(root: &Path, kinds: &[LoggerKind]) -> Result<Vec<Box<dyn Logger>>, String> {
    if kinds.is_empty() {
        return Ok(Vec::new());
    }
    let dir = next_version_dir(root, "lightning_logs");
    let mut out: Vec<Box<dyn Logger>> = Vec::new();
    for k in kinds {
        match k {
            LoggerKind::Csv => out.push(Box::new(CsvLogger::in_dir(&dir)?)),
            LoggerKind::TensorBoard => out.push(Box::new(super::tensorboard::TensorBoardLogger::new(&dir)?)),
        }
    }
    Ok(out)
}

/// The next free `version_N` folder under `root/lightning_logs`.
pub fn next_version_dir(root: &Path, name: &str) -> PathBuf {
    let base = root.join(name);
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(&base) {
        for e in rd.flatten() {
            if let Some(v) =
                e.file_name().to_str().and_then(|s| s.strip_prefix("version_")).and_then(|s| s.parse::<usize>().ok())
            {
                n = n.max(v + 1);
            }
        }
    }
    base.join(format!("version_{n}"))
}

pub use crate::fs::write_atomic;

/// Writes `dir/hparams.yaml` as Lightning's loggers do (`{}` when there are none), creating `dir`.
pub fn write_hparams_yaml(dir: &Path, hparams: &Value) -> Result<(), String> {
    let hparams = if hparams.is_null() { &Value::Object(Default::default()) } else { hparams };
    let mut y = String::new();
    to_yaml(hparams, 0, &mut y);
    if y.is_empty() {
        y.push_str("{}\n");
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write_atomic(&dir.join("hparams.yaml"), y.as_bytes())
}

/// Renders a JSON value as YAML (the subset hparams need: maps, lists, scalars) that YAML 1.1
/// readers (PyYAML, which Lightning and pandas users load it with) and YAML 1.2 readers both read
/// back as the same value: keys and strings are quoted unless plainly a word, floats always carry a
/// `.` and a signed exponent (`1.0e-05`; PyYAML reads `1e-5` as a string).
pub fn to_yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            if m.is_empty() {
                out.push_str("{}\n");
                return;
            }
            for (k, val) in m {
                let k = yaml_string(k);
                match val {
                    Value::Object(inner) if !inner.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        to_yaml(val, indent + 2, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        to_yaml(val, indent, out);
                    }
                    _ => out.push_str(&format!("{pad}{k}: {}\n", yaml_scalar(val))),
                }
            }
        }
        Value::Array(a) => {
            for val in a {
                match val {
                    Value::Object(m) if !m.is_empty() => {
                        out.push_str(&format!("{pad}-\n"));
                        to_yaml(val, indent + 2, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}-\n"));
                        to_yaml(val, indent + 2, out);
                    }
                    _ => out.push_str(&format!("{pad}- {}\n", yaml_scalar(val))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", yaml_scalar(other))),
    }
}

/// Words YAML 1.1 or 1.2 resolve to a bool or null when plain.
const YAML_RESERVED: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"];

/// A string as a YAML key or scalar: plain when it is a word that no YAML version reads as
/// anything else (a letter or `_` first, then letters, digits, `_ - . /`), else double-quoted with
/// JSON's escapes (valid YAML).
fn yaml_string(s: &str) -> String {
    let mut chars = s.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        && !YAML_RESERVED.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
    }
}

/// A float as both YAML 1.1 and 1.2 read it: `0.001`, `3.0`, `1.0e-05`, `1.5e+20`.
fn yaml_float(x: f64) -> String {
    if x.is_nan() {
        return ".nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { ".inf".into() } else { "-.inf".into() };
    }
    let s = format!("{x:?}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let mantissa = if mantissa.contains('.') { mantissa.to_string() } else { format!("{mantissa}.0") };
            let (sign, digits) = exp.strip_prefix('-').map(|d| ("-", d)).unwrap_or(("+", exp));
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None if s.contains('.') => s,
        None => format!("{s}.0"),
    }
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_f64() => yaml_float(n.as_f64().unwrap_or(f64::NAN)),
        Value::Number(n) => n.to_string(),
        Value::String(s) => yaml_string(s),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(_) | Value::Array(_) => "{}".into(),
    }
}

/// `metrics.csv` + `hparams.yaml` in a version folder. Rows are kept only until the next
/// [`Logger::save`], which appends them to the file; when rows bring new columns the file is
/// rewritten once with the wider header (its earlier rows get empty cells there), as Lightning's
/// `_ExperimentWriter._rewrite_with_new_header` does, so every row has the header's column count.
pub struct CsvLogger {
    dir: PathBuf,
    /// (step, column → value) logged since the last save: one row per `log_metrics` call, as
    /// Lightning's CSVLogger writes them.
    pending: Vec<(usize, BTreeMap<String, f64>)>,
    /// The header of the file as last written (Lightning's order: sorted, "epoch" and "step" among
    /// them).
    columns: Vec<String>,
    /// The hyperparameters recorded so far (each `log_hyperparams` merges into them).
    hparams: Value,
}

impl CsvLogger {
    /// A logger writing to the next `version_N` under `root/lightning_logs`.
    pub fn new(root: &Path) -> Result<CsvLogger, String> {
        CsvLogger::in_dir(&next_version_dir(root, "lightning_logs"))
    }

    /// A logger writing to `dir` (shared with other loggers of the same run).
    /// The folder is created on the first write, so a run that fails in setup leaves nothing.
    pub fn in_dir(dir: &Path) -> Result<CsvLogger, String> {
        Ok(CsvLogger { dir: dir.to_path_buf(), pending: Vec::new(), columns: Vec::new(), hparams: Value::Null })
    }

    fn path(&self) -> PathBuf {
        self.dir.join("metrics.csv")
    }

    /// The cells of one logged row under `self.columns`.
    fn cells(&self, step: usize, row: &BTreeMap<String, f64>) -> Vec<String> {
        self.columns
            .iter()
            .map(|c| match (c.as_str(), row.get(c.as_str())) {
                ("step", _) => step.to_string(),
                ("epoch", Some(v)) => format!("{}", *v as i64),
                (_, Some(v)) => format_value(*v),
                (_, None) => String::new(),
            })
            .collect()
    }

    /// The rows already in the file, re-laid under the (wider) `self.columns`.
    fn rows_on_disk(&self, path: &Path) -> Result<Vec<Vec<String>>, String> {
        let bytes = crate::fs::read_regular(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut r = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes.as_slice());
        let header: Vec<String> = r
            .headers()
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .iter()
            .map(str::to_string)
            .collect();
        let mut out = Vec::new();
        for rec in r.records() {
            let rec = rec.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let by_name: BTreeMap<&str, &str> = header.iter().map(String::as_str).zip(rec.iter()).collect();
            out.push(self.columns.iter().map(|c| by_name.get(c.as_str()).unwrap_or(&"").to_string()).collect());
        }
        Ok(out)
    }
}

/// CSV text of `rows` (quoted where a cell needs it).
fn csv_text<'a>(rows: impl IntoIterator<Item = &'a [String]>) -> Result<Vec<u8>, String> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    for r in rows {
        w.write_record(r).map_err(|e| format!("cannot write metrics.csv: {e}"))?;
    }
    w.into_inner().map_err(|e| format!("cannot write metrics.csv: {e}"))
}

/// A value as Python's `repr` of a float writes it (Lightning's CSVLogger): logged values are
/// float32, so `1.7387531995773315`, `3.0`, `1e-07`.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    crate::pyfmt::exponent(&format!("{v:?}"))
}

/// Merges `new` into the hyperparameters `into` holds (top-level keys of `new` win), as
/// Lightning's loggers `update` their `hparams`.
pub fn merge_hparams(into: &mut Value, new: &Value) {
    match (into.as_object_mut(), new.as_object()) {
        (Some(a), Some(b)) => a.extend(b.iter().map(|(k, v)| (k.clone(), v.clone()))),
        _ if !new.is_null() => *into = new.clone(),
        _ => {}
    }
}

impl Logger for CsvLogger {
    fn log_hyperparams(&mut self, hparams: &Value, metrics: Option<&BTreeMap<String, f64>>) -> Result<(), String> {
        merge_hparams(&mut self.hparams, hparams);
        write_hparams_yaml(&self.dir, &self.hparams)?;
        // Lightning's CSVLogger takes no metrics here; lt logs them as a row at step 0, as
        // TensorBoardLogger.log_hyperparams does
        match metrics {
            Some(m) if !m.is_empty() => self.log_metrics(m, 0),
            _ => Ok(()),
        }
    }

    fn log_histogram(&mut self, tag: &str, histogram: &Histogram, step: usize) -> Result<(), String> {
        let path = super::media::file_path(&self.dir, "histograms", tag, step, "json")?;
        let text = serde_json::to_string_pretty(&histogram.to_json()).map_err(|e| e.to_string())?;
        super::media::write_file(&path, text.as_bytes())
    }

    fn log_image(&mut self, tag: &str, image: &Image, step: usize) -> Result<(), String> {
        let path = super::media::file_path(&self.dir, "images", tag, step, "png")?;
        super::media::write_file(&path, &image.png()?)
    }

    fn log_text(&mut self, tag: &str, text: &str, step: usize) -> Result<(), String> {
        let path = super::media::file_path(&self.dir, "text", tag, step, "txt")?;
        super::media::write_file(&path, text.as_bytes())
    }

    fn class_name(&self) -> &'static str {
        "CSVLogger"
    }

    fn log_metrics(&mut self, metrics: &BTreeMap<String, f64>, step: usize) -> Result<(), String> {
        self.pending.push((step, metrics.clone()));
        Ok(())
    }

    fn save(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let known: BTreeSet<&str> = self.columns.iter().map(String::as_str).collect();
        let mut new: BTreeSet<String> = BTreeSet::new();
        for (_, row) in &self.pending {
            new.extend(row.keys().filter(|k| !known.contains(k.as_str())).cloned());
        }
        if !known.contains("step") {
            new.insert("step".into());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let path = self.path();
        let exists = path.is_file();
        let pending = std::mem::take(&mut self.pending);
        if !new.is_empty() || !exists {
            // a new header: the file is written whole (atomically), its earlier rows widened
            self.columns.extend(new);
            self.columns.sort();
            let old = if exists { self.rows_on_disk(&path)? } else { Vec::new() };
            let fresh: Vec<Vec<String>> = pending.iter().map(|(step, row)| self.cells(*step, row)).collect();
            let text = csv_text(
                std::iter::once(self.columns.as_slice())
                    .chain(old.iter().map(Vec::as_slice))
                    .chain(fresh.iter().map(Vec::as_slice)),
            )?;
            return write_atomic(&path, &text);
        }
        let fresh: Vec<Vec<String>> = pending.iter().map(|(step, row)| self.cells(*step, row)).collect();
        let text = csv_text(fresh.iter().map(Vec::as_slice))?;
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&text))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    fn log_dir(&self) -> Option<PathBuf> {
        Some(self.dir.clone())
    }
}
