//! The one place that builds wasmtime's configuration, and the epoch ticker that gives
//! calls their wall-clock deadlines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::Limits;

/// How often the epoch advances; deadlines are counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(2);

/// A wasmtime engine set up for plugins, with a thread that advances its epoch.
pub(crate) struct PluginEngine {
    engine: Engine,
    ticker: Option<EpochTicker>,
}

impl PluginEngine {
    /// Builds the engine: component model, cranelift, fuel, epoch interruption, a stack
    /// limit and the pooling allocator sized by `limits`.
    pub(crate) fn new(limits: &Limits) -> anyhow::Result<PluginEngine> {
        let mut pooling = PoolingAllocationConfig::default();
        pooling
            .total_component_instances(limits.max_instances)
            .total_core_instances(limits.max_instances * 4)
            .total_memories(limits.max_instances * 2)
            .total_tables(limits.max_instances * 4)
            .max_memory_size(limits.memory_bytes)
            .max_core_instances_per_component(16)
            .max_memories_per_component(4)
            .max_tables_per_component(8);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(limits.meter_fuel)
            .epoch_interruption(true)
            .max_wasm_stack(limits.stack_bytes)
            .cranelift_opt_level(wasmtime::OptLevel::Speed)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        let engine = Engine::new(&config)?;
        let ticker = EpochTicker::start(engine.clone())?;
        Ok(PluginEngine {
            engine,
            ticker: Some(ticker),
        })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.stop();
        }
    }
}

/// A background thread that advances the engine's epoch every [`EPOCH_TICK`].
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl EpochTicker {
    fn start(engine: Engine) -> anyhow::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker { stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        // The thread wakes within one tick; a panic there has nothing to report.
        let _ = self.thread.join();
    }
}
