//! The Trainer's script surface: `this.log`, `this.log_dict`, `this.save_hyperparameters`,
//! `this.optimizers()`, `this.lr_schedulers()`, `this.manual_backward`, `this.clip_gradients`,
//! `this.toggle_optimizer` / `untoggle_optimizer`, and the read-only `this.trainer` view.
//!
//! These work while a Trainer runs the module: the script module installs the run's context
//! (loop state, optimizers, schedulers) here for the duration of a fit/validate/test/predict.
use super::logging::{LogOptions, ReduceFx};
use super::state::SharedState;
use crate::script::convert::{err, Opts, OrScript, RResult};
use crate::script::registry::Registry;
use crate::tensor::Tensor;
use rhai::{Array, Dynamic, FnPtr, Map, NativeCallContext, FLOAT, INT};
use std::cell::RefCell;

/// What a running Trainer shares with script calls.
pub struct RunContext {
    pub state: SharedState,
    /// The values configure_optimizers returned, for `this.optimizers()`.
    pub optimizers: Vec<Dynamic>,
    pub schedulers: Vec<Dynamic>,
    /// All module parameters, for toggle/untoggle.
    pub parameters: Vec<tch::Tensor>,
    /// requires_grad flags saved by toggle_optimizer.
    pub toggled: Option<Vec<bool>>,
    /// The script callbacks (shared maps), for hooks a native call runs (`manual_backward`).
    pub callbacks: Vec<Dynamic>,
    /// The script's datamodule map (shared), for `trainer.datamodule`.
    pub datamodule: Option<Dynamic>,
    /// A copy of the module's `this` as the running hook began, taken while a fit may still load
    /// its training loader early (`estimated_stepping_batches`): `train_dataloader` runs with it
    /// bound, the live `this` being locked by the hook that asks.
    pub module_snapshot: Option<Dynamic>,
    /// What `train_dataloader` returned when `estimated_stepping_batches` loaded it early: the fit
    /// uses it rather than calling the hook again.
    pub preloaded_train: Option<Dynamic>,
    /// The module's `this` (the shared value every hook runs on), for hooks a script's
    /// `opt.step()` runs under manual optimization.
    pub module: Option<Dynamic>,
    /// The functions the module script defines.
    pub module_fns: std::collections::HashSet<String>,
    /// Whether the module's last training_step ran under manual optimization.
    pub manual_optimization: bool,
}

thread_local! {
    static RUN: RefCell<Option<RunContext>> = const { RefCell::new(None) };
}

/// Installs the context of a run (replacing any previous one).
pub fn install(ctx: RunContext) {
    RUN.with(|r| *r.borrow_mut() = Some(ctx));
}

/// Updates the installed context.
pub fn with_run<T>(f: impl FnOnce(&mut RunContext) -> T) -> Option<T> {
    RUN.with(|r| r.borrow_mut().as_mut().map(f))
}

/// Removes the context at the end of a run.
pub fn uninstall() {
    RUN.with(|r| *r.borrow_mut() = None);
}

fn state() -> RResult<SharedState> {
    with_run(|c| c.state.clone()).ok_or_else(|| {
        err("this.log and the trainer properties work while a Trainer runs the module (lt fit / validate / test)")
    })
}

/// A logged value: a one-element tensor, a number or a bool.
fn scalar(v: &Dynamic, name: &str) -> RResult<f64> {
    if let Some(t) = v.read_lock::<Tensor>() {
        if t.numel() != 1 {
            return Err(err(format!(
                "this.log(\"{name}\", ...): the value must be a scalar, got a tensor of shape {:?}",
                t.size()
            )));
        }
        return f64::try_from(t.0.as_ref()).or_script();
    }
    if let Ok(f) = v.as_float() {
        return Ok(f);
    }
    if let Ok(i) = v.as_int() {
        return Ok(i as f64);
    }
    if let Ok(b) = v.as_bool() {
        return Ok(if b { 1.0 } else { 0.0 });
    }
    Err(err(format!("this.log(\"{name}\", ...): cannot log a value of type {}", v.type_name())))
}

const LOG_KEYS: &[&str] = &[
    "on_step",
    "on_epoch",
    "prog_bar",
    "logger",
    "reduce_fx",
    "batch_size",
    "sync_dist",
    "rank_zero_only",
    "add_dataloader_idx",
    "sync_dist_group",
    "enable_graph",
    "metric_attribute",
];

