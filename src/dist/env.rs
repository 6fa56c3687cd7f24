//! The torchrun-compatible environment that tells a process its place in a run: MASTER_ADDR,
//! MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK (and LOCAL_WORLD_SIZE, GROUP_RANK when set).
use super::{DistError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    pub master_addr: String,
    pub master_port: u16,
    /// Global rank, 0..world_size.
    pub rank: usize,
    pub world_size: usize,
    /// Rank on this node (selects the CUDA device under NCCL).
    pub local_rank: usize,
    pub local_world_size: usize,
    /// Rank of this node (torchrun's GROUP_RANK), 0 when not set.
    pub node_rank: usize,
}

impl DistEnv {
    /// Reads the environment. `Ok(None)` when RANK and WORLD_SIZE are both absent (not a
    /// distributed worker); an error names the variable that is missing or malformed.
    pub fn from_env() -> Result<Option<DistEnv>> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`DistEnv::from_env`], reading variables through `get` (for tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<DistEnv>> {
        let (rank, world) = (get("RANK"), get("WORLD_SIZE"));
        if rank.is_none() && world.is_none() {
            return Ok(None);
        }
        let num = |name: &str, v: Option<String>| -> Result<usize> {
            let v = v.ok_or_else(|| {
                DistError(format!(
                    "{name} is not set (a distributed worker needs RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT)"
                ))
            })?;
            v.trim().parse::<usize>().map_err(|_| DistError(format!("{name}={v:?} is not a non-negative integer")))
        };
        let rank = num("RANK", rank)?;
        let world_size = num("WORLD_SIZE", world)?;
        if world_size == 0 || rank >= world_size {
            return Err(DistError(format!("RANK={rank} must be below WORLD_SIZE={world_size}")));
        }
        let master_addr = get("MASTER_ADDR")
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| DistError("MASTER_ADDR is not set".into()))?;
        let port = num("MASTER_PORT", get("MASTER_PORT"))?;
        let master_port = u16::try_from(port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| DistError(format!("MASTER_PORT={port} is not a TCP port")))?;
        let local_rank = match get("LOCAL_RANK") {
            Some(v) => num("LOCAL_RANK", Some(v))?,
            None => rank,
        };
        let local_world_size = match get("LOCAL_WORLD_SIZE") {
            Some(v) => num("LOCAL_WORLD_SIZE", Some(v))?,
            None => world_size,
        };
        let node_rank = match get("GROUP_RANK") {
            Some(v) => num("GROUP_RANK", Some(v))?,
            None => 0,
        };
        Ok(Some(DistEnv {
            master_addr: master_addr.trim().to_string(),
            master_port,
            rank,
            world_size,
            local_rank,
            local_world_size,
            node_rank,
        }))
    }

    /// The variables to give a worker process (what torchrun sets).
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("MASTER_ADDR", self.master_addr.clone()),
            ("MASTER_PORT", self.master_port.to_string()),
            ("RANK", self.rank.to_string()),
            ("WORLD_SIZE", self.world_size.to_string()),
            ("LOCAL_RANK", self.local_rank.to_string()),
            ("LOCAL_WORLD_SIZE", self.local_world_size.to_string()),
            ("GROUP_RANK", self.node_rank.to_string()),
        ]
    }
}
