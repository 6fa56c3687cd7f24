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

/// Python's `repr` of a float: the shortest text that reads back, in exponent form below 1e-4
/// and from 1e16 (`0.5`, `3.0`, `1e-07`, `nan`).
pub fn repr_f64(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    exponent(&format!("{v:?}"))
}

/// Python's `format(v, f".{precision}g")`: `precision` significant digits, exponent form when
/// the exponent is below -4 or at least `precision`, trailing zeros removed (`10.2`, `1.23e+04`).
pub fn format_g(v: f64, precision: usize) -> String {
    if !v.is_finite() {
        return repr_f64(v);
    }
    let p = precision.max(1);
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let sci = format!("{v:.*e}", p - 1);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= p as i32 {
        exponent(&format!("{}e{exp}", strip_fraction_zeros(mantissa)))
    } else {
        strip_fraction_zeros(&format!("{v:.*}", (p as i32 - 1 - exp) as usize)).to_string()
    }
}

fn strip_fraction_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}
