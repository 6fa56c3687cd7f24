//! The script surface of PyTorch's Transformer family: `nn::transformer_encoder_layer`,
//! `nn::transformer_decoder_layer`, the `nn::transformer_encoder` / `nn::transformer_decoder`
//! stacks, `nn::transformer` and `nn::generate_square_subsequent_mask`. The layers are native
//! maps whose children are the host's own layers (MultiheadAttention, Linear, LayerNorm, Dropout),
//! so parameter names are PyTorch's (`encoder.layers.0.self_attn.in_proj_weight`, `norm3.bias`);
//! the forwards follow `torch/nn/modules/transformer.py` block by block.
use super::api::{fwd_doc, ints_to_dyn, layer_err, linear_module, make_mha, mha_params, param_opts};
use super::functional as fun;
use super::layers::{attention, linear, norm};
use super::{init, tree};
use crate::script::convert::{err, Opts, OrScript, RResult};
use crate::script::registry::Registry;
use crate::tensor::Tensor;
use rhai::{Array, Dynamic, Map, NativeCallContext, INT};

type T = Tensor;

/// The options of `nn::transformer_encoder_layer` / `nn::transformer_decoder_layer`.
const LAYER_KEYS: &[&str] = &[
    "dim_feedforward",
    "dropout",
    "activation",
    "layer_norm_eps",
    "batch_first",
    "norm_first",
    "bias",
    "dtype",
    "device",
];

/// A layer's configuration, parsed once.
struct LayerCfg {
    ff: i64,
    p: f64,
    act: String,
    eps: f64,
    bias: bool,
    batch_first: bool,
    norm_first: bool,
    /// `dtype` / `device` as given, passed on to every child
    placement: Map,
}

fn layer_cfg(o: &Opts, what: &str) -> RResult<LayerCfg> {
    let ff = o.i64_or("dim_feedforward", 2048)?;
    if ff <= 0 {
        return Err(err(format!("{what}: dim_feedforward must be positive, got {ff}")));
    }
    let p = o.f64_or("dropout", 0.1)?;
    fun::check_p(p).map_err(|e| err(format!("{what}: {e}")))?;
    let act = o.str_or("activation", "relu")?;
    if act != "relu" && act != "gelu" {
        return Err(err(format!("{what}: activation should be \"relu\" or \"gelu\", not \"{act}\"")));
    }
    let eps = o.f64_or("layer_norm_eps", 1e-5)?;
    if eps.is_nan() || eps < 0.0 {
        return Err(err(format!("{what}: layer_norm_eps must be ≥ 0, got {eps}")));
    }
    let mut placement = Map::new();
    for k in ["dtype", "device"] {
        if let Some(v) = o.get(k) {
            placement.insert(k.into(), v.clone());
        }
    }
    Ok(LayerCfg {
        ff,
        p,
        act,
        eps,
        bias: o.bool_or("bias", true)?,
        batch_first: o.bool_or("batch_first", false)?,
        norm_first: o.bool_or("norm_first", false)?,
        placement,
    })
}

impl LayerCfg {
    /// The children's option map: `dtype` / `device` plus `extra`.
    fn opts(&self, extra: &[(&str, Dynamic)]) -> Map {
        let mut m = self.placement.clone();
        for (k, v) in extra {
            m.insert((*k).into(), v.clone());
        }
        m
    }

    fn attention(&self, d: INT, h: INT, what: &str) -> RResult<Map> {
        let mo = self.opts(&[
            ("dropout", Dynamic::from_float(self.p)),
            ("bias", Dynamic::from_bool(self.bias)),
            ("batch_first", Dynamic::from_bool(self.batch_first)),
        ]);
        make_mha(d, h, &Opts::new(&mo, what, &["dropout", "bias", "batch_first", "dtype", "device"])?)
    }

    fn linear(&self, i: INT, o: INT) -> RResult<Map> {
        let placement = self.opts(&[]);
        let lo = Opts::new(&placement, "nn::linear", &["dtype", "device"])?;
        linear_module(i, o, self.bias, param_opts(&lo)?)
    }

    fn layer_norm(&self, d: INT) -> RResult<Map> {
        layer_norm(d, self.eps, self.bias, &self.opts(&[]))
    }

    fn dropout(&self) -> RResult<Dynamic> {
        fun::check_p(self.p).or_script()?;
        Ok(Dynamic::from_map(tree::ModuleBuilder::new("Dropout", "__nn_dropout_forward").set("p", self.p).build()))
    }
}

/// A LayerNorm over the last `d` features (nn.LayerNorm(d, eps, bias)).
fn layer_norm(d: INT, eps: f64, bias: bool, placement: &Map) -> RResult<Map> {
    let po = param_opts(&Opts::new(placement, "nn::layer_norm", &["dtype", "device"])?)?;
    let w = tch::Tensor::f_ones([d], po).or_script()?;
    let b = if bias { Some(tch::Tensor::f_zeros([d], po).or_script()?) } else { None };
    Ok(tree::ModuleBuilder::new("LayerNorm", "__nn_layer_norm_forward")
        .param("weight", Some(w))
        .param("bias", b)
        .set("normalized_shape", ints_to_dyn(&[d]))
        .set("eps", eps)
        .set("elementwise_affine", true)
        .build())
}

