//! Lightning's `Timer`: stops the fit once `duration` of training time has passed (checked after
//! each training batch, or at each training epoch end), and records the elapsed time of each stage
//! (`train`, `sanity_check`, `validate`, `test`, `predict`). The elapsed times are part of its
//! checkpoint state, so a resumed fit continues counting from where it stopped.
use crate::trainer::callback::{Action, Callback};
use crate::trainer::state::SharedState;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// When the time limit is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerInterval {
    Step,
    Epoch,
}

pub struct Timer {
    pub duration: Option<Duration>,
    pub interval: TimerInterval,
    pub verbose: bool,
    /// Seconds elapsed in finished runs of each stage (and restored from a checkpoint).
    done: BTreeMap<String, f64>,
    /// Stages running now, with when they started.
    running: BTreeMap<String, Instant>,
}

const STAGES: [&str; 5] = ["train", "sanity_check", "validate", "test", "predict"];

impl Timer {
    pub fn new(duration: Option<Duration>, interval: &str, verbose: bool) -> Result<Timer, String> {
        let interval = match interval {
            "step" => TimerInterval::Step,
            "epoch" => TimerInterval::Epoch,
            o => return Err(format!("Timer: interval must be \"step\" or \"epoch\", got \"{o}\"")),
        };
        Ok(Timer { duration, interval, verbose, done: BTreeMap::new(), running: BTreeMap::new() })
    }

    /// Seconds spent in `stage` so far (Lightning's `timer.time_elapsed(stage)`).
    pub fn time_elapsed(&self, stage: &str) -> f64 {
        self.done.get(stage).copied().unwrap_or(0.0)
            + self.running.get(stage).map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    /// Seconds of training left before the limit (None without a duration).
    pub fn time_remaining(&self) -> Option<f64> {
        self.duration.map(|d| d.as_secs_f64() - self.time_elapsed("train"))
    }

    fn start(&mut self, stage: &str) {
        self.running.insert(stage.to_string(), Instant::now());
    }

    fn end(&mut self, stage: &str) {
        if let Some(t) = self.running.remove(stage) {
            *self.done.entry(stage.to_string()).or_insert(0.0) += t.elapsed().as_secs_f64();
        }
    }

    fn check(&self) -> Vec<Action> {
        match self.time_remaining() {
            Some(r) if r <= 0.0 => {
                let e = self.time_elapsed("train");
                let mut actions = vec![Action::Stop];
                if self.verbose {
                    actions.push(Action::Info {
                        message: format!("Time limit reached. Elapsed time is {}. Signaling Trainer to stop.", hms(e)),
                        rank_zero_only: true,
                    });
                }
                actions
            }
            _ => vec![],
        }
    }
}

/// `H:MM:SS` like Python's `timedelta` text.
fn hms(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

impl Callback for Timer {
    fn state_key(&self) -> String {
        "Timer".into()
    }
    fn on_hook(&mut self, hook: &str, state: &SharedState) -> Result<Vec<Action>, String> {
        let stage = state.borrow().stage.name();
        match hook {
            "on_train_start" => self.start("train"),
            "on_train_end" => self.end("train"),
            "on_validation_start" | "on_test_start" | "on_predict_start" => self.start(stage),
            "on_validation_end" | "on_test_end" | "on_predict_end" => self.end(stage),
            "on_train_batch_end" if self.interval == TimerInterval::Step => return Ok(self.check()),
            "on_train_epoch_end" if self.interval == TimerInterval::Epoch => return Ok(self.check()),
            _ => {}
        }
        Ok(vec![])
    }
    fn state_dict(&self) -> Value {
        let elapsed: serde_json::Map<String, Value> =
            STAGES.iter().map(|s| (s.to_string(), json!(self.time_elapsed(s)))).collect();
        json!({ "time_elapsed": elapsed })
    }
    fn load_state_dict(&mut self, s: &Value) -> Result<(), String> {
        let s = super::state::State::new(s, &["time_elapsed"])?;
        let elapsed = s.f64_map("time_elapsed")?;
        if let Some((k, _)) = elapsed.iter().find(|(k, _)| !STAGES.contains(k)) {
            return Err(format!("unknown stage '{k}' in time_elapsed (valid: {})", STAGES.join(", ")));
        }
        if let Some(k) = STAGES.iter().find(|k| !elapsed.iter().any(|(e, _)| e == *k)) {
            return Err(format!("missing stage '{k}' in time_elapsed (valid: {})", STAGES.join(", ")));
        }
        if let Some((k, v)) = elapsed.iter().find(|(_, v)| !(v.is_finite() && *v >= 0.0)) {
            return Err(format!("time_elapsed of '{k}' is {v}, not a number of seconds >= 0"));
        }
        self.done = elapsed.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        Ok(())
    }
}
