//! The hooks the Trainer calls, by name, and who hears each one — as Lightning 2.6.6 calls them:
//! callbacks first (script callbacks, then the built-in ones), then the module; for
//! `on_train_epoch_end` the monitoring callbacks (checkpointing, early stopping) come after the
//! module. Some hooks belong to callbacks only (`on_sanity_check_*`), some to the module only
//! (`prepare_data`, `configure_*`, the model-mode hooks).
use super::module::StepKind;

/// Who a hook is called on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listeners {
    Both,
    CallbacksOnly,
    ModuleOnly,
}

macro_rules! hooks {
    ($($variant:ident => $name:literal, $who:ident;)*) => {
        /// A hook of the LightningModule / Callback contract.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Hook {
            $($variant,)*
        }

        impl Hook {
            /// Every hook, in declaration order.
            pub const ALL: &'static [Hook] = &[$(Hook::$variant,)*];

            /// Lightning's name for it.
            pub fn name(self) -> &'static str {
                match self {
                    $(Hook::$variant => $name,)*
                }
            }

            pub fn listeners(self) -> Listeners {
                match self {
                    $(Hook::$variant => Listeners::$who,)*
                }
            }
        }
    };
}

hooks! {
    PrepareData => "prepare_data", ModuleOnly;
    Setup => "setup", Both;
    Teardown => "teardown", Both;
    ConfigureModel => "configure_model", ModuleOnly;
    OnFitStart => "on_fit_start", Both;
    OnFitEnd => "on_fit_end", Both;
    OnSanityCheckStart => "on_sanity_check_start", CallbacksOnly;
    OnSanityCheckEnd => "on_sanity_check_end", CallbacksOnly;
    OnTrainStart => "on_train_start", Both;
    OnTrainEnd => "on_train_end", Both;
    OnTrainEpochStart => "on_train_epoch_start", Both;
    OnTrainEpochEnd => "on_train_epoch_end", Both;
    OnTrainBatchStart => "on_train_batch_start", Both;
    OnTrainBatchEnd => "on_train_batch_end", Both;
    OnValidationStart => "on_validation_start", Both;
    OnValidationEnd => "on_validation_end", Both;
    OnValidationEpochStart => "on_validation_epoch_start", Both;
    OnValidationEpochEnd => "on_validation_epoch_end", Both;
    OnValidationBatchStart => "on_validation_batch_start", Both;
    OnValidationBatchEnd => "on_validation_batch_end", Both;
    OnTestStart => "on_test_start", Both;
    OnTestEnd => "on_test_end", Both;
    OnTestEpochStart => "on_test_epoch_start", Both;
    OnTestEpochEnd => "on_test_epoch_end", Both;
    OnTestBatchStart => "on_test_batch_start", Both;
    OnTestBatchEnd => "on_test_batch_end", Both;
    OnPredictStart => "on_predict_start", Both;
    OnPredictEnd => "on_predict_end", Both;
    OnPredictEpochStart => "on_predict_epoch_start", Both;
    OnPredictEpochEnd => "on_predict_epoch_end", Both;
    OnPredictBatchStart => "on_predict_batch_start", Both;
    OnPredictBatchEnd => "on_predict_batch_end", Both;
    OnBeforeBackward => "on_before_backward", Both;
    OnAfterBackward => "on_after_backward", Both;
    OnBeforeOptimizerStep => "on_before_optimizer_step", Both;
    OnBeforeZeroGrad => "on_before_zero_grad", Both;
    OnSaveCheckpoint => "on_save_checkpoint", Both;
    OnLoadCheckpoint => "on_load_checkpoint", Both;
    ConfigureCallbacks => "configure_callbacks", ModuleOnly;
    OnValidationModelZeroGrad => "on_validation_model_zero_grad", ModuleOnly;
    OnValidationModelEval => "on_validation_model_eval", ModuleOnly;
    OnValidationModelTrain => "on_validation_model_train", ModuleOnly;
    OnTestModelEval => "on_test_model_eval", ModuleOnly;
    OnTestModelTrain => "on_test_model_train", ModuleOnly;
    OnPredictModelEval => "on_predict_model_eval", ModuleOnly;
    OnBeforeBatchTransfer => "on_before_batch_transfer", ModuleOnly;
    TransferBatchToDevice => "transfer_batch_to_device", ModuleOnly;
    OnAfterBatchTransfer => "on_after_batch_transfer", ModuleOnly;
    Backward => "backward", ModuleOnly;
    OptimizerZeroGrad => "optimizer_zero_grad", ModuleOnly;
    ConfigureGradientClipping => "configure_gradient_clipping", ModuleOnly;
    OptimizerStep => "optimizer_step", ModuleOnly;
    LrSchedulerStep => "lr_scheduler_step", ModuleOnly;
}

/// The moments of an evaluation (validation or test) loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalPhase {
    Start,
    EpochStart,
    BatchStart,
    BatchEnd,
    EpochEnd,
    End,
}

