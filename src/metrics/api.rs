//! The metrics' script surface: `metrics::NAME(opts)` builds a metric object (torchmetrics'
//! `NAME` class through its task wrapper), `metrics::NAME(preds, target, opts)` is the functional
//! form; the object's `update`, `forward`, `compute` and `reset` methods.
use super::{
    Average, Classification, Input, KappaWeights, Kind, MetricHandle, Multioutput, NanStrategy, Normalize, Spec, Task,
};
use crate::script::convert::{err, to_tensor, Opts, OrScript, RResult};
use crate::script::registry::Registry;
use crate::tensor::Tensor;
use rhai::{Dynamic, Map};

/// Which classification keys a metric takes, and which tasks and averages.
#[derive(Clone, Copy)]
struct ClsDef {
    name: &'static str,
    tasks: &'static [Task],
    /// the `average` values it takes (empty: no `average`), the first being the default
    averages: &'static [Average],
    threshold: bool,
    top_k: bool,
    extra: &'static [&'static str],
    kind: fn(&Opts) -> RResult<Kind>,
}

const ALL_TASKS: &[Task] = &[Task::Binary, Task::Multiclass, Task::Multilabel];
const STAT_AVERAGES: &[Average] = &[Average::Micro, Average::Macro, Average::Weighted, Average::None];
const CURVE_AVERAGES: &[Average] = &[Average::Macro, Average::Weighted, Average::None, Average::Micro];

fn zero_division(o: &Opts) -> RResult<f64> {
    let z = o.f64_or("zero_division", 0.0)?;
    if z != 0.0 && z != 1.0 {
        return Err(err(format!("option 'zero_division' must be 0 or 1, got {z}")));
    }
    Ok(z)
}

fn choice<T: Copy>(o: &Opts, what: &str, key: &str, choices: &[(&str, T)]) -> RResult<Option<T>> {
    let Some(v) = o.str_opt(key)? else { return Ok(None) };
    match choices.iter().find(|(n, _)| *n == v) {
        Some((_, t)) => Ok(Some(*t)),
        None => {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            Err(err(format!("{what}: option '{key}' must be one of {}, got \"{v}\"", names.join(", "))))
        }
    }
}

