//! `this.log` semantics, as Lightning defines them: per-hook defaults and permissions for `on_step`
//! / `on_epoch`, `name_step` / `name_epoch` when both, epoch reduction (`mean` weighted by batch
//! size, `sum`, `max`, `min`), and the three views `callback_metrics`, `logged_metrics`,
//! `progress_bar_metrics`.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::rc::Rc;

/// A metric object logged with `this.log` (torchmetrics' `Metric`, Lightning's `_ResultMetric`
/// with `is_tensor=False`): its step value is its last `forward`'s, its epoch value its
/// `compute()` (synced across the process group's ranks), and the Trainer resets it at epoch end.
#[derive(Clone)]
pub struct LoggedMetric {
    pub metric: crate::metrics::MetricHandle,
    pub process_group: Option<Rc<crate::dist::ProcessGroup>>,
}

impl std::fmt::Debug for LoggedMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoggedMetric({:?})", self.metric)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReduceFx {
    Mean,
    Sum,
    Max,
    Min,
}

impl ReduceFx {
    pub fn parse(s: &str) -> Result<ReduceFx, String> {
        match s {
            "mean" | "avg" => Ok(ReduceFx::Mean),
            "sum" => Ok(ReduceFx::Sum),
            "max" => Ok(ReduceFx::Max),
            "min" => Ok(ReduceFx::Min),
            other => Err(format!("reduce_fx must be \"mean\", \"sum\", \"max\" or \"min\", got \"{other}\"")),
        }
    }
}

/// Options of one `this.log` call; `None` means "the hook's default".
#[derive(Debug, Clone)]
pub struct LogOptions {
    pub on_step: Option<bool>,
    pub on_epoch: Option<bool>,
    pub prog_bar: bool,
    pub logger: bool,
    pub reduce_fx: ReduceFx,
    pub batch_size: Option<usize>,
    pub sync_dist: bool,
    pub rank_zero_only: bool,
    pub add_dataloader_idx: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            on_step: None,
            on_epoch: None,
            prog_bar: false,
            logger: true,
            reduce_fx: ReduceFx::Mean,
            batch_size: None,
            sync_dist: false,
            rank_zero_only: false,
            add_dataloader_idx: true,
        }
    }
}

