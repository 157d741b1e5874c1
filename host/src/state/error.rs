//! What can go wrong in the state store.

use std::path::PathBuf;

use rusqlite::ErrorCode;

use crate::change::Side;

/// A state store failure. Every variant names what failed; none is retried inside the
/// store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The data directory or the lock file could not be created or opened.
    #[error("cannot use {path}: {source}")]
    FileSystem {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another process (or another store in this one) has the state store open.
    #[error(
        "the state store {path} is in use by another dualwrite process (lock file {path}.lock)"
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// SQLite could not open the file or set it up (WAL, durability).
    #[error("cannot open the state store {path}: {detail}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The file is an SQLite database of something else.
    #[error("{path} is not a dualwrite state store: {detail}")]
    NotAStateStore {
        /// The database file.
        path: PathBuf,
        /// Why it is not.
        detail: String,
    },
    /// The store was written by a newer dualwrite.
    #[error(
        "the state store {path} has schema version {found}, but this dualwrite supports up \
         to {supported}; run a newer dualwrite or restore an older state directory"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The store's version.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A schema migration failed; the store is left at the version before it.
    #[error("migrating the state store {path} to schema version {version} failed: {source}")]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The version being migrated to.
        version: i64,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A row read back from the store does not hold what the store writes.
    #[error("corrupt state: table {table}, row {row}: {detail}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The row (its id or key).
        row: String,
        /// What is wrong with it.
        detail: String,
    },
    /// SQLite reports the database file damaged.
    #[error("the state store file is damaged ({operation}): {source}")]
    CorruptFile {
        /// What the store was doing.
        operation: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The disk, the file system or a lock failed (I/O error, disk full, read-only,
    /// busy).
    #[error("state store I/O failed ({operation}): {source}")]
    Io {
        /// What the store was doing.
        operation: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// Any other SQLite failure (a bug in the store's SQL).
    #[error("state store query failed ({operation}): {source}")]
    Database {
        /// What the store was doing.
        operation: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The map was never registered.
    #[error("map {map} is not registered in the state store")]
    UnknownMap {
        /// The map's name.
        map: String,
    },
    /// A retry or resolution names an error that does not exist or is already resolved.
    #[error("error {id} is not an open error")]
    ErrorNotOpen {
        /// The error's id.
        id: u64,
    },
    /// Something given to the store cannot be stored as it is (an empty key, a value
    /// that would not come back exactly).
    #[error("cannot store {what}: {detail}")]
    Invalid {
        /// What was given.
        what: String,
        /// Why it cannot be stored.
        detail: String,
    },
    /// Two maps link rows of the same entity and translate the key differently.
    #[error(
        "translating a key of {side} entity {entity} is ambiguous: maps {first} and {second} \
         link it to different rows"
    )]
    AmbiguousTranslation {
        /// The side of the key.
        side: Side,
        /// The entity.
        entity: String,
        /// One map.
        first: String,
        /// Another map.
        second: String,
    },
}

impl StateError {
    /// Wraps an SQLite error raised while doing `operation`, sorted by its cause.
    pub(super) fn sqlite(operation: &'static str, source: rusqlite::Error) -> StateError {
        match source.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                StateError::CorruptFile { operation, source }
            }
            Some(
                ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::PermissionDenied
                | ErrorCode::ReadOnly
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::FileLockingProtocolFailed
                | ErrorCode::NoLargeFileSupport,
            ) => StateError::Io { operation, source },
            _ => StateError::Database { operation, source },
        }
    }

    /// Whether the store's data or file is damaged (as opposed to unreachable or misused).
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            StateError::Corrupt { .. } | StateError::CorruptFile { .. }
        )
    }
}

/// Adds the operation to an SQLite result's error.
pub(super) trait SqliteContext<T> {
    /// Wraps the error as [`StateError::sqlite`] with `operation`.
    fn during(self, operation: &'static str) -> Result<T, StateError>;
}

impl<T> SqliteContext<T> for Result<T, rusqlite::Error> {
    fn during(self, operation: &'static str) -> Result<T, StateError> {
        self.map_err(|source| StateError::sqlite(operation, source))
    }
}
