//! A token stream for language models, cut into fixed-length windows: a text file as bytes
//! (vocabulary 256) or characters (vocabulary = the file's distinct characters, sorted), or any
//! 1-D tensor of token ids (`data::text_windows`, e.g. a tokenizer's output).
use super::files::read;
use super::{check_indices, Batch, Dataset, FetchCtx, Result, SharedTensor};
use crate::data_err;
use std::path::Path;
use tch::Tensor;

pub struct TextDataset {
    tokens: SharedTensor,
    n_tokens: usize,
    seq_len: usize,
    stride: usize,
    /// Characters of the vocabulary (char mode); `None` for bytes.
    vocab: Option<Vec<String>>,
    name: String,
}

/// A UTF-8 text file's contents; invalid UTF-8 is an error naming the byte where it starts.
pub fn read_text(path: &Path, what: &str) -> Result<String> {
    let bytes = read(path, what)?;
    String::from_utf8(bytes)
        .map_err(|e| data_err!("{what}: {}: not valid UTF-8 at byte {}", path.display(), e.utf8_error().valid_up_to()))
}

impl TextDataset {
    /// Sample `i` is `[x, y]`: `x` = tokens `i*stride .. i*stride+seq_len`, `y` = the same window
    /// shifted by one (next-token targets), both int64 `[seq_len]`.
    pub fn load(path: &Path, seq_len: usize, stride: Option<usize>, chars: bool) -> Result<TextDataset> {
        let name = path.display().to_string();
        if seq_len == 0 {
            return Err(data_err!("data::text_file: seq_len must be positive"));
        }
        let stride = stride.unwrap_or(seq_len);
        if stride == 0 {
            return Err(data_err!("data::text_file: stride must be positive"));
        }
        let bytes = read(path, "data::text_file")?;
        let (ids, vocab): (Vec<i64>, Option<Vec<String>>) = if chars {
            let text = String::from_utf8(bytes).map_err(|e| {
                data_err!(
                    "{name}: not valid UTF-8 at byte {} (use mode: \"byte\" for binary text)",
                    e.utf8_error().valid_up_to()
                )
            })?;
            let mut v: Vec<char> = text.chars().collect();
            v.sort_unstable();
            v.dedup();
            let ids = text.chars().map(|c| v.binary_search(&c).unwrap_or(0) as i64).collect();
            (ids, Some(v.into_iter().map(String::from).collect()))
        } else {
            (bytes.into_iter().map(i64::from).collect(), None)
        };
        let tokens = Tensor::f_from_slice(&ids)?;
        Self::windows(&tokens, seq_len, Some(stride), vocab, &name)
    }

    /// Windows over a 1-D integer tensor of token ids (`data::text_windows`); `vocab` names the
    /// tokens when known, `name` says where the ids come from in messages.
    pub fn windows(
        ids: &Tensor,
        seq_len: usize,
        stride: Option<usize>,
        vocab: Option<Vec<String>>,
        name: &str,
    ) -> Result<TextDataset> {
        if seq_len == 0 {
            return Err(data_err!("{name}: seq_len must be positive"));
        }
        let stride = stride.unwrap_or(seq_len);
        if stride == 0 {
            return Err(data_err!("{name}: stride must be positive"));
        }
        if ids.dim() != 1 {
            return Err(data_err!("{name}: token ids must be a 1-D tensor, got shape {:?}", ids.size()));
        }
        if !matches!(
            ids.kind(),
            tch::Kind::Int64 | tch::Kind::Int | tch::Kind::Int16 | tch::Kind::Int8 | tch::Kind::Uint8
        ) {
            return Err(data_err!(
                "{name}: token ids must be integers, got {}",
                crate::tensor::options::dtype_name(ids.kind())
            ));
        }
        let n_tokens = ids.size()[0] as usize;
        if n_tokens < seq_len + 1 {
            return Err(data_err!(
                "{name}: {n_tokens} tokens is too short for one window of seq_len {seq_len} plus its next-token target"
            ));
        }
        let ids = ids.f_to_kind(tch::Kind::Int64)?.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
        let lowest = ids.f_min()?.int64_value(&[]);
        if lowest < 0 {
            return Err(data_err!("{name}: token ids must be non-negative, found {lowest}"));
        }
        let tokens = SharedTensor::new(&ids)?;
        Ok(TextDataset { tokens, n_tokens, seq_len, stride, vocab, name: name.to_string() })
    }

    pub fn vocab(&self) -> Option<&[String]> {
        self.vocab.as_deref()
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.as_ref().map(|v| v.len()).unwrap_or(256)
    }
}

impl Dataset for TextDataset {
    fn len(&self) -> usize {
        (self.n_tokens - self.seq_len - 1) / self.stride + 1
    }
    fn get_batch(&self, indices: &[usize], _ctx: &FetchCtx) -> Result<Batch> {
        check_indices(indices, self.len(), &self.name)?;
        let l = self.seq_len as i64;
        let mut pos = Vec::with_capacity(indices.len() * self.seq_len);
        for &i in indices {
            let s = (i * self.stride) as i64;
            pos.extend(s..s + l);
        }
        let p = Tensor::f_from_slice(&pos)?;
        let b = indices.len() as i64;
        let t = self.tokens.get();
        let x = t.f_index_select(0, &p)?.f_reshape([b, l])?;
        let y = t.f_index_select(0, &p.f_add_scalar(1)?)?.f_reshape([b, l])?;
        Ok(Batch::List(vec![Batch::Tensor(x), Batch::Tensor(y)]))
    }
    fn describe(&self) -> String {
        format!(
            "TextDataset({}: {} tokens, vocab {}, {} windows of {})",
            self.name,
            self.n_tokens,
            self.vocab_size(),
            self.len(),
            self.seq_len
        )
    }
    fn vocab(&self) -> Option<Vec<String>> {
        self.vocab.clone()
    }
}
