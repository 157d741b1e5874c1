//! The replication stream: one walsender connection (`START_REPLICATION SLOT ... LOGICAL`
//! with pgoutput, through the `pgwire-replication` crate), opened by the caller so a
//! server that is down or refuses is an error of that call, then read by a thread that
//! decodes each message and hands them to the capture in chunks through a bounded
//! channel. The engine's blocking calls wait on the channel with a timeout, and a slow
//! engine holds the server's sender back instead of filling memory.
//!
//! Confirming goes the other way: the capture stores the position it made durable in an
//! atomic ([`ReplicationStream::confirm`]), and the thread hands it to the client, which
//! reports it to the server in its next standby status update (at most
//! [`STATUS_INTERVAL`] later). The server moves the slot only that far, so nothing the
//! engine has not acknowledged is ever confirmed.
//!
//! The walsender decodes each transaction once, as it is committed: no position is
//! decoded twice while the stream stays up, which the SQL interface
//! (`pg_logical_slot_peek_binary_changes`) could not promise.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use pgwire_replication::{
    Lsn, PgWireError, ReplicationClient, ReplicationConfig, ReplicationEvent,
};

use super::connection::PostgresOptions;
use super::pgoutput::{self, Message};
use crate::capture::SideError;

/// Events handed over in one message at most.
const CHUNK: usize = 1_000;

/// Chunks the channel holds before the reader waits for the capture.
const CHANNEL_DEPTH: usize = 16;

/// How often the client reports the confirmed position to the server at most.
pub(crate) const STATUS_INTERVAL: Duration = Duration::from_millis(100);

/// How long the reader sleeps between looks at the stop flag and the confirmed
/// position while the stream is silent.
const READER_TICK: Duration = Duration::from_millis(50);

/// The session settings the text form of values is read with (the walsender formats
/// values with its own settings; the same as [`super::connection`]'s sessions).
const STREAM_SETTINGS: &str = "-c TimeZone=UTC -c DateStyle=ISO,YMD -c extra_float_digits=3 \
     -c bytea_output=hex -c IntervalStyle=postgres";

/// One thing the stream said, in stream order.
#[derive(Debug)]
pub(crate) enum Event {
    /// A transaction starts; `final_lsn` is its commit record's LSN, `xid` its 32-bit
    /// transaction id.
    Begin {
        final_lsn: u64,
        commit_time: i64,
        xid: u32,
    },
    /// A pgoutput message inside a transaction (Origin, Relation, a row, ...).
    Message(Message),
    /// A message that could not be decoded, with why.
    Undecodable(String),
    /// The transaction ends; the next one commits at or after `end_lsn`.
    Commit { commit_lsn: u64, end_lsn: u64 },
    /// The server's heartbeat: everything before `wal_end` was sent.
    KeepAlive { wal_end: u64 },
}

/// What the reader thread hands over.
#[derive(Debug)]
pub(crate) enum Delivery {
    Events(Vec<Event>),
    /// The stream broke; the reader has stopped.
    Failed(SideError),
}

/// A running replication stream and its reader thread. Dropping it stops both.
pub(crate) struct ReplicationStream {
    receiver: Receiver<Delivery>,
    stop: Arc<AtomicBool>,
    confirmed: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl ReplicationStream {
    /// Starts streaming slot `slot` (publication of the same name) from `start`,
    /// reporting `start` as confirmed until [`confirm`](Self::confirm) says more.
    /// Returns once the server accepted `START_REPLICATION`, or with why it did not.
    pub(crate) fn start(options: &PostgresOptions, start: u64) -> Result<Self, SideError> {
        let config = replication_config(options, start)?;
        let url = options.url.clone();
        let connect_timeout = options.connect_timeout;
        let (sender, receiver) = std::sync::mpsc::sync_channel(CHANNEL_DEPTH);
        let (started_sender, started) = std::sync::mpsc::sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let confirmed = Arc::new(AtomicU64::new(start));
        let thread_stop = stop.clone();
        let thread_confirmed = confirmed.clone();
        let thread = std::thread::Builder::new()
            .name("dualwrite-pg-stream".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = started_sender.send(Err(SideError::Unavailable {
                            message: format!("cannot start the replication runtime: {error}"),
                        }));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let client = match open(config, connect_timeout).await {
                        Ok(client) => client,
                        Err(error) => {
                            let _ = started_sender.send(Err(classify(&url, &error)));
                            return;
                        }
                    };
                    let _ = started_sender.send(Ok(()));
                    let failure = read(client, &sender, &thread_stop, &thread_confirmed).await;
                    if let Some(error) = failure {
                        let error = classify(&url, &error);
                        tracing::debug!(%error, "PostgreSQL replication stream ended");
                        send(&sender, Delivery::Failed(error), &thread_stop).await;
                    }
                });
            })
            .map_err(|error| SideError::Unavailable {
                message: format!("cannot start the replication reader thread: {error}"),
            })?;
        let stream = ReplicationStream {
            receiver,
            stop,
            confirmed,
            thread: Some(thread),
        };
        // The thread gives up after `connect_timeout` itself; the margin covers
        // START_REPLICATION, which waits for the slot's snapshot.
        match started.recv_timeout(connect_timeout + Duration::from_secs(30)) {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(SideError::Unavailable {
                message: format!(
                    "{}: the server did not start the replication stream",
                    options.url
                ),
            }),
        }
    }

    /// The next delivery, waiting up to `timeout` (not at all when zero); `None` when
    /// nothing came.
    pub(crate) fn next(&self, timeout: Duration) -> Option<Delivery> {
        crate::capture::receive(&self.receiver, timeout).unwrap_or_else(|()| {
            Some(Delivery::Failed(SideError::Unavailable {
                message: "the PostgreSQL replication reader ended".to_owned(),
            }))
        })
    }

    /// Lets the server move the slot to `lsn` (never back). Call only once everything
    /// before `lsn` is durable on the engine's side.
    pub(crate) fn confirm(&self, lsn: u64) {
        self.confirmed.fetch_max(lsn, Ordering::SeqCst);
    }
}

