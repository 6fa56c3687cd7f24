//! Module trees: finding, naming, loading and moving the parameters of a model that is a Rhai
//! value (maps of modules, arrays of modules, nested to any depth).
//!
//! Rules (the same for the Trainer, optimizers and scripts):
//! - A map entry whose key starts with `_` is hidden metadata, and function pointers are code:
//!   the walker skips both.
//! - A map may list its own parameters in `_params` and buffers in `_buffers` (native layers do).
//!   A listed parameter stays a parameter when frozen (`requires_grad` false).
//! - Any other tensor stored directly in a map counts as a parameter when it `requires_grad` (like
//!   assigning an `nn.Parameter` in PyTorch); other tensors are plain attributes.
//! - Maps and arrays are walked recursively; names join keys and array indices with dots, as
//!   PyTorch does (`encoder.layers.0.weight`). A map may name entries in `_inline` whose contents
//!   are named as if they were the map's own (`nn::sequential` keeps its children in `layers` but
//!   names them `0`, `1`, … like `nn.Sequential`).
//! - Order: within one map, listed parameters first (in `_params` order), then listed buffers,
//!   then the other entries in sorted key order (Rhai maps are sorted, so the insertion order of a
//!   script's `#{…}` literal is not known); arrays in index order. Names, not order, are what
//!   `load_state_dict` and checkpoints match on.
//! - A map is a *module* (for `train()`/`eval()`, `apply`, the summary) when it has a `_type` or a
//!   `forward` entry; the root is always one.
use crate::tensor::Tensor;
use rhai::{Array, Dynamic, FnPtr, Map};
use std::collections::HashSet;

/// Deeper than this, a tree is taken to be a cycle made of shared values.
const MAX_DEPTH: usize = 200;

fn too_deep(prefix: &str) -> String {
    format!("module tree deeper than {MAX_DEPTH} levels at '{prefix}' (a module containing itself?)")
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The strings of the array entry `key` of `m` (empty when absent).
pub fn str_list(m: &Map, key: &str) -> Vec<String> {
    match m.get(key).and_then(|d| d.read_lock::<Array>().map(|a| a.clone())) {
        Some(a) => a.iter().filter_map(|v| v.clone().into_immutable_string().ok().map(|s| s.to_string())).collect(),
        None => Vec::new(),
    }
}

/// True for a map that is a module (has `_type` or `forward`).
pub fn is_module(m: &Map) -> bool {
    m.contains_key("_type") || m.contains_key("forward")
}

/// The `_type` of a module map: `"Linear"`, …; script-composed maps without one are `"Module"`.
pub fn type_name(m: &Map) -> String {
    m.get("_type")
        .and_then(|d| d.clone().into_immutable_string().ok())
        .map(|s| s.to_string())
        .unwrap_or_else(|| "Module".to_string())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Param,
    Buffer,
}

/// Calls `f(name, tensor, role)` for every parameter and buffer under `d`, in walker order.
pub fn walk_tensors(d: &Dynamic, f: &mut dyn FnMut(&str, &Tensor, Role)) -> Result<(), String> {
    walk(d, "", 0, f)
}

fn walk(d: &Dynamic, prefix: &str, depth: usize, f: &mut dyn FnMut(&str, &Tensor, Role)) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(too_deep(prefix));
    }
    if let Some(m) = d.read_lock::<Map>() {
        walk_map(&m, prefix, depth, f)
    } else if let Some(a) = d.read_lock::<Array>() {
        for (i, v) in a.iter().enumerate() {
            walk(v, &join(prefix, &i.to_string()), depth + 1, f)?;
        }
        Ok(())
    } else {
        Ok(())
    }
}

