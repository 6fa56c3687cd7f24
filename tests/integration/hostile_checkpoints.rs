//! Checkpoints with hostile content: paths in a restored ModelCheckpoint state never make lt
//! remove a file it did not write; stale temp files of interrupted saves are cleaned up and
//! nothing else; `--ckpt last` does not follow folder links.
use crate::common::{lt_bin, stderr, temp_dir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// A model that saves every step and keeps only the newest checkpoint (save_top_k 1, no
/// monitor), so each save removes every other path in its record.
const MODEL: &str = r#"
fn trainer() { #{ max_epochs: 1, enable_progress_bar: false, enable_model_summary: false, logger: false, default_root_dir: "run" } }
fn callbacks() { [callbacks::model_checkpoint(#{ every_n_train_steps: 1, save_top_k: 1, filename: "{step}" })] }
fn init(h) { this.w = torch::zeros([2], #{requires_grad: true}); }
fn train_dataloader() { [[torch::ones([2])], [torch::ones([2])], [torch::ones([2])], [torch::ones([2])]] }
fn training_step(b, i) { (this.w * b[0]).sum() }
fn configure_optimizers() { optim::sgd([this.w], #{lr: 0.1}) }
"#;

/// Runs lt in `dir`, killing it after `limit` (a hang is a failure, not a stuck suite).
pub fn lt_within(dir: &Path, args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(lt_bin())
        .args(args)
        .current_dir(dir)
        .env("OMP_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lt");
    let t0 = Instant::now();
    while child.try_wait().expect("wait for lt").is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("lt output");
            panic!("lt {args:?} did not finish within {limit:?}; stderr:\n{}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("lt output")
}

/// Rewrites a checkpoint's whole safetensors header (tensor entries and `__metadata__`) with
/// `edit`; the tensor bytes are kept (their offsets are relative to the end of the header).
pub fn edit_checkpoint_header(from: &Path, to: &Path, edit: impl FnOnce(&mut Value)) {
    let bytes = std::fs::read(from).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let h = header.to_string().into_bytes();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(to, out).unwrap();
}

/// Rewrites the lt metadata in a checkpoint's header with `edit`, keeping the header checksum it
/// had (so the edit shows as a changed header).
pub fn edit_checkpoint_meta_unsealed(from: &Path, to: &Path, edit: impl FnOnce(&mut Value)) {
    edit_checkpoint_header(from, to, |header| {
        let mut meta: Value = serde_json::from_str(header["__metadata__"]["lt"].as_str().unwrap()).unwrap();
        edit(&mut meta);
        header["__metadata__"]["lt"] = Value::String(meta.to_string());
    });
}

/// Rewrites the lt metadata in a checkpoint's header with `edit` and writes the header checksum
/// of the new metadata: a crafted file that is consistent, so only lt's reading of the content
/// can refuse it.
pub fn edit_checkpoint_meta(from: &Path, to: &Path, edit: impl FnOnce(&mut Value)) {
    edit_checkpoint_header(from, to, |header| {
        let mut meta: Value = serde_json::from_str(header["__metadata__"]["lt"].as_str().unwrap()).unwrap();
        edit(&mut meta);
        let text = meta.to_string();
        header["__metadata__"]["lt_crc32c"] = Value::String(format!("{:08x}", lt::checksum::crc32c(text.as_bytes())));
        header["__metadata__"]["lt"] = Value::String(text);
    });
}

#[test]
fn paths_from_a_crafted_checkpoint_are_never_removed() {
    let dir = temp_dir("crafted_ckpt");
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("m.rhai"), MODEL).unwrap();
    let first = lt_within(&work, &["fit", "m.rhai", "--set", "trainer.max_steps=2"], Duration::from_secs(120));
    assert!(first.status.success(), "{}", stderr(&first));
    let ck_dir = work.join("run/checkpoints");
    let real = ck_dir.join("step=2.ckpt");
    assert!(real.exists());
    // victims: outside the run (relative with `..`, absolute, `..` through the checkpoint folder),
    // and a file inside the checkpoint folder that is a `.ckpt` but not an lt checkpoint
    let victims: Vec<(PathBuf, String)> = vec![
        (dir.join("victim.txt"), "../victim.txt".into()),
        (dir.join("absolute.ckpt"), dir.join("absolute.ckpt").to_string_lossy().to_string()),
        (dir.join("through.ckpt"), "run/checkpoints/../../../through.ckpt".into()),
        (ck_dir.join("notes.ckpt"), "run/checkpoints/notes.ckpt".into()),
    ];
    for (p, _) in &victims {
        std::fs::write(p, "precious").unwrap();
    }
    edit_checkpoint_meta(&real, &work.join("crafted.ckpt"), |meta| {
        let cbs = meta["callbacks"].as_object_mut().unwrap();
        let (_, st) = cbs.iter_mut().find(|(k, _)| k.starts_with("ModelCheckpoint")).expect("a ModelCheckpoint state");
        let best = st["best_k_models"].as_object_mut().unwrap();
        for (_, recorded) in &victims {
            best.insert(recorded.clone(), Value::Null);
        }
        st["best_model_path"] = Value::String("../victim.txt".into());
        st["last_model_path"] = Value::String(victims[1].1.clone());
    });
    let out = lt_within(
        &work,
        &["fit", "m.rhai", "--ckpt", "crafted.ckpt", "--set", "trainer.max_steps=4"],
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for (p, recorded) in &victims {
        assert_eq!(
            std::fs::read_to_string(p).ok().as_deref(),
            Some("precious"),
            "{} (recorded as {recorded}) was touched",
            p.display()
        );
    }
    let e = stderr(&out);
    assert!(e.contains("'../victim.txt' is not a .ckpt file directly in run/checkpoints"), "{e}");
    assert!(e.contains("not removing run/checkpoints/notes.ckpt: it is not an lt checkpoint"), "{e}");
    // what lt wrote itself is still managed: the resumed run kept only its newest checkpoint
    let left: Vec<String> =
        std::fs::read_dir(&ck_dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect();
    assert!(left.contains(&"step=4.ckpt".to_string()) && !left.contains(&"step=3.ckpt".to_string()), "{left:?}");
}

fn age(path: &Path, ago: Duration) {
    let f = if path.is_dir() { std::fs::File::open(path) } else { std::fs::File::options().write(true).open(path) }
        .unwrap();
    f.set_modified(SystemTime::now() - ago).unwrap();
}

/// The id of a process that has ended.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

#[test]
fn a_save_removes_stale_temp_files_of_interrupted_saves_and_nothing_else() {
    let dir = temp_dir("stale_tmp");
    let (dead, hour, two_days) = (dead_pid(), Duration::from_secs(3600), Duration::from_secs(48 * 3600));
    let removed = [
        (format!(".step=3.ckpt.tmp.{dead}"), hour), // writer gone, untouched for an hour
        (".last.ckpt.tmp.1".to_string(), two_days), // writer "alive" (pid 1), untouched for two days
    ];
    let kept = [
        (format!(".step=4.ckpt.tmp.{dead}"), Duration::ZERO), // just written: maybe another machine's live save
        (".step=5.ckpt.tmp.1".to_string(), hour),             // a live writer
        (format!(".notes.txt.tmp.{dead}"), two_days),         // not a checkpoint's temp
        (format!("step=6.ckpt.tmp.{dead}"), two_days),        // not hidden: not lt's pattern
        (format!(".step=7.ckpt.tmp.{dead}x"), two_days),      // not a process id
        (format!(".ckpt.tmp.{dead}"), two_days),              // no target name
        ("model.ckpt".to_string(), two_days),
    ];
    for (name, ago) in removed.iter().chain(&kept) {
        std::fs::write(dir.join(name), "x").unwrap();
        age(&dir.join(name), *ago);
    }
    // a link and a folder with a stale temp's name are not files lt wrote
    let target = dir.join("target.bin");
    std::fs::write(&target, "x").unwrap();
    std::os::unix::fs::symlink(&target, dir.join(format!(".link.ckpt.tmp.{dead}"))).unwrap();
    std::fs::create_dir(dir.join(format!(".folder.ckpt.tmp.{dead}"))).unwrap();
    age(&dir.join(format!(".folder.ckpt.tmp.{dead}")), two_days);

    lt::checkpoint::Checkpoint::new(serde_json::json!({"epoch": 0})).save(&dir.join("new.ckpt")).unwrap();
    for (name, _) in &removed {
        assert!(!dir.join(name).exists(), "{name} should have been removed");
    }
    for (name, _) in &kept {
        assert!(dir.join(name).exists(), "{name} should have been kept");
    }
    assert!(target.exists() && dir.join(format!(".link.ckpt.tmp.{dead}")).symlink_metadata().is_ok());
    assert!(dir.join(format!(".folder.ckpt.tmp.{dead}")).is_dir());
    assert!(lt::checkpoint::Checkpoint::load(&dir.join("new.ckpt")).is_ok());
    assert!(!std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(&format!(".tmp.{}", std::process::id()))));
}

#[test]
fn ckpt_last_does_not_follow_folder_links() {
    let dir = temp_dir("ckpt_links");
    std::fs::write(dir.join("m.rhai"), MODEL).unwrap();
    let first = lt_within(&dir, &["fit", "m.rhai", "--set", "trainer.max_steps=2"], Duration::from_secs(120));
    assert!(first.status.success(), "{}", stderr(&first));
    // links back up the tree: followed, they make 2^depth paths
    let ck = dir.join("run/checkpoints");
    std::os::unix::fs::symlink(".", ck.join("a")).unwrap();
    std::os::unix::fs::symlink(".", ck.join("b")).unwrap();
    std::os::unix::fs::symlink("..", ck.join("up")).unwrap();
    // a FIFO named like a checkpoint is not one (reading it would block)
    let fifo = std::ffi::CString::new(ck.join("z.ckpt").to_string_lossy().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let out =
        lt_within(&dir, &["fit", "m.rhai", "--ckpt", "last", "--set", "trainer.max_steps=3"], Duration::from_secs(60));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(ck.join("step=3.ckpt").exists());
    let root = dir.join("run");
    let found = lt::cli::train::resolve_ckpt("last", &root).unwrap();
    assert_eq!(found, ck.join("step=3.ckpt"));
}
