//! Script errors as users read them: the message, `file:line:col`, the source line with a caret,
//! the chain of script functions that led there, and the hook that was running.
use rhai::{EvalAltResult, ParseError, Position};
use std::collections::BTreeMap;
use std::fmt;

/// One frame of the script call chain: a function and where it was called.
#[derive(Debug, Clone)]
pub struct Frame {
    pub function: String,
    pub source: Option<String>,
    pub position: Position,
}

impl Frame {
    /// `fn name`, or `the closure |x| at m.rhai:3:12`.
    fn described(&self) -> String {
        if self.function.starts_with("the closure") {
            self.function.clone()
        } else {
            format!("fn {}", self.function)
        }
    }
}

/// A script failure, ready to print.
#[derive(Debug, Clone)]
pub struct ScriptError {
    pub message: String,
    /// File the innermost error is in.
    pub file: String,
    pub position: Position,
    /// The source line at `position`, when the file's text is known.
    pub line_text: Option<String>,
    /// Outermost call first.
    pub chain: Vec<Frame>,
    /// The hook the host was calling (`training_step`), if any.
    pub hook: Option<String>,
}

impl std::error::Error for ScriptError {}

impl ScriptError {
    /// A parse (compile) error in `file`.
    pub fn from_parse(e: &ParseError, file: &str, source: &str) -> Self {
        let mut position = e.position();
        let mut message = format!("syntax error: {}", e.err_type());
        // Rhai reports what the end of the file left open (a missing `}`) on the line after the
        // last: point just past the last character of the script instead.
        if position.line().is_some() && line_of(source, position).is_none() {
            if let Some((n, text)) = source.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).last() {
                let clamp = |v: usize| (v + 1).min(u16::MAX as usize) as u16;
                position = Position::new(clamp(n), clamp(text.chars().count()));
                message.push_str(" (at the end of the file)");
            }
        }
        Self::at(file, source, position, message)
    }

    /// An error found at `position` of `file` (whose text is `source`) before the script runs: a
    /// syntax error, or a check of the compiled script.
    pub fn at(file: &str, source: &str, position: Position, message: String) -> Self {
        ScriptError {
            message,
            file: file.to_string(),
            position,
            line_text: line_of(source, position),
            chain: vec![],
            hook: None,
        }
    }

    /// A runtime error of a script whose main file is `file` with text `source`.
    pub fn from_eval(e: &EvalAltResult, file: &str, source: &str, hook: Option<&str>) -> Self {
        let mut chain = Vec::new();
        let mut cur = e;
        let mut cur_file: Option<String> = None;
        while let EvalAltResult::ErrorInFunctionCall(name, src, inner, pos) = cur {
            chain.push(Frame {
                function: closure_name(name).unwrap_or_else(|| name.clone()),
                source: Some(cur_file.clone().unwrap_or_else(|| file.to_string())),
                position: *pos,
            });
            cur_file = if src.is_empty() { cur_file } else { Some(src.clone()) };
            cur = inner;
        }
        // Errors in natively registered functions are reported as ErrorInFunctionCall too: keep
        // only script function frames (those with a position) for the chain.
        let position = cur.position();
        let in_file = cur_file.clone().unwrap_or_else(|| file.to_string());
        let text = if in_file == file { line_of(source, position) } else { None };
        ScriptError {
            message: message_of(cur),
            file: in_file,
            position,
            line_text: text,
            chain,
            hook: hook.map(str::to_string),
        }
    }

    /// `file:line:col` of the error.
    pub fn location(&self) -> String {
        match (self.position.line(), self.position.position()) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}", self.file),
            (Some(l), None) => format!("{}:{l}", self.file),
            _ => self.file.clone(),
        }
    }
}

/// Where each closure of the compiled scripts is defined: Rhai names a closure `anon$<hash>`,
/// which tells a user nothing; errors name its file, line and parameters instead.
static CLOSURES: std::sync::Mutex<BTreeMap<String, String>> = std::sync::Mutex::new(BTreeMap::new());

