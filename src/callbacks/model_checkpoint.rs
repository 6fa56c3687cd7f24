//! ModelCheckpoint, as Lightning defines it: where and when to save, which to keep (top k by a
//! monitored metric, or the latest), `last.ckpt`, `-v1` on name clashes, and `best_model_path` /
//! `best_model_score` (kept in checkpoints, so `--ckpt best` works after a resume).
use super::filename::format_template;
use super::Mode;
use crate::trainer::callback::{Action, Callback, SetupInfo};
use crate::trainer::state::{RunningStage, SharedState};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Whether `path` is a `.ckpt` file directly inside `dir` (compared by components, so `ck/./a`
/// and `ck/a` agree, while `ck/../a`, `/abs/a` or `ck/sub/a` are not inside `ck`).
pub fn owned_checkpoint_path(path: &Path, dir: &Path) -> bool {
    // `file_name` is None for a path ending in `..`, so what is left is one plain name in `dir`
    path.extension().is_some_and(|e| e == "ckpt")
        && path.file_name().is_some()
        && path.parent().is_some_and(|p| p == dir)
}

#[derive(Debug, Clone)]
pub struct ModelCheckpointConfig {
    pub dirpath: Option<PathBuf>,
    pub filename: Option<String>,
    pub monitor: Option<String>,
    pub mode: Mode,
    pub save_top_k: i64,
    pub save_last: bool,
    pub every_n_epochs: Option<i64>,
    pub every_n_train_steps: Option<i64>,
    pub train_time_interval: Option<Duration>,
    pub save_on_train_epoch_end: Option<bool>,
    pub save_weights_only: bool,
    pub auto_insert_metric_name: bool,
    pub enable_version_counter: bool,
    /// Print what each monitored save did (Lightning's messages).
    pub verbose: bool,
}

impl Default for ModelCheckpointConfig {
    fn default() -> Self {
        ModelCheckpointConfig {
            dirpath: None,
            filename: None,
            monitor: None,
            mode: Mode::Min,
            save_top_k: 1,
            save_last: false,
            every_n_epochs: None,
            every_n_train_steps: None,
            train_time_interval: None,
            save_on_train_epoch_end: None,
            save_weights_only: false,
            auto_insert_metric_name: true,
            enable_version_counter: true,
            verbose: false,
        }
    }
}

pub struct ModelCheckpoint {
    pub cfg: ModelCheckpointConfig,
    dir: PathBuf,
    on_train_epoch_end: bool,
    /// path → score (NaN when not monitoring)
    pub best_k_models: BTreeMap<String, f64>,
    pub best_model_path: String,
    pub best_model_score: Option<f64>,
    pub last_model_path: String,
    last_global_step_saved: Option<usize>,
    last_time: Instant,
}

impl ModelCheckpoint {
    pub fn new(cfg: ModelCheckpointConfig) -> Result<ModelCheckpoint, String> {
        if cfg.save_top_k < -1 {
            return Err(format!("ModelCheckpoint: save_top_k must be >= -1, got {}", cfg.save_top_k));
        }
        if cfg.monitor.is_none() && cfg.save_top_k > 1 {
            return Err(format!(
                "ModelCheckpoint(save_top_k={}, monitor=None) is not valid: set a monitor or use save_top_k -1, 0 or 1",
                cfg.save_top_k
            ));
        }
        let n_triggers = [
            cfg.every_n_epochs.is_some_and(|n| n > 0),
            cfg.every_n_train_steps.is_some_and(|n| n > 0),
            cfg.train_time_interval.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if n_triggers > 1 {
            return Err(
                "ModelCheckpoint: every_n_epochs, every_n_train_steps and train_time_interval are mutually exclusive"
                    .into(),
            );
        }
        Ok(ModelCheckpoint {
            cfg,
            dir: PathBuf::from("checkpoints"),
            on_train_epoch_end: true,
            best_k_models: BTreeMap::new(),
            best_model_path: String::new(),
            best_model_score: None,
            last_model_path: String::new(),
            last_global_step_saved: None,
            last_time: Instant::now(),
        })
    }

    pub fn dir(&self) -> &PathBuf {
        &self.dir
    }

    /// Whether `path` names a checkpoint file of this callback: a `.ckpt` file directly in its
    /// folder (`..`, other folders and absolute paths elsewhere are not).
    pub fn owns(&self, path: &str) -> bool {
        owned_checkpoint_path(Path::new(path), &self.dir)
    }

    fn epoch_trigger(&self) -> Option<i64> {
        if self.cfg.every_n_train_steps.is_some_and(|n| n > 0) || self.cfg.train_time_interval.is_some() {
            return None;
        }
        Some(self.cfg.every_n_epochs.unwrap_or(1))
    }

    fn values(state: &crate::trainer::state::LoopState) -> BTreeMap<String, (f64, bool)> {
        let mut v: BTreeMap<String, (f64, bool)> =
            state.views.callback.iter().map(|(k, x)| (k.clone(), (*x, false))).collect();
        v.insert("epoch".into(), (state.progress.current_epoch as f64, true));
        v.insert("step".into(), (state.progress.global_step as f64, true));
        v
    }

    fn path_for(&self, state: &crate::trainer::state::LoopState, exclude: Option<&str>) -> Result<PathBuf, String> {
        let template = self.cfg.filename.clone().unwrap_or_else(|| "{epoch}-{step}".into());
        let name = format_template(&template, &Self::values(state), self.cfg.auto_insert_metric_name)?;
        let mut path = self.dir.join(format!("{name}.ckpt"));
        if self.cfg.enable_version_counter {
            let mut v = 1;
            // Lightning: a new name unless the existing file is the one this save replaces.
            while path.exists() && exclude != Some(path.to_string_lossy().as_ref()) {
                path = self.dir.join(format!("{name}-v{v}.ckpt"));
                v += 1;
            }
        }
        Ok(path)
    }

    fn save(&mut self, state: &SharedState) -> Result<Vec<Action>, String> {
        // Lightning's `_monitor_candidates` reads `trainer.callback_metrics`: the live values
        state.borrow_mut().refresh_views()?;
        let st = state.borrow();
        if self.last_global_step_saved == Some(st.progress.global_step) && st.progress.global_step > 0 {
            return Ok(vec![]);
        }
        let mut actions = Vec::new();
        let weights_only = self.cfg.save_weights_only;
        if self.cfg.save_top_k != 0 {
            match &self.cfg.monitor {
                None => {
                    let replaced = if self.cfg.save_top_k == 1 { Some(self.best_model_path.clone()) } else { None };
                    let path = self.path_for(&st, replaced.as_deref())?;
                    let p = path.to_string_lossy().to_string();
                    if self.cfg.save_top_k == 1 {
                        for old in std::mem::take(&mut self.best_k_models).into_keys() {
                            if old != p {
                                actions.push(Action::Remove(PathBuf::from(old)));
                            }
                        }
                    }
                    actions.insert(0, Action::SaveCheckpoint { path: path.clone(), weights_only });
                    self.best_k_models.insert(p.clone(), f64::NAN);
                    self.best_model_path = p;
                }
                Some(monitor) => {
                    let Some(&current) = st.views.callback.get(monitor) else {
                        let avail: Vec<&String> = st.views.callback.keys().collect();
                        return Err(format!(
                            "ModelCheckpoint(monitor='{monitor}') could not find the monitored key in the returned metrics: {avail:?}. HINT: Did you call this.log(\"{monitor}\", value) in the module?"
                        ));
                    };
                    let k = self.cfg.save_top_k;
                    let shown_k = if k == -1 { self.best_k_models.len() as i64 + 1 } else { k };
                    let (epoch, step) = (st.progress.current_epoch, st.progress.global_step);
                    let full = k > 0 && self.best_k_models.len() as i64 >= k;
                    let worst = self
                        .best_k_models
                        .iter()
                        .max_by(|a, b| {
                            let (x, y) = (*a.1, *b.1);
                            match self.cfg.mode {
                                Mode::Min => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                                Mode::Max => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
                            }
                        })
                        .map(|(p, s)| (p.clone(), *s));
                    let improves = !full || worst.as_ref().is_some_and(|(_, w)| self.cfg.mode.better(current, *w));
                    if improves {
                        // Lightning saves a NaN while the top k is not full, scored as the worst
                        // value (`inf` in min mode), so any later real value replaces it
                        let current = if current.is_nan() { self.cfg.mode.worst() } else { current };
                        let replaced = if full { worst.as_ref().map(|(p, _)| p.clone()) } else { None };
                        let path = self.path_for(&st, replaced.as_deref())?;
                        let p = path.to_string_lossy().to_string();
                        if full {
                            if let Some((wp, _)) = worst {
                                self.best_k_models.remove(&wp);
                                if wp != p {
                                    actions.push(Action::Remove(PathBuf::from(wp)));
                                }
                            }
                        }
                        actions.insert(0, Action::SaveCheckpoint { path: path.clone(), weights_only });
                        self.best_k_models.insert(p, current);
                        let (bp, bs) = self.best_k_models.iter().fold(
                            (String::new(), self.cfg.mode.worst()),
                            |(bp, bs), (p, s)| {
                                if self.cfg.mode.better(*s, bs) || bp.is_empty() {
                                    (p.clone(), *s)
                                } else {
                                    (bp, bs)
                                }
                            },
                        );
                        self.best_model_path = bp;
                        self.best_model_score = Some(bs);
                        if self.cfg.verbose {
                            let message = format!(
                                "Epoch {epoch}, global step {step}: {} reached {current:.5} (best {bs:.5}), saving model to {} as top {shown_k}",
                                crate::pyfmt::repr_str(monitor),
                                // Lightning resolves its dirpath to an absolute one
                                crate::pyfmt::repr_str(&std::path::absolute(&path).unwrap_or(path.clone()).to_string_lossy())
                            );
                            actions.insert(0, Action::Info { message, rank_zero_only: true });
                        }
                    } else if self.cfg.verbose {
                        let message = format!(
                            "Epoch {epoch}, global step {step}: {} was not in top {k}",
                            crate::pyfmt::repr_str(monitor)
                        );
                        actions.push(Action::Info { message, rank_zero_only: true });
                    }
                }
            }
        }
        if self.cfg.save_last {
            let last = self.dir.join("last.ckpt");
            // a save of its own, as Lightning's `_save_last_checkpoint` (its hooks run again)
            actions.push(Action::SaveCheckpoint { path: last.clone(), weights_only });
            self.last_model_path = last.to_string_lossy().to_string();
        }
        self.last_global_step_saved = Some(st.progress.global_step);
        Ok(actions)
    }
}

impl Callback for ModelCheckpoint {
    fn state_key(&self) -> String {
        format!(
            "ModelCheckpoint{{\"monitor\": {}, \"mode\": \"{}\", \"every_n_train_steps\": {}, \"every_n_epochs\": {}}}",
            self.cfg.monitor.as_ref().map(|m| format!("\"{m}\"")).unwrap_or_else(|| "null".into()),
            if self.cfg.mode == Mode::Min { "min" } else { "max" },
            self.cfg.every_n_train_steps.unwrap_or(0),
            self.cfg.every_n_epochs.unwrap_or(1),
        )
    }

    fn monitoring(&self) -> bool {
        true
    }

    fn setup(&mut self, info: &SetupInfo) -> Result<(), String> {
        self.dir = match &self.cfg.dirpath {
            Some(d) => d.clone(),
            None => match &info.log_dir {
                Some(l) => l.join("checkpoints"),
                None => info.default_root_dir.join("checkpoints"),
            },
        };
        self.on_train_epoch_end = match self.cfg.save_on_train_epoch_end {
            Some(b) => b,
            None => {
                if info.check_val_every_n_epoch != Some(1) {
                    false
                } else if !info.has_val {
                    true
                } else {
                    info.val_every_epoch_end
                }
            }
        };
        self.last_time = Instant::now();
        Ok(())
    }

    fn checkpoint_dir(&self) -> Option<std::path::PathBuf> {
        Some(self.dir.clone())
    }

    fn on_hook(&mut self, hook: &str, state: &SharedState) -> Result<Vec<Action>, String> {
        let (stage, step, epoch) = {
            let s = state.borrow();
            (s.stage, s.progress.global_step, s.progress.current_epoch)
        };
        match hook {
            "on_train_batch_end" => {
                if let Some(n) = self.cfg.every_n_train_steps.filter(|n| *n > 0) {
                    if step > 0 && step % n as usize == 0 {
                        return self.save(state);
                    }
                }
                if let Some(t) = self.cfg.train_time_interval {
                    if self.last_time.elapsed() >= t {
                        self.last_time = Instant::now();
                        return self.save(state);
                    }
                }
                Ok(vec![])
            }
            "on_train_epoch_end" if self.on_train_epoch_end => match self.epoch_trigger() {
                Some(n) if n > 0 && (epoch + 1) % n as usize == 0 => self.save(state),
                _ => Ok(vec![]),
            },
            "on_validation_end" if !self.on_train_epoch_end && stage == RunningStage::Validating => {
                match self.epoch_trigger() {
                    Some(n) if n > 0 && (epoch + 1) % n as usize == 0 => self.save(state),
                    _ => Ok(vec![]),
                }
            }
            _ => Ok(vec![]),
        }
    }

    fn state_dict(&self) -> Value {
        json!({
            "monitor": self.cfg.monitor,
            "best_model_score": self.best_model_score.map(crate::checkpoint::float::to_json),
            "best_model_path": self.best_model_path,
            "best_k_models": self.best_k_models.iter().map(|(k, v)| (k.clone(), if v.is_nan() { Value::Null } else { crate::checkpoint::float::to_json(*v) })).collect::<serde_json::Map<String, Value>>(),
            "last_model_path": self.last_model_path,
            "dirpath": self.dir.to_string_lossy(),
        })
    }

    fn load_state_dict(&mut self, s: &Value) -> Result<(), String> {
        let s = super::state::State::new(
            s,
            &["monitor", "best_model_score", "best_model_path", "best_k_models", "last_model_path", "dirpath"],
        )?;
        s.opt_str("monitor")?;
        let score = s.opt_f64("best_model_score")?;
        let best = s.str("best_model_path")?;
        let last = s.str("last_model_path")?;
        let best_k = s.f64_map("best_k_models")?;
        let dirpath = s.str("dirpath")?;
        // Only restore the record when saving into the same folder (Lightning does the same, and
        // warns).
        if dirpath != self.dir.to_string_lossy() {
            warnln!(
                "ModelCheckpoint: the dirpath has changed from '{dirpath}' to '{}', therefore best_model_score, best_model_path, best_k_models and last_model_path won't be reloaded",
                self.dir.display()
            );
            return Ok(());
        }
        // The record names files this callback may later remove (when they fall out of the top
        // k) or overwrite: only its own checkpoint files are taken from a checkpoint's content.
        let own = |p: &str, what: &str| -> bool {
            let ok = p.is_empty() || self.owns(p);
            if !ok {
                warnln!(
                    "ModelCheckpoint: the checkpoint's {what} '{p}' is not a .ckpt file directly in {}; it is dropped from the restored state (and never removed)",
                    self.dir.display()
                );
            }
            ok
        };
        let (best_ok, last_ok) = (own(best, "best_model_path"), own(last, "last_model_path"));
        let mut kept = BTreeMap::new();
        for (k, v) in best_k {
            if own(k, "best_k_models entry") {
                kept.insert(k.to_string(), v);
            }
        }
        self.best_model_path = if best_ok { best.to_string() } else { String::new() };
        self.best_model_score = if best_ok { score } else { None };
        self.last_model_path = if last_ok { last.to_string() } else { String::new() };
        self.best_k_models = kept;
        Ok(())
    }
}
