//! `import "helpers" as h;`: Rhai's file resolver (modules beside the script), with import cycles
//! reported by name. Rhai's resolver would follow `a.rhai → b.rhai → a.rhai` until the stack
//! overflowed; here the chain of files being imported is kept, and a file that is already in it is
//! an error naming the cycle.
use rhai::module_resolvers::FileModuleResolver;
use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Shared};
use std::cell::RefCell;
use std::path::{Path, PathBuf};

thread_local! {
    /// The files being imported on this thread, outermost first.
    static IMPORTING: RefCell<Vec<PathBuf>> = const { RefCell::new(Vec::new()) };
}

/// Resolves imports relative to a folder (the importing script's), refusing cycles.
pub struct ScriptImports {
    files: FileModuleResolver,
}

impl ScriptImports {
    pub fn new(dir: &Path) -> ScriptImports {
        ScriptImports { files: FileModuleResolver::new_with_path(dir) }
    }
}

/// Drops its file from the import chain, however the import ended.
struct Importing;

impl Drop for Importing {
    fn drop(&mut self) {
        IMPORTING.with(|s| s.borrow_mut().pop());
    }
}

impl ModuleResolver for ScriptImports {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let file = self.files.get_file_path(path, source.and_then(|s| Path::new(s).parent()));
        let key = file.canonicalize().unwrap_or_else(|_| file.clone());
        let cycle = IMPORTING.with(|s| {
            let s = s.borrow();
            s.iter().position(|f| *f == key).map(|start| {
                let chain: Vec<String> = s[start..].iter().chain([&key]).map(|f| f.display().to_string()).collect();
                chain.join(" → ")
            })
        });
        if let Some(chain) = cycle {
            return Err(Box::new(EvalAltResult::ErrorRuntime(format!("import cycle: {chain}").into(), pos)));
        }
        IMPORTING.with(|s| s.borrow_mut().push(key.clone()));
        let _importing = Importing;
        refuse_lost_changes(&self.files, engine, source, path, pos)?;
        let module = self.files.resolve(engine, source, path, pos)?;
        // its functions stay reachable from the modules it builds (see module_fns)
        super::module_fns::record(&file.display().to_string(), &module);
        Ok(module)
    }
}

/// Refuses an imported file with a change that nothing sees (see [`super::param_copies`]), naming
/// the place in that file.
fn refuse_lost_changes(
    files: &FileModuleResolver,
    engine: &Engine,
    source: Option<&str>,
    path: &str,
    pos: Position,
) -> Result<(), Box<EvalAltResult>> {
    // a file that does not compile: the resolve that follows reports it as Rhai does
    let Some(Ok(ast)) = files.resolve_ast(engine, source, path, pos) else { return Ok(()) };
    let file = files.get_file_path(path, source.and_then(|s| Path::new(s).parent())).display().to_string();
    match super::param_copies::lost_changes(&ast, &file).first() {
        None => Ok(()),
        Some(c) => {
            let (line, col) = (c.position.line().unwrap_or(0), c.position.position().unwrap_or(0));
            Err(Box::new(EvalAltResult::ErrorRuntime(format!("{file}:{line}:{col}: {}", c.message()).into(), pos)))
        }
    }
}
