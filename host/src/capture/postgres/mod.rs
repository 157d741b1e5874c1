//! The PostgreSQL connector's capture: logical decoding of the side's write-ahead log
//! through a replication slot with the built-in `pgoutput` plugin, streamed over a
//! replication connection (`START_REPLICATION`, see [`stream`]) and confirmed through
//! standby status updates only when the engine acknowledges. No triggers, no polling of
//! the tables.
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
//! - **The streaming replication protocol.** A reader thread holds one walsender
//!   connection (the `pgwire-replication` crate) and hands decoded messages to the
//!   capture through a bounded channel; the walsender decodes each transaction once,
//!   as it commits, and `wait` returns as soon as it arrives. Table introspection and
//!   the bookkeeping stay on an ordinary connection of the blocking `postgres` crate.
//!   The decoder of the documented pgoutput format is [`pgoutput`]. A stream is
//!   started at the position the slot may be confirmed to, so a restart (of the
//!   stream or the engine) redelivers what was not acknowledged, and what is at or
//!   before the checkpoint is skipped.
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
//! - **No decision from a stale read.** The walsender sends a transaction once its
//!   commit record is flushed, which can be before other sessions see it (the backend
//!   waits for a synchronous standby, or has not left the proc array yet), and the
//!   engine decides from a fresh read of each captured row. So before the engine reads,
//!   [`PostgresCapture::await_visible`] proves every transaction of the batch visible:
//!   its xid (from pgoutput's Begin, widened to 64 bits relative to the snapshot) is
//!   below the `xmin` of `pg_current_snapshot()` on the capture's own session, or below
//!   its `xmax` and not in progress. It then left the proc array before that snapshot,
//!   so every later snapshot of every session sees it too (see `visibility.rs`). Polled
//!   at once, then from 1 ms doubling to 50 ms; past the engine's limit the side counts
//!   as unavailable and the batch is read again later, nothing acknowledged.
//! - **Confirming.** An acknowledge records the new position in
//!   `_dualwrite_streams` (a committed `UPDATE`, at most every 200 ms) and only then
//!   lets the stream report it to the server, so the slot never moves past what the
//!   engine made durable, and a slot found further on than the record was moved by
//!   someone else.
//! - **Idle slots advance.** When everything handed out is acknowledged, the slot is
//!   confirmed past transactions that held nothing for the engine (the engine's own
//!   writes), and every ten seconds to the server's last heartbeat, so the server can
//!   recycle WAL (each record is itself a little WAL, hence the slower pace).
//! - **Types** are read from pgoutput's text form by the column's type (see
//!   [`values`]): integers, `numeric` (exact, scale kept), floats, text types, `bool`,
//!   `timestamptz` (an instant, offset 0), `timestamp` (a local date-time), `date`,
//!   `uuid` (text), `json`/`jsonb`, `bytea`; anything else as its text.
//! - **Availability.** A connectivity fault is [`SideError::Unavailable`] and the next
//!   call connects again; the slot kept everything meanwhile.
//! - **Needs** PostgreSQL 13 or later (`pg_current_snapshot`, `gen_random_uuid`), and
//!   `wal_level = logical`, a role with `REPLICATION` (or superuser), `CREATE` on the
//!   database and ownership of the tables, and a primary key on every captured table;
//!   each of these missing is a [`SideError::Refused`] with its own code.

mod connection;
pub(crate) mod pgoutput;
mod stream;
pub(crate) mod values;
mod visibility;

pub(crate) use connection::PgSession;
pub use connection::quote_ident;
pub use connection::{PostgresOptions, default_name};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use self::pgoutput::{Datum, Message, Relation, Tuple};
use self::stream::{Delivery, Event, ReplicationStream};
use self::values::{kind_of_oid, value_from_text};
use self::visibility::Snapshot;
use super::{
    CaptureInfo, CaptureStream, CaptureTable, CapturedChange, Position, RowImage, SchemaError,
    SideError, TableSchema,
};
use crate::change::{ChangeOp, Value};

/// Seconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
/// Seconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const POSTGRES_EPOCH: u64 = 946_684_800;

/// Least time between two records of how far the slot may be confirmed (each is a
/// committed `UPDATE` of `_dualwrite_streams` on the side).
const ADVANCE_EVERY: Duration = Duration::from_millis(200);

