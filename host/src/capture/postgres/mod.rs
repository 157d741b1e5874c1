//! The PostgreSQL connector's capture: logical decoding of the side's write-ahead log
//! through a replication slot with the built-in `pgoutput` plugin, read with the SQL
//! interface `pg_logical_slot_peek_binary_changes` and confirmed with
//! `pg_replication_slot_advance` only when the engine acknowledges. No triggers, no
//! polling of the tables.
//!
//! # What is installed in the side's database
//!
//! [`PostgresCapture::install`] sets up (and [`PostgresCapture::uninstall`] removes),
//! all named by [`PostgresOptions::name`] (`dualwrite_<database>_<side>`):
//!
//! - `REPLICA IDENTITY FULL` on every captured table, so updates and deletes carry the
//!   whole row before the change (left in place by uninstall);
//! - a publication of exactly the captured tables, publishing inserts, updates and
//!   deletes (`TRUNCATE` is not synced);
//! - a logical replication slot with the `pgoutput` plugin;
//! - a row in `_dualwrite_streams (slot, stream_id, system_id, advanced_to)`: the
//!   stream's identity and how far the engine confirmed the slot. It lets a later run
//!   tell a slot that was dropped, recreated or advanced by someone else, or a different
//!   server, from its own, and report it ([`SideError::Refused`] with code
//!   `pg.slot_lost`, `pg.slot_moved` or `pg.server_changed`) instead of skipping changes
//!   silently. The way out is an uninstall and an initial sync.
//!
//! Decisions:
//! - **The SQL interface, not the streaming replication protocol.** It runs on an
//!   ordinary connection of the well-kept blocking `postgres` crate (the
//!   replication-protocol support of the Rust drivers lives in forks), peeking never
//!   consumes anything, and confirming is one explicit `pg_replication_slot_advance`,
//!   which is exactly the acknowledge-after-durable contract. The price is that a peek
//!   decodes again what is not confirmed yet; the engine confirms every batch, so that
//!   is little. The decoder of the documented pgoutput format is [`pgoutput`].
//! - **Positions** are `(commit LSN, index of the change in its transaction)`: commit
//!   order, and a 1,000-row statement has 1,000 positions in one transaction. A
//!   transaction is confirmed (the slot moved past its commit) only when its last change
//!   is acknowledged; a partly acknowledged one is decoded again and its changes up to
//!   the checkpoint are skipped.
//! - **No echo.** The apply side ([`crate::apply::postgres`]) tags its session with a
//!   replication origin of the same name; pgoutput sends an Origin message in such
//!   transactions (PostgreSQL 15 has no `origin = none` option yet) and the capture
//!   drops them whole. Everyone else's transactions, replicated ones included, are
//!   captured.
//! - **Idle slots advance.** When a peek that decoded everything up to the WAL flush
//!   position found nothing for the engine (only the engine's own writes, or other
//!   databases' WAL) and everything handed out is acknowledged, the slot is moved to
//!   that position, so the server can recycle WAL.
//! - **Waiting** looks at `pg_current_wal_flush_lsn()` every
//!   [`PostgresOptions::poll_interval`] and peeks only when it moved; the changes found
//!   are kept for the next read.
//! - **Types** are read from pgoutput's text form by the column's type (see
//!   [`values`]): integers, `numeric` (exact, scale kept), floats, text types, `bool`,
//!   `timestamptz` (an instant, offset 0), `timestamp` (a local date-time), `date`,
//!   `uuid` (text), `json`/`jsonb`, `bytea`; anything else as its text.
//! - **Availability.** A connectivity fault is [`SideError::Unavailable`] and the next
//!   call connects again; the slot kept everything meanwhile.
//! - **Needs** `wal_level = logical`, a role with `REPLICATION` (or superuser), `CREATE`
//!   on the database and ownership of the tables, and a primary key on every captured
//!   table; each missing one is a [`SideError::Refused`] with its own code.

mod connection;
pub(crate) mod pgoutput;
pub(crate) mod values;

