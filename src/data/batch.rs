//! The value a dataset returns: a nested structure of tensors (a sample, or a collated batch),
//! and collation of samples into batches the way PyTorch's `default_collate` does it.
use super::{DataError, Result};
use crate::data_err;
use tch::{Device, Kind, Tensor};

/// A sample or a batch. Collated batches hold only `Tensor`, `Strs`, `List` and `Map`; samples
/// may also hold plain numbers and strings.
#[derive(Debug)]
pub enum Batch {
    Tensor(Tensor),
    List(Vec<Batch>),
    /// Keys in a fixed order (the first sample's, or sorted for script maps).
    Map(Vec<(String, Batch)>),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    /// A collated string field: one string per sample.
    Strs(Vec<String>),
}

impl Batch {
    /// A copy sharing every tensor's storage.
    pub fn shallow_clone(&self) -> Batch {
        match self {
            Batch::Tensor(t) => Batch::Tensor(t.shallow_clone()),
            Batch::List(v) => Batch::List(v.iter().map(Batch::shallow_clone).collect()),
            Batch::Map(v) => Batch::Map(v.iter().map(|(k, b)| (k.clone(), b.shallow_clone())).collect()),
            Batch::Int(i) => Batch::Int(*i),
            Batch::Float(f) => Batch::Float(*f),
            Batch::Bool(b) => Batch::Bool(*b),
            Batch::Str(s) => Batch::Str(s.clone()),
            Batch::Strs(s) => Batch::Strs(s.clone()),
        }
    }

    /// Applies `f` to every tensor.
    pub fn map_tensors(self, f: &mut dyn FnMut(Tensor) -> Result<Tensor>) -> Result<Batch> {
        Ok(match self {
            Batch::Tensor(t) => Batch::Tensor(f(t)?),
            Batch::List(v) => Batch::List(v.into_iter().map(|b| b.map_tensors(f)).collect::<Result<_>>()?),
            Batch::Map(v) => Batch::Map(v.into_iter().map(|(k, b)| Ok((k, b.map_tensors(f)?))).collect::<Result<_>>()?),
            other => other,
        })
    }

    /// Every CPU tensor copied into page-locked memory, when CUDA is present (a no-op otherwise,
    /// as in PyTorch without an accelerator).
    pub fn pin_memory(self) -> Result<Batch> {
        if !tch::Cuda::is_available() {
            return Ok(self);
        }
        self.map_tensors(&mut |t| {
            if t.device() == Device::Cpu {
                Ok(t.f_pin_memory(Device::Cuda(0))?)
            } else {
                Ok(t)
            }
        })
    }

    /// Number of samples: the first dim of the first tensor found, or the length of a `Strs`.
    pub fn batch_size(&self) -> Option<usize> {
        match self {
            Batch::Tensor(t) => t.size().first().map(|&n| n as usize),
            Batch::Strs(s) => Some(s.len()),
            Batch::List(v) => v.iter().find_map(Batch::batch_size),
            Batch::Map(v) => v.iter().find_map(|(_, b)| b.batch_size()),
            _ => None,
        }
    }

    /// Sample `i` of a collated batch (tensors indexed along dim 0).
    pub fn unbatch(&self, i: usize) -> Result<Batch> {
        Ok(match self {
            Batch::Tensor(t) => Batch::Tensor(t.f_get(i as i64)?),
            Batch::Strs(s) => Batch::Str(s.get(i).cloned().ok_or_else(|| data_err!("index {i} out of range"))?),
            Batch::List(v) => Batch::List(v.iter().map(|b| b.unbatch(i)).collect::<Result<_>>()?),
            Batch::Map(v) => Batch::Map(v.iter().map(|(k, b)| Ok((k.clone(), b.unbatch(i)?))).collect::<Result<_>>()?),
            other => other.shallow_clone(),
        })
    }

    /// The rows `idx` of a collated batch, in that order.
    pub fn index_select(&self, idx: &[usize]) -> Result<Batch> {
        Ok(match self {
            Batch::Tensor(t) => {
                let i: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
                let it = Tensor::f_from_slice(&i)?.f_to_device(t.device())?;
                Batch::Tensor(t.f_index_select(0, &it)?)
            }
            Batch::Strs(s) => Batch::Strs(idx.iter().map(|&i| s.get(i).cloned().unwrap_or_default()).collect()),
            Batch::List(v) => Batch::List(v.iter().map(|b| b.index_select(idx)).collect::<Result<_>>()?),
            Batch::Map(v) => {
                Batch::Map(v.iter().map(|(k, b)| Ok((k.clone(), b.index_select(idx)?))).collect::<Result<_>>()?)
            }
            other => other.shallow_clone(),
        })
    }

