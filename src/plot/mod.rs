//! PNG line charts with `plotters` (bitmap backend, encoded with the `png` crate; text drawn with the
//! DejaVu Sans Mono font shipped in `assets/fonts`, so no system font is needed). Used by `lt plot`
//! (a run's `metrics.csv`, one panel per metric family) and by the learning-rate finder.
//!
//! A colour means one split in every panel (train blue, validation orange, test green); a second
//! series of the same split in a panel (`train_loss_step` beside `train_loss_epoch`) is dashed.
//! Integer x values (steps, epochs) get integer ticks; the legend goes to the corner with the
//! fewest points; `log_y` draws the y axis in powers of ten.
pub mod text;

use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

/// The font every chart uses, registered once under the family name "sans-serif".
pub fn register_font() -> Result<(), String> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| "the bundled chart font could not be loaded".to_string())
    })
    .clone()
}

/// One chart: named series of (x, y) points, and an optional marked point.
#[derive(Debug, Clone, Default)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// The y axis in powers of ten (values that are not positive are left out).
    pub log_y: bool,
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

/// The colour of a split (matplotlib's tab10 blue, orange, green), else None.
fn split_colour(name: &str) -> Option<RGBColor> {
    let n = name.to_ascii_lowercase();
    if n.starts_with("train") {
        Some(RGBColor(31, 119, 180))
    } else if n.starts_with("val") {
        Some(RGBColor(255, 127, 14))
    } else if n.starts_with("test") {
        Some(RGBColor(44, 160, 44))
    } else {
        None
    }
}

/// Colours for series of no split: tab10's others (no pale yellow: every one reads on white).
const OTHER_COLOURS: [RGBColor; 6] = [
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
    RGBColor(214, 39, 40),
];

/// Each series' colour and whether it is dashed (the second and later of a colour in a panel).
pub fn series_styles(names: &[&str]) -> Vec<(RGBColor, bool)> {
    let mut others = 0;
    let mut used: Vec<RGBColor> = Vec::new();
    names
        .iter()
        .map(|n| {
            let c = split_colour(n).unwrap_or_else(|| {
                others += 1;
                OTHER_COLOURS[(others - 1) % OTHER_COLOURS.len()]
            });
            let dashed = used.contains(&c);
            used.push(c);
            (c, dashed)
        })
        .collect()
}

/// The legend's corner: the one whose quarter of the chart holds the fewest points (upper right
/// on a tie), so the legend does not cover the curves' ends.
pub fn legend_corner(points: &[(f64, f64)], (x0, x1): (f64, f64), (y0, y1): (f64, f64)) -> SeriesLabelPosition {
    let (xm, ym) = (x0 + (x1 - x0) * 0.55, y0 + (y1 - y0) * 0.6);
    let (xl, yl) = (x0 + (x1 - x0) * 0.45, y0 + (y1 - y0) * 0.4);
    let count = |f: &dyn Fn(f64, f64) -> bool| points.iter().filter(|(x, y)| f(*x, *y)).count();
    let corners = [
        (SeriesLabelPosition::UpperRight, count(&|x, y| x >= xm && y >= ym)),
        (SeriesLabelPosition::UpperLeft, count(&|x, y| x <= xl && y >= ym)),
        (SeriesLabelPosition::LowerRight, count(&|x, y| x >= xm && y <= yl)),
        (SeriesLabelPosition::LowerLeft, count(&|x, y| x <= xl && y <= yl)),
    ];
    corners.into_iter().min_by_key(|(_, n)| *n).map_or(SeriesLabelPosition::UpperRight, |(p, _)| p)
}

