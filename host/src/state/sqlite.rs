//! [`StateStore`] on an embedded SQLite file (`state.db` in the data directory).
//!
//! One connection behind a mutex: the engine commits batches, so the lock is taken once
//! per batch, not per change. Statements are prepared once and cached. The file is in
//! WAL mode; with [`Durability::Full`] (the default) every commit is fsynced before
//! `commit` returns, so an acknowledged checkpoint survives kill -9 and power loss.
//! A lock file next to the database keeps a second process (or a second store in this
//! one) from opening it: two engines on one state would apply changes twice.

mod map_configs;
mod plugin_archive;

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use rusqlite::types::{FromSql, Value as SqlValue};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior};
use serde_json::json;

use super::StateStore;
use super::encoding::{
    decode_conflict, decode_image, decode_key, decode_names, encode_conflict, encode_image,
    encode_key, encode_names,
};
use super::error::{SqliteContext, StateError};
use super::schema;
use super::types::{
    ActivityEntry, ActivityKind, ActivityQuery, ActivityRecord, BatchCommit, CapturedRecord,
    Checkpoint, CommitReceipt, ErrorEntry, ErrorQuery, Image, ImageHash, InitialSyncProgress, Key,
    Link, LinkChange, LinkUpsert, MapEntities, MapMode, MapState, MapStatus, OperationsSetting,
    PendingLink, Position, QueuedChange, RecordingQuery, Resolution, ResolutionKind, SideProgress,
    StoredChange, Transition,
};
use crate::change::{ChangeOp, ErrorClass, Side, SyncError, TrapReason, Value};

/// The state database's file name in the data directory.
pub const STATE_FILE: &str = "state.db";

/// How hard a commit works to survive a crash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Every commit is fsynced (`synchronous = FULL`): a returned commit survives a
    /// process kill and a power loss or OS crash. The default: a side's position may be
    /// acknowledged to the source as soon as `commit` returns.
    #[default]
    Full,
    /// The WAL is fsynced only at checkpoints (`synchronous = NORMAL`): a returned
    /// commit survives a process kill, but a power loss may undo the last commits. Only
    /// safe where nothing is acknowledged to a source that outlives the state (tests,
    /// benchmarks, replays).
    Normal,
}

/// How to open a [`SqliteStateStore`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Commit durability.
    pub durability: Durability,
}

/// The state store on an SQLite file in WAL mode, with one connection behind a mutex
/// (taken once per batch) and cached prepared statements. A lock file next to the
/// database (`state.db.lock`) keeps a second store, in this process or another, from
/// opening it.
pub struct SqliteStateStore {
    path: PathBuf,
    inner: Mutex<Inner>,
    /// Held (locked) for as long as the store is open.
    _lock: File,
    /// Makes the next commit fail after all its statements ran, before it commits.
    #[cfg(test)]
    pub(super) fail_before_commit: std::sync::atomic::AtomicBool,
}

struct Inner {
    conn: Connection,
    maps: MapIds,
}

/// Map names <-> row ids. Only this store writes the file (it holds the lock), so the
/// cache cannot go stale.
#[derive(Default)]
struct MapIds {
    ids: HashMap<String, i64>,
    names: HashMap<i64, String>,
    /// Ids of the maps linking each (side, entity), by map name.
    by_entity: HashMap<(Side, String), Vec<(String, i64)>>,
}

impl MapIds {
    fn id(&self, map: &str) -> Result<i64, StateError> {
        self.ids
            .get(map)
            .copied()
            .ok_or_else(|| StateError::UnknownMap {
                map: map.to_owned(),
            })
    }

    /// Records map `id` (new, or with possibly changed entities).
    fn insert(&mut self, id: i64, map: &MapEntities) {
        self.ids.insert(map.name.clone(), id);
        self.names.insert(id, map.name.clone());
        for maps in self.by_entity.values_mut() {
            maps.retain(|(_, other)| *other != id);
        }
        self.by_entity.retain(|_, maps| !maps.is_empty());
        for (side, entity) in [(Side::Erp, &map.erp_entity), (Side::Crm, &map.crm_entity)] {
            let maps = self.by_entity.entry((side, entity.clone())).or_default();
            maps.push((map.name.clone(), id));
            maps.sort();
        }
    }

    /// The maps (name, id) whose entity on `side` is `entity`, by name.
    fn linking(&self, side: Side, entity: &str) -> &[(String, i64)] {
        self.by_entity
            .get(&(side, entity.to_owned()))
            .map_or(&[], Vec::as_slice)
    }
}

