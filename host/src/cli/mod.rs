//! The `dualwrite` command line: one file per command.
//!
//! Exit codes: 0 success; 1 the command ran and found differences or failures (for
//! example `replay --expect` with mismatches); 2 bad input or an error that stopped the
//! command.

mod admin;
mod check;
mod demo;
mod init;
mod plugin;
mod plugin_new;
mod replay;
mod run;
mod solution;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::plugin::{Limits, PluginRuntime};

/// Keeps two systems of record in step, with map logic in sandboxed Wasm plugins.
#[derive(Debug, Parser)]
#[command(name = "dualwrite", version, about)]
struct Cli {
    /// Where compiled plugin code is cached (default: $XDG_CACHE_HOME/dualwrite or
    /// ~/.cache/dualwrite).
    #[arg(long, global = true, env = "DUALWRITE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile plugins every time instead of using the code cache.
    #[arg(long, global = true)]
    no_cache: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a configured deployment until Ctrl-C.
    Run(run::RunArgs),
    /// Seed an ERP and a CRM database, merge them, and keep them in step live.
    Demo(demo::DemoArgs),
    /// Run a plugin over a recorded change set, with no database.
    Replay(replay::ReplayArgs),
    /// Write a working deployment (two sides, the standard map pack, missing tables
    /// made) and run its health checks.
    Init(init::InitArgs),
    /// Check a deployment (config, plugins, sides, tables, keys) without starting it.
    Check(check::CheckArgs),
    /// Inspect and validate plugin files.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Solution bundles: maps and their plugins moved between deployments as one
    /// versioned file.
    #[command(subcommand)]
    Solution(solution::SolutionCommand),
    #[command(flatten)]
    Admin(admin::AdminCommand),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DUALWRITE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => run::run(&cli, args),
        Command::Demo(args) => demo::run(&cli, args),
        Command::Replay(args) => replay::run(&cli, args),
        Command::Init(args) => init::run(&cli, args),
        Command::Check(args) => check::run(&cli, args),
        Command::Plugin(command) => plugin::run(&cli, command),
        Command::Solution(command) => solution::run(&cli, command),
        Command::Admin(command) => admin::run(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("dualwrite: {error:#}");
            ExitCode::from(2)
        }
    }
}

impl Cli {
    fn runtime(&self, limits: Limits) -> anyhow::Result<PluginRuntime> {
        let cache = if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or_else(default_cache_dir)
        };
        PluginRuntime::new(limits, cache.map(|dir| dir.join("code")))
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|base| base.join("dualwrite"))
}

/// Opens the folder of `path` as a capability and returns it with the file name, so
/// plugin files are read the same way the engine reads its plugins folder.
fn open_plugin_file(path: &std::path::Path) -> anyhow::Result<(cap_std::fs::Dir, String)> {
    use anyhow::Context;
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .with_context(|| format!("{}: not a file name", path.display()))?;
    let dir = cap_std::fs::Dir::open_ambient_dir(folder, cap_std::ambient_authority())
        .with_context(|| format!("opening the folder {}", folder.display()))?;
    Ok((dir, name.to_owned()))
}
