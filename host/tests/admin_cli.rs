//! The admin commands of the CLI as a user runs them: the real `dualwrite run` serving
//! its admin API (on a free loopback port, with a generated token it prints), and the
//! real `dualwrite maps`, `pause`, `resume`, `errors`, `activity`, `alerts` calling it.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use dualwrite_tests::customer_groups::{CRM_TABLE, ERP_TABLE};
use dualwrite_tests::engine_process::EngineProcess;
use dualwrite_tests::plugins_dir;
use rusqlite::Connection;

fn start_engine(dir: &Path) -> EngineProcess {
    for (file, table) in [("erp.db", ERP_TABLE), ("crm.db", CRM_TABLE)] {
        let db = Connection::open(dir.join(file)).expect("create db");
        db.execute_batch(&format!("PRAGMA journal_mode=WAL; {table};"))
            .expect("schema");
    }
    let config = dir.join("dualwrite.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "state"
plugins_dir = "{plugins}"

[admin]
listen = "127.0.0.1:0"

[alerts.app-errors]
when = "errors"
count = 10
window = "15m"
actions = ["pause", "notify"]

[sides.erp]
connector = "sqlite"
path = "erp.db"

[sides.crm]
connector = "sqlite"
path = "crm.db"

[maps.customer-groups]
plugin = "customer_groups.wasm"
erp = {{ side = "erp", entity = "CustCustomerGroup", key = ["DATAAREAID", "CUSTOMERGROUPID"] }}
crm = {{ side = "crm", entity = "msdyn_customergroups", key = ["msdyn_company", "msdyn_groupid"] }}
conflict = {{ policy = "side-wins", winner = "erp" }}

[maps.customer-groups.config]
resolve_lookups = false
"#,
            plugins = plugins_dir().display()
        ),
    )
    .expect("config");
    EngineProcess::start(
        Path::new(env!("CARGO_BIN_EXE_dualwrite")),
        &config,
        &dir.join("cache"),
    )
}

