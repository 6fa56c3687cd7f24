//! Data loading figures: an MNIST-shaped tensor dataset (60k × 784 float32 + labels, batch 64,
//! shuffled, one epoch) in batches per second, from Rust and from a script's `for` loop; and an
//! image folder of 2,000 generated PNGs decoded with 1 vs 2 workers. PyTorch's figure for the
//! first comes from `tools/bench_data_torch.py` on the same machine.
use crate::data::api::{DatasetHandle, LoaderHandle};
use crate::data::dataset::TensorDataset;
use crate::data::image::{save_png, ImageFolder};
use crate::data::{DataLoader, Dataset, LoaderOptions};
use std::sync::Arc;
use std::time::Instant;

const SIDE: i64 = 128;

pub struct DataFigures {
    pub tensor_batches: usize,
    pub tensor_bps: f64,
    pub tensor_bps_script: f64,
    pub tensor_bps_2_workers: f64,
    pub images: usize,
    pub image_batches: usize,
    pub image_bps_1_worker: f64,
    pub image_bps_2_workers: f64,
    /// CPU cores busy on average while the image epochs ran.
    pub image_cores_1_worker: f64,
    pub image_cores_2_workers: f64,
    /// Cores that two busy threads got, measured right after (see [`cores_for_two_threads`]).
    pub cores_available: f64,
}

impl DataFigures {
    pub fn image_speedup(&self) -> f64 {
        self.image_bps_2_workers / self.image_bps_1_worker
    }
}

/// CPU seconds this process has used (user + system), from /proc on Linux; 0 elsewhere.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // fields after the command name (which is in parentheses): utime is the 12th, stime the 13th
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn epoch_bps(ds: &Arc<dyn Dataset>, batch_size: usize, workers: usize, repeats: usize) -> Result<(usize, f64), String> {
    let (n, bps, _) = epoch_bps_cpu(ds, batch_size, workers, repeats)?;
    Ok((n, bps))
}

/// Batches per second (best epoch) and the CPU cores busy on average over all epochs.
fn epoch_bps_cpu(
    ds: &Arc<dyn Dataset>,
    batch_size: usize,
    workers: usize,
    repeats: usize,
) -> Result<(usize, f64, f64), String> {
    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
    let (n, bps) = epoch_bps_inner(ds, batch_size, workers, repeats)?;
    let cores = (cpu_seconds() - cpu0) / wall0.elapsed().as_secs_f64();
    Ok((n, bps, cores))
}

fn epoch_bps_inner(
    ds: &Arc<dyn Dataset>,
    batch_size: usize,
    workers: usize,
    repeats: usize,
) -> Result<(usize, f64), String> {
    let opts = LoaderOptions { batch_size, shuffle: true, num_workers: workers, seed: 0, ..Default::default() };
    let l = DataLoader::new(ds.clone(), opts).map_err(|e| e.to_string())?;
    let mut best = f64::INFINITY;
    let mut n = 0;
    for r in 0..repeats {
        let t = Instant::now();
        n = 0;
        for b in l.iter_epoch(r as u64) {
            std::hint::black_box(b.map_err(|e| e.to_string())?);
            n += 1;
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok((n, n as f64 / best))
}

fn script_bps(ds: &Arc<dyn Dataset>, repeats: usize) -> Result<f64, String> {
    let engine = crate::script::engine::new_engine()?;
    let ast = engine
        .compile("let n = 0; for b in loader { let x = b[0]; let y = b[1]; n += 1; } n")
        .map_err(|e| e.to_string())?;
    let opts = LoaderOptions { batch_size: 64, shuffle: true, seed: 0, ..Default::default() };
    let l = LoaderHandle::new(DataLoader::new(ds.clone(), opts).map_err(|e| e.to_string())?);
    let mut best = f64::INFINITY;
    let mut n = 0;
    for _ in 0..repeats {
        let mut scope = rhai::Scope::new();
        scope.push("loader", l.clone());
        let t = Instant::now();
        n = engine.eval_ast_with_scope::<i64>(&mut scope, &ast).map_err(|e| e.to_string())?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    let _ = DatasetHandle(ds.clone());
    Ok(n as f64 / best)
}

/// How many cores two busy threads actually get right now (CPU seconds / wall seconds over
/// 0.5 s): on a shared machine this bounds any 2-worker speed-up.
pub fn cores_for_two_threads() -> f64 {
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let spin = || {
        let mut x = 0u64;
        while t.elapsed().as_secs_f64() < 0.5 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
    };
    std::thread::scope(|s| {
        s.spawn(spin);
        s.spawn(spin);
    });
    (cpu_seconds() - cpu0) / t.elapsed().as_secs_f64()
}

/// Runs both measurements.
pub fn run() -> Result<DataFigures, String> {
    let e = |e: tch::TchError| e.to_string();
    tch::manual_seed(0);
    let x = tch::Tensor::f_randn([60_000, 784], (tch::Kind::Float, tch::Device::Cpu)).map_err(e)?;
    let y = tch::Tensor::f_randint(10, [60_000], (tch::Kind::Int64, tch::Device::Cpu)).map_err(e)?;
    let mnist: Arc<dyn Dataset> = Arc::new(TensorDataset::new(&[x, y]).map_err(|e| e.to_string())?);
    let (tensor_batches, tensor_bps) = epoch_bps(&mnist, 64, 0, 5)?;
    let (_, tensor_bps_2_workers) = epoch_bps(&mnist, 64, 2, 3)?;
    let tensor_bps_script = script_bps(&mnist, 3)?;

    let images = 2000;
    let dir = std::env::temp_dir().join(format!("lt-bench-images-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for i in 0..images {
        let class = dir.join(format!("class{}", i % 10));
        std::fs::create_dir_all(&class).map_err(|e| e.to_string())?;
        // photo-like content: smooth gradients plus mild noise, so PNG compresses and decoding
        // (inflate + unfilter) is the work, as with real images
        let ramp = tch::Tensor::f_arange(SIDE, (tch::Kind::Float, tch::Device::Cpu)).map_err(e)?;
        let grad = ramp.f_unsqueeze(0).map_err(e)?.f_add(&ramp.f_unsqueeze(1).map_err(e)?).map_err(e)?;
        let base =
            tch::Tensor::f_stack(&[&grad * 0.5, &grad * 0.25 + (i % 64) as f64, grad.f_flip([1]).map_err(e)? * 0.5], 0)
                .map_err(e)?;
        let noise = tch::Tensor::f_randint(8, [3, SIDE, SIDE], (tch::Kind::Float, tch::Device::Cpu)).map_err(e)?;
        let img = base.f_add(&noise).map_err(e)?.f_remainder(256).map_err(e)?.f_to_kind(tch::Kind::Uint8).map_err(e)?;
        save_png(&img, &class.join(format!("{i}.png"))).map_err(|e| e.to_string())?;
    }
    let folder: Arc<dyn Dataset> = Arc::new(ImageFolder::new(&dir, true).map_err(|e| e.to_string())?);
    let (image_batches, image_bps_1_worker, image_cores_1_worker) = epoch_bps_cpu(&folder, 64, 1, 5)?;
    let (_, image_bps_2_workers, image_cores_2_workers) = epoch_bps_cpu(&folder, 64, 2, 5)?;
    let cores_available = cores_for_two_threads();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(DataFigures {
        tensor_batches,
        tensor_bps,
        tensor_bps_script,
        tensor_bps_2_workers,
        images,
        image_batches,
        image_bps_1_worker,
        image_bps_2_workers,
        image_cores_1_worker,
        image_cores_2_workers,
        cores_available,
    })
}
