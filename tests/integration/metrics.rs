//! Metrics against torchmetrics 1.9 (tests/fixtures/metrics/gen_metrics.py): every case runs the
//! metric object (`forward` per batch, `compute` over the batches) and the functional form through
//! the script surface; options are checked; a logged metric object behaves as Lightning's
//! (step value from forward, epoch value from compute, reset at epoch end); DDP syncs states.
use crate::common::{eval, lt, lt_in, root, run_script, stderr, stdout, temp_dir};
use lt::tensor::Tensor;
use rhai::{Array, Dynamic, Map, Scope};
use serde_json::Value;

fn tensor(v: &Value) -> tch::Tensor {
    let shape: Vec<i64> = v["shape"].as_array().unwrap().iter().map(|s| s.as_i64().unwrap()).collect();
    let data = v["data"].as_array().unwrap();
    let t = match v["dtype"].as_str().unwrap() {
        "int64" => tch::Tensor::from_slice(&data.iter().map(|d| d.as_i64().unwrap()).collect::<Vec<_>>()),
        "bool" => tch::Tensor::from_slice(&data.iter().map(|d| d.as_bool().unwrap()).collect::<Vec<_>>()),
        // NaN is written as NaN by Python's json
        _ => tch::Tensor::from_slice(&data.iter().map(|d| d.as_f64().unwrap_or(f64::NAN) as f32).collect::<Vec<_>>()),
    };
    t.reshape(shape.as_slice())
}

fn opts_map(v: &Value) -> Map {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, x)| {
            let d = match x {
                Value::String(s) => Dynamic::from(s.clone()),
                Value::Bool(b) => Dynamic::from_bool(*b),
                Value::Number(n) if n.is_i64() => Dynamic::from_int(n.as_i64().unwrap()),
                Value::Number(n) => Dynamic::from_float(n.as_f64().unwrap()),
                other => panic!("option {k}: {other}"),
            };
            (k.as_str().into(), d)
        })
        .collect()
}

