//! The `data::` script surface: datasets, loaders, samplers, transforms, file formats, and the
//! Rust-side accessors the Trainer uses on loaders returned by a script's hooks.
use super::csv::{Column, CsvOptions};
use super::dataset::{self, Concat, SplitSizes, Subset, TensorDataset};
use super::hf_tokenizer::HfTokenizer;
use super::iterable::IterableDataset;
use super::loader::{DataLoader, LoaderOptions};
use super::rng::seed_from_torch;
use super::sampler::Sampler;
use super::script_ds::ScriptDataset;
use super::script_iter::ScriptIterable;
use super::tokenizer::{Level, TextTokenizer, Tokenizer, VocabOptions};
use super::transform::{Field, Interp, PadMode, Transform, Transformed};
use super::{files, idx, image, synthetic, text, Batch, Dataset, EpochIter, FetchCtx};
use crate::script::convert::{err, number, Opts, OrScript, RResult};
use crate::script::registry::Registry;
use crate::tensor::options::parse_dtype;
use crate::tensor::Tensor;
use rhai::ImmutableString;
use rhai::{Array, Dynamic, FnPtr, Map, NativeCallContext, INT};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

/// Script type `Dataset`: a shared dataset.
#[derive(Clone)]
pub struct DatasetHandle(pub Arc<dyn Dataset>);

/// Script type `DataLoader`: shared with the Trainer (`Rc<RefCell<…>>`, so the Trainer's
/// `set_distributed` is seen by the script and the other way round).
#[derive(Clone)]
pub struct LoaderHandle(pub Rc<RefCell<DataLoader>>);

impl LoaderHandle {
    pub fn new(l: DataLoader) -> Self {
        LoaderHandle(Rc::new(RefCell::new(l)))
    }
    pub fn borrow(&self) -> std::cell::Ref<'_, DataLoader> {
        self.0.borrow()
    }
    pub fn borrow_mut(&self) -> std::cell::RefMut<'_, DataLoader> {
        self.0.borrow_mut()
    }
}

/// Script type `IterableDataset`: a stream of samples, maybe without a length.
#[derive(Clone)]
pub struct IterableHandle(pub Arc<dyn IterableDataset>);

/// Script type `Tokenizer`: text ↔ token ids.
#[derive(Clone)]
pub struct TokenizerHandle(pub Arc<dyn TextTokenizer>);

/// Script type `Sampler`.
#[derive(Clone)]
pub struct SamplerHandle(pub Sampler);

/// The loader behind a script value, if it is one.
pub fn loader_of(d: &Dynamic) -> Option<LoaderHandle> {
    d.read_lock::<LoaderHandle>().map(|l| l.clone())
}

/// The loaders behind a `*_dataloader()` hook's result: one loader, an array of loaders, or `()`
/// (no loader). Anything else is an error naming what was found.
pub fn loaders_of(d: &Dynamic) -> Result<Vec<LoaderHandle>, String> {
    if d.is_unit() {
        return Ok(Vec::new());
    }
    if let Some(l) = loader_of(d) {
        return Ok(vec![l]);
    }
    if let Some(a) = d.read_lock::<Array>() {
        return a
            .iter()
            .enumerate()
            .map(|(i, v)| {
                loader_of(v).ok_or_else(|| format!("element {i} of the array is a {}, not a DataLoader", v.type_name()))
            })
            .collect();
    }
    Err(format!("expected a DataLoader or an array of DataLoaders, got {}", d.type_name()))
}

/// A batch as scripts see it: tensors, arrays, maps, numbers, strings.
pub fn batch_to_dynamic(b: Batch) -> Dynamic {
    match b {
        Batch::Tensor(t) => Dynamic::from(Tensor::new(t)),
        Batch::List(v) => Dynamic::from_array(v.into_iter().map(batch_to_dynamic).collect()),
        Batch::Map(v) => {
            let mut m = Map::new();
            for (k, x) in v {
                m.insert(k.into(), batch_to_dynamic(x));
            }
            Dynamic::from_map(m)
        }
        Batch::Int(i) => Dynamic::from_int(i),
        Batch::Float(f) => Dynamic::from_float(f),
        Batch::Bool(b) => Dynamic::from_bool(b),
        Batch::Str(s) => Dynamic::from(s),
        Batch::Strs(v) => Dynamic::from_array(v.into_iter().map(Dynamic::from).collect()),
    }
}

/// `for batch in loader`: the batches of the loader's current epoch, then the epoch advances.
pub struct ScriptBatches(EpochIter);

impl Iterator for ScriptBatches {
    type Item = RResult<Dynamic>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|r| r.map(batch_to_dynamic).map_err(err))
    }
}

impl IntoIterator for LoaderHandle {
    type Item = RResult<Dynamic>;
    type IntoIter = ScriptBatches;
    fn into_iter(self) -> ScriptBatches {
        let it = self.0.borrow_mut().iter_next();
        ScriptBatches(it)
    }
}

fn ds(d: impl Dataset + 'static) -> DatasetHandle {
    DatasetHandle(Arc::new(d))
}

fn to_usize(v: i64, what: &str, name: &str) -> RResult<usize> {
    usize::try_from(v).map_err(|_| err(format!("{what}: '{name}' must be non-negative, got {v}")))
}

fn opt_usize(o: &Opts, key: &str, default: usize, what: &str) -> RResult<usize> {
    to_usize(o.i64_or(key, default as i64)?, what, key)
}

fn seed_opt(o: &Opts) -> RResult<u64> {
    Ok(match o.i64_opt("seed")? {
        Some(s) => s as u64,
        None => seed_from_torch(),
    })
}

fn tensor_arg(d: &Dynamic, what: &str, i: usize) -> RResult<tch::Tensor> {
    d.read_lock::<Tensor>()
        .map(|t| t.handle())
        .ok_or_else(|| err(format!("{what}: argument {i} is a {}, expected a Tensor", d.type_name())))
}

fn tensor_dataset(ts: &[Dynamic]) -> RResult<DatasetHandle> {
    let ts =
        ts.iter().enumerate().map(|(i, t)| tensor_arg(t, "data::tensor_dataset", i)).collect::<RResult<Vec<_>>>()?;
    Ok(ds(TensorDataset::new(&ts).or_script()?))
}

fn numbers(d: &Dynamic, what: &str) -> RResult<Vec<f64>> {
    if let Some(t) = d.read_lock::<Tensor>() {
        let t = t.f_to_kind(tch::Kind::Double).or_script()?.f_flatten(0, -1).or_script()?;
        return Vec::<f64>::try_from(&t).map_err(|e| err(format!("{what}: {e}")));
    }
    if let Some(a) = d.read_lock::<Array>() {
        return a.iter().map(|v| number(v, what)).collect();
    }
    Err(err(format!("{what}: expected an array of numbers or a Tensor, got {}", d.type_name())))
}

const LOADER_KEYS: &[&str] =
    &["batch_size", "shuffle", "drop_last", "num_workers", "pin_memory", "seed", "sampler", "prefetch_factor"];

fn loader(d: DatasetHandle, m: &Map) -> RResult<LoaderHandle> {
    let opts = loader_options(m)?;
    Ok(LoaderHandle::new(DataLoader::new(d.0, opts).or_script()?))
}

fn iterable_loader(d: IterableHandle, m: &Map) -> RResult<LoaderHandle> {
    let opts = loader_options(m)?;
    Ok(LoaderHandle::new(DataLoader::iterable(d.0, opts).or_script()?))
}

fn loader_options(m: &Map) -> RResult<LoaderOptions> {
    const W: &str = "data::loader";
    let o = Opts::new(m, W, LOADER_KEYS)?;
    let mut opts = LoaderOptions {
        batch_size: opt_usize(&o, "batch_size", 1, W)?,
        shuffle: o.bool_or("shuffle", false)?,
        drop_last: o.bool_or("drop_last", false)?,
        num_workers: opt_usize(&o, "num_workers", 0, W)?,
        pin_memory: o.bool_or("pin_memory", false)?,
        seed: seed_opt(&o)?,
        prefetch_factor: opt_usize(&o, "prefetch_factor", 2, W)?,
        sampler: None,
    };
    if let Some(s) = o.get("sampler") {
        let s = s
            .read_lock::<SamplerHandle>()
            .map(|s| s.0.clone())
            .ok_or_else(|| err(format!("{W}: option 'sampler' must be a Sampler, got {}", s.type_name())))?;
        opts.sampler = Some(s);
    }
    Ok(opts)
}

fn index(d: &DatasetHandle, i: INT) -> RResult<Dynamic> {
    let n = d.0.len() as i64;
    let j = if i < 0 { i + n } else { i };
    if j < 0 || j >= n {
        return Err(err(format!("dataset index {i} is out of range for a dataset of {n} samples")));
    }
    let ctx = FetchCtx { seed: 0, epoch: 0, batch: j as u64 };
    d.0.get(j as usize, &ctx).map(batch_to_dynamic).or_script()
}

fn datasets_of(a: &Array, what: &str) -> RResult<Vec<Arc<dyn Dataset>>> {
    a.iter()
        .enumerate()
        .map(|(i, v)| {
            v.read_lock::<DatasetHandle>()
                .map(|d| d.0.clone())
                .ok_or_else(|| err(format!("{what}: element {i} is a {}, not a Dataset", v.type_name())))
        })
        .collect()
}

fn split_sizes(a: &Array) -> RResult<SplitSizes> {
    const W: &str = "data::random_split";
    if a.iter().all(|v| v.is_int()) {
        let c = a.iter().map(|v| to_usize(v.as_int().unwrap_or(0), W, "lengths")).collect::<RResult<Vec<_>>>()?;
        return Ok(SplitSizes::Counts(c));
    }
    Ok(SplitSizes::Fractions(a.iter().map(|v| number(v, W)).collect::<RResult<_>>()?))
}

fn synthetic_opts<'a>(m: &'a Map, what: &'a str, keys: &[&str]) -> RResult<Opts<'a>> {
    Opts::new(m, what, keys)
}

pub fn register(reg: &mut Registry) {
    let g = reg.global_module();
    g.set_custom_type::<DatasetHandle>("Dataset");
    g.set_custom_type::<LoaderHandle>("DataLoader");
    g.set_custom_type::<SamplerHandle>("Sampler");
    g.set_custom_type::<IterableHandle>("IterableDataset");
    g.set_custom_type::<TokenizerHandle>("Tokenizer");
    g.set_custom_type::<TransformHandle>("Transform");
    g.set_iterable_result::<LoaderHandle, Dynamic>();
    register_datasets(reg);
    register_synthetic(reg);
    register_loader(reg);
    register_samplers(reg);
    register_files(reg);
    register_transforms(reg);
    register_iterable(reg);
    register_tokenizers(reg);
}