/// Walks a map's own tensors and its children.
pub fn walk_map(m: &Map, prefix: &str, depth: usize, f: &mut dyn FnMut(&str, &Tensor, Role)) -> Result<(), String> {
    let params = str_list(m, "_params");
    let buffers = str_list(m, "_buffers");
    let inline = str_list(m, "_inline");
    for (list, role) in [(&params, Role::Param), (&buffers, Role::Buffer)] {
        for k in list.iter() {
            if let Some(t) = m.get(k.as_str()).and_then(|v| v.read_lock::<Tensor>().map(|t| t.clone())) {
                f(&join(prefix, k), &t, role);
            }
        }
    }
    for (k, v) in m.iter() {
        let k = k.as_str();
        if k.starts_with('_') || v.is_fnptr() || params.iter().any(|p| p == k) || buffers.iter().any(|b| b == k) {
            continue;
        }
        if let Some(t) = v.read_lock::<Tensor>() {
            if t.requires_grad() {
                f(&join(prefix, k), &t, Role::Param);
            }
            continue;
        }
        let child_prefix = if inline.iter().any(|i| i == k) { prefix.to_string() } else { join(prefix, k) };
        walk(v, &child_prefix, depth + 1, f)?;
    }
    Ok(())
}

/// Parameters with their dotted names; a tensor reachable under two names is listed once, under
/// the first (like PyTorch's `named_parameters`).
pub fn named_parameters(d: &Dynamic) -> Result<Vec<(String, Tensor)>, String> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    walk_tensors(d, &mut |name, t, role| {
        if role == Role::Param && seen.insert(std::rc::Rc::as_ptr(&t.0) as usize) {
            out.push((name.to_string(), t.clone()));
        }
    })?;
    Ok(out)
}

/// The parameters, in walker order, each once.
pub fn parameters(d: &Dynamic) -> Result<Vec<Tensor>, String> {
    Ok(named_parameters(d)?.into_iter().map(|(_, t)| t).collect())
}

/// Buffers (running statistics …) with their dotted names.
pub fn named_buffers(d: &Dynamic) -> Result<Vec<(String, Tensor)>, String> {
    let mut out = Vec::new();
    walk_tensors(d, &mut |name, t, role| {
        if role == Role::Buffer {
            out.push((name.to_string(), t.clone()));
        }
    })?;
    Ok(out)
}

/// Parameters and buffers by name, detached (sharing storage with the model, like PyTorch's
/// `state_dict`). A tied tensor appears under each of its names.
pub fn state_dict(d: &Dynamic) -> Result<Vec<(String, Tensor)>, String> {
    let mut out = Vec::new();
    let mut fail = None;
    walk_tensors(d, &mut |name, t, _| match t.f_detach() {
        Ok(x) => out.push((name.to_string(), Tensor::new(x))),
        Err(e) => fail = Some(format!("state_dict: {name}: {}", crate::tensor::clean_torch_message(&e.to_string()))),
    })?;
    match fail {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// What `load_state_dict` found.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub missing_keys: Vec<String>,
    pub unexpected_keys: Vec<String>,
    /// `(name, expected shape, shape in the file)`
    pub shape_mismatches: Vec<(String, Vec<i64>, Vec<i64>)>,
}

impl LoadReport {
    pub fn is_clean(&self) -> bool {
        self.missing_keys.is_empty() && self.unexpected_keys.is_empty() && self.shape_mismatches.is_empty()
    }

    /// PyTorch-style description of the problems.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.missing_keys.is_empty() {
            parts.push(format!("Missing key(s) in state_dict: {}.", quoted(&self.missing_keys)));
        }
        if !self.unexpected_keys.is_empty() {
            parts.push(format!("Unexpected key(s) in state_dict: {}.", quoted(&self.unexpected_keys)));
        }
        for (n, want, got) in &self.shape_mismatches {
            parts.push(format!(
                "size mismatch for {n}: copying a param with shape {got:?} from checkpoint, the shape in current model is {want:?}."
            ));
        }
        parts.join(" ")
    }
}

fn quoted(v: &[String]) -> String {
    v.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")
}

