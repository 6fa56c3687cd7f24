//! The evaluation loop (validation, test, the sanity check) and the validate / test entries,
//! as Lightning's `_EvaluationLoop`; its results and the results table.
use super::*;

impl Trainer {
    /// `on_{validation,test,predict}_model_eval`: the module's, else `eval()`.
    pub(super) fn model_eval<M: LightningModule>(&mut self, m: &mut M, kind: StepKind) -> Result<(), String> {
        let hook = Hook::model_eval(kind);
        if m.has_hook(hook.name()) {
            self.call(m, hook, HookArgs::None).map(|_| ())
        } else {
            m.set_training(false)
        }
    }

    /// `on_{validation,test}_model_train` after an evaluation loop: the module's, else `train()`.
    pub(super) fn model_train<M: LightningModule>(&mut self, m: &mut M, kind: StepKind) -> Result<(), String> {
        match Hook::model_train(kind) {
            Some(hook) if m.has_hook(hook.name()) => self.call(m, hook, HookArgs::None).map(|_| ()),
            Some(_) => m.set_training(true),
            None => Ok(()),
        }
    }

    /// Runs one evaluation pass over `loaders` (validation, test, or the sanity check).
    pub(super) fn eval_loop<M: LightningModule>(
        &mut self,
        m: &mut M,
        kind: StepKind,
        loaders: &mut [Box<dyn BatchLoader<M::Batch>>],
        limit_override: Option<usize>,
        sanity: bool,
    ) -> Result<EvalResults, String> {
        if kind != StepKind::Validation && kind != StepKind::Test {
            return Err("eval_loop: not an evaluation step".into());
        }
        let prev_stage = self.state.borrow().stage;
        {
            let mut s = self.state.borrow_mut();
            s.stage = if sanity {
                RunningStage::SanityChecking
            } else if kind == StepKind::Test {
                RunningStage::Testing
            } else {
                RunningStage::Validating
            };
            s.eval_results.reset();
            s.in_batch = false;
        }
        self.model_eval(m, kind)?;
        let _grad = tch::no_grad_guard();
        self.call(m, Hook::eval(kind, EvalPhase::Start), HookArgs::None)?;
        self.call(m, Hook::eval(kind, EvalPhase::EpochStart), HookArgs::None)?;
        let several = loaders.len() > 1;
        let limit = match kind {
            StepKind::Test => self.config.limit_test_batches,
            _ => self.val_limit(),
        };
        let dtype = self.config.precision.module_dtype();
        let epoch = self.state.borrow().progress.current_epoch;
        for (dl, loader) in loaders.iter_mut().enumerate() {
            let dl_idx = if several { Some(dl) } else { None };
            let n = match limit_override {
                Some(k) => Some(limit.apply(loader.len()).map_or(k, |n| n.min(k))),
                None => limit.apply(loader.len()),
            };
            loader.start_epoch(epoch)?;
            self.state.borrow_mut().dataloader_idx = dl_idx;
            // Lightning's descriptions (`DataLoader 0` even for one loader); validation during a
            // fit interrupts the epoch's bar, the sanity check's bar goes once it ends
            let (label, role) = match (kind, sanity) {
                (_, true) => ("Sanity Checking", progress::Role::Transient),
                (StepKind::Test, _) => ("Testing", progress::Role::Leave),
                _ if prev_stage == RunningStage::Training => ("Validation", progress::Role::Below),
                _ => ("Validation", progress::Role::Leave),
            };
            self.eval_progress.start(&format!("{label} DataLoader {dl}"), n, role);
            let mut i = 0;
            loop {
                if n.is_some_and(|n| i >= n) {
                    break;
                }
                self.check_interrupt()?;
                let prefix = if kind == StepKind::Test { "test" } else { "val" };
                let p = self.prof_start(|| format!("[_EvaluationLoop].{prefix}_next"));
                let next = loader.next_batch();
                self.prof_stop(p);
                let Some(batch) = next else { break };
                let batch = self.transfer(m, batch?, dl, dtype)?;
                {
                    let mut s = self.state.borrow_mut();
                    s.batch_size = m.batch_size(&batch);
                    s.in_batch = true;
                }
                self.call(
                    m,
                    Hook::eval(kind, EvalPhase::BatchStart),
                    HookArgs::BatchStart { batch: &batch, batch_idx: i, dataloader_idx: dl_idx },
                )?;
                let out = {
                    let _ac = AutocastGuard::enter(self.device, self.config.precision.autocast_dtype())?;
                    self.set_hook(kind.hook());
                    let strategy = self.strategy_name();
                    let p = self.prof_start(|| format!("[Strategy]{strategy}.{}", kind.hook()));
                    let out = m.step(kind, &batch, i, dl_idx)?.1;
                    self.prof_stop(p);
                    out
                };
                self.call(
                    m,
                    Hook::eval(kind, EvalPhase::BatchEnd),
                    HookArgs::BatchEnd { outputs: &out, batch: &batch, batch_idx: i, dataloader_idx: dl_idx },
                )?;
                self.merge_step_views();
                if !sanity {
                    // on_step values go to the loggers at once, at the loop's count of batches
                    // of this dataloader (Lightning's `_seen_batches_per_dataloader`), with no epoch
                    let logged = self.state.borrow().eval_results.step_metrics().logged;
                    let seen = self.eval_seen.entry((kind.hook(), dl)).or_insert(0);
                    let step = *seen;
                    *seen += 1;
                    self.log_rows(&logged, step, false)?;
                }
                self.state.borrow_mut().eval_results.end_step();
                self.eval_progress.advance(&BTreeMap::new());
                i += 1;
            }
            // as Lightning's, the evaluation bars show no values (the epoch's bar and the results
            // table do)
            self.eval_progress.finish(&BTreeMap::new());
            // Lightning's `_store_dataloader_outputs`: the loader's epoch values are visible from
            // here on (not during a sanity check)
            let mut s = self.state.borrow_mut();
            s.in_batch = false;
            if !sanity {
                let views = s.eval_results.epoch_metrics_of(logging::Loaders::Only(dl_idx))?;
                s.views.merge(&views);
            }
        }
        // the epoch ends (Lightning's `_evaluation_epoch_end`): reads see the values logged
        // without a dataloader, and the epoch-end hooks may add more
        self.state.borrow_mut().dataloader_idx = None;
        self.call(m, Hook::eval(kind, EvalPhase::EpochEnd), HookArgs::None)?;
        {
            let mut s = self.state.borrow_mut();
            let views = s.eval_results.epoch_metrics_of(logging::Loaders::Only(None))?;
            s.views.merge(&views);
        }
        let views = self.state.borrow().eval_results.epoch_metrics()?;
        // what validate/test return: the epoch's logged values (Lightning's `metrics["log"]`), per
        // dataloader; a value without a dataloader suffix (logged in an epoch-end hook) in each
        let mut results: EvalResults = vec![BTreeMap::new(); loaders.len().max(1)];
        for (k, v) in &views.logged {
            match k.rsplit_once("/dataloader_idx_").and_then(|(_, i)| i.parse::<usize>().ok()) {
                Some(idx) => {
                    if let Some(r) = results.get_mut(idx) {
                        r.insert(k.clone(), *v);
                    }
                }
                None => results.iter_mut().for_each(|r| {
                    r.insert(k.clone(), *v);
                }),
            }
        }
        if !sanity {
            self.log_to_loggers(&views.logged, self.progress().batches_that_stepped)?;
        }
        self.call(m, Hook::eval(kind, EvalPhase::End), HookArgs::None)?;
        // Lightning resets its results after on_*_end, the logged metric objects with them
        self.state.borrow_mut().eval_results.reset_metric_objects();
        drop(_grad);
        self.model_train(m, kind)?;
        self.state.borrow_mut().stage = prev_stage;
        Ok(results)
    }

