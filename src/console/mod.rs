//! Printing that never panics: `println!` panics when stdout is a closed pipe (`lt doc | head`),
//! which would kill a fit before it flushed its logs. [`outln!`]/[`out!`] (stdout) and
//! [`errln!`] (stderr) drop what cannot be written; once a stream is gone lt stops writing to it
//! and goes on with its work (a fit keeps training and writing its logs and checkpoints).
//!
//! While progress bars are drawn on the terminal ([`bars`]), every line written goes above them.
//! Colour and the terminal's width: [`style`].
pub mod bars;
pub mod style;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

pub use style::{paint, strip_ansi, terminal_width, Stream, Style};

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

/// The bars shown on stdout; every write takes this lock, so output never lands inside a bar.
static BARS: Mutex<bars::Bars> = Mutex::new(bars::Bars::new());

fn bars() -> MutexGuard<'static, bars::Bars> {
    BARS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes `args` to a stream while bars are shown: the bars are cleared, the text is written
/// (ended with a newline, so the bars come back below it), the bars are drawn again.
fn write_above_bars(b: &bars::Bars, to_stdout: bool, args: std::fmt::Arguments) {
    let mut text = args.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let out = &mut std::io::stdout().lock();
    write_to(&STDOUT_CLOSED, out, format_args!("{}", b.hide()), true);
    if to_stdout {
        write_to(&STDOUT_CLOSED, out, format_args!("{text}"), false);
    } else {
        write_to(&STDERR_CLOSED, &mut std::io::stderr().lock(), format_args!("{text}"), true);
    }
    write_to(&STDOUT_CLOSED, out, format_args!("{}", b.show()), true);
}

/// Writes to stdout; after the first failure (a closed pipe), writes nothing more.
pub fn stdout(args: std::fmt::Arguments, flush: bool) {
    let b = bars();
    if b.is_empty() {
        write_to(&STDOUT_CLOSED, &mut std::io::stdout().lock(), args, flush)
    } else {
        write_above_bars(&b, true, args)
    }
}

/// Writes to stderr; after the first failure, writes nothing more.
pub fn stderr(args: std::fmt::Arguments) {
    let b = bars();
    if b.is_empty() {
        write_to(&STDERR_CLOSED, &mut std::io::stderr().lock(), args, false)
    } else {
        write_above_bars(&b, false, args)
    }
}

/// Prints an error on stderr: `error: ` (bold red on a terminal) and `text`, which may already
/// start with its own `error:` (a script error); the caret under the failing code is red too.
pub fn error(text: &str) {
    let text = text.strip_prefix("error:").map_or(text, str::trim_start);
    stderr(format_args!("{}\n", style::error_text(style::colour(Stream::Stderr), text)));
}

/// A warning ([`warnln!`]), printed once per run for each text: as Python's default warning
/// filter shows a repeated warning once.
pub fn warn_once(text: &str) {
    static SEEN: Mutex<std::collections::BTreeSet<String>> = Mutex::new(std::collections::BTreeSet::new());
    if SEEN.lock().unwrap_or_else(|e| e.into_inner()).insert(text.to_string()) {
        crate::warnln!("{text}");
    }
}

/// Draws a progress line in `slot` of the terminal's bars (see [`bars`]).
pub fn bar_draw(slot: usize, line: &str) {
    let mut b = bars();
    let seq = b.draw(slot, line);
    write_to(&STDOUT_CLOSED, &mut std::io::stdout().lock(), format_args!("{seq}"), true);
}

/// Ends the bar in `slot`, leaving `leave` as its line on the screen, or erasing it.
pub fn bar_close(slot: usize, leave: Option<&str>) {
    let mut b = bars();
    let seq = b.close(slot, leave);
    write_to(&STDOUT_CLOSED, &mut std::io::stdout().lock(), format_args!("{seq}"), true);
}

/// Forgets the bars (a run ended in an error, or paused in a REPL): what was drawn in slot 0
/// stays as a line, and what follows starts below it.
pub fn bars_abandon() {
    let mut b = bars();
    let seq = b.abandon();
    write_to(&STDOUT_CLOSED, &mut std::io::stdout().lock(), format_args!("{seq}"), true);
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

/// An error on stderr (see [`error`]).
#[macro_export]
macro_rules! errorln {
    ($($arg:tt)*) => { $crate::console::error(&format!($($arg)*)) };
}

/// A warning on stderr (Lightning's `rank_zero_warn`): `warning: ` (bold yellow on a terminal)
/// and the text.
#[macro_export]
macro_rules! warnln {
    ($($arg:tt)*) => {
        $crate::console::stderr(format_args!(
            "{} {}\n",
            $crate::console::paint($crate::console::Stream::Stderr, $crate::console::Style::Warning, "warning:"),
            format_args!($($arg)*)
        ))
    };
}

/// `eprint!` that never panics (see [`crate::console`]).
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => { $crate::console::stderr(format_args!($($arg)*)) };
}
