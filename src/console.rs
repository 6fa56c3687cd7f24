//! Printing that never panics: `println!` panics when stdout is a closed pipe (`lt doc | head`),
//! which would kill a fit before it flushed its logs. [`outln!`]/[`out!`] (stdout) and
//! [`errln!`] (stderr) drop what cannot be written; once a stream is gone lt stops writing to it
//! and goes on with its work (a fit keeps training and writing its logs and checkpoints).
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);
static QUIET: AtomicBool = AtomicBool::new(false);

/// `--quiet`: the informational lines ([`infoln!`]) are not printed.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether `--quiet` was given.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Whether stdout was found closed (a reader of the pipe went away).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

fn write_to(closed: &AtomicBool, w: &mut dyn Write, args: std::fmt::Arguments, flush: bool) {
    if closed.load(Ordering::Relaxed) {
        return;
    }
    let r = w.write_fmt(args).and_then(|()| if flush { w.flush() } else { Ok(()) });
    if r.is_err() {
        closed.store(true, Ordering::Relaxed);
    }
}

/// Writes to stdout; after the first failure (a closed pipe), writes nothing more.
pub fn stdout(args: std::fmt::Arguments, flush: bool) {
    write_to(&STDOUT_CLOSED, &mut std::io::stdout().lock(), args, flush)
}

/// Writes to stderr; after the first failure, writes nothing more.
pub fn stderr(args: std::fmt::Arguments) {
    write_to(&STDERR_CLOSED, &mut std::io::stderr().lock(), args, false)
}

/// `print!` that never panics (see [`crate::console`]); flushes, as a prompt or progress line needs.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::console::stdout(format_args!($($arg)*), true) };
}

/// `println!` that never panics (see [`crate::console`]).
#[macro_export]
macro_rules! outln {
    () => { $crate::console::stdout(format_args!("\n"), false) };
    ($($arg:tt)*) => { $crate::console::stdout(format_args!("{}\n", format_args!($($arg)*)), false) };
}

/// `eprintln!` that never panics (see [`crate::console`]).
#[macro_export]
macro_rules! errln {
    () => { $crate::console::stderr(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::stderr(format_args!("{}\n", format_args!($($arg)*))) };
}

/// An informational line on stderr (Lightning's `rank_zero_info`, which its logging handler
/// writes to stderr), unless `--quiet`.
#[macro_export]
macro_rules! infoln {
    ($($arg:tt)*) => {
        if !$crate::console::quiet() {
            $crate::console::stderr(format_args!("{}\n", format_args!($($arg)*)))
        }
    };
}

/// `eprint!` that never panics (see [`crate::console`]).
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => { $crate::console::stderr(format_args!($($arg)*)) };
}
