//! `lt ckpt convert`: an lt checkpoint to a Lightning `.ckpt`, a plain PyTorch state_dict or a
//! plain safetensors state_dict, and a Lightning `.ckpt` to an lt checkpoint that `lt fit --ckpt`
//! resumes from (or to the two plain formats).
//!
//! What maps, lt → Lightning: `state_dict` (an OrderedDict of tensors), `epoch`, `global_step`,
//! `hyper_parameters` (with `hparams_name: "kwargs"`, so `load_from_checkpoint` passes them to
//! `__init__`), `optimizer_states` in torch's layout (`state: {param_index: {step, exp_avg, …}}`,
//! `param_groups: [{lr, betas, …, params: [indices]}]`: lt's optimizers keep the same state names
//! as torch's), `lr_schedulers` (torch's state keys, and lt's `type`, which torch's
//! `load_state_dict` keeps as a harmless attribute and which brings the file back to lt). Not written:
//! `loops` and `callbacks` (lt's counters and callback states are not Lightning's objects), so
//! the file serves `load_from_checkpoint`, `torch.load` and an optimizer's `load_state_dict`, not
//! Lightning's `trainer.fit(ckpt_path=…)`.
//!
//! Lightning → lt: the weights, `epoch` / `global_step` and the loop position (from `loops.fit_loop`:
//! an epoch that had ended, or the batch a mid-epoch checkpoint stopped after), hyperparameters,
//! the optimizer states (torch-only flags with their no-op values — `foreach`, `capturable`,
//! `differentiable`, `fused: None` — are left out) and the LR schedulers' states (their type
//! recognized from torch's keys). Not carried: callback states (Lightning's and lt's differ),
//! logged-metric accumulators, and the random generator: Lightning does not save torch's RNG
//! state, so the lt file holds a fresh process's default one.
use super::Checkpoint;
use crate::nn::torch_save::Py;
use serde_json::{json, Map, Value};
use std::path::Path;
use tch::Tensor;

/// The formats `lt ckpt convert --to` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// An lt checkpoint (from a Lightning one).
    Lt,
    /// A Lightning `.ckpt` (a torch.save zip) from an lt checkpoint.
    Lightning,
    /// `torch.save(model.state_dict())`.
    Pytorch,
    /// The state_dict as a safetensors file.
    Safetensors,
}

impl Target {
    pub fn parse(s: &str) -> Result<Target, String> {
        Ok(match s {
            "lt" => Target::Lt,
            "lightning" => Target::Lightning,
            "pytorch" => Target::Pytorch,
            "safetensors" => Target::Safetensors,
            other => return Err(format!("unknown --to '{other}' (expected lightning, pytorch, safetensors or lt)")),
        })
    }
}

/// The Lightning release whose checkpoint layout lt writes (and claims in `pytorch-lightning_version`,
/// so Lightning runs none of its migrations of older files).
pub const LIGHTNING_VERSION: &str = "2.6.6";

/// Converts `input` to `target` at `output`; `target` None: the other of lt / Lightning. Refuses an
/// existing `output` unless `force`, and `output` = `input` always. Returns a one-line summary.
pub fn convert(input: &Path, target: Option<Target>, output: &Path, force: bool) -> Result<String, String> {
    check_output(input, output, force)?;
    let lightning_in = crate::nn::io::sniff(input)? == crate::nn::io::Format::TorchZip;
    let target = target.unwrap_or(if lightning_in { Target::Lt } else { Target::Lightning });
    let what = if lightning_in { "Lightning checkpoint" } else { "lt checkpoint" };
    // the whole state is mapped only for an lt checkpoint; the plain formats need the weights alone
    let ck = if lightning_in && target == Target::Lt { lightning_to_lt(input)? } else { Checkpoint::load(input)? };
    let weights = ck.section("state_dict");
    let n = weights.len();
    match (target, lightning_in) {
        (Target::Lt, false) => return Err(format!("{} is already an lt checkpoint", input.display())),
        (Target::Lightning, true) => return Err(format!("{} is already a Lightning checkpoint", input.display())),
        (Target::Lt, true) => ck.save(output)?,
        (Target::Lightning, false) => crate::nn::torch_save::save(output, &lt_to_lightning(&ck)?)?,
        (Target::Pytorch, _) => crate::nn::torch_save::save(output, &state_dict_py(weights))?,
        (Target::Safetensors, _) => crate::nn::io::save_safetensors(output, &weights, None)?,
    }
    let name = match target {
        Target::Lt => "an lt checkpoint",
        Target::Lightning => "a Lightning checkpoint",
        Target::Pytorch => "a PyTorch state_dict (torch.save)",
        Target::Safetensors => "a safetensors state_dict",
    };
    Ok(format!("wrote {} ({name}, {n} weight tensors) from the {what} {}", output.display(), input.display()))
}

