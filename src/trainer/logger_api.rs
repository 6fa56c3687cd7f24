//! The script surface of the run's loggers: `this.logger` (the first, Lightning's
//! `self.logger`; `()` when the run has none) and `this.loggers` (all of them), with Lightning's
//! `log_metrics(metrics, step)` and `log_hyperparams(params, metrics)`, TensorBoard's histograms,
//! images and text (`log_histogram`, `log_image`, `log_text`), `save()`, and the logger's
//! `name`, `version`, `log_dir`, `class_name`.
use super::logger::Loggers;
use super::media::{Histogram, Image};
use crate::script::convert::{err, Opts, OrScript, RResult};
use crate::script::registry::Registry;
use crate::tensor::Tensor;
use rhai::{Dynamic, Map, INT};
use std::collections::BTreeMap;

/// One of the run's loggers, as the script sees it.
#[derive(Clone)]
pub struct LoggerView {
    pub loggers: Loggers,
    pub index: usize,
}

impl LoggerView {
    fn with<T>(&self, f: impl FnOnce(&mut dyn super::logger::Logger) -> Result<T, String>) -> RResult<T> {
        match self.loggers.with(self.index, f).or_script()? {
            Some(r) => r.or_script(),
            None => Err(err("this logger is no longer part of the run")),
        }
    }
}

/// `this.logger` and `this.loggers` for a run with `loggers`.
pub fn views(loggers: &Loggers) -> (Dynamic, Dynamic) {
    let all: rhai::Array =
        (0..loggers.len()).map(|index| Dynamic::from(LoggerView { loggers: loggers.clone(), index })).collect();
    (all.first().cloned().unwrap_or(Dynamic::UNIT), Dynamic::from_array(all))
}

fn step_of(step: INT, what: &str) -> RResult<usize> {
    usize::try_from(step).map_err(|_| err(format!("{what}: step must be >= 0, got {step}")))
}

/// `logger.log_image(name, image, step)` with the image's layout `dataformats`.
fn log_image(l: &mut LoggerView, name: &str, t: &Tensor, step: INT, dataformats: &str) -> RResult<()> {
    let step = step_of(step, "log_image")?;
    let img = Image::of_tensor(t, dataformats).or_script()?;
    l.with(|x| x.log_image(name, &img, step))
}

/// A logged value: a one-element tensor, a number or a bool.
fn scalar(v: &Dynamic, what: &str, name: &str) -> RResult<f64> {
    if let Some(t) = v.read_lock::<Tensor>() {
        if t.numel() != 1 {
            return Err(err(format!("{what}: \"{name}\" must be a scalar, got a tensor of shape {:?}", t.size())));
        }
        return f64::try_from(t.0.as_ref()).or_script();
    }
    if let Ok(b) = v.as_bool() {
        return Ok(if b { 1.0 } else { 0.0 });
    }
    crate::script::convert::number(v, &format!("{what}: \"{name}\""))
}

fn metrics_of(m: &Map, what: &str) -> RResult<BTreeMap<String, f64>> {
    m.iter().map(|(k, v)| Ok((k.to_string(), scalar(v, what, k)?))).collect()
}

fn hparams_of(params: &Map) -> serde_json::Value {
    crate::script::lightning::to_json(&Dynamic::from_map(params.clone()))
}

