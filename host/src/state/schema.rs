//! The SQLite schema of the state store and its migrations.
//!
//! `schema_version` holds one row per migration applied. At open, every migration above
//! the store's version runs in its own transaction together with its version row, so a
//! crash mid-migration leaves the store at the previous version. A store whose version
//! is above [`SCHEMA_VERSION`] was written by a newer dualwrite and is refused.
//!
//! Conventions: times are Unix milliseconds (UTC); keys are canonical JSON arrays and
//! images JSON objects (see `encoding.rs`); sides, ops, modes, classes and kinds are
//! their stable names; a position is `commit_pos` (the `u64` as its 64-bit pattern) and
//! `change_index`.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::error::{SqliteContext, StateError};

/// The store's `application_id`: "dwst".
pub(super) const APPLICATION_ID: i64 = 0x6477_7374;

/// The newest schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Migration `n` (1-based) brings the schema from version `n - 1` to `n`.
const MIGRATIONS: &[&str] = &[V1, V2, MAP_CONFIGS, PLUGIN_ARCHIVE, PENDING_LINKS];

/// Version 1: maps and their transitions, checkpoints, links, queues, errors, activity,
/// initial sync progress.
const V1: &str = r#"
CREATE TABLE schema_version (
    version     INTEGER PRIMARY KEY,
    applied_at  INTEGER NOT NULL
);

