//! `dualwrite check -c FILE`: the deployment's health checks (see [`crate::check`]),
//! printed as one line per problem with its code and fix; exit 0 when clean, 1 with
//! problems.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::Cli;
use crate::check::{self, Finding};
use crate::plugin::Limits;

#[derive(Debug, Args)]
pub(super) struct CheckArgs {
    /// The deployment's config file (TOML).
    #[arg(long, short)]
    config: PathBuf,
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(cli: &Cli, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let findings = match crate::config::load(&args.config) {
        Ok(plan) => {
            let runtime = cli.runtime(Limits::default())?;
            check::run(&plan, &runtime)
        }
        Err(errors) => check::config_findings(&errors),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": findings.is_empty(),
                "findings": findings,
            }))?
        );
    } else {
        print_findings(&args.config, &findings);
    }
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The findings for people: one line each with its code, then its fix.
pub(super) fn print_findings(config: &std::path::Path, findings: &[Finding]) {
    if findings.is_empty() {
        println!("{}: all checks passed", config.display());
        return;
    }
    for finding in findings {
        println!("{finding}");
    }
    println!("{} problem(s)", findings.len());
}
