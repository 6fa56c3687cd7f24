//! `lt repl`: an interactive Rhai session on the whole `lt` surface. Variables and functions
//! persist between inputs; the last expression's value is printed. A loaded module script becomes
//! the model (`this` in the REPL) with a Trainer kept alive between `:fit N` commands.
//! `breakpoint()` in a hook opens the same REPL inside the running script (see [`pause`]).
pub mod commands;
pub mod complete;
pub mod input;
pub mod keypress;
pub mod multiline;
pub mod pause;
pub mod session;
pub mod signal;

use crate::script::error::ScriptError;
use crate::script::runner::Script;
use commands::Command;
use input::{Input, Read};
use rhai::{Dynamic, Engine, EvalAltResult, Scope, AST};
use session::Session;
use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;

/// The REPL's engine: the full `lt` engine where `this` is an ordinary variable at the top level
/// (the loaded model, or the paused hook's `this`), interruptible by Ctrl-C.
pub fn repl_engine() -> Result<Engine, String> {
    let mut engine = crate::script::engine::new_engine()?;
    #[allow(deprecated)] // "volatile", not deprecated
    engine.on_parse_token(|token, _, _| match token {
        rhai::Token::Reserved(s) if s.as_str() == "var" || s.as_str() == "this" => rhai::Token::Identifier(s),
        t => t,
    });
    Ok(engine)
}

/// How a REPL loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Quit,
    Continue,
    Eof,
}

pub struct Repl {
    engine: Engine,
    scope: Scope<'static>,
    /// Functions defined so far (typed in, or from plain scripts loaded with `:load`).
    fns: AST,
    /// Functions of the script a breakpoint() paused.
    paused_fns: Option<AST>,
    session: Option<Session>,
    loaded: Option<PathBuf>,
    sets: Vec<String>,
    /// Variable names, for completion.
    vars: Rc<RefCell<Vec<String>>>,
    show: AST,
}

const NAME: &str = "<repl>";

impl Repl {
    pub fn new(sets: Vec<String>) -> Result<Repl, String> {
        let engine = repl_engine()?;
        let show = engine.compile("to_string(__value)").map_err(|e| e.to_string())?;
        Ok(Repl {
            engine,
            scope: Scope::new(),
            fns: AST::empty(),
            paused_fns: None,
            session: None,
            loaded: None,
            sets,
            vars: Rc::new(RefCell::new(Vec::new())),
            show,
        })
    }

    fn paused(&self) -> bool {
        self.paused_fns.is_some()
    }

    /// Reads and runs inputs until `:quit`, `:continue` or end of input.
    pub fn run(&mut self, input: &mut Input) -> Exit {
        loop {
            *self.vars.borrow_mut() = complete::scope_names(&self.scope);
            let _ = std::io::stdout().flush();
            let prompt = if self.paused() { "(breakpoint) lt> " } else { "lt> " };
            let line = match input.read(prompt, &self.engine) {
                Read::Eof => return Exit::Eof,
                Read::Interrupted => continue,
                Read::Line(l) => l,
            };
            let t = line.trim();
            if t.is_empty() {
                continue;
            }
            // The line editor keeps its own SIGINT handler while it exists: take Ctrl-C back for
            // the evaluation, so it cancels the evaluation (not the REPL).
            let _sigint = signal::SigintGuard::install();
            if let Some(name) = help_request(t) {
                self.command(Command::Help(name));
                continue;
            }
            if !t.starts_with(':') {
                self.eval(&line);
                continue;
            }
            match commands::parse(t) {
                Ok(Command::Quit) => return Exit::Quit,
                Ok(Command::Continue) if self.paused() => return Exit::Continue,
                Ok(Command::Continue) => errorln!("nothing is paused; :continue leaves a breakpoint()"),
                Ok(c) => self.command(c),
                Err(e) => errorln!("{e}"),
            }
        }
    }

    /// Every function visible to REPL code: the module's or paused script's, then the REPL's own.
    fn functions(&self) -> AST {
        let mut ast = match &self.session {
            Some(s) => s.module.script.ast.clone_functions_only(),
            None => AST::empty(),
        };
        if let Some(p) = &self.paused_fns {
            ast = ast.merge(p);
        }
        ast.merge(&self.fns)
    }

    /// Puts the model's state into the scope as `this`.
    fn this_in(&mut self) {
        if let Some(s) = &self.session {
            self.scope.set_value("this", s.module.this.clone());
        }
    }

