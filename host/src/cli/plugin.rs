//! `dualwrite plugin check FILE`: validate a plugin file (and run the self-test cases
//! it carries) and print what it maps; `dualwrite plugin embed-tests`: embed cases;
//! `dualwrite plugin rollback MAP`: return a running map to its previous plugin version;
//! `dualwrite plugin new`: write a plugin project (see [`super::plugin_new`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{Cli, open_plugin_file};
use crate::change::{Descriptor, EntitySpec};
use crate::plugin::{Limits, NoLookups};
use crate::replay::self_test;

#[derive(Debug, Subcommand)]
pub(super) enum PluginCommand {
    /// Validate a plugin file (component, supported world, configure, describe, the
    /// self-test cases it carries) and print what it maps.
    Check(CheckArgs),
    /// Write a plugin project (Rust, JavaScript, Python or C) that builds into a
    /// component and passes `dualwrite replay` on its sample change set.
    New(super::plugin_new::NewArgs),
    /// Run a map on the plugin version it ran before (through the running engine's
    /// admin API); every version a map ran is kept, so this works after its file was
    /// overwritten and after a restart.
    Rollback(RollbackArgs),
    /// Embed self-test cases (case folders in the tests/cases layout) into a plugin
    /// file; `plugin check` and the engine's hot swap run them.
    EmbedTests(EmbedTestsArgs),
}

#[derive(Debug, Args)]
pub(super) struct EmbedTestsArgs {
    /// The plugin component file.
    file: PathBuf,
    /// A case folder (changes.jsonl, expected.jsonl, optional config.json, links.jsonl,
    /// rows.jsonl); repeat for more.
    #[arg(long = "case", required = true)]
    cases: Vec<PathBuf>,
    /// Where to write the component with the cases (default: FILE itself, replaced
    /// atomically).
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(super) struct RollbackArgs {
    #[command(flatten)]
    client: super::admin::ClientArgs,
    /// The map.
    map: String,
    /// A recorded plugin config of the map to go back to (`GET
    /// /api/v1/maps/MAP/config` lists them); default: the one before the one in force.
    #[arg(long)]
    to: Option<u64>,
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
        PluginCommand::EmbedTests(args) => embed_tests(cli, args),
        PluginCommand::New(args) => super::plugin_new::run(args),
        PluginCommand::Rollback(args) => {
            super::admin::rollback_plugin(&args.client, &args.map, args.to)
        }
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
    }
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    match self_test::embedded(&bytes)? {
        None => eprintln!("self-test: the plugin carries no cases"),
        Some(tests) => match self_test::run(&plugin, &tests) {
            Ok(passed) => eprintln!("self-test: {passed} case(s) pass"),
            Err(reason) => {
                eprintln!("self-test failed: {reason}");
                return Ok(ExitCode::from(1));
            }
        },
    }
    if !args.json {
        println!("ok");
    }
    Ok(ExitCode::SUCCESS)
}

/// `dualwrite plugin embed-tests`: checks the cases pass on the plugin, then writes
/// the component with them.
fn embed_tests(cli: &Cli, args: &EmbedTestsArgs) -> anyhow::Result<ExitCode> {
    let runtime = cli.runtime(Limits::default())?;
    let (dir, name) = open_plugin_file(&args.file)?;
    let plugin = runtime.load(&dir, &name)?;
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let tests = self_test::SelfTests {
        version: 1,
        cases: args
            .cases
            .iter()
            .map(|dir| self_test::SelfTestCase::read_dir(dir))
            .collect::<anyhow::Result<_>>()?,
    };
    if let Err(reason) = self_test::run(&plugin, &tests) {
        eprintln!(
            "not embedded: the cases do not pass on {}: {reason}",
            args.file.display()
        );
        return Ok(ExitCode::from(1));
    }
    let with_cases = self_test::embed(&bytes, &tests)?;
    // The result must still load as the same plugin.
    runtime.load_bytes(&name, &with_cases)?;
    let output = args.output.as_ref().unwrap_or(&args.file);
    let staging = output.with_file_name(format!(
        ".{}.partial",
        output
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("plugin.wasm")
    ));
    std::fs::write(&staging, &with_cases)
        .with_context(|| format!("writing {}", staging.display()))?;
    std::fs::rename(&staging, output).with_context(|| format!("writing {}", output.display()))?;
    println!(
        "{}: {} self-test case(s) embedded ({} bytes)",
        output.display(),
        tests.cases.len(),
        with_cases.len()
    );
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
