//! One map's batch from one side: plugin call, echo and conflict checks against the
//! links, field-level writes, and what the state commit must record.
//!
//! Input: the map, the role the changes come from, the changes (as stored, so live
//! changes and queued ones take the same path), the state store (links) and the other
//! side's writer. Output: rows written on the other side, and links, errors and activity
//! added to the batch's [`BatchCommit`]. The caller commits that and acknowledges.
//!
//! The sync is state-based per key: the batch's changes say which keys to look at, and
//! for each key the row *as it is now* on the source side is compared with the link's
//! last synced image (DESIGN.md section 4). Equal: nothing to do (an echo of the engine's
//! own write, or edits that were undone). Different: the plugin transforms the current
//! row (an insert when the key was never synced, else an update whose changed fields
//! are those that differ from the synced image). Gone: a delete. Before each write the
//! target row is compared with the link's image of it: changed there too is a conflict,
//! decided by the map's policy, as is a row both sides created under the same key. So a
//! change captured before a later one, or before the engine itself wrote the row, never
//! sends an old value, and a batch holding many changes of one key costs one plugin call
//! and at most one write for it.
//!
//! What a side stores is the truth, not what the engine wrote: the link records the
//! target's values as the connector read them back in the write's transaction, and every
//! comparison of a row with a link image or a write goes by the column's [`Fidelity`]
//! (a column that keeps 12.50 as 12.5 holds the same value). A field the target already
//! holds by meaning is not written, so a normalized value never flows back.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;

use super::MapRun;
use super::links::{CachedLink, LinkCache, key_id};
use crate::apply::{ApplyBatch, Expectation, RowWrite};
use crate::capture::{CapturedChange, RowImage, SideError, TableSchema};
use crate::change::{
    Change, ChangeOp, EntitySpec, ErrorClass, Fidelity, Side, SyncError, TrapReason, Value, Write,
    WriteOp,
};
use crate::config::{ConflictPolicy, Resolution};
use crate::plugin::TransformResult;
use crate::state::{
    ActivityEntry, ActivityKind, BatchCommit, ConflictImages, Image, Key, LinkChange, LinkDelete,
    LinkUpsert, NewError, PendingLink, StateStore, StoredChange,
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

/// A key's values under their column names.
pub(crate) fn key_image(columns: &[String], key: &[Value]) -> RowImage {
    columns.iter().cloned().zip(key.iter().cloned()).collect()
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

/// The declared fields of `spec` taken out of a row read from a side.
fn into_declared_image(mut row: RowImage, spec: &EntitySpec) -> Image {
    row.retain(|name, _| spec.id_of(name).is_some());
    row
}

/// A plugin write's fields under the target's column names.
fn write_fields(write: &Write, spec: &EntitySpec) -> RowImage {
    write
        .fields
        .iter()
        .filter_map(|field| {
            spec.fields
                .get(field.field as usize)
                .map(|declared| (declared.name.clone(), field.value.clone()))
        })
        .collect()
}

/// The plugin's view of a row: one value per declared field.
fn plugin_row(image: &Image, spec: &EntitySpec) -> Vec<Value> {
    spec.fields
        .iter()
        .map(|field| image.get(&field.name).cloned().unwrap_or(Value::Null))
        .collect()
}

/// How each column of a side keeps values, by name: what the engine's comparisons of a
/// row as the side holds it with a value that travelled go by (see [`Fidelity`]).
pub(super) struct Columns(HashMap<String, Fidelity>);

impl Columns {
    /// The fidelity of every column of `schema`.
    pub(super) fn of(schema: &TableSchema) -> Columns {
        Columns(
            schema
                .columns
                .iter()
                .map(|column| (column.name.clone(), column.fidelity))
                .collect(),
        )
    }

    /// Whether `a` and `b` mean the same in column `name` (a column the table no longer
    /// has compares exactly).
    fn same(&self, name: &str, a: &Value, b: &Value) -> bool {
        self.0.get(name).copied().unwrap_or_default().same(a, b)
    }

    /// Whether `a` and `b` hold the same values in every declared field of `spec` (a
    /// field an image lacks counts as NULL).
    fn same_image(&self, a: &Image, b: &Image, spec: &EntitySpec) -> bool {
        spec.fields.iter().all(|field| {
            self.same(
                &field.name,
                a.get(&field.name).unwrap_or(&Value::Null),
                b.get(&field.name).unwrap_or(&Value::Null),
            )
        })
    }

    /// Whether the row `current` differs from `base` on a field `base` holds: the side
    /// changed the row since the last sync.
    pub(super) fn changed_since(&self, base: &Image, current: &RowImage) -> bool {
        base.iter().any(|(name, value)| {
            current
                .get(name)
                .is_some_and(|now| !self.same(name, now, value))
        })
    }
}

/// The ids of the declared fields whose value in `now` differs from `base`.
fn changed_ids(now: &Image, base: &Image, spec: &EntitySpec, columns: &Columns) -> Vec<u32> {
    spec.fields
        .iter()
        .enumerate()
        .filter(|(_, field)| {
            !columns.same(
                &field.name,
                now.get(&field.name).unwrap_or(&Value::Null),
                base.get(&field.name).unwrap_or(&Value::Null),
            )
        })
        .map(|(id, _)| id as u32)
        .collect()
}

/// What the batch knows about a link: the store's view, updated by this batch's writes.
#[derive(Clone)]
struct LinkView {
    source_key: Key,
    target_key: Key,
    source_image: Image,
    target_image: Image,
}

/// The changes of one key in a batch. Only the row as it is now on the source side
/// travels (state-based sync): the changes say which keys to look at, the row and the
/// link's last synced images say what to do. So a change captured before a later one,
/// or before the engine itself wrote the row, can never send an old value.
struct KeyGroup<'a> {
    key: Key,
    /// The change errors and activity name: the key's last change, or for a key an
    /// update moved away from, a delete of the old key made from that update.
    change: Cow<'a, StoredChange>,
    /// Index of the key's last change in the batch (groups run in this order).
    last: usize,
    /// How many changes of the batch it stands for.
    count: u64,
    /// The row image just before a change of this batch removed the row from this key
    /// (a delete, or an update that changed the key), when one did.
    removed: Option<Option<Image>>,
}

/// Groups the batch's changes by key, in the order of each key's last change.
fn group_by_key<'a>(changes: &'a [StoredChange], key_columns: &[String]) -> Vec<KeyGroup<'a>> {
    let mut groups: Vec<KeyGroup<'a>> = Vec::new();
    let mut index_of: HashMap<String, usize> = HashMap::new();
    let mut add =
        |key: Key, change: Cow<'a, StoredChange>, at: usize, removed: Option<Option<Image>>| {
            match index_of.entry(key_id(&key)) {
                Entry::Occupied(entry) => {
                    let group = &mut groups[*entry.get()];
                    group.change = change;
                    group.last = at;
                    group.count += 1;
                    if removed.is_some() {
                        group.removed = removed;
                    }
                }
                Entry::Vacant(entry) => {
                    entry.insert(groups.len());
                    groups.push(KeyGroup {
                        key,
                        change,
                        last: at,
                        count: 1,
                        removed,
                    });
                }
            }
        };
    for (at, change) in changes.iter().enumerate() {
        // An update that changed the key removes the row from its old key.
        if change.op == ChangeOp::Update
            && let Some(before) = &change.before
            && let Some(old_key) = key_of(before, key_columns)
            && old_key != change.key
        {
            let moved = StoredChange {
                op: ChangeOp::Delete,
                key: old_key.clone(),
                after: None,
                changed: Vec::new(),
                ..change.clone()
            };
            add(old_key, Cow::Owned(moved), at, Some(Some(before.clone())));
        }
        let removed = (change.op == ChangeOp::Delete).then(|| change.before.clone());
        add(change.key.clone(), Cow::Borrowed(change), at, removed);
    }
    groups.sort_by_key(|group| group.last);
    groups
}