/// Copies `sd`'s values into the model's existing tensors in place (under no_grad), so optimizers
/// holding those tensors keep working. Nothing is copied when a shape differs, or, with `strict`,
/// when a key is missing or unexpected: the error then lists every problem. Dtype and device are
/// converted to the model's.
pub fn load_state_dict(d: &Dynamic, sd: &[(String, tch::Tensor)], strict: bool) -> Result<LoadReport, String> {
    let own = state_dict(d)?;
    let mut report = LoadReport::default();
    let given: std::collections::HashMap<&str, &tch::Tensor> = sd.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let own_names: HashSet<&str> = own.iter().map(|(k, _)| k.as_str()).collect();
    // tied tensors (one tensor under several names, like GPT-2's lm_head.weight and wte.weight):
    // a name the file lacks is filled when another name of the same tensor is in it
    let mut identity = std::collections::HashMap::new();
    walk_tensors(d, &mut |name, t, _| {
        identity.insert(name.to_string(), std::rc::Rc::as_ptr(&t.0) as usize);
    })?;
    let tied_given = |name: &str| {
        identity.get(name).is_some_and(|id| {
            identity.iter().any(|(other, oid)| other != name && oid == id && given.contains_key(other.as_str()))
        })
    };
    let mut copies = Vec::new();
    for (name, t) in &own {
        match given.get(name.as_str()) {
            None if tied_given(name) => {}
            None => report.missing_keys.push(name.clone()),
            Some(src) => {
                if src.size() != t.size() {
                    report.shape_mismatches.push((name.clone(), t.size(), src.size()));
                } else {
                    copies.push((t, *src));
                }
            }
        }
    }
    for (k, _) in sd {
        if !own_names.contains(k.as_str()) {
            report.unexpected_keys.push(k.clone());
        }
    }
    if !report.shape_mismatches.is_empty() || (strict && !report.is_clean()) {
        return Err(format!("Error(s) in loading state_dict: {}", report.describe()));
    }
    let _guard = tch::no_grad_guard();
    for (dst, src) in copies {
        dst.handle()
            .f_copy_(src)
            .map_err(|e| format!("load_state_dict: {}", crate::tensor::clean_torch_message(&e.to_string())))?;
    }
    Ok(report)
}

/// A copy of a module tree with tensors of its own holding the same values (`copy.deepcopy`):
/// parameters stay parameters, and a tensor shared by two entries is copied once, so the copy is
/// tied where the original is.
pub fn deep_copy(d: &Dynamic) -> Result<Dynamic, String> {
    let mut copied = std::collections::HashMap::new();
    deep_copy_at(d, "", 0, &mut copied)
}

fn deep_copy_at(
    d: &Dynamic,
    prefix: &str,
    depth: usize,
    copied: &mut std::collections::HashMap<usize, Tensor>,
) -> Result<Dynamic, String> {
    if depth > MAX_DEPTH {
        return Err(too_deep(prefix));
    }
    if let Some(m) = d.read_lock::<Map>() {
        let mut out = Map::new();
        for (k, v) in m.iter() {
            out.insert(k.clone(), deep_copy_at(v, &join(prefix, k), depth + 1, copied)?);
        }
        return Ok(Dynamic::from_map(out));
    }
    if let Some(a) = d.read_lock::<Array>() {
        let out = a
            .iter()
            .enumerate()
            .map(|(i, v)| deep_copy_at(v, &join(prefix, &i.to_string()), depth + 1, copied))
            .collect::<Result<Array, String>>()?;
        return Ok(Dynamic::from_array(out));
    }
    if let Some(t) = d.read_lock::<Tensor>() {
        let id = std::rc::Rc::as_ptr(&t.0) as usize;
        if let Some(c) = copied.get(&id) {
            return Ok(Dynamic::from(c.clone()));
        }
        // under no_grad the copy is a leaf (detach_copy has no derivative to record)
        let _no_grad = tch::no_grad_guard();
        let c = t
            .f_detach_copy()
            .map_err(|e| format!("copying {prefix}: {}", crate::tensor::clean_torch_message(&e.to_string())))?
            .set_requires_grad(t.requires_grad());
        let c = Tensor::new(c);
        copied.insert(id, c.clone());
        return Ok(Dynamic::from(c));
    }
    Ok(d.clone())
}

/// Calls `f(path, map)` on every module map under `d` (pre-order, root first with path "").
pub fn walk_modules_mut(d: &mut Dynamic, f: &mut dyn FnMut(&str, &mut Map)) -> Result<(), String> {
    try_walk_modules_mut(d, false, &mut |path, m| {
        f(path, m);
        Ok(())
    })
}

