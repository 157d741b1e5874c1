//! When a captured transaction is visible to other sessions: the rule behind
//! [`PostgresCapture::await_visible`](super::PostgresCapture).
//!
//! A committing backend writes and flushes its commit record, waits for synchronous
//! standbys if any (`SyncRepWaitForLSN`), and only then leaves the proc array
//! (`ProcArrayEndTransaction`), which is what makes it visible to new snapshots. The
//! walsender decodes and sends the transaction as soon as the commit record is flushed,
//! so the capture can hold a transaction that other sessions cannot see yet; a read of
//! its row then returns the row as it was before.
//!
//! pgoutput's Begin message carries the transaction's id (32 bits). The capture keeps
//! it for every transaction it handed changes of out and has not proven visible, and
//! proves it with `pg_current_snapshot()` on its ordinary session ([`Snapshot`]): a
//! transaction is visible to that snapshot when its full id is below the snapshot's
//! `xmin`, or below `xmax` and not in its in-progress list (`xip`). Such a transaction
//! left the proc array before the snapshot was taken (a snapshot lists every id below
//! `xmax` still in the proc array as in progress), so every snapshot taken afterwards,
//! by any session, sees it too: one proof covers every later read of the side, and a
//! proven id is forgotten. The engine's reads are single statements in autocommit
//! (`READ COMMITTED`), each with a snapshot taken when it starts.
//!
//! `xmax` is one past the latest transaction that completed, not the next id to be
//! assigned: a transaction still committing may have an id at or above it (and is then
//! not in `xip`); it is not visible, as [`Snapshot::sees`] says. Ids in the snapshot are
//! 64-bit (`xid8`: epoch and id); the Begin message's 32-bit id is widened relative to
//! `xmax`, to the full id less than 2^31 away from it ([`widen`], as PostgreSQL's own
//! `FullXidRelativeTo`): the server keeps every id still of interest within 2^31 of
//! every other (wraparound protection), so the transaction's id is that one whether it
//! is below `xmax` (an epoch earlier when the low half wrapped) or above it.

/// A snapshot as `pg_current_snapshot()::text` gives it: `xmin:xmax:xip1,xip2,...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Every transaction below it had ended when the snapshot was taken.
    pub(crate) xmin: u64,
    /// One past the latest transaction completed when the snapshot was taken; no
    /// transaction at or above it is visible.
    pub(crate) xmax: u64,
    /// Transactions between `xmin` and `xmax` still in progress then.
    pub(crate) xip: Vec<u64>,
}

