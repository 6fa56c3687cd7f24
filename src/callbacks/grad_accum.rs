//! Lightning's `GradientAccumulationScheduler`: changes the number of batches whose gradients are
//! accumulated per optimizer step by epoch, e.g. `{0: 1, 2: 4}` = no accumulation for epochs 0-1,
//! then 4 batches per step. It sets `LoopState::accumulate_grad_batches`, which the training loop
//! reads at each epoch start.
use crate::trainer::callback::{Action, Callback};
use crate::trainer::state::SharedState;
use std::collections::BTreeMap;

pub struct GradientAccumulationScheduler {
    /// epoch → factor; always has an entry for epoch 0.
    scheduling: BTreeMap<usize, usize>,
}

impl GradientAccumulationScheduler {
    /// Checks the schedule as Lightning does: epochs >= 0, factors >= 1, not empty.
    pub fn new(scheduling: &[(i64, i64)]) -> Result<Self, String> {
        if scheduling.is_empty() {
            return Err("GradientAccumulationScheduler: empty scheduling".into());
        }
        let mut s = BTreeMap::new();
        for &(epoch, factor) in scheduling {
            if epoch < 0 {
                return Err(format!("GradientAccumulationScheduler: epoch keys must be >= 0, got {epoch}"));
            }
            if factor < 1 {
                return Err(format!(
                    "GradientAccumulationScheduler: accumulation factor for epoch {epoch} must be >= 1, got {factor}"
                ));
            }
            s.insert(epoch as usize, factor as usize);
        }
        s.entry(0).or_insert(1);
        Ok(GradientAccumulationScheduler { scheduling: s })
    }

    /// The factor for `epoch`: the entry of the largest key <= epoch.
    pub fn factor(&self, epoch: usize) -> usize {
        self.scheduling.range(..=epoch).next_back().map_or(1, |(_, f)| *f)
    }
}

impl Callback for GradientAccumulationScheduler {
    fn state_key(&self) -> String {
        "GradientAccumulationScheduler".into()
    }
    fn on_hook(&mut self, hook: &str, state: &SharedState) -> Result<Vec<Action>, String> {
        if hook == "on_train_start" || hook == "on_train_epoch_start" {
            let mut s = state.borrow_mut();
            if !s.automatic_optimization {
                return Err("GradientAccumulationScheduler needs automatic optimization; with manual optimization accumulate in training_step".into());
            }
            s.accumulate_grad_batches = Some(self.factor(s.progress.current_epoch));
        }
        Ok(vec![])
    }
}
