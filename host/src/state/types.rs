//! The records the state store keeps and the batch that changes them.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::change::{ChangeOp, Side, SyncError, Value};

use super::encoding;

/// A row's key: its key fields' values in the map's key order for that side.
pub type Key = Vec<Value>;

/// A row image: field name -> value. Ordered, so equal images encode and hash equally.
pub type Image = BTreeMap<String, Value>;

/// Capture positions are the capture module's; the store keeps `sequence` as a 64-bit
/// pattern, so every `u64` round-trips.
pub use crate::capture::Position;

/// The acknowledged capture position of a side's reader, or of one map's own reader
/// where a map reads apart from its side's shared reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The side whose stream the position is in.
    pub side: Side,
    /// `None` for the side's shared capture reader; a map name for that map's own.
    pub map: Option<String>,
    /// Every change up to and including this position is done (applied, queued or
    /// parked as an error) and durable.
    pub position: Position,
}

/// The SHA-256 of an image's canonical JSON encoding.
///
/// The echo check compares it with the hash of a captured row: equal hashes mean the
/// row holds what was last synced.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageHash(pub [u8; 32]);

impl ImageHash {
    /// The hash of `image`, as the store computes it when it saves a link.
    pub fn of(image: &Image) -> ImageHash {
        ImageHash::of_encoded(&encoding::image_json_text(image))
    }

    pub(super) fn of_encoded(encoded: &str) -> ImageHash {
        ImageHash(Sha256::digest(encoded.as_bytes()).into())
    }
}

impl fmt::Display for ImageHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ImageHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageHash({self})")
    }
}

/// The record that a row on the ERP side and a row on the CRM side are the same thing,
/// with the last image synced on each side.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// The store's id of the link; stable while the link's ERP key stays the same.
    pub id: u64,
    /// The map.
    pub map: String,
    /// The ERP row's key.
    pub erp_key: Key,
    /// The CRM row's key.
    pub crm_key: Key,
    /// The ERP row as last synced.
    pub erp_image: Image,
    /// The CRM row as last synced.
    pub crm_image: Image,
    /// Hash of `erp_image`.
    pub erp_hash: ImageHash,
    /// Hash of `crm_image`.
    pub crm_hash: ImageHash,
    /// Content hash of the plugin version that last wrote the link.
    pub plugin_version: String,
    /// When the link was last written.
    pub updated_at: DateTime<Utc>,
}

impl Link {
    /// The key on `side`.
    pub fn key(&self, side: Side) -> &Key {
        match side {
            Side::Erp => &self.erp_key,
            Side::Crm => &self.crm_key,
        }
    }

    /// The last synced image on `side`.
    pub fn image(&self, side: Side) -> &Image {
        match side {
            Side::Erp => &self.erp_image,
            Side::Crm => &self.crm_image,
        }
    }

    /// The hash of the last synced image on `side`.
    pub fn hash(&self, side: Side) -> ImageHash {
        match side {
            Side::Erp => self.erp_hash,
            Side::Crm => self.crm_hash,
        }
    }
}

/// Creates or replaces the link of a map's row pair.
///
/// The new link replaces any link of the map that has the same ERP key or the same CRM
/// key (a key changed on one side); image hashes are computed by the store.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkUpsert {
    /// The map.
    pub map: String,
    /// The ERP row's key; not empty.
    pub erp_key: Key,
    /// The CRM row's key; not empty.
    pub crm_key: Key,
    /// The ERP row as now synced.
    pub erp_image: Image,
    /// The CRM row as now synced.
    pub crm_image: Image,
    /// Content hash of the plugin version that wrote it.
    pub plugin_version: String,
}

/// Removes the link holding `key` on `side`; nothing happens if there is none.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkDelete {
    /// The map.
    pub map: String,
    /// The side of `key`.
    pub side: Side,
    /// The row's key on `side`.
    pub key: Key,
}

