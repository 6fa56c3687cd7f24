//! The one integration-test binary (each extra test binary would link libtorch again).
//! One module per area; shared helpers in `common`.
mod checkpoint;
mod common;
mod dist;
mod docs;
mod golden;
mod host;
mod optim;
mod sched;
mod script_errors;
mod data;
mod tensor_api;
mod trainer_core;
mod trainer_script;
