//! Script code run again from inside lt's own functions — a script dataset's `get`, a loaded
//! module's `init` and functions — starts a fresh Rhai call stack, so Rhai's call-depth limit
//! cannot see a recursion that goes through them (`nn::load_module` of the script itself in
//! `init`, a dataset whose `get` reads itself). Each such entry is counted here, and nesting
//! deeper than [`MAX_NESTING`] is an error instead of a stack overflow.
use std::cell::Cell;

/// How deep script code may nest through lt's functions (a model of loaded modules inside loaded
/// modules needs a handful).
pub const MAX_NESTING: u32 = 32;

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// One level of nesting, given back when dropped.
pub struct Nested(());

impl Drop for Nested {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Enters one level for `what` (named in the error), or refuses past [`MAX_NESTING`].
pub fn enter(what: &str) -> Result<Nested, String> {
    DEPTH.with(|d| {
        if d.get() >= MAX_NESTING {
            return Err(format!(
                "{what}: script code nested more than {MAX_NESTING} deep through lt's functions (a recursion through {what}?)"
            ));
        }
        d.set(d.get() + 1);
        Ok(Nested(()))
    })
}
