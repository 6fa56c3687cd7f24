//! `lt fit | validate | test | predict | run` on a module script.
use crate::script::lightning::{parse_set_value, ScriptModule};
use crate::script::runner::Script;
use crate::trainer::config::TrainerConfig;
use crate::trainer::logger::CsvLogger;
use crate::trainer::Trainer;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Fit,
    Validate,
    Test,
    Predict,
    /// fit, then test when the script has a test step and test data
    Run,
}

/// Splits `--set trainer.k=v` / `--set model.k=v` into the two override maps.
pub fn parse_sets(sets: &[String]) -> Result<(BTreeMap<String, Value>, BTreeMap<String, Value>), String> {
    let (mut model, mut trainer) = (BTreeMap::new(), BTreeMap::new());
    for s in sets {
        let (k, v) = s.split_once('=').ok_or_else(|| format!("--set expects key=value, got '{s}'"))?;
        let v = parse_set_value(v.trim());
        if let Some(k) = k.trim().strip_prefix("trainer.") {
            trainer.insert(k.to_string(), v);
        } else if let Some(k) = k.trim().strip_prefix("model.") {
            model.insert(k.to_string(), v);
        } else {
            return Err(format!("--set {s}: keys start with `trainer.` or `model.` (e.g. --set trainer.max_epochs=3 --set model.lr=0.01)"));
        }
    }
    Ok((model, trainer))
}

/// Whether a compiled script is a LightningModule script (it defines training/eval steps).
pub fn is_module_script(script: &Script) -> bool {
    script
        .ast
        .iter_functions()
        .any(|f| ["training_step", "validation_step", "test_step", "predict_step"].contains(&f.name))
}

/// Runs a stage on a module script; returns an error text for the user.
pub fn run_stage(stage: Stage, script: Script, sets: &[String]) -> Result<(), String> {
    let (model_sets, trainer_sets) = parse_sets(sets)?;
    let (mut module, opts) = ScriptModule::load(script, &model_sets, &trainer_sets)?;
    let config = TrainerConfig::from_map(&opts)?;
    let mut trainer = Trainer::new(config)?;
    module.attach(trainer.state.clone())?;
    if trainer.config.logger && matches!(stage, Stage::Fit | Stage::Run | Stage::Validate | Stage::Test) {
        let logger = CsvLogger::new(&trainer.config.default_root_dir)?;
        trainer.loggers.push(Box::new(logger));
    }
    match stage {
        Stage::Fit => trainer.fit(&mut module),
        Stage::Run => {
            trainer.fit(&mut module)?;
            let has_test = crate::trainer::module::LightningModule::has_hook(&module, "test_step");
            if has_test {
                let loaders = crate::trainer::module::LightningModule::loaders(&mut module, crate::trainer::module::LoaderStage::Test)?;
                if !loaders.is_empty() {
                    let r = trainer.test(&mut module)?;
                    println!("{}", Trainer::results_table("Test", &r));
                }
            }
            Ok(())
        }
        Stage::Validate => {
            let r = trainer.validate(&mut module)?;
            println!("{}", Trainer::results_table("Validate", &r));
            Ok(())
        }
        Stage::Test => {
            let r = trainer.test(&mut module)?;
            println!("{}", Trainer::results_table("Test", &r));
            Ok(())
        }
        Stage::Predict => {
            let outs = trainer.predict(&mut module)?;
            for (i, dl) in outs.iter().enumerate() {
                for (j, o) in dl.iter().enumerate() {
                    if !o.is_unit() {
                        println!("predict dataloader {i} batch {j}: {o}");
                    }
                }
            }
            Ok(())
        }
    }
}

/// Loads a script file for a stage.
pub fn load(path: &Path) -> Result<Script, String> {
    Script::load(path).map_err(|e| {
        let mut s = e.to_string();
        while s.ends_with('\n') {
            s.pop();
        }
        s
    })
}
