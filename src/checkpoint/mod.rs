//! Checkpoints that never need pickle: one `.ckpt` file in the safetensors format — tensors
//! (weights, optimizer and scheduler state, …) as safetensors entries, and Lightning's metadata
//! (epoch, global_step, loop progress, hyper_parameters, callback states, RNG state, lt version, …)
//! as JSON in the safetensors header. Loading reads bytes and JSON only, so a file can never run
//! code. Writes are atomic (temp file, fsync, rename), so a crash mid-save keeps the previous file.
pub mod tensor_io;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
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
        let mut entries = Vec::with_capacity(self.tensors.len());
        let mut seen = std::collections::HashSet::new();
        for (k, t) in &self.tensors {
            if !seen.insert(k.as_str()) {
                return Err(format!("checkpoint: two tensors named '{k}'"));
            }
            entries.push((k.clone(), tensor_io::to_bytes(t).map_err(|e| format!("checkpoint tensor '{k}': {e}"))?));
        }
        let mut meta = self.meta.clone();
        if let Value::Object(m) = &mut meta {
            m.insert("format".into(), json!(FORMAT));
            m.insert("format_version".into(), json!(FORMAT_VERSION));
            m.insert("lt_version".into(), json!(env!("CARGO_PKG_VERSION")));
        }
        let mut header = HashMap::new();
        header.insert("lt".to_string(), meta.to_string());
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("ckpt"),
            std::process::id()
        ));
        let result = (|| {
            let views: Vec<(String, &tensor_io::TensorBytes)> = entries.iter().map(|(k, b)| (k.clone(), b)).collect();
            let bytes = safetensors::serialize(views, Some(header)).map_err(|e| format!("cannot serialize checkpoint: {e}"))?;
            let mut f = std::fs::File::create(&tmp).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
            f.write_all(&bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
            f.sync_all().map_err(|e| format!("cannot sync {}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, path).map_err(|e| format!("cannot move checkpoint into {}: {e}", path.display()))?;
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Reads and validates a checkpoint; refuses files that are truncated, corrupt or not ours.
    pub fn load(path: &Path) -> Result<Checkpoint, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read checkpoint {}: {e}", path.display()))?;
        Self::from_bytes(&bytes).map_err(|e| format!("refusing checkpoint {}: {e}", path.display()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Checkpoint, String> {
        if bytes.len() < 8 {
            return Err("file too short to be a checkpoint (truncated?)".into());
        }
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| format!("not a valid safetensors file ({e}); truncated or corrupt?"))?;
        let (_, md) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| format!("bad header: {e}"))?;
        let meta_text = md
            .metadata()
            .as_ref()
            .and_then(|m| m.get("lt"))
            .ok_or("no lt metadata: this is a safetensors file but not an lt checkpoint (use nn::load for plain weights)")?;
        let meta: Value = serde_json::from_str(meta_text).map_err(|e| format!("corrupt metadata: {e}"))?;
        if meta.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return Err("wrong format marker: not an lt checkpoint".into());
        }
        let v = meta.get("format_version").and_then(Value::as_i64).unwrap_or(0);
        if v > FORMAT_VERSION {
            return Err(format!("checkpoint format version {v} is newer than this lt understands ({FORMAT_VERSION})"));
        }
        let mut tensors = Vec::new();
        for (name, view) in st.tensors() {
            let t = tensor_io::from_bytes(view.dtype(), view.shape(), view.data()).map_err(|e| format!("tensor '{name}': {e}"))?;
            tensors.push((name, t));
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Checkpoint { meta, tensors })
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
            tt.add_row(vec![k.clone(), crate::tensor::options::dtype_name(v.kind()).to_string(), format!("{:?}", v.size()), v.numel().to_string()]);
        }
        format!("{t}\n{tt}\n{} tensors, {} values\n", self.tensors.len(), total)
    }
}
