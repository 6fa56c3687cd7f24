//! Weights in and out: safetensors files (read and written here, no pickle) and PyTorch
//! `torch.save` files of a state_dict (read by [`super::torch_pickle`], which builds only tensors
//! and containers; it never runs Python code).
use crate::tensor::clean_torch_message;
use safetensors::{Dtype, View};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use tch::Kind;

fn to_st_dtype(k: Kind) -> Result<Dtype, String> {
    Ok(match k {
        Kind::Bool => Dtype::BOOL,
        Kind::Uint8 => Dtype::U8,
        Kind::Int8 => Dtype::I8,
        Kind::Int16 => Dtype::I16,
        Kind::Int => Dtype::I32,
        Kind::Int64 => Dtype::I64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        other => return Err(format!("safetensors: cannot store a tensor of dtype {other:?}")),
    })
}

fn from_st_dtype(d: Dtype) -> Result<Kind, String> {
    Ok(match d {
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::I16 => Kind::Int16,
        Dtype::I32 => Kind::Int,
        Dtype::I64 => Kind::Int64,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        other => return Err(format!("safetensors: dtype {other:?} is not supported")),
    })
}

/// A tensor as safetensors bytes without copying: contiguous on the CPU (a copy only when it was
/// not), its memory borrowed while it is written.
struct TensorBytes {
    dtype: Dtype,
    shape: Vec<usize>,
    tensor: tch::Tensor,
    len: usize,
}

impl View for &TensorBytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        if self.len == 0 {
            return Cow::Borrowed(&[]);
        }
        // SAFETY: `tensor` is a contiguous CPU tensor owned by `self` of exactly `len` bytes; the
        // slice borrows `self`, so the memory outlives it, and nothing writes to it meanwhile.
        Cow::Borrowed(unsafe { std::slice::from_raw_parts(self.tensor.data_ptr() as *const u8, self.len) })
    }
    fn data_len(&self) -> usize {
        self.len
    }
}

fn bytes_of(name: &str, t: &tch::Tensor) -> Result<TensorBytes, String> {
    let e = |e: tch::TchError| format!("{name}: {}", clean_torch_message(&e.to_string()));
    let dtype = to_st_dtype(t.kind())?;
    let c = t.f_detach().and_then(|x| x.f_to_device(tch::Device::Cpu)).and_then(|x| x.f_contiguous()).map_err(e)?;
    let len = c.numel() * t.kind().elt_size_in_bytes();
    Ok(TensorBytes { dtype, shape: c.size().iter().map(|&s| s as usize).collect(), tensor: c, len })
}

fn views(tensors: &[(String, tch::Tensor)]) -> Result<Vec<(String, TensorBytes)>, String> {
    let mut seen = std::collections::HashSet::new();
    for (n, _) in tensors {
        if !seen.insert(n.as_str()) {
            return Err(format!("safetensors: duplicate tensor name '{n}'"));
        }
    }
    tensors.iter().map(|(n, t)| Ok((n.clone(), bytes_of(n, t)?))).collect()
}

/// Writes named tensors (and string metadata) to a safetensors file atomically, streaming each
/// tensor's memory to the file (no in-memory copy of the whole file).
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, tch::Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<(), String> {
    write_safetensors_with(path, tensors, |_| Ok(metadata))
}

/// [`write_safetensors`] with the metadata made from the tensors' bytes exactly as they go to the
/// file (in the order of `tensors`): `metadata` gets each name with its bytes once they are
/// contiguous on the CPU, so a checksum of them costs no second copy (a GPU tensor crosses once).
pub fn write_safetensors_with(
    path: &Path,
    tensors: &[(String, tch::Tensor)],
    metadata: impl FnOnce(&[(&str, &[u8])]) -> Result<Option<HashMap<String, String>>, String>,
) -> Result<(), String> {
    let v = views(tensors)?;
    let metadata = {
        let raw = v
            .iter()
            .map(|(n, b)| cpu_bytes(&b.tensor).map(|d| (n.as_str(), d)).ok_or_else(|| format!("{n}: not on the CPU")))
            .collect::<Result<Vec<_>, String>>()?;
        metadata(&raw)?
    };
    crate::fs::write_atomic_with(path, |tmp| {
        safetensors::serialize_to_file(v.iter().map(|(n, b)| (n.as_str(), b)), metadata, tmp)
            .map_err(|e| format!("safetensors: {e}"))
    })
}

