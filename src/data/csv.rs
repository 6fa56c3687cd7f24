//! CSV files as tensor datasets: a header, column selection, a target column (numbers, or
//! strings mapped to class indices), dtypes; errors name the file, line and column.
use super::dataset::TensorDataset;
use super::files::check_exists;
use super::Result;
use crate::data_err;
use std::path::Path;
use tch::{Kind, Tensor};

/// A column, by header name or 0-based position.
#[derive(Debug, Clone)]
pub enum Column {
    Name(String),
    Index(usize),
}

#[derive(Debug, Clone)]
pub struct CsvOptions {
    pub header: bool,
    pub delimiter: char,
    /// Feature columns (default: every column but the target).
    pub columns: Option<Vec<Column>>,
    pub target: Option<Column>,
    /// Dtype of the features.
    pub dtype: Kind,
    /// Dtype of a numeric target (default: int64 when every value is an integer, else float32).
    pub target_dtype: Option<Kind>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions { header: true, delimiter: ',', columns: None, target: None, dtype: Kind::Float, target_dtype: None }
    }
}

/// Splits one line into fields, honouring double quotes (`"a, b"`, `""` for a quote).
fn split_line(line: &str, delim: char) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' && cur.trim().is_empty() {
            cur.clear();
            quoted = true;
        } else if c == delim {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    out.push(cur);
    Ok(out.into_iter().map(|s| s.trim().to_string()).collect())
}

/// Loads `path`: samples `[x, y]` with a target, `[x]` without.
pub fn load(path: &Path, o: &CsvOptions) -> Result<TensorDataset> {
    check_exists(path, "data::csv")?;
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| data_err!("{name}: {e}"))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let mut names: Option<Vec<String>> = None;
    if o.header {
        let (no, l) = lines.next().ok_or_else(|| data_err!("{name}: the file is empty"))?;
        names = Some(split_line(l, o.delimiter).map_err(|e| data_err!("{name}:{}: {e}", no + 1))?);
    }
    let mut rows: Vec<(usize, Vec<String>)> = Vec::new();
    for (no, l) in lines {
        rows.push((no + 1, split_line(l, o.delimiter).map_err(|e| data_err!("{name}:{}: {e}", no + 1))?));
    }
    let width = names.as_ref().map(|n| n.len()).or_else(|| rows.first().map(|r| r.1.len())).unwrap_or(0);
    if rows.is_empty() {
        return Err(data_err!("{name}: no data rows"));
    }
    for (line, r) in &rows {
        if r.len() != width {
            let basis = if o.header { "as in the header" } else { "as in the first row" };
            return Err(data_err!("{name}:{line}: expected {width} fields ({basis}), found {}", r.len()));
        }
    }
    let resolve = |c: &Column| -> Result<usize> {
        match c {
            Column::Index(i) if *i < width => Ok(*i),
            Column::Index(i) => Err(data_err!("{name}: column {i} is out of range ({width} columns)")),
            Column::Name(n) => match &names {
                None => Err(data_err!("{name}: column '{n}' given by name, but the file has no header")),
                Some(h) => h
                    .iter()
                    .position(|x| x == n)
                    .ok_or_else(|| data_err!("{name}: no column named '{n}'; columns: {}", h.join(", "))),
            },
        }
    };
    let col_name = |i: usize| names.as_ref().map(|h| format!("'{}'", h[i])).unwrap_or_else(|| format!("{i}"));
    let target = o.target.as_ref().map(resolve).transpose()?;
    let features: Vec<usize> = match &o.columns {
        Some(cs) => cs.iter().map(resolve).collect::<Result<_>>()?,
        None => (0..width).filter(|i| Some(*i) != target).collect(),
    };
    let mut x = Vec::with_capacity(rows.len() * features.len());
    for (line, r) in &rows {
        for &c in &features {
            let v = r[c]
                .parse::<f64>()
                .map_err(|_| data_err!("{name}:{line}: column {}: cannot parse '{}' as a number", col_name(c), r[c]))?;
            x.push(v);
        }
    }
    let n = rows.len() as i64;
    let xt = Tensor::f_from_slice(&x)?.f_reshape([n, features.len() as i64])?.f_to_kind(o.dtype)?;
    let Some(t) = target else {
        return TensorDataset::build(&[xt], None, &format!("CSV {name}"));
    };
    let raw: Vec<&str> = rows.iter().map(|(_, r)| r[t].as_str()).collect();
    let nums: Vec<Option<f64>> = raw.iter().map(|s| s.parse::<f64>().ok()).collect();
    let (yt, classes) = if nums.iter().all(Option::is_some) {
        let v: Vec<f64> = nums.into_iter().flatten().collect();
        let all_int = v.iter().all(|f| f.fract() == 0.0);
        let kind = o.target_dtype.unwrap_or(if all_int { Kind::Int64 } else { Kind::Float });
        (Tensor::f_from_slice(&v)?.f_to_kind(kind)?, None)
    } else if nums.iter().any(Option::is_some) && o.target_dtype.is_some_and(|k| k != Kind::Int64) {
        let (line, r) =
            rows.iter().find(|(_, r)| r[t].parse::<f64>().is_err()).map(|(l, r)| (*l, r)).unwrap_or((0, &rows[0].1));
        return Err(data_err!("{name}:{line}: column {}: cannot parse '{}' as a number", col_name(t), r[t]));
    } else {
        // string labels: class indices in sorted order of the names
        let mut classes: Vec<String> = raw.iter().map(|s| s.to_string()).collect();
        classes.sort();
        classes.dedup();
        let v: Vec<i64> = raw.iter().map(|s| classes.iter().position(|c| c == s).unwrap_or(0) as i64).collect();
        (Tensor::f_from_slice(&v)?, Some(classes))
    };
    Ok(TensorDataset::build(&[xt, yt], None, &format!("CSV {name}"))?.with_classes(classes))
}
