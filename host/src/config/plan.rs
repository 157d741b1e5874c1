//! The validated plan the runtime consumes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::change::{Direction, Side};

use super::error::{ConfigError, Location};

/// Default [`MapPlan::batch_size`].
pub const DEFAULT_BATCH_SIZE: u32 = 500;

/// Largest allowed [`MapPlan::batch_size`].
pub const MAX_BATCH_SIZE: u32 = 100_000;

/// A whole deployment, validated: what the engine runs.
///
/// A plan from [`parse`](super::parse) or [`load`](super::load) holds these invariants,
/// which code building a plan by hand must keep too: side and map names are unique; every
/// map's endpoints name two different sides of [`sides`](Plan::sides); every
/// `depends_on` names a map of the plan; [`maps`](Plan::maps) is in dependency order.
/// Secrets never appear in a plan, only the names of the environment variables holding
/// them, so its `Debug` output is safe to log.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Where the engine keeps its state (created at start if missing).
    pub data_dir: PathBuf,
    /// The folder plugin files are read from; [`MapPlan::plugin`] names a file in it.
    pub plugins_dir: PathBuf,
    /// The sides, in file order.
    pub sides: Vec<SidePlan>,
    /// The maps in dependency order: every map comes after the maps it depends on; maps
    /// with no order between them keep file order.
    pub maps: Vec<MapPlan>,
    /// Where each setting was written, to report later findings (such as a column
    /// missing from the live schema) at their line.
    pub origin: Origin,
    /// The admin API, alert rules and webhook subscribers.
    pub operations: super::OperationsPlan,
}

impl Plan {
    /// The side named `name`.
    pub fn side(&self, name: &str) -> Option<&SidePlan> {
        self.sides.iter().find(|side| side.name == name)
    }

    /// The map named `name`.
    pub fn map(&self, name: &str) -> Option<&MapPlan> {
        self.maps.iter().find(|map| map.name == name)
    }

    /// The path of `map`'s plugin file. Read it through a directory capability on
    /// [`plugins_dir`](Plan::plugins_dir) where possible, as the plugin loader does.
    pub fn plugin_path(&self, map: &MapPlan) -> PathBuf {
        self.plugins_dir.join(&map.plugin)
    }

    /// The side `map` reaches in `role`.
    pub fn side_of(&self, map: &MapPlan, role: Side) -> Option<&SidePlan> {
        self.side(&map.endpoint(role).side)
    }

    /// An error about the setting at `key_path` (such as `maps.customers.erp.entity`),
    /// placed at the line it was written on; see [`Origin::error_at`].
    pub fn error_at(&self, key_path: &str, message: impl Into<String>) -> ConfigError {
        self.origin.error_at(key_path, message)
    }
}

/// One side of the deployment: a name and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidePlan {
    /// The name maps refer to it by (`erp`, `crm`, `ax-prod`, ...).
    pub name: String,
    /// The connector and its connection settings.
    pub connector: Connector,
}

impl SidePlan {
    /// A side on an SQLite database file.
    pub fn sqlite(name: impl Into<String>, path: impl Into<PathBuf>) -> SidePlan {
        SidePlan {
            name: name.into(),
            connector: Connector::Sqlite { path: path.into() },
        }
    }
}

/// How a side is reached.
///
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connector {
    /// An SQLite database file, shared with the application that owns it.
    Sqlite {
        /// The database file (absolute when the plan comes from [`load`](super::load)).
        path: PathBuf,
    },
    /// A PostgreSQL server.
    Postgres(ServerConnection),
    /// A MariaDB or MySQL server (`connector = "mariadb"` or `"mysql"`).
    MariaDb(ServerConnection),
}

impl Connector {
    /// The connector's name as written in the file (`sqlite`, `postgres`, `mariadb`).
    pub fn kind(&self) -> &'static str {
        match self {
            Connector::Sqlite { .. } => "sqlite",
            Connector::Postgres(_) => "postgres",
            Connector::MariaDb(_) => "mariadb",
        }
    }
}

/// Connection settings of a database server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConnection {
    /// The connection URL; never holds a password.
    pub url: String,
    /// Where the password comes from, if the server wants one.
    pub password: Option<SecretEnv>,
}

/// A secret held in an environment variable; the plan keeps only the variable's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretEnv {
    /// The environment variable's name.
    pub var: String,
}