/// Calls `f(path, map)` on every module map under `d`, pre-order (root first, path "") or
/// `post`-order (children first, as `Module.apply`); the first error of `f` ends the walk.
pub fn try_walk_modules_mut(
    d: &mut Dynamic,
    post: bool,
    f: &mut dyn FnMut(&str, &mut Map) -> Result<(), String>,
) -> Result<(), String> {
    type Visit<'a> = dyn FnMut(&str, &mut Map) -> Result<(), String> + 'a;
    fn go(d: &mut Dynamic, prefix: &str, depth: usize, root: bool, post: bool, f: &mut Visit) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(too_deep(prefix));
        }
        if d.is_map() {
            if let Some(mut m) = d.write_lock::<Map>() {
                return go_map(&mut m, prefix, depth, root, post, f);
            }
        } else if d.is_array() {
            if let Some(mut a) = d.write_lock::<Array>() {
                for (i, v) in a.iter_mut().enumerate() {
                    go(v, &join(prefix, &i.to_string()), depth + 1, false, post, f)?;
                }
            }
        }
        Ok(())
    }
    fn go_map(m: &mut Map, prefix: &str, depth: usize, root: bool, post: bool, f: &mut Visit) -> Result<(), String> {
        let me = root || is_module(m);
        if me && !post {
            f(prefix, m)?;
        }
        let inline = str_list(m, "_inline");
        for (k, v) in m.iter_mut() {
            if k.starts_with('_') || v.is_fnptr() || !(v.is_map() || v.is_array()) {
                continue;
            }
            let p = if inline.iter().any(|i| i == k.as_str()) { prefix.to_string() } else { join(prefix, k) };
            go(v, &p, depth + 1, false, post, f)?;
        }
        if me && post {
            f(prefix, m)?;
        }
        Ok(())
    }
    go(d, "", 0, true, post, f)
}

/// Sets `training` on every module (what `train()` / `eval()` do) and records each module's
/// dotted path in `_path`, which layers use to name themselves in errors.
pub fn set_training(d: &mut Dynamic, mode: bool) -> Result<(), String> {
    walk_modules_mut(d, &mut |path, m| {
        m.insert("training".into(), Dynamic::from_bool(mode));
        if !path.is_empty() {
            m.insert("_path".into(), Dynamic::from(path.to_string()));
        }
    })
}

/// The batch-norm layers (`_type` `BatchNorm1d/2d/3d` tracking running statistics) in walker
/// order: resets their running statistics (mean 0, var 1, count 0) and sets their momentum
/// (`None`: a cumulative average). Returns the previous momenta. For SWA's `update_bn`.
pub fn reset_batch_norm(d: &mut Dynamic, momentum: Option<f64>) -> Result<Vec<Option<f64>>, String> {
    let mut old = Vec::new();
    let mut fail = None;
    walk_modules_mut(d, &mut |_, m| {
        if !is_batch_norm(m) {
            return;
        }
        old.push(m.get("momentum").and_then(|v| v.as_float().ok()));
        m.insert("momentum".into(), momentum.map(Dynamic::from_float).unwrap_or(Dynamic::UNIT));
        let _g = tch::no_grad_guard();
        for (k, v) in [("running_mean", 0.0), ("running_var", 1.0), ("num_batches_tracked", 0.0)] {
            if let Some(t) = m.get(k).and_then(|x| x.read_lock::<Tensor>().map(|t| t.handle())) {
                if let Err(e) = t.shallow_clone().f_fill_(v) {
                    fail = Some(format!("cannot reset {k}: {e}"));
                }
            }
        }
    })?;
    match fail {
        Some(e) => Err(e),
        None => Ok(old),
    }
}

/// Puts back the momenta [`reset_batch_norm`] returned.
pub fn restore_batch_norm_momenta(d: &mut Dynamic, momenta: &[Option<f64>]) -> Result<(), String> {
    let mut it = momenta.iter();
    walk_modules_mut(d, &mut |_, m| {
        if is_batch_norm(m) {
            if let Some(v) = it.next() {
                m.insert("momentum".into(), v.map(Dynamic::from_float).unwrap_or(Dynamic::UNIT));
            }
        }
    })
}

fn is_batch_norm(m: &Map) -> bool {
    type_name(m).starts_with("BatchNorm") && m.get("running_mean").is_some_and(|v| v.is::<Tensor>())
}

