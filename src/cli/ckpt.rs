//! The arguments of `lt ckpt ACTION FILE [OUT]`, and `lt ckpt convert IN --to FORMAT OUT`
//! ([`crate::checkpoint::convert`]).
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug, Clone)]
pub struct CkptArgs {
    /// show | verify | convert
    pub action: String,
    /// The checkpoint (for convert: the input, an lt or a Lightning checkpoint).
    pub file: PathBuf,
    /// convert: the file to write.
    pub out: Option<PathBuf>,
    /// convert: lightning | pytorch | safetensors | lt (default: a Lightning checkpoint becomes an
    /// lt one, an lt one a Lightning one).
    #[arg(long, value_name = "FORMAT")]
    pub to: Option<String>,
    /// convert: overwrite OUT if it exists.
    #[arg(long)]
    pub force: bool,
}

impl CkptArgs {
    /// Runs `convert`, or refuses convert's arguments given to another action; None: the action
    /// is show / verify (or unknown), for the caller.
    pub fn convert_or_check(&self) -> Option<ExitCode> {
        if self.action != "convert" {
            if self.out.is_some() || self.to.is_some() || self.force {
                errorln!("`lt ckpt {}` takes one FILE; OUT, --to and --force are for `lt ckpt convert`", self.action);
                return Some(ExitCode::from(2));
            }
            return None;
        }
        let Some(out) = &self.out else {
            errorln!("`lt ckpt convert IN --to lightning|pytorch|safetensors|lt OUT`: the output file is missing");
            return Some(ExitCode::from(2));
        };
        let target = match self.to.as_deref().map(crate::checkpoint::convert::Target::parse).transpose() {
            Ok(t) => t,
            Err(e) => {
                errorln!("{e}");
                return Some(ExitCode::from(2));
            }
        };
        Some(match crate::checkpoint::convert::convert(&self.file, target, out, self.force) {
            Ok(summary) => {
                outln!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                errorln!("lt ckpt convert {}: {e}", self.file.display());
                ExitCode::FAILURE
            }
        })
    }
}
