//! One map's batch from one side: plugin call, echo and conflict checks against the
//! links, field-level writes, and what the state commit must record.
//!
//! Input: the map, the role the changes come from, the changes (as stored, so live
//! changes and queued ones take the same path), the state store (links) and the other
//! side's writer. Output: rows written on the other side, and links, errors and activity
//! added to the batch's [`BatchCommit`]. The caller commits that and acknowledges.

use std::collections::HashMap;

use chrono::Utc;

use super::MapRun;
use super::links::{CachedLink, LinkCache, key_id};
use crate::apply::{ApplyBatch, RowWrite};
use crate::capture::{CapturedChange, RowImage, SideError};
use crate::change::{
    Change, ChangeOp, EntitySpec, ErrorClass, Side, SyncError, TrapReason, Value, WriteOp,
};
use crate::config::{ConflictPolicy, Resolution};
use crate::plugin::TransformResult;
use crate::state::{
    ActivityEntry, ActivityKind, BatchCommit, ConflictImages, Image, Key, LinkChange, LinkDelete,
    LinkUpsert, NewError, StateStore, StoredChange,
};

/// Counters of one map since the engine started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MapCounters {
    /// Changes captured on the ERP side for this map.
    pub captured_from_erp: u64,
    /// Changes captured on the CRM side for this map.
    pub captured_from_crm: u64,
    /// Rows written on the CRM side.
    pub written_to_crm: u64,
    /// Rows written on the ERP side.
    pub written_to_erp: u64,
    /// Changes the plugin filtered out.
    pub filtered: u64,
    /// Changes that needed no write: the other side already matched, or the change
    /// repeated what was last synced (an echo).
    pub no_ops: u64,
    /// Conflicts detected.
    pub conflicts: u64,
    /// Changes that went to the error queue.
    pub errors: u64,
}

impl MapCounters {
    pub(crate) fn captured(&mut self, role: Side, count: usize) {
        match role {
            Side::Erp => self.captured_from_erp += count as u64,
            Side::Crm => self.captured_from_crm += count as u64,
        }
    }

    fn written(&mut self, target: Side, count: usize) {
        match target {
            Side::Erp => self.written_to_erp += count as u64,
            Side::Crm => self.written_to_crm += count as u64,
        }
    }
}

/// A captured change as the state store keeps it (and as the map's queue holds it).
pub(crate) fn stored_change(
    map: &str,
    role: Side,
    key_columns: &[String],
    change: &CapturedChange,
) -> StoredChange {
    let key: Key = key_columns
        .iter()
        .map(|column| change.key.get(column).cloned().unwrap_or(Value::Null))
        .collect();
    StoredChange {
        map: map.to_owned(),
        side: role,
        entity: change.entity.clone(),
        op: change.op,
        position: change.position,
        key,
        before: change.before.clone(),
        after: change.after.clone(),
        changed: change
            .changed_columns()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        committed_at: change.committed_at.map(chrono::DateTime::<Utc>::from),
    }
}

/// The key of a stored change in the map's key order for `role`.
fn key_of(image: &Image, columns: &[String]) -> Option<Key> {
    columns
        .iter()
        .map(|column| image.get(column).cloned())
        .collect()
}

/// The source row of a change: the after image, or for a delete the before image (or
/// at least the key).
fn source_image(change: &StoredChange, key_columns: &[String]) -> Image {
    change
        .after
        .clone()
        .or_else(|| change.before.clone())
        .unwrap_or_else(|| {
            key_columns
                .iter()
                .cloned()
                .zip(change.key.iter().cloned())
                .collect()
        })
}

/// The plugin's view of a change: one value per declared field, changed ids.
fn plugin_change(change: &StoredChange, image: &Image, spec: &EntitySpec) -> Change {
    let row = spec
        .fields
        .iter()
        .map(|field| image.get(&field.name).cloned().unwrap_or(Value::Null))
        .collect();
    let mut changed: Vec<u32> = change
        .changed
        .iter()
        .filter_map(|name| spec.id_of(name))
        .collect();
    changed.sort_unstable();
    Change {
        source: change.side,
        op: change.op,
        row,
        changed,
    }
}

