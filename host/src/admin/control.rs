//! The engine's end of the admin API. The sync loop is synchronous and owns the
//! [`Engine`]; the API runs on its own thread. They meet here:
//!
//! - **Commands** (pause, resume, stop, play, initial sync, retry, skip, error mode,
//!   alert rules) arrive on a channel and are carried out by [`EngineControl::tick`],
//!   which the loop calls between steps, so a command never races a step. Each answers
//!   on its own reply channel.
//! - **Snapshots** of what only the loop knows (counters, plugins, offline sides, alert
//!   state, per-map error mode) are published on a watch channel a few times a second;
//!   the API reads them and the state store, never the loop's internals.
//! - **Alert rules** are evaluated on every tick that is due; a rule that fires or
//!   clears is recorded in the activity log, its actions run (pause or stop the map,
//!   notify the webhook subscribers).
//! - **Error mode** per map: `continue` (the default for `ordering = "per-key"` maps)
//!   lets failed changes wait in the error queue while the map goes on; `block` (the
//!   default for `ordering = "strict"`) pauses the map at the first new error, so its
//!   later changes queue in order until an admin fixes the cause and resumes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{oneshot, watch};

use crate::alerts::{
    AlertAction, AlertEvaluator, AlertEvent, AlertRule, AlertSubject, CheckedRule, FiringAlert,
    MapObservation,
};
use crate::config::{OrderingMode, Plan};
use crate::notify::Notifier;
use crate::state::{
    ActivityEntry, ActivityKind, BatchCommit, ErrorQuery, ErrorResolution, MapMode, ResolutionKind,
    StateStore,
};
use crate::sync::{Engine, MapCounters, PluginStatus, PluginSwap, ResumeMode, RetryOutcome};

/// What a map does when a change fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorMode {
    /// The change waits in the error queue; the map goes on.
    Continue,
    /// The map pauses at the error; its later changes queue in order.
    Block,
}

impl ErrorMode {
    /// Parses `continue` or `block`.
    pub fn parse(name: &str) -> Option<ErrorMode> {
        match name {
            "continue" => Some(ErrorMode::Continue),
            "block" => Some(ErrorMode::Block),
            _ => None,
        }
    }
}

/// An admin's request to the loop.
#[derive(Debug, Clone)]
pub enum Command {
    /// Pause a map.
    Pause(String),
    /// Resume a paused map.
    Resume(String, ResumeMode),
    /// Stop a map.
    Stop(String),
    /// Start a stopped map.
    Play {
        /// The map.
        map: String,
        /// Start the maps it depends on (transitively) that are stopped, first.
        with_dependencies: bool,
    },
    /// Run a map's initial sync (chunk by chunk between steps).
    InitialSync(String),
    /// Retry one open error now.
    Retry(u64),
    /// Retry every open error of a map now.
    RetryAll(String),
    /// Take an open error out of the queue without syncing it.
    Skip {
        /// The error.
        id: u64,
        /// Why.
        reason: String,
    },
    /// Resolve a parked conflict: the row of `side` wins, with `merged` values written
    /// to it first if given.
    Resolve {
        /// The error.
        id: u64,
        /// The side whose row wins.
        side: crate::change::Side,
        /// Merged values (columns of `side`'s entity).
        merged: Option<crate::capture::RowImage>,
    },
    /// Set a map's error mode.
    SetErrorMode(String, ErrorMode),
    /// Add or replace an alert rule.
    UpsertAlert(Box<CheckedRule>),
    /// Remove an alert rule.
    DeleteAlert(String),
    /// What a map runs: plugin, config, descriptor, config history.
    DescribeMap(String),
    /// Run a map with a new plugin config from the next step on (see `map_config.rs`).
    ConfigureMap {
        /// The map.
        map: String,
        /// The new config.
        config: serde_json::Map<String, serde_json::Value>,
        /// Why (recorded).
        reason: String,
    },
    /// Switch maps to other plugin files and configs (a solution applied or rolled
    /// back), each at a clean point: when its queue is drained.
    SwitchMaps {
        /// The maps and what they switch to.
        switches: Vec<crate::solution::MapSwitch>,
        /// Why (recorded).
        reason: String,
    },
    /// Run a map with a recorded config again: `to`, or the one before the config in
    /// force.
    RollbackMap {
        /// The map.
        map: String,
        /// The history record to go back to.
        to: Option<u64>,
    },
}

