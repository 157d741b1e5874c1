//! Reading a side's committed changes: the boundary every connector's capture implements.
//!
//! A connector turns the commits of its store (triggers, a write-ahead log, a binlog)
//! into one ordered stream of [`CapturedChange`]s per side. The sync loop installs
//! capture for the entities its maps cover ([`CaptureStream::install`]), reads bounded
//! batches after its checkpoint ([`CaptureStream::read`]), makes sure a batch's commits
//! are visible to reads of the side before it decides anything from a read
//! ([`CaptureStream::await_visible`]), sleeps in [`CaptureStream::wait`] until a commit
//! by anyone arrives, and, once the writes a batch caused and the checkpoint are
//! durable, [`CaptureStream::acknowledge`]s it so the store may drop what it kept for
//! us. Nothing leaves the stream before it is acknowledged, so redelivery after a crash
//! is the normal case and the writes on the other side are idempotent (see
//! [`crate::apply`]).
//!
//! Row images are column name -> [`Value`] ([`RowImage`]): every column of the table, not
//! only the mapped ones, so several maps can share an entity and field-level deltas can
//! be computed. The types shared with [`crate::apply`] live here too: table
//! introspection ([`TableSchema`], checked against a map with [`TableSchema::check_map`])
//! and the error type ([`SideError`]), which keeps apart a side that is unreachable, a
//! write the target refused and a map that does not fit the table.
//!
//! Connectors: [`sqlite`] (triggers into a change-log table; also the shared SQLite
//! plumbing used by [`crate::apply::sqlite`]), [`postgres`] (logical decoding with
//! pgoutput; also the shared PostgreSQL plumbing used by [`crate::apply::postgres`])
//! and [`mysql`] (MariaDB/MySQL: the row-format binary log; also the shared plumbing
//! used by [`crate::apply::mysql`]).

pub mod mysql;
pub mod postgres;
pub mod sqlite;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use crate::change::{ChangeOp, ErrorClass, Fidelity, Value, ValueKind};

/// A row, or part of one (a key, the fields of a write): column name -> value.
pub type RowImage = BTreeMap<String, Value>;

/// Where a change sits in its side's stream; totally ordered.
///
/// `sequence` follows commit order; `index` orders the changes of one transaction when
/// the store exposes transactions (PostgreSQL, MariaDB). Checkpoints store both, never a
/// bare sequence. The SQLite connector gives every captured row its own sequence number,
/// so its `index` is always 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    /// Commit-ordered sequence number in the side's change stream.
    pub sequence: u64,
    /// Index of the change within its transaction.
    pub index: u32,
}

impl Position {
    /// Before the first change of a stream.
    pub const START: Position = Position {
        sequence: 0,
        index: 0,
    };

    /// The position `(sequence, index)`.
    pub fn new(sequence: u64, index: u32) -> Position {
        Position { sequence, index }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.sequence, self.index)
    }
}

/// An entity to capture and the columns that identify its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureTable {
    /// Table name, exactly as declared in the store.
    pub table: String,
    /// Key columns (the map's key fields on this side); they must form a unique key.
    pub key_columns: Vec<String>,
}

impl CaptureTable {
    /// Capture `table`, identifying rows by `key_columns`.
    pub fn new(table: impl Into<String>, key_columns: &[&str]) -> CaptureTable {
        CaptureTable {
            table: table.into(),
            key_columns: key_columns
                .iter()
                .map(|column| (*column).to_owned())
                .collect(),
        }
    }
}

/// One committed row event on a side.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedChange {
    /// Where it sits in the side's stream.
    pub position: Position,
    /// The table it happened to.
    pub entity: String,
    /// Insert, update or delete.
    pub op: ChangeOp,
    /// The key columns and their values: after the change for an insert or update,
    /// before it for a delete. An update that changed the key has the old key in
    /// [`before`](Self::before) (see [`previous_key`](Self::previous_key)).
    pub key: RowImage,
    /// The whole row after the change (insert, update); `None` for a delete.
    pub after: Option<RowImage>,
    /// The whole row before the change (update, delete) when the connector knows it.
    pub before: Option<RowImage>,
    /// When the change was made, if the store records it (for lag figures; never used
    /// for ordering or conflict resolution).
    pub committed_at: Option<SystemTime>,
}