/// A write the engine is about to make to one row of a map's `target` side, with the
/// link the write makes true. Saved before the write ([`BatchCommit::pending`]) and
/// settled by the commit that records the write's link ([`BatchCommit::settled`]); a
/// link change of either key settles it too. One left over means the engine stopped
/// (or lost the target) between the write and that commit: the row on `target` then
/// tells whether the write happened, so that a row the engine wrote is not taken for an
/// edit made on that side.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingLink {
    /// The side written.
    pub target: Side,
    /// The fields the write sets, key included; `None` when it deletes the row.
    pub written: Option<Image>,
    /// The link once the write is done; for a delete, the link it removes.
    pub link: LinkUpsert,
}

impl LinkUpsert {
    /// The key on `side`.
    pub fn key(&self, side: Side) -> &Key {
        match side {
            Side::Erp => &self.erp_key,
            Side::Crm => &self.crm_key,
        }
    }
}

/// One change to the links, applied in the order given within a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkChange {
    /// Create or replace a link.
    Upsert(LinkUpsert),
    /// Remove a link.
    Delete(LinkDelete),
}

/// A captured change as the store keeps it (in a map's queue or its error queue), with
/// everything needed to run it again.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChange {
    /// The map it was routed to.
    pub map: String,
    /// The side it was committed on.
    pub side: Side,
    /// The entity on that side.
    pub entity: String,
    /// Insert, update or delete.
    pub op: ChangeOp,
    /// Its position in the side's stream.
    pub position: Position,
    /// The row's key on `side`.
    pub key: Key,
    /// The row before the change, where known.
    pub before: Option<Image>,
    /// The row after the change (`None` for a delete).
    pub after: Option<Image>,
    /// For an update, the names of the changed fields; empty when unknown.
    pub changed: Vec<String>,
    /// When the source committed it, where known.
    pub committed_at: Option<DateTime<Utc>>,
}

/// A change in a map's queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedChange {
    /// Its sequence number: increasing in append order, never reused.
    pub seq: u64,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
    /// The change.
    pub change: StoredChange,
}

/// Removes a map's queued changes up to and including sequence `through`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRemoval {
    /// The map.
    pub map: String,
    /// The last sequence number removed.
    pub through: u64,
}

/// The base and current images of both sides of a parked conflict.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConflictImages {
    /// The ERP row as last synced.
    pub erp_base: Option<Image>,
    /// The CRM row as last synced.
    pub crm_base: Option<Image>,
    /// The ERP row now.
    pub erp: Option<Image>,
    /// The CRM row now.
    pub crm: Option<Image>,
}

/// A change that could not be synced, to keep in its map's error queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewError {
    /// The change.
    pub change: StoredChange,
    /// What went wrong (class, message, field, whether retried automatically).
    pub error: SyncError,
    /// When to retry it automatically; `None` to wait for an admin or a dependency.
    pub next_retry: Option<DateTime<Utc>>,
    /// For a parked conflict, the images of both sides.
    pub conflict: Option<ConflictImages>,
    /// Content hash of the plugin version that ran it, if a plugin ran.
    pub plugin_version: Option<String>,
}

/// Records another failed attempt of an open error.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorRetry {
    /// The error's id.
    pub id: u64,
    /// How the attempt failed (replaces the error's class, message and retry flag).
    pub error: SyncError,
    /// When to try again; `None` to stop retrying automatically.
    pub next_retry: Option<DateTime<Utc>>,
}

/// How an error left the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResolutionKind {
    /// A retry applied the change.
    Applied,
    /// An admin skipped the change: it will not be synced.
    Skipped,
    /// An admin resolved the conflict (picked a side or supplied merged values).
    Resolved,
    /// A later change of the same row made it moot.
    Superseded,
}

impl ResolutionKind {
    /// The resolution's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResolutionKind::Applied => "applied",
            ResolutionKind::Skipped => "skipped",
            ResolutionKind::Resolved => "resolved",
            ResolutionKind::Superseded => "superseded",
        }
    }

    /// Parses a resolution name.
    pub fn parse(name: &str) -> Option<ResolutionKind> {
        [
            ResolutionKind::Applied,
            ResolutionKind::Skipped,
            ResolutionKind::Resolved,
            ResolutionKind::Superseded,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }
}

