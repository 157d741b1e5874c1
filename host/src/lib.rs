//! dualwrite keeps two systems of record (an ERP and a CRM database, say) in step, in
//! near real time, in both directions. Every table map's filter and transform logic runs
//! as a sandboxed WebAssembly component behind the versioned WIT contract in
//! `wit/table-map.wit`.
//!
//! # Layout
//!
//! - [`change`]: the domain types (values, changes, writes, outcomes, errors); pure data.
//! - [`plugin`]: the Wasm runtime: loading and validating plugin files, the sandbox,
//!   running transforms with trap narrowing and quarantine.
//! - [`replay`]: the change-set format and the replay harness that runs a plugin over
//!   recorded changes with no database (`dualwrite replay`, and the test cases).
//! - [`config`]: the deployment's TOML file, validated into a plan before anything runs.
//! - [`capture`] and [`apply`]: reading changes from, and writing rows to, a side; one
//!   file per connector, a trait at the boundary.
//! - [`state`]: the engine's durable state (checkpoints, links, queues) behind a trait.
//! - [`sync`]: the loop that ties them together: capture, plugin, echo and conflict
//!   checks, apply, durable commit, acknowledge; map modes and offline sides.
//! - [`check`]: the deployment's health checks with stable codes (`dualwrite check`).
//! - [`demo`]: the seeded two-database demo (`dualwrite demo`).
//! - [`admin`]: the admin HTTP API (axum) served by `dualwrite run` and the demo, the
//!   web UI on it (`admin/ui/`), and the engine's end of it (commands between steps,
//!   snapshots, block mode, runtime config changes).
//! - [`alerts`]: alert rules (errors in a window, queue depth, lag, offline sides) and
//!   their evaluation.
//! - [`notify`]: signed webhook notifications with retries and a delivery log.
//! - [`metrics`]: the Prometheus text format of `GET /metrics`.
//! - [`cli`]: the `dualwrite` command line, one file per command.

pub mod admin;
pub mod alerts;
pub mod apply;
pub mod capture;
pub mod change;
pub mod check;
pub mod cli;
pub mod config;
pub mod demo;
pub mod init;
pub mod metrics;
pub mod notify;
pub mod plugin;
pub mod replay;
pub mod solution;
pub mod state;
pub mod sync;
