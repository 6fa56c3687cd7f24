//! Checkpoint integrity: every tensor and the header carry a CRC-32C that loading checks (a flipped
//! bit, overwritten data, an edited header are refused, naming the tensor), `lt ckpt verify`, and
//! format-1 files (no checksums) still resuming.
use crate::common::{lt_in, stderr, stdout, temp_dir};
use crate::hostile_checkpoints::{edit_checkpoint_header, edit_checkpoint_meta, edit_checkpoint_meta_unsealed};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Four batches an epoch, a checkpoint every step; logs a NaN (and then an infinity) beside the
/// loss, so the loop state saved mid-epoch holds non-finite metrics.
const MODEL: &str = r#"
fn trainer() { #{ max_epochs: 2, enable_progress_bar: false, enable_model_summary: false, logger: false, default_root_dir: "run" } }
fn callbacks() { [
    callbacks::model_checkpoint(#{ every_n_train_steps: 1, save_top_k: -1, filename: "{step}" }),
    callbacks::early_stopping(#{ monitor: "loss", patience: 100 }),
] }
fn init(h) { this.w = torch::zeros([2], #{requires_grad: true}); this.b = torch::zeros([3], #{requires_grad: true}); }
fn train_dataloader() { [[torch::ones([2])], [torch::ones([2])], [torch::ones([2])], [torch::ones([2])]] }
fn training_step(b, i) {
    let l = (this.w * b[0]).sum() + this.b.sum();
    this.log("loss", l);
    this.log("weird", if i == 0 { 0.0 / 0.0 } else { 1.0 / 0.0 }, #{ on_epoch: true });
    l
}
fn configure_optimizers() { optim::sgd([this.w, this.b], #{lr: 0.1}) }
"#;

/// A folder with the model and a checkpoint taken mid-epoch (step 2 of 4).
fn setup(tag: &str) -> (PathBuf, PathBuf) {
    let dir = temp_dir(tag);
    std::fs::write(dir.join("m.rhai"), MODEL).unwrap();
    let out = lt_in(&dir, &["fit", "m.rhai", "--set", "trainer.max_steps=2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ck = dir.join("run/checkpoints/step=2.ckpt");
    assert!(ck.exists());
    (dir, ck)
}

/// `lt fit m.rhai --ckpt FILE` to step 3.
fn resume(dir: &Path, ckpt: &str) -> std::process::Output {
    lt_in(dir, &["fit", "m.rhai", "--ckpt", ckpt, "--set", "trainer.max_steps=3"])
}

fn verify(dir: &Path, ckpt: &str) -> std::process::Output {
    lt_in(dir, &["ckpt", "verify", ckpt])
}

/// The header size and the header of a safetensors file.
fn header(path: &Path) -> (usize, Value) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (n, serde_json::from_slice(&bytes[8..8 + n]).unwrap())
}

/// The tensor names of a checkpoint file.
fn tensor_names(path: &Path) -> Vec<String> {
    let (_, h) = header(path);
    h.as_object().unwrap().keys().filter(|k| *k != "__metadata__").cloned().collect()
}

/// Where the data of tensor `name` begins in the file.
fn data_start(path: &Path, name: &str) -> usize {
    let (n, h) = header(path);
    8 + n + h[name]["data_offsets"][0].as_u64().unwrap() as usize
}

/// A refused resume: status 1 and each of `want` in the message.
fn assert_refused(out: &std::process::Output, want: &[&str]) {
    let e = stderr(out);
    assert_eq!(out.status.code(), Some(1), "expected a refusal, got:\n{e}");
    for w in want {
        assert!(e.contains(w), "missing '{w}' in:\n{e}");
    }
}

#[test]
fn a_flipped_bit_in_a_tensor_is_refused_naming_the_tensor() {
    let (dir, good) = setup("integrity_bit");
    let mut bytes = std::fs::read(&good).unwrap();
    bytes[data_start(&good, "state_dict.b") + 5] ^= 0x10;
    std::fs::write(dir.join("flipped.ckpt"), &bytes).unwrap();
    let out = resume(&dir, "flipped.ckpt");
    assert_refused(&out, &["refusing checkpoint flipped.ckpt", "tensor 'state_dict.b' fails its checksum", "corrupt"]);
    assert!(!stderr(&out).contains("state_dict.w"), "only the damaged tensor is named: {}", stderr(&out));
    let out = verify(&dir, "flipped.ckpt");
    assert_refused(&out, &["tensor 'state_dict.b' fails its checksum (stored crc32c"]);
    assert!(!stdout(&out).contains("ok"), "{}", stdout(&out));
    // validate/test/predict and nn::load_from_checkpoint load through the same check
    let out = lt_in(&dir, &["ckpt", "show", "flipped.ckpt"]);
    assert_refused(&out, &["tensor 'state_dict.b' fails its checksum"]);
}

#[test]
fn tensor_bytes_all_0xff_are_refused_and_verify_names_every_tensor() {
    let (dir, good) = setup("integrity_ff");
    let mut bytes = std::fs::read(&good).unwrap();
    let (n, _) = header(&good);
    for b in &mut bytes[8 + n..] {
        *b = 0xFF;
    }
    std::fs::write(dir.join("ff.ckpt"), &bytes).unwrap();
    assert_refused(&resume(&dir, "ff.ckpt"), &["refusing checkpoint ff.ckpt", "fail their checks", "lt ckpt verify"]);
    let out = verify(&dir, "ff.ckpt");
    let names = tensor_names(&good);
    assert!(names.len() >= 3, "{names:?}");
    let e = stderr(&out);
    for name in &names {
        assert!(e.contains(&format!("tensor '{name}' fails its checksum")), "{name} not named in:\n{e}");
    }
    assert_refused(&out, &[&format!("{} tensor problem(s) among its {} tensors", names.len(), names.len())]);
}

#[test]
fn a_changed_byte_in_the_header_json_is_refused_by_the_header_checksum() {
    let (dir, good) = setup("integrity_header");
    // one byte, in place: a callback's key renamed, the same length
    let bytes = std::fs::read(&good).unwrap();
    let at = bytes.windows(14).position(|w| w == b"EarlyStopping{").expect("a callback key in the header");
    let mut edited = bytes.clone();
    edited[at + 12] = b'G';
    std::fs::write(dir.join("renamed.ckpt"), &edited).unwrap();
    let want = "metadata checksum mismatch: the header was changed or corrupted";
    assert_refused(&resume(&dir, "renamed.ckpt"), &["refusing checkpoint renamed.ckpt", want]);
    assert_refused(&verify(&dir, "renamed.ckpt"), &[want]);
    // an edit that changes the length, the checksum kept
    edit_checkpoint_meta_unsealed(&good, &dir.join("longer.ckpt"), |meta| {
        let cbs = meta["callbacks"].as_object_mut().unwrap();
        let key = cbs.keys().find(|k| k.starts_with("EarlyStopping")).unwrap().clone();
        let st = cbs.remove(&key).unwrap();
        cbs.insert(key.replace("loss", "val_loss"), st);
    });
    assert_refused(&resume(&dir, "longer.ckpt"), &[want]);
    // the header checksum removed from a format-2 file
    edit_checkpoint_header(&good, &dir.join("nocrc.ckpt"), |h| {
        h["__metadata__"].as_object_mut().unwrap().remove("lt_crc32c");
    });
    assert_refused(&resume(&dir, "nocrc.ckpt"), &[want, "without its 'lt_crc32c'"]);
    // a tensor's dtype changed outside the lt metadata (same byte count): its checksum entry says otherwise
    edit_checkpoint_header(&good, &dir.join("dtype.ckpt"), |h| h["state_dict.w"]["dtype"] = json!("I32"));
    assert_refused(&resume(&dir, "dtype.ckpt"), &["tensor 'state_dict.w' is int32 in the file but \"float32\""]);
}

#[test]
fn tensors_missing_from_the_checksum_list_or_from_the_file_are_refused() {
    let (dir, good) = setup("integrity_list");
    edit_checkpoint_meta(&good, &dir.join("unlisted.ckpt"), |meta| {
        meta["checksums"]["tensors"].as_object_mut().unwrap().remove("state_dict.w");
    });
    assert_refused(
        &resume(&dir, "unlisted.ckpt"),
        &["tensor 'state_dict.w' is in the file but not in its checksum list"],
    );
    edit_checkpoint_meta(&good, &dir.join("extra.ckpt"), |meta| {
        meta["checksums"]["tensors"]["state_dict.gone"] =
            json!({"dtype": "float32", "shape": [1], "crc32c": "00000000"});
    });
    assert_refused(
        &verify(&dir, "extra.ckpt"),
        &["tensor 'state_dict.gone' is in the checksum list but missing from the file"],
    );
}

#[test]
fn format_1_checkpoints_without_checksums_still_resume() {
    let (dir, good) = setup("integrity_v1");
    // what an earlier lt wrote: no checksums, format_version 1, NaN metrics as null, and (the
    // earliest) no batches_that_stepped
    edit_checkpoint_header(&good, &dir.join("v1.ckpt"), |h| {
        let md = h["__metadata__"].as_object_mut().unwrap();
        md.remove("lt_crc32c");
        let mut meta: Value = serde_json::from_str(md["lt"].as_str().unwrap()).unwrap();
        let m = meta.as_object_mut().unwrap();
        m.remove("checksums");
        m.insert("format_version".into(), json!(1));
        let fit = m["loops"]["fit_loop"].as_object_mut().unwrap();
        fit.remove("batches_that_stepped");
        fit["callback_metrics"]["weird"] = Value::Null;
        let text = meta.to_string().replace("\"nan\"", "null").replace("\"inf\"", "null");
        md.insert("lt".into(), Value::String(text));
    });
    let out = verify(&dir, "v1.ckpt");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("format 1: no checksums to verify"), "{}", stdout(&out));
    let out = resume(&dir, "v1.ckpt");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.join("run/checkpoints/step=3.ckpt").exists());
    // the new checkpoint is format 2 again
    let v = verify(&dir, "run/checkpoints/step=3.ckpt");
    assert!(stdout(&v).contains("format 2"), "{}", stdout(&v));
}