fn register_datasets(reg: &mut Registry) {
    let doc = "A dataset whose samples are rows of the given tensors, all with the same first dim (torch TensorDataset). Samples are `[x[i], y[i], …]`; a map of tensors gives `#{name: t[i]}` samples.\n\n```rhai\nlet x = torch::randn([10, 3]);\nlet y = torch::arange(10);\nlet ds = data::tensor_dataset(x, y);\nprint(ds.len());\nlet s = ds[2];\nprint(s[0].shape);\nlet named = data::tensor_dataset(#{x: x, y: y});\nprint(named[0].y);\n```";
    reg.func("data", "tensor_dataset", "x", doc, |a: Dynamic| -> RResult<DatasetHandle> {
        if let Some(m) = a.read_lock::<Map>() {
            let named = m
                .iter()
                .map(|(k, v)| Ok((k.to_string(), tensor_arg(v, "data::tensor_dataset", 0)?)))
                .collect::<RResult<Vec<_>>>()?;
            return Ok(ds(TensorDataset::named(&named).or_script()?));
        }
        if let Some(arr) = a.read_lock::<Array>() {
            return tensor_dataset(&arr);
        }
        tensor_dataset(&[a])
    });
    reg.func("data", "tensor_dataset", "x, y", doc, |a: Dynamic, b: Dynamic| tensor_dataset(&[a, b]));
    reg.func("data", "tensor_dataset", "x, y, z", doc, |a: Dynamic, b: Dynamic, c: Dynamic| tensor_dataset(&[a, b, c]));
    reg.func("data", "tensor_dataset", "x, y, z, w", doc, |a: Dynamic, b: Dynamic, c: Dynamic, d: Dynamic| {
        tensor_dataset(&[a, b, c, d])
    });

    let doc = "A dataset defined by the script: `len` (an int, or a function returning one) and `get`, a function from an index to a sample (a tensor, number, string, or an array / map of them). Use it for what no built-in dataset covers; its samples are fetched on the script's thread, so loaders over it ignore `num_workers`.\n\n```rhai\nlet ds = data::dataset(#{\n    len: 6,\n    get: |i| [torch::full([2], i), i % 2],\n});\nfor batch in data::loader(ds, #{batch_size: 4}) {\n    print(batch[0].shape);\n    print(batch[1]);\n}\n```";
    reg.volatile("data", "dataset", "fns", doc, |ctx: NativeCallContext, m: Map| -> RResult<DatasetHandle> {
        const W: &str = "data::dataset";
        let o = Opts::new(&m, W, &["len", "get"])?;
        let len_v = o.get("len").ok_or_else(|| err(format!("{W}: missing 'len' (an int or a function)")))?;
        let len = if let Some(f) = len_v.read_lock::<FnPtr>() {
            let v: Dynamic = f.call_within_context(&ctx, ())?;
            v.as_int().map_err(|t| err(format!("{W}: len() returned {t}, expected an int")))?
        } else {
            len_v.as_int().map_err(|t| err(format!("{W}: 'len' must be an int or a function, got {t}")))?
        };
        let len = to_usize(len, W, "len")?;
        let get = o
            .get("get")
            .ok_or_else(|| err(format!("{W}: missing 'get' (a function of the index)")))?
            .read_lock::<FnPtr>()
            .map(|f| f.clone())
            .ok_or_else(|| err(format!("{W}: 'get' must be a function, e.g. |i| [x[i], y[i]]")))?;
        Ok(ds(ScriptDataset::new(&ctx, len, get)))
    });

    let doc = "Number of samples (len(dataset)).\n\n```rhai\nprint(data::blobs().len());\n```";
    reg.func("", "len", "self", doc, |d: &mut DatasetHandle| d.0.len() as INT);
    let doc = "Sample `i` (negative counts from the end), without a batch dimension.\n\n```rhai\nlet ds = data::regression(#{n: 8});\nprint(ds[0][0].shape);\nprint(ds[-1][1]);\n```";
    reg.index_get(doc, |d: &mut DatasetHandle, i: INT| index(d, i));
    let doc = "Class names, for datasets that have them (image folders, CSV files with string labels); `()` otherwise.\n\n```rhai\nprint(data::blobs().classes);\n```";
    reg.getter("classes", doc, |d: &mut DatasetHandle| -> Dynamic {
        match d.0.classes() {
            Some(c) => Dynamic::from_array(c.into_iter().map(Dynamic::from).collect()),
            None => Dynamic::UNIT,
        }
    });
    let doc =
        "What the dataset is, with its size and shapes.\n\n```rhai\nprint(data::blobs(#{n: 10}).to_string());\n```";
    reg.func("", "to_string", "self", doc, |d: &mut DatasetHandle| d.0.describe());
    reg.func("", "to_debug", "self", doc, |d: &mut DatasetHandle| d.0.describe());

    let doc = "The samples of `ds` at `indices`, in that order (torch Subset).\n\n```rhai\nlet ds = data::blobs(#{n: 20});\nlet s = data::subset(ds, [0, 5, 7]);\nprint(s.len());\n```";
    reg.func("data", "subset", "ds, indices", doc, |d: DatasetHandle, idx: Array| -> RResult<DatasetHandle> {
        let idx = idx
            .iter()
            .map(|v| {
                let i = v.as_int().map_err(|t| err(format!("data::subset: indices must be ints, found {t}")))?;
                to_usize(i, "data::subset", "indices")
            })
            .collect::<RResult<Vec<_>>>()?;
        Ok(ds(Subset::new(d.0, idx).or_script()?))
    });
    let doc = "Datasets one after the other (torch ConcatDataset); their samples must have the same structure.\n\n```rhai\nlet a = data::blobs(#{n: 10});\nlet b = data::blobs(#{n: 5, seed: 1});\nprint(data::concat([a, b]).len());\n```";
    reg.func("data", "concat", "datasets", doc, |a: Array| -> RResult<DatasetHandle> {
        Ok(ds(Concat::new(datasets_of(&a, "data::concat")?).or_script()?))
    });
    let doc = "Splits a dataset into non-overlapping random subsets (torch.utils.data.random_split): `lengths` are ints summing to the dataset's length, or fractions summing to 1 (remainders go round-robin to the first subsets). `#{seed}` fixes the split: the same subsets as torch's `random_split(ds, lengths, generator=torch.Generator().manual_seed(seed))` (default: a seed drawn from `torch::manual_seed`'s generator).\n\n```rhai\nlet ds = data::blobs(#{n: 10});\nlet parts = data::random_split(ds, [0.8, 0.2], #{seed: 42});\nprint(parts[0].len());\nprint(parts[1].len());\n```";
    reg.volatile("data", "random_split", "ds, lengths", doc, |d: DatasetHandle, l: Array| -> RResult<Array> {
        let parts = dataset::random_split(d.0, &split_sizes(&l)?, seed_from_torch()).or_script()?;
        Ok(parts.into_iter().map(|s| Dynamic::from(ds(s))).collect())
    });
    reg.volatile(
        "data",
        "random_split",
        "ds, lengths, opts",
        doc,
        |d: DatasetHandle, l: Array, m: Map| -> RResult<Array> {
            let o = Opts::new(&m, "data::random_split", &["seed"])?;
            let parts = dataset::random_split(d.0, &split_sizes(&l)?, seed_opt(&o)?).or_script()?;
            Ok(parts.into_iter().map(|s| Dynamic::from(ds(s))).collect())
        },
    );
}

fn register_synthetic(reg: &mut Registry) {
    let doc = "Gaussian blobs for classification (sklearn make_blobs): `#{n: 300, centers: 3, features: 2, std: 1.0, seed: 0}`. Samples `[x: float32 [features], y: int64]`; no download, identical on every machine for a seed.\n\n```rhai\nlet ds = data::blobs(#{n: 100, centers: 4, seed: 1});\nprint(ds[0]);\n```";
    let blobs = |m: Map| -> RResult<DatasetHandle> {
        const W: &str = "data::blobs";
        let o = synthetic_opts(&m, W, &["n", "centers", "features", "std", "seed"])?;
        Ok(ds(synthetic::blobs(
            opt_usize(&o, "n", 300, W)?,
            opt_usize(&o, "centers", 3, W)?,
            opt_usize(&o, "features", 2, W)?,
            o.f64_or("std", 1.0)?,
            o.i64_or("seed", 0)? as u64,
        )
        .or_script()?))
    };
    reg.func("data", "blobs", "", doc, move || blobs(Map::new()));
    reg.func("data", "blobs", "opts", doc, blobs);

    let doc = "Interleaved 2-D spirals, one arm per class: `#{n: 300, classes: 3, noise: 0.2, seed: 0}`. Samples `[x: float32 [2], y: int64]`.\n\n```rhai\nlet ds = data::spirals(#{n: 60, classes: 2});\nprint(ds.len());\n```";
    let spirals = |m: Map| -> RResult<DatasetHandle> {
        const W: &str = "data::spirals";
        let o = synthetic_opts(&m, W, &["n", "classes", "noise", "seed"])?;
        Ok(ds(synthetic::spirals(
            opt_usize(&o, "n", 300, W)?,
            opt_usize(&o, "classes", 3, W)?,
            o.f64_or("noise", 0.2)?,
            o.i64_or("seed", 0)? as u64,
        )
        .or_script()?))
    };
    reg.func("data", "spirals", "", doc, move || spirals(Map::new()));
    reg.func("data", "spirals", "opts", doc, spirals);

    let doc = "Linear regression data `y = x·w + b + noise·ε`: `#{n: 200, features: 4, noise: 0.1, seed: 0}`. Samples `[x: float32 [features], y: float32 [1]]`.\n\n```rhai\nlet ds = data::regression(#{n: 50, features: 3});\nprint(ds[0][1].shape);\n```";
    let regression = |m: Map| -> RResult<DatasetHandle> {
        const W: &str = "data::regression";
        let o = synthetic_opts(&m, W, &["n", "features", "noise", "seed"])?;
        Ok(ds(synthetic::regression(
            opt_usize(&o, "n", 200, W)?,
            opt_usize(&o, "features", 4, W)?,
            o.f64_or("noise", 0.1)?,
            o.i64_or("seed", 0)? as u64,
        )
        .or_script()?))
    };
    reg.func("data", "regression", "", doc, move || regression(Map::new()));
    reg.func("data", "regression", "opts", doc, regression);

    let doc = "Sequence copy task: random token sequences, target = input: `#{n: 256, seq_len: 8, vocab: 10, seed: 0}`. Samples `[x: int64 [seq_len], y: int64 [seq_len]]`.\n\n```rhai\nlet ds = data::sequence_copy(#{n: 16, seq_len: 5});\nprint(ds[0][0]);\n```";
    let copy = |m: Map| -> RResult<DatasetHandle> {
        const W: &str = "data::sequence_copy";
        let o = synthetic_opts(&m, W, &["n", "seq_len", "vocab", "seed"])?;
        Ok(ds(synthetic::sequence_copy(
            opt_usize(&o, "n", 256, W)?,
            opt_usize(&o, "seq_len", 8, W)?,
            opt_usize(&o, "vocab", 10, W)?,
            o.i64_or("seed", 0)? as u64,
        )
        .or_script()?))
    };
    reg.func("data", "sequence_copy", "", doc, move || copy(Map::new()));
    reg.func("data", "sequence_copy", "opts", doc, copy);
}

