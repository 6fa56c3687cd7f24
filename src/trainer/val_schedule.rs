//! When the fit validates: Lightning's `_should_check_val_fx` for `val_check_interval` and
//! `check_val_every_n_epoch`, as a pure function of the Trainer options and the loop's position.
use super::config::{Limit, TrainerConfig};

/// Whether validation runs after batch `batch_idx` (0-based) of epoch `epoch` (0-based), in an epoch
/// of `n` batches (None when the loader has no length), `total_batches_seen` training batches into
/// the fit (counting this one).
///
/// As Lightning 2.6: validation is considered only in epochs where `(epoch + 1) %
/// check_val_every_n_epoch == 0`. An int `val_check_interval` k validates after every k-th batch of
/// the epoch — or, with `check_val_every_n_epoch: ()` (None), every k-th batch of the whole fit,
/// across epoch boundaries. A fraction f < 1 validates after every `max(1, floor(n · f))`-th batch
/// (so 0.5 of 5 batches: after batches 2 and 4, not after 5). 1.0 validates after the last batch.
pub fn val_due(c: &TrainerConfig, batch_idx: usize, n: Option<usize>, epoch: usize, total_batches_seen: usize) -> bool {
    let epoch_ok = validates_in_epoch(c, epoch);
    let last = n.is_some_and(|n| batch_idx + 1 == n);
    match c.val_check_interval {
        Limit::Count(k) if k > 0 => {
            if c.check_val_every_n_epoch.is_none() {
                total_batches_seen.is_multiple_of(k)
            } else {
                epoch_ok && (batch_idx + 1).is_multiple_of(k)
            }
        }
        Limit::Fraction(f) if f < 1.0 && f > 0.0 => match n {
            Some(n) => {
                let every = ((n as f64) * f).floor().max(1.0) as usize;
                epoch_ok && (batch_idx + 1).is_multiple_of(every)
            }
            None => false,
        },
        _ => epoch_ok && last,
    }
}

/// Lightning's `_should_check_val_epoch`: whether epoch `epoch` (0-based) validates at all —
/// every `check_val_every_n_epoch`-th epoch, or every epoch when it is None.
pub fn validates_in_epoch(c: &TrainerConfig, epoch: usize) -> bool {
    match c.check_val_every_n_epoch {
        Some(k) if k > 0 => (epoch + 1).is_multiple_of(k as usize),
        Some(_) => false,
        None => true,
    }
}
