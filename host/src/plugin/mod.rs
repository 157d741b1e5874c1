//! The Wasm plugin runtime: loads map plugins and runs their transforms in a sandbox.
//!
//! Data enters as a plugin file (read through a `cap-std` directory capability, so no
//! configured name can reach outside the plugins folder) and batches of
//! [`Change`](crate::change::Change)s; it leaves as one [`TransformResult`] per change.
//!
//! - [`PluginRuntime`] owns the wasmtime engine (`engine.rs`), the linker with the host
//!   imports (`state.rs`) and the compiled-code cache (`cache.rs`);
//! - [`PluginRuntime::load`] validates a file (`loader.rs`): is it a component, does it
//!   implement a supported world version, does it import only what the host provides;
//! - [`LoadedPlugin::start`] instantiates, configures and describes it, giving a
//!   [`MapPluginRunner`] (`runner.rs`) that calls `transform` under the [`Limits`]:
//!   per-call deadline (epoch interruption), fuel, a memory cap, a stack cap and output
//!   limits. A trap inside a batch is narrowed down to the poison change(s); a plugin
//!   that keeps trapping is quarantined. Nothing a plugin does can panic the host.
//!
//! Plugins get no ambient authority: they import `dualwrite:table-map/host` (log, key
//! translation, row reads through [`Lookups`]) and, if their toolchain insists, WASI
//! with a context that grants nothing (`wasi.rs`): no files, network, environment,
//! clock or entropy.

mod bindings;
mod cache;
mod engine;
mod loader;
mod runner;
mod state;
mod wasi;
pub mod watch;
#[doc(hidden)]
pub mod wit_types;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Linker;

pub use loader::{ContentHash, LoadError, LoadedPlugin, SUPPORTED_WORLD_VERSIONS};
pub use runner::{CallTimes, MapPluginRunner, RunnerStats, StartError, TransformResult};
pub use state::{Lookups, NoLookups, PluginLogLine};

use cache::CodeCache;
use engine::PluginEngine;
use state::PluginState;

/// The sandbox limits every plugin call runs under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory cap per instance, in bytes.
    pub memory_bytes: usize,
    /// Wasm call stack cap, in bytes.
    pub stack_bytes: usize,
    /// Whether calls are metered with fuel. Off leaves only the wall-clock deadline
    /// against runaway plugins, and makes calls faster (see docs/benchmarks.md).
    pub meter_fuel: bool,
    /// Fuel (roughly, Wasm instructions) granted to one call, on top of the per-change
    /// budget.
    pub fuel_per_call: u64,
    /// Fuel granted per change in a batch.
    pub fuel_per_change: u64,
    /// Wall-clock deadline of one call, on top of the per-change allowance.
    pub deadline_per_call: Duration,
    /// Wall-clock allowance per change in a batch.
    pub deadline_per_change: Duration,
    /// Most writes one change may produce.
    pub max_writes_per_change: usize,
    /// Consecutive trapped changes (with no successful call in between) after which the
    /// plugin is quarantined.
    pub quarantine_after: u32,
    /// Most log lines kept per call; the rest are counted and dropped.
    pub max_log_lines_per_call: usize,
    /// Most instances alive at once in the runtime (sizes the pooling allocator).
    pub max_instances: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            stack_bytes: 512 << 10,
            meter_fuel: true,
            fuel_per_call: 2_000_000_000,
            fuel_per_change: 50_000_000,
            deadline_per_call: Duration::from_secs(2),
            deadline_per_change: Duration::from_millis(20),
            max_writes_per_change: 10_000,
            quarantine_after: 5,
            max_log_lines_per_call: 100,
            max_instances: 100,
        }
    }
}

/// Loads plugins and starts runners; one per process is enough. Clones share it.
#[derive(Clone)]
pub struct PluginRuntime {
    engine: Arc<PluginEngine>,
    linker: Arc<Linker<PluginState>>,
    cache: Option<Arc<CodeCache>>,
    /// The components this runtime compiled or read from `cache`, by content hash:
    /// maps running the same plugin file (a deployment of declarative maps) compile it
    /// once. Shared by clones.
    compiled: Arc<
        std::sync::Mutex<
            std::collections::HashMap<loader::ContentHash, wasmtime::component::Component>,
        >,
    >,
    limits: Limits,
}

impl PluginRuntime {
    /// A runtime with `limits`, caching compiled code under `cache_dir` (created if
    /// missing) when one is given.
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> anyhow::Result<PluginRuntime> {
        let engine = PluginEngine::new(&limits)?;
        let mut linker = Linker::new(engine.engine());
        bindings::add_host_to_linker::<PluginState, wasmtime::component::HasSelf<PluginState>>(
            &mut linker,
            |state| state,
        )?;
        // Only components that import WASI use it; see wasi.rs for what it grants.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        let cache = cache_dir
            .map(|dir| CodeCache::open(dir, engine.engine()).map(Arc::new))
            .transpose()?;
        Ok(PluginRuntime {
            engine: Arc::new(engine),
            linker: Arc::new(linker),
            cache,
            compiled: Arc::default(),
            limits,
        })
    }

    /// The limits calls run under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}