pub fn register(reg: &mut Registry) {
    reg.global_module().set_custom_type::<LoggerView>("Logger");
    let doc = "Lightning's `logger.log_metrics(metrics, step)`: a map of scalars (numbers, bools, one-element tensors) written at once as one row at `step` (TensorBoard scalars; a `metrics.csv` row when the CSV logger next saves). Unlike `this.log`, nothing is reduced or added to `callback_metrics`.\n\n```rhai\nfn on_train_epoch_end() {\n    this.logger.log_metrics(#{ lr_scale: 0.5 }, this.global_step);\n}\n```";
    reg.volatile("", "log_metrics", "self, metrics, step", doc, |l: &mut LoggerView, m: Map, step: INT| {
        let step = step_of(step, "log_metrics")?;
        let metrics = metrics_of(&m, "log_metrics")?;
        l.with(|x| x.log_metrics(&metrics, step))
    });
    let doc = "Lightning's `logger.log_hyperparams(params, metrics)`: `params` (a map, nested maps flattened with `/` for TensorBoard) are merged into the run's hyperparameters and `hparams.yaml` is rewritten. `metrics` — a map of scalars, or one number meaning `#{hp_metric: x}` — are the HParams tab's metrics, logged at step 0; without them TensorBoard gets Lightning's placeholder `hp_metric = -1` (later `this.log(\"hp_metric\", x)` calls fill it in).\n\n```rhai\nfn on_fit_start() {\n    this.logger.log_hyperparams(#{ dropout: 0.1 }, #{ hp_metric: 0.0 });\n}\n```";
    reg.volatile("", "log_hyperparams", "self, params", doc, |l: &mut LoggerView, p: Map| {
        let h = hparams_of(&p);
        l.with(|x| x.log_hyperparams(&h, None))
    });
    reg.volatile("", "log_hyperparams", "self, params, metrics", doc, |l: &mut LoggerView, p: Map, m: Dynamic| {
        let h = hparams_of(&p);
        let metrics = match m.read_lock::<Map>() {
            Some(map) => metrics_of(&map, "log_hyperparams")?,
            None => BTreeMap::from([("hp_metric".to_string(), scalar(&m, "log_hyperparams", "hp_metric")?)]),
        };
        l.with(|x| x.log_hyperparams(&h, Some(&metrics)))
    });
    let doc = "A histogram of a tensor's values at `step` (`SummaryWriter.add_histogram` with its default buckets: `-1e20 … -1e-12, 0, 1e-12 … 1e20`, each 1.1 times the last). The values must be finite. TensorBoard: a histogram summary; CSV: `histograms/<name>/step_<step>.json` with the same fields (min, max, num, sum, sum_squares, bucket_limit, bucket).\n\n```rhai\nfn on_train_epoch_end() {\n    this.logger.log_histogram(\"w\", this.w, this.global_step);\n}\n```";
    reg.volatile(
        "",
        "log_histogram",
        "self, name, values, step",
        doc,
        |l: &mut LoggerView, name: &str, t: Tensor, step: INT| {
            let step = step_of(step, "log_histogram")?;
            let h = Histogram::of_tensor(&t).or_script()?;
            l.with(|x| x.log_histogram(name, &h, step))
        },
    );
    let doc = "An image at `step` (`SummaryWriter.add_image`): a `[C, H, W]` tensor (1, 3 or 4 channels; one channel is shown as gray RGB), floats in [0, 1] (scaled by 255) or uint8 in [0, 255], clipped. Option `dataformats` (default \"CHW\"): any order of \"CHW\", \"HW\", or \"NCHW\" for a batch, tiled 8 to a row as TensorBoard's `add_images` does. TensorBoard: an image summary (PNG); CSV: `images/<name>/step_<step>.png`.\n\n```rhai\nfn on_train_epoch_end() {\n    this.logger.log_image(\"noise\", torch::rand([3, 8, 8]), this.global_step);\n    this.logger.log_image(\"batch\", torch::rand([4, 1, 8, 8]), this.global_step, #{ dataformats: \"NCHW\" });\n}\n```";
    reg.volatile(
        "",
        "log_image",
        "self, name, image, step",
        doc,
        |l: &mut LoggerView, name: &str, t: Tensor, step: INT| log_image(l, name, &t, step, "CHW"),
    );
    reg.volatile(
        "",
        "log_image",
        "self, name, image, step, opts",
        doc,
        |l: &mut LoggerView, name: &str, t: Tensor, step: INT, o: Map| {
            let fmt = Opts::new(&o, "log_image", &["dataformats"])?.str_or("dataformats", "CHW")?;
            log_image(l, name, &t, step, &fmt)
        },
    );
    let doc = "A text at `step` (`SummaryWriter.add_text`). TensorBoard: the text plugin's summary under `<name>/text_summary` (Markdown in its TEXT tab); CSV: `text/<name>/step_<step>.txt`.\n\n```rhai\nfn on_train_epoch_end() {\n    this.logger.log_text(\"note\", `epoch ${this.current_epoch} done`, this.global_step);\n}\n```";
    reg.volatile(
        "",
        "log_text",
        "self, name, text, step",
        doc,
        |l: &mut LoggerView, name: &str, text: &str, step: INT| {
            let step = step_of(step, "log_text")?;
            l.with(|x| x.log_text(name, text, step))
        },
    );
    let doc = "Writes out what the logger buffers (Lightning's `logger.save()`; the Trainer also saves every `flush_logs_every_n_steps` and at the end).\n\n```rhai\nfn on_train_end() { this.logger.save(); }\n```";
    reg.volatile("", "save", "self", doc, |l: &mut LoggerView| l.with(|x| x.save()));
    let doc = "The logger's version folder (`lightning_logs/version_N`), Lightning's `logger.log_dir`.\n\n```rhai\nfn on_fit_start() { print(this.logger.log_dir); }\n```";
    reg.getter("log_dir", doc, |l: &mut LoggerView| -> RResult<String> {
        l.with(|x| Ok(x.log_dir().map(|d| d.to_string_lossy().to_string()).unwrap_or_default()))
    });
    let doc = "The logger's version number (the `N` of `version_N`), Lightning's `logger.version`.\n\n```rhai\nfn on_fit_start() { print(this.logger.version); }\n```";
    reg.getter("version", doc, |l: &mut LoggerView| -> RResult<INT> {
        let dir = l.with(|x| Ok(x.log_dir()))?;
        let v = dir.as_ref().and_then(|d| d.file_name()?.to_str()?.strip_prefix("version_")?.parse::<INT>().ok());
        v.ok_or_else(|| err("this logger has no version folder"))
    });
    let doc = "The experiment name, Lightning's `logger.name`: `\"lightning_logs\"`.\n\n```rhai\nfn on_fit_start() { print(this.logger.name); }\n```";
    reg.getter("name", doc, |l: &mut LoggerView| -> RResult<String> {
        let dir = l.with(|x| Ok(x.log_dir()))?;
        Ok(dir
            .as_ref()
            .and_then(|d| d.parent()?.file_name()?.to_str().map(str::to_string))
            .unwrap_or_else(|| "lightning_logs".into()))
    });
    let doc = "Which logger this is: `\"CSVLogger\"` or `\"TensorBoardLogger\"` (Lightning's class names).\n\n```rhai\nfn on_fit_start() { for l in this.loggers { print(l.class_name); } }\n```";
    reg.getter("class_name", doc, |l: &mut LoggerView| -> RResult<String> {
        l.with(|x| Ok(x.class_name().to_string()))
    });
}