/// Takes an open error out of the queue, recording who did it and why. The entry is
/// kept, marked resolved, for the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorResolution {
    /// The error's id.
    pub id: u64,
    /// How it was resolved.
    pub kind: ResolutionKind,
    /// Who or what resolved it (`engine`, an admin's name).
    pub by: String,
    /// Why.
    pub reason: String,
}

/// A resolved error's resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// When.
    pub at: DateTime<Utc>,
    /// How.
    pub kind: ResolutionKind,
    /// Who or what.
    pub by: String,
    /// Why.
    pub reason: String,
}

/// An entry of a map's error queue.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorEntry {
    /// Its id, increasing in the order errors were added.
    pub id: u64,
    /// The change.
    pub change: StoredChange,
    /// The latest failure.
    pub error: SyncError,
    /// For a parked conflict, the images of both sides.
    pub conflict: Option<ConflictImages>,
    /// Content hash of the plugin version that last ran it.
    pub plugin_version: Option<String>,
    /// How many times the change was attempted (1 when added).
    pub attempts: u32,
    /// When it first failed.
    pub first_at: DateTime<Utc>,
    /// When it last failed.
    pub last_attempt_at: DateTime<Utc>,
    /// When it is retried automatically, if it is.
    pub next_retry: Option<DateTime<Utc>>,
    /// `None` while open.
    pub resolution: Option<Resolution>,
}

/// Which errors [`StateStore::errors`](super::StateStore::errors) lists, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorQuery {
    /// Only this map's.
    pub map: Option<String>,
    /// Only this class.
    pub class: Option<crate::change::ErrorClass>,
    /// Resolved ones too.
    pub include_resolved: bool,
    /// Only ids above this (paging).
    pub after_id: u64,
    /// At most this many.
    pub limit: usize,
}

impl Default for ErrorQuery {
    fn default() -> ErrorQuery {
        ErrorQuery {
            map: None,
            class: None,
            include_resolved: false,
            after_id: 0,
            limit: 1000,
        }
    }
}

/// What a map is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapMode {
    /// Not syncing; changes are not captured for it.
    Stopped,
    /// Running its initial sync.
    Initializing,
    /// Live sync.
    Running,
    /// Capture goes on into the map's queue.
    Paused,
    /// Draining its queue in order before going live.
    CatchingUp,
    /// Stopped by a failure (a broken plugin, a blocking error).
    Error,
}

impl MapMode {
    /// The mode's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            MapMode::Stopped => "stopped",
            MapMode::Initializing => "initializing",
            MapMode::Running => "running",
            MapMode::Paused => "paused",
            MapMode::CatchingUp => "catching-up",
            MapMode::Error => "error",
        }
    }

    /// Parses a mode name.
    pub fn parse(name: &str) -> Option<MapMode> {
        [
            MapMode::Stopped,
            MapMode::Initializing,
            MapMode::Running,
            MapMode::Paused,
            MapMode::CatchingUp,
            MapMode::Error,
        ]
        .into_iter()
        .find(|mode| mode.as_str() == name)
    }
}

impl fmt::Display for MapMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A map's mode and which of its sides are offline (unreachable; changes queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MapState {
    /// The mode.
    pub mode: MapMode,
    /// The ERP side cannot be reached.
    pub erp_offline: bool,
    /// The CRM side cannot be reached.
    pub crm_offline: bool,
}

impl MapState {
    /// `mode` with both sides online.
    pub fn online(mode: MapMode) -> MapState {
        MapState {
            mode,
            erp_offline: false,
            crm_offline: false,
        }
    }

    /// Whether `side` is offline.
    pub fn offline(&self, side: Side) -> bool {
        match side {
            Side::Erp => self.erp_offline,
            Side::Crm => self.crm_offline,
        }
    }

