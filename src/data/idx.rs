//! IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed, and the MNIST layout on disk.
use super::dataset::TensorDataset;
use super::files::open;
use super::Result;
use crate::data_err;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Parses IDX bytes: magic `0 0 type ndim`, big-endian u32 dims, big-endian data.
pub fn parse_idx(b: &[u8], name: &str) -> Result<Tensor> {
    read_idx_stream(&mut &b[..], b.len() as u64, None, name)
}

/// Reads IDX from `r`, which holds at most `max_len` bytes (`compressed`: the size of the gzip file
/// they come from). The header is read and the data size it implies checked against that bound
/// before the tensor is allocated; the data is then read straight into tensor memory.
fn read_idx_stream(r: &mut dyn Read, max_len: u64, compressed: Option<u64>, name: &str) -> Result<Tensor> {
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => data_err!("{name}: truncated IDX header"),
        _ => data_err!("{name}: bad gzip data: {e}"),
    };
    let mut magic = [0u8; 4];
    if max_len < 4 || r.read_exact(&mut magic).is_err() || magic[0] != 0 || magic[1] != 0 {
        return Err(data_err!("{name}: not an IDX file (bad magic)"));
    }
    let (kind, size) = match magic[2] {
        0x08 => (Kind::Uint8, 1),
        0x09 => (Kind::Int8, 1),
        0x0B => (Kind::Int16, 2),
        0x0C => (Kind::Int, 4),
        0x0D => (Kind::Float, 4),
        0x0E => (Kind::Double, 8),
        t => return Err(data_err!("{name}: unknown IDX data type 0x{t:02x}")),
    };
    let ndim = magic[3] as usize;
    let mut raw_dims = vec![0u8; 4 * ndim];
    r.read_exact(&mut raw_dims).map_err(io)?;
    let dims: Vec<i64> = raw_dims.chunks(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as i64).collect();
    let hdr = 4 + 4 * ndim as u64;
    let numel = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
    let want = numel.and_then(|n| n.checked_mul(size as u64));
    let room = max_len.saturating_sub(hdr);
    if want.is_none_or(|w| w > room) {
        let want = want.map_or_else(|| "more than 2^64".to_string(), |w| w.to_string());
        return Err(match compressed {
            None => data_err!("{name}: truncated IDX data: expected {want} bytes for shape {dims:?}, found {room}"),
            Some(len) => data_err!("{name}: the IDX header claims {want} bytes for shape {dims:?}, more than {len} bytes of gzip data can hold"),
        });
    }
    let truncated = |e: String| data_err!("{name}: truncated IDX data for shape {dims:?}: {e}");
    if size == 1 {
        return crate::nn::io::read_tensor(r, &dims, kind).map_err(truncated);
    }
    // big-endian elements: read them as bytes, reverse each element's bytes, view as `kind`
    let n = numel.unwrap_or(0) as i64;
    let bytes = crate::nn::io::read_tensor(r, &[n, size as i64], Kind::Uint8).map_err(truncated)?;
    Ok(bytes.f_flip([1])?.f_contiguous()?.f_view_dtype(kind)?.f_reshape(dims.as_slice())?)
}

/// Reads one IDX file (raw or .gz).
pub fn read_idx(path: &Path) -> Result<Tensor> {
    let (f, len) = open(path, "read_idx")?;
    let name = path.display().to_string();
    let mut r = std::io::BufReader::with_capacity(1 << 20, f);
    let gz = r.fill_buf().map_err(|e| data_err!("{name}: {e}"))?.starts_with(&[0x1f, 0x8b]);
    if gz {
        let mut d = flate2::read::GzDecoder::new(r);
        read_idx_stream(&mut d, crate::nn::io::max_inflated_len(len), Some(len), &name)
    } else {
        read_idx_stream(&mut r, len, None, &name)
    }
}

/// Writes a tensor as IDX (uint8, int8, int16, int32, float32, float64).
pub fn write_idx(t: &Tensor, path: &Path) -> Result<()> {
    let (code, size) = match t.kind() {
        Kind::Uint8 => (0x08u8, 1),
        Kind::Int8 => (0x09, 1),
        Kind::Int16 => (0x0B, 2),
        Kind::Int => (0x0C, 4),
        Kind::Float => (0x0D, 4),
        Kind::Double => (0x0E, 8),
        k => return Err(data_err!("save_idx: IDX cannot hold {}", crate::tensor::options::dtype_name(k))),
    };
    let t = t.f_detach()?.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
    let dims = t.size();
    let mut out = vec![0, 0, code, dims.len() as u8];
    for d in &dims {
        out.extend((*d as u32).to_be_bytes());
    }
    let n = t.numel();
    let mut data = vec![0u8; n * size];
    t.f_copy_data_u8(&mut data, n)?;
    if size > 1 {
        for c in data.chunks_mut(size) {
            c.reverse();
        }
    }
    out.extend(data);
    std::fs::write(path, out).map_err(|e| data_err!("{}: {e}", path.display()))
}

fn find(root: &Path, stem: &str) -> Result<PathBuf> {
    let dirs = [root.to_path_buf(), root.join("raw"), root.join("MNIST/raw"), root.join("FashionMNIST/raw")];
    let mut tried = Vec::new();
    for d in &dirs {
        for name in [stem.to_string(), format!("{stem}.gz")] {
            let p = d.join(&name);
            if p.is_file() {
                return Ok(p);
            }
            tried.push(p.display().to_string());
        }
    }
    Err(data_err!("mnist: cannot find {stem}[.gz]; looked for: {}", tried.join(", ")))
}

/// MNIST / Fashion-MNIST from `root` (torchvision's file names, in `root`, `root/raw` or
/// `root/{MNIST,FashionMNIST}/raw`): samples `[image: float32 [1, 28, 28] in [0, 1], label: int64]`.
pub fn mnist(root: &Path, train: bool) -> Result<TensorDataset> {
    if !root.exists() {
        return Err(data_err!("mnist: no such directory: {}", root.display()));
    }
    let split = if train { "train" } else { "t10k" };
    let ip = find(root, &format!("{split}-images-idx3-ubyte"))?;
    let lp = find(root, &format!("{split}-labels-idx1-ubyte"))?;
    let images = read_idx(&ip)?;
    let labels = read_idx(&lp)?;
    let (is, ls) = (images.size(), labels.size());
    if is.len() != 3 || ls.len() != 1 {
        return Err(data_err!(
            "mnist: expected images [N, H, W] and labels [N], got {is:?} in {} and {ls:?} in {}",
            ip.display(),
            lp.display()
        ));
    }
    if is[0] != ls[0] {
        return Err(data_err!("mnist: {} images but {} labels ({}, {})", is[0], ls[0], ip.display(), lp.display()));
    }
    let x = images.f_to_kind(Kind::Float)?.f_div_scalar(255.0)?.f_unsqueeze(1)?;
    let y = labels.f_to_kind(Kind::Int64)?;
    TensorDataset::build(&[x, y], None, &format!("MNIST {}", root.display()))
}