fn log_options(m: &Map) -> RResult<LogOptions> {
    let o = Opts::new(m, "this.log", LOG_KEYS)?;
    let mut l = LogOptions::default();
    if o.has("on_step") {
        l.on_step = Some(o.bool_or("on_step", false)?);
    }
    if o.has("on_epoch") {
        l.on_epoch = Some(o.bool_or("on_epoch", false)?);
    }
    l.prog_bar = o.bool_or("prog_bar", false)?;
    l.logger = o.bool_or("logger", true)?;
    l.reduce_fx = ReduceFx::parse(&o.str_or("reduce_fx", "mean")?).or_script()?;
    l.batch_size = match o.i64_opt("batch_size")? {
        Some(b) if b < 0 => return Err(err(format!("this.log: batch_size must be >= 0, got {b}"))),
        b => b.map(|b| b as usize),
    };
    // Lightning options lt does not act on are refused, never ignored
    if o.bool_or("enable_graph", false)? {
        return Err(err(
            "this.log: enable_graph: true is not supported (lt logs detached values; false is the only choice)",
        ));
    }
    if o.has("sync_dist_group") {
        return Err(err("this.log: sync_dist_group is not supported: sync_dist reduces over all ranks"));
    }
    if o.has("metric_attribute") {
        return Err(err(
            "this.log: metric_attribute is not supported (it names a torchmetrics attribute; lt takes the metric object itself: this.log(name, this.metric))",
        ));
    }
    l.sync_dist = o.bool_or("sync_dist", false)?;
    l.rank_zero_only = o.bool_or("rank_zero_only", false)?;
    l.add_dataloader_idx = o.bool_or("add_dataloader_idx", true)?;
    Ok(l)
}

fn log(name: &str, value: &Dynamic, opts: &LogOptions) -> RResult<()> {
    if let Some(metric) = value.read_lock::<crate::metrics::MetricHandle>().map(|m| m.clone()) {
        if opts.rank_zero_only {
            return Err(err(format!(
                "this.log(\"{name}\", metric, #{{rank_zero_only: true}}): a metric object is logged from every rank (its compute() syncs the ranks)"
            )));
        }
        let st = state()?;
        let mut s = st.borrow_mut();
        return s.log_metric(name, metric, opts).or_script();
    }
    let v = scalar(value, name)?;
    let st = state()?;
    let mut s = st.borrow_mut();
    if opts.rank_zero_only && s.global_rank != 0 {
        return Ok(());
    }
    s.log(name, v, opts).or_script()
}

fn metrics_map(m: &std::collections::BTreeMap<String, f64>) -> Map {
    m.iter().map(|(k, v)| (k.as_str().into(), Dynamic::from_float(*v))).collect()
}

/// `this.trainer`: a read-only view of the running Trainer (`should_stop` is writable).
#[derive(Clone)]
pub struct TrainerView(pub SharedState);

