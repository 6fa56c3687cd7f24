//! Saving and restoring the whole training state: weights, optimizer and scheduler states, the
//! gradient scaler, loop progress (epoch, global_step, position within the epoch, the epoch's
//! metric accumulators), callback states, hyperparameters, libtorch's RNG state, and what the
//! module's `on_save_checkpoint` added. A resumed run continues exactly: on CPU with a fixed seed it
//! ends with bit-identical weights.
use super::counters::FitProgress;
use super::module::{CheckpointExtra, LightningModule};
use super::Trainer;
use crate::checkpoint::Checkpoint;
use serde_json::{json, Value};
use std::path::Path;

/// A checkpoint file operation waiting for the next safe point of the loop (the end of a batch or
/// of an epoch), so a checkpoint always describes a state the loop can resume from exactly.
pub(super) enum PendingWrite {
    /// Write a checkpoint; `extra` holds what its on_save_checkpoint hooks added when they ran at
    /// the moment it was asked for (None: they run when it is written).
    Save { path: std::path::PathBuf, weights_only: bool, extra: Option<CheckpointExtra> },
    /// Delete a checkpoint that fell out of the top k.
    Remove(std::path::PathBuf),
}

/// What the on_save_checkpoint hooks stored in a checkpoint, for the on_load_checkpoint hooks.
pub fn checkpoint_extra(ck: &Checkpoint) -> CheckpointExtra {
    let json = match ck.meta.get("extra") {
        Some(Value::Object(j)) => j.clone(),
        _ => serde_json::Map::new(),
    };
    CheckpointExtra { json, tensors: ck.section("extra") }
}

impl Trainer {
    /// The `on_save_checkpoint` hooks of a save, in Lightning's order: the callbacks' (not for a
    /// weights-only checkpoint), then the module's. Returns what they added.
    pub(super) fn save_hooks<M: LightningModule>(
        &mut self,
        m: &mut M,
        weights_only: bool,
    ) -> Result<CheckpointExtra, String> {
        let mut extra = CheckpointExtra::default();
        let prev = std::mem::replace(&mut self.state.borrow_mut().hook, "on_save_checkpoint".into());
        let r = (|| {
            if !weights_only {
                m.callbacks_on_save_checkpoint(&mut extra)?;
            }
            m.on_save_checkpoint(&mut extra)
        })();
        self.state.borrow_mut().hook = prev;
        r.map(|_| extra)
    }

    /// Builds a checkpoint of the current state; `extra` is what the save's on_save_checkpoint
    /// hooks added when they already ran (None: they run now).
    pub fn checkpoint<M: LightningModule>(
        &mut self,
        m: &mut M,
        weights_only: bool,
        extra: Option<CheckpointExtra>,
    ) -> Result<Checkpoint, String> {
        let extra = match extra {
            Some(e) => e,
            None => self.save_hooks(m, weights_only)?,
        };
        let s = self.state.borrow();
        let train_results = serde_json::to_value(&s.train_results)
            .map_err(|e| format!("cannot save checkpoint key loops.fit_loop.train_results: {e}"))?;
        let callback_metrics: serde_json::Map<String, Value> =
            s.views.callback.iter().map(|(k, v)| (k.clone(), crate::checkpoint::float::to_json(*v))).collect();
        // the counters under loops.fit_loop (global_step at the top level only, as Lightning's)
        let mut fit_loop =
            serde_json::to_value(s.progress).map_err(|e| format!("cannot save checkpoint key loops.fit_loop: {e}"))?;
        fit_loop["train_results"] = train_results;
        fit_loop["callback_metrics"] = Value::Object(callback_metrics);
        let mut meta = json!({
            "epoch": s.progress.current_epoch,
            "global_step": s.progress.global_step,
            "precision": s.precision.name(),
            "hyper_parameters": s.hparams.clone(),
            "loops": { "fit_loop": fit_loop },
        });
        if !s.datamodule_hparams.is_null() {
            meta["datamodule_hyper_parameters"] = s.datamodule_hparams.clone();
        }
        let scaler = s.scaler.clone();
        drop(s);
        let mut ck = Checkpoint::new(Value::Null);
        ck.add_section("state_dict", self.checkpoint_weights(m)?);
        if !weights_only {
            let mut opt_meta = Vec::new();
            for (i, o) in self.opt.optimizers.iter().enumerate() {
                let (tensors, j) = o.state_dict();
                ck.add_section(&format!("optimizer_states.{i}"), tensors);
                opt_meta.push(j);
            }
            meta["optimizer_states"] = Value::Array(opt_meta);
            let scheds = self.opt.schedulers.iter().enumerate().map(|(i, s)| {
                s.scheduler.state_dict().map_err(|e| format!("cannot save the state of LR scheduler {i}: {e}"))
            });
            meta["lr_schedulers"] = Value::Array(scheds.collect::<Result<_, _>>()?);
            if let Some(sc) = scaler {
                meta["MixedPrecision"] = serde_json::to_value(sc)
                    .map_err(|e| format!("cannot save checkpoint key MixedPrecision (the gradient scaler): {e}"))?;
            }
            let mut cbs = serde_json::Map::new();
            for cb in &self.callbacks {
                cbs.insert(cb.state_key(), cb.state_dict());
                ck.add_section(&format!("callbacks.{}", cb.state_key()), cb.state_tensors()?);
            }
            meta["callbacks"] = Value::Object(cbs);
            ck.tensors.push(("rng.torch_cpu".into(), crate::tensor::rng::get_state()?));
        }
        if !extra.json.is_empty() {
            meta["extra"] = Value::Object(extra.json);
        }
        ck.add_section("extra", extra.tensors);
        meta["weights_only"] = json!(weights_only);
        ck.meta = meta;
        Ok(ck)
    }

