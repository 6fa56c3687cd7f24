//! YAML config files read into JSON values, safely: yaml-rust2's event parser (pure Rust, no
//! unsafe, maintained; `serde_yaml` is deprecated) with lt building the values itself, so a hostile
//! file is refused rather than followed: nesting deeper than [`MAX_DEPTH`], aliases that would
//! expand past [`MAX_EXPANDED`] bytes of values (a "billion laughs" file), files over [`MAX_BYTES`], tags
//! (`!!python/object:…` means nothing here), more than one document, duplicate or non-scalar keys.
//! Plain scalars resolve as YAML 1.2's core schema: `1e-3` is a float, `yes` a string.
use serde_json::{Map, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;
use yaml_rust2::Yaml;

/// Deepest nesting of maps and lists accepted.
pub const MAX_DEPTH: usize = 64;
/// The most one document's values may weigh once its aliases are expanded, in bytes (a value
/// weighs 16, a scalar its text besides).
pub const MAX_EXPANDED: usize = 64 << 20;
/// Largest config file read.
pub const MAX_BYTES: u64 = 16 << 20;

/// A map or list being read: its entries so far, its anchor, and the weight read before it
/// opened (so its own weight is known when it ends).
enum Open {
    Map { map: Map<String, Value>, key: Option<String>, anchor: usize, start: usize },
    List { items: Vec<Value>, anchor: usize, start: usize },
}

/// Parses one YAML document (`what` names it in errors); an empty document is `null`.
pub fn parse(text: &str, what: &str) -> Result<Value, String> {
    let err = |msg: String| format!("{what}: {msg}");
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Open> = Vec::new();
    // anchor id → (value, its weight)
    let mut anchors: std::collections::HashMap<usize, (Value, usize)> = Default::default();
    let mut weight = 0usize;
    let mut docs = 0;
    let mut root: Option<Value> = None;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| err(format!("not valid YAML: {e}")))?;
        let at = || format!("line {}, column {}", mark.line(), mark.col() + 1);
        let (value, anchor, size) = match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                docs += 1;
                if docs > 1 {
                    return Err(err(format!("more than one YAML document (at {}); use one per file", at())));
                }
                continue;
            }
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => continue,
            Event::MappingStart(_, tag) | Event::SequenceStart(_, tag)
                if tag.is_some() && !is_core_tag(tag.as_ref(), &["map", "seq"]) =>
            {
                return Err(err(format!("YAML tags are not supported (at {})", at())));
            }
            Event::MappingStart(anchor, _) => {
                let o = Open::Map { map: Map::new(), key: None, anchor, start: weight };
                open(&mut stack, &mut weight, o).map_err(&err)?;
                continue;
            }
            Event::SequenceStart(anchor, _) => {
                let o = Open::List { items: Vec::new(), anchor, start: weight };
                open(&mut stack, &mut weight, o).map_err(&err)?;
                continue;
            }
            Event::MappingEnd | Event::SequenceEnd => match stack.pop() {
                Some(Open::Map { map, key: None, anchor, start }) => (Value::Object(map), anchor, weight - start),
                Some(Open::List { items, anchor, start }) => (Value::Array(items), anchor, weight - start),
                _ => return Err(err(format!("a map ends without a value for its last key (at {})", at()))),
            },
            Event::Scalar(text, style, anchor, tag) => {
                let w = 16 + text.len();
                weight += w;
                (scalar(text, style, tag.as_ref()).map_err(|m| err(format!("{m} (at {})", at())))?, anchor, w)
            }
            Event::Alias(id) => {
                let (v, size) = anchors.get(&id).ok_or_else(|| err(format!("unknown alias (at {})", at())))?;
                let size = *size;
                // the budget is checked before the value is copied
                weight = weight.saturating_add(size);
                if weight > MAX_EXPANDED {
                    return Err(err(format!(
                        "aliases expand to more than {} MiB of values (a \"billion laughs\" file?); refused",
                        MAX_EXPANDED >> 20
                    )));
                }
                if stack.len() + depth(v) > MAX_DEPTH {
                    return Err(err(format!("nested deeper than {MAX_DEPTH} levels (at {})", at())));
                }
                (v.clone(), 0, size)
            }
        };
        if weight > MAX_EXPANDED {
            return Err(err(format!("more than {} MiB of values; refused", MAX_EXPANDED >> 20)));
        }
        if anchor != 0 {
            // what a map or list weighs: counted from where it opened
            anchors.insert(anchor, (value.clone(), size));
        }
        match stack.last_mut() {
            None => root = Some(value),
            Some(Open::List { items, .. }) => items.push(value),
            Some(Open::Map { map, key, .. }) => match key.take() {
                Some(k) => {
                    if map.contains_key(&k) {
                        return Err(err(format!("key '{k}' appears twice in one map (at {})", at())));
                    }
                    map.insert(k, value);
                }
                None => match value {
                    Value::String(s) => *key = Some(s),
                    Value::Number(_) | Value::Bool(_) => *key = Some(value.to_string()),
                    Value::Null => *key = Some("null".into()),
                    _ => return Err(err(format!("map keys must be plain words, not maps or lists (at {})", at()))),
                },
            },
        }
    }
    Ok(root.unwrap_or(Value::Null))
}

