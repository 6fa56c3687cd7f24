//! What `lt dist-selftest` runs on every rank: each collective checked against its known result,
//! gradient sync checked against a single process on the global batch, and the all-reduce
//! benchmark. Every check returns an error (naming itself) instead of panicking.
use super::{broadcast_parameters, DistError, GradSync, ProcessGroup, ReduceOp, Result};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn check(name: &str, got: &Tensor, want: &Tensor, tol: f64) -> Result<String> {
    let diff = got
        .f_to_kind(Kind::Double)?
        .f_sub(&want.f_to_kind(Kind::Double)?.f_to_device(got.device())?)?
        .f_abs()?
        .f_max()?
        .f_double_value(&[])?;
    if got.size() != want.size() || diff.is_nan() || diff > tol {
        return Err(DistError(format!("{name}: got {got:?}, expected {want:?}")));
    }
    Ok(format!("{name} ok"))
}

/// A new tensor with `t`'s values, outside autograd.
fn detached_copy(t: &Tensor) -> std::result::Result<Tensor, tch::TchError> {
    let mut out = t.f_zeros_like()?.f_detach()?;
    tch::no_grad(|| out.f_copy_(t))?;
    Ok(out)
}

fn vec_f(v: &[f64], device: Device) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(v)?.f_to_kind(Kind::Float)?.f_to_device(device)?)
}

/// Runs every check on this rank, reporting each passed one through `report`.
pub fn run_checks(pg: &ProcessGroup, device: Device, report: &mut dyn FnMut(&str)) -> Result<()> {
    let (r, w) = (pg.rank() as f64, pg.world_size() as f64);
    let sum_ranks1 = w * (w + 1.0) / 2.0; // Σ (rank + 1)

    let mut t = [vec_f(&[r + 1.0, 2.0 * (r + 1.0)], device)?];
    pg.all_reduce(&mut t, ReduceOp::Sum)?;
    report(&check("all_reduce sum", &t[0], &vec_f(&[sum_ranks1, 2.0 * sum_ranks1], device)?, 0.0)?);

    let mut t = [vec_f(&[r + 1.0, 2.0 * (r + 1.0)], device)?];
    pg.all_reduce(&mut t, ReduceOp::Avg)?;
    report(&check("all_reduce avg", &t[0], &vec_f(&[sum_ranks1 / w, 2.0 * sum_ranks1 / w], device)?, 1e-6)?);

    let mut t = [vec_f(&[r, -r], device)?, vec_f(&[r, -r], device)?];
    pg.all_reduce(&mut t[..1], ReduceOp::Max)?;
    pg.all_reduce(&mut t[1..], ReduceOp::Min)?;
    report(&check("all_reduce max", &t[0], &vec_f(&[w - 1.0, 0.0], device)?, 0.0)?);
    report(&check("all_reduce min", &t[1], &vec_f(&[0.0, -(w - 1.0)], device)?, 0.0)?);

    // a non-contiguous tensor (a transposed view) is reduced in place through a contiguous copy
    let base = vec_f(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], device)?.f_view([2, 3])?.f_mul_scalar(r + 1.0)?;
    let mut t = [base.f_tr()?];
    pg.all_reduce(&mut t, ReduceOp::Sum)?;
    let want = vec_f(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], device)?.f_view([2, 3])?.f_mul_scalar(sum_ranks1)?.f_tr()?;
    report(&check("all_reduce non-contiguous", &base.f_tr()?, &want, 0.0)?);

    let root = pg.world_size() - 1;
    let mut t = [vec_f(&[r; 3], device)?, Tensor::f_full([2], pg.rank() as i64 * 10, (Kind::Int64, device))?];
    pg.broadcast(&mut t, root)?;
    report(&check("broadcast f32", &t[0], &vec_f(&[root as f64; 3], device)?, 0.0)?);
    report(&check("broadcast i64", &t[1], &Tensor::f_full([2], root as i64 * 10, (Kind::Int64, device))?, 0.0)?);

    let parts = pg.all_gather(&vec_f(&[r, r * r], device)?)?;
    let got = Tensor::f_stack(&parts, 0)?;
    let want: Vec<f64> = (0..pg.world_size()).flat_map(|i| [i as f64, (i * i) as f64]).collect();
    report(&check("all_gather", &got, &vec_f(&want, device)?.f_view([pg.world_size() as i64, 2])?, 0.0)?);

    pg.barrier()?;
    report("barrier ok");

    // coalesced: mixed dtypes, one flat collective per dtype
    let mut t = [
        vec_f(&[r + 1.0; 4], device)?,
        Tensor::f_full([3], pg.rank() as i64 + 1, (Kind::Int64, device))?,
        vec_f(&[2.0 * (r + 1.0)], device)?.f_to_kind(Kind::Double)?,
        vec_f(&[r + 1.0; 2], device)?,
    ];
    pg.all_reduce_coalesced(&mut t, ReduceOp::Sum)?;
    report(&check(
        "all_reduce_coalesced f32",
        &Tensor::f_cat(&[&t[0], &t[3]], 0)?,
        &vec_f(&[sum_ranks1; 6], device)?,
        0.0,
    )?);
    report(&check(
        "all_reduce_coalesced i64",
        &t[1],
        &Tensor::f_full([3], sum_ranks1 as i64, (Kind::Int64, device))?,
        0.0,
    )?);
    report(&check("all_reduce_coalesced f64", &t[2], &vec_f(&[2.0 * sum_ranks1], device)?, 0.0)?);

    report(&grad_sync_check(pg, device)?);
    Ok(())
}

