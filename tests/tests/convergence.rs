//! Convergence of the sync engine under random concurrent edits on both sides.
//!
//! A property test (proptest) drives the customer-groups map between two real SQLite
//! files: random inserts, updates and deletes on the ERP table `CustCustomerGroup` and
//! the CRM table `msdyn_customergroups`, on a small pool of keys so that the same row is
//! often edited on both sides between two engine steps and keys are reused after a
//! delete, with [`Engine::step`] calls at random points and a random read limit (so
//! batches split at random places). At the end the engine settles (steps until a step
//! finds nothing to do). The conflict policy is `side-wins` with the ERP as the winner.
//!
//! What it shows, for every generated history:
//! - (a) **convergence**: both tables are equal through the map: every ERP row has
//!   exactly one CRM row with the same company and group id, the same description and
//!   `ISSALESTAXINCLUDEDINPRICE` `yes`/`no` <-> `true`/`false`, and the other way round,
//!   with no extra rows; and no change went to the error queue;
//! - (b) **no echo amplification**: the rows the engine wrote (`written_to_crm` +
//!   `written_to_erp`) are at most the logical changes made (row changes the test
//!   committed);
//! - (c) the change logs (`_dualwrite_changes`) are empty once settled: everything read
//!   was acknowledged and nothing the engine wrote was captured back;
//! - (d) **no lost edit**: every key whose changes all came from one side holds that
//!   side's last write (the row as it stored it, read back right after the edit) on both
//!   sides, or is absent from both if that was a delete
//!   ([`dualwrite_tests::convergence::oracle`]).
//!
//! `random_concurrent_edits_on_both_sides_converge_without_echo` is that property in
//! full. `random_edits_one_side_at_a_time_converge_without_echo` runs the same kind of
//! histories with no concurrency on a row (the engine settles before a row edited on one
//! side is edited on the other) and one change per batch: it guards the plain paths.
//! Each runs 32 cases (`PROPTEST_CASES` overrides it; `PROPTEST_RNG_SEED` fixes the
//! seed), a few seconds in a debug build. The `regression_*` tests replay minimized
//! failing histories deterministically, each with whole batches and with one change per
//! batch.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use dualwrite::config;
use dualwrite::sync::{Engine, EngineOptions};
use dualwrite_tests::convergence::engine::{runtime, settle};
use dualwrite_tests::convergence::oracle::EditLog;
use dualwrite_tests::convergence::{
    Fields, KEYS, Op, Row, Table, Tables, Which, delete, describe, edit, histories, run_property,
    tax, write,
};
use dualwrite_tests::plugins_dir;
use rusqlite::{Connection, OptionalExtension as _, params};

const ERP_TABLE: &str = "CREATE TABLE CustCustomerGroup (
    DATAAREAID TEXT NOT NULL, CUSTOMERGROUPID TEXT NOT NULL, DESCRIPTION TEXT,
    ISSALESTAXINCLUDEDINPRICE TEXT, PAYMENTTERMID TEXT, CLEARINGPERIODPAYMENTTERMNAME TEXT,
    PRIMARY KEY (DATAAREAID, CUSTOMERGROUPID))";

const CRM_TABLE: &str = "CREATE TABLE msdyn_customergroups (
    msdyn_company TEXT NOT NULL, msdyn_groupid TEXT NOT NULL, msdyn_description TEXT,
    msdyn_issalestaxincludedinprice BOOLEAN, msdyn_paymenttermid TEXT,
    msdyn_clearingperiodpaymenttermname TEXT,
    PRIMARY KEY (msdyn_company, msdyn_groupid))";

const MAP: &str = "customer-groups";

/// Two SQLite files, a connection to each (the "applications"), and the engine.
struct Deployment {
    dir: tempfile::TempDir,
    erp: Connection,
    crm: Connection,
}

