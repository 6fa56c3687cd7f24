//! `this.logger` / `this.loggers`: histograms, images, text, `log_metrics` and `log_hyperparams`
//! written by both loggers, checked against what `torch.utils.tensorboard` writes for the same
//! inputs (tests/fixtures/loggers/tb_summaries.json, made by gen_tb_summaries.py), read back with
//! the independent event-file reader of `loggers.rs`.
use crate::common::{lt_in, stderr, temp_dir};
use crate::loggers::{bytes_of, fields, get, read_events, records, Field};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SCRIPT: &str = include_str!("../fixtures/loggers/summaries.rhai");

fn fixture() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/loggers/tb_summaries.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn f64_of(f: &Field) -> f64 {
    match f {
        Field::I64(b) => f64::from_le_bytes(*b),
        other => panic!("expected a double, got {other:?}"),
    }
}

fn doubles(f: &Field) -> Vec<f64> {
    bytes_of(f).chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
}

fn varint_of(f: &Field) -> u64 {
    match f {
        Field::Varint(v) => *v,
        other => panic!("expected a varint, got {other:?}"),
    }
}

/// The number(s) under `"key":` after `"tag"` (the whole text when `tag` is empty) in JSON text,
/// read with Rust's correctly rounded parser: serde_json's default float parsing can be an ulp off
/// (1.7874537232350647 reads as 1.787453723235065), and the buckets are compared exactly.
fn exact(text: &str, tag: &str, key: &str) -> Vec<f64> {
    let start = if tag.is_empty() { 0 } else { text.find(&format!("\"{tag}\"")).expect("tag") };
    let at = start + text[start..].find(&format!("\"{key}\":")).expect("key") + key.len() + 3;
    let rest = text[at..].trim_start();
    let body = match rest.strip_prefix('[') {
        Some(r) => &r[..r.find(']').unwrap()],
        None => &rest[..rest.find([',', '}']).unwrap()],
    };
    body.split(',').map(|x| x.trim()).filter(|x| !x.is_empty()).map(|x| x.parse().unwrap()).collect()
}

const FIELDS: [&str; 7] = ["min", "max", "num", "sum", "sum_squares", "bucket_limit", "bucket"];

/// A decoded protobuf message: (field number, value) pairs.
type Message = Vec<(u64, Field)>;

/// Every `Summary.Value` of the event file: (tag, step, its fields).
fn summary_values(path: &Path) -> Vec<(String, i64, Message)> {
    let mut out = Vec::new();
    for rec in records(&std::fs::read(path).unwrap()) {
        let e = fields(&rec);
        let step = get(&e, 2).first().map_or(0, |f| varint_of(f) as i64);
        for s in get(&e, 5) {
            for v in get(&fields(bytes_of(s)), 1) {
                let vf = fields(bytes_of(v));
                let tag = String::from_utf8(bytes_of(get(&vf, 1)[0]).to_vec()).unwrap();
                out.push((tag, step, vf));
            }
        }
    }
    out
}

fn the<'a>(values: &'a [(String, i64, Message)], tag: &str) -> (i64, &'a [(u64, Field)]) {
    let mut m = values.iter().filter(|(t, _, _)| t == tag);
    let (_, step, vf) = m.next().unwrap_or_else(|| panic!("no summary {tag}"));
    assert!(m.next().is_none(), "one summary {tag}");
    (*step, vf)
}

/// Decodes a PNG into (width, height, channels, pixels).
fn png_pixels(bytes: &[u8]) -> (u32, u32, usize, Vec<u8>) {
    let mut r = png::Decoder::new(bytes).read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, info.color_type.samples(), buf)
}

/// `h` against torch's fields for `tag` in the fixture's text.
fn check_histogram(tag: &str, h: &BTreeMap<&str, Vec<f64>>, fixture: &str) {
    let want = |f: &str| exact(fixture, tag, f);
    for f in ["min", "max", "num", "bucket_limit", "bucket"] {
        assert_eq!(h[f], want(f), "{tag}.{f}");
    }
    // lt adds in order, numpy pairwise / BLAS dot: ~10 and ~1000 terms, far inside 1e-12
    for f in ["sum", "sum_squares"] {
        let (a, b) = (h[f][0], want(f)[0]);
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{tag}.{f}: {a} vs {b}");
    }
}

