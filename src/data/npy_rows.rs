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
    row_bytes: usize,
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
        let Some((&rows, row_shape)) = header.shape.split_first() else {
            return Err(data_err!("{W}: {name}: a 0-dimensional array has no rows to make samples of"));
        };
        // the header check bounds the whole array by the file's size, so these fit
        let row_bytes = row_shape.iter().product::<i64>() as usize * header.kind.elt_size_in_bytes();
        Ok(NpyRows { file, header, rows: rows as usize, row_bytes, name })
    }
}

impl Dataset for NpyRows {
    fn len(&self) -> usize {
        self.rows
    }
    fn get_batch(&self, indices: &[usize], _ctx: &FetchCtx) -> Result<Batch> {
        check_indices(indices, self.rows, &self.name)?;
        let rb = self.row_bytes;
        let mut buf = vec![0u8; indices.len() * rb];
        for (j, &i) in indices.iter().enumerate() {
            let at = self.header.data_offset + (i * rb) as u64;
            self.file
                .read_exact_at(&mut buf[j * rb..(j + 1) * rb], at)
                .map_err(|e| data_err!("{}: reading row {i}: {e}", self.name))?;
        }
        let mut shape = vec![indices.len() as i64];
        shape.extend_from_slice(&self.header.shape[1..]);
        let t = tch::Tensor::f_from_data_size(&buf, &shape, self.header.kind)?;
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