    /// Concatenates collated batches of the same structure along the batch dim.
    pub fn cat(parts: Vec<Batch>) -> Result<Batch> {
        let mut it = parts.into_iter();
        let first = it.next().ok_or_else(|| data_err!("cannot concatenate zero batches"))?;
        let rest: Vec<Batch> = it.collect();
        if rest.is_empty() {
            return Ok(first);
        }
        let mut all = vec![first];
        all.extend(rest);
        cat_all(all, "batch")
    }

    /// Short description of the structure (`[Tensor[64, 784] float32, Tensor[64] int64]`).
    pub fn describe(&self) -> String {
        match self {
            Batch::Tensor(t) => format!("Tensor{:?} {}", t.size(), crate::tensor::options::dtype_name(t.kind())),
            Batch::List(v) => format!("[{}]", v.iter().map(Batch::describe).collect::<Vec<_>>().join(", ")),
            Batch::Map(v) => format!(
                "#{{{}}}",
                v.iter().map(|(k, b)| format!("{k}: {}", b.describe())).collect::<Vec<_>>().join(", ")
            ),
            Batch::Int(_) => "int".into(),
            Batch::Float(_) => "float".into(),
            Batch::Bool(_) => "bool".into(),
            Batch::Str(_) => "string".into(),
            Batch::Strs(s) => format!("[{} strings]", s.len()),
        }
    }
}

fn cat_all(parts: Vec<Batch>, path: &str) -> Result<Batch> {
    match &parts[0] {
        Batch::Tensor(_) => {
            let ts: Vec<Tensor> = parts
                .into_iter()
                .map(|b| match b {
                    Batch::Tensor(t) => Ok(t),
                    other => Err(data_err!("{path}: cannot concatenate a tensor with {}", other.describe())),
                })
                .collect::<Result<_>>()?;
            Ok(Batch::Tensor(Tensor::f_cat(&ts, 0).map_err(|e| data_err!("{path}: {}", DataError::from(e)))?))
        }
        Batch::Strs(_) => {
            let mut out = Vec::new();
            for b in parts {
                match b {
                    Batch::Strs(s) => out.extend(s),
                    other => return Err(data_err!("{path}: cannot concatenate strings with {}", other.describe())),
                }
            }
            Ok(Batch::Strs(out))
        }
        Batch::List(first) => {
            let n = first.len();
            let mut cols: Vec<Vec<Batch>> = (0..n).map(|_| Vec::new()).collect();
            for b in parts {
                match b {
                    Batch::List(v) if v.len() == n => {
                        for (c, x) in cols.iter_mut().zip(v) {
                            c.push(x);
                        }
                    }
                    other => {
                        return Err(data_err!("{path}: cannot concatenate a list of {n} with {}", other.describe()))
                    }
                }
            }
            Ok(Batch::List(
                cols.into_iter()
                    .enumerate()
                    .map(|(i, c)| cat_all(c, &format!("{path}[{i}]")))
                    .collect::<Result<_>>()?,
            ))
        }
        Batch::Map(first) => {
            let keys: Vec<String> = first.iter().map(|(k, _)| k.clone()).collect();
            let mut cols: Vec<Vec<Batch>> = keys.iter().map(|_| Vec::new()).collect();
            for b in parts {
                match b {
                    Batch::Map(v) => {
                        let mut v = v;
                        for (ki, k) in keys.iter().enumerate() {
                            let pos = v
                                .iter()
                                .position(|(kk, _)| kk == k)
                                .ok_or_else(|| data_err!("{path}: key '{k}' missing from one part"))?;
                            cols[ki].push(v.swap_remove(pos).1);
                        }
                    }
                    other => return Err(data_err!("{path}: cannot concatenate a map with {}", other.describe())),
                }
            }
            Ok(Batch::Map(
                keys.into_iter()
                    .zip(cols)
                    .map(|(k, c)| {
                        let p = format!("{path}.{k}");
                        Ok((k, cat_all(c, &p)?))
                    })
                    .collect::<Result<_>>()?,
            ))
        }
        other => Err(data_err!("{path}: cannot concatenate uncollated {}", other.describe())),
    }
}

/// Collates samples into a batch like PyTorch's `default_collate`: tensors are stacked along a
/// new first dim (their shapes must match), ints become an int64 tensor, floats a float64
/// tensor, bools a bool tensor, strings a list of strings; arrays and maps are collated per
/// position / key. `indices` name the samples in errors.
pub fn collate(samples: Vec<Batch>, indices: &[usize]) -> Result<Batch> {
    if samples.is_empty() {
        return Err(data_err!("cannot collate an empty batch"));
    }
    collate_at(samples, indices, "")
}

/// "" for the sample itself, "field x of " for a part of it.
fn field(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("field {path} of ")
    }
}

