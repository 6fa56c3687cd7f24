//! A TensorBoard logger that writes event files itself, with no TensorFlow or protoc: the file is a
//! TFRecord stream (`u64 length`, masked CRC32C of the length, the record, masked CRC32C of the
//! record) of `Event` protobufs encoded by hand. It writes what Lightning's `TensorBoardLogger`
//! writes, in the same folder layout: `lightning_logs/version_N/events.out.tfevents.<secs>.<host>.<pid>.0`
//! beside `hparams.yaml`:
//! - the header event `file_version: "brain.Event:2"`;
//! - one `simple_value` scalar per logged metric (`Event{wall_time, step, summary{value{tag, simple_value}}}`);
//! - hyperparameters through the HParams plugin (`_hparams_/experiment`, `_hparams_/session_start_info`,
//!   `_hparams_/session_end_info` summaries, plugin name `hparams`), so they show in TensorBoard's
//!   HPARAMS tab, with Lightning's default `hp_metric = -1` at step 0 unless metrics are given;
//! - histograms (`Summary.Value.histo`, a `HistogramProto`), images (`Summary.Value.image`: a PNG
//!   with height, width and colorspace) and text (a string tensor under `<tag>/text_summary`, plugin
//!   `text`), as `SummaryWriter.add_histogram` / `add_image` / `add_text` write them.
use super::logger::{merge_hparams, write_hparams_yaml, Logger};
use super::media::{Histogram, Image};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// CRC-32C, the checksum TFRecord uses (shared with checkpoints: [`crate::checksum`]).
pub use crate::checksum::crc32c;

/// TFRecord's masked CRC: rotate right by 15 and add a constant.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Frames one record: length, masked CRC of the length, data, masked CRC of the data.
pub fn tfrecord(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// A minimal protobuf writer: just the wire types the event format needs.
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }
    fn uint(&mut self, field: u32, v: u64) -> &mut Self {
        self.key(field, 0);
        self.varint(v);
        self
    }
    fn double(&mut self, field: u32, v: f64) -> &mut Self {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn float(&mut self, field: u32, v: f32) -> &mut Self {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, field: u32, v: &[u8]) -> &mut Self {
        self.key(field, 2);
        self.varint(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }
    fn msg(&mut self, field: u32, m: &Pb) -> &mut Self {
        self.bytes(field, &m.0)
    }
    /// A packed `repeated double`.
    fn doubles(&mut self, field: u32, v: &[f64]) -> &mut Self {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.bytes(field, &bytes)
    }
}

/// `Summary.Value{tag, histo: HistogramProto}`.
fn histogram_value(tag: &str, h: &Histogram) -> Pb {
    let mut p = Pb::default();
    p.double(1, h.min).double(2, h.max).double(3, h.num).double(4, h.sum).double(5, h.sum_squares);
    p.doubles(6, &h.bucket_limit).doubles(7, &h.bucket);
    let mut v = Pb::default();
    v.bytes(1, tag.as_bytes()).msg(5, &p);
    v
}

/// `Summary.Value{tag, image: Summary.Image{height, width, colorspace, encoded_image_string}}`.
fn image_value(tag: &str, img: &Image) -> Result<Pb, String> {
    let mut p = Pb::default();
    p.uint(1, img.height as u64).uint(2, img.width as u64).uint(3, img.channels as u64).bytes(4, &img.png()?);
    let mut v = Pb::default();
    v.bytes(1, tag.as_bytes()).msg(4, &p);
    Ok(v)
}

/// The text plugin's summary: `Summary.Value{tag: "<tag>/text_summary", metadata{plugin_data{
/// plugin_name: "text"}}, tensor: TensorProto{dtype: DT_STRING, tensor_shape [1], string_val}}`.
fn text_value(tag: &str, text: &str) -> Pb {
    let mut pd = Pb::default();
    pd.bytes(1, b"text"); // TextPluginData(version=0) serializes to nothing
    let mut meta = Pb::default();
    meta.msg(1, &pd);
    let mut dim = Pb::default();
    dim.uint(1, 1);
    let mut shape = Pb::default();
    shape.msg(2, &dim);
    let mut tensor = Pb::default();
    tensor.uint(1, 7).msg(2, &shape).bytes(8, text.as_bytes()); // DT_STRING = 7
    let mut v = Pb::default();
    v.bytes(1, format!("{tag}/text_summary").as_bytes()).msg(9, &meta).msg(8, &tensor);
    v
}

/// `Summary.Value{tag, simple_value}`.
fn scalar_value(tag: &str, v: f32) -> Pb {
    let mut p = Pb::default();
    p.bytes(1, tag.as_bytes()).float(2, v);
    p
}

/// `Event{wall_time, step, summary{value…}}`.
fn summary_event(wall_time: f64, step: i64, values: &[Pb]) -> Vec<u8> {
    let mut summary = Pb::default();
    for v in values {
        summary.msg(1, v);
    }
    let mut e = Pb::default();
    e.double(1, wall_time).uint(2, step as u64).msg(5, &summary);
    e.0
}

fn now_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    let name = if rc == 0 {
        String::from_utf8_lossy(&buf[..buf.iter().position(|&b| b == 0).unwrap_or(buf.len())]).to_string()
    } else {
        String::new()
    };
    let clean: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect();
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean
    }
}