impl Drop for ReplicationStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblocks a reader waiting to hand over a chunk.
        while self.receiver.try_recv().is_ok() {}
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The crate's configuration for `options`, starting at `start`.
fn replication_config(
    options: &PostgresOptions,
    start: u64,
) -> Result<ReplicationConfig, SideError> {
    let parsed: postgres::Config = options.url.parse().map_err(|error| SideError::Refused {
        code: "pg.bad_url",
        message: format!("{} is not a PostgreSQL URL: {error}", options.url),
    })?;
    let host = match parsed.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = parsed.get_ports().first().copied().unwrap_or(5432);
    let user = parsed.get_user().unwrap_or("postgres").to_owned();
    let password = match &options.password {
        Some(secret) => secret.expose().to_owned(),
        None => parsed
            .get_password()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            .unwrap_or_default(),
    };
    let database = parsed.get_dbname().unwrap_or(&user).to_owned();
    let config = ReplicationConfig::new(
        host,
        user,
        password,
        database,
        options.name.clone(),
        options.name.clone(),
    )
    .with_port(port)
    .with_start_lsn(Lsn::from_u64(start))
    .with_ack_lsn(Lsn::from_u64(start))
    .with_status_interval(STATUS_INTERVAL)
    .with_wakeup_interval(Duration::from_secs(5))
    .with_buffer_size(CHUNK * 4)
    .with_options(STREAM_SETTINGS)
    .with_application_name(format!("dualwrite {}", options.name));
    Ok(config)
}

/// Connects, authenticates and starts replication, within `timeout` for the connection.
async fn open(
    config: ReplicationConfig,
    timeout: Duration,
) -> Result<ReplicationClient, PgWireError> {
    let mut client = ReplicationClient::connect(config).await?;
    match tokio::time::timeout(timeout + Duration::from_secs(25), client.wait_started()).await {
        Ok(started) => started.map(|()| client),
        Err(_) => Err(PgWireError::Io(Arc::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the replication stream did not start in time",
        )))),
    }
}

/// Reads the stream until it fails (the error) or the capture stops it (`None`).
async fn read(
    mut client: ReplicationClient,
    sender: &SyncSender<Delivery>,
    stop: &AtomicBool,
    confirmed: &AtomicU64,
) -> Option<PgWireError> {
    let mut reported = 0;
    let mut events: Vec<Event> = Vec::new();
    let mut stopping = ShutdownSign::default();
    loop {
        if stop.load(Ordering::SeqCst) {
            client.stop();
            return None;
        }
        let lsn = confirmed.load(Ordering::SeqCst);
        if lsn > reported {
            client.update_applied_lsn(Lsn::from_u64(lsn));
            reported = lsn;
        }
        // Waits for the first event only: what is already there goes into the same
        // chunk, and a chunk is handed over as soon as the stream has nothing more.
        let wait = if events.is_empty() {
            READER_TICK
        } else {
            Duration::ZERO
        };
        match tokio::time::timeout(wait, client.recv()).await {
            Err(_) => {
                if !events.is_empty() {
                    let chunk = std::mem::take(&mut events);
                    if !send(sender, Delivery::Events(chunk), stop).await {
                        client.stop();
                        return None;
                    }
                }
            }
            Ok(Ok(Some(event))) => {
                if let ReplicationEvent::KeepAlive {
                    wal_end,
                    reply_requested: true,
                    ..
                } = &event
                    && stopping.asks(wal_end.as_u64())
                {
                    return Some(PgWireError::Io(Arc::new(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "the server is shutting down: the stream was closed so that it can \
                         stop (the slot keeps everything not confirmed)",
                    ))));
                }
                if let Some(event) = translate(event) {
                    events.push(event);
                }
                if events.len() >= CHUNK {
                    let chunk = std::mem::take(&mut events);
                    if !send(sender, Delivery::Events(chunk), stop).await {
                        client.stop();
                        return None;
                    }
                }
            }
            Ok(Ok(None)) => {
                return Some(PgWireError::Io(Arc::new(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server ended the replication stream",
                ))));
            }
            Ok(Err(error)) => return Some(error),
        }
    }
}

