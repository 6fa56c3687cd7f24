//! Reads the tensors of a PyTorch `torch.save` zip file (a state_dict) without running any code.
//!
//! - The archive is read with the `zip` crate (ZIP64 included, so files over 4 GiB work), after
//!   [`super::io::open_zip`] checked its directory against the file size. Each storage is read
//!   once, straight from the archive into tensor memory (no copy of the file in memory).
//! - `data.pkl` is run by a restricted unpickler that knows only containers, numbers, strings,
//!   and the few callables torch.save uses for tensors (`collections.OrderedDict`,
//!   `torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter`, typed storages). A
//!   `GLOBAL` outside `torch.` / `collections.` is refused when it is read, and calling anything
//!   but those callables is refused; nothing is ever imported or executed.
//! - The unpickler is a loop over opcodes with explicit stacks (values and MARK positions) and no
//!   recursion anywhere, also not when values are dropped: values live in one arena and
//!   containers hold arena indices, so the memo shares values instead of copying them (a memo
//!   "doubling bomb" costs one index per reference) and cyclic or deep structures are harmless.
//!   Hostile input is bounded by [`MAX_PICKLE_BYTES`], [`MAX_VALUES`] and [`MAX_DEPTH`].
use super::io::{check_zip_entry, open_zip, read_tensor};
use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::Path;
use tch::{Kind, Tensor};

/// The largest `data.pkl` accepted. A state_dict's pickle takes about 150 bytes per tensor, so
/// this allows over 400,000 tensors (the largest public models have fewer than 100,000).
pub const MAX_PICKLE_BYTES: u64 = 64 << 20;
/// The most values the unpickler pushes (objects made, memo reads, DUPs) plus memo entries it
/// stores. A state_dict needs about 20 per tensor, so this allows 200,000 tensors, and caps the
/// unpickler's own memory at about 4M × 40 bytes ≈ 170 MB on hostile input.
pub const MAX_VALUES: usize = 4 << 20;
/// The deepest nesting of containers (and of open MARKs) accepted. A state_dict nests 4 levels.
pub const MAX_DEPTH: usize = 1000;

/// One unpickled value (in the arena; containers refer to others by index).
enum Obj {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<usize>),
    List(Vec<usize>),
    Dict(Vec<(usize, usize)>),
    Global(String),
    Storage(Kind, String),
    Tensor(Tensor),
}

/// A stack entry: a value, or a MARK.
#[derive(Clone, Copy)]
enum Slot {
    Val(usize),
    Mark,
}

fn storage_kind(name: &str) -> Option<Kind> {
    use tch::Kind::*;
    Some(match name {
        "torch.FloatStorage" => Float,
        "torch.DoubleStorage" => Double,
        "torch.HalfStorage" => Half,
        "torch.BFloat16Storage" => BFloat16,
        "torch.LongStorage" => Int64,
        "torch.IntStorage" => Int,
        "torch.ShortStorage" => Int16,
        "torch.CharStorage" => Int8,
        "torch.ByteStorage" => Uint8,
        "torch.BoolStorage" => Bool,
        _ => return None,
    })
}

/// The names a `GLOBAL` may refer to (as values; only some can be called).
fn global_allowed(name: &str) -> bool {
    name.starts_with("torch.") || name.starts_with("collections.")
}

/// Where tensors' storages come from: the archive's `data/` entries, each read once.
trait Storages {
    fn storage(&mut self, key: &str, kind: Kind) -> Result<Tensor, String>;
    /// Bytes that copies of strided views may take in all (see [`Machine::rebuild_tensor`]).
    fn copy_budget(&self) -> u64;
}

struct ZipStorages<R: Read + Seek> {
    zip: zip::ZipArchive<R>,
    prefix: String,
    file_len: u64,
    cache: HashMap<String, Tensor>,
}

