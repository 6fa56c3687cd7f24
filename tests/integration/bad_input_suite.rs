//! The bad-input suite: generated cases, each of which must end in a clean script error — an
//! error (not a value), a message that names what is wrong, no panic caught as an "internal
//! error", no crash of the test process. Families:
//! - every registered function with an options map, called with an unknown key (the key is named);
//! - every layer constructor with a size argument, called with a negative size;
//! - every tensor method with a dimension argument, called with a dimension the tensor lacks;
//! - hand-written hostile calls: tensor ops libtorch refuses, indexing, dtypes, devices, data.
//!
//! Cases run in-process (one engine each), so the whole suite takes seconds.
use lt::script::doc::all_docs;

/// A Rhai expression of a valid argument for a parameter, by its name and type; None when the
/// suite has no generic value for it (the function is left out of the generated families).
fn argument(name: &str, ty: &str) -> Option<&'static str> {
    Some(match (name, ty) {
        (_, "Tensor") => match name {
            "target" => "torch::rand([2, 4])",
            _ => "torch::rand([2, 4])",
        },
        ("optimizer" | "self", "Optimizer") => "optim::sgd([torch::zeros([2], #{requires_grad: true})], #{lr: 0.1})",
        ("params", _) => "[torch::zeros([2], #{requires_grad: true})]",
        ("self", "map") => "nn::linear(4, 4)",
        ("ds" | "dataset", _) => "data::tensor_dataset([torch::rand([4, 2])])",
        ("kernel_size" | "size" | "k" | "n" | "m" | "num_samples" | "steps", _) => "2",
        ("shape", _) => "[2, 4]",
        ("normalized_shape", _) => "4",
        ("pad", _) => "[1, 1]",
        ("start", _) => "0",
        ("end" | "high", _) => "5",
        ("low", _) => "0",
        ("step", _) => "1",
        ("data", _) => "[1.0, 2.0]",
        ("value", "any") => "1.0",
        ("lengths", _) => "[2, 2]",
        ("weights", _) => "[1.0, 1.0]",
        ("dtype", _) => "\"float32\"",
        ("max_norm", _) => "1.0",
        (_, "int") => match name {
            "num_heads" | "nhead" | "num_groups" => "2",
            _ => "4",
        },
        _ => return None,
    })
}

/// (function, parameter names and types) of every registered overload whose last parameter is
/// `opts: map`, with a generic value for every other parameter.
fn functions_with_options() -> Vec<(String, Vec<(String, String)>)> {
    let engine = lt::script::engine::new_engine().unwrap();
    let mut out = Vec::new();
    for d in all_docs(&engine).unwrap() {
        let Some(open) = d.signature.find('(') else { continue };
        let Some(close) = d.signature.rfind(") ->").or_else(|| d.signature.rfind(')')) else { continue };
        let params: Vec<(String, String)> = d.signature[open + 1..close]
            .split(", ")
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once(": ").map(|(n, t)| (n.trim().to_string(), t.trim().to_string())))
            .collect();
        if params.last().is_none_or(|(n, t)| n != "opts" || t != "map") {
            continue;
        }
        let method = d.qualified.starts_with('.') || !d.qualified.contains("::");
        // a prediction writer is a callback map: its other keys are its state (`write_*` typos
        // are refused; tested with the writer)
        if d.qualified == "callbacks::prediction_writer" {
            continue;
        }
        if method && params.first().is_none_or(|(n, t)| n != "self" || argument(n, t).is_none()) {
            continue; // methods without a receiver the suite can make (`this.log` needs a Trainer)
        }
        if params[..params.len() - 1].iter().all(|(n, t)| argument(n, t).is_some()) {
            out.push((d.qualified.clone(), params));
        }
    }
    out.sort();
    out.dedup();
    out
}

fn call(f: &str, params: &[(String, String)], replace: Option<(usize, &str)>, opts: &str) -> String {
    let args: Vec<String> = params[..params.len() - 1]
        .iter()
        .enumerate()
        .map(|(i, (n, t))| match replace {
            Some((j, v)) if j == i => v.to_string(),
            _ => argument(n, t).unwrap().to_string(),
        })
        .chain([opts.to_string()])
        .collect();
    if f.contains("::") {
        return format!("{f}({})", args.join(", "));
    }
    // a method: the first argument is its receiver (a layer's own forward needs that layer)
    let receiver = match f.trim_start_matches('.') {
        "__nn_mha_forward" => "nn::multihead_attention(4, 2)".to_string(),
        "__nn_transformer_encoder_layer_forward" => "nn::transformer_encoder_layer(4, 2)".to_string(),
        _ => args[0].clone(),
    };
    format!("({receiver}).{}({})", f.trim_start_matches('.'), args[1..].join(", "))
}

