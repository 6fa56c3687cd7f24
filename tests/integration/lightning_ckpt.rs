//! Lightning checkpoints in: a real `trainer.save_checkpoint` file (tests/fixtures/lightning_ckpt,
//! written by gen.py there with Lightning 2.6.6) read by the restricted unpickler — its state_dict
//! through `nn::load(path, #{key: "state_dict"})`, its hyperparameters and weights through
//! `lt test --ckpt` — and the messages for what lt does not do with one.
use crate::common::{eval, lt_in, root, stderr, stdout, temp_dir};
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/lightning_ckpt").join(name)
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap()
}

/// The fixture's architecture; `hparams()` says hidden 2, the checkpoint 3.
const SCRIPT: &str = r#"
fn hparams() { #{ lr: 0.1, hidden: 2, name: "x" } }
fn trainer() { #{ max_epochs: 1, enable_progress_bar: false, enable_model_summary: false, logger: false } }
fn init(h) {
    this.save_hyperparameters();
    this.net = nn::sequential([nn::linear(2, h.hidden), nn::batch_norm1d(h.hidden), nn::linear(h.hidden, 1)]);
}
fn train_dataloader() { [[torch::ones([4, 2])]] }
fn test_dataloader() { [[torch::tensor([[1.0, 2.0], [-0.5, 0.25], [3.0, -1.0]])]] }
fn training_step(b, i) { this.net.forward(b[0]).sum() }
fn test_step(b, i) {
    let y = this.net.forward(b[0]).flatten().tolist();
    print(`hidden=${this.hparams.hidden} name=${this.hparams.name} out=${y[0]} ${y[1]} ${y[2]}`);
}
fn configure_optimizers() { optim::sgd(this.parameters(), #{ lr: 0.1 }) }
"#;

#[test]
fn nn_load_reads_the_state_dict_of_a_lightning_checkpoint_by_key() {
    let p = fixture("pl.ckpt");
    // without a key: an error that says what the file is and what to write, not an empty map
    let e = eval(&format!("nn::load({:?})", p.display().to_string())).unwrap_err();
    assert!(e.contains("Lightning checkpoint") && e.contains(r#"nn::load(path, #{key: "state_dict"})"#), "{e}");
    let sums = eval(&format!(
        r#"let sd = nn::load({:?}, #{{key: "state_dict"}}); let out = #{{}}; for k in sd.keys() {{ out[k] = sd[k].double().sum().item(); }} out"#,
        p.display().to_string()
    ))
    .unwrap();
    let sums = lt::script::lightning::to_json(&sums);
    let want = &expected()["state_dict_sums"];
    assert_eq!(sums.as_object().unwrap().len(), want.as_object().unwrap().len(), "{sums}");
    for (k, w) in want.as_object().unwrap() {
        let got = sums[k].as_f64().unwrap_or_else(|| panic!("no {k} in {sums}"));
        // the file's own float32 values summed in float64 on both sides: equal up to the order of the sum
        assert!((got - w.as_f64().unwrap()).abs() < 1e-6, "{k}: {got} vs {w}");
    }
    let e = eval(&format!(r#"nn::load({:?}, #{{key: "model"}})"#, p.display().to_string())).unwrap_err();
    assert!(e.contains("no tensors under 'model'") && e.contains("loops") && e.contains("state_dict"), "{e}");
    let e = eval(&format!(r#"nn::load({:?}, #{{kee: "model"}})"#, p.display().to_string())).unwrap_err();
    assert!(e.contains("kee"), "{e}");
}

#[test]
fn lt_test_evaluates_a_lightning_checkpoint_with_its_hyperparameters() {
    let dir = temp_dir("pl_ckpt");
    std::fs::write(dir.join("m.rhai"), SCRIPT).unwrap();
    let ck = fixture("pl.ckpt").display().to_string();
    let out = lt_in(&dir, &["test", "m.rhai", "--ckpt", &ck]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out).lines().find(|l| l.starts_with("hidden=")).unwrap_or_default().to_string();
    assert!(line.starts_with("hidden=3 name=tiny out="), "{line}\n{}", stderr(&out));
    let got: Vec<f64> = line.split("out=").nth(1).unwrap().split(' ').map(|x| x.parse().unwrap()).collect();
    let want: Vec<f64> = expected()["output"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    for (g, w) in got.iter().zip(&want) {
        // float32 forward passes on two CPUs: within a few ulps
        assert!((g - w).abs() < 1e-5, "{got:?} vs Lightning's {want:?}");
    }
    // resuming a fit from it: refused, with what to do instead
    let fit = lt_in(&dir, &["fit", "m.rhai", "--ckpt", &ck]);
    assert!(!fit.status.success());
    assert!(stderr(&fit).contains("a fit cannot resume from it"), "{}", stderr(&fit));
}

#[test]
fn a_bare_pickle_is_named_as_one() {
    let dir = temp_dir("bare_pickle");
    let p = dir.join("legacy.pt");
    // what a legacy torch.save (or pickle.dump) starts with: PROTO 2, then opcodes
    std::fs::write(&p, [0x80, 0x02, b'}', b'q', 0x00, b'.']).unwrap();
    let e = eval(&format!("nn::load({:?})", p.display().to_string())).unwrap_err();
    assert!(e.contains("a bare pickle") && e.contains("never runs code"), "{e}");
}

/// A torch.save-like zip holding `pkl` as its data.pkl.
fn zip_with_pickle(tag: &str, pkl: &[u8]) -> PathBuf {
    use std::io::Write;
    let p = temp_dir(tag).join("x.pt");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
    let o = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("archive/data.pkl", o).unwrap();
    z.write_all(pkl).unwrap();
    z.finish().unwrap();
    p
}

#[test]
fn whole_file_reading_refuses_cycles_and_doubling_bombs() {
    // a list that contains itself: EMPTY_LIST, BINPUT 0, BINGET 0, APPEND, STOP
    let cyclic = zip_with_pickle("pkl_cycle", &[0x80, 0x02, b']', b'q', 0, b'h', 0, b'a', b'.']);
    let e = eval(&format!(r#"nn::load({:?}, #{{key: "x"}})"#, cyclic.display().to_string())).unwrap_err();
    assert!(e.contains("cycle"), "{e}");
    // 40 lists, each holding the one before twice: 2^40 values once expanded
    let mut pkl = vec![0x80, 0x02, b']', b'q', 0];
    for i in 1..=40u8 {
        pkl.extend([b'(', b'h', i - 1, b'h', i - 1, b'l', b'q', i]);
    }
    pkl.push(b'.');
    let bomb = zip_with_pickle("pkl_bomb", &pkl);
    let e = eval(&format!(r#"nn::load({:?}, #{{key: "x"}})"#, bomb.display().to_string())).unwrap_err();
    assert!(e.contains("expands to more than"), "{e}");
}