/// Turns gradient recording of every parameter on or off. Parameters of script-composed maps are
/// recorded in their map's `_params` first, so a frozen one stays a parameter.
pub fn requires_grad_(d: &mut Dynamic, on: bool) -> Result<(), String> {
    let mut fail = None;
    walk_modules_or_maps_mut(d, &mut |m| {
        let mut listed = str_list(m, "_params");
        let mut changed = false;
        for (k, v) in m.iter() {
            if k.starts_with('_') {
                continue;
            }
            if let Some(t) = v.read_lock::<Tensor>() {
                if t.requires_grad() && !listed.iter().any(|p| p == k.as_str()) {
                    listed.push(k.to_string());
                    changed = true;
                }
            }
        }
        if changed {
            m.insert("_params".into(), Dynamic::from_array(listed.iter().map(|s| Dynamic::from(s.clone())).collect()));
        }
        for k in &listed {
            if let Some(t) = m.get(k.as_str()).and_then(|v| v.read_lock::<Tensor>().map(|t| t.clone())) {
                if let Err(e) = t.handle().f_requires_grad_(on) {
                    fail = Some(format!("requires_grad_: {k}: {}", crate::tensor::clean_torch_message(&e.to_string())));
                }
            }
        }
    })?;
    fail.map_or(Ok(()), Err)
}

/// Lightning's `BaseFinetuning` on the module `d`: `freeze` (every parameter stops requiring
/// grad and batch norms stop tracking running statistics; with `train_bn` batch norms are made
/// trainable instead) or `make_trainable` followed by `filter_params(train_bn)`, the parameters
/// that require grad (batch norms' only with `train_bn`) in walker order. Parameters of script
/// maps are listed in their `_params` first, so a frozen one stays a parameter.
pub fn finetune(
    d: &mut Dynamic,
    op: crate::callbacks::backbone_finetuning::Finetune,
) -> Result<Vec<tch::Tensor>, String> {
    use crate::callbacks::backbone_finetuning::Finetune;
    // lists each map's parameters in its `_params` (every one is set explicitly below)
    requires_grad_(d, true)?;
    let mut fail = None;
    let mut out = Vec::new();
    walk_modules_or_maps_mut(d, &mut |m| {
        let bn = type_name(m).starts_with("BatchNorm");
        let (trainable, collect) = match op {
            Finetune::Freeze { train_bn } => (bn && train_bn, false),
            Finetune::Unfreeze { train_bn } => (true, !bn || train_bn),
        };
        if bn {
            m.insert("track_running_stats".into(), Dynamic::from_bool(trainable));
        }
        for k in str_list(m, "_params") {
            if let Some(t) = m.get(k.as_str()).and_then(|v| v.read_lock::<Tensor>().map(|t| t.handle())) {
                if let Err(e) = t.shallow_clone().f_requires_grad_(trainable) {
                    fail = Some(format!("{k}: {}", crate::tensor::clean_torch_message(&e.to_string())));
                }
                if collect {
                    out.push(t);
                }
            }
        }
    })?;
    fail.map_or(Ok(out), Err)
}

/// Visits every map (module or not) under `d`.
fn walk_modules_or_maps_mut(d: &mut Dynamic, f: &mut dyn FnMut(&mut Map)) -> Result<(), String> {
    fn go(d: &mut Dynamic, depth: usize, f: &mut dyn FnMut(&mut Map)) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(too_deep(""));
        }
        if d.is_map() {
            if let Some(mut m) = d.write_lock::<Map>() {
                f(&mut m);
                for (k, v) in m.iter_mut() {
                    if !k.starts_with('_') && (v.is_map() || v.is_array()) {
                        go(v, depth + 1, f)?;
                    }
                }
            }
        } else if d.is_array() {
            if let Some(mut a) = d.write_lock::<Array>() {
                for v in a.iter_mut() {
                    go(v, depth + 1, f)?;
                }
            }
        }
        Ok(())
    }
    go(d, 0, f)
}

