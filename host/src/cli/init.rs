//! `dualwrite init [DIR]`: write a working deployment with the standard map pack and run
//! its health checks (see [`crate::init`]); exit 0 when they pass, 1 with problems.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::Cli;
use crate::init::{InitOptions, default_plugins_from, init};
use crate::plugin::Limits;

#[derive(Debug, Args)]
pub(super) struct InitArgs {
    /// The deployment folder (made if missing).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The ERP side on a server: `postgres://user@host/db` or `mysql://user@host/db`
    /// (password from DUALWRITE_ERP_PASSWORD); default an SQLite file `DIR/erp.db`.
    #[arg(long)]
    erp: Option<String>,
    /// The CRM side on a server (password from DUALWRITE_CRM_PASSWORD); default
    /// `DIR/crm.db`.
    #[arg(long)]
    crm: Option<String>,
    /// Standard pack maps to enable, comma-separated (what they depend on comes along);
    /// default all twelve.
    #[arg(long, value_delimiter = ',')]
    maps: Vec<String>,
    /// Where the built plugins are (`cargo xtask plugins` writes target/plugins).
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// Write over an existing DIR/dualwrite.toml.
    #[arg(long)]
    force: bool,
}

pub(super) fn run(cli: &Cli, args: &InitArgs) -> anyhow::Result<ExitCode> {
    let runtime = cli.runtime(Limits::default())?;
    let report = init(
        &InitOptions {
            dir: args.dir.clone(),
            erp: args.erp.clone(),
            crm: args.crm.clone(),
            maps: args.maps.clone(),
            plugins_from: args
                .plugins
                .clone()
                .unwrap_or_else(|| default_plugins_from().to_owned()),
            force: args.force,
        },
        &runtime,
    )?;
    println!(
        "wrote {} with {} map(s) of the standard pack: {}",
        report.config.display(),
        report.maps.len(),
        report.maps.join(", ")
    );
    if report.tables_created.is_empty() {
        println!("every table the maps need was there");
    } else {
        println!(
            "made {} missing table(s): {}",
            report.tables_created.len(),
            report.tables_created.join(", ")
        );
    }
    super::check::print_findings(&report.config, &report.findings);
    if report.findings.is_empty() {
        println!(
            "next: dualwrite run -c {} (the admin token is printed at start)",
            report.config.display()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
    }
}