/// One write waiting to be applied, the key group it comes from, and the target row it
/// was decided against (checked again inside the write transaction).
struct PendingWrite {
    group: usize,
    write: RowWrite,
    expected: Expectation,
}

/// What a key group's activity entry says, when the map logs every change (failures and
/// conflicts have entries of their own).
struct GroupNote {
    kind: ActivityKind,
    message: String,
    /// The row's key on the other side, where known.
    target_key: Option<Key>,
    detail: Option<serde_json::Value>,
}

impl GroupNote {
    fn new(kind: ActivityKind, message: impl Into<String>) -> GroupNote {
        GroupNote {
            kind,
            message: message.into(),
            target_key: None,
            detail: None,
        }
    }
}

/// What became of a key group's link.
enum LinkOutcome {
    /// The group failed or left the link as it was.
    Unchanged,
    /// The link now holds these images.
    Set(LinkView),
    /// The rows are gone on both sides.
    Removed,
}

/// Why a batch is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchOrigin {
    /// Captured changes, queued ones and retries: conflicts go by the map's policy.
    Live,
    /// The initial sync's pass over the master side's rows: a row both sides hold
    /// unlinked takes the master's values (the merge's rule, not a conflict).
    InitialMaster,
    /// The initial sync's pass over the other side's rows the master pass did not link:
    /// a row the master side holds under the same key is the master's and is left as it
    /// is (the plugin filtered or refused it in the master pass, or it was created there
    /// since and its live change decides); only rows the master side lacks are written.
    InitialOther,
}

