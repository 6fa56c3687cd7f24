//! Writes `torch.save` zip files that `torch.load(path, weights_only=True)` reads: the mirror of
//! [`super::torch_pickle`]. The archive holds `archive/data.pkl` (pickle protocol 2),
//! `archive/byteorder` (`little`), `archive/version` (`3`) and one `archive/data/N` entry per
//! tensor (its bytes, stored uncompressed and 64-byte aligned, as torch writes them).
//!
//! The pickle uses only opcodes and globals PyTorch's weights-only unpickler accepts
//! ([`WRITER_OPCODES`]): containers (`}` `]` `)` `(` `t` `u` `e`), numbers (`K` `M` `J` `\x8a`
//! `G`), strings (`X`), `N` and booleans, and for tensors the globals
//! `torch._utils._rebuild_tensor_v2`, `collections.OrderedDict` and the typed storages
//! (`torch.FloatStorage`, …) behind persistent ids `('storage', torch.FloatStorage, key, 'cpu',
//! numel)`. No memo is written (values are never shared), so the pickle is a plain tree.
use crate::nn::io::cpu_bytes;
use std::io::Write;
use std::path::Path;
use tch::{Kind, Tensor};

/// A Python value to pickle.
pub enum Py {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Py>),
    Tuple(Vec<Py>),
    /// A `dict` (keys in order).
    Dict(Vec<(Py, Py)>),
    /// A `collections.OrderedDict` with string keys (what `state_dict()` returns).
    OrderedDict(Vec<(String, Py)>),
    Tensor(Tensor),
}

impl Py {
    pub fn str(s: &str) -> Py {
        Py::Str(s.to_string())
    }

    /// A dict with string keys.
    pub fn dict<K: Into<String>>(items: impl IntoIterator<Item = (K, Py)>) -> Py {
        Py::Dict(items.into_iter().map(|(k, v)| (Py::Str(k.into()), v)).collect())
    }

    /// A JSON value as Python's `json.loads` would give it (objects are dicts, arrays lists).
    pub fn from_json(v: &serde_json::Value) -> Py {
        use serde_json::Value as J;
        match v {
            J::Null => Py::None,
            J::Bool(b) => Py::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Py::Int(i),
                None => Py::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Py::Str(s.clone()),
            J::Array(a) => Py::List(a.iter().map(Py::from_json).collect()),
            J::Object(m) => Py::Dict(m.iter().map(|(k, v)| (Py::Str(k.clone()), Py::from_json(v))).collect()),
        }
    }
}

/// Every opcode the writer emits; each is one PyTorch's weights-only unpickler
/// (`torch/_weights_only_unpickler.py`) accepts.
pub const WRITER_OPCODES: &[u8] = &[
    0x80, b'.', b'}', b']', b')', b'(', b't', b'u', b'e', b'K', b'M', b'J', 0x8a, b'G', b'X', b'N', 0x88, 0x89, b'c',
    b'R', b'Q',
];

/// The globals the writer emits (each in PyTorch's weights-only allowlist).
pub const WRITER_GLOBALS: &[&str] = &[
    "torch._utils._rebuild_tensor_v2",
    "collections.OrderedDict",
    "torch.FloatStorage",
    "torch.DoubleStorage",
    "torch.HalfStorage",
    "torch.BFloat16Storage",
    "torch.LongStorage",
    "torch.IntStorage",
    "torch.ShortStorage",
    "torch.CharStorage",
    "torch.ByteStorage",
    "torch.BoolStorage",
];

fn storage_name(kind: Kind) -> Result<&'static str, String> {
    use tch::Kind::*;
    Ok(match kind {
        Float => "FloatStorage",
        Double => "DoubleStorage",
        Half => "HalfStorage",
        BFloat16 => "BFloat16Storage",
        Int64 => "LongStorage",
        Int => "IntStorage",
        Int16 => "ShortStorage",
        Int8 => "CharStorage",
        Uint8 => "ByteStorage",
        Bool => "BoolStorage",
        other => return Err(format!("a {other:?} tensor cannot be written to a torch.save file by lt")),
    })
}

