//! The SQLite connector's capture: triggers write every committed row change of the
//! captured tables into a change-log table in the same file, and [`SqliteCapture`] reads
//! that log in commit order. Works whichever process writes the file.
//!
//! # What is installed in the side's database
//!
//! [`SqliteCapture::install`] creates (and [`SqliteCapture::uninstall`] drops):
//!
//! ```sql
//! CREATE TABLE _dualwrite_changes (         -- the change log
//!     seq      INTEGER PRIMARY KEY AUTOINCREMENT,  -- position; never reused
//!     tbl      TEXT NOT NULL,                      -- table
//!     op       TEXT NOT NULL,                      -- 'I', 'U' or 'D'
//!     new_json TEXT,                               -- row after (insert, update)
//!     old_json TEXT,                               -- row before (update, delete)
//!     at       INTEGER NOT NULL);                  -- ms since 1970, statement time
//! CREATE TABLE _dualwrite_origin (id INTEGER PRIMARY KEY CHECK (id = 1),
//!                                 active INTEGER NOT NULL);  -- one row: the echo marker
//! CREATE TABLE _dualwrite_capture (tbl TEXT PRIMARY KEY,
//!                                  key_columns TEXT NOT NULL) WITHOUT ROWID;
//! CREATE TABLE _dualwrite_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
//!                                               -- stream_id (random), format
//! -- per captured table T: _dualwrite_i_T, _dualwrite_u_T, _dualwrite_d_T
//! CREATE TRIGGER "_dualwrite_u_T" AFTER UPDATE ON "T"
//! WHEN coalesce((SELECT active FROM _dualwrite_origin), 0) = 0
//!  AND (OLD."a" IS NOT NEW."a" OR ...)
//! BEGIN INSERT INTO _dualwrite_changes (tbl, op, new_json, old_json, at)
//!       VALUES ('T', 'U', json_object('a', <NEW."a">, ...), json_object(...), <now>); END
//! ```
//!
//! Decisions:
//! - **Order and positions.** SQLite has one writer at a time, so `seq`, taken inside the
//!   writing transaction, follows commit order, with no gap a reader could pass over.
//!   Triggers cannot see transaction boundaries, so every row change is its own
//!   position `(seq, 0)`. `AUTOINCREMENT` keeps `seq` rising after the log is purged.
//! - **Images** hold every column (generated ones too) as `json_object`, encoded so that
//!   any SQLite library decodes back the exact value (see `values::json_encoding`). An
//!   update that changes no column is not logged.
//! - **No echo.** The apply transaction ([`crate::apply::sqlite`]) sets
//!   `_dualwrite_origin.active = 1` first and back to 0 before it commits; the triggers'
//!   `WHEN` skips rows written meanwhile. With one writer at a time the marker is only
//!   ever 1 inside the engine's own transaction, so no other writer's change is skipped.
//!   (Side effects of the engine's writes inside the target, such as cascading deletes or
//!   the application's own triggers, are not captured either.)
//! - **Visibility.** A change is in the log only once the transaction that wrote it (the
//!   triggers run inside the application's own transaction) has committed, and the
//!   capture finds it with a read that starts after that commit. Every read the engine
//!   starts later, on any connection, begins after that commit too and sees it, so a
//!   re-read of the row never predates the change:
//!   [`CaptureStream::await_visible`] has nothing to wait for (the trait's default).
//! - **Schema changes.** The triggers list the columns; when the table changes
//!   (`ALTER TABLE`), the next read or wait rebuilds them. A change made in the instant
//!   between the `ALTER` and the rebuild lacks the new column. `DROP COLUMN` of a captured
//!   column fails while the triggers refer to it: uninstall first.
//! - **Stream id.** A random id made when the log is created; a checkpoint taken on
//!   another id (the log was dropped and made again) does not apply.
//! - **Availability.** The file is opened without the create flag, so a missing file is
//!   [`SideError::Unavailable`] and is never created by accident; so is a lock held past
//!   the busy timeout, and a file that was moved away or replaced while open.
//! - Other writers' SQLite libraries run the triggers too; they need SQLite 3.38 or
//!   later (or an older one built with JSON1).
//!
//! # Types
//!
//! Values are read by the column's declared type (the words SQLite's own affinity rules
//! look at), and written by the kind of the [`crate::change::Value`]:
//!
//! | declared type contains | read as | written as |
//! |---|---|---|
//! | `BOOL` | `Boolean` from 0/1 | 0/1 |
//! | `INT` | `Integer` | integer |
//! | `DATETIME`, `TIMESTAMP` | `Timestamp` from ISO-8601 text: `YYYY-MM-DD[ HH:MM[:SS[.fff]]]` (` ` or `T`), with `Z`/`+HH:MM` an instant with its offset, without a local date-time | `YYYY-MM-DD HH:MM:SS[.fff][Z\|+HH:MM]` |
//! | `DATE` | `Date` from `YYYY-MM-DD` | `YYYY-MM-DD` |
//! | `DEC`, `NUMERIC`, `MONEY` | `Decimal`, exact text; an integer or real (what NUMERIC affinity makes of `'10.50'`) is printed exactly and padded to the declared scale (`DECIMAL(18,2)`: 10.5 -> `"10.50"`) | the decimal's text |
//! | `JSON` | `Json` (valid JSON text) | text |
//! | `REAL`, `FLOA`, `DOUB` | `Float` | real (NaN refused: SQLite stores it as NULL) |
//! | `CHAR`, `CLOB`, `TEXT` | `Text` | text |
//! | `BLOB` | `Bytes` | blob |
//! | anything else, or nothing | by storage class: `Integer`, `Float`, `Text`, `Bytes` | by kind |
//!
//! A stored value that does not fit its column's kind is read as its storage class,
//! never dropped or altered; text that is not UTF-8 is read as `Bytes`.
//!
//! Money: NUMERIC affinity (`DECIMAL(18,2)`) keeps 15 significant digits and converts
//! `'10.50'` to the real 10.5; the declared scale brings back `"10.50"`. Declare the
//! column with TEXT affinity and a decimal word, e.g. `TEXT DECIMAL(18,2)` or
//! `DECIMAL_TEXT`, to keep any number of digits exactly as written.

