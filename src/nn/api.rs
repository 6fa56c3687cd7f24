//! The nn script surface: `nn::` layer constructors and their native forwards (`__nn_*`, reached
//! through each module map's `forward` entry), module methods on maps (`parameters()`,
//! `state_dict()`, `train()`, …), the functional `F::` namespace, `init::` and weight files.
use super::functional::{self as fun, ClassLossOpts};
use super::layers::activation::{self, Act};
use super::layers::conv::{Conv, Padding};
use super::layers::pool::Pool;
use super::layers::resample;
use super::layers::rnn::Rnn;
use super::layers::{self, attention, embedding, linear, norm};
use super::{init, io, tree};
use crate::script::convert::{err, int_list, number, Opts, OrScript, RResult};
use crate::script::registry::Registry;
use crate::tensor::options::{parse_device, parse_dtype};
use crate::tensor::{Tensor, TensorError};
use rhai::{Array, Dynamic, EvalAltResult, FnPtr, Map, NativeCallContext, FLOAT, INT};

type T = Tensor;

fn ok(r: crate::tensor::Result<tch::Tensor>) -> RResult<Tensor> {
    r.map(Tensor::new).map_err(err)
}

/// A layer's error, prefixed with its path and configuration.
pub(super) fn layer_err(m: &Map, desc: &str, e: TensorError) -> Box<EvalAltResult> {
    err(format!("{}: {e}", tree::label_with(m, desc)))
}

/// Runs `f` on the map as a `Dynamic` (moved in and back out, no copy).
fn with_dyn<R>(m: &mut Map, f: impl FnOnce(&mut Dynamic) -> R) -> R {
    let mut d = Dynamic::from_map(std::mem::take(m));
    let r = f(&mut d);
    if let Some(back) = d.try_cast::<Map>() {
        *m = back;
    }
    r
}

/// Dtype and device of new parameters, from the `dtype` / `device` options.
/// An `nn::linear` module map (PyTorch's Linear and its init): the one builder every layer made of
/// linears (transformer layers, attention) uses.
pub(super) fn linear_module(i: INT, o: INT, bias: bool, p: layers::Opts) -> RResult<Map> {
    let (w, b) = linear::init(i, o, bias, p).or_script()?;
    Ok(tree::ModuleBuilder::new("Linear", "__nn_linear_forward")
        .param("weight", Some(w))
        .param("bias", b)
        .set("in_features", i)
        .set("out_features", o)
        .build())
}

pub(super) fn param_opts(o: &Opts) -> RResult<layers::Opts> {
    let kind = match o.str_opt("dtype")? {
        Some(s) => parse_dtype(&s).or_script()?,
        None => tch::Kind::Float,
    };
    let dev = match o.str_opt("device")? {
        Some(s) => parse_device(&s).or_script()?,
        None => tch::Device::Cpu,
    };
    Ok((kind, dev))
}

fn str_array(v: &[String]) -> Array {
    v.iter().map(|s| Dynamic::from(s.clone())).collect()
}

fn pairs(v: Vec<(String, Tensor)>) -> Array {
    v.into_iter().map(|(n, t)| Dynamic::from_array(vec![Dynamic::from(n), Dynamic::from(t)])).collect()
}

fn tensor_map(v: Vec<(String, Tensor)>) -> Map {
    v.into_iter().map(|(n, t)| (n.into(), Dynamic::from(t))).collect()
}

/// A map of tensors that is a state_dict rather than a module: no `forward` / `_type`, and every
/// value a tensor.
fn as_state_dict(d: &Dynamic) -> Option<Vec<(String, tch::Tensor)>> {
    let m = d.read_lock::<Map>()?;
    if tree::is_module(&m) {
        return None;
    }
    m.iter().map(|(k, v)| v.read_lock::<Tensor>().map(|t| (k.to_string(), t.handle()))).collect()
}

/// The named tensors of a module (its state_dict) or of a state_dict map.
fn named_tensors(d: &Dynamic) -> RResult<Vec<(String, tch::Tensor)>> {
    if let Some(sd) = as_state_dict(d) {
        return Ok(sd);
    }
    Ok(tree::state_dict(d).or_script()?.into_iter().map(|(n, t)| (n, t.handle())).collect())
}

/// Calls a module's `forward` with `this` bound to the module.
pub fn call_forward(ctx: &NativeCallContext, module: &mut Dynamic, args: Vec<Dynamic>) -> RResult<Dynamic> {
    let f = {
        let m = module.read_lock::<Map>().ok_or_else(|| {
            err(format!("expected a module (a map with a forward function), got {}", module.type_name()))
        })?;
        match m.get("forward") {
            Some(f) if f.is_fnptr() => f.clone().cast::<FnPtr>(),
            _ => return Err(err(format!("{} has no forward function", tree::label(&m)))),
        }
    };
    f.call_raw(ctx, Some(module), args)
}

pub(super) fn fwd_doc(what: &str, example: &str) -> String {
    format!("Forward of {what}: called through the module's `forward` entry, as `layer.forward(x)`.\n\n```rhai\n{example}\n```")
}

/// Registers the whole nn surface.
pub fn register(reg: &mut Registry) {
    register_module_methods(reg);
    register_core_layers(reg);
    register_activations(reg);
    register_losses(reg);
    register_functional(reg);
    register_init(reg);
    register_io(reg);
    register_conv_pool(reg);
    register_resample(reg);
    register_norm(reg);
    register_embedding_rnn(reg);
    register_attention(reg);
    super::transformer_api::register(reg);
}

fn register_module_methods(reg: &mut Registry) {
    let doc = "The parameters of a module and everything inside it, each once (Module.parameters()); \
for optimizers. Parameters are the tensors a layer lists, plus tensors that require grad stored in a script's maps.\n\n\
```rhai\nlet model = #{fc1: nn::linear(4, 8), fc2: nn::linear(8, 2)};\nprint(model.parameters().len());\n```";
    reg.func("", "parameters", "self", doc, |m: &mut Map| -> RResult<Array> {
        with_dyn(m, |d| tree::parameters(d)).map(|v| v.into_iter().map(Dynamic::from).collect()).or_script()
    });
    let doc = "`[name, tensor]` pairs with PyTorch's dotted names (`fc1.weight`, `layers.0.bias`), in walker order \
(a layer's own parameters in PyTorch's order, then a map's entries sorted by key, arrays by index).\n\n\
```rhai\nlet model = #{encoder: nn::sequential([nn::linear(4, 8), nn::relu()])};\nfor p in model.named_parameters() { print(`${p[0]} ${p[1].shape}`); }\n```";
    reg.func("", "named_parameters", "self", doc, |m: &mut Map| -> RResult<Array> {
        with_dyn(m, |d| tree::named_parameters(d)).map(pairs).or_script()
    });
    let doc = "The buffers (running statistics …) of a module and its children (Module.buffers()).\n\n\
```rhai\nlet m = #{stats: torch::zeros([3]), _buffers: [\"stats\"]};\nprint(m.buffers().len());\n```";
    reg.func("", "buffers", "self", doc, |m: &mut Map| -> RResult<Array> {
        with_dyn(m, |d| tree::named_buffers(d))
            .map(|v| v.into_iter().map(|(_, t)| Dynamic::from(t)).collect())
            .or_script()
    });
    let doc = "`[name, tensor]` pairs of the buffers (Module.named_buffers()).\n\n\
```rhai\nlet m = #{stats: torch::zeros([3]), _buffers: [\"stats\"]};\nfor b in m.named_buffers() { print(b[0]); }\n```";
    reg.func("", "named_buffers", "self", doc, |m: &mut Map| -> RResult<Array> {
        with_dyn(m, |d| tree::named_buffers(d)).map(pairs).or_script()
    });
    let doc = "Parameters and buffers by dotted name, detached but sharing storage with the model (Module.state_dict()).\n\n\
```rhai\nlet model = #{fc: nn::linear(2, 3)};\nlet sd = model.state_dict();\nprint(sd.keys());\nprint(sd[\"fc.weight\"].shape);\n```";
    reg.func("", "state_dict", "self", doc, |m: &mut Map| -> RResult<Map> {
        with_dyn(m, |d| tree::state_dict(d)).map(tensor_map).or_script()
    });
    let doc = "Copies a state_dict (a map of name → tensor, e.g. from `state_dict()` or `nn::load`) into the model's \
tensors in place, so optimizers keep working (Module.load_state_dict). Option `strict` (default true): missing or \
unexpected keys are an error; shape mismatches always are. Returns `#{missing_keys, unexpected_keys}`.\n\n\
```rhai\nlet a = nn::linear(2, 3);\nlet b = nn::linear(2, 3);\nb.load_state_dict(a.state_dict());\nprint(a.weight.equal(b.weight));\n\
let r = b.load_state_dict(#{weight: torch::zeros([3, 2])}, #{strict: false});\nprint(r.missing_keys);\n```";
    fn load_sd(m: &mut Map, sd: Map, strict: bool) -> RResult<Map> {
        let sd: Vec<(String, tch::Tensor)> = sd
            .iter()
            .map(|(k, v)| {
                v.read_lock::<Tensor>().map(|t| (k.to_string(), t.handle())).ok_or_else(|| {
                    err(format!("load_state_dict: entry '{k}' is a {}, expected a Tensor", v.type_name()))
                })
            })
            .collect::<RResult<_>>()?;
        let r = with_dyn(m, |d| tree::load_state_dict(d, &sd, strict)).or_script()?;
        let mut out = Map::new();
        out.insert("missing_keys".into(), Dynamic::from_array(str_array(&r.missing_keys)));
        out.insert("unexpected_keys".into(), Dynamic::from_array(str_array(&r.unexpected_keys)));
        Ok(out)
    }
    reg.func("", "load_state_dict", "self, state_dict", doc, |m: &mut Map, sd: Map| load_sd(m, sd, true));
    reg.func("", "load_state_dict", "self, state_dict, opts", doc, |m: &mut Map, sd: Map, o: Map| {
        let strict = Opts::new(&o, "load_state_dict", &["strict", "assign"])?.bool_or("strict", true)?;
        load_sd(m, sd, strict)
    });
    let doc = "Puts every module in training mode (dropout active, batch norm using batch statistics) and returns the \
module (Module.train()); `train(false)` is `eval()`. Also records each module's path for error messages.\n\n\
```rhai\nlet m = #{drop: nn::dropout(0.5)};\nm.train();\nprint(m.drop.training);\n```";
    reg.func("", "train", "self", doc, |m: &mut Map| -> RResult<Map> {
        with_dyn(m, |d| tree::set_training(d, true)).or_script()?;
        Ok(m.clone())
    });
    reg.func("", "train", "self, mode", doc, |m: &mut Map, mode: bool| -> RResult<Map> {
        with_dyn(m, |d| tree::set_training(d, mode)).or_script()?;
        Ok(m.clone())
    });
    let doc =
        "Puts every module in evaluation mode (dropout off, batch norm using running statistics) and returns the \
module: PyTorch's `model.eval()`, which Rhai cannot spell (`eval` is a keyword); `model.train(false)` is the same.\n\n\
```rhai\nlet m = #{drop: nn::dropout(0.5), fc: nn::linear(2, 2)};\nm.eval_mode();\nprint(m.drop.training);\n```";
    reg.func("", "eval_mode", "self", doc, |m: &mut Map| -> RResult<Map> {
        with_dyn(m, |d| tree::set_training(d, false)).or_script()?;
        Ok(m.clone())
    });
    let doc = "Turns gradient recording of every parameter on or off (Module.requires_grad_); frozen parameters stay \
parameters. Returns the module.\n\n```rhai\nlet m = #{fc: nn::linear(2, 2)};\nm.requires_grad_(false);\nprint(m.fc.weight.requires_grad);\nprint(m.num_parameters());\n```";
    reg.func("", "requires_grad_", "self", doc, |m: &mut Map| -> RResult<Map> {
        with_dyn(m, |d| tree::requires_grad_(d, true)).or_script()?;
        Ok(m.clone())
    });
    reg.func("", "requires_grad_", "self, requires_grad", doc, |m: &mut Map, b: bool| -> RResult<Map> {
        with_dyn(m, |d| tree::requires_grad_(d, b)).or_script()?;
        Ok(m.clone())
    });
    let doc = "Moves every parameter and buffer to a device and/or casts the floating-point ones to a dtype, in place: \
tensors keep their identity, so optimizers created before still hold them (Module.to). Takes a device or dtype name, or \
`#{device, dtype}`. Returns the module.\n\n```rhai\nlet m = #{fc: nn::linear(2, 2)};\nm.to(\"float64\");\nprint(m.fc.weight.dtype);\nm.to(#{device: \"cpu\", dtype: \"float32\"});\nprint(m.fc.weight.dtype);\n```";
    reg.func("", "to", "self, target", doc, |m: &mut Map, s: &str| -> RResult<Map> {
        let (dev, kind) = match parse_device(s) {
            Ok(d) => (Some(d), None),
            Err(_) => match parse_dtype(s) {
                Ok(k) => (None, Some(k)),
                Err(_) => {
                    return Err(err(format!(
                        "to: '{s}' is neither a device (\"cpu\", \"cuda\", \"cuda:N\") nor a dtype (\"float32\", …)"
                    )))
                }
            },
        };
        with_dyn(m, |d| tree::to(d, dev, kind)).or_script()?;
        Ok(m.clone())
    });
    reg.func("", "to", "self, opts", doc, |m: &mut Map, o: Map| -> RResult<Map> {
        let o = Opts::new(&o, "to", &["device", "dtype"])?;
        let dev = o.str_opt("device")?.map(|s| parse_device(&s)).transpose().or_script()?;
        let kind = o.str_opt("dtype")?.map(|s| parse_dtype(&s)).transpose().or_script()?;
        with_dyn(m, |d| tree::to(d, dev, kind)).or_script()?;
        Ok(m.clone())
    });
    let doc =
        "Zeroes the gradients of all parameters (Module.zero_grad).\n\n```rhai\nlet m = #{fc: nn::linear(2, 1)};\n\
m.fc.forward(torch::ones([1, 2])).sum().backward();\nm.zero_grad();\nprint(m.fc.weight.grad.abs().sum().item());\n```";
    reg.func("", "zero_grad", "self", doc, |m: &mut Map| -> RResult<()> {
        with_dyn(m, |d| tree::zero_grad(d)).or_script()
    });
    let doc = "Number of parameter elements; `num_parameters(true)` counts only trainable ones.\n\n```rhai\nlet m = #{fc: nn::linear(4, 2)};\nprint(m.num_parameters());\n```";
    reg.func("", "num_parameters", "self", doc, |m: &mut Map| -> RResult<INT> {
        with_dyn(m, |d| tree::num_parameters(d, false)).or_script()
    });
    reg.func("", "num_parameters", "self, only_trainable", doc, |m: &mut Map, b: bool| -> RResult<INT> {
        with_dyn(m, |d| tree::num_parameters(d, b)).or_script()
    });
    let doc = "Calls `f(module)` on every submodule, children first, then on the module itself (Module.apply), \
for custom initialization or to set a mode: `f` gets the submodule itself, not a copy, so `mod.train(false)` or \
`mod.flag = …` changes the model, as in PyTorch. Returns the module.\n\n\
```rhai\nlet m = #{a: nn::linear(2, 2), bn: nn::batch_norm1d(2)};\nm.apply(|mod| if mod._type == \"Linear\" { init::zeros_(mod.bias); });\nprint(m.a.bias);\n\
m.apply(|mod| if mod._type == \"BatchNorm1d\" { mod.train(false); });\nprint([m.a.training, m.bn.training]);\n```";
    reg.func("", "apply", "self, f", doc, |ctx: NativeCallContext, m: &mut Map, f: FnPtr| -> RResult<Map> {
        // each submodule goes to `f` as a shared value (as lt passes a hook's checkpoint), so the
        // changes `f` makes through its parameter are written back into the tree
        let mut failed = None;
        let walked = with_dyn(m, |d| {
            tree::try_walk_modules_mut(d, true, &mut |_, sub| {
                let shared = Dynamic::from_map(std::mem::take(sub)).into_shared();
                let r = f.call_raw(&ctx, None, [shared.clone()]);
                *sub = shared.read_lock::<Map>().map(|m| m.clone()).unwrap_or_default();
                r.map(|_| ()).map_err(|e| {
                    failed = Some(e);
                    String::new()
                })
            })
        });
        if let Some(e) = failed {
            return Err(e);
        }
        walked.or_script()?;
        Ok(m.clone())
    });
    let doc = "The model summary table (Lightning's ModelSummary): Name, Type, Params, Mode for modules down to \
`max_depth` (default 1; -1 for all), then trainable, non-trainable and total parameters and their size in MB. \
Also `nn::summary(model)`.\n\n```rhai\nlet m = #{encoder: nn::sequential([nn::linear(4, 8), nn::relu()]), head: nn::linear(8, 2)};\nprint(m.summary());\nprint(m.summary(#{max_depth: 2}));\n```";
    fn summary_opts(d: &Dynamic, o: &Map) -> RResult<String> {
        let depth = Opts::new(o, "summary", &["max_depth"])?.i64_or("max_depth", 1)?;
        tree::summary(d, depth).or_script()
    }
    reg.func("", "summary", "self", doc, |m: &mut Map| -> RResult<String> {
        with_dyn(m, |d| tree::summary(d, 1)).or_script()
    });
    reg.func("", "summary", "self, opts", doc, |m: &mut Map, o: Map| -> RResult<String> {
        with_dyn(m, |d| summary_opts(d, &o))
    });
    reg.func("nn", "summary", "model", doc, |d: Dynamic| -> RResult<String> { tree::summary(&d, 1).or_script() });
    reg.func("nn", "summary", "model, opts", doc, |d: Dynamic, o: Map| summary_opts(&d, &o));

    let doc = "Marks a tensor as a parameter: a leaf sharing `t`'s data that requires grad (nn.Parameter). Stored in a \
script's module map, it is found by `parameters()` and saved in `state_dict()`.\n\n```rhai\nlet m = #{scale: nn::parameter(torch::ones([3]))};\nprint(m.named_parameters()[0][0]);\n```";
    reg.func("nn", "parameter", "t", doc, |t: T| -> RResult<T> {
        if !crate::tensor::options::is_floating(t.kind()) {
            return Err(err("nn::parameter: only floating point tensors can require gradients"));
        }
        ok(t.f_detach().map(|x| x.set_requires_grad(true)).map_err(TensorError::from))
    });
}

