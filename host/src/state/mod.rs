//! The engine's durable state: checkpoints, links, per-map queues, error queues, map
//! states and their transitions, initial sync progress and the activity log.
//!
//! Everything sits behind [`StateStore`], so a scaled-out deployment can keep it in
//! another database; [`SqliteStateStore`] keeps it in `state.db` in the data directory.
//!
//! # How data enters and leaves
//!
//! Writes go through one call, [`StateStore::commit`], with a [`BatchCommit`]: the links
//! an applied batch changed, the source side's new [`Checkpoint`], changes queued for
//! paused maps, errors, activity entries, state transitions, initial sync progress. One
//! batch is one transaction, so after a crash either all of it happened or none did; the
//! engine then reads its side again from the old checkpoint and re-applies, which is
//! harmless because writes are idempotent upserts by key. A write to a side and the
//! commit that records its link cannot be one transaction, so the link each write will
//! make true is saved before the write ([`PendingLink`]) and settled by that commit; one
//! left over after a crash is checked against the row. A position may be acknowledged
//! to its source only once the `commit` that saved it has returned. The store records
//! the audit trail of its own state changes itself (transitions, errors added, retried
//! and resolved) as activity entries.
//!
//! Reads serve the engine (the checkpoint to resume from, a link's last synced images
//! for echo and conflict checks, key translation for plugin lookups, a queue to drain,
//! errors due for retry) and the admin side (map states, transitions, errors, activity).
//!
//! Keys and images are kept in the JSON form of [`Value`] (the
//! replay format's), keys canonically so that equal keys always match: decimals keep
//! their scale, `"10.50"` is not `"10.5"`. A value that would not come back exactly is
//! refused with [`StateError::Invalid`]; data read back that is not what the store wrote
//! is [`StateError::Corrupt`] naming the table and row, never a panic.

mod encoding;
mod error;
mod map_config;
mod schema;
mod sqlite;
mod types;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};

pub use error::StateError;
pub use map_config::{MapConfigRecord, NewMapConfig};
pub use schema::SCHEMA_VERSION;
pub use sqlite::{Durability, STATE_FILE, SqliteOptions, SqliteStateStore};
pub use types::{
    ActivityEntry, ActivityKind, ActivityQuery, ActivityRecord, BatchCommit, CapturedRecord,
    Checkpoint, CommitReceipt, ConflictImages, ErrorEntry, ErrorQuery, ErrorResolution, ErrorRetry,
    Image, ImageHash, InitialSyncProgress, InitialSyncStep, Key, Link, LinkChange, LinkDelete,
    LinkUpsert, MapEntities, MapMode, MapState, MapStatus, MapTransition, NewError,
    OperationsSetting, PendingLink, Position, QueueRemoval, QueuedChange, RecordingQuery,
    Resolution, ResolutionKind, SideProgress, StoredChange, Transition,
};

use crate::change::{Side, Value};

/// The engine's durable state. Implementations are shared between the sync loop and
/// the admin side, hence `Send + Sync`; every method is one transaction.
pub trait StateStore: Send + Sync {
    /// Makes a map known (state `stopped`, transition recorded) or, if it is known,
    /// updates its entities; returns its status. Every other call naming a map that was
    /// never registered fails with [`StateError::UnknownMap`].
    fn register_map(&self, map: &MapEntities) -> Result<MapStatus, StateError>;

    /// Every registered map, by name.
    fn maps(&self) -> Result<Vec<MapStatus>, StateError>;

    /// One map's status.
    fn map_status(&self, map: &str) -> Result<MapStatus, StateError>;

    /// A map's state transitions, oldest first (the first is its registration).
    fn transitions(&self, map: &str) -> Result<Vec<Transition>, StateError>;

    /// The acknowledged position of `side`'s shared reader (`map` = `None`) or of a
    /// map's own reader; `None` if nothing was acknowledged yet.
    fn checkpoint(&self, side: Side, map: Option<&str>) -> Result<Option<Position>, StateError>;

