//! The admin HTTP API (axum, JSON) that `dualwrite run` and `dualwrite demo` serve, and
//! that the CLI's admin commands (and the web UI) are clients of.
//!
//! - `auth.rs`: the bearer token (from the environment or generated), checked in
//!   constant time on every route but `/health`.
//! - `control.rs`: the engine's end: commands carried out between steps, snapshots
//!   published on a watch channel, alert rules evaluated, block mode enforced.
//! - `routes.rs`: the routes, JSON in and out, 4xx answers naming the problem.
//! - `map_config.rs` and `config_routes.rs`: what a map runs, changing its plugin config
//!   at runtime and rolling it back; the map dependency graph.
//! - `events.rs`: the live event stream (server-sent events) the web UI listens to.
//! - `session.rs`: the web UI's login: the token once, then an HttpOnly session cookie.
//! - `ui/`: the web UI itself, static files compiled into the binary.
//!
//! The server runs on a thread of its own with a single-threaded tokio runtime, so the
//! synchronous sync loop is never blocked by a request. It reads the state store
//! through the engine's shared [`StateStore`] (one short transaction per read; the
//! store's file lock admits one opener) and everything else through the latest
//! [`EngineSnapshot`]. It binds `127.0.0.1` unless the config says otherwise.
//!
//! [`start`] wires it all for a running engine: token, notifier, alert rules from the
//! plan, the control channel and the server. The loop then calls
//! [`EngineControl::tick`] between steps.

mod auth;
mod config_routes;
mod control;
mod events;
mod map_config;
mod routes;
mod session;
mod settings;
pub mod solutions;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::oneshot;

pub use auth::AdminToken;
pub use config_routes::MapOutline;
pub use control::{
    Command, CommandError, CommandRequest, ControlClient, ControlOptions, EngineControl,
    EngineSnapshot, ErrorMode, MapSnapshot, OfflineSide, channel,
};
pub use events::StreamsClosing;
pub use routes::{ROUTES, UI_ROUTES};
pub use session::Sessions;

use crate::alerts::AlertRule;
use crate::config::Plan;
use crate::notify::{Notifier, RetryPolicy, Subscriber};
use crate::state::StateStore;
use crate::sync::Engine;

/// What the server needs.
#[derive(Clone)]
pub struct ServerParts {
    /// The state store (shared with the engine).
    pub store: Arc<dyn StateStore>,
    /// The API's end of the control channel.
    pub control: ControlClient,
    /// The bearer token.
    pub token: AdminToken,
    /// The webhook notifier (its subscribers are managed through the API).
    pub notifier: Notifier,
    /// How long a command may wait for the loop.
    pub command_timeout: Duration,
    /// The web UI's login sessions.
    pub sessions: Sessions,
    /// The maps of the plan with their dependencies (the graph).
    pub maps: Arc<Vec<MapOutline>>,
    /// Ends the event streams when the server shuts down.
    pub closing: StreamsClosing,
    /// The deployment's config file and plugin runtime, for solution bundles; `None`
    /// for an engine not started from a config file.
    pub solutions: Option<solutions::SolutionContext>,
}

