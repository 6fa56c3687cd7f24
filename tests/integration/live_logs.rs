//! Logs that are live and survive an interruption: metrics.csv is appended to every
//! `flush_logs_every_n_steps` (its header rewritten when a column appears, as Lightning's
//! CSVLogger does), and a run stopped by Ctrl-C, a script error, a closed stdout or `max_time`
//! leaves every row it logged, and a readable event file.
use crate::common::{lt_bin, stderr, temp_dir, threads};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One long epoch (200 000 batches of one sample), train_loss at every step, the logs flushed
/// every 5 steps; `fail_at` throws in training_step, `late_from` logs a second
/// metric from that step on (a new CSV column).
const SLOW: &str = r#"
fn hparams() { #{ fail_at: -1, late_from: -1, print_steps: false } }
fn trainer() { #{ max_epochs: 1, enable_progress_bar: false, enable_checkpointing: false, enable_model_summary: false, log_every_n_steps: 1, flush_logs_every_n_steps: 5, num_sanity_val_steps: 0 } }
fn init(h) { this.save_hyperparameters(); this.w = torch::zeros([2, 1], #{ requires_grad: true }); }
fn configure_optimizers() { optim::sgd([this.w], #{ lr: 0.001 }) }
fn train_dataloader() { data::loader(data::tensor_dataset(torch::ones([200000, 2]), torch::ones([200000, 1])), #{ batch_size: 1 }) }
fn training_step(b, i) {
    if i == this.hparams.fail_at { throw "boom at step " + i; }
    if this.hparams.print_steps { print(`step ${i}`); }
    let loss = (b[0].matmul(this.w) - b[1]).square().mean();
    this.log("train_loss", loss);
    if this.hparams.late_from >= 0 && i >= this.hparams.late_from { this.log("late", 1.0); }
    loss
}
"#;

fn write_script(tag: &str) -> PathBuf {
    let dir = temp_dir(tag);
    std::fs::write(dir.join("m.rhai"), SLOW).unwrap();
    dir
}

fn lt_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(lt_bin());
    c.arg("fit").arg("m.rhai").args(args).current_dir(dir).env("OMP_NUM_THREADS", threads());
    c
}

fn version_dir(dir: &Path) -> PathBuf {
    dir.join("lightning_logs/version_0")
}

/// metrics.csv as (header, rows), asserting what pandas needs: every row has the header's count
/// of cells.
fn csv_rows(dir: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(version_dir(dir).join("metrics.csv")).expect("metrics.csv");
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().expect("a header").split(',').map(str::to_string).collect();
    let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(str::to_string).collect()).collect();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(
            r.len(),
            header.len(),
            "row {i} of metrics.csv has {} cells, the header {}:\n{text}",
            r.len(),
            header.len()
        );
    }
    (header, rows)
}

fn column(header: &[String], rows: &[Vec<String>], name: &str) -> Vec<String> {
    let c = header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    rows.iter().map(|r| r[c].clone()).collect()
}

fn steps(header: &[String], rows: &[Vec<String>]) -> Vec<usize> {
    column(header, rows, "step").iter().map(|s| s.parse().unwrap()).collect()
}

fn event_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(version_dir(dir))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("events.out.tfevents")))
        .expect("an event file")
}

fn rows_on_disk(dir: &Path) -> usize {
    std::fs::read_to_string(version_dir(dir).join("metrics.csv")).map_or(0, |s| s.lines().count().saturating_sub(1))
}

#[test]
fn csv_logger_appends_and_rewrites_its_header_when_a_column_appears() {
    use lt::trainer::logger::{CsvLogger, Logger};
    let dir = temp_dir("csv_append");
    let mut l = CsvLogger::in_dir(&dir).unwrap();
    let row = |pairs: &[(&str, f64)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>();
    let path = dir.join("metrics.csv");
    let read = || std::fs::read_to_string(&path).unwrap();
    l.save().unwrap();
    assert!(!path.exists(), "nothing logged, nothing written");
    l.log_metrics(&row(&[("epoch", 0.0), ("loss", 0.5)]), 0).unwrap();
    l.log_metrics(&row(&[("epoch", 0.0), ("loss", 0.25)]), 1).unwrap();
    assert!(!path.exists(), "rows wait for save");
    l.save().unwrap();
    let first = read();
    assert_eq!(first, "epoch,loss,step\n0,0.5,0\n0,0.25,1\n");
    // the same columns: appended, the earlier bytes as they were
    l.log_metrics(&row(&[("epoch", 0.0), ("loss", 0.125)]), 2).unwrap();
    l.save().unwrap();
    assert_eq!(read(), format!("{first}0,0.125,2\n"));
    // a new column: the header is rewritten, the earlier rows get an empty cell there
    l.log_metrics(&row(&[("epoch", 1.0), ("val_loss", 2.0)]), 2).unwrap();
    l.log_metrics(&row(&[("a,b", 3.0)]), 3).unwrap();
    l.save().unwrap();
    assert_eq!(read(), "\"a,b\",epoch,loss,step,val_loss\n,0,0.5,0,\n,0,0.25,1,\n,0,0.125,2,\n,1,,2,2.0\n3.0,,,3,\n");
    // read back as a CSV reader (pandas) does: every row as wide as the header
    let mut r = csv::Reader::from_path(&path).unwrap();
    assert_eq!(r.headers().unwrap().len(), 5);
    assert_eq!(r.records().map(|x| x.unwrap().len()).collect::<Vec<_>>(), vec![5; 5]);
    // and appended to again under the wider header
    l.log_metrics(&row(&[("loss", 1.0)]), 4).unwrap();
    l.save().unwrap();
    assert!(read().ends_with("\n3.0,,,3,\n,,1.0,4,\n"), "{}", read());
}

#[test]
fn ctrl_c_mid_epoch_leaves_the_rows_logged_so_far_and_a_readable_event_file() {
    let dir = write_script("sigint");
    let mut child = lt_cmd(&dir, &[]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn lt");
    // metrics.csv is live: its rows appear while the epoch runs (every 5 steps)
    let t0 = Instant::now();
    let seen = loop {
        let n = rows_on_disk(&dir);
        if n >= 20 {
            break n;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("lt ended before 20 rows were on disk: {status}");
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "no rows reached metrics.csv");
        std::thread::sleep(Duration::from_millis(10));
    };
    // SAFETY: a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "an interrupted fit fails: {err}");
    assert!(err.contains("Detected KeyboardInterrupt, attempting graceful shutdown"), "{err}");
    assert!(err.contains("`Trainer.fit` stopped: interrupted (Ctrl-C) at epoch 0, global step "), "{err}");
    assert!(err.contains("The logs written so far are in"), "{err}");
    let (header, rows) = csv_rows(&dir);
    assert_eq!(header, ["epoch", "step", "train_loss"]);
    let steps = steps(&header, &rows);
    assert!(steps.len() >= seen && steps.len() < 200_000, "{} rows, {seen} seen before Ctrl-C", steps.len());
    assert_eq!(steps, (0..steps.len()).collect::<Vec<_>>(), "every step's row, in order, once");
    // the event file: every record's CRCs check, and it holds every step the CSV has
    let ev = crate::loggers::read_events(&event_file(&dir));
    for s in &steps {
        assert!(ev.scalars.contains_key(&("train_loss".to_string(), *s as i64)), "train_loss at step {s}");
    }
}

#[test]
fn a_script_error_at_step_k_leaves_the_rows_before_it() {
    let dir = write_script("error_k");
    let out = lt_cmd(
        &dir,
        &["--set", "model.fail_at=7", "--set", "model.late_from=3", "--set", "trainer.flush_logs_every_n_steps=2"],
    )
    .output()
    .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("boom at step 7"), "{err}");
    assert!(err.contains("`Trainer.fit` stopped: an error at epoch 0, global step 7"), "{err}");
    let (header, rows) = csv_rows(&dir);
    // `late` appeared at step 3, after rows 0..1 were on disk: the header was rewritten
    assert_eq!(header, ["epoch", "late", "step", "train_loss"]);
    assert_eq!(steps(&header, &rows), (0..7).collect::<Vec<_>>());
    assert_eq!(column(&header, &rows, "late"), ["", "", "", "1.0", "1.0", "1.0", "1.0"]);
}

#[test]
fn a_closed_stdout_or_max_time_ends_the_fit_with_every_row_written() {
    // the reader of stdout goes away at once: the fit goes on and writes all its logs
    let dir = write_script("epipe");
    let mut child = lt_cmd(&dir, &["--set", "model.print_steps=true", "--set", "trainer.max_steps=300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let (header, rows) = csv_rows(&dir);
    assert_eq!(steps(&header, &rows), (0..300).collect::<Vec<_>>());

    // max_time ends the fit at a step boundary, says so, and the rows are there
    let dir = write_script("max_time");
    let out = lt_cmd(&dir, &["--set", "trainer.max_time=2", "--set", "trainer.flush_logs_every_n_steps=1000000"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("`Trainer.fit` stopped: `max_time=2s` reached."), "{err}");
    let (header, rows) = csv_rows(&dir);
    let steps = steps(&header, &rows);
    assert!(!steps.is_empty() && steps.len() < 200_000, "{} rows", steps.len());
    assert_eq!(steps, (0..steps.len()).collect::<Vec<_>>());
}
