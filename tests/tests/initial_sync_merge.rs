//! The initial sync is a merge that cannot lose a master row, on two SQLite files with a
//! declarative map `items` (ERP `items`) <-> `products` (CRM), the ERP the master (and
//! the winner of conflicts).
//!
//! - `the_second_pass_never_writes_over_a_master_row_the_plugin_left_out`: master rows
//!   the map's ERP filter leaves out, or the plugin refuses (a price that is not a
//!   decimal), exist on the CRM too under the same key. The pass over the CRM's unlinked
//!   rows must not write the CRM's values over them (it did: the pass wrote every
//!   unlinked row to the master without the "both sides hold it" check of live sync).
//! - `a_master_row_inserted_live_behind_the_master_pass_keeps_its_values`: the issue's
//!   reproduction. The CRM holds `A00001`; the ERP's rows start at `B`. Once the master
//!   pass is past `A`, the ERP inserts `A00001` with values of its own while the CRM is
//!   locked, so its live change waits in the map's queue. The ERP's row must win on both
//!   sides (the ERP's last write; the policy says the ERP wins a row both created). It
//!   used to end with the CRM's values: the queued change waited until the sync ended,
//!   the CRM pass overwrote the ERP's row, and the change then found the row "as last
//!   synced".

use std::path::PathBuf;
use std::time::Duration;

use dualwrite::config;
use dualwrite::plugin::{Limits, PluginRuntime};
use dualwrite::sync::{Engine, EngineOptions};
use dualwrite_tests::plugins_dir;
use rusqlite::{Connection, OptionalExtension as _, params};

const ERP_TABLE: &str =
    "CREATE TABLE items (item_no TEXT PRIMARY KEY, descr TEXT, price TEXT DECIMAL(19,4))";
const CRM_TABLE: &str =
    "CREATE TABLE products (sku TEXT PRIMARY KEY, title TEXT, amount TEXT DECIMAL(19,4))";

struct Deployment {
    dir: tempfile::TempDir,
    runtime: PluginRuntime,
}

/// A row of either side: (description or title, price or amount).
type Item = (Option<String>, Option<String>);

impl Deployment {
    fn new() -> Deployment {
        let dir = tempfile::tempdir().expect("tempdir");
        for (file, table) in [("erp.db", ERP_TABLE), ("crm.db", CRM_TABLE)] {
            let db = Connection::open(dir.path().join(file)).expect("create db");
            db.execute_batch(&format!("PRAGMA journal_mode=WAL; {table};"))
                .expect("schema");
        }
        let runtime = PluginRuntime::new(
            Limits {
                max_instances: 8,
                ..Limits::default()
            },
            None,
        )
        .expect("runtime");
        Deployment { dir, runtime }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn engine(&self) -> Engine {
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

[maps.items]
plugin = "declarative.wasm"
erp = {{ side = "erp", entity = "items", key = ["item_no"] }}
crm = {{ side = "crm", entity = "products", key = ["sku"] }}
conflict = {{ policy = "side-wins", winner = "erp" }}

[maps.items.config]
name = "items"
erp = {{ entity = "items", key = ["item_no"] }}
crm = {{ entity = "products", key = ["sku"] }}
filters = {{ erp = "descr != \"internal\"" }}

[[maps.items.config.fields]]
erp = "item_no"
crm = "sku"

[[maps.items.config.fields]]
erp = "descr"
crm = "title"

[[maps.items.config.fields]]
erp = "price"
crm = "amount"
kind = "decimal"
"#,
            plugins = plugins_dir().display()
        );
        let plan = config::parse(&text, "test.toml", self.dir.path()).expect("valid config");
        Engine::open(
            &plan,
            &self.runtime,
            EngineOptions {
                min_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(50),
                ..EngineOptions::default()
            },
        )
        .expect("engine opens")
    }

    fn db(&self, file: &str) -> Connection {
        let db = Connection::open(self.path(file)).expect("open");
        db.busy_timeout(Duration::from_secs(10)).expect("timeout");
        db
    }

    fn insert(&self, file: &str, key: &str, text: &str, number: &str) {
        let sql = if file == "erp.db" {
            "INSERT INTO items (item_no, descr, price) VALUES (?1, ?2, ?3)"
        } else {
            "INSERT INTO products (sku, title, amount) VALUES (?1, ?2, ?3)"
        };
        self.db(file)
            .execute(sql, params![key, text, number])
            .expect("insert");
    }

