//! A side down for real: the ERP's database server (PostgreSQL, then MariaDB, each a
//! private server of the test) is stopped under the real `dualwrite run` and started
//! again on the same data and port, while the CRM (SQLite) keeps changing. The engine
//! stays up, the admin API reports the ERP side offline and the CRM's changes waiting in
//! the map's queue; once the server is back, they reach the ERP in order, the ERP's new
//! changes reach the CRM, every row is on both sides once with its values, nothing
//! came back as an echo and nothing failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dualwrite_tests::customer_groups::{MAP, write_server_erp_config};
use dualwrite_tests::engine_process::EngineProcess;
use dualwrite_tests::eventually;
use dualwrite_tests::private_servers::{PrivateMariadb, PrivatePostgres};
use rusqlite::Connection;
use serde_json::Value as Json;

/// The company of every row.
const COMPANY: &str = "usmf";

/// Generous: a wait that runs out is a failure, never a measure of speed. The engine
/// retries an offline side with backoff up to 30 s.
const WAIT: Duration = Duration::from_secs(120);

/// A customer group as both sides must hold it: description and "sales tax included"
/// (`yes`/`no` on the ERP, a boolean on the CRM), by group id (company [`COMPANY`]).
type Groups = BTreeMap<String, (Option<String>, Option<bool>)>;

/// The ERP side on a server the test can stop and start.
trait Erp {
    /// Inserts a group.
    fn insert(&mut self, group: &str, description: &str, tax_included: Option<bool>);
    /// Sets a group's description.
    fn describe(&mut self, group: &str, description: &str);
    /// Every group on the ERP.
    fn groups(&mut self) -> Groups;
    /// Stops the server; returns once it is down.
    fn stop(&mut self);
    /// Starts the server again on its data and port; returns once it answers.
    fn start_again(&mut self);
}

fn yes_no(tax_included: Option<bool>) -> Option<&'static str> {
    tax_included.map(|yes| if yes { "yes" } else { "no" })
}

fn from_yes_no(group: &str, text: Option<String>) -> Option<bool> {
    text.map(|text| match text.as_str() {
        "yes" => true,
        "no" => false,
        other => panic!("{group}: ISSALESTAXINCLUDEDINPRICE is {other:?} on the ERP"),
    })
}

struct PostgresErp {
    server: PrivatePostgres,
}

impl PostgresErp {
    fn client(&self) -> postgres::Client {
        self.server.client("erp")
    }
}

impl Erp for PostgresErp {
    fn insert(&mut self, group: &str, description: &str, tax_included: Option<bool>) {
        self.client()
            .execute(
                "INSERT INTO \"CustCustomerGroup\" (\"DATAAREAID\", \"CUSTOMERGROUPID\", \
                 \"DESCRIPTION\", \"ISSALESTAXINCLUDEDINPRICE\") VALUES ($1, $2, $3, $4)",
                &[&COMPANY, &group, &description, &yes_no(tax_included)],
            )
            .expect("insert on the ERP");
    }

    fn describe(&mut self, group: &str, description: &str) {
        let updated = self
            .client()
            .execute(
                "UPDATE \"CustCustomerGroup\" SET \"DESCRIPTION\" = $3 \
                 WHERE \"DATAAREAID\" = $1 AND \"CUSTOMERGROUPID\" = $2",
                &[&COMPANY, &group, &description],
            )
            .expect("update on the ERP");
        assert_eq!(updated, 1, "{group} is on the ERP");
    }

    fn groups(&mut self) -> Groups {
        self.client()
            .query(
                "SELECT \"DATAAREAID\", \"CUSTOMERGROUPID\", \"DESCRIPTION\", \
                 \"ISSALESTAXINCLUDEDINPRICE\" FROM \"CustCustomerGroup\"",
                &[],
            )
            .expect("ERP rows")
            .into_iter()
            .map(|row| {
                assert_eq!(row.get::<_, String>(0), COMPANY);
                let group: String = row.get(1);
                let tax = from_yes_no(&group, row.get(3));
                (group, (row.get(2), tax))
            })
            .collect()
    }

