//! The model summary table, laid out like Lightning's `ModelSummary`.

/// One module of the summary.
pub struct Row {
    pub name: String,
    pub ty: String,
    pub params: i64,
    pub training: bool,
}

/// Everything the summary shows.
pub struct Totals {
    pub rows: Vec<Row>,
    pub trainable: i64,
    pub total: i64,
    /// Bytes of all parameters.
    pub bytes: i64,
    pub modules_train: usize,
    pub modules_eval: usize,
}

/// `123  `, `1.2 K`, `123 K`, `4.5 M`, `5,000 T`: Lightning's `get_human_readable_count`.
pub fn human_count(n: i64) -> String {
    let labels = [" ", "K", "M", "B", "T"];
    let n = n.max(0);
    let digits = if n > 0 { (n as f64).log10().floor() as i64 + 1 } else { 1 };
    let groups = (((digits as f64) / 3.0).ceil() as usize).clamp(1, labels.len());
    let index = groups - 1;
    let value = n as f64 / 10f64.powi(3 * index as i32);
    if index < 1 || value >= 100.0 {
        format!("{} {}", thousands(&(value.floor() as i64).to_string()), labels[index])
    } else {
        format!("{value:.1} {}", labels[index])
    }
}

/// Python's `,` format option: `1234567.125` → `1,234,567.125`.
fn thousands(number: &str) -> String {
    let (int, frac) = number.split_once('.').map_or((number, None), |(i, f)| (i, Some(f)));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

/// The table as Lightning's `_format_summary_table` lays it out (without its FLOPs column: lt
/// does not count FLOPs).
pub fn render(t: &Totals) -> String {
    let cols: [(&str, Vec<String>); 5] = [
        (" ", (0..t.rows.len()).map(|i| i.to_string()).collect()),
        ("Name", t.rows.iter().map(|r| r.name.clone()).collect()),
        ("Type", t.rows.iter().map(|r| r.ty.clone()).collect()),
        ("Params", t.rows.iter().map(|r| human_count(r.params)).collect()),
        ("Mode", t.rows.iter().map(|r| if r.training { "train" } else { "eval" }.to_string()).collect()),
    ];
    let widths: Vec<usize> = cols
        .iter()
        .map(|(h, cells)| cells.iter().map(|c| c.chars().count()).max().unwrap_or(0).max(h.chars().count()))
        .collect();
    let rule = "-".repeat(widths.iter().sum::<usize>() + 3 * (1 + cols.len()));
    let row = |cell: &dyn Fn(usize) -> String| {
        (0..cols.len()).map(|c| format!("{:<w$}", cell(c), w = widths[c])).collect::<Vec<_>>().join(" | ")
    };
    let mut out = row(&|c| cols[c].0.to_string());
    out.push('\n');
    out.push_str(&rule);
    for i in 0..t.rows.len() {
        out.push('\n');
        out.push_str(&row(&|c| cols[c].1[i].clone()));
    }
    out.push('\n');
    out.push_str(&rule);
    let line = |n: String, what: &str| format!("\n{n:<10}{what}");
    out.push_str(&line(human_count(t.trainable), "Trainable params"));
    out.push_str(&line(human_count(t.total - t.trainable), "Non-trainable params"));
    out.push_str(&line(human_count(t.total), "Total params"));
    out.push_str(&line(thousands(&format!("{:.3}", t.bytes as f64 / 1e6)), "Total estimated model params size (MB)"));
    out.push_str(&line(t.modules_train.to_string(), "Modules in train mode"));
    out.push_str(&line(t.modules_eval.to_string(), "Modules in eval mode"));
    out
}
