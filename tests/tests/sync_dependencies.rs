//! Relationships between maps: a customer group that refers to terms of payment not
//! synced yet fails with a retryable `dependency-missing` error, and is applied by the
//! automatic retry once the terms of payment have synced. Playing a map whose
//! dependencies are stopped names them, and starts them first when asked to.

use std::time::{Duration, Instant};

use dualwrite::change::{Side, ValueKind};
use dualwrite::config;
use dualwrite::plugin::{Limits, PluginRuntime};
use dualwrite::sync::{Engine, EngineOptions};
use dualwrite_tests::{plugin_path, plugins_dir};
use rusqlite::Connection;

const TOKEN: &str = "test-token-0123456789abcdef";

fn sql_type(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Boolean => "BOOLEAN",
        ValueKind::Integer => "INTEGER",
        ValueKind::Decimal => "TEXT DECIMAL(19,4)",
        _ => "TEXT",
    }
}

/// Creates the tables of `plugin` on both sides from what it describes.
fn create_tables(runtime: &PluginRuntime, plugin: &str, erp: &Connection, crm: &Connection) {
    let bytes = std::fs::read(plugin_path(plugin)).expect("plugin");
    let descriptor = runtime
        .load_bytes(plugin, &bytes)
        .expect("load")
        .describe_default()
        .expect("describe");
    for (side, db) in [(Side::Erp, erp), (Side::Crm, crm)] {
        let entity = descriptor.entity(side);
        let columns: Vec<String> = entity
            .fields
            .iter()
            .map(|field| format!("\"{}\" {}", field.name, sql_type(field.kind)))
            .collect();
        let key: Vec<String> = entity
            .fields
            .iter()
            .filter(|field| field.key)
            .map(|field| format!("\"{}\"", field.name))
            .collect();
        db.execute_batch(&format!(
            "CREATE TABLE \"{}\" ({}, PRIMARY KEY ({}));",
            entity.entity,
            columns.join(", "),
            key.join(", ")
        ))
        .expect("create table");
    }
}

/// Two SQLite files with the tables of the terms-of-payment and customer-groups maps,
/// and the plan of a deployment where customer groups depend on terms of payment.
fn deployment(
    runtime: &PluginRuntime,
) -> (tempfile::TempDir, Connection, Connection, config::Plan) {
    let dir = tempfile::tempdir().expect("tempdir");
    let erp = Connection::open(dir.path().join("erp.db")).expect("erp");
    let crm = Connection::open(dir.path().join("crm.db")).expect("crm");
    for db in [&erp, &crm] {
        db.execute_batch("PRAGMA journal_mode=WAL;").expect("wal");
    }
    create_tables(runtime, "terms_of_payment", &erp, &crm);
    create_tables(runtime, "customer_groups", &erp, &crm);

    let text = format!(
        r#"
data_dir = "state"
plugins_dir = "{plugins}"
[sides.erp]
connector = "sqlite"
path = "erp.db"
[sides.crm]
connector = "sqlite"
path = "crm.db"
[maps.terms-of-payment]
plugin = "terms_of_payment.wasm"
erp = {{ side = "erp", entity = "PaymentTerms", key = ["DATAAREAID", "NAME"] }}
crm = {{ side = "crm", entity = "msdyn_paymentterms", key = ["msdyn_company", "msdyn_name"] }}
conflict = {{ policy = "side-wins", winner = "erp" }}
[maps.terms-of-payment.config]
resolve_lookups = false
[maps.customer-groups]
plugin = "customer_groups.wasm"
erp = {{ side = "erp", entity = "CustCustomerGroup", key = ["DATAAREAID", "CUSTOMERGROUPID"] }}
crm = {{ side = "crm", entity = "msdyn_customergroups", key = ["msdyn_company", "msdyn_groupid"] }}
depends_on = ["terms-of-payment"]
conflict = {{ policy = "side-wins", winner = "erp" }}
"#,
        plugins = plugins_dir().display()
    );
    let plan = config::parse(&text, "test.toml", dir.path()).expect("config");
    (dir, erp, crm, plan)
}

fn runtime() -> PluginRuntime {
    PluginRuntime::new(
        Limits {
            max_instances: 8,
            ..Limits::default()
        },
        None,
    )
    .expect("runtime")
}

