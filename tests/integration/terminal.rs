//! What a user sees at the REPL, in `lt doc` and in `lt plot`'s charts: modules printed as
//! PyTorch's repr, `NAME?` / `help(NAME)` / `:doc` / `:time`, completion of map keys, hints for
//! the usual mistakes (a property called as a method, a closure given the wrong arguments);
//! namespace listings, did-you-mean, full types and wrapping in the docs; chart text without
//! gaps, a colour per split, integer ticks.
use crate::common::*;
use std::process::Command;

#[test]
fn the_repl_prints_modules_docs_timings_and_helpful_errors() {
    let dir = temp_dir("repl_terminal");
    let input = "let s = nn::sequential([nn::linear(784, 128), nn::relu(), nn::dropout(0.2), nn::conv2d(1, 8, 3), nn::batch_norm2d(8)]);\n\
                 s\n\
                 help(torch::cat)\n\
                 torch::ones?\n\
                 :doc lienar\n\
                 :time torch::ones([2]).sum()\n\
                 let y = torch::ones([2]);\n\
                 y.shape()\n\
                 let f = |a, b| a + b;\n\
                 f.call(1)\n";
    let out = lt_with_input(&dir, &["repl"], input);
    let (o, e) = (stdout(&out), stderr(&out));
    // PyTorch's repr of the same modules
    assert!(
        o.contains(
            "Sequential(\n  (0): Linear(in_features=784, out_features=128, bias=True)\n  (1): ReLU()\n  (2): Dropout(p=0.2, inplace=False)\n  (3): Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1))\n  (4): BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n)"
        ),
        "{o}"
    );
    assert!(o.contains("torch::cat(tensors: array, dim: int) -> Tensor") && o.contains("Concatenates tensors"), "{o}");
    assert!(o.contains("torch::ones(shape: any) -> Tensor"), "{o}");
    assert!(e.contains("did you mean: F::linear, nn::linear"), "{e}");
    assert!(o.contains("tensor(2.)\nWall time: "), "{o}");
    assert!(e.contains("`shape` is a property: write `.shape` without parentheses"), "{e}");
    assert!(e.contains("the closure |a, b| at <repl>:"), "{e}");
    assert!(!e.contains("anon$"), "{e}");

    // `this` of a loaded module: its repr, named after the script, and the model summary
    std::fs::write(
        dir.join("tiny_model.rhai"),
        "fn init(h) { this.model = nn::sequential([nn::linear(4, 3), nn::tanh()]); this.lr = 0.1; }\n\
         fn training_step(b, i) { this.model.forward(b[0]).sum() }\n\
         fn train_dataloader() { [[torch::ones([2, 4])]] }\n\
         fn configure_optimizers() { optim::sgd(this.model.parameters(), #{lr: this.lr}) }\n",
    )
    .unwrap();
    let out = lt_with_input(&dir, &["repl", "tiny_model.rhai"], "this\n");
    let o = stdout(&out);
    assert!(
        o.contains("TinyModel(\n  (model): Sequential(\n    (0): Linear(in_features=4, out_features=3, bias=True)\n    (1): Tanh()\n  )\n)"),
        "{o}{}",
        stderr(&out)
    );
    assert!(o.contains("Trainable params"), "{o}");
}