impl CapturedChange {
    /// The row a plugin sees: the image after an insert or update, before a delete.
    pub fn row(&self) -> Option<&RowImage> {
        match self.op {
            ChangeOp::Delete => self.before.as_ref(),
            ChangeOp::Insert | ChangeOp::Update => self.after.as_ref(),
        }
    }

    /// For an update with a known before image, the columns whose value changed, in name
    /// order; empty otherwise.
    pub fn changed_columns(&self) -> Vec<&str> {
        let (Some(before), Some(after)) = (&self.before, &self.after) else {
            return Vec::new();
        };
        after
            .iter()
            .filter(|(column, value)| before.get(*column) != Some(*value))
            .map(|(column, _)| column.as_str())
            .collect()
    }

    /// For an update that changed a key column, the key the row had before.
    pub fn previous_key(&self) -> Option<RowImage> {
        let before = self
            .before
            .as_ref()
            .filter(|_| self.op == ChangeOp::Update)?;
        let old: RowImage = self
            .key
            .keys()
            .map(|column| {
                let value = before.get(column).cloned().unwrap_or(Value::Null);
                (column.clone(), value)
            })
            .collect();
        (old != self.key).then_some(old)
    }
}

/// What [`CaptureStream::install`] found or set up.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureInfo {
    /// Identifies this change stream. It changes when the stream is recreated (after an
    /// uninstall, or a restore of an older file); a checkpoint taken on another stream
    /// id is meaningless here and the engine must start over (initial sync).
    pub stream_id: String,
    /// The last position the stream has handed out (or [`Position::START`]).
    pub head: Position,
    /// The captured tables as introspected, in the order given.
    pub tables: Vec<TableSchema>,
}

/// A side's change stream. One reader per side; the sync loop owns it.
///
/// A [`SideError::Unavailable`] from any method means the connection is no longer
/// usable: drop the stream, put the side offline and open a new one later.
pub trait CaptureStream: Send {
    /// Makes the side capture exactly `tables` (idempotent; tables captured before and
    /// not listed any more stop being captured). Checks that every table exists and that
    /// its key columns form a unique key. Call it after every (re)connect and compare
    /// the returned stream id with the checkpoint's.
    fn install(&mut self, tables: &[CaptureTable]) -> Result<CaptureInfo, SideError>;

    /// Up to `limit` changes strictly after `after`, in commit order.
    fn read(&mut self, after: Position, limit: usize) -> Result<Vec<CapturedChange>, SideError>;

    /// Blocks until every change this stream handed out at or before `through` is
    /// visible to reads the side starts from now on (any session), or `limit` passes
    /// ([`SideError::Unavailable`] naming what it waited for; nothing is lost, the
    /// changes are handed out again).
    ///
    /// A log-based capture can receive a commit before the store makes it visible to
    /// other sessions; the engine re-reads each captured row and would take a read that
    /// predates the commit for an echo. It calls this on every batch before deciding
    /// anything. Default: nothing to wait for (a store whose changes are read only after
    /// their commit, as SQLite's trigger-written log).
    fn await_visible(&mut self, through: Position, limit: Duration) -> Result<(), SideError> {
        let _ = (through, limit);
        Ok(())
    }

    /// Blocks until a change after `after` is committed (by any process) or `timeout`
    /// passes; `true` when there is something to read. Returns within milliseconds of
    /// the commit.
    fn wait(&mut self, after: Position, timeout: Duration) -> Result<bool, SideError>;

    /// The last position handed out so far (acknowledged or not).
    fn head(&mut self) -> Result<Position, SideError>;

    /// Lets the store forget every change up to and including `through`; returns how many
    /// were dropped. Call only once the writes they caused and the checkpoint are durable.
    /// A connector may defer the dropping (the SQLite one skips it while an application
    /// holds the write lock); a later acknowledge covers every earlier position.
    fn acknowledge(&mut self, through: Position) -> Result<u64, SideError>;

    /// Removes everything [`install`](Self::install) set up, including unacknowledged
    /// changes.
    fn uninstall(&mut self) -> Result<(), SideError>;