    /// Every saved checkpoint.
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StateError>;

    /// The link of `map` holding `key` on `side`.
    fn link(&self, map: &str, side: Side, key: &[Value]) -> Result<Option<Link>, StateError>;

    /// For a plugin's `translate-key`: the key, on the other side, of the row linked to
    /// the row of `entity` on `side` with `key`, through whichever map links `entity`.
    /// Fails with [`StateError::AmbiguousTranslation`] if two maps link it to different
    /// rows.
    fn translate_key(
        &self,
        side: Side,
        entity: &str,
        key: &[Value],
    ) -> Result<Option<Key>, StateError>;

    /// Up to `limit` links of `map` with ids above `after_id`, by id (paging).
    fn links(&self, map: &str, after_id: u64, limit: usize) -> Result<Vec<Link>, StateError>;

    /// How many links `map` has.
    fn link_count(&self, map: &str) -> Result<u64, StateError>;

    /// Makes everything in `batch` durable in one transaction, or nothing of it. When
    /// this returns `Ok`, the batch survives a crash of the process (and, with
    /// [`Durability::Full`], of the machine).
    fn commit(&self, batch: &BatchCommit) -> Result<CommitReceipt, StateError>;

    /// Every pending link not settled yet (see [`PendingLink`]), by id, oldest first.
    fn pending_links(&self) -> Result<Vec<(u64, PendingLink)>, StateError>;

    /// Up to `limit` of `map`'s queued changes with sequence numbers above `after`, in
    /// order.
    fn queued(&self, map: &str, after: u64, limit: usize) -> Result<Vec<QueuedChange>, StateError>;

    /// How many changes `map` has queued.
    fn queue_depth(&self, map: &str) -> Result<u64, StateError>;

    /// Errors matching `query`, oldest first.
    fn errors(&self, query: &ErrorQuery) -> Result<Vec<ErrorEntry>, StateError>;

    /// One error, open or resolved.
    fn error(&self, id: u64) -> Result<Option<ErrorEntry>, StateError>;