pub fn register(reg: &mut Registry) {
    super::logger_api::register(reg);
    reg.global_module().set_custom_type::<TrainerView>("Trainer");
    let doc = "Logs a metric from a hook, as Lightning's `self.log`: the value is a scalar tensor or a number. Options: `on_step`, `on_epoch` (defaults depend on the hook), `prog_bar`, `logger`, `reduce_fx` (\"mean\" weighted by batch size, \"sum\", \"max\", \"min\"), `batch_size`, `sync_dist`, `rank_zero_only`, `add_dataloader_idx`. The value may be a metric object (`metrics::accuracy(...)` …): as with a torchmetrics `Metric` in Lightning, its step value is its last `forward`'s, its epoch value its `compute()` (synced across ranks), and it is reset at epoch end. `enable_graph: false` is accepted (values are always detached), `sync_dist_group` and `metric_attribute` are refused.\n\n```rhai\nfn training_step(batch, batch_idx) {\n    let loss = batch.sum();\n    this.log(\"train_loss\", loss, #{prog_bar: true});\n    loss\n}\n```";
    reg.func("", "log", "this, name, value", doc, |_m: &mut Map, name: &str, v: Dynamic| {
        log(name, &v, &LogOptions::default())
    });
    reg.func("", "log", "this, name, value, opts", doc, |_m: &mut Map, name: &str, v: Dynamic, o: Map| {
        log(name, &v, &log_options(&o)?)
    });
    let doc = "Logs every entry of a map with the same options (Lightning's `self.log_dict`).\n\n```rhai\nfn validation_step(batch, batch_idx) {\n    this.log_dict(#{val_loss: batch.mean(), val_acc: 0.5});\n}\n```";
    reg.func("", "log_dict", "this, metrics", doc, |_m: &mut Map, d: Map| -> RResult<()> {
        for (k, v) in &d {
            log(k, v, &LogOptions::default())?;
        }
        Ok(())
    });
    reg.func("", "log_dict", "this, metrics, opts", doc, |_m: &mut Map, d: Map, o: Map| -> RResult<()> {
        let opts = log_options(&o)?;
        for (k, v) in &d {
            log(k, v, &opts)?;
        }
        Ok(())
    });
    let doc = "Saves hyperparameters as `this.hparams` (written to hparams.yaml and checkpoints): with no argument, the map `init` received; with a map, that map; with names, those entries of `init`'s map.\n\n```rhai\nfn init(hparams) {\n    this.save_hyperparameters();\n    print(this.hparams.lr);\n}\n```";
    reg.func("", "save_hyperparameters", "this", doc, |m: &mut Map| {
        let h = m.get("_init_hparams").cloned().unwrap_or_else(|| Dynamic::from_map(Map::new()));
        m.insert("hparams".into(), h);
    });
    reg.func("", "save_hyperparameters", "this, hparams", doc, |m: &mut Map, h: Dynamic| -> RResult<()> {
        if h.is_map() {
            m.insert("hparams".into(), h);
            return Ok(());
        }
        let names: Vec<String> = if let Some(a) = h.read_lock::<Array>() {
            a.iter().map(|v| v.to_string()).collect()
        } else {
            vec![h.to_string()]
        };
        let init = m.get("_init_hparams").and_then(|d| d.read_lock::<Map>().map(|x| x.clone())).unwrap_or_default();
        let mut out = Map::new();
        for n in names {
            let v = init
                .get(n.as_str())
                .cloned()
                .ok_or_else(|| err(format!("save_hyperparameters: '{n}' is not among init's hyperparameters")))?;
            out.insert(n.as_str().into(), v);
        }
        m.insert("hparams".into(), Dynamic::from_map(out));
        Ok(())
    });
    let doc = "The optimizer(s) configure_optimizers returned: one optimizer, or an array when there are several (for manual optimization).\n\n```rhai\nfn training_step(batch, batch_idx) {\n    let opt = this.optimizers();\n    opt.zero_grad();\n}\n```";
    reg.func("", "optimizers", "this", doc, |_m: &mut Map| -> RResult<Dynamic> {
        let opts = with_run(|c| c.optimizers.clone())
            .ok_or_else(|| err("this.optimizers() works while a Trainer runs the module"))?;
        Ok(if opts.len() == 1 { opts[0].clone() } else { Dynamic::from_array(opts) })
    });
    let doc = "The LR scheduler(s) configure_optimizers returned: one, an array, or `()` when there are none.\n\n```rhai\nfn on_train_epoch_end() {\n    let s = this.lr_schedulers();\n}\n```";
    reg.func("", "lr_schedulers", "this", doc, |_m: &mut Map| -> RResult<Dynamic> {
        let s = with_run(|c| c.schedulers.clone())
            .ok_or_else(|| err("this.lr_schedulers() works while a Trainer runs the module"))?;
        Ok(match s.len() {
            0 => Dynamic::UNIT,
            1 => s[0].clone(),
            _ => Dynamic::from_array(s),
        })
    });
    let doc = "Backward of `loss` for manual optimization (Lightning's `self.manual_backward`): runs the `on_before_backward` / `on_after_backward` hooks around it.\n\n```rhai\nfn training_step(batch, batch_idx) {\n    let loss = batch.sum();\n    this.manual_backward(loss);\n}\n```";
    reg.func("", "manual_backward", "this, loss", doc, |ctx: NativeCallContext, m: &mut Map, loss: Tensor| -> RResult<()> {
        let st = state()?;
        if st.borrow().scaler.is_some() {
            return Err(err("manual optimization with precision \"16-mixed\" is not supported; use \"bf16-mixed\" or \"32-true\""));
        }
        call_hook_from_native(&ctx, m, "on_before_backward", vec![Dynamic::from(loss.clone())])?;
        // the module's `backward(loss)` hook when it defines one, as Lightning's manual_backward
        if !call_hook_from_native(&ctx, m, "backward", vec![Dynamic::from(loss.clone())])? {
            loss.f_backward().map_err(|e| err(crate::tensor::clean_torch_message(&e.to_string())))?;
        }
        call_hook_from_native(&ctx, m, "on_after_backward", vec![])?;
        Ok(())
    });
    let doc = "Clips the gradients of an optimizer's parameters: `algorithm` \"norm\" (default) or \"value\" (Lightning's `self.clip_gradients`).\n\n```rhai\nfn on_before_optimizer_step(opt) {\n    this.clip_gradients(opt, 1.0, \"norm\");\n}\n```";
    reg.func(
        "",
        "clip_gradients",
        "this, optimizer, gradient_clip_val, gradient_clip_algorithm",
        doc,
        |_m: &mut Map, opt: Dynamic, v: FLOAT, algo: &str| -> RResult<()> {
            let a = match algo {
                "norm" => super::config::ClipAlgorithm::Norm,
                "value" => super::config::ClipAlgorithm::Value,
                o => return Err(err(format!("clip_gradients: algorithm must be \"norm\" or \"value\", got \"{o}\""))),
            };
            let params = crate::script::lightning::optimizer_params(&opt)?;
            super::clip_gradients(&params, v, a).map(|_| ()).or_script()
        },
    );
    reg.func(
        "",
        "clip_gradients",
        "this, optimizer, gradient_clip_val",
        doc,
        |_m: &mut Map, opt: Dynamic, v: FLOAT| -> RResult<()> {
            let params = crate::script::lightning::optimizer_params(&opt)?;
            super::clip_gradients(&params, v, super::config::ClipAlgorithm::Norm).map(|_| ()).or_script()
        },
    );
    let doc = "Makes only `optimizer`'s parameters require grad (the others are frozen) until `untoggle_optimizer` (Lightning's `self.toggle_optimizer`).\n\n```rhai\nfn training_step(batch, batch_idx) {\n    let opts = this.optimizers();\n    this.toggle_optimizer(opts[0]);\n    this.untoggle_optimizer(opts[0]);\n}\n```";
    reg.func("", "toggle_optimizer", "this, optimizer", doc, |_m: &mut Map, opt: Dynamic| -> RResult<()> {
        let mine = crate::script::lightning::optimizer_params(&opt)?;
        let ptrs: std::collections::HashSet<usize> = mine.iter().map(|t| t.data_ptr() as usize).collect();
        with_run(|c| {
            let saved: Vec<bool> = c.parameters.iter().map(|p| p.requires_grad()).collect();
            for p in &c.parameters {
                if !ptrs.contains(&(p.data_ptr() as usize)) {
                    let _ = p.set_requires_grad(false);
                }
            }
            if c.toggled.is_none() {
                c.toggled = Some(saved);
            }
        })
        .ok_or_else(|| err("toggle_optimizer works while a Trainer runs the module"))
    });
    reg.func("", "untoggle_optimizer", "this, optimizer", doc, |_m: &mut Map, _opt: Dynamic| -> RResult<()> {
        with_run(|c| {
            if let Some(saved) = c.toggled.take() {
                for (p, r) in c.parameters.iter().zip(saved) {
                    let _ = p.set_requires_grad(r);
                }
            }
        })
        .ok_or_else(|| err("untoggle_optimizer works while a Trainer runs the module"))
    });

    let view = |f: fn(&super::state::LoopState) -> Dynamic| move |t: &mut TrainerView| f(&t.0.borrow());
    // the metric views merge the running loop's values as they are read (hence `&mut`)
    let live_view = |f: fn(&super::logging::MetricViews) -> Dynamic| {
        move |t: &mut TrainerView| -> RResult<Dynamic> { Ok(f(t.0.borrow_mut().refresh_views().map_err(err)?)) }
    };
    reg.getter("log_dir", "Where this run logs (Lightning's `trainer.log_dir`): the logger's `lightning_logs/version_N` folder, else `default_root_dir`.\n\n```rhai\nfn on_fit_start() { print(this.trainer.log_dir); }\n```", view(|s| Dynamic::from(s.log_dir.to_string_lossy().to_string())));
    reg.getter("logger", "The run's first logger (Lightning's `trainer.logger`), or `()` without loggers; the same as `this.logger`.\n\n```rhai\nfn on_fit_start() { print(this.trainer.logger.log_dir); }\n```", view(|s| super::logger_api::views(&s.loggers).0));
    reg.getter("loggers", "All the run's loggers (Lightning's `trainer.loggers`); the same as `this.loggers`.\n\n```rhai\nfn on_fit_start() { print(this.trainer.loggers.len()); }\n```", view(|s| super::logger_api::views(&s.loggers).1));
    reg.getter("datamodule", "The script's datamodule (the map `fn datamodule()` returned), or `()` without one (Lightning's `trainer.datamodule`). `this.trainer.datamodule.x = v` changes the datamodule itself; `let dm = this.trainer.datamodule` is a copy (Rhai's `let`).\n\n```rhai\nfn setup(stage) { let dm = this.trainer.datamodule; }\n```", |_t: &mut TrainerView| with_run(|c| c.datamodule.clone()).flatten().unwrap_or(Dynamic::UNIT));
    reg.getter("max_epochs", "`this.trainer.max_epochs` (or `()` when unbounded).\n\n```rhai\nfn on_train_start() { print(this.trainer.max_epochs); }\n```", view(|s| s.max_epochs.map(Dynamic::from_int).unwrap_or(Dynamic::UNIT)));
    reg.getter("max_steps", "`this.trainer.max_steps` (-1 when unbounded).\n\n```rhai\nfn on_train_start() { print(this.trainer.max_steps); }\n```", view(|s| Dynamic::from_int(s.max_steps)));
    reg.getter("estimated_stepping_batches", "The total number of optimizer steps the fit will take, as Lightning estimates it (for OneCycleLR's total_steps). Read before the training loader is loaded (in `setup`, `configure_optimizers`, `on_fit_start`), it loads it then, as Lightning does: `train_dataloader` runs there and not again. `()` outside a fit or for a loader without a length.\n\n```rhai\nfn configure_optimizers() { print(this.trainer.estimated_stepping_batches); }\n```", estimated_stepping_batches);
    reg.getter("callback_metrics", "Metrics callbacks see (last step values during training, epoch values after validation), as a map of floats.\n\n```rhai\nfn on_validation_epoch_end() { print(this.trainer.callback_metrics); }\n```", live_view(|v| Dynamic::from_map(metrics_map(&v.callback))));
    reg.getter("logged_metrics", "Metrics sent to the loggers, as a map of floats.\n\n```rhai\nfn on_train_epoch_end() { print(this.trainer.logged_metrics); }\n```", live_view(|v| Dynamic::from_map(metrics_map(&v.logged))));
    reg.getter("progress_bar_metrics", "Metrics shown in the progress bar, as a map of floats.\n\n```rhai\nfn on_train_epoch_end() { print(this.trainer.progress_bar_metrics); }\n```", live_view(|v| Dynamic::from_map(metrics_map(&v.progress_bar))));
    reg.getter("state", "`#{stage}`: \"train\", \"sanity_check\", \"validate\", \"test\" or \"predict\".\n\n```rhai\nfn on_train_start() { print(this.trainer.state.stage); }\n```", view(|s| {
        let mut m = Map::new();
        m.insert("stage".into(), Dynamic::from(s.stage.name().to_string()));
        Dynamic::from_map(m)
    }));
    reg.getter("current_epoch", "`this.trainer.current_epoch`.\n\n```rhai\nfn on_train_epoch_start() { print(this.trainer.current_epoch); }\n```", view(|s| Dynamic::from_int(s.progress.current_epoch as INT)));
    reg.getter("global_step", "`this.trainer.global_step`: optimizer steps so far.\n\n```rhai\nfn on_train_batch_end(out, batch, i) { print(this.trainer.global_step); }\n```", view(|s| Dynamic::from_int(s.progress.global_step as INT)));
    reg.getter("should_stop", "Whether the fit will stop at the next check.\n\n```rhai\nfn on_train_epoch_end() { print(this.trainer.should_stop); }\n```", view(|s| Dynamic::from_bool(s.should_stop)));
    let doc = "Lightning's `trainer.save_checkpoint(path, weights_only=False)` during a fit: the checkpoint (atomic, resumable unless weights only) is written at the next safe point — the end of the current batch or epoch — so it always describes a state the fit can resume from exactly.\n\n```rhai\nfn on_train_epoch_end() {\n    if this.current_epoch == 2 { this.trainer.save_checkpoint(\"epoch2.ckpt\"); }\n}\n```";
    reg.volatile("", "save_checkpoint", "self, path", doc, |t: &mut TrainerView, p: rhai::ImmutableString| {
        t.0.borrow_mut().requested_saves.push((std::path::PathBuf::from(p.as_str()), false));
    });
    reg.volatile(
        "",
        "save_checkpoint",
        "self, path, weights_only",
        doc,
        |t: &mut TrainerView, p: rhai::ImmutableString, w: bool| {
            t.0.borrow_mut().requested_saves.push((std::path::PathBuf::from(p.as_str()), w));
        },
    );
    reg.setter("should_stop", "Asks the fit to stop (honouring min_epochs / min_steps), as `self.trainer.should_stop = True`.\n\n```rhai\nfn on_train_epoch_end() { this.trainer.should_stop = true; }\n```", |t: &mut TrainerView, b: bool| {
        t.0.borrow_mut().should_stop = b;
    });
}