    /// Bytes of its log the side keeps for the engine because they are not confirmed
    /// yet (a PostgreSQL replication slot's lag); `None` for a connector without such a
    /// measure. It costs a query: call it now and then, not per step.
    fn retained_bytes(&mut self) -> Result<Option<u64>, SideError> {
        Ok(None)
    }
}

/// Why a side could not do what was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SideError {
    /// The store cannot be reached: the file is missing or was replaced, the server is
    /// down, or it stayed locked beyond the busy timeout. Retry later with backoff; the
    /// side is offline meanwhile.
    #[error("side unavailable: {message}")]
    Unavailable {
        /// What happened, with the store's own message.
        message: String,
    },
    /// The target refused a write of a batch (a constraint, a type, a value it cannot
    /// hold). The whole batch was rolled back; retrying it without write `index` can
    /// succeed.
    #[error("{} rejected by the target: {message}", rejected_write(*index, table))]
    Rejected {
        /// Index of the offending write in the batch; `None` when the store refused only
        /// at commit (a deferred constraint), so the batch must be narrowed down.
        index: Option<usize>,
        /// The offending write's table (empty when `index` is `None`).
        table: String,
        /// The store's reason.
        message: String,
        /// The write refers to a row that does not exist (a foreign key): it can succeed
        /// once that row is synced.
        dependency: bool,
    },
    /// The map does not fit the store's schema: a configuration problem.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The server refuses the connector for a reason an operator must fix: wrong
    /// credentials, a missing privilege, a server setting, a replication slot that was
    /// dropped or moved behind the engine's back. Retrying does not help; `code` is a
    /// stable name for the fault (`pg.bad_credentials`, `pg.slot_lost`, ...).
    #[error("[{code}] {message}")]
    Refused {
        /// Stable, greppable name of the fault.
        code: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A change in the stream cannot be decoded (a damaged change log). Changes before it
    /// were returned by earlier reads; the engine records this one and reads on after it.
    #[error("the change at {position} cannot be read: {message}")]
    Unreadable {
        /// Where the change is.
        position: Position,
        /// What is wrong with it.
        message: String,
    },
}

impl SideError {
    /// The error-queue class of a change that failed with this error, when it is about a
    /// change rather than the configuration.
    pub fn class(&self) -> Option<ErrorClass> {
        match self {
            SideError::Unavailable { .. } => Some(ErrorClass::TargetUnavailable),
            SideError::Rejected {
                dependency: true, ..
            } => Some(ErrorClass::DependencyMissing),
            SideError::Rejected { .. } => Some(ErrorClass::TargetRejected),
            SideError::Schema(_) | SideError::Refused { .. } | SideError::Unreadable { .. } => None,
        }
    }

    /// Whether the side should be put offline and retried later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, SideError::Unavailable { .. })
    }
}

/// How a map's table, key or fields do not fit the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// No such table.
    #[error("table {table} does not exist{}", hint_suffix(hint))]
    MissingTable {
        /// The name asked for.
        table: String,
        /// A near match or what the name is instead (a view), if any.
        hint: Option<String>,
    },
    /// The name belongs to something that cannot be captured or written.
    #[error("{table} cannot be synced: {reason}")]
    Unsupported {
        /// The name asked for.
        table: String,
        /// Why not.
        reason: String,
    },
    /// Columns the map names that the table does not have.
    #[error("table {table} has no column {}; its columns are {}", missing.join(", "), available.join(", "))]
    MissingColumns {
        /// The table.
        table: String,
        /// The missing column names.
        missing: Vec<String>,
        /// The table's columns.
        available: Vec<String>,
    },
    /// The key columns are not a primary key or unique index of the table, so rows
    /// cannot be identified (nor upserted) by them.
    #[error(
        "the key ({}) of table {table} is not unique: declare a PRIMARY KEY or a UNIQUE index on exactly these columns{}",
        key.join(", "),
        unique_suffix(unique_keys)
    )]
    KeyNotUnique {
        /// The table.
        table: String,
        /// The map's key columns.
        key: Vec<String>,
        /// The table's unique keys (primary key first).
        unique_keys: Vec<Vec<String>>,
    },
    /// The map writes a column the store computes.
    #[error("column {column} of table {table} is generated and cannot be written")]
    GeneratedColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// A map without key columns.
    #[error("no key columns given for table {table}")]
    EmptyKey {
        /// The table.
        table: String,
    },
}