/// The declared fields of `spec` in `image`.
fn declared_image(image: &Image, spec: &EntitySpec) -> Image {
    spec.fields
        .iter()
        .filter_map(|field| {
            image
                .get(&field.name)
                .map(|value| (field.name.clone(), value.clone()))
        })
        .collect()
}

/// What the batch knows about a link before the state commit: the store's view updated
/// by the earlier changes of the same batch.
#[derive(Clone)]
struct LinkView {
    source_key: Key,
    target_key: Key,
    source_image: Image,
    target_image: Image,
}

/// One write waiting to be applied, and the change it comes from.
struct PendingWrite {
    change: usize,
    write: RowWrite,
}

/// Processes one batch; see the module doc. Errors are only those of the target side
/// (unavailable) or the state store; everything about single changes goes to `commit`.
pub(crate) fn process(
    map: &mut MapRun,
    role: Side,
    changes: &[StoredChange],
    store: &dyn StateStore,
    link_cache: &mut LinkCache,
    (source, writer): (&mut dyn ApplyBatch, &mut dyn ApplyBatch),
    commit: &mut BatchCommit,
) -> Result<usize, SideError> {
    let target_role = role.other();
    let descriptor = map.runner.descriptor().clone();
    let source_spec = descriptor.entity(role).clone();
    let target_spec = descriptor.entity(target_role).clone();
    let source_key_columns = map.plan.endpoint(role).key.clone();
    let target_endpoint = map.plan.endpoint(target_role).clone();
    let plugin_version = map.runner.plugin().hash().short();
    let map_name = map.plan.name.clone();

    // Links as committed (the cache, else the store), by source key.
    let mut link_of = |key: &Key| -> Result<Option<LinkView>, SideError> {
        let cached = match link_cache.get(&map_name, role, key) {
            Some(cached) => cached,
            None => {
                let stored = store
                    .link(&map_name, role, key)
                    .map_err(|error| unavailable(format!("reading links: {error}")))?;
                let link = stored.map(|link| CachedLink {
                    erp_key: link.erp_key,
                    crm_key: link.crm_key,
                    erp_image: link.erp_image,
                    crm_image: link.crm_image,
                });
                link_cache.remember(&map_name, role, key, link.clone());
                link
            }
        };
        Ok(cached.map(|link| LinkView {
            source_key: link.key(role).clone(),
            target_key: link.key(target_role).clone(),
            source_image: link.image(role).clone(),
            target_image: link.image(target_role).clone(),
        }))
    };

    // Echo check and the plugin's input.
    let mut to_transform = Vec::new();
    let mut inputs = Vec::new();
    let mut images = Vec::new();
    let source_entity = map.plan.endpoint(role).entity.clone();
    // Whether a later change of the same key follows in this batch: then this one's
    // image is not the row's latest, and the source row is compared only at the last.
    let last_of_key: HashMap<String, usize> = changes
        .iter()
        .enumerate()
        .map(|(index, change)| (key_id(&change.key), index))
        .collect();
    let mut earlier_in_batch: HashMap<String, Option<Image>> = HashMap::new();
    let mut now_of_key: HashMap<String, Option<Image>> = HashMap::new();
    let mut superseded_keys: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut gone_keys: std::collections::HashSet<String> = std::collections::HashSet::new();
    for (index, change) in changes.iter().enumerate() {
        let image = source_image(change, &source_key_columns);
        let declared = declared_image(&image, &source_spec);
        let link = link_of(&change.key)?;
        let id = key_id(&change.key);
        // What the other side holds (or will, once this batch is applied) for this key:
        // an earlier change of the batch, else the last synced image.
        let baseline = match earlier_in_batch.get(&id) {
            Some(earlier) => earlier.clone(),
            None => link.as_ref().map(|link| link.source_image.clone()),
        };
        if change.op != ChangeOp::Delete && baseline.as_ref() == Some(&declared) {
            // The row holds exactly what was last synced: our own write come back by
            // another path, or a write that changed no mapped field.
            map.counters.no_ops += 1;
            continue;
        }
        earlier_in_batch.insert(
            id.clone(),
            (change.op != ChangeOp::Delete).then(|| declared.clone()),
        );
        // A change captured before the engine itself wrote this row on the source side
        // (the other side won a conflict, a catch-up applied newer values, a delete was
        // undone) is stale and must not travel back. Only the row as it is now can
        // tell, read once per key of the batch.
        let first = !now_of_key.contains_key(&id);
        if first {
            let key_image: RowImage = source_key_columns
                .iter()
                .cloned()
                .zip(change.key.iter().cloned())
                .collect();
            let now = source
                .read_row(&source_entity, &key_image)?
                .map(|row| declared_image(&row, &source_spec));
            // The row holds what the engine last synced to it: every change of this key
            // in the batch came before that write.
            if matches!((&now, &link), (Some(now), Some(link)) if *now == link.source_image) {
                superseded_keys.insert(id.clone());
            }
            // Gone now and not linked: its inserts and updates are stale. Its delete
            // still goes (by key): the other side may hold the row from a write whose
            // link a crash kept from being recorded.
            if now.is_none() && link.is_none() {
                gone_keys.insert(id.clone());
            }
            now_of_key.insert(id.clone(), now);
        }
        if superseded_keys.contains(&id)
            || (gone_keys.contains(&id) && change.op != ChangeOp::Delete)
        {
            map.counters.no_ops += 1;
            continue;
        }
        if last_of_key.get(&id) == Some(&index) {
            let now = now_of_key.get(&id).cloned().flatten();
            let superseded = match (change.op, &now) {
                // Deleted, but the row is back: the insert that restored it follows.
                (ChangeOp::Delete, Some(_)) => true,
                (ChangeOp::Delete, None) => false,
                // Written, but the row is gone: its delete follows (or was ours).
                (_, None) => true,
                // The row holds what the engine last synced (or this batch syncs) to it.
                (_, Some(now)) => baseline.as_ref() == Some(now),
            };
            if superseded {
                map.counters.no_ops += 1;
                continue;
            }
        }
        inputs.push(plugin_change(change, &image, &source_spec));
        to_transform.push(index);
        images.push(declared);
    }
    let results = map.runner.transform(&inputs);

    let mut pending: Vec<PendingWrite> = Vec::new();
    let mut overlay: HashMap<String, (Key, Option<LinkView>)> = HashMap::new();
    for ((&index, result), source_image) in to_transform.iter().zip(results).zip(images) {
        let change = &changes[index];
        let writes = match result {
            TransformResult::Filtered => {
                map.counters.filtered += 1;
                continue;
            }
            TransformResult::Failed(error) => {
                fail(map, commit, change, error, &plugin_version);
                continue;
            }
            TransformResult::Writes(writes) => writes,
        };
        if writes.is_empty() {
            map.counters.no_ops += 1;
            continue;
        }
        let change_key_id = key_id(&change.key);
        let mut link = match overlay.get(&change_key_id) {
            Some((_, view)) => view.clone(),
            None => link_of(&change.key)?,
        };
        let mut failed = false;
        for write in writes {
            let fields: RowImage = write
                .fields
                .iter()
                .filter_map(|field| {
                    target_spec
                        .fields
                        .get(field.field as usize)
                        .map(|spec| (spec.name.clone(), field.value.clone()))
                })
                .collect();
            let Some(target_key) = key_of(&fields, &target_endpoint.key) else {
                fail(
                    map,
                    commit,
                    change,
                    SyncError::trapped(
                        TrapReason::InvalidOutput,
                        format!(
                            "a write to {} lacks a key column ({})",
                            target_endpoint.entity,
                            target_endpoint.key.join(", ")
                        ),
                    ),
                    &plugin_version,
                );
                failed = true;
                break;
            };
            let key_image: RowImage = target_endpoint
                .key
                .iter()
                .cloned()
                .zip(target_key.iter().cloned())
                .collect();
            if write.op == WriteOp::Delete {
                pending.push(PendingWrite {
                    change: index,
                    write: RowWrite::delete(&target_endpoint.entity, key_image),
                });
                link = None;
                continue;
            }
            // What the target holds now: this batch's pending image if it wrote the row,
            // else the row itself.
            let current = match (&link, overlay.contains_key(&change_key_id)) {
                (Some(view), true) => Some(view.target_image.clone()),
                // This batch deletes the row before this write.
                (None, true) => None,
                _ => writer.read_row(&target_endpoint.entity, &key_image)?,
            };
            // The target already holds what this write sets (a redelivery after a
            // crash, or both sides made the same edit): nothing to write and no
            // conflict; the link records the agreement.
            if let Some(current) = &current
                && fields
                    .iter()
                    .all(|(name, value)| current.get(name) == Some(value))
            {
                map.counters.no_ops += 1;
                let mut target_image = link
                    .as_ref()
                    .map(|view| view.target_image.clone())
                    .unwrap_or_else(|| declared_image(current, &target_spec));
                target_image.extend(fields.clone());
                link = Some(LinkView {
                    source_key: change.key.clone(),
                    target_key,
                    source_image: source_image.clone(),
                    target_image,
                });
                continue;
            }
            let mut fields = fields;
            // Synced before, gone from the target now: the target deleted it meanwhile.
            // A delete against an update is a conflict; if this side wins, the whole
            // row is written again (the link's last synced image with this write).
            if let (Some(view), None) = (&link, &current) {
                map.counters.conflicts += 1;
                let empty = RowImage::new();
                let outcome = resolve_conflict(&map.plan.conflict, role, &source_image, &empty);
                commit.activity.push(conflict_activity(
                    &map_name,
                    role,
                    change,
                    &plugin_version,
                    "the row was deleted on the other side and changed on this one",
                ));
                match outcome {
                    ConflictOutcome::Apply | ConflictOutcome::Only(_) => {
                        let mut whole = view.target_image.clone();
                        whole.extend(fields);
                        fields = whole;
                    }
                    ConflictOutcome::Skip => {
                        failed = true;
                        break;
                    }
                    ConflictOutcome::Park => {
                        map.counters.errors += 1;
                        commit.errors.push(NewError {
                            change: change.clone(),
                            error: SyncError::new(
                                ErrorClass::Conflict,
                                "the row was deleted on the other side and changed on this one; pick a side",
                            ),
                            next_retry: None,
                            conflict: Some(ConflictImages {
                                erp_base: Some(view.image_for(Side::Erp, role)),
                                crm_base: Some(view.image_for(Side::Crm, role)),
                                erp: (role == Side::Erp).then(|| source_image.clone()),
                                crm: (role == Side::Crm).then(|| source_image.clone()),
                            }),
                            plugin_version: Some(plugin_version.clone()),
                        });
                        failed = true;
                        break;
                    }
                }
            }
            if let (Some(view), Some(current)) = (&link, &current)
                && changed_since(&view.target_image, current)
            {
                map.counters.conflicts += 1;
                let outcome = resolve_conflict(&map.plan.conflict, role, &source_image, current);
                let note = match &outcome {
                    ConflictOutcome::Apply => {
                        "both sides changed the row; the policy applied this change"
                    }
                    ConflictOutcome::Skip => {
                        "both sides changed the row; the policy kept the other side's version"
                    }
                    ConflictOutcome::Only(_) => {
                        "both sides changed the row; each side's owned fields were kept"
                    }
                    ConflictOutcome::Park => "both sides changed the row; parked for an admin",
                };
                commit.activity.push(conflict_activity(
                    &map_name,
                    role,
                    change,
                    &plugin_version,
                    note,
                ));
                match outcome {
                    ConflictOutcome::Apply => {
                        // The winner's whole row: what it last synced, with this change.
                        // Fields it did not change keep their synced values, so the
                        // other side's concurrent edits do not survive half-way.
                        let mut whole = view.target_image.clone();
                        whole.extend(std::mem::take(&mut fields));
                        fields = whole;
                    }
                    ConflictOutcome::Skip => {
                        failed = true;
                        break;
                    }
                    ConflictOutcome::Only(owned) => {
                        fields.retain(|name, _| {
                            owned.contains(name) || target_endpoint.key.contains(name)
                        });
                    }
                    ConflictOutcome::Park => {
                        let images = ConflictImages {
                            erp_base: Some(view.image_for(Side::Erp, role)),
                            crm_base: Some(view.image_for(Side::Crm, role)),
                            erp: Some(if role == Side::Erp {
                                source_image.clone()
                            } else {
                                current.clone()
                            }),
                            crm: Some(if role == Side::Crm {
                                source_image.clone()
                            } else {
                                current.clone()
                            }),
                        };
                        map.counters.errors += 1;
                        commit.errors.push(NewError {
                            change: change.clone(),
                            error: SyncError::new(
                                ErrorClass::Conflict,
                                "both sides changed the row since the last sync; pick a side or merge",
                            ),
                            next_retry: None,
                            conflict: Some(images),
                            plugin_version: Some(plugin_version.clone()),
                        });
                        failed = true;
                        break;
                    }
                }
            }
            // What the link records as synced to the target: the last synced image and
            // this write; never the target's own unsynced edits (they still have to
            // travel the other way). A first link starts from the row as it is.
            let mut target_image = match &link {
                Some(view) => view.target_image.clone(),
                None => current
                    .as_ref()
                    .map(|row| declared_image(row, &target_spec))
                    .unwrap_or_default(),
            };
            target_image.extend(fields.clone());
            let view = LinkView {
                source_key: change.key.clone(),
                target_key: target_key.clone(),
                source_image: source_image.clone(),
                target_image,
            };
            pending.push(PendingWrite {
                change: index,
                write: RowWrite::upsert(&target_endpoint.entity, key_image, fields),
            });
            link = Some(view);
        }
        if !failed {
            overlay.insert(change_key_id, (change.key.clone(), link));
        }
    }

    // Apply; a write the target refuses fails its change, and the rest is tried again.
    let mut rejected_changes: Vec<usize> = Vec::new();
    loop {
        let writes: Vec<RowWrite> = pending.iter().map(|p| p.write.clone()).collect();
        if writes.is_empty() {
            break;
        }
        match writer.apply(&writes) {
            Ok(_) => break,
            Err(SideError::Rejected {
                index: Some(bad),
                message,
                dependency,
                ..
            }) => {
                let change = pending[bad].change;
                let class = if dependency {
                    ErrorClass::DependencyMissing
                } else {
                    ErrorClass::TargetRejected
                };
                fail(
                    map,
                    commit,
                    &changes[change],
                    SyncError::new(class, message),
                    &plugin_version,
                );
                rejected_changes.push(change);
                pending.retain(|p| p.change != change);
            }
            Err(SideError::Rejected {
                index: None,
                message,
                ..
            }) => {
                // Refused only at commit: fail the whole batch's changes, kept for retry.
                for p in &pending {
                    fail(
                        map,
                        commit,
                        &changes[p.change],
                        SyncError::new(ErrorClass::TargetRejected, message.clone()),
                        &plugin_version,
                    );
                }
                pending.clear();
                break;
            }
            Err(other) => return Err(other),
        }
    }
    let written = pending.len();
    map.counters.written(target_role, written);

    // Links: the last view of each key this batch touched, unless its change failed.
    for (key, view) in overlay.into_values() {
        let failed = !rejected_changes.is_empty()
            && rejected_changes
                .iter()
                .any(|&index| changes[index].key == key);
        if failed {
            continue;
        }
        match view {
            Some(view) => commit.links.push(LinkChange::Upsert(match role {
                Side::Erp => LinkUpsert {
                    map: map_name.clone(),
                    erp_key: view.source_key,
                    crm_key: view.target_key,
                    erp_image: view.source_image,
                    crm_image: view.target_image,
                    plugin_version: plugin_version.clone(),
                },
                Side::Crm => LinkUpsert {
                    map: map_name.clone(),
                    erp_key: view.target_key,
                    crm_key: view.source_key,
                    erp_image: view.target_image,
                    crm_image: view.source_image,
                    plugin_version: plugin_version.clone(),
                },
            })),
            None => commit.links.push(LinkChange::Delete(LinkDelete {
                map: map_name.clone(),
                side: role,
                key,
            })),
        }
    }
    Ok(written)
}

