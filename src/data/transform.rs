//! Transforms of samples, with torchvision.transforms.v2's names and semantics: geometry (resize,
//! crops, flips, rotation), normalize, dtype casts, one-hot, compositions. They run one sample at
//! a time on the loader's workers, before collation, so images of different sizes can become one
//! batch once resized or cropped. A sample may carry a mask (torchvision's `tv_tensors.Mask`):
//! geometric transforms move it with the image, using nearest interpolation; normalize and dtype
//! casts leave it alone. Random draws are seeded per (dataset seed, loader seed, epoch, sample
//! index, transform), so batches never depend on `num_workers` or on which worker ran them.
use super::batch::collate;
use super::rng::Rng;
use super::{check_indices, Batch, Dataset, FetchCtx, Result};
use crate::data_err;
use std::sync::Arc;
use tch::{Kind, Tensor};

/// Interpolation of geometric transforms (torchvision InterpolationMode).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Interp {
    Nearest,
    Bilinear,
}

/// How padding is made (torchvision's padding_mode): a constant `fill`, the edge pixel repeated,
/// the image mirrored about its edge pixel (`reflect`: 2 1 | 0 1 2) or including it
/// (`symmetric`: 1 0 | 0 1 2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PadMode {
    Constant,
    Edge,
    Reflect,
    Symmetric,
}

