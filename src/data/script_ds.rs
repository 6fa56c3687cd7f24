//! Script-defined datasets: `len` samples, sample `i` = the script's `get(i)`.
//!
//! The closures are Rhai values (`!Send`). The dataset is thread-affine: it remembers the thread
//! that created it, answers [`Dataset::thread_bound`] (so loaders fetch its batches on the
//! iterating thread), refuses access from any other thread with an error, and if it is ever
//! dropped on another thread it leaks its Rhai values instead of touching them.
//!
//! Calls go through a per-thread callback engine ([`crate::script::engine::new_engine`], built once
//! per thread on first use) with the script's function library captured at creation, which is
//! where Rhai looks up closures and the script functions they call.
use super::batch::collate;
use super::{check_indices, Batch, Dataset, FetchCtx, Result};
use crate::data_err;
use crate::tensor::Tensor;
use rhai::{Dynamic, Engine, FnPtr, Map, NativeCallContext, AST, INT};
use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::rc::Rc;
use std::thread::ThreadId;

struct ScriptFns {
    get: FnPtr,
    ast: AST,
}

pub struct ScriptDataset {
    owner: ThreadId,
    len: usize,
    fns: ManuallyDrop<ScriptFns>,
}

// SAFETY: the Rhai values in `fns` are only touched on `owner` (checked on every access, and in
// `Drop`); other threads only read `owner` and `len`, which are plain data.
unsafe impl Send for ScriptDataset {}
unsafe impl Sync for ScriptDataset {}

impl Drop for ScriptDataset {
    fn drop(&mut self) {
        if std::thread::current().id() == self.owner {
            // SAFETY: dropped once, on the owning thread.
            unsafe { ManuallyDrop::drop(&mut self.fns) }
        }
        // elsewhere: leaked on purpose (see the type's doc)
    }
}

thread_local! {
    static CALL_ENGINE: RefCell<Option<Rc<Engine>>> = const { RefCell::new(None) };
}

pub(super) fn call_engine() -> Result<Rc<Engine>> {
    CALL_ENGINE.with(|c| {
        if let Some(e) = c.borrow().as_ref() {
            return Ok(e.clone());
        }
        let e = Rc::new(crate::script::engine::new_engine().map_err(|e| data_err!("script dataset: {e}"))?);
        *c.borrow_mut() = Some(e.clone());
        Ok(e)
    })
}

impl ScriptDataset {
    /// A dataset of `len` samples whose sample `i` is `get.call(i)`, created from a native call
    /// (whose context holds the script's functions).
    pub fn new(ctx: &NativeCallContext, len: usize, get: FnPtr) -> ScriptDataset {
        let ast = match ctx.namespaces().first() {
            Some(lib) => AST::new_from_module(lib.clone()),
            None => AST::empty(),
        };
        ScriptDataset { owner: std::thread::current().id(), len, fns: ManuallyDrop::new(ScriptFns { get, ast }) }
    }

    fn check_thread(&self) -> Result<()> {
        if std::thread::current().id() != self.owner {
            return Err(data_err!(
                "a script dataset can only be read on the thread that created it (its get function is a script closure)"
            ));
        }
        Ok(())
    }

    fn sample(&self, i: usize) -> Result<Batch> {
        let _nested = crate::script::reentry::enter("a script dataset's get").map_err(|e| data_err!("{e}"))?;
        let engine = call_engine()?;
        let v: Dynamic = self
            .fns
            .get
            .call(&engine, &self.fns.ast, (i as INT,))
            .map_err(|e| data_err!("script dataset: get({i}) failed: {e}"))?;
        to_sample(&v).map_err(|e| data_err!("script dataset: get({i}) returned {e}"))
    }
}

/// A script value as a sample: tensors, numbers, bools, strings, arrays and maps of them.
pub fn to_sample(v: &Dynamic) -> std::result::Result<Batch, String> {
    if let Some(t) = v.read_lock::<Tensor>() {
        return Ok(Batch::Tensor(t.handle()));
    }
    if let Ok(i) = v.as_int() {
        return Ok(Batch::Int(i));
    }
    if let Ok(f) = v.as_float() {
        return Ok(Batch::Float(f));
    }
    if let Ok(b) = v.as_bool() {
        return Ok(Batch::Bool(b));
    }
    if v.is_string() {
        return Ok(Batch::Str(v.to_string()));
    }
    if let Some(a) = v.read_lock::<rhai::Array>() {
        return Ok(Batch::List(a.iter().map(to_sample).collect::<std::result::Result<_, _>>()?));
    }
    if let Some(m) = v.read_lock::<Map>() {
        return Ok(Batch::Map(
            m.iter().map(|(k, x)| Ok((k.to_string(), to_sample(x)?))).collect::<std::result::Result<_, String>>()?,
        ));
    }
    Err(format!(
        "a value of type {}, which cannot be batched (expected tensors, numbers, strings, arrays or maps)",
        v.type_name()
    ))
}

impl Dataset for ScriptDataset {
    fn len(&self) -> usize {
        self.len
    }
    fn get_batch(&self, indices: &[usize], _ctx: &FetchCtx) -> Result<Batch> {
        self.check_thread()?;
        check_indices(indices, self.len, "script dataset")?;
        let samples = indices.iter().map(|&i| self.sample(i)).collect::<Result<Vec<_>>>()?;
        collate(samples, indices).map_err(|e| data_err!("script dataset: {e}"))
    }
    fn get(&self, index: usize, _ctx: &FetchCtx) -> Result<Batch> {
        self.check_thread()?;
        check_indices(&[index], self.len, "script dataset")?;
        self.sample(index)
    }
    fn describe(&self) -> String {
        format!("ScriptDataset({} samples)", self.len)
    }
    fn thread_bound(&self) -> bool {
        true
    }
}
