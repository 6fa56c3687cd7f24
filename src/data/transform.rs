//! Transforms applied to whole batches on the loader's workers: normalize, random crop and
//! horizontal flip (seeded per loader seed, epoch and batch, so never dependent on which worker
//! runs them), one-hot, dtype casts, and compositions.
use super::rng::Rng;
use super::{Batch, Dataset, FetchCtx, Result};
use crate::data_err;
use std::sync::Arc;
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
pub enum Transform {
    /// `(x - mean[c]) / std[c]` over channel dim 1 of a batch (torchvision Normalize).
    Normalize { mean: Vec<f64>, std: Vec<f64> },
    /// A random `height × width` window of each image after zero-padding (torchvision RandomCrop).
    RandomCrop { height: i64, width: i64, padding: i64 },
    /// Mirrors each image left-right with probability `p` (torchvision RandomHorizontalFlip).
    RandomHorizontalFlip { p: f64 },
    /// Class indices to one-hot vectors (torch.nn.functional.one_hot).
    OneHot { num_classes: i64 },
    /// Casts; with `scale`, integers become floats in [0, 1] (torchvision ToDtype(scale=True)).
    ToDtype { kind: Kind, scale: bool },
    /// One after the other (torchvision Compose).
    Compose(Vec<Transform>),
}

fn is_float(k: Kind) -> bool {
    crate::tensor::options::is_floating(k)
}

impl Transform {
    pub fn name(&self) -> &'static str {
        match self {
            Transform::Normalize { .. } => "normalize",
            Transform::RandomCrop { .. } => "random_crop",
            Transform::RandomHorizontalFlip { .. } => "random_horizontal_flip",
            Transform::OneHot { .. } => "one_hot",
            Transform::ToDtype { .. } => "to_dtype",
            Transform::Compose(_) => "compose",
        }
    }

    /// Applies the transform to a batched tensor (dim 0 = samples).
    pub fn apply(&self, t: Tensor, rng: &mut Rng) -> Result<Tensor> {
        let what = self.name();
        let shape = t.size();
        match self {
            Transform::Normalize { mean, std } => {
                if shape.len() < 2 {
                    return Err(data_err!("{what}: expected a batch [N, C, …], got shape {shape:?}"));
                }
                let c = shape[1] as usize;
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
                let mut view = vec![1i64; shape.len()];
                view[1] = -1;
                let x = if is_float(t.kind()) { t } else { t.f_to_kind(Kind::Float)? };
                let m = Tensor::f_from_slice(mean)?.f_to_kind(x.kind())?.f_to_device(x.device())?.f_reshape(&view)?;
                let s = Tensor::f_from_slice(std)?.f_to_kind(x.kind())?.f_to_device(x.device())?.f_reshape(&view)?;
                Ok(x.f_sub(&m)?.f_div(&s)?)
            }
            Transform::RandomCrop { height, width, padding } => {
                if shape.len() < 3 {
                    return Err(data_err!("{what}: expected a batch of images [N, …, H, W], got shape {shape:?}"));
                }
                let x = if *padding > 0 { t.f_constant_pad_nd([*padding, *padding, *padding, *padding])? } else { t };
                let s = x.size();
                let (h, w) = (s[s.len() - 2], s[s.len() - 1]);
                if *height > h || *width > w {
                    return Err(data_err!(
                        "{what}: required crop size {height}x{width} is larger than the (padded) image size {h}x{w}"
                    ));
                }
                let nd = s.len() as i64;
                let mut crops = Vec::with_capacity(s[0] as usize);
                for i in 0..s[0] {
                    let top = rng.below((h - height + 1) as u64) as i64;
                    let left = rng.below((w - width + 1) as u64) as i64;
                    crops.push(x.f_get(i)?.f_narrow(nd - 3, top, *height)?.f_narrow(nd - 2, left, *width)?);
                }
                Ok(Tensor::f_stack(&crops, 0)?)
            }
            Transform::RandomHorizontalFlip { p } => {
                if shape.len() < 2 {
                    return Err(data_err!("{what}: expected a batch of images [N, …, W], got shape {shape:?}"));
                }
                let flags: Vec<u8> = (0..shape[0]).map(|_| u8::from(rng.uniform() < *p)).collect();
                let mut view = vec![1i64; shape.len()];
                view[0] = shape[0];
                let mask =
                    Tensor::f_from_slice(&flags)?.f_to_kind(Kind::Bool)?.f_to_device(t.device())?.f_reshape(&view)?;
                let flipped = t.f_flip([-1])?;
                Ok(flipped.f_where_self(&mask, &t)?)
            }
            Transform::OneHot { num_classes } => {
                if is_float(t.kind()) {
                    return Err(data_err!(
                        "{what}: expects integer class indices, got {}",
                        crate::tensor::options::dtype_name(t.kind())
                    ));
                }
                Ok(t.f_to_kind(Kind::Int64)?.f_one_hot(*num_classes)?)
            }
            Transform::ToDtype { kind, scale } => {
                if *scale && is_float(*kind) && t.kind() == Kind::Uint8 {
                    Ok(t.f_to_kind(*kind)?.f_div_scalar(255.0)?)
                } else {
                    Ok(t.f_to_kind(*kind)?)
                }
            }
            Transform::Compose(ts) => {
                let mut x = t;
                for tr in ts {
                    x = tr.apply(x, rng)?;
                }
                Ok(x)
            }
        }
    }
}

/// Which part of a sample a transform applies to.
#[derive(Debug, Clone)]
pub enum Field {
    /// Element 0 of an array sample, or the sample itself when it is one tensor (`transform`).
    Input,
    /// Element 1 of an array sample (`target_transform`).
    Target,
    /// A key of a map sample.
    Key(String),
}

/// A dataset whose batches go through transforms.
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

fn apply_field(b: Batch, field: &Field, f: &mut dyn FnMut(Tensor) -> Result<Tensor>) -> Result<Batch> {
    match (field, b) {
        (Field::Input, Batch::Tensor(t)) => Ok(Batch::Tensor(f(t)?)),
        (Field::Input | Field::Target, Batch::List(mut v)) => {
            let i = if matches!(field, Field::Input) { 0 } else { 1 };
            if i >= v.len() {
                return Err(data_err!("target_transform: the samples have no element 1 (target)"));
            }
            let x = std::mem::replace(&mut v[i], Batch::Int(0));
            v[i] = x.map_tensors(f)?;
            Ok(Batch::List(v))
        }
        (Field::Key(k), Batch::Map(mut v)) => {
            let pos = v.iter().position(|(kk, _)| kk == k).ok_or_else(|| {
                let keys: Vec<&str> = v.iter().map(|(k, _)| k.as_str()).collect();
                data_err!("transform for key '{k}': the samples have keys {}", keys.join(", "))
            })?;
            let x = std::mem::replace(&mut v[pos].1, Batch::Int(0));
            v[pos].1 = x.map_tensors(f)?;
            Ok(Batch::Map(v))
        }
        (Field::Key(k), other) => {
            Err(data_err!("transform for key '{k}': the samples are not maps but {}", other.describe()))
        }
        (Field::Target, other) => {
            Err(data_err!("target_transform: the samples are not arrays but {}", other.describe()))
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
        let mut b = self.inner.get_batch(indices, ctx)?;
        for (k, (field, tr)) in self.transforms.iter().enumerate() {
            let mut rng = Rng::from_parts(&[self.seed, ctx.seed, ctx.epoch, ctx.batch, k as u64]);
            b = apply_field(b, field, &mut |t| tr.apply(t, &mut rng))?;
        }
        Ok(b)
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