/// Why a command was not carried out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// The map, error or rule does not exist.
    #[error("{0}")]
    NotFound(String),
    /// It exists, but the command does not fit its state.
    #[error("{0}")]
    Conflict(String),
    /// Carrying it out failed.
    #[error("{0}")]
    Failed(String),
}

/// A command with who asked and where the answer goes.
#[derive(Debug)]
pub struct CommandRequest {
    /// The command.
    pub command: Command,
    /// Who asked (recorded with the state change).
    pub by: String,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<serde_json::Value, CommandError>>,
}

/// A map as the loop sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct MapSnapshot {
    /// The map.
    pub name: String,
    /// Its mode in the loop.
    pub mode: MapMode,
    /// Its ERP and CRM side names.
    pub sides: [String; 2],
    /// Counters since the engine started.
    pub counters: MapCounters,
    /// What it does on an error.
    pub error_mode: ErrorMode,
    /// Changes waiting in its queue.
    pub queue_depth: u64,
    /// Age of its oldest waiting change.
    pub lag: Duration,
    /// The maps it depends on (`depends_on`).
    pub depends_on: Vec<String>,
}

/// A side that cannot be reached.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OfflineSide {
    /// The side.
    pub side: String,
    /// For how long, in seconds.
    pub seconds: f64,
    /// Why.
    pub reason: String,
}

/// What the loop publishes for the API.
#[derive(Debug, Clone, Default)]
pub struct EngineSnapshot {
    /// When it was taken.
    pub taken_at: Option<DateTime<Utc>>,
    /// The maps, in dependency order.
    pub maps: Vec<MapSnapshot>,
    /// Sides that are offline.
    pub offline: Vec<OfflineSide>,
    /// Bytes of log each side keeps for the engine (PostgreSQL: the slot's lag).
    pub retained_bytes: Vec<(String, u64)>,
    /// Each map's plugin.
    pub plugins: Vec<PluginStatus>,
    /// The alert rules.
    pub alert_rules: Vec<AlertRule>,
    /// The alerts firing now.
    pub firing: Vec<FiringAlert>,
    /// Each map's declared fields and keys per side (for recorded change sets).
    pub shapes: BTreeMap<String, crate::replay::record::MapShape>,
}

/// How often the loop's end does its periodic work.
#[derive(Debug, Clone, Copy)]
pub struct ControlOptions {
    /// How often a snapshot is published.
    pub publish_every: Duration,
    /// How often alert rules are evaluated.
    pub evaluate_every: Duration,
    /// Rows per initial sync chunk run between steps.
    pub initial_sync_chunk: usize,
    /// How often activity retention runs.
    pub prune_every: Duration,
    /// Retention: activity older than this is pruned.
    pub activity_max_age: Option<Duration>,
    /// Retention: at most this many activity entries are kept.
    pub activity_max_entries: Option<u64>,
    /// Retention: at most this many recorded changes are kept (`activity_max_age`
    /// applies to them too).
    pub record_max_entries: u64,
}

impl Default for ControlOptions {
    fn default() -> Self {
        ControlOptions {
            publish_every: Duration::from_millis(250),
            evaluate_every: Duration::from_secs(1),
            initial_sync_chunk: 2_000,
            prune_every: Duration::from_secs(60),
            activity_max_age: None,
            activity_max_entries: None,
            record_max_entries: crate::config::DEFAULT_RECORD_MAX_ENTRIES,
        }
    }
}