fn cli(engine: &EngineProcess, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dualwrite"))
        .args(args)
        .env("DUALWRITE_URL", &engine.url)
        .env("DUALWRITE_TOKEN", &engine.token)
        .output()
        .expect("run dualwrite")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn crm_rows(dir: &Path) -> Vec<String> {
    let db = Connection::open(dir.join("crm.db")).expect("open");
    let mut statement = db
        .prepare("SELECT msdyn_groupid FROM msdyn_customergroups ORDER BY 1")
        .expect("prepare");
    statement
        .query_map([], |row| row.get(0))
        .expect("query")
        .collect::<Result<Vec<String>, _>>()
        .expect("rows")
}

fn insert_erp(dir: &Path, id: &str) {
    let db = Connection::open(dir.join("erp.db")).expect("open");
    db.busy_timeout(Duration::from_secs(5)).expect("timeout");
    db.execute(
        "INSERT INTO CustCustomerGroup VALUES ('USMF', ?1, 'group', 'yes', NULL, NULL)",
        [id],
    )
    .expect("insert");
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_cli_pauses_and_resumes_a_map_with_catch_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = start_engine(dir.path());
    assert!(
        engine.url.starts_with("http://127.0.0.1:"),
        "loopback by default: {}",
        engine.url
    );

    let maps = cli(&engine, &["maps"]);
    assert!(maps.status.success(), "{}", stderr(&maps));
    let table = stdout(&maps);
    assert!(table.starts_with("MAP"), "{table}");
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("customer-groups") && line.contains("running")),
        "{table}"
    );

    let paused = cli(&engine, &["pause", "customer-groups"]);
    assert!(paused.status.success(), "{}", stderr(&paused));
    assert_eq!(stdout(&paused), "customer-groups: paused\n");
    insert_erp(dir.path(), "10");
    eventually("the change to queue", || {
        let maps = cli(&engine, &["maps", "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&maps.stdout).expect("JSON");
        json["maps"][0]["queue_depth"] == 1 && json["maps"][0]["mode"] == "paused"
    });
    assert!(crm_rows(dir.path()).is_empty());

    let resumed = cli(
        &engine,
        &["resume", "customer-groups", "--mode", "catch-up"],
    );
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    eventually("the queued change to arrive", || {
        crm_rows(dir.path()) == ["10"]
    });

    let activity = cli(
        &engine,
        &[
            "activity",
            "--map",
            "customer-groups",
            "--kind",
            "state-change",
        ],
    );
    assert!(activity.status.success(), "{}", stderr(&activity));
    let text = stdout(&activity);
    assert!(text.contains("pause"), "{text}");
    assert!(text.contains("resume (catch up)"), "{text}");
    let csv = cli(
        &engine,
        &["activity", "--map", "customer-groups", "--format", "csv"],
    );
    assert!(
        stdout(&csv).starts_with("id,at,map,kind,"),
        "{}",
        stdout(&csv)
    );

    let errors = cli(&engine, &["errors", "customer-groups"]);
    assert!(errors.status.success(), "{}", stderr(&errors));
    assert_eq!(stdout(&errors).lines().count(), 1, "only the header");

    let alerts = cli(&engine, &["alerts"]);
    assert!(alerts.status.success(), "{}", stderr(&alerts));
    assert!(
        stdout(&alerts).contains("10 any error(s) in 15m"),
        "{}",
        stdout(&alerts)
    );
    let added = cli(
        &engine,
        &[
            "alerts",
            "add",
            "deep",
            "--when",
            "queue-depth",
            "--threshold",
            "1000",
            "--actions",
            "notify",
        ],
    );
    assert!(added.status.success(), "{}", stderr(&added));
    assert!(stdout(&cli(&engine, &["alerts"])).contains("deep"));
}

#[test]
fn recorded_traffic_exported_with_record_replays_through_the_plugin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = start_engine(dir.path());
    for id in ["10", "20", "30"] {
        insert_erp(dir.path(), id);
    }
    eventually("the rows to sync", || {
        crm_rows(dir.path()) == ["10", "20", "30"]
    });
    let db = Connection::open(dir.path().join("erp.db")).expect("open");
    db.execute(
        "UPDATE CustCustomerGroup SET DESCRIPTION = 'changed' WHERE CUSTOMERGROUPID = '20'",
        [],
    )
    .expect("update");
    eventually("the update to sync", || {
        let db = Connection::open(dir.path().join("crm.db")).expect("open");
        db.query_row(
            "SELECT msdyn_description FROM msdyn_customergroups WHERE msdyn_groupid = '20'",
            [],
            |row| row.get::<_, String>(0),
        )
        .is_ok_and(|description| description == "changed")
    });

    let file = dir.path().join("recorded.jsonl");
    let recorded = cli(
        &engine,
        &[
            "record",
            "--map",
            "customer-groups",
            "--since",
            "1h",
            "-o",
            file.to_str().expect("path"),
        ],
    );
    assert!(recorded.status.success(), "{}", stderr(&recorded));
    assert!(
        stderr(&recorded).contains("4 change(s) written"),
        "{}",
        stderr(&recorded)
    );
    let text = std::fs::read_to_string(&file).expect("change set");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert_eq!(lines[0]["dualwrite"], "change-set");
    assert_eq!(lines[0]["map"], "customer-groups");
    let ops: Vec<(&str, &str)> = lines[1..]
        .iter()
        .map(|line| {
            (
                line["op"].as_str().expect("op"),
                line["row"]["CUSTOMERGROUPID"].as_str().expect("key"),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("insert", "10"),
            ("insert", "20"),
            ("insert", "30"),
            ("update", "20")
        ],
        "the ERP side's captured changes in order; the engine's own CRM writes are not captured"
    );
    assert!(lines[1..].iter().all(|line| line["source"] == "erp"));

    // The recording replays through the plugin with no database.
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"resolve_lookups": false}"#,
    )
    .expect("config");
    let replayed = Command::new(env!("CARGO_BIN_EXE_dualwrite"))
        .args(["replay", "--plugin"])
        .arg(plugins_dir().join("customer_groups.wasm"))
        .arg("--changes")
        .arg(&file)
        .arg("--config")
        .arg(dir.path().join("config.json"))
        .output()
        .expect("run dualwrite replay");
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    let results: Vec<serde_json::Value> = stdout(&replayed)
        .lines()
        .map(|line| serde_json::from_str(line).expect("result record"))
        .collect();
    assert_eq!(results.len(), 4, "{}", stdout(&replayed));
    assert!(
        stdout(&replayed).contains("changed"),
        "the update's new description is written: {}",
        stdout(&replayed)
    );

    // A range with nothing in it gives a change set with only its header.
    let empty = cli(
        &engine,
        &["record", "--map", "customer-groups", "--until", "2h"],
    );
    assert!(empty.status.success(), "{}", stderr(&empty));
    assert_eq!(stdout(&empty).lines().count(), 1, "{}", stdout(&empty));
    let unknown = cli(&engine, &["record", "--map", "no-such-map"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no running map named no-such-map"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn a_wrong_token_or_no_engine_gets_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = start_engine(dir.path());
    let wrong = Command::new(env!("CARGO_BIN_EXE_dualwrite"))
        .args([
            "maps",
            "--url",
            &engine.url,
            "--token",
            "not-the-token-at-all",
        ])
        .env_remove("DUALWRITE_TOKEN")
        .output()
        .expect("run");
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        stderr(&wrong).contains("refused the token"),
        "{}",
        stderr(&wrong)
    );
    assert!(!stderr(&wrong).contains(&engine.token));
    let url = engine.url.clone();
    drop(engine);
    let gone = Command::new(env!("CARGO_BIN_EXE_dualwrite"))
        .args(["maps", "--url", &url, "--token", "whatever-token-123456"])
        .output()
        .expect("run");
    assert_eq!(gone.status.code(), Some(2));
    assert!(
        stderr(&gone).contains("cannot reach the admin API"),
        "{}",
        stderr(&gone)
    );
}