    fn stop(&mut self) {
        self.server.stop();
    }

    fn start_again(&mut self) {
        self.server.start_again();
    }
}

struct MariadbErp {
    server: PrivateMariadb,
}

impl Erp for MariadbErp {
    fn insert(&mut self, group: &str, description: &str, tax_included: Option<bool>) {
        use mysql::prelude::Queryable as _;
        self.server
            .conn("erp")
            .exec_drop(
                "INSERT INTO CustCustomerGroup (DATAAREAID, CUSTOMERGROUPID, DESCRIPTION, \
                 ISSALESTAXINCLUDEDINPRICE) VALUES (?, ?, ?, ?)",
                (COMPANY, group, description, yes_no(tax_included)),
            )
            .expect("insert on the ERP");
    }

    fn describe(&mut self, group: &str, description: &str) {
        use mysql::prelude::Queryable as _;
        let mut conn = self.server.conn("erp");
        conn.exec_drop(
            "UPDATE CustCustomerGroup SET DESCRIPTION = ? \
             WHERE DATAAREAID = ? AND CUSTOMERGROUPID = ?",
            (description, COMPANY, group),
        )
        .expect("update on the ERP");
        assert_eq!(conn.affected_rows(), 1, "{group} is on the ERP");
    }

    fn groups(&mut self) -> Groups {
        use mysql::prelude::Queryable as _;
        let rows: Vec<(String, String, Option<String>, Option<String>)> = self
            .server
            .conn("erp")
            .query(
                "SELECT DATAAREAID, CUSTOMERGROUPID, DESCRIPTION, ISSALESTAXINCLUDEDINPRICE \
                 FROM CustCustomerGroup",
            )
            .expect("ERP rows");
        rows.into_iter()
            .map(|(company, group, description, tax)| {
                assert_eq!(company, COMPANY);
                let tax = from_yes_no(&group, tax);
                (group, (description, tax))
            })
            .collect()
    }

    fn stop(&mut self) {
        self.server.stop();
    }

    fn start_again(&mut self) {
        self.server.start_again();
    }
}

/// The CRM: `crm.db` in the deployment folder.
struct Crm {
    path: PathBuf,
}

impl Crm {
    fn db(&self) -> Connection {
        let db = Connection::open(&self.path).expect("open the CRM");
        db.busy_timeout(Duration::from_secs(10)).expect("timeout");
        db
    }

    fn insert(&self, group: &str, description: &str, tax_included: Option<bool>) {
        self.db()
            .execute(
                "INSERT INTO msdyn_customergroups (msdyn_company, msdyn_groupid, \
                 msdyn_description, msdyn_issalestaxincludedinprice) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![COMPANY, group, description, tax_included],
            )
            .expect("insert on the CRM");
    }

    fn describe(&self, group: &str, description: &str) {
        let updated = self
            .db()
            .execute(
                "UPDATE msdyn_customergroups SET msdyn_description = ?3 \
                 WHERE msdyn_company = ?1 AND msdyn_groupid = ?2",
                rusqlite::params![COMPANY, group, description],
            )
            .expect("update on the CRM");
        assert_eq!(updated, 1, "{group} is on the CRM");
    }

    fn delete(&self, group: &str) {
        let deleted = self
            .db()
            .execute(
                "DELETE FROM msdyn_customergroups WHERE msdyn_company = ?1 AND msdyn_groupid = ?2",
                rusqlite::params![COMPANY, group],
            )
            .expect("delete on the CRM");
        assert_eq!(deleted, 1, "{group} is on the CRM");
    }

    fn groups(&self) -> Groups {
        let db = self.db();
        let mut statement = db
            .prepare(
                "SELECT msdyn_company, msdyn_groupid, msdyn_description, \
                 msdyn_issalestaxincludedinprice FROM msdyn_customergroups",
            )
            .expect("prepare");
        statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, Option<bool>>(3)?,
                ))
            })
            .expect("query")
            .map(|row| {
                let (company, group, description, tax) = row.expect("a CRM row");
                assert_eq!(company, COMPANY);
                (group, (description, tax))
            })
            .collect()
    }
}

