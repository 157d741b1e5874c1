//! The deployment's configuration: one TOML file, validated into a [`Plan`] before
//! anything starts.
//!
//! Data enters as the file's text ([`load`] reads a path, [`parse`] takes the text, a
//! file name for messages and the folder relative paths start at). It leaves as a
//! [`Plan`] the engine consumes, or as [`ConfigErrors`]: every problem found, each naming
//! the file, line, column and key path, like
//! `dualwrite.toml:14:38: maps.customers.conflict.winner: unknown side "erpp" (sides: erp, crm)`.
//! Tests build plans in code ([`Plan`]'s fields are public; [`MapPlan::new`] and
//! [`SidePlan::sqlite`] fill in defaults).
//!
//! Three steps, one file each: `document.rs` parses the TOML keeping positions, refuses
//! secrets and cuts the tree into sections; `file.rs` is the file's shape as serde
//! structs that refuse unknown keys; `validate.rs` checks what serde cannot and builds
//! the plan (`graph.rs` orders the maps).
//!
//! # The file
//!
//! ```toml
#![doc = include_str!("example.toml")]
//! ```
//!
//! # What is checked
//!
//! - TOML syntax, unknown keys and wrong types, at the offending key's line; each side
//!   and each map is read on its own, so one bad map does not hide another's errors.
//! - Secrets: a string under a key that looks like a secret (`password`, `token`,
//!   `api_key`, ...) or a URL holding a password is refused anywhere in the file,
//!   plugin configs included. Server sides name an environment variable instead
//!   (`password_env`), which must be set when the file is loaded; the plan holds only
//!   the variable's name ([`SecretEnv`]), so printing a plan never prints a secret.
//! - Folders: `data_dir` (default `data`) may not exist yet but must not be a file;
//!   `plugins_dir` (default `plugins`) must be a folder. Relative paths start at the
//!   config file's folder.
//! - Sides: plain names; the connector's settings and only those; an SQLite `path`
//!   that is not a folder or `:memory:`, and not the same file as another side's. A
//!   missing database file is accepted: the side starts offline.
//! - Maps: plain names; `plugin` a file name (no folders, no `..`) that exists in
//!   `plugins_dir`, opened the way the plugin loader opens it; `erp` and `crm` on known,
//!   different sides, with an entity and a non-empty key without repeated fields
//!   (compared ignoring ASCII case, as SQL does); no two maps on the same pair of
//!   entities; the conflict policy's settings exactly those of the policy, with roles
//!   `erp`/`crm`; a two-way map states its conflict policy; a one-way map's initial-sync
//!   master, if set, is its source; `batch_size` in `1..=100000`; the plugin config
//!   representable as JSON.
//! - Dependencies: known maps, not the map itself, not twice, not a disabled map from an
//!   enabled one, and no cycles (reported as `a -> b -> c -> a`). [`Plan::maps`] is in
//!   dependency order, parents first.
//!
//! Whether entities and columns exist is checked against the live schema when sides
//! connect; [`MapPlan::named_columns`] lists what to look for and [`Plan::error_at`]
//! reports a finding at the line it was configured on.

mod document;
mod error;
mod file;
mod graph;
mod operations;
mod plan;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

use toml::Spanned;

pub use error::{ConfigError, ConfigErrors, Location};
pub use operations::{
    AdminPlan, DEFAULT_ADMIN_LISTEN, DEFAULT_RECORD_MAX_ENTRIES, EVENTS, OperationsPlan,
    SubscriberPlan,
};
pub use plan::{
    ConflictPolicy, Connector, DEFAULT_BATCH_SIZE, InitialSync, MAX_BATCH_SIZE, MapEndpoint,
    MapPlan, OrderingMode, Origin, Plan, Resolution, Secret, SecretEnv, ServerConnection, SidePlan,
};

use document::{Document, Section, join, refuse_secrets, take_sections};
use file::{Entry, FileContents, MapFile, Settings, SideFile};

/// Reads and validates the config file at `path`. Relative paths in it start at the
/// file's folder (made absolute, so the plan does not depend on the working directory).
/// Errors name the file as `path` is written.
pub fn load(path: impl AsRef<Path>) -> Result<Plan, ConfigErrors> {
    load_with(path.as_ref(), false)
}

