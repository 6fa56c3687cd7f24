//! Weights in and out: safetensors files (read and written here, no pickle) and PyTorch
//! `torch.save` files of a state_dict (read by [`super::torch_pickle`], which builds only tensors
//! and containers; it never runs Python code).
use crate::tensor::clean_torch_message;
use safetensors::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::HashMap;
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

/// A tensor's bytes on the CPU, contiguous, for safetensors.
struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn bytes_of(name: &str, t: &tch::Tensor) -> Result<Bytes, String> {
    let e = |e: tch::TchError| format!("{name}: {}", clean_torch_message(&e.to_string()));
    let dtype = to_st_dtype(t.kind())?;
    let c = t.f_detach().and_then(|x| x.f_to_device(tch::Device::Cpu)).and_then(|x| x.f_contiguous()).map_err(e)?;
    let numel = c.numel();
    let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
    c.f_copy_data_u8(&mut data, numel).map_err(e)?;
    Ok(Bytes { dtype, shape: c.size().iter().map(|&s| s as usize).collect(), data })
}

/// Serializes named tensors (and string metadata) to safetensors bytes.
pub fn safetensors_bytes(
    tensors: &[(String, tch::Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, String> {
    let mut seen = std::collections::HashSet::new();
    for (n, _) in tensors {
        if !seen.insert(n.as_str()) {
            return Err(format!("safetensors: duplicate tensor name '{n}'"));
        }
    }
    let bytes: Vec<(String, Bytes)> =
        tensors.iter().map(|(n, t)| Ok((n.clone(), bytes_of(n, t)?))).collect::<Result<_, String>>()?;
    safetensors::serialize(bytes.iter().map(|(n, b)| (n.as_str(), b)), metadata).map_err(|e| format!("safetensors: {e}"))
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
    write_atomic(path, &safetensors_bytes(tensors, Some(meta))?)
}

/// Parses safetensors bytes: tensors in file order, and the metadata.
pub fn parse_safetensors(buf: &[u8]) -> Result<(Vec<(String, tch::Tensor)>, HashMap<String, String>), String> {
    let (_, meta) = SafeTensors::read_metadata(buf).map_err(|e| format!("not a valid safetensors file: {e}"))?;
    let st = SafeTensors::deserialize(buf).map_err(|e| format!("not a valid safetensors file: {e}"))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let kind = from_st_dtype(view.dtype())?;
        let shape: Vec<i64> = view.shape().iter().map(|&s| s as i64).collect();
        let t = tch::Tensor::f_from_data_size(view.data(), &shape, kind)
            .map_err(|e| format!("{name}: {}", clean_torch_message(&e.to_string())))?;
        out.push((name, t));
    }
    // keep the file's order (offsets are increasing in file order)
    let order: HashMap<String, usize> = meta.offset_keys().into_iter().enumerate().map(|(i, k)| (k, i)).collect();
    out.sort_by_key(|(n, _)| order.get(n).copied().unwrap_or(usize::MAX));
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

/// Reads a safetensors file.
pub fn load_safetensors(path: &Path) -> Result<(Vec<(String, tch::Tensor)>, HashMap<String, String>), String> {
    let buf = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_safetensors(&buf).map_err(|e| format!("{}: {e}", path.display()))
}

/// The kind of weights file at `path`, from its first bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Format {
    SafeTensors,
    TorchZip,
}

pub fn sniff(path: &Path) -> Result<Format, String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut head = [0u8; 9];
    let n = f.read(&mut head).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if n >= 4 && &head[..4] == b"PK\x03\x04" {
        return Ok(Format::TorchZip);
    }
    if n == 9 && head[8] == b'{' {
        return Ok(Format::SafeTensors);
    }
    Err(format!(
        "{}: neither a safetensors file nor a PyTorch zip file (torch.save); legacy pre-1.6 torch.save files are not supported",
        path.display()
    ))
}

/// Reads the state_dict of a PyTorch `torch.save(model.state_dict(), path)` file (zip format,
/// PyTorch ≥ 1.6) with a restricted unpickler that builds only tensors and containers.
pub fn load_torch(path: &Path) -> Result<Vec<(String, tch::Tensor)>, String> {
    let buf = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    super::torch_pickle::load(&buf).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads named tensors from a safetensors or `torch.save` file.
pub fn load_any(path: &Path) -> Result<Vec<(String, tch::Tensor)>, String> {
    match sniff(path)? {
        Format::SafeTensors => Ok(load_safetensors(path)?.0),
        Format::TorchZip => load_torch(path),
    }
}
