//! Convergence of the sync engine under random concurrent edits on both sides, on the
//! machine's database servers: the property of `convergence.rs` (same histories, see
//! [`dualwrite_tests::convergence`]) with the ERP table `CustCustomerGroup` on
//! PostgreSQL and the CRM table `msdyn_customergroups` on MariaDB, each case in
//! databases of its own (dropped at its end). The conflict policy is `side-wins` with
//! the ERP as the winner.
//!
//! Capture on servers is streamed (PostgreSQL's logical replication stream, MariaDB's
//! binlog): a history's `Step` first waits until the engine captured every change made
//! before it, and the end settles until quiet steps and both tables equal through the
//! map, or fails after 60 s ([`dualwrite_tests::convergence::engine`]).
//!
//! What it shows, for every generated history:
//! - (a) **convergence**: both tables are equal through the map (company, group id,
//!   description, tax flag `yes`/`no` text <-> `BOOLEAN`), with no extra rows; and no
//!   change went to the error queue (the map's `errors` counter is 0, the error queue
//!   empty) and none is left in the map's queue;
//! - (b) **no echo amplification**: the rows the engine wrote (`written_to_crm` +
//!   `written_to_erp`) are at most the logical changes made (row changes the test
//!   committed);
//! - (c) in place of SQLite's empty change logs: **everything was captured, nothing
//!   twice, and nothing the engine wrote was captured back**: for each side,
//!   `captured_from_<side>` is at least the logical changes the test made there and at
//!   most the rows its statements wrote (an update that sets the values a row holds is
//!   a write PostgreSQL logs and MariaDB does not); an echo of the engine's own writes
//!   would exceed that;
//! - (d) **no lost edit**: every key whose changes all came from one side holds that
//!   side's last write (read back right after the edit) on both sides, or is absent from
//!   both if that was a delete ([`dualwrite_tests::convergence::oracle`]).
//!
//! `random_concurrent_edits_on_both_sides_converge_on_servers` runs 16 cases
//! (`PROPTEST_CASES` overrides it; `PROPTEST_RNG_SEED` fixes the seed); the `regression_*`
//! tests replay some of `convergence.rs`'s fixed histories on the servers, each with
//! whole batches and with one change per batch.

use std::fmt::Write as _;
use std::time::Duration;

use dualwrite::config;
use dualwrite::sync::{Engine, EngineOptions};
use dualwrite_tests::convergence::engine::{
    Made, counters, runtime, settle_streamed, step_after_capture,
};
use dualwrite_tests::convergence::oracle::EditLog;
use dualwrite_tests::convergence::{
    Fields, KEYS, Op, Row, Table, Tables, Which, edit, histories, run_property,
};
use dualwrite_tests::customer_groups::{MAP_ENDPOINTS, MARIADB_CRM_TABLE, PG_ERP_TABLE};
use dualwrite_tests::plugins_dir;
use dualwrite_tests::servers::{MyDatabase, PgDatabase, ensure_ready};
use mysql::prelude::Queryable as _;

const MAP: &str = "customer-groups";

/// How many cases the property runs by default (`PROPTEST_CASES` overrides it).
const CASES: u32 = 16;

/// A PostgreSQL ERP database and a MariaDB CRM database of one case, a connection to
/// each (the "applications"), and the engine's folder.
struct Deployment {
    // Fields drop in order: the connections before their databases.
    erp: postgres::Client,
    crm: mysql::Conn,
    dir: tempfile::TempDir,
    erp_db: PgDatabase,
    crm_db: MyDatabase,
}

impl Deployment {
    fn new() -> Deployment {
        ensure_ready();
        let erp_db = PgDatabase::create("conv_erp");
        let crm_db = MyDatabase::create("conv_crm");
        let mut erp = erp_db.client();
        erp.batch_execute(PG_ERP_TABLE).expect("ERP table");
        crm_db.exec(MARIADB_CRM_TABLE);
        let crm = crm_db.conn();
        Deployment {
            erp,
            crm,
            dir: tempfile::tempdir().expect("tempdir"),
            erp_db,
            crm_db,
        }
    }

