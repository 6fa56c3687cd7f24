//! Lightning's `BackboneFinetuning` (callbacks/finetuning.py, on `BaseFinetuning`): the module's
//! `backbone` is frozen when the fit is set up (before `configure_optimizers`, so an optimizer
//! over the trainable parameters leaves it out; its batch norms stay trainable, as Lightning's
//! `freeze_before_training` leaves them whatever `train_bn`), and
//! at epoch `unfreeze_backbone_at_epoch` it is made trainable again and joins the optimizer as a
//! new parameter group whose learning rate starts at `backbone_initial_lr` (or
//! `backbone_initial_ratio_lr` × the first group's) and is multiplied by `lambda_func` each
//! later epoch, never above the first group's with `should_align`.
use crate::trainer::callback::{Action, Callback};
use crate::trainer::state::SharedState;
use serde_json::{json, Value};

/// What the Trainer does to the module's child module for a fine-tuning callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finetune {
    /// `BaseFinetuning.freeze(module, train_bn)`: parameters stop requiring grad and batch norms
    /// stop tracking running statistics, except batch norms with `train_bn`, made trainable.
    Freeze { train_bn: bool },
    /// `make_trainable(module)`, then `filter_params(module, train_bn)`: the parameters the new
    /// group gets (batch norms' left out unless `train_bn`).
    Unfreeze { train_bn: bool },
}

#[derive(Debug, Clone)]
pub struct BackboneFinetuning {
    pub unfreeze_backbone_at_epoch: usize,
    /// The factor the default `lambda_func` returns (Lightning's `multiplicative`: 1.5).
    pub lambda_factor: f64,
    pub backbone_initial_ratio_lr: f64,
    pub backbone_initial_lr: Option<f64>,
    pub should_align: bool,
    pub train_bn: bool,
    pub verbose: bool,
    pub rounding: i32,
    /// The backbone group's learning rate, once it exists.
    pub previous_backbone_lr: Option<f64>,
}

impl BackboneFinetuning {
    pub fn new(unfreeze_backbone_at_epoch: i64, lambda_factor: f64) -> Result<Self, String> {
        if unfreeze_backbone_at_epoch < 0 {
            return Err(format!("unfreeze_backbone_at_epoch must be >= 0, got {unfreeze_backbone_at_epoch}"));
        }
        if !lambda_factor.is_finite() || lambda_factor <= 0.0 {
            return Err(format!("lambda_func must be a factor > 0, got {lambda_factor}"));
        }
        Ok(BackboneFinetuning {
            unfreeze_backbone_at_epoch: unfreeze_backbone_at_epoch as usize,
            lambda_factor,
            backbone_initial_ratio_lr: 0.1,
            backbone_initial_lr: None,
            should_align: true,
            train_bn: true,
            verbose: false,
            rounding: 12,
            previous_backbone_lr: None,
        })
    }

    fn round(&self, x: f64) -> f64 {
        let p = 10f64.powi(self.rounding);
        (x * p).round() / p
    }

    /// `finetune_function` at the start of `epoch`, with the first group's learning rate.
    fn finetune(&mut self, epoch: usize, current_lr: f64) -> Vec<Action> {
        let (lr, action) = if epoch == self.unfreeze_backbone_at_epoch {
            let lr = self.backbone_initial_lr.unwrap_or(current_lr * self.backbone_initial_ratio_lr);
            (lr, Action::UnfreezeChild { attribute: "backbone".into(), lr, train_bn: self.train_bn })
        } else if let (true, Some(prev)) = (epoch > self.unfreeze_backbone_at_epoch, self.previous_backbone_lr) {
            let next = self.lambda_factor * prev;
            let next = if self.should_align && next > current_lr { current_lr } else { next };
            (next, Action::SetLastGroupLr(next))
        } else {
            return vec![];
        };
        self.previous_backbone_lr = Some(lr);
        let mut out = vec![action];
        if self.verbose {
            let message = format!("Current lr: {}, Backbone lr: {}", self.round(current_lr), self.round(lr));
            out.push(Action::Info { message, rank_zero_only: true });
        }
        out
    }
}

impl Callback for BackboneFinetuning {
    fn state_key(&self) -> String {
        "BackboneFinetuning".into()
    }

    fn on_hook(&mut self, hook: &str, state: &SharedState) -> Result<Vec<Action>, String> {
        match hook {
            // Lightning's BaseFinetuning.setup: freeze_before_training, before the optimizers exist;
            // BackboneFinetuning's calls `freeze(backbone)` with its default train_bn=True whatever
            // the callback's train_bn (which only decides what the new group gets)
            "setup" if state.borrow().stage == crate::trainer::state::RunningStage::Training => {
                Ok(vec![Action::FreezeChild { attribute: "backbone".into(), train_bn: true }])
            }
            "on_train_epoch_start" => {
                let s = state.borrow();
                if s.optimizer_lrs.len() != 1 {
                    return Err(format!(
                        "works with one optimizer, configure_optimizers returned {}",
                        s.optimizer_lrs.len()
                    ));
                }
                let current_lr = *s.optimizer_lrs[0].lrs.first().ok_or("the optimizer has no parameter group")?;
                let epoch = s.progress.current_epoch;
                drop(s);
                Ok(self.finetune(epoch, current_lr))
            }
            _ => Ok(vec![]),
        }
    }

    fn state_dict(&self) -> Value {
        json!({ "previous_backbone_lr": self.previous_backbone_lr })
    }

    fn load_state_dict(&mut self, state: &Value) -> Result<(), String> {
        match state.get("previous_backbone_lr") {
            None | Some(Value::Null) => {
                self.previous_backbone_lr = None;
                Ok(())
            }
            Some(v) => Err(format!(
                "resuming after the backbone was unfrozen (its group's lr was {v}) is not supported yet: the optimizer's backbone group cannot be rebuilt; resume from a checkpoint of an epoch before unfreeze_backbone_at_epoch ({})",
                self.unfreeze_backbone_at_epoch
            )),
        }
    }
}
