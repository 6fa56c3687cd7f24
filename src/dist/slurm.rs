//! A process started by SLURM's `srun`: its place in the run read from SLURM's variables, as
//! Lightning's `SLURMEnvironment` reads them (lightning_fabric/plugins/environments/slurm.py):
//!
//! - detected when `SLURM_NTASKS` is set (to more than one task: a one-task job is no group, and
//!   lt may launch its own workers in it) and the job is not an interactive one
//!   (`SLURM_JOB_NAME` `bash` or `interactive`: then SLURM only allocated the resources);
//! - world size `SLURM_NTASKS`, global rank `SLURM_PROCID`, local rank `SLURM_LOCALID`, node rank
//!   `SLURM_NODEID`;
//! - the main address: `MASTER_ADDR`, else the first host of `SLURM_NODELIST` (`node[001-004,007]`
//!   → `node001`); the main port: `MASTER_PORT`, else 15000 + the last four digits of
//!   `SLURM_JOB_ID` (12910 without a job id), so every task of a job agrees on it without talking;
//! - the checks Lightning makes: more than one task needs `--ntasks-per-node`, which must equal
//!   `--devices`, and `SLURM_NNODES` must equal `--num-nodes`; lt also checks that
//!   `SLURM_NTASKS` = devices × nodes.
//!
//! Pure functions of a variable lookup, so every rule is unit-tested without a cluster.
use super::{DistEnv, DistError, Result};

/// The first host of a SLURM node list: `host0 host1`, `host0,host1`, `node[5-9]`,
/// `node[001-004,007],gpu[1-2]` (→ `host0`, `host0`, `node5`, `node001`), as Lightning's
/// `resolve_root_node_address`.
pub fn root_node(nodelist: &str) -> String {
    // the first entry: up to a space, or a comma outside brackets
    let mut depth = 0usize;
    let mut end = nodelist.len();
    for (i, c) in nodelist.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ' ' => {
                end = i;
                break;
            }
            ',' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let first = &nodelist[..end];
    // each bracket's first number: `node[001-004,007]` → `node001`
    let mut out = String::new();
    let mut rest = first;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let inner = &rest[open + 1..];
        let close = inner.find(']').unwrap_or(inner.len());
        let range = &inner[..close];
        out.push_str(range.split([',', '-']).next().unwrap_or(""));
        rest = inner.get(close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// The rendezvous port: `MASTER_PORT` when set, else 15000 + the last four digits of the job id,
/// else 12910 (Lightning's rule).
pub fn main_port(job_id: Option<&str>, master_port: Option<&str>) -> Result<u16> {
    if let Some(p) = master_port {
        return p
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| DistError(format!("MASTER_PORT={p:?} is not a TCP port")));
    }
    let Some(id) = job_id else { return Ok(12910) };
    let id = id.trim();
    let tail = &id[id.len().saturating_sub(4)..];
    let n: u16 = tail.parse().map_err(|_| {
        DistError(format!("SLURM_JOB_ID={id:?} does not end in digits, so no port derives from it: set MASTER_PORT"))
    })?;
    Ok(15000 + n)
}

/// `--ntasks-per-node` as SLURM exports it: `2`, or `2(x3)` for three nodes of two tasks each.
pub fn tasks_per_node(v: &str) -> Result<usize> {
    let head = v.split(['(', ',']).next().unwrap_or("");
    let n: usize = head.trim().parse().map_err(|_| DistError(format!("SLURM_NTASKS_PER_NODE={v:?} is not a count")))?;
    if v.contains(',') {
        return Err(DistError(format!(
            "SLURM_NTASKS_PER_NODE={v:?}: nodes with different task counts are not supported (every node runs --devices processes)"
        )));
    }
    Ok(n)
}

/// What SLURM says about this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmEnv {
    pub env: DistEnv,
    /// `SLURM_NTASKS_PER_NODE`, `SLURM_NNODES` when set.
    pub ntasks_per_node: Option<usize>,
    pub nnodes: Option<usize>,
}