fn make_encoder_layer(d: INT, h: INT, m: &Map) -> RResult<Map> {
    const W: &str = "nn::transformer_encoder_layer";
    let c = layer_cfg(&Opts::new(m, W, LAYER_KEYS)?, W)?;
    // the order of PyTorch's __init__, so seeded draws are the same
    let self_attn = c.attention(d, h, W)?;
    let linear1 = c.linear(d, c.ff)?;
    let linear2 = c.linear(c.ff, d)?;
    Ok(tree::ModuleBuilder::new("TransformerEncoderLayer", "__nn_transformer_encoder_layer_forward")
        .set("self_attn", Dynamic::from_map(self_attn))
        .set("linear1", Dynamic::from_map(linear1))
        .set("dropout", c.dropout()?)
        .set("linear2", Dynamic::from_map(linear2))
        .set("norm1", Dynamic::from_map(c.layer_norm(d)?))
        .set("norm2", Dynamic::from_map(c.layer_norm(d)?))
        .set("dropout1", c.dropout()?)
        .set("dropout2", c.dropout()?)
        .set("activation", c.act.clone())
        .set("norm_first", c.norm_first)
        .build())
}

fn make_decoder_layer(d: INT, h: INT, m: &Map) -> RResult<Map> {
    const W: &str = "nn::transformer_decoder_layer";
    let c = layer_cfg(&Opts::new(m, W, LAYER_KEYS)?, W)?;
    let self_attn = c.attention(d, h, W)?;
    let multihead_attn = c.attention(d, h, W)?;
    let linear1 = c.linear(d, c.ff)?;
    let linear2 = c.linear(c.ff, d)?;
    Ok(tree::ModuleBuilder::new("TransformerDecoderLayer", "__nn_transformer_decoder_layer_forward")
        .set("self_attn", Dynamic::from_map(self_attn))
        .set("multihead_attn", Dynamic::from_map(multihead_attn))
        .set("linear1", Dynamic::from_map(linear1))
        .set("dropout", c.dropout()?)
        .set("linear2", Dynamic::from_map(linear2))
        .set("norm1", Dynamic::from_map(c.layer_norm(d)?))
        .set("norm2", Dynamic::from_map(c.layer_norm(d)?))
        .set("norm3", Dynamic::from_map(c.layer_norm(d)?))
        .set("dropout1", c.dropout()?)
        .set("dropout2", c.dropout()?)
        .set("dropout3", c.dropout()?)
        .set("activation", c.act.clone())
        .set("norm_first", c.norm_first)
        .build())
}

// ---- forwards ----

fn child(m: &Map, k: &str) -> RResult<Map> {
    m.get(k)
        .and_then(|d| d.read_lock::<Map>().map(|x| x.clone()))
        .ok_or_else(|| err(format!("{}: missing {k}", tree::label(m))))
}

/// A layer's children and mode, read once per forward.
struct Layer<'a> {
    m: &'a Map,
    training: bool,
}

impl Layer<'_> {
    fn drop(&self, key: &str, t: tch::Tensor) -> RResult<tch::Tensor> {
        let dm = child(self.m, key)?;
        let p = tree::float(&dm, "p").or_script()?;
        fun::dropout(&t, p, self.training && tree::training(&dm)).map_err(err)
    }

    fn lin(&self, key: &str, t: &tch::Tensor) -> RResult<tch::Tensor> {
        let lm = child(self.m, key)?;
        let w = tree::tensor(&lm, "weight").or_script()?;
        let b = tree::opt_tensor(&lm, "bias").or_script()?;
        linear::forward(t, &w, b.as_deref()).map_err(|e| layer_err(&lm, "", e))
    }

    fn ln(&self, key: &str, t: &tch::Tensor) -> RResult<tch::Tensor> {
        let nm = child(self.m, key)?;
        apply_layer_norm(&nm, t)
    }

    /// `attn(q, kv, kv)` without weights, then its dropout (`_sa_block` / `_mha_block`).
    fn attn(&self, key: &str, drop: &str, q: &tch::Tensor, kv: &tch::Tensor, masks: Masks) -> RResult<tch::Tensor> {
        let am = child(self.m, key)?;
        let p = mha_params(&am)?;
        let h = tree::int(&am, "num_heads").or_script()?;
        let dropout = if self.training && tree::training(&am) { tree::float(&am, "dropout").or_script()? } else { 0.0 };
        let o = attention::MhaOpts {
            key_padding_mask: masks.key_padding_mask,
            attn_mask: masks.attn_mask,
            need_weights: false,
            average_attn_weights: true,
            // with a mask PyTorch takes is_causal as a hint about it; without one lt makes the mask
            is_causal: masks.is_causal && masks.attn_mask.is_none(),
        };
        let batch_first = tree::boolean(&am, "batch_first").or_script()?;
        let (out, _) = attention::forward(q, kv, kv, &p, h, batch_first, dropout, &o)
            .map_err(|e| layer_err(&am, &format!("embed_dim {}, {h} heads", p.in_proj_weight.size()[1]), e))?;
        self.drop(drop, out)
    }

    /// `linear2(dropout(activation(linear1(x))))`, then its dropout (`_ff_block`).
    fn ff(&self, drop: &str, x: &tch::Tensor) -> RResult<tch::Tensor> {
        let act = tree::string(self.m, "activation").or_script()?;
        let h = self.lin("linear1", x)?;
        let h = if act == "gelu" { h.f_gelu("none") } else { h.f_relu() }.or_script()?;
        let h = self.drop("dropout", h)?;
        let out = self.lin("linear2", &h)?;
        self.drop(drop, out)
    }
}

