//! Optimizers owned by the host, matching `torch.optim` step for step: parameter groups with
//! per-group options, per-parameter state that a checkpoint can save and restore, and the update
//! rules of SGD, Adam, AdamW, RMSprop, Adagrad, Adamax, NAdam and RAdam over libtorch ops.
//!
//! The core is plain Rust: [`OptimizerCore`] holds the groups and state; [`Optimizer`] is the
//! cheap-clone shared handle that scripts see (`Optimizer`) and the Trainer drives. Each update
//! rule lives in its own file and mirrors PyTorch's single-tensor implementation (the one
//! `torch.optim` runs on CPU by default); Adam and AdamW can instead run ATen's fused multi-tensor
//! kernel (`fused: true`, through `csrc/optim.cpp`).
pub mod adagrad;
pub mod adam;
pub mod adamax;
pub mod api;
pub mod aten;
pub mod clip;
pub mod fused;
pub mod nadam;
pub mod radam;
pub mod rmsprop;
pub mod sgd;

use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;

/// The update rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sgd,
    Adam,
    AdamW,
    RmsProp,
    Adagrad,
    Adamax,
    NAdam,
    RAdam,
}

/// One hyperparameter value of a parameter group.
#[derive(Clone, Debug, PartialEq)]
pub enum HValue {
    Num(f64),
    Bool(bool),
    /// `betas`
    Pair(f64, f64),
}

impl HValue {
    pub fn to_json(&self) -> Value {
        match self {
            HValue::Num(v) => json!(v),
            HValue::Bool(b) => json!(b),
            HValue::Pair(a, b) => json!([a, b]),
        }
    }
    pub fn from_json(v: &Value) -> Option<HValue> {
        match v {
            Value::Number(n) => n.as_f64().map(HValue::Num),
            Value::Bool(b) => Some(HValue::Bool(*b)),
            Value::Array(a) if a.len() == 2 => Some(HValue::Pair(a[0].as_f64()?, a[1].as_f64()?)),
            _ => None,
        }
    }
}

/// Options of a group (or an optimizer's defaults), by PyTorch's keyword names.
pub type Options = BTreeMap<String, HValue>;

