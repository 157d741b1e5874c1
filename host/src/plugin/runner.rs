//! Running one map's plugin: calls under the sandbox limits, trap narrowing, output
//! checks and quarantine.
//!
//! A [`MapPluginRunner`] owns one live instance of a plugin, configured for one map. A
//! batch goes in as one `transform` call. If the call traps (or hits a limit, or breaks
//! the contract for the batch as a whole), the instance is thrown away and the batch is
//! split in halves until the poison change(s) stand alone: they get a `plugin-trapped`
//! error, every other change its normal result. After
//! [`Limits::quarantine_after`](super::Limits::quarantine_after) consecutive trapped
//! changes the plugin is quarantined and no longer called.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Store, Trap};

use super::bindings::MapPlugin;
use super::engine::EPOCH_TICK;
use super::loader::LoadedPlugin;
use super::state::{Lookups, PluginLogLine, PluginState};
use crate::change::{
    Change, ConfigError, Descriptor, EntitySpec, ErrorClass, ErrorKind, Outcome, PluginError, Side,
    SyncError, TrapReason, Write,
};

/// Most fields a side may declare.
const MAX_FIELDS: usize = 4096;

/// The result of one change after the plugin ran and its output was checked.
#[derive(Debug, Clone, PartialEq)]
pub enum TransformResult {
    /// Excluded by the map's filter.
    Filtered,
    /// Writes for the other side (possibly none), checked against the descriptor.
    Writes(Vec<Write>),
    /// The change failed; the error says why and whether it is retried.
    Failed(SyncError),
}

/// Why a plugin could not be started (instantiated, configured, described).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The plugin refused its config.
    #[error("{file}: the plugin refused its config at `{}`: {}", error.path, error.message)]
    Config {
        /// The plugin file.
        file: String,
        /// What the plugin said.
        error: ConfigError,
    },
    /// Instantiation, `configure` or `describe` trapped or hit a limit.
    #[error("{file}: {error}")]
    Trapped {
        /// The plugin file.
        file: String,
        /// The trap.
        error: SyncError,
    },
    /// `describe` returned something unusable.
    #[error("{file}: invalid descriptor: {message}")]
    InvalidDescriptor {
        /// The plugin file.
        file: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Counters of a runner, for metrics and benchmarks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunnerStats {
    /// `transform` calls made (narrowing retries included).
    pub calls: u64,
    /// Changes handed to the plugin.
    pub changes: u64,
    /// Changes that ended `plugin-trapped`.
    pub trapped_changes: u64,
    /// Instances created (the first one included).
    pub instances: u64,
    /// Fuel consumed by all calls.
    pub fuel_consumed: u64,
    /// How long `transform` calls took.
    pub call_times: CallTimes,
}

/// A histogram of call durations with fixed bounds ([`CallTimes::BOUNDS`]), for the
/// plugin call time metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallTimes {
    /// Calls at or under each bound of [`CallTimes::BOUNDS`] (not cumulative); calls
    /// above the last bound are only in `count`.
    pub buckets: [u64; CallTimes::BOUNDS.len()],
    /// All calls.
    pub count: u64,
    /// Their total duration in seconds.
    pub sum_seconds: f64,
}

impl CallTimes {
    /// Upper bounds of the buckets, in seconds: 50 µs to 5 s.
    pub const BOUNDS: [f64; 12] = [
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.1, 0.5, 5.0,
    ];

    /// Counts one call of `seconds`.
    pub fn observe(&mut self, seconds: f64) {
        self.count += 1;
        self.sum_seconds += seconds;
        if let Some(bucket) = Self::BOUNDS.iter().position(|bound| seconds <= *bound) {
            self.buckets[bucket] += 1;
        }
    }
}

struct LiveInstance {
    store: Store<PluginState>,
    bindings: MapPlugin,
}

/// One map's plugin, configured and ready to transform batches.
pub struct MapPluginRunner {
    plugin: LoadedPlugin,
    config: String,
    lookups: Arc<dyn Lookups>,
    live: Option<LiveInstance>,
    descriptor: Descriptor,
    trap_streak: u32,
    quarantine: Option<String>,
    logs: Vec<PluginLogLine>,
    stats: RunnerStats,
}