/// Moves every parameter and buffer (and its gradient) to `device` and/or casts floating-point
/// ones to `kind`, in place: the tensors keep their identity (`set_data`), so handles held by
/// scripts and optimizers see the new data.
pub fn to(d: &Dynamic, device: Option<tch::Device>, kind: Option<tch::Kind>) -> Result<(), String> {
    let mut fail = None;
    let mut seen = HashSet::new();
    let convert = |t: &tch::Tensor| -> Result<tch::Tensor, tch::TchError> {
        let mut x = t.f_detach()?;
        if let Some(dev) = device {
            x = x.f_to_device(dev)?;
        }
        if let Some(k) = kind {
            if crate::tensor::options::is_floating(x.kind()) {
                x = x.f_to_kind(k)?;
            }
        }
        Ok(x)
    };
    walk_tensors(d, &mut |name, t, _| {
        if fail.is_some() || !seen.insert(std::rc::Rc::as_ptr(&t.0) as usize) {
            return;
        }
        let r = (|| -> Result<(), tch::TchError> {
            let new = convert(t)?;
            let grad = t.grad();
            t.handle().f_set_data(&new)?;
            if grad.defined() {
                let g = convert(&grad)?;
                grad.shallow_clone().f_set_data(&g)?;
            }
            Ok(())
        })();
        if let Err(e) = r {
            fail = Some(format!("to: {name}: {}", crate::tensor::clean_torch_message(&e.to_string())));
        }
    })?;
    fail.map_or(Ok(()), Err)
}

/// Zeroes the gradient of every parameter that has one.
pub fn zero_grad(d: &Dynamic) -> Result<(), String> {
    for t in parameters(d)? {
        let mut h = t.handle();
        if h.grad().defined() {
            h.zero_grad();
        }
    }
    Ok(())
}

/// Number of parameter elements; only those with `requires_grad` when `trainable_only`.
pub fn num_parameters(d: &Dynamic, trainable_only: bool) -> Result<i64, String> {
    Ok(parameters(d)?.iter().filter(|t| !trainable_only || t.requires_grad()).map(|t| t.numel() as i64).sum())
}

/// Every module map under `d` with its path, children before parents (PyTorch's `apply` order),
/// as copies: their tensors are shared with the model, so in-place changes reach it.
pub fn modules_post_order(d: &Dynamic) -> Result<Vec<(String, Map)>, String> {
    modules(d, true, false, &|_| None)
}

/// Where a child name was declared (line, column), to list children in declaration order; None:
/// after the declared ones, alphabetically.
pub type ChildOrder<'a> = &'a dyn Fn(&str) -> Option<(usize, usize)>;