pub(crate) use connection::PgSession;
pub use connection::quote_ident;
pub use connection::{PostgresOptions, default_name};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use self::pgoutput::{Datum, Message, Relation, Tuple};
use self::values::{kind_of_oid, value_from_text};
use super::{
    CaptureInfo, CaptureStream, CaptureTable, CapturedChange, Position, RowImage, SchemaError,
    SideError, TableSchema,
};
use crate::change::{ChangeOp, Value};

/// Seconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const POSTGRES_EPOCH: u64 = 946_684_800;

/// How many changes a wait peeks ahead and keeps for the next read.
const WAIT_PEEK: usize = 5_000;

/// Least time between two advances of an idle slot.
const IDLE_ADVANCE_EVERY: Duration = Duration::from_millis(200);

const CREATE_STREAMS_TABLE: &str = "CREATE TABLE IF NOT EXISTS _dualwrite_streams (
    slot text PRIMARY KEY,
    stream_id text NOT NULL,
    system_id text NOT NULL,
    advanced_to pg_lsn)";

/// Capture of one PostgreSQL database. See the module docs for what it installs.
pub struct PostgresCapture {
    session: PgSession,
    tables: HashMap<String, CaptureTable>,
    stream_id: Option<String>,
    /// How far this capture confirmed the slot (also kept in `_dualwrite_streams`); a
    /// slot found further on was moved by someone else.
    advanced_to: u64,
    /// Transactions decoded: commit LSN -> (end LSN, index of its last change).
    transactions: BTreeMap<u64, (u64, Option<u32>)>,
    /// Positions handed out and not acknowledged yet.
    handed_out: VecDeque<Position>,
    acknowledged: Position,
    /// After a complete peek that found nothing for the engine: the WAL position up to
    /// which everything was decoded.
    idle_safe: Option<u64>,
    /// Changes a wait found, for the read after the same position.
    peeked: Option<(Position, Vec<CapturedChange>)>,
    last_flush: Option<u64>,
    last_idle_advance: Option<Instant>,
}

impl PostgresCapture {
    /// A capture of the database at `options.url`. Connects on first use; nothing is
    /// installed until [`install`](CaptureStream::install).
    pub fn open(options: PostgresOptions) -> PostgresCapture {
        PostgresCapture {
            session: PgSession::new(options),
            tables: HashMap::new(),
            stream_id: None,
            advanced_to: 0,
            transactions: BTreeMap::new(),
            handed_out: VecDeque::new(),
            acknowledged: Position::START,
            idle_safe: None,
            peeked: None,
            last_flush: None,
            last_idle_advance: None,
        }
    }

    fn name(&self) -> String {
        self.session.options.name.clone()
    }

    /// Bytes of WAL the slot keeps for the engine: the current WAL position minus the
    /// slot's confirmed position.
    pub fn slot_lag_bytes(&mut self) -> Result<u64, SideError> {
        let name = self.name();
        let lag: Option<i64> = self.session.run(|client| {
            client
                .query_opt(
                    "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::int8 \
                     FROM pg_replication_slots WHERE slot_name = $1",
                    &[&name],
                )
                .map(|row| row.and_then(|row| row.get(0)))
        })?;
        match lag {
            Some(lag) => Ok(u64::try_from(lag).unwrap_or(0)),
            None => Err(self.slot_lost()),
        }
    }

    fn slot_lost(&self) -> SideError {
        SideError::Refused {
            code: "pg.slot_lost",
            message: format!(
                "{}: the replication slot {} was dropped behind the engine's back: changes \
                 made since it was last read are lost to capture. Uninstall the capture and \
                 run an initial sync to bring the sides back in step",
                self.session.url(),
                self.name()
            ),
        }
    }

    fn slot_moved(&self, found: u64) -> SideError {
        SideError::Refused {
            code: "pg.slot_moved",
            message: format!(
                "{}: the replication slot {} is at {}, past {} where the engine confirmed \
                 it: it was advanced or recreated behind the engine's back and the changes \
                 in between were never read. Uninstall the capture and run an initial sync",
                self.session.url(),
                self.name(),
                format_lsn(found),
                format_lsn(self.advanced_to)
            ),
        }
    }

