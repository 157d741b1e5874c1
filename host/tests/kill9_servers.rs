//! kill -9 of the real `dualwrite run` while the changes of one large statement are in
//! flight from a database server: a PostgreSQL COPY of 1,000 rows in one transaction,
//! a PostgreSQL INSERT of 1,000 rows in one statement, and a MariaDB INSERT of 1,000
//! rows in one statement (all of a statement's rows share its commit position; each
//! change is told apart by its index in the transaction). The engine is killed several
//! times while it works through them and started again; in the end every row is on the
//! other side (an SQLite CRM) once, with its values, and nothing came back to the
//! source as an echo.

use std::path::Path;
use std::time::Duration;

use dualwrite_tests::customer_groups::write_server_erp_config;
use dualwrite_tests::engine_process::EngineProcess;
use dualwrite_tests::eventually;
use dualwrite_tests::servers::{MyDatabase, PgDatabase};
use rusqlite::Connection;

const ROWS: usize = 1_000;

/// Kill delays after the statement commits, one per round.
const KILL_AFTER_MS: [u64; 4] = [0, 60, 180, 400];

fn crm_rows(dir: &Path, prefix: &str) -> Vec<(String, String)> {
    let db = Connection::open(dir.join("crm.db")).expect("open");
    db.busy_timeout(Duration::from_secs(5)).expect("timeout");
    let mut statement = db
        .prepare(
            "SELECT msdyn_groupid, coalesce(msdyn_description, '') FROM msdyn_customergroups \
             WHERE msdyn_groupid LIKE ?1 ORDER BY 1",
        )
        .expect("prepare");
    statement
        .query_map([format!("{prefix}%")], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn start(dir: &Path, config: &Path) -> EngineProcess {
    EngineProcess::start(
        Path::new(env!("CARGO_BIN_EXE_dualwrite")),
        config,
        &dir.join("cache"),
    )
}

/// Runs each statement of `statements` (each makes `ROWS` rows named `PREFIX-nnnn`)
/// with kills after it, then checks the CRM holds every row once; `erp_count` counts
/// the ERP rows (no echo may add any).
fn kill_while_a_statement_is_in_flight(
    dir: &Path,
    config: &Path,
    statements: &mut [(&str, &mut dyn FnMut())],
    erp_count: &mut dyn FnMut() -> usize,
) {
    let mut engine = start(dir, config);
    // Capture is installed once a first row arrives.
    for (prefix, run) in statements.iter_mut() {
        let before = erp_count();
        run();
        assert_eq!(
            erp_count(),
            before + ROWS,
            "{prefix}: the statement wrote its rows"
        );
        for delay in KILL_AFTER_MS {
            std::thread::sleep(Duration::from_millis(delay));
            engine.kill();
            engine = start(dir, config);
        }
        eventually(
            &format!("{prefix}: every row on the CRM side"),
            Duration::from_secs(120),
            || crm_rows(dir, prefix).len() == ROWS,
        );
        let rows = crm_rows(dir, prefix);
        for (n, (id, description)) in rows.iter().enumerate() {
            assert_eq!(id, &format!("{prefix}-{n:04}"));
            assert_eq!(description, &format!("row {n} of one statement"));
        }
        assert_eq!(
            erp_count(),
            before + ROWS,
            "{prefix}: no echo came back to the ERP"
        );
    }
    engine.kill();
}

#[test]
fn postgres_copy_and_multi_row_insert_lose_nothing_across_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let erp = PgDatabase::create("kill9_pg");
    erp.client()
        .batch_execute(
            "CREATE TABLE \"CustCustomerGroup\" (\"DATAAREAID\" text NOT NULL, \
             \"CUSTOMERGROUPID\" text NOT NULL, \"DESCRIPTION\" text, \
             \"ISSALESTAXINCLUDEDINPRICE\" text, \"PAYMENTTERMID\" text, \
             \"CLEARINGPERIODPAYMENTTERMNAME\" text, \
             PRIMARY KEY (\"DATAAREAID\", \"CUSTOMERGROUPID\"))",
        )
        .expect("ERP table");
    let config = write_server_erp_config(
        dir.path(),
        &format!("connector = \"postgres\"\nurl = {:?}", erp.url),
    );
    let mut copy = || {
        let mut client = erp.client();
        let mut transaction = client.transaction().expect("transaction");
        let mut writer = transaction
            .copy_in(
                "COPY \"CustCustomerGroup\" (\"DATAAREAID\", \"CUSTOMERGROUPID\", \"DESCRIPTION\") \
                 FROM STDIN",
            )
            .expect("COPY");
        for n in 0..ROWS {
            std::io::Write::write_all(
                &mut writer,
                format!("usmf\tCOPY-{n:04}\trow {n} of one statement\n").as_bytes(),
            )
            .expect("row");
        }
        writer.finish().expect("COPY done");
        transaction.commit().expect("commit");
    };
    let mut insert = || {
        erp.client()
            .batch_execute(&format!(
                "INSERT INTO \"CustCustomerGroup\" (\"DATAAREAID\", \"CUSTOMERGROUPID\", \"DESCRIPTION\") \
                 SELECT 'usmf', 'INS-' || lpad(n::text, 4, '0'), 'row ' || n || ' of one statement' \
                 FROM generate_series(0, {}) AS n",
                ROWS - 1
            ))
            .expect("INSERT");
    };
    let mut count = || {
        let row = erp
            .client()
            .query_one("SELECT count(*) FROM \"CustCustomerGroup\"", &[])
            .expect("count");
        row.get::<_, i64>(0) as usize
    };
    kill_while_a_statement_is_in_flight(
        dir.path(),
        &config,
        &mut [("COPY", &mut copy), ("INS", &mut insert)],
        &mut count,
    );
}

#[test]
fn mariadb_multi_row_insert_loses_nothing_across_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let erp = MyDatabase::create("kill9_my");
    erp.exec(
        "CREATE TABLE CustCustomerGroup (DATAAREAID VARCHAR(10) NOT NULL, \
         CUSTOMERGROUPID VARCHAR(20) NOT NULL, DESCRIPTION TEXT, \
         ISSALESTAXINCLUDEDINPRICE VARCHAR(10), PAYMENTTERMID VARCHAR(20), \
         CLEARINGPERIODPAYMENTTERMNAME VARCHAR(20), PRIMARY KEY (DATAAREAID, CUSTOMERGROUPID))",
    );
    let config = write_server_erp_config(
        dir.path(),
        &format!("connector = \"mariadb\"\nurl = {:?}", erp.url),
    );
    let mut insert = || {
        let values: Vec<String> = (0..ROWS)
            .map(|n| format!("('usmf', 'MY-{n:04}', 'row {n} of one statement')"))
            .collect();
        erp.exec(&format!(
            "INSERT INTO CustCustomerGroup (DATAAREAID, CUSTOMERGROUPID, DESCRIPTION) VALUES {}",
            values.join(", ")
        ));
    };
    let mut count = || {
        erp.rows("SELECT count(*) FROM CustCustomerGroup")[0][0]
            .parse::<usize>()
            .expect("count")
    };
    kill_while_a_statement_is_in_flight(
        dir.path(),
        &config,
        &mut [("MY", &mut insert)],
        &mut count,
    );
}
