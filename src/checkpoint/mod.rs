//! Checkpoints that never need pickle: one `.ckpt` file in the safetensors format — tensors
//! (weights, optimizer and scheduler state, …) as safetensors entries, and Lightning's metadata
//! (epoch, global_step, loop progress, hyper_parameters, callback states, RNG state, lt version, …)
//! as JSON in the safetensors header. Loading reads bytes and JSON only, so a file can never run
//! code. Writes are atomic (temp file, fsync, rename), so a crash mid-save keeps the previous file.
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use tch::Tensor;

/// The metadata key that marks an lt checkpoint.
pub const FORMAT: &str = "lt-checkpoint";
pub const FORMAT_VERSION: i64 = 1;

/// A checkpoint in memory: named tensors and JSON metadata.
pub struct Checkpoint {
    pub meta: Value,
    pub tensors: Vec<(String, Tensor)>,
}

impl Checkpoint {
    pub fn new(meta: Value) -> Checkpoint {
        Checkpoint { meta, tensors: Vec::new() }
    }

    /// Tensors whose names start with `prefix.`, with the prefix removed.
    pub fn section(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let p = format!("{prefix}.");
        self.tensors
            .iter()
            .filter_map(|(k, t)| k.strip_prefix(&p).map(|rest| (rest.to_string(), t.shallow_clone())))
            .collect()
    }

    /// Adds tensors under `prefix.`.
    pub fn add_section(&mut self, prefix: &str, tensors: impl IntoIterator<Item = (String, Tensor)>) {
        for (k, t) in tensors {
            self.tensors.push((format!("{prefix}.{k}"), t));
        }
    }

    /// Writes the checkpoint to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let mut meta = self.meta.clone();
        if let Value::Object(m) = &mut meta {
            m.insert("format".into(), json!(FORMAT));
            m.insert("format_version".into(), json!(FORMAT_VERSION));
            m.insert("lt_version".into(), json!(env!("CARGO_PKG_VERSION")));
        }
        let mut header = HashMap::new();
        header.insert("lt".to_string(), meta.to_string());
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        // temp files of saves that were cut short (crash, kill -9) in this folder
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        for p in crate::fs::remove_stale_temps(dir, ".ckpt") {
            errln!("note: removed {}, left by an interrupted checkpoint save", p.display());
        }
        crate::nn::io::write_safetensors(path, &self.tensors, Some(header)).map_err(|e| format!("checkpoint: {e}"))
    }

    /// Reads and validates a checkpoint; refuses files that are truncated, corrupt or not ours.
    pub fn load(path: &Path) -> Result<Checkpoint, String> {
        let len = crate::fs::check_regular(path)
            .map_err(|e| format!("cannot read checkpoint {}: {e}", path.display()))?
            .len();
        let refuse = |e: String| format!("refusing checkpoint {}: {e}", path.display());
        if len < 8 {
            return Err(refuse("file too short to be a checkpoint (truncated?)".into()));
        }
        let (tensors, md) =
            crate::nn::io::read_safetensors_file(path).map_err(|e| refuse(format!("{e}; truncated or corrupt?")))?;
        Self::from_parts(tensors, md).map_err(refuse)
    }

    fn from_parts(mut tensors: Vec<(String, Tensor)>, md: HashMap<String, String>) -> Result<Checkpoint, String> {
        let meta_text = md.get("lt").ok_or(
            "no lt metadata: this is a safetensors file but not an lt checkpoint (use nn::load for plain weights)",
        )?;
        let meta: Value = serde_json::from_str(meta_text).map_err(|e| format!("corrupt metadata: {e}"))?;
        if meta.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return Err("wrong format marker: not an lt checkpoint".into());
        }
        let v = meta.get("format_version").and_then(Value::as_i64).unwrap_or(0);
        if v > FORMAT_VERSION {
            return Err(format!("checkpoint format version {v} is newer than this lt understands ({FORMAT_VERSION})"));
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Checkpoint { meta, tensors })
    }

    /// A checkpoint's metadata, reading only the file's header (cheap for any size).
    pub fn read_meta(path: &Path) -> Result<Value, String> {
        let md = crate::nn::io::read_safetensors_metadata(path)?;
        let text = md.get("lt").ok_or_else(|| format!("{}: not an lt checkpoint", path.display()))?;
        serde_json::from_str(text).map_err(|e| format!("{}: corrupt metadata: {e}", path.display()))
    }

    /// Whether `path` is an lt checkpoint by its header (read without the tensors).
    pub fn is_checkpoint(path: &Path) -> bool {
        Self::read_meta(path).is_ok_and(|m| m.get("format").and_then(Value::as_str) == Some(FORMAT))
    }

    /// `lt ckpt show`: the metadata and the tensors as tables.
    pub fn describe(&self) -> String {
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_FULL);
        t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
        t.set_width(120);
        t.set_header(vec!["key", "value"]);
        if let Value::Object(m) = &self.meta {
            for (k, v) in m {
                let s = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                t.add_row(vec![k.clone(), s]);
            }
        }
        let mut tt = comfy_table::Table::new();
        tt.load_preset(comfy_table::presets::UTF8_FULL);
        tt.set_header(vec!["tensor", "dtype", "shape", "numel"]);
        let mut total = 0usize;
        for (k, v) in &self.tensors {
            total += v.numel();
            tt.add_row(vec![
                k.clone(),
                crate::tensor::options::dtype_name(v.kind()).to_string(),
                format!("{:?}", v.size()),
                v.numel().to_string(),
            ]);
        }
        format!("{t}\n{tt}\n{} tensors, {} values\n", self.tensors.len(), total)
    }
}