fn apply_layer_norm(nm: &Map, t: &tch::Tensor) -> RResult<tch::Tensor> {
    let w = tree::opt_tensor(nm, "weight").or_script()?;
    let b = tree::opt_tensor(nm, "bias").or_script()?;
    let shape = tree::ints(nm, "normalized_shape").or_script()?;
    norm::layer_norm(t, &shape, w.as_deref(), b.as_deref(), tree::float(nm, "eps").or_script()?)
        .map_err(|e| layer_err(nm, "", e))
}

/// The masks of one attention call.
#[derive(Clone, Copy, Default)]
struct Masks<'a> {
    attn_mask: Option<&'a tch::Tensor>,
    key_padding_mask: Option<&'a tch::Tensor>,
    is_causal: bool,
}

fn add(a: &tch::Tensor, b: &tch::Tensor) -> RResult<tch::Tensor> {
    a.f_add(b).or_script()
}

fn encoder_layer_forward(m: &Map, x: &tch::Tensor, masks: Masks) -> RResult<tch::Tensor> {
    let l = Layer { m, training: tree::training(m) };
    if tree::boolean(m, "norm_first").or_script()? {
        let h = l.ln("norm1", x)?;
        let x = add(x, &l.attn("self_attn", "dropout1", &h, &h, masks)?)?;
        add(&x, &l.ff("dropout2", &l.ln("norm2", &x)?)?)
    } else {
        let x = l.ln("norm1", &add(x, &l.attn("self_attn", "dropout1", x, x, masks)?)?)?;
        l.ln("norm2", &add(&x, &l.ff("dropout2", &x)?)?)
    }
}

fn decoder_layer_forward(
    m: &Map,
    x: &tch::Tensor,
    memory: &tch::Tensor,
    tgt: Masks,
    mem: Masks,
) -> RResult<tch::Tensor> {
    let l = Layer { m, training: tree::training(m) };
    if tree::boolean(m, "norm_first").or_script()? {
        let h = l.ln("norm1", x)?;
        let x = add(x, &l.attn("self_attn", "dropout1", &h, &h, tgt)?)?;
        let x = add(&x, &l.attn("multihead_attn", "dropout2", &l.ln("norm2", &x)?, memory, mem)?)?;
        add(&x, &l.ff("dropout3", &l.ln("norm3", &x)?)?)
    } else {
        let x = l.ln("norm1", &add(x, &l.attn("self_attn", "dropout1", x, x, tgt)?)?)?;
        let x = l.ln("norm2", &add(&x, &l.attn("multihead_attn", "dropout2", &x, memory, mem)?)?)?;
        l.ln("norm3", &add(&x, &l.ff("dropout3", &x)?)?)
    }
}

