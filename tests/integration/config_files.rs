//! LightningCLI conventions: `--config` YAML files merged in order, `--print_config`, the dotted
//! flags `--trainer.k=v` / `--model.k v` / `--data.k=v`, `trainer.callbacks` in class_path form,
//! unknown keys refused with a did-you-mean; and the YAML reader's refusal of hostile files.
use crate::common::{lt_in, stderr, stdout, temp_dir};
use lt::cli::yaml::parse;
use serde_json::{json, Value};

const SCRIPT: &str = r#"
fn hparams() { #{ lr: 0.5, tag: "a", opt: #{ name: "sgd", momentum: 0.0 } } }
fn trainer() { #{ max_epochs: 5, enable_progress_bar: false, enable_model_summary: false, logger: false } }
fn init(h) { this.save_hyperparameters(); this.w = torch::zeros([1], #{requires_grad: true}); }
fn configure_optimizers() { optim::sgd([this.w], #{lr: this.hparams.lr}) }
fn train_dataloader() { [[torch::ones([1])]] }
fn training_step(b, i) { (this.w - 1.0).square().sum() }
fn on_train_end() { print(`epochs=${this.current_epoch} lr=${this.hparams.lr} tag=${this.hparams.tag} opt=${this.hparams.opt.name}/${this.hparams.opt.momentum}`); }
"#;

const A_YAML: &str = r#"
seed_everything: 7
trainer:
  max_epochs: 4
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args:
        dirpath: ck
        filename: "cfg-{epoch}"
model:
  lr: 0.1
  opt:
    name: adam
"#;

const B_YAML: &str = "trainer:\n  max_epochs: 3\nmodel:\n  tag: b\n";

fn setup(tag: &str) -> std::path::PathBuf {
    let dir = temp_dir(tag);
    std::fs::write(dir.join("m.rhai"), SCRIPT).unwrap();
    std::fs::write(dir.join("a.yaml"), A_YAML).unwrap();
    std::fs::write(dir.join("b.yaml"), B_YAML).unwrap();
    dir
}

fn result_line(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", stderr(out));
    stdout(out).lines().find(|l| l.starts_with("epochs=")).unwrap_or_else(|| panic!("{}", stdout(out))).to_string()
}

#[test]
fn config_files_merge_in_order_and_flags_win() {
    let dir = setup("cfg_merge");
    let out = lt_in(&dir, &["fit", "m.rhai", "--config", "a.yaml", "--config", "b.yaml", "--model.lr", "0.25"]);
    assert_eq!(result_line(&out), "epochs=3 lr=0.25 tag=b opt=adam/0.0");
    // the config's ModelCheckpoint (class_path form) replaced the default one
    assert!(dir.join("ck/cfg-epoch=2.ckpt").is_file(), "{}", stderr(&out));
    // LightningCLI's flag spellings, = or a separate value, are --set
    let out =
        lt_in(&dir, &["fit", "m.rhai", "--config", "a.yaml", "--trainer.max_epochs=2", "--model.opt.momentum=0.5"]);
    assert_eq!(result_line(&out), "epochs=2 lr=0.1 tag=a opt=adam/0.5");
}

#[test]
fn print_config_prints_yaml_that_config_reads_back() {
    let dir = setup("cfg_print");
    let args = ["fit", "m.rhai", "--config", "a.yaml", "--config", "b.yaml", "--model.lr", "0.25"];
    let printed = lt_in(&dir, &[&args[..], &["--print_config"]].concat());
    assert!(printed.status.success(), "{}", stderr(&printed));
    let text = stdout(&printed);
    assert!(!dir.join("ck").exists(), "--print_config runs nothing");
    let v = parse(&text, "printed").unwrap();
    assert_eq!(v["seed_everything"], json!(7));
    assert_eq!(v["trainer"]["max_epochs"], json!(3));
    assert_eq!(v["trainer"]["callbacks"][0]["class_path"], json!("lightning.pytorch.callbacks.ModelCheckpoint"));
    assert_eq!(v["model"], json!({"lr": 0.25, "tag": "b", "opt": {"name": "adam", "momentum": 0.0}}));
    // reused alone, it runs the same fit
    let again = setup("cfg_print_again");
    std::fs::write(again.join("c.yaml"), &text).unwrap();
    let direct = lt_in(&dir, &args);
    let reused = lt_in(&again, &["fit", "m.rhai", "--config", "c.yaml"]);
    assert_eq!(result_line(&direct), result_line(&reused));
}

#[test]
fn unknown_keys_and_classes_are_errors_that_name_the_choices() {
    let dir = setup("cfg_bad");
    let bad = |args: &[&str], want: &[&str]| {
        let out = lt_in(&dir, &[&["fit", "m.rhai"][..], args].concat());
        assert!(!out.status.success(), "{args:?} should fail");
        let e = stderr(&out);
        for w in want {
            assert!(e.contains(w), "{args:?}: missing {w:?} in:\n{e}");
        }
        assert!(!e.contains("-- --"), "no clap hint about `--`: {e}");
    };
    bad(&["--model.lrr=1"], &["unknown model hyperparameter 'model.lrr'", "did you mean 'lr'?", "lr, opt, tag"]);
    bad(&["--model.opt.nme=adam"], &["'model.opt.nme'", "did you mean 'name'?"]);
    bad(&["--model.lr=fast"], &["model.lr must be a number (its default in the script is 0.5), got \"fast\""]);
    bad(&["--trainer.max_epoch=1"], &["unknown trainer option 'max_epoch'", "did you mean 'max_epochs'?"]);
    bad(&["--data.batch_size=64"], &["data.batch_size given", "datamodule_hparams()"]);
    std::fs::write(dir.join("top.yaml"), "trainr:\n  max_epochs: 1\n").unwrap();
    bad(&["--config", "top.yaml"], &["unknown key 'trainr'", "did you mean 'trainer'?"]);
    std::fs::write(dir.join("cb.yaml"), "trainer:\n  callbacks:\n    - class_path: my.pkg.Fancy\n").unwrap();
    bad(&["--config", "cb.yaml"], &["unsupported class_path 'my.pkg.Fancy'", "EarlyStopping, ModelCheckpoint"]);
    std::fs::write(
        dir.join("es.yaml"),
        "trainer:\n  callbacks:\n    - class_path: EarlyStopping\n      init_args: {monitr: x}\n",
    )
    .unwrap();
    bad(&["--config", "es.yaml"], &["monitr"]);
    bad(&["--config", "missing.yaml"], &["missing.yaml"]);
}

#[test]
fn data_settings_are_datamodule_hyperparameters_logged_and_checkpointed() {
    let dir = temp_dir("cfg_data");
    let src = r#"
fn hparams() { #{ lr: 0.1 } }
fn datamodule_hparams() { #{ batch_size: 4, n: 8 } }
fn trainer() { #{ max_epochs: 1, enable_progress_bar: false, enable_model_summary: false } }
fn datamodule(h) {
    #{ batch_size: h.batch_size, n: h.n,
       train_dataloader: || data::loader(data::tensor_dataset(torch::ones([this.n, 2]), torch::ones([this.n, 1])), #{ batch_size: this.batch_size }) }
}
fn init(h) { this.save_hyperparameters(); this.w = torch::zeros([2, 1], #{requires_grad: true}); }
fn configure_optimizers() { optim::sgd([this.w], #{lr: this.hparams.lr}) }
fn training_step(b, i) { print(`rows ${b[0].shape[0]}`); (b[0].matmul(this.w) - b[1]).square().mean() }
"#;
    std::fs::write(dir.join("m.rhai"), src).unwrap();
    let out = lt_in(&dir, &["fit", "m.rhai", "--data.batch_size=2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).matches("rows 2").count(), 4, "{}", stdout(&out));
    // hparams.yaml has the module's and the DataModule's, as Lightning logs them
    let hp = parse(&std::fs::read_to_string(dir.join("lightning_logs/version_0/hparams.yaml")).unwrap(), "hp").unwrap();
    assert_eq!(hp, json!({"lr": 0.1, "batch_size": 2, "n": 8}));
    let ck =
        std::fs::read_dir(dir.join("lightning_logs/version_0/checkpoints")).unwrap().flatten().next().unwrap().path();
    let meta = lt::checkpoint::Checkpoint::read_meta(&ck).unwrap();
    assert_eq!(meta["datamodule_hyper_parameters"], json!({"batch_size": 2, "n": 8}));
    assert_eq!(meta["hyper_parameters"], json!({"lr": 0.1}));
    let bad = lt_in(&dir, &["fit", "m.rhai", "--data.batch_sise=2"]);
    assert!(stderr(&bad).contains("did you mean 'batch_size'?"), "{}", stderr(&bad));
}

#[test]
fn yaml_is_read_as_yaml_1_2() {
    let v = parse(
        "trainer:\n  max_epochs: 3\n  precision: bf16-mixed\nmodel:\n  lr: 1e-3\n  name: 'x'\n  on: yes\n  hidden: [8, 16]\n  none: ~\n",
        "t",
    )
    .unwrap();
    assert_eq!(
        v,
        json!({"trainer": {"max_epochs": 3, "precision": "bf16-mixed"},
               "model": {"lr": 0.001, "name": "x", "on": "yes", "hidden": [8, 16], "none": null}})
    );
    assert_eq!(parse("", "t").unwrap(), Value::Null);
    assert_eq!(parse("a: &x [1, 2]\nb: *x\n", "t").unwrap(), json!({"a": [1, 2], "b": [1, 2]}));
    assert_eq!(parse("a: !!str 12\nb: 1.0e-05\n", "t").unwrap(), json!({"a": "12", "b": 1.0e-5}));
}

#[test]
fn hostile_yaml_is_refused_quickly() {
    // billion laughs: 10^9 values once expanded
    let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        let refs = vec![format!("*a{p}"); 10].join(", ");
        laughs.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let e = parse(&laughs, "t").unwrap_err();
    assert!(e.contains("billion laughs"), "{e}");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse(&deep, "t").is_err());
    let deep_block: String = (0..200).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
    assert!(parse(&deep_block, "t").unwrap_err().contains("deeper than"));
    assert!(parse("a: !!python/object:os.system x\n", "t").unwrap_err().contains("tags are not supported"));
    assert!(parse("a: 1\na: 2\n", "t").unwrap_err().contains("appears twice"));
    assert!(parse("a: 1\n---\nb: 2\n", "t").unwrap_err().contains("more than one"));
    assert!(parse("? [1]\n: 2\n", "t").unwrap_err().contains("plain words"));
    assert!(parse("a: *nope\n", "t").is_err());
    // a long string aliased many times is refused as well: the budget counts bytes
    let long = format!("s: &s {}\nl: [{}]\n", "y".repeat(1 << 20), vec!["*s"; 100].join(", "));
    assert!(parse(&long, "t").unwrap_err().contains("billion laughs"));
}
