//! The vision model zoo (`models::resnet18` …) against torchvision 0.26: state_dict keys, shapes
//! and dtypes of the full-size models, parameter counts, and forward outputs on weights both sides
//! fill by one formula (tests/fixtures/models/gen_models.py), so no weights are committed.
use crate::common::{root, temp_dir};
use lt::tensor::Tensor;
use rhai::{Dynamic, Scope};
use serde_json::Value;
use std::path::Path;
use tch::{Device, Kind};

fn fixture(name: &str) -> Value {
    let p = root().join("tests/fixtures/models").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).expect("read fixture")).expect("parse fixture")
}

fn shape_of(v: &Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|s| s.as_i64().unwrap()).collect()
}

fn tensor(v: &Value) -> tch::Tensor {
    let data: Vec<f64> = v["data"].as_array().unwrap().iter().map(|d| d.as_f64().unwrap()).collect();
    tch::Tensor::from_slice(&data).reshape(shape_of(&v["shape"]).as_slice())
}

/// Runs `src` with `scope` (the model's own functions come from the embedded stdlib).
fn run(src: &str, scope: &mut Scope) -> Result<Dynamic, String> {
    let script =
        lt::script::runner::Script::from_source(Path::new("zoo.rhai"), src.to_string()).map_err(|e| e.to_string())?;
    script.run(scope).map_err(|e| e.to_string())
}

fn dtype_name(k: Kind) -> String {
    match k {
        Kind::Float => "float32".into(),
        Kind::Int64 => "int64".into(),
        other => format!("{other:?}"),
    }
}

/// gen_models.py's `fill`: the j-th entry (keys sorted) of n elements gets v = sin(0.5 i + j) in
/// float64, then scaled by what the entry is (see there).
fn formula(j: usize, key: &str, shape: &[i64], kind: Kind) -> tch::Tensor {
    let n: i64 = shape.iter().product();
    if !matches!(kind, Kind::Float | Kind::Double) {
        return tch::Tensor::zeros(shape, (kind, Device::Cpu));
    }
    let v = (tch::Tensor::arange(n, (Kind::Double, Device::Cpu)) * 0.5 + j as f64).sin().reshape(shape);
    let v = if key.ends_with("running_var") {
        v * 0.25 + 1.0
    } else if key.ends_with("running_mean") {
        v * 0.1
    } else if shape.len() >= 2 {
        v * (2.0 / (n / shape[0]) as f64).sqrt()
    } else if key.ends_with("weight") {
        v * 0.1 + 1.0
    } else {
        v * 0.1
    };
    v.to_kind(kind)
}

/// Fills a model's parameters and buffers in place by [`formula`].
fn fill(m: &Dynamic) {
    let mut sd = lt::nn::tree::state_dict(m).unwrap();
    sd.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (j, (k, t)) in sd.iter().enumerate() {
            t.handle().copy_(&formula(j, k, &t.size(), t.kind()));
        }
    });
}

fn example_input(shape: &[i64]) -> tch::Tensor {
    let n: i64 = shape.iter().product();
    (tch::Tensor::arange(n, (Kind::Double, Device::Cpu)) * 0.1).sin().to_kind(Kind::Float).reshape(shape)
}

/// Max |a - b| / (1 + |b|). Why 1e-5 suffices and is tight: outputs are O(1) float32 sums over
/// ≤ 100 layers of rounding at 6e-8 relative each, far below 1e-5, while a wrong layer, stride,
/// padding, order or init formula moves them by 1e-2 or more.
fn max_rel(got: &tch::Tensor, want: &tch::Tensor) -> f64 {
    assert_eq!(got.size(), want.size());
    let g = got.to_kind(Kind::Double);
    ((&g - want).abs() / (want.abs() + 1.0)).max().double_value(&[])
}

/// The full-size model's layout and parameter count against torchvision's, then the small-head
/// model's forward (eval mode; train mode too where the fixture has it) on formula weights.
fn check_case(name: &str, c: &Value, failures: &mut Vec<String>) {
    check_case_named(name, name, c, failures)
}

