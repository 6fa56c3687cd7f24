//! Timer, GradientAccumulationScheduler and the learning-rate finder.
use crate::common::{lt_in, stderr, stdout, temp_dir};

/// A module with 4 batches per epoch that prints its step count at the end; `CALLBACKS` is replaced.
const MODULE: &str = r#"
fn trainer() { #{ max_epochs: 3, enable_progress_bar: false, enable_checkpointing: false, enable_model_summary: false, logger: false } }
fn callbacks() { CALLBACKS }
fn init(h) { this.w = torch::zeros([2, 1], #{ requires_grad: true }); }
fn configure_optimizers() { optim::sgd([this.w], #{ lr: 0.1 }) }
fn train_dataloader() { let b = [torch::ones([4, 2]), torch::ones([4, 1])]; [b, b, b, b] }
fn training_step(b, i) { (b[0].matmul(this.w) - b[1]).square().mean() }
fn on_train_end() { print(`steps=${this.global_step} epoch=${this.current_epoch}`); }
"#;

fn fit_with(callbacks: &str, sets: &[&str]) -> std::process::Output {
    let dir = temp_dir("cb");
    std::fs::write(dir.join("m.rhai"), MODULE.replace("CALLBACKS", callbacks)).unwrap();
    let mut args = vec!["fit", "m.rhai"];
    args.extend_from_slice(sets);
    lt_in(&dir, &args)
}

#[test]
fn gradient_accumulation_scheduler_changes_the_factor_by_epoch() {
    // epoch 0: 4 steps, epoch 1: factor 2 → 2 steps, epoch 2: factor 4 → 1 step
    let out = fit_with(r#"[callbacks::gradient_accumulation_scheduler(#{ scheduling: #{ "1": 2, "2": 4 } })]"#, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("steps=7 epoch=3"), "{}", stdout(&out));
    let bad = fit_with(r#"[callbacks::gradient_accumulation_scheduler(#{ scheduling: #{ "1": 0 } })]"#, &[]);
    assert!(!bad.status.success() && stderr(&bad).contains("must be >= 1"), "{}", stderr(&bad));
}

#[test]
fn timer_stops_the_fit_when_time_is_up() {
    // duration 0: the limit is reached after the first step (checked after each batch)
    let out = fit_with("[callbacks::timer(#{ duration: 0 })]", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("steps=1 epoch=1"), "{}", stdout(&out));
    // interval "epoch": checked at the end of each epoch
    let out = fit_with(r#"[callbacks::timer(#{ duration: "00:00:00:00", interval: "epoch" })]"#, &[]);
    assert!(stdout(&out).contains("steps=4 epoch=1"), "{}", stdout(&out));
    let bad = fit_with(r#"[callbacks::timer(#{ duration: "soon" })]"#, &[]);
    assert!(!bad.status.success() && stderr(&bad).contains("DD:HH:MM:SS"), "{}", stderr(&bad));
}

#[test]
fn timer_records_elapsed_time_per_stage() {
    use lt::trainer::callback::Callback;
    use lt::trainer::state::{LoopState, RunningStage};
    let mut t = lt::callbacks::Timer::new(None, "step", false).unwrap();
    let state = LoopState::shared();
    t.on_hook("on_train_start", &state).unwrap();
    state.borrow_mut().stage = RunningStage::Validating;
    t.on_hook("on_validation_start", &state).unwrap();
    t.on_hook("on_validation_end", &state).unwrap();
    state.borrow_mut().stage = RunningStage::Training;
    t.on_hook("on_train_end", &state).unwrap();
    let sd = t.state_dict();
    let e = sd["time_elapsed"].as_object().unwrap();
    for k in ["train", "sanity_check", "validate", "test", "predict"] {
        assert!(e[k].as_f64().unwrap() >= 0.0, "{k}");
    }
    // restored state keeps counting from the saved time
    let mut t2 = lt::callbacks::Timer::new(None, "step", false).unwrap();
    let saved = serde_json::json!({"time_elapsed": {"train": 12.5, "sanity_check": 0.0, "validate": 1.0, "test": 0.0, "predict": 0.0}});
    t2.load_state_dict(&saved).unwrap();
    assert_eq!(t2.time_elapsed("train"), 12.5);
    // every stage is in the state lt writes: a missing or unknown one, or a negative time, is an error naming it
    let partial = t2.load_state_dict(&serde_json::json!({"time_elapsed": {"train": 12.5}})).unwrap_err();
    assert!(partial.contains("missing stage 'sanity_check'"), "{partial}");
    let mut odd = saved.clone();
    odd["time_elapsed"]["fitting"] = serde_json::json!(1.0);
    assert!(t2.load_state_dict(&odd).unwrap_err().contains("unknown stage 'fitting'"));
    let mut negative = saved.clone();
    negative["time_elapsed"]["test"] = serde_json::json!(-1.0);
    assert!(t2.load_state_dict(&negative).unwrap_err().contains("time_elapsed of 'test' is -1"));
    assert!(t2.load_state_dict(&serde_json::json!({})).unwrap_err().contains("missing key 'time_elapsed'"));
    assert_eq!(t2.time_elapsed("train"), 12.5, "a refused state changes nothing");
}

#[test]
fn lr_find_cli_prints_a_suggestion_and_writes_a_plot() {
    let dir = temp_dir("lrfind");
    let src = MODULE.replace("CALLBACKS", "[callbacks::timer(#{ duration: 0 })]");
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let out = lt_in(
        &dir,
        &["lr-find", "m.rhai", "--num-training", "30", "--min-lr", "1e-4", "--max-lr", "10", "-o", "lr.png"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // the Timer (duration 0) did not run: the search went on past one step
    assert!(text.contains("Suggested learning rate: ") || text.contains("stopped early"), "{text}");
    let line = text.lines().find(|l| l.starts_with("Suggested learning rate: ")).unwrap_or_else(|| panic!("{text}"));
    let lr: f64 = line.trim_start_matches("Suggested learning rate: ").parse().unwrap();
    assert!((1e-4..=10.0).contains(&lr), "{lr}");
    assert!(dir.join("lr.png").exists());
    let bad = lt_in(&dir, &["lr-find", "m.rhai", "--min-lr", "1", "--max-lr", "0.1"]);
    assert!(!bad.status.success() && stderr(&bad).contains("min_lr < max_lr"), "{}", stderr(&bad));
}

#[test]
fn lr_find_suggestion_follows_lightning() {
    use lt::tuner::lr_find::{gradient, suggest, LrFindConfig};
    // numpy.gradient([1, 4, 9, 16], [0, 1, 2, 4]) = [3, 4, 6.6667, 3.5]
    let g = gradient(&[1.0, 4.0, 9.0, 16.0], &[0.0, 1.0, 2.0, 4.0]);
    for (a, b) in g.iter().zip([3.0, 4.0, 4.5, 3.5]) {
        assert!((a - b).abs() < 1e-9, "{g:?}");
    }
    // a loss that falls fastest around index 14, skipping the first 10 and the last point
    let lrs: Vec<f64> = (0..20).map(|i| 10f64.powf(-4.0 + i as f64 * 0.2)).collect();
    let losses: Vec<f64> = (0..20).map(|i| if i < 14 { 2.0 } else { 1.0 }).collect();
    let i = suggest(&lrs, &losses, 10, 1).unwrap();
    assert!((13..=14).contains(&i), "{i}");
    assert_eq!(suggest(&lrs[..5], &losses[..5], 10, 1), None);
    let c = LrFindConfig { min_lr: 1e-3, max_lr: 1.0, num_training: 3, ..Default::default() };
    assert!((c.lr_at(0) - 1e-3).abs() < 1e-15 && (c.lr_at(3) - 1.0).abs() < 1e-12);
}

#[test]
fn lr_find_restores_the_initial_weights() {
    use lt::trainer::module::LightningModule;
    let src = MODULE.replace("CALLBACKS", "[]").replace("torch::zeros([2, 1]", "torch::ones([2, 1]");
    let script = lt::script::runner::Script::from_source(std::path::Path::new("m.rhai"), src).unwrap();
    let (mut m, opts) =
        lt::script::lightning::ScriptModule::load(script, &Default::default(), &Default::default()).unwrap();
    let mut trainer = lt::trainer::Trainer::new(lt::trainer::config::TrainerConfig::from_map(&opts).unwrap()).unwrap();
    m.attach(trainer.state.clone()).unwrap();
    let before: Vec<f64> = m.state_dict().unwrap()[0].1.flatten(0, -1).try_into().unwrap();
    let cfg = lt::tuner::lr_find::LrFindConfig { num_training: 12, min_lr: 1e-3, max_lr: 1.0, ..Default::default() };
    let res = lt::tuner::lr_find::lr_find(&mut trainer, &mut m, &cfg).unwrap();
    assert_eq!(res.lrs.len(), res.losses.len());
    assert!(!res.lrs.is_empty() && res.lrs.windows(2).all(|w| w[1] > w[0]), "{:?}", res.lrs);
    let after: Vec<f64> = m.state_dict().unwrap()[0].1.flatten(0, -1).try_into().unwrap();
    assert_eq!(before, after);
}