    fn engine(&self, read_limit: usize) -> Engine {
        let text = format!(
            r#"
data_dir = "state"
plugins_dir = {plugins:?}

[sides.erp]
connector = "postgres"
url = {erp:?}

[sides.crm]
connector = "mariadb"
url = {crm:?}

[maps.customer-groups]
plugin = "customer_groups.wasm"
{MAP_ENDPOINTS}

[maps.customer-groups.config]
resolve_lookups = false
"#,
            plugins = plugins_dir().display().to_string(),
            erp = self.erp_db.url,
            crm = self.crm_db.url,
        );
        let plan = config::parse(&text, "test.toml", self.dir.path()).expect("valid config");
        Engine::open(
            &plan,
            runtime(),
            EngineOptions {
                read_limit,
                // What `wait_for_changes` waits at most (shared by the two sides).
                idle_wait: Duration::from_millis(100),
                min_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(100),
                ..EngineOptions::default()
            },
        )
        .expect("engine opens")
    }
}

/// The ERP's tax flag text.
fn erp_tax(tax: Option<bool>) -> Option<&'static str> {
    tax.map(|flag| if flag { "yes" } else { "no" })
}

/// The ERP's tax flag as read, in common terms; anything unexpected is a failure.
fn erp_tax_of(text: Option<String>) -> Option<bool> {
    match text.as_deref() {
        None => None,
        Some("yes") => Some(true),
        Some("no") => Some(false),
        Some(other) => panic!("the ERP holds an unexpected tax flag {other:?}"),
    }
}

/// The CRM's tax flag as read (a `TINYINT(1)`), in common terms.
fn crm_tax_of(flag: Option<i64>) -> Option<bool> {
    match flag {
        None => None,
        Some(0) => Some(false),
        Some(1) => Some(true),
        Some(other) => panic!("the CRM holds an unexpected tax flag {other}"),
    }
}

impl Tables for Deployment {
    fn row(&mut self, side: Which, key: usize) -> Option<Row> {
        let (company, group) = KEYS[key];
        match side {
            Which::Erp => self
                .erp
                .query_opt(
                    r#"SELECT "DESCRIPTION", "ISSALESTAXINCLUDEDINPRICE" FROM "CustCustomerGroup"
                       WHERE "DATAAREAID" = $1 AND "CUSTOMERGROUPID" = $2"#,
                    &[&company, &group],
                )
                .expect("read ERP row")
                .map(|row| (row.get(0), erp_tax_of(row.get(1)))),
            Which::Crm => self
                .crm
                .exec_first::<(Option<String>, Option<i64>), _, _>(
                    "SELECT msdyn_description, msdyn_issalestaxincludedinprice \
                     FROM msdyn_customergroups WHERE msdyn_company = ? AND msdyn_groupid = ?",
                    (company, group),
                )
                .expect("read CRM row")
                .map(|(description, flag)| (description, crm_tax_of(flag))),
        }
    }

    fn table(&mut self, side: Which) -> Table {
        match side {
            Which::Erp => self
                .erp
                .query(
                    r#"SELECT "DATAAREAID", "CUSTOMERGROUPID", "DESCRIPTION",
                       "ISSALESTAXINCLUDEDINPRICE" FROM "CustCustomerGroup""#,
                    &[],
                )
                .expect("read ERP table")
                .into_iter()
                .map(|row| {
                    (
                        (row.get(0), row.get(1)),
                        (row.get(2), erp_tax_of(row.get(3))),
                    )
                })
                .collect(),
            Which::Crm => self
                .crm
                .query_map(
                    "SELECT msdyn_company, msdyn_groupid, msdyn_description, \
                     msdyn_issalestaxincludedinprice FROM msdyn_customergroups",
                    |(company, group, description, flag): (
                        String,
                        String,
                        Option<String>,
                        Option<i64>,
                    )| ((company, group), (description, crm_tax_of(flag))),
                )
                .expect("read CRM table")
                .into_iter()
                .collect(),
        }
    }