/// Refuses `output` when it exists (unless `force`, and then only a regular file) or is `input`.
fn check_output(input: &Path, output: &Path, force: bool) -> Result<(), String> {
    crate::fs::check_regular(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    };
    if same(input, output) {
        return Err(format!("the output {} is the input file; write the conversion to another file", output.display()));
    }
    match std::fs::symlink_metadata(output) {
        Err(_) => Ok(()),
        Ok(_) if !force => Err(format!("{} exists; pass --force to overwrite it", output.display())),
        Ok(m) if !m.file_type().is_file() => {
            Err(format!("{} exists and is not a regular file; lt overwrites only files", output.display()))
        }
        Ok(_) => Ok(()),
    }
}

fn state_dict_py(weights: Vec<(String, Tensor)>) -> Py {
    Py::OrderedDict(weights.into_iter().map(|(k, t)| (k, Py::Tensor(t))).collect())
}

/// A JSON value with arrays of two numbers as tuples where torch keeps tuples (`betas`).
fn option_py(key: &str, v: &Value) -> Py {
    match (key, v) {
        ("betas" | "etas" | "step_sizes", Value::Array(a)) => Py::Tuple(a.iter().map(Py::from_json).collect()),
        _ => Py::from_json(v),
    }
}

/// What `trainer.save_checkpoint` would hold for an lt checkpoint (see the module doc).
fn lt_to_lightning(ck: &Checkpoint) -> Result<Py, String> {
    let m = &ck.meta;
    let count = |k: &str| m.get(k).and_then(Value::as_i64).unwrap_or(0);
    let mut top: Vec<(&str, Py)> = vec![
        ("epoch", Py::Int(count("epoch"))),
        ("global_step", Py::Int(count("global_step"))),
        ("pytorch-lightning_version", Py::str(LIGHTNING_VERSION)),
        ("state_dict", state_dict_py(ck.section("state_dict"))),
    ];
    if let Some(opts) = m.get("optimizer_states").and_then(Value::as_array) {
        let mut out = Vec::new();
        for (i, o) in opts.iter().enumerate() {
            out.push(optimizer_to_torch(o, &ck.section(&format!("optimizer_states.{i}")), i)?);
        }
        top.push(("optimizer_states", Py::List(out)));
    }
    if let Some(scheds) = m.get("lr_schedulers").and_then(Value::as_array) {
        top.push(("lr_schedulers", Py::List(scheds.iter().map(Py::from_json).collect())));
    }
    match m.get("hyper_parameters") {
        Some(h @ Value::Object(o)) if !o.is_empty() => {
            top.push(("hparams_name", Py::str("kwargs")));
            top.push(("hyper_parameters", Py::from_json(h)));
        }
        _ => {}
    }
    if let Some(h @ Value::Object(_)) = m.get("datamodule_hyper_parameters") {
        top.push(("datamodule_hparams_name", Py::str("kwargs")));
        top.push(("datamodule_hyper_parameters", Py::from_json(h)));
    }
    Ok(Py::dict(top))
}