impl<R: Read + Seek> Storages for ZipStorages<R> {
    fn storage(&mut self, key: &str, kind: Kind) -> Result<Tensor, String> {
        if let Some(t) = self.cache.get(key) {
            if t.kind() != kind {
                return Err(format!("storage {key} is used with two dtypes"));
            }
            return Ok(t.shallow_clone());
        }
        let name = format!("{}data/{key}", self.prefix);
        let mut entry = self.zip.by_name(&name).map_err(|_| format!("missing storage {key} in torch.save file"))?;
        check_zip_entry(&entry, self.file_len)?;
        let elt = kind.elt_size_in_bytes() as u64;
        let size = entry.size();
        if size % elt != 0 {
            return Err(format!("storage {key} holds {size} bytes, not a whole number of {kind:?} elements"));
        }
        let n = i64::try_from(size / elt).map_err(|_| format!("storage {key} is too large"))?;
        let t = read_tensor(&mut entry, &[n], kind).map_err(|e| format!("storage {key}: {e}"))?;
        self.cache.insert(key.to_string(), t.shallow_clone());
        Ok(t)
    }
    fn copy_budget(&self) -> u64 {
        self.file_len
    }
}

/// No storages: for [`describe_pickle`], which decodes a bare pickle.
struct NoStorages;

impl Storages for NoStorages {
    fn storage(&mut self, key: &str, _kind: Kind) -> Result<Tensor, String> {
        Err(format!("missing storage {key} (a bare pickle has no archive)"))
    }
    fn copy_budget(&self) -> u64 {
        0
    }
}

fn corrupt(why: &str) -> String {
    format!("corrupt pickle in torch.save file: {why}")
}

struct Machine<'a, S: Storages> {
    pkl: &'a [u8],
    pos: usize,
    arena: Vec<Obj>,
    /// Nesting depth of each value (0 for scalars), as it was when children were added.
    depth: Vec<u32>,
    stack: Vec<Slot>,
    /// Positions of the MARKs in `stack`.
    marks: Vec<usize>,
    memo: HashMap<u64, usize>,
    /// Values pushed plus memo entries stored, against [`MAX_VALUES`].
    count: usize,
    storages: S,
    copied: u64,
}

