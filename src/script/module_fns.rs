//! Modules built in an imported file keep working wherever they are stored. A module's
//! `forward: |x| …` closure (or `forward: Fn("block_forward")`) names a function of the file that
//! built it, but Rhai looks a function pointer up only among the calling script's own functions:
//! `import "resnet" as r; this.net = r::resnet18();` then failed in the parent's `forward` with
//! "Function not found: resnet_forward (map, Tensor)". lt records every file it imports (and the
//! stdlib modules), and a call Rhai cannot resolve is looked up among their functions and run
//! there, with `this` bound for a method call — as Python finds a method through the object's class.
use rhai::{CallFnOptions, Dynamic, EvalAltResult, EvalContext, Module, Position, Scope, Shared, AST};
use std::cell::{Cell, RefCell};

/// A library of functions: an imported file or a stdlib module, as an AST with no statements.
struct Library {
    name: String,
    ast: AST,
}

thread_local! {
    static LIBRARIES: RefCell<Vec<Library>> = const { RefCell::new(Vec::new()) };
    /// How deeply calls resolved here are nested (each one starts a fresh Rhai call stack).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Records the functions of the module `name` resolves to (a re-import replaces them: hot reload).
pub fn record(name: &str, module: &Shared<Module>) {
    let mut ast = AST::new([], module.clone());
    ast.set_source(name.to_string());
    LIBRARIES.with(|l| {
        let mut l = l.borrow_mut();
        match l.iter_mut().find(|lib| lib.name == name) {
            Some(lib) => lib.ast = ast,
            None => l.push(Library { name: name.to_string(), ast }),
        }
    });
}

/// The libraries defining `name` with `n_params` parameters: (library name, its AST).
fn defining(name: &str, n_params: usize) -> Vec<(String, AST)> {
    LIBRARIES.with(|l| {
        l.borrow()
            .iter()
            .filter(|lib| lib.ast.shared_lib().get_script_fn(name, n_params).is_some())
            .map(|lib| (lib.name.clone(), lib.ast.clone()))
            .collect()
    })
}

/// Leaves the nesting count as it was, however the call ended.
struct Nested;

impl Drop for Nested {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// Engine hook for a call Rhai found no function for: runs the imported function of that name
/// and arity, if exactly one library has it (`Ok(None)`: none has, Rhai's own error follows).
pub fn resolve(
    name: &str,
    args: &mut [&mut Dynamic],
    is_method_call: bool,
    ctx: EvalContext,
) -> Result<Option<Dynamic>, Box<EvalAltResult>> {
    let n_params = args.len() - usize::from(is_method_call);
    let found = defining(name, n_params);
    let ast = match found.as_slice() {
        [] => return Ok(None),
        [(_, ast)] => ast,
        // the same closure text in two files is the same function, and Rhai's own lookup would
        // take the first too; two named functions are two meanings
        [(_, ast), ..] if name.starts_with("anon$") => ast,
        several => {
            let files: Vec<&str> = several.iter().map(|(n, _)| n.as_str()).collect();
            return Err(runtime(format!(
                "`{name}` ({n_params} parameter(s)) is defined in several imported files ({}): a module's function pointer cannot tell which; rename one",
                files.join(", ")
            )));
        }
    };
    if DEPTH.with(|d| d.get()) >= super::engine::MAX_CALL_LEVELS {
        return Err(runtime(format!(
            "calls through imported modules nest deeper than {} levels (a module calling itself without end?)",
            super::engine::MAX_CALL_LEVELS
        )));
    }
    DEPTH.with(|d| d.set(d.get() + 1));
    let _nested = Nested;
    let (this, rest) = if is_method_call {
        let (first, rest) =
            args.split_first_mut().ok_or_else(|| runtime("internal: a method call without its object"))?;
        (Some(&mut **first), rest)
    } else {
        (None, &mut args[..])
    };
    // copies: an argument may be the caller's variable itself (Rhai passes the first by reference)
    let values: Vec<Dynamic> = rest.iter().map(|a| (**a).clone()).collect();
    let mut opts = CallFnOptions::new().eval_ast(false).rewind_scope(true);
    if let Some(this) = this {
        opts = opts.bind_this_ptr(this);
    }
    ctx.engine().call_fn_with_options::<Dynamic>(opts, &mut Scope::new(), ast, name, values).map(Some)
}

fn runtime(msg: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(msg.into().into(), Position::NONE))
}
