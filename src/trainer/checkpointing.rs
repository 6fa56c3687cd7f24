//! Saving and restoring the whole training state: weights, optimizer and scheduler states, the
//! gradient scaler, loop progress (epoch, global_step, position within the epoch, the epoch's
//! metric accumulators), callback states, hyperparameters, libtorch's RNG state, and what the
//! module's `on_save_checkpoint` added. A resumed run continues exactly: on CPU with a fixed seed it
//! ends with bit-identical weights.
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
        let mut meta = json!({
            "epoch": s.current_epoch,
            "global_step": s.global_step,
            "precision": s.precision.name(),
            "hyper_parameters": s.hparams.clone(),
            "loops": {
                "fit_loop": {
                    "epoch": s.current_epoch,
                    "batch_in_epoch": self.batch_in_epoch,
                    "epoch_done": self.epoch_done,
                    "total_batches_seen": self.total_batches_seen,
                    "batches_that_stepped": self.batches_that_stepped,
                    "train_results": serde_json::to_value(&s.train_results).unwrap_or(Value::Null),
                    "callback_metrics": s.views.callback.clone(),
                }
            },
        });
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
            meta["lr_schedulers"] =
                Value::Array(self.opt.schedulers.iter().map(|s| s.scheduler.state_dict()).collect());
            if let Some(sc) = scaler {
                meta["MixedPrecision"] = serde_json::to_value(sc).unwrap_or(Value::Null);
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
                    self.save_checkpoint(m, &path, weights_only, extra)?
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
                        errln!("warning: cannot remove {}: {e}", p.display());
                    }
                    return;
                }
            }
        };
        errln!("warning: not removing {}: {why}", p.display());
    }

    /// Restores everything a checkpoint holds; called after configure_optimizers.
    pub fn restore<M: LightningModule>(&mut self, m: &mut M, ck: &Checkpoint) -> Result<(), String> {
        m.load_state_dict(&ck.section("state_dict"), true)?;
        let meta = &ck.meta;
        if meta.get("weights_only").and_then(Value::as_bool) == Some(true) {
            return Err("this checkpoint holds weights only (save_weights_only); it cannot resume training — load it with --ckpt for validate/test/predict".into());
        }
        let opt_meta = meta.get("optimizer_states").and_then(Value::as_array).cloned().unwrap_or_default();
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
        let sched_meta = meta.get("lr_schedulers").and_then(Value::as_array).cloned().unwrap_or_default();
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
        if let Some(cbs) = meta.get("callbacks").and_then(Value::as_object) {
            for cb in &mut self.callbacks {
                if let Some(st) = cbs.get(&cb.state_key()) {
                    cb.load_state_dict(st)?;
                    cb.load_state_tensors(&ck.section(&format!("callbacks.{}", cb.state_key())))?;
                }
            }
        }
        let fit = meta.pointer("/loops/fit_loop").cloned().unwrap_or(Value::Null);
        let epoch = fit.get("epoch").and_then(Value::as_u64).unwrap_or(0) as usize;
        let done = fit.get("epoch_done").and_then(Value::as_bool).unwrap_or(true);
        let in_epoch = fit.get("batch_in_epoch").and_then(Value::as_u64).unwrap_or(0) as usize;
        {
            let mut s = self.state.borrow_mut();
            s.global_step = meta.get("global_step").and_then(Value::as_u64).unwrap_or(0) as usize;
            if done {
                s.current_epoch = epoch + 1;
                self.skip_batches = 0;
            } else {
                s.current_epoch = epoch;
                self.skip_batches = in_epoch;
                if let Some(r) = fit.get("train_results") {
                    if let Ok(c) = serde_json::from_value(r.clone()) {
                        s.train_results = c;
                    }
                }
            }
            if let Some(cm) = fit.get("callback_metrics").and_then(|v| serde_json::from_value(v.clone()).ok()) {
                s.views.callback = cm;
            }
            if let Some(sc) = meta.get("MixedPrecision") {
                if let Ok(sc) = serde_json::from_value(sc.clone()) {
                    s.scaler = Some(sc);
                }
            }
        }
        self.total_batches_seen = fit.get("total_batches_seen").and_then(Value::as_u64).unwrap_or(0) as usize;
        self.batches_that_stepped = fit
            .get("batches_that_stepped")
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .unwrap_or(self.state.borrow().global_step);
        self.manual_step_base = self.state.borrow().global_step
            - self.opt.optimizers.iter().map(|o| o.state_step()).sum::<usize>().min(self.state.borrow().global_step);
        let extra = checkpoint_extra(ck);
        m.callbacks_on_load_checkpoint(&extra)?;
        m.on_load_checkpoint(&extra)?;
        if let Some((_, rng)) = ck.tensors.iter().find(|(k, _)| k == "rng.torch_cpu") {
            crate::tensor::rng::set_state(rng)?;
        }
        Ok(())
    }
}
