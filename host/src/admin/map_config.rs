//! The loop's end of the map config routes: what a map runs (plugin, config, what the
//! plugin describes, the history of runtime changes), changing its config, and rolling
//! back to a recorded one. Carried out between steps like every command; the switch
//! itself is [`Engine::swap_plugin`].
//!
//! A config the plugin refuses is not a command failure: the answer is
//! `{"refused": {"path": ..., "message": ...}}`, which the route turns into a 400
//! naming the field.

use serde_json::{Value as Json, json};

use super::control::CommandError;
use crate::change::{Descriptor, EntitySpec};
use crate::sync::{Engine, PluginSwap, SwapError};

/// Whether a config has the declarative plugin's shape (entities and mapping lines),
/// so the UI offers its structured editor.
fn is_declarative(config: &serde_json::Map<String, Json>) -> bool {
    config.get("fields").is_some_and(Json::is_array)
        && config.get("erp").is_some_and(Json::is_object)
        && config.get("crm").is_some_and(Json::is_object)
}

fn entity_json(entity: &EntitySpec) -> Json {
    json!({
        "entity": entity.entity,
        "fields": entity.fields.iter().map(|field| json!({
            "name": field.name,
            "kind": field.kind.as_str(),
            "key": field.key,
        })).collect::<Vec<_>>(),
    })
}

/// A descriptor as JSON; the config schema parsed when it is JSON.
pub(super) fn descriptor_json(descriptor: &Descriptor) -> Json {
    json!({
        "name": descriptor.name,
        "version": descriptor.version,
        "summary": descriptor.summary,
        "erp": entity_json(&descriptor.erp),
        "crm": entity_json(&descriptor.crm),
        "mappings": descriptor.mappings.iter().map(|mapping| json!({
            "erp_field": mapping.erp_field,
            "crm_field": mapping.crm_field,
            "direction": mapping.direction.as_str(),
            "transform": mapping.transform,
        })).collect::<Vec<_>>(),
        "depends_on": descriptor.depends_on,
        "config_schema": serde_json::from_str::<Json>(&descriptor.config_schema)
            .unwrap_or_else(|_| Json::String(descriptor.config_schema.clone())),
    })
}

/// What `map` runs now, with its history.
pub(super) fn describe(engine: &Engine, map: &str) -> Result<Json, CommandError> {
    let (plan, runner, file_config) = engine
        .map_plugin(map)
        .ok_or_else(|| CommandError::NotFound(format!("no running map named {map}")))?;
    let history = engine
        .map_config_history(map)
        .map_err(|error| CommandError::Failed(format!("{error:#}")))?;
    let current_config = plan.plugin_config_json();
    let plugin = runner.plugin();
    let in_force = history.last().filter(|newest| {
        newest.record.config == current_config && newest.record.plugin_hash == plugin.hash().hex()
    });
    Ok(json!({
        "map": map,
        "direction": plan.direction.as_str(),
        "depends_on": plan.depends_on,
        "erp": {"side": plan.erp.side, "entity": plan.erp.entity, "key": plan.erp.key},
        "crm": {"side": plan.crm.side, "entity": plan.crm.entity, "key": plan.crm.key},
        "plugin": {
            "file": plugin.file(),
            "hash": plugin.hash().hex(),
            "world_version": plugin.world_version(),
            "name": runner.descriptor().name,
            "version": runner.descriptor().version,
            "quarantined": runner.quarantined(),
        },
        "config": plan.plugin_config,
        "config_source": if in_force.is_some() { "runtime" } else { "file" },
        "file_config": serde_json::from_str::<Json>(file_config).unwrap_or(Json::Null),
        "declarative": is_declarative(&plan.plugin_config),
        "descriptor": descriptor_json(runner.descriptor()),
        "history": history.iter().map(|record| json!({
            "id": record.id,
            "at": record.at.to_rfc3339(),
            "plugin_file": record.record.plugin_file,
            "plugin_hash": record.record.plugin_hash,
            "plugin_version": record.record.plugin_version,
            "config": serde_json::from_str::<Json>(&record.record.config).unwrap_or(Json::Null),
            "by": record.record.by,
            "reason": record.record.reason,
            "in_force": in_force.is_some_and(|newest| newest.id == record.id),
        })).collect::<Vec<_>>(),
    }))
}

