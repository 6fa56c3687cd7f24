//! The distributed backend: 2 processes over Gloo on 127.0.0.1 (free ports), launched by `lt`'s
//! own launcher running the hidden `lt dist-selftest`; failure paths (a killed worker, a
//! rendezvous that times out, SIGINT to the launcher) end with a clear error, never a hang.
use crate::common::{lt_bin, stderr, stdout, temp_dir};
use lt::dist::launcher::{worker_envs, LaunchConfig};
use lt::dist::{DistEnv, GradSync};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn selftest(args: &[&str], env: &[(&str, String)]) -> (Output, Duration) {
    let start = Instant::now();
    let mut cmd = Command::new(lt_bin());
    cmd.arg("dist-selftest").args(args).env("OMP_NUM_THREADS", crate::common::threads());
    for k in ["RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LT_DIST_WORKER"] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("cannot start lt");
    (out, start.elapsed())
}

#[test]
fn two_ranks_collectives_and_grad_sync_over_gloo() {
    let (out, _) = selftest(&["--devices", "2", "--dist-timeout", "60"], &[]);
    let (so, se) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "stdout:\n{so}\nstderr:\n{se}");
    for rank in 0..2 {
        for check in [
            "all_reduce sum ok",
            "all_reduce avg ok",
            "all_reduce max ok",
            "all_reduce min ok",
            "all_reduce non-contiguous ok",
            "broadcast f32 ok",
            "broadcast i64 ok",
            "all_gather ok",
            "barrier ok",
            "all_reduce_coalesced f32 ok",
            "all_reduce_coalesced i64 ok",
            "gradsync ok",
            "selftest passed",
        ] {
            assert!(so.contains(&format!("rank {rank}: {check}")), "rank {rank} lacks '{check}':\n{so}\n{se}");
        }
    }
}

#[test]
fn one_process_group_works() {
    let (out, _) = selftest(&[], &[]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("rank 0: selftest passed (0 of 1, gloo)"));
}

#[test]
fn a_killed_worker_ends_the_run_naming_its_rank() {
    let (out, took) = selftest(&["--devices", "2", "--die-rank", "1", "--dist-timeout", "60"], &[]);
    let se = stderr(&out);
    assert!(!out.status.success());
    assert!(se.contains("worker rank 1 was killed by signal 9 (SIGKILL)"), "{se}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn a_rendezvous_timeout_is_an_error_not_a_hang() {
    let port = lt::dist::launcher::free_port().expect("free port").to_string();
    let env = [
        ("RANK", "0".to_string()),
        ("WORLD_SIZE", "2".to_string()),
        ("MASTER_ADDR", "127.0.0.1".to_string()),
        ("MASTER_PORT", port),
    ];
    let (out, took) = selftest(&["--dist-timeout", "1"], &env);
    let se = stderr(&out);
    assert!(!out.status.success());
    assert!(
        se.contains("rank 0: cannot join the gloo process group as rank 0 of 2") && se.contains("Timed out"),
        "{se}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn bad_worker_env_is_a_clear_error() {
    let (out, _) = selftest(&[], &[("RANK", "2".to_string()), ("WORLD_SIZE", "2".to_string())]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("RANK=2 must be below WORLD_SIZE=2"), "{}", stderr(&out));
}

/// Children of `pid` (of any of its threads: lt runs on a thread of its own), from /proc.
fn children(pid: u32) -> Vec<u32> {
    let tasks =
        std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
    tasks
        .iter()
        .flat_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[test]
fn sigint_to_the_launcher_stops_every_worker() {
    let mut child = Command::new(lt_bin())
        .args(["dist-selftest", "--devices", "2", "--bench", "1000", "--iters", "100000000", "--dist-timeout", "60"])
        .env("OMP_NUM_THREADS", crate::common::threads())
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lt");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut workers = Vec::new();
    while workers.len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        workers = children(child.id());
    }
    assert_eq!(workers.len(), 2, "the launcher did not start 2 workers");
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("the launcher did not stop after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    for w in workers {
        assert!(
            !std::path::Path::new(&format!("/proc/{w}")).exists()
                || std::fs::read_to_string(format!("/proc/{w}/stat")).map(|s| s.contains(") Z")).unwrap_or(true),
            "worker {w} still runs"
        );
    }
    let mut err = String::new();
    use std::io::Read;
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(err.contains("interrupted (SIGINT): stopping all 2 workers"), "{err}");
}

#[test]
fn run_with_devices_launches_that_many_workers() {
    let dir = temp_dir("dist-run");
    std::fs::write(dir.join("hello.rhai"), "print(\"hello from a worker\");").expect("write");
    let out = Command::new(lt_bin())
        .args(["run", "hello.rhai", "--devices", "2", "--strategy", "ddp"])
        .current_dir(&dir)
        .env("OMP_NUM_THREADS", crate::common::threads())
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .output()
        .expect("start lt");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).matches("hello from a worker").count(), 2, "{}", stdout(&out));
}