/// `lists`: also list each array holding modules, as a `ModuleList` entry (for the summary).
fn modules(d: &Dynamic, post: bool, lists: bool, order: ChildOrder) -> Result<Vec<(String, Map)>, String> {
    #[allow(clippy::too_many_arguments)]
    fn go(
        d: &Dynamic,
        prefix: &str,
        depth: usize,
        root: bool,
        post: bool,
        lists: bool,
        order: ChildOrder,
        out: &mut Vec<(String, Map)>,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(too_deep(prefix));
        }
        if let Some(m) = d.read_lock::<Map>() {
            let me = root || is_module(&m);
            if me && !post {
                out.push((prefix.to_string(), m.clone()));
            }
            let inline = str_list(&m, "_inline");
            let mut children: Vec<(&rhai::Identifier, &Dynamic)> = m.iter().collect();
            children.sort_by_key(|(k, _)| order(k.as_str()).unwrap_or((usize::MAX, usize::MAX)));
            for (k, v) in children {
                if k.starts_with('_') || v.is_fnptr() || !(v.is_map() || v.is_array()) {
                    continue;
                }
                let p = if inline.iter().any(|i| i == k.as_str()) { prefix.to_string() } else { join(prefix, k) };
                go(v, &p, depth + 1, false, post, lists, order, out)?;
            }
            if me && post {
                out.push((prefix.to_string(), m.clone()));
            }
        } else if let Some(a) = d.read_lock::<Array>() {
            let first_module =
                a.iter().find_map(|v| v.read_lock::<Map>().filter(|m| is_module(m)).map(|m| training(&m)));
            // an array inlined into its map (Sequential's `layers`) has the map's path: no row of its own
            let inlined = out.iter().any(|(p, _)| p == prefix);
            if let (true, false, false, Some(mode)) = (lists, root, inlined, first_module) {
                let mut m = Map::new();
                m.insert("_type".into(), Dynamic::from("ModuleList".to_string()));
                m.insert("training".into(), Dynamic::from_bool(mode));
                out.push((prefix.to_string(), m));
            }
            for (i, v) in a.iter().enumerate() {
                go(v, &join(prefix, &i.to_string()), depth + 1, false, post, lists, order, out)?;
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    go(d, "", 0, true, post, lists, order, &mut out)?;
    Ok(out)
}

/// Lightning's ModelSummary of the tree: modules down to `max_depth` levels (0: none, -1: all),
/// children in alphabetical order (see [`summary_in_order`]).
pub fn summary(d: &Dynamic, max_depth: i64) -> Result<String, String> {
    summary_in_order(d, max_depth, &|_| None)
}

/// The summary with children in the order `order` gives (the script's declaration order).
pub fn summary_in_order(d: &Dynamic, max_depth: i64, order: ChildOrder) -> Result<String, String> {
    let params = named_parameters(d)?;
    let mods = modules(d, false, true, order)?;
    let mut rows = Vec::new();
    for (path, m) in &mods {
        if path.is_empty() {
            continue;
        }
        let depth = path.split('.').count() as i64;
        if max_depth >= 0 && depth > max_depth {
            continue;
        }
        let prefix = format!("{path}.");
        let n: i64 = params.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, t)| t.numel() as i64).sum();
        rows.push(crate::nn::summary::Row { name: path.clone(), ty: type_name(m), params: n, training: training(m) });
    }
    let trainable = params.iter().filter(|(_, t)| t.requires_grad()).map(|(_, t)| t.numel() as i64).sum();
    let total: i64 = params.iter().map(|(_, t)| t.numel() as i64).sum();
    let bytes: i64 = params.iter().map(|(_, t)| (t.numel() * t.kind().elt_size_in_bytes()) as i64).sum();
    // every module but the root (the LightningModule itself), as Lightning counts them
    let children: Vec<&Map> = mods.iter().filter(|(p, _)| !p.is_empty()).map(|(_, m)| m).collect();
    let in_train = children.iter().filter(|m| training(m)).count();
    Ok(crate::nn::summary::render(&crate::nn::summary::Totals {
        rows,
        trainable,
        total,
        bytes,
        modules_train: in_train,
        modules_eval: children.len() - in_train,
    }))
}

// ---- reading a module map's entries (used by native forwards) ----

/// The tensor entry `key`.
pub fn tensor(m: &Map, key: &str) -> Result<Tensor, String> {
    match m.get(key) {
        Some(v) => v
            .read_lock::<Tensor>()
            .map(|t| t.clone())
            .ok_or_else(|| format!("{}: entry '{key}' must be a Tensor, found {}", label(m), v.type_name())),
        None => Err(format!("{}: missing entry '{key}'", label(m))),
    }
}

/// The tensor entry `key`, or `None` when absent or `()`.
pub fn opt_tensor(m: &Map, key: &str) -> Result<Option<Tensor>, String> {
    match m.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(_) => tensor(m, key).map(Some),
    }
}

/// The int entry `key`.
pub fn int(m: &Map, key: &str) -> Result<i64, String> {
    m.get(key).and_then(|v| v.as_int().ok()).ok_or_else(|| format!("{}: entry '{key}' must be an int", label(m)))
}

/// The number entry `key` as f64.
pub fn float(m: &Map, key: &str) -> Result<f64, String> {
    match m.get(key) {
        Some(v) => v
            .as_float()
            .or_else(|_| v.as_int().map(|i| i as f64))
            .map_err(|_| format!("{}: entry '{key}' must be a number", label(m))),
        None => Err(format!("{}: missing entry '{key}'", label(m))),
    }
}

/// The number entry `key`, or `None` when absent or `()`.
pub fn opt_float(m: &Map, key: &str) -> Result<Option<f64>, String> {
    match m.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(_) => float(m, key).map(Some),
    }
}

/// The bool entry `key`.
pub fn boolean(m: &Map, key: &str) -> Result<bool, String> {
    m.get(key).and_then(|v| v.as_bool().ok()).ok_or_else(|| format!("{}: entry '{key}' must be a bool", label(m)))
}

