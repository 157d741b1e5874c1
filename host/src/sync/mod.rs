//! The sync loop: captured changes in, plugin calls, writes on the other side, durable
//! state, acknowledged positions out.
//!
//! [`Engine::open`] turns a validated [`Plan`] into running parts: the state store, one
//! capture reader and one writer per side, one plugin runner per map, the schema checks
//! and the capture triggers. [`Engine::step`] does one pass: for each side, read the
//! changes after its checkpoint, route them to the maps on that entity (in dependency
//! order), transform them in batches, check each write against the link's last synced
//! images (echo and conflict), apply the writes in one transaction on the other side,
//! commit links, errors, activity and the new checkpoint in one state transaction, and
//! only then acknowledge the position to the side. A crash anywhere re-reads from the
//! last checkpoint and re-applies idempotently. [`Engine::run`] steps until shutdown.
//!
//! Map modes: a paused map's changes go to its durable queue; resume drains it (catch
//! up), turns it into errors (skip to live) or drops it (discard), each recorded. A side
//! that cannot be reached is skipped with exponential backoff and jitter; its changes
//! stay in its change log (or, for writes to it, unacknowledged on the source) until it
//! returns, so nothing is lost.
//!
//! A map's plugin or config is changed between steps by [`Engine::swap_plugin`]
//! (`swap.rs`): validated on a fresh instance, recorded, kept over a restart. Plugin
//! files dropped into the plugins folder go through it after a dry run
//! ([`PluginFolder`], `hot_swap.rs`).

mod hot_swap;
mod initial;
mod inspect;
mod links;
mod lookups;
mod pending;
mod process;
mod resolve;
mod retry;
mod swap;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::apply::ApplyBatch;
use crate::apply::mysql::MysqlWriter;
use crate::apply::postgres::PostgresWriter;
use crate::apply::sqlite::SqliteWriter;
use crate::capture::mysql::{MysqlCapture, MysqlOptions};
use crate::capture::postgres::{PostgresCapture, PostgresOptions};
use crate::capture::sqlite::{SqliteCapture, SqliteOptions};
use crate::capture::{CaptureStream, CaptureTable, CapturedChange, Position, SideError};
use crate::change::{ErrorClass, Side, SyncError};
use crate::config::{Connector, MapPlan, Plan};
use crate::plugin::{MapPluginRunner, PluginRuntime};
use crate::state::{
    ActivityEntry, ActivityKind, BatchCommit, Checkpoint, MapEntities, MapMode, MapState,
    MapTransition, NewError, QueueRemoval, SqliteStateStore, StateStore, StoredChange,
};

pub use hot_swap::{DRY_RUN_CHANGES, DropOutcome, DryRun, PluginFolder};
pub use initial::InitialSyncStatus;
pub use inspect::{PluginStatus, RetryOutcome};
use lookups::{EngineLookups, EntityLocation};
pub use process::MapCounters;
pub use swap::{PluginSwap, SwapError, SwapReport, config_hash};

/// Most rounds of up to 1,000 queued changes one map drains in one step.
const MAX_QUEUE_ROUNDS_PER_STEP: usize = 20;

/// Earlier plugin versions of a map loaded from the archive at open, for a rollback.
const RETIRED_VERSIONS_KEPT: usize = 3;

/// Most links kept in memory (each twice, under both keys).
const LINK_CACHE_ENTRIES: usize = 400_000;

/// Tuning of the loop.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Most changes read from a side per step.
    pub read_limit: usize,
    /// How long an idle loop waits for a new change on a side before looking at the
    /// other one.
    pub idle_wait: Duration,
    /// First retry delay after a side became unreachable; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay for an unreachable side.
    pub max_backoff: Duration,
    /// When a change that failed with a retryable error is first retried (then with
    /// doubling delays up to five minutes).
    pub first_retry: Duration,
    /// How often due retries are looked for.
    pub retry_scan: Duration,
    /// Longest a step waits for the changes it read to be visible to reads of their side
    /// ([`CaptureStream::await_visible`]); past it the side goes offline and the changes
    /// are read again after the backoff.
    pub visible_wait: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            read_limit: 5_000,
            idle_wait: Duration::from_millis(2),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            first_retry: Duration::from_secs(5),
            retry_scan: Duration::from_secs(1),
            visible_wait: Duration::from_secs(10),
        }
    }
}

/// What to do with a paused map's queue when it resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeMode {
    /// Apply the queued changes in order, then go live.
    CatchUp,
    /// Go live now; the queued changes become retryable errors.
    SkipToLive,
    /// Go live now; the queued changes are dropped (recorded).
    Discard,
}

