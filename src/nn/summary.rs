//! The model summary table, laid out like Lightning's `ModelSummary`.
use comfy_table::{presets, CellAlignment, Table};

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

/// `1.2 K`, `123 K`, `4.5 M`: Lightning's `get_human_readable_count`.
pub fn human_count(n: i64) -> String {
    let labels = [" ", "K", "M", "B", "T"];
    let n = n.max(0);
    let digits = if n > 0 { (n as f64).log10().floor() as i64 + 1 } else { 1 };
    let groups = (((digits as f64) / 3.0).ceil() as usize).clamp(1, labels.len());
    let index = groups - 1;
    let value = n as f64 / 10f64.powi(3 * index as i32);
    if index < 1 || value >= 100.0 {
        format!("{} {}", value.floor() as i64, labels[index])
    } else {
        format!("{value:.1} {}", labels[index])
    }
}

pub fn render(t: &Totals) -> String {
    let mut table = Table::new();
    table.load_preset(presets::ASCII_MARKDOWN);
    table.set_header(vec!["", "Name", "Type", "Params", "Mode"]);
    for (i, r) in t.rows.iter().enumerate() {
        table.add_row(vec![
            i.to_string(),
            r.name.clone(),
            r.ty.clone(),
            human_count(r.params).trim_end().to_string(),
            if r.training { "train".into() } else { "eval".into() },
        ]);
    }
    if let Some(c) = table.column_mut(3) {
        c.set_cell_alignment(CellAlignment::Right);
    }
    let mut out = String::new();
    if !t.rows.is_empty() {
        out.push_str(&table.to_string());
        out.push('\n');
    }
    let line = |n: String, what: &str| format!("{n:<10}{what}\n");
    out.push_str(&line(human_count(t.trainable).trim_end().to_string(), "Trainable params"));
    out.push_str(&line(human_count(t.total - t.trainable).trim_end().to_string(), "Non-trainable params"));
    out.push_str(&line(human_count(t.total).trim_end().to_string(), "Total params"));
    out.push_str(&line(format!("{:.3}", t.bytes as f64 / 1e6), "Total estimated model params size (MB)"));
    out.push_str(&line(t.modules_train.to_string(), "Modules in train mode"));
    out.push_str(&line(t.modules_eval.to_string(), "Modules in eval mode"));
    out.truncate(out.trim_end().len());
    out
}
