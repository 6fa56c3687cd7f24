//! LightningCLI's conventions: `--config cfg.yaml` files (keys `trainer`, `model`, `data`,
//! `seed_everything`, `ckpt_path`; `trainer.callbacks` as `class_path` / `init_args`), several of
//! them merged in order, and `--trainer.k=v` / `--model.k=v` / `--data.k=v` flags. A config file is
//! one more source of the settings `--set` gives: everything lands in one [`Settings`].
use crate::script::lightning::settings_fn;
use crate::script::runner::Script;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The top-level keys of a config file.
pub const CONFIG_KEYS: &[&str] = &["trainer", "model", "data", "seed_everything", "ckpt_path"];

/// Lightning callback classes and the lt callback each one is (`callbacks::early_stopping`, …),
/// whose options are the class's init arguments.
pub const CALLBACK_CLASSES: &[(&str, &str)] = &[
    ("EarlyStopping", "early_stopping"),
    ("ModelCheckpoint", "model_checkpoint"),
    ("LearningRateMonitor", "learning_rate_monitor"),
    ("Timer", "timer"),
    ("ModelSummary", "model_summary"),
    ("GradientAccumulationScheduler", "gradient_accumulation_scheduler"),
    ("StochasticWeightAveraging", "stochastic_weight_averaging"),
    ("EMAWeightAveraging", "ema_weight_averaging"),
    ("ThroughputMonitor", "throughput_monitor"),
];

/// The packages a `class_path` may name a callback class in (or none: `EarlyStopping`).
const CALLBACK_PACKAGES: &[&str] = &["lightning.pytorch.callbacks", "pytorch_lightning.callbacks"];

/// Every setting of a stage, from config files then the command line (later wins).
#[derive(Debug, Default, Clone)]
pub struct Settings {
    /// Trainer options (`seed_everything` is `seed`).
    pub trainer: BTreeMap<String, Value>,
    /// Module hyperparameters: `opt.name` is the entry `name` of the map `opt`; a map value from a
    /// config file merges into a map hyperparameter (see [`Settings::resolve`]).
    pub model: BTreeMap<String, Value>,
    /// DataModule hyperparameters, as `model`.
    pub data: BTreeMap<String, Value>,
    /// `trainer.callbacks` of the config files: `{class_path, init_args}` maps.
    pub callbacks: Vec<Value>,
    pub ckpt_path: Option<String>,
}

impl Settings {
    /// Config files in order, then the `--set`s (`trainer.k=v`, `model.k=v`, `data.k=v`) in order.
    pub fn gather(configs: &[PathBuf], sets: &[String]) -> Result<Settings, String> {
        let mut s = Settings::default();
        for path in configs {
            s.add_config(&super::yaml::read(path)?, &path.display().to_string())?;
        }
        for set in sets {
            s.add_set(set)?;
        }
        Ok(s)
    }

