//! The sync engine end to end on two real SQLite files with the customer-groups plugin:
//! both directions, no echo, pause and the three resume choices, restart, a side that
//! goes away and comes back.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dualwrite::config;
use dualwrite::plugin::{Limits, PluginRuntime};
use dualwrite::sync::{Engine, EngineOptions, ResumeMode};
use dualwrite_tests::plugins_dir;
use rusqlite::Connection;

const ERP_TABLE: &str = "CREATE TABLE CustCustomerGroup (
    DATAAREAID TEXT NOT NULL, CUSTOMERGROUPID TEXT NOT NULL, DESCRIPTION TEXT,
    ISSALESTAXINCLUDEDINPRICE TEXT, PAYMENTTERMID TEXT, CLEARINGPERIODPAYMENTTERMNAME TEXT,
    PRIMARY KEY (DATAAREAID, CUSTOMERGROUPID))";

const CRM_TABLE: &str = "CREATE TABLE msdyn_customergroups (
    msdyn_company TEXT NOT NULL, msdyn_groupid TEXT NOT NULL, msdyn_description TEXT,
    msdyn_issalestaxincludedinprice BOOLEAN, msdyn_paymenttermid TEXT,
    msdyn_clearingperiodpaymenttermname TEXT,
    PRIMARY KEY (msdyn_company, msdyn_groupid))";

struct Deployment {
    dir: tempfile::TempDir,
    runtime: PluginRuntime,
}

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

[maps.customer-groups]
plugin = "customer_groups.wasm"
erp = {{ side = "erp", entity = "CustCustomerGroup", key = ["DATAAREAID", "CUSTOMERGROUPID"] }}
crm = {{ side = "crm", entity = "msdyn_customergroups", key = ["msdyn_company", "msdyn_groupid"] }}
conflict = {{ policy = "side-wins", winner = "erp" }}