/// Least time between two confirmations of an idle slot that only heartbeats moved:
/// recording the move is itself WAL, which the next heartbeat reports.
const HEARTBEAT_ADVANCE_EVERY: Duration = Duration::from_secs(10);

/// How long a read waits at most for the rest of an open transaction, or for what was
/// committed before the stream started.
const READ_CATCH_UP: Duration = Duration::from_secs(2);

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
    /// How far this capture let the slot be confirmed (also kept in
    /// `_dualwrite_streams`); a slot found further on was moved by someone else.
    advanced_to: u64,
    /// Where the slot may be confirmed once [`ADVANCE_EVERY`] has passed.
    advance_pending: u64,
    last_advance: Option<Instant>,
    /// Transactions decoded: commit LSN -> (end LSN, index of its last change).
    transactions: BTreeMap<u64, (u64, Option<u32>)>,
    acknowledged: Position,
    /// The replication stream, while one is up.
    stream: Option<ReplicationStream>,
    /// What the stream said so far that later messages build on.
    decoder: Decoder,
    /// Changes decoded after `floor` and not acknowledged, in order; one that cannot be
    /// read is kept as why.
    buffer: super::ChangeBuffer,
    /// Transactions with changes in `buffer` not yet proven visible to other sessions:
    /// (commit LSN, 32-bit xid), in stream order (see [`visibility`]).
    unproven: VecDeque<(u64, u32)>,
    /// The stream hands out the changes after this position.
    floor: Position,
    /// The end of the last transaction that held nothing for the engine (only the
    /// engine's own writes, or nothing after the floor), when no change came after it.
    idle_commit: Option<u64>,
    /// The last heartbeat's WAL position, when no transaction was open.
    idle_heartbeat: Option<u64>,
    last_heartbeat_advance: Option<Instant>,
    /// How far the stream has gone through the WAL: the end of the last transaction,
    /// or the last heartbeat between transactions.
    streamed_through: u64,
    /// The server's WAL flush position when the stream started: a read waits (briefly)
    /// until the stream has gone that far, so it sees what was committed before.
    catch_up_to: Option<u64>,
}

/// The decoding state of one stream: relations are described once per stream.
#[derive(Default)]
struct Decoder {
    relations: HashMap<u32, (Relation, Option<Arc<TableSchema>>)>,
    /// The open transaction: (commit LSN, commit time).
    transaction: Option<(u64, i64)>,
    /// The open transaction's id (32 bits).
    xid: u32,
    /// Whether the open transaction is the engine's own write.
    ours: bool,
    /// The index the open transaction's next change gets.
    index: u32,
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
            advance_pending: 0,
            last_advance: None,
            transactions: BTreeMap::new(),
            acknowledged: Position::START,
            stream: None,
            decoder: Decoder::default(),
            buffer: VecDeque::new(),
            unproven: VecDeque::new(),
            floor: Position::START,
            idle_commit: None,
            idle_heartbeat: None,
            last_heartbeat_advance: None,
            streamed_through: 0,
            catch_up_to: None,
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

