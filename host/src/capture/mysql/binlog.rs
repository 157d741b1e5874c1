//! The binlog reader: one replication connection (`COM_BINLOG_DUMP` from a file and
//! position), opened by the caller (so a server that is down or refuses is an error of
//! that call), then read by a thread that decodes row events of the side's database and
//! hands them to the capture through a bounded channel, so the engine's blocking calls
//! can wait with a timeout and a slow engine holds the server back instead of filling
//! memory.
//!
//! Positions: a transaction's `sequence` is where it starts in the binary log, as
//! `(file number << 32) | offset` (file numbers and offsets only grow, so this is
//! commit order), and `index` counts the rows of the side's database within it. A
//! restart inside a transaction asks the server for the log from the transaction's
//! start and skips the rows up to the checkpoint.
//!
//! A transaction whose first row is the engine's marker row (see
//! [`crate::apply::mysql`]) is the engine's own write: its rows are dropped. The server
//! keeps the stream alive with a heartbeat every [`MysqlOptions::heartbeat`]; a stream
//! silent for three heartbeats counts as broken.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

use mysql::binlog::events::{EventData, RowsEventData};
use mysql::binlog::value::BinlogValue;
use mysql::prelude::Queryable;
use mysql::{BinlogRequest, BinlogStream, Conn, OptsBuilder, Value as MyValue};

use super::connection::{MysqlOptions, classify, connect_opts};
use super::values::{Family, family_of_type};
use crate::capture::{Position, SideError};
use crate::change::ChangeOp;

/// The table whose row marks a transaction as the engine's own.
pub(crate) const MARKER_TABLE: &str = "_dualwrite_writes";

/// Rows handed over in one message at most.
const CHUNK: usize = 1_000;

/// Messages the channel holds before the reader waits for the capture.
const CHANNEL_DEPTH: usize = 16;

/// One row event of a captured table, values by column position.
#[derive(Debug, Clone)]
pub(crate) struct RawChange {
    pub(crate) position: Position,
    pub(crate) table: String,
    pub(crate) op: ChangeOp,
    pub(crate) before: Option<Vec<MyValue>>,
    pub(crate) after: Option<Vec<MyValue>>,
    /// The column names, in value order, when the log carries them
    /// (`binlog_row_metadata = FULL`); otherwise values are by position in the table.
    pub(crate) columns: Option<Arc<[String]>>,
    /// The logged column types, in value order, when the log names no columns.
    pub(crate) families: Option<Arc<[Family]>>,
    /// Seconds since the epoch of the transaction's start.
    pub(crate) committed_at: u32,
}

/// What the reader hands to the capture.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// Rows of captured tables, in log order.
    Rows(Vec<RawChange>),
    /// A transaction ended; the next one starts at this sequence or later. Every row
    /// before it has been delivered.
    Boundary(u64),
    /// A statement changed a table's definition (cached schemas are stale).
    SchemaChanged,
    /// A row event that cannot be decoded, at this position.
    Unreadable(Position, String),
    /// The stream broke; the reader has stopped.
    Failed(SideError),
}

/// Where a binlog dump starts and what it keeps.
#[derive(Debug, Clone)]
pub(crate) struct ReaderStart {
    /// The log's file name without its number (`mysql-bin`).
    pub(crate) basename: String,
    /// The sequence to ask the server for (a transaction start or boundary).
    pub(crate) from: u64,
    /// Rows at or before this position are skipped.
    pub(crate) skip_through: Position,
    /// The side's database.
    pub(crate) database: String,
    /// The captured tables.
    pub(crate) tables: HashSet<String>,
    /// The marker row's name for this side.
    pub(crate) marker: String,
}

/// A running reader; dropping it stops the thread (within one heartbeat).
pub(crate) struct BinlogReader {
    receiver: Receiver<Delivery>,
    stop: Arc<AtomicBool>,
}

impl Drop for BinlogReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The sequence of `offset` in binlog file number `file`.
pub(crate) fn sequence(file: u64, offset: u64) -> u64 {
    (file << 32) | (offset & 0xFFFF_FFFF)
}

/// The file name and offset of `sequence`.
pub(crate) fn file_and_offset(basename: &str, sequence: u64) -> (String, u64) {
    (
        format!("{basename}.{:06}", sequence >> 32),
        sequence & 0xFFFF_FFFF,
    )
}

