//! Changes to a copy that nothing sees: Rhai passes maps and arrays to functions by value, so in
//! `fn freeze(m) { m.frozen = true; }` the caller's module is unchanged — where Python, whose
//! `nn.Module` is a reference, would have changed it. A change of that kind to a parameter that
//! the function never reads again can have no effect at all, so lt refuses the script when it is
//! compiled, naming the function, the line, and the two ways to write it that do work (a method
//! that changes `this`, or returning the parameter).
//!
//! What counts as a change: an assignment into the parameter (`m.a = …`, `m.a.b = …`, `m[i] = …`)
//! and a call, as a statement of its own, of a method that changes its receiver in place: Rhai's
//! array and map methods (`push`, `remove`, …) and a module's `train` / `eval_mode` / `apply`.
//! Tensors are shared handles, so `m.fc.weight.requires_grad_(false)` does reach the caller and is
//! not a change here. A parameter is left alone when the function declares a variable of the same
//! name (`let m = m;` says a local copy is meant), when a closure captures it (captured variables
//! are shared), and when it is read after the change (the copy is used; in a loop, anywhere).
//! Hooks (`fn on_*`, and the functions stored under `on_*` keys of callbacks) and the function
//! given to `model.apply(f)` are not checked: lt calls them with shared values — the checkpoint of
//! `on_save_checkpoint`, a callback's `pl_module`, each submodule — so their changes do reach lt.
use rhai::{ASTNode, Expr, Module, Position, ScriptFuncDef, Shared, Stmt, AST};
use std::collections::{HashMap, HashSet};

/// Methods that change their receiver in place (Rhai's array and map methods, lt's module modes).
const IN_PLACE_METHODS: &[&str] = &[
    "push",
    "append",
    "insert",
    "pop",
    "shift",
    "remove",
    "clear",
    "truncate",
    "chop",
    "drain",
    "retain",
    "splice",
    "sort",
    "sort_desc",
    "reverse",
    "dedup",
    "pad",
    "split",
    "mixin",
    "fill_with",
    "train",
    "eval_mode",
    "apply",
];

/// Of those, the methods that return their receiver (a module's `train`, `eval_mode`, `apply`).
const RETURN_RECEIVER: &[&str] = &["train", "eval_mode", "apply"];

/// A change to a parameter that nothing can observe.
#[derive(Debug, Clone)]
pub struct LostChange {
    /// `fn freeze(m)` or `the closure |m| at file:3:9`.
    pub function: String,
    pub param: String,
    /// What was written, `m.frozen = …` or `m.train(…)`.
    pub what: String,
    pub position: Position,
}

impl LostChange {
    /// The message, without the location (the caller prints `file:line:col`).
    pub fn message(&self) -> String {
        let (p, what) = (&self.param, &self.what);
        format!(
            "in {}: `{what}` changes a copy of `{p}` that is never used again: Rhai passes maps and arrays to \
functions by value, so the caller's `{p}` is unchanged. Call the function as a method and change `this` \
(`fn f() {{ this.… }}`, called as `model.f()`), or return `{p}` and assign the result (`model = f(model)`); \
`let {p} = {p};` first says a local copy is meant",
            self.function
        )
    }
}

/// Every lost change in the functions and closures of `ast` (compiled from `file`), in source order.
pub fn lost_changes(ast: &AST, file: &str) -> Vec<LostChange> {
    let captured = captured_counts(ast);
    let called_with_shared = shared_arg_functions(ast);
    let mut out = Vec::new();
    for def in ast.iter_fn_def() {
        if def.name.starts_with("on_") || called_with_shared.contains(def.name.as_str()) {
            continue; // lt calls these with shared values (the checkpoint, `pl_module`, a submodule)
        }
        let n_captured = captured.get(def.name.as_str()).copied().unwrap_or(0);
        let function = describe(def, file);
        let body = function_body(def);
        for param in def.params.iter().skip(n_captured) {
            out.extend(lost_in(&body, param, &function));
        }
    }
    out.sort_by_key(|c| at(c.position));
    out
}

/// How many leading parameters of each closure are captured variables: a closure with captures
/// is made as `curry(Fn("anon$…"), captured…)`.
fn captured_counts(ast: &AST) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    ast.walk(&mut |path: &[ASTNode]| {
        let call = match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, _))) | Some(ASTNode::Stmt(Stmt::FnCall(call, _))) => Some(call),
            _ => None,
        };
        if let Some(call) = call {
            if call.name.as_str() == "curry" {
                if let Some(Expr::DynamicConstant(f, _)) = call.args.first() {
                    if let Some(fp) = f.read_lock::<rhai::FnPtr>() {
                        counts.insert(fp.fn_name().to_string(), call.args.len() - 1);
                    }
                }
            }
        }
        true
    });
    counts
}

