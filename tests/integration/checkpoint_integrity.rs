//! Checkpoint integrity: every tensor and the header carry a CRC-32C that loading checks (a flipped
//! bit, overwritten data, an edited header are refused, naming the tensor), `lt ckpt verify`, the
//! strict reading of a resumed checkpoint's content (missing, malformed or unknown keys name the
//! key), and format-1 files (no checksums) still resuming.
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
fn a_good_checkpoint_verifies_and_resumes() {
    let (dir, _) = setup("integrity_good");
    let out = verify(&dir, "run/checkpoints/step=2.ckpt");
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.starts_with("ok: ") && s.contains("header and every tensor checksum match, format 2"), "{s}");
    assert_eq!(s.lines().count(), 1, "{s}");
    // the NaN and infinity in the mid-epoch loop state survive the round trip
    let out = resume(&dir, "run/checkpoints/step=2.ckpt");
    assert!(out.status.success(), "{}", stderr(&out));
    let meta = lt::checkpoint::Checkpoint::read_meta(&dir.join("run/checkpoints/step=3.ckpt")).unwrap();
    let cm = &meta["loops"]["fit_loop"]["callback_metrics"];
    assert_eq!(cm["weird"], json!("inf"), "{cm}");
    let text = meta["loops"]["fit_loop"]["train_results"].to_string();
    assert!(text.contains("\"nan\""), "the epoch's accumulator of a NaN stays NaN: {text}");
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