/// One side: its capture reader, its writer, and whether it is reachable.
struct SideLink {
    name: String,
    /// The role every map gives this side (checked at open).
    role: Side,
    capture: Box<dyn CaptureStream>,
    writer: Box<dyn ApplyBatch>,
    checkpoint: Position,
    offline: Option<Offline>,
    /// The side's last measured [`CaptureStream::retained_bytes`], and when it was
    /// measured.
    retained: Option<(u64, Instant)>,
}

struct Offline {
    since: Instant,
    retry_at: Instant,
    delay: Duration,
    reason: String,
}

/// One map as the loop runs it.
pub(crate) struct MapRun {
    pub(crate) plan: MapPlan,
    pub(crate) runner: MapPluginRunner,
    pub(crate) mode: MapMode,
    pub(crate) counters: MapCounters,
    /// When a retryable error of this map is first retried.
    pub(crate) first_retry: Duration,
    /// Changes in the map's durable queue. While any wait there, new changes queue
    /// behind them, so a row's changes are applied in commit order.
    pub(crate) queued: u64,
    /// Whether every change gets an activity entry (`[admin] activity_every_change`).
    pub(crate) log_every_change: bool,
    /// The deployment file's plugin config of the map, as JSON text (see `swap.rs`).
    pub(crate) file_config: String,
    /// Plugins the map ran before a swap, for a rollback (see `swap.rs`).
    pub(crate) retired_plugins: Vec<crate::plugin::LoadedPlugin>,
}

/// The sync engine of one deployment.
pub struct Engine {
    store: Arc<dyn StateStore>,
    sides: Vec<SideLink>,
    maps: Vec<MapRun>,
    options: EngineOptions,
    last_retry_scan: Instant,
    links: links::LinkCache,
    /// Whether captured changes are kept for `dualwrite record` (`[admin]
    /// record_changes`).
    record_changes: bool,
    /// Loads plugin files for swaps asked for while running.
    runtime: PluginRuntime,
    /// The deployment's plugins folder.
    plugins_dir: cap_std::fs::Dir,
}

/// What one [`Engine::step`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepReport {
    /// Changes read from the sides.
    pub captured: usize,
    /// Rows written on the sides.
    pub written: usize,
}

