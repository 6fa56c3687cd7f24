//! IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed, and the MNIST layout on disk.
use super::dataset::TensorDataset;
use super::files::check_exists;
use super::Result;
use crate::data_err;
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Reads a file, gunzipping it when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| data_err!("{}: {e}", path.display()))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| data_err!("{}: bad gzip data: {e}", path.display()))?;
        return Ok(out);
    }
    Ok(bytes)
}

/// Parses IDX bytes: magic `0 0 type ndim`, big-endian u32 dims, big-endian data.
pub fn parse_idx(b: &[u8], name: &str) -> Result<Tensor> {
    if b.len() < 4 || b[0] != 0 || b[1] != 0 {
        return Err(data_err!("{name}: not an IDX file (bad magic)"));
    }
    let (kind, size) = match b[2] {
        0x08 => (Kind::Uint8, 1),
        0x09 => (Kind::Int8, 1),
        0x0B => (Kind::Int16, 2),
        0x0C => (Kind::Int, 4),
        0x0D => (Kind::Float, 4),
        0x0E => (Kind::Double, 8),
        t => return Err(data_err!("{name}: unknown IDX data type 0x{t:02x}")),
    };
    let ndim = b[3] as usize;
    let hdr = 4 + 4 * ndim;
    if b.len() < hdr {
        return Err(data_err!("{name}: truncated IDX header"));
    }
    let dims: Vec<i64> = (0..ndim)
        .map(|i| u32::from_be_bytes([b[4 + 4 * i], b[5 + 4 * i], b[6 + 4 * i], b[7 + 4 * i]]) as i64)
        .collect();
    let numel: i64 = dims.iter().product();
    let want = numel as usize * size;
    let data = &b[hdr..];
    if data.len() < want {
        return Err(data_err!(
            "{name}: truncated IDX data: expected {want} bytes for shape {dims:?}, found {}",
            data.len()
        ));
    }
    let mut data = data[..want].to_vec();
    if size > 1 {
        for c in data.chunks_mut(size) {
            c.reverse(); // big-endian to native (little-endian) order
        }
    }
    Ok(Tensor::f_from_data_size(&data, &dims, kind)?)
}

/// Reads one IDX file (raw or .gz).
pub fn read_idx(path: &Path) -> Result<Tensor> {
    check_exists(path, "read_idx")?;
    parse_idx(&read_maybe_gz(path)?, &path.display().to_string())
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
