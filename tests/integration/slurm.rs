//! SLURM: two local `lt fit` processes given what `srun` would set for a job of two nodes with one
//! task each (SLURM_NTASKS, SLURM_PROCID, SLURM_LOCALID, SLURM_NODEID, a bracket node list whose
//! first host is 127.0.0.1, the port from the job id) train as one DDP job.
//! Also the pure rules of lt::dist::slurm (node list, port, detection, checks).
use crate::common::{lt_bin, root, threads};
use std::process::{Command, Output};

/// A job id whose derived port (15000 + its last four digits) is free now.
fn job_id() -> String {
    let start = std::process::id() as u16 % 10000;
    for k in 0..10000u16 {
        let n = (start + k) % 10000;
        if std::net::TcpListener::bind(("127.0.0.1", 15000 + n)).is_ok() {
            return format!("77{n:04}");
        }
    }
    panic!("no free port in 15000..25000");
}

fn task(job: &str, rank: usize, extra: &[(&str, &str)], args: &[&str]) -> std::process::Child {
    let mut c = Command::new(lt_bin());
    c.args(["fit", "tests/scripts/ddp.rhai"]).args(args).current_dir(root()).env("OMP_NUM_THREADS", threads());
    for k in ["RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "LT_DIST_WORKER", "SLURM_JOB_NAME"] {
        c.env_remove(k);
    }
    let r = rank.to_string();
    let vars = [
        ("SLURM_NTASKS", "2"),
        ("SLURM_NTASKS_PER_NODE", "1"),
        ("SLURM_NNODES", "2"),
        ("SLURM_PROCID", r.as_str()),
        ("SLURM_LOCALID", "0"),
        ("SLURM_NODEID", r.as_str()),
        ("SLURM_NODELIST", "127.0.0.[1-2]"),
        ("SLURM_JOB_ID", job),
    ];
    c.envs(vars).envs(extra.iter().copied());
    c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    c.spawn().expect("start lt")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn two_srun_tasks_train_as_one_ddp_job() {
    let job = job_id();
    let args = ["--devices", "1", "--num-nodes", "2", "--strategy", "ddp"];
    let a = task(&job, 0, &[], &args);
    let b = task(&job, 1, &[], &args);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let ((oa, ea), (ob, eb)) = (text(&a), text(&b));
    assert!(a.status.success() && b.status.success(), "rank 0:\n{ea}\nrank 1:\n{eb}");
    assert!(oa.contains("rank 0/2 steps 8") && ob.contains("rank 1/2 steps 8"), "{oa}\n{ob}");
    // one job: the ranks end with the same weights, and those of one process with the global batch
    let w = |o: &str| o.lines().find(|l| l.starts_with("w ")).unwrap_or_default().to_string();
    assert!(!w(&oa).is_empty());
    assert_eq!(w(&oa), w(&ob));
    let single = crate::common::lt(&["fit", "tests/scripts/ddp.rhai", "--set", "model.bs=16"]);
    let s = String::from_utf8_lossy(&single.stdout).into_owned();
    let nums = |l: String| -> Vec<f64> {
        l.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect()
    };
    for (x, y) in nums(w(&oa)).iter().zip(nums(w(&s))) {
        assert!((x - y).abs() <= 1e-5, "{x} vs {y}");
    }
}

#[test]
fn a_slurm_job_that_does_not_match_the_flags_is_refused() {
    let job = job_id();
    // --devices 2 on a job of one task per node
    let out = task(&job, 0, &[], &["--devices", "2", "--num-nodes", "2"]).wait_with_output().unwrap();
    let (_, e) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("--ntasks-per-node=1") && e.contains("--devices 1"), "{e}");
    // an interactive allocation is not a task of srun: a plain one-process run
    let out =
        task(&job, 0, &[("SLURM_JOB_NAME", "interactive")], &["--set", "model.bs=16"]).wait_with_output().unwrap();
    let (o, e) = text(&out);
    assert!(out.status.success(), "{e}");
    assert!(o.contains("rank 0/1 steps 8"), "{o}");
}

// ---- the pure rules ----

use lt::dist::slurm::{main_port, root_node, tasks_per_node, SlurmEnv};
use lt::dist::{DistEnv, DistError};
use std::collections::HashMap;