impl Engine {
    /// Opens everything the plan names and installs capture. Fails, naming the map and
    /// what does not fit, when a plugin is refused or a map does not fit its tables.
    pub fn open(
        plan: &Plan,
        runtime: &PluginRuntime,
        options: EngineOptions,
    ) -> anyhow::Result<Engine> {
        let store: Arc<dyn StateStore> = Arc::new(
            SqliteStateStore::open(&plan.data_dir)
                .with_context(|| format!("opening the state in {}", plan.data_dir.display()))?,
        );
        let plugins_dir =
            cap_std::fs::Dir::open_ambient_dir(&plan.plugins_dir, cap_std::ambient_authority())
                .with_context(|| {
                    format!("opening the plugins folder {}", plan.plugins_dir.display())
                })?;

        let roles = side_roles(plan)?;
        let mut sides = Vec::new();
        let mut readers: HashMap<String, Arc<Mutex<Box<dyn ApplyBatch>>>> = HashMap::new();
        for side in &plan.sides {
            let (capture, writer, reader): (
                Box<dyn CaptureStream>,
                Box<dyn ApplyBatch>,
                Box<dyn ApplyBatch>,
            ) = match &side.connector {
                Connector::Sqlite { path } => {
                    let sqlite = SqliteOptions::default();
                    let opening = || format!("side {}: opening {}", side.name, path.display());
                    (
                        Box::new(SqliteCapture::open(path, sqlite.clone()).with_context(opening)?),
                        Box::new(SqliteWriter::open(path, sqlite.clone()).with_context(opening)?),
                        Box::new(SqliteWriter::open(path, sqlite).with_context(opening)?),
                    )
                }
                Connector::Postgres(server) => {
                    let options = postgres_options(&side.name, server)?;
                    (
                        Box::new(PostgresCapture::open(options.clone())),
                        Box::new(PostgresWriter::open(options.clone())),
                        Box::new(PostgresWriter::open(options)),
                    )
                }
                Connector::MariaDb(server) => {
                    let options = mysql_options(&side.name, server)?;
                    (
                        Box::new(MysqlCapture::open(options.clone())),
                        Box::new(MysqlWriter::open(options.clone())),
                        Box::new(MysqlWriter::open(options)),
                    )
                }
            };
            readers.insert(side.name.clone(), Arc::new(Mutex::new(reader)));
            let Some(&role) = roles.get(&side.name) else {
                // A side no enabled map uses: nothing to capture or write.
                continue;
            };
            let checkpoint = store.checkpoint(role, None)?.unwrap_or(Position::START);
            sides.push(SideLink {
                name: side.name.clone(),
                role,
                capture,
                writer,
                checkpoint,
                offline: None,
                retained: None,
            });
        }

        let mut entities = HashMap::new();
        for map in plan.maps.iter().filter(|map| map.enabled) {
            for role in [Side::Erp, Side::Crm] {
                let endpoint = map.endpoint(role);
                entities.insert(
                    (role, endpoint.entity.clone()),
                    EntityLocation {
                        reader: readers[&endpoint.side].clone(),
                        key_columns: endpoint.key.clone(),
                    },
                );
            }
        }
        let lookups = Arc::new(EngineLookups {
            store: store.clone(),
            entities,
        });

        let mut maps = Vec::new();
        for map in plan.maps.iter().filter(|map| map.enabled) {
            let plugin = swap::load_at_open(store.as_ref(), runtime, &plugins_dir, map)?;
            let runner = plugin
                .start(&map.plugin_config_json(), lookups.clone())
                .with_context(|| format!("map {}", map.name))?;
            check_map_fits(map, &runner, &mut sides)?;
            let status = store.register_map(&MapEntities {
                name: map.name.clone(),
                erp_entity: map.erp.entity.clone(),
                crm_entity: map.crm.entity.clone(),
            })?;
            // A map registered just now starts stopped in the store; a map an admin
            // stopped has a transition that says so and stays stopped.
            let fresh = status.state.mode == MapMode::Stopped
                && store
                    .transitions(&map.name)?
                    .iter()
                    .all(|transition| transition.from.is_none());
            let mode = match status.state.mode {
                MapMode::Stopped if fresh => {
                    store.transition(MapTransition {
                        map: map.name.clone(),
                        to: MapState::online(MapMode::Running),
                        cause: "engine started".to_owned(),
                    })?;
                    MapMode::Running
                }
                MapMode::Error => {
                    store.transition(MapTransition {
                        map: map.name.clone(),
                        to: MapState::online(MapMode::Running),
                        cause: "engine started".to_owned(),
                    })?;
                    MapMode::Running
                }
                other => other,
            };
            let queued = store.queue_depth(&map.name)?;
            let file_config = map.plugin_config_json();
            // A config changed at runtime (admin API) outlives a restart.
            let (map_plan, runner) = swap::restore(
                store.as_ref(),
                runtime,
                &plugins_dir,
                map,
                runner,
                &mut sides,
            )
            .with_context(|| format!("map {}", map.name))?;
            record_plugin_version(store.as_ref(), &map.name, &runner)?;
            let retired_plugins = swap::retired_from_archive(
                store.as_ref(),
                runtime,
                &map.name,
                runner.plugin(),
                RETIRED_VERSIONS_KEPT,
            );
            maps.push(MapRun {
                log_every_change: plan.operations.admin.activity_every_change,
                plan: map_plan,
                runner,
                file_config,
                retired_plugins,
                mode,
                counters: MapCounters::default(),
                first_retry: options.first_retry,
                queued,
            });
        }

        for side in &mut sides {
            let mut tables: Vec<CaptureTable> = Vec::new();
            for map in &maps {
                for role in [Side::Erp, Side::Crm] {
                    let endpoint = map.plan.endpoint(role);
                    if endpoint.side == side.name
                        && !tables.iter().any(|table| table.table == endpoint.entity)
                    {
                        tables.push(CaptureTable {
                            table: endpoint.entity.clone(),
                            key_columns: endpoint.key.clone(),
                        });
                    }
                }
            }
            side.capture
                .install(&tables)
                .with_context(|| format!("side {}: installing capture", side.name))?;
            // A crash between the state commit and the acknowledgement leaves
            // processed changes in the side's log; they are done, so purge them now.
            if side.checkpoint > Position::START {
                side.capture
                    .acknowledge(side.checkpoint)
                    .with_context(|| format!("side {}: acknowledging", side.name))?;
            }
        }
        let mut engine = Engine {
            store,
            sides,
            maps,
            options,
            last_retry_scan: Instant::now(),
            links: links::LinkCache::new(LINK_CACHE_ENTRIES),
            record_changes: plan.operations.admin.record_changes,
            runtime: runtime.clone(),
            plugins_dir,
        };
        // Writes a crash kept from being recorded, before anything else is written.
        engine.settle_pending(None)?;
        Ok(engine)
    }

    /// The runtime the engine loads plugins with.
    pub fn plugin_runtime(&self) -> &PluginRuntime {
        &self.runtime
    }

    /// Loads the plugin file `file` of the deployment's plugins folder (for a swap an
    /// admin or a solution asks for).
    pub fn load_plugin_file(
        &self,
        file: &str,
    ) -> Result<crate::plugin::LoadedPlugin, crate::plugin::LoadError> {
        self.runtime.load(&self.plugins_dir, file)
    }

