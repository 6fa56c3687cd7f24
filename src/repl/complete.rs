//! Tab completion and multi-line validation for the terminal editor. Completion words come from
//! the engine's own metadata (`doc::all_docs`): namespaces (`torch::`), their functions, methods
//! and properties after a `.`, the REPL's variables and `:` commands.
use super::commands::COMMANDS;
use super::multiline::is_incomplete;
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
            } else if is_name(&name) {
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
            out.extend(self.globals.iter().chain(&self.properties).filter(|n| n.starts_with(word)).cloned());
        } else if word.contains("::") {
            out.extend(self.namespaces.iter().chain(&self.qualified).filter(|n| n.starts_with(word)).cloned());
        } else {
            out.extend(
                self.namespaces.iter().chain(&self.globals).chain(vars).filter(|n| n.starts_with(word)).cloned(),
            );
        }
        (start, out.into_iter().collect())
    }
}

/// The rustyline helper: completion from [`Words`] and multi-line input for unfinished code.
pub struct ReplHelper {
    pub words: Words,
    pub vars: Rc<RefCell<Vec<String>>>,
    pub engine: Engine,
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

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(if is_incomplete(&self.engine, ctx.input()) {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Valid(None)
        })
    }
}

impl Helper for ReplHelper {}
