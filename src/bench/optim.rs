//! One Adam step over a model of 100 parameter tensors (~10M values): lt's per-tensor Adam (the
//! torch.optim single-tensor rule), lt's fused Adam (ATen's `_fused_adam_`), and tch's built-in
//! `nn::Adam` on a VarStore. The PyTorch figure (torch.optim.Adam, foreach) is measured by
//! `benches/optim_adam.py` (see that file) and compared by hand.
use crate::optim::{Algorithm, HValue, Optimizer, OptimizerCore, Options};
use std::time::Instant;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

pub const TENSORS: i64 = 100;
pub const SIZE: i64 = 100_000;

pub struct OptimFigures {
    pub lt_per_tensor_ms: f64,
    pub lt_fused_ms: f64,
    pub tch_ms: f64,
}

fn params() -> Vec<Tensor> {
    (0..TENSORS).map(|_| Tensor::randn([SIZE], (Kind::Float, Device::Cpu)).set_requires_grad(true)).collect()
}

/// Gives every parameter a gradient once (the step does not clear it).
fn set_grads(ps: &[Tensor]) -> Result<(), String> {
    let mut loss = Tensor::zeros([], (Kind::Float, Device::Cpu));
    for p in ps {
        loss = loss
            .f_add(&p.f_sin().map_err(|e| e.to_string())?.f_sum(Kind::Float).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    loss.f_backward().map_err(|e| e.to_string())?;
    Ok(())
}

fn best_of(steps: usize, mut f: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    for _ in 0..3 {
        f()?; // warm-up: state allocation
    }
    let mut best = f64::INFINITY;
    for _ in 0..steps {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(best)
}

fn lt_adam(fused: bool, steps: usize) -> Result<f64, String> {
    let ps = params();
    set_grads(&ps)?;
    let opts: Options = [("fused".to_string(), HValue::Bool(fused))].into();
    let opt = Optimizer::new(OptimizerCore::new(Algorithm::Adam, vec![(ps, Options::new())], opts)?);
    best_of(steps, || opt.step())
}

fn tch_adam(steps: usize) -> Result<f64, String> {
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let ps: Vec<Tensor> = (0..TENSORS).map(|i| root.randn_standard(&format!("p{i}"), &[SIZE])).collect();
    set_grads(&ps)?;
    let mut opt = nn::Adam::default().build(&vs, 1e-3).map_err(|e| e.to_string())?;
    best_of(steps, || {
        opt.step();
        Ok(())
    })
}

pub fn run(steps: usize) -> Result<OptimFigures, String> {
    Ok(OptimFigures {
        lt_per_tensor_ms: lt_adam(false, steps)?,
        lt_fused_ms: lt_adam(true, steps)?,
        tch_ms: tch_adam(steps)?,
    })
}
