//! Samplers: which sample indices an epoch visits, in which order. Every sampler is a pure
//! function of `(dataset length, seed, epoch)`, so an epoch can be replayed and every rank of a
//! distributed run agrees on the permutation.
use super::rng::Rng;
use super::Result;
use crate::data_err;

#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    /// 0, 1, …, n-1 (torch SequentialSampler).
    Sequential,
    /// A permutation per epoch, or draws with replacement (torch RandomSampler).
    Random { replacement: bool, num_samples: Option<usize> },
    /// Index `i` drawn with probability ∝ `weights[i]` (torch WeightedRandomSampler).
    WeightedRandom { weights: Vec<f64>, num_samples: usize, replacement: bool },
    /// This rank's share of `base`'s indices, padded by repeating indices so that every rank
    /// gets the same count, or truncated with `drop_last` (torch DistributedSampler; with a
    /// weighted base, Lightning's DistributedSamplerWrapper).
    Distributed { base: Box<Sampler>, rank: usize, world_size: usize, drop_last: bool },
}

impl Sampler {
    /// A weighted sampler, checking the weights as torch.multinomial does.
    pub fn weighted(weights: Vec<f64>, num_samples: usize, replacement: bool) -> Result<Sampler> {
        if weights.is_empty() {
            return Err(data_err!("weighted_random_sampler: weights must not be empty"));
        }
        if let Some((i, w)) = weights.iter().enumerate().find(|(_, w)| !w.is_finite() || **w < 0.0) {
            return Err(data_err!(
                "weighted_random_sampler: weight {i} is {w}; weights must be finite and non-negative"
            ));
        }
        if weights.iter().sum::<f64>() <= 0.0 {
            return Err(data_err!("weighted_random_sampler: the weights sum to zero"));
        }
        if num_samples == 0 {
            return Err(data_err!("weighted_random_sampler: num_samples must be positive, got 0"));
        }
        let positive = weights.iter().filter(|w| **w > 0.0).count();
        if !replacement && num_samples > positive {
            return Err(data_err!(
                "weighted_random_sampler: cannot draw {num_samples} samples without replacement from {positive} non-zero weights"
            ));
        }
        Ok(Sampler::WeightedRandom { weights, num_samples, replacement })
    }

    /// `base` split across `world_size` ranks.
    pub fn distributed(base: Sampler, rank: usize, world_size: usize, drop_last: bool) -> Result<Sampler> {
        if world_size == 0 {
            return Err(data_err!("distributed sampler: world_size must be at least 1"));
        }
        if rank >= world_size {
            return Err(data_err!(
                "distributed sampler: invalid rank {rank}, rank should be in the interval [0, {}]",
                world_size - 1
            ));
        }
        let base = match base {
            Sampler::Distributed { base, .. } => base,
            b => Box::new(b),
        };
        Ok(Sampler::Distributed { base, rank, world_size, drop_last })
    }

    /// Whether the order changes between epochs.
    pub fn is_random(&self) -> bool {
        match self {
            Sampler::Sequential => false,
            Sampler::Distributed { base, .. } => base.is_random(),
            _ => true,
        }
    }

    /// How many indices one epoch yields for a dataset of `n` samples.
    pub fn num_samples(&self, n: usize) -> usize {
        match self {
            Sampler::Sequential => n,
            Sampler::Random { num_samples, .. } => num_samples.unwrap_or(n),
            Sampler::WeightedRandom { num_samples, .. } => *num_samples,
            Sampler::Distributed { base, world_size, drop_last, .. } => {
                let total = base.num_samples(n);
                if *drop_last {
                    total / world_size
                } else {
                    total.div_ceil(*world_size)
                }
            }
        }
    }

    /// Checks the sampler against the dataset it will index.
    pub fn check(&self, n: usize) -> Result<()> {
        match self {
            Sampler::WeightedRandom { weights, .. } if weights.len() > n => Err(data_err!(
                "weighted_random_sampler: {} weights, but the dataset has only {n} samples",
                weights.len()
            )),
            Sampler::Random { num_samples: Some(0), .. } => {
                Err(data_err!("random_sampler: num_samples should be a positive integer value, but got num_samples=0"))
            }
            Sampler::Distributed { base, .. } => base.check(n),
            _ => Ok(()),
        }
    }

    /// The indices of epoch `epoch` for a dataset of `n` samples.
    pub fn indices(&self, n: usize, seed: u64, epoch: u64) -> Vec<usize> {
        let mut rng = Rng::from_parts(&[seed, epoch]);
        self.indices_with(n, &mut rng)
    }

    fn indices_with(&self, n: usize, rng: &mut Rng) -> Vec<usize> {
        match self {
            Sampler::Sequential => (0..n).collect(),
            Sampler::Random { replacement, num_samples } => {
                let k = num_samples.unwrap_or(n);
                if n == 0 {
                    return Vec::new();
                }
                if *replacement {
                    (0..k).map(|_| rng.below(n as u64) as usize).collect()
                } else {
                    // as torch: whole permutations, then the head of one more
                    let mut out = Vec::with_capacity(k);
                    while out.len() + n <= k {
                        out.extend(rng.permutation(n));
                    }
                    let rest = k - out.len();
                    if rest > 0 {
                        out.extend(rng.permutation(n).into_iter().take(rest));
                    }
                    out
                }
            }
            Sampler::WeightedRandom { weights, num_samples, replacement } => {
                if *replacement {
                    let mut cum = Vec::with_capacity(weights.len());
                    let mut acc = 0.0;
                    for w in weights {
                        acc += w;
                        cum.push(acc);
                    }
                    (0..*num_samples)
                        .map(|_| {
                            let u = rng.uniform() * acc;
                            // first index whose cumulative weight exceeds u (never a zero weight)
                            let i = cum.partition_point(|&c| c <= u);
                            i.min(weights.len() - 1)
                        })
                        .collect()
                } else {
                    // Efraimidis–Spirakis: the k largest keys ln(u)/w are a draw without
                    // replacement with the same law as sequential multinomial sampling.
                    let mut keys: Vec<(f64, usize)> = weights
                        .iter()
                        .enumerate()
                        .filter(|(_, w)| **w > 0.0)
                        .map(|(i, w)| ((1.0 - rng.uniform()).ln() / w, i))
                        .collect();
                    keys.sort_by(|a, b| b.0.total_cmp(&a.0));
                    keys.into_iter().take(*num_samples).map(|(_, i)| i).collect()
                }
            }
            Sampler::Distributed { base, rank, world_size, drop_last } => {
                let mut idx = base.indices_with(n, rng);
                let per_rank = self.num_samples(n);
                let total = per_rank * world_size;
                if idx.is_empty() {
                    return Vec::new();
                }
                if !drop_last {
                    // pad by repeating from the start, as torch does
                    let mut i = 0;
                    let len = idx.len();
                    while idx.len() < total {
                        idx.push(idx[i % len]);
                        i += 1;
                    }
                } else {
                    idx.truncate(total);
                }
                idx.into_iter().skip(*rank).step_by(*world_size).take(per_rank).collect()
            }
        }
    }
}