/// Puts a group as it must be on both sides into `expected`.
fn set(expected: &mut Groups, group: &str, description: &str, tax_included: Option<bool>) {
    expected.insert(
        group.to_owned(),
        (Some(description.to_owned()), tax_included),
    );
}

fn counter(counters: &Json, name: &str) -> u64 {
    counters[name]
        .as_u64()
        .unwrap_or_else(|| panic!("counter {name} in {counters}"))
}

/// The value of `dualwrite_side_offline_seconds` for `side` in the metrics, if listed.
fn offline_seconds(engine: &EngineProcess, side: &str) -> Option<f64> {
    let prefix = format!("dualwrite_side_offline_seconds{{side=\"{side}\"}} ");
    engine
        .get_text("/metrics")
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.trim().parse().expect("a number"))
}

/// The value of `dualwrite_slot_lag_bytes` for `side` in the metrics, if listed.
fn slot_lag_bytes(engine: &EngineProcess, side: &str) -> Option<u64> {
    let prefix = format!("dualwrite_slot_lag_bytes{{side=\"{side}\"}} ");
    engine
        .get_text("/metrics")
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.trim().parse().expect("a whole number of bytes"))
}

/// The causes of the map's transitions that put `side` offline or back online, oldest
/// first.
fn side_transitions(engine: &EngineProcess, side: &str) -> Vec<String> {
    let map = engine.get(&format!("/api/v1/maps/{MAP}"));
    let prefix = format!("side {side} ");
    let mut causes: Vec<String> = map["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .filter_map(|transition| transition["cause"].as_str())
        .filter(|cause| cause.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    // Newest first in the answer.
    causes.reverse();
    causes
}

/// Waits until both sides hold exactly `expected`; says which differs when it runs out.
fn wait_for_both_sides(
    what: &str,
    engine: &mut EngineProcess,
    erp: &mut dyn Erp,
    crm: &Crm,
    expected: &Groups,
) {
    let started = Instant::now();
    loop {
        let (on_erp, on_crm) = (erp.groups(), crm.groups());
        if on_erp == *expected && on_crm == *expected {
            return;
        }
        assert!(
            engine.is_running(),
            "{what}: dualwrite run exited; it printed:\n{}",
            engine.lines().join("\n")
        );
        assert!(
            started.elapsed() < WAIT,
            "{what}: timed out\nexpected {expected:#?}\nERP {on_erp:#?}\nCRM {on_crm:#?}\n\
             map {:#}\nthe engine printed:\n{}",
            engine.map(MAP),
            engine.lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The scenario of both tests, on an ERP whose side is configured by `erp_side`.
fn the_erp_server_goes_down_and_comes_back(erp: &mut dyn Erp, erp_side: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_server_erp_config(dir.path(), erp_side);
    let crm = Crm {
        path: dir.path().join("crm.db"),
    };
    let mut engine = EngineProcess::start(
        Path::new(env!("CARGO_BIN_EXE_dualwrite")),
        &config,
        &dir.path().join("cache"),
    );
    let mut expected = Groups::new();
    // Changes that start on each side, counted to tell echoes apart.
    let (mut from_erp, mut from_crm) = (0u64, 0u64);

    // Both ways while the server is up.
    erp.insert("E1", "first on the ERP", Some(true));
    erp.insert("E2", "second on the ERP", Some(false));
    crm.insert("C1", "first on the CRM", Some(true));
    from_erp += 2;
    from_crm += 1;
    set(&mut expected, "E1", "first on the ERP", Some(true));
    set(&mut expected, "E2", "second on the ERP", Some(false));
    set(&mut expected, "C1", "first on the CRM", Some(true));
    wait_for_both_sides("rows both ways", &mut engine, erp, &crm, &expected);
    assert_eq!(engine.map(MAP)["erp_offline"], false);

    // The server goes down; the engine notices on its own (it only reads then).
    erp.stop();
    let stopped = Instant::now();
    eventually("the API reports the ERP side offline", WAIT, || {
        engine.map(MAP)["erp_offline"] == true
    });
    let noticed = stopped.elapsed();

    // The CRM changes meanwhile: new groups, an edit of a group of each origin, a
    // delete. They wait in the map's queue, in order.
    crm.insert("D1", "made while the ERP was down", Some(true));
    crm.insert("D2", "also made while the ERP was down", Some(false));
    crm.insert("D3", "no tax flag", None);
    crm.describe("E1", "edited on the CRM while the ERP was down");
    crm.describe("D1", "made and edited while the ERP was down");
    crm.delete("E2");
    from_crm += 6;
    set(
        &mut expected,
        "D1",
        "made and edited while the ERP was down",
        Some(true),
    );
    set(
        &mut expected,
        "D2",
        "also made while the ERP was down",
        Some(false),
    );
    set(&mut expected, "D3", "no tax flag", None);
    set(
        &mut expected,
        "E1",
        "edited on the CRM while the ERP was down",
        Some(true),
    );
    expected.remove("E2");
    eventually("the CRM's changes queued for the ERP", WAIT, || {
        engine.map(MAP)["queue_depth"] == 6
    });
    // The engine keeps retrying the server (backoff) and stays up.
    eventually("the ERP offline for 3 s in the metrics", WAIT, || {
        offline_seconds(&engine, "erp").is_some_and(|seconds| seconds >= 3.0)
    });
    assert!(
        engine.is_running(),
        "dualwrite run stays up while a side's server is down; it printed:\n{}",
        engine.lines().join("\n")
    );
    let down = engine.map(MAP);
    assert_eq!(down["erp_offline"], true, "{down:#}");
    assert_eq!(down["crm_offline"], false, "{down:#}");
    assert_eq!(down["mode"], "running", "{down:#}");
    assert_eq!(down["queue_depth"], 6, "{down:#}");
    assert_eq!(down["open_errors"], 0, "{down:#}");
    assert_eq!(offline_seconds(&engine, "crm"), None);

    // The server comes back on the same data and port: the queue drains to the ERP.
    erp.start_again();
    let restarted = Instant::now();
    wait_for_both_sides(
        "the CRM's changes on the ERP after the restart",
        &mut engine,
        erp,
        &crm,
        &expected,
    );
    let caught_up = restarted.elapsed();
    eventually("the ERP side online again, the queue empty", WAIT, || {
        let map = engine.map(MAP);
        map["erp_offline"] == false && map["queue_depth"] == 0
    });
    eventually(
        "the metrics no longer list the ERP side offline",
        WAIT,
        || offline_seconds(&engine, "erp").is_none(),
    );

    // The ERP's capture goes on where it was: new ERP changes reach the CRM.
    erp.insert("A1", "made on the ERP after the restart", Some(false));
    erp.describe("C1", "edited on the ERP after the restart");
    from_erp += 2;
    set(
        &mut expected,
        "A1",
        "made on the ERP after the restart",
        Some(false),
    );
    set(
        &mut expected,
        "C1",
        "edited on the ERP after the restart",
        Some(true),
    );
    wait_for_both_sides("the ERP's new changes", &mut engine, erp, &crm, &expected);

    // A last change on each side: each side's capture is in commit order, so once these
    // arrived, any echo of the engine's earlier writes would have been captured too.
    erp.insert("Z-ERP", "last on the ERP", None);
    crm.insert("Z-CRM", "last on the CRM", None);
    from_erp += 1;
    from_crm += 1;
    set(&mut expected, "Z-ERP", "last on the ERP", None);
    set(&mut expected, "Z-CRM", "last on the CRM", None);
    wait_for_both_sides("the last changes", &mut engine, erp, &crm, &expected);

    // The counters (a snapshot published every quarter second) count each change once.
    eventually("the counters of every change", WAIT, || {
        let counters = engine.counters(MAP);
        counter(&counters, "captured_from_erp") >= from_erp
            && counter(&counters, "captured_from_crm") >= from_crm
    });
    let map = engine.map(MAP);
    let counters = &map["counters"];
    assert_eq!(
        (
            counter(counters, "captured_from_erp"),
            counter(counters, "captured_from_crm")
        ),
        (from_erp, from_crm),
        "each change captured once, no echo: {map:#}"
    );
    assert!(
        counter(counters, "written_to_crm") <= from_erp
            && counter(counters, "written_to_erp") <= from_crm,
        "no more writes than changes: {map:#}"
    );
    assert_eq!(counter(counters, "errors"), 0, "{map:#}");
    assert_eq!(counter(counters, "conflicts"), 0, "{map:#}");
    assert_eq!(map["open_errors"], 0, "{map:#}");
    assert_eq!(map["queue_depth"], 0, "{map:#}");
    assert_eq!(
        (map["erp_offline"].clone(), map["crm_offline"].clone()),
        (Json::Bool(false), Json::Bool(false)),
        "{map:#}"
    );
    assert!(engine.is_running());
    // One outage, recorded once: the side went offline when the server stopped and
    // came back once, with no second, spurious outage when the engine's connections
    // made before the stop were used again.
    let outages = side_transitions(&engine, "erp");
    assert_eq!(outages.len(), 2, "{outages:#?}");
    assert!(
        outages[0].starts_with("side erp unreachable: ")
            && outages[1].starts_with("side erp reachable again after "),
        "{outages:#?}"
    );
    assert!(side_transitions(&engine, "crm").is_empty());
    // A PostgreSQL side's replication slot lag is a metric; sides without a slot have
    // none.
    if erp_side.contains("\"postgres\"") {
        eventually("the ERP's slot lag in the metrics", WAIT, || {
            slot_lag_bytes(&engine, "erp").is_some()
        });
    } else {
        assert_eq!(slot_lag_bytes(&engine, "erp"), None);
    }
    assert_eq!(slot_lag_bytes(&engine, "crm"), None);
    let lines = engine.lines().to_vec();
    eprintln!(
        "offline noticed {noticed:?} after the stop; caught up {caught_up:?} after the start; \
         the engine printed:\n{}",
        lines.join("\n")
    );
    engine.kill();
}

#[test]
fn postgres_server_stopped_and_started_again_catches_up_both_ways() {
    let server = PrivatePostgres::start("logical");
    let url = server.create_database("erp");
    server
        .client("erp")
        .batch_execute(
            "CREATE TABLE \"CustCustomerGroup\" (\"DATAAREAID\" text NOT NULL, \
             \"CUSTOMERGROUPID\" text NOT NULL, \"DESCRIPTION\" text, \
             \"ISSALESTAXINCLUDEDINPRICE\" text, \"PAYMENTTERMID\" text, \
             \"CLEARINGPERIODPAYMENTTERMNAME\" text, \
             PRIMARY KEY (\"DATAAREAID\", \"CUSTOMERGROUPID\"))",
        )
        .expect("ERP table");
    let mut erp = PostgresErp { server };
    the_erp_server_goes_down_and_comes_back(
        &mut erp,
        &format!("connector = \"postgres\"\nurl = {url:?}"),
    );
}

#[test]
fn mariadb_server_stopped_and_started_again_catches_up_both_ways() {
    let server = PrivateMariadb::start();
    let url = server.create_database("erp");
    {
        use mysql::prelude::Queryable as _;
        server
            .conn("erp")
            .query_drop(
                "CREATE TABLE CustCustomerGroup (DATAAREAID VARCHAR(10) NOT NULL, \
                 CUSTOMERGROUPID VARCHAR(20) NOT NULL, DESCRIPTION TEXT, \
                 ISSALESTAXINCLUDEDINPRICE VARCHAR(10), PAYMENTTERMID VARCHAR(20), \
                 CLEARINGPERIODPAYMENTTERMNAME VARCHAR(20), \
                 PRIMARY KEY (DATAAREAID, CUSTOMERGROUPID))",
            )
            .expect("ERP table");
    }
    let mut erp = MariadbErp { server };
    the_erp_server_goes_down_and_comes_back(
        &mut erp,
        &format!("connector = \"mariadb\"\nurl = {url:?}"),
    );
}
