//! Changing what a running map runs: new plugin bytes, a new config, or both, switched
//! between steps so no batch sees two versions.
//!
//! [`Engine::swap_plugin`] is the one primitive. The new plugin (or the map's current
//! one) is started on a fresh instance with the new config (or the current one): a
//! config the plugin's `configure` refuses comes back as [`SwapError::Refused`] with the
//! plugin's JSON pointer and message, and the map keeps running as it was. The new
//! descriptor must still fit the map's tables (same entities, keys declared, fields
//! present). Only then is the runner replaced, the change recorded in the state store's
//! plugin config history (so a restart keeps it and a rollback can go back) and in the
//! activity log as a `plugin-version` entry.
//!
//! At open, [`restore`] applies the newest recorded config of a map, unless the
//! deployment file's config of the map changed since it was recorded (the file wins)
//! or the recorded plugin file is gone or different (logged, the file's is used).

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{Engine, SideLink, check_map_fits};
use crate::config::MapPlan;
use crate::plugin::{LoadedPlugin, Lookups, MapPluginRunner, PluginRuntime, StartError};
use crate::state::{
    ActivityEntry, ActivityKind, BatchCommit, MapConfigRecord, NewMapConfig, StateStore,
};

/// What to change in a map.
#[derive(Clone, Default)]
pub struct PluginSwap {
    /// New plugin bytes, loaded; `None` keeps the map's plugin.
    pub plugin: Option<LoadedPlugin>,
    /// The new config; `None` keeps the map's config.
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    /// Who asks (recorded).
    pub by: String,
    /// Why (recorded); empty for none.
    pub reason: String,
}

/// Why a swap was not made. The map runs on as it was in every case.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// No running map of that name.
    #[error("no running map named {0}")]
    UnknownMap(String),
    /// The plugin's `configure` refused the config.
    #[error("the plugin refused the config at `{path}`: {message}")]
    Refused {
        /// JSON pointer of the offending part, as the plugin gave it.
        path: String,
        /// What the plugin said.
        message: String,
    },
    /// The plugin could not be started, or what it describes does not fit the map.
    #[error("{0}")]
    Unfit(String),
    /// Recording the change failed.
    #[error("recording the change: {0}")]
    State(#[from] crate::state::StateError),
}

/// What a swap did.
#[derive(Debug, Clone, PartialEq)]
pub struct SwapReport {
    /// The history record now in force.
    pub record_id: u64,
    /// The plugin's version before and after (from `describe`).
    pub versions: (String, String),
    /// The plugin's content hash before and after.
    pub hashes: (String, String),
}

/// SHA-256 of a config's JSON text, lowercase hex.
pub fn config_hash(config_json: &str) -> String {
    hex::encode(Sha256::digest(config_json.as_bytes()))
}

