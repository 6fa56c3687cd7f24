//! Learning-rate schedulers owned by the host, matching `torch.optim.lr_scheduler` value for
//! value: each computes its learning rates in f64 exactly as PyTorch does (the recursive,
//! "chainable" form PyTorch uses on `step()`, and its closed form where `SequentialLR` asks for
//! one), and writes them into the optimizer's parameter groups.
//!
//! [`SchedulerCore`] is plain Rust; a scheduler built on a user function (`lambda_lr`,
//! `multiplicative_lr`) holds it as an opaque [`LrFn`] that the caller evaluates through
//! [`LrEval`] (the script layer runs Rhai functions). [`LRScheduler`] is the shared handle.
pub mod api;
pub mod cycles;
pub mod plateau;
pub mod schedules;

use crate::optim::{HValue, Optimizer};
use serde_json::{json, Value};
use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

/// A user function epoch -> factor, opaque to the core (the script layer stores a Rhai `FnPtr`).
pub type LrFn = Rc<dyn Any>;
/// Evaluates an [`LrFn`] at an epoch.
pub type LrEval<'a> = &'a mut dyn FnMut(&LrFn, i64) -> Result<f64, String>;

/// Evaluator for schedulers without user functions.
pub fn no_eval(_: &LrFn, _: i64) -> Result<f64, String> {
    Err("this scheduler needs a function evaluator".into())
}

/// What a scheduler computes.
pub enum Kind {
    Step {
        step_size: i64,
        gamma: f64,
    },
    /// milestones sorted, repeated ones repeated (PyTorch's Counter)
    MultiStep {
        milestones: Vec<i64>,
        gamma: f64,
    },
    Constant {
        factor: f64,
        total_iters: i64,
    },
    Linear {
        start_factor: f64,
        end_factor: f64,
        total_iters: i64,
    },
    Exponential {
        gamma: f64,
    },
    Polynomial {
        total_iters: i64,
        power: f64,
    },
    Cosine {
        t_max: i64,
        eta_min: f64,
    },
    WarmRestarts {
        t_0: i64,
        t_i: i64,
        t_mult: i64,
        eta_min: f64,
        t_cur: i64,
    },
    OneCycle(cycles::OneCycle),
    Cyclic(cycles::Cyclic),
    Lambda {
        fns: Vec<LrFn>,
    },
    Multiplicative {
        fns: Vec<LrFn>,
    },
    Sequential {
        schedulers: Vec<LRScheduler>,
        milestones: Vec<i64>,
    },
    Chained {
        schedulers: Vec<LRScheduler>,
    },
    Plateau(plateau::Plateau),
}

impl Kind {
    /// PyTorch's class name.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Step { .. } => "StepLR",
            Kind::MultiStep { .. } => "MultiStepLR",
            Kind::Constant { .. } => "ConstantLR",
            Kind::Linear { .. } => "LinearLR",
            Kind::Exponential { .. } => "ExponentialLR",
            Kind::Polynomial { .. } => "PolynomialLR",
            Kind::Cosine { .. } => "CosineAnnealingLR",
            Kind::WarmRestarts { .. } => "CosineAnnealingWarmRestarts",
            Kind::OneCycle(_) => "OneCycleLR",
            Kind::Cyclic(_) => "CyclicLR",
            Kind::Lambda { .. } => "LambdaLR",
            Kind::Multiplicative { .. } => "MultiplicativeLR",
            Kind::Sequential { .. } => "SequentialLR",
            Kind::Chained { .. } => "ChainedScheduler",
            Kind::Plateau(_) => "ReduceLROnPlateau",
        }
    }
}

pub struct SchedulerCore {
    pub optimizer: Optimizer,
    pub kind: Kind,
    pub last_epoch: i64,
    pub step_count: i64,
    pub base_lrs: Vec<f64>,
    pub last_lr: Vec<f64>,
    is_initial: bool,
}

/// Group `key` of every group, as numbers.
pub(crate) fn group_vals(opt: &Optimizer, key: &str) -> Result<Vec<f64>, String> {
    let core = opt.0.try_borrow().map_err(|_| "the optimizer is busy".to_string())?;
    core.groups.iter().map(|g| g.f(key)).collect()
}