fn rejected_write(index: Option<usize>, table: &str) -> String {
    match index {
        Some(index) => format!("write {index} (table {table})"),
        None => "the batch".to_owned(),
    }
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref()
        .map(|hint| format!(" ({hint})"))
        .unwrap_or_default()
}

fn unique_suffix(unique_keys: &[Vec<String>]) -> String {
    if unique_keys.is_empty() {
        " (the table has no unique key)".to_owned()
    } else {
        let keys: Vec<String> = unique_keys
            .iter()
            .map(|key| format!("({})", key.join(", ")))
            .collect();
        format!(" (its unique keys are {})", keys.join(", "))
    }
}

/// A table as the store declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// Table name as declared.
    pub table: String,
    /// Columns in declaration order.
    pub columns: Vec<ColumnInfo>,
    /// Primary key columns in key order; empty when the table has none.
    pub primary_key: Vec<String>,
    /// Every unique key (primary key and non-partial unique indexes and constraints),
    /// each in index order.
    pub unique_keys: Vec<Vec<String>>,
}

/// One column of a [`TableSchema`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    /// Column name as declared.
    pub name: String,
    /// The declared type as written (may be empty).
    pub declared_type: String,
    /// The kind of values the column holds, from its declared type ([`ValueKind::Any`]
    /// when the type says nothing).
    pub kind: ValueKind,
    /// The declared scale of a decimal column (`DECIMAL(18,2)` -> 2).
    pub scale: Option<u32>,
    /// How the column keeps what is written to it: which values mean the same there
    /// (see [`Fidelity`]).
    pub fidelity: Fidelity,
    /// The limits its declared type sets on what it holds, where the store enforces them.
    pub capacity: Capacity,
    /// Declared NOT NULL.
    pub not_null: bool,
    /// Has a default value.
    pub has_default: bool,
    /// Computed by the store; read-only.
    pub generated: bool,
}

/// What a column holds without altering it, as far as its declared type says and the
/// store enforces it (`None`: no declared limit). `dualwrite check` compares the columns a
/// map copies between ([`crate::check`]); a value beyond what the column keeps that the
/// schema did not foresee is refused at write time ([`crate::apply::check_stored`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capacity {
    /// Most decimal digits of a number (`numeric(10,2)`: 10).
    pub digits: Option<u32>,
    /// Most fraction digits of a number (`numeric(10,2)`: 2).
    pub scale: Option<u32>,
    /// Most characters of a text (`varchar(40)`, `char(5)`).
    pub chars: Option<u32>,
}

impl Capacity {
    /// The limits in a declared type's parentheses: `numeric(10,2)`, `decimal(10)`,
    /// `varchar(40)`, `character(5)`; nothing for other kinds or without them.
    pub(crate) fn declared(kind: ValueKind, declared: &str) -> Capacity {
        let inside = declared
            .split_once('(')
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(inside, _)| inside);
        let number = |text: &str| text.trim().parse::<u32>().ok();
        match (kind, inside) {
            (ValueKind::Decimal, Some(inside)) => match inside.split_once(',') {
                Some((digits, scale)) => Capacity {
                    digits: number(digits),
                    scale: number(scale),
                    chars: None,
                },
                None => Capacity {
                    digits: number(inside),
                    scale: Some(0),
                    chars: None,
                },
            },
            (ValueKind::Text, Some(inside)) => Capacity {
                chars: number(inside),
                ..Capacity::default()
            },
            _ => Capacity::default(),
        }
    }

    /// Why a column of this capacity cannot hold every value of one of `source`'s,
    /// if it cannot (both limits declared).
    pub fn narrower_than(&self, source: &Capacity) -> Option<String> {
        if let (Some(kept), Some(sent)) = (self.scale, source.scale)
            && kept < sent
        {
            return Some(format!("{sent} fraction digits into {kept}"));
        }
        if let (Some(digits), Some(scale), Some(source_digits), Some(source_scale)) =
            (self.digits, self.scale, source.digits, source.scale)
            && digits.saturating_sub(scale) < source_digits.saturating_sub(source_scale)
        {
            return Some(format!(
                "{} integer digits into {}",
                source_digits.saturating_sub(source_scale),
                digits.saturating_sub(scale)
            ));
        }
        if let (Some(kept), Some(sent)) = (self.chars, source.chars)
            && kept < sent
        {
            return Some(format!("{sent} characters into {kept}"));
        }
        None
    }
}