impl PadMode {
    pub const NAMES: [&'static str; 4] = ["constant", "edge", "reflect", "symmetric"];

    pub fn parse(s: &str) -> Option<PadMode> {
        Some(match s {
            "constant" => PadMode::Constant,
            "edge" => PadMode::Edge,
            "reflect" => PadMode::Reflect,
            "symmetric" => PadMode::Symmetric,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

#[derive(Debug, Clone)]
pub enum Transform {
    /// torchvision Resize: `size` is `[h, w]`, or `[s]` for the smaller edge (capped by `max_size`).
    Resize { size: Vec<i64>, interpolation: Interp, antialias: bool, max_size: Option<i64> },
    /// torchvision CenterCrop: zero-padded first where the crop is larger than the image.
    CenterCrop { height: i64, width: i64 },
    /// torchvision RandomCrop: `padding` is left, top, right, bottom, made by `padding_mode`
    /// (`fill` for constant padding).
    RandomCrop { height: i64, width: i64, padding: [i64; 4], pad_if_needed: bool, fill: f64, padding_mode: PadMode },
    /// torchvision RandomResizedCrop.
    RandomResizedCrop {
        height: i64,
        width: i64,
        scale: (f64, f64),
        ratio: (f64, f64),
        interpolation: Interp,
        antialias: bool,
    },
    /// torchvision RandomHorizontalFlip.
    RandomHorizontalFlip { p: f64 },
    /// torchvision RandomVerticalFlip.
    RandomVerticalFlip { p: f64 },
    /// torchvision RandomRotation: an angle drawn uniformly from `degrees`, counter-clockwise about
    /// `center` (`[x, y]` in pixels; the image centre when `None`); `expand` grows the output to
    /// hold the whole rotated image.
    RandomRotation { degrees: (f64, f64), interpolation: Interp, fill: f64, expand: bool, center: Option<(f64, f64)> },
    /// torchvision ColorJitter: factors drawn from each range, applied in a random order.
    ColorJitter {
        brightness: Option<(f64, f64)>,
        contrast: Option<(f64, f64)>,
        saturation: Option<(f64, f64)>,
        hue: Option<(f64, f64)>,
    },
    /// torchvision Normalize: `(x - mean[c]) / std[c]` over the channel dim (-3) of a float image.
    Normalize { mean: Vec<f64>, std: Vec<f64> },
    /// torchvision ToDtype: with `scale`, integer images become floats in [0, 1] and back.
    ToDtype { kind: Kind, scale: bool },
    /// Class indices to one-hot vectors (torch.nn.functional.one_hot).
    OneHot { num_classes: i64 },
    /// One after the other (torchvision Compose).
    Compose(Vec<Transform>),
}

/// What a transform acts on: an image (or any tensor, for dtype casts and one-hot), and the
/// mask that goes with it, if any.
pub struct Sample {
    pub image: Tensor,
    pub mask: Option<Tensor>,
}

fn is_float(k: Kind) -> bool {
    crate::tensor::options::is_floating(k)
}

/// Height and width: the last two dims.
fn hw(t: &Tensor, what: &str) -> Result<(i64, i64)> {
    let s = t.size();
    if s.len() < 2 {
        return Err(data_err!("{what}: expected an image [..., H, W], got shape {s:?}"));
    }
    Ok((s[s.len() - 2], s[s.len() - 1]))
}

/// `t` as `[N, C, H, W]` (C: dim -3 of an image, 1 for a mask or a 2-D image), and its shape.
fn planes(t: &Tensor, mask: bool) -> Result<(Tensor, Vec<i64>)> {
    let s = t.size();
    let n = s.len();
    let c = if !mask && n >= 3 { s[n - 3] } else { 1 };
    Ok((t.f_reshape([-1, c, s[n - 2], s[n - 1]])?, s))
}

fn unplanes(t: Tensor, shape: &[i64]) -> Result<Tensor> {
    let s = t.size();
    let mut out = shape[..shape.len() - 2].to_vec();
    out.extend_from_slice(&s[2..]);
    Ok(t.f_reshape(out)?)
}

/// torchvision's output size of Resize for an `h × w` image.
pub fn resized_size(h: i64, w: i64, size: &[i64], max_size: Option<i64>) -> Result<(i64, i64)> {
    match size {
        [s] => {
            let (short, long) = if w <= h { (w, h) } else { (h, w) };
            let (mut ns, mut nl) = (*s, (*s as f64 * long as f64 / short as f64) as i64);
            if let Some(m) = max_size {
                if m <= *s {
                    return Err(data_err!(
                        "resize: max_size = {m} must be strictly greater than the requested size for the smaller edge size = {s}"
                    ));
                }
                if nl > m {
                    (ns, nl) = ((m as f64 * ns as f64 / nl as f64) as i64, m);
                }
            }
            Ok(if w <= h { (nl, ns) } else { (ns, nl) })
        }
        [a, b] => Ok((*a, *b)),
        _ => Err(data_err!("resize: size must be an int or [height, width], got {size:?}")),
    }
}

/// torchvision's resize_image: float images interpolate as they are, uint8 natively on the CPU
/// (bilinear and nearest), other dtypes through float32 and back with rounding.
fn resize_tensor(t: &Tensor, oh: i64, ow: i64, interp: Interp, antialias: bool, mask: bool) -> Result<Tensor> {
    let (h, w) = hw(t, "resize")?;
    if (oh, ow) == (h, w) {
        return Ok(t.shallow_clone());
    }
    if oh <= 0 || ow <= 0 {
        return Err(data_err!("resize: the output size {oh}x{ow} of a {h}x{w} image is not positive"));
    }
    let interp = if mask { Interp::Nearest } else { interp };
    let (x, shape) = planes(t, mask)?;
    let kind = x.kind();
    let native = matches!(kind, Kind::Float | Kind::Double) || (kind == Kind::Uint8 && x.device() == tch::Device::Cpu);
    let xf = if native { x } else { x.f_to_kind(Kind::Float)? };
    let y = match interp {
        Interp::Nearest => xf.f_upsample_nearest2d([oh, ow], None, None)?,
        Interp::Bilinear if antialias => xf.f_internal_upsample_bilinear2d_aa([oh, ow], false, None, None)?,
        Interp::Bilinear => xf.f_upsample_bilinear2d([oh, ow], false, None, None)?,
    };
    let y = if native {
        y
    } else if is_float(kind) {
        y.f_to_kind(kind)?
    } else {
        y.f_round()?.f_to_kind(kind)?
    };
    unplanes(y, &shape)
}

/// The source index of each of the `before + n + after` positions of a dim of size `n` padded by
/// `mode` (not constant), as torch's replication / reflection pads and torchvision's
/// _pad_symmetric pick them; a pad wider than the mode allows is an error.
fn pad_indices(n: i64, before: i64, after: i64, mode: PadMode) -> Result<Vec<i64>> {
    let most = match mode {
        PadMode::Reflect => n - 1,
        PadMode::Symmetric => n,
        _ => i64::MAX,
    };
    if (before > 0 || after > 0) && (n == 0 || before > most || after > most) {
        return Err(data_err!(
            "padding_mode \"{}\": padding ({before}, {after}) is too large for a dimension of {n} (at most {} on a side)",
            mode.name(),
            if n == 0 { 0 } else { most }
        ));
    }
    Ok((-before..n + after)
        .map(|i| match mode {
            PadMode::Reflect if i < 0 => -i,
            PadMode::Reflect if i >= n => 2 * (n - 1) - i,
            PadMode::Symmetric if i < 0 => -i - 1,
            PadMode::Symmetric if i >= n => 2 * n - 1 - i,
            _ => i.clamp(0, n - 1),
        })
        .collect())
}

/// Pads the last two dims by `[left, top, right, bottom]` (torchvision pad_image): constant with
/// `fill`, otherwise by copying pixels (exact for every dtype).
pub fn pad(t: &Tensor, padding: [i64; 4], mode: PadMode, fill: f64) -> Result<Tensor> {
    let [l, tp, r, b] = padding;
    let (h, w) = hw(t, "pad")?;
    if padding.iter().all(|&p| p == 0) {
        return Ok(t.shallow_clone());
    }
    if mode == PadMode::Constant {
        return Ok(t.f_pad([l, r, tp, b], "constant", fill)?);
    }
    let n = t.dim() as i64;
    let index = |k: i64, before, after| -> Result<Tensor> {
        Ok(Tensor::f_from_slice(&pad_indices(k, before, after, mode)?)?.f_to_device(t.device())?)
    };
    Ok(t.f_index_select(n - 1, &index(w, l, r)?)?.f_index_select(n - 2, &index(h, tp, b)?)?)
}

/// The `height × width` window at `top`, `left`; where it leaves the image, filled with `fill`
/// (torchvision crop_image, with pad's fill).
fn crop(t: &Tensor, top: i64, left: i64, height: i64, width: i64, fill: f64) -> Result<Tensor> {
    let (h, w) = hw(t, "crop")?;
    let n = t.dim() as i64;
    let (pl, pt) = ((-left).max(0), (-top).max(0));
    let (pr, pb) = ((left + width - w).max(0), (top + height - h).max(0));
    let x = if pl + pt + pr + pb > 0 { t.f_pad([pl, pr, pt, pb], "constant", fill)? } else { t.shallow_clone() };
    Ok(x.f_narrow(n - 2, top + pt, height)?.f_narrow(n - 1, left + pl, width)?)
}

fn center_crop(t: &Tensor, ch: i64, cw: i64) -> Result<Tensor> {
    let (h, w) = hw(t, "center_crop")?;
    // torchvision pads (w - cw) // 2 on the left when the crop is wider, then takes
    // round((w - cw) / 2) with Python's round (ties to even) of the padded image.
    let (pl, pt) = (if cw > w { (cw - w) / 2 } else { 0 }, if ch > h { (ch - h) / 2 } else { 0 });
    let (pw, ph) = (w.max(cw), h.max(ch));
    let top = ((ph - ch) as f64 / 2.0).round_ties_even() as i64 - pt;
    let left = ((pw - cw) as f64 / 2.0).round_ties_even() as i64 - pl;
    crop(t, top, left, ch, cw, 0.0)
}

/// The output width and height of a rotation by the inverse affine `matrix` with `expand`
/// (torchvision _compute_affine_output_size_tensor, in float32 as there): the bounding box of the
/// rotated corners, truncated to 1e-4 before rounding outwards.
fn expanded_size(matrix: &[f64; 6], w: i64, h: i64) -> Result<(i64, i64)> {
    let (half_w, half_h) = (0.5 * w as f64, 0.5 * h as f64);
    let pts = Tensor::f_from_slice(&[
        -half_w, -half_h, 1.0, -half_w, half_h, 1.0, half_w, half_h, 1.0, half_w, -half_h, 1.0,
    ])?
    .f_to_kind(Kind::Float)?
    .f_reshape([4, 3])?;
    let theta = Tensor::f_from_slice(&matrix[..])?.f_to_kind(Kind::Float)?.f_reshape([2, 3])?;
    let new_pts = pts.f_matmul(&theta.f_transpose(0, 1)?)?;
    let halfs = Tensor::f_from_slice(&[half_w, half_h])?.f_to_kind(Kind::Float)?;
    let (min_v, max_v) = new_pts.f_aminmax(Some(0), false)?;
    let (tol, inv_tol) = (1e-4, 1.0 / 1e-4);
    let cmax = max_v.f_add(&halfs)?.f_mul_scalar(inv_tol)?.f_trunc()?.f_mul_scalar(tol)?.f_ceil()?;
    let cmin = min_v.f_add(&halfs)?.f_mul_scalar(inv_tol)?.f_trunc()?.f_mul_scalar(tol)?.f_floor()?;
    let size = Vec::<f32>::try_from(cmax.f_sub(&cmin)?)?;
    Ok((size[0] as i64, size[1] as i64))
}

/// torchvision's rotate_image with `fill` (RandomRotation always passes one): an affine grid
/// sampled with zero padding, plus a ones channel that marks where `fill` goes. `center` is in
/// pixel coordinates (`[x, y]`, torchvision's convention); `expand` sizes the output to hold the
/// whole rotated image, sampled about its centre.
fn rotate(
    t: &Tensor,
    angle: f64,
    interp: Interp,
    fill: f64,
    mask: bool,
    expand: bool,
    center: Option<(f64, f64)>,
) -> Result<Tensor> {
    let (h, w) = hw(t, "random_rotation")?;
    let angle = angle.rem_euclid(360.0);
    if center.is_none() {
        if angle == 0.0 {
            return Ok(t.f_detach_copy()?);
        }
        if angle == 180.0 {
            return Ok(t.f_rot90(2, [-2, -1])?);
        }
        if (expand || h == w) && (angle == 90.0 || angle == 270.0) {
            return Ok(t.f_rot90(if angle == 90.0 { 1 } else { 3 }, [-2, -1])?);
        }
    }
    let interp = if mask { Interp::Nearest } else { interp };
    let (x, shape) = planes(t, mask)?;
    let kind = x.kind();
    let gk = if kind == Kind::Double { Kind::Double } else { Kind::Float };
    let xf = if kind == gk { x } else { x.f_to_kind(gk)? };
    let dev = xf.device();
    // the inverse rotation by -angle about the centre, moved to `center` (torchvision
    // _get_inverse_affine_matrix with the centre relative to the image's centre)
    let (cx, cy) = center.map(|(x, y)| (x - 0.5 * w as f64, y - 0.5 * h as f64)).unwrap_or((0.0, 0.0));
    let r = (-angle).to_radians();
    let mut m = [r.cos(), r.sin(), 0.0, -r.sin(), r.cos(), 0.0];
    m[2] += cx - m[0] * cx - m[1] * cy;
    m[5] += cy - m[3] * cx - m[4] * cy;
    let (ow, oh) = if expand { expanded_size(&m, w, h)? } else { (w, h) };
    if ow <= 0 || oh <= 0 {
        return Err(data_err!("random_rotation: the rotated {h}x{w} image would be {oh}x{ow}"));
    }
    let theta = Tensor::f_from_slice(&m)?.f_to_kind(gk)?.f_reshape([1, 2, 3])?.f_to_device(dev)?;
    // torchvision _affine_grid: output pixel-centre coordinates, normalized by the input size
    // after applying theta
    let xs =
        Tensor::f_linspace((1.0 - ow as f64) * 0.5, (ow as f64 - 1.0) * 0.5, ow, (Kind::Float, dev))?.f_to_kind(gk)?;
    let ys =
        Tensor::f_linspace((1.0 - oh as f64) * 0.5, (oh as f64 - 1.0) * 0.5, oh, (Kind::Float, dev))?.f_to_kind(gk)?;
    let base = Tensor::f_stack(
        &[
            xs.f_unsqueeze(0)?.f_expand([oh, ow], false)?,
            ys.f_unsqueeze(1)?.f_expand([oh, ow], false)?,
            Tensor::f_ones([oh, ow], (gk, dev))?,
        ],
        -1,
    )?
    .f_reshape([1, oh * ow, 3])?;
    let half = Tensor::f_from_slice(&[0.5 * w as f64, 0.5 * h as f64])?.f_to_kind(gk)?.f_to_device(dev)?;
    let grid = base.f_bmm(&theta.f_transpose(1, 2)?.f_div(&half)?)?.f_reshape([1, oh, ow, 2])?;
    let n = xf.size()[0];
    let grid = grid.f_expand([n, oh, ow, 2], false)?;
    let ones = Tensor::f_ones([n, 1, h, w], (gk, dev))?;
    let c = xf.size()[1];
    let with_mask = Tensor::f_cat(&[xf, ones], 1)?;
    let mode = if interp == Interp::Nearest { 1 } else { 0 };
    let out = with_mask.f_grid_sampler_2d(&grid, mode, 0, false)?;
    let img = out.f_narrow(1, 0, c)?;
    let m = out.f_narrow(1, c, 1)?.f_expand_as(&img)?;
    let img = if interp == Interp::Nearest {
        let f = Tensor::f_full_like(&img, fill)?;
        f.f_where_self(&m.f_lt(0.5)?, &img)?
    } else {
        img.f_sub_scalar(fill)?.f_mul(&m)?.f_add_scalar(fill)?
    };
    let img = if kind == gk { img } else { img.f_round()?.f_to_kind(kind)? };
    unplanes(img, &shape)
}

/// torchvision ToDtype on an image.
fn to_dtype(t: Tensor, kind: Kind, scale: bool) -> Result<Tensor> {
    let from = t.kind();
    if from == kind {
        return Ok(t);
    }
    if !scale {
        return Ok(t.f_to_kind(kind)?);
    }
    let max_of = |k: Kind| -> Option<f64> {
        match k {
            Kind::Uint8 => Some(255.0),
            Kind::Int8 => Some(127.0),
            Kind::Int16 => Some(32767.0),
            Kind::Int => Some(2147483647.0),
            Kind::Int64 => Some(9223372036854775807.0),
            _ => None,
        }
    };
    let name = crate::tensor::options::dtype_name;
    match (is_float(from), is_float(kind)) {
        (true, true) => Ok(t.f_to_kind(kind)?),
        (false, true) => {
            let m = max_of(from).ok_or_else(|| data_err!("to_dtype: cannot scale {} values", name(from)))?;
            Ok(t.f_to_kind(kind)?.f_mul_scalar(1.0 / m)?)
        }
        (true, false) => {
            if matches!((from, kind), (Kind::Float, Kind::Int | Kind::Int64) | (Kind::Double, Kind::Int64)) {
                return Err(data_err!(
                    "to_dtype: the conversion from {} to {} cannot be performed safely",
                    name(from),
                    name(kind)
                ));
            }
            let m = max_of(kind).ok_or_else(|| data_err!("to_dtype: cannot scale to {}", name(kind)))?;
            Ok(t.f_mul_scalar(m + 1.0 - 1e-3)?.f_to_kind(kind)?)
        }
        (false, false) => Err(data_err!(
            "to_dtype: scale between integer dtypes ({} to {}) is not supported; scale to a float dtype",
            name(from),
            name(kind)
        )),
    }
}

impl Transform {
    pub fn name(&self) -> &'static str {
        match self {
            Transform::Resize { .. } => "resize",
            Transform::CenterCrop { .. } => "center_crop",
            Transform::RandomCrop { .. } => "random_crop",
            Transform::RandomResizedCrop { .. } => "random_resized_crop",
            Transform::RandomHorizontalFlip { .. } => "random_horizontal_flip",
            Transform::RandomVerticalFlip { .. } => "random_vertical_flip",
            Transform::RandomRotation { .. } => "random_rotation",
            Transform::ColorJitter { .. } => "color_jitter",
            Transform::Normalize { .. } => "normalize",
            Transform::ToDtype { .. } => "to_dtype",
            Transform::OneHot { .. } => "one_hot",
            Transform::Compose(_) => "compose",
        }
    }

    /// Applies the transform to one sample (no batch dim): the image and its mask.
    pub fn apply(&self, s: Sample, rng: &mut Rng) -> Result<Sample> {
        let what = self.name();
        let Sample { image, mask } = s;
        // the same geometric operation on the image and on its mask
        let both = |f: &dyn Fn(&Tensor, bool) -> Result<Tensor>| -> Result<Sample> {
            let m = match &mask {
                Some(m) => Some(f(m, true)?),
                None => None,
            };
            Ok(Sample { image: f(&image, false)?, mask: m })
        };
        match self {
            Transform::Resize { size, interpolation, antialias, max_size } => {
                let (h, w) = hw(&image, what)?;
                let (oh, ow) = resized_size(h, w, size, *max_size)?;
                both(&|t, m| resize_tensor(t, oh, ow, *interpolation, *antialias, m))
            }
            Transform::CenterCrop { height, width } => both(&|t, _| center_crop(t, *height, *width)),
            Transform::RandomCrop { height, width, padding, pad_if_needed, fill, padding_mode } => {
                let (h, w) = hw(&image, what)?;
                let [mut pl, mut pt, mut pr, mut pb] = *padding;
                let (mut ph, mut pw) = (h + pt + pb, w + pl + pr);
                if *pad_if_needed && ph < *height {
                    let d = height - ph;
                    (pt, pb, ph) = (pt + d, pb + d, ph + 2 * d);
                }
                if *pad_if_needed && pw < *width {
                    let d = width - pw;
                    (pl, pr, pw) = (pl + d, pr + d, pw + 2 * d);
                }
                if *height > ph || *width > pw {
                    return Err(data_err!(
                        "{what}: required crop size ({height}, {width}) is larger than the (padded) image size ({ph}, {pw})"
                    ));
                }
                let top = rng.below((ph - height + 1) as u64) as i64;
                let left = rng.below((pw - width + 1) as u64) as i64;
                both(&|t, _| {
                    let p = pad(t, [pl, pt, pr, pb], *padding_mode, *fill).map_err(|e| data_err!("{what}: {e}"))?;
                    let n = p.dim() as i64;
                    Ok(p.f_narrow(n - 2, top, *height)?.f_narrow(n - 1, left, *width)?)
                })
            }
            Transform::RandomResizedCrop { height, width, scale, ratio, interpolation, antialias } => {
                let (ih, iw) = hw(&image, what)?;
                let (top, left, ch, cw) = resized_crop_params(ih, iw, *scale, *ratio, rng);
                both(&|t, m| {
                    let c = crop(t, top, left, ch, cw, 0.0)?;
                    resize_tensor(&c, *height, *width, *interpolation, *antialias, m)
                })
            }
            Transform::RandomHorizontalFlip { p } | Transform::RandomVerticalFlip { p } => {
                hw(&image, what)?;
                let dim = if matches!(self, Transform::RandomHorizontalFlip { .. }) { -1 } else { -2 };
                if rng.uniform() < *p {
                    both(&|t, _| Ok(t.f_flip([dim])?))
                } else {
                    Ok(Sample { image, mask })
                }
            }
            Transform::RandomRotation { degrees, interpolation, fill, expand, center } => {
                let angle = degrees.0 + (degrees.1 - degrees.0) * rng.uniform();
                both(&|t, m| rotate(t, angle, *interpolation, *fill, m, *expand, *center))
            }
            Transform::ColorJitter { brightness, contrast, saturation, hue } => {
                let c = image.size().len().checked_sub(3).map(|i| image.size()[i]);
                if !matches!(c, Some(1 | 3)) {
                    return Err(data_err!(
                        "{what}: expected an image [..., C, H, W] with 1 or 3 channels, got shape {:?}",
                        image.size()
                    ));
                }
                let order = rng.permutation(4);
                let mut draw = |r: &Option<(f64, f64)>| r.map(|(a, b)| a + (b - a) * rng.uniform());
                let factors = [draw(brightness), draw(contrast), draw(saturation), draw(hue)];
                let mut x = image;
                for i in order {
                    if let Some(f) = factors[i] {
                        x = match i {
                            0 => color::adjust_brightness(&x, f)?,
                            1 => color::adjust_contrast(&x, f)?,
                            2 => color::adjust_saturation(&x, f)?,
                            _ => color::adjust_hue(&x, f)?,
                        };
                    }
                }
                Ok(Sample { image: x, mask })
            }
            Transform::Normalize { mean, std } => {
                let shape = image.size();
                if !is_float(image.kind()) {
                    return Err(data_err!(
                        "{what}: input tensor should be a float tensor, got {} (use to_dtype(\"float32\", #{{scale: true}}) first)",
                        crate::tensor::options::dtype_name(image.kind())
                    ));
                }
                if shape.len() < 3 {
                    return Err(data_err!(
                        "{what}: expected a tensor image of size (..., C, H, W), got shape {shape:?}"
                    ));
                }
                let c = shape[shape.len() - 3] as usize;
                if (mean.len() != c && mean.len() != 1) || (std.len() != c && std.len() != 1) {
                    return Err(data_err!(
                        "{what}: {} means and {} stds for {c} channels (shape {shape:?})",
                        mean.len(),
                        std.len()
                    ));
                }
                if let Some(s) = std.iter().find(|s| **s == 0.0) {
                    return Err(data_err!("{what}: std evaluated to zero ({s}), leading to division by zero"));
                }
                let col = |v: &[f64]| -> Result<Tensor> {
                    Ok(Tensor::f_from_slice(v)?
                        .f_to_kind(image.kind())?
                        .f_to_device(image.device())?
                        .f_reshape([-1, 1, 1])?)
                };
                let x = image.f_sub(&col(mean)?)?.f_div(&col(std)?)?;
                Ok(Sample { image: x, mask })
            }
            Transform::ToDtype { kind, scale } => Ok(Sample { image: to_dtype(image, *kind, *scale)?, mask }),
            Transform::OneHot { num_classes } => {
                if is_float(image.kind()) {
                    return Err(data_err!(
                        "{what}: expects integer class indices, got {}",
                        crate::tensor::options::dtype_name(image.kind())
                    ));
                }
                Ok(Sample { image: image.f_to_kind(Kind::Int64)?.f_one_hot(*num_classes)?, mask })
            }
            Transform::Compose(ts) => {
                let mut s = Sample { image, mask };
                for tr in ts {
                    s = tr.apply(s, rng)?;
                }
                Ok(s)
            }
        }
    }
}

/// torchvision's colour kernels (transforms.v2.functional._color) on images of 1 or 3 channels.
mod color {
    use super::{is_float, to_dtype, Result};
    use tch::{Kind, Tensor};

    /// The largest value of a dtype's images: 1 for floats.
    fn bound(k: Kind) -> f64 {
        match k {
            Kind::Uint8 => 255.0,
            Kind::Int8 => 127.0,
            Kind::Int16 => 32767.0,
            Kind::Int => 2147483647.0,
            Kind::Int64 => 9223372036854775807.0,
            _ => 1.0,
        }
    }

    fn as_float(x: &Tensor) -> Result<Tensor> {
        Ok(if is_float(x.kind()) { x.shallow_clone() } else { x.f_to_kind(Kind::Float)? })
    }

    /// `a + alpha * b` (torch's `a.add(b, alpha=alpha)`), rounded once as libtorch's fused
    /// multiply-add kernel does for float32: computed in float64 with alpha rounded to float32, so
    /// integer images truncate to the same values as torchvision's.
    fn add_scaled(a: &Tensor, b: &Tensor, alpha: f64) -> Result<Tensor> {
        if a.kind() != Kind::Float {
            return Ok(a.f_add(&b.f_mul_scalar(alpha)?)?);
        }
        let alpha = alpha as f32 as f64;
        let sum = a.f_to_kind(Kind::Double)?.f_add(&b.f_to_kind(Kind::Double)?.f_mul_scalar(alpha)?)?;
        Ok(sum.f_to_kind(Kind::Float)?)
    }

    /// `a * ratio + b * (1 - ratio)`, clamped to the dtype's range, back in `a`'s dtype
    /// (truncating, as torchvision's `.to(uint8)`).
    fn blend(a: &Tensor, b: &Tensor, ratio: f64) -> Result<Tensor> {
        let out = add_scaled(&as_float(a)?.f_mul_scalar(ratio)?, b, 1.0 - ratio)?.f_clamp(0.0, bound(a.kind()))?;
        Ok(if is_float(a.kind()) { out } else { out.f_to_kind(a.kind())? })
    }

    /// 0.2989 R + 0.587 G + 0.114 B as float `[..., 1, H, W]` (floored for integer images).
    fn gray(x: &Tensor) -> Result<Tensor> {
        let f = as_float(x)?;
        let ch = |i: i64| f.f_select(-3, i);
        let l = add_scaled(&add_scaled(&ch(0)?.f_mul_scalar(0.2989)?, &ch(1)?, 0.587)?, &ch(2)?, 0.114)?;
        let l = l.f_unsqueeze(-3)?;
        Ok(if is_float(x.kind()) { l } else { l.f_floor()? })
    }

    fn channels(x: &Tensor) -> i64 {
        x.size()[x.dim() - 3]
    }

    pub fn adjust_brightness(x: &Tensor, f: f64) -> Result<Tensor> {
        let out = as_float(x)?.f_mul_scalar(f)?.f_clamp(0.0, bound(x.kind()))?;
        Ok(if is_float(x.kind()) { out } else { out.f_to_kind(x.kind())? })
    }

    pub fn adjust_contrast(x: &Tensor, f: f64) -> Result<Tensor> {
        let g = if channels(x) == 3 { gray(x)? } else { as_float(x)? };
        let mean = g.f_mean_dim(&[-3i64, -2, -1][..], true, None::<Kind>)?;
        blend(x, &mean, f)
    }

    pub fn adjust_saturation(x: &Tensor, f: f64) -> Result<Tensor> {
        if channels(x) == 1 {
            return Ok(x.shallow_clone());
        }
        blend(x, &gray(x)?, f)
    }

    /// torchvision's _rgb_to_hsv (Pillow's formulas), float images in [0, 1].
    fn rgb_to_hsv(x: &Tensor) -> Result<Tensor> {
        let (r, g) = (x.f_select(-3, 0)?, x.f_select(-3, 1)?);
        let maxc = x.f_amax([-3i64], false)?;
        let minc = x.f_amin([-3i64], false)?;
        let eqc = maxc.f_eq_tensor(&minc)?;
        let range = maxc.f_sub(&minc)?;
        let ones = maxc.f_ones_like()?;
        let s = range.f_div(&ones.f_where_self(&eqc, &maxc)?)?;
        let div = ones.f_where_self(&eqc, &range)?.f_unsqueeze(-3)?;
        let d = maxc.f_unsqueeze(-3)?.f_sub(x)?.f_div(&div)?;
        let (rc, gc, bc) = (d.f_select(-3, 0)?, d.f_select(-3, 1)?, d.f_select(-3, 2)?);
        let neq_r = maxc.f_ne_tensor(&r)?;
        let eq_g = maxc.f_eq_tensor(&g)?;
        let hg = rc.f_add_scalar(2.0)?.f_sub(&bc)?.f_mul(&eq_g.f_logical_and(&neq_r)?)?;
        let hr = bc.f_sub(&gc)?.f_mul(&neq_r.f_logical_not()?)?;
        let hb = gc.f_add_scalar(4.0)?.f_sub(&rc)?.f_mul(&neq_r.f_logical_and(&eq_g.f_logical_not()?)?)?;
        let h = hr.f_add(&hg)?.f_add(&hb)?.f_mul_scalar(1.0 / 6.0)?.f_add_scalar(1.0)?.f_fmod(1.0)?;
        Ok(Tensor::f_stack(&[h, s, maxc], -3)?)
    }

    /// torchvision's _hsv_to_rgb.
    fn hsv_to_rgb(x: &Tensor) -> Result<Tensor> {
        let (h, s, v) = (x.f_select(-3, 0)?, x.f_select(-3, 1)?, x.f_select(-3, 2)?);
        let h6 = h.f_mul_scalar(6.0)?;
        let i = h6.f_floor()?;
        let f = h6.f_sub(&i)?;
        let i = i.f_to_kind(Kind::Int)?.f_remainder(6)?.f_to_kind(Kind::Int64)?;
        let sxf = s.f_mul(&f)?;
        let one_minus_s = s.f_neg()?.f_add_scalar(1.0)?;
        let q = sxf.f_neg()?.f_add_scalar(1.0)?.f_mul(&v)?.f_clamp(0.0, 1.0)?;
        let t = sxf.f_add(&one_minus_s)?.f_mul(&v)?.f_clamp(0.0, 1.0)?;
        let p = one_minus_s.f_mul(&v)?.f_clamp(0.0, 1.0)?;
        let vpqt = Tensor::f_stack(&[v, p, q, t], -3)?;
        let table = Tensor::f_from_slice(&[0i64, 2, 1, 1, 3, 0, 3, 0, 0, 2, 1, 1, 1, 1, 3, 0, 0, 2])?
            .f_reshape([3, 6])?
            .f_to_device(x.device())?;
        let mut shape = vec![3i64];
        shape.extend(i.size());
        let select = table.f_index_select(1, &i.f_flatten(0, -1)?)?.f_reshape(shape)?.f_movedim([0i64], [-3i64])?;
        Ok(vpqt.f_gather(-3, &select, false)?)
    }

    pub fn adjust_hue(x: &Tensor, f: f64) -> Result<Tensor> {
        if channels(x) == 1 || x.numel() == 0 {
            return Ok(x.shallow_clone());
        }
        let kind = x.kind();
        let hsv = rgb_to_hsv(&to_dtype(x.shallow_clone(), Kind::Float, true)?)?;
        let h = hsv.f_select(-3, 0)?.f_add_scalar(f)?.f_remainder(1.0)?;
        let hsv = Tensor::f_stack(&[h, hsv.f_select(-3, 1)?, hsv.f_select(-3, 2)?], -3)?;
        to_dtype(hsv_to_rgb(&hsv)?, kind, true)
    }
}

/// torchvision RandomResizedCrop.make_params: ten tries at an area fraction in `scale` and a
/// log-uniform aspect ratio in `ratio`, then the largest centred crop within `ratio`.
/// Returns top, left, height, width.
fn resized_crop_params(h: i64, w: i64, scale: (f64, f64), ratio: (f64, f64), rng: &mut Rng) -> (i64, i64, i64, i64) {
    let area = (h * w) as f64;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * (scale.0 + (scale.1 - scale.0) * rng.uniform());
        let aspect = (lr0 + (lr1 - lr0) * rng.uniform()).exp();
        let cw = (target * aspect).sqrt().round_ties_even() as i64;
        let ch = (target / aspect).sqrt().round_ties_even() as i64;
        if 0 < cw && cw <= w && 0 < ch && ch <= h {
            let top = rng.below((h - ch + 1) as u64) as i64;
            let left = rng.below((w - cw + 1) as u64) as i64;
            return (top, left, ch, cw);
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (cw, ch) = if in_ratio < ratio.0.min(ratio.1) {
        (w, (w as f64 / ratio.0.min(ratio.1)).round_ties_even() as i64)
    } else if in_ratio > ratio.0.max(ratio.1) {
        ((h as f64 * ratio.0.max(ratio.1)).round_ties_even() as i64, h)
    } else {
        (w, h)
    };
    ((h - ch) / 2, (w - cw) / 2, ch, cw)
}

/// Which part of a sample a transform applies to.
#[derive(Debug, Clone)]
pub enum Field {
    /// Element 0 of an array sample, or the sample itself when it is one tensor (`transform`).
    Input,
    /// Element 1 of an array sample (`target_transform`).
    Target,
    /// Elements 0 and 1 of an array sample as an image and its mask (`transforms`).
    Joint,
    /// A key of a map sample.
    Key(String),
}

/// A dataset whose samples go through transforms, one sample at a time, before collation.
pub struct Transformed {
    inner: Arc<dyn Dataset>,
    transforms: Vec<(Field, Transform)>,
    seed: u64,
}

impl Transformed {
    pub fn new(inner: Arc<dyn Dataset>, transforms: Vec<(Field, Transform)>, seed: u64) -> Transformed {
        Transformed { inner, transforms, seed }
    }
}

fn image_only(b: Batch, tr: &Transform, rng: &mut Rng) -> Result<Batch> {
    b.map_tensors(&mut |t| Ok(tr.apply(Sample { image: t, mask: None }, rng)?.image))
}

fn apply_field(b: Batch, field: &Field, tr: &Transform, rng: &mut Rng) -> Result<Batch> {
    match (field, b) {
        (Field::Input, Batch::Tensor(t)) => Ok(Batch::Tensor(tr.apply(Sample { image: t, mask: None }, rng)?.image)),
        (Field::Joint, Batch::List(mut v)) => {
            let (Some(Batch::Tensor(_)), Some(Batch::Tensor(m))) = (v.first(), v.get(1)) else {
                let got = Batch::List(v).describe();
                return Err(data_err!("transforms: expected [image, mask, …] samples, got {got}"));
            };
            if m.dim() < 2 {
                return Err(data_err!(
                    "transforms: element 1 of the samples is {}, not a mask [..., H, W]; use 'transform' for image-only transforms",
                    Batch::Tensor(m.shallow_clone()).describe()
                ));
            }
            let (Batch::Tensor(image), Batch::Tensor(mask)) =
                (std::mem::replace(&mut v[0], Batch::Int(0)), std::mem::replace(&mut v[1], Batch::Int(0)))
            else {
                unreachable!("checked above")
            };
            let s = tr.apply(Sample { image, mask: Some(mask) }, rng)?;
            v[0] = Batch::Tensor(s.image);
            v[1] = Batch::Tensor(s.mask.ok_or_else(|| data_err!("transforms: the mask was lost"))?);
            Ok(Batch::List(v))
        }
        (Field::Input | Field::Target, Batch::List(mut v)) => {
            let i = if matches!(field, Field::Input) { 0 } else { 1 };
            if i >= v.len() {
                return Err(data_err!("target_transform: the samples have no element 1 (target)"));
            }
            let x = std::mem::replace(&mut v[i], Batch::Int(0));
            v[i] = image_only(x, tr, rng)?;
            Ok(Batch::List(v))
        }
        (Field::Key(k), Batch::Map(mut v)) => {
            let pos = v.iter().position(|(kk, _)| kk == k).ok_or_else(|| {
                let keys: Vec<&str> = v.iter().map(|(k, _)| k.as_str()).collect();
                data_err!("transform for key '{k}': the samples have keys {}", keys.join(", "))
            })?;
            let x = std::mem::replace(&mut v[pos].1, Batch::Int(0));
            v[pos].1 = image_only(x, tr, rng)?;
            Ok(Batch::Map(v))
        }
        (Field::Key(k), other) => {
            Err(data_err!("transform for key '{k}': the samples are not maps but {}", other.describe()))
        }
        (Field::Target, other) => {
            Err(data_err!("target_transform: the samples are not arrays but {}", other.describe()))
        }
        (Field::Joint, other) => {
            Err(data_err!("transforms: expected [image, mask, …] samples, got {}", other.describe()))
        }
        (Field::Input, other) => {
            Err(data_err!("transform: the samples are {}; use per-key transforms for maps", other.describe()))
        }
    }
}

impl Dataset for Transformed {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn get_batch(&self, indices: &[usize], ctx: &FetchCtx) -> Result<Batch> {
        let samples = indices.iter().map(|&i| self.get(i, ctx)).collect::<Result<Vec<_>>>()?;
        collate(samples, indices).map_err(|e| {
            data_err!("{e} (samples of different sizes need a resize or crop, e.g. data::transforms::resize, before batching)")
        })
    }
    fn get(&self, index: usize, ctx: &FetchCtx) -> Result<Batch> {
        check_indices(&[index], self.len(), "transformed")?;
        let mut s = self.inner.get(index, ctx)?;
        for (k, (field, tr)) in self.transforms.iter().enumerate() {
            let mut rng = Rng::from_parts(&[self.seed, ctx.seed, ctx.epoch, index as u64, k as u64]);
            s = apply_field(s, field, tr, &mut rng)?;
        }
        Ok(s)
    }
    fn describe(&self) -> String {
        format!("Transformed({})", self.inner.describe())
    }
    fn thread_bound(&self) -> bool {
        self.inner.thread_bound()
    }
    fn per_sample_work(&self) -> bool {
        true
    }
    fn classes(&self) -> Option<Vec<String>> {
        self.inner.classes()
    }
    fn vocab(&self) -> Option<Vec<String>> {
        self.inner.vocab()
    }
}