/// |got − want| ≤ 1e-5 · (1 + |want|), NaN where torchmetrics has NaN. Why 1e-5: lt reduces counts
/// and sums in float64 where torchmetrics uses float32; classification values are ratios of
/// integer counts (exact up to float32 rounding, 6e-8), curve areas sums over ≤ 22 points and
/// regression sums over ≤ 21 float32 values, each within a few 1e-7 of the float32 result; a
/// wrong formula, average or tie rule is off by far more (≥ 1e-2 on these inputs).
fn close(got: &tch::Tensor, want: &tch::Tensor) -> Result<(), String> {
    if got.size() != want.size() {
        return Err(format!("shape {:?}, torchmetrics {:?}", got.size(), want.size()));
    }
    let g = Vec::<f64>::try_from(got.to_kind(tch::Kind::Double).flatten(0, -1)).unwrap();
    let w = Vec::<f64>::try_from(want.to_kind(tch::Kind::Double).flatten(0, -1)).unwrap();
    for (a, b) in g.iter().zip(&w) {
        let ok = (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-5 * (1.0 + b.abs());
        if !ok {
            return Err(format!("got {g:?}, torchmetrics {w:?}"));
        }
    }
    Ok(())
}

#[test]
fn every_metric_matches_torchmetrics() {
    let _rng = crate::common::rng_guard();
    let p = root().join("tests/fixtures/metrics/metrics.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() > 150, "{} cases", cases.len());
    let mut failures = vec![];
    for (i, c) in cases.iter().enumerate() {
        let name = c["name"].as_str().unwrap();
        let batches: Array = c["batches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let pair: Array = b.as_array().unwrap().iter().map(|t| Dynamic::from(Tensor::new(tensor(t)))).collect();
                Dynamic::from_array(pair)
            })
            .collect();
        let functional = if name == "mean" {
            "[]".to_string()
        } else {
            format!("batches.map(|b| metrics::{name}(b[0], b[1], opts))")
        };
        let src = format!(
            "let m = metrics::{name}(opts);\nlet fw = batches.map(|b| m.forward(b[0], b[1]));\n[fw, m.compute(), {functional}]"
        );
        let script = lt::script::runner::Script::from_source(std::path::Path::new("case.rhai"), src).unwrap();
        let mut scope = Scope::new();
        scope.push("opts", opts_map(&c["opts"]));
        scope.push("batches", batches);
        let what = format!("case {i} {name} {} ({})", c["opts"], c["note"].as_str().unwrap());
        let out = match script.run(&mut scope) {
            Ok(o) => o.cast::<Array>(),
            Err(e) => {
                failures.push(format!("{what}: {e}"));
                continue;
            }
        };
        let t = |d: &Dynamic| d.clone().cast::<Tensor>().0.shallow_clone();
        let fw = out[0].clone().cast::<Array>();
        let fun = out[2].clone().cast::<Array>();
        let want_fw = c["forward"].as_array().unwrap();
        for (k, w) in want_fw.iter().enumerate() {
            if let Err(e) = close(&t(&fw[k]), &tensor(w)) {
                failures.push(format!("{what}: forward of batch {k}: {e}"));
            }
            if let Some(f) = fun.get(k) {
                if let Err(e) = close(&t(f), &tensor(w)) {
                    failures.push(format!("{what}: functional on batch {k}: {e}"));
                }
            }
        }
        if let Err(e) = close(&t(&out[1]), &tensor(&c["compute"])) {
            failures.push(format!("{what}: compute: {e}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn wrong_options_are_errors_naming_the_key_and_the_choices() {
    let e = |src: &str| eval(src).map(|_| ()).unwrap_err();
    let msg = e("metrics::accuracy(#{num_classes: 3})");
    assert!(msg.contains("'task' is required") && msg.contains("\"multiclass\""), "{msg}");
    let msg = e("metrics::accuracy(#{task: \"multiclass\"})");
    assert!(msg.contains("'num_classes' is required"), "{msg}");
    let msg = e("metrics::accuracy(#{task: \"multiclass\", num_classes: 3, average: \"mean\"})");
    assert!(msg.contains("'average' must be one of \"micro\", \"macro\", \"weighted\", \"none\""), "{msg}");
    let msg = e("metrics::precision(#{task: \"binary\", topk: 2})");
    assert!(msg.contains("unknown option 'topk'") && msg.contains("top_k"), "{msg}");
    let msg = e("metrics::recall(#{task: \"binary\", num_classes: 2})");
    assert!(msg.contains("'num_classes' applies to task \"multiclass\""), "{msg}");
    let msg = e("metrics::cohen_kappa(#{task: \"multilabel\", num_labels: 2})");
    assert!(msg.contains("'task' must be one of \"binary\", \"multiclass\""), "{msg}");
    let msg = e("metrics::auroc(#{task: \"binary\", thresholds: 10})");
    assert!(msg.contains("thresholds"), "{msg}");
    let msg = e("metrics::auroc(#{task: \"multiclass\", num_classes: 3, average: \"micro\"})");
    assert!(msg.contains("\"macro\", \"weighted\", \"none\""), "{msg}");
    let msg = e("metrics::accuracy(#{task: \"multiclass\", num_classes: 3, top_k: 4})");
    assert!(msg.contains("top_k"), "{msg}");
    let msg = e("metrics::r2_score(#{multioutput: \"mean\"})");
    assert!(msg.contains("raw_values"), "{msg}");
    let msg = e("metrics::mean(#{nan_strategy: \"drop\"})");
    assert!(msg.contains("\"error\", \"warn\", \"ignore\", \"disable\""), "{msg}");
    // inputs
    let msg =
        e("metrics::accuracy(torch::tensor([0, 3]), torch::tensor([0, 1]), #{task: \"multiclass\", num_classes: 3})");
    assert!(msg.contains("integer preds must hold values in [0, 2]"), "{msg}");
    let msg = e(
        "metrics::accuracy(torch::tensor([[0.1, 0.9]]), torch::tensor([0]), #{task: \"multiclass\", num_classes: 3})",
    );
    assert!(msg.contains("[N, 3, ...]"), "{msg}");
    let msg = e("let m = metrics::accuracy(#{task: \"binary\"}); m.update(torch::tensor([1]))");
    assert!(msg.contains("takes (preds, target)"), "{msg}");
}

#[test]
fn metric_objects_accumulate_compute_and_reset() {
    let src = r#"
        let m = metrics::accuracy(#{task: "multiclass", num_classes: 3});
        let a = m.forward(torch::tensor([0, 1, 2, 2]), torch::tensor([0, 1, 1, 1]));
        m.update(torch::tensor([1, 1]), torch::tensor([1, 1]));
        let all = m.compute();
        let copy = m;
        copy.reset();
        m.update(torch::tensor([0]), torch::tensor([1]));
        [a.item(), all.item(), m.compute().item(), `${m}`]
    "#;
    let out = eval(src).unwrap().cast::<Array>();
    assert_eq!(out[0].as_float().unwrap(), 0.5);
    assert!((out[1].as_float().unwrap() - 4.0 / 6.0).abs() < 1e-6);
    // a metric is shared by reference: resetting the copy reset the original
    assert_eq!(out[2].as_float().unwrap(), 0.0);
    assert_eq!(out[3].clone().into_string().unwrap(), "MulticlassAccuracy(num_classes=3, average=micro)");
}

#[test]
fn logged_metric_objects_step_with_forward_and_epoch_with_compute() {
    // 12 samples, batch 4: the train metric logs each batch's forward value on step and the
    // accumulated value at epoch end; the val metric (update only) logs only at epoch end, and
    // is reset between epochs (its value is the epoch's, not an accumulation over both epochs)
    let src = r#"
fn trainer() { #{ max_epochs: 2, seed: 0, enable_progress_bar: false, enable_model_summary: false, enable_checkpointing: false, log_every_n_steps: 1, num_sanity_val_steps: 2 } }
fn init(h) {
    this.net = nn::linear(2, 2);
    this.train_acc = metrics::accuracy(#{ task: "multiclass", num_classes: 2 });
    this.val_acc = metrics::accuracy(#{ task: "multiclass", num_classes: 2 });
    this.seen = 0;
}
fn forward(x) { this.net.forward(x) }
fn train_dataloader() { data::loader(data::blobs(#{ n: 12, centers: 2, seed: 3 }), #{ batch_size: 4 }) }
fn val_dataloader() { data::loader(data::blobs(#{ n: 12, centers: 2, seed: 4 }), #{ batch_size: 4 }) }
fn training_step(batch, i) {
    let logits = this.forward(batch[0]);
    // the module's own one-argument forward does not shadow the metric's forward(preds, target)
    let a = this.train_acc.forward(logits, batch[1]);
    this.log("train_acc", this.train_acc, #{ on_step: true, on_epoch: true });
    print(`step ${a.item()}`);
    F::cross_entropy(logits, batch[1])
}
fn validation_step(batch, i) {
    let logits = this.net.forward(batch[0]);
    this.val_acc.update(logits, batch[1]);
    this.log("val_acc", this.val_acc);
    this.seen += 1;
}
fn on_validation_epoch_end() {
    print(`val ${this.val_acc.compute().item()} after ${this.seen}`);
    this.seen = 0;
}
fn on_train_epoch_end() { print(`train_epoch ${this.train_acc.compute().item()}`); }
fn configure_optimizers() { optim::sgd(this.parameters(), #{ lr: 0.5 }) }
"#;
    let dir = temp_dir("logged");
    std::fs::write(dir.join("logged.rhai"), src).unwrap();
    let out = lt_in(&dir, &["run", "logged.rhai"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let nums = |prefix: &str| -> Vec<f64> {
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
            .collect()
    };
    let steps = nums("step ");
    let epochs = nums("train_epoch ");
    assert_eq!(steps.len(), 6, "{text}");
    // the epoch value is the accumulated accuracy: with equal batches, the mean of the batch values
    for (e, chunk) in steps.chunks(3).enumerate() {
        let mean = chunk.iter().sum::<f64>() / 3.0;
        assert!((epochs[e] - mean).abs() < 1e-6, "epoch {e}: {} vs {mean}\n{text}", epochs[e]);
    }
    // metrics.csv: train_acc_step per step equals forward's value, train_acc_epoch the compute
    let csv = std::fs::read_to_string(dir.join("lightning_logs/version_0/metrics.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no {name} in {header:?}"));
    let (cs, ce, cv) = (col("train_acc_step"), col("train_acc_epoch"), col("val_acc"));
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    let logged =
        |c: usize| -> Vec<f64> { rows.iter().filter(|r| !r[c].is_empty()).map(|r| r[c].parse().unwrap()).collect() };
    let close = |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
    assert!(close(&logged(cs), &steps), "{csv}");
    assert!(close(&logged(ce), &epochs), "{csv}");
    // val: the sanity check's 2 batches did not leak into epoch 0's value (reset after it)
    let vals: Vec<&str> = text.lines().filter(|l| l.starts_with("val ")).collect();
    assert_eq!(vals.len(), 3, "{text}");
    assert!(vals[0].ends_with("after 2") && vals[1].ends_with("after 3"), "{text}");
    let val_logged = logged(cv);
    let val_printed: Vec<f64> =
        vals[1..].iter().map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap()).collect();
    assert!(close(&val_logged, &val_printed), "{csv}\n{text}");
}

#[test]
fn logging_a_vector_metric_is_an_error() {
    let src = r#"
fn trainer() { #{ max_epochs: 1, enable_progress_bar: false, enable_model_summary: false, logger: false, enable_checkpointing: false } }
fn init(h) { this.net = nn::linear(2, 2); this.cm = metrics::confusion_matrix(#{ task: "multiclass", num_classes: 2 }); }
fn train_dataloader() { data::loader(data::blobs(#{ n: 8, centers: 2, seed: 3 }), #{ batch_size: 4 }) }
fn training_step(batch, i) {
    let logits = this.net.forward(batch[0]);
    this.cm.update(logits, batch[1]);
    this.log("cm", this.cm);
    F::cross_entropy(logits, batch[1])
}
fn configure_optimizers() { optim::sgd(this.parameters(), #{ lr: 0.5 }) }
"#;
    let out = run_script("vector.rhai", src);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("only a metric with a scalar result can be logged"), "{}", stderr(&out));
}

#[test]
fn ddp_ranks_sync_metric_states_at_compute() {
    let ddp = lt(&["fit", "tests/scripts/ddp_metrics.rhai", "--devices", "2", "--strategy", "ddp"]);
    assert!(ddp.status.success(), "{}", stderr(&ddp));
    let single = lt(&["fit", "tests/scripts/ddp_metrics.rhai", "--set", "model.bs=16"]);
    assert!(single.status.success(), "{}", stderr(&single));
    let parse = |text: &str, rank: usize| -> Vec<f64> {
        let l =
            text.lines().find(|l| l.starts_with(&format!("rank {rank} metrics "))).unwrap_or_else(|| panic!("{text}"));
        l.split_whitespace().skip(3).map(|x| x.parse().unwrap()).collect()
    };
    let (d, s) = (stdout(&ddp), stdout(&single));
    let one = parse(&s, 0);
    assert_eq!(one.len(), 4);
    for rank in 0..2 {
        let got = parse(&d, rank);
        for (g, w) in got.iter().zip(&one) {
            assert!((g - w).abs() <= 1e-5, "rank {rank}: {got:?} vs one process {one:?}");
        }
    }
}
