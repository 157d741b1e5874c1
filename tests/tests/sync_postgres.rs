//! The sync engine end to end between a SQLite ERP and a PostgreSQL CRM (the machine's
//! real server) through the customers plugin: both directions without echo, a restart
//! that resumes from the checkpoint and the replication slot, and a connection killed
//! from the server side (the side goes offline and catches up).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dualwrite::apply::RowWrite;
use dualwrite::change::{Side, Value};
use dualwrite::config;
use dualwrite::demo::{self, DemoMap, seed};
use dualwrite::plugin::{Limits, PluginRuntime};
use dualwrite::sync::{Engine, EngineOptions};
use dualwrite_tests::plugins_dir;
use dualwrite_tests::servers::PgDatabase;

struct Deployment {
    dir: tempfile::TempDir,
    runtime: PluginRuntime,
    map: DemoMap,
    crm: PgDatabase,
    erp: PathBuf,
}

impl Deployment {
    /// An ERP SQLite file with `customers` organization customers, an empty CRM
    /// database on PostgreSQL.
    fn new(label: &str, customers: usize) -> Deployment {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = PluginRuntime::new(
            Limits {
                max_instances: 8,
                ..Limits::default()
            },
            None,
        )
        .expect("runtime");
        let plugins =
            cap_std::fs::Dir::open_ambient_dir(plugins_dir(), cap_std::ambient_authority())
                .expect("plugins folder");
        let plugin = runtime.load(&plugins, "customers.wasm").expect("load");
        let descriptor = plugin.describe_default().expect("describe");
        let map = DemoMap {
            name: "customers",
            plugin_file: "customers.wasm",
            plugin,
            descriptor,
        };
        let erp = dir.path().join("erp.db");
        demo::create_tables(&erp, Side::Erp, std::slice::from_ref(&map)).expect("ERP tables");
        let crm = PgDatabase::create(label);
        demo::postgres::create_tables(&crm.url, Side::Crm, std::slice::from_ref(&map))
            .expect("CRM tables");
        let mut dice = seed::Dice::new(7);
        let key = map.key(Side::Erp);
        let writes: Vec<RowWrite> = (0..customers)
            .map(|index| {
                let mut row = seed::customer(&map, index, &mut dice);
                row.insert("PARTYTYPE".into(), Value::Text("Organization".into()));
                let key = key
                    .iter()
                    .map(|column| (column.clone(), row[column].clone()))
                    .collect();
                RowWrite::upsert(&map.descriptor.erp.entity, key, row)
            })
            .collect();
        demo::write_rows(&erp, &writes).expect("seed ERP");
        Deployment {
            dir,
            runtime,
            map,
            crm,
            erp,
        }
    }

    fn engine(&self) -> Engine {
        let list = |side| {
            self.map
                .key(side)
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
connector = "sqlite"
path = "erp.db"

[sides.crm]
connector = "postgres"
url = {url:?}

[maps.customers]
plugin = "customers.wasm"
erp = {{ side = "erp", entity = {erp:?}, key = [{erp_key}] }}
crm = {{ side = "crm", entity = {crm:?}, key = [{crm_key}] }}
conflict = {{ policy = "side-wins", winner = "erp" }}

[maps.customers.config]
resolve_lookups = false
"#,
            plugins = plugins_dir().display().to_string(),
            url = self.crm.url,
            erp = self.map.descriptor.erp.entity,
            crm = self.map.descriptor.crm.entity,
            erp_key = list(Side::Erp),
            crm_key = list(Side::Crm),
        );
        let plan = config::parse(&text, "test.toml", self.dir.path()).expect("valid config");
        Engine::open(
            &plan,
            &self.runtime,
            EngineOptions {
                min_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(100),
                ..EngineOptions::default()
            },
        )
        .expect("engine opens")
    }

    /// An engine that has merged the sides (initial sync, the ERP as master).
    fn synced_engine(&self) -> Engine {
        let mut engine = self.engine();
        let status = engine
            .initial_sync("customers", 16, "test", &mut |_| {})
            .expect("initial sync");
        assert!(status.complete);
        engine
    }

