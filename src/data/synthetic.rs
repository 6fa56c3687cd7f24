//! Built-in synthetic datasets for examples and tests: no download, generated in Rust from a
//! seed, identical on every machine.
use super::dataset::TensorDataset;
use super::rng::Rng;
use super::Result;
use crate::data_err;
use tch::Tensor;

fn positive(what: &str, name: &str, v: usize) -> Result<()> {
    if v == 0 {
        return Err(data_err!("{what}: '{name}' must be positive, got 0"));
    }
    Ok(())
}

fn f32_tensor(v: Vec<f32>, shape: &[i64]) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(&v)?.f_reshape(shape)?)
}

/// Gaussian blobs (sklearn make_blobs): `centers` centres drawn uniformly in [-10, 10]^features,
/// sample `i` of class `i % centers` with std `std`. Samples `[x: float32 [features], y: int64]`.
pub fn blobs(n: usize, centers: usize, features: usize, std: f64, seed: u64) -> Result<TensorDataset> {
    positive("data::blobs", "n", n)?;
    positive("data::blobs", "centers", centers)?;
    positive("data::blobs", "features", features)?;
    let mut rng = Rng::new(seed);
    let c: Vec<f64> = (0..centers * features).map(|_| rng.uniform() * 20.0 - 10.0).collect();
    let mut x = Vec::with_capacity(n * features);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let k = i % centers;
        y.push(k as i64);
        for f in 0..features {
            x.push((c[k * features + f] + std * rng.normal()) as f32);
        }
    }
    let x = f32_tensor(x, &[n as i64, features as i64])?;
    let y = Tensor::f_from_slice(&y)?;
    TensorDataset::build(&[x, y], None, "blobs")
}

/// Interleaved 2-D spirals, one arm per class (the CS231n toy set): radius 0→1, angle with normal
/// noise `noise`. Samples `[x: float32 [2], y: int64]`.
pub fn spirals(n: usize, classes: usize, noise: f64, seed: u64) -> Result<TensorDataset> {
    positive("data::spirals", "n", n)?;
    positive("data::spirals", "classes", classes)?;
    let mut rng = Rng::new(seed);
    let per = n.div_ceil(classes).max(2);
    let mut x = Vec::with_capacity(n * 2);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let k = i % classes;
        let j = i / classes;
        let r = j as f64 / (per - 1) as f64;
        let t = k as f64 * 4.0 + 4.0 * r + noise * rng.normal();
        x.push((r * t.sin()) as f32);
        x.push((r * t.cos()) as f32);
        y.push(k as i64);
    }
    let x = f32_tensor(x, &[n as i64, 2])?;
    let y = Tensor::f_from_slice(&y)?;
    TensorDataset::build(&[x, y], None, "spirals")
}

/// Linear regression: `y = x·w + b + noise·ε` with `x, w, b, ε` standard normal. Samples
/// `[x: float32 [features], y: float32 [1]]`.
pub fn regression(n: usize, features: usize, noise: f64, seed: u64) -> Result<TensorDataset> {
    positive("data::regression", "n", n)?;
    positive("data::regression", "features", features)?;
    let mut rng = Rng::new(seed);
    let w: Vec<f64> = (0..features).map(|_| rng.normal()).collect();
    let b = rng.normal();
    let mut x = Vec::with_capacity(n * features);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let mut acc = b;
        for wf in &w {
            let v = rng.normal();
            acc += v * wf;
            x.push(v as f32);
        }
        y.push((acc + noise * rng.normal()) as f32);
    }
    let x = f32_tensor(x, &[n as i64, features as i64])?;
    let y = f32_tensor(y, &[n as i64, 1])?;
    TensorDataset::build(&[x, y], None, "regression")
}

/// Sequence copy: random token sequences in [0, vocab); the target is the input.
/// Samples `[x: int64 [seq_len], y: int64 [seq_len]]`.
pub fn sequence_copy(n: usize, seq_len: usize, vocab: usize, seed: u64) -> Result<TensorDataset> {
    positive("data::sequence_copy", "n", n)?;
    positive("data::sequence_copy", "seq_len", seq_len)?;
    positive("data::sequence_copy", "vocab", vocab)?;
    let mut rng = Rng::new(seed);
    let v: Vec<i64> = (0..n * seq_len).map(|_| rng.below(vocab as u64) as i64).collect();
    let x = Tensor::f_from_slice(&v)?.f_reshape([n as i64, seq_len as i64])?;
    let y = x.f_detach_copy()?;
    TensorDataset::build(&[x, y], None, "sequence_copy")
}