    /// validate / test: `optional`, no loaders is `None` rather than an error. Ctrl-C stops it
    /// gracefully; however it ends, the loggers write what they hold.
    pub(super) fn eval_entry<M: LightningModule>(
        &mut self,
        m: &mut M,
        kind: StepKind,
        optional: bool,
    ) -> Result<Option<EvalResults>, String> {
        let what = if kind == StepKind::Test { "test" } else { "validate" };
        self.guarded(what, |t| t.eval_run(m, kind, optional))
    }

    fn eval_run<M: LightningModule>(
        &mut self,
        m: &mut M,
        kind: StepKind,
        optional: bool,
    ) -> Result<Option<EvalResults>, String> {
        let (stage, loader_stage) = match kind {
            StepKind::Test => ("test", LoaderStage::Test),
            _ => ("validate", LoaderStage::Val),
        };
        let _bars = progress::BarsGuard;
        self.seed()?;
        self.profiler_setup(stage)?;
        self.eval_seen.clear();
        m.to_device_dtype(self.device, self.config.precision.module_dtype())?;
        {
            // a new run: what an earlier fit logged is not this run's callback_metrics
            let mut s = self.state.borrow_mut();
            s.stage = if kind == StepKind::Test { RunningStage::Testing } else { RunningStage::Validating };
            s.views = logging::MetricViews::default();
        }
        self.attach_model_callbacks(m)?;
        self.call(m, Hook::PrepareData, HookArgs::None)?;
        self.call(m, Hook::Setup, HookArgs::Stage(stage))?;
        self.call(m, Hook::ConfigureModel, HookArgs::None)?;
        if !m.has_step(kind) {
            return Err(format!(
                "`{}` needs `fn {}(batch, batch_idx)` in the script",
                if kind == StepKind::Test { "test" } else { "validate" },
                kind.hook()
            ));
        }
        let mut loaders = m.loaders(loader_stage)?;
        self.check_loaders(&loaders, loader_stage);
        let r = if loaders.is_empty() && optional {
            Ok(None)
        } else if loaders.is_empty() {
            Err(format!("{} returned no dataloader", loader_stage.hook()))
        } else {
            self.distribute(&mut loaders).and_then(|_| self.eval_loop(m, kind, &mut loaders, None, false)).and_then(
                |r| {
                    self.save_loggers()?;
                    Ok(Some(r))
                },
            )
        };
        let t = self.call(m, Hook::Teardown, HookArgs::Stage(stage));
        let r = r?;
        t?;
        Ok(r)
    }