pub use crate::fs::write_atomic;

/// Saves named tensors to a safetensors file (atomically).
pub fn save_safetensors(
    path: &Path,
    tensors: &[(String, tch::Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<(), String> {
    let mut meta = metadata.unwrap_or_default();
    meta.entry("format".into()).or_insert_with(|| "pt".into());
    write_safetensors(path, tensors, Some(meta))
}

/// A safetensors file's tensors in file order, and its `__metadata__`.
pub type SafetensorsContents = (Vec<(String, tch::Tensor)>, HashMap<String, String>);

/// Reads a safetensors file.
pub fn load_safetensors(path: &Path) -> Result<SafetensorsContents, String> {
    read_safetensors_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The bytes of a contiguous CPU tensor, borrowed (None when it is not one, or not of a dtype
/// safetensors stores). What [`read_safetensors_file`] returns is always such a tensor.
pub fn cpu_bytes(t: &tch::Tensor) -> Option<&[u8]> {
    if t.device() != tch::Device::Cpu || !t.is_contiguous() || to_st_dtype(t.kind()).is_err() {
        return None;
    }
    let len = t.numel() * t.kind().elt_size_in_bytes();
    if len == 0 {
        return Some(&[]);
    }
    // SAFETY: `t` is a contiguous CPU tensor of exactly `len` bytes (checked above); the slice
    // borrows `t`, which keeps its storage alive, and the callers only read it meanwhile.
    Some(unsafe { std::slice::from_raw_parts(t.data_ptr() as *const u8, len) })
}

/// A new contiguous CPU tensor of `shape` and `kind`, filled with exactly its size in bytes read
/// from `r`: one copy, straight into tensor memory, no intermediate buffer. The caller has checked
/// the byte count against what the source can hold before calling (the allocation is that size).
/// A bool tensor must hold only bytes 0 and 1.
pub fn read_tensor(r: &mut dyn Read, shape: &[i64], kind: Kind) -> Result<tch::Tensor, String> {
    let t = tch::Tensor::f_empty(shape, (kind, tch::Device::Cpu)).map_err(|e| clean_torch_message(&e.to_string()))?;
    let len = t.numel() * kind.elt_size_in_bytes();
    if len > 0 {
        // SAFETY: `t` is a new contiguous CPU tensor of exactly `len` bytes that nothing else
        // references yet; every byte pattern is a valid value of these dtypes except bool, which
        // is checked below before the tensor is handed out.
        let dst = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut u8, len) };
        r.read_exact(dst).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                format!("the data ends before the {len} bytes of the tensor (truncated?)")
            }
            _ => e.to_string(),
        })?;
        if kind == Kind::Bool && dst.iter().any(|&b| b > 1) {
            return Err("a bool tensor holds bytes other than 0 and 1".into());
        }
    }
    Ok(t)
}

/// The most a deflate stream can expand: 1032 output bytes per input byte (258-byte matches in
/// codes of at least 2 bits), plus slack for the stream's end.
pub fn max_inflated_len(compressed: u64) -> u64 {
    compressed.saturating_mul(1032).saturating_add(1024)
}