    fn row(&self, file: &str, key: &str) -> Option<Item> {
        let sql = if file == "erp.db" {
            "SELECT descr, price FROM items WHERE item_no = ?1"
        } else {
            "SELECT title, amount FROM products WHERE sku = ?1"
        };
        self.db(file)
            .query_row(sql, [key], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()
            .expect("read")
    }
}

fn item(text: &str, number: &str) -> Option<Item> {
    Some((Some(text.to_owned()), Some(number.to_owned())))
}

/// Steps until a step captures nothing and writes nothing, twice in a row.
fn settle(engine: &mut Engine) {
    let mut quiet = 0;
    for _ in 0..500 {
        let report = engine.step().expect("step");
        if report.captured == 0 && report.written == 0 {
            quiet += 1;
            if quiet == 2 {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        } else {
            quiet = 0;
        }
    }
    panic!("the engine did not settle");
}

#[test]
fn the_second_pass_never_writes_over_a_master_row_the_plugin_left_out() {
    let deployment = Deployment::new();
    // Filtered out on the ERP side, refused by the plugin (not a decimal), and plain.
    deployment.insert("erp.db", "F1", "internal", "1.0000");
    deployment.insert("erp.db", "R1", "refused", "not a number");
    deployment.insert("erp.db", "P1", "plain", "3.0000");
    for key in ["F1", "R1"] {
        deployment.insert("crm.db", key, "from the crm", "9.0000");
    }
    deployment.insert("crm.db", "C1", "only on the crm", "4.0000");

    let mut engine = deployment.engine();
    let status = engine
        .initial_sync("items", 2, "test", &mut |_| {})
        .expect("initial sync");
    assert!(status.complete);
    settle(&mut engine);

    // The master's rows the map left out are the master's: never written over.
    assert_eq!(deployment.row("erp.db", "F1"), item("internal", "1.0000"));
    assert_eq!(
        deployment.row("erp.db", "R1"),
        item("refused", "not a number")
    );
    // ... and the CRM's rows under those keys stay as they are.
    assert_eq!(
        deployment.row("crm.db", "F1"),
        item("from the crm", "9.0000")
    );
    assert_eq!(
        deployment.row("crm.db", "R1"),
        item("from the crm", "9.0000")
    );
    // Everything else merged both ways.
    assert_eq!(deployment.row("crm.db", "P1"), item("plain", "3.0000"));
    assert_eq!(
        deployment.row("erp.db", "C1"),
        item("only on the crm", "4.0000")
    );
    // The refused row is in the error queue, with the plugin's reason.
    let errors = engine
        .store()
        .errors(&dualwrite::state::ErrorQuery {
            map: Some("items".to_owned()),
            ..Default::default()
        })
        .expect("errors");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].error.message.contains("price"),
        "{:?}",
        errors[0].error
    );
}

#[test]
fn a_master_row_inserted_live_behind_the_master_pass_keeps_its_values() {
    let deployment = Deployment::new();
    for n in 1..=30 {
        deployment.insert(
            "erp.db",
            &format!("B{n:05}"),
            &format!("erp {n}"),
            &format!("{n}.0000"),
        );
    }
    deployment.insert("crm.db", "A00001", "the crm's", "1.0000");

    let mut engine = deployment.engine();
    engine.begin_initial_sync("items", "test").expect("begin");
    // The first chunk of the master pass: past `A` already (its keys start at `B`).
    let status = engine.initial_sync_chunk("items", 10).expect("chunk");
    assert!(!status.complete);

    // The ERP creates A00001 while the CRM is locked: its live change cannot be applied
    // and waits in the map's queue.
    deployment.insert("erp.db", "A00001", "the erp's", "2.0000");
    let lock = deployment.db("crm.db");
    lock.execute_batch("BEGIN EXCLUSIVE").expect("lock the crm");
    engine.step().expect("step while the crm is locked");
    assert!(
        engine.queued_changes("items").unwrap_or_default() > 0,
        "the ERP's change waits in the queue while the CRM is locked"
    );
    lock.execute_batch("COMMIT").expect("unlock");
    drop(lock);

    let status = engine
        .initial_sync("items", 10, "test", &mut |_| {})
        .expect("initial sync");
    assert!(status.complete);
    settle(&mut engine);

    assert_eq!(
        deployment.row("erp.db", "A00001"),
        item("the erp's", "2.0000")
    );
    assert_eq!(
        deployment.row("crm.db", "A00001"),
        item("the erp's", "2.0000")
    );
    for n in 1..=30 {
        let key = format!("B{n:05}");
        assert_eq!(
            deployment.row("crm.db", &key),
            item(&format!("erp {n}"), &format!("{n}.0000")),
            "{key}"
        );
    }
    assert_eq!(engine.queued_changes("items"), Some(0));
}