    /// The module's state_dict, with the weights a callback keeps in its place (a weight average)
    /// substituted, matched by name or by storage (tied weights).
    fn checkpoint_weights<M: LightningModule>(&self, m: &M) -> Result<Vec<(String, tch::Tensor)>, String> {
        let mut sd = m.state_dict()?;
        for cb in &self.callbacks {
            let Some(subst) = cb.checkpoint_weights()? else { continue };
            let by_name: std::collections::HashMap<&str, &tch::Tensor> =
                subst.iter().map(|(k, t)| (k.as_str(), t)).collect();
            let by_ptr: std::collections::HashMap<usize, &tch::Tensor> =
                sd.iter().filter_map(|(k, t)| by_name.get(k.as_str()).map(|v| (t.data_ptr() as usize, *v))).collect();
            for (k, t) in sd.iter_mut() {
                if let Some(v) = by_name.get(k.as_str()).or_else(|| by_ptr.get(&(t.data_ptr() as usize))) {
                    *t = v.shallow_clone();
                }
            }
        }
        Ok(sd)
    }

    /// Saves a checkpoint to `path` (atomically); `extra` is what its on_save_checkpoint hooks
    /// added when they already ran (None: they run now).
    fn save_checkpoint<M: LightningModule>(
        &mut self,
        m: &mut M,
        path: &Path,
        weights_only: bool,
        extra: Option<CheckpointExtra>,
    ) -> Result<(), String> {
        let ck = self.checkpoint(m, weights_only, extra)?;
        ck.save(path)
    }

    /// Carries out the checkpoint writes callbacks and scripts requested, at a safe point of the loop.
    pub(super) fn flush_pending<M: LightningModule>(&mut self, m: &mut M) -> Result<(), String> {
        let requested = std::mem::take(&mut self.state.borrow_mut().requested_saves);
        self.pending.extend(requested.into_iter().map(|(path, weights_only)| PendingWrite::Save {
            path,
            weights_only,
            extra: None,
        }));
        if self.pending.is_empty() {
            return Ok(());
        }
        // Every rank reaches the same safe points with the same requests; only rank 0 writes, and
        // barriers keep the others from running ahead of (or reading) a half-written file.
        let pg = self.state.borrow().process_group.clone().filter(|p| p.world_size() > 1);
        if let Some(pg) = &pg {
            pg.barrier().map_err(|e| e.to_string())?;
        }
        if self.state.borrow().global_rank != 0 {
            self.pending.clear();
            if let Some(pg) = &pg {
                pg.barrier().map_err(|e| e.to_string())?;
            }
            return Ok(());
        }
        let r = self.run_pending(m);
        if let Some(pg) = &pg {
            pg.barrier().map_err(|e| e.to_string())?;
        }
        r
    }