impl SecretEnv {
    /// Reads the secret from the environment. Validation checked that the variable was
    /// set when the plan was made; it may have gone since.
    pub fn read(&self) -> Result<Secret, std::env::VarError> {
        std::env::var(&self.var).map(Secret)
    }
}

/// A secret value. Its `Debug` output is redacted and it has no `Display`; use
/// [`expose`](Secret::expose) at the one place that hands it to a driver.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One table map: an entity on each side, the plugin that maps them, and the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct MapPlan {
    /// The map's name (the key of its `[maps.NAME]` table).
    pub name: String,
    /// The plugin's file name inside [`Plan::plugins_dir`]: no separators, no `..`.
    pub plugin: String,
    /// The entity in the ERP role.
    pub erp: MapEndpoint,
    /// The entity in the CRM role.
    pub crm: MapEndpoint,
    /// Which way changes flow.
    pub direction: Direction,
    /// Maps that must sync first (parents); all part of the plan.
    pub depends_on: Vec<String>,
    /// How a row changed on both sides since the last sync is resolved.
    pub conflict: ConflictPolicy,
    /// How initial sync merges rows that exist on both sides and differ.
    pub initial_sync: InitialSync,
    /// What a failing change does to the changes behind it.
    pub ordering: OrderingMode,
    /// Most changes per plugin call and per write transaction, `1..=MAX_BATCH_SIZE`.
    pub batch_size: u32,
    /// Whether the map runs when the engine starts.
    pub enabled: bool,
    /// The plugin's config, handed to its `configure` as JSON; `{}` when none is set.
    pub plugin_config: serde_json::Map<String, serde_json::Value>,
}

impl MapPlan {
    /// A map with the file's defaults: both directions, manual conflict resolution,
    /// initial sync by the conflict policy, per-key ordering, the default batch size,
    /// enabled, no dependencies and an empty plugin config.
    pub fn new(
        name: impl Into<String>,
        plugin: impl Into<String>,
        erp: MapEndpoint,
        crm: MapEndpoint,
    ) -> MapPlan {
        MapPlan {
            name: name.into(),
            plugin: plugin.into(),
            erp,
            crm,
            direction: Direction::Both,
            depends_on: Vec::new(),
            conflict: ConflictPolicy::Manual,
            initial_sync: InitialSync::default(),
            ordering: OrderingMode::PerKey,
            batch_size: DEFAULT_BATCH_SIZE,
            enabled: true,
            plugin_config: serde_json::Map::new(),
        }
    }

    /// The endpoint in `role`.
    pub fn endpoint(&self, role: Side) -> &MapEndpoint {
        match role {
            Side::Erp => &self.erp,
            Side::Crm => &self.crm,
        }
    }

    /// Whether changes captured on `source` are carried to the other side.
    pub fn flows_from(&self, source: Side) -> bool {
        match self.direction {
            Direction::Both => true,
            Direction::ToCrm => source == Side::Erp,
            Direction::ToErp => source == Side::Crm,
        }
    }

    /// The plugin config as the JSON text `configure` takes.
    pub fn plugin_config_json(&self) -> String {
        serde_json::Value::Object(self.plugin_config.clone()).to_string()
    }

    /// The columns of `role`'s entity this map's settings name (key fields, conflict
    /// fields and version columns), each with the key path it was set at: what the check
    /// against the live schema must find.
    pub fn named_columns(&self, role: Side) -> Vec<(String, &str)> {
        let prefix = format!("maps.{}", super::document::join("", &self.name));
        let role_name = role.as_str();
        let mut columns: Vec<(String, &str)> = self
            .endpoint(role)
            .key
            .iter()
            .enumerate()
            .map(|(index, column)| {
                (
                    format!("{prefix}.{role_name}.key[{index}]"),
                    column.as_str(),
                )
            })
            .collect();
        match &self.conflict {
            ConflictPolicy::FieldOwnership {
                erp_fields,
                crm_fields,
                ..
            } => {
                let fields = match role {
                    Side::Erp => erp_fields,
                    Side::Crm => crm_fields,
                };
                columns.extend(fields.iter().enumerate().map(|(index, column)| {
                    (
                        format!("{prefix}.conflict.{role_name}_fields[{index}]"),
                        column.as_str(),
                    )
                }));
            }
            ConflictPolicy::NewerWins {
                erp_column,
                crm_column,
                ..
            } => {
                let column = match role {
                    Side::Erp => erp_column,
                    Side::Crm => crm_column,
                };
                columns.push((format!("{prefix}.conflict.{role_name}_column"), column));
            }
            ConflictPolicy::SideWins { .. } | ConflictPolicy::Manual => {}
        }
        columns
    }
}