/// One lt optimizer state (its JSON and `state.{param}.{key}` tensors) in torch's layout.
fn optimizer_to_torch(meta: &Value, tensors: &[(String, Tensor)], i: usize) -> Result<Py, String> {
    let mut state: std::collections::BTreeMap<i64, Vec<(Py, Py)>> = Default::default();
    for (name, t) in tensors {
        let bad = || format!("optimizer_states.{i}: unexpected tensor name '{name}' in the lt checkpoint");
        let rest = name.strip_prefix("state.").ok_or_else(bad)?;
        let (p, key) = rest.split_once('.').ok_or_else(bad)?;
        let p: i64 = p.parse().map_err(|_| bad())?;
        state.entry(p).or_default().push((Py::str(key), Py::Tensor(t.shallow_clone())));
    }
    let groups = meta
        .get("param_groups")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("optimizer_states.{i} has no param_groups"))?;
    // torch's Adam and AdamW states carry the rule as `decoupled_weight_decay` (lt: the name)
    let decoupled = match meta.get("optimizer").and_then(Value::as_str) {
        Some("Adam") => Some(false),
        Some("AdamW") => Some(true),
        _ => None,
    };
    let groups = groups
        .iter()
        .map(|g| match g {
            Value::Object(o) => {
                let mut d: Vec<(Py, Py)> = o.iter().map(|(k, v)| (Py::str(k), option_py(k, v))).collect();
                if let Some(flag) = decoupled.filter(|_| !o.contains_key("decoupled_weight_decay")) {
                    d.push((Py::str("decoupled_weight_decay"), Py::Bool(flag)));
                }
                Py::Dict(d)
            }
            other => Py::from_json(other),
        })
        .collect();
    Ok(Py::dict([
        ("state", Py::Dict(state.into_iter().map(|(p, e)| (Py::Int(p), Py::Dict(e))).collect())),
        ("param_groups", Py::List(groups)),
    ]))
}

/// torch's param-group keys lt's optimizers do not have, left out of a conversion when they hold
/// the value that changes nothing.
fn torch_only_noop(key: &str, v: &Value) -> bool {
    match key {
        "foreach" | "param_names" => true,
        "capturable" | "differentiable" | "decoupled_weight_decay" => v == &json!(false),
        "fused" => v.is_null() || v == &json!(false),
        _ => false,
    }
}

