//! The Trainer's options, with Lightning's names and defaults, read from a neutral key → JSON value
//! map (the script's `fn trainer()` map merged with `--set trainer.k=v`, the command line winning).
use super::precision::Precision;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A batch limit: a count of batches, or a fraction of the loader.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Count(usize),
    Fraction(f64),
}

impl Limit {
    /// The number of batches this limit allows out of `available` (None = unknown length).
    pub fn apply(self, available: Option<usize>) -> Option<usize> {
        match (self, available) {
            (Limit::Count(n), Some(a)) => Some(n.min(a)),
            (Limit::Count(n), None) => Some(n),
            (Limit::Fraction(f), Some(a)) => Some(((a as f64) * f).floor() as usize),
            (Limit::Fraction(_), None) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipAlgorithm {
    Norm,
    Value,
}

#[derive(Debug, Clone)]
pub struct TrainerConfig {
    pub max_epochs: Option<i64>,
    pub min_epochs: Option<i64>,
    pub max_steps: i64,
    pub min_steps: Option<i64>,
    pub max_time: Option<Duration>,
    pub limit_train_batches: Limit,
    pub limit_val_batches: Limit,
    pub limit_test_batches: Limit,
    pub limit_predict_batches: Limit,
    pub val_check_interval: Limit,
    pub check_val_every_n_epoch: Option<i64>,
    pub num_sanity_val_steps: i64,
    pub fast_dev_run: i64,
    pub overfit_batches: Limit,
    pub accumulate_grad_batches: i64,
    pub gradient_clip_val: Option<f64>,
    pub gradient_clip_algorithm: ClipAlgorithm,
    pub precision: Precision,
    pub accelerator: String,
    pub devices: Value,
    pub deterministic: bool,
    pub benchmark: bool,
    pub detect_anomaly: bool,
    pub default_root_dir: PathBuf,
    pub log_every_n_steps: i64,
    /// The loggers write to disk every this many steps (Lightning's CSVLogger
    /// `flush_logs_every_n_steps`, 100), at each epoch's end and on every way a run ends.
    pub flush_logs_every_n_steps: i64,
    pub enable_progress_bar: bool,
    pub enable_model_summary: bool,
    pub enable_checkpointing: bool,
    pub inference_mode: bool,
    pub barebones: bool,
    pub seed: Option<i64>,
    pub logger: bool,
    /// Which loggers write when `logger` is true: `loggers: ["csv", "tensorboard"]` (the
    /// default: both, into the same `lightning_logs/version_N`), or one name as a string.
    pub loggers: Vec<super::logger::LoggerKind>,
    /// `profiler: "simple"` / `"pytorch"` / a map with `kind` (Lightning's `profiler`).
    pub profiler: Option<super::profiler::ProfilerConfig>,
}

/// Every key the Trainer accepts.
pub const TRAINER_KEYS: &[&str] = &[
    "max_epochs",
    "min_epochs",
    "max_steps",
    "min_steps",
    "max_time",
    "limit_train_batches",
    "limit_val_batches",
    "limit_test_batches",
    "limit_predict_batches",
    "val_check_interval",
    "check_val_every_n_epoch",
    "num_sanity_val_steps",
    "fast_dev_run",
    "overfit_batches",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "precision",
    "accelerator",
    "devices",
    "deterministic",
    "benchmark",
    "detect_anomaly",
    "default_root_dir",
    "log_every_n_steps",
    "flush_logs_every_n_steps",
    "enable_progress_bar",
    "enable_model_summary",
    "enable_checkpointing",
    "inference_mode",
    "barebones",
    "seed",
    "logger",
    "loggers",
    "profiler",
];

impl Default for TrainerConfig {
    fn default() -> Self {
        TrainerConfig {
            max_epochs: None,
            min_epochs: None,
            max_steps: -1,
            min_steps: None,
            max_time: None,
            limit_train_batches: Limit::Fraction(1.0),
            limit_val_batches: Limit::Fraction(1.0),
            limit_test_batches: Limit::Fraction(1.0),
            limit_predict_batches: Limit::Fraction(1.0),
            val_check_interval: Limit::Fraction(1.0),
            check_val_every_n_epoch: Some(1),
            num_sanity_val_steps: 2,
            fast_dev_run: 0,
            overfit_batches: Limit::Count(0),
            accumulate_grad_batches: 1,
            gradient_clip_val: None,
            gradient_clip_algorithm: ClipAlgorithm::Norm,
            precision: Precision::F32,
            accelerator: "auto".into(),
            devices: Value::String("auto".into()),
            deterministic: false,
            benchmark: false,
            detect_anomaly: false,
            default_root_dir: PathBuf::from("."),
            log_every_n_steps: 50,
            flush_logs_every_n_steps: 100,
            enable_progress_bar: true,
            enable_model_summary: true,
            enable_checkpointing: true,
            inference_mode: true,
            barebones: false,
            seed: None,
            logger: true,
            loggers: vec![super::logger::LoggerKind::Csv, super::logger::LoggerKind::TensorBoard],
            profiler: None,
        }
    }
}

fn want_int(k: &str, v: &Value) -> Result<i64, String> {
    v.as_i64().ok_or_else(|| format!("trainer option '{k}' must be an int, got {v}"))
}

fn want_f64(k: &str, v: &Value) -> Result<f64, String> {
    v.as_f64().ok_or_else(|| format!("trainer option '{k}' must be a number, got {v}"))
}

fn want_bool(k: &str, v: &Value) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| format!("trainer option '{k}' must be true or false, got {v}"))
}

fn want_limit(k: &str, v: &Value) -> Result<Limit, String> {
    if let Some(i) = v.as_i64() {
        if i < 0 {
            return Err(format!("trainer option '{k}' must be >= 0, got {i}"));
        }
        return Ok(Limit::Count(i as usize));
    }
    match v.as_f64() {
        Some(f) if (0.0..=1.0).contains(&f) => Ok(Limit::Fraction(f)),
        Some(f) => Err(format!("trainer option '{k}' as a float must be a fraction in [0, 1], got {f}")),
        None => Err(format!("trainer option '{k}' must be an int (batches) or a float fraction, got {v}")),
    }
}

/// "DD:HH:MM:SS" (Lightning's string form), or a number of seconds, or a map {days, hours, minutes, seconds}.
pub fn want_duration(k: &str, v: &Value) -> Result<Duration, String> {
    let secs = |s: f64| -> Result<Duration, String> {
        Duration::try_from_secs_f64(s)
            .map_err(|_| format!("trainer option '{k}' must be a non-negative, finite duration, got {s} seconds"))
    };
    if let Some(s) = v.as_f64() {
        return secs(s);
    }
    if let Some(s) = v.as_str() {
        let parts: Result<Vec<u64>, _> = s.split(':').map(|p| p.parse::<u64>()).collect();
        if let Ok(p) = parts {
            if p.len() == 4 {
                return Ok(Duration::from_secs(p[0] * 86400 + p[1] * 3600 + p[2] * 60 + p[3]));
            }
        }
        return Err(format!("trainer option '{k}' must look like \"DD:HH:MM:SS\", got \"{s}\""));
    }
    if let Some(m) = v.as_object() {
        const UNITS: [(&str, f64); 4] = [("days", 86400.0), ("hours", 3600.0), ("minutes", 60.0), ("seconds", 1.0)];
        let mut total = 0.0;
        for (unit, value) in m {
            let Some(&(_, scale)) = UNITS.iter().find(|(u, _)| u == unit) else {
                return Err(format!(
                    "trainer option '{k}': unknown key '{unit}'; valid keys: days, hours, minutes, seconds"
                ));
            };
            let x = value
                .as_f64()
                .ok_or_else(|| format!("trainer option '{k}': '{unit}' must be a number, got {value}"))?;
            if x < 0.0 {
                return Err(format!("trainer option '{k}': '{unit}' must be >= 0, got {x}"));
            }
            total += x * scale;
        }
        return secs(total);
    }
    Err(format!("trainer option '{k}' must be \"DD:HH:MM:SS\", seconds, or a map, got {v}"))
}

impl TrainerConfig {
    /// Builds a config from options; unknown keys are an error listing the valid ones.
    pub fn from_map(opts: &BTreeMap<String, Value>) -> Result<TrainerConfig, String> {
        let mut c = TrainerConfig::default();
        for (k, v) in opts {
            if v.is_null() {
                // `()` is Lightning's None: for check_val_every_n_epoch it means "count
                // val_check_interval across epochs"; elsewhere it is the default
                if k == "check_val_every_n_epoch" {
                    c.check_val_every_n_epoch = None;
                }
                continue;
            }
            match k.as_str() {
                "max_epochs" => c.max_epochs = Some(want_int(k, v)?),
                "min_epochs" => c.min_epochs = Some(want_int(k, v)?),
                "max_steps" => c.max_steps = want_int(k, v)?,
                "min_steps" => c.min_steps = Some(want_int(k, v)?),
                "max_time" => c.max_time = Some(want_duration(k, v)?),
                "limit_train_batches" => c.limit_train_batches = want_limit(k, v)?,
                "limit_val_batches" => c.limit_val_batches = want_limit(k, v)?,
                "limit_test_batches" => c.limit_test_batches = want_limit(k, v)?,
                "limit_predict_batches" => c.limit_predict_batches = want_limit(k, v)?,
                "val_check_interval" => c.val_check_interval = want_limit(k, v)?,
                "check_val_every_n_epoch" => c.check_val_every_n_epoch = Some(want_int(k, v)?),
                "num_sanity_val_steps" => c.num_sanity_val_steps = want_int(k, v)?,
                "fast_dev_run" => {
                    c.fast_dev_run = match v {
                        Value::Bool(b) => i64::from(*b),
                        _ => want_int(k, v)?,
                    }
                }
                "overfit_batches" => c.overfit_batches = want_limit(k, v)?,
                "accumulate_grad_batches" => {
                    c.accumulate_grad_batches = want_int(k, v)?;
                    if c.accumulate_grad_batches < 1 {
                        return Err(format!("accumulate_grad_batches must be >= 1, got {}", c.accumulate_grad_batches));
                    }
                }
                "gradient_clip_val" => c.gradient_clip_val = Some(want_f64(k, v)?),
                "gradient_clip_algorithm" => {
                    c.gradient_clip_algorithm = match v.as_str() {
                        Some("norm") => ClipAlgorithm::Norm,
                        Some("value") => ClipAlgorithm::Value,
                        _ => return Err(format!("gradient_clip_algorithm must be \"norm\" or \"value\", got {v}")),
                    }
                }
                "precision" => {
                    let s = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        _ => return Err(format!("precision must be a string like \"bf16-mixed\", got {v}")),
                    };
                    c.precision = Precision::parse(&s)?;
                }
                "accelerator" => {
                    let s = v.as_str().ok_or_else(|| format!("accelerator must be a string, got {v}"))?;
                    if !["cpu", "cuda", "gpu", "auto", "mps"].contains(&s) {
                        return Err(format!(
                            "unknown accelerator '{s}'; expected \"cpu\", \"cuda\", \"gpu\", \"mps\" or \"auto\""
                        ));
                    }
                    c.accelerator = s.to_string();
                }
                "devices" => c.devices = v.clone(),
                "deterministic" => c.deterministic = want_bool(k, v)?,
                "benchmark" => c.benchmark = want_bool(k, v)?,
                "detect_anomaly" => c.detect_anomaly = want_bool(k, v)?,
                "default_root_dir" => {
                    c.default_root_dir = PathBuf::from(
                        v.as_str().ok_or_else(|| format!("default_root_dir must be a path string, got {v}"))?,
                    )
                }
                "log_every_n_steps" => c.log_every_n_steps = want_int(k, v)?,
                "flush_logs_every_n_steps" => c.flush_logs_every_n_steps = want_int(k, v)?,
                "enable_progress_bar" => c.enable_progress_bar = want_bool(k, v)?,
                "enable_model_summary" => c.enable_model_summary = want_bool(k, v)?,
                "enable_checkpointing" => c.enable_checkpointing = want_bool(k, v)?,
                "inference_mode" => c.inference_mode = want_bool(k, v)?,
                "barebones" => c.barebones = want_bool(k, v)?,
                "seed" => c.seed = Some(want_int(k, v)?),
                "logger" => c.logger = want_bool(k, v)?,
                "profiler" => c.profiler = super::profiler::ProfilerConfig::parse(v)?,
                "loggers" => {
                    let names: Vec<&str> = match v {
                        Value::String(s) => vec![s.as_str()],
                        Value::Array(a) => a
                            .iter()
                            .map(|x| {
                                x.as_str().ok_or_else(|| {
                                    format!("trainer option 'loggers' must list names like \"csv\", got {x}")
                                })
                            })
                            .collect::<Result<_, _>>()?,
                        _ => {
                            return Err(format!(
                                "trainer option 'loggers' must be a list like [\"csv\", \"tensorboard\"], got {v}"
                            ))
                        }
                    };
                    c.loggers = names.into_iter().map(super::logger::LoggerKind::parse).collect::<Result<_, _>>()?;
                }
                other => {
                    let hint = super::hooks::closest(other, TRAINER_KEYS.iter().copied())
                        .map(|c| format!("did you mean '{c}'? "))
                        .unwrap_or_default();
                    return Err(format!(
                        "unknown trainer option '{other}'; {hint}valid options: {}",
                        TRAINER_KEYS.join(", ")
                    ));
                }
            }
        }
        c.validate()?;
        if c.fast_dev_run > 0 {
            // Lightning: run n batches of train/val/test/predict, one epoch, no sanity check, no loggers/checkpoints
            let n = c.fast_dev_run as usize;
            c.limit_train_batches = Limit::Count(n);
            c.limit_val_batches = Limit::Count(n);
            c.limit_test_batches = Limit::Count(n);
            c.limit_predict_batches = Limit::Count(n);
            c.max_epochs = Some(1);
            c.max_steps = n as i64;
            c.num_sanity_val_steps = 0;
            c.val_check_interval = Limit::Fraction(1.0);
            c.check_val_every_n_epoch = Some(1);
            c.logger = false;
            c.enable_checkpointing = false;
        }
        if c.barebones {
            c.enable_progress_bar = false;
            c.enable_model_summary = false;
            c.enable_checkpointing = false;
            c.logger = false;
        }
        if c.max_epochs.is_none() && c.max_steps == -1 {
            c.max_epochs = Some(1000);
        }
        Ok(c)
    }

