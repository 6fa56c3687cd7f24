//! PNG line charts with `plotters` (bitmap backend, encoded with the `png` crate; text drawn with the
//! DejaVu Sans Mono font shipped in `assets/fonts`, so no system font is needed). Used by `lt plot`
//! (a run's `metrics.csv`, one panel per metric family) and by the learning-rate finder.
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The font every chart uses, registered once under the family name "sans-serif".
fn register_font() -> Result<(), String> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../../assets/fonts/DejaVuSansMono.ttf"),
        )
        .map_err(|_| "the bundled chart font could not be loaded".to_string())
    })
    .clone()
}

/// One chart: named series of (x, y) points, and an optional marked point.
#[derive(Debug, Clone, Default)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
    /// A point to highlight (the LR finder's suggestion), with its label.
    pub marker: Option<(f64, f64, String)>,
}

/// Size of one panel in pixels.
pub const PANEL_SIZE: (u32, u32) = (640, 420);

/// The (rows, cols) grid for `n` panels: two columns when there are several.
pub fn grid(n: usize) -> (usize, usize) {
    let cols = n.clamp(1, 2);
    (n.div_ceil(cols).max(1), cols)
}

fn range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let pad = if lo.abs() > 1e-12 { lo.abs() * 0.1 } else { 1.0 };
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

fn draw_err<E: std::fmt::Debug>(e: E) -> String {
    format!("cannot draw the chart: {e:?}")
}

/// Draws `panels` in a grid and returns the PNG bytes.
pub fn render_png(panels: &[Panel]) -> Result<(Vec<u8>, (u32, u32)), String> {
    register_font()?;
    let (rows, cols) = grid(panels.len());
    let (w, h) = (PANEL_SIZE.0 * cols as u32, PANEL_SIZE.1 * rows as u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let areas = root.split_evenly((rows, cols));
        for (panel, area) in panels.iter().zip(areas.iter()) {
            let points =
                || panel.series.iter().flat_map(|(_, p)| p.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
            let (x0, x1) = range(points().map(|p| p.0));
            let (y0, y1) = range(points().map(|p| p.1));
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(draw_err)?;
            chart
                .configure_mesh()
                .x_desc(panel.x_label.as_str())
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 14))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()
                .map_err(draw_err)?;
            for (i, (name, pts)) in panel.series.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                let pts: Vec<(f64, f64)> =
                    pts.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
                if pts.len() == 1 {
                    chart.draw_series(std::iter::once(Circle::new(pts[0], 3, color.filled()))).map_err(draw_err)?;
                }
                chart
                    .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                    .map_err(draw_err)?
                    .label(name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            }
            if let Some((mx, my, label)) = &panel.marker {
                let red = RGBColor(220, 30, 30);
                chart
                    .draw_series(std::iter::once(Circle::new((*mx, *my), 6, red.filled())))
                    .map_err(draw_err)?
                    .label(label.as_str())
                    .legend(move |(x, y)| Circle::new((x + 9, y), 5, red.filled()));
            }
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 13))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| format!("cannot encode the PNG: {e}"))?;
        writer.write_image_data(&buf).map_err(|e| format!("cannot encode the PNG: {e}"))?;
    }
    Ok((png_bytes, (w, h)))
}

/// What `lt plot` puts on the x axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    /// The logged step of each row.
    Step,
    /// The epoch; each series is averaged over the rows of an epoch (one point per epoch).
    Epoch,
}

impl XAxis {
    pub fn parse(s: &str) -> Result<XAxis, String> {
        match s {
            "step" => Ok(XAxis::Step),
            "epoch" => Ok(XAxis::Epoch),
            o => Err(format!("--x must be \"step\" or \"epoch\", got \"{o}\"")),
        }
    }
}

/// The family a metric is drawn with: the name without its stage prefix (`train_`, `val_`,
/// `validation_`, `test_`), its `_step` / `_epoch` suffix and a `/dataloader_idx_N` suffix, so
/// `train_loss` and `val_loss_epoch` share the "loss" panel and `*_acc` the "acc" panel.
pub fn family(metric: &str) -> String {
    let base = metric.rsplit_once("/dataloader_idx_").map_or(metric, |(b, _)| b);
    let base = ["train_", "validation_", "val_", "test_"].iter().find_map(|p| base.strip_prefix(p)).unwrap_or(base);
    let base = ["_step", "_epoch"].iter().find_map(|s| base.strip_suffix(s)).filter(|b| !b.is_empty()).unwrap_or(base);
    base.to_string()
}

/// Panels for a `metrics.csv` text: one per metric family, each metric a series.
pub fn metrics_panels(csv: &str, x: XAxis) -> Result<Vec<Panel>, String> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().ok_or("metrics.csv is empty")?.split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n);
    let step_col = col("step").ok_or("metrics.csv has no `step` column")?;
    let epoch_col = col("epoch");
    if x == XAxis::Epoch && epoch_col.is_none() {
        return Err("metrics.csv has no `epoch` column; use --x step".into());
    }
    // metric → x → (sum, count)
    let mut series: BTreeMap<String, BTreeMap<i64, (f64, usize)>> = BTreeMap::new();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').collect();
        let num = |i: usize| cells.get(i).and_then(|c| c.trim().parse::<f64>().ok());
        let xv = match x {
            XAxis::Step => num(step_col),
            XAxis::Epoch => epoch_col.and_then(num),
        };
        let Some(xv) = xv else {
            if x == XAxis::Step {
                return Err(format!("metrics.csv line {}: no step", n + 2));
            }
            continue;
        };
        for (i, h) in header.iter().enumerate() {
            if i == step_col || Some(i) == epoch_col {
                continue;
            }
            if let Some(v) = num(i) {
                let e = series.entry(h.to_string()).or_default().entry(xv as i64).or_insert((0.0, 0));
                e.0 += v;
                e.1 += 1;
            }
        }
    }
    let mut fams: BTreeMap<String, Panel> = BTreeMap::new();
    for (name, pts) in series {
        let f = family(&name);
        let panel = fams.entry(f.clone()).or_insert_with(|| Panel {
            title: f.clone(),
            x_label: if x == XAxis::Step { "step".into() } else { "epoch".into() },
            ..Default::default()
        });
        panel.series.push((name, pts.into_iter().map(|(x, (s, c))| (x as f64, s / c as f64)).collect()));
    }
    if fams.is_empty() {
        return Err("metrics.csv has no metric values to plot".into());
    }
    // train series first in each panel
    let mut out: Vec<Panel> = fams.into_values().collect();
    for p in &mut out {
        p.series.sort_by_key(|(n, _)| (!n.starts_with("train"), n.clone()));
    }
    Ok(out)
}

/// `lt plot`: draws `run` (a version folder holding metrics.csv, or the CSV file itself) to `out`
/// (default: `metrics.png` beside the CSV). Returns the PNG path and its size.
pub fn plot_run(run: &Path, out: Option<&Path>, x: XAxis) -> Result<(PathBuf, (u32, u32)), String> {
    let csv = if run.is_dir() { run.join("metrics.csv") } else { run.to_path_buf() };
    let text = crate::fs::read_regular_to_string(&csv).map_err(|e| format!("cannot read {}: {e}", csv.display()))?;
    let panels = metrics_panels(&text, x)?;
    let (png, size) = render_png(&panels)?;
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| csv.with_file_name("metrics.png"));
    crate::trainer::logger::write_atomic(&out, &png)?;
    Ok((out, size))
}
