//! Plugin tests as data: every folder under `tests/cases/` is one named test.
//!
//! A case folder holds `case.toml` (which plugin, optional limits, and what to expect
//! when the plugin must be refused), and for a replay case `changes.jsonl` (a change
//! set), optionally `config.json`, `links.jsonl` and `rows.jsonl`, and `expected.jsonl`
//! (one result record per change, exactly as `dualwrite replay` prints them). The case
//! runs through the same code as `dualwrite replay --expect`.
//!
//! A case may list `variants`: other builds of the same map (e.g. the same plugin written
//! in JavaScript, Python and C) that must give exactly the same results. Each variant
//! runs as its own test, `<case>@<variant>`, against the same files.
//!
//! Set `DUALWRITE_BLESS=1` to rewrite every `expected.jsonl` from the actual output;
//! review the diff before committing it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use dualwrite::plugin::{Limits, PluginRuntime};
use dualwrite::replay::{
    RecordedLookups, compare, parse_change_set, parse_links, parse_records, parse_rows,
    records_to_jsonl, render_diffs, replay,
};
use dualwrite_tests::{cases_dir, plugin_path, plugins_dir};
use libtest_mimic::{Arguments, Failed, Trial};
use serde::Deserialize;

/// `case.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    /// What the case shows.
    description: String,
    /// The plugin crate under `plugins/` to run.
    plugin: String,
    /// Other plugins under `plugins/` that must pass the same case (never blessed).
    #[serde(default)]
    variants: Vec<String>,
    /// Which file of that plugin to load: the component (default), its core module, or
    /// the component cut to `truncate_to` bytes.
    #[serde(default)]
    file: PluginFile,
    truncate_to: Option<usize>,
    /// Changes per plugin call (default 100).
    batch_size: Option<usize>,
    #[serde(default)]
    limits: LimitOverrides,
    /// The case expects the file to be refused at load with a message containing this.
    expect_load_error: Option<String>,
    /// The case expects start (configure/describe) to fail with a message containing
    /// this.
    expect_start_error: Option<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum PluginFile {
    #[default]
    Component,
    CoreModule,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitOverrides {
    memory_mib: Option<usize>,
    fuel_per_change: Option<u64>,
    fuel_per_call: Option<u64>,
    deadline_per_call_ms: Option<u64>,
    max_writes_per_change: Option<usize>,
    quarantine_after: Option<u32>,
}

impl LimitOverrides {
    fn apply(&self) -> Limits {
        let mut limits = Limits {
            // Small pools: many cases run side by side in one process.
            max_instances: 8,
            ..Limits::default()
        };
        if let Some(mib) = self.memory_mib {
            limits.memory_bytes = mib << 20;
        }
        if let Some(fuel) = self.fuel_per_change {
            limits.fuel_per_change = fuel;
        }
        if let Some(fuel) = self.fuel_per_call {
            limits.fuel_per_call = fuel;
        }
        if let Some(ms) = self.deadline_per_call_ms {
            limits.deadline_per_call = Duration::from_millis(ms);
        }
        if let Some(max) = self.max_writes_per_change {
            limits.max_writes_per_change = max;
        }
        if let Some(count) = self.quarantine_after {
            limits.quarantine_after = count;
        }
        limits
    }
}

fn main() {
    let arguments = Arguments::from_args();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/cases exists")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.join("case.toml").is_file())
        .collect();
    cases.sort();
    let mut trials = Vec::new();
    for dir in cases {
        let name = dir
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("?")
            .to_owned();
        // A case.toml that does not parse fails in the case's own test below.
        let variants = read(&dir.join("case.toml"))
            .ok()
            .and_then(|text| toml::from_str::<CaseFile>(&text).ok())
            .map(|case| case.variants)
            .unwrap_or_default();
        for variant in variants {
            let dir = dir.clone();
            trials.push(Trial::test(format!("{name}@{variant}"), move || {
                run_case(&dir, Some(&variant)).map_err(|error| Failed::from(format!("{error:#}")))
            }));
        }
        trials.push(Trial::test(name, move || {
            run_case(&dir, None).map_err(|error| Failed::from(format!("{error:#}")))
        }));
    }
    let conclusion = libtest_mimic::run(&arguments, trials);
    // The compiled-code cache of this run (see `code_cache`) goes with it.
    let _ = std::fs::remove_dir_all(code_cache());
    conclusion.exit();
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    if path.exists() {
        read(path).map(Some)
    } else {
        Ok(None)
    }
}

fn code_cache() -> PathBuf {
    std::env::temp_dir().join(format!("dualwrite-test-cache-{}", std::process::id()))
}

/// Runs the case in `dir` with its plugin, or with `variant` instead.
fn run_case(dir: &Path, variant: Option<&str>) -> Result<()> {
    let mut case: CaseFile = toml::from_str(&read(&dir.join("case.toml"))?)
        .with_context(|| format!("parsing {}/case.toml", dir.display()))?;
    if let Some(variant) = variant {
        case.plugin = variant.to_owned();
    }
    if case.description.trim().is_empty() {
        bail!("case.toml needs a description");
    }
    let runtime = PluginRuntime::new(case.limits.apply(), Some(code_cache()))?;
    let component = plugin_path(&case.plugin);
    let mut bytes = match case.file {
        PluginFile::Component => std::fs::read(&component),
        PluginFile::CoreModule => std::fs::read(component.with_extension("core.wasm")),
    }
    .with_context(|| {
        format!(
            "reading the built plugin {} from {}",
            case.plugin,
            plugins_dir().display()
        )
    })?;
    if let Some(length) = case.truncate_to {
        bytes.truncate(length);
    }
    let file_name = component
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("plugin.wasm");

    let loaded = runtime.load_bytes(file_name, &bytes);
    if let Some(needle) = &case.expect_load_error {
        return match loaded {
            Ok(_) => bail!("the plugin loaded, but the case expects it refused with {needle:?}"),
            Err(error) if error.to_string().contains(needle.as_str()) => Ok(()),
            Err(error) => bail!("refused with {error}, but the case expects {needle:?}"),
        };
    }
    let plugin = loaded?;

    let config = read_optional(&dir.join("config.json"))?.unwrap_or_else(|| "{}".to_owned());
    let links = match read_optional(&dir.join("links.jsonl"))? {
        Some(text) => parse_links("links.jsonl", &text)?,
        None => Vec::new(),
    };
    let rows = match read_optional(&dir.join("rows.jsonl"))? {
        Some(text) => parse_rows("rows.jsonl", &text)?,
        None => Vec::new(),
    };
    let started = plugin.start(&config, Arc::new(RecordedLookups::new(links, rows)));
    if let Some(needle) = &case.expect_start_error {
        return match started {
            Ok(_) => bail!("the plugin started, but the case expects {needle:?}"),
            Err(error) if error.to_string().contains(needle.as_str()) => Ok(()),
            Err(error) => bail!("start failed with {error}, but the case expects {needle:?}"),
        };
    }
    let mut runner = started?;

    let changes = parse_change_set("changes.jsonl", &read(&dir.join("changes.jsonl"))?)?;
    let actual = replay(&mut runner, &changes, case.batch_size.unwrap_or(100))?;
    let expected_path = dir.join("expected.jsonl");
    if variant.is_none() && std::env::var_os("DUALWRITE_BLESS").is_some() {
        std::fs::write(&expected_path, records_to_jsonl(&actual))?;
        return Ok(());
    }
    let expected = parse_records("expected.jsonl", &read(&expected_path)?)?;
    let diffs = compare(&expected, &actual);
    if !diffs.is_empty() {
        bail!(
            "{} of {} records differ (DUALWRITE_BLESS=1 rewrites expected.jsonl):\n{}",
            diffs.len(),
            expected.len().max(actual.len()),
            render_diffs(&diffs, "expected", "actual")
        );
    }
    Ok(())
}
