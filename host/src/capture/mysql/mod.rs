//! The MariaDB/MySQL connector's capture: the server's row-format binary log, read as a
//! replica would (`COM_BINLOG_DUMP` from a file and position, see [`binlog`]), with
//! column types and keys from `information_schema`. No triggers, no polling of the
//! tables. With `binlog_row_metadata = FULL` (MariaDB 10.5+, MySQL 8; set by
//! `scripts/servers-setup.sh`) the log names each row's columns and values are matched
//! by name, so rows logged before an `ALTER TABLE` still read right (a column dropped
//! since is left out of the image); without it they are matched by position, and a row
//! whose column count or logged column types no longer fit the table is
//! [`SideError::Unreadable`] (two columns of one type swapped cannot be told apart).
//!
//! # What is kept in the side's database
//!
//! [`MysqlCapture::install`] creates, and [`MysqlCapture::uninstall`] clears this
//! side's rows in (rows named by [`MysqlOptions::name`], `dualwrite_<database>_<side>`):
//!
//! - `_dualwrite_streams (name, stream_id, basename, acked_sequence, acked_index,
//!   resume_sequence)`: the stream's identity, the log's file base name, and a resume
//!   hint: a transaction boundary before which every captured change is at or before
//!   the acknowledged position. A fresh install points it at the log's end, so capture
//!   starts there; later it lets a restart skip the log written while nothing was
//!   captured (and not need files purged since). It is written at most once a second.
//! - `_dualwrite_writes (name, writes)`: the marker. Every transaction of the apply
//!   side ([`crate::apply::mysql`]) first bumps its side's row; the capture sees that row
//!   event first in the transaction and drops the whole transaction (no echo). Everyone
//!   else's transactions are captured.
//!
//! Decisions:
//! - **A blocking replication connection on a reader thread** ([`binlog`]) feeding a
//!   bounded channel: the engine's `wait` is a channel wait with a timeout, a slow
//!   engine holds the server's sender back, and the rest of the connector is the
//!   blocking `mysql` crate like the PostgreSQL one is the blocking `postgres` crate.
//! - **Positions** are `(transaction start in the log, index of the row among the rows
//!   of the side's database in the transaction)`: commit order, and a 1,000-row
//!   statement has 1,000 positions in one transaction. The log cannot be told to
//!   forget (the server purges by age), so acknowledging only moves the resume hint;
//!   a restart asks the server for the log from the checkpoint's transaction and skips
//!   what was acknowledged.
//! - **No decision from a stale read.** The server writes a transaction to the binary
//!   log, and sends it to the reader, before InnoDB makes its commit visible to other
//!   sessions (for as long as a semi-synchronous primary waits for a replica's
//!   acknowledgement with `AFTER_SYNC`, otherwise an instant), and the engine decides
//!   from a fresh read of each captured row. So before the engine reads,
//!   [`MysqlCapture::await_visible`] takes a consistent snapshot on the capture's own
//!   session (`START TRANSACTION WITH CONSISTENT SNAPSHOT`, then
//!   `SHOW STATUS LIKE 'Binlog_snapshot_%'`, then `COMMIT`): MariaDB gives the log
//!   position that matches the snapshot exactly (it takes both under the lock that
//!   orders commits), so every transaction that starts in the log before it is in the
//!   snapshot, and a transaction committed in a read view is in every read view made
//!   later, by any session (it left InnoDB's list of active transactions first). The
//!   engine's reads are autocommit statements, each with a read view made when it
//!   starts. The batch waits until its last transaction starts before that position
//!   (polled at once, then from 1 ms doubling to 50 ms; past the engine's limit the
//!   side counts as unavailable and the batch is read again later, nothing
//!   acknowledged); a position proven once covers every later batch before it without
//!   a query. MySQL has no such status variables: its capture is refused
//!   (`mysql.no_snapshot_position`) rather than run without the proof.
//! - **Types**: see [`values`] (exact decimals, unsigned integers, ENUM/SET labels,
//!   DATETIME as local date-times, TIMESTAMP as instants, MariaDB's JSON).
//! - **Availability.** A connectivity fault (refused, killed, a stream silent for three
//!   heartbeats) is [`SideError::Unavailable`]; the next call connects again and
//!   resumes from the checkpoint.
//! - **Needs** `log_bin` on, `binlog_format = ROW`, `binlog_row_image = FULL`, a user
//!   with `REPLICATION SLAVE` and `REPLICATION CLIENT` (`BINLOG MONITOR` on MariaDB
//!   10.5+) and `CREATE` on the database, and a primary key on every captured table, in
//!   a transactional engine (InnoDB); each missing one is a [`SideError::Refused`] with
//!   its own code (`mysql.binlog_off`, `mysql.binlog_format`, `mysql.binlog_row_image`,
//!   `mysql.missing_privilege`, `mysql.no_primary_key`, `mysql.not_transactional`); and
//!   MariaDB, not MySQL (`mysql.no_snapshot_position`, see above).

