//! Builds the Rhai engine: limits, every domain's registry, the embedded stdlib modules.
use super::registry::Registry;
use rhai::{Engine, Module, OptimizationLevel, Scope, Shared};

/// Rhai files shipped inside the binary, as (namespace, path, source): every file of a namespace
/// joins one static module (`stdlib/models/resnet.rhai` and `stdlib/models/gpt2.rhai` are both
/// `models::`). Each file is compiled on its own, so errors name its path and line; a function of
/// one file calls another file's through `module_fns`. Add a file with
/// `("models", "stdlib/models/x.rhai", include_str!("../../stdlib/models/x.rhai"))`.
pub const STDLIB: &[(&str, &str, &str)] = &[
    // the vision zoo (torchvision's models)
    ("models", "stdlib/models/resnet.rhai", include_str!("../../stdlib/models/resnet.rhai")),
    ("models", "stdlib/models/mobilenet.rhai", include_str!("../../stdlib/models/mobilenet.rhai")),
    ("models", "stdlib/models/vit.rhai", include_str!("../../stdlib/models/vit.rhai")),
    ("models", "stdlib/models/unet.rhai", include_str!("../../stdlib/models/unet.rhai")),
    // text models (issue #18)
    ("models", "stdlib/models/gpt2.rhai", include_str!("../../stdlib/models/gpt2.rhai")),
    ("models", "stdlib/models/bert.rhai", include_str!("../../stdlib/models/bert.rhai")),
    ("models", "stdlib/models/pretrained.rhai", include_str!("../../stdlib/models/pretrained.rhai")),
];

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
    crate::metrics::api::register(&mut reg);
    crate::script::loaded::register(&mut reg);
    reg
}

/// How deep script function calls may nest.
pub const MAX_CALL_LEVELS: usize = 512;

/// Sizes a script's values may grow to, raisable by environment variables (0 = unlimited):
/// `LT_MAX_STRING_SIZE` (bytes, default 64 Mi), `LT_MAX_ARRAY_SIZE` (elements, default 64 Mi) and
/// `LT_MAX_MAP_SIZE` (entries, default 16 Mi). Tensors are not script values and are not bounded.
pub struct ScriptLimits {
    pub string: usize,
    pub array: usize,
    pub map: usize,
}

impl ScriptLimits {
    pub fn from_env() -> Result<ScriptLimits, String> {
        let get = |name: &str, default: usize| -> Result<usize, String> {
            match std::env::var(name) {
                Ok(v) => v.trim().parse().map_err(|_| format!("{name} must be a number (0 = unlimited), got '{v}'")),
                Err(_) => Ok(default),
            }
        };
        Ok(ScriptLimits {
            string: get("LT_MAX_STRING_SIZE", 64 << 20)?,
            array: get("LT_MAX_ARRAY_SIZE", 64 << 20)?,
            map: get("LT_MAX_MAP_SIZE", 16 << 20)?,
        })
    }
}

/// A new engine with the whole `lt` surface and the stdlib.
pub fn new_engine() -> Result<Engine, String> {
    let mut engine = Engine::new();
    engine.set_optimization_level(OptimizationLevel::Simple);
    // Ctrl-C (where a SIGINT handler is installed: the REPL, a paused fit) and the fit's max_time
    // stop a running script, however long a hook loops.
    engine.on_progress(|ops| {
        if crate::repl::signal::take_interrupt() {
            return Some(rhai::Dynamic::from(crate::repl::signal::INTERRUPTED_MSG));
        }
        if ops % 1024 == 0 && crate::trainer::deadline::passed() {
            return Some(rhai::Dynamic::from(crate::trainer::deadline::STOPPED));
        }
        None
    });
    // print/debug as Rhai's defaults do, but without panicking on a closed stdout (`lt run x | head`)
    engine.on_print(|s| outln!("{s}"));
    engine.on_debug(|s, source, pos| match source {
        Some(source) => outln!("{source} @ {pos:?} | {s}"),
        None if pos.is_none() => outln!("{s}"),
        None => outln!("{pos:?} | {s}"),
    });
    // Debug builds default to low limits; set them explicitly so scripts behave the same everywhere.
    engine.set_max_call_levels(MAX_CALL_LEVELS);
    engine.set_max_expr_depths(512, 512);
    engine.set_max_operations(0);
    // Bounded data, so `for i in 0..64 { s += s; }` is a script error, not an abort.
    let limits = ScriptLimits::from_env()?;
    engine.set_max_string_size(limits.string);
    engine.set_max_array_size(limits.array);
    engine.set_max_map_size(limits.map);
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
    let mut stdlib: Vec<(&str, Module)> = Vec::new();
    for (namespace, path, source) in STDLIB {
        let (module, lib) = compile_stdlib(&engine, path, source)?;
        super::module_fns::record(path, &lib);
        match stdlib.iter_mut().find(|(ns, _)| ns == namespace) {
            Some((_, joined)) => {
                joined.combine((*module).clone());
            }
            None => stdlib.push((namespace, (*module).clone())),
        }
    }
    for (namespace, module) in stdlib {
        engine.register_static_module(namespace, Shared::new(module));
    }
    // a module built in an imported file or the stdlib calls its own functions from anywhere
    #[allow(deprecated)] // "volatile", not deprecated
    engine.on_missing_function(super::module_fns::resolve);
    Ok(engine)
}

/// The file's public functions as a module, and all its functions (`private fn` helpers too), for
/// the calls its modules' closures make from wherever they are stored.
fn compile_stdlib(engine: &Engine, path: &str, source: &str) -> Result<(Shared<Module>, Shared<Module>), String> {
    let mut ast = engine.compile(source).map_err(|e| format!("{path}: {e}"))?;
    ast.set_source(path.to_string());
    if let Some(c) = super::param_copies::lost_changes(&ast, path).first() {
        return Err(format!("{path}:{}: {}", c.position, c.message()));
    }
    let module = Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(|e| format!("{path}: {e}"))?;
    Ok((Shared::new(module), ast.shared_lib().clone()))
}
