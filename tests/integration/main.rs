//! The one integration-test binary (each extra test binary would link libtorch again).
//! One module per area; shared helpers in `common`.
mod common;
mod docs;
mod golden;
mod nn;
mod nn_fixtures;
mod script_errors;
mod tensor_api;