    fn insert(&mut self, side: Which, key: usize, row: &Row) {
        let (company, group) = KEYS[key];
        match side {
            Which::Erp => {
                self.erp
                    .execute(
                        r#"INSERT INTO "CustCustomerGroup" ("DATAAREAID", "CUSTOMERGROUPID",
                           "DESCRIPTION", "ISSALESTAXINCLUDEDINPRICE") VALUES ($1, $2, $3, $4)"#,
                        &[&company, &group, &row.0, &erp_tax(row.1)],
                    )
                    .expect("ERP insert");
            }
            Which::Crm => self
                .crm
                .exec_drop(
                    "INSERT INTO msdyn_customergroups (msdyn_company, msdyn_groupid, \
                     msdyn_description, msdyn_issalestaxincludedinprice) VALUES (?, ?, ?, ?)",
                    (company, group, &row.0, row.1),
                )
                .expect("CRM insert"),
        }
    }

    fn update(&mut self, side: Which, key: usize, fields: Fields, row: &Row) {
        let (company, group) = KEYS[key];
        match side {
            Which::Erp => {
                let tax = erp_tax(row.1);
                let (set, value): (&str, &(dyn postgres::types::ToSql + Sync)) = match fields {
                    Fields::Description => (r#""DESCRIPTION" = $3"#, &row.0),
                    Fields::Tax => (r#""ISSALESTAXINCLUDEDINPRICE" = $3"#, &tax),
                    Fields::Both => (
                        r#""DESCRIPTION" = $3, "ISSALESTAXINCLUDEDINPRICE" = $4"#,
                        &row.0,
                    ),
                };
                let sql = format!(
                    r#"UPDATE "CustCustomerGroup" SET {set}
                       WHERE "DATAAREAID" = $1 AND "CUSTOMERGROUPID" = $2"#
                );
                let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    vec![&company, &group, value];
                if fields == Fields::Both {
                    params.push(&tax);
                }
                self.erp.execute(&sql, &params).expect("ERP update");
            }
            Which::Crm => {
                let (set, params) = match fields {
                    Fields::Description => (
                        "msdyn_description = ?",
                        vec![row.0.clone().into(), company.into(), group.into()],
                    ),
                    Fields::Tax => (
                        "msdyn_issalestaxincludedinprice = ?",
                        vec![row.1.into(), company.into(), group.into()],
                    ),
                    Fields::Both => (
                        "msdyn_description = ?, msdyn_issalestaxincludedinprice = ?",
                        vec![
                            row.0.clone().into(),
                            row.1.into(),
                            company.into(),
                            group.into(),
                        ],
                    ),
                };
                let params: Vec<mysql::Value> = params;
                self.crm
                    .exec_drop(
                        format!(
                            "UPDATE msdyn_customergroups SET {set} \
                             WHERE msdyn_company = ? AND msdyn_groupid = ?"
                        ),
                        params,
                    )
                    .expect("CRM update");
            }
        }
    }

    fn delete(&mut self, side: Which, key: usize) -> bool {
        let (company, group) = KEYS[key];
        match side {
            Which::Erp => {
                self.erp
                    .execute(
                        r#"DELETE FROM "CustCustomerGroup"
                           WHERE "DATAAREAID" = $1 AND "CUSTOMERGROUPID" = $2"#,
                        &[&company, &group],
                    )
                    .expect("ERP delete")
                    > 0
            }
            Which::Crm => {
                self.crm
                    .exec_drop(
                        "DELETE FROM msdyn_customergroups \
                         WHERE msdyn_company = ? AND msdyn_groupid = ?",
                        (company, group),
                    )
                    .expect("CRM delete");
                self.crm.affected_rows() > 0
            }
        }
    }
}

/// Runs one history and checks the four properties; the error describes what broke.
fn check_history(ops: &[Op], read_limit: usize) -> Result<(), String> {
    let mut deployment = Deployment::new();
    let mut engine = deployment.engine(read_limit);
    let mut made = Made::default();
    let mut trace = String::new();
    let mut log = EditLog::new();
    let outcome = (|| {
        for op in ops {
            if let Op::Step = op {
                let reports = step_after_capture(&mut engine, MAP, &made)?;
                let _ = writeln!(trace, "  step: {reports:?}");
            } else if let Op::Write { side, key, .. } | Op::Delete { side, key } = *op {
                let done = edit(&mut deployment, op);
                made.add(side, done.changed, done.touched);
                let stored = deployment.row(side, key);
                log.record(key, side, format!("{op:?}"), stored, done.changed);
                let note = if done.changed {
                    ""
                } else if done.touched {
                    " (changed nothing)"
                } else {
                    " (wrote nothing)"
                };
                let _ = writeln!(trace, "  {op:?}{note}");
            }
        }
        let steps = settle_streamed(&mut engine, MAP, &made, || {
            let (erp, crm) = (deployment.table(Which::Erp), deployment.table(Which::Crm));
            if erp == crm {
                Ok(())
            } else {
                Err(format!("ERP: {erp:?}\nCRM: {crm:?}"))
            }
        })?;
        let _ = writeln!(trace, "  settled in {steps} step(s)");
        Ok::<(), String>(())
    })();
    let erp = deployment.table(Which::Erp);
    let crm = deployment.table(Which::Crm);
    let counters = counters(&engine, MAP);
    let open_errors = engine
        .store()
        .open_error_count(MAP)
        .map_err(|error| error.to_string())?;
    let queued = engine.queued_changes(MAP);
    let context = || {
        format!(
            "read limit {read_limit}; history:\n{trace}ERP: {erp:?}\nCRM: {crm:?}\n\
             made: {made:?}\ncounters: {counters:?}; open errors: {open_errors}; \
             queued: {queued:?}"
        )
    };
    if let Err(failure) = outcome {
        return Err(format!("{failure}\n{}", context()));
    }
    if erp != crm {
        return Err(format!(
            "(a) the sides differ through the map\n{}",
            context()
        ));
    }
    if open_errors != 0 || counters.errors != 0 || queued != Some(0) {
        return Err(format!(
            "(a) changes went to the error queue or are still queued\n{}",
            context()
        ));
    }
    if let Err(lost) = log.check_one_sided(
        |key| format!("{:?}", KEYS[key]),
        |side, key| deployment.row(side, key),
        |_, a, _, b| a == b,
    ) {
        return Err(format!(
            "(d) a key edited on one side only does not hold that side's last write:\n\
             {lost}{}",
            context()
        ));
    }
    let written = counters.written_to_crm + counters.written_to_erp;
    let logical_changes = made.logical_changes();
    if written > logical_changes {
        return Err(format!(
            "(b) echo amplification: {written} rows written for {logical_changes} logical \
             change(s)\n{}",
            context()
        ));
    }
    for (side, captured) in [
        (Which::Erp, counters.captured_from_erp),
        (Which::Crm, counters.captured_from_crm),
    ] {
        let at = side as usize;
        let (least, most) = (made.changed[at], made.touched[at]);
        if !(least..=most).contains(&captured) {
            return Err(format!(
                "(c) {captured} change(s) captured from the {side:?} side, expected from \
                 {least} (rows the test changed there) to {most} (rows it wrote there): \
                 {}\n{}",
                if captured > most {
                    "the engine's own writes were captured back (echo)"
                } else {
                    "changes were lost"
                },
                context()
            ));
        }
    }
    Ok(())
}

/// The property in full on the servers: concurrent edits of the same rows on both
/// sides, batches of any size.
#[test]
fn random_concurrent_edits_on_both_sides_converge_on_servers() {
    run_property(CASES, &[1, 2, 3, 5_000], check_history);
}

/// Checks a fixed history with whole batches and with one change per batch.
fn replay(ops: &[Op]) {
    for read_limit in [5_000, 1] {
        if let Err(failure) = check_history(ops, read_limit) {
            panic!("{failure}");
        }
    }
}

// The minimized histories `convergence.rs` replays too (`tests/src/convergence.rs`).

/// See [`histories::the_same_key_inserted_on_both_sides`].
#[test]
fn regression_the_same_key_inserted_on_both_sides() {
    replay(&histories::the_same_key_inserted_on_both_sides());
}

/// See [`histories::the_same_field_updated_on_both_sides`].
#[test]
fn regression_the_same_field_updated_on_both_sides() {
    replay(&histories::the_same_field_updated_on_both_sides());
}

/// See [`histories::different_fields_updated_on_both_sides`].
#[test]
fn regression_different_fields_updated_on_both_sides() {
    replay(&histories::different_fields_updated_on_both_sides());
}

/// See [`histories::a_delete_on_the_crm_side_and_an_update_on_the_erp_side`].
#[test]
fn regression_a_delete_on_the_crm_side_and_an_update_on_the_erp_side() {
    replay(&histories::a_delete_on_the_crm_side_and_an_update_on_the_erp_side());
}

/// See [`histories::a_delete_older_than_the_other_sides_insert`].
#[test]
fn regression_a_delete_older_than_the_other_sides_insert() {
    replay(&histories::a_delete_older_than_the_other_sides_insert());
}

/// See [`histories::a_lost_conflict_whose_winner_matches_in_the_fields_it_changed`].
#[test]
fn regression_a_lost_conflict_whose_winner_matches_in_the_fields_it_changed() {
    replay(&histories::a_lost_conflict_whose_winner_matches_in_the_fields_it_changed());
}
