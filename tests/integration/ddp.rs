//! DDP through the Trainer: 2 processes over Gloo train exactly like one process with the same
//! global batch, and sync_dist reduces logged values across ranks.
use crate::common::{lt, stderr, stdout};

fn values(text: &str, prefix: &str) -> Vec<f64> {
    let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no '{prefix}' in:\n{text}"));
    line[prefix.len()..]
        .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

#[test]
fn two_ranks_match_one_process_with_the_global_batch() {
    let ddp = lt(&["fit", "tests/scripts/ddp.rhai", "--devices", "2", "--strategy", "ddp"]);
    assert!(ddp.status.success(), "{}", stderr(&ddp));
    let single = lt(&["fit", "tests/scripts/ddp.rhai", "--set", "model.bs=16"]);
    assert!(single.status.success(), "{}", stderr(&single));
    let (d, s) = (stdout(&ddp), stdout(&single));
    assert!(d.contains("rank 0/2 steps 8") && d.contains("rank 1/2 steps 8"), "{d}");
    for key in ["w ", "b "] {
        let (a, b) = (values(&d, key), values(&s, key));
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-5, "{key}: {x} vs {y}");
        }
    }
    // both ranks print the same weights (they stay in sync)
    let ws: Vec<&str> = d.lines().filter(|l| l.starts_with("w ")).collect();
    assert_eq!(ws.len(), 2);
    assert_eq!(ws[0], ws[1]);
    // `--devices 1 --strategy ddp` is a one-process group (as in Lightning), training like one process
    let one = lt(&["fit", "tests/scripts/ddp.rhai", "--devices", "1", "--strategy", "ddp", "--set", "model.bs=16"]);
    assert!(one.status.success(), "{}", stderr(&one));
    let o = stdout(&one);
    assert!(o.contains("rank 0/1 steps 8"), "{o}");
    assert_eq!(values(&o, "w "), values(&s, "w "));
    // sync_dist averaged the last step's loss over the ranks: every rank reports the same value
    let losses: Vec<&str> = d.lines().filter(|l| l.starts_with("loss ")).collect();
    assert_eq!(losses.len(), 2);
    assert_eq!(losses[0], losses[1]);
}