impl LinkView {
    /// The base image of `side`, given that the source of this view is `source_role`.
    fn image_for(&self, side: Side, source_role: Side) -> Image {
        if side == source_role {
            self.source_image.clone()
        } else {
            self.target_image.clone()
        }
    }
}

/// Whether the target row differs from the image last synced to it, on the fields that
/// image holds.
fn changed_since(base: &Image, current: &RowImage) -> bool {
    base.iter()
        .any(|(name, value)| current.get(name).is_some_and(|now| now != value))
}

enum ConflictOutcome {
    /// The incoming change wins.
    Apply,
    /// The other side's version stays; the change is not applied.
    Skip,
    /// Only these target fields are written (field ownership).
    Only(Vec<String>),
    /// Park it for an admin.
    Park,
}

fn resolve_conflict(
    policy: &ConflictPolicy,
    source: Side,
    source_row: &Image,
    target_row: &RowImage,
) -> ConflictOutcome {
    let by_resolution = |resolution: &Resolution| match resolution {
        Resolution::Wins(side) if *side == source => ConflictOutcome::Apply,
        Resolution::Wins(_) => ConflictOutcome::Skip,
        Resolution::Manual => ConflictOutcome::Park,
    };
    match policy {
        ConflictPolicy::SideWins { winner } if *winner == source => ConflictOutcome::Apply,
        ConflictPolicy::SideWins { .. } => ConflictOutcome::Skip,
        ConflictPolicy::Manual => ConflictOutcome::Park,
        ConflictPolicy::FieldOwnership {
            erp_fields,
            crm_fields,
            others,
        } => {
            // The target fields the source side owns: its own list names source columns,
            // the other list names target columns the target owns.
            let target_owned = match source {
                Side::Erp => crm_fields,
                Side::Crm => erp_fields,
            };
            match by_resolution(others) {
                ConflictOutcome::Apply => {
                    let owned: Vec<String> = target_row
                        .keys()
                        .filter(|name| !target_owned.contains(name))
                        .cloned()
                        .collect();
                    ConflictOutcome::Only(owned)
                }
                _ => ConflictOutcome::Only(Vec::new()),
            }
        }
        ConflictPolicy::NewerWins {
            erp_column,
            crm_column,
            tie,
        } => {
            let (source_column, target_column) = match source {
                Side::Erp => (erp_column, crm_column),
                Side::Crm => (crm_column, erp_column),
            };
            match compare_versions(source_row.get(source_column), target_row.get(target_column)) {
                Some(std::cmp::Ordering::Greater) => ConflictOutcome::Apply,
                Some(std::cmp::Ordering::Less) => ConflictOutcome::Skip,
                Some(std::cmp::Ordering::Equal) => by_resolution(tie),
                None => ConflictOutcome::Park,
            }
        }
    }
}

