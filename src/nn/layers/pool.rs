//! Pooling: `nn.MaxPool1d/2d`, `nn.AvgPool1d/2d`, `nn.AdaptiveAvgPool1d/2d`, `nn.AdaptiveMaxPool1d/2d`,
//! and `nn.MaxUnpool2d`, the inverse of a max pool from its indices.
use super::conv::expand;
use crate::tensor::Result;
use crate::tensor_err;

#[derive(Clone, Debug)]
pub struct Pool {
    /// "max", "avg", "adaptive_avg" or "adaptive_max".
    pub kind: String,
    pub nd: usize,
    pub kernel_size: Vec<i64>,
    pub stride: Vec<i64>,
    pub padding: Vec<i64>,
    pub dilation: Vec<i64>,
    pub ceil_mode: bool,
    pub count_include_pad: bool,
    pub divisor_override: Option<i64>,
    /// Adaptive pools: the output size.
    pub output_size: Vec<i64>,
}

impl Pool {
    /// A max/avg pool; `stride` defaults to the kernel size.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: &str,
        nd: usize,
        k: &[i64],
        stride: Option<&[i64]>,
        padding: &[i64],
        dilation: &[i64],
    ) -> Result<Pool> {
        let kernel_size = expand(k, nd, "kernel_size")?;
        let stride = match stride {
            Some(s) => expand(s, nd, "stride")?,
            None => kernel_size.clone(),
        };
        let padding = expand(padding, nd, "padding")?;
        let dilation = expand(dilation, nd, "dilation")?;
        for (k, p) in kernel_size.iter().zip(&padding) {
            if *p < 0 || *p * 2 > *k {
                return Err(tensor_err!(
                    "pad should be at most half of effective kernel size, but got pad={p} and kernel_size={k}"
                ));
            }
        }
        Ok(Pool {
            kind: kind.into(),
            nd,
            kernel_size,
            stride,
            padding,
            dilation,
            ceil_mode: false,
            count_include_pad: true,
            divisor_override: None,
            output_size: vec![],
        })
    }

    /// A max pool's output and the flat spatial index of each maximum (`return_indices`).
    pub fn forward_with_indices(&self, x: &tch::Tensor) -> Result<(tch::Tensor, tch::Tensor)> {
        self.check_input(x)?;
        let (k, s, p, d) = (&self.kernel_size, &self.stride, &self.padding, &self.dilation);
        Ok(match (self.kind.as_str(), self.nd) {
            ("max", 1) => x.f_max_pool1d_with_indices(k, s, p, d, self.ceil_mode)?,
            ("max", 2) => x.f_max_pool2d_with_indices(k, s, p, d, self.ceil_mode)?,
            (kind, n) => return Err(tensor_err!("{kind} pooling over {n} dims has no indices")),
        })
    }

    fn check_input(&self, x: &tch::Tensor) -> Result<()> {
        let nd = self.nd;
        if x.dim() != nd + 1 && x.dim() != nd + 2 {
            return Err(tensor_err!(
                "expected {}D (unbatched) or {}D (batched) input, got {}D input of shape {:?}",
                nd + 1,
                nd + 2,
                x.dim(),
                x.size()
            ));
        }
        Ok(())
    }

    pub fn forward(&self, x: &tch::Tensor) -> Result<tch::Tensor> {
        self.check_input(x)?;
        let nd = self.nd;
        let (k, s, p, d) = (&self.kernel_size, &self.stride, &self.padding, &self.dilation);
        Ok(match (self.kind.as_str(), nd) {
            ("max", 1) => x.f_max_pool1d(k, s, p, d, self.ceil_mode)?,
            ("max", 2) => x.f_max_pool2d(k, s, p, d, self.ceil_mode)?,
            ("avg", 1) => x.f_avg_pool1d(k, s, p, self.ceil_mode, self.count_include_pad)?,
            ("avg", 2) => x.f_avg_pool2d(k, s, p, self.ceil_mode, self.count_include_pad, self.divisor_override)?,
            ("adaptive_avg", 1) => x.f_adaptive_avg_pool1d(&self.output_size)?,
            ("adaptive_avg", 2) => x.f_adaptive_avg_pool2d(&self.output_size)?,
            ("adaptive_max", 1) => x.f_adaptive_max_pool1d(&self.output_size)?.0,
            ("adaptive_max", 2) => x.f_adaptive_max_pool2d(&self.output_size)?.0,
            (kind, n) => return Err(tensor_err!("{kind} pooling over {n} dims is not available")),
        })
    }
}

/// `nn.MaxUnpool2d`: puts each value of (N, C, H, W) or (C, H, W) `x` at its max pool index in
/// a zero output of `output_size` (the last two values count), by default (in − 1)·stride − 2·padding + kernel.
pub fn max_unpool2d(
    x: &tch::Tensor,
    indices: &tch::Tensor,
    kernel: &[i64],
    stride: &[i64],
    padding: &[i64],
    output_size: Option<&[i64]>,
) -> Result<tch::Tensor> {
    super::expect_ndim(x, &[3, 4], "(C, H, W) or (N, C, H, W)")?;
    if indices.size() != x.size() {
        return Err(tensor_err!("indices must have the input's shape {:?}, got {:?}", x.size(), indices.size()));
    }
    let s = x.size();
    let n = s.len();
    let default: Vec<i64> = (0..2).map(|d| (s[n - 2 + d] - 1) * stride[d] - 2 * padding[d] + kernel[d]).collect();
    let out = match output_size {
        None => default,
        Some(o) => {
            let o = match o.len() {
                2 => o.to_vec(),
                l if l == n => o[n - 2..].to_vec(),
                l => return Err(tensor_err!("output_size must have 2 or {n} elements, got {l}")),
            };
            for d in 0..2 {
                let (lo, hi) = (default[d] - stride[d], default[d] + stride[d]);
                if o[d] <= lo || o[d] >= hi {
                    return Err(tensor_err!(
                        "invalid output_size {o:?} (dim {d} must be between {lo} and {hi}, exclusive)"
                    ));
                }
            }
            o
        }
    };
    Ok(x.f_max_unpool2d(indices, out.as_slice())?)
}