/// Sets group `key` of group `i` without range checks (as PyTorch's schedulers do).
pub(crate) fn set_group_val(opt: &Optimizer, i: usize, key: &str, v: HValue) -> Result<(), String> {
    let mut core = opt.0.try_borrow_mut().map_err(|_| "the optimizer is busy".to_string())?;
    let g = core.groups.get_mut(i).ok_or_else(|| format!("param group {i} does not exist"))?;
    g.options.insert(key.to_string(), v);
    Ok(())
}

/// `_format_param`: one value for every group, or a list with one per group.
pub fn per_group(name: &str, opt: &Optimizer, v: Vec<f64>) -> Result<Vec<f64>, String> {
    let n = opt.num_groups();
    match v.len() {
        1 => Ok(vec![v[0]; n]),
        k if k == n => Ok(v),
        k => Err(format!(
            "{name} must have the same length as optimizer.param_groups: {name} has {k} values, param_groups has {n}"
        )),
    }
}

impl SchedulerCore {
    /// A scheduler of `kind` on `optimizer`, as `LRScheduler.__init__(optimizer, last_epoch=-1)`:
    /// records `initial_lr` in every group (unless already there), takes the base lrs from it,
    /// and makes the initial step.
    pub fn new(optimizer: Optimizer, kind: Kind, eval: LrEval) -> Result<Self, String> {
        if matches!(kind, Kind::Plateau(_) | Kind::Sequential { .. } | Kind::Chained { .. }) {
            return Err(format!("{} has its own constructor", kind.name()));
        }
        let lrs = group_vals(&optimizer, "lr")?;
        for (i, lr) in lrs.iter().enumerate() {
            if optimizer.option(i, "initial_lr").is_none() {
                set_group_val(&optimizer, i, "initial_lr", HValue::Num(*lr))?;
            }
        }
        let base_lrs = group_vals(&optimizer, "initial_lr")?;
        let mut s = SchedulerCore {
            optimizer,
            kind,
            last_epoch: -1,
            step_count: 0,
            base_lrs,
            last_lr: vec![],
            is_initial: false,
        };
        s.initial_step(eval)?;
        Ok(s)
    }

    /// Construction without an initial step (ReduceLROnPlateau, ChainedScheduler).
    fn bare(optimizer: Optimizer, kind: Kind, last_epoch: i64) -> Result<Self, String> {
        let last_lr = group_vals(&optimizer, "lr")?;
        Ok(SchedulerCore { optimizer, kind, last_epoch, step_count: 0, base_lrs: vec![], last_lr, is_initial: false })
    }

    fn initial_step(&mut self, eval: LrEval) -> Result<(), String> {
        self.step_count = 0;
        self.is_initial = true;
        let r = self.step(None, eval);
        self.is_initial = false;
        r
    }

    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    pub fn is_plateau(&self) -> bool {
        matches!(self.kind, Kind::Plateau(_))
    }

    /// One scheduler step (`metric` is for ReduceLROnPlateau, ignored otherwise).
    pub fn step(&mut self, metric: Option<f64>, eval: LrEval) -> Result<(), String> {
        match &mut self.kind {
            Kind::Plateau(p) => {
                let m = metric.ok_or("ReduceLROnPlateau.step needs the monitored metric: sched.step(value)")?;
                self.last_epoch += 1;
                p.step(&self.optimizer, m)?;
                self.last_lr = group_vals(&self.optimizer, "lr")?;
                Ok(())
            }
            Kind::WarmRestarts { t_0, t_i, t_mult, t_cur, .. } => {
                let epoch = if self.last_epoch < 0 {
                    *t_i = *t_0;
                    *t_cur = 0;
                    0
                } else {
                    *t_cur += 1;
                    if *t_cur >= *t_i {
                        *t_cur %= *t_i;
                        // Python's ints do not overflow; past i64 the period is endless anyway
                        *t_i = t_i.saturating_mul(*t_mult);
                    }
                    self.last_epoch + 1
                };
                self.last_epoch = epoch;
                let lrs = self.get_lr(eval)?;
                self.write_lrs(&lrs)
            }
            Kind::Sequential { schedulers, milestones } => {
                self.last_epoch += 1;
                let idx = milestones.partition_point(|&m| m <= self.last_epoch);
                let s = &schedulers[idx];
                let mut c = s.0.try_borrow_mut().map_err(|_| "a scheduler is busy".to_string())?;
                if idx > 0 && milestones[idx - 1] == self.last_epoch {
                    c.update_lr(Some(0), eval)?;
                } else {
                    c.step(None, eval)?;
                }
                self.last_lr = c.last_lr.clone();
                Ok(())
            }
            Kind::Chained { schedulers } => {
                for s in schedulers.iter() {
                    s.0.try_borrow_mut().map_err(|_| "a scheduler is busy".to_string())?.step(None, eval)?;
                }
                self.last_lr = group_vals(&self.optimizer, "lr")?;
                Ok(())
            }
            _ => {
                self.step_count += 1;
                self.update_lr(None, eval)
            }
        }
    }

