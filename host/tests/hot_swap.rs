//! Drop-in hot swap as an admin does it: the real `dualwrite run` on two SQLite files,
//! a plugins folder of its own, and plugin files copied into that folder while rows
//! keep arriving on the ERP side. A changed plugin (the C build of the customer-groups
//! map replacing the Rust one) is swapped in without a restart; a truncated file, a
//! plugin of another world and a build whose embedded self-test fails are refused
//! while the running version serves on; `dualwrite
//! plugin rollback` returns to the previous version; nothing is lost or doubled; and a
//! restart with the refused file still in the folder runs the version in force.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dualwrite_tests::customer_groups::{CRM_TABLE, ERP_TABLE, MAP_ENDPOINTS};
use dualwrite_tests::engine_process::EngineProcess;
use dualwrite_tests::{eventually, plugin_path, sha256_hex};
use rusqlite::Connection;
use serde_json::Value as Json;

const MAP: &str = "customer-groups";
const FILE: &str = "customer_groups.wasm";

fn write_config(dir: &Path) -> PathBuf {
    for (file, table) in [("erp.db", ERP_TABLE), ("crm.db", CRM_TABLE)] {
        let db = Connection::open(dir.join(file)).expect("create db");
        db.execute_batch(&format!("PRAGMA journal_mode=WAL; {table};"))
            .expect("schema");
    }
    std::fs::create_dir(dir.join("plugins")).expect("plugins folder");
    std::fs::copy(
        plugin_path("customer_groups"),
        dir.join("plugins").join(FILE),
    )
    .expect("the Rust build of the map");
    let config = dir.join("dualwrite.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "state"
plugins_dir = "plugins"

[admin]
listen = "127.0.0.1:0"

[sides.erp]
connector = "sqlite"
path = "erp.db"

[sides.crm]
connector = "sqlite"
path = "crm.db"

[maps.{MAP}]
plugin = "{FILE}"
{MAP_ENDPOINTS}

[maps.{MAP}.config]
resolve_lookups = false
"#
        ),
    )
    .expect("config");
    config
}

/// Puts `bytes` into the plugins folder as the map's file the way deployment tools do:
/// written beside it under a hidden name, then renamed over it.
fn drop_in(dir: &Path, bytes: &[u8]) {
    let staging = dir.join("plugins").join(".customer_groups.wasm.partial");
    std::fs::write(&staging, bytes).expect("write");
    std::fs::rename(&staging, dir.join("plugins").join(FILE)).expect("rename into place");
}

fn activity(engine: &EngineProcess, kind: &str) -> Vec<Json> {
    engine.get(&format!("/api/v1/activity?map={MAP}&kind={kind}"))["activity"]
        .as_array()
        .expect("entries")
        .clone()
}

fn cli(engine: &EngineProcess, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dualwrite"))
        .args(args)
        .env("DUALWRITE_URL", &engine.url)
        .env("DUALWRITE_TOKEN", &engine.token)
        .output()
        .expect("run dualwrite")
}

fn crm_groups(dir: &Path) -> Vec<(String, String)> {
    let db = Connection::open(dir.join("crm.db")).expect("open");
    db.busy_timeout(Duration::from_secs(5)).expect("timeout");
    let mut statement = db
        .prepare("SELECT msdyn_groupid, coalesce(msdyn_description, '') FROM msdyn_customergroups ORDER BY 1")
        .expect("prepare");
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// Whether `line` is the engine's report of what became of a dropped file (not the
/// log line that goes with it).
fn outcome(line: &str) -> bool {
    line.starts_with("dualwrite: ") && (line.contains("swapped in") || line.contains("refused"))
}

/// Inserts groups G00000, G00001, ... on the ERP side, one every few milliseconds,
/// until stopped; returns how many.
struct Load {
    stop: Arc<AtomicBool>,
    inserted: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(erp: PathBuf) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let inserted = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, inserted) = (stop.clone(), inserted.clone());
            std::thread::spawn(move || {
                let db = Connection::open(erp).expect("open");
                db.busy_timeout(Duration::from_secs(10)).expect("timeout");
                while !stop.load(Ordering::Relaxed) {
                    let n = inserted.load(Ordering::Relaxed);
                    db.execute(
                        "INSERT INTO CustCustomerGroup (DATAAREAID, CUSTOMERGROUPID, DESCRIPTION, \
                         ISSALESTAXINCLUDEDINPRICE) VALUES ('usmf', ?1, ?2, 'Yes')",
                        (format!("G{n:05}"), format!("group {n}")),
                    )
                    .expect("insert");
                    inserted.store(n + 1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(4));
                }
            })
        };
        Load {
            stop,
            inserted,
            thread: Some(thread),
        }
    }

    fn count(&self) -> u64 {
        self.inserted.load(Ordering::Relaxed)
    }

    fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the load thread ends cleanly");
        }
        self.count()
    }
}

