//! `profiler: "simple"` (Lightning's SimpleProfiler report, with lt's libtorch / script split),
//! `profiler: "pytorch"` (libtorch's autograd profiler as a Chrome trace) and
//! `callbacks::throughput_monitor`. No timing is asserted, only what the reports must hold.
use crate::common::{lt_in, stderr, temp_dir};
use crate::loggers::{csv_values, TINY};
use std::collections::BTreeMap;

/// The rows of the first table after `title` in a report: action → cells.
fn table(report: &str, title: &str) -> BTreeMap<String, Vec<String>> {
    let start = report.find(title).unwrap_or_else(|| panic!("no {title:?} in:\n{report}"));
    let mut rows = BTreeMap::new();
    for line in report[start..].lines().skip(1) {
        if line.trim().is_empty() && !rows.is_empty() {
            break; // the table ends with an empty line
        }
        if !line.starts_with('|') {
            continue;
        }
        let cells: Vec<String> = line.split('|').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect();
        rows.insert(cells[0].clone(), cells[1..].to_vec());
    }
    rows
}

/// TINY (with validation) plus a hook that runs only script code (no tensor op), a script
/// callback and a built-in one.
fn script() -> String {
    format!(
        "{TINY}\nfn on_train_epoch_start() {{ let x = 0; for i in 0..2000 {{ x += i; }} }}\n\
         fn callbacks() {{ [#{{ on_train_batch_end: |trainer, pl_module, out, batch, i| {{}} }}, callbacks::learning_rate_monitor()] }}\n"
    )
}

