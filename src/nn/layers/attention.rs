//! `nn.MultiheadAttention`, following `F.multi_head_attention_forward` op by op.
use super::{empty, linear, Opts};
use crate::nn::init;
use crate::tensor::Result;
use crate::tensor_err;

/// Parameters of a MultiheadAttention: in_proj (3E×E, 3E) and out_proj (E×E, E).
pub struct MhaParams {
    pub in_proj_weight: tch::Tensor,
    pub in_proj_bias: Option<tch::Tensor>,
    pub out_proj_weight: tch::Tensor,
    pub out_proj_bias: Option<tch::Tensor>,
}

/// Draws like PyTorch: out_proj as a Linear (kaiming weight, uniform bias), then in_proj_weight
/// xavier_uniform, and both biases zeroed.
pub fn init(embed_dim: i64, num_heads: i64, bias: bool, o: Opts) -> Result<MhaParams> {
    if embed_dim <= 0 || num_heads <= 0 {
        return Err(tensor_err!("embed_dim and num_heads must be positive, got {embed_dim} and {num_heads}"));
    }
    if embed_dim % num_heads != 0 {
        return Err(tensor_err!("embed_dim must be divisible by num_heads"));
    }
    let in_w = empty(&[3 * embed_dim, embed_dim], o)?;
    let in_b = if bias { Some(empty(&[3 * embed_dim], o)?) } else { None };
    let (out_w, out_b) = linear::init(embed_dim, embed_dim, bias, o)?;
    init::xavier_uniform_(&in_w, 1.0)?;
    if let Some(b) = &in_b {
        init::constant_(b, 0.0)?;
    }
    if let Some(b) = &out_b {
        init::constant_(b, 0.0)?;
    }
    Ok(MhaParams { in_proj_weight: in_w, in_proj_bias: in_b, out_proj_weight: out_w, out_proj_bias: out_b })
}

/// Forward options.
pub struct MhaOpts<'a> {
    pub key_padding_mask: Option<&'a tch::Tensor>,
    pub attn_mask: Option<&'a tch::Tensor>,
    pub need_weights: bool,
    pub average_attn_weights: bool,
    pub is_causal: bool,
}

/// A float mask from a bool one (true = masked out, as nn.MultiheadAttention takes it) or a float one.
fn float_mask(m: &tch::Tensor, like: &tch::Tensor) -> Result<tch::Tensor> {
    if m.kind() == tch::Kind::Bool {
        Ok(tch::Tensor::f_zeros(m.size(), (like.kind(), like.device()))?.f_masked_fill(m, f64::NEG_INFINITY)?)
    } else {
        Ok(m.f_to_kind(like.kind())?)
    }
}

