//! Loggers: the TensorBoard event file, read back with an independent reader written here from the
//! format spec (TFRecord framing with masked CRC32C, protobuf wire format), and `lt plot`.
use crate::common::{lt_in, stderr, temp_dir};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A tiny module: 2 batches per epoch, train_loss every step, val_loss / val_acc per epoch.
pub const TINY: &str = r#"
fn hparams() { #{ lr: 0.1, opt: #{ name: "sgd", nesterov: false } } }
fn trainer() { #{ max_epochs: 3, enable_progress_bar: false, enable_checkpointing: false, enable_model_summary: false, log_every_n_steps: 1, num_sanity_val_steps: 0 } }
fn init(h) { this.save_hyperparameters(); this.w = torch::zeros([2, 1], #{ requires_grad: true }); }
fn configure_optimizers() { optim::sgd([this.w], #{ lr: this.hparams.lr }) }
fn batches() { [[torch::ones([4, 2]), torch::ones([4, 1])], [torch::ones([4, 2]) * 0.5, torch::ones([4, 1])]] }
fn train_dataloader() { batches() }
fn val_dataloader() { batches() }
fn training_step(b, i) {
    let loss = (b[0].matmul(this.w) - b[1]).square().mean();
    this.log("train_loss", loss);
    loss
}
fn validation_step(b, i) {
    let loss = (b[0].matmul(this.w) - b[1]).square().mean();
    this.log("val_loss", loss);
    this.log("val_acc", 1.0 - loss);
}
"#;

// ---- an independent TFRecord + protobuf reader, from the format spec ----

/// CRC-32C, bit by bit (polynomial 0x1EDC6F41 reflected = 0x82F63B78).
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
        }
    }
    !crc
}

fn masked(data: &[u8]) -> u32 {
    let c = crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Splits a TFRecord file into records, checking both CRCs of each.
pub fn records(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let len_bytes = &bytes[i..i + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        let len_crc = u32::from_le_bytes(bytes[i + 8..i + 12].try_into().unwrap());
        assert_eq!(len_crc, masked(len_bytes), "length CRC of the record at byte {i}");
        let data = &bytes[i + 12..i + 12 + len];
        let data_crc = u32::from_le_bytes(bytes[i + 12 + len..i + 16 + len].try_into().unwrap());
        assert_eq!(data_crc, masked(data), "data CRC of the record at byte {i}");
        out.push(data.to_vec());
        i += 16 + len;
    }
    assert_eq!(i, bytes.len(), "trailing bytes");
    out
}

#[derive(Debug, Clone)]
pub enum Field {
    Varint(u64),
    I64([u8; 8]),
    Bytes(Vec<u8>),
    I32([u8; 4]),
}

fn varint(b: &[u8], i: &mut usize) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let byte = b[*i];
        *i += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte < 0x80 {
            return v;
        }
        shift += 7;
    }
}

/// Decodes one protobuf message into (field number, value) pairs.
pub fn fields(b: &[u8]) -> Vec<(u64, Field)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i);
        let f = match key & 7 {
            0 => Field::Varint(varint(b, &mut i)),
            1 => {
                i += 8;
                Field::I64(b[i - 8..i].try_into().unwrap())
            }
            2 => {
                let n = varint(b, &mut i) as usize;
                i += n;
                Field::Bytes(b[i - n..i].to_vec())
            }
            5 => {
                i += 4;
                Field::I32(b[i - 4..i].try_into().unwrap())
            }
            w => panic!("unexpected wire type {w}"),
        };
        out.push((key >> 3, f));
    }
    out
}

pub fn get(fs: &[(u64, Field)], n: u64) -> Vec<&Field> {
    fs.iter().filter(|(k, _)| *k == n).map(|(_, f)| f).collect()
}

pub fn bytes_of(f: &Field) -> &[u8] {
    match f {
        Field::Bytes(b) => b,
        other => panic!("expected bytes, got {other:?}"),
    }
}

pub struct Events {
    file_version: Option<String>,
    /// (tag, step) → value
    pub scalars: BTreeMap<(String, i64), f32>,
    /// tags with HParams plugin metadata
    plugin_tags: Vec<(String, String)>,
    /// hparam names in session_start_info
    hparam_names: Vec<String>,
}