fn check_image(tag: &str, png: &[u8], want: &Value) {
    let (w, h, c, px) = png_pixels(png);
    assert_eq!(
        (w as u64, h as u64, c as u64),
        (want["width"].as_u64().unwrap(), want["height"].as_u64().unwrap(), want["colorspace"].as_u64().unwrap()),
        "{tag}"
    );
    let expect: Vec<u8> = want["pixels"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u8).collect();
    assert_eq!(px, expect, "{tag}: pixels");
}

fn version_dir(root: &Path) -> PathBuf {
    root.join("lightning_logs").join("version_0")
}

fn event_file(v: &Path) -> PathBuf {
    std::fs::read_dir(v)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents."))
        .expect("an event file")
}

#[test]
fn summaries_match_torch_utils_tensorboard_in_both_loggers() {
    let dir = temp_dir("logger-api");
    std::fs::write(dir.join("m.rhai"), SCRIPT).unwrap();
    let out = lt_in(&dir, &["fit", "m.rhai"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let want = fixture();
    let fixture_text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/loggers/tb_summaries.json"))
            .unwrap();
    let v = version_dir(&dir);
    let values = summary_values(&event_file(&v));

    // TensorBoard: HistogramProto under Summary.Value.histo (field 5)
    for (tag, w) in want["histograms"].as_object().unwrap() {
        let (step, vf) = the(&values, tag);
        assert_eq!(step, w["step"].as_i64().unwrap(), "{tag}");
        let hf = fields(bytes_of(get(vf, 5)[0]));
        let names = ["min", "max", "num", "sum", "sum_squares"];
        let mut h: BTreeMap<&str, Vec<f64>> =
            names.iter().enumerate().map(|(i, n)| (*n, vec![f64_of(get(&hf, i as u64 + 1)[0])])).collect();
        h.insert("bucket_limit", doubles(get(&hf, 6)[0]));
        h.insert("bucket", doubles(get(&hf, 7)[0]));
        check_histogram(tag, &h, &fixture_text);
        // CSV: the same fields in histograms/<tag>/step_<N>.json
        let text = std::fs::read_to_string(v.join(format!("histograms/{tag}/step_{step}.json"))).unwrap();
        let h: BTreeMap<&str, Vec<f64>> = FIELDS.iter().map(|f| (*f, exact(&text, "", f))).collect();
        check_histogram(tag, &h, &fixture_text);
    }
    // TensorBoard: Summary.Image (field 4) {height, width, colorspace, PNG}; CSV: the same PNG
    for (tag, w) in want["images"].as_object().unwrap() {
        let (step, vf) = the(&values, tag);
        assert_eq!(step, w["step"].as_i64().unwrap(), "{tag}");
        let img = fields(bytes_of(get(vf, 4)[0]));
        let dims: Vec<u64> = (1..=3).map(|i| varint_of(get(&img, i)[0])).collect();
        assert_eq!(
            dims,
            [w["height"].as_u64().unwrap(), w["width"].as_u64().unwrap(), w["colorspace"].as_u64().unwrap()]
        );
        check_image(tag, bytes_of(get(&img, 4)[0]), w);
        check_image(tag, &std::fs::read(v.join(format!("images/{tag}/step_{step}.png"))).unwrap(), w);
    }
    // TensorBoard: the text plugin's string tensor; CSV: text/<tag>/step_<N>.txt
    for (tag, w) in want["text"].as_object().unwrap() {
        let (step, vf) = the(&values, tag);
        assert_eq!(step, w["step"].as_i64().unwrap());
        let pd = fields(bytes_of(get(&fields(bytes_of(get(vf, 9)[0])), 1)[0]));
        assert_eq!(bytes_of(get(&pd, 1)[0]), w["plugin_name"].as_str().unwrap().as_bytes());
        let t = fields(bytes_of(get(vf, 8)[0]));
        assert_eq!(varint_of(get(&t, 1)[0]), w["dtype"].as_u64().unwrap(), "DT_STRING");
        let dim = fields(bytes_of(get(&fields(bytes_of(get(&t, 2)[0])), 2)[0]));
        assert_eq!(varint_of(get(&dim, 1)[0]), 1);
        let s = w["string_val"][0].as_str().unwrap();
        assert_eq!(bytes_of(get(&t, 8)[0]), s.as_bytes());
        let file = tag.strip_suffix("/text_summary").unwrap();
        assert_eq!(std::fs::read_to_string(v.join(format!("text/{file}/step_{step}.txt"))).unwrap(), s);
    }
    // log_metrics and log_hyperparams(params, metrics): scalars in both loggers, hparams merged
    let ev = read_events(&event_file(&v));
    assert_eq!(ev.scalars.get(&("custom".into(), 9)), Some(&1.5));
    assert_eq!(ev.scalars.get(&("flag".into(), 9)), Some(&1.0));
    assert_eq!(ev.scalars.get(&("hp_metric".into(), 0)), Some(&0.5), "the given hp_metric follows the -1 placeholder");
    let csv = crate::loggers::csv_values(&v.join("metrics.csv"));
    assert_eq!(csv.get(&("custom".into(), 9)), Some(&1.5));
    assert_eq!(csv.get(&("hp_metric".into(), 0)), Some(&0.5));
    let yaml = std::fs::read_to_string(v.join("hparams.yaml")).unwrap();
    assert!(yaml.contains("dropout: 0.25") && yaml.contains("nested:\n  k: 3"), "{yaml}");
}

/// A script whose on_train_end runs `call` on every logger.
fn run_call(tag: &str, call: &str, extra_trainer: &str) -> (bool, String, PathBuf) {
    let dir = temp_dir(tag);
    let src = SCRIPT
        .replace("num_sanity_val_steps: 0,", &format!("num_sanity_val_steps: 0, {extra_trainer}"))
        .replace("    for l in this.loggers {", &format!("    {call}\n    for l in [] {{"));
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let out = lt_in(&dir, &["fit", "m.rhai"]);
    (out.status.success(), stderr(&out), dir)
}

#[test]
fn bad_summaries_are_clear_errors() {
    for (call, msg) in [
        ("this.logger.log_image(\"x\", torch::zeros([2, 4, 4]), 0);", "an image has 1, 3 or 4 channels, got 2"),
        (
            "this.logger.log_image(\"x\", torch::zeros([3, 4, 4]), 0, #{ dataformats: \"CHX\" });",
            "dataformats must order",
        ),
        ("this.logger.log_image(\"x\", torch::zeros([4, 4]), 0);", "does not match dataformats \"CHW\""),
        (
            "this.logger.log_image(\"x\", torch::zeros([2, 4, 4, 4]), 0, #{ dataformats: \"NCHW\" });",
            "must have 1 or 3 channels",
        ),
        ("this.logger.log_image(\"x\", torch::zeros([3, 4, 4]), 0, #{ format: \"CHW\" });", "dataformats"),
        ("this.logger.log_histogram(\"h\", torch::tensor([1.0, 0.0]) / 0.0, 0);", "must be finite"),
        ("this.logger.log_histogram(\"h\", torch::zeros([0]), 0);", "has no element"),
        ("this.logger.log_text(\"t\", \"x\", -1);", "step must be >= 0, got -1"),
        ("this.loggers[0].log_text(\"../up\", \"x\", 0);", "cannot name a file"),
        ("this.logger.log_metrics(#{ a: torch::zeros([2]) }, 0);", "must be a scalar"),
    ] {
        let (ok, err, dir) = run_call("logger-api-bad", call, "loggers: [\"csv\"],");
        assert!(!ok && err.contains(msg), "{call}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!dir.join("up").exists() && !dir.join("lightning_logs/version_0/up").exists());
    }
}

#[test]
fn logger_is_unit_without_loggers_and_names_its_class() {
    let (ok, err, _) = run_call(
        "logger-api-none",
        "if this.logger != () || this.loggers.len() != 0 { throw \"a logger\"; }",
        "logger: false,",
    );
    assert!(ok, "{err}");
    let check = "let c = this.loggers.map(|l| l.class_name); if c != [\"CSVLogger\", \"TensorBoardLogger\"] { throw `${c}`; } if this.logger.version != 0 || this.logger.name != \"lightning_logs\" || !this.trainer.logger.log_dir.ends_with(\"version_0\") { throw \"props\"; }";
    let (ok, err, _) = run_call("logger-api-props", check, "");
    assert!(ok, "{err}");
}