/// One map's entity on one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEndpoint {
    /// The [`SidePlan::name`] of the side.
    pub side: String,
    /// The table or entity set.
    pub entity: String,
    /// The integration key: the fields that identify a row, matched across sides by
    /// initial sync; non-empty, no field twice.
    pub key: Vec<String>,
}

impl MapEndpoint {
    /// An endpoint on `side`'s `entity`, keyed by `key`.
    pub fn new<K: Into<String>>(
        side: impl Into<String>,
        entity: impl Into<String>,
        key: impl IntoIterator<Item = K>,
    ) -> MapEndpoint {
        MapEndpoint {
            side: side.into(),
            entity: entity.into(),
            key: key.into_iter().map(Into::into).collect(),
        }
    }
}

/// How a conflict (a row changed on both sides since its last sync) is resolved.
///
/// Plain wall-clock last-writer-wins is deliberately not offered: clocks of two systems
/// disagree. Newer-wins compares an explicit version or timestamp column instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConflictPolicy {
    /// Each side owns some fields and wins on them.
    FieldOwnership {
        /// ERP column names the ERP owns.
        erp_fields: Vec<String>,
        /// CRM column names the CRM owns.
        crm_fields: Vec<String>,
        /// What happens to a conflicting field neither list names.
        others: Resolution,
    },
    /// One side always wins.
    SideWins {
        /// The side that wins.
        winner: Side,
    },
    /// The side whose version column is greater wins.
    NewerWins {
        /// The ERP's version or timestamp column.
        erp_column: String,
        /// The CRM's version or timestamp column.
        crm_column: String,
        /// What happens when both columns hold equal values.
        tie: Resolution,
    },
    /// The conflict is parked with the base and both images for an admin.
    Manual,
}

impl ConflictPolicy {
    /// The policy's name as written in the file.
    pub fn name(&self) -> &'static str {
        match self {
            ConflictPolicy::FieldOwnership { .. } => "field-ownership",
            ConflictPolicy::SideWins { .. } => "side-wins",
            ConflictPolicy::NewerWins { .. } => "newer-wins",
            ConflictPolicy::Manual => "manual",
        }
    }
}

/// A fallback outcome inside a conflict policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// This side wins.
    Wins(Side),
    /// Parked for an admin.
    Manual,
}

/// How initial sync treats a row present on both sides with different values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InitialSync {
    /// The side whose row wins; `None` resolves such rows by the map's conflict policy.
    /// On a one-way map it is the source side when set.
    pub master: Option<Side>,
}

/// What a change that fails does to the changes behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderingMode {
    /// The failing change goes to the error queue; later changes to other keys go on,
    /// later changes to the same key wait behind it.
    PerKey,
    /// The map stops at the failing change, so changes are applied strictly in commit
    /// order.
    Strict,
}

impl OrderingMode {
    /// The mode's name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderingMode::PerKey => "per-key",
            OrderingMode::Strict => "strict",
        }
    }
}

/// Where a plan's settings were written.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The config file as named when loading; empty for a plan built in code.
    pub file: String,
    /// The position of each key path (`maps.customers.erp.entity`) written in the file.
    pub locations: BTreeMap<String, Location>,
}

impl Origin {
    /// An error about the setting at `key_path`, placed at its line, or at its nearest
    /// written ancestor's (a defaulted key is placed at its table).
    pub fn error_at(&self, key_path: &str, message: impl Into<String>) -> ConfigError {
        let mut current = key_path;
        let location = loop {
            if let Some(location) = self.locations.get(current) {
                break Some(*location);
            }
            match super::document::parent_path(current) {
                Some(parent) => current = parent,
                None => break None,
            }
        };
        ConfigError {
            file: if self.file.is_empty() {
                "(plan)".to_owned()
            } else {
                self.file.clone()
            },
            location,
            key_path: key_path.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Origin")
            .field("file", &self.file)
            .field("locations", &self.locations.len())
            .finish()
    }
}
