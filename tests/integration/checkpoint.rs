//! Checkpoints: exact resume (mid-epoch and after kill -9), atomic writes, refusals, inspection.
use crate::common::{lt_in, root, stderr, stdout, temp_dir};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn script() -> String {
    root().join("tests/scripts/resume.rhai").to_string_lossy().to_string()
}

fn final_weights(out: &std::process::Output) -> String {
    let s = stdout(out);
    s.lines()
        .filter(|l| l.starts_with("w1 ") || l.starts_with("w2 ") || l.starts_with("step "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn fit(dir: &Path, extra: &[&str]) -> std::process::Output {
    let s = script();
    let mut args = vec!["fit", s.as_str(), "--set", "trainer.default_root_dir=run"];
    args.extend_from_slice(extra);
    let out = lt_in(dir, &args);
    assert!(out.status.success(), "lt fit {extra:?} failed:\n{}", stderr(&out));
    out
}

#[test]
fn resume_mid_epoch_is_bit_identical() {
    let full_dir = temp_dir("full");
    let full = final_weights(&fit(&full_dir, &[]));
    assert!(full.contains("step 15"), "{full}");
    let dir = temp_dir("part");
    fit(&dir, &["--set", "trainer.max_steps=7"]);
    assert!(dir.join("run/checkpoints/step=7.ckpt").exists());
    let resumed = final_weights(&fit(&dir, &["--ckpt", "run/checkpoints/step=7.ckpt"]));
    assert_eq!(full, resumed, "resumed run differs from the uninterrupted one");
    // an epoch-end checkpoint (step 5 = last batch of epoch 0) resumes exactly too
    let dir = temp_dir("part5");
    fit(&dir, &["--set", "trainer.max_steps=5"]);
    let resumed = final_weights(&fit(&dir, &["--ckpt", "last"]));
    assert_eq!(full, resumed);
}

#[test]
fn kill_9_after_a_checkpoint_leaves_it_intact_and_resumable() {
    let full = final_weights(&fit(&temp_dir("k9full"), &[]));
    let dir = temp_dir("k9");
    let s = script();
    let mut child = Command::new(crate::common::lt_bin())
        .args(["fit", s.as_str(), "--set", "trainer.default_root_dir=run", "--set", "model.hang_at=9"])
        .current_dir(&dir)
        .env("OMP_NUM_THREADS", crate::common::threads())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn lt");
    let ckpt = dir.join("run/checkpoints/step=9.ckpt");
    let t0 = Instant::now();
    while !ckpt.exists() && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    // SIGKILL: no chance to clean up
    let _ = Command::new("kill").args(["-9", &child.id().to_string()]).status();
    let _ = child.wait();
    assert!(ckpt.exists(), "no checkpoint written before the kill");
    // every complete checkpoint file loads (a save cut short only ever leaves a hidden .tmp file)
    for e in std::fs::read_dir(dir.join("run/checkpoints")).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "ckpt") {
            assert!(lt::checkpoint::Checkpoint::load(&p).is_ok(), "{} does not load", p.display());
        }
    }
    let resumed = final_weights(&fit(&dir, &["--ckpt", "last"]));
    assert_eq!(full, resumed);
}

#[test]
fn broken_checkpoints_are_refused_with_a_reason() {
    let dir = temp_dir("refuse");
    fit(&dir, &["--set", "trainer.max_steps=2"]);
    let good = dir.join("run/checkpoints/step=2.ckpt");
    let bytes = std::fs::read(&good).unwrap();
    let s = script();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated.ckpt", bytes[..bytes.len() / 2].to_vec(), "truncated or corrupt"),
        ("garbage.ckpt", b"this is not a checkpoint at all, just text".to_vec(), "not a valid safetensors file"),
        ("empty.ckpt", vec![], "too short"),
        ("extended.ckpt", [bytes.as_slice(), b"extra"].concat(), "truncated or corrupt"),
    ];
    for (name, data, want) in cases {
        std::fs::write(dir.join(name), &data).unwrap();
        let out = lt_in(&dir, &["fit", s.as_str(), "--set", "trainer.default_root_dir=run", "--ckpt", name]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(
            stderr(&out).contains(want) && stderr(&out).contains("refusing checkpoint"),
            "{name}: {}",
            stderr(&out)
        );
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), data, "{name} was changed on disk");
    }
    // a checkpoint of another model: its keys do not match
    let other = dir.join("other.rhai");
    std::fs::write(&other, "fn trainer() { #{max_epochs: 1, enable_progress_bar: false, logger: false} }\nfn init(h) { this.v = torch::zeros([4], #{requires_grad: true}); }\nfn configure_optimizers() { optim::adam([this.v], #{lr: 0.1}) }\nfn train_dataloader() { [[torch::ones([1])]] }\nfn training_step(b, i) { this.v.sum() }\n").unwrap();
    let out = lt_in(&dir, &["fit", "other.rhai", "--ckpt", "run/checkpoints/step=2.ckpt"]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("w1") && e.contains("v"), "missing/unexpected keys should be named: {e}");
    assert_eq!(std::fs::read(&good).unwrap(), bytes);
}

