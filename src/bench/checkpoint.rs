//! Checkpoint save/load throughput: a 100M-parameter state (10 tensors of 10M float32) written as an
//! lt checkpoint (safetensors + JSON header with checksums, atomic) and read back (every checksum
//! checked), and the CRC-32C over the same bytes alone.
use crate::checkpoint::Checkpoint;
use std::time::Instant;

pub struct CheckpointFigures {
    pub megabytes: f64,
    pub save_mb_s: f64,
    pub load_mb_s: f64,
    pub crc_mb_s: f64,
}

pub fn run(dir: &std::path::Path) -> Result<CheckpointFigures, String> {
    let mut ck = Checkpoint::new(serde_json::json!({"epoch": 0, "global_step": 0}));
    for i in 0..10 {
        ck.tensors.push((
            format!("state_dict.layer{i}.weight"),
            tch::Tensor::randn([10_000_000], (tch::Kind::Float, tch::Device::Cpu)),
        ));
    }
    let megabytes = 10.0 * 10_000_000.0 * 4.0 / 1e6;
    let path = dir.join("bench.ckpt");
    let (mut save, mut load) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..3 {
        let t = Instant::now();
        ck.save(&path)?;
        save = save.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let back = Checkpoint::load(&path)?;
        load = load.min(t.elapsed().as_secs_f64());
        std::hint::black_box(back.tensors.len());
    }
    let _ = std::fs::remove_file(&path);
    let mut crc = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        for (_, x) in &ck.tensors {
            std::hint::black_box(crate::checksum::crc32c(crate::nn::io::cpu_bytes(x).ok_or("not a CPU tensor")?));
        }
        crc = crc.min(t.elapsed().as_secs_f64());
    }
    Ok(CheckpointFigures {
        megabytes,
        save_mb_s: megabytes / save,
        load_mb_s: megabytes / load,
        crc_mb_s: megabytes / crc,
    })
}
