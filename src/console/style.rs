//! What the terminal can show: its width (for the progress bar, the docs, tables) and whether to
//! colour. Colour follows https://no-color.org: only on a terminal, never when `NO_COLOR` is set
//! to anything but the empty string, never on `TERM=dumb`.
use std::io::IsTerminal;
use std::sync::OnceLock;

/// The streams lt writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn is_terminal(self) -> bool {
        match self {
            Stream::Stdout => std::io::stdout().is_terminal(),
            Stream::Stderr => std::io::stderr().is_terminal(),
        }
    }

    fn fd(self) -> libc::c_int {
        match self {
            Stream::Stdout => libc::STDOUT_FILENO,
            Stream::Stderr => libc::STDERR_FILENO,
        }
    }
}

/// The columns of the terminal `stream` writes to (ioctl TIOCGWINSZ), else `$COLUMNS`; None when
/// neither tells (a pipe without `$COLUMNS`). Asked each time: the window may be resized.
pub fn terminal_width(stream: Stream) -> Option<usize> {
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which outlives the call.
    let cols = unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(stream.fd(), libc::TIOCGWINSZ, &mut ws) == 0 {
            ws.ws_col as usize
        } else {
            0
        }
    };
    if cols > 0 {
        return Some(cols);
    }
    std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse().ok()).filter(|&c: &usize| c > 0)
}

/// Whether stdout is a terminal (the progress bar is drawn in place only there).
pub fn stdout_is_terminal() -> bool {
    Stream::Stdout.is_terminal()
}

/// The colour rule, given what the environment says: a terminal, `NO_COLOR` unset or empty,
/// `TERM` not `dumb`.
pub fn colour_wanted(is_terminal: bool, no_color: Option<&str>, term: Option<&str>) -> bool {
    is_terminal && no_color.is_none_or(str::is_empty) && term != Some("dumb")
}

/// Whether text written to `stream` is coloured (decided once per run).
pub fn colour(stream: Stream) -> bool {
    static OUT: OnceLock<bool> = OnceLock::new();
    static ERR: OnceLock<bool> = OnceLock::new();
    let cell = if stream == Stream::Stdout { &OUT } else { &ERR };
    *cell.get_or_init(|| {
        let no_color = std::env::var("NO_COLOR").ok();
        let term = std::env::var("TERM").ok();
        colour_wanted(stream.is_terminal(), no_color.as_deref(), term.as_deref())
    })
}

/// What a piece of text is, which decides its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// `error:` and the caret under the failing code: bold red.
    Error,
    /// `warning:`: bold yellow.
    Warning,
    /// Table headers, section titles: bold.
    Header,
    /// Metric names, signatures: cyan.
    Name,
    /// Secondary text (notes, locations): dim.
    Dim,
}

impl Style {
    fn sgr(self) -> &'static str {
        match self {
            Style::Error => "1;31",
            Style::Warning => "1;33",
            Style::Header => "1",
            Style::Name => "36",
            Style::Dim => "2",
        }
    }
}

/// `text` in `style` when `stream` is coloured, else `text` unchanged.
pub fn paint(stream: Stream, style: Style, text: &str) -> String {
    paint_if(colour(stream), style, text)
}

/// `text` in `style` when `on`.
pub fn paint_if(on: bool, style: Style, text: &str) -> String {
    if on && !text.is_empty() {
        format!("\x1b[{}m{text}\x1b[0m", style.sgr())
    } else {
        text.to_string()
    }
}

/// `text` without the colour sequences [`paint`] adds.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// An error's text as printed: `error: ` and `text`; when `on`, the prefix in bold red and the
/// caret line of a script error (`  | ^`) in red, its `-->` location dim.
pub fn error_text(on: bool, text: &str) -> String {
    let mut out = paint_if(on, Style::Error, "error:");
    out.push(' ');
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let caret = line.split_once(" | ").is_some_and(|(num, rest)| {
            num.trim().is_empty() && rest.trim_end().ends_with('^') && rest.trim_matches([' ', '\t', '^']).is_empty()
        });
        if caret {
            let (num, rest) = line.split_once(" | ").unwrap_or((line, ""));
            out.push_str(&format!("{num} | {}", paint_if(on, Style::Error, rest)));
        } else if line.starts_with("  --> ") {
            out.push_str(&paint_if(on, Style::Dim, line));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// A table as lt prints them (comfy_table's UTF8_FULL borders) for `stream`: cell styles (bold
/// headers, coloured columns) show only when that stream is coloured; a Dynamic arrangement
/// fits the stream's terminal.
pub fn table(stream: Stream) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL);
    t.force_no_tty();
    if colour(stream) {
        t.enforce_styling();
    }
    if let Some(w) = terminal_width(stream) {
        t.set_width(w.min(u16::MAX as usize) as u16);
    }
    t
}

/// Header cells in bold.
pub fn header<S: ToString>(names: impl IntoIterator<Item = S>) -> Vec<comfy_table::Cell> {
    names.into_iter().map(|n| comfy_table::Cell::new(n).add_attribute(comfy_table::Attribute::Bold)).collect()
}

/// `text` broken at spaces into lines of at most `width` characters (a word longer than that
/// stays whole on its own line).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let (cl, wl) = (cur.chars().count(), word.chars().count());
        if cl > 0 && cl + 1 + wl > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(cur);
    }
    lines
}
