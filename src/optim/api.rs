//! The optimizer script surface: `optim::sgd`, `optim::adam`, … constructors, the `Optimizer`
//! type (`step`, `zero_grad`, `param_groups`, `state_dict`, `load_state_dict`,
//! `add_param_group`), and the gradient utilities `nn::clip_grad_norm_` / `nn::clip_grad_value_`.
use super::{clip, Algorithm, HValue, Optimizer, OptimizerCore, Options};
use crate::script::convert::{err, number, Opts, OrScript, RResult};
use crate::script::registry::Registry;
use crate::tensor::Tensor;
use rhai::{Array, Dynamic, Map, NativeCallContext, FLOAT, INT};
use std::cell::RefCell;
use std::rc::Rc;

/// What runs around a script's `opt.step()` while a Trainer drives manual optimization, as
/// Lightning's `LightningOptimizer.step` does: `on_before_optimizer_step` before the update, the
/// step count (`global_step`) after it. The Trainer's script surface installs one for a run.
pub trait StepObserver {
    /// Before `opt` updates its parameters.
    fn before_step(&self, ctx: &NativeCallContext, opt: &Optimizer) -> RResult<()>;
    /// After `opt` updated its parameters.
    fn after_step(&self, opt: &Optimizer) -> RResult<()>;
}

thread_local! {
    static STEP_OBSERVER: RefCell<Option<Rc<dyn StepObserver>>> = const { RefCell::new(None) };
}

/// Installs (or, with None, removes) the observer of script `opt.step()` calls.
pub fn set_step_observer(observer: Option<Rc<dyn StepObserver>>) {
    STEP_OBSERVER.with(|o| *o.borrow_mut() = observer);
}

/// The `optimizer_closure` a module's `optimizer_step(epoch, batch_idx, optimizer,
/// optimizer_closure)` receives. lt has already run what it stands for (training_step, backward,
/// clipping: Lightning runs them inside the step), so `optimizer.step(optimizer_closure)` makes
/// the update and `optimizer_closure.loss()` gives the loss (what calling the closure returns in
/// Lightning; Rhai keeps `.call()` for function pointers).
#[derive(Clone)]
pub struct OptimizerClosure(pub Tensor);

/// `opt.step()` from a script: the update, inside the installed observer's hooks.
fn observed_step(ctx: &NativeCallContext, opt: &Optimizer) -> RResult<()> {
    let observer = STEP_OBSERVER.with(|o| o.borrow().clone());
    if let Some(obs) = &observer {
        obs.before_step(ctx, opt)?;
    }
    opt.step().or_script()?;
    match &observer {
        Some(obs) => obs.after_step(opt),
        None => Ok(()),
    }
}

const ALL: &[Algorithm] = &[
    Algorithm::Sgd,
    Algorithm::Adam,
    Algorithm::AdamW,
    Algorithm::RmsProp,
    Algorithm::Adagrad,
    Algorithm::Adamax,
    Algorithm::NAdam,
    Algorithm::RAdam,
];

/// A script value as a group option: number, bool, or a pair of numbers (`betas`).
pub fn hvalue(d: &Dynamic, what: &str, key: &str) -> RResult<HValue> {
    if let Ok(b) = d.as_bool() {
        return Ok(HValue::Bool(b));
    }
    if let Ok(x) = number(d, what) {
        return Ok(HValue::Num(x));
    }
    if let Some(a) = d.read_lock::<Array>() {
        if a.len() == 2 {
            if let (Ok(x), Ok(y)) = (number(&a[0], what), number(&a[1], what)) {
                return Ok(HValue::Pair(x, y));
            }
        }
    }
    Err(err(format!("{what}: option '{key}' must be a number, a bool or a pair of numbers, got {}", d.type_name())))
}

/// A group option as a script value.
pub fn hvalue_to_dynamic(v: &HValue) -> Dynamic {
    match v {
        HValue::Num(x) => Dynamic::from_float(*x),
        HValue::Bool(b) => Dynamic::from_bool(*b),
        HValue::Pair(a, b) => Dynamic::from_array(vec![Dynamic::from_float(*a), Dynamic::from_float(*b)]),
    }
}

fn options(map: &Map, what: &str, allowed: &[&str], skip: &[&str]) -> RResult<Options> {
    Opts::new(map, what, allowed)?;
    let mut o = Options::new();
    for (k, v) in map {
        if skip.contains(&k.as_str()) || v.is_unit() {
            continue;
        }
        o.insert(k.to_string(), hvalue(v, what, k)?);
    }
    Ok(o)
}