/// The loop's end of the admin API; see the module doc. Call [`EngineControl::tick`]
/// between steps.
pub struct EngineControl {
    commands: mpsc::Receiver<CommandRequest>,
    snapshots: watch::Sender<Arc<EngineSnapshot>>,
    alerts: AlertEvaluator,
    notifier: Option<Notifier>,
    error_modes: BTreeMap<String, ErrorMode>,
    /// Each map's error counter when it was last looked at (block mode).
    errors_seen: BTreeMap<String, u64>,
    initializing: Vec<String>,
    options: ControlOptions,
    last_publish: Option<Instant>,
    last_evaluation: Option<Instant>,
    last_prune: Option<Instant>,
    /// Map switches waiting for their map's queue to drain (see `Command::SwitchMaps`),
    /// with why and who asked.
    pending_switches: Vec<(crate::solution::MapSwitch, String, String)>,
    /// The sides' last measured bytes of log kept for the engine.
    retained_bytes: Vec<(String, u64)>,
}

/// The API's end: sends commands, reads snapshots.
#[derive(Clone)]
pub struct ControlClient {
    commands: mpsc::Sender<CommandRequest>,
    snapshots: watch::Receiver<Arc<EngineSnapshot>>,
}

impl ControlClient {
    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<EngineSnapshot> {
        self.snapshots.borrow().clone()
    }

    /// Sends `command` and waits (up to `timeout`) for the loop's answer.
    pub async fn send(
        &self,
        command: Command,
        by: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(CommandRequest {
                command,
                by: by.to_owned(),
                reply,
            })
            .map_err(|_| CommandError::Failed("the engine is not running".to_owned()))?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CommandError::Failed(
                "the engine stopped before answering".to_owned(),
            )),
            Err(_) => Err(CommandError::Failed(format!(
                "the engine did not answer within {} s (a long step or initial sync chunk); \
                 the command may still be carried out",
                timeout.as_secs()
            ))),
        }
    }
}

/// Both ends of the control channel for `engine` run from `plan`, with the plan's
/// alert rules and `notifier` for their `notify` actions.
pub fn channel(
    plan: &Plan,
    engine: &Engine,
    rules: Vec<CheckedRule>,
    notifier: Option<Notifier>,
    options: ControlOptions,
) -> (EngineControl, ControlClient) {
    let (commands, receiver) = mpsc::channel();
    let (snapshots, snapshot_receiver) = watch::channel(Arc::new(EngineSnapshot::default()));
    let configured: BTreeMap<String, ErrorMode> = plan
        .maps
        .iter()
        .filter(|map| map.enabled)
        .map(|map| {
            let mode = match map.ordering {
                OrderingMode::Strict => ErrorMode::Block,
                _ => ErrorMode::Continue,
            };
            (map.name.clone(), mode)
        })
        .collect();
    // Modes set through the API outlive a restart.
    let error_modes = super::settings::error_modes(engine.store().as_ref(), configured.clone())
        .unwrap_or_else(|error| {
            tracing::warn!(%error, "reading the saved error modes failed; using the config's");
            configured
        });
    let errors_seen = engine
        .counters()
        .into_iter()
        .map(|(map, counters)| (map, counters.errors))
        .collect();
    let mut control = EngineControl {
        commands: receiver,
        snapshots,
        alerts: AlertEvaluator::new(rules),
        notifier,
        error_modes,
        errors_seen,
        initializing: Vec::new(),
        options,
        last_publish: None,
        last_evaluation: None,
        last_prune: None,
        pending_switches: Vec::new(),
        retained_bytes: Vec::new(),
    };
    // Sides are looked up by map; record them once.
    control.publish(engine);
    (
        control,
        ControlClient {
            commands,
            snapshots: snapshot_receiver,
        },
    )
}

