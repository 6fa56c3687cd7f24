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

/// A CSV file's records, as RFC 4180 reads them (the `csv` crate): quoted fields may hold the
/// delimiter, `""` for a quote, and newlines. Fields are trimmed; blank lines are skipped. Returns
/// the header (when `header`) and each data row with the line it starts on.
pub type Records = (Option<Vec<String>>, Vec<(u64, Vec<String>)>);

/// Parses CSV text into [`Records`]; `name` labels errors (`file.csv:3: …`).
pub fn parse_records(input: &[u8], delimiter: char, header: bool, name: &str) -> Result<Records> {
    if !delimiter.is_ascii() {
        return Err(data_err!("{name}: the delimiter must be one ASCII character, got '{delimiter}'"));
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter as u8)
        .trim(csv::Trim::All)
        .from_reader(input);
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| match e.position() {
            Some(p) => data_err!("{name}:{}: {e}", p.line()),
            None => data_err!("{name}: {e}"),
        })?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        // the reader's position is where the record's read began, before any blank lines it
        // skipped: count lines up to its first byte instead
        let start = record.position().map(|p| p.byte() as usize).unwrap_or(0).min(input.len());
        let first = start + input[start..].iter().take_while(|b| matches!(b, b'\n' | b'\r')).count();
        let line = 1 + input[..first].iter().filter(|&&b| b == b'\n').count() as u64;
        rows.push((line, record.iter().map(str::to_string).collect()));
    }
    let names = if header {
        if rows.is_empty() {
            return Err(data_err!("{name}: the file is empty"));
        }
        Some(rows.remove(0).1)
    } else {
        None
    };
    Ok((names, rows))
}

/// Loads `path`: samples `[x, y]` with a target, `[x]` without.
pub fn load(path: &Path, o: &CsvOptions) -> Result<TensorDataset> {
    check_exists(path, "data::csv")?;
    let name = path.display().to_string();
    let bytes = crate::fs::read_regular(path).map_err(|e| data_err!("{name}: {e}"))?;
    let (names, rows) = parse_records(&bytes, o.delimiter, o.header, &name)?;
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
