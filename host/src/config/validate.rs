//! From the file's sections to a [`Plan`]: names, sides, plugin files, keys, policies,
//! dependencies. Every check runs, and every failure is recorded with its key path, so
//! that one run shows everything wrong with the file.

use std::collections::HashMap;
use std::io;
use std::path::{Component, Path, PathBuf};

use cap_std::fs::Dir;

use crate::change::{Direction, Side};

use super::document::{Document, join};
use super::error::ConfigError;
use super::file::{
    ConflictFile, ConnectorKind, DirectionFile, EndpointFile, Entry, FileContents, MapFile,
    OrderingFile, PolicyFile, SideFile,
};
use super::graph::dependency_order;
use super::plan::{
    ConflictPolicy, Connector, DEFAULT_BATCH_SIZE, InitialSync, MAX_BATCH_SIZE, MapEndpoint,
    MapPlan, OrderingMode, Origin, Plan, Resolution, SecretEnv, ServerConnection, SidePlan,
};

/// Folder names used when the file does not set them, relative to the file's folder.
const DEFAULT_DATA_DIR: &str = "data";
const DEFAULT_PLUGINS_DIR: &str = "plugins";

/// Validates `contents` (parsed from `document`) into a plan, or returns every error,
/// `errors` (found while parsing) included.
pub(super) fn validate(
    document: &Document<'_>,
    base_dir: &Path,
    env_is_set: &dyn Fn(&str) -> bool,
    contents: FileContents,
    errors: Vec<ConfigError>,
    allow_no_maps: bool,
) -> Result<Plan, Vec<ConfigError>> {
    let mut validator = Validator {
        document,
        base_dir,
        env_is_set,
        errors,
        allow_no_maps,
    };
    match validator.plan(contents) {
        Some(plan) if validator.errors.is_empty() => Ok(plan),
        plan => {
            if validator.errors.is_empty() {
                // Every step that yields nothing records why; this is a bug's safety net.
                debug_assert!(plan.is_some(), "validation failed without an error");
                validator
                    .errors
                    .push(document.error("", "the configuration is incomplete"));
            }
            Err(validator.errors)
        }
    }
}

struct Validator<'a, 't> {
    document: &'a Document<'t>,
    base_dir: &'a Path,
    env_is_set: &'a dyn Fn(&str) -> bool,
    errors: Vec<ConfigError>,
    /// A file with sides and no maps is valid (a solution's first import target).
    allow_no_maps: bool,
}

/// The opened plugins folder, to check plugin files the way the loader reads them.
struct PluginsDir {
    path: PathBuf,
    dir: Dir,
}

