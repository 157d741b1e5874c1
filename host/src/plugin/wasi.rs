//! The WASI context of a plugin that imports WASI: it grants nothing.
//!
//! Components built by some toolchains (Python through componentize-py, JavaScript, Rust
//! for `wasm32-wasip2`) import WASI interfaces even when the plugin does no I/O. They are
//! linked against wasmtime-wasi with a context that has no preopened directories, no
//! environment variables, no arguments, closed stdin, discarded stdout/stderr, no network
//! (all socket addresses denied, no name lookups), a wall clock and a monotonic clock
//! frozen at zero (the Unix epoch), and random generators seeded with a constant. So a
//! plugin still cannot read files, the network, the environment or the time, and its
//! output depends only on its input: replaying a change set gives the same result every
//! time.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

/// The WASI state of one plugin instance.
pub(crate) struct GrantedNothing {
    pub(crate) ctx: WasiCtx,
    pub(crate) table: ResourceTable,
}

impl GrantedNothing {
    pub(crate) fn new() -> GrantedNothing {
        let ctx = WasiCtxBuilder::new()
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(StdRng::seed_from_u64(0))
            .insecure_random(StdRng::seed_from_u64(0))
            .insecure_random_seed(0)
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        GrantedNothing {
            ctx,
            table: ResourceTable::new(),
        }
    }
}

/// A clock that always reads zero.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}
