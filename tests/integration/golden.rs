//! Runs every golden script under tests/golden through `lt golden` and requires all to pass.
use crate::common::{lt, stdout};

#[test]
fn golden_scripts_match() {
    let out = lt(&["golden", "tests/golden"]);
    let text = stdout(&out);
    assert!(out.status.success(), "golden scripts failed:\n{text}");
    assert!(text.contains(" passed, 0 failed"), "{text}");
}

#[test]
fn example_scripts_match_their_golden_output() {
    // every example in scripts/ runs (module scripts with fast_dev_run) and prints what it printed
    let out = lt(&["golden", "scripts"]);
    let text = stdout(&out);
    assert!(out.status.success(), "example goldens failed:\n{text}");
    assert!(text.contains("golden: 11 passed, 0 failed"), "{text}");
}

#[test]
fn golden_reports_a_diff_and_fails_on_mismatch() {
    let dir = crate::common::temp_dir("golden_mismatch");
    std::fs::write(dir.join("a.rhai"), "print(torch::tensor([1.0, 2.0]) * 2);\n").unwrap();
    std::fs::write(dir.join("a.golden"), "tensor([2., 5.])\n").unwrap();
    let out = crate::common::lt_in(&dir, &["golden", "a.rhai"]);
    let text = stdout(&out);
    assert!(!out.status.success());
    assert!(text.contains("- tensor([2., 5.])") && text.contains("+ tensor([2., 4.])"), "{text}");
    // the default tolerance (1e-3) accepts float32-sized differences; --exact and a tighter
    // --tolerance do not; a larger difference fails at the default
    std::fs::write(dir.join("a.golden"), "tensor([2.0001, 4.])\n").unwrap();
    assert!(crate::common::lt_in(&dir, &["golden", "a.rhai"]).status.success());
    assert!(!crate::common::lt_in(&dir, &["golden", "a.rhai", "--exact"]).status.success());
    assert!(!crate::common::lt_in(&dir, &["golden", "a.rhai", "--tolerance", "1e-6"]).status.success());
    std::fs::write(dir.join("a.golden"), "tensor([2.01, 4.])\n").unwrap();
    assert!(!crate::common::lt_in(&dir, &["golden", "a.rhai"]).status.success());
    // --bless rewrites, then it passes
    assert!(crate::common::lt_in(&dir, &["golden", "a.rhai", "--bless"]).status.success());
    assert_eq!(std::fs::read_to_string(dir.join("a.golden")).unwrap(), "tensor([2., 4.])\n");
    assert!(crate::common::lt_in(&dir, &["golden", "a.rhai"]).status.success());
}

#[test]
fn printing_matches_pytorch() {
    // tests/fixtures/tensor/printing.txt is what PyTorch printed (gen_printing.py beside it).
    let expected = std::fs::read_to_string(crate::common::root().join("tests/fixtures/tensor/printing.txt")).unwrap();
    let actual = lt::golden::capture(&crate::common::root().join("tests/golden/tensor/printing.rhai"));
    assert_eq!(actual, expected);
}

#[test]
fn golden_comparison_tolerates_floats_not_integers_or_text() {
    use lt::golden::compare::{diff, DEFAULT_TOLERANCE as TOL};
    // floats: relative above 1, absolute below
    assert!(diff("test_loss 11.255045413970947\n", "test_loss 11.255045890808105\n", TOL).is_none());
    assert!(diff("loss 1.3892939853668214\n", "loss 1.3894270181655883\n", TOL).is_none());
    assert!(diff("loss 1.38\n", "loss 1.39\n", TOL).is_some());
    assert!(diff("x 1e-8\n", "x 2e-8\n", TOL).is_none());
    assert!(diff("x 1.5e3\n", "x 1.6e3\n", TOL).is_some());
    // integers (steps, shapes, counts) and text compare exactly
    assert!(diff("global_step 1000\n", "global_step 1001\n", TOL).is_some());
    assert!(diff("shape [4, 3]\n", "shape [4, 2]\n", TOL).is_some());
    assert!(diff("val_loss 0.5\n", "val_acc 0.5\n", TOL).is_some());
    assert!(diff("a\nb\n", "a\n", TOL).is_some());
    // a float and an integer are different tokens
    assert!(diff("n 3.0\n", "n 3\n", TOL).is_some());
    // a table whose column widens with a longer number still matches; exact mode does not
    let e = "│ test_loss ┆ 1.38929 │\n├╌╌╌╌╌╌╌╌╌╌╌┼╌╌╌╌╌╌╌╌╌┤\n";
    let a = "│ test_loss ┆ 1.3894016 │\n├╌╌╌╌╌╌╌╌╌╌╌┼╌╌╌╌╌╌╌╌╌╌╌┤\n";
    assert!(diff(e, a, TOL).is_none());
    assert!(diff(e, a, 0.0).is_some());
    // a table rule still has to be a rule
    assert!(diff("├╌╌╌┤\n", "├───┤\n", TOL).is_some());
}
