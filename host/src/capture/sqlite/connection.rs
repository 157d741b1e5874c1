//! Opening a side's SQLite file, and telling apart why SQLite failed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::schema::{IntrospectError, introspect};
use crate::capture::{SideError, TableSchema};

/// How the SQLite connector talks to a side's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// How long to wait for another writer's lock before the side counts as unavailable.
    pub busy_timeout: Duration,
    /// How often [`SqliteCapture::wait`](super::SqliteCapture) looks for new commits.
    pub poll_interval: Duration,
    /// Enforce the table's FOREIGN KEY constraints on the engine's writes (SQLite leaves
    /// them off per connection unless asked).
    pub foreign_keys: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(1),
            foreign_keys: true,
        }
    }
}

/// One connection to a side's database file, with the schema cache both the capture and
/// the apply side of the connector use.
pub(crate) struct SqliteDatabase {
    pub(crate) conn: Connection,
    /// The busy handler's timeout, owned here so it lives as long as the connection
    /// (declared after `conn`, so dropped after it).
    busy_wait: Box<std::cell::Cell<Duration>>,
    pub(crate) options: SqliteOptions,
    path: PathBuf,
    identity: Option<FileIdentity>,
    schema_version: Option<i64>,
    schemas: HashMap<String, Arc<TableSchema>>,
}

/// Which file a path named when it was opened (device and inode), to notice a file that
/// was moved away or replaced: SQLite would go on writing to the old inode.
type FileIdentity = (u64, u64);

fn identity(path: &Path) -> std::io::Result<Option<FileIdentity>> {
    let metadata = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        Ok(Some((metadata.dev(), metadata.ino())))
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        Ok(None)
    }
}

/// Sleep before the `attempt`-th retry of a locked database (0-based): short at first,
/// since the other writer's transaction usually ends within a millisecond (SQLite's
/// default handler sleeps 1, 2, 5, 10 ... 100 ms, which makes a commit that just missed
/// the lock wait far longer than the lock was held).
fn busy_sleep(attempt: u32) -> Duration {
    match attempt {
        0..20 => Duration::from_micros(50),
        20..60 => Duration::from_micros(250),
        _ => Duration::from_millis(1),
    }
}

/// Total time slept before the `attempt`-th retry.
fn busy_slept(attempt: u32) -> Duration {
    let first = attempt.min(20);
    let second = attempt.clamp(20, 60) - 20;
    let rest = attempt.saturating_sub(60);
    busy_sleep(0) * first + busy_sleep(20) * second + busy_sleep(60) * rest
}

/// SQLite calls this while another connection holds the lock: sleep and retry (non-zero)
/// until the timeout has passed, then give up (zero, the statement fails as busy).
#[allow(unsafe_code)]
extern "C" fn busy_wait(
    timeout: *mut std::ffi::c_void,
    attempt: std::ffi::c_int,
) -> std::ffi::c_int {
    // SAFETY: `timeout` is the boxed cell that `install_busy_handler` registered; the
    // `SqliteDatabase` owning it drops its connection first, and the connection is used
    // by one thread at a time (it is not `Sync`), so nothing sets the cell meanwhile.
    let timeout = unsafe { (*(timeout as *const std::cell::Cell<Duration>)).get() };
    let attempt = u32::try_from(attempt).unwrap_or(0);
    if busy_slept(attempt) >= timeout {
        return 0;
    }
    std::thread::sleep(busy_sleep(attempt));
    1
}

/// Registers [`busy_wait`] on `conn` with `timeout` as its limit.
#[allow(unsafe_code)]
fn install_busy_handler(
    conn: &Connection,
    timeout: &std::cell::Cell<Duration>,
) -> rusqlite::Result<()> {
    let context = timeout as *const std::cell::Cell<Duration> as *mut std::ffi::c_void;
    // SAFETY: the handle is this live connection's; the context points into a Box that
    // outlives the connection (see `SqliteDatabase::busy_wait`), and `busy_wait` only
    // reads it.
    let code =
        unsafe { rusqlite::ffi::sqlite3_busy_handler(conn.handle(), Some(busy_wait), context) };
    if code == rusqlite::ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
    }
}