    fn run_pending<M: LightningModule>(&mut self, m: &mut M) -> Result<(), String> {
        for w in std::mem::take(&mut self.pending) {
            match w {
                PendingWrite::Save { path, weights_only, extra } => {
                    let p = self.prof_start(|| "save_checkpoint".into());
                    self.save_checkpoint(m, &path, weights_only, extra)?;
                    self.prof_stop(p);
                }
                PendingWrite::Remove(p) => self.remove_checkpoint(&p),
            }
        }
        Ok(())
    }

    /// Removes a checkpoint that fell out of the top k — only if it is one: a `.ckpt` file directly
    /// in a checkpoint callback's folder, a regular file (not a link), with an lt checkpoint's
    /// header. Anything else is left alone with a warning, whatever a restored state said.
    fn remove_checkpoint(&self, p: &Path) {
        let in_dir = self
            .callbacks
            .iter()
            .filter_map(|c| c.checkpoint_dir())
            .any(|d| crate::callbacks::model_checkpoint::owned_checkpoint_path(p, &d));
        let why = if !in_dir {
            "it is not a .ckpt file in a checkpoint folder"
        } else {
            match std::fs::symlink_metadata(p) {
                Err(_) => return, // already gone
                Ok(m) if !m.file_type().is_file() => "it is not a regular file",
                Ok(_) if !Checkpoint::is_checkpoint(p) => "it is not an lt checkpoint",
                Ok(_) => {
                    if let Err(e) = std::fs::remove_file(p) {
                        warnln!("cannot remove {}: {e}", p.display());
                    }
                    return;
                }
            }
        };
        warnln!("not removing {}: {why}", p.display());
    }

