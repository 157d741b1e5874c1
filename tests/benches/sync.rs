//! Sync engine benchmark: SQLite -> SQLite through the customers plugin, end to end.
//!
//! Run with `cargo bench -p dualwrite-tests --bench sync`. A plain binary, not criterion:
//! it measures a running system (two SQLite files, the engine's state store, the Wasm
//! plugin) and prints one summary table with ratios against the baseline measured in the
//! same run. Arguments not starting with `-` pick phases by name (`raw`, `insert`,
//! `update`, `both`, `concurrent`, `latency`, `initial`); `DUALWRITE_BENCH_ROWS` sets N
//! (default 50,000), `DUALWRITE_BENCH_LATENCY_SECS` the latency run (default 10).
//!
//! Setup: the customers map only (`CustCustomerV3Entity` <-> `accounts`, tables made by
//! `demo::create_tables` from the plugin's descriptor), two SQLite files in a temp dir,
//! the engine configured through `dualwrite::config::parse` with side-wins ERP, batch
//! size 1,000, `resolve_lookups = false` (no other map needed) and the default engine
//! options. Rows are the demo's seeded customers (`demo::seed::customer`), all made
//! organizations so that no change is filtered.
//!
//! Phases:
//! - `raw`: the raw limit. The N rows as the CRM receives them (ERP rows through the
//!   plugin, `demo::to_crm`) upserted straight into an empty `accounts` table with
//!   `SqliteWriter::apply` in batches of 1,000 (the engine's own writer, same durability:
//!   WAL, `synchronous = FULL`); then the same N rows updated in two fields the same way
//!   (the raw limit of updates). Informative: the insert again with the capture triggers
//!   installed on the target (the engine's target has them; the writer's marker makes
//!   them skip).
//! - `insert`: N ERP inserts committed by a plain rusqlite connection in batches of
//!   1,000 *before the engine steps* (the engine is open, so capture is installed); then
//!   the time of `step` until all N are written to the CRM and the step that wrote the
//!   last one returned (capture read + plugin + conflict/echo checks + apply + state
//!   commit + acknowledge).
//! - `lean`: the `insert` phase again on a fresh pair of files with `[admin]
//!   activity_every_change = false` and `record_changes = false`; its ratio is against
//!   `insert` (the default, with an activity entry per change and the recording), so it
//!   shows what those two cost.
//! - `update`: the same with N ERP updates changing two fields (`CREDITLIMIT`,
//!   `SALESMEMO`) of those rows.
//! - `both`: N/2 ERP updates and N/2 CRM updates (`description`, `msdyn_creditrating`)
//!   of other rows, both committed before the engine steps; until all N are applied.
//! - `concurrent`: a writer thread commits N ERP updates in batches of 1,000 as fast as
//!   it can while the engine runs; from the writer's first commit until the last change
//!   is applied.
//! - `latency`: the engine loops as `Engine::run` does (step; wait for changes when a
//!   step found none) on the bench's main thread. Once it has stepped, a writer thread
//!   commits single-row ERP updates (`SALESMEMO` set to a unique value, each on its own
//!   row, autocommit) at 1,000/s on schedule for ~10 s and records the instant each
//!   commit returned. A reader thread, on its own connection to the CRM file, reads the
//!   oldest pending rows' `description` by primary key every 0.25 ms, in commit order
//!   (the engine applies a side's changes in commit order), and records the instant it
//!   first reads the new value. Latency = seen - committed: commit-to-visible, an upper
//!   bound by the poll period plus one query. Also printed: the writer's own commit
//!   times and the engine's steps (count, changes per step, slowest);
//!   `DUALWRITE_BENCH_TRACE=1` prints every step or wait over 20 ms as it happens.
//! - `initial`: N rows on the ERP, empty CRM: `engine.initial_sync("customers", 2000,
//!   ..)`; and again with N/2 of the rows already on the CRM with a different
//!   `description` (the ERP as master wins). Rows/s counts the map's rows (distinct
//!   keys, N), reads of both sides included in the time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dualwrite::apply::sqlite::SqliteWriter;
use dualwrite::apply::{ApplyBatch, RowWrite};
use dualwrite::capture::sqlite::{SqliteCapture, SqliteOptions};
use dualwrite::capture::{CaptureStream, CaptureTable, RowImage};
use dualwrite::change::{Side, Value};
use dualwrite::config;
use dualwrite::demo::{self, DemoMap, seed};
use dualwrite::plugin::{Limits, PluginRuntime};
use dualwrite::sync::{Engine, EngineOptions, MapCounters};
use dualwrite_tests::plugins_dir;
use rusqlite::Connection;