#[test]
fn dropped_plugin_files_are_swapped_in_or_refused_under_load_and_rolled_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    let binary = Path::new(env!("CARGO_BIN_EXE_dualwrite"));
    let cache = dir.path().join("cache");
    let mut engine = EngineProcess::start(binary, &config, &cache);
    let rust = std::fs::read(plugin_path("customer_groups")).expect("rust build");
    let c = std::fs::read(plugin_path("customer_groups_c")).expect("C build");
    assert_eq!(engine.plugin_hash(MAP), sha256_hex(&rust));

    let mut load = Load::start(dir.path().join("erp.db"));
    eventually(
        "rows to sync before the swap",
        Duration::from_secs(60),
        || load.count() >= 100 && crm_groups(dir.path()).len() >= 50,
    );

    // A changed plugin file: swapped in between steps, with the dry run's figures.
    drop_in(dir.path(), &c);
    let swapped = engine.wait_for_line("the swap", Duration::from_secs(60), outcome);
    assert!(
        swapped.starts_with(&format!("dualwrite: {MAP}: {FILE} swapped in")),
        "{swapped}"
    );
    // The C build maps like the Rust one: the recorded changes give the same output.
    assert!(
        swapped.contains(" recorded change(s) differ") && swapped.contains("dry run: 0 of "),
        "{swapped}"
    );
    assert!(
        !swapped.contains("dry run: 0 of 0 "),
        "the dry run replayed changes: {swapped}"
    );
    assert_eq!(engine.plugin_hash(MAP), sha256_hex(&c));
    let versions = activity(&engine, "plugin-version");
    let swap_entry = versions
        .iter()
        .find(|entry| entry["detail"]["to"]["hash"] == sha256_hex(&c))
        .unwrap_or_else(|| panic!("the swap is in the activity log: {versions:?}"));
    assert_eq!(swap_entry["detail"]["from"]["hash"], sha256_hex(&rust));
    let before_refusals = load.count();

    // A truncated file and a plugin of another world: refused, the C build serves on.
    drop_in(dir.path(), &c[..c.len() / 2]);
    let refused = engine.wait_for_line(
        "the truncated file's refusal",
        Duration::from_secs(60),
        outcome,
    );
    assert!(
        refused.contains("refused, the map runs on its current version")
            && refused.contains("invalid component"),
        "{refused}"
    );
    let other_world = std::fs::read(plugin_path("other_world")).expect("other world");
    drop_in(dir.path(), &other_world);
    let refused = engine.wait_for_line(
        "the other world's refusal",
        Duration::from_secs(60),
        outcome,
    );
    assert!(
        refused.contains("refused")
            && refused.contains("not a dualwrite map plugin this host can run"),
        "{refused}"
    );
    // A valid build whose embedded self-test case fails (its expected output was
    // edited): refused naming the case.
    let mut case = dualwrite::replay::self_test::SelfTestCase::read_dir(
        &dualwrite_tests::cases_dir().join("customer-groups-both-ways"),
    )
    .expect("case");
    case.expected = case
        .expected
        .replacen("Wholesale customers", "Wholesale buyers", 1);
    let failing = dualwrite::replay::self_test::embed(
        &rust,
        &dualwrite::replay::self_test::SelfTests {
            version: 1,
            cases: vec![case],
        },
    )
    .expect("embed");
    drop_in(dir.path(), &failing);
    let refused = engine.wait_for_line(
        "the failing self-test's refusal",
        Duration::from_secs(60),
        outcome,
    );
    assert!(
        refused.contains("refused")
            && refused.contains("self-test: case customer-groups-both-ways"),
        "{refused}"
    );
    assert_eq!(engine.plugin_hash(MAP), sha256_hex(&c));
    let rejections = activity(&engine, "plugin-rejected");
    assert_eq!(rejections.len(), 3, "{rejections:?}");
    assert!(
        rejections
            .iter()
            .all(|entry| entry["detail"]["running"] == sha256_hex(&c))
    );
    // Still serving: rows inserted after the refusals arrive.
    eventually("rows after the refusals", Duration::from_secs(60), || {
        load.count() >= before_refusals + 50
            && crm_groups(dir.path()).len() as u64 >= before_refusals + 25
    });

    // Rollback to the version before the swap, through the CLI.
    let rolled_back = cli(&engine, &["plugin", "rollback", MAP]);
    assert!(
        rolled_back.status.success(),
        "{}",
        String::from_utf8_lossy(&rolled_back.stderr)
    );
    let said = String::from_utf8_lossy(&rolled_back.stdout);
    assert!(said.contains(&sha256_hex(&rust)[..12]), "{said}");
    assert_eq!(engine.plugin_hash(MAP), sha256_hex(&rust));

    // Nothing lost, nothing doubled: every inserted group arrived once, with its values.
    let inserted = load.stop();
    eventually("every row to sync", Duration::from_secs(60), || {
        crm_groups(dir.path()).len() as u64 == inserted
    });
    let groups = crm_groups(dir.path());
    for (n, (id, description)) in groups.iter().enumerate() {
        assert_eq!(id, &format!("G{n:05}"));
        assert_eq!(description, &format!("group {n}"));
    }
    // The counters come from a snapshot published every quarter second.
    let counters = || engine.counters(MAP);
    eventually("the counters to catch up", Duration::from_secs(10), || {
        counters()["written_to_crm"] == inserted
    });
    std::thread::sleep(Duration::from_millis(600));
    let map = counters();
    assert_eq!(map["written_to_crm"], inserted, "written once each: {map}");
    assert_eq!(map["errors"], 0, "{map}");

    // A restart with the last refused file (the failing self-test) still in the folder:
    // the version in force (the rolled-back Rust build, from the archive) runs, and the
    // refusal is recorded.
    engine.kill();
    let mut engine = EngineProcess::start(binary, &config, &cache);
    assert_eq!(engine.plugin_hash(MAP), sha256_hex(&rust));
    let rejections = activity(&engine, "plugin-rejected");
    assert_eq!(rejections.len(), 4, "{rejections:?}");
    assert!(
        rejections.iter().any(|entry| entry["message"]
            .as_str()
            .unwrap_or("")
            .contains("refused at start")),
        "{rejections:?}"
    );
    let db = Connection::open(dir.path().join("erp.db")).expect("open");
    db.execute(
        "INSERT INTO CustCustomerGroup (DATAAREAID, CUSTOMERGROUPID, DESCRIPTION) \
         VALUES ('usmf', 'AFTER', 'after the restart')",
        [],
    )
    .expect("insert");
    eventually("a row after the restart", Duration::from_secs(60), || {
        crm_groups(dir.path())
            .iter()
            .any(|(id, description)| id == "AFTER" && description == "after the restart")
    });
    // Dropping the Rust build's bytes back in changes nothing: it runs already.
    drop_in(dir.path(), &rust);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(engine.plugin_hash(MAP), sha256_hex(&rust));
    // The versions a map ran outlive the restart: rolling back again (from the
    // rolled-back version) returns to the C build, read from the archive.
    let rolled_back = cli(&engine, &["plugin", "rollback", MAP]);
    assert!(
        rolled_back.status.success(),
        "{}",
        String::from_utf8_lossy(&rolled_back.stderr)
    );
    assert_eq!(engine.plugin_hash(MAP), sha256_hex(&c));
    engine.kill();
}
