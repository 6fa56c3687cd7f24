//! Checkpoints that never need pickle: one `.ckpt` file in the safetensors format — tensors
//! (weights, optimizer and scheduler state, …) as safetensors entries, and Lightning's metadata
//! (epoch, global_step, loop progress, hyper_parameters, callback states, RNG state, lt version, …)
//! as JSON in the safetensors header. Loading reads bytes and JSON only, so a file can never run
//! code. Writes are atomic (temp file, fsync, rename), so a crash mid-save keeps the previous file.
//!
//! Integrity (format 2): the metadata lists every tensor's dtype, shape and CRC-32C of its bytes
//! (`checksums`), and the safetensors `__metadata__` key `lt_crc32c` holds the CRC-32C of the
//! metadata text exactly as written. Loading checks the header first, then every tensor, and refuses
//! a file where anything differs (a flipped bit, a changed byte in the JSON, a tensor added or
//! removed), naming what. Format-1 files (earlier lt, no checksums) still load, unverified;
//! `lt ckpt verify` says so.
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use tch::Tensor;

pub mod convert;
pub mod float;

/// The metadata key that marks an lt checkpoint.
pub const FORMAT: &str = "lt-checkpoint";
/// The format this lt writes: 2 adds the checksums (1: none). Files of any version up to this load.
pub const FORMAT_VERSION: i64 = 2;
/// The safetensors `__metadata__` key holding the CRC-32C (eight hex digits) of the `"lt"` metadata
/// string exactly as written.
pub const HEADER_CRC_KEY: &str = "lt_crc32c";
/// The metadata key listing each tensor's dtype, shape and CRC-32C:
/// `{"algorithm": "crc32c", "tensors": {"state_dict.w": {"dtype": "float32", "shape": [2], "crc32c": "…"}}}`.
pub const CHECKSUMS_KEY: &str = "checksums";

/// A checkpoint in memory: named tensors and JSON metadata.
pub struct Checkpoint {
    pub meta: Value,
    pub tensors: Vec<(String, Tensor)>,
}

/// What checking a checkpoint against its checksums found (see [`Checkpoint::verify_file`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    /// The file's format version (1: it holds no checksums, nothing was compared).
    pub format_version: i64,
    /// How many tensors, and values in them, the file holds.
    pub tensors: usize,
    pub values: usize,
    /// Why the header does not match its checksum, if it does not.
    pub header: Option<String>,
    /// Each tensor that fails its checksum, lacks one, or is listed but absent (in name order).
    pub tensor_problems: Vec<String>,
}

impl Verification {
    /// Whether the header and every tensor match (always true for format 1, which has no checksums).
    pub fn ok(&self) -> bool {
        self.header.is_none() && self.tensor_problems.is_empty()
    }

    /// Why a load refuses the file: the header's problem alone (the tensor list is not to be
    /// trusted then), else the failing tensors (the first few, and how many more).
    pub fn refusal(&self) -> Option<String> {
        if let Some(h) = &self.header {
            return Some(h.clone());
        }
        let p = &self.tensor_problems;
        match p.len() {
            0 => None,
            1 => Some(p[0].clone()),
            n => {
                let shown = p.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
                let more = if n > 3 { format!(" and {} more", n - 3) } else { String::new() };
                Some(format!("{n} tensors fail their checks: {shown}{more} (`lt ckpt verify FILE` lists every one)"))
            }
        }
    }
}