impl Hook {
    /// The hook of an evaluation or prediction loop's `phase` (`on_validation_start`, …).
    pub fn eval(kind: StepKind, phase: EvalPhase) -> Hook {
        use EvalPhase::*;
        use Hook::*;
        match (kind, phase) {
            (StepKind::Test, Start) => OnTestStart,
            (StepKind::Test, EpochStart) => OnTestEpochStart,
            (StepKind::Test, BatchStart) => OnTestBatchStart,
            (StepKind::Test, BatchEnd) => OnTestBatchEnd,
            (StepKind::Test, EpochEnd) => OnTestEpochEnd,
            (StepKind::Test, End) => OnTestEnd,
            (StepKind::Predict, Start) => OnPredictStart,
            (StepKind::Predict, EpochStart) => OnPredictEpochStart,
            (StepKind::Predict, BatchStart) => OnPredictBatchStart,
            (StepKind::Predict, BatchEnd) => OnPredictBatchEnd,
            (StepKind::Predict, EpochEnd) => OnPredictEpochEnd,
            (StepKind::Predict, End) => OnPredictEnd,
            (_, Start) => OnValidationStart,
            (_, EpochStart) => OnValidationEpochStart,
            (_, BatchStart) => OnValidationBatchStart,
            (_, BatchEnd) => OnValidationBatchEnd,
            (_, EpochEnd) => OnValidationEpochEnd,
            (_, End) => OnValidationEnd,
        }
    }

    /// The hook that puts the model in eval mode for a loop (`on_validation_model_eval`, …); a
    /// module that defines it decides, else the Trainer calls `eval()`.
    pub fn model_eval(kind: StepKind) -> Hook {
        match kind {
            StepKind::Test => Hook::OnTestModelEval,
            StepKind::Predict => Hook::OnPredictModelEval,
            _ => Hook::OnValidationModelEval,
        }
    }

    /// The hook that puts the model back in train mode after an evaluation loop (Lightning has
    /// none for predict).
    pub fn model_train(kind: StepKind) -> Option<Hook> {
        match kind {
            StepKind::Test => Some(Hook::OnTestModelTrain),
            StepKind::Validation => Some(Hook::OnValidationModelTrain),
            _ => None,
        }
    }

    /// The hooks a DataModule has too (called on it first).
    pub fn is_data_hook(self) -> bool {
        matches!(self, Hook::PrepareData | Hook::Setup | Hook::Teardown)
    }

    /// Whether the monitoring callbacks run after the module (Lightning does this only for
    /// `on_train_epoch_end`, so that what the module logs there can be monitored).
    pub fn monitors_after_module(self) -> bool {
        self == Hook::OnTrainEpochEnd
    }
}

/// What to tell a user whose script module defines `fn name`, when it looks like a hook but lt
/// will not call it on the module: a Callback-only hook, or an unknown `on_*` name (with the
/// closest hook). `None` when lt calls it (or it is not hook-like).
pub fn module_hook_warning(name: &str) -> Option<String> {
    if !name.starts_with("on_") {
        return None;
    }
    if let Some(h) = Hook::ALL.iter().find(|h| h.name() == name) {
        return match h.listeners() {
            Listeners::CallbacksOnly => Some(format!(
                "fn {name} is a Callback hook in Lightning, not a LightningModule hook: lt does not call it on the module; put it in a map returned by callbacks()"
            )),
            _ => None,
        };
    }
    Some(not_a_hook(&format!("fn {name}"), name, Listeners::CallbacksOnly))
}

/// The LightningModule functions the Trainer calls besides the [`Hook`]s.
const MODULE_FUNCTIONS: &[&str] = &[
    "configure_optimizers",
    "training_step",
    "validation_step",
    "test_step",
    "predict_step",
    "train_dataloader",
    "val_dataloader",
    "test_dataloader",
    "predict_dataloader",
    "forward",
];

/// What to tell a user whose script callback map holds a function under `key` that is no Callback
/// hook lt calls (a module-only hook, or a typo, with the closest Callback hook). Keys holding other
/// values are the callback's own state and need no warning.
pub fn callback_hook_warning(key: &str) -> Option<String> {
    let is_callback_hook = |h: &&Hook| h.listeners() != Listeners::ModuleOnly;
    if Hook::ALL.iter().filter(is_callback_hook).any(|h| h.name() == key) {
        return None;
    }
    if Hook::ALL.iter().any(|h| h.name() == key) || MODULE_FUNCTIONS.contains(&key) {
        return Some(format!(
            "callback function {key} is a LightningModule hook, not a Callback hook: lt does not call it on callbacks; define fn {key} in the module"
        ));
    }
    Some(not_a_hook(&format!("callback function {key}"), key, Listeners::ModuleOnly))
}

/// The warning for `what` (named `name`) that is no hook lt calls, naming the closest hook of the
/// ones that are not `excluded`-only.
fn not_a_hook(what: &str, name: &str, excluded: Listeners) -> String {
    let closest =
        Hook::ALL.iter().filter(|h| h.listeners() != excluded).map(|h| h.name()).min_by_key(|h| edit_distance(name, h));
    match closest {
        Some(c) => format!("{what} is not a hook lt calls; did you mean {c}?"),
        None => format!("{what} is not a hook lt calls"),
    }
}

/// The candidate closest to `name` when it is close enough to be a likely misspelling (for
/// "did you mean").
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates.into_iter().map(|c| (edit_distance(name, c), c)).filter(|(d, _)| *d <= limit).min().map(|(_, c)| c)
}

/// Levenshtein distance (for "did you mean").
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