impl BatchOrigin {
    /// Whether the batch is one of the initial sync's passes (its rows were scanned just
    /// before, so they need no read).
    fn initial(self) -> bool {
        self != BatchOrigin::Live
    }
}

/// Processes one batch; see the module doc. Errors are only those of the target side
/// (unavailable) or the state store; everything about single changes goes to `commit`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn process(
    map: &mut MapRun,
    role: Side,
    origin: BatchOrigin,
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
    let source_endpoint = map.plan.endpoint(role).clone();
    let target_endpoint = map.plan.endpoint(target_role).clone();
    let plugin_version = map.runner.plugin().hash().short();
    let map_name = map.plan.name.clone();
    let source_columns = Columns::of(&*source.current_schema(&source_endpoint.entity)?);
    let target_columns = Columns::of(&*writer.current_schema(&target_endpoint.entity)?);

    // Links as committed (the cache, else the store), by source key.
    let mut link_of = |key: &Key| -> Result<Option<Arc<CachedLink>>, SideError> {
        if let Some(cached) = link_cache.get(&map_name, role, key) {
            return Ok(cached);
        }
        let stored = store
            .link(&map_name, role, key)
            .map_err(|error| unavailable(format!("reading links: {error}")))?;
        let link = stored.map(|link| {
            Arc::new(CachedLink {
                erp_key: link.erp_key,
                crm_key: link.crm_key,
                erp_image: link.erp_image,
                crm_image: link.crm_image,
            })
        });
        link_cache.remember(&map_name, role, key, link.clone());
        Ok(link)
    };

    // Each key's row as it is now against its link: what, if anything, to send.
    let groups = group_by_key(changes, &source_endpoint.key);
    let log_changes = map.log_every_change && origin == BatchOrigin::Live;
    let mut notes: Vec<Option<GroupNote>> = (0..groups.len()).map(|_| None).collect();
    let mut inputs = Vec::new();
    // Per input: its group, the link, and the source image it sends (None: a delete).
    let mut sent: Vec<(usize, Option<Arc<CachedLink>>, Option<Image>)> = Vec::new();
    // Each key's row as it is now, all read in one go; the initial sync's rows were
    // scanned just before (live changes made since then are captured and follow it), so
    // they need no read.
    let scanned = |group: &KeyGroup| origin.initial() && group.change.after.is_some();
    let to_read: Vec<RowImage> = groups
        .iter()
        .filter(|group| !scanned(group))
        .map(|group| key_image(&source_endpoint.key, &group.key))
        .collect();
    let mut rows_now = read_rows(source, &source_endpoint.entity, &to_read)?.into_iter();
    for (at, group) in groups.iter().enumerate() {
        let link = link_of(&group.key)?;
        let base = link.as_ref().map(|link| link.image(role));
        let now = match &group.change.after {
            Some(scanned) if origin.initial() => Some(scanned.clone()),
            _ => rows_now.next().flatten(),
        }
        .map(|row| into_declared_image(row, &source_spec));
        let input = match (now, base) {
            // Exactly what was last synced: the engine's own write, a change of unmapped
            // columns, or changes that were undone.
            (Some(now), Some(base)) if source_columns.same_image(&now, base, &source_spec) => {
                if log_changes {
                    let mut note = GroupNote::new(
                        ActivityKind::Echo,
                        "the row matches what was last synced (the engine's own write, \
                         unmapped columns, or undone edits): nothing to send",
                    );
                    note.target_key = link.as_ref().map(|link| link.key(target_role).clone());
                    notes[at] = Some(note);
                }
                None
            }
            (Some(now), base) => {
                let (op, changed) = match base {
                    Some(base) => (
                        ChangeOp::Update,
                        changed_ids(&now, base, &source_spec, &source_columns),
                    ),
                    None => (
                        ChangeOp::Insert,
                        (0..source_spec.fields.len() as u32).collect(),
                    ),
                };
                let change = Change {
                    source: role,
                    op,
                    row: plugin_row(&now, &source_spec),
                    changed,
                };
                Some((change, Some(now)))
            }
            // Gone: a synced row, or one a change of this batch removed (the other side
            // may hold it from a write whose link a crash kept from being recorded).
            (None, base) if base.is_some() || group.removed.is_some() => {
                let last_seen = group
                    .removed
                    .clone()
                    .flatten()
                    .map(|before| declared_image(&before, &source_spec))
                    .or_else(|| base.cloned())
                    .unwrap_or_else(|| key_image(&source_endpoint.key, &group.key));
                let change = Change {
                    source: role,
                    op: ChangeOp::Delete,
                    row: plugin_row(&last_seen, &source_spec),
                    changed: Vec::new(),
                };
                Some((change, None))
            }
            // Gone and never synced: nothing to do.
            (None, _) => {
                if log_changes {
                    notes[at] = Some(GroupNote::new(
                        ActivityKind::NoOp,
                        "the row is gone and was never synced: nothing to send",
                    ));
                }
                None
            }
        };
        match input {
            Some((change, image)) => {
                map.counters.no_ops += group.count - 1;
                inputs.push(change);
                sent.push((at, link, image));
            }
            None => map.counters.no_ops += group.count,
        }
    }
    let results = map.runner.transform(&inputs);
    // The target rows the writes go to, all read in one go.
    let mut target_rows: HashMap<String, Option<Image>> = {
        let mut ids = Vec::new();
        let mut keys = Vec::new();
        let mut seen = HashSet::new();
        for result in &results {
            let TransformResult::Writes(writes) = result else {
                continue;
            };
            for write in writes {
                let fields = write_fields(write, &target_spec);
                if let Some(target_key) = key_of(&fields, &target_endpoint.key) {
                    let id = key_id(&target_key);
                    if seen.insert(id.clone()) {
                        keys.push(key_image(&target_endpoint.key, &target_key));
                        ids.push(id);
                    }
                }
            }
        }
        let rows = read_rows(writer, &target_endpoint.entity, &keys)?;
        ids.into_iter()
            .zip(rows)
            .map(|(id, row)| (id, row.map(|row| into_declared_image(row, &target_spec))))
            .collect()
    };

    let mut pending: Vec<PendingWrite> = Vec::new();
    let mut outcomes: Vec<LinkOutcome> =
        (0..groups.len()).map(|_| LinkOutcome::Unchanged).collect();
    // Target rows this batch writes, as they will be (None: deleted), by target key.
    let mut written_rows: HashMap<String, Option<Image>> = HashMap::new();
    for ((at, committed_link, source_now), result) in sent.into_iter().zip(results) {
        let group = &groups[at];
        let change = group.change.as_ref();
        let writes = match result {
            TransformResult::Filtered => {
                map.counters.filtered += 1;
                if log_changes {
                    notes[at] = Some(GroupNote::new(
                        ActivityKind::Filtered,
                        "the map's filter left the change out",
                    ));
                }
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
            if log_changes {
                notes[at] = Some(GroupNote::new(
                    ActivityKind::NoOp,
                    "the plugin asked for no write",
                ));
            }
            continue;
        }
        let mut link: Option<LinkView> = committed_link.as_ref().map(|link| LinkView {
            source_key: link.key(role).clone(),
            target_key: link.key(target_role).clone(),
            source_image: link.image(role).clone(),
            target_image: link.image(target_role).clone(),
        });
        let source_image = source_now.unwrap_or_default();
        let mut failed = false;
        let mut wrote = false;
        // What this group writes, for its activity entry: op, changed fields, the key.
        let mut written_summary: Vec<serde_json::Value> = Vec::new();
        let mut last_target_key: Option<Key> = None;
        for write in writes {
            let fields = write_fields(&write, &target_spec);
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
            let target_id = key_id(&target_key);
            let target_key_image = key_image(&target_endpoint.key, &target_key);
            last_target_key = Some(target_key.clone());
            // What the target holds now: this batch's pending image if it wrote the row,
            // else the row itself.
            let current = match written_rows.get(&target_id) {
                Some(pending) => pending.clone(),
                None => match target_rows.remove(&target_id) {
                    Some(row) => row,
                    None => writer
                        .read_row(&target_endpoint.entity, &target_key_image)?
                        .map(|row| into_declared_image(row, &target_spec)),
                },
            };

            if write.op == WriteOp::Delete {
                let Some(current) = current else {
                    // Already gone: nothing to write, nothing left to link.
                    link = None;
                    continue;
                };
                // Deleted here, changed there since the last sync: a conflict.
                if let Some(view) = &link
                    && target_columns.changed_since(&view.target_image, &current)
                {
                    map.counters.conflicts += 1;
                    let outcome =
                        resolve_conflict(&map.plan.conflict, role, &source_image, &current);
                    let apply = match outcome {
                        ConflictOutcome::Apply => true,
                        ConflictOutcome::Only(owned) => !owned.is_empty(),
                        ConflictOutcome::Skip => false,
                        ConflictOutcome::Park => {
                            park(
                                map,
                                commit,
                                change,
                                view,
                                role,
                                (None, Some(current.clone())),
                                "the row was deleted on this side and changed on the other; pick a side",
                                &plugin_version,
                            );
                            failed = true;
                            break;
                        }
                    };
                    commit.activity.push(conflict_activity(
                        &map_name,
                        role,
                        change,
                        &plugin_version,
                        if apply {
                            "the row was deleted on this side and changed on the other; the policy applied the delete"
                        } else {
                            "the row was deleted on this side and changed on the other; the policy kept the other side's row"
                        },
                    ));
                    if !apply {
                        reexamine(
                            map,
                            commit,
                            target_role,
                            &target_endpoint.entity,
                            target_key,
                            change,
                        );
                        failed = true;
                        break;
                    }
                }
                written_rows.insert(target_id, None);
                if log_changes {
                    written_summary.push(serde_json::json!({"op": "delete"}));
                }
                pending.push(PendingWrite {
                    group: at,
                    write: RowWrite::delete(&target_endpoint.entity, target_key_image),
                    expected: Some(Some(current)),
                });
                wrote = true;
                link = None;
                continue;
            }

            // The target already holds what this write sets (a redelivery after a
            // crash, or both sides made the same edit): nothing to write and no
            // conflict; the link records the agreement. Not when the target also
            // changed a field this write leaves alone since the last sync: that is a
            // conflict (below), or the link would record a value the target does not
            // hold and the sides would stay apart.
            if let Some(current) = &current
                && fields.iter().all(|(name, value)| {
                    current
                        .get(name)
                        .is_some_and(|now| target_columns.same(name, now, value))
                })
                && link.as_ref().is_none_or(|view| {
                    !view.target_image.iter().any(|(name, value)| {
                        !fields.contains_key(name)
                            && current
                                .get(name)
                                .is_some_and(|now| !target_columns.same(name, now, value))
                    })
                })
            {
                let mut target_image = link
                    .as_ref()
                    .map(|view| view.target_image.clone())
                    .unwrap_or_else(|| current.clone());
                // What the target holds for these fields (the same values, perhaps in the
                // column's own form), not the write's.
                target_image.extend(
                    fields
                        .keys()
                        .filter_map(|name| Some((name.clone(), current.get(name)?.clone()))),
                );
                link = Some(LinkView {
                    source_key: group.key.clone(),
                    target_key,
                    source_image: source_image.clone(),
                    target_image,
                });
                continue;
            }
            // The initial sync's second pass never writes over a row of the master side
            // it finds unlinked: that row is the master's.
            if origin == BatchOrigin::InitialOther && link.is_none() && current.is_some() {
                map.counters.no_ops += 1;
                commit.activity.push(change_activity(
                    &map_name,
                    role,
                    ActivityKind::NoOp,
                    change,
                    &plugin_version,
                    &format!(
                        "{target_role} (the initial sync's master) holds this key unlinked \
                         (its row was filtered or refused there, or created since): its row \
                         is kept and this side's is not written over it"
                    ),
                ));
                // Ends the group with its link as it was, like a failure.
                failed = true;
                break;
            }
            let mut fields = fields;
            let conflict = match (&link, &current) {
                // Synced before, gone from the target now: the target deleted it.
                (Some(_), None) => Some((
                    "the row was deleted on the other side and changed on this one",
                    RowImage::new(),
                )),
                // Both sides changed the row since the last sync.
                (Some(view), Some(current))
                    if target_columns.changed_since(&view.target_image, current) =>
                {
                    Some((
                        "both sides changed the row since the last sync",
                        current.clone(),
                    ))
                }
                // Never synced, and the target has a different row under the same key:
                // both sides created it (the initial sync's source is the master: its
                // row wins without a conflict).
                (None, Some(current)) if origin == BatchOrigin::Live => Some((
                    "both sides created the row with different values",
                    current.clone(),
                )),
                _ => None,
            };
            if let Some((what, target_now)) = conflict {
                map.counters.conflicts += 1;
                let outcome =
                    resolve_conflict(&map.plan.conflict, role, &source_image, &target_now);
                let decision = match &outcome {
                    ConflictOutcome::Apply => "the policy applied this side's row",
                    ConflictOutcome::Skip => "the policy kept the other side's row",
                    ConflictOutcome::Only(_) => "each side's owned fields were kept",
                    ConflictOutcome::Park => "parked for an admin",
                };
                commit.activity.push(conflict_activity(
                    &map_name,
                    role,
                    change,
                    &plugin_version,
                    &format!("{what}; {decision}"),
                ));
                match outcome {
                    ConflictOutcome::Apply => {
                        // The winner's whole row: what it last synced, with this write.
                        // Fields it did not change keep their synced values, so the
                        // other side's concurrent edits do not survive half-way.
                        if let Some(view) = &link {
                            let mut whole = view.target_image.clone();
                            whole.extend(std::mem::take(&mut fields));
                            fields = whole;
                        }
                    }
                    ConflictOutcome::Skip => {
                        reexamine(
                            map,
                            commit,
                            target_role,
                            &target_endpoint.entity,
                            target_key,
                            change,
                        );
                        failed = true;
                        break;
                    }
                    ConflictOutcome::Only(owned) => {
                        fields.retain(|name, _| {
                            owned.contains(name) || target_endpoint.key.contains(name)
                        });
                    }
                    ConflictOutcome::Park => {
                        let empty = LinkView {
                            source_key: group.key.clone(),
                            target_key: target_key.clone(),
                            source_image: Image::new(),
                            target_image: Image::new(),
                        };
                        park(
                            map,
                            commit,
                            change,
                            link.as_ref().unwrap_or(&empty),
                            role,
                            (Some(source_image.clone()), current.clone()),
                            &format!("{what}; pick a side or merge"),
                            &plugin_version,
                        );
                        failed = true;
                        break;
                    }
                }
            }
            // What the link records as synced to the target: the last synced image and
            // this write; never the target's own unsynced edits (they still have to
            // travel the other way). A first link starts from the row as it is.
            let mut target_image = match (&link, &current) {
                (Some(view), _) => view.target_image.clone(),
                (None, Some(current)) => current.clone(),
                (None, None) => Image::new(),
            };
            // A field the target already holds by meaning (12.5 where it keeps 12.50) is
            // not written: rewriting it would only change its form there. The link
            // records the target's own value for it.
            if let Some(current) = &current {
                fields.retain(|name, value| {
                    let held = current
                        .get(name)
                        .filter(|now| target_columns.same(name, now, value));
                    match held {
                        Some(now) if !target_endpoint.key.contains(name) => {
                            target_image.insert(name.clone(), now.clone());
                            false
                        }
                        _ => true,
                    }
                });
                if fields.keys().all(|name| target_endpoint.key.contains(name)) {
                    // Nothing left to write: the target holds all of it.
                    link = Some(LinkView {
                        source_key: group.key.clone(),
                        target_key,
                        source_image: source_image.clone(),
                        target_image,
                    });
                    continue;
                }
            }
            target_image.extend(
                fields
                    .iter()
                    .map(|(name, value)| (name.clone(), value.clone())),
            );
            let mut row_after = current.clone().unwrap_or_default();
            row_after.extend(
                fields
                    .iter()
                    .map(|(name, value)| (name.clone(), value.clone())),
            );
            written_rows.insert(target_id, Some(row_after));
            if log_changes {
                let names: Vec<&str> = fields
                    .keys()
                    .filter(|name| !target_endpoint.key.contains(name))
                    .map(String::as_str)
                    .collect();
                written_summary.push(serde_json::json!({
                    "op": if current.is_some() { "update" } else { "insert" },
                    "fields": names,
                }));
            }
            pending.push(PendingWrite {
                group: at,
                write: RowWrite::upsert(&target_endpoint.entity, target_key_image, fields),
                expected: Some(current),
            });
            wrote = true;
            link = Some(LinkView {
                source_key: group.key.clone(),
                target_key,
                source_image: source_image.clone(),
                target_image,
            });
        }
        if failed {
            continue;
        }
        if !wrote {
            map.counters.no_ops += 1;
        }
        if log_changes {
            let mut note = if wrote {
                let ops: Vec<&str> = written_summary
                    .iter()
                    .filter_map(|write| write["op"].as_str())
                    .collect();
                let mut note = GroupNote::new(
                    ActivityKind::Applied,
                    format!(
                        "{} on {} {}",
                        ops.join(", "),
                        target_role,
                        target_endpoint.entity
                    ),
                );
                note.detail = Some(serde_json::json!({
                    "writes": written_summary,
                    "changes": group.count,
                }));
                note
            } else {
                GroupNote::new(
                    ActivityKind::NoOp,
                    format!(
                        "{} {} already holds these values: nothing to write",
                        target_role, target_endpoint.entity
                    ),
                )
            };
            note.target_key = last_target_key;
            notes[at] = Some(note);
        }
        outcomes[at] = match link {
            Some(view) => LinkOutcome::Set(view),
            None if committed_link.is_some() => LinkOutcome::Removed,
            None => LinkOutcome::Unchanged,
        };
    }

    // Apply; a write the target refuses fails its group, and the rest is tried again. A
    // write whose row an application changed since it was read is skipped and its key
    // looked at again (the link is left as it was, so the next look sees both edits).
    //
    // First, what each write's link will be once it is done, saved (see `pending.rs`):
    // the write and the commit that records its link are not one transaction, and a row
    // the engine wrote but no link describes would pass for an edit made on the target.
    let saved = pending_links(
        &map_name,
        role,
        &target_endpoint.key,
        &groups,
        &pending,
        &outcomes,
        &plugin_version,
    );
    let pending_ids = if saved.is_empty() {
        Vec::new()
    } else {
        store
            .commit(&BatchCommit {
                pending: saved,
                ..BatchCommit::default()
            })
            .map_err(|error| unavailable(format!("saving pending links: {error}")))?
            .pending
    };
    let mut owners = Vec::with_capacity(pending.len());
    let mut writes = Vec::with_capacity(pending.len());
    let mut expected = Vec::with_capacity(pending.len());
    for pending in pending {
        owners.push(pending.group);
        writes.push(pending.write);
        expected.push(pending.expected);
    }
    let mut written = 0;
    while !writes.is_empty() {
        match writer.apply_checked(&writes, &expected) {
            Ok(checked) => {
                written = writes.len() - checked.stale.len();
                // The links record what the target stored for the fields written (a
                // column may keep a value in its own form: 12.50 as 12.5), so the row
                // does not look changed there on the next look.
                for ((write, owner), stored) in writes.iter().zip(&owners).zip(&checked.stored) {
                    let (Some(stored), LinkOutcome::Set(view)) = (stored, &mut outcomes[*owner])
                    else {
                        continue;
                    };
                    if key_image(&target_endpoint.key, &view.target_key) != write.key {
                        continue;
                    }
                    for name in write.key.keys().chain(write.fields.keys()) {
                        if let Some(value) = stored.get(name) {
                            view.target_image.insert(name.clone(), value.clone());
                        }
                    }
                }
                let mut stale_groups: Vec<usize> =
                    checked.stale.iter().map(|&index| owners[index]).collect();
                stale_groups.dedup();
                for group in stale_groups {
                    outcomes[group] = LinkOutcome::Unchanged;
                    notes[group] = None;
                    reexamine(
                        map,
                        commit,
                        role,
                        &source_endpoint.entity,
                        groups[group].key.clone(),
                        groups[group].change.as_ref(),
                    );
                }
                break;
            }
            Err(SideError::Rejected {
                index: Some(bad),
                message,
                dependency,
                ..
            }) => {
                let group = owners[bad];
                let class = if dependency {
                    ErrorClass::DependencyMissing
                } else {
                    ErrorClass::TargetRejected
                };
                fail(
                    map,
                    commit,
                    groups[group].change.as_ref(),
                    SyncError::new(class, message),
                    &plugin_version,
                );
                outcomes[group] = LinkOutcome::Unchanged;
                notes[group] = None;
                // A group's writes are consecutive: drop them from all three lists.
                let first = owners
                    .iter()
                    .position(|&owner| owner == group)
                    .unwrap_or(bad);
                let end = first
                    + owners[first..]
                        .iter()
                        .take_while(|&&owner| owner == group)
                        .count();
                owners.drain(first..end);
                writes.drain(first..end);
                expected.drain(first..end);
            }
            Err(SideError::Rejected {
                index: None,
                message,
                ..
            }) => {
                // Refused only at commit: fail every group of the batch, kept for retry.
                let mut failed_groups = owners.clone();
                failed_groups.dedup();
                for group in failed_groups {
                    fail(
                        map,
                        commit,
                        groups[group].change.as_ref(),
                        SyncError::new(ErrorClass::TargetRejected, message.clone()),
                        &plugin_version,
                    );
                    outcomes[group] = LinkOutcome::Unchanged;
                    notes[group] = None;
                }
                writes.clear();
            }
            // The write's outcome is unknown: its pending links stay, to be settled
            // against the target when it is back.
            Err(other) => return Err(other),
        }
    }
    commit.settled.extend(pending_ids);
    map.counters.written(target_role, written);

    // One activity entry per key group that neither failed nor conflicted, in order.
    for (group, note) in groups.iter().zip(notes) {
        let Some(note) = note else { continue };
        let change = group.change.as_ref();
        let mut entry = change_activity(
            &map_name,
            role,
            note.kind,
            change,
            &plugin_version,
            &note.message,
        );
        match target_role {
            Side::Erp => entry.erp_key = note.target_key,
            Side::Crm => entry.crm_key = note.target_key,
        }
        entry.detail = note.detail;
        commit.activity.push(entry);
    }

    // Links: what each group left, unless it failed.
    for (group, outcome) in groups.iter().zip(outcomes) {
        match outcome {
            LinkOutcome::Unchanged => {}
            LinkOutcome::Set(view) => commit.links.push(LinkChange::Upsert(link_upsert(
                &map_name,
                role,
                view,
                &plugin_version,
            ))),
            LinkOutcome::Removed => commit.links.push(LinkChange::Delete(LinkDelete {
                map: map_name.clone(),
                side: role,
                key: group.key.clone(),
            })),
        }
    }
    Ok(written)
}

