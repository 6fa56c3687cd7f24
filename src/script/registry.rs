//! Collects every script-visible function with its signature and doc comment, grouped by
//! namespace (`torch::`, `nn::`, … or the global namespace for methods and operators).
//!
//! Each domain's `api.rs` fills a [`Registry`]; [`crate::script::engine`] installs it into a Rhai
//! engine. Because `lt doc` reads the docs back from the engine's own metadata, the reference can
//! never drift from what is registered.
use rhai::{
    Dynamic, EvalAltResult, FnNamespace, FuncRegistration, Module, NativeCallContext, RhaiFunc, RhaiNativeFunc, Shared,
    Variant,
};
use std::collections::BTreeMap;

/// Functions registered so far: one module of globals (methods, operators, properties) and one
/// module per namespace.
#[derive(Default)]
pub struct Registry {
    global: Module,
    namespaces: BTreeMap<String, Module>,
    /// Set by [`Registry::volatile`] for the registration in progress.
    volatile_next: bool,
}

/// The names of the properties registered (`shape`, `grad`, …), for the hint that `x.shape()`
/// is `x.shape`.
static PROPERTIES: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Whether some type has a property `name`.
pub fn is_property(name: &str) -> bool {
    PROPERTIES.lock().unwrap_or_else(|e| e.into_inner()).contains(name)
}

/// Drops the module paths of every type in a Rust type name
/// (`alloc::vec::Vec<rhai::Dynamic>` → `Vec<Dynamic>`).
fn short_paths(t: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    for c in t.chars().chain(std::iter::once(' ')) {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            out.push_str(word.rsplit("::").next().unwrap_or(&word));
            word.clear();
            out.push(c);
        }
    }
    out.pop();
    out
}

