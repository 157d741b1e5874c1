//! Columns that normalize what they are given, on the machine's database servers (issue
//! 14, item 1): the reproductions of `normalizing_columns.rs` with the ERP's `items` on
//! PostgreSQL and the CRM's `products` on MariaDB, each test in databases of its own.
//!
//! | field | ERP (PostgreSQL) | CRM (MariaDB) | map line |
//! |---|---|---|---|
//! | descr / title | `text` | `text` | both ways |
//! | price / amount | `numeric(10,2)`: `12.5` -> `12.50` | `decimal(9,1)` | to the ERP |
//! | code | `char(5)`: padded with spaces | `text` | both ways |
//! | grade | `varchar(5)` | `text` | both ways |
//! | stamp | `timestamp(0)`: `.678` -> the next second | `datetime(3)` | both ways |
//!
//! The engine refuses a map that copies into a column whose declared type keeps fewer
//! digits, fraction digits or characters than its source's (`schema.lossy_column`): the
//! amount goes to the ERP only (`numeric(10,2)` into `decimal(9,1)` would drop a digit),
//! and the CRM's texts have no declared length, so a text too long for the ERP is caught
//! when it is written.
//!
//! What each side stored is the truth of that side: a value that means the same in the
//! column is no change, so a CRM edit after a normalized value arrived is no conflict
//! and is kept, and an ERP edit of another field does not write the normalized values
//! back over the CRM's. Text longer than the ERP's `char(5)`/`varchar(5)` is refused
//! (error queue, `target-rejected`, naming the column and the value), never stored
//! altered.

use std::time::Duration;

use dualwrite::change::ErrorClass;
use dualwrite::config;
use dualwrite::state::{ErrorEntry, ErrorQuery};
use dualwrite::sync::{Engine, EngineOptions};
use dualwrite_tests::convergence::Which;
use dualwrite_tests::convergence::engine::{
    Made, counters, runtime, settle_streamed, step_after_capture,
};
use dualwrite_tests::convergence::kinds::{Field, MAP, items_map_with};
use dualwrite_tests::plugins_dir;
use dualwrite_tests::servers::{MyDatabase, PgDatabase, ensure_ready};

const PG_ERP_TABLE: &str = "CREATE TABLE items (item_no text PRIMARY KEY, descr text,
    price numeric(10,2), code char(5), grade varchar(5), stamp timestamp(0))";

const MARIADB_CRM_TABLE: &str = "CREATE TABLE products (sku varchar(20) PRIMARY KEY,
    title text, amount decimal(9,1), code text, grade text, stamp datetime(3))";

/// The ERP's fields as text: `char(5)` as stored (padded), the others as printed.
const PG_SELECT: &str = "descr, price::text, code, grade, stamp::text";

/// The CRM's fields as text, as MariaDB prints them.
const MARIADB_SELECT: &str = "title, CAST(amount AS CHAR), code, grade, CAST(stamp AS CHAR)";

/// A row's (descr/title, price/amount, code, grade, stamp) as the side prints them.
type Row = [Option<String>; 5];

/// A PostgreSQL ERP database holding rows A and B, a MariaDB CRM database, and an
/// engine whose initial sync copied the rows to the CRM.
struct Deployment {
    // Fields drop in order: the engine and connections before their databases.
    engine: Engine,
    erp: postgres::Client,
    crm: mysql::Conn,
    made: Made,
    _dir: tempfile::TempDir,
    _erp_db: PgDatabase,
    _crm_db: MyDatabase,
}