/// Orders two version or timestamp values of the same kind; `None` when they cannot be
/// compared (missing, null, different kinds).
fn compare_versions(a: Option<&Value>, b: Option<&Value>) -> Option<std::cmp::Ordering> {
    match (a?, b?) {
        (Value::Integer(a), Value::Integer(b)) => Some(a.cmp(b)),
        (Value::Timestamp(a), Value::Timestamp(b)) => {
            Some((a.seconds, a.nanos).cmp(&(b.seconds, b.nanos)))
        }
        (Value::Date(a), Value::Date(b)) => Some(a.cmp(b)),
        (Value::Text(a), Value::Text(b)) => Some(a.cmp(b)),
        (Value::Float(a), Value::Float(b)) => a.partial_cmp(b),
        _ => None,
    }
}

fn conflict_activity(
    map: &str,
    role: Side,
    change: &StoredChange,
    plugin_version: &str,
    message: &str,
) -> ActivityEntry {
    let mut entry = ActivityEntry::new(Some(map), ActivityKind::Conflict, message);
    entry.source = Some(role);
    match role {
        Side::Erp => entry.erp_key = Some(change.key.clone()),
        Side::Crm => entry.crm_key = Some(change.key.clone()),
    }
    entry.position = Some(change.position);
    entry.plugin_version = Some(plugin_version.to_owned());
    entry
}

fn fail(
    map: &mut MapRun,
    commit: &mut BatchCommit,
    change: &StoredChange,
    error: SyncError,
    plugin_version: &str,
) {
    map.counters.errors += 1;
    let delay = chrono::Duration::from_std(map.first_retry).unwrap_or(chrono::Duration::seconds(5));
    let next_retry = error.retryable.then(|| Utc::now() + delay);
    commit.errors.push(NewError {
        change: change.clone(),
        error,
        next_retry,
        conflict: None,
        plugin_version: Some(plugin_version.to_owned()),
    });
}

fn unavailable(message: String) -> SideError {
    SideError::Unavailable { message }
}
