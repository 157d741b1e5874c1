//! One connection to a PostgreSQL side: connecting (lazily, again after a fault), the
//! session settings the text codec relies on, table introspection with a cache, and
//! telling apart why the server failed (unreachable, refused, or a rejected statement).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, NoTls};

use super::values::{fidelity_of_type, kind_of_type};
use crate::capture::{Capacity, ColumnInfo, SchemaError, SideError, TableSchema};
use crate::config::Secret;

/// How the PostgreSQL connector reaches a side and names what it installs there.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `postgres://user@host:port/database` (the password, if any, goes in `password`).
    pub url: String,
    /// The password, if the server wants one.
    pub password: Option<Secret>,
    /// Name of the replication slot, the publication and the replication origin this
    /// side's capture and apply use. Slots and origins are named server-wide, so it
    /// must differ between deployments on one server: the default is
    /// `dualwrite_<database>_<side>` ([`default_name`]).
    pub name: String,
    /// How long connecting may take before the side counts as unavailable.
    pub connect_timeout: Duration,
}

impl PostgresOptions {
    /// Options for the side named `side` at `url`, with defaults for the rest.
    pub fn new(url: impl Into<String>, side: &str) -> PostgresOptions {
        let url = url.into();
        let database = url
            .parse::<postgres::Config>()
            .ok()
            .and_then(|config| config.get_dbname().map(str::to_owned))
            .unwrap_or_default();
        PostgresOptions {
            name: default_name(&database, side),
            url,
            password: None,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// `dualwrite_<database>_<side>`, lower-cased, with anything but `[a-z0-9_]` turned
/// into `_` (slot names allow nothing else), at most 63 bytes (a longer name ends in a
/// hash of the whole, so it stays unique).
pub fn default_name(database: &str, side: &str) -> String {
    let cleaned: String = format!("dualwrite_{database}_{side}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.len() <= 63 {
        return cleaned;
    }
    use sha2::Digest as _;
    let hash = hex::encode(sha2::Sha256::digest(cleaned.as_bytes()));
    format!("{}_{}", &cleaned[..46], &hash[..16])
}

/// Settings every session gets, so values read as text parse the same everywhere:
/// instants in UTC, ISO dates, shortest exact floats, hex bytea.
const SESSION_SETTINGS: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
     SET extra_float_digits = 3; SET bytea_output = 'hex'; SET IntervalStyle = 'postgres'; \
     SET application_name = 'dualwrite'";

/// A lazily (re)connected session. After a connectivity fault the client is dropped and
/// the next call connects again, so a side that went away catches up when it is back.
pub(crate) struct PgSession {
    pub(crate) options: PostgresOptions,
    client: Option<Client>,
    schemas: HashMap<String, Arc<TableSchema>>,
    /// How many connections were made; the apply side sets its origin up on each new one.
    pub(crate) connected: u64,
}

impl PgSession {
    pub(crate) fn new(options: PostgresOptions) -> PgSession {
        PgSession {
            options,
            client: None,
            schemas: HashMap::new(),
            connected: 0,
        }
    }

    /// Where the side is, for messages: the URL, which never holds a password.
    pub(crate) fn url(&self) -> &str {
        &self.options.url
    }

    /// The connected client, connecting first if needed.
    pub(crate) fn client(&mut self) -> Result<&mut Client, SideError> {
        if self.client.is_none() {
            let mut config: postgres::Config =
                self.options
                    .url
                    .parse()
                    .map_err(|error| SideError::Refused {
                        code: "pg.bad_url",
                        message: format!("{} is not a PostgreSQL URL: {error}", self.options.url),
                    })?;
            if let Some(password) = &self.options.password {
                config.password(password.expose());
            }
            config.connect_timeout(self.options.connect_timeout);
            let mut client = config
                .connect(NoTls)
                .map_err(|error| classify(&self.options.url, &error))?;
            client
                .batch_execute(SESSION_SETTINGS)
                .map_err(|error| classify(&self.options.url, &error))?;
            self.client = Some(client);
            self.schemas.clear();
            self.connected += 1;
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Runs `work` on the client; a fault that makes the connection unusable drops it.
    pub(crate) fn run<T>(
        &mut self,
        work: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, SideError> {
        let result = work(self.client()?);
        result.map_err(|error| self.fault(&error))
    }

    /// Classifies `error`, dropping the connection when it is a connectivity fault.
    pub(crate) fn fault(&mut self, error: &postgres::Error) -> SideError {
        let side_error = classify(&self.options.url, error);
        if side_error.is_unavailable() {
            self.client = None;
        }
        side_error
    }

    /// Forgets cached table schemas (after DDL).
    pub(crate) fn forget_schemas(&mut self) {
        self.schemas.clear();
    }

    /// The schema of `table` (a name resolved through the search path), cached.
    pub(crate) fn table(&mut self, table: &str) -> Result<Arc<TableSchema>, SideError> {
        if let Some(schema) = self.schemas.get(table) {
            return Ok(schema.clone());
        }
        let schema = Arc::new(self.introspect(table)?);
        self.schemas.insert(table.to_owned(), schema.clone());
        Ok(schema)
    }

    /// The table's oid and replica identity, or why the name cannot be captured.
    pub(crate) fn relation(&mut self, table: &str) -> Result<(u32, char), SideError> {
        let quoted = quote_ident(table);
        let row = self.run(|client| {
            client.query_opt(
                "SELECT c.oid, c.relkind::text, c.relreplident::text FROM pg_class c \
                 WHERE c.oid = to_regclass($1)",
                &[&quoted],
            )
        })?;
        let Some(row) = row else {
            let near: Option<String> = self.run(|client| {
                client
                    .query_opt(
                        "SELECT relname::text FROM pg_class WHERE lower(relname) = lower($1) \
                         AND relkind IN ('r', 'p', 'v', 'm') AND pg_table_is_visible(oid) LIMIT 1",
                        &[&table],
                    )
                    .map(|row| row.map(|row| row.get(0)))
            })?;
            return Err(SchemaError::MissingTable {
                table: table.to_owned(),
                hint: near.map(|name| format!("did you mean {name}?")),
            }
            .into());
        };
        let kind: String = row.get(1);
        let identity: String = row.get(2);
        if kind != "r" && kind != "p" {
            let what = match kind.as_str() {
                "v" => "a view",
                "m" => "a materialized view",
                "f" => "a foreign table",
                _ => "not a table",
            };
            return Err(SchemaError::Unsupported {
                table: table.to_owned(),
                reason: format!("it is {what}"),
            }
            .into());
        }
        Ok((row.get(0), identity.chars().next().unwrap_or('d')))
    }

    fn introspect(&mut self, table: &str) -> Result<TableSchema, SideError> {
        let (oid, _) = self.relation(table)?;
        let columns = self.run(|client| {
            client.query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
                        CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) \
                             ELSE format_type(a.atttypid, a.atttypmod) END, \
                        a.attnotnull, a.atthasdef OR a.attidentity <> '', \
                        a.attgenerated <> '' \
                 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                &[&oid],
            )
        })?;
        let keys = self.run(|client| {
            client.query(
                "SELECT i.indisprimary, ARRAY(SELECT a.attname::text \
                     FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                     ORDER BY k.ord) \
                 FROM pg_index i WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid \
                   AND i.indpred IS NULL AND i.indexprs IS NULL \
                 ORDER BY NOT i.indisprimary, i.indexrelid",
                &[&oid],
            )
        })?;
        let columns = columns
            .iter()
            .map(|row| {
                let base: String = row.get(2);
                let (kind, scale) = kind_of_type(&base);
                ColumnInfo {
                    name: row.get(0),
                    declared_type: row.get(1),
                    kind,
                    scale,
                    fidelity: fidelity_of_type(&base, kind),
                    capacity: Capacity::declared(kind, &base),
                    not_null: row.get(3),
                    has_default: row.get(4),
                    generated: row.get(5),
                }
            })
            .collect();
        let mut primary_key = Vec::new();
        let mut unique_keys = Vec::new();
        for row in &keys {
            let columns: Vec<String> = row.get(1);
            if row.get::<_, bool>(0) {
                primary_key = columns.clone();
            }
            unique_keys.push(columns);
        }
        Ok(TableSchema {
            table: table.to_owned(),
            columns,
            primary_key,
            unique_keys,
        })
    }
}

/// `"name"`, with inner double quotes doubled: an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Turns a driver error into a [`SideError`]: connectivity faults are
/// [`SideError::Unavailable`]; what an operator must fix is [`SideError::Refused`] with
/// a code; anything else the server said is returned as `Refused` with code `pg.error`
/// (the apply side turns statement errors into rejections itself).
pub(crate) fn classify(url: &str, error: &postgres::Error) -> SideError {
    let unavailable = |message: String| SideError::Unavailable {
        message: format!("{url}: {message}"),
    };
    let refused = |code: &'static str, message: String| SideError::Refused {
        code,
        message: format!("{url}: {message}"),
    };
    let Some(db) = error.as_db_error() else {
        let text = error_chain(error);
        if text.contains("password") {
            return refused(
                "pg.bad_credentials",
                format!("the server wants a password and none was given ({text})"),
            );
        }
        if text.contains("refused") {
            return unavailable(format!(
                "connection refused: is the server running and listening there? ({text})"
            ));
        }
        return unavailable(text);
    };
    let code = db.code();
    let message = db.message().to_owned();
    if code.code().starts_with("08")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::QUERY_CANCELED
        || *code == SqlState::IDLE_SESSION_TIMEOUT
    {
        return unavailable(message);
    }
    if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    {
        return refused(
            "pg.bad_credentials",
            format!("the server refused the credentials: {message}"),
        );
    }
    if *code == SqlState::INVALID_CATALOG_NAME {
        return refused("pg.no_database", message);
    }
    if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        return refused(
            "pg.missing_privilege",
            format!(
                "{message}: the connector's role needs REPLICATION (or superuser), CREATE on \
                 the database and ownership of the synced tables"
            ),
        );
    }
    if message.contains("wal_level") {
        return refused(
            "pg.wal_level",
            format!(
                "{message}: set wal_level = logical and restart the server \
                 (scripts/servers-setup.sh does it)"
            ),
        );
    }
    refused("pg.error", format!("{message} (SQLSTATE {})", code.code()))
}

/// The error and its sources, for a driver error that is not the server's.
fn error_chain(error: &postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