impl EngineControl {
    /// Carries out waiting commands, continues initial syncs started through the API,
    /// enforces block mode, evaluates alert rules and publishes a snapshot when due.
    /// Errors are those of the state store or a side: the loop's own errors.
    pub fn tick(&mut self, engine: &mut Engine) -> anyhow::Result<()> {
        let mut changed = false;
        while let Ok(request) = self.commands.try_recv() {
            let result = self.carry_out(engine, request.command, &request.by);
            // The asker may have given up waiting; the command was still carried out.
            let _ = request.reply.send(result);
            changed = true;
        }
        if let Some(map) = self.initializing.first().cloned() {
            let status = engine.initial_sync_chunk(&map, self.options.initial_sync_chunk)?;
            if status.complete {
                self.initializing.remove(0);
            }
            changed = true;
        }
        changed |= self.switch_drained_maps(engine);
        changed |= self.enforce_block_mode(engine)?;
        if self
            .last_evaluation
            .is_none_or(|last| last.elapsed() >= self.options.evaluate_every)
        {
            self.last_evaluation = Some(Instant::now());
            changed |= self.evaluate_alerts(engine)?;
        }
        if self
            .last_prune
            .is_none_or(|last| last.elapsed() >= self.options.prune_every)
        {
            self.last_prune = Some(Instant::now());
            let older_than = self
                .options
                .activity_max_age
                .and_then(|age| chrono::Duration::from_std(age).ok())
                .map(|age| Utc::now() - age);
            if older_than.is_some() || self.options.activity_max_entries.is_some() {
                let removed = engine
                    .store()
                    .prune_activity(older_than, self.options.activity_max_entries)?;
                if removed > 0 {
                    tracing::info!(removed, "activity retention pruned old entries");
                }
            }
            let removed = engine
                .store()
                .prune_recorded(older_than, Some(self.options.record_max_entries))?;
            if removed > 0 {
                tracing::info!(removed, "recording retention pruned old changes");
            }
        }
        if changed
            || self
                .last_publish
                .is_none_or(|last| last.elapsed() >= self.options.publish_every)
        {
            self.retained_bytes = engine.retained_bytes();
            self.publish(engine);
        }
        Ok(())
    }