/// Calls a module hook (if the script defines it) from inside a native function, with `this`
/// bound to the module map; changes the hook makes to `this` are kept.
/// `trainer.estimated_stepping_batches`, loading the training loader first when a fit has not yet.
fn estimated_stepping_batches(ctx: NativeCallContext, t: &mut TrainerView) -> RResult<Dynamic> {
    let (known, inputs) = {
        let s = t.0.borrow();
        (s.estimated_stepping_batches, s.stepping_estimate)
    };
    if let Some(n) = known {
        return Ok(Dynamic::from_int(n as INT));
    }
    let Some(inputs) = inputs else { return Ok(Dynamic::UNIT) };
    // Lightning's lazy load: the datamodule's train_dataloader, else the module's, with its `this`
    let (dm, module) = with_run(|c| (c.datamodule.clone(), c.module_snapshot.clone())).unwrap_or_default();
    let dm_fn = dm.as_ref().and_then(|d| d.read_lock::<Map>()?.get("train_dataloader")?.clone().try_cast::<FnPtr>());
    let early = |e: Box<rhai::EvalAltResult>| {
        err(format!(
            "estimated_stepping_batches loads the training loader now; its train_dataloader (run with `this` as this hook began) failed: {e}"
        ))
    };
    let loaded = match (dm_fn, dm, module) {
        (Some(fp), Some(mut dm), _) => fp.call_raw(&ctx, Some(&mut dm), vec![]).map_err(early)?,
        (_, _, Some(mut this)) => {
            FnPtr::new("train_dataloader").map_err(err)?.call_raw(&ctx, Some(&mut this), vec![]).map_err(early)?
        }
        _ => return Ok(Dynamic::UNIT),
    };
    let len = crate::script::lightning::loader_len(&loaded).map_err(err)?;
    with_run(|c| c.preloaded_train = Some(loaded));
    let est = inputs.estimate(len);
    t.0.borrow_mut().estimated_stepping_batches = est;
    Ok(est.map(|n| Dynamic::from_int(n as INT)).unwrap_or(Dynamic::UNIT))
}

