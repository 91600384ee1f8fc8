//! `packwell validate`: every error and warning of the rules folder and templates, at once.

use super::{CliResult, Common, Failure, RulesArgs};
use crate::rules::load_rules;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub rules: RulesArgs,
}

pub fn run(args: &ValidateArgs) -> CliResult {
    let outcome = load_rules(&args.rules.rules, &args.rules.templates_dir());
    for f in &outcome.findings {
        println!("{f}");
    }
    let errors = outcome.errors().count();
    let warnings = outcome.warnings().count();
    match &outcome.rules {
        Some(rules) => {
            let languages = match rules.templates.language_versions() {
                0 => String::new(),
                1 => " (1 more version in another language)".to_owned(),
                n => format!(" ({n} more versions in other languages)"),
            };
            println!(
                "ok: {} segments, {} inserts, {} rules, {} follow-ups, {} note and {} e-mail templates{languages} ({} warning{}); version {}",
                rules.segments.len(),
                rules.inserts.len(),
                rules.rules.len(),
                rules.followups.len(),
                rules.templates.note_names().len(),
                rules.templates.email_names().len(),
                warnings,
                if warnings == 1 { "" } else { "s" },
                rules.version
            );
            Ok(())
        }
        None => Err(Failure::finding(format!(
            "invalid: {errors} error{}, {warnings} warning{}",
            if errors == 1 { "" } else { "s" },
            if warnings == 1 { "" } else { "s" }
        ))),
    }
}