/// The mask options of one forward, as tensors.
struct MaskArgs {
    values: Vec<(&'static str, Tensor)>,
    flags: Vec<(&'static str, bool)>,
}

impl MaskArgs {
    fn parse(o: &Map, what: &str, masks: &[&'static str], flags: &[&'static str]) -> RResult<MaskArgs> {
        let keys: Vec<&str> = masks.iter().chain(flags).copied().collect();
        let opts = Opts::new(o, what, &keys)?;
        let mut values = Vec::new();
        for k in masks {
            if let Some(t) = opts.tensor_opt(k)? {
                values.push((*k, t));
            }
        }
        let mut fl = Vec::new();
        for k in flags {
            // `()` is PyTorch's None (tgt_is_causal / src_is_causal: "detect it from the mask"), a hint only
            fl.push((*k, opts.bool_or(k, false)?));
        }
        Ok(MaskArgs { values, flags: fl })
    }

    fn mask(&self, k: &str) -> Option<&tch::Tensor> {
        self.values.iter().find(|(n, _)| *n == k).map(|(_, t)| &**t)
    }

    fn flag(&self, k: &str) -> bool {
        self.flags.iter().any(|(n, v)| *n == k && *v)
    }

    fn masks(&self, mask: &str, kpm: &str, causal: &str) -> Masks<'_> {
        Masks { attn_mask: self.mask(mask), key_padding_mask: self.mask(kpm), is_causal: self.flag(causal) }
    }
}

const ENC_LAYER_MASKS: &[&str] = &["src_mask", "src_key_padding_mask"];
const DEC_MASKS: &[&str] = &["tgt_mask", "memory_mask", "tgt_key_padding_mask", "memory_key_padding_mask"];
const DEC_FLAGS: &[&str] = &["tgt_is_causal", "memory_is_causal"];

fn decoder_masks(a: &MaskArgs) -> (Masks<'_>, Masks<'_>) {
    (
        a.masks("tgt_mask", "tgt_key_padding_mask", "tgt_is_causal"),
        a.masks("memory_mask", "memory_key_padding_mask", "memory_is_causal"),
    )
}

// ---- stacks ----

/// `n` independent copies of `layer` (PyTorch's `_get_clones`: deep copies, so every layer starts
/// with the same weights).
fn clones(layer: &Map, ty: &str, n: INT, what: &str) -> RResult<Array> {
    if tree::type_name(layer) != ty {
        return Err(err(format!("{what}: expected a {ty} (nn::{}), got a {}", snake(ty), tree::label(layer))));
    }
    if n < 1 {
        return Err(err(format!("{what}: num_layers must be at least 1, got {n}")));
    }
    let d = Dynamic::from_map(layer.clone());
    (0..n).map(|_| tree::deep_copy(&d).map_err(err)).collect()
}

fn snake(ty: &str) -> &'static str {
    if ty == "TransformerEncoderLayer" {
        "transformer_encoder_layer"
    } else {
        "transformer_decoder_layer"
    }
}

/// The `norm` option of a stack: a module or `()`.
fn norm_opt(o: &Opts, what: &str) -> RResult<Dynamic> {
    match o.get("norm") {
        None => Ok(Dynamic::UNIT),
        Some(v) if v.is_unit() => Ok(Dynamic::UNIT),
        Some(v) => match v.read_lock::<Map>() {
            Some(m) if tree::is_module(&m) => Ok(v.clone()),
            _ => {
                Err(err(format!("{what}: norm must be a module (e.g. nn::layer_norm(d_model)), got {}", v.type_name())))
            }
        },
    }
}

fn make_encoder(layer: &Map, n: INT, m: &Map) -> RResult<Map> {
    const W: &str = "nn::transformer_encoder";
    let o = Opts::new(m, W, &["norm", "enable_nested_tensor"])?;
    if o.bool_or("enable_nested_tensor", false)? {
        return Err(err(format!(
            "{W}: enable_nested_tensor: true is not supported; lt computes every position, padded ones too (PyTorch's enable_nested_tensor=False)"
        )));
    }
    let layers = clones(layer, "TransformerEncoderLayer", n, W)?;
    Ok(tree::ModuleBuilder::new("TransformerEncoder", "__nn_transformer_encoder_forward")
        .set("layers", Dynamic::from_array(layers))
        .set("num_layers", n)
        .set("norm", norm_opt(&o, W)?)
        .set("enable_nested_tensor", false)
        .build())
}

fn make_decoder(layer: &Map, n: INT, m: &Map) -> RResult<Map> {
    const W: &str = "nn::transformer_decoder";
    let o = Opts::new(m, W, &["norm"])?;
    let layers = clones(layer, "TransformerDecoderLayer", n, W)?;
    Ok(tree::ModuleBuilder::new("TransformerDecoder", "__nn_transformer_decoder_forward")
        .set("layers", Dynamic::from_array(layers))
        .set("num_layers", n)
        .set("norm", norm_opt(&o, W)?)
        .build())
}

/// The layer maps of a stack.
fn stack_layers(m: &Map, ty: &str) -> RResult<Vec<Map>> {
    let a = m
        .get("layers")
        .and_then(|v| v.read_lock::<Array>().map(|a| a.clone()))
        .ok_or_else(|| err(format!("{}: entry 'layers' must be an array", tree::label(m))))?;
    a.iter()
        .enumerate()
        .map(|(i, l)| match l.read_lock::<Map>() {
            Some(l) if tree::type_name(&l) == ty => Ok(l.clone()),
            _ => Err(err(format!("{}: layers.{i} is not a {ty}", tree::label(m)))),
        })
        .collect()
}

/// Applies the stack's final `norm`, when it has one.
fn final_norm(ctx: &NativeCallContext, m: &mut Map, x: tch::Tensor) -> RResult<tch::Tensor> {
    let Some(norm) = m.get_mut("norm").filter(|v| !v.is_unit()) else {
        return Ok(x);
    };
    let out = super::api::call_forward(ctx, norm, vec![Dynamic::from(Tensor::new(x))])?;
    out.read_lock::<Tensor>()
        .map(|t| t.handle())
        .ok_or_else(|| err(format!("{}: norm returned a {}, expected a Tensor", tree::label(m), out.type_name())))
}

