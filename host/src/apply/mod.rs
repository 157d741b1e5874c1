//! Writing rows to a side, and reading them back by key: the boundary every connector's
//! apply implements.
//!
//! The sync loop turns a plugin's writes into [`RowWrite`]s (the target table, the key,
//! the fields to set, by column name) and hands a batch to [`ApplyBatch::apply`], which
//! runs it in one transaction tagged as the engine's own, so the side's capture does not
//! read it back as a new change (no echo). Writes are idempotent: an upsert sets only the
//! listed fields of the row with that key (inserting it if missing) and a delete of a
//! missing row does nothing, so redelivering a batch after a crash changes nothing. If
//! the target refuses one write, nothing of the batch is kept and the error names the
//! write ([`crate::capture::SideError::Rejected`]), so the loop can park it and retry
//! the rest.
//!
//! Reads ([`ApplyBatch::read_row`], [`ApplyBatch::scan`]) serve plugin lookups, conflict
//! checks against the current row, and the initial sync's chunked merge.
//! [`ApplyBatch::table_schema`] introspects a table so a map can be checked against it
//! ([`TableSchema::check_map`]) before anything runs.
//!
//! Connectors: [`sqlite`], [`postgres`], [`mysql`] (MariaDB and MySQL).

pub mod mysql;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use crate::capture::{RowImage, SideError, TableSchema};
use crate::change::{Fidelity, Value, WriteOp};

/// One row write on a side.
#[derive(Debug, Clone, PartialEq)]
pub struct RowWrite {
    /// The table.
    pub table: String,
    /// Upsert or delete.
    pub op: WriteOp,
    /// The key columns and their values: a unique key of the table, no NULLs.
    pub key: RowImage,
    /// For an upsert, the columns to set (key columns may repeat with the same value);
    /// columns not listed keep their value on an existing row and take their default on
    /// a new one. Ignored for a delete.
    pub fields: RowImage,
}

impl RowWrite {
    /// Insert the row with `key`, or set `fields` on it if it exists.
    pub fn upsert(table: impl Into<String>, key: RowImage, fields: RowImage) -> RowWrite {
        RowWrite {
            table: table.into(),
            op: WriteOp::Upsert,
            key,
            fields,
        }
    }

    /// Delete the row with `key`, if there is one.
    pub fn delete(table: impl Into<String>, key: RowImage) -> RowWrite {
        RowWrite {
            table: table.into(),
            op: WriteOp::Delete,
            key,
            fields: RowImage::new(),
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteEffect {
    /// A row was inserted, updated or deleted.
    Changed,
    /// The row already was as asked (same values, or already deleted): a redelivery or
    /// an echo of what the side already has.
    Unchanged,
}

/// The result of a batch that committed: one effect per write, in batch order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// One effect per write.
    pub effects: Vec<WriteEffect>,
}

impl ApplyReport {
    /// How many writes changed a row.
    pub fn changed(&self) -> usize {
        self.effects
            .iter()
            .filter(|effect| **effect == WriteEffect::Changed)
            .count()
    }
}

/// What a write expects of its target row when it is applied: `None` checks nothing,
/// `Some(None)` expects no row, `Some(Some(fields))` expects the row to hold these
/// values in these columns (others may differ).
pub type Expectation = Option<Option<RowImage>>;

/// The result of [`ApplyBatch::apply_checked`]: the batch's report, the writes that were
/// skipped because their row was no longer as expected, and what each upsert left.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckedApply {
    /// One effect per write (a skipped write is [`WriteEffect::Unchanged`]).
    pub report: ApplyReport,
    /// Indexes of the writes skipped as stale, in batch order.
    pub stale: Vec<usize>,
    /// One entry per write: for an upsert that was applied, the whole row as the target
    /// stored it, read back inside the write's transaction (what the link must record:
    /// a column may keep a value in another form, `12.50` as `12.5`); `None` for a delete
    /// or a skipped write.
    pub stored: Vec<Option<RowImage>>,
}

/// Writes to and reads from one side. The sync loop owns one per side.
///
/// A [`SideError::Unavailable`] from any method means the connection is no longer
/// usable: drop it, put the side offline and open a new one later.
pub trait ApplyBatch: Send {
    /// Describes `table`: columns, declared types, primary and unique keys, introspected
    /// afresh.
    fn table_schema(&mut self, table: &str) -> Result<TableSchema, SideError>;

    /// `table`'s schema as the connector keeps it for its reads and writes (introspected
    /// again when the store says the schema changed, as the connector's writes do): cheap
    /// enough to ask for every batch.
    fn current_schema(&mut self, table: &str) -> Result<Arc<TableSchema>, SideError>;

    /// Applies `writes` in one transaction, tagged so the side's capture skips them.
    /// All or nothing: on [`SideError::Rejected`] nothing was kept.
    fn apply(&mut self, writes: &[RowWrite]) -> Result<ApplyReport, SideError>;

