//! Datasets over tensors, and datasets made of other datasets: subsets, concatenation,
//! random splits.
use super::{check_indices, Batch, Dataset, FetchCtx, Result, SharedTensor};
use crate::data_err;
use std::sync::Arc;

/// Samples are rows of tensors that share their first dim (torch TensorDataset). A batch is one
/// `index_select` per tensor. Unnamed tensors give `[x, y, …]` samples; named ones `#{name: …}`.
pub struct TensorDataset {
    tensors: Vec<SharedTensor>,
    names: Option<Vec<String>>,
    len: usize,
    classes: Option<Vec<String>>,
    what: String,
}

impl TensorDataset {
    /// Unnamed tensors: samples are `[t0[i], t1[i], …]`.
    pub fn new(tensors: &[tch::Tensor]) -> Result<TensorDataset> {
        Self::build(tensors, None, "TensorDataset")
    }

    /// Named tensors: samples are `#{name: t[i], …}` (keys in the given order).
    pub fn named(tensors: &[(String, tch::Tensor)]) -> Result<TensorDataset> {
        let names = tensors.iter().map(|(k, _)| k.clone()).collect();
        let ts: Vec<tch::Tensor> = tensors.iter().map(|(_, t)| t.shallow_clone()).collect();
        Self::build(&ts, Some(names), "TensorDataset")
    }

    /// Same, with a name for descriptions (`"CSV data.csv"`).
    pub fn build(tensors: &[tch::Tensor], names: Option<Vec<String>>, what: &str) -> Result<TensorDataset> {
        let len = sample_count(tensors.iter().map(|t| t.size()))?;
        let tensors = tensors.iter().map(SharedTensor::new).collect::<Result<_>>()?;
        Ok(TensorDataset { tensors, names, len, classes: None, what: what.to_string() })
    }

    pub fn with_classes(mut self, classes: Option<Vec<String>>) -> Self {
        self.classes = classes;
        self
    }

    /// The tensors (shallow clones).
    pub fn tensors(&self) -> Vec<tch::Tensor> {
        self.tensors.iter().map(SharedTensor::handle).collect()
    }
}

/// The number of samples of tensors of these shapes, which must all have the same first (sample)
/// dimension (torch TensorDataset's rule); at least one shape.
pub fn sample_count(shapes: impl Iterator<Item = Vec<i64>>) -> Result<usize> {
    let mut len = None;
    for (i, s) in shapes.enumerate() {
        let n = *s.first().ok_or_else(|| {
            data_err!("tensor_dataset: tensor {i} is 0-dimensional; every tensor needs a first (sample) dimension")
        })?;
        match len {
            None => len = Some(n),
            Some(l) if l != n => {
                return Err(data_err!(
                    "tensor_dataset: size mismatch between tensors: tensor 0 has {l} samples, tensor {i} has {n}"
                ))
            }
            _ => {}
        }
    }
    len.map(|l| l as usize).ok_or_else(|| data_err!("tensor_dataset: needs at least one tensor"))
}

impl Dataset for TensorDataset {
    fn len(&self) -> usize {
        self.len
    }
    fn get_batch(&self, indices: &[usize], _ctx: &FetchCtx) -> Result<Batch> {
        check_indices(indices, self.len, &self.what)?;
        let idx: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        let idx = tch::Tensor::f_from_slice(&idx)?;
        let mut parts = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            let t = t.get();
            let i = if t.device() == tch::Device::Cpu { idx.shallow_clone() } else { idx.f_to_device(t.device())? };
            parts.push(Batch::Tensor(t.f_index_select(0, &i)?));
        }
        Ok(match &self.names {
            None => Batch::List(parts),
            Some(names) => Batch::Map(names.iter().cloned().zip(parts).collect()),
        })
    }
    fn describe(&self) -> String {
        let shapes: Vec<String> = self
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let name = self.names.as_ref().and_then(|n| n.get(i)).map(|n| format!("{n}: ")).unwrap_or_default();
                format!("{name}{:?} {}", t.get().size(), crate::tensor::options::dtype_name(t.get().kind()))
            })
            .collect();
        format!("{}({} samples; {})", self.what, self.len, shapes.join(", "))
    }
    fn classes(&self) -> Option<Vec<String>> {
        self.classes.clone()
    }
}