fn tensors(a: &Array, what: &str) -> RResult<Vec<tch::Tensor>> {
    a.iter()
        .enumerate()
        .map(|(i, v)| {
            v.read_lock::<Tensor>()
                .map(|t| t.handle())
                .ok_or_else(|| err(format!("{what}: parameter {i} is a {}, not a Tensor", v.type_name())))
        })
        .collect()
}

/// Parameters as an array of tensors (one group) or an array of group maps `#{params: [...], lr}`.
fn groups(params: &Array, algo: Algorithm, what: &str) -> RResult<Vec<(Vec<tch::Tensor>, Options)>> {
    if params.is_empty() {
        return Err(err(format!("{what}: got an empty parameter list")));
    }
    if params.iter().all(|v| v.is_map()) {
        let mut keys = algo.option_keys();
        keys.push("params");
        let mut out = Vec::new();
        for (gi, g) in params.iter().enumerate() {
            let m = g.read_lock::<Map>().ok_or_else(|| err(format!("{what}: group {gi} is not a map")))?;
            let gwhat = format!("{what} (param group {gi})");
            let o = options(&m, &gwhat, &keys, &["params"])?;
            let p = m.get("params").ok_or_else(|| err(format!("{gwhat}: the group has no 'params'")))?;
            let p =
                p.read_lock::<Array>().ok_or_else(|| err(format!("{gwhat}: 'params' must be an array of tensors")))?;
            out.push((tensors(&p, &gwhat)?, o));
        }
        return Ok(out);
    }
    Ok(vec![(tensors(params, what)?, Options::new())])
}

fn construct(algo: Algorithm, params: &Array, opts: &Map) -> RResult<Optimizer> {
    let what = format!("optim::{}", algo.script_name());
    let defaults = options(opts, &what, &algo.option_keys(), &[])?;
    let groups = groups(params, algo, &what)?;
    OptimizerCore::new(algo, groups, defaults).map(Optimizer::new).or_script()
}

fn group_maps(opt: &Optimizer) -> RResult<Array> {
    let core = opt.0.try_borrow().map_err(|_| err("the optimizer is busy"))?;
    Ok(core
        .groups
        .iter()
        .map(|g| {
            let mut m = Map::new();
            for (k, v) in &g.options {
                m.insert(k.as_str().into(), hvalue_to_dynamic(v));
            }
            let ps: Array = g.params.iter().map(|p| Dynamic::from(Tensor::new(p.shallow_clone()))).collect();
            m.insert("params".into(), Dynamic::from_array(ps));
            Dynamic::from_map(m)
        })
        .collect())
}

fn set_group_maps(opt: &Optimizer, groups: Array) -> RResult<()> {
    let mut core = opt.0.try_borrow_mut().map_err(|_| err("the optimizer is busy"))?;
    let n = core.groups.len();
    if groups.len() != n {
        return Err(err(format!(
            "param_groups: got {} groups, the optimizer has {n}; add a group with add_param_group",
            groups.len()
        )));
    }
    let algo = core.algorithm;
    let mut new = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        let m = g.read_lock::<Map>().ok_or_else(|| err(format!("param_groups[{gi}] must be a map")))?;
        if let Some(p) = m.get("params").and_then(|p| p.read_lock::<Array>().map(|a| a.len())) {
            if p != core.groups[gi].params.len() {
                return Err(err(format!("param_groups[{gi}]: the parameters of a group cannot be changed")));
            }
        }
        let mut o = core.groups[gi].options.clone();
        for (k, v) in m.iter() {
            if k == "params" || v.is_unit() {
                continue;
            }
            o.insert(k.to_string(), hvalue(v, "param_groups", k)?);
        }
        super::check_group(algo, &o).map_err(|e| err(format!("param_groups[{gi}]: {e}")))?;
        new.push(o);
    }
    for (g, o) in core.groups.iter_mut().zip(new) {
        g.options = o;
    }
    Ok(())
}

/// `opt.state_dict()` as a script map: `#{state: #{"0": #{step, exp_avg, …}}, param_groups: […]}`.
pub fn state_dict_map(tensors: Vec<(String, tch::Tensor)>, meta: &serde_json::Value) -> RResult<Map> {
    let mut m: Map = rhai::serde::to_dynamic(meta)?.try_cast::<Map>().ok_or_else(|| err("state_dict: not a map"))?;
    let mut state = Map::new();
    for (name, t) in tensors {
        let rest = name.strip_prefix("state.").unwrap_or(&name);
        let (i, key) = rest.split_once('.').unwrap_or((rest, ""));
        let entry = state.entry(i.into()).or_insert_with(|| Dynamic::from_map(Map::new()));
        if let Some(mut e) = entry.write_lock::<Map>() {
            e.insert(key.into(), Dynamic::from(Tensor::new(t)));
        }
    }
    m.insert("state".into(), Dynamic::from_map(state));
    Ok(m)
}

