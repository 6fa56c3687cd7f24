//! Bad input gets a clear error: Trainer options out of Lightning's ranges, hooks that never return.
use crate::common::{lt_in, stderr, stdout, temp_dir};

/// A module script whose `trainer()` returns `opts` (Rhai map entries) on 4 batches of 2 samples.
fn script(opts: &str, training_step_body: &str) -> String {
    format!(
        r#"
fn trainer() {{ #{{ {defaults}enable_progress_bar: false, enable_model_summary: false, {opts} }} }}
fn init(h) {{ this.w = torch::zeros([2, 1], #{{ requires_grad: true }}); }}
fn configure_optimizers() {{ optim::sgd([this.w], #{{ lr: 0.1 }}) }}
fn train_dataloader() {{ [[torch::ones([2, 2]), torch::ones([2, 1])], [torch::ones([2, 2]), torch::ones([2, 1])],
                        [torch::ones([2, 2]), torch::ones([2, 1])], [torch::ones([2, 2]), torch::ones([2, 1])]] }}
fn val_dataloader() {{ [[torch::ones([2, 2]), torch::ones([2, 1])]] }}
fn training_step(b, i) {{
    {training_step_body}
    let loss = F::mse_loss(b[0].matmul(this.w), b[1]);
    this.log("train_loss", loss);
    loss
}}
fn validation_step(b, i) {{ this.log("val_loss", F::mse_loss(b[0].matmul(this.w), b[1])); }}
"#,
        defaults = [("max_epochs", "1"), ("log_every_n_steps", "1")]
            .iter()
            .filter(|(k, _)| !opts.contains(k))
            .map(|(k, v)| format!("{k}: {v}, "))
            .collect::<String>()
    )
}

#[test]
fn trainer_options_outside_lightnings_ranges_are_errors() {
    let cases = [
        ("max_epochs: -5", "`max_epochs` must be a non-negative integer or -1. You passed in -5."),
        ("max_steps: -5", "`max_steps` must be a non-negative integer or -1. You passed in -5."),
        ("min_steps: -1", "`min_steps` must be a non-negative integer"),
        ("min_epochs: -2", "`min_epochs` must be a non-negative integer"),
        ("num_sanity_val_steps: -2", "`num_sanity_val_steps` must be a non-negative integer or -1"),
        ("fast_dev_run: -1", "fast_dev_run=-1 is not a valid configuration. It should be >= 0."),
        ("check_val_every_n_epoch: 0", "`check_val_every_n_epoch` should be an integer >= 1"),
        ("log_every_n_steps: -1", "`log_every_n_steps` must be >= 0"),
        ("devices: 0", "`devices=0` is not a valid input"),
        ("devices: \"abc\"", "is not a valid input"),
        ("devices: 1.5", "is not a valid input"),
        ("devices: []", "is not a valid input"),
        ("devices: [-1]", "is not a valid input"),
        ("devices: \"0,x\"", "is not a valid input"),
        (
            "val_check_interval: 100",
            "`val_check_interval` (100) must be less than or equal to the number of the training batches (4)",
        ),
        ("max_time: #{seconds: -5}", "'seconds' must be >= 0"),
        ("max_time: #{weeks: 1}", "unknown key 'weeks'; valid keys: days, hours, minutes, seconds"),
        ("max_time: -3", "must be a non-negative, finite duration"),
        ("max_time: \"01:00\"", "must look like \"DD:HH:MM:SS\""),
    ];
    let dir = temp_dir("bad_trainer_options");
    let mut failures = Vec::new();
    for (i, (opts, want)) in cases.iter().enumerate() {
        let name = format!("m{i}.rhai");
        std::fs::write(dir.join(&name), script(opts, "")).unwrap();
        let before = crate::common::tree_snapshot(&dir);
        let out = lt_in(&dir, &["fit", &name]);
        let err = stderr(&out);
        let clean = out.status.code().is_some_and(|c| c != 0) && !err.contains("panicked");
        if !clean || !err.contains(want) {
            failures.push(format!("{opts}: exit {:?}, expected '{want}' in:\n{err}{}", out.status, stdout(&out)));
        }
        // an option refused before the fit starts writes nothing (no log folder, no checkpoint);
        // val_check_interval is checked against the training loader, once the fit has begun
        // logging (as in Lightning, the run's version folder then holds its hparams.yaml)
        if !opts.starts_with("val_check_interval") && crate::common::tree_snapshot(&dir) != before {
            failures.push(format!("{opts}: the refused run created or changed files in {}", dir.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
    // the valid spellings still work
    for opts in [
        "devices: \"auto\"",
        "devices: 1",
        "devices: \"1\"",
        "devices: -1",
        "max_time: #{minutes: 5}",
        "max_epochs: -1, max_steps: 3",
    ] {
        std::fs::write(dir.join("ok.rhai"), script(opts, "")).unwrap();
        let out = lt_in(&dir, &["fit", "ok.rhai"]);
        assert!(out.status.success(), "{opts}: {}", stderr(&out));
    }
}

#[test]
fn max_time_stops_a_hook_that_never_returns() {
    let dir = temp_dir("max_time_loop");
    std::fs::write(dir.join("m.rhai"), script("max_time: #{seconds: 1}", "if this.global_step == 2 { loop {} }"))
        .unwrap();
    let start = std::time::Instant::now();
    let out = lt_in(&dir, &["fit", "m.rhai"]);
    assert!(start.elapsed().as_secs() < 60, "max_time was not enforced inside the hook");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // the fit ended the usual way: its logs are written
    let csv = std::fs::read_to_string(dir.join("lightning_logs/version_0/metrics.csv")).unwrap_or_default();
    assert!(!csv.is_empty(), "no metrics.csv");
}

#[test]
fn a_panic_inside_a_native_function_is_a_script_error() {
    // a native registered the way every lt function is, that panics on demand
    let mut reg = lt::script::registry::Registry::new();
    reg.func("", "explode", "x", "Panics for x > 0.\n\n```rhai\nexplode(0)\n```", |x: i64| -> i64 {
        if x > 0 {
            panic!("deliberate panic {x}");
        }
        x
    });
    reg.func("test", "explode", "x", "Panics for x > 0.\n\n```rhai\ntest::explode(0)\n```", |x: i64| -> i64 {
        if x > 0 {
            panic!("deliberate panic {x}");
        }
        x
    });
    let (global, namespaces) = reg.into_modules();
    let mut engine = lt::script::engine::new_engine().unwrap();
    engine.register_global_module(global);
    for (name, m) in namespaces {
        engine.register_static_module(name, m);
    }
    let err = engine.eval::<i64>("let a = 1;\nexplode(a)").unwrap_err();
    let s = err.to_string();
    assert!(s.contains("internal error in explode: deliberate panic 1"), "{s}");
    assert_eq!(err.position().line(), Some(2), "{s}");
    let err = engine.eval::<i64>("let a = 2;\n\n  test::explode(a)").unwrap_err();
    assert!(err.to_string().contains("internal error in test::explode: deliberate panic 2"), "{err}");
    assert_eq!(err.position().line(), Some(3), "{err}");
    // the engine goes on working
    assert_eq!(engine.eval::<i64>("explode(0) + test::explode(0)").unwrap(), 0);
}

/// `lt run FILE` in `dir`: (exit status is a clean failure, stderr).
fn run_fails_cleanly(dir: &std::path::Path, file: &str) -> String {
    let out = lt_in(dir, &["run", file]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.code().is_some_and(|c| c != 0), "{file}: expected a failure, got {:?}\n{text}", out.status);
    // the Rust runtime's words for a crash (Rhai's own "Stack overflow" error for a call-depth
    // limit is a clean script error)
    assert!(!text.contains("panicked") && !text.contains("has overflowed its stack"), "{file}: {text}");
    text
}

#[test]
fn recursion_through_lts_own_functions_is_an_error_not_a_stack_overflow() {
    let dir = temp_dir("reentry");
    // a script dataset whose get reads a dataset like itself
    std::fs::write(dir.join("ds.rhai"), "fn mk() { data::dataset(#{len: 3, get: |i| mk()[i]}) }\nprint(mk()[0]);\n")
        .unwrap();
    let text = run_fails_cleanly(&dir, "ds.rhai");
    assert!(text.contains("nested more than 32 deep") && text.contains("script dataset"), "{text}");
    // a module script that loads itself in init
    std::fs::write(
        dir.join("selfload.rhai"),
        "fn init(h) { this.sub = nn::load_module(\"selfload.rhai\"); }\nfn training_step(b, i) { () }\n",
    )
    .unwrap();
    let text = run_fails_cleanly(&dir, "selfload.rhai");
    assert!(text.contains("nested more than 32 deep") && text.contains("selfload.rhai"), "{text}");
}

#[test]
fn import_cycles_are_reported_by_name() {
    let dir = temp_dir("import_cycle");
    std::fs::write(dir.join("a.rhai"), "import \"b\" as b;\nprint(b::x());\n").unwrap();
    std::fs::write(dir.join("b.rhai"), "import \"a\" as a;\nfn x() { 1 }\n").unwrap();
    let text = run_fails_cleanly(&dir, "a.rhai");
    assert!(text.contains("import cycle:") && text.contains("a.rhai →") && text.contains("b.rhai"), "{text}");
    std::fs::write(dir.join("me.rhai"), "import \"me\" as me;\nfn x() { 1 }\nprint(me::x());\n").unwrap();
    let text = run_fails_cleanly(&dir, "me.rhai");
    assert!(text.contains("import cycle:") && text.contains("me.rhai → "), "{text}");
}

#[test]
fn runaway_strings_and_arrays_hit_the_script_limits() {
    let dir = temp_dir("limits");
    std::fs::write(dir.join("s.rhai"), "let s = \"ab\";\nfor i in 0..64 { s += s; }\n").unwrap();
    let text = run_fails_cleanly(&dir, "s.rhai");
    assert!(text.to_lowercase().contains("length of string") || text.contains("too large"), "{text}");
    std::fs::write(dir.join("a.rhai"), "let a = [1];\nfor i in 0..64 { a += a; }\n").unwrap();
    let text = run_fails_cleanly(&dir, "a.rhai");
    assert!(text.to_lowercase().contains("size of array") || text.contains("too large"), "{text}");
}

#[test]
fn deep_script_recursion_is_an_error_not_a_stack_overflow() {
    // Rhai's call-depth limit (512 levels) holds on lt's own 512 MiB stack
    let dir = temp_dir("deep_recursion");
    std::fs::write(dir.join("r.rhai"), "fn f(n) { f(n + 1) }\nf(0);\n").unwrap();
    let text = run_fails_cleanly(&dir, "r.rhai");
    assert!(
        text.contains("too many nested function calls (more than 512 levels") && text.contains("r.rhai:2"),
        "{text}"
    );
}

#[test]
fn options_lt_does_not_act_on_are_refused() {
    let dir = temp_dir("refused_options");
    let cases = [
        ("this.log(\"x\", 1.0, #{enable_graph: true});", "enable_graph: true is not supported"),
        ("this.log(\"x\", 1.0, #{sync_dist_group: 1});", "sync_dist_group is not supported"),
        ("this.log(\"x\", 1.0, #{metric_attribute: \"acc\"});", "metric_attribute is not supported"),
        ("this.log(\"x\", 1.0, #{batch_size: -1});", "batch_size must be >= 0"),
        ("this.log(\"x\", 1.0, #{on_stpe: true});", "on_stpe"),
    ];
    for (i, (body, want)) in cases.iter().enumerate() {
        let name = format!("m{i}.rhai");
        std::fs::write(dir.join(&name), script("", body)).unwrap();
        let out = lt_in(&dir, &["fit", &name]);
        let err = stderr(&out);
        assert!(out.status.code().is_some_and(|c| c != 0) && err.contains(want), "{body}: {err}");
    }
    // enable_graph: false is what lt does anyway
    std::fs::write(dir.join("ok.rhai"), script("", "this.log(\"x\", 1.0, #{enable_graph: false});")).unwrap();
    assert!(lt_in(&dir, &["fit", "ok.rhai"]).status.success());
    // callbacks() must hold callbacks
    std::fs::write(dir.join("cb.rhai"), script("", "") + "fn callbacks() { [\"x\", \"y\"] }\n").unwrap();
    let out = lt_in(&dir, &["fit", "cb.rhai"]);
    assert!(!out.status.success() && stderr(&out).contains("callbacks()[0] is a string"), "{}", stderr(&out));
    // lr-find needs an optimizer to ramp
    let no_opt = script("", "").replace("fn configure_optimizers() { optim::sgd([this.w], #{ lr: 0.1 }) }", "");
    std::fs::write(dir.join("noopt.rhai"), no_opt).unwrap();
    let out = lt_in(&dir, &["lr-find", "noopt.rhai"]);
    assert!(!out.status.success() && stderr(&out).contains("needs `fn configure_optimizers`"), "{}", stderr(&out));
}

/// What an `on_save_checkpoint` hook (the module's or a callback's) puts in the checkpoint must be
/// storable: a value that is not (a function, a Trainer, a tensor inside a map) is an error naming
/// the entry, not its type name written as a string.
#[test]
fn checkpoint_entries_a_checkpoint_cannot_store_are_errors() {
    let cases = [
        ("fn on_save_checkpoint(ck) { ck.f = |x| x; }", "on_save_checkpoint: checkpoint.f holds a Fn"),
        (
            "fn on_save_checkpoint(ck) { ck.nested = #{t: torch::ones([2])}; }",
            "on_save_checkpoint: checkpoint.nested holds a",
        ),
        (
            "fn callbacks() { [#{on_save_checkpoint: |trainer, m, ck| { ck.t = trainer; }}] }",
            "a callback's on_save_checkpoint: checkpoint.t holds a",
        ),
    ];
    for (i, (hook, want)) in cases.iter().enumerate() {
        let dir = temp_dir(&format!("ck-entry-{i}"));
        std::fs::write(dir.join("m.rhai"), format!("{}\n{hook}\n", script("logger: false", ""))).unwrap();
        let out = lt_in(&dir, &["fit", "m.rhai"]);
        assert!(!out.status.success(), "{hook}: {}", stdout(&out));
        assert!(stderr(&out).contains(want), "{hook}: {}", stderr(&out));
    }
}
