//! What the user sees while training: on a terminal, one bar line per epoch redrawn in place (step,
//! it/s, ETA, version, `prog_bar` metrics); in a log file, plain lines at most every ~10% of an
//! epoch and at its end — no bar spam.
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Progress {
    enabled: bool,
    tty: bool,
    label: String,
    total: Option<usize>,
    done: usize,
    started: Instant,
    last_draw: Instant,
    last_plain_decile: usize,
    pub version: Option<usize>,
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

fn fmt_metrics(m: &BTreeMap<String, f64>) -> String {
    m.iter().map(|(k, v)| format!("{k}={}", fmt_num(*v))).collect::<Vec<_>>().join(", ")
}

fn fmt_num(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e4) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

impl Progress {
    pub fn new(enabled: bool) -> Progress {
        Progress {
            enabled,
            tty: std::io::stdout().is_terminal(),
            label: String::new(),
            total: None,
            done: 0,
            started: Instant::now(),
            last_draw: Instant::now(),
            last_plain_decile: 0,
            version: None,
        }
    }

    /// Starts a bar (`Epoch 3`, `Validation`, `Testing`).
    pub fn start(&mut self, label: &str, total: Option<usize>) {
        self.label = label.to_string();
        self.total = total;
        self.done = 0;
        self.started = Instant::now();
        self.last_plain_decile = 0;
    }

    fn line(&self, metrics: &BTreeMap<String, f64>) -> String {
        let el = self.started.elapsed().as_secs_f64();
        let rate = if el > 0.0 { self.done as f64 / el } else { 0.0 };
        let count = match self.total {
            Some(t) => format!("{}/{t}", self.done),
            None => format!("{}", self.done),
        };
        let eta = match self.total {
            Some(t) if rate > 0.0 && t >= self.done => format!(" ETA {}", fmt_secs((t - self.done) as f64 / rate)),
            _ => String::new(),
        };
        let mut s = format!("{}: {count} [{} {rate:.2}it/s{eta}", self.label, fmt_secs(el));
        if let Some(v) = self.version {
            s.push_str(&format!(", v_num={v}"));
        }
        let m = fmt_metrics(metrics);
        if !m.is_empty() {
            s.push_str(", ");
            s.push_str(&m);
        }
        s.push(']');
        s
    }

    /// One more batch done.
    pub fn advance(&mut self, metrics: &BTreeMap<String, f64>) {
        self.done += 1;
        if !self.enabled {
            return;
        }
        if self.tty {
            if self.last_draw.elapsed().as_millis() >= 100 || Some(self.done) == self.total {
                let mut out = std::io::stdout();
                let _ = write!(out, "\r\x1b[2K{}", self.line(metrics));
                let _ = out.flush();
                self.last_draw = Instant::now();
            }
        } else if let Some(t) = self.total {
            let decile = self.done * 10 / t.max(1);
            if t >= 20 && decile > self.last_plain_decile && self.done < t {
                self.last_plain_decile = decile;
                outln!("{}", self.line(metrics));
            }
        }
    }

    /// Ends the bar with a final line.
    pub fn finish(&mut self, metrics: &BTreeMap<String, f64>) {
        if !self.enabled {
            return;
        }
        if self.tty {
            outln!("\r\x1b[2K{}", self.line(metrics));
        } else {
            outln!("{}", self.line(metrics));
        }
    }

    pub fn message(&self, text: &str) {
        if self.enabled {
            outln!("{text}");
        }
    }
}
