//! `nn.Conv1d/2d/3d` and `nn.ConvTranspose1d/2d/3d`.
use super::{empty, Opts};
use crate::nn::init;
use crate::tensor::Result;
use crate::tensor_err;

/// Padding of a convolution: explicit sizes, or PyTorch's `"same"` / `"valid"`.
#[derive(Clone, Debug, PartialEq)]
pub enum Padding {
    Explicit(Vec<i64>),
    Same,
    Valid,
}

/// A convolution's configuration.
#[derive(Clone, Debug)]
pub struct Conv {
    /// Spatial dims: 1, 2 or 3.
    pub nd: usize,
    pub transposed: bool,
    pub in_channels: i64,
    pub out_channels: i64,
    pub kernel_size: Vec<i64>,
    pub stride: Vec<i64>,
    pub padding: Padding,
    pub dilation: Vec<i64>,
    pub groups: i64,
    pub output_padding: Vec<i64>,
    /// "zeros", "reflect", "replicate" or "circular".
    pub padding_mode: String,
}

/// Repeats a one-element list to `nd` elements; checks the length otherwise.
pub fn expand(v: &[i64], nd: usize, what: &str) -> Result<Vec<i64>> {
    match v.len() {
        1 => Ok(vec![v[0]; nd]),
        n if n == nd => Ok(v.to_vec()),
        n => Err(tensor_err!("{what} must have 1 or {nd} values, got {n}")),
    }
}

impl Conv {
    /// Checks the configuration like PyTorch's `_ConvNd.__init__`.
    pub fn validate(&self) -> Result<()> {
        if self.groups <= 0 {
            return Err(tensor_err!("groups must be a positive integer"));
        }
        if self.in_channels % self.groups != 0 {
            return Err(tensor_err!("in_channels must be divisible by groups"));
        }
        if self.out_channels % self.groups != 0 {
            return Err(tensor_err!("out_channels must be divisible by groups"));
        }
        if self.kernel_size.iter().any(|&k| k <= 0)
            || self.stride.iter().any(|&s| s <= 0)
            || self.dilation.iter().any(|&d| d <= 0)
        {
            return Err(tensor_err!("kernel_size, stride and dilation must be positive"));
        }
        if !matches!(self.padding_mode.as_str(), "zeros" | "reflect" | "replicate" | "circular") {
            return Err(tensor_err!(
                "padding_mode must be one of \"zeros\", \"reflect\", \"replicate\" or \"circular\", got \"{}\"",
                self.padding_mode
            ));
        }
        if self.transposed && self.padding_mode != "zeros" {
            return Err(tensor_err!("Only \"zeros\" padding mode is supported for ConvTranspose"));
        }
        if self.padding == Padding::Same && self.stride.iter().any(|&s| s != 1) {
            return Err(tensor_err!("padding='same' is not supported for strided convolutions"));
        }
        if self.transposed && self.padding != Padding::Valid && !matches!(self.padding, Padding::Explicit(_)) {
            return Err(tensor_err!("ConvTranspose takes explicit padding sizes"));
        }
        Ok(())
    }

    pub fn weight_shape(&self) -> Vec<i64> {
        let mut s = if self.transposed {
            vec![self.in_channels, self.out_channels / self.groups]
        } else {
            vec![self.out_channels, self.in_channels / self.groups]
        };
        s.extend_from_slice(&self.kernel_size);
        s
    }

    /// Weight ~ kaiming_uniform(a=√5), bias ~ U(-1/√fan_in, 1/√fan_in), as `_ConvNd.reset_parameters`.
    pub fn init(&self, bias: bool, o: Opts) -> Result<(tch::Tensor, Option<tch::Tensor>)> {
        self.validate()?;
        let w = empty(&self.weight_shape(), o)?;
        init::kaiming_uniform_(&w, 5f64.sqrt(), "fan_in", "leaky_relu")?;
        let b = if bias {
            let b = empty(&[self.out_channels], o)?;
            let (fan_in, _) = init::fans(&w)?;
            if fan_in != 0.0 {
                let bound = 1.0 / fan_in.sqrt();
                init::uniform_(&b, -bound, bound)?;
            }
            Some(b)
        } else {
            None
        };
        Ok((w, b))
    }

    /// `Conv2d 3→16 k[3, 3]`-style description.
    pub fn describe(&self) -> String {
        format!("{}→{} k{:?}", self.in_channels, self.out_channels, self.kernel_size)
    }

    pub fn forward(&self, x: &tch::Tensor, w: &tch::Tensor, b: Option<&tch::Tensor>) -> Result<tch::Tensor> {
        let nd = self.nd;
        let dims = x.dim();
        if dims != nd + 1 && dims != nd + 2 {
            return Err(tensor_err!(
                "expected {}D (unbatched) or {}D (batched) input, got {dims}D input of shape {:?}",
                nd + 1,
                nd + 2,
                x.size()
            ));
        }
        let c = x.size()[dims - nd - 1];
        if c != self.in_channels {
            return Err(tensor_err!(
                "expected input with {} channels, got {c} channels (input shape {:?})",
                self.in_channels,
                x.size()
            ));
        }
        if self.transposed {
            let pad = match &self.padding {
                Padding::Explicit(p) => p.clone(),
                _ => vec![0; nd],
            };
            let op = &self.output_padding;
            let (s, d, g) = (&self.stride, &self.dilation, self.groups);
            return Ok(match nd {
                1 => x.f_conv_transpose1d(w, b, s, &pad, op, g, d)?,
                2 => x.f_conv_transpose2d(w, b, s, &pad, op, g, d)?,
                _ => x.f_conv_transpose3d(w, b, s, &pad, op, g, d)?,
            });
        }
        let (s, d, g) = (&self.stride, &self.dilation, self.groups);
        if self.padding_mode != "zeros" {
            // PyTorch pads with the mode first, then convolves without padding.
            let per_dim: Vec<(i64, i64)> = match &self.padding {
                Padding::Explicit(p) => p.iter().map(|&p| (p, p)).collect(),
                Padding::Valid => vec![(0, 0); nd],
                Padding::Same => self
                    .kernel_size
                    .iter()
                    .zip(d)
                    .map(|(k, d)| {
                        let total = d * (k - 1);
                        (total / 2, total - total / 2)
                    })
                    .collect(),
            };
            let mut rev = Vec::new();
            for (l, r) in per_dim.iter().rev() {
                rev.push(*l);
                rev.push(*r);
            }
            let mode = if self.padding_mode == "circular" { "circular" } else { self.padding_mode.as_str() };
            let xp = x.f_pad(&rev, mode, None::<f64>)?;
            let zero = vec![0i64; nd];
            return Ok(match nd {
                1 => xp.f_conv1d(w, b, s, &zero, d, g)?,
                2 => xp.f_conv2d(w, b, s, &zero, d, g)?,
                _ => xp.f_conv3d(w, b, s, &zero, d, g)?,
            });
        }
        Ok(match (&self.padding, nd) {
            (Padding::Explicit(p), 1) => x.f_conv1d(w, b, s, p, d, g)?,
            (Padding::Explicit(p), 2) => x.f_conv2d(w, b, s, p, d, g)?,
            (Padding::Explicit(p), _) => x.f_conv3d(w, b, s, p, d, g)?,
            (pad, n) => {
                let ps = if *pad == Padding::Same { "same" } else { "valid" };
                match n {
                    1 => x.f_conv1d_padding(w, b, s, ps, d, g)?,
                    2 => x.f_conv2d_padding(w, b, s, ps, d, g)?,
                    _ => x.f_conv3d_padding(w, b, s, ps, d, g)?,
                }
            }
        })
    }
}