impl<'a, S: Storages> Machine<'a, S> {
    fn new(pkl: &'a [u8], storages: S) -> Self {
        Machine {
            pkl,
            pos: 0,
            arena: Vec::new(),
            depth: Vec::new(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            count: 0,
            storages,
            copied: 0,
        }
    }

    fn spend(&mut self) -> Result<(), String> {
        self.count += 1;
        if self.count > MAX_VALUES {
            return Err(format!(
                "the pickle makes more than {MAX_VALUES} values; refusing it (a state_dict needs about 20 per tensor)"
            ));
        }
        Ok(())
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let left = (self.pkl.len() - self.pos) as u64;
        if n > left {
            return Err(corrupt(&format!(
                "an opcode at byte {} wants {n} bytes, only {left} are left (truncated?)",
                self.pos
            )));
        }
        let s = &self.pkl[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Result<u64, String> {
        let b = self.take(n as u64)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.pkl[self.pos..];
        let end = rest.iter().position(|&c| c == b'\n').ok_or_else(|| corrupt("a GLOBAL name has no end of line"))?;
        let s = String::from_utf8_lossy(&rest[..end]).to_string();
        self.pos += end + 1;
        Ok(s)
    }

    /// Adds a value to the arena (and pushes it).
    fn push_new(&mut self, o: Obj, depth: u32) -> Result<(), String> {
        self.spend()?;
        if depth as usize > MAX_DEPTH {
            return Err(format!("the pickle nests containers more than {MAX_DEPTH} levels deep; refusing it"));
        }
        self.arena.push(o);
        self.depth.push(depth);
        self.stack.push(Slot::Val(self.arena.len() - 1));
        Ok(())
    }

    fn push_id(&mut self, id: usize) -> Result<(), String> {
        self.spend()?;
        self.stack.push(Slot::Val(id));
        Ok(())
    }

    fn pop(&mut self) -> Result<usize, String> {
        if self.marks.last().is_some_and(|&m| m + 1 == self.stack.len()) {
            return Err(corrupt("an opcode pops a MARK as a value"));
        }
        match self.stack.pop() {
            Some(Slot::Val(id)) => Ok(id),
            _ => Err(corrupt("stack underflow")),
        }
    }

    fn top(&self) -> Result<usize, String> {
        match self.stack.last() {
            Some(Slot::Val(id)) => Ok(*id),
            _ => Err(corrupt("no value on the stack")),
        }
    }

    /// The values above the topmost MARK, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<usize>, String> {
        let m = self.marks.pop().ok_or_else(|| corrupt("no MARK on the stack"))?;
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        items.into_iter().map(|s| if let Slot::Val(id) = s { Ok(id) } else { Err(corrupt("nested MARK")) }).collect()
    }

    fn depth_of(&self, ids: impl Iterator<Item = usize>) -> u32 {
        ids.map(|i| self.depth[i]).max().unwrap_or(0) + 1
    }

    fn tuple(&mut self, items: Vec<usize>) -> Result<(), String> {
        let d = self.depth_of(items.iter().copied());
        self.push_new(Obj::Tuple(items), d)
    }

    /// Adds `items` to the list or dict `target` (in place: the memo sees it too, as in Python).
    fn extend(&mut self, target: usize, items: Vec<usize>, dict: bool) -> Result<(), String> {
        let d = self.depth_of(items.iter().copied()).max(self.depth[target]);
        if d as usize > MAX_DEPTH {
            return Err(format!("the pickle nests containers more than {MAX_DEPTH} levels deep; refusing it"));
        }
        match (&mut self.arena[target], dict) {
            (Obj::List(l), false) => l.extend(items),
            (Obj::Dict(m), true) => {
                if !items.len().is_multiple_of(2) {
                    return Err(corrupt("SETITEMS with an odd number of values"));
                }
                m.extend(items.chunks(2).map(|kv| (kv[0], kv[1])));
            }
            _ => {
                return Err(corrupt(if dict {
                    "SETITEM(S) on something that is not a dict"
                } else {
                    "APPEND(S) on something that is not a list"
                }))
            }
        }
        self.depth[target] = d;
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> Result<(), String> {
        let id = self.top()?;
        self.spend()?;
        self.memo.insert(key, id);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), String> {
        let id = *self.memo.get(&key).ok_or_else(|| corrupt(&format!("memo key {key} was never stored")))?;
        self.push_id(id)
    }

    fn ints(&self, id: usize, what: &str) -> Result<Vec<i64>, String> {
        match &self.arena[id] {
            Obj::Tuple(x) | Obj::List(x) => x
                .iter()
                .map(|&e| {
                    if let Obj::Int(i) = self.arena[e] {
                        Ok(i)
                    } else {
                        Err(corrupt(&format!("{what} holds a non-integer")))
                    }
                })
                .collect(),
            _ => Err(corrupt(&format!("{what} is not a tuple of ints"))),
        }
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`. A tensor that is its whole storage
    /// in order shares the storage's memory (as torch.load's tensors do); any other view is copied
    /// out, and such copies may take at most as many bytes as the file holds in all (so a few
    /// bytes of pickle cannot expand one storage into many copies).
    fn rebuild_tensor(&mut self, args: &[usize]) -> Result<Obj, String> {
        let (Some(&st), Some(&off)) = (args.first(), args.get(1)) else {
            return Err(corrupt("_rebuild_tensor_v2 needs storage, offset, size, stride"));
        };
        let Obj::Storage(kind, key) = &self.arena[st] else {
            return Err(corrupt("_rebuild_tensor_v2's first argument is not a storage"));
        };
        let (kind, key) = (*kind, key.clone());
        let Obj::Int(offset) = self.arena[off] else {
            return Err(corrupt("_rebuild_tensor_v2's offset is not an integer"));
        };
        let size = self.ints(*args.get(2).ok_or_else(|| corrupt("_rebuild_tensor_v2 without a size"))?, "size")?;
        let stride =
            self.ints(*args.get(3).ok_or_else(|| corrupt("_rebuild_tensor_v2 without a stride"))?, "stride")?;
        let bad = |why: String| format!("bad tensor in torch.save file (storage {key}): {why}");
        if size.len() != stride.len() || offset < 0 || size.iter().chain(&stride).any(|&v| v < 0) {
            return Err(bad(format!("size {size:?}, stride {stride:?}, offset {offset}")));
        }
        let storage = self.storages.storage(&key, kind)?;
        let n = storage.numel() as i64;
        let numel = size
            .iter()
            .try_fold(1i64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad(format!("size {size:?} overflows")))?;
        if numel == 0 {
            return Tensor::f_empty(size.as_slice(), (kind, tch::Device::Cpu))
                .map(Obj::Tensor)
                .map_err(|e| bad(e.to_string()));
        }
        // the last element the view reads must lie inside the storage
        let last = size
            .iter()
            .zip(&stride)
            .try_fold(offset, |a, (&d, &s)| (d - 1).checked_mul(s).and_then(|x| a.checked_add(x)));
        if last.is_none_or(|l| l >= n) {
            return Err(bad(format!(
                "size {size:?}, stride {stride:?} and offset {offset} reach past its {n} elements"
            )));
        }
        let mut contiguous = Vec::with_capacity(size.len());
        let mut s = 1i64;
        for &d in size.iter().rev() {
            contiguous.push(s);
            s *= d;
        }
        contiguous.reverse();
        let dense = offset == 0
            && numel == n
            && size.iter().zip(&stride).zip(&contiguous).all(|((&d, &st), &c)| d == 1 || st == c);
        let t = if dense {
            storage.f_view(size.as_slice())
        } else {
            let bytes = (numel as u64).saturating_mul(kind.elt_size_in_bytes() as u64);
            self.copied = self.copied.saturating_add(bytes);
            if self.copied > self.storages.copy_budget() {
                return Err(bad(format!(
                    "copies of strided views would take {} bytes, more than the {}-byte file holds; refusing it",
                    self.copied,
                    self.storages.copy_budget()
                )));
            }
            storage.f_as_strided(size.as_slice(), stride.as_slice(), offset).and_then(|v| v.f_contiguous())
        };
        t.map(Obj::Tensor).map_err(|e| bad(crate::tensor::clean_torch_message(&e.to_string())))
    }

    fn reduce(&mut self) -> Result<(), String> {
        let args = self.pop()?;
        let f = self.pop()?;
        let Obj::Global(name) = &self.arena[f] else {
            return Err(corrupt("REDUCE calls something that is not a global"));
        };
        let name = name.clone();
        let Obj::Tuple(a) = &self.arena[args] else { return Err(corrupt("REDUCE's arguments are not a tuple")) };
        let a = a.clone();
        match name.as_str() {
            "collections.OrderedDict" if a.is_empty() => self.push_new(Obj::Dict(vec![]), 1),
            "torch._utils._rebuild_tensor_v2" => {
                let t = self.rebuild_tensor(&a)?;
                self.push_new(t, 0)
            }
            "torch._utils._rebuild_parameter" => {
                let t = *a.first().ok_or_else(|| corrupt("_rebuild_parameter without a tensor"))?;
                self.push_id(t)
            }
            other => Err(format!("torch.save file calls {other}, which this loader does not build (it builds only tensors and containers); save a state_dict of tensors")),
        }
    }

    /// Runs the pickle to its STOP; returns the value it leaves.
    fn run(&mut self) -> Result<usize, String> {
        loop {
            if self.pos >= self.pkl.len() {
                return Err(corrupt("the pickle ends without STOP (truncated?)"));
            }
            let op = self.pkl[self.pos];
            self.pos += 1;
            match op {
                0x80 => {
                    let v = self.uint(1)?;
                    if v > 5 {
                        return Err(format!("pickle protocol {v} is not supported (0 to 5 are)"));
                    }
                }
                0x95 => {
                    self.take(8)?; // FRAME: a length hint
                }
                b'.' => return self.pop(),
                b'(' => {
                    if self.marks.len() >= MAX_DEPTH {
                        return Err(format!("the pickle opens more than {MAX_DEPTH} nested MARKs; refusing it"));
                    }
                    self.marks.push(self.stack.len());
                    self.stack.push(Slot::Mark);
                }
                b'N' => self.push_new(Obj::None, 0)?,
                0x88 => self.push_new(Obj::Bool(true), 0)?,
                0x89 => self.push_new(Obj::Bool(false), 0)?,
                b')' => self.push_new(Obj::Tuple(vec![]), 1)?,
                b']' => self.push_new(Obj::List(vec![]), 1)?,
                b'}' => self.push_new(Obj::Dict(vec![]), 1)?,
                b'K' => {
                    let v = self.uint(1)?;
                    self.push_new(Obj::Int(v as i64), 0)?
                }
                b'M' => {
                    let v = self.uint(2)?;
                    self.push_new(Obj::Int(v as i64), 0)?
                }
                b'J' => {
                    let v = self.uint(4)? as u32 as i32;
                    self.push_new(Obj::Int(v as i64), 0)?
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4: little-endian two's complement of n bytes
                    let n = if op == 0x8a { self.uint(1)? } else { self.uint(4)? };
                    if n > 8 {
                        return Err(format!(
                            "an integer of {n} bytes in the pickle is larger than this loader reads (8)"
                        ));
                    }
                    let b = self.take(n)?;
                    let mut v: i64 = 0;
                    for (k, byte) in b.iter().enumerate() {
                        v |= (*byte as i64) << (8 * k);
                    }
                    if n > 0 && n < 8 && b[n as usize - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push_new(Obj::Int(v), 0)?
                }
                b'G' => {
                    let b = self.take(8)?;
                    let v = f64::from_be_bytes(b.try_into().map_err(|_| corrupt("BINFLOAT"))?);
                    self.push_new(Obj::Float(v), 0)?
                }
                b'X' | 0x8c | 0x8d | b'T' | b'U' => {
                    let width = match op {
                        0x8c | b'U' => 1,
                        0x8d => 8,
                        _ => 4,
                    };
                    let n = self.uint(width)?;
                    let s = String::from_utf8_lossy(self.take(n)?).to_string();
                    self.push_new(Obj::Str(s), 0)?
                }
                b'B' | b'C' | 0x8e => {
                    let width = match op {
                        b'C' => 1,
                        0x8e => 8,
                        _ => 4,
                    };
                    let n = self.uint(width)?;
                    let b = self.take(n)?.to_vec();
                    self.push_new(Obj::Bytes(b), 0)?
                }
                b'c' | 0x93 => {
                    let (m, n) = if op == b'c' {
                        (self.line()?, self.line()?)
                    } else {
                        let n = self.pop()?;
                        let m = self.pop()?;
                        match (&self.arena[m], &self.arena[n]) {
                            (Obj::Str(m), Obj::Str(n)) => (m.clone(), n.clone()),
                            _ => return Err(corrupt("STACK_GLOBAL of non-strings")),
                        }
                    };
                    let name = format!("{m}.{n}");
                    if !global_allowed(&name) {
                        return Err(format!("torch.save file refers to {name}, which this loader never imports (only torch and collections names); refusing it"));
                    }
                    self.push_new(Obj::Global(name), 0)?
                }
                b'q' => {
                    let k = self.uint(1)?;
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = self.uint(4)?;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?
                }
                b'h' => {
                    let k = self.uint(1)?;
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = self.uint(4)?;
                    self.memo_get(k)?
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.tuple(items)?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>, _>>()?;
                    items.reverse();
                    self.tuple(items)?
                }
                b'l' | b'd' => {
                    let items = self.pop_mark()?;
                    let (obj, dict) = if op == b'l' { (Obj::List(vec![]), false) } else { (Obj::Dict(vec![]), true) };
                    self.push_new(obj, 1)?;
                    let id = self.top()?;
                    self.extend(id, items, dict)?
                }
                b'a' => {
                    let v = self.pop()?;
                    let l = self.top()?;
                    self.extend(l, vec![v], false)?
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let l = self.top()?;
                    self.extend(l, items, false)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    self.extend(d, vec![k, v], true)?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let d = self.top()?;
                    self.extend(d, items, true)?
                }
                b'b' => {
                    // BUILD: the state (OrderedDict._metadata) is dropped
                    self.pop()?;
                    self.top()?;
                }
                b'0' => {
                    if self.marks.last().is_some_and(|&m| m + 1 == self.stack.len()) {
                        self.marks.pop();
                        self.stack.pop();
                    } else {
                        self.pop()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?;
                    self.push_id(v)?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let Obj::Tuple(p) = &self.arena[pid] else {
                        return Err(corrupt("a persistent id that is not a tuple"));
                    };
                    let storage = match (
                        p.first().map(|&i| &self.arena[i]),
                        p.get(1).map(|&i| &self.arena[i]),
                        p.get(2).map(|&i| &self.arena[i]),
                    ) {
                        (Some(Obj::Str(s)), Some(Obj::Global(ty)), Some(Obj::Str(key))) if s == "storage" => {
                            let kind = storage_kind(ty)
                                .ok_or_else(|| format!("unsupported storage type {ty} in torch.save file"))?;
                            Obj::Storage(kind, key.clone())
                        }
                        _ => return Err("unsupported persistent id in torch.save file".into()),
                    };
                    self.push_new(storage, 0)?
                }
                b'R' => self.reduce()?,
                other => {
                    return Err(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {} of the torch.save file's pickle",
                        self.pos - 1
                    ))
                }
            }
        }
    }

    /// The state_dict: the string-keyed tensors of the dict the pickle built (later keys win, in
    /// first-seen order, as a Python dict); other values are skipped. A dict that holds no tensor
    /// but nested dicts (a Lightning checkpoint, `{"model": state_dict, ...}`) is an error naming
    /// its keys, rather than an empty state_dict.
    fn into_state_dict(mut self, root: usize) -> Result<Vec<(String, Tensor)>, String> {
        let Obj::Dict(items) = std::mem::replace(&mut self.arena[root], Obj::None) else {
            return Err("torch.save file does not hold a dict (save model.state_dict())".into());
        };
        let mut out: Vec<(String, Tensor)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut nested: Vec<String> = Vec::new();
        for (k, v) in items {
            let Obj::Str(key) = &self.arena[k] else { return Err("torch.save dict has a non-string key".into()) };
            if matches!(self.arena[v], Obj::Dict(_)) {
                nested.push(key.clone());
            }
            let Obj::Tensor(t) = &self.arena[v] else { continue }; // non-tensor entries (e.g. extra state) are skipped
            match index.get(key) {
                Some(&i) => out[i].1 = t.shallow_clone(),
                None => {
                    index.insert(key.clone(), out.len());
                    out.push((key.clone(), t.shallow_clone()));
                }
            }
        }
        if out.is_empty() && !nested.is_empty() {
            let hint = if nested.iter().any(|k| k == "state_dict") { "state_dict" } else { nested[0].as_str() };
            return Err(format!(
                "torch.save file holds a dict of dicts (keys: {}), not a state_dict{}: name the one to read, nn::load(path, #{{key: \"{hint}\"}})",
                nested.join(", "),
                if nested.iter().any(|k| k == "state_dict") { " (a Lightning checkpoint?)" } else { "" }
            ));
        }
        Ok(out)
    }

    /// The whole value as JSON with its tensors set aside: each tensor is listed under its path
    /// (dict keys and list indices joined by `.`, `state_dict.net.0.weight`) and stands in the JSON
    /// as its value when it holds one number, else as null. Iterative; a cycle is an error, and
    /// values reached through shared references count each time against [`MAX_VALUES`].
    fn into_tree(self, root: usize) -> Result<TorchTree, String> {
        struct Frame {
            id: usize,
            /// this container's key in its parent
            seg: String,
            children: Vec<(String, usize)>,
            next: usize,
            done: Vec<(String, serde_json::Value)>,
            is_map: bool,
        }
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        let mut open: std::collections::HashSet<usize> = Default::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut budget = 0usize;
        let path_of = |stack: &[Frame], seg: &str| {
            let mut p: Vec<&str> = stack.iter().skip(1).map(|f| f.seg.as_str()).collect();
            p.push(seg);
            p.join(".")
        };
        // a value as JSON when it is a leaf; a container is opened as a frame (None)
        let mut enter = |stack: &mut Vec<Frame>,
                         open: &mut std::collections::HashSet<usize>,
                         id: usize,
                         seg: String|
         -> Result<Option<serde_json::Value>, String> {
            budget += 1;
            if budget > MAX_VALUES {
                return Err(format!("the pickle's value expands to more than {MAX_VALUES} values; refusing it"));
            }
            use serde_json::Value as J;
            let leaf = match &self.arena[id] {
                Obj::None => J::Null,
                Obj::Bool(b) => J::Bool(*b),
                Obj::Int(i) => J::from(*i),
                Obj::Float(f) => crate::checkpoint::float::to_json(*f),
                Obj::Str(s) => J::String(s.clone()),
                Obj::Bytes(b) => J::String(String::from_utf8_lossy(b).into_owned()),
                Obj::Global(g) => J::String(g.clone()),
                Obj::Storage(..) => return Err(corrupt("a bare storage where a value belongs")),
                Obj::Tensor(t) => {
                    let path = path_of(stack, &seg);
                    let v = if t.dim() == 0 {
                        t.f_double_value(&[]).map(crate::checkpoint::float::to_json).unwrap_or(J::Null)
                    } else {
                        J::Null
                    };
                    tensors.push((path, t.shallow_clone()));
                    v
                }
                Obj::Tuple(items) | Obj::List(items) => {
                    if !open.insert(id) {
                        return Err("the pickle's value contains itself (a cycle); refusing it".into());
                    }
                    let children = items.iter().enumerate().map(|(i, &c)| (i.to_string(), c)).collect();
                    stack.push(Frame { id, seg, children, next: 0, done: Vec::new(), is_map: false });
                    return Ok(None);
                }
                Obj::Dict(items) => {
                    if !open.insert(id) {
                        return Err("the pickle's value contains itself (a cycle); refusing it".into());
                    }
                    let mut children = Vec::with_capacity(items.len());
                    for &(k, v) in items {
                        let key = match &self.arena[k] {
                            Obj::Str(s) => s.clone(),
                            Obj::Int(i) => i.to_string(),
                            Obj::Bool(b) => if *b { "True" } else { "False" }.to_string(),
                            Obj::None => "None".to_string(),
                            _ => return Err("torch.save file has a dict key that is not a string or number".into()),
                        };
                        children.push((key, v));
                    }
                    stack.push(Frame { id, seg, children, next: 0, done: Vec::new(), is_map: true });
                    return Ok(None);
                }
            };
            Ok(Some(leaf))
        };
        let mut value = enter(&mut stack, &mut open, root, String::new())?;
        while let Some(top) = stack.last_mut() {
            if top.next < top.children.len() {
                let (seg, child) = top.children[top.next].clone();
                top.next += 1;
                if let Some(v) = enter(&mut stack, &mut open, child, seg.clone())? {
                    if let Some(top) = stack.last_mut() {
                        top.done.push((seg, v));
                    }
                }
                continue;
            }
            let Some(f) = stack.pop() else { break };
            open.remove(&f.id);
            let v = if f.is_map {
                // later keys win, as in a Python dict
                serde_json::Value::Object(f.done.into_iter().collect())
            } else {
                serde_json::Value::Array(f.done.into_iter().map(|(_, v)| v).collect())
            };
            match stack.last_mut() {
                Some(parent) => parent.done.push((f.seg, v)),
                None => value = Some(v),
            }
        }
        Ok(TorchTree { value: value.unwrap_or(serde_json::Value::Null), tensors })
    }

    /// A Python-like text of a value, at most `limit` characters (iterative: cycles and shared
    /// values cannot make it loop or grow without bound).
    fn describe(&self, root: usize, limit: usize) -> String {
        enum W<'b> {
            Text(&'b str),
            Val(usize),
        }
        let mut out = String::new();
        let mut work = vec![W::Val(root)];
        while let Some(w) = work.pop() {
            if out.len() > limit {
                out.truncate(limit);
                out.push('…');
                break;
            }
            let id = match w {
                W::Text(t) => {
                    out.push_str(t);
                    continue;
                }
                W::Val(id) => id,
            };
            let seq =
                |work: &mut Vec<W<'_>>, open: &'static str, close: &'static str, items: &[usize], trailing: bool| {
                    work.push(W::Text(close));
                    if trailing {
                        work.push(W::Text(","));
                    }
                    for (i, &x) in items.iter().enumerate().rev() {
                        work.push(W::Val(x));
                        if i > 0 {
                            work.push(W::Text(", "));
                        }
                    }
                    work.push(W::Text(open));
                };
            match &self.arena[id] {
                Obj::None => out.push_str("None"),
                Obj::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
                Obj::Int(i) => out.push_str(&i.to_string()),
                Obj::Float(f) => out.push_str(&format!("{f:?}")),
                Obj::Str(s) => out.push_str(&format!("{s:?}")),
                Obj::Bytes(b) => out.push_str(&format!("b{:?}", String::from_utf8_lossy(b))),
                Obj::Tuple(items) => seq(&mut work, "(", ")", items, items.len() == 1),
                Obj::List(items) => seq(&mut work, "[", "]", items, false),
                Obj::Dict(items) => {
                    work.push(W::Text("}"));
                    for (i, &(k, v)) in items.iter().enumerate().rev() {
                        work.push(W::Val(v));
                        work.push(W::Text(": "));
                        work.push(W::Val(k));
                        if i > 0 {
                            work.push(W::Text(", "));
                        }
                    }
                    work.push(W::Text("{"));
                }
                Obj::Global(g) => out.push_str(g),
                Obj::Storage(k, key) => out.push_str(&format!("<storage {k:?} {key}>")),
                Obj::Tensor(t) => out.push_str(&format!("tensor({:?}, {:?})", t.kind(), t.size())),
            }
        }
        out
    }
}

/// Decodes a bare pickle (no archive, so no tensors) and returns a Python-like text of its value,
/// at most `limit` characters: for tests of the unpickler and for looking into a file's pickle.
/// Errors are the same as when loading a file.
pub fn describe_pickle(pkl: &[u8], limit: usize) -> Result<String, String> {
    let mut m = Machine::new(pkl, NoStorages);
    let root = m.run()?;
    Ok(m.describe(root, limit))
}

/// What a torch.save file holds: its value as JSON, and its tensors by path (see
/// [`Machine::into_tree`]).
pub struct TorchTree {
    pub value: serde_json::Value,
    pub tensors: Vec<(String, Tensor)>,
}

impl TorchTree {
    /// The tensors under the dict entry `key` (a path: `state_dict`, `model.encoder`), named as
    /// inside it.
    pub fn section(&self, key: &str) -> Vec<(String, Tensor)> {
        let p = format!("{key}.");
        self.tensors
            .iter()
            .filter_map(|(k, t)| k.strip_prefix(&p).map(|r| (r.to_string(), t.shallow_clone())))
            .collect()
    }
}

enum Want {
    StateDict,
    Tree,
}

enum Loaded {
    StateDict(Vec<(String, Tensor)>),
    Tree(TorchTree),
}

fn load_from<R: Read + Seek>(reader: R, file_len: u64, want: Want) -> Result<Loaded, String> {
    let mut zip = open_zip(reader, file_len)?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let pkl_name = names
        .iter()
        .find(|k| k.ends_with("/data.pkl") || *k == "data.pkl")
        .cloned()
        .ok_or("no data.pkl in the zip file")?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let mut read_entry = |name: &str, max: u64| -> Result<Vec<u8>, String> {
        let mut e = zip.by_name(name).map_err(|e| format!("zip entry {name}: {e}"))?;
        check_zip_entry(&e, file_len)?;
        if e.size() > max {
            return Err(format!("zip entry {name} is {} bytes; this loader reads at most {max}", e.size()));
        }
        let mut buf = Vec::with_capacity(e.size() as usize);
        e.read_to_end(&mut buf).map_err(|err| format!("zip entry {name}: {err}"))?;
        Ok(buf)
    };
    if names.contains(&format!("{prefix}byteorder")) && read_entry(&format!("{prefix}byteorder"), 16)? != b"little" {
        return Err("big-endian torch.save files are not supported".into());
    }
    let pkl = read_entry(&pkl_name, MAX_PICKLE_BYTES)?;
    let mut m = Machine::new(&pkl, ZipStorages { zip, prefix, file_len, cache: HashMap::new() });
    let root = m.run()?;
    Ok(match want {
        Want::StateDict => Loaded::StateDict(m.into_state_dict(root)?),
        Want::Tree => Loaded::Tree(m.into_tree(root)?),
    })
}

/// Named tensors of a `torch.save(state_dict)` file's bytes.
pub fn load(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, String> {
    match load_from(std::io::Cursor::new(bytes), bytes.len() as u64, Want::StateDict)? {
        Loaded::StateDict(sd) => Ok(sd),
        Loaded::Tree(_) => Err("internal: a tree where a state_dict was asked for".into()),
    }
}

/// Named tensors of a `torch.save(state_dict)` file (a regular file; read in place, storages
/// straight into tensor memory).
pub fn load_file(path: &Path) -> Result<Vec<(String, Tensor)>, String> {
    match load_file_as(path, Want::StateDict)? {
        Loaded::StateDict(sd) => Ok(sd),
        Loaded::Tree(_) => Err("internal: a tree where a state_dict was asked for".into()),
    }
}

/// Everything a `torch.save` file holds (a Lightning checkpoint, a dict of state_dicts): its value
/// as JSON and its tensors by path.
pub fn load_tree_file(path: &Path) -> Result<TorchTree, String> {
    match load_file_as(path, Want::Tree)? {
        Loaded::Tree(t) => Ok(t),
        Loaded::StateDict(_) => Err("internal: a state_dict where a tree was asked for".into()),
    }
}

fn load_file_as(path: &Path, want: Want) -> Result<Loaded, String> {
    let f = crate::fs::open_regular(path).map_err(|e| format!("cannot read: {e}"))?;
    let len = f.metadata().map_err(|e| format!("cannot read: {e}"))?.len();
    load_from(std::io::BufReader::with_capacity(1 << 20, f), len, want)
}