    /// Checks the slot and returns the WAL flush position, in one round trip.
    fn flush_and_check_slot(&mut self) -> Result<u64, SideError> {
        let name = self.name();
        let (flush, confirmed): (String, Option<String>) = self.session.run(|client| {
            client
                .query_one(
                    "SELECT pg_current_wal_flush_lsn()::text, (SELECT confirmed_flush_lsn::text \
                     FROM pg_replication_slots WHERE slot_name = $1)",
                    &[&name],
                )
                .map(|row| (row.get(0), row.get(1)))
        })?;
        let confirmed = confirmed.ok_or_else(|| self.slot_lost())?;
        let confirmed = parse_lsn(&confirmed).unwrap_or_default();
        if confirmed > self.advanced_to {
            return Err(self.slot_moved(confirmed));
        }
        Ok(parse_lsn(&flush).unwrap_or_default())
    }

    /// Decodes the slot's pending transactions; returns the changes after `after` (at
    /// least `want` of them when there are that many).
    fn peek(&mut self, after: Position, want: usize) -> Result<Vec<CapturedChange>, SideError> {
        if self.stream_id.is_none() {
            return Err(SideError::Unavailable {
                message: format!(
                    "{}: PostgreSQL capture is not installed",
                    self.session.url()
                ),
            });
        }
        let flush = self.flush_and_check_slot()?;
        let name = self.name();
        let mut messages = i32::try_from(want.saturating_add(256)).unwrap_or(i32::MAX);
        loop {
            let rows: Vec<Vec<u8>> = self.session.run(|client| {
                client
                    .query(
                        "SELECT data FROM pg_logical_slot_peek_binary_changes($1::text::name, NULL, \
                         $2, 'proto_version', '1', 'publication_names', $1::text)",
                        &[&name, &messages],
                    )
                    .map(|rows| rows.iter().map(|row| row.get(0)).collect())
            })?;
            let complete = rows.len() < messages as usize;
            let changes = self.decode_all(&rows, after)?;
            if changes.len() >= want || complete || messages == i32::MAX {
                self.idle_safe = (complete && changes.is_empty()).then_some(flush);
                if !changes.is_empty() {
                    self.handed_out
                        .extend(changes.iter().map(|change| change.position));
                    let mut positions: Vec<Position> = self.handed_out.drain(..).collect();
                    positions.sort();
                    positions.dedup();
                    self.handed_out = positions.into();
                }
                return Ok(changes);
            }
            messages = messages.saturating_mul(4);
        }
    }

