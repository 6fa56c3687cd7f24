//! What `configure_optimizers` returns, as the Trainer drives it: every form Lightning accepts
//! parsed into optimizers and scheduler configs, and the adapters that let the Trainer step the
//! script's optimizers and schedulers.
use super::*;

/// The parameters of an optimizer value configure_optimizers returned.
pub fn optimizer_params(opt: &Dynamic) -> Result<Vec<tch::Tensor>, Box<rhai::EvalAltResult>> {
    opt.clone()
        .try_cast::<crate::optim::Optimizer>()
        .map(|o| o.params())
        .ok_or_else(|| crate::script::convert::err(format!("expected an optimizer, got {}", opt.type_name())))
}

struct ScriptOptimizer(crate::optim::Optimizer);

impl TrainerOptimizer for ScriptOptimizer {
    fn step(&mut self) -> Result<(), String> {
        self.0.step()
    }
    fn zero_grad(&mut self, set_to_none: bool) -> Result<(), String> {
        self.0.zero_grad(set_to_none);
        Ok(())
    }
    fn params(&self) -> Vec<tch::Tensor> {
        self.0.params()
    }
    fn state_step(&self) -> usize {
        self.0 .0.borrow().steps_taken
    }
    fn name(&self) -> String {
        self.0.name().to_string()
    }
    fn lrs(&self) -> Vec<f64> {
        self.0.lrs()
    }
    fn group_option(&self, group: usize, key: &str) -> Option<f64> {
        match self.0.option(group, key)? {
            crate::optim::HValue::Num(x) => Some(x),
            crate::optim::HValue::Pair(first, _) => Some(first),
            crate::optim::HValue::Bool(_) => None,
        }
    }
    fn set_lrs(&mut self, lrs: &[f64]) -> Result<(), String> {
        let n = self.0.lrs().len();
        if lrs.len() != 1 && lrs.len() != n {
            return Err(format!("{} learning rates given for an optimizer with {n} parameter groups", lrs.len()));
        }
        for g in 0..n {
            self.0.set_lr(g, lrs[if lrs.len() == 1 { 0 } else { g }])?;
        }
        Ok(())
    }
    fn set_group_lr(&mut self, group: usize, lr: f64) -> Result<(), String> {
        self.0.set_lr(group, lr)
    }
    fn add_param_group(&mut self, params: Vec<tch::Tensor>, lr: f64) -> Result<usize, String> {
        let mut held: std::collections::HashSet<usize> = self.0.params().iter().map(crate::optim::impl_id).collect();
        let (held_already, new): (Vec<_>, Vec<_>) =
            params.into_iter().partition(|p| held.contains(&crate::optim::impl_id(p)));
        // a tensor shared by two layers goes in once
        let new: Vec<_> = new.into_iter().filter(|p| held.insert(crate::optim::impl_id(p))).collect();
        if !new.is_empty() {
            let opts = [("lr".to_string(), crate::optim::HValue::Num(lr))].into_iter().collect();
            self.0 .0.borrow_mut().add_param_group(new, opts)?;
        }
        Ok(held_already.len())
    }
    fn state_dict(&self) -> (Vec<(String, tch::Tensor)>, Value) {
        self.0.state_dict()
    }
    fn load_state_dict(&mut self, tensors: &[(String, tch::Tensor)], meta: &Value) -> Result<(), String> {
        self.0.load_state_dict(tensors, meta)
    }
}

struct ScriptScheduler {
    sched: crate::sched::LRScheduler,
    script: Rc<Script>,
}

impl TrainerScheduler for ScriptScheduler {
    fn step(&mut self, metric: Option<f64>) -> Result<(), String> {
        self.sched.step_with_engine(&self.script.engine, &self.script.ast, metric)
    }
    fn is_plateau(&self) -> bool {
        self.sched.is_plateau()
    }
    fn state_dict(&self) -> Result<Value, String> {
        self.sched.state_dict()
    }
    fn load_state_dict(&mut self, state: &Value) -> Result<(), String> {
        self.sched.load_state_dict(state)
    }
}