fn open(stack: &mut Vec<Open>, weight: &mut usize, o: Open) -> Result<(), String> {
    if stack.len() >= MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels; refused"));
    }
    *weight += 16;
    stack.push(o);
    Ok(())
}

/// Nesting depth of a value (bounded: values are built at most MAX_DEPTH deep).
fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// `!!str`, `!!int`, … (the core schema's own tags, which change nothing lt cannot read).
fn is_core_tag(tag: Option<&Tag>, allowed: &[&str]) -> bool {
    tag.is_some_and(|t| t.handle == "tag:yaml.org,2002:" && allowed.contains(&t.suffix.as_str()))
}

fn scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if tag.is_some() && !is_core_tag(tag, &["str", "int", "float", "bool", "null"]) {
        return Err("YAML tags are not supported".into());
    }
    let forced = tag.map(|t| t.suffix.as_str());
    if forced == Some("str") || (style != TScalarStyle::Plain && forced.is_none()) {
        return Ok(Value::String(text));
    }
    let v = match Yaml::from_str(&text) {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::from(i),
        Yaml::Real(r) => {
            let f = parse_float(&r).ok_or_else(|| format!("'{r}' is not a number"))?;
            serde_json::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| format!("'{r}': infinities and NaN cannot be options"))?
        }
        _ => Value::String(text.clone()),
    };
    let ok = match (forced, &v) {
        (None, _) => true,
        (Some("int"), Value::Number(n)) => n.is_i64(),
        (Some("float"), Value::Number(_)) => true,
        (Some("bool"), Value::Bool(_)) => true,
        (Some("null"), Value::Null) => true,
        _ => false,
    };
    if !ok {
        return Err(format!("'{text}' is not a valid !!{}", forced.unwrap_or("")));
    }
    Ok(v)
}

/// YAML 1.2 floats: `1e-3`, `.5`, `.inf`, `-.Inf`, `.nan`.
fn parse_float(s: &str) -> Option<f64> {
    match s {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Reads and parses a YAML file (a regular file, at most [`MAX_BYTES`]).
pub fn read(path: &std::path::Path) -> Result<Value, String> {
    let what = path.display().to_string();
    let meta = crate::fs::check_regular(path).map_err(|e| format!("cannot read {what}: {e}"))?;
    if meta.len() > MAX_BYTES {
        return Err(format!("{what}: larger than {} MiB; refused", MAX_BYTES >> 20));
    }
    let text = crate::fs::read_regular_to_string(path).map_err(|e| format!("cannot read {what}: {e}"))?;
    parse(&text, &what)
}
