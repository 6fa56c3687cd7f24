//! A Rhai script as a LightningModule. State lives on `this` (an object map); hooks are the
//! script's top-level functions, called with `this` bound. A hook the script does not define costs
//! nothing. Optional script functions: `hparams()` (defaults of init's argument), `trainer()`
//! (Trainer options), `callbacks()` (an array of maps of hook functions), `datamodule()` (a map with
//! `prepare_data`, `setup`, `*_dataloader`, `teardown` functions and its own state).
//!
//! `optimizers.rs`: what configure_optimizers returns, parsed, and the optimizer/scheduler adapters;
//! `loaders.rs`: the script's data as the Trainer's loaders.
use super::error::ScriptError;
use super::runner::Script;
use crate::tensor::Tensor;
use crate::trainer::api::{self as trainer_api, RunContext, TrainerView};
use crate::trainer::module::{
    BatchLoader, CheckpointExtra, HookArgs, Interval, LightningModule, LoaderStage, OptimizerSetup, SchedulerConfig,
    StepKind, TrainerOptimizer, TrainerScheduler,
};
use crate::trainer::state::SharedState;
use rhai::{Array, CallFnOptions, Dynamic, Map, Scope, AST};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use tch::{Device, Kind};

mod loaders;
mod optimizers;
pub mod prediction_writer;
pub use loaders::loader_len;
use loaders::{first_tensor_rows, loaders_from, map_tensors};
pub use optimizers::optimizer_params;

/// The script module.
pub struct ScriptModule {
    pub script: Rc<Script>,
    /// The module state, `this` in hooks.
    pub this: Dynamic,
    pub datamodule: Option<Dynamic>,
    pub callbacks: Vec<Dynamic>,
    state: SharedState,
    /// Script function name → number of parameters.
    fns: HashMap<String, usize>,
    optimizers: Vec<Dynamic>,
    schedulers: Vec<Dynamic>,
    /// File watcher of `lt fit --watch`: reloads are swapped in at step boundaries.
    watch: Option<super::reload::Watcher>,
    /// Enter on the terminal pauses the fit into the REPL at the next step boundary.
    pause_key: Option<crate::repl::keypress::KeyWatcher>,
    /// This module installed the Trainer's script context (`attach`), and removes it when dropped.
    attached: bool,
    /// How many of the last `callbacks` came from `configure_callbacks` (replaced at each run).
    configured_callbacks: usize,
    /// The DataModule's hyperparameters (`fn datamodule(h)`'s argument), for hparams.yaml and
    /// checkpoints (Lightning's `datamodule_hyper_parameters`).
    data_hparams: Value,
}

/// Converts a Rhai value to JSON (for hparams and trainer options).
pub fn to_json(d: &Dynamic) -> Value {
    if d.is_unit() {
        return Value::Null;
    }
    if let Ok(b) = d.as_bool() {
        return Value::Bool(b);
    }
    if let Ok(i) = d.as_int() {
        return Value::from(i);
    }
    if let Ok(f) = d.as_float() {
        return serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null);
    }
    if let Some(a) = d.read_lock::<Array>() {
        return Value::Array(a.iter().map(to_json).collect());
    }
    if let Some(m) = d.read_lock::<Map>() {
        return Value::Object(
            m.iter().filter(|(k, _)| !k.starts_with('_')).map(|(k, v)| (k.to_string(), to_json(v))).collect(),
        );
    }
    Value::String(d.to_string())
}

/// Converts JSON to a Rhai value (for `--set` overrides).
pub fn from_json(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Dynamic::from(s.clone()),
        Value::Array(a) => Dynamic::from_array(a.iter().map(from_json).collect()),
        Value::Object(o) => Dynamic::from_map(o.iter().map(|(k, v)| (k.as_str().into(), from_json(v))).collect()),
    }
}