const MAP: &str = "customers";
const BATCH: usize = 1_000;
const CHUNK: usize = 2_000;
const LATENCY_RATE: u64 = 1_000;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// The goals of issue 3, item 9.
const GOAL_RATIO: f64 = 0.5;
const GOAL_CHANGES_PER_SEC: f64 = 50_000.0;
const GOAL_P99_MS: f64 = 50.0;
const GOAL_INITIAL_PER_SEC: f64 = 150_000.0;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let wanted = |phase: &str| args.is_empty() || args.iter().any(|arg| arg == phase);
    let rows_n: usize = env_number("DUALWRITE_BENCH_ROWS", 50_000);
    let latency_secs: u64 = env_number("DUALWRITE_BENCH_LATENCY_SECS", 10);
    let load_before = load_average();

    let runtime = PluginRuntime::new(
        Limits {
            max_instances: 8,
            ..Limits::default()
        },
        None,
    )
    .expect("plugin runtime");
    let plugins = cap_std::fs::Dir::open_ambient_dir(plugins_dir(), cap_std::ambient_authority())
        .expect("plugins folder built by build.rs");
    let plugin = runtime
        .load(&plugins, "customers.wasm")
        .expect("load customers");
    let descriptor = plugin.describe_default().expect("describe");
    let map = DemoMap {
        name: MAP,
        plugin_file: "customers.wasm",
        plugin,
        descriptor,
    };
    let data = Data::new(&map, rows_n);
    println!(
        "sync benchmark: N = {rows_n} customers, batches of {BATCH}, {} cores, load average \
         before: {load_before}",
        std::thread::available_parallelism().map_or(0, usize::from)
    );

    let mut results = Results::default();
    let mut raw_insert = None;
    let mut raw_update = None;
    if wanted("raw") {
        let crm_rows = data.crm_rows(&map);
        let (insert, update, with_capture) = raw_limit(&map, &data, &crm_rows);
        results.row("raw: upsert N CRM rows (baseline)", rows_n, insert, None);
        results.row(
            "raw: update 2 fields of N CRM rows (baseline)",
            rows_n,
            update,
            None,
        );
        results.row(
            "raw: upsert N CRM rows, capture triggers installed",
            rows_n,
            with_capture,
            None,
        );
        raw_insert = Some(per_sec(rows_n, insert));
        raw_update = Some(per_sec(rows_n, update));
    }

    let live_phases = ["insert", "lean", "update", "both", "concurrent", "latency"];
    let mut latency = None;
    let mut throughput_goal: Vec<(String, f64, Option<f64>)> = Vec::new();
    if live_phases.iter().any(|phase| wanted(phase)) {
        let deployment = Deployment::new(&map);
        let mut engine = deployment.engine(&runtime, &map);

        let committed = deployment.commit_erp_inserts(&map, &data, 0..rows_n);
        let elapsed = drain(&mut engine, rows_n as u64, 0);
        check_clean(&engine);
        assert_eq!(
            deployment.count(Side::Crm, &map),
            rows_n,
            "all rows on the CRM"
        );
        results.row(
            "source: N ERP inserts committed (capture triggers)",
            rows_n,
            committed,
            None,
        );
        results.row(
            "e2e: ERP inserts -> CRM (backlog)",
            rows_n,
            elapsed,
            raw_insert,
        );
        throughput_goal.push(("ERP inserts".into(), per_sec(rows_n, elapsed), raw_insert));
        let journaled_insert = elapsed;

        if wanted("lean") {
            // The same inserts into a fresh pair, with neither an activity entry per
            // change nor the recording of captured changes: what the two cost.
            let lean = Deployment::new(&map);
            let mut lean_engine = lean.engine_with(
                &runtime,
                &map,
                "[admin]\nactivity_every_change = false\nrecord_changes = false\n",
            );
            lean.commit_erp_inserts(&map, &data, 0..rows_n);
            let lean_elapsed = drain(&mut lean_engine, rows_n as u64, 0);
            check_clean(&lean_engine);
            results.row(
                "e2e: inserts, no activity per change, no recording (vs e2e)",
                rows_n,
                lean_elapsed,
                Some(per_sec(rows_n, journaled_insert)),
            );
        }

        if wanted("update") {
            let committed = deployment.commit_erp_updates(&data, 0..rows_n, 1);
            let elapsed = drain(&mut engine, rows_n as u64, 0);
            check_clean(&engine);
            let last = rows_n - 1;
            assert_eq!(
                deployment.crm_description(&data, last),
                Some(format!("Bench update 1 of customer {last}")),
                "the update reached the CRM"
            );
            results.row(
                "source: N ERP updates committed (capture triggers)",
                rows_n,
                committed,
                None,
            );
            results.row(
                "e2e: ERP updates -> CRM (backlog)",
                rows_n,
                elapsed,
                raw_update,
            );
            throughput_goal.push(("ERP updates".into(), per_sec(rows_n, elapsed), raw_update));
        }

        if wanted("both") {
            let half = rows_n / 2;
            deployment.commit_erp_updates(&data, 0..half, 2);
            deployment.commit_crm_updates(&map, &data, half..rows_n, 2);
            let elapsed = drain(&mut engine, half as u64, (rows_n - half) as u64);
            check_clean(&engine);
            results.row(
                "e2e: both directions, N/2 each way (backlog)",
                rows_n,
                elapsed,
                raw_update,
            );
            throughput_goal.push((
                "both directions".into(),
                per_sec(rows_n, elapsed),
                raw_update,
            ));
        }

        if wanted("concurrent") {
            let started = Instant::now();
            let writer = {
                let erp = deployment.erp.clone();
                let data = data.clone();
                std::thread::spawn(move || {
                    let db = open(&erp);
                    update_erp(&db, &data, 0..data.rows.len(), 3);
                    started.elapsed()
                })
            };
            let elapsed = drain_since(&mut engine, rows_n as u64, 0, started);
            let written = writer.join().expect("writer thread");
            check_clean(&engine);
            results.row(
                "source: N ERP updates committed while the engine runs",
                rows_n,
                written,
                None,
            );
            results.row(
                "e2e: ERP updates -> CRM (concurrent writer)",
                rows_n,
                elapsed,
                raw_update,
            );
            throughput_goal.push((
                "ERP updates, concurrent".into(),
                per_sec(rows_n, elapsed),
                raw_update,
            ));
        }

        if wanted("latency") {
            let figures = measure_latency(&mut engine, &deployment, &data, latency_secs);
            latency = Some(figures);
        }
        println!("files after the live phases: {}", deployment.sizes());
    }

    let mut initial = Vec::new();
    if wanted("initial") {
        for half_on_crm in [false, true] {
            let deployment = Deployment::new(&map);
            demo::write_rows(&deployment.erp, &data.erp_writes(&map)).expect("seed the ERP");
            if half_on_crm {
                let crm_rows = data.crm_rows(&map);
                let crm_key = map.key(Side::Crm);
                let writes: Vec<RowWrite> = crm_rows[..rows_n / 2]
                    .iter()
                    .enumerate()
                    .map(|(index, row)| {
                        let mut row = row.clone();
                        row.insert(
                            "description".into(),
                            Value::Text(format!("Edited in the CRM before sync ({index})")),
                        );
                        RowWrite::upsert(&map.descriptor.crm.entity, key_image(&row, &crm_key), row)
                    })
                    .collect();
                demo::write_rows(&deployment.crm, &writes).expect("seed the CRM");
            }
            let mut engine = deployment.engine(&runtime, &map);
            let started = Instant::now();
            let status = engine
                .initial_sync(MAP, CHUNK, "bench", &mut |_| {})
                .expect("initial sync");
            let elapsed = started.elapsed();
            check_clean(&engine);
            assert!(status.complete);
            assert_eq!(
                deployment.count(Side::Crm, &map),
                rows_n,
                "all rows on the CRM"
            );
            let counters = counters(&engine);
            let label = if half_on_crm {
                "initial sync: N ERP rows, N/2 on the CRM differing"
            } else {
                "initial sync: N ERP rows, empty CRM"
            };
            println!(
                "{label}: read {} rows (both sides), wrote {} to the CRM, {} no-ops",
                status.rows_done, counters.written_to_crm, counters.no_ops
            );
            results.row(label, rows_n, elapsed, None);
            initial.push((label, per_sec(rows_n, elapsed)));
        }
    }

    let load_after = load_average();
    results.print();
    if let Some(latency) = &latency {
        latency.print();
    }
    println!("\ngoals (issue 3, item 9):");
    for (name, rate, raw) in &throughput_goal {
        let ratio = raw.map(|raw| rate / raw);
        println!(
            "  {name}: {rate:.0} changes/s (goal >= {GOAL_CHANGES_PER_SEC:.0}): {}; {}",
            verdict(*rate >= GOAL_CHANGES_PER_SEC),
            match ratio {
                Some(ratio) => format!(
                    "{:.1}% of the raw limit (goal >= {:.0}%): {}",
                    ratio * 100.0,
                    GOAL_RATIO * 100.0,
                    verdict(ratio >= GOAL_RATIO)
                ),
                None => "no raw limit measured (run the raw phase too)".to_owned(),
            }
        );
    }
    if let Some(latency) = &latency {
        println!(
            "  latency p99 at {LATENCY_RATE}/s: {:.1} ms (goal < {GOAL_P99_MS:.0} ms): {}",
            latency.p99_ms,
            verdict(latency.p99_ms < GOAL_P99_MS)
        );
    }
    for (label, rate) in &initial {
        println!(
            "  {label}: {rate:.0} rows/s (goal >= {GOAL_INITIAL_PER_SEC:.0}): {}",
            verdict(*rate >= GOAL_INITIAL_PER_SEC)
        );
    }
    println!("\nload average before: {load_before}; after: {load_after}");
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|text| text.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn per_sec(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// The benchmark's rows, made once.
#[derive(Clone)]
struct Data {
    /// ERP rows, every declared field, by column name.
    rows: Vec<RowImage>,
    /// The ERP columns in declared order.
    erp_columns: Vec<String>,
    erp_key: Vec<String>,
    crm_key: Vec<String>,
    erp_table: String,
    crm_table: String,
}

impl Data {
    fn new(map: &DemoMap, count: usize) -> Data {
        let mut dice = seed::Dice::new(0xBE7C);
        let rows = (0..count)
            .map(|index| {
                let mut row = seed::customer(map, index, &mut dice);
                // Persons are the contacts map's job: the plugin would filter them.
                row.insert("PARTYTYPE".into(), Value::Text("Organization".into()));
                row
            })
            .collect();
        Data {
            rows,
            erp_columns: map
                .descriptor
                .erp
                .fields
                .iter()
                .map(|field| field.name.clone())
                .collect(),
            erp_key: map.key(Side::Erp),
            crm_key: map.key(Side::Crm),
            erp_table: map.descriptor.erp.entity.clone(),
            crm_table: map.descriptor.crm.entity.clone(),
        }
    }

    /// The rows as the CRM receives them (through the plugin).
    fn crm_rows(&self, map: &DemoMap) -> Vec<RowImage> {
        demo::to_crm(map, &self.rows)
            .expect("transform")
            .into_iter()
            .map(|row| row.expect("an organization is not filtered"))
            .collect()
    }

    fn erp_writes(&self, map: &DemoMap) -> Vec<RowWrite> {
        self.rows
            .iter()
            .map(|row| {
                RowWrite::upsert(
                    &map.descriptor.erp.entity,
                    key_image(row, &self.erp_key),
                    row.clone(),
                )
            })
            .collect()
    }

    /// The key values of row `index` on `side`, in key order (both sides are keyed by
    /// company and account number).
    fn key_values(&self, index: usize) -> [String; 2] {
        [seed::company(index).to_owned(), seed::account(index)]
    }
}

fn key_image(row: &RowImage, key: &[String]) -> RowImage {
    key.iter()
        .map(|column| {
            (
                column.clone(),
                row.get(column).cloned().unwrap_or(Value::Null),
            )
        })
        .collect()
}

/// A value as rusqlite binds it, the way the SQLite connector stores it (decimals as
/// their text).
fn to_sql(value: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as Sql;
    match value {
        Value::Null => Sql::Null,
        Value::Boolean(b) => Sql::Integer(i64::from(*b)),
        Value::Integer(n) => Sql::Integer(*n),
        Value::Float(f) => Sql::Real(*f),
        Value::Decimal(text) | Value::Text(text) => Sql::Text(text.clone()),
        other => panic!("no such value in a customer row: {other:?}"),
    }
}

fn open(path: &Path) -> Connection {
    let db = Connection::open(path).expect("open");
    db.busy_timeout(Duration::from_secs(30))
        .expect("busy timeout");
    db
}

/// Runs `body` over `range` in transactions of `BATCH` rows; returns the time taken.
fn batched(
    db: &Connection,
    range: std::ops::Range<usize>,
    mut body: impl FnMut(usize),
) -> Duration {
    let started = Instant::now();
    let indexes: Vec<usize> = range.collect();
    for chunk in indexes.chunks(BATCH) {
        db.execute_batch("BEGIN IMMEDIATE").expect("begin");
        for &index in chunk {
            body(index);
        }
        db.execute_batch("COMMIT").expect("commit");
    }
    started.elapsed()
}

/// Updates `CREDITLIMIT` and `SALESMEMO` of ERP rows `range` (round `round` makes the
/// values new), committed in batches.
fn update_erp(db: &Connection, data: &Data, range: std::ops::Range<usize>, round: u32) -> Duration {
    let sql = format!(
        "UPDATE \"{}\" SET CREDITLIMIT = ?1, SALESMEMO = ?2 WHERE \"{}\" = ?3 AND \"{}\" = ?4",
        data.erp_table, data.erp_key[0], data.erp_key[1]
    );
    let mut statement = db.prepare(&sql).expect("prepare");
    batched(db, range, |index| {
        let [company, account] = data.key_values(index);
        let changed = statement
            .execute(rusqlite::params![
                format!("{}.{:02}", 2_000 + index % 50_000, round),
                format!("Bench update {round} of customer {index}"),
                company,
                account
            ])
            .expect("update");
        assert_eq!(changed, 1, "ERP row {index} exists");
    })
}

/// A temp dir with an ERP and a CRM database holding the customers map's tables.
struct Deployment {
    dir: tempfile::TempDir,
    erp: PathBuf,
    crm: PathBuf,
}

impl Deployment {
    fn new(map: &DemoMap) -> Deployment {
        let dir = tempfile::Builder::new()
            .prefix("dualwrite-bench-sync-")
            .tempdir()
            .expect("tempdir");
        let erp = dir.path().join("erp.db");
        let crm = dir.path().join("crm.db");
        demo::create_tables(&erp, Side::Erp, std::slice::from_ref(map)).expect("ERP tables");
        demo::create_tables(&crm, Side::Crm, std::slice::from_ref(map)).expect("CRM tables");
        Deployment { dir, erp, crm }
    }

    fn engine(&self, runtime: &PluginRuntime, map: &DemoMap) -> Engine {
        self.engine_with(runtime, map, "")
    }

    /// The engine with `extra` config appended (an `[admin]` section).
    fn engine_with(&self, runtime: &PluginRuntime, map: &DemoMap, extra: &str) -> Engine {
        let list = |side| {
            map.key(side)
                .iter()
                .map(|column| format!("{column:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let text = format!(
            r#"
data_dir = "state"
plugins_dir = {plugins:?}

[sides.erp]
connector = "sqlite"
path = "erp.db"

[sides.crm]
connector = "sqlite"
path = "crm.db"

[maps.{MAP}]
plugin = {plugin:?}
erp = {{ side = "erp", entity = {erp:?}, key = [{erp_key}] }}
crm = {{ side = "crm", entity = {crm:?}, key = [{crm_key}] }}
conflict = {{ policy = "side-wins", winner = "erp" }}
batch_size = {BATCH}

[maps.{MAP}.config]
resolve_lookups = false
{extra}
"#,
            plugins = plugins_dir().display().to_string(),
            plugin = map.plugin_file,
            erp = map.descriptor.erp.entity,
            crm = map.descriptor.crm.entity,
            erp_key = list(Side::Erp),
            crm_key = list(Side::Crm),
        );
        let plan = config::parse(&text, "bench.toml", self.dir.path()).expect("valid config");
        Engine::open(&plan, runtime, EngineOptions::default()).expect("engine opens")
    }

    /// Inserts ERP rows `range` with a plain connection, in batches; the time taken.
    fn commit_erp_inserts(
        &self,
        map: &DemoMap,
        data: &Data,
        range: std::ops::Range<usize>,
    ) -> Duration {
        let db = open(&self.erp);
        let columns: Vec<String> = data
            .erp_columns
            .iter()
            .map(|column| format!("\"{column}\""))
            .collect();
        let marks: Vec<String> = (1..=columns.len()).map(|n| format!("?{n}")).collect();
        let sql = format!(
            "INSERT INTO \"{}\" ({}) VALUES ({})",
            map.descriptor.erp.entity,
            columns.join(", "),
            marks.join(", ")
        );
        let mut statement = db.prepare(&sql).expect("prepare");
        batched(&db, range, |index| {
            let row = &data.rows[index];
            let values = data
                .erp_columns
                .iter()
                .map(|column| to_sql(row.get(column).unwrap_or(&Value::Null)));
            statement
                .execute(rusqlite::params_from_iter(values))
                .expect("insert");
        })
    }

    fn commit_erp_updates(
        &self,
        data: &Data,
        range: std::ops::Range<usize>,
        round: u32,
    ) -> Duration {
        update_erp(&open(&self.erp), data, range, round)
    }

    /// Updates `description` and `msdyn_creditrating` of CRM rows `range`.
    fn commit_crm_updates(
        &self,
        map: &DemoMap,
        data: &Data,
        range: std::ops::Range<usize>,
        round: u32,
    ) -> Duration {
        let db = open(&self.crm);
        let sql = format!(
            "UPDATE \"{}\" SET description = ?1, msdyn_creditrating = ?2 \
             WHERE \"{}\" = ?3 AND \"{}\" = ?4",
            map.descriptor.crm.entity, data.crm_key[0], data.crm_key[1]
        );
        let mut statement = db.prepare(&sql).expect("prepare");
        batched(&db, range, |index| {
            let [company, account] = data.key_values(index);
            let changed = statement
                .execute(rusqlite::params![
                    format!("CRM bench update {round} of customer {index}"),
                    ["A", "B", "C", "D"][(index + round as usize) % 4],
                    company,
                    account
                ])
                .expect("update");
            assert_eq!(changed, 1, "CRM row {index} exists");
        })
    }

    /// The sizes of the databases and their WAL files, for the log: a WAL that keeps
    /// growing means checkpoints are starved.
    fn sizes(&self) -> String {
        let mut files: Vec<(String, u64)> = Vec::new();
        let mut walk = vec![self.dir.path().to_owned()];
        while let Some(dir) = walk.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk.push(path);
                } else if let Ok(metadata) = entry.metadata() {
                    let name = path
                        .strip_prefix(self.dir.path())
                        .unwrap_or(&path)
                        .display()
                        .to_string();
                    files.push((name, metadata.len()));
                }
            }
        }
        files.sort();
        files
            .iter()
            .filter(|(name, _)| !name.ends_with("-shm"))
            .map(|(name, len)| format!("{name} {:.1} MB", *len as f64 / 1e6))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The CRM `description` of row `index`.
    fn crm_description(&self, data: &Data, index: usize) -> Option<String> {
        let [company, account] = data.key_values(index);
        open(&self.crm)
            .query_row(
                &format!(
                    "SELECT description FROM \"{}\" WHERE \"{}\" = ?1 AND \"{}\" = ?2",
                    data.crm_table, data.crm_key[0], data.crm_key[1]
                ),
                rusqlite::params![company, account],
                |row| row.get(0),
            )
            .expect("read a CRM row")
    }

    fn count(&self, side: Side, map: &DemoMap) -> usize {
        let (path, table) = match side {
            Side::Erp => (&self.erp, &map.descriptor.erp.entity),
            Side::Crm => (&self.crm, &map.descriptor.crm.entity),
        };
        open(path)
            .query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |row| {
                row.get::<_, i64>(0)
            })
            .expect("count") as usize
    }
}

