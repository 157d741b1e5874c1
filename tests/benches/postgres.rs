//! PostgreSQL -> PostgreSQL benchmark: the engine through the customers plugin against
//! PostgreSQL's own logical replication, measured in the same run on the same server.
//!
//! Run with `cargo bench -p dualwrite-tests --bench postgres` (it runs
//! `scripts/servers-setup.sh` first). `DUALWRITE_BENCH_ROWS` sets N (default 10,000),
//! `DUALWRITE_BENCH_LATENCY_ROWS` the latency samples (default 50). A plain binary that
//! prints one table.
//!
//! - `native`: a publication on a source database and a subscription in a destination
//!   database (one direction, no transform, `copy_data = false`), both holding the ERP
//!   table `CustCustomerV3Entity`. N customer rows are committed on the source while
//!   the subscription is disabled (COPY, 1,000 rows per transaction), then it is enabled
//!   and timed until the destination holds N rows: backlog throughput.
//! - `engine`: an ERP database and a CRM database, the customers map both ways
//!   (`resolve_lookups = false`, side-wins ERP), capture installed on both sides. The
//!   same N rows are committed on the ERP the same way before the engine steps, then it
//!   steps until the CRM holds N accounts.
//! - latency: single-row updates committed one at a time on the source/ERP; the time
//!   from the commit's return until the new value is visible on the target (polled
//!   every 0.2 ms; the engine steps and waits as `Engine::run` does), median and p95.

use std::io::Write as _;
use std::time::{Duration, Instant};

use dualwrite::capture::RowImage;
use dualwrite::change::{Side, Value};
use dualwrite::config;
use dualwrite::demo::{self, DemoMap, seed};
use dualwrite::plugin::{Limits, PluginRuntime};
use dualwrite::sync::{Engine, EngineOptions};
use dualwrite_tests::plugins_dir;
use dualwrite_tests::servers::{PgDatabase, ensure_ready};

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
    println!("PostgreSQL benchmark: N = {rows_n} customers, COPY batches of {BATCH}");

    let (native_secs, native_latency) = native(&map, &columns, &rows, latency_n);
    let (engine_secs, engine_latency) = engine(&runtime, &map, &columns, &rows, latency_n);
    let native_rate = rows_n as f64 / native_secs;
    let engine_rate = rows_n as f64 / engine_secs;
    println!();
    println!("| run | rows/s | latency p50 | latency p95 |");
    println!("|---|---|---|---|");
    println!(
        "| native logical replication (one way, no transform) | {native_rate:.0} | {:.1} ms | {:.1} ms |",
        native_latency.0, native_latency.1
    );
    println!(
        "| dualwrite engine, customers plugin, both ways | {engine_rate:.0} | {:.1} ms | {:.1} ms |",
        engine_latency.0, engine_latency.1
    );
    println!(
        "throughput ratio engine / native: {:.2} (goal >= 0.70: {})",
        engine_rate / native_rate,
        if engine_rate / native_rate >= 0.70 {
            "met"
        } else {
            "NOT met"
        }
    );
}

/// COPY text form of a value.
fn copy_text(value: &Value) -> String {
    let escape = |text: &str| {
        text.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
    };
    match value {
        Value::Null => "\\N".to_owned(),
        Value::Boolean(flag) => flag.to_string(),
        Value::Integer(number) => number.to_string(),
        Value::Float(number) => format!("{number:?}"),
        Value::Decimal(text) | Value::Text(text) | Value::Json(text) => escape(text),
        other => panic!("the bench rows hold no {}", other.kind_name()),
    }
}

/// Commits `rows` into the ERP table with COPY, `BATCH` rows per transaction.
fn copy_rows(client: &mut postgres::Client, columns: &[String], rows: &[RowImage]) {
    let list: Vec<String> = columns
        .iter()
        .map(|column| format!("\"{column}\""))
        .collect();
    let sql = format!("COPY \"{ERP_TABLE}\" ({}) FROM STDIN", list.join(", "));
    for chunk in rows.chunks(BATCH) {
        let mut writer = client.copy_in(&sql).expect("copy");
        for row in chunk {
            let line: Vec<String> = columns
                .iter()
                .map(|column| copy_text(row.get(column).unwrap_or(&Value::Null)))
                .collect();
            writeln!(writer, "{}", line.join("\t")).expect("copy row");
        }
        writer.finish().expect("copy commit");
    }
}

