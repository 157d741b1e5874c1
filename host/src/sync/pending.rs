//! Writes whose links a crash kept from being recorded.
//!
//! A batch's writes to a side and the state commit that records their links (and the
//! source's checkpoint) are two transactions in two stores. After a crash between them
//! the change is delivered again, which is harmless while the source row stays as it
//! was. But when the application edits the row again before the engine is back, the
//! target holds values the engine wrote that no link describes: the row looks changed
//! on the target since the last sync (or created there, for a new row), the edit is
//! taken for a conflict, and where the target's side wins, the application's edit is
//! overwritten with the values it replaced.
//!
//! So before a batch writes, `process` saves what each written row's link will be once
//! the write is done ([`PendingLink`]: the fields the write sets and the link), and the
//! commit that records the batch settles them. Pending links left over mean the engine
//! stopped between the two, or lost the target mid-write (the outcome of the write is
//! unknown). They are settled before anything else is written to their side: at start
//! ([`Engine::open`]) and when the side comes back online. A pending link whose row
//! holds the values its write set (or, for a delete, whose row is gone) is recorded as
//! the link, as if that commit had happened; any other is dropped (the write did not
//! happen, or the row changed since, which the committed link then shows as an edit).
//! Several pending links of one row are tried newest first.

use std::collections::HashSet;

use super::Engine;
use super::links::key_id;
use super::process::{Columns, key_image};
use crate::change::Side;
use crate::state::{BatchCommit, LinkChange, LinkDelete, PendingLink};

impl Engine {
    /// Settles the pending links of writes to side `only` (every side: `None`); see the
    /// module doc. A side that cannot be read goes offline, its pending links kept for
    /// when it is back. Pending links of maps that do not run are kept.
    pub(super) fn settle_pending(&mut self, only: Option<usize>) -> anyhow::Result<()> {
        let pending = self.store.pending_links()?;
        if pending.is_empty() {
            return Ok(());
        }
        let mut commit = BatchCommit::default();
        let mut adopted: Vec<LinkChange> = Vec::new();
        let mut decided: HashSet<(String, Side, String)> = HashSet::new();
        let mut unreachable: HashSet<usize> = HashSet::new();
        for (id, pending) in pending.into_iter().rev() {
            let PendingLink {
                target,
                written,
                mut link,
            } = pending;
            let Some(map) = self.maps.iter().find(|map| map.plan.name == link.map) else {
                continue;
            };
            let endpoint = map.plan.endpoint(target);
            let side = self.side_index(&endpoint.side);
            if only.is_some_and(|only| only != side) || unreachable.contains(&side) {
                continue;
            }
            let target_key = link.key(target).clone();
            if decided.contains(&(link.map.clone(), target, key_id(&target_key))) {
                commit.settled.push(id);
                continue;
            }
            let read = self.sides[side]
                .writer
                .current_schema(&endpoint.entity)
                .and_then(|schema| {
                    let row = self.sides[side]
                        .writer
                        .read_row(&endpoint.entity, &key_image(&endpoint.key, &target_key))?;
                    Ok((Columns::of(&schema), row))
                });
            let (columns, row) = match read {
                Ok(read) => read,
                Err(error) if error.is_unavailable() => {
                    unreachable.insert(side);
                    self.mark_offline(side, error.to_string())?;
                    continue;
                }
                Err(error) => {
                    return Err(anyhow::Error::new(error)
                        .context(format!("side {}: settling pending links", endpoint.side)));
                }
            };
            let happened = match (&written, &row) {
                (Some(written), Some(row)) => !columns.changed_since(written, row),
                (None, None) => true,
                _ => false,
            };
            if happened {
                decided.insert((link.map.clone(), target, key_id(&target_key)));
                // The link records what the row holds for the written fields (the same
                // values, unless the store keeps them in another form).
                if let (Some(written), Some(row)) = (&written, &row) {
                    let image = match target {
                        Side::Erp => &mut link.erp_image,
                        Side::Crm => &mut link.crm_image,
                    };
                    for name in written.keys() {
                        if let Some(value) = row.get(name) {
                            image.insert(name.clone(), value.clone());
                        }
                    }
                }
                adopted.push(match written {
                    Some(_) => LinkChange::Upsert(link),
                    None => LinkChange::Delete(LinkDelete {
                        map: link.map,
                        side: target,
                        key: target_key,
                    }),
                });
            }
            commit.settled.push(id);
        }
        let found = adopted.len();
        let dropped = commit.settled.len() - found;
        // Oldest first, as they were decided.
        adopted.reverse();
        commit.links = adopted;
        self.commit(&commit)?;
        if found + dropped > 0 {
            tracing::info!(
                found,
                dropped,
                "writes made before a crash settled: those found done are linked now"
            );
        }
        Ok(())
    }
}
