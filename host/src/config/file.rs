//! The file's shape, as serde structs: exactly what may be written, nothing resolved.
//!
//! Unknown keys are refused (`deny_unknown_fields`). Names, roles and numbers the
//! validation step wants to explain in its own words (with the list of valid choices)
//! are read as plain strings and integers here.

use serde::Deserialize;

/// The top-level keys other than `[sides]` and `[maps]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Settings {
    /// Where the engine keeps its state; defaults to `./data`.
    pub(super) data_dir: Option<String>,
    /// Where plugin files are looked up; defaults to `./plugins`.
    pub(super) plugins_dir: Option<String>,
}

/// One `[sides.NAME]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SideFile {
    /// Which connector reaches the side.
    pub(super) connector: ConnectorKind,
    /// `sqlite`: the database file.
    pub(super) path: Option<String>,
    /// `postgres`, `mariadb`: the connection URL, without a password.
    pub(super) url: Option<String>,
    /// `postgres`, `mariadb`: the environment variable holding the password.
    pub(super) password_env: Option<String>,
}

/// The `connector` of a side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum ConnectorKind {
    Sqlite,
    #[serde(alias = "postgresql")]
    Postgres,
    #[serde(alias = "mysql")]
    Mariadb,
}

/// One `[maps.NAME]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MapFile {
    pub(super) plugin: String,
    pub(super) erp: EndpointFile,
    pub(super) crm: EndpointFile,
    pub(super) direction: Option<DirectionFile>,
    #[serde(default)]
    pub(super) depends_on: Vec<String>,
    pub(super) conflict: Option<ConflictFile>,
    pub(super) initial_sync: Option<InitialSyncFile>,
    pub(super) ordering: Option<OrderingFile>,
    pub(super) batch_size: Option<i64>,
    pub(super) enabled: Option<bool>,
    pub(super) config: Option<toml::Table>,
}

/// `erp = { ... }` / `crm = { ... }` of a map.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EndpointFile {
    pub(super) side: String,
    pub(super) entity: String,
    pub(super) key: Vec<String>,
}

/// A map's `direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum DirectionFile {
    Both,
    ToCrm,
    ToErp,
}

/// A map's `conflict` table: the policy and every policy's settings, checked for
/// consistency by validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConflictFile {
    pub(super) policy: PolicyFile,
    pub(super) winner: Option<String>,
    pub(super) erp_fields: Option<Vec<String>>,
    pub(super) crm_fields: Option<Vec<String>>,
    pub(super) others: Option<String>,
    pub(super) erp_column: Option<String>,
    pub(super) crm_column: Option<String>,
    pub(super) tie: Option<String>,
}

/// A conflict `policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum PolicyFile {
    FieldOwnership,
    SideWins,
    NewerWins,
    Manual,
}

/// A map's `initial_sync` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InitialSyncFile {
    pub(super) master: Option<String>,
}

/// A map's `ordering`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum OrderingFile {
    PerKey,
    Strict,
}

/// The file cut into its sections, each deserialized on its own.
pub(super) struct FileContents {
    /// The top-level settings; `None` if they failed to deserialize (already reported).
    pub(super) settings: Option<Settings>,
    /// The `[sides.NAME]` tables in file order; `None` if there is no `sides` table.
    pub(super) sides: Option<Vec<Entry<SideFile>>>,
    /// The `[maps.NAME]` tables in file order; `None` if there is no `maps` table.
    pub(super) maps: Option<Vec<Entry<MapFile>>>,
}

/// A named section. A section that failed to deserialize keeps its name, so that what
/// refers to it is not also reported as unknown.
pub(super) struct Entry<T> {
    pub(super) name: String,
    pub(super) value: Option<T>,
}
