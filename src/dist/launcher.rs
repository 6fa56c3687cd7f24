//! The local launcher behind `--devices N --strategy ddp`: it re-runs this same `lt` command line
//! as N worker processes with torchrun's environment (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE,
//! LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK) plus the marker `LT_DIST_WORKER=1`, and watches them.
//! A process that already has RANK/WORLD_SIZE (a worker, or a process started by torchrun) never
//! launches. When a worker fails, the others are stopped (SIGTERM, then SIGKILL after a grace
//! period) and the launcher reports which rank failed and how; SIGINT/SIGTERM to the launcher
//! stops every worker. Workers die with the launcher (PR_SET_PDEATHSIG) even if it is SIGKILLed.
use super::{DistEnv, DistError, Result};
use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// Marker in a worker's environment: never launch from inside a worker.
pub const WORKER_MARKER: &str = "LT_DIST_WORKER";

/// How long stopped workers get between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct LaunchConfig {
    /// Processes on this node.
    pub devices: usize,
    pub num_nodes: usize,
    pub node_rank: usize,
    pub master_addr: String,
    /// None: a free port on a single node, 29500 (torchrun's default) across nodes.
    pub master_port: Option<u16>,
}

impl LaunchConfig {
    pub fn world_size(&self) -> usize {
        self.devices.saturating_mul(self.num_nodes)
    }

    fn check(&self) -> Result<()> {
        if self.devices == 0 || self.num_nodes == 0 {
            return Err(DistError("--devices and --num-nodes must be at least 1".into()));
        }
        if self.node_rank >= self.num_nodes {
            return Err(DistError(format!(
                "--node-rank {} must be below --num-nodes {}",
                self.node_rank, self.num_nodes
            )));
        }
        Ok(())
    }
}

/// What this process is in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// One process, no group.
    Single,
    /// A worker (started by this launcher or by torchrun): join the group `env` describes.
    Worker(DistEnv),
    /// Start the workers and wait for them.
    Launcher,
}

/// Decides the role from the environment and the config: a process with RANK/WORLD_SIZE is a
/// worker; so is a task `srun` started in a job of more than one task ([`super::slurm`], checked
/// against --devices and --num-nodes); otherwise a run of more than one process launches;
/// otherwise it is single.
pub fn role(cfg: &LaunchConfig) -> Result<Role> {
    if let Some(env) = DistEnv::from_env()? {
        return Ok(Role::Worker(env));
    }
    if let Some(s) = super::slurm::SlurmEnv::from_env()? {
        s.validate(cfg.devices, cfg.num_nodes)?;
        return Ok(Role::Worker(s.env));
    }
    if std::env::var_os(WORKER_MARKER).is_some() {
        return Err(DistError(format!(
            "{WORKER_MARKER} is set but RANK/WORLD_SIZE are not: refusing to launch workers from a worker"
        )));
    }
    cfg.check()?;
    Ok(if cfg.world_size() > 1 { Role::Launcher } else { Role::Single })
}

/// A TCP port that is free on 127.0.0.1 right now.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| DistError(format!("cannot find a free port: {e}")))?;
    let port = l.local_addr().map_err(|e| DistError(format!("cannot find a free port: {e}")))?.port();
    Ok(port)
}

/// The environment of each local worker.
pub fn worker_envs(cfg: &LaunchConfig) -> Result<Vec<DistEnv>> {
    cfg.check()?;
    let port = match cfg.master_port {
        Some(p) => p,
        None if cfg.num_nodes == 1 => free_port()?,
        None => 29500,
    };
    Ok((0..cfg.devices)
        .map(|local| DistEnv {
            master_addr: cfg.master_addr.clone(),
            master_port: port,
            rank: cfg.node_rank * cfg.devices + local,
            world_size: cfg.world_size(),
            local_rank: local,
            local_world_size: cfg.devices,
            node_rank: cfg.node_rank,
        })
        .collect())
}

/// Signal that asked the launcher to stop (0: none).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Whether a SIGINT/SIGTERM asked this launcher to stop (its exit code should then be 130).
pub fn interrupted() -> bool {
    STOP_SIGNAL.load(Ordering::SeqCst) != 0
}

