//! Neural-network layers, losses, init and module trees.
//!
//! A module is a Rhai object map. Native layer constructors (`nn::linear(4, 8)`) return a map that
//! holds the layer's parameters and configuration as entries (`weight`, `bias`, `in_features`…),
//! a `forward` entry that is a function pointer to a native `__nn_*_forward` function, and hidden
//! metadata with a leading underscore (`_type`, `_params`, `_buffers`). Scripts compose modules as
//! maps of modules with their own `forward` closure; `this` is the map. See [`tree`] for how
//! parameters are found and named.
//!
//! The math lives in plain Rust over `tch::Tensor`s: [`layers`], [`functional`], [`init`];
//! [`io`] reads and writes weights. [`api`] is the script surface.
pub mod api;
pub mod functional;
pub mod init;
pub mod io;
pub mod layers;
pub mod repr;
pub mod summary;
pub mod torch_pickle;
pub mod torch_save;
pub mod transformer_api;
pub mod tree;
