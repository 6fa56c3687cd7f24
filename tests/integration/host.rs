//! The scripting host: `lt repl` (piped and in a pseudo-terminal), `breakpoint()`, `lt fit --watch`
//! and golden tests of module scripts. Every test drives the real binary.
use crate::common::{lt, lt_bin, lt_with_bytes, lt_with_input, stdout, temp_dir};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn all(o: &Output) -> String {
    format!("{}{}", stdout(o), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn repl_piped_keeps_state_prints_values_and_survives_errors() {
    let dir = temp_dir("repl_piped");
    let input = "let x = torch::ones([2, 2]);\nx * 3\nfn twice(a) {\n    a * 2\n}\ntwice(21)\nundefined_fn(1)\nlet s = [1,\n 2, 3];\ns.len()\n\"text\"\n:vars\n:help zeros\n:bogus\n:fit 2\nx.sum()\n:quit\nprint(\"not reached\");\n";
    let out = lt_with_input(&dir, &["repl"], input);
    let text = all(&out);
    assert!(out.status.success(), "{text}");
    let so = stdout(&out);
    assert!(so.contains("tensor([[3., 3.],\n        [3., 3.]])"), "{so}");
    assert!(so.contains("\n42\n"), "{so}");
    assert!(so.contains("\n3\n"), "multi-line array literal: {so}");
    assert!(so.contains("\"text\""), "{so}");
    assert!(so.contains("x: Tensor = tensor([[1., 1.],"), ":vars: {so}");
    assert!(so.contains("torch::zeros(shape: any) -> Tensor"), ":help: {so}");
    assert!(so.contains("tensor(4.)"), "the session went on after the errors: {so}");
    assert!(!so.contains("not reached"), "{so}");
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(se.contains("error: Function not found: undefined_fn") && se.contains("--> <repl>:1:1"), "{se}");
    assert!(se.contains("unknown command :bogus") && se.contains("no module loaded"), "{se}");
}

/// A line of piped input that is not UTF-8 is refused by number and the session goes on.
#[test]
fn repl_piped_refuses_a_line_that_is_not_utf8_and_goes_on() {
    let dir = temp_dir("repl_utf8");
    let out = lt_with_bytes(&dir, &["repl"], b"let a = 20;\nlet b = \"\xff\xfe\";\na + 22\n");
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(se.contains("error: input line 2 is not UTF-8 text (byte 0xff at byte 10); it was skipped"), "{se}");
    assert!(stdout(&out).contains("42"), "the session went on: {}", all(&out));
}

const MODULE: &str = r#"
fn trainer() { #{ max_epochs: 1, enable_progress_bar: false, enable_model_summary: false, logger: false, enable_checkpointing: false, num_sanity_val_steps: 0 } }
fn init(hp) { this.w = torch::zeros([2, 1], #{requires_grad: true}); }
fn configure_optimizers() { optim::adam([this.w], #{lr: 0.1}) }
fn train_dataloader() { [[torch::tensor([[1.0, 2.0], [3.0, 4.0]]), torch::tensor([[1.0], [-1.0]])]] }
fn training_step(batch, i) {
    let loss = (batch[0].matmul(this.w) - batch[1]).square().mean();
    this.log("train_loss", loss);
    loss
}
"#;

#[test]
fn repl_module_fit_continues_between_commands() {
    let dir = temp_dir("repl_fit");
    std::fs::write(dir.join("m.rhai"), MODULE).unwrap();
    // 2 + 3 steps in one session must end where 5 steps in one go end (Adam's state carried over).
    let split =
        lt_with_input(&dir, &["repl", "m.rhai"], ":fit 2\n:fit 3\n:metrics\nthis.w.sum().item()\nthis.w.grad.shape\n");
    let whole = lt_with_input(&dir, &["repl", "m.rhai"], ":fit 5\nthis.w.sum().item()\n");
    let (s, w) = (stdout(&split), stdout(&whole));
    assert!(s.contains("global_step 2") && s.contains("global_step 5"), "{}", all(&split));
    assert!(s.contains("train_loss = "), ":metrics: {s}");
    assert!(s.contains("[2, 1]"), "gradients are inspectable: {s}");
    let last_float = |t: &str| t.lines().filter_map(|l| l.trim().parse::<f64>().ok()).next_back();
    let (a, b) = (last_float(&s).expect("a weight sum"), last_float(&w).expect("a weight sum"));
    assert_eq!(a, b, "split:\n{s}\nwhole:\n{w}");
    assert!(a != 0.0);
    // the REPL's Trainer is built as `lt fit`'s: both loggers and the default ModelCheckpoint
    let dir = temp_dir("repl_fit_logs");
    std::fs::write(dir.join("m.rhai"), MODULE).unwrap();
    let sets = ["repl", "m.rhai", "--set", "trainer.logger=true", "--set", "trainer.enable_checkpointing=true"];
    let out = lt_with_input(&dir, &sets, ":fit 2\n");
    assert!(out.status.success(), "{}", all(&out));
    let v0 = dir.join("lightning_logs/version_0");
    let files: Vec<String> = std::fs::read_dir(&v0)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default();
    assert!(files.iter().any(|f| f == "hparams.yaml"), "the CSV logger: {files:?}");
    assert!(files.iter().any(|f| f.starts_with("events.out.tfevents")), "TensorBoard too: {files:?}");
    let ckpts = std::fs::read_dir(v0.join("checkpoints")).map(|d| d.count()).unwrap_or(0);
    assert!(ckpts > 0, "the default ModelCheckpoint saved");
}

/// Collects a child's output chunks on a thread, so the test can wait for text to appear.
struct Screen {
    rx: std::sync::mpsc::Receiver<String>,
    seen: String,
    /// Where the next wait starts looking: just after what the last wait found.
    cursor: usize,
}

impl Screen {
    fn new(mut out: impl std::io::Read + Send + 'static) -> Screen {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || tx.send(String::from_utf8_lossy(&buf[..n]).to_string()).is_err() {
                    break;
                }
            }
        });
        Screen { rx, seen: String::new(), cursor: 0 }
    }

    /// Waits until `needle` occurs `count` times after the cursor, then moves the cursor past the
    /// last of them (false if the output ends first).
    fn wait_for(&mut self, needle: &str, count: usize) -> bool {
        loop {
            let found: Vec<usize> =
                self.seen[self.cursor..].match_indices(needle).map(|(i, _)| i).take(count).collect();
            if found.len() == count {
                self.cursor += found[count - 1] + needle.len();
                return true;
            }
            // a generous bound so a broken terminal fails the test instead of hanging it
            match self.rx.recv_timeout(std::time::Duration::from_secs(60)) {
                Ok(chunk) => self.seen.push_str(&chunk),
                Err(_) => return false,
            }
        }
    }
}

#[test]
fn repl_in_a_pseudo_terminal() {
    let dir = temp_dir("repl_tty");
    // One input at a time, each once the editor is ready for it (typed-ahead input may be dropped
    // when the editor switches terminal modes).
    // (After a multi-line input the editor asks the terminal for the cursor position, which this
    // pseudo-terminal never answers: the multi-line input comes last.)
    let mut steps: Vec<(&str, &str, usize)> = vec![("", "lt> ", 1)];
    steps.push(("let x = 6 * 7;\r", "lt> ", 1));
    steps.push(("torch::zer\t", "torch::zeros", 1));
    steps.push(("([2])\r", "tensor([0., 0.])", 1));
    // the continuation prompt, not the echo: the echo can come before the editor reads again
    steps.push(("fn f(a) {\r", "... ", 1));
    steps.push(("a + 42 }; f(1000)\r", "1042", 1));
    let Some((ok, seen)) = in_terminal(&dir, "repl", &steps) else { return };
    assert!(ok, "{seen}");
    let history = std::fs::read_to_string(dir.join("cache/lt/repl_history")).unwrap_or_default();
    assert!(history.contains("f(1000)"), "history file: {history}");
}

/// Runs `lt args` in a pseudo-terminal (`script`, util-linux): each step sends its input, then
/// waits for `expect` to appear `count` times after what the previous step waited for. Send the
/// next input only once a prompt is up (the line editor flushes typed-ahead input). Returns whether
/// every step was seen, and the screen; None when `script` is not installed.
fn in_terminal(dir: &Path, args: &str, steps: &[(&str, &str, usize)]) -> Option<(bool, String)> {
    let cmd = format!("{} {args}", lt_bin().display());
    let mut child = match Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .current_dir(dir)
        .env("TERM", "xterm")
        .env("OMP_NUM_THREADS", crate::common::threads())
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipped: `script` (util-linux) is not available: {e}");
            return None;
        }
    };
    let mut stdin = child.stdin.take().expect("stdin");
    let mut screen = Screen::new(child.stdout.take().expect("stdout"));
    let mut ok = true;
    for (send, expect, count) in steps {
        stdin.write_all(send.as_bytes()).unwrap();
        stdin.flush().unwrap();
        if !screen.wait_for(expect, *count) {
            ok = false;
            break;
        }
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    Some((ok, screen.seen))
}

#[test]
fn enter_pauses_a_running_fit_into_the_repl() {
    let dir = temp_dir("pause_key");
    // trains until the REPL sets `this.stop`; the change must reach the running fit
    let src = MODULE
        .replace("max_epochs: 1,", "max_epochs: -1, max_steps: 1000000,")
        .replace("fn init(hp) {", "fn init(hp) { this.stop = false;")
        .replace("    loss\n}", "    if this.stop { this.trainer.should_stop = true; }\n    loss\n}\nfn on_fit_end() { print(`stopped by the REPL at step ${this.global_step}`); }");
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let steps = [
        ("", "press Enter to pause", 1),
        // each input once the REPL's prompt is up (its editor flushes typed-ahead input)
        ("\r", "lt> ", 1),
        ("this.w.shape\r", "[2, 1]", 1),
        ("", "lt> ", 1),
        ("this.stop = true;\r", "lt> ", 1),
        (":continue\r", "stopped by the REPL at step", 1),
    ];
    let Some((ok, seen)) = in_terminal(&dir, "fit m.rhai --set trainer.enable_progress_bar=true", &steps) else {
        return;
    };
    assert!(ok && seen.contains("paused at step"), "{seen}");
}

#[test]
fn ctrl_c_cancels_the_running_evaluation_not_the_repl() {
    let dir = temp_dir("repl_ctrl_c");
    let slow = MODULE
        .replace("max_epochs: 1,", "max_epochs: -1,")
        .replace("    loss\n}", "    if this.global_step == 100 { print(\"spin\" + \"ning\"); }\n    loss\n}");
    std::fs::write(dir.join("m.rhai"), slow).unwrap();
    let steps = [
        ("", "lt> ", 1),
        // Ctrl-C once the evaluation has surely started (it printed)
        ("let n = 0; print(\"sp\" + \"in\"); loop { n += 1; }\r", "spin", 1),
        ("\x03", "interrupted", 1),
        ("", "lt> ", 1),
        // the session goes on with its variables (how far the loop got depends on the timing)
        ("n >= 0\r", "true", 1),
        ("", "lt> ", 1),
        // a long :fit stops too, and the next :fit goes on from there
        (":load m.rhai\r", "loaded module", 1),
        ("", "lt> ", 1),
        (":fit 100000000\r", "spinning", 1),
        ("\x03", "interrupted (Ctrl-C)", 1),
        ("", "lt> ", 1),
        (":fit 2\r", "global_step", 1),
    ];
    let Some((ok, seen)) = in_terminal(&dir, "repl", &steps) else { return };
    assert!(ok, "{seen}");
}

#[test]
fn breakpoint_opens_the_repl_inside_a_hook_and_keeps_changes() {
    let dir = temp_dir("breakpoint");
    let src = MODULE.replace(
        "    this.log(\"train_loss\", loss);",
        "    if this.global_step == 0 { let local = 5; breakpoint(); print(`after: local=${local} marker=${this.marker}`); }\n    if this.global_step == 1 { breakpoint(); print(\"second breakpoint passed\"); }\n    this.log(\"train_loss\", loss);",
    ).replace("fn init(hp) {", "fn init(hp) { this.marker = 0;");
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let input = "i\nbatch[1].shape\nlocal = local + 1;\nthis.marker = 7;\nthis.w.shape\n:continue\n";
    let out = lt_with_input(&dir, &["fit", "m.rhai", "--set", "trainer.max_epochs=3"], input);
    let text = all(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("breakpoint() in") && text.contains("this, batch, i"), "{text}");
    assert!(text.contains("\n0\n") && text.contains("[2, 1]"), "hook arguments in scope: {text}");
    assert!(text.contains("after: local=6 marker=7"), "changes kept: {text}");
    // stdin has ended: the second breakpoint continues at once
    assert!(text.contains("second breakpoint passed"), "{text}");
}

/// Reads the child's stdout lines until one satisfies `f`; returns all lines read.
fn read_until(lines: &mut impl Iterator<Item = String>, log: &mut Vec<String>, f: impl Fn(&str) -> bool) -> bool {
    for l in lines.by_ref() {
        let hit = f(&l);
        log.push(l);
        if hit {
            return true;
        }
    }
    false
}

/// Starts `lt args` in `dir` with no stdin and stdout/stderr piped to the test.
fn spawn_lt(dir: &Path, args: &[&str]) -> std::process::Child {
    Command::new(lt_bin())
        .args(args)
        .current_dir(dir)
        .env("OMP_NUM_THREADS", crate::common::threads())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lt")
}

/// `lt fit --watch w.rhai` in `dir`: the child, its stdout lines, and a thread collecting stderr.
fn fit_watching(dir: &Path) -> (std::process::Child, impl Iterator<Item = String>, std::thread::JoinHandle<String>) {
    let mut child = spawn_lt(dir, &["fit", "--watch", "w.rhai"]);
    let stderr = child.stderr.take().expect("stderr");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });
    let lines = BufReader::new(child.stdout.take().expect("stdout")).lines().map_while(Result::ok);
    (child, lines, err_thread)
}