/// Flattens nested maps with `/` between keys, as Lightning's `_flatten_dict` does.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}/{k}") };
                flatten(&key, val, out);
            }
        }
        other if !prefix.is_empty() => {
            out.insert(prefix.to_string(), other.clone());
        }
        _ => {}
    }
}

/// A `google.protobuf.Value` for an hparam: numbers, bools and strings as themselves, anything
/// else as its JSON text (Lightning's sanitizer turns such values into strings too).
fn pb_value(v: &Value) -> (Pb, u64) {
    let mut p = Pb::default();
    let dtype = match v {
        Value::Number(n) => {
            p.double(2, n.as_f64().unwrap_or(0.0));
            3 // DATA_TYPE_FLOAT64
        }
        Value::Bool(b) => {
            p.uint(4, u64::from(*b));
            2 // DATA_TYPE_BOOL
        }
        Value::String(s) => {
            p.bytes(3, s.as_bytes());
            1 // DATA_TYPE_STRING
        }
        other => {
            p.bytes(3, other.to_string().as_bytes());
            1
        }
    };
    (p, dtype)
}

/// A `Summary.Value` carrying HParams plugin data under `tag`.
fn hparams_value(tag: &str, plugin_data: &Pb) -> Pb {
    let mut content = Pb::default();
    content.uint(1, 0); // HParamsPluginData.version
    content.0.extend_from_slice(&plugin_data.0);
    let mut pd = Pb::default();
    pd.bytes(1, b"hparams").bytes(2, &content.0);
    let mut meta = Pb::default();
    meta.msg(1, &pd);
    let mut v = Pb::default();
    v.bytes(1, tag.as_bytes()).msg(9, &meta);
    v
}

/// The three HParams plugin summaries for `hparams` with `metrics` as the experiment's metrics.
fn hparams_events(hparams: &BTreeMap<String, Value>, metrics: &[&str], wall_time: f64) -> Vec<Vec<u8>> {
    let mut experiment = Pb::default();
    let mut start = Pb::default();
    for (k, v) in hparams {
        let (val, dtype) = pb_value(v);
        let mut info = Pb::default();
        info.bytes(1, k.as_bytes()).uint(4, dtype);
        experiment.msg(4, &info);
        let mut entry = Pb::default();
        entry.bytes(1, k.as_bytes()).msg(2, &val);
        start.msg(1, &entry);
    }
    for m in metrics {
        let mut name = Pb::default();
        name.bytes(2, m.as_bytes());
        let mut info = Pb::default();
        info.msg(1, &name);
        experiment.msg(5, &info);
    }
    start.double(5, wall_time);
    let mut end = Pb::default();
    end.uint(1, 1).double(2, wall_time); // STATUS_SUCCESS
    let wrap = |field: u32, m: &Pb| {
        let mut p = Pb::default();
        p.msg(field, m);
        p
    };
    [
        ("_hparams_/experiment", wrap(2, &experiment)),
        ("_hparams_/session_start_info", wrap(3, &start)),
        ("_hparams_/session_end_info", wrap(4, &end)),
    ]
    .iter()
    .map(|(tag, data)| summary_event(wall_time, 0, &[hparams_value(tag, data)]))
    .collect()
}