const CLS: &[ClsDef] = &[
    ClsDef {
        name: "accuracy",
        tasks: ALL_TASKS,
        averages: STAT_AVERAGES,
        threshold: true,
        top_k: true,
        extra: &[],
        kind: |_| Ok(Kind::Accuracy),
    },
    ClsDef {
        name: "precision",
        tasks: ALL_TASKS,
        averages: STAT_AVERAGES,
        threshold: true,
        top_k: true,
        extra: &["zero_division"],
        kind: |o| Ok(Kind::Precision { zero_division: zero_division(o)? }),
    },
    ClsDef {
        name: "recall",
        tasks: ALL_TASKS,
        averages: STAT_AVERAGES,
        threshold: true,
        top_k: true,
        extra: &["zero_division"],
        kind: |o| Ok(Kind::Recall { zero_division: zero_division(o)? }),
    },
    ClsDef {
        name: "f1_score",
        tasks: ALL_TASKS,
        averages: STAT_AVERAGES,
        threshold: true,
        top_k: true,
        extra: &["zero_division"],
        kind: |o| Ok(Kind::FBeta { beta: 1.0, zero_division: zero_division(o)? }),
    },
    ClsDef {
        name: "fbeta_score",
        tasks: ALL_TASKS,
        averages: STAT_AVERAGES,
        threshold: true,
        top_k: true,
        extra: &["beta", "zero_division"],
        kind: |o| {
            let beta = o.f64_or("beta", 1.0)?;
            if beta <= 0.0 {
                return Err(err(format!("option 'beta' must be a number > 0, got {beta}")));
            }
            Ok(Kind::FBeta { beta, zero_division: zero_division(o)? })
        },
    },
    ClsDef {
        name: "confusion_matrix",
        tasks: ALL_TASKS,
        averages: &[],
        threshold: true,
        top_k: false,
        extra: &["normalize"],
        kind: |o| {
            let choices = [
                ("none", Normalize::None),
                ("true", Normalize::True),
                ("pred", Normalize::Pred),
                ("all", Normalize::All),
            ];
            Ok(Kind::ConfusionMatrix {
                normalize: choice(o, "confusion_matrix", "normalize", &choices)?.unwrap_or(Normalize::None),
            })
        },
    },
    ClsDef {
        name: "matthews_corrcoef",
        tasks: ALL_TASKS,
        averages: &[],
        threshold: true,
        top_k: false,
        extra: &[],
        kind: |_| Ok(Kind::MatthewsCorrcoef),
    },
    ClsDef {
        name: "cohen_kappa",
        tasks: &[Task::Binary, Task::Multiclass],
        averages: &[],
        threshold: true,
        top_k: false,
        extra: &["weights"],
        kind: |o| {
            let choices = [
                ("none", KappaWeights::None),
                ("linear", KappaWeights::Linear),
                ("quadratic", KappaWeights::Quadratic),
            ];
            Ok(Kind::CohenKappa {
                weights: choice(o, "cohen_kappa", "weights", &choices)?.unwrap_or(KappaWeights::None),
            })
        },
    },
    ClsDef {
        name: "auroc",
        tasks: ALL_TASKS,
        averages: CURVE_AVERAGES,
        threshold: false,
        top_k: false,
        extra: &["max_fpr"],
        kind: |o| {
            let max_fpr = o.f64_opt("max_fpr")?;
            if let Some(m) = max_fpr {
                if !(m > 0.0 && m <= 1.0) {
                    return Err(err(format!("auroc: option 'max_fpr' must be in (0, 1], got {m}")));
                }
            }
            Ok(Kind::Auroc { max_fpr })
        },
    },
    ClsDef {
        name: "average_precision",
        tasks: ALL_TASKS,
        averages: CURVE_AVERAGES,
        threshold: false,
        top_k: false,
        extra: &[],
        kind: |_| Ok(Kind::AveragePrecision),
    },
];

