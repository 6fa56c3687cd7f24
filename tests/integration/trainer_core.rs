//! The Trainer driven by a Rust LightningModule: hook order, accumulation, logging semantics,
//! stop conditions — no Rhai involved.
use lt::trainer::config::TrainerConfig;
use lt::trainer::logging::LogOptions;
use lt::trainer::module::*;
use lt::trainer::state::SharedState;
use lt::trainer::Trainer;
use serde_json::json;
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

type Batch = (Tensor, Tensor);

struct VecLoader {
    batches: Vec<Batch>,
    pos: usize,
}

impl BatchLoader<Batch> for VecLoader {
    fn len(&self) -> Option<usize> {
        Some(self.batches.len())
    }
    fn start_epoch(&mut self, _epoch: usize) -> Result<(), String> {
        self.pos = 0;
        Ok(())
    }
    fn next_batch(&mut self) -> Option<Result<Batch, String>> {
        let b = self.batches.get(self.pos)?;
        self.pos += 1;
        Some(Ok((b.0.shallow_clone(), b.1.shallow_clone())))
    }
    fn set_distributed(&mut self, _rank: usize, _world: usize) -> Result<(), String> {
        Err("not used".into())
    }
}

struct Sgd {
    params: Vec<Tensor>,
    lr: f64,
    steps: std::rc::Rc<std::cell::Cell<usize>>,
}

