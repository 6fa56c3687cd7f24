//! `lt ckpt convert`: lt checkpoints to Lightning / PyTorch / safetensors files (read back with
//! lt's own restricted unpickler, their pickle checked to use only what PyTorch's weights-only
//! unpickler accepts), and a real Lightning checkpoint (tests/fixtures/lightning_ckpt/resume.ckpt,
//! written by check_convert.py there, which also checks both directions with torch and
//! Lightning themselves) to an lt checkpoint that `lt fit --ckpt` resumes like Lightning does.
use crate::common::{lt_in, root, stderr, stdout, temp_dir};
use lt::checkpoint::Checkpoint;
use lt::nn::torch_save::Py;
use std::io::Read;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/lightning_ckpt").join(name)
}

/// The opcodes `torch/_weights_only_unpickler.py` (torch 2.11) accepts, listed from its `load`.
const TORCH_WEIGHTS_ONLY_OPCODES: &[u8] = &[
    b'c', 0x81, b'R', b'b', b'a', b'e', b's', b'u', b'(', b't', 0x85, 0x86, 0x87, b'N', 0x89, 0x88, b')', b']', b'}',
    0x8f, b'J', b'K', b'M', b'G', b'X', b'U', b'Q', b'h', b'j', b'q', b'r', 0x8a, 0x80, b'.',
];

/// A dir with mlp.rhai fitted for two epochs: ck/last.ckpt, and what lt printed.
fn fitted(tag: &str) -> (PathBuf, String) {
    let dir = temp_dir(tag);
    std::fs::copy(fixture("mlp.rhai"), dir.join("mlp.rhai")).unwrap();
    let out = lt_in(&dir, &["fit", "mlp.rhai"]);
    assert!(out.status.success(), "{}", stderr(&out));
    (dir, stdout(&out))
}

fn outputs(stdout: &str) -> Vec<f64> {
    let line = stdout.lines().find(|l| l.starts_with("out ")).unwrap_or_else(|| panic!("no output in {stdout}"));
    line[4..].split(' ').map(|v| v.parse().unwrap()).collect()
}

fn data_pkl(path: &Path) -> Vec<u8> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let names: Vec<String> = z.file_names().map(str::to_string).collect();
    for want in ["archive/data.pkl", "archive/byteorder", "archive/version", "archive/data/0"] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    let mut pkl = Vec::new();
    z.by_name("archive/data.pkl").unwrap().read_to_end(&mut pkl).unwrap();
    pkl
}

fn assert_same_tensors(a: &[(String, tch::Tensor)], b: &[(String, tch::Tensor)]) {
    assert_eq!(a.iter().map(|x| &x.0).collect::<Vec<_>>(), b.iter().map(|x| &x.0).collect::<Vec<_>>());
    for ((k, x), (_, y)) in a.iter().zip(b) {
        assert!(x.kind() == y.kind() && x.size() == y.size() && x.equal(y), "{k} differs");
    }
}

