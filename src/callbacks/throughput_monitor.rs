//! ThroughputMonitor: Lightning's callback over Fabric's `Throughput` — per stage (`train`,
//! `validate`, `test`, `predict`), the time, batches and samples so far and, once `window_size`
//! batches were seen, rolling `device/batches_per_sec` and `device/samples_per_sec` (with the
//! global `batches_per_sec` / `samples_per_sec` when several processes run), logged straight to
//! the loggers under `<stage>/…` as Lightning's logger connector does. Training time excludes the
//! validation runs inside it.
use crate::trainer::callback::{Action, Callback};
use crate::trainer::state::{RunningStage, SharedState};
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// Fabric's `Throughput`: windows of (time, batches, samples) totals.
#[derive(Debug)]
struct Throughput {
    window: usize,
    time: VecDeque<f64>,
    batches: VecDeque<u64>,
    samples: VecDeque<u64>,
}

impl Throughput {
    fn new(window: usize) -> Self {
        Throughput { window, time: VecDeque::new(), batches: VecDeque::new(), samples: VecDeque::new() }
    }

    fn reset(&mut self) {
        self.time.clear();
        self.batches.clear();
        self.samples.clear();
    }

    /// `_MonotonicWindow.append` for each total: values must increase.
    fn update(&mut self, time: f64, batches: u64, samples: u64) -> Result<(), String> {
        if samples < batches {
            return Err(format!("Expected samples ({samples}) to be greater or equal than batches ({batches})"));
        }
        if self.time.back().is_some_and(|t| *t >= time) {
            return Err(format!("Expected the value to increase, last: {:?}, current: {time}", self.time.back()));
        }
        for (w, v) in [(&mut self.batches, batches), (&mut self.samples, samples)] {
            if w.back().is_some_and(|b| *b >= v) {
                return Err(format!("Expected the value to increase, last: {:?}, current: {v}", w.back()));
            }
        }
        self.time.push_back(time);
        self.batches.push_back(batches);
        self.samples.push_back(samples);
        if self.time.len() > self.window {
            self.time.pop_front();
            self.batches.pop_front();
            self.samples.pop_front();
        }
        Ok(())
    }

    /// `Throughput.compute()` (no lengths, no flops).
    fn compute(&self, world_size: usize) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        let (Some(t), Some(b), Some(s)) = (self.time.back(), self.batches.back(), self.samples.back()) else {
            return m;
        };
        m.insert("time".to_string(), *t);
        m.insert("batches".to_string(), *b as f64);
        m.insert("samples".to_string(), *s as f64);
        if self.time.len() == self.window {
            let elapsed = t - self.time[0];
            let dev_batches = (b - self.batches[0]) as f64 / elapsed;
            let dev_samples = (s - self.samples[0]) as f64 / elapsed;
            m.insert("device/batches_per_sec".to_string(), dev_batches);
            m.insert("device/samples_per_sec".to_string(), dev_samples);
            if world_size > 1 {
                m.insert("batches_per_sec".to_string(), dev_batches * world_size as f64);
                m.insert("samples_per_sec".to_string(), dev_samples * world_size as f64);
            }
        }
        m
    }
}

/// One stage's counters.
#[derive(Debug)]
struct StageState {
    throughput: Throughput,
    t0: Instant,
    batches: u64,
    samples: u64,
}

pub struct ThroughputMonitor {
    window_size: usize,
    /// A fixed number of samples per batch; else each batch's inferred size (its first tensor's
    /// first dimension, Lightning's batch-size inference).
    batch_size: Option<usize>,
    stages: BTreeMap<&'static str, StageState>,
    /// Validation batches over the fit (Lightning's `batch_progress.total.ready`): their step.
    eval_total: u64,
}

impl ThroughputMonitor {
    pub fn new(window_size: i64, batch_size: Option<i64>) -> Result<ThroughputMonitor, String> {
        if window_size < 2 {
            return Err(format!("throughput_monitor: window_size must be > 1, got {window_size}"));
        }
        let batch_size = match batch_size {
            Some(b) if b < 1 => return Err(format!("throughput_monitor: batch_size must be >= 1, got {b}")),
            b => b.map(|b| b as usize),
        };
        Ok(ThroughputMonitor { window_size: window_size as usize, batch_size, stages: BTreeMap::new(), eval_total: 0 })
    }