/// The inverse of [`state_dict_map`].
pub fn state_dict_from_map(m: &Map) -> RResult<(Vec<(String, tch::Tensor)>, serde_json::Value)> {
    let mut rest = m.clone();
    let mut tensors = Vec::new();
    if let Some(state) = rest.remove("state") {
        let state = state.read_lock::<Map>().ok_or_else(|| err("load_state_dict: 'state' must be a map"))?.clone();
        for (i, entry) in state {
            let e =
                entry.read_lock::<Map>().ok_or_else(|| err(format!("load_state_dict: state '{i}' must be a map")))?;
            for (k, v) in e.iter() {
                let t = v
                    .read_lock::<Tensor>()
                    .ok_or_else(|| err(format!("load_state_dict: state '{i}.{k}' must be a Tensor")))?;
                tensors.push((format!("state.{i}.{k}"), t.handle()));
            }
        }
    }
    let meta: serde_json::Value = rhai::serde::from_dynamic(&Dynamic::from_map(rest))?;
    Ok((tensors, meta))
}

fn example(algo: Algorithm) -> String {
    let opts = match algo {
        Algorithm::Sgd => "#{lr: 0.1, momentum: 0.9}",
        Algorithm::Adam => "#{lr: 1e-3, betas: [0.9, 0.999]}",
        Algorithm::AdamW => "#{lr: 1e-3, weight_decay: 0.01}",
        Algorithm::RmsProp => "#{lr: 0.01, centered: true}",
        Algorithm::Adagrad => "#{lr: 0.1, lr_decay: 0.01}",
        Algorithm::Adamax => "#{lr: 2e-3}",
        Algorithm::NAdam => "#{lr: 2e-3, momentum_decay: 4e-3}",
        Algorithm::RAdam => "#{lr: 1e-3, decoupled_weight_decay: true, weight_decay: 0.01}",
    };
    format!(
        "```rhai\nlet w = torch::ones([3], #{{requires_grad: true}});\nlet opt = optim::{}([w], {opts});\nlet loss = (w * w).sum();\nloss.backward();\nopt.step();\nopt.zero_grad();\nprint(w);\n```",
        algo.script_name()
    )
}