fn register_core_layers(reg: &mut Registry) {
    // ---- Linear ----
    let doc = "A fully connected layer `y = x Wᵀ + b` (nn.Linear). Options: `bias` (default true), `dtype`, `device`. \
Weight and bias are drawn like PyTorch's (U(-1/√in, 1/√in)) from the seeded generator.\n\n\
```rhai\ntorch::manual_seed(0);\nlet fc = nn::linear(4, 2);\nprint(fc.weight.shape);\nprint(fc.forward(torch::ones([3, 4])).shape);\n```";
    fn make_linear(i: INT, o: INT, m: &Map) -> RResult<Map> {
        let opts = Opts::new(m, "nn::linear", &["bias", "dtype", "device"])?;
        if i < 0 || o < 0 {
            return Err(err(format!("nn::linear: in_features and out_features must be non-negative, got ({i}, {o})")));
        }
        linear_module(i, o, opts.bool_or("bias", true)?, param_opts(&opts)?)
    }
    reg.volatile("nn", "linear", "in_features, out_features", doc, |i: INT, o: INT| make_linear(i, o, &Map::new()));
    reg.volatile("nn", "linear", "in_features, out_features, opts", doc, |i: INT, o: INT, m: Map| {
        make_linear(i, o, &m)
    });
    reg.func(
        "",
        "__nn_linear_forward",
        "self, input",
        &fwd_doc("nn::linear", "let fc = nn::linear(3, 2);\nprint(fc.forward(torch::ones([3])).shape);"),
        |m: &mut Map, x: T| -> RResult<T> {
            let w = tree::tensor(m, "weight").or_script()?;
            let b = tree::opt_tensor(m, "bias").or_script()?;
            linear::forward(&x, &w, b.as_deref()).map(Tensor::new).map_err(|e| {
                let desc =
                    format!("{}→{}", w.size().get(1).copied().unwrap_or(0), w.size().first().copied().unwrap_or(0));
                layer_err(m, &desc, e)
            })
        },
    );

    // ---- Bilinear ----
    let doc = "A bilinear layer `y = x1ᵀ A x2 + b` (nn.Bilinear). Options: `bias`, `dtype`, `device`. Forward takes two inputs.\n\n\
```rhai\nlet bl = nn::bilinear(3, 4, 2);\nprint(bl.forward(torch::ones([5, 3]), torch::ones([5, 4])).shape);\n```";
    fn make_bilinear(a: INT, b: INT, o: INT, m: &Map) -> RResult<Map> {
        let opts = Opts::new(m, "nn::bilinear", &["bias", "dtype", "device"])?;
        if a < 0 || b < 0 || o < 0 {
            return Err(err("nn::bilinear: feature sizes must be non-negative"));
        }
        let (w, bias) = linear::bilinear_init(a, b, o, opts.bool_or("bias", true)?, param_opts(&opts)?).or_script()?;
        Ok(tree::ModuleBuilder::new("Bilinear", "__nn_bilinear_forward")
            .param("weight", Some(w))
            .param("bias", bias)
            .set("in1_features", a)
            .set("in2_features", b)
            .set("out_features", o)
            .build())
    }
    reg.volatile("nn", "bilinear", "in1_features, in2_features, out_features", doc, |a: INT, b: INT, o: INT| {
        make_bilinear(a, b, o, &Map::new())
    });
    reg.volatile(
        "nn",
        "bilinear",
        "in1_features, in2_features, out_features, opts",
        doc,
        |a: INT, b: INT, o: INT, m: Map| make_bilinear(a, b, o, &m),
    );
    reg.func(
        "",
        "__nn_bilinear_forward",
        "self, input1, input2",
        &fwd_doc(
            "nn::bilinear",
            "let bl = nn::bilinear(2, 2, 1);\nprint(bl.forward(torch::ones([1, 2]), torch::ones([1, 2])).shape);",
        ),
        |m: &mut Map, x1: T, x2: T| -> RResult<T> {
            let w = tree::tensor(m, "weight").or_script()?;
            let b = tree::opt_tensor(m, "bias").or_script()?;
            linear::bilinear(&x1, &x2, &w, b.as_deref()).map(Tensor::new).map_err(|e| {
                let s = w.size();
                layer_err(m, &format!("{}×{}→{}", s[1], s[2], s[0]), e)
            })
        },
    );

    // ---- Sequential ----
    let doc = "Chains modules: the output of each is the input of the next (nn.Sequential). Children are in the `layers` \
array and are named `0`, `1`, … in the state_dict, as in PyTorch (`encoder.0.weight`).\n\n\
```rhai\nlet net = nn::sequential([nn::linear(4, 8), nn::relu(), nn::linear(8, 2)]);\nprint(net.forward(torch::ones([3, 4])).shape);\nprint(net.state_dict().keys());\nprint(net.layers[0].weight.shape);\n```";
    reg.volatile("nn", "sequential", "layers", doc, |a: Array| -> RResult<Map> {
        for (i, l) in a.iter().enumerate() {
            let good = l.read_lock::<Map>().is_some_and(|m| m.get("forward").is_some_and(|f| f.is_fnptr()));
            if !good {
                return Err(err(format!(
                    "nn::sequential: element {i} is a {}, expected a module (a map with a forward function)",
                    l.type_name()
                )));
            }
        }
        let mut m = tree::ModuleBuilder::new("Sequential", "__nn_sequential_forward").build();
        m.insert("layers".into(), Dynamic::from_array(a));
        m.insert("_inline".into(), Dynamic::from_array(vec![Dynamic::from("layers".to_string())]));
        Ok(m)
    });
    reg.func(
        "",
        "__nn_sequential_forward",
        "self, input",
        &fwd_doc("nn::sequential", "let s = nn::sequential([nn::identity()]);\nprint(s.forward(torch::ones([2])));"),
        |ctx: NativeCallContext, m: &mut Map, x: Dynamic| -> RResult<Dynamic> {
            let layers = m.get_mut("layers").ok_or_else(|| err("Sequential: missing entry 'layers'"))?;
            let mut arr =
                layers.write_lock::<Array>().ok_or_else(|| err("Sequential: entry 'layers' must be an array"))?;
            let mut x = x;
            for l in arr.iter_mut() {
                x = call_forward(&ctx, l, vec![x])?;
            }
            Ok(x)
        },
    );

    // ---- Identity / Flatten / Unflatten ----
    let doc = "A module that returns its input (nn.Identity).\n\n```rhai\nprint(nn::identity().forward(torch::ones([2])));\n```";
    reg.volatile("nn", "identity", "", doc, || tree::ModuleBuilder::new("Identity", "__nn_identity_forward").build());
    reg.func(
        "",
        "__nn_identity_forward",
        "self, input",
        &fwd_doc("nn::identity", "print(nn::identity().forward(torch::zeros([1])));"),
        |_m: &mut Map, x: Dynamic| x,
    );

    let doc = "Flattens dims `start_dim` (default 1) to `end_dim` (default -1) (nn.Flatten); `nn::flatten(start_dim, end_dim)` or \
`nn::flatten(#{start_dim, end_dim})`.\n\n```rhai\nprint(nn::flatten().forward(torch::ones([2, 3, 4])).shape);\nprint(nn::flatten(0, 1).forward(torch::ones([2, 3, 4])).shape);\n```";
    fn make_flatten(s: INT, e: INT) -> Map {
        tree::ModuleBuilder::new("Flatten", "__nn_flatten_forward").set("start_dim", s).set("end_dim", e).build()
    }
    reg.volatile("nn", "flatten", "", doc, || make_flatten(1, -1));
    reg.volatile("nn", "flatten", "start_dim, end_dim", doc, make_flatten);
    reg.volatile("nn", "flatten", "opts", doc, |o: Map| -> RResult<Map> {
        let o = Opts::new(&o, "nn::flatten", &["start_dim", "end_dim"])?;
        Ok(make_flatten(o.i64_or("start_dim", 1)?, o.i64_or("end_dim", -1)?))
    });
    reg.func(
        "",
        "__nn_flatten_forward",
        "self, input",
        &fwd_doc("nn::flatten", "print(nn::flatten().forward(torch::ones([2, 2, 2])).shape);"),
        |m: &mut Map, x: T| -> RResult<T> {
            let (s, e) = (tree::int(m, "start_dim").or_script()?, tree::int(m, "end_dim").or_script()?);
            x.f_flatten(s, e).map(Tensor::new).map_err(|e| layer_err(m, "", e.into()))
        },
    );
    let doc = "Unflattens dim `dim` into `sizes` (nn.Unflatten).\n\n```rhai\nprint(nn::unflatten(1, [2, 3]).forward(torch::ones([4, 6])).shape);\n```";
    reg.volatile("nn", "unflatten", "dim, unflattened_size", doc, |d: INT, s: Dynamic| -> RResult<Map> {
        let sizes = int_list(&s, "nn::unflatten")?;
        Ok(tree::ModuleBuilder::new("Unflatten", "__nn_unflatten_forward")
            .set("dim", d)
            .set_ints("unflattened_size", &sizes)
            .build())
    });
    reg.func(
        "",
        "__nn_unflatten_forward",
        "self, input",
        &fwd_doc("nn::unflatten", "print(nn::unflatten(0, [2, 2]).forward(torch::ones([4])).shape);"),
        |m: &mut Map, x: T| -> RResult<T> {
            let d = tree::int(m, "dim").or_script()?;
            let s = tree::ints(m, "unflattened_size").or_script()?;
            x.f_unflatten(d, s.as_slice()).map(Tensor::new).map_err(|e| layer_err(m, &format!("{s:?}"), e.into()))
        },
    );

    // ---- Dropout ----
    let doc = "Randomly zeroes elements with probability `p` (default 0.5) during training and scales the rest by \
1/(1-p) (nn.Dropout); identity in eval mode (`model.train(false)` / `model.eval_mode()`).\n\n```rhai\ntorch::manual_seed(0);\nlet d = nn::dropout(0.5);\nprint(d.forward(torch::ones([6])));\nd.eval_mode();\nprint(d.forward(torch::ones([3])));\n```";
    fn make_dropout(ty: &str, p: f64) -> RResult<Map> {
        fun::check_p(p).or_script()?;
        let f = if ty == "Dropout" { "__nn_dropout_forward" } else { "__nn_feature_dropout_forward" };
        Ok(tree::ModuleBuilder::new(ty, f).set("p", p).build())
    }
    reg.volatile("nn", "dropout", "", doc, || make_dropout("Dropout", 0.5));
    reg.volatile("nn", "dropout", "p", doc, |p: Dynamic| make_dropout("Dropout", number(&p, "nn::dropout")?));
    reg.func(
        "",
        "__nn_dropout_forward",
        "self, input",
        &fwd_doc("nn::dropout", "let d = nn::dropout(0.0);\nprint(d.forward(torch::ones([2])));"),
        |m: &mut Map, x: T| -> RResult<T> {
            let p = tree::float(m, "p").or_script()?;
            fun::dropout(&x, p, tree::training(m)).map(Tensor::new).map_err(|e| layer_err(m, &format!("p={p}"), e))
        },
    );
    for (name, ty, nd) in [
        ("dropout1d", "Dropout1d", "2 or 3"),
        ("dropout2d", "Dropout2d", "3 or 4"),
        ("dropout3d", "Dropout3d", "4 or 5"),
    ] {
        let doc = format!("Zeroes whole channels with probability `p` (default 0.5) during training (nn.{ty}); expects {nd}-dim input; identity in eval mode.\n\n```rhai\ntorch::manual_seed(0);\nlet d = nn::{name}(0.5);\nprint(d.p);\n```");
        reg.volatile("nn", name, "", &doc, move || make_dropout(ty, 0.5));
        reg.volatile("nn", name, "p", &doc, move |p: Dynamic| make_dropout(ty, number(&p, "nn::dropout")?));
    }
    reg.func(
        "",
        "__nn_feature_dropout_forward",
        "self, input",
        &fwd_doc(
            "nn::dropout2d",
            "let d = nn::dropout2d(0.5);\nd.eval_mode();\nprint(d.forward(torch::ones([1, 2, 2, 2])).shape);",
        ),
        |m: &mut Map, x: T| -> RResult<T> {
            let p = tree::float(m, "p").or_script()?;
            let ty = tree::type_name(m);
            let ok_dims: &[usize] = match ty.as_str() {
                "Dropout1d" => &[2, 3],
                "Dropout2d" => &[3, 4],
                _ => &[4, 5],
            };
            let run = || -> crate::tensor::Result<tch::Tensor> {
                layers::expect_ndim(&x, ok_dims, "")?;
                fun::check_p(p)?;
                // an unbatched input is one sample: add and drop the batch dim
                let batched = x.dim() == ok_dims[1];
                let inp = if batched { x.handle() } else { x.f_unsqueeze(0)? };
                let y = inp.f_feature_dropout(p, tree::training(m))?;
                Ok(if batched { y } else { y.f_squeeze_dim(0)? })
            };
            run().map(Tensor::new).map_err(|e| layer_err(m, &format!("p={p}"), e))
        },
    );
}