impl ScriptModule {
    /// Parses every form configure_optimizers may return.
    pub(super) fn parse_optimizers(&mut self, d: Dynamic) -> Result<OptimizerSetup, String> {
        let mut setup = OptimizerSetup::default();
        let mut opts: Vec<Dynamic> = Vec::new();
        let mut scheds: Vec<(Dynamic, Option<Map>)> = Vec::new();
        fn is_opt(d: &Dynamic) -> bool {
            d.is::<crate::optim::Optimizer>()
        }
        fn take_config(
            d: &Dynamic,
            opts: &mut Vec<Dynamic>,
            scheds: &mut Vec<(Dynamic, Option<Map>)>,
        ) -> Result<(), String> {
            // #{optimizer, lr_scheduler: sched | #{scheduler, interval, frequency, monitor, strict, name}}
            let m = d.read_lock::<Map>().map(|m| m.clone()).unwrap_or_default();
            for k in m.keys() {
                if !["optimizer", "lr_scheduler", "monitor"].contains(&k.as_str()) {
                    return Err(format!("configure_optimizers: unknown key '{k}' in the optimizer config; valid keys: optimizer, lr_scheduler, monitor"));
                }
            }
            let o = m.get("optimizer").cloned().ok_or("configure_optimizers: a config map needs an `optimizer`")?;
            if !is_opt(&o) {
                return Err(format!("configure_optimizers: `optimizer` must be an optimizer, got {}", o.type_name()));
            }
            opts.push(o);
            if let Some(s) = m.get("lr_scheduler") {
                if let Some(sm) = s.read_lock::<Map>() {
                    let mut cfg = sm.clone();
                    if let Some(mon) = m.get("monitor") {
                        cfg.entry("monitor".into()).or_insert(mon.clone());
                    }
                    let sched = cfg
                        .get("scheduler")
                        .cloned()
                        .ok_or("configure_optimizers: an lr_scheduler map needs a `scheduler`")?;
                    scheds.push((sched, Some(cfg)));
                } else {
                    let mut cfg = Map::new();
                    if let Some(mon) = m.get("monitor") {
                        cfg.insert("monitor".into(), mon.clone());
                    }
                    scheds.push((s.clone(), Some(cfg)));
                }
            }
            Ok(())
        }
        if d.is_unit() {
            // no optimizer: Lightning trains without stepping (a warning)
        } else if is_opt(&d) {
            opts.push(d);
        } else if d.is_map() {
            take_config(&d, &mut opts, &mut scheds)?;
        } else if let Some(a) = d.clone().try_cast::<Array>() {
            let two_lists = a.len() == 2 && a.iter().all(|x| x.is_array());
            if two_lists {
                for o in a[0].clone().cast::<Array>() {
                    if !is_opt(&o) {
                        return Err(format!(
                            "configure_optimizers: expected optimizers in the first list, got {}",
                            o.type_name()
                        ));
                    }
                    opts.push(o);
                }
                for s in a[1].clone().cast::<Array>() {
                    if let Some(sm) = s.read_lock::<Map>() {
                        let sched = sm
                            .get("scheduler")
                            .cloned()
                            .ok_or("configure_optimizers: an lr_scheduler map needs a `scheduler`")?;
                        scheds.push((sched, Some(sm.clone())));
                    } else {
                        scheds.push((s.clone(), None));
                    }
                }
            } else {
                for x in a {
                    if is_opt(&x) {
                        opts.push(x);
                    } else if x.is_map() {
                        take_config(&x, &mut opts, &mut scheds)?;
                    } else {
                        return Err(format!(
                            "configure_optimizers: unexpected element of type {} in the returned list",
                            x.type_name()
                        ));
                    }
                }
            }
        } else {
            return Err(format!(
                "configure_optimizers must return an optimizer, a list of optimizers, [optimizers, schedulers], a map #{{optimizer, lr_scheduler}}, a list of such maps, or nothing; got {}",
                d.type_name()
            ));
        }
        for o in &opts {
            let h = o.clone().try_cast::<crate::optim::Optimizer>().ok_or("internal: not an optimizer")?;
            setup.optimizers.push(Box::new(ScriptOptimizer(h)));
        }
        for (s, cfg) in scheds {
            let sched = s
                .clone()
                .try_cast::<crate::sched::LRScheduler>()
                .ok_or_else(|| format!("configure_optimizers: expected an LR scheduler, got {}", s.type_name()))?;
            let cfg = cfg.unwrap_or_default();
            const KEYS: &[&str] =
                &["scheduler", "interval", "frequency", "monitor", "strict", "name", "reduce_on_plateau"];
            for k in cfg.keys() {
                if !KEYS.contains(&k.as_str()) {
                    return Err(format!(
                        "configure_optimizers: unknown lr_scheduler key '{k}'; valid keys: {}",
                        KEYS.join(", ")
                    ));
                }
            }
            let interval = match cfg.get("interval").map(|v| v.to_string()) {
                None => Interval::Epoch,
                Some(s) if s == "epoch" => Interval::Epoch,
                Some(s) if s == "step" => Interval::Step,
                Some(s) => return Err(format!("lr_scheduler interval must be \"epoch\" or \"step\", got \"{s}\"")),
            };
            let bad = |k: &str, want: &str, v: &Dynamic| {
                format!("configure_optimizers: lr_scheduler '{k}' must be {want}, got {}", v.type_name())
            };
            let frequency = match cfg.get("frequency") {
                None => 1,
                Some(v) => match v.as_int() {
                    Ok(f) if f >= 1 => f as usize,
                    _ => return Err(bad("frequency", "an int >= 1", v)),
                },
            };
            let text = |k: &str| -> Result<Option<String>, String> {
                cfg.get(k)
                    .map(|v| {
                        v.clone().into_immutable_string().map(|s| s.to_string()).map_err(|_| bad(k, "a string", v))
                    })
                    .transpose()
            };
            let monitor = text("monitor")?;
            let strict = match cfg.get("strict") {
                None => true,
                Some(v) => v.as_bool().map_err(|_| bad("strict", "a bool", v))?,
            };
            let name = text("name")?;
            // Lightning sets it from the scheduler's type; given, it must agree with it
            if let Some(v) = cfg.get("reduce_on_plateau") {
                if v.as_bool().map_err(|_| bad("reduce_on_plateau", "a bool", v))? != sched.is_plateau() {
                    return Err(format!(
                        "configure_optimizers: lr_scheduler reduce_on_plateau: {} does not match the scheduler (a {}ReduceLROnPlateau)",
                        !sched.is_plateau(),
                        if sched.is_plateau() { "" } else { "not " }
                    ));
                }
            }
            if sched.is_plateau() && monitor.is_none() {
                return Err("configure_optimizers: ReduceLROnPlateau needs a `monitor`: return #{optimizer, lr_scheduler: #{scheduler, monitor: \"val_loss\"}}".into());
            }
            let optimizer = sched.optimizer().ok().and_then(|o| {
                opts.iter().position(|d| {
                    d.read_lock::<crate::optim::Optimizer>().is_some_and(|x| std::rc::Rc::ptr_eq(&x.0, &o.0))
                })
            });
            self.schedulers.push(s.clone());
            setup.schedulers.push(SchedulerConfig {
                scheduler: Box::new(ScriptScheduler { sched, script: self.script.clone() }),
                interval,
                frequency,
                monitor,
                strict,
                name,
                optimizer,
            });
        }
        self.optimizers = opts;
        Ok(setup)
    }
}
