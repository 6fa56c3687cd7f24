//! Dynamic gradient scaling for "16-mixed", as torch.amp.GradScaler does it: multiply the loss by
//! `scale` before backward, unscale gradients before clipping and stepping, skip the optimizer step
//! when any gradient is inf/NaN, and grow or back off the scale.
use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GradScaler {
    pub scale: f64,
    pub growth_factor: f64,
    pub backoff_factor: f64,
    pub growth_interval: i64,
    /// Consecutive steps without inf/NaN.
    pub growth_tracker: i64,
    /// Set by `unscale`: whether the last unscaled gradients held an inf/NaN.
    #[serde(skip)]
    pub found_inf: bool,
    #[serde(skip)]
    unscaled: bool,
}

impl Default for GradScaler {
    fn default() -> Self {
        GradScaler {
            scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            growth_tracker: 0,
            found_inf: false,
            unscaled: false,
        }
    }
}

impl GradScaler {
    /// `loss * scale`.
    pub fn scale_loss(&self, loss: &Tensor) -> Result<Tensor, tch::TchError> {
        loss.f_mul_scalar(self.scale)
    }

    /// Divides every gradient by the scale in place and records whether any is inf/NaN. Idempotent
    /// until the next `update`.
    pub fn unscale(&mut self, params: &[Tensor]) -> Result<(), tch::TchError> {
        if self.unscaled {
            return Ok(());
        }
        let inv = 1.0 / self.scale;
        let mut found = false;
        tch::no_grad(|| -> Result<(), tch::TchError> {
            for p in params {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                if !bool::try_from(g.f_isfinite()?.f_all()?).unwrap_or(false) {
                    found = true;
                }
                let _ = g.f_mul_scalar_(inv)?;
            }
            Ok(())
        })?;
        self.found_inf = found;
        self.unscaled = true;
        Ok(())
    }

    /// Whether the optimizer step must be skipped (inf/NaN gradients).
    pub fn should_skip(&self) -> bool {
        self.found_inf
    }

    /// Adjusts the scale after a step: back off on inf/NaN, grow after `growth_interval` clean steps.
    pub fn update(&mut self) {
        if self.found_inf {
            self.scale *= self.backoff_factor;
            self.growth_tracker = 0;
        } else {
            self.growth_tracker += 1;
            if self.growth_tracker == self.growth_interval {
                self.scale *= self.growth_factor;
                self.growth_tracker = 0;
            }
        }
        self.found_inf = false;
        self.unscaled = false;
    }
}