fn register_loader(reg: &mut Registry) {
    let doc = "Batches of a dataset (torch.utils.data.DataLoader): `#{batch_size: 1, shuffle: false, drop_last: false, num_workers: 0, pin_memory: false, seed, sampler, prefetch_factor: 2}`. Batches are assembled in Rust, on `num_workers` threads that prefetch whole batches; the order depends only on the seed and the epoch (never on `num_workers`). Each `for batch in loader` runs one epoch and moves to the next, reshuffling. Samples are collated like PyTorch: tensors stacked, numbers to tensors, arrays and maps per element.\n\n```rhai\nlet ds = data::blobs(#{n: 100});\nlet loader = data::loader(ds, #{batch_size: 32, shuffle: true, seed: 7, num_workers: 2});\nprint(loader.len());\nfor batch in loader {\n    let x = batch[0];\n    let y = batch[1];\n    print(`${x.shape} ${y.shape}`);\n}\n```";
    reg.volatile("data", "loader", "dataset", doc, |d: DatasetHandle| loader(d, &Map::new()));
    reg.volatile("data", "loader", "dataset, opts", doc, |d: DatasetHandle, m: Map| loader(d, &m));

    let doc = "Number of batches per epoch (len(loader)).\n\n```rhai\nprint(data::loader(data::blobs(#{n: 10}), #{batch_size: 4}).len());\n```";
    reg.func("", "len", "self", doc, |l: &mut LoaderHandle| -> RResult<INT> {
        l.borrow().len().map(|n| n as INT).ok_or_else(|| {
            err("len(loader): the loader's iterable dataset has no length, so neither has the loader (give data::iterable a len)")
        })
    });
    let doc =
        "The loader's dataset (a Dataset, or an IterableDataset).\n\n```rhai\nlet l = data::loader(data::blobs(#{n: 10}));\nprint(l.dataset.len());\n```";
    reg.getter("dataset", doc, |l: &mut LoaderHandle| -> Dynamic {
        let l = l.borrow();
        match (l.dataset(), l.iterable_dataset()) {
            (Some(d), _) => Dynamic::from(DatasetHandle(d.clone())),
            (None, Some(d)) => Dynamic::from(IterableHandle(d.clone())),
            (None, None) => Dynamic::UNIT,
        }
    });
    let doc = "Samples per batch.\n\n```rhai\nprint(data::loader(data::blobs(), #{batch_size: 16}).batch_size);\n```";
    reg.getter("batch_size", doc, |l: &mut LoaderHandle| l.borrow().options().batch_size as INT);
    let doc = "Worker threads that fetch batches.\n\n```rhai\nprint(data::loader(data::blobs(), #{num_workers: 2}).num_workers);\n```";
    reg.getter("num_workers", doc, |l: &mut LoaderHandle| l.borrow().options().num_workers as INT);
    let doc = "The epoch the next `for batch in loader` runs (its shuffle is seeded with seed + epoch).\n\n```rhai\nlet l = data::loader(data::blobs(#{n: 8}), #{shuffle: true});\nfor b in l { print(b[0].shape); }\nprint(l.epoch);\n```";
    reg.getter("epoch", doc, |l: &mut LoaderHandle| l.borrow().epoch() as INT);
    let doc = "Sets the epoch of the next pass (sampler.set_epoch in PyTorch): a pass is reproducible from the loader's seed and its epoch.\n\n```rhai\nlet l = data::loader(data::tensor_dataset(torch::arange(6)), #{shuffle: true, seed: 1});\nl.set_epoch(3);\nlet a = [];\nfor b in l { a.push(b[0]); }\nl.set_epoch(3);\nlet i = 0;\nfor b in l { if !b[0].equal(a[i]) { throw \"differs\"; } i += 1; }\n```";
    reg.func("", "set_epoch", "self, epoch", doc, |l: &mut LoaderHandle, e: INT| -> RResult<()> {
        l.borrow_mut().set_epoch(to_usize(e, "set_epoch", "epoch")? as u64);
        Ok(())
    });
    let doc = "Makes this loader read only rank `rank`'s share of the data out of `world_size` (a DistributedSampler with the loader's shuffle and seed, padded so every rank gets as many batches). The Trainer does this by itself under DDP.\n\n```rhai\nlet l = data::loader(data::blobs(#{n: 10}), #{batch_size: 2});\nl.set_distributed(1, 4);\nprint(l.len());\n```";
    reg.func(
        "",
        "set_distributed",
        "self, rank, world_size",
        doc,
        |l: &mut LoaderHandle, r: INT, w: INT| -> RResult<()> {
            let r = to_usize(r, "set_distributed", "rank")?;
            let w = to_usize(w, "set_distributed", "world_size")?;
            l.borrow_mut().set_distributed(r, w).or_script()
        },
    );
    let doc = "The loader's settings and dataset.\n\n```rhai\nprint(data::loader(data::blobs(), #{batch_size: 8}).to_string());\n```";
    reg.func("", "to_string", "self", doc, |l: &mut LoaderHandle| format!("{:?}", l.borrow()));
    reg.func("", "to_debug", "self", doc, |l: &mut LoaderHandle| format!("{:?}", l.borrow()));
}

fn register_samplers(reg: &mut Registry) {
    let doc = "Visits samples in order (torch SequentialSampler); what a loader without `shuffle` uses.\n\n```rhai\nlet l = data::loader(data::blobs(#{n: 6}), #{sampler: data::sequential_sampler(), batch_size: 3});\nprint(l.len());\n```";
    reg.func("data", "sequential_sampler", "", doc, || SamplerHandle(Sampler::Sequential));
    let doc = "Random order (torch RandomSampler): a permutation per epoch, or with `#{replacement: true}` independent draws; `num_samples` sets the epoch's length.\n\n```rhai\nlet s = data::random_sampler(#{replacement: true, num_samples: 20});\nlet l = data::loader(data::blobs(#{n: 6}), #{sampler: s, batch_size: 5, seed: 0});\nprint(l.len());\n```";
    let random = |m: Map| -> RResult<SamplerHandle> {
        const W: &str = "data::random_sampler";
        let o = Opts::new(&m, W, &["replacement", "num_samples"])?;
        let num = match o.i64_opt("num_samples")? {
            Some(v) => Some(to_usize(v, W, "num_samples")?),
            None => None,
        };
        Ok(SamplerHandle(Sampler::Random { replacement: o.bool_or("replacement", false)?, num_samples: num }))
    };
    reg.func("data", "random_sampler", "", doc, move || random(Map::new()));
    reg.func("data", "random_sampler", "opts", doc, random);
    let doc = "Draws `num_samples` indices with probability proportional to `weights` (torch WeightedRandomSampler); with replacement by default, `#{replacement: false}` draws distinct indices. Weights are an array of numbers or a tensor, one per sample (rebalances classes).\n\n```rhai\nlet ds = data::blobs(#{n: 6});\nlet s = data::weighted_random_sampler([0.1, 0.1, 0.1, 0.1, 5.0, 5.0], 12);\nfor b in data::loader(ds, #{sampler: s, batch_size: 6, seed: 3}) {\n    print(b[1]);\n}\n```";
    let weighted = |w: Dynamic, n: INT, m: Map| -> RResult<SamplerHandle> {
        const W: &str = "data::weighted_random_sampler";
        let o = Opts::new(&m, W, &["replacement"])?;
        let weights = numbers(&w, W)?;
        let n = to_usize(n, W, "num_samples")?;
        Ok(SamplerHandle(Sampler::weighted(weights, n, o.bool_or("replacement", true)?).or_script()?))
    };
    reg.func("data", "weighted_random_sampler", "weights, num_samples", doc, move |w: Dynamic, n: INT| {
        weighted(w, n, Map::new())
    });
    reg.func("data", "weighted_random_sampler", "weights, num_samples, opts", doc, weighted);
    let doc = "Rank `rank`'s share of the data out of `num_replicas` (torch DistributedSampler): `#{num_replicas, rank, shuffle: true, drop_last: false}`. Without `drop_last` indices are repeated so every rank gets as many; the permutation is seeded by the loader's seed and epoch, the same on every rank. The Trainer injects one by itself under DDP.\n\n```rhai\nlet s = data::distributed_sampler(#{num_replicas: 2, rank: 0, shuffle: false});\nlet l = data::loader(data::tensor_dataset(torch::arange(5)), #{sampler: s, batch_size: 10});\nfor b in l { print(b[0]); }\n```";
    reg.func("data", "distributed_sampler", "opts", doc, |m: Map| -> RResult<SamplerHandle> {
        const W: &str = "data::distributed_sampler";
        let o = Opts::new(&m, W, &["num_replicas", "rank", "shuffle", "drop_last"])?;
        let world = o.i64_opt("num_replicas")?.ok_or_else(|| err(format!("{W}: missing 'num_replicas'")))?;
        let rank = o.i64_opt("rank")?.ok_or_else(|| err(format!("{W}: missing 'rank'")))?;
        let base = if o.bool_or("shuffle", true)? {
            Sampler::Random { replacement: false, num_samples: None }
        } else {
            Sampler::Sequential
        };
        Ok(SamplerHandle(
            Sampler::distributed(
                base,
                to_usize(rank, W, "rank")?,
                to_usize(world, W, "num_replicas")?,
                o.bool_or("drop_last", false)?,
            )
            .or_script()?,
        ))
    });
}

/// Script type `Transform`.
#[derive(Clone)]
pub struct TransformHandle(pub Transform);

fn named_tensors(m: &Map, what: &str) -> RResult<Vec<(String, tch::Tensor)>> {
    m.iter()
        .map(|(k, v)| {
            let t = v
                .read_lock::<Tensor>()
                .map(|t| t.handle())
                .ok_or_else(|| err(format!("{what}: '{k}' is a {}, expected a Tensor", v.type_name())))?;
            Ok((k.to_string(), t))
        })
        .collect()
}

fn tensor_map(ts: Vec<(String, tch::Tensor)>) -> Map {
    ts.into_iter().map(|(k, t)| (k.into(), Dynamic::from(Tensor::new(t)))).collect()
}

fn strings(d: &Dynamic, what: &str) -> RResult<Vec<String>> {
    if let Some(a) = d.read_lock::<Array>() {
        return a
            .iter()
            .map(|v| {
                v.clone()
                    .into_immutable_string()
                    .map(|s| s.to_string())
                    .map_err(|t| err(format!("{what}: expected strings, found {t}")))
            })
            .collect();
    }
    Err(err(format!("{what}: expected an array of strings, got {}", d.type_name())))
}

fn column(d: &Dynamic, what: &str) -> RResult<Column> {
    if let Ok(i) = d.as_int() {
        return Ok(Column::Index(to_usize(i, what, "column")?));
    }
    d.clone()
        .into_immutable_string()
        .map(|s| Column::Name(s.to_string()))
        .map_err(|t| err(format!("{what}: a column is a name or an index, got {t}")))
}

fn csv(path: &str, m: &Map) -> RResult<DatasetHandle> {
    const W: &str = "data::csv";
    let o = Opts::new(m, W, &["header", "delimiter", "columns", "target", "dtype", "target_dtype"])?;
    let mut c = CsvOptions { header: o.bool_or("header", true)?, ..Default::default() };
    if let Some(d) = o.str_opt("delimiter")? {
        let mut chars = d.chars();
        c.delimiter = match (chars.next(), chars.next()) {
            (Some(ch), None) => ch,
            _ => return Err(err(format!("{W}: delimiter must be one character, got '{d}'"))),
        };
    }
    if let Some(cols) = o.get("columns") {
        let a = cols
            .read_lock::<Array>()
            .ok_or_else(|| err(format!("{W}: 'columns' must be an array of names or indices")))?;
        c.columns = Some(a.iter().map(|v| column(v, W)).collect::<RResult<_>>()?);
    }
    if let Some(t) = o.get("target") {
        c.target = Some(column(t, W)?);
    }
    if let Some(d) = o.str_opt("dtype")? {
        c.dtype = parse_dtype(&d).or_script()?;
    }
    if let Some(d) = o.str_opt("target_dtype")? {
        c.target_dtype = Some(parse_dtype(&d).or_script()?);
    }
    Ok(ds(super::csv::load(Path::new(path), &c).or_script()?))
}

fn file_dataset(ts: Vec<(String, tch::Tensor)>, m: &Map, what: &str, path: &str) -> RResult<DatasetHandle> {
    let o = Opts::new(m, what, &["keys"])?;
    let keys = o.get("keys").map(|k| strings(k, what)).transpose()?;
    let ts = files::select(ts, keys.as_deref(), Path::new(path)).or_script()?;
    let names: Vec<String> = ts.iter().map(|(k, _)| k.clone()).collect();
    let tensors: Vec<tch::Tensor> = ts.into_iter().map(|(_, t)| t).collect();
    Ok(ds(TensorDataset::build(&tensors, Some(names), &format!("{what} {path}")).or_script()?))
}

fn mnist(root: &str, m: &Map, what: &str) -> RResult<DatasetHandle> {
    let o = Opts::new(m, what, &["train"])?;
    Ok(ds(idx::mnist(Path::new(root), o.bool_or("train", true)?).or_script()?))
}