impl Validator<'_, '_> {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        let error = self.document.error(path, message);
        self.errors.push(error);
    }

    fn plan(&mut self, contents: FileContents) -> Option<Plan> {
        let settings = contents.settings;
        let data_dir = settings
            .as_ref()
            .and_then(|settings| self.data_dir(settings.data_dir.as_deref()));
        let plugins = settings
            .as_ref()
            .and_then(|settings| self.plugins_dir(settings.plugins_dir.as_deref()));

        let side_entries = match contents.sides {
            Some(entries) if !entries.is_empty() => entries,
            _ if self.allow_no_maps => Vec::new(),
            _ => {
                self.error(
                    "sides",
                    "no sides: add a [sides.NAME] table for each system of record, \
                     with its `connector`",
                );
                Vec::new()
            }
        };
        let side_names: Vec<String> = side_entries.iter().map(|e| e.name.clone()).collect();
        let sides: Vec<Option<SidePlan>> = side_entries
            .into_iter()
            .map(|entry| self.side(entry))
            .collect();
        self.distinct_databases(&sides);

        let map_entries = match contents.maps {
            Some(entries) if !entries.is_empty() => entries,
            _ if self.allow_no_maps => Vec::new(),
            _ => {
                self.error(
                    "maps",
                    "no maps: add a [maps.NAME] table for each pair of entities to keep in step",
                );
                Vec::new()
            }
        };
        let map_names: Vec<String> = map_entries.iter().map(|e| e.name.clone()).collect();
        let enabled: Vec<bool> = map_entries
            .iter()
            .map(|entry| {
                entry
                    .value
                    .as_ref()
                    .is_none_or(|map| map.enabled != Some(false))
            })
            .collect();
        let mut depends_on = Vec::with_capacity(map_entries.len());
        let mut maps: Vec<Option<MapPlan>> = Vec::with_capacity(map_entries.len());
        for (index, entry) in map_entries.into_iter().enumerate() {
            depends_on.push(self.dependencies(index, &entry, &map_names, &enabled));
            maps.push(self.map(entry, &side_names, plugins.as_ref()));
        }
        self.distinct_entity_pairs(&maps);
        let order = match dependency_order(&depends_on) {
            Ok(order) => order,
            Err(cycles) => {
                self.report_cycles(&cycles, &map_names);
                return None;
            }
        };

        let sides: Vec<SidePlan> = sides.into_iter().collect::<Option<_>>()?;
        let maps: Vec<MapPlan> = order
            .into_iter()
            .map(|index| maps[index].take())
            .collect::<Option<_>>()?;
        Some(Plan {
            data_dir: data_dir?,
            plugins_dir: plugins?.path,
            sides,
            maps,
            origin: Origin {
                file: self.document.file().to_owned(),
                locations: self.document.locations(),
            },
            operations: Default::default(),
        })
    }

    // ---- settings ----

    fn data_dir(&mut self, written: Option<&str>) -> Option<PathBuf> {
        let path = self.folder("data_dir", written, DEFAULT_DATA_DIR)?;
        if path.exists() && !path.is_dir() {
            self.error(
                "data_dir",
                format!("{} exists and is not a folder", path.display()),
            );
            return None;
        }
        Some(path)
    }

    fn plugins_dir(&mut self, written: Option<&str>) -> Option<PluginsDir> {
        let path = self.folder("plugins_dir", written, DEFAULT_PLUGINS_DIR)?;
        let defaulted = if written.is_none() {
            " (plugins_dir defaults to `plugins` next to the config file)"
        } else {
            ""
        };
        match Dir::open_ambient_dir(&path, cap_std::ambient_authority()) {
            Ok(dir) => Some(PluginsDir { path, dir }),
            Err(error) => {
                let reason = match error.kind() {
                    io::ErrorKind::NotFound => "does not exist".to_owned(),
                    io::ErrorKind::NotADirectory => "is not a folder".to_owned(),
                    _ => format!("cannot be opened: {error}"),
                };
                self.error(
                    "plugins_dir",
                    format!("plugins folder {} {reason}{defaulted}", path.display()),
                );
                None
            }
        }
    }

    /// A folder setting, resolved against the config file's folder.
    fn folder(&mut self, key: &str, written: Option<&str>, default: &str) -> Option<PathBuf> {
        let written = written.unwrap_or(default);
        if written.trim().is_empty() {
            self.error(
                key,
                "is empty; name a folder (relative paths start at the config file's folder)",
            );
            return None;
        }
        Some(self.resolve(written))
    }

    fn resolve(&self, written: &str) -> PathBuf {
        let joined = self.base_dir.join(written);
        // Drop `.` components for readable messages; `..` stays (symlinks make it
        // unsafe to fold lexically).
        joined
            .components()
            .filter(|component| *component != Component::CurDir)
            .collect()
    }

    // ---- sides ----

    fn side(&mut self, entry: Entry<SideFile>) -> Option<SidePlan> {
        let path = join("sides", &entry.name);
        let name_ok = self.name(&path, "side", &entry.name);
        let side = entry.value?;
        let key = |key: &str| format!("{path}.{key}");
        let connector = match side.connector {
            ConnectorKind::Sqlite => {
                for (present, unused) in [
                    (side.url.is_some(), "url"),
                    (side.password_env.is_some(), "password_env"),
                ] {
                    if present {
                        self.error(
                            &key(unused),
                            format!(
                                "`{unused}` is not used by the sqlite connector (it takes `path`)"
                            ),
                        );
                    }
                }
                let Some(written) = side.path else {
                    self.error(
                        &path,
                        "the sqlite connector needs `path`, the database file \
                         (relative paths start at the config file's folder)",
                    );
                    return None;
                };
                self.sqlite_path(&key("path"), &written)
                    .map(|path| Connector::Sqlite { path })
            }
            kind @ (ConnectorKind::Postgres | ConnectorKind::Mariadb) => {
                if side.path.is_some() {
                    self.error(
                        &key("path"),
                        "`path` is only used by the sqlite connector (servers take `url`)",
                    );
                }
                let server = self.server(&path, kind, side.url, side.password_env);
                match kind {
                    ConnectorKind::Postgres => server.map(Connector::Postgres),
                    _ => server.map(Connector::MariaDb),
                }
            }
        };
        if !name_ok {
            return None;
        }
        Some(SidePlan {
            name: entry.name,
            connector: connector?,
        })
    }

    fn sqlite_path(&mut self, path: &str, written: &str) -> Option<PathBuf> {
        if written.trim().is_empty() {
            self.error(path, "is empty; name the database file");
            return None;
        }
        if written == ":memory:" || written.starts_with("file::memory:") {
            self.error(
                path,
                "an in-memory database cannot be synced: other programs cannot write to it; \
                 name a database file",
            );
            return None;
        }
        let resolved = self.resolve(written);
        if resolved.is_dir() {
            self.error(
                path,
                format!("{} is a folder, not a database file", resolved.display()),
            );
            return None;
        }
        // A missing file is fine here: the side is offline until it appears.
        Some(resolved)
    }

    fn server(
        &mut self,
        path: &str,
        kind: ConnectorKind,
        url: Option<String>,
        password_env: Option<String>,
    ) -> Option<ServerConnection> {
        let (name, schemes): (&str, &[&str]) = match kind {
            ConnectorKind::Postgres => ("postgres", &["postgres", "postgresql"]),
            _ => ("mariadb", &["mariadb", "mysql"]),
        };
        let Some(url) = url else {
            self.error(
                path,
                format!(
                    "the {name} connector needs `url` (such as `{}://user@host:port/database`; \
                     the password goes in the variable named by `password_env`)",
                    schemes[0]
                ),
            );
            return None;
        };
        let url_path = format!("{path}.url");
        let scheme_ok = url
            .split_once("://")
            .is_some_and(|(scheme, _)| schemes.contains(&scheme));
        if !scheme_ok {
            self.error(
                &url_path,
                format!(
                    "a {name} URL starts with {}",
                    schemes
                        .iter()
                        .map(|s| format!("`{s}://`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            );
        }
        let password = match password_env {
            None => Some(None),
            Some(var) => {
                let var_path = format!("{path}.password_env");
                if !is_env_var_name(&var) {
                    self.error(
                        &var_path,
                        format!(
                            "{var:?} is not an environment variable name \
                             (letters, digits and `_`, not starting with a digit)"
                        ),
                    );
                    None
                } else if !(self.env_is_set)(&var) {
                    self.error(&var_path, format!("environment variable {var} is not set"));
                    None
                } else {
                    Some(Some(SecretEnv { var }))
                }
            }
        };
        if !scheme_ok {
            return None;
        }
        Some(ServerConnection {
            url,
            password: password?,
        })
    }

    /// Two sides on one database would sync a database with itself.
    fn distinct_databases(&mut self, sides: &[Option<SidePlan>]) {
        let mut seen: Vec<(PathBuf, &str)> = Vec::new();
        for side in sides.iter().flatten() {
            let Connector::Sqlite { path } = &side.connector else {
                continue;
            };
            let identity = path.canonicalize().unwrap_or_else(|_| path.clone());
            if let Some((_, first)) = seen.iter().find(|(other, _)| *other == identity) {
                let message = format!(
                    "side `{first}` uses the same database file {}; \
                     each side must be a different database",
                    path.display()
                );
                self.error(&format!("{}.path", join("sides", &side.name)), message);
            } else {
                seen.push((identity, &side.name));
            }
        }
    }

    // ---- maps ----

    fn map(
        &mut self,
        entry: Entry<MapFile>,
        side_names: &[String],
        plugins: Option<&PluginsDir>,
    ) -> Option<MapPlan> {
        let path = map_path(&entry.name);
        let key = |key: &str| format!("{path}.{key}");
        let name_ok = self.name(&path, "map", &entry.name);
        let map = entry.value?;

        let plugin = self.plugin(&key("plugin"), map.plugin, plugins);
        let erp = self.endpoint(&key("erp"), map.erp, side_names);
        let crm = self.endpoint(&key("crm"), map.crm, side_names);
        if let (Some(erp), Some(crm)) = (&erp, &crm)
            && erp.side == crm.side
        {
            self.error(
                &key("crm.side"),
                format!(
                    "the erp and crm entities are both on side `{}`; a map links two different sides",
                    crm.side
                ),
            );
        }
        let direction = match map.direction.unwrap_or(DirectionFile::Both) {
            DirectionFile::Both => Direction::Both,
            DirectionFile::ToCrm => Direction::ToCrm,
            DirectionFile::ToErp => Direction::ToErp,
        };
        let side_of = |endpoint: &Option<MapEndpoint>| {
            endpoint.as_ref().map(|endpoint| endpoint.side.clone())
        };
        let role_sides = [side_of(&erp), side_of(&crm)];
        let conflict = match map.conflict {
            Some(conflict) => self.conflict(&key("conflict"), conflict, &role_sides),
            None => match direction {
                Direction::Both => {
                    self.error(
                        &path,
                        "a two-way map needs a conflict policy, such as \
                         `conflict = { policy = \"side-wins\", winner = \"erp\" }` \
                         (policies: field-ownership, side-wins, newer-wins, manual)",
                    );
                    None
                }
                // A one-way map's source is the system of record for its rows.
                Direction::ToCrm => Some(ConflictPolicy::SideWins { winner: Side::Erp }),
                Direction::ToErp => Some(ConflictPolicy::SideWins { winner: Side::Crm }),
            },
        };
        let initial_sync = match map.initial_sync {
            None => Some(InitialSync::default()),
            Some(initial_sync) => match initial_sync.master {
                None => Some(InitialSync::default()),
                Some(master) => {
                    let master_path = key("initial_sync.master");
                    let master = self.role(&master_path, &master, &role_sides);
                    match (master, one_way_source(direction)) {
                        (Some(master), Some(source)) if master != source => {
                            self.error(
                                &master_path,
                                format!(
                                    "a {} map never writes to {master}, so {master} cannot be \
                                     the master for initial sync; use {source} or leave it out",
                                    direction.as_str()
                                ),
                            );
                            None
                        }
                        (master, _) => master.map(|master| InitialSync {
                            master: Some(master),
                        }),
                    }
                }
            },
        };
        let ordering = match map.ordering.unwrap_or(OrderingFile::PerKey) {
            OrderingFile::PerKey => OrderingMode::PerKey,
            OrderingFile::Strict => OrderingMode::Strict,
        };
        let batch_size = match map.batch_size {
            None => Some(DEFAULT_BATCH_SIZE),
            Some(size) => match u32::try_from(size) {
                Ok(size) if (1..=MAX_BATCH_SIZE).contains(&size) => Some(size),
                _ => {
                    self.error(
                        &key("batch_size"),
                        format!("must be between 1 and {MAX_BATCH_SIZE}, not {size}"),
                    );
                    None
                }
            },
        };
        let plugin_config = match map.config {
            None => Some(serde_json::Map::new()),
            Some(table) => self.json_table(&key("config"), table),
        };

        if !name_ok {
            return None;
        }
        Some(MapPlan {
            name: entry.name,
            plugin: plugin?,
            erp: erp?,
            crm: crm?,
            direction,
            depends_on: map.depends_on,
            conflict: conflict?,
            initial_sync: initial_sync?,
            ordering,
            batch_size: batch_size?,
            enabled: map.enabled.unwrap_or(true),
            plugin_config: plugin_config?,
        })
    }

    fn plugin(&mut self, path: &str, file: String, plugins: Option<&PluginsDir>) -> Option<String> {
        let problem = if file.is_empty() {
            Some("is empty; name a plugin file in plugins_dir")
        } else if file.contains(['/', '\\']) || Path::new(&file).is_absolute() {
            Some("must be a file name inside plugins_dir, without folders")
        } else if file == "." || file == ".." {
            Some("must name a file inside plugins_dir")
        } else if file.contains(['\0', ':']) || file.chars().any(char::is_control) {
            Some("is not a usable file name")
        } else {
            None
        };
        if let Some(problem) = problem {
            self.error(path, format!("{file:?} {problem}"));
            return None;
        }
        let plugins = plugins?;
        match plugins.dir.metadata(&file) {
            Ok(metadata) if metadata.is_file() => Some(file),
            Ok(_) => {
                self.error(
                    path,
                    format!("{file:?} in {} is not a file", plugins.path.display()),
                );
                None
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let available = plugin_files(&plugins.dir);
                let hint = match suggest(&file, available.iter().map(String::as_str)) {
                    Some(close) => format!(" (did you mean {close:?}?)"),
                    None if available.is_empty() => " (the folder holds no .wasm files)".to_owned(),
                    None => format!(" (plugins there: {})", list(&available, 10)),
                };
                self.error(
                    path,
                    format!(
                        "plugin file {file:?} not found in {}{hint}",
                        plugins.path.display()
                    ),
                );
                None
            }
            Err(error) => {
                self.error(
                    path,
                    format!(
                        "cannot read plugin file {file:?} in {}: {error}",
                        plugins.path.display()
                    ),
                );
                None
            }
        }
    }

    fn endpoint(
        &mut self,
        path: &str,
        endpoint: EndpointFile,
        side_names: &[String],
    ) -> Option<MapEndpoint> {
        let mut ok = true;
        if !side_names.contains(&endpoint.side) {
            let hint = suggest(&endpoint.side, side_names.iter().map(String::as_str))
                .map(|close| format!("did you mean {close:?}? "))
                .unwrap_or_default();
            self.error(
                &format!("{path}.side"),
                format!(
                    "unknown side {:?} ({hint}sides: {})",
                    endpoint.side,
                    list(side_names, usize::MAX)
                ),
            );
            ok = false;
        }
        ok &= self.identifier(&format!("{path}.entity"), "entity", &endpoint.entity);
        let key_path = format!("{path}.key");
        if endpoint.key.is_empty() {
            self.error(
                &key_path,
                "is empty; list the fields that identify a row (the integration key)",
            );
            ok = false;
        }
        for (index, field) in endpoint.key.iter().enumerate() {
            let field_path = format!("{key_path}[{index}]");
            ok &= self.identifier(&field_path, "key field", field);
            if let Some(first) = endpoint.key[..index]
                .iter()
                .position(|earlier| earlier.eq_ignore_ascii_case(field))
            {
                self.error(
                    &field_path,
                    format!("duplicate key field {field:?} (also key[{first}])"),
                );
                ok = false;
            }
        }
        ok.then_some(MapEndpoint {
            side: endpoint.side,
            entity: endpoint.entity,
            key: endpoint.key,
        })
    }

    fn conflict(
        &mut self,
        path: &str,
        conflict: ConflictFile,
        role_sides: &[Option<String>; 2],
    ) -> Option<ConflictPolicy> {
        let policy = conflict.policy;
        let (policy_name, takes): (&str, &[&str]) = match policy {
            PolicyFile::FieldOwnership => {
                ("field-ownership", &["erp_fields", "crm_fields", "others"])
            }
            PolicyFile::SideWins => ("side-wins", &["winner"]),
            PolicyFile::NewerWins => ("newer-wins", &["erp_column", "crm_column", "tie"]),
            PolicyFile::Manual => ("manual", &[]),
        };
        let present = [
            ("winner", conflict.winner.is_some()),
            ("erp_fields", conflict.erp_fields.is_some()),
            ("crm_fields", conflict.crm_fields.is_some()),
            ("others", conflict.others.is_some()),
            ("erp_column", conflict.erp_column.is_some()),
            ("crm_column", conflict.crm_column.is_some()),
            ("tie", conflict.tie.is_some()),
        ];
        let mut ok = true;
        for (key, is_present) in present {
            if is_present && !takes.contains(&key) {
                let takes = if takes.is_empty() {
                    "it takes no settings".to_owned()
                } else {
                    format!(
                        "it takes {}",
                        takes
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                self.error(
                    &format!("{path}.{key}"),
                    format!("`{key}` does not apply to the {policy_name} policy ({takes})"),
                );
                ok = false;
            }
        }
        let key = |key: &str| format!("{path}.{key}");
        let policy = match policy {
            PolicyFile::Manual => Some(ConflictPolicy::Manual),
            PolicyFile::SideWins => match conflict.winner {
                None => {
                    self.error(
                        path,
                        "the side-wins policy needs `winner = \"erp\"` or `winner = \"crm\"`",
                    );
                    None
                }
                Some(winner) => self
                    .role(&key("winner"), &winner, role_sides)
                    .map(|winner| ConflictPolicy::SideWins { winner }),
            },
            PolicyFile::FieldOwnership => {
                let erp_fields = conflict.erp_fields.unwrap_or_default();
                let crm_fields = conflict.crm_fields.unwrap_or_default();
                if erp_fields.is_empty() && crm_fields.is_empty() {
                    self.error(
                        path,
                        "the field-ownership policy needs `erp_fields` (ERP columns the ERP \
                         owns) and/or `crm_fields` (CRM columns the CRM owns)",
                    );
                    ok = false;
                }
                ok &= self.field_list(&key("erp_fields"), &erp_fields);
                ok &= self.field_list(&key("crm_fields"), &crm_fields);
                let others = match conflict.others {
                    None => Some(Resolution::Manual),
                    Some(others) => self.resolution(&key("others"), &others, role_sides),
                };
                others.map(|others| ConflictPolicy::FieldOwnership {
                    erp_fields,
                    crm_fields,
                    others,
                })
            }
            PolicyFile::NewerWins => {
                let column = |this: &mut Self, name: &str, value: Option<String>| match value {
                    None => {
                        this.error(
                            path,
                            format!(
                                "the newer-wins policy needs `{name}`, the version or \
                                 timestamp column compared on that side"
                            ),
                        );
                        None
                    }
                    Some(value) => this
                        .identifier(&key(name), "column", &value)
                        .then_some(value),
                };
                let erp_column = column(self, "erp_column", conflict.erp_column);
                let crm_column = column(self, "crm_column", conflict.crm_column);
                let tie = match conflict.tie {
                    None => Some(Resolution::Manual),
                    Some(tie) => self.resolution(&key("tie"), &tie, role_sides),
                };
                match (erp_column, crm_column, tie) {
                    (Some(erp_column), Some(crm_column), Some(tie)) => {
                        Some(ConflictPolicy::NewerWins {
                            erp_column,
                            crm_column,
                            tie,
                        })
                    }
                    _ => None,
                }
            }
        };
        policy.filter(|_| ok)
    }

    fn field_list(&mut self, path: &str, fields: &[String]) -> bool {
        let mut ok = true;
        for (index, field) in fields.iter().enumerate() {
            let field_path = format!("{path}[{index}]");
            ok &= self.identifier(&field_path, "field", field);
            if let Some(first) = fields[..index]
                .iter()
                .position(|earlier| earlier.eq_ignore_ascii_case(field))
            {
                self.error(
                    &field_path,
                    format!("{field:?} is listed twice (also [{first}])"),
                );
                ok = false;
            }
        }
        ok
    }

    /// `erp` or `crm`.
    fn role(
        &mut self,
        path: &str,
        written: &str,
        role_sides: &[Option<String>; 2],
    ) -> Option<Side> {
        match written {
            "erp" => Some(Side::Erp),
            "crm" => Some(Side::Crm),
            _ => {
                self.error(
                    path,
                    format!(
                        "unknown side {written:?} (sides: erp, crm){}",
                        role_hint(written, role_sides)
                    ),
                );
                None
            }
        }
    }

    /// `erp`, `crm` or `manual`.
    fn resolution(
        &mut self,
        path: &str,
        written: &str,
        role_sides: &[Option<String>; 2],
    ) -> Option<Resolution> {
        match written {
            "erp" => Some(Resolution::Wins(Side::Erp)),
            "crm" => Some(Resolution::Wins(Side::Crm)),
            "manual" => Some(Resolution::Manual),
            _ => {
                self.error(
                    path,
                    format!(
                        "unknown choice {written:?} (erp, crm or manual){}",
                        role_hint(written, role_sides)
                    ),
                );
                None
            }
        }
    }

    /// The indexes of the maps `entry` depends on, after checking each name.
    fn dependencies(
        &mut self,
        index: usize,
        entry: &Entry<MapFile>,
        map_names: &[String],
        enabled: &[bool],
    ) -> Vec<usize> {
        let Some(map) = &entry.value else {
            return Vec::new();
        };
        let path = format!("{}.depends_on", map_path(&entry.name));
        let mut parents = Vec::new();
        for (at, name) in map.depends_on.iter().enumerate() {
            let item = format!("{path}[{at}]");
            let Some(parent) = map_names.iter().position(|known| known == name) else {
                let hint = match suggest(name, map_names.iter().map(String::as_str)) {
                    Some(close) => format!(" (did you mean {close:?}?)"),
                    None => format!(" (maps: {})", list(map_names, 20)),
                };
                self.error(&item, format!("unknown map {name:?}{hint}"));
                continue;
            };
            if parent == index {
                self.error(&item, "a map cannot depend on itself");
            } else if parents.contains(&parent) {
                self.error(&item, format!("{name:?} is listed twice"));
            } else {
                if enabled[index] && !enabled[parent] {
                    self.error(
                        &item,
                        format!(
                            "depends on map {name:?}, which is disabled; enable it, or \
                             disable this map too"
                        ),
                    );
                }
                parents.push(parent);
            }
        }
        parents
    }

    fn report_cycles(&mut self, cycles: &[Vec<usize>], map_names: &[String]) {
        for cycle in cycles {
            let names: Vec<&str> = cycle
                .iter()
                .chain(cycle.first())
                .map(|&index| map_names[index].as_str())
                .collect();
            self.error(
                &format!("{}.depends_on", map_path(names[0])),
                format!(
                    "dependency cycle: {} (each map depends on the next; \
                     break the cycle by removing one of these `depends_on` entries)",
                    names.join(" -> ")
                ),
            );
        }
    }

    /// Two maps linking the same pair of entities would write every row twice.
    fn distinct_entity_pairs(&mut self, maps: &[Option<MapPlan>]) {
        let mut seen: HashMap<(String, String, String, String), &str> = HashMap::new();
        for map in maps.iter().flatten() {
            let pair = (
                map.erp.side.clone(),
                map.erp.entity.to_ascii_lowercase(),
                map.crm.side.clone(),
                map.crm.entity.to_ascii_lowercase(),
            );
            match seen.get(&pair) {
                Some(first) => {
                    let message = format!(
                        "map `{first}` already links {} `{}` with {} `{}`; \
                         one map per pair of entities",
                        map.erp.side, map.erp.entity, map.crm.side, map.crm.entity
                    );
                    self.error(&format!("{}.erp.entity", map_path(&map.name)), message);
                }
                None => {
                    seen.insert(pair, &map.name);
                }
            }
        }
    }

    // ---- small checks ----

    /// Map and side names appear in commands, URLs, metrics and logs: keep them plain.
    fn name(&mut self, path: &str, kind: &str, name: &str) -> bool {
        let plain = name.len() <= 64
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !plain {
            self.error(
                path,
                format!(
                    "{kind} name {name:?} must be 1 to 64 ASCII letters, digits, `-` or `_`, \
                     starting with a letter or digit"
                ),
            );
        }
        plain
    }

    /// An entity or column name: not empty, no stray spaces, no control characters.
    fn identifier(&mut self, path: &str, what: &str, value: &str) -> bool {
        let problem = if value.trim().is_empty() {
            Some(format!("{what} name is empty"))
        } else if value.trim() != value {
            Some(format!(
                "{what} name {value:?} has leading or trailing spaces"
            ))
        } else if value.chars().any(char::is_control) {
            Some(format!("{what} name {value:?} contains control characters"))
        } else {
            None
        };
        if let Some(problem) = &problem {
            self.error(path, problem.clone());
        }
        problem.is_none()
    }

    fn json_table(
        &mut self,
        path: &str,
        table: toml::Table,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let mut ok = true;
        let mut object = serde_json::Map::new();
        for (key, value) in table {
            match self.json_value(&join(path, &key), value) {
                Some(value) => {
                    object.insert(key, value);
                }
                None => ok = false,
            }
        }
        ok.then_some(object)
    }

    fn json_value(&mut self, path: &str, value: toml::Value) -> Option<serde_json::Value> {
        use serde_json::Value as Json;
        Some(match value {
            toml::Value::String(text) => Json::String(text),
            toml::Value::Integer(integer) => Json::from(integer),
            toml::Value::Boolean(boolean) => Json::Bool(boolean),
            // A plugin sees TOML dates and times as RFC 3339 text.
            toml::Value::Datetime(datetime) => Json::String(datetime.to_string()),
            toml::Value::Float(float) => match serde_json::Number::from_f64(float) {
                Some(number) => Json::Number(number),
                None => {
                    self.error(
                        path,
                        format!("{float} has no JSON form, so a plugin cannot be given it"),
                    );
                    return None;
                }
            },
            toml::Value::Array(items) => {
                let mut ok = true;
                let mut array = Vec::with_capacity(items.len());
                for (index, item) in items.into_iter().enumerate() {
                    match self.json_value(&format!("{path}[{index}]"), item) {
                        Some(item) => array.push(item),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                Json::Array(array)
            }
            toml::Value::Table(table) => Json::Object(self.json_table(path, table)?),
        })
    }
}

/// `maps.NAME`.
fn map_path(name: &str) -> String {
    join("maps", name)
}

/// The side a one-way map reads from.
fn one_way_source(direction: Direction) -> Option<Side> {
    match direction {
        Direction::ToCrm => Some(Side::Erp),
        Direction::ToErp => Some(Side::Crm),
        Direction::Both => None,
    }
}

/// When a role was given by the configured side's name, say which role that side plays.
fn role_hint(written: &str, role_sides: &[Option<String>; 2]) -> String {
    for (role, side) in [Side::Erp, Side::Crm].into_iter().zip(role_sides) {
        if side.as_deref() == Some(written) {
            return format!("; side `{written}` plays this map's {role} role: write \"{role}\"");
        }
    }
    String::new()
}

fn is_env_var_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The `.wasm` files in the plugins folder, sorted.
fn plugin_files(dir: &Dir) -> Vec<String> {
    let mut names: Vec<String> = dir
        .entries()
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.file_name().into_string().ok())
                .filter(|name| name.ends_with(".wasm"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `a, b, c` with at most `most` items, then `...`.
fn list(items: &[String], most: usize) -> String {
    let mut text = items
        .iter()
        .take(most)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > most {
        text.push_str(", ...");
    }
    if text.is_empty() {
        text.push_str("none");
    }
    text
}

/// The candidate closest to `written`, if it is close enough to be a typo.
fn suggest<'c>(written: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .map(|candidate| (edit_distance(written, candidate), candidate))
        .filter(|(distance, candidate)| {
            *distance > 0 && *distance <= (candidate.chars().count() / 3).clamp(1, 3)
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}
