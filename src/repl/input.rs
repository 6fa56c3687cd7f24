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
    Tty { editor: Box<Editor<ReplHelper, DefaultHistory>>, history: Option<PathBuf> },
    Pipe,
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
            return Input::Pipe;
        }
        let engine = match super::repl_engine() {
            Ok(e) => e,
            Err(_) => return Input::Pipe,
        };
        let mut editor = match Editor::<ReplHelper, DefaultHistory>::new() {
            Ok(e) => e,
            Err(e) => {
                errln!("warning: no line editor ({e}); reading plain lines");
                return Input::Pipe;
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
            Input::Pipe => {
                let stdin = std::io::stdin();
                let mut buf = String::new();
                loop {
                    let mut line = String::new();
                    match stdin.lock().read_line(&mut line) {
                        Ok(0) | Err(_) => {
                            return if buf.trim().is_empty() { Read::Eof } else { Read::Line(buf) };
                        }
                        Ok(_) => {
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