    fn carry_out(
        &mut self,
        engine: &mut Engine,
        command: Command,
        by: &str,
    ) -> Result<serde_json::Value, CommandError> {
        let failed = |error: anyhow::Error| CommandError::Failed(format!("{error:#}"));
        let store = engine.store().clone();
        match command {
            Command::Pause(map) => {
                expect_mode(
                    engine,
                    &map,
                    &[MapMode::Running, MapMode::CatchingUp],
                    "pause",
                )?;
                engine.pause(&map, by).map_err(failed)?;
            }
            Command::Resume(map, mode) => {
                expect_mode(engine, &map, &[MapMode::Paused], "resume")?;
                engine.resume(&map, mode, by).map_err(failed)?;
                // Block mode counts errors from here on.
                self.errors_seen
                    .insert(map.clone(), map_errors(engine, &map));
            }
            Command::Stop(map) => {
                mode_of(engine, &map)?;
                self.initializing.retain(|name| *name != map);
                engine.stop(&map, by).map_err(failed)?;
            }
            Command::Play {
                map,
                with_dependencies,
            } => {
                expect_mode(engine, &map, &[MapMode::Stopped, MapMode::Error], "play")?;
                let waiting = dependencies_to_start(engine, &map)?;
                if !waiting.is_empty() && !with_dependencies {
                    return Err(CommandError::Conflict(format!(
                        "map {map} depends on {}, which {} not running; start {} first, or \
                         play {map} with its dependencies (API: {{\"with_dependencies\": true}}; \
                         CLI: --with-dependencies)",
                        waiting.join(", "),
                        if waiting.len() == 1 { "is" } else { "are" },
                        if waiting.len() == 1 { "it" } else { "them" },
                    )));
                }
                for dependency in &waiting {
                    engine
                        .play(dependency, &format!("{by} (a dependency of {map})"))
                        .map_err(failed)?;
                }
                engine.play(&map, by).map_err(failed)?;
                return Ok(
                    serde_json::json!({"map": map, "started": waiting.iter().chain([&map]).collect::<Vec<_>>()}),
                );
            }
            Command::InitialSync(map) => {
                let mode = mode_of(engine, &map)?;
                if mode == MapMode::Paused {
                    return Err(CommandError::Conflict(format!(
                        "map {map} is paused; resume it before its initial sync"
                    )));
                }
                if !self.initializing.contains(&map) {
                    engine.begin_initial_sync(&map, by).map_err(failed)?;
                    self.initializing.push(map.clone());
                }
                return Ok(serde_json::json!({"map": map, "started": true}));
            }
            Command::Retry(id) => {
                let entry = store
                    .error(id)
                    .map_err(|error| CommandError::Failed(error.to_string()))?
                    .ok_or_else(|| CommandError::NotFound(format!("no error with id {id}")))?;
                if entry.resolution.is_some() {
                    return Err(CommandError::Conflict(format!(
                        "error {id} is already resolved"
                    )));
                }
                let outcome = engine.retry_error(id).map_err(failed)?;
                let after = store
                    .error(id)
                    .map_err(|error| CommandError::Failed(error.to_string()))?;
                return Ok(serde_json::json!({
                    "id": id,
                    "applied": outcome == RetryOutcome::Applied,
                    "error": after.as_ref().and_then(|entry| entry.resolution.is_none().then(|| entry.error.to_string())),
                    "resolution": after.as_ref().and_then(|entry| entry.resolution.as_ref().map(|resolution| resolution.kind.as_str())),
                }));
            }
            Command::RetryAll(map) => {
                mode_of(engine, &map)?;
                let open = store
                    .errors(&ErrorQuery {
                        map: Some(map.clone()),
                        limit: 100_000,
                        ..ErrorQuery::default()
                    })
                    .map_err(|error| CommandError::Failed(error.to_string()))?;
                let mut applied = 0;
                for entry in &open {
                    if engine.retry_error(entry.id).map_err(failed)? == RetryOutcome::Applied {
                        applied += 1;
                    }
                }
                return Ok(serde_json::json!({
                    "map": map,
                    "retried": open.len(),
                    "applied": applied,
                    "still_open": open.len() - applied,
                }));
            }
            Command::Skip { id, reason } => {
                let entry = store
                    .error(id)
                    .map_err(|error| CommandError::Failed(error.to_string()))?
                    .ok_or_else(|| CommandError::NotFound(format!("no error with id {id}")))?;
                if entry.resolution.is_some() {
                    return Err(CommandError::Conflict(format!(
                        "error {id} is already resolved"
                    )));
                }
                store
                    .resolve_error(ErrorResolution {
                        id,
                        kind: ResolutionKind::Skipped,
                        by: by.to_owned(),
                        reason: reason.clone(),
                    })
                    .map_err(|error| CommandError::Failed(error.to_string()))?;
                return Ok(
                    serde_json::json!({"id": id, "skipped": true, "by": by, "reason": reason}),
                );
            }
            Command::Resolve { id, side, merged } => {
                let entry = store
                    .error(id)
                    .map_err(|error| CommandError::Failed(error.to_string()))?
                    .ok_or_else(|| CommandError::NotFound(format!("no error with id {id}")))?;
                if entry.resolution.is_some() {
                    return Err(CommandError::Conflict(format!(
                        "error {id} is already resolved"
                    )));
                }
                if entry.conflict.is_none() {
                    return Err(CommandError::Conflict(format!(
                        "error {id} is not a parked conflict ({}); retry or skip it",
                        entry.error.class
                    )));
                }
                let synced = engine
                    .resolve_conflict(id, side, merged.as_ref(), by)
                    .map_err(|error| CommandError::Conflict(format!("{error:#}")))?;
                let after = store
                    .error(id)
                    .map_err(|error| CommandError::Failed(error.to_string()))?;
                return Ok(serde_json::json!({
                    "id": id,
                    "resolved": synced,
                    "side": side.as_str(),
                    "error": after.as_ref().and_then(|entry| entry.resolution.is_none().then(|| entry.error.to_string())),
                }));
            }
            Command::SetErrorMode(map, mode) => {
                mode_of(engine, &map)?;
                store
                    .save_setting(
                        super::settings::ERROR_MODE,
                        &map,
                        Some(&serde_json::json!(mode)),
                        by,
                    )
                    .map_err(|error| CommandError::Failed(error.to_string()))?;
                self.error_modes.insert(map.clone(), mode);
                self.errors_seen
                    .insert(map.clone(), map_errors(engine, &map));
                store
                    .commit(&BatchCommit {
                        activity: vec![ActivityEntry::new(
                            Some(&map),
                            ActivityKind::StateChange,
                            format!(
                                "{by}: error mode set to {}",
                                if mode == ErrorMode::Block {
                                    "block"
                                } else {
                                    "continue"
                                }
                            ),
                        )],
                        ..BatchCommit::default()
                    })
                    .map_err(|error| CommandError::Failed(error.to_string()))?;
                return Ok(serde_json::json!({"map": map, "error_mode": mode}));
            }
            Command::UpsertAlert(rule) => {
                if let Some(map) = &rule.rule.map {
                    mode_of(engine, map)?;
                }
                let name = rule.rule.name.clone();
                let saved = serde_json::to_value(&rule.rule)
                    .map_err(|error| CommandError::Failed(error.to_string()))?;
                store
                    .save_setting(super::settings::ALERT_RULE, &name, Some(&saved), by)
                    .map_err(|error| CommandError::Failed(error.to_string()))?;
                self.alerts.upsert(*rule);
                return Ok(serde_json::json!({"name": name}));
            }
            Command::DescribeMap(map) => return super::map_config::describe(engine, &map),
            Command::ConfigureMap {
                map,
                config,
                reason,
            } => return super::map_config::configure(engine, &map, config, reason, by),
            Command::SwitchMaps { switches, reason } => {
                let mut answers = Vec::new();
                for switch in switches {
                    let running = engine.queued_changes(&switch.map).is_some();
                    let status = if running {
                        "scheduled: switches once its queue is drained"
                    } else {
                        "not-running: the map starts with it at the engine's next start"
                    };
                    answers.push(serde_json::json!({"map": switch.map, "status": status}));
                    if running {
                        self.pending_switches
                            .retain(|(pending, _, _)| pending.map != switch.map);
                        self.pending_switches
                            .push((switch, reason.clone(), by.to_owned()));
                    }
                }
                let switched = self.switch_drained_maps(engine);
                return Ok(serde_json::json!({"maps": answers, "switched_now": switched}));
            }
            Command::RollbackMap { map, to } => {
                return super::map_config::rollback(engine, &map, to, by);
            }
            Command::DeleteAlert(name) => {
                if !self.alerts.rules().iter().any(|rule| rule.name == name) {
                    return Err(CommandError::NotFound(format!(
                        "no alert rule named {name}"
                    )));
                }
                store
                    .save_setting(super::settings::ALERT_RULE, &name, None, by)
                    .map_err(|error| CommandError::Failed(error.to_string()))?;
                self.alerts.remove(&name);
                return Ok(serde_json::json!({"name": name, "deleted": true}));
            }
        }
        Ok(serde_json::Value::Null)
    }