/// Returns the attention output and, with `need_weights`, the attention weights.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    q: &tch::Tensor,
    k: &tch::Tensor,
    v: &tch::Tensor,
    p: &MhaParams,
    num_heads: i64,
    batch_first: bool,
    dropout_p: f64,
    o: &MhaOpts,
) -> Result<(tch::Tensor, Option<tch::Tensor>)> {
    let e = p.in_proj_weight.size()[1];
    let dims = q.dim();
    if dims != 2 && dims != 3 {
        return Err(tensor_err!("expected 2D (unbatched) or 3D (batched) query, got shape {:?}", q.size()));
    }
    for (name, t) in [("query", q), ("key", k), ("value", v)] {
        if t.dim() != dims {
            return Err(tensor_err!(
                "query, key and value must have the same number of dims, {name} has shape {:?}",
                t.size()
            ));
        }
        let last = t.size()[dims - 1];
        if last != e {
            return Err(tensor_err!("expected {name} last dim {e} (embed_dim), got {last} (shape {:?})", t.size()));
        }
    }
    let batched = dims == 3;
    // to (L, N, E)
    let prep = |t: &tch::Tensor| -> Result<tch::Tensor> {
        Ok(if !batched {
            t.f_unsqueeze(1)?
        } else if batch_first {
            t.f_transpose(0, 1)?
        } else {
            t.shallow_clone()
        })
    };
    let (q, k, v) = (prep(q)?, prep(k)?, prep(v)?);
    let (tgt, bsz) = (q.size()[0], q.size()[1]);
    let src = k.size()[0];
    if k.size() != v.size() {
        return Err(tensor_err!("key shape {:?} does not match value shape {:?}", k.size(), v.size()));
    }
    if k.size()[1] != bsz {
        return Err(tensor_err!("key batch size {} does not match query batch size {bsz}", k.size()[1]));
    }
    let h = num_heads;
    let hd = e / h;
    // in-projection
    let ws = p.in_proj_weight.f_chunk(3, 0)?;
    let bs: Vec<Option<tch::Tensor>> = match &p.in_proj_bias {
        Some(b) => b.f_chunk(3, 0)?.into_iter().map(Some).collect(),
        None => vec![None, None, None],
    };
    let qp = q.f_linear(&ws[0], bs[0].as_ref())?;
    let kp = k.f_linear(&ws[1], bs[1].as_ref())?;
    let vp = v.f_linear(&ws[2], bs[2].as_ref())?;
    // masks → one float mask of shape (N·H, L, S) or (L, S)
    let mut mask: Option<tch::Tensor> = match o.attn_mask {
        Some(m) => {
            let m = float_mask(m, &qp)?;
            match m.dim() {
                2 if m.size() == [tgt, src] => Some(m.f_unsqueeze(0)?),
                3 if m.size() == [bsz * h, tgt, src] => Some(m),
                _ => {
                    return Err(tensor_err!(
                        "attn_mask should have shape [{tgt}, {src}] or [{}, {tgt}, {src}], got {:?}",
                        bsz * h,
                        m.size()
                    ))
                }
            }
        }
        None if o.is_causal => {
            let m = tch::Tensor::f_ones([tgt, src], (tch::Kind::Bool, qp.device()))?.f_triu(1)?;
            Some(float_mask(&m, &qp)?.f_unsqueeze(0)?)
        }
        None => None,
    };
    if let Some(kpm) = o.key_padding_mask {
        let kpm = if batched { kpm.shallow_clone() } else { kpm.f_unsqueeze(0)? };
        if kpm.size() != [bsz, src] {
            return Err(tensor_err!("expected key_padding_mask of shape [{bsz}, {src}], got {:?}", kpm.size()));
        }
        let kpm = float_mask(&kpm, &qp)?.f_view([bsz, 1, 1, src])?.f_expand([bsz, h, 1, src], false)?.f_reshape([
            bsz * h,
            1,
            src,
        ])?;
        mask = Some(match mask {
            Some(m) => m.f_add(&kpm)?,
            None => kpm,
        });
    }
    // (L, N, E) → (N·H, L, hd)
    let heads = |t: &tch::Tensor, len: i64| -> Result<tch::Tensor> {
        Ok(t.f_contiguous()?.f_view([len, bsz * h, hd])?.f_transpose(0, 1)?)
    };
    let (qh, kh, vh) = (heads(&qp, tgt)?, heads(&kp, src)?, heads(&vp, src)?);
    let (out, weights) = if o.need_weights {
        let qs = qh.f_mul_scalar(1.0 / (hd as f64).sqrt())?;
        let kt = kh.f_transpose(-2, -1)?;
        let scores = match &mask {
            Some(m) => m.f_baddbmm(&qs, &kt, 1.0, 1.0)?,
            None => qs.f_bmm(&kt)?,
        };
        let mut w = scores.f_softmax(-1, None::<tch::Kind>)?;
        if dropout_p > 0.0 {
            w = w.f_dropout(dropout_p, true)?;
        }
        let out = w.f_bmm(&vh)?.f_transpose(0, 1)?.f_contiguous()?.f_view([tgt * bsz, e])?;
        let mut w = w.f_view([bsz, h, tgt, src])?;
        if o.average_attn_weights {
            w = w.f_mean_dim([1i64].as_slice(), false, None::<tch::Kind>)?;
        }
        (out, Some(w))
    } else {
        let m4 = match &mask {
            Some(m) if m.size()[0] == 1 => Some(m.f_unsqueeze(0)?),
            Some(m) => Some(m.f_view([bsz, h, -1, src])?),
            None => None,
        };
        let q4 = qh.f_view([bsz, h, tgt, hd])?;
        let k4 = kh.f_view([bsz, h, src, hd])?;
        let v4 = vh.f_view([bsz, h, src, hd])?;
        let a = tch::Tensor::f_scaled_dot_product_attention(&q4, &k4, &v4, m4.as_ref(), dropout_p, false, None, false)?;
        (a.f_permute([2, 0, 1, 3])?.f_contiguous()?.f_view([bsz * tgt, e])?, None)
    };
    let out = out.f_linear(&p.out_proj_weight, p.out_proj_bias.as_ref())?.f_view([tgt, bsz, e])?;
    let out = if !batched {
        out.f_squeeze_dim(1)?
    } else if batch_first {
        out.f_transpose(0, 1)?
    } else {
        out
    };
    let weights = match weights {
        Some(w) if !batched => Some(w.f_squeeze_dim(0)?),
        w => w,
    };
    Ok((out, weights))
}
