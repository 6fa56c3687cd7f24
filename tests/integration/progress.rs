//! The terminal experience of a run: Lightning's TQDM bar (its lines against tqdm's own, in
//! tests/fixtures/progress), the bars on a real pseudo-terminal (one line per epoch, never wider
//! than the terminal, the validation bar erased), plain lines in a pipe, the warnings Lightning
//! gives about a run's data, and colour (only on a terminal, never with NO_COLOR).
use crate::common::*;
use lt::console::bars::Bars;
use lt::trainer::progress::{format_meter, format_num, format_postfix, Num};
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};

/// A terminal `cols` wide that interprets what lt writes: text, `\r`, `\n`, erase-line
/// (`ESC[2K`, `ESC[K`), cursor-up (`ESC[A`), colours (ignored). Counts the lines that wrapped.
struct Screen {
    cols: usize,
    rows: Vec<Vec<char>>,
    r: usize,
    c: usize,
    wraps: usize,
}

impl Screen {
    fn new(cols: usize) -> Screen {
        Screen { cols, rows: vec![Vec::new()], r: 0, c: 0, wraps: 0 }
    }

    fn row(&mut self) -> &mut Vec<char> {
        while self.rows.len() <= self.r {
            self.rows.push(Vec::new());
        }
        &mut self.rows[self.r]
    }

    fn feed(&mut self, s: &str) {
        let mut it = s.chars().peekable();
        while let Some(ch) = it.next() {
            match ch {
                '\r' => self.c = 0,
                // a terminal's output processing (ONLCR) makes a newline CR LF
                '\n' => {
                    self.r += 1;
                    self.c = 0;
                    self.row();
                }
                '\x1b' if it.peek() == Some(&'[') => {
                    it.next();
                    let mut params = String::new();
                    let mut fin = ' ';
                    for p in it.by_ref() {
                        if p.is_ascii_alphabetic() {
                            fin = p;
                            break;
                        }
                        params.push(p);
                    }
                    match fin {
                        'K' if params == "2" => self.row().clear(),
                        'K' => {
                            let c = self.c;
                            self.row().truncate(c);
                        }
                        'A' => self.r = self.r.saturating_sub(1),
                        _ => {}
                    }
                }
                ch => {
                    if self.c >= self.cols {
                        self.wraps += 1;
                        self.r += 1;
                        self.c = 0;
                    }
                    let c = self.c;
                    let row = self.row();
                    while row.len() <= c {
                        row.push(' ');
                    }
                    row[c] = ch;
                    self.c += 1;
                }
            }
        }
    }

    /// The lines shown, trailing blanks and empty lines at the end dropped.
    fn lines(&self) -> Vec<String> {
        let mut v: Vec<String> =
            self.rows.iter().map(|r| r.iter().collect::<String>().trim_end().to_string()).collect();
        while v.last().is_some_and(String::is_empty) {
            v.pop();
        }
        v
    }
}

/// Runs `lt args` in `dir` with stdout (and stderr, when `stderr_too`) on a pseudo-terminal
/// `cols` wide; returns what the terminal received and the process's piped stderr.
fn lt_on_pty(dir: &Path, args: &[&str], cols: u16, stderr_too: bool, env: &[(&str, &str)]) -> (String, String, bool) {
    let (mut master, mut slave) = (0, 0);
    let ws = libc::winsize { ws_row: 40, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty writes two descriptors through the pointers; each is owned once, below.
    let r = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &ws) };
    assert_eq!(r, 0, "openpty failed");
    // SAFETY: fresh descriptors from openpty, owned by nothing else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut cmd = Command::new(lt_bin());
    cmd.args(args)
        .current_dir(dir)
        .env("OMP_NUM_THREADS", threads())
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .env_remove("COLUMNS")
        .stdin(Stdio::null())
        .stdout(Stdio::from(slave.try_clone().unwrap()));
    if stderr_too {
        cmd.stderr(Stdio::from(slave.try_clone().unwrap()));
    } else {
        cmd.stderr(Stdio::piped());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("cannot start lt");
    drop(slave);
    drop(cmd);
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).unwrap();
    }
    let mut file = std::fs::File::from(master);
    let mut bytes = Vec::new();
    // the master reads until the terminal's last writer is gone (then EIO)
    let mut buf = [0u8; 4096];
    loop {
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    let ok = child.wait().unwrap().success();
    (String::from_utf8_lossy(&bytes).to_string(), err, ok)
}