#[test]
fn simple_profiler_reports_lightnings_actions_and_the_libtorch_share() {
    let dir = temp_dir("profiler-simple");
    std::fs::write(dir.join("m.rhai"), script()).unwrap();
    let out = lt_in(&dir, &["fit", "m.rhai", "--set", "trainer.profiler=\"simple\""]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stderr(&out);
    let rows = table(&report, "FIT Profiler Report");
    assert_eq!(&rows["Action"][..4], ["Mean duration (s)", "Num calls", "Total time (s)", "Percentage %"]);
    // 3 epochs of 2 batches, each validated (2 batches)
    let calls =
        |a: &str| -> usize { rows.get(a).unwrap_or_else(|| panic!("no row {a}:\n{report}"))[1].parse().unwrap() };
    assert_eq!(calls("run_training_epoch"), 3);
    assert_eq!(calls("run_training_batch"), 6);
    assert_eq!(calls("[_TrainingEpochLoop].train_dataloader_next"), 6);
    assert_eq!(calls("[Strategy]SingleDeviceStrategy.training_step"), 6);
    assert_eq!(calls("[Strategy]SingleDeviceStrategy.backward"), 6);
    assert_eq!(calls("[Strategy]SingleDeviceStrategy.batch_to_device"), 6 + 6);
    assert_eq!(calls("[LightningModule]m.optimizer_step"), 6);
    assert_eq!(calls("[LightningModule]m.optimizer_zero_grad"), 6);
    assert_eq!(calls("[LightningModule]m.on_train_epoch_start"), 3);
    assert_eq!(calls("[Strategy]SingleDeviceStrategy.validation_step"), 6);
    assert_eq!(calls("[_EvaluationLoop].val_next"), 6);
    assert_eq!(calls("[Callback]script.on_train_batch_end"), 6);
    assert_eq!(calls("[Callback]LearningRateMonitor.on_train_batch_end"), 6);
    assert_eq!(calls("[Callback]LearningRateMonitor.on_validation_epoch_end"), 3);
    // the total row, sorted by total time, every percentage within 100
    assert_eq!(rows["Total"][0], "-");
    assert_eq!(rows["Total"][3], "100 %");
    for (a, cells) in &rows {
        if a != "Action" && a != "Total" {
            let p: f64 = cells[3].parse().unwrap();
            assert!((0.0..=100.0).contains(&p), "{a}: {p}");
        }
    }
    // lt's split: a hook that runs no tensor op spends nothing in libtorch; backward does
    let split = table(&report, "Time inside libtorch ops vs the script");
    assert_eq!(&split["Action"][..], ["Total time (s)", "libtorch (s)", "Rhai + lt (s)", "libtorch %"]);
    assert_eq!(split["[LightningModule]m.on_train_epoch_start"][1], "0.0", "{report}");
    let backward: f64 = split["[Strategy]SingleDeviceStrategy.backward"][1].parse().unwrap();
    assert!(backward > 0.0, "{report}");
}

#[test]
fn simple_profiler_writes_its_report_to_a_file() {
    let dir = temp_dir("profiler-file");
    std::fs::write(dir.join("m.rhai"), script()).unwrap();
    let set = "trainer.profiler={\"kind\": \"simple\", \"filename\": \"perf\", \"extended\": false}";
    let out = lt_in(&dir, &["fit", "m.rhai", "--set", set]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("Profiler Report"), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.join("lightning_logs/version_0/fit-perf.txt")).unwrap();
    let rows = table(&text, "FIT Profiler Report");
    assert_eq!(rows["Action"], ["Mean duration (s)", "Total time (s)"]);
    assert!(rows.contains_key("run_training_epoch"));
    for (bad, msg) in [
        ("trainer.profiler=\"advanced\"", "cProfile"),
        ("trainer.profiler=\"fast\"", "valid profilers: \"simple\", \"pytorch\""),
        ("trainer.profiler={\"kind\": \"simple\", \"dir\": \"x\"}", "valid keys"),
    ] {
        let out = lt_in(&dir, &["fit", "m.rhai", "--set", bad]);
        assert!(!out.status.success() && stderr(&out).contains(msg), "{bad}: {}", stderr(&out));
    }
}

#[test]
fn pytorch_profiler_writes_a_chrome_trace_of_its_window() {
    let dir = temp_dir("profiler-pytorch");
    std::fs::write(dir.join("m.rhai"), script()).unwrap();
    let set = "trainer.profiler={\"kind\": \"pytorch\", \"wait\": 1, \"active\": 2, \"filename\": \"trace\"}";
    let out = lt_in(&dir, &["fit", "m.rhai", "--set", set]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = dir.join("lightning_logs/version_0/fit-trace.pt.trace.json");
    let trace: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    let names: Vec<&str> = events.iter().filter_map(|e| e["name"].as_str()).collect();
    // the training steps' ops: the matmul of training_step and the optimizer's update
    assert!(names.iter().any(|n| n.starts_with("aten::mm") || n.starts_with("aten::matmul")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("aten::")), "{names:?}");
    assert!(events.iter().any(|e| e["ph"] == "X" && e["dur"].is_number()), "complete events with durations");
}

#[test]
fn throughput_monitor_logs_lightnings_metrics() {
    let dir = temp_dir("throughput");
    let src = format!("{TINY}\nfn callbacks() {{ [callbacks::throughput_monitor(#{{ window_size: 2 }})] }}\n");
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let out = lt_in(&dir, &["fit", "m.rhai"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = csv_values(&dir.join("lightning_logs/version_0/metrics.csv"));
    let series =
        |k: &str| -> Vec<(i64, f64)> { csv.iter().filter(|((n, _), _)| n == k).map(|((_, s), v)| (*s, *v)).collect() };
    // 4 samples a batch, logged every batch (log_every_n_steps 1) at the batch's step
    assert_eq!(series("train/samples"), (0..6).map(|s| (s, 4.0 * (s + 1) as f64)).collect::<Vec<_>>());
    assert_eq!(series("train/batches"), (0..6).map(|s| (s, (s + 1) as f64)).collect::<Vec<_>>());
    // rates once the window (2) is full: from the second batch on
    let rates = series("train/device/samples_per_sec");
    assert_eq!(rates.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert!(rates.iter().all(|(_, v)| *v > 0.0));
    let batches = series("train/device/batches_per_sec");
    for ((_, s), (_, b)) in rates.iter().zip(&batches) {
        assert!((s / b - 4.0).abs() < 1e-6, "samples/s = 4 × batches/s");
    }
    assert!(series("train/samples_per_sec").is_empty(), "the global rates only under DDP");
    // validation: its own counters, reset each run, at the fit's count of validation batches
    assert_eq!(series("validate/batches"), [(1, 1.0), (2, 2.0), (3, 1.0), (4, 2.0), (5, 1.0), (6, 2.0)]);
    let src = format!("{TINY}\nfn callbacks() {{ [callbacks::throughput_monitor(#{{ batch_size_fn: |b| 4 }})] }}\n");
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let out = lt_in(&dir, &["fit", "m.rhai"]);
    assert!(!out.status.success() && stderr(&out).contains("`batch_size_fn` is not supported"), "{}", stderr(&out));
}

#[test]
fn profiler_options_and_file_names_are_lightnings() {
    use lt::trainer::profiler::{prepare_filename, ProfilerConfig, ProfilerKind};
    assert_eq!(prepare_filename(Some("fit"), Some("perf"), None, ".txt"), "fit-perf.txt");
    assert_eq!(prepare_filename(Some("fit"), Some("a/b::c"), Some(1), ".txt"), "fit-a_b_c-1.txt");
    assert_eq!(prepare_filename(None, None, None, ".txt"), "profile.txt");
    let p = |s: &str| ProfilerConfig::parse(&serde_json::from_str(s).unwrap());
    assert_eq!(p(r#""simple""#).unwrap().unwrap().kind, ProfilerKind::Simple);
    assert!(p("null").unwrap().is_none());
    assert!(p(r#"{"kind": "simple", "wait": 1}"#).unwrap_err().contains("not an option"));
    assert!(p(r#"{"kind": "pytorch", "active": 0}"#).unwrap_err().contains("'active' must be >= 1"));
    let c = p(r#"{"kind": "pytorch", "wait": 0, "active": 2, "filename": "t"}"#).unwrap().unwrap();
    assert_eq!((c.wait, c.active, c.filename.as_deref()), (0, 2, Some("t")));
}

#[test]
fn histogram_buckets_and_media_paths() {
    use lt::trainer::media::{default_bins, file_path, Histogram};
    use std::path::Path;
    let b = default_bins();
    assert_eq!(b[b.len() / 2], 0.0);
    assert_eq!(b[b.len() / 2 + 1], 1e-12);
    assert_eq!(b[0], -b[b.len() - 1]);
    assert!(b.windows(2).all(|w| w[0] < w[1]));
    let h = Histogram::of(&[1.0]).unwrap();
    assert_eq!(h.bucket, vec![0.0, 1.0]);
    assert!(h.bucket_limit[0] <= 1.0 && 1.0 < h.bucket_limit[1]);
    assert!(Histogram::of(&[1e21]).unwrap_err().contains("beyond"));
    let d = Path::new("/v");
    assert_eq!(file_path(d, "images", "gan/samples", 3, "png").unwrap(), Path::new("/v/images/gan/samples/step_3.png"));
    assert_eq!(file_path(d, "text", "a b", 0, "txt").unwrap(), Path::new("/v/text/a_b/step_0.txt"));
    assert!(file_path(d, "text", "a//b", 0, "txt").is_err() && file_path(d, "text", "..", 0, "txt").is_err());
}
