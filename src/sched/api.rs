//! The scheduler script surface.
use crate::script::registry::Registry;

pub fn register(_reg: &mut Registry) {}