    fn write_lrs(&mut self, lrs: &[f64]) -> Result<(), String> {
        if lrs.len() != self.optimizer.num_groups() {
            return Err(format!(
                "{}: computed {} learning rates for {} param groups",
                self.name(),
                lrs.len(),
                self.optimizer.num_groups()
            ));
        }
        for (i, lr) in lrs.iter().enumerate() {
            set_group_val(&self.optimizer, i, "lr", HValue::Num(*lr))?;
        }
        self.last_lr = group_vals(&self.optimizer, "lr")?;
        Ok(())
    }

    /// `_update_lr`: the next epoch's chainable lrs, or the closed form at `epoch`.
    fn update_lr(&mut self, epoch: Option<i64>, eval: LrEval) -> Result<(), String> {
        let lrs = match epoch {
            None => {
                self.last_epoch += 1;
                self.get_lr(eval)?
            }
            Some(e) => {
                self.last_epoch = e;
                match schedules::closed_form(self)? {
                    Some(v) => v,
                    None => self.get_lr(eval)?,
                }
            }
        };
        self.write_lrs(&lrs)
    }

    fn get_lr(&mut self, eval: LrEval) -> Result<Vec<f64>, String> {
        match &self.kind {
            Kind::OneCycle(_) | Kind::Cyclic(_) => cycles::get_lr(self),
            Kind::Sequential { .. } | Kind::Chained { .. } | Kind::Plateau(_) => {
                Err(format!("{} cannot be used inside SequentialLR", self.name()))
            }
            _ => schedules::get_lr(self, eval),
        }
    }

    /// The learning rates of the last step (`get_last_lr()`).
    pub fn get_last_lr(&self) -> Vec<f64> {
        self.last_lr.clone()
    }

