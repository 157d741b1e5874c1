//! Convergence across value kinds on columns that normalize, on the machine's database
//! servers: the property of `convergence_kinds.rs` (same histories, see
//! [`dualwrite_tests::convergence::kinds`]) with the ERP's `items` on PostgreSQL and the
//! CRM's `products` on MariaDB, each case in databases of its own (dropped at its end).
//! Each side has columns that normalize what they are given, most of them what the other
//! side sends:
//!
//! | field | ERP (PostgreSQL) | CRM (MariaDB) |
//! |---|---|---|
//! | price | `numeric(10,2)`: `12.5` -> `12.50` | `DECIMAL(10,2)`: `12.5` -> `12.50` |
//! | qty | `numeric`: the digits as written | `decimal(12,4)`: `12.5` -> `12.5000` |
//! | code | `char(5)`: padded with spaces | `varchar(5)`: as written |
//! | grade | `varchar(5)`: as written | `CHAR(5)`: trailing spaces cut when read |
//! | stamp | `timestamp(0)`: whole seconds (rounded) | `datetime(3)`: milliseconds |
//!
//! A column copied both ways has the same declared limits on both sides, or none on one:
//! the engine refuses a map that copies into a column keeping fewer digits, fraction
//! digits or characters than its source (`schema.lossy_column`), so `numeric(10,2)` <->
//! `decimal(12,4)` cannot be a line of it.
//!
//! Steps wait for the streamed capture of what the test committed, and the end settles
//! until quiet steps and both tables the same by meaning, or fails after 60 s
//! ([`dualwrite_tests::convergence::engine`]). What it shows, for every generated
//! history:
//! - (a) **convergence by meaning**: both tables hold the same keys, and each row the
//!   same values by meaning for the columns ([`Columns::same`]: decimals by value,
//!   trailing spaces ignored in or out of a `CHAR(5)`, timestamps less than a second
//!   apart, the coarser column being `timestamp(0)`);
//! - (b) **nothing refused**: no change went to the error queue (the map's `errors`
//!   counter is 0, the error queue empty) and none is left in the map's queue;
//! - (c) **no lost edit**: every key whose changes all came from one side holds that
//!   side's last stored row (read back right after the edit) on both sides, by meaning,
//!   or is absent from both after a delete.
//!
//! `random_edits_of_normalizing_columns_keep_every_one_sided_last_write_on_servers` runs
//! 12 cases (`PROPTEST_CASES` overrides it; `PROPTEST_RNG_SEED` fixes the seed).

use std::fmt::Write as _;
use std::time::Duration;

use dualwrite::config;
use dualwrite::sync::{Engine, EngineOptions};
use dualwrite_tests::convergence::engine::{
    Made, counters, runtime, settle_streamed, step_after_capture,
};
use dualwrite_tests::convergence::kinds::{
    Columns, FIELDS, Field, Item, KEYS, MAP, Op, Table, Tables, Text, edit, items_map, op_strategy,
};
use dualwrite_tests::convergence::oracle::EditLog;
use dualwrite_tests::convergence::{Which, run_histories};
use dualwrite_tests::plugins_dir;
use dualwrite_tests::servers::{MyDatabase, PgDatabase, ensure_ready};
use mysql::prelude::Queryable as _;

const PG_ERP_TABLE: &str = "CREATE TABLE items (item_no text PRIMARY KEY, descr text,
    price numeric(10,2), qty numeric, code char(5), grade varchar(5), stamp timestamp(0))";

const MARIADB_CRM_TABLE: &str = "CREATE TABLE products (sku varchar(20) PRIMARY KEY,
    title text, amount DECIMAL(10,2), quantity decimal(12,4), code varchar(5),
    grade CHAR(5), stamp datetime(3))";

/// What the ERP's columns keep.
const ERP_COLUMNS: Columns = Columns {
    code: Text::Padded,
    grade: Text::Exact,
    stamp_digits: 0,
};

/// What the CRM's columns keep.
const CRM_COLUMNS: Columns = Columns {
    code: Text::Exact,
    grade: Text::Padded,
    stamp_digits: 3,
};

fn columns(side: Which) -> &'static Columns {
    match side {
        Which::Erp => &ERP_COLUMNS,
        Which::Crm => &CRM_COLUMNS,
    }
}

/// How many cases the property runs by default (`PROPTEST_CASES` overrides it).
const CASES: u32 = 12;

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
        let erp_db = PgDatabase::create("kinds_erp");
        let crm_db = MyDatabase::create("kinds_crm");
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
{map}"#,
            plugins = plugins_dir().display().to_string(),
            erp = self.erp_db.url,
            crm = self.crm_db.url,
            map = items_map(&FIELDS),
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