/// Opens a zip archive (`.npz`, `torch.save` files) after checking its directory against the file
/// size: the `zip` crate reserves memory for as many entries as the end record claims, so a
/// record claiming more entries than the file can hold (46 bytes each at least) is refused first.
pub fn open_zip<R: Read + std::io::Seek>(mut r: R, file_len: u64) -> Result<zip::ZipArchive<R>, String> {
    let entries = zip_entry_count(&mut r, file_len)?;
    if entries.saturating_mul(46) > file_len {
        return Err(format!(
            "not a valid zip file: its directory claims {entries} entries, more than a {file_len}-byte file can hold"
        ));
    }
    r.seek(std::io::SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    zip::ZipArchive::new(r).map_err(|e| format!("not a valid zip file: {e}"))
}

/// The entry count an archive's end-of-central-directory record (or its ZIP64 record) claims; 0
/// when there is none (the zip crate then refuses the file itself).
fn zip_entry_count<R: Read + std::io::Seek>(r: &mut R, file_len: u64) -> Result<u64, String> {
    use std::io::SeekFrom;
    let io = |e: std::io::Error| e.to_string();
    // the end record is 22 bytes plus a comment of at most 65,535
    let tail_len = file_len.min(22 + 65_535);
    r.seek(SeekFrom::Start(file_len - tail_len)).map_err(io)?;
    let mut tail = vec![0u8; tail_len as usize];
    r.read_exact(&mut tail).map_err(io)?;
    let Some(eocd) = (0..tail.len().saturating_sub(21)).rev().find(|&i| tail[i..].starts_with(b"PK\x05\x06")) else {
        return Ok(0);
    };
    let count16 = u16::from_le_bytes([tail[eocd + 10], tail[eocd + 11]]) as u64;
    // a ZIP64 locator sits just before the end record and points to the ZIP64 end record
    let eocd_pos = file_len - tail_len + eocd as u64;
    if eocd_pos < 20 {
        return Ok(count16);
    }
    let mut loc = [0u8; 20];
    r.seek(SeekFrom::Start(eocd_pos - 20)).map_err(io)?;
    r.read_exact(&mut loc).map_err(io)?;
    if &loc[..4] != b"PK\x06\x07" {
        return Ok(count16);
    }
    let at = u64::from_le_bytes(loc[8..16].try_into().expect("8 bytes"));
    let mut rec = [0u8; 56];
    if at.checked_add(56).is_none_or(|end| end > eocd_pos)
        || r.seek(SeekFrom::Start(at)).is_err()
        || r.read_exact(&mut rec).is_err()
        || &rec[..4] != b"PK\x06\x06"
    {
        return Err("not a valid zip file: its ZIP64 locator does not point to a ZIP64 end record".into());
    }
    Ok(u64::from_le_bytes(rec[32..40].try_into().expect("8 bytes")))
}

/// Checks a zip entry's declared sizes against the archive before anything is allocated from
/// them: the compressed bytes lie inside the file, a stored entry is as long as it says, and a
/// deflated entry claims no more than its compressed bytes can expand to. Other compression
/// methods are refused.
pub fn check_zip_entry(entry: &zip::read::ZipFile<'_>, file_len: u64) -> Result<(), String> {
    let name = entry.name();
    let (csize, size) = (entry.compressed_size(), entry.size());
    if entry.data_start().checked_add(csize).is_none_or(|end| end > file_len) {
        return Err(format!(
            "zip entry {name}: its {csize} bytes run past the end of the {file_len}-byte file (truncated?)"
        ));
    }
    match entry.compression() {
        zip::CompressionMethod::Stored if csize != size => {
            Err(format!("zip entry {name}: stored with {csize} bytes but claims {size}"))
        }
        zip::CompressionMethod::Stored => Ok(()),
        zip::CompressionMethod::Deflated if size > max_inflated_len(csize) => {
            Err(format!("zip entry {name}: claims {size} bytes, more than its {csize} compressed bytes can hold"))
        }
        zip::CompressionMethod::Deflated => Ok(()),
        other => Err(format!("zip entry {name}: compression method {other} is not supported (stored and deflate are)")),
    }
}

/// The largest safetensors header accepted (the format's own limit).
pub const MAX_HEADER: u64 = 100_000_000;

/// Reads the header of a safetensors file: its size and its JSON.
fn read_header(f: &mut std::fs::File, file_len: u64) -> Result<(u64, serde_json::Value), String> {
    let bad = |why: String| format!("not a valid safetensors file: {why}");
    let mut n8 = [0u8; 8];
    f.read_exact(&mut n8).map_err(|_| bad("shorter than its 8-byte header size".into()))?;
    let n = u64::from_le_bytes(n8);
    if n > MAX_HEADER || 8 + n > file_len {
        return Err(bad(format!("header size {n} does not fit a file of {file_len} bytes")));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|e| bad(format!("cannot read the header: {e}")))?;
    let json = serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    Ok((n, json))
}

/// The string metadata of a safetensors file, reading only its header.
pub fn read_safetensors_metadata(path: &Path) -> Result<HashMap<String, String>, String> {
    let mut f = crate::fs::open_regular(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let len = f.metadata().map_err(|e| format!("cannot read {}: {e}", path.display()))?.len();
    let (_, json) = read_header(&mut f, len).map_err(|e| format!("{}: {e}", path.display()))?;
    let md = json.get("__metadata__").and_then(|m| m.as_object()).cloned().unwrap_or_default();
    Ok(md.into_iter().filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string()))).collect())
}