impl MapPluginRunner {
    pub(super) fn start(
        plugin: LoadedPlugin,
        config: &str,
        lookups: Arc<dyn Lookups>,
    ) -> Result<MapPluginRunner, StartError> {
        let file = plugin.file().to_owned();
        let mut runner = MapPluginRunner {
            plugin,
            config: config.to_owned(),
            lookups,
            live: None,
            descriptor: placeholder_descriptor(),
            trap_streak: 0,
            quarantine: None,
            logs: Vec::new(),
            stats: RunnerStats::default(),
        };
        match runner.instantiate() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(StartError::Config { file, error }),
            Err(error) => return Err(StartError::Trapped { file, error }),
        }
        runner.descriptor = runner.call_describe()?;
        Ok(runner)
    }

    /// What the plugin says about itself as configured.
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    /// The plugin this runner runs.
    pub fn plugin(&self) -> &LoadedPlugin {
        &self.plugin
    }

    /// The lookups its plugin calls reach (to start a successor with the same ones).
    pub fn lookups(&self) -> Arc<dyn Lookups> {
        self.lookups.clone()
    }

    /// Why the plugin is quarantined, if it is.
    pub fn quarantined(&self) -> Option<&str> {
        self.quarantine.as_deref()
    }

    /// The counters so far.
    pub fn stats(&self) -> &RunnerStats {
        &self.stats
    }

    /// Takes the lines the plugin logged since the last call of this method.
    pub fn take_logs(&mut self) -> Vec<PluginLogLine> {
        std::mem::take(&mut self.logs)
    }

    /// Applies a new config. On error the previous config stays in force.
    pub fn reconfigure(&mut self, config: &str) -> Result<(), StartError> {
        let file = self.plugin.file().to_owned();
        let previous = std::mem::replace(&mut self.config, config.to_owned());
        let result = self.call(0, |bindings, store| {
            bindings
                .dualwrite_table_map_plugin()
                .call_configure(store, config)
        });
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                self.config = previous;
                return Err(StartError::Config { file, error });
            }
            Err(error) => {
                self.config = previous;
                return Err(StartError::Trapped { file, error });
            }
        }
        match self.call_describe() {
            Ok(descriptor) => {
                self.descriptor = descriptor;
                Ok(())
            }
            Err(error) => {
                // Go back to the previous config on a fresh instance.
                self.config = previous;
                self.live = None;
                Err(error)
            }
        }
    }

    /// Filters and transforms a batch: one result per change, in order.
    pub fn transform(&mut self, batch: &[Change]) -> Vec<TransformResult> {
        let mut results: Vec<Option<TransformResult>> = vec![None; batch.len()];
        self.transform_range(batch, &mut results);
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| TransformResult::Failed(self.quarantined_error()))
            })
            .collect()
    }

    fn transform_range(&mut self, batch: &[Change], results: &mut [Option<TransformResult>]) {
        if batch.is_empty() || self.quarantine.is_some() {
            return;
        }
        self.stats.calls += 1;
        self.stats.changes += batch.len() as u64;
        let started = std::time::Instant::now();
        let called = self.call(batch.len(), |bindings, store| {
            bindings
                .dualwrite_table_map_plugin()
                .call_transform(store, batch)
        });
        self.stats
            .call_times
            .observe(started.elapsed().as_secs_f64());
        let failure = match called {
            Ok(outcomes) if outcomes.len() == batch.len() => {
                self.trap_streak = 0;
                for ((slot, change), outcome) in results.iter_mut().zip(batch).zip(outcomes) {
                    *slot = Some(self.check_outcome(change, outcome));
                }
                return;
            }
            Ok(outcomes) => SyncError::trapped(
                TrapReason::InvalidOutput,
                format!(
                    "transform returned {} outcomes for a batch of {} changes",
                    outcomes.len(),
                    batch.len()
                ),
            ),
            Err(error) => error,
        };
        if batch.len() == 1 {
            self.stats.trapped_changes += 1;
            self.trap_streak += 1;
            results[0] = Some(TransformResult::Failed(failure));
            if self.trap_streak >= self.plugin.inner.limits.quarantine_after {
                self.quarantine = Some(format!(
                    "{} consecutive changes trapped; last: {}",
                    self.trap_streak,
                    results[0]
                        .as_ref()
                        .map(|result| match result {
                            TransformResult::Failed(error) => error.to_string(),
                            _ => String::new(),
                        })
                        .unwrap_or_default()
                ));
                tracing::error!(
                    plugin = %self.plugin.file(),
                    reason = self.quarantine.as_deref().unwrap_or_default(),
                    "plugin quarantined"
                );
            }
            return;
        }
        let middle = batch.len() / 2;
        let (left_batch, right_batch) = batch.split_at(middle);
        let (left_results, right_results) = results.split_at_mut(middle);
        self.transform_range(left_batch, left_results);
        self.transform_range(right_batch, right_results);
    }

    fn quarantined_error(&self) -> SyncError {
        let mut error = SyncError::trapped(
            TrapReason::Quarantined,
            format!(
                "not attempted: the plugin is quarantined ({})",
                self.quarantine.as_deref().unwrap_or("unknown reason")
            ),
        );
        // The change itself did nothing wrong; it can run once the plugin is fixed.
        error.retryable = true;
        error
    }

    /// Checks one outcome against the contract and turns it into a result.
    fn check_outcome(&self, change: &Change, outcome: Outcome) -> TransformResult {
        match outcome {
            Outcome::Filtered => TransformResult::Filtered,
            Outcome::Failed(error) => TransformResult::Failed(self.plugin_error(change, error)),
            Outcome::Writes(writes) => {
                let limit = self.plugin.inner.limits.max_writes_per_change;
                if writes.len() > limit {
                    return TransformResult::Failed(SyncError::trapped(
                        TrapReason::OutputLimit,
                        format!(
                            "returned {} writes for one change; the limit is {limit}",
                            writes.len()
                        ),
                    ));
                }
                let target = self.descriptor.entity(change.source.other());
                for (index, write) in writes.iter().enumerate() {
                    if let Err(message) = check_write(target, write) {
                        return TransformResult::Failed(SyncError::trapped(
                            TrapReason::InvalidOutput,
                            format!("write {} to {}: {message}", index + 1, target.entity),
                        ));
                    }
                }
                TransformResult::Writes(writes)
            }
        }
    }

    fn plugin_error(&self, change: &Change, error: PluginError) -> SyncError {
        let class = match error.kind {
            ErrorKind::Rejected => ErrorClass::PluginRejected,
            ErrorKind::Transient => ErrorClass::TargetUnavailable,
            ErrorKind::DependencyMissing => ErrorClass::DependencyMissing,
        };
        let source = self.descriptor.entity(change.source);
        SyncError {
            field: error
                .field
                .and_then(|id| source.fields.get(id as usize))
                .map(|field| field.name.clone()),
            ..SyncError::new(class, error.message)
        }
    }

    fn call_describe(&mut self) -> Result<Descriptor, StartError> {
        let file = self.plugin.file().to_owned();
        let descriptor = self
            .call(0, |bindings, store| {
                bindings.dualwrite_table_map_plugin().call_describe(store)
            })
            .map_err(|error| StartError::Trapped {
                file: file.clone(),
                error,
            })?;
        check_descriptor(&descriptor)
            .map_err(|message| StartError::InvalidDescriptor { file, message })?;
        Ok(descriptor)
    }

    /// Creates a fresh instance and configures it. The outer error is a trap; the inner
    /// one the plugin refusing the config.
    fn instantiate(&mut self) -> Result<Result<(), ConfigError>, SyncError> {
        let inner = &self.plugin.inner;
        let limits = &inner.limits;
        let state = PluginState::new(
            self.lookups.clone(),
            limits.memory_bytes,
            limits.max_log_lines_per_call,
        );
        let mut store = Store::new(&inner.engine, state);
        store.limiter(|state| state.limiter());
        store.epoch_deadline_trap();
        arm(
            &mut store,
            limits,
            limits.fuel_per_call,
            limits.deadline_per_call,
        )?;
        let bindings = inner
            .pre
            .instantiate(&mut store)
            .map_err(|error| classify(&error, &store, limits))?;
        self.stats.instances += 1;
        let configured = bindings
            .dualwrite_table_map_plugin()
            .call_configure(&mut store, &self.config)
            .map_err(|error| classify(&error, &store, limits))?;
        self.collect_logs(&mut store);
        if configured.is_ok() {
            self.live = Some(LiveInstance { store, bindings });
        }
        Ok(configured)
    }

    /// Runs `f` on the live instance (creating one if needed) under the limits for a
    /// call over `changes` changes. A trap drops the instance.
    fn call<R>(
        &mut self,
        changes: usize,
        f: impl FnOnce(&MapPlugin, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, SyncError> {
        if self.live.is_none() {
            match self.instantiate()? {
                Ok(()) => {}
                Err(error) => {
                    // The config was accepted before; refusing it now is a broken plugin.
                    return Err(SyncError::trapped(
                        TrapReason::InvalidOutput,
                        format!(
                            "a fresh instance refused the config it accepted before, at `{}`: {}",
                            error.path, error.message
                        ),
                    ));
                }
            }
        }
        let Some(mut live) = self.live.take() else {
            return Err(SyncError::trapped(
                TrapReason::Trap,
                "no instance could be created",
            ));
        };
        let limits = self.plugin.inner.limits;
        let count = changes as u64;
        let fuel = limits
            .fuel_per_call
            .saturating_add(limits.fuel_per_change.saturating_mul(count));
        let deadline = limits.deadline_per_call + limits.deadline_per_change * changes as u32;
        arm(&mut live.store, &limits, fuel, deadline)?;
        live.store.data_mut().begin_call();
        let result = f(&live.bindings, &mut live.store);
        if let Ok(remaining) = live.store.get_fuel() {
            self.stats.fuel_consumed += fuel.saturating_sub(remaining);
        }
        self.collect_logs(&mut live.store);
        match result {
            Ok(value) => {
                self.live = Some(live);
                Ok(value)
            }
            Err(error) => Err(classify(&error, &live.store, &limits)),
        }
    }

    fn collect_logs(&mut self, store: &mut Store<PluginState>) {
        let (lines, dropped) = store.data_mut().take_logs();
        for line in &lines {
            tracing::debug!(plugin = %self.plugin.file(), level = ?line.level, "{}", line.message);
        }
        self.logs.extend(lines);
        if dropped > 0 {
            tracing::warn!(plugin = %self.plugin.file(), dropped, "plugin log lines dropped by the rate limit");
        }
    }
}

/// Sets the fuel and the deadline of the next call.
fn arm(
    store: &mut Store<PluginState>,
    limits: &super::Limits,
    fuel: u64,
    deadline: Duration,
) -> Result<(), SyncError> {
    if limits.meter_fuel {
        store.set_fuel(fuel).map_err(|error| {
            SyncError::trapped(TrapReason::Trap, format!("setting fuel: {error}"))
        })?;
    }
    let ticks = deadline.as_nanos() / EPOCH_TICK.as_nanos() + 1;
    store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
    Ok(())
}

/// Turns a failed call into a `plugin-trapped` error with the limit it hit.
fn classify(
    error: &wasmtime::Error,
    store: &Store<PluginState>,
    limits: &super::Limits,
) -> SyncError {
    let trap = error.downcast_ref::<Trap>().copied();
    let memory_refused = store.data().memory_refused();
    // The message stays the same from build to build (no backtrace offsets), so change
    // sets can expect it; the backtrace goes to the log for the plugin's author.
    tracing::debug!("plugin call failed: {error:?}");
    let detail = || match trap {
        Some(trap) => trap.to_string().replace("wasm trap: ", ""),
        None => error.root_cause().to_string(),
    };
    match trap {
        Some(Trap::OutOfFuel) => SyncError::trapped(
            TrapReason::Fuel,
            "used up its fuel (instruction budget) for the call".to_owned(),
        ),
        Some(Trap::Interrupt) => SyncError::trapped(
            TrapReason::Deadline,
            "ran past the call's deadline".to_owned(),
        ),
        Some(Trap::StackOverflow) => SyncError::trapped(
            TrapReason::Stack,
            format!(
                "exhausted its call stack (limit {} KiB)",
                limits.stack_bytes >> 10
            ),
        ),
        _ if memory_refused => SyncError::trapped(
            TrapReason::Memory,
            format!(
                "tried to grow its memory past the cap of {} MiB",
                limits.memory_bytes >> 20
            ),
        ),
        _ => SyncError::trapped(TrapReason::Trap, format!("trapped: {}", detail())),
    }
}

/// Checks a write against the target entity: known field ids, each at most once, every
/// key field present, values of the declared kinds.
fn check_write(target: &EntitySpec, write: &Write) -> Result<(), String> {
    let field_count = target.fields.len();
    let mut seen = SeenFields::new(field_count);
    for field_value in &write.fields {
        let id = field_value.field as usize;
        let Some(spec) = target.fields.get(id) else {
            return Err(format!(
                "field id {id} does not exist ({} declares {field_count} fields)",
                target.entity
            ));
        };
        if !seen.insert(id) {
            return Err(format!("field {} is set twice", spec.name));
        }
        if !field_value.value.fits(spec.kind) {
            return Err(format!(
                "field {} is declared {} but was given a {} value",
                spec.name,
                spec.kind.as_str(),
                field_value.value.kind_name()
            ));
        }
    }
    for (id, spec) in target.fields.iter().enumerate() {
        if spec.key && !seen.contains(id) {
            return Err(format!("key field {} is missing", spec.name));
        }
    }
    Ok(())
}

/// The field ids a write has set: a bit set on the stack for the usual entity of up to
/// 128 fields, a vector beyond that. Checked for every write, so it avoids allocating.
enum SeenFields {
    Small(u128),
    Large(Vec<bool>),
}

impl SeenFields {
    fn new(field_count: usize) -> SeenFields {
        if field_count <= 128 {
            SeenFields::Small(0)
        } else {
            SeenFields::Large(vec![false; field_count])
        }
    }

    /// Marks `id` seen; false if it already was. `id` is below the field count.
    fn insert(&mut self, id: usize) -> bool {
        match self {
            SeenFields::Small(bits) => {
                let bit = 1u128 << id;
                let fresh = *bits & bit == 0;
                *bits |= bit;
                fresh
            }
            SeenFields::Large(seen) => !std::mem::replace(&mut seen[id], true),
        }
    }

    fn contains(&self, id: usize) -> bool {
        match self {
            SeenFields::Small(bits) => bits & (1u128 << id) != 0,
            SeenFields::Large(seen) => seen[id],
        }
    }
}

/// Checks that a descriptor can be used: field counts, unique non-empty names, keys.
fn check_descriptor(descriptor: &Descriptor) -> Result<(), String> {
    for side in [Side::Erp, Side::Crm] {
        let entity = descriptor.entity(side);
        if entity.entity.is_empty() {
            return Err(format!("the {side} entity has no name"));
        }
        if entity.fields.len() > MAX_FIELDS {
            return Err(format!(
                "{} declares {} fields; at most {MAX_FIELDS} are allowed",
                entity.entity,
                entity.fields.len()
            ));
        }
        let mut names = std::collections::HashSet::new();
        for field in &entity.fields {
            if field.name.is_empty() {
                return Err(format!("{} declares a field with no name", entity.entity));
            }
            if !names.insert(field.name.as_str()) {
                return Err(format!(
                    "{} declares field {} twice",
                    entity.entity, field.name
                ));
            }
        }
        if !entity.fields.iter().any(|field| field.key) {
            return Err(format!("{} declares no key field", entity.entity));
        }
    }
    Ok(())
}

/// The descriptor a runner holds until `describe` has answered.
fn placeholder_descriptor() -> Descriptor {
    Descriptor {
        name: String::new(),
        version: String::new(),
        summary: String::new(),
        erp: EntitySpec::default(),
        crm: EntitySpec::default(),
        mappings: Vec::new(),
        depends_on: Vec::new(),
        config_schema: "{}".to_owned(),
    }
}
