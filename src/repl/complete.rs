//! Tab completion for the terminal editor. Completion words come from
//! the engine's own metadata (`doc::all_docs`): namespaces (`torch::`), their functions, methods
//! and properties after a `.`, the REPL's variables and `:` commands.
use super::commands::COMMANDS;
use rhai::Engine;
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

/// Every completion word, split by where it fits.
#[derive(Default)]
pub struct Words {
    /// `torch::`, `nn::init::`, …
    pub namespaces: Vec<String>,
    /// `torch::zeros`, …
    pub qualified: Vec<String>,
    /// Global functions, also usable as methods (`abs`, `matmul`).
    pub globals: Vec<String>,
    /// Properties (`shape`, `grad`).
    pub properties: Vec<String>,
}

fn is_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}

impl Words {
    pub fn from_engine(engine: &Engine) -> Words {
        let docs = crate::script::doc::all_docs(engine).unwrap_or_default();
        let (mut ns, mut q, mut g, mut p) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for d in docs {
            let name = d.qualified;
            if let Some(prop) = name.strip_prefix('.') {
                if is_name(prop) {
                    p.insert(prop.to_string());
                }
            } else if let Some((prefix, last)) = name.rsplit_once("::") {
                if is_name(last) {
                    q.insert(name.clone());
                }
                let mut acc = String::new();
                for part in prefix.split("::") {
                    acc.push_str(part);
                    acc.push_str("::");
                    ns.insert(acc.clone());
                }
            } else if is_name(&name) && !name.starts_with("__") {
                // `__nn_linear_forward` and friends are lt's own plumbing
                g.insert(name);
            }
        }
        Words {
            namespaces: ns.into_iter().collect(),
            qualified: q.into_iter().collect(),
            globals: g.into_iter().collect(),
            properties: p.into_iter().collect(),
        }
    }

    /// Candidates for the word before `pos` in `line`: (start of the word, candidates).
    pub fn complete(&self, line: &str, pos: usize, vars: &[String]) -> (usize, Vec<String>) {
        let head = &line[..pos.min(line.len())];
        let start = head
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == ':')
            .last()
            .map(|(i, _)| i)
            .unwrap_or(head.len());
        let word = &head[start..];
        let before = head[..start].chars().last();
        let mut out: BTreeSet<String> = BTreeSet::new();
        let s = head.trim_start();
        if s.starts_with(':') && !s.contains(' ') {
            for (c, _) in COMMANDS {
                let name = c.split_whitespace().next().unwrap_or(c);
                if name.starts_with(s) {
                    out.insert(name.to_string());
                }
            }
            return (head.len() - s.len(), out.into_iter().collect());
        }
        if before == Some('.') {
            // the keys of a map or module variable (`this.mo` → `model`), then methods
            let recv_end = start - 1;
            let recv_start = head[..recv_end]
                .char_indices()
                .rev()
                .take_while(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == '.')
                .last()
                .map_or(recv_end, |(i, _)| i);
            let prefix = format!("{}.", &head[recv_start..recv_end]);
            let keys: BTreeSet<&str> = vars
                .iter()
                .filter_map(|v| v.strip_prefix(&prefix))
                .filter(|k| !k.contains('.') && k.starts_with(word))
                .collect();
            let mut list: Vec<String> = keys.into_iter().map(str::to_string).collect();
            let methods: BTreeSet<&String> =
                self.globals.iter().chain(&self.properties).filter(|n| n.starts_with(word)).collect();
            list.extend(methods.into_iter().filter(|m| !list.contains(m)).cloned().collect::<Vec<_>>());
            return (start, list);
        } else if word.contains("::") {
            out.extend(self.namespaces.iter().chain(&self.qualified).filter(|n| n.starts_with(word)).cloned());
        } else {
            out.extend(
                self.namespaces
                    .iter()
                    .chain(&self.globals)
                    .chain(vars.iter().filter(|v| !v.contains('.')))
                    .filter(|n| n.starts_with(word))
                    .cloned(),
            );
        }
        (start, out.into_iter().collect())
    }
}

/// The names completion offers for the variables of `scope`: each variable, and the keys of map
/// values as dotted paths (`this.model`, `this.model.layers`), a few levels deep; keys starting
/// with `_` (hidden metadata) are left out.
pub fn scope_names(scope: &rhai::Scope) -> Vec<String> {
    const DEPTH: usize = 4;
    const MAX: usize = 5000;
    fn walk(path: &str, v: &rhai::Dynamic, depth: usize, out: &mut Vec<String>) {
        if depth >= DEPTH || out.len() >= MAX {
            return;
        }
        if let Some(m) = v.read_lock::<rhai::Map>() {
            for (k, child) in m.iter().filter(|(k, _)| !k.starts_with('_') && is_name(k)) {
                let p = format!("{path}.{k}");
                out.push(p.clone());
                walk(&p, child, depth + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    for (name, _, value) in scope.iter_raw() {
        out.push(name.to_string());
        walk(name, value, 0, &mut out);
    }
    out
}

/// The rustyline helper: completion from [`Words`] and multi-line input for unfinished code.
pub struct ReplHelper {
    pub words: Words,
    pub vars: Rc<RefCell<Vec<String>>>,
}

impl Completer for ReplHelper {
    type Candidate = Pair;
    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let vars = self.vars.borrow();
        let (start, words) = self.words.complete(line, pos, &vars);
        Ok((start, words.into_iter().map(|w| Pair { display: w.clone(), replacement: w }).collect()))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {}

/// Every line is taken as typed: unfinished code continues on the next line, after the
/// continuation prompt (see `input::read_continued`).
impl Validator for ReplHelper {
    fn validate(&self, _ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(ValidationResult::Valid(None))
    }
}

impl Helper for ReplHelper {}