impl SqliteDatabase {
    /// Opens an existing database file (never creates one), in WAL mode.
    pub(crate) fn open(path: &Path, options: SqliteOptions) -> Result<SqliteDatabase, SideError> {
        let unavailable = |message: String| SideError::Unavailable {
            message: format!("{}: {message}", path.display()),
        };
        let identity = identity(path).map_err(|error| unavailable(error.to_string()))?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|error| unavailable(error.to_string()))?;
        let mut database = SqliteDatabase {
            conn,
            busy_wait: Box::new(std::cell::Cell::new(options.busy_timeout)),
            options,
            path: path.to_owned(),
            identity,
            schema_version: None,
            schemas: HashMap::new(),
        };
        database.configure()?;
        Ok(database)
    }

    fn configure(&mut self) -> Result<(), SideError> {
        let conn = &self.conn;
        let result = (|| {
            install_busy_handler(conn, &self.busy_wait)?;
            conn.set_prepared_statement_cache_capacity(256);
            let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                let mode: String =
                    conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
                if !mode.eq_ignore_ascii_case("wal") {
                    return Ok(Some(mode));
                }
            }
            // A commit must survive power loss before the engine acknowledges the source.
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.pragma_update(None, "foreign_keys", self.options.foreign_keys)?;
            Ok(None)
        })();
        match result {
            Ok(None) => Ok(()),
            Ok(Some(mode)) => Err(self.unavailable(format!(
                "cannot switch the database to WAL mode (it stays in {mode} mode)"
            ))),
            Err(error) => Err(self.failure(error)),
        }
    }

    /// Runs `body` with no waiting for another writer's lock: a busy database fails at
    /// once instead of after the busy timeout.
    pub(crate) fn without_waiting<T>(&mut self, body: impl FnOnce(&mut SqliteDatabase) -> T) -> T {
        let timeout = self.busy_wait.replace(Duration::ZERO);
        let result = body(self);
        self.busy_wait.set(timeout);
        result
    }

    /// Whether `error` is SQLite's "another connection holds the lock".
    pub(crate) fn is_busy(error: &rusqlite::Error) -> bool {
        matches!(
            error,
            rusqlite::Error::SqliteFailure(failure, _)
                if matches!(failure.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        )
    }

    /// An unavailable-side error about this file.
    pub(crate) fn unavailable(&self, message: impl std::fmt::Display) -> SideError {
        SideError::Unavailable {
            message: format!("{}: {message}", self.path.display()),
        }
    }

    /// A SQLite failure outside a write: the side is not usable as it is.
    pub(crate) fn failure(&self, error: rusqlite::Error) -> SideError {
        match &error {
            rusqlite::Error::SqliteFailure(failure, _)
                if matches!(
                    failure.code,
                    ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked
                ) =>
            {
                self.unavailable(format!(
                    "{error} (still locked after {:?})",
                    self.options.busy_timeout
                ))
            }
            _ => self.unavailable(error),
        }
    }

    /// A SQLite failure while writing: a rejection when the store refused the data (a
    /// constraint, a type), [`failure`](Self::failure) otherwise.
    pub(crate) fn write_failure(
        &self,
        error: rusqlite::Error,
        index: Option<usize>,
        table: &str,
    ) -> SideError {
        match &error {
            rusqlite::Error::SqliteFailure(failure, message)
                if matches!(
                    failure.code,
                    ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig
                ) =>
            {
                SideError::Rejected {
                    index,
                    table: table.to_owned(),
                    message: message.clone().unwrap_or_else(|| error.to_string()),
                    dependency: failure.extended_code
                        == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY,
                }
            }
            _ => self.failure(error),
        }
    }

    /// Fails when the path no longer names the file that was opened (moved away,
    /// deleted, replaced): writes would go to a file nobody reads.
    pub(crate) fn check_file(&self) -> Result<(), SideError> {
        match identity(&self.path) {
            Ok(now) if now == self.identity => Ok(()),
            Ok(_) => Err(self.unavailable("the file was replaced since it was opened")),
            Err(error) => Err(self.unavailable(format!("the file is gone ({error})"))),
        }
    }

    /// Runs `body` in a `BEGIN IMMEDIATE` transaction (the write lock is taken up front,
    /// waiting up to the busy timeout); commits when it succeeds, rolls back otherwise.
    pub(crate) fn immediate<T>(
        &mut self,
        body: impl FnOnce(&mut SqliteDatabase) -> Result<T, SideError>,
    ) -> Result<T, SideError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|error| self.failure(error))?;
        let result = body(self).and_then(|value| {
            self.conn
                .execute_batch("COMMIT")
                .map(|()| value)
                .map_err(|error| self.write_failure(error, None, ""))
        });
        if result.is_err() && !self.conn.is_autocommit() {
            // Nothing to add if this fails too: the connection is then unusable and the
            // caller already has the first error.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        result
    }

    /// Whether the schema changed since the last call (any process's `CREATE`, `ALTER`,
    /// `DROP`); clears the table cache when it did. Cheap: reads the file header.
    pub(crate) fn schema_changed(&mut self) -> Result<bool, SideError> {
        let version: i64 = self
            .conn
            .prepare_cached("PRAGMA schema_version")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
            .map_err(|error| self.failure(error))?;
        if self.schema_version == Some(version) {
            return Ok(false);
        }
        self.schema_version = Some(version);
        self.schemas.clear();
        Ok(true)
    }

    /// The schema of `table`, cached until the database's schema changes (callers check
    /// [`schema_changed`](Self::schema_changed) first).
    pub(crate) fn table(&mut self, table: &str) -> Result<Arc<TableSchema>, SideError> {
        if let Some(schema) = self.schemas.get(table) {
            return Ok(Arc::clone(schema));
        }
        let schema = Arc::new(introspect(&self.conn, table).map_err(|error| match error {
            IntrospectError::Schema(error) => SideError::Schema(error),
            IntrospectError::Sql(error) => self.failure(error),
        })?);
        self.schemas.insert(table.to_owned(), Arc::clone(&schema));
        Ok(schema)
    }
}
