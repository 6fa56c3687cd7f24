//! A c10d process group (TCPStore rendezvous + ProcessGroupGloo / ProcessGroupNCCL) behind a safe,
//! blocking API on `tch::Tensor`s. Every collective waits for completion (bounded by the group's
//! timeout) and turns any C++ exception — a peer that died, a timeout, a shape mismatch — into a
//! [`DistError`].
use super::{DistEnv, DistError, Result};
use std::ffi::{c_void, CString};
use std::os::raw::c_char;
use std::time::Duration;

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn lt_dist_new(
        backend: *const c_char,
        host: *const c_char,
        port: i32,
        rank: i32,
        size: i32,
        timeout_ms: i64,
        nccl_lib: *const c_char,
        out: *mut *mut c_void,
        buf: *mut u8,
        len: usize,
    ) -> i32;
    fn lt_dist_free(handle: *mut c_void);
    fn lt_dist_all_reduce(
        handle: *mut c_void,
        ts: *const *mut c_void,
        n: usize,
        op: i32,
        buf: *mut u8,
        len: usize,
    ) -> i32;
    fn lt_dist_broadcast(
        handle: *mut c_void,
        ts: *const *mut c_void,
        n: usize,
        root: i32,
        buf: *mut u8,
        len: usize,
    ) -> i32;
    fn lt_dist_all_gather(
        handle: *mut c_void,
        input: *const c_void,
        outs: *const *mut c_void,
        n: usize,
        buf: *mut u8,
        len: usize,
    ) -> i32;
    fn lt_dist_barrier(handle: *mut c_void, buf: *mut u8, len: usize) -> i32;
    fn lt_dist_set_grad(param: *const c_void, grad: *const c_void, buf: *mut u8, len: usize) -> i32;
}

const ERR_LEN: usize = 4096;

/// Runs one shim call with an error buffer; a non-zero return becomes a [`DistError`].
fn call(what: &str, f: impl FnOnce(*mut u8, usize) -> i32) -> Result<()> {
    let mut buf = vec![0u8; ERR_LEN];
    if f(buf.as_mut_ptr(), buf.len()) == 0 {
        return Ok(());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let msg = crate::tensor::clean_torch_message(&String::from_utf8_lossy(&buf[..end]));
    Err(DistError(format!("{what}: {msg}")))
}

/// Which c10d backend carries the collectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// CPU tensors (and CUDA tensors through host copies), over TCP.
    Gloo,
    /// CUDA tensors, one GPU per process.
    Nccl,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }

    /// "gloo" or "nccl".
    pub fn parse(s: &str) -> Result<Backend> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gloo" => Ok(Backend::Gloo),
            "nccl" => Ok(Backend::Nccl),
            other => Err(DistError(format!("unknown distributed backend '{other}' (expected gloo or nccl)"))),
        }
    }

    /// The backend Lightning picks for a device: NCCL for CUDA, Gloo otherwise.
    pub fn for_device(device: tch::Device) -> Backend {
        if device.is_cuda() {
            Backend::Nccl
        } else {
            Backend::Gloo
        }
    }

    /// Whether this build of lt carries the NCCL backend (it needs a CUDA libtorch and NCCL's
    /// headers at build time; it is loaded only when used).
    pub fn nccl_built() -> bool {
        nccl_lib().is_some()
    }
}

/// Path of liblt_dist_nccl.so: `LT_NCCL_LIB` at run time, else beside the executable, else where
/// the build put it.
fn nccl_lib() -> Option<String> {
    if let Ok(p) = std::env::var("LT_NCCL_LIB") {
        if !p.is_empty() {
            return Some(p);
        }
    }
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.to_path_buf())) {
        let p = dir.join("liblt_dist_nccl.so");
        if p.exists() {
            return Some(p.to_string_lossy().into_owned());
        }
    }
    option_env!("LT_NCCL_LIB").filter(|p| std::path::Path::new(p).exists()).map(String::from)
}

/// Reduction of [`ProcessGroup::all_reduce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    /// Sum divided by the world size (floating-point tensors only).
    Avg,
    Max,
    Min,
}

impl ReduceOp {
    fn code(self) -> i32 {
        match self {
            ReduceOp::Sum => 0,
            ReduceOp::Avg => 1,
            ReduceOp::Max => 2,
            ReduceOp::Min => 3,
        }
    }
}

/// Largest flat buffer of the coalesced collectives (PyTorch's `_sync_module_states` uses 250 MB).
const COALESCE_CAP_BYTES: usize = 256 * 1024 * 1024;

/// Default timeout of rendezvous and collectives (PyTorch's default for Gloo: 30 minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// One process's membership in a group of `world_size` processes. Dropping it leaves the group.
/// Not `Send`: keep it on the thread that trains.
pub struct ProcessGroup {
    handle: *mut c_void,
    backend: Backend,
    rank: usize,
    world_size: usize,
    local_rank: usize,
    timeout: Duration,
}

