//! Drop-in hot swap: a plugin file dropped into (or rewritten in) the plugins folder of
//! a running engine replaces the version its maps run, between steps, or is refused
//! with a logged reason while the maps run on.
//!
//! [`PluginFolder::poll`] takes the settled file names from the folder watcher
//! (`plugin/watch.rs`) and offers each to the maps that run that file
//! ([`Engine::offer_plugin_file`]). For each map:
//!
//! 1. the bytes are loaded as a component of a supported world (a truncated file, a
//!    core module or another world is refused here);
//! 2. the same bytes as the version running: nothing to do;
//! 3. the self-test cases the component carries, if any, must pass
//!    (`replay/self_test.rs`);
//! 4. a **dry run**: the map's newest recorded changes (at most [`DRY_RUN_CHANGES`])
//!    go through a fresh instance of the running version and of the new one, with the
//!    map's config and the engine's lookups; how many outputs differ is reported (a
//!    difference is what a new version is for, so it does not refuse the file; a new
//!    version that cannot start with the map's config, or fails on the recorded
//!    changes, is refused);
//! 5. [`Engine::swap_plugin`] switches the runner, checking the new description still
//!    fits the map's tables, and records the swap (content hashes before and after, the
//!    dry run's figures) in the config history and the activity log.
//!
//! A refusal is a `plugin-rejected` activity entry and a warning naming the file, the
//! map and the reason; the map keeps its runner. Every version a map runs is kept in
//! the state store's plugin archive (by content hash), so `dualwrite plugin rollback`
//! returns to the previous one even after its file was overwritten or the engine
//! restarted.

use std::path::Path;

use crate::plugin::watch::{DEFAULT_SETTLE, PluginFolderWatcher};
use crate::plugin::{LoadedPlugin, MapPluginRunner};
use crate::replay::record::{change_line, header};
use crate::replay::{compare, parse_change_set, replay};
use crate::state::{ActivityEntry, ActivityKind, BatchCommit};

use super::inspect::shape_of;
use super::{Engine, PluginSwap};

/// Most recorded changes a dry run replays.
pub const DRY_RUN_CHANGES: usize = 500;

/// Who swaps dropped files in, as recorded.
const BY: &str = "plugins folder";

/// What a dry run found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DryRun {
    /// Recorded changes replayed through both versions.
    pub changes: usize,
    /// Changes whose outcome differs between the versions.
    pub differing: usize,
}

/// What became of a plugin file offered to one map (or to none).
#[derive(Debug, Clone, PartialEq)]
pub enum DropOutcome {
    /// The map runs the new version from the next step on.
    Swapped {
        /// The map.
        map: String,
        /// The file.
        file: String,
        /// Content hashes (SHA-256, hex) before and after.
        hashes: (String, String),
        /// The plugin's version before and after.
        versions: (String, String),
        /// What the dry run found.
        dry_run: DryRun,
    },
    /// The file holds the version the map runs already.
    Unchanged {
        /// The map.
        map: String,
        /// The file.
        file: String,
    },
    /// The file was refused; the map (if any) runs on as it was.
    Rejected {
        /// The map, `None` for a file no map runs.
        map: Option<String>,
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// A valid plugin file that no map runs (nothing to do).
    Unused {
        /// The file.
        file: String,
    },
}

impl std::fmt::Display for DropOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DropOutcome::Swapped {
                map,
                file,
                hashes,
                versions,
                dry_run,
            } => write!(
                f,
                "{map}: {file} swapped in ({} {} -> {} {}); dry run: {} of {} recorded change(s) differ",
                versions.0,
                &hashes.0[..12.min(hashes.0.len())],
                versions.1,
                &hashes.1[..12.min(hashes.1.len())],
                dry_run.differing,
                dry_run.changes
            ),
            DropOutcome::Unchanged { map, file } => {
                write!(f, "{map}: {file} holds the version it runs already")
            }
            DropOutcome::Rejected {
                map: Some(map),
                file,
                reason,
            } => write!(
                f,
                "{map}: {file} refused, the map runs on its current version: {reason}"
            ),
            DropOutcome::Rejected {
                map: None,
                file,
                reason,
            } => write!(f, "{file} refused: {reason}"),
            DropOutcome::Unused { file } => write!(f, "{file}: a valid plugin no map runs"),
        }
    }
}

