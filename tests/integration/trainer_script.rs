//! The Trainer driving Rhai module scripts through the real `lt` binary.
use crate::common::{lt, lt_in, stderr, stdout, temp_dir};

fn lines(out: &std::process::Output) -> Vec<String> {
    stdout(out).lines().map(|l| l.to_string()).collect()
}

#[test]
fn fit_hook_order_matches_lightning() {
    let out = lt(&["fit", "tests/scripts/trace.rhai"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = [
        "init",
        "prepare_data",
        "setup(fit)",
        "configure_optimizers",
        "on_fit_start",
        "val_dataloader",
        "on_validation_start",
        "on_validation_epoch_start",
        "on_validation_batch_start(0)",
        "validation_step(0)",
        "on_validation_batch_end(0)",
        "on_validation_epoch_end",
        "on_validation_end",
        "train_dataloader",
        "on_train_start",
        "on_train_epoch_start",
        // accumulate_grad_batches = 2: zero_grad on the first batch of the window, step on the last
        "on_train_batch_start(0)",
        "training_step(0)",
        "on_before_zero_grad",
        "on_before_backward",
        "on_after_backward",
        "on_train_batch_end(0)",
        "on_train_batch_start(1)",
        "training_step(1)",
        "on_before_backward",
        "on_after_backward",
        "on_before_optimizer_step",
        "on_train_batch_end(1)",
        // validation runs at the end of the epoch, before on_train_epoch_end
        "on_validation_start",
        "on_validation_epoch_start",
        "on_validation_batch_start(0)",
        "validation_step(0)",
        "on_validation_batch_end(0)",
        "on_validation_epoch_end",
        "on_validation_end",
        "on_train_epoch_end",
        "on_train_end",
        "on_fit_end",
        "teardown(fit)",
    ];
    assert_eq!(lines(&out), expected);
}

#[test]
fn validate_test_predict_hook_order() {
    let v = lt(&["validate", "tests/scripts/trace.rhai"]);
    assert!(v.status.success(), "{}", stderr(&v));
    let got = lines(&v);
    let want = [
        "init",
        "prepare_data",
        "setup(validate)",
        "val_dataloader",
        "on_validation_start",
        "on_validation_epoch_start",
        "on_validation_batch_start(0)",
        "validation_step(0)",
        "on_validation_batch_end(0)",
        "on_validation_epoch_end",
        "on_validation_end",
        "teardown(validate)",
    ];
    assert_eq!(&got[..want.len()], want);
    assert!(stdout(&v).contains("Validate metric") && stdout(&v).contains("val_loss"), "{}", stdout(&v));

    let t = lt(&["test", "tests/scripts/trace.rhai", "--set", "trainer.limit_test_batches=2"]);
    assert!(t.status.success(), "{}", stderr(&t));
    let got = lines(&t);
    let want = [
        "init",
        "prepare_data",
        "setup(test)",
        "test_dataloader",
        "on_test_start",
        "on_test_epoch_start",
        "on_test_batch_start(0)",
        "test_step(0)",
        "on_test_batch_end(0)",
        "on_test_batch_start(1)",
        "test_step(1)",
        "on_test_batch_end(1)",
        "on_test_epoch_end",
        "on_test_end",
        "teardown(test)",
    ];
    assert_eq!(&got[..want.len()], want);
    assert!(stdout(&t).contains("Test metric") && stdout(&t).contains("test_loss"));

    let p = lt(&["predict", "tests/scripts/trace.rhai", "--set", "trainer.limit_predict_batches=1"]);
    assert!(p.status.success(), "{}", stderr(&p));
    let got = lines(&p);
    let want = [
        "init",
        "prepare_data",
        "setup(predict)",
        "predict_dataloader",
        "on_predict_start",
        "on_predict_epoch_start",
        "on_predict_batch_start(0)",
        "predict_step(0)",
        "on_predict_batch_end(0)",
        "on_predict_epoch_end",
        "on_predict_end",
        "teardown(predict)",
    ];
    assert_eq!(&got[..want.len()], want);
}

#[test]
fn script_errors_in_hooks_name_the_hook_and_location() {
    let dir = temp_dir("hook_err");
    std::fs::write(
        dir.join("bad.rhai"),
        "fn trainer() { #{max_epochs: 1, enable_progress_bar: false, logger: false, enable_checkpointing: false} }\nfn init(h) { this.w = torch::zeros([3, 1], #{requires_grad: true}); }\nfn configure_optimizers() { optim::sgd([this.w], #{lr: 0.1}) }\nfn train_dataloader() { [[torch::ones([2, 2])]] }\nfn training_step(batch, i) {\n    batch[0].matmul(this.w).sum()\n}\n",
    )
    .unwrap();
    let out = lt_in(&dir, &["fit", "bad.rhai"]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("mat1 and mat2 shapes cannot be multiplied"), "{e}");
    assert!(e.contains("--> bad.rhai:6:14"), "{e}");
    assert!(e.contains("in hook training_step"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn cli_set_overrides_script_trainer_and_hparams() {
    let dir = temp_dir("sets");
    std::fs::write(
        dir.join("m.rhai"),
        "fn hparams() { #{lr: 0.5, tag: \"a\"} }\nfn trainer() { #{max_epochs: 5, enable_progress_bar: false, logger: false, enable_checkpointing: false} }\nfn init(h) { this.save_hyperparameters(); this.w = torch::zeros([1], #{requires_grad: true}); }\nfn configure_optimizers() { optim::sgd([this.w], #{lr: this.hparams.lr}) }\nfn train_dataloader() { [[torch::ones([1])]] }\nfn training_step(b, i) { (this.w - 1.0).square().sum() }\nfn on_train_end() { print(`epochs=${this.current_epoch} lr=${this.hparams.lr} tag=${this.hparams.tag} steps=${this.global_step}`); }\n",
    )
    .unwrap();
    let out = lt_in(
        &dir,
        &["fit", "m.rhai", "--set", "trainer.max_epochs=2", "--set", "model.lr=0.25", "--set", "model.tag=b"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("epochs=2 lr=0.25 tag=b steps=2"), "{}", stdout(&out));
    let bad = lt_in(&dir, &["fit", "m.rhai", "--set", "trainer.max_epoch=2"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("unknown trainer option 'max_epoch'"), "{}", stderr(&bad));
}

fn precision_probe(precision: &str) -> String {
    let dir = temp_dir("precision");
    std::fs::write(
        dir.join("p.rhai"),
        "fn trainer() { #{max_steps: 1, enable_progress_bar: false, enable_model_summary: false, logger: false, enable_checkpointing: false} }\nfn init(h) { this.net = nn::linear(4, 2); }\nfn configure_optimizers() { optim::sgd(this.parameters(), #{lr: 0.1}) }\nfn train_dataloader() { [[torch::ones([3, 4])]] }\nfn training_step(b, i) { let y = this.net.forward(b[0]); print(`out ${y.dtype} param ${this.net.weight.dtype} input ${b[0].dtype} grad_enabled ${torch::is_grad_enabled()}`); y.float().sum() }\n",
    )
    .unwrap();
    let out = lt_in(&dir, &["fit", "p.rhai", "--set", &format!("trainer.precision={precision}")]);
    assert!(out.status.success(), "{precision}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn precision_modes_autocast_or_cast_like_lightning() {
    assert!(precision_probe("32-true").contains("out float32 param float32 input float32"));
    assert!(precision_probe("bf16-mixed").contains("out bfloat16 param float32 input float32"));
    assert!(precision_probe("16-mixed").contains("out float16 param float32 input float32"));
    assert!(precision_probe("64-true").contains("out float64 param float64 input float64"));
    assert!(precision_probe("bf16-true").contains("out bfloat16 param bfloat16 input bfloat16"));
    let dir = temp_dir("badprec");
    std::fs::write(dir.join("p.rhai"), "fn training_step(b, i) { }\n").unwrap();
    let out = lt_in(&dir, &["fit", "p.rhai", "--set", "trainer.precision=8-mixed"]);
    assert!(stderr(&out).contains("unknown precision '8-mixed'"), "{}", stderr(&out));
}

fn fit_script(tag: &str, src: &str, extra: &[&str]) -> std::process::Output {
    let dir = temp_dir(tag);
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let mut args = vec!["fit", "m.rhai"];
    args.extend_from_slice(extra);
    lt_in(&dir, &args)
}

const BASE: &str = "fn trainer() { #{max_epochs: 2, enable_progress_bar: false, enable_model_summary: false, logger: false, enable_checkpointing: false, num_sanity_val_steps: 0} }\nfn init(h) { this.w = torch::zeros([2, 1], #{requires_grad: true}); }\nfn batches(n) { let out = []; for i in 0..n { out.push([torch::ones([4, 2]) * (i + 1), torch::ones([4, 1])]); } out }\nfn train_dataloader() { batches(4) }\nfn loss(b) { (b[0].matmul(this.w) - b[1]).square().mean() }\nfn training_step(b, i) { this.loss(b) }\n";

#[test]
fn configure_optimizers_forms_and_schedulers() {
    let forms = [
        ("single", "optim::sgd([this.w], #{lr: 0.1})"),
        ("list", "[optim::sgd([this.w], #{lr: 0.1})]"),
        ("two_lists", "let o = optim::sgd([this.w], #{lr: 0.1}); [[o], [sched::step_lr(o, #{step_size: 1, gamma: 0.5})]]"),
        ("map", "let o = optim::sgd([this.w], #{lr: 0.1}); #{optimizer: o, lr_scheduler: #{scheduler: sched::step_lr(o, #{step_size: 1, gamma: 0.5}), interval: \"step\", frequency: 2}}"),
        ("list_of_maps", "let o = optim::sgd([this.w], #{lr: 0.1}); [#{optimizer: o, lr_scheduler: sched::step_lr(o, #{step_size: 1, gamma: 0.5})}]"),
    ];
    for (tag, body) in forms {
        let src = format!("{BASE}fn configure_optimizers() {{ {body} }}\nfn on_train_end() {{ let o = this.optimizers(); print(`lr ${{o.param_groups[0].lr}} steps ${{this.global_step}}`); }}\n");
        let out = fit_script(tag, &src, &[]);
        assert!(out.status.success(), "{tag}: {}", stderr(&out));
        let s = stdout(&out);
        let want = match tag {
            "two_lists" | "list_of_maps" => "lr 0.025 steps 8", // stepped per epoch: 2 epochs
            "map" => "lr 0.00625 steps 8",                      // per step, every 2nd step: 4 times
            _ => "lr 0.1 steps 8",
        };
        assert!(s.contains(want), "{tag}: {s}");
    }
    let out = fit_script("bad_cfg", &format!("{BASE}fn configure_optimizers() {{ 42 }}\n"), &[]);
    assert!(stderr(&out).contains("configure_optimizers must return"), "{}", stderr(&out));
}

#[test]
fn reduce_lr_on_plateau_needs_its_monitor_and_strict_reports_it() {
    let body = "let o = optim::sgd([this.w], #{lr: 0.1}); #{optimizer: o, lr_scheduler: #{scheduler: sched::reduce_lr_on_plateau(o, #{patience: 0, factor: 0.5}), monitor: \"val_loss\"}}";
    // no val_loss logged → strict error naming the available metrics
    let out = fit_script("plateau_missing", &format!("{BASE}fn configure_optimizers() {{ {body} }}\n"), &[]);
    assert!(stderr(&out).contains("ReduceLROnPlateau conditioned on metric 'val_loss'"), "{}", stderr(&out));
    // with validation logging a constant val_loss, the LR halves after each non-improving epoch
    let src = format!("{BASE}fn val_dataloader() {{ batches(1) }}\nfn validation_step(b, i) {{ this.log(\"val_loss\", 1.0); }}\nfn configure_optimizers() {{ {body} }}\nfn on_train_end() {{ print(`lr ${{this.optimizers().param_groups[0].lr}}`); }}\n");
    let out = fit_script("plateau", &src, &["--set", "trainer.max_epochs=3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("lr 0.025"), "{}", stdout(&out));
}

#[test]
fn manual_optimization_with_two_optimizers() {
    let src = "fn trainer() { #{max_epochs: 1, enable_progress_bar: false, enable_model_summary: false, logger: false, enable_checkpointing: false} }\nfn init(h) { this.automatic_optimization = false; this.g = torch::ones([1], #{requires_grad: true}); this.d = torch::ones([1], #{requires_grad: true}); }\nfn train_dataloader() { [[torch::ones([1])], [torch::ones([1])], [torch::ones([1])]] }\nfn configure_optimizers() { [optim::sgd([this.g], #{lr: 0.1}), optim::adam([this.d], #{lr: 0.1})] }\nfn training_step(b, i) {\n  let opts = this.optimizers();\n  let g = opts[0]; let d = opts[1];\n  this.toggle_optimizer(g);\n  g.zero_grad();\n  let lg = (this.g * this.d).sum();\n  this.manual_backward(lg);\n  g.step();\n  this.untoggle_optimizer(g);\n  d.zero_grad();\n  let ld = (this.d * this.d).sum();\n  this.manual_backward(ld);\n  d.step();\n  this.log_dict(#{g_loss: lg, d_loss: ld}, #{prog_bar: true});\n}\nfn on_train_end() { print(`steps ${this.global_step} g ${this.g.item()} metrics ${this.trainer.callback_metrics.keys()}`); }\n";
    let out = fit_script("manual", src, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    // global_step counts every optimizer step (2 per batch), as in Lightning
    assert!(s.contains("steps 6"), "{s}");
    assert!(s.contains("d_loss") && s.contains("g_loss"), "{s}");
}

/// `opt.step()` under manual optimization is Lightning's optimizer wrapper: on_before_optimizer_step
/// (callback, then module) sees each step's global_step before the update, and global_step counts
/// the step at once; stepping through `this.…` (which keeps `this` in use) with a hook listening is
/// a clear error saying how to write it.
#[test]
fn manual_opt_step_runs_hooks_and_counts_each_step() {
    let src = "fn trainer() { #{max_epochs: 1, enable_progress_bar: false, enable_model_summary: false, logger: false, enable_checkpointing: false} }\nfn init(h) { this.automatic_optimization = false; this.w = torch::ones([1], #{requires_grad: true}); }\nfn train_dataloader() { [[torch::ones([1])], [torch::ones([1])]] }\nfn configure_optimizers() { [optim::sgd([this.w], #{lr: 0.1}), optim::sgd([this.w], #{lr: 0.1})] }\nfn callbacks() { [#{ on_before_optimizer_step: |trainer, pl_module, opt| print(`cb ${pl_module.global_step}`) }] }\nfn on_before_optimizer_step(opt) { print(`module ${this.global_step}`); }\nfn training_step(b, i) {\n  for opt in this.optimizers() { opt.zero_grad(); this.manual_backward((this.w * b[0]).sum()); opt.step(); print(`after ${this.global_step}`); }\n}\n";
    let out = fit_script("manual_hooks", src, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let want: Vec<String> =
        (0..4).flat_map(|s| [format!("cb {s}"), format!("module {s}"), format!("after {}", s + 1)]).collect();
    assert_eq!(lines(&out), want);
    let chained = src.replace("for opt in this.optimizers() {", "this.optimizers()[0].step(); {");
    let out = fit_script("manual_chain", &chained, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("write `let opt = this.optimizers(); opt.step();`"), "{}", stderr(&out));
}

/// The summary a fit starts with is Lightning's table (tests/fixtures/summary/summary.txt, made by
/// Lightning's own ModelSummary and formatter): children in declaration order, array children
/// as a ModuleList, the root not counted; `callbacks::model_summary(#{max_depth: -1})` lists
/// every level.
#[test]
fn model_summary_matches_lightning() {
    let fixture = std::fs::read_to_string(crate::common::root().join("tests/fixtures/summary/summary.txt")).unwrap();
    let expected: Vec<&str> = fixture.split("# max_depth ").filter(|s| !s.is_empty()).collect();
    let src = "fn trainer() { #{max_epochs: 1, enable_progress_bar: false, logger: false, enable_checkpointing: false} }\nCALLBACKS\nfn block() { #{ _type: \"Block\", fc: nn::linear(8, 8), drop: nn::dropout(0.1), forward: |x| this.drop.forward(this.fc.forward(x)) } }\nfn init(h) {\n  this.l1 = nn::linear(4, 8);\n  this.act = nn::relu();\n  this.blocks = [block(), block()];\n  this.bn = nn::batch_norm1d(8);\n  this.bn.train(false);\n  this.out = nn::sequential([nn::linear(8, 2), nn::relu()]);\n  this.l1.weight.requires_grad_(false);\n}\nfn train_dataloader() { [[torch::ones([2, 4])]] }\nfn training_step(b, i) { this.out.forward(this.l1.forward(b[0])).sum() }\nfn configure_optimizers() { optim::sgd(this.out.parameters(), #{lr: 0.1}) }\n";
    for (tag, callbacks, want) in [
        ("summary_default", "", expected[0]),
        ("summary_all", "fn callbacks() { [callbacks::model_summary(#{max_depth: -1})] }", expected[1]),
    ] {
        let out = fit_script(tag, &src.replace("CALLBACKS", callbacks), &[]);
        assert!(out.status.success(), "{tag}: {}", stderr(&out));
        let err = stderr(&out);
        let table: Vec<&str> =
            err.lines().skip_while(|l| !l.contains("| Name")).take_while(|l| !l.starts_with('`')).collect();
        let want: Vec<&str> = want.lines().skip(1).collect();
        assert_eq!(table, want, "{tag}:\n{err}");
    }
    // depth 0 prints none
    let out = fit_script(
        "summary_none",
        &src.replace("CALLBACKS", "fn callbacks() { [callbacks::model_summary(#{max_depth: 0})] }"),
        &[],
    );
    assert!(!stderr(&out).contains("| Name"), "{}", stderr(&out));
}

/// A module's `optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)` makes the step:
/// the Lightning recipe of a learning-rate warm-up works, a step may be skipped, and global_step
/// counts each call, as Lightning's does.
#[test]
fn optimizer_step_hook_makes_the_step() {
    let src = format!("{BASE}fn configure_optimizers() {{ optim::sgd([this.w], #{{lr: 0.1}}) }}\nfn optimizer_step(epoch, batch_idx, optimizer, optimizer_closure) {{\n  if this.global_step < 2 {{ optimizer.param_groups[0].lr = 0.1 * (this.global_step + 1) / 2.0; }}\n  if batch_idx != 3 {{ optimizer.step(optimizer_closure); }}\n  print(`step ${{this.global_step}} lr ${{optimizer.param_groups[0].lr}} loss ${{optimizer_closure.loss().item() > 0.0}}`);\n}}\nfn on_train_end() {{ print(`end ${{this.global_step}}`); }}\n");
    let out = fit_script("optimizer_step", &src, &["--set", "trainer.max_epochs=1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        lines(&out),
        [
            "step 0 lr 0.05 loss true",
            "step 1 lr 0.1 loss true",
            "step 2 lr 0.1 loss true",
            "step 3 lr 0.1 loss true",
            "end 4"
        ]
    );
}

/// `callbacks::prediction_writer` is Lightning's BasePredictionWriter: each batch's prediction
/// with the dataset indices it came from (shuffled here: the prediction is 2 × the sample, so the
/// indices are checked against it), then all predictions and indices at the end; a writer missing
/// the function its interval needs is refused.
#[test]
fn prediction_writer_gets_predictions_with_their_indices() {
    let src = "fn trainer() { #{enable_progress_bar: false, enable_model_summary: false, logger: false} }\nfn callbacks() { [callbacks::prediction_writer(#{\n  write_interval: \"batch_and_epoch\", seen: 0,\n  write_on_batch_end: |trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx| { this.seen += 1; print(`batch ${batch_idx} dl ${dataloader_idx} ok ${prediction.eq(torch::tensor(batch_indices).float() * 2.0).all().item()}`); },\n  write_on_epoch_end: |trainer, pl_module, predictions, batch_indices| print(`epoch ${predictions.len()} ${batch_indices.len()} ${batch_indices[0].len()} seen ${this.seen}`),\n})] }\nfn init(h) { this.w = torch::ones([1]); }\nfn predict_dataloader() { data::loader(data::tensor_dataset(torch::arange(5).float()), #{batch_size: 2, shuffle: true, seed: 3}) }\nfn predict_step(b, i) { b[0] * 2 }\n";
    let dir = temp_dir("prediction_writer");
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let out = lt_in(&dir, &["predict", "m.rhai"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    for want in ["batch 0 dl 0 ok true", "batch 1 dl 0 ok true", "batch 2 dl 0 ok true", "epoch 3 1 3 seen 3"] {
        assert!(s.contains(want), "missing {want}: {s}");
    }
    std::fs::write(
        dir.join("bad.rhai"),
        src.replace("write_interval: \"batch_and_epoch\"", "write_interval: \"epoch\"")
            .replace("write_on_epoch_end:", "other:"),
    )
    .unwrap();
    let out = lt_in(&dir, &["predict", "bad.rhai"]);
    assert!(
        stderr(&out).contains("write_interval \"epoch\" needs a `write_on_epoch_end` function"),
        "{}",
        stderr(&out)
    );
    std::fs::write(dir.join("typo.rhai"), src.replace("write_interval:", "write_intervall:")).unwrap();
    let out = lt_in(&dir, &["predict", "typo.rhai"]);
    assert!(stderr(&out).contains("unknown option 'write_intervall'"), "{}", stderr(&out));
}

#[test]
fn several_val_loaders_get_dataloader_idx_and_suffixes() {
    let src = format!("{BASE}fn configure_optimizers() {{ optim::sgd([this.w], #{{lr: 0.1}}) }}\nfn val_dataloader() {{ [data::loader(data::tensor_dataset(torch::ones([4, 2]), torch::ones([4, 1])), #{{batch_size: 4}}), data::loader(data::tensor_dataset(torch::ones([8, 2]), torch::ones([8, 1])), #{{batch_size: 4}})] }}\nfn validation_step(b, i, dl) {{ print(`val dl ${{dl}} batch ${{i}}`); this.log(\"val_loss\", this.loss(b)); }}\nfn on_train_end() {{ print(this.trainer.callback_metrics.keys()); }}\n");
    let out = fit_script("multival", &src, &["--set", "trainer.max_epochs=1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.contains("val dl 0 batch 0") && s.contains("val dl 1 batch 1"), "{s}");
    assert!(s.contains("val_loss/dataloader_idx_0") && s.contains("val_loss/dataloader_idx_1"), "{s}");
}

#[test]
fn datamodule_supplies_the_data() {
    let src = "fn trainer() { #{max_epochs: 1, enable_progress_bar: false, enable_model_summary: false, logger: false, enable_checkpointing: false} }\nfn init(h) { this.w = torch::zeros([1], #{requires_grad: true}); }\nfn datamodule() {\n  #{ n: 3,\n     prepare_data: || print(\"dm prepare_data\"),\n     setup: |stage| { print(`dm setup ${stage}`); this.items = []; for i in 0..this.n { this.items.push([torch::ones([2])]); } },\n     train_dataloader: || this.items,\n     teardown: |stage| print(`dm teardown ${stage}`) }\n}\nfn configure_optimizers() { optim::sgd([this.w], #{lr: 0.1}) }\nfn training_step(b, i) { (this.w * b[0]).sum() }\nfn on_train_end() { print(`steps ${this.global_step}`); }\n";
    let out = fit_script("dm", src, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    for want in ["dm prepare_data", "dm setup fit", "steps 3", "dm teardown fit"] {
        assert!(s.contains(want), "missing {want}: {s}");
    }
}

#[test]
fn should_stop_and_gradient_clipping() {
    let src = format!("{BASE}fn configure_optimizers() {{ optim::sgd([this.w], #{{lr: 1.0}}) }}\nfn on_before_optimizer_step(opt) {{ print(`grad norm ${{this.w.grad.norm().item()}}`); }}\nfn on_train_batch_end(o, b, i) {{ if this.global_step == 3 {{ this.trainer.should_stop = true; }} }}\nfn on_train_end() {{ print(`steps ${{this.global_step}}`); }}\n");
    let out = fit_script("stop", &src, &["--set", "trainer.gradient_clip_val=0.5", "--set", "trainer.max_epochs=5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.contains("steps 3"), "{s}");
    // clipping happens after on_before_optimizer_step; the weights moved by at most lr * 0.5 per step
    let out = fit_script("clip", &format!("{BASE}fn configure_optimizers() {{ optim::sgd([this.w], #{{lr: 1.0}}) }}\nfn on_train_end() {{ print(`wnorm ${{this.w.norm().item()}}`); }}\n"), &["--set", "trainer.gradient_clip_val=0.5", "--set", "trainer.max_steps=2"]);
    let s = stdout(&out);
    let v: f64 = s.trim().trim_start_matches("wnorm ").parse().unwrap_or(99.0);
    assert!(v <= 1.0 + 1e-5, "{s}");
}

#[test]
fn detect_anomaly_names_the_backward_function_that_made_nan() {
    let src = "fn trainer() { #{max_steps: 1, enable_progress_bar: false, enable_model_summary: false, logger: false, enable_checkpointing: false, detect_anomaly: true, deterministic: true} }\nfn init(h) { this.w = torch::zeros([2], #{requires_grad: true}); }\nfn configure_optimizers() { optim::sgd([this.w], #{lr: 0.1}) }\nfn train_dataloader() { [[torch::ones([2])]] }\nfn training_step(b, i) { (this.w * b[0] - 1.0).sqrt().sum() }\n";
    let out = fit_script("anomaly", src, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("SqrtBackward0") && stderr(&out).contains("nan"), "{}", stderr(&out));
    let ok = fit_script("no_anomaly", &src.replace("detect_anomaly: true", "detect_anomaly: false"), &[]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

/// `trainer.log_dir` is the logger's version folder; `trainer.datamodule` is the datamodule itself
/// (what a hook changes through it stays), as in Lightning.
#[test]
fn trainer_log_dir_and_datamodule() {
    let src = "fn trainer() { #{max_epochs: 1, enable_progress_bar: false, enable_model_summary: false, enable_checkpointing: false} }\n\
               fn init(h) { this.w = torch::zeros([1], #{requires_grad: true}); }\n\
               fn datamodule() { #{ seen: 0, train_dataloader: || { this.seen += 1; [[torch::ones([2])]] } } }\n\
               fn training_step(b, i) { (this.w * b[0]).sum() }\n\
               fn configure_optimizers() { optim::sgd([this.w], #{lr: 0.1}) }\n\
               fn on_fit_start() { print(`log_dir=${this.trainer.log_dir}`); }\n\
               fn on_train_start() { print(`seen=${this.trainer.datamodule.seen}`); this.trainer.datamodule.seen = 10; }\n\
               fn on_train_end() { print(`after=${this.trainer.datamodule.seen}`); }\n";
    let dir = temp_dir("log_dir_dm");
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let out = lt_in(&dir, &["fit", "m.rhai"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.contains("log_dir=lightning_logs/version_0") || s.contains("log_dir=./lightning_logs/version_0"), "{s}");
    assert!(s.contains("seen=1"), "{s}");
    assert!(s.contains("after=10"), "{s}");
}

/// `lt predict` keeps the predictions: a summary without `--output`; with it, a file by its
/// extension holding each dataloader's outputs joined along the batch dimension (Lightning's
/// BasePredictionWriter). An existing file is not overwritten; an unknown format is an error.
#[test]
fn predict_writes_predictions_to_a_file() {
    let src = format!(
        "{BASE}fn predict_dataloader() {{ batches(3) }}\nfn predict_step(b, i) {{ b[0].matmul(this.w) + i }}\n"
    );
    let dir = temp_dir("predict_out");
    std::fs::write(dir.join("m.rhai"), &src).unwrap();
    let out = lt_in(&dir, &["predict", "m.rhai"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("predictions: [12, 1] Float"), "{}", stdout(&out));
    let out = lt_in(&dir, &["predict", "m.rhai", "--output", "p.safetensors"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (ts, _) = lt::nn::io::load_safetensors(&dir.join("p.safetensors")).unwrap();
    assert_eq!(ts.len(), 1);
    assert_eq!(ts[0].0, "predictions");
    // w is zero: batch i predicts i for each of its 4 rows
    let v = Vec::<f64>::try_from(ts[0].1.to_kind(tch::Kind::Double).reshape([-1])).unwrap();
    assert_eq!(v, vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]);
    let out = lt_in(&dir, &["predict", "m.rhai", "--output", "p.csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = std::fs::read_to_string(dir.join("p.csv")).unwrap();
    assert!(csv.starts_with("predictions\n0\n0\n0\n0\n1\n"), "{csv}");
    let out = lt_in(&dir, &["predict", "m.rhai", "--output", "p.npy"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read(dir.join("p.npy")).unwrap().starts_with(b"\x93NUMPY"));
    // refused: an existing file, an unknown format
    let out = lt_in(&dir, &["predict", "m.rhai", "--output", "p.csv"]);
    assert!(
        !out.status.success() && stderr(&out).contains("the file exists; lt does not overwrite it"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(dir.join("p.csv")).unwrap(), csv);
    let out = lt_in(&dir, &["predict", "m.rhai", "--output", "p.txt"]);
    assert!(!out.status.success() && stderr(&out).contains("unknown format \".txt\""), "{}", stderr(&out));
    assert!(!dir.join("p.txt").exists());
}