    /// Turns peeked messages into the changes after `after`. A message that cannot be
    /// decoded ends the batch there ([`SideError::Unreadable`] when it is the first).
    fn decode_all(
        &mut self,
        rows: &[Vec<u8>],
        after: Position,
    ) -> Result<Vec<CapturedChange>, SideError> {
        let origin = self.name();
        let mut relations: HashMap<u32, (Relation, Option<Arc<TableSchema>>)> = HashMap::new();
        let mut changes = Vec::new();
        let mut transaction: Option<(u64, i64)> = None;
        let mut ours = false;
        let mut index: u32 = 0;
        for row in rows {
            let position = Position::new(transaction.map_or(0, |(lsn, _)| lsn), index);
            let message = match pgoutput::decode(row) {
                Ok(message) => message,
                Err(message) if changes.is_empty() => {
                    return Err(SideError::Unreadable { position, message });
                }
                Err(_) => break,
            };
            match message {
                Message::Begin {
                    final_lsn,
                    commit_time,
                } => {
                    transaction = Some((final_lsn, commit_time));
                    ours = false;
                    index = 0;
                }
                Message::Origin { name } => ours |= name == origin,
                Message::Commit {
                    commit_lsn,
                    end_lsn,
                } => {
                    let last = (!ours && index > 0).then(|| index - 1);
                    self.transactions.insert(commit_lsn, (end_lsn, last));
                    transaction = None;
                }
                Message::Relation(relation) => {
                    let schema = if self.tables.contains_key(&relation.name) {
                        match self.session.table(&relation.name) {
                            Ok(schema) => Some(schema),
                            Err(SideError::Schema(_)) => None,
                            Err(error) => return Err(error),
                        }
                    } else {
                        None
                    };
                    relations.insert(relation.id, (relation, schema));
                }
                Message::Insert { .. } | Message::Update { .. } | Message::Delete { .. }
                    if ours =>
                {
                    continue;
                }
                Message::Insert { relation, new } => {
                    let built =
                        self.change(&relations, relation, ChangeOp::Insert, None, Some(new));
                    index = self.push(built, transaction, index, after, &mut changes)?;
                }
                Message::Update { relation, old, new } => {
                    let built = self.change(&relations, relation, ChangeOp::Update, old, Some(new));
                    index = self.push(built, transaction, index, after, &mut changes)?;
                }
                Message::Delete { relation, old } => {
                    let built =
                        self.change(&relations, relation, ChangeOp::Delete, Some(old), None);
                    index = self.push(built, transaction, index, after, &mut changes)?;
                }
                Message::Other(_) => {}
            }
        }
        Ok(changes)
    }

    /// Places a built change at the next index of its transaction and keeps it when it
    /// is after `after`. Returns the next index.
    fn push(
        &self,
        built: Result<Option<CapturedChange>, String>,
        transaction: Option<(u64, i64)>,
        index: u32,
        after: Position,
        changes: &mut Vec<CapturedChange>,
    ) -> Result<u32, SideError> {
        let (lsn, commit_time) = transaction.unwrap_or_default();
        let position = Position::new(lsn, index);
        match built {
            Ok(Some(mut change)) => {
                if position > after {
                    change.position = position;
                    change.committed_at = u64::try_from(commit_time).ok().map(|micros| {
                        UNIX_EPOCH
                            + Duration::from_secs(POSTGRES_EPOCH)
                            + Duration::from_micros(micros)
                    });
                    changes.push(change);
                }
                Ok(index + 1)
            }
            Ok(None) => Ok(index),
            Err(message) if position > after => Err(SideError::Unreadable { position, message }),
            Err(_) => Ok(index + 1),
        }
    }

    /// The change a row message describes; `None` for a table not captured.
    fn change(
        &self,
        relations: &HashMap<u32, (Relation, Option<Arc<TableSchema>>)>,
        relation: u32,
        op: ChangeOp,
        old: Option<Tuple>,
        new: Option<Tuple>,
    ) -> Result<Option<CapturedChange>, String> {
        let (relation, schema) = relations
            .get(&relation)
            .ok_or_else(|| format!("a row of relation {relation} before its description"))?;
        let Some(captured) = self.tables.get(&relation.name) else {
            return Ok(None);
        };
        let before = old
            .map(|tuple| image(relation, schema.as_deref(), tuple, None))
            .transpose()?;
        let after = new
            .map(|tuple| image(relation, schema.as_deref(), tuple, before.as_ref()))
            .transpose()?;
        let source = match op {
            ChangeOp::Delete => before.as_ref(),
            ChangeOp::Insert | ChangeOp::Update => after.as_ref(),
        }
        .ok_or_else(|| format!("a {} without its row", op.as_str()))?;
        let key = captured
            .key_columns
            .iter()
            .map(|column| {
                let value = source.get(column).cloned().unwrap_or(Value::Null);
                (column.clone(), value)
            })
            .collect();
        Ok(Some(CapturedChange {
            position: Position::START,
            entity: relation.name.clone(),
            op,
            key,
            after,
            before,
            committed_at: None,
        }))
    }

