//! The Trainer's per-step overhead, DESIGN.md's peer task: an MLP 784-H-10 trained with Adam on
//! synthetic data, `this.log` every step, 1 thread. lt runs a real module script through the
//! Trainer (data loader, hooks, logging); the floor is the same model and optimizer as a plain tch
//! loop. Fixed costs (start-up, sanity check) are removed by timing two fits of different length.
use crate::cli::train::{run_stage, Stage};
use crate::script::runner::Script;
use std::path::Path;
use std::time::Instant;
use tch::nn::{Module, OptimizerConfig};

pub struct TrainerFigures {
    pub hidden: i64,
    pub batch: i64,
    pub floor_ms: f64,
    pub lt_ms: f64,
}

/// The benchmark model as a module script.
pub fn script_source(hidden: i64, batch: i64) -> String {
    format!(
        r#"
fn trainer() {{ #{{ max_epochs: 1000, enable_progress_bar: false, enable_model_summary: false, logger: false, enable_checkpointing: false, num_sanity_val_steps: 0 }} }}
fn init(h) {{
    this.l1 = nn::linear(784, {hidden});
    this.l2 = nn::linear({hidden}, 10);
}}
fn train_dataloader() {{
    torch::manual_seed(0);
    let x = torch::randn([{n}, 784]);
    let y = torch::randint(0, 10, [{n}]);
    data::loader(data::tensor_dataset(x, y), #{{ batch_size: {batch}, shuffle: true, seed: 0 }})
}}
fn training_step(batch, i) {{
    let loss = F::cross_entropy(this.l2.forward(this.l1.forward(batch[0]).relu()), batch[1]);
    this.log("train_loss", loss);
    loss
}}
fn configure_optimizers() {{ optim::adam(this.parameters(), #{{ lr: 1e-3 }}) }}
"#,
        n = batch * 50
    )
}

fn lt_fit_seconds(hidden: i64, batch: i64, steps: usize) -> Result<f64, String> {
    let script =
        Script::from_source(Path::new("bench_mlp.rhai"), script_source(hidden, batch)).map_err(|e| e.to_string())?;
    let t = Instant::now();
    run_stage(Stage::Fit, script, &[format!("trainer.max_steps={steps}")], None, None)?;
    Ok(t.elapsed().as_secs_f64())
}

fn floor_seconds(hidden: i64, batch: i64, steps: usize) -> Result<f64, String> {
    tch::manual_seed(0);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let root = vs.root();
    let net = tch::nn::seq()
        .add(tch::nn::linear(&root / "l1", 784, hidden, Default::default()))
        .add_fn(|x| x.relu())
        .add(tch::nn::linear(&root / "l2", hidden, 10, Default::default()));
    let mut opt = tch::nn::Adam::default().build(&vs, 1e-3).map_err(|e| e.to_string())?;
    let n = batch * 50;
    let x = tch::Tensor::randn([n, 784], (tch::Kind::Float, tch::Device::Cpu));
    let y = tch::Tensor::randint(10, [n], (tch::Kind::Int64, tch::Device::Cpu));
    let t = Instant::now();
    let mut logged = 0.0;
    for s in 0..steps {
        if s % 50 == 0 {
            // reshuffle once per epoch, as the DataLoader does
            let _ = tch::Tensor::randperm(n, (tch::Kind::Int64, tch::Device::Cpu));
        }
        let idx = tch::Tensor::arange_start(
            (s as i64 % 50) * batch,
            (s as i64 % 50 + 1) * batch,
            (tch::Kind::Int64, tch::Device::Cpu),
        );
        let xb = x.index_select(0, &idx);
        let yb = y.index_select(0, &idx);
        let loss = net.forward(&xb).cross_entropy_for_logits(&yb);
        opt.backward_step(&loss);
        logged += f64::try_from(&loss).map_err(|e| e.to_string())?;
    }
    std::hint::black_box(logged);
    Ok(t.elapsed().as_secs_f64())
}

/// Per-step milliseconds of the floor and of lt, for one configuration.
pub fn run(hidden: i64, batch: i64, steps: usize) -> Result<TrainerFigures, String> {
    tch::set_num_threads(1);
    let warm = steps / 10;
    let floor = (floor_seconds(hidden, batch, steps + warm)? - floor_seconds(hidden, batch, warm)?) / steps as f64;
    let lt = (lt_fit_seconds(hidden, batch, steps + warm)? - lt_fit_seconds(hidden, batch, warm)?) / steps as f64;
    Ok(TrainerFigures { hidden, batch, floor_ms: floor * 1e3, lt_ms: lt * 1e3 })
}

/// Start-up: wall time of `lt fit` with 1 step (process start → first step done → exit), and peak
/// RSS of that process.
pub fn startup(lt_bin: &Path) -> Result<(f64, f64), String> {
    let dir = std::env::temp_dir().join(format!("lt-bench-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("mlp.rhai");
    std::fs::write(&path, script_source(256, 64)).map_err(|e| e.to_string())?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        let out = std::process::Command::new(lt_bin)
            .args(["fit", path.to_string_lossy().as_ref(), "--set", "trainer.max_steps=1"])
            .env("OMP_NUM_THREADS", "1")
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).to_string());
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    // SAFETY: getrusage only writes into the struct we pass.
    let rss_mb = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru.ru_maxrss as f64 / 1024.0
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok((best, rss_mb))
}

/// Figures of raw PyTorch and Lightning from `tools/bench_trainer_torch.py`.
pub struct PeerFigures {
    pub raw: Vec<f64>,
    pub lightning: Vec<f64>,
    pub raw_start: (f64, f64),
    pub lightning_start: (f64, f64),
}

/// Runs the Python peer benchmark with the torch that lt itself uses (the provisioned wheel).
pub fn python_peers() -> Result<PeerFigures, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/bench_trainer_torch.py");
    if !script.exists() {
        return Err(format!("{} not found", script.display()));
    }
    // LT_LIBTORCH_LIB = <site>/torch/lib: the wheel's site folder is two levels up.
    let site = Path::new(env!("LT_LIBTORCH_LIB"))
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let out = std::process::Command::new("python3")
        .arg(&script)
        .env("PYTHONPATH", &site)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("#PEERS ")).ok_or_else(|| {
        let err = String::from_utf8_lossy(&out.stderr);
        format!("the Python benchmark gave no figures: {}", err.lines().last().unwrap_or(""))
    })?;
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let nums = |k: &str| -> Vec<f64> {
        v[k].as_array().map(|a| a.iter().filter_map(|x| x.as_f64()).collect()).unwrap_or_default()
    };
    let pair = |k: &str| -> (f64, f64) { (v[k][0].as_f64().unwrap_or(f64::NAN), v[k][1].as_f64().unwrap_or(f64::NAN)) };
    let (raw, lightning) = (nums("raw"), nums("lightning"));
    if raw.len() < 2 || lightning.len() < 2 {
        return Err("the Python benchmark's figures are incomplete".into());
    }
    Ok(PeerFigures { raw, lightning, raw_start: pair("raw_start"), lightning_start: pair("lightning_start") })
}