/// [`load`], accepting a file with sides and no maps yet: the target of a first
/// solution import (`dualwrite run` still needs maps).
pub fn load_allowing_no_maps(path: impl AsRef<Path>) -> Result<Plan, ConfigErrors> {
    load_with(path.as_ref(), true)
}

fn load_with(path: &Path, allow_no_maps: bool) -> Result<Plan, ConfigErrors> {
    let file_name = path.display().to_string();
    let unreadable = |message: String| ConfigError {
        file: file_name.clone(),
        location: None,
        key_path: String::new(),
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|error| unreadable(format!("cannot read the config file: {error}")))?;
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    let base_dir = std::path::absolute(folder)
        .map_err(|error| unreadable(format!("cannot resolve the config file's folder: {error}")))?;
    parse_with_options(&text, &file_name, &base_dir, allow_no_maps)
}

/// [`parse`], accepting no maps when `allow_no_maps`.
pub fn parse_with_options(
    text: &str,
    file_name: &str,
    base_dir: &Path,
    allow_no_maps: bool,
) -> Result<Plan, ConfigErrors> {
    parse_checked(
        text,
        file_name,
        base_dir,
        &|var| std::env::var_os(var).is_some(),
        allow_no_maps,
    )
}

/// Validates config `text`. `file_name` is used in messages only; relative paths in the
/// file start at `base_dir`. Plugin files and folders are checked on disk; environment
/// variables named by `*_env` keys must be set.
pub fn parse(text: &str, file_name: &str, base_dir: &Path) -> Result<Plan, ConfigErrors> {
    parse_with_env(text, file_name, base_dir, &|var| {
        std::env::var_os(var).is_some()
    })
}

/// [`parse`], asking `env_is_set` whether an environment variable is set.
fn parse_with_env(
    text: &str,
    file_name: &str,
    base_dir: &Path,
    env_is_set: &dyn Fn(&str) -> bool,
) -> Result<Plan, ConfigErrors> {
    parse_checked(text, file_name, base_dir, env_is_set, false)
}

fn parse_checked(
    text: &str,
    file_name: &str,
    base_dir: &Path,
    env_is_set: &dyn Fn(&str) -> bool,
    allow_no_maps: bool,
) -> Result<Plan, ConfigErrors> {
    let to_errors = |errors: Vec<ConfigError>| {
        ConfigErrors::new(errors).expect("validation fails only with errors")
    };
    let (document, root) = Document::parse(file_name, text).map_err(to_errors)?;
    let mut errors = Vec::new();
    let root_span = root.span();
    let mut root = root.into_inner();
    refuse_secrets(&document, &mut root, "", &mut errors);

    let sides = take_sections(
        &document,
        &mut root,
        "sides",
        "one [sides.NAME] table per side",
        &mut errors,
    );
    let maps = take_sections(
        &document,
        &mut root,
        "maps",
        "one [maps.NAME] table per map",
        &mut errors,
    );
    let operations = operations::read(&document, &mut root, base_dir, env_is_set, &mut errors);
    if let Some(maps) = &maps {
        let names: Vec<String> = maps.iter().map(|map| map.name.clone()).collect();
        operations::check_alert_maps(&document, &operations, &names, &mut errors);
    }
    let settings = document
        .section::<Settings>(Spanned::new(root_span, root), "")
        .map_err(|error| errors.push(error))
        .ok();
    let contents = FileContents {
        settings,
        sides: read_entries::<SideFile>(&document, "sides", sides, &mut errors),
        maps: read_entries::<MapFile>(&document, "maps", maps, &mut errors),
    };
    let mut plan = validate::validate(
        &document,
        base_dir,
        env_is_set,
        contents,
        errors,
        allow_no_maps,
    )
    .map_err(to_errors)?;
    plan.operations = operations;
    Ok(plan)
}

/// Deserializes each section under `key` on its own, keeping the names of those that
/// fail (their errors go to `errors`).
fn read_entries<'t, T: serde::Deserialize<'t>>(
    document: &Document<'t>,
    key: &str,
    sections: Option<Vec<Section<'t>>>,
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<Entry<T>>> {
    let sections = sections?;
    let entries = sections
        .into_iter()
        .map(|section| {
            let path = join(key, &section.name);
            let value = section.table.and_then(|table| {
                document
                    .section(table, &path)
                    .map_err(|error| errors.push(error))
                    .ok()
            });
            Entry {
                name: section.name,
                value,
            }
        })
        .collect();
    Some(entries)
}