/// Parses an activation from its script name and a lookup of its options.
fn parse_act(name: &str, get: &dyn Fn(&str) -> Option<Dynamic>) -> RResult<Act> {
    let f = |k: &str, d: f64| -> RResult<f64> {
        match get(k) {
            Some(v) => number(&v, name)
                .map_err(|_| err(format!("{name}: option '{k}' must be a number, got {}", v.type_name()))),
            None => Ok(d),
        }
    };
    let i = |k: &str, d: Option<i64>| -> RResult<i64> {
        match get(k) {
            Some(v) => v.as_int().map_err(|_| err(format!("{name}: '{k}' must be an int"))),
            None => d.ok_or_else(|| err(format!("{name}: missing '{k}' (the dimension to normalize over)"))),
        }
    };
    Ok(match name {
        "relu" => Act::Relu,
        "relu6" => Act::Relu6,
        "gelu" => {
            let a = match get("approximate") {
                None => "none".to_string(),
                Some(v) => v
                    .clone()
                    .into_immutable_string()
                    .map_err(|_| err(format!("gelu: option 'approximate' must be a string, got {}", v.type_name())))?
                    .to_string(),
            };
            match a.as_str() {
                "none" => Act::Gelu { tanh: false },
                "tanh" => Act::Gelu { tanh: true },
                o => return Err(err(format!("gelu: approximate must be \"none\" or \"tanh\", got \"{o}\""))),
            }
        }
        "silu" => Act::Silu,
        "mish" => Act::Mish,
        "tanh" => Act::Tanh,
        "sigmoid" => Act::Sigmoid,
        "hardtanh" => Act::Hardtanh { min: f("min_val", -1.0)?, max: f("max_val", 1.0)? },
        "hardsigmoid" => Act::Hardsigmoid,
        "hardswish" => Act::Hardswish,
        "leaky_relu" => Act::LeakyRelu { slope: f("negative_slope", 0.01)? },
        "elu" => Act::Elu { alpha: f("alpha", 1.0)? },
        "celu" => Act::Celu { alpha: f("alpha", 1.0)? },
        "selu" => Act::Selu,
        "softplus" => Act::Softplus { beta: f("beta", 1.0)?, threshold: f("threshold", 20.0)? },
        "softsign" => Act::Softsign,
        "logsigmoid" => Act::Logsigmoid,
        "tanhshrink" => Act::Tanhshrink,
        "softmax" => Act::Softmax { dim: i("dim", None)? },
        "log_softmax" => Act::LogSoftmax { dim: i("dim", None)? },
        "glu" => Act::Glu { dim: i("dim", Some(-1))? },
        other => return Err(err(format!("unknown activation '{other}'"))),
    })
}

/// (script name, option keys, the positional option if any)
const ACTIVATIONS: &[(&str, &[&str], Option<&str>)] = &[
    ("relu", &[], None),
    ("relu6", &[], None),
    ("gelu", &["approximate"], Some("approximate")),
    ("silu", &[], None),
    ("mish", &[], None),
    ("tanh", &[], None),
    ("sigmoid", &[], None),
    ("hardtanh", &["min_val", "max_val"], None),
    ("hardsigmoid", &[], None),
    ("hardswish", &[], None),
    ("leaky_relu", &["negative_slope"], Some("negative_slope")),
    ("elu", &["alpha"], Some("alpha")),
    ("celu", &["alpha"], Some("alpha")),
    ("selu", &[], None),
    ("softplus", &["beta", "threshold"], Some("beta")),
    ("softsign", &[], None),
    ("logsigmoid", &[], None),
    ("tanhshrink", &[], None),
    ("softmax", &["dim"], Some("dim")),
    ("log_softmax", &["dim"], Some("dim")),
    ("glu", &["dim"], Some("dim")),
];

fn make_act(name: &'static str, keys: &'static [&'static str], o: &Map) -> RResult<Map> {
    let what = format!("nn::{name}");
    Opts::new(o, &what, keys)?;
    let act = parse_act(name, &|k| o.get(k).filter(|v| !v.is_unit()).cloned())?;
    let mut b =
        tree::ModuleBuilder::new(activation::type_name(&act), "__nn_activation_forward").set("_fn", name.to_string());
    for k in keys {
        if let Some(v) = o.get(*k) {
            b = b.set(k, v.clone());
        }
    }
    Ok(b.build())
}

fn register_activations(reg: &mut Registry) {
    for &(name, keys, positional) in ACTIVATIONS {
        let needs_dim = matches!(name, "softmax" | "log_softmax");
        let ex_arg = if needs_dim { "-1" } else { "" };
        let opts_text = if keys.is_empty() {
            String::new()
        } else {
            format!(" Options: {}.", keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))
        };
        let layer_doc = format!(
            "The `{name}` activation as a module (nn.{}).{opts_text}\n\n```rhai\nlet act = nn::{name}({ex_arg});\nprint(act.forward(torch::tensor([[-1.0, 0.5], [2.0, -0.1]])));\n```",
            activation::type_name(&parse_act(name, &|k| if k == "dim" { Some(Dynamic::from_int(-1)) } else { None }).unwrap_or(Act::Relu))
        );
        if !needs_dim {
            reg.volatile("nn", name, "", &layer_doc, move || make_act(name, keys, &Map::new()));
        }
        reg.volatile("nn", name, "opts", &layer_doc, move |o: Map| make_act(name, keys, &o));
        if let Some(p) = positional {
            let mk = move |v: Dynamic| {
                let mut o = Map::new();
                o.insert(p.into(), v);
                make_act(name, keys, &o)
            };
            reg.volatile("nn", name, p, &layer_doc, move |v: INT| mk(Dynamic::from_int(v)));
            if p != "dim" {
                reg.volatile("nn", name, p, &layer_doc, move |v: FLOAT| mk(Dynamic::from_float(v)));
            }
        }
        // functional form
        let f_doc = format!(
            "The `{name}` activation (F.{name}).{opts_text}\n\n```rhai\nprint(F::{name}(torch::tensor([[-1.0, 0.5], [2.0, -0.1]]){}));\n```",
            if needs_dim { ", -1" } else { "" }
        );
        let run = move |x: &Tensor, o: &Map| -> RResult<Tensor> {
            Opts::new(o, &format!("F::{name}"), keys)?;
            let act = parse_act(name, &|k| o.get(k).filter(|v| !v.is_unit()).cloned())?;
            ok(activation::apply(&act, x))
        };
        if !needs_dim {
            reg.func("F", name, "input", &f_doc, move |x: T| run(&x, &Map::new()));
        }
        reg.func("F", name, "input, opts", &f_doc, move |x: T, o: Map| run(&x, &o));
        if let Some(p) = positional {
            let one = move |x: &Tensor, v: Dynamic| {
                let mut o = Map::new();
                o.insert(p.into(), v);
                run(x, &o)
            };
            reg.func("F", name, &format!("input, {p}"), &f_doc, move |x: T, v: INT| one(&x, Dynamic::from_int(v)));
            if p != "dim" {
                reg.func("F", name, &format!("input, {p}"), &f_doc, move |x: T, v: FLOAT| {
                    one(&x, Dynamic::from_float(v))
                });
            }
        }
    }
    let doc = fwd_doc(
        "the activation layers (nn::relu() …)",
        "let a = nn::leaky_relu(0.2);\nprint(a.forward(torch::tensor([-1.0, 1.0])));",
    );
    reg.func("", "__nn_activation_forward", "self, input", &doc, |m: &mut Map, x: T| -> RResult<T> {
        let name = tree::string(m, "_fn").or_script()?;
        let act = parse_act(&name, &|k| m.get(k).filter(|v| !v.is_unit()).cloned())?;
        activation::apply(&act, &x).map(Tensor::new).map_err(|e| layer_err(m, "", e))
    });
}

fn reduction_of(o: &Opts) -> RResult<tch::Reduction> {
    fun::reduction(&o.str_or("reduction", "mean")?).or_script()
}

fn register_losses(reg: &mut Registry) {
    let doc = "Cross entropy between logits (N, C, …) and class indices (N, …) or class probabilities (same shape as the \
input) (F.cross_entropy). Options: `weight`, `ignore_index` (-100), `reduction` (\"mean\", \"sum\", \"none\"), `label_smoothing`.\n\n\
```rhai\nlet logits = torch::tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]]);\nprint(F::cross_entropy(logits, torch::tensor([0, 2])));\nprint(F::cross_entropy(logits, torch::tensor([0, 2]), #{label_smoothing: 0.1, reduction: \"sum\"}));\n```";
    fn class_opts(o: &Map, what: &str) -> RResult<ClassLossOpts> {
        let o = Opts::new(o, what, &["weight", "ignore_index", "reduction", "label_smoothing"])?;
        Ok(ClassLossOpts {
            weight: o.tensor_opt("weight")?.map(|t| t.handle()),
            ignore_index: o.i64_or("ignore_index", -100)?,
            reduction: reduction_of(&o)?,
            label_smoothing: o.f64_or("label_smoothing", 0.0)?,
        })
    }
    reg.func("F", "cross_entropy", "input, target", doc, |x: T, y: T| {
        ok(fun::cross_entropy(&x, &y, &ClassLossOpts::default()))
    });
    reg.func("F", "cross_entropy", "input, target, opts", doc, |x: T, y: T, o: Map| {
        ok(fun::cross_entropy(&x, &y, &class_opts(&o, "F::cross_entropy")?))
    });
    let doc = "Negative log likelihood of log-probabilities (N, C, …) at class indices (F.nll_loss). Options: `weight`, `ignore_index`, `reduction`.\n\n\
```rhai\nlet lp = torch::tensor([[0.1, 0.9], [0.8, 0.2]]).log();\nprint(F::nll_loss(lp, torch::tensor([1, 0])));\n```";
    reg.func("F", "nll_loss", "input, target", doc, |x: T, y: T| ok(fun::nll_loss(&x, &y, &ClassLossOpts::default())));
    reg.func("F", "nll_loss", "input, target, opts", doc, |x: T, y: T, o: Map| -> RResult<T> {
        let c = class_opts(&o, "F::nll_loss")?;
        if c.label_smoothing != 0.0 {
            return Err(err("F::nll_loss: unknown option 'label_smoothing'"));
        }
        ok(fun::nll_loss(&x, &y, &c))
    });
    macro_rules! simple_loss {
        ($name:literal, $desc:literal, $extra:literal, $default:expr, $f:expr) => {{
            let doc = format!(
                "{} (F.{}). Options: `reduction` (\"mean\", \"sum\", \"none\"){}.\n\n```rhai\nlet a = torch::tensor([0.5, 2.0, -1.0]);\nlet b = torch::tensor([0.0, 2.5, 1.0]);\nprint(F::{}(a, b));\nprint(F::{}(a, b, #{{reduction: \"none\"}}));\n```",
                $desc, $name, if $extra.is_empty() { String::new() } else { format!(", `{}`", $extra) }, $name, $name
            );
            reg.func("F", $name, "input, target", &doc, |x: T, y: T| ok($f(&x, &y, tch::Reduction::Mean, $default)));
            reg.func("F", $name, "input, target, opts", &doc, |x: T, y: T, o: Map| -> RResult<T> {
                let keys: &[&str] = if $extra.is_empty() { &["reduction"] } else { &["reduction", $extra] };
                let o = Opts::new(&o, concat!("F::", $name), keys)?;
                let extra = if $extra.is_empty() { $default } else { o.f64_or($extra, $default)? };
                ok($f(&x, &y, reduction_of(&o)?, extra))
            });
        }};
    }
    simple_loss!("mse_loss", "Mean squared error", "", 0.0, |x: &Tensor, y: &Tensor, r, _e: f64| fun::mse_loss(
        x, y, r
    ));
    simple_loss!("l1_loss", "Mean absolute error", "", 0.0, |x: &Tensor, y: &Tensor, r, _e: f64| fun::l1_loss(x, y, r));
    simple_loss!(
        "smooth_l1_loss",
        "Smooth L1 loss: quadratic below `beta` (default 1.0), linear above",
        "beta",
        1.0,
        |x: &Tensor, y: &Tensor, r, e: f64| fun::smooth_l1_loss(x, y, r, e)
    );
    simple_loss!(
        "huber_loss",
        "Huber loss: quadratic below `delta` (default 1.0), linear above",
        "delta",
        1.0,
        |x: &Tensor, y: &Tensor, r, e: f64| fun::huber_loss(x, y, r, e)
    );

    let doc = "Binary cross entropy of probabilities in [0, 1] against targets of the same shape (F.binary_cross_entropy). Options: `weight`, `reduction`.\n\n\
```rhai\nprint(F::binary_cross_entropy(torch::tensor([0.9, 0.2]), torch::tensor([1.0, 0.0])));\n```";
    reg.func("F", "binary_cross_entropy", "input, target", doc, |x: T, y: T| {
        ok(fun::binary_cross_entropy(&x, &y, None, tch::Reduction::Mean))
    });
    reg.func("F", "binary_cross_entropy", "input, target, opts", doc, |x: T, y: T, o: Map| -> RResult<T> {
        let o = Opts::new(&o, "F::binary_cross_entropy", &["weight", "reduction"])?;
        let w = o.tensor_opt("weight")?;
        ok(fun::binary_cross_entropy(&x, &y, w.as_deref(), reduction_of(&o)?))
    });
    let doc = "Binary cross entropy on logits, numerically stable (F.binary_cross_entropy_with_logits). Options: `weight`, `pos_weight` (per-class weight of positives), `reduction`.\n\n\
```rhai\nlet z = torch::tensor([[1.5, -0.3]]);\nlet y = torch::tensor([[1.0, 0.0]]);\nprint(F::binary_cross_entropy_with_logits(z, y));\nprint(F::binary_cross_entropy_with_logits(z, y, #{pos_weight: torch::tensor([2.0, 1.0])}));\n```";
    reg.func("F", "binary_cross_entropy_with_logits", "input, target", doc, |x: T, y: T| {
        ok(fun::binary_cross_entropy_with_logits(&x, &y, None, None, tch::Reduction::Mean))
    });
    reg.func("F", "binary_cross_entropy_with_logits", "input, target, opts", doc, |x: T, y: T, o: Map| -> RResult<T> {
        let o = Opts::new(&o, "F::binary_cross_entropy_with_logits", &["weight", "pos_weight", "reduction"])?;
        let (w, pw) = (o.tensor_opt("weight")?, o.tensor_opt("pos_weight")?);
        ok(fun::binary_cross_entropy_with_logits(&x, &y, w.as_deref(), pw.as_deref(), reduction_of(&o)?))
    });
    let doc = "KL divergence with `input` as log-probabilities (F.kl_div). Options: `reduction` (\"mean\", \"batchmean\", \"sum\", \"none\"; default \"mean\" as in PyTorch, though \"batchmean\" is the true KL), `log_target`.\n\n\
```rhai\nlet lp = torch::tensor([[0.2, 0.8]]).log();\nlet q = torch::tensor([[0.5, 0.5]]);\nprint(F::kl_div(lp, q, #{reduction: \"batchmean\"}));\n```";
    reg.func("F", "kl_div", "input, target", doc, |x: T, y: T| ok(fun::kl_div(&x, &y, "mean", false)));
    reg.func("F", "kl_div", "input, target, opts", doc, |x: T, y: T, o: Map| -> RResult<T> {
        let o = Opts::new(&o, "F::kl_div", &["reduction", "log_target"])?;
        ok(fun::kl_div(&x, &y, &o.str_or("reduction", "mean")?, o.bool_or("log_target", false)?))
    });
}

