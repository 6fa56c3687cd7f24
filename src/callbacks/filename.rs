//! ModelCheckpoint's filename templates: `"{epoch}-{val_loss:.2f}"` → `epoch=2-val_loss=0.31`,
//! with Python's format specs for numbers (`.2f`, `.3e`, `03d`, none).
use std::collections::BTreeMap;

fn py_sci(v: f64, prec: usize) -> String {
    crate::pyfmt::exponent(&format!("{v:.prec$e}"))
}

/// The largest width or precision a spec may ask for: a file name holds at most 255 bytes.
const MAX_SPEC_DIGITS: usize = 255;

/// A width or precision of a format spec, bounded by [`MAX_SPEC_DIGITS`].
fn spec_number(digits: &str, what: &str, spec: &str) -> Result<usize, String> {
    match digits.parse::<usize>() {
        Ok(n) if n <= MAX_SPEC_DIGITS => Ok(n),
        _ => Err(format!(
            "format spec '{spec}': the {what} {digits} is too large (at most {MAX_SPEC_DIGITS}: a file name holds 255 bytes)"
        )),
    }
}

/// Formats `v` with a Python format spec.
pub fn format_spec(v: f64, spec: &str, is_int: bool) -> Result<String, String> {
    if !v.is_finite() {
        return Ok(format_non_finite(v, spec));
    }
    if spec.is_empty() {
        return Ok(if is_int { format!("{}", v as i64) } else { format!("{v}") });
    }
    let (fill_zero, rest) = match spec.strip_prefix('0') {
        Some(r) if !r.is_empty() => (true, r),
        _ => (false, spec),
    };
    let (width_s, kind_part) = rest.split_at(rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len()));
    let width = if width_s.is_empty() { 0 } else { spec_number(width_s, "width", spec)? };
    let body = if let Some(p) = kind_part.strip_prefix('.') {
        let (prec_s, kind) = p.split_at(p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len()));
        if prec_s.is_empty() {
            return Err(format!("bad format spec '{spec}': a precision is digits after the '.'"));
        }
        let prec = spec_number(prec_s, "precision", spec)?;
        match kind {
            "f" | "" => format!("{v:.prec$}"),
            "e" => py_sci(v, prec),
            "%" => format!("{:.prec$}%", v * 100.0),
            _ => return Err(format!("unsupported format spec '{spec}'")),
        }
    } else {
        match kind_part {
            "d" => format!("{}", v.round() as i64),
            "" => {
                if is_int {
                    format!("{}", v as i64)
                } else {
                    format!("{v}")
                }
            }
            "f" => format!("{v:.6}"),
            "e" => py_sci(v, 6),
            _ => return Err(format!("unsupported format spec '{spec}'")),
        }
    };
    if body.len() >= width {
        return Ok(body);
    }
    let pad = width - body.len();
    Ok(if fill_zero {
        match body.strip_prefix('-') {
            Some(b) => format!("-{}{b}", "0".repeat(pad)),
            None => format!("{}{body}", "0".repeat(pad)),
        }
    } else {
        format!("{}{body}", " ".repeat(pad))
    })
}

/// Python's spelling of NaN and the infinities under a format spec: `nan`, `inf`, `-inf`, with
/// `%` after them for a percentage and the spec's width (zeros or spaces) in front.
fn format_non_finite(v: f64, spec: &str) -> String {
    let word = if v.is_nan() { "nan" } else { "inf" };
    let sign = if v == f64::NEG_INFINITY { "-" } else { "" };
    let body = if spec.ends_with('%') { format!("{word}%") } else { word.to_string() };
    let digits: String = spec.chars().take_while(|c| c.is_ascii_digit()).collect();
    let width = digits.parse::<usize>().unwrap_or(0);
    let pad = width.saturating_sub(sign.len() + body.len());
    if digits.starts_with('0') {
        format!("{sign}{}{body}", "0".repeat(pad))
    } else {
        format!("{}{sign}{body}", " ".repeat(pad))
    }
}

/// Fills a template: `{name}` / `{name:spec}` become `name=value` (or just the value when
/// `auto_insert_metric_name` is off). Missing metrics count as 0, as in Lightning.
pub fn format_template(
    template: &str,
    values: &BTreeMap<String, (f64, bool)>,
    auto_insert_metric_name: bool,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('}').ok_or_else(|| format!("unclosed '{{' in checkpoint filename '{template}'"))?;
        let field = &after[..end];
        let (name, spec) = field.split_once(':').unwrap_or((field, ""));
        let (v, is_int) = values.get(name).copied().unwrap_or((0.0, true));
        let text = format_spec(v, spec, is_int)?;
        if auto_insert_metric_name {
            out.push_str(&format!("{name}={text}"));
        } else {
            out.push_str(&text);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    // Lightning replaces '/' in metric names so they do not create folders.
    Ok(out.replace('/', "_"))
}
