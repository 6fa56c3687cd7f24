//! The text model zoo (`models::gpt2`) against Hugging Face transformers 4.57.1: a real
//! `save_pretrained` file of a tiny GPT-2 loads strictly and gives transformers' logits and loss
//! (tests/fixtures/models/gen_gpt2.py), state_dict keys and shapes are transformers', and a
//! full-size `gpt2` model.safetensors loads strictly into `models::gpt2(#{})`, and files laid out as
//! the Hub's are (a base-model file, a file with heads, legacy names) load with `models::load_pretrained`.
use crate::common::root;
use crate::nn_fixtures::{close, tensor};
use lt::tensor::Tensor;
use rhai::{Dynamic, Map, Scope};
use serde_json::Value;
use std::io::Write;
use std::path::Path;

fn fixture(name: &str) -> Value {
    let p = root().join("tests/fixtures/models").join(name);
    serde_json::from_str(&std::fs::read_to_string(p).expect("read fixture")).expect("parse fixture")
}

fn run(src: &str, scope: &mut Scope) -> Dynamic {
    let script = lt::script::runner::Script::from_source(Path::new("zoo.rhai"), src.to_string()).unwrap();
    script.run(scope).unwrap_or_else(|e| panic!("{e}"))
}

fn config_map(v: &Value) -> Map {
    v.as_object().unwrap().iter().map(|(k, v)| (k.as_str().into(), Dynamic::from_int(v.as_i64().unwrap()))).collect()
}

/// `(key, shape)` pairs of a manifest list.
fn keys_shapes(v: &Value) -> Vec<(String, Vec<i64>)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let shape = e[1].as_array().unwrap().iter().map(|s| s.as_i64().unwrap()).collect();
            (e[0].as_str().unwrap().to_string(), shape)
        })
        .collect()
}

fn state_dict_shapes(m: &Dynamic) -> Vec<(String, Vec<i64>)> {
    let mut v: Vec<_> = lt::nn::tree::state_dict(m).unwrap().into_iter().map(|(k, t)| (k, t.size())).collect();
    v.sort();
    v
}

