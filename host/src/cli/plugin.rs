//! `dualwrite plugin check FILE`: validate a plugin file and print what it maps.
//! `dualwrite plugin new`: write a plugin project (see [`super::plugin_new`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{Cli, open_plugin_file};
use crate::change::{Descriptor, EntitySpec};
use crate::plugin::{Limits, NoLookups};

#[derive(Debug, Subcommand)]
pub(super) enum PluginCommand {
    /// Validate a plugin file (component, supported world, configure, describe) and
    /// print what it maps.
    Check(CheckArgs),
    /// Write a plugin project (Rust, JavaScript, Python or C) that builds into a
    /// component and passes `dualwrite replay` on its sample change set.
    New(super::plugin_new::NewArgs),
}

#[derive(Debug, Args)]
pub(super) struct CheckArgs {
    /// The plugin component file.
    file: PathBuf,
    /// A JSON config file to configure it with (default `{}`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the descriptor as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(cli: &Cli, command: &PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::Check(args) => check(cli, args),
        PluginCommand::New(args) => super::plugin_new::run(args),
    }
}

fn check(cli: &Cli, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let runtime = cli.runtime(Limits::default())?;
    let (dir, name) = open_plugin_file(&args.file)?;
    let plugin = runtime.load(&dir, &name)?;
    let config = match &args.config {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => "{}".to_owned(),
    };
    let runner = plugin.start(&config, Arc::new(NoLookups))?;
    let descriptor = runner.descriptor();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&descriptor_json(descriptor))?
        );
    } else {
        println!(
            "{} {} ({}), dualwrite:table-map@{}, {}",
            descriptor.name,
            descriptor.version,
            plugin.file(),
            plugin.world_version(),
            plugin.hash()
        );
        println!("  {}", descriptor.summary);
        print_entity("erp", &descriptor.erp);
        print_entity("crm", &descriptor.crm);
        for mapping in &descriptor.mappings {
            println!(
                "  {:<32} {:<7} {:<32} {}",
                mapping.erp_field.as_deref().unwrap_or("-"),
                mapping.direction.as_str(),
                mapping.crm_field.as_deref().unwrap_or("-"),
                mapping.transform
            );
        }
        if !descriptor.depends_on.is_empty() {
            println!("  depends on: {}", descriptor.depends_on.join(", "));
        }
        println!("ok");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_entity(side: &str, entity: &EntitySpec) {
    let fields: Vec<String> = entity
        .fields
        .iter()
        .map(|field| {
            format!(
                "{}{}:{}",
                if field.key { "*" } else { "" },
                field.name,
                field.kind.as_str()
            )
        })
        .collect();
    println!("  {side} {} [{}]", entity.entity, fields.join(", "));
}

/// The descriptor as JSON, for tools and the admin UI.
pub(crate) fn descriptor_json(descriptor: &Descriptor) -> serde_json::Value {
    let entity = |entity: &EntitySpec| {
        serde_json::json!({
            "entity": entity.entity,
            "fields": entity.fields.iter().map(|field| serde_json::json!({
                "name": field.name, "kind": field.kind.as_str(), "key": field.key,
            })).collect::<Vec<_>>(),
        })
    };
    serde_json::json!({
        "name": descriptor.name,
        "version": descriptor.version,
        "summary": descriptor.summary,
        "erp": entity(&descriptor.erp),
        "crm": entity(&descriptor.crm),
        "mappings": descriptor.mappings.iter().map(|mapping| serde_json::json!({
            "erp_field": mapping.erp_field,
            "crm_field": mapping.crm_field,
            "direction": mapping.direction.as_str(),
            "transform": mapping.transform,
        })).collect::<Vec<_>>(),
        "depends_on": descriptor.depends_on,
        "config_schema": serde_json::from_str::<serde_json::Value>(&descriptor.config_schema)
            .unwrap_or_else(|_| serde_json::Value::String(descriptor.config_schema.clone())),
    })
}
