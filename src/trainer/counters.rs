//! The fit's progress counters in one place: what hooks read live (`this.current_epoch`,
//! `this.global_step`), where the loops are in an epoch, and what a checkpoint saves under
//! `loops.fit_loop` and a resumed fit restores — Lightning's loop progress trackers, flattened.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FitProgress {
    /// Lightning's `trainer.current_epoch`: epochs completed (the running epoch's index).
    #[serde(rename = "epoch")]
    pub current_epoch: usize,
    /// Lightning's `trainer.global_step`: optimizer steps so far (saved at the checkpoint's top
    /// level, as Lightning's, not under `loops.fit_loop`).
    #[serde(skip)]
    pub global_step: usize,
    /// Position in the current epoch: batches completed.
    pub batch_in_epoch: usize,
    /// Whether the current epoch's end processing is done (for checkpoints saved at epoch end).
    pub epoch_done: bool,
    /// Training batches run in the whole fit (what `val_check_interval` as a batch count uses).
    pub total_batches_seen: usize,
    /// Lightning's `_batches_that_stepped`: batches that ended an accumulation window (every
    /// batch under manual optimization) — the step the loggers write rows at.
    pub batches_that_stepped: usize,
}

impl FitProgress {
    /// The counters a resumed fit starts from: a checkpoint saved once its epoch had ended
    /// resumes at the next epoch's start, one saved mid-epoch at the batch after the last one
    /// completed (returned: the batches of the first epoch to skip).
    pub fn resumed(saved: FitProgress) -> (FitProgress, usize) {
        if saved.epoch_done {
            let next =
                FitProgress { current_epoch: saved.current_epoch + 1, batch_in_epoch: 0, epoch_done: false, ..saved };
            (next, 0)
        } else {
            (saved, saved.batch_in_epoch)
        }
    }

    /// The next epoch begins.
    pub fn start_next_epoch(&mut self) {
        self.current_epoch += 1;
        self.epoch_done = false;
        self.batch_in_epoch = 0;
    }
}
