//! Conversions between Rhai values and the plain Rust types of the domain cores, shared by every
//! domain's `api.rs`: errors, shapes, nested literals, option maps.
use crate::tensor::create::Literal;
use crate::tensor::options::{parse_device, parse_dtype, TensorOptions};
use crate::tensor::Tensor;
use rhai::{Array, Dynamic, EvalAltResult, Map, Position};
use std::fmt::Display;

/// Result of a script-visible native function.
pub type RResult<T> = Result<T, Box<EvalAltResult>>;

/// Turns any error into a script runtime error; Rhai adds the call site's position.
pub fn err(e: impl Display) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(e.to_string().into(), Position::NONE))
}

/// Maps the error of a domain-core result into a script error.
pub trait OrScript<T> {
    fn or_script(self) -> RResult<T>;
}

impl<T, E: Display> OrScript<T> for Result<T, E> {
    fn or_script(self) -> RResult<T> {
        self.map_err(err)
    }
}

/// Reads a dimension list: an int or an array of ints.
pub fn int_list(d: &Dynamic, what: &str) -> RResult<Vec<i64>> {
    if let Some(i) = d.clone().try_cast::<i64>() {
        return Ok(vec![i]);
    }
    if let Some(a) = d.read_lock::<Array>() {
        return a
            .iter()
            .map(|v| {
                v.as_int().map_err(|t| err(format!("{what}: expected a list of ints, found an element of type {t}")))
            })
            .collect();
    }
    Err(err(format!("{what}: expected an int or an array of ints, got {}", d.type_name())))
}

/// Reads an array of ints.
pub fn ints(a: &Array, what: &str) -> RResult<Vec<i64>> {
    int_list(&Dynamic::from_array(a.clone()), what)
}

/// Reads an INT or FLOAT as f64.
pub fn number(d: &Dynamic, what: &str) -> RResult<f64> {
    if let Ok(i) = d.as_int() {
        return Ok(i as f64);
    }
    d.as_float().map_err(|t| err(format!("{what}: expected a number, got {t}")))
}

/// Flattens a nested array literal (`[[1, 2], [3, 4]]`) into values and a shape, inferring the
/// dtype like PyTorch: any float makes it float, else ints, else bools. Ragged nesting is an error.
pub fn literal(d: &Dynamic) -> RResult<(Literal, Vec<i64>)> {
    enum Kind {
        Bool,
        Int,
        Float,
    }
    fn walk(d: &Dynamic, depth: usize, shape: &mut Vec<i64>, out: &mut Vec<Dynamic>, path: &str) -> RResult<()> {
        if let Some(a) = d.read_lock::<Array>() {
            let n = a.len() as i64;
            if shape.len() == depth {
                if out.is_empty() && depth > 0 && shape.len() > depth {
                    // unreachable; kept for clarity
                }
                shape.push(n);
            } else if shape.len() > depth && shape[depth] != n {
                return Err(err(format!(
                    "torch::tensor: ragged nested array: expected a sequence of length {} at dim {depth} ({path}), got {n}",
                    shape[depth]
                )));
            } else if shape.len() < depth {
                return Err(err(format!("torch::tensor: ragged nested array at {path}")));
            }
            for (i, v) in a.iter().enumerate() {
                walk(v, depth + 1, shape, out, &format!("{path}[{i}]"))?;
            }
            Ok(())
        } else {
            if shape.len() != depth {
                return Err(err(format!(
                    "torch::tensor: ragged nested array: found a scalar at {path} where a sequence was expected"
                )));
            }
            out.push(d.clone());
            Ok(())
        }
    }
    if let Some(t) = d.read_lock::<Tensor>() {
        let _ = t;
        return Err(err("torch::tensor: got a Tensor; use x.clone() or x.detach() to copy a tensor"));
    }
    let mut shape = Vec::new();
    let mut flat = Vec::new();
    walk(d, 0, &mut shape, &mut flat, "data")?;
    let mut kind = Kind::Bool;
    for v in &flat {
        if v.is_float() {
            kind = Kind::Float;
        } else if v.is_int() {
            if matches!(kind, Kind::Bool) {
                kind = Kind::Int;
            }
        } else if v.is_bool() {
        } else {
            return Err(err(format!(
                "torch::tensor: cannot make a tensor element from a value of type {}",
                v.type_name()
            )));
        }
    }
    let lit = match kind {
        Kind::Float => Literal::Float(
            flat.iter()
                .map(|v| {
                    v.as_float().unwrap_or_else(|_| {
                        v.as_int().map(|i| i as f64).unwrap_or_else(|_| {
                            if v.as_bool().unwrap_or(false) {
                                1.0
                            } else {
                                0.0
                            }
                        })
                    })
                })
                .collect(),
        ),
        Kind::Int => Literal::Int(
            flat.iter().map(|v| v.as_int().unwrap_or_else(|_| i64::from(v.as_bool().unwrap_or(false)))).collect(),
        ),
        Kind::Bool => Literal::Bool(flat.iter().map(|v| v.as_bool().unwrap_or(false)).collect()),
    };
    // An empty literal `[]` is a float tensor of shape [0], as in PyTorch.
    let lit = if flat.is_empty() { Literal::Float(vec![]) } else { lit };
    Ok((lit, shape))
}

