//! How a run ends, whichever way: fit / validate / test run with Ctrl-C turned into a graceful
//! stop (checked at every batch boundary and, inside script hooks, by the engine), and when one
//! ends with an error — Ctrl-C, a script error, any other — the loggers still write what they
//! hold and the terminal says what stopped the run (Lightning's `_call_and_handle_interrupt`).
use super::*;
use crate::repl::signal::{self, SigintGuard, INTERRUPTED_MSG};

impl Trainer {
    /// Runs `run` (a fit or an evaluation, `what` in messages) under a Ctrl-C guard (one process
    /// only: a DDP rank stopping alone would leave the others waiting in a collective), and on an
    /// error flushes the loggers and says what stopped it.
    pub(super) fn guarded<R>(
        &mut self,
        what: &str,
        run: impl FnOnce(&mut Self) -> Result<R, String>,
    ) -> Result<R, String> {
        let alone = self.state.borrow().world_size <= 1;
        let _sigint = if alone { SigintGuard::install_for_run() } else { None };
        let r = run(self);
        if let Err(e) = &r {
            self.report_failed_run(what, e);
        }
        // the profiler reports however the run ended (Lightning's teardown)
        let described = self.profiler_describe();
        let r = r?;
        described?;
        Ok(r)
    }

    /// A batch boundary: a pending Ctrl-C stops the run here.
    pub(super) fn check_interrupt(&self) -> Result<(), String> {
        if signal::take_interrupt() {
            return Err(INTERRUPTED_MSG.into());
        }
        Ok(())
    }

    fn report_failed_run(&mut self, what: &str, e: &str) {
        let flushed = self.save_loggers();
        let (rank, epoch, step) = {
            let s = self.state.borrow();
            (s.global_rank, s.progress.current_epoch, s.progress.global_step)
        };
        if rank == 0 {
            let at = format!("epoch {epoch}, global step {step}");
            if e.contains(INTERRUPTED_MSG) {
                infoln!("\nDetected KeyboardInterrupt, attempting graceful shutdown ...");
                infoln!("`Trainer.{what}` stopped: interrupted (Ctrl-C) at {at}.");
            } else {
                infoln!("`Trainer.{what}` stopped: an error at {at} (it follows).");
            }
            if let Some(dir) = self.loggers.log_dir().filter(|d| d.exists()) {
                infoln!("The logs written so far are in {}", dir.display());
            }
        }
        if let Err(fe) = flushed {
            errln!("warning: the logs could not be written: {fe}");
        }
    }
}