    /// The same state with `side` marked offline or back online.
    pub fn with_offline(self, side: Side, offline: bool) -> MapState {
        match side {
            Side::Erp => MapState {
                erp_offline: offline,
                ..self
            },
            Side::Crm => MapState {
                crm_offline: offline,
                ..self
            },
        }
    }
}

impl fmt::Display for MapState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mode.as_str())?;
        match (self.erp_offline, self.crm_offline) {
            (true, true) => f.write_str(" (erp and crm offline)"),
            (true, false) => f.write_str(" (erp offline)"),
            (false, true) => f.write_str(" (crm offline)"),
            (false, false) => Ok(()),
        }
    }
}

/// The entities a map links; registering it makes it known to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntities {
    /// The map's name.
    pub name: String,
    /// Its entity on the ERP side.
    pub erp_entity: String,
    /// Its entity on the CRM side.
    pub crm_entity: String,
}

/// A registered map and its current state.
#[derive(Debug, Clone, PartialEq)]
pub struct MapStatus {
    /// Name and entities.
    pub entities: MapEntities,
    /// Mode and offline sides.
    pub state: MapState,
    /// When it entered `state`.
    pub since: DateTime<Utc>,
    /// Changes in its queue.
    pub queue_depth: u64,
}

/// Moves a map to a new state, recording the cause. A transition to the state the map
/// is already in records nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct MapTransition {
    /// The map.
    pub map: String,
    /// The new state.
    pub to: MapState,
    /// Who or what caused it (`admin alice: pause`, `side crm unreachable: ...`).
    pub cause: String,
}

/// A recorded state transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Its id, increasing in the order transitions happened.
    pub id: u64,
    /// The map.
    pub map: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The previous state; `None` when the map was registered.
    pub from: Option<MapState>,
    /// The new state.
    pub to: MapState,
    /// Who or what caused it.
    pub cause: String,
}

/// Initial sync progress of one side of a map, saved after each chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct InitialSyncStep {
    /// The map.
    pub map: String,
    /// The side being read.
    pub side: Side,
    /// The last key done (chunks go in key order); `None` before the first chunk.
    pub last_key: Option<Key>,
    /// Rows done so far.
    pub rows_done: u64,
    /// Rows in all, if counted.
    pub rows_total: Option<u64>,
    /// Whether the side is done.
    pub complete: bool,
}

/// Where one side of a map's initial sync is.
#[derive(Debug, Clone, PartialEq)]
pub struct SideProgress {
    /// The last key done; `None` before the first chunk.
    pub last_key: Option<Key>,
    /// Rows done so far.
    pub rows_done: u64,
    /// Rows in all, if counted.
    pub rows_total: Option<u64>,
    /// Whether the side is done.
    pub complete: bool,
    /// When the side's first step was saved.
    pub started_at: DateTime<Utc>,
    /// When its last step was saved.
    pub updated_at: DateTime<Utc>,
}

/// Where a map's initial sync is, per side.
#[derive(Debug, Clone, PartialEq)]
pub struct InitialSyncProgress {
    /// The map.
    pub map: String,
    /// The ERP side's progress, if started.
    pub erp: Option<SideProgress>,
    /// The CRM side's progress, if started.
    pub crm: Option<SideProgress>,
}

/// What an activity log entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActivityKind {
    /// A change was applied on the other side.
    Applied,
    /// The map's filter left a change out.
    Filtered,
    /// A captured change was our own write coming back.
    Echo,
    /// A change needed no write (the other side already matched).
    NoOp,
    /// Both sides changed a row since the last sync.
    Conflict,
    /// A change went to the error queue (recorded by the store).
    Error,
    /// A queued error was tried again and failed (recorded by the store).
    ErrorRetried,
    /// An error left the queue (recorded by the store, with who and why).
    ErrorResolved,
    /// A map changed state (recorded by the store).
    StateChange,
    /// A map's plugin version changed.
    PluginVersion,
    /// A plugin file dropped into the plugins folder was refused (the map runs on).
    PluginRejected,
    /// Queued changes were discarded on resume.
    Discarded,
    /// An alert rule fired or cleared.
    Alert,
}

