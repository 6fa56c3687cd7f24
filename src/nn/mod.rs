pub mod summary;
pub mod tree;
