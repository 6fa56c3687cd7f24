//! Script constructors of the built-in callbacks, used in a module's `fn callbacks()`:
//! `callbacks::model_checkpoint(#{monitor: "val_loss", save_top_k: 2})`,
//! `callbacks::early_stopping(#{monitor: "val_loss", patience: 3})`,
//! `callbacks::learning_rate_monitor(#{logging_interval: "step"})`,
//! `callbacks::timer(#{duration: "00:00:10:00"})`,
//! `callbacks::gradient_accumulation_scheduler(#{scheduling: #{"0": 1, "2": 4}})`,
//! `callbacks::backbone_finetuning(#{unfreeze_backbone_at_epoch: 2})`,
//! `callbacks::stochastic_weight_averaging(#{swa_lrs: 0.05})`,
//! `callbacks::ema_weight_averaging(#{decay: 0.999})`, `callbacks::weight_averaging()`.
use super::early_stopping::{EarlyStopping, EarlyStoppingConfig};
use super::model_checkpoint::{ModelCheckpoint, ModelCheckpointConfig};
use super::{LearningRateMonitor, Mode};
use crate::script::convert::{err, Opts, OrScript, RResult};
use crate::script::registry::Registry;
use crate::trainer::callback::Callback;
use rhai::Map;
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

/// A built-in callback as a script value; the Trainer takes it out of the list `callbacks()`
/// returns.
#[derive(Clone)]
pub struct NativeCallback {
    pub name: String,
    pub inner: Rc<RefCell<Option<Box<dyn Callback>>>>,
}

impl NativeCallback {
    fn new(name: &str, cb: Box<dyn Callback>) -> Self {
        NativeCallback { name: name.to_string(), inner: Rc::new(RefCell::new(Some(cb))) }
    }
    /// Takes the callback out (once).
    pub fn take(&self) -> Option<Box<dyn Callback>> {
        self.inner.borrow_mut().take()
    }
}

fn duration(o: &Opts, key: &str) -> RResult<Option<std::time::Duration>> {
    Ok(o.f64_opt(key)?.map(|s| std::time::Duration::from_secs_f64(s.max(0.0))))
}

pub fn model_checkpoint(m: &Map) -> RResult<ModelCheckpoint> {
    let o = Opts::new(
        m,
        "callbacks::model_checkpoint",
        &[
            "dirpath",
            "filename",
            "monitor",
            "mode",
            "save_top_k",
            "save_last",
            "every_n_epochs",
            "every_n_train_steps",
            "train_time_interval",
            "save_on_train_epoch_end",
            "save_weights_only",
            "auto_insert_metric_name",
            "enable_version_counter",
            "verbose",
        ],
    )?;
    let cfg = ModelCheckpointConfig {
        dirpath: o.str_opt("dirpath")?.map(PathBuf::from),
        filename: o.str_opt("filename")?,
        monitor: o.str_opt("monitor")?,
        mode: Mode::parse(&o.str_or("mode", "min")?).or_script()?,
        save_top_k: o.i64_or("save_top_k", 1)?,
        save_last: o.bool_or("save_last", false)?,
        every_n_epochs: o.i64_opt("every_n_epochs")?,
        every_n_train_steps: o.i64_opt("every_n_train_steps")?,
        train_time_interval: duration(&o, "train_time_interval")?,
        save_on_train_epoch_end: if o.has("save_on_train_epoch_end") {
            Some(o.bool_or("save_on_train_epoch_end", false)?)
        } else {
            None
        },
        save_weights_only: o.bool_or("save_weights_only", false)?,
        auto_insert_metric_name: o.bool_or("auto_insert_metric_name", true)?,
        enable_version_counter: o.bool_or("enable_version_counter", true)?,
        verbose: o.bool_or("verbose", false)?,
    };
    ModelCheckpoint::new(cfg).or_script()
}

