//! What a plugin instance's store holds, and the host imports it can call.
//!
//! The imports are the whole of a plugin's authority: `log` (kept per call, cut and
//! rate-limited), `translate-key` and `read-row` (answered by the [`Lookups`] the runner
//! was started with). The memory limiter records a refused growth so a later trap can be
//! reported as the memory cap rather than a bare `unreachable`.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtxView, WasiView};

use super::bindings::HostImports;
use super::wasi::GrantedNothing;
use crate::change::{HostError, LogLevel, Side, Value};

/// Longest log message kept, in bytes; longer ones are cut at a character boundary.
const MAX_LOG_MESSAGE: usize = 4096;

/// Answers a plugin's lookups: key translation through links and row reads.
///
/// The engine implements it over its link store and connectors; `dualwrite replay`
/// over recorded links and rows.
pub trait Lookups: Send + Sync {
    /// The key, on the other side, of the row linked to the row of `entity` on `side`
    /// with key `key`; `None` when it is not linked.
    fn translate_key(
        &self,
        side: Side,
        entity: &str,
        key: &[Value],
    ) -> Result<Option<Vec<Value>>, HostError>;

    /// The values of `fields` of the row of `entity` on `side` with key `key`; `None`
    /// when there is no such row.
    fn read_row(
        &self,
        side: Side,
        entity: &str,
        key: &[Value],
        fields: &[String],
    ) -> Result<Option<Vec<Value>>, HostError>;
}

/// Lookups for a plugin that has no links or rows to consult: nothing is linked, no
/// row exists.
pub struct NoLookups;

impl Lookups for NoLookups {
    fn translate_key(
        &self,
        _: Side,
        _: &str,
        _: &[Value],
    ) -> Result<Option<Vec<Value>>, HostError> {
        Ok(None)
    }

    fn read_row(
        &self,
        _: Side,
        _: &str,
        _: &[Value],
        _: &[String],
    ) -> Result<Option<Vec<Value>>, HostError> {
        Ok(None)
    }
}

/// One line a plugin logged.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginLogLine {
    /// Its severity.
    pub level: LogLevel,
    /// The message, at most 4 KiB.
    pub message: String,
}

/// The data of one plugin instance's store.
pub(crate) struct PluginState {
    lookups: Arc<dyn Lookups>,
    memory: MemoryGuard,
    logs: Vec<PluginLogLine>,
    dropped_logs: usize,
    max_log_lines: usize,
    /// Created on the first WASI call, for components that import WASI.
    wasi: Option<GrantedNothing>,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let wasi = self.wasi.get_or_insert_with(GrantedNothing::new);
        WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut wasi.table,
        }
    }
}

impl PluginState {
    pub(crate) fn new(
        lookups: Arc<dyn Lookups>,
        memory_bytes: usize,
        max_log_lines: usize,
    ) -> Self {
        PluginState {
            lookups,
            memory: MemoryGuard {
                limit: memory_bytes,
                refused: false,
            },
            logs: Vec::new(),
            dropped_logs: 0,
            max_log_lines,
            wasi: None,
        }
    }

    pub(crate) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.memory
    }

    /// Whether a memory growth past the cap was refused since the last call began.
    pub(crate) fn memory_refused(&self) -> bool {
        self.memory.refused
    }

    /// Resets per-call bookkeeping before a call.
    pub(crate) fn begin_call(&mut self) {
        self.memory.refused = false;
    }

    /// Takes the log lines kept so far and the number dropped by the rate limit.
    pub(crate) fn take_logs(&mut self) -> (Vec<PluginLogLine>, usize) {
        let dropped = std::mem::take(&mut self.dropped_logs);
        (std::mem::take(&mut self.logs), dropped)
    }
}

impl HostImports for PluginState {
    fn log(&mut self, level: LogLevel, mut message: String) {
        if self.logs.len() >= self.max_log_lines {
            self.dropped_logs += 1;
            return;
        }
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        self.logs.push(PluginLogLine { level, message });
    }

    fn translate_key(
        &mut self,
        side: Side,
        entity: String,
        key: Vec<Value>,
    ) -> Result<Option<Vec<Value>>, HostError> {
        self.lookups.translate_key(side, &entity, &key)
    }

    fn read_row(
        &mut self,
        side: Side,
        entity: String,
        key: Vec<Value>,
        fields: Vec<String>,
    ) -> Result<Option<Vec<Value>>, HostError> {
        self.lookups.read_row(side, &entity, &key, &fields)
    }
}

/// Refuses memory growth past the cap and remembers that it did.
struct MemoryGuard {
    limit: usize,
    refused: bool,
}

impl ResourceLimiter for MemoryGuard {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // The pooling allocator's own cap refused it.
        self.refused = true;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a plugin needs few. The cap keeps a
        // hostile one from growing host memory through them.
        Ok(desired <= 100_000)
    }
}
