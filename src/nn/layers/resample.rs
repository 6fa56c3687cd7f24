//! Rearranging and padding spatial dims: `nn.PixelShuffle` / `nn.PixelUnshuffle`,
//! `nn.ZeroPad2d` / `nn.ReflectionPad2d` (nn.Upsample is `functional::interpolate`).
use crate::tensor::Result;
use crate::tensor_err;

/// (N, C·r², H, W) → (N, C, H·r, W·r); `unshuffle` is the inverse, (N, C, H·r, W·r) → (N, C·r², H, W).
pub fn pixel_shuffle(x: &tch::Tensor, factor: i64, unshuffle: bool) -> Result<tch::Tensor> {
    let what = if unshuffle { "downscale_factor" } else { "upscale_factor" };
    if factor <= 0 {
        return Err(tensor_err!("{what} must be a positive integer, got {factor}"));
    }
    if x.dim() < 3 {
        return Err(tensor_err!("expected an input of at least 3 dims (C, H, W), got shape {:?}", x.size()));
    }
    Ok(if unshuffle { x.f_pixel_unshuffle(factor)? } else { x.f_pixel_shuffle(factor)? })
}

/// A 2-d padding as PyTorch's `_pair`/`_quadruple`: one int for all four sides, or
/// [left, right, top, bottom].
pub fn quadruple(p: &[i64]) -> Result<Vec<i64>> {
    match p.len() {
        1 => Ok(vec![p[0]; 4]),
        4 => Ok(p.to_vec()),
        n => Err(tensor_err!("padding must be an int or [left, right, top, bottom], got {n} values")),
    }
}

/// Pads the last two dims of 3D or 4D input by [left, right, top, bottom]: with zeros
/// (`reflect` false; negative values crop) or by reflection about the edges.
pub fn pad2d(x: &tch::Tensor, pad: &[i64], reflect: bool) -> Result<tch::Tensor> {
    super::expect_ndim(x, &[3, 4], "(C, H, W) or (N, C, H, W)")?;
    let pad = quadruple(pad)?;
    let s = x.size();
    let (h, w) = (s[s.len() - 2], s[s.len() - 1]);
    if !reflect {
        for (lo, hi, dim, what) in [(pad[0], pad[1], w, "width"), (pad[2], pad[3], h, "height")] {
            if dim + lo + hi < 0 {
                return Err(tensor_err!(
                    "the input {what} {dim}, plus padding {lo} and {hi}, is negative; input shape {s:?}"
                ));
            }
        }
        return Ok(x.f_constant_pad_nd(pad.as_slice())?);
    }
    for (p, dim, side) in [(pad[0], w, "left"), (pad[1], w, "right"), (pad[2], h, "top"), (pad[3], h, "bottom")] {
        if p >= dim {
            return Err(tensor_err!(
                "reflection padding ({side}={p}) must be less than the corresponding input dimension ({dim}); input shape {s:?}"
            ));
        }
    }
    Ok(x.f_reflection_pad2d(pad.as_slice())?)
}