pub fn early_stopping(m: &Map) -> RResult<EarlyStopping> {
    let o = Opts::new(
        m,
        "callbacks::early_stopping",
        &[
            "monitor",
            "min_delta",
            "patience",
            "mode",
            "strict",
            "check_finite",
            "stopping_threshold",
            "divergence_threshold",
            "check_on_train_epoch_end",
            "verbose",
            "log_rank_zero_only",
        ],
    )?;
    let monitor = o.str_opt("monitor")?.ok_or_else(|| err("callbacks::early_stopping needs a `monitor`"))?;
    let mut cfg = EarlyStoppingConfig::new(&monitor);
    cfg.min_delta = o.f64_or("min_delta", 0.0)?;
    cfg.patience = o.i64_or("patience", 3)?;
    cfg.mode = Mode::parse(&o.str_or("mode", "min")?).or_script()?;
    cfg.strict = o.bool_or("strict", true)?;
    cfg.check_finite = o.bool_or("check_finite", true)?;
    cfg.stopping_threshold = o.f64_opt("stopping_threshold")?;
    cfg.divergence_threshold = o.f64_opt("divergence_threshold")?;
    if o.has("check_on_train_epoch_end") {
        cfg.check_on_train_epoch_end = Some(o.bool_or("check_on_train_epoch_end", false)?);
    }
    cfg.verbose = o.bool_or("verbose", false)?;
    cfg.log_rank_zero_only = o.bool_or("log_rank_zero_only", false)?;
    EarlyStopping::new(cfg).or_script()
}

pub fn timer(m: &Map) -> RResult<super::Timer> {
    let o = Opts::new(m, "callbacks::timer", &["duration", "interval", "verbose"])?;
    let duration = match o.get("duration") {
        Some(d) if !d.is_unit() => {
            Some(crate::trainer::config::want_duration("duration", &crate::script::lightning::to_json(d)).or_script()?)
        }
        _ => None,
    };
    super::Timer::new(duration, &o.str_or("interval", "step")?, o.bool_or("verbose", true)?).or_script()
}

pub fn backbone_finetuning(m: &Map) -> RResult<super::BackboneFinetuning> {
    let what = "callbacks::backbone_finetuning";
    let o = Opts::new(
        m,
        what,
        &[
            "unfreeze_backbone_at_epoch",
            "lambda_func",
            "backbone_initial_ratio_lr",
            "backbone_initial_lr",
            "should_align",
            "train_bn",
            "verbose",
            "rounding",
        ],
    )?;
    let mut cb =
        super::BackboneFinetuning::new(o.i64_or("unfreeze_backbone_at_epoch", 10)?, o.f64_or("lambda_func", 1.5)?)
            .map_err(|e| err(format!("{what}: {e}")))?;
    cb.backbone_initial_ratio_lr = o.f64_or("backbone_initial_ratio_lr", 0.1)?;
    cb.backbone_initial_lr = match o.get("backbone_initial_lr") {
        Some(v) if !v.is_unit() => Some(o.f64_or("backbone_initial_lr", 0.0)?),
        _ => None,
    };
    for (k, v) in [
        ("backbone_initial_ratio_lr", Some(cb.backbone_initial_ratio_lr)),
        ("backbone_initial_lr", cb.backbone_initial_lr),
    ] {
        if let Some(x) = v.filter(|x| !x.is_finite() || *x < 0.0) {
            return Err(err(format!("{what}: {k} must be a number >= 0, got {x}")));
        }
    }
    cb.should_align = o.bool_or("should_align", true)?;
    cb.train_bn = o.bool_or("train_bn", true)?;
    cb.verbose = o.bool_or("verbose", false)?;
    let rounding = o.i64_or("rounding", 12)?;
    if !(0..=17).contains(&rounding) {
        return Err(err(format!("{what}: rounding must be in 0..=17, got {rounding}")));
    }
    cb.rounding = rounding as i32;
    Ok(cb)
}

pub fn gradient_accumulation_scheduler(m: &Map) -> RResult<super::GradientAccumulationScheduler> {
    let o = Opts::new(m, "callbacks::gradient_accumulation_scheduler", &["scheduling"])?;
    let what = "callbacks::gradient_accumulation_scheduler: `scheduling` must map epochs to factors, like #{\"0\": 1, \"2\": 4}";
    let sched = o.get("scheduling").ok_or_else(|| err(what))?;
    let map = sched.clone().try_cast::<Map>().ok_or_else(|| err(what))?;
    let mut pairs = Vec::new();
    for (k, v) in map {
        let epoch = k.trim().parse::<i64>().map_err(|_| err(format!("{what}; got key \"{k}\"")))?;
        let factor =
            v.as_int().map_err(|_| err(format!("{what}; the factor for epoch {epoch} is a {}", v.type_name())))?;
        pairs.push((epoch, factor));
    }
    super::GradientAccumulationScheduler::new(&pairs).or_script()
}

