//! The module system: script-composed modules, parameter discovery and naming, state_dict in and
//! out, train/eval reach, in-place `to`, freezing, apply, summary, safetensors, shape errors.
use crate::common::{eval, eval_bool, eval_f64, temp_dir};

const MODEL: &str = r#"
fn forward(x) { x * 1000 }   // a script function named forward must not break layer calls
torch::manual_seed(0);
let model = #{
    encoder: nn::sequential([nn::linear(4, 8), nn::relu(), nn::dropout(0.5)]),
    blocks: [#{ fc: nn::linear(8, 8), norm: nn::layer_norm(8), forward: |x| this.norm.forward(this.fc.forward(x)) }],
    head: nn::linear(8, 2),
    scale: nn::parameter(torch::ones([2])),
    note: torch::zeros([1]),
    hparams: #{ lr: 0.1 },
    forward: |x| {
        let h = this.encoder.forward(x);
        for b in this.blocks { h = b.forward(h); }
        this.head.forward(h) * this.scale
    },
};
"#;

fn with_model(rest: &str) -> String {
    format!("{MODEL}\n{rest}")
}

#[test]
fn parameters_are_found_and_named_like_pytorch() {
    let names = eval(&with_model("model.named_parameters().map(|p| p[0])")).unwrap();
    let names: Vec<String> = names.into_array().unwrap().into_iter().map(|d| d.into_string().unwrap()).collect();
    assert_eq!(
        names,
        [
            "blocks.0.fc.weight",
            "blocks.0.fc.bias",
            "blocks.0.norm.weight",
            "blocks.0.norm.bias",
            "encoder.0.weight",
            "encoder.0.bias",
            "head.weight",
            "head.bias",
            "scale"
        ]
    );
    // plain tensors that do not require grad are attributes, not parameters
    assert!(eval_bool(&with_model("!model.state_dict().contains(\"note\")")));
    assert_eq!(eval_f64(&with_model("model.num_parameters().to_float()")), (40 + 72 + 16 + 18 + 2) as f64);
}

#[test]
fn layer_calls_survive_a_script_forward_function() {
    let v = eval_f64(&with_model(
        "model.train(false); model.forward(torch::ones([3, 4])).shape[1].to_float() + forward(1).to_float()",
    ));
    assert_eq!(v, 1002.0);
}

#[test]
fn train_and_eval_reach_every_module() {
    assert!(eval_bool(&with_model(
        "model.eval_mode(); let a = model.encoder.layers[2].training == false && model.blocks[0].norm.training == false && model.training == false;
         model.train(); a && model.encoder.layers[2].training && model.blocks[0].fc.training"
    )));
    // dropout is the identity in eval mode and random in training mode
    assert!(eval_bool(&with_model(
        "let x = torch::ones([64, 4]); model.eval_mode(); let a = model.forward(x); let b = model.forward(x);
         model.train(); let c = model.forward(x); a.equal(b) && !a.equal(c)"
    )));
}

#[test]
fn shape_errors_name_the_layer_path_and_shapes() {
    let e = eval(&with_model("model.train(); model.forward(torch::ones([2, 5]))")).unwrap_err();
    assert!(e.contains("encoder.0 (Linear 4→8): expected last dim 4, got 5"), "{e}");
    let e = eval("nn::conv2d(3, 4, 3).forward(torch::ones([1, 2, 5, 5]))").unwrap_err();
    assert!(e.contains("Conv2d (3→4 k[3, 3]): expected input with 3 channels, got 2"), "{e}");
    let e = eval("nn::lstm(3, 4).forward(torch::ones([5, 2, 7]))").unwrap_err();
    assert!(e.contains("LSTM (3→4): expected input last dim 3"), "{e}");
    let e = eval("nn::linear(2, 2, #{bais: false})").unwrap_err();
    assert!(e.contains("bias"), "{e}");
}

