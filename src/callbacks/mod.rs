//! Lightning's built-in callbacks, in Rust: ModelCheckpoint, EarlyStopping, LearningRateMonitor,
//! Timer, GradientAccumulationScheduler, ModelSummary, StochasticWeightAveraging, WeightAveraging
//! EMAWeightAveraging, BackboneFinetuning and ThroughputMonitor.
//! They observe the loop state and ask the Trainer for actions (see `trainer::callback`).
pub mod api;
pub mod backbone_finetuning;
pub mod early_stopping;
pub mod filename;
pub mod grad_accum;
pub mod lr_monitor;
pub mod model_checkpoint;
pub mod model_summary;
pub mod state;
pub mod throughput_monitor;
pub mod timer;
pub mod weight_averaging;

pub use backbone_finetuning::BackboneFinetuning;
pub use early_stopping::EarlyStopping;
pub use grad_accum::GradientAccumulationScheduler;
pub use lr_monitor::LearningRateMonitor;
pub use model_checkpoint::ModelCheckpoint;
pub use model_summary::ModelSummary;
pub use throughput_monitor::ThroughputMonitor;
pub use timer::Timer;
pub use weight_averaging::WeightAveraging;

/// "min" / "max" monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    Min,
    Max,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "min" => Ok(Mode::Min),
            "max" => Ok(Mode::Max),
            o => Err(format!("mode must be \"min\" or \"max\", got \"{o}\"")),
        }
    }
    /// Whether `a` is strictly better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Mode::Min => a < b,
            Mode::Max => a > b,
        }
    }
    pub fn worst(self) -> f64 {
        match self {
            Mode::Min => f64::INFINITY,
            Mode::Max => f64::NEG_INFINITY,
        }
    }
}
