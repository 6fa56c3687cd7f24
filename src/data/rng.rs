//! A small, seedable random number generator (xoshiro256** seeded through SplitMix64), so that
//! shuffles, splits, samplers, synthetic sets and random transforms are reproducible from a seed
//! on every platform and never depend on libtorch's global generator or on thread scheduling.
pub struct Rng {
    s: [u64; 4],
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes several words into one seed (`mix(&[seed, epoch])`).
pub fn mix(parts: &[u64]) -> u64 {
    let mut x = 0x6A09_E667_F3BC_C909u64;
    for &p in parts {
        x ^= p;
        x = splitmix(&mut x);
    }
    x
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let s = [splitmix(&mut x), splitmix(&mut x), splitmix(&mut x), splitmix(&mut x)];
        Rng { s }
    }

    /// A generator for one stream named by several words (seed, epoch, batch, …).
    pub fn from_parts(parts: &[u64]) -> Rng {
        Rng::new(mix(parts))
    }

    pub fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n) (n > 0), without modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }

    /// A random permutation of 0..n.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        self.shuffle(&mut v);
        v
    }
}

/// A seed drawn from libtorch's global generator, so that `torch::manual_seed` also fixes the
/// seed of loaders and splits created without an explicit one (as in PyTorch).
pub fn seed_from_torch() -> u64 {
    tch::Tensor::f_randint(i64::MAX, [1], (tch::Kind::Int64, tch::Device::Cpu))
        .and_then(|t| t.f_int64_value(&[0]))
        .map(|v| v as u64)
        .unwrap_or(0)
}