impl ActivityKind {
    /// The kind's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityKind::Applied => "applied",
            ActivityKind::Filtered => "filtered",
            ActivityKind::Echo => "echo",
            ActivityKind::NoOp => "no-op",
            ActivityKind::Conflict => "conflict",
            ActivityKind::Error => "error",
            ActivityKind::ErrorRetried => "error-retried",
            ActivityKind::ErrorResolved => "error-resolved",
            ActivityKind::StateChange => "state-change",
            ActivityKind::PluginVersion => "plugin-version",
            ActivityKind::PluginRejected => "plugin-rejected",
            ActivityKind::Discarded => "discarded",
            ActivityKind::Alert => "alert",
        }
    }

    /// Parses a kind name.
    pub fn parse(name: &str) -> Option<ActivityKind> {
        [
            ActivityKind::Applied,
            ActivityKind::Filtered,
            ActivityKind::Echo,
            ActivityKind::NoOp,
            ActivityKind::Conflict,
            ActivityKind::Error,
            ActivityKind::ErrorRetried,
            ActivityKind::ErrorResolved,
            ActivityKind::StateChange,
            ActivityKind::PluginVersion,
            ActivityKind::PluginRejected,
            ActivityKind::Discarded,
            ActivityKind::Alert,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for ActivityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One sync event for the activity log.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityEntry {
    /// The map, or `None` for an engine-wide event.
    pub map: Option<String>,
    /// What happened.
    pub kind: ActivityKind,
    /// The side the change came from (the direction is from it to the other).
    pub source: Option<Side>,
    /// The row's ERP key, where known.
    pub erp_key: Option<Key>,
    /// The row's CRM key, where known.
    pub crm_key: Option<Key>,
    /// The change's position in its source's stream.
    pub position: Option<Position>,
    /// Content hash of the plugin version involved.
    pub plugin_version: Option<String>,
    /// The error queue entry concerned.
    pub error_id: Option<u64>,
    /// A line for humans.
    pub message: String,
    /// Structured detail (fields written, conflict images, ...).
    pub detail: Option<serde_json::Value>,
}

impl ActivityEntry {
    /// An entry of `kind` for `map` with `message` and nothing else.
    pub fn new(map: Option<&str>, kind: ActivityKind, message: impl Into<String>) -> Self {
        ActivityEntry {
            map: map.map(str::to_owned),
            kind,
            source: None,
            erp_key: None,
            crm_key: None,
            position: None,
            plugin_version: None,
            error_id: None,
            message: message.into(),
            detail: None,
        }
    }
}

/// A recorded activity log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityRecord {
    /// Its id, increasing in the order entries were recorded.
    pub id: u64,
    /// When.
    pub at: DateTime<Utc>,
    /// The entry.
    pub entry: ActivityEntry,
}

/// Which entries [`StateStore::activity`](super::StateStore::activity) lists, oldest
/// first.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityQuery {
    /// Only this map's.
    pub map: Option<String>,
    /// Only this kind.
    pub kind: Option<ActivityKind>,
    /// Only entries about the row with this key on this side (needs `map`).
    pub key: Option<(Side, Key)>,
    /// Only entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only entries before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only ids above this (paging).
    pub after_id: u64,
    /// At most this many.
    pub limit: usize,
}

impl Default for ActivityQuery {
    fn default() -> ActivityQuery {
        ActivityQuery {
            map: None,
            kind: None,
            key: None,
            since: None,
            until: None,
            after_id: 0,
            limit: 1000,
        }
    }
}

/// A captured change as the recording keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedRecord {
    /// Its id, increasing in the order changes were recorded.
    pub id: u64,
    /// When the engine recorded it.
    pub recorded_at: DateTime<Utc>,
    /// The change as captured.
    pub change: StoredChange,
}