/// A running admin HTTP server; stops when dropped.
pub struct AdminServer {
    address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Binds `listen` (port 0 picks a free port) and serves the API on a thread of its
    /// own.
    pub fn start(listen: SocketAddr, parts: ServerParts) -> anyhow::Result<AdminServer> {
        let listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("binding the admin API to {listen}"))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let (shutdown, shutdown_signal) = oneshot::channel::<()>();
        let closing = parts.closing.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .context("starting the admin API's runtime")?;
        let thread = std::thread::Builder::new()
            .name("dualwrite-admin".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            tracing::error!("admin API: {error}");
                            return;
                        }
                    };
                    let app = routes::router(parts);
                    let served = axum::serve(listener, app).with_graceful_shutdown(async move {
                        let _ = shutdown_signal.await;
                        // Event streams never end by themselves; graceful shutdown waits
                        // for every connection.
                        closing.close();
                    });
                    if let Err(error) = served.await {
                        tracing::error!("admin API stopped: {error}");
                    }
                });
            })?;
        Ok(AdminServer {
            address,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The base URL of the API, like `http://127.0.0.1:7480`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The admin API of a running engine and the loop's end of it.
pub struct Operations {
    /// The server.
    pub server: AdminServer,
    /// Call [`EngineControl::tick`] between steps.
    pub control: EngineControl,
    /// The token, when it was generated (the caller shows it to the operator once);
    /// `None` when it came from the environment.
    pub generated_token: Option<AdminToken>,
}

/// How [`start`] runs the admin side.
#[derive(Debug, Clone, Default)]
pub struct OperationsOptions {
    /// Overrides the plan's `[admin] listen`.
    pub listen: Option<SocketAddr>,
    /// Overrides the token (tests); otherwise the plan's `token_env`, else generated.
    pub token: Option<AdminToken>,
    /// Webhook retries.
    pub retry: RetryPolicy,
    /// The loop end's timing.
    pub control: ControlOptions,
}

/// Starts the admin API for `engine` run from `plan`: the token, the webhook notifier
/// with the plan's subscribers, the plan's alert rules, the control channel and the
/// server.
pub fn start(
    plan: &Plan,
    engine: &Engine,
    options: OperationsOptions,
) -> anyhow::Result<Operations> {
    let operations = &plan.operations;
    let (token, generated_token) = match (&options.token, &operations.admin.token) {
        (Some(token), _) => (token.clone(), None),
        (None, Some(env)) => {
            let value = env
                .read()
                .with_context(|| format!("reading the admin token from ${}", env.var))?;
            let token = AdminToken::new(value.expose())
                .with_context(|| format!("the admin token in ${}", env.var))?;
            (token, None)
        }
        (None, None) => {
            let token = AdminToken::generate()?;
            (token.clone(), Some(token))
        }
    };
    let mut subscribers = Vec::new();
    for subscriber in &operations.subscribers {
        let secret = subscriber.secret.read().with_context(|| {
            format!(
                "subscriber {}: reading its secret from ${}",
                subscriber.name, subscriber.secret.var
            )
        })?;
        subscribers.push(Subscriber {
            name: subscriber.name.clone(),
            url: subscriber.url.clone(),
            secret,
            events: subscriber.events.clone(),
            ca_pem: subscriber.ca_pem.clone(),
        });
    }
    // What was set through the API before a restart is laid over the file's settings.
    let store = engine.store().clone();
    let subscribers = settings::subscribers(store.as_ref(), subscribers)
        .context("reading the subscribers saved through the admin API")?;
    let notifier = Notifier::start(subscribers, options.retry)?;
    let rules = settings::alert_rules(store.as_ref(), &operations.alerts)
        .context("reading the alert rules saved through the admin API")?;
    let rules = rules
        .iter()
        .map(AlertRule::check)
        .collect::<Result<Vec<_>, String>>()
        .map_err(|message| anyhow::anyhow!("alert rule: {message}"))?;
    let control_options = ControlOptions {
        activity_max_age: options
            .control
            .activity_max_age
            .or(operations.admin.activity_max_age),
        activity_max_entries: options
            .control
            .activity_max_entries
            .or(operations.admin.activity_max_entries),
        record_max_entries: operations.admin.record_max_entries,
        ..options.control
    };
    let (control, client) = channel(plan, engine, rules, Some(notifier.clone()), control_options);
    let server = AdminServer::start(
        options.listen.unwrap_or(operations.admin.listen),
        ServerParts {
            store: engine.store().clone(),
            control: client,
            token,
            notifier,
            command_timeout: Duration::from_secs(30),
            sessions: Sessions::default(),
            maps: Arc::new(MapOutline::of_plan(plan)),
            closing: StreamsClosing::default(),
            solutions: (!plan.origin.file.is_empty()).then(|| solutions::SolutionContext {
                config_path: std::path::PathBuf::from(&plan.origin.file),
                runtime: engine.plugin_runtime().clone(),
            }),
        },
    )?;
    Ok(Operations {
        server,
        control,
        generated_token,
    })
}