fn register_functional(reg: &mut Registry) {
    let doc = "Dropout (F.dropout): zeroes elements with probability `p` (default 0.5) and scales the rest by 1/(1-p) when \
`training` (default true, as in PyTorch); `inplace: true` changes `input` itself. `F::dropout(x, p)` or `F::dropout(x, #{p, training, inplace})`.\n\n\
```rhai\ntorch::manual_seed(0);\nprint(F::dropout(torch::ones([4]), 0.5));\nprint(F::dropout(torch::ones([2]), #{p: 0.5, training: false}));\n```";
    reg.volatile("F", "dropout", "input", doc, |x: T| ok(fun::dropout(&x, 0.5, true)));
    reg.volatile("F", "dropout", "input, p", doc, |x: T, p: FLOAT| ok(fun::dropout(&x, p, true)));
    reg.volatile("F", "dropout", "input, opts", doc, |x: T, o: Map| -> RResult<T> {
        let o = Opts::new(&o, "F::dropout", &["p", "training", "inplace"])?;
        let (p, training) = (o.f64_or("p", 0.5)?, o.bool_or("training", true)?);
        ok(if o.bool_or("inplace", false)? { fun::dropout_(&x, p, training) } else { fun::dropout(&x, p, training) })
    });
    let doc = "Pads the last dims (F.pad): `pad` = [left, right] for the last dim, then [top, bottom] for the one before, …; \
options `mode` (\"constant\", \"reflect\", \"replicate\", \"circular\") and `value`.\n\n\
```rhai\nprint(F::pad(torch::ones([1, 2]), [1, 2]));\nprint(F::pad(torch::arange(3.0).reshape([1, 1, 3]), [2, 0], #{mode: \"reflect\"}));\n```";
    reg.func("F", "pad", "input, pad", doc, |x: T, p: Dynamic| {
        ok(fun::pad(&x, &int_list(&p, "F::pad")?, "constant", 0.0))
    });
    reg.func("F", "pad", "input, pad, opts", doc, |x: T, p: Dynamic, o: Map| -> RResult<T> {
        let o = Opts::new(&o, "F::pad", &["mode", "value"])?;
        ok(fun::pad(&x, &int_list(&p, "F::pad")?, &o.str_or("mode", "constant")?, o.f64_or("value", 0.0)?))
    });
    let doc = "One-hot encoding of int64 class indices (F.one_hot); `num_classes` defaults to max + 1.\n\n```rhai\nprint(F::one_hot(torch::tensor([0, 2]), 3));\n```";
    reg.func("F", "one_hot", "input", doc, |x: T| ok(fun::one_hot(&x, -1)));
    reg.func("F", "one_hot", "input, num_classes", doc, |x: T, n: INT| ok(fun::one_hot(&x, n)));
    let doc = "Divides by the `p`-norm (default 2) along `dim` (default 1), at least `eps` (F.normalize).\n\n```rhai\nprint(F::normalize(torch::tensor([[3.0, 4.0]])));\nprint(F::normalize(torch::tensor([[3.0, 4.0]]), #{p: 1.0, dim: -1}));\n```";
    reg.func("F", "normalize", "input", doc, |x: T| ok(fun::normalize(&x, 2.0, 1, 1e-12)));
    reg.func("F", "normalize", "input, opts", doc, |x: T, o: Map| -> RResult<T> {
        let o = Opts::new(&o, "F::normalize", &["p", "dim", "eps"])?;
        ok(fun::normalize(&x, o.f64_or("p", 2.0)?, o.i64_or("dim", 1)?, o.f64_or("eps", 1e-12)?))
    });
    let doc = "Resizes (N, C, …) input to `size` or by `scale_factor` (F.interpolate). Options: `size`, `scale_factor` \
(a number or one per spatial dim), `mode` (\"nearest\", \"linear\", \"bilinear\", \"bicubic\", \"trilinear\"), `align_corners`.\n\n\
```rhai\nlet x = torch::arange(4.0).reshape([1, 1, 2, 2]);\nprint(F::interpolate(x, #{scale_factor: 2}).shape);\nprint(F::interpolate(x, #{size: [3, 3], mode: \"bilinear\", align_corners: true}));\n```";
    reg.func("F", "interpolate", "input, opts", doc, |x: T, o: Map| -> RResult<T> {
        let o = Opts::new(
            &o,
            "F::interpolate",
            &["size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias"],
        )?;
        if o.bool_or("antialias", false)? {
            return Err(err("F::interpolate: antialias is not supported"));
        }
        if o.bool_or("recompute_scale_factor", false)? {
            return Err(err("F::interpolate: recompute_scale_factor is not supported"));
        }
        let size = o.ints_opt("size")?;
        let scale = o.numbers_opt("scale_factor")?;
        let ac = align_corners_opt(&o, "F::interpolate")?;
        ok(fun::interpolate(&x, size.as_deref(), scale.as_deref(), &o.str_or("mode", "nearest")?, ac))
    });
    let doc = "Looks up rows of `weight` at integer `indices` (F.embedding); option `padding_idx` (that row gets no gradient).\n\n\
```rhai\nlet w = torch::arange(6.0).reshape([3, 2]);\nprint(F::embedding(torch::tensor([2, 0]), w));\n```";
    reg.func("F", "embedding", "input, weight", doc, |x: T, w: T| ok(fun::embedding(&x, &w, None)));
    reg.func("F", "embedding", "input, weight, opts", doc, |x: T, w: T, o: Map| -> RResult<T> {
        let o = Opts::new(&o, "F::embedding", &["padding_idx"])?;
        ok(fun::embedding(&x, &w, o.i64_opt("padding_idx")?))
    });
    let doc = "softmax(Q Kᵀ · scale + mask) V over the last two dims (F.scaled_dot_product_attention). Options: `attn_mask` \
(bool: true = attend; or float, added), `dropout_p`, `is_causal`, `scale` (default 1/√d), `enable_gqa` (key/value with fewer heads than the query, each serving a group of query heads).\n\n\
```rhai\nlet q = torch::randn([1, 2, 4, 8]);\nprint(F::scaled_dot_product_attention(q, q, q, #{is_causal: true}).shape);\n```";
    reg.volatile("F", "scaled_dot_product_attention", "query, key, value", doc, |q: T, k: T, v: T| {
        ok(fun::scaled_dot_product_attention(&q, &k, &v, &fun::AttentionOptions::default()))
    });
    reg.volatile(
        "F",
        "scaled_dot_product_attention",
        "query, key, value, opts",
        doc,
        |q: T, k: T, v: T, o: Map| -> RResult<T> {
            let o = Opts::new(
                &o,
                "F::scaled_dot_product_attention",
                &["attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa"],
            )?;
            let opts = fun::AttentionOptions {
                attn_mask: o.tensor_opt("attn_mask")?.map(|t| t.handle()),
                dropout_p: o.f64_or("dropout_p", 0.0)?,
                is_causal: o.bool_or("is_causal", false)?,
                scale: o.f64_opt("scale")?,
                enable_gqa: o.bool_or("enable_gqa", false)?,
            };
            ok(fun::scaled_dot_product_attention(&q, &k, &v, &opts))
        },
    );
    let doc = "`x Wᵀ + b` (F.linear).\n\n```rhai\nprint(F::linear(torch::ones([1, 2]), torch::ones([3, 2])));\nprint(F::linear(torch::ones([1, 2]), torch::ones([3, 2]), torch::zeros([3])));\n```";
    reg.func("F", "linear", "input, weight", doc, |x: T, w: T| ok(linear::forward(&x, &w, None)));
    reg.func("F", "linear", "input, weight, bias", doc, |x: T, w: T, b: T| ok(linear::forward(&x, &w, Some(&b))));
}

fn register_init(reg: &mut Registry) {
    fn done(t: T, r: crate::tensor::Result<()>) -> RResult<T> {
        r.map(|_| t).map_err(err)
    }
    let doc = "Fills with U(a, b) (default U(0, 1)) in place and returns the tensor (nn.init.uniform_).\n\n```rhai\nlet w = torch::empty([2, 2]);\ninit::uniform_(w, #{a: -0.1, b: 0.1});\nprint(w.abs().max().item() <= 0.1);\n```";
    reg.volatile("init", "uniform_", "tensor", doc, |t: T| {
        let r = init::uniform_(&t, 0.0, 1.0);
        done(t, r)
    });
    reg.volatile("init", "uniform_", "tensor, opts", doc, |t: T, o: Map| -> RResult<T> {
        let o = Opts::new(&o, "init::uniform_", &["a", "b"])?;
        let r = init::uniform_(&t, o.f64_or("a", 0.0)?, o.f64_or("b", 1.0)?);
        done(t, r)
    });
    let doc = "Fills with N(mean, std²) (default N(0, 1)) in place (nn.init.normal_).\n\n```rhai\nlet w = torch::empty([3]);\ninit::normal_(w, #{mean: 0.0, std: 0.02});\nprint(w.shape);\n```";
    reg.volatile("init", "normal_", "tensor", doc, |t: T| {
        let r = init::normal_(&t, 0.0, 1.0);
        done(t, r)
    });
    reg.volatile("init", "normal_", "tensor, opts", doc, |t: T, o: Map| -> RResult<T> {
        let o = Opts::new(&o, "init::normal_", &["mean", "std"])?;
        let r = init::normal_(&t, o.f64_or("mean", 0.0)?, o.f64_or("std", 1.0)?);
        done(t, r)
    });
    let doc = "Fills with a constant in place (nn.init.constant_).\n\n```rhai\nprint(init::constant_(torch::empty([2]), 0.5));\n```";
    reg.func("init", "constant_", "tensor, val", doc, |t: T, v: Dynamic| -> RResult<T> {
        let r = init::constant_(&t, number(&v, "init::constant_")?);
        done(t, r)
    });
    let doc = "Fills with zeros in place (nn.init.zeros_).\n\n```rhai\nprint(init::zeros_(torch::empty([2])));\n```";
    reg.func("init", "zeros_", "tensor", doc, |t: T| {
        let r = init::constant_(&t, 0.0);
        done(t, r)
    });
    let doc = "Fills with ones in place (nn.init.ones_).\n\n```rhai\nprint(init::ones_(torch::empty([2])));\n```";
    reg.func("init", "ones_", "tensor", doc, |t: T| {
        let r = init::constant_(&t, 1.0);
        done(t, r)
    });
    for (name, normal) in [("kaiming_uniform_", false), ("kaiming_normal_", true)] {
        let doc = format!("Kaiming (He) {} init in place (nn.init.{name}). Options: `a` (0), `mode` (\"fan_in\" / \"fan_out\"), `nonlinearity` (\"leaky_relu\").\n\n```rhai\nlet w = torch::empty([4, 3]);\ninit::{name}(w, #{{mode: \"fan_out\", nonlinearity: \"relu\"}});\nprint(w.shape);\n```", if normal { "normal" } else { "uniform" });
        let run = move |t: &Tensor, a: f64, mode: &str, nl: &str| {
            if normal {
                init::kaiming_normal_(t, a, mode, nl)
            } else {
                init::kaiming_uniform_(t, a, mode, nl)
            }
        };
        reg.volatile("init", name, "tensor", &doc, move |t: T| {
            let r = run(&t, 0.0, "fan_in", "leaky_relu");
            done(t, r)
        });
        reg.volatile("init", name, "tensor, opts", &doc, move |t: T, o: Map| -> RResult<T> {
            let what = format!("init::{name}");
            let o = Opts::new(&o, &what, &["a", "mode", "nonlinearity"])?;
            let r =
                run(&t, o.f64_or("a", 0.0)?, &o.str_or("mode", "fan_in")?, &o.str_or("nonlinearity", "leaky_relu")?);
            done(t, r)
        });
    }
    for (name, normal) in [("xavier_uniform_", false), ("xavier_normal_", true)] {
        let doc = format!("Xavier (Glorot) {} init in place (nn.init.{name}). Option: `gain` (1.0).\n\n```rhai\nlet w = torch::empty([4, 3]);\ninit::{name}(w, #{{gain: 1.0}});\nprint(w.shape);\n```", if normal { "normal" } else { "uniform" });
        let run =
            move |t: &Tensor, g: f64| if normal { init::xavier_normal_(t, g) } else { init::xavier_uniform_(t, g) };
        reg.volatile("init", name, "tensor", &doc, move |t: T| {
            let r = run(&t, 1.0);
            done(t, r)
        });
        reg.volatile("init", name, "tensor, opts", &doc, move |t: T, o: Map| -> RResult<T> {
            let what = format!("init::{name}");
            let o = Opts::new(&o, &what, &["gain"])?;
            let r = run(&t, o.f64_or("gain", 1.0)?);
            done(t, r)
        });
    }
    let doc = "A (semi-)orthogonal matrix in place (nn.init.orthogonal_). Option: `gain`.\n\n```rhai\nlet w = init::orthogonal_(torch::empty([3, 3]));\nprint((w @ w.t() - torch::eye(3)).abs().max().item() < 1e-5);\n```";
    reg.volatile("init", "orthogonal_", "tensor", doc, |t: T| {
        let r = init::orthogonal_(&t, 1.0);
        done(t, r)
    });
    reg.volatile("init", "orthogonal_", "tensor, opts", doc, |t: T, o: Map| -> RResult<T> {
        let o = Opts::new(&o, "init::orthogonal_", &["gain"])?;
        let r = init::orthogonal_(&t, o.f64_or("gain", 1.0)?);
        done(t, r)
    });
    let doc = "Normal N(mean, std²) truncated to [a, b] in place (nn.init.trunc_normal_). Options: `mean` (0), `std` (1), `a` (-2), `b` (2).\n\n```rhai\nlet w = init::trunc_normal_(torch::empty([100]), #{std: 0.02, a: -0.04, b: 0.04});\nprint(w.abs().max().item() <= 0.04);\n```";
    reg.volatile("init", "trunc_normal_", "tensor", doc, |t: T| {
        let r = init::trunc_normal_(&t, 0.0, 1.0, -2.0, 2.0);
        done(t, r)
    });
    reg.volatile("init", "trunc_normal_", "tensor, opts", doc, |t: T, o: Map| -> RResult<T> {
        let o = Opts::new(&o, "init::trunc_normal_", &["mean", "std", "a", "b"])?;
        let r = init::trunc_normal_(
            &t,
            o.f64_or("mean", 0.0)?,
            o.f64_or("std", 1.0)?,
            o.f64_or("a", -2.0)?,
            o.f64_or("b", 2.0)?,
        );
        done(t, r)
    });
    let doc = "The recommended gain for a nonlinearity (nn.init.calculate_gain); `param` is leaky_relu's slope.\n\n```rhai\nprint(init::calculate_gain(\"relu\"));\nprint(init::calculate_gain(\"leaky_relu\", 0.2));\n```";
    reg.func("init", "calculate_gain", "nonlinearity", doc, |s: &str| init::calculate_gain(s, None).or_script());
    reg.func("init", "calculate_gain", "nonlinearity, param", doc, |s: &str, p: Dynamic| -> RResult<FLOAT> {
        init::calculate_gain(s, Some(number(&p, "init::calculate_gain")?)).or_script()
    });
}

