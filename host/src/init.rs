//! `dualwrite init`: a working deployment in one command.
//!
//! It writes `DIR/dualwrite.toml` for two sides (SQLite files in `DIR` by default, or
//! PostgreSQL / MariaDB servers by URL) with maps of the standard map pack (all twelve,
//! or the ones asked for plus what they depend on), copies the declarative plugin into
//! `DIR/plugins`, makes the tables the maps need where they are missing (a table that
//! exists is never dropped or changed; a mismatch is reported by the checks instead),
//! and runs the health checks of [`crate::check`]. A clean check means `dualwrite run
//! -c DIR/dualwrite.toml` starts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::change::Side;
use crate::check::Finding;
use crate::demo::store::DemoStore;
use crate::plugin::PluginRuntime;

/// What to set up.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The deployment folder (made if missing).
    pub dir: PathBuf,
    /// The ERP side's server URL; `None` for `DIR/erp.db`.
    pub erp: Option<String>,
    /// The CRM side's server URL; `None` for `DIR/crm.db`.
    pub crm: Option<String>,
    /// Pack maps to enable (with what they depend on); empty for all.
    pub maps: Vec<String>,
    /// Where the built plugins are (the declarative plugin is copied from there).
    pub plugins_from: PathBuf,
    /// Overwrite an existing config file.
    pub force: bool,
}

/// What [`init`] did.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The config file written.
    pub config: PathBuf,
    /// The maps enabled, in dependency order.
    pub maps: Vec<String>,
    /// The tables made, as `side entity`.
    pub tables_created: Vec<String>,
    /// What the health checks found (empty: all pass).
    pub findings: Vec<Finding>,
}

/// The plugin file the pack's maps run.
const DECLARATIVE: &str = "declarative.wasm";

/// Sets up a deployment; see the module doc.
pub fn init(options: &InitOptions, runtime: &PluginRuntime) -> anyhow::Result<InitReport> {
    let config = options.dir.join("dualwrite.toml");
    if config.exists() && !options.force {
        bail!(
            "{} already exists; pass --force to write a new one over it",
            config.display()
        );
    }
    let names = selected_maps(&options.maps)?;
    let source = options.plugins_from.join(DECLARATIVE);
    if !source.is_file() {
        bail!(
            "{} not found: init needs the built declarative plugin (build the plugins with \
             `cargo xtask plugins`, which writes target/plugins, or pass --plugins DIR)",
            source.display()
        );
    }
    let plugins = options.dir.join("plugins");
    std::fs::create_dir_all(&plugins).with_context(|| format!("creating {}", plugins.display()))?;
    std::fs::copy(&source, plugins.join(DECLARATIVE))
        .with_context(|| format!("copying {} into {}", source.display(), plugins.display()))?;
    let plugins_dir = cap_std::fs::Dir::open_ambient_dir(&plugins, cap_std::ambient_authority())
        .with_context(|| format!("opening {}", plugins.display()))?;
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let maps = crate::demo::pack_maps(runtime, &plugins_dir, &name_refs)?;

    let erp = DemoStore::new(options.erp.as_deref(), &options.dir, Side::Erp)?;
    let crm = DemoStore::new(options.crm.as_deref(), &options.dir, Side::Crm)?;
    for store in [&erp, &crm] {
        if let Some(path) = store.sqlite_path() {
            rusqlite::Connection::open(path)
                .and_then(|db| db.execute_batch("PRAGMA journal_mode = WAL;"))
                .with_context(|| format!("creating {}", path.display()))?;
        }
    }
    let text = crate::demo::config_text(
        "# Written by `dualwrite init`: the standard map pack between two sides.\n\
         # `dualwrite check -c FILE` checks it; `dualwrite run -c FILE` runs it.\n",
        &maps,
        "plugins",
        &erp,
        &crm,
    );
    std::fs::write(&config, &text).with_context(|| format!("writing {}", config.display()))?;

    // Tables the maps need that a side does not have yet.
    let plan = crate::config::load(&config).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let before = crate::check::run(&plan, runtime);
    let mut tables_created = Vec::new();
    for (store, side) in [(&erp, Side::Erp), (&crm, Side::Crm)] {
        let missing: BTreeSet<&str> = before
            .iter()
            .filter(|finding| {
                finding.code == "schema.table_missing"
                    && finding.subject.ends_with(&format!(", {side} side"))
            })
            .filter_map(|finding| {
                finding
                    .subject
                    .strip_prefix("map ")
                    .and_then(|rest| rest.split_once(','))
                    .map(|(map, _)| map)
            })
            .collect();
        let to_make: Vec<crate::demo::DemoMap> = maps
            .iter()
            .filter(|map| missing.contains(map.name))
            .cloned()
            .collect();
        if to_make.is_empty() {
            continue;
        }
        store
            .create_missing_tables(side, &to_make)
            .with_context(|| format!("making the {side} tables in {}", store.describe()))?;
        let mut entities: Vec<String> = to_make
            .iter()
            .map(|map| format!("{side} {}", map.descriptor.entity(side).entity))
            .collect();
        entities.dedup();
        tables_created.extend(entities);
    }
    let findings = crate::check::run(&plan, runtime);
    Ok(InitReport {
        config,
        maps: maps.iter().map(|map| map.name.to_owned()).collect(),
        tables_created,
        findings,
    })
}

/// The pack maps to enable: `asked` and, transitively, what they depend on; all of the
/// pack when `asked` is empty.
fn selected_maps(asked: &[String]) -> anyhow::Result<Vec<String>> {
    let pack: Vec<&str> = crate::demo::map_names().collect();
    if asked.is_empty() {
        return Ok(pack.iter().map(|name| (*name).to_owned()).collect());
    }
    let mut selected = BTreeSet::new();
    let mut todo: Vec<String> = asked.to_vec();
    while let Some(name) = todo.pop() {
        if !pack.contains(&name.as_str()) {
            bail!(
                "the standard map pack has no map named {name} (its maps: {})",
                pack.join(", ")
            );
        }
        if selected.insert(name.clone()) {
            todo.extend(crate::demo::pack_dependencies(&name));
        }
    }
    Ok(pack
        .iter()
        .filter(|name| selected.contains(**name))
        .map(|name| (*name).to_owned())
        .collect())
}

/// The default place of the built plugins: `target/plugins` under the working folder.
pub fn default_plugins_from() -> &'static Path {
    Path::new("target/plugins")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_brings_what_it_depends_on_in_pack_order() {
        let maps = selected_maps(&["customers".to_owned()]).expect("known");
        assert_eq!(maps.last().map(String::as_str), Some("customers"));
        for dependency in crate::demo::pack_dependencies("customers") {
            assert!(maps.contains(&dependency), "{dependency} in {maps:?}");
        }
        assert!(!maps.contains(&"products".to_owned()));
        assert_eq!(selected_maps(&[]).expect("all").len(), 12);
        let error = selected_maps(&["nope".to_owned()]).expect_err("unknown");
        assert!(error.to_string().contains("no map named nope"), "{error}");
    }
}