impl Snapshot {
    /// Parses the text form; `None` when it is not one.
    pub(crate) fn parse(text: &str) -> Option<Snapshot> {
        let mut parts = text.trim().split(':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let xip = parts
            .next()?
            .split(',')
            .filter(|id| !id.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<u64>, _>>()
            .ok()?;
        if parts.next().is_some() || xmin > xmax {
            return None;
        }
        Some(Snapshot { xmin, xmax, xip })
    }

    /// Whether the transaction with the 32-bit id `xid` (live around the time of the
    /// snapshot) had ended when the snapshot was taken.
    pub(crate) fn sees(&self, xid: u32) -> bool {
        let full = widen(xid, self.xmax);
        full < self.xmin || (full < self.xmax && !self.xip.contains(&full))
    }
}

/// The 64-bit id of the 32-bit `xid` of a transaction that is live near a snapshot
/// whose `xmax` is `xmax`: the full id less than 2^31 away from `xmax`.
pub(crate) fn widen(xid: u32, xmax: u64) -> u64 {
    // Two's-complement distance of the low halves, as FullXidRelativeTo.
    let distance = i64::from(xid.wrapping_sub(xmax as u32) as i32);
    // Below id 0 cannot be (an id older than the first): it reads as long ended.
    xmax.checked_add_signed(distance).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: u64 = 1 << 32;

    #[test]
    fn parses_the_text_form_with_and_without_transactions_in_progress() {
        assert_eq!(
            Snapshot::parse("748:752:748,750"),
            Some(Snapshot {
                xmin: 748,
                xmax: 752,
                xip: vec![748, 750],
            })
        );
        assert_eq!(
            Snapshot::parse("752:752:"),
            Some(Snapshot {
                xmin: 752,
                xmax: 752,
                xip: vec![],
            })
        );
        let wide = format!("{}:{}:{}", 3 * EPOCH + 5, 3 * EPOCH + 9, 3 * EPOCH + 7);
        assert_eq!(
            Snapshot::parse(&wide),
            Some(Snapshot {
                xmin: 3 * EPOCH + 5,
                xmax: 3 * EPOCH + 9,
                xip: vec![3 * EPOCH + 7],
            })
        );
        for bad in ["", "1:2", "1:2:3:4", "a:2:", "1:2:x", "9:2:"] {
            assert_eq!(Snapshot::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_transaction_is_seen_below_xmin_or_below_xmax_and_not_in_progress() {
        let snapshot = Snapshot::parse("748:752:748,750").unwrap();
        assert!(snapshot.sees(700));
        assert!(!snapshot.sees(748), "in progress");
        assert!(snapshot.sees(749), "ended between xmin and xmax");
        assert!(!snapshot.sees(750), "in progress");
        assert!(snapshot.sees(751));
        assert!(!snapshot.sees(752), "at xmax");
    }

    #[test]
    fn a_commit_not_completed_at_or_above_xmax_is_not_seen() {
        // What PostgreSQL 15 gives while transaction 725 waits for a synchronous
        // standby: xmax is one past the latest completed transaction, 725 is not listed.
        let snapshot = Snapshot::parse("725:725:").unwrap();
        assert!(!snapshot.sees(725));
        assert!(!snapshot.sees(727));
        assert!(snapshot.sees(724));
        // Once it left the proc array.
        assert!(Snapshot::parse("726:726:").unwrap().sees(725));
    }

    #[test]
    fn ids_widen_to_the_full_id_nearest_xmax() {
        assert_eq!(widen(100, 3 * EPOCH + 200), 3 * EPOCH + 100);
        // At or above xmax: a transaction still committing, in xmax's epoch.
        assert_eq!(widen(200, 3 * EPOCH + 200), 3 * EPOCH + 200);
        assert_eq!(widen(230, 3 * EPOCH + 200), 3 * EPOCH + 230);
        // Near the top of the 32-bit range while xmax's low half is small: the epoch
        // before.
        assert_eq!(
            widen(u32::MAX - 5, 3 * EPOCH + 10),
            2 * EPOCH + u64::from(u32::MAX) - 5
        );
        // Small while xmax's low half is near the top: the epoch after (a transaction
        // that got its id after the low half wrapped, still committing).
        assert_eq!(widen(5, 3 * EPOCH + u64::from(u32::MAX) - 2), 4 * EPOCH + 5);
        // Epoch 0 never goes below zero.
        assert_eq!(widen(u32::MAX - 3, 10), 0);
        assert_eq!(widen(5, 10), 5);
    }

    #[test]
    fn wraparound_snapshots_see_by_full_ids() {
        // xmin in the epoch before xmax: ids near the top of the 32-bit range are of the
        // old epoch, small ids of the new one.
        let xmin = 6 * EPOCH + u64::from(u32::MAX) - 10;
        let xmax = 7 * EPOCH + 20;
        let in_progress_old = 6 * EPOCH + u64::from(u32::MAX) - 3;
        let in_progress_new = 7 * EPOCH + 4;
        // xmin is itself in progress (the oldest transaction that is).
        let snapshot = Snapshot::parse(&format!(
            "{xmin}:{xmax}:{xmin},{in_progress_old},{in_progress_new}"
        ))
        .unwrap();
        assert!(snapshot.sees(u32::MAX - 20), "below xmin");
        assert!(!snapshot.sees(u32::MAX - 10), "xmin is in progress");
        assert!(!snapshot.sees(u32::MAX - 3), "in progress, old epoch");
        assert!(snapshot.sees(u32::MAX - 2), "ended, old epoch");
        assert!(snapshot.sees(3), "ended, new epoch");
        assert!(!snapshot.sees(4), "in progress, new epoch");
        assert!(snapshot.sees(19));
        assert!(!snapshot.sees(20), "at xmax: not completed");
        assert!(!snapshot.sees(25), "above xmax: not completed");
    }
}
