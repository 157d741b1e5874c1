//! One connection to a MariaDB or MySQL side: connecting (lazily, again after a fault),
//! the session settings the value codec relies on, table introspection from
//! `information_schema` with a cache, and telling apart why the server failed
//! (unreachable, refused for a reason an operator must fix, or a rejected statement).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};

use super::values::{Codec, codec_of, fidelity_of_type};
use crate::capture::{Capacity, ColumnInfo, SchemaError, SideError, TableSchema};
use crate::config::Secret;

/// How the MariaDB/MySQL connector reaches a side and names what it keeps there.
#[derive(Debug, Clone)]
pub struct MysqlOptions {
    /// `mysql://user@host:port/database` or `mariadb://...` (the password, if any, goes
    /// in `password`).
    pub url: String,
    /// The password, if the server wants one.
    pub password: Option<Secret>,
    /// The name of this side's row in `_dualwrite_streams` (the capture's position
    /// record) and in `_dualwrite_writes` (the marker the engine's transactions carry).
    /// Several deployments may share a database if their names differ; the default is
    /// `dualwrite_<database>_<side>` ([`default_name`]).
    pub name: String,
    /// How long connecting may take before the side counts as unavailable.
    pub connect_timeout: Duration,
    /// How often the server sends a heartbeat on an idle binlog stream: a stream silent
    /// for three periods counts as broken (the side goes offline).
    pub heartbeat: Duration,
}

impl MysqlOptions {
    /// Options for the side named `side` at `url`, with defaults for the rest.
    pub fn new(url: impl Into<String>, side: &str) -> MysqlOptions {
        let url = url.into();
        let database = Opts::from_url(&driver_url(&url))
            .ok()
            .and_then(|opts| opts.get_db_name().map(str::to_owned))
            .unwrap_or_default();
        MysqlOptions {
            name: default_name(&database, side),
            url,
            password: None,
            connect_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_secs(1),
        }
    }
}

/// `dualwrite_<database>_<side>`, with anything but `[A-Za-z0-9_]` turned into `_`, at
/// most 64 characters (a longer name ends in a hash of the whole, so it stays unique).
pub fn default_name(database: &str, side: &str) -> String {
    let cleaned: String = format!("dualwrite_{database}_{side}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if cleaned.len() <= 64 {
        return cleaned;
    }
    use sha2::Digest as _;
    let hash = hex::encode(sha2::Sha256::digest(cleaned.as_bytes()));
    format!("{}_{}", &cleaned[..47], &hash[..16])
}

/// The URL the driver understands: it knows only the `mysql` scheme.
fn driver_url(url: &str) -> String {
    match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url.to_owned(),
    }
}

/// How long a session may sit unused before it is pinged (and replaced if gone).
const IDLE_PING: Duration = Duration::from_secs(60);

/// Longest a statement may wait for the server before the side counts as unavailable.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Settings every session gets: instants read and written in UTC (TIMESTAMP columns),
/// UTF-8 text, and strict mode, so a value the column cannot hold is refused instead of
/// silently truncated.
const SESSION_SETTINGS: [&str; 3] = [
    "SET time_zone = '+00:00'",
    "SET NAMES utf8mb4",
    "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'STRICT_ALL_TABLES')",
];

/// A table as introspected, with what reading its binlog rows needs beyond
/// [`TableSchema`]: one [`Codec`] per column, in column order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MysqlTable {
    pub(crate) schema: TableSchema,
    pub(crate) codecs: Vec<Codec>,
    /// The table's storage engine (`InnoDB`, ...).
    pub(crate) engine: String,
}