fn encoder_forward(ctx: &NativeCallContext, m: &mut Map, x: &Tensor, o: &Map) -> RResult<T> {
    let a = MaskArgs::parse(o, "TransformerEncoder.forward", &["mask", "src_key_padding_mask"], &["is_causal"])?;
    let masks = a.masks("mask", "src_key_padding_mask", "is_causal");
    let mut out = x.handle();
    for l in stack_layers(m, "TransformerEncoderLayer")? {
        out = encoder_layer_forward(&l, &out, masks)?;
    }
    final_norm(ctx, m, out).map(Tensor::new)
}

fn decoder_forward(ctx: &NativeCallContext, m: &mut Map, x: &Tensor, memory: &Tensor, a: &MaskArgs) -> RResult<T> {
    let (tgt, mem) = decoder_masks(a);
    let mut out = x.handle();
    for l in stack_layers(m, "TransformerDecoderLayer")? {
        out = decoder_layer_forward(&l, &out, memory, tgt, mem)?;
    }
    final_norm(ctx, m, out).map(Tensor::new)
}

// ---- nn.Transformer ----

const TRANSFORMER_KEYS: &[&str] = &[
    "d_model",
    "nhead",
    "num_encoder_layers",
    "num_decoder_layers",
    "dim_feedforward",
    "dropout",
    "activation",
    "layer_norm_eps",
    "batch_first",
    "norm_first",
    "bias",
    "dtype",
    "device",
];

fn make_transformer(m: &Map) -> RResult<Map> {
    const W: &str = "nn::transformer";
    let o = Opts::new(m, W, TRANSFORMER_KEYS)?;
    let d = o.i64_or("d_model", 512)?;
    let h = o.i64_or("nhead", 8)?;
    let (ne, nd) = (o.i64_or("num_encoder_layers", 6)?, o.i64_or("num_decoder_layers", 6)?);
    // the layers' own options, passed on as given
    let mut lo = Map::new();
    for k in LAYER_KEYS {
        if let Some(v) = o.get(k) {
            lo.insert((*k).into(), v.clone());
        }
    }
    let c = layer_cfg(&Opts::new(&lo, W, LAYER_KEYS)?, W)?;
    let enc_layer = make_encoder_layer(d, h, &lo)?;
    let mut eo = Map::new();
    eo.insert("norm".into(), Dynamic::from_map(layer_norm(d, c.eps, c.bias, &c.placement)?));
    let encoder = make_encoder(&enc_layer, ne, &eo).map_err(|e| err(format!("{W}: {e}")))?;
    let dec_layer = make_decoder_layer(d, h, &lo)?;
    let mut dno = Map::new();
    dno.insert("norm".into(), Dynamic::from_map(layer_norm(d, c.eps, c.bias, &c.placement)?));
    let decoder = make_decoder(&dec_layer, nd, &dno).map_err(|e| err(format!("{W}: {e}")))?;
    let model = tree::ModuleBuilder::new("Transformer", "__nn_transformer_forward")
        .set("encoder", Dynamic::from_map(encoder))
        .set("decoder", Dynamic::from_map(decoder))
        .set("d_model", d)
        .set("nhead", h)
        .set("batch_first", c.batch_first)
        .build();
    // _reset_parameters: xavier_uniform_ on every parameter of more than one dim, in PyTorch's
    // parameter order (lt's walker sorts a map's children by key, PyTorch keeps __init__ order)
    let model = Dynamic::from_map(model);
    let sd: std::collections::HashMap<String, Tensor> = tree::state_dict(&model).map_err(err)?.into_iter().collect();
    for name in pytorch_matrix_order(ne, nd) {
        let t = sd.get(&name).ok_or_else(|| err(format!("{W}: internal: no parameter {name}")))?;
        init::xavier_uniform_(t, 1.0).or_script()?;
    }
    Ok(model.cast::<Map>())
}

/// The names of nn.Transformer's parameters of more than one dim, in `parameters()` order.
fn pytorch_matrix_order(ne: INT, nd: INT) -> Vec<String> {
    let mut v = Vec::new();
    for i in 0..ne {
        for p in ["self_attn.in_proj_weight", "self_attn.out_proj.weight", "linear1.weight", "linear2.weight"] {
            v.push(format!("encoder.layers.{i}.{p}"));
        }
    }
    for i in 0..nd {
        for p in [
            "self_attn.in_proj_weight",
            "self_attn.out_proj.weight",
            "multihead_attn.in_proj_weight",
            "multihead_attn.out_proj.weight",
            "linear1.weight",
            "linear2.weight",
        ] {
            v.push(format!("decoder.layers.{i}.{p}"));
        }
    }
    v
}