fn swap_answer(engine: &mut Engine, map: &str, swap: PluginSwap) -> Result<Json, CommandError> {
    match engine.swap_plugin(map, swap) {
        Ok(report) => Ok(json!({
            "map": map,
            "applied": true,
            "record": report.record_id,
            "plugin_version": {"from": report.versions.0, "to": report.versions.1},
            "plugin_hash": {"from": report.hashes.0, "to": report.hashes.1},
        })),
        Err(SwapError::UnknownMap(map)) => Err(CommandError::NotFound(format!(
            "no running map named {map}"
        ))),
        Err(SwapError::Refused { path, message }) => Ok(json!({
            "map": map,
            "applied": false,
            "refused": {"path": path, "message": message},
        })),
        Err(SwapError::Unfit(message)) => Err(CommandError::Conflict(message)),
        Err(error @ SwapError::State(_)) => Err(CommandError::Failed(error.to_string())),
    }
}

/// Runs `map` with `config` from the next step on.
pub(super) fn configure(
    engine: &mut Engine,
    map: &str,
    config: serde_json::Map<String, Json>,
    reason: String,
    by: &str,
) -> Result<Json, CommandError> {
    swap_answer(
        engine,
        map,
        PluginSwap {
            plugin: None,
            config: Some(config),
            by: by.to_owned(),
            reason,
        },
    )
}

/// Runs `map` with recorded config `to`, or with the one before the config in force
/// (the deployment file's when only one change was made).
pub(super) fn rollback(
    engine: &mut Engine,
    map: &str,
    to: Option<u64>,
    by: &str,
) -> Result<Json, CommandError> {
    let (plan, runner, file_config) = engine
        .map_plugin(map)
        .ok_or_else(|| CommandError::NotFound(format!("no running map named {map}")))?;
    let current_hash = runner.plugin().hash().hex();
    let current_config = plan.plugin_config_json();
    let file_config = file_config.to_owned();
    let history = engine
        .map_config_history(map)
        .map_err(|error| CommandError::Failed(format!("{error:#}")))?;
    let (config_text, plugin_hash, label) = match to {
        Some(id) => {
            let record = history
                .iter()
                .find(|record| record.id == id)
                .ok_or_else(|| {
                    CommandError::NotFound(format!("map {map} has no recorded config #{id}"))
                })?;
            (
                record.record.config.clone(),
                record.record.plugin_hash.clone(),
                format!("rollback to #{id}"),
            )
        }
        None => {
            // The record before the newest one in force; before the first, the file's.
            let newest = history.last().filter(|newest| {
                newest.record.config == current_config && newest.record.plugin_hash == current_hash
            });
            let Some(newest) = newest else {
                return Err(CommandError::Conflict(format!(
                    "map {map} runs its config file's config; there is nothing to roll back"
                )));
            };
            let position = history.len() - 1;
            match history[..position]
                .iter()
                .rev()
                .find(|record| record.record.base_config_hash == newest.record.base_config_hash)
            {
                Some(previous) => (
                    previous.record.config.clone(),
                    previous.record.plugin_hash.clone(),
                    format!("rollback to #{}", previous.id),
                ),
                None => (
                    file_config,
                    current_hash.clone(),
                    "rollback to the config file's config".to_owned(),
                ),
            }
        }
    };
    // A config that ran with other plugin bytes goes back with them, if the engine
    // still has them (it keeps the plugins a map ran before a swap).
    let plugin = if plugin_hash == current_hash {
        None
    } else {
        Some(engine.retired_plugin(map, &plugin_hash).ok_or_else(|| {
            CommandError::Conflict(format!(
                "that config ran with plugin {} (the map runs {}), which this engine no \
                 longer has; put its file back and swap it in",
                &plugin_hash[..plugin_hash.len().min(12)],
                &current_hash[..12]
            ))
        })?)
    };
    let config: serde_json::Map<String, Json> = serde_json::from_str(&config_text)
        .map_err(|error| CommandError::Failed(format!("the recorded config: {error}")))?;
    swap_answer(
        engine,
        map,
        PluginSwap {
            plugin,
            config: Some(config),
            by: by.to_owned(),
            reason: label,
        },
    )
}