/// [`check_case`] of the full-size `models::{full}()`, reported as `name`.
fn check_case_named(full: &str, name: &str, c: &Value, failures: &mut Vec<String>) {
    let full = run(&format!("models::{full}()"), &mut Scope::new()).unwrap();
    let mut got: Vec<(String, Vec<i64>, String)> = lt::nn::tree::state_dict(&full)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, t.size(), dtype_name(t.kind())))
        .collect();
    got.sort();
    let mut want: Vec<(String, Vec<i64>, String)> = c["state_dict"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e[0].as_str().unwrap().to_string(), shape_of(&e[1]), e[2].as_str().unwrap().to_string()))
        .collect();
    want.sort();
    if got != want {
        let only_lt: Vec<_> = got.iter().filter(|e| !want.contains(e)).take(5).collect();
        let only_tv: Vec<_> = want.iter().filter(|e| !got.contains(e)).take(5).collect();
        failures.push(format!("{name}: state_dict differs; lt only {only_lt:?}; torchvision only {only_tv:?}"));
    }
    let params: i64 = lt::nn::tree::parameters(&full).unwrap().iter().map(|p| p.numel() as i64).sum();
    if params != c["params"].as_i64().unwrap() {
        failures.push(format!("{name}: {params} parameters, torchvision {}", c["params"]));
    }
    drop(full);

    let kwargs = serde_json::to_string(&c["small_kwargs"]).unwrap().replace('"', "");
    let small = c["small_fn"].as_str().unwrap();
    let m = run(&format!("models::{small}(#{kwargs})"), &mut Scope::new()).unwrap();
    fill(&m);
    let mut scope = Scope::new();
    scope.push("m", m);
    scope.push("x", Tensor::new(example_input(&shape_of(&c["input_shape"]))));
    let y = run("m.eval_mode(); torch::no_grad(|| m.forward(x))", &mut scope).unwrap().cast::<Tensor>();
    let err = max_rel(&y, &tensor(&c["eval_out"]));
    if err.is_nan() || err > 1e-5 {
        failures.push(format!("{name}: eval output differs from torchvision's by {err:e}"));
    }
    if let Some(want) = c.get("train_out") {
        let y = run("m.train(true); torch::no_grad(|| m.forward(x))", &mut scope).unwrap().cast::<Tensor>();
        let err = max_rel(&y, &tensor(want));
        if err.is_nan() || err > 1e-5 {
            failures.push(format!("{name}: train output differs from torchvision's by {err:e}"));
        }
        let m = scope.get_value::<rhai::Map>("m").unwrap();
        let buffers: std::collections::HashMap<String, Tensor> =
            lt::nn::tree::named_buffers(&Dynamic::from_map(m)).unwrap().into_iter().collect();
        for (k, want) in c["buffers_after_train"].as_object().unwrap() {
            let err = max_rel(&buffers[k], &tensor(want));
            if err.is_nan() || err > 1e-5 {
                failures.push(format!("{name}: {k} after a training forward differs by {err:e}"));
            }
        }
    }
}

