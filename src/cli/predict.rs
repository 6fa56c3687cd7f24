//! What `lt predict` does with the predictions: each dataloader's `predict_step` outputs
//! concatenated along the batch dimension (tensors, or maps of tensors: one entry per key), then
//! either a summary line per entry or, with `--output FILE`, a file by its extension — `.safetensors`
//! (every entry), `.npy` or `.csv` (one entry) — the job of Lightning's `BasePredictionWriter`.
use crate::tensor::Tensor;
use rhai::{Dynamic, Map};
use std::path::Path;

/// The formats `--output` writes, by extension.
const FORMATS: &str = ".safetensors, .npy or .csv";

/// Named prediction tensors: `predictions` (or `predictions.<key>` for map outputs), with
/// `/dataloader_idx_N` when there are several dataloaders.
pub fn collect(outs: &[Vec<Dynamic>]) -> Result<Vec<(String, tch::Tensor)>, String> {
    let several = outs.len() > 1;
    let mut entries = Vec::new();
    for (dl, batches) in outs.iter().enumerate() {
        let suffix = if several { format!("/dataloader_idx_{dl}") } else { String::new() };
        // entry name → the batches' tensors, in order
        let mut parts: Vec<(String, Vec<tch::Tensor>)> = Vec::new();
        for (b, out) in batches.iter().enumerate() {
            for (name, t) in batch_tensors(out).map_err(|what| {
                format!("predict_step returned {what} for dataloader {dl} batch {b}; predictions are tensors or maps of tensors")
            })? {
                match parts.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, v)) => v.push(t),
                    None => parts.push((name, vec![t])),
                }
            }
        }
        for (name, ts) in parts {
            let t = tch::Tensor::f_cat(&ts, 0).map_err(|e| {
                format!("predictions `{name}` of dataloader {dl} cannot be joined along the batch dimension: {e}")
            })?;
            entries.push((format!("{name}{suffix}"), t));
        }
    }
    Ok(entries)
}

/// One batch's output as named tensors; `Err` names what it is when it is neither a tensor nor
/// a map of tensors (nothing: `()`, no entry).
fn batch_tensors(out: &Dynamic) -> Result<Vec<(String, tch::Tensor)>, String> {
    if out.is_unit() {
        return Ok(Vec::new());
    }
    if let Some(t) = out.read_lock::<Tensor>() {
        return Ok(vec![("predictions".into(), scalar_as_row(t.handle()))]);
    }
    if let Some(m) = out.read_lock::<Map>() {
        return m
            .iter()
            .map(|(k, v)| match v.read_lock::<Tensor>() {
                Some(t) => Ok((format!("predictions.{k}"), scalar_as_row(t.handle()))),
                None => Err(format!("a map whose `{k}` is a {}", v.type_name())),
            })
            .collect();
    }
    Err(format!("a {}", out.type_name()))
}

/// A 0-d output (one value per batch) becomes one row.
fn scalar_as_row(t: tch::Tensor) -> tch::Tensor {
    if t.dim() == 0 {
        t.reshape([1])
    } else {
        t
    }
}

/// A line per entry: its name, shape and dtype.
pub fn summary(entries: &[(String, tch::Tensor)]) -> String {
    entries.iter().map(|(n, t)| format!("{n}: {:?} {:?}", t.size(), t.kind())).collect::<Vec<_>>().join("\n")
}

/// Writes the predictions to `path` by its extension, atomically; an existing file is left alone
/// (lt does not overwrite what it did not create).
pub fn write(path: &Path, entries: &[(String, tch::Tensor)]) -> Result<(), String> {
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(format!(
            "--output {}: the file exists; lt does not overwrite it (remove it or choose another path)",
            path.display()
        ));
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let cpu: Vec<(String, tch::Tensor)> = entries
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.f_detach()?.f_to_device(tch::Device::Cpu)?.f_contiguous()?)))
        .collect::<Result<_, tch::TchError>>()
        .map_err(|e| e.to_string())?;
    let single = || match cpu.as_slice() {
        [(_, t)] => Ok(t),
        _ => Err(format!(
            "--output {}: .{ext} holds one array, the predictions are {} ({}); write .safetensors",
            path.display(),
            cpu.len(),
            cpu.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
        )),
    };
    match ext {
        "safetensors" => crate::nn::io::save_safetensors(path, &cpu, None),
        "npy" => {
            let t = single()?;
            crate::fs::write_atomic_with(path, |tmp| t.write_npy(tmp).map_err(|e| e.to_string()))
        }
        "csv" => {
            let text = csv_text(&cpu[0].0, single()?)?;
            crate::fs::write_atomic(path, text.as_bytes())
        }
        other => Err(format!("--output {}: unknown format \".{other}\"; use {FORMATS}", path.display())),
    }
}

/// A 1-d or 2-d tensor as CSV: a header (`name` or `name_0,name_1,…`), then one row per sample.
fn csv_text(name: &str, t: &tch::Tensor) -> Result<String, String> {
    let t = match t.dim() {
        1 => t.reshape([-1, 1]),
        2 => t.shallow_clone(),
        d => return Err(format!("CSV holds 1-d or 2-d predictions; `{name}` has {d} dimensions ({:?})", t.size())),
    };
    let (rows, cols) = (t.size()[0] as usize, t.size()[1] as usize);
    let values = Vec::<f64>::try_from(t.to_kind(tch::Kind::Double).reshape([-1])).map_err(|e| e.to_string())?;
    let mut out = if cols == 1 {
        name.to_string()
    } else {
        (0..cols).map(|j| format!("{name}_{j}")).collect::<Vec<_>>().join(",")
    };
    out.push('\n');
    for r in 0..rows {
        out.push_str(&values[r * cols..(r + 1) * cols].iter().map(|v| format!("{v}")).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    Ok(out)
}
