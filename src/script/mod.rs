//! The Rhai side of lt: the engine with every domain's registered surface, error reports that name
//! file, line, column and hook, the embedded stdlib, and `lt doc`.
pub mod convert;
pub mod declaration_order;
pub mod doc;
pub mod engine;
pub mod error;
pub mod imports;
pub mod lightning;
pub mod loaded;
pub mod module_fns;
pub mod param_copies;
pub mod reentry;
pub mod registry;
pub mod reload;
pub mod runner;