impl ProcessGroup {
    /// Joins the group described by `env`: rank 0 hosts the rendezvous store on MASTER_PORT, the
    /// others connect to MASTER_ADDR:MASTER_PORT. Blocks until every rank has joined; fails
    /// (instead of hanging) after `timeout`, which also bounds every later collective.
    pub fn new(backend: Backend, env: &DistEnv, timeout: Duration) -> Result<ProcessGroup> {
        let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX).max(1);
        let rank = i32::try_from(env.rank).map_err(|_| DistError(format!("rank {} is too large", env.rank)))?;
        let size = i32::try_from(env.world_size)
            .map_err(|_| DistError(format!("world size {} is too large", env.world_size)))?;
        let name = CString::new(backend.name()).map_err(|_| DistError("bad backend name".into()))?;
        let host = CString::new(env.master_addr.as_str())
            .map_err(|_| DistError(format!("MASTER_ADDR {:?} contains a NUL byte", env.master_addr)))?;
        let nccl = match backend {
            Backend::Nccl => CString::new(nccl_lib().unwrap_or_default())
                .map_err(|_| DistError("LT_NCCL_LIB contains a NUL byte".into()))?,
            Backend::Gloo => CString::default(),
        };
        let mut handle: *mut c_void = std::ptr::null_mut();
        let what = format!(
            "cannot join the {} process group as rank {} of {} at {}:{}",
            backend.name(),
            env.rank,
            env.world_size,
            env.master_addr,
            env.master_port
        );
        call(&what, |buf, len| {
            // SAFETY: all strings are NUL-terminated and outlive the call; the shim catches every
            // C++ exception and writes the handle only on success.
            unsafe {
                lt_dist_new(
                    name.as_ptr(),
                    host.as_ptr(),
                    i32::from(env.master_port),
                    rank,
                    size,
                    timeout_ms,
                    nccl.as_ptr(),
                    &mut handle,
                    buf,
                    len,
                )
            }
        })?;
        if handle.is_null() {
            return Err(DistError(format!("{what}: no handle returned")));
        }
        Ok(ProcessGroup {
            handle,
            backend,
            rank: env.rank,
            world_size: env.world_size,
            local_rank: env.local_rank,
            timeout,
        })
    }

    /// Joins the group the torchrun environment describes (see [`DistEnv`]); an error when the
    /// environment does not describe one.
    pub fn from_env(backend: Backend, timeout: Duration) -> Result<ProcessGroup> {
        let env = DistEnv::from_env()?
            .ok_or_else(|| DistError("not a distributed worker: RANK and WORLD_SIZE are not set".into()))?;
        Self::new(backend, &env, timeout)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }
    pub fn rank(&self) -> usize {
        self.rank
    }
    pub fn world_size(&self) -> usize {
        self.world_size
    }
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Reduces each tensor in place across ranks (one collective per tensor, all in flight
    /// together). Every rank must pass tensors of the same shapes and dtypes in the same order.
    pub fn all_reduce(&self, tensors: &mut [tch::Tensor], op: ReduceOp) -> Result<()> {
        if tensors.is_empty() {
            return Ok(());
        }
        let ptrs: Vec<*mut c_void> = tensors.iter().map(|t| t.as_ptr() as *mut c_void).collect();
        call("all_reduce failed", |buf, len| {
            // SAFETY: tch's C_tensor pointers are `at::Tensor*`, alive for the call.
            unsafe { lt_dist_all_reduce(self.handle, ptrs.as_ptr(), ptrs.len(), op.code(), buf, len) }
        })
    }

    /// Replaces each tensor, in place, by `root`'s.
    pub fn broadcast(&self, tensors: &mut [tch::Tensor], root: usize) -> Result<()> {
        if root >= self.world_size {
            return Err(DistError(format!("broadcast root {root} is outside world size {}", self.world_size)));
        }
        if tensors.is_empty() {
            return Ok(());
        }
        let ptrs: Vec<*mut c_void> = tensors.iter().map(|t| t.as_ptr() as *mut c_void).collect();
        call("broadcast failed", |buf, len| {
            // SAFETY: as in all_reduce; root was checked (and is checked again in C++).
            unsafe { lt_dist_broadcast(self.handle, ptrs.as_ptr(), ptrs.len(), root as i32, buf, len) }
        })
    }

    /// Every rank's `tensor`, in rank order (same shape and dtype on every rank).
    pub fn all_gather(&self, tensor: &tch::Tensor) -> Result<Vec<tch::Tensor>> {
        let outs: Vec<tch::Tensor> = (0..self.world_size)
            .map(|_| tensor.f_empty_like().and_then(|t| t.f_contiguous()))
            .collect::<std::result::Result<_, _>>()?;
        let ptrs: Vec<*mut c_void> = outs.iter().map(|t| t.as_ptr() as *mut c_void).collect();
        call("all_gather failed", |buf, len| {
            // SAFETY: as in all_reduce.
            unsafe {
                lt_dist_all_gather(self.handle, tensor.as_ptr() as *const c_void, ptrs.as_ptr(), ptrs.len(), buf, len)
            }
        })?;
        Ok(outs)
    }

    /// Waits until every rank reaches the barrier.
    pub fn barrier(&self) -> Result<()> {
        // SAFETY: the handle is alive; the shim catches every C++ exception.
        call("barrier failed", |buf, len| unsafe { lt_dist_barrier(self.handle, buf, len) })
    }

    /// Like [`ProcessGroup::all_reduce`] with one collective per dtype/device group: the tensors
    /// are flattened into one buffer (up to 256 MB), reduced, and copied back.
    pub fn all_reduce_coalesced(&self, tensors: &mut [tch::Tensor], op: ReduceOp) -> Result<()> {
        for group in group_by_kind(tensors, COALESCE_CAP_BYTES) {
            let refs: Vec<&tch::Tensor> = group.iter().map(|&i| &tensors[i]).collect();
            let mut flat = [flatten(&refs)?];
            self.all_reduce(&mut flat, op)?;
            unflatten_into(&flat[0], &refs)?;
        }
        Ok(())
    }

    /// Like [`ProcessGroup::broadcast`] with one collective per dtype/device group.
    pub fn broadcast_coalesced(&self, tensors: &mut [tch::Tensor], root: usize) -> Result<()> {
        for group in group_by_kind(tensors, COALESCE_CAP_BYTES) {
            let refs: Vec<&tch::Tensor> = group.iter().map(|&i| &tensors[i]).collect();
            let mut flat = [flatten(&refs)?];
            self.broadcast(&mut flat, root)?;
            unflatten_into(&flat[0], &refs)?;
        }
        Ok(())
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: the handle came from lt_dist_new and is freed once; the shim swallows exceptions.
        unsafe { lt_dist_free(self.handle) }
    }
}