    /// JSON state: counters, base and last lrs, and each kind's moving parts (children for
    /// SequentialLR / ChainedScheduler).
    pub fn state_dict(&self) -> Value {
        let mut v = json!({
            "type": self.name(),
            "last_epoch": self.last_epoch,
            "_step_count": self.step_count,
            "base_lrs": self.base_lrs,
            "_last_lr": self.last_lr,
        });
        let extra = match &self.kind {
            Kind::WarmRestarts { t_i, t_cur, .. } => json!({"T_i": t_i, "T_cur": t_cur}),
            Kind::Plateau(p) => p.state(),
            Kind::Sequential { schedulers, .. } | Kind::Chained { schedulers } => {
                json!({"_schedulers": schedulers.iter().map(|s| s.0.try_borrow().map(|c| c.state_dict()).unwrap_or(Value::Null)).collect::<Vec<_>>()})
            }
            _ => json!({}),
        };
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                m.insert(k.clone(), x.clone());
            }
        }
        v
    }

    /// Restores [`SchedulerCore::state_dict`]; refuses a state of another scheduler type or one
    /// made for an optimizer with a different number of param groups.
    pub fn load_state_dict(&mut self, v: &Value) -> Result<(), String> {
        let what = format!("{}.load_state_dict", self.name());
        let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
        if ty != self.name() {
            return Err(format!("{what}: the state is of a {ty} scheduler"));
        }
        let floats = |k: &str| -> Result<Vec<f64>, String> {
            serde_json::from_value(v.get(k).cloned().unwrap_or(Value::Null))
                .map_err(|_| format!("{what}: bad or missing '{k}'"))
        };
        let int = |k: &str| -> Result<i64, String> {
            v.get(k).and_then(Value::as_i64).ok_or_else(|| format!("{what}: bad or missing '{k}'"))
        };
        let base_lrs = floats("base_lrs")?;
        let last_lr = floats("_last_lr")?;
        let n = self.optimizer.num_groups();
        let expect_base = !matches!(self.kind, Kind::Plateau(_) | Kind::Chained { .. });
        if (expect_base && base_lrs.len() != n) || last_lr.len() != n {
            return Err(format!(
                "{what}: the state is for an optimizer with {} param groups, this one has {n}",
                last_lr.len()
            ));
        }
        let (last_epoch, step_count) = (int("last_epoch")?, int("_step_count")?);
        match &mut self.kind {
            Kind::WarmRestarts { t_i, t_cur, .. } => {
                *t_i = int("T_i")?;
                *t_cur = int("T_cur")?;
                if *t_i < 1 || *t_cur < -1 {
                    return Err(format!("{what}: T_i must be >= 1 and T_cur >= -1, got T_i {t_i}, T_cur {t_cur}"));
                }
            }
            Kind::Plateau(p) => p.load(v).map_err(|e| format!("{what}: {e}"))?,
            Kind::Sequential { schedulers, .. } | Kind::Chained { schedulers } => {
                let children = v
                    .get("_schedulers")
                    .and_then(Value::as_array)
                    .ok_or_else(|| format!("{what}: missing '_schedulers'"))?;
                if children.len() != schedulers.len() {
                    return Err(format!(
                        "{what}: the state has {} schedulers, this one {}",
                        children.len(),
                        schedulers.len()
                    ));
                }
                for (s, c) in schedulers.iter().zip(children) {
                    s.0.try_borrow_mut().map_err(|_| "a scheduler is busy".to_string())?.load_state_dict(c)?;
                }
            }
            _ => {}
        }
        self.base_lrs = base_lrs;
        self.last_lr = last_lr;
        self.last_epoch = last_epoch;
        self.step_count = step_count;
        Ok(())
    }

    /// ReduceLROnPlateau on `optimizer`.
    pub fn plateau(optimizer: Optimizer, p: plateau::Plateau) -> Result<Self, String> {
        SchedulerCore::bare(optimizer, Kind::Plateau(p), 0)
    }

    /// ChainedScheduler: steps every scheduler in turn (all on `optimizer`).
    pub fn chained(schedulers: Vec<LRScheduler>) -> Result<Self, String> {
        let first = schedulers
            .first()
            .ok_or("ChainedScheduler expects at least one scheduler to be chained, but got no scheduler")?;
        let optimizer = first.optimizer()?;
        check_children("ChainedScheduler", &optimizer, &schedulers)?;
        SchedulerCore::bare(optimizer, Kind::Chained { schedulers }, 0)
    }

    /// SequentialLR: `schedulers[i]` runs from `milestones[i-1]` on.
    pub fn sequential(
        optimizer: Optimizer,
        schedulers: Vec<LRScheduler>,
        milestones: Vec<i64>,
        eval: LrEval,
    ) -> Result<Self, String> {
        if schedulers.is_empty() {
            return Err("SequentialLR expects at least one scheduler, but got no scheduler".into());
        }
        check_children("SequentialLR", &optimizer, &schedulers)?;
        if milestones.len() != schedulers.len() - 1 {
            return Err(format!(
                "SequentialLR expects number of schedulers provided to be one more than the number of milestone points, but got number of schedulers {} and the number of milestones to be equal to {}",
                schedulers.len(),
                milestones.len()
            ));
        }
        let initial = group_vals(&optimizer, "initial_lr").map_err(|_| {
            "SequentialLR: the optimizer's groups have no initial_lr (build its schedulers on this optimizer first)"
                .to_string()
        })?;
        for (i, lr) in initial.iter().enumerate() {
            set_group_val(&optimizer, i, "lr", HValue::Num(*lr))?;
        }
        for s in &schedulers {
            recursive_undo(s)?;
        }
        let idx = milestones.partition_point(|&m| m <= 0);
        let last_lr = {
            let mut c = schedulers[idx].0.try_borrow_mut().map_err(|_| "a scheduler is busy".to_string())?;
            c.initial_step(eval)?;
            c.last_lr.clone()
        };
        Ok(SchedulerCore {
            optimizer,
            kind: Kind::Sequential { schedulers, milestones },
            last_epoch: 0,
            step_count: 0,
            base_lrs: initial,
            last_lr,
            is_initial: false,
        })
    }
}

