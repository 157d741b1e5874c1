//! The solution bundle file: one uncompressed tar archive holding
//!
//! - `manifest.json`: the [`Manifest`] (publisher, name, semantic version, maps with
//!   their plugin files, content hashes, world versions and dependencies, the
//!   parameters bound per environment);
//! - `maps/NAME.toml`: each map's `[maps.NAME]` table, as written in the exporting
//!   deployment's config, minus its parameters;
//! - `plugins/FILE`: each plugin file a map runs.
//!
//! Reading is strict: an entry that is not a regular file at one of those paths (an
//! absolute path, `..`, a link, a folder elsewhere) is refused naming the entry, before
//! anything is written anywhere; so are a missing part and a plugin whose bytes do not
//! have the manifest's content hash.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The bundle format this host writes and reads.
pub const FORMAT: u32 = 1;

/// Largest bundle read (plugins with an interpreter inside run to tens of MiB).
const MAX_BUNDLE_BYTES: u64 = 512 << 20;

/// What a bundle holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// Who publishes the solution.
    pub publisher: String,
    /// The solution's name.
    pub name: String,
    /// Its semantic version.
    pub version: String,
    /// When it was exported (RFC 3339).
    pub exported_at: String,
    /// The maps, in dependency order.
    pub maps: Vec<ManifestMap>,
    /// Maps outside the bundle that maps in it depend on: the target deployment must
    /// have them.
    pub dependencies: Vec<String>,
    /// The `dualwrite:table-map` world versions its plugins implement.
    pub world_versions: Vec<String>,
    /// Values left out of the map definitions, bound per environment on import.
    pub parameters: Vec<Parameter>,
}

/// One map of a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestMap {
    /// The map's name.
    pub name: String,
    /// The plugin file (a name in `plugins/`).
    pub plugin: String,
    /// SHA-256 of the plugin file, hex.
    pub plugin_hash: String,
    /// The world version the plugin implements.
    pub world_version: String,
    /// The plugin's own version (from `describe`).
    pub plugin_version: String,
    /// The maps it depends on.
    pub depends_on: Vec<String>,
}

/// A value bound per environment: a dotted path inside a map's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    /// The map.
    pub map: String,
    /// The path inside `[maps.MAP]`, like `config.companies`.
    pub path: String,
}

impl Parameter {
    /// `map.path`, as `--set` names it.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.map, self.path)
    }
}

/// A bundle read into memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// The manifest.
    pub manifest: Manifest,
    /// Each map's definition text, by map name.
    pub definitions: BTreeMap<String, String>,
    /// Each plugin file's bytes, by file name.
    pub plugins: BTreeMap<String, Vec<u8>>,
}

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BundleError {
    /// The archive cannot be read.
    #[error("not a readable solution bundle: {0}")]
    Unreadable(String),
    /// An entry's path would escape the folder it is unpacked into, or is not a part a
    /// bundle has.
    #[error("archive entry `{entry}` refused: {reason}")]
    BadEntry {
        /// The entry's path as stored.
        entry: String,
        /// Why.
        reason: String,
    },
    /// A part is missing or does not read.
    #[error("{0}")]
    Invalid(String),
    /// A plugin's bytes are not the ones the manifest names.
    #[error(
        "plugin {file}: its content hash is {actual}, the manifest says {expected} (the file was changed or damaged)"
    )]
    HashMismatch {
        /// The plugin file.
        file: String,
        /// What the manifest says.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
}