impl TableSchema {
    /// The column named `name` (exact match).
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|column| column.name == name)
    }

    /// The column names in declaration order.
    pub fn column_names(&self) -> Vec<String> {
        self.columns
            .iter()
            .map(|column| column.name.clone())
            .collect()
    }

    /// Whether `columns` are exactly (in any order) the columns of a unique key.
    pub fn is_unique_key(&self, columns: &[String]) -> bool {
        !columns.is_empty()
            && self.unique_keys.iter().any(|key| {
                key.len() == columns.len() && key.iter().all(|column| columns.contains(column))
            })
    }

    /// Checks that `columns` exist; with `writable`, also that none is generated.
    pub fn check_columns<'a>(
        &self,
        columns: impl IntoIterator<Item = &'a str>,
        writable: bool,
    ) -> Result<(), SchemaError> {
        let mut missing = Vec::new();
        for name in columns {
            match self.column(name) {
                None => {
                    // SQL names are case-insensitive, images are not: say so.
                    let near = self
                        .columns
                        .iter()
                        .find(|column| column.name.eq_ignore_ascii_case(name));
                    missing.push(match near {
                        Some(column) => format!("{name} (did you mean {}?)", column.name),
                        None => name.to_owned(),
                    });
                }
                Some(column) if writable && column.generated => {
                    return Err(SchemaError::GeneratedColumn {
                        table: self.table.clone(),
                        column: name.to_owned(),
                    });
                }
                Some(_) => {}
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(SchemaError::MissingColumns {
                table: self.table.clone(),
                missing,
                available: self.column_names(),
            })
        }
    }

    /// Checks that `key_columns` exist and form a unique key.
    pub fn check_key(&self, key_columns: &[String]) -> Result<(), SchemaError> {
        if key_columns.is_empty() {
            return Err(SchemaError::EmptyKey {
                table: self.table.clone(),
            });
        }
        self.check_columns(key_columns.iter().map(String::as_str), false)?;
        if self.is_unique_key(key_columns) {
            Ok(())
        } else {
            Err(SchemaError::KeyNotUnique {
                table: self.table.clone(),
                key: key_columns.to_vec(),
                unique_keys: self.unique_keys.clone(),
            })
        }
    }

    /// Checks a map against the table: the key is unique and every field exists. With
    /// `writable` (the map writes this side), the fields must not be generated.
    pub fn check_map(
        &self,
        key_columns: &[String],
        fields: &[String],
        writable: bool,
    ) -> Result<(), SchemaError> {
        self.check_key(key_columns)?;
        self.check_columns(fields.iter().map(String::as_str), writable)
    }
}

/// The changes a streaming capture received after its floor and not yet acknowledged,
/// in stream order; one it could not read is kept as why.
pub(crate) type ChangeBuffer =
    std::collections::VecDeque<(Position, Result<CapturedChange, String>)>;

/// The changes of `buffer` after `after`, at most `limit`; an unreadable one ends them
/// ([`SideError::Unreadable`] when it is the first).
pub(crate) fn buffered(
    buffer: &ChangeBuffer,
    after: Position,
    limit: usize,
) -> Result<Vec<CapturedChange>, SideError> {
    let mut changes = Vec::new();
    for (position, change) in buffer.iter().filter(|(position, _)| *position > after) {
        if changes.len() >= limit {
            break;
        }
        match change {
            Ok(change) => changes.push(change.clone()),
            Err(message) if changes.is_empty() => {
                return Err(SideError::Unreadable {
                    position: *position,
                    message: message.clone(),
                });
            }
            Err(_) => break,
        }
    }
    Ok(changes)
}

/// Whether `buffer` holds a change after `after`.
pub(crate) fn has_after(buffer: &ChangeBuffer, after: Position) -> bool {
    buffer.back().is_some_and(|(position, _)| *position > after)
}