/// `mysql-bin.000042` -> (`mysql-bin`, 42).
pub(crate) fn split_file_name(name: &str) -> Option<(String, u64)> {
    let (base, number) = name.rsplit_once('.')?;
    Some((base.to_owned(), number.parse().ok()?))
}

/// The sequence of a binlog position given as file name and offset (MariaDB's
/// `Binlog_snapshot_file` and `Binlog_snapshot_position`); `None` when the name has no
/// number or the offset is not one.
pub(crate) fn sequence_of(file: &str, offset: &str) -> Option<u64> {
    let (_, number) = split_file_name(file)?;
    let offset: u64 = offset.trim().parse().ok()?;
    (offset <= 0xFFFF_FFFF).then(|| sequence(number, offset))
}

impl BinlogReader {
    /// Starts a reader thread for `start`.
    pub(crate) fn spawn(options: &MysqlOptions, start: ReaderStart) -> Result<Self, SideError> {
        let opts = OptsBuilder::from_opts(connect_opts(options)?)
            .read_timeout(Some(options.heartbeat * 3 + Duration::from_secs(1)));
        let url = options.url.clone();
        // Connected here, so a server that is down or refuses keeps the side offline
        // (the error comes back from this call) instead of failing later.
        let stream = request_log(opts.into(), options.heartbeat, &start)
            .map_err(|error| classify(&url, &error))?;
        let (sender, receiver) = sync_channel(CHANNEL_DEPTH);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        std::thread::Builder::new()
            .name("dualwrite-binlog".to_owned())
            .spawn(move || {
                let failure = read_log(stream, &start, &sender, &thread_stop)
                    .err()
                    .map(|error| match error {
                        Stop::Failed(error) => classify(&url, &error),
                        Stop::Side(error) => error,
                        Stop::Stopped => SideError::Unavailable {
                            message: format!("{url}: the binlog stream was stopped"),
                        },
                    });
                tracing::debug!(?failure, "binlog reader stopped");
                if let Some(error) = failure {
                    let _ = sender.send(Delivery::Failed(error));
                }
            })
            .map_err(|error| SideError::Unavailable {
                message: format!("cannot start the binlog reader thread: {error}"),
            })?;
        Ok(BinlogReader { receiver, stop })
    }

    /// The next delivery, waiting up to `timeout`; `None` when nothing came.
    pub(crate) fn next(&self, timeout: Duration) -> Option<Delivery> {
        crate::capture::receive(&self.receiver, timeout).unwrap_or_else(|()| {
            Some(Delivery::Failed(SideError::Unavailable {
                message: "the binlog reader ended".to_owned(),
            }))
        })
    }
}

/// Why the reader stopped.
enum Stop {
    Failed(mysql::Error),
    Side(SideError),
    Stopped,
}

impl From<mysql::Error> for Stop {
    fn from(error: mysql::Error) -> Self {
        Stop::Failed(error)
    }
}

/// A transaction being read.
struct Transaction {
    start: u64,
    committed_at: u32,
    index: u32,
    ours: bool,
    /// Whether any row of the side's database was seen (the marker must be first).
    seen_rows: bool,
}

/// Connects and asks the server for its log from `start`, with heartbeats.
fn request_log(
    opts: mysql::Opts,
    heartbeat: Duration,
    start: &ReaderStart,
) -> Result<BinlogStream, mysql::Error> {
    let mut conn = Conn::new(opts)?;
    let nanos = u64::try_from(heartbeat.as_nanos()).unwrap_or(u64::MAX);
    conn.query_drop(format!("SET @master_heartbeat_period = {nanos}"))?;
    let (file, offset) = file_and_offset(&start.basename, start.from);
    let request = BinlogRequest::new(replica_id())
        .with_filename(file.into_bytes())
        .with_pos(offset);
    conn.get_binlog_stream(request)
}