impl Algorithm {
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Some(match name {
            "sgd" => Algorithm::Sgd,
            "adam" => Algorithm::Adam,
            "adamw" => Algorithm::AdamW,
            "rmsprop" => Algorithm::RmsProp,
            "adagrad" => Algorithm::Adagrad,
            "adamax" => Algorithm::Adamax,
            "nadam" => Algorithm::NAdam,
            "radam" => Algorithm::RAdam,
            _ => return None,
        })
    }
    /// PyTorch's class name ("Adam"), used for `lr-Adam` keys.
    pub fn class_name(self) -> &'static str {
        match self {
            Algorithm::Sgd => "SGD",
            Algorithm::Adam => "Adam",
            Algorithm::AdamW => "AdamW",
            Algorithm::RmsProp => "RMSprop",
            Algorithm::Adagrad => "Adagrad",
            Algorithm::Adamax => "Adamax",
            Algorithm::NAdam => "NAdam",
            Algorithm::RAdam => "RAdam",
        }
    }
    /// The script name (`optim::adamw`).
    pub fn script_name(self) -> &'static str {
        match self {
            Algorithm::Sgd => "sgd",
            Algorithm::Adam => "adam",
            Algorithm::AdamW => "adamw",
            Algorithm::RmsProp => "rmsprop",
            Algorithm::Adagrad => "adagrad",
            Algorithm::Adamax => "adamax",
            Algorithm::NAdam => "nadam",
            Algorithm::RAdam => "radam",
        }
    }
    /// PyTorch's defaults, in PyTorch's keyword names.
    pub fn defaults(self) -> Vec<(&'static str, HValue)> {
        use HValue::*;
        let betas = Pair(0.9, 0.999);
        match self {
            Algorithm::Sgd => vec![
                ("lr", Num(1e-3)),
                ("momentum", Num(0.0)),
                ("dampening", Num(0.0)),
                ("weight_decay", Num(0.0)),
                ("nesterov", Bool(false)),
                ("maximize", Bool(false)),
            ],
            Algorithm::Adam | Algorithm::AdamW => vec![
                ("lr", Num(1e-3)),
                ("betas", betas),
                ("eps", Num(1e-8)),
                ("weight_decay", Num(if self == Algorithm::AdamW { 1e-2 } else { 0.0 })),
                ("amsgrad", Bool(false)),
                ("maximize", Bool(false)),
                ("fused", Bool(false)),
            ],
            Algorithm::RmsProp => vec![
                ("lr", Num(1e-2)),
                ("alpha", Num(0.99)),
                ("eps", Num(1e-8)),
                ("weight_decay", Num(0.0)),
                ("momentum", Num(0.0)),
                ("centered", Bool(false)),
                ("maximize", Bool(false)),
            ],
            Algorithm::Adagrad => vec![
                ("lr", Num(1e-2)),
                ("lr_decay", Num(0.0)),
                ("weight_decay", Num(0.0)),
                ("initial_accumulator_value", Num(0.0)),
                ("eps", Num(1e-10)),
                ("maximize", Bool(false)),
            ],
            Algorithm::Adamax => vec![
                ("lr", Num(2e-3)),
                ("betas", betas),
                ("eps", Num(1e-8)),
                ("weight_decay", Num(0.0)),
                ("maximize", Bool(false)),
            ],
            Algorithm::NAdam => vec![
                ("lr", Num(2e-3)),
                ("betas", betas),
                ("eps", Num(1e-8)),
                ("weight_decay", Num(0.0)),
                ("momentum_decay", Num(4e-3)),
                ("decoupled_weight_decay", Bool(false)),
                ("maximize", Bool(false)),
            ],
            Algorithm::RAdam => vec![
                ("lr", Num(1e-3)),
                ("betas", betas),
                ("eps", Num(1e-8)),
                ("weight_decay", Num(0.0)),
                ("decoupled_weight_decay", Bool(false)),
                ("maximize", Bool(false)),
            ],
        }
    }
    /// The option keys a constructor accepts.
    pub fn option_keys(self) -> Vec<&'static str> {
        self.defaults().into_iter().map(|(k, _)| k).collect()
    }
}

