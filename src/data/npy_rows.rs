//! An `.npy` file read lazily, row by row (`data::npy(path, #{mmap_mode: "r"})`, NumPy's
//! `np.load(path, mmap_mode="r")`): only the header is read when the dataset is made, and each
//! batch reads just its rows with positioned reads (`pread`), so a file larger than memory can be
//! trained on. The OS page cache keeps the rows read often, as it would for a memory map.
use super::files::{self, NpyHeader};
use super::{check_indices, Batch, Dataset, FetchCtx, Result};
use crate::data_err;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub struct NpyRows {
    file: std::fs::File,
    header: NpyHeader,
    rows: usize,
    name: String,
}

impl NpyRows {
    /// Opens `path` and checks its header (dtype, shape, and that the file holds all the data it
    /// declares); the data itself is not read.
    pub fn open(path: &Path) -> Result<NpyRows> {
        const W: &str = "data::npy";
        let (file, len) = files::open(path, W)?;
        let name = path.display().to_string();
        let header = files::read_npy_header(&mut std::io::BufReader::new(&file), len, &name)?;
        // the header check bounds the whole array by the file's size, so rows of it fit
        let Some(&rows) = header.shape.first() else {
            return Err(data_err!("{W}: {name}: a 0-dimensional array has no rows to make samples of"));
        };
        Ok(NpyRows { file, header, rows: rows as usize, name })
    }
}

impl Dataset for NpyRows {
    fn len(&self) -> usize {
        self.rows
    }
    fn get_batch(&self, indices: &[usize], _ctx: &FetchCtx) -> Result<Batch> {
        check_indices(indices, self.rows, &self.name)?;
        let t = read_rows(&self.file, self.header.data_offset, &self.header.shape[1..], self.header.kind, indices)
            .map_err(|e| data_err!("{}: {e}", self.name))?;
        Ok(Batch::List(vec![Batch::Tensor(t)]))
    }
    fn describe(&self) -> String {
        format!(
            "NpyRows({}: {} rows of {:?} {}, read lazily)",
            self.name,
            self.rows,
            &self.header.shape[1..],
            crate::tensor::options::dtype_name(self.header.kind)
        )
    }
    fn per_sample_work(&self) -> bool {
        true // a read per row: worker threads overlap them
    }
}

/// Rows `indices` of the array of `row_shape` rows stored at `offset` of `file` (C order, native
/// little-endian): a new `[indices.len(), *row_shape]` tensor, each row read with one positioned
/// read straight into its memory. The caller has checked the array against the file's size and
/// the indices against its row count. A bool array must hold only bytes 0 and 1.
pub fn read_rows(
    file: &std::fs::File,
    offset: u64,
    row_shape: &[i64],
    kind: tch::Kind,
    indices: &[usize],
) -> Result<tch::Tensor> {
    let mut shape = vec![indices.len() as i64];
    shape.extend_from_slice(row_shape);
    let t = tch::Tensor::f_empty(shape, (kind, tch::Device::Cpu))?;
    if t.numel() == 0 {
        return Ok(t);
    }
    // the tensor exists, so its size fits
    let rb = row_shape.iter().product::<i64>() as usize * kind.elt_size_in_bytes();
    // SAFETY: `t` is a new contiguous CPU tensor of exactly `indices.len() * rb` bytes that
    // nothing else references yet; every byte pattern is a valid value of these dtypes except
    // bool, which is checked below before the tensor is handed out.
    let dst = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut u8, indices.len() * rb) };
    for (j, &i) in indices.iter().enumerate() {
        file.read_exact_at(&mut dst[j * rb..(j + 1) * rb], offset + (i * rb) as u64)
            .map_err(|e| data_err!("reading row {i}: {e}"))?;
    }
    if kind == tch::Kind::Bool && dst.iter().any(|&b| b > 1) {
        return Err(data_err!("a bool array holds bytes other than 0 and 1"));
    }
    Ok(t)
}