fn register_io(reg: &mut Registry) {
    let doc = "Saves a module's state_dict (or a state_dict map) to a safetensors file, atomically (temp file, fsync, \
rename). PyTorch reads it with `safetensors.torch.load_file`.\n\n```rhai\nlet m = #{fc: nn::linear(2, 2)};\nlet path = `${torch::temp_dir()}/lt-doc-save.safetensors`;\nnn::save(m, path);\nprint(nn::load(path).keys());\n```";
    reg.func("nn", "save", "module, path", doc, |d: Dynamic, path: &str| -> RResult<()> {
        let sd = named_tensors(&d)?;
        io::save_safetensors(std::path::Path::new(path), &sd, None).or_script()
    });
    let doc = "Reads a state_dict map (name → tensor) from a safetensors file or a PyTorch `torch.save(model.state_dict())` \
file (format detected from the content; pickle code is never run). Load it with `model.load_state_dict(nn::load(path))`.\n\n\
```rhai\nlet path = `${torch::temp_dir()}/lt-doc-load.safetensors`;\nnn::save(#{w: torch::ones([2])}, path);\nprint(nn::load(path).w);\n```";
    reg.func("nn", "load", "path", doc, |path: &str| -> RResult<Map> {
        let v = io::load_any(std::path::Path::new(path)).or_script()?;
        Ok(v.into_iter().map(|(n, t)| (n.into(), Dynamic::from(Tensor::new(t)))).collect())
    });
    let doc = "Reads the state_dict stored under `key` in a file that holds more than one: a Lightning \
checkpoint (`#{key: \"state_dict\"}`), a `torch.save({\"model\": ..., \"optimizer\": ...})` file, or a safetensors file's \
`key.*` tensors. `key` may be a path (`\"model.encoder\"`). Pickle code is never run.\n\n\
```rhai\nlet path = `${torch::temp_dir()}/lt-doc-load-key.safetensors`;\nnn::save(#{model: nn::linear(2, 2), head: nn::linear(2, 1)}, path);\nprint(nn::load(path, #{key: \"model\"}).keys());\n```";
    reg.func("nn", "load", "path, opts", doc, |path: &str, o: Map| -> RResult<Map> {
        let o = Opts::new(&o, "nn::load", &["key"])?;
        let key = o
            .str_opt("key")?
            .ok_or_else(|| err("nn::load: opts needs `key`, the entry to read (#{key: \"state_dict\"})"))?;
        let v = io::load_any_key(std::path::Path::new(path), &key).or_script()?;
        Ok(v.into_iter().map(|(n, t)| (n.into(), Dynamic::from(Tensor::new(t)))).collect())
    });
    let doc = "The system's temporary directory (for examples and scratch files).\n\n```rhai\nprint(torch::temp_dir().len() > 0);\n```";
    reg.func("torch", "temp_dir", "", doc, || std::env::temp_dir().display().to_string());
}

pub(super) fn ints_to_dyn(v: &[i64]) -> Dynamic {
    Dynamic::from_array(v.iter().map(|i| Dynamic::from_int(*i)).collect())
}

fn padding_entry(p: &Padding) -> Dynamic {
    match p {
        Padding::Explicit(v) => ints_to_dyn(v),
        Padding::Same => Dynamic::from("same".to_string()),
        Padding::Valid => Dynamic::from("valid".to_string()),
    }
}

fn parse_padding(d: Option<&Dynamic>, nd: usize, what: &str) -> RResult<Padding> {
    match d {
        None => Ok(Padding::Explicit(vec![0; nd])),
        Some(v) if v.is_string() => {
            match v.clone().into_immutable_string().map(|s| s.to_string()).unwrap_or_default().as_str() {
                "same" => Ok(Padding::Same),
                "valid" => Ok(Padding::Valid),
                o => Err(err(format!("{what}: invalid padding string '{o}', should be one of 'valid' or 'same'"))),
            }
        }
        Some(v) => {
            let p = int_list(v, what).map_err(|_| {
                err(format!(
                    "{what}: option 'padding' must be an int, an array of ints, \"same\" or \"valid\", got {}",
                    v.type_name()
                ))
            })?;
            Ok(Padding::Explicit(layers::conv::expand(&p, nd, "padding").or_script()?))
        }
    }
}

/// Reads a convolution's configuration back from its module map.
fn conv_of(m: &Map) -> RResult<Conv> {
    let nd = tree::int(m, "_nd").or_script()? as usize;
    Ok(Conv {
        nd,
        transposed: tree::boolean(m, "_transposed").or_script()?,
        in_channels: tree::int(m, "in_channels").or_script()?,
        out_channels: tree::int(m, "out_channels").or_script()?,
        kernel_size: tree::ints(m, "kernel_size").or_script()?,
        stride: tree::ints(m, "stride").or_script()?,
        padding: parse_padding(m.get("padding"), nd, "conv")?,
        dilation: tree::ints(m, "dilation").or_script()?,
        groups: tree::int(m, "groups").or_script()?,
        output_padding: tree::ints(m, "output_padding").or_script()?,
        padding_mode: tree::string(m, "padding_mode").or_script()?,
    })
}