impl ClsDef {
    fn keys(&self) -> Vec<&'static str> {
        let mut k = vec!["task", "num_classes", "num_labels", "ignore_index"];
        if self.threshold {
            k.push("threshold");
        }
        if !self.averages.is_empty() {
            k.push("average");
        }
        if self.top_k {
            k.push("top_k");
        }
        k.extend(self.extra);
        k
    }

    fn spec(&self, m: &Map) -> RResult<Spec> {
        let what = format!("metrics::{}", self.name);
        let keys = self.keys();
        if m.contains_key("thresholds") && !self.threshold && !self.averages.is_empty() {
            return Err(err(format!(
                "{what}: option 'thresholds' (binned curves) is not supported: lt computes the exact curve, as thresholds=None"
            )));
        }
        let o = Opts::new(m, &what, &keys)?;
        // types first: a value of the wrong type is named before any other check
        for k in &keys {
            let _present = match *k {
                "task" | "average" | "normalize" | "weights" => o.str_opt(k)?.is_some(),
                "threshold" | "zero_division" | "beta" | "max_fpr" => o.f64_opt(k)?.is_some(),
                _ => o.i64_opt(k)?.is_some(),
            };
        }
        let names: Vec<String> = self.tasks.iter().map(|t| format!("\"{}\"", t.name())).collect();
        let task = match o.str_opt("task")?.as_deref() {
            None => return Err(err(format!("{what}: option 'task' is required: one of {}", names.join(", ")))),
            Some(t) => *self.tasks.iter().find(|x| x.name() == t).ok_or_else(|| {
                err(format!("{what}: option 'task' must be one of {}, got \"{t}\"", names.join(", ")))
            })?,
        };
        let only = |key: &str, tasks: &[Task]| -> RResult<()> {
            if o.has(key) && !tasks.contains(&task) {
                let t: Vec<&str> = tasks.iter().map(|t| t.name()).collect();
                return Err(err(format!(
                    "{what}: option '{key}' applies to task \"{}\", not \"{}\"",
                    t.join("\" or \""),
                    task.name()
                )));
            }
            Ok(())
        };
        only("num_classes", &[Task::Multiclass])?;
        only("num_labels", &[Task::Multilabel])?;
        only("threshold", &[Task::Binary, Task::Multilabel])?;
        only("top_k", &[Task::Multiclass])?;
        only("average", &[Task::Multiclass, Task::Multilabel])?;
        only("max_fpr", &[Task::Binary])?;
        let required = |key: &str| -> RResult<i64> {
            let n = o.i64_opt(key)?.ok_or_else(|| {
                err(format!("{what}: option '{key}' is required for task \"{}\" (an int > 1)", task.name()))
            })?;
            if n < 2 {
                return Err(err(format!("{what}: option '{key}' must be an int > 1, got {n}")));
            }
            Ok(n)
        };
        let num_classes = match task {
            Task::Binary => 2,
            Task::Multiclass => required("num_classes")?,
            Task::Multilabel => required("num_labels")?,
        };
        let threshold = o.f64_or("threshold", 0.5)?;
        if !(0.0..=1.0).contains(&threshold) {
            return Err(err(format!("{what}: option 'threshold' must be a number in [0, 1], got {threshold}")));
        }
        let top_k = o.i64_or("top_k", 1)?;
        if top_k < 1 || top_k > num_classes {
            return Err(err(format!(
                "{what}: option 'top_k' must be an int in [1, num_classes = {num_classes}], got {top_k}"
            )));
        }
        let averages: Vec<Average> = self
            .averages
            .iter()
            .copied()
            .filter(|a| *a != Average::Micro || task != Task::Multiclass || self.averages == STAT_AVERAGES)
            .collect();
        let average = match o.str_opt("average")? {
            None => averages.first().copied().unwrap_or(Average::Micro),
            Some(a) => averages.iter().copied().find(|x| x.name() == a).ok_or_else(|| {
                let n: Vec<String> = averages.iter().map(|a| format!("\"{}\"", a.name())).collect();
                err(format!("{what}: option 'average' must be one of {}, got \"{a}\"", n.join(", ")))
            })?,
        };
        let cls =
            Classification { task, num_classes, threshold, top_k, ignore_index: o.i64_opt("ignore_index")?, average };
        let kind = (self.kind)(&o).map_err(|e| match *e {
            rhai::EvalAltResult::ErrorRuntime(ref m, _) if !m.to_string().starts_with("metrics::") => {
                err(format!("{what}: {m}"))
            }
            _ => e,
        })?;
        Ok(Spec { kind, cls: Some(cls) })
    }
}

/// A regression / text / aggregation metric: its keys and how to read them.
struct PlainDef {
    name: &'static str,
    keys: &'static [&'static str],
    kind: fn(&Opts) -> RResult<Kind>,
    /// whether a functional form exists (MeanMetric has none)
    functional: bool,
}

