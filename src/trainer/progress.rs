//! What the user sees while training: Lightning's TQDM bar (`Epoch 0:   8%|▊         | 24/300
//! [00:05<01:04,  4.31it/s, v_num=4, train_loss=10.20]`).
//!
//! On a terminal the bar is redrawn in place, as wide as the terminal (tqdm's `dynamic_ncols`:
//! the bar takes the room the text leaves, and a line that still does not fit is cut from the
//! right, the metrics first): one line per epoch, which the validation bar interrupts on the line
//! below and gives back (erased when it ends); the sanity check's bar is erased too; a test or
//! `validate` bar stays. In a pipe or a log file there is no redrawing: an epoch's line at most
//! every ~10% of it and at its end, nothing for the validation and sanity-check bars (their
//! `prog_bar` values show in the epoch's line), a test's line at its end.
use std::collections::BTreeMap;
use std::time::Instant;

/// A value shown after the bar: Lightning's `v_num` is an int, logged values are floats.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    Int(i64),
    Float(f64),
}

/// Lightning's `Tqdm.format_num`: tqdm's (`.3g` when that is shorter than the number's text),
/// and floats padded with zeros to 5 characters so the line does not flicker (`10.20`, `0.500`,
/// `2.000`, `1.23e+4`).
pub fn format_num(n: Num) -> String {
    let (g, plain) = match n {
        Num::Int(i) => (crate::pyfmt::format_g(i as f64, 3), i.to_string()),
        Num::Float(f) => (crate::pyfmt::format_g(f, 3), crate::pyfmt::repr_f64(f)),
    };
    let g = g.replace("e+0", "e+").replace("e-0", "e-");
    let mut s = if g.len() < plain.len() { g } else { plain };
    if matches!(n, Num::Float(_)) && !s.contains('e') {
        if !s.contains('.') && s.len() < PAD_SIZE {
            s.push('.');
        }
        while s.len() < PAD_SIZE {
            s.push('0');
        }
    }
    s
}

const PAD_SIZE: usize = 5;

/// tqdm's `format_interval`: `MM:SS`, or `H:MM:SS` from an hour on.
pub fn format_interval(secs: f64) -> String {
    let t = secs.trunc() as i64;
    let sign = if t < 0 { "-" } else { "" };
    let (mins, s) = (t.abs() / 60, t.abs() % 60);
    let (h, m) = (mins / 60, mins % 60);
    if h > 0 {
        format!("{sign}{h}:{m:02}:{s:02}")
    } else {
        format!("{sign}{m:02}:{s:02}")
    }
}

/// `key=value, …` as tqdm's `set_postfix` writes it.
pub fn format_postfix(items: &[(String, Num)]) -> String {
    items.iter().map(|(k, v)| format!("{k}={}", format_num(*v))).collect::<Vec<_>>().join(", ")
}

/// tqdm's smooth-block bar of `width` cells, `frac` of them filled.
fn bar_cells(frac: f64, width: usize) -> String {
    const CHARSET: [char; 9] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉', '█'];
    let nsyms = CHARSET.len() - 1;
    let units = (frac.clamp(0.0, 1.0) * width as f64 * nsyms as f64) as usize;
    let (full, part) = (units / nsyms, units % nsyms);
    let mut s = "█".repeat(full.min(width));
    if full < width {
        s.push(CHARSET[part]);
        s.push_str(&" ".repeat(width - full - 1));
    }
    s
}

/// The first `ncols` characters of `s` (tqdm's `disp_trim`).
fn trim(s: String, ncols: Option<usize>) -> String {
    match ncols {
        Some(n) if s.chars().count() > n => s.chars().take(n).collect(),
        _ => s,
    }
}

/// tqdm's `format_meter` with Lightning's `BAR_FORMAT`
/// (`{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]`): the
/// line for `n` of `total` done in `elapsed` seconds, `ncols` wide (a 10-cell bar when None).
pub fn format_meter(
    desc: &str,
    n: usize,
    total: Option<usize>,
    elapsed: f64,
    ncols: Option<usize>,
    postfix: &str,
) -> String {
    // tqdm drops a total that has been passed
    let total = total.filter(|&t| t == 0 || (n as f64) < t as f64 + 0.5);
    let rate = if elapsed > 0.0 { Some(n as f64 / elapsed) } else { None }.filter(|&r| r != 0.0);
    let rate_fmt = match rate {
        Some(r) => format!("{r:5.2}it/s"),
        None => "?it/s".to_string(),
    };
    let total_fmt = total.map_or("?".to_string(), |t| t.to_string());
    let postfix = if postfix.is_empty() { String::new() } else { format!(", {postfix}") };
    let remaining = match (rate, total) {
        (Some(r), Some(t)) if t > 0 => format_interval((t as f64 - n as f64) / r),
        (Some(_), _) => format_interval(0.0),
        (None, _) => "?".to_string(),
    };
    let mut l_bar = if desc.is_empty() {
        String::new()
    } else if desc.ends_with(": ") {
        desc.to_string()
    } else {
        format!("{desc}: ")
    };
    let r_bar = format!("| {n}/{total_fmt} [{}<{remaining}, {rate_fmt}{postfix}]", format_interval(elapsed));
    let frac = match total {
        Some(t) if t > 0 => {
            let frac = n as f64 / t as f64;
            l_bar.push_str(&format!("{:3.0}%|", frac * 100.0));
            Some(frac)
        }
        _ => {
            l_bar.push('|');
            None
        }
    };
    let nobar = l_bar.chars().count() + r_bar.chars().count();
    let width = ncols.map_or(10, |c| c.saturating_sub(nobar).max(1));
    let bar = match frac {
        Some(f) => bar_cells(f, width),
        None => " ".repeat(width),
    };
    trim(format!("{l_bar}{bar}{r_bar}"), ncols)
}

