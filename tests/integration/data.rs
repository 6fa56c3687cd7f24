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
        let l = DataLoader::new(arange_ds(n), LoaderOptions { batch_size: bs, drop_last, ..Default::default() }).unwrap();
        assert_eq!(l.len() as u64, case["len"].as_u64().unwrap(), "{case}");
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
        let s = Sampler::distributed(Sampler::Random { replacement: false, num_samples: None }, rank, world, false).unwrap();
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
    assert_eq!(l.len(), 2);
    assert_eq!(l.iter_epoch(0).count(), 2);
    assert!(l.set_distributed(3, 3).is_err());
}

#[test]
fn random_split_lengths_match_pytorch() {
    for case in reference()["random_split"].as_array().unwrap() {
        let n = case["n"].as_u64().unwrap() as usize;
        let sizes = case["sizes"].as_array().unwrap();
        let sizes = if sizes.iter().all(|v| v.is_u64()) {
            SplitSizes::Counts(sizes.iter().map(|v| v.as_u64().unwrap() as usize).collect())
        } else {
            SplitSizes::Fractions(sizes.iter().map(|v| v.as_f64().unwrap()).collect())
        };
        let want: Vec<usize> = case["lengths"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(split_lengths(n, &sizes).unwrap(), want, "{case}");
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
        let l = DataLoader::new(Arc::new(Failing), LoaderOptions { batch_size: 2, num_workers: workers, ..Default::default() }).unwrap();
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
    let e = eval("let ds = data::dataset(#{len: 3, get: |i| if i == 2 { throw \"boom\" } else { 1 }}); ds[2]").unwrap_err();
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
    assert_eq!(loaders[0].borrow().len(), 3);
    assert_eq!(loaders[0].borrow().dataset_len(), 10);
    loaders[0].borrow_mut().set_distributed(0, 2).unwrap();
    let batches: Vec<_> = loaders[0].borrow().iter_epoch(1).collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.len(), 2);
    let d = lt::data::api::batch_to_dynamic(batches[0].shallow_clone());
    assert!(d.is_array());
    assert!(lt::data::api::loaders_of(&rhai::Dynamic::from(3_i64)).is_err());
    assert!(lt::data::api::loaders_of(&rhai::Dynamic::UNIT).unwrap().is_empty());
    let _ = temp_dir("unused");
}