    /// Like [`apply`](Self::apply), but first checks, inside the same transaction, that
    /// each write's row is as `expected` (one entry per write) and skips the writes whose
    /// row changed since the engine read it: an application's write that landed between
    /// the engine's read and its write is never overwritten unseen. Then reads back each
    /// upserted row in the same transaction ([`CheckedApply::stored`]) and refuses a
    /// write whose row does not hold what it set, by the columns' meaning
    /// ([`check_stored`]): nothing is stored silently altered.
    fn apply_checked(
        &mut self,
        writes: &[RowWrite],
        expected: &[Expectation],
    ) -> Result<CheckedApply, SideError>;

    /// The whole row of `table` whose `key` columns have these values, if any. The
    /// columns must exist; more than one matching row is a
    /// [`SchemaError::KeyNotUnique`](crate::capture::SchemaError::KeyNotUnique).
    fn read_row(&mut self, table: &str, key: &RowImage) -> Result<Option<RowImage>, SideError>;

    /// [`read_row`](Self::read_row) for each of `keys`, in their order. Connectors of a
    /// database server override it to read them all in one round trip; the default reads
    /// them one by one.
    fn read_rows(
        &mut self,
        table: &str,
        keys: &[RowImage],
    ) -> Result<Vec<Option<RowImage>>, SideError> {
        keys.iter().map(|key| self.read_row(table, key)).collect()
    }

    /// How many rows `table` holds (for initial sync progress).
    fn count_rows(&mut self, table: &str) -> Result<u64, SideError>;

    /// Up to `limit` whole rows of `table` ordered by `key_columns` (a unique key),
    /// starting after the row whose key is `after` (from the start when `None`). Rows
    /// with a NULL in a key column are skipped: they cannot be identified.
    fn scan(
        &mut self,
        table: &str,
        key_columns: &[String],
        after: Option<&RowImage>,
        limit: usize,
    ) -> Result<Vec<RowImage>, SideError>;

    /// Closes the connection, if the connector keeps one open, so that the next call
    /// connects again. The sync loop calls it when the side goes offline: its capture
    /// found the server gone, and a connection of the writer opened before would fail
    /// on its first use once the server is back, putting the side offline a second
    /// time. The default does nothing (a connector without a server).
    fn disconnect(&mut self) {}
}

/// The key columns `keys` share when a connector can read them in one statement: two
/// keys or more, all over the same columns, and at least one column. `None` means read
/// them one by one.
pub(crate) fn shared_key_columns(keys: &[RowImage]) -> Option<Vec<&String>> {
    let first = keys.first()?;
    let batched =
        keys.len() > 1 && !first.is_empty() && keys.iter().all(|key| key.keys().eq(first.keys()));
    batched.then(|| first.keys().collect())
}

/// Checks that `stored`, the row write `index` left (read back inside its transaction),
/// holds every value the write set, by the meaning of each column ([`Fidelity::same`]).
/// A column that would keep a value altered (a decimal beyond the digits or the scale it
/// keeps, text beyond its length, an instant beyond its precision) makes it a
/// [`SideError::Rejected`] naming the column, both values and why, so the batch rolls
/// back and that write alone goes to the error queue.
pub fn check_stored(
    schema: &TableSchema,
    index: usize,
    write: &RowWrite,
    stored: Option<&RowImage>,
) -> Result<(), SideError> {
    if write.op == WriteOp::Delete {
        return Ok(());
    }
    let rejected = |message: String| SideError::Rejected {
        index: Some(index),
        table: write.table.clone(),
        message,
        dependency: false,
    };
    let Some(stored) = stored else {
        return Err(rejected(format!(
            "the row is not in {} after the write (a trigger or rule of the table removed \
             or redirected it)",
            write.table
        )));
    };
    for (name, written) in write.key.iter().chain(&write.fields) {
        let fidelity = schema
            .column(name)
            .map_or(Fidelity::Exact, |column| column.fidelity);
        let kept = stored.get(name).unwrap_or(&Value::Null);
        if !fidelity.same(written, kept) {
            let declared = schema
                .column(name)
                .map_or("", |column| column.declared_type.as_str());
            return Err(rejected(format!(
                "column {name} ({declared}) would keep {} for {}: the column cannot hold \
                 the value as it is, so it is not written (widen the column, or make the \
                 map send a value it holds)",
                shown(kept),
                shown(written)
            )));
        }
    }
    Ok(())
}

/// A value as messages show it: text and decimals as they are, others by debug form.
fn shown(value: &Value) -> String {
    match value {
        Value::Text(text) | Value::Decimal(text) | Value::Json(text) => format!("{text:?}"),
        Value::Null => "NULL".to_owned(),
        Value::Integer(integer) => integer.to_string(),
        Value::Float(float) => format!("{float:?}"),
        other => format!("{other:?}"),
    }
}