    /// Lightning's range checks of the options (its messages), before any defaults are derived.
    fn validate(&self) -> Result<(), String> {
        let non_negative_or_minus_one = |name: &str, v: i64| {
            if v < -1 {
                Err(format!("`{name}` must be a non-negative integer or -1. You passed in {v}."))
            } else {
                Ok(())
            }
        };
        if let Some(e) = self.max_epochs {
            non_negative_or_minus_one("max_epochs", e)?;
        }
        non_negative_or_minus_one("max_steps", self.max_steps)?;
        non_negative_or_minus_one("num_sanity_val_steps", self.num_sanity_val_steps)?;
        if let Some(e) = self.min_epochs.filter(|&e| e < 0) {
            return Err(format!("`min_epochs` must be a non-negative integer. You passed in {e}."));
        }
        if let Some(s) = self.min_steps.filter(|&s| s < 0) {
            return Err(format!("`min_steps` must be a non-negative integer. You passed in {s}."));
        }
        if self.fast_dev_run < 0 {
            return Err(format!("fast_dev_run={} is not a valid configuration. It should be >= 0.", self.fast_dev_run));
        }
        if let Some(k) = self.check_val_every_n_epoch.filter(|&k| k < 1) {
            return Err(format!("`check_val_every_n_epoch` should be an integer >= 1 or None, got {k}."));
        }
        if self.log_every_n_steps < 0 {
            return Err(format!("`log_every_n_steps` must be >= 0, got {}.", self.log_every_n_steps));
        }
        if self.flush_logs_every_n_steps < 1 {
            return Err(format!("`flush_logs_every_n_steps` must be >= 1, got {}.", self.flush_logs_every_n_steps));
        }
        self.check_devices()
    }

