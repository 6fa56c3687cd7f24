//! Stateful metrics with torchmetrics 1.9 semantics: a metric accumulates states over batches
//! (`update`), reduces them (`compute`), gives the batch value while accumulating (`forward`) and
//! starts over (`reset`). States are sums (confusion matrices, sums of errors), synced across DDP
//! ranks by all-reduce at `compute`, or concatenations of predictions (AUROC, average precision),
//! gathered from every rank. `api.rs` registers the script surface (`metrics::accuracy(...)`).
pub mod api;
pub mod classification;
pub mod curves;
pub mod format;
pub mod regression;
mod state;

use crate::dist::ProcessGroup;
use crate::tensor::{Result, TensorError};
use crate::tensor_err;
pub use state::State;
use std::cell::RefCell;
use std::rc::Rc;
use tch::{Kind as K, Tensor};

/// torchmetrics' classification tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Binary,
    Multiclass,
    Multilabel,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Binary => "binary",
            Task::Multiclass => "multiclass",
            Task::Multilabel => "multilabel",
        }
    }
}

/// The reduction over classes or labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Average {
    Micro,
    Macro,
    Weighted,
    None,
}

impl Average {
    pub fn name(self) -> &'static str {
        match self {
            Average::Micro => "micro",
            Average::Macro => "macro",
            Average::Weighted => "weighted",
            Average::None => "none",
        }
    }
}

/// What a classification metric reads from its inputs.
#[derive(Debug, Clone)]
pub struct Classification {
    pub task: Task,
    /// classes (multiclass), labels (multilabel), 2 for binary
    pub num_classes: i64,
    pub threshold: f64,
    pub top_k: i64,
    pub ignore_index: Option<i64>,
    pub average: Average,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalize {
    None,
    True,
    Pred,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KappaWeights {
    None,
    Linear,
    Quadratic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Multioutput {
    RawValues,
    UniformAverage,
    VarianceWeighted,
}

/// MeanMetric's `nan_strategy`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NanStrategy {
    Error,
    Warn,
    Ignore,
    Disable,
    Impute(f64),
}

/// Which metric, with its own options.
#[derive(Debug, Clone)]
pub enum Kind {
    Accuracy,
    Precision { zero_division: f64 },
    Recall { zero_division: f64 },
    FBeta { beta: f64, zero_division: f64 },
    ConfusionMatrix { normalize: Normalize },
    MatthewsCorrcoef,
    CohenKappa { weights: KappaWeights },
    Auroc { max_fpr: Option<f64> },
    AveragePrecision,
    MeanSquaredError { squared: bool },
    MeanAbsoluteError,
    R2Score { adjusted: i64, multioutput: Multioutput },
    PearsonCorrcoef,
    Perplexity { ignore_index: Option<i64> },
    Mean { nan_strategy: NanStrategy },
}

/// What one `update` receives: `(preds, target)`, or MeanMetric's `(value, weight)`.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    Pair(&'a Tensor, &'a Tensor),
    Value(&'a Tensor, Option<&'a Tensor>),
}

/// A metric's definition: its kind and, for classification, what it reads from its inputs.
#[derive(Debug, Clone)]
pub struct Spec {
    pub kind: Kind,
    pub cls: Option<Classification>,
}

impl Spec {
    /// The torchmetrics class this metric behaves as (`MulticlassAccuracy`, `MeanSquaredError`, …).
    pub fn class_name(&self) -> String {
        let base = match &self.kind {
            Kind::Accuracy => "Accuracy",
            Kind::Precision { .. } => "Precision",
            Kind::Recall { .. } => "Recall",
            Kind::FBeta { beta, .. } if *beta == 1.0 => "F1Score",
            Kind::FBeta { .. } => "FBetaScore",
            Kind::ConfusionMatrix { .. } => "ConfusionMatrix",
            Kind::MatthewsCorrcoef => "MatthewsCorrCoef",
            Kind::CohenKappa { .. } => "CohenKappa",
            Kind::Auroc { .. } => "AUROC",
            Kind::AveragePrecision => "AveragePrecision",
            Kind::MeanSquaredError { .. } => "MeanSquaredError",
            Kind::MeanAbsoluteError => "MeanAbsoluteError",
            Kind::R2Score { .. } => "R2Score",
            Kind::PearsonCorrcoef => "PearsonCorrCoef",
            Kind::Perplexity { .. } => "Perplexity",
            Kind::Mean { .. } => "MeanMetric",
        };
        match &self.cls {
            Some(c) => {
                let t = c.task.name();
                format!("{}{}{base}", t[..1].to_uppercase(), &t[1..])
            }
            None => base.to_string(),
        }
    }

    /// Whether `compute()` gives one number (what `this.log` can log).
    pub fn scalar_output(&self) -> bool {
        match &self.kind {
            Kind::ConfusionMatrix { .. } => false,
            Kind::Accuracy
            | Kind::Precision { .. }
            | Kind::Recall { .. }
            | Kind::FBeta { .. }
            | Kind::Auroc { .. }
            | Kind::AveragePrecision => {
                self.cls.as_ref().is_none_or(|c| c.task == Task::Binary || c.average != Average::None)
            }
            _ => true,
        }
    }

    /// The states of one batch.
    pub fn batch_state(&self, input: Input) -> Result<State> {
        let (preds, target) = match (input, &self.kind) {
            (Input::Value(v, w), Kind::Mean { nan_strategy }) => return regression::mean_state(*nan_strategy, v, w),
            (Input::Pair(p, w), Kind::Mean { nan_strategy }) => {
                return regression::mean_state(*nan_strategy, p, Some(w))
            }
            (Input::Pair(p, t), _) => (p, t),
            (Input::Value(..), _) => {
                return Err(tensor_err!("{} takes (preds, target)", self.class_name()));
            }
        };
        match (&self.kind, &self.cls) {
            (Kind::Auroc { .. } | Kind::AveragePrecision, Some(c)) => format::curve_state(c, preds, target),
            (_, Some(c)) => format::confusion_state(c, preds, target),
            (kind, None) => regression::batch_state(kind, preds, target),
        }
    }

