//! Modules that compose across files (issue #18): a module built in an imported file, or a module
//! script loaded with `nn::load_module`, stored in another module works as an `nn.Module` child —
//! its own `forward` and helpers run with it as `this`, and its parameters are the parent's.
use crate::common::{lt_in, stderr, stdout, temp_dir};

/// A library file building modules two ways: closures and a named function pointer.
const BLOCKS: &str = r#"
fn block(c) {
    #{ fc: nn::linear(c, c), act: nn::relu(), forward: |x| this.act.forward(this.fc.forward(x)) + x }
}
fn net_forward(x) { this.head.forward(this.body.forward(x)) }
fn net(c, k) {
    #{ _type: "Net", body: nn::sequential([block(c), block(c)]), head: nn::linear(c, k), forward: Fn("net_forward") }
}
"#;

const TRAIN: &str = r#"
fn train_dataloader() { [[torch::ones([2, 4])], [torch::ones([2, 4]) * 2]] }
fn configure_optimizers() { optim::sgd(this.parameters(), #{lr: 0.1}) }
fn trainer() { #{max_epochs: 1, logger: false, enable_progress_bar: false, enable_model_summary: false, default_root_dir: "out"} }
"#;

fn write(dir: &std::path::Path, name: &str, src: &str) {
    std::fs::write(dir.join(name), src).unwrap();
}

#[test]
fn a_module_built_in_an_imported_file_runs_its_own_functions_in_the_parent() {
    let dir = temp_dir("mod_import");
    write(&dir, "blocks.rhai", BLOCKS);
    let model = format!(
        r#"import "blocks" as b;
fn init(h) {{ this.net = b::net(4, 2); }}
fn forward(x) {{ this.net.forward(x) }}
fn training_step(batch, i) {{ this.forward(batch[0]).pow(2).mean() }}
fn on_fit_end() {{
    print(`names=${{this.state_dict().keys()}}`);
    print(`params=${{this.parameters().len()}}`);
}}
{TRAIN}"#
    );
    write(&dir, "model.rhai", &model);
    let out = lt_in(&dir, &["fit", "model.rhai"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // PyTorch's names through the imported module's sequential and blocks
    for name in ["net.body.0.fc.weight", "net.body.1.fc.bias", "net.head.weight"] {
        assert!(text.contains(name), "{name} in {text}");
    }
    assert!(text.contains("params=6"), "{text}");
}

#[test]
fn a_loaded_module_script_is_a_child_module_trained_and_saved_with_the_parent() {
    let dir = temp_dir("mod_loaded");
    write(
        &dir,
        "encoder.rhai",
        r#"
fn hparams() { #{ width: 3 } }
fn init(h) { this.save_hyperparameters(); this.net = nn::linear(4, h.width); }
fn forward(x) { this.encode(x).relu() }
fn encode(x) { this.net.forward(x) }
"#,
    );
    let model = format!(
        r#"fn init(h) {{
    this.encoder = nn::load_module("encoder.rhai", #{{width: 5}});
    this.head = nn::linear(5, 1);
}}
// the parent's own forward: a child's `forward` must not run it
fn forward(x) {{ this.head.forward(this.encoder.forward(x)) }}
fn training_step(batch, i) {{ this.forward(batch[0]).pow(2).mean() }}
fn on_fit_start() {{ this.before = this.encoder.net.weight.clone(); }}
fn on_fit_end() {{
    print(`names=${{this.state_dict().keys()}}`);
    print(`type=${{this.encoder._type}} width=${{this.encoder.hparams.width}}`);
    print(`encode=${{this.encoder.encode(torch::ones([1, 4])).shape}}`);
    print(`moved=${{(this.encoder.net.weight - this.before).abs().sum().item() > 0.0}}`);
}}
{TRAIN}"#
    );
    write(&dir, "model.rhai", &model);
    let out = lt_in(&dir, &["fit", "model.rhai"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("encoder.net.weight") && text.contains("encoder.net.bias"), "{text}");
    assert!(text.contains("type=encoder width=5"), "{text}");
    assert!(text.contains("encode=[1, 5]"), "{text}");
    assert!(text.contains("moved=true"), "the child's parameters are trained with the parent's: {text}");
    // the checkpoint holds the child's weights under its name
    let ckpt = std::fs::read_dir(dir.join("out/checkpoints")).unwrap().flatten().next().unwrap().path();
    let ck = lt::checkpoint::Checkpoint::load(&ckpt).unwrap();
    let names: Vec<String> = ck.section("state_dict").into_iter().map(|(k, _)| k).collect();
    assert!(names.contains(&"encoder.net.weight".to_string()), "{names:?}");
}

#[test]
fn the_same_function_name_in_two_imported_files_is_an_error_naming_both() {
    let dir = temp_dir("mod_ambiguous");
    for f in ["a.rhai", "b.rhai"] {
        write(&dir, f, "fn blk(x) { x * 2 }\nfn make() { #{ fc: nn::linear(2, 2), forward: Fn(\"blk\") } }\n");
    }
    let src = "import \"a\" as a;\nimport \"b\" as b;\nlet m = a::make();\nprint(m.forward(torch::ones([2])));\n";
    write(&dir, "use.rhai", src);
    let out = lt_in(&dir, &["run", "use.rhai"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("`blk`") && err.contains("a.rhai") && err.contains("b.rhai"), "{err}");
}

/// Rhai passes maps to functions by value: a change to a parameter that the function never reads
/// again reaches nobody, so the script is refused at load time, at that line, with the two ways
/// that work.
#[test]
fn a_change_to_a_copy_of_a_module_parameter_is_refused_where_it_is_written() {
    let dir = temp_dir("mod_lost_change");
    let cases = [
        ("fn freeze(m) { m.frozen = true; }\n", "fn freeze(m)", "`m.frozen = …`", "1:16"),
        ("fn f(net) {\n  net.layers[0].train(false);\n}\n", "fn f(net)", "`net.layers[…].train(…)`", "2:3"),
        ("fn g(a, b) { b.push(a); }\n", "fn g(a, b)", "`b.push(…)`", "1:14"),
        ("fn h(m) { m.n += 1; }\n", "fn h(m)", "`m.n += …`", "1:11"),
        ("let f = |m| { m.y = 3; };\n", "the closure at", "`m.y = …`", "1:15"),
        ("fn k(m) { for i in 0..2 { m[i] = i; } }\n", "fn k(m)", "`m[…] = …`", "1:27"),
    ];
    for (i, (src, function, what, at)) in cases.iter().enumerate() {
        let name = format!("c{i}.rhai");
        write(&dir, &name, &format!("{src}print(1);\n"));
        let out = lt_in(&dir, &["run", &name]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{src}: {err}");
        assert!(err.contains(function) && err.contains(what), "{src}: {err}");
        assert!(err.contains(&format!("{name}:{at}")), "{src}: {err}");
        assert!(err.contains("by value") && err.contains("model = f(model)"), "{err}");
        assert!(!stdout(&out).contains('1'), "nothing ran: {}", stdout(&out));
    }
}

/// What is not refused: the copy is returned or read again, a local copy is asked for, a closure
/// captures the variable (captured variables are shared), tensors changed in place (shared), and
/// the method form, which changes the caller's module.
#[test]
fn changes_that_are_seen_or_meant_to_be_local_are_not_refused() {
    let dir = temp_dir("mod_kept_change");
    let src = r#"
fn with_head(m) { m.head = nn::linear(2, 1); m }
fn doubled(batch) { batch[0] = batch[0] * 2; batch[0].sum() }
fn eval_copy(m) { m.train(false) }
fn scratch(m) { let m = m; m.x = 2; }
fn loop_read(m) { for i in 0..2 { print(m.n); m.n = i; } }
fn count() { let n = #{c: 0}; let inc = || n.c += 1; inc.call(); n.c }
fn freeze_weights(m) { m.fc.weight.requires_grad_(false); }
fn freeze() { this.frozen = true; this.fc.weight.requires_grad_(false); }
let model = #{ fc: nn::linear(2, 2), forward: |x| this.fc.forward(x) };
model = with_head(model);
print(doubled([torch::ones([2])]).item());
print(eval_copy(model).fc.training);
freeze_weights(model);
print(model.fc.weight.requires_grad);
model.freeze();
print(model.frozen);
print("head" in model);
"#;
    write(&dir, "ok.rhai", src);
    let out = lt_in(&dir, &["run", "ok.rhai"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).split_whitespace().collect::<Vec<_>>(), ["4.0", "false", "false", "true", "true"]);
}

/// An imported file is checked too, and the error names the place in that file.
#[test]
fn a_lost_change_in_an_imported_file_names_that_file() {
    let dir = temp_dir("mod_lost_import");
    write(&dir, "helpers.rhai", "fn replace_head(model, n) {\n    model.fc = nn::linear(4, n);\n}\n");
    write(&dir, "use.rhai", "import \"helpers\" as h;\nlet m = #{};\nh::replace_head(m, 3);\n");
    let out = lt_in(&dir, &["run", "use.rhai"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("helpers.rhai:2:5") && err.contains("fn replace_head(model, n)"), "{err}");
}

/// The REPL refuses the definition the same way and the session goes on.
#[test]
fn the_repl_refuses_a_lost_change_and_goes_on() {
    let dir = temp_dir("mod_lost_repl");
    let out = crate::common::lt_with_input(&dir, &["repl"], "fn freeze(m) { m.frozen = true; }\n40 + 2\n");
    let err = stderr(&out);
    assert!(err.contains("in fn freeze(m)") && err.contains("<repl>:1:16"), "{err}");
    assert!(stdout(&out).contains("42"), "{}", stdout(&out));
}

/// `model.apply(f)` gives `f` each submodule itself (PyTorch's Module.apply): a mode or attribute
/// set through the parameter reaches the model, children first, and the closure is not refused.
#[test]
fn apply_changes_the_submodules_themselves() {
    let dir = temp_dir("mod_apply");
    let src = r#"
let m = #{ fc: nn::linear(2, 2), bn: nn::batch_norm1d(2), body: nn::sequential([nn::dropout(0.5), nn::batch_norm1d(2)]) };
let order = [];
m.apply(|mod| { order.push(mod._type ?? "Module"); if mod._type == "BatchNorm1d" { mod.train(false); mod.frozen = true; } });
print(order);
print([m.fc.training, m.bn.training, m.body.layers[0].training, m.body.layers[1].training]);
print([m.bn.frozen, m.body.layers[1].frozen, "frozen" in m.fc]);
m.apply(|mod| if mod._type == "Linear" { throw "stop at " + mod._type; });
"#;
    write(&dir, "apply.rhai", src);
    let out = lt_in(&dir, &["run", "apply.rhai"]);
    let so = stdout(&out);
    assert!(so.contains(r#"["BatchNorm1d", "Dropout", "BatchNorm1d", "Sequential", "Linear", "Module"]"#), "{so}");
    assert!(so.contains("[true, false, true, false]") && so.contains("[true, true, false]"), "{so}");
    assert!(!out.status.success() && stderr(&out).contains("stop at Linear"), "{}", stderr(&out));
}
