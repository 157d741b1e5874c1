//! MariaDB -> PostgreSQL benchmark: the engine through the customers plugin, from a
//! MariaDB ERP (binlog capture) to a PostgreSQL CRM, against the raw write rate of the
//! target measured in the same run on the same servers.
//!
//! Run with `cargo bench -p dualwrite-tests --bench mariadb` (it runs
//! `scripts/servers-setup.sh` first). `DUALWRITE_BENCH_ROWS` sets N (default 10,000),
//! `DUALWRITE_BENCH_LATENCY_ROWS` the latency samples (default 50). A plain binary that
//! prints one table.
//!
//! - `target write limit` (the baseline): the N rows as the CRM receives them (ERP rows
//!   through the plugin, `demo::to_crm`) upserted into an empty PostgreSQL `accounts`
//!   with the engine's own `PostgresWriter::apply`, batches of 1,000: what the target
//!   takes with no capture, plugin or engine state in the way.
//! - `engine`: a MariaDB ERP database and a PostgreSQL CRM database, the customers map
//!   both ways (`resolve_lookups = false`, side-wins ERP), capture installed on both
//!   sides. N customer rows are committed on the ERP (multi-row INSERTs, 1,000 rows per
//!   transaction) before the engine steps, then it steps until the CRM holds N
//!   accounts: backlog throughput.
//! - latency: single-row updates committed one at a time on the ERP; the time from the
//!   commit's return until the new value is visible on the CRM (the engine steps and
//!   waits as `Engine::run` does), median and p95.

use std::time::{Duration, Instant};

use dualwrite::apply::postgres::PostgresWriter;
use dualwrite::apply::{ApplyBatch, RowWrite};
use dualwrite::capture::RowImage;
use dualwrite::capture::postgres::PostgresOptions;
use dualwrite::change::{Side, Value};
use dualwrite::config;
use dualwrite::demo::{self, DemoMap, seed};
use dualwrite::plugin::{Limits, PluginRuntime};
use dualwrite::sync::{Engine, EngineOptions};
use dualwrite_tests::plugins_dir;
use dualwrite_tests::servers::{MyDatabase, PgDatabase, ensure_ready};
use mysql::prelude::Queryable;

const ERP_TABLE: &str = "CustCustomerV3Entity";
const BATCH: usize = 1_000;
const TIMEOUT: Duration = Duration::from_secs(600);

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    ensure_ready();
    let rows_n = env_number("DUALWRITE_BENCH_ROWS", 10_000);
    let latency_n = env_number("DUALWRITE_BENCH_LATENCY_ROWS", 50);
    let runtime = PluginRuntime::new(
        Limits {
            max_instances: 8,
            ..Limits::default()
        },
        None,
    )
    .expect("plugin runtime");
    let plugins = cap_std::fs::Dir::open_ambient_dir(plugins_dir(), cap_std::ambient_authority())
        .expect("plugins folder");
    let plugin = runtime.load(&plugins, "customers.wasm").expect("load");
    let descriptor = plugin.describe_default().expect("describe");
    let map = DemoMap {
        name: "customers",
        plugin_file: "customers.wasm",
        plugin,
        descriptor,
    };
    let columns: Vec<String> = map
        .descriptor
        .erp
        .fields
        .iter()
        .map(|field| field.name.clone())
        .collect();
    let mut dice = seed::Dice::new(0xBE7C);
    let rows: Vec<RowImage> = (0..rows_n)
        .map(|index| {
            let mut row = seed::customer(&map, index, &mut dice);
            row.insert("PARTYTYPE".into(), Value::Text("Organization".into()));
            row
        })
        .collect();
    println!("MariaDB -> PostgreSQL benchmark: N = {rows_n} customers, batches of {BATCH}");

    let baseline_secs = target_limit(&map, &rows);
    let (engine_secs, latency) = engine(&runtime, &map, &columns, &rows, latency_n);
    let baseline_rate = rows_n as f64 / baseline_secs;
    let engine_rate = rows_n as f64 / engine_secs;
    println!();
    println!("| run | rows/s | latency p50 | latency p95 |");
    println!("|---|---|---|---|");
    println!(
        "| target write limit (PostgresWriter::apply, batches of {BATCH}, no capture/plugin/state) | {baseline_rate:.0} | | |"
    );
    println!(
        "| dualwrite engine, MariaDB ERP -> PostgreSQL CRM, customers plugin, both ways | {engine_rate:.0} | {:.1} ms | {:.1} ms |",
        latency.0, latency.1
    );
    println!(
        "throughput ratio engine / target write limit: {:.2}",
        engine_rate / baseline_rate
    );
}

fn my_value(value: &Value) -> mysql::Value {
    match value {
        Value::Null => mysql::Value::NULL,
        Value::Boolean(flag) => mysql::Value::Int(i64::from(*flag)),
        Value::Integer(number) => mysql::Value::Int(*number),
        Value::Float(number) => mysql::Value::Double(*number),
        Value::Decimal(text) | Value::Text(text) | Value::Json(text) => {
            mysql::Value::Bytes(text.clone().into_bytes())
        }
        other => panic!("the bench rows hold no {}", other.kind_name()),
    }
}

/// Commits `rows` into the ERP table with multi-row INSERTs, `BATCH` rows per
/// transaction.
fn insert_rows(conn: &mut mysql::Conn, columns: &[String], rows: &[RowImage]) {
    let list: Vec<String> = columns.iter().map(|column| format!("`{column}`")).collect();
    let tuple = format!("({})", vec!["?"; columns.len()].join(", "));
    for chunk in rows.chunks(BATCH) {
        let sql = format!(
            "INSERT INTO `{ERP_TABLE}` ({}) VALUES {}",
            list.join(", "),
            vec![tuple.as_str(); chunk.len()].join(", ")
        );
        let values: Vec<mysql::Value> = chunk
            .iter()
            .flat_map(|row| {
                columns
                    .iter()
                    .map(|column| my_value(row.get(column).unwrap_or(&Value::Null)))
            })
            .collect();
        conn.exec_drop(sql, mysql::Params::Positional(values))
            .expect("insert");
    }
}