/// Calls hook `name` from a native function (the script callbacks' first, then the module's);
/// returns whether the module defines it.
fn call_hook_from_native(ctx: &NativeCallContext, this: &mut Map, name: &str, args: Vec<Dynamic>) -> RResult<bool> {
    let prev_hook = state().ok().map(|s| {
        let mut st = s.borrow_mut();
        std::mem::replace(&mut st.hook, name.to_string())
    });
    let restore_hook = |prev: Option<String>| {
        if let (Some(p), Ok(s)) = (prev, state()) {
            s.borrow_mut().hook = p;
        }
    };
    if !listening_callbacks(name).is_empty() {
        let module = Dynamic::from_map(std::mem::take(this)).into_shared();
        let r = call_callbacks_from_native(ctx, &module, name, &args);
        *this = module.flatten().try_cast::<Map>().unwrap_or_default();
        if let Err(e) = r {
            restore_hook(prev_hook);
            return Err(e);
        }
    }
    let mut me = Dynamic::from_map(this.clone());
    let fp = FnPtr::new(name).map_err(err)?;
    let r = fp.call_raw(ctx, Some(&mut me), args);
    restore_hook(prev_hook);
    match r {
        Ok(_) => {
            if let Some(m) = me.try_cast::<Map>() {
                *this = m;
            }
            Ok(true)
        }
        Err(e) => match *e {
            rhai::EvalAltResult::ErrorFunctionNotFound(ref sig, _) if sig.starts_with(name) => Ok(false),
            _ => Err(e),
        },
    }
}