fn read_log(
    mut stream: BinlogStream,
    start: &ReaderStart,
    sender: &SyncSender<Delivery>,
    stop: &AtomicBool,
) -> Result<(), Stop> {
    let send = |delivery: Delivery| sender.send(delivery).map_err(|_| Stop::Stopped);

    let mut file_number = start.from >> 32;
    let mut transaction: Option<Transaction> = None;
    let mut pending_gtid: Option<u64> = None;
    let mut rows: Vec<RawChange> = Vec::new();
    while let Some(event) = stream.next() {
        if stop.load(Ordering::Relaxed) {
            return Err(Stop::Stopped);
        }
        let event = event?;
        let header = event.header();
        let event_start =
            u64::from(header.log_pos()).saturating_sub(u64::from(header.event_size()));
        let data = match event.read_data() {
            Ok(Some(data)) => data,
            Ok(None) => continue,
            Err(error) => {
                let position = Position::new(
                    transaction
                        .as_ref()
                        .map_or(sequence(file_number, event_start), |t| t.start),
                    transaction.as_ref().map_or(0, |t| t.index),
                );
                send(Delivery::Unreadable(position, error.to_string()))?;
                continue;
            }
        };
        match data {
            EventData::RotateEvent(rotate) => {
                if let Some((_, number)) = split_file_name(&rotate.name()) {
                    file_number = number;
                }
            }
            EventData::GtidEvent(_) | EventData::AnonymousGtidEvent(_) => {
                pending_gtid = Some(sequence(file_number, event_start));
            }
            EventData::QueryEvent(query) => {
                let text = query.query();
                let statement = text.trim();
                if statement.eq_ignore_ascii_case("BEGIN") {
                    let start = pending_gtid
                        .take()
                        .unwrap_or_else(|| sequence(file_number, event_start));
                    transaction = Some(Transaction {
                        start,
                        committed_at: header.timestamp(),
                        index: 0,
                        ours: false,
                        seen_rows: false,
                    });
                } else if statement.starts_with('#') {
                    // A server-made stand-in for an event this client did not ask for
                    // (MariaDB's annotate-rows, binlog checkpoints): nothing happens.
                } else if statement.eq_ignore_ascii_case("COMMIT") {
                    finish(
                        &mut transaction,
                        &mut rows,
                        sequence(file_number, u64::from(header.log_pos())),
                        sender,
                    )?;
                } else {
                    // DDL (or a statement-logged change, which ROW format does not write).
                    pending_gtid = None;
                    if query.schema() == start.database || statement.contains(&start.database) {
                        send(Delivery::SchemaChanged)?;
                    }
                    finish(
                        &mut transaction,
                        &mut rows,
                        sequence(file_number, u64::from(header.log_pos())),
                        sender,
                    )?;
                }
            }
            EventData::XidEvent(_) => {
                finish(
                    &mut transaction,
                    &mut rows,
                    sequence(file_number, u64::from(header.log_pos())),
                    sender,
                )?;
            }
            EventData::RowsEvent(rows_event) => {
                let Some(table_map) = stream.get_tme(rows_event.table_id()) else {
                    continue;
                };
                if table_map.database_name() != start.database {
                    continue;
                }
                let Some(current) = transaction.as_mut() else {
                    continue;
                };
                if current.ours {
                    continue;
                }
                let table = table_map.table_name().into_owned();
                let op = match &rows_event {
                    RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => {
                        ChangeOp::Insert
                    }
                    RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => {
                        ChangeOp::Delete
                    }
                    _ => ChangeOp::Update,
                };
                let first = !current.seen_rows;
                current.seen_rows = true;
                if table == MARKER_TABLE {
                    // The engine writes its marker first in each of its transactions.
                    if first && marker_is(&rows_event, table_map, &start.marker) {
                        current.ours = true;
                        rows.clear();
                    }
                    continue;
                }
                let captured = start.tables.contains(&table);
                let mut columns: Option<Option<Arc<[String]>>> = None;
                let families: Arc<[Family]> = (0..table_map.columns_count())
                    .map(|at| {
                        table_map
                            .get_column_type(at as usize)
                            .ok()
                            .flatten()
                            .map_or(Family::Other, family_of_type)
                    })
                    .collect();
                for row in rows_event.rows(table_map) {
                    let position = Position::new(current.start, current.index);
                    current.index += 1;
                    if !captured || position <= start.skip_through {
                        continue;
                    }
                    let decoded =
                        row.map_err(|error| error.to_string())
                            .and_then(|(before, after)| {
                                if columns.is_none() {
                                    columns =
                                        Some(after.as_ref().or(before.as_ref()).and_then(names));
                                }
                                Ok((values(before)?, values(after)?))
                            });
                    match decoded {
                        Ok((before, after)) => rows.push(RawChange {
                            position,
                            table: table.clone(),
                            op,
                            before,
                            after,
                            columns: columns.clone().flatten(),
                            families: columns
                                .as_ref()
                                .is_some_and(Option::is_none)
                                .then(|| families.clone()),
                            committed_at: current.committed_at,
                        }),
                        Err(message) => {
                            if !rows.is_empty() {
                                send(Delivery::Rows(std::mem::take(&mut rows)))?;
                            }
                            send(Delivery::Unreadable(position, message))?;
                        }
                    }
                    if rows.len() >= CHUNK {
                        send(Delivery::Rows(std::mem::take(&mut rows)))?;
                    }
                }
            }
            _ => {}
        }
    }
    Err(Stop::Side(SideError::Unavailable {
        message: "the server ended the binlog stream".to_owned(),
    }))
}

