//! `dualwrite run -c FILE`: run a configured deployment until Ctrl-C (or SIGTERM).
//!
//! The config is validated into a plan before anything starts; every problem is printed
//! with its file and line. Shutdown is clean: the step in progress finishes and commits,
//! so a restart resumes from the last checkpoint.
//!
//! The admin HTTP API ([`crate::admin`]) is served alongside, on `[admin] listen`
//! (loopback by default); its commands are carried out between steps.
//!
//! The plugins folder is watched: a plugin file dropped in (or rewritten) is validated,
//! dry-run and swapped in between steps, or refused with a logged reason while its maps
//! run on (`sync/hot_swap.rs`); `--no-plugin-watch` turns that off.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use super::Cli;
use crate::plugin::Limits;
use crate::sync::{Engine, EngineOptions, PluginFolder};

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    /// The deployment's config file (TOML).
    #[arg(long, short)]
    config: PathBuf,
    /// Print a status line every this many seconds (0: never).
    #[arg(long, default_value_t = 10)]
    status_every: u64,
    /// Serve the admin API on this address instead of the config's `[admin] listen`.
    #[arg(long)]
    admin_listen: Option<std::net::SocketAddr>,
    /// Do not serve the admin API.
    #[arg(long)]
    no_admin: bool,
    /// Do not watch the plugins folder for dropped plugin files.
    #[arg(long)]
    no_plugin_watch: bool,
}

pub(super) fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let plan = match crate::config::load(&args.config) {
        Ok(plan) => plan,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::from(2));
        }
    };
    let runtime = cli.runtime(Limits::default())?;
    let mut engine = Engine::open(&plan, &runtime, EngineOptions::default())
        .with_context(|| format!("starting {}", args.config.display()))?;
    let mut operations = if plan.operations.admin.enabled && !args.no_admin {
        let operations = crate::admin::start(
            &plan,
            &engine,
            crate::admin::OperationsOptions {
                listen: args.admin_listen,
                ..Default::default()
            },
        )?;
        eprintln!("dualwrite: admin API on {}", operations.server.url());
        if let Some(token) = &operations.generated_token {
            // Shown once, to the operator who started the engine; set `[admin] token_env`
            // to choose the token instead.
            eprintln!(
                "dualwrite: admin token for this run (DUALWRITE_TOKEN for the CLI): {}",
                token.expose()
            );
        }
        Some(operations)
    } else {
        None
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = shutdown.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .context("installing the Ctrl-C handler")?;
    eprintln!(
        "dualwrite: running {} map(s) from {}; Ctrl-C stops",
        engine.counters().len(),
        args.config.display()
    );
    // A map whose initial sync was cut short (a crash, a kill) continues it first.
    for (map, mode) in engine.map_modes() {
        if mode == crate::state::MapMode::Initializing {
            eprintln!("dualwrite: continuing the initial sync of {map}");
            let status = engine.initial_sync(&map, 2_000, "engine restart", &mut |status| {
                tracing::info!(map = %status.map, done = status.rows_done, total = status.rows_total, "initial sync");
            })?;
            eprintln!(
                "dualwrite: {map}: initial sync done ({} rows)",
                status.rows_done
            );
        }
    }
    let mut plugin_folder = if args.no_plugin_watch {
        None
    } else {
        Some(PluginFolder::watch(&plan.plugins_dir)?)
    };
    let mut last_status = Instant::now();
    while !shutdown.load(Ordering::Relaxed) {
        let report = engine.step()?;
        if let Some(operations) = &mut operations {
            operations.control.tick(&mut engine)?;
        }
        if let Some(folder) = &mut plugin_folder {
            for outcome in folder.poll(&mut engine) {
                eprintln!("dualwrite: {outcome}");
            }
        }
        if report.captured == 0 {
            engine.wait_for_changes();
        }
        if args.status_every > 0 && last_status.elapsed() >= Duration::from_secs(args.status_every)
        {
            last_status = Instant::now();
            for (map, counters) in engine.counters() {
                eprintln!(
                    "{map}: erp->crm {} written, crm->erp {} written, {} filtered, {} no-op, {} conflicts, {} errors",
                    counters.written_to_crm,
                    counters.written_to_erp,
                    counters.filtered,
                    counters.no_ops,
                    counters.conflicts,
                    counters.errors
                );
            }
            for (side, reason) in engine.offline_sides() {
                eprintln!("side {side} offline: {reason}");
            }
        }
    }
    eprintln!("dualwrite: stopped cleanly");
    Ok(ExitCode::SUCCESS)
}
