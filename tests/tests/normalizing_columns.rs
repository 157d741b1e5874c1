//! Columns that normalize what they are given, between two SQLite files (issue 14, item
//! 1): the issue's reproduction made deterministic.
//!
//! The ERP's `items(item_no TEXT PRIMARY KEY, descr TEXT, price NUMERIC)` and the CRM's
//! `products(sku TEXT PRIMARY KEY, title TEXT, amount TEXT DECIMAL(38,10))`, synced by a
//! declarative map with `kind = "decimal"` on price <-> amount, the ERP winning
//! conflicts. `NUMERIC` affinity keeps `'12.50'` as the real 12.5 and `'100.00'` as the
//! integer 100 (and at most 17 significant digits); the CRM's column keeps the text as
//! written. What the ERP stored is the truth of the ERP side: a value that is the same
//! number is no change, so
//! - a CRM edit after a normalized amount arrived is no conflict and is kept;
//! - an ERP edit of another field does not write the normalized amount back over the
//!   CRM's text;
//! - a decimal the ERP column cannot hold exactly is refused (error queue,
//!   `target-rejected`, naming the column and both values), never stored altered.

use std::path::Path;
use std::time::Duration;

use dualwrite::change::ErrorClass;
use dualwrite::config;
use dualwrite::state::{ErrorEntry, ErrorQuery};
use dualwrite::sync::{Engine, EngineOptions};
use dualwrite_tests::convergence::engine::{counters, runtime, settle};
use dualwrite_tests::convergence::kinds::{Field, MAP, items_map};
use dualwrite_tests::plugins_dir;
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;

const ERP_TABLE: &str = "CREATE TABLE items (item_no TEXT PRIMARY KEY, descr TEXT, price NUMERIC)";

const CRM_TABLE: &str =
    "CREATE TABLE products (sku TEXT PRIMARY KEY, title TEXT, amount TEXT DECIMAL(38,10))";

/// Two SQLite files, the ERP holding rows A (Widget, 10) and B (Gadget, 20.5), and an
/// engine whose initial sync copied them to the CRM.
struct Deployment {
    dir: tempfile::TempDir,
    engine: Engine,
}

impl Deployment {
    fn new() -> Deployment {
        let dir = tempfile::tempdir().expect("tempdir");
        for (file, table) in [("erp.db", ERP_TABLE), ("crm.db", CRM_TABLE)] {
            let db = Connection::open(dir.path().join(file)).expect("create db");
            db.execute_batch(&format!("PRAGMA journal_mode=WAL; {table};"))
                .expect("schema");
        }
        execute(
            dir.path(),
            "erp.db",
            "INSERT INTO items VALUES ('A', 'Widget', '10'), ('B', 'Gadget', '20.5')",
        );
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
{map}"#,
            plugins = plugins_dir().display().to_string(),
            map = items_map(&[Field::Descr, Field::Price]),
        );
        let plan = config::parse(&text, "test.toml", dir.path()).expect("valid config");
        let mut engine =
            Engine::open(&plan, runtime(), EngineOptions::default()).expect("engine opens");
        engine
            .initial_sync(MAP, 100, "test", &mut |_| {})
            .expect("initial sync");
        let deployment = Deployment { dir, engine };
        assert_eq!(
            deployment.crm_row("A"),
            [SqlValue::Text("Widget".into()), SqlValue::Text("10".into())],
            "the initial sync copied row A"
        );
        deployment
    }

    fn execute(&self, file: &str, sql: &str) {
        execute(self.dir.path(), file, sql);
    }

    /// Steps until a step finds nothing to do.
    fn sync(&mut self) {
        settle(&mut self.engine).expect("the engine settles");
    }

    /// (descr, price) of an ERP row as stored.
    fn erp_row(&self, key: &str) -> [SqlValue; 2] {
        row(
            self.dir.path(),
            "erp.db",
            "SELECT descr, price FROM items WHERE item_no = ?1",
            key,
        )
    }

    /// (title, amount) of a CRM row as stored.
    fn crm_row(&self, key: &str) -> [SqlValue; 2] {
        row(
            self.dir.path(),
            "crm.db",
            "SELECT title, amount FROM products WHERE sku = ?1",
            key,
        )
    }

    fn conflicts(&self) -> u64 {
        counters(&self.engine, MAP).conflicts
    }

    fn open_errors(&self) -> Vec<ErrorEntry> {
        self.engine
            .store()
            .errors(&ErrorQuery {
                map: Some(MAP.to_owned()),
                ..ErrorQuery::default()
            })
            .expect("error queue")
    }
}

fn execute(dir: &Path, file: &str, sql: &str) {
    let db = Connection::open(dir.join(file)).expect("open");
    db.busy_timeout(Duration::from_secs(5)).expect("timeout");
    db.execute_batch(sql).expect("sql");
}

fn row(dir: &Path, file: &str, sql: &str, key: &str) -> [SqlValue; 2] {
    let db = Connection::open(dir.join(file)).expect("open");
    db.query_row(sql, [key], |row| Ok([row.get(0)?, row.get(1)?]))
        .unwrap_or_else(|error| panic!("{file}: row {key}: {error}"))
}

