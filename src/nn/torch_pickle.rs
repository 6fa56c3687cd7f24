//! Reads the tensors of a PyTorch `torch.save` zip file (a state_dict) without running any code:
//! the zip is read by hand (torch.save stores its entries uncompressed) and `data.pkl` is
//! interpreted by a restricted unpickler that knows only containers, numbers, strings, and the
//! few callables torch.save uses for tensors (`OrderedDict`, `_rebuild_tensor_v2`,
//! `_rebuild_parameter`, typed storages). Anything else is an error.
use std::collections::HashMap;

fn u16le(b: &[u8], i: usize) -> Result<usize, String> {
    b.get(i..i + 2).map(|s| u16::from_le_bytes([s[0], s[1]]) as usize).ok_or_else(|| "truncated zip file".to_string())
}
fn u32le(b: &[u8], i: usize) -> Result<usize, String> {
    b.get(i..i + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
        .ok_or_else(|| "truncated zip file".to_string())
}

/// The stored (uncompressed) entries of a zip file, by name.
fn zip_entries(b: &[u8]) -> Result<HashMap<String, &[u8]>, String> {
    let eocd = (0..b.len().saturating_sub(21))
        .rev()
        .find(|&i| b[i..].starts_with(&[0x50, 0x4b, 0x05, 0x06]))
        .ok_or("not a zip file (no end of central directory)")?;
    let n = u16le(b, eocd + 10)?;
    let mut p = u32le(b, eocd + 16)?;
    let mut out = HashMap::new();
    for _ in 0..n {
        if !b.get(p..).is_some_and(|s| s.starts_with(&[0x50, 0x4b, 0x01, 0x02])) {
            return Err("corrupt zip central directory".into());
        }
        let method = u16le(b, p + 10)?;
        let size = u32le(b, p + 20)?;
        let (nl, el, cl) = (u16le(b, p + 28)?, u16le(b, p + 30)?, u16le(b, p + 32)?);
        let local = u32le(b, p + 42)?;
        let name = String::from_utf8_lossy(b.get(p + 46..p + 46 + nl).ok_or("truncated zip file")?).to_string();
        p += 46 + nl + el + cl;
        if method != 0 {
            return Err(format!("zip entry {name} is compressed; torch.save files are not"));
        }
        let start = local + 30 + u16le(b, local + 26)? + u16le(b, local + 28)?;
        out.insert(name, b.get(start..start + size).ok_or("truncated zip entry")?);
    }
    Ok(out)
}

#[derive(Debug)]
enum V {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<V>),
    List(Vec<V>),
    Dict(Vec<(V, V)>),
    Global(String),
    Storage(tch::Kind, String),
    Tensor(tch::Tensor),
    Mark,
}

impl Clone for V {
    fn clone(&self) -> Self {
        match self {
            V::None => V::None,
            V::Bool(b) => V::Bool(*b),
            V::Int(i) => V::Int(*i),
            V::Float(f) => V::Float(*f),
            V::Str(s) => V::Str(s.clone()),
            V::Tuple(v) => V::Tuple(v.clone()),
            V::List(v) => V::List(v.clone()),
            V::Dict(v) => V::Dict(v.clone()),
            V::Global(g) => V::Global(g.clone()),
            V::Storage(k, s) => V::Storage(*k, s.clone()),
            V::Tensor(t) => V::Tensor(t.shallow_clone()),
            V::Mark => V::Mark,
        }
    }
}

fn storage_kind(name: &str) -> Option<tch::Kind> {
    use tch::Kind::*;
    Some(match name {
        "torch.FloatStorage" => Float,
        "torch.DoubleStorage" => Double,
        "torch.HalfStorage" => Half,
        "torch.BFloat16Storage" => BFloat16,
        "torch.LongStorage" => Int64,
        "torch.IntStorage" => Int,
        "torch.ShortStorage" => Int16,
        "torch.CharStorage" => Int8,
        "torch.ByteStorage" => Uint8,
        "torch.BoolStorage" => Bool,
        _ => return None,
    })
}

fn ints(v: &V) -> Result<Vec<i64>, String> {
    match v {
        V::Tuple(x) | V::List(x) => {
            x.iter().map(|e| if let V::Int(i) = e { Ok(*i) } else { Err("expected ints".to_string()) }).collect()
        }
        _ => Err("expected a tuple of ints".into()),
    }
}