mod connection;
pub(crate) mod schema;
pub(crate) mod values;

pub(crate) use connection::SqliteDatabase;
pub use connection::SqliteOptions;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use rusqlite::OptionalExtension as _;
use serde_json::Value as Json;

use self::schema::{RESERVED_PREFIX, quote_ident, quote_literal};
use self::values::{json_encoding, sql_from_json, value_from_owned};
use super::{
    CaptureInfo, CaptureStream, CaptureTable, CapturedChange, Position, RowImage, SchemaError,
    SideError, TableSchema,
};
use crate::change::{ChangeOp, Value};

/// The change log, marker and bookkeeping tables; created if missing.
const INSTALL_TABLES: &str = "
CREATE TABLE IF NOT EXISTS _dualwrite_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl TEXT NOT NULL,
    op TEXT NOT NULL,
    new_json TEXT,
    old_json TEXT,
    at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS _dualwrite_origin (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    active INTEGER NOT NULL);
INSERT OR IGNORE INTO _dualwrite_origin (id, active) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS _dualwrite_capture (
    tbl TEXT PRIMARY KEY,
    key_columns TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _dualwrite_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO _dualwrite_meta (name, value) VALUES
    ('stream_id', lower(hex(randomblob(16)))),
    ('format', '1');
";

const UNINSTALL_TABLES: &str = "
DROP TABLE IF EXISTS _dualwrite_changes;
DROP TABLE IF EXISTS _dualwrite_capture;
DROP TABLE IF EXISTS _dualwrite_meta;
DROP TABLE IF EXISTS _dualwrite_origin;
";

const OUR_TRIGGERS: &str = "SELECT name, sql FROM sqlite_schema \
     WHERE type = 'trigger' AND name LIKE '\\_dualwrite\\_%' ESCAPE '\\'";

/// Statement time in milliseconds since 1970, with functions every SQLite has.
const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";

/// Pairs per `json_object`/`json_insert` call: older SQLite libraries allow 100
/// arguments per function.
const PAIRS_PER_CALL: usize = 49;

/// A captured table as the capture knows it.
struct Captured {
    key_columns: Vec<String>,
    /// `None` while the table cannot be introspected (dropped or renamed): its changes
    /// are then read by storage class.
    schema: Option<Arc<TableSchema>>,
}

/// Capture of one SQLite file. See the module docs for what it installs.
pub struct SqliteCapture {
    db: SqliteDatabase,
    tables: HashMap<String, Captured>,
    /// `PRAGMA data_version` at the last look: changes when another connection commits.
    data_version: Option<i64>,
}

impl SqliteCapture {
    /// Opens the database at `path` (which must exist) for capture. Nothing is installed
    /// until [`install`](CaptureStream::install).
    pub fn open(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<SqliteCapture, SideError> {
        let db = SqliteDatabase::open(path.as_ref(), options)?;
        Ok(SqliteCapture {
            db,
            tables: HashMap::new(),
            data_version: None,
        })
    }

    /// Brings the known tables and their triggers up to date after a schema change.
    fn refresh(&mut self) -> Result<(), SideError> {
        if !self.db.schema_changed()? {
            return Ok(());
        }
        let registered = self.load_registry()?;
        let mut stale = false;
        self.tables.clear();
        let existing = existing_triggers(&self.db)?;
        for entry in registered {
            let schema = match self.db.table(&entry.table) {
                Ok(schema) => Some(schema),
                Err(SideError::Schema(error)) => {
                    tracing::warn!(table = %entry.table, %error, "captured table cannot be introspected");
                    None
                }
                Err(error) => return Err(error),
            };
            if let Some(schema) = &schema {
                stale |= triggers_for(&entry.table, schema)
                    .iter()
                    .any(|(name, sql)| existing.get(name) != Some(sql));
            }
            self.tables.insert(
                entry.table,
                Captured {
                    key_columns: entry.key_columns,
                    schema,
                },
            );
        }
        if stale {
            tracing::info!("a captured table changed; rebuilding its capture triggers");
            let tables: Vec<CaptureTable> = self
                .tables
                .iter()
                .filter(|(_, captured)| captured.schema.is_some())
                .map(|(table, captured)| CaptureTable {
                    table: table.clone(),
                    key_columns: captured.key_columns.clone(),
                })
                .collect();
            self.db.immediate(|db| {
                let schemas = tables
                    .iter()
                    .map(|table| db.table(&table.table))
                    .collect::<Result<Vec<_>, _>>()?;
                write_triggers(db, &tables, &schemas, false)
            })?;
        }
        Ok(())
    }

    /// The registered tables, empty when nothing is installed.
    fn load_registry(&self) -> Result<Vec<CaptureTable>, SideError> {
        let installed: bool = self
            .db
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = '_dualwrite_capture')",
                [],
                |row| row.get(0),
            )
            .map_err(|error| self.db.failure(error))?;
        if !installed {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, String)> = self
            .db
            .conn
            .prepare_cached("SELECT tbl, key_columns FROM _dualwrite_capture ORDER BY tbl")
            .and_then(|mut statement| {
                statement
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            })
            .map_err(|error| self.db.failure(error))?;
        rows.into_iter()
            .map(|(table, keys)| {
                let key_columns = serde_json::from_str(&keys).map_err(|error| {
                    self.db.unavailable(format!(
                        "_dualwrite_capture is damaged for {table}: {error}"
                    ))
                })?;
                Ok(CaptureTable { table, key_columns })
            })
            .collect()
    }

    fn decode(&self, row: LogRow) -> Result<CapturedChange, String> {
        let captured = self.tables.get(&row.table);
        let schema = captured.and_then(|captured| captured.schema.as_deref());
        let image = |json: Option<String>| json.map(|json| decode_image(&json, schema)).transpose();
        let after = image(row.new_json)?;
        let before = image(row.old_json)?;
        let op = match row.op.as_str() {
            "I" => ChangeOp::Insert,
            "U" => ChangeOp::Update,
            "D" => ChangeOp::Delete,
            other => return Err(format!("unknown op {other:?}")),
        };
        let source = match op {
            ChangeOp::Delete => before.as_ref(),
            ChangeOp::Insert | ChangeOp::Update => after.as_ref(),
        }
        .ok_or_else(|| format!("a {} without its row image", op.as_str()))?;
        let key = captured
            .map(|captured| {
                captured
                    .key_columns
                    .iter()
                    .map(|column| {
                        let value = source.get(column).cloned().unwrap_or(Value::Null);
                        (column.clone(), value)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(CapturedChange {
            position: Position::new(row.seq, 0),
            entity: row.table,
            op,
            key,
            after,
            before,
            committed_at: u64::try_from(row.at)
                .ok()
                .map(|millis| UNIX_EPOCH + Duration::from_millis(millis)),
        })
    }

    fn has_changes_after(&self, after: Position) -> Result<bool, SideError> {
        self.db
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM _dualwrite_changes WHERE seq > ?1)")
            .and_then(|mut statement| statement.query_row([sequence(after)], |row| row.get(0)))
            .map_err(|error| self.not_installed_or(error))
    }

    fn data_version(&self) -> Result<i64, SideError> {
        self.db
            .conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
            .map_err(|error| self.db.failure(error))
    }

    /// A missing change log (uninstalled by someone else) reads as an unavailable side:
    /// reconnecting and installing again gives a new stream id.
    fn not_installed_or(&self, error: rusqlite::Error) -> SideError {
        if error.to_string().contains("no such table") {
            self.db
                .unavailable("dualwrite capture is not installed in this database")
        } else {
            self.db.failure(error)
        }
    }
}

/// One row of the change log.
struct LogRow {
    seq: u64,
    table: String,
    op: String,
    new_json: Option<String>,
    old_json: Option<String>,
    at: i64,
}

fn sequence(position: Position) -> i64 {
    i64::try_from(position.sequence).unwrap_or(i64::MAX)
}

fn decode_image(json: &str, schema: Option<&TableSchema>) -> Result<RowImage, String> {
    let object: serde_json::Map<String, Json> =
        serde_json::from_str(json).map_err(|error| format!("invalid row image: {error}"))?;
    object
        .into_iter()
        .map(|(column, value)| {
            let raw = sql_from_json(&value).map_err(|error| format!("column {column}: {error}"))?;
            let info = schema.and_then(|schema| schema.column(&column));
            Ok((column, value_from_owned(info, &raw)))
        })
        .collect()
}

fn existing_triggers(db: &SqliteDatabase) -> Result<HashMap<String, String>, SideError> {
    db.conn
        .prepare_cached(OUR_TRIGGERS)
        .and_then(|mut statement| {
            statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect()
        })
        .map_err(|error| db.failure(error))
}

/// `json_object` of every column of `image` (`NEW` or `OLD`), chained through
/// `json_insert` past [`PAIRS_PER_CALL`] columns.
fn image_json(schema: &TableSchema, image: &str) -> String {
    let pair = |name: &str| {
        let column = format!("{image}.{}", quote_ident(name));
        (name.to_owned(), json_encoding(&column))
    };
    let mut pairs: Vec<(String, String)> = schema
        .columns
        .iter()
        .map(|column| pair(&column.name))
        .collect();
    // A JSON path cannot spell a name with a double quote; `json_object` can, so such
    // names go first.
    pairs.sort_by_key(|(name, _)| !name.contains('"'));
    let mut chunks = pairs.chunks(PAIRS_PER_CALL);
    let first = chunks.next().unwrap_or_default();
    let mut sql = format!(
        "json_object({})",
        first
            .iter()
            .map(|(name, value)| format!("{}, {value}", quote_literal(name)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for chunk in chunks {
        let inserts: Vec<String> = chunk
            .iter()
            .map(|(name, value)| {
                let path = format!("$.\"{name}\"");
                format!("{}, {value}", quote_literal(&path))
            })
            .collect();
        sql = format!("json_insert({sql}, {})", inserts.join(", "));
    }
    sql
}

/// The three capture triggers of `table`: (name, exact `CREATE TRIGGER` text).
fn triggers_for(table: &str, schema: &TableSchema) -> [(String, String); 3] {
    let quoted = quote_ident(table);
    let literal = quote_literal(table);
    let not_ours = "coalesce((SELECT active FROM _dualwrite_origin), 0) = 0";
    let changed: Vec<String> = schema
        .columns
        .iter()
        .map(|column| {
            let name = quote_ident(&column.name);
            format!("OLD.{name} IS NOT NEW.{name}")
        })
        .collect();
    let trigger = |op: char, event: &str, condition: String, new: &str, old: &str| {
        let name = format!("{RESERVED_PREFIX}{}_{table}", op.to_ascii_lowercase());
        let sql = format!(
            "CREATE TRIGGER {} AFTER {event} ON {quoted} WHEN {condition} BEGIN \
             INSERT INTO _dualwrite_changes (tbl, op, new_json, old_json, at) \
             VALUES ({literal}, '{op}', {new}, {old}, {NOW_MS}); END",
            quote_ident(&name)
        );
        (name, sql)
    };
    [
        trigger(
            'I',
            "INSERT",
            not_ours.to_owned(),
            &image_json(schema, "NEW"),
            "NULL",
        ),
        trigger(
            'U',
            "UPDATE",
            format!("{not_ours} AND ({})", changed.join(" OR ")),
            &image_json(schema, "NEW"),
            &image_json(schema, "OLD"),
        ),
        trigger(
            'D',
            "DELETE",
            not_ours.to_owned(),
            "NULL",
            &image_json(schema, "OLD"),
        ),
    ]
}

/// Inside a write transaction: makes our triggers exactly those of `tables` (dropping
/// and creating only what differs); with `register`, rewrites the registry to match.
fn write_triggers(
    db: &mut SqliteDatabase,
    tables: &[CaptureTable],
    schemas: &[Arc<TableSchema>],
    register: bool,
) -> Result<(), SideError> {
    let existing = existing_triggers(db)?;
    let mut wanted: HashMap<String, String> = HashMap::new();
    for (table, schema) in tables.iter().zip(schemas) {
        wanted.extend(triggers_for(&table.table, schema));
    }
    let mut script = String::new();
    for (name, sql) in &existing {
        if wanted.get(name) != Some(sql) {
            script.push_str(&format!("DROP TRIGGER {};\n", quote_ident(name)));
        }
    }
    for (name, sql) in &wanted {
        if existing.get(name) != Some(sql) {
            script.push_str(sql);
            script.push_str(";\n");
        }
    }
    if !script.is_empty() {
        db.conn
            .execute_batch(&script)
            .map_err(|error| db.failure(error))?;
    }
    if register {
        let result = (|| {
            db.conn.execute("DELETE FROM _dualwrite_capture", [])?;
            let mut insert = db.conn.prepare_cached(
                "INSERT INTO _dualwrite_capture (tbl, key_columns) VALUES (?1, ?2)",
            )?;
            for table in tables {
                let keys = serde_json::to_string(&table.key_columns).unwrap_or_default();
                insert.execute((&table.table, keys))?;
            }
            Ok(())
        })();
        result.map_err(|error| db.failure(error))?;
    }
    Ok(())
}

impl CaptureStream for SqliteCapture {
    fn install(&mut self, tables: &[CaptureTable]) -> Result<CaptureInfo, SideError> {
        self.db.check_file()?;
        let mut unique: Vec<CaptureTable> = Vec::new();
        for table in tables {
            match unique.iter().find(|known| known.table == table.table) {
                Some(known) if known.key_columns != table.key_columns => {
                    return Err(SchemaError::Unsupported {
                        table: table.table.clone(),
                        reason: format!(
                            "captured twice with different keys ({}) and ({})",
                            known.key_columns.join(", "),
                            table.key_columns.join(", ")
                        ),
                    }
                    .into());
                }
                Some(_) => {}
                None => unique.push(table.clone()),
            }
        }
        let (schemas, stream_id, head) = self.db.immediate(|db| {
            db.schema_changed()?;
            let schemas = unique
                .iter()
                .map(|table| {
                    let schema = db.table(&table.table)?;
                    schema.check_key(&table.key_columns)?;
                    Ok(schema)
                })
                .collect::<Result<Vec<_>, SideError>>()?;
            db.conn
                .execute_batch(INSTALL_TABLES)
                .map_err(|error| db.failure(error))?;
            write_triggers(db, &unique, &schemas, true)?;
            let stream_id: String = db
                .conn
                .query_row(
                    "SELECT value FROM _dualwrite_meta WHERE name = 'stream_id'",
                    [],
                    |row| row.get(0),
                )
                .map_err(|error| db.failure(error))?;
            let head: Option<i64> = db
                .conn
                .query_row(
                    "SELECT seq FROM sqlite_sequence WHERE name = '_dualwrite_changes'",
                    [],
                    |row| row.get(0),
                )
                .optional()
                .map_err(|error| db.failure(error))?;
            Ok((schemas, stream_id, head))
        })?;
        // Our own DDL moved the schema version; start the cache from here.
        self.db.schema_changed()?;
        self.tables = unique
            .iter()
            .zip(&schemas)
            .map(|(table, schema)| {
                let captured = Captured {
                    key_columns: table.key_columns.clone(),
                    schema: Some(Arc::clone(schema)),
                };
                (table.table.clone(), captured)
            })
            .collect();
        tracing::info!(tables = unique.len(), %stream_id, "SQLite capture installed");
        Ok(CaptureInfo {
            stream_id,
            head: Position::new(head.map_or(0, |seq| seq.max(0) as u64), 0),
            tables: schemas.iter().map(|schema| (**schema).clone()).collect(),
        })
    }

    fn read(&mut self, after: Position, limit: usize) -> Result<Vec<CapturedChange>, SideError> {
        self.db.check_file()?;
        self.refresh()?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<LogRow> = self
            .db
            .conn
            .prepare_cached(
                "SELECT seq, tbl, op, new_json, old_json, at FROM _dualwrite_changes \
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .and_then(|mut statement| {
                statement
                    .query_map((sequence(after), limit), |row| {
                        Ok(LogRow {
                            seq: row.get::<_, i64>(0)?.max(0) as u64,
                            table: row.get(1)?,
                            op: row.get(2)?,
                            new_json: row.get(3)?,
                            old_json: row.get(4)?,
                            at: row.get(5)?,
                        })
                    })?
                    .collect()
            })
            .map_err(|error| self.not_installed_or(error))?;
        let mut changes = Vec::with_capacity(rows.len());
        for row in rows {
            let position = Position::new(row.seq, 0);
            match self.decode(row) {
                Ok(change) => changes.push(change),
                // Hand out what came before; the next read starts at the damaged one.
                Err(_) if !changes.is_empty() => break,
                Err(message) => return Err(SideError::Unreadable { position, message }),
            }
        }
        Ok(changes)
    }

    fn wait(&mut self, after: Position, timeout: Duration) -> Result<bool, SideError> {
        const FILE_CHECK_EVERY: Duration = Duration::from_millis(100);
        let start = Instant::now();
        let deadline = start + timeout;
        let mut file_checked = start;
        self.db.check_file()?;
        let mut first = true;
        loop {
            // Read the version before looking, so a commit in between is not missed.
            let version = self.data_version()?;
            if first || self.data_version != Some(version) {
                self.data_version = Some(version);
                first = false;
                self.refresh()?;
                if self.has_changes_after(after)? {
                    return Ok(true);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            if now.duration_since(file_checked) >= FILE_CHECK_EVERY {
                self.db.check_file()?;
                file_checked = now;
            }
            std::thread::sleep(self.db.options.poll_interval.min(deadline - now));
        }
    }

    fn head(&mut self) -> Result<Position, SideError> {
        self.db.check_file()?;
        let seq: Option<i64> = self
            .db
            .conn
            .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = '_dualwrite_changes'")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)).optional())
            .map_err(|error| self.not_installed_or(error))?;
        Ok(Position::new(seq.map_or(0, |seq| seq.max(0) as u64), 0))
    }

    fn acknowledge(&mut self, through: Position) -> Result<u64, SideError> {
        self.db.check_file()?;
        // The checkpoint is already durable in the engine's state, so the purge need not
        // wait for the application's writers: when one holds the lock, skip it and let
        // the next acknowledge (which covers this position too) purge. Waiting here is
        // what made a step take tens of milliseconds behind a busy application.
        let purged = self.db.without_waiting(|db| {
            db.conn
                .prepare_cached("DELETE FROM _dualwrite_changes WHERE seq <= ?1")
                .and_then(|mut statement| statement.execute([sequence(through)]))
        });
        match purged {
            Ok(purged) => Ok(purged as u64),
            Err(error) if SqliteDatabase::is_busy(&error) => Ok(0),
            Err(error) => Err(self.not_installed_or(error)),
        }
    }

    fn uninstall(&mut self) -> Result<(), SideError> {
        self.db.check_file()?;
        self.db.immediate(|db| {
            let triggers = existing_triggers(db)?;
            let mut script: String = triggers
                .keys()
                .map(|name| format!("DROP TRIGGER {};\n", quote_ident(name)))
                .collect();
            script.push_str(UNINSTALL_TABLES);
            db.conn
                .execute_batch(&script)
                .map_err(|error| db.failure(error))
        })?;
        self.tables.clear();
        self.db.schema_changed()?;
        tracing::info!("SQLite capture uninstalled");
        Ok(())
    }
}

impl std::fmt::Debug for SqliteCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteCapture")
            .field("tables", &self.tables.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A fresh database file in a temporary directory, set up by `sql`, for tests.
#[cfg(test)]
pub(crate) fn test_database(sql: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("side.db");
    let conn = rusqlite::Connection::open(&path).expect("create test database");
    conn.execute_batch(sql).expect("test schema");
    (dir, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    const CUSTOMERS: &str = "CREATE TABLE customers (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL UNIQUE,
        name TEXT,
        balance DECIMAL(18,2),
        active BOOLEAN,
        photo BLOB);";

    fn options() -> SqliteOptions {
        SqliteOptions {
            busy_timeout: Duration::from_millis(200),
            ..SqliteOptions::default()
        }
    }

    fn installed(
        sql: &str,
        tables: &[CaptureTable],
    ) -> (tempfile::TempDir, std::path::PathBuf, SqliteCapture) {
        let (dir, path) = test_database(sql);
        let mut capture = SqliteCapture::open(&path, options()).expect("open");
        capture.install(tables).expect("install");
        (dir, path, capture)
    }

    /// Another process's connection, as the ERP application would have.
    fn other_writer(path: &Path) -> Connection {
        let conn = Connection::open(path).expect("open");
        conn.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        conn
    }

    fn image(pairs: &[(&str, Value)]) -> RowImage {
        pairs
            .iter()
            .map(|(column, value)| ((*column).to_owned(), value.clone()))
            .collect()
    }

    fn text(text: &str) -> Value {
        Value::Text(text.to_owned())
    }

    #[test]
    fn inserts_updates_and_deletes_come_in_commit_order_with_exact_images() {
        let (_dir, path, mut capture) =
            installed(CUSTOMERS, &[CaptureTable::new("customers", &["account"])]);
        let app = other_writer(&path);
        app.execute_batch(
            "INSERT INTO customers VALUES (1, 'C-1', 'Ada', '10.50', 1, x'00ff');
             UPDATE customers SET name = 'Ada L.', balance = 12 WHERE id = 1;
             UPDATE customers SET name = 'Ada L.' WHERE id = 1; -- changes nothing
             DELETE FROM customers WHERE id = 1;",
        )
        .unwrap();

        let changes = capture.read(Position::START, 100).unwrap();
        assert_eq!(changes.len(), 3, "{changes:#?}");
        let first = image(&[
            ("id", Value::Integer(1)),
            ("account", text("C-1")),
            ("name", text("Ada")),
            ("balance", Value::Decimal("10.50".into())),
            ("active", Value::Boolean(true)),
            ("photo", Value::Bytes(vec![0, 255])),
        ]);
        let mut second = first.clone();
        second.insert("name".into(), text("Ada L."));
        second.insert("balance".into(), Value::Decimal("12.00".into()));
        let key = image(&[("account", text("C-1"))]);

        let ops: Vec<_> = changes.iter().map(|change| change.op).collect();
        assert_eq!(ops, [ChangeOp::Insert, ChangeOp::Update, ChangeOp::Delete]);
        assert!(
            changes
                .iter()
                .all(|change| change.entity == "customers" && change.key == key)
        );
        assert!(
            changes
                .windows(2)
                .all(|pair| pair[0].position < pair[1].position)
        );
        assert_eq!(
            (changes[0].after.as_ref(), changes[0].before.as_ref()),
            (Some(&first), None)
        );
        assert_eq!(
            (changes[1].after.as_ref(), changes[1].before.as_ref()),
            (Some(&second), Some(&first))
        );
        assert_eq!(changes[1].changed_columns(), ["balance", "name"]);
        assert_eq!(
            (changes[2].after.as_ref(), changes[2].before.as_ref()),
            (None, Some(&second))
        );
        assert!(changes[0].committed_at.is_some());

        // Reading after a position, in bounded batches.
        let rest = capture.read(changes[0].position, 1).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].position, changes[1].position);
        assert_eq!(capture.head().unwrap(), changes[2].position);
    }

    #[test]
    fn a_concurrent_writer_is_seen_in_order_while_capture_waits() {
        let (_dir, path, mut capture) =
            installed(CUSTOMERS, &[CaptureTable::new("customers", &["id"])]);
        let writer = std::thread::spawn(move || {
            let app = other_writer(&path);
            for id in 1..=50 {
                app.execute(
                    "INSERT INTO customers (id, account) VALUES (?1, 'C-' || ?1)",
                    [id],
                )
                .unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let mut position = Position::START;
        let mut ids = Vec::new();
        while ids.len() < 50 {
            assert!(
                capture.wait(position, Duration::from_secs(10)).unwrap(),
                "no change came"
            );
            for change in capture.read(position, 7).unwrap() {
                position = change.position;
                ids.push(change.key["id"].clone());
            }
        }
        writer.join().unwrap();
        assert_eq!(ids, (1..=50).map(Value::Integer).collect::<Vec<_>>());
        assert!(!capture.wait(position, Duration::from_millis(20)).unwrap());
    }

    /// The writer of [`a_writer_in_another_process_is_captured`], run as a child process
    /// of the test binary; does nothing when run otherwise.
    #[test]
    #[ignore = "run in a child process by a_writer_in_another_process_is_captured"]
    fn child_process_writer() {
        let Some(path) = std::env::var_os("DUALWRITE_TEST_CHILD_DB") else {
            return;
        };
        let app = other_writer(Path::new(&path));
        for id in 1..=20 {
            app.execute(
                "INSERT INTO customers (id, account, balance) VALUES (?1, ?1, ?1 || '.10')",
                [id],
            )
            .unwrap();
        }
    }

    #[test]
    fn a_writer_in_another_process_is_captured() {
        let (_dir, path, mut capture) =
            installed(CUSTOMERS, &[CaptureTable::new("customers", &["id"])]);
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "capture::sqlite::tests::child_process_writer",
            ])
            .env("DUALWRITE_TEST_CHILD_DB", &path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("run the test binary as a writer");
        let mut position = Position::START;
        let mut balances = Vec::new();
        while balances.len() < 20 {
            assert!(
                capture.wait(position, Duration::from_secs(30)).unwrap(),
                "no change came"
            );
            for change in capture.read(position, 100).unwrap() {
                position = change.position;
                balances.push(change.after.unwrap()["balance"].clone());
            }
        }
        assert!(child.wait().unwrap().success());
        let expected: Vec<Value> = (1..=20)
            .map(|id| Value::Decimal(format!("{id}.10")))
            .collect();
        assert_eq!(balances, expected);
    }

    #[test]
    fn acknowledged_changes_are_purged_and_positions_keep_rising() {
        let (_dir, path, mut capture) =
            installed(CUSTOMERS, &[CaptureTable::new("customers", &["id"])]);
        let app = other_writer(&path);
        for id in 1..=3 {
            app.execute("INSERT INTO customers (id, account) VALUES (?1, ?1)", [id])
                .unwrap();
        }
        let changes = capture.read(Position::START, 10).unwrap();
        assert_eq!(capture.acknowledge(changes[1].position).unwrap(), 2);
        let left = capture.read(Position::START, 10).unwrap();
        assert_eq!(left, changes[2..]);
        assert_eq!(capture.acknowledge(changes[2].position).unwrap(), 1);

        app.execute("INSERT INTO customers (id, account) VALUES (4, 4)", [])
            .unwrap();
        let next = capture.read(Position::START, 10).unwrap();
        assert_eq!(next.len(), 1);
        assert!(
            next[0].position > changes[2].position,
            "a purged position was reused"
        );
    }

    #[test]
    fn uninstall_removes_every_trace_and_a_new_install_is_a_new_stream() {
        let (_dir, path, mut capture) =
            installed(CUSTOMERS, &[CaptureTable::new("customers", &["id"])]);
        let first = capture
            .install(&[CaptureTable::new("customers", &["id"])])
            .unwrap();
        capture.uninstall().unwrap();
        let app = other_writer(&path);
        let ours: i64 = app
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name LIKE '%dualwrite%'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(ours, 0);
        app.execute("INSERT INTO customers (id, account) VALUES (1, 'x')", [])
            .unwrap();
        assert!(
            capture
                .read(Position::START, 10)
                .unwrap_err()
                .is_unavailable()
        );

        let again = capture
            .install(&[CaptureTable::new("customers", &["id"])])
            .unwrap();
        assert_ne!(again.stream_id, first.stream_id);
        assert_eq!(again.head, Position::START);
    }

    #[test]
    fn install_is_idempotent_and_follows_the_table_list() {
        let (_dir, path, mut capture) = installed(
            "CREATE TABLE a (id INTEGER PRIMARY KEY); CREATE TABLE b (id INTEGER PRIMARY KEY);",
            &[
                CaptureTable::new("a", &["id"]),
                CaptureTable::new("b", &["id"]),
            ],
        );
        let app = other_writer(&path);
        let version = |app: &Connection| -> i64 {
            app.query_row("PRAGMA schema_version", [], |row| row.get(0))
                .unwrap()
        };
        let before = version(&app);
        let info = capture
            .install(&[
                CaptureTable::new("a", &["id"]),
                CaptureTable::new("b", &["id"]),
            ])
            .unwrap();
        assert_eq!(
            version(&app),
            before,
            "a repeated install rewrote the schema"
        );
        assert_eq!(info.tables.len(), 2);

        capture.install(&[CaptureTable::new("a", &["id"])]).unwrap();
        app.execute_batch("INSERT INTO a VALUES (1); INSERT INTO b VALUES (1);")
            .unwrap();
        let entities: Vec<_> = capture
            .read(Position::START, 10)
            .unwrap()
            .into_iter()
            .map(|change| change.entity)
            .collect();
        assert_eq!(entities, ["a"]);
    }

    #[test]
    fn tables_that_do_not_fit_are_refused_with_the_reason() {
        let (_dir, path) = test_database(CUSTOMERS);
        let mut capture = SqliteCapture::open(&path, options()).unwrap();
        for (table, keys, expected) in [
            ("custmers", &["id"][..], "table custmers does not exist"),
            ("customers", &["nr"][..], "has no column nr"),
            ("customers", &["name"][..], "not unique"),
        ] {
            let error = capture
                .install(&[CaptureTable::new(table, keys)])
                .unwrap_err();
            assert!(matches!(error, SideError::Schema(_)), "{error:?}");
            assert!(error.to_string().contains(expected), "{error}");
        }
        // Nothing was installed by the failed attempts.
        let app = other_writer(&path);
        let ours: i64 = app
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name LIKE '_dualwrite%'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(ours, 0);
    }

    #[test]
    fn a_missing_file_is_unavailable_and_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.db");
        let error = SqliteCapture::open(&path, options()).unwrap_err();
        assert!(error.is_unavailable(), "{error:?}");
        assert!(!path.exists());
    }

    #[test]
    fn a_file_moved_away_while_open_is_unavailable() {
        let (dir, path, mut capture) =
            installed(CUSTOMERS, &[CaptureTable::new("customers", &["id"])]);
        std::fs::rename(&path, dir.path().join("elsewhere.db")).unwrap();
        assert!(
            capture
                .read(Position::START, 10)
                .unwrap_err()
                .is_unavailable()
        );
        assert!(
            capture
                .wait(Position::START, Duration::from_millis(5))
                .unwrap_err()
                .is_unavailable()
        );
    }

    #[test]
    fn a_locked_database_defers_the_purge_to_a_later_acknowledge() {
        let (_dir, path, mut capture) =
            installed(CUSTOMERS, &[CaptureTable::new("customers", &["id"])]);
        let app = other_writer(&path);
        app.execute("INSERT INTO customers (id, account) VALUES (1, 'x')", [])
            .unwrap();
        let first = capture.read(Position::START, 10).unwrap();
        assert_eq!(first.len(), 1);
        app.execute_batch("BEGIN IMMEDIATE; INSERT INTO customers (id, account) VALUES (2, 'y');")
            .unwrap();
        // The purge (a write) would wait for the application's lock: it is skipped at
        // once instead, and nothing is lost or dropped.
        assert_eq!(capture.acknowledge(first[0].position).unwrap(), 0);
        app.execute_batch("COMMIT").unwrap();
        let all = capture.read(Position::START, 10).unwrap();
        assert_eq!(all.len(), 2, "the unpurged change is still there: {all:?}");
        // The next acknowledge covers the earlier position too.
        assert_eq!(capture.acknowledge(all[1].position).unwrap(), 2);
        assert!(capture.read(Position::START, 10).unwrap().is_empty());
    }

    #[test]
    fn a_writer_holding_the_lock_briefly_does_not_make_the_side_unavailable() {
        let (_dir, path, _capture) =
            installed(CUSTOMERS, &[CaptureTable::new("customers", &["id"])]);
        let mut writer = SqliteDatabase::open(&path, options()).unwrap();
        let app = other_writer(&path);
        app.execute_batch("BEGIN IMMEDIATE; INSERT INTO customers (id, account) VALUES (3, 'z');")
            .unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            app.execute_batch("COMMIT").unwrap();
        });
        // The busy handler retries in short sleeps until the lock is free.
        writer
            .immediate(|db| {
                db.conn
                    .execute("INSERT INTO customers (id, account) VALUES (4, 'w')", [])
                    .map_err(|error| db.failure(error))
            })
            .unwrap();
        releaser.join().unwrap();
    }

    #[test]
    fn a_reopened_capture_reads_with_the_installed_keys() {
        let (_dir, path, capture) =
            installed(CUSTOMERS, &[CaptureTable::new("customers", &["account"])]);
        drop(capture);
        other_writer(&path)
            .execute("INSERT INTO customers (id, account) VALUES (1, 'C-1')", [])
            .unwrap();
        let mut reopened = SqliteCapture::open(&path, options()).unwrap();
        let changes = reopened.read(Position::START, 10).unwrap();
        assert_eq!(changes[0].key, image(&[("account", text("C-1"))]));
    }

    #[test]
    fn a_schema_change_rebuilds_the_triggers() {
        let (_dir, path, mut capture) =
            installed(CUSTOMERS, &[CaptureTable::new("customers", &["id"])]);
        let app = other_writer(&path);
        app.execute_batch(
            "INSERT INTO customers (id, account) VALUES (1, 'x');
             ALTER TABLE customers ADD COLUMN phone TEXT;",
        )
        .unwrap();
        let first = capture.read(Position::START, 10).unwrap();
        app.execute("UPDATE customers SET phone = '555' WHERE id = 1", [])
            .unwrap();
        let changes = capture.read(first[0].position, 10).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].after.as_ref().unwrap()["phone"], text("555"));
        assert_eq!(changes[0].before.as_ref().unwrap()["phone"], Value::Null);
    }

    #[test]
    fn wide_tables_odd_names_and_any_stored_value_are_captured() {
        let columns: Vec<String> = (0..130).map(|at| format!("\"c {at}\"")).collect();
        let sql = format!(
            "CREATE TABLE \"odd \"\"name\" (id INTEGER PRIMARY KEY, {}, loose, n REAL);",
            columns.join(", ")
        );
        let (_dir, path, mut capture) =
            installed(&sql, &[CaptureTable::new("odd \"name", &["id"])]);
        other_writer(&path)
            .execute(
                "INSERT INTO \"odd \"\"name\" (id, \"c 129\", loose, n) VALUES (1, 'last', x'01', ?1)",
                [0.1 + 0.2],
            )
            .unwrap();
        other_writer(&path)
            .execute(
                "UPDATE \"odd \"\"name\" SET n = 9e999, loose = 'it''s' WHERE id = 1",
                [],
            )
            .unwrap();
        let changes = capture.read(Position::START, 10).unwrap();
        let after = changes[0].after.as_ref().unwrap();
        assert_eq!(after.len(), 133);
        assert_eq!(after["c 129"], text("last"));
        assert_eq!(after["loose"], Value::Bytes(vec![1]));
        assert_eq!(after["n"], Value::Float(0.1 + 0.2));
        let updated = changes[1].after.as_ref().unwrap();
        assert_eq!(updated["n"], Value::Float(f64::INFINITY));
        assert_eq!(updated["loose"], text("it's"));
    }
}
