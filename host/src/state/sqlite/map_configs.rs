//! The SQLite side of the plugin and config history (`map_configs` table).

use rusqlite::TransactionBehavior;

use super::super::map_config::{MapConfigRecord, NewMapConfig};
use super::{RowReader, SqliteStateStore, apply_batch, collect, now_ms};
use crate::state::BatchCommit;
use crate::state::error::{SqliteContext, StateError};

impl SqliteStateStore {
    pub(super) fn insert_map_config(
        &self,
        record: &NewMapConfig,
        with: &dyn Fn(u64) -> BatchCommit,
    ) -> Result<u64, StateError> {
        const OPERATION: &str = "recording a map's plugin config";
        let at = now_ms();
        let mut guard = self.inner();
        let inner = &mut *guard;
        let map_id = inner.maps.id(&record.map)?;
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .during(OPERATION)?;
        tx.prepare_cached(
            "INSERT INTO map_configs (map_id, at, plugin_file, plugin_hash, plugin_version, \
             config, base_config_hash, by, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .during(OPERATION)?
        .execute((
            map_id,
            at,
            &record.plugin_file,
            &record.plugin_hash,
            &record.plugin_version,
            &record.config,
            &record.base_config_hash,
            &record.by,
            &record.reason,
        ))
        .during(OPERATION)?;
        let id = tx.last_insert_rowid() as u64;
        apply_batch(&tx, &inner.maps, &with(id), at)?;
        tx.commit().during(OPERATION)?;
        Ok(id)
    }

    pub(super) fn read_map_configs(&self, map: &str) -> Result<Vec<MapConfigRecord>, StateError> {
        const OPERATION: &str = "reading a map's plugin configs";
        let inner = self.inner();
        let map_id = inner.maps.id(map)?;
        let mut statement = inner
            .conn
            .prepare_cached(
                "SELECT id, at, plugin_file, plugin_hash, plugin_version, config, \
                 base_config_hash, by, reason FROM map_configs WHERE map_id = ?1 ORDER BY id",
            )
            .during(OPERATION)?;
        collect(&mut statement, [map_id], OPERATION, |row| {
            let r = RowReader::new(row, "map_configs", "id")?;
            Ok(MapConfigRecord {
                id: r.id as u64,
                at: r.time("at")?,
                record: NewMapConfig {
                    map: map.to_owned(),
                    plugin_file: r.get("plugin_file")?,
                    plugin_hash: r.get("plugin_hash")?,
                    plugin_version: r.get("plugin_version")?,
                    config: r.get("config")?,
                    base_config_hash: r.get("base_config_hash")?,
                    by: r.get("by")?,
                    reason: r.get("reason")?,
                },
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use tempfile::TempDir;

    use crate::state::{
        ActivityEntry, ActivityKind, ActivityQuery, BatchCommit, MapEntities, NewMapConfig,
        SqliteStateStore, StateError, StateStore,
    };

    fn record(map: &str, config: &str) -> NewMapConfig {
        NewMapConfig {
            map: map.to_owned(),
            plugin_file: "declarative.wasm".to_owned(),
            plugin_hash: "ab".repeat(32),
            plugin_version: "1.0.0".to_owned(),
            config: config.to_owned(),
            base_config_hash: "cd".repeat(32),
            by: "web-ui".to_owned(),
            reason: "a test".to_owned(),
        }
    }

    #[test]
    fn configs_are_kept_per_map_oldest_first_and_survive_a_reopen() {
        let dir = TempDir::new().expect("tempdir");
        {
            let store = SqliteStateStore::open(dir.path()).expect("opens");
            for name in ["a", "b"] {
                store
                    .register_map(&MapEntities {
                        name: name.to_owned(),
                        erp_entity: format!("{name}_erp"),
                        crm_entity: format!("{name}_crm"),
                    })
                    .expect("registered");
            }
            let first = store
                .record_map_config(&record("a", "{}"), &|_| BatchCommit::default())
                .expect("recorded");
            store
                .record_map_config(&record("b", r#"{"x":1}"#), &|_| BatchCommit::default())
                .expect("recorded");
            // The batch made from the new id commits with the record.
            let third = store
                .record_map_config(&record("a", r#"{"y":2}"#), &|id| BatchCommit {
                    activity: vec![ActivityEntry::new(
                        Some("a"),
                        ActivityKind::PluginVersion,
                        format!("config #{id}"),
                    )],
                    ..BatchCommit::default()
                })
                .expect("recorded");
            assert!(third > first);
            assert!(matches!(
                store.record_map_config(&record("nope", "{}"), &|_| BatchCommit::default()),
                Err(StateError::UnknownMap { .. })
            ));
        }
        let store = SqliteStateStore::open(dir.path()).expect("reopens");
        let a = store.map_configs("a").expect("history");
        assert_eq!(
            a.iter()
                .map(|entry| entry.record.config.as_str())
                .collect::<Vec<_>>(),
            ["{}", r#"{"y":2}"#]
        );
        assert_eq!(a[0].record, record("a", "{}"));
        assert_eq!(store.map_configs("b").expect("history").len(), 1);
        let activity = store
            .activity(&ActivityQuery {
                kind: Some(ActivityKind::PluginVersion),
                ..ActivityQuery::default()
            })
            .expect("activity");
        assert_eq!(activity.len(), 1);
        assert_eq!(activity[0].entry.message, format!("config #{}", a[1].id));
    }
}
