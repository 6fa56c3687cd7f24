//! `breakpoint()`: pauses the running script inside a hook and opens the REPL there, with `this`,
//! the hook's arguments and its local variables in scope, and the script's functions callable.
//! `:continue` or Ctrl-D resumes the run; what the REPL changed in `this` and in those variables
//! is kept. `:quit` stops the run with an error.
//!
//! Input is read from stdin: a terminal gets the line editor; otherwise lines are read until
//! `:continue` or end of input, and once stdin has ended every later `breakpoint()` continues at
//! once (so a run with no input never waits). `LT_BREAKPOINTS=off` skips them all.
//!
//! [`pause_run`] opens the same REPL between two training steps, when Enter was pressed during
//! `lt fit` on a terminal (see [`super::keypress`]).
use super::input::Input;
use super::{signal, Exit, Repl};
use rhai::{Dynamic, Engine, EvalContext, AST};
use std::sync::atomic::{AtomicBool, Ordering};

static STDIN_ENDED: AtomicBool = AtomicBool::new(false);

/// Registers the `breakpoint()` statement on `engine`.
pub fn register(engine: &mut Engine) -> Result<(), String> {
    engine
        .register_custom_syntax(["breakpoint", "()"], false, |ctx, _| breakpoint(ctx))
        .map_err(|e| format!("cannot register breakpoint(): {e}"))?;
    Ok(())
}

/// Runs a REPL that interrupts a run, owning the terminal: the pause-key watcher is parked and
/// Ctrl-C cancels evaluations. Once piped stdin has ended, later breakpoints continue at once.
fn run_paused(repl: &mut Repl) -> Exit {
    crate::console::bars_abandon();
    let _parked = super::keypress::park_current();
    let _sigint = signal::SigintGuard::install();
    let mut input = Input::open(repl.vars.clone());
    let exit = repl.run(&mut input);
    if exit == Exit::Eof && matches!(input, Input::Pipe { .. }) {
        STDIN_ENDED.store(true, Ordering::SeqCst);
    }
    exit
}

fn breakpoint(ctx: &mut EvalContext) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
    if STDIN_ENDED.load(Ordering::SeqCst) || std::env::var("LT_BREAKPOINTS").is_ok_and(|v| v == "off") {
        return Ok(Dynamic::UNIT);
    }
    let mut repl = Repl::new(Vec::new()).map_err(|e| -> Box<rhai::EvalAltResult> { e.into() })?;
    let locals: Vec<(String, bool, Dynamic)> = ctx.scope().iter().map(|(n, c, v)| (n.to_string(), c, v)).collect();
    for (name, _, value) in &locals {
        repl.scope.push_dynamic(name.as_str(), value.clone());
    }
    let has_this = ctx.this_ptr().is_some();
    if let Some(this) = ctx.this_ptr() {
        repl.scope.push_dynamic("this", this.clone());
    }
    let mut fns = AST::empty();
    for m in ctx.global_runtime_state().lib.iter() {
        fns = fns.merge(&AST::new_from_module(m.clone()));
    }
    repl.paused_fns = Some(fns);
    let mut names: Vec<&str> = locals.iter().map(|(n, _, _)| n.as_str()).collect();
    if has_this {
        names.insert(0, "this");
    }
    let hook = ctx.global_runtime_state().source().unwrap_or("script").to_string();
    outln!(
        "breakpoint() in {hook}: in scope: {}. :continue (or Ctrl-D) resumes.",
        if names.is_empty() { "nothing".to_string() } else { names.join(", ") }
    );
    let exit = run_paused(&mut repl);
    // Keep what the REPL changed.
    for (name, constant, _) in &locals {
        if *constant {
            continue;
        }
        if let (Some(v), Some(slot)) = (repl.scope.get_value::<Dynamic>(name), ctx.scope_mut().get_mut(name)) {
            *slot = v;
        }
    }
    if let (Some(v), Some(slot)) = (repl.scope.get_value::<Dynamic>("this"), ctx.this_ptr_mut()) {
        *slot = v;
    }
    match exit {
        Exit::Quit => Err("the run was stopped at a breakpoint() (:quit)".into()),
        Exit::Continue | Exit::Eof => {
            outln!("continuing");
            Ok(Dynamic::UNIT)
        }
    }
}

/// Opens the REPL between two training steps of a running fit, with `this` (the model) in scope and
/// the script's functions callable. `:continue` or Ctrl-D resumes with what the REPL changed in
/// `this`; `:quit` stops the run with an error.
pub fn pause_run(this: &mut Dynamic, fns: &AST, at: &str) -> Result<(), String> {
    let mut repl = Repl::new(Vec::new())?;
    repl.scope.push_dynamic("this", this.clone());
    repl.paused_fns = Some(fns.clone_functions_only());
    outln!("\npaused {at}: `this` is the model. :continue (or Ctrl-D) resumes, :quit stops the run.");
    let exit = run_paused(&mut repl);
    if let Some(v) = repl.scope.get_value::<Dynamic>("this") {
        *this = if v.is_shared() { v } else { v.into_shared() };
    }
    match exit {
        Exit::Quit => Err("the run was stopped from the pause REPL (:quit)".into()),
        Exit::Continue | Exit::Eof => {
            outln!("continuing");
            Ok(())
        }
    }
}