pub fn stochastic_weight_averaging(m: &Map) -> RResult<super::WeightAveraging> {
    use super::weight_averaging::{EpochStart, SwaSchedule};
    let what = "callbacks::stochastic_weight_averaging";
    let o = Opts::new(m, what, &["swa_lrs", "swa_epoch_start", "annealing_epochs", "annealing_strategy"])?;
    let swa_lrs = match o.numbers_opt("swa_lrs")? {
        Some(lrs) => lrs,
        None => return Err(err(format!("{what} needs `swa_lrs` (a learning rate, or one per parameter group)"))),
    };
    let epoch_start = match o.get("swa_epoch_start") {
        None => EpochStart::Fraction(0.8),
        Some(d) if d.is_int() => EpochStart::Epoch(d.as_int().unwrap_or(0).max(0) as usize),
        Some(d) => EpochStart::Fraction(crate::script::convert::number(d, what).map_err(|_| {
            err(format!("{what}: option 'swa_epoch_start' must be an int or a fraction, got {}", d.type_name()))
        })?),
    };
    let cosine = match o.str_or("annealing_strategy", "cos")?.as_str() {
        "cos" => true,
        "linear" => false,
        other => return Err(err(format!("{what}: annealing_strategy must be \"cos\" or \"linear\", got \"{other}\""))),
    };
    let s = SwaSchedule { swa_lrs, epoch_start, annealing_epochs: o.i64_or("annealing_epochs", 10)?, cosine };
    super::WeightAveraging::swa(s).or_script()
}

pub fn ema_weight_averaging(m: &Map) -> RResult<super::WeightAveraging> {
    let o = Opts::new(
        m,
        "callbacks::ema_weight_averaging",
        &["decay", "update_every_n_steps", "update_starting_at_step", "update_starting_at_epoch", "use_buffers"],
    )?;
    let nonneg = |k: &str| -> RResult<Option<usize>> {
        match o.i64_opt(k)? {
            Some(v) if v < 0 => Err(err(format!("callbacks::ema_weight_averaging: {k} must be >= 0, got {v}"))),
            v => Ok(v.map(|v| v as usize)),
        }
    };
    let every = nonneg("update_every_n_steps")?.unwrap_or(1);
    super::WeightAveraging::ema(
        o.f64_or("decay", 0.999)?,
        every,
        nonneg("update_starting_at_step")?,
        nonneg("update_starting_at_epoch")?,
        o.bool_or("use_buffers", true)?,
    )
    .or_script()
}

pub fn throughput_monitor(m: &Map) -> RResult<super::ThroughputMonitor> {
    let what = "callbacks::throughput_monitor";
    let o = Opts::new(m, what, &["window_size", "batch_size", "batch_size_fn", "length_fn", "separator"])?;
    for k in ["batch_size_fn", "length_fn"] {
        if o.has(k) {
            return Err(err(format!("{what}: `{k}` is not supported (a built-in callback cannot call a script function); samples are counted by Lightning's batch-size inference (the batch's first tensor's first dimension), or a fixed `batch_size`")));
        }
    }
    if o.has("separator") && o.str_or("separator", "/")? != "/" {
        return Err(err(format!("{what}: only the separator \"/\" is supported")));
    }
    super::ThroughputMonitor::new(o.i64_or("window_size", 100)?, o.i64_opt("batch_size")?).or_script()
}