/// The raw limit: the CRM rows upserted with the engine's writer into a bare table, then
/// two fields of each updated, then the upserts again into a table with capture
/// installed. Returns the three times.
fn raw_limit(map: &DemoMap, data: &Data, crm_rows: &[RowImage]) -> (Duration, Duration, Duration) {
    let deployment = Deployment::new(map);
    let table = &map.descriptor.crm.entity;
    let upserts: Vec<RowWrite> = crm_rows
        .iter()
        .map(|row| RowWrite::upsert(table, key_image(row, &data.crm_key), row.clone()))
        .collect();
    let updates: Vec<RowWrite> = crm_rows
        .iter()
        .enumerate()
        .map(|(index, row)| {
            let mut fields = key_image(row, &data.crm_key);
            fields.insert(
                "creditlimit".into(),
                Value::Decimal(format!("{}.{:02}", 2_000 + index % 50_000, 1)),
            );
            fields.insert(
                "description".into(),
                Value::Text(format!("Bench update 1 of customer {index}")),
            );
            RowWrite::upsert(table, key_image(row, &data.crm_key), fields)
        })
        .collect();
    let apply_all = |writer: &mut SqliteWriter, writes: &[RowWrite]| {
        let started = Instant::now();
        for chunk in writes.chunks(BATCH) {
            let report = writer.apply(chunk).expect("raw apply");
            assert_eq!(report.changed(), chunk.len());
        }
        started.elapsed()
    };
    let mut writer = SqliteWriter::open(&deployment.crm, SqliteOptions::default()).expect("open");
    let insert = apply_all(&mut writer, &upserts);
    let update = apply_all(&mut writer, &updates);

    let captured = Deployment::new(map);
    let mut capture =
        SqliteCapture::open(&captured.crm, SqliteOptions::default()).expect("open capture");
    capture
        .install(&[CaptureTable {
            table: table.clone(),
            key_columns: data.crm_key.clone(),
        }])
        .expect("install capture");
    let mut writer = SqliteWriter::open(&captured.crm, SqliteOptions::default()).expect("open");
    let with_capture = apply_all(&mut writer, &upserts);
    (insert, update, with_capture)
}