    /// One `--set key=value` (the value as JSON when it parses, else a string).
    pub fn add_set(&mut self, s: &str) -> Result<(), String> {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| format!("--set expects key=value (or --{s}=value), got '{s}' without a value"))?;
        let v = crate::script::lightning::parse_set_value(v.trim());
        let k = k.trim();
        if let Some(k) = k.strip_prefix("trainer.") {
            self.trainer.insert(k.to_string(), v);
        } else if let Some(k) = k.strip_prefix("model.") {
            self.model.insert(k.to_string(), v);
        } else if let Some(k) = k.strip_prefix("data.") {
            self.data.insert(k.to_string(), v);
        } else {
            return Err(format!(
                "--set {s}: keys start with `trainer.`, `model.` or `data.` (e.g. --set trainer.max_epochs=3 --set model.lr=0.01)"
            ));
        }
        Ok(())
    }

    /// One parsed config file.
    pub fn add_config(&mut self, v: &Value, what: &str) -> Result<(), String> {
        let top = match v {
            Value::Null => return Ok(()),
            Value::Object(m) => m,
            other => {
                return Err(format!("{what}: a config file is a map with keys {}; got {other}", CONFIG_KEYS.join(", ")))
            }
        };
        for (k, v) in top {
            match k.as_str() {
                "trainer" => {
                    for (tk, tv) in section(v, what, "trainer")? {
                        if tk == "callbacks" {
                            // a list replaces the one before it, as jsonargparse does
                            self.callbacks = match tv {
                                Value::Array(a) => a.clone(),
                                Value::Null => Vec::new(),
                                one => vec![one.clone()],
                            };
                        } else {
                            self.trainer.insert(tk.clone(), tv.clone());
                        }
                    }
                }
                "model" | "data" => {
                    let sec = section(v, what, k)?;
                    if sec.contains_key("class_path") {
                        return Err(format!(
                            "{what}: {k}.class_path: lt's {k} is the script's (its {}); give its hyperparameters under `{k}:` directly",
                            if k == "model" { "hparams()" } else { "datamodule_hparams()" }
                        ));
                    }
                    let target = if k == "model" { &mut self.model } else { &mut self.data };
                    target.extend(sec.iter().map(|(a, b)| (a.clone(), b.clone())));
                }
                "seed_everything" => match v {
                    Value::Number(n) if n.is_i64() => {
                        self.trainer.insert("seed".into(), v.clone());
                    }
                    Value::Null | Value::Bool(false) => {
                        self.trainer.remove("seed");
                    }
                    other => return Err(format!("{what}: seed_everything must be an int (or null), got {other}")),
                },
                "ckpt_path" => match v {
                    Value::String(p) => self.ckpt_path = Some(p.clone()),
                    Value::Null => self.ckpt_path = None,
                    other => return Err(format!("{what}: ckpt_path must be a path, `last` or `best`, got {other}")),
                },
                "optimizer" | "lr_scheduler" => {
                    return Err(format!(
                        "{what}: `{k}:` is not supported: the script's configure_optimizers() makes the optimizers; give what it reads under `model:`"
                    ))
                }
                other => {
                    let hint = did_you_mean(other, CONFIG_KEYS.iter().copied());
                    return Err(format!("{what}: unknown key '{other}'{hint}; valid keys: {}", CONFIG_KEYS.join(", ")));
                }
            }
        }
        Ok(())
    }

    /// The model and data overrides checked against the script's declared defaults (`hparams()`,
    /// `datamodule_hparams()`) and laid out as dotted leaf keys: an unknown key is an error with a
    /// did-you-mean; a map from a config file merges into a map hyperparameter key by key.
    pub fn resolve(&mut self, script: &Script) -> Result<(), String> {
        for (section, fun) in [("model", "hparams"), ("data", "datamodule_hparams")] {
            let overrides = if section == "model" { &mut self.model } else { &mut self.data };
            if overrides.is_empty() {
                continue;
            }
            let defaults = match settings_fn(script, fun)? {
                Some(Value::Object(m)) => Some(m),
                _ => None,
            };
            let Some(defaults) = defaults else {
                let keys: Vec<&str> = overrides.keys().map(String::as_str).collect();
                return Err(format!(
                    "{section}.{} given, but {} has no `fn {fun}()` declaring {section} hyperparameters and their defaults",
                    keys.join(", "),
                    script.name()
                ));
            };
            let mut out = BTreeMap::new();
            for (k, v) in std::mem::take(overrides) {
                leaves(&defaults, section, &k, v, &mut out)?;
            }
            *overrides = out;
        }
        Ok(())
    }

    /// The merged configuration as a config file (`--print_config`): the script's `trainer()`,
    /// `hparams()` and `datamodule_hparams()` with every override applied. Reading it back with
    /// `--config` gives the same run.
    pub fn effective(&self, script: &Script) -> Result<Value, String> {
        let mut top = Map::new();
        let mut trainer = crate::script::lightning::trainer_options(script, &self.trainer)?;
        if let Some(seed) = trainer.remove("seed") {
            top.insert("seed_everything".into(), seed);
        }
        let mut t: Map<String, Value> = trainer.into_iter().collect();
        if !self.callbacks.is_empty() {
            t.insert("callbacks".into(), Value::Array(self.callbacks.clone()));
        }
        top.insert("trainer".into(), Value::Object(t));
        for (section, fun, over) in [("model", "hparams", &self.model), ("data", "datamodule_hparams", &self.data)] {
            let mut v = match settings_fn(script, fun)? {
                Some(Value::Object(m)) => Value::Object(m),
                _ => Value::Object(Map::new()),
            };
            for (k, x) in over {
                let mut at = &mut v;
                for seg in k.split('.') {
                    at = at
                        .as_object_mut()
                        .ok_or_else(|| format!("{section}.{k}: not a map"))?
                        .entry(seg.to_string())
                        .or_insert(Value::Null);
                }
                *at = x.clone();
            }
            if section == "model" || v.as_object().is_some_and(|m| !m.is_empty()) {
                top.insert(section.into(), v);
            }
        }
        if let Some(p) = &self.ckpt_path {
            top.insert("ckpt_path".into(), Value::String(p.clone()));
        }
        Ok(Value::Object(top))
    }
}

