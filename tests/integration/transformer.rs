//! nn.Transformer and its parts against PyTorch 2.11: outputs, input gradients and parameter
//! gradients of decoder layers, encoder / decoder stacks and whole Transformers with every kind of
//! mask, and their seeded default init (tests/fixtures/models/gen_transformer.py).
use crate::common::root;
use crate::nn_fixtures::{run_cases, seeded_init_mismatches};
use lt::tensor::Tensor;
use serde_json::Value;
use std::path::Path;

fn fixture() -> Value {
    let p = root().join("tests/fixtures/models/transformer_layers.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("read fixture")).expect("parse fixture")
}

fn run(src: &str) -> Result<rhai::Dynamic, String> {
    let script =
        lt::script::runner::Script::from_source(Path::new("t.rhai"), src.to_string()).map_err(|e| e.to_string())?;
    script.run(&mut rhai::Scope::new()).map_err(|e| e.to_string())
}

#[test]
fn transformer_layers_match_pytorch() {
    let _rng = crate::common::rng_guard();
    let fx = fixture();
    let cases = fx["cases"].as_array().unwrap();
    let failures = run_cases(cases);
    assert_eq!(cases.len(), 8);
    assert!(failures.is_empty(), "{} mismatches with PyTorch:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn transformer_seeded_init_equals_pytorch() {
    let _rng = crate::common::rng_guard();
    let failures = seeded_init_mismatches(&fixture()["seeded"]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn stack_layers_are_independent_copies() {
    let _rng = crate::common::rng_guard();
    let src = "let layer = nn::transformer_encoder_layer(4, 2, #{dim_feedforward: 8});\n\
               let enc = nn::transformer_encoder(layer, 2);\n\
               let same = enc.layers[0].linear1.weight.equal(enc.layers[1].linear1.weight);\n\
               init::zeros_(enc.layers[0].linear1.weight);\n\
               [same, enc.layers[1].linear1.weight.abs().sum().item() > 0.0, layer.linear1.weight.abs().sum().item() > 0.0, enc.parameters().len()]";
    let r = run(src).unwrap().cast::<rhai::Array>();
    assert!(r[0].as_bool().unwrap(), "copies start equal");
    assert!(r[1].as_bool().unwrap() && r[2].as_bool().unwrap(), "copies own their tensors");
    assert_eq!(r[3].as_int().unwrap(), 2 * 12);
}

#[test]
fn square_subsequent_mask_is_pytorchs() {
    let m = run("nn::generate_square_subsequent_mask(3)").unwrap().cast::<Tensor>();
    let v: Vec<f32> = Vec::try_from(m.reshape([-1])).unwrap();
    let inf = f32::NEG_INFINITY;
    assert_eq!(v, vec![0.0, inf, inf, 0.0, 0.0, inf, 0.0, 0.0, 0.0]);
    assert_eq!(m.kind(), tch::Kind::Float);
}

#[test]
fn transformer_bad_input_is_a_clear_error() {
    let _rng = crate::common::rng_guard();
    let cases = [
        ("nn::transformer_encoder(nn::linear(2, 2), 2)", "expected a TransformerEncoderLayer"),
        ("nn::transformer_encoder(nn::transformer_encoder_layer(4, 2), 0)", "num_layers must be at least 1, got 0"),
        ("nn::transformer_encoder(nn::transformer_encoder_layer(4, 2), 1, #{enable_nested_tensor: true})", "enable_nested_tensor"),
        ("nn::transformer_decoder_layer(4, 2, #{activation: \"tanh\"})", "activation should be"),
        ("nn::transformer_decoder_layer(4, 3)", "divisible"),
        ("nn::transformer(#{d_model: 4, nhead: 2, heads: 3})", "heads"),
        (
            "let t = nn::transformer(#{d_model: 4, nhead: 2, num_encoder_layers: 1, num_decoder_layers: 1, dim_feedforward: 4});\n\
             t.forward(torch::randn([3, 2, 4]), torch::randn([3, 5, 4]))",
            "the batch number of src and tgt must be equal",
        ),
        (
            "let t = nn::transformer(#{d_model: 4, nhead: 2, num_encoder_layers: 1, num_decoder_layers: 1, dim_feedforward: 4});\n\
             t.forward(torch::randn([3, 2, 4]), torch::randn([3, 2, 5]))",
            "must be equal to d_model (4)",
        ),
        (
            "let d = nn::transformer_decoder_layer(4, 2, #{dim_feedforward: 4});\n\
             d.forward(torch::randn([3, 2, 4]), torch::randn([5, 2, 4]), #{tgt_mask: torch::zeros([2, 2])})",
            "attn_mask should have shape",
        ),
        ("nn::generate_square_subsequent_mask(-1)", "sz must be ≥ 0, got -1"),
    ];
    for (src, want) in cases {
        match run(src) {
            Ok(_) => panic!("{src}: no error"),
            Err(e) => assert!(e.contains(want), "{src}: {e}"),
        }
    }
}
