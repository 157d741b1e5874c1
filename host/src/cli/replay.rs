//! `dualwrite replay`: run a plugin over a recorded change set, with no database.
//!
//! Prints one JSON line per change (its outcome and writes). `--expect FILE` compares
//! with expected records instead (exit 0 when all match, 1 with a per-record diff);
//! `--bless` writes the actual records to the `--expect` file. `--against OLD.wasm`
//! runs the change set through an older version of the plugin too and prints the
//! records whose output differs (exit 1 when any do).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use serde_json::Value as Json;

use super::{Cli, open_plugin_file};
use crate::plugin::{Limits, MapPluginRunner};
use crate::replay::{
    ChangeSet, RecordedLookups, compare, parse_change_set, parse_links, parse_records, parse_rows,
    records_to_jsonl, render_diffs, replay,
};

#[derive(Debug, Args)]
pub(super) struct ReplayArgs {
    /// The plugin component to run.
    #[arg(long)]
    plugin: PathBuf,
    /// The change set (JSON Lines; see docs/change-sets.md).
    #[arg(long)]
    changes: PathBuf,
    /// The map's plugin config, a JSON file (default `{}`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Recorded links that answer the plugin's key translations (JSON Lines).
    #[arg(long)]
    links: Option<PathBuf>,
    /// Recorded rows that answer the plugin's row reads (JSON Lines).
    #[arg(long)]
    rows: Option<PathBuf>,
    /// Expected result records: exit 0 when all match, 1 with a per-record diff.
    #[arg(long)]
    expect: Option<PathBuf>,
    /// With --expect: write the actual records to the expect file instead of comparing.
    #[arg(long, requires = "expect")]
    bless: bool,
    /// Another version of the plugin: print the changes whose results differ.
    #[arg(long, conflicts_with = "expect")]
    against: Option<PathBuf>,
    /// Changes per plugin call.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Fuel (instruction budget) per change.
    #[arg(long)]
    fuel_per_change: Option<u64>,
    /// Memory cap per plugin instance, in MiB.
    #[arg(long)]
    memory_mib: Option<usize>,
    /// Print the plugin's log lines to stderr.
    #[arg(long, short)]
    verbose: bool,
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn display_name(path: &Path) -> String {
    path.display().to_string()
}

pub(super) fn run(cli: &Cli, args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let mut limits = Limits::default();
    if let Some(fuel) = args.fuel_per_change {
        limits.fuel_per_change = fuel;
    }
    if let Some(mib) = args.memory_mib {
        limits.memory_bytes = mib << 20;
    }
    let runtime = cli.runtime(limits)?;
    let config = match &args.config {
        Some(path) => read(path)?,
        None => "{}".to_owned(),
    };
    let links = match &args.links {
        Some(path) => parse_links(&display_name(path), &read(path)?)?,
        None => Vec::new(),
    };
    let rows = match &args.rows {
        Some(path) => parse_rows(&display_name(path), &read(path)?)?,
        None => Vec::new(),
    };
    let lookups = Arc::new(RecordedLookups::new(links, rows));
    let changes = parse_change_set(&display_name(&args.changes), &read(&args.changes)?)?;

    let start = |path: &Path| -> anyhow::Result<MapPluginRunner> {
        let (dir, name) = open_plugin_file(path)?;
        let plugin = runtime.load(&dir, &name)?;
        Ok(plugin.start(&config, lookups.clone())?)
    };
    let run_one =
        |runner: &mut MapPluginRunner, changes: &ChangeSet| -> anyhow::Result<Vec<Json>> {
            let records = replay(runner, changes, args.batch_size)?;
            if args.verbose {
                for line in runner.take_logs() {
                    eprintln!("[plugin {:?}] {}", line.level, line.message);
                }
            }
            Ok(records)
        };

    let mut runner = start(&args.plugin)?;
    let actual = run_one(&mut runner, &changes)?;

    if let Some(old_path) = &args.against {
        let mut old_runner = start(old_path)?;
        let old = run_one(&mut old_runner, &changes)?;
        let diffs = compare(&old, &actual);
        print!("{}", render_diffs(&diffs, "old", "new"));
        println!(
            "{} of {} changes differ between {} (old) and {} (new)",
            diffs.len(),
            actual.len(),
            old_path.display(),
            args.plugin.display()
        );
        return Ok(if diffs.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }

    let Some(expect_path) = &args.expect else {
        print!("{}", records_to_jsonl(&actual));
        return Ok(ExitCode::SUCCESS);
    };
    if args.bless {
        std::fs::write(expect_path, records_to_jsonl(&actual))
            .with_context(|| format!("writing {}", expect_path.display()))?;
        println!(
            "blessed {} ({} records)",
            expect_path.display(),
            actual.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let expected = parse_records(&display_name(expect_path), &read(expect_path)?)?;
    let diffs = compare(&expected, &actual);
    if diffs.is_empty() {
        println!(
            "all {} changes match {}",
            actual.len(),
            expect_path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render_diffs(&diffs, "expected", "actual"));
    println!(
        "{} of {} changes differ from {}",
        diffs.len(),
        expected.len().max(actual.len()),
        expect_path.display()
    );
    Ok(ExitCode::from(1))
}