impl Engine {
    /// Runs `map` with `swap`'s plugin and/or config from the next step on; see the
    /// module doc.
    pub fn swap_plugin(&mut self, map: &str, swap: PluginSwap) -> Result<SwapReport, SwapError> {
        let index = self
            .maps
            .iter()
            .position(|run| run.plan.name == map)
            .ok_or_else(|| SwapError::UnknownMap(map.to_owned()))?;
        let current = &self.maps[index];
        let plugin = swap
            .plugin
            .clone()
            .unwrap_or_else(|| current.runner.plugin().clone());
        let mut plan = current.plan.clone();
        if let Some(config) = &swap.config {
            plan.plugin_config = config.clone();
        }
        plan.plugin = plugin.file().to_owned();
        let lookups = current.runner.lookups();
        let runner = start_checked(&plugin, &plan, lookups, &mut self.sides)?;
        let before = (
            current.runner.descriptor().version.clone(),
            current.runner.plugin().hash().hex(),
        );
        let after = (runner.descriptor().version.clone(), plugin.hash().hex());
        let base_config_hash = config_hash(&self.maps[index].file_config);
        let what = match (swap.plugin.is_some(), swap.config.is_some()) {
            (true, true) => "plugin and config",
            (true, false) => "plugin",
            _ => "config",
        };
        let message = format!(
            "{}: {what} changed ({} {} -> {} {}){}",
            swap.by,
            plugin.file(),
            before.0,
            after.0,
            if before.1 == after.1 {
                String::new()
            } else {
                format!(", hash {} -> {}", &before.1[..12], &after.1[..12])
            },
            if swap.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", swap.reason)
            }
        );
        // The record and its activity entry commit together.
        let activity = |record_id: u64| {
            let mut entry =
                ActivityEntry::new(Some(map), ActivityKind::PluginVersion, message.clone());
            entry.plugin_version = Some(plugin.hash().short());
            entry.detail = Some(serde_json::json!({
                "record": record_id,
                "changed": what,
                "from": {"version": before.0, "hash": before.1},
                "to": {"version": after.0, "hash": after.1, "file": plugin.file()},
            }));
            BatchCommit {
                activity: vec![entry],
                ..BatchCommit::default()
            }
        };
        // A map's first plugin swap records the version it ran until then, so a
        // rollback has a record to return to (the config file names only the file).
        if before.1 != after.1 && self.store.map_configs(map)?.is_empty() {
            let current = &self.maps[index];
            self.store.record_map_config(
                &NewMapConfig {
                    map: map.to_owned(),
                    plugin_file: current.runner.plugin().file().to_owned(),
                    plugin_hash: before.1.clone(),
                    plugin_version: before.0.clone(),
                    config: current.plan.plugin_config_json(),
                    base_config_hash: base_config_hash.clone(),
                    by: "engine".to_owned(),
                    reason: "the version run before the first plugin swap".to_owned(),
                },
                &|_| BatchCommit::default(),
            )?;
        }
        let record_id = self.store.record_map_config(
            &NewMapConfig {
                map: map.to_owned(),
                plugin_file: plugin.file().to_owned(),
                plugin_hash: after.1.clone(),
                plugin_version: after.0.clone(),
                config: plan.plugin_config_json(),
                base_config_hash,
                by: swap.by.clone(),
                reason: swap.reason.clone(),
            },
            &activity,
        )?;
        tracing::info!(map, what, by = %swap.by, "map plugin swapped");
        let run = &mut self.maps[index];
        let retired = std::mem::replace(&mut run.runner, runner);
        if before.1 != after.1
            && !run
                .retired_plugins
                .iter()
                .any(|p| p.hash().hex() == before.1)
        {
            run.retired_plugins.push(retired.plugin().clone());
        }
        run.plan = plan;
        Ok(SwapReport {
            record_id,
            versions: (before.0, after.0),
            hashes: (before.1, after.1),
        })
    }

    /// What `map` runs now: its plan (with the config in force), its runner (plugin,
    /// descriptor) and the deployment file's config of it (JSON text).
    pub fn map_plugin(&self, map: &str) -> Option<(&MapPlan, &MapPluginRunner, &str)> {
        self.maps
            .iter()
            .find(|run| run.plan.name == map)
            .map(|run| (&run.plan, &run.runner, run.file_config.as_str()))
    }

    /// A plugin `map` ran before a swap, by content hash (SHA-256, hex), for a rollback.
    pub fn retired_plugin(&self, map: &str, hash: &str) -> Option<LoadedPlugin> {
        self.maps
            .iter()
            .find(|run| run.plan.name == map)?
            .retired_plugins
            .iter()
            .find(|plugin| plugin.hash().hex() == hash)
            .cloned()
    }

    /// The recorded plugin configs of `map`, oldest first.
    pub fn map_config_history(&self, map: &str) -> anyhow::Result<Vec<MapConfigRecord>> {
        Ok(self.store.map_configs(map)?)
    }
}