extern "C" fn on_signal(sig: libc::c_int) {
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
}

fn install_signal_handlers() {
    // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
    unsafe {
        let handler: extern "C" fn(libc::c_int) = on_signal;
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => format!("was killed by signal {s} ({})", signal_name(s)),
        _ => "ended".to_string(),
    }
}

fn signal_name(s: i32) -> &'static str {
    match s {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        _ => "signal",
    }
}

struct Worker {
    rank: usize,
    child: Child,
    status: Option<ExitStatus>,
}

/// Starts `program args…` once per local rank with the worker environment, waits for all of them,
/// and returns Ok when every worker exited with 0. On the first failure (or a stop signal), stops
/// the rest and returns an error naming the rank. `program` is usually `std::env::current_exe()`
/// and `args` this process's own arguments.
pub fn launch(cfg: &LaunchConfig, program: &Path, args: &[OsString]) -> Result<()> {
    let envs = worker_envs(cfg)?;
    install_signal_handlers();
    let mut workers: Vec<Worker> = Vec::with_capacity(envs.len());
    for env in &envs {
        let mut cmd = Command::new(program);
        cmd.args(args).env(WORKER_MARKER, "1");
        for (k, v) in env.vars() {
            cmd.env(k, v);
        }
        // SAFETY: prctl is async-signal-safe; between fork and exec the child only calls it.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(child) => workers.push(Worker { rank: env.rank, child, status: None }),
            Err(e) => {
                stop_all(&mut workers);
                return Err(DistError(format!("cannot start worker rank {}: {e}", env.rank)));
            }
        }
    }
    let failure = watch(&mut workers);
    match failure {
        None => Ok(()),
        Some(msg) => {
            stop_all(&mut workers);
            Err(DistError(msg))
        }
    }
}

/// Polls the workers until all succeeded (None) or one failed / a stop signal came (the message).
fn watch(workers: &mut [Worker]) -> Option<String> {
    loop {
        let sig = STOP_SIGNAL.load(Ordering::SeqCst);
        if sig != 0 {
            return Some(format!("interrupted ({}): stopping all {} workers", signal_name(sig), workers.len()));
        }
        let mut running = 0;
        let mut failed: Option<(usize, String)> = None;
        for w in workers.iter_mut().filter(|w| w.status.is_none()) {
            match w.child.try_wait() {
                Ok(Some(st)) => {
                    w.status = Some(st);
                    if !st.success() && failed.is_none() {
                        failed = Some((w.rank, describe(st)));
                    }
                }
                Ok(None) => running += 1,
                Err(e) => {
                    if failed.is_none() {
                        failed = Some((w.rank, format!("cannot be watched: {e}")));
                    }
                }
            }
        }
        if let Some((rank, how)) = failed {
            let others = workers.iter().filter(|w| w.status.is_none()).count();
            return Some(format!("worker rank {rank} {how}; stopping the other {others} running worker(s)"));
        }
        if running == 0 {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM to every running worker, SIGKILL to those still running after the grace period; reaps all.
fn stop_all(workers: &mut [Worker]) {
    for w in workers.iter_mut() {
        if w.status.is_none() {
            if let Ok(Some(st)) = w.child.try_wait() {
                w.status = Some(st);
                continue;
            }
            if let Ok(pid) = i32::try_from(w.child.id()) {
                // SAFETY: the pid is our own unreaped child, so it cannot have been reused.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
    }
    let deadline = Instant::now() + GRACE;
    loop {
        let mut running = 0;
        for w in workers.iter_mut() {
            if w.status.is_none() {
                match w.child.try_wait() {
                    Ok(Some(st)) => w.status = Some(st),
                    Ok(None) => running += 1,
                    Err(_) => w.status = Some(ExitStatus::default()),
                }
            }
        }
        if running == 0 {
            return;
        }
        if Instant::now() >= deadline {
            for w in workers.iter_mut().filter(|w| w.status.is_none()) {
                let _ = w.child.kill();
                if let Ok(st) = w.child.wait() {
                    w.status = Some(st);
                }
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
