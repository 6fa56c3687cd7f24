//! `lt doc`: the reference of every script-visible function, read back from the engine's own
//! metadata (so it cannot drift from what is registered).
use rhai::Engine;
use serde_json::Value;

/// One documented overload.
#[derive(Debug, Clone)]
pub struct FnDoc {
    /// `torch::zeros` or `abs` (methods and operators are global).
    pub qualified: String,
    pub signature: String,
    pub doc: String,
}

impl FnDoc {
    /// The fenced ```rhai examples in the doc comment.
    pub fn examples(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur: Option<String> = None;
        for line in self.doc.lines() {
            let t = line.trim();
            match &mut cur {
                None if t.starts_with("```rhai") => cur = Some(String::new()),
                Some(_) if t.starts_with("```") => {
                    out.extend(cur.take());
                }
                Some(buf) => {
                    buf.push_str(line);
                    buf.push('\n');
                }
                None => {}
            }
        }
        out
    }
}

fn strip_comment(c: &str) -> String {
    c.lines()
        .map(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix("///").unwrap_or(l);
            l.strip_prefix(' ').unwrap_or(l).to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn collect(prefix: &str, v: &Value, out: &mut Vec<FnDoc>) {
    if let Some(fns) = v.get("functions").and_then(Value::as_array) {
        for f in fns {
            // a closure of a stdlib file (a module's `forward: |x| …`) is code, not API
            let name = f.get("name").and_then(Value::as_str).unwrap_or("?");
            if f.get("isAnonymous").and_then(Value::as_bool) == Some(true) || name.starts_with("anon$") {
                continue;
            }
            let sig = f.get("signature").and_then(Value::as_str).unwrap_or(name);
            let doc = f
                .get("docComments")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(strip_comment).collect::<Vec<_>>().join("\n"))
                .unwrap_or_default();
            let qualified = if prefix.is_empty() { name.to_string() } else { format!("{prefix}::{name}") };
            let signature = if prefix.is_empty() { sig.to_string() } else { format!("{prefix}::{sig}") };
            out.push(FnDoc { qualified, signature, doc });
        }
    }
    if let Some(mods) = v.get("modules").and_then(Value::as_object) {
        for (name, m) in mods {
            let p = if prefix.is_empty() { name.clone() } else { format!("{prefix}::{name}") };
            collect(&p, m, out);
        }
    }
}

/// Every function the engine exposes beyond Rhai's own standard library, sorted by name.
pub fn all_docs(engine: &Engine) -> Result<Vec<FnDoc>, String> {
    let json = engine.gen_fn_metadata_to_json(false).map_err(|e| format!("cannot read the engine's metadata: {e}"))?;
    let v: Value = serde_json::from_str(&json).map_err(|e| format!("bad metadata: {e}"))?;
    let mut out = Vec::new();
    collect("", &v, &mut out);
    // Internal helpers of property access are listed under their property name.
    for d in &mut out {
        if let Some(p) = d.qualified.strip_prefix("get$") {
            d.qualified = format!(".{p}");
        } else if let Some(p) = d.qualified.strip_prefix("set$") {
            d.qualified = format!(".{p} =");
        }
    }
    out.sort_by(|a, b| a.qualified.cmp(&b.qualified).then(a.signature.cmp(&b.signature)));
    Ok(out)
}

fn first_line(doc: &str) -> &str {
    doc.lines().next().unwrap_or("")
}

/// The width of the signature column in a listing.
const SIG_COLUMN: usize = 60;

/// One line per overload: the signature, then the first line of its doc, wrapped to `width`
/// under its column (or on lines of its own below a signature wider than the column).
fn listing(docs: &[&FnDoc], width: Option<usize>, colour: bool) -> String {
    use crate::console::style::{paint_if, wrap, Style};
    let mut out = String::new();
    for d in docs {
        let sig = paint_if(colour, Style::Name, &d.signature);
        let first = first_line(&d.doc);
        let Some(w) = width else {
            let pad = " ".repeat(SIG_COLUMN.saturating_sub(d.signature.chars().count()));
            out.push_str(&format!("{sig}{pad} {first}\n"));
            continue;
        };
        let sig_len = d.signature.chars().count();
        if sig_len < SIG_COLUMN && w >= SIG_COLUMN + 1 + 30 {
            let lines = wrap(first, w - SIG_COLUMN - 1);
            let pad = " ".repeat(SIG_COLUMN - sig_len);
            out.push_str(&format!("{sig}{pad} {}\n", lines.first().map_or("", String::as_str)));
            for l in lines.iter().skip(1) {
                out.push_str(&format!("{} {l}\n", " ".repeat(SIG_COLUMN)));
            }
        } else {
            out.push_str(&format!("{sig}\n"));
            for l in wrap(first, w.saturating_sub(4).max(20)) {
                out.push_str(&format!("    {l}\n"));
            }
        }
    }
    out
}

/// A doc comment indented by 4, its prose wrapped to `width` (code blocks as they are).
fn doc_body(doc: &str, width: Option<usize>) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for l in doc.lines() {
        if l.trim_start().starts_with("```") {
            in_code = !in_code;
            out.push_str(&format!("    {l}\n"));
            continue;
        }
        match width {
            Some(w) if !in_code && !l.trim().is_empty() => {
                let lead = l.len() - l.trim_start().len();
                let indent = " ".repeat(4 + lead);
                for part in crate::console::style::wrap(l.trim_start(), w.saturating_sub(4 + lead).max(20)) {
                    out.push_str(&format!("{indent}{part}\n"));
                }
            }
            _ if l.trim().is_empty() => out.push('\n'),
            _ => out.push_str(&format!("    {l}\n")),
        }
    }
    out
}

