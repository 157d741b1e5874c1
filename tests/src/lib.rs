//! Shared support for dualwrite's end-to-end tests and benchmarks: where the plugins that
//! `build.rs` compiled from source live, the machine's database servers ([`servers`]),
//! servers of a test's own that it may stop and start ([`private_servers`]) and a real
//! `dualwrite run` process ([`engine_process`]).

pub mod convergence;
pub mod customer_groups;
pub mod engine_process;
pub mod private_servers;
pub mod servers;

use std::path::{Path, PathBuf};

/// The folder holding every plugin component built from `plugins/`, as `<name>.wasm`
/// (and the core module as `<name>.core.wasm`).
pub fn plugins_dir() -> &'static Path {
    Path::new(env!("DUALWRITE_TEST_PLUGINS"))
}

/// The component file of the plugin crate `name` (dashes or underscores).
pub fn plugin_path(name: &str) -> PathBuf {
    plugins_dir().join(format!("{}.wasm", name.replace('-', "_")))
}

/// The folder of the data-driven plugin cases, `tests/cases/`.
pub fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cases")
}

/// SHA-256 of `bytes`, lowercase hex (a plugin file's content hash as the engine reports
/// it).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Polls `check` every 50 ms until it holds; panics naming `what` after `timeout`
/// (running out is a failure, not a timing assertion).
pub fn eventually(what: &str, timeout: std::time::Duration, mut check: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