/// The samples of `inner` at `indices` (torch Subset).
pub struct Subset {
    inner: Arc<dyn Dataset>,
    indices: Vec<usize>,
}

impl Subset {
    pub fn new(inner: Arc<dyn Dataset>, indices: Vec<usize>) -> Result<Subset> {
        check_indices(&indices, inner.len(), "subset")?;
        Ok(Subset { inner, indices })
    }
}

impl Dataset for Subset {
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn get_batch(&self, indices: &[usize], ctx: &FetchCtx) -> Result<Batch> {
        check_indices(indices, self.indices.len(), "subset")?;
        let mapped: Vec<usize> = indices.iter().map(|&i| self.indices[i]).collect();
        self.inner.get_batch(&mapped, ctx)
    }
    fn get(&self, index: usize, ctx: &FetchCtx) -> Result<Batch> {
        check_indices(&[index], self.indices.len(), "subset")?;
        self.inner.get(self.indices[index], ctx)
    }
    fn describe(&self) -> String {
        format!("Subset({} of {})", self.indices.len(), self.inner.describe())
    }
    fn thread_bound(&self) -> bool {
        self.inner.thread_bound()
    }
    fn per_sample_work(&self) -> bool {
        self.inner.per_sample_work()
    }
    fn classes(&self) -> Option<Vec<String>> {
        self.inner.classes()
    }
    fn vocab(&self) -> Option<Vec<String>> {
        self.inner.vocab()
    }
}

/// Datasets one after the other (torch ConcatDataset).
pub struct Concat {
    parts: Vec<Arc<dyn Dataset>>,
    /// Cumulative lengths: part `p` holds global indices `starts[p]..starts[p+1]`.
    starts: Vec<usize>,
}

impl Concat {
    pub fn new(parts: Vec<Arc<dyn Dataset>>) -> Result<Concat> {
        if parts.is_empty() {
            return Err(data_err!("concat: needs at least one dataset"));
        }
        let mut starts = vec![0];
        for p in &parts {
            starts.push(starts[starts.len() - 1] + p.len());
        }
        Ok(Concat { parts, starts })
    }

    fn locate(&self, i: usize) -> (usize, usize) {
        let p = self.starts.partition_point(|&s| s <= i) - 1;
        (p, i - self.starts[p])
    }
}

impl Dataset for Concat {
    fn len(&self) -> usize {
        self.starts[self.starts.len() - 1]
    }
    fn get_batch(&self, indices: &[usize], ctx: &FetchCtx) -> Result<Batch> {
        check_indices(indices, self.len(), "concat")?;
        // Fetch each part's indices in one call, then restore the requested order.
        let mut groups: Vec<(usize, Vec<usize>, Vec<usize>)> = Vec::new(); // part, local, positions
        for (pos, &i) in indices.iter().enumerate() {
            let (p, local) = self.locate(i);
            match groups.iter_mut().find(|g| g.0 == p) {
                Some(g) => {
                    g.1.push(local);
                    g.2.push(pos);
                }
                None => groups.push((p, vec![local], vec![pos])),
            }
        }
        if groups.len() == 1 {
            return self.parts[groups[0].0].get_batch(&groups[0].1, ctx);
        }
        let mut order = Vec::with_capacity(indices.len());
        let mut batches = Vec::with_capacity(groups.len());
        for (p, local, pos) in groups {
            batches.push(self.parts[p].get_batch(&local, ctx)?);
            order.extend(pos);
        }
        let cat = Batch::cat(batches).map_err(|e| data_err!("concat: the datasets' samples do not match: {e}"))?;
        // row r of `cat` is requested position order[r]; invert
        let mut inverse = vec![0; order.len()];
        for (r, &p) in order.iter().enumerate() {
            inverse[p] = r;
        }
        cat.index_select(&inverse)
    }
    fn get(&self, index: usize, ctx: &FetchCtx) -> Result<Batch> {
        check_indices(&[index], self.len(), "concat")?;
        let (p, local) = self.locate(index);
        self.parts[p].get(local, ctx)
    }
    fn describe(&self) -> String {
        format!("Concat({})", self.parts.iter().map(|p| p.describe()).collect::<Vec<_>>().join(", "))
    }
    fn thread_bound(&self) -> bool {
        self.parts.iter().any(|p| p.thread_bound())
    }
    fn per_sample_work(&self) -> bool {
        self.parts.iter().any(|p| p.per_sample_work())
    }
    fn classes(&self) -> Option<Vec<String>> {
        self.parts[0].classes()
    }
}