fn image_folder(root: &str, m: &Map) -> RResult<DatasetHandle> {
    const W: &str = "data::image_folder";
    let o = Opts::new(m, W, &["dtype"])?;
    let float = match o.str_or("dtype", "float32")?.as_str() {
        "float32" | "float" => true,
        "uint8" => false,
        other => {
            return Err(err(format!("{W}: dtype must be \"float32\" (scaled to [0, 1]) or \"uint8\", got \"{other}\"")))
        }
    };
    Ok(ds(image::ImageFolder::new(Path::new(root), float).or_script()?))
}

/// `mmap_mode` of the file datasets (NumPy's np.load option): `"r"` reads lazily (true), absent or
/// `()` reads the whole file (false).
fn lazy_mode(o: &Opts, what: &str) -> RResult<bool> {
    match o.str_opt("mmap_mode")?.as_deref() {
        None => Ok(false),
        Some("r") => Ok(true),
        Some(other) => Err(err(format!(
            "{what}: mmap_mode must be \"r\" (read lazily; lt never writes to a data file) or absent / () (read whole), got \"{other}\""
        ))),
    }
}

fn npy(path: &str, m: &Map) -> RResult<DatasetHandle> {
    const W: &str = "data::npy";
    let o = Opts::new(m, W, &["mmap_mode"])?;
    if lazy_mode(&o, W)? {
        Ok(ds(super::npy_rows::NpyRows::open(Path::new(path)).or_script()?))
    } else {
        Ok(ds(TensorDataset::new(&[files::read_npy(Path::new(path)).or_script()?]).or_script()?))
    }
}

fn safetensors(path: &str, m: &Map) -> RResult<DatasetHandle> {
    const W: &str = "data::safetensors";
    let o = Opts::new(m, W, &["keys", "mmap_mode"])?;
    if lazy_mode(&o, W)? {
        let keys = o.get("keys").map(|k| strings(k, W)).transpose()?;
        Ok(ds(super::safetensors_rows::SafetensorsRows::open(Path::new(path), keys.as_deref(), W).or_script()?))
    } else {
        let rest: Map =
            m.iter().filter(|(k, _)| k.as_str() != "mmap_mode").map(|(k, v)| (k.clone(), v.clone())).collect();
        file_dataset(files::read_safetensors(Path::new(path)).or_script()?, &rest, W, path)
    }
}

fn text_file(path: &str, m: &Map) -> RResult<DatasetHandle> {
    const W: &str = "data::text_file";
    let o = Opts::new(m, W, &["seq_len", "stride", "mode"])?;
    let seq_len = opt_usize(&o, "seq_len", 64, W)?;
    let stride = o.i64_opt("stride")?.map(|s| to_usize(s, W, "stride")).transpose()?;
    let chars = match o.str_or("mode", "char")?.as_str() {
        "char" => true,
        "byte" => false,
        other => return Err(err(format!("{W}: mode must be \"char\" or \"byte\", got \"{other}\""))),
    };
    Ok(ds(text::TextDataset::load(Path::new(path), seq_len, stride, chars).or_script()?))
}

