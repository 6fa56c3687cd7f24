//! What a logger takes besides scalars, prepared once for every logger of a run: a histogram of a
//! tensor's values and an image, both made the way `torch.utils.tensorboard` makes them (so a
//! TensorBoard user sees the same buckets and pixels), and where the CSV logger puts them as files.
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// TensorBoard's `HistogramProto`: the values' statistics and the non-empty stretch of the
/// default buckets, each bucket given by its right limit (the first is an empty bucket whose limit
/// is the left edge of the first non-empty one).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub min: f64,
    pub max: f64,
    pub num: f64,
    pub sum: f64,
    pub sum_squares: f64,
    pub bucket_limit: Vec<f64>,
    pub bucket: Vec<f64>,
}

/// `SummaryWriter.default_bins`: `-1e20 … -1e-12, 0, 1e-12 … 1e20`, each 1.1 times the last
/// (the bins TensorFlow's histogram.cc uses), computed with the same float64 steps.
pub fn default_bins() -> Vec<f64> {
    let mut pos = Vec::new();
    let mut v = 1e-12f64;
    while v < 1e20 {
        pos.push(v);
        v *= 1.1;
    }
    let mut bins: Vec<f64> = pos.iter().rev().map(|v| -v).collect();
    bins.push(0.0);
    bins.extend(pos);
    bins
}

impl Histogram {
    /// `torch.utils.tensorboard.summary.make_histogram(values, default_bins)`: `np.histogram`
    /// counts (`edges[i] <= x < edges[i+1]`, the last bucket closed), trimmed to the buckets
    /// between the first and last non-empty one. Values must be finite and not all beyond ±1e20.
    pub fn of(values: &[f64]) -> Result<Histogram, String> {
        if values.is_empty() {
            return Err("log_histogram: the tensor has no element".into());
        }
        if let Some(x) = values.iter().find(|x| !x.is_finite()) {
            return Err(format!("log_histogram: the values must be finite, found {x}"));
        }
        let edges = default_bins();
        let last = edges.len() - 1;
        let mut counts = vec![0f64; last];
        for &x in values {
            if x < edges[0] || x > edges[last] {
                continue;
            }
            // the bucket i with edges[i] <= x < edges[i + 1]; x == the last edge is in the last one
            let i = edges.partition_point(|e| *e <= x).saturating_sub(1).min(last - 1);
            counts[i] += 1.0;
        }
        let (Some(start), Some(end)) = (counts.iter().position(|c| *c > 0.0), counts.iter().rposition(|c| *c > 0.0))
        else {
            return Err("log_histogram: every value is beyond ±1e20, outside TensorBoard's buckets".into());
        };
        let end = end + 1;
        let bucket = if start > 0 { counts[start - 1..end].to_vec() } else { [&[0.0], &counts[..end]].concat() };
        let bucket_limit = edges[start..=end].to_vec();
        Ok(Histogram {
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            num: values.len() as f64,
            sum: values.iter().sum(),
            sum_squares: values.iter().map(|x| x * x).sum(),
            bucket_limit,
            bucket,
        })
    }

    /// The values of a tensor of any shape and real dtype (bool counts as 0/1), as float64.
    pub fn of_tensor(t: &Tensor) -> Result<Histogram, String> {
        if matches!(t.kind(), Kind::ComplexFloat | Kind::ComplexDouble | Kind::ComplexHalf) {
            return Err("log_histogram: complex tensors have no histogram".into());
        }
        let flat = t
            .f_detach()
            .and_then(|t| t.f_to_device(tch::Device::Cpu))
            .and_then(|t| t.f_to_kind(Kind::Double))
            .and_then(|t| t.f_reshape([-1]))
            .map_err(|e| crate::tensor::clean_torch_message(&e.to_string()))?;
        let values = Vec::<f64>::try_from(&flat).map_err(|e| e.to_string())?;
        Histogram::of(&values)
    }

    /// The CSV logger's file: the same fields as TensorBoard's proto.
    pub fn to_json(&self) -> Value {
        json!({
            "min": self.min, "max": self.max, "num": self.num, "sum": self.sum,
            "sum_squares": self.sum_squares, "bucket_limit": self.bucket_limit, "bucket": self.bucket,
        })
    }
}

/// An 8-bit RGB or RGBA image, rows of pixels top to bottom (HWC).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub height: usize,
    pub width: usize,
    /// 3 (RGB) or 4 (RGBA): TensorBoard's `colorspace`.
    pub channels: usize,
    pub pixels: Vec<u8>,
}