#[test]
fn completion_offers_map_keys_and_hides_internal_names() {
    let engine = lt::repl::repl_engine().unwrap();
    let words = lt::repl::complete::Words::from_engine(&engine);
    let vars: Vec<String> = ["this", "this.model", "this.model.layers", "this.mode_count", "this.lr", "x"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (start, c) = words.complete("this.mo", 7, &vars);
    assert_eq!(start, 5);
    assert_eq!(c[..2], ["mode_count", "model"], "keys first: {c:?}");
    let (_, c) = words.complete("this.model.la", 13, &vars);
    assert_eq!(c.first().map(String::as_str), Some("layers"), "{c:?}");
    let (_, c) = words.complete("x.", 2, &vars);
    assert!(!c.is_empty() && c.iter().all(|n| !n.starts_with("__")), "{c:?}");
    let (_, c) = words.complete("th", 2, &vars);
    assert_eq!(c, ["this"], "dotted paths are not offered as variables");
    // the names come from the scope, keys of maps a few levels deep, hidden `_` keys left out
    let mut scope = rhai::Scope::new();
    let mut inner = rhai::Map::new();
    inner.insert("layers".into(), rhai::Dynamic::from(1_i64));
    inner.insert("_type".into(), rhai::Dynamic::from("Sequential".to_string()));
    let mut this = rhai::Map::new();
    this.insert("model".into(), rhai::Dynamic::from_map(inner));
    scope.push("this", this);
    let names = lt::repl::complete::scope_names(&scope);
    assert_eq!(names, ["this", "this.model", "this.model.layers"]);
}

#[test]
fn lt_doc_lists_namespaces_suggests_and_wraps() {
    let ns = lt(&["doc", "nn::"]);
    assert!(ns.status.success(), "{}", stderr(&ns));
    let text = stdout(&ns);
    assert!(text.lines().filter(|l| !l.starts_with(' ') && !l.is_empty()).all(|l| l.starts_with("nn::")), "{text}");
    assert!(text.contains("nn::linear(in_features: int, out_features: int) -> map"), "{text}");
    assert!(stdout(&lt(&["doc", "nn"])) == text, "`nn` names the namespace too");
    let miss = lt(&["doc", "lienar"]);
    assert!(!miss.status.success());
    assert!(stderr(&miss).contains("did you mean: F::linear, nn::linear"), "{}", stderr(&miss));
    // full types: no type name cut at its module path
    let all = stdout(&lt(&["doc"]));
    assert!(!all.contains("Dynamic>") && !all.contains("::Dynamic"), "a truncated type is left");
    assert!(all.contains("torch::cat(tensors: array) -> Tensor"));
    // prose wraps to $COLUMNS (the terminal's width when there is one); code stays as written
    let out = Command::new(lt_bin()).args(["doc", "nn::batch_norm2d"]).env("COLUMNS", "60").output().unwrap();
    let text = stdout(&out);
    let mut in_code = false;
    for l in text.lines() {
        if l.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && l.starts_with("    ") {
            assert!(l.chars().count() <= 60, "{l:?} is wider than 60 columns:\n{text}");
        }
    }
    assert!(text.lines().filter(|l| l.starts_with("    ")).count() > 4, "{text}");
}

/// The dark columns of `text` drawn with the chart's text renderer.
fn ink_columns(text: &str) -> Vec<bool> {
    use plotters::prelude::*;
    lt::plot::register_font().unwrap();
    let (w, h) = (200u32, 50u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let backend =
            lt::plot::text::GlyphFix::new(BitMapBackend::with_buffer(&mut buf, (w, h)), lt::plot::FONT).unwrap();
        let root = backend.into_drawing_area();
        root.draw_text(text, &TextStyle::from(("sans-serif", 30)).color(&BLACK), (5, 5)).unwrap();
        root.present().unwrap();
    }
    (0..w as usize).map(|x| (0..h as usize).any(|y| buf[(y * w as usize + x) * 3] < 128)).collect()
}

#[test]
fn chart_text_has_no_gap_after_a_point() {
    let ink = ink_columns("0.902");
    let first = ink.iter().position(|&i| i).unwrap();
    let last = ink.iter().rposition(|&i| i).unwrap();
    // the blank runs between the five glyphs
    let mut gaps: Vec<usize> = Vec::new();
    let mut run = 0;
    for &i in &ink[first..=last] {
        if i {
            if run > 0 {
                gaps.push(run);
            }
            run = 0;
        } else {
            run += 1;
        }
    }
    assert_eq!(gaps.len(), 4, "{gaps:?}");
    // a monospace font centres the point in its cell: as much room before it as after it;
    // without the glyphs' bearings the point hugs the 0 and a wide gap follows it (`0. 902`)
    assert!(gaps[0].abs_diff(gaps[1]) <= 2, "the point is not centred: {gaps:?}");
    assert!(gaps[2].abs_diff(gaps[3]) <= 2, "digits unevenly spaced: {gaps:?}");
}

#[test]
fn charts_colour_by_split_tick_integers_and_place_the_legend() {
    use lt::plot::{legend_corner, series_styles, tick_label};
    use plotters::prelude::{RGBColor, SeriesLabelPosition};
    let styles = series_styles(&["train_loss_epoch", "train_loss_step", "val_loss", "test_loss", "lr-SGD"]);
    let blue = RGBColor(31, 119, 180);
    assert_eq!(styles[0], (blue, false));
    assert_eq!(styles[1], (blue, true), "a second train series is dashed, same colour");
    assert_eq!(styles[2], (RGBColor(255, 127, 14), false));
    assert_eq!(styles[3], (RGBColor(44, 160, 44), false));
    let (c, _) = styles[4];
    assert!(![blue, RGBColor(255, 127, 14), RGBColor(44, 160, 44)].contains(&c));
    // no pale colour: each reads on white (luminance well below white's)
    for (RGBColor(r, g, b), _) in &styles {
        let lum = 0.2126 * *r as f64 + 0.7152 * *g as f64 + 0.0722 * *b as f64;
        assert!(lum < 190.0, "({r}, {g}, {b}) is too pale");
    }
    assert_eq!(tick_label(80.0, 10.0), "80");
    assert_eq!(tick_label(0.9025, 0.01), "0.9");
    assert_eq!(tick_label(0.925, 0.005), "0.925");
    assert_eq!(tick_label(1.0e-5, 1e-6), "1e-05");
    // points ending at the upper right: the legend goes elsewhere
    let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, i as f64)).collect();
    let corner = legend_corner(&pts, (0.0, 9.0), (0.0, 9.0));
    assert!(matches!(corner, SeriesLabelPosition::UpperLeft | SeriesLabelPosition::LowerRight), "{corner:?}");

    // lt plot --logy draws a chart from a run's metrics.csv
    let dir = temp_dir("plot_logy");
    let mut csv = String::from("epoch,step,train_loss,val_loss\n");
    for s in 0..20 {
        csv.push_str(&format!("{},{s},{},\n", s / 10, 1.0 / (s as f64 + 1.0)));
    }
    csv.push_str("0,9,,0.5\n1,19,,0.2\n");
    std::fs::write(dir.join("metrics.csv"), csv).unwrap();
    let out = lt_in(&dir, &["plot", "metrics.csv", "--logy", "-o", "m.png"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let png = std::fs::read(dir.join("m.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
}
