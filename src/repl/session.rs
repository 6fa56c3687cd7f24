//! A module script loaded in the REPL: the ScriptModule and a Trainer that stay alive between
//! commands, so `:fit N` continues where the last one stopped.
use crate::checkpoint::Checkpoint;
use crate::script::lightning::ScriptModule;
use crate::script::runner::Script;
use crate::trainer::config::TrainerConfig;
use crate::trainer::Trainer;

pub struct Session {
    pub module: ScriptModule,
    pub trainer: Trainer,
    /// Whether a fit ran (the next one resumes from the state it left).
    fitted: bool,
}

impl Session {
    /// Builds the module (runs `init`) and its Trainer from the script's `trainer()` and `--set`s.
    pub fn open(script: Script, sets: &[String]) -> Result<Session, String> {
        let mut sets = crate::cli::config::Settings::gather(&[], sets)?;
        sets.resolve(&script)?;
        let (mut module, opts) = ScriptModule::load_with_data(script, &sets.model, &sets.data, &sets.trainer)?;
        let config = TrainerConfig::from_map(&opts)?;
        let trainer = crate::cli::train::build_trainer(
            &mut module,
            config,
            crate::cli::train::Purpose::Repl,
            &Default::default(),
            None,
        )?;
        Ok(Session { module, trainer, fitted: false })
    }

    /// Trains `n` more optimizer steps. The first call starts the fit; later calls resume from the
    /// state the previous one left (weights as they are now, optimizer and scheduler state, step
    /// and epoch counters, the position in the epoch), as resuming from a checkpoint does: a fit
    /// that reaches its steps mid-epoch pauses there (no epoch end, no validation yet), so
    /// `:fit 20` then `:fit 60` trains, validates and logs exactly as `:fit 80`.
    pub fn fit(&mut self, n: usize) -> Result<(), String> {
        let ck: Option<Checkpoint> =
            if self.fitted { Some(self.trainer.checkpoint(&mut self.module, false, None)?) } else { None };
        let start = self.trainer.state.borrow().progress.global_step;
        self.trainer.pause_at_step = Some(start + n);
        self.trainer.config.max_steps = -1;
        self.trainer.config.max_epochs = None;
        {
            let mut s = self.trainer.state.borrow_mut();
            s.max_steps = -1;
            s.max_epochs = None;
            s.should_stop = false;
        }
        let r = self.trainer.fit_from(&mut self.module, ck.as_ref());
        // `this.global_step` and friends as the fit left them, for the prompt
        self.module.refresh_this();
        let end = self.trainer.state.borrow().progress.global_step;
        self.fitted |= r.is_ok() || end > start;
        r?;
        outln!("global_step {end} (epoch {})", self.trainer.state.borrow().progress.current_epoch);
        Ok(())
    }

    pub fn validate(&mut self) -> Result<(), String> {
        let r = self.trainer.validate(&mut self.module)?;
        outln!("{}", Trainer::results_table("Validate", &r));
        Ok(())
    }

    pub fn test(&mut self) -> Result<(), String> {
        let r = self.trainer.test(&mut self.module)?;
        outln!("{}", Trainer::results_table("Test", &r));
        Ok(())
    }

    /// What `this` shows at the prompt: the module as PyTorch's repr (named after the script, as
    /// a LightningModule is after its class), then Lightning's model summary.
    pub fn describe(&self) -> String {
        let stem = self.module.script.name();
        let stem = std::path::Path::new(&stem).file_stem().map_or("Module".into(), |s| s.to_string_lossy().to_string());
        let name: String = stem
            .split(['_', '-', '.'])
            .filter(|p| !p.is_empty())
            .map(|p| {
                let mut c = p.chars();
                c.next().map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
            })
            .collect();
        let repr = match self.module.this.read_lock::<rhai::Map>() {
            Some(m) => crate::nn::repr::module_repr(&m, Some(&name)),
            None => self.module.this.to_string(),
        };
        use crate::trainer::module::LightningModule;
        match self.module.summary(1) {
            Some(s) => format!("{repr}\n{s}"),
            None => repr,
        }
    }

    /// `name = value` lines of callback_metrics.
    pub fn metrics(&self) -> String {
        let s = self.trainer.state.borrow();
        if s.views.callback.is_empty() {
            return "no metrics yet\n".into();
        }
        s.views.callback.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
    }
}