    /// Changes waiting in `map`'s durable queue (paused, or catching up after a pause);
    /// `None` for no running map of that name.
    pub fn queued_changes(&self, map: &str) -> Option<u64> {
        self.maps
            .iter()
            .find(|run| run.plan.name == map)
            .map(|run| run.queued)
    }

    /// Commits a batch to the state store and, once it is durable, to the link cache.
    fn commit(&mut self, commit: &BatchCommit) -> Result<(), crate::state::StateError> {
        self.store.commit(commit)?;
        self.links.apply(commit);
        Ok(())
    }

    /// The state store.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    /// Per-map counters since start, in dependency order.
    pub fn counters(&self) -> Vec<(String, MapCounters)> {
        self.maps
            .iter()
            .map(|map| (map.plan.name.clone(), map.counters.clone()))
            .collect()
    }

    /// Each map's mode, in dependency order.
    pub fn map_modes(&self) -> Vec<(String, MapMode)> {
        self.maps
            .iter()
            .map(|map| (map.plan.name.clone(), map.mode))
            .collect()
    }

    /// Stops `map`: its changes are no longer synced or queued (an initial sync brings
    /// it back in step later). Recorded with its cause.
    pub fn stop(&mut self, map: &str, by: &str) -> anyhow::Result<()> {
        let current = self.store.map_status(map)?.state;
        let run = self.map_mut(map)?;
        run.mode = MapMode::Stopped;
        self.store.transition(MapTransition {
            map: map.to_owned(),
            to: MapState {
                mode: MapMode::Stopped,
                ..current
            },
            cause: format!("{by}: stop"),
        })?;
        Ok(())
    }

    /// Starts a stopped `map` again: live from now on (run an initial sync to bring
    /// over what changed while it was stopped).
    pub fn play(&mut self, map: &str, by: &str) -> anyhow::Result<()> {
        let current = self.store.map_status(map)?.state;
        let run = self.map_mut(map)?;
        run.mode = MapMode::Running;
        self.store.transition(MapTransition {
            map: map.to_owned(),
            to: MapState {
                mode: MapMode::Running,
                ..current
            },
            cause: format!("{by}: play"),
        })?;
        Ok(())
    }

    /// The names of the sides that are offline now, with why.
    pub fn offline_sides(&self) -> Vec<(String, String)> {
        self.sides
            .iter()
            .filter_map(|side| {
                side.offline
                    .as_ref()
                    .map(|offline| (side.name.clone(), offline.reason.clone()))
            })
            .collect()
    }

    /// Steps until `shutdown` is set, waiting briefly when there is nothing to do.
    pub fn run(&mut self, shutdown: &AtomicBool) -> anyhow::Result<()> {
        while !shutdown.load(Ordering::Relaxed) {
            let report = self.step()?;
            if report.captured == 0 {
                self.wait_for_changes();
            }
        }
        Ok(())
    }

    /// Waits briefly (the idle wait) for a change on any online side.
    pub fn wait_for_changes(&mut self) {
        let wait = self.options.idle_wait / self.sides.len().max(1) as u32;
        for side in &mut self.sides {
            if side.offline.is_some() {
                continue;
            }
            // An error here surfaces on the next read, which handles it.
            let _ = side.capture.wait(side.checkpoint, wait);
        }
        if self.sides.iter().all(|side| side.offline.is_some()) {
            std::thread::sleep(self.options.idle_wait);
        }
    }

    /// One pass over every side that is online (or due for a retry).
    pub fn step(&mut self) -> anyhow::Result<StepReport> {
        let mut report = StepReport::default();
        for index in 0..self.sides.len() {
            if let Some(offline) = &self.sides[index].offline
                && Instant::now() < offline.retry_at
            {
                continue;
            }
            match self.step_side(index) {
                Ok(step) => {
                    report.captured += step.captured;
                    report.written += step.written;
                    if self.sides[index].offline.is_some() {
                        self.mark_online(index)?;
                    }
                }
                Err(StepError::Unavailable { side, message }) => {
                    self.mark_offline(side, message)?
                }
                Err(StepError::Fatal(error)) => return Err(error),
            }
        }
        for index in 0..self.maps.len() {
            // An initializing map's live changes are applied as they come (see
            // `initial.rs`), so the ones that had to wait in its queue (a side was
            // offline) go on too: nothing waits behind the initial sync.
            let mode = self.maps[index].mode;
            if matches!(mode, MapMode::Running | MapMode::Initializing)
                && self.maps[index].queued > 0
            {
                report.written += self.drain_queue(index)?;
            }
        }
        if self.last_retry_scan.elapsed() >= self.options.retry_scan {
            self.last_retry_scan = Instant::now();
            report.written += self.retry_due_errors()?;
        }
        Ok(report)
    }