fn register_files(reg: &mut Registry) {
    let doc = "A fresh, empty temporary directory (its path), for scratch files in examples and tests.\n\n```rhai\nlet dir = data::temp_dir();\nprint(dir != \"\");\n```";
    reg.volatile("data", "temp_dir", "", doc, || -> RResult<String> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p =
            std::env::temp_dir().join(format!("lt-data-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(|e| err(format!("data::temp_dir: {}: {e}", p.display())))?;
        Ok(p.display().to_string())
    });
    let doc = "Writes a string to a file (creating parent folders).\n\n```rhai\nlet p = data::temp_dir() + \"/a.txt\";\ndata::write_text(p, \"hello\");\n```";
    reg.volatile("data", "write_text", "path, text", doc, |p: ImmutableString, t: ImmutableString| -> RResult<()> {
        let p = Path::new(p.as_str());
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(|e| err(format!("data::write_text: {}: {e}", d.display())))?;
        }
        std::fs::write(p, t.as_bytes()).map_err(|e| err(format!("data::write_text: {}: {e}", p.display())))
    });

    let doc = "A CSV file as a dataset: `#{header: true, delimiter: \",\", columns: [...], target: \"label\", dtype: \"float32\", target_dtype}`. Features (every column but the target, or `columns`, by name or index) become `x: [F]`; the target `y` is int64 when every value is an integer, float32 otherwise, and string labels become class indices (sorted; see `ds.classes`). Errors name the file, line and column.\n\n```rhai\nlet p = data::temp_dir() + \"/iris.csv\";\ndata::write_text(p, \"a,b,label\\n1.0,2.0,cat\\n3.5,4.0,dog\\n0.5,1.0,cat\\n\");\nlet ds = data::csv(p, #{target: \"label\"});\nprint(ds[1]);\nprint(ds.classes);\n```";
    reg.func("data", "csv", "path", doc, |p: ImmutableString| csv(&p, &Map::new()));
    reg.func("data", "csv", "path, opts", doc, |p: ImmutableString, m: Map| csv(&p, &m));

    let doc = "Reads a NumPy `.npy` file as a tensor (np.load).\n\n```rhai\nlet p = data::temp_dir() + \"/x.npy\";\ndata::save_npy(torch::arange(6).reshape([2, 3]), p);\nprint(data::load_npy(p));\n```";
    reg.func("data", "load_npy", "path", doc, |p: ImmutableString| -> RResult<Tensor> {
        files::read_npy(Path::new(p.as_str())).map(Tensor::new).or_script()
    });
    let doc = "Writes a tensor as a NumPy `.npy` file (np.save).\n\n```rhai\nlet p = data::temp_dir() + \"/w.npy\";\ndata::save_npy(torch::ones([3]), p);\n```";
    reg.volatile("data", "save_npy", "tensor, path", doc, |t: Tensor, p: ImmutableString| -> RResult<()> {
        files::write_npy(&t, Path::new(p.as_str())).or_script()
    });
    let doc = "Reads every array of a NumPy `.npz` archive: a map of name → tensor.\n\n```rhai\nlet p = data::temp_dir() + \"/d.npz\";\ndata::save_npz(#{x: torch::zeros([4, 2]), y: torch::arange(4)}, p);\nprint(data::load_npz(p).y);\n```";
    reg.func("data", "load_npz", "path", doc, |p: ImmutableString| -> RResult<Map> {
        Ok(tensor_map(files::read_npz(Path::new(p.as_str())).or_script()?))
    });
    let doc = "A dataset over the rows of an `.npy` file (samples `[row]`): read whole, or with `#{mmap_mode: \"r\"}` (NumPy's `np.load(mmap_mode=\"r\")`) lazily: only the header is read up front and each batch reads just its rows from the file, so a file larger than memory streams (rows are read with positioned reads rather than a memory map; the OS page cache keeps hot rows).\n\n```rhai\nlet p = data::temp_dir() + \"/rows.npy\";\ndata::save_npy(torch::arange(12).reshape([6, 2]), p);\nlet lazy = data::npy(p, #{mmap_mode: \"r\"});\nprint(lazy.len());\nprint(lazy[4][0]);\nfor b in data::loader(lazy, #{batch_size: 4, shuffle: true, num_workers: 2}) { print(b[0].shape); }\n```";
    reg.func("data", "npy", "path", doc, |p: ImmutableString| npy(&p, &Map::new()));
    reg.func("data", "npy", "path, opts", doc, |p: ImmutableString, m: Map| npy(&p, &m));
    let doc = "Writes a map of tensors as a NumPy `.npz` archive (np.savez).\n\n```rhai\nlet p = data::temp_dir() + \"/s.npz\";\ndata::save_npz(#{a: torch::ones([2])}, p);\n```";
    reg.volatile("data", "save_npz", "tensors, path", doc, |m: Map, p: ImmutableString| -> RResult<()> {
        files::write_npz(&named_tensors(&m, "data::save_npz")?, Path::new(p.as_str())).or_script()
    });
    let doc = "A dataset over the arrays of an `.npz` archive (all, or `#{keys: [...]}`), which share their first dim; samples are maps `#{name: row}`.\n\n```rhai\nlet p = data::temp_dir() + \"/train.npz\";\ndata::save_npz(#{x: torch::randn([10, 3]), y: torch::arange(10)}, p);\nlet ds = data::npz(p, #{keys: [\"x\", \"y\"]});\nprint(ds[3].y);\n```";
    reg.func("data", "npz", "path", doc, |p: ImmutableString| {
        file_dataset(files::read_npz(Path::new(p.as_str())).or_script()?, &Map::new(), "data::npz", &p)
    });
    reg.func("data", "npz", "path, opts", doc, |p: ImmutableString, m: Map| {
        file_dataset(files::read_npz(Path::new(p.as_str())).or_script()?, &m, "data::npz", &p)
    });
    let doc = "Reads a safetensors file: a map of name → tensor.\n\n```rhai\nlet p = data::temp_dir() + \"/t.safetensors\";\ndata::save_safetensors(#{w: torch::ones([2, 2])}, p);\nprint(data::load_safetensors(p).w.shape);\n```";
    reg.func("data", "load_safetensors", "path", doc, |p: ImmutableString| -> RResult<Map> {
        Ok(tensor_map(files::read_safetensors(Path::new(p.as_str())).or_script()?))
    });
    let doc = "Writes a map of tensors as a safetensors file.\n\n```rhai\nlet p = data::temp_dir() + \"/u.safetensors\";\ndata::save_safetensors(#{a: torch::zeros([3])}, p);\n```";
    reg.volatile("data", "save_safetensors", "tensors, path", doc, |m: Map, p: ImmutableString| -> RResult<()> {
        files::write_safetensors(&named_tensors(&m, "data::save_safetensors")?, Path::new(p.as_str())).or_script()
    });
    let doc = "A dataset over the tensors of a safetensors file (all, sorted by name, or `#{keys: [...]}`), which share their first dim; samples are maps `#{name: row}`. Read whole, or with `#{mmap_mode: \"r\"}` lazily, as data::npy: only the header is read (and checked) up front and each batch reads just its rows of each tensor from the file, so a file larger than memory streams.\n\n```rhai\nlet p = data::temp_dir() + \"/d.safetensors\";\ndata::save_safetensors(#{x: torch::randn([6, 2]), y: torch::arange(6)}, p);\nprint(data::safetensors(p).len());\nlet lazy = data::safetensors(p, #{keys: [\"x\", \"y\"], mmap_mode: \"r\"});\nprint(lazy[4].y);\nfor b in data::loader(lazy, #{batch_size: 4, shuffle: true, num_workers: 2}) { print(b.x.shape); }\n```";
    reg.func("data", "safetensors", "path", doc, |p: ImmutableString| safetensors(&p, &Map::new()));
    reg.func("data", "safetensors", "path, opts", doc, |p: ImmutableString, m: Map| safetensors(&p, &m));

    let doc = "Reads an IDX file (the MNIST format), raw or gzip-compressed, as a tensor of its stored dtype.\n\n```rhai\nlet p = data::temp_dir() + \"/labels-idx1-ubyte\";\ndata::save_idx(torch::tensor([3, 1, 4]).to(\"uint8\"), p);\nprint(data::read_idx(p));\n```";
    reg.func("data", "read_idx", "path", doc, |p: ImmutableString| -> RResult<Tensor> {
        idx::read_idx(Path::new(p.as_str())).map(Tensor::new).or_script()
    });
    let doc = "Writes a tensor as an IDX file (uint8, int8, int16, int32, float32 or float64).\n\n```rhai\nlet p = data::temp_dir() + \"/x-idx1-ubyte\";\ndata::save_idx(torch::zeros([2]).to(\"uint8\"), p);\n```";
    reg.volatile("data", "save_idx", "tensor, path", doc, |t: Tensor, p: ImmutableString| -> RResult<()> {
        idx::write_idx(&t, Path::new(p.as_str())).or_script()
    });
    let doc = "MNIST from the IDX files in `root` (torchvision's names `train-images-idx3-ubyte[.gz]`, … in `root`, `root/raw` or `root/MNIST/raw`; no download): `#{train: true}`. Samples `[image: float32 [1, 28, 28] in [0, 1], label: int64]`.\n\n```rhai\nlet root = data::temp_dir();\ndata::save_idx(torch::randint(0, 255, [5, 28, 28]).to(\"uint8\"), root + \"/train-images-idx3-ubyte\");\ndata::save_idx(torch::randint(0, 10, [5]).to(\"uint8\"), root + \"/train-labels-idx1-ubyte\");\nlet ds = data::mnist(root);\nprint(ds[0][0].shape);\n```";
    reg.func("data", "mnist", "root", doc, |p: ImmutableString| mnist(&p, &Map::new(), "data::mnist"));
    reg.func("data", "mnist", "root, opts", doc, |p: ImmutableString, m: Map| mnist(&p, &m, "data::mnist"));
    let doc = "Fashion-MNIST from its IDX files in `root` (same file names and layout as MNIST, also `root/FashionMNIST/raw`): `#{train: true}`.\n\n```rhai\nlet root = data::temp_dir();\ndata::save_idx(torch::zeros([2, 28, 28]).to(\"uint8\"), root + \"/t10k-images-idx3-ubyte\");\ndata::save_idx(torch::zeros([2]).to(\"uint8\"), root + \"/t10k-labels-idx1-ubyte\");\nprint(data::fashion_mnist(root, #{train: false}).len());\n```";
    reg.func("data", "fashion_mnist", "root", doc, |p: ImmutableString| mnist(&p, &Map::new(), "data::fashion_mnist"));
    reg.func("data", "fashion_mnist", "root, opts", doc, |p: ImmutableString, m: Map| {
        mnist(&p, &m, "data::fashion_mnist")
    });

    let doc = "An image folder (torchvision ImageFolder): `root/<class>/<image>.png|jpg`, classes in sorted order (`ds.classes`). Images are decoded in Rust on the loader's workers; samples `[image: [C, H, W], label: int64]`, float32 in [0, 1] or `#{dtype: \"uint8\"}`.\n\n```rhai\nlet root = data::temp_dir();\ndata::save_image(torch::rand([3, 8, 8]), root + \"/cat/0.png\");\ndata::save_image(torch::rand([3, 8, 8]), root + \"/dog/0.png\");\nlet ds = data::image_folder(root);\nprint(ds.classes);\nprint(ds[1][0].shape);\n```";
    reg.func("data", "image_folder", "root", doc, |p: ImmutableString| image_folder(&p, &Map::new()));
    reg.func("data", "image_folder", "root, opts", doc, |p: ImmutableString, m: Map| image_folder(&p, &m));
    let doc = "Reads a PNG or JPEG file as a uint8 `[C, H, W]` tensor (torchvision.io.read_image), decoded in Rust: `#{mode: \"RGB\" | \"L\" | \"RGBA\" | \"unchanged\"}` converts the channels as Pillow's `convert` does (default: as stored). Image sizes are checked from the header before pixels are allocated.\n\n```rhai\nlet p = data::temp_dir() + \"/r.png\";\ndata::save_image(torch::rand([3, 4, 5]), p);\nprint(data::read_image(p).shape);\nprint(data::read_image(p, #{mode: \"L\"}).shape);\n```";
    reg.func("data", "read_image", "path", doc, |p: ImmutableString| -> RResult<Tensor> {
        image::read_image(Path::new(p.as_str()), image::Mode::Unchanged).map(Tensor::new).or_script()
    });
    reg.func("data", "read_image", "path, opts", doc, |p: ImmutableString, m: Map| -> RResult<Tensor> {
        let o = Opts::new(&m, "data::read_image", &["mode"])?;
        let mode = image::Mode::parse(&o.str_or("mode", "unchanged")?, "data::read_image").or_script()?;
        image::read_image(Path::new(p.as_str()), mode).map(Tensor::new).or_script()
    });
    let doc = "A dataset over a list of PNG / JPEG files, decoded on the loader's workers: samples are uint8 `[C, H, W]` images, or `[image, label]` with `#{labels: [...]}` (one int per file); `mode` as in data::read_image. Images of different sizes need a resize or crop (data::transformed) before batching.\n\n```rhai\nlet d = data::temp_dir();\ndata::save_image(torch::rand([3, 6, 8]), d + \"/a.png\");\ndata::save_image(torch::rand([1, 5, 5]), d + \"/b.png\");\nlet ds = data::image_files([d + \"/a.png\", d + \"/b.png\"], #{labels: [0, 1], mode: \"RGB\"});\nprint(ds[1][0].shape);\nlet t = data::transformed(ds, #{transform: data::transforms::resize([4, 4])});\nfor b in data::loader(t, #{batch_size: 2}) { print(b[0].shape); }\n```";
    let image_files = |a: Array, m: Map| -> RResult<DatasetHandle> {
        const W: &str = "data::image_files";
        let o = Opts::new(&m, W, &["labels", "mode"])?;
        let files = a
            .iter()
            .map(|v| {
                v.read_lock::<ImmutableString>()
                    .map(|s| std::path::PathBuf::from(s.as_str()))
                    .ok_or_else(|| err(format!("{W}: the file list holds a {}, expected path strings", v.type_name())))
            })
            .collect::<RResult<Vec<_>>>()?;
        let labels = o.ints_opt("labels")?;
        let mode = image::Mode::parse(&o.str_or("mode", "unchanged")?, W).or_script()?;
        Ok(ds(image::ImageFiles::new(files, labels, mode).or_script()?))
    };
    reg.func("data", "image_files", "paths", doc, move |a: Array| image_files(a, Map::new()));
    reg.func("data", "image_files", "paths, opts", doc, image_files);
    let doc = "Images and their segmentation masks from two folders, paired by file name without extension (`images/0001.jpg` with `masks/0001.png`): samples `[image: uint8 [C, H, W], mask: int64 [H, W]]`. A mask holds one class id per pixel: the palette index of a palette PNG, or the value of a grayscale file. An image without a mask, or a mask without an image, is an error naming the file. `#{mode}` as in data::read_image; use `transforms:` in data::transformed to crop or flip image and mask together.\n\n```rhai\nlet d = data::temp_dir();\ndata::save_image(torch::rand([3, 6, 6]), d + \"/img/0.png\");\ndata::save_image(torch::randint(0, 3, [1, 6, 6]).to(\"uint8\"), d + \"/mask/0.png\");\nlet ds = data::image_pairs(d + \"/img\", d + \"/mask\");\nlet s = ds[0];\nprint(`${s[0].shape} ${s[1].shape} ${s[1].dtype}`);\n```";
    reg.func("data", "image_pairs", "images_dir, masks_dir", doc, |i: ImmutableString, mk: ImmutableString| {
        image::ImagePairs::new(Path::new(i.as_str()), Path::new(mk.as_str()), image::Mode::Unchanged)
            .map(ds)
            .or_script()
    });
    reg.func(
        "data",
        "image_pairs",
        "images_dir, masks_dir, opts",
        doc,
        |i: ImmutableString, mk: ImmutableString, m: Map| -> RResult<DatasetHandle> {
            let o = Opts::new(&m, "data::image_pairs", &["mode"])?;
            let mode = image::Mode::parse(&o.str_or("mode", "unchanged")?, "data::image_pairs").or_script()?;
            image::ImagePairs::new(Path::new(i.as_str()), Path::new(mk.as_str()), mode).map(ds).or_script()
        },
    );
    let doc = "Writes a `[C, H, W]` or `[H, W]` tensor (uint8, or float in [0, 1]) as a PNG file, creating parent folders.\n\n```rhai\nlet p = data::temp_dir() + \"/img/x.png\";\ndata::save_image(torch::rand([1, 4, 4]), p);\n```";
    reg.volatile("data", "save_image", "tensor, path", doc, |t: Tensor, p: ImmutableString| -> RResult<()> {
        let p = Path::new(p.as_str());
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(|e| err(format!("data::save_image: {}: {e}", d.display())))?;
        }
        image::save_png(&t, p).or_script()
    });

    let doc = "A text file as a token stream for language models: `#{seq_len: 64, stride: seq_len, mode: \"char\"}` (`\"byte\"`: vocabulary of 256 bytes; `\"char\"`: the file's distinct characters, sorted, see `ds.vocab`). Sample `i` is `[x, y]`, int64 windows of `seq_len` tokens, `y` shifted by one (next-token targets).\n\n```rhai\nlet p = data::temp_dir() + \"/t.txt\";\ndata::write_text(p, \"hello world, hello lt\");\nlet ds = data::text_file(p, #{seq_len: 4});\nprint(ds.len());\nprint(ds.vocab.len());\nprint(ds[0]);\n```";
    reg.func("data", "text_file", "path", doc, |p: ImmutableString| text_file(&p, &Map::new()));
    reg.func("data", "text_file", "path, opts", doc, |p: ImmutableString, m: Map| text_file(&p, &m));
    let doc = "The token vocabulary of a character-level text dataset (`()` for other datasets).\n\n```rhai\nlet p = data::temp_dir() + \"/v.txt\";\ndata::write_text(p, \"abcab\");\nprint(data::text_file(p, #{seq_len: 2}).vocab);\n```";
    reg.getter("vocab", doc, |d: &mut DatasetHandle| -> Dynamic {
        match d.0.vocab() {
            Some(c) => Dynamic::from_array(c.into_iter().map(Dynamic::from).collect()),
            None => Dynamic::UNIT,
        }
    });
}

fn transform_of(d: &Dynamic, what: &str) -> RResult<Transform> {
    d.read_lock::<TransformHandle>()
        .map(|t| t.0.clone())
        .ok_or_else(|| err(format!("{what}: expected a Transform (data::normalize, …), got {}", d.type_name())))
}

/// The namespace of the torchvision.transforms.v2 family.
const TR: &str = "data::transforms";

/// Doc of the alias `data::name` of `data::transforms::name`.
fn alias_doc(name: &str, doc: &str) -> String {
    let example = doc.find("```rhai").map(|i| &doc[i..]).unwrap_or("");
    format!("Alias of `data::transforms::{name}` (the same function, kept for existing scripts).\n\n{example}")
}

/// A size: an int (square) or `[h, w]`, positive.
fn size_arg(d: &Dynamic, what: &str) -> RResult<(i64, i64)> {
    let s = crate::script::convert::int_list(d, what)?;
    let (h, w) = match s.as_slice() {
        [a] => (*a, *a),
        [a, b] => (*a, *b),
        _ => return Err(err(format!("{what}: size must be an int or [height, width], got {s:?}"))),
    };
    if h <= 0 || w <= 0 {
        return Err(err(format!("{what}: size must be positive, got [{h}, {w}]")));
    }
    Ok((h, w))
}

fn interp_opt(o: &Opts, default: &str, what: &str) -> RResult<Interp> {
    match o.str_or("interpolation", default)?.as_str() {
        "bilinear" => Ok(Interp::Bilinear),
        "nearest" => Ok(Interp::Nearest),
        other => Err(err(format!("{what}: interpolation must be \"bilinear\" or \"nearest\", got \"{other}\""))),
    }
}

/// An option that is a `[min, max]` pair of numbers.
fn range_opt(o: &Opts, key: &str, default: (f64, f64), what: &str) -> RResult<(f64, f64)> {
    match o.numbers_opt(key)? {
        None => Ok(default),
        Some(v) if v.len() == 2 && v[0] <= v[1] => Ok((v[0], v[1])),
        Some(v) => Err(err(format!("{what}: '{key}' must be [min, max] with min <= max, got {v:?}"))),
    }
}

