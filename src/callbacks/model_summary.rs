//! Lightning's ModelSummary callback: the depth of the model summary the fit prints when it
//! starts (the Trainer renders it: a Rust callback does not see the module). With
//! `enable_model_summary` (the default) a fit without this callback prints depth 1.

/// `callbacks::model_summary(#{max_depth})`.
pub struct ModelSummary {
    /// Levels of child modules listed: 0 prints no summary, -1 every level.
    pub max_depth: i64,
}

impl ModelSummary {
    pub fn new(max_depth: i64) -> Result<ModelSummary, String> {
        if max_depth < -1 {
            return Err(format!("`max_depth` can be -1, 0 or > 0, got {max_depth}."));
        }
        Ok(ModelSummary { max_depth })
    }
}

impl crate::trainer::callback::Callback for ModelSummary {
    fn state_key(&self) -> String {
        "ModelSummary".into()
    }

    fn on_hook(
        &mut self,
        _hook: &str,
        _state: &crate::trainer::state::SharedState,
    ) -> Result<Vec<crate::trainer::callback::Action>, String> {
        Ok(Vec::new())
    }

    fn summary_depth(&self) -> Option<i64> {
        Some(self.max_depth)
    }
}