/// The issue's reproduction: the CRM sets row A's amount to '12.50' (the ERP stores the
/// real 12.5), then edits row A's title. Was: the ERP's row looked changed since the
/// last sync (12.5 is not the '12.50' the engine wrote), so the title edit was a
/// conflict the ERP won: the CRM lost its title and ended with 12.5.
#[test]
fn a_crm_edit_after_a_normalized_amount_is_kept_without_a_conflict() {
    let mut deployment = Deployment::new();
    deployment.execute(
        "crm.db",
        "UPDATE products SET amount = '12.50' WHERE sku = 'A'",
    );
    deployment.sync();
    assert_eq!(
        deployment.erp_row("A"),
        [SqlValue::Text("Widget".into()), SqlValue::Real(12.5)],
        "NUMERIC keeps '12.50' as the number 12.5"
    );

    deployment.execute(
        "crm.db",
        "UPDATE products SET title = 'Widget XL' WHERE sku = 'A'",
    );
    deployment.sync();
    assert_eq!(
        deployment.crm_row("A"),
        [
            SqlValue::Text("Widget XL".into()),
            SqlValue::Text("12.50".into())
        ],
        "the CRM keeps its title and its amount as written"
    );
    assert_eq!(
        deployment.erp_row("A"),
        [SqlValue::Text("Widget XL".into()), SqlValue::Real(12.5)],
        "the ERP holds the CRM's title and the number 12.5"
    );
    assert_eq!(deployment.conflicts(), 0, "no conflict was counted");
    assert_eq!(deployment.open_errors(), [], "nothing in the error queue");
}

/// The flow-back: the CRM sets amounts '12.50' (row A; the ERP stores 12.5) and '100.00'
/// (row B; the ERP stores the integer 100), then the ERP edits both descriptions. Was:
/// the ERP's normalized amounts differed from what the engine had written, so they went
/// to the CRM with the description and rewrote '12.50' as '12.5' and '100.00' as '100'.
#[test]
fn an_erp_edit_does_not_rewrite_the_crms_amount() {
    let mut deployment = Deployment::new();
    deployment.execute(
        "crm.db",
        "UPDATE products SET amount = '12.50' WHERE sku = 'A';
         UPDATE products SET amount = '100.00' WHERE sku = 'B';",
    );
    deployment.sync();
    assert_eq!(deployment.erp_row("A")[1], SqlValue::Real(12.5));
    assert_eq!(deployment.erp_row("B")[1], SqlValue::Integer(100));

    deployment.execute(
        "erp.db",
        "UPDATE items SET descr = 'Widget XL' WHERE item_no = 'A';
         UPDATE items SET descr = 'Gadget XL' WHERE item_no = 'B';",
    );
    deployment.sync();
    assert_eq!(
        deployment.crm_row("A"),
        [
            SqlValue::Text("Widget XL".into()),
            SqlValue::Text("12.50".into())
        ],
        "the ERP's description arrived; the CRM's amount is as the CRM wrote it"
    );
    assert_eq!(
        deployment.crm_row("B"),
        [
            SqlValue::Text("Gadget XL".into()),
            SqlValue::Text("100.00".into())
        ],
        "the ERP's description arrived; the CRM's amount is as the CRM wrote it"
    );
    assert_eq!(deployment.conflicts(), 0, "no conflict was counted");
    assert_eq!(deployment.open_errors(), [], "nothing in the error queue");
}

/// A 20-digit decimal written on the CRM does not fit the ERP's `NUMERIC` column, which
/// would keep it as a real of 17 significant digits. Was: stored silently altered
/// (12345678901234567000). The write is refused instead: one error in the map's queue,
/// `target-rejected`, whose message names the column, the value and what the column
/// would have kept; neither row changes.
#[test]
fn a_decimal_the_erp_column_cannot_hold_goes_to_the_error_queue() {
    let mut deployment = Deployment::new();
    let wide = "12345678901234567890.12";
    deployment.execute(
        "crm.db",
        &format!("UPDATE products SET amount = '{wide}' WHERE sku = 'A'"),
    );
    deployment.sync();

    let errors = deployment.open_errors();
    assert_eq!(errors.len(), 1, "one refused write: {errors:#?}");
    let error = &errors[0].error;
    assert_eq!(error.class, ErrorClass::TargetRejected, "{error:?}");
    assert!(
        error.message.contains("price"),
        "names the column: {error:?}"
    );
    assert!(error.message.contains(wide), "names the value: {error:?}");
    // What NUMERIC affinity keeps of it: the real 1.2345678901234567e19, printed either
    // way.
    assert!(
        ["12345678901234567000", "1.2345678901234567e19"]
            .iter()
            .any(|kept| error.message.contains(kept)),
        "names what the column would keep: {error:?}"
    );
    assert_eq!(
        deployment.erp_row("A"),
        [SqlValue::Text("Widget".into()), SqlValue::Integer(10)],
        "the ERP row is untouched"
    );
    assert_eq!(
        deployment.crm_row("A"),
        [SqlValue::Text("Widget".into()), SqlValue::Text(wide.into())],
        "the CRM row is untouched"
    );
}
