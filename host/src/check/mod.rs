//! Health checks of a deployment, run by `dualwrite check` before (or instead of)
//! starting it: the config, every plugin, every side's connectivity, permissions and
//! capture prerequisites (PostgreSQL's `wal_level` and REPLICATION, MariaDB's ROW
//! binary log and replication grants), and every map's tables, columns (present, with a
//! type that holds the kind of value the plugin maps) and keys on both sides.
//!
//! Each problem is a [`Finding`] with a stable code (greppable, documented in
//! [`CODES`]), a one-line message naming what is wrong and where, and a fix. The checks
//! change nothing: no capture is installed, no state is written, no row is touched.
//! They go on after a problem where they can, so one run lists every problem (a map
//! whose plugin does not load still has its tables checked against what the config
//! says).

use std::sync::Arc;

use serde::Serialize;

use crate::apply::ApplyBatch;
use crate::apply::mysql::MysqlWriter;
use crate::apply::postgres::PostgresWriter;
use crate::apply::sqlite::SqliteWriter;
use crate::capture::mysql::{MysqlCapture, MysqlOptions};
use crate::capture::postgres::{PostgresOptions, check_capture_prerequisites};
use crate::capture::sqlite::SqliteOptions;
use crate::capture::{SchemaError, SideError, TableSchema};
use crate::change::{Descriptor, Direction, Side, ValueKind};
use crate::config::{ConfigErrors, Connector, MapPlan, Plan};
use crate::plugin::{LoadError, NoLookups, PluginRuntime, StartError};

/// Every code a check can report, with what it means.
pub const CODES: &[(&str, &str)] = &[
    (
        "config.invalid",
        "the config file has an error (file, line and key are named)",
    ),
    (
        "config.dependency_cycle",
        "maps depend on each other in a cycle",
    ),
    (
        "config.dependency_disabled",
        "an enabled map depends on a disabled one",
    ),
    (
        "plugin.unreadable",
        "the plugin file is missing or cannot be read",
    ),
    ("plugin.invalid", "the file is not a valid Wasm component"),
    (
        "plugin.world",
        "the component does not implement a dualwrite:table-map world this host runs",
    ),
    ("plugin.config", "the plugin refused the map's config"),
    (
        "plugin.failed",
        "the plugin trapped or described itself wrongly when started",
    ),
    (
        "map.entity",
        "the plugin maps another table than the config names",
    ),
    (
        "map.key_undeclared",
        "a key column is not a field the plugin declares",
    ),
    ("side.unreachable", "the side's database cannot be reached"),
    ("schema.table_missing", "a mapped table does not exist"),
    (
        "schema.columns_missing",
        "a mapped table lacks columns the plugin maps",
    ),
    (
        "schema.key_not_unique",
        "the map's key is not a primary key or unique index",
    ),
    (
        "schema.generated_column",
        "the map writes a column the database computes",
    ),
    (
        "schema.type_mismatch",
        "a mapped column's type cannot hold the kind of value the plugin maps to it",
    ),
    (
        "schema.lossy_column",
        "a column the map copies into keeps fewer digits, fraction digits or characters than the column it copies from",
    ),
    (
        "schema.unsupported",
        "the table cannot be captured or written (a view, ...)",
    ),
    (
        "pg.*",
        "the PostgreSQL server refused: pg.bad_credentials, pg.missing_privilege, pg.wal_level, pg.no_database, ...",
    ),
    (
        "mysql.*",
        "the MariaDB/MySQL server refused: mysql.bad_credentials, mysql.missing_privilege, mysql.no_database, mysql.binlog_off, mysql.binlog_format, mysql.binlog_row_image, ...",
    ),
];

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable code, see [`CODES`].
    pub code: String,
    /// What it concerns: `config`, `side erp`, `map customers`, ...
    pub subject: String,
    /// What is wrong, in one line.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl Finding {
    fn new(
        code: impl Into<String>,
        subject: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            code: code.into(),
            subject: subject.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl std::fmt::Display for Finding {
    /// `[code] subject: message` and the fix on a second line, as `dualwrite check`
    /// prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] {}: {}\n    fix: {}",
            self.code, self.subject, self.message, self.fix
        )
    }
}

/// The findings of a config that does not parse: one per error.
pub fn config_findings(errors: &ConfigErrors) -> Vec<Finding> {
    errors
        .errors()
        .iter()
        .map(|error| {
            let (code, fix) = if error.message.contains("dependency cycle") {
                (
                    "config.dependency_cycle",
                    "remove one of the depends_on entries on the cycle",
                )
            } else if error.message.contains("which is disabled") {
                (
                    "config.dependency_disabled",
                    "enable the map it depends on, or disable this one too",
                )
            } else {
                ("config.invalid", "edit the file at the place named")
            };
            Finding::new(code, "config", error.to_string(), fix)
        })
        .collect()
}

