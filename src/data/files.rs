//! Tensor files: NumPy `.npy` / `.npz` (parsed here, with errors that name the file) and
//! safetensors (through [`crate::nn::io`]). Reading is real: every dtype NumPy writes in
//! little-endian order that libtorch has. Every size a file states is checked against the bytes
//! the file (or archive entry) holds before anything is allocated, and arrays are read straight
//! into tensor memory.
use super::Result;
use crate::data_err;
use std::io::Read;
use std::path::Path;
use tch::{Kind, Tensor};

/// Fails with the path when `path` does not exist or is not a regular file (a FIFO, device or
/// folder is refused without being opened, so it cannot block).
pub fn check_exists(path: &Path, what: &str) -> Result<()> {
    if !path.exists() {
        return Err(data_err!("{what}: no such file: {}", path.display()));
    }
    crate::fs::check_regular(path).map_err(|e| data_err!("{what}: {}: {e}", path.display()))?;
    Ok(())
}

/// Opens a data file for reading (see [`crate::fs::open_regular`]), with its length.
pub fn open(path: &Path, what: &str) -> Result<(std::fs::File, u64)> {
    check_exists(path, what)?;
    let f = crate::fs::open_regular(path).map_err(|e| data_err!("{what}: {}: {e}", path.display()))?;
    let len = f.metadata().map_err(|e| data_err!("{what}: {}: {e}", path.display()))?.len();
    Ok((f, len))
}

/// The whole content of a data file (see [`crate::fs::read_regular`]).
pub fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    check_exists(path, what)?;
    crate::fs::read_regular(path).map_err(|e| data_err!("{what}: {}: {e}", path.display()))
}

/// The largest `.npy` header accepted (NumPy itself refuses headers over 10,000 bytes unless
/// asked not to; a plain array's header takes about 120).
pub const MAX_NPY_HEADER: u64 = 65_536;

fn npy_kind(descr: &str) -> Option<Kind> {
    let code = descr.strip_prefix(['<', '|', '='])?;
    Some(match code {
        "f2" => Kind::Half,
        "f4" => Kind::Float,
        "f8" => Kind::Double,
        "i1" => Kind::Int8,
        "i2" => Kind::Int16,
        "i4" => Kind::Int,
        "i8" => Kind::Int64,
        "u1" => Kind::Uint8,
        "b1" => Kind::Bool,
        "c8" => Kind::ComplexFloat,
        "c16" => Kind::ComplexDouble,
        _ => return None,
    })
}

/// Value of `'key': value` in an npy header dict (up to the next `,` at depth 0 or `}`).
fn header_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    Some(rest.trim())
}

/// Parses one `.npy` stream held in memory.
pub fn parse_npy(bytes: &[u8], name: &str) -> Result<Tensor> {
    read_npy_stream(&mut &bytes[..], bytes.len() as u64, name)
}

/// Reads one `.npy` stream of `len` bytes from `r`: the header is read and checked (its size, the
/// dtype, the shape, and the data size against the `len - header` bytes there are) before the
/// array is allocated and read into tensor memory. Bytes after the array are ignored.
pub fn read_npy_stream(r: &mut dyn Read, len: u64, name: &str) -> Result<Tensor> {
    let h = read_npy_header(r, len, name)?;
    crate::nn::io::read_tensor(r, &h.shape, h.kind).map_err(|e| data_err!("{name}: {e}"))
}

/// What an `.npy` header says: the dtype, the shape, and where the data starts.
#[derive(Debug, Clone)]
pub struct NpyHeader {
    pub kind: Kind,
    pub shape: Vec<i64>,
    pub data_offset: u64,
}