#[test]
fn resnets_have_torchvision_layouts_parameter_counts_and_outputs() {
    let _rng = crate::common::rng_guard();
    let fx = fixture("resnet.json");
    let mut failures = Vec::new();
    let cases = fx["cases"].as_object().unwrap();
    for name in ["resnet18", "resnet34", "resnet50", "resnet101"] {
        check_case(name, &cases[name], &mut failures);
    }
    assert!(cases["resnet18"]["params"] == 11_689_512i64, "fixture: {}", cases["resnet18"]["params"]);
    assert!(failures.is_empty(), "{} mismatches with torchvision:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn mobilenet_v2_vit_and_unet_have_reference_layouts_parameter_counts_and_outputs() {
    let _rng = crate::common::rng_guard();
    let mut failures = Vec::new();
    for (file, full) in [("mobilenet.json", "mobilenet_v2"), ("vit.json", "vit_b_16"), ("unet.json", "unet")] {
        for (case, c) in fixture(file)["cases"].as_object().unwrap() {
            check_case_named(full, case, c, &mut failures);
        }
    }
    assert!(failures.is_empty(), "{} mismatches with the reference:\n{}", failures.len(), failures.join("\n"));
}

/// A weights file of the full-size torchvision layout (as `resnet50-*.pth` converted to
/// safetensors holds) loads strictly into `models::resnet50()`, value for value; a file missing a
/// key or with a wrong shape does not.
#[test]
fn a_full_size_resnet50_weights_file_loads_strict() {
    let _rng = crate::common::rng_guard();
    let fx = fixture("resnet.json");
    let layout = fx["cases"]["resnet50"]["state_dict"].as_array().unwrap().clone();
    let mut keys: Vec<&str> = layout.iter().map(|e| e[0].as_str().unwrap()).collect();
    keys.sort();
    let tensors: Vec<(String, tch::Tensor)> = layout
        .iter()
        .map(|e| {
            let k = e[0].as_str().unwrap();
            let j = keys.iter().position(|x| *x == k).unwrap();
            let kind = if e[2] == "int64" { Kind::Int64 } else { Kind::Float };
            (k.to_string(), formula(j, k, &shape_of(&e[1]), kind))
        })
        .collect();
    let dir = temp_dir("resnet50_full");
    let path = dir.join("resnet50.safetensors");
    lt::nn::io::write_safetensors(&path, &tensors, None).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > 100_000_000, "a full-size file");
    let mut scope = Scope::new();
    scope.push("path", path.to_string_lossy().to_string());
    let r = run(
        "let m = models::resnet50();\nlet r = m.load_state_dict(nn::load(path), #{strict: true});\n\
         [m, r.missing_keys.len() + r.unexpected_keys.len()]",
        &mut scope,
    )
    .unwrap();
    let r = r.cast::<rhai::Array>();
    assert_eq!(r[1].as_int().unwrap(), 0);
    let sd: std::collections::HashMap<String, Tensor> = lt::nn::tree::state_dict(&r[0]).unwrap().into_iter().collect();
    assert_eq!(sd.len(), tensors.len());
    for (k, t) in &tensors {
        assert!(sd[k].equal(t), "{k} was not loaded");
    }
    drop(r);

    let missing: Vec<(String, tch::Tensor)> = tensors
        .iter()
        .filter(|(k, _)| k != "layer3.5.bn2.running_var")
        .map(|(k, t)| (k.clone(), t.shallow_clone()))
        .collect();
    lt::nn::io::write_safetensors(&dir.join("missing.safetensors"), &missing, None).unwrap();
    let e = run(
        &format!(
            "models::resnet50().load_state_dict(nn::load({:?}), #{{strict: true}})",
            dir.join("missing.safetensors")
        ),
        &mut Scope::new(),
    )
    .unwrap_err();
    assert!(e.contains("layer3.5.bn2.running_var"), "{e}");
    let e = run(
        &format!("models::resnet50(#{{num_classes: 10}}).load_state_dict(nn::load({path:?}), #{{strict: true}})"),
        &mut Scope::new(),
    )
    .unwrap_err();
    assert!(e.contains("fc.weight"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resnet_options_are_checked_and_do_what_they_say() {
    let _rng = crate::common::rng_guard();
    let e = run("models::resnet18(#{num_class: 10})", &mut Scope::new()).unwrap_err();
    assert!(e.contains("unknown option 'num_class'") && e.contains("num_classes"), "{e}");
    let e = run("models::resnet34(#{num_classes: 0})", &mut Scope::new()).unwrap_err();
    assert!(e.contains("num_classes must be an integer >= 1, got 0"), "{e}");
    let e = run("models::resnet50(#{num_classes: 2.5})", &mut Scope::new()).unwrap_err();
    assert!(e.contains("got 2.5"), "{e}");
    let ok = run(
        "let m = models::resnet18(#{num_classes: 3, zero_init_residual: true});\n\
         let bn2 = m.layer2.layers[1].bn2.weight;\n\
         m.fc.weight.shape == [3, 512] && bn2.abs().sum().item() == 0.0 && m.layer2.layers[1].bn1.weight.sum().item() == 128.0",
        &mut Scope::new(),
    )
    .unwrap();
    assert!(ok.as_bool().unwrap());
    // torchvision's init: kaiming_normal_(fan_out, relu) convolutions, std sqrt(2 / (out * k * k))
    let std =
        run("torch::manual_seed(0); models::resnet18().layer1.layers[0].conv1.weight.std().item()", &mut Scope::new())
            .unwrap()
            .as_float()
            .unwrap();
    let want = (2.0f64 / (64.0 * 9.0)).sqrt();
    assert!((std - want).abs() < 0.02 * want, "{std} vs {want}");
}