/// The script callbacks (maps) that define hook `name`, with the hook.
fn listening_callbacks(name: &str) -> Vec<(Dynamic, FnPtr)> {
    let callbacks = with_run(|c| c.callbacks.clone()).unwrap_or_default();
    callbacks
        .into_iter()
        .filter_map(|cb| {
            let fp = cb.read_lock::<Map>()?.get(name)?.clone().try_cast::<FnPtr>()?;
            Some((cb, fp))
        })
        .collect()
}

/// Runs hook `name` of every script callback from inside a native call, with Lightning's
/// `(trainer, pl_module, ...)` arguments; `module` is the shared module value.
fn call_callbacks_from_native(ctx: &NativeCallContext, module: &Dynamic, name: &str, args: &[Dynamic]) -> RResult<()> {
    let trainer = Dynamic::from(TrainerView(state()?));
    for (mut cb, fp) in listening_callbacks(name) {
        let mut a = vec![trainer.clone(), module.clone()];
        a.extend(args.iter().cloned());
        let _ = fp.call_raw(ctx, Some(&mut cb), a)?;
    }
    Ok(())
}

/// Lightning's optimizer wrapper under manual optimization: a script's `opt.step()` on one of the
/// run's optimizers runs `on_before_optimizer_step(optimizer)` (script callbacks with
/// `(trainer, pl_module, optimizer)`, then the module) before the update and counts it in
/// `global_step` after, so hooks and `this.global_step` see each step as it happens.
pub struct ManualOptimizerStep;