mod binlog;
mod connection;
pub(crate) mod values;

pub(crate) use connection::{MySession, MysqlTable};
pub use connection::{MysqlOptions, default_name, quote_ident};

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, UNIX_EPOCH};

use mysql::prelude::Queryable;
use mysql::{BinlogDumpFlags, BinlogRequest, Conn};

use self::binlog::{
    BinlogReader, Delivery, MARKER_TABLE, RawChange, ReaderStart, file_and_offset, sequence,
    sequence_of, split_file_name,
};
use self::values::{Source, read_value};
use super::{
    CaptureInfo, CaptureStream, CaptureTable, CapturedChange, Position, RowImage, SchemaError,
    SideError, TableSchema,
};
use crate::change::{ChangeOp, Value};

/// Least time between two writes of the resume hint.
const RECORD_EVERY: Duration = Duration::from_secs(1);

/// How far the resume hint moves within one log file before an idle capture records it.
const RESUME_STEP: u64 = 16 << 20;

const CREATE_STREAMS_TABLE: &str = "CREATE TABLE IF NOT EXISTS _dualwrite_streams (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    stream_id VARCHAR(200) NOT NULL,
    basename VARCHAR(255) NOT NULL,
    acked_sequence BIGINT UNSIGNED NOT NULL,
    acked_index INT UNSIGNED NOT NULL,
    resume_sequence BIGINT UNSIGNED NOT NULL) ENGINE = InnoDB";

/// The marker table (see the module docs and [`crate::apply::mysql`]).
pub(crate) const CREATE_MARKER_TABLE: &str = "CREATE TABLE IF NOT EXISTS _dualwrite_writes (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    writes BIGINT UNSIGNED NOT NULL) ENGINE = InnoDB";

/// Storage engines whose changes reach the log with the transaction that made them.
const TRANSACTIONAL_ENGINES: &[&str] = &["innodb", "xtradb", "rocksdb", "tokudb", "ndbcluster"];

/// This side's row of `_dualwrite_streams`.
#[derive(Debug, Clone)]
struct StreamRecord {
    stream_id: String,
    basename: String,
}

/// Capture of one MariaDB/MySQL database. See the module docs for what it keeps there.
pub struct MysqlCapture {
    session: MySession,
    tables: HashMap<String, CaptureTable>,
    record: Option<StreamRecord>,
    reader: Option<BinlogReader>,
    /// Changes delivered after `floor` and not acknowledged, in order; a change that
    /// cannot be decoded is kept as its error.
    buffer: VecDeque<(Position, Result<CapturedChange, String>)>,
    /// The reader delivers every change after this position.
    floor: Position,
    /// The last change delivered (or `floor`).
    last_delivered: Position,
    acknowledged: Position,
    /// Transaction boundaries seen, with the last change delivered before each.
    boundaries: VecDeque<(u64, Position)>,
    /// Where a reader may start for a checkpoint at or after `acknowledged`.
    resume: u64,
    /// What `_dualwrite_streams` holds: (acknowledged, resume).
    recorded: (Position, u64),
    last_record: Option<Instant>,
    /// Every transaction that starts in the log before this sequence is visible to every
    /// read started from now on (a consistent snapshot said so; see
    /// [`await_visible`](CaptureStream::await_visible)).
    visible_before: u64,
}