pub fn register(reg: &mut Registry) {
    reg.global_module().set_custom_type::<Optimizer>("Optimizer");
    for &algo in ALL {
        let keys = algo.option_keys().join(", ");
        let extra = if matches!(algo, Algorithm::Adam | Algorithm::AdamW) {
            " `fused: true` runs ATen's fused multi-tensor kernel (as `fused=True` in PyTorch)."
        } else {
            ""
        };
        let doc = format!(
            "The {} optimizer (torch.optim.{}), updating `params` in place on `opt.step()`.\n\n`params` is an array of tensors, or of parameter groups `#{{params: [...], lr: ...}}` whose options override the optimizer's. Options (PyTorch's keywords and defaults): {keys}.{extra}\n\n{}",
            algo.class_name(),
            algo.class_name(),
            example(algo)
        );
        reg.volatile("optim", algo.script_name(), "params", &doc, move |p: Array| construct(algo, &p, &Map::new()));
        reg.volatile("optim", algo.script_name(), "params, opts", &doc, move |p: Array, o: Map| {
            construct(algo, &p, &o)
        });
    }

    let doc = "Updates every parameter that has a gradient (optimizer.step()). Under manual optimization in a Trainer it runs `on_before_optimizer_step` (callbacks, then the module) first and counts the step in `global_step`, as Lightning's optimizer wrapper does.\n\n```rhai\nlet w = torch::ones([2], #{requires_grad: true});\nlet opt = optim::sgd([w], #{lr: 0.5});\n(w * w).sum().backward();\nopt.step();\nprint(w);\n```";
    reg.func("", "step", "self", doc, |ctx: NativeCallContext, o: &mut Optimizer| observed_step(&ctx, o));
    reg.global_module().set_custom_type::<OptimizerClosure>("OptimizerClosure");
    let doc = "The step of a module's `optimizer_step` hook (Lightning's `optimizer.step(closure=optimizer_closure)`): the update, after the closure's work, which lt has already done (training_step, backward, clipping).\n\n```rhai\nfn optimizer_step(epoch, batch_idx, optimizer, optimizer_closure) {\n    optimizer.step(optimizer_closure);\n}\n```";
    reg.func("", "step", "self, closure", doc, |ctx: NativeCallContext, o: &mut Optimizer, _c: OptimizerClosure| {
        observed_step(&ctx, o)
    });
    let doc = "The loss the `optimizer_closure` of `optimizer_step` computed (training_step's, already backpropagated).\n\n```rhai\nfn optimizer_step(epoch, batch_idx, optimizer, optimizer_closure) {\n    print(optimizer_closure.loss());\n    optimizer.step(optimizer_closure);\n}\n```";
    reg.func("", "loss", "self", doc, |c: &mut OptimizerClosure| c.0.clone());

    let doc = "Clears the gradients of every parameter: sets them to none (the default, as in PyTorch), or to zero with `#{set_to_none: false}`.\n\n```rhai\nlet w = torch::ones([2], #{requires_grad: true});\nlet opt = optim::sgd([w], #{lr: 0.1});\n(w * w).sum().backward();\nopt.zero_grad(#{set_to_none: false});\nprint(w.grad);\nopt.zero_grad();\nprint(w.grad);\n```";
    reg.func("", "zero_grad", "self", doc, |o: &mut Optimizer| o.zero_grad(true));
    reg.func("", "zero_grad", "self, opts", doc, |o: &mut Optimizer, m: Map| -> RResult<()> {
        let opts = Opts::new(&m, "zero_grad", &["set_to_none"])?;
        o.zero_grad(opts.bool_or("set_to_none", true)?);
        Ok(())
    });

    let doc = "The parameter groups: an array of maps holding each group's options (`lr`, `momentum`, `betas`, `weight_decay`, …) and its `params`. Writable: `opt.param_groups[0].lr = 0.01`.\n\n```rhai\nlet w = torch::ones([2], #{requires_grad: true});\nlet opt = optim::adam([w], #{lr: 0.1});\nprint(opt.param_groups[0].lr);\nopt.param_groups[0].lr = 0.01;\nopt.param_groups[0].betas = [0.8, 0.99];\nprint(opt.param_groups[0]);\n```";
    reg.getter("param_groups", doc, |o: &mut Optimizer| group_maps(o));
    reg.setter("param_groups", doc, |o: &mut Optimizer, g: Array| set_group_maps(o, g));

    let doc = "Adds a parameter group `#{params: [...], ...options}` (optimizer.add_param_group); unspecified options take the optimizer's defaults. A parameter may belong to one group only.\n\n```rhai\nlet a = torch::ones([2], #{requires_grad: true});\nlet b = torch::ones([3], #{requires_grad: true});\nlet opt = optim::sgd([a], #{lr: 0.1});\nopt.add_param_group(#{params: [b], lr: 0.01});\nprint(opt.param_groups.len());\n```";
    reg.func("", "add_param_group", "self, group", doc, |o: &mut Optimizer, g: Map| -> RResult<()> {
        let algo = o.0.try_borrow().map_err(|_| err("the optimizer is busy"))?.algorithm;
        let mut gs = groups(&vec![Dynamic::from_map(g)], algo, "add_param_group")?;
        let (p, opts) = gs.pop().ok_or_else(|| err("add_param_group: no group"))?;
        o.0.try_borrow_mut().map_err(|_| err("the optimizer is busy"))?.add_param_group(p, opts).or_script()
    });

    let doc = "The optimizer's state, as PyTorch's `state_dict()`: `#{state: #{\"0\": #{step, exp_avg, …}}, param_groups: [...]}` with parameters numbered across groups. Load it with `load_state_dict`.\n\n```rhai\nlet w = torch::ones([2], #{requires_grad: true});\nlet opt = optim::adam([w]);\n(w * w).sum().backward();\nopt.step();\nlet sd = opt.state_dict();\nprint(sd.state[\"0\"].exp_avg);\nlet opt2 = optim::adam([w]);\nopt2.load_state_dict(sd);\n```";
    reg.func("", "state_dict", "self", doc, |o: &mut Optimizer| -> RResult<Map> {
        let (t, meta) = o.state_dict();
        state_dict_map(t, &meta)
    });
    reg.func("", "load_state_dict", "self, state", doc, |o: &mut Optimizer, m: Map| -> RResult<()> {
        let (t, meta) = state_dict_from_map(&m)?;
        o.load_state_dict(&t, &meta).or_script()
    });

    let doc = "PyTorch's class name of the optimizer (`\"Adam\"`, `\"SGD\"`).\n\n```rhai\nlet w = torch::ones([2], #{requires_grad: true});\nprint(optim::adamw([w]).name);\n```";
    reg.getter("name", doc, |o: &mut Optimizer| o.name().to_string());
    let doc = "A one-line description: class, groups and learning rates.\n\n```rhai\nlet w = torch::ones([2], #{requires_grad: true});\nprint(optim::sgd([w], #{lr: 0.1}));\n```";
    reg.func("", "to_string", "self", doc, |o: &mut Optimizer| describe(o));
    reg.func("", "to_debug", "self", doc, |o: &mut Optimizer| describe(o));

    register_clip(reg);
}