pub fn read_events(path: &Path) -> Events {
    let bytes = std::fs::read(path).unwrap();
    let mut ev =
        Events { file_version: None, scalars: BTreeMap::new(), plugin_tags: Vec::new(), hparam_names: Vec::new() };
    for rec in records(&bytes) {
        let e = fields(&rec);
        match get(&e, 1).first() {
            Some(Field::I64(b)) => assert!(f64::from_le_bytes(*b) > 1.6e9, "wall_time is seconds since 1970"),
            other => panic!("every event has a wall_time, got {other:?}"),
        }
        if let Some(f) = get(&e, 3).first() {
            ev.file_version = Some(String::from_utf8(bytes_of(f).to_vec()).unwrap());
        }
        let step = match get(&e, 2).first() {
            Some(Field::Varint(v)) => *v as i64,
            _ => 0,
        };
        for s in get(&e, 5) {
            for v in get(&fields(bytes_of(s)), 1) {
                let vf = fields(bytes_of(v));
                let tag = String::from_utf8(bytes_of(get(&vf, 1)[0]).to_vec()).unwrap();
                if let Some(Field::I32(x)) = get(&vf, 2).first() {
                    ev.scalars.insert((tag.clone(), step), f32::from_le_bytes(*x));
                }
                if let Some(meta) = get(&vf, 9).first() {
                    let pd = fields(bytes_of(get(&fields(bytes_of(meta)), 1)[0]));
                    let plugin = String::from_utf8(bytes_of(get(&pd, 1)[0]).to_vec()).unwrap();
                    // (a plugin whose content is empty, as the text plugin's, has none)
                    let content = get(&pd, 2).first().map(|c| fields(bytes_of(c))).unwrap_or_default();
                    if let Some(ssi) = get(&content, 3).first() {
                        for entry in get(&fields(bytes_of(ssi)), 1) {
                            let ef = fields(bytes_of(entry));
                            ev.hparam_names.push(String::from_utf8(bytes_of(get(&ef, 1)[0]).to_vec()).unwrap());
                        }
                    }
                    ev.plugin_tags.push((plugin, tag));
                }
            }
        }
    }
    ev
}

pub fn csv_values(path: &Path) -> BTreeMap<(String, i64), f64> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let step_col = header.iter().position(|h| *h == "step").unwrap();
    let mut out = BTreeMap::new();
    for l in lines {
        let cells: Vec<&str> = l.split(',').collect();
        let step: i64 = cells[step_col].parse().unwrap();
        for (h, c) in header.iter().zip(&cells) {
            if *h != "step" && !c.is_empty() {
                out.insert((h.to_string(), step), c.parse::<f64>().unwrap());
            }
        }
    }
    out
}

fn version_dir(root: &Path) -> PathBuf {
    root.join("lightning_logs").join("version_0")
}

