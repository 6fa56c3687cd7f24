//! Weight averaging (StochasticWeightAveraging, EMAWeightAveraging, WeightAveraging) against
//! torch.optim.swa_utils: fixtures made by tests/fixtures/callbacks/gen_averaging.py from the same
//! initial weights and data (`averaging_init.pt`, read through `nn::load`).
use crate::common::{lt_in, root, stderr, temp_dir};
use serde_json::Value;
use std::path::Path;

/// The fixture's model: Linear(4, 8) → BatchNorm1d → ReLU → Linear(8, 1), trained with MSE on 16
/// rows in batches of 4, saving its final weights when the fit ends.
fn script(callback: &str, optimizer: &str, trainer: &str) -> String {
    let init = root().join("tests/fixtures/callbacks/averaging_init.pt");
    format!(
        r#"
fn trainer() {{ #{{ enable_progress_bar: false, enable_model_summary: false, num_sanity_val_steps: 0, {trainer} }} }}
fn callbacks() {{ [{callback}] }}
fn init(h) {{
    this.net = nn::sequential([nn::linear(4, 8), nn::batch_norm1d(8), nn::relu(), nn::linear(8, 1)]);
    let s = nn::load("{init}");
    this.load_state_dict(s, #{{strict: false}});
    this.x = s["data.x"];
    this.y = s["data.y"];
}}
fn forward(x) {{ this.net.forward(x) }}
fn train_dataloader() {{ data::loader(data::tensor_dataset(this.x, this.y), #{{batch_size: 4}}) }}
fn training_step(b, i) {{ F::mse_loss(this.forward(b[0]), b[1]) }}
fn configure_optimizers() {{ {optimizer} }}
fn on_fit_end() {{ nn::save(this.net, "final.safetensors"); }}
"#,
        init = init.display()
    )
}

fn fixture() -> Value {
    let p = root().join("tests/fixtures/callbacks/averaging.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn fit(tag: &str, src: &str, extra: &[&str]) -> std::path::PathBuf {
    let dir = temp_dir(tag);
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let mut args = vec!["fit", "m.rhai"];
    args.extend_from_slice(extra);
    let out = lt_in(&dir, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    dir
}

/// A safetensors file's tensors, sorted by name.
fn weights(path: &Path) -> Vec<(String, tch::Tensor)> {
    let mut v = tch::Tensor::read_safetensors(path).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Every tensor of `file` equals the fixture's `want` (name → flat list) to `tol` (|a - b| ≤
/// tol · (1 + |b|)), except those named in `skip`. The callers use 1e-5: a few epochs of float32 SGD
/// on a tiny net, averaged, move by ~1e-7 between kernels; a wrong average or schedule by > 1e-3.
fn assert_matches(file: &Path, want: &Value, tol: f64, skip: &[&str]) {
    let got = weights(file);
    let want = want.as_object().unwrap();
    assert_eq!(got.len(), want.len(), "{:?}", got.iter().map(|(k, _)| k).collect::<Vec<_>>());
    for (k, t) in got {
        if skip.contains(&k.as_str()) {
            continue;
        }
        let w: Vec<f64> = want[&k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let g: Vec<f64> = Vec::<f64>::try_from(t.to_kind(tch::Kind::Double).flatten(0, -1)).unwrap();
        assert_eq!(g.len(), w.len(), "{k}");
        for (a, b) in g.iter().zip(&w) {
            assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{k}: lt {a} vs torch {b}\nlt {g:?}\ntorch {w:?}");
        }
    }
}

#[test]
fn swa_matches_torch_swalr_average_and_update_bn() {
    let fx = fixture();
    let cb = "callbacks::stochastic_weight_averaging(#{swa_lrs: 0.05, swa_epoch_start: 2, annealing_epochs: 2}), callbacks::learning_rate_monitor(#{logging_interval: \"epoch\"})";
    // a step scheduler that SWA must switch off from epoch 2
    let opt = "let o = optim::sgd(this.parameters(), #{lr: 0.1}); #{optimizer: o, lr_scheduler: sched::step_lr(o, #{step_size: 3, gamma: 0.5})}";
    let dir = fit("swa", &script(cb, opt, "max_epochs: 4"), &[]);
    assert_matches(&dir.join("final.safetensors"), &fx["swa"]["final"], 1e-5, &[]);
    // the final model is also kept as a weights-only checkpoint
    let swa = lt::checkpoint::Checkpoint::load(&dir.join("lightning_logs/version_0/checkpoints/swa.ckpt")).unwrap();
    let fin = weights(&dir.join("final.safetensors"));
    for (k, t) in swa.section("state_dict") {
        let k = k.strip_prefix("net.").unwrap_or(&k).to_string();
        let want = &fin.iter().find(|(n, _)| *n == k).unwrap_or_else(|| panic!("{k} not in the final weights")).1;
        assert!(t.equal(want), "swa.ckpt {k} differs from the final model");
    }
    // ... which `--ckpt last` passes over: a fit resumes from full checkpoints
    let again = lt_in(&dir, &["fit", "m.rhai", "--ckpt", "last"]);
    assert!(again.status.success(), "{}", stderr(&again));
    // the learning rate of each epoch, as LearningRateMonitor logged it
    let csv = std::fs::read_to_string(dir.join("lightning_logs/version_0/metrics.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "lr-SGD").unwrap();
    let lrs: Vec<f64> = lines.filter_map(|l| l.split(',').nth(col).and_then(|v| v.parse().ok())).collect();
    let want: Vec<f64> = fx["swa"]["lrs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(lrs.len(), want.len(), "{csv}");
    for (a, b) in lrs.iter().zip(&want) {
        // float64 scalar arithmetic on both sides (SWALR's schedule): no kernel differences
        assert!((a - b).abs() < 1e-12, "lrs {lrs:?} vs torch {want:?}");
    }
}

#[test]
fn ema_matches_torch_averaged_model_and_checkpoints_keep_both() {
    let fx = fixture();
    let dir = fit(
        "ema",
        &script(
            "callbacks::ema_weight_averaging(#{decay: 0.9})",
            "optim::sgd(this.parameters(), #{lr: 0.1, momentum: 0.9})",
            "max_epochs: 2, logger: false",
        ),
        &[],
    );
    // PyTorch's EMA truncates `0.9 * n + 0.1 * m` back into the int64 batch counter (it stays at
    // 1); lt keeps integer buffers as trained: 8 batches.
    assert_matches(&dir.join("final.safetensors"), &fx["ema"]["final"], 1e-5, &["1.num_batches_tracked"]);
    let nbt =
        weights(&dir.join("final.safetensors")).into_iter().find(|(k, _)| k == "1.num_batches_tracked").unwrap().1;
    assert_eq!(nbt.int64_value(&[]), 8);
    // The checkpoint's weights are the average; the trained weights are kept for resuming.
    let ck = lt::checkpoint::Checkpoint::load(&dir.join("checkpoints/epoch=1-step=8.ckpt")).unwrap();
    let avg = ck.section("state_dict");
    let cur = ck.section("callbacks.EMAWeightAveraging.current");
    let pick = |v: &[(String, tch::Tensor)], k: &str| v.iter().find(|(n, _)| n == k).unwrap().1.shallow_clone();
    let want_avg: Vec<f64> =
        fx["ema"]["final"]["3.weight"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let want_cur: Vec<f64> =
        fx["ema"]["current"]["3.weight"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let a: Vec<f64> = Vec::try_from(pick(&avg, "net.3.weight").to_kind(tch::Kind::Double).flatten(0, -1)).unwrap();
    let c: Vec<f64> = Vec::try_from(pick(&cur, "net.3.weight").to_kind(tch::Kind::Double).flatten(0, -1)).unwrap();
    for (x, y) in a.iter().zip(&want_avg).chain(c.iter().zip(&want_cur)) {
        assert!((x - y).abs() < 1e-5, "{a:?} vs {want_avg:?} / {c:?} vs {want_cur:?}");
    }
}

/// A fit resumed from a mid-run checkpoint ends on exactly the weights of an uninterrupted one,
/// for both kinds of averaging (with validation swapping the average in and out).
#[test]
fn averaging_resumes_exactly() {
    for (tag, cb, epochs, resume_at) in [
        ("ema_resume", "callbacks::ema_weight_averaging(#{decay: 0.8})", 2, "step=6.ckpt"),
        (
            "swa_resume",
            "callbacks::stochastic_weight_averaging(#{swa_lrs: 0.05, swa_epoch_start: 1, annealing_epochs: 2})",
            3,
            "step=10.ckpt",
        ),
    ] {
        let ck = r#"callbacks::model_checkpoint(#{dirpath: "ck", every_n_train_steps: 1, save_top_k: -1, filename: "{step}"})"#;
        let src = script(&format!("{cb}, {ck}"), "optim::sgd(this.parameters(), #{lr: 0.1, momentum: 0.9})", &format!("max_epochs: {epochs}, logger: false"))
            + "fn val_dataloader() { data::loader(data::tensor_dataset(this.x, this.y), #{batch_size: 8}) }\nfn validation_step(b, i) { this.log(\"val_loss\", F::mse_loss(this.forward(b[0]), b[1])); }\n";
        let dir = fit(tag, &src, &[]);
        let full = weights(&dir.join("final.safetensors"));
        std::fs::rename(dir.join("final.safetensors"), dir.join("full.safetensors")).unwrap();
        let ckpt = format!("ck/{resume_at}");
        let out = lt_in(&dir, &["fit", "m.rhai", "--ckpt", &ckpt]);
        assert!(out.status.success(), "{}", stderr(&out));
        let resumed = weights(&dir.join("final.safetensors"));
        assert_eq!(full.len(), resumed.len());
        for ((k, a), (_, b)) in full.iter().zip(&resumed) {
            assert!(a.equal(b), "{tag}: {k} differs after resuming from {resume_at}:\n{a}\n{b}");
        }
    }
}