fn describe(o: &Optimizer) -> String {
    let Ok(core) = o.0.try_borrow() else {
        return "Optimizer(busy)".to_string();
    };
    let groups: Vec<String> = core
        .groups
        .iter()
        .map(|g| {
            let opts: Vec<String> = g
                .options
                .iter()
                .map(|(k, v)| match v {
                    HValue::Num(x) => format!("{k}: {x}"),
                    HValue::Bool(b) => format!("{k}: {b}"),
                    HValue::Pair(a, b) => format!("{k}: [{a}, {b}]"),
                })
                .collect();
            format!("#{{{} params, {}}}", g.params.len(), opts.join(", "))
        })
        .collect();
    format!("{}([{}])", core.name(), groups.join(", "))
}

fn norm_type(d: &Dynamic) -> RResult<f64> {
    if let Ok(s) = d.clone().into_immutable_string() {
        return match s.as_str() {
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            other => Err(err(format!(
                "nn::clip_grad_norm_: norm_type must be a number, \"inf\" or \"-inf\", got \"{other}\""
            ))),
        };
    }
    number(d, "nn::clip_grad_norm_: norm_type")
}

fn params_of(a: &Array, what: &str) -> RResult<Vec<tch::Tensor>> {
    tensors(a, what)
}

fn register_clip(reg: &mut Registry) {
    let doc = "Scales the gradients of `params` in place so their total norm is at most `max_norm`, and returns the total norm before clipping (torch.nn.utils.clip_grad_norm_). Options: `norm_type` (default 2.0; any p, or `\"inf\"`), `error_if_nonfinite` (default false).\n\n```rhai\nlet w = torch::ones([4], #{requires_grad: true});\n(w * 10.0).sum().backward();\nlet total = nn::clip_grad_norm_([w], 1.0);\nprint(total);\nprint(w.grad.norm());\nprint(nn::clip_grad_norm_([w], 1.0, #{norm_type: \"inf\"}));\n```";
    let run = |p: Array, max: f64, m: Map| -> RResult<Tensor> {
        let what = "nn::clip_grad_norm_";
        let o = Opts::new(&m, what, &["norm_type", "error_if_nonfinite"])?;
        let nt = match o.get("norm_type") {
            Some(d) => norm_type(d)?,
            None => 2.0,
        };
        let params = params_of(&p, what)?;
        clip::clip_grad_norm(&params, max, nt, o.bool_or("error_if_nonfinite", false)?).map(Tensor::new).or_script()
    };
    reg.func("nn", "clip_grad_norm_", "params, max_norm", doc, move |p: Array, max: FLOAT| run(p, max, Map::new()));
    reg.func("nn", "clip_grad_norm_", "params, max_norm", doc, move |p: Array, max: INT| {
        run(p, max as f64, Map::new())
    });
    reg.func("nn", "clip_grad_norm_", "params, max_norm, opts", doc, move |p: Array, max: FLOAT, m: Map| {
        run(p, max, m)
    });
    reg.func("nn", "clip_grad_norm_", "params, max_norm, opts", doc, move |p: Array, max: INT, m: Map| {
        run(p, max as f64, m)
    });

    let doc = "Clamps every gradient of `params` into `[-clip_value, clip_value]` in place (torch.nn.utils.clip_grad_value_).\n\n```rhai\nlet w = torch::ones([3], #{requires_grad: true});\n(w * 5.0).sum().backward();\nnn::clip_grad_value_([w], 0.5);\nprint(w.grad);\n```";
    let run = |p: Array, v: f64| -> RResult<()> {
        let params = params_of(&p, "nn::clip_grad_value_")?;
        clip::clip_grad_value(&params, v).or_script()
    };
    reg.func("nn", "clip_grad_value_", "params, clip_value", doc, move |p: Array, v: FLOAT| run(p, v));
    reg.func("nn", "clip_grad_value_", "params, clip_value", doc, move |p: Array, v: INT| run(p, v as f64));
}
