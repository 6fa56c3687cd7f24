//! `lt bench`: figures measured outside the test suite.
pub mod checkpoint;
pub mod data;
pub mod dispatch;
pub mod optim;
pub mod trainer;
