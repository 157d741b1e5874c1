//! `dualwrite demo`: the standard maps on two seeded databases (SQLite files, or
//! PostgreSQL/MariaDB servers given by URL), initial sync with progress, then live sync
//! both ways while a generator edits both sides.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::Cli;
use crate::demo::{DemoOptions, run as run_demo};
use crate::plugin::Limits;

#[derive(Debug, Args)]
pub(super) struct DemoArgs {
    /// The folder with the plugin components (`cargo xtask plugins` builds them into
    /// target/plugins).
    #[arg(long, default_value = "target/plugins")]
    plugins: PathBuf,
    /// Where the demo's databases, state and config go (emptied first).
    #[arg(long, default_value = "demo-data")]
    dir: PathBuf,
    /// Customers seeded on the ERP side.
    #[arg(long, default_value_t = 10_000)]
    customers: usize,
    /// Seconds of live sync (0: until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    seconds: u64,
    /// Edits per second the generator makes over both sides.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Where the admin API is served during live sync.
    #[arg(long, default_value = crate::config::DEFAULT_ADMIN_LISTEN)]
    admin_listen: std::net::SocketAddr,
    /// Do not serve the admin API.
    #[arg(long)]
    no_admin: bool,
    /// The ERP side on a server instead of an SQLite file: `postgres://user@host/db` or
    /// `mysql://user@host/db` (a scratch database: the demo's tables are dropped and
    /// made again; a password comes from DUALWRITE_ERP_PASSWORD).
    #[arg(long)]
    erp: Option<String>,
    /// The CRM side on a server instead of an SQLite file (password from
    /// DUALWRITE_CRM_PASSWORD).
    #[arg(long)]
    crm: Option<String>,
}

pub(super) fn run(cli: &Cli, args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let runtime = cli.runtime(Limits::default())?;
    let dir = std::path::absolute(&args.dir)?;
    let plugins_dir = std::path::absolute(&args.plugins)?;
    run_demo(
        &DemoOptions {
            dir,
            plugins_dir,
            customers: args.customers,
            duration: (args.seconds > 0).then(|| Duration::from_secs(args.seconds)),
            edit_rate: args.rate,
            admin_listen: (!args.no_admin).then_some(args.admin_listen),
            erp: args.erp.clone(),
            crm: args.crm.clone(),
        },
        &runtime,
    )?;
    Ok(ExitCode::SUCCESS)
}
