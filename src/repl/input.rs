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
        let mut editor = match Editor::<ReplHelper, DefaultHistory>::new() {
            Ok(e) => e,
            Err(e) => {
                errln!("warning: no line editor ({e}); reading plain lines");
                return Input::Pipe { lines_read: 0 };
            }
        };
        editor.set_helper(Some(ReplHelper { words: Words::from_engine(&engine), vars, engine }));
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
            Input::Tty { editor, history } => match editor.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                        if let Some(h) = history {
                            if let Err(e) = editor.save_history(h) {
                                errln!("warning: cannot write the history file {}: {e}", h.display());
                                *history = None;
                            }
                        }
                    }
                    Read::Line(line)
                }
                Err(ReadlineError::Interrupted) => Read::Interrupted,
                Err(ReadlineError::Eof) => Read::Eof,
                Err(e) => {
                    errln!("error: cannot read input: {e}");
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
                            errln!("error: cannot read input: {e}");
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
                                    errln!(
                                        "error: input line {} is not UTF-8 text (byte 0x{:02x} at byte {}); it was skipped{}",
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
