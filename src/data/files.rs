//! Tensor files: NumPy `.npy` / `.npz` (parsed here, with errors that name the file) and
//! safetensors (through tch). Reading is real: every dtype NumPy writes in little-endian order
//! that libtorch has.
use super::Result;
use crate::data_err;
use std::io::Read;
use std::path::Path;
use tch::{Kind, Tensor};

/// Fails with the path when `path` does not exist.
pub fn check_exists(path: &Path, what: &str) -> Result<()> {
    if !path.exists() {
        return Err(data_err!("{what}: no such file: {}", path.display()));
    }
    Ok(())
}

fn npy_kind(descr: &str) -> Option<Kind> {
    let (order, code) = descr.split_at(1.min(descr.len()));
    if !matches!(order, "<" | "|" | "=") {
        return None;
    }
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

/// Parses one `.npy` stream.
pub fn parse_npy(bytes: &[u8], name: &str) -> Result<Tensor> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(data_err!("{name}: not an .npy file (bad magic)"));
    }
    let major = bytes[6];
    let (hlen, hstart) = if major == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        if bytes.len() < 12 {
            return Err(data_err!("{name}: truncated .npy header"));
        }
        (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
    };
    let header = bytes.get(hstart..hstart + hlen).ok_or_else(|| data_err!("{name}: truncated .npy header"))?;
    let header = std::str::from_utf8(header).map_err(|_| data_err!("{name}: .npy header is not text"))?;
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
        .map(|s| s.parse::<i64>().map_err(|_| data_err!("{name}: bad shape {shape_s} in .npy header")))
        .collect::<Result<_>>()?;
    let data = &bytes[hstart + hlen..];
    let numel: i64 = shape.iter().product();
    let want = numel as usize * kind.elt_size_in_bytes();
    if data.len() < want {
        return Err(data_err!(
            "{name}: truncated .npy data: expected {want} bytes for shape {shape:?}, found {}",
            data.len()
        ));
    }
    Ok(Tensor::f_from_data_size(&data[..want], &shape, kind)?)
}

/// Reads an `.npy` file.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    check_exists(path, "load_npy")?;
    let bytes = std::fs::read(path).map_err(|e| data_err!("{}: {e}", path.display()))?;
    parse_npy(&bytes, &path.display().to_string())
}

/// Reads every array of an `.npz` archive, in archive order.
pub fn read_npz(path: &Path) -> Result<Vec<(String, Tensor)>> {
    check_exists(path, "load_npz")?;
    let shown = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| data_err!("{shown}: {e}"))?;
    let mut zip =
        zip::ZipArchive::new(std::io::BufReader::new(f)).map_err(|e| data_err!("{shown}: not an .npz archive: {e}"))?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| data_err!("{shown}: entry {i}: {e}"))?;
        let name = entry.name().strip_suffix(".npy").unwrap_or(entry.name()).to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| data_err!("{shown}: {name}: {e}"))?;
        out.push((name.clone(), parse_npy(&bytes, &format!("{shown}:{name}"))?));
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

/// Picks `keys` (all, in file order, when `None`) out of named tensors.
pub fn select(ts: Vec<(String, Tensor)>, keys: Option<&[String]>, path: &Path) -> Result<Vec<(String, Tensor)>> {
    match keys {
        None => Ok(ts),
        Some(keys) => {
            let mut ts = ts;
            keys.iter()
                .map(|k| {
                    let pos = ts.iter().position(|(n, _)| n == k).ok_or_else(|| {
                        let have: Vec<&str> = ts.iter().map(|(n, _)| n.as_str()).collect();
                        data_err!("{}: no array named '{k}'; the file has: {}", path.display(), have.join(", "))
                    })?;
                    Ok(ts.remove(pos))
                })
                .collect()
        }
    }
}
