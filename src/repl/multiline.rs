//! Telling finished input from unfinished: a small scanner that knows Rhai's strings and comments
//! (open brackets, an open string or comment, or a parse error that says the input ended early).
//! The same scanner extracts each function's text, so a reload can tell which functions changed.
use rhai::{Engine, ParseErrorType};
use std::collections::BTreeMap;

/// What a character of the source belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Code,
    Str,
    Comment,
}

/// Classifies every character of `src`; the flag says a string or comment is left open at the end.
pub fn classify(src: &str) -> (Vec<(char, Kind)>, bool) {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match (c, next) {
            ('/', Some('/')) => {
                while i < chars.len() && chars[i] != '\n' {
                    out.push((chars[i], Kind::Comment));
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                // block comments nest in Rhai
                let mut depth = 0usize;
                loop {
                    if i >= chars.len() {
                        return (out, true);
                    }
                    let (a, b) = (chars[i], chars.get(i + 1).copied());
                    if a == '/' && b == Some('*') {
                        depth += 1;
                        out.push((a, Kind::Comment));
                        out.push(('*', Kind::Comment));
                        i += 2;
                    } else if a == '*' && b == Some('/') {
                        depth -= 1;
                        out.push((a, Kind::Comment));
                        out.push(('/', Kind::Comment));
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        out.push((a, Kind::Comment));
                        i += 1;
                    }
                }
            }
            ('"' | '`' | '\'', _) => {
                out.push((c, Kind::Str));
                i += 1;
                let mut closed = false;
                while i < chars.len() {
                    let d = chars[i];
                    out.push((d, Kind::Str));
                    i += 1;
                    if d == '\\' && c != '`' {
                        if let Some(&e) = chars.get(i) {
                            out.push((e, Kind::Str));
                            i += 1;
                        }
                    } else if d == c {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return (out, true);
                }
            }
            _ => {
                out.push((c, Kind::Code));
                i += 1;
            }
        }
    }
    (out, false)
}

/// Open minus closed brackets of all kinds, outside strings and comments.
pub fn bracket_depth(chars: &[(char, Kind)]) -> i64 {
    chars
        .iter()
        .filter(|(_, k)| *k == Kind::Code)
        .map(|(c, _)| match c {
            '(' | '[' | '{' => 1,
            ')' | ']' | '}' => -1,
            _ => 0,
        })
        .sum()
}

/// Whether `src` is unfinished code that should continue on the next line.
pub fn is_incomplete(engine: &Engine, src: &str) -> bool {
    if src.trim().is_empty() || src.trim_start().starts_with(':') {
        return false;
    }
    let (chars, open) = classify(src);
    if open {
        return true;
    }
    match bracket_depth(&chars) {
        d if d > 0 => true,
        d if d < 0 => false,
        _ => matches!(engine.compile(src).map_err(|e| e.err_type().clone()), Err(ParseErrorType::UnexpectedEOF)),
    }
}

/// The text of each top-level `fn` (comments dropped, whitespace collapsed), by name; overloads
/// are joined. Used to tell which functions a reload changes.
pub fn fn_texts(src: &str) -> BTreeMap<String, String> {
    let (chars, _) = classify(src);
    // comments become a space; strings keep their text
    let text: Vec<(char, Kind)> =
        chars.into_iter().map(|(c, k)| if k == Kind::Comment { (' ', Kind::Code) } else { (c, k) }).collect();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut depth = 0i64;
    let mut i = 0;
    while i < text.len() {
        let (c, k) = text[i];
        if k != Kind::Code {
            i += 1;
            continue;
        }
        let starts_fn = depth == 0
            && c == 'f'
            && text.get(i + 1).is_some_and(|x| x.0 == 'n')
            && text.get(i + 2).is_some_and(|x| x.0.is_whitespace())
            && (i == 0 || !is_ident(text[i - 1].0));
        if !starts_fn {
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                _ => {}
            }
            i += 1;
            continue;
        }
        let start = i;
        let mut j = i + 2;
        while j < text.len() && text[j].0.is_whitespace() {
            j += 1;
        }
        let name: String = text[j..].iter().take_while(|x| is_ident(x.0)).map(|x| x.0).collect();
        // to the end of the body: the first `{` and its matching `}`
        let mut d = 0i64;
        let mut seen_body = false;
        while j < text.len() {
            let (cj, kj) = text[j];
            if kj == Kind::Code {
                match cj {
                    '{' | '(' | '[' => {
                        d += 1;
                        seen_body |= cj == '{';
                    }
                    '}' | ')' | ']' => d -= 1,
                    _ => {}
                }
            }
            j += 1;
            if seen_body && d == 0 {
                break;
            }
        }
        let mut norm = String::new();
        let mut last_space = false;
        for &(cj, kj) in &text[start..j] {
            if kj == Kind::Code && cj.is_whitespace() {
                if !last_space {
                    norm.push(' ');
                }
                last_space = true;
            } else {
                norm.push(cj);
                last_space = false;
            }
        }
        let e = out.entry(name).or_default();
        if !e.is_empty() {
            e.push('\n');
        }
        e.push_str(&norm);
        i = j;
    }
    out
}
