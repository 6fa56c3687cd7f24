//! `lt doc` is generated from the engine: every script-visible function has a doc comment with a
//! Rhai example, and every example runs.
use crate::common::{lt, stdout};

#[test]
fn every_function_has_a_doc_with_a_rhai_example_that_runs() {
    let _rng = crate::common::rng_guard();
    let engine = lt::script::engine::new_engine().unwrap();
    let docs = lt::script::doc::all_docs(&engine).unwrap();
    assert!(docs.len() > 300, "only {} functions documented", docs.len());
    let mut seen = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for d in &docs {
        let examples = d.examples();
        if examples.is_empty() {
            failures.push(format!("{}: no ```rhai example", d.signature));
            continue;
        }
        for ex in examples {
            if !seen.insert(ex.clone()) {
                continue; // overloads share a doc
            }
            let script = lt::script::runner::Script::from_source(std::path::Path::new("example.rhai"), ex.clone());
            let mut script = match script {
                Ok(s) => s,
                Err(e) => {
                    failures.push(format!("{}: example does not compile:\n{e}", d.qualified));
                    continue;
                }
            };
            script.engine.on_print(|_| {});
            if let Err(e) = script.run(&mut rhai::Scope::new()) {
                failures.push(format!("{}: example fails:\n{ex}\n{e}", d.qualified));
            }
        }
    }
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn lt_doc_lists_and_explains() {
    let all = stdout(&lt(&["doc"]));
    assert!(all.contains("torch::zeros(shape: any, opts: map) -> Tensor"), "{all}");
    let one = lt(&["doc", "torch::cat"]);
    assert!(one.status.success());
    let text = stdout(&one);
    assert!(text.contains("Concatenates tensors") && text.contains("```rhai"), "{text}");
    let missing = lt(&["doc", "frobnicate"]);
    assert!(!missing.status.success());
}

#[test]
fn version_names_libtorch_cuda_and_threads() {
    let v = stdout(&lt(&["--version"]));
    assert!(v.contains("lt 0.1.0"), "{v}");
    assert!(v.contains("libtorch 2.11.0"), "{v}");
    assert!(v.contains("cuda "), "{v}");
    assert!(v.contains("threads "), "{v}");
    assert!(v.contains("distributed gloo"), "{v}");
}
