//! A module as PyTorch's `repr` writes it: `Sequential(\n  (0): Linear(in_features=784,
//! out_features=128, bias=True)\n  (1): ReLU()\n)`: the type, its `extra_repr` (the constructor's
//! settings, as PyTorch's layer of that type writes them), then its child modules by name,
//! indented. Weights are not printed.
use super::tree::{is_module, str_list, type_name};
use crate::tensor::Tensor;
use rhai::{Array, Dynamic, Map};

/// Deeper than this the tree is taken to be a cycle of shared values.
const MAX_DEPTH: usize = 64;

fn py_value(v: &Dynamic) -> Option<String> {
    if let Ok(b) = v.as_bool() {
        return Some(if b { "True" } else { "False" }.into());
    }
    if let Ok(i) = v.as_int() {
        return Some(i.to_string());
    }
    if let Ok(f) = v.as_float() {
        return Some(crate::pyfmt::repr_f64(f));
    }
    if v.is_string() {
        return Some(crate::pyfmt::repr_str(&v.to_string()));
    }
    if v.is_unit() {
        return Some("None".into());
    }
    if let Some(a) = v.read_lock::<Array>() {
        let items: Option<Vec<String>> = a.iter().map(py_value).collect();
        let items = items?;
        return Some(if items.len() == 1 { format!("({},)", items[0]) } else { format!("({})", items.join(", ")) });
    }
    None
}

fn get(m: &Map, k: &str) -> Option<String> {
    m.get(k).and_then(py_value)
}

fn has_tensor(m: &Map, k: &str) -> bool {
    m.get(k).is_some_and(|v| v.is::<Tensor>())
}

/// `key=value` for each of `keys` the module has.
fn kv(m: &Map, keys: &[&str]) -> Vec<String> {
    keys.iter().filter_map(|k| get(m, k).map(|v| format!("{k}={v}"))).collect()
}

fn all_equal(m: &Map, k: &str, default: i64) -> bool {
    match m.get(k) {
        Some(v) => match v.read_lock::<Array>() {
            Some(a) => a.iter().all(|x| x.as_int() == Ok(default)),
            None => v.as_int() == Ok(default),
        },
        None => true,
    }
}

/// PyTorch's `extra_repr` of the layer types lt has; for other modules, their plain settings.
fn extra_repr(ty: &str, m: &Map) -> String {
    let parts: Vec<String> = match ty {
        "Linear" | "NonDynamicallyQuantizableLinear" => {
            let mut p = kv(m, &["in_features", "out_features"]);
            p.push(format!("bias={}", if has_tensor(m, "bias") { "True" } else { "False" }));
            p
        }
        t if t.starts_with("Conv") => {
            let mut p: Vec<String> = ["in_channels", "out_channels"].iter().filter_map(|k| get(m, k)).collect();
            p.extend(kv(m, &["kernel_size", "stride"]));
            if !all_equal(m, "padding", 0) {
                p.extend(kv(m, &["padding"]));
            }
            if !all_equal(m, "dilation", 1) {
                p.extend(kv(m, &["dilation"]));
            }
            if !all_equal(m, "output_padding", 0) {
                p.extend(kv(m, &["output_padding"]));
            }
            if !all_equal(m, "groups", 1) {
                p.extend(kv(m, &["groups"]));
            }
            if !has_tensor(m, "bias") {
                p.push("bias=False".into());
            }
            if get(m, "padding_mode").is_some_and(|v| v != "'zeros'") {
                p.extend(kv(m, &["padding_mode"]));
            }
            p
        }
        t if t.starts_with("BatchNorm") || t.starts_with("InstanceNorm") => {
            let mut p: Vec<String> = get(m, "num_features").into_iter().collect();
            p.extend(kv(m, &["eps", "momentum", "affine", "track_running_stats"]));
            p
        }
        "LayerNorm" | "RMSNorm" => {
            let mut p: Vec<String> = get(m, "normalized_shape").into_iter().collect();
            p.extend(kv(m, &["eps", "elementwise_affine"]));
            p
        }
        "GroupNorm" => {
            let mut p: Vec<String> = ["num_groups", "num_channels"].iter().filter_map(|k| get(m, k)).collect();
            p.extend(kv(m, &["eps", "affine"]));
            p
        }
        "Embedding" => {
            let mut p: Vec<String> = ["num_embeddings", "embedding_dim"].iter().filter_map(|k| get(m, k)).collect();
            if m.get("padding_idx").is_some_and(|v| !v.is_unit()) {
                p.extend(kv(m, &["padding_idx"]));
            }
            p
        }
        "MaxUnpool2d" => kv(m, &["kernel_size", "stride", "padding"]),
        "PixelShuffle" => kv(m, &["upscale_factor"]),
        "PixelUnshuffle" => kv(m, &["downscale_factor"]),
        "Upsample" => {
            let key = if m.get("scale_factor").is_some_and(|v| !v.is_unit()) { "scale_factor" } else { "size" };
            let mut p = kv(m, &[key]);
            p.extend(kv(m, &["mode"]));
            p
        }
        "ZeroPad2d" | "ReflectionPad2d" => get(m, "padding").into_iter().collect(),
        t if t.starts_with("AdaptiveMaxPool") || t.starts_with("AdaptiveAvgPool") => kv(m, &["output_size"]),
        t if t.starts_with("Dropout") || t == "AlphaDropout" => {
            let mut p = kv(m, &["p"]);
            p.push("inplace=False".into());
            p
        }
        _ => m
            .iter()
            .filter(|(k, _)| !k.starts_with('_') && k.as_str() != "training" && k.as_str() != "forward")
            .filter(|(_, v)| !v.is::<Tensor>() && !v.is::<rhai::FnPtr>() && !v.is_unit())
            .filter_map(|(k, v)| py_value(v).map(|s| format!("{k}={s}")))
            .collect(),
    };
    parts.join(", ")
}