/// Runs every check of `plan` (a config that parsed); an empty list is a clean bill.
pub fn run(plan: &Plan, runtime: &PluginRuntime) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut writers: Vec<(String, Option<Box<dyn ApplyBatch>>)> = Vec::new();
    for side in &plan.sides {
        let subject = format!("side {}", side.name);
        let writer: Option<Box<dyn ApplyBatch>> = match &side.connector {
            Connector::Sqlite { path } => {
                if path.exists() {
                    match SqliteWriter::open(path, SqliteOptions::default()) {
                        Ok(writer) => Some(Box::new(writer)),
                        Err(error) => {
                            findings.push(side_finding(&subject, &error));
                            None
                        }
                    }
                } else {
                    findings.push(Finding::new(
                        "side.unreachable",
                        &subject,
                        format!("the SQLite file {} does not exist", path.display()),
                        "create the database (with its tables) or fix `path`",
                    ));
                    None
                }
            }
            Connector::Postgres(server) => {
                let mut options = PostgresOptions::new(server.url.clone(), &side.name);
                options.password = read_password(server, &subject, &mut findings);
                match check_capture_prerequisites(&options) {
                    Ok(()) => Some(Box::new(PostgresWriter::open(options))),
                    Err(error) => {
                        findings.push(side_finding(&subject, &error));
                        None
                    }
                }
            }
            Connector::MariaDb(server) => {
                let mut options = MysqlOptions::new(server.url.clone(), &side.name);
                options.password = read_password(server, &subject, &mut findings);
                match MysqlCapture::open(options.clone()).check_prerequisites() {
                    Ok(()) => Some(Box::new(MysqlWriter::open(options))),
                    Err(error) => {
                        findings.push(side_finding(&subject, &error));
                        None
                    }
                }
            }
        };
        writers.push((side.name.clone(), writer));
    }

    let plugins_dir =
        match cap_std::fs::Dir::open_ambient_dir(&plan.plugins_dir, cap_std::ambient_authority()) {
            Ok(dir) => Some(dir),
            Err(error) => {
                findings.push(Finding::new(
                    "plugin.unreadable",
                    "config",
                    format!(
                        "the plugins folder {} cannot be opened: {error}",
                        plan.plugins_dir.display()
                    ),
                    "fix `plugins_dir` or create the folder",
                ));
                None
            }
        };
    for map in plan.maps.iter().filter(|map| map.enabled) {
        let subject = format!("map {}", map.name);
        // The plugin: loads, takes its config, describes the tables the config names.
        let descriptor = plugins_dir.as_ref().and_then(|dir| {
            let plugin = match runtime.load(dir, &map.plugin) {
                Ok(plugin) => plugin,
                Err(error) => {
                    findings.push(load_finding(&subject, &error));
                    return None;
                }
            };
            match plugin.start(&map.plugin_config_json(), Arc::new(NoLookups)) {
                Ok(runner) => Some(runner.descriptor().clone()),
                Err(error) => {
                    findings.push(start_finding(&subject, &error));
                    None
                }
            }
        });
        let mut schemas: Vec<TableSchema> = Vec::new();
        for role in [Side::Erp, Side::Crm] {
            let endpoint = map.endpoint(role);
            let Some((_, Some(writer))) =
                writers.iter_mut().find(|(name, _)| *name == endpoint.side)
            else {
                // Without the side's tables, what can be checked is the plugin's own view.
                if let Some(descriptor) = &descriptor {
                    findings.extend(plugin_fit_findings(map, descriptor, role));
                }
                continue;
            };
            match writer.table_schema(&endpoint.entity) {
                Ok(schema) => {
                    findings.extend(map_fit_findings(map, descriptor.as_ref(), role, &schema));
                    schemas.push(schema);
                }
                Err(error) => {
                    if let Some(descriptor) = &descriptor {
                        findings.extend(plugin_fit_findings(map, descriptor, role));
                    }
                    findings.push(side_finding(&format!("{subject}, {role} side"), &error));
                }
            }
        }
        if let (Some(descriptor), [erp, crm]) = (&descriptor, schemas.as_slice()) {
            findings.extend(capacity_findings(map, descriptor, erp, crm));
        }
    }
    findings
}