/// How a bar behaves on a terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Its own line, which stays when it ends (an epoch, a test, `validate`).
    Leave,
    /// On the line below the epoch's bar, erased when it ends (validation during a fit).
    Below,
    /// Its own line, erased when it ends (the sanity check).
    Transient,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Off,
    Terminal,
    Plain,
}

/// The terminal's width when it cannot be asked.
const FALLBACK_COLUMNS: usize = 80;

/// How often a terminal's bar is redrawn at most.
const REDRAW_MS: u128 = 100;

pub struct Progress {
    mode: Mode,
    role: Role,
    label: String,
    total: Option<usize>,
    done: usize,
    started: Instant,
    last_draw: Option<Instant>,
    last_plain_decile: usize,
    /// The logger's version (`v_num`), shown first after the bar.
    pub version: Option<usize>,
}

impl Progress {
    pub fn new(enabled: bool) -> Progress {
        let mode = match (enabled, crate::console::style::stdout_is_terminal()) {
            (false, _) => Mode::Off,
            (true, true) => Mode::Terminal,
            (true, false) => Mode::Plain,
        };
        Progress {
            mode,
            role: Role::Leave,
            label: String::new(),
            total: None,
            done: 0,
            started: Instant::now(),
            last_draw: None,
            last_plain_decile: 0,
            version: None,
        }
    }

    fn slot(&self) -> usize {
        usize::from(self.role == Role::Below)
    }

    /// Starts a bar (`Epoch 3`, `Validation DataLoader 0`, `Testing DataLoader 0`) of `total` steps.
    pub fn start(&mut self, label: &str, total: Option<usize>, role: Role) {
        self.label = label.to_string();
        self.total = total;
        self.role = role;
        self.done = 0;
        self.started = Instant::now();
        self.last_plain_decile = 0;
        self.last_draw = None;
        if self.mode == Mode::Terminal {
            self.draw(&BTreeMap::new());
        }
    }

    /// The bar's line, `ncols` wide (None: tqdm's 10-cell bar, no limit).
    pub fn line(&self, metrics: &BTreeMap<String, f64>, ncols: Option<usize>) -> String {
        let mut items: Vec<(String, Num)> = Vec::new();
        if let Some(v) = self.version {
            items.push(("v_num".into(), Num::Int(v as i64)));
        }
        items.extend(metrics.iter().map(|(k, v)| (k.clone(), Num::Float(*v))));
        let elapsed = self.started.elapsed().as_secs_f64();
        format_meter(&self.label, self.done, self.total, elapsed, ncols, &format_postfix(&items))
    }

    fn terminal_line(&self, metrics: &BTreeMap<String, f64>) -> String {
        let cols = crate::console::terminal_width(crate::console::Stream::Stdout).unwrap_or(FALLBACK_COLUMNS);
        self.line(metrics, Some(cols))
    }

    fn draw(&mut self, metrics: &BTreeMap<String, f64>) {
        crate::console::bar_draw(self.slot(), &self.terminal_line(metrics));
        self.last_draw = Some(Instant::now());
    }

    /// One more batch done; `metrics` are the `prog_bar` values.
    pub fn advance(&mut self, metrics: &BTreeMap<String, f64>) {
        self.done += 1;
        match self.mode {
            Mode::Off => {}
            Mode::Terminal => {
                let due = self.last_draw.is_none_or(|t| t.elapsed().as_millis() >= REDRAW_MS);
                if due || Some(self.done) == self.total {
                    self.draw(metrics);
                }
            }
            Mode::Plain => {
                if let (Some(t), Role::Leave) = (self.total, self.role) {
                    let decile = self.done * 10 / t.max(1);
                    if t >= 20 && decile > self.last_plain_decile && self.done < t {
                        self.last_plain_decile = decile;
                        outln!("{}", self.line(metrics, None));
                    }
                }
            }
        }
    }

    /// Ends the bar: its final line stays (`Role::Leave`) or it is erased.
    pub fn finish(&mut self, metrics: &BTreeMap<String, f64>) {
        match (self.mode, self.role) {
            (Mode::Off, _) => {}
            (Mode::Terminal, Role::Leave) => crate::console::bar_close(0, Some(&self.terminal_line(metrics))),
            (Mode::Terminal, _) => crate::console::bar_close(self.slot(), None),
            (Mode::Plain, Role::Leave) => outln!("{}", self.line(metrics, None)),
            (Mode::Plain, _) => {}
        }
    }

    /// A line above the bars (unless the bar is off: `--quiet`, `enable_progress_bar: false`).
    pub fn message(&self, text: &str) {
        if self.mode != Mode::Off {
            outln!("{text}");
        }
    }
}

/// While alive, the terminal's bars belong to a run; when it ends (an error, a pause), what the
/// bars showed stays and the next output starts on a line of its own.
pub struct BarsGuard;

impl Drop for BarsGuard {
    fn drop(&mut self) {
        crate::console::bars_abandon();
    }
}
