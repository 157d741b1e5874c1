//! Initial sync: enabling a map on two sides that already hold data is a merge.
//!
//! Rows are read in key order, in chunks, first from the map's master side (the
//! `initial_sync.master` of the config; else the winner of a side-wins policy; else the
//! ERP), then from the other side. Every master row goes through the plugin like an
//! insert: where the other side holds the same key, only the fields that differ are
//! written (the master wins); where it does not, the row is created. Then every row of
//! the other side that is not linked yet (it had no partner on the master side) is
//! written to the master side, unless the master side holds a row under that key: the
//! master pass left it unlinked because the plugin filtered or refused it, or it was
//! created there since (its live change decides, by the map's conflict policy), and
//! either way it is the master's and is never written over. Progress (the last key done
//! per side, rows done and total) is committed with each chunk, so a crash resumes after
//! the last chunk.
//!
//! Live changes of the map keep flowing while it initializes (between chunks, like the
//! other maps'; the ones that had to wait in its queue, a side being offline, drain as
//! for a running map): sync is state-based, so a row the merge reaches later is compared
//! with the link the live change left, and a row the merge read before its change gets
//! the newer values from that change. Nothing is lost or regressed.
//!
//! A side that is unavailable during a chunk (a server down, a SQLite file locked past
//! the busy timeout) goes offline with backoff as in live sync; nothing of the chunk is
//! kept, and the merge waits ([`InitialSyncStatus::waiting`]) and goes on from the last
//! committed chunk once the live loop has the side back.

use std::time::Duration;

use anyhow::{Context, bail};

use super::{Engine, process};
use crate::capture::{Position, RowImage, SideError};
use crate::change::{ChangeOp, Side};
use crate::config::ConflictPolicy;
use crate::state::{BatchCommit, InitialSyncStep, MapMode, MapState, MapTransition, StoredChange};

/// Where a map's initial sync is after a chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct InitialSyncStatus {
    /// The map.
    pub map: String,
    /// The side being read now (the master side first).
    pub side: Side,
    /// Rows read so far, both sides.
    pub rows_done: u64,
    /// Rows on both sides when each side's reading began.
    pub rows_total: u64,
    /// Rows written by the merge so far (this run).
    pub written: u64,
    /// Whether the map is done and live.
    pub complete: bool,
    /// Why nothing was merged this time, when a side of the map is offline: the sync
    /// waits (the live loop retries the side with backoff) and goes on where it was.
    pub waiting: Option<String>,
}

impl Engine {
    /// Runs the initial sync of `map` to the end, one chunk of `chunk` rows at a time,
    /// stepping live sync of the other maps between chunks and reporting progress after
    /// each. Continues where a crashed run stopped.
    pub fn initial_sync(
        &mut self,
        map: &str,
        chunk: usize,
        by: &str,
        progress: &mut dyn FnMut(&InitialSyncStatus),
    ) -> anyhow::Result<InitialSyncStatus> {
        self.begin_initial_sync(map, by)?;
        loop {
            let status = self.initial_sync_chunk(map, chunk)?;
            progress(&status);
            if status.complete {
                return Ok(status);
            }
            self.step()?;
            if status.waiting.is_some() {
                // A side is offline: give it the time its retry takes, not a busy loop.
                self.wait_for_changes();
                std::thread::sleep(self.options.idle_wait.max(Duration::from_millis(50)));
            }
        }
    }

    /// Puts `map` in the initializing mode (its live changes queue from now on). A map
    /// already initializing (a crashed run) keeps its progress.
    pub fn begin_initial_sync(&mut self, map: &str, by: &str) -> anyhow::Result<()> {
        let index = self.map_index(map)?;
        if self.maps[index].mode == MapMode::Initializing {
            return Ok(());
        }
        let current = self.store.map_status(map)?.state;
        self.store.commit(&BatchCommit {
            initial_sync_resets: vec![map.to_owned()],
            transitions: vec![MapTransition {
                map: map.to_owned(),
                to: MapState {
                    mode: MapMode::Initializing,
                    ..current
                },
                cause: format!("{by}: initial sync"),
            }],
            ..BatchCommit::default()
        })?;
        self.maps[index].mode = MapMode::Initializing;
        Ok(())
    }

