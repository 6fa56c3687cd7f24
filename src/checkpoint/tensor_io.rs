//! libtorch tensors to and from safetensors' bytes, dtypes and shapes.
use safetensors::tensor::{Dtype, View};
use std::borrow::Cow;
use tch::{Kind, Tensor};

/// A tensor's bytes, ready for safetensors.
pub struct TensorBytes {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl View for &TensorBytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn dtype_of(k: Kind) -> Result<Dtype, String> {
    Ok(match k {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Int16 => Dtype::I16,
        Kind::Int8 => Dtype::I8,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        other => return Err(format!("tensors of dtype {other:?} cannot be stored in safetensors")),
    })
}

fn kind_of(d: Dtype) -> Result<Kind, String> {
    Ok(match d {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        other => return Err(format!("safetensors dtype {other:?} is not supported")),
    })
}

/// Copies a tensor (any device) into CPU bytes (little-endian, row-major).
pub fn to_bytes(t: &Tensor) -> Result<TensorBytes, String> {
    let dtype = dtype_of(t.kind())?;
    let c = t
        .f_detach()
        .and_then(|t| t.f_to_device(tch::Device::Cpu))
        .and_then(|t| t.f_contiguous())
        .map_err(|e| crate::tensor::clean_torch_message(&e.to_string()))?;
    let n = c.numel() * t.kind().elt_size_in_bytes();
    let mut data = vec![0u8; n];
    c.f_copy_data_u8(&mut data, c.numel()).map_err(|e| crate::tensor::clean_torch_message(&e.to_string()))?;
    Ok(TensorBytes { dtype, shape: c.size().iter().map(|&d| d as usize).collect(), data })
}

/// A CPU tensor from safetensors bytes.
pub fn from_bytes(dtype: Dtype, shape: &[usize], data: &[u8]) -> Result<Tensor, String> {
    let kind = kind_of(dtype)?;
    let numel: usize = shape.iter().product();
    if numel * kind.elt_size_in_bytes() != data.len() {
        return Err(format!("tensor data has {} bytes, expected {} for shape {shape:?}", data.len(), numel * kind.elt_size_in_bytes()));
    }
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    Tensor::f_from_data_size(data, &dims, kind).map_err(|e| crate::tensor::clean_torch_message(&e.to_string()))
}
