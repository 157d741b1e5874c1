//! `dualwrite init` as a new user runs it: the real binary writes a deployment with the
//! standard map pack on two SQLite files, or on the real PostgreSQL and MariaDB servers,
//! makes the missing tables (never touching one that exists), and its health checks pass;
//! the deployment then runs and syncs.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use dualwrite_tests::engine_process::EngineProcess;
use dualwrite_tests::plugins_dir;
use dualwrite_tests::servers::{MyDatabase, PgDatabase};
use rusqlite::Connection;

fn dualwrite(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dualwrite"))
        .args(args)
        .env("DUALWRITE_CACHE_DIR", cache)
        .output()
        .expect("run dualwrite")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

#[test]
fn init_writes_a_deployment_that_checks_clean_and_runs() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = root.path().join("cache");
    let dir = root.path().join("deployment");
    let plugins = plugins_dir();
    let made = dualwrite(&["init", s(&dir), "--plugins", s(plugins)], &cache);
    assert!(made.status.success(), "{}", text(&made));
    let said = text(&made);
    assert!(
        said.contains("with 12 map(s) of the standard pack"),
        "{said}"
    );
    assert!(said.contains("made 23 missing table(s)"), "{said}");
    assert!(said.contains("all checks passed"), "{said}");
    let config = dir.join("dualwrite.toml");
    let checked = dualwrite(&["check", "-c", s(&config)], &cache);
    assert!(checked.status.success(), "{}", text(&checked));

    // A second init does not overwrite the deployment unless asked.
    let again = dualwrite(&["init", s(&dir), "--plugins", s(plugins)], &cache);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(
        text(&again).contains("already exists; pass --force"),
        "{}",
        text(&again)
    );

    // The deployment runs: a currency made on the ERP side reaches the CRM.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).expect("config") + "\n[admin]\nlisten = \"127.0.0.1:0\"\n",
    )
    .expect("config");
    let engine = EngineProcess::start(Path::new(env!("CARGO_BIN_EXE_dualwrite")), &config, &cache);
    let erp = Connection::open(dir.join("erp.db")).expect("erp");
    erp.busy_timeout(Duration::from_secs(5)).expect("timeout");
    let columns: Vec<String> = erp
        .prepare("SELECT name FROM pragma_table_info('Currencies')")
        .expect("prepare")
        .query_map([], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("columns");
    assert!(columns.contains(&"CURRENCYCODE".to_owned()), "{columns:?}");
    erp.execute(
        "INSERT INTO Currencies (CURRENCYCODE, NAME) VALUES ('NZD', 'New Zealand dollar')",
        [],
    )
    .expect("insert");
    let crm = Connection::open(dir.join("crm.db")).expect("crm");
    let started = Instant::now();
    loop {
        let found: i64 = crm
            .query_row(
                "SELECT count(*) FROM transactioncurrencies WHERE isocurrencycode = 'NZD'",
                [],
                |row| row.get(0),
            )
            .expect("count");
        if found == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the currency did not arrive"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(engine);
}

#[test]
fn init_with_some_maps_brings_their_dependencies() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = root.path().join("cache");
    let dir = root.path().join("deployment");
    let made = dualwrite(
        &[
            "init",
            s(&dir),
            "--plugins",
            s(plugins_dir()),
            "--maps",
            "customer-groups",
        ],
        &cache,
    );
    assert!(made.status.success(), "{}", text(&made));
    let plan = dualwrite::config::load(dir.join("dualwrite.toml")).expect("valid");
    let names: Vec<&str> = plan.maps.iter().map(|map| map.name.as_str()).collect();
    assert!(names.contains(&"customer-groups"), "{names:?}");
    assert!(names.contains(&"terms-of-payment"), "{names:?}");
    assert!(!names.contains(&"products"), "{names:?}");
    let unknown = dualwrite(
        &[
            "init",
            s(&root.path().join("other")),
            "--plugins",
            s(plugins_dir()),
            "--maps",
            "nope",
        ],
        &cache,
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown).contains("no map named nope"),
        "{}",
        text(&unknown)
    );
    let no_plugins = dualwrite(
        &[
            "init",
            s(&root.path().join("third")),
            "--plugins",
            s(root.path()),
        ],
        &cache,
    );
    assert_eq!(no_plugins.status.code(), Some(2));
    assert!(
        text(&no_plugins).contains("cargo xtask plugins"),
        "{}",
        text(&no_plugins)
    );
}

#[test]
fn init_on_servers_makes_only_the_missing_tables_and_checks_clean() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = root.path().join("cache");
    let erp = PgDatabase::create("init_erp");
    let crm = MyDatabase::create("init_crm");
    // A table of the pack the ERP has already, with a row in it: kept as it is.
    erp.client()
        .batch_execute(
            "CREATE TABLE \"Currencies\" (\"CURRENCYCODE\" text PRIMARY KEY, \"NAME\" text, \
             \"SYMBOL\" text, \"NOTES\" text); \
             INSERT INTO \"Currencies\" (\"CURRENCYCODE\", \"NAME\") VALUES ('EUR', 'Euro');",
        )
        .expect("existing table");
    let dir = root.path().join("deployment");
    let made = dualwrite(
        &[
            "init",
            s(&dir),
            "--plugins",
            s(plugins_dir()),
            "--maps",
            "currencies,customer-groups",
            "--erp",
            &erp.url,
            "--crm",
            &crm.url,
        ],
        &cache,
    );
    let said = text(&made);
    assert!(made.status.success(), "{said}");
    assert!(said.contains("all checks passed"), "{said}");
    assert!(
        !said.contains("erp Currencies"),
        "the existing table is not made again: {said}"
    );
    assert!(said.contains("crm transactioncurrencies"), "{said}");
    let kept = erp
        .client()
        .query_one(
            "SELECT \"NAME\" FROM \"Currencies\" WHERE \"CURRENCYCODE\" = 'EUR'",
            &[],
        )
        .expect("the row is still there");
    assert_eq!(kept.get::<_, String>(0), "Euro");
    assert_eq!(crm.rows("SHOW TABLES LIKE 'msdyn_customergroups'").len(), 1);
}
