//! A safetensors file read lazily, row by row (`data::safetensors(path, #{mmap_mode: "r"})`, the
//! lazy twin of `data::npy(path, #{mmap_mode: "r"})`): only the header is read when the dataset is
//! made (and checked as the eager reader checks it, by [`crate::nn::io::read_safetensors_header`]),
//! and each batch reads just its rows of each selected tensor with positioned reads, so a file
//! larger than memory can be trained on. Samples are `#{name: row}`, as the eager dataset's.
use super::npy_rows::read_rows;
use super::{check_indices, Batch, Dataset, FetchCtx, Result};
use crate::data_err;
use crate::nn::io::SafetensorsEntry;
use std::path::Path;

pub struct SafetensorsRows {
    file: std::fs::File,
    /// The selected tensors, in sample-key order.
    tensors: Vec<SafetensorsEntry>,
    rows: usize,
    what: String,
}

impl SafetensorsRows {
    /// Opens `path`, checks its header and picks `keys` (all, sorted by name, when `None`); the
    /// selected tensors must share their first dimension. The data itself is not read.
    pub fn open(path: &Path, keys: Option<&[String]>, what: &str) -> Result<SafetensorsRows> {
        let (mut file, len) = super::files::open(path, what)?;
        let (mut entries, _) =
            crate::nn::io::read_safetensors_header(&mut file, len).map_err(|e| data_err!("{}: {e}", path.display()))?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let named = entries.into_iter().map(|e| (e.name.clone(), e)).collect();
        let tensors: Vec<SafetensorsEntry> =
            super::files::select(named, keys, path)?.into_iter().map(|(_, e)| e).collect();
        let rows = super::dataset::sample_count(tensors.iter().map(|e| e.shape.clone()))?;
        Ok(SafetensorsRows { file, tensors, rows, what: format!("{what} {}", path.display()) })
    }
}

impl Dataset for SafetensorsRows {
    fn len(&self) -> usize {
        self.rows
    }
    fn get_batch(&self, indices: &[usize], _ctx: &FetchCtx) -> Result<Batch> {
        check_indices(indices, self.rows, &self.what)?;
        let fields = self
            .tensors
            .iter()
            .map(|e| {
                let t = read_rows(&self.file, e.offset, &e.shape[1..], e.kind, indices)
                    .map_err(|err| data_err!("{}: {}: {err}", self.what, e.name))?;
                Ok((e.name.clone(), Batch::Tensor(t)))
            })
            .collect::<Result<_>>()?;
        Ok(Batch::Map(fields))
    }
    fn describe(&self) -> String {
        let shapes: Vec<String> = self
            .tensors
            .iter()
            .map(|e| format!("{}: {:?} {}", e.name, e.shape, crate::tensor::options::dtype_name(e.kind)))
            .collect();
        format!("{}({} samples; {}; read lazily)", self.what, self.rows, shapes.join(", "))
    }
    fn per_sample_work(&self) -> bool {
        true // a read per row and tensor: worker threads overlap them
    }
}