fn prob(p: &Dynamic, what: &str) -> RResult<f64> {
    let p = number(p, what)?;
    if !(0.0..=1.0).contains(&p) {
        return Err(err(format!("{what}: p must be in [0, 1], got {p}")));
    }
    Ok(p)
}

fn th(t: Transform) -> RResult<TransformHandle> {
    Ok(TransformHandle(t))
}

fn register_transforms(reg: &mut Registry) {
    let doc = "Resizes an image (torchvision.transforms.v2.Resize): `size` is `[h, w]`, or an int that the smaller edge becomes (the other keeps the aspect ratio, capped by `max_size`). `#{interpolation: \"bilinear\" | \"nearest\", antialias: true, max_size}`; uint8 images are resized natively, like torchvision on the CPU. A mask (`transforms:` in data::transformed) is resized with nearest.\n\n```rhai\nlet t = data::transforms::resize([4, 6]);\nlet ds = data::transformed(data::tensor_dataset(torch::rand([2, 3, 8, 12])), #{transform: t});\nprint(ds[0][0].shape);\nprint(data::transformed(data::tensor_dataset(torch::rand([1, 3, 8, 12])), #{transform: data::transforms::resize(4, #{antialias: false})})[0][0].shape);\n```";
    let resize = |size: Dynamic, m: Map| -> RResult<TransformHandle> {
        const W: &str = "data::transforms::resize";
        let o = Opts::new(&m, W, &["interpolation", "antialias", "max_size"])?;
        let size = crate::script::convert::int_list(&size, W)?;
        if !(1..=2).contains(&size.len()) || size.iter().any(|s| *s <= 0) {
            return Err(err(format!("{W}: size must be a positive int or [height, width], got {size:?}")));
        }
        let max_size = o.i64_opt("max_size")?;
        if max_size.is_some() && size.len() != 1 {
            return Err(err(format!("{W}: max_size is only allowed when size is an int (the smaller edge)")));
        }
        th(Transform::Resize {
            size,
            interpolation: interp_opt(&o, "bilinear", W)?,
            antialias: o.bool_or("antialias", true)?,
            max_size,
        })
    };
    reg.func(TR, "resize", "size", doc, move |s: Dynamic| resize(s, Map::new()));
    reg.func(TR, "resize", "size, opts", doc, resize);

    let doc = "Crops the centre `size` (an int or `[h, w]`) of an image, zero-padding it first where the crop is larger (torchvision.transforms.v2.CenterCrop); a mask is cropped alike.\n\n```rhai\nlet x = torch::arange(16).reshape([1, 4, 4]);\nlet ds = data::transformed(data::tensor_dataset(x.unsqueeze(0)), #{transform: data::transforms::center_crop(2)});\nprint(ds[0][0]);\n```";
    reg.func(TR, "center_crop", "size", doc, |s: Dynamic| -> RResult<TransformHandle> {
        let (height, width) = size_arg(&s, "data::transforms::center_crop")?;
        th(Transform::CenterCrop { height, width })
    });

    let doc = "A random `size` crop (an int or `[h, w]`; torchvision.transforms.v2.RandomCrop) after padding by `#{padding: 0}` (an int, `[left/right, top/bottom]` or `[left, top, right, bottom]`) made by `padding_mode`: `\"constant\"` (the default, with `fill: 0`), `\"edge\"` (the edge pixel repeated), `\"reflect\"` (mirrored without repeating the edge: 2 1 | 0 1 2; padding < the image size) or `\"symmetric\"` (mirrored with it: 1 0 | 0 1 2; padding ≤ the image size); `pad_if_needed: true` pads an image smaller than the crop, by the same mode. A mask is padded and cropped alike. Seeded per sample by the dataset's and the loader's seed and the epoch.\n\n```rhai\nlet t = data::transforms::random_crop(28, #{padding: 4});\nlet ds = data::transformed(data::tensor_dataset(torch::rand([8, 1, 28, 28])), #{transform: t});\nfor b in data::loader(ds, #{batch_size: 4, seed: 0}) { print(b[0].shape); }\nlet x = torch::arange(3).reshape([1, 1, 3]);\nlet r = data::transforms::random_crop([1, 7], #{padding: [2, 0], padding_mode: \"reflect\"});\nprint(data::transformed(data::tensor_dataset(x.unsqueeze(0)), #{transform: r})[0][0]);\n```";
    let random_crop = |size: Dynamic, m: Map| -> RResult<TransformHandle> {
        const W: &str = "data::transforms::random_crop";
        let o = Opts::new(&m, W, &["padding", "pad_if_needed", "fill", "padding_mode"])?;
        let (height, width) = size_arg(&size, W)?;
        let padding = match o.ints_opt("padding")?.unwrap_or_else(|| vec![0]).as_slice() {
            [p] => [*p; 4],
            [a, b] => [*a, *b, *a, *b],
            [l, t, r, b] => [*l, *t, *r, *b],
            other => return Err(err(format!("{W}: padding must be an int or a list of 2 or 4 ints, got {other:?}"))),
        };
        if padding.iter().any(|p| *p < 0) {
            return Err(err(format!("{W}: padding must be non-negative, got {padding:?}")));
        }
        let fill = o.f64_or("fill", 0.0)?;
        let mode = o.str_or("padding_mode", "constant")?;
        let padding_mode = PadMode::parse(&mode).ok_or_else(|| {
            err(format!("{W}: padding_mode must be one of \"{}\", got \"{mode}\"", PadMode::NAMES.join("\", \"")))
        })?;
        let pad_if_needed = o.bool_or("pad_if_needed", false)?;
        th(Transform::RandomCrop { height, width, padding, pad_if_needed, fill, padding_mode })
    };
    reg.func(TR, "random_crop", "size", doc, move |s: Dynamic| random_crop(s, Map::new()));
    reg.func(TR, "random_crop", "size, opts", doc, random_crop);
    let alias = alias_doc("random_crop", doc);
    reg.func("data", "random_crop", "size", &alias, move |s: Dynamic| random_crop(s, Map::new()));
    reg.func("data", "random_crop", "size, opts", &alias, random_crop);

    let doc = "A random crop of a random area fraction `scale` and aspect ratio `ratio` (log-uniform), resized to `size` (torchvision.transforms.v2.RandomResizedCrop, ten tries then a centred crop): `#{scale: [0.08, 1.0], ratio: [3/4, 4/3], interpolation: \"bilinear\", antialias: true}`.\n\n```rhai\nlet t = data::transforms::random_resized_crop(16);\nlet ds = data::transformed(data::tensor_dataset(torch::rand([4, 3, 30, 40])), #{transform: t});\nprint(ds[0][0].shape);\n```";
    let rrc = |size: Dynamic, m: Map| -> RResult<TransformHandle> {
        const W: &str = "data::transforms::random_resized_crop";
        let o = Opts::new(&m, W, &["scale", "ratio", "interpolation", "antialias"])?;
        let (height, width) = size_arg(&size, W)?;
        let scale = range_opt(&o, "scale", (0.08, 1.0), W)?;
        let ratio = range_opt(&o, "ratio", (3.0 / 4.0, 4.0 / 3.0), W)?;
        if scale.0 <= 0.0 || ratio.0 <= 0.0 {
            return Err(err(format!("{W}: scale and ratio must be positive, got {scale:?} and {ratio:?}")));
        }
        th(Transform::RandomResizedCrop {
            height,
            width,
            scale,
            ratio,
            interpolation: interp_opt(&o, "bilinear", W)?,
            antialias: o.bool_or("antialias", true)?,
        })
    };
    reg.func(TR, "random_resized_crop", "size", doc, move |s: Dynamic| rrc(s, Map::new()));
    reg.func(TR, "random_resized_crop", "size, opts", doc, rrc);

    let doc = "Mirrors an image (and its mask) left-right with probability `p` (default 0.5; torchvision.transforms.v2.RandomHorizontalFlip); seeded per sample.\n\n```rhai\nlet t = data::transforms::random_horizontal_flip(1.0);\nlet x = torch::arange(4).reshape([1, 1, 2, 2]);\nlet ds = data::transformed(data::tensor_dataset(x), #{transform: t});\nprint(ds[0][0]);\n```";
    const HF: &str = "data::transforms::random_horizontal_flip";
    reg.func(TR, "random_horizontal_flip", "", doc, || th(Transform::RandomHorizontalFlip { p: 0.5 }));
    reg.func(TR, "random_horizontal_flip", "p", doc, |p: Dynamic| {
        th(Transform::RandomHorizontalFlip { p: prob(&p, HF)? })
    });
    let alias = alias_doc("random_horizontal_flip", doc);
    reg.func("data", "random_horizontal_flip", "", &alias, || th(Transform::RandomHorizontalFlip { p: 0.5 }));
    reg.func("data", "random_horizontal_flip", "p", &alias, |p: Dynamic| {
        th(Transform::RandomHorizontalFlip { p: prob(&p, HF)? })
    });
    let doc = "Mirrors an image (and its mask) top-bottom with probability `p` (default 0.5; torchvision.transforms.v2.RandomVerticalFlip); seeded per sample.\n\n```rhai\nlet x = torch::arange(4).reshape([1, 1, 2, 2]);\nlet ds = data::transformed(data::tensor_dataset(x), #{transform: data::transforms::random_vertical_flip(1.0)});\nprint(ds[0][0]);\n```";
    reg.func(TR, "random_vertical_flip", "", doc, || th(Transform::RandomVerticalFlip { p: 0.5 }));
    reg.func(TR, "random_vertical_flip", "p", doc, |p: Dynamic| {
        th(Transform::RandomVerticalFlip { p: prob(&p, "data::transforms::random_vertical_flip")? })
    });

    let doc = "Rotates an image counter-clockwise by an angle drawn uniformly from `degrees` (a number d for [-d, d], or `[min, max]`) about its centre, keeping its size (torchvision.transforms.v2.RandomRotation): `#{interpolation: \"nearest\" | \"bilinear\", fill: 0, expand: false, center}`. `expand: true` makes the output large enough to hold the whole rotated image (its size then depends on the angle); `center: [x, y]` rotates about that point, in pixel coordinates (x to the right from the left edge, y down from the top edge; the default is the image centre, [w / 2, h / 2]). A mask is rotated alike with nearest and filled with `fill` too (as v2 fills a `tv_tensors.Mask` with a number `fill`).\n\n```rhai\nlet t = data::transforms::random_rotation([90, 90]);\nlet x = torch::arange(4).reshape([1, 1, 2, 2]);\nprint(data::transformed(data::tensor_dataset(x), #{transform: t})[0][0]);\nlet r = data::transforms::random_rotation(15, #{interpolation: \"bilinear\"});\nprint(data::transformed(data::tensor_dataset(torch::rand([1, 3, 8, 8])), #{transform: r})[0][0].shape);\nlet e = data::transforms::random_rotation([45, 45], #{expand: true, center: [0, 0], fill: 1});\nprint(data::transformed(data::tensor_dataset(torch::zeros([1, 1, 4, 6])), #{transform: e})[0][0].shape);\n```";
    let rot = |d: Dynamic, m: Map| -> RResult<TransformHandle> {
        const W: &str = "data::transforms::random_rotation";
        let o = Opts::new(&m, W, &["interpolation", "fill", "expand", "center"])?;
        let center = match o.numbers_opt("center")?.as_deref() {
            None => None,
            Some([x, y]) if x.is_finite() && y.is_finite() => Some((*x, *y)),
            Some(v) => return Err(err(format!("{W}: center must be [x, y] (finite pixel coordinates), got {v:?}"))),
        };
        let degrees = if d.is_int() || d.is_float() {
            let v = number(&d, W)?;
            if v < 0.0 {
                return Err(err(format!("{W}: if degrees is a single number, it must be positive, got {v}")));
            }
            (-v, v)
        } else {
            match numbers(&d, W)?.as_slice() {
                [a, b] if a <= b => (*a, *b),
                other => return Err(err(format!("{W}: degrees must be a number or [min, max], got {other:?}"))),
            }
        };
        th(Transform::RandomRotation {
            degrees,
            interpolation: interp_opt(&o, "nearest", W)?,
            fill: o.f64_or("fill", 0.0)?,
            expand: o.bool_or("expand", false)?,
            center,
        })
    };
    reg.func(TR, "random_rotation", "degrees", doc, move |d: Dynamic| rot(d, Map::new()));
    reg.func(TR, "random_rotation", "degrees, opts", doc, rot);

    let doc = "Randomly changes brightness, contrast, saturation and hue (torchvision.transforms.v2.ColorJitter): `#{brightness, contrast, saturation, hue}`, each a number x for [max(0, 1 - x), 1 + x] (hue: [-x, x], x ≤ 0.5) or `[min, max]`; the factors are drawn per sample and the four adjustments applied in a random order. Images of 1 or 3 channels; masks are left alone.\n\n```rhai\nlet t = data::transforms::color_jitter(#{brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1});\nlet ds = data::transformed(data::tensor_dataset(torch::rand([2, 3, 4, 4])), #{transform: t});\nprint(ds[0][0].shape);\n```";
    reg.func(TR, "color_jitter", "opts", doc, |m: Map| -> RResult<TransformHandle> {
        const W: &str = "data::transforms::color_jitter";
        let o = Opts::new(&m, W, &["brightness", "contrast", "saturation", "hue"])?;
        let range = |key: &str, center: f64, lo: f64, hi: f64| -> RResult<Option<(f64, f64)>> {
            let (a, b) = match o.numbers_opt(key)?.as_deref() {
                None => return Ok(None),
                Some([x]) if *x < 0.0 => {
                    return Err(err(format!("{W}: if {key} is a single number, it must be non negative, got {x}")))
                }
                Some([x]) if center == 1.0 => ((center - x).max(0.0), center + x),
                Some([x]) => (center - x, center + x),
                Some([a, b]) => (*a, *b),
                Some(v) => return Err(err(format!("{W}: {key} must be a number or [min, max], got {v:?}"))),
            };
            if !(lo <= a && a <= b && b <= hi) {
                return Err(err(format!(
                    "{W}: {key} values should be between {lo} and {hi} and increasing, got [{a}, {b}]"
                )));
            }
            Ok(if a == center && b == center { None } else { Some((a, b)) })
        };
        th(Transform::ColorJitter {
            brightness: range("brightness", 1.0, 0.0, f64::INFINITY)?,
            contrast: range("contrast", 1.0, 0.0, f64::INFINITY)?,
            saturation: range("saturation", 1.0, 0.0, f64::INFINITY)?,
            hue: range("hue", 0.0, -0.5, 0.5)?,
        })
    });

    let doc = "Normalizes a float image per channel (dim -3): `(x - mean[c]) / std[c]` (torchvision.transforms.v2.Normalize); `mean` / `std` are numbers or arrays with one value per channel. Masks are left alone.\n\n```rhai\nlet t = data::transforms::normalize([0.1307], [0.3081]);\nlet ds = data::transformed(data::tensor_dataset(torch::rand([4, 1, 2, 2]), torch::arange(4)), #{transform: t});\nprint(ds[0][0].shape);\n```";
    let normalize = |m: Dynamic, s: Dynamic| -> RResult<TransformHandle> {
        let nums = |d: &Dynamic| -> RResult<Vec<f64>> {
            if d.is_int() || d.is_float() {
                Ok(vec![number(d, "data::transforms::normalize")?])
            } else {
                numbers(d, "data::transforms::normalize")
            }
        };
        th(Transform::Normalize { mean: nums(&m)?, std: nums(&s)? })
    };
    reg.func(TR, "normalize", "mean, std", doc, normalize);
    reg.func("data", "normalize", "mean, std", &alias_doc("normalize", doc), normalize);

    let doc = "Class indices to one-hot int64 vectors of `num_classes` (F.one_hot); usually a `target_transform`.\n\n```rhai\nlet ds = data::transformed(data::blobs(#{n: 6, centers: 3}), #{target_transform: data::one_hot(3)});\nprint(ds[1][1]);\n```";
    reg.func("data", "one_hot", "num_classes", doc, |n: INT| -> RResult<TransformHandle> {
        if n <= 0 {
            return Err(err(format!("data::one_hot: num_classes must be positive, got {n}")));
        }
        th(Transform::OneHot { num_classes: n })
    });
    let doc = "Casts an image to `dtype` (torchvision.transforms.v2.ToDtype); with `#{scale: true}`, integer images become floats in [0, 1] (uint8: × 1/255) and floats become integers (× (max + 1 - 1e-3)). Masks are left alone.\n\n```rhai\nlet t = data::transforms::to_dtype(\"float32\", #{scale: true});\nlet ds = data::transformed(data::tensor_dataset(torch::full([2, 3], 255).to(\"uint8\")), #{transform: t});\nprint(ds[0][0]);\n```";
    let to_dtype = |d: ImmutableString, m: Map| -> RResult<TransformHandle> {
        let o = Opts::new(&m, "data::transforms::to_dtype", &["scale"])?;
        th(Transform::ToDtype { kind: parse_dtype(&d).or_script()?, scale: o.bool_or("scale", false)? })
    };
    reg.func(TR, "to_dtype", "dtype", doc, move |d: ImmutableString| to_dtype(d, Map::new()));
    reg.func(TR, "to_dtype", "dtype, opts", doc, to_dtype);
    let alias = alias_doc("to_dtype", doc);
    reg.func("data", "to_dtype", "dtype", &alias, move |d: ImmutableString| to_dtype(d, Map::new()));
    reg.func("data", "to_dtype", "dtype, opts", &alias, to_dtype);
    let doc = "Casts an image to float32, scaling integer images to [0, 1] (uint8: × 1/255): torchvision.transforms.v2.ToDtype(torch.float32, scale=True), the same transform as `to_dtype(\"float32\", #{scale: true})`; float images are only cast. Masks are left alone.\n\n```rhai\nlet ds = data::transformed(data::tensor_dataset(torch::full([2, 3], 51).to(\"uint8\")), #{transform: data::transforms::to_float()});\nprint(ds[0][0]);\n```";
    reg.func(TR, "to_float", "", doc, || th(Transform::ToDtype { kind: tch::Kind::Float, scale: true }));
    let doc = "Several transforms one after the other (torchvision.transforms.v2.Compose).\n\n```rhai\nlet t = data::transforms::compose([data::transforms::to_dtype(\"float32\", #{scale: true}), data::transforms::normalize(0.5, 0.5)]);\nlet ds = data::transformed(data::tensor_dataset(torch::zeros([2, 1, 2, 2]).to(\"uint8\")), #{transform: t});\nprint(ds[0][0]);\n```";
    let compose = |a: Array| -> RResult<TransformHandle> {
        th(Transform::Compose(a.iter().map(|v| transform_of(v, "data::transforms::compose")).collect::<RResult<_>>()?))
    };
    reg.func(TR, "compose", "transforms", doc, compose);
    reg.func("data", "compose", "transforms", &alias_doc("compose", doc), compose);
    let doc = "A dataset whose samples go through transforms, one sample at a time on the loader's workers, before they are collated into batches: `#{transform, target_transform, transforms, keys: #{name: transform}, seed: 0}`. `transform` applies to element 0 of array samples (or to a one-tensor sample), `target_transform` to element 1, `transforms` to elements 0 and 1 jointly as an image and its mask (as torchvision v2 does with a `tv_tensors.Mask`: geometric transforms move the mask too, with nearest interpolation; normalize and dtype casts leave it alone), `keys` to fields of map samples. Random transforms are seeded by `seed`, the loader's seed, the epoch and the sample's index: reproducible, whatever `num_workers`.\n\n```rhai\nlet base = data::tensor_dataset(torch::rand([16, 3, 8, 8]), torch::arange(16) % 2);\nlet ds = data::transformed(base, #{\n    transform: data::compose([data::random_crop(6), data::random_horizontal_flip()]),\n    target_transform: data::one_hot(2),\n});\nfor b in data::loader(ds, #{batch_size: 8, num_workers: 2, seed: 1}) {\n    print(`${b[0].shape} ${b[1].shape}`);\n}\n```";
    reg.func("data", "transformed", "ds, opts", doc, |d: DatasetHandle, m: Map| -> RResult<DatasetHandle> {
        const W: &str = "data::transformed";
        let o = Opts::new(&m, W, &["transform", "target_transform", "transforms", "keys", "seed"])?;
        let mut ts = Vec::new();
        if let Some(t) = o.get("transforms") {
            ts.push((Field::Joint, transform_of(t, &format!("{W}: option 'transforms'"))?));
        }
        if let Some(t) = o.get("transform") {
            ts.push((Field::Input, transform_of(t, &format!("{W}: option 'transform'"))?));
        }
        if let Some(t) = o.get("target_transform") {
            ts.push((Field::Target, transform_of(t, &format!("{W}: option 'target_transform'"))?));
        }
        if let Some(k) = o.get("keys") {
            let km =
                k.read_lock::<Map>().ok_or_else(|| err(format!("{W}: 'keys' must be a map of key → Transform")))?;
            for (name, t) in km.iter() {
                ts.push((Field::Key(name.to_string()), transform_of(t, &format!("{W}: keys.{name}"))?));
            }
        }
        Ok(ds(Transformed::new(d.0, ts, o.i64_or("seed", 0)? as u64)))
    });
    let doc = "What the transform is.\n\n```rhai\nprint(data::one_hot(3).to_string());\n```";
    reg.func("", "to_string", "self", doc, |t: &mut TransformHandle| format!("{:?}", t.0));
    reg.func("", "to_debug", "self", doc, |t: &mut TransformHandle| format!("{:?}", t.0));
}