[maps.customer-groups.config]
resolve_lookups = false
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

    fn execute(&self, file: &str, sql: &str) {
        let db = Connection::open(self.path(file)).expect("open");
        db.busy_timeout(Duration::from_secs(5)).expect("timeout");
        db.execute_batch(sql).expect("sql");
    }

    fn rows(&self, file: &str, sql: &str) -> Vec<Vec<String>> {
        let db = Connection::open(self.path(file)).expect("open");
        let mut statement = db.prepare(sql).expect("prepare");
        let columns = statement.column_count();
        statement
            .query_map([], |row| {
                (0..columns)
                    .map(|index| {
                        row.get::<_, rusqlite::types::Value>(index)
                            .map(|value| format!("{value:?}"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .expect("query")
            .collect::<Result<Vec<_>, _>>()
            .expect("rows")
    }

    fn change_log_len(&self, file: &str) -> usize {
        self.rows(file, "SELECT count(*) FROM _dualwrite_changes")[0][0]
            .trim_start_matches("Integer(")
            .trim_end_matches(')')
            .parse()
            .expect("count")
    }
}

/// Steps until a step finds nothing to do (or a time limit, which fails).
fn settle(engine: &mut Engine) {
    let started = Instant::now();
    loop {
        let report = engine.step().expect("step");
        if report.captured == 0 && report.written == 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "did not settle"
        );
    }
}

fn crm_groups(deployment: &Deployment) -> Vec<Vec<String>> {
    deployment.rows(
        "crm.db",
        "SELECT msdyn_company, msdyn_groupid, msdyn_description, msdyn_issalestaxincludedinprice \
         FROM msdyn_customergroups ORDER BY 1, 2",
    )
}

fn erp_groups(deployment: &Deployment) -> Vec<Vec<String>> {
    deployment.rows(
        "erp.db",
        "SELECT DATAAREAID, CUSTOMERGROUPID, DESCRIPTION, ISSALESTAXINCLUDEDINPRICE \
         FROM CustCustomerGroup ORDER BY 1, 2",
    )
}

fn text(value: &str) -> String {
    format!("Text({value:?})")
}

#[test]
fn changes_flow_both_ways_without_echo() {
    let deployment = Deployment::new();
    let mut engine = deployment.engine();
    deployment.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','10','Wholesale','yes',NULL,NULL);
         INSERT INTO CustCustomerGroup VALUES ('USMF','20','Retail','no',NULL,NULL);
         INSERT INTO CustCustomerGroup VALUES ('DEMF','10','Grosshandel','yes',NULL,NULL);",
    );
    settle(&mut engine);
    assert_eq!(
        crm_groups(&deployment),
        vec![
            vec![
                text("DEMF"),
                text("10"),
                text("Grosshandel"),
                "Integer(1)".into()
            ],
            vec![
                text("USMF"),
                text("10"),
                text("Wholesale"),
                "Integer(1)".into()
            ],
            vec![
                text("USMF"),
                text("20"),
                text("Retail"),
                "Integer(0)".into()
            ],
        ]
    );

    deployment.execute(
        "crm.db",
        "UPDATE msdyn_customergroups SET msdyn_description = 'Retail shops', \
         msdyn_issalestaxincludedinprice = 1 WHERE msdyn_groupid = '20'",
    );
    deployment.execute(
        "erp.db",
        "DELETE FROM CustCustomerGroup WHERE DATAAREAID = 'DEMF'",
    );
    settle(&mut engine);
    assert_eq!(
        erp_groups(&deployment),
        vec![
            vec![text("USMF"), text("10"), text("Wholesale"), text("yes")],
            vec![text("USMF"), text("20"), text("Retail shops"), text("yes")],
        ]
    );
    assert_eq!(crm_groups(&deployment).len(), 2);

    // No echo: our own writes were never captured, so the logs are empty and the
    // number of writes equals the number of logical changes.
    assert_eq!(deployment.change_log_len("erp.db"), 0);
    assert_eq!(deployment.change_log_len("crm.db"), 0);
    let (_, counters) = engine.counters().into_iter().next().expect("one map");
    assert_eq!(
        counters.written_to_crm, 4,
        "3 inserts and 1 delete: {counters:?}"
    );
    assert_eq!(counters.written_to_erp, 1, "{counters:?}");
    assert_eq!(counters.errors, 0, "{counters:?}");
}

#[test]
fn a_restart_resumes_from_the_checkpoint_without_reapplying() {
    let deployment = Deployment::new();
    {
        let mut engine = deployment.engine();
        deployment.execute(
            "erp.db",
            "INSERT INTO CustCustomerGroup VALUES ('USMF','10','Wholesale','yes',NULL,NULL);",
        );
        settle(&mut engine);
    }
    deployment.execute(
        "erp.db",
        "UPDATE CustCustomerGroup SET DESCRIPTION = 'Wholesale (new)';",
    );
    let mut engine = deployment.engine();
    settle(&mut engine);
    let (_, counters) = engine.counters().into_iter().next().expect("one map");
    assert_eq!(
        counters.captured_from_erp, 1,
        "only the new change: {counters:?}"
    );
    assert_eq!(crm_groups(&deployment)[0][2], text("Wholesale (new)"));
}

#[test]
fn a_paused_map_queues_and_catches_up_in_order() {
    let deployment = Deployment::new();
    let mut engine = deployment.engine();
    engine.pause("customer-groups", "test").expect("pause");
    deployment.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','10','First','yes',NULL,NULL);
         UPDATE CustCustomerGroup SET DESCRIPTION = 'Second';
         UPDATE CustCustomerGroup SET DESCRIPTION = 'Third';",
    );
    settle(&mut engine);
    assert!(
        crm_groups(&deployment).is_empty(),
        "nothing applied while paused"
    );
    assert_eq!(
        engine
            .store()
            .queue_depth("customer-groups")
            .expect("depth"),
        3
    );
    assert_eq!(
        deployment.change_log_len("erp.db"),
        0,
        "acknowledged into the queue"
    );

    engine
        .resume("customer-groups", ResumeMode::CatchUp, "test")
        .expect("resume");
    assert_eq!(
        crm_groups(&deployment)[0][2],
        text("Third"),
        "applied in order"
    );
    assert_eq!(
        engine
            .store()
            .queue_depth("customer-groups")
            .expect("depth"),
        0
    );
    let transitions = engine
        .store()
        .transitions("customer-groups")
        .expect("transitions");
    let causes: Vec<&str> = transitions.iter().map(|t| t.cause.as_str()).collect();
    assert!(causes.contains(&"test: pause"), "{causes:?}");
    assert!(causes.contains(&"test: resume (catch up)"), "{causes:?}");
}

#[test]
fn skip_to_live_turns_the_queue_into_retryable_errors_and_discard_drops_it() {
    let deployment = Deployment::new();
    let mut engine = deployment.engine();
    engine.pause("customer-groups", "test").expect("pause");
    deployment.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','10','Queued','yes',NULL,NULL);",
    );
    settle(&mut engine);
    engine
        .resume("customer-groups", ResumeMode::SkipToLive, "test")
        .expect("resume");
    assert!(crm_groups(&deployment).is_empty());
    assert_eq!(
        engine
            .store()
            .open_error_count("customer-groups")
            .expect("errors"),
        1
    );

    engine.pause("customer-groups", "test").expect("pause");
    deployment.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','20','Dropped','yes',NULL,NULL);",
    );
    settle(&mut engine);
    engine
        .resume("customer-groups", ResumeMode::Discard, "test")
        .expect("resume");
    assert!(crm_groups(&deployment).is_empty());
    assert_eq!(
        engine
            .store()
            .queue_depth("customer-groups")
            .expect("depth"),
        0
    );

    // Live again: a new change flows.
    deployment.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','30','Live','no',NULL,NULL);",
    );
    settle(&mut engine);
    assert_eq!(crm_groups(&deployment).len(), 1);
}

