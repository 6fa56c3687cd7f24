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
            let name = f.get("name").and_then(Value::as_str).unwrap_or("?");
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

/// `lt doc`: one line per overload; `lt doc name`: full docs of the matching functions.
pub fn render(engine: &Engine, query: Option<&str>) -> Result<String, String> {
    let docs = all_docs(engine)?;
    let mut out = String::new();
    match query {
        None => {
            for d in &docs {
                out.push_str(&format!("{:<60} {}\n", d.signature, first_line(&d.doc)));
            }
        }
        Some(q) => {
            let q = q.trim_start_matches('.');
            let hits: Vec<&FnDoc> = docs
                .iter()
                .filter(|d| {
                    let short = d.qualified.rsplit("::").next().unwrap_or(&d.qualified).trim_start_matches('.');
                    d.qualified == q || short == q || d.qualified.trim_start_matches('.') == q
                })
                .collect();
            if hits.is_empty() {
                let near: Vec<&str> = docs
                    .iter()
                    .map(|d| d.qualified.as_str())
                    .filter(|n| n.contains(q))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .take(20)
                    .collect();
                return Err(if near.is_empty() {
                    format!("no function named '{q}'; `lt doc` lists them all")
                } else {
                    format!("no function named '{q}'; did you mean: {}", near.join(", "))
                });
            }
            let mut last_doc = String::new();
            for d in hits {
                out.push_str(&format!("{}\n", d.signature));
                if d.doc != last_doc {
                    out.push('\n');
                    for l in d.doc.lines() {
                        out.push_str(&format!("    {l}\n"));
                    }
                    out.push('\n');
                    last_doc = d.doc.clone();
                }
            }
        }
    }
    Ok(out)
}