impl Deployment {
    fn new() -> Deployment {
        ensure_ready();
        let erp_db = PgDatabase::create("norm_erp");
        let crm_db = MyDatabase::create("norm_crm");
        let mut erp = erp_db.client();
        erp.batch_execute(PG_ERP_TABLE).expect("ERP table");
        erp.batch_execute(
            "INSERT INTO items VALUES
                ('A', 'Widget', 10, 'AB', 'g1', '2024-03-01 10:00:00'),
                ('B', 'Gadget', 20.5, 'CD', 'g2', '2024-03-01 11:00:00')",
        )
        .expect("ERP rows");
        crm_db.exec(MARIADB_CRM_TABLE);
        let crm = crm_db.conn();
        let dir = tempfile::tempdir().expect("tempdir");
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
            erp = erp_db.url,
            crm = crm_db.url,
            map = items_map_with(&[
                (Field::Descr, "both"),
                (Field::Price, "to-erp"),
                (Field::Code, "both"),
                (Field::Grade, "both"),
                (Field::Stamp, "both"),
            ]),
        );
        let plan = config::parse(&text, "test.toml", dir.path()).expect("valid config");
        let mut engine = Engine::open(
            &plan,
            runtime(),
            EngineOptions {
                idle_wait: Duration::from_millis(100),
                min_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(100),
                ..EngineOptions::default()
            },
        )
        .expect("engine opens");
        engine
            .initial_sync(MAP, 100, "test", &mut |_| {})
            .expect("initial sync");
        let mut deployment = Deployment {
            engine,
            erp,
            crm,
            made: Made::default(),
            _dir: dir,
            _erp_db: erp_db,
            _crm_db: crm_db,
        };
        assert_eq!(
            without_padding(deployment.crm_row("A")),
            row("Widget", None, "AB", "g1", "2024-03-01 10:00:00.000"),
            "the initial sync copied row A (but its price, which goes to the ERP only)"
        );
        deployment
    }

    /// Runs `sql` on the ERP; it changes `rows` rows.
    fn erp_execute(&mut self, sql: &str, rows: u64) {
        let changed = self.erp.execute(sql, &[]).expect("ERP statement");
        assert_eq!(changed, rows, "{sql}");
        self.made.changed[Which::Erp as usize] += rows;
    }

    /// Runs `sql` on the CRM; it changes `rows` rows.
    fn crm_execute(&mut self, sql: &str, rows: u64) {
        use mysql::prelude::Queryable as _;
        self.crm.query_drop(sql).expect("CRM statement");
        assert_eq!(self.crm.affected_rows(), rows, "{sql}");
        self.made.changed[Which::Crm as usize] += rows;
    }

    /// Steps until the engine captured every change made, then until it is quiet.
    fn sync(&mut self) {
        step_after_capture(&mut self.engine, MAP, &self.made).expect("changes captured");
        settle_streamed(&mut self.engine, MAP, &self.made, || Ok(())).expect("settled");
    }

    fn erp_row(&mut self, key: &str) -> Row {
        let row = self
            .erp
            .query_one(
                &format!("SELECT {PG_SELECT} FROM items WHERE item_no = $1"),
                &[&key],
            )
            .expect("ERP row");
        [0, 1, 2, 3, 4].map(|at| row.get(at))
    }

    fn crm_row(&mut self, key: &str) -> Row {
        use mysql::prelude::Queryable as _;
        let (title, amount, code, grade, stamp) = self
            .crm
            .exec_first(
                format!("SELECT {MARIADB_SELECT} FROM products WHERE sku = ?"),
                (key,),
            )
            .expect("CRM row")
            .expect("the CRM holds the row");
        [title, amount, code, grade, stamp]
    }

    fn conflicts(&self) -> u64 {
        counters(&self.engine, MAP).conflicts
    }

    fn open_errors(&self) -> Vec<ErrorEntry> {
        self.engine
            .store()
            .errors(&ErrorQuery {
                map: Some(MAP.to_owned()),
                ..ErrorQuery::default()
            })
            .expect("error queue")
    }
}

fn row(descr: &str, price: Option<&str>, code: &str, grade: &str, stamp: &str) -> Row {
    [Some(descr), price, Some(code), Some(grade), Some(stamp)].map(|value| value.map(str::to_owned))
}

/// `row` with its code's trailing spaces cut: a code that came from the ERP's `char(5)`
/// may reach the CRM padded or not, the same code either way.
fn without_padding(mut row: Row) -> Row {
    if let Some(code) = &mut row[2] {
        code.truncate(code.trim_end_matches(' ').len());
    }
    row
}

