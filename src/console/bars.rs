//! The progress lines live at the bottom of a terminal: slot 0 (the epoch's bar, or a bar of its
//! own: sanity check, test) on the cursor's line, slot 1 (the validation bar that interrupts the
//! epoch's) on the line below, as tqdm's `position=1`. Other output goes above them: as tqdm's
//! `write`, a line printed while bars are shown clears them, is printed, and they are drawn again.
//!
//! [`Bars`] only computes the terminal sequences (so they can be tested); the process-wide one
//! writes them to stdout, under the lock every other write to stdout and stderr takes.

/// The bars shown, and the sequences that draw them.
#[derive(Default, Debug)]
pub struct Bars {
    lines: [Option<String>; 2],
}

const CLEAR_LINE: &str = "\r\x1b[2K";
const UP: &str = "\x1b[A";

impl Bars {
    pub const fn new() -> Bars {
        Bars { lines: [None, None] }
    }

    pub fn is_empty(&self) -> bool {
        self.lines.iter().all(Option::is_none)
    }

    /// Draws `line` in `slot` (replacing what it showed). The cursor stays on slot 0's line.
    pub fn draw(&mut self, slot: usize, line: &str) -> String {
        let slot = slot.min(1);
        self.lines[slot] = Some(line.to_string());
        Self::draw_slot(slot, line)
    }

    fn draw_slot(slot: usize, line: &str) -> String {
        if slot == 0 {
            format!("{CLEAR_LINE}{line}")
        } else {
            format!("\n{CLEAR_LINE}{line}{UP}\r")
        }
    }

    /// Ends the bar in `slot`: with `leave`, its last text stays on the screen as a line of its
    /// own (the next output starts below it); without, it is erased.
    pub fn close(&mut self, slot: usize, leave: Option<&str>) -> String {
        let slot = slot.min(1);
        if self.lines[slot].is_none() && leave.is_none() {
            return String::new();
        }
        let mut out = self.hide();
        self.lines[slot] = None;
        if let Some(line) = leave {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&self.show());
        out
    }

    /// Clears the bars' lines, leaving the cursor at the start of slot 0's line (where other
    /// output then goes).
    pub fn hide(&self) -> String {
        if self.is_empty() {
            return String::new();
        }
        let mut out = CLEAR_LINE.to_string();
        if self.lines[1].is_some() {
            out.push_str(&format!("\n{CLEAR_LINE}{UP}\r"));
        }
        out
    }

    /// Draws the bars again (after [`Bars::hide`] and the output that went above them).
    pub fn show(&self) -> String {
        let mut out = String::new();
        if let Some(l) = &self.lines[0] {
            out.push_str(&Self::draw_slot(0, l));
        }
        if let Some(l) = &self.lines[1] {
            out.push_str(&Self::draw_slot(1, l));
        }
        out
    }

    /// Forgets the bars, leaving slot 0's text on the screen and erasing slot 1's (a run that
    /// ended in an error or a pause: what follows starts on a fresh line).
    pub fn abandon(&mut self) -> String {
        if self.is_empty() {
            return String::new();
        }
        let mut out = String::new();
        if self.lines[1].take().is_some() {
            out.push_str(&format!("\n{CLEAR_LINE}{UP}\r"));
        }
        if self.lines[0].take().is_some() {
            out.push('\n');
        } else {
            out.push_str(CLEAR_LINE);
        }
        out
    }
}