    /// Applies a map's queued changes in order while both its sides are reachable.
    /// Returns the rows written.
    fn drain_queue(&mut self, index: usize) -> anyhow::Result<usize> {
        let mut written = 0;
        let name = self.maps[index].plan.name.clone();
        // Bounded per step, so a map whose queue keeps refilling (fresh looks at keys
        // queued by the batches drained here) cannot hold the other sides up.
        for _ in 0..MAX_QUEUE_ROUNDS_PER_STEP {
            for role in [Side::Erp, Side::Crm] {
                let side = self.side_index(&self.maps[index].plan.endpoint(role).side);
                if self.sides[side].offline.is_some() {
                    return Ok(written);
                }
            }
            let queued = self.store.queued(&name, 0, 1_000)?;
            let Some(last) = queued.last().map(|entry| entry.seq) else {
                self.maps[index].queued = 0;
                return Ok(written);
            };
            let mut commit = BatchCommit::default();
            commit.dequeue.push(QueueRemoval {
                map: name.clone(),
                through: last,
            });
            // Runs of consecutive changes from the same side keep the queue's order.
            let mut start = 0;
            while start < queued.len() {
                let role = queued[start].change.side;
                let end = queued[start..]
                    .iter()
                    .position(|entry| entry.change.side != role)
                    .map_or(queued.len(), |offset| start + offset);
                let changes: Vec<StoredChange> = queued[start..end]
                    .iter()
                    .map(|entry| entry.change.clone())
                    .collect();
                let target = self.side_index(&self.maps[index].plan.endpoint(role.other()).side);
                let source = self.side_index(&self.maps[index].plan.endpoint(role).side);
                let store = self.store.clone();
                let (source_writer, target_writer) = writer_pair(&mut self.sides, source, target);
                let result = process::process(
                    &mut self.maps[index],
                    role,
                    process::BatchOrigin::Live,
                    &changes,
                    store.as_ref(),
                    &mut self.links,
                    (source_writer, target_writer),
                    &mut commit,
                );
                match result {
                    Ok(count) => written += count,
                    Err(error) if error.is_unavailable() => {
                        // Keep the queue as it is; retried when the side is back.
                        self.mark_offline(target, error.to_string())?;
                        return Ok(written);
                    }
                    Err(error) => bail!("map {name}: {error}"),
                }
                start = end;
            }
            self.commit(&commit)?;
            self.maps[index].queued = self.maps[index].queued.saturating_sub(queued.len() as u64);
        }
        Ok(written)
    }

    fn side_index(&self, name: &str) -> usize {
        self.sides
            .iter()
            .position(|side| side.name == name)
            .unwrap_or_default()
    }

    fn mark_offline(&mut self, side: usize, reason: String) -> anyhow::Result<()> {
        let options = self.options;
        let link = &mut self.sides[side];
        let delay = match &link.offline {
            Some(offline) => (offline.delay * 2).min(options.max_backoff),
            None => options.min_backoff,
        };
        // Up to a quarter of jitter, so sides that failed together do not retry together.
        let jitter = delay.mul_f64(rand_fraction() * 0.25);
        let first = link.offline.is_none();
        link.offline = Some(Offline {
            since: link
                .offline
                .as_ref()
                .map_or_else(Instant::now, |offline| offline.since),
            retry_at: Instant::now() + delay + jitter,
            delay,
            reason: reason.clone(),
        });
        if first {
            // Whatever failed, the writer's connection to the side is as suspect as the
            // capture's: one made before the outage would fail on first use once the
            // side is back and put it offline again.
            link.writer.disconnect();
            tracing::warn!(side = %link.name, "side offline: {reason}");
            let name = link.name.clone();
            self.record_side_state(&name, true, &format!("side {name} unreachable: {reason}"))?;
        }
        Ok(())
    }

    fn mark_online(&mut self, side: usize) -> anyhow::Result<()> {
        let Some(offline) = self.sides[side].offline.take() else {
            return Ok(());
        };
        let name = self.sides[side].name.clone();
        tracing::info!(side = %name, after = ?offline.since.elapsed(), "side back online");
        self.record_side_state(
            &name,
            false,
            &format!(
                "side {name} reachable again after {:?}",
                offline.since.elapsed()
            ),
        )?;
        // A write whose outcome its loss left unknown, before anything else is written.
        self.settle_pending(Some(side))
    }

    fn record_side_state(&mut self, side: &str, offline: bool, cause: &str) -> anyhow::Result<()> {
        let mut transitions = Vec::new();
        for map in &self.maps {
            for role in [Side::Erp, Side::Crm] {
                if map.plan.endpoint(role).side == side {
                    let current = self.store.map_status(&map.plan.name)?.state;
                    transitions.push(MapTransition {
                        map: map.plan.name.clone(),
                        to: current.with_offline(role, offline),
                        cause: cause.to_owned(),
                    });
                }
            }
        }
        self.store.commit(&BatchCommit {
            transitions,
            ..BatchCommit::default()
        })?;
        Ok(())
    }