/// The issue's reproduction on the servers: the CRM writes amount '12.5' on row A (the
/// ERP's `numeric(10,2)` stores 12.50), then edits row A's title. Was: the ERP's 12.50
/// is not the 12.5 the engine wrote, so the title edit was a conflict the ERP won and
/// the CRM's title was lost.
#[test]
fn a_crm_edit_after_a_normalized_amount_is_kept_without_a_conflict_on_servers() {
    let mut deployment = Deployment::new();
    deployment.crm_execute("UPDATE products SET amount = '12.5' WHERE sku = 'A'", 1);
    deployment.sync();
    assert_eq!(deployment.crm_row("A")[1].as_deref(), Some("12.5"));
    assert_eq!(deployment.erp_row("A")[1].as_deref(), Some("12.50"));

    deployment.crm_execute("UPDATE products SET title = 'Widget XL' WHERE sku = 'A'", 1);
    deployment.sync();
    assert_eq!(
        without_padding(deployment.crm_row("A")),
        row(
            "Widget XL",
            Some("12.5"),
            "AB",
            "g1",
            "2024-03-01 10:00:00.000"
        ),
        "the CRM keeps its title"
    );
    assert_eq!(
        deployment.erp_row("A"),
        row(
            "Widget XL",
            Some("12.50"),
            "AB   ",
            "g1",
            "2024-03-01 10:00:00"
        ),
        "the ERP holds the CRM's title"
    );
    assert_eq!(deployment.conflicts(), 0, "no conflict was counted");
    assert_eq!(deployment.open_errors(), [], "nothing in the error queue");
}

/// The flow-back on the servers: the CRM writes code 'AB' and a timestamp with
/// milliseconds on row A (PostgreSQL stores 'AB   ' and the next whole second), then
/// the ERP edits row A's description. Only the description reaches the CRM: its code
/// and milliseconds stay as the CRM wrote them.
#[test]
fn an_erp_edit_does_not_rewrite_the_crms_code_and_milliseconds_on_servers() {
    let mut deployment = Deployment::new();
    deployment.crm_execute(
        "UPDATE products SET code = 'AB', stamp = '2024-03-01 10:00:05.678' WHERE sku = 'A'",
        1,
    );
    deployment.sync();
    assert_eq!(
        deployment.erp_row("A"),
        row(
            "Widget",
            Some("10.00"),
            "AB   ",
            "g1",
            "2024-03-01 10:00:06"
        ),
        "char(5) pads, timestamp(0) rounds"
    );

    deployment.erp_execute(
        "UPDATE items SET descr = 'Widget XL' WHERE item_no = 'A'",
        1,
    );
    deployment.sync();
    assert_eq!(
        deployment.crm_row("A"),
        row("Widget XL", None, "AB", "g1", "2024-03-01 10:00:05.678"),
        "the ERP's description arrived; the CRM's code and stamp are as the CRM wrote them"
    );
    assert_eq!(deployment.conflicts(), 0, "no conflict was counted");
    assert_eq!(deployment.open_errors(), [], "nothing in the error queue");
}

/// Text longer than the ERP's `char(5)` (row A's code) or `varchar(5)` (row B's grade)
/// written on the CRM is refused: one error per row in the map's queue,
/// `target-rejected`, whose message names the column and the value; no row changes.
#[test]
fn text_longer_than_the_erp_column_goes_to_the_error_queue_on_servers() {
    let mut deployment = Deployment::new();
    deployment.crm_execute("UPDATE products SET code = 'ABCDEFG' WHERE sku = 'A'", 1);
    deployment.crm_execute("UPDATE products SET grade = 'TOOLONG' WHERE sku = 'B'", 1);
    deployment.sync();

    let errors = deployment.open_errors();
    assert_eq!(errors.len(), 2, "two refused writes: {errors:#?}");
    for (column, value) in [("code", "ABCDEFG"), ("grade", "TOOLONG")] {
        let error = &errors
            .iter()
            .find(|entry| entry.error.message.contains(value))
            .unwrap_or_else(|| panic!("an error names {value:?}: {errors:#?}"))
            .error;
        assert_eq!(error.class, ErrorClass::TargetRejected, "{error:?}");
        assert!(
            error.message.contains(column),
            "names the column: {error:?}"
        );
    }
    assert_eq!(
        deployment.erp_row("A"),
        row(
            "Widget",
            Some("10.00"),
            "AB   ",
            "g1",
            "2024-03-01 10:00:00"
        ),
        "ERP row A is untouched"
    );
    assert_eq!(
        deployment.erp_row("B"),
        row(
            "Gadget",
            Some("20.50"),
            "CD   ",
            "g2",
            "2024-03-01 11:00:00"
        ),
        "ERP row B is untouched"
    );
    assert_eq!(deployment.crm_row("A")[2].as_deref(), Some("ABCDEFG"));
    assert_eq!(deployment.crm_row("B")[3].as_deref(), Some("TOOLONG"));
}
