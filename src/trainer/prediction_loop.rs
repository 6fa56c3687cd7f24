//! The prediction loop: `trainer.predict`, as Lightning's `_PredictionLoop`.
use super::*;

impl Trainer {
    /// `trainer.predict(model)`: the outputs of predict_step, per dataloader.
    pub fn predict<M: LightningModule>(&mut self, m: &mut M) -> Result<Vec<Vec<M::Output>>, String> {
        let r = self.predict_run(m);
        let described = self.profiler_describe();
        let r = r?;
        described?;
        Ok(r)
    }

    fn predict_run<M: LightningModule>(&mut self, m: &mut M) -> Result<Vec<Vec<M::Output>>, String> {
        let _bars = progress::BarsGuard;
        self.seed()?;
        self.profiler_setup("predict")?;
        m.to_device_dtype(self.device, self.config.precision.module_dtype())?;
        self.state.borrow_mut().stage = RunningStage::Predicting;
        self.attach_model_callbacks(m)?;
        self.call(m, Hook::PrepareData, HookArgs::None)?;
        self.call(m, Hook::Setup, HookArgs::Stage("predict"))?;
        self.call(m, Hook::ConfigureModel, HookArgs::None)?;
        if !m.has_step(StepKind::Predict) {
            return Err("`predict` needs `fn predict_step(batch, batch_idx)` in the script".into());
        }
        let mut loaders = m.loaders(LoaderStage::Predict)?;
        self.check_loaders(&loaders, LoaderStage::Predict);
        if loaders.is_empty() {
            return Err("predict_dataloader returned no dataloader".into());
        }
        self.model_eval(m, StepKind::Predict)?;
        let _grad = tch::no_grad_guard();
        let mut all = Vec::new();
        self.call(m, Hook::OnPredictStart, HookArgs::None)?;
        self.call(m, Hook::OnPredictEpochStart, HookArgs::None)?;
        let several = loaders.len() > 1;
        let dtype = self.config.precision.module_dtype();
        for (dl, loader) in loaders.iter_mut().enumerate() {
            let dl_idx = if several { Some(dl) } else { None };
            let n = self.config.limit_predict_batches.apply(loader.len());
            loader.start_epoch(0)?;
            self.eval_progress.start(&format!("Predicting DataLoader {dl}"), n, progress::Role::Leave);
            let mut outs = Vec::new();
            let mut i = 0;
            loop {
                if n.is_some_and(|n| i >= n) {
                    break;
                }
                let p = self.prof_start(|| "[_PredictionLoop].predict_next".into());
                let next = loader.next_batch();
                self.prof_stop(p);
                let Some(batch) = next else { break };
                self.state.borrow_mut().batch_indices = loader.last_batch_indices().unwrap_or_default();
                let batch = self.transfer(m, batch?, dl, dtype)?;
                self.call(
                    m,
                    Hook::OnPredictBatchStart,
                    HookArgs::BatchStart { batch: &batch, batch_idx: i, dataloader_idx: dl_idx },
                )?;
                let out = {
                    let _ac = AutocastGuard::enter(self.device, self.config.precision.autocast_dtype())?;
                    self.set_hook("predict_step");
                    let strategy = self.strategy_name();
                    let p = self.prof_start(|| format!("[Strategy]{strategy}.predict_step"));
                    let out = m.step(StepKind::Predict, &batch, i, dl_idx)?.1;
                    self.prof_stop(p);
                    out
                };
                self.call(
                    m,
                    Hook::OnPredictBatchEnd,
                    HookArgs::BatchEnd { outputs: &out, batch: &batch, batch_idx: i, dataloader_idx: dl_idx },
                )?;
                outs.push(out);
                self.eval_progress.advance(&BTreeMap::new());
                i += 1;
            }
            self.eval_progress.finish(&BTreeMap::new());
            all.push(outs);
        }
        self.call(m, Hook::OnPredictEpochEnd, HookArgs::None)?;
        self.call(m, Hook::OnPredictEnd, HookArgs::None)?;
        drop(_grad);
        self.call(m, Hook::Teardown, HookArgs::Stage("predict"))?;
        Ok(all)
    }
}