#[test]
fn ckpt_show_lists_metadata_and_tensors() {
    let dir = temp_dir("show");
    fit(&dir, &["--set", "trainer.max_steps=2"]);
    let out = lt_in(&dir, &["ckpt", "show", "run/checkpoints/step=2.ckpt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    for want in ["global_step", "state_dict.w1", "optimizer_states.0.state.0.exp_avg", "rng.torch_cpu", "lt-checkpoint"]
    {
        assert!(s.contains(want), "missing {want} in:\n{s}");
    }
}

#[test]
fn eval_with_ckpt_uses_the_saved_hyperparameters_and_optionally_non_strict_weights() {
    let dir = temp_dir("ckpt_hparams");
    let src = r#"
fn hparams() { #{ hidden: 2, extra: false } }
fn trainer() { #{ max_epochs: 1, enable_progress_bar: false, enable_model_summary: false, logger: false } }
fn init(h) {
    this.save_hyperparameters();
    this.net = nn::linear(2, h.hidden);
    if h.extra { this.more = nn::linear(h.hidden, h.hidden); }
}
fn batches() { [[torch::ones([4, 2])]] }
fn train_dataloader() { batches() }
fn test_dataloader() { batches() }
fn training_step(b, i) { this.net.forward(b[0]).square().mean() }
fn test_step(b, i) { this.log("width", this.net.forward(b[0]).shape[1]); }
fn configure_optimizers() { optim::sgd(this.parameters(), #{lr: 0.1}) }
"#;
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let fit = lt_in(&dir, &["fit", "m.rhai", "--set", "model.hidden=3"]);
    assert!(fit.status.success(), "{}", stderr(&fit));
    // built with hidden=3 from the checkpoint, not the script's default of 2
    let test = lt_in(&dir, &["test", "m.rhai", "--ckpt", "last"]);
    assert!(test.status.success(), "{}", stderr(&test));
    assert!(stdout(&test).contains("width") && stdout(&test).contains(" 3 "), "{}", stdout(&test));
    // --set wins over the saved value: then the weights do not fit
    let wrong = lt_in(&dir, &["test", "m.rhai", "--ckpt", "last", "--set", "model.hidden=5"]);
    assert!(!wrong.status.success() && stderr(&wrong).contains("size mismatch"), "{}", stderr(&wrong));
    // a new layer the checkpoint lacks: refused unless --no-strict
    let strict = lt_in(&dir, &["test", "m.rhai", "--ckpt", "last", "--set", "model.extra=true"]);
    assert!(!strict.status.success() && stderr(&strict).contains("Missing key(s)"), "{}", stderr(&strict));
    let loose = lt_in(&dir, &["test", "m.rhai", "--ckpt", "last", "--set", "model.extra=true", "--no-strict"]);
    assert!(loose.status.success(), "{}", stderr(&loose));
}
