//! nn layers, losses and functional ops against PyTorch 2.11: forward outputs, input gradients,
//! parameter gradients and updated buffers on fixtures PyTorch produced from the same weights
//! (tests/fixtures/nn/gen_layers.py), and PyTorch's seeded default init and torch.save import
//! (tests/fixtures/nn/gen_torch_io.py).
use crate::common::root;
use lt::tensor::Tensor;
use rhai::{Array, Dynamic, Map, Scope};
use serde_json::Value;
use std::path::Path;

fn fixture(name: &str) -> Value {
    let p = root().join("tests/fixtures/nn").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).expect("read fixture")).expect("parse fixture")
}

pub(crate) fn tensor(v: &Value) -> tch::Tensor {
    let shape: Vec<i64> = v["shape"].as_array().unwrap().iter().map(|s| s.as_i64().unwrap()).collect();
    let data = v["data"].as_array().unwrap();
    let t = match v["dtype"].as_str().unwrap_or("float32") {
        "int64" => tch::Tensor::from_slice(&data.iter().map(|d| d.as_i64().unwrap()).collect::<Vec<_>>()),
        "bool" => tch::Tensor::from_slice(&data.iter().map(|d| d.as_bool().unwrap()).collect::<Vec<_>>()),
        _ => tch::Tensor::from_slice(&data.iter().map(|d| d.as_f64().unwrap() as f32).collect::<Vec<_>>()),
    };
    t.reshape(shape.as_slice())
}

/// Max |a - b| / (1 + |b|) ≤ 1e-5, and whether shapes agree. Why 1e-5: each case is one float32
/// forward and backward of a small layer; an output is a sum of at most a few hundred products, whose
/// rounding (≤ K · 6e-8, and another summation order in another CPU's MKL/oneDNN kernel) stays
/// below 1e-5 relative, while a wrong formula, init or reduction is off by far more.
pub(crate) fn close(what: &str, got: &tch::Tensor, want: &tch::Tensor, failures: &mut Vec<String>) {
    if got.size() != want.size() {
        failures.push(format!("{what}: shape {:?}, PyTorch {:?}", got.size(), want.size()));
        return;
    }
    if want.numel() == 0 {
        return;
    }
    let g = got.to_kind(tch::Kind::Double);
    let w = want.to_kind(tch::Kind::Double);
    let err = ((&g - &w).abs() / (w.abs() + 1.0)).max().double_value(&[]);
    if err.is_nan() || err > 1e-5 {
        failures.push(format!("{what}: max relative difference {err:e}"));
    }
}

pub(crate) fn state_map(v: &Value) -> Map {
    v.as_object().unwrap().iter().map(|(k, t)| (k.as_str().into(), Dynamic::from(Tensor::new(tensor(t))))).collect()
}

#[test]
fn layers_and_losses_match_pytorch() {
    let _rng = crate::common::rng_guard();
    let fx = fixture("layers.json");
    let cases = fx["cases"].as_array().unwrap();
    let failures = run_cases(cases);
    assert!(cases.len() > 70, "only {} cases", cases.len());
    assert!(failures.is_empty(), "{} mismatches with PyTorch:\n{}", failures.len(), failures.join("\n"));
}