const PLAIN: &[PlainDef] = &[
    PlainDef {
        name: "mean_squared_error",
        keys: &["squared"],
        kind: |o| Ok(Kind::MeanSquaredError { squared: o.bool_or("squared", true)? }),
        functional: true,
    },
    PlainDef { name: "mean_absolute_error", keys: &[], kind: |_| Ok(Kind::MeanAbsoluteError), functional: true },
    PlainDef {
        name: "r2_score",
        keys: &["adjusted", "multioutput"],
        kind: |o| {
            let adjusted = o.i64_or("adjusted", 0)?;
            if adjusted < 0 {
                return Err(err(format!("metrics::r2_score: option 'adjusted' must be an int >= 0, got {adjusted}")));
            }
            let choices = [
                ("raw_values", Multioutput::RawValues),
                ("uniform_average", Multioutput::UniformAverage),
                ("variance_weighted", Multioutput::VarianceWeighted),
            ];
            let multioutput =
                choice(o, "metrics::r2_score", "multioutput", &choices)?.unwrap_or(Multioutput::UniformAverage);
            Ok(Kind::R2Score { adjusted, multioutput })
        },
        functional: true,
    },
    PlainDef { name: "pearson_corrcoef", keys: &[], kind: |_| Ok(Kind::PearsonCorrcoef), functional: true },
    PlainDef {
        name: "perplexity",
        keys: &["ignore_index"],
        kind: |o| Ok(Kind::Perplexity { ignore_index: o.i64_opt("ignore_index")? }),
        functional: true,
    },
    PlainDef {
        name: "mean",
        keys: &["nan_strategy"],
        kind: |o| {
            let nan_strategy = match o.get("nan_strategy") {
                None => NanStrategy::Warn,
                Some(v) if v.is_float() || v.is_int() => {
                    NanStrategy::Impute(v.as_float().or_else(|_| v.as_int().map(|i| i as f64)).unwrap_or(0.0))
                }
                Some(_) => {
                    let choices = [
                        ("error", NanStrategy::Error),
                        ("warn", NanStrategy::Warn),
                        ("ignore", NanStrategy::Ignore),
                        ("disable", NanStrategy::Disable),
                    ];
                    choice(o, "metrics::mean", "nan_strategy", &choices)?.unwrap_or(NanStrategy::Warn)
                }
            };
            Ok(Kind::Mean { nan_strategy })
        },
        functional: false,
    },
];

impl PlainDef {
    fn spec(&self, m: &Map) -> RResult<Spec> {
        let what = format!("metrics::{}", self.name);
        let o = Opts::new(m, &what, self.keys)?;
        Ok(Spec { kind: (self.kind)(&o)?, cls: None })
    }
}

/// The process group of the running Trainer, for compute's sync across ranks.
fn process_group() -> Option<std::rc::Rc<crate::dist::ProcessGroup>> {
    crate::trainer::api::with_run(|c| c.state.try_borrow().ok().and_then(|s| s.process_group.clone())).flatten()
}

fn input_tensor(d: &Dynamic, what: &str) -> RResult<tch::Tensor> {
    to_tensor(d, what)
}

fn functional(spec: &Spec, p: &Tensor, t: &Tensor) -> RResult<Tensor> {
    spec.functional(Input::Pair(p, t)).map(Tensor::new).or_script()
}

fn run(h: &MetricHandle, a: &Dynamic, b: Option<&Dynamic>, forward: bool) -> RResult<Dynamic> {
    let is_mean = h.0.try_borrow().map(|m| matches!(m.spec.kind, Kind::Mean { .. })).unwrap_or(false);
    let name = h.0.try_borrow().map(|m| m.spec.class_name()).unwrap_or_default();
    let verb = if forward { "forward" } else { "update" };
    let a = input_tensor(a, &format!("{name}.{verb}"))?;
    let b = b.map(|b| input_tensor(b, &format!("{name}.{verb}"))).transpose()?;
    let input = match (&b, is_mean) {
        (_, true) => Input::Value(&a, b.as_ref()),
        (Some(b), false) => Input::Pair(&a, b),
        (None, false) => return Err(err(format!("{name}.{verb} takes (preds, target)"))),
    };
    let r = h.with(|m| {
        if forward {
            m.forward(input).map(|t| Dynamic::from(Tensor::new(t)))
        } else {
            m.update(input).map(|_| Dynamic::UNIT)
        }
    });
    r.map_err(|e| err(format!("{name}.{verb}: {e}")))
}