impl Deployment {
    fn new() -> Deployment {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = |file: &str, table: &str| {
            let db = Connection::open(dir.path().join(file)).expect("create db");
            db.busy_timeout(Duration::from_secs(10)).expect("timeout");
            db.execute_batch(&format!("PRAGMA journal_mode=WAL; {table};"))
                .expect("schema");
            db
        };
        let erp = open("erp.db", ERP_TABLE);
        let crm = open("crm.db", CRM_TABLE);
        Deployment { dir, erp, crm }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn engine(&self, read_limit: usize) -> Engine {
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
        let plan = config::parse(&text, "test.toml", self.path()).expect("valid config");
        Engine::open(
            &plan,
            runtime(),
            EngineOptions {
                read_limit,
                ..EngineOptions::default()
            },
        )
        .expect("engine opens")
    }

    fn connection(&self, side: Which) -> &Connection {
        match side {
            Which::Erp => &self.erp,
            Which::Crm => &self.crm,
        }
    }

    fn change_log_len(&self, side: Which) -> i64 {
        self.connection(side)
            .query_row("SELECT count(*) FROM _dualwrite_changes", [], |row| {
                row.get(0)
            })
            .expect("change log")
    }
}

/// The names the SQL of `side` uses: (table, company, group, description, tax).
fn columns(side: Which) -> [&'static str; 5] {
    match side {
        Which::Erp => [
            "CustCustomerGroup",
            "DATAAREAID",
            "CUSTOMERGROUPID",
            "DESCRIPTION",
            "ISSALESTAXINCLUDEDINPRICE",
        ],
        Which::Crm => [
            "msdyn_customergroups",
            "msdyn_company",
            "msdyn_groupid",
            "msdyn_description",
            "msdyn_issalestaxincludedinprice",
        ],
    }
}

impl Tables for Deployment {
    fn row(&mut self, side: Which, key: usize) -> Option<Row> {
        let (company, group) = KEYS[key];
        let [
            table,
            company_column,
            group_column,
            description_column,
            tax_column,
        ] = columns(side);
        let sql = format!(
            "SELECT {description_column}, {tax_column} FROM {table} \
             WHERE {company_column} = ?1 AND {group_column} = ?2"
        );
        self.connection(side)
            .query_row(&sql, params![company, group], |row| {
                Ok((row.get(0)?, tax_of(side, row.get(1)?)))
            })
            .optional()
            .expect("read row")
    }

    fn table(&mut self, side: Which) -> Table {
        let [
            table,
            company_column,
            group_column,
            description_column,
            tax_column,
        ] = columns(side);
        let sql = format!(
            "SELECT {company_column}, {group_column}, {description_column}, {tax_column} \
             FROM {table}"
        );
        let db = self.connection(side);
        let mut statement = db.prepare(&sql).expect("prepare");
        statement
            .query_map([], |row| {
                Ok((
                    (row.get(0)?, row.get(1)?),
                    (row.get(2)?, tax_of(side, row.get(3)?)),
                ))
            })
            .expect("query")
            .collect::<Result<Table, _>>()
            .expect("rows")
    }

    fn insert(&mut self, side: Which, key: usize, row: &Row) {
        let (company, group) = KEYS[key];
        let [
            table,
            company_column,
            group_column,
            description_column,
            tax_column,
        ] = columns(side);
        let sql = format!(
            "INSERT INTO {table} ({company_column}, {group_column}, {description_column}, \
             {tax_column}) VALUES (?1, ?2, ?3, ?4)"
        );
        self.connection(side)
            .execute(&sql, params![company, group, row.0, tax_value(side, row.1)])
            .expect("insert");
    }

    fn update(&mut self, side: Which, key: usize, fields: Fields, row: &Row) {
        let (company, group) = KEYS[key];
        let [
            table,
            company_column,
            group_column,
            description_column,
            tax_column,
        ] = columns(side);
        let set = match fields {
            Fields::Description => format!("{description_column} = ?3"),
            Fields::Tax => format!("{tax_column} = ?3"),
            Fields::Both => format!("{description_column} = ?3, {tax_column} = ?4"),
        };
        let sql =
            format!("UPDATE {table} SET {set} WHERE {company_column} = ?1 AND {group_column} = ?2");
        let db = self.connection(side);
        let stored_tax = tax_value(side, row.1);
        let result = match fields {
            Fields::Description => db.execute(&sql, params![company, group, row.0]),
            Fields::Tax => db.execute(&sql, params![company, group, stored_tax]),
            Fields::Both => db.execute(&sql, params![company, group, row.0, stored_tax]),
        };
        result.expect("update");
    }