struct Pickler {
    out: Vec<u8>,
    /// The tensors whose storages the pickle names, in key order (`data/0`, `data/1`, …).
    storages: Vec<Tensor>,
}

impl Pickler {
    fn op(&mut self, op: u8) {
        self.out.push(op);
    }

    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out.extend_from_slice(module.as_bytes());
        self.out.push(b'\n');
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'\n');
    }

    fn int(&mut self, i: i64) {
        if (0..256).contains(&i) {
            self.out.extend([b'K', i as u8]);
        } else if (0..65536).contains(&i) {
            self.out.push(b'M');
            self.out.extend((i as u16).to_le_bytes());
        } else if let Ok(v) = i32::try_from(i) {
            self.out.push(b'J');
            self.out.extend(v.to_le_bytes());
        } else {
            // LONG1: little-endian two's complement, 8 bytes is always enough for an i64
            self.out.extend([0x8a, 8]);
            self.out.extend(i.to_le_bytes());
        }
    }

    fn string(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend((s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    /// `collections.OrderedDict()`
    fn empty_ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.op(b')');
        self.op(b'R');
    }

    fn tensor(&mut self, t: &Tensor) -> Result<(), String> {
        let sname = storage_name(t.kind())?;
        let t = t
            .f_detach()
            .and_then(|d| d.f_to_device(tch::Device::Cpu))
            .and_then(|d| d.f_contiguous())
            .map_err(|e| format!("cannot read a tensor to save: {e}"))?;
        let size = t.size();
        let mut stride = vec![1i64; size.len()];
        for d in (0..size.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * size[d + 1].max(1);
        }
        let key = self.storages.len().to_string();
        let numel = t.numel() as i64;
        self.storages.push(t);
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.op(b'(');
        // the storage: persistent id ('storage', torch.FloatStorage, key, 'cpu', numel)
        self.op(b'(');
        self.string("storage");
        self.global("torch", sname);
        self.string(&key);
        self.string("cpu");
        self.int(numel);
        self.op(b't');
        self.op(b'Q');
        self.int(0); // storage_offset
        self.op(b'(');
        for s in &size {
            self.int(*s);
        }
        self.op(b't');
        self.op(b'(');
        for s in &stride {
            self.int(*s);
        }
        self.op(b't');
        self.op(0x89); // requires_grad
        self.empty_ordered_dict(); // backward_hooks
        self.op(b't');
        self.op(b'R');
        Ok(())
    }

    /// Pickles `v`; nesting is bounded by what lt builds (serde_json's recursion limit for JSON).
    fn value(&mut self, v: &Py) -> Result<(), String> {
        match v {
            Py::None => self.op(b'N'),
            Py::Bool(b) => self.op(if *b { 0x88 } else { 0x89 }),
            Py::Int(i) => self.int(*i),
            Py::Float(f) => {
                self.op(b'G');
                self.out.extend(f.to_be_bytes());
            }
            Py::Str(s) => self.string(s),
            Py::List(items) => {
                self.op(b']');
                if !items.is_empty() {
                    self.op(b'(');
                    for x in items {
                        self.value(x)?;
                    }
                    self.op(b'e');
                }
            }
            Py::Tuple(items) => {
                self.op(b'(');
                for x in items {
                    self.value(x)?;
                }
                self.op(b't');
            }
            Py::Dict(items) => {
                self.op(b'}');
                if !items.is_empty() {
                    self.op(b'(');
                    for (k, x) in items {
                        self.value(k)?;
                        self.value(x)?;
                    }
                    self.op(b'u');
                }
            }
            Py::OrderedDict(items) => {
                self.empty_ordered_dict();
                if !items.is_empty() {
                    self.op(b'(');
                    for (k, x) in items {
                        self.string(k);
                        self.value(x)?;
                    }
                    self.op(b'u');
                }
            }
            Py::Tensor(t) => self.tensor(t)?,
        }
        Ok(())
    }
}

/// The pickle of `v` (protocol 2) and the tensors its persistent ids name, in key order.
pub fn pickle(v: &Py) -> Result<(Vec<u8>, Vec<Tensor>), String> {
    let mut p = Pickler { out: vec![0x80, 2], storages: Vec::new() };
    p.value(v)?;
    p.op(b'.');
    Ok((p.out, p.storages))
}

/// The opcodes of a pickle the writer made, in order (an error at any byte it does not write):
/// for tests that check a file stays within [`WRITER_OPCODES`], and the globals it names.
pub fn scan(pkl: &[u8]) -> Result<(Vec<u8>, Vec<String>), String> {
    let (mut ops, mut globals, mut i) = (Vec::new(), Vec::new(), 0usize);
    let arg = |i: usize, n: usize| -> Result<&[u8], String> {
        pkl.get(i..i + n).ok_or_else(|| format!("truncated pickle at byte {i}"))
    };
    while i < pkl.len() {
        let op = pkl[i];
        ops.push(op);
        i += 1;
        i += match op {
            0x80 | b'K' => 1,
            b'M' => 2,
            b'J' => 4,
            b'G' => 8,
            0x8a => 1 + arg(i, 1)?[0] as usize,
            b'X' => 4 + u32::from_le_bytes(arg(i, 4)?.try_into().unwrap_or_default()) as usize,
            b'c' => {
                let rest = &pkl[i..];
                let nl = |s: &[u8]| s.iter().position(|&c| c == b'\n').ok_or("a GLOBAL without its newlines");
                let a = nl(rest)?;
                let b = nl(&rest[a + 1..])?;
                globals.push(format!(
                    "{}.{}",
                    String::from_utf8_lossy(&rest[..a]),
                    String::from_utf8_lossy(&rest[a + 1..a + 1 + b])
                ));
                a + b + 2
            }
            b'.' => {
                if i != pkl.len() {
                    return Err(format!("STOP at byte {} before the end", i - 1));
                }
                0
            }
            op if WRITER_OPCODES.contains(&op) => 0,
            op => return Err(format!("opcode 0x{op:02x} at byte {} is not one the writer emits", i - 1)),
        };
    }
    Ok((ops, globals))
}

/// Writes `v` as a `torch.save` file at `path` (atomically: a temp file, then a rename).
pub fn save(path: &Path, v: &Py) -> Result<(), String> {
    let (pkl, storages) = pickle(v)?;
    crate::fs::write_atomic_with(path, |tmp| {
        let f = std::fs::File::create(tmp).map_err(|e| e.to_string())?;
        let mut z = zip::ZipWriter::new(std::io::BufWriter::new(f));
        let o = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(true);
        let ze = |e: zip::result::ZipError| e.to_string();
        let io = |e: std::io::Error| e.to_string();
        z.start_file_aligned("archive/data.pkl", o, 64).map_err(ze)?;
        z.write_all(&pkl).map_err(io)?;
        z.start_file_aligned("archive/byteorder", o, 64).map_err(ze)?;
        z.write_all(b"little").map_err(io)?;
        for (i, t) in storages.iter().enumerate() {
            let bytes = cpu_bytes(t).ok_or_else(|| format!("tensor {i} is not a contiguous CPU tensor"))?;
            z.start_file_aligned(format!("archive/data/{i}"), o, 64).map_err(ze)?;
            z.write_all(bytes).map_err(io)?;
        }
        z.start_file_aligned("archive/version", o, 64).map_err(ze)?;
        z.write_all(b"3\n").map_err(io)?;
        let mut w = z.finish().map_err(ze)?;
        w.flush().map_err(io)
    })
}