/// A tick value as a label: integers without decimals, others with the digits their step needs.
pub fn tick_label(v: f64, step: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    if v.abs() >= 1e5 || (v != 0.0 && v.abs() < 1e-3) {
        return crate::pyfmt::format_g(v, 3);
    }
    let decimals = if step > 0.0 { (-step.log10().floor()).clamp(0.0, 6.0) as usize } else { 3 };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Draws `panels` in a grid and returns the PNG bytes.
pub fn render_png(panels: &[Panel]) -> Result<(Vec<u8>, (u32, u32)), String> {
    register_font()?;
    let (rows, cols) = grid(panels.len());
    let (w, h) = (PANEL_SIZE.0 * cols as u32, PANEL_SIZE.1 * rows as u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let backend = text::GlyphFix::new(BitMapBackend::with_buffer(&mut buf, (w, h)), FONT)?;
        let root = backend.into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let areas = root.split_evenly((rows, cols));
        for (panel, area) in panels.iter().zip(areas.iter()) {
            let ty = |y: f64| {
                if panel.log_y {
                    if y > 0.0 {
                        y.log10()
                    } else {
                        f64::NAN
                    }
                } else {
                    y
                }
            };
            let series: Vec<(&str, Vec<(f64, f64)>)> = panel
                .series
                .iter()
                .map(|(n, p)| {
                    let pts = p.iter().map(|&(x, y)| (x, ty(y))).filter(|(x, y)| x.is_finite() && y.is_finite());
                    (n.as_str(), pts.collect())
                })
                .collect();
            let all: Vec<(f64, f64)> = series.iter().flat_map(|(_, p)| p.iter().copied()).collect();
            let (x0, x1) = range(all.iter().map(|p| p.0));
            let (y0, y1) = range(all.iter().map(|p| p.1));
            let integer_x = !all.is_empty() && all.iter().all(|(x, _)| x.fract() == 0.0);
            let x_ticks = if integer_x { ((x1 - x0).floor() as usize + 1).clamp(2, 10) } else { 10 };
            let x_step = (x1 - x0) / x_ticks as f64;
            // a log axis over two decades or more ticks at the powers of ten
            let y_ticks = if panel.log_y && y1 - y0 >= 2.0 { (y1 - y0).floor() as usize + 1 } else { 10 };
            let y_step = (y1 - y0) / 10.0;
            let fx = |v: &f64| if integer_x { format!("{}", v.round() as i64) } else { tick_label(*v, x_step) };
            let fy = |v: &f64| {
                if panel.log_y {
                    crate::pyfmt::format_g(10f64.powf(*v), 3)
                } else {
                    tick_label(*v, y_step)
                }
            };
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(78)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(draw_err)?;
            let y_desc = if panel.log_y { format!("{} (log)", panel.y_label) } else { panel.y_label.clone() };
            chart
                .configure_mesh()
                .x_desc(panel.x_label.as_str())
                .y_desc(y_desc)
                .x_labels(x_ticks)
                .y_labels(y_ticks)
                .x_label_formatter(&fx)
                .y_label_formatter(&fy)
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 14))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()
                .map_err(draw_err)?;
            let names: Vec<&str> = series.iter().map(|(n, _)| *n).collect();
            for ((name, pts), (colour, dashed)) in series.iter().zip(series_styles(&names)) {
                let style = colour.stroke_width(2);
                if pts.len() == 1 {
                    chart.draw_series(std::iter::once(Circle::new(pts[0], 3, colour.filled()))).map_err(draw_err)?;
                }
                let drawn = if dashed {
                    chart.draw_series(DashedLineSeries::new(pts.clone(), 6, 4, style)).map_err(draw_err)?
                } else {
                    chart.draw_series(LineSeries::new(pts.clone(), style)).map_err(draw_err)?
                };
                // the legend's sample is dashed too when the line is
                drawn.label(*name).legend(move |(x, y)| {
                    let (a, b) = if dashed { (7, 11) } else { (9, 9) };
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (a, 0)], style)
                        + PathElement::new(vec![(b, 0), (18, 0)], style)
                });
            }
            if let Some((mx, my, label)) = &panel.marker {
                let red = RGBColor(214, 39, 40);
                chart
                    .draw_series(std::iter::once(Circle::new((*mx, ty(*my)), 6, red.filled())))
                    .map_err(draw_err)?
                    .label(label.as_str())
                    .legend(move |(x, y)| Circle::new((x + 9, y), 5, red.filled()));
            }
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 13))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(legend_corner(&all, (x0, x1), (y0, y1)))
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
            y_label: f.clone(),
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
/// (default: `metrics.png` beside the CSV), the y axes in powers of ten with `log_y`. Returns the
/// PNG path and its size.
pub fn plot_run(run: &Path, out: Option<&Path>, x: XAxis, log_y: bool) -> Result<(PathBuf, (u32, u32)), String> {
    let csv = if run.is_dir() { run.join("metrics.csv") } else { run.to_path_buf() };
    let text = crate::fs::read_regular_to_string(&csv).map_err(|e| format!("cannot read {}: {e}", csv.display()))?;
    let mut panels = metrics_panels(&text, x)?;
    for p in &mut panels {
        p.log_y = log_y;
    }
    let (png, size) = render_png(&panels)?;
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| csv.with_file_name("metrics.png"));
    crate::trainer::logger::write_atomic(&out, &png)?;
    Ok((out, size))
}
