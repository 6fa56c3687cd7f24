//! Schedulers against torch.optim.lr_scheduler (fixtures made by
//! tests/fixtures/optim/gen_sched.py): learning rates after construction and each of 1000 steps.
use crate::common::{eval, eval_bool};
use serde_json::Value;

fn fixture() -> Value {
    let path = crate::common::root().join("tests/fixtures/optim/sched.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(d: &rhai::Dynamic) -> Vec<f64> {
    d.clone().into_array().unwrap().iter().map(|v| v.as_float().unwrap()).collect()
}

#[test]
fn every_scheduler_matches_torch_over_1000_steps() {
    let fx = fixture();
    let steps = fx["steps"].as_i64().unwrap();
    let mut failures = Vec::new();
    for case in fx["cases"].as_array().unwrap() {
        let opt = fx["optimizers"][case["optimizer"].as_str().unwrap()].as_str().unwrap();
        let ctor = case["lt"].as_str().unwrap();
        let step = match case["plateau"].as_str() {
            Some("plateau") => "s.step(1.0 / (1.0 + (t / 10)));",
            Some(_) => "s.step(-1.0 / (1.0 + (t / 10)));",
            None => "s.step();",
        };
        let script = format!(
            r#"
            let p = torch::zeros([2], #{{requires_grad: true}});
            let q = torch::zeros([2], #{{requires_grad: true}});
            let opt = {opt};
            let s = {ctor};
            let lrs = [s.get_last_lr()];
            let moms = [];
            for t in 0..{steps} {{
                opt.step();
                {step}
                lrs.push(s.get_last_lr());
                let g = opt.param_groups[0];
                if t % 50 == 0 {{ moms.push(if "betas" in g {{ g.betas[0] }} else {{ g.momentum }}); }}
            }}
            [lrs, moms]
        "#
        );
        let out = match eval(&script) {
            Ok(v) => v.into_array().unwrap(),
            Err(e) => {
                failures.push(format!("{ctor}: {e}"));
                continue;
            }
        };
        let got: Vec<Vec<f64>> = out[0].clone().into_array().unwrap().iter().map(floats).collect();
        let want: Vec<Vec<f64>> = serde_json::from_value(case["lrs"].clone()).unwrap();
        let mut worst = (0.0f64, 0usize);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.len(), w.len(), "{ctor}: group count at step {i}");
            for (a, b) in g.iter().zip(w) {
                let rel = (a - b).abs() / b.abs().max(1e-300);
                if rel > worst.0 {
                    worst = (rel, i);
                }
            }
        }
        assert_eq!(got.len(), want.len());
        let moms = floats(&out[1]);
        let want_m: Vec<f64> = serde_json::from_value(case["momentum_every_50"].clone()).unwrap();
        for (a, b) in moms.iter().zip(&want_m) {
            if (a - b).abs() > 1e-10 * b.abs() {
                failures.push(format!("{ctor}: momentum {a} vs {b}"));
                break;
            }
        }
        // 1e-10 relative: schedules are float64 scalar arithmetic on both sides (no tensor kernels,
        // so no CPU dependence); 1000 steps of recurrences like CosineAnnealingLR's accumulate
        // ~1e-13, and a wrong formula is off by far more.
        if worst.0 > 1e-10 {
            failures.push(format!("{ctor}: relative error {:e} at step {}", worst.0, worst.1));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn scheduler_state_dict_resumes_and_checks_group_count() {
    assert!(eval_bool(
        r#"
        let w = torch::zeros([2], #{requires_grad: true});
        let o1 = optim::sgd([w], #{lr: 0.1});
        let a = sched::cosine_annealing_warm_restarts(o1, #{T_0: 5, T_mult: 2});
        for i in 0..7 { a.step(); }
        let sd = a.state_dict();
        for i in 0..9 { a.step(); }
        let o2 = optim::sgd([w], #{lr: 0.1});
        let b = sched::cosine_annealing_warm_restarts(o2, #{T_0: 5, T_mult: 2});
        b.load_state_dict(sd);
        for i in 0..9 { b.step(); }
        a.get_last_lr()[0] == b.get_last_lr()[0] && b.last_epoch == 16
    "#
    ));
    let e = eval(
        r#"
        let a = torch::zeros([2], #{requires_grad: true});
        let b = torch::zeros([2], #{requires_grad: true});
        let o1 = optim::sgd([a, b], #{lr: 0.1});
        let o2 = optim::sgd([#{params: [a]}, #{params: [b]}], #{lr: 0.1});
        let s1 = sched::step_lr(o1, #{step_size: 2});
        let s2 = sched::step_lr(o2, #{step_size: 2});
        s2.load_state_dict(s1.state_dict());
    "#,
    )
    .unwrap_err();
    assert!(e.contains("1 param groups") && e.contains("has 2"), "{e}");
    assert!(eval_bool(
        r#"
        let w = torch::zeros([2], #{requires_grad: true});
        let opt = optim::sgd([w], #{lr: 0.1});
        let s = sched::reduce_lr_on_plateau(opt, #{patience: 0});
        s.step(1.0); s.step(2.0);
        let sd = s.state_dict();
        let t = sched::reduce_lr_on_plateau(opt, #{patience: 0});
        t.load_state_dict(sd);
        t.step(3.0);
        sd.best == 1.0 && opt.param_groups[0].lr < 0.0011
    "#
    ));
}

#[test]
fn bad_scheduler_input_is_a_clear_error() {
    let pre = "let w = torch::zeros([2], #{requires_grad: true}); let opt = optim::sgd([w], #{lr: 0.1}); let adam = optim::adam([torch::zeros([1], #{requires_grad: true})]);";
    let cases = [
        ("sched::step_lr(opt, #{step: 3})", "unknown option 'step'"),
        ("sched::step_lr(opt, #{gamma: 0.5})", "'step_size' is required"),
        ("sched::one_cycle_lr(opt, #{max_lr: 1.0})", "total_steps"),
        ("sched::one_cycle_lr(opt, #{max_lr: [1.0, 2.0], total_steps: 10})", "same length as optimizer.param_groups"),
        ("sched::lambda_lr(opt, [|e| 1.0, |e| 2.0])", "expected 1 lr_lambdas"),
        ("sched::reduce_lr_on_plateau(opt, #{mode: \"up\"})", "mode up is unknown"),
        ("let s = sched::reduce_lr_on_plateau(opt); s.step();", "needs the monitored metric"),
        ("sched::chained_scheduler([sched::exponential_lr(opt, #{gamma: 0.9}), sched::exponential_lr(adam, #{gamma: 0.9})])", "same optimizer"),
        ("sched::sequential_lr(opt, [sched::exponential_lr(opt, #{gamma: 0.9})], [3])", "one more than the number of milestone"),
        ("sched::sequential_lr(opt, [sched::reduce_lr_on_plateau(opt), sched::exponential_lr(opt, #{gamma: 0.9})], [3])", "ReduceLROnPlateau"),
        ("let s = sched::lambda_lr(opt, |e| \"x\"); s.step();", "must return a number"),
        ("let s = sched::one_cycle_lr(opt, #{max_lr: 1.0, total_steps: 2}); s.step(); s.step(); s.step();", "Tried to step 3 times"),
    ];
    for (src, want) in cases {
        let e = eval(&format!("{pre} {src}")).unwrap_err();
        assert!(e.contains(want), "{src}: {e}");
    }
}

#[test]
fn the_trainer_steps_a_lambda_scheduler_from_rust() {
    let src = r#"
        fn factor(e) { 1.0 / (1 + e) }
        let w = torch::zeros([2], #{requires_grad: true});
        let opt = optim::adam([w], #{lr: 0.1});
        sched::lambda_lr(opt, factor)
    "#;
    let script = lt::script::runner::Script::from_source(std::path::Path::new("t.rhai"), src.to_string()).unwrap();
    let s: lt::sched::LRScheduler = script.run(&mut rhai::Scope::new()).unwrap().try_cast().unwrap();
    assert!(!s.is_plateau());
    for _ in 0..3 {
        s.step_with_engine(&script.engine, &script.ast, None).unwrap();
    }
    assert!((s.get_last_lr()[0] - 0.1 / 4.0).abs() < 1e-15);
    let opt = s.optimizer().unwrap();
    assert_eq!(opt.lrs(), s.get_last_lr());
    assert_eq!(opt.name(), "Adam");
    let p: lt::sched::LRScheduler = eval(
        "let w = torch::zeros([2], #{requires_grad: true}); sched::reduce_lr_on_plateau(optim::sgd([w]), #{patience: 0})",
    )
    .unwrap()
    .try_cast()
    .unwrap();
    assert!(p.is_plateau());
    let e = p.step_with_engine(&script.engine, &script.ast, None).unwrap_err();
    assert!(e.contains("metric"), "{e}");
    p.step_with_engine(&script.engine, &script.ast, Some(1.0)).unwrap();
}
