//! Tokenizers built from a corpus: character- and word-level vocabularies (torchtext's
//! `build_vocab_from_iterator` order), text ↔ token ids.
//!
//! - Character level: every distinct character is a token; the vocabulary is the specials, then
//!   the characters sorted by code point (the same order as `data::text_file`'s char mode).
//! - Word level: words are runs of non-whitespace split further at punctuation, each punctuation
//!   character being a token of its own (BERT's BasicTokenizer split, without its accent
//!   stripping); `lower` lowercases first. The vocabulary is the specials, then the words seen at
//!   least `min_freq` times by decreasing count, ties in alphabetical order (torchtext's order).
//!
//! A token outside the vocabulary encodes as `unk_token` when one is set, and is an error naming
//! it otherwise. Decoding concatenates characters, and joins words with single spaces (so word
//! decoding gives back the tokens, not the original spacing).
use super::Result;
use crate::data_err;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Char,
    Word { lower: bool },
}

/// A vocabulary and the rule that cuts text into its tokens.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    level: Level,
    tokens: Vec<String>,
    ids: HashMap<String, usize>,
    unk: Option<usize>,
    what: &'static str,
}

/// Options shared by both levels.
#[derive(Debug, Clone, Default)]
pub struct VocabOptions {
    pub specials: Vec<String>,
    pub unk_token: Option<String>,
    pub min_freq: usize,
}

/// The words of `text`: whitespace-separated, each punctuation character a word of its own.
pub fn split_words(text: &str, lower: bool) -> Vec<String> {
    let text = if lower { text.to_lowercase() } else { text.to_string() };
    let mut out = Vec::new();
    for w in text.split_whitespace() {
        let mut cur = String::new();
        for c in w.chars() {
            if is_punctuation(c) {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(c.to_string());
            } else {
                cur.push(c);
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
    }
    out
}

/// BERT's `_is_punctuation`: ASCII symbols and Unicode punctuation.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c, '\u{2010}'..='\u{2027}' | '\u{2030}'..='\u{205E}' | '\u{3001}'..='\u{3003}' | '\u{00A1}' | '\u{00BF}' | '\u{00AB}' | '\u{00BB}')
}

impl Tokenizer {
    /// Builds the vocabulary of `corpus` at `level`.
    pub fn build(corpus: &str, level: Level, opts: &VocabOptions) -> Result<Tokenizer> {
        let what = match level {
            Level::Char => "data::char_tokenizer",
            Level::Word { .. } => "data::word_tokenizer",
        };
        let mut tokens: Vec<String> = Vec::new();
        for s in &opts.specials {
            if tokens.contains(s) {
                return Err(data_err!("{what}: special token {s:?} is listed twice"));
            }
            tokens.push(s.clone());
        }
        let mut counts: HashMap<String, usize> = HashMap::new();
        match level {
            Level::Char => corpus.chars().for_each(|c| *counts.entry(c.to_string()).or_default() += 1),
            Level::Word { lower } => {
                split_words(corpus, lower).into_iter().for_each(|w| *counts.entry(w).or_default() += 1)
            }
        }
        let min = opts.min_freq.max(1);
        let mut seen: Vec<(String, usize)> =
            counts.into_iter().filter(|(t, n)| *n >= min && !opts.specials.contains(t)).collect();
        match level {
            Level::Char => seen.sort_by(|a, b| a.0.cmp(&b.0)),
            Level::Word { .. } => seen.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0))),
        }
        tokens.extend(seen.into_iter().map(|(t, _)| t));
        if tokens.is_empty() {
            return Err(data_err!(
                "{what}: the corpus gives an empty vocabulary (no tokens seen at least {min} times, no specials)"
            ));
        }
        let ids: HashMap<String, usize> = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i)).collect();
        let unk =
            match &opts.unk_token {
                None => None,
                Some(u) => Some(*ids.get(u).ok_or_else(|| {
                    data_err!("{what}: unk_token {u:?} is not in the vocabulary; list it in specials")
                })?),
            };
        Ok(Tokenizer { level, tokens, ids, unk, what })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The tokens, by id.
    pub fn vocab(&self) -> &[String] {
        &self.tokens
    }

    pub fn token_to_id(&self, token: &str) -> Option<usize> {
        self.ids.get(token).copied()
    }

    pub fn id_to_token(&self, id: usize) -> Option<&str> {
        self.tokens.get(id).map(String::as_str)
    }

    /// The ids of `text`'s tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let id = |t: &str| -> Result<i64> {
            match (self.ids.get(t), self.unk) {
                (Some(&i), _) => Ok(i as i64),
                (None, Some(u)) => Ok(u as i64),
                (None, None) => Err(data_err!(
                    "{}.encode: token {t:?} is not in the vocabulary of {} tokens (set unk_token to map unknown tokens)",
                    self.what,
                    self.tokens.len()
                )),
            }
        };
        match self.level {
            Level::Char => {
                let mut buf = [0u8; 4];
                text.chars().map(|c| id(c.encode_utf8(&mut buf))).collect()
            }
            Level::Word { lower } => split_words(text, lower).iter().map(|w| id(w)).collect(),
        }
    }

    /// The text of `ids`: characters concatenated, or words joined by spaces.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let toks = ids
            .iter()
            .map(|&i| {
                usize::try_from(i).ok().and_then(|i| self.id_to_token(i)).ok_or_else(|| {
                    data_err!(
                        "{}.decode: id {i} is out of range for a vocabulary of {} tokens",
                        self.what,
                        self.tokens.len()
                    )
                })
            })
            .collect::<Result<Vec<&str>>>()?;
        Ok(match self.level {
            Level::Char => toks.concat(),
            Level::Word { .. } => toks.join(" "),
        })
    }

    pub fn describe(&self) -> String {
        match self.level {
            Level::Char => format!("CharTokenizer(vocab_size={})", self.tokens.len()),
            Level::Word { lower } => format!("WordTokenizer(vocab_size={}, lower={lower})", self.tokens.len()),
        }
    }
}

/// What scripts call on a tokenizer, whichever kind: built from a corpus ([`Tokenizer`]) or read
/// from a Hugging Face `tokenizer.json` ([`super::hf_tokenizer::HfTokenizer`]).
pub trait TextTokenizer: Send + Sync {
    fn encode(&self, text: &str) -> Result<Vec<i64>>;
    fn decode(&self, ids: &[i64]) -> Result<String>;
    fn vocab_size(&self) -> usize;
    /// The tokens, by id.
    fn vocab(&self) -> Vec<String>;
    fn token_to_id(&self, token: &str) -> Option<usize>;
    fn id_to_token(&self, id: usize) -> Option<String>;
    fn describe(&self) -> String;
}

impl TextTokenizer for Tokenizer {
    fn encode(&self, text: &str) -> Result<Vec<i64>> {
        Tokenizer::encode(self, text)
    }
    fn decode(&self, ids: &[i64]) -> Result<String> {
        Tokenizer::decode(self, ids)
    }
    fn vocab_size(&self) -> usize {
        Tokenizer::vocab_size(self)
    }
    fn vocab(&self) -> Vec<String> {
        self.tokens.clone()
    }
    fn token_to_id(&self, token: &str) -> Option<usize> {
        Tokenizer::token_to_id(self, token)
    }
    fn id_to_token(&self, id: usize) -> Option<String> {
        Tokenizer::id_to_token(self, id).map(str::to_string)
    }
    fn describe(&self) -> String {
        Tokenizer::describe(self)
    }
}