/// The columns `map` copies from one side to the other where the target's declared type
/// keeps less than the source's can hold (`numeric(20,4)` into `numeric(10,2)`,
/// `varchar(50)` into `char(5)`): such values would be altered, so the map is refused
/// before it runs. Only copies (a value map or a lookup sends other values) between
/// columns whose limits are both declared; a value beyond a limit the schema does not
/// state is refused at write time instead ([`crate::apply::check_stored`]).
pub fn capacity_findings(
    map: &MapPlan,
    descriptor: &Descriptor,
    erp: &TableSchema,
    crm: &TableSchema,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for mapping in &descriptor.mappings {
        let (Some(erp_field), Some(crm_field)) = (&mapping.erp_field, &mapping.crm_field) else {
            continue;
        };
        if !mapping.transform.starts_with("copy") {
            continue;
        }
        let (Some(erp_column), Some(crm_column)) = (erp.column(erp_field), crm.column(crm_field))
        else {
            continue;
        };
        let flows = [
            (
                Side::Erp,
                Direction::ToCrm,
                erp_column,
                crm_column,
                &crm.table,
            ),
            (
                Side::Crm,
                Direction::ToErp,
                crm_column,
                erp_column,
                &erp.table,
            ),
        ];
        for (source, towards, from, to, table) in flows {
            if !map.flows_from(source)
                || !(mapping.direction == towards || mapping.direction == Direction::Both)
            {
                continue;
            }
            if let Some(why) = to.capacity.narrower_than(&from.capacity) {
                findings.push(Finding::new(
                    "schema.lossy_column",
                    format!("map {}, {} side", map.name, source.other()),
                    format!(
                        "{table}.{} ({}) cannot hold every value of {} ({}) the map copies \
                         into it: {why}",
                        to.name, to.declared_type, from.name, from.declared_type
                    ),
                    "widen the target column to hold what the source column holds, or \
                     narrow the source column",
                ));
            }
        }
    }
    findings
}

/// What does not fit between `map`'s plugin (as it describes itself) and its config on
/// the `role` side: another table than the config names, key columns the plugin does
/// not declare.
fn plugin_fit_findings(map: &MapPlan, descriptor: &Descriptor, role: Side) -> Vec<Finding> {
    let subject = format!("map {}", map.name);
    let endpoint = map.endpoint(role);
    let spec = descriptor.entity(role);
    let mut findings = Vec::new();
    if spec.entity != endpoint.entity {
        findings.push(Finding::new(
            "map.entity",
            &subject,
            format!(
                "the plugin maps {} on the {role} side, the config says {}",
                spec.entity, endpoint.entity
            ),
            "name the plugin's table in the map's config, or use the plugin made for this table",
        ));
    }
    for key in &endpoint.key {
        if spec.id_of(key).is_none() {
            findings.push(Finding::new(
                "map.key_undeclared",
                &subject,
                format!(
                    "key column {key} of {} is not a field the plugin declares",
                    endpoint.entity
                ),
                "use the plugin's key fields in the map's `key` (dualwrite plugin check FILE lists them)",
            ));
        }
    }
    findings
}

/// Everything that keeps `map` from running on its `role` side's table `schema`, with
/// the plugin's `descriptor` where it started: the plugin's fit to the config
/// ([`plugin_fit_findings`]), the key and the columns the plugin maps on the table
/// (present, not generated where the map writes, of a type that holds the field's kind).
/// `dualwrite check` reports these, and the engine refuses to start a map with any
/// (`run` refuses what `check` refuses).
pub fn map_fit_findings(
    map: &MapPlan,
    descriptor: Option<&Descriptor>,
    role: Side,
    schema: &TableSchema,
) -> Vec<Finding> {
    let subject = format!("map {}", map.name);
    let endpoint = map.endpoint(role);
    let mut findings = descriptor
        .map(|descriptor| plugin_fit_findings(map, descriptor, role))
        .unwrap_or_default();
    let fields: Vec<String> = match descriptor {
        Some(descriptor) => descriptor
            .entity(role)
            .fields
            .iter()
            .map(|field| field.name.clone())
            .collect(),
        None => endpoint.key.clone(),
    };
    if let Err(error) = schema.check_map(&endpoint.key, &fields, map.flows_from(role.other())) {
        findings.push(side_finding(
            &format!("{subject}, {role} side"),
            &SideError::Schema(error),
        ));
    }
    if let Some(spec) = descriptor
        .map(|descriptor| descriptor.entity(role))
        .filter(|spec| spec.entity == endpoint.entity)
    {
        let mismatched: Vec<String> = spec
            .fields
            .iter()
            .filter_map(|field| {
                let column = schema.column(&field.name)?;
                (!kinds_compatible(field.kind, column.kind)).then(|| {
                    format!(
                        "{} is {} ({}), the plugin maps {} values to it",
                        field.name,
                        column.kind.as_str(),
                        column.declared_type,
                        field.kind.as_str()
                    )
                })
            })
            .collect();
        if !mismatched.is_empty() {
            findings.push(Finding::new(
                "schema.type_mismatch",
                format!("{subject}, {role} side"),
                format!("{}: {}", endpoint.entity, mismatched.join("; ")),
                "change the column's type to one that holds the field's kind \
                 (dualwrite plugin check FILE lists the kinds), or map another column",
            ));
        }
    }
    findings
}

