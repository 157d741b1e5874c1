//! Convergence across value kinds on columns that normalize, between two SQLite files.
//!
//! A property test (proptest) drives a declarative map (`declarative.wasm`, ERP wins
//! conflicts) between the ERP's `items` and the CRM's `products` (the reproduction
//! tables of issue 14, extended), whose columns keep some values otherwise than they
//! are written:
//! - ERP `price NUMERIC` keeps `'12.50'` as the real 12.5 and `'100.00'` as the integer
//!   100; CRM `amount TEXT DECIMAL(38,10)` keeps the text as written;
//! - ERP `qty TEXT DECIMAL(38,10)` keeps the text; CRM `quantity DECIMAL(10,2)` keeps a
//!   number (read back padded to 2 digits: `'12.5'` -> `12.50`, `'7'` -> `7.00`);
//! - `stamp` is `DATETIME` on the ERP and `TEXT TIMESTAMP` on the CRM: written with a
//!   `T` or a space, read as the same instant;
//! - `descr`/`title`, `code` and `grade` are text.
//!
//! Random inserts, updates of one field or several, and deletes on both sides, on a
//! pool of 10 keys (many keys end up edited on one side only, some on both), with
//! values both sides hold by meaning ([`dualwrite_tests::convergence::kinds`]), engine
//! steps at random points and a random read limit; then the engine settles. What it
//! shows, for every generated history:
//! - (a) **convergence by meaning**: both tables hold the same keys, and each row the
//!   same values by meaning for the columns ([`Columns::same`]: decimals by value, the
//!   same instant);
//! - (b) **nothing refused**: no change went to the error queue;
//! - (c) **no lost edit**: every key whose changes all came from one side holds that
//!   side's last stored row (read back right after the edit) on both sides, by meaning,
//!   or is absent from both after a delete. A normalized value the engine takes for a
//!   change breaks this: the row then looks changed on that side forever, the other
//!   side's next edit becomes a conflict the ERP wins, and the CRM's edit is lost; or
//!   the normalized value flows back over what the other side stored.
//!
//! `random_edits_of_normalizing_columns_keep_every_one_sided_last_write` runs 24 cases
//! (`PROPTEST_CASES` overrides it; `PROPTEST_RNG_SEED` fixes the seed).

use std::fmt::Write as _;
use std::time::Duration;

use dualwrite::config;
use dualwrite::sync::{Engine, EngineOptions};
use dualwrite_tests::convergence::engine::{counters, runtime, settle};
use dualwrite_tests::convergence::kinds::{
    Columns, FIELDS, Field, Item, KEYS, MAP, Op, Table, Tables, Text, edit, items_map, op_strategy,
};
use dualwrite_tests::convergence::oracle::EditLog;
use dualwrite_tests::convergence::{Which, run_histories};
use dualwrite_tests::plugins_dir;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension as _, params_from_iter};

const ERP_TABLE: &str = "CREATE TABLE items (item_no TEXT PRIMARY KEY, descr TEXT,
    price NUMERIC, qty TEXT DECIMAL(38,10), code TEXT, grade TEXT, stamp DATETIME)";

const CRM_TABLE: &str = "CREATE TABLE products (sku TEXT PRIMARY KEY, title TEXT,
    amount TEXT DECIMAL(38,10), quantity DECIMAL(10,2), code TEXT, grade TEXT,
    stamp TEXT TIMESTAMP)";

/// SQLite keeps text as written and timestamps as the text written: every column is
/// exact but for the decimals (compared by value in any case).
const COLUMNS: Columns = Columns {
    code: Text::Exact,
    grade: Text::Exact,
    stamp_digits: 9,
};

/// How many cases the property runs by default (`PROPTEST_CASES` overrides it).
const CASES: u32 = 24;

/// Two SQLite files, a connection to each (the "applications"), and the engine's folder.
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

    fn engine(&self, read_limit: usize) -> Engine {
        let text = format!(
            r#"
data_dir = "state"
plugins_dir = {plugins:?}

[sides.erp]
connector = "sqlite"
path = "erp.db"

[sides.crm]
connector = "sqlite"
path = "crm.db"
{map}"#,
            plugins = plugins_dir().display().to_string(),
            map = items_map(&FIELDS),
        );
        let plan = config::parse(&text, "test.toml", self.dir.path()).expect("valid config");
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
}

/// The table and key column of `side`.
fn table_of(side: Which) -> (&'static str, &'static str) {
    match side {
        Which::Erp => ("items", "item_no"),
        Which::Crm => ("products", "sku"),
    }
}

