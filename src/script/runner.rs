//! A compiled script file: its engine, AST and source, so errors can quote the offending line.
use super::engine::new_engine;
use super::error::ScriptError;
use rhai::{Dynamic, Engine, Scope, AST};
use std::path::{Path, PathBuf};

pub struct Script {
    pub engine: Engine,
    pub ast: AST,
    pub path: PathBuf,
    pub source: String,
}

/// Why a script could not be loaded or run.
#[derive(Debug)]
pub enum LoadError {
    Io(PathBuf, std::io::Error),
    Engine(String),
    Script(ScriptError),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Io(p, e) => write!(f, "error: cannot read {}: {e}", p.display()),
            LoadError::Engine(e) => write!(f, "error: {e}"),
            LoadError::Script(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// A module script's hooks are called without running its top level, so its top-level
/// `import "path" as name;` statements are resolved once here and their modules registered under
/// `name` on the engine: `name::f()` then works inside every function.
fn register_top_level_imports(engine: &mut Engine, ast: &AST) -> Result<(), Box<rhai::EvalAltResult>> {
    for stmt in ast.statements() {
        let rhai::Stmt::Import(x, pos) = stmt else { continue };
        let (rhai::Expr::StringConstant(module_path, _), alias) = &**x else { continue };
        if alias.name.is_empty() {
            continue;
        }
        let module = engine.module_resolver().resolve(engine, ast.source(), module_path, *pos)?;
        engine.register_static_module(alias.name.as_str(), module);
    }
    Ok(())
}

/// Script imports (see [`super::imports::ScriptImports`]) that refuse anything but a regular file:
/// a FIFO would block the engine, a device would be read forever.
struct RegularFileImports {
    /// Rhai's resolver for the same folder, to name the file an import path resolves to.
    files: rhai::module_resolvers::FileModuleResolver,
    inner: super::imports::ScriptImports,
}

impl RegularFileImports {
    fn new(dir: &Path) -> RegularFileImports {
        RegularFileImports {
            files: rhai::module_resolvers::FileModuleResolver::new_with_path(dir),
            inner: super::imports::ScriptImports::new(dir),
        }
    }

    fn check(&self, path: &str, pos: rhai::Position) -> Result<(), Box<rhai::EvalAltResult>> {
        let file = self.files.get_file_path(path, None);
        match crate::fs::check_regular(&file) {
            Err(e) if file.exists() => Err(Box::new(rhai::EvalAltResult::ErrorInModule(
                path.to_string(),
                Box::new(rhai::EvalAltResult::ErrorRuntime(format!("cannot read {}: {e}", file.display()).into(), pos)),
                pos,
            ))),
            _ => Ok(()),
        }
    }
}

impl rhai::ModuleResolver for RegularFileImports {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: rhai::Position,
    ) -> Result<rhai::Shared<rhai::Module>, Box<rhai::EvalAltResult>> {
        self.check(path, pos)?;
        self.inner.resolve(engine, source, path, pos)
    }

    fn resolve_raw(
        &self,
        engine: &Engine,
        global: &mut rhai::GlobalRuntimeState,
        scope: &mut Scope,
        path: &str,
        pos: rhai::Position,
    ) -> Result<rhai::Shared<rhai::Module>, Box<rhai::EvalAltResult>> {
        self.check(path, pos)?;
        self.inner.resolve_raw(engine, global, scope, path, pos)
    }

    fn resolve_ast(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: rhai::Position,
    ) -> Option<Result<AST, Box<rhai::EvalAltResult>>> {
        if let Err(e) = self.check(path, pos) {
            return Some(Err(e));
        }
        self.inner.resolve_ast(engine, source, path, pos)
    }
}

impl Script {
    /// Reads and compiles `path`.
    pub fn load(path: &Path) -> Result<Script, LoadError> {
        let source = crate::fs::read_regular_to_string(path).map_err(|e| LoadError::Io(path.to_path_buf(), e))?;
        Self::from_source(path, source)
    }

    /// Compiles `source` as if read from `path`. `import "helpers" as h;` finds `helpers.rhai`
    /// beside the script.
    pub fn from_source(path: &Path, source: String) -> Result<Script, LoadError> {
        let mut engine = new_engine().map_err(LoadError::Engine)?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        engine.set_module_resolver(RegularFileImports::new(dir));
        let name = path.display().to_string();
        let mut ast =
            engine.compile(&source).map_err(|e| LoadError::Script(ScriptError::from_parse(&e, &name, &source)))?;
        ast.set_source(name.clone());
        if let Some(c) = crate::script::param_copies::lost_changes(&ast, &name).first() {
            return Err(LoadError::Script(ScriptError::at(&name, &source, c.position, c.message())));
        }
        crate::script::error::remember_closures(&ast, &name);
        register_top_level_imports(&mut engine, &ast)
            .map_err(|e| LoadError::Script(ScriptError::from_eval(&e, &name, &source, None)))?;
        Ok(Script { engine, ast, path: path.to_path_buf(), source })
    }

    pub fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// Runs the script's top level.
    pub fn run(&self, scope: &mut Scope) -> Result<Dynamic, ScriptError> {
        self.engine
            .eval_ast_with_scope::<Dynamic>(scope, &self.ast)
            .map_err(|e| ScriptError::from_eval(&e, &self.name(), &self.source, None))
    }
}