/// Whether a column of kind `column` holds every value of kind `field` and gives it
/// back unchanged: the same kind, a column or field of no declared kind, or integers in
/// an exact decimal column.
fn kinds_compatible(field: ValueKind, column: ValueKind) -> bool {
    field == column
        || field == ValueKind::Any
        || column == ValueKind::Any
        || (field == ValueKind::Integer && column == ValueKind::Decimal)
}

/// The side's password from its environment variable, if it names one; a variable that
/// is not set is a finding.
fn read_password(
    server: &crate::config::ServerConnection,
    subject: &str,
    findings: &mut Vec<Finding>,
) -> Option<crate::config::Secret> {
    let secret = server.password.as_ref()?;
    match secret.read() {
        Ok(password) => Some(password),
        Err(error) => {
            findings.push(Finding::new(
                "config.invalid",
                subject,
                format!("reading the password from ${}: {error}", secret.var),
                format!("set the environment variable {}", secret.var),
            ));
            None
        }
    }
}

/// The finding of a side's error.
fn side_finding(subject: &str, error: &SideError) -> Finding {
    let (code, fix) = match error {
        SideError::Unavailable { .. } => (
            "side.unreachable".to_owned(),
            "start the database server or fix the side's path or url".to_owned(),
        ),
        SideError::Refused { code, .. } => (
            (*code).to_owned(),
            "the message says what the server needs".to_owned(),
        ),
        SideError::Schema(schema) => {
            let (code, fix) = schema_code(schema);
            (code.to_owned(), fix.to_owned())
        }
        SideError::Rejected { .. } | SideError::Unreadable { .. } => (
            "side.unreachable".to_owned(),
            "look at the database's own log".to_owned(),
        ),
    };
    Finding::new(code, subject, error.to_string(), fix)
}

fn schema_code(error: &SchemaError) -> (&'static str, &'static str) {
    match error {
        SchemaError::MissingTable { .. } => (
            "schema.table_missing",
            "create the table, or fix the entity name in the map's config",
        ),
        SchemaError::MissingColumns { .. } => (
            "schema.columns_missing",
            "add the columns to the table, or map fewer fields",
        ),
        SchemaError::KeyNotUnique { .. } | SchemaError::EmptyKey { .. } => (
            "schema.key_not_unique",
            "declare a PRIMARY KEY or UNIQUE index on exactly the map's key columns",
        ),
        SchemaError::GeneratedColumn { .. } => (
            "schema.generated_column",
            "do not map the generated column to this side",
        ),
        SchemaError::Unsupported { .. } => (
            "schema.unsupported",
            "map a table (not a view) that the connector supports",
        ),
    }
}

fn load_finding(subject: &str, error: &LoadError) -> Finding {
    let (code, fix) = match error {
        LoadError::Read { .. } => (
            "plugin.unreadable",
            "put the plugin file into the plugins folder, or fix the map's `plugin`",
        ),
        LoadError::WrongWorld { .. } => (
            "plugin.world",
            "rebuild the plugin against this host's wit/table-map.wit",
        ),
        _ => (
            "plugin.invalid",
            "build the plugin as a component (dualwrite plugin check FILE says what is wrong)",
        ),
    };
    Finding::new(code, subject, error.to_string(), fix)
}

fn start_finding(subject: &str, error: &StartError) -> Finding {
    let (code, fix) = match error {
        StartError::Config { .. } => (
            "plugin.config",
            "fix the map's [maps.NAME.config] at the path named",
        ),
        _ => (
            "plugin.failed",
            "run dualwrite plugin check FILE --config CONFIG.json to see the plugin fail",
        ),
    };
    Finding::new(code, subject, error.to_string(), fix)
}