    /// Reads one batch from side `index`, routes and processes it.
    fn step_side(&mut self, index: usize) -> Result<StepReport, StepError> {
        let side_name = self.sides[index].name.clone();
        let after = self.sides[index].checkpoint;
        let changes = self.sides[index]
            .capture
            .read(after, self.options.read_limit)
            .map_err(|error| StepError::from_side(index, error))?;
        let Some(last) = changes.last().map(|change| change.position) else {
            return Ok(StepReport::default());
        };
        // Every decision below, queued ones included, rests on reads of the source that
        // must not predate these commits.
        self.sides[index]
            .capture
            .await_visible(last, self.options.visible_wait)
            .map_err(|error| StepError::from_side(index, error))?;
        let captured = changes.len();
        let mut commit = BatchCommit::default();
        let mut written = 0;
        for map_index in 0..self.maps.len() {
            let map = &self.maps[map_index];
            let Some(role) = [Side::Erp, Side::Crm]
                .into_iter()
                .find(|role| map.plan.endpoint(*role).side == side_name)
            else {
                continue;
            };
            let entity = map.plan.endpoint(role).entity.clone();
            let batch: Vec<&CapturedChange> = changes
                .iter()
                .filter(|change| change.entity == entity)
                .collect();
            if batch.is_empty() {
                continue;
            }
            if !map.plan.flows_from(role) || map.mode == MapMode::Stopped {
                continue;
            }
            self.maps[map_index].counters.captured(role, batch.len());
            let plan = &self.maps[map_index].plan;
            let stored: Vec<StoredChange> = batch
                .iter()
                .map(|change| {
                    process::stored_change(&plan.name, role, &plan.endpoint(role).key, change)
                })
                .collect();
            if self.record_changes {
                commit.record.extend(stored.iter().cloned());
            }
            let target = self.side_index(&plan.endpoint(role.other()).side);
            let map = &mut self.maps[map_index];
            if map.mode == MapMode::Paused || map.queued > 0 || self.sides[target].offline.is_some()
            {
                map.queued += stored.len() as u64;
                commit.enqueue.extend(stored);
                continue;
            }
            written += self.process_map_batch(map_index, role, &stored, &mut commit)?;
        }
        commit.checkpoints.push(Checkpoint {
            side: self.sides[index].role,
            map: None,
            position: last,
        });
        self.commit(&commit)
            .map_err(|error| StepError::Fatal(error.into()))?;
        let side = &mut self.sides[index];
        side.checkpoint = last;
        side.capture
            .acknowledge(last)
            .map_err(|error| StepError::from_side(index, error))?;
        Ok(StepReport { captured, written })
    }

    /// Transforms and applies `changes` of one map coming from `role`; adds links,
    /// errors and activity to `commit`. Returns the number of rows written.
    fn process_map_batch(
        &mut self,
        map_index: usize,
        role: Side,
        changes: &[StoredChange],
        commit: &mut BatchCommit,
    ) -> Result<usize, StepError> {
        let target_side = self.maps[map_index]
            .plan
            .endpoint(role.other())
            .side
            .clone();
        let target_index = self.side_index(&target_side);
        let source_index = self.side_index(&self.maps[map_index].plan.endpoint(role).side);
        let store = self.store.clone();
        let map = &mut self.maps[map_index];
        let (source_writer, target_writer) =
            writer_pair(&mut self.sides, source_index, target_index);
        match process::process(
            map,
            role,
            process::BatchOrigin::Live,
            changes,
            store.as_ref(),
            &mut self.links,
            (source_writer, target_writer),
            commit,
        ) {
            Ok(written) => Ok(written),
            Err(error) if error.is_unavailable() => {
                // The target went away mid-batch: nothing of this batch was applied (one
                // transaction); the map's queue keeps the changes until it is back.
                self.maps[map_index].queued += changes.len() as u64;
                commit.enqueue.extend(changes.iter().cloned());
                self.mark_offline(target_index, error.to_string())
                    .map_err(StepError::Fatal)?;
                Ok(0)
            }
            Err(error) => Err(StepError::Fatal(anyhow::anyhow!(
                "map {}: {error}",
                self.maps[map_index].plan.name
            ))),
        }
    }

    /// Pauses `map`: capture goes on, its changes wait in its durable queue.
    pub fn pause(&mut self, map: &str, by: &str) -> anyhow::Result<()> {
        let run = self.map_mut(map)?;
        run.mode = MapMode::Paused;
        let current = self.store.map_status(map)?.state;
        self.store.transition(MapTransition {
            map: map.to_owned(),
            to: MapState {
                mode: MapMode::Paused,
                ..current
            },
            cause: format!("{by}: pause"),
        })?;
        Ok(())
    }