/// Ends the transaction being read: hands over its rows (unless it is the engine's
/// own) and the boundary after it.
fn finish(
    transaction: &mut Option<Transaction>,
    rows: &mut Vec<RawChange>,
    boundary: u64,
    sender: &SyncSender<Delivery>,
) -> Result<(), Stop> {
    if transaction.take().is_some_and(|t| !t.ours) && !rows.is_empty() {
        sender
            .send(Delivery::Rows(std::mem::take(rows)))
            .map_err(|_| Stop::Stopped)?;
    }
    rows.clear();
    sender
        .send(Delivery::Boundary(boundary))
        .map_err(|_| Stop::Stopped)
}

/// Whether the marker row in `rows_event` names `marker` (its first column).
fn marker_is(
    rows_event: &RowsEventData<'_>,
    table_map: &mysql::binlog::events::TableMapEvent<'_>,
    marker: &str,
) -> bool {
    rows_event.rows(table_map).any(|row| {
        let Ok((before, after)) = row else {
            return false;
        };
        after.or(before).is_some_and(|row| {
            matches!(row.as_ref(0), Some(BinlogValue::Value(MyValue::Bytes(name))) if name == marker.as_bytes())
        })
    })
}

/// The row's column names when the log carries them (without the table map's optional
/// metadata the driver names them `@0`, `@1`, ...).
fn names(row: &mysql::binlog::row::BinlogRow) -> Option<Arc<[String]>> {
    let names: Vec<String> = row
        .columns_ref()
        .iter()
        .map(|column| column.name_str().into_owned())
        .collect();
    let positional = names
        .iter()
        .enumerate()
        .all(|(at, name)| *name == format!("@{at}"));
    (!positional).then(|| names.into())
}

/// A row's values by column position; JSON diffs (MySQL's partial JSON updates) cannot
/// be turned into a whole row.
fn values(row: Option<mysql::binlog::row::BinlogRow>) -> Result<Option<Vec<MyValue>>, String> {
    let Some(row) = row else {
        return Ok(None);
    };
    let mut values = Vec::with_capacity(row.len());
    for at in 0..row.len() {
        values.push(match row.as_ref(at) {
            None => {
                return Err(format!(
                    "column {} is missing from the row image: set binlog_row_image = FULL",
                    at + 1
                ));
            }
            Some(BinlogValue::Value(value)) => value.clone(),
            Some(BinlogValue::Jsonb(json)) => {
                let json = serde_json::Value::try_from(json.clone())
                    .map_err(|error| format!("column {}: {error}", at + 1))?;
                MyValue::Bytes(json.to_string().into_bytes())
            }
            Some(BinlogValue::JsonDiff(_)) => {
                return Err(format!(
                    "column {} holds a partial JSON update: set binlog_row_value_options = ''",
                    at + 1
                ));
            }
        });
    }
    Ok(Some(values))
}

/// A server id for the dump connection: servers drop an older replica with the same id,
/// so each reader takes a random one away from the ids real replicas use.
pub(crate) fn replica_id() -> u32 {
    let random = getrandom::u32().unwrap_or_else(|_| std::process::id());
    0x4000_0000 | (random & 0x3FFF_FFFF)
}