    /// Merges the next chunk of `map`'s initial sync; see the module doc.
    pub fn initial_sync_chunk(
        &mut self,
        map: &str,
        chunk: usize,
    ) -> anyhow::Result<InitialSyncStatus> {
        let index = self.map_index(map)?;
        if self.maps[index].mode != MapMode::Initializing {
            bail!("map {map} is not initializing; begin its initial sync first");
        }
        let master = master_side(&self.maps[index].plan);
        let progress = self.store.initial_sync(map)?;
        let side_progress = |side: Side| {
            progress.as_ref().and_then(|progress| match side {
                Side::Erp => progress.erp.clone(),
                Side::Crm => progress.crm.clone(),
            })
        };
        let order = [master, master.other()];
        let Some(&side) = order
            .iter()
            .find(|side| !side_progress(**side).is_some_and(|p| p.complete))
        else {
            return self.finish_initial_sync(index);
        };
        let done_before: u64 = order
            .iter()
            .filter_map(|side| side_progress(*side).map(|p| p.rows_done))
            .sum();
        let plan = self.maps[index].plan.clone();
        let endpoint = plan.endpoint(side).clone();
        let source = self.side_index(&endpoint.side);
        let target = self.side_index(&plan.endpoint(side.other()).side);
        let waiting = |reason: String| InitialSyncStatus {
            map: map.to_owned(),
            side,
            rows_done: done_before,
            rows_total: 0,
            written: 0,
            complete: false,
            waiting: Some(reason),
        };
        // A side the map needs is offline: wait until the live loop has it back.
        for at in [source, target] {
            if let Some(offline) = &self.sides[at].offline {
                return Ok(waiting(format!(
                    "side {} is offline: {}",
                    self.sides[at].name, offline.reason
                )));
            }
        }
        let previous = side_progress(side);
        let after: Option<RowImage> = previous
            .as_ref()
            .and_then(|p| p.last_key.clone())
            .map(|key| endpoint.key.iter().cloned().zip(key).collect());
        let read = (|| {
            let total = match previous.as_ref().and_then(|p| p.rows_total) {
                Some(total) => total,
                None => self.sides[source].writer.count_rows(&endpoint.entity)?,
            };
            let rows = self.sides[source].writer.scan(
                &endpoint.entity,
                &endpoint.key,
                after.as_ref(),
                chunk,
            )?;
            Ok::<_, SideError>((total, rows))
        })();
        let (total, rows) = match read {
            Ok(read) => read,
            Err(error) if error.is_unavailable() => {
                let reason = error.to_string();
                self.mark_offline(source, reason.clone())?;
                return Ok(waiting(reason));
            }
            Err(error) => {
                return Err(anyhow::Error::new(error)
                    .context(format!("map {map}: reading {}", endpoint.entity)));
            }
        };
        let last_key = rows.last().map(|row| {
            endpoint
                .key
                .iter()
                .map(|column| {
                    row.get(column)
                        .cloned()
                        .unwrap_or(crate::change::Value::Null)
                })
                .collect::<Vec<_>>()
        });
        let mut changes = Vec::with_capacity(rows.len());
        for row in &rows {
            let key: Vec<_> = endpoint
                .key
                .iter()
                .map(|column| {
                    row.get(column)
                        .cloned()
                        .unwrap_or(crate::change::Value::Null)
                })
                .collect();
            // The other side's rows that the master pass linked are merged already.
            if side != master && self.store.link(map, side, &key)?.is_some() {
                continue;
            }
            changes.push(StoredChange {
                map: map.to_owned(),
                side,
                entity: endpoint.entity.clone(),
                op: ChangeOp::Insert,
                position: Position::START,
                key,
                before: None,
                after: Some(row.clone()),
                changed: Vec::new(),
                committed_at: None,
            });
        }
        let mut commit = BatchCommit::default();
        let written = if changes.is_empty() {
            Ok(0)
        } else {
            let store = self.store.clone();
            let (source_writer, target_writer) =
                super::writer_pair(&mut self.sides, source, target);
            process::process(
                &mut self.maps[index],
                side,
                if side == master {
                    process::BatchOrigin::InitialMaster
                } else {
                    process::BatchOrigin::InitialOther
                },
                &changes,
                store.as_ref(),
                &mut self.links,
                (source_writer, target_writer),
                &mut commit,
            )
        };
        let written = match written {
            Ok(written) => written,
            // Nothing of the chunk was applied (one transaction) or recorded: it is
            // merged again once the side is back.
            Err(error) if error.is_unavailable() => {
                let reason = error.to_string();
                self.mark_offline(target, reason.clone())?;
                return Ok(waiting(reason));
            }
            Err(error) => {
                return Err(anyhow::Error::new(error).context(format!("map {map}: initial sync")));
            }
        };
        let rows_done = previous.as_ref().map_or(0, |p| p.rows_done) + rows.len() as u64;
        commit.initial_sync.push(InitialSyncStep {
            map: map.to_owned(),
            side,
            last_key: last_key.or_else(|| previous.as_ref().and_then(|p| p.last_key.clone())),
            rows_done,
            rows_total: Some(total),
            complete: rows.len() < chunk,
        });
        self.commit(&commit)?;
        let other_total = side_progress(side.other())
            .and_then(|p| p.rows_total)
            .unwrap_or_default();
        Ok(InitialSyncStatus {
            map: map.to_owned(),
            side,
            rows_done: done_before + rows.len() as u64,
            rows_total: total + other_total,
            written: written as u64,
            complete: false,
            waiting: None,
        })
    }

    fn finish_initial_sync(&mut self, index: usize) -> anyhow::Result<InitialSyncStatus> {
        let map = self.maps[index].plan.name.clone();
        let current = self.store.map_status(&map)?.state;
        self.store.transition(MapTransition {
            map: map.clone(),
            to: MapState {
                mode: MapMode::Running,
                ..current
            },
            cause: "initial sync complete".to_owned(),
        })?;
        self.maps[index].mode = MapMode::Running;
        let progress = self.store.initial_sync(&map)?;
        let sum = |pick: &dyn Fn(&crate::state::SideProgress) -> u64| {
            progress.as_ref().map_or(0, |progress| {
                [&progress.erp, &progress.crm]
                    .into_iter()
                    .flatten()
                    .map(pick)
                    .sum()
            })
        };
        // Live changes queued meanwhile are applied by the next steps, in order.
        tracing::info!(map = %map, queued = self.maps[index].queued, "initial sync complete");
        Ok(InitialSyncStatus {
            map,
            side: Side::Crm,
            rows_done: sum(&|p| p.rows_done),
            rows_total: sum(&|p| p.rows_total.unwrap_or(p.rows_done)),
            written: 0,
            complete: true,
            waiting: None,
        })
    }

    fn map_index(&self, map: &str) -> anyhow::Result<usize> {
        self.maps
            .iter()
            .position(|run| run.plan.name == map)
            .with_context(|| format!("no map named {map}"))
    }
}

/// The side whose rows win where both hold a row that differs.
fn master_side(plan: &crate::config::MapPlan) -> Side {
    if let Some(master) = plan.initial_sync.master {
        return master;
    }
    match plan.conflict {
        ConflictPolicy::SideWins { winner } => winner,
        _ => Side::Erp,
    }
}
