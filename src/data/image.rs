//! An image folder (torchvision ImageFolder): one subfolder per class, PNG and JPEG files decoded
//! in Rust on the loader's workers. Samples `[image: [C, H, W], label: int64]`, float32 in [0, 1]
//! (ToTensor) or raw uint8.
use super::{check_indices, Batch, Dataset, FetchCtx, Result};
use crate::data_err;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// The most pixels an image may have; checked from its header, before any pixel memory is
/// allocated. It is Pillow's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS` × 2, where
/// Pillow refuses an image), so what torchvision opens, lt opens: ~179 megapixels, e.g.
/// 13,377 × 13,377, up to 716 MB decoded as RGBA.
pub const MAX_PIXELS: u64 = 178_956_970;

fn check_pixels(width: u64, height: u64, name: &str) -> Result<()> {
    if width.saturating_mul(height) > MAX_PIXELS {
        return Err(data_err!("{name}: the image claims {width}x{height} pixels, more than the {MAX_PIXELS} accepted (a decompression bomb?)"));
    }
    Ok(())
}

pub struct ImageFolder {
    root: PathBuf,
    files: Vec<(PathBuf, i64)>,
    classes: Vec<String>,
    float: bool,
}

/// A decoded image: pixels in HWC order.
pub struct Decoded {
    pub data: Vec<u8>,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

fn decode_png(bytes: &[u8], name: &str) -> Result<Decoded> {
    let mut d = png::Decoder::new(bytes);
    d.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut r = d.read_info().map_err(|e| data_err!("{name}: bad PNG: {e}"))?;
    check_pixels(r.info().width as u64, r.info().height as u64, name)?;
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).map_err(|e| data_err!("{name}: bad PNG: {e}"))?;
    buf.truncate(info.buffer_size());
    let channels = info.color_type.samples();
    Ok(Decoded { data: buf, height: info.height as usize, width: info.width as usize, channels })
}

fn decode_jpeg(bytes: &[u8], name: &str) -> Result<Decoded> {
    let mut d = jpeg_decoder::Decoder::new(bytes);
    d.read_info().map_err(|e| data_err!("{name}: bad JPEG: {e}"))?;
    let info = d.info().ok_or_else(|| data_err!("{name}: bad JPEG: no image info"))?;
    check_pixels(info.width as u64, info.height as u64, name)?;
    let px = d.decode().map_err(|e| data_err!("{name}: bad JPEG: {e}"))?;
    let info = d.info().ok_or_else(|| data_err!("{name}: bad JPEG: no image info"))?;
    let (data, channels) = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => (px, 1),
        jpeg_decoder::PixelFormat::RGB24 => (px, 3),
        jpeg_decoder::PixelFormat::L16 => (px.chunks(2).map(|c| c[0]).collect(), 1),
        jpeg_decoder::PixelFormat::CMYK32 => (
            px.chunks(4)
                .flat_map(|c| {
                    let k = 255 - c[3] as u32;
                    [c[0], c[1], c[2]].map(|v| ((255 - v as u32) * k / 255) as u8)
                })
                .collect(),
            3,
        ),
    };
    Ok(Decoded { data, height: info.height as usize, width: info.width as usize, channels })
}

/// Decodes a PNG or JPEG file (by its content, not its name).
pub fn decode(path: &Path) -> Result<Decoded> {
    let name = path.display().to_string();
    let bytes = super::files::read(path, "image")?;
    if bytes.starts_with(b"\x89PNG") {
        decode_png(&bytes, &name)
    } else if bytes.starts_with(&[0xFF, 0xD8]) {
        decode_jpeg(&bytes, &name)
    } else {
        Err(data_err!("{name}: not a PNG or JPEG image"))
    }
}