/// One tensor of a safetensors file, as its header declares it (checked by
/// [`read_safetensors_header`]): `offset` is where its bytes start in the file, `len` how many.
#[derive(Debug, Clone)]
pub struct SafetensorsEntry {
    pub name: String,
    pub kind: Kind,
    pub shape: Vec<i64>,
    pub offset: u64,
    pub len: u64,
}

/// A safetensors file's checked header: its tensors in file order, and its `__metadata__`.
pub type SafetensorsHeader = (Vec<SafetensorsEntry>, HashMap<String, String>);

/// Reads and checks the header of a safetensors file of `file_len` bytes (nothing past it): the
/// header size is bounded by the file and by [`MAX_HEADER`], every dtype is one lt supports, every
/// shape matches its byte range, and the ranges lie inside the data section, contiguous and
/// covering it exactly. A header that lies is refused with the tensor it lies about.
pub fn read_safetensors_header(f: &mut std::fs::File, file_len: u64) -> Result<SafetensorsHeader, String> {
    let bad = |why: String| format!("not a valid safetensors file: {why}");
    let (n, json) = read_header(f, file_len)?;
    let data_len = file_len - 8 - n;
    let obj = json.as_object().ok_or_else(|| bad("header is not a JSON object".into()))?;
    let mut metadata = HashMap::new();
    let mut entries = Vec::new();
    for (name, v) in obj {
        if name == "__metadata__" {
            for (k, val) in v.as_object().ok_or_else(|| bad("__metadata__ is not an object".into()))? {
                metadata.insert(
                    k.clone(),
                    val.as_str().ok_or_else(|| bad(format!("metadata '{k}' is not a string")))?.to_string(),
                );
            }
            continue;
        }
        let dtype: Dtype = serde_json::from_value(v.get("dtype").cloned().unwrap_or_default())
            .map_err(|e| bad(format!("{name}: dtype: {e}")))?;
        let kind = from_st_dtype(dtype).map_err(|e| bad(format!("{name}: {e}")))?;
        let shape: Vec<i64> = serde_json::from_value(v.get("shape").cloned().unwrap_or_default())
            .map_err(|e| bad(format!("{name}: shape: {e}")))?;
        let offsets: [u64; 2] = serde_json::from_value(v.get("data_offsets").cloned().unwrap_or_default())
            .map_err(|e| bad(format!("{name}: data_offsets: {e}")))?;
        let numel = shape.iter().try_fold(1u64, |acc, &d| if d < 0 { None } else { acc.checked_mul(d as u64) });
        let bytes = numel.and_then(|k| k.checked_mul(kind.elt_size_in_bytes() as u64));
        if offsets[1] < offsets[0] || bytes != Some(offsets[1] - offsets[0]) {
            return Err(bad(format!("{name}: shape {shape:?} does not match its byte range {offsets:?}")));
        }
        // a tensor's strides multiply its dims, zeros aside: libtorch refuses shapes where they overflow
        if shape.iter().try_fold(1i64, |acc, &d| acc.checked_mul(d.max(1))).is_none() {
            return Err(bad(format!("{name}: shape {shape:?} is too large for a tensor's strides")));
        }
        if offsets[1] > data_len {
            return Err(bad(format!(
                "{name}: byte range {offsets:?} runs past the {data_len} bytes of data after the header (truncated?)"
            )));
        }
        entries.push(SafetensorsEntry {
            name: name.clone(),
            kind,
            shape,
            offset: 8 + n + offsets[0],
            len: offsets[1] - offsets[0],
        });
    }
    entries.sort_by_key(|e| e.offset);
    let mut end = 8 + n;
    for e in &entries {
        if e.offset != end {
            let o = [e.offset - 8 - n, e.offset - 8 - n + e.len];
            return Err(bad(format!("{}: byte range {o:?} leaves a gap or overlaps", e.name)));
        }
        end = e.offset + e.len;
    }
    if end != file_len {
        return Err(bad(format!(
            "the tensors take {} bytes but the file holds {data_len} after the header",
            end - 8 - n
        )));
    }
    Ok((entries, metadata))
}

