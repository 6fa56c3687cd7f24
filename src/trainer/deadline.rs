//! The fit's `max_time` as a process-wide deadline, so a hook that never returns (`loop {}` in
//! `training_step`) is stopped too: the Trainer sets it at the start of a fit, and whatever runs
//! user code (the script engine's progress callback) asks [`passed`] now and then.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The text of the error a stopped hook reports; the Trainer recognises it.
pub const STOPPED: &str = "stopped: the Trainer's max_time ran out while this hook was running";

/// Nanoseconds after [`origin`] at which the deadline passes; 0 = none.
static DEADLINE_NS: AtomicU64 = AtomicU64::new(0);

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Sets the deadline `after` from now (None clears it).
pub fn set(after: Option<Duration>) {
    let ns = after.map(|d| (origin().elapsed() + d).as_nanos().min(u64::MAX as u128) as u64).map(|n| n.max(1));
    DEADLINE_NS.store(ns.unwrap_or(0), Ordering::Relaxed);
}

/// Whether a deadline is set and has passed.
pub fn passed() -> bool {
    let ns = DEADLINE_NS.load(Ordering::Relaxed);
    ns != 0 && origin().elapsed().as_nanos() >= ns as u128
}

/// Clears the deadline when dropped (the fit is over, whichever way it ended).
pub struct Guard;

impl Guard {
    pub fn start(after: Option<Duration>) -> Guard {
        set(after);
        Guard
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        set(None);
    }
}