impl ManualOptimizerStep {
    /// The module value when `opt` is stepped by a manual-optimization training run.
    fn module_for(opt: &crate::optim::Optimizer) -> Option<Dynamic> {
        with_run(|c| {
            let training = c.state.borrow().training();
            let ours = c
                .optimizers
                .iter()
                .any(|d| d.read_lock::<crate::optim::Optimizer>().is_some_and(|o| std::rc::Rc::ptr_eq(&o.0, &opt.0)));
            (c.manual_optimization && training && ours).then(|| c.module.clone()).flatten()
        })
        .flatten()
    }

    /// Writes the live counters onto the module's `this` (skipped while the module is in use by
    /// the expression that steps, e.g. `this.opt.step()`: the next hook sees them).
    fn refresh_counters(module: &Dynamic) {
        let Ok(st) = state() else { return };
        if let Some(mut m) = module.clone().write_lock::<Map>() {
            let st = st.borrow();
            m.insert("global_step".into(), Dynamic::from_int(st.progress.global_step as INT));
            m.insert("current_epoch".into(), Dynamic::from_int(st.progress.current_epoch as INT));
        }
    }
}

impl crate::optim::api::StepObserver for ManualOptimizerStep {
    fn before_step(&self, ctx: &NativeCallContext, opt: &crate::optim::Optimizer) -> RResult<()> {
        let Some(module) = Self::module_for(opt) else { return Ok(()) };
        const HOOK: &str = "on_before_optimizer_step";
        let module_listens = with_run(|c| c.module_fns.contains(HOOK)).unwrap_or(false);
        if !module_listens && listening_callbacks(HOOK).is_empty() {
            return Ok(());
        }
        if module.is_locked() {
            return Err(err(format!(
                "opt.step() cannot run {HOOK} here: the expression that steps is using `this` (as in `this.optimizers().step()` or `this.opt.step()`); write `let opt = this.optimizers(); opt.step();`"
            )));
        }
        Self::refresh_counters(&module);
        let st = state()?;
        let prev = std::mem::replace(&mut st.borrow_mut().hook, HOOK.to_string());
        let args = vec![Dynamic::from(opt.clone())];
        let r = call_callbacks_from_native(ctx, &module, HOOK, &args).and_then(|_| {
            if module_listens {
                let _ = FnPtr::new(HOOK).map_err(err)?.call_raw(ctx, Some(&mut module.clone()), args)?;
            }
            Ok(())
        });
        st.borrow_mut().hook = prev;
        r
    }

    fn after_step(&self, opt: &crate::optim::Optimizer) -> RResult<()> {
        let Some(module) = Self::module_for(opt) else { return Ok(()) };
        state()?.borrow_mut().progress.global_step += 1;
        Self::refresh_counters(&module);
        Ok(())
    }
}