impl TrainerOptimizer for Sgd {
    fn step(&mut self) -> Result<(), String> {
        tch::no_grad(|| {
            for p in &self.params {
                let g = p.grad();
                let mut p = p.shallow_clone();
                let _ = p.f_sub_(&g.f_mul_scalar(self.lr).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        })?;
        self.steps.set(self.steps.get() + 1);
        Ok(())
    }
    fn zero_grad(&mut self, _set_to_none: bool) -> Result<(), String> {
        for p in &self.params {
            let mut p = p.shallow_clone();
            p.zero_grad();
        }
        Ok(())
    }
    fn params(&self) -> Vec<Tensor> {
        self.params.iter().map(|p| p.shallow_clone()).collect()
    }
    fn state_step(&self) -> usize {
        self.steps.get()
    }
    fn name(&self) -> String {
        "SGD".into()
    }
    fn lrs(&self) -> Vec<f64> {
        vec![self.lr]
    }
    fn state_dict(&self) -> (Vec<(String, Tensor)>, serde_json::Value) {
        (vec![], json!({"steps": self.steps.get()}))
    }
    fn load_state_dict(&mut self, _t: &[(String, Tensor)], meta: &serde_json::Value) -> Result<(), String> {
        self.steps.set(meta["steps"].as_u64().unwrap_or(0) as usize);
        Ok(())
    }
}

struct Toy {
    w: Tensor,
    trace: Vec<String>,
    state: SharedState,
    steps: std::rc::Rc<std::cell::Cell<usize>>,
    n_batches: usize,
    batch_size: i64,
    losses: Vec<f64>,
    grads_at_step: Vec<f64>,
}

impl Toy {
    fn new(state: SharedState, n_batches: usize) -> Toy {
        Toy {
            w: Tensor::zeros([1], (Kind::Float, Device::Cpu)).set_requires_grad(true),
            trace: vec![],
            state,
            steps: Default::default(),
            n_batches,
            batch_size: 4,
            losses: vec![],
            grads_at_step: vec![],
        }
    }
    fn data(&self) -> Vec<Batch> {
        (0..self.n_batches)
            .map(|i| {
                let x = Tensor::full([self.batch_size], (i + 1) as f64, (Kind::Float, Device::Cpu));
                let y = &x * 2.0;
                (x, y)
            })
            .collect()
    }
}

impl LightningModule for Toy {
    type Batch = Batch;
    type Output = ();

    fn has_hook(&self, name: &str) -> bool {
        // it traces every hook, but defines none of the module-only ones that replace what the
        // Trainer does by default (backward, optimizer_zero_grad, the batch transfer, …)
        use lt::trainer::hooks::{Hook, Listeners};
        name == "prepare_data" || !Hook::ALL.iter().any(|h| h.name() == name && h.listeners() == Listeners::ModuleOnly)
    }
    fn hook(&mut self, name: &str, args: HookArgs<'_, Batch, ()>) -> Result<Option<i64>, String> {
        let a = match args {
            HookArgs::Stage(s) => format!("({s})"),
            HookArgs::BatchStart { batch_idx, .. } | HookArgs::BatchEnd { batch_idx, .. } => format!("({batch_idx})"),
            HookArgs::Optimizer(i) => format!("(opt{i})"),
            _ => String::new(),
        };
        self.trace.push(format!("{name}{a}"));
        if name == "on_before_optimizer_step" {
            self.grads_at_step.push(f64::try_from(&self.w.grad()).unwrap_or(f64::NAN));
        }
        if name == "on_train_epoch_end" {
            let mut s = self.state.borrow_mut();
            s.log("epoch_hook_metric", 5.0, &LogOptions::default())?;
        }
        Ok(None)
    }
    fn step(
        &mut self,
        kind: StepKind,
        batch: &Batch,
        batch_idx: usize,
        _dl: Option<usize>,
    ) -> Result<(Option<Tensor>, ()), String> {
        self.trace.push(format!("{}({batch_idx})", kind.hook()));
        let pred = &batch.0 * &self.w;
        let loss = (pred - &batch.1).square().mean(Kind::Float);
        let v = f64::try_from(&loss).map_err(|e| e.to_string())?;
        let name = match kind {
            StepKind::Training => "train_loss",
            StepKind::Validation => "val_loss",
            _ => "test_loss",
        };
        if kind != StepKind::Predict {
            let opts = LogOptions { on_step: Some(true), on_epoch: Some(true), prog_bar: true, ..Default::default() };
            self.state.borrow_mut().log(name, v, &opts)?;
        }
        if kind == StepKind::Training {
            self.losses.push(v);
            Ok((Some(loss), ()))
        } else {
            Ok((None, ()))
        }
    }
    fn empty_output(&self) {}
    fn configure_optimizers(&mut self) -> Result<OptimizerSetup, String> {
        self.trace.push("configure_optimizers".into());
        Ok(OptimizerSetup {
            optimizers: vec![Box::new(Sgd {
                params: vec![self.w.shallow_clone()],
                lr: 0.01,
                steps: self.steps.clone(),
            })],
            schedulers: vec![],
        })
    }
    fn loaders(&mut self, stage: LoaderStage) -> Result<Vec<Box<dyn BatchLoader<Batch>>>, String> {
        self.trace.push(stage.hook().to_string());
        Ok(vec![Box::new(VecLoader { batches: self.data(), pos: 0 })])
    }
    fn batch_to_device(&self, b: Batch, _d: Device, _k: Option<Kind>) -> Result<Batch, String> {
        Ok(b)
    }
    fn batch_size(&self, b: &Batch) -> Option<usize> {
        Some(b.0.size()[0] as usize)
    }
    fn parameters(&self) -> Result<Vec<Tensor>, String> {
        Ok(vec![self.w.shallow_clone()])
    }
    fn set_training(&mut self, training: bool) -> Result<(), String> {
        self.trace.push(format!("train({training})"));
        Ok(())
    }
    fn to_device_dtype(&mut self, _d: Device, _k: Option<Kind>) -> Result<(), String> {
        Ok(())
    }
    fn automatic_optimization(&self) -> bool {
        true
    }
    fn summary(&self, _max_depth: i64) -> Option<String> {
        None
    }
    fn hparams(&self) -> serde_json::Value {
        json!({})
    }
    fn state_dict(&self) -> Result<Vec<(String, Tensor)>, String> {
        Ok(vec![("w".into(), self.w.shallow_clone())])
    }
    fn load_state_dict(&mut self, t: &[(String, Tensor)], _strict: bool) -> Result<(), String> {
        let src = &t.iter().find(|(k, _)| k == "w").ok_or("missing w")?.1;
        tch::no_grad(|| self.w.shallow_clone().f_copy_(src)).map_err(|e| e.to_string())
    }
    fn on_save_checkpoint(&mut self, _extra: &mut CheckpointExtra) -> Result<(), String> {
        Ok(())
    }
    fn on_load_checkpoint(&mut self, _extra: &CheckpointExtra) -> Result<(), String> {
        Ok(())
    }
}

fn config(opts: serde_json::Value) -> TrainerConfig {
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_value(opts).unwrap();
    let mut c = TrainerConfig::from_map(&map).unwrap();
    c.enable_progress_bar = false;
    c.enable_model_summary = false;
    c
}

#[test]
fn fit_hook_order_with_validation() {
    let mut t =
        Trainer::new(config(json!({"max_epochs": 1, "num_sanity_val_steps": 1, "limit_val_batches": 1}))).unwrap();
    let mut m = Toy::new(t.state.clone(), 2);
    t.fit(&mut m).unwrap();
    let expected = [
        "prepare_data",
        "setup(fit)",
        "configure_optimizers",
        "on_fit_start",
        "val_dataloader",
        "train(false)",
        "on_validation_start",
        "on_validation_epoch_start",
        "on_validation_batch_start(0)",
        "validation_step(0)",
        "on_validation_batch_end(0)",
        "on_validation_epoch_end",
        "on_validation_end",
        // on_validation_model_train: Lightning puts the model back in train mode after every
        // evaluation loop, the sanity check's too
        "train(true)",
        "train_dataloader",
        "on_train_start",
        "train(true)",
        "on_train_epoch_start",
        "on_train_batch_start(0)",
        "training_step(0)",
        "on_before_zero_grad(opt0)",
        "on_before_backward",
        "on_after_backward",
        "on_before_optimizer_step(opt0)",
        "on_train_batch_end(0)",
        "on_train_batch_start(1)",
        "training_step(1)",
        "on_before_zero_grad(opt0)",
        "on_before_backward",
        "on_after_backward",
        "on_before_optimizer_step(opt0)",
        "on_train_batch_end(1)",
        "train(false)",
        "on_validation_start",
        "on_validation_epoch_start",
        "on_validation_batch_start(0)",
        "validation_step(0)",
        "on_validation_batch_end(0)",
        "on_validation_epoch_end",
        "on_validation_end",
        "train(true)",
        "on_train_epoch_end",
        "on_train_end",
        "on_fit_end",
        "teardown(fit)",
    ];
    let got: Vec<&str> = m.trace.iter().map(|s| s.as_str()).collect();
    assert_eq!(got, expected);
}

#[test]
fn accumulation_scales_loss_and_steps_every_n_with_a_short_last_window() {
    // 5 batches, accumulate 2 → windows [0,1], [2,3], [4]: 3 optimizer steps; the last window's
    // loss is scaled by 1/1, the others by 1/2.
    let mut t = Trainer::new(config(json!({"max_epochs": 1, "accumulate_grad_batches": 2, "num_sanity_val_steps": 0})))
        .unwrap();
    let mut m = Toy::new(t.state.clone(), 5);
    t.fit(&mut m).unwrap();
    assert_eq!(m.steps.get(), 3);
    assert_eq!(t.state.borrow().progress.global_step, 3);
    let zero_grads = m.trace.iter().filter(|s| s.starts_with("on_before_zero_grad")).count();
    assert_eq!(zero_grads, 3);
    // gradient of mean((w x - 2x)^2) at w=0 is -4 x^2 ... first window: batches x=1,2 → (-4*1 + -4*4)/2 = -10
    assert!((m.grads_at_step[0] - (-10.0)).abs() < 1e-4, "{:?}", m.grads_at_step);
}

#[test]
fn logging_forks_step_and_epoch_names_and_weights_means() {
    let mut t =
        Trainer::new(config(json!({"max_epochs": 1, "num_sanity_val_steps": 0, "limit_val_batches": 2}))).unwrap();
    let mut m = Toy::new(t.state.clone(), 2);
    t.fit(&mut m).unwrap();
    let s = t.state.borrow();
    let cb = &s.views.callback;
    for k in ["train_loss", "train_loss_step", "train_loss_epoch", "val_loss", "val_loss_epoch", "epoch_hook_metric"] {
        assert!(cb.contains_key(k), "missing {k} in {cb:?}");
    }
    // epoch value = mean of the step values (equal batch sizes)
    let mean = (m.losses[0] + m.losses[1]) / 2.0;
    assert!((cb["train_loss_epoch"] - mean).abs() < 1e-6);
    assert!(s.views.progress_bar.contains_key("train_loss_step"));
    assert!(!s.views.logged.contains_key("train_loss"), "forked metrics are logged as _step/_epoch only");
}

#[test]
fn max_steps_stops_mid_epoch() {
    let mut t = Trainer::new(config(json!({"max_steps": 3, "num_sanity_val_steps": 0}))).unwrap();
    let mut m = Toy::new(t.state.clone(), 5);
    t.fit(&mut m).unwrap();
    assert_eq!(t.state.borrow().progress.global_step, 3);
    assert_eq!(m.trace.iter().filter(|s| s.starts_with("training_step")).count(), 3);
}

#[test]
fn limit_and_fast_dev_run() {
    let mut t = Trainer::new(config(json!({"fast_dev_run": 2}))).unwrap();
    let mut m = Toy::new(t.state.clone(), 5);
    t.fit(&mut m).unwrap();
    assert_eq!(m.trace.iter().filter(|s| s.starts_with("training_step")).count(), 2);
    assert_eq!(m.trace.iter().filter(|s| s.starts_with("validation_step")).count(), 2);
}

#[test]
fn training_reduces_the_loss() {
    let mut t = Trainer::new(config(json!({"max_epochs": 20, "num_sanity_val_steps": 0}))).unwrap();
    let mut m = Toy::new(t.state.clone(), 3);
    t.fit(&mut m).unwrap();
    let w = f64::try_from(&m.w).unwrap();
    assert!((w - 2.0).abs() < 1e-2, "w = {w}");
}

#[test]
fn unknown_trainer_option_lists_valid_ones() {
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_value(json!({"max_epoch": 1})).unwrap();
    let e = TrainerConfig::from_map(&map).unwrap_err();
    assert!(e.contains("unknown trainer option 'max_epoch'") && e.contains("max_epochs"), "{e}");
}

#[test]
fn log_rules_follow_lightning() {
    let st = lt::trainer::state::LoopState::shared();
    st.borrow_mut().hook = "on_fit_start".into();
    let e = st.borrow_mut().log("x", 1.0, &LogOptions::default()).unwrap_err();
    assert!(e.contains("can't `this.log()` inside `on_fit_start`"), "{e}");
    st.borrow_mut().hook = "on_train_epoch_end".into();
    let e = st.borrow_mut().log("x", 1.0, &LogOptions { on_step: Some(true), ..Default::default() }).unwrap_err();
    assert!(e.contains("on_step"), "{e}");
}

#[test]
fn grad_scaler_skips_inf_steps_and_backs_off_then_grows() {
    use lt::trainer::scaler::GradScaler;
    let mut sc = GradScaler::default();
    sc.growth_interval = 2;
    let p = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    // finite gradients: unscaled by 1/scale, no skip
    sc.scale_loss(&(&p * 3.0).sum(Kind::Float)).unwrap().backward();
    sc.unscale(&[p.shallow_clone()]).unwrap();
    assert!(!sc.should_skip());
    assert!((f64::try_from(&p.grad().get(0)).unwrap() - 3.0).abs() < 1e-6);
    sc.update();
    assert_eq!(sc.scale, 65536.0);
    // inf gradient: skip, back off
    let mut g = p.grad();
    let _ = g.fill_(f64::INFINITY);
    sc.unscale(&[p.shallow_clone()]).unwrap();
    assert!(sc.should_skip());
    sc.update();
    assert_eq!(sc.scale, 32768.0);
    // two clean steps grow it back
    for _ in 0..2 {
        let mut g = p.grad();
        let _ = g.fill_(1.0);
        sc.unscale(&[p.shallow_clone()]).unwrap();
        sc.update();
    }
    assert_eq!(sc.scale, 65536.0);
}