/// A tiny two-layer model; every rank starts from different weights (seeded by rank), receives
/// rank 0's through `broadcast_parameters`, computes the loss on its shard of a global batch and
/// syncs gradients with small buckets (so there are several). The result must equal the gradient
/// of the global-batch loss in one process, to 1e-6. A parameter unused in the loss gets a zero
/// gradient on every rank.
fn grad_sync_check(pg: &ProcessGroup, device: Device) -> Result<String> {
    let opts = (Kind::Float, device);
    tch::manual_seed(100 + pg.rank() as i64);
    let params: Vec<Tensor> = [vec![5i64, 4], vec![5], vec![3, 5], vec![3], vec![2, 2]]
        .iter()
        .map(|s| Tensor::f_randn(s.as_slice(), opts).and_then(|t| t.f_set_requires_grad(true)))
        .collect::<std::result::Result<_, _>>()?;
    broadcast_parameters(pg, &params, &[])?;
    // same weights everywhere now: max - min over ranks is 0
    let flat = Tensor::f_cat(&params.iter().map(|p| p.detach().reshape([-1])).collect::<Vec<_>>(), 0)?;
    let (mut hi, mut lo) = ([detached_copy(&flat)?], [detached_copy(&flat)?]);
    pg.all_reduce(&mut hi, ReduceOp::Max)?;
    pg.all_reduce(&mut lo, ReduceOp::Min)?;
    let spread = hi[0].f_sub(&lo[0])?.f_abs()?.f_max()?.f_double_value(&[])?;
    if spread != 0.0 {
        return Err(DistError(format!("broadcast_parameters: weights differ across ranks by {spread}")));
    }

    let per_rank = 4i64;
    let global = per_rank * pg.world_size() as i64;
    tch::manual_seed(1234);
    let x = Tensor::f_randn([global, 4], opts)?;
    let y = Tensor::f_randn([global, 3], opts)?;
    let loss = |p: &[Tensor], x: &Tensor, y: &Tensor| -> std::result::Result<Tensor, tch::TchError> {
        let h = x.f_matmul(&p[0].f_tr()?)?.f_add(&p[1])?.f_tanh()?;
        let out = h.f_matmul(&p[2].f_tr()?)?.f_add(&p[3])?;
        out.f_sub(y)?.f_square()?.f_mean(Kind::Float)
    };
    let start = pg.rank() as i64 * per_rank;
    loss(&params, &x.f_narrow(0, start, per_rank)?, &y.f_narrow(0, start, per_rank)?)?.f_backward()?;
    GradSync::with_bucket_cap_bytes(64).sync(pg, &params)?;

    let reference: Vec<Tensor> = params
        .iter()
        .map(|p| detached_copy(p).and_then(|t| t.f_set_requires_grad(true)))
        .collect::<std::result::Result<_, _>>()?;
    loss(&reference, &x, &y)?.f_backward()?;
    let mut max_diff = 0f64;
    for (i, (p, q)) in params.iter().zip(&reference).enumerate().take(4) {
        let d = p.grad().f_sub(&q.grad())?.f_abs()?.f_max()?.f_double_value(&[])?;
        if d.is_nan() || d > 1e-6 {
            return Err(DistError(format!("gradsync: parameter {i} differs from the single-process gradient by {d}")));
        }
        max_diff = max_diff.max(d);
    }
    let unused = params[4].grad();
    if pg.world_size() == 1 && !unused.defined() {
        // one process: nothing was synced
    } else if !unused.defined() || unused.f_abs()?.f_max()?.f_double_value(&[])? != 0.0 {
        return Err(DistError("gradsync: the unused parameter should have a zero gradient".into()));
    }
    Ok(format!("gradsync ok max_diff={max_diff:.1e}"))
}

/// All-reduce timing of `numel` float32 values.
#[derive(Debug, Clone)]
pub struct BenchFigure {
    pub numel: i64,
    pub iters: usize,
    pub world_size: usize,
    pub median_ms: f64,
    pub min_ms: f64,
}

/// Times `iters` sum all-reduces of `numel` float32 (after 3 warm-up ones), each preceded by a
/// barrier so all ranks start together.
pub fn bench_all_reduce(pg: &ProcessGroup, device: Device, numel: i64, iters: usize) -> Result<BenchFigure> {
    let mut t = [Tensor::f_ones([numel], (Kind::Float, device))?];
    for _ in 0..3 {
        pg.all_reduce(&mut t, ReduceOp::Sum)?;
    }
    let mut times = Vec::with_capacity(iters.min(10_000));
    for _ in 0..iters.max(1) {
        pg.barrier()?;
        let start = Instant::now();
        pg.all_reduce(&mut t, ReduceOp::Sum)?;
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(BenchFigure {
        numel,
        iters: times.len(),
        world_size: pg.world_size(),
        median_ms: times[times.len() / 2],
        min_ms: times[0],
    })
}
