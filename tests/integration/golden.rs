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
    assert!(text.contains("golden: 9 passed, 0 failed"), "{text}");
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
    // a tolerance accepts small numeric differences only
    std::fs::write(dir.join("a.golden"), "tensor([2.0001, 4.])\n").unwrap();
    assert!(!crate::common::lt_in(&dir, &["golden", "a.rhai"]).status.success());
    assert!(crate::common::lt_in(&dir, &["golden", "a.rhai", "--tolerance", "1e-3"]).status.success());
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
