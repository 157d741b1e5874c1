//! Solution bundles: maps and their plugins moved between deployments (development,
//! test, production) as one versioned file, the way dual-write moves solutions.
//!
//! - [`export`] writes a bundle ([`bundle`]) of some maps of a deployment: their
//!   `[maps.NAME]` tables as written in its config file and the plugin files they run,
//!   with content hashes and world versions. Sides (connection strings, passwords) are
//!   not part of a map and stay out; values named as parameters are left out too and
//!   bound per environment on import.
//! - [`prepare`] checks a bundle against a deployment without changing anything: the
//!   archive and hashes ([`bundle::Bundle::read`]), every plugin loads as a component of
//!   a supported world (the one the manifest says), every dependency is in the bundle or
//!   the deployment, every parameter is bound, every map's plugin takes its config; and
//!   computes the [`Diff`] against the deployment (maps added, changed, removed;
//!   plugin versions; config keys).
//! - [`apply`] writes the bundle's plugin files into the plugins folder under
//!   content-addressed names (`STEM-HASH12.wasm`, so no file another map runs is
//!   overwritten), puts the maps into the config file (edited in place, the rest kept
//!   as written), and records the solution version with the config text it replaced in
//!   `DATA_DIR/solutions/history.jsonl`. A running engine switches its changed maps at
//!   a clean point through the admin API (`admin/solutions.rs`); maps it does not run
//!   yet start at its next start.
//! - [`rollback`] puts back the config text the last applied version replaced.

pub mod bundle;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::config::Plan;
use crate::plugin::{NoLookups, PluginRuntime};
use bundle::{Bundle, FORMAT, Manifest, ManifestMap, Parameter, content_hash};

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Who publishes the solution.
    pub publisher: String,
    /// The solution's name.
    pub name: String,
    /// Its semantic version.
    pub version: String,
    /// The maps to export (all enabled maps when empty).
    pub maps: Vec<String>,
    /// Values to leave out and bind per environment: `MAP.PATH` (like
    /// `customers.config.companies`).
    pub parameters: Vec<String>,
}