fn recursive_undo(s: &LRScheduler) -> Result<(), String> {
    let mut c = s.0.try_borrow_mut().map_err(|_| "a scheduler is busy".to_string())?;
    match &c.kind {
        Kind::Sequential { schedulers, .. } | Kind::Chained { schedulers } => {
            for k in schedulers {
                recursive_undo(k)?;
            }
        }
        _ => c.last_epoch -= 1,
    }
    Ok(())
}

fn check_children(what: &str, optimizer: &Optimizer, schedulers: &[LRScheduler]) -> Result<(), String> {
    for (i, s) in schedulers.iter().enumerate() {
        let c = s.0.try_borrow().map_err(|_| "a scheduler is busy".to_string())?;
        if c.is_plateau() {
            return Err(format!(
                "{what} does not support `ReduceLROnPlateau` scheduler as it requires additional kwargs to be specified when calling `step`, but got one at index {i} in the given schedulers sequence"
            ));
        }
        if !c.optimizer.same(optimizer) {
            return Err(format!(
                "{what} expects all schedulers to belong to the same optimizer, but got scheduler {} at index {i} on another optimizer",
                c.name()
            ));
        }
    }
    Ok(())
}

/// The shared scheduler handle: what scripts hold as `LRScheduler` and what the Trainer steps.
///
/// Trainer use: after `configure_optimizers`, downcast with `dynamic.try_cast::<LRScheduler>()`;
/// step it at the configured interval with `step_with_engine(engine, ast, metric)` (defined in
/// [`api`]; it runs the Rhai functions of `lambda_lr` / `multiplicative_lr`), passing
/// `Some(monitored value)` when `is_plateau()`; log `get_last_lr()`; checkpoint `state_dict()` /
/// `load_state_dict(..)` (JSON).
#[derive(Clone)]
pub struct LRScheduler(pub Rc<RefCell<SchedulerCore>>);

impl LRScheduler {
    pub fn new(core: SchedulerCore) -> Self {
        LRScheduler(Rc::new(RefCell::new(core)))
    }
    fn busy() -> String {
        "the scheduler is busy (used from inside its own function?)".to_string()
    }
    /// Steps with a custom evaluator for user functions.
    pub fn step(&self, metric: Option<f64>, eval: LrEval) -> Result<(), String> {
        self.0.try_borrow_mut().map_err(|_| Self::busy())?.step(metric, eval)
    }
    pub fn get_last_lr(&self) -> Vec<f64> {
        self.0.try_borrow().map(|c| c.get_last_lr()).unwrap_or_default()
    }
    pub fn is_plateau(&self) -> bool {
        self.0.try_borrow().map(|c| c.is_plateau()).unwrap_or(false)
    }
    pub fn name(&self) -> String {
        self.0.try_borrow().map(|c| c.name().to_string()).unwrap_or_default()
    }
    pub fn optimizer(&self) -> Result<Optimizer, String> {
        Ok(self.0.try_borrow().map_err(|_| Self::busy())?.optimizer.clone())
    }
    pub fn state_dict(&self) -> Result<Value, String> {
        Ok(self.0.try_borrow().map_err(|_| Self::busy())?.state_dict())
    }
    pub fn load_state_dict(&self, v: &Value) -> Result<(), String> {
        self.0.try_borrow_mut().map_err(|_| Self::busy())?.load_state_dict(v)
    }
}