/// Tells a server that is shutting down from one that is merely checking on the client.
///
/// A stopping server's walsender waits until the client confirms everything it sent
/// (the shutdown checkpoint included) and asks for a reply again each time one comes;
/// the capture confirms only what the engine made durable and recorded, which it cannot
/// record once the server refuses sessions. So the walsender would wait forever and the
/// server never stop. A running server asks for a reply only every half
/// `wal_sender_timeout` (30 s by default): several requests in a row at one WAL
/// position within a second are a shutdown, and the reader then closes the stream.
#[derive(Default)]
struct ShutdownSign {
    wal_end: u64,
    first_at: Option<std::time::Instant>,
    requests: u32,
}

impl ShutdownSign {
    /// Requests in a row that mean a shutdown.
    const REQUESTS: u32 = 5;

    /// Notes a heartbeat that asks for a reply; `true` when the server is stopping.
    fn asks(&mut self, wal_end: u64) -> bool {
        let now = std::time::Instant::now();
        let in_a_row = self.wal_end == wal_end
            && self
                .first_at
                .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1));
        if in_a_row {
            self.requests += 1;
        } else {
            *self = ShutdownSign {
                wal_end,
                first_at: Some(now),
                requests: 1,
            };
        }
        self.requests >= Self::REQUESTS
    }
}

/// Hands `delivery` over, waiting while the channel is full (without blocking the
/// runtime, so the client keeps answering the server's heartbeats). `false` when the
/// capture is gone or asked the reader to stop.
async fn send(sender: &SyncSender<Delivery>, mut delivery: Delivery, stop: &AtomicBool) -> bool {
    loop {
        match sender.try_send(delivery) {
            Ok(()) => return true,
            Err(TrySendError::Disconnected(_)) => return false,
            Err(TrySendError::Full(back)) => {
                if stop.load(Ordering::SeqCst) {
                    return false;
                }
                delivery = back;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
}

/// The capture's view of one event of the crate.
fn translate(event: ReplicationEvent) -> Option<Event> {
    Some(match event {
        ReplicationEvent::Begin {
            final_lsn,
            commit_time_micros,
            xid,
        } => Event::Begin {
            final_lsn: final_lsn.as_u64(),
            commit_time: commit_time_micros,
            xid,
        },
        ReplicationEvent::Commit { lsn, end_lsn, .. } => Event::Commit {
            commit_lsn: lsn.as_u64(),
            end_lsn: end_lsn.as_u64(),
        },
        ReplicationEvent::XLogData { data, .. } => match pgoutput::decode(&data) {
            Ok(message) => Event::Message(message),
            Err(why) => Event::Undecodable(why),
        },
        ReplicationEvent::KeepAlive { wal_end, .. } => Event::KeepAlive {
            wal_end: wal_end.as_u64(),
        },
        // Logical decoding messages (`pg_logical_emit_message`) are not changes, and the
        // stream has no stop position.
        ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => return None,
    })
}

/// A [`SideError`] for a fault of the replication connection at `url`: connectivity
/// faults are unavailable (the capture connects again later); refusals carry the code
/// an operator looks up.
fn classify(url: &str, error: &PgWireError) -> SideError {
    let text = error.to_string();
    match error {
        PgWireError::Auth(_) => SideError::Refused {
            code: "pg.bad_credentials",
            message: format!("{url}: the replication connection was refused: {text}"),
        },
        PgWireError::Server(message)
            if message.contains("SQLSTATE 28P01") || message.contains("SQLSTATE 28000") =>
        {
            SideError::Refused {
                code: "pg.bad_credentials",
                message: format!("{url}: the replication connection was refused: {text}"),
            }
        }
        PgWireError::Server(message)
            if message.contains("SQLSTATE 42501") || message.contains("permission denied") =>
        {
            SideError::Refused {
                code: "pg.missing_privilege",
                message: format!(
                    "{url}: the role may not replicate ({message}); log-based capture needs a \
                     role with REPLICATION (ALTER ROLE ... REPLICATION) or a superuser"
                ),
            }
        }
        _ => SideError::Unavailable {
            message: format!("{url}: replication stream: {text}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_reply_requests_at_one_position_is_a_shutdown() {
        let mut sign = ShutdownSign::default();
        for _ in 0..ShutdownSign::REQUESTS - 1 {
            assert!(!sign.asks(100));
        }
        assert!(sign.asks(100));
        // A request at another position (the WAL moved) starts a new run.
        let mut sign = ShutdownSign::default();
        for at in 0..20 {
            assert!(!sign.asks(at));
        }
    }
}