/// Edits a consistent copy of the checkpoint (header checksum rewritten) and resumes from it.
fn crafted(dir: &Path, good: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> std::process::Output {
    edit_checkpoint_meta(good, &dir.join(name), edit);
    let v = verify(dir, name);
    assert!(v.status.success(), "{name} should pass its checksums: {}", stderr(&v));
    resume(dir, name)
}

fn early_stopping_state(meta: &mut Value) -> &mut Value {
    let cbs = meta["callbacks"].as_object_mut().unwrap();
    cbs.iter_mut().find(|(k, _)| k.starts_with("EarlyStopping")).map(|(_, v)| v).unwrap()
}

#[test]
fn resume_refuses_missing_malformed_and_unknown_keys_naming_them() {
    let (dir, good) = setup("integrity_strict");
    let out = crafted(&dir, &good, "no_step.ckpt", |m| {
        m.as_object_mut().unwrap().remove("global_step");
    });
    assert_refused(&out, &["checkpoint key global_step is missing"]);
    let out =
        crafted(&dir, &good, "bad_results.ckpt", |m| m["loops"]["fit_loop"]["train_results"] = json!({"metrics": 3}));
    assert_refused(&out, &["checkpoint key loops.fit_loop.train_results is malformed"]);
    let out = crafted(&dir, &good, "no_epoch_done.ckpt", |m| {
        m["loops"]["fit_loop"].as_object_mut().unwrap().remove("epoch_done");
    });
    assert_refused(&out, &["checkpoint key loops.fit_loop.epoch_done is missing"]);
    let out =
        crafted(&dir, &good, "bad_metric.ckpt", |m| m["loops"]["fit_loop"]["callback_metrics"]["loss"] = json!("x"));
    assert_refused(&out, &["checkpoint key loops.fit_loop.callback_metrics is malformed: its entry 'loss'"]);
    let out = crafted(&dir, &good, "unknown_loop_key.ckpt", |m| m["loops"]["fit_loop"]["bogus"] = json!(1));
    assert_refused(&out, &["checkpoint key loops.fit_loop.bogus is unknown"]);
    let out = crafted(&dir, &good, "es_unknown.ckpt", |m| early_stopping_state(m)["bogus"] = json!(1));
    assert_refused(&out, &["checkpoint key callbacks.EarlyStopping{", "unknown key 'bogus'", "wait_count"]);
    let out = crafted(&dir, &good, "es_missing.ckpt", |m| {
        early_stopping_state(m).as_object_mut().unwrap().remove("best_score");
    });
    assert_refused(&out, &["missing key 'best_score'"]);
    let out = crafted(&dir, &good, "es_type.ckpt", |m| early_stopping_state(m)["wait_count"] = json!("3"));
    assert_refused(&out, &["key 'wait_count' of the state is malformed: expected an integer >= 0, found \"3\""]);
    let out = crafted(&dir, &good, "mc_type.ckpt", |m| {
        let cbs = m["callbacks"].as_object_mut().unwrap();
        let (_, st) = cbs.iter_mut().find(|(k, _)| k.starts_with("ModelCheckpoint")).unwrap();
        st["best_k_models"] = json!(["not", "a", "map"]);
    });
    assert_refused(&out, &["key 'best_k_models' of the state is malformed"]);
    // the random generator's state renamed, consistently in the file and its checksum list
    edit_checkpoint_header(&good, &dir.join("no_rng.ckpt"), |h| {
        let h = h.as_object_mut().unwrap();
        let entry = h.remove("rng.torch_cpu").unwrap();
        h.insert("rng.other".into(), entry);
        let md = h["__metadata__"].as_object_mut().unwrap();
        let mut meta: Value = serde_json::from_str(md["lt"].as_str().unwrap()).unwrap();
        let list = meta["checksums"]["tensors"].as_object_mut().unwrap();
        let sum = list.remove("rng.torch_cpu").unwrap();
        list.insert("rng.other".into(), sum);
        let text = meta.to_string();
        md.insert("lt_crc32c".into(), json!(format!("{:08x}", lt::checksum::crc32c(text.as_bytes()))));
        md.insert("lt".into(), json!(text));
    });
    assert!(verify(&dir, "no_rng.ckpt").status.success());
    assert_refused(
        &resume(&dir, "no_rng.ckpt"),
        &["checkpoint tensor rng.torch_cpu (the random generator's state) is missing"],
    );
}

#[test]
fn a_callback_state_no_callback_claims_is_a_warning_as_in_lightning() {
    let (dir, good) = setup("integrity_unmatched");
    let out = crafted(&dir, &good, "ghost.ckpt", |m| m["callbacks"]["Ghost{\"x\": 1}"] = json!({"n": 1}));
    assert!(out.status.success(), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("warning: the checkpoint holds the state of callbacks this run does not have")
            && e.contains("Ghost"),
        "{e}"
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

#[test]
fn every_callback_state_round_trips_and_refuses_unknown_missing_and_mistyped_keys() {
    use lt::callbacks::early_stopping::{EarlyStopping, EarlyStoppingConfig};
    use lt::callbacks::model_checkpoint::{ModelCheckpoint, ModelCheckpointConfig};
    use lt::trainer::callback::Callback;
    let stateful: Vec<Box<dyn Callback>> = vec![
        Box::new(ModelCheckpoint::new(ModelCheckpointConfig::default()).unwrap()),
        Box::new(EarlyStopping::new(EarlyStoppingConfig::new("loss")).unwrap()),
        Box::new(lt::callbacks::Timer::new(None, "step", false).unwrap()),
        Box::new(lt::callbacks::WeightAveraging::mean(false)),
    ];
    for mut cb in stateful {
        let name = cb.state_key();
        let sd = cb.state_dict();
        cb.load_state_dict(&sd).unwrap_or_else(|e| panic!("{name}: its own state is refused: {e}"));
        let mut extra = sd.clone();
        extra["bogus"] = json!(1);
        let e = cb.load_state_dict(&extra).unwrap_err();
        assert!(e.contains("unknown key 'bogus'") && e.contains("valid keys"), "{name}: {e}");
        for k in sd.as_object().unwrap().keys() {
            let mut less = sd.clone();
            less.as_object_mut().unwrap().remove(k);
            let e = cb.load_state_dict(&less).unwrap_err();
            assert!(e.contains(&format!("missing key '{k}'")), "{name} without {k}: {e}");
            let mut wrong = sd.clone();
            wrong[k] = json!([true]);
            let e = cb.load_state_dict(&wrong).unwrap_err();
            assert!(e.contains(&format!("key '{k}' of the state is malformed")), "{name} with a list for {k}: {e}");
        }
        let e = cb.load_state_dict(&json!("text")).unwrap_err();
        assert!(e.contains("not a map"), "{name}: {e}");
    }
    // a callback that keeps no state takes only null
    let mut lr = lt::callbacks::LearningRateMonitor::new(None, false, false).unwrap();
    assert!(lr.load_state_dict(&Value::Null).is_ok());
    let e = lr.load_state_dict(&json!({"lrs": 1})).unwrap_err();
    assert!(e.contains("keeps no state"), "{e}");
}