fn counters(engine: &Engine) -> MapCounters {
    engine
        .counters()
        .into_iter()
        .find(|(name, _)| name == MAP)
        .map(|(_, counters)| counters)
        .expect("the customers map runs")
}

/// Nothing may have gone wrong for the figures to mean anything.
fn check_clean(engine: &Engine) {
    let counters = counters(engine);
    assert_eq!(counters.errors, 0, "no errors: {counters:?}");
    assert_eq!(counters.filtered, 0, "nothing filtered: {counters:?}");
    assert_eq!(counters.conflicts, 0, "no conflicts: {counters:?}");
}

/// Steps until `to_crm` more rows were written to the CRM and `to_erp` to the ERP;
/// the time taken.
fn drain(engine: &mut Engine, to_crm: u64, to_erp: u64) -> Duration {
    drain_since(engine, to_crm, to_erp, Instant::now())
}

fn drain_since(engine: &mut Engine, to_crm: u64, to_erp: u64, started: Instant) -> Duration {
    let before = counters(engine);
    loop {
        let report = engine.step().expect("step");
        let now = counters(engine);
        if now.written_to_crm - before.written_to_crm >= to_crm
            && now.written_to_erp - before.written_to_erp >= to_erp
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < DRAIN_TIMEOUT,
            "not drained after {DRAIN_TIMEOUT:?}: {now:?}"
        );
        if report.captured == 0 {
            engine.wait_for_changes();
        }
    }
}