fn transformer_forward(ctx: &NativeCallContext, m: &mut Map, src: &Tensor, tgt: &Tensor, o: &Map) -> RResult<T> {
    const MASKS: &[&str] = &[
        "src_mask",
        "tgt_mask",
        "memory_mask",
        "src_key_padding_mask",
        "tgt_key_padding_mask",
        "memory_key_padding_mask",
    ];
    let a = MaskArgs::parse(o, "Transformer.forward", MASKS, &["src_is_causal", "tgt_is_causal", "memory_is_causal"])?;
    let d = tree::int(m, "d_model").or_script()?;
    let batch_first = tree::boolean(m, "batch_first").or_script()?;
    let (ss, ts) = (src.size(), tgt.size());
    let batched = ss.len() == 3;
    let bdim = usize::from(!batch_first);
    if batched && (ts.len() != 3 || ss[bdim] != ts[bdim]) {
        return Err(err(format!(
            "Transformer: the batch number of src and tgt must be equal, got src {ss:?} and tgt {ts:?}"
        )));
    }
    if ss.last() != Some(&d) || ts.last() != Some(&d) {
        return Err(err(format!(
            "Transformer: the feature number of src and tgt must be equal to d_model ({d}), got src {ss:?} and tgt {ts:?}"
        )));
    }
    let enc = m.get_mut("encoder").ok_or_else(|| err("Transformer: missing encoder"))?;
    let mut enc_map = enc.write_lock::<Map>().ok_or_else(|| err("Transformer: encoder must be a module"))?;
    let mut eo = Map::new();
    for (from, to) in [("src_mask", "mask"), ("src_key_padding_mask", "src_key_padding_mask")] {
        if let Some(t) = a.mask(from) {
            eo.insert(to.into(), Dynamic::from(Tensor::new(t.shallow_clone())));
        }
    }
    eo.insert("is_causal".into(), Dynamic::from_bool(a.flag("src_is_causal")));
    let memory = encoder_forward(ctx, &mut enc_map, src, &eo)?;
    drop(enc_map);
    let dec = m.get_mut("decoder").ok_or_else(|| err("Transformer: missing decoder"))?;
    let mut dec_map = dec.write_lock::<Map>().ok_or_else(|| err("Transformer: decoder must be a module"))?;
    decoder_forward(ctx, &mut dec_map, tgt, &memory, &a)
}

fn square_subsequent_mask(sz: INT, o: &Map) -> RResult<T> {
    let opts = Opts::new(o, "nn::generate_square_subsequent_mask", &["device", "dtype"])?;
    if sz < 0 {
        return Err(err(format!("nn::generate_square_subsequent_mask: sz must be ≥ 0, got {sz}")));
    }
    let po = param_opts(&opts)?;
    if !crate::tensor::options::is_floating(po.0) {
        return Err(err(
            "nn::generate_square_subsequent_mask: dtype must be a floating point type (the mask holds -inf)",
        ));
    }
    tch::Tensor::f_full([sz, sz], f64::NEG_INFINITY, po).and_then(|t| t.f_triu(1)).map(Tensor::new).or_script()
}