/// SHA-256 of `bytes`, hex.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Bundle {
    /// The archive's bytes.
    pub fn write(&self) -> anyhow::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: String, data: &[u8]| -> anyhow::Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            builder.append_data(&mut header, path, data)?;
            Ok(())
        };
        add(
            "manifest.json".to_owned(),
            serde_json::to_string_pretty(&self.manifest)?.as_bytes(),
        )?;
        for (map, text) in &self.definitions {
            add(format!("maps/{map}.toml"), text.as_bytes())?;
        }
        for (file, bytes) in &self.plugins {
            add(format!("plugins/{file}"), bytes)?;
        }
        Ok(builder.into_inner()?)
    }

    /// Reads and checks an archive; see the module doc.
    pub fn read(bytes: &[u8]) -> Result<Bundle, BundleError> {
        let mut archive = tar::Archive::new(bytes);
        let entries = archive
            .entries()
            .map_err(|error| BundleError::Unreadable(error.to_string()))?;
        let mut manifest_text = None;
        let mut definitions = BTreeMap::new();
        let mut plugins = BTreeMap::new();
        let mut total = 0u64;
        for entry in entries {
            let mut entry = entry.map_err(|error| BundleError::Unreadable(error.to_string()))?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let bad = |reason: &str| BundleError::BadEntry {
                entry: raw.clone(),
                reason: reason.to_owned(),
            };
            let path = Path::new(&raw);
            if path.is_absolute()
                || path
                    .components()
                    .any(|part| !matches!(part, Component::Normal(_)))
            {
                return Err(bad(
                    "its path would escape the folder the bundle is unpacked into",
                ));
            }
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                continue;
            }
            if !kind.is_file() {
                return Err(bad("only regular files belong in a bundle (no links)"));
            }
            total += entry.size();
            if total > MAX_BUNDLE_BYTES {
                return Err(bad("the bundle is larger than 512 MiB"));
            }
            let mut data = Vec::with_capacity(entry.size() as usize);
            entry
                .read_to_end(&mut data)
                .map_err(|error| BundleError::Unreadable(error.to_string()))?;
            let parts: Vec<&str> = raw.split('/').collect();
            match parts.as_slice() {
                ["manifest.json"] => manifest_text = Some(data),
                ["maps", file] if file.ends_with(".toml") => {
                    let text = String::from_utf8(data).map_err(|_| bad("not UTF-8 text"))?;
                    definitions.insert(file.trim_end_matches(".toml").to_owned(), text);
                }
                ["plugins", file] if !file.is_empty() && !file.starts_with('.') => {
                    plugins.insert((*file).to_owned(), data);
                }
                _ => {
                    return Err(bad(
                        "not a part of a bundle (manifest.json, maps/NAME.toml, plugins/FILE)",
                    ));
                }
            }
        }
        let manifest_text = manifest_text
            .ok_or_else(|| BundleError::Invalid("the bundle has no manifest.json".to_owned()))?;
        let manifest: Manifest = serde_json::from_slice(&manifest_text)
            .map_err(|error| BundleError::Invalid(format!("manifest.json: {error}")))?;
        if manifest.format != FORMAT {
            return Err(BundleError::Invalid(format!(
                "manifest.json: bundle format {}, this dualwrite reads format {FORMAT}",
                manifest.format
            )));
        }
        semver::Version::parse(&manifest.version).map_err(|error| {
            BundleError::Invalid(format!(
                "manifest.json: version `{}` is not a semantic version: {error}",
                manifest.version
            ))
        })?;
        for map in &manifest.maps {
            if !definitions.contains_key(&map.name) {
                return Err(BundleError::Invalid(format!(
                    "map {}: maps/{}.toml is missing from the bundle",
                    map.name, map.name
                )));
            }
            let bytes = plugins.get(&map.plugin).ok_or_else(|| {
                BundleError::Invalid(format!(
                    "map {}: plugins/{} is missing from the bundle",
                    map.name, map.plugin
                ))
            })?;
            let actual = content_hash(bytes);
            if actual != map.plugin_hash {
                return Err(BundleError::HashMismatch {
                    file: map.plugin.clone(),
                    expected: map.plugin_hash.clone(),
                    actual,
                });
            }
        }
        Ok(Bundle {
            manifest,
            definitions,
            plugins,
        })
    }
}