/// Lengths of a random split, as torch.utils.data.random_split computes them: integers that must
/// sum to `n`, or fractions that must sum to 1 (floors, then the remainder handed out one by one
/// round-robin from the first subset).
pub enum SplitSizes {
    Counts(Vec<usize>),
    Fractions(Vec<f64>),
}

pub fn split_lengths(n: usize, sizes: &SplitSizes) -> Result<Vec<usize>> {
    match sizes {
        SplitSizes::Counts(c) => {
            let total: usize = c.iter().sum();
            if total != n {
                return Err(data_err!(
                    "random_split: sum of input lengths ({total}) does not equal the length of the input dataset ({n})"
                ));
            }
            Ok(c.clone())
        }
        SplitSizes::Fractions(f) => {
            let total: f64 = f.iter().sum();
            if (total - 1.0).abs() > 1e-6 {
                return Err(data_err!("random_split: fractions sum to {total}, but should sum to 1"));
            }
            if let Some((i, x)) = f.iter().enumerate().find(|(_, x)| !(0.0..=1.0).contains(*x)) {
                return Err(data_err!("random_split: fraction at index {i} is not between 0 and 1: {x}"));
            }
            let mut lens: Vec<usize> = f.iter().map(|x| (n as f64 * x).floor() as usize).collect();
            let rest = n - lens.iter().sum::<usize>();
            let k = lens.len();
            for i in 0..rest {
                lens[i % k] += 1;
            }
            Ok(lens)
        }
    }
}

/// Splits `ds` into non-overlapping random subsets of the given sizes: the same subsets as
/// torch's `random_split(ds, lengths, generator=torch.Generator().manual_seed(seed))`.
pub fn random_split(ds: Arc<dyn Dataset>, sizes: &SplitSizes, seed: u64) -> Result<Vec<Subset>> {
    let lens = split_lengths(ds.len(), sizes)?;
    let perm = torch_randperm(ds.len(), seed)?;
    let mut out = Vec::with_capacity(lens.len());
    let mut start = 0;
    for l in lens {
        out.push(Subset::new(ds.clone(), perm[start..start + l].to_vec())?);
        start += l;
    }
    Ok(out)
}

/// `torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()`: libtorch's own CPU
/// generator seeded for this one draw; the global generator's state is put back afterwards.
pub fn torch_randperm(n: usize, seed: u64) -> Result<Vec<usize>> {
    let saved = crate::tensor::rng::get_state().map_err(|e| data_err!("random_split: {e}"))?;
    tch::manual_seed(seed as i64);
    let perm = tch::Tensor::f_randperm(n as i64, (tch::Kind::Int64, tch::Device::Cpu));
    crate::tensor::rng::set_state(&saved).map_err(|e| data_err!("random_split: {e}"))?;
    let perm = Vec::<i64>::try_from(&perm?)?;
    Ok(perm.into_iter().map(|i| i as usize).collect())
}