    /// Up to `limit` open errors whose next retry is at or before `now`, soonest first.
    fn due_errors(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ErrorEntry>, StateError>;

    /// How many open errors `map` has.
    fn open_error_count(&self, map: &str) -> Result<u64, StateError>;

    /// `map`'s initial sync progress; `None` if none was saved (or it was reset).
    fn initial_sync(&self, map: &str) -> Result<Option<InitialSyncProgress>, StateError>;

    /// Activity entries matching `query`, oldest first.
    fn activity(&self, query: &ActivityQuery) -> Result<Vec<ActivityRecord>, StateError>;

    /// Retention: removes activity entries recorded before `older_than` and all but
    /// the newest `keep_newest` entries (ids grow by one per entry, and pruning only
    /// takes the oldest, so the newest N are the top N ids); returns how many were removed. Errors, links and queues are not touched.
    /// Stores that cannot prune say so.
    fn prune_activity(
        &self,
        older_than: Option<DateTime<Utc>>,
        keep_newest: Option<u64>,
    ) -> Result<u64, StateError> {
        let _ = (older_than, keep_newest);
        Err(StateError::Invalid {
            what: "activity retention".to_owned(),
            detail: "this state store cannot prune its activity log".to_owned(),
        })
    }

    /// Recorded captured changes matching `query`, oldest first.
    fn recorded_changes(&self, query: &RecordingQuery) -> Result<Vec<CapturedRecord>, StateError>;

    /// The newest `limit` recorded changes of `map`, oldest first.
    fn latest_recorded(&self, map: &str, limit: usize) -> Result<Vec<CapturedRecord>, StateError> {
        let _ = (map, limit);
        Ok(Vec::new())
    }

    /// Keeps a plugin version's bytes under its content hash (SHA-256, hex); keeping
    /// the same hash again does nothing. Stores that keep no archive do nothing.
    fn archive_plugin(&self, hash: &str, file: &str, bytes: &[u8]) -> Result<(), StateError> {
        let _ = (hash, file, bytes);
        Ok(())
    }

    /// The archived bytes and file name of a plugin version, by content hash.
    fn archived_plugin(&self, hash: &str) -> Result<Option<(String, Vec<u8>)>, StateError> {
        let _ = hash;
        Ok(None)
    }

    /// Retention of the recording: removes changes recorded before `older_than` and all
    /// but the newest `keep_newest`; returns how many were removed.
    fn prune_recorded(
        &self,
        older_than: Option<DateTime<Utc>>,
        keep_newest: Option<u64>,
    ) -> Result<u64, StateError>;

    /// Saves a setting made through the admin API (`body` `None`: deleted), replacing
    /// the setting of the same kind and name.
    fn save_setting(
        &self,
        kind: &str,
        name: &str,
        body: Option<&serde_json::Value>,
        by: &str,
    ) -> Result<(), StateError>;

    /// The settings of `kind` made through the admin API, by name.
    fn settings(&self, kind: &str) -> Result<Vec<OperationsSetting>, StateError>;

    /// Records a plugin version and config of a map (see `map_config.rs`) and, in the
    /// same transaction, the batch `with` makes from the new record's id (its activity
    /// entry); returns the id. Stores that keep no history say so.
    fn record_map_config(
        &self,
        record: &NewMapConfig,
        with: &dyn Fn(u64) -> BatchCommit,
    ) -> Result<u64, StateError> {
        let _ = (record, with);
        Err(StateError::Invalid {
            what: "a map's plugin config".to_owned(),
            detail: "this state store keeps no plugin config history".to_owned(),
        })
    }

    /// The recorded plugin versions and configs of `map`, oldest first.
    fn map_configs(&self, map: &str) -> Result<Vec<MapConfigRecord>, StateError> {
        let _ = map;
        Ok(Vec::new())
    }

    /// Saves a checkpoint on its own.
    fn save_checkpoint(&self, checkpoint: Checkpoint) -> Result<(), StateError> {
        self.commit(&BatchCommit {
            checkpoints: vec![checkpoint],
            ..BatchCommit::default()
        })
        .map(drop)
    }

    /// Appends changes to their maps' queues, in order; returns their sequence numbers.
    fn enqueue(&self, changes: Vec<StoredChange>) -> Result<Vec<u64>, StateError> {
        self.commit(&BatchCommit {
            enqueue: changes,
            ..BatchCommit::default()
        })
        .map(|receipt| receipt.queued)
    }

    /// Removes `map`'s queued changes up to and including `through`; returns how many.
    fn remove_queued(&self, map: &str, through: u64) -> Result<u64, StateError> {
        self.commit(&BatchCommit {
            dequeue: vec![QueueRemoval {
                map: map.to_owned(),
                through,
            }],
            ..BatchCommit::default()
        })
        .map(|receipt| receipt.dequeued)
    }

    /// Adds an error to its map's error queue; returns its id.
    fn add_error(&self, error: NewError) -> Result<u64, StateError> {
        let receipt = self.commit(&BatchCommit {
            errors: vec![error],
            ..BatchCommit::default()
        })?;
        Ok(receipt.errors.first().copied().unwrap_or_default())
    }

    /// Records a failed retry of an open error.
    fn mark_retried(&self, retry: ErrorRetry) -> Result<(), StateError> {
        self.commit(&BatchCommit {
            error_retries: vec![retry],
            ..BatchCommit::default()
        })
        .map(drop)
    }

    /// Takes an open error out of the queue, recording who and why.
    fn resolve_error(&self, resolution: ErrorResolution) -> Result<(), StateError> {
        self.commit(&BatchCommit {
            error_resolutions: vec![resolution],
            ..BatchCommit::default()
        })
        .map(drop)
    }

    /// Moves a map to a new state, recording the transition and its cause.
    fn transition(&self, transition: MapTransition) -> Result<(), StateError> {
        self.commit(&BatchCommit {
            transitions: vec![transition],
            ..BatchCommit::default()
        })
        .map(drop)
    }
}