    /// Resumes a paused `map` with `mode`; see [`ResumeMode`].
    pub fn resume(&mut self, map: &str, mode: ResumeMode, by: &str) -> anyhow::Result<()> {
        let index = self
            .maps
            .iter()
            .position(|run| run.plan.name == map)
            .with_context(|| format!("no map named {map}"))?;
        let current = self.store.map_status(map)?.state;
        let cause = format!(
            "{by}: resume ({})",
            match mode {
                ResumeMode::CatchUp => "catch up",
                ResumeMode::SkipToLive => "skip to live",
                ResumeMode::Discard => "discard",
            }
        );
        match mode {
            ResumeMode::CatchUp => {
                self.store.transition(MapTransition {
                    map: map.to_owned(),
                    to: MapState {
                        mode: MapMode::CatchingUp,
                        ..current
                    },
                    cause: cause.clone(),
                })?;
                self.maps[index].mode = MapMode::CatchingUp;
                self.drain_queue(index)?;
            }
            ResumeMode::SkipToLive | ResumeMode::Discard => loop {
                let queued = self.store.queued(map, 0, 1_000)?;
                let Some(last) = queued.last().map(|entry| entry.seq) else {
                    break;
                };
                let mut commit = BatchCommit::default();
                commit.dequeue.push(QueueRemoval {
                    map: map.to_owned(),
                    through: last,
                });
                if mode == ResumeMode::SkipToLive {
                    commit.errors.extend(queued.iter().map(|entry| NewError {
                        change: entry.change.clone(),
                        error: SyncError {
                            retryable: true,
                            ..SyncError::new(
                                ErrorClass::TargetUnavailable,
                                "skipped when the map resumed with skip-to-live; retry to apply it",
                            )
                        },
                        next_retry: None,
                        conflict: None,
                        plugin_version: None,
                    }));
                } else {
                    commit.activity.push(ActivityEntry::new(
                        Some(map),
                        ActivityKind::Discarded,
                        format!(
                            "{} queued change(s) discarded on resume by {by}",
                            queued.len()
                        ),
                    ));
                }
                self.commit(&commit)?;
                self.maps[index].queued =
                    self.maps[index].queued.saturating_sub(queued.len() as u64);
            },
        }
        self.maps[index].mode = MapMode::Running;
        self.store.transition(MapTransition {
            map: map.to_owned(),
            to: MapState {
                mode: MapMode::Running,
                ..current
            },
            cause,
        })?;
        Ok(())
    }

    fn map_mut(&mut self, map: &str) -> anyhow::Result<&mut MapRun> {
        self.maps
            .iter_mut()
            .find(|run| run.plan.name == map)
            .with_context(|| format!("no map named {map}"))
    }
}

/// The writers of two different sides at once (source and target of a batch).
fn writer_pair(
    sides: &mut [SideLink],
    source: usize,
    target: usize,
) -> (&mut dyn ApplyBatch, &mut dyn ApplyBatch) {
    assert_ne!(
        source, target,
        "a side plays one role, so source and target differ"
    );
    if source < target {
        let (low, high) = sides.split_at_mut(target);
        (low[source].writer.as_mut(), high[0].writer.as_mut())
    } else {
        let (low, high) = sides.split_at_mut(source);
        (high[0].writer.as_mut(), low[target].writer.as_mut())
    }
}

/// Why a step stopped.
enum StepError {
    /// A side could not be reached; it goes offline and is retried later.
    Unavailable { side: usize, message: String },
    /// Anything else stops the engine.
    Fatal(anyhow::Error),
}

impl StepError {
    fn from_side(side: usize, error: SideError) -> StepError {
        if error.is_unavailable() {
            StepError::Unavailable {
                side,
                message: error.to_string(),
            }
        } else {
            StepError::Fatal(error.into())
        }
    }
}

impl From<anyhow::Error> for StepError {
    fn from(error: anyhow::Error) -> Self {
        StepError::Fatal(error)
    }
}

/// The PostgreSQL connector's options for side `side`: slot, publication and origin
/// named after the side, the password read from its environment variable.
fn postgres_options(
    side: &str,
    server: &crate::config::ServerConnection,
) -> anyhow::Result<PostgresOptions> {
    let mut options = PostgresOptions::new(server.url.clone(), side);
    if let Some(secret) = &server.password {
        options.password =
            Some(secret.read().with_context(|| {
                format!("side {side}: reading the password from ${}", secret.var)
            })?);
    }
    Ok(options)
}

