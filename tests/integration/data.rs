//! Data: datasets, loaders, samplers (checked against PyTorch figures in
//! tests/fixtures/data/reference.json), script surface, bad input.
use crate::common::{eval, eval_bool, eval_f64, root, temp_dir};
use lt::data::dataset::{random_split, split_lengths, SplitSizes, TensorDataset};
use lt::data::{Batch, DataLoader, Dataset, FetchCtx, LoaderOptions, Sampler};
use std::sync::Arc;

fn reference() -> serde_json::Value {
    let p = root().join("tests/fixtures/data/reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn arange_ds(n: i64) -> Arc<dyn Dataset> {
    Arc::new(TensorDataset::new(&[tch::Tensor::arange(n, (tch::Kind::Int64, tch::Device::Cpu))]).unwrap())
}

fn first_ints(b: &Batch) -> Vec<i64> {
    match b {
        Batch::List(v) => match &v[0] {
            Batch::Tensor(t) => Vec::<i64>::try_from(t).unwrap(),
            other => panic!("expected a tensor, got {other:?}"),
        },
        other => panic!("expected a list, got {other:?}"),
    }
}

fn epoch_ids(l: &DataLoader, epoch: u64) -> Vec<Vec<i64>> {
    l.iter_epoch(epoch).map(|b| first_ints(&b.unwrap())).collect()
}

fn opts(batch_size: usize, shuffle: bool, workers: usize, seed: u64) -> LoaderOptions {
    LoaderOptions { batch_size, shuffle, num_workers: workers, seed, ..Default::default() }
}

#[test]
fn batch_order_is_the_same_for_any_number_of_workers() {
    let ds = arange_ds(103);
    let base = DataLoader::new(ds.clone(), opts(8, true, 0, 5)).unwrap();
    for epoch in 0..2 {
        let want = epoch_ids(&base, epoch);
        assert_eq!(want.len(), 13);
        let mut all: Vec<i64> = want.concat();
        all.sort();
        assert_eq!(all, (0..103).collect::<Vec<_>>(), "an epoch visits every sample once");
        for workers in [1, 2, 3, 7] {
            let l = DataLoader::new(ds.clone(), opts(8, true, workers, 5)).unwrap();
            assert_eq!(epoch_ids(&l, epoch), want, "num_workers={workers}, epoch {epoch}");
        }
    }
}

#[test]
fn shuffle_is_reproducible_from_seed_and_changes_per_epoch() {
    let ds = arange_ds(50);
    let a = DataLoader::new(ds.clone(), opts(50, true, 0, 1)).unwrap();
    let b = DataLoader::new(ds.clone(), opts(50, true, 2, 1)).unwrap();
    let c = DataLoader::new(ds.clone(), opts(50, true, 0, 2)).unwrap();
    assert_eq!(epoch_ids(&a, 0), epoch_ids(&b, 0));
    assert_ne!(epoch_ids(&a, 0), epoch_ids(&a, 1));
    assert_ne!(epoch_ids(&a, 0), epoch_ids(&c, 0));
    let seq = DataLoader::new(ds, opts(50, false, 0, 1)).unwrap();
    assert_eq!(epoch_ids(&seq, 3), vec![(0..50).collect::<Vec<i64>>()]);
}

#[test]
fn loader_lengths_and_drop_last_match_pytorch() {
    for case in reference()["loader_len"].as_array().unwrap() {
        let n = case["n"].as_i64().unwrap();
        let bs = case["batch_size"].as_u64().unwrap() as usize;
        let drop_last = case["drop_last"].as_bool().unwrap();
        let l =
            DataLoader::new(arange_ds(n), LoaderOptions { batch_size: bs, drop_last, ..Default::default() }).unwrap();
        assert_eq!(l.len().unwrap() as u64, case["len"].as_u64().unwrap(), "{case}");
        let sizes: Vec<u64> = epoch_ids(&l, 0).iter().map(|b| b.len() as u64).collect();
        let want: Vec<u64> = case["batches"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(sizes, want, "{case}");
    }
}

#[test]
fn distributed_sampler_pads_and_partitions_like_pytorch() {
    for case in reference()["distributed"].as_array().unwrap() {
        let n = case["n"].as_u64().unwrap() as usize;
        let world = case["world"].as_u64().unwrap() as usize;
        let drop_last = case["drop_last"].as_bool().unwrap();
        for (rank, want) in case["indices"].as_array().unwrap().iter().enumerate() {
            let s = Sampler::distributed(Sampler::Sequential, rank, world, drop_last).unwrap();
            let want: Vec<usize> = want.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            assert_eq!(s.indices(n, 0, 0), want, "{case} rank {rank}");
            assert_eq!(s.num_samples(n), want.len());
        }
    }
}

#[test]
fn distributed_shuffle_agrees_across_ranks_and_covers_the_data() {
    let n = 23;
    let world = 4;
    let mut seen = Vec::new();
    for rank in 0..world {
        let s = Sampler::distributed(Sampler::Random { replacement: false, num_samples: None }, rank, world, false)
            .unwrap();
        let idx = s.indices(n, 9, 2);
        assert_eq!(idx.len(), 6);
        seen.extend(idx);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    // the Trainer's injection keeps the loader's shuffle and gives each rank its share
    let mut l = DataLoader::new(arange_ds(10), opts(2, true, 0, 3)).unwrap();
    l.set_distributed(1, 3).unwrap();
    assert_eq!(l.len(), Some(2));
    assert_eq!(l.iter_epoch(0).count(), 2);
    assert!(l.set_distributed(3, 3).is_err());
}

#[test]
fn random_split_lengths_and_indices_match_pytorch() {
    // the split seeds libtorch's global generator for its draw
    let _rng = crate::common::rng_guard();
    for case in reference()["random_split"].as_array().unwrap() {
        let n = case["n"].as_u64().unwrap() as usize;
        let sizes = case["sizes"].as_array().unwrap();
        let sizes = if sizes.iter().all(|v| v.is_u64()) {
            SplitSizes::Counts(sizes.iter().map(|v| v.as_u64().unwrap() as usize).collect())
        } else {
            SplitSizes::Fractions(sizes.iter().map(|v| v.as_f64().unwrap()).collect())
        };
        let want: Vec<usize> =
            case["lengths"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(split_lengths(n, &sizes).unwrap(), want, "{case}");
        // torch's own split for generator=torch.Generator().manual_seed(seed): the same indices
        let seed = case["seed"].as_u64().unwrap();
        let parts = random_split(arange_ds(n as i64), &sizes, seed).unwrap();
        let ctx = FetchCtx::default();
        for (p, want) in parts.iter().zip(case["indices"].as_array().unwrap()) {
            let got = first_ints(&p.get_batch(&(0..p.len()).collect::<Vec<_>>(), &ctx).unwrap());
            let want: Vec<i64> = want.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
            assert_eq!(got, want, "{case}");
        }
    }
    // disjoint, complete, reproducible
    let parts = random_split(arange_ds(20), &SplitSizes::Fractions(vec![0.5, 0.5]), 4).unwrap();
    let ctx = FetchCtx::default();
    let ids = |p: &dyn Dataset| first_ints(&p.get_batch(&(0..p.len()).collect::<Vec<_>>(), &ctx).unwrap());
    let mut all = [ids(&parts[0]), ids(&parts[1])].concat();
    let again = random_split(arange_ds(20), &SplitSizes::Fractions(vec![0.5, 0.5]), 4).unwrap();
    assert_eq!(ids(&parts[0]), ids(&again[0]));
    all.sort();
    assert_eq!(all, (0..20).collect::<Vec<_>>());
    assert!(split_lengths(10, &SplitSizes::Counts(vec![3, 3])).unwrap_err().0.contains("does not equal"));
}

#[test]
fn random_sampler_num_samples_like_pytorch() {
    for case in reference()["random_sampler_len"].as_array().unwrap() {
        let n = case["n"].as_u64().unwrap() as usize;
        let k = case["num_samples"].as_u64().unwrap() as usize;
        let repl = case["replacement"].as_bool().unwrap();
        let s = Sampler::Random { replacement: repl, num_samples: Some(k) };
        let idx = s.indices(n, 1, 0);
        assert_eq!(idx.len() as u64, case["len"].as_u64().unwrap());
        if !repl {
            // whole permutations then a partial one: the counts are exactly PyTorch's
            let counts: Vec<u64> = (0..n).map(|i| idx.iter().filter(|&&j| j == i).count() as u64).collect();
            let mut want: Vec<u64> = case["counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            let mut got = counts.clone();
            want.sort();
            got.sort();
            assert_eq!(got, want);
        }
    }
}

#[test]
fn weighted_sampler_follows_weights() {
    let s = Sampler::weighted(vec![0.0, 1.0, 3.0, 0.0], 4000, true).unwrap();
    let idx = s.indices(4, 0, 0);
    assert!(idx.iter().all(|&i| i == 1 || i == 2), "zero weights are never drawn");
    let twos = idx.iter().filter(|&&i| i == 2).count() as f64 / 4000.0;
    assert!((twos - 0.75).abs() < 0.05, "{twos}");
    let s = Sampler::weighted(vec![1.0, 1.0, 5.0, 0.0, 2.0], 4, false).unwrap();
    for e in 0..5 {
        let mut idx = s.indices(5, 1, e);
        idx.sort();
        idx.dedup();
        assert_eq!(idx, vec![0, 1, 2, 4], "without replacement: distinct, non-zero weights");
    }
    assert!(Sampler::weighted(vec![1.0, 0.0], 2, false).unwrap_err().0.contains("without replacement"));
    assert!(Sampler::weighted(vec![1.0, -1.0], 2, true).is_err());
    // weights for more samples than the dataset has
    let l = DataLoader::new(
        arange_ds(2),
        LoaderOptions { sampler: Some(Sampler::weighted(vec![1.0; 3], 2, true).unwrap()), ..Default::default() },
    );
    assert!(l.unwrap_err().0.contains("3 weights"));
}

struct Failing;
impl Dataset for Failing {
    fn len(&self) -> usize {
        10
    }
    fn get_batch(&self, indices: &[usize], _ctx: &FetchCtx) -> lt::data::Result<Batch> {
        if indices.contains(&7) {
            panic!("sample 7 is broken");
        }
        if indices.contains(&3) {
            return Err(lt::data::DataError("cannot read sample 3".into()));
        }
        Ok(Batch::Int(indices.len() as i64))
    }
    fn describe(&self) -> String {
        "Failing".into()
    }
}

#[test]
fn worker_errors_and_panics_come_back_as_errors() {
    for workers in [0, 2] {
        let l = DataLoader::new(
            Arc::new(Failing),
            LoaderOptions { batch_size: 2, num_workers: workers, ..Default::default() },
        )
        .unwrap();
        let r: Vec<_> = l.iter_epoch(0).collect();
        assert_eq!(r.len(), 5);
        assert!(r[1].as_ref().unwrap_err().0.contains("cannot read sample 3"));
        assert!(r[3].as_ref().unwrap_err().0.contains("sample 7 is broken"), "{:?}", r[3]);
        assert!(r[0].is_ok() && r[2].is_ok() && r[4].is_ok());
    }
}

#[test]
fn stopping_an_epoch_early_ends_the_workers() {
    let l = DataLoader::new(arange_ds(1000), opts(10, true, 3, 0)).unwrap();
    for _ in 0..3 {
        let mut it = l.iter_epoch(0);
        assert!(it.next().unwrap().is_ok());
        drop(it);
    }
}

#[test]
fn bad_loader_options_are_clear_errors() {
    let e = eval("data::loader(data::blobs(), #{batch_size: 0})").unwrap_err();
    assert!(e.contains("batch_size should be a positive integer value"), "{e}");
    let e = eval("data::loader(data::tensor_dataset(torch::zeros([0, 3])))").unwrap_err();
    assert!(e.contains("dataset is empty"), "{e}");
    let e = eval("data::loader(data::blobs(), #{batch: 3})").unwrap_err();
    assert!(e.contains("valid options: batch_size"), "{e}");
    let e = eval("data::loader(data::blobs(), #{shuffle: true, sampler: data::sequential_sampler()})").unwrap_err();
    assert!(e.contains("mutually exclusive"), "{e}");
    let e = eval("data::tensor_dataset(torch::zeros([3, 2]), torch::zeros([4]))").unwrap_err();
    assert!(e.contains("size mismatch"), "{e}");
    let e = eval("data::blobs(#{n: 10})[10]").unwrap_err();
    assert!(e.contains("index 10 is out of range"), "{e}");
}

#[test]
fn scripts_iterate_loaders_and_collate_nested_samples() {
    let n = eval_f64(
        r#"
        let ds = data::dataset(#{
            len: || 10,
            get: |i| #{ x: torch::full([3], i * 1.0), meta: [i, 0.5 * i, "s" + i] },
        });
        let total = 0.0;
        let batches = 0;
        for b in data::loader(ds, #{batch_size: 4}) {
            if b.x.shape[1] != 3 { throw "bad x"; }
            if b.meta[0].dtype != "int64" { throw "ints collate to int64"; }
            if b.meta[1].dtype != "float64" { throw "floats collate to float64, as in PyTorch"; }
            if b.meta[2].len() != b.x.shape[0] { throw "strings collate to arrays"; }
            total += b.x.sum().item();
            batches += 1;
        }
        if batches != 3 { throw "3 batches"; }
        total
    "#,
    );
    assert_eq!(n, 3.0 * 45.0);
}

#[test]
fn script_dataset_with_inconsistent_shapes_names_the_index() {
    let e = eval(
        r#"
        let ds = data::dataset(#{len: 8, get: |i| if i == 5 { torch::zeros([3]) } else { torch::zeros([2]) }});
        let n = 0;
        for b in data::loader(ds, #{batch_size: 4}) { n += b.shape[0]; }
        n
    "#,
    )
    .unwrap_err();
    assert!(e.contains("sample 5 has shape [3]"), "{e}");
    let e =
        eval("let ds = data::dataset(#{len: 3, get: |i| if i == 2 { throw \"boom\" } else { 1 }}); ds[2]").unwrap_err();
    assert!(e.contains("get(2) failed") && e.contains("boom"), "{e}");
}

#[test]
fn script_dataset_calls_script_functions() {
    assert!(eval_bool(
        r#"
        fn make(i) { torch::ones([2]) * i }
        let scale = 3;
        let ds = data::dataset(#{len: 4, get: |i| make(i) * scale});
        let l = data::loader(ds, #{batch_size: 4, num_workers: 2});
        let out = ();
        for b in l { out = b; }
        out.sum().item() == 36.0
    "#
    ));
}

#[test]
fn trainer_gets_loaders_from_hook_results() {
    let script = lt::script::runner::Script::from_source(
        std::path::Path::new("dm.rhai"),
        r#"
        let a = data::loader(data::blobs(#{n: 10}), #{batch_size: 4, shuffle: true, seed: 1});
        let b = data::loader(data::regression(#{n: 6}), #{batch_size: 6});
        [a, b]
    "#
        .into(),
    )
    .unwrap();
    let v = script.run(&mut rhai::Scope::new()).unwrap();
    let loaders = lt::data::api::loaders_of(&v).unwrap();
    assert_eq!(loaders.len(), 2);
    assert_eq!(loaders[0].borrow().len(), Some(3));
    assert_eq!(loaders[0].borrow().dataset_len(), Some(10));
    loaders[0].borrow_mut().set_distributed(0, 2).unwrap();
    let batches: Vec<_> = loaders[0].borrow().iter_epoch(1).collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.len(), 2);
    let d = lt::data::api::batch_to_dynamic(batches[0].shallow_clone());
    assert!(d.is_array());
    assert!(lt::data::api::loaders_of(&rhai::Dynamic::from(3_i64)).is_err());
    assert!(lt::data::api::loaders_of(&rhai::Dynamic::UNIT).unwrap().is_empty());
    let _ = temp_dir("unused");
}

fn path_str(p: &std::path::Path) -> String {
    p.display().to_string().replace('\\', "/")
}

#[test]
fn csv_columns_targets_and_errors_with_lines() {
    let dir = temp_dir("csv");
    let p = dir.join("d.csv");
    std::fs::write(&p, "a,b,c,label\n1,2,3,x\n4,5,6,y\n\n7,\"8\",9,x\n").unwrap();
    let src = format!(
        r#"let ds = data::csv("{0}", #{{target: "label", columns: ["c", 0]}});
        let s = ds[2];
        ds.len() == 3 && s[0].to_array() == [9.0, 7.0] && s[1].item() == 0 && ds.classes == ["x", "y"]
           && data::csv("{0}", #{{target: 1, columns: [0, 2]}})[1][1].dtype == "int64"
           && data::csv("{0}", #{{target: "b", columns: ["a"], target_dtype: "float32"}})[0][1].dtype == "float32""#,
        path_str(&p)
    );
    assert!(eval_bool(&src));
    let bad = dir.join("ragged.csv");
    std::fs::write(&bad, "a,b\n1,2\n3\n").unwrap();
    let e = eval(&format!(r#"data::csv("{}")"#, path_str(&bad))).unwrap_err();
    assert!(e.contains("ragged.csv:3: expected 2 fields"), "{e}");
    let bad = dir.join("text.csv");
    std::fs::write(&bad, "a,b\n1,2\n3,zz\n").unwrap();
    let e = eval(&format!(r#"data::csv("{}")"#, path_str(&bad))).unwrap_err();
    assert!(e.contains("text.csv:3: column 'b': cannot parse 'zz'"), "{e}");
    let e = eval(&format!(r#"data::csv("{}", #{{target: "nope"}})"#, path_str(&p))).unwrap_err();
    assert!(e.contains("no column named 'nope'; columns: a, b, c, label"), "{e}");
    let e = eval(r#"data::csv("/no/such/file.csv")"#).unwrap_err();
    assert!(e.contains("no such file: /no/such/file.csv"), "{e}");
}

#[test]
fn npy_npz_safetensors_idx_round_trip() {
    let dir = path_str(&temp_dir("files"));
    assert!(eval_bool(&format!(
        r#"
        let x = torch::randn([5, 3]);
        let y = torch::arange(5);
        data::save_npy(x, "{dir}/x.npy");
        data::save_npz(#{{x: x, y: y}}, "{dir}/d.npz");
        data::save_safetensors(#{{x: x, y: y}}, "{dir}/d.safetensors");
        data::save_idx(x, "{dir}/x.idx");
        let a = data::load_npy("{dir}/x.npy").equal(x);
        let ds = data::npz("{dir}/d.npz", #{{keys: ["y", "x"]}});
        let b = ds[4].y.item() == 4 && ds[4].x.equal(x[4]);
        let st = data::safetensors("{dir}/d.safetensors");
        let c = st.len() == 5 && st[2].x.equal(x[2]);
        let d = data::read_idx("{dir}/x.idx").equal(x);
        a && b && c && d
    "#
    )));
    // a .npy written by NumPy's header layout (v1, shape tuple with trailing comma)
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let header = "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }";
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    bytes.extend((h.len() as u16).to_le_bytes());
    bytes.extend(h.as_bytes());
    for v in [7i32, -1, 3] {
        bytes.extend(v.to_le_bytes());
    }
    let t = lt::data::files::parse_npy(&bytes, "np.npy").unwrap();
    assert_eq!(Vec::<i32>::try_from(&t).unwrap(), vec![7, -1, 3]);
    assert!(lt::data::files::parse_npy(&bytes[..bytes.len() - 2], "np.npy").unwrap_err().0.contains("truncated"));
    let e = eval(&format!(r#"data::npz("{dir}/d.npz", #{{keys: ["z"]}})"#)).unwrap_err();
    assert!(e.contains("no array named 'z'"), "{e}");
    let e = eval(r#"data::load_npy("/missing/a.npy")"#).unwrap_err();
    assert!(e.contains("/missing/a.npy"), "{e}");
}

#[test]
fn mnist_idx_files_raw_and_gzipped() {
    let dir = temp_dir("mnist");
    let raw = dir.join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    // 3 images of 28x28 uint8, labels 7, 2, 1
    let mut img = vec![0u8, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0, 28];
    img.extend((0..3 * 28 * 28).map(|i| (i % 256) as u8));
    let lab = vec![0u8, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1];
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&img).unwrap();
    std::fs::write(raw.join("train-images-idx3-ubyte.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(raw.join("train-labels-idx1-ubyte"), &lab).unwrap();
    let root = path_str(&dir);
    assert!(eval_bool(&format!(
        r#"let ds = data::mnist("{root}");
        let s = ds[1];
        ds.len() == 3 && s[0].shape == [1, 28, 28] && s[1].item() == 2
          && (s[0][0][0][0].item() - (784 % 256) / 255.0).abs() < 1e-6"#
    )));
    let e = eval(&format!(r#"data::mnist("{root}", #{{train: false}})"#)).unwrap_err();
    assert!(e.contains("cannot find t10k-images-idx3-ubyte"), "{e}");
    std::fs::write(raw.join("train-labels-idx1-ubyte"), &lab[..9]).unwrap();
    let e = eval(&format!(r#"data::mnist("{root}")"#)).unwrap_err();
    assert!(e.contains("truncated IDX data"), "{e}");
}

#[test]
fn image_folder_decodes_png_and_jpeg() {
    let dir = temp_dir("images");
    let root = path_str(&dir);
    assert!(eval_bool(&format!(
        r#"
        let a = torch::rand([3, 5, 4]);
        data::save_image(a, "{root}/ants/0.png");
        data::save_image(torch::rand([3, 5, 4]), "{root}/bees/1.png");
        data::save_image(torch::rand([3, 5, 4]), "{root}/ants/2.png");
        let ds = data::image_folder("{root}");
        let s = ds[0];
        let close = (s[0] - a).abs().max().item() <= 0.5 / 255.0 + 1e-6;
        let u = data::image_folder("{root}", #{{dtype: "uint8"}})[0][0];
        ds.len() == 3 && ds.classes == ["ants", "bees"] && ds[2][1].item() == 1 && close && u.dtype == "uint8"
    "#
    )));
    // a baseline JPEG (8x8 grey, made with PIL)
    let jpeg: &[u8] = &[
        0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01,
        0x00, 0x00, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x08, 0x06, 0x06, 0x07, 0x06, 0x05, 0x08, 0x07, 0x07, 0x07, 0x09,
        0x09, 0x08, 0x0a, 0x0c, 0x14, 0x0d, 0x0c, 0x0b, 0x0b, 0x0c, 0x19, 0x12, 0x13, 0x0f, 0x14, 0x1d, 0x1a, 0x1f,
        0x1e, 0x1d, 0x1a, 0x1c, 0x1c, 0x20, 0x24, 0x2e, 0x27, 0x20, 0x22, 0x2c, 0x23, 0x1c, 0x1c, 0x28, 0x37, 0x29,
        0x2c, 0x30, 0x31, 0x34, 0x34, 0x34, 0x1f, 0x27, 0x39, 0x3d, 0x38, 0x32, 0x3c, 0x2e, 0x33, 0x34, 0x32, 0xff,
        0xc0, 0x00, 0x0b, 0x08, 0x00, 0x08, 0x00, 0x08, 0x01, 0x01, 0x11, 0x00, 0xff, 0xc4, 0x00, 0x1f, 0x00, 0x00,
        0x01, 0x05, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02,
        0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0xff, 0xc4, 0x00, 0xb5, 0x10, 0x00, 0x02, 0x01, 0x03,
        0x03, 0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04, 0x00, 0x00, 0x01, 0x7d, 0x01, 0x02, 0x03, 0x00, 0x04, 0x11,
        0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08,
        0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18,
        0x19, 0x1a, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45,
        0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67,
        0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
        0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9,
        0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9,
        0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8,
        0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xff, 0xda, 0x00, 0x08, 0x01, 0x01,
        0x00, 0x00, 0x3f, 0x00, 0xf9, 0xfe, 0x8a, 0x28, 0xa0, 0x0f, 0xff, 0xd9,
    ];
    std::fs::create_dir_all(dir.join("gray")).unwrap();
    std::fs::write(dir.join("gray/x.jpg"), jpeg).unwrap();
    let img = lt::data::image::decode(&dir.join("gray/x.jpg")).unwrap();
    assert_eq!((img.height, img.width, img.channels), (8, 8, 1));
    // mixed sizes in one batch: the error names both files
    std::fs::write(dir.join("bees/x.jpg"), jpeg).unwrap();
    let e = eval(&format!(
        r#"let ds = data::image_folder("{root}"); for b in data::loader(ds, #{{batch_size: 8}}) {{ print(b); }}"#
    ))
    .unwrap_err();
    assert!(e.contains("x.jpg is 8x8 with 1 channels") && e.contains("0.png is 5x4 with 3"), "{e}");
    std::fs::write(dir.join("bees/bad.png"), b"not a png").unwrap();
    let e = eval(&format!(r#"let ds = data::image_folder("{root}"); ds[3]"#)).unwrap_err();
    assert!(e.contains("bad.png"), "{e}");
}

#[test]
fn text_file_windows_for_language_models() {
    let dir = temp_dir("text");
    let p = dir.join("t.txt");
    std::fs::write(&p, "abcabcabcd").unwrap();
    let p = path_str(&p);
    assert!(eval_bool(&format!(
        r#"let ds = data::text_file("{p}", #{{seq_len: 3}});
        let s = ds[1];
        ds.len() == 3 && ds.vocab == ["a", "b", "c", "d"] && s[0].to_array() == [0, 1, 2] && s[1].to_array() == [1, 2, 0]
        && data::text_file("{p}", #{{seq_len: 4, stride: 1, mode: "byte"}}).len() == 6
        && data::text_file("{p}", #{{seq_len: 2, mode: "byte"}})[0][0].to_array() == [97, 98]"#
    )));
    let e = eval(&format!(r#"data::text_file("{p}", #{{seq_len: 10}})"#)).unwrap_err();
    assert!(e.contains("too short"), "{e}");
}

#[test]
fn transforms_are_seeded_and_independent_of_workers() {
    let src = |workers: i64| {
        format!(
            r#"
            let x = torch::arange(2 * 16).reshape([2, 1, 4, 4]).to("float32");
            let ds = data::transformed(data::tensor_dataset(x.repeat([8, 1, 1, 1]), torch::arange(16) % 3), #{{
                transform: data::compose([data::random_crop(3, #{{padding: 1}}), data::random_horizontal_flip(), data::normalize(1.0, 2.0)]),
                target_transform: data::one_hot(3),
            }});
            let l = data::loader(ds, #{{batch_size: 5, num_workers: {workers}, seed: 11, shuffle: true}});
            let out = [];
            for b in l {{ out.push(b[0].sum().item()); out.push(b[1].shape); }}
            for b in l {{ out.push(b[0].sum().item()); }}
            out
        "#
        )
    };
    let a = eval(&src(0)).unwrap().to_string();
    assert_eq!(a, eval(&src(3)).unwrap().to_string());
    assert!(a.contains("[5, 3]"), "{a}");
    assert!(eval_bool(
        r#"
        let x = torch::arange(4).reshape([1, 1, 2, 2]);
        let f = data::transformed(data::tensor_dataset(x), #{transform: data::random_horizontal_flip(1.0)});
        f[0][0].to_array() == [[[1, 0], [3, 2]]]
    "#
    ));
    let e = eval("data::transformed(data::blobs(), #{transform: data::normalize([1, 2, 3], [1])})[0]").unwrap_err();
    assert!(e.contains("expected a tensor image of size (..., C, H, W), got shape [2]"), "{e}");
    let e = eval(
        "data::transformed(data::tensor_dataset(torch::rand([2, 2, 3, 3])), #{transform: data::normalize([1, 2, 3], [1])})[0]",
    )
    .unwrap_err();
    assert!(e.contains("3 means and 1 stds for 2 channels"), "{e}");
    let e = eval("data::transformed(data::blobs(), #{target_transform: data::one_hot(2)})[2]").unwrap_err();
    assert!(e.to_lowercase().contains("class values must be smaller than num_classes"), "{e}");
}