/// Parses a `--set key=value` value: JSON when it parses (numbers, bools, lists), else a string.
pub fn parse_set_value(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

/// The value of a script's settings function `name` (`trainer()`, `hparams()`,
/// `datamodule_hparams()`), called without `this`; `None` when the script does not define it.
pub fn settings_fn(script: &Script, name: &str) -> Result<Option<Value>, String> {
    if !script.ast.iter_functions().any(|f| f.name == name && f.params.is_empty()) {
        return Ok(None);
    }
    let t: Dynamic = script
        .engine
        .call_fn_with_options(CallFnOptions::new().eval_ast(false), &mut Scope::new(), &script.ast, name, ())
        .map_err(|e| {
            ScriptError::from_eval(&e, &script.name(), &script.source, Some(name)).to_string().trim_end().to_string()
        })?;
    Ok(Some(to_json(&t)))
}

/// The Trainer options of a module script: its `trainer()` merged with `trainer_sets` (the command
/// line wins). Needs nothing else of the script, so a command can read them before building the
/// module.
pub fn trainer_options(
    script: &Script,
    trainer_sets: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, Value>, String> {
    let mut opts: BTreeMap<String, Value> = BTreeMap::new();
    match settings_fn(script, "trainer")? {
        Some(Value::Object(o)) => opts.extend(o),
        Some(Value::Null) | None => {}
        Some(other) => return Err(format!("trainer() must return a map of Trainer options, got {other}")),
    }
    opts.extend(trainer_sets.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(opts)
}

/// Sets `overrides` in the map `base`: a key `a.b` sets `b` inside the map at `a` (the command
/// line's `--set model.opt.name=adam`), any other replaces the entry.
pub fn overlay(base: &mut Map, overrides: &BTreeMap<String, Value>) -> Result<(), String> {
    fn set(at: &mut Map, path: &[&str], v: &Value, key: &str) -> Result<(), String> {
        let Some((seg, rest)) = path.split_first() else { return Ok(()) };
        if rest.is_empty() {
            at.insert((*seg).into(), from_json(v));
            return Ok(());
        }
        let slot = at.entry((*seg).into()).or_insert_with(|| Dynamic::from_map(Map::new()));
        let type_name = slot.type_name();
        let mut inner =
            slot.as_map_mut().map_err(|_| format!("cannot set '{key}': '{seg}' is a {type_name}, not a map"))?;
        set(&mut inner, rest, v, key)
    }
    for (k, v) in overrides {
        set(base, &k.split('.').collect::<Vec<_>>(), v, k)?;
    }
    Ok(())
}

impl ScriptModule {
    /// Loads `script`, builds hyperparameters (`hparams()` merged with `model_sets`), creates `this`
    /// and runs `init(hparams)`. Returns the module and the Trainer options (`trainer()` merged with
    /// `trainer_sets`; the command line wins).
    pub fn load(
        script: Script,
        model_sets: &BTreeMap<String, Value>,
        trainer_sets: &BTreeMap<String, Value>,
    ) -> Result<(ScriptModule, BTreeMap<String, Value>), String> {
        Self::load_with_data(script, model_sets, &BTreeMap::new(), trainer_sets)
    }

    /// [`ScriptModule::load`] with DataModule hyperparameters: `datamodule_hparams()` merged with
    /// `data_sets`, the argument of `fn datamodule(h)`.
    pub fn load_with_data(
        script: Script,
        model_sets: &BTreeMap<String, Value>,
        data_sets: &BTreeMap<String, Value>,
        trainer_sets: &BTreeMap<String, Value>,
    ) -> Result<(ScriptModule, BTreeMap<String, Value>), String> {
        let fns: HashMap<String, usize> =
            script.ast.iter_functions().map(|f| (f.name.to_string(), f.params.len())).collect();
        // a defined hook is never skipped silently
        let mut names: Vec<&String> = fns.keys().collect();
        names.sort();
        for name in names {
            if let Some(w) = crate::trainer::hooks::module_hook_warning(name) {
                warnln!("{w} ({})", script.name());
            }
        }
        let script = Rc::new(script);
        // Run the top level once (constants, prints).
        let _ = script.run(&mut Scope::new()).map_err(|e| e.to_string())?;
        let mut m = ScriptModule {
            script,
            // shared: hooks, callbacks and native calls made inside a hook (the LR estimate's
            // train_dataloader) all work on the one module state
            this: Dynamic::from_map(Map::new()).into_shared(),
            datamodule: None,
            callbacks: Vec::new(),
            state: crate::trainer::state::LoopState::shared(),
            fns,
            optimizers: Vec::new(),
            schedulers: Vec::new(),
            watch: None,
            pause_key: None,
            attached: false,
            configured_callbacks: 0,
            data_hparams: Value::Null,
        };
        let mut hp = if m.fns.contains_key("hparams") {
            m.call_plain("hparams", vec![])?
        } else {
            Dynamic::from_map(Map::new())
        };
        if !hp.is_map() {
            return Err(format!("hparams() must return a map, got {}", hp.type_name()));
        }
        if !model_sets.is_empty() {
            let mut map = hp.cast::<Map>();
            overlay(&mut map, model_sets)?;
            hp = Dynamic::from_map(map);
        }
        {
            let this = m.this.write_lock::<Map>();
            if let Some(mut this) = this {
                this.insert("_init_hparams".into(), hp.clone());
                this.insert("hparams".into(), Dynamic::from_map(Map::new()));
                this.insert("automatic_optimization".into(), Dynamic::from_bool(true));
            }
        }
        let trainer_opts = trainer_options(&m.script, trainer_sets)?;
        // seed_everything before the model is built, so initial weights are reproducible too.
        if let Some(seed) = trainer_opts.get("seed").and_then(Value::as_i64) {
            tch::manual_seed(seed);
        }
        m.refresh_this();
        if m.fns.contains_key("init") {
            let _ = m.call_hook("init", vec![hp])?;
        }
        if m.fns.contains_key("callbacks") {
            let c = m.call_plain("callbacks", vec![])?;
            m.callbacks = script_callbacks(c, "callbacks()", &m.script.name())?;
        }
        let mut data_hp = match settings_fn(&m.script, "datamodule_hparams")? {
            Some(Value::Object(o)) => from_json(&Value::Object(o)).cast::<Map>(),
            None => Map::new(),
            Some(other) => return Err(format!("datamodule_hparams() must return a map, got {other}")),
        };
        overlay(&mut data_hp, data_sets)?;
        let takes_hparams = m.fns.get("datamodule") == Some(&1);
        if !data_hp.is_empty() && !takes_hparams {
            return Err(format!(
                "DataModule hyperparameters ({}) need `fn datamodule(h)`, which receives them{}",
                data_hp.keys().map(|k| k.as_str()).collect::<Vec<_>>().join(", "),
                if m.fns.contains_key("datamodule") { "; this datamodule() takes none" } else { "" }
            ));
        }
        if m.fns.contains_key("datamodule") {
            let args = if takes_hparams { vec![Dynamic::from_map(data_hp.clone())] } else { vec![] };
            m.data_hparams = to_json(&Dynamic::from_map(data_hp));
            let d = m.call_plain("datamodule", args)?;
            if !d.is_map() {
                return Err(format!("datamodule() must return a map, got {}", d.type_name()));
            }
            // shared, so `trainer.datamodule` is the datamodule itself
            m.datamodule = Some(d.into_shared());
        }
        Ok((m, trainer_opts))
    }

    /// Takes the built-in callbacks (`callbacks::model_checkpoint(...)` …) out of `callbacks()`,
    /// leaving the script callbacks (maps of hook functions).
    pub fn take_native_callbacks(&mut self) -> Vec<Box<dyn crate::trainer::callback::Callback>> {
        take_natives(&mut self.callbacks)
    }

    /// Whether the script defines `fn name`.
    pub fn has_fn(&self, name: &str) -> bool {
        self.fns.contains_key(name)
    }

    /// Lets Enter pause the fit into the REPL (when stdin is a terminal); returns whether it can.
    pub fn enable_pause_key(&mut self) -> bool {
        self.pause_key = crate::repl::keypress::KeyWatcher::start();
        self.pause_key.is_some()
    }

    /// Watches the script's file (and `.rhai` files beside it) for hot reload.
    pub fn watch(&mut self) -> Result<(), String> {
        let mut w = super::reload::Watcher::new(&self.script.path)?;
        w.seen(&self.script.source);
        self.watch = Some(w);
        Ok(())
    }

    /// Replaces the script's functions, keeping `this`, optimizers and schedulers.
    pub fn swap_script(&mut self, script: Script) {
        self.fns = script.ast.iter_functions().map(|f| (f.name.to_string(), f.params.len())).collect();
        self.script = Rc::new(script);
        if self.attached {
            let fns = self.fns.keys().cloned().collect();
            trainer_api::with_run(|c| c.module_fns = fns);
        }
    }

    /// Attaches the run's shared loop state and installs the script-side run context.
    pub fn attach(&mut self, state: SharedState) -> Result<(), String> {
        self.state = state.clone();
        let params = self.parameters()?;
        trainer_api::install(RunContext {
            state,
            optimizers: Vec::new(),
            schedulers: Vec::new(),
            parameters: params,
            toggled: None,
            callbacks: self.callbacks.iter().filter(|c| c.is_map()).cloned().collect(),
            datamodule: self.datamodule.clone(),
            module_snapshot: None,
            preloaded_train: None,
            module: Some(self.this.clone()),
            module_fns: self.fns.keys().cloned().collect(),
            manual_optimization: false,
        });
        crate::optim::api::set_step_observer(Some(std::rc::Rc::new(trainer_api::ManualOptimizerStep)));
        self.attached = true;
        self.refresh_this();
        Ok(())
    }

    fn file(&self) -> String {
        self.script.name()
    }

    fn script_error(&self, e: &rhai::EvalAltResult, hook: &str) -> String {
        let mut s = ScriptError::from_eval(e, &self.file(), &self.script.source, Some(hook)).to_string();
        while s.ends_with('\n') {
            s.pop();
        }
        s
    }

    /// Refreshes the Lightning properties stored on `this`.
    pub fn refresh_this(&mut self) {
        let st = self.state.borrow();
        if let Some(mut this) = self.this.write_lock::<Map>() {
            this.insert("current_epoch".into(), Dynamic::from_int(st.progress.current_epoch as i64));
            this.insert("global_step".into(), Dynamic::from_int(st.progress.global_step as i64));
            this.insert("device".into(), Dynamic::from(crate::tensor::options::device_name(st.device)));
            this.insert("global_rank".into(), Dynamic::from_int(st.global_rank as i64));
            this.insert("local_rank".into(), Dynamic::from_int(st.local_rank as i64));
            this.insert("world_size".into(), Dynamic::from_int(st.world_size as i64));
            this.insert("precision".into(), Dynamic::from(st.precision.name().to_string()));
            this.insert("trainer".into(), Dynamic::from(TrainerView(self.state.clone())));
            let (logger, loggers) = crate::trainer::logger_api::views(&st.loggers);
            this.insert("logger".into(), logger);
            this.insert("loggers".into(), loggers);
        }
    }

    /// Calls a function with `this` bound to `target`, passing as many of `args` as it takes.
    fn call_on(
        &self,
        target: &mut Dynamic,
        name: &str,
        mut args: Vec<Dynamic>,
        ast: Option<&AST>,
    ) -> Result<Dynamic, String> {
        if let Some(n) = self.fns.get(name) {
            if *n > args.len() {
                let extra = if name.contains("step") || name.contains("batch") {
                    " (dataloader_idx is passed only when there are several dataloaders)"
                } else {
                    ""
                };
                return Err(format!(
                    "error: fn {name} takes {n} parameter(s) but the Trainer passes {} here{extra}\n  --> {}",
                    args.len(),
                    self.file()
                ));
            }
            args.truncate(*n);
        }
        let opts = CallFnOptions::new().eval_ast(false).rewind_scope(true).bind_this_ptr(target);
        let mut scope = Scope::new();
        let ast = ast.unwrap_or(&self.script.ast);
        self.script
            .engine
            .call_fn_with_options::<Dynamic>(opts, &mut scope, ast, name, args)
            .map_err(|e| self.script_error(&e, name))
    }

    /// Calls a script hook on `this`.
    pub fn call_hook(&mut self, name: &str, args: Vec<Dynamic>) -> Result<Dynamic, String> {
        self.refresh_this();
        let pending = {
            let s = self.state.borrow();
            s.stepping_estimate.is_some() && s.estimated_stepping_batches.is_none()
        };
        if pending {
            // (only until the fit has loaded its training loader: see RunContext::module_snapshot)
            let snapshot = self.this.read_lock::<Map>().map(|m| Dynamic::from_map(m.clone()));
            trainer_api::with_run(|c| c.module_snapshot = snapshot);
        }
        let mut this = self.this.clone();
        self.call_on(&mut this, name, args, None)
    }

    /// Calls a script function without `this`.
    fn call_plain(&self, name: &str, args: Vec<Dynamic>) -> Result<Dynamic, String> {
        let mut scope = Scope::new();
        self.script
            .engine
            .call_fn_with_options::<Dynamic>(
                CallFnOptions::new().eval_ast(false),
                &mut scope,
                &self.script.ast,
                name,
                args,
            )
            .map_err(|e| self.script_error(&e, name))
    }

    /// Calls a closure stored in a map (a callback's or the datamodule's hook) with `this` = the map.
    fn call_map_fn(&self, target: &mut Dynamic, name: &str, args: Vec<Dynamic>) -> Result<Option<Dynamic>, String> {
        let fp = match target.read_lock::<Map>().and_then(|m| m.get(name).cloned()) {
            Some(f) => match f.try_cast::<rhai::FnPtr>() {
                Some(fp) => fp,
                None => return Ok(None),
            },
            None => return Ok(None),
        };
        // A closure is a script function of the AST plus curried captures: call it by name with
        // `this` bound, passing as many of `args` as it takes.
        let mut all: Vec<Dynamic> = fp.curry().to_vec();
        let n_params = self.fns.get(fp.fn_name()).copied();
        let mut args = args;
        if let Some(n) = n_params {
            args.truncate(n.saturating_sub(all.len()));
        }
        all.extend(args);
        let mut this = std::mem::take(target);
        let opts = CallFnOptions::new().eval_ast(false).rewind_scope(true).bind_this_ptr(&mut this);
        let r = self.script.engine.call_fn_with_options::<Dynamic>(
            opts,
            &mut Scope::new(),
            &self.script.ast,
            fp.fn_name(),
            all,
        );
        *target = this;
        r.map(Some).map_err(|e| self.script_error(&e, name))
    }

    /// Calls hook `name` of every script callback with Lightning's arguments
    /// `(trainer, pl_module, ...)`, `this` being the callback's map. `pl_module` is the module
    /// itself (shared for the call), so what a callback changes on it stays.
    fn call_script_callbacks(&mut self, name: &str, argv: &[Dynamic]) -> Result<(), String> {
        if !self.has_callback_hook(name) {
            return Ok(());
        }
        self.refresh_this();
        self.run_prediction_writers(name, argv)?;
        let module = self.this.clone();
        let trainer = Dynamic::from(TrainerView(self.state.clone()));
        let mut cbs = std::mem::take(&mut self.callbacks);
        let mut res = Ok(());
        for cb in cbs.iter_mut() {
            let mut a = vec![trainer.clone(), module.clone()];
            a.extend(argv.iter().cloned());
            if let Err(e) = self.call_map_fn(cb, name, a) {
                res = Err(e);
                break;
            }
        }
        self.callbacks = cbs;
        res
    }

    fn hook_args(&self, args: HookArgs<'_, Dynamic, Dynamic>) -> Vec<Dynamic> {
        let opt = |i: usize| self.optimizers.get(i).cloned().unwrap_or(Dynamic::from_int(i as i64));
        match args {
            HookArgs::None => vec![],
            HookArgs::Stage(s) => vec![Dynamic::from(s.to_string())],
            HookArgs::BatchStart { batch, batch_idx, dataloader_idx } => {
                let mut v = vec![batch.clone(), Dynamic::from_int(batch_idx as i64)];
                if let Some(d) = dataloader_idx {
                    v.push(Dynamic::from_int(d as i64));
                }
                v
            }
            HookArgs::BatchEnd { outputs, batch, batch_idx, dataloader_idx } => {
                let mut v = vec![outputs.clone(), batch.clone(), Dynamic::from_int(batch_idx as i64)];
                if let Some(d) = dataloader_idx {
                    v.push(Dynamic::from_int(d as i64));
                }
                v
            }
            HookArgs::Loss(t) => vec![Dynamic::from(Tensor::new(t.shallow_clone()))],
            HookArgs::OptimizerStep { epoch, batch_idx, optimizer, loss } => vec![
                Dynamic::from_int(epoch as i64),
                Dynamic::from_int(batch_idx as i64),
                opt(optimizer),
                Dynamic::from(crate::optim::api::OptimizerClosure(Tensor::new(loss.detach()))),
            ],
            HookArgs::LrSchedulerStep { scheduler, metric } => vec![
                self.schedulers.get(scheduler).cloned().unwrap_or(Dynamic::UNIT),
                metric.map(Dynamic::from_float).unwrap_or(Dynamic::UNIT),
            ],
            HookArgs::Optimizer(i) => vec![opt(i)],
            HookArgs::OptimizerZeroGrad { epoch, batch_idx, optimizer } => {
                vec![Dynamic::from_int(epoch as i64), Dynamic::from_int(batch_idx as i64), opt(optimizer)]
            }
            HookArgs::GradientClipping { optimizer, value, algorithm } => vec![
                opt(optimizer),
                value.map(Dynamic::from_float).unwrap_or(Dynamic::UNIT),
                algorithm.map(|a| Dynamic::from(a.to_string())).unwrap_or(Dynamic::UNIT),
            ],
        }
    }
}

/// The entries of what `callbacks()` / `configure_callbacks()` returned (`what`), checked: each a
/// built-in callback or a map of hook functions. Maps become shared values, so the loop and native
/// calls (`manual_backward`) see one state per callback; a map function that no one will call is a
/// warning, not silence.
fn script_callbacks(c: Dynamic, what: &str, file: &str) -> Result<Vec<Dynamic>, String> {
    let list = match c.clone().try_cast::<Array>() {
        Some(a) => a,
        None if c.is_map() => vec![c],
        None => return Err(format!("{what} must return an array of callbacks, got {}", c.type_name())),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, c) in list.into_iter().enumerate() {
        if let Some(map) = c.read_lock::<Map>() {
            let writer = prediction_writer::is_writer(&map);
            let mut keys: Vec<&str> = map
                .iter()
                .filter(|(k, v)| {
                    v.is::<rhai::FnPtr>() && !(writer && prediction_writer::WRITER_FUNCTIONS.contains(&k.as_str()))
                })
                .map(|(k, _)| k.as_str())
                .collect();
            keys.sort();
            for w in keys.into_iter().filter_map(crate::trainer::hooks::callback_hook_warning) {
                warnln!("{w} ({file})");
            }
        } else if c.read_lock::<crate::callbacks::api::NativeCallback>().is_none() {
            return Err(format!(
                "{what}[{i}] is a {}: each callback is a built-in (callbacks::early_stopping(#{{…}}), …) or a map of hook functions",
                c.type_name()
            ));
        }
        out.push(if c.is_map() { c.into_shared() } else { c });
    }
    Ok(out)
}

/// Takes the built-in callbacks out of `list`, leaving the script callbacks (maps).
fn take_natives(list: &mut Vec<Dynamic>) -> Vec<Box<dyn crate::trainer::callback::Callback>> {
    let mut out = Vec::new();
    list.retain(|c| match c.read_lock::<crate::callbacks::api::NativeCallback>() {
        Some(n) => {
            out.extend(n.take());
            false
        }
        None => true,
    });
    out
}

/// Adds what a hook put in the `checkpoint` map to `extra`: tensors as tensors, the rest as JSON.
fn read_checkpoint_map(ck: &Dynamic, extra: &mut CheckpointExtra, hook: &str) -> Result<(), String> {
    let map = ck.read_lock::<Map>().map(|m| m.clone()).unwrap_or_default();
    for (k, v) in map {
        if let Some(t) = v.read_lock::<Tensor>() {
            extra.tensors.push((k.to_string(), t.handle()));
        } else {
            let j = checkpoint_json(&v)
                .map_err(|what| format!("{hook}: checkpoint.{k} holds {what}, which a checkpoint cannot store (numbers, strings, bools, arrays and maps of them, or a tensor as a top-level entry)"))?;
            extra.json.insert(k.to_string(), j);
        }
    }
    Ok(())
}

/// A value a checkpoint's header can hold as JSON; `Err` names what cannot be stored (a tensor
/// nested in an array or map, a Trainer, a function …) instead of writing its type name.
fn checkpoint_json(d: &Dynamic) -> Result<Value, String> {
    if d.is_unit() || d.is_bool() || d.is_int() || d.is_float() || d.is_string() {
        return Ok(to_json(d));
    }
    if let Some(a) = d.read_lock::<Array>() {
        return a.iter().map(checkpoint_json).collect::<Result<Vec<_>, _>>().map(Value::Array);
    }
    if let Some(m) = d.read_lock::<Map>() {
        let mut o = serde_json::Map::new();
        for (k, v) in m.iter() {
            o.insert(k.to_string(), checkpoint_json(v)?);
        }
        return Ok(Value::Object(o));
    }
    Err(format!("a {}", d.type_name()))
}

/// The `checkpoint` map `on_load_checkpoint` hooks receive.
fn checkpoint_map(extra: &CheckpointExtra) -> Dynamic {
    let mut map = Map::new();
    for (k, v) in &extra.json {
        map.insert(k.as_str().into(), from_json(v));
    }
    for (k, t) in &extra.tensors {
        map.insert(k.as_str().into(), Dynamic::from(Tensor::new(t.shallow_clone())));
    }
    Dynamic::from_map(map)
}

impl LightningModule for ScriptModule {
    type Batch = Dynamic;
    type Output = Dynamic;

    fn has_hook(&self, name: &str) -> bool {
        self.fns.contains_key(name)
    }

    fn class_name(&self) -> String {
        self.script
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "LightningModule".into())
    }

    fn defines_loader(&self, stage: LoaderStage) -> Option<bool> {
        let name = stage.hook();
        let in_datamodule = self.datamodule.as_ref().is_some_and(|dm| {
            dm.read_lock::<Map>().and_then(|m| m.get(name).map(|f| f.is::<rhai::FnPtr>())).unwrap_or(false)
        });
        Some(in_datamodule || self.fns.contains_key(name))
    }

    fn datamodule_hook(&mut self, name: &str, args: HookArgs<'_, Dynamic, Dynamic>) -> Result<(), String> {
        let Some(mut dm) = self.datamodule.take() else { return Ok(()) };
        let argv = self.hook_args(args);
        let r = self.call_map_fn(&mut dm, name, argv);
        self.datamodule = Some(dm);
        r.map(|_| ())
    }

    fn batch_hook(
        &mut self,
        name: &str,
        batch: Dynamic,
        device: Device,
        dataloader_idx: usize,
    ) -> Result<Dynamic, String> {
        let dl = Dynamic::from_int(dataloader_idx as i64);
        let args = if name == "transfer_batch_to_device" {
            vec![batch, Dynamic::from(crate::tensor::options::device_name(device)), dl]
        } else {
            vec![batch, dl]
        };
        self.call_hook(name, args)
    }

    fn configure_callbacks(&mut self) -> Result<Vec<Box<dyn crate::trainer::callback::Callback>>, String> {
        if !self.fns.contains_key("configure_callbacks") {
            return Ok(Vec::new());
        }
        let c = self.call_hook("configure_callbacks", vec![])?;
        let mut list = script_callbacks(c, "configure_callbacks()", &self.file())?;
        let natives = take_natives(&mut list);
        // the maps of the previous run's configure_callbacks give way to this run's
        let keep = self.callbacks.len() - self.configured_callbacks;
        self.callbacks.truncate(keep);
        self.configured_callbacks = list.len();
        self.callbacks.extend(list);
        let maps: Vec<Dynamic> = self.callbacks.iter().filter(|c| c.is_map()).cloned().collect();
        trainer_api::with_run(|c| c.callbacks = maps);
        Ok(natives)
    }

    fn has_callback_hook(&self, name: &str) -> bool {
        self.callbacks.iter().any(|c| {
            c.read_lock::<Map>().is_some_and(|m| {
                m.contains_key(name)
                    || (prediction_writer::is_writer(&m) && prediction_writer::WRITER_HOOKS.contains(&name))
            })
        })
    }

    fn callback_hook(&mut self, name: &str, args: HookArgs<'_, Dynamic, Dynamic>) -> Result<(), String> {
        let argv = self.hook_args(args);
        self.call_script_callbacks(name, &argv)
    }

    fn callbacks_on_save_checkpoint(&mut self, extra: &mut CheckpointExtra) -> Result<(), String> {
        if !self.has_callback_hook("on_save_checkpoint") {
            return Ok(());
        }
        let ck = Dynamic::from_map(Map::new()).into_shared();
        self.call_script_callbacks("on_save_checkpoint", std::slice::from_ref(&ck))?;
        read_checkpoint_map(&ck, extra, "a callback's on_save_checkpoint")
    }

    fn callbacks_on_load_checkpoint(&mut self, extra: &CheckpointExtra) -> Result<(), String> {
        self.call_script_callbacks("on_load_checkpoint", &[checkpoint_map(extra)])
    }

    fn has_step(&self, kind: StepKind) -> bool {
        self.fns.contains_key(kind.hook())
    }

    fn hook(&mut self, name: &str, args: HookArgs<'_, Dynamic, Dynamic>) -> Result<Option<i64>, String> {
        let argv = self.hook_args(args);
        if self.fns.contains_key(name) {
            let r = self.call_hook(name, argv)?;
            if let Ok(i) = r.as_int() {
                return Ok(Some(i));
            }
        }
        if name == "on_train_start" || name == "on_fit_start" {
            // parameters may have changed in setup (lazy modules)
            let params = self.parameters()?;
            trainer_api::with_run(|c| c.parameters = params);
        }
        Ok(None)
    }

    fn step(
        &mut self,
        kind: StepKind,
        batch: &Dynamic,
        batch_idx: usize,
        dl: Option<usize>,
    ) -> Result<(Option<tch::Tensor>, Dynamic), String> {
        let name = kind.hook();
        if !self.fns.contains_key(name) {
            return Err(format!("the script defines no `fn {name}(batch, batch_idx)`"));
        }
        let mut args = vec![batch.clone(), Dynamic::from_int(batch_idx as i64)];
        if let Some(d) = dl {
            args.push(Dynamic::from_int(d as i64));
        }
        if kind == StepKind::Training {
            let manual = !self.automatic_optimization();
            trainer_api::with_run(|c| c.manual_optimization = manual);
        }
        let out = self.call_hook(name, args)?;
        if kind != StepKind::Training {
            return Ok((None, out));
        }
        if out.is_unit() {
            return Ok((None, out));
        }
        if let Some(t) = out.read_lock::<Tensor>() {
            return Ok((Some(t.handle()), out.clone()));
        }
        if let Some(m) = out.read_lock::<Map>() {
            return match m.get("loss").and_then(|l| l.read_lock::<Tensor>().map(|t| t.handle())) {
                Some(l) => Ok((Some(l), out.clone())),
                None => Err("training_step returned a map without a `loss` tensor".into()),
            };
        }
        Err(format!("training_step must return a loss tensor, a map with `loss`, or nothing; got {}", out.type_name()))
    }

    fn empty_output(&self) -> Dynamic {
        Dynamic::UNIT
    }

    fn configure_optimizers(&mut self) -> Result<OptimizerSetup, String> {
        let d = if self.fns.contains_key("configure_optimizers") {
            self.call_hook("configure_optimizers", vec![])?
        } else {
            Dynamic::UNIT
        };
        let setup = self.parse_optimizers(d)?;
        let (o, s) = (self.optimizers.clone(), self.schedulers.clone());
        trainer_api::with_run(|c| {
            c.optimizers = o;
            c.schedulers = s;
        });
        Ok(setup)
    }

    fn loaders(&mut self, stage: LoaderStage) -> Result<Vec<Box<dyn BatchLoader<Dynamic>>>, String> {
        let name = stage.hook();
        if stage == LoaderStage::Train {
            // loaded already, by a hook that read `estimated_stepping_batches`
            if let Some(d) = trainer_api::with_run(|c| c.preloaded_train.take()).flatten() {
                return loaders_from(d, name);
            }
        }
        if let Some(mut dm) = self.datamodule.take() {
            let r = self.call_map_fn(&mut dm, name, vec![]);
            self.datamodule = Some(dm);
            if let Some(d) = r? {
                return loaders_from(d, name);
            }
        }
        if self.fns.contains_key(name) {
            let d = self.call_hook(name, vec![])?;
            return loaders_from(d, name);
        }
        Ok(vec![])
    }

    fn batch_to_device(&self, batch: Dynamic, device: Device, dtype: Option<Kind>) -> Result<Dynamic, String> {
        map_tensors(batch, &|t| {
            let t = if t.device() != device { t.f_to_device(device)? } else { t.shallow_clone() };
            match dtype {
                Some(k) if crate::tensor::options::is_floating(t.kind()) && t.kind() != k => t.f_to_kind(k),
                _ => Ok(t),
            }
        })
    }

    fn batch_size(&self, batch: &Dynamic) -> Option<usize> {
        first_tensor_rows(batch)
    }

    fn parameters(&self) -> Result<Vec<tch::Tensor>, String> {
        crate::nn::tree::parameters(&self.this).map(|v| v.into_iter().map(|t| t.handle()).collect())
    }

    fn named_buffers(&self) -> Result<Vec<(String, tch::Tensor)>, String> {
        crate::nn::tree::named_buffers(&self.this).map(|v| v.into_iter().map(|(k, t)| (k, t.handle())).collect())
    }

    fn reset_batch_norm(&mut self, momentum: Option<f64>) -> Result<Vec<Option<f64>>, String> {
        crate::nn::tree::reset_batch_norm(&mut self.this, momentum)
    }

    fn restore_batch_norm_momenta(&mut self, momenta: &[Option<f64>]) -> Result<(), String> {
        crate::nn::tree::restore_batch_norm_momenta(&mut self.this, momenta)
    }

    fn forward_input(&mut self, batch: &Dynamic) -> Result<(), String> {
        if !self.fns.contains_key("forward") {
            return Err("the script defines no `fn forward(x)` (needed to recompute batch-norm statistics)".into());
        }
        let input = match batch.read_lock::<rhai::Array>() {
            Some(a) => a.first().cloned().unwrap_or(Dynamic::UNIT),
            None => batch.clone(),
        };
        self.call_hook("forward", vec![input]).map(|_| ())
    }

    fn set_training(&mut self, training: bool) -> Result<(), String> {
        crate::nn::tree::set_training(&mut self.this, training)
    }

    fn finetune_child(
        &mut self,
        attribute: &str,
        op: crate::callbacks::backbone_finetuning::Finetune,
    ) -> Result<Vec<tch::Tensor>, String> {
        let mut this = self.this.write_lock::<rhai::Map>().ok_or("internal: the module's `this` is not a map")?;
        let child = this
            .get_mut(attribute)
            .filter(|c| c.read_lock::<rhai::Map>().is_some_and(|m| crate::nn::tree::is_module(&m)))
            .ok_or_else(|| format!("The LightningModule should have a nn.Module `{attribute}` attribute (this.{attribute} = a module, e.g. models::resnet18())"))?;
        crate::nn::tree::finetune(child, op)
    }

    fn to_device_dtype(&mut self, device: Device, dtype: Option<Kind>) -> Result<(), String> {
        crate::nn::tree::to(&self.this, Some(device), dtype)
    }

    fn automatic_optimization(&self) -> bool {
        self.this
            .read_lock::<Map>()
            .and_then(|m| m.get("automatic_optimization").and_then(|v| v.as_bool().ok()))
            .unwrap_or(true)
    }

    fn summary(&self, max_depth: i64) -> Option<String> {
        // children in the order the script declares them (Rhai maps sort their keys)
        let order = crate::script::declaration_order::declaration_order(&self.script.ast);
        crate::nn::tree::summary_in_order(&self.this, max_depth, &|k| order.get(k).copied()).ok()
    }

    fn state_dict(&self) -> Result<Vec<(String, tch::Tensor)>, String> {
        crate::nn::tree::state_dict(&self.this).map(|v| v.into_iter().map(|(k, t)| (k, t.handle())).collect())
    }

    fn load_state_dict(&mut self, tensors: &[(String, tch::Tensor)], strict: bool) -> Result<(), String> {
        crate::nn::tree::load_state_dict(&self.this, tensors, strict).map(|_| ())
    }

    fn on_save_checkpoint(&mut self, extra: &mut CheckpointExtra) -> Result<(), String> {
        if !self.fns.contains_key("on_save_checkpoint") {
            return Ok(());
        }
        // A shared map, so that `checkpoint.key = value` in the hook writes through.
        let ck = Dynamic::from_map(Map::new()).into_shared();
        let _ = self.call_hook("on_save_checkpoint", vec![ck.clone()])?;
        read_checkpoint_map(&ck, extra, "on_save_checkpoint")
    }

    fn on_load_checkpoint(&mut self, extra: &CheckpointExtra) -> Result<(), String> {
        if !self.fns.contains_key("on_load_checkpoint") {
            return Ok(());
        }
        let _ = self.call_hook("on_load_checkpoint", vec![checkpoint_map(extra)])?;
        Ok(())
    }

    fn hparams(&self) -> Value {
        self.this.read_lock::<Map>().and_then(|m| m.get("hparams").map(to_json)).unwrap_or(Value::Null)
    }

    fn datamodule_hparams(&self) -> Value {
        self.data_hparams.clone()
    }

    fn at_step_boundary(&mut self) -> Result<Option<(String, f64)>, String> {
        if self.pause_key.as_ref().is_some_and(|k| k.take_request()) {
            self.refresh_this();
            let step = self.state.borrow().progress.global_step;
            crate::repl::pause::pause_run(&mut self.this, &self.script.ast, &format!("at step {step}"))?;
        }
        let changes = match self.watch.as_mut() {
            Some(w) => w.poll(),
            None => return Ok(None),
        };
        if !changes.main && !changes.other {
            return Ok(None);
        }
        // A save may come as several events (or remove + create): the file may be briefly absent.
        let Ok(new_text) = crate::fs::read_regular_to_string(&self.script.path) else { return Ok(None) };
        let seen = self.watch.as_mut().is_some_and(|w| w.seen(&new_text));
        if seen && !changes.other {
            return Ok(None);
        }
        let step = self.state.borrow().progress.global_step;
        let file = self.file();
        match super::reload::prepare_source(&self.script, new_text) {
            Ok(Some((script, changed))) => {
                self.swap_script(script);
                let n = self.watch.as_mut().map(|w| {
                    w.reloads += 1;
                    w.reloads
                });
                outln!("reloaded {file} at step {step}: {}", super::reload::describe(&changed));
                Ok(n.map(|n| ("reload".to_string(), n as f64)))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                errorln!("{}", e.trim_end());
                outln!("reload skipped at step {step}: {file} keeps running the old code (see the error above)");
                Ok(None)
            }
        }
    }
}

impl Drop for ScriptModule {
    fn drop(&mut self) {
        // a module loaded inside another script (nn::load_module) never attached: leave the
        // running module's context alone
        if self.attached {
            trainer_api::uninstall();
            crate::optim::api::set_step_observer(None);
        }
    }
}
