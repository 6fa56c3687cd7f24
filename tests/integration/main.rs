//! The one integration-test binary (each extra test binary would link libtorch again).
//! One module per area; shared helpers in `common`.
mod common;
mod dist;
mod docs;
mod golden;
mod script_errors;
mod tensor_api;
mod trainer_core;