/// An initial sync started through the admin API (`dualwrite initial-sync`) while the
/// CRM's SQLite file is locked longer than the engine's busy timeout (5 s): the merge
/// waits, the CRM shows as offline and the engine stays up; once the lock is gone the
/// merge completes and every ERP row is on the CRM. The engine used to exit on the
/// chunk's error.
#[test]
fn an_initial_sync_through_the_api_waits_out_a_locked_side() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut engine = start_engine(dir.path());
    // Rows the live sync never saw: written with capture paused by a stopped map.
    let stop = cli(&engine, &["stop", "customer-groups"]);
    assert!(stop.status.success(), "{}", stderr(&stop));
    for n in 0..50 {
        insert_erp(dir.path(), &format!("G{n:03}"));
    }
    let lock = Connection::open(dir.path().join("crm.db")).expect("open crm");
    lock.execute_batch("BEGIN EXCLUSIVE").expect("lock the crm");
    let started = cli(&engine, &["initial-sync", "customer-groups"]);
    assert!(started.status.success(), "{}", stderr(&started));

    // Well past the busy timeout: the engine is still there, the CRM offline.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            engine.is_running(),
            "the engine exited during the locked initial sync:\n{}",
            engine.lines().join("\n")
        );
        if engine.map("customer-groups")["crm_offline"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the CRM never showed as offline: {}",
            engine.map("customer-groups")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(engine.is_running(), "{}", engine.lines().join("\n"));
    assert!(crm_rows(dir.path()).is_empty());

    lock.execute_batch("COMMIT").expect("unlock");
    drop(lock);
    let expected: Vec<String> = (0..50).map(|n| format!("G{n:03}")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while crm_rows(dir.path()) != expected || engine.map("customer-groups")["mode"] != "running" {
        assert!(engine.is_running(), "{}", engine.lines().join("\n"));
        assert!(
            Instant::now() < deadline,
            "the initial sync did not complete after the lock went: {} of 50 rows; {}",
            crm_rows(dir.path()).len(),
            engine.map("customer-groups")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(engine.map("customer-groups")["crm_offline"], false);
}