    fn start(&mut self, stage: &'static str) {
        let w = self.window_size;
        let s = self.stages.entry(stage).or_insert_with(|| StageState {
            throughput: Throughput::new(w),
            t0: Instant::now(),
            batches: 0,
            samples: 0,
        });
        s.throughput.reset();
        (s.batches, s.samples, s.t0) = (0, 0, Instant::now());
    }

    fn update(&mut self, stage: &'static str, state: &SharedState) -> Result<(), String> {
        let (bs, device) = {
            let st = state.borrow();
            (self.batch_size.or(st.batch_size), st.device)
        };
        let bs = bs.ok_or(
            "throughput_monitor: the batch size of this batch cannot be inferred (no tensor in it); pass #{ batch_size: n }",
        )?;
        if let tch::Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        let Some(s) = self.stages.get_mut(stage) else { return Ok(()) };
        let elapsed = s.t0.elapsed().as_secs_f64();
        s.samples += bs as u64;
        s.batches += 1;
        s.throughput.update(elapsed, s.batches, s.samples).map_err(|e| format!("throughput_monitor: {e}"))
    }

    fn compute(&self, stage: &'static str, state: &SharedState, step: Option<usize>) -> Vec<Action> {
        let Some(s) = self.stages.get(stage) else { return vec![] };
        let st = state.borrow();
        let mut m: BTreeMap<String, f64> =
            s.throughput.compute(st.world_size).into_iter().map(|(k, v)| (format!("{stage}/{k}"), v)).collect();
        if m.is_empty() {
            return vec![];
        }
        match step {
            Some(step) => vec![Action::LogAt { metrics: m, step }],
            None => {
                // the logger connector's own step: it adds the epoch, as for `this.log` rows
                m.insert("epoch".into(), st.progress.current_epoch as f64);
                vec![Action::Log(m)]
            }
        }
    }
}

impl Callback for ThroughputMonitor {
    fn state_key(&self) -> String {
        "ThroughputMonitor".into()
    }

    fn on_hook(&mut self, hook: &str, state: &SharedState) -> Result<Vec<Action>, String> {
        let (stage, rank) = {
            let s = state.borrow();
            (s.stage, s.global_rank)
        };
        if rank != 0 || stage == RunningStage::SanityChecking {
            return Ok(vec![]);
        }
        let eval_stage = match stage {
            RunningStage::Testing => "test",
            RunningStage::Predicting => "predict",
            _ => "validate",
        };
        match hook {
            "on_train_start" => self.start("train"),
            "on_train_batch_end" => {
                self.update("train", state)?;
                // Lightning's `should_update_logs`
                if state.borrow().log_due {
                    return Ok(self.compute("train", state, None));
                }
            }
            "on_validation_start" | "on_test_start" | "on_predict_start" => self.start(eval_stage),
            "on_validation_batch_end" | "on_test_batch_end" | "on_predict_batch_end" => {
                self.eval_total += 1;
                self.update(eval_stage, state)?;
                if hook != "on_predict_batch_end" {
                    let step = self.eval_total as usize;
                    return Ok(self.compute(eval_stage, state, Some(step)));
                }
            }
            "on_validation_end" => {
                // the validation run inside a fit does not count as training time: training's t0
                // moves by the time from its last update to validation's last (Lightning's shift)
                let last = |s: &StageState| {
                    std::time::Duration::from_secs_f64(s.throughput.time.back().copied().unwrap_or(0.0))
                };
                let val = self.stages.get("validate").map(|s| s.t0 + last(s));
                if let (Some(val_done), Some(train)) = (val, self.stages.get_mut("train")) {
                    let train_done = train.t0 + last(train);
                    train.t0 += val_done.saturating_duration_since(train_done);
                }
            }
            _ => {}
        }
        Ok(vec![])
    }
}