/// Writes TensorBoard event files (see the module docs). The folder and the event file are made at
/// the first write, so a run that fails before logging anything leaves no empty version folder.
pub struct TensorBoardLogger {
    dir: PathBuf,
    path: PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
    /// The hyperparameters recorded so far (each `log_hyperparams` merges into them).
    hparams: Value,
}

impl TensorBoardLogger {
    /// A logger writing a new event file in `dir` (a `lightning_logs/version_N` folder).
    pub fn new(dir: &Path) -> Result<TensorBoardLogger, String> {
        let name = format!("events.out.tfevents.{:010}.{}.{}.0", now_secs() as u64, hostname(), std::process::id());
        Ok(TensorBoardLogger { dir: dir.to_path_buf(), path: dir.join(name), out: None, hparams: Value::Null })
    }

    /// The open event file, created with its header event on first use.
    fn file(&mut self) -> Result<&mut std::io::BufWriter<std::fs::File>, String> {
        if self.out.is_none() {
            std::fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
            let f =
                std::fs::File::create(&self.path).map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
            let mut out = std::io::BufWriter::new(f);
            let mut header = Pb::default();
            header.double(1, now_secs()).bytes(3, b"brain.Event:2");
            out.write_all(&tfrecord(&header.0)).map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
            self.out = Some(out);
        }
        self.out.as_mut().ok_or_else(|| "event file not open".to_string())
    }

    fn write(&mut self, event: &[u8]) -> Result<(), String> {
        let record = tfrecord(event);
        if let Err(e) = self.file()?.write_all(&record) {
            return Err(format!("cannot write {}: {e}", self.path.display()));
        }
        Ok(())
    }
}

impl Logger for TensorBoardLogger {
    fn log_hyperparams(&mut self, hparams: &Value, metrics: Option<&BTreeMap<String, f64>>) -> Result<(), String> {
        // hparams.yaml as Lightning's TensorBoardLogger writes it (the CSV logger in the same
        // folder writes the same file).
        self.file()?;
        merge_hparams(&mut self.hparams, hparams);
        write_hparams_yaml(&self.dir, &self.hparams)?;
        let mut flat = BTreeMap::new();
        flatten("", hparams, &mut flat);
        // Lightning's default_hp_metric: without metrics, a placeholder hp_metric of -1
        let placeholder = BTreeMap::from([("hp_metric".to_string(), -1.0)]);
        let metrics = metrics.unwrap_or(&placeholder);
        if metrics.is_empty() {
            return self.save();
        }
        // as Lightning: the metrics as scalars first, then the three HParams summaries (step 0)
        self.log_metrics(metrics, 0)?;
        let names: Vec<&str> = metrics.keys().map(String::as_str).collect();
        for e in hparams_events(&flat, &names, now_secs()) {
            self.write(&e)?;
        }
        self.save()
    }

    fn log_histogram(&mut self, tag: &str, histogram: &Histogram, step: usize) -> Result<(), String> {
        self.write(&summary_event(now_secs(), step as i64, &[histogram_value(tag, histogram)]))
    }

    fn log_image(&mut self, tag: &str, image: &Image, step: usize) -> Result<(), String> {
        let v = image_value(tag, image)?;
        self.write(&summary_event(now_secs(), step as i64, &[v]))
    }

    fn log_text(&mut self, tag: &str, text: &str, step: usize) -> Result<(), String> {
        self.write(&summary_event(now_secs(), step as i64, &[text_value(tag, text)]))
    }

    fn class_name(&self) -> &'static str {
        "TensorBoardLogger"
    }

    fn log_metrics(&mut self, metrics: &BTreeMap<String, f64>, step: usize) -> Result<(), String> {
        if metrics.is_empty() {
            return Ok(());
        }
        let values: Vec<Pb> = metrics.iter().map(|(k, v)| scalar_value(k, *v as f32)).collect();
        let e = summary_event(now_secs(), step as i64, &values);
        self.write(&e)
    }

    fn save(&mut self) -> Result<(), String> {
        match self.out.as_mut() {
            Some(out) => out.flush().map_err(|e| format!("cannot write {}: {e}", self.path.display())),
            None => Ok(()),
        }
    }

    fn log_dir(&self) -> Option<PathBuf> {
        Some(self.dir.clone())
    }
}

impl Drop for TensorBoardLogger {
    fn drop(&mut self) {
        if let Some(out) = self.out.as_mut() {
            let _ = out.flush();
        }
    }
}