/// The int-array entry `key`.
pub fn ints(m: &Map, key: &str) -> Result<Vec<i64>, String> {
    let bad = || format!("{}: entry '{key}' must be an array of ints", label(m));
    let v = m.get(key).ok_or_else(bad)?;
    if let Ok(i) = v.as_int() {
        return Ok(vec![i]);
    }
    let a = v.read_lock::<Array>().ok_or_else(bad)?;
    a.iter().map(|x| x.as_int().map_err(|_| bad())).collect()
}

/// The string entry `key`.
pub fn string(m: &Map, key: &str) -> Result<String, String> {
    m.get(key)
        .and_then(|v| v.clone().into_immutable_string().ok())
        .map(|s| s.to_string())
        .ok_or_else(|| format!("{}: entry '{key}' must be a string", label(m)))
}

/// Whether the module is in training mode (`training` entry; true when absent).
pub fn training(m: &Map) -> bool {
    m.get("training").and_then(|v| v.as_bool().ok()).unwrap_or(true)
}

/// How a module names itself in errors: `encoder.0 (Linear)` when its path is known.
pub fn label(m: &Map) -> String {
    let ty = type_name(m);
    match m.get("_path").and_then(|v| v.clone().into_immutable_string().ok()) {
        Some(p) if !p.is_empty() => format!("{p} ({ty})"),
        _ => ty,
    }
}

/// Like [`label`] with a description of the configuration: `encoder.0 (Linear 784→128)`.
pub fn label_with(m: &Map, desc: &str) -> String {
    let ty = type_name(m);
    match m.get("_path").and_then(|v| v.clone().into_immutable_string().ok()) {
        Some(p) if !p.is_empty() => format!("{p} ({ty} {desc})"),
        _ => format!("{ty} ({desc})"),
    }
}

// ---- building module maps ----

/// Builds the map of a native layer.
pub struct ModuleBuilder {
    map: Map,
    params: Vec<String>,
    buffers: Vec<String>,
}

impl ModuleBuilder {
    /// A module of type `ty` whose `forward` entry points at the native function `forward`.
    pub fn new(ty: &str, forward: &str) -> Self {
        let mut map = Map::new();
        map.insert("_type".into(), Dynamic::from(ty.to_string()));
        let f = FnPtr::new(forward).map(Dynamic::from).unwrap_or(Dynamic::UNIT);
        map.insert("forward".into(), f);
        map.insert("training".into(), Dynamic::from_bool(true));
        ModuleBuilder { map, params: Vec::new(), buffers: Vec::new() }
    }

    /// A parameter; `None` stores `()` (like `bias=None`) and lists nothing.
    pub fn param(mut self, name: &str, t: Option<tch::Tensor>) -> Self {
        match t {
            Some(t) => {
                let t = t.set_requires_grad(true);
                self.map.insert(name.into(), Dynamic::from(Tensor::new(t)));
                self.params.push(name.to_string());
            }
            None => {
                self.map.insert(name.into(), Dynamic::UNIT);
            }
        }
        self
    }

    /// A buffer (saved in the state_dict, not trained).
    pub fn buffer(mut self, name: &str, t: Option<tch::Tensor>) -> Self {
        match t {
            Some(t) => {
                self.map.insert(name.into(), Dynamic::from(Tensor::new(t)));
                self.buffers.push(name.to_string());
            }
            None => {
                self.map.insert(name.into(), Dynamic::UNIT);
            }
        }
        self
    }

    /// A configuration entry.
    pub fn set(mut self, key: &str, v: impl Into<Dynamic>) -> Self {
        self.map.insert(key.into(), v.into());
        self
    }

    /// An int-list configuration entry.
    pub fn set_ints(self, key: &str, v: &[i64]) -> Self {
        let a: Array = v.iter().map(|i| Dynamic::from_int(*i)).collect();
        self.set(key, Dynamic::from_array(a))
    }

    pub fn build(mut self) -> Map {
        let list = |v: &[String]| Dynamic::from_array(v.iter().map(|s| Dynamic::from(s.clone())).collect());
        self.map.insert("_params".into(), list(&self.params));
        self.map.insert("_buffers".into(), list(&self.buffers));
        self.map
    }
}