    /// Carries out the pending map switches whose map's queue is drained (the changes
    /// queued before the switch are applied under the version they were captured
    /// for). Returns whether any was carried out.
    fn switch_drained_maps(&mut self, engine: &mut Engine) -> bool {
        let mut switched = false;
        let pending = std::mem::take(&mut self.pending_switches);
        for (switch, reason, by) in pending {
            match engine.queued_changes(&switch.map) {
                None => continue,
                Some(queued) if queued > 0 => {
                    self.pending_switches.push((switch, reason, by));
                    continue;
                }
                Some(_) => {}
            }
            let plugin = match engine.load_plugin_file(&switch.plugin_file) {
                Ok(plugin) => plugin,
                Err(error) => {
                    tracing::warn!(map = %switch.map, %error, "switching the map failed; it runs on as it was");
                    continue;
                }
            };
            match engine.swap_plugin(
                &switch.map,
                PluginSwap {
                    plugin: Some(plugin),
                    config: Some(switch.config.clone()),
                    by: by.clone(),
                    reason: reason.clone(),
                },
            ) {
                Ok(_) => switched = true,
                Err(error) => {
                    tracing::warn!(map = %switch.map, %error, "switching the map failed; it runs on as it was");
                }
            }
        }
        switched
    }

    /// Pauses every block-mode map that has recorded a new error.
    fn enforce_block_mode(&mut self, engine: &mut Engine) -> anyhow::Result<bool> {
        let mut paused = false;
        for (map, counters) in engine.counters() {
            let seen = self
                .errors_seen
                .entry(map.clone())
                .or_insert(counters.errors);
            if counters.errors <= *seen {
                continue;
            }
            let new_errors = counters.errors - *seen;
            *seen = counters.errors;
            if self.error_modes.get(&map) != Some(&ErrorMode::Block) {
                continue;
            }
            if mode_of(engine, &map).ok() == Some(MapMode::Running) {
                engine.pause(
                    &map,
                    &format!(
                        "error mode block ({new_errors} new error(s); fix, then resume with catch-up)"
                    ),
                )?;
                paused = true;
            }
        }
        Ok(paused)
    }