fn cls_doc(d: &ClsDef) -> String {
    let keys = d.keys().join(", ");
    let (what, example) = match d.name {
        "accuracy" => (
            "Accuracy (torchmetrics.Accuracy / functional accuracy): the fraction of correct predictions; per class then averaged with `average` (\"micro\" by default).",
            "let m = metrics::accuracy(#{task: \"multiclass\", num_classes: 3});\nm.update(torch::tensor([[2.0, 0.1, 0.3], [0.3, 0.9, 0.1]]), torch::tensor([0, 2]));\nprint(m.compute());\nprint(metrics::accuracy(torch::tensor([0, 2, 1]), torch::tensor([0, 1, 1]), #{task: \"multiclass\", num_classes: 3, average: \"macro\"}));",
        ),
        "precision" => (
            "Precision tp / (tp + fp) (torchmetrics.Precision); `zero_division` is the value of 0/0.",
            "let m = metrics::precision(#{task: \"binary\"});\nm.update(torch::tensor([0.9, 0.2, 0.7]), torch::tensor([1, 0, 0]));\nprint(m.compute());\nprint(metrics::precision(torch::tensor([0, 2, 1]), torch::tensor([0, 1, 1]), #{task: \"multiclass\", num_classes: 3, average: \"none\"}));",
        ),
        "recall" => (
            "Recall tp / (tp + fn) (torchmetrics.Recall).",
            "let m = metrics::recall(#{task: \"multilabel\", num_labels: 2});\nm.update(torch::tensor([[0.9, 0.2], [0.7, 0.6]]), torch::tensor([[1, 1], [0, 1]]));\nprint(m.compute());\nprint(metrics::recall(torch::tensor([1, 0, 1]), torch::tensor([1, 1, 1]), #{task: \"binary\"}));",
        ),
        "f1_score" => (
            "F1 score, the harmonic mean of precision and recall (torchmetrics.F1Score).",
            "let m = metrics::f1_score(#{task: \"multiclass\", num_classes: 3, average: \"macro\"});\nprint(m.forward(torch::tensor([0, 2, 1]), torch::tensor([0, 1, 1])));\nprint(metrics::f1_score(torch::tensor([0.8, 0.3]), torch::tensor([1, 0]), #{task: \"binary\"}));",
        ),
        "fbeta_score" => (
            "F-beta score (1 + β²)·tp / ((1 + β²)·tp + β²·fn + fp) (torchmetrics.FBetaScore); `beta` 1.0 by default.",
            "let m = metrics::fbeta_score(#{task: \"binary\", beta: 0.5});\nm.update(torch::tensor([1, 0, 1]), torch::tensor([1, 1, 0]));\nprint(m.compute());\nprint(metrics::fbeta_score(torch::tensor([1, 0]), torch::tensor([1, 1]), #{task: \"binary\", beta: 2.0}));",
        ),
        "confusion_matrix" => (
            "Confusion matrix (torchmetrics.ConfusionMatrix): rows are targets, columns predictions; binary [2, 2], multiclass [C, C], multilabel [L, 2, 2]; `normalize` \"true\", \"pred\", \"all\" or \"none\".",
            "let m = metrics::confusion_matrix(#{task: \"multiclass\", num_classes: 3});\nm.update(torch::tensor([0, 2, 1, 1]), torch::tensor([0, 1, 1, 2]));\nprint(m.compute());\nprint(metrics::confusion_matrix(torch::tensor([1, 0, 1]), torch::tensor([1, 1, 0]), #{task: \"binary\", normalize: \"true\"}));",
        ),
        "matthews_corrcoef" => (
            "Matthews correlation coefficient (torchmetrics.MatthewsCorrCoef), from the confusion matrix.",
            "let m = metrics::matthews_corrcoef(#{task: \"multiclass\", num_classes: 3});\nm.update(torch::tensor([0, 2, 1, 1]), torch::tensor([0, 1, 1, 2]));\nprint(m.compute());\nprint(metrics::matthews_corrcoef(torch::tensor([1, 0, 1]), torch::tensor([1, 0, 0]), #{task: \"binary\"}));",
        ),
        "cohen_kappa" => (
            "Cohen's kappa, inter-annotator agreement (torchmetrics.CohenKappa); `weights` \"none\", \"linear\" or \"quadratic\". Binary and multiclass.",
            "let m = metrics::cohen_kappa(#{task: \"multiclass\", num_classes: 3, weights: \"quadratic\"});\nm.update(torch::tensor([0, 2, 1, 1]), torch::tensor([0, 1, 1, 2]));\nprint(m.compute());\nprint(metrics::cohen_kappa(torch::tensor([1, 0, 1]), torch::tensor([1, 0, 0]), #{task: \"binary\"}));",
        ),
        "auroc" => (
            "Area under the ROC curve (torchmetrics.AUROC), exact (thresholds=None): one-vs-rest per class for multiclass, per label for multilabel, averaged with `average` (\"macro\" by default); `max_fpr` gives the McClish-corrected partial area (binary). Probabilities or logits (sigmoid / softmax applied when outside [0, 1]).",
            "let m = metrics::auroc(#{task: \"binary\"});\nm.update(torch::tensor([0.9, 0.4, 0.4, 0.1]), torch::tensor([1, 1, 0, 0]));\nprint(m.compute());\nprint(metrics::auroc(torch::tensor([[2.0, 0.1], [0.3, 0.9], [1.0, 0.0]]), torch::tensor([0, 1, 1]), #{task: \"multiclass\", num_classes: 2}));",
        ),
        _ => (
            "Average precision, the area under the precision-recall curve as the step sum Σ (Rₙ − Rₙ₋₁)·Pₙ (torchmetrics.AveragePrecision), exact (thresholds=None).",
            "let m = metrics::average_precision(#{task: \"binary\"});\nm.update(torch::tensor([0.9, 0.4, 0.35, 0.1]), torch::tensor([1, 0, 1, 0]));\nprint(m.compute());\nprint(metrics::average_precision(torch::tensor([[0.7, 0.3], [0.4, 0.6]]), torch::tensor([0, 0]), #{task: \"multiclass\", num_classes: 2, average: \"none\"}));",
        ),
    };
    format!(
        "{what}\n\n`metrics::{n}(opts)` is a metric object (`update`, `forward`, `compute`, `reset`; log it with `this.log`); `metrics::{n}(preds, target, opts)` is the functional form. Options: {keys}; `task` is \"{tasks}\".\n\n```rhai\n{example}\n```",
        n = d.name,
        tasks = d.tasks.iter().map(|t| t.name()).collect::<Vec<_>>().join("\", \""),
    )
}

