//! Relationships between maps: a customer group that refers to terms of payment not
//! synced yet fails with a retryable `dependency-missing` error, and is applied by the
//! automatic retry once the terms of payment have synced.

use std::time::{Duration, Instant};

use dualwrite::change::{Side, ValueKind};
use dualwrite::config;
use dualwrite::plugin::{Limits, PluginRuntime};
use dualwrite::sync::{Engine, EngineOptions};
use dualwrite_tests::{plugin_path, plugins_dir};
use rusqlite::Connection;

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

#[test]
fn a_lookup_of_a_row_not_synced_yet_is_retried_once_the_dependency_arrives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = PluginRuntime::new(
        Limits {
            max_instances: 8,
            ..Limits::default()
        },
        None,
    )
    .expect("runtime");
    let erp = Connection::open(dir.path().join("erp.db")).expect("erp");
    let crm = Connection::open(dir.path().join("crm.db")).expect("crm");
    for db in [&erp, &crm] {
        db.execute_batch("PRAGMA journal_mode=WAL;").expect("wal");
    }
    create_tables(&runtime, "terms_of_payment", &erp, &crm);
    create_tables(&runtime, "customer_groups", &erp, &crm);

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
