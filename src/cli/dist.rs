//! The distributed flags shared by `run` / `fit` / `validate` / `test` (flattened into each with
//! `#[command(flatten)]`), the launch step every such command starts with, and the hidden
//! `lt dist-selftest` (checks and the all-reduce benchmark, used by the tests and tools/).
use crate::dist::launcher::{self, LaunchConfig, Role};
use crate::dist::{Backend, DistEnv, ProcessGroup};
use clap::Args;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct DistArgs {
    /// Processes (devices) per node; more than one runs data-parallel workers.
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// auto | ddp | single: `ddp` (or `auto` with more than one device) launches workers.
    #[arg(long, default_value = "auto")]
    pub strategy: String,
    /// Nodes taking part (run `lt` on each with its --node-rank).
    #[arg(long, default_value_t = 1)]
    pub num_nodes: usize,
    /// This node's rank, 0..num-nodes.
    #[arg(long, default_value_t = 0)]
    pub node_rank: usize,
    /// Address of the node hosting rank 0.
    #[arg(long, default_value = "127.0.0.1")]
    pub master_addr: String,
    /// Port of rank 0's rendezvous store (default: a free port on one node, 29500 across nodes).
    #[arg(long)]
    pub master_port: Option<u16>,
    /// Seconds the rendezvous and each collective may take before the run fails.
    #[arg(long, default_value_t = 1800.0)]
    pub dist_timeout: f64,
}

impl DistArgs {
    pub fn launch_config(&self) -> LaunchConfig {
        LaunchConfig {
            devices: self.devices,
            num_nodes: self.num_nodes,
            node_rank: self.node_rank,
            master_addr: self.master_addr.clone(),
            master_port: self.master_port,
        }
    }

    pub fn timeout(&self) -> Duration {
        if self.dist_timeout.is_finite() && self.dist_timeout > 0.0 {
            Duration::from_secs_f64(self.dist_timeout.min(1e9))
        } else {
            crate::dist::process_group::DEFAULT_TIMEOUT
        }
    }

    /// What this process is: single, a worker (env from the launcher or torchrun), or the
    /// launcher. An unknown strategy or inconsistent flags are errors.
    pub fn role(&self) -> Result<Role, String> {
        match self.strategy.as_str() {
            "auto" => launcher::role(&self.launch_config()).map_err(String::from),
            // Lightning runs a one-process group for `devices=1, strategy="ddp"`: so does lt
            // (NCCL on CUDA, Gloo on CPU), so a DDP setup is checked before it is scaled out
            "ddp" => match launcher::role(&self.launch_config()).map_err(String::from)? {
                Role::Single => Ok(Role::Launcher),
                other => Ok(other),
            },
            "single" | "single_device" => {
                if self.devices * self.num_nodes > 1 {
                    Err(format!(
                        "--strategy {} runs one process; drop --devices/--num-nodes or use --strategy ddp",
                        self.strategy
                    ))
                } else {
                    Ok(Role::Single)
                }
            }
            other => Err(format!("unknown --strategy '{other}' (expected auto, ddp or single)")),
        }
    }
}

/// The step every distributed-capable command starts with: as the launcher, runs the workers (this
/// same command line) and returns their outcome; otherwise returns None and the command carries on
/// (single process, or a worker that joins its group with `worker_env`).
pub fn launch_if_needed(args: &DistArgs) -> Option<ExitCode> {
    match args.role() {
        Err(e) => {
            errorln!("{e}");
            Some(ExitCode::from(2))
        }
        Ok(Role::Launcher) => {
            let program = match std::env::current_exe() {
                Ok(p) => p,
                Err(e) => {
                    errorln!("cannot find the lt executable to start workers: {e}");
                    return Some(ExitCode::FAILURE);
                }
            };
            let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
            match launcher::launch(&args.launch_config(), &program, &argv) {
                Ok(()) => Some(ExitCode::SUCCESS),
                Err(e) => {
                    errorln!("{e}");
                    Some(if launcher::interrupted() { ExitCode::from(130) } else { ExitCode::FAILURE })
                }
            }
        }
        Ok(_) => None,
    }
}

/// The worker's environment when this process is one (None: single process).
pub fn worker_env(args: &DistArgs) -> Result<Option<DistEnv>, String> {
    match args.role()? {
        Role::Worker(env) => Ok(Some(env)),
        _ => Ok(None),
    }
}

/// Options of the hidden `lt dist-selftest`.
#[derive(Args, Debug, Clone)]
pub struct SelftestArgs {
    /// gloo (CPU tensors) or nccl (CUDA tensors, device = LOCAL_RANK).
    #[arg(long, default_value = "gloo")]
    pub backend: String,
    /// Instead of the checks, time all-reduces of this many float32 values.
    #[arg(long)]
    pub bench: Option<i64>,
    /// Timed iterations of --bench.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Test hook: this rank kills itself (SIGKILL) after joining, while the others keep reducing.
    #[arg(long)]
    pub die_rank: Option<usize>,
    #[command(flatten)]
    pub dist: DistArgs,
}

pub fn selftest(args: &SelftestArgs) -> ExitCode {
    if let Some(code) = launch_if_needed(&args.dist) {
        return code;
    }
    match selftest_worker(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let rank = std::env::var("RANK").unwrap_or_else(|_| "0".into());
            errorln!("rank {rank}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn selftest_worker(args: &SelftestArgs) -> Result<(), String> {
    let backend = Backend::parse(&args.backend)?;
    let env = match worker_env(&args.dist)? {
        Some(env) => env,
        // one process: a group of one on a free local port
        None => DistEnv {
            master_addr: "127.0.0.1".into(),
            master_port: launcher::free_port()?,
            rank: 0,
            world_size: 1,
            local_rank: 0,
            local_world_size: 1,
            node_rank: 0,
        },
    };
    let device = match backend {
        Backend::Gloo => tch::Device::Cpu,
        Backend::Nccl => tch::Device::Cuda(env.local_rank),
    };
    let pg = ProcessGroup::new(backend, &env, args.dist.timeout())?;
    let rank = pg.rank();
    if let Some(die) = args.die_rank {
        if die == rank {
            errln!("rank {rank}: killing myself (--die-rank)");
            // SAFETY: raising a signal on our own process.
            unsafe { libc::raise(libc::SIGKILL) };
        }
        // the survivors keep reducing until the dead peer makes a collective fail
        let mut t = [tch::Tensor::ones([4], (tch::Kind::Float, device))];
        loop {
            pg.all_reduce(&mut t, crate::dist::ReduceOp::Sum)?;
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if let Some(numel) = args.bench {
        let f = crate::dist::selftest::bench_all_reduce(&pg, device, numel.max(1), args.iters)?;
        if rank == 0 {
            outln!(
                "all_reduce {} float32 ({:.0} MB), {} processes, {}: median {:.1} ms, min {:.1} ms over {} iterations",
                f.numel,
                f.numel as f64 * 4.0 / 1e6,
                f.world_size,
                backend.name(),
                f.median_ms,
                f.min_ms,
                f.iters
            );
        }
        return Ok(());
    }
    crate::dist::selftest::run_checks(&pg, device, &mut |line| outln!("rank {rank}: {line}"))?;
    outln!("rank {rank}: selftest passed ({} of {}, {})", rank, pg.world_size(), backend.name());
    Ok(())
}
