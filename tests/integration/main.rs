//! The one integration-test binary (each extra test binary would link libtorch again).
//! One module per area; shared helpers in `common`.
mod averaging;
mod bad_input;
mod bad_input_suite;
mod callbacks;
mod checkpoint;
mod common;
mod data;
mod ddp;
mod dist;
mod docs;
mod examples;
mod golden;
mod host;
mod hostile_checkpoints;
mod hostile_pickle;
mod loggers;
mod nn;
mod nn_fixtures;
mod optim;
mod pure;
mod sched;
mod script_errors;
mod tensor_api;
mod trainer_core;
mod trainer_script;
mod tuning;