/// Which recorded changes [`StateStore::recorded_changes`](super::StateStore::recorded_changes)
/// lists, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingQuery {
    /// The map's.
    pub map: String,
    /// Only changes recorded at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only changes recorded before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only ids above this (paging).
    pub after_id: u64,
    /// At most this many.
    pub limit: usize,
}

/// A setting made through the admin API (an alert rule, a subscriber, an error mode).
#[derive(Debug, Clone, PartialEq)]
pub struct OperationsSetting {
    /// What it is: `alert-rule`, `subscriber` or `error-mode`.
    pub kind: String,
    /// Its name (the rule's, the subscriber's, the map's).
    pub name: String,
    /// The setting; `None` when it was deleted.
    pub body: Option<serde_json::Value>,
    /// When it was made.
    pub updated_at: DateTime<Utc>,
    /// Who made it.
    pub updated_by: String,
}

/// Everything one applied batch changes in the state, made durable in one transaction:
/// after a crash either all of it happened or none of it did.
///
/// Within the batch, the store applies transitions, checkpoints, link changes (in their
/// order; each settles the pending links of its keys), settled and new pending links,
/// queue removals, queue appends, new errors, error retries, error resolutions,
/// activity entries, then initial sync resets and steps. It records activity entries
/// of its own for transitions, new errors, retries and resolutions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchCommit {
    /// The time recorded on everything the batch writes; `None` for the clock at commit.
    pub at: Option<DateTime<Utc>>,
    /// Capture positions acknowledged by this batch.
    pub checkpoints: Vec<Checkpoint>,
    /// Link upserts and deletes, in order.
    pub links: Vec<LinkChange>,
    /// Changes appended to their maps' queues, in order.
    pub enqueue: Vec<StoredChange>,
    /// Queued changes done with (drained in catch-up, discarded, turned into errors).
    pub dequeue: Vec<QueueRemoval>,
    /// Changes that failed, for their maps' error queues.
    pub errors: Vec<NewError>,
    /// Failed retries of open errors.
    pub error_retries: Vec<ErrorRetry>,
    /// Errors leaving the queue.
    pub error_resolutions: Vec<ErrorResolution>,
    /// Activity log entries.
    pub activity: Vec<ActivityEntry>,
    /// Captured changes to keep in the recording (for export as a change set).
    pub record: Vec<StoredChange>,
    /// Map state transitions.
    pub transitions: Vec<MapTransition>,
    /// Maps whose initial sync progress is cleared (a restart from scratch), applied
    /// before `initial_sync`.
    pub initial_sync_resets: Vec<String>,
    /// Initial sync progress.
    pub initial_sync: Vec<InitialSyncStep>,
    /// Writes about to be made, saved before them (see [`PendingLink`]); their ids come
    /// back in [`CommitReceipt::pending`].
    pub pending: Vec<PendingLink>,
    /// Ids of pending links done with: their write's outcome is recorded by this batch.
    pub settled: Vec<u64>,
}

impl BatchCommit {
    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.checkpoints.is_empty()
            && self.links.is_empty()
            && self.enqueue.is_empty()
            && self.dequeue.is_empty()
            && self.errors.is_empty()
            && self.error_retries.is_empty()
            && self.error_resolutions.is_empty()
            && self.activity.is_empty()
            && self.record.is_empty()
            && self.transitions.is_empty()
            && self.initial_sync_resets.is_empty()
            && self.initial_sync.is_empty()
            && self.pending.is_empty()
            && self.settled.is_empty()
    }
}

/// What a committed batch created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitReceipt {
    /// The sequence numbers of `enqueue`, in order.
    pub queued: Vec<u64>,
    /// The ids of `errors`, in order.
    pub errors: Vec<u64>,
    /// Links replaced by an upsert because they held the upsert's CRM key for another
    /// ERP key.
    pub links_displaced: u64,
    /// Queued changes removed by `dequeue`.
    pub dequeued: u64,
    /// The ids of `pending`, in order.
    pub pending: Vec<u64>,
}