fn slurm(vars: &[(&str, &str)]) -> Result<Option<SlurmEnv>, DistError> {
    let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    SlurmEnv::from_lookup(|k| m.get(k).cloned())
}

const TWO_BY_TWO: &[(&str, &str)] = &[
    ("SLURM_NTASKS", "4"),
    ("SLURM_NTASKS_PER_NODE", "2"),
    ("SLURM_NNODES", "2"),
    ("SLURM_PROCID", "3"),
    ("SLURM_LOCALID", "1"),
    ("SLURM_NODEID", "1"),
    ("SLURM_NODELIST", "gpu[017-018]"),
    ("SLURM_JOB_ID", "1234567"),
    ("SLURM_JOB_NAME", "train"),
];

#[test]
fn root_node_takes_the_first_host_as_lightning_does() {
    for (list, want) in [
        ("host0 host1 host3", "host0"),
        ("host0,host1,host3", "host0"),
        ("host[5-9]", "host5"),
        ("node[001-004,007]", "node001"),
        ("node[7]", "node7"),
        ("node[001-004,007],gpu[1-2]", "node001"),
        ("rack[1-2]-node[3-4]", "rack1-node3"),
        ("localhost", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
    ] {
        assert_eq!(root_node(list), want, "{list}");
    }
}

#[test]
fn the_port_derives_from_the_job_id() {
    assert_eq!(main_port(Some("1234567"), None).unwrap(), 15000 + 4567);
    assert_eq!(main_port(Some("42"), None).unwrap(), 15042);
    assert_eq!(main_port(None, None).unwrap(), 12910);
    assert_eq!(main_port(Some("1234567"), Some("29501")).unwrap(), 29501);
    assert!(main_port(Some("12_3x"), None).unwrap_err().0.contains("MASTER_PORT"));
    assert!(main_port(None, Some("70000")).is_err());
}

#[test]
fn a_task_reads_its_place_from_slurm() {
    let s = slurm(TWO_BY_TWO).unwrap().unwrap();
    assert_eq!(
        s.env,
        DistEnv {
            master_addr: "gpu017".into(),
            master_port: 19567,
            rank: 3,
            world_size: 4,
            local_rank: 1,
            local_world_size: 2,
            node_rank: 1
        }
    );
    s.validate(2, 2).unwrap();
    assert!(s.validate(4, 1).unwrap_err().0.contains("--ntasks-per-node=2"));
    assert!(s.validate(2, 1).unwrap_err().0.contains("--nodes=2"));
    // MASTER_ADDR wins over the node list
    let mut v = TWO_BY_TWO.to_vec();
    v.push(("MASTER_ADDR", "10.0.0.5"));
    assert_eq!(slurm(&v).unwrap().unwrap().env.master_addr, "10.0.0.5");
}

#[test]
fn detection_follows_lightning() {
    assert_eq!(slurm(&[]).unwrap(), None);
    // an interactive allocation is not a task of srun
    for name in ["bash", "interactive"] {
        let mut v = TWO_BY_TWO.to_vec();
        v.retain(|(k, _)| *k != "SLURM_JOB_NAME");
        v.push(("SLURM_JOB_NAME", name));
        assert_eq!(slurm(&v).unwrap(), None, "{name}");
    }
    // --ntasks without --ntasks-per-node: refused, as Lightning does
    let e = slurm(&[("SLURM_NTASKS", "2"), ("SLURM_PROCID", "0"), ("SLURM_LOCALID", "0"), ("SLURM_NODEID", "0")]);
    assert!(e.unwrap_err().0.contains("--ntasks-per-node"));
    // a batch script that runs lt without srun; a one-task job is no group
    let e = slurm(&[("SLURM_NTASKS", "2"), ("SLURM_NTASKS_PER_NODE", "2")]).unwrap_err();
    assert!(e.0.contains("SLURM_PROCID") && e.0.contains("srun"), "{}", e.0);
    assert_eq!(slurm(&[("SLURM_NTASKS", "1")]).unwrap(), None);
    let mut v = TWO_BY_TWO.to_vec();
    v.retain(|(k, _)| *k != "SLURM_PROCID");
    v.push(("SLURM_PROCID", "4"));
    assert!(slurm(&v).unwrap_err().0.contains("below SLURM_NTASKS=4"));
    assert_eq!(tasks_per_node("2(x3)").unwrap(), 2);
    assert!(tasks_per_node("2(x3),1").is_err());
}