fn plain_doc(d: &PlainDef) -> String {
    let (what, example) = match d.name {
        "mean_squared_error" => (
            "Mean squared error (torchmetrics.MeanSquaredError); `squared: false` gives its root.",
            "let m = metrics::mean_squared_error();\nm.update(torch::tensor([2.5, 0.0, 2.0]), torch::tensor([3.0, -0.5, 2.0]));\nprint(m.compute());\nprint(metrics::mean_squared_error(torch::tensor([1.0, 2.0]), torch::tensor([1.5, 2.0]), #{squared: false}));",
        ),
        "mean_absolute_error" => (
            "Mean absolute error (torchmetrics.MeanAbsoluteError).",
            "let m = metrics::mean_absolute_error(#{});\nm.update(torch::tensor([2.5, 0.0]), torch::tensor([3.0, -0.5]));\nprint(m.compute());\nprint(metrics::mean_absolute_error(torch::tensor([1.0, 2.0]), torch::tensor([1.5, 2.0])));",
        ),
        "r2_score" => (
            "Coefficient of determination R² (torchmetrics.R2Score): 1D preds, or 2D [N, outputs] reduced by `multioutput` (\"uniform_average\", \"raw_values\", \"variance_weighted\"); `adjusted` regressors for the adjusted R².",
            "let m = metrics::r2_score();\nm.update(torch::tensor([2.5, 0.0, 2.0, 8.0]), torch::tensor([3.0, -0.5, 2.0, 7.0]));\nprint(m.compute());\nprint(metrics::r2_score(torch::tensor([[0.5, 1.0], [-1.0, 1.0], [7.0, -6.0]]), torch::tensor([[0.0, 2.0], [-1.0, 2.0], [8.0, -5.0]]), #{multioutput: \"raw_values\"}));",
        ),
        "pearson_corrcoef" => (
            "Pearson correlation coefficient of 1D preds and target (torchmetrics.PearsonCorrCoef); NaN for a (nearly) constant input.",
            "let m = metrics::pearson_corrcoef();\nm.update(torch::tensor([2.5, 0.0, 2.0, 8.0]), torch::tensor([3.0, -0.5, 2.0, 7.0]));\nprint(m.compute());\nprint(metrics::pearson_corrcoef(torch::tensor([1.0, 2.0, 4.0]), torch::tensor([1.0, 3.0, 2.0])));",
        ),
        "perplexity" => (
            "Perplexity exp(mean negative log-likelihood) of logits [batch, seq, vocab] for int64 targets [batch, seq] (torchmetrics.text.Perplexity); `ignore_index` tokens are left out.",
            "let logits = torch::randn([2, 4, 5]);\nlet target = torch::tensor([[0, 1, 2, 3], [4, 0, 1, -100]]);\nlet m = metrics::perplexity(#{ignore_index: -100});\nm.update(logits, target);\nprint(m.compute());\nprint(metrics::perplexity(logits, target, #{ignore_index: -100}));",
        ),
        _ => (
            "The (weighted) mean of a stream of values (torchmetrics.MeanMetric): `update(value)` or `update(value, weight)` with numbers or tensors; `nan_strategy` \"warn\" (default: NaNs removed with a warning), \"ignore\", \"error\", \"disable\", or a number replacing them.",
            "let m = metrics::mean();\nm.update(torch::tensor([1.0, 2.0]));\nm.update(6.0, 2.0);\nprint(m.compute());\nlet w = metrics::mean(#{nan_strategy: 0.0});\nprint(w.forward(torch::tensor([1.0, 0.0 / 0.0])));",
        ),
    };
    let form = if d.functional {
        format!("`metrics::{n}()` / `metrics::{n}(opts)` is a metric object (`update`, `forward`, `compute`, `reset`; log it with `this.log`); `metrics::{n}(preds, target)` / `(preds, target, opts)` is the functional form.", n = d.name)
    } else {
        "`metrics::mean()` / `metrics::mean(opts)` is a metric object (`update`, `forward`, `compute`, `reset`; log it with `this.log`).".to_string()
    };
    let keys = if d.keys.is_empty() { "none".to_string() } else { d.keys.join(", ") };
    format!("{what}\n\n{form} Options: {keys}.\n\n```rhai\n{example}\n```")
}