impl Image {
    /// `torch.utils.tensorboard.summary.image(tag, tensor, dataformats=…)`: the tensor is put in
    /// HWC order by `dataformats` (a 4-letter `N…` format tiles the batch 8 to a row with
    /// TensorBoard's `make_grid`, one channel becomes three), then scaled by 255 unless it is
    /// uint8, clipped to [0, 255] and truncated to uint8.
    pub fn of_tensor(t: &Tensor, dataformats: &str) -> Result<Image, String> {
        let torch = |e: tch::TchError| crate::tensor::clean_torch_message(&e.to_string());
        let fmt = dataformats.to_ascii_uppercase();
        let valid = match fmt.len() {
            4 => "NCHW",
            3 => "CHW",
            2 => "HW",
            _ => "",
        };
        let mut sorted: Vec<char> = fmt.chars().collect();
        sorted.sort_unstable();
        let mut want: Vec<char> = valid.chars().collect();
        want.sort_unstable();
        if valid.is_empty() || sorted != want {
            return Err(format!(
                "log_image: dataformats must order the letters of \"CHW\", \"HW\" or \"NCHW\" (as \"HWC\", \"NHWC\"), got \"{dataformats}\""
            ));
        }
        if t.dim() != fmt.len() {
            return Err(format!(
                "log_image: a tensor of shape {:?} does not match dataformats \"{dataformats}\"",
                t.size()
            ));
        }
        let uint8 = t.kind() == Kind::Uint8;
        let t = t.f_detach().and_then(|t| t.f_to_device(tch::Device::Cpu)).map_err(torch)?;
        let order =
            |letters: &str| -> Vec<i64> { letters.chars().filter_map(|c| fmt.find(c)).map(|i| i as i64).collect() };
        let hwc = match fmt.len() {
            4 => {
                let nchw = t.f_permute(order("NCHW")).map_err(torch)?;
                make_grid(&nchw).map_err(|e| e.unwrap_or_else(torch))?.f_permute([1, 2, 0]).map_err(torch)?
            }
            3 => {
                let hwc = t.f_permute(order("HWC")).map_err(torch)?;
                if hwc.size()[2] == 1 {
                    hwc.f_expand([-1, -1, 3], false).map_err(torch)?
                } else {
                    hwc
                }
            }
            _ => t
                .f_permute(order("HW"))
                .and_then(|hw| hw.f_unsqueeze(2)?.f_expand([-1, -1, 3], false))
                .map_err(torch)?,
        };
        let s = hwc.size();
        if !matches!(s[2], 3 | 4) {
            return Err(format!("log_image: an image has 1, 3 or 4 channels, got {} (shape {:?})", s[2], t.size()));
        }
        if s[0] == 0 || s[1] == 0 {
            return Err(format!("log_image: the image is empty (shape {:?})", t.size()));
        }
        let scale = if uint8 { 1.0 } else { 255.0 };
        let u8s = hwc
            .f_to_kind(Kind::Float)
            .and_then(|x| x.f_mul_scalar(scale)?.f_clamp(0.0, 255.0)?.f_to_kind(Kind::Uint8)?.f_contiguous())
            .map_err(torch)?;
        let n = u8s.numel();
        let mut pixels = vec![0u8; n];
        u8s.f_copy_data_u8(&mut pixels, n).map_err(torch)?;
        Ok(Image { height: s[0] as usize, width: s[1] as usize, channels: s[2] as usize, pixels })
    }

    /// The image as a PNG file's bytes.
    pub fn png(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            enc.set_color(if self.channels == 4 { png::ColorType::Rgba } else { png::ColorType::Rgb });
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().map_err(|e| format!("cannot encode the image: {e}"))?;
            w.write_image_data(&self.pixels).map_err(|e| format!("cannot encode the image: {e}"))?;
            w.finish().map_err(|e| format!("cannot encode the image: {e}"))?;
        }
        Ok(out)
    }
}

/// TensorBoard's `make_grid(I, ncols=8)` of an NCHW batch: one channel becomes three (three are
/// required), the images tiled 8 to a row on a zero canvas.
fn make_grid(nchw: &Tensor) -> Result<Tensor, Result<String, tch::TchError>> {
    let s = nchw.size();
    let t = if s[1] == 1 { nchw.f_expand([-1, 3, -1, -1], false).map_err(Err)? } else { nchw.shallow_clone() };
    if t.size()[1] != 3 {
        return Err(Ok(format!("log_image: a batch of images (NCHW) must have 1 or 3 channels, got {}", s[1])));
    }
    let (n, h, w) = (s[0], s[2], s[3]);
    if n == 0 {
        return Err(Ok("log_image: the batch has no image".into()));
    }
    let ncols = n.min(8);
    let nrows = (n + ncols - 1) / ncols;
    let canvas = Tensor::f_zeros([3, h * nrows, w * ncols], (t.kind(), tch::Device::Cpu)).map_err(Err)?;
    for i in 0..n {
        let (y, x) = (i / ncols, i % ncols);
        canvas
            .f_narrow(1, y * h, h)
            .and_then(|c| c.f_narrow(2, x * w, w))
            .and_then(|mut c| c.f_copy_(&t.f_get(i)?))
            .map_err(Err)?;
    }
    Ok(canvas)
}

/// Where the CSV logger writes what a CSV cell cannot hold: `dir/<kind>/<tag>/step_<step>.<ext>`.
/// A tag's `/` separates folders (as TensorBoard groups tags); each part keeps letters, digits,
/// `-`, `_` and `.` (anything else becomes `_`), and `.`/`..`/empty parts are refused so the file
/// stays inside the version folder.
pub fn file_path(dir: &Path, kind: &str, tag: &str, step: usize, ext: &str) -> Result<PathBuf, String> {
    let mut p = dir.join(kind);
    for part in tag.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!("the tag \"{tag}\" cannot name a file: its parts between '/' must be names"));
        }
        let clean: String =
            part.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        p.push(clean);
    }
    Ok(p.join(format!("step_{step}.{ext}")))
}

/// Writes a file (atomically), creating its folders.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    crate::fs::write_atomic(path, bytes)
}
