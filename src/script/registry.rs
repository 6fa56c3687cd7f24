//! Collects every script-visible function with its signature and doc comment, grouped by
//! namespace (`torch::`, `nn::`, … or the global namespace for methods and operators).
//!
//! Each domain's `api.rs` fills a [`Registry`]; [`crate::script::engine`] installs it into a Rhai
//! engine. Because `lt doc` reads the docs back from the engine's own metadata, the reference can
//! never drift from what is registered.
use rhai::{
    FnNamespace, FuncRegistration, Module, RhaiNativeFunc, Shared, Variant,
};
use std::collections::BTreeMap;

/// Functions registered so far: one module of globals (methods, operators, properties) and one
/// module per namespace.
#[derive(Default)]
pub struct Registry {
    global: Module,
    namespaces: BTreeMap<String, Module>,
}

/// Maps a Rust type name to the name a script user sees.
pub fn script_type_name(rust: &str) -> String {
    let t = rust.trim().trim_start_matches("&mut ").trim_start_matches('&');
    if let Some(inner) = t.strip_prefix("core::result::Result<").or_else(|| t.strip_prefix("Result<")) {
        // Result<T, Box<EvalAltResult>> shows as T
        let inner = inner.split(',').next().unwrap_or(inner);
        return script_type_name(inner);
    }
    if t.contains("BTreeMap<") {
        return "map".into();
    }
    if t.contains("Vec<Dynamic>") || t.contains("SmallVec<") {
        return "array".into();
    }
    let last = t.rsplit("::").next().unwrap_or(t);
    match last {
        "i64" | "INT" => "int".into(),
        "f64" | "FLOAT" => "float".into(),
        "bool" => "bool".into(),
        "ImmutableString" | "String" | "str" => "string".into(),
        "Dynamic" => "any".into(),
        "Array" | "Vec<Dynamic>" => "array".into(),
        "Map" | "BTreeMap<SmartString, Dynamic>" => "map".into(),
        "FnPtr" => "fn".into(),
        "()" => "()".into(),
        other => {
            if let Some(inner) = other.strip_prefix("Result<") {
                // Result<T, Box<EvalAltResult>> shows as T
                let inner = inner.split(',').next().unwrap_or(inner);
                return script_type_name(inner);
            }
            other.to_string()
        }
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
        self.func_with(ns, FuncRegistration::new(name), params, doc, func)
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
        self.func_with(ns, FuncRegistration::new(name).with_volatility(true), params, doc, func)
    }

    /// Registers a property getter `x.name`.
    pub fn getter<A: 'static, const X: bool, R, const F: bool, FUNC>(
        &mut self,
        name: &str,
        doc: &str,
        func: FUNC,
    ) where
        R: Variant + Clone,
        FUNC: RhaiNativeFunc<A, 1, X, R, F> + 'static,
    {
        self.func_with("", FuncRegistration::new_getter(name), "self", doc, func)
    }

    /// Registers a property setter `x.name = v`.
    pub fn setter<A: 'static, const X: bool, R, const F: bool, FUNC>(
        &mut self,
        name: &str,
        doc: &str,
        func: FUNC,
    ) where
        R: Variant + Clone,
        FUNC: RhaiNativeFunc<A, 2, X, R, F> + 'static,
    {
        self.func_with("", FuncRegistration::new_setter(name), "self, value", doc, func)
    }

    /// Registers an index getter `x[i]`.
    pub fn index_get<A: 'static, const X: bool, R, const F: bool, FUNC>(&mut self, doc: &str, func: FUNC)
    where
        R: Variant + Clone,
        FUNC: RhaiNativeFunc<A, 2, X, R, F> + 'static,
    {
        self.func_with("", FuncRegistration::new_index_getter(), "self, index", doc, func)
    }

    /// Registers an index setter `x[i] = v`.
    pub fn index_set<A: 'static, const X: bool, R, const F: bool, FUNC>(&mut self, doc: &str, func: FUNC)
    where
        R: Variant + Clone,
        FUNC: RhaiNativeFunc<A, 3, X, R, F> + 'static,
    {
        self.func_with("", FuncRegistration::new_index_setter(), "self, index, value", doc, func)
    }

    fn func_with<A: 'static, const N: usize, const X: bool, R, const F: bool, FUNC>(
        &mut self,
        ns: &str,
        reg: FuncRegistration,
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
        let module = if ns.is_empty() {
            &mut self.global
        } else {
            self.namespaces.entry(ns.to_string()).or_default()
        };
        let reg = if ns.is_empty() { reg.with_namespace(FnNamespace::Global) } else { reg };
        reg.with_params_info(info).with_comments([comment]).set_into_module(module, func);
    }

    /// Gives direct access to the global module (to register custom types, iterators…).
    pub fn global_module(&mut self) -> &mut Module {
        &mut self.global
    }

    /// Consumes the registry: the global module and the namespaced modules.
    pub fn into_modules(self) -> (Shared<Module>, Vec<(String, Shared<Module>)>) {
        let ns = self
            .namespaces
            .into_iter()
            .map(|(k, m)| (k, Shared::new(m)))
            .collect();
        (Shared::new(self.global), ns)
    }
}