/// Reads a safetensors file straight into tensor memory (one copy, no whole-file buffer): the
/// header is parsed and checked first ([`read_safetensors_header`]), then each tensor is allocated
/// and filled from the file. A truncated or corrupt file is an error. Tensors come in file order.
pub fn read_safetensors_file(path: &Path) -> Result<SafetensorsContents, String> {
    let bad = |why: String| format!("not a valid safetensors file: {why}");
    let mut f = crate::fs::open_regular(path).map_err(|e| format!("cannot read: {e}"))?;
    let file_len = f.metadata().map_err(|e| format!("cannot read: {e}"))?.len();
    let (entries, metadata) = read_safetensors_header(&mut f, file_len)?;
    let mut out = Vec::with_capacity(entries.len());
    let mut reader = std::io::BufReader::with_capacity(1 << 20, f);
    for e in entries {
        let t = read_tensor(&mut reader, &e.shape, e.kind).map_err(|why| bad(format!("{}: {why}", e.name)))?;
        out.push((e.name, t));
    }
    Ok((out, metadata))
}

/// The kind of weights file at `path`, from its first bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Format {
    SafeTensors,
    TorchZip,
}

pub fn sniff(path: &Path) -> Result<Format, String> {
    let mut f = crate::fs::open_regular(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut head = [0u8; 9];
    let n = f.read(&mut head).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if n >= 4 && &head[..4] == b"PK\x03\x04" {
        return Ok(Format::TorchZip);
    }
    if n == 9 && head[8] == b'{' {
        return Ok(Format::SafeTensors);
    }
    if n >= 2 && head[0] == 0x80 && head[1] <= 5 {
        return Err(format!(
            "{}: a bare pickle (a legacy pre-1.6 torch.save, or pickle.dump), not a torch.save zip archive: lt reads pickles only inside torch.save zip files, with an unpickler that never runs code; re-save it with torch.save in PyTorch >= 1.6, or as safetensors",
            path.display()
        ));
    }
    Err(format!(
        "{}: neither a safetensors file nor a PyTorch zip file (torch.save); legacy pre-1.6 torch.save files are not supported",
        path.display()
    ))
}

/// Reads the state_dict of a PyTorch `torch.save(model.state_dict(), path)` file (zip format,
/// PyTorch ≥ 1.6) with a restricted unpickler that builds only tensors and containers.
pub fn load_torch(path: &Path) -> Result<Vec<(String, tch::Tensor)>, String> {
    super::torch_pickle::load_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The tensors under the entry `key` of what a `torch.save` file holds (`state_dict` of a
/// Lightning checkpoint, `model` of `{"model": ..., "optimizer": ...}`), or of a safetensors file
/// (its tensors named `key.*`), named as inside it.
pub fn load_any_key(path: &Path, key: &str) -> Result<Vec<(String, tch::Tensor)>, String> {
    let (found, keys) = match sniff(path)? {
        Format::SafeTensors => {
            let all = load_safetensors(path)?.0;
            let p = format!("{key}.");
            let keys: std::collections::BTreeSet<String> =
                all.iter().map(|(k, _)| k.split('.').next().unwrap_or(k).to_string()).collect();
            let found: Vec<_> =
                all.into_iter().filter_map(|(k, t)| k.strip_prefix(&p).map(|r| (r.to_string(), t))).collect();
            (found, keys.into_iter().collect::<Vec<_>>())
        }
        Format::TorchZip => {
            let tree = super::torch_pickle::load_tree_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let keys = tree.value.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
            (tree.section(key), keys)
        }
    };
    if found.is_empty() {
        return Err(format!(
            "{}: no tensors under '{key}'; the file's top-level keys: {}",
            path.display(),
            if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
        ));
    }
    Ok(found)
}

/// Reads named tensors from a safetensors or `torch.save` file.
pub fn load_any(path: &Path) -> Result<Vec<(String, tch::Tensor)>, String> {
    match sniff(path)? {
        Format::SafeTensors => Ok(load_safetensors(path)?.0),
        Format::TorchZip => load_torch(path),
    }
}