/// The functions and closures lt calls with shared values: callback hooks (values of `on_*` keys
/// in map literals and of `x.on_* = …` assignments) and the functions given to `model.apply(f)`.
fn shared_arg_functions(ast: &AST) -> HashSet<String> {
    let mut names = HashSet::new();
    let note = |e: &Expr, names: &mut HashSet<String>| {
        e.walk(&mut Vec::new(), &mut |path: &[ASTNode]| {
            match path.last() {
                Some(ASTNode::Expr(Expr::DynamicConstant(f, _))) => {
                    if let Some(fp) = f.read_lock::<rhai::FnPtr>() {
                        names.insert(fp.fn_name().to_string());
                    }
                }
                Some(ASTNode::Expr(Expr::FnCall(call, _))) if call.name.as_str() == "Fn" => {
                    if let Some(Expr::StringConstant(n, _)) = call.args.first() {
                        names.insert(n.to_string());
                    }
                }
                _ => {}
            }
            true
        });
    };
    ast.walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(ASTNode::Expr(Expr::Map(m, _))) => {
                for (key, value) in m.0.iter() {
                    if key.name.starts_with("on_") {
                        note(value, &mut names);
                    }
                }
            }
            // `model.apply(f)` gives `f` each submodule as a shared value too
            Some(ASTNode::Expr(Expr::MethodCall(call, _))) if call.name.as_str() == "apply" => {
                for a in call.args.iter() {
                    note(a, &mut names);
                }
            }
            // a literal made only of constants is folded into one value: `[#{on_fit_end: |t, m| …}]`
            Some(ASTNode::Expr(Expr::DynamicConstant(d, _))) => hooks_in_constant(d, &mut names),
            Some(ASTNode::Stmt(Stmt::Assignment(x))) => {
                if matches!(last_property(&x.1.lhs), Some(p) if p.starts_with("on_")) {
                    note(&x.1.rhs, &mut names);
                }
            }
            _ => {}
        }
        true
    });
    names
}

/// The functions under `on_*` keys of the maps in a constant value.
fn hooks_in_constant(d: &rhai::Dynamic, names: &mut HashSet<String>) {
    if let Some(m) = d.read_lock::<rhai::Map>() {
        for (k, v) in m.iter() {
            match v.read_lock::<rhai::FnPtr>() {
                Some(fp) if k.starts_with("on_") => {
                    names.insert(fp.fn_name().to_string());
                }
                _ => hooks_in_constant(v, names),
            }
        }
    } else if let Some(a) = d.read_lock::<rhai::Array>() {
        for v in a.iter() {
            hooks_in_constant(v, names);
        }
    }
}

/// The last property of an assignment target: `on_fit_end` in `cb.on_fit_end`.
fn last_property(e: &Expr) -> Option<&str> {
    match e {
        Expr::Property(p, _) => Some(p.2.as_str()),
        Expr::Dot(b, ..) => last_property(&b.rhs),
        _ => None,
    }
}

fn describe(def: &ScriptFuncDef, file: &str) -> String {
    if def.name.starts_with("anon$") {
        let pos = def.body.start_position();
        let line = pos.line().map(|l| format!(":{l}")).unwrap_or_default();
        let col = pos.position().map(|c| format!(":{c}")).unwrap_or_default();
        format!("the closure at {file}{line}{col}")
    } else {
        let params: Vec<&str> = def.params.iter().map(|p| p.as_str()).collect();
        format!("fn {}({})", def.name, params.join(", "))
    }
}

fn at(p: Position) -> (usize, usize) {
    (p.line().unwrap_or(0), p.position().unwrap_or(0))
}

/// The root variable of an assignment target or a method-call chain: `m` in `m.a[0].b`.
fn chain_root(e: &Expr) -> Option<(&str, Position)> {
    match e {
        Expr::Variable(v, _, pos) => Some((v.1.as_str(), *pos)),
        Expr::Dot(b, ..) | Expr::Index(b, ..) => chain_root(&b.lhs),
        _ => None,
    }
}

/// The method a chain ends in: `train` in `m.layers[0].train(false)`.
fn chain_method(e: &Expr) -> Option<&str> {
    match e {
        Expr::MethodCall(call, _) => Some(call.name.as_str()),
        Expr::Dot(b, ..) | Expr::Index(b, ..) => chain_method(&b.rhs),
        _ => None,
    }
}

/// One change found in a function body.
struct Change {
    what: String,
    position: Position,
    /// The position of the parameter's name in the change (not a read of it).
    root: Position,
    in_loop: bool,
    /// For a method-call statement of the body's top level: where it starts.
    top: Option<Position>,
}

/// Where a statement that is a chain starts (its root variable), else `None`.
fn chain_root_of_stmt(s: &Stmt) -> Option<Position> {
    match s {
        Stmt::Expr(e) => chain_root(e).map(|(_, p)| p),
        _ => None,
    }
}