/// Loads the plugin `plan` runs at open. Usually the file in the plugins folder, which
/// is then kept in the plugin archive. Two cases run an archived version instead:
///
/// - the file holds a version the map's config history shows was superseded (a
///   rollback went back from it): the version in force is run, so a rollback outlives
///   a restart;
/// - the file cannot be loaded (damaged, wrong world, failing its embedded self-test
///   cases) and the archive holds the version in force: a bad file never replaces a good one, even across a restart. The
///   refusal is logged and recorded.
pub(super) fn load_at_open(
    store: &dyn StateStore,
    runtime: &PluginRuntime,
    plugins_dir: &cap_std::fs::Dir,
    plan: &MapPlan,
) -> anyhow::Result<LoadedPlugin> {
    let history = match store.map_configs(&plan.name) {
        Ok(history) => history,
        Err(crate::state::StateError::UnknownMap { .. }) => Vec::new(),
        Err(error) => return Err(error.into()),
    };
    let in_force = history
        .last()
        .filter(|newest| newest.record.plugin_file == plan.plugin)
        .map(|newest| newest.record.plugin_hash.clone());
    let archived = |hash: &str| -> Option<LoadedPlugin> {
        let (_, bytes) = store.archived_plugin(hash).ok()??;
        runtime.load_bytes(&plan.plugin, &bytes).ok()
    };
    let loaded = plugins_dir
        .read(&plan.plugin)
        .map_err(|error| crate::plugin::LoadError::Read {
            file: plan.plugin.clone(),
            message: error.to_string(),
        })
        .map_err(|error| error.to_string())
        .and_then(|bytes| {
            let plugin = runtime
                .load_bytes(&plan.plugin, &bytes)
                .map_err(|error| error.to_string())?;
            // A file that carries self-test cases runs only if they pass.
            crate::replay::self_test::check_embedded(&plugin, &bytes)
                .map_err(|reason| format!("{}: {reason}", plan.plugin))?;
            Ok((plugin, bytes))
        });
    match loaded {
        Ok((plugin, bytes)) => {
            let hash = plugin.hash().hex();
            if let Some(in_force) = &in_force
                && *in_force != hash
                && history
                    .iter()
                    .any(|record| record.record.plugin_hash == hash)
                && let Some(kept) = archived(in_force)
            {
                tracing::warn!(
                    map = %plan.name,
                    file = %plan.plugin,
                    "the plugin file holds a version the map was rolled back from; the version in force runs"
                );
                return Ok(kept);
            }
            if let Err(error) = store.archive_plugin(&hash, &plan.plugin, &bytes) {
                tracing::warn!(map = %plan.name, %error, "archiving the plugin version failed");
            }
            Ok(plugin)
        }
        Err(error) => {
            let Some(kept) = in_force.as_deref().and_then(archived) else {
                return Err(anyhow::anyhow!("map {}: {error}", plan.name));
            };
            let reason = error;
            tracing::warn!(
                map = %plan.name,
                file = %plan.plugin,
                %reason,
                "plugin file refused at start; the archived version in force runs"
            );
            let mut entry = ActivityEntry::new(
                Some(&plan.name),
                ActivityKind::PluginRejected,
                format!(
                    "{} refused at start, the version in force runs: {reason}",
                    plan.plugin
                ),
            );
            entry.detail = Some(serde_json::json!({
                "file": plan.plugin, "reason": reason, "running": kept.hash().hex(),
            }));
            store.commit(&BatchCommit {
                activity: vec![entry],
                ..BatchCommit::default()
            })?;
            Ok(kept)
        }
    }
}

