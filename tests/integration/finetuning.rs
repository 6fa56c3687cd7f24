//! `callbacks::backbone_finetuning` against what Lightning 2.6.6's BackboneFinetuning did to the
//! same tiny model (tests/fixtures/callbacks/gen_backbone_finetuning.py): per epoch, each
//! parameter group's learning rate and size, which parameters require grad, and whether the
//! backbone's batch norm tracks running statistics, as the module sees them in its own
//! `on_train_epoch_start` (after the callback's).
use crate::common::{lt_in, stderr, stdout, temp_dir};
use serde_json::Value;

const MODEL: &str = r#"
fn init(h) {
    this.backbone = nn::sequential([nn::linear(4, 8), nn::batch_norm1d(8), nn::relu()]);
    this.head = nn::linear(8, 2);
}
fn forward(x) { this.head.forward(this.backbone.forward(x)) }
fn training_step(b, i) { this.forward(b[0]).pow(2).mean() }
fn configure_optimizers() { optim::sgd(this.parameters().filter(|p| p.requires_grad), #{lr: 0.1}) }
fn train_dataloader() {
    let x = torch::arange(32.0).reshape([8, 4]) / 10.0;
    [[x.narrow(0, 0, 4)], [x.narrow(0, 4, 4)]]
}
fn on_train_epoch_start() {
    let opt = this.optimizers();
    let lrs = opt.param_groups.map(|g| g.lr.to_string());
    let sizes = opt.param_groups.map(|g| g.params.len().to_string());
    let rg = this.named_parameters().map(|p| `${p[0]}=${p[1].requires_grad}`);
    // (reduce starts from (), which prints as nothing: each list begins with its separator)
    print(`SEEN ${this.current_epoch}|${lrs.reduce(|a, s| a + "," + s)}|${sizes.reduce(|a, s| a + "," + s)}|${rg.reduce(|a, s| a + ";" + s)}|${this.backbone.layers[1].track_running_stats}`);
}
"#;

/// The callback's options as a Rhai map literal.
fn rhai_opts(opts: &Value, factor: f64) -> String {
    let mut parts: Vec<String> = opts
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| match v {
            Value::Number(n) if n.is_f64() => format!("{k}: {:?}", n.as_f64().unwrap()),
            other => format!("{k}: {other}"),
        })
        .collect();
    parts.push(format!("lambda_func: {factor:?}"));
    format!("#{{{}}}", parts.join(", "))
}

#[test]
fn backbone_finetuning_matches_lightnings_groups_rates_and_freezing() {
    let fx: Value = serde_json::from_str(
        &std::fs::read_to_string(crate::common::root().join("tests/fixtures/callbacks/backbone_finetuning.json"))
            .unwrap(),
    )
    .unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 6 && cases.iter().any(|c| c["step_lr"] == true));
    let mut failures = Vec::new();
    for (ci, c) in cases.iter().enumerate() {
        let dir = temp_dir("backbone_finetuning");
        let opts = rhai_opts(&c["opts"], c["lambda_func"].as_f64().unwrap());
        let model = if c["step_lr"] == true {
            MODEL.replace(
                "fn configure_optimizers() { optim::sgd(this.parameters().filter(|p| p.requires_grad), #{lr: 0.1}) }",
                "fn configure_optimizers() {\n    let o = optim::sgd(this.parameters().filter(|p| p.requires_grad), #{lr: 0.1});\n    #{optimizer: o, lr_scheduler: sched::step_lr(o, #{step_size: 1, gamma: 0.5})}\n}",
            )
        } else {
            MODEL.to_string()
        };
        let src = format!(
            "fn trainer() {{ #{{ max_epochs: {}, logger: false, enable_checkpointing: false, enable_progress_bar: false, enable_model_summary: false }} }}\nfn callbacks() {{ [callbacks::backbone_finetuning({opts})] }}\n{model}",
            c["max_epochs"]
        );
        std::fs::write(dir.join("m.rhai"), src).unwrap();
        let out = lt_in(&dir, &["fit", "m.rhai"]);
        if !out.status.success() {
            failures.push(format!("case {ci} {opts}: lt failed:\n{}", stderr(&out)));
            continue;
        }
        let seen: Vec<String> =
            stdout(&out).lines().filter_map(|l| l.strip_prefix("SEEN ").map(str::to_string)).collect();
        let want = c["epochs"].as_array().unwrap();
        if seen.len() != want.len() {
            failures.push(format!("case {ci}: {} epochs seen, Lightning {}", seen.len(), want.len()));
            continue;
        }
        for (line, w) in seen.iter().zip(want) {
            let f: Vec<&str> = line.split('|').collect();
            let epoch = w["epoch"].as_i64().unwrap();
            let lrs: Vec<f64> = f[1].split(',').filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
            let want_lrs: Vec<f64> = w["lrs"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            if lrs.len() != want_lrs.len()
                || lrs.iter().zip(&want_lrs).any(|(a, b)| (a - b).abs() > 1e-12 * b.abs().max(1.0))
            {
                failures.push(format!("case {ci} epoch {epoch}: lrs {lrs:?}, Lightning {want_lrs:?}"));
            }
            let sizes: Vec<i64> = f[2].split(',').filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
            let want_sizes: Vec<i64> =
                w["group_sizes"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
            if sizes != want_sizes {
                failures.push(format!("case {ci} epoch {epoch}: group sizes {sizes:?}, Lightning {want_sizes:?}"));
            }
            let mut rg: Vec<(String, bool)> = f[3]
                .split(';')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v == "true")
                })
                .collect();
            rg.sort();
            let mut want_rg: Vec<(String, bool)> = w["requires_grad"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_bool().unwrap()))
                .collect();
            want_rg.sort();
            if rg != want_rg {
                failures.push(format!("case {ci} epoch {epoch}: requires_grad {rg:?}, Lightning {want_rg:?}"));
            }
            if (f[4] == "true") != w["track_running_stats"].as_bool().unwrap() {
                failures.push(format!(
                    "case {ci} epoch {epoch}: track_running_stats {}, Lightning {}",
                    f[4], w["track_running_stats"]
                ));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(failures.is_empty(), "{} differences from Lightning:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn backbone_finetuning_needs_a_backbone_and_checks_its_options() {
    let dir = temp_dir("backbone_finetuning_errors");
    let model = MODEL.replace("this.backbone = ", "this.trunk = ").replace("this.backbone.", "this.trunk.");
    std::fs::write(
        dir.join("m.rhai"),
        format!("fn trainer() {{ #{{ max_epochs: 1, logger: false, enable_progress_bar: false, enable_model_summary: false }} }}\nfn callbacks() {{ [callbacks::backbone_finetuning()] }}\n{model}"),
    )
    .unwrap();
    let out = lt_in(&dir, &["fit", "m.rhai"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("should have a nn.Module `backbone` attribute"), "{}", stderr(&out));
    for (opts, want) in [
        ("#{unfreeze_at: 2}", "unknown"),
        ("#{unfreeze_backbone_at_epoch: -1}", "unfreeze_backbone_at_epoch must be >= 0, got -1"),
        ("#{lambda_func: 0.0}", "lambda_func must be a factor > 0, got 0"),
        ("#{backbone_initial_lr: -0.1}", "backbone_initial_lr must be a number >= 0, got -0.1"),
    ] {
        let e = crate::common::eval(&format!("callbacks::backbone_finetuning({opts})")).err().unwrap_or_default();
        assert!(e.contains(want), "{opts}: {e}");
    }
}
