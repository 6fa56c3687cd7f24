//! Images: read_image and masks against Pillow / torchvision.io on committed tiny files
//! (tests/fixtures/images/gen_images.py), data::transforms against torchvision.transforms.v2
//! (gen_transforms.py), joint image + mask semantics, per-sample seeding independent of
//! `num_workers`, and bad image files.
use crate::common::{eval, eval_bool, root, temp_dir};
use lt::tensor::Tensor;
use rhai::{Dynamic, Scope};
use serde_json::Value;
use std::path::Path;

fn fixture(name: &str) -> Value {
    let p = root().join("tests/fixtures/images").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).expect("read fixture")).expect("parse fixture")
}

fn tensor(v: &Value) -> tch::Tensor {
    let shape: Vec<i64> = v["shape"].as_array().unwrap().iter().map(|s| s.as_i64().unwrap()).collect();
    let data = v["data"].as_array().unwrap();
    let t = match v["dtype"].as_str().unwrap_or("uint8") {
        "int64" => tch::Tensor::from_slice(&data.iter().map(|d| d.as_i64().unwrap()).collect::<Vec<_>>()),
        "uint8" => tch::Tensor::from_slice(&data.iter().map(|d| d.as_i64().unwrap() as u8).collect::<Vec<_>>()),
        "float64" => tch::Tensor::from_slice(&data.iter().map(|d| d.as_f64().unwrap()).collect::<Vec<_>>()),
        _ => tch::Tensor::from_slice(&data.iter().map(|d| d.as_f64().unwrap() as f32).collect::<Vec<_>>()),
    };
    t.reshape(shape.as_slice())
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "/")
}

fn max_abs_diff(a: &tch::Tensor, b: &tch::Tensor) -> f64 {
    (a.to_kind(tch::Kind::Double) - b.to_kind(tch::Kind::Double)).abs().max().double_value(&[])
}

fn run(src: String, scope: &mut Scope) -> Result<Dynamic, String> {
    let _rng = crate::common::rng_guard();
    let script = lt::script::runner::Script::from_source(Path::new("images.rhai"), src).map_err(|e| e.to_string())?;
    script.run(scope).map_err(|e| e.to_string())
}