fn register_conv_pool(reg: &mut Registry) {
    for (name, ty, nd, transposed) in [
        ("conv1d", "Conv1d", 1usize, false),
        ("conv2d", "Conv2d", 2, false),
        ("conv3d", "Conv3d", 3, false),
        ("conv_transpose1d", "ConvTranspose1d", 1, true),
        ("conv_transpose2d", "ConvTranspose2d", 2, true),
        ("conv_transpose3d", "ConvTranspose3d", 3, true),
    ] {
        let shape = match nd {
            1 => "[1, 2, 8]",
            2 => "[1, 2, 8, 8]",
            _ => "[1, 2, 4, 4, 4]",
        };
        let keys: &'static [&'static str] = if transposed {
            &["stride", "padding", "output_padding", "dilation", "groups", "bias", "padding_mode", "dtype", "device"]
        } else {
            &["stride", "padding", "dilation", "groups", "bias", "padding_mode", "dtype", "device"]
        };
        let doc = format!(
            "A {nd}-d {}convolution (nn.{ty}): `nn::{name}(in_channels, out_channels, kernel_size)` plus options {}. \
Weights are drawn like PyTorch's (kaiming_uniform with a=√5). Takes batched or unbatched input.\n\n```rhai\n\
let conv = nn::{name}(2, 4, 3, #{{stride: 1, padding: 1}});\nprint(conv.weight.shape);\nprint(conv.forward(torch::randn({shape})).shape);\n```",
            if transposed { "transposed " } else { "" },
            keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        );
        let make = move |i: INT, o: INT, k: Dynamic, m: &Map| -> RResult<Map> {
            let what = format!("nn::{name}");
            let opts = Opts::new(m, &what, keys)?;
            let ex = |key: &str, d: i64| -> RResult<Vec<i64>> {
                layers::conv::expand(&opts.ints_opt(key)?.unwrap_or_else(|| vec![d]), nd, key).or_script()
            };
            let c = Conv {
                nd,
                transposed,
                in_channels: i,
                out_channels: o,
                kernel_size: layers::conv::expand(&int_list(&k, &what)?, nd, "kernel_size").or_script()?,
                stride: ex("stride", 1)?,
                padding: parse_padding(opts.get("padding"), nd, &what)?,
                dilation: ex("dilation", 1)?,
                groups: opts.i64_or("groups", 1)?,
                output_padding: ex("output_padding", 0)?,
                padding_mode: opts.str_or("padding_mode", "zeros")?,
            };
            let (w, b) =
                c.init(opts.bool_or("bias", true)?, param_opts(&opts)?).map_err(|e| err(format!("{what}: {e}")))?;
            Ok(tree::ModuleBuilder::new(ty, "__nn_conv_forward")
                .param("weight", Some(w))
                .param("bias", b)
                .set("in_channels", i)
                .set("out_channels", o)
                .set("kernel_size", ints_to_dyn(&c.kernel_size))
                .set("stride", ints_to_dyn(&c.stride))
                .set("padding", padding_entry(&c.padding))
                .set("dilation", ints_to_dyn(&c.dilation))
                .set("groups", c.groups)
                .set("output_padding", ints_to_dyn(&c.output_padding))
                .set("padding_mode", c.padding_mode.clone())
                .set("_nd", nd as INT)
                .set("_transposed", transposed)
                .build())
        };
        reg.volatile("nn", name, "in_channels, out_channels, kernel_size", &doc, move |i: INT, o: INT, k: Dynamic| {
            make(i, o, k, &Map::new())
        });
        reg.volatile(
            "nn",
            name,
            "in_channels, out_channels, kernel_size, opts",
            &doc,
            move |i: INT, o: INT, k: Dynamic, m: Map| make(i, o, k, &m),
        );
    }
    reg.func(
        "",
        "__nn_conv_forward",
        "self, input",
        &fwd_doc(
            "the convolutions (nn::conv2d …)",
            "let c = nn::conv1d(1, 1, 2);\nprint(c.forward(torch::ones([1, 1, 4])).shape);",
        ),
        |m: &mut Map, x: T| -> RResult<T> {
            let c = conv_of(m)?;
            let w = tree::tensor(m, "weight").or_script()?;
            let b = tree::opt_tensor(m, "bias").or_script()?;
            c.forward(&x, &w, b.as_deref()).map(Tensor::new).map_err(|e| layer_err(m, &c.describe(), e))
        },
    );

    // pooling
    for (name, ty, kind, nd) in [
        ("max_pool1d", "MaxPool1d", "max", 1usize),
        ("max_pool2d", "MaxPool2d", "max", 2),
        ("avg_pool1d", "AvgPool1d", "avg", 1),
        ("avg_pool2d", "AvgPool2d", "avg", 2),
    ] {
        let keys: &'static [&'static str] = match kind {
            "max" => &["stride", "padding", "dilation", "ceil_mode", "return_indices"],
            _ if nd == 1 => &["stride", "padding", "ceil_mode", "count_include_pad"],
            _ => &["stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"],
        };
        let shape = if nd == 1 { "[1, 2, 6]" } else { "[1, 2, 6, 6]" };
        let doc = format!(
            "{}-pooling over {nd} spatial dim(s) (nn.{ty}): `nn::{name}(kernel_size)` plus options {} (stride defaults to the kernel size).{}\n\n\
```rhai\nlet pool = nn::{name}(2);\nprint(pool.forward(torch::randn({shape})).shape);\nprint(nn::{name}(3, #{{stride: 1, padding: 1}}).forward(torch::randn({shape})).shape);\n```",
            if kind == "max" { "Max" } else { "Average" },
            keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
            if kind == "max" {
                " With `return_indices: true` the forward returns [output, indices] (the input for `nn::max_unpool2d`)."
            } else {
                ""
            }
        );
        let make = move |k: Dynamic, m: &Map| -> RResult<Map> {
            let what = format!("nn::{name}");
            let o = Opts::new(m, &what, keys)?;
            let stride = o.ints_opt("stride")?;
            let mut p = Pool::new(
                kind,
                nd,
                &int_list(&k, &what)?,
                stride.as_deref(),
                &o.ints_opt("padding")?.unwrap_or_else(|| vec![0]),
                &o.ints_opt("dilation")?.unwrap_or_else(|| vec![1]),
            )
            .map_err(|e| err(format!("{what}: {e}")))?;
            p.ceil_mode = o.bool_or("ceil_mode", false)?;
            p.count_include_pad = o.bool_or("count_include_pad", true)?;
            p.divisor_override = o.i64_opt("divisor_override")?;
            let b = tree::ModuleBuilder::new(ty, "__nn_pool_forward")
                .set("kernel_size", ints_to_dyn(&p.kernel_size))
                .set("stride", ints_to_dyn(&p.stride))
                .set("padding", ints_to_dyn(&p.padding))
                .set("dilation", ints_to_dyn(&p.dilation))
                .set("ceil_mode", p.ceil_mode)
                .set("count_include_pad", p.count_include_pad)
                .set("divisor_override", p.divisor_override.map(Dynamic::from_int).unwrap_or(Dynamic::UNIT))
                .set("_kind", kind.to_string())
                .set("_nd", nd as INT);
            let b = if kind == "max" { b.set("return_indices", o.bool_or("return_indices", false)?) } else { b };
            Ok(b.build())
        };
        reg.volatile("nn", name, "kernel_size", &doc, move |k: Dynamic| make(k, &Map::new()));
        reg.volatile("nn", name, "kernel_size, opts", &doc, move |k: Dynamic, m: Map| make(k, &m));
    }
    for (name, ty, kind, nd) in [
        ("adaptive_avg_pool1d", "AdaptiveAvgPool1d", "adaptive_avg", 1usize),
        ("adaptive_avg_pool2d", "AdaptiveAvgPool2d", "adaptive_avg", 2),
        ("adaptive_max_pool1d", "AdaptiveMaxPool1d", "adaptive_max", 1),
        ("adaptive_max_pool2d", "AdaptiveMaxPool2d", "adaptive_max", 2),
    ] {
        let shape = if nd == 1 { "[1, 2, 7]" } else { "[1, 2, 7, 5]" };
        let doc = format!(
            "{} pooling to a fixed output size (nn.{ty}): `output_size` is one int for every spatial dim or one per dim.\n\n\
```rhai\nprint(nn::{name}(3).forward(torch::randn({shape})).shape);\n```",
            if kind == "adaptive_max" { "Max" } else { "Average" }
        );
        reg.volatile("nn", name, "output_size", &doc, move |s: Dynamic| -> RResult<Map> {
            let out = int_list(&s, name)?;
            layers::conv::expand(&out, nd, "output_size").map_err(|e| err(format!("nn::{name}: {e}")))?;
            if out.iter().any(|o| *o < 0) {
                return Err(err(format!("nn::{name}: output_size must be non-negative, got {out:?}")));
            }
            // kept as given (an int or a list), as PyTorch keeps it and its repr shows it
            let given = if s.is_int() { s.clone() } else { ints_to_dyn(&out) };
            Ok(tree::ModuleBuilder::new(ty, "__nn_pool_forward")
                .set("output_size", given)
                .set("_kind", kind.to_string())
                .set("_nd", nd as INT)
                .build())
        });
    }
    let doc = "Max pooling to a fixed output size (F.adaptive_max_pool2d); `output_size` is an int or [h, w].\n\n\
```rhai\nprint(F::adaptive_max_pool2d(torch::arange(16.0).reshape([1, 1, 4, 4]), 2));\n```";
    reg.func("F", "adaptive_max_pool2d", "input, output_size", doc, |x: T, s: Dynamic| -> RResult<T> {
        let out = layers::conv::expand(&int_list(&s, "F::adaptive_max_pool2d")?, 2, "output_size").or_script()?;
        x.f_adaptive_max_pool2d(out.as_slice()).map(|r| Tensor::new(r.0)).map_err(err)
    });
    reg.func(
        "",
        "__nn_pool_forward",
        "self, input",
        &fwd_doc(
            "the pooling layers (nn::max_pool2d …)",
            "print(nn::max_pool1d(2).forward(torch::arange(4.0).reshape([1, 1, 4])));",
        ),
        |m: &mut Map, x: T| -> RResult<Dynamic> {
            let kind = tree::string(m, "_kind").or_script()?;
            let nd = tree::int(m, "_nd").or_script()? as usize;
            let p = if kind.starts_with("adaptive") {
                Pool {
                    kind,
                    nd,
                    kernel_size: vec![],
                    stride: vec![],
                    padding: vec![],
                    dilation: vec![],
                    ceil_mode: false,
                    count_include_pad: true,
                    divisor_override: None,
                    output_size: layers::conv::expand(&tree::ints(m, "output_size").or_script()?, nd, "output_size")
                        .map_err(|e| layer_err(m, "", e))?,
                }
            } else {
                Pool {
                    kind,
                    nd,
                    kernel_size: tree::ints(m, "kernel_size").or_script()?,
                    stride: tree::ints(m, "stride").or_script()?,
                    padding: tree::ints(m, "padding").or_script()?,
                    dilation: tree::ints(m, "dilation").or_script()?,
                    ceil_mode: tree::boolean(m, "ceil_mode").or_script()?,
                    count_include_pad: tree::boolean(m, "count_include_pad").or_script()?,
                    divisor_override: m.get("divisor_override").and_then(|v| v.as_int().ok()),
                    output_size: vec![],
                }
            };
            if m.get("return_indices").and_then(|v| v.as_bool().ok()) == Some(true) {
                let (y, i) = p.forward_with_indices(&x).map_err(|e| layer_err(m, "", e))?;
                return Ok(Dynamic::from_array(vec![Dynamic::from(Tensor::new(y)), Dynamic::from(Tensor::new(i))]));
            }
            p.forward(&x).map(|y| Dynamic::from(Tensor::new(y))).map_err(|e| layer_err(m, "", e))
        },
    );

    let doc = "Inverse of a 2-d max pool (nn.MaxUnpool2d): `nn::max_unpool2d(kernel_size)` plus options `stride` (default the kernel size) \
and `padding`; `forward(input, indices)` or `forward(input, indices, output_size)` puts each value at its index from \
`nn::max_pool2d(k, #{return_indices: true})` and zeroes the rest.\n\n\
```rhai\nlet r = nn::max_pool2d(2, #{return_indices: true}).forward(torch::arange(16.0).reshape([1, 1, 4, 4]));\n\
print(nn::max_unpool2d(2).forward(r[0], r[1]));\nprint(nn::max_unpool2d(2).forward(r[0], r[1], [5, 5]).shape);\n```";
    fn make_unpool(k: Dynamic, m: &Map) -> RResult<Map> {
        let what = "nn::max_unpool2d";
        let o = Opts::new(m, what, &["stride", "padding"])?;
        let ex = |v: &[i64], key: &str| layers::conv::expand(v, 2, key).map_err(|e| err(format!("{what}: {e}")));
        let kernel = ex(&int_list(&k, what)?, "kernel_size")?;
        let stride = match o.ints_opt("stride")? {
            Some(s) => ex(&s, "stride")?,
            None => kernel.clone(),
        };
        let padding = ex(&o.ints_opt("padding")?.unwrap_or_else(|| vec![0]), "padding")?;
        if kernel.iter().chain(&stride).any(|v| *v <= 0) || padding.iter().any(|v| *v < 0) {
            return Err(err(format!(
                "{what}: kernel_size and stride must be positive and padding non-negative, got {kernel:?}, {stride:?}, {padding:?}"
            )));
        }
        Ok(tree::ModuleBuilder::new("MaxUnpool2d", "__nn_max_unpool2d_forward")
            .set("kernel_size", ints_to_dyn(&kernel))
            .set("stride", ints_to_dyn(&stride))
            .set("padding", ints_to_dyn(&padding))
            .build())
    }
    reg.volatile("nn", "max_unpool2d", "kernel_size", doc, |k: Dynamic| make_unpool(k, &Map::new()));
    reg.volatile("nn", "max_unpool2d", "kernel_size, opts", doc, |k: Dynamic, m: Map| make_unpool(k, &m));
    fn unpool_forward(m: &Map, x: &T, i: &T, size: Option<&Dynamic>) -> RResult<T> {
        let size = size.map(|s| int_list(s, "MaxUnpool2d.forward output_size")).transpose()?;
        let (k, s, p) = (
            tree::ints(m, "kernel_size").or_script()?,
            tree::ints(m, "stride").or_script()?,
            tree::ints(m, "padding").or_script()?,
        );
        layers::pool::max_unpool2d(x, i, &k, &s, &p, size.as_deref())
            .map(Tensor::new)
            .map_err(|e| layer_err(m, &format!("kernel_size={k:?}"), e))
    }
    let fdoc = fwd_doc(
        "nn::max_unpool2d",
        "let r = nn::max_pool2d(2, #{return_indices: true}).forward(torch::ones([1, 2, 2]));\nprint(nn::max_unpool2d(2).forward(r[0], r[1]));",
    );
    reg.func("", "__nn_max_unpool2d_forward", "self, input, indices", &fdoc, |m: &mut Map, x: T, i: T| {
        unpool_forward(m, &x, &i, None)
    });
    reg.func(
        "",
        "__nn_max_unpool2d_forward",
        "self, input, indices, output_size",
        &fdoc,
        |m: &mut Map, x: T, i: T, s: Dynamic| unpool_forward(m, &x, &i, Some(&s)),
    );
}

/// The optional `align_corners` option: absent, or a bool.
fn align_corners_opt(o: &Opts, what: &str) -> RResult<Option<bool>> {
    match o.get("align_corners") {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) => Ok(Some(v.as_bool().map_err(|_| err(format!("{what}: align_corners must be a bool")))?)),
    }
}

/// Pixel shuffle, upsampling and 2-d padding layers.
fn register_resample(reg: &mut Registry) {
    for (name, ty, key, unshuffle) in [
        ("pixel_shuffle", "PixelShuffle", "upscale_factor", false),
        ("pixel_unshuffle", "PixelUnshuffle", "downscale_factor", true),
    ] {
        let (shape, desc) = if unshuffle {
            ("[1, 2, 4, 6]", "(N, C, H·r, W·r) into (N, C·r², H, W)")
        } else {
            ("[1, 8, 2, 3]", "(N, C·r², H, W) into (N, C, H·r, W·r)")
        };
        let example = format!("print(nn::{name}(2).forward(torch::randn({shape})).shape);");
        let doc = format!("Rearranges {desc}, r = `{key}` (nn.{ty}).\n\n```rhai\n{example}\n```");
        reg.volatile("nn", name, key, &doc, move |r: INT| -> RResult<Map> {
            if r <= 0 {
                return Err(err(format!("nn::{name}: {key} must be a positive integer, got {r}")));
            }
            Ok(tree::ModuleBuilder::new(ty, &format!("__nn_{name}_forward"))
                .set(key, r)
                .set("_unshuffle", unshuffle)
                .build())
        });
        let doc = format!("Rearranges {desc}, r = `{key}` (F.{name}).\n\n```rhai\nprint(F::{name}(torch::randn({shape}), 2).shape);\n```");
        reg.func("F", name, &format!("input, {key}"), &doc, move |x: T, r: INT| {
            ok(resample::pixel_shuffle(&x, r, unshuffle))
        });
        reg.func(
            "",
            &format!("__nn_{name}_forward"),
            "self, input",
            &fwd_doc(&format!("nn::{name}"), &example),
            move |m: &mut Map, x: T| -> RResult<T> {
                let r = tree::int(m, key).or_script()?;
                resample::pixel_shuffle(&x, r, unshuffle)
                    .map(Tensor::new)
                    .map_err(|e| layer_err(m, &format!("{key}={r}"), e))
            },
        );
    }

    let doc = "Upsamples (N, C, …) input to `size` or by `scale_factor` (nn.Upsample): `nn::upsample(#{size | scale_factor, mode, align_corners})`. \
`size` / `scale_factor`: one value for every spatial dim or one per dim; give exactly one. `mode`: \"nearest\" (default), \"linear\" (3D input), \
\"bilinear\" / \"bicubic\" (4D), \"trilinear\" (5D); `align_corners` only with the interpolating modes.\n\n\
```rhai\nlet x = torch::arange(4.0).reshape([1, 1, 2, 2]);\nprint(nn::upsample(#{scale_factor: 2}).forward(x).shape);\n\
print(nn::upsample(#{size: [3, 3], mode: \"bilinear\", align_corners: true}).forward(x));\n```";
    reg.volatile("nn", "upsample", "opts", doc, |m: Map| -> RResult<Map> {
        let what = "nn::upsample";
        let o = Opts::new(&m, what, &["size", "scale_factor", "mode", "align_corners"])?;
        let size = o.ints_opt("size")?;
        let scale = o.numbers_opt("scale_factor")?;
        // every option's type is checked before how they combine
        let mode = o.str_or("mode", "nearest")?;
        let ac = align_corners_opt(&o, what)?;
        if size.is_some() == scale.is_some() {
            return Err(err(format!("{what}: give exactly one of size and scale_factor")));
        }
        if size.as_ref().is_some_and(|s| s.iter().any(|v| *v <= 0)) || scale.as_ref().is_some_and(|s| s.iter().any(|v| *v <= 0.0)) {
            return Err(err(format!("{what}: size and scale_factor must be positive")));
        }
        const MODES: [&str; 5] = ["nearest", "linear", "bilinear", "bicubic", "trilinear"];
        if !MODES.contains(&mode.as_str()) {
            return Err(err(format!("{what}: unknown mode '{mode}' (expected one of {})", MODES.join(", "))));
        }
        if ac.is_some() && mode == "nearest" {
            return Err(err(format!(
                "{what}: align_corners can only be set with the interpolating modes: linear, bilinear, bicubic, trilinear"
            )));
        }
        // kept as PyTorch keeps them (its repr shows them): size as given, scale_factor as float(s)
        let size_v = match (&size, o.get("size")) {
            (Some(_), Some(v)) if v.is_int() => v.clone(),
            (Some(s), _) => ints_to_dyn(s),
            _ => Dynamic::UNIT,
        };
        let scale_v = match (&scale, o.get("scale_factor")) {
            (Some(f), Some(v)) if v.is_int() || v.is_float() => Dynamic::from_float(f[0]),
            (Some(f), _) => Dynamic::from_array(f.iter().map(|x| Dynamic::from_float(*x)).collect()),
            _ => Dynamic::UNIT,
        };
        Ok(tree::ModuleBuilder::new("Upsample", "__nn_upsample_forward")
            .set("size", size_v)
            .set("scale_factor", scale_v)
            .set("mode", mode)
            .set("align_corners", ac.map(Dynamic::from_bool).unwrap_or(Dynamic::UNIT))
            .build())
    });
    reg.func(
        "",
        "__nn_upsample_forward",
        "self, input",
        &fwd_doc("nn::upsample", "print(nn::upsample(#{scale_factor: 2}).forward(torch::ones([1, 1, 2])).shape);"),
        |m: &mut Map, x: T| -> RResult<T> {
            let set = |k: &str| m.get(k).is_some_and(|v| !v.is_unit());
            let size = if set("size") { Some(tree::ints(m, "size").or_script()?) } else { None };
            let scale = if set("scale_factor") {
                let v = &m["scale_factor"];
                let bad = || err("Upsample: entry 'scale_factor' must be a number or an array of numbers");
                Some(match v.read_lock::<Array>() {
                    Some(a) => a.iter().map(|d| number(d, "Upsample.scale_factor")).collect::<RResult<Vec<f64>>>()?,
                    None => vec![number(v, "Upsample.scale_factor").map_err(|_| bad())?],
                })
            } else {
                None
            };
            let ac = m.get("align_corners").and_then(|v| v.as_bool().ok());
            let mode = tree::string(m, "mode").or_script()?;
            fun::interpolate(&x, size.as_deref(), scale.as_deref(), &mode, ac)
                .map(Tensor::new)
                .map_err(|e| layer_err(m, &format!("mode={mode}"), e))
        },
    );

    for (name, ty, reflect) in [("zero_pad2d", "ZeroPad2d", false), ("reflection_pad2d", "ReflectionPad2d", true)] {
        let doc = format!(
            "Pads the last two dims of (C, H, W) or (N, C, H, W) input {} (nn.{ty}); `padding` is one int for all sides or \
[left, right, top, bottom]{}.\n\n```rhai\nlet x = torch::arange(9.0).reshape([1, 1, 3, 3]);\nprint(nn::{name}(1).forward(x).shape);\nprint(nn::{name}([2, 0, 1, 1]).forward(x));\n```",
            if reflect { "by reflecting about the edges" } else { "with zeros" },
            if reflect { "; each side less than that dim's size" } else { "; negative values crop" }
        );
        reg.volatile("nn", name, "padding", &doc, move |p: Dynamic| -> RResult<Map> {
            let what = format!("nn::{name}");
            let pad = resample::quadruple(&int_list(&p, &what)?).map_err(|e| err(format!("{what}: {e}")))?;
            Ok(tree::ModuleBuilder::new(ty, "__nn_pad2d_forward")
                .set("padding", ints_to_dyn(&pad))
                .set("_reflect", reflect)
                .build())
        });
    }
    reg.func(
        "",
        "__nn_pad2d_forward",
        "self, input",
        &fwd_doc(
            "nn::zero_pad2d and nn::reflection_pad2d",
            "print(nn::zero_pad2d(1).forward(torch::ones([1, 2, 2])));",
        ),
        |m: &mut Map, x: T| -> RResult<T> {
            let pad = tree::ints(m, "padding").or_script()?;
            let reflect = tree::boolean(m, "_reflect").or_script()?;
            resample::pad2d(&x, &pad, reflect)
                .map(Tensor::new)
                .map_err(|e| layer_err(m, &format!("padding={pad:?}"), e))
        },
    );
}