    /// Moves the slot to `target` (never back), recording it first.
    fn advance(&mut self, target: u64) -> Result<(), SideError> {
        if target <= self.advanced_to {
            return Ok(());
        }
        let name = self.name();
        let lsn = format_lsn(target);
        // Recorded first: a crash in between leaves the record ahead of the slot, which
        // reads as the slot being behind (changes are redelivered), never as moved.
        self.session.run(|client| {
            client.execute(
                "UPDATE _dualwrite_streams SET advanced_to = $2::text::pg_lsn WHERE slot = $1",
                &[&name, &lsn],
            )
        })?;
        self.advanced_to = target;
        let advanced = self.session.run(|client| {
            client.query_opt(
                "SELECT pg_replication_slot_advance(slot_name, $2::text::pg_lsn) \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&name, &lsn],
            )
        })?;
        if advanced.is_none() {
            return Err(self.slot_lost());
        }
        self.transactions = self.transactions.split_off(&target);
        Ok(())
    }

    /// Makes the publication publish exactly `tables`.
    fn publish(&mut self, tables: &[CaptureTable]) -> Result<(), SideError> {
        let name = self.name();
        let list: Vec<String> = tables
            .iter()
            .map(|table| quote_ident(&table.table))
            .collect();
        let exists: bool = self.session.run(|client| {
            client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)",
                    &[&name],
                )
                .map(|row| row.get(0))
        })?;
        let publication = quote_ident(&name);
        let sql = match (exists, list.is_empty()) {
            (true, false) => format!(
                "ALTER PUBLICATION {publication} SET TABLE {}",
                list.join(", ")
            ),
            (false, false) => format!(
                "CREATE PUBLICATION {publication} FOR TABLE {} \
                 WITH (publish = 'insert, update, delete')",
                list.join(", ")
            ),
            (true, true) => format!(
                "DROP PUBLICATION {publication}; CREATE PUBLICATION {publication} \
                 WITH (publish = 'insert, update, delete')"
            ),
            (false, true) => format!(
                "CREATE PUBLICATION {publication} WITH (publish = 'insert, update, delete')"
            ),
        };
        self.session.run(|client| client.batch_execute(&sql))
    }

    /// Finds or creates the slot and its `_dualwrite_streams` row; returns the stream id
    /// and the slot's confirmed position.
    fn open_stream(&mut self) -> Result<(String, u64), SideError> {
        let name = self.name();
        let url = self.session.url().to_owned();
        self.session
            .run(|client| client.batch_execute(CREATE_STREAMS_TABLE))?;
        // pg_control_system() is for superusers and pg_monitor; without it the server's
        // identity is not checked.
        let system_id: String = self
            .session
            .run(|client| {
                client
                    .query_one(
                        "SELECT system_identifier::text FROM pg_control_system()",
                        &[],
                    )
                    .map(|row| row.get(0))
            })
            .unwrap_or_else(|_| "unknown".to_owned());
        let slot: Option<(Option<String>, String, bool)> = self.session.run(|client| {
            client
                .query_opt(
                    "SELECT confirmed_flush_lsn::text, plugin::text, \
                            database = current_database() \
                     FROM pg_replication_slots WHERE slot_name = $1",
                    &[&name],
                )
                .map(|row| row.map(|row| (row.get(0), row.get(1), row.get(2))))
        })?;
        let record: Option<(String, String, Option<String>)> = self.session.run(|client| {
            client
                .query_opt(
                    "SELECT stream_id, system_id, advanced_to::text FROM _dualwrite_streams \
                     WHERE slot = $1",
                    &[&name],
                )
                .map(|row| row.map(|row| (row.get(0), row.get(1), row.get(2))))
        })?;
        if let Some((_, plugin, same_database)) = &slot
            && (plugin != "pgoutput" || !same_database)
        {
            return Err(SideError::Refused {
                code: "pg.slot_foreign",
                message: format!(
                    "{url}: a replication slot named {name} exists for another database or \
                     plugin ({plugin}); give this side another name or drop that slot"
                ),
            });
        }
        let (stream_id, recorded_system, recorded_lsn) = match record {
            Some(record) => record,
            None if slot.is_some() => {
                return Err(SideError::Refused {
                    code: "pg.slot_foreign",
                    message: format!(
                        "{url}: the replication slot {name} exists but dualwrite did not make \
                         it here (no _dualwrite_streams row): drop it or give this side \
                         another name"
                    ),
                });
            }
            None => {
                // Recorded before the slot exists (advanced_to NULL = being created), so
                // a crash in between is finished by the next install.
                let stream_id: String = self.session.run(|client| {
                    client
                        .query_one(
                            "INSERT INTO _dualwrite_streams (slot, stream_id, system_id) \
                             VALUES ($1, gen_random_uuid()::text, $2) RETURNING stream_id",
                            &[&name, &system_id],
                        )
                        .map(|row| row.get(0))
                })?;
                (stream_id, system_id.clone(), None)
            }
        };
        if recorded_system != system_id && recorded_system != "unknown" && system_id != "unknown" {
            return Err(SideError::Refused {
                code: "pg.server_changed",
                message: format!(
                    "{url}: this is another server (system identifier {system_id}) than the \
                     one the capture was installed on ({recorded_system}), e.g. a restored \
                     backup: its slot cannot continue the stream. Uninstall the capture and \
                     run an initial sync"
                ),
            });
        }
        let confirmed = match (slot, recorded_lsn) {
            (Some((confirmed, _, _)), recorded) => {
                let confirmed = confirmed.as_deref().and_then(parse_lsn).unwrap_or_default();
                match recorded.as_deref().and_then(parse_lsn) {
                    Some(recorded) if confirmed > recorded => {
                        self.advanced_to = recorded;
                        return Err(self.slot_moved(confirmed));
                    }
                    Some(recorded) => self.advanced_to = recorded,
                    None => self.advanced_to = confirmed,
                }
                confirmed
            }
            (None, Some(_)) => return Err(self.slot_lost()),
            (None, None) => {
                let created: String = self.session.run(|client| {
                    client
                        .query_one(
                            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                            &[&name],
                        )
                        .map(|row| row.get(0))
                })?;
                let created_lsn = parse_lsn(&created).unwrap_or_default();
                self.advanced_to = created_lsn;
                tracing::info!(slot = %name, at = %created, "PostgreSQL replication slot created");
                created_lsn
            }
        };
        let lsn = format_lsn(self.advanced_to);
        self.session.run(|client| {
            client.execute(
                "UPDATE _dualwrite_streams SET advanced_to = $2::text::pg_lsn WHERE slot = $1",
                &[&name, &lsn],
            )
        })?;
        Ok((format!("{system_id}/{name}/{stream_id}"), confirmed))
    }
}