#[test]
fn a_side_that_goes_away_comes_back_and_catches_up_in_order() {
    let deployment = Deployment::new();
    let mut engine = deployment.engine();
    let crm = deployment.path("crm.db");
    let away = deployment.path("crm.db.away");
    std::fs::rename(&crm, &away).expect("move crm away");
    deployment.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','10','One','yes',NULL,NULL);
         UPDATE CustCustomerGroup SET DESCRIPTION = 'Two';",
    );
    for _ in 0..5 {
        engine
            .step()
            .expect("a missing side does not stop the engine");
    }
    assert_eq!(
        engine.offline_sides().len(),
        1,
        "{:?}",
        engine.offline_sides()
    );
    std::fs::rename(&away, &crm).expect("bring crm back");
    let started = Instant::now();
    while crm_groups(&deployment).first().map(|row| row[2].clone()) != Some(text("Two")) {
        engine.step().expect("step");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "did not catch up: {:?}",
            engine.offline_sides()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(engine.offline_sides().is_empty());
    assert_eq!(
        engine
            .store()
            .queue_depth("customer-groups")
            .expect("depth"),
        0
    );
}

#[test]
fn initial_sync_merges_existing_rows_with_the_master_winning() {
    let deployment = Deployment::new();
    deployment.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','10','Wholesale','yes',NULL,NULL);
         INSERT INTO CustCustomerGroup VALUES ('USMF','20','Retail','no',NULL,NULL);
         INSERT INTO CustCustomerGroup VALUES ('USMF','30','Export','no',NULL,NULL);",
    );
    deployment.execute(
        "crm.db",
        "INSERT INTO msdyn_customergroups VALUES ('USMF','20','Retail (CRM)',0,NULL,NULL);
         INSERT INTO msdyn_customergroups VALUES ('USMF','40','CRM only',1,NULL,NULL);",
    );
    let mut engine = deployment.engine();
    let mut reports = Vec::new();
    // Chunks of 2 rows, so the merge takes several steps; a live change lands midway.
    engine
        .begin_initial_sync("customer-groups", "test")
        .expect("begin");
    let first = engine
        .initial_sync_chunk("customer-groups", 2)
        .expect("first chunk");
    assert_eq!(first.rows_done, 2);
    deployment.execute(
        "erp.db",
        "UPDATE CustCustomerGroup SET DESCRIPTION = 'Wholesale (live)' WHERE CUSTOMERGROUPID = '10';",
    );
    engine
        .step()
        .expect("live change queues behind the initial sync");
    let status = engine
        .initial_sync("customer-groups", 2, "test", &mut |status| {
            reports.push(status.clone())
        })
        .expect("initial sync");
    assert!(status.complete);
    // 3 ERP rows, then the 4 CRM rows: the 2 the ERP pass wrote are linked and skipped.
    assert_eq!(status.rows_done, 7);
    assert_eq!(status.rows_total, 7);
    assert!(reports.len() >= 3, "progress after each chunk: {reports:?}");
    settle(&mut engine);

    assert_eq!(
        crm_groups(&deployment),
        vec![
            vec![
                text("USMF"),
                text("10"),
                text("Wholesale (live)"),
                "Integer(1)".into()
            ],
            vec![
                text("USMF"),
                text("20"),
                text("Retail"),
                "Integer(0)".into()
            ],
            vec![
                text("USMF"),
                text("30"),
                text("Export"),
                "Integer(0)".into()
            ],
            vec![
                text("USMF"),
                text("40"),
                text("CRM only"),
                "Integer(1)".into()
            ],
        ]
    );
    assert_eq!(
        erp_groups(&deployment),
        vec![
            vec![
                text("USMF"),
                text("10"),
                text("Wholesale (live)"),
                text("yes")
            ],
            vec![text("USMF"), text("20"), text("Retail"), text("no")],
            vec![text("USMF"), text("30"), text("Export"), text("no")],
            vec![text("USMF"), text("40"), text("CRM only"), text("yes")],
        ]
    );
    assert_eq!(
        engine.store().link_count("customer-groups").expect("links"),
        4
    );
}