    fn evaluate_alerts(&mut self, engine: &mut Engine) -> anyhow::Result<bool> {
        let store = engine.store().clone();
        let observations = self.observe(engine, store.as_ref());
        let offline: Vec<(String, Duration)> = engine
            .offline_durations()
            .into_iter()
            .map(|(side, duration, _)| (side, duration))
            .collect();
        let events = self
            .alerts
            .evaluate(store.as_ref(), &observations, &offline, Utc::now())?;
        for event in &events {
            self.act_on(engine, event)?;
        }
        Ok(!events.is_empty())
    }

    fn act_on(&mut self, engine: &mut Engine, event: &AlertEvent) -> anyhow::Result<()> {
        let by = format!("alert {}", event.rule);
        let subject = match &event.subject {
            AlertSubject::Map(map) => format!("map {map}"),
            AlertSubject::Side(side) => format!("side {side}"),
        };
        let verb = if event.firing { "fired" } else { "cleared" };
        let mut activity = Vec::new();
        for map in event.maps.iter().map(Some).chain(
            // A side rule with no map (none watched) is still recorded once.
            event.maps.is_empty().then_some(None),
        ) {
            let mut entry = ActivityEntry::new(
                map.map(String::as_str),
                ActivityKind::Alert,
                format!("alert {} {verb}: {}", event.rule, event.message),
            );
            entry.detail = Some(serde_json::json!({
                "rule": event.rule,
                "state": verb,
                "subject": event.subject,
                "value": event.value,
            }));
            activity.push(entry);
        }
        engine.store().commit(&BatchCommit {
            activity,
            ..BatchCommit::default()
        })?;
        tracing::warn!(rule = %event.rule, %subject, "alert {verb}: {}", event.message);
        if !event.firing {
            if let Some(notifier) = &self.notifier {
                notifier.send("alert.cleared", alert_payload(event));
            }
            return Ok(());
        }
        let mut done = Vec::new();
        for action in &event.actions {
            for map in &event.maps {
                let mode = mode_of(engine, map).ok();
                match action {
                    AlertAction::Pause
                        if matches!(mode, Some(MapMode::Running | MapMode::CatchingUp)) =>
                    {
                        engine.pause(map, &by)?;
                        done.push(format!("paused {map}"));
                    }
                    AlertAction::Stop if mode.is_some_and(|mode| mode != MapMode::Stopped) => {
                        self.initializing.retain(|name| name != map);
                        engine.stop(map, &by)?;
                        done.push(format!("stopped {map}"));
                    }
                    _ => {}
                }
            }
        }
        if event.actions.contains(&AlertAction::Notify)
            && let Some(notifier) = &self.notifier
        {
            let mut payload = alert_payload(event);
            payload["actions_taken"] = serde_json::json!(done);
            notifier.send("alert.fired", payload);
        }
        Ok(())
    }

    fn observe(&self, engine: &Engine, store: &dyn StateStore) -> Vec<MapObservation> {
        self.map_snapshots(engine, store)
            .into_iter()
            .map(|map| MapObservation {
                map: map.name,
                sides: map.sides,
                queue_depth: map.queue_depth,
                lag: map.lag,
            })
            .collect()
    }

