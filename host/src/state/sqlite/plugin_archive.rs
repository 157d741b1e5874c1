//! The SQLite side of the plugin archive (`plugin_archive` table) and of reading a map's
//! newest recorded changes.

use rusqlite::OptionalExtension;

use super::{CHANGE_COLUMNS, SqliteStateStore, collect, now_ms, recorded_change, sql_limit};
use crate::state::error::{SqliteContext, StateError};
use crate::state::types::CapturedRecord;

impl SqliteStateStore {
    pub(super) fn insert_archived_plugin(
        &self,
        hash: &str,
        file: &str,
        bytes: &[u8],
    ) -> Result<(), StateError> {
        self.inner()
            .conn
            .prepare_cached(
                "INSERT INTO plugin_archive (hash, file, bytes, archived_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (hash) DO NOTHING",
            )
            .during("archiving a plugin version")?
            .execute((hash, file, bytes, now_ms()))
            .during("archiving a plugin version")?;
        Ok(())
    }

    pub(super) fn read_archived_plugin(
        &self,
        hash: &str,
    ) -> Result<Option<(String, Vec<u8>)>, StateError> {
        self.inner()
            .conn
            .prepare_cached("SELECT file, bytes FROM plugin_archive WHERE hash = ?1")
            .during("reading an archived plugin version")?
            .query_row([hash], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()
            .during("reading an archived plugin version")
    }

    pub(super) fn read_latest_recorded(
        &self,
        map: &str,
        limit: usize,
    ) -> Result<Vec<CapturedRecord>, StateError> {
        const OPERATION: &str = "reading the newest recorded changes";
        let inner = self.inner();
        let map_id = inner.maps.id(map)?;
        let mut statement = inner
            .conn
            .prepare_cached(&format!(
                "SELECT id, recorded_at, {CHANGE_COLUMNS} FROM recorded_changes \
                 WHERE map_id = ?1 ORDER BY id DESC LIMIT ?2"
            ))
            .during(OPERATION)?;
        let mut records = collect(
            &mut statement,
            (map_id, sql_limit(limit)),
            OPERATION,
            |row| recorded_change(row, &inner.maps),
        )?;
        records.reverse();
        Ok(records)
    }
}
