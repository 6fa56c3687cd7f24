//! `lt bench`: figures measured outside the test suite.
pub mod dispatch;
pub mod optim;