    /// Takes `this` back from the scope into the model.
    fn this_out(&mut self) {
        if let (Some(s), Some(v)) = (&mut self.session, self.scope.get_value::<Dynamic>("this")) {
            // the module's state stays one shared value, whatever the prompt assigned to `this`
            s.module.this = if v.is_shared() { v } else { v.into_shared() };
        }
    }

    /// Runs one input; prints its value or its error.
    pub fn eval(&mut self, src: &str) {
        if let Some(v) = self.run_input(src) {
            self.print_value(v);
        }
    }

    /// Compiles and runs one input; its value, or None after printing its error.
    fn run_input(&mut self, src: &str) -> Option<Dynamic> {
        if src.trim() == "this" {
            if let Some(s) = &self.session {
                outln!("{}", s.describe());
                return None;
            }
        }
        let input = match self.engine.compile_with_scope(&self.scope, src) {
            Ok(a) => a,
            Err(e) => {
                errorln!("{}", ScriptError::from_parse(&e, NAME, src).to_string().trim_end());
                return None;
            }
        };
        if let Some(c) = crate::script::param_copies::lost_changes(&input, NAME).first() {
            errorln!("{}", ScriptError::at(NAME, src, c.position, c.message()).to_string().trim_end());
            return None;
        }
        crate::script::error::remember_closures(&input, NAME);
        let ast = self.functions().merge(&input);
        self.this_in();
        signal::reset();
        let r = self.engine.eval_ast_with_scope::<Dynamic>(&mut self.scope, &ast);
        self.this_out();
        self.fns = self.fns.merge(&input.clone_functions_only());
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                report(&e, NAME, src);
                None
            }
        }
    }

    fn print_value(&self, v: Dynamic) {
        if !v.is_unit() {
            outln!("{}", self.show_value(v));
        }
    }

    /// A value as `print` shows it (tensors as PyTorch does); strings quoted; a module as
    /// PyTorch's repr.
    fn show_value(&self, v: Dynamic) -> String {
        if v.is_string() {
            return format!("{:?}", v.to_string());
        }
        if let Some(m) = v.read_lock::<rhai::Map>() {
            if crate::nn::tree::is_module(&m) {
                return crate::nn::repr::module_repr(&m, None);
            }
        }
        let mut scope = Scope::new();
        scope.push_dynamic("__value", v.clone());
        self.engine.eval_ast_with_scope::<String>(&mut scope, &self.show).unwrap_or_else(|_| v.to_string())
    }

    fn command(&mut self, c: Command) {
        if let Err(e) = self.try_command(c) {
            let e = e.trim_end().to_string();
            errorln!("{e}");
        }
        self.this_in();
    }

    fn session(&mut self) -> Result<&mut Session, String> {
        if self.paused() {
            return Err("the Trainer is busy: this run is paused at a breakpoint()".into());
        }
        self.session.as_mut().ok_or_else(|| "no module loaded: `:load FILE` a script with training_step".to_string())
    }

    fn try_command(&mut self, c: Command) -> Result<(), String> {
        match c {
            Command::Help(None) => out!("{}", commands::help_text()),
            Command::Time(src) => {
                let start = std::time::Instant::now();
                let v = self.run_input(&src);
                let wall = start.elapsed().as_secs_f64();
                if let Some(v) = v {
                    self.print_value(v);
                }
                outln!("Wall time: {}", format_time(wall));
            }
            Command::Help(Some(name)) => out!(
                "{}",
                crate::script::doc::render(
                    &self.engine,
                    Some(&name),
                    crate::console::terminal_width(crate::console::Stream::Stdout)
                )?
            ),
            Command::Load(p) => self.load(&p)?,
            Command::Reload => {
                let p = self.loaded.clone().ok_or("nothing loaded yet: use :load FILE")?;
                if self.session.is_some() {
                    self.reload_module()?;
                } else {
                    self.load(&p)?;
                }
            }
            Command::Vars => {
                for (name, constant, v) in self.scope.iter_raw() {
                    let mut text = self.show_value(v.clone()).lines().next().unwrap_or("").to_string();
                    if text.chars().count() > 60 {
                        text = text.chars().take(57).collect::<String>() + "...";
                    }
                    let kind = if constant { "const " } else { "" };
                    outln!("{kind}{name}: {} = {text}", self.engine.map_type_name(v.type_name()));
                }
            }
            Command::Metrics => {
                let s = self.session()?;
                out!("{}", s.metrics());
            }
            Command::Fit(n) => {
                signal::reset();
                self.session()?.fit(n)?;
            }
            Command::Validate => {
                signal::reset();
                self.session()?.validate()?;
            }
            Command::Test => {
                signal::reset();
                self.session()?.test()?;
            }
            Command::Continue | Command::Quit => {}
        }
        Ok(())
    }

    /// `:load FILE`: a module script becomes the model (with a new Trainer); any other script runs
    /// here, its variables and functions staying.
    pub fn load(&mut self, path: &Path) -> Result<(), String> {
        let script = Script::load(path).map_err(|e| e.to_string())?;
        self.loaded = Some(path.to_path_buf());
        if crate::cli::train::is_module_script(&script) {
            if self.paused() {
                return Err("cannot load a module while a run is paused at a breakpoint()".into());
            }
            // The old module must go first: dropping it uninstalls the run context.
            self.session = None;
            let s = Session::open(script, &self.sets)?;
            self.session = Some(s);
            self.this_in();
            outln!("loaded module {}: `this` is the model; :fit N trains it, :help lists commands", path.display());
            return Ok(());
        }
        let ast = self.functions().merge(&script.ast);
        signal::reset();
        let r = self.engine.eval_ast_with_scope::<Dynamic>(&mut self.scope, &ast);
        self.fns = self.fns.merge(&script.ast.clone_functions_only());
        if let Err(e) = r {
            report(&e, &script.name(), &script.source);
        }
        Ok(())
    }

    /// `:reload` of a module: its functions are swapped in, `this` and the Trainer stay.
    fn reload_module(&mut self) -> Result<(), String> {
        let s = self.session()?;
        match crate::script::reload::prepare(&s.module.script, true)? {
            None => outln!("unchanged"),
            Some((script, changed)) => {
                s.module.swap_script(script);
                outln!("reloaded: {}", crate::script::reload::describe(&changed));
            }
        }
        Ok(())
    }
}

