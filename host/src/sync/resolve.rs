//! An admin resolving a parked conflict: pick the side whose row wins, or give merged
//! values (written to that side first).
//!
//! The chosen side's row as it is now is synced to the other side through the normal
//! path (plugin, apply, link, activity). So that the conflict check does not stop it
//! again, the link is first moved forward: the other side's synced image becomes its
//! row as it is now (the admin has seen it and decided), and the chosen side's synced
//! image is emptied (so its row counts as changed). The error is then
//! resolved with who and why; if the sync fails, the error stays open with the new
//! failure and the link change is kept (it records what the admin decided).

use anyhow::{Context, bail};

use super::{Engine, process};
use crate::apply::RowWrite;
use crate::capture::RowImage;
use crate::change::{ChangeOp, ErrorClass, Side};
use crate::state::{
    BatchCommit, ErrorResolution, Image, LinkChange, LinkUpsert, ResolutionKind, StoredChange,
};

impl Engine {
    /// Resolves open conflict `id` in favour of `side`; with `merged`, those values
    /// (columns of `side`'s entity) are written to `side`'s row first. Returns whether
    /// the row was synced (if not, the error stays open with the reason).
    pub fn resolve_conflict(
        &mut self,
        id: u64,
        side: Side,
        merged: Option<&RowImage>,
        by: &str,
    ) -> anyhow::Result<bool> {
        let Some(entry) = self.store.error(id)? else {
            bail!("no error with id {id}");
        };
        if entry.resolution.is_some() {
            bail!("error {id} is already resolved");
        }
        if entry.error.class != ErrorClass::Conflict {
            bail!(
                "error {id} is not a conflict ({}); retry or skip it",
                entry.error.class
            );
        }
        let map_name = entry.change.map.clone();
        let index = self
            .maps
            .iter()
            .position(|map| map.plan.name == map_name)
            .with_context(|| format!("map {map_name} is not running"))?;
        let plan = self.maps[index].plan.clone();
        let Some(link) = self
            .store
            .link(&map_name, entry.change.side, &entry.change.key)?
        else {
            bail!("error {id}: the row has no link (it was never synced); retry it instead");
        };
        let other = side.other();
        let chosen = self.side_index(&plan.endpoint(side).side);
        let target = self.side_index(&plan.endpoint(other).side);
        if self.sides[chosen].offline.is_some() || self.sides[target].offline.is_some() {
            bail!("a side of map {map_name} is offline; resolve when it is back");
        }
        let key_image = |role: Side| -> RowImage {
            plan.endpoint(role)
                .key
                .iter()
                .cloned()
                .zip(link.key(role).iter().cloned())
                .collect()
        };
        if let Some(merged) = merged {
            let mut fields = merged.clone();
            fields.extend(key_image(side));
            self.sides[chosen]
                .writer
                .apply(&[RowWrite::upsert(
                    &plan.endpoint(side).entity,
                    key_image(side),
                    fields,
                )])
                .with_context(|| format!("writing the merged values to the {side} side"))?;
        }
        let read = |engine: &mut Engine, role: Side, at: usize| {
            engine.sides[at]
                .writer
                .read_row(&plan.endpoint(role).entity, &key_image(role))
        };
        let Some(chosen_row) = read(self, side, chosen)? else {
            bail!("error {id}: the row is gone from the {side} side; skip the error instead");
        };
        let other_row = read(self, other, target)?.unwrap_or_default();
        let descriptor = self.maps[index].runner.descriptor().clone();
        let declared = |role: Side, row: &RowImage| -> Image {
            descriptor
                .entity(role)
                .fields
                .iter()
                .filter_map(|field| {
                    row.get(&field.name)
                        .map(|value| (field.name.clone(), value.clone()))
                })
                .collect()
        };
        // The chosen side's synced image is left empty, so its row counts as changed
        // (even if only the other side had changed) and an image with no fields never
        // makes a later change of the other side look like a conflict.
        let chosen_base = Image::new();
        let (erp_image, crm_image) = match side {
            Side::Erp => (chosen_base, declared(other, &other_row)),
            Side::Crm => (declared(other, &other_row), chosen_base),
        };
        let mut commit = BatchCommit::default();
        commit.links.push(LinkChange::Upsert(LinkUpsert {
            map: map_name.clone(),
            erp_key: link.erp_key.clone(),
            crm_key: link.crm_key.clone(),
            erp_image,
            crm_image,
            plugin_version: link.plugin_version.clone(),
        }));
        self.commit(&commit)?;

        let change = StoredChange {
            map: map_name.clone(),
            side,
            entity: plan.endpoint(side).entity.clone(),
            op: ChangeOp::Update,
            position: entry.change.position,
            key: link.key(side).clone(),
            before: None,
            after: Some(chosen_row),
            changed: Vec::new(),
            committed_at: None,
        };
        let mut attempt = BatchCommit::default();
        let store = self.store.clone();
        let (source_writer, target_writer) = super::writer_pair(&mut self.sides, chosen, target);
        process::process(
            &mut self.maps[index],
            side,
            process::BatchOrigin::Live,
            std::slice::from_ref(&change),
            store.as_ref(),
            &mut self.links,
            (source_writer, target_writer),
            &mut attempt,
        )
        .with_context(|| format!("syncing the {side} side's row"))?;
        let mut commit = BatchCommit::default();
        let synced = attempt.errors.is_empty();
        if let Some(failed) = attempt.errors.pop() {
            commit.error_retries.push(crate::state::ErrorRetry {
                id,
                error: failed.error,
                next_retry: None,
            });
        } else {
            commit.error_resolutions.push(ErrorResolution {
                id,
                kind: ResolutionKind::Resolved,
                by: by.to_owned(),
                reason: if merged.is_some() {
                    format!("merged values written to the {side} side and synced")
                } else {
                    format!("the {side} side's row wins")
                },
            });
        }
        commit.links.append(&mut attempt.links);
        commit.settled.append(&mut attempt.settled);
        commit.activity.append(&mut attempt.activity);
        self.commit(&commit)?;
        Ok(synced)
    }
}