/// Runs each case; returns the failures (a value instead of an error, an error that lacks what it
/// should name, an internal error, a file created or changed in the folder the cases run in).
fn check(cases: &[(String, Vec<&str>)]) -> Vec<String> {
    let here = std::env::current_dir().expect("current dir");
    let before = crate::common::tree_snapshot(&here);
    let failures = check_each(cases);
    let after = crate::common::tree_snapshot(&here);
    let changed: Vec<String> = after
        .iter()
        .filter(|(p, v)| before.get(*p) != Some(v))
        .map(|(p, _)| p.display().to_string())
        .chain(before.keys().filter(|p| !after.contains_key(*p)).map(|p| format!("{} (removed)", p.display())))
        .collect();
    assert!(changed.is_empty(), "bad-input cases changed files in {}: {changed:?}", here.display());
    failures
}

/// The message of a script error: its first line, without the location and the source line
/// that follow (they quote the call, which names everything).
fn message_of(e: &str) -> &str {
    e.lines().next().unwrap_or("")
}

fn check_each(cases: &[(String, Vec<&str>)]) -> Vec<String> {
    let mut failures = Vec::new();
    for (source, wants) in cases {
        match crate::common::eval(source) {
            Ok(v) => failures.push(format!("{source}\n  gave a {} instead of an error", v.type_name())),
            Err(e) => {
                if e.contains("internal error") || e.contains("panicked") {
                    failures.push(format!("{source}\n  internal error: {e}"));
                } else if !wants.iter().any(|w| message_of(&e).contains(w)) {
                    failures.push(format!("{source}\n  error does not name {wants:?}: {e}"));
                }
            }
        }
    }
    failures
}

