//! Lightning's BasePredictionWriter as `callbacks::prediction_writer(#{write_interval,
//! write_on_batch_end, write_on_epoch_end, …})`: a callback map whose `write_on_batch_end(trainer,
//! pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx)` runs after each
//! predict batch and `write_on_epoch_end(trainer, pl_module, predictions, batch_indices)` once the
//! predictions are all made. `batch_indices` are the dataset indices of each batch (`[]` for a
//! loader that cannot tell, as Lightning); other entries of the map are the writer's own state.
use super::*;

/// The `_type` that marks a writer map.
pub const WRITER_TYPE: &str = "BasePredictionWriter";
/// The writer's functions (not hooks).
pub const WRITER_FUNCTIONS: &[&str] = &["write_on_batch_end", "write_on_epoch_end"];
/// The hooks a writer acts on.
pub const WRITER_HOOKS: &[&str] = &["on_predict_epoch_start", "on_predict_batch_end", "on_predict_epoch_end"];

/// Whether a callback map is a prediction writer.
pub fn is_writer(m: &Map) -> bool {
    m.get("_type").and_then(|t| t.clone().into_immutable_string().ok()).is_some_and(|t| t == WRITER_TYPE)
}

/// Checks a writer's options and marks the map as a writer.
pub fn writer(mut m: Map) -> Result<Map, String> {
    const W: &str = "callbacks::prediction_writer";
    // other keys are the writer's state, but a misspelt option is caught
    const KNOWN: &[&str] = &["write_interval", "write_on_batch_end", "write_on_epoch_end"];
    if let Some(k) = m.keys().find(|k| k.starts_with("write_") && !KNOWN.contains(&k.as_str())) {
        return Err(format!("{W}: unknown option '{k}'; valid options: {}", KNOWN.join(", ")));
    }
    let interval = match m.get("write_interval") {
        None => "batch".to_string(),
        Some(v) => v
            .clone()
            .into_immutable_string()
            .map_err(|_| format!("{W}: option 'write_interval' must be a string, got {}", v.type_name()))?
            .to_string(),
    };
    let (batch, epoch) = match interval.as_str() {
        "batch" => (true, false),
        "epoch" => (false, true),
        "batch_and_epoch" => (true, true),
        o => {
            return Err(format!("{W}: write_interval must be \"batch\", \"epoch\" or \"batch_and_epoch\", got \"{o}\""))
        }
    };
    for (needed, f) in [(batch, "write_on_batch_end"), (epoch, "write_on_epoch_end")] {
        match m.get(f) {
            Some(v) if !v.is::<rhai::FnPtr>() => {
                return Err(format!("{W}: '{f}' must be a function, got {}", v.type_name()))
            }
            None if needed => return Err(format!("{W}: write_interval \"{interval}\" needs a `{f}` function")),
            _ => {}
        }
    }
    m.insert("write_interval".into(), Dynamic::from(interval));
    m.insert("_type".into(), Dynamic::from(WRITER_TYPE.to_string()));
    Ok(m)
}

impl ScriptModule {
    /// The writers' part of predict hook `name` (`argv` as the callbacks get it after `trainer,
    /// pl_module`): collect each batch's prediction and indices, write when the interval says so.
    pub(super) fn run_prediction_writers(&mut self, name: &str, argv: &[Dynamic]) -> Result<(), String> {
        if !WRITER_HOOKS.contains(&name) {
            return Ok(());
        }
        let module = self.this.clone();
        let trainer = Dynamic::from(TrainerView(self.state.clone()));
        let indices = Dynamic::from_array(
            self.state.borrow().batch_indices.iter().map(|&i| Dynamic::from_int(i as i64)).collect(),
        );
        let mut cbs = std::mem::take(&mut self.callbacks);
        let r = (|| {
            for cb in cbs.iter_mut() {
                let Some(interval) =
                    cb.read_lock::<Map>().filter(|m| is_writer(m)).map(|m| m["write_interval"].to_string())
                else {
                    continue;
                };
                match name {
                    "on_predict_epoch_start" => {
                        let mut m = cb.write_lock::<Map>().ok_or("prediction writer is in use")?;
                        m.insert("_predictions".into(), Dynamic::from_array(vec![]));
                        m.insert("_batch_indices".into(), Dynamic::from_array(vec![]));
                    }
                    "on_predict_batch_end" => {
                        // argv: outputs, batch, batch_idx[, dataloader_idx]
                        let dl = argv.get(3).and_then(|d| d.as_int().ok()).unwrap_or(0);
                        {
                            let mut m = cb.write_lock::<Map>().ok_or("prediction writer is in use")?;
                            for (key, v) in [("_predictions", argv[0].clone()), ("_batch_indices", indices.clone())] {
                                let mut all =
                                    m.get(key).and_then(|a| a.clone().try_cast::<Array>()).unwrap_or_default();
                                while all.len() <= dl as usize {
                                    all.push(Dynamic::from_array(vec![]));
                                }
                                let mut per = all[dl as usize].clone().try_cast::<Array>().unwrap_or_default();
                                per.push(v);
                                all[dl as usize] = Dynamic::from_array(per);
                                m.insert(key.into(), Dynamic::from_array(all));
                            }
                        }
                        if interval != "epoch" {
                            let args = vec![
                                trainer.clone(),
                                module.clone(),
                                argv[0].clone(),
                                indices.clone(),
                                argv[1].clone(),
                                argv[2].clone(),
                                Dynamic::from_int(dl),
                            ];
                            self.call_map_fn(cb, "write_on_batch_end", args)?;
                        }
                    }
                    _ => {
                        if interval != "batch" {
                            let (preds, idx) = {
                                let m = cb.read_lock::<Map>().ok_or("prediction writer is in use")?;
                                let get =
                                    |k: &str| m.get(k).and_then(|a| a.clone().try_cast::<Array>()).unwrap_or_default();
                                (get("_predictions"), get("_batch_indices"))
                            };
                            // one dataloader: its list, as Lightning's `predict_loop.predictions`
                            let preds = if preds.len() == 1 { preds[0].clone() } else { Dynamic::from_array(preds) };
                            let args = vec![trainer.clone(), module.clone(), preds, Dynamic::from_array(idx)];
                            self.call_map_fn(cb, "write_on_epoch_end", args)?;
                        }
                    }
                }
            }
            Ok(())
        })();
        self.callbacks = cbs;
        r
    }
}