/// An AST holding only `def`, so that a walk visits just its body.
fn function_body(def: &Shared<ScriptFuncDef>) -> AST {
    let mut lib = Module::new();
    lib.set_script_fn(def.clone());
    AST::new(Vec::<Stmt>::new(), lib)
}

/// The lost changes to `param` in `body` (see [`function_body`]).
fn lost_in(body: &AST, param: &str, function: &str) -> Vec<LostChange> {
    let mut changes = Vec::<Change>::new();
    let mut reads = Vec::<(Position, bool)>::new();
    let mut rebound = false;
    // the first position of the body's last statement: its value is what the function returns
    let mut last_statement = None;
    body.walk(&mut |path: &[ASTNode]| {
        if let [ASTNode::Stmt(s)] = path {
            last_statement = chain_root_of_stmt(s).or(Some(s.position()));
        }
        let in_loop = path.iter().any(|n| matches!(n, ASTNode::Stmt(Stmt::For(..) | Stmt::While(..) | Stmt::Do(..))));
        match path.last() {
            Some(ASTNode::Stmt(Stmt::Assignment(x))) => {
                let lhs = &x.1.lhs;
                if let (Expr::Dot(..) | Expr::Index(..), Some((name, root))) = (lhs, chain_root(lhs)) {
                    if name == param {
                        let op = x.0.get_op_assignment_info().map_or("=", |info| info.3);
                        let what = format!("{} {op} …", lhs_text(lhs));
                        changes.push(Change { what, position: root, root, in_loop, top: None });
                    }
                }
            }
            Some(ASTNode::Stmt(Stmt::Expr(e))) => {
                if let (Some((name, root)), Some(method)) = (chain_root(e), chain_method(e)) {
                    if name == param && IN_PLACE_METHODS.contains(&method) {
                        // `m.train(false)` returns `m`: as the body's last statement, the function returns the copy
                        let returns_receiver = matches!(e.as_ref(), Expr::Dot(b, ..)
                            if matches!((&b.lhs, &b.rhs), (Expr::Variable(..), Expr::MethodCall(..)))
                                && RETURN_RECEIVER.contains(&method));
                        let top = (path.len() == 1 && returns_receiver).then_some(root);
                        changes.push(Change {
                            what: format!("{}(…)", lhs_text(e)),
                            position: root,
                            root,
                            in_loop,
                            top,
                        });
                    }
                }
            }
            Some(ASTNode::Stmt(Stmt::Var(x, ..))) if x.0.name.as_str() == param => rebound = true,
            Some(ASTNode::Stmt(Stmt::For(x, _)))
                if x.0.name.as_str() == param || x.1.as_ref().is_some_and(|i| i.name.as_str() == param) =>
            {
                rebound = true
            }
            // captured by a closure: shared, so the change is seen
            Some(ASTNode::Expr(Expr::FnCall(call, _))) | Some(ASTNode::Stmt(Stmt::FnCall(call, _)))
                if call.name.as_str() == "curry"
                    && call.args.iter().skip(1).any(|a| matches!(chain_root(a), Some((n, _)) if n == param)) =>
            {
                rebound = true
            }
            Some(ASTNode::Expr(Expr::Variable(v, _, pos))) if v.1.as_str() == param => reads.push((*pos, in_loop)),
            _ => {}
        }
        true
    });
    if rebound {
        return Vec::new();
    }
    let reads: Vec<(Position, bool)> =
        reads.into_iter().filter(|(p, _)| !changes.iter().any(|c| c.root == *p)).collect();
    changes
        .into_iter()
        .filter(|c| {
            let used_later = reads.iter().any(|(r, _)| at(*r) > at(c.position));
            let used_in_loop = c.in_loop && !reads.is_empty();
            let returned = c.top.is_some() && c.top == last_statement;
            !used_later && !used_in_loop && !returned
        })
        .map(|c| LostChange {
            function: function.to_string(),
            param: param.to_string(),
            what: c.what,
            position: c.position,
        })
        .collect()
}

/// The source-like text of a chain, for the message: `m.layers[…].train`.
fn lhs_text(e: &Expr) -> String {
    fn rest(e: &Expr, out: &mut String) {
        match e {
            Expr::Variable(v, ..) => out.push_str(v.1.as_str()),
            Expr::Property(p, _) => out.push_str(p.2.as_str()),
            Expr::MethodCall(call, _) => out.push_str(call.name.as_str()),
            Expr::Dot(b, ..) => {
                rest(&b.lhs, out);
                out.push('.');
                rest(&b.rhs, out);
            }
            Expr::Index(b, ..) => {
                rest(&b.lhs, out);
                out.push_str("[…]");
                if let Expr::Dot(d, ..) = &b.rhs {
                    out.push('.');
                    rest(&d.rhs, out);
                }
            }
            _ => out.push('…'),
        }
    }
    let mut s = String::new();
    rest(e, &mut s);
    s
}
