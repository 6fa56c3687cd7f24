//! The example scripts in `scripts/`: each one fits for 2 batches (`fast_dev_run`), and a few run
//! long enough to check the trend their header comment states. Every run uses a fresh temp dir as
//! its working directory, so logs and weights never land in the repository; repository files are
//! passed as absolute paths through `--set model.…`.
use crate::common::{lt_in, root, stderr, stdout, temp_dir};
use std::path::Path;

fn script(name: &str) -> String {
    root().join("scripts").join(name).to_string_lossy().to_string()
}

fn text_arg() -> String {
    format!("model.text={}", root().join("scripts/data/tiny.txt").display())
}

/// Runs `lt` in a fresh temp dir and asserts success; returns the dir and the output.
fn run_ok(tag: &str, args: &[&str]) -> (std::path::PathBuf, std::process::Output) {
    let dir = temp_dir(tag);
    let out = lt_in(&dir, args);
    assert!(out.status.success(), "lt {args:?} failed\nstdout:\n{}\nstderr:\n{}", stdout(&out), stderr(&out));
    (dir, out)
}

/// The non-empty values of `column` in `lightning_logs/version_0/metrics.csv`, in row order.
fn metric(dir: &Path, column: &str) -> Vec<f64> {
    let path = dir.join("lightning_logs/version_0/metrics.csv");
    let csv = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = header.iter().position(|h| *h == column).unwrap_or_else(|| panic!("no column {column} in {header:?}"));
    lines
        .filter_map(|l| l.split(',').nth(col).filter(|v| !v.is_empty()).map(|v| v.parse::<f64>().expect("number")))
        .collect()
}

#[test]
fn every_example_runs_with_fast_dev_run() {
    let text = text_arg();
    let cases: &[(&str, &[&str])] = &[
        ("cnn.rhai", &[]),
        ("gan.rhai", &[]),
        ("char_lstm.rhai", &["--set", &text, "--set", "model.sample_len=20"]),
        ("transformer_lm.rhai", &["--set", &text, "--set", "model.sample_len=20"]),
        ("gpt.rhai", &["--set", &text, "--set", "model.sample_len=20"]),
        ("autoencoder.rhai", &[]),
        ("regression.rhai", &[]),
        ("finetune.rhai", &["--set", "model.pretrain_steps=20"]),
        ("finetune_resnet.rhai", &["--set", "model.num_classes=4"]),
        ("mnist.rhai", &[]),
    ];
    for (name, extra) in cases {
        let path = script(name);
        let mut args = vec!["fit", path.as_str(), "--set", "trainer.fast_dev_run=2"];
        args.extend_from_slice(extra);
        let (dir, out) = run_ok(name, &args);
        if name.contains("lstm") || name.contains("transformer") || name.contains("gpt") {
            assert!(stdout(&out).contains("---- sample ----\nThe "), "{name} printed no sample:\n{}", stdout(&out));
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn regression_example_plateau_scheduler_and_early_stopping() {
    let (dir, _) = run_ok("regression-full", &["fit", &script("regression.rhai")]);
    let val = metric(&dir, "val_loss");
    let lr = metric(&dir, "lr-Adam");
    // stated: val_loss 0.53 after the first epoch, ≈ 0.0105 at the end (noise floor 0.01)
    assert!(val[0] > 0.2 && *val.last().unwrap() < 0.02, "val_loss {val:?}");
    // ReduceLROnPlateau cut the learning rate, and EarlyStopping ended the fit well before 200 epochs
    assert!(lr.last().unwrap() < &0.005, "lr {lr:?}");
    assert!(val.len() < 150, "no early stop: {} validations", val.len());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn finetune_example_pretrains_once_then_trains_only_the_head() {
    let dir = temp_dir("finetune-full");
    let out = lt_in(&dir, &["run", &script("finetune.rhai")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let so = stdout(&out);
    assert!(so.contains("pretraining a backbone"), "{so}");
    assert!(dir.join("finetune_backbone.safetensors").exists());
    // the model summary (on stderr, as Lightning logs it)
    let se = stderr(&out);
    assert!(se.contains("195       Trainable params") && se.contains("5.5 K     Non-trainable params"), "{se}");
    assert!(so.contains(r#"missing ["classifier.weight", "classifier.bias"]"#), "{so}");
    let acc = metric(&dir, "test_acc");
    assert!(acc[0] > 0.95, "test_acc {acc:?}");
    // second run: the weights file exists, so no pretraining
    let out = lt_in(&dir, &["fit", &script("finetune.rhai"), "--set", "trainer.fast_dev_run=2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("pretraining"), "{}", stdout(&out));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn char_lstm_example_loss_falls() {
    let text = text_arg();
    let (dir, _) = run_ok(
        "char-lstm-short",
        &[
            "fit",
            &script("char_lstm.rhai"),
            "--set",
            &text,
            "--set",
            "trainer.max_epochs=6",
            "--set",
            "model.sample_len=10",
        ],
    );
    let val = metric(&dir, "val_loss");
    // stated: 3.17 after epoch 0 on the way to ≈ 1.65 after 40 epochs; ln(59) = 4.08 is chance
    assert!(val[0] < 4.0, "val_loss {val:?}");
    assert!(*val.last().unwrap() < val[0] - 0.3, "val_loss did not fall: {val:?}");
    let _ = std::fs::remove_dir_all(dir);
}
