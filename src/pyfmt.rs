//! Python's way of writing a float's exponent, shared by everything that prints numbers as
//! Python would (tensor printing, checkpoint file names, metrics.csv).

/// Rewrites the exponent of Rust's scientific text (`1.5e-7`, `2e16`) as Python writes it:
/// a sign and at least two digits (`1.5e-07`, `2e+16`). Text without an exponent is unchanged.
pub fn exponent(s: &str) -> String {
    match s.split_once('e') {
        Some((mantissa, e)) => {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => s.to_string(),
    }
}

/// Python's `repr` of a string: single quotes, or double quotes when it holds a single quote
/// and no double quote; backslashes and the chosen quote escaped.
pub fn repr_str(s: &str) -> String {
    let q = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::from(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}