impl SlurmEnv {
    /// Reads SLURM's variables through `get`; None when this is not a task started by `srun` (no
    /// `SLURM_NTASKS`, or an interactive job). An error names the variable that is missing or wrong.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<SlurmEnv>> {
        let Some(ntasks) = get("SLURM_NTASKS") else { return Ok(None) };
        if matches!(get("SLURM_JOB_NAME").as_deref(), Some("bash" | "interactive")) {
            return Ok(None);
        }
        let num = |name: &str| -> Result<usize> {
            let v = get(name).ok_or_else(|| {
                DistError(format!("SLURM_NTASKS is set but {name} is not: start lt with srun (`srun lt fit …`)"))
            })?;
            v.trim().parse::<usize>().map_err(|_| DistError(format!("{name}={v:?} is not a non-negative integer")))
        };
        let world_size: usize =
            ntasks.trim().parse().map_err(|_| DistError(format!("SLURM_NTASKS={ntasks:?} is not a count")))?;
        if world_size <= 1 {
            // a one-task job is no group (lt may launch its own workers inside it)
            return Ok(None);
        }
        let rank = num("SLURM_PROCID")?;
        if rank >= world_size {
            return Err(DistError(format!("SLURM_PROCID={rank} must be below SLURM_NTASKS={world_size}")));
        }
        let ntasks_per_node = get("SLURM_NTASKS_PER_NODE").map(|v| tasks_per_node(&v)).transpose()?;
        if ntasks_per_node.is_none() {
            return Err(DistError(format!(
                "SLURM_NTASKS={world_size} without SLURM_NTASKS_PER_NODE: use `--ntasks-per-node` (with `--nodes`) in the job script rather than `--ntasks`, as Lightning requires"
            )));
        }
        let nnodes = get("SLURM_NNODES")
            .map(|v| v.trim().parse::<usize>().map_err(|_| DistError(format!("SLURM_NNODES={v:?} is not a count"))));
        let nnodes = nnodes.transpose()?;
        let local_rank = num("SLURM_LOCALID")?;
        let node_rank = num("SLURM_NODEID")?;
        let master_addr = match get("MASTER_ADDR").filter(|s| !s.trim().is_empty()) {
            Some(a) => a.trim().to_string(),
            None => root_node(&get("SLURM_NODELIST").unwrap_or_else(|| "127.0.0.1".into())),
        };
        if master_addr.is_empty() {
            return Err(DistError("SLURM_NODELIST names no host: set MASTER_ADDR".into()));
        }
        let master_port = main_port(get("SLURM_JOB_ID").as_deref(), get("MASTER_PORT").as_deref())?;
        let local_world_size = ntasks_per_node.unwrap_or(world_size);
        Ok(Some(SlurmEnv {
            env: DistEnv { master_addr, master_port, rank, world_size, local_rank, local_world_size, node_rank },
            ntasks_per_node,
            nnodes,
        }))
    }

    /// [`SlurmEnv::from_lookup`] on this process's environment.
    pub fn from_env() -> Result<Option<SlurmEnv>> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Lightning's `validate_settings`, and the task count against devices × nodes.
    pub fn validate(&self, devices: usize, num_nodes: usize) -> Result<()> {
        if let Some(n) = self.ntasks_per_node.filter(|n| *n != devices) {
            return Err(DistError(format!(
                "--devices {devices} but SLURM runs {n} tasks per node (--ntasks-per-node={n}): set --devices {n}"
            )));
        }
        if let Some(n) = self.nnodes.filter(|n| *n != num_nodes) {
            return Err(DistError(format!(
                "--num-nodes {num_nodes} but the SLURM job has {n} nodes (--nodes={n}): set --num-nodes {n}"
            )));
        }
        let want = devices.saturating_mul(num_nodes);
        if self.env.world_size != want {
            return Err(DistError(format!(
                "SLURM runs {} tasks but --devices {devices} × --num-nodes {num_nodes} = {want}",
                self.env.world_size
            )));
        }
        Ok(())
    }
}
