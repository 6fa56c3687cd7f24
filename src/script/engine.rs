//! Builds the Rhai engine: limits, every domain's registry, the embedded stdlib modules.
use super::registry::Registry;
use rhai::{Engine, Module, OptimizationLevel, Scope, Shared};

/// Rhai modules shipped inside the binary (`stdlib/*.rhai`), registered as static namespaces.
pub const STDLIB: &[(&str, &str)] = &[("metrics", include_str!("../../stdlib/metrics.rhai"))];

/// Every domain's script surface, in one place.
pub fn registry() -> Registry {
    let mut reg = Registry::new();
    crate::tensor::api::register(&mut reg);
    crate::optim::api::register(&mut reg);
    crate::sched::api::register(&mut reg);
    crate::trainer::api::register(&mut reg);
    crate::callbacks::api::register(&mut reg);
    crate::data::api::register(&mut reg);
    crate::nn::api::register(&mut reg);
    crate::script::loaded::register(&mut reg);
    reg
}

/// A new engine with the whole `lt` surface and the stdlib.
pub fn new_engine() -> Result<Engine, String> {
    let mut engine = Engine::new();
    engine.set_optimization_level(OptimizationLevel::Simple);
    // Debug builds default to low limits; set them explicitly so scripts behave the same everywhere.
    engine.set_max_call_levels(512);
    engine.set_max_expr_depths(512, 512);
    engine.set_max_operations(0);
    engine.set_max_string_size(0);
    engine.set_max_array_size(0);
    engine.set_max_map_size(0);
    // `var` is reserved in Rhai but is PyTorch's name for variance (`x.var(0)`): let it through as
    // an ordinary identifier.
    #[allow(deprecated)] // "volatile", not deprecated
    engine.on_parse_token(|token, _, _| match token {
        rhai::Token::Reserved(s) if s.as_str() == "var" => rhai::Token::Identifier(s),
        t => t,
    });
    engine.register_custom_operator("@", 180).map_err(|e| format!("cannot register the @ operator: {e}"))?;

    crate::repl::pause::register(&mut engine)?;
    let (global, namespaces) = registry().into_modules();
    engine.register_global_module(global);
    for (name, module) in namespaces {
        engine.register_static_module(name, module);
    }
    for (name, source) in STDLIB {
        let module = compile_stdlib(&engine, name, source)?;
        engine.register_static_module(*name, module);
    }
    Ok(engine)
}

fn compile_stdlib(engine: &Engine, name: &str, source: &str) -> Result<Shared<Module>, String> {
    let mut ast = engine.compile(source).map_err(|e| format!("stdlib/{name}.rhai: {e}"))?;
    ast.set_source(format!("stdlib/{name}.rhai"));
    let module = Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(|e| format!("stdlib/{name}.rhai: {e}"))?;
    Ok(Shared::new(module))
}
