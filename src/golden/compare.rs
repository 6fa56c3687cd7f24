//! Comparing golden output: line by line, numbers within a tolerance, and a readable diff.
use std::path::Path;

/// The relative tolerance `lt golden` uses unless told otherwise (`--tolerance X`, `--exact`).
///
/// float32 results differ in the last bits between CPUs (MKL/oneDNN/ATen pick other kernels on
/// AVX2 and AVX-512), about 1e-7 relative per op. A few training steps through batch norm, softmax
/// and Adam grow that to ~1e-4 relative in a loss (seen: `scripts/cnn.rhai` test_loss 1.38929 on one
/// CPU, 1.38943 on another). 1e-3 absorbs that with a 10× margin; a change of behaviour (another
/// step, init, batch or learning rate) moves printed losses by far more.
pub const DEFAULT_TOLERANCE: f64 = 1e-3;

/// A token of a golden line: a number, or the text between numbers.
#[derive(Debug, PartialEq)]
enum Token {
    /// An integer (no `.`, no exponent): counts, shapes, indices, steps. Always compared exactly.
    Int(String),
    /// A float, compared within the tolerance.
    Float(String),
    Text(String),
}

/// Splits a line into tokens where numbers are separate, so `tensor([1.0001, 2.])` compares its
/// numbers with a tolerance and everything else exactly.
fn tokens(line: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let starts_number =
            c.is_ascii_digit() || ((c == '-' || c == '.') && i + 1 < chars.len() && chars[i + 1].is_ascii_digit());
        if starts_number && (cur.is_empty() || !cur.ends_with(|p: char| p.is_alphanumeric() || p == '_')) {
            if !cur.is_empty() {
                out.push(Token::Text(std::mem::take(&mut cur)));
            }
            let mut num = String::new();
            num.push(c);
            i += 1;
            while i < chars.len() {
                let d = chars[i];
                let prev = num.chars().last().unwrap_or(' ');
                if d.is_ascii_digit() || d == '.' || d == 'e' || ((d == '-' || d == '+') && prev == 'e') {
                    num.push(d);
                    i += 1;
                } else {
                    break;
                }
            }
            let float = num.contains(['.', 'e']);
            out.push(if float { Token::Float(num) } else { Token::Int(num) });
        } else {
            cur.push(c);
            i += 1;
        }
    }
    if !cur.is_empty() {
        out.push(Token::Text(cur));
    }
    out
}

/// Text between numbers, with what a number's width changes taken out: spaces (padding) and the
/// repeats of a table's box-drawing rule (`├╌╌╌╌┼` is as wide as the widest number in its column).
fn layout_free(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().filter(|c| !c.is_whitespace()) {
        let rule = ('\u{2500}'..='\u{257F}').contains(&c);
        if !(rule && out.ends_with(c)) {
            out.push(c);
        }
    }
    out
}

fn parse_float(s: &str) -> Option<f64> {
    s.trim_end_matches('.').parse::<f64>().ok()
}

/// Whether two lines match: equal, or (with `tol > 0`) equal but for floats within `tol` (relative
/// above 1, absolute below: `|p - q| <= tol * (1 + max(|p|, |q|))`) and the padding they cause.
fn lines_match(a: &str, b: &str, tol: f64) -> bool {
    if a == b {
        return true;
    }
    if tol <= 0.0 {
        return false;
    }
    let (ta, tb) = (tokens(a), tokens(b));
    ta.len() == tb.len()
        && ta.iter().zip(&tb).all(|(x, y)| match (x, y) {
            (Token::Float(p), Token::Float(q)) => match (parse_float(p), parse_float(q)) {
                (Some(p), Some(q)) => (p - q).abs() <= tol * (1.0 + p.abs().max(q.abs())),
                _ => p == q,
            },
            (Token::Int(p), Token::Int(q)) => p == q,
            (Token::Text(p), Token::Text(q)) => layout_free(p) == layout_free(q),
            _ => false,
        })
}

/// None when `actual` matches `expected`; otherwise a diff (`-` expected, `+` actual) with context.
pub fn diff(expected: &str, actual: &str, tol: f64) -> Option<String> {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    if e.len() == a.len() && e.iter().zip(&a).all(|(x, y)| lines_match(x, y, tol)) {
        return None;
    }
    // Longest common subsequence on lines, for a diff that lines up insertions and deletions.
    let (n, m) = (e.len(), a.len());
    let mut dp = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            dp[i][j] = if lines_match(e[i], a[j], tol) { dp[i + 1][j + 1] + 1 } else { dp[i + 1][j].max(dp[i][j + 1]) };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    let mut ops: Vec<(char, usize, &str)> = Vec::new();
    while i < n || j < m {
        if i < n && j < m && lines_match(e[i], a[j], tol) {
            ops.push((' ', i + 1, e[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || dp[i + 1][j] >= dp[i][j + 1]) {
            ops.push(('-', i + 1, e[i]));
            i += 1;
        } else {
            ops.push(('+', j + 1, a[j]));
            j += 1;
        }
    }
    // print changed lines with 2 lines of context
    let changed: Vec<usize> = ops.iter().enumerate().filter(|(_, o)| o.0 != ' ').map(|(k, _)| k).collect();
    let mut last_printed: Option<usize> = None;
    for (k, (tag, _, text)) in ops.iter().enumerate() {
        let near = changed.iter().any(|&c| c.abs_diff(k) <= 2);
        if !near {
            continue;
        }
        if let Some(l) = last_printed {
            if k > l + 1 {
                out.push_str("   ...\n");
            }
        }
        out.push_str(&format!(" {tag} {text}\n"));
        last_printed = Some(k);
    }
    Some(out)
}

/// Writes a golden file atomically.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    crate::fs::write_atomic(path, text.as_bytes()).map_err(std::io::Error::other)
}