/// Named tensors of a `torch.save(state_dict)` file's bytes.
pub fn load(bytes: &[u8]) -> Result<Vec<(String, tch::Tensor)>, String> {
    let entries = zip_entries(bytes)?;
    let pkl_name = entries
        .keys()
        .find(|k| k.ends_with("/data.pkl") || *k == "data.pkl")
        .cloned()
        .ok_or("no data.pkl in the zip file")?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    if let Some(order) = entries.get(&format!("{prefix}byteorder")) {
        if *order != b"little" {
            return Err("big-endian torch.save files are not supported".into());
        }
    }
    let pkl = entries[&pkl_name];
    let mut stack: Vec<V> = Vec::new();
    let mut memo: HashMap<usize, V> = HashMap::new();
    let mut i = 0usize;
    let bad = || "corrupt pickle in torch.save file".to_string();
    let take = |i: &mut usize, n: usize| -> Result<&[u8], String> {
        let s = pkl.get(*i..*i + n).ok_or_else(bad)?;
        *i += n;
        Ok(s)
    };
    let pop_mark = |stack: &mut Vec<V>| -> Result<Vec<V>, String> {
        let m = stack.iter().rposition(|v| matches!(v, V::Mark)).ok_or_else(bad)?;
        let items = stack.split_off(m + 1);
        stack.pop();
        Ok(items)
    };
    let line = |i: &mut usize| -> Result<String, String> {
        let end = pkl[*i..].iter().position(|&c| c == b'\n').ok_or_else(bad)?;
        let s = String::from_utf8_lossy(&pkl[*i..*i + end]).to_string();
        *i += end + 1;
        Ok(s)
    };
    loop {
        let op = *pkl.get(i).ok_or_else(bad)?;
        i += 1;
        match op {
            0x80 => i += 1,              // PROTO
            0x95 => i += 8,              // FRAME
            b'.' => break,               // STOP
            b'(' => stack.push(V::Mark), // MARK
            b'N' => stack.push(V::None),
            0x88 => stack.push(V::Bool(true)),
            0x89 => stack.push(V::Bool(false)),
            b')' => stack.push(V::Tuple(vec![])),
            b']' => stack.push(V::List(vec![])),
            b'}' => stack.push(V::Dict(vec![])),
            b'K' => {
                let b = take(&mut i, 1)?;
                stack.push(V::Int(b[0] as i64))
            }
            b'M' => {
                let b = take(&mut i, 2)?;
                stack.push(V::Int(u16::from_le_bytes([b[0], b[1]]) as i64))
            }
            b'J' => {
                let b = take(&mut i, 4)?;
                stack.push(V::Int(i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64))
            }
            0x8a => {
                let n = take(&mut i, 1)?[0] as usize;
                let b = take(&mut i, n)?;
                if n > 8 {
                    return Err("integer too large in pickle".into());
                }
                let mut v: i64 = 0;
                for (k, byte) in b.iter().enumerate() {
                    v |= (*byte as i64) << (8 * k);
                }
                if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                stack.push(V::Int(v))
            }
            b'G' => {
                let b = take(&mut i, 8)?;
                stack.push(V::Float(f64::from_be_bytes(b.try_into().map_err(|_| bad())?)))
            }
            b'X' => {
                let n = u32le(pkl, i).map_err(|_| bad())?;
                i += 4;
                let s = take(&mut i, n)?;
                stack.push(V::Str(String::from_utf8_lossy(s).to_string()))
            }
            0x8c => {
                let n = take(&mut i, 1)?[0] as usize;
                let s = take(&mut i, n)?;
                stack.push(V::Str(String::from_utf8_lossy(s).to_string()))
            }
            b'c' => {
                let m = line(&mut i)?;
                let n = line(&mut i)?;
                stack.push(V::Global(format!("{m}.{n}")))
            }
            0x93 => {
                let n = stack.pop().ok_or_else(bad)?;
                let m = stack.pop().ok_or_else(bad)?;
                match (m, n) {
                    (V::Str(m), V::Str(n)) => stack.push(V::Global(format!("{m}.{n}"))),
                    _ => return Err(bad()),
                }
            }
            b'q' => {
                let k = take(&mut i, 1)?[0] as usize;
                memo.insert(k, stack.last().ok_or_else(bad)?.clone());
            }
            b'r' => {
                let k = u32le(pkl, i).map_err(|_| bad())?;
                i += 4;
                memo.insert(k, stack.last().ok_or_else(bad)?.clone());
            }
            0x94 => {
                let k = memo.len();
                memo.insert(k, stack.last().ok_or_else(bad)?.clone());
            }
            b'h' => {
                let k = take(&mut i, 1)?[0] as usize;
                stack.push(memo.get(&k).ok_or_else(bad)?.clone())
            }
            b'j' => {
                let k = u32le(pkl, i).map_err(|_| bad())?;
                i += 4;
                stack.push(memo.get(&k).ok_or_else(bad)?.clone())
            }
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(V::Tuple(items))
            }
            0x85 => {
                let a = stack.pop().ok_or_else(bad)?;
                stack.push(V::Tuple(vec![a]))
            }
            0x86 => {
                let b = stack.pop().ok_or_else(bad)?;
                let a = stack.pop().ok_or_else(bad)?;
                stack.push(V::Tuple(vec![a, b]))
            }
            0x87 => {
                let c = stack.pop().ok_or_else(bad)?;
                let b = stack.pop().ok_or_else(bad)?;
                let a = stack.pop().ok_or_else(bad)?;
                stack.push(V::Tuple(vec![a, b, c]))
            }
            b'a' => {
                let v = stack.pop().ok_or_else(bad)?;
                if let Some(V::List(l)) = stack.last_mut() {
                    l.push(v)
                } else {
                    return Err(bad());
                }
            }
            b'e' => {
                let items = pop_mark(&mut stack)?;
                if let Some(V::List(l)) = stack.last_mut() {
                    l.extend(items)
                } else {
                    return Err(bad());
                }
            }
            b's' => {
                let v = stack.pop().ok_or_else(bad)?;
                let k = stack.pop().ok_or_else(bad)?;
                if let Some(V::Dict(d)) = stack.last_mut() {
                    d.push((k, v))
                } else {
                    return Err(bad());
                }
            }
            b'u' => {
                let items = pop_mark(&mut stack)?;
                if let Some(V::Dict(d)) = stack.last_mut() {
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.push((k, v));
                    }
                } else {
                    return Err(bad());
                }
            }
            b'b' => {
                stack.pop().ok_or_else(bad)?;
            } // BUILD: drop the state (OrderedDict._metadata)
            b'Q' => {
                let pid = stack.pop().ok_or_else(bad)?;
                let V::Tuple(p) = pid else { return Err(bad()) };
                match (p.first(), p.get(1), p.get(2)) {
                    (Some(V::Str(s)), Some(V::Global(ty)), Some(V::Str(key))) if s == "storage" => {
                        let kind = storage_kind(ty)
                            .ok_or_else(|| format!("unsupported storage type {ty} in torch.save file"))?;
                        stack.push(V::Storage(kind, key.clone()))
                    }
                    _ => return Err("unsupported persistent id in torch.save file".into()),
                }
            }
            b'R' => {
                let args = stack.pop().ok_or_else(bad)?;
                let f = stack.pop().ok_or_else(bad)?;
                let V::Global(f) = f else { return Err(bad()) };
                let V::Tuple(a) = args else { return Err(bad()) };
                let v = match f.as_str() {
                    "collections.OrderedDict" if a.is_empty() => V::Dict(vec![]),
                    "torch._utils._rebuild_tensor_v2" => {
                        let (Some(V::Storage(kind, key)), Some(V::Int(off))) = (a.first(), a.get(1)) else { return Err(bad()) };
                        let size = ints(a.get(2).ok_or_else(bad)?)?;
                        let stride = ints(a.get(3).ok_or_else(bad)?)?;
                        let data = entries.get(&format!("{prefix}data/{key}")).ok_or_else(|| format!("missing storage {key} in torch.save file"))?;
                        let n = data.len() / kind.elt_size_in_bytes();
                        let flat = tch::Tensor::f_from_data_size(&data[..n * kind.elt_size_in_bytes()], &[n as i64], *kind).map_err(|e| e.to_string())?;
                        let t = flat.f_as_strided(size.as_slice(), stride.as_slice(), *off).and_then(|t| t.f_contiguous()).map_err(|e| format!("bad tensor in torch.save file: {e}"))?;
                        V::Tensor(t)
                    }
                    "torch._utils._rebuild_parameter" => a.into_iter().next().ok_or_else(bad)?,
                    other => return Err(format!("torch.save file contains an object this loader does not build ({other}); save a state_dict of tensors")),
                };
                stack.push(v)
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x} in torch.save file")),
        }
    }
    let V::Dict(items) = stack.pop().ok_or_else(bad)? else {
        return Err("torch.save file does not hold a dict (save model.state_dict())".into());
    };
    items
        .into_iter()
        .filter_map(|(k, v)| match (k, v) {
            (V::Str(k), V::Tensor(t)) => Some(Ok((k, t))),
            (V::Str(_), _) => None, // non-tensor entries (e.g. extra state) are skipped
            _ => Some(Err("torch.save dict has a non-string key".to_string())),
        })
        .collect()
}