/// The lt metadata of a safetensors header, parsed and checked: the JSON, its format version, and
/// whether its checksum matches (Err: why not). Errors are files that are not lt checkpoints at all.
fn parse_meta(md: &HashMap<String, String>) -> Result<(Value, i64, Result<(), String>), String> {
    let text = md.get("lt").ok_or(
        "no lt metadata: this is a safetensors file but not an lt checkpoint (use nn::load for plain weights)",
    )?;
    let mismatch = "metadata checksum mismatch: the header was changed or corrupted";
    let header = match md.get(HEADER_CRC_KEY) {
        None => Err(None),
        Some(stored) => match crate::checksum::parse_hex(stored) {
            None => Err(Some(format!("{mismatch} (its stored crc32c '{stored}' is not eight hex digits)"))),
            Some(c) => {
                let computed = crate::checksum::crc32c(text.as_bytes());
                if c == computed {
                    Ok(())
                } else {
                    Err(Some(format!(
                        "{mismatch} (stored crc32c {stored}, computed {})",
                        crate::checksum::hex(computed)
                    )))
                }
            }
        },
    };
    let meta: Value = serde_json::from_str(text).map_err(|e| match &header {
        Err(Some(h)) => h.clone(),
        _ => format!("corrupt metadata: {e}"),
    })?;
    if meta.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(match header {
            Err(Some(h)) => h,
            _ => "wrong format marker: not an lt checkpoint".into(),
        });
    }
    let v = match meta.get("format_version").and_then(Value::as_i64) {
        Some(v) if v >= 1 => v,
        _ => {
            return Err(match header {
                Err(Some(h)) => h,
                _ => format!(
                    "metadata key format_version is missing or not a positive integer ({})",
                    meta["format_version"]
                ),
            })
        }
    };
    if v > FORMAT_VERSION {
        return Err(format!("checkpoint format version {v} is newer than this lt understands ({FORMAT_VERSION})"));
    }
    // format 1 has no checksum; a file that claims 2 or later must have one
    let header = match header {
        Ok(()) => Ok(()),
        Err(Some(h)) => Err(h),
        Err(None) if v >= 2 => {
            Err(format!("{mismatch} (a format-{v} checkpoint without its '{HEADER_CRC_KEY}' metadata checksum)"))
        }
        Err(None) => Ok(()),
    };
    Ok((meta, v, header))
}

/// Checks every tensor against the metadata's checksum list (format 2); the problems, in name order.
fn check_tensors(meta: &Value, tensors: &[(String, Tensor)]) -> Vec<String> {
    let Some(list) = meta.get(CHECKSUMS_KEY) else {
        return vec![format!("metadata key {CHECKSUMS_KEY} is missing: the file's tensors cannot be checked")];
    };
    if list.get("algorithm").and_then(Value::as_str) != Some("crc32c") {
        return vec![format!(
            "metadata key {CHECKSUMS_KEY}.algorithm is {}, not \"crc32c\": the file's tensors cannot be checked",
            list.get("algorithm").unwrap_or(&Value::Null)
        )];
    }
    let Some(entries) = list.get("tensors").and_then(Value::as_object) else {
        return vec![format!("metadata key {CHECKSUMS_KEY}.tensors is missing or not a map")];
    };
    let mut problems = Vec::new();
    for (name, t) in tensors {
        let Some(e) = entries.get(name) else {
            problems.push(format!("tensor '{name}' is in the file but not in its checksum list: the file was changed"));
            continue;
        };
        let dtype = crate::tensor::options::dtype_name(t.kind());
        let shape = t.size();
        if e.get("dtype").and_then(Value::as_str) != Some(dtype) {
            problems.push(format!(
                "tensor '{name}' is {dtype} in the file but {} in its checksum entry: the file is corrupt",
                e.get("dtype").unwrap_or(&Value::Null)
            ));
            continue;
        }
        if e.get("shape").and_then(|s| serde_json::from_value::<Vec<i64>>(s.clone()).ok()).as_deref() != Some(&shape) {
            problems.push(format!(
                "tensor '{name}' has shape {shape:?} in the file but {} in its checksum entry: the file is corrupt",
                e.get("shape").unwrap_or(&Value::Null)
            ));
            continue;
        }
        let Some(stored) = e.get("crc32c").and_then(Value::as_str).and_then(crate::checksum::parse_hex) else {
            problems.push(format!(
                "tensor '{name}': its checksum entry has no valid crc32c ({})",
                e.get("crc32c").unwrap_or(&Value::Null)
            ));
            continue;
        };
        let Some(bytes) = crate::nn::io::cpu_bytes(t) else {
            problems.push(format!("tensor '{name}' cannot be checked: it is not a contiguous CPU tensor"));
            continue;
        };
        let computed = crate::checksum::crc32c(bytes);
        if computed != stored {
            problems.push(format!(
                "tensor '{name}' fails its checksum (stored crc32c {}, computed {}): the file is corrupt",
                crate::checksum::hex(stored),
                crate::checksum::hex(computed)
            ));
        }
    }
    let present: std::collections::HashSet<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    for name in entries.keys().filter(|n| !present.contains(n.as_str())) {
        problems
            .push(format!("tensor '{name}' is in the checksum list but missing from the file: the file was changed"));
    }
    problems
}

impl Checkpoint {
    pub fn new(meta: Value) -> Checkpoint {
        Checkpoint { meta, tensors: Vec::new() }
    }