    fn delete(&mut self, side: Which, key: usize) -> bool {
        let (company, group) = KEYS[key];
        let [table, company_column, group_column, ..] = columns(side);
        let sql =
            format!("DELETE FROM {table} WHERE {company_column} = ?1 AND {group_column} = ?2");
        self.connection(side)
            .execute(&sql, params![company, group])
            .expect("delete")
            > 0
    }
}

/// The tax flag as the side stores it: ERP `yes`/`no` text, CRM 0/1.
fn tax_value(side: Which, tax: Option<bool>) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match (side, tax) {
        (_, None) => Value::Null,
        (Which::Erp, Some(flag)) => Value::Text(if flag { "yes" } else { "no" }.to_owned()),
        (Which::Crm, Some(flag)) => Value::Integer(i64::from(flag)),
    }
}

/// The tax flag as read from a side, in common terms; anything unexpected is a failure.
fn tax_of(side: Which, value: rusqlite::types::Value) -> Option<bool> {
    use rusqlite::types::Value;
    match (side, value) {
        (_, Value::Null) => None,
        (Which::Erp, Value::Text(text)) if text == "yes" => Some(true),
        (Which::Erp, Value::Text(text)) if text == "no" => Some(false),
        (Which::Crm, Value::Integer(flag)) if flag == 0 || flag == 1 => Some(flag == 1),
        (side, other) => panic!("{side:?} holds an unexpected tax flag {other:?}"),
    }
}