/// Registers the Transformer layers.
pub fn register(reg: &mut Registry) {
    let doc = "A Transformer encoder layer (nn.TransformerEncoderLayer): self-attention and a feed-forward block, each with \
residual, dropout and layer norm. `nn::transformer_encoder_layer(d_model, nhead)` plus options `dim_feedforward` (2048), \
`dropout` (0.1), `activation` (\"relu\" / \"gelu\"), `layer_norm_eps` (1e-5), `batch_first` (false), `norm_first` (false), \
`bias` (true), `dtype`, `device`. `forward(src)` or `forward(src, #{src_mask, src_key_padding_mask, is_causal})`. Parameter \
names match PyTorch's (`self_attn.in_proj_weight`, `linear1.weight`, `norm1.weight`, …).\n\n```rhai\nlet layer = nn::transformer_encoder_layer(8, 2, #{dim_feedforward: 16, batch_first: true});\nprint(layer.forward(torch::randn([2, 5, 8])).shape);\n```";
    reg.volatile("nn", "transformer_encoder_layer", "d_model, nhead", doc, |d: INT, h: INT| {
        make_encoder_layer(d, h, &Map::new())
    });
    reg.volatile("nn", "transformer_encoder_layer", "d_model, nhead, opts", doc, |d: INT, h: INT, m: Map| {
        make_encoder_layer(d, h, &m)
    });
    let doc = fwd_doc("nn::transformer_encoder_layer", "let l = nn::transformer_encoder_layer(4, 2, #{dim_feedforward: 8});\nl.eval_mode();\nprint(l.forward(torch::randn([3, 1, 4])).shape);");
    fn enc_layer_fwd(m: &Map, x: &Tensor, o: &Map) -> RResult<T> {
        let a = MaskArgs::parse(o, "TransformerEncoderLayer.forward", ENC_LAYER_MASKS, &["is_causal"])?;
        encoder_layer_forward(m, x, a.masks("src_mask", "src_key_padding_mask", "is_causal")).map(Tensor::new)
    }
    reg.func("", "__nn_transformer_encoder_layer_forward", "self, src", &doc, |m: &mut Map, x: T| {
        enc_layer_fwd(m, &x, &Map::new())
    });
    reg.func("", "__nn_transformer_encoder_layer_forward", "self, src, opts", &doc, |m: &mut Map, x: T, o: Map| {
        enc_layer_fwd(m, &x, &o)
    });

    let doc = "A Transformer decoder layer (nn.TransformerDecoderLayer): self-attention over the target, attention over \
the encoder's output (`memory`) and a feed-forward block, each with residual, dropout and layer norm. \
`nn::transformer_decoder_layer(d_model, nhead)` plus the options of `nn::transformer_encoder_layer`. `forward(tgt, memory)` \
or `forward(tgt, memory, #{tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask, tgt_is_causal, \
memory_is_causal})`. Parameters: `self_attn.*`, `multihead_attn.*`, `linear1`, `linear2`, `norm1`…`norm3`, as in PyTorch.\n\n\
```rhai\nlet layer = nn::transformer_decoder_layer(8, 2, #{dim_feedforward: 16, batch_first: true});\n\
let tgt = torch::randn([2, 4, 8]);\nlet memory = torch::randn([2, 6, 8]);\n\
print(layer.forward(tgt, memory, #{tgt_mask: nn::generate_square_subsequent_mask(4)}).shape);\n```";
    reg.volatile("nn", "transformer_decoder_layer", "d_model, nhead", doc, |d: INT, h: INT| {
        make_decoder_layer(d, h, &Map::new())
    });
    reg.volatile("nn", "transformer_decoder_layer", "d_model, nhead, opts", doc, |d: INT, h: INT, m: Map| {
        make_decoder_layer(d, h, &m)
    });
    let doc = fwd_doc("nn::transformer_decoder_layer", "let l = nn::transformer_decoder_layer(4, 2, #{dim_feedforward: 8});\nl.eval_mode();\nprint(l.forward(torch::randn([3, 1, 4]), torch::randn([5, 1, 4])).shape);");
    fn dec_layer_fwd(m: &Map, x: &Tensor, mem: &Tensor, o: &Map) -> RResult<T> {
        let a = MaskArgs::parse(o, "TransformerDecoderLayer.forward", DEC_MASKS, DEC_FLAGS)?;
        let (tgt, memm) = decoder_masks(&a);
        decoder_layer_forward(m, x, mem, tgt, memm).map(Tensor::new)
    }
    reg.func("", "__nn_transformer_decoder_layer_forward", "self, tgt, memory", &doc, |m: &mut Map, x: T, y: T| {
        dec_layer_fwd(m, &x, &y, &Map::new())
    });
    reg.func(
        "",
        "__nn_transformer_decoder_layer_forward",
        "self, tgt, memory, opts",
        &doc,
        |m: &mut Map, x: T, y: T, o: Map| dec_layer_fwd(m, &x, &y, &o),
    );

    let doc =
        "A stack of `num_layers` copies of an encoder layer (nn.TransformerEncoder): each copy starts with the given \
layer's weights (PyTorch deep-copies it), named `layers.0.…`, `layers.1.…`. Options: `norm` (a module applied to the \
output, e.g. `nn::layer_norm(d_model)`), `enable_nested_tensor` (only `false`: lt computes every position, padded ones \
too). `forward(src)` or `forward(src, #{mask, src_key_padding_mask, is_causal})`.\n\n```rhai\n\
let layer = nn::transformer_encoder_layer(8, 2, #{dim_feedforward: 16, batch_first: true});\n\
let enc = nn::transformer_encoder(layer, 2, #{norm: nn::layer_norm(8), enable_nested_tensor: false});\n\
let pad = torch::tensor([[false, false, true], [false, false, false]]);\n\
print(enc.forward(torch::randn([2, 3, 8]), #{src_key_padding_mask: pad}).shape);\nprint(enc.state_dict().len());\n```";
    reg.volatile("nn", "transformer_encoder", "encoder_layer, num_layers", doc, |l: Map, n: INT| {
        make_encoder(&l, n, &Map::new())
    });
    reg.volatile("nn", "transformer_encoder", "encoder_layer, num_layers, opts", doc, |l: Map, n: INT, m: Map| {
        make_encoder(&l, n, &m)
    });
    let doc = fwd_doc("nn::transformer_encoder", "let e = nn::transformer_encoder(nn::transformer_encoder_layer(4, 2, #{dim_feedforward: 8}), 2);\nprint(e.forward(torch::randn([3, 1, 4]), #{is_causal: true}).shape);");
    reg.func("", "__nn_transformer_encoder_forward", "self, src", &doc, |ctx: NativeCallContext, m: &mut Map, x: T| {
        encoder_forward(&ctx, m, &x, &Map::new())
    });
    reg.func(
        "",
        "__nn_transformer_encoder_forward",
        "self, src, opts",
        &doc,
        |ctx: NativeCallContext, m: &mut Map, x: T, o: Map| encoder_forward(&ctx, m, &x, &o),
    );

    let doc = "A stack of `num_layers` copies of a decoder layer (nn.TransformerDecoder), each starting with the given \
layer's weights. Option `norm` (a module applied to the output). `forward(tgt, memory)` or `forward(tgt, memory, \
#{tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask, tgt_is_causal, memory_is_causal})`.\n\n```rhai\n\
let layer = nn::transformer_decoder_layer(8, 2, #{dim_feedforward: 16});\nlet dec = nn::transformer_decoder(layer, 2, #{norm: nn::layer_norm(8)});\n\
print(dec.forward(torch::randn([4, 2, 8]), torch::randn([6, 2, 8]), #{tgt_is_causal: true}).shape);\n```";
    reg.volatile("nn", "transformer_decoder", "decoder_layer, num_layers", doc, |l: Map, n: INT| {
        make_decoder(&l, n, &Map::new())
    });
    reg.volatile("nn", "transformer_decoder", "decoder_layer, num_layers, opts", doc, |l: Map, n: INT, m: Map| {
        make_decoder(&l, n, &m)
    });
    let doc = fwd_doc("nn::transformer_decoder", "let d = nn::transformer_decoder(nn::transformer_decoder_layer(4, 2, #{dim_feedforward: 8}), 1);\nprint(d.forward(torch::randn([3, 1, 4]), torch::randn([2, 1, 4])).shape);");
    fn dec_fwd(ctx: &NativeCallContext, m: &mut Map, x: &Tensor, mem: &Tensor, o: &Map) -> RResult<T> {
        let a = MaskArgs::parse(o, "TransformerDecoder.forward", DEC_MASKS, DEC_FLAGS)?;
        decoder_forward(ctx, m, x, mem, &a)
    }
    reg.func(
        "",
        "__nn_transformer_decoder_forward",
        "self, tgt, memory",
        &doc,
        |ctx: NativeCallContext, m: &mut Map, x: T, y: T| dec_fwd(&ctx, m, &x, &y, &Map::new()),
    );
    reg.func(
        "",
        "__nn_transformer_decoder_forward",
        "self, tgt, memory, opts",
        &doc,
        |ctx: NativeCallContext, m: &mut Map, x: T, y: T, o: Map| dec_fwd(&ctx, m, &x, &y, &o),
    );

    let doc = "The Transformer of \"Attention Is All You Need\" (nn.Transformer): an encoder stack and a decoder stack, \
each ending in a LayerNorm, weights of more than one dim re-drawn xavier-uniform as PyTorch does. Options (PyTorch's \
keywords and defaults): `d_model` (512), `nhead` (8), `num_encoder_layers` (6), `num_decoder_layers` (6), \
`dim_feedforward` (2048), `dropout` (0.1), `activation`, `layer_norm_eps`, `batch_first`, `norm_first`, `bias`, `dtype`, \
`device`. `forward(src, tgt)` or `forward(src, tgt, #{src_mask, tgt_mask, memory_mask, src_key_padding_mask, \
tgt_key_padding_mask, memory_key_padding_mask, src_is_causal, tgt_is_causal, memory_is_causal})`. Parameter names: \
`encoder.layers.0.self_attn.in_proj_weight`, `decoder.norm.weight`, ….\n\n```rhai\n\
let t = nn::transformer(#{d_model: 8, nhead: 2, num_encoder_layers: 1, num_decoder_layers: 1, dim_feedforward: 16, batch_first: true});\n\
let src = torch::randn([2, 5, 8]);\nlet tgt = torch::randn([2, 3, 8]);\n\
print(t.forward(src, tgt, #{tgt_mask: nn::generate_square_subsequent_mask(3)}).shape);\n```";
    reg.volatile("nn", "transformer", "", doc, || make_transformer(&Map::new()));
    reg.volatile("nn", "transformer", "opts", doc, |m: Map| make_transformer(&m));
    let doc = fwd_doc("nn::transformer", "let t = nn::transformer(#{d_model: 4, nhead: 2, num_encoder_layers: 1, num_decoder_layers: 1, dim_feedforward: 8});\nprint(t.forward(torch::randn([5, 1, 4]), torch::randn([3, 1, 4])).shape);");
    reg.func(
        "",
        "__nn_transformer_forward",
        "self, src, tgt",
        &doc,
        |ctx: NativeCallContext, m: &mut Map, s: T, t: T| transformer_forward(&ctx, m, &s, &t, &Map::new()),
    );
    reg.func(
        "",
        "__nn_transformer_forward",
        "self, src, tgt, opts",
        &doc,
        |ctx: NativeCallContext, m: &mut Map, s: T, t: T, o: Map| transformer_forward(&ctx, m, &s, &t, &o),
    );

    let doc = "A causal mask for a sequence of `sz` (nn.Transformer.generate_square_subsequent_mask): float, `-inf` above \
the diagonal (a position may not attend to later ones) and 0 elsewhere. Options: `device`, `dtype` (default float32).\n\n\
```rhai\nprint(nn::generate_square_subsequent_mask(3));\n```";
    reg.func("nn", "generate_square_subsequent_mask", "sz", doc, |sz: INT| square_subsequent_mask(sz, &Map::new()));
    reg.func("nn", "generate_square_subsequent_mask", "sz, opts", doc, |sz: INT, o: Map| {
        square_subsequent_mask(sz, &o)
    });
}
