//! DDP's gradient synchronisation, without autograd hooks: after the backward pass that closes an
//! accumulation window, gradients are gathered into buckets (in reverse parameter order, ~25 MB
//! each, one dtype/device per bucket, like PyTorch's DDP), each bucket is flattened, all-reduced
//! and averaged over the ranks, and copied back into the `.grad` tensors. With the same global
//! batch split evenly over ranks, every rank ends with the gradient a single process would compute
//! on the whole batch.
use super::process_group::{flatten, group_indices, set_grad, unflatten_into};
use super::{ProcessGroup, ReduceOp, Result};

/// Bucketed gradient averaging across a [`ProcessGroup`].
#[derive(Debug, Clone)]
pub struct GradSync {
    bucket_cap_bytes: usize,
}

impl Default for GradSync {
    fn default() -> Self {
        GradSync::new()
    }
}

impl GradSync {
    /// PyTorch DDP's default `bucket_cap_mb`.
    pub const DEFAULT_BUCKET_CAP_MB: usize = 25;

    pub fn new() -> GradSync {
        GradSync { bucket_cap_bytes: Self::DEFAULT_BUCKET_CAP_MB * 1024 * 1024 }
    }

    /// A bucket cap in bytes (at least one tensor per bucket whatever the cap).
    pub fn with_bucket_cap_bytes(bytes: usize) -> GradSync {
        GradSync { bucket_cap_bytes: bytes.max(1) }
    }

    pub fn bucket_cap_bytes(&self) -> usize {
        self.bucket_cap_bytes
    }

    /// The buckets for `params` (indices into it): parameters that require grad, in reverse order
    /// (the order backward produces gradients), grouped by dtype and device, capped in bytes.
    pub fn buckets(&self, params: &[tch::Tensor]) -> Vec<Vec<usize>> {
        let order: Vec<usize> = (0..params.len()).rev().filter(|&i| params[i].requires_grad()).collect();
        group_indices(
            &order,
            |i| (params[i].kind(), params[i].device(), params[i].numel() * params[i].kind().elt_size_in_bytes()),
            self.bucket_cap_bytes,
        )
    }

    /// Averages the gradients of `params` over all ranks, in place. Call it on every rank, with
    /// the same parameter list, after the backward pass of the last micro-batch of an accumulation
    /// window (not on accumulation steps) and before clipping and the optimizer step. A parameter
    /// without a gradient on this rank counts as a zero gradient, and receives the average (as DDP
    /// with `find_unused_parameters=True` does). One process: nothing to do.
    pub fn sync(&self, pg: &ProcessGroup, params: &[tch::Tensor]) -> Result<()> {
        if pg.world_size() <= 1 {
            return Ok(());
        }
        for bucket in self.buckets(params) {
            let grads: Vec<tch::Tensor> = bucket
                .iter()
                .map(|&i| {
                    let g = params[i].grad();
                    if g.defined() {
                        Ok(g)
                    } else {
                        params[i].f_zeros_like().and_then(|z| z.f_detach())
                    }
                })
                .collect::<std::result::Result<_, _>>()?;
            let refs: Vec<&tch::Tensor> = grads.iter().collect();
            let mut flat = [flatten(&refs)?];
            pg.all_reduce(&mut flat, ReduceOp::Avg)?;
            unflatten_into(&flat[0], &refs)?;
            for (&i, g) in bucket.iter().zip(&grads) {
                if !params[i].grad().defined() {
                    set_grad(&params[i], g)?;
                }
            }
        }
        Ok(())
    }
}

/// Makes every rank start from rank 0's weights: broadcasts `params` and `buffers` (e.g. batch-norm
/// running statistics) from rank 0, in place, in coalesced buckets. Call it on every rank once the
/// module is built and moved to its device, before the first step.
pub fn broadcast_parameters(pg: &ProcessGroup, params: &[tch::Tensor], buffers: &[tch::Tensor]) -> Result<()> {
    if pg.world_size() <= 1 {
        return Ok(());
    }
    let mut all: Vec<tch::Tensor> = params.iter().chain(buffers).map(|t| t.shallow_clone()).collect();
    pg.broadcast_coalesced(&mut all, 0)
}