#[test]
fn a_lookup_of_a_row_not_synced_yet_is_retried_once_the_dependency_arrives() {
    let runtime = runtime();
    let (_dir, erp, crm, plan) = deployment(&runtime);
    let mut engine = Engine::open(
        &plan,
        &runtime,
        EngineOptions {
            first_retry: Duration::from_millis(1),
            retry_scan: Duration::from_millis(1),
            ..EngineOptions::default()
        },
    )
    .expect("engine");

    erp.execute_batch(
        "INSERT INTO CustCustomerGroup (DATAAREAID, CUSTOMERGROUPID, DESCRIPTION, \
         ISSALESTAXINCLUDEDINPRICE, PAYMENTTERMID) VALUES ('USMF', '10', 'Wholesale', 'no', 'Net30');",
    )
    .expect("group");
    engine.step().expect("step");
    assert_eq!(
        engine
            .store()
            .open_error_count("customer-groups")
            .expect("errors"),
        1,
        "the group waits for its terms of payment"
    );
    let count = |db: &Connection, sql: &str| -> i64 {
        db.query_row(sql, [], |row| row.get(0)).expect("count")
    };
    assert_eq!(count(&crm, "SELECT count(*) FROM msdyn_customergroups"), 0);

    erp.execute_batch(
        "INSERT INTO PaymentTerms (DATAAREAID, NAME, DESCRIPTION) VALUES ('USMF', 'Net30', 'Net 30 days');",
    )
    .expect("terms");
    let started = Instant::now();
    while count(&crm, "SELECT count(*) FROM msdyn_customergroups") == 0 {
        engine.step().expect("step");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the group was not retried"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let term: String = crm
        .query_row(
            "SELECT msdyn_paymenttermid FROM msdyn_customergroups",
            [],
            |row| row.get(0),
        )
        .expect("group row");
    assert_eq!(term, "Net30");
    assert_eq!(
        engine
            .store()
            .open_error_count("customer-groups")
            .expect("errors"),
        0,
        "the error was resolved by the retry"
    );
}

#[test]
fn playing_a_map_offers_to_start_the_maps_it_depends_on() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let (address_sender, address) = std::sync::mpsc::channel();
    let shutdown = Arc::new(AtomicBool::new(false));
    let stop = shutdown.clone();
    let engine_thread = std::thread::spawn(move || {
        let runtime = runtime();
        let (_dir, _erp, _crm, plan) = deployment(&runtime);
        let mut engine = Engine::open(&plan, &runtime, EngineOptions::default()).expect("engine");
        let mut operations = dualwrite::admin::start(
            &plan,
            &engine,
            dualwrite::admin::OperationsOptions {
                listen: Some("127.0.0.1:0".parse().expect("address")),
                token: Some(dualwrite::admin::AdminToken::new(TOKEN).expect("token")),
                ..dualwrite::admin::OperationsOptions::default()
            },
        )
        .expect("admin API");
        address_sender
            .send(operations.server.address())
            .expect("test waits");
        while !stop.load(Ordering::Relaxed) {
            let report = engine.step().expect("step");
            operations.control.tick(&mut engine).expect("tick");
            if report.captured == 0 {
                engine.wait_for_changes();
            }
        }
    });
    let address = address
        .recv_timeout(Duration::from_secs(120))
        .expect("the engine started");
    let client = reqwest::blocking::Client::new();
    let call = |path: &str, body: Option<&str>| -> (u16, serde_json::Value) {
        let mut request = client
            .post(format!("http://{address}/api/v1/maps/{path}"))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().expect("request");
        let status = response.status().as_u16();
        (status, response.json().expect("JSON answer"))
    };
    assert_eq!(call("customer-groups/stop", None).0, 200);
    assert_eq!(call("terms-of-payment/stop", None).0, 200);

    let (status, refused) = call("customer-groups/play", None);
    assert_eq!(status, 409, "{refused}");
    let message = refused["error"].as_str().expect("message");
    assert!(
        message.contains("depends on terms-of-payment") && message.contains("with_dependencies"),
        "the answer names the dependency and how to start it too: {message}"
    );

    let (status, started) = call(
        "customer-groups/play",
        Some(r#"{"with_dependencies": true}"#),
    );
    assert_eq!(status, 200, "{started}");
    assert_eq!(
        started["started"],
        serde_json::json!(["terms-of-payment", "customer-groups"]),
        "the dependency first"
    );
    let maps: serde_json::Value = client
        .get(format!("http://{address}/api/v1/maps"))
        .bearer_auth(TOKEN)
        .send()
        .expect("request")
        .json()
        .expect("JSON");
    for map in maps["maps"].as_array().expect("maps") {
        assert_eq!(map["mode"], "running", "{map}");
    }
    let groups = maps["maps"]
        .as_array()
        .expect("maps")
        .iter()
        .find(|map| map["name"] == "customer-groups")
        .expect("listed");
    assert_eq!(
        groups["depends_on"],
        serde_json::json!(["terms-of-payment"])
    );

    // Once its dependency runs, a map plays without being asked about it.
    assert_eq!(call("customer-groups/stop", None).0, 200);
    let (status, started) = call("customer-groups/play", None);
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["started"], serde_json::json!(["customer-groups"]));

    shutdown.store(true, Ordering::Relaxed);
    engine_thread
        .join()
        .expect("the engine thread ends cleanly");
}