    /// Restores everything a checkpoint holds; called after configure_optimizers. The metadata is
    /// read strictly, the loop state before anything changes: every key lt writes must be there
    /// with its type (a missing or malformed one is an error naming it), and keys lt does not write
    /// are refused. Callback states in the checkpoint that no configured callback claims are left out
    /// with a warning, as Lightning does.
    pub fn restore<M: LightningModule>(&mut self, m: &mut M, ck: &Checkpoint) -> Result<(), String> {
        if ck.meta.get("source").and_then(Value::as_str) == Some("lightning") {
            return Err("this is a Lightning checkpoint: lt reads its weights and hyperparameters (validate/test/predict --ckpt, load_from_checkpoint), but a fit cannot resume from it (its loop, optimizer and callback states are Lightning's); convert it first: `lt ckpt convert FILE --to lt OUT` maps them onto an lt checkpoint a fit resumes from".into());
        }
        let keys = Keys(&ck.meta);
        if keys.flag("weights_only")? {
            return Err("this checkpoint holds weights only (save_weights_only); it cannot resume training — load it with --ckpt for validate/test/predict".into());
        }
        let loop_state = LoopKeys::read(&keys, ck.format_version())?;
        let cbs = keys.object("callbacks")?;
        let rng = ck
            .tensors
            .iter()
            .find(|(k, _)| k == "rng.torch_cpu")
            .map(|(_, t)| t)
            .ok_or("checkpoint tensor rng.torch_cpu (the random generator's state) is missing: the checkpoint was not written by lt's Trainer, or was edited")?;
        let opt_meta = keys.array("optimizer_states")?;
        let sched_meta = keys.array("lr_schedulers")?;
        // the weights first: a checkpoint of another model is named by its keys
        m.load_state_dict(&ck.section("state_dict"), true)?;
        if opt_meta.len() != self.opt.optimizers.len() {
            return Err(format!(
                "the checkpoint has {} optimizer state(s) but configure_optimizers returned {}",
                opt_meta.len(),
                self.opt.optimizers.len()
            ));
        }
        for (i, o) in self.opt.optimizers.iter_mut().enumerate() {
            o.load_state_dict(&ck.section(&format!("optimizer_states.{i}")), &opt_meta[i])
                .map_err(|e| format!("optimizer {i}: {e}"))?;
        }
        if sched_meta.len() != self.opt.schedulers.len() {
            return Err(format!(
                "the checkpoint has {} LR scheduler state(s) but configure_optimizers returned {}",
                sched_meta.len(),
                self.opt.schedulers.len()
            ));
        }
        for (i, s) in self.opt.schedulers.iter_mut().enumerate() {
            s.scheduler.load_state_dict(&sched_meta[i]).map_err(|e| format!("lr scheduler {i}: {e}"))?;
        }
        for cb in &mut self.callbacks {
            let key = cb.state_key();
            if let Some(st) = cbs.get(&key) {
                cb.load_state_dict(st).map_err(|e| format!("checkpoint key callbacks.{key}: {e}"))?;
                cb.load_state_tensors(&ck.section(&format!("callbacks.{key}")))?;
            }
        }
        // Lightning's `_call_callbacks_on_load_checkpoint`: a warning, and the states stay unused
        let configured: Vec<String> = self.callbacks.iter().map(|c| c.state_key()).collect();
        let unmatched: Vec<&String> = cbs.keys().filter(|k| !configured.contains(k)).collect();
        if !unmatched.is_empty() && self.state.borrow().global_rank == 0 {
            warnln!(
                "the checkpoint holds the state of callbacks this run does not have, so it is not restored: {unmatched:?}. Callbacks used to create the checkpoint need to be configured again to resume their state (as in Lightning)."
            );
        }
        {
            let mut s = self.state.borrow_mut();
            let (progress, skip) = FitProgress::resumed(loop_state.progress);
            s.progress = progress;
            self.skip_batches = skip;
            if !loop_state.progress.epoch_done {
                s.train_results = loop_state.train_results;
            }
            s.views.callback = loop_state.callback_metrics;
            if let Some(sc) = loop_state.scaler {
                s.scaler = Some(sc);
            }
        }
        let global_step = loop_state.progress.global_step;
        self.manual_step_base =
            global_step - self.opt.optimizers.iter().map(|o| o.state_step()).sum::<usize>().min(global_step);
        let extra = checkpoint_extra(ck);
        m.callbacks_on_load_checkpoint(&extra)?;
        m.on_load_checkpoint(&extra)?;
        crate::tensor::rng::set_state(rng)?;
        Ok(())
    }
}

/// The keys a full checkpoint's metadata has at its top level (what [`Trainer::checkpoint`] and
/// [`Checkpoint::save`] write).
const TOP_KEYS: &[&str] = &[
    "epoch",
    "global_step",
    "precision",
    "hyper_parameters",
    "datamodule_hyper_parameters",
    "loops",
    "optimizer_states",
    "lr_schedulers",
    "MixedPrecision",
    "callbacks",
    "extra",
    "weights_only",
    "format",
    "format_version",
    "lt_version",
    crate::checkpoint::CHECKSUMS_KEY,
];

/// The keys of `loops.fit_loop`.
const FIT_LOOP_KEYS: &[&str] = &[
    "epoch",
    "batch_in_epoch",
    "epoch_done",
    "total_batches_seen",
    "batches_that_stepped",
    "train_results",
    "callback_metrics",
];

/// A checkpoint's metadata read for a resume: keys by dotted path (`loops.fit_loop.epoch`), each
/// required and of its type, with errors that name the key.
struct Keys<'a>(&'a Value);

