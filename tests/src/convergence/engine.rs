//! Driving an in-process [`Engine`] through a convergence history: the plugin runtime the
//! cases share, and the steps and settles of a history on SQLite (capture read at the
//! step) and on the database servers (capture streamed, so a step first waits for what
//! the test committed).
//!
//! On the servers a committed change may not have reached the engine when it steps. Two
//! things make a history mean the same as on SQLite:
//! - a history's `Step` ([`step_after_capture`]) first waits until the engine has
//!   captured at least as many changes of each side as the test made there (the map's
//!   `captured_from_*` counters), stepping meanwhile: the step sees everything committed
//!   before it, whatever the stream's latency, so a history (and its shrinking) does not
//!   depend on timing;
//! - the end ([`settle_streamed`]) steps, waiting for changes between idle steps, until
//!   [`QUIET_STEPS`] idle steps in a row, every change made captured, and the test's
//!   convergence check holding; or fails after [`TIMEOUT`] (convergence is what is
//!   asserted; the timeout only bounds a failure).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dualwrite::plugin::{Limits, PluginRuntime};
use dualwrite::sync::{Engine, MapCounters, StepReport};

use super::Which;

/// The plugin runtime of a test process; compiled plugin code is cached, so each case's
/// engine loads it quickly.
pub fn runtime() -> &'static PluginRuntime {
    static RUNTIME: OnceLock<(tempfile::TempDir, PluginRuntime)> = OnceLock::new();
    &RUNTIME
        .get_or_init(|| {
            let cache = tempfile::tempdir().expect("cache dir");
            let runtime = PluginRuntime::new(
                Limits {
                    max_instances: 8,
                    ..Limits::default()
                },
                Some(cache.path().join("code")),
            )
            .expect("runtime");
            (cache, runtime)
        })
        .1
}

/// One step; its error as text.
pub fn step(engine: &mut Engine) -> Result<StepReport, String> {
    engine
        .step()
        .map_err(|error| format!("step failed: {error:#}"))
}

/// SQLite: steps until a step finds nothing to do; returns the steps taken. Fails after
/// 10,000 steps or 60 s (the engine keeps finding work: an echo loop).
pub fn settle(engine: &mut Engine) -> Result<usize, String> {
    let started = Instant::now();
    for steps in 1..=10_000 {
        let report = step(engine)?;
        if report.captured == 0 && report.written == 0 {
            return Ok(steps);
        }
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    Err("the engine did not settle: it keeps finding work".to_owned())
}

/// How long a streamed `Step` waits for the changes made before it, and the end for the
/// sides to converge, before the case fails.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Idle steps in a row (each after waiting for a change) that end a streamed settle.
pub const QUIET_STEPS: usize = 3;

/// What the test did to each side so far, as the engine should see it.
#[derive(Debug, Default)]
pub struct Made {
    /// Logical changes (rows changed) on the ERP and on the CRM.
    pub changed: [u64; 2],
    /// Rows written (changed, or updated to the values they held).
    pub touched: [u64; 2],
}

impl Made {
    /// Counts an edit on `side`.
    pub fn add(&mut self, side: Which, changed: bool, touched: bool) {
        let at = side as usize;
        self.changed[at] += u64::from(changed);
        self.touched[at] += u64::from(touched);
    }

    /// Rows changed on both sides.
    pub fn logical_changes(&self) -> u64 {
        self.changed.iter().sum()
    }

    /// Whether the engine captured every change made (at least as many per side).
    pub fn all_captured(&self, counters: &MapCounters) -> bool {
        counters.captured_from_erp >= self.changed[Which::Erp as usize]
            && counters.captured_from_crm >= self.changed[Which::Crm as usize]
    }
}

/// The counters of `map`.
pub fn counters(engine: &Engine, map: &str) -> MapCounters {
    engine
        .counters()
        .into_iter()
        .find(|(name, _)| name == map)
        .expect("the map runs")
        .1
}

/// A history's `Step` on streamed captures: one step, then more (waiting for changes
/// between them) until the engine captured at least every change made so far.
pub fn step_after_capture(
    engine: &mut Engine,
    map: &str,
    made: &Made,
) -> Result<Vec<StepReport>, String> {
    let started = Instant::now();
    let mut reports = vec![step(engine)?];
    while !made.all_captured(&counters(engine, map)) {
        if started.elapsed() > TIMEOUT {
            return Err(format!(
                "the engine did not capture the changes made within {TIMEOUT:?}: made \
                 {made:?}, counters {:?}, offline {:?}",
                counters(engine, map),
                engine.offline_sides()
            ));
        }
        engine.wait_for_changes();
        reports.push(step(engine)?);
    }
    Ok(reports)
}

/// The end of a history on streamed captures: steps until [`QUIET_STEPS`] idle steps in
/// a row, every change made captured and `converged` holding (it describes both tables
/// when they differ); returns the steps taken. Fails after [`TIMEOUT`] with both tables.
pub fn settle_streamed(
    engine: &mut Engine,
    map: &str,
    made: &Made,
    mut converged: impl FnMut() -> Result<(), String>,
) -> Result<usize, String> {
    let started = Instant::now();
    let mut quiet = 0;
    let mut steps = 0;
    loop {
        let report = step(engine)?;
        steps += 1;
        if report.captured == 0 && report.written == 0 && engine.offline_sides().is_empty() {
            quiet += 1;
        } else {
            quiet = 0;
        }
        if quiet >= QUIET_STEPS && made.all_captured(&counters(engine, map)) {
            match converged() {
                Ok(()) => return Ok(steps),
                Err(tables) if started.elapsed() > TIMEOUT => {
                    return Err(format!(
                        "(a) the sides did not converge within {TIMEOUT:?} ({steps} steps)\n\
                         {tables}"
                    ));
                }
                Err(_) => {}
            }
        }
        if started.elapsed() > TIMEOUT {
            return Err(format!(
                "(a) the engine did not settle within {TIMEOUT:?} ({steps} steps, {quiet} idle \
                 in a row); made {made:?}, counters {:?}, offline {:?}\n{}",
                counters(engine, map),
                engine.offline_sides(),
                converged().err().unwrap_or_default()
            ));
        }
        if report.captured == 0 {
            engine.wait_for_changes();
        }
    }
}