fn register_norm(reg: &mut Registry) {
    for (name, ty, dims, shape) in [
        ("batch_norm1d", "BatchNorm1d", &[2usize, 3][..], "[4, 3]"),
        ("batch_norm2d", "BatchNorm2d", &[4usize][..], "[2, 3, 2, 2]"),
        ("batch_norm3d", "BatchNorm3d", &[5usize][..], "[2, 3, 2, 2, 2]"),
    ] {
        let doc = format!(
            "Batch normalization over dim 1 (nn.{ty}): batch statistics in training mode (updating `running_mean` / \
`running_var` with `momentum`, 0.1; `()` for a cumulative average), running statistics after `eval_mode()`. Options: \
`eps` (1e-5), `momentum`, `affine` (true), `track_running_stats` (true), `dtype`, `device`.\n\n```rhai\n\
let bn = nn::{name}(3);\nlet y = bn.forward(torch::randn({shape}));\nprint(bn.num_batches_tracked);\nbn.eval_mode();\nprint(bn.forward(torch::randn({shape})).shape);\n```"
        );
        let make = move |n: INT, m: &Map| -> RResult<Map> {
            let what = format!("nn::{name}");
            let o = Opts::new(m, &what, &["eps", "momentum", "affine", "track_running_stats", "dtype", "device"])?;
            let affine = o.bool_or("affine", true)?;
            let track = o.bool_or("track_running_stats", true)?;
            let momentum =
                if m.get("momentum").is_some_and(|v| v.is_unit()) { None } else { Some(o.f64_or("momentum", 0.1)?) };
            let s =
                norm::batch_norm_init(n, affine, track, param_opts(&o)?).map_err(|e| err(format!("{what}: {e}")))?;
            Ok(tree::ModuleBuilder::new(ty, "__nn_batch_norm_forward")
                .param("weight", s.weight)
                .param("bias", s.bias)
                .buffer("running_mean", s.running_mean)
                .buffer("running_var", s.running_var)
                .buffer("num_batches_tracked", s.num_batches_tracked)
                .set("num_features", n)
                .set("eps", o.f64_or("eps", 1e-5)?)
                .set("momentum", momentum.map(Dynamic::from_float).unwrap_or(Dynamic::UNIT))
                .set("affine", affine)
                .set("track_running_stats", track)
                .set("_dims", ints_to_dyn(&dims.iter().map(|d| *d as i64).collect::<Vec<_>>()))
                .build())
        };
        reg.volatile("nn", name, "num_features", &doc, move |n: INT| make(n, &Map::new()));
        reg.volatile("nn", name, "num_features, opts", &doc, move |n: INT, m: Map| make(n, &m));
    }
    reg.func(
        "",
        "__nn_batch_norm_forward",
        "self, input",
        &fwd_doc(
            "nn::batch_norm1d / 2d / 3d",
            "let bn = nn::batch_norm1d(2);\nprint(bn.forward(torch::tensor([[1.0, 2.0], [3.0, 5.0]])));",
        ),
        |m: &mut Map, x: T| -> RResult<T> {
            let n = tree::int(m, "num_features").or_script()?;
            let dims: Vec<usize> = tree::ints(m, "_dims").or_script()?.iter().map(|d| *d as usize).collect();
            let s = norm::BatchNormState {
                weight: tree::opt_tensor(m, "weight").or_script()?.map(|t| t.handle()),
                bias: tree::opt_tensor(m, "bias").or_script()?.map(|t| t.handle()),
                running_mean: tree::opt_tensor(m, "running_mean").or_script()?.map(|t| t.handle()),
                running_var: tree::opt_tensor(m, "running_var").or_script()?.map(|t| t.handle()),
                num_batches_tracked: tree::opt_tensor(m, "num_batches_tracked").or_script()?.map(|t| t.handle()),
            };
            let r = norm::batch_norm(
                &x,
                &dims,
                n,
                &s,
                tree::training(m),
                tree::boolean(m, "track_running_stats").or_script()?,
                tree::opt_float(m, "momentum").or_script()?,
                tree::float(m, "eps").or_script()?,
            );
            r.map(Tensor::new).map_err(|e| layer_err(m, &n.to_string(), e))
        },
    );

    let doc = "Layer normalization over the trailing `normalized_shape` dims (nn.LayerNorm). Options: `eps` (1e-5), \
`elementwise_affine` (true), `bias` (true), `dtype`, `device`.\n\n```rhai\nlet ln = nn::layer_norm(4);\nprint(ln.forward(torch::randn([2, 4])).shape);\nprint(nn::layer_norm([2, 4]).forward(torch::randn([3, 2, 4])).shape);\n```";
    fn make_ln(s: &Dynamic, m: &Map) -> RResult<Map> {
        let o = Opts::new(m, "nn::layer_norm", &["eps", "elementwise_affine", "bias", "dtype", "device"])?;
        let shape = int_list(s, "nn::layer_norm")?;
        let po = param_opts(&o)?;
        let affine = o.bool_or("elementwise_affine", true)?;
        let w = if affine { Some(tch::Tensor::f_ones(shape.as_slice(), po).or_script()?) } else { None };
        let b = if affine && o.bool_or("bias", true)? {
            Some(tch::Tensor::f_zeros(shape.as_slice(), po).or_script()?)
        } else {
            None
        };
        Ok(tree::ModuleBuilder::new("LayerNorm", "__nn_layer_norm_forward")
            .param("weight", w)
            .param("bias", b)
            .set("normalized_shape", ints_to_dyn(&shape))
            .set("eps", o.f64_or("eps", 1e-5)?)
            .set("elementwise_affine", affine)
            .build())
    }
    reg.volatile("nn", "layer_norm", "normalized_shape", doc, |s: Dynamic| make_ln(&s, &Map::new()));
    reg.volatile("nn", "layer_norm", "normalized_shape, opts", doc, |s: Dynamic, m: Map| make_ln(&s, &m));
    reg.func(
        "",
        "__nn_layer_norm_forward",
        "self, input",
        &fwd_doc("nn::layer_norm", "print(nn::layer_norm(2).forward(torch::tensor([[1.0, 3.0]])));"),
        |m: &mut Map, x: T| -> RResult<T> {
            let shape = tree::ints(m, "normalized_shape").or_script()?;
            let w = tree::opt_tensor(m, "weight").or_script()?;
            let b = tree::opt_tensor(m, "bias").or_script()?;
            norm::layer_norm(&x, &shape, w.as_deref(), b.as_deref(), tree::float(m, "eps").or_script()?)
                .map(Tensor::new)
                .map_err(|e| layer_err(m, &format!("{shape:?}"), e))
        },
    );

    let doc = "Group normalization: channels split into `num_groups` groups (nn.GroupNorm). Options: `eps` (1e-5), `affine` (true), `dtype`, `device`.\n\n```rhai\nlet gn = nn::group_norm(2, 4);\nprint(gn.forward(torch::randn([3, 4, 5])).shape);\n```";
    fn make_gn(g: INT, c: INT, m: &Map) -> RResult<Map> {
        let o = Opts::new(m, "nn::group_norm", &["eps", "affine", "dtype", "device"])?;
        if g <= 0 || c % g != 0 {
            return Err(err(format!("nn::group_norm: num_channels ({c}) must be divisible by num_groups ({g})")));
        }
        let po = param_opts(&o)?;
        let affine = o.bool_or("affine", true)?;
        let (w, b) = if affine {
            (Some(tch::Tensor::f_ones([c], po).or_script()?), Some(tch::Tensor::f_zeros([c], po).or_script()?))
        } else {
            (None, None)
        };
        Ok(tree::ModuleBuilder::new("GroupNorm", "__nn_group_norm_forward")
            .param("weight", w)
            .param("bias", b)
            .set("num_groups", g)
            .set("num_channels", c)
            .set("eps", o.f64_or("eps", 1e-5)?)
            .set("affine", affine)
            .build())
    }
    reg.volatile("nn", "group_norm", "num_groups, num_channels", doc, |g: INT, c: INT| make_gn(g, c, &Map::new()));
    reg.volatile("nn", "group_norm", "num_groups, num_channels, opts", doc, |g: INT, c: INT, m: Map| make_gn(g, c, &m));
    reg.func(
        "",
        "__nn_group_norm_forward",
        "self, input",
        &fwd_doc("nn::group_norm", "print(nn::group_norm(1, 2).forward(torch::tensor([[1.0, 3.0]])));"),
        |m: &mut Map, x: T| -> RResult<T> {
            let (g, c) = (tree::int(m, "num_groups").or_script()?, tree::int(m, "num_channels").or_script()?);
            let w = tree::opt_tensor(m, "weight").or_script()?;
            let b = tree::opt_tensor(m, "bias").or_script()?;
            norm::group_norm(&x, g, c, w.as_deref(), b.as_deref(), tree::float(m, "eps").or_script()?)
                .map(Tensor::new)
                .map_err(|e| layer_err(m, &format!("{g} groups, {c} channels"), e))
        },
    );

    let doc = "RMS normalization over the trailing `normalized_shape` dims (nn.RMSNorm). Options: `eps` (default: the dtype's machine epsilon), `elementwise_affine` (true), `dtype`, `device`.\n\n```rhai\nlet n = nn::rms_norm(4);\nprint(n.forward(torch::randn([2, 4])).shape);\n```";
    fn make_rms(s: &Dynamic, m: &Map) -> RResult<Map> {
        let o = Opts::new(m, "nn::rms_norm", &["eps", "elementwise_affine", "dtype", "device"])?;
        let shape = int_list(s, "nn::rms_norm")?;
        let affine = o.bool_or("elementwise_affine", true)?;
        let w = if affine { Some(tch::Tensor::f_ones(shape.as_slice(), param_opts(&o)?).or_script()?) } else { None };
        Ok(tree::ModuleBuilder::new("RMSNorm", "__nn_rms_norm_forward")
            .param("weight", w)
            .set("normalized_shape", ints_to_dyn(&shape))
            .set("eps", o.f64_opt("eps")?.map(Dynamic::from_float).unwrap_or(Dynamic::UNIT))
            .set("elementwise_affine", affine)
            .build())
    }
    reg.volatile("nn", "rms_norm", "normalized_shape", doc, |s: Dynamic| make_rms(&s, &Map::new()));
    reg.volatile("nn", "rms_norm", "normalized_shape, opts", doc, |s: Dynamic, m: Map| make_rms(&s, &m));
    reg.func(
        "",
        "__nn_rms_norm_forward",
        "self, input",
        &fwd_doc("nn::rms_norm", "print(nn::rms_norm(2).forward(torch::tensor([[1.0, 3.0]])));"),
        |m: &mut Map, x: T| -> RResult<T> {
            let shape = tree::ints(m, "normalized_shape").or_script()?;
            let w = tree::opt_tensor(m, "weight").or_script()?;
            norm::rms_norm(&x, &shape, w.as_deref(), tree::opt_float(m, "eps").or_script()?)
                .map(Tensor::new)
                .map_err(|e| layer_err(m, &format!("{shape:?}"), e))
        },
    );
}

