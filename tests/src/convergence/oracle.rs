//! The one-sided last-write oracle of the convergence tests. Equal sides are not enough:
//! an engine that drops a real edit and copies the other side's older row over it still
//! ends with equal sides. So a history records every user edit of a key as the side
//! stored it (read back right after the write), and at the end every key whose changes
//! all came from one side must hold that side's last stored row on both sides (absent on
//! both if it was a delete). A policy may discard only edits that really conflicted, and
//! a key changed on one side only has none.
//!
//! The row type and what "the same row" means are the test's: exact equality for
//! columns that keep what they are given, a comparison by the column's meaning for
//! columns that normalize (see [`super::kinds`]).

use std::collections::BTreeMap;
use std::fmt::{Debug, Write as _};

use super::Which;

/// One user edit of a key, as the side held the row right after it.
#[derive(Debug, Clone)]
pub struct Recorded<R> {
    /// Where it was made.
    pub side: Which,
    /// The op, as the failure output shows it (naming the side).
    pub what: String,
    /// The row the side held right after the edit; `None` once deleted (or absent).
    pub stored: Option<R>,
    /// Whether it changed the row. An edit that changed nothing (an update to the values
    /// the row held, a delete of a missing row) is shown but does not make its side one
    /// that edited the key.
    pub changed: bool,
}

/// Every user edit of a history, by key.
#[derive(Debug, Clone)]
pub struct EditLog<R> {
    edits: BTreeMap<usize, Vec<Recorded<R>>>,
}

impl<R> Default for EditLog<R> {
    fn default() -> Self {
        EditLog {
            edits: BTreeMap::new(),
        }
    }
}

impl<R: Debug> EditLog<R> {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an edit of `key` on `side`: `stored` is the row the side holds right after
    /// it (read back, not what the test wrote).
    pub fn record(
        &mut self,
        key: usize,
        side: Which,
        what: impl Into<String>,
        stored: Option<R>,
        changed: bool,
    ) {
        self.edits.entry(key).or_default().push(Recorded {
            side,
            what: what.into(),
            stored,
            changed,
        });
    }

    /// The side that made every change of `key`, if exactly one side changed it.
    pub fn only_side(&self, key: usize) -> Option<Which> {
        let mut sides = self
            .edits
            .get(&key)?
            .iter()
            .filter(|edit| edit.changed)
            .map(|edit| edit.side);
        let first = sides.next()?;
        sides.all(|side| side == first).then_some(first)
    }

    /// The keys changed on one side only, each with that side's last change (the row it
    /// stored, or `None` for a delete).
    pub fn one_sided(&self) -> Vec<(usize, Which, &Recorded<R>)> {
        self.edits
            .iter()
            .filter_map(|(key, edits)| {
                let side = self.only_side(*key)?;
                let last = edits.iter().rfind(|edit| edit.changed)?;
                Some((*key, side, last))
            })
            .collect()
    }

    /// Checks every key changed on one side only: both sides must hold that side's last
    /// stored row now (`row` reads a side's row of a key), compared by `same(side of a,
    /// a, side of b, b)`; absent on both after a delete. Returns how many keys it checked,
    /// or every key that broke it with its edit history and both final rows
    /// (`key_name` names a key).
    pub fn check_one_sided(
        &self,
        key_name: impl Fn(usize) -> String,
        mut row: impl FnMut(Which, usize) -> Option<R>,
        same: impl Fn(Which, &R, Which, &R) -> bool,
    ) -> Result<usize, String> {
        let one_sided = self.one_sided();
        let mut failures = String::new();
        for (key, side, last) in &one_sided {
            let now = [Which::Erp, Which::Crm].map(|holder| (holder, row(holder, *key)));
            let holds = |(holder, now): &(Which, Option<R>)| match (&last.stored, now) {
                (None, None) => true,
                (Some(expected), Some(now)) => same(*side, expected, *holder, now),
                _ => false,
            };
            if now.iter().all(holds) {
                continue;
            }
            let _ = writeln!(
                failures,
                "key {}: every change came from the {side:?}, whose last write stored \
                 {:?}\n  edits of the key:",
                key_name(*key),
                last.stored
            );
            for edit in &self.edits[key] {
                let note = if edit.changed {
                    ""
                } else {
                    " (changed nothing)"
                };
                let _ = writeln!(
                    failures,
                    "    {}{note} -> stored {:?}",
                    edit.what, edit.stored
                );
            }
            for (holder, row) in &now {
                let _ = writeln!(failures, "  {holder:?} now: {row:?}");
            }
        }
        if failures.is_empty() {
            Ok(one_sided.len())
        } else {
            Err(failures)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(_: Which, a: &&str, _: Which, b: &&str) -> bool {
        a == b
    }

    #[test]
    fn a_key_changed_on_both_sides_is_not_one_sided() {
        let mut log = EditLog::new();
        log.record(0, Which::Erp, "insert", Some("a"), true);
        log.record(0, Which::Crm, "update", Some("b"), true);
        log.record(1, Which::Crm, "insert", Some("c"), true);
        log.record(1, Which::Erp, "update to the same", Some("c"), false);
        assert_eq!(log.only_side(0), None);
        assert_eq!(log.only_side(1), Some(Which::Crm));
        assert_eq!(log.only_side(2), None);
    }

    #[test]
    fn the_last_change_of_the_one_side_must_be_on_both_sides() {
        let mut log = EditLog::new();
        log.record(0, Which::Erp, "insert", Some("a"), true);
        log.record(0, Which::Erp, "update", Some("b"), true);
        log.record(1, Which::Crm, "insert", Some("c"), true);
        log.record(1, Which::Crm, "delete", None, true);
        let right = |_: Which, key: usize| (key == 0).then_some("b");
        assert_eq!(
            log.check_one_sided(|key| key.to_string(), right, exact),
            Ok(2)
        );

        let stale = |side: Which, key: usize| match (side, key) {
            (Which::Erp, 0) => Some("b"),
            (Which::Crm, 0) => Some("a"),
            _ => None,
        };
        let failure = log
            .check_one_sided(|key| key.to_string(), stale, exact)
            .expect_err("the CRM holds an older write");
        assert!(failure.contains("key 0"), "{failure}");
        assert!(failure.contains("Crm now: Some(\"a\")"), "{failure}");
        assert!(!failure.contains("key 1"), "{failure}");
    }
}
