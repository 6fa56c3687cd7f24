//! Bad input is a script error with file, line, column and a non-zero exit; never a panic.
use crate::common::{run_script, stderr};

fn fails_cleanly(name: &str, src: &str) -> String {
    let out = run_script(name, src);
    let err = stderr(&out);
    assert!(!out.status.success(), "{name} should fail");
    assert_eq!(out.status.code(), Some(1), "{name}: exit code (a signal means a crash): {err}");
    assert!(!err.contains("panicked"), "{name} panicked: {err}");
    assert!(err.starts_with("error: "), "{name}: {err}");
    err
}

#[test]
fn every_golden_error_case_exits_non_zero_without_a_crash() {
    let dir = crate::common::root().join("tests/golden/errors");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "rhai") {
            let src = std::fs::read_to_string(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let err = fails_cleanly(&name, &src);
            assert!(err.contains(&format!("--> {name}:")), "{name}: no location in {err}");
            n += 1;
        }
    }
    assert!(n >= 12, "expected at least a dozen error cases, found {n}");
}

#[test]
fn errors_show_line_column_caret_and_chain() {
    let err = fails_cleanly(
        "chain.rhai",
        "fn inner(x) {\n    x.reshape(7, 7)\n}\nfn outer(x) { inner(x) }\nouter(torch::ones([3]));\n",
    );
    assert!(err.contains("shape '[7, 7]' is invalid for input of size 3"), "{err}");
    assert!(err.contains("--> chain.rhai:2:7"), "{err}");
    assert!(err.contains("2 |     x.reshape(7, 7)"), "{err}");
    assert!(err.contains("  |       ^"), "{err}");
    assert!(err.contains("in fn inner, called at chain.rhai:4:15"), "{err}");
    assert!(err.contains("in fn outer, called at chain.rhai:5:1"), "{err}");
}

#[test]
fn missing_file_is_reported() {
    let out = crate::common::lt(&["run", "no/such/file.rhai"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot read no/such/file.rhai"), "{}", stderr(&out));
}