/// Splits generic arguments at their top-level commas.
fn generic_args(args: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0usize, 0usize, Vec::new());
    for (i, c) in args.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(args[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(args[start..].trim());
    out
}

/// Maps a Rust type name to the name a script user sees: `int`, `float`, `string`, `array`,
/// `map`, `fn`, `any`, or the type's own name (`Tensor`); a `Result` shows as its value.
pub fn script_type_name(rust: &str) -> String {
    let t = short_paths(rust.trim());
    let t = t.trim().trim_start_matches("&mut ").trim_start_matches('&').trim();
    if let Some((name, rest)) = t.split_once('<') {
        let args = generic_args(rest.strip_suffix('>').unwrap_or(rest));
        return match name {
            "Result" | "RhaiResultOf" => script_type_name(args[0]),
            "Vec" | "SmallVec" | "StaticVec" | "FnArgsVec" => "array".into(),
            "BTreeMap" | "HashMap" => "map".into(),
            "Option" => format!("{}?", script_type_name(args[0])),
            "Box" | "Rc" | "Shared" => script_type_name(args[0]),
            _ => format!("{name}<{}>", args.iter().map(|a| script_type_name(a)).collect::<Vec<_>>().join(", ")),
        };
    }
    match t {
        "i64" | "i32" | "usize" | "INT" => "int".into(),
        "f64" | "f32" | "FLOAT" => "float".into(),
        "bool" => "bool".into(),
        "ImmutableString" | "String" | "str" | "SmartString" => "string".into(),
        "Dynamic" | "RhaiResult" => "any".into(),
        "Array" => "array".into(),
        "Map" => "map".into(),
        "FnPtr" => "fn".into(),
        "Blob" => "blob".into(),
        other => other.to_string(),
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `func` as `ns::name` (or as a global function / method when `ns` is empty).
    ///
    /// `params` names the parameters, comma-separated (`"x, dim"`); their types come from the
    /// Rust signature. `doc` is the doc comment without leading `///`; it must contain a Rhai
    /// example in a fenced block (checked by the test suite).
    pub fn func<A: 'static, const N: usize, const X: bool, R, const F: bool, FUNC>(
        &mut self,
        ns: &str,
        name: &str,
        params: &str,
        doc: &str,
        func: FUNC,
    ) where
        R: Variant + Clone,
        FUNC: RhaiNativeFunc<A, N, X, R, F> + 'static,
    {
        self.func_with(ns, FuncRegistration::new(name), false, name.to_string(), params, doc, func)
    }

    /// Like [`Registry::func`], for a function whose result differs between calls with the same
    /// arguments (random numbers, constructors of stateful objects), so the optimizer never folds it.
    pub fn volatile<A: 'static, const N: usize, const X: bool, R, const F: bool, FUNC>(
        &mut self,
        ns: &str,
        name: &str,
        params: &str,
        doc: &str,
        func: FUNC,
    ) where
        R: Variant + Clone,
        FUNC: RhaiNativeFunc<A, N, X, R, F> + 'static,
    {
        self.volatile_next = true;
        self.func_with(ns, FuncRegistration::new(name), false, name.to_string(), params, doc, func)
    }

    /// Registers a property getter `x.name`.
    pub fn getter<A: 'static, const X: bool, R, const F: bool, FUNC>(&mut self, name: &str, doc: &str, func: FUNC)
    where
        R: Variant + Clone,
        FUNC: RhaiNativeFunc<A, 1, X, R, F> + 'static,
    {
        PROPERTIES.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string());
        self.func_with("", FuncRegistration::new_getter(name), false, String::new(), "self", doc, func)
    }

    /// Registers a property setter `x.name = v`.
    pub fn setter<A: 'static, const X: bool, R, const F: bool, FUNC>(&mut self, name: &str, doc: &str, func: FUNC)
    where
        R: Variant + Clone,
        FUNC: RhaiNativeFunc<A, 2, X, R, F> + 'static,
    {
        self.func_with("", FuncRegistration::new_setter(name), true, String::new(), "self, value", doc, func)
    }

    /// Registers an index getter `x[i]`.
    pub fn index_get<A: 'static, const X: bool, R, const F: bool, FUNC>(&mut self, doc: &str, func: FUNC)
    where
        R: Variant + Clone,
        FUNC: RhaiNativeFunc<A, 2, X, R, F> + 'static,
    {
        self.func_with("", FuncRegistration::new_index_getter(), false, String::new(), "self, index", doc, func)
    }

    /// Registers an index setter `x[i] = v`.
    pub fn index_set<A: 'static, const X: bool, R, const F: bool, FUNC>(&mut self, doc: &str, func: FUNC)
    where
        R: Variant + Clone,
        FUNC: RhaiNativeFunc<A, 3, X, R, F> + 'static,
    {
        self.func_with("", FuncRegistration::new_index_setter(), true, String::new(), "self, index, value", doc, func)
    }

    #[allow(clippy::too_many_arguments)]
    fn func_with<A: 'static, const N: usize, const X: bool, R, const F: bool, FUNC>(
        &mut self,
        ns: &str,
        reg: FuncRegistration,
        setter: bool,
        name_for_purity: String,
        params: &str,
        doc: &str,
        func: FUNC,
    ) where
        R: Variant + Clone,
        FUNC: RhaiNativeFunc<A, N, X, R, F> + 'static,
    {
        let names: Vec<&str> = params.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let types = FUNC::param_names();
        let mut info: Vec<String> = types
            .iter()
            .enumerate()
            .map(|(i, ty)| {
                let n = names.get(i).copied().unwrap_or("_");
                format!("{n}: {}", script_type_name(ty))
            })
            .collect();
        info.push(script_type_name(FUNC::return_type_name()));
        let comment: String = doc
            .trim_matches('\n')
            .lines()
            .map(|l| format!("/// {l}").trim_end().to_string())
            .collect::<Vec<_>>()
            .join("\n");
        let module = if ns.is_empty() { &mut self.global } else { self.namespaces.entry(ns.to_string()).or_default() };
        let reg = if ns.is_empty() { reg.with_namespace(FnNamespace::Global) } else { reg };
        let volatile = std::mem::take(&mut self.volatile_next);
        // Tensor methods never change the Rust value of their receiver (in-place ops act on the
        // shared libtorch tensor), so they are registered as pure functions: otherwise Rhai would
        // "write back" `x[i]` through the index setter after `x[i].item()`, an in-place copy that
        // breaks autograd. Compound assignment (`x[i] += 1`) keeps the method form.
        let tensor_receiver = FUNC::param_types().first() == Some(&std::any::TypeId::of::<crate::tensor::Tensor>());
        let op_assign = matches!(name_for_purity.as_str(), "+=" | "-=" | "*=" | "/=");
        let f = func.into_rhai_function(!setter, volatile);
        let f = match f {
            RhaiFunc::Method { func, has_context, is_pure, is_volatile }
                if tensor_receiver && !setter && !op_assign =>
            {
                RhaiFunc::Pure { func, has_context, is_pure, is_volatile }
            }
            other => other,
        };
        // A panic anywhere below a native function is a script error, never a crash.
        let shown = match (ns, name_for_purity.as_str()) {
            (_, "") => "a property or index accessor".to_string(),
            ("", n) => n.to_string(),
            (ns, n) => format!("{ns}::{n}"),
        };
        let f = guard_panics(f, shown);
        // Rhai fills in the call position for global functions itself; only namespaced calls
        // (`torch::zeros(...)`) need the wrapper, which costs a context per call.
        let wrapped = if ns.is_empty() { f } else { with_call_position(f) };
        reg.with_params_info(info).with_comments([comment]).set_into_module_raw(module, FUNC::param_types(), wrapped);
    }

    /// Gives direct access to the global module (to register custom types, iterators…).
    pub fn global_module(&mut self) -> &mut Module {
        &mut self.global
    }

    /// Consumes the registry: the global module and the namespaced modules. A nested namespace
    /// (`"data::transforms"`) becomes a sub-module of its parent, so scripts call
    /// `data::transforms::resize(…)`.
    pub fn into_modules(mut self) -> (Shared<Module>, Vec<(String, Shared<Module>)>) {
        let mut nested: Vec<String> = self.namespaces.keys().filter(|k| k.contains("::")).cloned().collect();
        nested.sort_by_key(|k| std::cmp::Reverse(k.matches("::").count())); // deepest first
        for path in nested {
            if let (Some(m), Some((parent, name))) = (self.namespaces.remove(&path), path.rsplit_once("::")) {
                self.namespaces.entry(parent.to_string()).or_default().set_sub_module(name, m);
            }
        }
        let ns = self.namespaces.into_iter().map(|(k, m)| (k, Shared::new(m))).collect();
        (Shared::new(self.global), ns)
    }
}

