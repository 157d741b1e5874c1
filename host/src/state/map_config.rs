//! The plugin and config history of each map: every plugin file and config a map has
//! run with since an admin first changed it at runtime (`PUT /api/v1/maps/{map}/config`,
//! later plugin hot swap), newest last.
//!
//! The newest record of a map is the one in force; the engine applies it at open as
//! long as the deployment's own config for the map is still the one it was made
//! against (`base_config_hash`), so editing the config file wins over a runtime edit.
//! Older records are what a rollback goes back to.

use chrono::{DateTime, Utc};

/// A plugin version and config to record for a map.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMapConfig {
    /// The map.
    pub map: String,
    /// The plugin file name (inside the plugins folder).
    pub plugin_file: String,
    /// The plugin's content hash (SHA-256, lowercase hex).
    pub plugin_hash: String,
    /// The plugin's own version, from `describe`.
    pub plugin_version: String,
    /// The config handed to `configure`, as JSON text.
    pub config: String,
    /// SHA-256 (hex) of the deployment file's config of the map this was made against.
    pub base_config_hash: String,
    /// Who made the change.
    pub by: String,
    /// Why (the admin's note, or `rollback to #N`).
    pub reason: String,
}

/// A recorded plugin version and config of a map.
#[derive(Debug, Clone, PartialEq)]
pub struct MapConfigRecord {
    /// Its id (grows by one per record, over all maps).
    pub id: u64,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// What was recorded.
    pub record: NewMapConfig,
}