fn section<'a>(v: &'a Value, what: &str, key: &str) -> Result<&'a Map<String, Value>, String> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    match v {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(EMPTY.get_or_init(Map::new)),
        other => Err(format!("{what}: `{key}:` must be a map, got {other}")),
    }
}

fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    crate::trainer::hooks::closest(name, candidates).map(|c| format!(" (did you mean '{c}'?)")).unwrap_or_default()
}

/// Checks the override `key` (dotted) = `v` against `defaults` and adds it to `out` as leaves.
fn leaves(
    defaults: &Map<String, Value>,
    section: &str,
    key: &str,
    v: Value,
    out: &mut BTreeMap<String, Value>,
) -> Result<(), String> {
    let mut at = defaults;
    let segs: Vec<&str> = key.split('.').collect();
    for (i, seg) in segs.iter().enumerate() {
        let Some(d) = at.get(*seg) else {
            let prefix = segs[..i].join(".");
            let hint = did_you_mean(seg, at.keys().map(String::as_str));
            let known: Vec<&str> = at.keys().map(String::as_str).collect();
            return Err(format!(
                "unknown {section} hyperparameter '{section}.{key}'{hint}; {} declares: {}",
                if prefix.is_empty() {
                    format!("the script's {}", declared_by(section))
                } else {
                    format!("'{section}.{prefix}'")
                },
                if known.is_empty() { "nothing".to_string() } else { known.join(", ") }
            ));
        };
        if i + 1 == segs.len() {
            // a map given for a map hyperparameter merges into it, entry by entry
            if let (Value::Object(_), Value::Object(vm)) = (d, &v) {
                for (k, x) in vm {
                    leaves(defaults, section, &format!("{key}.{k}"), x.clone(), out)?;
                }
                return Ok(());
            }
            out.insert(key.to_string(), typed_like(d, v, section, key)?);
            return Ok(());
        }
        match d {
            Value::Object(m) => at = m,
            _ => return Err(format!("'{section}.{key}': '{section}.{}' is not a map", segs[..=i].join("."))),
        }
    }
    Ok(())
}

/// `v` checked against the type of the default `d` (the script's declaration), as LightningCLI
/// checks against `__init__`'s annotations: a number where a number is declared (an int where an
/// int is; an int is a float where a float is), a bool, a list; a string default takes any
/// scalar as its text (`--model.tag=1`); a null default takes anything.
fn typed_like(d: &Value, v: Value, section: &str, key: &str) -> Result<Value, String> {
    let want = match (d, &v) {
        (Value::Null, _) | (_, Value::Null) => return Ok(v),
        (Value::String(_), Value::String(_)) => return Ok(v),
        (Value::String(_), Value::Number(_) | Value::Bool(_)) => return Ok(Value::String(v.to_string())),
        (Value::Bool(_), Value::Bool(_)) => return Ok(v),
        (Value::Number(dn), Value::Number(vn)) if dn.is_i64() || dn.is_u64() => {
            if vn.is_i64() || vn.is_u64() {
                return Ok(v);
            }
            "an int"
        }
        (Value::Number(_), Value::Number(vn)) => {
            return Ok(vn.as_f64().and_then(serde_json::Number::from_f64).map(Value::Number).unwrap_or(v))
        }
        (Value::Array(_), Value::Array(_)) => return Ok(v),
        (Value::Number(n), _) if n.is_i64() || n.is_u64() => "an int",
        (Value::Number(_), _) => "a number",
        (Value::Bool(_), _) => "true or false",
        (Value::Array(_), _) => "a list",
        (Value::Object(_), _) => "a map",
        (Value::String(_), _) => "a string",
    };
    Err(format!("{section}.{key} must be {want} (its default in the script is {d}), got {v}"))
}

