//! Hugging Face `tokenizer.json` files (BPE, WordPiece, Unigram, WordLevel; normalizers,
//! pre-tokenizers, post-processors and decoders) through the `tokenizers` crate, the Rust core of
//! the Python `tokenizers` package. Built without its default features: regexes use the pure-Rust
//! `fancy-regex` backend (no Oniguruma C library) and no download support.
//!
//! `encode` adds the post-processor's special tokens and `decode` skips special tokens: the
//! defaults of Python's `Tokenizer.encode` / `Tokenizer.decode`.
use super::tokenizer::TextTokenizer;
use super::Result;
use crate::data_err;
use std::path::Path;

pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    name: String,
}

impl HfTokenizer {
    /// Reads a `tokenizer.json` file.
    pub fn load(path: &Path) -> Result<HfTokenizer> {
        const W: &str = "data::tokenizer";
        let bytes = super::files::read(path, W)?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| data_err!("{W}: {}: not a Hugging Face tokenizer.json file: {e}", path.display()))?;
        Ok(HfTokenizer { inner, name: path.display().to_string() })
    }
}

impl TextTokenizer for HfTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let enc = self.inner.encode(text, true).map_err(|e| data_err!("{}: encode: {e}", self.name))?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }
    fn decode(&self, ids: &[i64]) -> Result<String> {
        let n = self.vocab_size();
        let ids = ids
            .iter()
            .map(|&i| {
                u32::try_from(i).ok().filter(|&u| (u as usize) < n).ok_or_else(|| {
                    data_err!("{}: decode: id {i} is out of range for a vocabulary of {n} tokens", self.name)
                })
            })
            .collect::<Result<Vec<u32>>>()?;
        self.inner.decode(&ids, true).map_err(|e| data_err!("{}: decode: {e}", self.name))
    }
    fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
    fn vocab(&self) -> Vec<String> {
        let mut v: Vec<(String, u32)> = self.inner.get_vocab(true).into_iter().collect();
        v.sort_by_key(|(_, i)| *i);
        v.into_iter().map(|(t, _)| t).collect()
    }
    fn token_to_id(&self, token: &str) -> Option<usize> {
        self.inner.token_to_id(token).map(|i| i as usize)
    }
    fn id_to_token(&self, id: usize) -> Option<String> {
        u32::try_from(id).ok().and_then(|i| self.inner.id_to_token(i))
    }
    fn describe(&self) -> String {
        format!("Tokenizer({}: vocab_size={})", self.name, self.vocab_size())
    }
}
