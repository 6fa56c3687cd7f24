//! Reading a callback's state from a checkpoint strictly: exactly the keys the callback writes,
//! each of the type it writes. A key that is unknown, missing or of another type is an error that
//! names it (and the valid keys), never a default that silently replaces what was saved.
use serde_json::{Map, Value};

/// A callback's checkpoint state whose keys were checked against the ones it writes.
pub struct State<'a> {
    map: &'a Map<String, Value>,
}

/// `v` for an error message, cut short when long.
fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

impl<'a> State<'a> {
    /// `s`, which must be a map with exactly `keys`.
    pub fn new(s: &'a Value, keys: &[&str]) -> Result<State<'a>, String> {
        let valid = || keys.join(", ");
        let map = s.as_object().ok_or_else(|| format!("the state is {}, not a map of {}", short(s), valid()))?;
        if let Some(k) = map.keys().find(|k| !keys.contains(&k.as_str())) {
            return Err(format!("unknown key '{k}' in the state (valid keys: {})", valid()));
        }
        if let Some(k) = keys.iter().find(|k| !map.contains_key(**k)) {
            return Err(format!("missing key '{k}' in the state (valid keys: {})", valid()));
        }
        Ok(State { map })
    }

    fn get(&self, k: &str) -> &'a Value {
        // every key was checked present in `new`; Null only if a caller asks for one it did not list
        self.map.get(k).unwrap_or(&Value::Null)
    }

    fn malformed(&self, k: &str, want: &str) -> String {
        format!("key '{k}' of the state is malformed: expected {want}, found {}", short(self.get(k)))
    }

    /// An integer of at least `min`.
    pub fn int(&self, k: &str, min: i64) -> Result<i64, String> {
        self.get(k).as_i64().filter(|v| *v >= min).ok_or_else(|| self.malformed(k, &format!("an integer >= {min}")))
    }

    /// A non-negative integer, or null.
    pub fn opt_index(&self, k: &str) -> Result<Option<usize>, String> {
        match self.get(k) {
            Value::Null => Ok(None),
            v => v.as_u64().map(|v| Some(v as usize)).ok_or_else(|| self.malformed(k, "an integer >= 0 or null")),
        }
    }

    /// A number, or null.
    pub fn opt_f64(&self, k: &str) -> Result<Option<f64>, String> {
        match self.get(k) {
            Value::Null => Ok(None),
            v => crate::checkpoint::float::from_json(v)
                .map(Some)
                .ok_or_else(|| self.malformed(k, "a number (or \"inf\", \"-inf\", \"nan\") or null")),
        }
    }

    /// A string.
    pub fn str(&self, k: &str) -> Result<&'a str, String> {
        self.get(k).as_str().ok_or_else(|| self.malformed(k, "a string"))
    }

    /// A string, or null.
    pub fn opt_str(&self, k: &str) -> Result<Option<&'a str>, String> {
        match self.get(k) {
            Value::Null => Ok(None),
            v => v.as_str().map(Some).ok_or_else(|| self.malformed(k, "a string or null")),
        }
    }

    /// A map whose values are numbers or null (NaN).
    pub fn f64_map(&self, k: &str) -> Result<Vec<(&'a str, f64)>, String> {
        let m = self.get(k).as_object().ok_or_else(|| self.malformed(k, "a map of numbers"))?;
        m.iter()
            .map(|(name, v)| match v {
                Value::Null => Ok((name.as_str(), f64::NAN)),
                v => crate::checkpoint::float::from_json(v).map(|x| (name.as_str(), x)).ok_or_else(|| {
                    format!("key '{k}' of the state is malformed: its entry '{name}' is {}, not a number", short(v))
                }),
            })
            .collect()
    }
}