/// The link a [`LinkView`] of a batch from `role` stands for.
fn link_upsert(map: &str, role: Side, view: LinkView, plugin_version: &str) -> LinkUpsert {
    let (erp_key, crm_key, erp_image, crm_image) = match role {
        Side::Erp => (
            view.source_key,
            view.target_key,
            view.source_image,
            view.target_image,
        ),
        Side::Crm => (
            view.target_key,
            view.source_key,
            view.target_image,
            view.source_image,
        ),
    };
    LinkUpsert {
        map: map.to_owned(),
        erp_key,
        crm_key,
        erp_image,
        crm_image,
        plugin_version: plugin_version.to_owned(),
    }
}

/// What the batch's writes will make of their links, one per key group that writes:
/// its last write to the row its link ends on, with the fields that write sets (a
/// delete: the link goes).
fn pending_links(
    map: &str,
    role: Side,
    target_key_columns: &[String],
    groups: &[KeyGroup],
    pending: &[PendingWrite],
    outcomes: &[LinkOutcome],
    plugin_version: &str,
) -> Vec<PendingLink> {
    let mut by_group: HashMap<usize, PendingLink> = HashMap::new();
    for write in pending {
        let Some(target_key) = key_of(&write.write.key, target_key_columns) else {
            continue;
        };
        let saved = match (&outcomes[write.group], write.write.op) {
            (LinkOutcome::Set(view), WriteOp::Upsert) if view.target_key == target_key => {
                let mut written = write.write.key.clone();
                written.extend(write.write.fields.clone());
                PendingLink {
                    target: role.other(),
                    written: Some(written),
                    link: link_upsert(map, role, view.clone(), plugin_version),
                }
            }
            (LinkOutcome::Removed, WriteOp::Delete) => {
                let view = LinkView {
                    source_key: groups[write.group].key.clone(),
                    target_key,
                    source_image: Image::new(),
                    target_image: Image::new(),
                };
                PendingLink {
                    target: role.other(),
                    written: None,
                    link: link_upsert(map, role, view, plugin_version),
                }
            }
            _ => continue,
        };
        by_group.insert(write.group, saved);
    }
    let mut saved: Vec<(usize, PendingLink)> = by_group.into_iter().collect();
    saved.sort_by_key(|(group, _)| *group);
    saved.into_iter().map(|(_, link)| link).collect()
}

