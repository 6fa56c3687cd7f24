//! Script-defined iterable datasets: `iter()` starts a pass and returns either an array (its
//! elements are the samples) or a generator, a function called again and again whose `()` ends
//! the pass.
//!
//! Like [`super::script_ds::ScriptDataset`], the closures are Rhai values (`!Send`): the dataset
//! is thread-affine (passes start only on the thread that created it, so a loader runs it on the
//! iterating thread whatever `num_workers`), and a drop on another thread leaks its Rhai values.
use super::iterable::{IterableDataset, Samples};
use super::script_ds::{call_engine, to_sample};
use super::{DataError, Result};
use crate::data_err;
use rhai::{Array, Dynamic, Engine, FnPtr, NativeCallContext, AST};
use std::mem::ManuallyDrop;
use std::rc::Rc;
use std::thread::ThreadId;

struct ScriptFns {
    iter: FnPtr,
    ast: AST,
}

pub struct ScriptIterable {
    owner: ThreadId,
    len: Option<usize>,
    fns: ManuallyDrop<ScriptFns>,
}

// SAFETY: the Rhai values in `fns` are only touched on `owner` (checked in `iter`, and in `Drop`);
// other threads only read `owner` and `len`, which are plain data.
unsafe impl Send for ScriptIterable {}
unsafe impl Sync for ScriptIterable {}

impl Drop for ScriptIterable {
    fn drop(&mut self) {
        if std::thread::current().id() == self.owner {
            // SAFETY: dropped once, on the owning thread.
            unsafe { ManuallyDrop::drop(&mut self.fns) }
        }
    }
}

impl ScriptIterable {
    /// An iterable whose passes are `iter.call()`, created from a native call (whose context
    /// holds the script's functions).
    pub fn new(ctx: &NativeCallContext, len: Option<usize>, iter: FnPtr) -> ScriptIterable {
        let ast = match ctx.namespaces().first() {
            Some(lib) => AST::new_from_module(lib.clone()),
            None => AST::empty(),
        };
        ScriptIterable { owner: std::thread::current().id(), len, fns: ManuallyDrop::new(ScriptFns { iter, ast }) }
    }
}

fn call(engine: &Engine, ast: &AST, f: &FnPtr, what: &str) -> Result<Dynamic> {
    let _nested = crate::script::reentry::enter(what).map_err(|e| data_err!("{e}"))?;
    f.call(engine, ast, ()).map_err(|e| data_err!("script iterable: {what} failed: {e}"))
}

/// A generator's samples: `next()` until it returns `()`.
struct Generator {
    engine: Rc<Engine>,
    ast: AST,
    next: FnPtr,
    n: usize,
    done: bool,
}

impl Iterator for Generator {
    type Item = Result<super::Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = call(&self.engine, &self.ast, &self.next, "the generator returned by iter()");
        let v = match r {
            Ok(v) if v.is_unit() => {
                self.done = true;
                return None;
            }
            Ok(v) => v,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        let n = self.n;
        self.n += 1;
        Some(to_sample(&v).map_err(|e| data_err!("script iterable: element {n} is {e}")))
    }
}

impl IterableDataset for ScriptIterable {
    fn len(&self) -> Option<usize> {
        self.len
    }
    fn iter(&self, _epoch: u64) -> Result<Samples> {
        if std::thread::current().id() != self.owner {
            return Err(data_err!(
                "a script iterable can only be read on the thread that created it (its iter function is a script closure)"
            ));
        }
        let engine = call_engine()?;
        let v = call(&engine, &self.fns.ast, &self.fns.iter, "iter()")?;
        if let Some(f) = v.read_lock::<FnPtr>() {
            let next = f.clone();
            return Ok(Box::new(Generator { engine, ast: self.fns.ast.clone(), next, n: 0, done: false }));
        }
        if v.is_array() {
            let a = v.cast::<Array>();
            let samples: Vec<std::result::Result<_, DataError>> = a
                .iter()
                .enumerate()
                .map(|(i, x)| to_sample(x).map_err(|e| data_err!("script iterable: element {i} is {e}")))
                .collect();
            return Ok(Box::new(samples.into_iter()));
        }
        Err(data_err!(
            "script iterable: iter() returned {}; it must return an array of samples or a generator function (called until it returns ())",
            v.type_name()
        ))
    }
    fn describe(&self) -> String {
        match self.len {
            Some(n) => format!("ScriptIterable({n} samples)"),
            None => "ScriptIterable(no length)".to_string(),
        }
    }
    fn thread_bound(&self) -> bool {
        true
    }
}