    /// The metric's value from (synced) states.
    pub fn compute_from(&self, state: &State) -> Result<Tensor> {
        match (&self.kind, &self.cls) {
            (Kind::Auroc { .. } | Kind::AveragePrecision, Some(c)) => curves::compute(&self.kind, c, state),
            (kind, Some(c)) => classification::compute(kind, c, state),
            (kind, None) => regression::compute(kind, state),
        }
    }

    /// The functional form: the metric of one batch.
    pub fn functional(&self, input: Input) -> Result<Tensor> {
        self.compute_from(&self.batch_state(input)?)
    }
}

/// A metric object: a spec and its accumulated states (torchmetrics' `Metric`).
#[derive(Debug)]
pub struct Metric {
    pub spec: Spec,
    state: Option<State>,
    /// `compute()`'s value until the next update or reset (torchmetrics' `_computed`)
    computed: Option<Tensor>,
    /// the last `forward`'s batch value (torchmetrics' `_forward_cache`), what `this.log` logs on step
    forward_cache: Option<Tensor>,
}

impl Metric {
    pub fn new(spec: Spec) -> Metric {
        Metric { spec, state: None, computed: None, forward_cache: None }
    }

    /// Accumulates one batch.
    pub fn update(&mut self, input: Input) -> Result<()> {
        let b = self.spec.batch_state(input)?;
        self.merge(b)
    }

    fn merge(&mut self, b: State) -> Result<()> {
        self.computed = None;
        self.state = Some(match self.state.take() {
            None => b,
            Some(s) => s.merge(b)?,
        });
        Ok(())
    }

    /// The batch's value, accumulating the batch as `update` does (torchmetrics' forward with
    /// `full_state_update=False`: the batch value comes from the batch's states alone, unsynced).
    pub fn forward(&mut self, input: Input) -> Result<Tensor> {
        let b = self.spec.batch_state(input)?;
        let v = self.spec.compute_from(&b)?;
        self.merge(b)?;
        self.forward_cache = Some(v.shallow_clone());
        Ok(v)
    }

    /// The value over everything accumulated since the last reset; across ranks when `pg` is a
    /// process group of more than one rank (states all-reduced or gathered, as torchmetrics'
    /// sync_on_compute; the local states stay as they were).
    pub fn compute(&mut self, pg: Option<&ProcessGroup>) -> Result<Tensor> {
        if let Some(c) = &self.computed {
            return Ok(c.shallow_clone());
        }
        let state = match &self.state {
            Some(s) => s.clone_state()?,
            None => State::empty(&self.spec)?,
        };
        let state = match pg {
            Some(pg) if pg.world_size() > 1 => state.synced(pg)?,
            _ => state,
        };
        let v = self.spec.compute_from(&state)?;
        self.computed = Some(v.shallow_clone());
        Ok(v)
    }

    pub fn reset(&mut self) {
        self.state = None;
        self.computed = None;
        self.forward_cache = None;
    }

    /// The last forward's value as a number, if forward was called since the last reset.
    pub fn forward_value(&self) -> Result<Option<f64>> {
        match &self.forward_cache {
            None => Ok(None),
            Some(t) => Ok(Some(scalar(t)?)),
        }
    }
}

/// A one-element tensor's value.
pub fn scalar(t: &Tensor) -> Result<f64> {
    if t.numel() != 1 {
        return Err(tensor_err!("expected a one-element result, got shape {:?}", t.size()));
    }
    Ok(t.f_to_kind(K::Double)?.f_double_value(&[])?)
}

/// A metric object shared by reference: storing it in `this` and updating it there updates the
/// same object the Trainer computes at epoch end.
#[derive(Debug, Clone)]
pub struct MetricHandle(pub Rc<RefCell<Metric>>);

impl MetricHandle {
    pub fn new(spec: Spec) -> Self {
        MetricHandle(Rc::new(RefCell::new(Metric::new(spec))))
    }
    pub fn with<T>(&self, f: impl FnOnce(&mut Metric) -> Result<T>) -> Result<T> {
        let mut m = self.0.try_borrow_mut().map_err(|_| TensorError("the metric is busy".into()))?;
        f(&mut m)
    }
}

/// Host copies of a tensor's values.
pub(crate) fn host_f64(t: &Tensor) -> Result<Vec<f64>> {
    let t = t.f_to_device(tch::Device::Cpu)?.f_to_kind(K::Double)?.f_contiguous()?.f_flatten(0, -1)?;
    Vec::<f64>::try_from(&t).map_err(|e| tensor_err!("{e}"))
}

pub(crate) fn host_i64(t: &Tensor) -> Result<Vec<i64>> {
    let t = t.f_to_device(tch::Device::Cpu)?.f_to_kind(K::Int64)?.f_contiguous()?.f_flatten(0, -1)?;
    Vec::<i64>::try_from(&t).map_err(|e| tensor_err!("{e}"))
}

/// A float32 result on `device`: a scalar, or a vector when `vector`.
pub(crate) fn result(values: &[f64], vector: bool, device: tch::Device) -> Result<Tensor> {
    let v: Vec<f32> = values.iter().map(|x| *x as f32).collect();
    let t = Tensor::f_from_slice(&v)?;
    let t = if vector { t } else { t.f_reshape([] as [i64; 0])? };
    Ok(t.f_to_device(device)?)
}