#[test]
fn a_row_changed_on_both_sides_is_a_conflict_the_policy_resolves() {
    let deployment = Deployment::new();
    let mut engine = deployment.engine();
    deployment.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','10','Base','yes',NULL,NULL);",
    );
    settle(&mut engine);
    // Both sides edit the same row before the engine sees either edit.
    deployment.execute(
        "crm.db",
        "UPDATE msdyn_customergroups SET msdyn_description = 'CRM edit';",
    );
    deployment.execute(
        "erp.db",
        "UPDATE CustCustomerGroup SET DESCRIPTION = 'ERP edit';",
    );
    settle(&mut engine);
    // side-wins with the ERP as winner: both sides end with the ERP's value.
    assert_eq!(erp_groups(&deployment)[0][2], text("ERP edit"));
    assert_eq!(crm_groups(&deployment)[0][2], text("ERP edit"));
    let (_, counters) = engine.counters().into_iter().next().expect("one map");
    assert!(counters.conflicts >= 1, "{counters:?}");
    let conflicts = engine
        .store()
        .activity(&dualwrite::state::ActivityQuery {
            map: Some("customer-groups".into()),
            kind: Some(dualwrite::state::ActivityKind::Conflict),
            limit: 100,
            ..dualwrite::state::ActivityQuery::default()
        })
        .expect("activity");
    assert!(!conflicts.is_empty(), "the conflict is recorded");
}

#[test]
fn a_stopped_map_syncs_nothing_and_stays_stopped_across_a_restart() {
    let deployment = Deployment::new();
    {
        let mut engine = deployment.engine();
        engine.stop("customer-groups", "test").expect("stop");
        deployment.execute(
            "erp.db",
            "INSERT INTO CustCustomerGroup VALUES ('USMF','10','While stopped','yes',NULL,NULL);",
        );
        settle(&mut engine);
        assert!(crm_groups(&deployment).is_empty());
        assert_eq!(
            engine
                .store()
                .queue_depth("customer-groups")
                .expect("depth"),
            0
        );
    }
    let mut engine = deployment.engine();
    assert_eq!(
        engine.map_modes(),
        vec![(
            "customer-groups".to_owned(),
            dualwrite::state::MapMode::Stopped
        )]
    );
    engine.play("customer-groups", "test").expect("play");
    deployment.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','20','After play','no',NULL,NULL);",
    );
    settle(&mut engine);
    let rows = crm_groups(&deployment);
    assert_eq!(rows.len(), 1, "only the change made after play: {rows:?}");
    assert_eq!(rows[0][2], text("After play"));
}

/// Both sides created the same key with different values, and only the loser's insert
/// is captured (the winner's row predates capture, as after a crash kept its write from
/// being linked): the policy's winner still ends up on both sides, by a fresh look at
/// the winner's row, and the conflict is recorded.
#[test]
fn a_conflict_the_captured_side_loses_brings_the_winners_row_over() {
    let deployment = Deployment::new();
    deployment.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','10','ERP wins','yes',NULL,NULL);",
    );
    let mut engine = deployment.engine();
    deployment.execute(
        "crm.db",
        "INSERT INTO msdyn_customergroups VALUES ('USMF','10','CRM loses',0,NULL,NULL);",
    );
    settle(&mut engine);
    assert_eq!(
        crm_groups(&deployment),
        vec![vec![
            text("USMF"),
            text("10"),
            text("ERP wins"),
            "Integer(1)".into()
        ]]
    );
    assert_eq!(
        erp_groups(&deployment),
        vec![vec![
            text("USMF"),
            text("10"),
            text("ERP wins"),
            text("yes")
        ]]
    );
    let (_, counters) = engine.counters().into_iter().next().expect("one map");
    assert_eq!(
        counters.conflicts, 2,
        "seen from each side once: {counters:?}"
    );
    assert_eq!(counters.written_to_crm, 1, "{counters:?}");
    assert_eq!(counters.written_to_erp, 0, "{counters:?}");
    assert_eq!(counters.errors, 0, "{counters:?}");

    // The link now holds: later edits flow as usual.
    deployment.execute(
        "crm.db",
        "UPDATE msdyn_customergroups SET msdyn_description = 'Edited in CRM'",
    );
    settle(&mut engine);
    assert_eq!(erp_groups(&deployment)[0][2], text("Edited in CRM"));
}
