//! Iterable datasets: batches as the samples come, sharded over workers and ranks with no
//! duplicates and no losses, epochs without a length ended by the stream, limit_train_batches or
//! max_steps.
use crate::common::{eval, eval_bool, lt_in, stderr, stdout, temp_dir};
use lt::data::iterable::{IterableDataset, Samples};
use lt::data::{Batch, DataLoader, LoaderOptions, Sampler};
use std::sync::Arc;

/// 0, 1, 2, … (`n` of them, or forever); `fail_at` yields an error there, `panic_at` panics.
struct Counting {
    n: Option<usize>,
    len: Option<usize>,
    fail_at: Option<usize>,
    panic_at: Option<usize>,
}

fn counting(n: Option<usize>) -> Counting {
    Counting { n, len: None, fail_at: None, panic_at: None }
}

impl IterableDataset for Counting {
    fn len(&self) -> Option<usize> {
        self.len
    }
    fn iter(&self, _epoch: u64) -> lt::data::Result<Samples> {
        let (fail, panic) = (self.fail_at, self.panic_at);
        let it = (0..).take(self.n.unwrap_or(usize::MAX)).map(move |k: usize| {
            if panic == Some(k) {
                panic!("sample {k} exploded");
            }
            if fail == Some(k) {
                return Err(lt::data::DataError(format!("bad record {k}")));
            }
            Ok(Batch::Int(k as i64))
        });
        Ok(Box::new(it))
    }
    fn describe(&self) -> String {
        "Counting".into()
    }
}

fn opts(batch_size: usize, workers: usize, drop_last: bool) -> LoaderOptions {
    LoaderOptions { batch_size, num_workers: workers, drop_last, ..Default::default() }
}

fn ints(b: &Batch) -> Vec<i64> {
    match b {
        Batch::Tensor(t) => Vec::<i64>::try_from(t).unwrap(),
        other => panic!("expected a tensor, got {other:?}"),
    }
}

fn batches(l: &DataLoader) -> Vec<Vec<i64>> {
    l.iter_epoch(0).map(|b| ints(&b.unwrap())).collect()
}

#[test]
fn batches_do_not_depend_on_workers_and_cover_the_stream_once() {
    let ds: Arc<dyn IterableDataset> = Arc::new(counting(Some(23)));
    let want: Vec<Vec<i64>> = (0..23).collect::<Vec<i64>>().chunks(4).map(|c| c.to_vec()).collect();
    for workers in [0, 1, 2, 3, 8] {
        let l = DataLoader::iterable(ds.clone(), opts(4, workers, false)).unwrap();
        assert_eq!(l.len(), None, "no length: no len()");
        assert_eq!(batches(&l), want, "num_workers={workers}");
        let l = DataLoader::iterable(ds.clone(), opts(4, workers, true)).unwrap();
        assert_eq!(batches(&l), want[..5].to_vec(), "drop_last, num_workers={workers}");
    }
}

#[test]
fn ranks_and_workers_partition_the_stream_without_duplicates() {
    let ds: Arc<dyn IterableDataset> = Arc::new(counting(Some(21)));
    for workers in [0, 2] {
        let mut seen = Vec::new();
        for rank in 0..2 {
            let mut l = DataLoader::iterable(ds.clone(), opts(3, workers, false)).unwrap();
            l.set_distributed(rank, 2).unwrap();
            let got: Vec<i64> = batches(&l).concat();
            let want: Vec<i64> = (rank as i64..21).step_by(2).collect();
            assert_eq!(got, want, "rank {rank}, num_workers={workers}: every second element");
            seen.extend(got);
        }
        seen.sort();
        assert_eq!(seen, (0..21).collect::<Vec<_>>(), "num_workers={workers}: no element lost or repeated");
    }
    let mut l = DataLoader::iterable(ds, opts(3, 0, false)).unwrap();
    assert!(l.set_distributed(2, 2).unwrap_err().to_string().contains("invalid rank 2"));
}