    fn map_snapshots(&self, engine: &Engine, store: &dyn StateStore) -> Vec<MapSnapshot> {
        let modes: BTreeMap<String, MapMode> = engine.map_modes().into_iter().collect();
        let sides = engine.map_sides();
        let dependencies = engine.map_dependencies();
        engine
            .counters()
            .into_iter()
            .map(|(name, counters)| {
                let queue_depth = store.queue_depth(&name).unwrap_or_default();
                let lag = if queue_depth > 0 {
                    store
                        .queued(&name, 0, 1)
                        .ok()
                        .and_then(|queued| queued.first().map(|entry| entry.queued_at))
                        .and_then(|at| (Utc::now() - at).to_std().ok())
                        .unwrap_or_default()
                } else {
                    Duration::ZERO
                };
                MapSnapshot {
                    mode: modes.get(&name).copied().unwrap_or(MapMode::Stopped),
                    sides: sides.get(&name).cloned().unwrap_or_default(),
                    error_mode: self
                        .error_modes
                        .get(&name)
                        .copied()
                        .unwrap_or(ErrorMode::Continue),
                    depends_on: dependencies.get(&name).cloned().unwrap_or_default(),
                    name,
                    counters,
                    queue_depth,
                    lag,
                }
            })
            .collect()
    }

    fn publish(&mut self, engine: &Engine) {
        self.last_publish = Some(Instant::now());
        let store = engine.store().clone();
        let snapshot = EngineSnapshot {
            taken_at: Some(Utc::now()),
            maps: self.map_snapshots(engine, store.as_ref()),
            offline: engine
                .offline_durations()
                .into_iter()
                .map(|(side, duration, reason)| OfflineSide {
                    side,
                    seconds: duration.as_secs_f64(),
                    reason,
                })
                .collect(),
            retained_bytes: self.retained_bytes.clone(),
            plugins: engine.plugins(),
            alert_rules: self.alerts.rules(),
            firing: self.alerts.firing(),
            shapes: engine.map_shapes(),
        };
        self.snapshots.send_replace(Arc::new(snapshot));
    }
}

fn alert_payload(event: &AlertEvent) -> serde_json::Value {
    serde_json::json!({
        "rule": event.rule,
        "subject": event.subject,
        "maps": event.maps,
        "value": event.value,
        "message": event.message,
    })
}

/// The maps `map` depends on, directly or not, that are stopped or in error, in the
/// order to start them (dependencies first). A dependency this deployment does not run
/// is a conflict naming it.
fn dependencies_to_start(engine: &Engine, map: &str) -> Result<Vec<String>, CommandError> {
    fn visit(
        map: &str,
        graph: &BTreeMap<String, Vec<String>>,
        seen: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<(), CommandError> {
        let Some(dependencies) = graph.get(map) else {
            return Err(CommandError::Conflict(format!(
                "map {map} is a dependency this deployment does not run; enable it in the config"
            )));
        };
        for dependency in dependencies {
            if !seen.contains(dependency) {
                seen.push(dependency.clone());
                visit(dependency, graph, seen, order)?;
                order.push(dependency.clone());
            }
        }
        Ok(())
    }
    let graph = engine.map_dependencies();
    let mut order = Vec::new();
    visit(map, &graph, &mut vec![map.to_owned()], &mut order)?;
    let modes: BTreeMap<String, MapMode> = engine.map_modes().into_iter().collect();
    order.retain(|dependency| {
        matches!(
            modes.get(dependency),
            Some(MapMode::Stopped | MapMode::Error)
        )
    });
    Ok(order)
}

fn mode_of(engine: &Engine, map: &str) -> Result<MapMode, CommandError> {
    engine
        .map_modes()
        .into_iter()
        .find(|(name, _)| name == map)
        .map(|(_, mode)| mode)
        .ok_or_else(|| CommandError::NotFound(format!("no running map named {map}")))
}

fn expect_mode(
    engine: &Engine,
    map: &str,
    allowed: &[MapMode],
    action: &str,
) -> Result<(), CommandError> {
    let mode = mode_of(engine, map)?;
    if allowed.contains(&mode) {
        Ok(())
    } else {
        Err(CommandError::Conflict(format!(
            "cannot {action} map {map}: it is {mode} (possible when {})",
            allowed
                .iter()
                .map(|mode| mode.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        )))
    }
}

fn map_errors(engine: &Engine, map: &str) -> u64 {
    engine
        .counters()
        .into_iter()
        .find(|(name, _)| name == map)
        .map_or(0, |(_, counters)| counters.errors)
}
