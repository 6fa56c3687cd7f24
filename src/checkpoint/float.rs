//! Floats in checkpoint JSON that may be NaN or infinite (a logged loss that went NaN, a `max`
//! reduction of an inf): JSON has no such numbers and serde_json writes them as `null`, which
//! reads back as an error (or, before checkpoints were strict, silently dropped the whole value).
//! Here a finite value is a JSON number and the others are the strings `"nan"`, `"inf"` and
//! `"-inf"`; reading also accepts `null` as NaN, which is what format-1 checkpoints hold for any of
//! them.
use serde::{Deserialize, Deserializer, Serializer};
use serde_json::Value;

/// `x` as checkpoint JSON: a number, or `"nan"` / `"inf"` / `"-inf"`.
pub fn to_json(x: f64) -> Value {
    match serde_json::Number::from_f64(x) {
        Some(n) => Value::Number(n),
        None if x.is_nan() => Value::String("nan".into()),
        None if x > 0.0 => Value::String("inf".into()),
        None => Value::String("-inf".into()),
    }
}

/// A float written by [`to_json`] (or `null`: NaN, as format 1 wrote every non-finite value);
/// None for anything else.
pub fn from_json(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Null => Some(f64::NAN),
        Value::String(s) => match s.as_str() {
            "nan" => Some(f64::NAN),
            "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

fn invalid<E: serde::de::Error>(v: &Value) -> E {
    E::custom(format!("expected a number, \"nan\", \"inf\" or \"-inf\", found {v}"))
}

/// `#[serde(with = "crate::checkpoint::float")]` for an `f64` field.
pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    match x {
        x if x.is_finite() => s.serialize_f64(*x),
        x if x.is_nan() => s.serialize_str("nan"),
        x if *x > 0.0 => s.serialize_str("inf"),
        _ => s.serialize_str("-inf"),
    }
}

/// See [`serialize`].
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = Value::deserialize(d)?;
    from_json(&v).ok_or_else(|| invalid(&v))
}

/// `#[serde(with = "crate::checkpoint::float::option")]` for an `Option<f64>` field: `None` is
/// `null`, a value is written as [`to_json`] writes it.
pub mod option {
    use super::*;

    /// See the module.
    pub fn serialize<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match x {
            None => s.serialize_none(),
            Some(x) => super::serialize(x, s),
        }
    }

    /// See the module.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        let v = Value::deserialize(d)?;
        match v {
            Value::Null => Ok(None),
            v => from_json(&v).map(Some).ok_or_else(|| invalid(&v)),
        }
    }
}
