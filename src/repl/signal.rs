//! Ctrl-C while a script runs: a SIGINT handler sets a flag that the engines' progress callback
//! turns into "interrupted", so the evaluation stops and the REPL (or the paused run) goes on.
use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
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
        // SAFETY: a plain sigaction call with a handler that only stores to an atomic.
        unsafe {
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as usize;
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
