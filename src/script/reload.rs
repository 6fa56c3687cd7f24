//! Hot reload of a module script (`lt fit --watch`, the REPL's `:reload`). When the script (or a
//! `.rhai` file beside it, e.g. a module it imports) is saved, the file is recompiled and, at the
//! next step boundary, its functions replace the old ones; `this` (weights), optimizer and
//! scheduler state, step counters and loggers are untouched. A file that does not compile is
//! reported with its location and training goes on with the old code. A reload that changes a
//! function that only runs at start-up (`init`, `configure_optimizers`, `trainer`, `hparams`,
//! `callbacks`, `datamodule`) is refused as a whole: it needs a restart, and applying the rest
//! would leave a model that matches neither file.
use super::runner::Script;
use crate::repl::multiline::fn_texts;
use notify::{EventKind, RecursiveMode, Watcher as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};

/// Functions whose change needs a restart.
pub const RESTART_FNS: &[&str] = &["init", "configure_optimizers", "trainer", "hparams", "callbacks", "datamodule"];

/// Watches a script's folder for saved `.rhai` files.
pub struct Watcher {
    _watcher: notify::RecommendedWatcher,
    rx: Receiver<notify::Result<notify::Event>>,
    main: PathBuf,
    /// Reloads applied so far.
    pub reloads: usize,
    /// Text of the main file last looked at (applied or refused), so one save is handled once.
    last_text: Option<String>,
}

/// What a poll found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    pub main: bool,
    /// Another `.rhai` file in the folder (an imported module).
    pub other: bool,
}

impl Watcher {
    pub fn new(script: &Path) -> Result<Watcher, String> {
        let main = script.canonicalize().map_err(|e| format!("cannot watch {}: {e}", script.display()))?;
        let dir = main.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let (tx, rx) = channel();
        let mut watcher = notify::recommended_watcher(move |r| {
            let _ = tx.send(r);
        })
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        watcher.watch(&dir, RecursiveMode::NonRecursive).map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        Ok(Watcher { _watcher: watcher, rx, main, reloads: 0, last_text: None })
    }

    /// Drains the pending file events.
    pub fn poll(&mut self) -> Changes {
        let mut c = Changes::default();
        while let Ok(ev) = self.rx.try_recv() {
            let Ok(ev) = ev else { continue };
            if !matches!(
                ev.kind,
                EventKind::Create(_)
                    | EventKind::Modify(
                        notify::event::ModifyKind::Data(_)
                            | notify::event::ModifyKind::Name(_)
                            | notify::event::ModifyKind::Any
                    )
                    | EventKind::Remove(_)
            ) {
                continue;
            }
            for p in &ev.paths {
                if p.extension().is_none_or(|e| e != "rhai") {
                    continue;
                }
                if p.file_name() == self.main.file_name() {
                    c.main = true;
                } else {
                    c.other = true;
                }
            }
        }
        c
    }

    /// Whether `text` of the main file was already handled; records it.
    pub fn seen(&mut self, text: &str) -> bool {
        if self.last_text.as_deref() == Some(text) {
            return true;
        }
        self.last_text = Some(text.to_string());
        false
    }
}

/// Rereads and compiles `current`'s file. `Ok(None)`: nothing changed (unless `force`, used when
/// an imported module changed: the new engine reads imports afresh). `Ok(Some)`: the new script
/// and the names of the functions that changed. `Err`: the report to print (compile error, or a
/// change that needs a restart); the old script stays.
pub fn prepare(current: &Script, force: bool) -> Result<Option<(Script, Vec<String>)>, String> {
    let source = crate::fs::read_regular_to_string(&current.path)
        .map_err(|e| format!("cannot read {}: {e}", current.path.display()))?;
    if source == current.source && !force {
        return Ok(None);
    }
    prepare_source(current, source)
}

/// Like [`prepare`], for a given new text.
pub fn prepare_source(current: &Script, source: String) -> Result<Option<(Script, Vec<String>)>, String> {
    let (old, new) = (fn_texts(&current.source), fn_texts(&source));
    let script = Script::from_source(&current.path, source).map_err(|e| e.to_string().trim_end().to_string())?;
    let mut changed: Vec<String> =
        old.keys().chain(new.keys()).filter(|k| old.get(*k) != new.get(*k)).cloned().collect();
    changed.sort();
    changed.dedup();
    let restart: Vec<&str> = changed.iter().map(String::as_str).filter(|n| RESTART_FNS.contains(n)).collect();
    if !restart.is_empty() {
        return Err(format!(
            "{}: {} changed; that needs a restart (it only runs at start-up), so nothing was reloaded",
            current.name(),
            restart.join(", ")
        ));
    }
    Ok(Some((script, changed)))
}

/// "training_step, validation_step changed" or "imported modules re-read".
pub fn describe(changed: &[String]) -> String {
    if changed.is_empty() {
        "no function changed; imported modules re-read".into()
    } else {
        format!("{} changed", changed.join(", "))
    }
}