#[test]
fn state_dict_round_trips_and_load_reports_problems() {
    assert!(eval_bool(&with_model(
        "torch::manual_seed(1);
         let other = #{ encoder: nn::sequential([nn::linear(4, 8), nn::relu(), nn::dropout(0.5)]),
                        blocks: [#{ fc: nn::linear(8, 8), norm: nn::layer_norm(8) }], head: nn::linear(8, 2),
                        scale: nn::parameter(torch::zeros([2])) };
         let w = other.head.weight;            // a handle held elsewhere (like an optimizer)
         let r = other.load_state_dict(model.state_dict());
         r.missing_keys.len() == 0 && w.equal(model.head.weight) && other.scale.equal(model.scale)"
    )));
    let e = eval(&with_model(
        "let sd = model.state_dict(); sd.remove(\"head.bias\"); sd.extra = torch::ones([1]); model.load_state_dict(sd)",
    ))
    .unwrap_err();
    assert!(
        e.contains("Missing key(s) in state_dict: \"head.bias\"")
            && e.contains("Unexpected key(s) in state_dict: \"extra\""),
        "{e}"
    );
    assert!(eval_bool(&with_model(
        "let sd = model.state_dict(); sd.remove(\"head.bias\"); let r = model.load_state_dict(sd, #{strict: false}); r.missing_keys == [\"head.bias\"]"
    )));
    let e = eval(&with_model("let sd = model.state_dict(); sd[\"head.bias\"] = torch::ones([3]); model.load_state_dict(sd, #{strict: false})")).unwrap_err();
    assert!(e.contains("size mismatch for head.bias"), "{e}");
}