fn iterable_len(d: &IterableHandle) -> RResult<INT> {
    d.0.len().map(|n| n as INT).ok_or_else(|| err(format!("len: {} has no length", d.0.describe())))
}

fn register_iterable(reg: &mut Registry) {
    let doc = "An iterable dataset (torch IterableDataset): `#{iter, len}`. `iter()` starts a pass and returns an array of samples, or a generator: a function called again and again for the next sample until it returns `()`. `len` (optional, an int) is the number of samples of a pass: a pass stops after it, and the loader has a length. A loader over it has no sampler (`shuffle: true` is an error: shuffle inside `iter`), and batches samples as they come; under DDP, rank `r` of `w` keeps elements `r, r + w, …` (no padding). Its closures run on the script's thread, so loaders over it ignore `num_workers`. Without `len`, the Trainer's epoch ends with the stream, or at `limit_train_batches` / `max_steps`.\n\n```rhai\nlet ds = data::iterable(#{\n    iter: || {\n        let i = 0;\n        || { i += 1; if i > 5 { () } else { [torch::full([2], i), i % 2] } }\n    },\n});\nfor batch in data::loader(ds, #{batch_size: 2}) {\n    print(batch[0].shape);\n}\nlet sized = data::iterable(#{iter: || [1, 2, 3, 4, 5], len: 4});\nprint(data::loader(sized, #{batch_size: 2}).len());\n```";
    reg.volatile("data", "iterable", "fns", doc, |ctx: NativeCallContext, m: Map| -> RResult<IterableHandle> {
        const W: &str = "data::iterable";
        let o = Opts::new(&m, W, &["iter", "len"])?;
        let iter = o
            .get("iter")
            .ok_or_else(|| err(format!("{W}: missing 'iter' (a function starting a pass)")))?
            .read_lock::<FnPtr>()
            .map(|f| f.clone())
            .ok_or_else(|| {
                err(format!("{W}: 'iter' must be a function returning an array or a generator, e.g. || [1, 2, 3]"))
            })?;
        let len = o.i64_opt("len")?.map(|n| to_usize(n, W, "len")).transpose()?;
        Ok(IterableHandle(Arc::new(ScriptIterable::new(&ctx, len, iter))))
    });
    let doc = "Batches of an iterable dataset: the options of `data::loader` over a Dataset, but `shuffle` and `sampler` are errors (a stream has no indices). Batch `b` is assembled from the next `batch_size` samples; with `num_workers` threads (Rust-side iterables), batch `b` is made by worker `b % num_workers`, so the batches are the same for any `num_workers`.\n\n```rhai\nlet ds = data::iterable(#{iter: || [[1.0, 0], [2.0, 1], [3.0, 0]]});\nfor b in data::loader(ds, #{batch_size: 2, drop_last: true}) { print(b); }\n```";
    reg.volatile("data", "loader", "dataset", doc, |d: IterableHandle| iterable_loader(d, &Map::new()));
    reg.volatile("data", "loader", "dataset, opts", doc, |d: IterableHandle, m: Map| iterable_loader(d, &m));
    let doc = "Samples per pass of an iterable dataset; an error when it has no length (as Python's `len` of an IterableDataset without `__len__`).\n\n```rhai\nprint(data::iterable(#{iter: || [1, 2, 3], len: 3}).len());\n```";
    reg.func("", "len", "self", doc, |d: &mut IterableHandle| iterable_len(d));
    let doc = "What the iterable dataset is.\n\n```rhai\nprint(data::iterable(#{iter: || [1]}).to_string());\n```";
    reg.func("", "to_string", "self", doc, |d: &mut IterableHandle| d.0.describe());
    reg.func("", "to_debug", "self", doc, |d: &mut IterableHandle| d.0.describe());
}