/// Groups tensor indices, in the given order, by (dtype, device), starting a new group when one
/// would exceed `cap_bytes` (a single larger tensor gets a group of its own).
pub(crate) fn group_by_kind(tensors: &[tch::Tensor], cap_bytes: usize) -> Vec<Vec<usize>> {
    let indices: Vec<usize> = (0..tensors.len()).collect();
    group_indices(
        &indices,
        |i| (tensors[i].kind(), tensors[i].device(), tensors[i].numel() * tensors[i].kind().elt_size_in_bytes()),
        cap_bytes,
    )
}

/// Buckets `order` by key, each bucket holding at most `cap_bytes` (except a single oversized item).
pub(crate) fn group_indices<K: PartialEq + Copy>(
    order: &[usize],
    info: impl Fn(usize) -> (tch::Kind, K, usize),
    cap_bytes: usize,
) -> Vec<Vec<usize>> {
    // Open buckets, one per kind; a bucket is closed (pushed) when full.
    let mut open: Vec<((tch::Kind, K), Vec<usize>, usize)> = Vec::new();
    let mut done: Vec<Vec<usize>> = Vec::new();
    for &i in order {
        let (kind, dev, bytes) = info(i);
        let pos = open.iter().position(|(k, _, _)| *k == (kind, dev));
        match pos {
            Some(p) if open[p].2.saturating_add(bytes) > cap_bytes && !open[p].1.is_empty() => {
                let (_, full, _) = open.remove(p);
                done.push(full);
                open.push(((kind, dev), vec![i], bytes));
            }
            Some(p) => {
                open[p].1.push(i);
                open[p].2 = open[p].2.saturating_add(bytes);
            }
            None => open.push(((kind, dev), vec![i], bytes)),
        }
    }
    done.extend(open.into_iter().map(|(_, b, _)| b));
    done
}

/// The tensors' elements, concatenated into one new 1-D contiguous tensor.
pub(crate) fn flatten(tensors: &[&tch::Tensor]) -> Result<tch::Tensor> {
    let flat: Vec<tch::Tensor> =
        tensors.iter().map(|t| t.f_detach().and_then(|d| d.f_reshape([-1]))).collect::<std::result::Result<_, _>>()?;
    Ok(tch::Tensor::f_cat(&flat, 0)?)
}

/// Copies consecutive slices of `flat` back into `tensors` (the inverse of [`flatten`]).
pub(crate) fn unflatten_into(flat: &tch::Tensor, tensors: &[&tch::Tensor]) -> Result<()> {
    let mut offset = 0i64;
    tch::no_grad(|| -> Result<()> {
        for t in tensors {
            let n = t.numel() as i64;
            let piece = flat.f_narrow(0, offset, n)?.f_view(t.size().as_slice())?;
            let mut dst = t.f_detach()?;
            dst.f_copy_(&piece)?;
            offset += n;
        }
        Ok(())
    })
}

/// Gives `param` the gradient `grad` (used for parameters that had none before a sync).
pub(crate) fn set_grad(param: &tch::Tensor, grad: &tch::Tensor) -> Result<()> {
    call("cannot set a gradient", |buf, len| {
        // SAFETY: both are live `at::Tensor*`s; the shim catches every C++ exception.
        unsafe { lt_dist_set_grad(param.as_ptr() as *const c_void, grad.as_ptr() as *const c_void, buf, len) }
    })
}