/// Rhai's type of a native function (not exported under a name).
type FnAny = dyn Fn(Option<NativeCallContext>, &mut [&mut Dynamic]) -> Result<Dynamic, Box<EvalAltResult>>;

thread_local! {
    /// How many guarded native calls are running on this thread (they nest through callbacks).
    static GUARDED_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// The message of the last panic caught inside a guarded call.
    static CAUGHT_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Installs (once) a panic hook that keeps quiet about panics inside guarded native calls — they
/// become script errors — and reports every other panic as before.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED_DEPTH.with(|d| d.get()) > 0 {
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
                CAUGHT_PANIC.with(|c| *c.borrow_mut() = Some(format!("{msg}{at}")));
            } else {
                previous(info);
            }
        }));
    });
}

/// The libtorch error inside a panic from tch: tch 0.24 frees a `Scalar` argument (checking for
/// errors with `unwrap`) before it reads the error of the op that took it, so an op with a number
/// argument that libtorch refuses (`x % 0`, an out-of-range `scatter`, an `arange` too large to
/// allocate) panics with `…unwrap()… Err value: Torch("ZeroDivisionError\nException raised…")`.
/// That message is the user's error, not lt's: it is reported as libtorch worded it.
fn libtorch_error_in(panic_message: &str) -> Option<String> {
    let start = panic_message.find("Torch(\"")? + "Torch(\"".len();
    let quoted = &panic_message[start..];
    let end = quoted.rfind("\")").unwrap_or(quoted.len());
    let text = quoted[..end].replace("\\n", "\n").replace("\\\"", "\"");
    Some(crate::tensor::clean_torch_message(&text))
}

/// Runs a native function so that a panic inside it (a bug in lt, or in a library it calls)
/// becomes a script error naming the function, with the call's position, instead of a crash.
fn guard_panics(f: RhaiFunc, name: String) -> RhaiFunc {
    install_panic_hook();
    let wrap = |inner: Shared<FnAny>| -> Shared<FnAny> {
        let name = name.clone();
        Shared::new(move |ctx: Option<NativeCallContext>, args: &mut [&mut Dynamic]| {
            let pos = ctx.as_ref().map(|c| c.call_position()).unwrap_or(rhai::Position::NONE);
            GUARDED_DEPTH.with(|d| d.set(d.get() + 1));
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner(ctx, args)));
            GUARDED_DEPTH.with(|d| d.set(d.get() - 1));
            r.unwrap_or_else(|_| {
                let why = CAUGHT_PANIC.with(|c| c.borrow_mut().take()).unwrap_or_default();
                let message = match libtorch_error_in(&why) {
                    Some(torch) => torch,
                    None => format!("internal error in {name}: {why} (a bug in lt; please report it)"),
                };
                Err(Box::new(EvalAltResult::ErrorRuntime(message.into(), pos)))
            })
        })
    };
    match f {
        RhaiFunc::Pure { func, has_context, is_pure, is_volatile } => {
            RhaiFunc::Pure { func: wrap(func), has_context, is_pure, is_volatile }
        }
        RhaiFunc::Method { func, has_context, is_pure, is_volatile } => {
            RhaiFunc::Method { func: wrap(func), has_context, is_pure, is_volatile }
        }
        other => other,
    }
}

/// Wraps a native function so that its errors carry the script position of the call. Rhai fills
/// positions for most calls but not for namespaced ones (`torch::zeros(...)`), so every registered
/// function goes through this.
fn with_call_position(f: RhaiFunc) -> RhaiFunc {
    fn wrap(inner: Shared<FnAny>) -> Shared<FnAny> {
        Shared::new(move |ctx: Option<NativeCallContext>, args: &mut [&mut Dynamic]| {
            let pos = ctx.as_ref().map(|c| c.call_position());
            inner(ctx, args).map_err(|mut e: Box<EvalAltResult>| {
                if let Some(p) = pos {
                    if e.position().is_none() {
                        e.set_position(p);
                    }
                }
                e
            })
        })
    }
    match f {
        RhaiFunc::Pure { func, is_pure, is_volatile, .. } => {
            RhaiFunc::Pure { func: wrap(func), has_context: true, is_pure, is_volatile }
        }
        RhaiFunc::Method { func, is_pure, is_volatile, .. } => {
            RhaiFunc::Method { func: wrap(func), has_context: true, is_pure, is_volatile }
        }
        other => other,
    }
}