/// The versions `map` ran before `current` (newest first, at most `limit`), from the
/// plugin archive, so a rollback after a restart finds them.
pub(super) fn retired_from_archive(
    store: &dyn StateStore,
    runtime: &PluginRuntime,
    map: &str,
    current: &LoadedPlugin,
    limit: usize,
) -> Vec<LoadedPlugin> {
    let Ok(history) = store.map_configs(map) else {
        return Vec::new();
    };
    let mut retired: Vec<LoadedPlugin> = Vec::new();
    for record in history.iter().rev() {
        let hash = &record.record.plugin_hash;
        if retired.len() >= limit {
            break;
        }
        if *hash == current.hash().hex() || retired.iter().any(|p| p.hash().hex() == *hash) {
            continue;
        }
        if let Ok(Some((_, bytes))) = store.archived_plugin(hash)
            && let Ok(plugin) = runtime.load_bytes(&record.record.plugin_file, &bytes)
        {
            retired.push(plugin);
        }
    }
    retired
}

/// Starts `plugin` with `plan`'s config and checks it fits `plan`'s tables.
fn start_checked(
    plugin: &LoadedPlugin,
    plan: &MapPlan,
    lookups: Arc<dyn Lookups>,
    sides: &mut [SideLink],
) -> Result<MapPluginRunner, SwapError> {
    let runner =
        plugin
            .start(&plan.plugin_config_json(), lookups)
            .map_err(|error| match error {
                StartError::Config { error, .. } => SwapError::Refused {
                    path: error.path,
                    message: error.message,
                },
                other => SwapError::Unfit(other.to_string()),
            })?;
    check_map_fits(plan, &runner, sides).map_err(|error| SwapError::Unfit(format!("{error:#}")))?;
    Ok(runner)
}

/// The plan and runner `map` opens with: the newest recorded config (and plugin file)
/// if it still applies, else the deployment file's; see the module doc.
pub(super) fn restore(
    store: &dyn StateStore,
    runtime: &PluginRuntime,
    plugins_dir: &cap_std::fs::Dir,
    plan: &MapPlan,
    runner: MapPluginRunner,
    sides: &mut [SideLink],
) -> anyhow::Result<(MapPlan, MapPluginRunner)> {
    let history = match store.map_configs(&plan.name) {
        Ok(history) => history,
        // A map opened for the first time is not registered yet: no history.
        Err(crate::state::StateError::UnknownMap { .. }) => return Ok((plan.clone(), runner)),
        Err(error) => return Err(error.into()),
    };
    let Some(newest) = history.last() else {
        return Ok((plan.clone(), runner));
    };
    let record = &newest.record;
    if record.base_config_hash != config_hash(&plan.plugin_config_json()) {
        tracing::warn!(
            map = %plan.name,
            record = newest.id,
            "the config file's config of the map changed since the runtime edit; the file's is used"
        );
        return Ok((plan.clone(), runner));
    }
    let plugin = if record.plugin_file == runner.plugin().file()
        && record.plugin_hash == runner.plugin().hash().hex()
    {
        runner.plugin().clone()
    } else {
        match runtime.load(plugins_dir, &record.plugin_file) {
            Ok(plugin) if plugin.hash().hex() == record.plugin_hash => plugin,
            _ => {
                tracing::warn!(
                    map = %plan.name,
                    file = %record.plugin_file,
                    "the recorded plugin file is gone or changed; the config file's plugin is used"
                );
                return Ok((plan.clone(), runner));
            }
        }
    };
    let config: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&record.config)
        .map_err(|error| {
        anyhow::anyhow!(
            "map {}: recorded config #{} is not a JSON object: {error}",
            plan.name,
            newest.id
        )
    })?;
    let mut restored = plan.clone();
    restored.plugin_config = config;
    restored.plugin = record.plugin_file.clone();
    match start_checked(&plugin, &restored, runner.lookups(), sides) {
        Ok(new_runner) => {
            tracing::info!(map = %plan.name, record = newest.id, "runtime config restored");
            Ok((restored, new_runner))
        }
        Err(error) => {
            tracing::warn!(
                map = %plan.name,
                record = newest.id,
                "the recorded runtime config no longer applies ({error}); the config file's is used"
            );
            Ok((plan.clone(), runner))
        }
    }
}