pub fn register(reg: &mut Registry) {
    reg.global_module().set_custom_type::<NativeCallback>("Callback");
    let doc = "Lightning's ThroughputMonitor: logs, per stage, `<stage>/time`, `<stage>/batches`, `<stage>/samples` and, once `window_size` (default 100, > 1) batches were seen, the rolling `<stage>/device/batches_per_sec` and `<stage>/device/samples_per_sec` (plus `<stage>/batches_per_sec`, `<stage>/samples_per_sec` over all processes under DDP); training every `log_every_n_steps`, validation and test every batch. Samples per batch: the inferred batch size (first tensor's first dimension), or option `batch_size`. Training time excludes the validation runs inside it.\n\n```rhai\nfn callbacks() {\n    [callbacks::throughput_monitor(#{window_size: 10})]\n}\n```";
    reg.volatile("callbacks", "throughput_monitor", "opts", doc, |m: Map| -> RResult<NativeCallback> {
        Ok(NativeCallback::new("ThroughputMonitor", Box::new(throughput_monitor(&m)?)))
    });
    reg.volatile("callbacks", "throughput_monitor", "", doc, || -> RResult<NativeCallback> {
        Ok(NativeCallback::new("ThroughputMonitor", Box::new(throughput_monitor(&Map::new())?)))
    });
    let doc = "Lightning's ModelCheckpoint. Options: `dirpath`, `filename` (template like \"{epoch}-{val_loss:.2f}\"), `monitor`, `mode`, `save_top_k` (-1 all, 0 none, k best), `save_last`, `every_n_epochs`, `every_n_train_steps`, `train_time_interval` (seconds), `save_on_train_epoch_end`, `save_weights_only`, `auto_insert_metric_name`, `enable_version_counter`, `verbose` (print what each monitored save did, as Lightning).\n\n```rhai\nfn callbacks() {\n    [callbacks::model_checkpoint(#{monitor: \"val_loss\", save_top_k: 2, save_last: true})]\n}\n```";
    reg.volatile("callbacks", "model_checkpoint", "opts", doc, |m: Map| -> RResult<NativeCallback> {
        Ok(NativeCallback::new("ModelCheckpoint", Box::new(model_checkpoint(&m)?)))
    });
    let doc = "Lightning's EarlyStopping. Options: `monitor` (required), `min_delta`, `patience` (validation checks), `mode`, `strict`, `check_finite`, `stopping_threshold`, `divergence_threshold`, `check_on_train_epoch_end`. The reason it stopped is printed.\n\n```rhai\nfn callbacks() {\n    [callbacks::early_stopping(#{monitor: \"val_loss\", patience: 2})]\n}\n```";
    reg.volatile("callbacks", "early_stopping", "opts", doc, |m: Map| -> RResult<NativeCallback> {
        Ok(NativeCallback::new("EarlyStopping", Box::new(early_stopping(&m)?)))
    });
    let doc = "Lightning's LearningRateMonitor: logs `lr-Adam` (and `lr-Adam/pg1`, … for several groups) every step (default) or epoch. Options: `logging_interval` (\"step\" | \"epoch\"), `log_momentum` (`lr-Adam-momentum`: betas[0] or momentum), `log_weight_decay` (`lr-Adam-weight_decay`).\n\n```rhai\nfn callbacks() {\n    [callbacks::learning_rate_monitor(#{logging_interval: \"step\"})]\n}\n```";
    reg.volatile("callbacks", "learning_rate_monitor", "opts", doc, |m: Map| -> RResult<NativeCallback> {
        let o = Opts::new(
            &m,
            "callbacks::learning_rate_monitor",
            &["logging_interval", "log_momentum", "log_weight_decay"],
        )?;
        let cb = LearningRateMonitor::new(
            o.str_opt("logging_interval")?,
            o.bool_or("log_momentum", false)?,
            o.bool_or("log_weight_decay", false)?,
        )
        .or_script()?;
        Ok(NativeCallback::new("LearningRateMonitor", Box::new(cb)))
    });
    reg.volatile("callbacks", "learning_rate_monitor", "", doc, || -> RResult<NativeCallback> {
        Ok(NativeCallback::new(
            "LearningRateMonitor",
            Box::new(LearningRateMonitor::new(None, false, false).or_script()?),
        ))
    });
    let doc = "Lightning's Timer: stops the fit when `duration` of training time has passed, checked after each training batch (`interval: \"step\"`, default) or epoch (`\"epoch\"`). `duration` is \"DD:HH:MM:SS\", seconds, or a map #{days, hours, minutes, seconds}. The time spent in each stage (train, sanity_check, validate, test, predict) is saved in checkpoints, so a resumed fit keeps counting.\n\n```rhai\nfn callbacks() {\n    [callbacks::timer(#{duration: \"00:01:30:00\", interval: \"epoch\"})]\n}\n```";
    reg.volatile("callbacks", "timer", "opts", doc, |m: Map| -> RResult<NativeCallback> {
        Ok(NativeCallback::new("Timer", Box::new(timer(&m)?)))
    });
    let doc = "Lightning's BasePredictionWriter: `write_on_batch_end(trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx)` after each predict batch (`write_interval: \"batch\"`, the default), `write_on_epoch_end(trainer, pl_module, predictions, batch_indices)` once all are made (`\"epoch\"`), or both (`\"batch_and_epoch\"`). `batch_indices` are the dataset indices of each batch (`[]` for a loader that cannot tell); `predictions` is the list of batch outputs (a list per dataloader when there are several). Other entries are the writer's own state (`this` in its functions).\n\n```rhai\nfn callbacks() {\n    [callbacks::prediction_writer(#{\n        write_interval: \"epoch\",\n        out: \"preds.safetensors\",\n        write_on_epoch_end: |trainer, pl_module, predictions, batch_indices| print(predictions.len()),\n    })]\n}\n```";
    reg.volatile("callbacks", "prediction_writer", "opts", doc, |m: Map| -> RResult<Map> {
        crate::script::lightning::prediction_writer::writer(m).map_err(err)
    });
    let doc = "Lightning's ModelSummary: the fit starts by printing the model's child modules down to `max_depth` levels (1 by default, -1: all, 0: none) in Lightning's table, children in the order the script assigns them. Without it, `enable_model_summary` (true) prints depth 1.\n\n```rhai\nfn callbacks() {\n    [callbacks::model_summary(#{max_depth: -1})]\n}\n```";
    reg.volatile("callbacks", "model_summary", "opts", doc, |m: Map| -> RResult<NativeCallback> {
        let o = Opts::new(&m, "callbacks::model_summary", &["max_depth"])?;
        Ok(NativeCallback::new(
            "ModelSummary",
            Box::new(super::ModelSummary::new(o.i64_or("max_depth", 1)?).or_script()?),
        ))
    });
    reg.volatile("callbacks", "model_summary", "", doc, || -> RResult<NativeCallback> {
        Ok(NativeCallback::new("ModelSummary", Box::new(super::ModelSummary::new(1).or_script()?)))
    });
    let doc = "Lightning's BackboneFinetuning: the module's `this.backbone` is frozen when the fit is set up (before `configure_optimizers`, so give the optimizer the parameters that require grad; its batch norms stay trainable, as Lightning's), and at epoch `unfreeze_backbone_at_epoch` (10) it is made trainable and added to the optimizer as a new parameter group with learning rate `backbone_initial_lr`, or `backbone_initial_ratio_lr` (0.1) × the first group's. Each later epoch the group's rate is multiplied by `lambda_func` (a factor, 1.5 as Lightning's default `multiplicative`), capped at the first group's with `should_align` (true). Options also `train_bn` (true: the backbone's batch-norm parameters join the new group too, unless the optimizer already has them, which Lightning warns about; false: they never do), `verbose` (false: true prints both rates each epoch, rounded to `rounding` (12) digits). Its state (the backbone's last rate) is saved in checkpoints.\n\n```rhai\nfn init(h) {\n    this.backbone = nn::sequential([nn::linear(4, 8), nn::relu()]);\n    this.head = nn::linear(8, 2);\n}\nfn configure_optimizers() { optim::sgd(this.parameters().filter(|p| p.requires_grad), #{lr: 0.1}) }\nfn callbacks() {\n    [callbacks::backbone_finetuning(#{unfreeze_backbone_at_epoch: 2, lambda_func: 1.5})]\n}\n```";
    reg.volatile("callbacks", "backbone_finetuning", "opts", doc, |m: Map| -> RResult<NativeCallback> {
        Ok(NativeCallback::new("BackboneFinetuning", Box::new(backbone_finetuning(&m)?)))
    });
    reg.volatile("callbacks", "backbone_finetuning", "", doc, || -> RResult<NativeCallback> {
        Ok(NativeCallback::new("BackboneFinetuning", Box::new(backbone_finetuning(&Map::new())?)))
    });
    let doc = "Lightning's GradientAccumulationScheduler: `scheduling` maps an epoch (as a string key) to the number of batches whose gradients are accumulated per optimizer step from that epoch on; epochs before the first key use 1. Needs automatic optimization.\n\n```rhai\nfn callbacks() {\n    [callbacks::gradient_accumulation_scheduler(#{scheduling: #{\"0\": 1, \"2\": 4}})]\n}\n```";
    reg.volatile("callbacks", "gradient_accumulation_scheduler", "opts", doc, |m: Map| -> RResult<NativeCallback> {
        Ok(NativeCallback::new("GradientAccumulationScheduler", Box::new(gradient_accumulation_scheduler(&m)?)))
    });
    let doc = "Lightning's StochasticWeightAveraging (SWA): from epoch `swa_epoch_start` (an int, or a fraction of max_epochs; 0.8) the learning rate of optimizer 0 anneals to `swa_lrs` over `annealing_epochs` (10) with `annealing_strategy` \"cos\" or \"linear\" (PyTorch's SWALR; the configured schedulers stop), the parameters are averaged at the end of every epoch, and when training ends the model gets the average and its batch-norm statistics are recomputed with one `forward` pass over the training inputs (PyTorch's update_bn; the script needs `fn forward(x)`). Differs from Lightning on purpose: the average is taken at epoch ends, so it covers exactly the SWA epochs (Lightning's includes the epoch before and misses the last). The final model (averaged, batch norm updated) is what `on_fit_end` and the test of `lt run` see, and it is saved as `swa.ckpt` (weights only) in the checkpoint folder; checkpoints written during the fit hold the trained weights, with the running average in the callback's state (as in Lightning, which never saves the final SWA model of a network without batch norm).\n\n```rhai\nfn callbacks() {\n    [callbacks::stochastic_weight_averaging(#{swa_lrs: 0.05, swa_epoch_start: 2, annealing_epochs: 2})]\n}\n```";
    reg.volatile("callbacks", "stochastic_weight_averaging", "opts", doc, |m: Map| -> RResult<NativeCallback> {
        Ok(NativeCallback::new("StochasticWeightAveraging", Box::new(stochastic_weight_averaging(&m)?)))
    });
    let doc = "Lightning's EMAWeightAveraging: an exponential moving average of the weights (`decay * avg + (1 - decay) * w`, first value copied), updated after optimizer steps (`update_every_n_steps`, from `update_starting_at_step`) and at the ends of epochs from `update_starting_at_epoch` when given. Buffers are averaged too unless `use_buffers: false`. Validation runs with the average (once there is one), checkpoints store the average as their weights (the current ones are kept for resuming), and the model ends training with the average. Options: `decay` (0.999), `update_every_n_steps` (1), `update_starting_at_step`, `update_starting_at_epoch`, `use_buffers` (true).\n\n```rhai\nfn callbacks() {\n    [callbacks::ema_weight_averaging(#{decay: 0.99})]\n}\n```";
    reg.volatile("callbacks", "ema_weight_averaging", "opts", doc, |m: Map| -> RResult<NativeCallback> {
        Ok(NativeCallback::new("EMAWeightAveraging", Box::new(ema_weight_averaging(&m)?)))
    });
    reg.volatile("callbacks", "ema_weight_averaging", "", doc, || -> RResult<NativeCallback> {
        Ok(NativeCallback::new("EMAWeightAveraging", Box::new(ema_weight_averaging(&Map::new())?)))
    });
    let doc = "Lightning's WeightAveraging: an equal-weight average of the weights after every optimizer step (PyTorch's AveragedModel). Validation runs with the average, checkpoints store it as their weights, and the model ends training with it. Option: `use_buffers` (true; false leaves buffers as trained).\n\n```rhai\nfn callbacks() {\n    [callbacks::weight_averaging(#{use_buffers: false})]\n}\n```";
    reg.volatile("callbacks", "weight_averaging", "opts", doc, |m: Map| -> RResult<NativeCallback> {
        let o = Opts::new(&m, "callbacks::weight_averaging", &["use_buffers"])?;
        Ok(NativeCallback::new(
            "WeightAveraging",
            Box::new(super::WeightAveraging::mean(o.bool_or("use_buffers", true)?)),
        ))
    });
    reg.volatile("callbacks", "weight_averaging", "", doc, || -> RResult<NativeCallback> {
        Ok(NativeCallback::new("WeightAveraging", Box::new(super::WeightAveraging::mean(true))))
    });
}