/// Reads and checks the header of an `.npy` stream of `len` bytes (size, dtype, shape, and the
/// data size against the bytes there are), leaving `r` at the start of the data.
pub fn read_npy_header(r: &mut dyn Read, len: u64, name: &str) -> Result<NpyHeader> {
    let io = |e: std::io::Error| data_err!("{name}: truncated .npy file ({e})");
    let mut magic = [0u8; 8];
    if len < 10 {
        return Err(data_err!("{name}: not an .npy file (too short)"));
    }
    r.read_exact(&mut magic).map_err(io)?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err(data_err!("{name}: not an .npy file (bad magic)"));
    }
    let major = magic[6];
    let (hlen, hstart) = match major {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).map_err(io)?;
            (u16::from_le_bytes(b) as u64, 10u64)
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(io)?;
            (u32::from_le_bytes(b) as u64, 12)
        }
        v => return Err(data_err!("{name}: .npy format version {v} is not supported (1 to 3 are)")),
    };
    if hlen > MAX_NPY_HEADER {
        return Err(data_err!("{name}: .npy header of {hlen} bytes is larger than the {MAX_NPY_HEADER} accepted"));
    }
    if hstart + hlen > len {
        return Err(data_err!("{name}: truncated .npy header"));
    }
    let mut header = vec![0u8; hlen as usize];
    r.read_exact(&mut header).map_err(io)?;
    let header = std::str::from_utf8(&header).map_err(|_| data_err!("{name}: .npy header is not text"))?;
    let descr = header_field(header, "descr")
        .map(|d| d.trim_matches(|c| c == '\'' || c == '"'))
        .ok_or_else(|| data_err!("{name}: .npy header has no 'descr'"))?;
    let kind = npy_kind(descr).ok_or_else(|| {
        data_err!("{name}: unsupported .npy dtype '{descr}' (little-endian bool, int, uint8, float and complex are supported)")
    })?;
    if header_field(header, "fortran_order") == Some("True") {
        return Err(data_err!("{name}: Fortran-ordered arrays are not supported; save with np.ascontiguousarray"));
    }
    let shape_s = header_field(header, "shape").ok_or_else(|| data_err!("{name}: .npy header has no 'shape'"))?;
    let shape: Vec<i64> = shape_s
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u64>()
                .ok()
                .and_then(|d| i64::try_from(d).ok())
                .ok_or_else(|| data_err!("{name}: bad shape {shape_s} in .npy header"))
        })
        .collect::<Result<_>>()?;
    let data_len = len - hstart - hlen;
    let want = shape.iter().try_fold(kind.elt_size_in_bytes() as u64, |a, &d| a.checked_mul(d as u64));
    match want {
        Some(w) if w <= data_len => {}
        _ => {
            let want = want.map_or_else(|| "more than 2^64".to_string(), |w| w.to_string());
            return Err(data_err!(
                "{name}: truncated .npy data: expected {want} bytes for shape {shape:?}, found {data_len}"
            ));
        }
    }
    Ok(NpyHeader { kind, shape, data_offset: hstart + hlen })
}

/// Reads an `.npy` file.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let (f, len) = open(path, "load_npy")?;
    read_npy_stream(&mut std::io::BufReader::with_capacity(1 << 20, f), len, &path.display().to_string())
}

/// Reads every array of an `.npz` archive, in archive order (stored or deflated entries, each
/// read straight into tensor memory; sizes checked against the archive first).
pub fn read_npz(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let (f, len) = open(path, "load_npz")?;
    let shown = path.display().to_string();
    let mut zip = crate::nn::io::open_zip(std::io::BufReader::with_capacity(1 << 20, f), len)
        .map_err(|e| data_err!("{shown}: not an .npz archive: {e}"))?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| data_err!("{shown}: entry {i}: {e}"))?;
        let name = entry.name().strip_suffix(".npy").unwrap_or(entry.name()).to_string();
        let entry_name = format!("{shown}:{name}");
        crate::nn::io::check_zip_entry(&entry, len).map_err(|e| data_err!("{shown}: {e}"))?;
        let size = entry.size();
        let t = read_npy_stream(&mut entry, size, &entry_name)?;
        // read to the entry's end: the zip reader checks the CRC there
        std::io::copy(&mut entry, &mut std::io::sink()).map_err(|e| data_err!("{entry_name}: {e}"))?;
        out.push((name, t));
    }
    Ok(out)
}

pub fn write_npy(t: &Tensor, path: &Path) -> Result<()> {
    let t = t.f_detach()?.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
    t.write_npy(path).map_err(|e| data_err!("{}: {}", path.display(), super::DataError::from(e)))
}

pub fn write_npz(ts: &[(String, Tensor)], path: &Path) -> Result<()> {
    let ts = contiguous_cpu(ts)?;
    Tensor::write_npz(&ts, path).map_err(|e| data_err!("{}: {}", path.display(), super::DataError::from(e)))
}

fn contiguous_cpu(ts: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>> {
    ts.iter().map(|(k, t)| Ok((k.clone(), t.f_detach()?.f_to_device(tch::Device::Cpu)?.f_contiguous()?))).collect()
}

/// A safetensors file's tensors, sorted by name (read and validated by [`crate::nn::io`]).
pub fn read_safetensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    check_exists(path, "load_safetensors")?;
    let (mut ts, _) = crate::nn::io::load_safetensors(path).map_err(|e| data_err!("{e}"))?;
    ts.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(ts)
}

/// Writes tensors as a safetensors file, atomically (through [`crate::nn::io`]).
pub fn write_safetensors(ts: &[(String, Tensor)], path: &Path) -> Result<()> {
    crate::nn::io::save_safetensors(path, ts, None).map_err(|e| data_err!("{e}"))
}

/// Picks `keys` (all, in the given order, when `None`) out of named tensors (or of what
/// describes them).
pub fn select<T>(ts: Vec<(String, T)>, keys: Option<&[String]>, path: &Path) -> Result<Vec<(String, T)>> {
    match keys {
        None => Ok(ts),
        Some(keys) => {
            let have: Vec<String> = ts.iter().map(|(n, _)| n.clone()).collect();
            let mut ts = ts;
            keys.iter()
                .map(|k| {
                    let pos = ts.iter().position(|(n, _)| n == k).ok_or_else(|| {
                        data_err!("{}: no array named '{k}'; the file has: {}", path.display(), have.join(", "))
                    })?;
                    Ok(ts.remove(pos))
                })
                .collect()
        }
    }
}
