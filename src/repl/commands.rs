//! The REPL's `:` commands: parsing and their help text.
use std::path::PathBuf;

/// A parsed `:` command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Help(Option<String>),
    /// `:time EXPR`: runs EXPR and says how long it took.
    Time(String),
    Load(PathBuf),
    Reload,
    Vars,
    Metrics,
    Fit(usize),
    Validate,
    Test,
    Continue,
    Quit,
}

/// Each command with a one-line description (`:help` prints them; completion offers them).
pub const COMMANDS: &[(&str, &str)] = &[
    (":help [name]", "this list, or the signature and doc of a function (`:help zeros`, `:help torch::cat`)"),
    (":doc NAME", "the signature and doc of a function (also `NAME?`, `?NAME` and `help(NAME)`)"),
    (":time EXPR", "run EXPR, print its value and the wall time it took"),
    (":load FILE", "run a script here; a module script (with training_step) becomes the model, with a Trainer"),
    (":reload", "reload the last loaded file; a module's functions are swapped in keeping `this` and the Trainer"),
    (":vars", "the variables defined so far"),
    (":fit N", "train the loaded module N more optimizer steps"),
    (":validate", "run the validation loop of the loaded module"),
    (":test", "run the test loop of the loaded module"),
    (":metrics", "the Trainer's callback_metrics"),
    (":continue", "leave a breakpoint() and resume the run (Ctrl-D does the same)"),
    (":quit", "leave the REPL (Ctrl-D does the same)"),
];

/// Parses a line that starts with `:`.
pub fn parse(line: &str) -> Result<Command, String> {
    let line = line.trim();
    let (name, arg) = match line.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim()),
        None => (line, ""),
    };
    let arg_opt = if arg.is_empty() { None } else { Some(arg.to_string()) };
    let no_arg = |c: Command| if arg.is_empty() { Ok(c) } else { Err(format!("{name} takes no argument")) };
    match name {
        ":help" | ":h" | ":?" => Ok(Command::Help(arg_opt)),
        ":doc" => arg_opt.map(|a| Command::Help(Some(a))).ok_or_else(|| "usage: :doc NAME".to_string()),
        ":time" => arg_opt.map(Command::Time).ok_or_else(|| "usage: :time EXPR".to_string()),
        ":load" | ":l" => {
            arg_opt.map(|a| Command::Load(PathBuf::from(a))).ok_or_else(|| "usage: :load FILE".to_string())
        }
        ":reload" | ":r" => no_arg(Command::Reload),
        ":vars" => no_arg(Command::Vars),
        ":metrics" => no_arg(Command::Metrics),
        ":fit" => match arg.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Command::Fit(n)),
            _ => Err("usage: :fit N (N optimizer steps, N > 0)".into()),
        },
        ":validate" => no_arg(Command::Validate),
        ":test" => no_arg(Command::Test),
        ":continue" | ":c" => no_arg(Command::Continue),
        ":quit" | ":q" | ":exit" => no_arg(Command::Quit),
        other => Err(format!("unknown command {other}; :help lists them")),
    }
}

/// The `:help` text without an argument.
pub fn help_text() -> String {
    let mut s = String::from("Rhai code is evaluated as you type it; the last expression's value is printed.\n");
    for (c, d) in COMMANDS {
        s.push_str(&format!("  {c:<14} {d}\n"));
    }
    s.push_str("Tab completes namespaces (torch::), functions, methods and the keys of maps and modules (this.mo<Tab>); `this` shows the loaded model. Ctrl-C stops a running evaluation.\n");
    s
}
