//! Prints tensors the way PyTorch does (`torch/_tensor_str.py`, default print options):
//! `tensor([[1., 2.],\n        [3., 4.]])` with dtype, device and grad_fn suffixes when they are
//! not the defaults, summarization past 1000 elements, and scientific notation when the range calls
//! for it.
use super::options::{device_name, dtype_name, is_floating};
use tch::{Device, Kind, Tensor};

const PRECISION: usize = 4;
const THRESHOLD: i64 = 1000;
const EDGEITEMS: i64 = 3;
const LINEWIDTH: usize = 80;

/// Values of a tensor flattened to f64 (floats, ints) or bool, read once from the CPU.
enum Values {
    Float(Vec<f64>),
    Int(Vec<i64>),
    Bool(Vec<bool>),
}

struct Formatter {
    floating: bool,
    int_mode: bool,
    sci_mode: bool,
    max_width: usize,
}

/// Python's `'{:.Ne}'` formatting: mantissa with N decimals, exponent with sign and 2+ digits.
fn fmt_sci(v: f64, prec: usize) -> String {
    if !v.is_finite() {
        return fmt_nonfinite(v);
    }
    crate::pyfmt::exponent(&format!("{v:.prec$e}"))
}

fn fmt_nonfinite(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v > 0.0 {
        "inf".into()
    } else {
        "-inf".into()
    }
}