impl std::fmt::Debug for SqliteStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStateStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStateStore {
    /// Opens (creating it if needed) `state.db` in `data_dir`, with default options.
    pub fn open(data_dir: &Path) -> Result<SqliteStateStore, StateError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StateError::FileSystem {
            path: data_dir.to_owned(),
            source,
        })?;
        SqliteStateStore::open_file(&data_dir.join(STATE_FILE), &SqliteOptions::default())
    }

    /// Opens (creating it if needed) the state database at `path`, migrating its schema.
    ///
    /// Fails if another store has it open, if it is not a state store, or if a newer
    /// dualwrite wrote it.
    pub fn open_file(path: &Path, options: &SqliteOptions) -> Result<SqliteStateStore, StateError> {
        let lock = lock_file(path)?;
        let open_failed = |detail: String| StateError::Open {
            path: path.to_owned(),
            detail,
        };
        let mut conn = Connection::open(path).map_err(|error| open_failed(error.to_string()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|error| open_failed(error.to_string()))?;
        let journal: String =
            match conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)) {
                Ok(mode) => mode,
                Err(error) if error.sqlite_error_code() == Some(ErrorCode::NotADatabase) => {
                    return Err(StateError::NotAStateStore {
                        path: path.to_owned(),
                        detail: "it is not an SQLite database".to_owned(),
                    });
                }
                Err(error) => return Err(open_failed(format!("cannot enable WAL: {error}"))),
            };
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(open_failed(format!(
                "the file system does not allow WAL mode (journal mode stays {journal})"
            )));
        }
        let synchronous = match options.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; \
             PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16384;"
        ))
        .map_err(|error| open_failed(error.to_string()))?;
        schema::migrate(&mut conn, path, now_ms())?;
        // Room for every fixed statement and the filter combinations of the error and
        // activity queries.
        conn.set_prepared_statement_cache_capacity(128);
        let mut maps = MapIds::default();
        {
            let mut statement = conn
                .prepare("SELECT id, name, erp_entity, crm_entity FROM maps")
                .during("loading maps")?;
            let mut rows = statement.query([]).during("loading maps")?;
            while let Some(row) = rows.next().during("loading maps")? {
                let reader = RowReader::new(row, "maps", "id")?;
                let entities = MapEntities {
                    name: reader.get("name")?,
                    erp_entity: reader.get("erp_entity")?,
                    crm_entity: reader.get("crm_entity")?,
                };
                maps.insert(reader.id, &entities);
            }
        }
        Ok(SqliteStateStore {
            path: path.to_owned(),
            inner: Mutex::new(Inner { conn, maps }),
            _lock: lock,
            #[cfg(test)]
            fail_before_commit: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while the lock was held dropped its transaction (rolled back), so the
        // connection is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn lock_file(path: &Path) -> Result<File, StateError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| StateError::FileSystem {
            path: lock_path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StateError::Locked {
            path: path.to_owned(),
        }),
        Err(TryLockError::Error(source)) => Err(StateError::FileSystem {
            path: lock_path,
            source,
        }),
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn ms(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

/// A `u64` id or count as SQLite's integer, saturating (ids never get that far).
fn sql_u64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A position's commit as its 64-bit pattern, so every `u64` fits and comes back.
fn sql_commit(position: Position) -> i64 {
    i64::from_ne_bytes(position.sequence.to_ne_bytes())
}

fn invalid(what: impl Into<String>) -> impl FnOnce(String) -> StateError {
    let what = what.into();
    move |detail| StateError::Invalid { what, detail }
}

fn parse_side(name: &str) -> Option<Side> {
    match name {
        "erp" => Some(Side::Erp),
        "crm" => Some(Side::Crm),
        _ => None,
    }
}

fn parse_op(name: &str) -> Option<ChangeOp> {
    [ChangeOp::Insert, ChangeOp::Update, ChangeOp::Delete]
        .into_iter()
        .find(|op| op.as_str() == name)
}

fn parse_reason(name: &str) -> Option<TrapReason> {
    [
        TrapReason::Trap,
        TrapReason::Deadline,
        TrapReason::Fuel,
        TrapReason::Memory,
        TrapReason::Stack,
        TrapReason::OutputLimit,
        TrapReason::InvalidOutput,
        TrapReason::Quarantined,
    ]
    .into_iter()
    .find(|reason| reason.as_str() == name)
}

/// Reads one row's columns by name; every failure is [`StateError::Corrupt`] naming the
/// table, the row and the column.
struct RowReader<'a, 'row> {
    row: &'a rusqlite::Row<'row>,
    table: &'static str,
    id: i64,
}

impl<'a, 'row> RowReader<'a, 'row> {
    fn new(
        row: &'a rusqlite::Row<'row>,
        table: &'static str,
        id_column: &'static str,
    ) -> Result<Self, StateError> {
        let id = row
            .get::<_, i64>(id_column)
            .map_err(|error| StateError::Corrupt {
                table,
                row: "?".to_owned(),
                detail: format!("{id_column}: {error}"),
            })?;
        Ok(RowReader { row, table, id })
    }

    fn corrupt(&self, column: &str, detail: impl std::fmt::Display) -> StateError {
        StateError::Corrupt {
            table: self.table,
            row: self.id.to_string(),
            detail: format!("{column}: {detail}"),
        }
    }

    fn get<T: FromSql>(&self, column: &'static str) -> Result<T, StateError> {
        self.row
            .get::<_, T>(column)
            .map_err(|error| self.corrupt(column, error))
    }

    fn parsed<T>(
        &self,
        column: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, StateError> {
        let text: String = self.get(column)?;
        parse(&text).map_err(|error| self.corrupt(column, error))
    }

    fn parsed_opt<T>(
        &self,
        column: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, StateError> {
        let text: Option<String> = self.get(column)?;
        text.map(|text| parse(&text).map_err(|error| self.corrupt(column, error)))
            .transpose()
    }

    fn named<T>(
        &self,
        column: &'static str,
        parse: fn(&str) -> Option<T>,
    ) -> Result<T, StateError> {
        self.parsed(column, |text| {
            parse(text).ok_or_else(|| format!("unknown name \"{text}\""))
        })
    }

    fn u64(&self, column: &'static str) -> Result<u64, StateError> {
        let value: i64 = self.get(column)?;
        u64::try_from(value).map_err(|_| self.corrupt(column, format!("negative count {value}")))
    }

    fn opt_u64(&self, column: &'static str) -> Result<Option<u64>, StateError> {
        let value: Option<i64> = self.get(column)?;
        value
            .map(|value| {
                u64::try_from(value)
                    .map_err(|_| self.corrupt(column, format!("negative count {value}")))
            })
            .transpose()
    }

    fn bool(&self, column: &'static str) -> Result<bool, StateError> {
        match self.get::<i64>(column)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.corrupt(column, format!("{other} is not 0 or 1"))),
        }
    }

    fn time(&self, column: &'static str) -> Result<DateTime<Utc>, StateError> {
        let value: i64 = self.get(column)?;
        DateTime::from_timestamp_millis(value)
            .ok_or_else(|| self.corrupt(column, format!("time {value} out of range")))
    }

    fn opt_time(&self, column: &'static str) -> Result<Option<DateTime<Utc>>, StateError> {
        let value: Option<i64> = self.get(column)?;
        value
            .map(|value| {
                DateTime::from_timestamp_millis(value)
                    .ok_or_else(|| self.corrupt(column, format!("time {value} out of range")))
            })
            .transpose()
    }

    fn position(&self) -> Result<Position, StateError> {
        let commit: i64 = self.get("commit_pos")?;
        let index: i64 = self.get("change_index")?;
        let index = u32::try_from(index)
            .map_err(|_| self.corrupt("change_index", format!("{index} out of range")))?;
        Ok(Position {
            sequence: u64::from_ne_bytes(commit.to_ne_bytes()),
            index,
        })
    }

    fn opt_position(&self) -> Result<Option<Position>, StateError> {
        let commit: Option<i64> = self.get("commit_pos")?;
        match commit {
            None => Ok(None),
            Some(_) => self.position().map(Some),
        }
    }

    fn hash(&self, column: &'static str) -> Result<ImageHash, StateError> {
        let bytes: Vec<u8> = self.get(column)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(ImageHash)
            .map_err(|_| self.corrupt(column, format!("hash of {} bytes, not 32", bytes.len())))
    }

    fn map_name(&self, maps: &MapIds, column: &'static str) -> Result<String, StateError> {
        let id: i64 = self.get(column)?;
        maps.names
            .get(&id)
            .cloned()
            .ok_or_else(|| self.corrupt(column, format!("no map has id {id}")))
    }

    fn opt_map_name(
        &self,
        maps: &MapIds,
        column: &'static str,
    ) -> Result<Option<String>, StateError> {
        match self.get::<Option<i64>>(column)? {
            None => Ok(None),
            Some(_) => self.map_name(maps, column).map(Some),
        }
    }

    /// The change held in a `queue` or `errors` row.
    fn change(&self, maps: &MapIds) -> Result<StoredChange, StateError> {
        Ok(StoredChange {
            map: self.map_name(maps, "map_id")?,
            side: self.named("side", parse_side)?,
            entity: self.get("entity")?,
            op: self.named("op", parse_op)?,
            position: self.position()?,
            key: self.parsed("row_key", decode_key)?,
            before: self.parsed_opt("before_image", decode_image)?,
            after: self.parsed_opt("after_image", decode_image)?,
            changed: self.parsed("changed", decode_names)?,
            committed_at: self.opt_time("committed_at")?,
        })
    }

    fn map_state(&self, prefix: MapStatePrefix) -> Result<MapState, StateError> {
        let (mode, erp, crm) = prefix.columns();
        Ok(MapState {
            mode: self.named(mode, MapMode::parse)?,
            erp_offline: self.bool(erp)?,
            crm_offline: self.bool(crm)?,
        })
    }
}

#[derive(Clone, Copy)]
enum MapStatePrefix {
    Current,
    From,
    To,
}

impl MapStatePrefix {
    fn columns(self) -> (&'static str, &'static str, &'static str) {
        match self {
            MapStatePrefix::Current => ("mode", "erp_offline", "crm_offline"),
            MapStatePrefix::From => ("from_mode", "from_erp_offline", "from_crm_offline"),
            MapStatePrefix::To => ("to_mode", "to_erp_offline", "to_crm_offline"),
        }
    }
}

/// A row of `recorded_changes` selected as `id, recorded_at, CHANGE_COLUMNS`.
fn recorded_change(row: &rusqlite::Row<'_>, maps: &MapIds) -> Result<CapturedRecord, StateError> {
    let r = RowReader::new(row, "recorded_changes", "id")?;
    Ok(CapturedRecord {
        id: r.id as u64,
        recorded_at: r.time("recorded_at")?,
        change: r.change(maps)?,
    })
}

/// Runs `statement` and decodes every row with `decode`.
fn collect<T>(
    statement: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    operation: &'static str,
    mut decode: impl FnMut(&rusqlite::Row<'_>) -> Result<T, StateError>,
) -> Result<Vec<T>, StateError> {
    let mut rows = statement.query(params).during(operation)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().during(operation)? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// A [`StoredChange`] in its column form.
struct EncodedChange {
    key: String,
    before: Option<String>,
    after: Option<String>,
    changed: String,
}

fn encode_change(change: &StoredChange) -> Result<EncodedChange, StateError> {
    let what = || {
        format!(
            "change {} of {} {} (map {})",
            change.position, change.side, change.entity, change.map
        )
    };
    let image = |image: &Option<Image>| {
        image
            .as_ref()
            .map(|image| encode_image(image).map_err(invalid(what())))
            .transpose()
    };
    Ok(EncodedChange {
        key: encode_key(&change.key).map_err(invalid(what()))?,
        before: image(&change.before)?,
        after: image(&change.after)?,
        changed: encode_names(&change.changed),
    })
}

fn key_param(key: &[Value], what: impl FnOnce() -> String) -> Result<String, StateError> {
    encode_key(key).map_err(|detail| StateError::Invalid {
        what: what(),
        detail,
    })
}

const LINK_COLUMNS: &str = "id, map_id, erp_key, crm_key, erp_image, crm_image, erp_hash, \
                            crm_hash, plugin_version, updated_at";

const LINK_BY_ERP_KEY: &str = "SELECT id, map_id, erp_key, crm_key, erp_image, crm_image, \
     erp_hash, crm_hash, plugin_version, updated_at FROM links WHERE map_id = ?1 AND erp_key = ?2";

const LINK_BY_CRM_KEY: &str = "SELECT id, map_id, erp_key, crm_key, erp_image, crm_image, \
     erp_hash, crm_hash, plugin_version, updated_at FROM links WHERE map_id = ?1 AND crm_key = ?2";

fn read_link(row: &rusqlite::Row<'_>, maps: &MapIds) -> Result<Link, StateError> {
    let r = RowReader::new(row, "links", "id")?;
    Ok(Link {
        id: r.id as u64,
        map: r.map_name(maps, "map_id")?,
        erp_key: r.parsed("erp_key", decode_key)?,
        crm_key: r.parsed("crm_key", decode_key)?,
        erp_image: r.parsed("erp_image", decode_image)?,
        crm_image: r.parsed("crm_image", decode_image)?,
        erp_hash: r.hash("erp_hash")?,
        crm_hash: r.hash("crm_hash")?,
        plugin_version: r.get("plugin_version")?,
        updated_at: r.time("updated_at")?,
    })
}

const CHANGE_COLUMNS: &str = "map_id, side, entity, op, commit_pos, change_index, row_key, \
                              before_image, after_image, changed, committed_at";

const ERROR_COLUMNS: &str = "id, map_id, side, entity, op, commit_pos, change_index, row_key, \
     before_image, after_image, changed, committed_at, class, reason, message, field, \
     retryable, conflict, plugin_version, attempts, first_at, last_attempt_at, \
     next_retry_at, resolved_at, resolution, resolved_by, resolution_note";

fn read_error(row: &rusqlite::Row<'_>, maps: &MapIds) -> Result<ErrorEntry, StateError> {
    let r = RowReader::new(row, "errors", "id")?;
    let class = r.named("class", ErrorClass::parse)?;
    let resolution = match r.opt_time("resolved_at")? {
        None => None,
        Some(at) => Some(Resolution {
            at,
            kind: r.named("resolution", ResolutionKind::parse)?,
            by: r.get("resolved_by")?,
            reason: r.get("resolution_note")?,
        }),
    };
    let attempts: i64 = r.get("attempts")?;
    Ok(ErrorEntry {
        id: r.id as u64,
        change: r.change(maps)?,
        error: SyncError {
            class,
            reason: r.parsed_opt("reason", |name| {
                parse_reason(name).ok_or_else(|| format!("unknown name \"{name}\""))
            })?,
            message: r.get("message")?,
            field: r.get("field")?,
            retryable: r.bool("retryable")?,
        },
        conflict: r.parsed_opt("conflict", decode_conflict)?,
        plugin_version: r.get("plugin_version")?,
        attempts: u32::try_from(attempts)
            .map_err(|_| r.corrupt("attempts", format!("{attempts} out of range")))?,
        first_at: r.time("first_at")?,
        last_attempt_at: r.time("last_attempt_at")?,
        next_retry: r.opt_time("next_retry_at")?,
        resolution,
    })
}

const ACTIVITY_COLUMNS: &str = "id, at, map_id, kind, source, erp_key, crm_key, commit_pos, \
                                change_index, plugin_version, error_id, message, detail";

fn read_activity(row: &rusqlite::Row<'_>, maps: &MapIds) -> Result<ActivityRecord, StateError> {
    let r = RowReader::new(row, "activity", "id")?;
    Ok(ActivityRecord {
        id: r.id as u64,
        at: r.time("at")?,
        entry: ActivityEntry {
            map: r.opt_map_name(maps, "map_id")?,
            kind: r.named("kind", ActivityKind::parse)?,
            source: r.parsed_opt("source", |name| {
                parse_side(name).ok_or_else(|| format!("unknown side \"{name}\""))
            })?,
            erp_key: r.parsed_opt("erp_key", decode_key)?,
            crm_key: r.parsed_opt("crm_key", decode_key)?,
            position: r.opt_position()?,
            plugin_version: r.get("plugin_version")?,
            error_id: r.opt_u64("error_id")?,
            message: r.get("message")?,
            detail: r.parsed_opt("detail", |text| {
                serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))
            })?,
        },
    })
}

const MAP_COLUMNS: &str =
    "id, name, erp_entity, crm_entity, mode, erp_offline, crm_offline, mode_since, queue_depth";

fn read_map(row: &rusqlite::Row<'_>) -> Result<MapStatus, StateError> {
    let r = RowReader::new(row, "maps", "id")?;
    Ok(MapStatus {
        entities: MapEntities {
            name: r.get("name")?,
            erp_entity: r.get("erp_entity")?,
            crm_entity: r.get("crm_entity")?,
        },
        state: r.map_state(MapStatePrefix::Current)?,
        since: r.time("mode_since")?,
        queue_depth: r.u64("queue_depth")?,
    })
}

/// Retention of an append-only table (`table`, its time column): removes the rows
/// before `older_than` and all but the newest `keep_newest` (ids grow by one per row and
/// only the oldest are ever removed, so the newest N are the top N ids); how many.
fn prune(
    conn: &Connection,
    (table, time_column): (&str, &str),
    older_than: Option<DateTime<Utc>>,
    keep_newest: Option<u64>,
    operation: &'static str,
) -> Result<u64, StateError> {
    let mut removed = 0;
    if let Some(before) = older_than {
        removed += conn
            .prepare_cached(&format!("DELETE FROM {table} WHERE {time_column} < ?1"))
            .during(operation)?
            .execute([ms(before)])
            .during(operation)? as u64;
    }
    if let Some(keep) = keep_newest {
        removed += conn
            .prepare_cached(&format!(
                "DELETE FROM {table} WHERE id <= (SELECT max(id) FROM {table}) - ?1"
            ))
            .during(operation)?
            .execute([i64::try_from(keep).unwrap_or(i64::MAX)])
            .during(operation)? as u64;
    }
    Ok(removed)
}

/// Writes one activity entry; `map_id` is resolved by the caller.
fn insert_activity(
    tx: &Transaction<'_>,
    at: i64,
    map_id: Option<i64>,
    entry: &ActivityEntry,
) -> Result<(), StateError> {
    const OPERATION: &str = "recording activity";
    let what = || format!("activity entry \"{}\"", entry.message);
    let erp_key = entry
        .erp_key
        .as_ref()
        .map(|key| key_param(key, what))
        .transpose()?;
    let crm_key = entry
        .crm_key
        .as_ref()
        .map(|key| key_param(key, what))
        .transpose()?;
    let mut statement = tx
        .prepare_cached(
            "INSERT INTO activity (at, map_id, kind, source, erp_key, crm_key, commit_pos, \
             change_index, plugin_version, error_id, message, detail) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .during(OPERATION)?;
    statement
        .execute(rusqlite::params![
            at,
            map_id,
            entry.kind.as_str(),
            entry.source.map(Side::as_str),
            erp_key,
            crm_key,
            entry.position.map(sql_commit),
            entry.position.map(|position| position.index),
            entry.plugin_version,
            entry.error_id.map(sql_u64),
            entry.message,
            entry.detail.as_ref().map(|detail| detail.to_string()),
        ])
        .during(OPERATION)?;
    Ok(())
}

/// The source-side key of a change as the activity entry's ERP or CRM key.
fn keys_of(change: &StoredChange) -> (Option<Key>, Option<Key>) {
    match change.side {
        Side::Erp => (Some(change.key.clone()), None),
        Side::Crm => (None, Some(change.key.clone())),
    }
}

fn insert_transition(
    tx: &Transaction<'_>,
    at: i64,
    map_id: i64,
    map: &str,
    from: Option<MapState>,
    to: MapState,
    cause: &str,
) -> Result<(), StateError> {
    const OPERATION: &str = "recording a transition";
    tx.prepare_cached(
        "INSERT INTO map_transitions (map_id, at, from_mode, from_erp_offline, \
         from_crm_offline, to_mode, to_erp_offline, to_crm_offline, cause) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .during(OPERATION)?
    .execute(rusqlite::params![
        map_id,
        at,
        from.map(|from| from.mode.as_str()),
        from.map(|from| from.erp_offline),
        from.map(|from| from.crm_offline),
        to.mode.as_str(),
        to.erp_offline,
        to.crm_offline,
        cause,
    ])
    .during(OPERATION)?;
    let message = match from {
        Some(from) => format!("{from} -> {to}: {cause}"),
        None => format!("registered as {to}: {cause}"),
    };
    let mut entry = ActivityEntry::new(Some(map), ActivityKind::StateChange, message);
    entry.detail = Some(json!({
        "from": from.map(|from| from.to_string()),
        "to": to.to_string(),
        "cause": cause,
    }));
    insert_activity(tx, at, Some(map_id), &entry)
}

/// Applies every part of `batch` inside `tx`; the caller commits or drops it.
fn apply_batch(
    tx: &Transaction<'_>,
    maps: &MapIds,
    batch: &BatchCommit,
    at: i64,
) -> Result<CommitReceipt, StateError> {
    let mut receipt = CommitReceipt::default();

    for transition in &batch.transitions {
        const OPERATION: &str = "changing a map's state";
        let map_id = maps.id(&transition.map)?;
        let from = tx
            .prepare_cached("SELECT id, mode, erp_offline, crm_offline FROM maps WHERE id = ?1")
            .during(OPERATION)?
            .query_row([map_id], |row| {
                Ok(RowReader::new(row, "maps", "id")
                    .and_then(|r| r.map_state(MapStatePrefix::Current)))
            })
            .during(OPERATION)??;
        if from == transition.to {
            continue;
        }
        tx.prepare_cached(
            "UPDATE maps SET mode = ?1, erp_offline = ?2, crm_offline = ?3, mode_since = ?4 \
             WHERE id = ?5",
        )
        .during(OPERATION)?
        .execute(rusqlite::params![
            transition.to.mode.as_str(),
            transition.to.erp_offline,
            transition.to.crm_offline,
            at,
            map_id,
        ])
        .during(OPERATION)?;
        insert_transition(
            tx,
            at,
            map_id,
            &transition.map,
            Some(from),
            transition.to,
            &transition.cause,
        )?;
    }

    for checkpoint in &batch.checkpoints {
        const OPERATION: &str = "saving a checkpoint";
        if let Some(map) = &checkpoint.map {
            maps.id(map)?;
        }
        tx.prepare_cached(
            "INSERT INTO checkpoints (side, scope, commit_pos, change_index, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (side, scope) DO UPDATE SET commit_pos = excluded.commit_pos, \
             change_index = excluded.change_index, updated_at = excluded.updated_at",
        )
        .during(OPERATION)?
        .execute(rusqlite::params![
            checkpoint.side.as_str(),
            checkpoint.map.as_deref().unwrap_or(""),
            sql_commit(checkpoint.position),
            checkpoint.position.index,
            at,
        ])
        .during(OPERATION)?;
    }

    for change in &batch.links {
        match change {
            LinkChange::Upsert(upsert) => {
                const OPERATION: &str = "saving a link";
                let map_id = maps.id(&upsert.map)?;
                let what = || format!("link of map {}", upsert.map);
                let erp_key = key_param(&upsert.erp_key, || format!("{} (erp key)", what()))?;
                let crm_key = key_param(&upsert.crm_key, || format!("{} (crm key)", what()))?;
                let erp_image = encode_image(&upsert.erp_image)
                    .map_err(invalid(format!("{} (erp image)", what())))?;
                let crm_image = encode_image(&upsert.crm_image)
                    .map_err(invalid(format!("{} (crm image)", what())))?;
                let erp_hash = ImageHash::of_encoded(&erp_image);
                let crm_hash = ImageHash::of_encoded(&crm_image);
                receipt.links_displaced += tx
                    .prepare_cached(
                        "DELETE FROM links WHERE map_id = ?1 AND crm_key = ?2 AND erp_key <> ?3",
                    )
                    .during(OPERATION)?
                    .execute(rusqlite::params![map_id, crm_key, erp_key])
                    .during(OPERATION)? as u64;
                tx.prepare_cached(
                    "INSERT INTO links (map_id, erp_key, crm_key, erp_image, crm_image, \
                     erp_hash, crm_hash, plugin_version, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                     ON CONFLICT (map_id, erp_key) DO UPDATE SET crm_key = excluded.crm_key, \
                     erp_image = excluded.erp_image, crm_image = excluded.crm_image, \
                     erp_hash = excluded.erp_hash, crm_hash = excluded.crm_hash, \
                     plugin_version = excluded.plugin_version, updated_at = excluded.updated_at",
                )
                .during(OPERATION)?
                .execute(rusqlite::params![
                    map_id,
                    erp_key,
                    crm_key,
                    erp_image,
                    crm_image,
                    &erp_hash.0[..],
                    &crm_hash.0[..],
                    upsert.plugin_version,
                    at,
                ])
                .during(OPERATION)?;
                // A pending link of either key is older than this link: settled. One
                // statement per key, so each uses its index (with an OR, SQLite uses
                // one index on `map_id` alone and reads every pending link of the map).
                for (sql, key) in [
                    (
                        "DELETE FROM pending_links WHERE map_id = ?1 AND erp_key = ?2",
                        &erp_key,
                    ),
                    (
                        "DELETE FROM pending_links WHERE map_id = ?1 AND crm_key = ?2",
                        &crm_key,
                    ),
                ] {
                    tx.prepare_cached(sql)
                        .during(OPERATION)?
                        .execute(rusqlite::params![map_id, key])
                        .during(OPERATION)?;
                }
            }
            LinkChange::Delete(delete) => {
                const OPERATION: &str = "deleting a link";
                let map_id = maps.id(&delete.map)?;
                let key = key_param(&delete.key, || format!("link key of map {}", delete.map))?;
                let sqls = match delete.side {
                    Side::Erp => [
                        "DELETE FROM links WHERE map_id = ?1 AND erp_key = ?2",
                        "DELETE FROM pending_links WHERE map_id = ?1 AND erp_key = ?2",
                    ],
                    Side::Crm => [
                        "DELETE FROM links WHERE map_id = ?1 AND crm_key = ?2",
                        "DELETE FROM pending_links WHERE map_id = ?1 AND crm_key = ?2",
                    ],
                };
                for sql in sqls {
                    tx.prepare_cached(sql)
                        .during(OPERATION)?
                        .execute(rusqlite::params![map_id, key])
                        .during(OPERATION)?;
                }
            }
        }
    }

    for id in &batch.settled {
        const OPERATION: &str = "settling a pending link";
        tx.prepare_cached("DELETE FROM pending_links WHERE id = ?1")
            .during(OPERATION)?
            .execute([sql_u64(*id)])
            .during(OPERATION)?;
    }
    for pending in &batch.pending {
        const OPERATION: &str = "saving a pending link";
        let link = &pending.link;
        let map_id = maps.id(&link.map)?;
        let what = || format!("pending link of map {}", link.map);
        let image = |image: &Image, which: &str| {
            encode_image(image).map_err(invalid(format!("{} ({which})", what())))
        };
        let written = pending
            .written
            .as_ref()
            .map(|written| image(written, "written fields"))
            .transpose()?;
        tx.prepare_cached(
            "INSERT INTO pending_links (map_id, target, written, erp_key, crm_key, erp_image, \
             crm_image, plugin_version, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .during(OPERATION)?
        .execute(rusqlite::params![
            map_id,
            pending.target.as_str(),
            written,
            key_param(&link.erp_key, || format!("{} (erp key)", what()))?,
            key_param(&link.crm_key, || format!("{} (crm key)", what()))?,
            image(&link.erp_image, "erp image")?,
            image(&link.crm_image, "crm image")?,
            link.plugin_version,
            at,
        ])
        .during(OPERATION)?;
        receipt.pending.push(tx.last_insert_rowid() as u64);
    }

    let mut depth_changes: HashMap<i64, i64> = HashMap::new();
    for removal in &batch.dequeue {
        const OPERATION: &str = "removing queued changes";
        let map_id = maps.id(&removal.map)?;
        let removed = tx
            .prepare_cached("DELETE FROM queue WHERE map_id = ?1 AND seq <= ?2")
            .during(OPERATION)?
            .execute((map_id, sql_u64(removal.through)))
            .during(OPERATION)?;
        receipt.dequeued += removed as u64;
        *depth_changes.entry(map_id).or_default() -= removed as i64;
    }
    for change in &batch.enqueue {
        const OPERATION: &str = "queueing a change";
        let map_id = maps.id(&change.map)?;
        let encoded = encode_change(change)?;
        tx.prepare_cached(
            "INSERT INTO queue (map_id, queued_at, side, entity, op, commit_pos, change_index, \
             row_key, before_image, after_image, changed, committed_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .during(OPERATION)?
        .execute(rusqlite::params![
            map_id,
            at,
            change.side.as_str(),
            change.entity,
            change.op.as_str(),
            sql_commit(change.position),
            change.position.index,
            encoded.key,
            encoded.before,
            encoded.after,
            encoded.changed,
            change.committed_at.map(ms),
        ])
        .during(OPERATION)?;
        receipt.queued.push(tx.last_insert_rowid() as u64);
        *depth_changes.entry(map_id).or_default() += 1;
    }
    for change in &batch.record {
        const OPERATION: &str = "recording a captured change";
        let map_id = maps.id(&change.map)?;
        let encoded = encode_change(change)?;
        tx.prepare_cached(
            "INSERT INTO recorded_changes (map_id, recorded_at, side, entity, op, commit_pos, \
             change_index, row_key, before_image, after_image, changed, committed_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .during(OPERATION)?
        .execute(rusqlite::params![
            map_id,
            at,
            change.side.as_str(),
            change.entity,
            change.op.as_str(),
            sql_commit(change.position),
            change.position.index,
            encoded.key,
            encoded.before,
            encoded.after,
            encoded.changed,
            change.committed_at.map(ms),
        ])
        .during(OPERATION)?;
    }
    for (map_id, delta) in depth_changes {
        const OPERATION: &str = "updating a queue depth";
        if delta != 0 {
            tx.prepare_cached("UPDATE maps SET queue_depth = queue_depth + ?1 WHERE id = ?2")
                .during(OPERATION)?
                .execute((delta, map_id))
                .during(OPERATION)?;
        }
    }

    for error in &batch.errors {
        const OPERATION: &str = "queueing an error";
        let change = &error.change;
        let map_id = maps.id(&change.map)?;
        let encoded = encode_change(change)?;
        let conflict = error
            .conflict
            .as_ref()
            .map(|conflict| {
                encode_conflict(conflict).map_err(invalid(format!(
                    "conflict images of change {} (map {})",
                    change.position, change.map
                )))
            })
            .transpose()?;
        tx.prepare_cached(
            "INSERT INTO errors (map_id, side, entity, op, commit_pos, change_index, row_key, \
             before_image, after_image, changed, committed_at, class, reason, message, field, \
             retryable, conflict, plugin_version, attempts, first_at, last_attempt_at, \
             next_retry_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
             ?17, ?18, 1, ?19, ?19, ?20)",
        )
        .during(OPERATION)?
        .execute(rusqlite::params![
            map_id,
            change.side.as_str(),
            change.entity,
            change.op.as_str(),
            sql_commit(change.position),
            change.position.index,
            encoded.key,
            encoded.before,
            encoded.after,
            encoded.changed,
            change.committed_at.map(ms),
            error.error.class.as_str(),
            error.error.reason.map(TrapReason::as_str),
            error.error.message,
            error.error.field,
            error.error.retryable,
            conflict,
            error.plugin_version,
            at,
            error.next_retry.map(ms),
        ])
        .during(OPERATION)?;
        let id = tx.last_insert_rowid() as u64;
        receipt.errors.push(id);
        let (erp_key, crm_key) = keys_of(change);
        let entry = ActivityEntry {
            source: Some(change.side),
            erp_key,
            crm_key,
            position: Some(change.position),
            plugin_version: error.plugin_version.clone(),
            error_id: Some(id),
            detail: Some(json!({
                "class": error.error.class.as_str(),
                "reason": error.error.reason.map(TrapReason::as_str),
                "field": error.error.field,
                "retryable": error.error.retryable,
            })),
            ..ActivityEntry::new(
                Some(&change.map),
                ActivityKind::Error,
                error.error.to_string(),
            )
        };
        insert_activity(tx, at, Some(map_id), &entry)?;
    }

    for retry in &batch.error_retries {
        const OPERATION: &str = "recording an error retry";
        let updated: Option<(i64, i64)> = tx
            .prepare_cached(
                "UPDATE errors SET class = ?1, reason = ?2, message = ?3, field = ?4, \
                 retryable = ?5, attempts = attempts + 1, last_attempt_at = ?6, \
                 next_retry_at = ?7 WHERE id = ?8 AND resolved_at IS NULL \
                 RETURNING map_id, attempts",
            )
            .during(OPERATION)?
            .query_row(
                rusqlite::params![
                    retry.error.class.as_str(),
                    retry.error.reason.map(TrapReason::as_str),
                    retry.error.message,
                    retry.error.field,
                    retry.error.retryable,
                    at,
                    retry.next_retry.map(ms),
                    sql_u64(retry.id),
                ],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .during(OPERATION)?;
        let Some((map_id, attempts)) = updated else {
            return Err(StateError::ErrorNotOpen { id: retry.id });
        };
        let map = maps.names.get(&map_id).map(String::as_str);
        let entry = ActivityEntry {
            error_id: Some(retry.id),
            detail: Some(json!({
                "attempts": attempts,
                "class": retry.error.class.as_str(),
                "next_retry": retry.next_retry.map(|at| at.to_rfc3339()),
            })),
            ..ActivityEntry::new(
                map,
                ActivityKind::ErrorRetried,
                format!("retry {attempts} failed: {}", retry.error),
            )
        };
        insert_activity(tx, at, Some(map_id), &entry)?;
    }

    for resolution in &batch.error_resolutions {
        const OPERATION: &str = "resolving an error";
        let map_id: Option<i64> = tx
            .prepare_cached(
                "UPDATE errors SET resolved_at = ?1, resolution = ?2, resolved_by = ?3, \
                 resolution_note = ?4 WHERE id = ?5 AND resolved_at IS NULL RETURNING map_id",
            )
            .during(OPERATION)?
            .query_row(
                rusqlite::params![
                    at,
                    resolution.kind.as_str(),
                    resolution.by,
                    resolution.reason,
                    sql_u64(resolution.id),
                ],
                |row| row.get(0),
            )
            .optional()
            .during(OPERATION)?;
        let Some(map_id) = map_id else {
            return Err(StateError::ErrorNotOpen { id: resolution.id });
        };
        let map = maps.names.get(&map_id).map(String::as_str);
        let entry = ActivityEntry {
            error_id: Some(resolution.id),
            detail: Some(json!({
                "resolution": resolution.kind.as_str(),
                "by": resolution.by,
                "reason": resolution.reason,
            })),
            ..ActivityEntry::new(
                map,
                ActivityKind::ErrorResolved,
                format!(
                    "error {} {} by {}: {}",
                    resolution.id,
                    resolution.kind.as_str(),
                    resolution.by,
                    resolution.reason
                ),
            )
        };
        insert_activity(tx, at, Some(map_id), &entry)?;
    }

    for entry in &batch.activity {
        let map_id = entry.map.as_deref().map(|map| maps.id(map)).transpose()?;
        insert_activity(tx, at, map_id, entry)?;
    }

    for map in &batch.initial_sync_resets {
        const OPERATION: &str = "resetting initial sync progress";
        tx.prepare_cached("DELETE FROM initial_sync WHERE map_id = ?1")
            .during(OPERATION)?
            .execute([maps.id(map)?])
            .during(OPERATION)?;
    }
    for step in &batch.initial_sync {
        const OPERATION: &str = "saving initial sync progress";
        let map_id = maps.id(&step.map)?;
        let last_key = step
            .last_key
            .as_ref()
            .map(|key| key_param(key, || format!("initial sync key of map {}", step.map)))
            .transpose()?;
        tx.prepare_cached(
            "INSERT INTO initial_sync (map_id, side, last_key, rows_done, rows_total, \
             complete, started_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) \
             ON CONFLICT (map_id, side) DO UPDATE SET last_key = excluded.last_key, \
             rows_done = excluded.rows_done, rows_total = excluded.rows_total, \
             complete = excluded.complete, updated_at = excluded.updated_at",
        )
        .during(OPERATION)?
        .execute(rusqlite::params![
            map_id,
            step.side.as_str(),
            last_key,
            sql_u64(step.rows_done),
            step.rows_total.map(sql_u64),
            step.complete,
            at,
        ])
        .during(OPERATION)?;
    }

    Ok(receipt)
}

impl StateStore for SqliteStateStore {
    fn record_map_config(
        &self,
        record: &super::NewMapConfig,
        with: &dyn Fn(u64) -> BatchCommit,
    ) -> Result<u64, StateError> {
        self.insert_map_config(record, with)
    }

    fn map_configs(&self, map: &str) -> Result<Vec<super::MapConfigRecord>, StateError> {
        self.read_map_configs(map)
    }

    fn latest_recorded(&self, map: &str, limit: usize) -> Result<Vec<CapturedRecord>, StateError> {
        self.read_latest_recorded(map, limit)
    }

    fn archive_plugin(&self, hash: &str, file: &str, bytes: &[u8]) -> Result<(), StateError> {
        self.insert_archived_plugin(hash, file, bytes)
    }

    fn archived_plugin(&self, hash: &str) -> Result<Option<(String, Vec<u8>)>, StateError> {
        self.read_archived_plugin(hash)
    }

    fn register_map(&self, map: &MapEntities) -> Result<MapStatus, StateError> {
        const OPERATION: &str = "registering a map";
        let mut guard = self.inner();
        let inner = &mut *guard;
        let at = now_ms();
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .during(OPERATION)?;
        let existing: Option<(i64, String, String)> = tx
            .prepare_cached("SELECT id, erp_entity, crm_entity FROM maps WHERE name = ?1")
            .during(OPERATION)?
            .query_row([&map.name], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()
            .during(OPERATION)?;
        let id = match existing {
            Some((id, erp_entity, crm_entity)) => {
                if erp_entity != map.erp_entity || crm_entity != map.crm_entity {
                    tx.prepare_cached(
                        "UPDATE maps SET erp_entity = ?1, crm_entity = ?2 WHERE id = ?3",
                    )
                    .during(OPERATION)?
                    .execute((&map.erp_entity, &map.crm_entity, id))
                    .during(OPERATION)?;
                    tracing::warn!(
                        map = %map.name,
                        from = %format!("{erp_entity} <-> {crm_entity}"),
                        to = %format!("{} <-> {}", map.erp_entity, map.crm_entity),
                        "map entities changed; existing links keep their keys"
                    );
                    let entry = ActivityEntry {
                        detail: Some(json!({
                            "from": {"erp": erp_entity, "crm": crm_entity},
                            "to": {"erp": map.erp_entity, "crm": map.crm_entity},
                        })),
                        ..ActivityEntry::new(
                            Some(&map.name),
                            ActivityKind::StateChange,
                            format!(
                                "entities changed from {erp_entity} <-> {crm_entity} to {} <-> {}",
                                map.erp_entity, map.crm_entity
                            ),
                        )
                    };
                    insert_activity(&tx, at, Some(id), &entry)?;
                }
                id
            }
            None => {
                let stopped = MapState::online(MapMode::Stopped);
                tx.prepare_cached(
                    "INSERT INTO maps (name, erp_entity, crm_entity, mode, erp_offline, \
                     crm_offline, mode_since, queue_depth, created_at) \
                     VALUES (?1, ?2, ?3, ?4, 0, 0, ?5, 0, ?5)",
                )
                .during(OPERATION)?
                .execute((
                    &map.name,
                    &map.erp_entity,
                    &map.crm_entity,
                    stopped.mode.as_str(),
                    at,
                ))
                .during(OPERATION)?;
                let id = tx.last_insert_rowid();
                insert_transition(&tx, at, id, &map.name, None, stopped, "registered")?;
                id
            }
        };
        let status = tx
            .prepare_cached(&format!("SELECT {MAP_COLUMNS} FROM maps WHERE id = ?1"))
            .during(OPERATION)?
            .query_row([id], |row| Ok(read_map(row)))
            .during(OPERATION)??;
        tx.commit().during(OPERATION)?;
        inner.maps.insert(id, map);
        Ok(status)
    }

    fn maps(&self) -> Result<Vec<MapStatus>, StateError> {
        const OPERATION: &str = "listing maps";
        let inner = self.inner();
        let mut statement = inner
            .conn
            .prepare_cached(&format!("SELECT {MAP_COLUMNS} FROM maps ORDER BY name"))
            .during(OPERATION)?;
        collect(&mut statement, [], OPERATION, read_map)
    }

    fn map_status(&self, map: &str) -> Result<MapStatus, StateError> {
        const OPERATION: &str = "reading a map's state";
        let inner = self.inner();
        let id = inner.maps.id(map)?;
        inner
            .conn
            .prepare_cached(&format!("SELECT {MAP_COLUMNS} FROM maps WHERE id = ?1"))
            .during(OPERATION)?
            .query_row([id], |row| Ok(read_map(row)))
            .during(OPERATION)?
    }

    fn transitions(&self, map: &str) -> Result<Vec<Transition>, StateError> {
        const OPERATION: &str = "reading transitions";
        let inner = self.inner();
        let id = inner.maps.id(map)?;
        let mut statement = inner
            .conn
            .prepare_cached(
                "SELECT id, at, from_mode, from_erp_offline, from_crm_offline, to_mode, \
                 to_erp_offline, to_crm_offline, cause FROM map_transitions \
                 WHERE map_id = ?1 ORDER BY id",
            )
            .during(OPERATION)?;
        collect(&mut statement, [id], OPERATION, |row| {
            let r = RowReader::new(row, "map_transitions", "id")?;
            let from = match r.get::<Option<String>>("from_mode")? {
                None => None,
                Some(_) => Some(r.map_state(MapStatePrefix::From)?),
            };
            Ok(Transition {
                id: r.id as u64,
                map: map.to_owned(),
                at: r.time("at")?,
                from,
                to: r.map_state(MapStatePrefix::To)?,
                cause: r.get("cause")?,
            })
        })
    }

    fn checkpoint(&self, side: Side, map: Option<&str>) -> Result<Option<Position>, StateError> {
        const OPERATION: &str = "reading a checkpoint";
        let inner = self.inner();
        let scope = map.unwrap_or("");
        let mut statement = inner
            .conn
            .prepare_cached(
                "SELECT commit_pos, change_index FROM checkpoints WHERE side = ?1 AND scope = ?2",
            )
            .during(OPERATION)?;
        let positions = collect(&mut statement, (side.as_str(), scope), OPERATION, |row| {
            checkpoint_reader(row, side.as_str(), scope).position()
        })?;
        Ok(positions.into_iter().next())
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StateError> {
        const OPERATION: &str = "reading checkpoints";
        let inner = self.inner();
        let mut statement = inner
            .conn
            .prepare_cached(
                "SELECT side, scope, commit_pos, change_index FROM checkpoints \
                 ORDER BY side, scope",
            )
            .during(OPERATION)?;
        collect(&mut statement, [], OPERATION, |row| {
            let side: String = row.get("side").during(OPERATION)?;
            let scope: String = row.get("scope").during(OPERATION)?;
            let r = checkpoint_reader(row, &side, &scope);
            Ok(Checkpoint {
                side: parse_side(&side)
                    .ok_or_else(|| r.corrupt("side", format!("unknown side \"{side}\"")))?,
                map: (!scope.is_empty()).then_some(scope.clone()),
                position: r.position()?,
            })
        })
    }

    fn link(&self, map: &str, side: Side, key: &[Value]) -> Result<Option<Link>, StateError> {
        const OPERATION: &str = "reading a link";
        let inner = self.inner();
        let map_id = inner.maps.id(map)?;
        let key = key_param(key, || format!("link key of map {map}"))?;
        let sql = match side {
            Side::Erp => LINK_BY_ERP_KEY,
            Side::Crm => LINK_BY_CRM_KEY,
        };
        let mut statement = inner.conn.prepare_cached(sql).during(OPERATION)?;
        let links = collect(&mut statement, (map_id, key), OPERATION, |row| {
            read_link(row, &inner.maps)
        })?;
        Ok(links.into_iter().next())
    }

    fn translate_key(
        &self,
        side: Side,
        entity: &str,
        key: &[Value],
    ) -> Result<Option<Key>, StateError> {
        const OPERATION: &str = "translating a key";
        let inner = self.inner();
        let key = key_param(key, || format!("key of {side} entity {entity}"))?;
        // Maps by entity come from the cache: a join through `maps` costs SQLite ten
        // times an index probe per map.
        let sql = match side {
            Side::Erp => {
                "SELECT id, crm_key AS linked FROM links WHERE map_id = ?1 AND erp_key = ?2"
            }
            Side::Crm => {
                "SELECT id, erp_key AS linked FROM links WHERE map_id = ?1 AND crm_key = ?2"
            }
        };
        let mut found: Option<(&str, Key)> = None;
        for (map, map_id) in inner.maps.linking(side, entity) {
            let mut statement = inner.conn.prepare_cached(sql).during(OPERATION)?;
            let linked = collect(&mut statement, (map_id, &key), OPERATION, |row| {
                RowReader::new(row, "links", "id")?.parsed("linked", decode_key)
            })?;
            match (linked.into_iter().next(), &found) {
                (None, _) => {}
                (Some(linked), None) => found = Some((map, linked)),
                (Some(linked), Some((first, earlier))) if linked != *earlier => {
                    return Err(StateError::AmbiguousTranslation {
                        side,
                        entity: entity.to_owned(),
                        first: (*first).to_owned(),
                        second: map.clone(),
                    });
                }
                (Some(_), Some(_)) => {}
            }
        }
        Ok(found.map(|(_, linked)| linked))
    }

    fn links(&self, map: &str, after_id: u64, limit: usize) -> Result<Vec<Link>, StateError> {
        const OPERATION: &str = "listing links";
        let inner = self.inner();
        let map_id = inner.maps.id(map)?;
        let mut statement = inner
            .conn
            .prepare_cached(&format!(
                "SELECT {LINK_COLUMNS} FROM links WHERE map_id = ?1 AND id > ?2 \
                 ORDER BY id LIMIT ?3"
            ))
            .during(OPERATION)?;
        collect(
            &mut statement,
            (map_id, sql_u64(after_id), sql_limit(limit)),
            OPERATION,
            |row| read_link(row, &inner.maps),
        )
    }

    fn link_count(&self, map: &str) -> Result<u64, StateError> {
        const OPERATION: &str = "counting links";
        let inner = self.inner();
        let map_id = inner.maps.id(map)?;
        let count: i64 = inner
            .conn
            .prepare_cached("SELECT count(*) FROM links WHERE map_id = ?1")
            .during(OPERATION)?
            .query_row([map_id], |row| row.get(0))
            .during(OPERATION)?;
        Ok(count as u64)
    }

    fn commit(&self, batch: &BatchCommit) -> Result<CommitReceipt, StateError> {
        const OPERATION: &str = "committing a batch";
        if batch.is_empty() {
            return Ok(CommitReceipt::default());
        }
        let at = batch.at.map_or_else(now_ms, ms);
        let mut guard = self.inner();
        let inner = &mut *guard;
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .during(OPERATION)?;
        let receipt = apply_batch(&tx, &inner.maps, batch, at)?;
        #[cfg(test)]
        if self
            .fail_before_commit
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(StateError::Invalid {
                what: "test batch".to_owned(),
                detail: "failure injected before commit".to_owned(),
            });
        }
        tx.commit().during(OPERATION)?;
        Ok(receipt)
    }

    fn pending_links(&self) -> Result<Vec<(u64, PendingLink)>, StateError> {
        const OPERATION: &str = "reading pending links";
        let inner = self.inner();
        let mut statement = inner
            .conn
            .prepare_cached(
                "SELECT id, map_id, target, written, erp_key, crm_key, erp_image, crm_image, \
                 plugin_version FROM pending_links ORDER BY id",
            )
            .during(OPERATION)?;
        collect(&mut statement, [], OPERATION, |row| {
            let r = RowReader::new(row, "pending_links", "id")?;
            let pending = PendingLink {
                target: r.named("target", parse_side)?,
                written: r.parsed_opt("written", decode_image)?,
                link: LinkUpsert {
                    map: r.map_name(&inner.maps, "map_id")?,
                    erp_key: r.parsed("erp_key", decode_key)?,
                    crm_key: r.parsed("crm_key", decode_key)?,
                    erp_image: r.parsed("erp_image", decode_image)?,
                    crm_image: r.parsed("crm_image", decode_image)?,
                    plugin_version: r.get("plugin_version")?,
                },
            };
            Ok((r.id as u64, pending))
        })
    }

    fn queued(&self, map: &str, after: u64, limit: usize) -> Result<Vec<QueuedChange>, StateError> {
        const OPERATION: &str = "reading a queue";
        let inner = self.inner();
        let map_id = inner.maps.id(map)?;
        let mut statement = inner
            .conn
            .prepare_cached(&format!(
                "SELECT seq, queued_at, {CHANGE_COLUMNS} FROM queue \
                 WHERE map_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
            ))
            .during(OPERATION)?;
        collect(
            &mut statement,
            (map_id, sql_u64(after), sql_limit(limit)),
            OPERATION,
            |row| {
                let r = RowReader::new(row, "queue", "seq")?;
                Ok(QueuedChange {
                    seq: r.id as u64,
                    queued_at: r.time("queued_at")?,
                    change: r.change(&inner.maps)?,
                })
            },
        )
    }

    fn queue_depth(&self, map: &str) -> Result<u64, StateError> {
        const OPERATION: &str = "reading a queue depth";
        let inner = self.inner();
        let map_id = inner.maps.id(map)?;
        inner
            .conn
            .prepare_cached("SELECT id, queue_depth FROM maps WHERE id = ?1")
            .during(OPERATION)?
            .query_row([map_id], |row| {
                Ok(RowReader::new(row, "maps", "id").and_then(|r| r.u64("queue_depth")))
            })
            .during(OPERATION)?
    }

    fn errors(&self, query: &ErrorQuery) -> Result<Vec<ErrorEntry>, StateError> {
        const OPERATION: &str = "listing errors";
        let inner = self.inner();
        let mut sql = format!("SELECT {ERROR_COLUMNS} FROM errors WHERE id > ?1");
        let mut params = vec![SqlValue::Integer(sql_u64(query.after_id))];
        if let Some(map) = &query.map {
            params.push(SqlValue::Integer(inner.maps.id(map)?));
            sql.push_str(&format!(" AND map_id = ?{}", params.len()));
        }
        if let Some(class) = query.class {
            params.push(SqlValue::Text(class.as_str().to_owned()));
            sql.push_str(&format!(" AND class = ?{}", params.len()));
        }
        if !query.include_resolved {
            sql.push_str(" AND resolved_at IS NULL");
        }
        params.push(SqlValue::Integer(sql_limit(query.limit)));
        sql.push_str(&format!(" ORDER BY id LIMIT ?{}", params.len()));
        let mut statement = inner.conn.prepare_cached(&sql).during(OPERATION)?;
        collect(
            &mut statement,
            rusqlite::params_from_iter(params),
            OPERATION,
            |row| read_error(row, &inner.maps),
        )
    }

    fn error(&self, id: u64) -> Result<Option<ErrorEntry>, StateError> {
        const OPERATION: &str = "reading an error";
        let inner = self.inner();
        let mut statement = inner
            .conn
            .prepare_cached(&format!("SELECT {ERROR_COLUMNS} FROM errors WHERE id = ?1"))
            .during(OPERATION)?;
        let found = collect(&mut statement, [sql_u64(id)], OPERATION, |row| {
            read_error(row, &inner.maps)
        })?;
        Ok(found.into_iter().next())
    }

    fn due_errors(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ErrorEntry>, StateError> {
        const OPERATION: &str = "listing errors due for retry";
        let inner = self.inner();
        let mut statement = inner
            .conn
            .prepare_cached(&format!(
                "SELECT {ERROR_COLUMNS} FROM errors WHERE resolved_at IS NULL \
                 AND next_retry_at IS NOT NULL AND next_retry_at <= ?1 \
                 ORDER BY next_retry_at, id LIMIT ?2"
            ))
            .during(OPERATION)?;
        collect(
            &mut statement,
            (ms(now), sql_limit(limit)),
            OPERATION,
            |row| read_error(row, &inner.maps),
        )
    }

    fn open_error_count(&self, map: &str) -> Result<u64, StateError> {
        const OPERATION: &str = "counting errors";
        let inner = self.inner();
        let map_id = inner.maps.id(map)?;
        let count: i64 = inner
            .conn
            .prepare_cached("SELECT count(*) FROM errors WHERE map_id = ?1 AND resolved_at IS NULL")
            .during(OPERATION)?
            .query_row([map_id], |row| row.get(0))
            .during(OPERATION)?;
        Ok(count as u64)
    }

    fn initial_sync(&self, map: &str) -> Result<Option<InitialSyncProgress>, StateError> {
        const OPERATION: &str = "reading initial sync progress";
        let inner = self.inner();
        let map_id = inner.maps.id(map)?;
        let mut statement = inner
            .conn
            .prepare_cached(
                "SELECT map_id, side, last_key, rows_done, rows_total, complete, started_at, \
                 updated_at FROM initial_sync WHERE map_id = ?1",
            )
            .during(OPERATION)?;
        let sides = collect(&mut statement, [map_id], OPERATION, |row| {
            let r = RowReader::new(row, "initial_sync", "map_id")?;
            Ok((
                r.named("side", parse_side)?,
                SideProgress {
                    last_key: r.parsed_opt("last_key", decode_key)?,
                    rows_done: r.u64("rows_done")?,
                    rows_total: r.opt_u64("rows_total")?,
                    complete: r.bool("complete")?,
                    started_at: r.time("started_at")?,
                    updated_at: r.time("updated_at")?,
                },
            ))
        })?;
        if sides.is_empty() {
            return Ok(None);
        }
        let mut progress = InitialSyncProgress {
            map: map.to_owned(),
            erp: None,
            crm: None,
        };
        for (side, side_progress) in sides {
            match side {
                Side::Erp => progress.erp = Some(side_progress),
                Side::Crm => progress.crm = Some(side_progress),
            }
        }
        Ok(Some(progress))
    }

    fn prune_activity(
        &self,
        older_than: Option<DateTime<Utc>>,
        keep_newest: Option<u64>,
    ) -> Result<u64, StateError> {
        prune(
            &self.inner().conn,
            ("activity", "at"),
            older_than,
            keep_newest,
            "pruning the activity log",
        )
    }

    fn recorded_changes(&self, query: &RecordingQuery) -> Result<Vec<CapturedRecord>, StateError> {
        const OPERATION: &str = "reading recorded changes";
        let inner = self.inner();
        let map_id = inner.maps.id(&query.map)?;
        let mut statement = inner
            .conn
            .prepare_cached(&format!(
                "SELECT id, recorded_at, {CHANGE_COLUMNS} FROM recorded_changes \
                 WHERE map_id = ?1 AND id > ?2 AND recorded_at >= ?3 AND recorded_at < ?4 \
                 ORDER BY id LIMIT ?5"
            ))
            .during(OPERATION)?;
        collect(
            &mut statement,
            (
                map_id,
                sql_u64(query.after_id),
                query.since.map_or(i64::MIN, ms),
                query.until.map_or(i64::MAX, ms),
                sql_limit(query.limit),
            ),
            OPERATION,
            |row| recorded_change(row, &inner.maps),
        )
    }

    fn prune_recorded(
        &self,
        older_than: Option<DateTime<Utc>>,
        keep_newest: Option<u64>,
    ) -> Result<u64, StateError> {
        prune(
            &self.inner().conn,
            ("recorded_changes", "recorded_at"),
            older_than,
            keep_newest,
            "pruning the recording",
        )
    }

    fn save_setting(
        &self,
        kind: &str,
        name: &str,
        body: Option<&serde_json::Value>,
        by: &str,
    ) -> Result<(), StateError> {
        const OPERATION: &str = "saving an operations setting";
        let inner = self.inner();
        inner
            .conn
            .prepare_cached(
                "INSERT INTO operations_settings (kind, name, body, updated_at, updated_by) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body, \
                 updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            )
            .during(OPERATION)?
            .execute(rusqlite::params![
                kind,
                name,
                body.map(|body| body.to_string()),
                now_ms(),
                by
            ])
            .during(OPERATION)?;
        Ok(())
    }

    fn settings(&self, kind: &str) -> Result<Vec<OperationsSetting>, StateError> {
        const OPERATION: &str = "reading operations settings";
        let inner = self.inner();
        let mut statement = inner
            .conn
            .prepare_cached(
                "SELECT kind, name, body, updated_at, updated_by FROM operations_settings \
                 WHERE kind = ?1 ORDER BY name",
            )
            .during(OPERATION)?;
        collect(&mut statement, [kind], OPERATION, |row| {
            let name: String = row.get(1).during(OPERATION)?;
            let corrupt = |detail: String| StateError::Corrupt {
                table: "operations_settings",
                row: format!("{kind} {name}"),
                detail,
            };
            let body = row
                .get::<_, Option<String>>(2)
                .during(OPERATION)?
                .map(|body| serde_json::from_str(&body))
                .transpose()
                .map_err(|error| corrupt(format!("body: {error}")))?;
            let updated_at: i64 = row.get(3).during(OPERATION)?;
            Ok(OperationsSetting {
                kind: row.get(0).during(OPERATION)?,
                body,
                updated_at: DateTime::from_timestamp_millis(updated_at)
                    .ok_or_else(|| corrupt(format!("updated_at: {updated_at} is not a time")))?,
                updated_by: row.get(4).during(OPERATION)?,
                name,
            })
        })
    }

    fn activity(&self, query: &ActivityQuery) -> Result<Vec<ActivityRecord>, StateError> {
        const OPERATION: &str = "querying activity";
        let inner = self.inner();
        let mut sql = format!("SELECT {ACTIVITY_COLUMNS} FROM activity WHERE id > ?1");
        let mut params = vec![SqlValue::Integer(sql_u64(query.after_id))];
        let mut filter = |column: &str, value: SqlValue| {
            params.push(value);
            sql.push_str(&format!(" AND {column} ?{}", params.len()));
        };
        if let Some(map) = &query.map {
            filter("map_id =", SqlValue::Integer(inner.maps.id(map)?));
        }
        if let Some(kind) = query.kind {
            filter("kind =", SqlValue::Text(kind.as_str().to_owned()));
        }
        if let Some((side, key)) = &query.key {
            let key = key_param(key, || "activity key filter".to_owned())?;
            let column = match side {
                Side::Erp => "erp_key =",
                Side::Crm => "crm_key =",
            };
            filter(column, SqlValue::Text(key));
        }
        if let Some(since) = query.since {
            filter("at >=", SqlValue::Integer(ms(since)));
        }
        if let Some(until) = query.until {
            filter("at <", SqlValue::Integer(ms(until)));
        }
        params.push(SqlValue::Integer(sql_limit(query.limit)));
        sql.push_str(&format!(" ORDER BY id LIMIT ?{}", params.len()));
        let mut statement = inner.conn.prepare_cached(&sql).during(OPERATION)?;
        collect(
            &mut statement,
            rusqlite::params_from_iter(params),
            OPERATION,
            |row| read_activity(row, &inner.maps),
        )
    }
}

/// A reader for a `checkpoints` row, which has no id: it is named by side and scope.
fn checkpoint_reader<'a, 'row>(
    row: &'a rusqlite::Row<'row>,
    side: &str,
    scope: &str,
) -> CheckpointRow<'a, 'row> {
    CheckpointRow {
        row,
        name: format!("{side}/{}", if scope.is_empty() { "(side)" } else { scope }),
    }
}

struct CheckpointRow<'a, 'row> {
    row: &'a rusqlite::Row<'row>,
    name: String,
}

impl CheckpointRow<'_, '_> {
    fn corrupt(&self, column: &str, detail: impl std::fmt::Display) -> StateError {
        StateError::Corrupt {
            table: "checkpoints",
            row: self.name.clone(),
            detail: format!("{column}: {detail}"),
        }
    }

    fn position(&self) -> Result<Position, StateError> {
        let commit: i64 = self
            .row
            .get("commit_pos")
            .map_err(|error| self.corrupt("commit_pos", error))?;
        let index: i64 = self
            .row
            .get("change_index")
            .map_err(|error| self.corrupt("change_index", error))?;
        let index = u32::try_from(index)
            .map_err(|_| self.corrupt("change_index", format!("{index} out of range")))?;
        Ok(Position {
            sequence: u64::from_ne_bytes(commit.to_ne_bytes()),
            index,
        })
    }
}
