//! Built-in callbacks and the CSV logger, driven through `lt fit`.
use crate::common::{lt_in, stderr, stdout, temp_dir};

/// A model whose validation loss goes 0.5, 0.4, 0.45, 0.3, … by epoch (a table lookup), so
/// top-k, best-model and early-stopping decisions are known in advance.
const MODEL: &str = r#"
fn hparams() { #{ losses: [0.5, 0.4, 0.45, 0.3, 0.35, 0.36, 0.37, 0.38] } }
fn init(h) { this.save_hyperparameters(); this.w = torch::zeros([1], #{requires_grad: true}); }
fn train_dataloader() { [[torch::ones([2])], [torch::ones([2])]] }
fn val_dataloader() { [[torch::ones([2])]] }
fn training_step(b, i) { let l = (this.w * b[0]).sum(); this.log("train_loss", l); l }
fn validation_step(b, i) { this.log("val_loss", this.hparams.losses[this.current_epoch]); }
fn configure_optimizers() { optim::sgd([this.w], #{lr: 0.1}) }
"#;

fn run(tag: &str, trainer: &str, callbacks: &str, extra: &[&str]) -> (std::path::PathBuf, std::process::Output) {
    let dir = temp_dir(tag);
    let src = format!(
        "fn trainer() {{ #{{ enable_progress_bar: false, enable_model_summary: false, num_sanity_val_steps: 0, {trainer} }} }}\nfn callbacks() {{ [{callbacks}] }}\n{MODEL}"
    );
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let mut args = vec!["fit", "m.rhai"];
    args.extend_from_slice(extra);
    let out = lt_in(&dir, &args);
    (dir, out)
}

fn ckpts(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn model_checkpoint_top_k_templates_and_last() {
    let (dir, out) = run(
        "topk",
        "max_epochs: 5",
        r#"callbacks::model_checkpoint(#{dirpath: "ck", monitor: "val_loss", save_top_k: 2, save_last: true, filename: "{epoch}-{val_loss:.2f}"})"#,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // losses by epoch: 0.5 0.4 0.45 0.3 0.35 → best two: epoch 3 (0.30) and epoch 4 (0.35)
    assert_eq!(ckpts(&dir.join("ck")), ["epoch=3-val_loss=0.30.ckpt", "epoch=4-val_loss=0.35.ckpt", "last.ckpt"]);
    // --ckpt best resolves to epoch 3 through the recorded best_model_path
    let show = lt_in(&dir, &["ckpt", "show", "ck/last.ckpt"]);
    assert!(stdout(&show).contains("epoch=3-val_loss=0.30.ckpt"), "{}", stdout(&show));
}

#[test]
fn default_checkpoint_keeps_the_latest_in_the_version_folder() {
    let (dir, out) = run("default_ck", "max_epochs: 3", "", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ckpts(&dir.join("lightning_logs/version_0/checkpoints")), ["epoch=2-step=6.ckpt"]);
}

#[test]
fn version_counter_on_name_clash() {
    let (dir, out) = run(
        "clash",
        "max_epochs: 2",
        r#"callbacks::model_checkpoint(#{dirpath: "ck", filename: "model", save_top_k: -1})"#,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ckpts(&dir.join("ck")), ["model-v1.ckpt", "model.ckpt"]);
}

#[test]
fn early_stopping_stops_with_its_reason() {
    let (_, out) = run(
        "es",
        "max_epochs: 8",
        r#"callbacks::early_stopping(#{monitor: "val_loss", patience: 2, verbose: true})"#,
        &["--set", "trainer.enable_progress_bar=true"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    // best 0.3 at epoch 3; 0.35 and 0.36 do not improve → stop after epoch 5. With `verbose` the
    // improvements and the reason are printed (with or without a progress bar), as Lightning does.
    // (on stderr, as Lightning's rank_zero_info)
    let e = stderr(&out);
    assert!(e.contains("Metric val_loss improved by 0.100 >= min_delta = 0.0. New best score: 0.400"), "{e}");
    assert!(e.contains("Monitored metric val_loss did not improve in the last 2 records. Best score: 0.300. Signaling Trainer to stop."), "{e}");
    assert!(s.contains("Epoch 5") && !s.contains("Epoch 6"), "{s}");
    // without `verbose` (the default) it stops just as early and prints nothing of it
    let (_, out) =
        run("es_quiet", "max_epochs: 8", r#"callbacks::early_stopping(#{monitor: "val_loss", patience: 2})"#, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("Monitored metric"), "{}", stderr(&out));
    let (_, out) = run("es_missing", "max_epochs: 2", r#"callbacks::early_stopping(#{monitor: "nope"})"#, &[]);
    assert!(
        stderr(&out).contains("Early stopping conditioned on metric `nope` which is not available"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn csv_logger_writes_lightnings_rows_and_hparams() {
    let (dir, out) = run("csv", "max_epochs: 2, log_every_n_steps: 1", r#"callbacks::learning_rate_monitor()"#, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = dir.join("lightning_logs/version_0");
    let csv = std::fs::read_to_string(v.join("metrics.csv")).unwrap();
    // one row per log call, as Lightning's CSVLogger: the LR monitor's (no epoch; an optimizer
    // without a scheduler at each epoch's start and each batch's), each step's training row, the
    // validation row; float32 values in Python's repr
    let want = "epoch,lr-SGD,step,train_loss,val_loss\n\
                ,0.1,0,,\n\
                ,0.1,0,,\n\
                0,,0,0.0,\n\
                ,0.1,1,,\n\
                0,,1,-0.4000000059604645,\n\
                0,,1,,0.5\n\
                ,0.1,2,,\n\
                ,0.1,2,,\n\
                1,,2,-0.800000011920929,\n\
                ,0.1,3,,\n\
                1,,3,-1.2000000476837158,\n\
                1,,3,,0.4000000059604645\n";
    assert_eq!(csv, want);
    let hp = std::fs::read_to_string(v.join("hparams.yaml")).unwrap();
    assert!(hp.contains("losses:\n- 0.5\n- 0.4"), "{hp}");
    // a second run gets version_1
    let out = lt_in(&dir, &["fit", "m.rhai"]);
    assert!(out.status.success());
    assert!(dir.join("lightning_logs/version_1/metrics.csv").exists());
}

#[test]
fn quiet_flag_prints_nothing_but_keeps_logging() {
    // `run` turns the bar off in trainer(); turn it back on so --quiet has something to silence
    let dir = temp_dir("quiet");
    let src = format!("fn trainer() {{ #{{ max_epochs: 2, num_sanity_val_steps: 0 }} }}\nfn callbacks() {{ [callbacks::early_stopping(#{{monitor: \"val_loss\", patience: 0}})] }}\n{MODEL}");
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let loud = lt_in(&dir, &["fit", "m.rhai"]);
    assert!(loud.status.success(), "{}", stderr(&loud));
    assert!(stdout(&loud).contains("Epoch 0"), "{}", stdout(&loud));
    let quiet = lt_in(&dir, &["fit", "m.rhai", "--quiet"]);
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    assert_eq!(stdout(&quiet), "", "--quiet printed something");
    assert!(dir.join("lightning_logs/version_1/metrics.csv").exists());
}

#[test]
fn callbacks_from_the_command_line() {
    // losses 0.5, 0.4, 0.45 → with patience 1 the fit stops after epoch 2 of 5
    let (dir, out) =
        run("cli_cb", "max_epochs: 5", "", &["--callback", r#"early_stopping(#{monitor: "val_loss", patience: 1})"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ckpts(&dir.join("lightning_logs/version_0/checkpoints")), ["epoch=2-step=6.ckpt"]);
    let bad = lt_in(&dir, &["fit", "m.rhai", "--callback", "early_stoping(#{})"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("--callback early_stoping(#{})"), "{}", stderr(&bad));
}

#[test]
fn load_from_checkpoint_in_a_script_uses_saved_hparams_and_weights() {
    let (dir, out) = run("load_from_ckpt", "max_epochs: 2", "", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ckpt = "lightning_logs/version_0/checkpoints/epoch=1-step=4.ckpt";
    // the "class" may gain functions after training (this.log would need a running Trainer)
    let mut src = std::fs::read_to_string(dir.join("m.rhai")).unwrap();
    src.push_str("fn score(x) { (this.w * x).sum() }\n");
    // Lightning's load_from_checkpoint calls on_load_checkpoint with the checkpoint (this one holds
    // nothing from on_save_checkpoint)
    src.push_str("fn on_load_checkpoint(ck) { this.loaded_keys = ck.keys().len(); }\n");
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let user = format!(
        "let m = nn::load_from_checkpoint(\"m.rhai\", \"{ckpt}\", #{{extra: 7}});\nprint(`losses=${{m.hparams.losses.len()}} extra=${{m.hparams.extra}}`);\nprint(`w=${{m.w.item()}}`);\nprint(`loaded=${{m.loaded_keys}}`);\nprint(`loss=${{m.score(torch::ones([2])).item()}}`);\n"
    );
    std::fs::write(dir.join("use.rhai"), user).unwrap();
    let out = lt_in(&dir, &["run", "use.rhai"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let ck = lt::checkpoint::Checkpoint::load(&dir.join(ckpt)).unwrap();
    let w = ck.section("state_dict").into_iter().find(|(k, _)| k == "w").unwrap().1.double_value(&[0]);
    assert!(text.contains("losses=8 extra=7"), "{text}");
    assert!(text.contains("loaded=0"), "on_load_checkpoint ran: {text}");
    assert!(text.contains(&format!("w={w}")), "weights from the checkpoint ({w}): {text}");
    assert!(text.contains(&format!("loss={}", 2.0 * w)), "the script's functions run with its this: {text}");
}

#[test]
fn trainer_save_checkpoint_from_a_hook_writes_a_resumable_checkpoint() {
    let (dir, out) = run("manual_save", "max_epochs: 3", "", &["--set", "trainer.enable_checkpointing=false"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // the same model, asking for a checkpoint at the end of epoch 1
    let mut src = std::fs::read_to_string(dir.join("m.rhai")).unwrap();
    src.push_str(
        "fn on_train_epoch_end() { if this.current_epoch == 1 { this.trainer.save_checkpoint(\"manual.ckpt\"); } }\n",
    );
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let out = lt_in(&dir, &["fit", "m.rhai", "--set", "trainer.enable_checkpointing=false"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let meta = lt::checkpoint::Checkpoint::read_meta(&dir.join("manual.ckpt")).unwrap();
    assert_eq!(meta["epoch"], 1, "{meta}");
    assert_eq!(meta["global_step"], 4, "{meta}");
    assert_eq!(meta["weights_only"], false);
    let resumed =
        lt_in(&dir, &["fit", "m.rhai", "--set", "trainer.enable_checkpointing=false", "--ckpt", "manual.ckpt"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
}

/// LearningRateMonitor's momentum and weight-decay columns, with Lightning's names: for SGD with
/// two groups (momentum 0.9, weight_decay 0.01) Lightning 2.6.6 writes
/// `lr-SGD/pg1,lr-SGD/pg1-momentum,lr-SGD/pg1-weight_decay,lr-SGD/pg2,…`; Adam's momentum is
/// betas[0].
#[test]
fn learning_rate_monitor_logs_momentum_and_weight_decay_under_lightnings_names() {
    let model = "fn init(h) { this.a = nn::linear(2, 1); this.b = nn::linear(2, 1); }\nfn train_dataloader() { data::loader(data::tensor_dataset(torch::ones([4, 2])), #{batch_size: 2}) }\nfn training_step(b, i) { (this.a.forward(b[0]) + this.b.forward(b[0])).sum() }\n";
    let cases = [
        (
            "optim::sgd([#{params: this.a.parameters()}, #{params: this.b.parameters(), lr: 0.2}], #{lr: 0.1, momentum: 0.9, weight_decay: 0.01})",
            "lr-SGD/pg1,lr-SGD/pg1-momentum,lr-SGD/pg1-weight_decay,lr-SGD/pg2,lr-SGD/pg2-momentum,lr-SGD/pg2-weight_decay,step",
            "0.1,0.9,0.01,0.2,0.9,0.01,1",
        ),
        (
            "optim::adam(this.parameters(), #{lr: 0.1, weight_decay: 0.01})",
            "lr-Adam,lr-Adam-momentum,lr-Adam-weight_decay,step",
            "0.1,0.9,0.01,1",
        ),
    ];
    for (i, (opt, header, last)) in cases.into_iter().enumerate() {
        let dir = temp_dir(&format!("lr_monitor_extras_{i}"));
        let src = format!("fn trainer() {{ #{{ max_epochs: 1, enable_progress_bar: false, enable_model_summary: false, log_every_n_steps: 1, enable_checkpointing: false }} }}\nfn callbacks() {{ [callbacks::learning_rate_monitor(#{{log_momentum: true, log_weight_decay: true}})] }}\n{model}fn configure_optimizers() {{ {opt} }}\n");
        std::fs::write(dir.join("m.rhai"), src).unwrap();
        let out = lt_in(&dir, &["fit", "m.rhai"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let csv = std::fs::read_to_string(dir.join("lightning_logs/version_0/metrics.csv")).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], header, "{csv}");
        assert_eq!(*lines.last().unwrap(), last, "{csv}");
    }
}

/// `verbose: true` prints Lightning's ModelCheckpoint lines (on stderr, as its rank_zero_info).
#[test]
fn model_checkpoint_verbose_says_what_each_save_did() {
    let (dir, out) = run(
        "ck_verbose",
        "max_epochs: 3",
        r#"callbacks::model_checkpoint(#{dirpath: "ck", monitor: "val_loss", filename: "{epoch}", verbose: true})"#,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let ck = std::path::absolute(dir.join("ck")).unwrap();
    let lines: Vec<String> = stderr(&out).lines().filter(|l| l.starts_with("Epoch ")).map(str::to_string).collect();
    assert_eq!(
        lines,
        [
            format!("Epoch 0, global step 2: 'val_loss' reached 0.50000 (best 0.50000), saving model to '{}/epoch=0.ckpt' as top 1", ck.display()),
            format!("Epoch 1, global step 4: 'val_loss' reached 0.40000 (best 0.40000), saving model to '{}/epoch=1.ckpt' as top 1", ck.display()),
            "Epoch 2, global step 6: 'val_loss' was not in top 1".to_string(),
        ]
    );
}

/// A NaN monitored value is saved while the top k is not full, scored as the worst value, and
/// replaced by the first real value: files, best model and verbose messages as Lightning 2.6.6's
/// (tests/fixtures/callbacks/gen_ckpt_nan.py).
#[test]
fn model_checkpoint_nan_monitor_matches_lightning() {
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(crate::common::root().join("tests/fixtures/callbacks/ckpt_nan.json")).unwrap(),
    )
    .unwrap();
    let dir = temp_dir("ckpt_nan");
    let src = r#"
fn trainer() { #{ max_epochs: 4, logger: false, enable_progress_bar: false, enable_model_summary: false, num_sanity_val_steps: 0 } }
fn callbacks() { [callbacks::model_checkpoint(#{dirpath: "ck", monitor: "val_loss", save_top_k: 2, filename: "{epoch}-{val_loss:.2f}", verbose: true})] }
fn init(h) { this.l = nn::linear(2, 1); }
fn train_dataloader() { [[torch::ones([2, 2])]] }
fn val_dataloader() { [[torch::ones([2, 2])]] }
fn training_step(b, i) { this.l.forward(b[0]).sum() }
fn validation_step(b, i) { this.log("val_loss", [0.0 / 0.0, 0.5, 0.7, 0.2][this.current_epoch]); }
fn configure_optimizers() { optim::sgd(this.parameters(), #{lr: 0.1}) }
"#;
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let out = lt_in(&dir, &["fit", "m.rhai"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let files: Vec<String> =
        fixture["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
    assert_eq!(ckpts(&dir.join("ck")), files);
    let abs = std::path::absolute(dir.join("ck")).unwrap().to_string_lossy().to_string();
    let err = stderr(&out).replace(&abs, "DIR");
    for m in fixture["messages"].as_array().unwrap() {
        assert!(err.contains(m.as_str().unwrap()), "missing {m}\n{err}");
    }
    // the best model is the last one saved (Lightning's best_model_path)
    let best = fixture["best_model_path"].as_str().unwrap();
    let last_message = fixture["messages"].as_array().unwrap().last().unwrap().as_str().unwrap();
    assert!(last_message.contains(&format!("DIR/{best}")), "{last_message}");
}
