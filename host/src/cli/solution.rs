//! `dualwrite solution export|import|rollback|history`: solution bundles (see
//! [`crate::solution`]).
//!
//! With `-c CONFIG` the command works on the deployment's files directly (an engine that
//! runs on them picks the changes up at its next start). Without it, it goes through a
//! running engine's admin API (`--url`/`DUALWRITE_URL`, `--token`/`DUALWRITE_TOKEN`),
//! which applies the same way and also switches the running maps, each once its queue
//! is drained.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value as Json;

use super::Cli;
use super::admin::{ClientArgs, api_get_bytes, api_post, api_post_bytes, segment};
use crate::admin::solutions::diff_lines;
use crate::plugin::Limits;
use crate::solution::{self, ExportOptions};

#[derive(Debug, Subcommand)]
pub(super) enum SolutionCommand {
    /// Write a bundle of the deployment's maps and their plugins.
    Export(ExportArgs),
    /// Check a bundle against the deployment and print the diff; `--apply` applies it.
    Import(ImportArgs),
    /// Put back the config the newest applied version of a solution replaced.
    Rollback(RollbackArgs),
    /// List the solution versions applied to the deployment.
    History(HistoryArgs),
}

#[derive(Debug, Args)]
pub(super) struct ExportArgs {
    /// The deployment's config file (without it: the running engine's, through its API).
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
    /// The solution's name.
    #[arg(long)]
    name: String,
    /// Who publishes it.
    #[arg(long)]
    publisher: String,
    /// Its semantic version (like 1.2.0).
    #[arg(long)]
    version: String,
    /// The maps to export, comma-separated (default: every enabled map).
    #[arg(long, value_delimiter = ',')]
    maps: Vec<String>,
    /// A value to leave out and bind per environment on import: MAP.PATH (like
    /// customers.config.companies); repeatable.
    #[arg(long = "parameter")]
    parameters: Vec<String>,
    /// The bundle file to write.
    #[arg(long, short)]
    output: PathBuf,
}

#[derive(Debug, Args)]
pub(super) struct ImportArgs {
    /// The bundle file.
    file: PathBuf,
    /// The deployment's config file (without it: the running engine's, through its API).
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
    /// Bind a parameter: MAP.PATH=TOML-VALUE (like customers.config.companies=["USMF"]);
    /// repeatable.
    #[arg(long = "set")]
    sets: Vec<String>,
    /// Apply it after the checks.
    #[arg(long)]
    apply: bool,
}