/// `model.forward(inputs)` on a fixture case's named input tensors.
fn forward_case(model: &Dynamic, c: &Value) -> Map {
    let inputs: Map = c["inputs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().into(), Dynamic::from(Tensor::new(tensor(v)))))
        .collect();
    let mut scope = Scope::new();
    scope.push("m", model.clone());
    scope.push("inputs", inputs);
    run("m.forward(inputs)", &mut scope).cast::<Map>()
}

#[test]
fn gpt2_matches_transformers_on_a_saved_model() {
    let _rng = crate::common::rng_guard();
    let fx = fixture("gpt2_tiny.json");
    let mut scope = Scope::new();
    scope.push("config", config_map(&fx["config"]));
    scope.push("path", root().join("tests/fixtures/models/gpt2_tiny.safetensors").display().to_string());
    let model = run(
        "let m = models::gpt2(config);\nlet sd = nn::load(path);\nlet r = m.load_state_dict(sd, #{strict: true});\n\
         m.eval_mode();\nm",
        &mut scope,
    );
    // keys and shapes: transformers' state_dict (which lists the tied lm_head.weight too)
    let mut want = keys_shapes(&fx["state_dict"]);
    want.sort();
    assert_eq!(state_dict_shapes(&model), want);
    let n = lt::nn::tree::num_parameters(&model, false).unwrap();
    assert_eq!(n, fx["num_parameters"].as_i64().unwrap(), "parameters counted as transformers does (tied once)");

    let mut failures = Vec::new();
    for c in fx["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let out = forward_case(&model, c);
        let logits = out["logits"].clone().cast::<Tensor>();
        // float32 transformer of 2 blocks: sums of ≤ 64 products per layer, as in nn_fixtures' bound
        close(&format!("{name}: logits"), &logits, &tensor(&c["logits"]), &mut failures);
        if let Some(want) = c["loss"].as_f64() {
            let got = out["loss"].clone().cast::<Tensor>().double_value(&[]);
            if (got - want).abs() > 1e-5 * (1.0 + want.abs()) {
                failures.push(format!("{name}: loss {got} vs transformers {want}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn gpt2_lm_head_is_tied_to_the_token_embedding() {
    let _rng = crate::common::rng_guard();
    let src = "torch::manual_seed(0);\n\
               let m = models::gpt2(#{vocab_size: 11, n_positions: 8, n_embd: 8, n_layer: 1, n_head: 2});\n\
               let sd = m.state_dict();\n\
               let names = m.named_parameters().map(|p| p[0]);\n\
               init::zeros_(m.transformer.wte.weight);\n\
               let only_wte = #{}; for k in sd.keys() { if k != \"lm_head.weight\" { only_wte[k] = sd[k]; } }\n\
               let r = m.load_state_dict(only_wte, #{strict: true});\n\
               [sd.contains(\"lm_head.weight\"), names.contains(\"lm_head.weight\") != names.contains(\"transformer.wte.weight\"),\n\
                m.lm_head.weight.abs().sum().item(), r.missing_keys.len()]";
    let r = run(src, &mut Scope::new()).cast::<rhai::Array>();
    assert!(r[0].as_bool().unwrap(), "state_dict lists lm_head.weight");
    assert!(r[1].as_bool().unwrap(), "the tied tensor is one parameter");
    assert_eq!(r[2].as_float().unwrap(), 0.0, "lm_head.weight is wte.weight");
    assert_eq!(r[3].as_int().unwrap(), 0, "a file without lm_head.weight loads strictly");
}

/// Writes a safetensors file of float32 zeros with these tensors. The data is a hole the file
/// system fills with zeros (`set_len`), so the 500 MB take no time to write.
fn write_zero_safetensors(path: &Path, tensors: &[(String, Vec<i64>)]) {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0u64;
    for (k, shape) in tensors {
        let bytes = 4 * shape.iter().product::<i64>() as u64;
        header.insert(
            k.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut json = serde_json::to_string(&header).unwrap();
    while !json.len().is_multiple_of(8) {
        json.push(' ');
    }
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(&(json.len() as u64).to_le_bytes()).unwrap();
    f.write_all(json.as_bytes()).unwrap();
    f.set_len(8 + json.len() as u64 + offset).unwrap();
}

#[test]
fn full_size_gpt2_safetensors_loads_strictly() {
    let _rng = crate::common::rng_guard();
    let fx = fixture("gpt2_manifest.json");
    let dir = crate::common::temp_dir("gpt2_full");
    let path = dir.join("model.safetensors");
    let in_file = keys_shapes(&fx["safetensors"]);
    assert!(!in_file.iter().any(|(k, _)| k == "lm_head.weight"), "transformers leaves the tied head out");
    write_zero_safetensors(&path, &in_file);
    let mut scope = Scope::new();
    scope.push("path", path.display().to_string());
    let model = run(
        "let m = models::gpt2(#{});\nlet r = m.load_state_dict(nn::load(path), #{strict: true});\n\
         if m.lm_head.weight.abs().max().item() != 0.0 { throw \"lm_head.weight not loaded through the tie\"; }\nm",
        &mut scope,
    );
    let mut want = keys_shapes(&fx["state_dict"]);
    want.sort();
    assert_eq!(state_dict_shapes(&model), want);
    let n = lt::nn::tree::num_parameters(&model, false).unwrap();
    assert_eq!(n, fx["num_parameters"].as_i64().unwrap());
    assert_eq!(n, 124_439_808);
    drop(model);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn gpt2_bad_config_is_a_clear_error() {
    let _rng = crate::common::rng_guard();
    let cases = [
        ("models::gpt2(#{n_layers: 2})", "unknown option 'n_layers'; valid options: [\"activation_function\""),
        ("models::gpt2(#{n_embd: 10, n_head: 3})", "n_embd (10) must be divisible by n_head (3)"),
        ("models::gpt2(#{n_layer: 0})", "n_layer must be at least 1, got 0"),
        ("models::gpt2(#{n_embd: \"big\"})", "option 'n_embd' must be i64, got string"),
        ("models::gpt2(#{attn_pdrop: 1.5})", "attn_pdrop must be in [0, 1], got 1.5"),
        ("models::gpt2(#{activation_function: \"gelu_fast\"})", "activation_function 'gelu_fast' is not one of"),
        (
            "let m = models::gpt2(#{vocab_size: 5, n_positions: 4, n_embd: 4, n_layer: 1, n_head: 1});\nm.forward(torch::zeros([1, 6], #{dtype: \"int64\"}))",
            "sequence length 6 is longer than n_positions (4)",
        ),
        (
            "let m = models::gpt2(#{vocab_size: 5, n_positions: 4, n_embd: 4, n_layer: 1, n_head: 1});\nm.forward(#{input_ids: torch::zeros([1, 2], #{dtype: \"int64\"}), mask: 1})",
            "unknown input 'mask'",
        ),
    ];
    for (src, want) in cases {
        let script = lt::script::runner::Script::from_source(Path::new("bad.rhai"), src.to_string()).unwrap();
        match script.run(&mut Scope::new()) {
            Ok(_) => panic!("{src}: no error"),
            Err(e) => assert!(e.to_string().contains(want), "{src}: {e}"),
        }
    }
}

#[test]
fn bert_matches_transformers_on_a_saved_model() {
    let _rng = crate::common::rng_guard();
    let fx = fixture("bert_tiny.json");
    let mut scope = Scope::new();
    scope.push("config", config_map(&fx["config"]));
    scope.push("path", root().join("tests/fixtures/models/bert_tiny.safetensors").display().to_string());
    let model = run(
        "let m = models::bert(config);\nm.load_state_dict(nn::load(path), #{strict: true});\nm.eval_mode();\nm",
        &mut scope,
    );
    let mut want = keys_shapes(&fx["state_dict"]);
    want.sort();
    assert_eq!(state_dict_shapes(&model), want);
    assert_eq!(lt::nn::tree::num_parameters(&model, false).unwrap(), fx["num_parameters"].as_i64().unwrap());
    let mut failures = Vec::new();
    for c in fx["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let out = forward_case(&model, c);
        for k in ["last_hidden_state", "pooler_output"] {
            let got = out[k].clone().cast::<Tensor>();
            close(&format!("{name}: {k}"), &got, &tensor(&c[k]), &mut failures);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn full_size_bert_safetensors_loads_strictly() {
    let _rng = crate::common::rng_guard();
    let fx = fixture("bert_manifest.json");
    let dir = crate::common::temp_dir("bert_full");
    let path = dir.join("model.safetensors");
    write_zero_safetensors(&path, &keys_shapes(&fx["safetensors"]));
    let mut scope = Scope::new();
    scope.push("path", path.display().to_string());
    let model = run("let m = models::bert(#{});\nm.load_state_dict(nn::load(path), #{strict: true});\nm", &mut scope);
    let mut want = keys_shapes(&fx["state_dict"]);
    want.sort();
    assert_eq!(state_dict_shapes(&model), want);
    let n = lt::nn::tree::num_parameters(&model, false).unwrap();
    assert_eq!(n, fx["num_parameters"].as_i64().unwrap());
    assert_eq!(n, 109_482_240);
    drop(model);
    std::fs::remove_dir_all(&dir).ok();
}

/// `models::load_pretrained(model, path)` on full-size files laid out as the Hub's are
/// (tests/fixtures/models/gen_pretrained_layouts.py): `gpt2`'s GPT2Model file (no `transformer.`
/// prefix, the legacy `attn.bias` / `attn.masked_bias` buffers) loads strictly into
/// GPT2LMHeadModel with the head tied; `bert-base-uncased`'s BertForPreTraining file (`bert.`
/// prefix, `cls.` heads, `LayerNorm.gamma`/`beta`) is refused strictly naming the heads, and with
/// `strict: false` loads every BertModel tensor and reports the heads as transformers does.
#[test]
fn hub_layout_files_load_with_load_pretrained() {
    let _rng = crate::common::rng_guard();
    let fx = fixture("pretrained_layouts.json");
    let dir = crate::common::temp_dir("hub_layouts");
    let max_abs = |m: &Dynamic, expr: &str| -> f64 {
        let mut scope = Scope::new();
        scope.push("m", m.clone());
        run(&format!("{expr}.abs().max().item()"), &mut scope).as_float().unwrap()
    };
    let report = |r: &Dynamic, key: &str| -> Vec<String> {
        let r = r.read_lock::<Map>().unwrap();
        let list = r[key].read_lock::<rhai::Array>().unwrap().clone();
        list.iter().map(|s| s.to_string()).collect()
    };

    let path = dir.join("gpt2.safetensors");
    write_zero_safetensors(&path, &keys_shapes(&fx["gpt2"]["tensors"]));
    let mut scope = Scope::new();
    scope.push("path", path.display().to_string());
    let out =
        run("let m = models::gpt2(#{});\n[m, models::load_pretrained(m, path)]", &mut scope).cast::<rhai::Array>();
    assert!(report(&out[1], "missing_keys").is_empty() && report(&out[1], "unexpected_keys").is_empty());
    for t in ["m.transformer.wte.weight", "m.transformer.h[11].attn.c_attn.weight", "m.transformer.ln_f.weight"] {
        assert_eq!(max_abs(&out[0], t), 0.0, "{t} was not loaded");
    }
    assert_eq!(max_abs(&out[0], "m.lm_head.weight"), 0.0, "lm_head.weight is the loaded wte.weight");
    drop(out);
    std::fs::remove_file(&path).ok();

    let path = dir.join("bert.safetensors");
    write_zero_safetensors(&path, &keys_shapes(&fx["bert"]["tensors"]));
    let heads: Vec<String> = fx["bert"]["unexpected_keys"].as_array().unwrap().iter().map(|k| k.to_string()).collect();
    let mut scope = Scope::new();
    scope.push("path", path.display().to_string());
    let strict = "let m = models::bert(#{});\nmodels::load_pretrained(m, path)";
    let script = lt::script::runner::Script::from_source(Path::new("zoo.rhai"), strict.to_string()).unwrap();
    let e = script.run(&mut scope).expect_err("heads the model does not have").to_string();
    assert!(e.contains("cls.seq_relationship.weight") && e.contains("nothing was loaded"), "{e}");
    let src = "let m = models::bert(#{});\n[m, models::load_pretrained(m, path, #{strict: false})]";
    let out = run(src, &mut scope).cast::<rhai::Array>();
    assert!(report(&out[1], "missing_keys").is_empty(), "{:?}", report(&out[1], "missing_keys"));
    let mut got: Vec<String> = report(&out[1], "unexpected_keys").iter().map(|k| format!("\"{k}\"")).collect();
    got.sort();
    assert_eq!(got, heads);
    for t in ["m.embeddings.LayerNorm.weight", "m.encoder.layer[11].output.LayerNorm.bias", "m.pooler.dense.weight"] {
        assert_eq!(max_abs(&out[0], t), 0.0, "{t} was not loaded (LayerNorm.gamma/beta are weight/bias)");
    }
    drop(out);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn load_pretrained_refuses_bad_arguments() {
    let mut scope = Scope::new();
    let cases = [
        ("models::load_pretrained(nn::linear(2, 2), #{})", "expected a Hugging Face model of the zoo"),
        ("models::load_pretrained(models::gpt2(#{n_layer: 1, n_embd: 4, n_head: 2, vocab_size: 5, n_positions: 4}), #{}, #{strit: true})", "unknown option 'strit' (valid: strict)"),
        ("models::load_pretrained(models::bert(#{num_hidden_layers: 1, hidden_size: 4, num_attention_heads: 2, intermediate_size: 4, vocab_size: 5}), 3)", "expected a path or a state_dict map"),
    ];
    for (src, want) in cases {
        let script = lt::script::runner::Script::from_source(Path::new("zoo.rhai"), src.to_string()).unwrap();
        let e = script.run(&mut scope).expect_err(src).to_string();
        assert!(e.contains(want), "{src}: {e}");
    }
}