impl MysqlCapture {
    /// A capture of the database at `options.url`. Connects on first use; nothing is
    /// installed until [`install`](CaptureStream::install).
    pub fn open(options: MysqlOptions) -> MysqlCapture {
        MysqlCapture {
            session: MySession::new(options),
            tables: HashMap::new(),
            record: None,
            reader: None,
            buffer: VecDeque::new(),
            floor: Position::START,
            last_delivered: Position::START,
            acknowledged: Position::START,
            boundaries: VecDeque::new(),
            resume: 0,
            recorded: (Position::START, 0),
            last_record: None,
            visible_before: 0,
        }
    }

    fn name(&self) -> String {
        self.session.options.name.clone()
    }

    fn url(&self) -> String {
        self.session.url().to_owned()
    }

    /// The log position of a consistent snapshot taken now, as a sequence: every
    /// transaction that starts before it is visible to the snapshot, none after.
    /// MariaDB gives it (`Binlog_snapshot_file`, `Binlog_snapshot_position`) for a
    /// transaction started `WITH CONSISTENT SNAPSHOT`; a server without them (MySQL)
    /// is refused (`mysql.no_snapshot_position`).
    fn snapshot_position(&mut self) -> Result<u64, SideError> {
        let status: Vec<(String, String)> = self.session.run(|conn| {
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")?;
            let status = conn.query("SHOW STATUS LIKE 'Binlog\\_snapshot\\_%'");
            let committed = conn.query_drop("COMMIT");
            let status = status?;
            committed.map(|()| status)
        })?;
        let value = |name: &str| {
            status
                .iter()
                .find(|(variable, _)| variable.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        };
        let url = self.url();
        let (Some(file), Some(offset)) = (
            value("Binlog_snapshot_file"),
            value("Binlog_snapshot_position"),
        ) else {
            return Err(SideError::Refused {
                code: "mysql.no_snapshot_position",
                message: format!(
                    "{url}: the server has no Binlog_snapshot_file/Binlog_snapshot_position \
                     status (MySQL has not, MariaDB has): without them the capture cannot \
                     prove that a change it read from the binary log is visible to other \
                     sessions yet, and would risk taking a change for an echo. Use MariaDB"
                ),
            });
        };
        sequence_of(file, offset).ok_or_else(|| SideError::Refused {
            code: "mysql.binlog_error",
            message: format!(
                "{url}: the consistent snapshot's binary log position {file}:{offset} cannot \
                 be read"
            ),
        })
    }

    /// Checks, without changing anything, what binlog capture needs of the server: the
    /// binary log on, in ROW format with whole row images, uncompressed, and a user
    /// allowed to read it (`dualwrite check`). Each fault is a coded
    /// [`SideError::Refused`] or unavailable.
    pub fn check_prerequisites(&mut self) -> Result<(), SideError> {
        let (file, offset) = self.check_server()?;
        self.probe_replication(&file, offset)
    }

    /// Checks the server's binlog settings and returns the log's current file and
    /// offset.
    fn check_server(&mut self) -> Result<(String, u64), SideError> {
        let url = self.url();
        let (log_bin, format, image): (i64, String, String) = self
            .session
            .run(|conn| {
                conn.query_first(
                    "SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image",
                )
            })?
            .unwrap_or_default();
        if log_bin == 0 {
            return Err(SideError::Refused {
                code: "mysql.binlog_off",
                message: format!(
                    "{url}: the binary log is off; binlog capture needs log_bin, \
                     binlog_format = ROW and a server_id in the server's configuration \
                     (scripts/servers-setup.sh sets them), then a restart"
                ),
            });
        }
        if !format.eq_ignore_ascii_case("ROW") {
            return Err(SideError::Refused {
                code: "mysql.binlog_format",
                message: format!(
                    "{url}: binlog_format is {format}; binlog capture needs ROW \
                     (SET GLOBAL binlog_format = 'ROW' and in the configuration file)"
                ),
            });
        }
        if !image.eq_ignore_ascii_case("FULL") {
            return Err(SideError::Refused {
                code: "mysql.binlog_row_image",
                message: format!(
                    "{url}: binlog_row_image is {image}; capture needs whole rows before and \
                     after each change: SET GLOBAL binlog_row_image = 'FULL'"
                ),
            });
        }
        // MariaDB only; compressed row events are not decoded.
        let compressed: Option<i64> = self
            .session
            .run(|conn| conn.query_first("SELECT @@log_bin_compress"))
            .unwrap_or(None);
        if compressed == Some(1) {
            return Err(SideError::Refused {
                code: "mysql.binlog_compressed",
                message: format!(
                    "{url}: log_bin_compress is ON; the connector reads uncompressed row \
                     events only: SET GLOBAL log_bin_compress = OFF"
                ),
            });
        }
        self.snapshot_position()?;
        let status = self
            .session
            .run(|conn| conn.query_first::<mysql::Row, _>("SHOW MASTER STATUS"));
        let status = match status {
            Err(SideError::Refused {
                code: "mysql.error",
                ..
            }) => self
                .session
                .run(|conn| conn.query_first::<mysql::Row, _>("SHOW BINARY LOG STATUS"))?,
            other => other?,
        };
        let Some(row) = status else {
            return Err(SideError::Refused {
                code: "mysql.binlog_off",
                message: format!("{url}: the server reports no binary log (SHOW MASTER STATUS)"),
            });
        };
        let file: Option<String> = row.get(0);
        let offset: Option<u64> = row.get(1);
        match (file, offset) {
            (Some(file), Some(offset)) => Ok((file, offset)),
            _ => Err(SideError::Refused {
                code: "mysql.binlog_off",
                message: format!("{url}: SHOW MASTER STATUS returned no file and position"),
            }),
        }
    }

    /// Asks the server for its log (without waiting for new events) to see that the
    /// connector's user may read it: REPLICATION SLAVE.
    fn probe_replication(&mut self, file: &str, offset: u64) -> Result<(), SideError> {
        let url = self.url();
        let opts = connection::connect_opts(&self.session.options)?;
        let result = (|| -> Result<(), mysql::Error> {
            let conn = Conn::new(opts)?;
            let request = BinlogRequest::new(binlog::replica_id())
                .with_filename(file.as_bytes().to_vec())
                .with_pos(offset)
                .with_flags(BinlogDumpFlags::BINLOG_DUMP_NON_BLOCK);
            for event in conn.get_binlog_stream(request)? {
                event?;
            }
            Ok(())
        })();
        result.map_err(|error| connection::classify(&url, &error))
    }

    /// Finds or creates this side's stream record; returns it, and sets the resume hint
    /// and acknowledged position from it.
    fn open_stream(&mut self, file: &str, offset: u64) -> Result<StreamRecord, SideError> {
        let url = self.url();
        let name = self.name();
        let Some((basename, number)) = split_file_name(file) else {
            return Err(SideError::Refused {
                code: "mysql.binlog_error",
                message: format!("{url}: the binary log file name {file} has no number"),
            });
        };
        self.session.run(|conn| {
            conn.query_drop(CREATE_STREAMS_TABLE)?;
            conn.query_drop(CREATE_MARKER_TABLE)
        })?;
        type Row = (String, String, u64, u32, u64);
        let found: Option<Row> = self.session.run(|conn| {
            conn.exec_first(
                "SELECT stream_id, basename, acked_sequence, acked_index, resume_sequence \
                 FROM _dualwrite_streams WHERE name = ?",
                (&name,),
            )
        })?;
        let (stream_id, recorded_base, acked, resume) = match found {
            Some((stream_id, base, acked_sequence, acked_index, resume)) => (
                stream_id,
                base,
                Position::new(acked_sequence, acked_index),
                resume,
            ),
            None => {
                let resume = sequence(number, offset);
                let stream_id: String = self
                    .session
                    .run(|conn| conn.query_first("SELECT CONCAT(@@server_id, '/', UUID())"))?
                    .unwrap_or_default();
                let stream_id = format!("{stream_id}/{name}");
                self.session.run(|conn| {
                    conn.exec_drop(
                        "INSERT INTO _dualwrite_streams (name, stream_id, basename, \
                         acked_sequence, acked_index, resume_sequence) VALUES (?, ?, ?, 0, 0, ?)",
                        (&name, &stream_id, &basename, resume),
                    )
                })?;
                tracing::info!(stream = %name, at = %file, offset, "MariaDB capture starts");
                (stream_id, basename.clone(), Position::START, resume)
            }
        };
        if recorded_base != basename {
            return Err(SideError::Refused {
                code: "mysql.server_changed",
                message: format!(
                    "{url}: the binary log is now named {basename}.*, the capture was installed \
                     on {recorded_base}.* (another server, or log_basename changed): its \
                     position cannot continue. Uninstall the capture and run an initial sync"
                ),
            });
        }
        let (resume_file, _) = file_and_offset(&basename, resume);
        let files: Vec<mysql::Row> = self.session.run(|conn| conn.query("SHOW BINARY LOGS"))?;
        let oldest = files
            .iter()
            .filter_map(|row| row.get::<String, _>(0))
            .filter_map(|name| split_file_name(&name).map(|(_, number)| number))
            .min();
        if oldest.is_some_and(|oldest| oldest > resume >> 32) {
            return Err(SideError::Refused {
                code: "mysql.binlog_purged",
                message: format!(
                    "{url}: the binary log {resume_file} the capture must resume from was \
                     purged; changes in it are lost to capture. Uninstall the capture and run \
                     an initial sync"
                ),
            });
        }
        self.acknowledged = acked;
        self.resume = resume;
        self.recorded = (acked, resume);
        Ok(StreamRecord {
            stream_id,
            basename,
        })
    }

    /// Makes sure a reader delivers every change after `after`, starting one if needed.
    fn ensure_reader(&mut self, after: Position) -> Result<(), SideError> {
        if self.reader.is_some() && after >= self.floor {
            return Ok(());
        }
        let Some(record) = self.record.clone() else {
            return Err(SideError::Unavailable {
                message: format!("{}: MariaDB capture is not installed", self.url()),
            });
        };
        self.reader = None;
        self.buffer.clear();
        self.boundaries.clear();
        let from = if after >= self.acknowledged || after == Position::START {
            self.resume.max(after.sequence)
        } else {
            after.sequence
        };
        let start = ReaderStart {
            basename: record.basename,
            from,
            skip_through: after,
            database: self.database()?,
            tables: self.tables.keys().cloned().collect(),
            marker: self.name(),
        };
        self.reader = Some(BinlogReader::spawn(&self.session.options, start)?);
        self.floor = after;
        self.last_delivered = after;
        Ok(())
    }

    fn database(&mut self) -> Result<String, SideError> {
        let database: Option<String> = self
            .session
            .run(|conn| conn.query_first("SELECT DATABASE()"))?
            .flatten();
        Ok(database.unwrap_or_default())
    }

    /// Takes one delivery from the reader, waiting up to `timeout`; `false` when none
    /// came.
    fn pump(&mut self, timeout: Duration) -> Result<bool, SideError> {
        let Some(reader) = &self.reader else {
            return Ok(false);
        };
        let Some(delivery) = reader.next(timeout) else {
            return Ok(false);
        };
        match delivery {
            Delivery::Rows(rows) => {
                for raw in rows {
                    let position = raw.position;
                    let change = match self.change(raw) {
                        Ok(change) => Ok(change),
                        Err(SideError::Unreadable { message, .. }) => Err(message),
                        Err(error) => {
                            // Lost with this delivery: start over from the checkpoint.
                            self.reader = None;
                            return Err(error);
                        }
                    };
                    self.buffer.push_back((position, change));
                    self.last_delivered = position;
                }
            }
            Delivery::Boundary(boundary) => {
                match self.boundaries.back_mut() {
                    Some((at, before)) if *before == self.last_delivered => *at = boundary,
                    _ => self.boundaries.push_back((boundary, self.last_delivered)),
                }
                self.settle_boundaries();
            }
            Delivery::SchemaChanged => self.session.forget_tables(),
            Delivery::Unreadable(position, message) => {
                self.buffer.push_back((position, Err(message)));
                self.last_delivered = position;
            }
            Delivery::Failed(error) => {
                self.reader = None;
                return Err(error);
            }
        }
        Ok(true)
    }

    /// Moves the resume hint past every boundary whose changes are all acknowledged.
    fn settle_boundaries(&mut self) {
        while let Some((boundary, before)) = self.boundaries.front().copied() {
            if before > self.acknowledged {
                break;
            }
            self.resume = self.resume.max(boundary);
            self.boundaries.pop_front();
        }
    }

    /// Writes the resume hint when it moved and the last write is a while ago.
    fn record_progress(&mut self) -> Result<(), SideError> {
        let now = (self.acknowledged, self.resume);
        // Writing the record is itself a transaction that moves the resume hint: while
        // idle, only a move to another file or by RESUME_STEP is worth a write.
        let moved = now.0 != self.recorded.0
            || now.1 >> 32 != self.recorded.1 >> 32
            || now.1.saturating_sub(self.recorded.1) >= RESUME_STEP;
        if !moved
            || self
                .last_record
                .is_some_and(|at| at.elapsed() < RECORD_EVERY)
        {
            return Ok(());
        }
        let name = self.name();
        self.session.run(|conn| {
            conn.exec_drop(
                "UPDATE _dualwrite_streams SET acked_sequence = ?, acked_index = ?, \
                 resume_sequence = ? WHERE name = ?",
                (now.0.sequence, now.0.index, now.1, &name),
            )
        })?;
        self.recorded = now;
        self.last_record = Some(Instant::now());
        Ok(())
    }

    /// Turns a binlog row into a change, by the table's current columns.
    fn change(&mut self, raw: RawChange) -> Result<CapturedChange, SideError> {
        let unreadable = |message: String| SideError::Unreadable {
            position: raw.position,
            message,
        };
        let width = raw
            .after
            .as_ref()
            .or(raw.before.as_ref())
            .map_or(0, Vec::len);
        let mut table = match self.session.table(&raw.table) {
            Ok(table) => table,
            Err(SideError::Schema(error)) => return Err(unreadable(error.to_string())),
            Err(error) => return Err(error),
        };
        // Where each value goes: by name when the log names the columns (a column
        // dropped since is left out, one added since is missing from the image), else
        // by position, which needs the table to have as many columns as the row.
        let fits = |table: &MysqlTable| match &raw.columns {
            Some(names) => names.iter().all(|name| table.schema.column(name).is_some()),
            None => {
                table.codecs.len() == width
                    && raw.families.as_ref().is_none_or(|families| {
                        families
                            .iter()
                            .zip(&table.codecs)
                            .all(|(family, codec)| codec.fits(*family))
                    })
            }
        };
        if !fits(&table) {
            self.session.forget_tables();
            table = self.session.table(&raw.table)?;
        }
        let slots: Vec<Option<usize>> = match &raw.columns {
            Some(names) => names
                .iter()
                .map(|name| {
                    table
                        .schema
                        .columns
                        .iter()
                        .position(|column| column.name == *name)
                })
                .collect(),
            None if fits(&table) => (0..width).map(Some).collect(),
            None => {
                return Err(unreadable(format!(
                    "a row of {} with {width} values that do not fit the table's {} columns \
                     now: its definition changed after the change was made, and the log \
                     names no columns (set binlog_row_metadata = FULL, and columns are \
                     matched by name)",
                    raw.table,
                    table.codecs.len()
                )));
            }
        };
        let image = |values: Vec<mysql::Value>| -> RowImage {
            slots
                .iter()
                .zip(values)
                .filter_map(|(slot, value)| {
                    let at = (*slot)?;
                    let column = &table.schema.columns[at];
                    Some((
                        column.name.clone(),
                        read_value(&table.codecs[at], value, Source::Binlog),
                    ))
                })
                .collect()
        };
        let before = raw.before.map(image);
        let after = raw.after.map(image);
        let source = match raw.op {
            ChangeOp::Delete => before.as_ref(),
            ChangeOp::Insert | ChangeOp::Update => after.as_ref(),
        }
        .ok_or_else(|| unreadable(format!("a {} without its row", raw.op.as_str())))?;
        let key = self
            .tables
            .get(&raw.table)
            .map(|captured| {
                captured
                    .key_columns
                    .iter()
                    .map(|column| {
                        let value = source.get(column).cloned().unwrap_or(Value::Null);
                        (column.clone(), value)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(CapturedChange {
            position: raw.position,
            entity: raw.table,
            op: raw.op,
            key,
            after,
            before,
            committed_at: Some(UNIX_EPOCH + Duration::from_secs(u64::from(raw.committed_at))),
        })
    }
}

impl CaptureStream for MysqlCapture {
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
        let url = self.url();
        let (file, offset) = self.check_server()?;
        self.session.forget_tables();
        let mut schemas: Vec<TableSchema> = Vec::new();
        for table in &unique {
            if table.table == MARKER_TABLE || table.table == "_dualwrite_streams" {
                return Err(SchemaError::Unsupported {
                    table: table.table.clone(),
                    reason: "it is the connector's own table".to_owned(),
                }
                .into());
            }
            let found = self.session.table(&table.table)?;
            if found.schema.primary_key.is_empty() {
                return Err(SideError::Refused {
                    code: "mysql.no_primary_key",
                    message: format!(
                        "{url}: table {} has no primary key; the MariaDB connector needs one \
                         to identify rows (ALTER TABLE {} ADD PRIMARY KEY (...))",
                        table.table,
                        quote_ident(&table.table)
                    ),
                });
            }
            found.schema.check_key(&table.key_columns)?;
            if !TRANSACTIONAL_ENGINES.contains(&found.engine.to_lowercase().as_str()) {
                return Err(SideError::Refused {
                    code: "mysql.not_transactional",
                    message: format!(
                        "{url}: table {} uses the {} engine, which logs changes outside \
                         their transaction, so the engine's own writes could not be told \
                         from others: ALTER TABLE {} ENGINE = InnoDB",
                        table.table,
                        found.engine,
                        quote_ident(&table.table)
                    ),
                });
            }
            schemas.push(found.schema.clone());
        }
        self.probe_replication(&file, offset)?;
        let record = self.open_stream(&file, offset)?;
        self.tables = unique
            .into_iter()
            .map(|table| (table.table.clone(), table))
            .collect();
        let stream_id = record.stream_id.clone();
        self.record = Some(record);
        self.reader = None;
        self.buffer.clear();
        self.boundaries.clear();
        self.visible_before = 0;
        tracing::info!(tables = self.tables.len(), %stream_id, "MariaDB capture installed");
        Ok(CaptureInfo {
            stream_id,
            head: self.acknowledged,
            tables: schemas,
        })
    }

    fn read(&mut self, after: Position, limit: usize) -> Result<Vec<CapturedChange>, SideError> {
        self.ensure_reader(after)?;
        while self
            .buffer
            .iter()
            .rev()
            .take_while(|(position, _)| *position > after)
            .count()
            < limit
        {
            if !self.pump(Duration::ZERO)? {
                break;
            }
        }
        super::buffered(&self.buffer, after, limit)
    }

    /// Proves with a consistent snapshot's log position that the transaction of
    /// `through` (and so every one before it) is visible to reads started from now on.
    fn await_visible(&mut self, through: Position, limit: Duration) -> Result<(), SideError> {
        let url = self.url();
        super::poll_visible(&url, limit, || {
            if through.sequence < self.visible_before {
                return Ok(None);
            }
            self.visible_before = self.visible_before.max(self.snapshot_position()?);
            Ok((through.sequence >= self.visible_before).then(|| {
                let (file, offset) = file_and_offset(
                    self.record
                        .as_ref()
                        .map_or("binlog", |record| &record.basename),
                    through.sequence,
                );
                format!("the transaction at {file}:{offset}")
            }))
        })
    }

    fn wait(&mut self, after: Position, timeout: Duration) -> Result<bool, SideError> {
        self.ensure_reader(after)?;
        if super::has_after(&self.buffer, after) {
            return Ok(true);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            let got = self.pump(remaining)?;
            if super::has_after(&self.buffer, after) {
                return Ok(true);
            }
            if !got || Instant::now() >= deadline {
                self.record_progress()?;
                return Ok(false);
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
        self.settle_boundaries();
        if self.record.is_some() {
            self.record_progress()?;
        }
        Ok(dropped)
    }

    fn uninstall(&mut self) -> Result<(), SideError> {
        let name = self.name();
        self.reader = None;
        self.session.run(|conn| {
            conn.query_drop(CREATE_STREAMS_TABLE)?;
            conn.query_drop(CREATE_MARKER_TABLE)?;
            conn.exec_drop("DELETE FROM _dualwrite_streams WHERE name = ?", (&name,))?;
            conn.exec_drop("DELETE FROM _dualwrite_writes WHERE name = ?", (&name,))
        })?;
        self.tables.clear();
        self.record = None;
        self.buffer.clear();
        self.boundaries.clear();
        self.acknowledged = Position::START;
        self.floor = Position::START;
        self.resume = 0;
        self.recorded = (Position::START, 0);
        self.visible_before = 0;
        tracing::info!(stream = %name, "MariaDB capture uninstalled");
        Ok(())
    }
}

impl std::fmt::Debug for MysqlCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlCapture")
            .field("url", &self.session.url())
            .field("name", &self.session.options.name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_order_by_file_then_offset() {
        assert!(sequence(1, 4_000_000) < sequence(2, 4));
        assert_eq!(
            file_and_offset("mysql-bin", sequence(12, 345)),
            ("mysql-bin.000012".to_owned(), 345)
        );
        assert_eq!(
            split_file_name("mysql-bin.000012"),
            Some(("mysql-bin".to_owned(), 12))
        );
        assert_eq!(split_file_name("nonumber"), None);
        // A consistent snapshot's position, as SHOW STATUS gives it.
        assert_eq!(
            sequence_of("mysql-bin.000012", "345"),
            Some(sequence(12, 345))
        );
        assert!(sequence_of("mysql-bin.000012", "345") > Some(sequence(11, 4_000_000)));
        assert_eq!(sequence_of("mysql-bin", "345"), None);
        assert_eq!(sequence_of("mysql-bin.000012", ""), None);
        assert_eq!(sequence_of("mysql-bin.000012", "4294967296"), None);
        assert_eq!(
            default_name("erp", "ERP side-1"),
            "dualwrite_erp_ERP_side_1"
        );
        assert_eq!(default_name(&"d".repeat(80), "erp").len(), 64);
    }
}