/// Exports maps of the deployment whose config file is `config_path`; returns the
/// bundle.
pub fn export(
    config_path: &Path,
    runtime: &PluginRuntime,
    options: &ExportOptions,
) -> anyhow::Result<Bundle> {
    semver::Version::parse(&options.version).with_context(|| {
        format!(
            "version `{}` is not a semantic version (like 1.2.0)",
            options.version
        )
    })?;
    let (plan, _, document) = read_deployment(config_path)?;
    let selected: Vec<&crate::config::MapPlan> = if options.maps.is_empty() {
        plan.maps.iter().filter(|map| map.enabled).collect()
    } else {
        options
            .maps
            .iter()
            .map(|name| {
                plan.map(name)
                    .with_context(|| format!("the deployment has no map named {name}"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let names: BTreeSet<&str> = selected.iter().map(|map| map.name.as_str()).collect();
    let mut parameters: Vec<Parameter> = Vec::new();
    for qualified in &options.parameters {
        let (map, path) = qualified.split_once('.').with_context(|| {
            format!("parameter `{qualified}`: write MAP.PATH, like customers.config.companies")
        })?;
        if !names.contains(map) {
            bail!("parameter `{qualified}`: map {map} is not exported");
        }
        parameters.push(Parameter {
            map: map.to_owned(),
            path: path.to_owned(),
        });
    }
    let mut definitions = BTreeMap::new();
    let mut plugins = BTreeMap::new();
    let mut maps = Vec::new();
    let mut world_versions = BTreeSet::new();
    let mut dependencies = BTreeSet::new();
    // `plan.maps` is in dependency order; keep it.
    for map in plan
        .maps
        .iter()
        .filter(|map| names.contains(map.name.as_str()))
    {
        let table = map_table(&document, &map.name).with_context(|| {
            format!("map {}: no [maps.{}] table in the file", map.name, map.name)
        })?;
        let mut definition = toml_edit::DocumentMut::from(table);
        for parameter in parameters.iter().filter(|p| p.map == map.name) {
            if take_path(definition.as_table_mut(), &parameter.path).is_none() {
                bail!(
                    "parameter `{}`: map {} has no value at {}",
                    parameter.qualified(),
                    map.name,
                    parameter.path
                );
            }
        }
        let bytes = std::fs::read(plan.plugin_path(map))
            .with_context(|| format!("map {}: reading its plugin {}", map.name, map.plugin))?;
        let plugin = runtime
            .load_bytes(&map.plugin, &bytes)
            .with_context(|| format!("map {}", map.name))?;
        let descriptor = plugin
            .describe_default()
            .or_else(|_| {
                plugin
                    .start(&map.plugin_config_json(), Arc::new(NoLookups))
                    .map(|runner| runner.descriptor().clone())
            })
            .with_context(|| format!("map {}: starting its plugin", map.name))?;
        world_versions.insert(plugin.world_version().to_owned());
        for dependency in &map.depends_on {
            if !names.contains(dependency.as_str()) {
                dependencies.insert(dependency.clone());
            }
        }
        maps.push(ManifestMap {
            name: map.name.clone(),
            plugin: map.plugin.clone(),
            plugin_hash: content_hash(&bytes),
            world_version: plugin.world_version().to_owned(),
            plugin_version: descriptor.version.clone(),
            depends_on: map.depends_on.clone(),
        });
        definitions.insert(map.name.clone(), definition.to_string());
        plugins.insert(map.plugin.clone(), bytes);
    }
    Ok(Bundle {
        manifest: Manifest {
            format: FORMAT,
            publisher: options.publisher.clone(),
            name: options.name.clone(),
            version: options.version.clone(),
            exported_at: chrono::Utc::now().to_rfc3339(),
            maps,
            dependencies: dependencies.into_iter().collect(),
            world_versions: world_versions.into_iter().collect(),
            parameters,
        },
        definitions,
        plugins,
    })
}

/// The deployment of `config_path`: its plan (no maps yet is fine), the file's text and
/// the text as an editable TOML document.
fn read_deployment(config_path: &Path) -> anyhow::Result<(Plan, String, toml_edit::DocumentMut)> {
    let plan = crate::config::load_allowing_no_maps(config_path)
        .map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let document = text
        .parse()
        .with_context(|| format!("parsing {}", config_path.display()))?;
    Ok((plan, text, document))
}

/// A copy of the `[maps.NAME]` table of a deployment's config document, if it has one.
fn map_table(document: &toml_edit::DocumentMut, name: &str) -> Option<toml_edit::Table> {
    let table = document.get("maps")?.get(name)?.as_table_like()?;
    let mut copy = toml_edit::Table::new();
    for (key, item) in table.iter() {
        copy.insert(key, item.clone());
    }
    Some(copy)
}

/// Removes and returns the item at dotted `path` inside `table`.
fn take_path(table: &mut toml_edit::Table, path: &str) -> Option<toml_edit::Item> {
    match path.split_once('.') {
        None => table.remove(path),
        Some((head, rest)) => {
            let inner = table.get_mut(head)?;
            match inner {
                toml_edit::Item::Table(inner) => take_path(inner, rest),
                toml_edit::Item::Value(toml_edit::Value::InlineTable(inline)) => {
                    let mut as_table = inline.clone().into_table();
                    let taken = take_path(&mut as_table, rest);
                    *inline = as_table.into_inline_table();
                    taken
                }
                _ => None,
            }
        }
    }
}

/// Sets `value` at dotted `path` inside `table`, making tables on the way.
fn put_path(table: &mut toml_edit::Table, path: &str, value: toml_edit::Item) {
    match path.split_once('.') {
        None => {
            table.insert(path, value);
        }
        Some((head, rest)) => {
            let inner = table
                .entry(head)
                .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
            match inner {
                toml_edit::Item::Table(inner) => put_path(inner, rest, value),
                toml_edit::Item::Value(toml_edit::Value::InlineTable(inline)) => {
                    let mut as_table = inline.clone().into_table();
                    put_path(&mut as_table, rest, value);
                    *inline = as_table.into_inline_table();
                }
                other => {
                    let mut fresh = toml_edit::Table::new();
                    put_path(&mut fresh, rest, value);
                    *other = toml_edit::Item::Table(fresh);
                }
            }
        }
    }
}

/// How a map of the bundle compares with the deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum MapDiff {
    /// The deployment has no such map.
    Added {
        /// The map.
        map: String,
        /// The plugin's version and content hash.
        plugin: (String, String),
    },
    /// The deployment runs it differently.
    Changed {
        /// The map.
        map: String,
        /// Plugin content hash before and after, when it changes.
        plugin_hash: Option<(String, String)>,
        /// Dotted paths of the map's table whose values change.
        keys: Vec<String>,
    },
    /// Same plugin, same definition.
    Unchanged {
        /// The map.
        map: String,
    },
    /// The previous version of this solution had it; this one does not.
    Removed {
        /// The map.
        map: String,
    },
}

/// A bundle checked against a deployment, ready to apply.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The bundle.
    pub bundle: Bundle,
    /// Each map's definition with its parameters bound, as a TOML table, by map.
    pub bound: BTreeMap<String, toml_edit::Table>,
    /// Each map's plugin file name in the target's plugins folder.
    pub target_files: BTreeMap<String, String>,
    /// The comparison with the deployment.
    pub diff: Vec<MapDiff>,
}

/// Checks `bundle_bytes` against the deployment of `config_path` (see the module doc);
/// `bindings` are `MAP.PATH=TOML-VALUE` for the bundle's parameters (a parameter not
/// bound keeps the deployment's current value if it has one). Every problem found is
/// listed in the error, one per line.
pub fn prepare(
    bundle_bytes: &[u8],
    config_path: &Path,
    runtime: &PluginRuntime,
    bindings: &[String],
) -> anyhow::Result<Prepared> {
    let bundle = Bundle::read(bundle_bytes)?;
    let (plan, _, document) = read_deployment(config_path)?;
    let mut problems: Vec<String> = Vec::new();
    let mut values: BTreeMap<String, toml_edit::Item> = BTreeMap::new();
    for binding in bindings {
        let Some((name, value)) = binding.split_once('=') else {
            problems.push(format!(
                "--set {binding}: write MAP.PATH=VALUE (a TOML value)"
            ));
            continue;
        };
        if !bundle
            .manifest
            .parameters
            .iter()
            .any(|parameter| parameter.qualified() == name)
        {
            problems.push(format!("--set {name}: the bundle has no such parameter"));
            continue;
        }
        match value.parse::<toml_edit::Value>() {
            Ok(value) => {
                values.insert(name.to_owned(), toml_edit::Item::Value(value));
            }
            Err(error) => problems.push(format!(
                "--set {name}: `{value}` is not a TOML value: {}",
                error.to_string().trim()
            )),
        }
    }
    let manifest = &bundle.manifest;
    let bundle_maps: BTreeSet<&str> = manifest.maps.iter().map(|map| map.name.as_str()).collect();
    let mut bound = BTreeMap::new();
    let mut target_files = BTreeMap::new();
    let mut diff = Vec::new();
    for map in &manifest.maps {
        let subject = format!("map {}", map.name);
        let mut definition: toml_edit::DocumentMut = match bundle.definitions[&map.name].parse() {
            Ok(definition) => definition,
            Err(error) => {
                problems.push(format!("{subject}: maps/{}.toml: {error}", map.name));
                continue;
            }
        };
        let current = map_table(&document, &map.name);
        for parameter in manifest.parameters.iter().filter(|p| p.map == map.name) {
            let value = values
                .get(&parameter.qualified())
                .cloned()
                .or_else(|| take_path(&mut current.clone()?, &parameter.path));
            match value {
                Some(value) => put_path(definition.as_table_mut(), &parameter.path, value),
                None => problems.push(format!(
                    "{subject}: parameter {} is not bound (give --set {}=VALUE)",
                    parameter.qualified(),
                    parameter.qualified()
                )),
            }
        }
        // The plugin: a component of a supported world, the one the manifest says.
        let bytes = &bundle.plugins[&map.plugin];
        let plugin = match runtime.load_bytes(&map.plugin, bytes) {
            Ok(plugin) => plugin,
            Err(error) => {
                problems.push(format!("{subject}: {error}"));
                continue;
            }
        };
        if plugin.world_version() != map.world_version {
            problems.push(format!(
                "{subject}: the plugin implements world {}, the manifest says {}",
                plugin.world_version(),
                map.world_version
            ));
        }
        for dependency in &map.depends_on {
            if !bundle_maps.contains(dependency.as_str()) && plan.map(dependency).is_none() {
                problems.push(format!(
                    "{subject}: depends on map {dependency}, which is neither in the bundle nor in the deployment"
                ));
            }
        }
        // The config: what the plugin's `configure` says about it.
        let config_json = definition
            .get("config")
            .map(toml_item_to_json)
            .unwrap_or_else(|| serde_json::json!({}));
        if let Err(error) = plugin.start(&config_json.to_string(), Arc::new(NoLookups)) {
            problems.push(format!("{subject}: {error}"));
        }
        let stem = map.plugin.trim_end_matches(".wasm");
        let target_file = format!("{stem}-{}.wasm", &map.plugin_hash[..12]);
        definition.insert("plugin", toml_edit::value(target_file.clone()));
        // The comparison with the deployment.
        diff.push(match plan.map(&map.name) {
            None => MapDiff::Added {
                map: map.name.clone(),
                plugin: (map.plugin_version.clone(), map.plugin_hash.clone()),
            },
            Some(current_plan) => {
                let current_hash = std::fs::read(plan.plugin_path(current_plan))
                    .map(|bytes| content_hash(&bytes))
                    .unwrap_or_default();
                let current_table = current.clone().unwrap_or_default();
                let mut keys = Vec::new();
                differing_keys(
                    "",
                    &toml_table_to_json(&current_table),
                    &toml_table_to_json(definition.as_table()),
                    &mut keys,
                );
                keys.retain(|key| key != "plugin");
                let plugin_hash = (current_hash != map.plugin_hash)
                    .then(|| (current_hash, map.plugin_hash.clone()));
                if plugin_hash.is_none() && keys.is_empty() {
                    MapDiff::Unchanged {
                        map: map.name.clone(),
                    }
                } else {
                    MapDiff::Changed {
                        map: map.name.clone(),
                        plugin_hash,
                        keys,
                    }
                }
            }
        });
        target_files.insert(map.name.clone(), target_file);
        bound.insert(map.name.clone(), definition.as_table().clone());
    }
    // Maps the previously applied version of this solution had and this one does not.
    if let Some(previous) = history(&plan.data_dir)?
        .into_iter()
        .rev()
        .find(|entry| entry.solution == manifest.name)
    {
        for map in previous.maps {
            if !bundle_maps.contains(map.as_str()) && plan.map(&map).is_some() {
                diff.push(MapDiff::Removed { map });
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "solution {} {} refused:\n  {}",
            manifest.name,
            manifest.version,
            problems.join("\n  ")
        );
    }
    Ok(Prepared {
        bundle,
        bound,
        target_files,
        diff,
    })
}

fn toml_item_to_json(item: &toml_edit::Item) -> serde_json::Value {
    let mut wrapper = toml_edit::Table::new();
    wrapper.insert("value", item.clone());
    toml_table_to_json(&wrapper)
        .get("value")
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// `table` as JSON: its TOML text read back as plain TOML.
fn toml_table_to_json(table: &toml_edit::Table) -> serde_json::Value {
    toml_edit::DocumentMut::from(table.clone())
        .to_string()
        .parse::<toml::Table>()
        .ok()
        .and_then(|table| serde_json::to_value(table).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn differing_keys(
    prefix: &str,
    before: &serde_json::Value,
    after: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (before, after) {
        (Value::Object(before), Value::Object(after)) => {
            let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
            for key in keys {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                differing_keys(
                    &path,
                    before.get(key).unwrap_or(&Value::Null),
                    after.get(key).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ if before != after => out.push(prefix.to_owned()),
        _ => {}
    }
}

/// One applied solution version, as kept in `DATA_DIR/solutions/history.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The solution's name.
    pub solution: String,
    /// Its version.
    pub version: String,
    /// When it was applied (RFC 3339).
    pub applied_at: String,
    /// Its maps.
    pub maps: Vec<String>,
    /// The config file's text before it was applied.
    pub config_before: String,
    /// Whether it was rolled back since.
    #[serde(default)]
    pub rolled_back: bool,
}

fn history_path(data_dir: &Path) -> PathBuf {
    data_dir.join("solutions").join("history.jsonl")
}

/// The applied solution versions of the deployment whose state is in `data_dir`,
/// oldest first.
pub fn history(data_dir: &Path) -> anyhow::Result<Vec<HistoryEntry>> {
    let path = history_path(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{} line {}", path.display(), index + 1))
        })
        .collect()
}

fn write_history(data_dir: &Path, entries: &[HistoryEntry]) -> anyhow::Result<()> {
    let path = history_path(data_dir);
    let folder = path.parent().expect("history has a folder");
    std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    let mut text = String::new();
    for entry in entries {
        text.push_str(&serde_json::to_string(entry)?);
        text.push('\n');
    }
    write_atomically(&path, text.as_bytes())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let staging = path.with_file_name(format!(
        ".{}.partial",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    std::fs::write(&staging, bytes).with_context(|| format!("writing {}", staging.display()))?;
    std::fs::rename(&staging, path).with_context(|| format!("writing {}", path.display()))
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    /// Plugin files written into the plugins folder (new ones only).
    pub plugin_files: Vec<String>,
    /// Maps changed or added in the config file.
    pub maps: Vec<String>,
    /// Maps removed from the config file.
    pub removed: Vec<String>,
}

/// Applies a prepared bundle to the deployment of `config_path`; see the module doc.
pub fn apply(prepared: &Prepared, config_path: &Path) -> anyhow::Result<Applied> {
    let (plan, text, mut document) = read_deployment(config_path)?;
    let mut plugin_files = Vec::new();
    for map in &prepared.bundle.manifest.maps {
        let file = &prepared.target_files[&map.name];
        let path = plan.plugins_dir.join(file);
        let present = std::fs::read(&path)
            .map(|bytes| content_hash(&bytes) == map.plugin_hash)
            .unwrap_or(false);
        if !present {
            write_atomically(&path, &prepared.bundle.plugins[&map.plugin])?;
            plugin_files.push(file.clone());
        }
    }
    let maps_table = document
        .entry("maps")
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
        .as_table_mut()
        .context("`maps` in the config file is not a table")?;
    maps_table.set_implicit(true);
    let mut changed = Vec::new();
    for (map, table) in &prepared.bound {
        if prepared
            .diff
            .iter()
            .any(|diff| matches!(diff, MapDiff::Unchanged { map: m } if m == map))
        {
            continue;
        }
        maps_table.insert(map, toml_edit::Item::Table(table.clone()));
        changed.push(map.clone());
    }
    let mut removed = Vec::new();
    for diff in &prepared.diff {
        if let MapDiff::Removed { map } = diff {
            maps_table.remove(map);
            removed.push(map.clone());
        }
    }
    let new_text = document.to_string();
    // The result must still be a valid deployment before it replaces the file.
    let folder = match config_path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    crate::config::parse_with_options(
        &new_text,
        &config_path.display().to_string(),
        &std::path::absolute(folder)?,
        true,
    )
    .map_err(|errors| {
        anyhow::anyhow!("the config with the solution applied is not valid:\n{errors}")
    })?;
    let mut entries = history(&plan.data_dir)?;
    entries.push(HistoryEntry {
        solution: prepared.bundle.manifest.name.clone(),
        version: prepared.bundle.manifest.version.clone(),
        applied_at: chrono::Utc::now().to_rfc3339(),
        maps: prepared.bound.keys().cloned().collect(),
        config_before: text,
        rolled_back: false,
    });
    write_history(&plan.data_dir, &entries)?;
    write_atomically(config_path, new_text.as_bytes())?;
    Ok(Applied {
        plugin_files,
        maps: changed,
        removed,
    })
}

/// Puts back the config text the newest applied (and not rolled back) version of
/// `solution` replaced; returns that entry. Plugin files stay (they are content
/// addressed).
pub fn rollback(config_path: &Path, solution: &str) -> anyhow::Result<HistoryEntry> {
    let plan = crate::config::load_allowing_no_maps(config_path)
        .map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let mut entries = history(&plan.data_dir)?;
    let Some(index) = entries
        .iter()
        .rposition(|entry| entry.solution == solution && !entry.rolled_back)
    else {
        bail!("no applied version of solution {solution} to roll back");
    };
    write_atomically(config_path, entries[index].config_before.as_bytes())?;
    entries[index].rolled_back = true;
    write_history(&plan.data_dir, &entries)?;
    Ok(entries[index].clone())
}

/// The deployment's maps as the engine should run them after a config change: each
/// map's plugin file and config (JSON), from the config file `config_path`.
pub fn maps_to_switch(config_path: &Path, maps: &[String]) -> anyhow::Result<Vec<MapSwitch>> {
    let plan: Plan = crate::config::load_allowing_no_maps(config_path)
        .map_err(|errors| anyhow::anyhow!("{errors}"))?;
    Ok(maps
        .iter()
        .filter_map(|name| plan.map(name))
        .map(|map| MapSwitch {
            map: map.name.clone(),
            plugin_file: map.plugin.clone(),
            config: map.plugin_config.clone(),
        })
        .collect())
}

/// A map a running engine switches to another plugin file and config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapSwitch {
    /// The map.
    pub map: String,
    /// The plugin file in the plugins folder.
    pub plugin_file: String,
    /// The plugin config.
    pub config: serde_json::Map<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_taken_out_and_put_back() {
        let mut document: toml_edit::DocumentMut =
            "plugin = \"a.wasm\"\nerp = { side = \"erp\", entity = \"T\" }\n[config]\ncompanies = [\"USMF\"]\nother = 1\n"
                .parse()
                .expect("toml");
        let taken = take_path(document.as_table_mut(), "config.companies").expect("taken");
        assert!(!document.to_string().contains("USMF"));
        let side = take_path(document.as_table_mut(), "erp.side").expect("inline");
        assert!(!document.to_string().contains("side ="));
        put_path(document.as_table_mut(), "config.companies", taken);
        put_path(document.as_table_mut(), "erp.side", side);
        let back: toml::Table = document.to_string().parse().expect("valid");
        assert_eq!(back["config"]["companies"][0].as_str(), Some("USMF"));
        assert_eq!(back["erp"]["side"].as_str(), Some("erp"));
        assert_eq!(back["config"]["other"].as_integer(), Some(1));
    }

    #[test]
    fn differing_keys_name_each_changed_leaf() {
        let before = serde_json::json!({"a": 1, "b": {"c": 2, "d": [1]}, "e": "x"});
        let after = serde_json::json!({"a": 1, "b": {"c": 3, "d": [1, 2]}, "f": true});
        let mut keys = Vec::new();
        differing_keys("", &before, &after, &mut keys);
        assert_eq!(keys, vec!["b.c", "b.d", "e", "f"]);
    }
}