#[test]
fn every_options_map_refuses_an_unknown_key_by_name() {
    let fns = functions_with_options();
    assert!(fns.len() >= 120, "only {} functions with options found: {fns:?}", fns.len());
    let cases: Vec<(String, Vec<&str>)> =
        fns.iter().map(|(f, params)| (call(f, params, None, "#{__bogus_key: 1}"), vec!["__bogus_key"])).collect();
    let failures = check(&cases);
    eprintln!("unknown-key cases: {}, failures: {}", cases.len(), failures.len());
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn layer_sizes_must_not_be_negative() {
    const SIZES: &[&str] = &[
        "in_channels",
        "out_channels",
        "in_features",
        "out_features",
        "in1_features",
        "in2_features",
        "num_features",
        "hidden_size",
        "input_size",
        "num_embeddings",
        "embedding_dim",
        "embed_dim",
        "num_heads",
        "num_groups",
        "num_channels",
        "d_model",
        "nhead",
    ];
    let mut cases = Vec::new();
    for (f, params) in functions_with_options() {
        for (i, (name, _)) in params.iter().enumerate() {
            if SIZES.contains(&name.as_str()) {
                cases.push((call(&f, &params, Some((i, "-3")), "#{}"), vec!["-3", "negative", "must be"]));
            }
        }
    }
    assert!(cases.len() >= 25, "only {} size cases", cases.len());
    let failures = check(&cases);
    eprintln!("negative-size cases: {}, failures: {}", cases.len(), failures.len());
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn hostile_tensor_calls_are_clean_errors() {
    let t = "let x = torch::rand([2, 3]); let i = torch::tensor([1, 2]);";
    let cases: Vec<(String, Vec<&str>)> = [
        ("i % 0", vec!["ZeroDivisionError"]),
        ("i.remainder(0)", vec!["ZeroDivisionError"]),
        ("torch::zeros([4, 1]).scatter(1, torch::tensor([[9], [0], [0], [0]]), 1.0)", vec!["out of bounds"]),
        (
            "torch::zeros([4, 1]).scatter_add(0, torch::tensor([[9]]), torch::ones([1, 1]))",
            vec!["out of bounds", "index"],
        ),
        ("torch::arange(0, 1000000000000000)", vec!["allocate"]),
        ("torch::arange(0, 10, 0)", vec!["step"]),
        ("torch::zeros([-1])", vec!["negative"]),
        ("torch::ones([2, -5])", vec!["negative"]),
        ("x + torch::rand([4, 5])", vec!["size of tensor"]),
        ("x.matmul(torch::rand([5, 2]))", vec!["cannot be multiplied"]),
        ("x.reshape([7])", vec!["invalid for input of size"]),
        ("x.view([5, 5])", vec!["invalid for input of size"]),
        ("x[5]", vec!["out of range", "out of bounds"]),
        ("x[-9]", vec!["out of range", "out of bounds"]),
        ("x.select(3, 0)", vec!["out of range"]),
        ("x.sum(7)", vec!["out of range"]),
        ("x.softmax(4)", vec!["out of range"]),
        ("x.transpose(0, 5)", vec!["out of range"]),
        ("x.permute([0])", vec!["dims", "number of dimensions"]),
        ("torch::cat([x, torch::rand([2, 4, 1])])", vec!["Tensors must have same number of dimensions", "dimension"]),
        ("torch::stack([])", vec!["expects a non-empty", "empty"]),
        ("x.index_select(0, torch::tensor([5]))", vec!["out of range", "INDICES"]),
        ("x.gather(1, torch::tensor([[7], [0]]))", vec!["out of bounds"]),
        ("x.item()", vec!["cannot be converted to a scalar"]),
        ("x.sum().backward(); x.grad.sum()", vec!["grad", "()"]),
        ("x.mean().backward()", vec!["does not require grad", "grad"]),
        ("torch::tensor([[1, 2], [3]])", vec!["ragged", "length", "shape"]),
        ("x.to(\"float33\")", vec!["float33"]),
        ("x.to(\"tpu\")", vec!["tpu"]),
        ("x.to(\"cuda:7\")", vec!["not available", "cuda:7"]),
        ("torch::zeros([2], #{dtype: \"int33\"})", vec!["int33"]),
        ("torch::zeros([2], #{devcie: \"cpu\"})", vec!["devcie"]),
        ("torch::randint(5, 2, [3])", vec!["from", "low", "high", "range"]),
        ("torch::eye(-2)", vec!["negative", "-2"]),
        ("torch::linspace(0, 1, -3)", vec!["negative", "-3"]),
        ("torch::full([2], \"a\")", vec!["full", "number", "string"]),
        ("i.float().long().sqrt().argmax(5)", vec!["out of range"]),
        ("x.chunk(0)", vec!["chunk", "0"]),
        ("x.split(0)", vec!["split", "0"]),
        ("x.narrow(0, 1, 5)", vec!["exceeds", "narrow", "start"]),
        ("x.slice(0, 0, 2, 0)", vec!["step", "slice"]),
        ("x.repeat([1])", vec!["repeat", "dimensions"]),
        ("x.expand([1])", vec!["expand", "size"]),
        ("x.masked_fill(torch::tensor([true]), 1.0).sum(9)", vec!["out of range"]),
        ("x.topk(10)", vec!["selected index k out of range", "k"]),
        ("x.pow(torch::rand([7]))", vec!["size of tensor"]),
        ("F::cross_entropy(x, torch::tensor([9, 0]))", vec!["out of bounds", "Target"]),
        ("F::nll_loss(x, torch::tensor([0]))", vec!["size mismatch"]),
        ("F::mse_loss(x, torch::rand([3, 3]))", vec!["size of tensor", "match"]),
        ("nn::linear(3, 2).forward(torch::rand([2, 4]))", vec!["expected last dim 3, got 4"]),
        ("nn::conv2d(1, 1, 3).forward(torch::rand([1, 2, 5, 5]))", vec!["channels", "expected input"]),
        ("nn::embedding(4, 2).forward(torch::tensor([9]))", vec!["out of range", "index"]),
        ("nn::lstm(4, 2).forward(torch::rand([3, 1, 5]))", vec!["input.size(-1)", "input_size", "Expected"]),
        ("nn::batch_norm1d(3).forward(torch::rand([2, 4]))", vec!["running_mean", "weight", "expected"]),
        ("optim::sgd([x], #{lr: -1.0})", vec!["learning rate"]),
        ("optim::adam([x], #{betas: [1.5, 0.9]})", vec!["beta"]),
        ("optim::sgd([], #{lr: 0.1})", vec!["empty", "parameter"]),
        ("data::loader(data::tensor_dataset([x]), #{batch_size: 0})", vec!["batch_size"]),
        ("data::subset(data::tensor_dataset([x]), [5])", vec!["5", "range"]),
        ("data::tensor_dataset([x, torch::rand([3])])", vec!["size", "length", "same"]),
        ("data::random_split(data::tensor_dataset([x]), [1, 5])", vec!["lengths", "sum"]),
        ("data::csv(\"/nonexistent/x.csv\")", vec!["nonexistent"]),
        ("data::load_npy(\"/nonexistent/x.npy\")", vec!["nonexistent"]),
        ("nn::load(\"/nonexistent/w.safetensors\")", vec!["nonexistent"]),
    ]
    .into_iter()
    .map(|(e, w)| (format!("{t}\n{e}"), w))
    .collect();
    let failures = check(&cases);
    eprintln!("hostile tensor calls: {}, failures: {}", cases.len(), failures.len());
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// A Rhai expression for a non-receiver parameter of a tensor method (on a [2, 3] float tensor).
fn method_argument(name: &str, ty: &str) -> Option<&'static str> {
    Some(match (name, ty) {
        ("index", "Tensor") => "torch::zeros([2, 3], #{dtype: \"int64\"})",
        ("index", "int") | ("start", _) => "0",
        ("src", "Tensor") => "torch::ones([2, 3])",
        ("src", _) => "1.0",
        ("keepdim" | "descending", _) => "true",
        ("chunks" | "split_size" | "length" | "end" | "step", _) => "1",
        _ => return None,
    })
}

#[test]
fn every_dimension_argument_is_checked() {
    let engine = lt::script::engine::new_engine().unwrap();
    let mut cases = Vec::new();
    for d in all_docs(&engine).unwrap() {
        let Some(rest) = d.signature.strip_prefix(&format!("{}(self: Tensor, ", d.qualified)) else { continue };
        let Some(params) = rest.split(')').next() else { continue };
        let params: Vec<(&str, &str)> = params.split(", ").filter_map(|p| p.split_once(": ")).collect();
        let is_dim = |n: &str| matches!(n, "dim" | "start_dim" | "end_dim");
        let dims: Vec<usize> =
            params.iter().enumerate().filter(|(_, (n, t))| is_dim(n) && *t == "int").map(|(i, _)| i).collect();
        if dims.is_empty() || params.iter().any(|(n, t)| !is_dim(n) && method_argument(n, t).is_none()) {
            continue;
        }
        for &bad in &["9", "-9"] {
            let args: Vec<&str> = params
                .iter()
                .enumerate()
                .map(|(i, (n, t))| {
                    if dims.contains(&i) {
                        bad
                    } else if is_dim(n) {
                        "0"
                    } else {
                        method_argument(n, t).unwrap()
                    }
                })
                .collect();
            let source = format!("torch::rand([2, 3]).{}({})", d.qualified, args.join(", "));
            cases.push((source, vec!["out of range", "Dimension", "dim"]));
        }
    }
    assert!(cases.len() >= 50, "only {} dimension cases", cases.len());
    let failures = check(&cases);
    eprintln!("dimension cases: {}, failures: {}", cases.len(), failures.len());
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// Options a function cannot do without, with valid values (so another option can be tested).
fn required_options(f: &str) -> &'static [(&'static str, &'static str)] {
    match f {
        "sched::one_cycle_lr" => &[("max_lr", "0.1"), ("total_steps", "10")],
        "sched::cyclic_lr" => &[("base_lr", "0.01"), ("max_lr", "0.1")],
        "sched::cosine_annealing_warm_restarts" => &[("T_0", "2")],
        "sched::step_lr" => &[("step_size", "2")],
        "sched::multi_step_lr" => &[("milestones", "[1, 2]")],
        "sched::cosine_annealing_lr" => &[("T_max", "2")],
        "callbacks::early_stopping" => &[("monitor", "\"val_loss\"")],
        "callbacks::stochastic_weight_averaging" => &[("swa_lrs", "0.1")],
        "data::distributed_sampler" => &[("num_replicas", "2"), ("rank", "0")],
        _ => &[],
    }
}

/// Every option of every registered function with an options map, given a value of a type no
/// option takes (a timestamp): an error that names the option. The valid options are read from
/// the unknown-key error, so the family grows with the registered surface.
#[test]
fn every_option_refuses_a_value_of_the_wrong_type_by_name() {
    let mut cases: Vec<(String, Vec<&str>)> = Vec::new();
    let mut keys_seen = Vec::new();
    for (f, params) in functions_with_options() {
        let Err(e) = crate::common::eval(&call(&f, &params, None, "#{__bogus_key: 1}")) else { continue };
        let Some(list) = e.split("valid options: ").nth(1) else { continue };
        let list = list.lines().next().unwrap_or("");
        for key in list.split(", ").map(str::trim).filter(|k| !k.is_empty()) {
            // the function's required options with valid values, then the one under test
            let mut entries: Vec<String> =
                required_options(&f).iter().filter(|(k, _)| *k != key).map(|(k, v)| format!("\"{k}\": {v}")).collect();
            entries.push(format!("\"{key}\": timestamp()"));
            keys_seen.push(key.to_string());
            cases.push((call(&f, &params, None, &format!("#{{{}}}", entries.join(", "))), vec![]));
        }
    }
    // each case names its key
    let named: Vec<(String, Vec<&str>)> =
        cases.iter().zip(&keys_seen).map(|((src, _), key)| (src.clone(), vec![key.as_str()])).collect();
    assert!(named.len() >= 300, "only {} option cases", named.len());
    let failures = check(&named);
    eprintln!("wrong-type cases: {}, failures: {}", named.len(), failures.len());
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), named.len(), failures.join("\n"));
}