-- One row per registered map: its entities, current state and queue depth (kept in
-- step with `queue` by every commit, so metrics read it without counting).
CREATE TABLE maps (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    erp_entity   TEXT NOT NULL,
    crm_entity   TEXT NOT NULL,
    mode         TEXT NOT NULL,
    erp_offline  INTEGER NOT NULL,
    crm_offline  INTEGER NOT NULL,
    mode_since   INTEGER NOT NULL,
    queue_depth  INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX maps_erp_entity ON maps (erp_entity);
CREATE INDEX maps_crm_entity ON maps (crm_entity);

-- Append-only: every state change of every map, with its cause.
CREATE TABLE map_transitions (
    id               INTEGER PRIMARY KEY,
    map_id           INTEGER NOT NULL REFERENCES maps (id),
    at               INTEGER NOT NULL,
    from_mode        TEXT,
    from_erp_offline INTEGER,
    from_crm_offline INTEGER,
    to_mode          TEXT NOT NULL,
    to_erp_offline   INTEGER NOT NULL,
    to_crm_offline   INTEGER NOT NULL,
    cause            TEXT NOT NULL
);
CREATE INDEX map_transitions_map ON map_transitions (map_id, id);

-- Acknowledged capture positions: scope '' is the side's shared reader, otherwise a
-- map name.
CREATE TABLE checkpoints (
    side          TEXT NOT NULL,
    scope         TEXT NOT NULL,
    commit_pos    INTEGER NOT NULL,
    change_index  INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (side, scope)
) WITHOUT ROWID;

-- The crosswalk: one row per linked pair, unique by each side's key within a map.
CREATE TABLE links (
    id              INTEGER PRIMARY KEY,
    map_id          INTEGER NOT NULL REFERENCES maps (id),
    erp_key         TEXT NOT NULL,
    crm_key         TEXT NOT NULL,
    erp_image       TEXT NOT NULL,
    crm_image       TEXT NOT NULL,
    erp_hash        BLOB NOT NULL,
    crm_hash        BLOB NOT NULL,
    plugin_version  TEXT NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX links_erp_key ON links (map_id, erp_key);
CREATE UNIQUE INDEX links_crm_key ON links (map_id, crm_key);

-- Per-map queues of captured changes (paused maps, offline sides), in `seq` order.
CREATE TABLE queue (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    map_id        INTEGER NOT NULL REFERENCES maps (id),
    queued_at     INTEGER NOT NULL,
    side          TEXT NOT NULL,
    entity        TEXT NOT NULL,
    op            TEXT NOT NULL,
    commit_pos    INTEGER NOT NULL,
    change_index  INTEGER NOT NULL,
    row_key       TEXT NOT NULL,
    before_image  TEXT,
    after_image   TEXT,
    changed       TEXT NOT NULL,
    committed_at  INTEGER
);
CREATE INDEX queue_map ON queue (map_id, seq);

-- Per-map error queues. Resolved errors stay, with who resolved them, how and why,
-- until retention prunes them.
CREATE TABLE errors (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    map_id           INTEGER NOT NULL REFERENCES maps (id),
    side             TEXT NOT NULL,
    entity           TEXT NOT NULL,
    op               TEXT NOT NULL,
    commit_pos       INTEGER NOT NULL,
    change_index     INTEGER NOT NULL,
    row_key          TEXT NOT NULL,
    before_image     TEXT,
    after_image      TEXT,
    changed          TEXT NOT NULL,
    committed_at     INTEGER,
    class            TEXT NOT NULL,
    reason           TEXT,
    message          TEXT NOT NULL,
    field            TEXT,
    retryable        INTEGER NOT NULL,
    conflict         TEXT,
    plugin_version   TEXT,
    attempts         INTEGER NOT NULL,
    first_at         INTEGER NOT NULL,
    last_attempt_at  INTEGER NOT NULL,
    next_retry_at    INTEGER,
    resolved_at      INTEGER,
    resolution       TEXT,
    resolved_by      TEXT,
    resolution_note  TEXT
);
CREATE INDEX errors_open ON errors (map_id, id) WHERE resolved_at IS NULL;
CREATE INDEX errors_due ON errors (next_retry_at)
    WHERE resolved_at IS NULL AND next_retry_at IS NOT NULL;

-- The activity log: every sync event, findable by map, row (either side's key) and
-- time.
CREATE TABLE activity (
    id              INTEGER PRIMARY KEY,
    at              INTEGER NOT NULL,
    map_id          INTEGER REFERENCES maps (id),
    kind            TEXT NOT NULL,
    source          TEXT,
    erp_key         TEXT,
    crm_key         TEXT,
    commit_pos      INTEGER,
    change_index    INTEGER,
    plugin_version  TEXT,
    error_id        INTEGER,
    message         TEXT NOT NULL,
    detail          TEXT
);
CREATE INDEX activity_map ON activity (map_id, id);
CREATE INDEX activity_at ON activity (at);
CREATE INDEX activity_erp_key ON activity (map_id, erp_key) WHERE erp_key IS NOT NULL;
CREATE INDEX activity_crm_key ON activity (map_id, crm_key) WHERE crm_key IS NOT NULL;

-- Initial sync progress, per map and side, saved after each chunk.
CREATE TABLE initial_sync (
    map_id      INTEGER NOT NULL REFERENCES maps (id),
    side        TEXT NOT NULL,
    last_key    TEXT,
    rows_done   INTEGER NOT NULL,
    rows_total  INTEGER,
    complete    INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (map_id, side)
) WITHOUT ROWID;
"#;

/// Version 2: the recording of captured changes (for `dualwrite record`) and the
/// operations settings made through the admin API (alert rules, subscribers, error
/// modes), so they outlive a restart.
const V2: &str = r#"
-- Every captured change routed to a map, as captured, kept for export as a change set
-- until retention prunes it.
CREATE TABLE recorded_changes (
    id            INTEGER PRIMARY KEY,
    map_id        INTEGER NOT NULL REFERENCES maps (id),
    recorded_at   INTEGER NOT NULL,
    side          TEXT NOT NULL,
    entity        TEXT NOT NULL,
    op            TEXT NOT NULL,
    commit_pos    INTEGER NOT NULL,
    change_index  INTEGER NOT NULL,
    row_key       TEXT NOT NULL,
    before_image  TEXT,
    after_image   TEXT,
    changed       TEXT NOT NULL,
    committed_at  INTEGER
);
CREATE INDEX recorded_changes_map ON recorded_changes (map_id, recorded_at);
CREATE INDEX recorded_changes_at ON recorded_changes (recorded_at);

-- Settings made through the admin API, by kind ('alert-rule', 'subscriber',
-- 'error-mode') and name: `body` is the setting as JSON, NULL when it was deleted (a
-- deletion of something the config file defines must outlive a restart too).
CREATE TABLE operations_settings (
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    body        TEXT,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;
"#;

/// Each map's plugin and config history (runtime config edits, plugin swaps), newest
/// last; see `map_config.rs`. Its own const so it can be renumbered next to other
/// migrations.
const MAP_CONFIGS: &str = r#"
CREATE TABLE map_configs (
    id                INTEGER PRIMARY KEY,
    map_id            INTEGER NOT NULL REFERENCES maps (id),
    at                INTEGER NOT NULL,
    plugin_file       TEXT NOT NULL,
    plugin_hash       TEXT NOT NULL,
    plugin_version    TEXT NOT NULL,
    config            TEXT NOT NULL,
    base_config_hash  TEXT NOT NULL,
    by                TEXT NOT NULL,
    reason            TEXT NOT NULL
);
CREATE INDEX map_configs_map ON map_configs (map_id, id);
"#;

/// The bytes of every plugin version a map ran, by content hash, so a rollback (and a
/// restart after one) finds the previous version after its file was replaced in the
/// plugins folder; and an index to read a map's most recent recorded changes (the dry
/// run of a dropped plugin file).
const PLUGIN_ARCHIVE: &str = r#"
CREATE TABLE plugin_archive (
    hash         TEXT PRIMARY KEY,
    file         TEXT NOT NULL,
    bytes        BLOB NOT NULL,
    archived_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX recorded_changes_map_id ON recorded_changes (map_id, id);
"#;

/// Writes about to be made and the links they make true (`PendingLink`), saved before
/// the write and deleted by the commit that records its link; `written` is NULL for a
/// delete of the row. Indexed by both keys, as a link change settles its keys' rows.
const PENDING_LINKS: &str = r#"
CREATE TABLE pending_links (
    id              INTEGER PRIMARY KEY,
    map_id          INTEGER NOT NULL REFERENCES maps (id),
    target          TEXT NOT NULL,
    written         TEXT,
    erp_key         TEXT NOT NULL,
    crm_key         TEXT NOT NULL,
    erp_image       TEXT NOT NULL,
    crm_image       TEXT NOT NULL,
    plugin_version  TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX pending_links_erp_key ON pending_links (map_id, erp_key);
CREATE INDEX pending_links_crm_key ON pending_links (map_id, crm_key);
"#;

/// Checks the file is a state store (or empty) and brings its schema up to date.
pub(super) fn migrate(conn: &mut Connection, path: &Path, now_ms: i64) -> Result<(), StateError> {
    let application_id: i64 = conn
        .query_row("PRAGMA application_id", [], |row| row.get(0))
        .during("reading the application id")?;
    let has_tables: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table')",
            [],
            |row| row.get(0),
        )
        .during("reading the schema")?;
    let found = if application_id == APPLICATION_ID {
        conn.query_row("SELECT max(version) FROM schema_version", [], |row| {
            row.get::<_, Option<i64>>(0)
        })
        .optional()
        .during("reading the schema version")?
        .flatten()
        .ok_or_else(|| StateError::NotAStateStore {
            path: path.to_owned(),
            detail: "its schema_version table is missing or empty".to_owned(),
        })?
    } else if application_id == 0 && !has_tables {
        0
    } else if application_id == 0 {
        return Err(StateError::NotAStateStore {
            path: path.to_owned(),
            detail: "it holds tables of another application".to_owned(),
        });
    } else {
        return Err(StateError::NotAStateStore {
            path: path.to_owned(),
            detail: format!("its application id is {application_id:#x}"),
        });
    };
    if found > SCHEMA_VERSION {
        return Err(StateError::NewerSchema {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i64 + 1;
        let failed = |source| StateError::Migrate {
            path: path.to_owned(),
            version,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .map_err(failed)?;
        tx.execute_batch(sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)",
            (version, now_ms),
        )
        .map_err(failed)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(path = %path.display(), version, "state store schema migrated");
    }
    Ok(())
}