#[test]
fn a_length_bounds_the_pass_and_gives_the_loader_a_len() {
    let ds = Counting { n: None, len: Some(10), fail_at: None, panic_at: None };
    let ds: Arc<dyn IterableDataset> = Arc::new(ds);
    let mut l = DataLoader::iterable(ds.clone(), opts(4, 2, false)).unwrap();
    assert_eq!(l.len(), Some(3));
    assert_eq!(batches(&l), vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
    l.set_distributed(1, 3).unwrap(); // elements 1, 4, 7
    assert_eq!(l.len(), Some(1));
    assert_eq!(batches(&l), vec![vec![1, 4, 7]]);
    let l = DataLoader::iterable(ds, opts(4, 0, true)).unwrap();
    assert_eq!((l.len(), batches(&l).len()), (Some(2), 2));
}

#[test]
fn an_endless_stream_stops_when_the_reader_does() {
    let ds: Arc<dyn IterableDataset> = Arc::new(counting(None));
    for workers in [0, 3] {
        let l = DataLoader::iterable(ds.clone(), opts(5, workers, false)).unwrap();
        let got: Vec<Vec<i64>> = l.iter_epoch(0).take(4).map(|b| ints(&b.unwrap())).collect();
        assert_eq!(got.concat(), (0..20).collect::<Vec<_>>());
        // dropping the iterator here stops the workers (no hang)
    }
}

#[test]
fn stream_errors_and_panics_end_the_pass_with_a_message() {
    for workers in [0, 2] {
        let ds = Counting { n: Some(30), len: None, fail_at: Some(9), panic_at: None };
        let l = DataLoader::iterable(Arc::new(ds), opts(4, workers, false)).unwrap();
        let got: Vec<_> = l.iter_epoch(0).collect();
        assert_eq!(got.len(), 3, "two good batches then the error, num_workers={workers}");
        let e = got[2].as_ref().unwrap_err().to_string();
        assert!(e.contains("sample 9: bad record 9"), "{e}");
        let ds = Counting { n: Some(30), len: None, fail_at: None, panic_at: Some(5) };
        let l = DataLoader::iterable(Arc::new(ds), opts(4, workers, false)).unwrap();
        let got: Vec<_> = l.iter_epoch(0).collect();
        let e = got.last().unwrap().as_ref().unwrap_err().to_string();
        assert!(e.contains("sample 5 exploded"), "{e}");
    }
    let ds: Arc<dyn IterableDataset> = Arc::new(counting(Some(3)));
    let shuffled = LoaderOptions { shuffle: true, ..opts(1, 0, false) };
    let e = DataLoader::iterable(ds.clone(), shuffled).unwrap_err().to_string();
    assert!(e.contains("shuffle is not possible over an iterable dataset"), "{e}");
    let sampled = LoaderOptions { sampler: Some(Sampler::Sequential), ..opts(1, 0, false) };
    assert!(DataLoader::iterable(ds, sampled).unwrap_err().to_string().contains("a sampler is not possible"));
}

#[test]
fn script_iterables_generators_and_arrays() {
    assert!(eval_bool(
        r#"
        let gen = data::iterable(#{ iter: || { let i = 0; || { i += 1; if i > 7 { () } else { [torch::full([2], i), i] } } } });
        let l = data::loader(gen, #{batch_size: 3});
        let seen = [];
        for pass in 0..2 {
            for b in l { if b[0].shape[1] != 2 { throw "shape"; } seen += b[1].to_array(); }
        }
        if seen != [1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4, 5, 6, 7] { throw `seen ${seen}`; }
        let arr = data::iterable(#{ iter: || [#{x: 1.5}, #{x: 2.5}, #{x: 3.5}], len: 2 });
        let l2 = data::loader(arr, #{batch_size: 1, num_workers: 2});
        let n = 0;
        for b in l2 { n += 1; }
        n == 2 && l2.len() == 2 && arr.len() == 2 && l2.dataset.len() == 2
        "#
    ));
    let cases = [
        ("data::loader(data::iterable(#{iter: || [1]}), #{shuffle: true})", "shuffle is not possible over an iterable"),
        ("data::loader(data::iterable(#{iter: || [1]})).len()", "has no length"),
        ("data::iterable(#{iter: || [1]}).len()", "has no length"),
        ("data::iterable(#{iter: 3})", "'iter' must be a function"),
        ("data::iterable(#{iter: || [1], size: 3})", "len"),
        ("data::iterable(#{len: 3})", "missing 'iter'"),
        ("let n = 0; for b in data::loader(data::iterable(#{iter: || 5})) { n += 1; } n", "iter() returned i64"),
        (
            "let n = 0; for b in data::loader(data::iterable(#{iter: || [1, data::blobs()]})) { n += 1; } n",
            "element 1 is a value of type",
        ),
        (
            "let n = 0; for b in data::loader(data::iterable(#{iter: || { || { throw \"boom\"; } }})) { n += 1; } n",
            "boom",
        ),
        (
            "let n = 0; for b in data::loader(data::iterable(#{iter: || [1, 2.0]}), #{batch_size: 2}) { n += 1; } n",
            "inconsistent samples",
        ),
    ];
    for (src, want) in cases {
        let e = eval(src).map(|v| v.to_string()).expect_err(src);
        assert!(e.contains(want), "{src}: missing {want:?} in {e}");
    }
}

const MODEL: &str = r#"
fn init(h) { this.w = torch::zeros([1], #{requires_grad: true}); this.seen = []; }
fn configure_optimizers() { optim::sgd([this.w], #{lr: 0.1}) }
fn training_step(b, i) { this.seen += b.to_array(); (this.w * b.to("float32")).sum() }
fn on_train_end() { print(`rank ${this.global_rank} steps ${this.global_step} seen ${this.seen}`); }
"#;

fn fit(dir: &std::path::Path, trainer: &str, stream: &str, extra: &[&str]) -> String {
    let src = format!(
        "fn trainer() {{ #{{ {trainer}, enable_model_summary: false, logger: false, enable_checkpointing: false }} }}\n\
         fn train_dataloader() {{ data::loader(data::iterable(#{{ iter: {stream} }}), #{{ batch_size: 2 }}) }}\n{}",
        MODEL
    );
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let out = lt_in(dir, &[&["fit", "m.rhai"][..], extra].concat());
    assert!(out.status.success(), "{trainer} {stream}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn unsized_epochs_end_with_the_stream_limit_train_batches_or_max_steps() {
    let dir = temp_dir("iterable_fit");
    let finite = "|| { let i = 0; || { i += 1; if i > 5 { () } else { i } } }";
    let endless = "|| { let i = 0; || { i += 1; i } }";
    // the stream ends each epoch: 3 batches (the last one partial), 2 epochs
    let o = fit(&dir, "max_epochs: 2, enable_progress_bar: false", finite, &[]);
    assert!(o.contains("steps 6 seen [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]"), "{o}");
    // an endless stream: max_steps ends the fit, limit_train_batches each epoch
    let o = fit(&dir, "max_steps: 4, enable_progress_bar: false", endless, &[]);
    assert!(o.contains("steps 4 seen [1, 2, 3, 4, 5, 6, 7, 8]"), "{o}");
    let o = fit(&dir, "max_epochs: 2, limit_train_batches: 2, enable_progress_bar: false", endless, &[]);
    assert!(o.contains("steps 4 seen [1, 2, 3, 4, 1, 2, 3, 4]"), "{o}");
}

#[test]
fn two_ddp_ranks_share_an_iterable_without_duplicates() {
    let dir = temp_dir("iterable_ddp");
    let stream = "|| { let i = 0; || { i += 1; if i > 8 { () } else { i } } }";
    let o = fit(&dir, "max_epochs: 1, enable_progress_bar: false", stream, &["--devices", "2", "--strategy", "ddp"]);
    assert!(o.contains("rank 0 steps 2 seen [1, 3, 5, 7]"), "{o}");
    assert!(o.contains("rank 1 steps 2 seen [2, 4, 6, 8]"), "{o}");
}

/// An `.npy` header (format 1.0) for an array of little-endian float32 of `shape` (a Python
/// tuple, as NumPy writes it), padded to 64 bytes.
fn npy_header(shape: &str) -> Vec<u8> {
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

#[test]
fn a_lazy_npy_reads_only_the_rows_asked_for() {
    use std::os::unix::fs::FileExt;
    let dir = temp_dir("npy_lazy");
    // 2^28 rows of 4 float32: a 4 GiB array in a sparse file (no disk used, nothing to load)
    let rows: u64 = 1 << 28;
    let p = dir.join("big.npy");
    let header = npy_header(&format!("({rows}, 4)"));
    let f = std::fs::File::create(&p).unwrap();
    f.write_all_at(&header, 0).unwrap();
    f.set_len(header.len() as u64 + rows * 16).unwrap();
    let row = |i: u64, v: [f32; 4]| {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        f.write_all_at(&bytes, header.len() as u64 + i * 16).unwrap();
    };
    row(3, [1.0, 2.0, 3.0, 4.0]);
    row(rows - 1, [-1.5, 0.0, 7.0, 9.5]);
    drop(f);
    let src = format!(
        r#"
        let ds = data::npy("{p}", #{{mmap_mode: "r"}});
        if ds.len() != {rows} {{ throw `len ${{ds.len()}}`; }}
        if ds[3][0].to_array() != [1.0, 2.0, 3.0, 4.0] {{ throw `row 3 ${{ds[3]}}`; }}
        if ds[-1][0].to_array() != [-1.5, 0.0, 7.0, 9.5] {{ throw `last row ${{ds[-1]}}`; }}
        let b = [];
        for batch in data::loader(data::subset(ds, [{last}, 3, 0]), #{{batch_size: 3, num_workers: 2}}) {{ b.push(batch[0]); }}
        b.len() == 1 && b[0].shape == [3, 4] && b[0].sum().item() == 25.0
        "#,
        p = p.display(),
        last = rows - 1
    );
    assert!(eval_bool(&src));
    // a truncated file, a bad magic, a 0-d array and an unknown mode are refused with reasons
    let short = dir.join("short.npy");
    let mut bytes = npy_header("(10, 4)");
    bytes.extend(vec![0u8; 100]);
    std::fs::write(&short, &bytes).unwrap();
    let bad = dir.join("bad.npy");
    std::fs::write(&bad, b"\x93NUMPX\x01\x00\x10\x00{}").unwrap();
    let scalar = dir.join("scalar.npy");
    let mut bytes = npy_header("()");
    bytes.extend_from_slice(&1f32.to_le_bytes());
    std::fs::write(&scalar, &bytes).unwrap();
    let cases = [
        (
            format!(r#"data::npy("{}", #{{mmap_mode: "r"}})"#, short.display()),
            "truncated .npy data: expected 160 bytes",
        ),
        (format!(r#"data::npy("{}", #{{mmap_mode: "r"}})"#, bad.display()), "bad magic"),
        (format!(r#"data::npy("{}", #{{mmap_mode: "r"}})"#, scalar.display()), "0-dimensional array has no rows"),
        (format!(r#"data::npy("{}", #{{mmap_mode: "w+"}})"#, short.display()), "mmap_mode must be \"r\""),
        (format!(r#"data::npy("{}/none.npy", #{{mmap_mode: "r"}})"#, dir.display()), "none.npy"),
    ];
    for (src, want) in cases {
        let e = eval(&src).map(|v| v.to_string()).expect_err(&src);
        assert!(e.contains(want), "{src}: missing {want:?} in {e}");
    }
}
