//! Automatic retry of retryable errors (a lookup of a row not synced yet, a side that
//! was offline, a change skipped on resume), once their retry time is due.
//!
//! A retry syncs the row *as it is now* on its source side, not the old change again:
//! a row changed since then is not regressed to the old values, and a row deleted since
//! then makes the error moot (superseded). The outcome goes into the error queue: the
//! error is resolved as applied, or its attempt count and next retry time are bumped
//! with exponential backoff.

use chrono::Utc;

use super::{Engine, process};
use crate::change::ChangeOp;
use crate::state::{
    BatchCommit, ErrorEntry, ErrorResolution, ErrorRetry, ResolutionKind, StoredChange,
};

/// Longest wait between two retries of one error.
const MAX_RETRY_DELAY_SECONDS: i64 = 300;

impl Engine {
    /// Retries the errors whose retry time has come; returns how many were applied.
    pub fn retry_due_errors(&mut self) -> anyhow::Result<usize> {
        let due = self.store.due_errors(Utc::now(), 200)?;
        let mut applied = 0;
        for entry in due {
            if self.retry_one(&entry)? {
                applied += 1;
            }
        }
        Ok(applied)
    }

    pub(super) fn retry_one(&mut self, entry: &ErrorEntry) -> anyhow::Result<bool> {
        let Some(index) = self
            .maps
            .iter()
            .position(|map| map.plan.name == entry.change.map)
        else {
            return Ok(false);
        };
        let role = entry.change.side;
        let plan = self.maps[index].plan.clone();
        let source = self.side_index(&plan.endpoint(role).side);
        let target = self.side_index(&plan.endpoint(role.other()).side);
        if self.sides[source].offline.is_some() || self.sides[target].offline.is_some() {
            return Ok(false);
        }
        let key_image = process::key_image(&plan.endpoint(role).key, &entry.change.key);
        let current = match self.sides[source]
            .writer
            .read_row(&entry.change.entity, &key_image)
        {
            Ok(current) => current,
            Err(error) if error.is_unavailable() => return Ok(false),
            Err(error) => return Err(error.into()),
        };
        let mut commit = BatchCommit::default();
        let change = match (current, entry.change.op) {
            (Some(row), _) => StoredChange {
                op: ChangeOp::Update,
                before: None,
                after: Some(row),
                changed: Vec::new(),
                ..entry.change.clone()
            },
            (None, ChangeOp::Delete) => entry.change.clone(),
            (None, _) => {
                commit.error_resolutions.push(ErrorResolution {
                    id: entry.id,
                    kind: ResolutionKind::Superseded,
                    by: "engine".to_owned(),
                    reason: "the row no longer exists on its source side".to_owned(),
                });
                self.commit(&commit)?;
                return Ok(false);
            }
        };
        let mut attempt = BatchCommit::default();
        let store = self.store.clone();
        let (source_writer, target_writer) = super::writer_pair(&mut self.sides, source, target);
        let result = process::process(
            &mut self.maps[index],
            role,
            process::BatchOrigin::Live,
            std::slice::from_ref(&change),
            store.as_ref(),
            &mut self.links,
            (source_writer, target_writer),
            &mut attempt,
        );
        if let Err(error) = result {
            if error.is_unavailable() {
                return Ok(false);
            }
            return Err(error.into());
        }
        let applied = attempt.errors.is_empty();
        match attempt.errors.pop() {
            None => commit.error_resolutions.push(ErrorResolution {
                id: entry.id,
                kind: ResolutionKind::Applied,
                by: "engine".to_owned(),
                reason: format!("automatic retry {}", entry.attempts + 1),
            }),
            Some(failed) => {
                let first = self.options.first_retry.as_secs().try_into().unwrap_or(5);
                let delay = retry_delay(first, entry.attempts + 1);
                commit.error_retries.push(ErrorRetry {
                    id: entry.id,
                    next_retry: failed
                        .error
                        .retryable
                        .then(|| Utc::now() + chrono::Duration::seconds(delay)),
                    error: failed.error,
                });
            }
        }
        commit.links.append(&mut attempt.links);
        commit.settled.append(&mut attempt.settled);
        commit.enqueue.append(&mut attempt.enqueue);
        commit.activity.append(&mut attempt.activity);
        self.commit(&commit)?;
        Ok(applied)
    }
}

/// Seconds before attempt `attempt + 1`: `first` doubling up to five minutes.
fn retry_delay(first: i64, attempt: u32) -> i64 {
    (first.max(1) << attempt.min(10)).min(MAX_RETRY_DELAY_SECONDS)
}