#[test]
fn worker_env_parsing() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    };
    assert_eq!(DistEnv::from_lookup(vars(&[])).expect("ok"), None);
    let env = DistEnv::from_lookup(vars(&[
        ("RANK", "3"),
        ("WORLD_SIZE", "4"),
        ("MASTER_ADDR", "10.0.0.1"),
        ("MASTER_PORT", "29500"),
        ("LOCAL_RANK", "1"),
    ]))
    .expect("ok")
    .expect("a worker");
    assert_eq!((env.rank, env.world_size, env.local_rank, env.master_port), (3, 4, 1, 29500));
    let err =
        DistEnv::from_lookup(vars(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "x")])).expect_err("no port");
    assert!(err.0.contains("MASTER_PORT is not set"), "{err}");
    let err = DistEnv::from_lookup(vars(&[("RANK", "a"), ("WORLD_SIZE", "2")])).expect_err("bad rank");
    assert!(err.0.contains("RANK=\"a\""), "{err}");
}

#[test]
fn launcher_assigns_global_ranks_across_nodes() {
    let cfg =
        LaunchConfig { devices: 2, num_nodes: 3, node_rank: 1, master_addr: "10.0.0.1".into(), master_port: None };
    let envs = worker_envs(&cfg).expect("envs");
    let ranks: Vec<(usize, usize, usize)> = envs.iter().map(|e| (e.rank, e.local_rank, e.world_size)).collect();
    assert_eq!(ranks, vec![(2, 0, 6), (3, 1, 6)]);
    assert_eq!(envs[0].master_port, 29500);
    let bad = LaunchConfig { node_rank: 3, ..cfg };
    assert!(worker_envs(&bad).is_err());
}

#[test]
fn grad_buckets_are_reversed_capped_and_split_by_dtype() {
    use tch::{Device, Kind, Tensor};
    let p = |n: i64, k: Kind| Tensor::zeros([n], (k, Device::Cpu)).set_requires_grad(true);
    // 4 bytes per f32 element: a 100-byte cap holds 25 of them
    let params = vec![
        p(10, Kind::Float),
        p(10, Kind::Float),
        p(10, Kind::Double),
        p(10, Kind::Float),
        Tensor::zeros([5], (Kind::Float, Device::Cpu)),
    ];
    let buckets = GradSync::with_bucket_cap_bytes(100).buckets(&params);
    // reverse order: 3, 1 (f32, 80 bytes), then 0 would exceed 100 → new bucket; 2 is f64; 4 needs no grad
    assert_eq!(buckets, vec![vec![3, 1], vec![2], vec![0]]);
    assert_eq!(GradSync::new().bucket_cap_bytes(), 25 * 1024 * 1024);
}

#[test]
fn nccl_without_a_gpu_is_a_clear_error() {
    if tch::Cuda::is_available() {
        return; // tools/nccl_smoke.sh covers NCCL on a GPU machine
    }
    let (out, _) = selftest(&["--backend", "nccl", "--dist-timeout", "10"], &[]);
    assert!(!out.status.success());
    let se = stderr(&out);
    assert!(
        se.contains("cannot join the nccl process group")
            && (se.contains("no GPUs found") || se.contains("built without the NCCL backend")),
        "{se}"
    );
}