/// Commit-to-visible latency figures.
struct Latency {
    /// The writer's own commit time (the UPDATE in autocommit), p50, p99, max.
    commit_ms: [f64; 3],
    steps: usize,
    changes_per_step: f64,
    busy_ms_per_change: f64,
    slowest_step: (Duration, usize),
    sent: usize,
    seen: usize,
    rate: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Latency {
    fn print(&self) {
        println!(
            "\nlatency at {LATENCY_RATE} commits/s (single-row ERP updates, achieved {:.0}/s): \
             {} committed, {} seen on the CRM; commit-to-visible p50 {:.2} ms, p90 {:.2} ms, \
             p99 {:.2} ms, max {:.2} ms",
            self.rate, self.sent, self.seen, self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
        );
        println!(
            "the writer's single-row commits took p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.commit_ms[0], self.commit_ms[1], self.commit_ms[2]
        );
        println!(
            "engine during the latency run: {} steps with changes, {:.1} changes per step, \
             {:.3} ms of step time per change, slowest step {:.1} ms for {} changes",
            self.steps,
            self.changes_per_step,
            self.busy_ms_per_change,
            self.slowest_step.0.as_secs_f64() * 1e3,
            self.slowest_step.1
        );
    }
}

/// See the module doc: a scheduled writer, a polling reader, the engine on this thread.
fn measure_latency(
    engine: &mut Engine,
    deployment: &Deployment,
    data: &Data,
    seconds: u64,
) -> Latency {
    let count = (seconds * LATENCY_RATE) as usize;
    let rows = data.rows.len();
    let (sender, receiver) = mpsc::channel::<(usize, Instant)>();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let origin = Instant::now();

    // The writer starts once the engine loop runs and has stepped once.
    let go = std::sync::Arc::new(AtomicBool::new(false));
    let writer = {
        let erp = deployment.erp.clone();
        let data = data.clone();
        let go = go.clone();
        std::thread::spawn(move || {
            let db = open(&erp);
            let mut statement = db
                .prepare(&format!(
                    "UPDATE \"{}\" SET SALESMEMO = ?1 WHERE \"{}\" = ?2 AND \"{}\" = ?3",
                    data.erp_table, data.erp_key[0], data.erp_key[1]
                ))
                .expect("prepare");
            let mut commit_times: Vec<Duration> = Vec::with_capacity(count);
            while !go.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let started = Instant::now();
            for sent in 0..count {
                let due = started + Duration::from_micros(sent as u64 * 1_000_000 / LATENCY_RATE);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let [company, account] = data.key_values(sent % rows);
                let begun = Instant::now();
                statement
                    .execute(rusqlite::params![latency_value(sent), company, account])
                    .expect("update");
                let committed = Instant::now();
                commit_times.push(committed - begun);
                if sender.send((sent, committed)).is_err() {
                    break;
                }
            }
            let rate = count as f64 / started.elapsed().as_secs_f64();
            commit_times.sort_unstable();
            (rate, commit_times)
        })
    };

    let reader = {
        let crm = deployment.crm.clone();
        let data = data.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let db = open(&crm);
            let mut statement = db
                .prepare(&format!(
                    "SELECT description FROM \"{}\" WHERE \"{}\" = ?1 AND \"{}\" = ?2",
                    data.crm_table, data.crm_key[0], data.crm_key[1]
                ))
                .expect("prepare");
            let mut pending: std::collections::VecDeque<(usize, Instant)> =
                std::collections::VecDeque::new();
            let mut latencies: Vec<Duration> = Vec::with_capacity(count);
            let mut writer_done = false;
            let mut give_up: Option<Instant> = None;
            loop {
                loop {
                    match receiver.try_recv() {
                        Ok(entry) => pending.push_back(entry),
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            writer_done = true;
                            break;
                        }
                    }
                }
                // The engine applies a side's changes in commit order, so the oldest
                // pending update shows first: look at the pending ones in order and stop
                // at the first not visible yet (a poll costs one query when idle).
                let mut visible = 0;
                for (sent, committed) in &pending {
                    let [company, account] = data.key_values(sent % rows);
                    let value: Option<String> = statement
                        .query_row(rusqlite::params![company, account], |row| row.get(0))
                        .expect("read CRM row");
                    if value.as_deref() != Some(latency_value(*sent).as_str()) {
                        break;
                    }
                    latencies.push(committed.elapsed());
                    visible += 1;
                }
                pending.drain(..visible);
                if writer_done && pending.is_empty() {
                    break;
                }
                if writer_done {
                    let deadline =
                        *give_up.get_or_insert_with(|| Instant::now() + Duration::from_secs(30));
                    if Instant::now() > deadline {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_micros(250));
            }
            stop.store(true, Ordering::Relaxed);
            latencies
        })
    };

    // What `Engine::run` does, timing each step that found changes.
    let trace = std::env::var_os("DUALWRITE_BENCH_TRACE").is_some();
    let mut steps: Vec<(Duration, usize)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let report = engine.step().expect("step");
        let stepped = started.elapsed();
        if report.captured > 0 {
            steps.push((stepped, report.captured));
        }
        let waited = Instant::now();
        go.store(true, Ordering::Relaxed);
        if report.captured == 0 {
            engine.wait_for_changes();
        }
        if trace && (stepped + waited.elapsed()) > Duration::from_millis(20) {
            eprintln!(
                "at {:?}: step {stepped:?} ({} changes), wait {:?}",
                started - origin,
                report.captured,
                waited.elapsed()
            );
        }
    }
    let (rate, commit_times) = writer.join().expect("writer thread");
    let mut latencies = reader.join().expect("reader thread");
    check_clean(engine);
    latencies.sort_unstable();
    let quantile = |q: f64| quantile_ms(&latencies, q);
    let busy: Duration = steps.iter().map(|(time, _)| *time).sum();
    let changes: usize = steps.iter().map(|(_, captured)| *captured).sum();
    let slowest = steps.iter().max().copied().unwrap_or_default();
    Latency {
        commit_ms: [
            quantile_ms(&commit_times, 0.5),
            quantile_ms(&commit_times, 0.99),
            quantile_ms(&commit_times, 1.0),
        ],
        steps: steps.len(),
        changes_per_step: changes as f64 / steps.len().max(1) as f64,
        busy_ms_per_change: busy.as_secs_f64() * 1e3 / changes.max(1) as f64,
        slowest_step: slowest,
        sent: count,
        seen: latencies.len(),
        rate,
        p50_ms: quantile(0.50),
        p90_ms: quantile(0.90),
        p99_ms: quantile(0.99),
        max_ms: latencies
            .last()
            .map_or(f64::NAN, |latency| latency.as_secs_f64() * 1e3),
    }
}