    /// The format version the checkpoint was written in (1 when it does not say: a checkpoint built
    /// in memory is written as [`FORMAT_VERSION`]).
    pub fn format_version(&self) -> i64 {
        self.meta.get("format_version").and_then(Value::as_i64).unwrap_or(1)
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

    /// Writes the checkpoint to `path` atomically, with the checksums of its header and of every
    /// tensor (computed over the bytes as they are written).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let mut meta = self.meta.clone();
        let Value::Object(m) = &mut meta else {
            return Err(format!("checkpoint: its metadata must be a JSON object, not {}", self.meta));
        };
        m.insert("format".into(), json!(FORMAT));
        m.insert("format_version".into(), json!(FORMAT_VERSION));
        m.insert("lt_version".into(), json!(env!("CARGO_PKG_VERSION")));
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        // temp files of saves that were cut short (crash, kill -9) in this folder
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        for p in crate::fs::remove_stale_temps(dir, ".ckpt") {
            errln!("note: removed {}, left by an interrupted checkpoint save", p.display());
        }
        crate::nn::io::write_safetensors_with(path, &self.tensors, move |raw| {
            let mut list = serde_json::Map::new();
            for ((name, t), (_, bytes)) in self.tensors.iter().zip(raw) {
                let crc = crate::checksum::hex(crate::checksum::crc32c(bytes));
                let dtype = crate::tensor::options::dtype_name(t.kind());
                list.insert(name.clone(), json!({"dtype": dtype, "shape": t.size(), "crc32c": crc}));
            }
            meta[CHECKSUMS_KEY] = json!({"algorithm": "crc32c", "tensors": list});
            let text = meta.to_string();
            let crc = crate::checksum::hex(crate::checksum::crc32c(text.as_bytes()));
            Ok(Some(HashMap::from([("lt".to_string(), text), (HEADER_CRC_KEY.to_string(), crc)])))
        })
        .map_err(|e| format!("checkpoint: {e}"))
    }

    /// Reads and validates a checkpoint; refuses files that are truncated, corrupt or not ours, and
    /// (format 2) any whose header or tensors do not match their checksums, naming what differs.
    pub fn load(path: &Path) -> Result<Checkpoint, String> {
        if crate::nn::io::sniff(path).ok() == Some(crate::nn::io::Format::TorchZip) {
            return Self::load_lightning(path);
        }
        let (ck, v) = Self::read_checked(path)?;
        match v.refusal() {
            Some(why) => Err(format!("refusing checkpoint {}: {why}", path.display())),
            None => Ok(ck),
        }
    }

    /// A Lightning `.ckpt` (`trainer.save_checkpoint`, a torch.save zip archive) read with the
    /// restricted unpickler, which never runs code: its weights (`state_dict`), `hyper_parameters`,
    /// `datamodule_hyper_parameters`, `epoch` and `global_step`, as a checkpoint marked
    /// `source: "lightning"`. It evaluates and loads weights (`lt test --ckpt`,
    /// `load_from_checkpoint`); a fit cannot resume from it (lt's loop state is not Lightning's).
    fn load_lightning(path: &Path) -> Result<Checkpoint, String> {
        let what = path.display();
        let tree = crate::nn::torch_pickle::load_tree_file(path)
            .map_err(|e| format!("cannot read checkpoint {what} (a torch.save zip archive): {e}"))?;
        let Some(top) = tree.value.as_object() else {
            return Err(format!("{what} is a torch.save file that holds no dict: not a Lightning checkpoint"));
        };
        if !top.contains_key("state_dict") {
            let keys: Vec<&str> = top.keys().map(String::as_str).collect();
            return Err(format!(
                "{what} is a torch.save file without a `state_dict` entry (keys: {}): not a Lightning checkpoint; nn::load reads its tensors",
                keys.join(", ")
            ));
        }
        let mut meta = json!({ "source": "lightning" });
        for k in [
            "epoch",
            "global_step",
            "hyper_parameters",
            "datamodule_hyper_parameters",
            "pytorch-lightning_version",
            "hparams_name",
        ] {
            if let Some(v) = top.get(k) {
                meta[k] = v.clone();
            }
        }
        let mut ck = Checkpoint::new(meta);
        ck.add_section("state_dict", tree.section("state_dict"));
        Ok(ck)
    }

    /// `lt ckpt verify`: reads a checkpoint and checks its header and every tensor against their
    /// checksums, finding every problem rather than stopping at the first. An error is a file
    /// that cannot be read as an lt checkpoint at all.
    pub fn verify_file(path: &Path) -> Result<Verification, String> {
        Self::read_checked(path).map(|(_, v)| v)
    }

