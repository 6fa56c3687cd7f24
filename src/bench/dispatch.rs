//! Script dispatch overhead: N small-tensor ops called from a Rhai loop vs the same ops in a Rust
//! loop over tch. The ratio is what a script costs over hand-written Rust per op.
use crate::script::engine::new_engine;
use std::time::Instant;

pub struct DispatchFigures {
    pub ops: usize,
    pub rust_ns_per_op: f64,
    pub rhai_ns_per_op: f64,
}

impl DispatchFigures {
    pub fn ratio(&self) -> f64 {
        self.rhai_ns_per_op / self.rust_ns_per_op
    }
}

/// Runs both loops `ops` times (best of `repeats`).
pub fn run(ops: usize, repeats: usize) -> Result<DispatchFigures, String> {
    let x = tch::Tensor::ones([4], (tch::Kind::Float, tch::Device::Cpu));
    let mut best_rust = f64::INFINITY;
    for _ in 0..repeats {
        let t = Instant::now();
        let mut y = x.shallow_clone();
        for _ in 0..ops {
            y = x.f_add(&x).map_err(|e| e.to_string())?;
        }
        std::hint::black_box(&y);
        best_rust = best_rust.min(t.elapsed().as_secs_f64());
    }
    let engine = new_engine()?;
    let script = format!("let x = torch::ones([4]); let y = x; for i in 0..{ops} {{ y = x + x; }} y");
    let ast = engine.compile(&script).map_err(|e| e.to_string())?;
    let mut best_rhai = f64::INFINITY;
    for _ in 0..repeats {
        let t = Instant::now();
        let _ = engine.eval_ast::<rhai::Dynamic>(&ast).map_err(|e| e.to_string())?;
        best_rhai = best_rhai.min(t.elapsed().as_secs_f64());
    }
    Ok(DispatchFigures {
        ops,
        rust_ns_per_op: best_rust * 1e9 / ops as f64,
        rhai_ns_per_op: best_rhai * 1e9 / ops as f64,
    })
}