/// The ERP's fields as text in [`FIELDS`] order: `char(5)` as stored (padded; a cast
/// to text would cut the spaces), decimals and the timestamp as PostgreSQL prints them.
const PG_SELECT: &str = "descr, price::text, qty::text, code, grade, stamp::text";

/// The CRM's fields as text in [`FIELDS`] order, as MariaDB prints them.
const MARIADB_SELECT: &str = "title, CAST(amount AS CHAR), CAST(quantity AS CHAR), code, \
    grade, CAST(stamp AS CHAR)";

/// The placeholder of `field`'s value in PostgreSQL: text cast to the column's type
/// (the column then keeps it its own way, as for an application's write).
fn pg_placeholder(field: Field, at: usize) -> String {
    match field {
        Field::Price | Field::Qty => format!("${at}::text::numeric"),
        Field::Stamp => format!("${at}::text::timestamp"),
        Field::Descr | Field::Code | Field::Grade => format!("${at}"),
    }
}

fn pg_item(row: &postgres::Row, first: usize) -> Item {
    Item {
        descr: row.get(first),
        price: row.get(first + 1),
        qty: row.get(first + 2),
        code: row.get(first + 3),
        grade: row.get(first + 4),
        stamp: row.get(first + 5),
    }
}

type MariadbRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn mariadb_item((descr, price, qty, code, grade, stamp): MariadbRow) -> Item {
    Item {
        descr,
        price,
        qty,
        code,
        grade,
        stamp,
    }
}

impl Tables for Deployment {
    fn columns(&self, side: Which) -> Columns {
        *columns(side)
    }

    fn row(&mut self, side: Which, key: usize) -> Option<Item> {
        match side {
            Which::Erp => self
                .erp
                .query_opt(
                    &format!("SELECT {PG_SELECT} FROM items WHERE item_no = $1"),
                    &[&KEYS[key]],
                )
                .expect("read ERP row")
                .map(|row| pg_item(&row, 0)),
            Which::Crm => self
                .crm
                .exec_first::<MariadbRow, _, _>(
                    format!("SELECT {MARIADB_SELECT} FROM products WHERE sku = ?"),
                    (KEYS[key],),
                )
                .expect("read CRM row")
                .map(mariadb_item),
        }
    }

    fn table(&mut self, side: Which) -> Table {
        match side {
            Which::Erp => self
                .erp
                .query(&format!("SELECT item_no, {PG_SELECT} FROM items"), &[])
                .expect("read ERP table")
                .into_iter()
                .map(|row| (row.get(0), pg_item(&row, 1)))
                .collect(),
            Which::Crm => {
                let rows: Vec<mysql::Row> = self
                    .crm
                    .query(format!("SELECT sku, {MARIADB_SELECT} FROM products"))
                    .expect("read CRM table");
                rows.into_iter()
                    .map(|mut row| {
                        let sku: String = row.take(0).expect("sku");
                        let field = |row: &mut mysql::Row, at: usize| -> Option<String> {
                            row.take(at).expect("field")
                        };
                        let item = Item {
                            descr: field(&mut row, 1),
                            price: field(&mut row, 2),
                            qty: field(&mut row, 3),
                            code: field(&mut row, 4),
                            grade: field(&mut row, 5),
                            stamp: field(&mut row, 6),
                        };
                        (sku, item)
                    })
                    .collect()
            }
        }
    }