#[test]
fn an_lt_checkpoint_converts_to_lightning_pytorch_and_safetensors() {
    let (dir, _) = fitted("convert_out");
    let ck = Checkpoint::load(&dir.join("ck/last.ckpt")).unwrap();
    let weights = ck.section("state_dict");
    for (to, name) in [("lightning", "pl.ckpt"), ("pytorch", "sd.pt"), ("safetensors", "sd.safetensors")] {
        let out = lt_in(&dir, &["ckpt", "convert", "ck/last.ckpt", "--to", to, name]);
        assert!(out.status.success(), "{to}: {}", stderr(&out));
        assert!(stdout(&out).contains(&format!("wrote {name}")), "{}", stdout(&out));
    }
    // the Lightning file: its pickle uses only opcodes and globals weights-only loading allows
    for name in ["pl.ckpt", "sd.pt"] {
        let pkl = data_pkl(&dir.join(name));
        let (ops, globals) = lt::nn::torch_save::scan(&pkl).unwrap();
        for op in &ops {
            assert!(TORCH_WEIGHTS_ONLY_OPCODES.contains(op), "{name}: opcode 0x{op:02x}");
        }
        assert!(!globals.is_empty());
        for g in &globals {
            assert!(lt::nn::torch_save::WRITER_GLOBALS.contains(&g.as_str()), "{name}: global {g}");
        }
    }
    let tree = lt::nn::torch_pickle::load_tree_file(&dir.join("pl.ckpt")).unwrap();
    let v = &tree.value;
    // saved at the end of the second epoch (index 1), as Lightning's ModelCheckpoint would say
    assert_eq!((v["epoch"].as_i64(), v["global_step"].as_i64()), (Some(1), Some(4)), "{v}");
    assert_eq!(v["pytorch-lightning_version"], "2.6.6");
    assert_eq!(v["hparams_name"], "kwargs");
    assert_eq!(v["hyper_parameters"], serde_json::json!({"hidden": 4, "lr": 0.05}));
    assert_same_tensors(&tree.section("state_dict"), &weights);
    // optimizer state in torch's layout: state by parameter index, param_groups with the indices
    assert_same_tensors(&tree.section("optimizer_states.0.state.1"), &ck.section("optimizer_states.0.state.1"));
    let g = &v["optimizer_states"][0]["param_groups"][0];
    assert_eq!(g["params"], serde_json::json!([0, 1, 2, 3]), "{g}");
    assert_eq!(g["betas"], serde_json::json!([0.9, 0.999]));
    assert!((g["lr"].as_f64().unwrap() - 0.0125).abs() < 1e-12, "{g}");
    let s = &v["lr_schedulers"][0];
    assert_eq!((s["last_epoch"].as_i64(), s["base_lrs"].clone()), (Some(2), serde_json::json!([0.05])), "{s}");
    assert_same_tensors(&lt::nn::torch_pickle::load_file(&dir.join("sd.pt")).unwrap(), &weights);
    let (st, _) = lt::nn::io::load_safetensors(&dir.join("sd.safetensors")).unwrap();
    let mut st = st;
    let mut w = weights;
    st.sort_by(|a, b| a.0.cmp(&b.0));
    w.sort_by(|a, b| a.0.cmp(&b.0));
    assert_same_tensors(&st, &w);
    // and the Lightning file comes back to an lt checkpoint with the same weights and optimizer
    let out = lt_in(&dir, &["ckpt", "convert", "pl.ckpt", "back.ckpt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let back = Checkpoint::load(&dir.join("back.ckpt")).unwrap();
    assert_same_tensors(&back.section("state_dict"), &ck.section("state_dict"));
    assert_same_tensors(&back.section("optimizer_states.0"), &ck.section("optimizer_states.0"));
    // torch tells Adam from AdamW by `decoupled_weight_decay`, lt by name: the flag is written, and
    // read back as the name, so an AdamW script refuses the Adam state instead of running it as AdamW
    assert_eq!(g["decoupled_weight_decay"], serde_json::json!(false), "{g}");
    let script = std::fs::read_to_string(dir.join("mlp.rhai")).unwrap().replace("optim::adam(", "optim::adamw(");
    std::fs::write(dir.join("mlp_w.rhai"), script).unwrap();
    let out = lt_in(&dir, &["fit", "mlp_w.rhai", "--ckpt", "back.ckpt", "--trainer.max_epochs=3"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("the state is of a Adam optimizer, this is AdamW"), "{}", stderr(&out));
}

#[test]
fn convert_refuses_to_overwrite_and_bad_inputs() {
    let (dir, _) = fitted("convert_refuse");
    std::fs::write(dir.join("taken.pt"), b"mine").unwrap();
    let run = |args: &[&str]| lt_in(&dir, &[&["ckpt", "convert"], args].concat());
    let out = run(&["ck/last.ckpt", "--to", "pytorch", "taken.pt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("exists; pass --force"), "{}", stderr(&out));
    assert_eq!(std::fs::read(dir.join("taken.pt")).unwrap(), b"mine");
    let out = run(&["ck/last.ckpt", "--to", "pytorch", "taken.pt", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lt::nn::torch_pickle::load_file(&dir.join("taken.pt")).unwrap().len(), 4);
    // the input as the output, also with --force and by another name
    let out = run(&["ck/last.ckpt", "--to", "lightning", "ck/../ck/last.ckpt", "--force"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is the input file"), "{}", stderr(&out));
    let before = std::fs::read(dir.join("ck/last.ckpt")).unwrap();
    for (args, want) in [
        (&["ck/last.ckpt", "--to", "lt", "x.ckpt"][..], "already an lt checkpoint"),
        (&["ck/last.ckpt", "--to", "onnx", "x.onnx"][..], "unknown --to 'onnx'"),
        (&["ck/last.ckpt", "--to", "pytorch"][..], "output file is missing"),
        (&["nothing.ckpt", "--to", "pytorch", "x.pt"][..], "cannot read nothing.ckpt"),
        (&["mlp.rhai", "--to", "pytorch", "x.pt"][..], "neither a safetensors file nor a PyTorch zip"),
    ] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    assert!(!dir.join("x.ckpt").exists() && !dir.join("x.pt").exists() && !dir.join("x.onnx").exists());
    assert_eq!(std::fs::read(dir.join("ck/last.ckpt")).unwrap(), before);
    let out = lt_in(&dir, &["ckpt", "show", "ck/last.ckpt", "--to", "pytorch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("are for `lt ckpt convert`"), "{}", stderr(&out));
    // a hostile pickle inside a torch.save zip: refused by the reader, nothing written
    let p = dir.join("evil.ckpt");
    {
        use std::io::Write;
        let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        let o = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
        z.start_file("archive/data.pkl", o).unwrap();
        z.write_all(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsR.").unwrap();
        z.finish().unwrap();
    }
    let out = run(&["evil.ckpt", "out.ckpt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("os.system"), "{}", stderr(&out));
    assert!(!dir.join("out.ckpt").exists());
}

#[test]
fn a_lightning_checkpoint_resumes_in_lt_as_in_lightning() {
    let dir = temp_dir("convert_resume");
    std::fs::copy(fixture("mlp.rhai"), dir.join("mlp.rhai")).unwrap();
    std::fs::copy(fixture("resume.ckpt"), dir.join("resume.ckpt")).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("resume_expected.json")).unwrap()).unwrap();
    // --to inferred: a Lightning checkpoint becomes an lt one
    let out = lt_in(&dir, &["ckpt", "convert", "resume.ckpt", "conv.ckpt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let verify = lt_in(&dir, &["ckpt", "verify", "conv.ckpt"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    let meta = Checkpoint::read_meta(&dir.join("conv.ckpt")).unwrap();
    assert_eq!((meta["epoch"].as_i64(), meta["global_step"].as_i64()), (Some(2), Some(4)), "{meta}");
    assert_eq!(meta["lr_schedulers"][0]["type"], "StepLR");
    // the converted weights are Lightning's after two epochs ...
    let out = lt_in(&dir, &["fit", "mlp.rhai", "--ckpt", "conv.ckpt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let close = |got: Vec<f64>, key: &str| {
        let want: Vec<f64> = expected[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            // float32 on two CPUs and two libtorch builds: a few ulps, well inside 1e-5
            assert!((g - w).abs() < 1e-5, "{key}: {got:?} vs Lightning's {want:?}");
        }
    };
    close(outputs(&stdout(&out)), "output_after_2_epochs");
    assert!(stdout(&out).contains("step 4 "), "{}", stdout(&out));
    // ... and a third epoch from there (Adam's moments and step, the StepLR, the loop position all
    // carried over) lands where Lightning's own resume of the same file does
    let out = lt_in(&dir, &["fit", "mlp.rhai", "--ckpt", "conv.ckpt", "--set", "trainer.max_epochs=3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("step 6 "), "{}", stdout(&out));
    close(outputs(&stdout(&out)), "output_after_resuming_to_3");
}

#[test]
fn the_batchnorm_fixture_converts_and_says_what_it_drops() {
    // pl.ckpt (gen.py): BatchNorm buffers, Adam + StepLR, an EarlyStopping callback state
    let dir = temp_dir("convert_bn");
    let out = lt_in(&dir, &["ckpt", "convert", fixture("pl.ckpt").to_str().unwrap(), "--to", "lt", "bn.ckpt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ck = Checkpoint::load(&dir.join("bn.ckpt")).unwrap();
    let sd = ck.section("state_dict");
    assert_eq!(sd.len(), 9);
    assert!(sd.iter().any(|(k, t)| k == "net.1.num_batches_tracked" && t.int64_value(&[]) == 4));
    assert_eq!(ck.meta["hyper_parameters"]["name"], "tiny");
    assert_eq!(ck.meta["callbacks"], serde_json::json!({}));
    assert_eq!(ck.section("optimizer_states.0").len(), 6 * 3, "step, exp_avg, exp_avg_sq of 6 parameters");
}

// ---- the writer alone ----

#[test]
fn pickles_read_back_with_the_restricted_reader() {
    let v = Py::dict([
        ("a", Py::Int(-3)),
        ("b", Py::Int(1 << 40)),
        ("c", Py::Float(0.5)),
        ("d", Py::List(vec![Py::Bool(true), Py::None, Py::str("x")])),
        ("e", Py::Tuple(vec![Py::Int(300), Py::Int(70000)])),
        ("f", Py::Dict(vec![(Py::Int(0), Py::List(vec![]))])),
    ]);
    let (pkl, storages) = lt::nn::torch_save::pickle(&v).unwrap();
    assert!(storages.is_empty());
    let text = lt::nn::torch_pickle::describe_pickle(&pkl, 1000).unwrap();
    assert_eq!(
        text,
        r#"{"a": -3, "b": 1099511627776, "c": 0.5, "d": [True, None, "x"], "e": (300, 70000), "f": {0: []}}"#
    );
    let (ops, globals) = lt::nn::torch_save::scan(&pkl).unwrap();
    assert!(ops.iter().all(|o| lt::nn::torch_save::WRITER_OPCODES.contains(o)));
    assert!(globals.is_empty());
}

#[test]
fn a_state_dict_file_reads_back_bit_for_bit() {
    let dir = temp_dir("torch_save");
    let p = dir.join("sd.pt");
    let w = tch::Tensor::from_slice(&[1.5f32, -2.0, 3.25, 4.0, 5.0, 6.0]).reshape([2, 3]);
    let n = tch::Tensor::from(7i64);
    lt::nn::torch_save::save(
        &p,
        &Py::OrderedDict(vec![
            ("w".into(), Py::Tensor(w.shallow_clone())),
            ("n".into(), Py::Tensor(n.shallow_clone())),
        ]),
    )
    .unwrap();
    let sd = lt::nn::torch_pickle::load_file(&p).unwrap();
    assert_eq!(sd.len(), 2);
    assert_eq!(sd[0].0, "w");
    assert!(sd[0].1.equal(&w) && sd[0].1.size() == [2, 3]);
    assert_eq!(sd[1].1.kind(), tch::Kind::Int64);
    assert!(sd[1].1.equal(&n) && sd[1].1.dim() == 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