/// The namespace a query names (`nn::`, `nn`, `nn::init`), if it is one.
fn namespace_of<'a>(docs: &[FnDoc], q: &'a str) -> Option<&'a str> {
    let ns = q.strip_suffix("::").unwrap_or(q);
    let prefix = format!("{ns}::");
    (!ns.is_empty() && docs.iter().any(|d| d.qualified.starts_with(&prefix))).then_some(ns)
}

/// The names closest to a misspelt `q`: those that contain it, and those a few edits away
/// (compared with the whole name and with its last part), closest first.
pub fn suggestions(docs: &[FnDoc], q: &str) -> Vec<String> {
    let names: std::collections::BTreeSet<&str> = docs.iter().map(|d| d.qualified.as_str()).collect();
    let budget = (q.chars().count() / 3).max(1);
    let mut scored: Vec<(usize, &str)> = names
        .into_iter()
        .filter_map(|n| {
            let short = n.rsplit("::").next().unwrap_or(n).trim_start_matches('.');
            if n.contains(q) {
                return Some((0, n));
            }
            let d = crate::trainer::hooks::edit_distance(q, short).min(crate::trainer::hooks::edit_distance(q, n));
            (d <= budget).then_some((d, n))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(12).map(|(_, n)| n.to_string()).collect()
}

/// `lt doc`: one line per overload; `lt doc name`: full docs of the matching functions;
/// `lt doc nn::`: the functions of a namespace. Prose wraps to `width` (None: no wrapping).
pub fn render(engine: &Engine, query: Option<&str>, width: Option<usize>) -> Result<String, String> {
    let colour = crate::console::style::colour(crate::console::Stream::Stdout);
    let docs = all_docs(engine)?;
    let mut out = String::new();
    match query {
        None => out = listing(&docs.iter().collect::<Vec<_>>(), width, colour),
        Some(q) => {
            let q = q.trim().trim_start_matches('.');
            let hits: Vec<&FnDoc> = docs
                .iter()
                .filter(|d| {
                    let short = d.qualified.rsplit("::").next().unwrap_or(&d.qualified).trim_start_matches('.');
                    d.qualified == q || short == q || d.qualified.trim_start_matches('.') == q
                })
                .collect();
            if hits.is_empty() {
                if let Some(ns) = namespace_of(&docs, q) {
                    let prefix = format!("{ns}::");
                    let inside: Vec<&FnDoc> = docs.iter().filter(|d| d.qualified.starts_with(&prefix)).collect();
                    let subs: std::collections::BTreeSet<String> = inside
                        .iter()
                        .filter_map(|d| {
                            d.qualified[prefix.len()..].split_once("::").map(|(s, _)| format!("{prefix}{s}::"))
                        })
                        .collect();
                    if !subs.is_empty() {
                        out.push_str(&format!("namespaces: {}\n\n", subs.into_iter().collect::<Vec<_>>().join(", ")));
                    }
                    out.push_str(&listing(&inside, width, colour));
                    return Ok(out);
                }
                let near = suggestions(&docs, q);
                return Err(match near.as_slice() {
                    [] => format!("no function named '{q}'; `lt doc` lists them all"),
                    [one] => format!("no function named '{q}'; did you mean {one}?"),
                    many => format!("no function named '{q}'; did you mean: {}", many.join(", ")),
                });
            }
            let mut last_doc = String::new();
            for d in hits {
                out.push_str(&format!(
                    "{}\n",
                    crate::console::style::paint_if(colour, crate::console::Style::Name, &d.signature)
                ));
                if d.doc != last_doc {
                    out.push('\n');
                    out.push_str(&doc_body(&d.doc, width));
                    out.push('\n');
                    last_doc = d.doc.clone();
                }
            }
        }
    }
    Ok(out)
}