fn pg_count(client: &mut postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM \"{table}\""), &[])
        .expect("count")
        .get(0)
}

fn quantiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[index].as_secs_f64() * 1000.0
    };
    (at(0.5), at(0.95))
}

/// The row `index`'s key condition on the ERP table.
fn erp_key(rows: &[RowImage], index: usize) -> String {
    let text = |column: &str| match &rows[index][column] {
        Value::Text(text) => text.replace('\'', "''"),
        other => panic!("key {other:?}"),
    };
    format!(
        "`DATAAREAID` = '{}' AND `CUSTOMERACCOUNT` = '{}'",
        text("DATAAREAID"),
        text("CUSTOMERACCOUNT")
    )
}

/// The baseline: the CRM rows written straight into PostgreSQL.
fn target_limit(map: &DemoMap, rows: &[RowImage]) -> f64 {
    let crm = PgDatabase::create("mbench_raw");
    demo::postgres::create_tables(&crm.url, Side::Crm, std::slice::from_ref(map))
        .expect("CRM tables");
    let key = map.key(Side::Crm);
    let writes: Vec<RowWrite> = demo::to_crm(map, rows)
        .expect("to CRM")
        .into_iter()
        .flatten()
        .map(|row| {
            let key_image = key
                .iter()
                .map(|column| (column.clone(), row[column].clone()))
                .collect();
            RowWrite::upsert(&map.descriptor.crm.entity, key_image, row)
        })
        .collect();
    assert_eq!(writes.len(), rows.len(), "the plugin keeps every bench row");
    let mut writer = PostgresWriter::open(PostgresOptions::new(crm.url.clone(), "raw"));
    let started = Instant::now();
    for chunk in writes.chunks(BATCH) {
        writer.apply(chunk).expect("apply");
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(pg_count(&mut crm.client(), "accounts"), rows.len() as i64);
    println!("target write limit: {} rows in {elapsed:.2} s", rows.len());
    elapsed
}

fn engine(
    runtime: &PluginRuntime,
    map: &DemoMap,
    columns: &[String],
    rows: &[RowImage],
    latency_n: usize,
) -> (f64, (f64, f64)) {
    let erp = MyDatabase::create("mbench_erp");
    let crm = PgDatabase::create("mbench_crm");
    demo::mysql::create_tables(&erp.url, None, Side::Erp, std::slice::from_ref(map))
        .expect("ERP tables");
    demo::postgres::create_tables(&crm.url, Side::Crm, std::slice::from_ref(map))
        .expect("CRM tables");
    let dir = tempfile::tempdir().expect("tempdir");
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
connector = "mariadb"
url = {erp_url:?}

[sides.crm]
connector = "postgres"
url = {crm_url:?}

[maps.customers]
plugin = "customers.wasm"
erp = {{ side = "erp", entity = {erp:?}, key = [{erp_key}] }}
crm = {{ side = "crm", entity = {crm:?}, key = [{crm_key}] }}
conflict = {{ policy = "side-wins", winner = "erp" }}
batch_size = {BATCH}

[maps.customers.config]
resolve_lookups = false
"#,
        plugins = plugins_dir().display().to_string(),
        erp_url = erp.url,
        crm_url = crm.url,
        erp = map.descriptor.erp.entity,
        crm = map.descriptor.crm.entity,
        erp_key = list(Side::Erp),
        crm_key = list(Side::Crm),
    );
    let plan = config::parse(&text, "bench.toml", dir.path()).expect("valid config");
    let mut engine = Engine::open(&plan, runtime, EngineOptions::default()).expect("engine");
    engine
        .initial_sync("customers", 2_000, "bench", &mut |_| {})
        .expect("initial sync of empty tables");
    let mut erp_conn = erp.conn();
    let mut crm_client = crm.client();
    insert_rows(&mut erp_conn, columns, rows);
    let started = Instant::now();
    let mut last_count = Instant::now();
    loop {
        let report = engine.step().expect("step");
        if report.captured == 0 {
            engine.wait_for_changes();
        }
        if last_count.elapsed() >= Duration::from_millis(20) || report.captured == 0 {
            last_count = Instant::now();
            if pg_count(&mut crm_client, "accounts") >= rows.len() as i64 {
                break;
            }
        }
        assert!(started.elapsed() < TIMEOUT, "the engine stalled");
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("engine: {} rows in {elapsed:.2} s", rows.len());

    let mut samples = Vec::new();
    for index in 0..latency_n.min(rows.len()) {
        let value = format!("engine latency {index}");
        erp_conn
            .query_drop(format!(
                "UPDATE `{ERP_TABLE}` SET `SALESMEMO` = '{value}' WHERE {}",
                erp_key(rows, index)
            ))
            .expect("update");
        let committed = Instant::now();
        let probe = format!("SELECT 1 FROM accounts WHERE description = '{value}'");
        loop {
            let report = engine.step().expect("step");
            if crm_client.query_opt(&probe, &[]).expect("probe").is_some() {
                break;
            }
            if report.captured == 0 {
                engine.wait_for_changes();
            }
            assert!(committed.elapsed() < TIMEOUT, "engine latency stalled");
        }
        samples.push(committed.elapsed());
    }
    (elapsed, quantiles(samples))
}

/// The allocator the `dualwrite` binary runs with, so the engine is measured as shipped.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
