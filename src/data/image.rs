//! Images: PNG and JPEG decoding in Rust (header sizes checked before any pixel memory is
//! allocated), `read_image` with Pillow's mode conversions, and datasets decoded on the loader's
//! workers: an image folder (torchvision ImageFolder), a list of files, and image / mask pairs
//! for segmentation.
use super::batch::collate;
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

/// The channels `read_image` returns (Pillow's `Image.convert` modes; torchvision ImageReadMode).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// As stored: 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA) channels.
    Unchanged,
    /// Grayscale, Pillow's `L = (19595 R + 38470 G + 7471 B + 2^15) >> 16` (ITU-R 601-2 luma).
    L,
    Rgb,
    Rgba,
}

impl Mode {
    pub fn parse(s: &str, what: &str) -> Result<Mode> {
        match s {
            "unchanged" => Ok(Mode::Unchanged),
            "L" => Ok(Mode::L),
            "RGB" => Ok(Mode::Rgb),
            "RGBA" => Ok(Mode::Rgba),
            _ => Err(data_err!("{what}: unknown mode '{s}'; valid modes: \"RGB\", \"L\", \"RGBA\", \"unchanged\"")),
        }
    }
}

fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

impl Decoded {
    /// Converts the pixels to `mode` as Pillow's `convert` does (alpha is dropped, not composited).
    pub fn convert(self, mode: Mode) -> Decoded {
        let c = self.channels;
        let out = match mode {
            Mode::Unchanged => return self,
            Mode::L => 1,
            Mode::Rgb => 3,
            Mode::Rgba => 4,
        };
        if out == c {
            return self;
        }
        let mut data = Vec::with_capacity(self.height * self.width * out);
        for px in self.data.chunks_exact(c) {
            let (gray, rgb, alpha) = match c {
                1 => (px[0], [px[0]; 3], 255),
                2 => (px[0], [px[0]; 3], px[1]),
                3 => (luma(px[0], px[1], px[2]), [px[0], px[1], px[2]], 255),
                _ => (luma(px[0], px[1], px[2]), [px[0], px[1], px[2]], px[3]),
            };
            match out {
                1 => data.push(gray),
                3 => data.extend_from_slice(&rgb),
                _ => {
                    data.extend_from_slice(&rgb);
                    data.push(alpha)
                }
            }
        }
        Decoded { data, height: self.height, width: self.width, channels: out }
    }

    /// A uint8 `[C, H, W]` tensor.
    pub fn to_tensor(&self) -> Result<Tensor> {
        Ok(Tensor::f_from_slice(&self.data)?
            .f_reshape([self.height as i64, self.width as i64, self.channels as i64])?
            .f_permute([2, 0, 1])?
            .f_contiguous()?)
    }
}

/// Reads a PNG or JPEG file as a uint8 `[C, H, W]` tensor in `mode` (torchvision read_image).
pub fn read_image(path: &Path, mode: Mode) -> Result<Tensor> {
    decode(path)?.convert(mode).to_tensor()
}

/// Reads a segmentation mask: one value per pixel, `[H, W]`. Palette PNGs give their palette
/// indices (the class ids of VOC-style masks, as Pillow's mode "P"), grayscale files their values;
/// a file with colour channels is an error.
pub fn read_mask(path: &Path) -> Result<Tensor> {
    let name = path.display().to_string();
    let bytes = super::files::read(path, "mask")?;
    let d = if bytes.starts_with(b"\x89PNG") {
        let mut probe = png::Decoder::new(&bytes[..]);
        probe.set_transformations(png::Transformations::IDENTITY);
        let r = probe.read_info().map_err(|e| data_err!("{name}: bad PNG: {e}"))?;
        if r.info().color_type == png::ColorType::Indexed {
            palette_indices(r, &name)?
        } else {
            decode_png(&bytes, &name)?
        }
    } else if bytes.starts_with(&[0xFF, 0xD8]) {
        decode_jpeg(&bytes, &name)?
    } else {
        return Err(data_err!("{name}: not a PNG or JPEG image"));
    };
    let d = if d.channels == 2 { d.convert(Mode::L) } else { d };
    if d.channels != 1 {
        return Err(data_err!(
            "{name}: a mask must have one channel (grayscale or palette PNG), this one has {}",
            d.channels
        ));
    }
    Ok(Tensor::f_from_slice(&d.data)?.f_reshape([d.height as i64, d.width as i64])?.f_to_kind(Kind::Int64)?)
}

/// The palette indices of an indexed PNG, unpacked from 1, 2 or 4 bits to one byte each.
fn palette_indices(mut r: png::Reader<&[u8]>, name: &str) -> Result<Decoded> {
    let (width, height) = (r.info().width as usize, r.info().height as usize);
    check_pixels(width as u64, height as u64, name)?;
    let bits = r.info().bit_depth as usize;
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).map_err(|e| data_err!("{name}: bad PNG: {e}"))?;
    let line = info.line_size;
    let mut data = Vec::with_capacity(width * height);
    for row in buf.chunks(line).take(height) {
        for x in 0..width {
            let bit = x * bits;
            let byte = row[bit / 8];
            let shift = 8 - bits - bit % 8;
            data.push((byte >> shift) & ((1u16 << bits) - 1) as u8);
        }
    }
    Ok(Decoded { data, height, width, channels: 1 })
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

fn is_image_file(f: &Path) -> bool {
    let ext = f.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    f.is_file() && EXTENSIONS.contains(&ext.as_str())
}