/// Writes a `[C, H, W]` or `[H, W]` tensor (uint8, or float in [0, 1]) as a PNG.
pub fn save_png(t: &Tensor, path: &Path) -> Result<()> {
    let t = t.f_detach()?.f_to_device(tch::Device::Cpu)?;
    let t = if t.dim() == 2 { t.f_unsqueeze(0)? } else { t };
    let s = t.size();
    if s.len() != 3 || !matches!(s[0], 1..=4) {
        return Err(data_err!("save_image: expected a [C, H, W] tensor with 1 to 4 channels, got {s:?}"));
    }
    let t = if t.kind() == Kind::Uint8 {
        t
    } else {
        t.f_to_kind(Kind::Float)?.f_mul_scalar(255.0)?.f_round()?.f_clamp(0.0, 255.0)?.f_to_kind(Kind::Uint8)?
    };
    let hwc = t.f_permute([1, 2, 0])?.f_contiguous()?;
    let n = hwc.numel();
    let mut data = vec![0u8; n];
    hwc.f_copy_data_u8(&mut data, n)?;
    let f = std::fs::File::create(path).map_err(|e| data_err!("{}: {e}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), s[2] as u32, s[1] as u32);
    enc.set_color(match s[0] {
        1 => png::ColorType::Grayscale,
        2 => png::ColorType::GrayscaleAlpha,
        3 => png::ColorType::Rgb,
        _ => png::ColorType::Rgba,
    });
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(|e| data_err!("{}: {e}", path.display()))?;
    w.write_image_data(&data).map_err(|e| data_err!("{}: {e}", path.display()))?;
    w.finish().map_err(|e| data_err!("{}: {e}", path.display()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| data_err!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

impl ImageFolder {
    /// Scans `root/<class>/<image>`: classes are the subfolders in sorted order.
    pub fn new(root: &Path, float: bool) -> Result<ImageFolder> {
        if !root.is_dir() {
            return Err(data_err!("data::image_folder: no such directory: {}", root.display()));
        }
        let mut classes = Vec::new();
        let mut files = Vec::new();
        for dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
            let label = classes.len() as i64;
            classes.push(dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default());
            for f in sorted_entries(&dir)? {
                let ext = f.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
                if f.is_file() && EXTENSIONS.contains(&ext.as_str()) {
                    files.push((f, label));
                }
            }
        }
        if classes.is_empty() {
            return Err(data_err!("data::image_folder: {} has no class subfolders", root.display()));
        }
        if files.is_empty() {
            return Err(data_err!(
                "data::image_folder: no .png / .jpg / .jpeg files in the class folders of {}",
                root.display()
            ));
        }
        Ok(ImageFolder { root: root.to_path_buf(), files, classes, float })
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }
    fn get_batch(&self, indices: &[usize], _ctx: &FetchCtx) -> Result<Batch> {
        check_indices(indices, self.files.len(), "image_folder")?;
        let mut data = Vec::new();
        let mut shape: Option<(usize, usize, usize, usize)> = None; // h, w, c, first index
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let (path, label) = &self.files[i];
            let img = decode(path)?;
            match shape {
                None => shape = Some((img.height, img.width, img.channels, i)),
                Some((h, w, c, j)) if (h, w, c) != (img.height, img.width, img.channels) => {
                    return Err(data_err!(
                        "image_folder: {} is {}x{} with {} channels, but {} is {h}x{w} with {c}; images in a batch must have the same size (use data::random_crop)",
                        path.display(),
                        img.height,
                        img.width,
                        img.channels,
                        self.files[j].0.display()
                    ))
                }
                _ => {}
            }
            data.extend_from_slice(&img.data);
            labels.push(*label);
        }
        let (h, w, c, _) = shape.ok_or_else(|| data_err!("image_folder: empty batch"))?;
        let x = Tensor::f_from_slice(&data)?
            .f_reshape([indices.len() as i64, h as i64, w as i64, c as i64])?
            .f_permute([0, 3, 1, 2])?
            .f_contiguous()?;
        let x = if self.float { x.f_to_kind(Kind::Float)?.f_div_scalar(255.0)? } else { x };
        Ok(Batch::List(vec![Batch::Tensor(x), Batch::Tensor(Tensor::f_from_slice(&labels)?)]))
    }
    fn describe(&self) -> String {
        format!("ImageFolder({}: {} images, {} classes)", self.root.display(), self.files.len(), self.classes.len())
    }
    fn per_sample_work(&self) -> bool {
        true
    }
    fn classes(&self) -> Option<Vec<String>> {
        Some(self.classes.clone())
    }
}