/// A Lightning checkpoint as an lt checkpoint a fit resumes from (see the module doc).
fn lightning_to_lt(input: &Path) -> Result<Checkpoint, String> {
    let what = input.display().to_string();
    let tree = crate::nn::torch_pickle::load_tree_file(input)
        .map_err(|e| format!("cannot read {what} (a torch.save zip archive): {e}"))?;
    let top = tree
        .value
        .as_object()
        .ok_or_else(|| format!("{what} is a torch.save file that holds no dict: not a Lightning checkpoint"))?;
    if !top.contains_key("state_dict") {
        let keys: Vec<&str> = top.keys().map(String::as_str).collect();
        return Err(format!(
            "{what} has no `state_dict` entry (keys: {}): not a Lightning checkpoint",
            keys.join(", ")
        ));
    }
    let count = |path: &str| -> Result<Option<usize>, String> {
        match path.split('.').try_fold(&tree.value, |v, k| v.get(k)) {
            None => Ok(None),
            Some(v) => {
                v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| format!("{what}: `{path}` is {v}, not a count"))
            }
        }
    };
    let epoch = count("epoch")?.ok_or_else(|| format!("{what} has no `epoch`"))?;
    let global_step = count("global_step")?.ok_or_else(|| format!("{what} has no `global_step`"))?;
    // Lightning's trackers (loops.fit_loop), flattened: the keys hold dots themselves
    let fit = tree.value.pointer("/loops/fit_loop");
    let tracker = |key: &str, field: &str| -> Result<Option<usize>, String> {
        let Some(v) = fit.and_then(|f| f.get(key)).and_then(|t| field.split('.').try_fold(t, |v, k| v.get(k))) else {
            return Ok(None);
        };
        v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| format!("{what}: loops.fit_loop[{key}].{field} is {v}"))
    };
    let started = tracker("epoch_progress", "current.started")?.unwrap_or(epoch);
    let processed = tracker("epoch_progress", "current.processed")?.unwrap_or(epoch);
    let completed = tracker("epoch_progress", "current.completed")?.unwrap_or(epoch);
    if completed != epoch {
        return Err(format!(
            "{what}: `epoch` is {epoch} but loops.fit_loop's epoch_progress says {completed} epochs completed"
        ));
    }
    let batch_in_current = tracker("epoch_loop.batch_progress", "current.completed")?.unwrap_or(0);
    // an epoch that ran all its batches (saved at its end), one cut short (saved after a batch),
    // or none running (saved between epochs: the batch counter is the previous epoch's)
    let (epoch_done, batch_in_epoch) = if processed > completed {
        (true, batch_in_current)
    } else if started > completed {
        (false, batch_in_current)
    } else {
        (false, 0)
    };
    let total_batches_seen = tracker("epoch_loop.batch_progress", "total.completed")?.unwrap_or(global_step);
    let batches_that_stepped = tracker("epoch_loop.state_dict", "_batches_that_stepped")?.unwrap_or(global_step);
    // an empty training collection, as lt's trainer writes one
    let train_results = json!({"metrics": [], "training": true});
    let mut meta = json!({
        "epoch": epoch,
        "global_step": global_step,
        "hyper_parameters": top.get("hyper_parameters").cloned().unwrap_or(Value::Null),
        "loops": {"fit_loop": {
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "epoch_done": epoch_done,
            "total_batches_seen": total_batches_seen,
            "batches_that_stepped": batches_that_stepped,
            "train_results": train_results,
            "callback_metrics": {},
        }},
        "callbacks": {},
        "weights_only": false,
    });
    if let Some(h) = top.get("datamodule_hyper_parameters") {
        meta["datamodule_hyper_parameters"] = h.clone();
    }
    let mut ck = Checkpoint::new(Value::Null);
    ck.add_section("state_dict", tree.section("state_dict"));
    let mut opt_meta = Vec::new();
    for (i, o) in top.get("optimizer_states").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let (tensors, m) = optimizer_from_torch(o, &tree.section(&format!("optimizer_states.{i}")), i, &what)?;
        ck.add_section(&format!("optimizer_states.{i}"), tensors);
        opt_meta.push(m);
    }
    meta["optimizer_states"] = Value::Array(opt_meta);
    let scheds = top.get("lr_schedulers").and_then(Value::as_array).into_iter().flatten().enumerate();
    meta["lr_schedulers"] =
        Value::Array(scheds.map(|(i, s)| scheduler_from_torch(s, i, &what)).collect::<Result<_, _>>()?);
    ck.tensors.push(("rng.torch_cpu".into(), crate::tensor::rng::get_state()?));
    ck.meta = meta;
    Ok(ck)
}