/// A row image from a tuple, in the relation's column order; an unchanged TOASTed value
/// is taken from `old`.
fn image(
    relation: &Relation,
    schema: Option<&TableSchema>,
    tuple: Tuple,
    old: Option<&RowImage>,
) -> Result<RowImage, String> {
    if tuple.len() != relation.columns.len() {
        return Err(format!(
            "a row of {} with {} values for {} columns",
            relation.name,
            tuple.len(),
            relation.columns.len()
        ));
    }
    Ok(relation
        .columns
        .iter()
        .zip(tuple)
        .map(|((column, type_oid), datum)| {
            let value = match datum {
                Datum::Null => Value::Null,
                Datum::Unchanged => old
                    .and_then(|old| old.get(column))
                    .cloned()
                    .unwrap_or(Value::Null),
                Datum::Text(text) => {
                    let kind = schema
                        .and_then(|schema| schema.column(column))
                        .map_or_else(|| kind_of_oid(*type_oid), |info| info.kind);
                    value_from_text(kind, &text)
                }
            };
            (column.clone(), value)
        })
        .collect())
}

/// `X/Y` (PostgreSQL's text form of an LSN) as a number.
pub(crate) fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    let high = u64::from_str_radix(high, 16).ok()?;
    let low = u64::from_str_radix(low, 16).ok()?;
    Some((high << 32) | low)
}