/// True for a negative number or NaN (a NaN option value is as invalid as a negative one).
fn negative_or_nan(x: f64) -> bool {
    x.is_nan() || x < 0.0
}
/// Checks one option value: its type against the default's, and PyTorch's range checks.
pub fn check_option(algo: Algorithm, key: &str, v: &HValue) -> Result<(), String> {
    let what = format!("optim::{}", algo.script_name());
    let default = algo.defaults().into_iter().find(|(k, _)| *k == key).map(|(_, v)| v);
    if let Some(d) = &default {
        let same = matches!(
            (d, v),
            (HValue::Num(_), HValue::Num(_))
                | (HValue::Bool(_), HValue::Bool(_))
                | (HValue::Pair(..), HValue::Pair(..))
        );
        if !same {
            let want = match d {
                HValue::Num(_) => "a number",
                HValue::Bool(_) => "a bool",
                HValue::Pair(..) => "a pair of numbers like [0.9, 0.999]",
            };
            return Err(format!("{what}: option '{key}' must be {want}"));
        }
    }
    match (key, v) {
        ("lr", HValue::Num(x)) if negative_or_nan(*x) => {
            Err(format!("{what}: invalid learning rate: {x} (must be >= 0)"))
        }
        ("eps", HValue::Num(x)) if negative_or_nan(*x) => {
            Err(format!("{what}: invalid epsilon value: {x} (must be >= 0)"))
        }
        ("weight_decay", HValue::Num(x)) if negative_or_nan(*x) => {
            Err(format!("{what}: invalid weight_decay value: {x} (must be >= 0)"))
        }
        ("momentum", HValue::Num(x)) if negative_or_nan(*x) => {
            Err(format!("{what}: invalid momentum value: {x} (must be >= 0)"))
        }
        ("alpha", HValue::Num(x)) if negative_or_nan(*x) => {
            Err(format!("{what}: invalid alpha value: {x} (must be >= 0)"))
        }
        ("lr_decay", HValue::Num(x)) if negative_or_nan(*x) => {
            Err(format!("{what}: invalid lr_decay value: {x} (must be >= 0)"))
        }
        ("momentum_decay", HValue::Num(x)) if negative_or_nan(*x) => {
            Err(format!("{what}: invalid momentum_decay value: {x} (must be >= 0)"))
        }
        ("initial_accumulator_value", HValue::Num(x)) if negative_or_nan(*x) => {
            Err(format!("{what}: invalid initial_accumulator_value: {x} (must be >= 0)"))
        }
        ("betas", HValue::Pair(a, b)) => {
            if !(0.0..1.0).contains(a) {
                Err(format!("{what}: invalid beta parameter at index 0: {a} (must be in [0, 1))"))
            } else if !(0.0..1.0).contains(b) {
                Err(format!("{what}: invalid beta parameter at index 1: {b} (must be in [0, 1))"))
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// Checks the options of a whole group (combinations PyTorch refuses).
pub(crate) fn check_group(algo: Algorithm, o: &Options) -> Result<(), String> {
    for (k, v) in o {
        check_option(algo, k, v)?;
    }
    if algo == Algorithm::Sgd && o.get("nesterov") == Some(&HValue::Bool(true)) {
        let m = o.get("momentum").and_then(num).unwrap_or(0.0);
        let d = o.get("dampening").and_then(num).unwrap_or(0.0);
        if m <= 0.0 || d != 0.0 {
            return Err("optim::sgd: nesterov momentum requires a momentum and zero dampening".into());
        }
    }
    Ok(())
}

fn num(v: &HValue) -> Option<f64> {
    match v {
        HValue::Num(x) => Some(*x),
        _ => None,
    }
}

/// A parameter group: tensors (sharing storage with the model's) and their options.
pub struct ParamGroup {
    pub params: Vec<tch::Tensor>,
    pub options: Options,
}

impl ParamGroup {
    pub fn f(&self, key: &str) -> Result<f64, String> {
        match self.options.get(key) {
            Some(HValue::Num(x)) => Ok(*x),
            Some(_) => Err(format!("param group option '{key}' is not a number")),
            None => Err(format!("param group has no option '{key}'")),
        }
    }
    pub fn b(&self, key: &str) -> Result<bool, String> {
        match self.options.get(key) {
            Some(HValue::Bool(x)) => Ok(*x),
            Some(_) => Err(format!("param group option '{key}' is not a bool")),
            None => Err(format!("param group has no option '{key}'")),
        }
    }
    pub fn pair(&self, key: &str) -> Result<(f64, f64), String> {
        match self.options.get(key) {
            Some(HValue::Pair(a, b)) => Ok((*a, *b)),
            Some(_) => Err(format!("param group option '{key}' is not a pair")),
            None => Err(format!("param group has no option '{key}'")),
        }
    }
}

/// State of one parameter: the step count and the named buffers (`exp_avg`, `momentum_buffer`…).
#[derive(Default)]
pub struct ParamState {
    pub step: f64,
    pub buffers: BTreeMap<String, tch::Tensor>,
}

impl ParamState {
    pub fn buf(&self, key: &str) -> Result<&tch::Tensor, String> {
        self.buffers.get(key).ok_or_else(|| format!("optimizer state has no '{key}'"))
    }
}

/// The optimizer itself: algorithm, groups, per-parameter state (by flat parameter index across
/// groups, as in PyTorch's state_dict).
pub struct OptimizerCore {
    pub algorithm: Algorithm,
    pub defaults: Options,
    pub groups: Vec<ParamGroup>,
    pub state: Vec<Option<ParamState>>,
    /// Step-count tensors for the fused kernel (on the parameters' devices), kept in sync with
    /// `ParamState::step`; rebuilt when missing.
    fused_steps: Vec<Option<tch::Tensor>>,
    /// Number of `step()` calls so far (the Trainer's global_step under manual optimization).
    pub steps_taken: usize,
}

pub(crate) fn terr(e: tch::TchError) -> String {
    crate::tensor::clean_torch_message(&e.to_string())
}

/// `.e()?`: a tch result with its error as a clean message.
pub(crate) trait TchResult<T> {
    fn e(self) -> Result<T, String>;
}

impl<T> TchResult<T> for Result<T, tch::TchError> {
    fn e(self) -> Result<T, String> {
        self.map_err(terr)
    }
}

/// A new state buffer of zeros shaped like `p` (same dtype, device and memory format).
pub(crate) fn zeros_like(p: &tch::Tensor) -> Result<tch::Tensor, String> {
    p.f_zeros_like().e()
}

/// Fills missing group options from the defaults and checks them.
fn complete_group(algo: Algorithm, defaults: &Options, mut options: Options) -> Result<Options, String> {
    for (k, v) in defaults {
        options.entry(k.clone()).or_insert_with(|| v.clone());
    }
    check_group(algo, &options)?;
    Ok(options)
}

impl OptimizerCore {
    /// Builds an optimizer. `groups` are (parameters, options given for that group); `defaults`
    /// are the options given for the whole optimizer (PyTorch's keyword arguments).
    pub fn new(
        algorithm: Algorithm,
        groups: Vec<(Vec<tch::Tensor>, Options)>,
        defaults: Options,
    ) -> Result<Self, String> {
        let what = format!("optim::{}", algorithm.script_name());
        let mut full: Options = algorithm.defaults().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        for (k, v) in defaults {
            full.insert(k, v);
        }
        check_group(algorithm, &full)?;
        if groups.is_empty() {
            return Err(format!("{what}: got an empty parameter list"));
        }
        let mut core = OptimizerCore {
            algorithm,
            defaults: full,
            groups: vec![],
            state: vec![],
            fused_steps: vec![],
            steps_taken: 0,
        };
        for (params, opts) in groups {
            core.add_param_group(params, opts)?;
        }
        Ok(core)
    }

    /// Adds a group (PyTorch's `add_param_group`): a parameter may belong to one group only.
    pub fn add_param_group(&mut self, params: Vec<tch::Tensor>, options: Options) -> Result<(), String> {
        let what = format!("optim::{}", self.algorithm.script_name());
        if params.is_empty() {
            return Err(format!("{what}: parameter group {} has no parameters", self.groups.len()));
        }
        let mut seen: HashSet<usize> = self.groups.iter().flat_map(|g| g.params.iter().map(impl_id)).collect();
        for (i, p) in params.iter().enumerate() {
            if !p.is_floating_point() && !p.is_complex() {
                return Err(format!(
                    "{what}: can only optimize floating point tensors, but parameter {i} of group {} has dtype {:?}",
                    self.groups.len(),
                    p.kind()
                ));
            }
            if p.is_complex() {
                return Err(format!("{what}: complex parameters are not supported"));
            }
            if !seen.insert(impl_id(p)) {
                return Err(format!(
                    "{what}: some parameters appear in more than one parameter group (parameter {i} of group {})",
                    self.groups.len()
                ));
            }
        }
        let options = complete_group(self.algorithm, &self.defaults, options)?;
        for _ in &params {
            self.state.push(None);
            self.fused_steps.push(None);
        }
        self.groups.push(ParamGroup { params: params.iter().map(|p| p.shallow_clone()).collect(), options });
        Ok(())
    }

    pub fn name(&self) -> &'static str {
        self.algorithm.class_name()
    }

    /// Every parameter, in order.
    pub fn params(&self) -> Vec<tch::Tensor> {
        self.groups.iter().flat_map(|g| g.params.iter().map(|p| p.shallow_clone())).collect()
    }

    pub fn lrs(&self) -> Vec<f64> {
        self.groups.iter().map(|g| g.f("lr").unwrap_or(f64::NAN)).collect()
    }

    pub fn set_lr(&mut self, group: usize, lr: f64) -> Result<(), String> {
        self.set_option(group, "lr", HValue::Num(lr))
    }

    pub fn option(&self, group: usize, key: &str) -> Option<HValue> {
        self.groups.get(group).and_then(|g| g.options.get(key).cloned())
    }

    /// Sets one group option by name (checked like a constructor option).
    pub fn set_option(&mut self, group: usize, key: &str, v: HValue) -> Result<(), String> {
        let n = self.groups.len();
        let algo = self.algorithm;
        let g = self.groups.get_mut(group).ok_or_else(|| format!("param group {group} does not exist ({n} groups)"))?;
        check_option(algo, key, &v)?;
        let mut o = g.options.clone();
        o.insert(key.to_string(), v);
        check_group(algo, &o)?;
        g.options = o;
        Ok(())
    }

    /// Clears gradients: sets them to none (undefined), or zeroes them in place.
    pub fn zero_grad(&mut self, set_to_none: bool) {
        for g in &self.groups {
            for p in &g.params {
                let mut grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                if set_to_none {
                    zero_grad_to_none(p);
                } else {
                    let _guard = tch::no_grad_guard();
                    let _ = grad.f_zero_();
                }
            }
        }
    }

    /// One optimization step over every parameter that has a gradient.
    pub fn step(&mut self) -> Result<(), String> {
        let _guard = tch::no_grad_guard();
        let mut offset = 0;
        for gi in 0..self.groups.len() {
            let n = self.groups[gi].params.len();
            let group = &self.groups[gi];
            let mut idx = Vec::with_capacity(n);
            let mut grads = Vec::with_capacity(n);
            for (i, p) in group.params.iter().enumerate() {
                let g = p.grad();
                if g.defined() {
                    if g.is_sparse() {
                        return Err(format!("{} does not support sparse gradients", self.algorithm.class_name()));
                    }
                    idx.push(offset + i);
                    grads.push(g);
                }
            }
            if !idx.is_empty() {
                let params: Vec<tch::Tensor> = idx.iter().map(|&i| group.params[i - offset].shallow_clone()).collect();
                let fused = matches!(self.algorithm, Algorithm::Adam | Algorithm::AdamW) && group.b("fused")?;
                if fused {
                    fused::adam_step(self, gi, &idx, &params, &grads)?;
                } else {
                    for (k, &i) in idx.iter().enumerate() {
                        self.fused_steps[i] = None;
                        let state = self.state[i].get_or_insert_with(ParamState::default);
                        let group = &self.groups[gi];
                        let (p, g) = (&params[k], &grads[k]);
                        match self.algorithm {
                            Algorithm::Sgd => sgd::step(group, state, p, g),
                            Algorithm::Adam => adam::step(group, state, p, g, false),
                            Algorithm::AdamW => adam::step(group, state, p, g, true),
                            Algorithm::RmsProp => rmsprop::step(group, state, p, g),
                            Algorithm::Adagrad => adagrad::step(group, state, p, g),
                            Algorithm::Adamax => adamax::step(group, state, p, g),
                            Algorithm::NAdam => nadam::step(group, state, p, g),
                            Algorithm::RAdam => radam::step(group, state, p, g),
                        }?;
                    }
                }
            }
            offset += n;
        }
        self.steps_taken += 1;
        Ok(())
    }

    /// PyTorch-style state dict: the state tensors named `state.<flat index>.<name>` (the step
    /// count as a 0-dim float32 tensor `state.<i>.step`, as PyTorch stores it), and JSON with
    /// the optimizer name, `param_groups` (options + flat `params` indices) and `defaults`.
    pub fn state_dict(&self) -> (Vec<(String, tch::Tensor)>, Value) {
        let mut tensors = Vec::new();
        for (i, s) in self.state.iter().enumerate() {
            if let Some(s) = s {
                if self.algorithm != Algorithm::Sgd {
                    tensors.push((format!("state.{i}.step"), tch::Tensor::from(s.step as f32)));
                }
                for (k, t) in &s.buffers {
                    tensors.push((format!("state.{i}.{k}"), t.shallow_clone()));
                }
            }
        }
        let mut offset = 0;
        let groups: Vec<Value> = self
            .groups
            .iter()
            .map(|g| {
                let mut m = serde_json::Map::new();
                for (k, v) in &g.options {
                    m.insert(k.clone(), v.to_json());
                }
                m.insert("params".into(), json!((offset..offset + g.params.len()).collect::<Vec<_>>()));
                offset += g.params.len();
                Value::Object(m)
            })
            .collect();
        let defaults: serde_json::Map<String, Value> =
            self.defaults.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
        (tensors, json!({"optimizer": self.name(), "param_groups": groups, "defaults": defaults}))
    }

    /// Restores a [`OptimizerCore::state_dict`]: group options, and state tensors copied onto each
    /// parameter's device and dtype. Fails without changing anything when the optimizer kind,
    /// group count, per-group parameter count or a state shape differ.
    pub fn load_state_dict(&mut self, tensors: &[(String, tch::Tensor)], meta: &Value) -> Result<(), String> {
        let what = "load_state_dict";
        if let Some(name) = meta.get("optimizer").and_then(Value::as_str) {
            if name != self.name() {
                return Err(format!("{what}: the state is of a {name} optimizer, this is {}", self.name()));
            }
        }
        let groups = meta
            .get("param_groups")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{what}: missing 'param_groups'"))?;
        if groups.len() != self.groups.len() {
            return Err(format!(
                "{what}: loaded state dict has {} parameter groups, the optimizer has {}",
                groups.len(),
                self.groups.len()
            ));
        }
        let mut new_opts = Vec::new();
        for (gi, (g, mine)) in groups.iter().zip(&self.groups).enumerate() {
            let obj = g.as_object().ok_or_else(|| format!("{what}: param_groups[{gi}] is not an object"))?;
            let n = obj.get("params").and_then(Value::as_array).map(|a| a.len());
            if n != Some(mine.params.len()) {
                return Err(format!(
                    "{what}: parameter group {gi} has {} parameters in the loaded state, {} in the optimizer",
                    n.map_or("no".to_string(), |n| n.to_string()),
                    mine.params.len()
                ));
            }
            let mut o = Options::new();
            for (k, v) in obj {
                if k == "params" || v.is_null() {
                    continue;
                }
                let hv = HValue::from_json(v)
                    .ok_or_else(|| format!("{what}: param_groups[{gi}].{k} has an unsupported value {v}"))?;
                o.insert(k.clone(), hv);
            }
            let o = complete_group(self.algorithm, &self.defaults, o)
                .map_err(|e| format!("{what}: param_groups[{gi}]: {e}"))?;
            new_opts.push(o);
        }
        let params = self.params();
        let mut new_state: Vec<Option<ParamState>> = (0..params.len()).map(|_| None).collect();
        for (name, t) in tensors {
            let rest = name.strip_prefix("state.").ok_or_else(|| format!("{what}: unexpected tensor name '{name}'"))?;
            let (i, key) = rest.split_once('.').ok_or_else(|| format!("{what}: unexpected tensor name '{name}'"))?;
            let i: usize = i.parse().map_err(|_| format!("{what}: unexpected tensor name '{name}'"))?;
            let p = params.get(i).ok_or_else(|| {
                format!("{what}: state for parameter {i}, but the optimizer has {} parameters", params.len())
            })?;
            let s = new_state[i].get_or_insert_with(ParamState::default);
            if key == "step" {
                s.step = t.f_double_value(&[]).map_err(terr)?;
                continue;
            }
            let shape_ok = key == "mu_product" || t.size() == p.size();
            if !shape_ok {
                return Err(format!(
                    "{what}: state '{name}' has shape {:?}, parameter {i} has shape {:?}",
                    t.size(),
                    p.size()
                ));
            }
            let v = if key == "mu_product" {
                t.f_to_kind(tch::Kind::Float).map_err(terr)?.f_detach_copy().map_err(terr)?
            } else {
                t.f_to_device(p.device())
                    .map_err(terr)?
                    .f_to_kind(p.kind())
                    .map_err(terr)?
                    .f_detach_copy()
                    .map_err(terr)?
            };
            s.buffers.insert(key.to_string(), v);
        }
        for (g, o) in self.groups.iter_mut().zip(new_opts) {
            g.options = o;
        }
        self.state = new_state;
        self.fused_steps = (0..params.len()).map(|_| None).collect();
        Ok(())
    }
}

/// Identity of the TensorImpl behind a tensor (two handles on the same tensor agree).
/// The identity of a tensor's storage-owning implementation (two handles of one parameter agree).
pub fn impl_id(t: &tch::Tensor) -> usize {
    extern "C" {
        fn lt_tensor_impl_id(t: *const std::ffi::c_void) -> usize;
    }
    // SAFETY: tch's C_tensor pointer is an `at::Tensor*`; the function only reads its impl pointer.
    unsafe { lt_tensor_impl_id(t.as_ptr() as *const _) }
}

/// `p.grad = None`.
/// Sets a parameter's gradient to None (`p.grad = None`).
pub fn zero_grad_to_none(p: &tch::Tensor) {
    extern "C" {
        fn lt_reset_grad(t: *const std::ffi::c_void);
    }
    // SAFETY: as above; the C++ side catches every exception.
    unsafe { lt_reset_grad(p.as_ptr() as *const _) }
}

const BUSY: &str = "the optimizer is busy (in the middle of a step)";

/// The shared optimizer handle: what scripts hold as `Optimizer` and what the Trainer drives.
///
/// Cloning is cheap and shares the optimizer (the script's `configure_optimizers` result and the
/// Trainer hold the same object). Trainer use: `opt.zero_grad(true)` before backward (or after
/// the step), then gradient clipping over `opt.params()` (see [`clip`]), then `opt.step()?`;
/// `LearningRateMonitor` reads `opt.lrs()` under the key `lr-{opt.name()}`; checkpoints save
/// `opt.state_dict()` and restore with `opt.load_state_dict(..)`. Downcast a script value with
/// `dynamic.try_cast::<Optimizer>()`.
#[derive(Clone)]
pub struct Optimizer(pub Rc<RefCell<OptimizerCore>>);

impl Optimizer {
    pub fn new(core: OptimizerCore) -> Self {
        Optimizer(Rc::new(RefCell::new(core)))
    }
    pub fn step(&self) -> Result<(), String> {
        self.0.try_borrow_mut().map_err(|_| BUSY.to_string())?.step()
    }
    pub fn zero_grad(&self, set_to_none: bool) {
        if let Ok(mut c) = self.0.try_borrow_mut() {
            c.zero_grad(set_to_none)
        }
    }
    // While a step runs (no script code runs then) the core is borrowed: readers get empty
    // values and writers an error rather than a panic.
    pub fn params(&self) -> Vec<tch::Tensor> {
        self.0.try_borrow().map(|c| c.params()).unwrap_or_default()
    }
    pub fn lrs(&self) -> Vec<f64> {
        self.0.try_borrow().map(|c| c.lrs()).unwrap_or_default()
    }
    pub fn set_lr(&self, group: usize, lr: f64) -> Result<(), String> {
        self.0.try_borrow_mut().map_err(|_| BUSY.to_string())?.set_lr(group, lr)
    }
    pub fn option(&self, group: usize, key: &str) -> Option<HValue> {
        self.0.try_borrow().ok().and_then(|c| c.option(group, key))
    }
    pub fn set_option(&self, group: usize, key: &str, v: HValue) -> Result<(), String> {
        self.0.try_borrow_mut().map_err(|_| BUSY.to_string())?.set_option(group, key, v)
    }
    pub fn num_groups(&self) -> usize {
        self.0.try_borrow().map(|c| c.groups.len()).unwrap_or(0)
    }
    pub fn name(&self) -> &'static str {
        self.0.try_borrow().map(|c| c.name()).unwrap_or("Optimizer")
    }
    pub fn state_dict(&self) -> (Vec<(String, tch::Tensor)>, Value) {
        self.0.try_borrow().map(|c| c.state_dict()).unwrap_or_else(|_| (vec![], Value::Null))
    }
    pub fn load_state_dict(&self, tensors: &[(String, tch::Tensor)], meta: &Value) -> Result<(), String> {
        self.0.try_borrow_mut().map_err(|_| BUSY.to_string())?.load_state_dict(tensors, meta)
    }
    /// True when both handles name the same optimizer.
    pub fn same(&self, other: &Optimizer) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}