fn rnn_of(m: &Map) -> RResult<Rnn> {
    Ok(Rnn {
        mode: tree::string(m, "mode").or_script()?,
        input_size: tree::int(m, "input_size").or_script()?,
        hidden_size: tree::int(m, "hidden_size").or_script()?,
        num_layers: tree::int(m, "num_layers").or_script()?,
        bias: tree::boolean(m, "bias").or_script()?,
        batch_first: tree::boolean(m, "batch_first").or_script()?,
        dropout: tree::float(m, "dropout").or_script()?,
        bidirectional: tree::boolean(m, "bidirectional").or_script()?,
    })
}

fn register_embedding_rnn(reg: &mut Registry) {
    let doc = "A lookup table of `num_embeddings` vectors of size `embedding_dim` (nn.Embedding), drawn from N(0, 1). Options: \
`padding_idx` (that row starts at zero and gets no gradient), `dtype`, `device`.\n\n```rhai\nlet emb = nn::embedding(10, 3, #{padding_idx: 0});\nprint(emb.forward(torch::tensor([[0, 2], [4, 9]])).shape);\nprint(emb.weight[0]);\n```";
    fn make_emb(n: INT, d: INT, m: &Map) -> RResult<Map> {
        let o = Opts::new(m, "nn::embedding", &["padding_idx", "dtype", "device"])?;
        let (w, pi) = embedding::init(n, d, o.i64_opt("padding_idx")?, param_opts(&o)?)
            .map_err(|e| err(format!("nn::embedding: {e}")))?;
        Ok(tree::ModuleBuilder::new("Embedding", "__nn_embedding_forward")
            .param("weight", Some(w))
            .set("num_embeddings", n)
            .set("embedding_dim", d)
            .set("padding_idx", pi.map(Dynamic::from_int).unwrap_or(Dynamic::UNIT))
            .build())
    }
    reg.volatile("nn", "embedding", "num_embeddings, embedding_dim", doc, |n: INT, d: INT| make_emb(n, d, &Map::new()));
    reg.volatile("nn", "embedding", "num_embeddings, embedding_dim, opts", doc, |n: INT, d: INT, m: Map| {
        make_emb(n, d, &m)
    });
    reg.func(
        "",
        "__nn_embedding_forward",
        "self, input",
        &fwd_doc("nn::embedding", "print(nn::embedding(4, 2).forward(torch::tensor([1, 3])).shape);"),
        |m: &mut Map, x: T| -> RResult<T> {
            let w = tree::tensor(m, "weight").or_script()?;
            let pi = m.get("padding_idx").and_then(|v| v.as_int().ok());
            let n = w.size().first().copied().unwrap_or(0);
            let run = || -> crate::tensor::Result<tch::Tensor> {
                if x.numel() > 0 && !crate::tensor::options::is_floating(x.kind()) {
                    let (lo, hi) = (x.f_min()?.f_int64_value(&[])?, x.f_max()?.f_int64_value(&[])?);
                    if lo < 0 || hi >= n {
                        return Err(crate::tensor_err!(
                            "index out of range: indices must be in [0, {n}), got values in [{lo}, {hi}]"
                        ));
                    }
                }
                fun::embedding(&x, &w, pi)
            };
            run()
                .map(Tensor::new)
                .map_err(|e| layer_err(m, &format!("{n}×{}", w.size().get(1).copied().unwrap_or(0)), e))
        },
    );

    for (name, mode, ty) in [("rnn", "RNN_TANH", "RNN"), ("lstm", "LSTM", "LSTM"), ("gru", "GRU", "GRU")] {
        let states = if mode == "LSTM" { "`[h_n, c_n]`" } else { "`h_n`" };
        let h0 = if mode == "LSTM" { "[h0, c0]" } else { "h0" };
        let extra = if mode == "RNN_TANH" { "`nonlinearity` (\"tanh\" / \"relu\"), " } else { "" };
        let doc = format!(
            "A multi-layer {ty} over ATen's fused kernel (nn.{ty}): `nn::{name}(input_size, hidden_size)` plus options \
`num_layers` (1), {extra}`bias` (true), `batch_first` (false), `dropout` (0, between layers in training), `bidirectional` (false), \
`dtype`, `device`. `forward(x)` or `forward(x, {h0})` returns `[output, {}]`, as PyTorch's tuple.\n\n```rhai\n\
let rnn = nn::{name}(3, 4, #{{num_layers: 2, batch_first: true}});\nlet out = rnn.forward(torch::randn([2, 5, 3]));\nprint(out[0].shape);\n```",
            states.trim_matches('`')
        );
        let make = move |i: INT, h: INT, m: &Map| -> RResult<Map> {
            let what = format!("nn::{name}");
            let mut keys = vec!["num_layers", "bias", "batch_first", "dropout", "bidirectional", "dtype", "device"];
            if mode == "RNN_TANH" {
                keys.push("nonlinearity");
            }
            if mode == "LSTM" {
                keys.push("proj_size");
            }
            let o = Opts::new(m, &what, &keys)?;
            if o.i64_or("proj_size", 0)? != 0 {
                return Err(err(format!("{what}: proj_size is not supported")));
            }
            let mode = match o.str_or("nonlinearity", "tanh")?.as_str() {
                "tanh" => mode,
                "relu" => "RNN_RELU",
                other => {
                    return Err(err(format!("{what}: Unknown nonlinearity '{other}'. Select from 'tanh' or 'relu'.")))
                }
            };
            let r = Rnn {
                mode: mode.to_string(),
                input_size: i,
                hidden_size: h,
                num_layers: o.i64_or("num_layers", 1)?,
                bias: o.bool_or("bias", true)?,
                batch_first: o.bool_or("batch_first", false)?,
                dropout: o.f64_or("dropout", 0.0)?,
                bidirectional: o.bool_or("bidirectional", false)?,
            };
            let params = r.init(param_opts(&o)?).map_err(|e| err(format!("{what}: {e}")))?;
            let mut b = tree::ModuleBuilder::new(ty, "__nn_rnn_forward");
            for (n, t) in params {
                b = b.param(&n, Some(t));
            }
            Ok(b.set("mode", r.mode.clone())
                .set("input_size", i)
                .set("hidden_size", h)
                .set("num_layers", r.num_layers)
                .set("bias", r.bias)
                .set("batch_first", r.batch_first)
                .set("dropout", r.dropout)
                .set("bidirectional", r.bidirectional)
                .build())
        };
        reg.volatile("nn", name, "input_size, hidden_size", &doc, move |i: INT, h: INT| make(i, h, &Map::new()));
        reg.volatile("nn", name, "input_size, hidden_size, opts", &doc, move |i: INT, h: INT, m: Map| make(i, h, &m));
    }
    fn rnn_forward(m: &mut Map, x: &Tensor, hx: Option<Dynamic>) -> RResult<Array> {
        let r = rnn_of(m)?;
        let params: Vec<tch::Tensor> = r
            .param_names()
            .iter()
            .map(|n| tree::tensor(m, n).map(|t| t.handle()))
            .collect::<Result<_, _>>()
            .or_script()?;
        let hx: Option<Vec<tch::Tensor>> = match hx {
            None => None,
            Some(d) if d.is_unit() => None,
            Some(d) => {
                if let Some(t) = d.read_lock::<Tensor>() {
                    Some(vec![t.handle()])
                } else if let Some(a) = d.read_lock::<Array>() {
                    Some(
                        a.iter()
                            .map(|v| {
                                v.read_lock::<Tensor>()
                                    .map(|t| t.handle())
                                    .ok_or_else(|| err("initial states must be tensors"))
                            })
                            .collect::<RResult<_>>()?,
                    )
                } else {
                    return Err(err(format!(
                        "{}: the initial state must be a Tensor or [h0, c0], got {}",
                        tree::label(m),
                        d.type_name()
                    )));
                }
            }
        };
        let desc = format!("{}→{}", r.input_size, r.hidden_size);
        let (out, hs) = r.forward(x, &params, hx.as_deref(), tree::training(m)).map_err(|e| layer_err(m, &desc, e))?;
        let mut hs: Vec<Dynamic> = hs.into_iter().map(|h| Dynamic::from(Tensor::new(h))).collect();
        let state = if r.mode == "LSTM" { Dynamic::from_array(hs) } else { hs.remove(0) };
        Ok(vec![Dynamic::from(Tensor::new(out)), state])
    }
    let doc = fwd_doc("nn::rnn / nn::lstm / nn::gru", "let g = nn::gru(2, 3);\nlet r = g.forward(torch::randn([4, 1, 2]));\nprint(r[1].shape);\nlet l = nn::lstm(2, 3);\nprint(l.forward(torch::randn([4, 2]), [torch::zeros([1, 3]), torch::zeros([1, 3])])[1][1].shape);");
    reg.func("", "__nn_rnn_forward", "self, input", &doc, |m: &mut Map, x: T| rnn_forward(m, &x, None));
    reg.func("", "__nn_rnn_forward", "self, input, hx", &doc, |m: &mut Map, x: T, h: Dynamic| {
        rnn_forward(m, &x, Some(h))
    });
}

pub(super) fn mha_params(m: &Map) -> RResult<attention::MhaParams> {
    let out = m
        .get("out_proj")
        .and_then(|d| d.read_lock::<Map>().map(|x| x.clone()))
        .ok_or_else(|| err(format!("{}: missing out_proj", tree::label(m))))?;
    Ok(attention::MhaParams {
        in_proj_weight: tree::tensor(m, "in_proj_weight").or_script()?.handle(),
        in_proj_bias: tree::opt_tensor(m, "in_proj_bias").or_script()?.map(|t| t.handle()),
        out_proj_weight: tree::tensor(&out, "weight").or_script()?.handle(),
        out_proj_bias: tree::opt_tensor(&out, "bias").or_script()?.map(|t| t.handle()),
    })
}

/// Builds a MultiheadAttention module map.
pub(super) fn make_mha(e: INT, h: INT, o: &Opts) -> RResult<Map> {
    for k in ["kdim", "vdim"] {
        if let Some(d) = o.i64_opt(k)? {
            if d != e {
                return Err(err(format!("nn::multihead_attention: {k} different from embed_dim is not supported")));
            }
        }
    }
    for k in ["add_bias_kv", "add_zero_attn"] {
        if o.bool_or(k, false)? {
            return Err(err(format!("nn::multihead_attention: {k} is not supported")));
        }
    }
    let dropout = o.f64_or("dropout", 0.0)?;
    fun::check_p(dropout).map_err(|e| err(format!("nn::multihead_attention: {e}")))?;
    let p = attention::init(e, h, o.bool_or("bias", true)?, param_opts(o)?)
        .map_err(|er| err(format!("nn::multihead_attention: {er}")))?;
    let out_proj = tree::ModuleBuilder::new("NonDynamicallyQuantizableLinear", "__nn_linear_forward")
        .param("weight", Some(p.out_proj_weight))
        .param("bias", p.out_proj_bias)
        .set("in_features", e)
        .set("out_features", e)
        .build();
    Ok(tree::ModuleBuilder::new("MultiheadAttention", "__nn_mha_forward")
        .param("in_proj_weight", Some(p.in_proj_weight))
        .param("in_proj_bias", p.in_proj_bias)
        .set("out_proj", Dynamic::from_map(out_proj))
        .set("embed_dim", e)
        .set("num_heads", h)
        .set("dropout", dropout)
        .set("batch_first", o.bool_or("batch_first", false)?)
        .build())
}

fn mha_forward(m: &Map, q: &Tensor, k: &Tensor, v: &Tensor, o: &Map) -> RResult<Array> {
    let opts = Opts::new(
        o,
        "MultiheadAttention.forward",
        &["key_padding_mask", "need_weights", "attn_mask", "average_attn_weights", "is_causal"],
    )?;
    let kpm = opts.tensor_opt("key_padding_mask")?;
    let am = opts.tensor_opt("attn_mask")?;
    let fo = attention::MhaOpts {
        key_padding_mask: kpm.as_deref(),
        attn_mask: am.as_deref(),
        need_weights: opts.bool_or("need_weights", true)?,
        average_attn_weights: opts.bool_or("average_attn_weights", true)?,
        is_causal: opts.bool_or("is_causal", false)?,
    };
    let p = mha_params(m)?;
    let h = tree::int(m, "num_heads").or_script()?;
    let dropout = if tree::training(m) { tree::float(m, "dropout").or_script()? } else { 0.0 };
    let (out, w) = attention::forward(q, k, v, &p, h, tree::boolean(m, "batch_first").or_script()?, dropout, &fo)
        .map_err(|e| layer_err(m, &format!("embed_dim {}, {h} heads", p.in_proj_weight.size()[1]), e))?;
    Ok(vec![Dynamic::from(Tensor::new(out)), w.map(|w| Dynamic::from(Tensor::new(w))).unwrap_or(Dynamic::UNIT)])
}

fn register_attention(reg: &mut Registry) {
    let doc = "Multi-head attention (nn.MultiheadAttention): `nn::multihead_attention(embed_dim, num_heads)` plus options \
`dropout` (0), `bias` (true), `batch_first` (false), `dtype`, `device`. `forward(query, key, value)` or with options \
`#{key_padding_mask, attn_mask, need_weights, average_attn_weights, is_causal}` returns `[output, weights]` (weights `()` when \
`need_weights` is false). Bool masks: true = may not attend, as in PyTorch.\n\n```rhai\n\
let mha = nn::multihead_attention(8, 2, #{batch_first: true});\nlet x = torch::randn([3, 5, 8]);\nlet r = mha.forward(x, x, x);\nprint(r[0].shape);\nprint(r[1].shape);\n```";
    reg.volatile("nn", "multihead_attention", "embed_dim, num_heads", doc, |e: INT, h: INT| {
        make_mha(e, h, &Opts::new(&Map::new(), "", &[])?)
    });
    reg.volatile("nn", "multihead_attention", "embed_dim, num_heads, opts", doc, |e: INT, h: INT, m: Map| {
        let o = Opts::new(
            &m,
            "nn::multihead_attention",
            &["dropout", "bias", "batch_first", "kdim", "vdim", "add_bias_kv", "add_zero_attn", "dtype", "device"],
        )?;
        make_mha(e, h, &o)
    });
    let doc = fwd_doc("nn::multihead_attention", "let a = nn::multihead_attention(4, 2);\nlet x = torch::randn([3, 4]);\nprint(a.forward(x, x, x, #{need_weights: false})[0].shape);");
    reg.func("", "__nn_mha_forward", "self, query, key, value", &doc, |m: &mut Map, q: T, k: T, v: T| {
        mha_forward(m, &q, &k, &v, &Map::new())
    });
    reg.func("", "__nn_mha_forward", "self, query, key, value, opts", &doc, |m: &mut Map, q: T, k: T, v: T, o: Map| {
        mha_forward(m, &q, &k, &v, &o)
    });
}
