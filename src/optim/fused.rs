//! Adam/AdamW through ATen's fused multi-tensor kernels (`_fused_adam_`, `_fused_adamw_`): one
//! call per (device, dtype) bucket updates every parameter, as `torch.optim.Adam(fused=True)`.
use super::aten::{call, ptr};
use super::{zeros_like, Algorithm, OptimizerCore, ParamState, TchResult};
use std::ffi::c_void;
use tch::Tensor;

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn lt_fused_adam(
        params: *const *mut c_void,
        grads: *const *mut c_void,
        exp_avgs: *const *mut c_void,
        exp_avg_sqs: *const *mut c_void,
        max_exp_avg_sqs: *const *mut c_void,
        steps: *const *mut c_void,
        n: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        amsgrad: i32,
        maximize: i32,
        decoupled: i32,
        err: *mut u8,
        len: usize,
    ) -> i32;
}

/// One fused step of group `gi` over the parameters `params` (flat indices `idx`, gradients `grads`).
pub fn adam_step(
    core: &mut OptimizerCore,
    gi: usize,
    idx: &[usize],
    params: &[Tensor],
    grads: &[Tensor],
) -> Result<(), String> {
    let group = &core.groups[gi];
    let (lr, eps, wd) = (group.f("lr")?, group.f("eps")?, group.f("weight_decay")?);
    let (beta1, beta2) = group.pair("betas")?;
    let (amsgrad, maximize) = (group.b("amsgrad")?, group.b("maximize")?);
    let decoupled = core.algorithm == Algorithm::AdamW;
    // state and device step counters
    for (k, &i) in idx.iter().enumerate() {
        let p = &params[k];
        if !matches!(p.device(), tch::Device::Cpu | tch::Device::Cuda(_)) {
            return Err(format!("fused Adam supports CPU and CUDA parameters, not {:?}", p.device()));
        }
        let state = core.state[i].get_or_insert_with(ParamState::default);
        if state.buffers.is_empty() {
            state.step = 0.0;
            state.buffers.insert("exp_avg".into(), zeros_like(p)?);
            state.buffers.insert("exp_avg_sq".into(), zeros_like(p)?);
        }
        if amsgrad && !state.buffers.contains_key("max_exp_avg_sq") {
            state.buffers.insert("max_exp_avg_sq".into(), zeros_like(p)?);
        }
        let stale = match &core.fused_steps[i] {
            Some(t) => t.device() != p.device(),
            None => true,
        };
        if stale {
            let t = Tensor::f_scalar_tensor(state.step, (tch::Kind::Float, p.device())).e()?;
            core.fused_steps[i] = Some(t);
        }
    }
    // bucket by (device, dtype): the kernel wants one of each per call
    let mut buckets: Vec<((tch::Device, tch::Kind), Vec<usize>)> = Vec::new();
    for (k, p) in params.iter().enumerate() {
        let key = (p.device(), p.kind());
        match buckets.iter_mut().find(|(b, _)| *b == key) {
            Some((_, v)) => v.push(k),
            None => buckets.push((key, vec![k])),
        }
    }
    for (_, ks) in buckets {
        let mut ps = Vec::with_capacity(ks.len());
        let mut gs = Vec::with_capacity(ks.len());
        let mut ms = Vec::with_capacity(ks.len());
        let mut vs = Vec::with_capacity(ks.len());
        let mut mx = Vec::with_capacity(ks.len());
        let mut ss = Vec::with_capacity(ks.len());
        for &k in &ks {
            let i = idx[k];
            let state = core.state[i].as_ref().ok_or("internal error: missing optimizer state")?;
            ps.push(ptr(&params[k]));
            gs.push(ptr(&grads[k]));
            ms.push(ptr(state.buf("exp_avg")?));
            vs.push(ptr(state.buf("exp_avg_sq")?));
            if amsgrad {
                mx.push(ptr(state.buf("max_exp_avg_sq")?));
            }
            ss.push(ptr(core.fused_steps[i].as_ref().ok_or("internal error: missing step tensor")?));
        }
        // SAFETY: every pointer is a live tensor handle owned by `core`, `params` or `grads` for the
        // duration of the call; the C++ side catches every exception.
        call(|e, l| unsafe {
            lt_fused_adam(
                ps.as_ptr(),
                gs.as_ptr(),
                ms.as_ptr(),
                vs.as_ptr(),
                if amsgrad { mx.as_ptr() } else { std::ptr::null() },
                ss.as_ptr(),
                ks.len(),
                lr,
                beta1,
                beta2,
                wd,
                eps,
                amsgrad as i32,
                maximize as i32,
                decoupled as i32,
                e,
                l,
            )
        })
        .e()?;
        for &k in &ks {
            if let Some(s) = core.state[idx[k]].as_mut() {
                s.step += 1.0;
            }
        }
    }
    Ok(())
}
