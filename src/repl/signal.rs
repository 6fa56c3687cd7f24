//! Ctrl-C while a script runs: a SIGINT handler sets a flag that the engines' progress callback
//! turns into "interrupted", so the evaluation stops and the REPL (or the paused run) goes on.
//! During a fit, validate or test ([`SigintGuard::install_for_run`]) the Trainer also asks
//! [`take_interrupt`] at each batch boundary and stops gracefully, flushing its logs; a second
//! Ctrl-C then ends the process at once (for a run stuck where nothing asks).
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// SIGINTs received while a run's guard is installed.
static RUN_SIGINTS: AtomicUsize = AtomicUsize::new(0);

/// The error text of a run or evaluation stopped by Ctrl-C (the Trainer recognises it).
pub const INTERRUPTED_MSG: &str = "interrupted (Ctrl-C)";

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

extern "C" fn on_sigint_run(_: libc::c_int) {
    if RUN_SIGINTS.fetch_add(1, Ordering::SeqCst) >= 1 {
        // SAFETY: signal() and raise() are async-signal-safe; the default action ends the process.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::raise(libc::SIGINT);
        }
    }
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Clears a pending Ctrl-C (before an evaluation starts).
pub fn reset() {
    INTERRUPTED.store(false, Ordering::SeqCst);
}

/// Whether Ctrl-C was pressed since the last call (and clears it). The script engine's progress
/// callback turns it into an "interrupted (Ctrl-C)" error.
pub fn take_interrupt() -> bool {
    INTERRUPTED.load(Ordering::Relaxed) && INTERRUPTED.swap(false, Ordering::SeqCst)
}

/// While alive, SIGINT sets the flag instead of ending the process; the old handler comes back on drop.
pub struct SigintGuard {
    old: libc::sigaction,
}

impl SigintGuard {
    pub fn install() -> Option<SigintGuard> {
        Self::install_handler(on_sigint)
    }

    /// For a Trainer run: the first Ctrl-C asks the run to stop (gracefully, at the next batch
    /// boundary or script operation), a second one ends the process.
    pub fn install_for_run() -> Option<SigintGuard> {
        RUN_SIGINTS.store(0, Ordering::SeqCst);
        reset();
        Self::install_handler(on_sigint_run)
    }

    fn install_handler(handler: extern "C" fn(libc::c_int)) -> Option<SigintGuard> {
        // SAFETY: a plain sigaction call with a handler that only stores to atomics (or restores
        // the default action and re-raises).
        unsafe {
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = handler as usize;
            new.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut new.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGINT, &new, &mut old) != 0 {
                return None;
            }
            Some(SigintGuard { old })
        }
    }
}

impl Drop for SigintGuard {
    fn drop(&mut self) {
        // SAFETY: restores the handler saved by `install`.
        unsafe {
            libc::sigaction(libc::SIGINT, &self.old, std::ptr::null_mut());
        }
    }
}