/// The value of `key` (like `w=`) in a line of `key=value` words.
fn field(line: &str, key: &str) -> String {
    line.split_whitespace().find_map(|t| t.strip_prefix(key)).unwrap_or("?").to_string()
}

/// Replaces `path` in one step (as editors that save by rename do).
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

const WATCHED: &str = r#"
fn trainer() { #{ max_epochs: -1, max_steps: 300000, enable_progress_bar: false, enable_model_summary: false, enable_checkpointing: false, num_sanity_val_steps: 0 } }
fn init(hp) { this.w = torch::zeros([2, 1], #{requires_grad: true}); }
fn configure_optimizers() { optim::sgd([this.w], #{lr: 0.001}) }
fn train_dataloader() { let out = []; for i in 0..10 { out.push([torch::ones([4, 2]), torch::ones([4, 1])]); } out }
fn on_train_batch_end(out, batch, i) { print(`end step=${this.global_step} w=${this.w.sum().item()}`); }
fn training_step(batch, i) {
    print(`VERSION step=${this.global_step} w=${this.w.sum().item()}`);
    STOP
    (batch[0].matmul(this.w) - batch[1]).square().mean()
}
"#;

#[test]
fn watch_swaps_training_step_at_a_step_boundary_keeping_weights() {
    let dir = temp_dir("watch");
    let path = dir.join("w.rhai");
    let v1 = WATCHED.replace("VERSION", "v1").replace("STOP", "");
    std::fs::write(&path, &v1).unwrap();
    let (mut child, mut lines, err_thread) = fit_watching(&dir);
    let mut log = Vec::new();
    let ok = read_until(&mut lines, &mut log, |l| l.starts_with("v1 step=3 "));
    assert!(ok, "{log:?}");
    // 1. a syntax error: reported, training goes on with the old code
    save(&path, &v1.replace("fn training_step(batch, i) {", "fn training_step(batch, i) { let = ;"));
    assert!(read_until(&mut lines, &mut log, |l| l.starts_with("reload skipped")), "{log:?}");
    assert!(read_until(&mut lines, &mut log, |l| l.starts_with("v1 step=")), "{log:?}");
    // 2. init changed: refused as a whole
    save(&path, &v1.replace("torch::zeros([2, 1]", "torch::ones([2, 1]").replace("VERSION", "v9"));
    assert!(read_until(&mut lines, &mut log, |l| l.starts_with("reload skipped")), "{log:?}");
    assert!(read_until(&mut lines, &mut log, |l| l.starts_with("v1 step=")), "{log:?}");
    // 3. a new training_step: swapped in; it stops the run itself
    let v2 = WATCHED.replace("VERSION", "v2").replace("STOP", "this.trainer.should_stop = true;");
    save(&path, &v2);
    assert!(read_until(&mut lines, &mut log, |l| l.starts_with("v2 step=")), "{log:?}");
    log.extend(lines);
    let status = child.wait().expect("wait");
    let err = err_thread.join().unwrap_or_default();
    assert!(status.success(), "{log:?}\n{err}");
    assert!(err.contains("syntax error") && err.contains("w.rhai:"), "location of the compile error: {err}");
    assert!(err.contains("init changed") && err.contains("restart"), "{err}");
    assert!(!log.iter().any(|l| l.starts_with("v9")), "a refused reload must not apply: {log:?}");
    // the swap happened between two steps and left the weights as the last v1 step made them
    let first_v2 = log.iter().position(|l| l.starts_with("v2 step=")).expect("v2 ran");
    let reloaded =
        log[..first_v2].iter().rposition(|l| l.starts_with("reloaded w.rhai at step")).expect("reload printed");
    assert!(log[reloaded].contains("training_step changed"), "{}", log[reloaded]);
    let last_end = log[..reloaded].iter().rposition(|l| l.starts_with("end step=")).expect("a v1 step ended before");
    assert_eq!(
        field(&log[last_end], "w="),
        field(&log[first_v2], "w="),
        "weights untouched: {:?}",
        &log[last_end..=first_v2]
    );
    assert_eq!(field(&log[last_end], "step="), field(&log[first_v2], "step="));
    assert!(field(&log[first_v2], "w=") != "0", "training had moved the weights");
    // the reload is in the metrics log
    let csv = std::fs::read_to_string(dir.join("lightning_logs/version_0/metrics.csv")).unwrap_or_default();
    assert!(csv.lines().next().is_some_and(|h| h.split(',').any(|c| c == "reload")), "{csv}");
}

#[test]
fn golden_runs_module_scripts() {
    let out = lt(&["golden", "tests/scripts/trace.rhai", "scripts/mnist.rhai"]);
    let text = stdout(&out);
    assert!(out.status.success() && text.contains("2 passed, 0 failed"), "{text}");
    // a metrics mismatch fails
    let dir = temp_dir("golden_module");
    let src = MODULE.replace("logger: false", "logger: true");
    std::fs::write(
        dir.join("m.rhai"),
        format!("// golden-args: --set trainer.max_epochs=2 --set trainer.log_every_n_steps=1\n{src}"),
    )
    .unwrap();
    assert!(crate::common::lt_in(&dir, &["golden", "m.rhai", "--bless"]).status.success());
    let metrics = std::fs::read_to_string(dir.join("m.metrics.golden")).expect("metrics blessed");
    assert!(metrics.contains("train_loss"), "{metrics}");
    let ok = crate::common::lt_in(&dir, &["golden", "m.rhai"]);
    assert!(ok.status.success(), "{}", stdout(&ok));
    std::fs::write(dir.join("m.metrics.golden"), metrics.replacen("train_loss", "other", 1)).unwrap();
    let bad = crate::common::lt_in(&dir, &["golden", "m.rhai"]);
    assert!(!bad.status.success() && stdout(&bad).contains("metrics.csv differs"), "{}", stdout(&bad));
}

#[test]
fn watch_picks_up_edits_of_imported_modules() {
    let dir = temp_dir("watch_import");
    std::fs::write(dir.join("helpers.rhai"), "fn tag() { \"h1\" }\nfn stop() { false }\n").unwrap();
    let main = WATCHED
        .replace("fn trainer()", "import \"helpers\" as helpers;\nfn trainer()")
        .replace("VERSION", "${helpers::tag()}")
        .replace("STOP", "if helpers::stop() { this.trainer.should_stop = true; }");
    std::fs::write(dir.join("w.rhai"), &main).unwrap();
    let (mut child, mut lines, _) = fit_watching(&dir);
    let mut log = Vec::new();
    assert!(read_until(&mut lines, &mut log, |l| l.starts_with("h1 step=3 ")), "{log:?}");
    save(&dir.join("helpers.rhai"), "fn tag() { \"h2\" }\nfn stop() { true }\n");
    assert!(
        read_until(&mut lines, &mut log, |l| l.starts_with("h2 step=")),
        "the imported module's edit did not apply: {log:?}"
    );
    log.extend(lines);
    let status = child.wait().expect("wait");
    assert!(status.success(), "{log:?}");
    // the weights carried over the reload
    let first_h2 = log.iter().position(|l| l.starts_with("h2 step=")).unwrap();
    let last_end = log[..first_h2].iter().rposition(|l| l.starts_with("end step=")).unwrap();
    assert_eq!(field(&log[last_end], "w="), field(&log[first_h2], "w="), "{:?}", &log[last_end..=first_h2]);
}

#[test]
fn breakpoint_in_a_terminal_gets_the_typed_lines_not_the_pause_key() {
    let dir = temp_dir("breakpoint_tty");
    let src = MODULE
        .replace("max_epochs: 1,", "max_epochs: 4,")
        .replace("fn init(hp) {", "fn init(hp) { this.marker = 0;")
        .replace(
            "    loss\n}",
            "    if this.global_step == 2 { breakpoint(); print(`marker=${this.marker}`); }\n    loss\n}",
        );
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let steps =
        [("", "(breakpoint) lt> ", 1), ("this.marker = 9;\r", "(breakpoint) lt> ", 1), (":continue\r", "marker=9", 1)];
    let Some((ok, seen)) = in_terminal(&dir, "fit m.rhai --set trainer.enable_progress_bar=true", &steps) else {
        return;
    };
    assert!(ok, "{seen}");
}

/// Runs `lt args` in `dir` with stdout a pipe whose reader goes away after the first line, as
/// `lt … | head -1` does.
fn lt_into_closed_pipe(dir: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = spawn_lt(dir, args);
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("read a line");
    // the reader is dropped here: every later write to stdout fails with EPIPE
    let out = child.wait_with_output().expect("wait for lt");
    (out.status, String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn a_closed_stdout_ends_printing_quietly_and_the_fit_still_logs() {
    let dir = temp_dir("closed_stdout");
    let (status, err) = lt_into_closed_pipe(&dir, &["doc"]);
    assert!(status.success() && !err.contains("panicked"), "lt doc | head: {status:?}\n{err}");
    // a fit that prints every step: it trains to the end, writes its logs and checkpoint, exits 0
    std::fs::write(
        dir.join("m.rhai"),
        r#"
fn trainer() { #{ max_epochs: 2, enable_progress_bar: false, log_every_n_steps: 1 } }
fn init(h) { this.w = torch::zeros([2, 1], #{ requires_grad: true }); }
fn configure_optimizers() { optim::sgd([this.w], #{ lr: 0.1 }) }
fn train_dataloader() { [[torch::ones([4, 2]), torch::ones([4, 1])]] }
fn training_step(b, i) {
    for k in 0..2000 { print(`step ${this.global_step} line ${k}`); }
    let loss = F::mse_loss(b[0].matmul(this.w), b[1]);
    this.log("train_loss", loss);
    loss
}
"#,
    )
    .unwrap();
    let (status, err) = lt_into_closed_pipe(&dir, &["fit", "m.rhai"]);
    assert!(status.success() && !err.contains("panicked"), "lt fit | head: {status:?}\n{err}");
    let csv = std::fs::read_to_string(dir.join("lightning_logs/version_0/metrics.csv")).unwrap_or_default();
    assert!(csv.lines().count() >= 3, "metrics.csv: {csv}");
    let ckpts = std::fs::read_dir(dir.join("lightning_logs/version_0/checkpoints")).map(|d| d.count()).unwrap_or(0);
    assert!(ckpts >= 1, "no checkpoint written");
}

/// `:fit N` pauses mid-epoch and the next `:fit` continues there: 3 + 4 steps over 3-batch epochs
/// validate at the same steps, and end with the same weights, as 7 steps in one go; `this.global_step`
/// at the prompt is the step the fit reached.
#[test]
fn repl_fit_pauses_mid_epoch_and_continues_exactly() {
    let module = r#"
fn trainer() { #{ max_epochs: 1000, enable_progress_bar: false, enable_model_summary: false, logger: false, enable_checkpointing: false, num_sanity_val_steps: 0, seed: 3 } }
fn init(hp) { this.w = torch::zeros([2, 1], #{requires_grad: true}); this.x = torch::randn([6, 2]); this.y = torch::randn([6, 1]); }
fn configure_optimizers() { optim::adam([this.w], #{lr: 0.1}) }
fn train_dataloader() { data::loader(data::tensor_dataset(this.x, this.y), #{batch_size: 2, shuffle: true, seed: 5}) }
fn val_dataloader() { [[torch::ones([2, 2]), torch::ones([2, 1])]] }
fn training_step(b, i) { (b[0].matmul(this.w) - b[1]).square().mean() }
fn validation_step(b, i) { print(`val at step ${this.global_step} epoch ${this.current_epoch}`); }
"#;
    let dir = temp_dir("repl_pause");
    std::fs::write(dir.join("m.rhai"), module).unwrap();
    let split = lt_with_input(&dir, &["repl", "m.rhai"], ":fit 4\nthis.global_step\n:fit 3\nthis.w.sum().item()\n");
    let whole = lt_with_input(&dir, &["repl", "m.rhai"], ":fit 7\nthis.w.sum().item()\n");
    let (s, w) = (stdout(&split), stdout(&whole));
    let vals = |t: &str| t.lines().filter(|l| l.starts_with("val at")).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(vals(&s), vec!["val at step 3 epoch 0", "val at step 6 epoch 1"], "{}", all(&split));
    assert_eq!(vals(&s), vals(&w), "whole:\n{w}");
    assert!(s.contains("global_step 4 (epoch 1)\n4\n"), "this.global_step is the fit's: {s}");
    let last_float = |t: &str| t.lines().filter_map(|l| l.trim().parse::<f64>().ok()).next_back();
    assert_eq!(last_float(&s), last_float(&w), "split:\n{s}\nwhole:\n{w}");
}