#[test]
fn freezing_keeps_parameters_and_stops_gradients() {
    assert!(eval_bool(&with_model(
        "model.requires_grad_(false);
         let sd_ok = model.state_dict().contains(\"scale\") && model.named_parameters().len() == 9;
         sd_ok && model.num_parameters(true) == 0 && !model.head.weight.requires_grad && !model.scale.requires_grad"
    )));
    assert!(eval_bool(&with_model(
        "model.requires_grad_(false); model.requires_grad_(true); model.num_parameters(true) == model.num_parameters()"
    )));
}

#[test]
fn to_moves_in_place_and_zero_grad_clears() {
    assert!(eval_bool(&with_model(
        "let w = model.head.weight; model.to(\"float64\");
         let a = w.dtype == \"float64\" && model.encoder.layers[0].bias.dtype == \"float64\";
         model.to(#{dtype: \"float32\"}); a && w.dtype == \"float32\""
    )));
    let g = eval_f64(&with_model(
        "model.eval_mode(); model.forward(torch::ones([2, 4])).sum().backward();
         let before = model.head.weight.grad.abs().sum().item();
         model.zero_grad(); before + model.head.weight.grad.abs().sum().item() * 1000.0",
    ));
    assert!(g > 0.0 && g < 1000.0, "{g}");
}

#[test]
fn apply_visits_every_module_children_first() {
    assert!(eval_bool(&with_model(
        "let seen = [];
         model.apply(|m| { if m._type == \"Linear\" { init::zeros_(m.weight); } });
         model.head.weight.abs().sum().item() == 0.0 && model.blocks[0].fc.weight.abs().sum().item() == 0.0"
    )));
}

#[test]
fn summary_lists_modules_and_totals() {
    let s = eval(&with_model("model.summary()")).unwrap().into_string().unwrap();
    assert!(s.contains("| Name") && s.contains("| Type") && s.contains("| Params") && s.contains("| Mode"), "{s}");
    assert!(s.contains("encoder") && s.contains("Sequential") && s.contains("head"), "{s}");
    assert!(s.contains("148       Trainable params") && s.contains("Total estimated model params size (MB)"), "{s}");
    let deep = eval(&with_model("model.summary(#{max_depth: -1})")).unwrap().into_string().unwrap();
    assert!(deep.contains("blocks.0.norm") && deep.contains("LayerNorm"), "{deep}");
    assert_eq!(lt::nn::summary::human_count(1234), "1.2 K");
    assert_eq!(lt::nn::summary::human_count(123456), "123 K");
    assert_eq!(lt::nn::summary::human_count(12), "12  ");
}

#[test]
fn safetensors_save_and_load_round_trip() {
    let dir = temp_dir("nn-save");
    let path = dir.join("m.safetensors");
    let src = with_model(&format!(
        "nn::save(model, \"{p}\");
         let sd = nn::load(\"{p}\");
         torch::manual_seed(5);
         let fresh = #{{ encoder: nn::sequential([nn::linear(4, 8), nn::relu(), nn::dropout(0.5)]),
                        blocks: [#{{ fc: nn::linear(8, 8), norm: nn::layer_norm(8) }}], head: nn::linear(8, 2),
                        scale: nn::parameter(torch::zeros([2])) }};
         fresh.load_state_dict(sd);
         sd.len() == 9 && fresh.blocks[0].fc.weight.equal(model.blocks[0].fc.weight)",
        p = path.display()
    ));
    assert!(eval_bool(&src));
    // the file is plain safetensors: an 8-byte header length, a JSON header, the data
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header["head.weight"]["dtype"], "F32");
    assert_eq!(header["head.weight"]["shape"], serde_json::json!([2, 8]));
    assert_eq!(header["__metadata__"]["format"], "pt");
    // no temp file is left beside it
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    // buffers (batch norm statistics, int64 counter) survive too
    let bn = dir.join("bn.safetensors");
    assert!(eval_bool(&format!(
        "let a = nn::batch_norm1d(3); a.forward(torch::randn([4, 3])); nn::save(a, \"{p}\");
         let b = nn::batch_norm1d(3); b.load_state_dict(nn::load(\"{p}\"));
         b.running_mean.equal(a.running_mean) && b.num_batches_tracked.item() == 1 && b.num_batches_tracked.dtype == \"int64\"",
        p = bn.display()
    )));
    let e = eval("nn::load(\"/nonexistent/x.safetensors\")").unwrap_err();
    assert!(e.contains("cannot read"), "{e}");
}

#[test]
fn odd_inputs_are_errors_not_panics() {
    for src in [
        "nn::linear(-1, 2)",
        "nn::conv2d(3, 4, 0)",
        "nn::conv2d(3, 4, 3, #{groups: 2})",
        "nn::conv2d(3, 3, 3, #{padding: \"same\", stride: 2})",
        "nn::group_norm(3, 4)",
        "nn::multihead_attention(6, 4)",
        "nn::embedding(3, 2).forward(torch::tensor([5]))",
        "nn::embedding(3, 2, #{padding_idx: 3})",
        "nn::dropout(1.5)",
        "nn::sequential([1, 2])",
        "nn::batch_norm1d(3).forward(torch::ones([1, 3]))",
        "nn::lstm(2, 3).forward(torch::ones([4, 1, 2]), torch::zeros([1, 1, 3]))",
        "F::cross_entropy(torch::ones([2, 3]), torch::tensor([0, 5]))",
        "F::mse_loss(torch::ones([2]), torch::ones([3]))",
        "F::interpolate(torch::ones([1, 1, 2, 2]), #{size: [3, 3], scale_factor: 2})",
        "F::pad(torch::ones([2]), [1])",
        "#{a: 1}.load_state_dict(#{a: 1})",
        "init::kaiming_uniform_(torch::empty([3]))",
        "nn::upsample(#{size: 4, scale_factor: 2})",
        "nn::upsample(#{})",
        "nn::upsample(#{scale_factor: 2, align_corners: true})",
        "nn::upsample(#{scale_factor: 2, mode: \"cubic\"})",
        "nn::upsample(#{scale_factor: 2, antialias: true})",
        "nn::upsample(#{scale_factor: 2, mode: \"bilinear\"}).forward(torch::ones([1, 1, 4]))",
        "nn::pixel_shuffle(0)",
        "nn::pixel_shuffle(2).forward(torch::ones([1, 3, 2, 2]))",
        "nn::pixel_unshuffle(2).forward(torch::ones([1, 1, 3, 3]))",
        "F::pixel_shuffle(torch::ones([4]), 2)",
        "nn::zero_pad2d([1, 2])",
        "nn::zero_pad2d([-3, -3, 0, 0]).forward(torch::ones([1, 1, 4, 4]))",
        "nn::zero_pad2d(1).forward(torch::ones([4]))",
        "nn::reflection_pad2d(3).forward(torch::ones([1, 1, 3, 3]))",
        "nn::reflection_pad2d(-5).forward(torch::ones([1, 1, 3, 3]))",
        "nn::adaptive_max_pool2d([1, 2, 3])",
        "nn::adaptive_max_pool2d(-1)",
        "F::adaptive_max_pool2d(torch::ones([2]), 2)",
        "nn::max_unpool2d(0)",
        "nn::max_unpool2d(2, #{dilation: 1})",
        "nn::max_unpool2d(2).forward(torch::ones([1, 1, 2, 2]), torch::zeros([1, 1, 3, 3]).long())",
        "nn::max_unpool2d(2).forward(torch::ones([1, 1, 2, 2]), torch::zeros([1, 1, 2, 2]).long(), [7, 7])",
        "nn::max_unpool2d(2).forward(torch::ones([1, 1, 2, 2]), torch::tensor([[[[0, 1], [2, 99]]]]))",
        "nn::avg_pool2d(2, #{return_indices: true})",
    ] {
        assert!(eval(src).is_err(), "expected an error from {src}");
    }
}

#[test]
fn trains_a_tiny_model() {
    // a few steps of plain SGD on the module's parameters lower the loss
    let drop = eval_f64(
        "torch::manual_seed(0);
         let model = #{ net: nn::sequential([nn::linear(2, 8), nn::tanh(), nn::linear(8, 1)]) };
         let x = torch::randn([32, 2]); let y = (x.sum(1, true) * 0.5).sin();
         let first = 0.0; let last = 0.0;
         for i in 0..50 {
             model.zero_grad();
             let loss = F::mse_loss(model.net.forward(x), y);
             loss.backward();
             torch::no_grad(|| { for p in model.parameters() { p -= p.grad * 0.2; } });
             if i == 0 { first = loss.item(); } last = loss.item();
         }
         first - last",
    );
    assert!(drop > 0.0, "{drop}");
}

/// `F::dropout(x, #{inplace: true})` changes `x` itself; `enable_gqa` lets 2 key/value heads
/// serve 4 query heads, the same as repeating each key/value head for its group.
#[test]
fn dropout_inplace_and_grouped_query_attention_act() {
    assert!(crate::common::eval_bool(
        "torch::manual_seed(0); let x = torch::ones([64]); let y = F::dropout(x, #{p: 0.5, inplace: true}); x.eq(y).all().item() && x.eq(0.0).any().item()"
    ));
    assert!(crate::common::eval_bool("let x = torch::ones([8]); F::dropout(x, #{p: 0.5}); x.eq(1.0).all().item()"));
    let gqa = "torch::manual_seed(0);
        let q = torch::randn([1, 4, 3, 8]); let k = torch::randn([1, 2, 3, 8]); let v = torch::randn([1, 2, 3, 8]);
        let rep = |t| torch::cat([t.narrow(1, 0, 1), t.narrow(1, 0, 1), t.narrow(1, 1, 1), t.narrow(1, 1, 1)], 1);
        let a = F::scaled_dot_product_attention(q, k, v, #{enable_gqa: true});
        let b = F::scaled_dot_product_attention(q, rep.call(k), rep.call(v));
        (a - b).abs().max().item() < 1e-6";
    assert!(crate::common::eval_bool(gqa));
    let e = crate::common::eval("F::scaled_dot_product_attention(torch::randn([1, 4, 3, 8]), torch::randn([1, 2, 3, 8]), torch::randn([1, 2, 3, 8]))").unwrap_err();
    assert!(!e.contains("internal error"), "{e}");
}

#[test]
fn resampling_layers_print_like_pytorch() {
    let src = "nn::sequential([nn::pixel_shuffle(2), nn::pixel_unshuffle(3), nn::upsample(#{scale_factor: 2}), \
               nn::upsample(#{size: [4, 5], mode: \"bilinear\", align_corners: false}), nn::zero_pad2d(1), \
               nn::reflection_pad2d([1, 0, 2, 3]), nn::adaptive_max_pool2d([2, 2]), nn::adaptive_max_pool2d(3), nn::max_unpool2d(2)])";
    let m = eval(src).unwrap().cast::<rhai::Map>();
    assert_eq!(
        lt::nn::repr::module_repr(&m, None),
        "Sequential(\n  (0): PixelShuffle(upscale_factor=2)\n  (1): PixelUnshuffle(downscale_factor=3)\n  \
         (2): Upsample(scale_factor=2.0, mode='nearest')\n  (3): Upsample(size=(4, 5), mode='bilinear')\n  \
         (4): ZeroPad2d((1, 1, 1, 1))\n  (5): ReflectionPad2d((1, 0, 2, 3))\n  (6): AdaptiveMaxPool2d(output_size=(2, 2))\n  \
         (7): AdaptiveMaxPool2d(output_size=3)\n  (8): MaxUnpool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))\n)"
    );
}