/// An LSN in PostgreSQL's text form.
pub(crate) fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

impl CaptureStream for PostgresCapture {
    fn install(&mut self, tables: &[CaptureTable]) -> Result<CaptureInfo, SideError> {
        let mut unique: Vec<CaptureTable> = Vec::new();
        for table in tables {
            match unique.iter().find(|known| known.table == table.table) {
                Some(known) if known.key_columns != table.key_columns => {
                    return Err(SchemaError::Unsupported {
                        table: table.table.clone(),
                        reason: format!(
                            "captured twice with different keys ({}) and ({})",
                            known.key_columns.join(", "),
                            table.key_columns.join(", ")
                        ),
                    }
                    .into());
                }
                Some(_) => {}
                None => unique.push(table.clone()),
            }
        }
        let url = self.session.url().to_owned();
        let wal_level: String = self.session.run(|client| {
            client
                .query_one("SHOW wal_level", &[])
                .map(|row| row.get(0))
        })?;
        if wal_level != "logical" {
            return Err(SideError::Refused {
                code: "pg.wal_level",
                message: format!(
                    "{url}: wal_level is {wal_level}; log-based capture needs wal_level = \
                     logical (ALTER SYSTEM SET wal_level = logical, then restart the server; \
                     scripts/servers-setup.sh does both)"
                ),
            });
        }
        self.session.forget_schemas();
        let mut schemas = Vec::new();
        for table in &unique {
            let schema = self.session.table(&table.table)?;
            if schema.primary_key.is_empty() {
                return Err(SideError::Refused {
                    code: "pg.no_primary_key",
                    message: format!(
                        "{url}: table {} has no primary key; the PostgreSQL connector needs \
                         one to identify rows (ALTER TABLE {} ADD PRIMARY KEY (...))",
                        table.table,
                        quote_ident(&table.table)
                    ),
                });
            }
            schema.check_key(&table.key_columns)?;
            let (_, identity) = self.session.relation(&table.table)?;
            if identity != 'f' {
                let sql = format!(
                    "ALTER TABLE {} REPLICA IDENTITY FULL",
                    quote_ident(&table.table)
                );
                self.session.run(|client| client.batch_execute(&sql))?;
            }
            schemas.push((*schema).clone());
        }
        self.publish(&unique)?;
        let (stream_id, confirmed) = self.open_stream()?;
        self.tables = unique
            .into_iter()
            .map(|table| (table.table.clone(), table))
            .collect();
        self.stream_id = Some(stream_id.clone());
        self.transactions.clear();
        self.handed_out.clear();
        self.peeked = None;
        self.idle_safe = None;
        tracing::info!(tables = self.tables.len(), %stream_id, "PostgreSQL capture installed");
        Ok(CaptureInfo {
            stream_id,
            head: Position::new(confirmed, 0),
            tables: schemas,
        })
    }

    fn read(&mut self, after: Position, limit: usize) -> Result<Vec<CapturedChange>, SideError> {
        let mut changes = match self.peeked.take() {
            Some((from, changes)) if from == after && !changes.is_empty() => changes,
            _ => self.peek(after, limit)?,
        };
        changes.truncate(limit);
        Ok(changes)
    }