#[test]
fn tensorboard_event_file_matches_the_csv_metrics() {
    let dir = temp_dir("tb");
    std::fs::write(dir.join("m.rhai"), TINY).unwrap();
    let out = lt_in(&dir, &["fit", "m.rhai"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = version_dir(&dir);
    let files: Vec<PathBuf> = std::fs::read_dir(&v).unwrap().flatten().map(|e| e.path()).collect();
    let events: Vec<&PathBuf> =
        files.iter().filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents.")).collect();
    assert_eq!(events.len(), 1, "one event file beside metrics.csv: {files:?}");
    assert!(v.join("metrics.csv").exists() && v.join("hparams.yaml").exists());
    let ev = read_events(events[0]);
    assert_eq!(ev.file_version.as_deref(), Some("brain.Event:2"));
    // every CSV cell is a TensorBoard scalar with the same tag, step and (f32) value
    let csv = csv_values(&v.join("metrics.csv"));
    assert!(csv.keys().any(|(k, _)| k == "train_loss") && csv.keys().any(|(k, _)| k == "val_acc"));
    for ((tag, step), value) in &csv {
        let tb =
            ev.scalars.get(&(tag.clone(), *step)).unwrap_or_else(|| panic!("{tag}@{step} missing from the event file"));
        assert_eq!(*tb, *value as f32, "{tag}@{step}");
    }
    // 6 training steps, logged every step; 3 validations
    assert_eq!(ev.scalars.keys().filter(|(k, _)| k == "train_loss").count(), 6);
    assert_eq!(ev.scalars.keys().filter(|(k, _)| k == "val_loss").count(), 3);
    // hyperparameters through the HParams plugin, flattened like Lightning's; hp_metric placeholder
    assert_eq!(ev.scalars.get(&("hp_metric".into(), 0)), Some(&-1.0));
    let tags: Vec<&str> = ev
        .plugin_tags
        .iter()
        .map(|(p, t)| {
            assert_eq!(p, "hparams");
            t.as_str()
        })
        .collect();
    assert_eq!(tags, ["_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"]);
    assert_eq!(ev.hparam_names, ["lr", "opt/name", "opt/nesterov"]);
}

#[test]
fn loggers_option_selects_the_loggers() {
    let dir = temp_dir("tb-opt");
    std::fs::write(dir.join("m.rhai"), TINY).unwrap();
    let out =
        lt_in(&dir, &["fit", "m.rhai", "--set", "trainer.loggers=[\"tensorboard\"]", "--set", "trainer.max_epochs=1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let names: Vec<String> = std::fs::read_dir(version_dir(&dir))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(!names.iter().any(|n| n == "metrics.csv"), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("events.out.tfevents.")), "{names:?}");
    let bad = lt_in(&dir, &["fit", "m.rhai", "--set", "trainer.loggers=wandb"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("unknown logger \"wandb\""), "{}", stderr(&bad));
}

/// Reads a PNG's width and height from its IHDR chunk, checking the signature.
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&b[12..16], b"IHDR");
    (u32::from_be_bytes(b[16..20].try_into().unwrap()), u32::from_be_bytes(b[20..24].try_into().unwrap()))
}

#[test]
fn plot_draws_one_panel_per_metric_family() {
    let dir = temp_dir("plot");
    std::fs::write(dir.join("m.rhai"), TINY).unwrap();
    let out = lt_in(&dir, &["fit", "m.rhai", "--set", "trainer.loggers=csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // families: loss (train_loss, val_loss) and acc (val_acc): two panels side by side
    let out = lt_in(&dir, &["plot", "lightning_logs/version_0", "-o", "run.png"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (w, h) = (lt::plot::PANEL_SIZE.0, lt::plot::PANEL_SIZE.1);
    assert_eq!(png_size(&dir.join("run.png")), (2 * w, h));
    let decoded = png::Decoder::new(std::fs::File::open(dir.join("run.png")).unwrap()).read_info();
    assert!(decoded.is_ok(), "the PNG decodes");
    let out = lt_in(&dir, &["plot", "lightning_logs/version_0", "--x", "epoch"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(png_size(&dir.join("lightning_logs/version_0/metrics.png")), (2 * w, h));
    let bad = lt_in(&dir, &["plot", "nowhere"]);
    assert!(!bad.status.success() && stderr(&bad).contains("cannot read"), "{}", stderr(&bad));
}

#[test]
fn metric_families() {
    use lt::plot::family;
    assert_eq!(family("train_loss"), "loss");
    assert_eq!(family("val_loss_epoch"), "loss");
    assert_eq!(family("val_acc/dataloader_idx_1"), "acc");
    assert_eq!(family("lr-Adam"), "lr-Adam");
    assert_eq!(lt::plot::grid(3), (2, 2));
}

#[test]
fn a_run_that_fails_before_logging_leaves_no_version_folder() {
    let dir = temp_dir("no-empty-version");
    let src = TINY.replace("optim::sgd([this.w], #{ lr: this.hparams.lr })", "throw \"broken configure_optimizers\"");
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let out = lt_in(&dir, &["fit", "m.rhai"]);
    assert!(!out.status.success());
    assert!(!dir.join("lightning_logs").exists(), "an empty lightning_logs/version_0 was left behind");
}