fn collate_at(samples: Vec<Batch>, indices: &[usize], path: &str) -> Result<Batch> {
    let idx = |i: usize| indices.get(i).copied().unwrap_or(i);
    let kind_err = |i: usize, want: &str, got: &Batch| {
        data_err!(
            "inconsistent samples: {}sample {} is {}, but sample {} has {want}",
            field(path),
            idx(i),
            got.describe(),
            idx(0)
        )
    };
    match &samples[0] {
        Batch::Tensor(t0) => {
            let shape0 = t0.size();
            let want = samples[0].describe();
            let mut ts = Vec::with_capacity(samples.len());
            for (i, s) in samples.into_iter().enumerate() {
                match s {
                    Batch::Tensor(t) => {
                        if t.size() != shape0 {
                            return Err(data_err!(
                                "inconsistent samples: {}sample {} has shape {:?}, but sample {} has shape {:?}",
                                field(path),
                                idx(i),
                                t.size(),
                                idx(0),
                                shape0
                            ));
                        }
                        ts.push(t);
                    }
                    other => return Err(kind_err(i, &want, &other)),
                }
            }
            Ok(Batch::Tensor(Tensor::f_stack(&ts, 0)?))
        }
        Batch::Int(_) | Batch::Float(_) | Batch::Bool(_) => {
            let first = samples[0].describe();
            let is_float = matches!(samples[0], Batch::Float(_));
            let is_bool = matches!(samples[0], Batch::Bool(_));
            let mut vf = Vec::new();
            let mut vi = Vec::new();
            for (i, s) in samples.iter().enumerate() {
                match (s, is_float, is_bool) {
                    (Batch::Float(f), true, _) => vf.push(*f),
                    (Batch::Int(n), true, _) => vf.push(*n as f64),
                    (Batch::Int(n), false, false) => vi.push(*n),
                    (Batch::Bool(b), false, true) => vi.push(i64::from(*b)),
                    (other, ..) => return Err(kind_err(i, &first, other)),
                }
            }
            Ok(Batch::Tensor(if is_float {
                Tensor::f_from_slice(&vf)?
            } else if is_bool {
                Tensor::f_from_slice(&vi)?.f_to_kind(Kind::Bool)?
            } else {
                Tensor::f_from_slice(&vi)?
            }))
        }
        Batch::Str(_) => {
            let mut out = Vec::with_capacity(samples.len());
            for (i, s) in samples.into_iter().enumerate() {
                match s {
                    Batch::Str(s) => out.push(s),
                    other => return Err(kind_err(i, "a string", &other)),
                }
            }
            Ok(Batch::Strs(out))
        }
        Batch::List(v0) => {
            let n = v0.len();
            let mut cols: Vec<Vec<Batch>> = (0..n).map(|_| Vec::with_capacity(samples.len())).collect();
            for (i, s) in samples.into_iter().enumerate() {
                match s {
                    Batch::List(v) if v.len() == n => {
                        for (c, x) in cols.iter_mut().zip(v) {
                            c.push(x);
                        }
                    }
                    other => return Err(kind_err(i, &format!("an array of {n} elements"), &other)),
                }
            }
            Ok(Batch::List(
                cols.into_iter()
                    .enumerate()
                    .map(|(j, c)| collate_at(c, indices, &format!("{path}[{j}]")))
                    .collect::<Result<_>>()?,
            ))
        }
        Batch::Map(m0) => {
            let keys: Vec<String> = m0.iter().map(|(k, _)| k.clone()).collect();
            let mut cols: Vec<Vec<Batch>> = keys.iter().map(|_| Vec::with_capacity(samples.len())).collect();
            for (i, s) in samples.into_iter().enumerate() {
                match s {
                    Batch::Map(mut m) if m.len() == keys.len() => {
                        for (ki, k) in keys.iter().enumerate() {
                            let pos = m.iter().position(|(kk, _)| kk == k).ok_or_else(|| {
                                data_err!(
                                    "inconsistent samples: {}sample {} has no key '{k}', but sample {} has",
                                    field(path),
                                    idx(i),
                                    idx(0)
                                )
                            })?;
                            cols[ki].push(m.swap_remove(pos).1);
                        }
                    }
                    other => return Err(kind_err(i, &format!("a map with keys {keys:?}"), &other)),
                }
            }
            Ok(Batch::Map(
                keys.into_iter()
                    .zip(cols)
                    .map(|(k, c)| {
                        let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                        Ok((k, collate_at(c, indices, &p)?))
                    })
                    .collect::<Result<_>>()?,
            ))
        }
        Batch::Strs(_) => Err(data_err!("cannot collate already collated strings ({}a sample)", field(path))),
    }
}