#[derive(Debug, Args)]
pub(super) struct RollbackArgs {
    /// The solution's name.
    name: String,
    /// The deployment's config file (without it: the running engine's, through its API).
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
pub(super) struct HistoryArgs {
    /// The deployment's config file.
    #[arg(long, short)]
    config: PathBuf,
}

pub(super) fn run(cli: &Cli, command: &SolutionCommand) -> anyhow::Result<ExitCode> {
    match command {
        SolutionCommand::Export(args) => export(cli, args),
        SolutionCommand::Import(args) => import(cli, args),
        SolutionCommand::Rollback(args) => rollback(args),
        SolutionCommand::History(args) => history(args),
    }
}

fn export(cli: &Cli, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let bytes = match &args.config {
        Some(config) => {
            let runtime = cli.runtime(Limits::default())?;
            let options = ExportOptions {
                publisher: args.publisher.clone(),
                name: args.name.clone(),
                version: args.version.clone(),
                maps: args.maps.clone(),
                parameters: args.parameters.clone(),
            };
            solution::export(config, &runtime, &options)?.write()?
        }
        None => {
            let mut query = vec![
                ("name", args.name.clone()),
                ("publisher", args.publisher.clone()),
                ("version", args.version.clone()),
            ];
            if !args.maps.is_empty() {
                query.push(("maps", args.maps.join(",")));
            }
            if !args.parameters.is_empty() {
                query.push(("parameters", args.parameters.join(",")));
            }
            api_get_bytes(&args.client, "/api/v1/solutions/export", &query)?
        }
    };
    let bundle = solution::bundle::Bundle::read(&bytes)?;
    std::fs::write(&args.output, &bytes)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "{}: solution {} {} by {}, {} map(s): {}{}",
        args.output.display(),
        bundle.manifest.name,
        bundle.manifest.version,
        bundle.manifest.publisher,
        bundle.manifest.maps.len(),
        bundle
            .manifest
            .maps
            .iter()
            .map(|map| map.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        if bundle.manifest.dependencies.is_empty() {
            String::new()
        } else {
            format!(
                "; needs in the target: {}",
                bundle.manifest.dependencies.join(", ")
            )
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn import(cli: &Cli, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let answer: Json = match &args.config {
        Some(config) => {
            let runtime = cli.runtime(Limits::default())?;
            let prepared = match solution::prepare(&bytes, config, &runtime, &args.sets) {
                Ok(prepared) => prepared,
                Err(error) => {
                    eprintln!("dualwrite: {error:#}");
                    return Ok(ExitCode::from(1));
                }
            };
            let applied = if args.apply {
                Some(solution::apply(&prepared, config)?)
            } else {
                None
            };
            let manifest = &prepared.bundle.manifest;
            serde_json::json!({
                "solution": manifest.name,
                "version": manifest.version,
                "publisher": manifest.publisher,
                "diff": prepared.diff,
                "applied": applied,
                "switching": null,
            })
        }
        None => {
            let mut query = vec![("apply", args.apply.to_string())];
            query.extend(args.sets.iter().map(|set| ("set", set.clone())));
            match api_post_bytes(&args.client, "/api/v1/solutions/import", &query, bytes) {
                Ok(answer) => answer,
                Err(error) => {
                    eprintln!("dualwrite: {error:#}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
    };
    if args.client.json() {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "solution {} {} by {}",
        answer["solution"].as_str().unwrap_or("?"),
        answer["version"].as_str().unwrap_or("?"),
        answer["publisher"].as_str().unwrap_or("?")
    );
    let diff: Vec<solution::MapDiff> =
        serde_json::from_value(answer["diff"].clone()).unwrap_or_default();
    for line in diff_lines(&diff) {
        println!("  {line}");
    }
    match answer.get("applied").filter(|applied| !applied.is_null()) {
        None => println!("checked; nothing applied (add --apply to apply)"),
        Some(applied) => {
            println!(
                "applied: map(s) {}; plugin file(s) written: {}",
                list(&applied["maps"]),
                list(&applied["plugin_files"])
            );
            if let Some(maps) = answer["switching"]["maps"].as_array() {
                for map in maps {
                    println!(
                        "  {}: {}",
                        map["map"].as_str().unwrap_or("?"),
                        map["status"].as_str().unwrap_or("?")
                    );
                }
            } else if args.config.is_some() {
                println!("an engine running this deployment switches at its next start");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(value: &Json) -> String {
    let items: Vec<&str> = value
        .as_array()
        .map(|items| items.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn rollback(args: &RollbackArgs) -> anyhow::Result<ExitCode> {
    match &args.config {
        Some(config) => {
            let entry = solution::rollback(config, &args.name)?;
            println!(
                "solution {} {} rolled back: {} holds the config from before it",
                entry.solution,
                entry.version,
                config.display()
            );
        }
        None => {
            let answer = api_post(
                &args.client,
                &format!("/api/v1/solutions/{}/rollback", segment(&args.name)),
            )?;
            println!(
                "solution {} {} rolled back; the running maps switch back",
                answer["solution"].as_str().unwrap_or("?"),
                answer["rolled_back"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn history(args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let plan = crate::config::load_allowing_no_maps(&args.config)
        .map_err(|errors| anyhow::anyhow!("{errors}"))?;
    for entry in solution::history(&plan.data_dir)? {
        println!(
            "{} {} applied {}{}: {}",
            entry.solution,
            entry.version,
            entry.applied_at,
            if entry.rolled_back {
                " (rolled back)"
            } else {
                ""
            },
            entry.maps.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
