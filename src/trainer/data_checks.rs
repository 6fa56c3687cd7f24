//! The warnings Lightning gives about a run's data before it starts: a loader without its step
//! (or a step without its loader), a logging interval longer than the epoch, too few loader
//! workers, a shuffled evaluation loader. Each is printed once per run (as Python shows a repeated
//! warning once), on rank 0.
use super::*;

/// Lightning's `suggested_max_num_workers`: the CPUs this process may use, shared by the local
/// processes, less one for the main one; at least 1.
pub fn suggested_max_num_workers(cpus: usize, local_world_size: usize) -> usize {
    (cpus / local_world_size.max(1)).saturating_sub(1).max(1)
}

/// The warnings about loader `stage` (Lightning's `_process_dataloader`: the shuffled evaluation
/// loader, then `_worker_check`). The hint about workers is given where lt's workers help: a
/// dataset that does work per sample (decoding images, transforms); a batch of a tensor dataset
/// is one gather, which workers do not speed up, and a script dataset runs on the script's thread
/// (asking it for workers is a warning, since none start).
pub fn loader_warnings(stage: LoaderStage, t: &LoaderTraits, upper_bound: usize) -> Vec<String> {
    let name = stage.hook();
    let mut w = Vec::new();
    if stage != LoaderStage::Train && t.shuffled {
        w.push(format!(
            "Your `{name}`'s sampler has shuffling enabled, it is strongly recommended that you turn shuffling off for val/test dataloaders."
        ));
    }
    if t.thread_bound && t.num_workers > 0 {
        w.push(format!(
            "The '{name}' reads a script dataset: its functions are Rhai code, which runs on the script's thread, so `num_workers={}` starts no workers and the batches are made on the main thread.",
            t.num_workers
        ));
    }
    if t.workers_help && t.num_workers < 2 && upper_bound > 1 {
        w.push(format!(
            "The '{name}' does not have many workers which may be a bottleneck. Consider increasing the value of the `num_workers` argument to `num_workers={upper_bound}` in the `DataLoader` to improve performance."
        ));
    }
    w
}

/// Lightning's warning when an epoch has fewer batches than the logging interval (then its
/// step-level values never reach the loggers).
pub fn log_interval_warning(n_batches: Option<usize>, log_every_n_steps: usize) -> Option<String> {
    let n = n_batches?;
    (n < log_every_n_steps).then(|| {
        format!(
            "The number of training batches ({n}) is smaller than the logging interval Trainer(log_every_n_steps={log_every_n_steps}). Set a lower value for log_every_n_steps if you want to see logs for the training epoch."
        )
    })
}

/// Lightning's `__verify_train_val_loop_configuration` warnings: a validation loader without a
/// `validation_step`, or the step without the loader.
pub fn val_loop_warning(has_val_step: bool, defines_val_loader: Option<bool>) -> Option<String> {
    match (has_val_step, defines_val_loader?) {
        (false, true) => {
            Some("You passed in a `val_dataloader` but have no `validation_step`. Skipping val loop.".into())
        }
        (true, false) => {
            Some("You defined a `validation_step` but have no `val_dataloader`. Skipping val loop.".into())
        }
        _ => None,
    }
}

impl Trainer {
    fn rank_zero(&self) -> bool {
        self.state.borrow().global_rank == 0
    }

    /// The loader warnings for `loaders` of `stage`.
    pub(super) fn check_loaders<B>(&self, loaders: &[Box<dyn BatchLoader<B>>], stage: LoaderStage) {
        if !self.rank_zero() {
            return;
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let local_world = std::env::var("LOCAL_WORLD_SIZE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.state.borrow().world_size);
        let upper = suggested_max_num_workers(cpus, local_world);
        for t in loaders.iter().filter_map(|l| l.traits()) {
            for w in loader_warnings(stage, &t, upper) {
                crate::console::warn_once(&w);
            }
        }
    }

    /// The fit's configuration warnings, once its loaders' lengths are known.
    pub(super) fn check_fit_data<M: LightningModule>(&self, m: &M, n_batches: Option<usize>) {
        if !self.rank_zero() {
            return;
        }
        if let Some(w) = val_loop_warning(m.has_step(StepKind::Validation), m.defines_loader(LoaderStage::Val)) {
            crate::console::warn_once(&w);
        }
        if !self.loggers.is_empty() && self.config.fast_dev_run == 0 {
            let every = self.config.log_every_n_steps.max(1) as usize;
            if let Some(w) = log_interval_warning(n_batches, every) {
                crate::console::warn_once(&w);
            }
        }
    }
}