    fn wait(&mut self, after: Position, timeout: Duration) -> Result<bool, SideError> {
        if let Some((from, changes)) = &self.peeked
            && *from == after
            && !changes.is_empty()
        {
            return Ok(true);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let flush: String = self.session.run(|client| {
                client
                    .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
                    .map(|row| row.get(0))
            })?;
            let flush = parse_lsn(&flush);
            if flush != self.last_flush {
                let changes = self.peek(after, WAIT_PEEK)?;
                // Only once the peek succeeded: a failed one is tried again.
                self.last_flush = flush;
                if !changes.is_empty() {
                    self.peeked = Some((after, changes));
                    return Ok(true);
                }
                let due = self
                    .last_idle_advance
                    .is_none_or(|at| at.elapsed() >= IDLE_ADVANCE_EVERY);
                if let Some(safe) = self.idle_safe
                    && due
                    && after <= self.acknowledged
                    && self.handed_out.is_empty()
                {
                    self.last_idle_advance = Some(Instant::now());
                    self.advance(safe)?;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            std::thread::sleep(self.session.options.poll_interval.min(deadline - now));
        }
    }

    fn head(&mut self) -> Result<Position, SideError> {
        Ok(self.handed_out.back().copied().unwrap_or(self.acknowledged))
    }

    fn acknowledge(&mut self, through: Position) -> Result<u64, SideError> {
        if self.stream_id.is_none() {
            return Ok(0);
        }
        let mut target = match self.transactions.get(&through.sequence) {
            Some((end, Some(last))) if through.index >= *last => *end,
            _ => through.sequence,
        };
        let mut dropped = 0;
        while self
            .handed_out
            .front()
            .is_some_and(|position| *position <= through)
        {
            self.handed_out.pop_front();
            dropped += 1;
        }
        if self.handed_out.is_empty()
            && let Some(safe) = self.idle_safe
        {
            target = target.max(safe);
        }
        self.acknowledged = self.acknowledged.max(through);
        self.peeked = None;
        self.advance(target)?;
        Ok(dropped)
    }

    fn uninstall(&mut self) -> Result<(), SideError> {
        let name = self.name();
        let publication = quote_ident(&name);
        self.session.run(|client| {
            client.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = $1",
                &[&name],
            )?;
            client.batch_execute(&format!(
                "DROP PUBLICATION IF EXISTS {publication}; {CREATE_STREAMS_TABLE}"
            ))?;
            client.execute("DELETE FROM _dualwrite_streams WHERE slot = $1", &[&name])?;
            Ok(())
        })?;
        self.tables.clear();
        self.stream_id = None;
        self.transactions.clear();
        self.handed_out.clear();
        self.peeked = None;
        self.advanced_to = 0;
        tracing::info!(slot = %name, "PostgreSQL capture uninstalled");
        Ok(())
    }
}

impl std::fmt::Debug for PostgresCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCapture")
            .field("url", &self.session.url())
            .field("slot", &self.session.options.name)
            .finish_non_exhaustive()
    }
}

/// Checks, without changing anything, what log-based capture needs of the server:
/// `wal_level = logical` and a role allowed to replicate. Each fault is a
/// [`SideError::Refused`] with its code (`pg.wal_level`, `pg.missing_privilege`) or the
/// connection's own (`pg.bad_credentials`, ...), or unavailable.
pub fn check_capture_prerequisites(options: &PostgresOptions) -> Result<(), SideError> {
    let mut session = PgSession::new(options.clone());
    let url = session.url().to_owned();
    let wal_level: String = session.run(|client| {
        client
            .query_one("SHOW wal_level", &[])
            .map(|row| row.get(0))
    })?;
    if wal_level != "logical" {
        return Err(SideError::Refused {
            code: "pg.wal_level",
            message: format!(
                "{url}: wal_level is {wal_level}; log-based capture needs wal_level = logical \
                 (ALTER SYSTEM SET wal_level = logical, then restart the server; \
                 scripts/servers-setup.sh does both)"
            ),
        });
    }
    let may_replicate: bool = session.run(|client| {
        client
            .query_one(
                "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .map(|row| row.get(0))
    })?;
    if !may_replicate {
        return Err(SideError::Refused {
            code: "pg.missing_privilege",
            message: format!(
                "{url}: the role may not replicate; log-based capture needs a role with \
                 REPLICATION (ALTER ROLE ... REPLICATION) or a superuser"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_round_trip_through_their_text_form() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("nope"), None);
        assert_eq!(
            default_name("erp", "ERP side-1"),
            "dualwrite_erp_erp_side_1"
        );
        let long = default_name(&"d".repeat(80), "erp");
        assert_eq!(long.len(), 63);
        assert_ne!(long, default_name(&"d".repeat(81), "erp"));
    }
}