    fn read_checked(path: &Path) -> Result<(Checkpoint, Verification), String> {
        let len = crate::fs::check_regular(path)
            .map_err(|e| format!("cannot read checkpoint {}: {e}", path.display()))?
            .len();
        let refuse = |e: String| format!("refusing checkpoint {}: {e}", path.display());
        if len < 8 {
            return Err(refuse("file too short to be a checkpoint (truncated?)".into()));
        }
        if crate::nn::io::sniff(path).ok() == Some(crate::nn::io::Format::TorchZip) {
            return Err(refuse(
                "it is a torch.save zip archive (a Lightning .ckpt?), not an lt checkpoint: `lt test --ckpt` and nn::load_from_checkpoint read its weights and hyperparameters, nn::load(path, #{key: \"state_dict\"}) its state_dict".into(),
            ));
        }
        let (tensors, md) =
            crate::nn::io::read_safetensors_file(path).map_err(|e| refuse(format!("{e}; truncated or corrupt?")))?;
        Self::from_parts(tensors, md).map_err(refuse)
    }

    fn from_parts(
        mut tensors: Vec<(String, Tensor)>,
        md: HashMap<String, String>,
    ) -> Result<(Checkpoint, Verification), String> {
        let (meta, format_version, header) = parse_meta(&md)?;
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let tensor_problems = if format_version >= 2 { check_tensors(&meta, &tensors) } else { Vec::new() };
        let v = Verification {
            format_version,
            tensors: tensors.len(),
            values: tensors.iter().map(|(_, t)| t.numel()).sum(),
            header: header.err(),
            tensor_problems,
        };
        Ok((Checkpoint { meta, tensors }, v))
    }

    /// A checkpoint's metadata, reading only the file's header (cheap for any size); the header's
    /// checksum is checked, the tensors' are not (they are not read).
    pub fn read_meta(path: &Path) -> Result<Value, String> {
        let md = crate::nn::io::read_safetensors_metadata(path)?;
        let (meta, _, header) = parse_meta(&md).map_err(|e| format!("{}: {e}", path.display()))?;
        header.map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(meta)
    }

    /// Whether `path` is an lt checkpoint by its header's format marker (read without the tensors,
    /// checksums not checked: a damaged checkpoint is still one).
    pub fn is_checkpoint(path: &Path) -> bool {
        crate::nn::io::read_safetensors_metadata(path).is_ok_and(|md| {
            md.get("lt")
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
                .is_some_and(|m| m.get("format").and_then(Value::as_str) == Some(FORMAT))
        })
    }

    /// `lt ckpt show`: the metadata and the tensors as tables (with each tensor's stored checksum,
    /// which a load has checked).
    pub fn describe(&self) -> String {
        let mut t = crate::console::style::table(crate::console::Stream::Stdout);
        t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
        t.set_width(crate::console::terminal_width(crate::console::Stream::Stdout).unwrap_or(120).min(120) as u16);
        t.set_header(crate::console::style::header(["key", "value"]));
        if let Value::Object(m) = &self.meta {
            for (k, v) in m.iter().filter(|(k, _)| k.as_str() != CHECKSUMS_KEY) {
                let s = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                t.add_row(vec![k.clone(), s]);
            }
        }
        let crcs = self.meta.pointer(&format!("/{CHECKSUMS_KEY}/tensors")).and_then(Value::as_object);
        let mut tt = crate::console::style::table(crate::console::Stream::Stdout);
        let mut head = vec!["tensor", "dtype", "shape", "numel"];
        if crcs.is_some() {
            head.push("crc32c");
        }
        tt.set_header(crate::console::style::header(head));
        let mut total = 0usize;
        for (k, v) in &self.tensors {
            total += v.numel();
            let mut row = vec![
                k.clone(),
                crate::tensor::options::dtype_name(v.kind()).to_string(),
                format!("{:?}", v.size()),
                v.numel().to_string(),
            ];
            if let Some(c) = crcs {
                row.push(c.get(k).and_then(|e| e.get("crc32c")).and_then(Value::as_str).unwrap_or("").to_string());
            }
            tt.add_row(row);
        }
        let integrity = match crcs {
            Some(_) => format!("checksums match (format {})", self.format_version()),
            None => format!("format {}: no checksums", self.format_version()),
        };
        format!("{t}\n{tt}\n{} tensors, {} values; {integrity}\n", self.tensors.len(), total)
    }
}