/// A script's option map, checked against the keys a function accepts.
pub struct Opts<'a> {
    map: &'a Map,
    what: &'a str,
}

impl<'a> Opts<'a> {
    /// Fails with the list of valid keys when `map` holds a key not in `allowed`.
    pub fn new(map: &'a Map, what: &'a str, allowed: &[&str]) -> RResult<Self> {
        crate::tensor::options::check_keys(what, map.keys().map(|k| k.as_str()), allowed).or_script()?;
        Ok(Opts { map, what })
    }
    pub fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_unit())
    }
    pub fn get(&self, key: &str) -> Option<&Dynamic> {
        self.map.get(key).filter(|v| !v.is_unit())
    }
    fn type_err(&self, key: &str, want: &str, v: &Dynamic) -> Box<EvalAltResult> {
        err(format!("{}: option '{key}' must be {want}, got {}", self.what, v.type_name()))
    }
    pub fn f64_or(&self, key: &str, default: f64) -> RResult<f64> {
        Ok(self.f64_opt(key)?.unwrap_or(default))
    }
    pub fn f64_opt(&self, key: &str) -> RResult<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => number(v, self.what).map(Some).map_err(|_| self.type_err(key, "a number", v)),
        }
    }
    pub fn i64_or(&self, key: &str, default: i64) -> RResult<i64> {
        Ok(self.i64_opt(key)?.unwrap_or(default))
    }
    pub fn i64_opt(&self, key: &str) -> RResult<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_int().map(Some).map_err(|_| self.type_err(key, "an int", v)),
        }
    }
    pub fn bool_or(&self, key: &str, default: bool) -> RResult<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().map_err(|_| self.type_err(key, "a bool", v)),
        }
    }
    pub fn str_opt(&self, key: &str) -> RResult<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .clone()
                .into_immutable_string()
                .map(|s| Some(s.to_string()))
                .map_err(|_| self.type_err(key, "a string", v)),
        }
    }
    pub fn str_or(&self, key: &str, default: &str) -> RResult<String> {
        Ok(self.str_opt(key)?.unwrap_or_else(|| default.to_string()))
    }
    pub fn ints_opt(&self, key: &str) -> RResult<Option<Vec<i64>>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                int_list(v, self.what).map(Some).map_err(|_| self.type_err(key, "an int or an array of ints", v))
            }
        }
    }
    /// A number or an array of numbers (one per parameter group, per dimension, …).
    pub fn numbers_opt(&self, key: &str) -> RResult<Option<Vec<f64>>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let bad = || self.type_err(key, "a number or an array of numbers", v);
        match v.read_lock::<rhai::Array>() {
            Some(a) => a.iter().map(|e| number(e, self.what).map_err(|_| bad())).collect::<RResult<_>>().map(Some),
            None => number(v, self.what).map(|x| Some(vec![x])).map_err(|_| bad()),
        }
    }
    pub fn tensor_opt(&self, key: &str) -> RResult<Option<Tensor>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.clone().try_cast::<Tensor>().map(Some).ok_or_else(|| self.type_err(key, "a Tensor", v)),
        }
    }
}

/// The keys of tensor creation options.
pub const TENSOR_OPTION_KEYS: &[&str] = &["dtype", "device", "requires_grad"];

/// Parses `#{dtype, device, requires_grad}`.
pub fn tensor_options(map: &Map, what: &str) -> RResult<TensorOptions> {
    let o = Opts::new(map, what, TENSOR_OPTION_KEYS)?;
    let mut t = TensorOptions::default();
    if let Some(d) = o.str_opt("dtype")? {
        t.dtype = Some(parse_dtype(&d).or_script()?);
    }
    if let Some(d) = o.str_opt("device")? {
        t.device = parse_device(&d).or_script()?;
    }
    t.requires_grad = o.bool_or("requires_grad", false)?;
    Ok(t)
}

/// A tensor, or a number / bool / nested array turned into one (for ops that take either).
pub fn to_tensor(d: &Dynamic, what: &str) -> RResult<tch::Tensor> {
    if let Some(t) = d.read_lock::<Tensor>() {
        return Ok(t.0.shallow_clone());
    }
    let (lit, shape) =
        literal(d).map_err(|_| err(format!("{what}: expected a Tensor or a number, got {}", d.type_name())))?;
    crate::tensor::create::from_literal(lit, &shape, &TensorOptions::default()).map(|t| t.handle()).or_script()
}