/// The columns of `side` in [`FIELDS`] order, for a SELECT.
fn select_list(side: Which) -> String {
    FIELDS
        .iter()
        .map(|field| field.column(side))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A stored value as text: a number as SQLite prints it (what NUMERIC affinity made of
/// the text), text as stored.
fn text_of(value: SqlValue) -> Option<String> {
    match value {
        SqlValue::Null => None,
        SqlValue::Integer(integer) => Some(integer.to_string()),
        SqlValue::Real(real) => Some(format!("{real}")),
        SqlValue::Text(text) => Some(text),
        SqlValue::Blob(bytes) => panic!("a blob where text or a number was written: {bytes:?}"),
    }
}

fn item_of(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Item> {
    let text = |at: usize| row.get::<_, SqlValue>(first + at).map(text_of);
    Ok(Item {
        descr: text(0)?,
        price: text(1)?,
        qty: text(2)?,
        code: text(3)?,
        grade: text(4)?,
        stamp: text(5)?,
    })
}

impl Tables for Deployment {
    fn columns(&self, _side: Which) -> Columns {
        COLUMNS
    }

    fn row(&mut self, side: Which, key: usize) -> Option<Item> {
        let (table, key_column) = table_of(side);
        let sql = format!(
            "SELECT {} FROM {table} WHERE {key_column} = ?1",
            select_list(side)
        );
        self.connection(side)
            .query_row(&sql, [KEYS[key]], |row| item_of(row, 0))
            .optional()
            .expect("read row")
    }

    fn table(&mut self, side: Which) -> Table {
        let (table, key_column) = table_of(side);
        let sql = format!("SELECT {key_column}, {} FROM {table}", select_list(side));
        let db = self.connection(side);
        let mut statement = db.prepare(&sql).expect("prepare");
        statement
            .query_map([], |row| Ok((row.get(0)?, item_of(row, 1)?)))
            .expect("query")
            .collect::<Result<Table, _>>()
            .expect("rows")
    }

    fn insert(&mut self, side: Which, key: usize, item: &Item) {
        let (table, key_column) = table_of(side);
        let sql = format!(
            "INSERT INTO {table} ({key_column}, {}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            select_list(side)
        );
        let values = std::iter::once(Some(KEYS[key])).chain(FIELDS.map(|field| item.get(field)));
        self.connection(side)
            .execute(&sql, params_from_iter(values))
            .expect("insert");
    }

    fn update(&mut self, side: Which, key: usize, fields: &[Field], item: &Item) {
        let (table, key_column) = table_of(side);
        let set: Vec<String> = fields
            .iter()
            .enumerate()
            .map(|(at, field)| format!("{} = ?{}", field.column(side), at + 2))
            .collect();
        let sql = format!(
            "UPDATE {table} SET {} WHERE {key_column} = ?1",
            set.join(", ")
        );
        let values =
            std::iter::once(Some(KEYS[key])).chain(fields.iter().map(|field| item.get(*field)));
        self.connection(side)
            .execute(&sql, params_from_iter(values))
            .expect("update");
    }

    fn delete(&mut self, side: Which, key: usize) -> bool {
        let (table, key_column) = table_of(side);
        self.connection(side)
            .execute(
                &format!("DELETE FROM {table} WHERE {key_column} = ?1"),
                [KEYS[key]],
            )
            .expect("delete")
            > 0
    }
}

/// Runs one history and checks the three properties; the error describes what broke.
fn check_history(ops: &[Op], read_limit: usize) -> Result<(), String> {
    let mut deployment = Deployment::new();
    let mut engine = deployment.engine(read_limit);
    let mut trace = String::new();
    let mut log = EditLog::new();
    for op in ops {
        if let Op::Write { side, key, .. } | Op::Delete { side, key } = *op {
            let done = edit(&mut deployment, op);
            let note = if done.changed {
                ""
            } else {
                " (changed nothing)"
            };
            let _ = writeln!(trace, "  {}{note} -> {:?}", done.what, done.stored);
            log.record(key, side, done.what, done.stored, done.changed);
        } else {
            let report = engine
                .step()
                .map_err(|error| format!("step failed: {error:#}"))?;
            let _ = writeln!(trace, "  step: {report:?}");
        }
    }
    let steps = settle(&mut engine)?;
    let _ = writeln!(trace, "  settled in {steps} step(s)");

    let converged = deployment.converged();
    let counters = counters(&engine, MAP);
    let open_errors = engine
        .store()
        .open_error_count(MAP)
        .map_err(|error| error.to_string())?;
    let context = || {
        format!(
            "read limit {read_limit}; history:\n{trace}counters: {counters:?}; open errors: \
             {open_errors}"
        )
    };
    if let Err(tables) = converged {
        return Err(format!(
            "(a) the sides differ by meaning\n{tables}\n{}",
            context()
        ));
    }
    if open_errors != 0 || counters.errors != 0 {
        return Err(format!(
            "(b) changes went to the error queue\n{}",
            context()
        ));
    }
    if let Err(lost) = log.check_one_sided(
        |key| KEYS[key].to_owned(),
        |side, key| deployment.row(side, key),
        |_, a, _, b| COLUMNS.same(a, &COLUMNS, b),
    ) {
        return Err(format!(
            "(c) a key edited on one side only does not hold that side's last write:\n\
             {lost}{}",
            context()
        ));
    }
    Ok(())
}

/// The property: concurrent edits of normalizing columns on both sides, batches of any
/// size; every one-sided last write survives.
#[test]
fn random_edits_of_normalizing_columns_keep_every_one_sided_last_write() {
    run_histories(
        CASES,
        op_strategy(),
        8..64,
        &[1, 2, 3, 5_000],
        check_history,
    );
}