/// First and longest pause between two looks of [`poll_visible`].
const VISIBLE_POLL_FIRST: Duration = Duration::from_millis(1);
const VISIBLE_POLL_MAX: Duration = Duration::from_millis(50);

/// Asks `pending` until it names nothing more to wait for (`Ok(None)`): at once, then
/// after 1 ms, doubling up to 50 ms, until `limit` has passed. Then the side is
/// unavailable, the message naming the last thing `pending` waited for. The streaming
/// captures' [`CaptureStream::await_visible`] loop.
pub(crate) fn poll_visible(
    url: &str,
    limit: Duration,
    mut pending: impl FnMut() -> Result<Option<String>, SideError>,
) -> Result<(), SideError> {
    let started = std::time::Instant::now();
    let mut pause = VISIBLE_POLL_FIRST;
    let mut looks = 0u32;
    loop {
        looks += 1;
        let Some(waiting_for) = pending()? else {
            if looks > 1 {
                tracing::debug!(
                    %url,
                    looks,
                    waited = ?started.elapsed(),
                    "captured commits became visible after a wait"
                );
            }
            return Ok(());
        };
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(SideError::Unavailable {
                message: format!(
                    "{url}: {waiting_for} was captured but is still not visible to other \
                     sessions after {limit:?} (a commit held between its log write and its \
                     visibility, e.g. by synchronous replication); its changes are read \
                     again later"
                ),
            });
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(VISIBLE_POLL_MAX);
    }
}