/// The child modules of `m` by PyTorch name: module entries and arrays of modules (named
/// `key.0`, …); `_inline` entries (Sequential's `layers`) name their children `0`, `1`, ….
fn children(m: &Map) -> Vec<(String, Dynamic)> {
    let inline = str_list(m, "_inline");
    let mut out = Vec::new();
    for (k, v) in m.iter().filter(|(k, _)| !k.starts_with('_')) {
        if let Some(c) = v.read_lock::<Map>() {
            if is_module(&c) {
                out.push((k.to_string(), v.clone()));
            }
        } else if let Some(a) = v.read_lock::<Array>() {
            for (i, item) in a.iter().enumerate() {
                if item.read_lock::<Map>().is_some_and(|c| is_module(&c)) {
                    let name = if inline.iter().any(|n| n == k.as_str()) { i.to_string() } else { format!("{k}.{i}") };
                    out.push((name, item.clone()));
                }
            }
        }
    }
    out
}

/// PyTorch's `repr` of the module map `m`; `name` replaces its type name (a script module's).
pub fn module_repr(m: &Map, name: Option<&str>) -> String {
    repr_at(m, name, 0)
}

fn repr_at(m: &Map, name: Option<&str>, depth: usize) -> String {
    let ty = type_name(m);
    let mut lines: Vec<String> = Vec::new();
    // a named root is a script's module: as a LightningModule's repr, only its children
    let extra = if name.is_some() { String::new() } else { extra_repr(&ty, m) };
    if !extra.is_empty() {
        lines.extend(extra.lines().map(str::to_string));
    }
    let n_extra = lines.len();
    let kids = children(m);
    for (k, v) in &kids {
        let s = match v.read_lock::<Map>() {
            Some(c) if depth < MAX_DEPTH => repr_at(&c, None, depth + 1),
            _ => "...".to_string(),
        };
        // PyTorch's `_addindent`: lines after the first are indented by 2
        let s = s.replace('\n', "\n  ");
        lines.push(format!("({k}): {s}"));
    }
    let mut out = format!("{}(", name.unwrap_or(&ty));
    if !lines.is_empty() {
        if n_extra == 1 && kids.is_empty() {
            out.push_str(&lines[0]);
        } else {
            out.push_str("\n  ");
            out.push_str(&lines.join("\n  "));
            out.push('\n');
        }
    }
    out.push(')');
    out
}