fn count(client: &mut postgres::Client, table: &str) -> i64 {
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
        "\"DATAAREAID\" = '{}' AND \"CUSTOMERACCOUNT\" = '{}'",
        text("DATAAREAID"),
        text("CUSTOMERACCOUNT")
    )
}

fn native(
    map: &DemoMap,
    columns: &[String],
    rows: &[RowImage],
    latency_n: usize,
) -> (f64, (f64, f64)) {
    let source = PgDatabase::create("bench_src");
    let target = PgDatabase::create("bench_dst");
    for db in [&source, &target] {
        demo::postgres::create_tables(&db.url, Side::Erp, std::slice::from_ref(map))
            .expect("tables");
    }
    let slot = format!("{}_sub", source.name);
    let mut source_client = source.client();
    // Two round trips: a slot cannot be made in a transaction that wrote.
    source_client
        .batch_execute(&format!(
            "CREATE PUBLICATION bench FOR TABLE \"{ERP_TABLE}\""
        ))
        .expect("publication");
    source_client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .expect("slot");
    let mut target_client = target.client();
    // The slot is made beforehand: CREATE SUBSCRIPTION cannot make one on its own server.
    target_client
        .batch_execute(&format!(
            "CREATE SUBSCRIPTION bench CONNECTION 'host=127.0.0.1 port=5432 user=postgres \
             dbname={}' PUBLICATION bench WITH (create_slot = false, slot_name = '{slot}', \
             copy_data = false, enabled = false)",
            source.name
        ))
        .expect("subscription");
    copy_rows(&mut source_client, columns, rows);
    let started = Instant::now();
    target_client
        .batch_execute("ALTER SUBSCRIPTION bench ENABLE")
        .expect("enable");
    while count(&mut target_client, ERP_TABLE) < rows.len() as i64 {
        assert!(started.elapsed() < TIMEOUT, "native replication stalled");
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("native: {} rows in {elapsed:.2} s", rows.len());

    let mut samples = Vec::new();
    for index in 0..latency_n.min(rows.len()) {
        let value = format!("native latency {index}");
        source_client
            .batch_execute(&format!(
                "UPDATE \"{ERP_TABLE}\" SET \"SALESMEMO\" = '{value}' WHERE {}",
                erp_key(rows, index)
            ))
            .expect("update");
        let committed = Instant::now();
        let probe = format!(
            "SELECT 1 FROM \"{ERP_TABLE}\" WHERE \"SALESMEMO\" = '{value}' AND {}",
            erp_key(rows, index)
        );
        while target_client
            .query_opt(&probe, &[])
            .expect("probe")
            .is_none()
        {
            assert!(committed.elapsed() < TIMEOUT, "native latency stalled");
            std::thread::sleep(Duration::from_micros(200));
        }
        samples.push(committed.elapsed());
    }
    target_client
        .batch_execute(
            "ALTER SUBSCRIPTION bench DISABLE; ALTER SUBSCRIPTION bench SET (slot_name = NONE); \
             DROP SUBSCRIPTION bench;",
        )
        .expect("drop subscription");
    (elapsed, quantiles(samples))
}

fn engine(
    runtime: &PluginRuntime,
    map: &DemoMap,
    columns: &[String],
    rows: &[RowImage],
    latency_n: usize,
) -> (f64, (f64, f64)) {
    let erp = PgDatabase::create("bench_erp");
    let crm = PgDatabase::create("bench_crm");
    demo::postgres::create_tables(&erp.url, Side::Erp, std::slice::from_ref(map))
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
connector = "postgres"
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
    let mut erp_client = erp.client();
    let mut crm_client = crm.client();
    copy_rows(&mut erp_client, columns, rows);
    let started = Instant::now();
    let mut last_count = Instant::now();
    loop {
        let report = engine.step().expect("step");
        if report.captured == 0 {
            engine.wait_for_changes();
        }
        if last_count.elapsed() >= Duration::from_millis(20) || report.captured == 0 {
            last_count = Instant::now();
            if count(&mut crm_client, "accounts") >= rows.len() as i64 {
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
        erp_client
            .batch_execute(&format!(
                "UPDATE \"{ERP_TABLE}\" SET \"SALESMEMO\" = '{value}' WHERE {}",
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