/// Queues a fresh look at `key` of `role`'s entity (a change of nothing, so the row as
/// it is now is compared with its link again): after a conflict this side lost, so the
/// winner's row travels here even when no change of the winner's is on its way (a crash
/// kept its write from being linked), and after a write found its row changed meanwhile.
fn reexamine(
    map: &mut MapRun,
    commit: &mut BatchCommit,
    role: Side,
    entity: &str,
    key: Key,
    cause: &StoredChange,
) {
    map.queued += 1;
    commit.enqueue.push(StoredChange {
        map: cause.map.clone(),
        side: role,
        entity: entity.to_owned(),
        op: ChangeOp::Update,
        position: cause.position,
        key,
        before: None,
        after: None,
        changed: Vec::new(),
        committed_at: None,
    });
}

/// Parks a conflict for an admin: an error of class conflict with the base images and
/// both sides' rows (`source`, `target`: this change's side's row and the other side's,
/// `None` where the row is gone).
#[allow(clippy::too_many_arguments)]
fn park(
    map: &mut MapRun,
    commit: &mut BatchCommit,
    change: &StoredChange,
    base: &LinkView,
    role: Side,
    (source, target): (Option<Image>, Option<Image>),
    message: &str,
    plugin_version: &str,
) {
    map.counters.errors += 1;
    let (erp, crm) = match role {
        Side::Erp => (source, target),
        Side::Crm => (target, source),
    };
    commit.errors.push(NewError {
        change: change.clone(),
        error: SyncError::new(ErrorClass::Conflict, message),
        next_retry: None,
        conflict: Some(ConflictImages {
            erp_base: Some(base.image_for(Side::Erp, role)),
            crm_base: Some(base.image_for(Side::Crm, role)),
            erp,
            crm,
        }),
        plugin_version: Some(plugin_version.to_owned()),
    });
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
    change_activity(
        map,
        role,
        ActivityKind::Conflict,
        change,
        plugin_version,
        message,
    )
}

/// An activity entry about `change` of `map` from `role`: kind, source key, position and
/// plugin version.
fn change_activity(
    map: &str,
    role: Side,
    kind: ActivityKind,
    change: &StoredChange,
    plugin_version: &str,
    message: &str,
) -> ActivityEntry {
    let mut entry = ActivityEntry::new(Some(map), kind, message);
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

/// The rows of `table` for `keys`, in one round trip where the connector can; one by
/// one when it answers with another number of rows than keys asked (a connector fault).
fn read_rows(
    side: &mut dyn ApplyBatch,
    table: &str,
    keys: &[RowImage],
) -> Result<Vec<Option<RowImage>>, SideError> {
    let rows = side.read_rows(table, keys)?;
    if rows.len() == keys.len() {
        return Ok(rows);
    }
    tracing::warn!(
        table,
        asked = keys.len(),
        answered = rows.len(),
        "a batched read answered for another number of keys; reading them one by one"
    );
    keys.iter().map(|key| side.read_row(table, key)).collect()
}