/// Builds the driver's connection options from `options` (password included).
pub(crate) fn connect_opts(options: &MysqlOptions) -> Result<Opts, SideError> {
    let opts = Opts::from_url(&driver_url(&options.url)).map_err(|error| SideError::Refused {
        code: "mysql.bad_url",
        message: format!(
            "{} is not a MariaDB/MySQL URL ({error}); write mysql://user@host:port/database",
            options.url
        ),
    })?;
    if opts.get_db_name().is_none_or(str::is_empty) {
        return Err(SideError::Refused {
            code: "mysql.bad_url",
            message: format!(
                "{} names no database; write mysql://user@host:port/database",
                options.url
            ),
        });
    }
    let mut builder = OptsBuilder::from_opts(opts)
        .tcp_connect_timeout(Some(options.connect_timeout))
        .stmt_cache_size(Some(256));
    if let Some(password) = &options.password {
        builder = builder.pass(Some(password.expose()));
    }
    Ok(builder.into())
}

/// Opens a connection with the session settings.
pub(crate) fn connect(options: &MysqlOptions) -> Result<Conn, SideError> {
    // A server that stops answering (a network partition) fails the call instead of
    // hanging the engine; statements of a batch take far less.
    let opts = OptsBuilder::from_opts(connect_opts(options)?)
        .read_timeout(Some(STATEMENT_TIMEOUT))
        .write_timeout(Some(STATEMENT_TIMEOUT));
    let mut conn = Conn::new(Opts::from(opts)).map_err(|error| classify(&options.url, &error))?;
    for setting in SESSION_SETTINGS {
        conn.query_drop(setting)
            .map_err(|error| classify(&options.url, &error))?;
    }
    Ok(conn)
}

/// A lazily (re)connected session. After a connectivity fault the connection is dropped
/// and the next call connects again, so a side that went away catches up when it is
/// back.
pub(crate) struct MySession {
    pub(crate) options: MysqlOptions,
    conn: Option<Conn>,
    /// When the connection was last used: one idle for long may have been closed by
    /// the server (`wait_timeout`), so it is pinged before use.
    last_used: std::time::Instant,
    tables: HashMap<String, Arc<MysqlTable>>,
    /// How many connections were made.
    pub(crate) connected: u64,
}

impl MySession {
    pub(crate) fn new(options: MysqlOptions) -> MySession {
        MySession {
            options,
            conn: None,
            last_used: std::time::Instant::now(),
            tables: HashMap::new(),
            connected: 0,
        }
    }

    /// Where the side is, for messages: the URL, which never holds a password.
    pub(crate) fn url(&self) -> &str {
        &self.options.url
    }