/// The MariaDB/MySQL connector's options for side `side`: stream record and marker
/// named after the side, the password read from its environment variable.
fn mysql_options(
    side: &str,
    server: &crate::config::ServerConnection,
) -> anyhow::Result<MysqlOptions> {
    let mut options = MysqlOptions::new(server.url.clone(), side);
    if let Some(secret) = &server.password {
        options.password =
            Some(secret.read().with_context(|| {
                format!("side {side}: reading the password from ${}", secret.var)
            })?);
    }
    Ok(options)
}

/// Checks `map` against its tables on both sides as `dualwrite check` does
/// ([`crate::check::map_fit_findings`]: the plugin's tables and keys, the columns it maps
/// present, writable and of a type that holds their kind): the engine refuses to run
/// what the checks refuse, naming each problem with its code.
fn check_map_fits(
    map: &MapPlan,
    runner: &MapPluginRunner,
    sides: &mut [SideLink],
) -> anyhow::Result<()> {
    let descriptor = runner.descriptor();
    let mut findings = Vec::new();
    let mut schemas = Vec::new();
    for role in [Side::Erp, Side::Crm] {
        let endpoint = map.endpoint(role);
        let Some(side) = sides.iter_mut().find(|side| side.name == endpoint.side) else {
            bail!("map {}: unknown side {}", map.name, endpoint.side);
        };
        let schema = side
            .writer
            .table_schema(&endpoint.entity)
            .with_context(|| format!("map {}: {} side", map.name, role))?;
        findings.extend(crate::check::map_fit_findings(
            map,
            Some(descriptor),
            role,
            &schema,
        ));
        schemas.push(schema);
    }
    if let [erp, crm] = schemas.as_slice() {
        findings.extend(crate::check::capacity_findings(map, descriptor, erp, crm));
    }
    if !findings.is_empty() {
        let lines: Vec<String> = findings.iter().map(ToString::to_string).collect();
        bail!(
            "map {} does not fit its tables (dualwrite check reports the same):\n{}",
            map.name,
            lines.join("\n")
        );
    }
    Ok(())
}

/// Records in the activity log that `map` now runs a plugin file whose content differs
/// from the one it last ran (or its first), with both hashes and the plugin's own
/// version and config.
fn record_plugin_version(
    store: &dyn StateStore,
    map: &str,
    runner: &MapPluginRunner,
) -> anyhow::Result<()> {
    let plugin = runner.plugin();
    let hash = plugin.hash().short();
    let mut previous: Option<String> = None;
    let mut after_id = 0;
    loop {
        let page = store.activity(&crate::state::ActivityQuery {
            map: Some(map.to_owned()),
            kind: Some(ActivityKind::PluginVersion),
            after_id,
            limit: 1_000,
            ..crate::state::ActivityQuery::default()
        })?;
        let Some(last) = page.last() else { break };
        after_id = last.id;
        previous = last.entry.plugin_version.clone();
    }
    if previous.as_deref() == Some(hash.as_str()) {
        return Ok(());
    }
    let descriptor = runner.descriptor();
    let mut entry = ActivityEntry::new(
        Some(map),
        ActivityKind::PluginVersion,
        match &previous {
            Some(old) => format!(
                "plugin {} {} ({hash}) replaces {old}",
                plugin.file(),
                descriptor.version
            ),
            None => format!(
                "plugin {} {} ({hash}) runs the map",
                plugin.file(),
                descriptor.version
            ),
        },
    );
    entry.plugin_version = Some(hash);
    entry.detail = Some(serde_json::json!({
        "file": plugin.file(),
        "hash": plugin.hash().hex(),
        "previous": previous,
        "plugin": descriptor.name,
        "version": descriptor.version,
        "world_version": plugin.world_version(),
    }));
    store.commit(&BatchCommit {
        activity: vec![entry],
        ..BatchCommit::default()
    })?;
    Ok(())
}

/// The role of each side the enabled maps use. A side plays one role for every map
/// (the ERP database is the ERP side of all its maps), which is also how its checkpoint
/// is kept; a side used in both roles is refused.
fn side_roles(plan: &Plan) -> anyhow::Result<HashMap<String, Side>> {
    let mut roles: HashMap<String, Side> = HashMap::new();
    for map in plan.maps.iter().filter(|map| map.enabled) {
        for role in [Side::Erp, Side::Crm] {
            let side = &map.endpoint(role).side;
            match roles.insert(side.clone(), role) {
                Some(previous) if previous != role => bail!(
                    "side {side} is the {previous} side of one map and the {role} side of map \
                     {}; a side must play the same role in every map",
                    map.name
                ),
                _ => {}
            }
        }
    }
    Ok(roles)
}

/// A number in [0, 1) from the clock's nanoseconds: enough spread for retry jitter.
fn rand_fraction() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    f64::from(nanos % 1_000_000) / 1_000_000.0
}