/// Runs one history and checks the four properties; the error describes what broke.
///
/// With `one_side_at_a_time`, the engine settles before a key edited on one side since
/// the last settle is edited on the other: no concurrent edits of a row.
fn check_history(ops: &[Op], read_limit: usize, one_side_at_a_time: bool) -> Result<(), String> {
    let mut deployment = Deployment::new();
    let mut engine = deployment.engine(read_limit);
    let mut logical_changes = 0u64;
    let mut trace = String::new();
    let mut log = EditLog::new();
    let mut touched: BTreeMap<usize, Which> = BTreeMap::new();
    for op in ops {
        if let Op::Write { side, key, .. } | Op::Delete { side, key } = *op
            && one_side_at_a_time
            && touched
                .insert(key, side)
                .is_some_and(|before| before != side)
        {
            let steps = settle(&mut engine)?;
            let _ = writeln!(trace, "  settled in {steps} step(s)");
            touched.clear();
            touched.insert(key, side);
        }
        if let Op::Write { side, key, .. } | Op::Delete { side, key } = *op {
            let changed = edit(&mut deployment, op).changed;
            log.record(
                key,
                side,
                format!("{op:?}"),
                deployment.row(side, key),
                changed,
            );
            logical_changes += u64::from(changed);
            let note = if changed { "" } else { " (changed nothing)" };
            let _ = writeln!(trace, "  {op:?}{note}");
        } else {
            let report = engine
                .step()
                .map_err(|error| format!("step failed: {error:#}"))?;
            let _ = writeln!(trace, "  step: {report:?}");
        }
    }
    let steps = settle(&mut engine)?;
    let _ = writeln!(trace, "  settled in {steps} step(s)");

    let erp = deployment.table(Which::Erp);
    let crm = deployment.table(Which::Crm);
    let (_, counters) = engine.counters().into_iter().next().expect("one map");
    let open_errors = engine
        .store()
        .open_error_count(MAP)
        .map_err(|error| error.to_string())?;
    let context = || {
        format!(
            "read limit {read_limit}; history:\n{trace}ERP: {erp:?}\nCRM: {crm:?}\n\
             counters: {counters:?}; open errors: {open_errors}"
        )
    };
    if erp != crm {
        return Err(format!(
            "(a) the sides differ through the map\n{}",
            context()
        ));
    }
    if open_errors != 0 {
        return Err(format!(
            "(a) changes went to the error queue\n{}",
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
    if written > logical_changes {
        return Err(format!(
            "(b) echo amplification: {written} rows written for {logical_changes} logical \
             change(s)\n{}",
            context()
        ));
    }
    let logs = (
        deployment.change_log_len(Which::Erp),
        deployment.change_log_len(Which::Crm),
    );
    if logs != (0, 0) {
        return Err(format!(
            "(c) change logs not empty after settling (erp, crm) = {logs:?}\n{}",
            context()
        ));
    }
    Ok(())
}

/// How many cases each property runs by default (`PROPTEST_CASES` overrides it).
const CASES: u32 = 32;

/// The property in full: concurrent edits of the same rows on both sides, batches of
/// any size.
#[test]
fn random_concurrent_edits_on_both_sides_converge_without_echo() {
    run_property(CASES, &[1, 2, 3, 5_000], |ops, read_limit| {
        check_history(ops, read_limit, false)
    });
}

/// The same histories without what the full property adds: a row is never edited on
/// both sides between two settles, and every batch holds one change. Guards the plain
/// paths (inserts, field-level updates, deletes, keys reused, no echo, logs purged).
#[test]
fn random_edits_one_side_at_a_time_converge_without_echo() {
    run_property(CASES, &[1], |ops, read_limit| {
        check_history(ops, read_limit, true)
    });
}

/// Checks a fixed history with whole batches and with one change per batch.
fn replay(ops: &[Op]) {
    for read_limit in [5_000, 1] {
        if let Err(failure) = check_history(ops, read_limit, false) {
            panic!("{failure}");
        }
    }
}

// Minimized histories. Indexes: key 0 is (USMF, 10); descriptions 0..4 are NULL,
// Wholesale, Retail, Export; tax flags 0..3 are NULL, no, yes. With side-wins ERP the
// expected outcome of a conflict is the ERP side's version on both sides.

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

/// A description changed and changed back within one batch. Expected: both hold the
/// original (Wholesale).
#[test]
fn regression_an_update_and_its_undo_in_one_batch() {
    replay(&[
        write(Which::Erp, 0, 1, 2),
        Op::Step,
        describe(Which::Erp, 0, 2),
        describe(Which::Erp, 0, 1),
    ]);
}

/// A synced row deleted and inserted again with the same values, in one batch.
/// Expected: both hold it.
#[test]
fn regression_a_delete_and_the_same_row_inserted_again_in_one_batch() {
    replay(&[
        write(Which::Erp, 0, 1, 2),
        Op::Step,
        delete(Which::Erp, 0),
        write(Which::Erp, 0, 1, 2),
    ]);
}

/// A synced row (NULL, no) deleted, inserted again as (NULL, NULL) and set back to
/// (NULL, no), in one batch. Expected: both hold (NULL, no).
#[test]
fn regression_a_delete_then_the_row_inserted_again_and_restored_in_one_batch() {
    replay(&[
        write(Which::Erp, 0, 0, 1),
        Op::Step,
        delete(Which::Erp, 0),
        write(Which::Erp, 0, 0, 0),
        tax(Which::Erp, 0, 1),
    ]);
}

/// The ERP deletes a synced row while the CRM changes its description. Expected: the
/// ERP's delete wins, the row is gone from both.
#[test]
fn regression_a_delete_on_the_erp_side_and_an_update_on_the_crm_side() {
    replay(&[
        write(Which::Erp, 0, 1, 2),
        Op::Step,
        delete(Which::Erp, 0),
        describe(Which::Crm, 0, 3),
    ]);
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

/// Both sides insert the same key, then the ERP deletes it, all before a step.
/// Expected: the row is gone from both (the ERP's delete is the last word).
#[test]
fn regression_an_insert_older_than_the_other_sides_delete() {
    replay(&[
        write(Which::Crm, 0, 0, 0),
        write(Which::Erp, 0, 0, 0),
        delete(Which::Erp, 0),
    ]);
}

/// See [`histories::a_lost_conflict_whose_winner_matches_in_the_fields_it_changed`].
#[test]
fn regression_a_lost_conflict_whose_winner_matches_in_the_fields_it_changed() {
    replay(&histories::a_lost_conflict_whose_winner_matches_in_the_fields_it_changed());
}