    /// The connection, connecting first if needed.
    pub(crate) fn conn(&mut self) -> Result<&mut Conn, SideError> {
        if self.last_used.elapsed() >= IDLE_PING
            && let Some(conn) = &mut self.conn
            && conn.ping().is_err()
        {
            self.conn = None;
        }
        self.last_used = std::time::Instant::now();
        if self.conn.is_none() {
            self.conn = Some(connect(&self.options)?);
            self.tables.clear();
            self.connected += 1;
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Runs `work` on the connection; a fault that makes it unusable drops it.
    pub(crate) fn run<T>(
        &mut self,
        work: impl FnOnce(&mut Conn) -> Result<T, mysql::Error>,
    ) -> Result<T, SideError> {
        let result = work(self.conn()?);
        result.map_err(|error| self.fault(&error))
    }

    /// Classifies `error`, dropping the connection when it is a connectivity fault.
    pub(crate) fn fault(&mut self, error: &mysql::Error) -> SideError {
        let side_error = classify(&self.options.url, error);
        if side_error.is_unavailable() {
            self.conn = None;
        }
        side_error
    }

    /// Forgets cached table descriptions (after DDL).
    pub(crate) fn forget_tables(&mut self) {
        self.tables.clear();
    }

    /// The description of `table` in the connection's database, cached.
    pub(crate) fn table(&mut self, table: &str) -> Result<Arc<MysqlTable>, SideError> {
        if let Some(found) = self.tables.get(table) {
            return Ok(found.clone());
        }
        let found = Arc::new(self.introspect(table)?);
        self.tables.insert(table.to_owned(), found.clone());
        Ok(found)
    }

    fn introspect(&mut self, table: &str) -> Result<MysqlTable, SideError> {
        let found: Option<(String, Option<String>)> = self.run(|conn| {
            conn.exec_first(
                "SELECT TABLE_TYPE, ENGINE FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
                (table,),
            )
        })?;
        let Some((table_type, engine)) = found else {
            let near: Option<String> = self.run(|conn| {
                conn.exec_first(
                    "SELECT TABLE_NAME FROM information_schema.TABLES \
                     WHERE TABLE_SCHEMA = DATABASE() AND LOWER(TABLE_NAME) = LOWER(?) LIMIT 1",
                    (table,),
                )
            })?;
            return Err(SchemaError::MissingTable {
                table: table.to_owned(),
                hint: near.map(|name| format!("did you mean {name}?")),
            }
            .into());
        };
        if table_type != "BASE TABLE" {
            let what = if table_type.contains("VIEW") {
                "a view".to_owned()
            } else {
                format!("a {}", table_type.to_lowercase())
            };
            return Err(SchemaError::Unsupported {
                table: table.to_owned(),
                reason: format!("it is {what}"),
            }
            .into());
        }
        type ColumnRow = (
            String,
            String,
            String,
            String,
            Option<String>,
            String,
            Option<u64>,
        );
        let rows: Vec<ColumnRow> = self.run(|conn| {
            conn.exec(
                "SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, IS_NULLABLE, COLUMN_DEFAULT, \
                        EXTRA, NUMERIC_SCALE \
                 FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (table,),
            )
        })?;
        // MariaDB's JSON is LONGTEXT with a json_valid() check; only the check tells.
        let checks: Vec<String> = self
            .run(|conn| {
                conn.exec(
                    "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
                     WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = ?",
                    (table,),
                )
            })
            .unwrap_or_default();
        let keys: Vec<(String, String, Option<u64>)> = self.run(|conn| {
            conn.exec(
                "SELECT INDEX_NAME, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
                 ORDER BY INDEX_NAME <> 'PRIMARY', INDEX_NAME, SEQ_IN_INDEX",
                (table,),
            )
        })?;
        let mut columns = Vec::with_capacity(rows.len());
        let mut codecs = Vec::with_capacity(rows.len());
        for (name, column_type, data_type, nullable, default, extra, scale) in rows {
            let json = checks.iter().any(|clause| {
                let clause = clause.to_lowercase().replace(' ', "");
                clause.contains(&format!("json_valid(`{}`)", name.to_lowercase()))
            });
            let codec = codec_of(&data_type, &column_type, json);
            let extra_upper = extra.to_uppercase();
            let generated = extra_upper.contains("GENERATED")
                || extra_upper == "VIRTUAL"
                || extra_upper == "PERSISTENT"
                || extra_upper == "STORED";
            let fidelity = fidelity_of_type(&data_type, &column_type, codec.kind());
            let capacity = Capacity::declared(codec.kind(), &column_type);
            columns.push(ColumnInfo {
                name,
                declared_type: column_type,
                kind: codec.kind(),
                fidelity,
                capacity,
                scale: matches!(codec, Codec::Decimal).then_some(scale.unwrap_or(0) as u32),
                not_null: nullable == "NO",
                has_default: default.is_some() || extra_upper.contains("AUTO_INCREMENT"),
                generated,
            });
            codecs.push(codec);
        }
        let mut primary_key = Vec::new();
        let mut unique_keys: Vec<Vec<String>> = Vec::new();
        let mut current: Option<(String, Vec<String>, bool)> = None;
        let mut finish = |entry: Option<(String, Vec<String>, bool)>| {
            if let Some((index, columns, prefix)) = entry
                && !prefix
            {
                if index == "PRIMARY" {
                    primary_key = columns.clone();
                }
                unique_keys.push(columns);
            }
        };
        for (index, column, sub_part) in keys {
            match &mut current {
                Some((name, columns, prefix)) if *name == index => {
                    columns.push(column);
                    *prefix |= sub_part.is_some();
                }
                _ => {
                    finish(current.take());
                    current = Some((index, vec![column], sub_part.is_some()));
                }
            }
        }
        finish(current.take());
        Ok(MysqlTable {
            schema: TableSchema {
                table: table.to_owned(),
                columns,
                primary_key,
                unique_keys,
            },
            codecs,
            engine: engine.unwrap_or_default(),
        })
    }
}

/// `` `name` ``, with inner backquotes doubled: an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Server error codes that mean the connection or the server went away, or that the
/// statement may succeed when retried (a deadlock, a lock wait timeout).
const UNAVAILABLE_CODES: &[u16] = &[
    1040, // too many connections
    1053, // server shutdown in progress
    1077, // normal shutdown
    1078, // got signal
    1079, // shutdown complete
    1152, // aborted connection
    1153, // packet too large (connection closed)
    1158, 1159, 1160, 1161, // network read/write errors and timeouts
    1205, // lock wait timeout
    1213, // deadlock
    1317, // query interrupted
    1927, // connection killed (MariaDB)
    4031, // idle session timeout
];

/// Turns a driver error into a [`SideError`]: connectivity faults are
/// [`SideError::Unavailable`]; what an operator must fix is [`SideError::Refused`] with
/// a code; anything else the server said is `Refused` with code `mysql.error` (the
/// apply side turns statement errors into rejections itself).
pub(crate) fn classify(url: &str, error: &mysql::Error) -> SideError {
    let unavailable = |message: String| SideError::Unavailable {
        message: format!("{url}: {message}"),
    };
    let refused = |code: &'static str, message: String| SideError::Refused {
        code,
        message: format!("{url}: {message}"),
    };
    match error {
        mysql::Error::MySqlError(server) => {
            let code = server.code;
            let message = server.message.clone();
            if UNAVAILABLE_CODES.contains(&code) {
                return unavailable(format!("{message} (error {code})"));
            }
            match code {
                1045 | 1698 => refused(
                    "mysql.bad_credentials",
                    format!("the server refused the credentials: {message}"),
                ),
                1049 => refused(
                    "mysql.no_database",
                    format!("{message}: create the database or fix the URL"),
                ),
                1044 | 1142 | 1143 | 1227 | 1370 => refused(
                    "mysql.missing_privilege",
                    format!(
                        "{message}: the connector's user needs REPLICATION SLAVE and \
                         REPLICATION CLIENT (BINLOG MONITOR on MariaDB 10.5+) on *.*, and \
                         SELECT, INSERT, UPDATE, DELETE, CREATE on the database"
                    ),
                ),
                1236 if message.contains("first log file")
                    || message.contains("purged")
                    || message.contains("not find") =>
                {
                    refused(
                        "mysql.binlog_purged",
                        format!(
                            "{message}: the binary log the engine must read from was purged \
                             (expire_logs_days / binlog_expire_logs_seconds too short, or \
                             PURGE BINARY LOGS); changes in it are lost to capture. \
                             Uninstall the capture and run an initial sync"
                        ),
                    )
                }
                1236 => refused(
                    "mysql.binlog_error",
                    format!("the server cannot send its binary log: {message}"),
                ),
                _ => refused("mysql.error", format!("{message} (error {code})")),
            }
        }
        mysql::Error::IoError(io) => {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                unavailable(format!(
                    "[mysql.connection_refused] connection refused: is the server running and \
                     listening there? ({io})"
                ))
            } else {
                unavailable(io.to_string())
            }
        }
        mysql::Error::CodecError(codec) => unavailable(format!("the connection broke: {codec}")),
        mysql::Error::DriverError(driver) => unavailable(driver.to_string()),
        mysql::Error::UrlError(url_error) => refused("mysql.bad_url", url_error.to_string()),
        other => refused("mysql.error", other.to_string()),
    }
}
