//! Comparing golden output: line by line, numbers within a tolerance, and a readable diff.
use std::path::Path;

/// Splits a line into tokens where numbers are separate, so `tensor([1.0001, 2.])` compares its
/// numbers with a tolerance and everything else exactly.
fn tokens(line: &str) -> Vec<String> {
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
                out.push(std::mem::take(&mut cur));
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
            out.push(num);
        } else {
            cur.push(c);
            i += 1;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn lines_match(a: &str, b: &str, tol: f64) -> bool {
    if a == b {
        return true;
    }
    if tol <= 0.0 {
        return false;
    }
    let (ta, tb) = (tokens(a), tokens(b));
    ta.len() == tb.len()
        && ta.iter().zip(&tb).all(|(x, y)| {
            if x == y {
                return true;
            }
            match (x.trim_end_matches('.').parse::<f64>(), y.trim_end_matches('.').parse::<f64>()) {
                (Ok(p), Ok(q)) => (p - q).abs() <= tol * (1.0 + p.abs().max(q.abs())),
                _ => false,
            }
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