fn declared_by(section: &str) -> &'static str {
    if section == "model" {
        "hparams()"
    } else {
        "datamodule_hparams()"
    }
}

/// A `trainer.callbacks` entry as the lt callback expression and its options:
/// `{class_path: lightning.pytorch.callbacks.EarlyStopping, init_args: {monitor: val_loss}}` (or
/// just the class path) is `callbacks::early_stopping(#{monitor: "val_loss"})`.
pub fn callback_entry(entry: &Value) -> Result<(&'static str, Value), String> {
    let (class_path, init_args) = match entry {
        Value::String(s) => (s.as_str(), Value::Object(Map::new())),
        Value::Object(m) => {
            if let Some(k) = m.keys().find(|k| *k != "class_path" && *k != "init_args") {
                return Err(format!(
                    "trainer.callbacks: unknown key '{k}' in {entry}; an entry has class_path and init_args"
                ));
            }
            let cp = m
                .get("class_path")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("trainer.callbacks: {entry} has no class_path"))?;
            match m.get("init_args") {
                None | Some(Value::Null) => (cp, Value::Object(Map::new())),
                Some(a @ Value::Object(_)) => (cp, a.clone()),
                Some(other) => return Err(format!("trainer.callbacks: init_args of {cp} must be a map, got {other}")),
            }
        }
        other => {
            return Err(format!("trainer.callbacks: an entry is a map with class_path and init_args, got {other}"))
        }
    };
    let (package, class) = match class_path.rsplit_once('.') {
        Some((p, c)) => (Some(p), c),
        None => (None, class_path),
    };
    let known_package = package.is_none_or(|p| {
        CALLBACK_PACKAGES.iter().any(|k| p == *k || p.strip_prefix(k).is_some_and(|rest| rest.starts_with('.')))
    });
    let found = CALLBACK_CLASSES.iter().find(|(c, _)| *c == class).filter(|_| known_package);
    let Some((_, lt_name)) = found else {
        let hint = did_you_mean(class, CALLBACK_CLASSES.iter().map(|(c, _)| *c));
        return Err(format!(
            "trainer.callbacks: unsupported class_path '{class_path}'{hint}; supported: {} (in lightning.pytorch.callbacks, or without a package)",
            CALLBACK_CLASSES.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")
        ));
    };
    Ok((lt_name, init_args))
}

/// LightningCLI's flags as lt reads them: `--trainer.max_epochs=3` or `--trainer.max_epochs 3`
/// (also `model.`, `data.`) become `--set trainer.max_epochs=3`, `--seed_everything=N` becomes
/// `--set trainer.seed=N`; everything after a bare `--` is left alone.
pub fn rewrite_args(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let Some(s) = a.to_str() else {
            out.push(a);
            continue;
        };
        if s == "--" {
            out.push(a);
            out.extend(it);
            break;
        }
        let Some(flag) = s.strip_prefix("--") else {
            out.push(a);
            continue;
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let key = if name == "seed_everything" {
            Some("trainer.seed".to_string())
        } else if ["trainer.", "model.", "data."].iter().any(|p| name.starts_with(p) && name.len() > p.len()) {
            Some(name.to_string())
        } else {
            None
        };
        let Some(key) = key else {
            out.push(a);
            continue;
        };
        let value = match value {
            Some(v) => Some(v),
            // `--trainer.max_epochs 3`; a flag next is no value
            None => match it.as_slice().first().and_then(|v| v.to_str()) {
                Some(v) if !v.starts_with("--") => {
                    let v = v.to_string();
                    it.next();
                    Some(v)
                }
                _ => None,
            },
        };
        out.push("--set".into());
        // without a value, `--set` itself says a value is missing
        out.push(value.map_or(key.clone(), |v| format!("{key}={v}")).into());
    }
    out
}