    /// `devices`: "auto", -1 (all), a positive count, a string of one ("2"), or a list of device
    /// indices ([0, 1], "0,1").
    fn check_devices(&self) -> Result<(), String> {
        let bad = || {
            format!(
                "`devices={}` is not a valid input: use \"auto\", -1 (all), a positive number of devices, or a list of device indices like [0, 1]",
                self.devices
            )
        };
        let index_list = |items: &mut dyn Iterator<Item = Option<i64>>| -> Result<(), String> {
            let mut n = 0;
            for i in items {
                if i.is_none_or(|i| i < 0) {
                    return Err(bad());
                }
                n += 1;
            }
            if n == 0 {
                Err(bad())
            } else {
                Ok(())
            }
        };
        match &self.devices {
            Value::String(s) if s == "auto" || s == "-1" => Ok(()),
            Value::String(s) if s.contains(',') => {
                index_list(&mut s.split(',').filter(|p| !p.trim().is_empty()).map(|p| p.trim().parse().ok()))
            }
            Value::String(s) => match s.trim().parse::<i64>() {
                Ok(n) if n >= 1 => Ok(()),
                _ => Err(bad()),
            },
            Value::Number(n) => match n.as_i64() {
                Some(n) if n >= 1 || n == -1 => Ok(()),
                _ => Err(bad()),
            },
            Value::Array(a) => index_list(&mut a.iter().map(Value::as_i64)),
            _ => Err(bad()),
        }
    }

    /// The device the module and batches live on, from `accelerator` and `devices`.
    pub fn device(&self) -> Result<tch::Device, String> {
        let cuda = tch::Cuda::is_available();
        let index = match &self.devices {
            Value::Array(a) => a.first().and_then(Value::as_i64).unwrap_or(0) as usize,
            _ => 0,
        };
        match self.accelerator.as_str() {
            "cpu" => Ok(tch::Device::Cpu),
            "cuda" | "gpu" => {
                if !cuda {
                    Err("accelerator \"cuda\" was requested but no CUDA device is available".into())
                } else {
                    Ok(tch::Device::Cuda(index))
                }
            }
            "mps" => Err("accelerator \"mps\" is not supported by this libtorch build".into()),
            _ => Ok(if cuda { tch::Device::Cuda(index) } else { tch::Device::Cpu }),
        }
    }
}