impl<'a> Keys<'a> {
    fn opt(&self, path: &str) -> Option<&'a Value> {
        path.split('.').try_fold(self.0, |v, k| v.get(k))
    }

    fn get(&self, path: &str) -> Result<&'a Value, String> {
        self.opt(path).ok_or_else(|| {
            format!("checkpoint key {path} is missing: the checkpoint was not written by lt's Trainer, or was edited")
        })
    }

    fn malformed(path: &str, why: impl std::fmt::Display) -> String {
        format!("checkpoint key {path} is malformed: {why}")
    }

    fn count(&self, path: &str) -> Result<usize, String> {
        let v = self.get(path)?;
        v.as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| Self::malformed(path, format!("expected an integer >= 0, found {v}")))
    }

    fn flag(&self, path: &str) -> Result<bool, String> {
        let v = self.get(path)?;
        v.as_bool().ok_or_else(|| Self::malformed(path, format!("expected true or false, found {v}")))
    }

    fn array(&self, path: &str) -> Result<&'a Vec<Value>, String> {
        let v = self.get(path)?;
        v.as_array().ok_or_else(|| Self::malformed(path, format!("expected a list, found {v}")))
    }

    fn object(&self, path: &str) -> Result<&'a serde_json::Map<String, Value>, String> {
        let v = self.get(path)?;
        v.as_object().ok_or_else(|| Self::malformed(path, format!("expected a map, found {v}")))
    }

    /// The map at `path`, which must hold only `allowed` keys.
    fn closed_object(&self, path: &str, allowed: &[&str]) -> Result<&'a serde_json::Map<String, Value>, String> {
        let m = if path.is_empty() {
            self.0.as_object().ok_or_else(|| Self::malformed("(the metadata)", "expected a map"))?
        } else {
            self.object(path)?
        };
        match m.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => {
                let at = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                Err(format!(
                    "checkpoint key {at} is unknown: lt's Trainer does not write it (valid keys{}: {})",
                    if path.is_empty() { String::new() } else { format!(" of {path}") },
                    allowed.join(", ")
                ))
            }
            None => Ok(m),
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        serde_json::from_value(self.get(path)?.clone()).map_err(|e| Self::malformed(path, e))
    }
}

/// The loop state of a checkpoint, read and checked before anything is restored.
struct LoopKeys {
    progress: FitProgress,
    train_results: super::logging::Collection,
    callback_metrics: std::collections::BTreeMap<String, f64>,
    scaler: Option<super::scaler::GradScaler>,
}

impl LoopKeys {
    fn read(keys: &Keys, format_version: i64) -> Result<LoopKeys, String> {
        keys.closed_object("", TOP_KEYS)?;
        keys.closed_object("loops", &["fit_loop"])?;
        keys.closed_object("loops.fit_loop", FIT_LOOP_KEYS)?;
        let epoch = keys.count("loops.fit_loop.epoch")?;
        let top_epoch = keys.count("epoch")?;
        if top_epoch != epoch {
            return Err(format!(
                "checkpoint keys epoch ({top_epoch}) and loops.fit_loop.epoch ({epoch}) disagree: the checkpoint was edited"
            ));
        }
        let global_step = keys.count("global_step")?;
        // format 1 files of the earliest lt did not count the batches that stepped: then every
        // optimizer step was one such batch
        let batches_that_stepped = match keys.opt("loops.fit_loop.batches_that_stepped") {
            None if format_version < 2 => global_step,
            _ => keys.count("loops.fit_loop.batches_that_stepped")?,
        };
        let callback_metrics = keys
            .object("loops.fit_loop.callback_metrics")?
            .iter()
            .map(|(k, v)| match crate::checkpoint::float::from_json(v) {
                Some(x) => Ok((k.clone(), x)),
                None => Err(Keys::malformed(
                    "loops.fit_loop.callback_metrics",
                    format!("its entry '{k}' is {v}, not a number (or \"nan\", \"inf\", \"-inf\")"),
                )),
            })
            .collect::<Result<_, String>>()?;
        let scaler = match keys.opt("MixedPrecision") {
            None => None,
            Some(_) => Some(keys.parse("MixedPrecision")?),
        };
        let progress = FitProgress {
            current_epoch: epoch,
            global_step,
            epoch_done: keys.flag("loops.fit_loop.epoch_done")?,
            batch_in_epoch: keys.count("loops.fit_loop.batch_in_epoch")?,
            total_batches_seen: keys.count("loops.fit_loop.total_batches_seen")?,
            batches_that_stepped,
        };
        Ok(LoopKeys { progress, train_results: keys.parse("loops.fit_loop.train_results")?, callback_metrics, scaler })
    }
}