/// The plugins folder of a running engine, watched for dropped plugin files.
pub struct PluginFolder {
    watcher: PluginFolderWatcher,
    dir: cap_std::fs::Dir,
}

impl PluginFolder {
    /// Watches `path` (the plan's plugins folder).
    pub fn watch(path: &Path) -> anyhow::Result<PluginFolder> {
        let watcher = PluginFolderWatcher::start(path, DEFAULT_SETTLE)?;
        let dir =
            cap_std::fs::Dir::open_ambient_dir(watcher.folder(), cap_std::ambient_authority())
                .map_err(|error| {
                    anyhow::anyhow!("opening the plugins folder {}: {error}", path.display())
                })?;
        Ok(PluginFolder { watcher, dir })
    }

    /// Offers every settled changed file to the maps that run it; call between steps.
    pub fn poll(&mut self, engine: &mut Engine) -> Vec<DropOutcome> {
        let mut outcomes = Vec::new();
        for file in self.watcher.ready() {
            outcomes.extend(engine.offer_plugin_file(&self.dir, &file));
        }
        outcomes
    }
}

impl Engine {
    /// Offers the plugin file `file` of the plugins folder `dir` to every map that runs
    /// it; see the module doc. Never fails: a refusal is an outcome, logged.
    pub fn offer_plugin_file(&mut self, dir: &cap_std::fs::Dir, file: &str) -> Vec<DropOutcome> {
        let maps: Vec<String> = self
            .maps
            .iter()
            .filter(|run| run.plan.plugin == file)
            .map(|run| run.plan.name.clone())
            .collect();
        let bytes = match dir.read(file) {
            Ok(bytes) => bytes,
            // Removed (or renamed away) before it settled: nothing was dropped.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(error) => {
                let reason = format!("cannot read the file: {error}");
                return self.reject_for(&maps, file, &reason);
            }
        };
        let loaded = self.runtime.load_bytes(file, &bytes);
        if maps.is_empty() {
            return vec![match loaded {
                Ok(_) => {
                    tracing::info!(file, "plugin file in the plugins folder; no map runs it");
                    DropOutcome::Unused {
                        file: file.to_owned(),
                    }
                }
                Err(error) => self.reject(None, file, &error.to_string()),
            }];
        }
        let plugin = match loaded {
            Ok(plugin) => plugin,
            Err(error) => return self.reject_for(&maps, file, &error.to_string()),
        };
        maps.iter()
            .map(|map| self.offer_to_map(map, &plugin, &bytes))
            .collect()
    }

    fn offer_to_map(&mut self, map: &str, plugin: &LoadedPlugin, bytes: &[u8]) -> DropOutcome {
        let file = plugin.file().to_owned();
        let Some(index) = self.maps.iter().position(|run| run.plan.name == map) else {
            return self.reject(Some(map), &file, "the map is no longer running");
        };
        if self.maps[index].runner.plugin().hash() == plugin.hash() {
            return DropOutcome::Unchanged {
                map: map.to_owned(),
                file,
            };
        }
        if let Err(reason) = crate::replay::self_test::check_embedded(plugin, bytes) {
            return self.reject(Some(map), &file, &reason);
        }
        let dry_run = match self.dry_run(index, plugin) {
            Ok(dry_run) => dry_run,
            Err(reason) => return self.reject(Some(map), &file, &format!("dry run: {reason}")),
        };
        let reason = format!(
            "{file} dropped into the plugins folder; dry run over the newest {} recorded \
             change(s): {} differ",
            dry_run.changes, dry_run.differing
        );
        match self.swap_plugin(
            map,
            PluginSwap {
                plugin: Some(plugin.clone()),
                config: None,
                by: BY.to_owned(),
                reason,
            },
        ) {
            Ok(report) => {
                if let Err(error) =
                    self.store
                        .archive_plugin(&report.hashes.1, plugin.file(), bytes)
                {
                    tracing::warn!(map, %error, "archiving the new plugin version failed; a rollback to it after a restart needs its file");
                }
                tracing::info!(
                    map,
                    file,
                    from = %report.hashes.0,
                    to = %report.hashes.1,
                    differing = dry_run.differing,
                    changes = dry_run.changes,
                    "dropped plugin file swapped in"
                );
                DropOutcome::Swapped {
                    map: map.to_owned(),
                    file,
                    hashes: report.hashes,
                    versions: report.versions,
                    dry_run,
                }
            }
            Err(error) => self.reject(Some(map), &file, &error.to_string()),
        }
    }

    /// Replays the map's newest recorded changes through a fresh instance of the
    /// running version and of `plugin`; see the module doc.
    fn dry_run(&self, index: usize, plugin: &LoadedPlugin) -> Result<DryRun, String> {
        let run = &self.maps[index];
        let records = self
            .store
            .latest_recorded(&run.plan.name, DRY_RUN_CHANGES)
            .map_err(|error| format!("reading the recorded changes: {error}"))?;
        let config = run.plan.plugin_config_json();
        let lookups = run.runner.lookups();
        let mut new = plugin
            .start(&config, lookups.clone())
            .map_err(|error| format!("the new version does not start: {error}"))?;
        if records.is_empty() {
            return Ok(DryRun::default());
        }
        let mut old = run
            .runner
            .plugin()
            .start(&config, lookups)
            .map_err(|error| format!("the running version does not start again: {error}"))?;
        let outputs = |runner: &mut MapPluginRunner, which: &str| -> Result<_, String> {
            let shape = shape_of(runner, &run.plan);
            let mut text = header(&run.plan.name, chrono::Utc::now()).to_string();
            for record in &records {
                text.push('\n');
                text.push_str(&change_line(record, &shape).to_string());
            }
            let set = parse_change_set("recorded changes", &text)
                .map_err(|error| format!("the recorded changes as a change set: {error}"))?;
            replay(runner, &set, 100).map_err(|error| format!("{which}: {error}"))
        };
        let before = outputs(&mut old, "the running version")?;
        let after = outputs(&mut new, "the new version")?;
        Ok(DryRun {
            changes: records.len(),
            differing: compare(&before, &after).len(),
        })
    }

    fn reject_for(&mut self, maps: &[String], file: &str, reason: &str) -> Vec<DropOutcome> {
        if maps.is_empty() {
            return vec![self.reject(None, file, reason)];
        }
        maps.iter()
            .map(|map| self.reject(Some(map), file, reason))
            .collect()
    }

    /// Logs and records a refusal; the map runs on as it was.
    fn reject(&mut self, map: Option<&str>, file: &str, reason: &str) -> DropOutcome {
        let running = map.and_then(|map| {
            self.maps
                .iter()
                .find(|run| run.plan.name == map)
                .map(|run| run.runner.plugin().hash().hex())
        });
        // Callers print the outcome (`dualwrite run`, the demo); the log has it too.
        tracing::info!(
            map = map.unwrap_or("-"),
            file,
            reason,
            "plugin file refused; the map runs on its current version"
        );
        let mut entry = ActivityEntry::new(
            map,
            ActivityKind::PluginRejected,
            match map {
                Some(_) => format!("{file} refused, the map runs on its current version: {reason}"),
                None => format!("{file} refused: {reason}"),
            },
        );
        entry.detail = Some(serde_json::json!({
            "file": file,
            "reason": reason,
            "running": running,
        }));
        if let Err(error) = self.store.commit(&BatchCommit {
            activity: vec![entry],
            ..BatchCommit::default()
        }) {
            tracing::warn!(%error, "recording the refusal of a plugin file failed");
        }
        DropOutcome::Rejected {
            map: map.map(str::to_owned),
            file: file.to_owned(),
            reason: reason.to_owned(),
        }
    }
}