/// Quantile `q` of sorted `times`, in milliseconds.
fn quantile_ms(times: &[Duration], q: f64) -> f64 {
    times
        .get(((times.len() as f64 * q).ceil() as usize).saturating_sub(1))
        .map_or(f64::NAN, |time| time.as_secs_f64() * 1e3)
}

fn latency_value(sent: usize) -> String {
    format!("latency probe {sent}")
}

/// The summary table.
#[derive(Default)]
struct Results {
    rows: Vec<(String, usize, Duration, Option<f64>)>,
}

impl Results {
    fn row(&mut self, label: &str, count: usize, elapsed: Duration, baseline: Option<f64>) {
        println!(
            "{label}: {count} in {:.3} s = {:.0}/s",
            elapsed.as_secs_f64(),
            per_sec(count, elapsed)
        );
        self.rows.push((label.to_owned(), count, elapsed, baseline));
    }

    fn print(&self) {
        println!("\nsync benchmark summary (this run)");
        println!(
            "| {:<56} | {:>7} | {:>8} | {:>9} | {:>11} |",
            "phase", "rows", "seconds", "rows/s", "of baseline"
        );
        println!(
            "|{:-<58}|{:->9}:|{:->9}:|{:->10}:|{:->13}:|",
            "", "", "", "", ""
        );
        for (label, count, elapsed, baseline) in &self.rows {
            let rate = per_sec(*count, *elapsed);
            println!(
                "| {label:<56} | {count:>7} | {:>8.3} | {rate:>9.0} | {:>12} |",
                elapsed.as_secs_f64(),
                baseline.map_or_else(String::new, |raw| format!("{:.1}%", rate / raw * 100.0))
            );
        }
    }
}

/// The allocator the `dualwrite` binary runs with, so the engine is measured as shipped.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