    /// Checks that the slot is still the one this capture confirmed (not dropped, not
    /// moved past where the engine let it be confirmed); returns the server's WAL flush
    /// position.
    fn check_slot(&mut self) -> Result<u64, SideError> {
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

    /// Makes sure a stream hands out every change after `after`, starting one if needed
    /// (from where the slot is confirmed; what is at or before `after` is skipped).
    fn ensure_stream(&mut self, after: Position) -> Result<(), SideError> {
        if self.stream.is_some() && after >= self.floor {
            return Ok(());
        }
        if self.stream_id.is_none() {
            return Err(SideError::Unavailable {
                message: format!(
                    "{}: PostgreSQL capture is not installed",
                    self.session.url()
                ),
            });
        }
        self.stop_stream();
        let flush = self.check_slot()?;
        self.stream = Some(ReplicationStream::start(
            &self.session.options,
            self.advanced_to,
        )?);
        self.floor = after;
        self.streamed_through = self.advanced_to;
        self.catch_up_to = Some(flush);
        Ok(())
    }

    /// Stops the stream and forgets what it handed out and did not acknowledge.
    fn stop_stream(&mut self) {
        self.stream = None;
        self.catch_up_to = None;
        self.buffer.clear();
        self.unproven.clear();
        self.decoder = Decoder::default();
        self.idle_commit = None;
        self.idle_heartbeat = None;
    }

    /// Takes one delivery from the stream, waiting up to `timeout`; `false` when none
    /// came.
    fn pump(&mut self, timeout: Duration) -> Result<bool, SideError> {
        let Some(stream) = &self.stream else {
            return Ok(false);
        };
        match stream.next(timeout) {
            None => Ok(false),
            Some(Delivery::Events(events)) => {
                for event in events {
                    if let Err(error) = self.take(event) {
                        // The rest of this delivery is lost: start over from the slot.
                        self.stop_stream();
                        return Err(error);
                    }
                }
                Ok(true)
            }
            Some(Delivery::Failed(error)) => {
                self.stop_stream();
                Err(error)
            }
        }
    }

    /// Follows one event of the stream.
    fn take(&mut self, event: Event) -> Result<(), SideError> {
        match event {
            Event::Begin {
                final_lsn,
                commit_time,
                xid,
            } => {
                self.decoder.transaction = Some((final_lsn, commit_time));
                self.decoder.xid = xid;
                self.decoder.ours = false;
                self.decoder.index = 0;
            }
            Event::Commit {
                commit_lsn,
                end_lsn,
            } => {
                let decoder = &mut self.decoder;
                let last = (!decoder.ours && decoder.index > 0).then(|| decoder.index - 1);
                self.transactions.insert(commit_lsn, (end_lsn, last));
                self.streamed_through = self.streamed_through.max(end_lsn);
                let nothing_new = self
                    .buffer
                    .back()
                    .is_none_or(|(position, _)| position.sequence != commit_lsn);
                if nothing_new {
                    self.idle_commit = Some(end_lsn);
                }
                self.decoder.transaction = None;
            }
            Event::KeepAlive { wal_end } => {
                if self.decoder.transaction.is_none() {
                    self.idle_heartbeat = Some(wal_end);
                    self.streamed_through = self.streamed_through.max(wal_end);
                }
            }
            Event::Undecodable(message) => {
                let position = self.next_position();
                if position > self.floor {
                    self.hand_out(position, Err(message));
                }
            }
            Event::Message(message) => self.take_message(message)?,
        }
        Ok(())
    }

    /// The position the open transaction's next change gets.
    fn next_position(&self) -> Position {
        let lsn = self.decoder.transaction.map_or(0, |(lsn, _)| lsn);
        Position::new(lsn, self.decoder.index)
    }

    /// Follows one pgoutput message inside a transaction.
    fn take_message(&mut self, message: Message) -> Result<(), SideError> {
        let (op, relation, old, new) = match message {
            Message::Origin { name } => {
                self.decoder.ours |= name == self.session.options.name;
                return Ok(());
            }
            Message::Relation(relation) => {
                if self.decoder.relations.contains_key(&relation.id) {
                    // Described again: the table changed.
                    self.session.forget_schemas();
                }
                let schema = if self.tables.contains_key(&relation.name) {
                    match self.session.table(&relation.name) {
                        Ok(schema) => Some(schema),
                        Err(SideError::Schema(_)) => None,
                        Err(error) => return Err(error),
                    }
                } else {
                    None
                };
                self.decoder
                    .relations
                    .insert(relation.id, (relation, schema));
                return Ok(());
            }
            Message::Insert { .. } | Message::Update { .. } | Message::Delete { .. }
                if self.decoder.ours =>
            {
                return Ok(());
            }
            Message::Insert { relation, new } => (ChangeOp::Insert, relation, None, Some(new)),
            Message::Update { relation, old, new } => (ChangeOp::Update, relation, old, Some(new)),
            Message::Delete { relation, old } => (ChangeOp::Delete, relation, Some(old), None),
            Message::Begin { .. } | Message::Commit { .. } | Message::Other(_) => return Ok(()),
        };
        let built = self.change(relation, op, old, new);
        let position = self.next_position();
        let commit_time = self.decoder.transaction.map_or(0, |(_, time)| time);
        let entry = match built {
            Ok(None) => return Ok(()),
            Ok(Some(mut change)) => {
                change.position = position;
                change.committed_at = u64::try_from(commit_time).ok().map(|micros| {
                    UNIX_EPOCH + Duration::from_secs(POSTGRES_EPOCH) + Duration::from_micros(micros)
                });
                Ok(change)
            }
            Err(message) => Err(message),
        };
        self.decoder.index += 1;
        if position > self.floor {
            self.hand_out(position, entry);
        }
        Ok(())
    }

    /// Buffers a change of the open transaction for the engine; the transaction is then
    /// to be proven visible before the engine reads its rows.
    fn hand_out(&mut self, position: Position, entry: Result<CapturedChange, String>) {
        if self
            .unproven
            .back()
            .is_none_or(|(lsn, _)| *lsn != position.sequence)
        {
            self.unproven
                .push_back((position.sequence, self.decoder.xid));
        }
        self.buffer.push_back((position, entry));
        self.idle_commit = None;
    }

    /// Where the slot may be confirmed when nothing handed out is waiting for an
    /// acknowledgement: past transactions that held nothing for the engine, and (now
    /// and then) to the last heartbeat.
    fn idle_target(&mut self) -> Option<u64> {
        if !self.buffer.is_empty() || self.decoder.transaction.is_some() {
            return None;
        }
        let heartbeat = self.idle_heartbeat.filter(|_| {
            self.last_heartbeat_advance
                .is_none_or(|at| at.elapsed() >= HEARTBEAT_ADVANCE_EVERY)
        });
        if heartbeat.is_some_and(|lsn| lsn > self.advance_pending) {
            self.last_heartbeat_advance = Some(Instant::now());
        }
        match (self.idle_commit, heartbeat) {
            (Some(commit), Some(heartbeat)) => Some(commit.max(heartbeat)),
            (one, other) => one.or(other),
        }
    }

    /// Lets the slot be confirmed up to `target` (never back): recorded in
    /// `_dualwrite_streams` first, then reported to the server by the stream. Done at
    /// most every [`ADVANCE_EVERY`]; a later call (or [`settle`](Self::settle)) catches
    /// up.
    fn advance(&mut self, target: u64) -> Result<(), SideError> {
        self.advance_pending = self.advance_pending.max(target);
        self.settle()
    }

    /// Records and reports a pending advance once [`ADVANCE_EVERY`] has passed.
    fn settle(&mut self) -> Result<(), SideError> {
        let target = self.advance_pending;
        if target <= self.advanced_to
            || self
                .last_advance
                .is_some_and(|at| at.elapsed() < ADVANCE_EVERY)
        {
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
        self.last_advance = Some(Instant::now());
        if let Some(stream) = &self.stream {
            stream.confirm(target);
        }
        self.transactions = self.transactions.split_off(&target);
        Ok(())
    }

    /// The change a row message describes; `None` for a table not captured.
    fn change(
        &self,
        relation: u32,
        op: ChangeOp,
        old: Option<Tuple>,
        new: Option<Tuple>,
    ) -> Result<Option<CapturedChange>, String> {
        let (relation, schema) = self
            .decoder
            .relations
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
        // A stream holds the slot; the capture starts a new one after the install.
        self.stop_stream();
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
        self.advance_pending = self.advanced_to;
        tracing::info!(tables = self.tables.len(), %stream_id, "PostgreSQL capture installed");
        Ok(CaptureInfo {
            stream_id,
            head: Position::new(confirmed, 0),
            tables: schemas,
        })
    }

    fn read(&mut self, after: Position, limit: usize) -> Result<Vec<CapturedChange>, SideError> {
        self.ensure_stream(after)?;
        let deadline = Instant::now() + READ_CATCH_UP;
        while self
            .buffer
            .iter()
            .rev()
            .take_while(|(position, _)| *position > after)
            .count()
            < limit
        {
            // The rest of an open transaction, and what was committed before the stream
            // started, are on their way: wait for them (briefly) rather than hand out a
            // part.
            if self
                .catch_up_to
                .is_some_and(|lsn| self.streamed_through >= lsn)
            {
                self.catch_up_to = None;
            }
            let behind = self.decoder.transaction.is_some() || self.catch_up_to.is_some();
            let timeout = if behind {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            if !self.pump(timeout)? {
                break;
            }
        }
        super::buffered(&self.buffer, after, limit)
    }

    /// Proves with `pg_current_snapshot()` that the transactions of the changes handed
    /// out through `through` have left the proc array (see `visibility.rs`).
    fn await_visible(&mut self, through: Position, limit: Duration) -> Result<(), SideError> {
        let url = self.session.url().to_owned();
        super::poll_visible(&url, limit, || {
            let waiting = |unproven: &VecDeque<(u64, u32)>| {
                unproven
                    .iter()
                    .find(|(lsn, _)| *lsn <= through.sequence)
                    .map(|(lsn, xid)| {
                        format!("transaction {xid} (committed at {})", format_lsn(*lsn))
                    })
            };
            if waiting(&self.unproven).is_none() {
                return Ok(None);
            }
            let text: String = self.session.run(|client| {
                client
                    .query_one("SELECT pg_current_snapshot()::text", &[])
                    .map(|row| row.get(0))
            })?;
            let snapshot = Snapshot::parse(&text).ok_or_else(|| SideError::Refused {
                code: "pg.snapshot_unreadable",
                message: format!(
                    "{url}: pg_current_snapshot() returned {text:?}, not xmin:xmax:xip,...; \
                     the capture cannot prove that a change it read is visible"
                ),
            })?;
            self.unproven.retain(|(_, xid)| !snapshot.sees(*xid));
            Ok(waiting(&self.unproven))
        })
    }

    fn wait(&mut self, after: Position, timeout: Duration) -> Result<bool, SideError> {
        self.ensure_stream(after)?;
        let deadline = Instant::now() + timeout;
        loop {
            if super::has_after(&self.buffer, after) {
                return Ok(true);
            }
            if after >= self.acknowledged
                && let Some(target) = self.idle_target()
            {
                self.advance(target)?;
            } else {
                self.settle()?;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            // Wakes in time for a pending advance.
            let slice = if self.advance_pending > self.advanced_to {
                remaining.min(ADVANCE_EVERY)
            } else {
                remaining
            };
            let got = self.pump(slice)?;
            if !got && Instant::now() >= deadline {
                return Ok(super::has_after(&self.buffer, after));
            }
        }
    }

    fn head(&mut self) -> Result<Position, SideError> {
        Ok(self
            .buffer
            .back()
            .map_or(self.acknowledged, |(position, _)| {
                (*position).max(self.acknowledged)
            }))
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
            .buffer
            .front()
            .is_some_and(|(position, _)| *position <= through)
        {
            self.buffer.pop_front();
            dropped += 1;
        }
        self.acknowledged = self.acknowledged.max(through);
        self.floor = self.floor.max(through);
        // Nothing of these is handed out again (a transaction acknowledged in part may
        // be: it stays).
        while self
            .unproven
            .front()
            .is_some_and(|(lsn, _)| *lsn < through.sequence)
        {
            self.unproven.pop_front();
        }
        if let Some(idle) = self.idle_target() {
            target = target.max(idle);
        }
        self.advance(target)?;
        Ok(dropped)
    }

    fn retained_bytes(&mut self) -> Result<Option<u64>, SideError> {
        if self.stream_id.is_none() {
            return Ok(None);
        }
        self.slot_lag_bytes().map(Some)
    }

    fn uninstall(&mut self) -> Result<(), SideError> {
        let name = self.name();
        let publication = quote_ident(&name);
        self.stop_stream();
        // The walsender of a stream just stopped may hold the slot a moment longer.
        let mut tries = 0;
        loop {
            let dropped = self.session.run(|client| {
                client.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                     WHERE slot_name = $1",
                    &[&name],
                )
            });
            match dropped {
                Ok(_) => break,
                Err(error) if !error.is_unavailable() && tries < 50 => {
                    tracing::debug!(%error, "the slot is still held; trying again");
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(error) => return Err(error),
            }
        }
        self.session.run(|client| {
            client.batch_execute(&format!(
                "DROP PUBLICATION IF EXISTS {publication}; {CREATE_STREAMS_TABLE}"
            ))?;
            client.execute("DELETE FROM _dualwrite_streams WHERE slot = $1", &[&name])?;
            Ok(())
        })?;
        self.tables.clear();
        self.stream_id = None;
        self.transactions.clear();
        self.advanced_to = 0;
        self.advance_pending = 0;
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