pub fn register(reg: &mut Registry) {
    reg.global_module().set_custom_type::<MetricHandle>("Metric");
    for d in CLS {
        let d = *d;
        let doc = cls_doc(&d);
        reg.volatile("metrics", d.name, "opts", &doc, move |m: Map| -> RResult<MetricHandle> {
            Ok(MetricHandle::new(d.spec(&m)?))
        });
        reg.func("metrics", d.name, "preds, target, opts", &doc, move |p: Tensor, t: Tensor, m: Map| {
            functional(&d.spec(&m)?, &p, &t)
        });
    }
    for d in PLAIN {
        let doc = plain_doc(d);
        let name = d.name;
        let find = move || PLAIN.iter().find(|x| x.name == name).ok_or_else(|| err("internal: unknown metric"));
        reg.volatile("metrics", name, "", &doc, move || -> RResult<MetricHandle> {
            Ok(MetricHandle::new(find()?.spec(&Map::new())?))
        });
        reg.volatile("metrics", name, "opts", &doc, move |m: Map| -> RResult<MetricHandle> {
            Ok(MetricHandle::new(find()?.spec(&m)?))
        });
        if d.functional {
            reg.func("metrics", name, "preds, target", &doc, move |p: Tensor, t: Tensor| {
                functional(&find()?.spec(&Map::new())?, &p, &t)
            });
            reg.func("metrics", name, "preds, target, opts", &doc, move |p: Tensor, t: Tensor, m: Map| {
                functional(&find()?.spec(&m)?, &p, &t)
            });
        }
    }

    let doc = "Accumulates a batch into the metric's states (torchmetrics' `update`): `(preds, target)`, or for `metrics::mean` `(value)` / `(value, weight)`.\n\n```rhai\nlet m = metrics::accuracy(#{task: \"binary\"});\nm.update(torch::tensor([0.9, 0.1]), torch::tensor([1, 1]));\nm.update(torch::tensor([0.8]), torch::tensor([1]));\nprint(m.compute());\n```";
    reg.func("", "update", "self, value", doc, |h: &mut MetricHandle, a: Dynamic| run(h, &a, None, false).map(|_| ()));
    reg.func("", "update", "self, preds, target", doc, |h: &mut MetricHandle, a: Dynamic, b: Dynamic| {
        run(h, &a, Some(&b), false).map(|_| ())
    });
    let doc = "The metric of this batch alone, accumulating the batch as `update` does (torchmetrics' `forward` / `metric(preds, target)`); `this.log` of the metric logs this value on step.\n\n```rhai\nlet m = metrics::accuracy(#{task: \"multiclass\", num_classes: 2});\nprint(m.forward(torch::tensor([0, 1]), torch::tensor([0, 0])));\nprint(m.forward(torch::tensor([1, 1]), torch::tensor([1, 1])));\nprint(m.compute());\n```";
    reg.func("", "forward", "self, value", doc, |h: &mut MetricHandle, a: Dynamic| run(h, &a, None, true));
    reg.func("", "forward", "self, preds, target", doc, |h: &mut MetricHandle, a: Dynamic, b: Dynamic| {
        run(h, &a, Some(&b), true)
    });
    let doc = "The metric over everything accumulated since the last reset (torchmetrics' `compute`). In a distributed (DDP) run the states of every rank are reduced first: sums all-reduced, predictions gathered.\n\n```rhai\nlet m = metrics::mean_absolute_error();\nm.update(torch::tensor([1.0, 2.0]), torch::tensor([1.5, 2.0]));\nprint(m.compute());\n```";
    reg.func("", "compute", "self", doc, |h: &mut MetricHandle| -> RResult<Tensor> {
        let pg = process_group();
        let name = h.0.try_borrow().map(|m| m.spec.class_name()).unwrap_or_default();
        h.with(|m| m.compute(pg.as_deref())).map(Tensor::new).map_err(|e| err(format!("{name}.compute: {e}")))
    });
    let doc = "Forgets the accumulated states (torchmetrics' `reset`); the Trainer resets a logged metric at each epoch end.\n\n```rhai\nlet m = metrics::mean();\nm.update(4.0);\nm.reset();\nm.update(1.0);\nprint(m.compute());\n```";
    reg.func("", "reset", "self", doc, |h: &mut MetricHandle| -> RResult<()> {
        h.with(|m| {
            m.reset();
            Ok(())
        })
        .or_script()
    });
    let doc = "The metric's torchmetrics class and options.\n\n```rhai\nprint(metrics::f1_score(#{task: \"multiclass\", num_classes: 4}));\n```";
    reg.func("", "to_string", "self", doc, |h: &mut MetricHandle| describe(h));
    reg.func("", "to_debug", "self", doc, |h: &mut MetricHandle| describe(h));
}

fn describe(h: &MetricHandle) -> String {
    match h.0.try_borrow() {
        Ok(m) => {
            let mut parts = vec![];
            if let Some(c) = &m.spec.cls {
                match c.task {
                    Task::Multiclass => parts.push(format!("num_classes={}", c.num_classes)),
                    Task::Multilabel => parts.push(format!("num_labels={}", c.num_classes)),
                    Task::Binary => {}
                }
                if c.task != Task::Binary {
                    parts.push(format!("average={}", c.average.name()));
                }
            }
            format!("{}({})", m.spec.class_name(), parts.join(", "))
        }
        Err(_) => "Metric(busy)".to_string(),
    }
}