/// Records the closures of `ast` (compiled from `file`).
pub fn remember_closures(ast: &rhai::AST, file: &str) {
    let mut known = CLOSURES.lock().unwrap_or_else(|e| e.into_inner());
    for (_, _, name, _, def) in ast.shared_lib().iter_script_fn_info() {
        if name.starts_with("anon$") {
            let pos = def.body.start_position();
            let at = match (pos.line(), pos.position()) {
                (Some(l), Some(c)) => format!("{file}:{l}:{c}"),
                (Some(l), None) => format!("{file}:{l}"),
                _ => file.to_string(),
            };
            let params: Vec<&str> = def.params.iter().map(|p| p.as_str()).collect();
            known.insert(name.to_string(), format!("the closure |{}| at {at}", params.join(", ")));
        }
    }
}

/// `the closure |x, y| at m.rhai:3:12` for a closure's internal name.
fn closure_name(name: &str) -> Option<String> {
    CLOSURES.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
}

/// The message of an evaluation error, without its location.
pub fn message_of(e: &EvalAltResult) -> String {
    match e {
        // a closure called with the wrong arguments: say which closure, and what it takes
        EvalAltResult::ErrorFunctionNotFound(sig, _) if sig.starts_with("anon$") => {
            let (name, args) = sig.split_once(" (").unwrap_or((sig, ")"));
            let args = args.trim_end_matches(')');
            let given = if args.trim().is_empty() { 0 } else { args.split(',').count() };
            match closure_name(name) {
                Some(c) => format!("{c} cannot be called with {given} argument(s) ({args})"),
                None => format!("a closure cannot be called with {given} argument(s) ({args})"),
            }
        }
        EvalAltResult::ErrorRuntime(v, _) => match v.clone().into_immutable_string() {
            Ok(s) => s.to_string(),
            Err(_) => format!("{v}"),
        },
        // Rhai's call-depth limit (not the process stack: lt runs on a stack deep enough for it)
        EvalAltResult::ErrorStackOverflow(_) => format!(
            "too many nested function calls (more than {} levels: a recursion without an end?)",
            crate::script::engine::MAX_CALL_LEVELS
        ),
        // the engine's progress callback stopped it: Ctrl-C, or the fit's max_time (its token says which)
        EvalAltResult::ErrorTerminated(token, _) => token
            .clone()
            .into_immutable_string()
            .map(|s| s.to_string())
            .unwrap_or_else(|_| crate::repl::signal::INTERRUPTED_MSG.into()),
        // `y.shape()` for the property `y.shape`
        EvalAltResult::ErrorFunctionNotFound(sig, _)
            if sig.split_once(" (").is_some_and(|(name, args)| {
                crate::script::registry::is_property(name) && !args.trim_end_matches(')').contains(',')
            }) =>
        {
            let name = sig.split_once(" (").map_or(sig.as_str(), |(n, _)| n);
            format!("Function not found: {sig}; `{name}` is a property: write `.{name}` without parentheses")
        }
        other => {
            // Rhai's Display appends " (line x, position y)"; the location is printed separately.
            let s = other.to_string();
            match s.rfind(" (line ") {
                Some(i) if s.ends_with(')') => s[..i].to_string(),
                _ => s,
            }
        }
    }
}

fn line_of(source: &str, pos: Position) -> Option<String> {
    let l = pos.line()?;
    source.lines().nth(l.checked_sub(1)?).map(str::to_string)
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        writeln!(f, "  --> {}", self.location())?;
        if let (Some(text), Some(l)) = (&self.line_text, self.position.line()) {
            let num = l.to_string();
            let pad = " ".repeat(num.len());
            writeln!(f, "{pad} |")?;
            writeln!(f, "{num} | {text}")?;
            if let Some(c) = self.position.position() {
                // columns count characters; tabs keep their width by copying them
                let lead: String =
                    text.chars().take(c.saturating_sub(1)).map(|ch| if ch == '\t' { '\t' } else { ' ' }).collect();
                writeln!(f, "{pad} | {lead}^")?;
            }
        }
        for frame in self.chain.iter().rev() {
            let file = frame.source.clone().unwrap_or_else(|| self.file.clone());
            match (frame.position.line(), frame.position.position()) {
                (Some(l), Some(c)) => writeln!(f, "  in {}, called at {file}:{l}:{c}", frame.described())?,
                _ => writeln!(f, "  in {}", frame.described())?,
            }
        }
        if let Some(h) = &self.hook {
            writeln!(f, "  in hook {h}")?;
        }
        Ok(())
    }
}
