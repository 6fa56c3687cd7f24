//! Where REPL input comes from: a line editor with history when stdin is a terminal, plain lines
//! otherwise (piped input: no prompt, no editing; unfinished code continues on the next line).
use super::complete::{ReplHelper, Words};
use super::multiline::is_incomplete;
use rhai::Engine;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::Editor;
use std::cell::RefCell;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::rc::Rc;

/// One read.
pub enum Read {
    Line(String),
    /// Ctrl-C at the prompt: the line is dropped.
    Interrupted,
    Eof,
}

pub enum Input {
    Tty {
        editor: Box<Editor<ReplHelper, DefaultHistory>>,
        history: Option<PathBuf>,
    },
    /// Plain lines; `lines_read` counts them, for messages about a bad one.
    Pipe {
        lines_read: usize,
    },
}

/// `~/.cache/lt/repl_history` (or under `$XDG_CACHE_HOME`).
pub fn history_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("lt").join("repl_history"))
}

/// Reads lines until the code is complete: the first after `prompt`, the others after a
/// continuation prompt `... ` as wide (Python's and IPython's).
fn read_continued(
    editor: &mut Editor<ReplHelper, DefaultHistory>,
    prompt: &str,
    engine: &Engine,
) -> rustyline::Result<String> {
    let more = format!("{:>w$} ", "...", w = prompt.chars().count().saturating_sub(1).max(3));
    let mut buf = editor.readline(prompt)?;
    while is_incomplete(engine, &buf) {
        let line = editor.readline(&more)?;
        buf.push('\n');
        buf.push_str(&line);
    }
    Ok(buf)
}

impl Input {
    /// A terminal editor when stdin is a terminal (and the editor starts), else plain lines.
    pub fn open(vars: Rc<RefCell<Vec<String>>>) -> Input {
        if !std::io::stdin().is_terminal() {
            return Input::Pipe { lines_read: 0 };
        }
        let engine = match super::repl_engine() {
            Ok(e) => e,
            Err(_) => return Input::Pipe { lines_read: 0 },
        };
        // Tab completes the common prefix, a second Tab lists the candidates (as bash and IPython)
        let config = rustyline::Config::builder().completion_type(rustyline::CompletionType::List).build();
        let mut editor = match Editor::<ReplHelper, DefaultHistory>::with_config(config) {
            Ok(e) => e,
            Err(e) => {
                warnln!("no line editor ({e}); reading plain lines");
                return Input::Pipe { lines_read: 0 };
            }
        };
        editor.set_helper(Some(ReplHelper { words: Words::from_engine(&engine), vars }));
        let history = history_path();
        if let Some(h) = &history {
            if let Some(dir) = h.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = editor.load_history(h);
        }
        Input::Tty { editor: Box::new(editor), history }
    }

    /// Reads one complete input (several lines when the code is unfinished).
    pub fn read(&mut self, prompt: &str, engine: &Engine) -> Read {
        match self {
            Input::Tty { editor, history } => match read_continued(editor, prompt, engine) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                        if let Some(h) = history {
                            if let Err(e) = editor.save_history(h) {
                                warnln!("cannot write the history file {}: {e}", h.display());
                                *history = None;
                            }
                        }
                    }
                    Read::Line(line)
                }
                Err(ReadlineError::Interrupted) => Read::Interrupted,
                Err(ReadlineError::Eof) => Read::Eof,
                Err(e) => {
                    errorln!("cannot read input: {e}");
                    Read::Eof
                }
            },
            Input::Pipe { lines_read } => {
                let stdin = std::io::stdin();
                let mut buf = String::new();
                loop {
                    let mut bytes = Vec::new();
                    match stdin.lock().read_until(b'\n', &mut bytes) {
                        Ok(0) => return if buf.trim().is_empty() { Read::Eof } else { Read::Line(buf) },
                        Err(e) => {
                            errorln!("cannot read input: {e}");
                            return if buf.trim().is_empty() { Read::Eof } else { Read::Line(buf) };
                        }
                        Ok(_) => {
                            *lines_read += 1;
                            // a line that is not UTF-8 is refused, with the input read so far
                            // for the same statement; the session goes on with the next line
                            let line = match String::from_utf8(bytes) {
                                Ok(l) => l,
                                Err(e) => {
                                    let at = e.utf8_error().valid_up_to();
                                    errorln!(
                                        "input line {} is not UTF-8 text (byte 0x{:02x} at byte {}); it was skipped{}",
                                        lines_read,
                                        e.as_bytes()[at],
                                        at + 1,
                                        if buf.is_empty() { "" } else { " with the unfinished input before it" }
                                    );
                                    return Read::Interrupted;
                                }
                            };
                            buf.push_str(&line);
                            if !is_incomplete(engine, &buf) {
                                while buf.ends_with('\n') || buf.ends_with('\r') {
                                    buf.pop();
                                }
                                return Read::Line(buf);
                            }
                        }
                    }
                }
            }
        }
    }
}