/// Runs gen_layers.py-style cases (constructor, weights, call, upstream gradient) and returns the
/// mismatches with PyTorch's outputs and gradients.
pub(crate) fn run_cases(cases: &[Value]) -> Vec<String> {
    let mut failures = Vec::new();
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let inputs: Vec<Tensor> = c["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .zip(c["grad_inputs"].as_array().unwrap())
            .map(|(v, g)| {
                let t = tensor(v);
                Tensor::new(if g.as_bool().unwrap() { t.set_requires_grad(true) } else { t })
            })
            .collect();
        let mut scope = Scope::new();
        scope.push("x", inputs.iter().cloned().map(Dynamic::from).collect::<Array>());
        scope.push("sd", state_map(&c["state"]));
        scope.push("gout", Tensor::new(tensor(&c["gout"])));
        let seed = c["seed"].as_i64().map(|s| format!("torch::manual_seed({s});")).unwrap_or_default();
        let src = format!(
            "let m = {};\nif sd.len() > 0 {{ m.load_state_dict(sd); }}\nm.train({});\n{seed}\nlet y = {};\n(y * gout).sum().backward();\ny",
            c["ctor"].as_str().unwrap(),
            c["train"].as_bool().unwrap(),
            c["call"].as_str().unwrap()
        );
        let script = lt::script::runner::Script::from_source(Path::new(&format!("{name}.rhai")), src).unwrap();
        let y = match script.run(&mut scope) {
            Ok(y) => y.cast::<Tensor>(),
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        close(&format!("{name}: output"), &y, &tensor(&c["out"]), &mut failures);
        for (i, (x, want)) in inputs.iter().zip(c["input_grads"].as_array().unwrap()).enumerate() {
            if !want.is_null() {
                close(&format!("{name}: grad of input {i}"), &x.grad(), &tensor(want), &mut failures);
            }
        }
        let m = Dynamic::from_map(scope.get_value::<Map>("m").unwrap());
        let params: std::collections::HashMap<String, Tensor> =
            lt::nn::tree::named_parameters(&m).unwrap().into_iter().collect();
        for (k, want) in c["param_grads"].as_object().unwrap() {
            match params.get(k) {
                Some(p) if p.grad().defined() => {
                    close(&format!("{name}: grad of {k}"), &p.grad(), &tensor(want), &mut failures)
                }
                _ => failures.push(format!("{name}: no gradient for parameter {k}")),
            }
        }
        let buffers: std::collections::HashMap<String, Tensor> =
            lt::nn::tree::named_buffers(&m).unwrap().into_iter().collect();
        for (k, want) in c["buffers_after"].as_object().unwrap() {
            match buffers.get(k) {
                Some(b) => close(
                    &format!("{name}: buffer {k}"),
                    &b.to_kind(tch::Kind::Double),
                    &tensor(want).to_kind(tch::Kind::Double),
                    &mut failures,
                ),
                None => failures.push(format!("{name}: no buffer {k}")),
            }
        }
    }
    failures
}

#[test]
fn seeded_default_init_equals_pytorch() {
    let _rng = crate::common::rng_guard();
    let fx = fixture("torch_io.json");
    let failures = seeded_init_mismatches(&fx["seeded"]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs each `ctor` after `torch::manual_seed(123)` and compares its state_dict with PyTorch's.
pub(crate) fn seeded_init_mismatches(seeded: &Value) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, c) in seeded.as_object().unwrap() {
        let src = format!("torch::manual_seed(123);\n{}", c["ctor"].as_str().unwrap());
        let script = lt::script::runner::Script::from_source(Path::new("init.rhai"), src).unwrap();
        let m = script.run(&mut Scope::new()).unwrap();
        let sd: std::collections::HashMap<String, Tensor> = lt::nn::tree::state_dict(&m).unwrap().into_iter().collect();
        let want = c["state"].as_object().unwrap();
        assert_eq!(
            sd.len(),
            want.len(),
            "{name}: {:?} vs {:?}",
            sd.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        for (k, w) in want {
            match sd.get(k) {
                Some(t) => close(&format!("{name}.{k}"), t, &tensor(w), &mut failures),
                None => failures.push(format!("{name}: missing {k}")),
            }
        }
    }
    failures
}

#[test]
fn imports_a_torch_save_state_dict() {
    let _rng = crate::common::rng_guard();
    let fx = fixture("torch_io.json");
    let pt = root().join("tests/fixtures/nn/mlp.pt");
    let mut scope = Scope::new();
    scope.push("x", Tensor::new(tensor(&fx["input"])));
    scope.push("path", pt.display().to_string());
    let src = "let model = nn::sequential([nn::linear(4, 6), nn::relu(), nn::batch_norm1d(6), nn::linear(6, 2)]);\n\
               let sd = nn::load(path);\nlet r = model.load_state_dict(sd);\nmodel.eval_mode();\nmodel.forward(x)";
    let script = lt::script::runner::Script::from_source(Path::new("import.rhai"), src.into()).unwrap();
    let y = script.run(&mut scope).unwrap_or_else(|e| panic!("{e}")).cast::<Tensor>();
    let mut failures = Vec::new();
    close("output", &y, &tensor(&fx["output"]), &mut failures);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let keys: Vec<String> = lt::nn::io::load_torch(&pt).unwrap().into_iter().map(|(k, _)| k).collect();
    let mut want: Vec<String> =
        fx["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    let mut got = keys.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

/// `track_running_stats` turned off on an existing batch norm (a frozen backbone's norms) acts as
/// in PyTorch: training neither counts nor updates the running statistics, eval still uses them
/// (tests/fixtures/nn/gen_bn_track.py).
#[test]
fn batch_norm_track_running_stats_turned_off_matches_pytorch() {
    let fx = fixture("bn_track.json");
    let src = r#"
let x1 = (torch::arange(12).float() * 0.7).sin().reshape([4, 3]);
let x2 = (torch::arange(12).float() * 0.3).cos().reshape([4, 3]) * 2;
let x3 = (torch::arange(6).float() * 1.3).sin().reshape([2, 3]);
let bn = nn::batch_norm1d(3);
bn.forward(x1);
bn.track_running_stats = false;
let y2 = bn.forward(x2);
bn.train(false);
let y3 = bn.forward(x3);
[y2, y3, bn.running_mean, bn.running_var, bn.num_batches_tracked]
"#;
    let got = crate::common::eval(src).unwrap().cast::<Array>();
    let t = |i: usize| got[i].clone().cast::<Tensor>().handle();
    let want = |k: &str| {
        let v = &fx[k];
        let rows: Vec<f32> = match v.as_array().unwrap()[0].as_array() {
            Some(_) => v
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32))
                .collect(),
            None => v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect(),
        };
        tch::Tensor::from_slice(&rows)
    };
    let mut failures = Vec::new();
    close("y2 (training, untracked)", &t(0).reshape([-1]), &want("y2"), &mut failures);
    close("y3 (eval)", &t(1).reshape([-1]), &want("y3"), &mut failures);
    close("running_mean", &t(2), &want("running_mean"), &mut failures);
    close("running_var", &t(3), &want("running_var"), &mut failures);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(t(4).int64_value(&[]), fx["num_batches_tracked"].as_i64().unwrap());
}