fn fmt_fixed(v: f64, prec: usize) -> String {
    if !v.is_finite() {
        return fmt_nonfinite(v);
    }
    let s = format!("{v:.prec$}");
    // Python prints -0.0 as "-0.0000" too; Rust agrees. Keep as is.
    s
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

impl Formatter {
    fn new(vals: &Values) -> Formatter {
        let mut f = Formatter { floating: false, int_mode: true, sci_mode: false, max_width: 1 };
        match vals {
            Values::Int(v) => {
                for x in v {
                    f.max_width = f.max_width.max(x.to_string().len());
                }
            }
            Values::Bool(v) => {
                for x in v {
                    f.max_width = f.max_width.max(py_bool(*x).len());
                }
            }
            Values::Float(v) => {
                f.floating = true;
                let nz: Vec<f64> = v.iter().copied().filter(|x| x.is_finite() && *x != 0.0).collect();
                if nz.is_empty() {
                    return f;
                }
                let min = nz.iter().fold(f64::INFINITY, |a, x| a.min(x.abs()));
                let max = nz.iter().fold(0.0f64, |a, x| a.max(x.abs()));
                f.int_mode = nz.iter().all(|x| x.ceil() == *x);
                if f.int_mode {
                    if max / min > 1000.0 || max > 1.0e8 {
                        f.sci_mode = true;
                        for x in &nz {
                            f.max_width = f.max_width.max(fmt_sci(*x, PRECISION).len());
                        }
                    } else {
                        for x in &nz {
                            f.max_width = f.max_width.max(format!("{x:.0}").len() + 1);
                        }
                    }
                } else if max / min > 1000.0 || max > 1.0e8 || min < 1.0e-4 {
                    f.sci_mode = true;
                    for x in &nz {
                        f.max_width = f.max_width.max(fmt_sci(*x, PRECISION).len());
                    }
                } else {
                    for x in &nz {
                        f.max_width = f.max_width.max(fmt_fixed(*x, PRECISION).len());
                    }
                }
            }
        }
        f
    }

    fn pad(&self, s: String) -> String {
        if s.len() < self.max_width {
            format!("{}{}", " ".repeat(self.max_width - s.len()), s)
        } else {
            s
        }
    }

    fn format_float(&self, v: f64) -> String {
        let s = if self.sci_mode {
            fmt_sci(v, PRECISION)
        } else if self.int_mode {
            if v.is_finite() {
                format!("{v:.0}.")
            } else {
                fmt_nonfinite(v)
            }
        } else {
            fmt_fixed(v, PRECISION)
        };
        self.pad(s)
    }
}

/// A CPU tensor of f64/i64/bool that the printer walks.
struct View {
    shape: Vec<i64>,
    vals: Values,
}

impl View {
    fn fmt_at(&self, f: &Formatter, i: usize) -> String {
        match &self.vals {
            Values::Float(v) => f.format_float(v[i]),
            Values::Int(v) => f.pad(v[i].to_string()),
            Values::Bool(v) => f.pad(py_bool(v[i]).to_string()),
        }
    }
}

fn read_values(t: &Tensor) -> Result<Values, tch::TchError> {
    let t = t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
    let n = t.numel();
    Ok(match t.kind() {
        Kind::Bool => {
            let t = t.f_to_kind(Kind::Uint8)?;
            let mut v = vec![0u8; n];
            t.f_copy_data(&mut v, n)?;
            Values::Bool(v.into_iter().map(|b| b != 0).collect())
        }
        k if is_floating(k) => {
            let t = t.f_to_kind(Kind::Double)?;
            let mut v = vec![0f64; n];
            t.f_copy_data(&mut v, n)?;
            Values::Float(v)
        }
        _ => {
            let t = t.f_to_kind(Kind::Int64)?;
            let mut v = vec![0i64; n];
            t.f_copy_data(&mut v, n)?;
            Values::Int(v)
        }
    })
}

/// The elements the summarized print shows: the first and last `EDGEITEMS` along every dim.
fn summarized(t: &Tensor) -> Result<Tensor, tch::TchError> {
    let dim = t.dim();
    if dim == 0 {
        return Ok(t.shallow_clone());
    }
    let size = t.size();
    if dim == 1 {
        if size[0] > 2 * EDGEITEMS {
            return Tensor::f_cat(&[t.f_narrow(0, 0, EDGEITEMS)?, t.f_narrow(0, size[0] - EDGEITEMS, EDGEITEMS)?], 0);
        }
        return Ok(t.shallow_clone());
    }
    let idx: Vec<i64> = if size[0] > 2 * EDGEITEMS {
        (0..EDGEITEMS).chain(size[0] - EDGEITEMS..size[0]).collect()
    } else {
        (0..size[0]).collect()
    };
    let parts: Result<Vec<Tensor>, _> = idx.iter().map(|&i| summarized(&t.f_get(i)?)).collect();
    Tensor::f_stack(&parts?, 0)
}

/// Prints the nested brackets. `off` is the flat offset of this sub-tensor, `shape` its shape in
/// the full (or, when summarizing, in the full-size coordinates mapped through `view`). The
/// arguments are the recursion's state, as in PyTorch's `_tensor_str_with_formatter`.
#[allow(clippy::too_many_arguments)]
fn tensor_str(
    out: &mut String,
    view: &View,
    f: &Formatter,
    dims: &[i64],
    full: &[i64],
    off: usize,
    indent: usize,
    summarize: bool,
) {
    let dim = dims.len();
    if dim == 0 {
        out.push_str(&view.fmt_at(f, off));
        return;
    }
    let stride: usize = dims[1..].iter().product::<i64>() as usize;
    let n_view = dims[0] as usize;
    let truncated = summarize && full[0] > 2 * EDGEITEMS;
    if dim == 1 {
        let element_length = f.max_width + 2;
        let per_line = ((LINEWIDTH.saturating_sub(indent)) / element_length).max(1);
        let mut data: Vec<String> = Vec::new();
        for i in 0..n_view {
            if truncated && i == EDGEITEMS as usize {
                data.push(" ...".into());
            }
            data.push(view.fmt_at(f, off + i));
        }
        let lines: Vec<String> = data.chunks(per_line).map(|c| c.join(", ")).collect();
        out.push('[');
        out.push_str(&lines.join(&format!(",\n{}", " ".repeat(indent + 1))));
        out.push(']');
        return;
    }
    let sep = format!(",{}{}", "\n".repeat(dim - 1), " ".repeat(indent + 1));
    out.push('[');
    for i in 0..n_view {
        if i > 0 {
            out.push_str(&sep);
        }
        if truncated && i == EDGEITEMS as usize {
            out.push_str("...");
            out.push_str(&sep);
        }
        tensor_str(out, view, f, &dims[1..], &full[1..], off + i * stride, indent + 1, summarize);
    }
    out.push(']');
}

/// The body of the print without `tensor(` and suffixes, e.g. `[1., 2.]`.
fn body(t: &Tensor, indent: usize) -> Result<String, tch::TchError> {
    let full = t.size();
    if t.numel() == 0 {
        return Ok("[]".into());
    }
    let summarize = t.numel() as i64 > THRESHOLD;
    let shown = if summarize { summarized(t)? } else { t.shallow_clone() };
    let view = View { shape: shown.size(), vals: read_values(&shown)? };
    let f = Formatter::new(&view.vals);
    let mut out = String::new();
    tensor_str(&mut out, &view, &f, &view.shape, &full, 0, indent, summarize);
    Ok(out)
}

fn add_suffixes(s: String, suffixes: &[String], indent: usize) -> String {
    let mut out = s;
    let mut last_line_len = out.len() - out.rfind('\n').map(|p| p + 1).unwrap_or(0) + 1;
    for suf in suffixes {
        if last_line_len + suf.len() + 2 > LINEWIDTH {
            out.push_str(&format!(",\n{}{}", " ".repeat(indent), suf));
            last_line_len = indent + suf.len();
        } else {
            out.push_str(", ");
            out.push_str(suf);
            last_line_len += suf.len() + 2;
        }
    }
    out.push(')');
    out
}

/// `repr(t)` as PyTorch prints it.
pub fn tensor_repr(t: &Tensor) -> String {
    if !t.defined() {
        return "tensor(undefined)".into();
    }
    let prefix = "tensor(";
    let indent = prefix.len();
    let b = match body(t, indent) {
        Ok(b) => b,
        Err(e) => return format!("tensor(<unprintable: {}>)", super::clean_torch_message(&e.to_string())),
    };
    let mut suffixes = Vec::new();
    if t.device() != Device::Cpu {
        suffixes.push(format!("device='{}'", device_name(t.device())));
    }
    if t.numel() == 0 && t.dim() != 1 {
        let s: Vec<String> = t.size().iter().map(|d| d.to_string()).collect();
        let tuple = if s.len() == 1 { format!("({},)", s[0]) } else { format!("({})", s.join(", ")) };
        suffixes.push(format!("size={tuple}"));
    }
    let k = t.kind();
    // An empty tensor has no elements to infer the dtype from, so only float32 goes unnamed.
    let default_dtype =
        if t.numel() == 0 { k == Kind::Float } else { matches!(k, Kind::Float | Kind::Int64 | Kind::Bool) };
    if !default_dtype {
        suffixes.push(format!("dtype=torch.{}", dtype_name(k)));
    }
    if let Some(name) = super::grad_fn_name(t) {
        suffixes.push(format!("grad_fn=<{name}>"));
    } else if t.requires_grad() {
        suffixes.push("requires_grad=True".into());
    }
    add_suffixes(format!("{prefix}{b}"), &suffixes, indent)
}