    fn erp_sql(&self, sql: &str) -> Vec<Vec<String>> {
        let db = rusqlite::Connection::open(&self.erp).expect("open");
        db.busy_timeout(Duration::from_secs(5)).expect("timeout");
        let mut statement = db.prepare(sql).expect("prepare");
        let columns = statement.column_count();
        statement
            .query_map([], |row| {
                (0..columns)
                    .map(|at| {
                        row.get::<_, rusqlite::types::Value>(at)
                            .map(|value| match value {
                                rusqlite::types::Value::Text(text) => text,
                                other => format!("{other:?}"),
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .expect("query")
            .collect::<Result<Vec<_>, _>>()
            .expect("rows")
    }

    fn crm_sql(&self, sql: &str) -> Vec<Vec<String>> {
        self.crm
            .client()
            .simple_query(sql)
            .expect("crm query")
            .into_iter()
            .filter_map(|message| match message {
                postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|at| row.get(at).unwrap_or("NULL").to_owned())
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }
}

/// Steps (waiting between idle steps) until nothing happens for a while; fails after a
/// minute.
fn settle(engine: &mut Engine) {
    let started = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    loop {
        let report = engine.step().expect("step");
        if report.captured == 0 && report.written == 0 && engine.offline_sides().is_empty() {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_millis(300) {
                return;
            }
            engine.wait_for_changes();
        } else {
            quiet_since = None;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "did not settle; offline: {:?}",
            engine.offline_sides()
        );
    }
}

#[test]
fn customers_flow_both_ways_between_sqlite_and_postgres_without_echo() {
    let deployment = Deployment::new("sync_both", 40);
    // The initial sync brings the ERP's customers to PostgreSQL; later edits follow.
    let mut engine = deployment.synced_engine();
    let erp_rows = deployment.erp_sql(
        "SELECT DATAAREAID, CUSTOMERACCOUNT, CREDITLIMIT FROM CustCustomerV3Entity \
         ORDER BY DATAAREAID, CUSTOMERACCOUNT",
    );
    assert_eq!(erp_rows.len(), 40);
    deployment.erp_sql("UPDATE CustCustomerV3Entity SET SALESMEMO = 'touched ' || CUSTOMERACCOUNT");
    settle(&mut engine);
    let crm_rows = deployment.crm_sql(
        "SELECT msdyn_company, accountnumber, creditlimit, description FROM accounts \
         ORDER BY msdyn_company COLLATE \"C\", accountnumber COLLATE \"C\"",
    );
    assert_eq!(crm_rows.len(), 40, "every customer reached the CRM");
    for (erp, crm) in erp_rows.iter().zip(&crm_rows) {
        assert_eq!(&erp[..2], &crm[..2]);
        assert_eq!(erp[2], crm[2], "credit limit exact");
        assert_eq!(crm[3], format!("touched {}", erp[1]));
    }

    // A CRM edit on PostgreSQL reaches the ERP, and nothing echoes back.
    let (company, account) = (&crm_rows[3][0], &crm_rows[3][1]);
    deployment.crm_sql(&format!(
        "UPDATE accounts SET description = 'from the CRM', creditlimit = 1234.56 \
         WHERE msdyn_company = '{company}' AND accountnumber = '{account}'"
    ));
    settle(&mut engine);
    let erp = deployment.erp_sql(&format!(
        "SELECT SALESMEMO, CREDITLIMIT FROM CustCustomerV3Entity \
         WHERE DATAAREAID = '{company}' AND CUSTOMERACCOUNT = '{account}'"
    ));
    assert_eq!(
        erp,
        vec![vec!["from the CRM".to_owned(), "1234.56".to_owned()]]
    );
    let report = engine.step().expect("step");
    assert_eq!((report.captured, report.written), (0, 0), "no echo");
    let ours: Vec<Vec<String>> = deployment.erp_sql("SELECT count(*) FROM _dualwrite_changes");
    assert_eq!(
        ours,
        vec![vec!["Integer(0)".to_owned()]],
        "the ERP log is drained"
    );

    // A delete on the ERP deletes the account.
    deployment.erp_sql(&format!(
        "DELETE FROM CustCustomerV3Entity WHERE DATAAREAID = '{company}' \
         AND CUSTOMERACCOUNT = '{account}'"
    ));
    settle(&mut engine);
    assert_eq!(
        deployment.crm_sql("SELECT count(*) FROM accounts"),
        vec![vec!["39".to_owned()]]
    );

    // Changes made on PostgreSQL while the engine is down arrive after a restart.
    drop(engine);
    let (company, account) = (&crm_rows[5][0], &crm_rows[5][1]);
    deployment.crm_sql(&format!(
        "UPDATE accounts SET description = 'while down' \
         WHERE msdyn_company = '{company}' AND accountnumber = '{account}'"
    ));
    let mut engine = deployment.engine();
    settle(&mut engine);
    let erp = deployment.erp_sql(&format!(
        "SELECT SALESMEMO FROM CustCustomerV3Entity \
         WHERE DATAAREAID = '{company}' AND CUSTOMERACCOUNT = '{account}'"
    ));
    assert_eq!(erp, vec![vec!["while down".to_owned()]]);
}

#[test]
fn a_connection_killed_by_the_server_puts_the_side_offline_and_it_catches_up() {
    let deployment = Deployment::new("sync_killed", 10);
    let mut engine = deployment.synced_engine();
    deployment.erp_sql("UPDATE CustCustomerV3Entity SET SALESMEMO = 'first'");
    settle(&mut engine);
    // The server ends every session of the engine; meanwhile the CRM changes.
    deployment.crm_sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    deployment.crm_sql("UPDATE accounts SET description = 'crm meanwhile'");
    let synced = || {
        deployment
            .erp_sql("SELECT count(*) FROM CustCustomerV3Entity WHERE SALESMEMO = 'crm meanwhile'")
            == vec![vec!["Integer(10)".to_owned()]]
    };
    let mut went_offline = false;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) && !synced() {
        engine.step().expect("step");
        went_offline |= !engine.offline_sides().is_empty();
        engine.wait_for_changes();
    }
    assert!(
        went_offline,
        "the killed connection put the CRM side offline"
    );
    settle(&mut engine);
    assert!(synced(), "the CRM's changes reached the ERP");
    // The writer's new session is tagged again: the ERP's next edit arrives once,
    // without echo.
    deployment.erp_sql("UPDATE CustCustomerV3Entity SET CREDITRATING = 'AAA'");
    settle(&mut engine);
    assert_eq!(
        deployment.crm_sql("SELECT count(*) FROM accounts WHERE msdyn_creditrating = 'AAA'"),
        vec![vec!["10".to_owned()]]
    );
    let report = engine.step().expect("step");
    assert_eq!((report.captured, report.written), (0, 0), "no echo");
}