const FIT: &str = r#"
fn trainer() { #{ max_epochs: 2, num_sanity_val_steps: 1, enable_model_summary: false } }
fn init(h) { this.w = torch::zeros([1], #{requires_grad: true}); }
fn train_dataloader() { data::loader(data::tensor_dataset(torch::ones([24, 2])), #{batch_size: 2}) }
fn val_dataloader() { data::loader(data::tensor_dataset(torch::ones([6, 2])), #{batch_size: 2}) }
fn training_step(b, i) {
    let l = (this.w * b[0]).sum() + 1.5;
    this.log("a_rather_long_metric_name_that_fills_the_bar", l, #{prog_bar: true});
    l
}
fn validation_step(b, i) { this.log("val_loss", (this.w * b[0]).sum(), #{prog_bar: true}); }
fn configure_optimizers() { optim::sgd([this.w], #{lr: 0.1}) }
"#;

#[test]
fn bar_lines_match_tqdm() {
    let text = std::fs::read_to_string(root().join("tests/fixtures/progress/tqdm_lines.json")).unwrap();
    let cases: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 15);
    for c in cases {
        let items: Vec<(String, Num)> = c["postfix"]
            .as_array()
            .unwrap()
            .iter()
            .map(|kv| {
                let v = &kv[1];
                let n = if v.is_i64() { Num::Int(v.as_i64().unwrap()) } else { Num::Float(v.as_f64().unwrap()) };
                (kv[0].as_str().unwrap().to_string(), n)
            })
            .collect();
        let line = format_meter(
            c["desc"].as_str().unwrap(),
            c["n"].as_u64().unwrap() as usize,
            c["total"].as_u64().map(|t| t as usize),
            c["elapsed"].as_f64().unwrap(),
            c["ncols"].as_u64().map(|n| n as usize),
            &format_postfix(&items),
        );
        assert_eq!(line, c["line"].as_str().unwrap(), "case {c}");
    }
}

#[test]
fn postfix_numbers_are_formatted_as_lightning() {
    // Lightning's Tqdm.format_num: tqdm's .3g when shorter, floats padded to 5 characters
    let cases = [
        (Num::Float(10.1566), "10.20"),
        (Num::Float(0.5), "0.500"),
        (Num::Float(2.0), "2.000"),
        (Num::Float(123.0), "123.0"),
        (Num::Float(12345.678), "1.23e+4"),
        (Num::Float(1e-9), "1e-9"),
        (Num::Float(-0.25), "-0.25"),
        (Num::Float(0.000123), "0.000123"),
        (Num::Float(f64::NAN), "nan.0"),
        (Num::Int(4), "4"),
        (Num::Int(12345), "12345"),
    ];
    for (n, want) in cases {
        assert_eq!(format_num(n), want, "{n:?}");
    }
}

#[test]
fn the_validation_bar_interrupts_the_epoch_bar_and_gives_it_back() {
    let mut b = Bars::new();
    let mut s = Screen::new(40);
    s.feed("above\n");
    s.feed(&b.draw(0, "Epoch 0: 10%"));
    s.feed(&b.draw(0, "Epoch 0: 100%"));
    s.feed(&b.draw(1, "Validation DataLoader 0: 0%"));
    assert_eq!(s.lines(), ["above", "Epoch 0: 100%", "Validation DataLoader 0: 0%"]);
    // a message while both bars are shown goes above them
    s.feed(&b.hide());
    s.feed("a checkpoint was saved\n");
    s.feed(&b.show());
    assert_eq!(s.lines(), ["above", "a checkpoint was saved", "Epoch 0: 100%", "Validation DataLoader 0: 0%"]);
    s.feed(&b.draw(1, "Validation DataLoader 0: 100%"));
    s.feed(&b.close(1, None));
    assert_eq!(s.lines(), ["above", "a checkpoint was saved", "Epoch 0: 100%"]);
    s.feed(&b.close(0, Some("Epoch 0: 100% val_loss=1")));
    s.feed(&b.draw(0, "Epoch 1: 0%"));
    s.feed(&b.close(0, Some("Epoch 1: 100%")));
    assert!(b.is_empty());
    s.feed("done\n");
    assert_eq!(s.lines(), ["above", "a checkpoint was saved", "Epoch 0: 100% val_loss=1", "Epoch 1: 100%", "done"]);
    // a transient bar (the sanity check) leaves nothing; an abandoned one leaves its line
    s.feed(&b.draw(0, "Sanity Checking DataLoader 0: 50%"));
    s.feed(&b.close(0, None));
    s.feed(&b.draw(0, "Epoch 0: 30%"));
    s.feed(&b.draw(1, "Validation DataLoader 0: 0%"));
    s.feed(&b.abandon());
    s.feed("error: boom\n");
    assert_eq!(s.lines()[5..], ["Epoch 0: 30%", "error: boom"]);
}

#[test]
fn fit_on_a_terminal_leaves_one_line_per_epoch_within_its_width() {
    let dir = temp_dir("pty_fit");
    std::fs::write(dir.join("m.rhai"), FIT).unwrap();
    for cols in [70u16, 120] {
        let (raw, err, ok) = lt_on_pty(&dir, &["fit", "m.rhai"], cols, false, &[]);
        assert!(ok, "{err}");
        let mut screen = Screen::new(cols as usize);
        screen.feed(&raw);
        assert_eq!(screen.wraps, 0, "a line was wider than {cols} columns: {raw:?}");
        let lines = screen.lines();
        assert_eq!(lines.len(), 2, "{lines:#?}\n{raw:?}");
        assert!(lines[0].starts_with("Epoch 0: 100%|"), "{lines:?}");
        assert!(lines[1].starts_with("Epoch 1: 100%|"), "{lines:?}");
        assert!(lines.iter().all(|l| l.chars().count() == cols as usize), "{lines:?}");
        assert!(lines[0].contains("| 12/12 ["), "{lines:?}");
        // the sanity check's and the validation's bars were drawn, then erased
        assert!(raw.contains("Sanity Checking DataLoader 0:"), "{raw:?}");
        assert!(raw.contains("Validation DataLoader 0: 100%|"), "{raw:?}");
        if cols == 120 {
            // (the end of the line depends on how many digits the rate has)
            let l = &lines[0];
            assert!(l.contains(", v_num=") && l.contains(", a_rather_long_metric_name_that_fills_the_bar=-"), "{l}");
        }
        assert!(err.contains("`Trainer.fit` stopped: `max_epochs=2` reached."), "{err}");
    }
}

#[test]
fn fit_in_a_pipe_prints_plain_lines() {
    let dir = temp_dir("pipe_fit");
    std::fs::write(dir.join("m.rhai"), FIT.replace("max_epochs: 2", "max_epochs: 2, logger: false")).unwrap();
    let out = lt_in(&dir, &["fit", "m.rhai"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains('\r') && !text.contains('\x1b'), "{text:?}");
    let lines: Vec<&str> = text.lines().collect();
    // no decile lines for 12 batches; the validation and sanity bars print nothing
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("Epoch 0: 100%|██████████| 12/12 ["), "{text}");
    assert!(lines[1].starts_with("Epoch 1: 100%|██████████| 12/12 ["), "{text}");
    assert!(lines[1].contains("a_rather_long_metric_name_that_fills_the_bar=") && lines[1].contains("val_loss="));
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    use lt::console::style::{colour_wanted, error_text};
    assert!(colour_wanted(true, None, Some("xterm")));
    assert!(colour_wanted(true, Some(""), None), "an empty NO_COLOR does not count (no-color.org)");
    assert!(!colour_wanted(true, Some("1"), Some("xterm")));
    assert!(!colour_wanted(false, None, Some("xterm")));
    assert!(!colour_wanted(true, None, Some("dumb")));
    let e = "boom\n  --> m.rhai:1:5\n  |\n1 | let x = y;\n  |         ^";
    assert_eq!(error_text(false, e), format!("error: {e}"));
    let coloured = error_text(true, e);
    assert!(coloured.starts_with("\x1b[1;31merror:\x1b[0m boom"), "{coloured:?}");
    assert!(coloured.ends_with("  | \x1b[1;31m        ^\x1b[0m"), "{coloured:?}");

    // a script error on a terminal: red; with NO_COLOR or in a pipe: none
    let dir = temp_dir("colour");
    std::fs::write(dir.join("bad.rhai"), "let x = 1;\nlet y = x + nope;\n").unwrap();
    let (raw, _, ok) = lt_on_pty(&dir, &["run", "bad.rhai"], 80, true, &[]);
    assert!(!ok);
    assert!(raw.contains("\x1b[1;31merror:\x1b[0m"), "{raw:?}");
    let (raw, _, _) = lt_on_pty(&dir, &["run", "bad.rhai"], 80, true, &[("NO_COLOR", "1")]);
    assert!(raw.contains("error:") && !raw.contains('\x1b'), "{raw:?}");
    let out = lt_in(&dir, &["run", "bad.rhai"]);
    assert!(stderr(&out).starts_with("error: ") && !stderr(&out).contains('\x1b'), "{}", stderr(&out));
}

#[test]
fn lightning_data_warnings() {
    use lt::trainer::module::{LoaderStage, LoaderTraits};
    let dir = temp_dir("warn_val");
    // a val loader without validation_step; 3 batches and log_every_n_steps 50 with a logger
    let src = r#"
fn trainer() { #{ max_epochs: 1, enable_progress_bar: false, enable_model_summary: false } }
fn init(h) { this.w = torch::zeros([1], #{requires_grad: true}); }
fn train_dataloader() { [[torch::ones([2])], [torch::ones([2])], [torch::ones([2])]] }
fn val_dataloader() { [[torch::ones([2])]] }
fn training_step(b, i) { (this.w * b[0]).sum() }
fn configure_optimizers() { optim::sgd([this.w], #{lr: 0.1}) }
"#;
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let out = lt_in(&dir, &["fit", "m.rhai"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(
        err.matches("warning: You passed in a `val_dataloader` but have no `validation_step`. Skipping val loop.")
            .count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("warning: The number of training batches (3) is smaller than the logging interval Trainer(log_every_n_steps=50). Set a lower value for log_every_n_steps if you want to see logs for the training epoch."),
        "{err}"
    );
    // without a logger, no logging-interval warning (as Lightning); a step without its loader
    let src2 = src
        .replace("max_epochs: 1,", "max_epochs: 1, logger: false,")
        .replace("fn val_dataloader() { [[torch::ones([2])]] }", "fn validation_step(b, i) { }");
    std::fs::write(dir.join("m2.rhai"), src2).unwrap();
    let err = stderr(&lt_in(&dir, &["fit", "m2.rhai"]));
    assert!(!err.contains("logging interval"), "{err}");
    assert!(
        err.contains("warning: You defined a `validation_step` but have no `val_dataloader`. Skipping val loop."),
        "{err}"
    );

    // the workers hint, where workers help (per-sample work) and CPUs allow
    use lt::trainer::data_checks::{loader_warnings, suggested_max_num_workers};
    assert_eq!(suggested_max_num_workers(2, 1), 1);
    assert_eq!(suggested_max_num_workers(16, 1), 15);
    assert_eq!(suggested_max_num_workers(16, 4), 3);
    assert_eq!(suggested_max_num_workers(1, 8), 1);
    let slow = LoaderTraits { num_workers: 0, shuffled: true, workers_help: true, thread_bound: false };
    assert_eq!(
        loader_warnings(LoaderStage::Train, &slow, 7),
        ["The 'train_dataloader' does not have many workers which may be a bottleneck. Consider increasing the value of the `num_workers` argument to `num_workers=7` in the `DataLoader` to improve performance."]
    );
    assert!(loader_warnings(LoaderStage::Train, &slow, 1).is_empty(), "one CPU to spare: no hint");
    assert!(loader_warnings(LoaderStage::Train, &LoaderTraits { num_workers: 2, ..slow }, 7).is_empty());
    let gather = LoaderTraits { num_workers: 0, shuffled: false, workers_help: false, thread_bound: false };
    assert!(loader_warnings(LoaderStage::Val, &gather, 7).is_empty(), "a tensor gather needs no workers");
    assert_eq!(
        loader_warnings(LoaderStage::Val, &LoaderTraits { shuffled: true, ..gather }, 7),
        ["Your `val_dataloader`'s sampler has shuffling enabled, it is strongly recommended that you turn shuffling off for val/test dataloaders."]
    );
    // a script dataset asked for workers: none start, and the run says so
    let script_ds = LoaderTraits { num_workers: 3, thread_bound: true, ..gather };
    let w = loader_warnings(LoaderStage::Train, &script_ds, 7);
    assert!(w.len() == 1 && w[0].contains("`num_workers=3` starts no workers"), "{w:?}");
    assert!(loader_warnings(LoaderStage::Train, &LoaderTraits { num_workers: 0, ..script_ds }, 7).is_empty());
}