    /// `trainer.validate(model)`.
    pub fn validate<M: LightningModule>(&mut self, m: &mut M) -> Result<EvalResults, String> {
        self.eval_entry(m, StepKind::Validation, false).map(|r| r.unwrap_or_default())
    }

    /// `trainer.test(model)`.
    pub fn test<M: LightningModule>(&mut self, m: &mut M) -> Result<EvalResults, String> {
        self.eval_entry(m, StepKind::Test, false).map(|r| r.unwrap_or_default())
    }

    /// `trainer.test(model)` after a fit (`lt run`): `None` when test_dataloader gives no data.
    pub fn test_if_data<M: LightningModule>(&mut self, m: &mut M) -> Result<Option<EvalResults>, String> {
        self.eval_entry(m, StepKind::Test, true)
    }

    /// Lightning's results table after validate/test: `Test metric | DataLoader 0 | …`.
    pub fn results_table(kind: &str, results: &EvalResults) -> String {
        let mut keys: Vec<String> = Vec::new();
        for r in results {
            for k in r.keys() {
                let base = k.rsplit_once("/dataloader_idx_").map(|(b, _)| b.to_string()).unwrap_or_else(|| k.clone());
                if !keys.contains(&base) {
                    keys.push(base);
                }
            }
        }
        keys.sort();
        // as Lightning's (rich) table: bold headers, metric names cyan, values magenta
        use comfy_table::{Cell, Color};
        let mut table = crate::console::style::table(crate::console::Stream::Stdout);
        let mut header = vec![format!("{kind} metric")];
        header.extend((0..results.len()).map(|i| format!("DataLoader {i}")));
        table.set_header(crate::console::style::header(header));
        for k in keys {
            let mut row = vec![Cell::new(&k).fg(Color::Cyan)];
            for (i, r) in results.iter().enumerate() {
                let v = r.get(&k).or_else(|| r.get(&format!("{k}/dataloader_idx_{i}")));
                row.push(Cell::new(v.map(|v| format!("{v}")).unwrap_or_default()).fg(Color::Magenta));
            }
            table.add_row(row);
        }
        table.to_string()
    }
}
