//! CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum TensorBoard's TFRecord
//! framing uses and the one lt checkpoints store for their header and every tensor.
//!
//! On x86-64 with SSE 4.2 (every x86-64 CPU since 2008) it runs on the CPU's `crc32` instruction,
//! several GB/s, so checking a checkpoint costs little next to reading it; elsewhere a portable
//! slicing-by-8 table version (about 1–2 GB/s). Both give the same values (the tests compare them).

/// The eight lookup tables of the slicing-by-8 version (table 0 is the classic byte table).
fn tables() -> &'static [[u32; 256]; 8] {
    static TABLES: std::sync::OnceLock<[[u32; 256]; 8]> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let mut t = [[0u32; 256]; 8];
        for (i, e) in t[0].iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
            }
            *e = c;
        }
        // table k: the byte's CRC followed by k zero bytes
        for k in 1..8 {
            let (done, rest) = t.split_at_mut(k);
            for (i, e) in rest[0].iter_mut().enumerate() {
                let prev = done[k - 1][i];
                *e = (prev >> 8) ^ done[0][(prev & 0xff) as usize];
            }
        }
        t
    })
}

/// CRC-32C of `data` (`crc32c(b"123456789") == 0xE3069283`, RFC 3720's check value).
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
}

/// The CRC-32C of the bytes whose CRC is `crc` followed by `data`: `crc32c_append(crc32c(a), b)`
/// is `crc32c(a ++ b)`, so a checksum can be computed in pieces.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU has SSE 4.2, checked just above.
            return !unsafe { hw::update(!crc, data) };
        }
    }
    !software_update(!crc, data)
}

/// [`crc32c`] by the portable table version only (for tests, and for CPUs without the
/// instruction).
pub fn crc32c_software(data: &[u8]) -> u32 {
    !software_update(!0, data)
}

/// Slicing-by-8 over the raw (pre- and post-inverted) CRC register.
fn software_update(mut crc: u32, data: &[u8]) -> u32 {
    let t = tables();
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][((hi >> 8) & 0xff) as usize]
            ^ t[1][((hi >> 16) & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        crc = t[0][((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// The linear map "run the raw CRC register over `BLOCK` zero bytes", as 32 columns (the image of
/// each register bit): what lets independent CRCs of consecutive blocks be joined.
const BLOCK: usize = 8192;

#[cfg(target_arch = "x86_64")]
fn shift_block() -> &'static [u32; 32] {
    static M: std::sync::OnceLock<[u32; 32]> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        // one zero bit: bit 0 leaves with the polynomial, every other bit moves down one
        let mut m = [0u32; 32];
        m[0] = 0x82F6_3B78;
        for (n, col) in m.iter_mut().enumerate().skip(1) {
            *col = 1 << (n - 1);
        }
        // squared 16 times: 2^16 zero bits = 8192 zero bytes
        for _ in 0..(BLOCK * 8).trailing_zeros() {
            let sq: Vec<u32> = m.iter().map(|&c| apply(&m, c)).collect();
            m.copy_from_slice(&sq);
        }
        m
    })
}

/// `m` applied to the register value `v`.
#[cfg(target_arch = "x86_64")]
fn apply(m: &[u32; 32], mut v: u32) -> u32 {
    let mut out = 0;
    let mut i = 0;
    while v != 0 {
        if v & 1 != 0 {
            out ^= m[i];
        }
        v >>= 1;
        i += 1;
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod hw {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};

    fn word(b: &[u8], i: usize) -> u64 {
        u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
    }

    /// The raw CRC register after `data`, on the `crc32` instruction: three blocks at a time as
    /// three independent chains (the instruction's latency is three times its throughput), joined
    /// by shifting over the blocks' length; the rest one word at a time.
    ///
    /// # Safety
    /// The CPU must support SSE 4.2.
    #[target_feature(enable = "sse4.2")]
    pub unsafe fn update(crc: u32, data: &[u8]) -> u32 {
        const B: usize = super::BLOCK;
        let mut c = crc;
        let mut triples = data.chunks_exact(3 * B);
        if data.len() >= 3 * B {
            let shift = super::shift_block();
            for t in &mut triples {
                let (a, rest) = t.split_at(B);
                let (b, d) = rest.split_at(B);
                let (mut ca, mut cb, mut cd) = (c as u64, 0u64, 0u64);
                for i in (0..B).step_by(8) {
                    ca = _mm_crc32_u64(ca, word(a, i));
                    cb = _mm_crc32_u64(cb, word(b, i));
                    cd = _mm_crc32_u64(cd, word(d, i));
                }
                let ab = super::apply(shift, ca as u32) ^ cb as u32;
                c = super::apply(shift, ab) ^ cd as u32;
            }
        }
        let tail = triples.remainder();
        let mut c = c as u64;
        let mut words = tail.chunks_exact(8);
        for w in &mut words {
            c = _mm_crc32_u64(c, u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let mut c = c as u32;
        for &b in words.remainder() {
            c = _mm_crc32_u8(c, b);
        }
        c
    }
}

/// A CRC as lt writes it in checkpoints: eight lowercase hex digits.
pub fn hex(crc: u32) -> String {
    format!("{crc:08x}")
}

/// Reads a CRC written by [`hex`] (exactly eight hex digits).
pub fn parse_hex(s: &str) -> Option<u32> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}