/// Where `this.log` may be called, and its defaults there: (allowed on_step values, allowed
/// on_epoch values, default on_step, default on_epoch). Mirrors Lightning's `_FxValidator`.
fn hook_rules(hook: &str) -> Option<(&'static [bool], &'static [bool], bool, bool)> {
    const BOTH: &[bool] = &[false, true];
    const NO: &[bool] = &[false];
    const YES: &[bool] = &[true];
    Some(match hook {
        "training_step"
        | "on_before_backward"
        | "on_after_backward"
        | "on_before_optimizer_step"
        | "on_before_zero_grad"
        | "on_train_batch_start"
        | "on_train_batch_end" => (BOTH, BOTH, true, false),
        "on_train_start"
        | "on_train_epoch_start"
        | "on_train_epoch_end"
        | "on_validation_start"
        | "on_validation_epoch_start"
        | "on_validation_epoch_end"
        | "on_test_start"
        | "on_test_epoch_start"
        | "on_test_epoch_end"
        | "on_validation_end"
        | "on_test_end" => (NO, YES, false, true),
        "validation_step"
        | "test_step"
        | "on_validation_batch_start"
        | "on_validation_batch_end"
        | "on_test_batch_start"
        | "on_test_batch_end" => (BOTH, BOTH, false, true),
        _ => return None,
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metric {
    name: String,
    on_step: bool,
    on_epoch: bool,
    prog_bar: bool,
    logger: bool,
    reduce_fx: ReduceFx,
    /// value logged in the current batch, if any
    #[serde(with = "crate::checkpoint::float::option")]
    step_value: Option<f64>,
    /// accumulated for the epoch reduction (NaN and infinities survive a checkpoint)
    #[serde(with = "crate::checkpoint::float")]
    acc: f64,
    #[serde(with = "crate::checkpoint::float")]
    weight: f64,
    seen: bool,
    /// The evaluation dataloader it was logged for (Lightning's `meta.dataloader_idx`); `None`
    /// with one loader, in training, and in epoch-level hooks.
    #[serde(default)]
    dataloader_idx: Option<usize>,
    /// whether a metric object was logged (its epoch value is its compute())
    #[serde(default)]
    is_object: bool,
    /// the metric object (not in checkpoints: a restored entry has no epoch value)
    #[serde(skip)]
    object: Option<LoggedMetric>,
    /// Lightning's `has_reset`: the loop's results were reset after its epoch values were
    /// logged, and it was not logged since (reads of the views leave it out)
    #[serde(default)]
    has_reset: bool,
}

impl Metric {
    fn forked(&self) -> bool {
        self.on_step && self.on_epoch
    }
    fn step_name(&self) -> String {
        if self.forked() {
            format!("{}_step", self.name)
        } else {
            self.name.clone()
        }
    }
    fn epoch_name(&self) -> String {
        if self.forked() {
            format!("{}_epoch", self.name)
        } else {
            self.name.clone()
        }
    }
    fn epoch_value(&self) -> Result<Option<f64>, String> {
        if !self.seen {
            return Ok(None);
        }
        if self.is_object {
            let Some(o) = &self.object else { return Ok(None) };
            let v = o
                .metric
                .with(|m| m.compute(o.process_group.as_deref()).and_then(|t| crate::metrics::scalar(&t)))
                .map_err(|e| format!("this.log(\"{}\", metric): compute(): {e}", self.name))?;
            return Ok(Some(v as f32 as f64));
        }
        let v = match self.reduce_fx {
            ReduceFx::Mean => {
                if self.weight > 0.0 {
                    self.acc / self.weight
                } else {
                    f64::NAN
                }
            }
            _ => self.acc,
        };
        // a float32 result, as Lightning's reduction of float32 tensors
        Ok(Some(v as f32 as f64))
    }
}

/// The metrics logged during one loop (training, or one validation/test run).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Collection {
    metrics: Vec<Metric>,
    /// true for the training collection: its step metrics reach callback_metrics
    pub training: bool,
}

impl Collection {
    pub fn new(training: bool) -> Self {
        Collection { metrics: Vec::new(), training }
    }

    /// The entry `this.log(name, …, opts)` in `hook` records into, after Lightning's checks.
    fn entry(
        &mut self,
        hook: &str,
        name: &str,
        opts: &LogOptions,
        dataloader_idx: Option<usize>,
        is_object: bool,
    ) -> Result<&mut Metric, String> {
        let Some((allowed_step, allowed_epoch, def_step, def_epoch)) = hook_rules(hook) else {
            return Err(format!("you can't `this.log()` inside `{hook}`"));
        };
        let on_step = opts.on_step.unwrap_or(def_step);
        let on_epoch = opts.on_epoch.unwrap_or(def_epoch);
        if !allowed_step.contains(&on_step) {
            return Err(format!("this.log(\"{name}\", ..., #{{on_step: {on_step}}}) is not allowed in `{hook}`; there on_step must be {}", allowed_step[0]));
        }
        if !allowed_epoch.contains(&on_epoch) {
            return Err(format!("this.log(\"{name}\", ..., #{{on_epoch: {on_epoch}}}) is not allowed in `{hook}`; there on_epoch must be {}", allowed_epoch[0]));
        }
        let full = match dataloader_idx {
            Some(i) if opts.add_dataloader_idx => format!("{name}/dataloader_idx_{i}"),
            _ => name.to_string(),
        };
        let m = match self.metrics.iter().position(|m| m.name == full) {
            Some(i) => {
                let m = &mut self.metrics[i];
                if m.has_reset {
                    // logged again after the loop's results were reset: it starts over
                    (m.has_reset, m.acc, m.weight, m.seen, m.step_value) = (false, 0.0, 0.0, false, None);
                }
                if m.on_step != on_step || m.on_epoch != on_epoch || m.reduce_fx != opts.reduce_fx {
                    return Err(format!(
                        "`this.log(\"{name}\")` was already called in this loop with different on_step/on_epoch/reduce_fx"
                    ));
                }
                if m.is_object != is_object {
                    let was = if m.is_object { "a metric object" } else { "a value" };
                    return Err(format!("`this.log(\"{name}\")` was already called in this loop with {was}"));
                }
                m
            }
            None => {
                self.metrics.push(Metric {
                    name: full,
                    on_step,
                    on_epoch,
                    prog_bar: opts.prog_bar,
                    logger: opts.logger,
                    reduce_fx: opts.reduce_fx,
                    step_value: None,
                    acc: 0.0,
                    weight: 0.0,
                    seen: false,
                    dataloader_idx,
                    is_object,
                    object: None,
                    has_reset: false,
                });
                self.metrics.last_mut().ok_or("internal: metric list empty")?
            }
        };
        m.prog_bar |= opts.prog_bar;
        Ok(m)
    }

    /// Records one `this.log(name, value, opts)` call made in `hook`.
    pub fn log(
        &mut self,
        hook: &str,
        name: &str,
        value: f64,
        opts: &LogOptions,
        inferred_batch_size: Option<usize>,
        dataloader_idx: Option<usize>,
    ) -> Result<(), String> {
        let bs = opts.batch_size.or(inferred_batch_size).unwrap_or(1).max(1) as f64;
        let m = self.entry(hook, name, opts, dataloader_idx, false)?;
        m.step_value = Some(value);
        match m.reduce_fx {
            ReduceFx::Mean => {
                m.acc += value * bs;
                m.weight += bs;
            }
            ReduceFx::Sum => m.acc += value,
            ReduceFx::Max => m.acc = if m.seen { m.acc.max(value) } else { value },
            ReduceFx::Min => m.acc = if m.seen { m.acc.min(value) } else { value },
        }
        m.seen = true;
        Ok(())
    }

    /// Records `this.log(name, metric, opts)` of a metric object: the step value is its last
    /// forward's (none when only `update` was called), the epoch value its `compute()`.
    pub fn log_metric(
        &mut self,
        hook: &str,
        name: &str,
        metric: LoggedMetric,
        opts: &LogOptions,
        dataloader_idx: Option<usize>,
    ) -> Result<(), String> {
        let step = metric.metric.with(|m| m.forward_value()).map_err(|e| e.to_string())?;
        let m = self.entry(hook, name, opts, dataloader_idx, true)?;
        // Lightning keeps logged values as float32 tensors
        m.step_value = step.map(|v| v as f32 as f64);
        m.object = Some(metric);
        m.seen = true;
        Ok(())
    }

    /// Lightning's `_ResultCollection.reset()` after an epoch's values are logged: every entry
    /// is marked reset until it is logged again, and the metric objects logged are reset.
    pub fn reset_metric_objects(&mut self) {
        for m in &mut self.metrics {
            m.has_reset = true;
            if let Some(o) = &m.object {
                let _ = o.metric.with(|x| {
                    x.reset();
                    Ok(())
                });
            }
        }
    }

    /// Step-level values logged in the current batch: (callback, logged, progress bar) entries.
    pub fn step_metrics(&self) -> MetricViews {
        self.step_metrics_of(Loaders::All)
    }

    /// [`Collection::step_metrics`] of the values logged for `loaders` only.
    pub fn step_metrics_of(&self, loaders: Loaders) -> MetricViews {
        let mut v = MetricViews::default();
        for m in self.metrics.iter().filter(|m| !m.has_reset && loaders.includes(m.dataloader_idx)) {
            let (Some(val), true) = (m.step_value, m.on_step) else { continue };
            let forked = m.step_name();
            if m.logger {
                v.logged.insert(forked.clone(), val);
            }
            if self.training {
                v.callback.insert(m.name.clone(), val);
                v.callback.insert(forked.clone(), val);
            }
            if m.prog_bar {
                v.progress_bar.insert(forked, val);
            }
        }
        v
    }

    /// Epoch-level reduced values (a logged metric object's `compute()`, which may fail).
    pub fn epoch_metrics(&self) -> Result<MetricViews, String> {
        self.epoch_metrics_of(Loaders::All)
    }

    /// [`Collection::epoch_metrics`] of the values logged for `loaders` only.
    pub fn epoch_metrics_of(&self, loaders: Loaders) -> Result<MetricViews, String> {
        let mut v = MetricViews::default();
        for m in self.metrics.iter().filter(|m| !m.has_reset && loaders.includes(m.dataloader_idx)) {
            if !m.on_epoch {
                continue;
            }
            let Some(val) = m.epoch_value()? else { continue };
            let forked = m.epoch_name();
            if m.logger {
                v.logged.insert(forked.clone(), val);
            }
            v.callback.insert(m.name.clone(), val);
            v.callback.insert(forked.clone(), val);
            if m.prog_bar {
                v.progress_bar.insert(forked, val);
            }
        }
        Ok(v)
    }

    /// Forgets the current batch's step values (called after each batch).
    pub fn end_step(&mut self) {
        for m in &mut self.metrics {
            m.step_value = None;
        }
    }

    /// Starts a new epoch: forgets everything.
    pub fn reset(&mut self) {
        self.metrics.clear();
    }
}

/// Which logged values a view is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaders {
    All,
    /// Those of one evaluation dataloader (`None`: logged without one), as Lightning's
    /// `_ResultCollection.valid_items` selects by the running dataloader.
    Only(Option<usize>),
}

impl Loaders {
    fn includes(self, dataloader_idx: Option<usize>) -> bool {
        match self {
            Loaders::All => true,
            Loaders::Only(dl) => dl == dataloader_idx,
        }
    }
}

/// The three views of metrics a Lightning user reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricViews {
    pub callback: BTreeMap<String, f64>,
    pub logged: BTreeMap<String, f64>,
    pub progress_bar: BTreeMap<String, f64>,
}

impl MetricViews {
    pub fn merge(&mut self, other: &MetricViews) {
        self.callback.extend(other.callback.iter().map(|(k, v)| (k.clone(), *v)));
        self.logged.extend(other.logged.iter().map(|(k, v)| (k.clone(), *v)));
        self.progress_bar.extend(other.progress_bar.iter().map(|(k, v)| (k.clone(), *v)));
    }
}