/// `NAME?`, `?NAME`, `help(NAME)`, `help()`: a request for a function's docs (Some(None): the
/// REPL's help), as IPython's `?` and Python's `help`.
fn help_request(t: &str) -> Option<Option<String>> {
    if t.starts_with(':') {
        return None;
    }
    let is_path = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_' || c == ':' || c == '.');
    if let Some(inner) = t.strip_prefix("help(").and_then(|r| r.strip_suffix(')')) {
        let inner = inner.trim();
        return if inner.is_empty() { Some(None) } else { is_path(inner).then(|| Some(inner.to_string())) };
    }
    let name = t.strip_suffix('?').or_else(|| t.strip_prefix('?'))?.trim();
    is_path(name).then(|| Some(name.to_string()))
}

/// IPython's `%time` duration: three significant digits in s, ms, µs or ns.
fn format_time(secs: f64) -> String {
    let (v, unit) = match secs {
        s if s >= 1.0 => (s, "s"),
        s if s >= 1e-3 => (s * 1e3, "ms"),
        s if s >= 1e-6 => (s * 1e6, "µs"),
        s => (s * 1e9, "ns"),
    };
    format!("{} {unit}", crate::pyfmt::format_g(v, 3))
}

/// Prints a runtime error as the CLI does (Ctrl-C shows as "interrupted").
fn report(e: &EvalAltResult, file: &str, source: &str) {
    let mut inner = e;
    while let EvalAltResult::ErrorInFunctionCall(_, _, i, _) = inner {
        inner = i;
    }
    if let EvalAltResult::ErrorTerminated(..) = inner {
        errln!("interrupted");
        return;
    }
    errorln!("{}", ScriptError::from_eval(e, file, source, None).to_string().trim_end());
}

/// `lt repl [script]`.
pub fn main(script: Option<&Path>, sets: &[String]) -> ExitCode {
    let mut repl = match Repl::new(sets.to_vec()) {
        Ok(r) => r,
        Err(e) => {
            errorln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let _sigint = signal::SigintGuard::install();
    if let Some(p) = script {
        if let Err(e) = repl.load(p) {
            errorln!("{}", e.trim_end());
        }
    }
    let mut input = Input::open(repl.vars.clone());
    if matches!(input, Input::Tty { .. }) {
        outln!("lt repl: Rhai on libtorch. :help lists commands; Ctrl-D quits.");
    }
    repl.run(&mut input);
    ExitCode::SUCCESS
}