    fn insert(&mut self, side: Which, key: usize, item: &Item) {
        let names: Vec<&str> = FIELDS.iter().map(|field| field.column(side)).collect();
        let values: Vec<Option<&str>> = FIELDS.iter().map(|field| item.get(*field)).collect();
        match side {
            Which::Erp => {
                let placeholders: Vec<String> = FIELDS
                    .iter()
                    .enumerate()
                    .map(|(at, field)| pg_placeholder(*field, at + 2))
                    .collect();
                let sql = format!(
                    "INSERT INTO items (item_no, {}) VALUES ($1, {})",
                    names.join(", "),
                    placeholders.join(", ")
                );
                let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&KEYS[key]];
                params.extend(
                    values
                        .iter()
                        .map(|value| value as &(dyn postgres::types::ToSql + Sync)),
                );
                self.erp.execute(&sql, &params).expect("ERP insert");
            }
            Which::Crm => {
                let sql = format!(
                    "INSERT INTO products (sku, {}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    names.join(", ")
                );
                let params: Vec<mysql::Value> = std::iter::once(Some(KEYS[key]))
                    .chain(values)
                    .map(mysql::Value::from)
                    .collect();
                self.crm.exec_drop(sql, params).expect("CRM insert");
            }
        }
    }

    fn update(&mut self, side: Which, key: usize, fields: &[Field], item: &Item) {
        let values: Vec<Option<&str>> = fields.iter().map(|field| item.get(*field)).collect();
        match side {
            Which::Erp => {
                let set: Vec<String> = fields
                    .iter()
                    .enumerate()
                    .map(|(at, field)| {
                        format!(
                            "{} = {}",
                            field.column(side),
                            pg_placeholder(*field, at + 2)
                        )
                    })
                    .collect();
                let sql = format!("UPDATE items SET {} WHERE item_no = $1", set.join(", "));
                let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&KEYS[key]];
                params.extend(
                    values
                        .iter()
                        .map(|value| value as &(dyn postgres::types::ToSql + Sync)),
                );
                self.erp.execute(&sql, &params).expect("ERP update");
            }
            Which::Crm => {
                let set: Vec<String> = fields
                    .iter()
                    .map(|field| format!("{} = ?", field.column(side)))
                    .collect();
                let sql = format!("UPDATE products SET {} WHERE sku = ?", set.join(", "));
                let params: Vec<mysql::Value> = values
                    .into_iter()
                    .chain(std::iter::once(Some(KEYS[key])))
                    .map(mysql::Value::from)
                    .collect();
                self.crm.exec_drop(sql, params).expect("CRM update");
            }
        }
    }

    fn delete(&mut self, side: Which, key: usize) -> bool {
        match side {
            Which::Erp => {
                self.erp
                    .execute("DELETE FROM items WHERE item_no = $1", &[&KEYS[key]])
                    .expect("ERP delete")
                    > 0
            }
            Which::Crm => {
                self.crm
                    .exec_drop("DELETE FROM products WHERE sku = ?", (KEYS[key],))
                    .expect("CRM delete");
                self.crm.affected_rows() > 0
            }
        }
    }
}

/// Runs one history and checks the three properties; the error describes what broke.
fn check_history(ops: &[Op], read_limit: usize) -> Result<(), String> {
    let mut deployment = Deployment::new();
    let mut engine = deployment.engine(read_limit);
    let mut made = Made::default();
    let mut trace = String::new();
    let mut log = EditLog::new();
    let outcome = (|| {
        for op in ops {
            if let Op::Write { side, key, .. } | Op::Delete { side, key } = *op {
                let done = edit(&mut deployment, op);
                made.add(side, done.changed, done.touched);
                let note = if done.changed {
                    ""
                } else if done.touched {
                    " (changed nothing)"
                } else {
                    " (wrote nothing)"
                };
                let _ = writeln!(trace, "  {}{note} -> {:?}", done.what, done.stored);
                log.record(key, side, done.what, done.stored, done.changed);
            } else {
                let reports = step_after_capture(&mut engine, MAP, &made)?;
                let _ = writeln!(trace, "  step: {reports:?}");
            }
        }
        let steps = settle_streamed(&mut engine, MAP, &made, || deployment.converged())?;
        let _ = writeln!(trace, "  settled in {steps} step(s)");
        Ok::<(), String>(())
    })();
    let counters = counters(&engine, MAP);
    let open_errors = engine
        .store()
        .open_error_count(MAP)
        .map_err(|error| error.to_string())?;
    let queued = engine.queued_changes(MAP);
    let context = || {
        format!(
            "read limit {read_limit}; history:\n{trace}made: {made:?}\ncounters: {counters:?}; \
             open errors: {open_errors}; queued: {queued:?}"
        )
    };
    if let Err(failure) = outcome {
        return Err(format!("{failure}\n{}", context()));
    }
    if let Err(tables) = deployment.converged() {
        return Err(format!(
            "(a) the sides differ by meaning\n{tables}\n{}",
            context()
        ));
    }
    if open_errors != 0 || counters.errors != 0 || queued != Some(0) {
        return Err(format!(
            "(b) changes went to the error queue or are still queued\n{}",
            context()
        ));
    }
    if let Err(lost) = log.check_one_sided(
        |key| KEYS[key].to_owned(),
        |side, key| deployment.row(side, key),
        |a_side, a, b_side, b| columns(a_side).same(a, columns(b_side), b),
    ) {
        return Err(format!(
            "(c) a key edited on one side only does not hold that side's last write:\n\
             {lost}{}",
            context()
        ));
    }
    Ok(())
}

/// The property on the servers: concurrent edits of normalizing columns on both sides,
/// batches of any size; every one-sided last write survives.
#[test]
fn random_edits_of_normalizing_columns_keep_every_one_sided_last_write_on_servers() {
    run_histories(
        CASES,
        op_strategy(),
        8..64,
        &[1, 2, 3, 5_000],
        check_history,
    );
}