/// Collates per-file samples, with a hint when the images differ in size.
fn collate_images(samples: Vec<Batch>, indices: &[usize], what: &str) -> Result<Batch> {
    collate(samples, indices).map_err(|e| {
        data_err!("{what}: {e} (images of different sizes need data::transforms::resize or a crop before batching)")
    })
}

/// Images from a list of files, with optional int labels: samples are the uint8 `[C, H, W]`
/// image, or `[image, label]`.
pub struct ImageFiles {
    files: Vec<PathBuf>,
    labels: Option<Vec<i64>>,
    mode: Mode,
}

impl ImageFiles {
    pub fn new(files: Vec<PathBuf>, labels: Option<Vec<i64>>, mode: Mode) -> Result<ImageFiles> {
        if files.is_empty() {
            return Err(data_err!("data::image_files: the list of files is empty"));
        }
        if let Some(l) = &labels {
            if l.len() != files.len() {
                return Err(data_err!("data::image_files: {} files but {} labels", files.len(), l.len()));
            }
        }
        if let Some(f) = files.iter().find(|f| !f.is_file()) {
            return Err(data_err!("data::image_files: no such file: {}", f.display()));
        }
        Ok(ImageFiles { files, labels, mode })
    }
}

impl Dataset for ImageFiles {
    fn len(&self) -> usize {
        self.files.len()
    }
    fn get_batch(&self, indices: &[usize], _ctx: &FetchCtx) -> Result<Batch> {
        check_indices(indices, self.files.len(), "image_files")?;
        let mut samples = Vec::with_capacity(indices.len());
        for &i in indices {
            let x = Batch::Tensor(read_image(&self.files[i], self.mode)?);
            samples.push(match &self.labels {
                Some(l) => Batch::List(vec![x, Batch::Int(l[i])]),
                None => x,
            });
        }
        collate_images(samples, indices, "image_files")
    }
    fn describe(&self) -> String {
        format!("ImageFiles({} images{})", self.files.len(), if self.labels.is_some() { ", labelled" } else { "" })
    }
    fn per_sample_work(&self) -> bool {
        true
    }
}

/// Images and their segmentation masks, paired by file stem (`img/0001.jpg` with `masks/0001.png`):
/// samples `[image: uint8 [C, H, W], mask: int64 [H, W]]`.
pub struct ImagePairs {
    pairs: Vec<(PathBuf, PathBuf)>,
    mode: Mode,
    root: PathBuf,
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default()
}

impl ImagePairs {
    pub fn new(images: &Path, masks: &Path, mode: Mode) -> Result<ImagePairs> {
        const W: &str = "data::image_pairs";
        for d in [images, masks] {
            if !d.is_dir() {
                return Err(data_err!("{W}: no such directory: {}", d.display()));
            }
        }
        let imgs: Vec<PathBuf> = sorted_entries(images)?.into_iter().filter(|p| is_image_file(p)).collect();
        let mut by_stem = std::collections::BTreeMap::new();
        for m in sorted_entries(masks)?.into_iter().filter(|p| is_image_file(p)) {
            if let Some(other) = by_stem.insert(stem(&m), m.clone()) {
                return Err(data_err!("{W}: two masks for one image: {} and {}", other.display(), m.display()));
            }
        }
        let mut pairs = Vec::with_capacity(imgs.len());
        for i in imgs {
            match by_stem.remove(&stem(&i)) {
                Some(m) => pairs.push((i, m)),
                None => return Err(data_err!("{W}: image {} has no mask in {}", i.display(), masks.display())),
            }
        }
        if let Some(m) = by_stem.values().next() {
            return Err(data_err!("{W}: mask {} has no matching image in {}", m.display(), images.display()));
        }
        if pairs.is_empty() {
            return Err(data_err!("{W}: no .png / .jpg / .jpeg files in {}", images.display()));
        }
        Ok(ImagePairs { pairs, mode, root: images.to_path_buf() })
    }
}

impl Dataset for ImagePairs {
    fn len(&self) -> usize {
        self.pairs.len()
    }
    fn get_batch(&self, indices: &[usize], _ctx: &FetchCtx) -> Result<Batch> {
        check_indices(indices, self.pairs.len(), "image_pairs")?;
        let mut samples = Vec::with_capacity(indices.len());
        for &i in indices {
            let (img, mask) = &self.pairs[i];
            let x = read_image(img, self.mode)?;
            let m = read_mask(mask)?;
            let (xs, ms) = (x.size(), m.size());
            if xs[1..] != ms[..] {
                return Err(data_err!(
                    "image_pairs: {} is {}x{} but its mask {} is {}x{}",
                    img.display(),
                    xs[1],
                    xs[2],
                    mask.display(),
                    ms[0],
                    ms[1]
                ));
            }
            samples.push(Batch::List(vec![Batch::Tensor(x), Batch::Tensor(m)]));
        }
        collate_images(samples, indices, "image_pairs")
    }
    fn describe(&self) -> String {
        format!("ImagePairs({}: {} images with masks)", self.root.display(), self.pairs.len())
    }
    fn per_sample_work(&self) -> bool {
        true
    }
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
                if is_image_file(&f) {
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
                        "image_folder: {} is {}x{} with {} channels, but {} is {h}x{w} with {c}; images in a batch must have the same size (use data::transforms::resize or a crop in data::transformed)",
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
