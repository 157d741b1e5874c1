//! The sync engine end to end with a MariaDB CRM (the machine's real server) through the
//! customers plugin: against a SQLite ERP and against a PostgreSQL ERP, both directions
//! without echo, a restart that resumes from the checkpoint, and a MariaDB connection
//! killed from the server side (the side goes offline and catches up).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dualwrite::apply::RowWrite;
use dualwrite::change::{Side, Value};
use dualwrite::config;
use dualwrite::demo::{self, DemoMap, seed};
use dualwrite::plugin::{Limits, PluginRuntime};
use dualwrite::sync::{Engine, EngineOptions};
use dualwrite_tests::plugins_dir;
use dualwrite_tests::servers::{MyDatabase, PgDatabase};

/// Where the ERP lives.
enum Erp {
    Sqlite(PathBuf),
    Postgres(PgDatabase),
}

struct Deployment {
    dir: tempfile::TempDir,
    runtime: PluginRuntime,
    map: DemoMap,
    crm: MyDatabase,
    erp: Erp,
}

impl Deployment {
    /// An ERP (SQLite, or PostgreSQL with `postgres`) with `customers` organization
    /// customers, an empty CRM database on MariaDB.
    fn new(label: &str, customers: usize, postgres: bool) -> Deployment {
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
        let erp = if postgres {
            let erp = PgDatabase::create(label);
            demo::postgres::create_tables(&erp.url, Side::Erp, std::slice::from_ref(&map))
                .expect("ERP tables");
            let mut writer = dualwrite::apply::postgres::PostgresWriter::open(
                dualwrite::capture::postgres::PostgresOptions::new(erp.url.clone(), "seed"),
            );
            dualwrite::apply::ApplyBatch::apply(&mut writer, &writes).expect("seed ERP");
            Erp::Postgres(erp)
        } else {
            let erp = dir.path().join("erp.db");
            demo::create_tables(&erp, Side::Erp, std::slice::from_ref(&map)).expect("ERP tables");
            demo::write_rows(&erp, &writes).expect("seed ERP");
            Erp::Sqlite(erp)
        };
        let crm = MyDatabase::create(label);
        demo::mysql::create_tables(&crm.url, None, Side::Crm, std::slice::from_ref(&map))
            .expect("CRM tables");
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
        let erp_side = match &self.erp {
            Erp::Sqlite(_) => "connector = \"sqlite\"\npath = \"erp.db\"".to_owned(),
            Erp::Postgres(db) => format!("connector = \"postgres\"\nurl = {:?}", db.url),
        };
        let text = format!(
            r#"
data_dir = "state"
plugins_dir = {plugins:?}

[sides.erp]
{erp_side}

[sides.crm]
connector = "mariadb"
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

    /// Runs `sql` on the ERP; returns its rows as text (SQLite integers as
    /// `Integer(n)`, like the SQLite tests print them; PostgreSQL values as text).
    fn erp_sql(&self, sql: &str) -> Vec<Vec<String>> {
        match &self.erp {
            Erp::Sqlite(path) => {
                let db = rusqlite::Connection::open(path).expect("open");
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
                                        rusqlite::types::Value::Integer(n) => n.to_string(),
                                        other => format!("{other:?}"),
                                    })
                            })
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .expect("query")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("rows")
            }
            Erp::Postgres(db) => db
                .client()
                .simple_query(sql)
                .expect("erp query")
                .into_iter()
                .filter_map(|message| match message {
                    postgres::SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|at| row.get(at).unwrap_or("NULL").to_owned())
                            .collect(),
                    ),
                    _ => None,
                })
                .collect(),
        }
    }

    /// The ERP's customer table, quoted for either ERP.
    fn erp_table(&self) -> String {
        format!("\"{}\"", self.map.descriptor.erp.entity)
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

/// Both directions, no echo, and a restart, for either ERP.
fn flows_both_ways(deployment: &Deployment) {
    let table = deployment.erp_table();
    let mut engine = deployment.synced_engine();
    // Byte order on every side, as MariaDB's utf8mb4_bin columns sort.
    let collate = match deployment.erp {
        Erp::Sqlite(_) => "",
        Erp::Postgres(_) => " COLLATE \"C\"",
    };
    let erp_rows = deployment.erp_sql(&format!(
        "SELECT \"DATAAREAID\", \"CUSTOMERACCOUNT\", \"CREDITLIMIT\" FROM {table} \
         ORDER BY \"DATAAREAID\"{collate}, \"CUSTOMERACCOUNT\"{collate}"
    ));
    assert_eq!(erp_rows.len(), 40);
    deployment.erp_sql(&format!(
        "UPDATE {table} SET \"SALESMEMO\" = 'touched ' || \"CUSTOMERACCOUNT\""
    ));
    settle(&mut engine);
    let crm_rows = deployment.crm.rows(
        "SELECT msdyn_company, accountnumber, creditlimit, description FROM accounts \
         ORDER BY msdyn_company, accountnumber",
    );
    assert_eq!(crm_rows.len(), 40, "every customer reached the CRM");
    for (erp, crm) in erp_rows.iter().zip(&crm_rows) {
        assert_eq!(&erp[..2], &crm[..2]);
        assert_eq!(erp[2], crm[2], "credit limit exact");
        assert_eq!(crm[3], format!("touched {}", erp[1]));
    }

    // A CRM edit on MariaDB reaches the ERP, and nothing echoes back.
    let (company, account) = (&crm_rows[3][0], &crm_rows[3][1]);
    deployment.crm.exec(&format!(
        "UPDATE accounts SET description = 'from the CRM', creditlimit = 1234.56 \
         WHERE msdyn_company = '{company}' AND accountnumber = '{account}'"
    ));
    settle(&mut engine);
    let erp = deployment.erp_sql(&format!(
        "SELECT \"SALESMEMO\", \"CREDITLIMIT\" FROM {table} \
         WHERE \"DATAAREAID\" = '{company}' AND \"CUSTOMERACCOUNT\" = '{account}'"
    ));
    assert_eq!(
        erp,
        vec![vec!["from the CRM".to_owned(), "1234.56".to_owned()]]
    );
    let report = engine.step().expect("step");
    assert_eq!((report.captured, report.written), (0, 0), "no echo");

    // A delete on the ERP deletes the account.
    deployment.erp_sql(&format!(
        "DELETE FROM {table} WHERE \"DATAAREAID\" = '{company}' \
         AND \"CUSTOMERACCOUNT\" = '{account}'"
    ));
    settle(&mut engine);
    assert_eq!(
        deployment.crm.rows("SELECT COUNT(*) FROM accounts"),
        vec![vec!["39".to_owned()]]
    );

    // Changes made on MariaDB while the engine is down arrive after a restart.
    drop(engine);
    let (company, account) = (&crm_rows[5][0], &crm_rows[5][1]);
    deployment.crm.exec(&format!(
        "UPDATE accounts SET description = 'while down' \
         WHERE msdyn_company = '{company}' AND accountnumber = '{account}'"
    ));
    let mut engine = deployment.engine();
    settle(&mut engine);
    let erp = deployment.erp_sql(&format!(
        "SELECT \"SALESMEMO\" FROM {table} \
         WHERE \"DATAAREAID\" = '{company}' AND \"CUSTOMERACCOUNT\" = '{account}'"
    ));
    assert_eq!(erp, vec![vec!["while down".to_owned()]]);
    let report = engine.step().expect("step");
    assert_eq!((report.captured, report.written), (0, 0), "no echo");
}

#[test]
fn customers_flow_both_ways_between_sqlite_and_mariadb_without_echo() {
    flows_both_ways(&Deployment::new("sync_sqlite", 40, false));
}

#[test]
fn customers_flow_both_ways_between_postgres_and_mariadb_without_echo() {
    flows_both_ways(&Deployment::new("sync_pg", 40, true));
}

#[test]
fn a_connection_killed_by_the_server_puts_the_side_offline_and_it_catches_up() {
    let deployment = Deployment::new("sync_killed", 10, false);
    let table = deployment.erp_table();
    let mut engine = deployment.synced_engine();
    deployment.erp_sql(&format!("UPDATE {table} SET \"SALESMEMO\" = 'first'"));
    settle(&mut engine);
    // The server ends every session of the engine; meanwhile the CRM changes.
    assert!(deployment.crm.kill_sessions() >= 1);
    deployment
        .crm
        .exec("UPDATE accounts SET description = 'crm meanwhile'");
    let synced = || {
        deployment.erp_sql(&format!(
            "SELECT count(*) FROM {table} WHERE \"SALESMEMO\" = 'crm meanwhile'"
        )) == vec![vec!["10".to_owned()]]
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
    // The writer's new session marks its transactions again: the ERP's next edit
    // arrives once, without echo.
    deployment.erp_sql(&format!("UPDATE {table} SET \"CREDITRATING\" = 'AAA'"));
    settle(&mut engine);
    assert_eq!(
        deployment
            .crm
            .rows("SELECT COUNT(*) FROM accounts WHERE msdyn_creditrating = 'AAA'"),
        vec![vec!["10".to_owned()]]
    );
    let report = engine.step().expect("step");
    assert_eq!((report.captured, report.written), (0, 0), "no echo");
}
