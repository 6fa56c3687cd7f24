//! The Trainer driving Rhai module scripts through the real `lt` binary.
use crate::common::{lt, lt_in, stderr, stdout, temp_dir};

fn lines(out: &std::process::Output) -> Vec<String> {
    stdout(out).lines().map(|l| l.to_string()).collect()
}

#[test]
fn fit_hook_order_matches_lightning() {
    let out = lt(&["fit", "tests/scripts/trace.rhai"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = [
        "init", "prepare_data", "setup(fit)", "configure_optimizers", "on_fit_start",
        "val_dataloader", "on_sanity_check_start", "on_validation_start", "on_validation_epoch_start",
        "on_validation_batch_start(0)", "validation_step(0)", "on_validation_batch_end(0)",
        "on_validation_epoch_end", "on_validation_end", "on_sanity_check_end",
        "train_dataloader", "on_train_start", "on_train_epoch_start",
        // accumulate_grad_batches = 2: zero_grad on the first batch of the window, step on the last
        "on_train_batch_start(0)", "training_step(0)", "on_before_zero_grad", "on_before_backward", "on_after_backward",
        "on_train_batch_end(0)",
        "on_train_batch_start(1)", "training_step(1)", "on_before_backward", "on_after_backward",
        "on_before_optimizer_step", "on_train_batch_end(1)",
        // validation runs at the end of the epoch, before on_train_epoch_end
        "on_validation_start", "on_validation_epoch_start",
        "on_validation_batch_start(0)", "validation_step(0)", "on_validation_batch_end(0)",
        "on_validation_epoch_end", "on_validation_end",
        "on_train_epoch_end", "on_train_end", "on_fit_end", "teardown(fit)",
    ];
    assert_eq!(lines(&out), expected);
}

#[test]
fn validate_test_predict_hook_order() {
    let v = lt(&["validate", "tests/scripts/trace.rhai"]);
    assert!(v.status.success(), "{}", stderr(&v));
    let got = lines(&v);
    let want = [
        "init", "prepare_data", "setup(validate)", "val_dataloader", "on_validation_start", "on_validation_epoch_start",
        "on_validation_batch_start(0)", "validation_step(0)", "on_validation_batch_end(0)",
        "on_validation_epoch_end", "on_validation_end", "teardown(validate)",
    ];
    assert_eq!(&got[..want.len()], want);
    assert!(stdout(&v).contains("Validate metric") && stdout(&v).contains("val_loss"), "{}", stdout(&v));

    let t = lt(&["test", "tests/scripts/trace.rhai", "--set", "trainer.limit_test_batches=2"]);
    assert!(t.status.success(), "{}", stderr(&t));
    let got = lines(&t);
    let want = [
        "init", "prepare_data", "setup(test)", "test_dataloader", "on_test_start", "on_test_epoch_start",
        "on_test_batch_start(0)", "test_step(0)", "on_test_batch_end(0)",
        "on_test_batch_start(1)", "test_step(1)", "on_test_batch_end(1)",
        "on_test_epoch_end", "on_test_end", "teardown(test)",
    ];
    assert_eq!(&got[..want.len()], want);
    assert!(stdout(&t).contains("Test metric") && stdout(&t).contains("test_loss"));

    let p = lt(&["predict", "tests/scripts/trace.rhai", "--set", "trainer.limit_predict_batches=1"]);
    assert!(p.status.success(), "{}", stderr(&p));
    let got = lines(&p);
    let want = [
        "init", "prepare_data", "setup(predict)", "predict_dataloader", "on_predict_start", "on_predict_epoch_start",
        "on_predict_batch_start(0)", "predict_step(0)", "on_predict_batch_end(0)",
        "on_predict_epoch_end", "on_predict_end", "teardown(predict)",
    ];
    assert_eq!(&got[..want.len()], want);
}

#[test]
fn script_errors_in_hooks_name_the_hook_and_location() {
    let dir = temp_dir("hook_err");
    std::fs::write(
        dir.join("bad.rhai"),
        "fn trainer() { #{max_epochs: 1, enable_progress_bar: false, logger: false, enable_checkpointing: false} }\nfn init(h) { this.w = torch::zeros([3, 1], #{requires_grad: true}); }\nfn configure_optimizers() { optim::sgd([this.w], #{lr: 0.1}) }\nfn train_dataloader() { [[torch::ones([2, 2])]] }\nfn training_step(batch, i) {\n    batch[0].matmul(this.w).sum()\n}\n",
    )
    .unwrap();
    let out = lt_in(&dir, &["fit", "bad.rhai"]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("mat1 and mat2 shapes cannot be multiplied"), "{e}");
    assert!(e.contains("--> bad.rhai:6:14"), "{e}");
    assert!(e.contains("in hook training_step"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn cli_set_overrides_script_trainer_and_hparams() {
    let dir = temp_dir("sets");
    std::fs::write(
        dir.join("m.rhai"),
        "fn hparams() { #{lr: 0.5, tag: \"a\"} }\nfn trainer() { #{max_epochs: 5, enable_progress_bar: false, logger: false, enable_checkpointing: false} }\nfn init(h) { this.save_hyperparameters(); this.w = torch::zeros([1], #{requires_grad: true}); }\nfn configure_optimizers() { optim::sgd([this.w], #{lr: this.hparams.lr}) }\nfn train_dataloader() { [[torch::ones([1])]] }\nfn training_step(b, i) { (this.w - 1.0).square().sum() }\nfn on_train_end() { print(`epochs=${this.current_epoch} lr=${this.hparams.lr} tag=${this.hparams.tag} steps=${this.global_step}`); }\n",
    )
    .unwrap();
    let out = lt_in(&dir, &["fit", "m.rhai", "--set", "trainer.max_epochs=2", "--set", "model.lr=0.25", "--set", "model.tag=b"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("epochs=2 lr=0.25 tag=b steps=2"), "{}", stdout(&out));
    let bad = lt_in(&dir, &["fit", "m.rhai", "--set", "trainer.max_epoch=2"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("unknown trainer option 'max_epoch'"), "{}", stderr(&bad));
}

fn precision_probe(precision: &str) -> String {
    let dir = temp_dir("precision");
    std::fs::write(
        dir.join("p.rhai"),
        "fn trainer() { #{max_steps: 1, enable_progress_bar: false, enable_model_summary: false, logger: false, enable_checkpointing: false} }\nfn init(h) { this.net = nn::linear(4, 2); }\nfn configure_optimizers() { optim::sgd(this.parameters(), #{lr: 0.1}) }\nfn train_dataloader() { [[torch::ones([3, 4])]] }\nfn training_step(b, i) { let y = this.net.forward(b[0]); print(`out ${y.dtype} param ${this.net.weight.dtype} input ${b[0].dtype} grad_enabled ${torch::is_grad_enabled()}`); y.float().sum() }\n",
    )
    .unwrap();
    let out = lt_in(&dir, &["fit", "p.rhai", "--set", &format!("trainer.precision={precision}")]);
    assert!(out.status.success(), "{precision}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn precision_modes_autocast_or_cast_like_lightning() {
    assert!(precision_probe("32-true").contains("out float32 param float32 input float32"));
    assert!(precision_probe("bf16-mixed").contains("out bfloat16 param float32 input float32"));
    assert!(precision_probe("16-mixed").contains("out float16 param float32 input float32"));
    assert!(precision_probe("64-true").contains("out float64 param float64 input float64"));
    assert!(precision_probe("bf16-true").contains("out bfloat16 param bfloat16 input bfloat16"));
    let dir = temp_dir("badprec");
    std::fs::write(dir.join("p.rhai"), "fn training_step(b, i) { }\n").unwrap();
    let out = lt_in(&dir, &["fit", "p.rhai", "--set", "trainer.precision=8-mixed"]);
    assert!(stderr(&out).contains("unknown precision '8-mixed'"), "{}", stderr(&out));
}