/// torch's optimizer state_dict (`tensors` under its `state.`) as lt's: the tensors renamed
/// `state.{param}.{key}`, the param groups without torch's no-op flags.
fn optimizer_from_torch(
    o: &Value,
    tensors: &[(String, Tensor)],
    i: usize,
    what: &str,
) -> Result<(Vec<(String, Tensor)>, Value), String> {
    let at = format!("{what}: optimizer_states[{i}]");
    let groups = o.get("param_groups").and_then(Value::as_array).ok_or_else(|| format!("{at} has no param_groups"))?;
    let mut out_groups = Vec::new();
    // torch's Adam and AdamW share one state layout (AdamW is Adam with `decoupled_weight_decay`);
    // lt tells them apart by name, so the flag becomes the optimizer's name, which lt checks when
    // the state is loaded (a torch AdamW state refused by an lt Adam, not silently run as Adam)
    let mut adam_name = None;
    for (gi, g) in groups.iter().enumerate() {
        let g = g.as_object().ok_or_else(|| format!("{at}.param_groups[{gi}] is not a dict"))?;
        let mut m = Map::new();
        let adam_family = g.contains_key("amsgrad");
        for (k, v) in g {
            if adam_family && k == "decoupled_weight_decay" {
                let name = if v == &json!(true) { "AdamW" } else { "Adam" };
                if adam_name.is_some_and(|n| n != name) {
                    return Err(format!("{at}: its param groups mix Adam and AdamW (decoupled_weight_decay)"));
                }
                adam_name = Some(name);
                continue;
            }
            if torch_only_noop(k, v) {
                continue;
            }
            if k != "params" && crate::optim::HValue::from_json(v).is_none() && !v.is_null() {
                return Err(format!("{at}.param_groups[{gi}].{k} is {v}, which lt's optimizers cannot hold"));
            }
            m.insert(k.clone(), v.clone());
        }
        out_groups.push(Value::Object(m));
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (name, t) in tensors {
        let Some(rest) = name.strip_prefix("state.") else { continue };
        let bad = || format!("{at}: unexpected state tensor '{name}'");
        let (p, key) = rest.split_once('.').ok_or_else(bad)?;
        if p.parse::<usize>().is_err() || key.contains('.') {
            return Err(bad());
        }
        seen.insert(format!("{p}.{key}"));
        out.push((name.clone(), t.shallow_clone()));
    }
    // a `step` kept as a Python number (torch before 1.12, or a custom optimizer) as lt's tensor
    if let Some(state) = o.get("state").and_then(Value::as_object) {
        for (p, entry) in state {
            if let Some(step) = entry.get("step").and_then(Value::as_f64) {
                if !seen.contains(&format!("{p}.step")) {
                    out.push((format!("state.{p}.step"), Tensor::from(step as f32)));
                }
            }
        }
    }
    let meta = match adam_name {
        Some(name) => json!({"optimizer": name, "param_groups": out_groups}),
        None => json!({"param_groups": out_groups}),
    };
    Ok((out, meta))
}

/// lt's scheduler types by the torch state keys that tell them apart (checked in order).
const SCHEDULER_KEYS: &[(&str, &[&str])] = &[
    ("StepLR", &["step_size", "gamma"]),
    ("MultiStepLR", &["milestones", "gamma"]),
    ("CosineAnnealingWarmRestarts", &["T_0", "T_i", "T_mult"]),
    ("CosineAnnealingLR", &["T_max", "eta_min"]),
    ("LinearLR", &["start_factor", "end_factor", "total_iters"]),
    ("ConstantLR", &["factor", "total_iters"]),
    ("PolynomialLR", &["power", "total_iters"]),
    ("ExponentialLR", &["gamma"]),
];

/// A torch scheduler's state with lt's `type` key, recognized from its keys.
fn scheduler_from_torch(s: &Value, i: usize, what: &str) -> Result<Value, String> {
    let o = s.as_object().ok_or_else(|| format!("{what}: lr_schedulers[{i}] is not a dict"))?;
    // lt's own `type` (a file lt converted to Lightning's format), else torch's keys
    let own = o.get("type").and_then(Value::as_str).filter(|t| SCHEDULER_KEYS.iter().any(|(n, _)| n == t));
    let ty = own
        .or_else(|| SCHEDULER_KEYS.iter().find(|(_, keys)| keys.iter().all(|k| o.contains_key(*k))).map(|(t, _)| *t))
        .ok_or_else(|| {
            let keys: Vec<&str> = o.keys().map(String::as_str).collect();
            format!(
                "{what}: lr_schedulers[{i}] (keys {}) is not a scheduler lt can resume (StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR, CosineAnnealingWarmRestarts, LinearLR, ConstantLR, PolynomialLR)",
                keys.join(", ")
            )
        })?;
    let mut m = o.clone();
    m.insert("type".into(), json!(ty));
    Ok(Value::Object(m))
}