/// PNG is lossless: every pixel equals Pillow's, in every mode (Pillow's `convert`: L is
/// ITU-R 601-2 luma in 16-bit fixed point, alpha dropped, palettes looked up), and "unchanged"
/// equals torchvision.io.decode_image. JPEG: jpeg-decoder and libjpeg-turbo (Pillow's decoder)
/// use different IDCTs and chroma upsampling arithmetic, so pixels may differ by a little; the
/// measured maximum on these files is asserted (≤ 3 per channel, with a mean ≤ 0.5), far below
/// what a wrong colour conversion or a shifted block gives.
#[test]
fn read_image_matches_pillow_and_torchvision() {
    let fx = fixture("images.json");
    let dir = root().join("tests/fixtures/images");
    let mut failures = Vec::new();
    for (name, f) in fx["files"].as_object().unwrap() {
        let p = path_str(&dir.join(name));
        let jpeg = name.ends_with(".jpg");
        let mut cases: Vec<(String, &Value)> =
            f["modes"].as_object().unwrap().iter().map(|(m, v)| (format!("#{{mode: \"{m}\"}}"), v)).collect();
        if f["pil_mode"] != "P" {
            // torchvision's UNCHANGED turns a palette into gray levels; lt gives the palette's colours
            cases.push(("#{}".to_string(), &f["unchanged"]));
        }
        for (opts, want) in cases {
            let got = match run(format!("data::read_image(\"{p}\", {opts})"), &mut Scope::new()) {
                Ok(v) => v.cast::<Tensor>(),
                Err(e) => {
                    failures.push(format!("{name} {opts}: {e}"));
                    continue;
                }
            };
            let want = tensor(want);
            if got.size() != want.size() || got.kind() != tch::Kind::Uint8 {
                failures.push(format!("{name} {opts}: {:?} {:?}, Pillow {:?}", got.size(), got.kind(), want.size()));
                continue;
            }
            let d = max_abs_diff(&got, &want);
            let mean =
                (got.to_kind(tch::Kind::Double) - want.to_kind(tch::Kind::Double)).abs().mean(None).double_value(&[]);
            let ok = if jpeg { d <= 3.0 && mean <= 0.5 } else { d == 0.0 };
            if !ok {
                failures.push(format!("{name} {opts}: max difference {d}, mean {mean}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn image_pairs_read_palette_indices_as_masks() {
    let fx = fixture("images.json");
    let src = root().join("tests/fixtures/images");
    let dir = temp_dir("image_pairs");
    for d in ["img", "mask"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    // palette.png (4-bit) is 5x4 like rgb.png; palette1bit.png is 11x4; gray.png is a grayscale mask
    std::fs::copy(src.join("rgb.png"), dir.join("img/a.png")).unwrap();
    std::fs::copy(src.join("palette.png"), dir.join("mask/a.png")).unwrap();
    std::fs::copy(src.join("photo.jpg"), dir.join("img/b.jpg")).unwrap();
    std::fs::copy(src.join("rgba.png"), dir.join("img/c.png")).unwrap();
    std::fs::copy(src.join("gray.png"), dir.join("mask/c.png")).unwrap();
    let d = path_str(&dir);
    // an image without a mask
    let e = eval(&format!(r#"data::image_pairs("{d}/img", "{d}/mask")"#)).unwrap_err();
    assert!(e.contains("b.jpg has no mask"), "{e}");
    std::fs::remove_file(dir.join("img/b.jpg")).unwrap();
    // a mask without an image
    std::fs::copy(src.join("palette1bit.png"), dir.join("mask/z.png")).unwrap();
    let e = eval(&format!(r#"data::image_pairs("{d}/img", "{d}/mask")"#)).unwrap_err();
    assert!(e.contains("mask") && e.contains("z.png has no matching image"), "{e}");
    assert!(eval_bool(&format!(r#"data::save_image(torch::zeros([3, 4, 11]), "{d}/img/z.png"); true"#)));
    let files = fx["files"].as_object().unwrap();
    let mut scope = Scope::new();
    for (k, f) in [("pa", "palette.png"), ("pz", "palette1bit.png"), ("g", "gray.png")] {
        scope.push(k, Tensor::new(tensor(&files[f]["mask"])));
    }
    scope.push("rgb", Tensor::new(tensor(&files["rgb.png"]["modes"]["RGB"])));
    let ok = run(
        format!(
            r#"
            let ds = data::image_pairs("{d}/img", "{d}/mask", #{{mode: "RGB"}});
            let a = ds[0]; let c = ds[1]; let z = ds[2];
            ds.len() == 3 && a[1].dtype == "int64" && a[1].shape == [4, 5]
            && a[1].equal(pa.to("int64")) && z[1].equal(pz.to("int64")) && c[1].equal(g.to("int64"))
            && a[0].equal(rgb) && c[0].shape == [3, 4, 5]
        "#
        ),
        &mut scope,
    )
    .unwrap();
    assert!(ok.as_bool().unwrap());
    // a mask with colour channels is refused, naming it
    std::fs::copy(src.join("rgb.png"), dir.join("mask/c.png")).unwrap();
    let e = eval(&format!(r#"data::image_pairs("{d}/img", "{d}/mask")[1]"#)).unwrap_err();
    assert!(e.contains("c.png: a mask must have one channel") && e.contains("has 3"), "{e}");
    // image and mask of different sizes
    std::fs::copy(src.join("palette1bit.png"), dir.join("mask/c.png")).unwrap();
    let e = eval(&format!(r#"data::image_pairs("{d}/img", "{d}/mask")[1]"#)).unwrap_err();
    assert!(e.contains("c.png is 4x5 but its mask") && e.contains("is 4x11"), "{e}");
}

/// Float cases: max |lt - torchvision| / (1 + |torchvision|) ≤ 1e-5 — the same libtorch kernels
/// (interpolate, grid_sample) on the same float32 inputs, so only summation order on another CPU
/// can differ. uint8 and mask outputs must be equal: they are rounded from float results (or
/// computed in integers by the same uint8 kernel), so a difference means a different formula.
#[test]
fn transforms_match_torchvision_v2() {
    let fx = fixture("transforms.json");
    let inputs = fx["inputs"].as_object().unwrap();
    let mut failures = Vec::new();
    let cases = fx["cases"].as_array().unwrap();
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let ctor = c["ctor"].as_str().unwrap();
        let mut scope = Scope::new();
        scope.push("x", Tensor::new(tensor(&inputs[c["x"].as_str().unwrap()])));
        let joint = c.get("m").is_some();
        let src = if joint {
            scope.push("m", Tensor::new(tensor(&inputs[c["m"].as_str().unwrap()])));
            format!(
                "data::transformed(data::tensor_dataset(x.unsqueeze(0), m.unsqueeze(0)), #{{transforms: {ctor}}})[0]"
            )
        } else {
            format!("[data::transformed(data::tensor_dataset(x.unsqueeze(0)), #{{transform: {ctor}}})[0][0]]")
        };
        let out = match run(src, &mut scope) {
            Ok(v) => v.cast::<rhai::Array>(),
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let mut pairs = vec![(out[0].clone().cast::<Tensor>(), tensor(&c["out"]), "image")];
        if joint {
            pairs.push((out[1].clone().cast::<Tensor>(), tensor(&c["m_out"]), "mask"));
        }
        for (got, want, what) in pairs {
            if got.size() != want.size() || got.kind() != want.kind() {
                failures.push(format!(
                    "{name} {what}: {:?} {:?}, torchvision {:?} {:?}",
                    got.size(),
                    got.kind(),
                    want.size(),
                    want.kind()
                ));
                continue;
            }
            let err = if matches!(want.kind(), tch::Kind::Float | tch::Kind::Double) {
                let (g, w) = (got.to_kind(tch::Kind::Double), want.to_kind(tch::Kind::Double));
                ((&g - &w).abs() / (w.abs() + 1.0)).max().double_value(&[])
            } else {
                max_abs_diff(&got, &want) * 1e6
            };
            if err.is_nan() || err > 1e-5 {
                failures.push(format!("{name} {what}: max difference {err:e}"));
            }
        }
    }
    assert!(cases.len() >= 93, "only {} cases", cases.len());
    assert!(failures.is_empty(), "{} mismatches with torchvision:\n{}", failures.len(), failures.join("\n"));
}

/// The same batches whatever `num_workers`, a different draw per sample and per epoch, and the
/// mask moved exactly like the image: channel 0 of each image is its mask, so with nearest
/// interpolation everywhere they must still agree after every random geometric transform.
#[test]
fn random_transforms_are_joint_per_sample_and_independent_of_workers() {
    let src = |workers: i64| {
        format!(
            r#"
            torch::manual_seed(5);
            let m = torch::randint(0, 200, [12, 20, 26]);
            let x = torch::stack([m, torch::randint(0, 255, [12, 20, 26]), m * 0 + 7], 1).to("uint8");
            let t = data::transforms::compose([
                data::transforms::random_rotation(40),
                data::transforms::random_resized_crop([10, 12], #{{interpolation: "nearest"}}),
                data::transforms::random_crop(11, #{{pad_if_needed: true, padding: [1, 2]}}),
                data::transforms::random_horizontal_flip(),
                data::transforms::random_vertical_flip(),
            ]);
            let ds = data::transformed(data::tensor_dataset(x, m), #{{transforms: t, seed: 3}});
            let l = data::loader(ds, #{{batch_size: 5, num_workers: {workers}, seed: 11, shuffle: true}});
            let sums = [];
            let joint = true;
            for epoch in 0..2 {{
                for b in l {{
                    joint = joint && b[0].select(1, 0).to("int64").equal(b[1]) && b[1].shape[1] == 11;
                    sums.push(b[0].to("float32").sum().item());
                }}
            }}
            [sums, joint]
        "#
        )
    };
    let a = eval(&src(0)).unwrap().cast::<rhai::Array>();
    let b = eval(&src(2)).unwrap().cast::<rhai::Array>();
    assert_eq!(a[0].to_string(), b[0].to_string());
    assert!(a[1].as_bool().unwrap(), "the mask did not move with the image");
    let sums = a[0].clone().cast::<rhai::Array>();
    assert_eq!(sums.len(), 6);
    assert_ne!(sums[0].to_string(), sums[3].to_string(), "epochs should draw differently");
    // whole-image random_resized_crop is resize; flips with p 0.5 draw both ways across samples
    assert!(eval_bool(
        r#"
        let x = torch::rand([16, 3, 8, 8]);
        let r = data::transformed(data::tensor_dataset(x), #{transform: data::transforms::random_resized_crop(6, #{scale: [1.0, 1.0], ratio: [1.0, 1.0]})});
        let s = data::transformed(data::tensor_dataset(x), #{transform: data::transforms::resize([6, 6])});
        let f = data::transformed(data::tensor_dataset(x), #{transform: data::transforms::random_horizontal_flip()});
        let flipped = 0;
        for i in 0..16 { if !f[i][0].equal(x[i]) { flipped += 1; } }
        r[3][0].equal(s[3][0]) && flipped > 2 && flipped < 14
    "#
    ));
}

#[test]
fn images_of_different_sizes_batch_after_a_resize() {
    let dir = temp_dir("image_files");
    let d = path_str(&dir);
    assert!(eval_bool(&format!(
        r#"
        data::save_image(torch::rand([3, 9, 7]), "{d}/a.png");
        data::save_image(torch::rand([1, 5, 12]), "{d}/b.png");
        let files = ["{d}/a.png", "{d}/b.png"];
        let ds = data::image_files(files, #{{mode: "RGB", labels: [4, 2]}});
        let t = data::transformed(ds, #{{transform: data::transforms::compose([
            data::transforms::resize(6), data::transforms::center_crop(6),
            data::transforms::to_dtype("float32", #{{scale: true}}), data::transforms::normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])])}});
        let b = [];
        for x in data::loader(t, #{{batch_size: 2, num_workers: 2}}) {{ b.push(x); }}
        b.len() == 1 && b[0][0].shape == [2, 3, 6, 6] && b[0][1].to_array() == [4, 2]
        && data::image_files(files).len() == 2 && data::image_files(files)[1].shape == [1, 5, 12]
    "#
    )));
    let e = eval(&format!(r#"for b in data::loader(data::image_files(["{d}/a.png", "{d}/b.png"]), #{{batch_size: 2}}) {{ print(b.shape); }}"#))
        .unwrap_err();
    assert!(e.contains("data::transforms::resize"), "{e}");
}

#[test]
fn bad_image_files_and_options_are_named() {
    let dir = temp_dir("bad_images");
    let src = root().join("tests/fixtures/images");
    let png = std::fs::read(src.join("rgb.png")).unwrap();
    let jpg = std::fs::read(src.join("photo.jpg")).unwrap();
    std::fs::write(dir.join("cut.png"), &png[..png.len() / 2]).unwrap();
    std::fs::write(dir.join("cut.jpg"), &jpg[..jpg.len() / 2]).unwrap();
    std::fs::write(dir.join("text.png"), b"hello").unwrap();
    let d = path_str(&dir);
    for (f, want) in
        [("cut.png", "bad PNG"), ("cut.jpg", "bad JPEG"), ("text.png", "not a PNG or JPEG"), ("none.png", "none.png")]
    {
        let e = eval(&format!(r#"data::read_image("{d}/{f}")"#)).unwrap_err();
        assert!(e.contains(f) && e.contains(want), "{f}: {e}");
    }
    let cases = [
        (r#"data::read_image("x.png", #{mode: "P"})"#, "unknown mode 'P'"),
        (r#"data::read_image("x.png", #{modes: "L"})"#, "mode"),
        ("data::transforms::resize([1, 2, 3])", "size must be a positive int or [height, width]"),
        ("data::transforms::resize([4, 5], #{max_size: 9})", "max_size is only allowed"),
        (r#"data::transforms::resize(4, #{interpolation: "cubic"})"#, "\"bilinear\" or \"nearest\""),
        ("data::transforms::random_rotation(-3)", "must be positive"),
        ("data::transforms::random_resized_crop(4, #{scale: [0.9, 0.1]})", "min <= max"),
        ("data::transforms::random_vertical_flip(1.5)", "p must be in [0, 1]"),
        ("data::transforms::random_crop(4, #{padding: [1, 2, 3]})", "list of 2 or 4 ints"),
        (
            r#"data::transforms::random_crop(4, #{padding_mode: "wrap"})"#,
            r#"padding_mode must be one of "constant", "edge", "reflect", "symmetric", got "wrap""#,
        ),
        (
            r#"data::transformed(data::tensor_dataset(torch::zeros([2, 1, 4, 5])), #{transform: data::transforms::random_crop(4, #{padding: [0, 4], padding_mode: "reflect"})})[0]"#,
            r#"random_crop: padding_mode "reflect": padding (4, 4) is too large for a dimension of 4 (at most 3 on a side)"#,
        ),
        (
            r#"data::transformed(data::tensor_dataset(torch::zeros([2, 1, 4, 5])), #{transform: data::transforms::random_crop(4, #{padding: [6, 0], padding_mode: "symmetric"})})[0]"#,
            r#"padding_mode "symmetric": padding (6, 6) is too large for a dimension of 5 (at most 5 on a side)"#,
        ),
        ("data::transforms::random_rotation(3, #{center: [1]})", "center must be [x, y]"),
        ("data::transforms::random_rotation(3, #{expand: 1})", "option 'expand' must be a bool"),
        ("data::transforms::random_rotation(3, #{centre: [1, 2]})", "center"),
        (
            "data::transformed(data::tensor_dataset(torch::zeros([2, 1, 4, 4]).to(\"uint8\")), #{transform: data::transforms::normalize(0.5, 0.5)})[0]",
            "should be a float tensor, got uint8",
        ),
        (
            "data::transformed(data::tensor_dataset(torch::zeros([2, 1, 4, 4]), torch::arange(2)), #{transforms: data::transforms::center_crop(2)})[0]",
            "not a mask",
        ),
        (
            "data::transformed(data::tensor_dataset(torch::zeros([2, 1, 4, 4])), #{transform: data::transforms::random_crop(6)})[0]",
            "larger than the (padded) image size",
        ),
    ];
    for (src, want) in cases {
        let e = eval(src).unwrap_err();
        assert!(e.contains(want), "{src}: {e}");
    }
}

/// `to_float()` is ToDtype(float32, scale=True): on uint8 images, the same values as
/// `to_dtype("float32", #{scale: true})`, which are x / 255 (the fixture checks it against
/// torchvision too).
#[test]
fn to_float_is_to_dtype_float32_scaled() {
    assert!(eval_bool(
        r#"
        let x = torch::arange(256).to("uint8").reshape([1, 1, 16, 16]);
        let a = data::transformed(data::tensor_dataset(x), #{transform: data::transforms::to_float()})[0][0];
        let b = data::transformed(data::tensor_dataset(x), #{transform: data::transforms::to_dtype("float32", #{scale: true})})[0][0];
        let want = x[0].to("float32") / 255.0;
        a.dtype == "float32" && a.equal(b) && (a - want).abs().max().item() < 1e-7 && a.max().item() == 1.0
        "#
    ));
}

/// pad_if_needed pads by the padding_mode too (torchvision RandomCrop): a 3-pixel row cropped to
/// 5 is reflect-padded by 2 on each side (2 1 | 0 1 2 | 1 0) before the random window is taken.
#[test]
fn random_crop_pad_if_needed_uses_the_padding_mode() {
    assert!(eval_bool(
        r#"
        let x = torch::arange(3).reshape([1, 1, 1, 3]).repeat([16, 1, 1, 1]);
        let t = data::transforms::random_crop([1, 5], #{pad_if_needed: true, padding_mode: "reflect"});
        let windows = [[2, 1, 0, 1, 2], [1, 0, 1, 2, 1], [0, 1, 2, 1, 0]];
        let seen = #{};
        for b in data::loader(data::transformed(data::tensor_dataset(x), #{transform: t, seed: 4}), #{batch_size: 16}) {
            for i in 0..16 {
                let w = b[0][i].reshape([5]).to_array();
                if !windows.contains(w) { throw `window ${w}`; }
                seen[`${w}`] = true;
            }
        }
        seen.len() == 3
        "#
    ));
}