/// The next message from a reader thread's channel, waiting up to `timeout` (not at all
/// when zero): `Ok(None)` when nothing came, `Err(())` when the reader is gone.
pub(crate) fn receive<T>(
    receiver: &std::sync::mpsc::Receiver<T>,
    timeout: Duration,
) -> Result<Option<T>, ()> {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
    let result = if timeout.is_zero() {
        receiver.try_recv().map_err(|error| match error {
            TryRecvError::Empty => RecvTimeoutError::Timeout,
            TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
        })
    } else {
        receiver.recv_timeout(timeout)
    };
    match result {
        Ok(message) => Ok(Some(message)),
        Err(RecvTimeoutError::Timeout) => Ok(None),
        Err(RecvTimeoutError::Disconnected) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> TableSchema {
        let column = |name: &str, generated| ColumnInfo {
            name: name.to_owned(),
            declared_type: "TEXT".to_owned(),
            kind: ValueKind::Text,
            scale: None,
            fidelity: Fidelity::Exact,
            capacity: Capacity::default(),
            not_null: false,
            has_default: false,
            generated,
        };
        TableSchema {
            table: "customers".to_owned(),
            columns: vec![
                column("id", false),
                column("AccountNum", false),
                column("company", false),
                column("label", true),
            ],
            primary_key: vec!["id".to_owned()],
            unique_keys: vec![
                vec!["id".to_owned()],
                vec!["AccountNum".to_owned(), "company".to_owned()],
            ],
        }
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn keys_must_match_a_unique_key_exactly_in_any_order() {
        let schema = schema();
        assert!(schema.check_key(&names(&["company", "AccountNum"])).is_ok());
        assert!(schema.check_key(&names(&["id"])).is_ok());
        let error = schema.check_key(&names(&["AccountNum"])).unwrap_err();
        assert!(matches!(error, SchemaError::KeyNotUnique { .. }));
        let message = error.to_string();
        assert!(message.contains("(AccountNum, company)"), "{message}");
        assert!(matches!(
            schema.check_key(&[]),
            Err(SchemaError::EmptyKey { .. })
        ));
    }

    #[test]
    fn missing_columns_are_listed_with_case_hints() {
        let error = schema()
            .check_map(&names(&["id"]), &names(&["accountnum", "nope"]), true)
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("accountnum (did you mean AccountNum?)"),
            "{message}"
        );
        assert!(message.contains("nope"), "{message}");
        assert!(message.contains("its columns are id, AccountNum, company, label"));
    }

    #[test]
    fn generated_columns_are_read_only() {
        let schema = schema();
        assert!(
            schema
                .check_map(&names(&["id"]), &names(&["label"]), false)
                .is_ok()
        );
        assert!(matches!(
            schema.check_map(&names(&["id"]), &names(&["label"]), true),
            Err(SchemaError::GeneratedColumn { .. })
        ));
    }

    #[test]
    fn changed_columns_and_previous_key_come_from_the_images() {
        let image = |id: i64, name: &str| -> RowImage {
            [
                ("id".to_owned(), Value::Integer(id)),
                ("name".to_owned(), Value::Text(name.to_owned())),
            ]
            .into()
        };
        let change = CapturedChange {
            position: Position::new(1, 0),
            entity: "t".to_owned(),
            op: ChangeOp::Update,
            key: [("id".to_owned(), Value::Integer(2))].into(),
            after: Some(image(2, "b")),
            before: Some(image(1, "a")),
            committed_at: None,
        };
        assert_eq!(change.changed_columns(), vec!["id", "name"]);
        assert_eq!(
            change.previous_key(),
            Some([("id".to_owned(), Value::Integer(1))].into())
        );
        assert_eq!(change.row(), Some(&image(2, "b")));
    }

    #[test]
    fn capacities_come_from_declared_types_and_compare_limit_by_limit() {
        let numeric = Capacity::declared(ValueKind::Decimal, "numeric(10,2)");
        assert_eq!(
            numeric,
            Capacity {
                digits: Some(10),
                scale: Some(2),
                chars: None
            }
        );
        let integer_only = Capacity::declared(ValueKind::Decimal, "decimal(12)");
        assert_eq!(
            (integer_only.digits, integer_only.scale),
            (Some(12), Some(0))
        );
        assert_eq!(
            Capacity::declared(ValueKind::Text, "character varying(40)").chars,
            Some(40)
        );
        assert_eq!(
            Capacity::declared(ValueKind::Text, "text"),
            Capacity::default()
        );
        assert_eq!(
            Capacity::declared(ValueKind::Decimal, "numeric"),
            Capacity::default()
        );

        let wide = Capacity::declared(ValueKind::Decimal, "numeric(20,4)");
        assert_eq!(
            numeric.narrower_than(&wide).as_deref(),
            Some("4 fraction digits into 2")
        );
        let more_integers = Capacity::declared(ValueKind::Decimal, "numeric(14,2)");
        assert_eq!(
            numeric.narrower_than(&more_integers).as_deref(),
            Some("12 integer digits into 8")
        );
        assert_eq!(wide.narrower_than(&numeric), None);
        // Without a declared limit on either side there is nothing to compare.
        assert_eq!(numeric.narrower_than(&Capacity::default()), None);
        assert_eq!(Capacity::default().narrower_than(&wide), None);
        let short = Capacity::declared(ValueKind::Text, "char(5)");
        let long = Capacity::declared(ValueKind::Text, "varchar(50)");
        assert_eq!(
            short.narrower_than(&long).as_deref(),
            Some("50 characters into 5")
        );
        assert_eq!(long.narrower_than(&short), None);
    }

    #[test]
    fn visibility_polls_until_nothing_is_pending_or_the_limit_passes() {
        let mut looks = 0;
        let proven = poll_visible("db", Duration::from_secs(60), || {
            looks += 1;
            Ok((looks < 4).then(|| "transaction 7".to_owned()))
        });
        assert_eq!(proven, Ok(()));
        assert_eq!(looks, 4, "looked again until nothing was pending");

        let held = poll_visible("db", Duration::from_millis(5), || {
            Ok(Some("transaction 7".to_owned()))
        });
        let Err(SideError::Unavailable { message }) = held else {
            panic!("not unavailable: {held:?}");
        };
        assert!(message.contains("db: transaction 7"), "{message}");

        let failed = poll_visible("db", Duration::from_secs(60), || {
            Err(SideError::Unavailable {
                message: "gone".to_owned(),
            })
        });
        assert_eq!(
            failed,
            Err(SideError::Unavailable {
                message: "gone".to_owned()
            })
        );
    }

    #[test]
    fn positions_order_by_sequence_then_index() {
        assert!(Position::new(1, 5) < Position::new(2, 0));
        assert!(Position::new(2, 0) < Position::new(2, 1));
        assert_eq!(Position::START.to_string(), "0.0");
    }
}