fn vocab_options(o: &Opts, what: &str) -> RResult<VocabOptions> {
    let specials = match o.get("specials") {
        None => Vec::new(),
        Some(v) => v
            .read_lock::<Array>()
            .ok_or_else(|| err(format!("{what}: 'specials' must be an array of strings")))?
            .iter()
            .map(|s| {
                s.clone()
                    .into_immutable_string()
                    .map(|s| s.to_string())
                    .map_err(|t| err(format!("{what}: 'specials' must be an array of strings, found {t}")))
            })
            .collect::<RResult<_>>()?,
    };
    let min_freq = if o.has("min_freq") { opt_usize(o, "min_freq", 1, what)? } else { 1 };
    if min_freq == 0 {
        return Err(err(format!("{what}: min_freq must be at least 1, got 0")));
    }
    Ok(VocabOptions { specials, unk_token: o.str_opt("unk_token")?, min_freq })
}

fn tokenizer(corpus: &str, m: &Map, word: bool) -> RResult<TokenizerHandle> {
    let (what, keys): (&str, &[&str]) = if word {
        ("data::word_tokenizer", &["lower", "min_freq", "specials", "unk_token"])
    } else {
        ("data::char_tokenizer", &["specials", "unk_token"])
    };
    let o = Opts::new(m, what, keys)?;
    let level = if word { Level::Word { lower: o.bool_or("lower", false)? } } else { Level::Char };
    Ok(TokenizerHandle(Arc::new(Tokenizer::build(corpus, level, &vocab_options(&o, what)?).or_script()?)))
}

fn token_ids(d: &Dynamic, what: &str) -> RResult<Vec<i64>> {
    if let Some(t) = d.read_lock::<Tensor>() {
        if crate::tensor::options::is_floating(t.kind()) {
            return Err(err(format!("{what}: token ids must be integers, got a float tensor")));
        }
        let t = t.f_to_kind(tch::Kind::Int64).or_script()?.f_flatten(0, -1).or_script()?;
        return Vec::<i64>::try_from(&t).map_err(|e| err(format!("{what}: {e}")));
    }
    if let Some(a) = d.read_lock::<Array>() {
        return a.iter().map(|v| v.as_int().map_err(|t| err(format!("{what}: ids must be ints, found {t}")))).collect();
    }
    Err(err(format!("{what}: expected a tensor or an array of token ids, got {}", d.type_name())))
}

fn text_windows(ids: &Tensor, m: &Map) -> RResult<DatasetHandle> {
    const W: &str = "data::text_windows";
    let o = Opts::new(m, W, &["seq_len", "stride"])?;
    let seq_len = opt_usize(&o, "seq_len", 64, W)?;
    let stride = o.i64_opt("stride")?.map(|s| to_usize(s, W, "stride")).transpose()?;
    Ok(ds(text::TextDataset::windows(ids, seq_len, stride, None, W).or_script()?))
}

fn register_tokenizers(reg: &mut Registry) {
    let doc = "A Hugging Face tokenizer read from its `tokenizer.json` (BPE, WordPiece, Unigram or WordLevel with its normalizer, pre-tokenizer, post-processor and decoder; the `tokenizers` crate, the Rust core of the Python package). `encode` adds the post-processor's special tokens and `decode` skips special tokens, as Python's `Tokenizer.encode` / `decode` do by default.\n\n```rhai\nlet p = data::temp_dir() + \"/tokenizer.json\";\ndata::write_text(p, `{\"version\": \"1.0\", \"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"post_processor\": null, \"decoder\": null, \"model\": {\"type\": \"WordLevel\", \"vocab\": {\"[UNK]\": 0, \"hello\": 1, \"world\": 2}, \"unk_token\": \"[UNK]\"}}`);\nlet tok = data::tokenizer(p);\nlet ids = tok.encode(\"hello big world\");\nprint(ids);\nprint(tok.decode(ids));\nprint(tok.vocab_size);\n```";
    reg.func("data", "tokenizer", "path", doc, |p: ImmutableString| -> RResult<TokenizerHandle> {
        Ok(TokenizerHandle(Arc::new(HfTokenizer::load(Path::new(p.as_str())).or_script()?)))
    });
    let doc = "The contents of a UTF-8 text file as a string (invalid UTF-8 is an error naming the byte).\n\n```rhai\nlet p = data::temp_dir() + \"/r.txt\";\ndata::write_text(p, \"héllo\");\nprint(data::read_text(p));\n```";
    reg.func("data", "read_text", "path", doc, |p: ImmutableString| -> RResult<String> {
        text::read_text(Path::new(p.as_str()), "data::read_text").or_script()
    });
    let doc = "A character-level tokenizer built from a corpus: every distinct character is a token, ids in code-point order after the `#{specials: [...]}` (which come first); `unk_token` (one of the specials) stands for characters outside the vocabulary, which are an error otherwise. Without specials, the ids are those of `data::text_file`'s char mode.\n\n```rhai\nlet tok = data::char_tokenizer(\"hello world\");\nprint(tok.vocab_size);\nlet ids = tok.encode(\"hello\");\nprint(ids);\nprint(tok.decode(ids));\n```";
    reg.func("data", "char_tokenizer", "text", doc, |t: ImmutableString| tokenizer(&t, &Map::new(), false));
    reg.func("data", "char_tokenizer", "text, opts", doc, |t: ImmutableString, m: Map| tokenizer(&t, &m, false));
    let doc = "A word-level tokenizer built from a corpus: `#{lower: false, min_freq: 1, specials: [], unk_token}`. Words are runs of non-whitespace, split at punctuation (each punctuation character is a token, as BERT's basic tokenizer splits). The vocabulary is the specials, then the words seen at least `min_freq` times by decreasing count, ties alphabetical (torchtext's build_vocab_from_iterator order). `unk_token` (one of the specials) stands for words outside the vocabulary, which are an error otherwise. `decode` joins words with single spaces.\n\n```rhai\nlet tok = data::word_tokenizer(\"the cat sat. The dog sat!\", #{lower: true, specials: [\"<unk>\"], unk_token: \"<unk>\"});\nprint(tok.vocab);\nprint(tok.encode(\"the bird sat\"));\nprint(tok.decode([1, 2]));\n```";
    reg.func("data", "word_tokenizer", "text", doc, |t: ImmutableString| tokenizer(&t, &Map::new(), true));
    reg.func("data", "word_tokenizer", "text, opts", doc, |t: ImmutableString, m: Map| tokenizer(&t, &m, true));
    let doc = "The token ids of `text`, a 1-D int64 tensor.\n\n```rhai\nprint(data::char_tokenizer(\"abc\").encode(\"cab\"));\n```";
    reg.func("", "encode", "self, text", doc, |t: &mut TokenizerHandle, s: ImmutableString| -> RResult<Tensor> {
        let ids = t.0.encode(&s).or_script()?;
        Ok(Tensor::new(tch::Tensor::f_from_slice(&ids).or_script()?))
    });
    let doc = "The text of token ids (a tensor or an array of ints).\n\n```rhai\nprint(data::char_tokenizer(\"abc\").decode([2, 0, 1]));\n```";
    reg.func("", "decode", "self, ids", doc, |t: &mut TokenizerHandle, ids: Dynamic| -> RResult<String> {
        t.0.decode(&token_ids(&ids, "decode")?).or_script()
    });
    let doc = "Number of tokens in the vocabulary.\n\n```rhai\nprint(data::char_tokenizer(\"aab\").vocab_size);\n```";
    reg.getter("vocab_size", doc, |t: &mut TokenizerHandle| t.0.vocab_size() as INT);
    let doc = "The tokens, by id.\n\n```rhai\nprint(data::word_tokenizer(\"b a b\").vocab);\n```";
    reg.getter("vocab", doc, |t: &mut TokenizerHandle| -> Array {
        t.0.vocab().into_iter().map(Dynamic::from).collect()
    });
    let doc = "The id of a token, or `()` when it is not in the vocabulary.\n\n```rhai\nprint(data::char_tokenizer(\"abc\").token_to_id(\"b\"));\n```";
    reg.func("", "token_to_id", "self, token", doc, |t: &mut TokenizerHandle, s: ImmutableString| -> Dynamic {
        t.0.token_to_id(&s).map_or(Dynamic::UNIT, |i| Dynamic::from_int(i as INT))
    });
    let doc = "The token of an id, or `()` when the id is out of range.\n\n```rhai\nprint(data::char_tokenizer(\"abc\").id_to_token(2));\n```";
    reg.func("", "id_to_token", "self, id", doc, |t: &mut TokenizerHandle, i: INT| -> Dynamic {
        usize::try_from(i).ok().and_then(|i| t.0.id_to_token(i)).map_or(Dynamic::UNIT, Dynamic::from)
    });
    let doc = "What the tokenizer is.\n\n```rhai\nprint(data::char_tokenizer(\"ab\").to_string());\n```";
    reg.func("", "to_string", "self", doc, |t: &mut TokenizerHandle| t.0.describe());
    reg.func("", "to_debug", "self", doc, |t: &mut TokenizerHandle| t.0.describe());
    let doc = "A language-model dataset over a 1-D tensor of token ids (a tokenizer's output): `#{seq_len: 64, stride: seq_len}`. Sample `i` is `[x, y]`, int64 windows of `seq_len` tokens starting at `i * stride`, `y` shifted by one (next-token targets).\n\n```rhai\nlet tok = data::word_tokenizer(\"a b c a b c a b\");\nlet ds = data::text_windows(tok.encode(\"a b c a b c a b\"), #{seq_len: 3, stride: 2});\nprint(ds.len());\nprint(ds[1]);\n```";
    reg.func("data", "text_windows", "ids", doc, |t: Tensor| text_windows(&t, &Map::new()));
    reg.func("data", "text_windows", "ids, opts", doc, |t: Tensor, m: Map| text_windows(&t, &m));
}
