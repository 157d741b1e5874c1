//! The MariaDB connector against the machine's real server: binlog capture in commit
//! order with before images, every supported type read without loss (and the same way
//! by capture and by reads), the engine's own writes not captured, a 1,000-row statement
//! captured whole and resumable from inside it, rows logged before an ALTER TABLE, a
//! session killed by the server, and the coded errors for what an operator must fix
//! (server settings included).

use std::sync::{RwLock, RwLockReadGuard};
use std::time::Duration;

use dualwrite::apply::mysql::MysqlWriter;
use dualwrite::apply::{ApplyBatch, RowWrite, WriteEffect};
use dualwrite::capture::mysql::{MysqlCapture, MysqlOptions};
use dualwrite::capture::{
    CaptureStream, CaptureTable, CapturedChange, Position, RowImage, SideError,
};
use dualwrite::change::{ChangeOp, Timestamp, Value};
use dualwrite::config::Secret;
use dualwrite_tests::servers::MyDatabase;

const CUSTOMERS: &str = "CREATE TABLE customers (
    id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, balance DECIMAL(18,2), note TEXT)";

/// Tests that change the server's global settings hold this for writing; every other
/// test holds it for reading, so none of them runs meanwhile.
static SERVER_SETTINGS: RwLock<()> = RwLock::new(());

fn shared_settings() -> RwLockReadGuard<'static, ()> {
    SERVER_SETTINGS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn options(db: &MyDatabase) -> MysqlOptions {
    MysqlOptions::new(db.url.clone(), "side")
}

fn installed(db: &MyDatabase, table: &str) -> MysqlCapture {
    let mut capture = MysqlCapture::open(options(db));
    capture
        .install(&[CaptureTable::new(table, &["id"])])
        .expect("install");
    capture
}

fn row(pairs: &[(&str, Value)]) -> RowImage {
    pairs
        .iter()
        .map(|(column, value)| ((*column).to_owned(), value.clone()))
        .collect()
}

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

/// Reads until `count` changes after `after` arrived (waiting for them), without
/// acknowledging; fails if they do not come within a minute of waiting.
fn read_n(capture: &mut MysqlCapture, after: Position, count: usize) -> Vec<CapturedChange> {
    let mut changes: Vec<CapturedChange> = Vec::new();
    for _ in 0..600 {
        let from = changes.last().map_or(after, |change| change.position);
        let batch = capture.read(from, count - changes.len()).expect("read");
        changes.extend(batch);
        if changes.len() >= count {
            return changes;
        }
        capture
            .wait(
                changes.last().map_or(after, |change| change.position),
                Duration::from_millis(100),
            )
            .expect("wait");
    }
    panic!("only {} of {count} changes arrived", changes.len());
}

/// Reads everything that arrives within half a second after `after`.
fn read_quiet(capture: &mut MysqlCapture, after: Position) -> Vec<CapturedChange> {
    let mut changes: Vec<CapturedChange> = Vec::new();
    loop {
        let from = changes.last().map_or(after, |change| change.position);
        if !capture
            .wait(from, Duration::from_millis(500))
            .expect("wait")
        {
            return changes;
        }
        changes.extend(capture.read(from, 10_000).expect("read"));
    }
}

#[test]
fn inserts_updates_and_deletes_arrive_in_commit_order_with_before_images() {
    let _settings = shared_settings();
    let db = MyDatabase::create("order");
    db.exec(CUSTOMERS);
    let mut capture = installed(&db, "customers");
    db.exec("INSERT INTO customers VALUES (1, 'Ada', 10.50, 'x')");
    db.exec(
        "START TRANSACTION; UPDATE customers SET name = 'Ada L' WHERE id = 1; \
         INSERT INTO customers VALUES (2, 'Bob', NULL, NULL); COMMIT",
    );
    db.exec("DELETE FROM customers WHERE id = 1");
    let changes = read_n(&mut capture, Position::START, 4);
    let ops: Vec<(ChangeOp, i64)> = changes
        .iter()
        .map(|change| match change.key["id"] {
            Value::Integer(id) => (change.op, id),
            ref other => panic!("key {other:?}"),
        })
        .collect();
    assert_eq!(
        ops,
        vec![
            (ChangeOp::Insert, 1),
            (ChangeOp::Update, 1),
            (ChangeOp::Insert, 2),
            (ChangeOp::Delete, 1)
        ]
    );
    // The update and the second insert share one transaction: same sequence, next index.
    assert_eq!(changes[1].position.sequence, changes[2].position.sequence);
    assert_eq!(
        (changes[1].position.index, changes[2].position.index),
        (0, 1)
    );
    assert!(changes[0].position < changes[1].position);
    assert!(changes[2].position < changes[3].position);
    assert_eq!(
        changes[0].after.as_ref().unwrap()["balance"],
        Value::Decimal("10.50".into())
    );
    assert_eq!(changes[1].before.as_ref().unwrap()["name"], text("Ada"));
    assert_eq!(changes[1].changed_columns(), vec!["name"]);
    assert_eq!(changes[3].before.as_ref().unwrap()["note"], text("x"));
    assert!(changes[3].after.is_none());
    assert!(changes[0].committed_at.is_some());

    // Reading after a position skips what came before; after the last there is nothing.
    let rest = capture.read(changes[1].position, 100).unwrap();
    assert_eq!(rest.len(), 2);
    capture.acknowledge(changes[3].position).unwrap();
    assert!(capture.read(changes[3].position, 100).unwrap().is_empty());
    assert!(
        !capture
            .wait(changes[3].position, Duration::from_millis(100))
            .unwrap()
    );
}

#[test]
fn every_type_is_captured_without_loss_and_read_back_the_same() {
    let _settings = shared_settings();
    let db = MyDatabase::create("types");
    db.exec(
        "CREATE TABLE kinds (
            id INT PRIMARY KEY,
            small TINYINT, big BIGINT, positive INT UNSIGNED, huge BIGINT UNSIGNED,
            amount DECIMAL(30,10), ratio FLOAT, precise DOUBLE,
            label VARCHAR(40), body TEXT, flag BOOL,
            local_at DATETIME(6), instant TIMESTAMP(6) NULL, day DATE,
            doc JSON, data BLOB, color ENUM('red','green','blue'), tags SET('a','b','c'),
            duration TIME)",
    );
    let mut capture = installed(&db, "kinds");
    db.exec(
        "SET time_zone = '+00:00'; INSERT INTO kinds VALUES (1, -128, -9223372036854775808, 4294967295, \
         18446744073709551615, -12345678901234567890.0123456789, 0.5, 0.1, \
         'Grüße', 'line\\nbreak', TRUE, '2024-03-01 10:00:00.123456', \
         '2024-03-01 10:00:00.5', '1999-12-31', '{\"a\": [1, 2.5, \"x\"]}', \
         X'00FF10', 'green', 'a,c', '-838:59:59')",
    );
    db.exec("INSERT INTO kinds (id) VALUES (2)");
    let changes = read_n(&mut capture, Position::START, 2);
    let after = changes[0].after.clone().unwrap();
    let expected = row(&[
        ("id", Value::Integer(1)),
        ("small", Value::Integer(-128)),
        ("big", Value::Integer(i64::MIN)),
        ("positive", Value::Integer(4_294_967_295)),
        ("huge", Value::Decimal("18446744073709551615".into())),
        (
            "amount",
            Value::Decimal("-12345678901234567890.0123456789".into()),
        ),
        ("ratio", Value::Float(0.5)),
        ("precise", Value::Float(0.1)),
        ("label", text("Grüße")),
        ("body", text("line\nbreak")),
        ("flag", Value::Boolean(true)),
        (
            "local_at",
            Value::Timestamp(Timestamp {
                seconds: 1_709_287_200,
                nanos: 123_456_000,
                offset_minutes: None,
            }),
        ),
        (
            "instant",
            Value::Timestamp(Timestamp {
                seconds: 1_709_287_200,
                nanos: 500_000_000,
                offset_minutes: Some(0),
            }),
        ),
        ("day", Value::Date(10_956)),
        ("doc", Value::Json("{\"a\": [1, 2.5, \"x\"]}".into())),
        ("data", Value::Bytes(vec![0, 255, 16])),
        ("color", text("green")),
        ("tags", text("a,c")),
        ("duration", text("-838:59:59")),
    ]);
    assert_eq!(after, expected);
    let nulls = changes[1].after.clone().unwrap();
    assert!(
        nulls
            .iter()
            .filter(|(column, _)| *column != "id")
            .all(|(_, value)| *value == Value::Null),
        "{nulls:?}"
    );

    // Reads by key give the same values as the binlog.
    let mut writer = MysqlWriter::open(options(&db));
    let read = writer
        .read_row("kinds", &row(&[("id", Value::Integer(1))]))
        .unwrap()
        .unwrap();
    assert_eq!(read, expected);

    // Written by the engine, the same values land exactly (read back by key).
    let mut fields = expected.clone();
    fields.remove("id");
    let key = row(&[("id", Value::Integer(3))]);
    writer
        .apply(&[RowWrite::upsert("kinds", key.clone(), fields.clone())])
        .unwrap();
    let mut written = writer.read_row("kinds", &key).unwrap().unwrap();
    written.remove("id");
    assert_eq!(written, fields);
    // ... and are not captured.
    assert!(read_quiet(&mut capture, changes[1].position).is_empty());
}

#[test]
fn the_engines_writes_are_not_captured_but_other_writers_are() {
    let _settings = shared_settings();
    let db = MyDatabase::create("echo");
    db.exec(CUSTOMERS);
    let mut capture = installed(&db, "customers");
    let mut writer = MysqlWriter::open(options(&db));
    let write = RowWrite::upsert(
        "customers",
        row(&[("id", Value::Integer(7))]),
        row(&[
            ("name", text("engine")),
            ("balance", Value::Decimal("1.00".into())),
        ]),
    );
    let report = writer.apply(std::slice::from_ref(&write)).unwrap();
    assert_eq!(report.effects, [WriteEffect::Changed]);
    // Redelivered: nothing changes.
    assert_eq!(
        writer.apply(&[write]).unwrap().effects,
        [WriteEffect::Unchanged]
    );
    db.exec("UPDATE customers SET note = 'by the application' WHERE id = 7");
    let deleted = writer
        .apply(&[RowWrite::delete(
            "customers",
            row(&[("id", Value::Integer(99))]),
        )])
        .unwrap();
    assert_eq!(deleted.effects, [WriteEffect::Unchanged]);
    let changes = read_quiet(&mut capture, Position::START);
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].op, ChangeOp::Update);
    assert_eq!(
        changes[0].after.as_ref().unwrap()["note"],
        text("by the application")
    );
    assert_eq!(
        changes[0].before.as_ref().unwrap()["balance"],
        Value::Decimal("1.00".into())
    );
    // Another deployment's marker (another name) does not hide its writes from us.
    let mut other = MysqlWriter::open(MysqlOptions {
        name: "someone_else".to_owned(),
        ..options(&db)
    });
    other
        .apply(&[RowWrite::upsert(
            "customers",
            row(&[("id", Value::Integer(8))]),
            row(&[("name", text("other engine"))]),
        )])
        .unwrap();
    let changes = read_quiet(&mut capture, changes[0].position);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].key["id"], Value::Integer(8));
}

#[test]
fn a_thousand_row_statement_is_captured_whole_and_resumes_from_inside() {
    let _settings = shared_settings();
    let db = MyDatabase::create("bulk");
    db.exec(CUSTOMERS);
    let mut capture = installed(&db, "customers");
    db.exec(
        "INSERT INTO customers (id, name, balance) \
         SELECT seq, CONCAT('c', seq), seq / 100 FROM seq_1_to_1000",
    );
    let first = read_n(&mut capture, Position::START, 300);
    assert_eq!(first.len(), 300);
    let sequence = first[0].position.sequence;
    assert!(
        first
            .iter()
            .all(|change| change.position.sequence == sequence)
    );
    let checkpoint = first[299].position;
    assert_eq!(checkpoint.index, 299);
    capture.acknowledge(checkpoint).unwrap();
    drop(capture);

    // A new capture (a restarted engine) resumes inside the statement's transaction.
    let mut capture = installed(&db, "customers");
    let rest = read_n(&mut capture, checkpoint, 700);
    assert_eq!(rest.len(), 700);
    assert!(
        rest.iter()
            .all(|change| change.position.sequence == sequence)
    );
    let ids: Vec<i64> = first
        .iter()
        .chain(&rest)
        .map(|change| match change.key["id"] {
            Value::Integer(id) => id,
            ref other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, (1..=1000).collect::<Vec<i64>>());
    assert_eq!(
        rest[699].after.as_ref().unwrap()["balance"],
        Value::Decimal("10.00".into())
    );
    assert!(read_quiet(&mut capture, rest[699].position).is_empty());
}

#[test]
fn a_session_killed_by_the_server_is_unavailable_then_capture_catches_up() {
    let _settings = shared_settings();
    let db = MyDatabase::create("killed");
    db.exec(CUSTOMERS);
    let mut capture = installed(&db, "customers");
    db.exec("INSERT INTO customers VALUES (1, 'a', NULL, NULL)");
    let first = read_n(&mut capture, Position::START, 1);
    capture.acknowledge(first[0].position).unwrap();
    assert!(
        db.kill_sessions() >= 1,
        "the binlog reader's session is there"
    );
    db.exec("INSERT INTO customers VALUES (2, 'b', NULL, NULL)");
    // The broken stream surfaces as an unavailable side, the next calls reconnect.
    let mut saw_unavailable = false;
    let mut caught_up = Vec::new();
    for _ in 0..100 {
        match capture
            .wait(first[0].position, Duration::from_millis(200))
            .and_then(|_| capture.read(first[0].position, 10))
        {
            Ok(changes) if !changes.is_empty() => {
                caught_up = changes;
                break;
            }
            Ok(_) => {}
            Err(SideError::Unavailable { .. }) => saw_unavailable = true,
            Err(other) => panic!("{other}"),
        }
    }
    assert!(saw_unavailable, "the killed stream was reported");
    assert_eq!(caught_up.len(), 1);
    assert_eq!(caught_up[0].key["id"], Value::Integer(2));
}

#[test]
fn operator_faults_are_coded_errors_without_secrets() {
    let _settings = shared_settings();
    let db = MyDatabase::create("faults");
    db.exec("CREATE TABLE nokey (id INT, name TEXT)");
    db.exec(CUSTOMERS);
    // A table without a primary key.
    let mut capture = MysqlCapture::open(options(&db));
    match capture.install(&[CaptureTable::new("nokey", &["id"])]) {
        Err(SideError::Refused { code, message }) => {
            assert_eq!(code, "mysql.no_primary_key");
            assert!(message.contains("nokey"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A missing table, with a hint.
    match capture.install(&[CaptureTable::new("Customers", &["id"])]) {
        Err(SideError::Schema(error)) => {
            assert!(
                error.to_string().contains("did you mean customers?"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Wrong credentials: coded, and the password is nowhere in the message.
    let mut wrong = options(&db);
    wrong.password = Some(Secret::new("hunter2-secret"));
    match MysqlCapture::open(wrong).install(&[CaptureTable::new("customers", &["id"])]) {
        Err(SideError::Refused { code, message }) => {
            assert_eq!(code, "mysql.bad_credentials");
            assert!(!message.contains("hunter2"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Nobody listening: unavailable (retried later), not refused.
    let mut nowhere = MysqlOptions::new("mysql://root@127.0.0.1:1/x", "side");
    nowhere.connect_timeout = Duration::from_secs(2);
    match MysqlCapture::open(nowhere).install(&[]) {
        Err(SideError::Unavailable { message }) => {
            assert!(message.contains("refused"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A user without the replication privileges.
    let user = format!("{}_u", db.name);
    db.exec(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY 'pw-secret'; \
         GRANT ALL ON `{}`.* TO '{user}'@'%'",
        db.name
    ));
    let mut limited =
        MysqlOptions::new(format!("mysql://{user}@127.0.0.1:3306/{}", db.name), "side");
    limited.password = Some(Secret::new("pw-secret"));
    let result = MysqlCapture::open(limited).install(&[CaptureTable::new("customers", &["id"])]);
    db.exec(&format!("DROP USER '{user}'@'%'"));
    match result {
        Err(SideError::Refused { code, message }) => {
            assert_eq!(code, "mysql.missing_privilege", "{message}");
            assert!(message.contains("REPLICATION"), "{message}");
            assert!(!message.contains("pw-secret"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_write_the_target_refuses_names_the_write_and_keeps_nothing() {
    let _settings = shared_settings();
    let db = MyDatabase::create("reject");
    db.exec(CUSTOMERS);
    let mut writer = MysqlWriter::open(options(&db));
    let good = RowWrite::upsert(
        "customers",
        row(&[("id", Value::Integer(1))]),
        row(&[("name", text("fine"))]),
    );
    let bad = RowWrite::upsert(
        "customers",
        row(&[("id", Value::Integer(2))]),
        row(&[("name", text(&"x".repeat(200)))]),
    );
    match writer.apply(&[good.clone(), bad]) {
        Err(SideError::Rejected { index, table, .. }) => {
            assert_eq!(index, Some(1));
            assert_eq!(table, "customers");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(db.rows("SELECT COUNT(*) FROM customers"), vec![vec!["0"]]);
    // A write missing a required column updates an existing row field by field.
    writer.apply(&[good]).unwrap();
    let partial = RowWrite::upsert(
        "customers",
        row(&[("id", Value::Integer(1))]),
        row(&[("note", text("only the note"))]),
    );
    assert_eq!(
        writer.apply(&[partial]).unwrap().effects,
        [WriteEffect::Changed]
    );
    assert_eq!(
        db.rows("SELECT name, note FROM customers"),
        vec![vec!["fine", "only the note"]]
    );
    // An insert that collides on another unique key is refused, not turned into an
    // update of the other row.
    db.exec("ALTER TABLE customers ADD UNIQUE KEY by_name (name)");
    let collides = RowWrite::upsert(
        "customers",
        row(&[("id", Value::Integer(5))]),
        row(&[("name", text("fine")), ("note", text("hijack"))]),
    );
    match writer.apply(&[collides]) {
        Err(SideError::Rejected { index, .. }) => assert_eq!(index, Some(0)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        db.rows("SELECT id, note FROM customers"),
        vec![vec!["1", "only the note"]]
    );
    // A stale expectation skips the write.
    let checked = writer
        .apply_checked(
            &[RowWrite::upsert(
                "customers",
                row(&[("id", Value::Integer(1))]),
                row(&[("name", text("overwritten"))]),
            )],
            &[Some(Some(row(&[("name", text("something else"))])))],
        )
        .unwrap();
    assert_eq!(checked.stale, vec![0]);
    assert_eq!(db.rows("SELECT name FROM customers"), vec![vec!["fine"]]);
}

/// Restores a global server setting when dropped (also when the test fails).
struct GlobalSetting {
    db_url: String,
    name: &'static str,
    value: String,
}

impl GlobalSetting {
    fn set(db: &MyDatabase, name: &'static str, value: &str) -> GlobalSetting {
        use mysql::prelude::Queryable as _;
        let mut conn = db.conn();
        let old: Option<String> = conn
            .query_first(format!("SELECT @@GLOBAL.{name}"))
            .expect("read setting");
        conn.query_drop(format!("SET GLOBAL {name} = '{value}'"))
            .expect("set setting");
        GlobalSetting {
            db_url: db.url.clone(),
            name,
            value: old.expect("setting exists"),
        }
    }
}

impl Drop for GlobalSetting {
    fn drop(&mut self) {
        use mysql::prelude::Queryable as _;
        let _ = dualwrite_tests::servers::my_conn(&self.db_url)
            .query_drop(format!("SET GLOBAL {} = '{}'", self.name, self.value));
    }
}

#[test]
fn server_settings_capture_needs_are_checked_and_unnamed_rows_map_by_position() {
    let _exclusive = SERVER_SETTINGS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let db = MyDatabase::create("settings");
    db.exec(CUSTOMERS);
    let table = [CaptureTable::new("customers", &["id"])];
    {
        let _format = GlobalSetting::set(&db, "binlog_format", "STATEMENT");
        match MysqlCapture::open(options(&db)).install(&table) {
            Err(SideError::Refused { code, message }) => {
                assert_eq!(code, "mysql.binlog_format");
                assert!(message.contains("STATEMENT"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
    {
        let _image = GlobalSetting::set(&db, "binlog_row_image", "MINIMAL");
        match MysqlCapture::open(options(&db)).install(&table) {
            Err(SideError::Refused { code, .. }) => assert_eq!(code, "mysql.binlog_row_image"),
            other => panic!("{other:?}"),
        }
    }
    // Without column names in the log, values map by position.
    let _metadata = GlobalSetting::set(&db, "binlog_row_metadata", "NO_LOG");
    let mut capture = installed(&db, "customers");
    db.exec("INSERT INTO customers VALUES (1, 'by position', 2.50, NULL)");
    let changes = read_n(&mut capture, Position::START, 1);
    assert_eq!(
        changes[0].after,
        Some(row(&[
            ("id", Value::Integer(1)),
            ("name", text("by position")),
            ("balance", Value::Decimal("2.50".into())),
            ("note", Value::Null),
        ]))
    );
    // A row logged before an ALTER TABLE that moved columns of other types into its
    // places, read by a capture that only knows the new definition (a restart), is
    // refused, not read into the wrong columns.
    capture.acknowledge(changes[0].position).unwrap();
    drop(capture);
    db.exec("INSERT INTO customers VALUES (2, 'moved', 3.50, NULL)");
    db.exec("ALTER TABLE customers DROP COLUMN note, ADD COLUMN since DATE AFTER id");
    let mut capture = installed(&db, "customers");
    let mut unreadable = None;
    for _ in 0..50 {
        match capture.read(changes[0].position, 10) {
            Err(SideError::Unreadable { message, .. }) => {
                unreadable = Some(message);
                break;
            }
            Ok(read) => assert!(read.is_empty(), "{read:?}"),
            Err(other) => panic!("{other}"),
        }
        capture
            .wait(changes[0].position, Duration::from_millis(100))
            .ok();
    }
    let message = unreadable.expect("the moved row was refused");
    assert!(message.contains("binlog_row_metadata"), "{message}");
}

#[test]
fn rows_logged_before_an_alter_table_are_read_by_column_name() {
    let _settings = shared_settings();
    let db = MyDatabase::create("alter");
    db.exec(CUSTOMERS);
    let mut capture = installed(&db, "customers");
    db.exec("INSERT INTO customers VALUES (1, 'before', 1.00, 'old')");
    // Both statements are in the log before capture reads the first row.
    db.exec("ALTER TABLE customers DROP COLUMN note, ADD COLUMN region VARCHAR(10) FIRST");
    db.exec("INSERT INTO customers VALUES ('EU', 2, 'after', 2.00)");
    let changes = read_n(&mut capture, Position::START, 2);
    assert_eq!(
        changes[0].after,
        Some(row(&[
            ("id", Value::Integer(1)),
            ("name", text("before")),
            ("balance", Value::Decimal("1.00".into())),
        ])),
        "the dropped column is left out, the added one is not invented"
    );
    assert_eq!(
        changes[1].after,
        Some(row(&[
            ("region", text("EU")),
            ("id", Value::Integer(2)),
            ("name", text("after")),
            ("balance", Value::Decimal("2.00".into())),
        ]))
    );
}

#[test]
fn a_purged_log_the_capture_must_resume_from_is_a_coded_error() {
    let _exclusive = SERVER_SETTINGS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let db = MyDatabase::create("purged");
    db.exec(CUSTOMERS);
    let mut capture = installed(&db, "customers");
    drop(capture);
    // The log moves on to a new file and the one the capture starts from is purged.
    db.exec("FLUSH BINARY LOGS");
    let current: String = db.rows("SHOW MASTER STATUS")[0][0].clone();
    // The server keeps a file a replica still reads: the dropped capture's reader
    // leaves within a heartbeat.
    let mut purged = false;
    for _ in 0..100 {
        db.exec(&format!("PURGE BINARY LOGS TO '{current}'"));
        if db.rows("SHOW BINARY LOGS")[0][0] == current {
            purged = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(purged, "the server purged the logs before {current}");
    capture = MysqlCapture::open(options(&db));
    match capture.install(&[CaptureTable::new("customers", &["id"])]) {
        Err(SideError::Refused { code, message }) => {
            assert_eq!(code, "mysql.binlog_purged");
            assert!(message.contains("initial sync"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn capture_follows_the_log_into_its_next_file_and_resumes_there() {
    let _settings = shared_settings();
    let db = MyDatabase::create("rotate");
    db.exec(CUSTOMERS);
    let mut capture = installed(&db, "customers");
    db.exec("INSERT INTO customers VALUES (1, 'first file', NULL, NULL)");
    db.exec("FLUSH BINARY LOGS");
    db.exec("INSERT INTO customers VALUES (2, 'next file', NULL, NULL)");
    let changes = read_n(&mut capture, Position::START, 2);
    assert!(
        changes[1].position.sequence >> 32 > changes[0].position.sequence >> 32,
        "the second change is in a later file: {:?}",
        changes
            .iter()
            .map(|change| change.position)
            .collect::<Vec<_>>()
    );
    capture.acknowledge(changes[0].position).unwrap();
    drop(capture);
    let mut capture = installed(&db, "customers");
    let rest = read_n(&mut capture, changes[0].position, 1);
    assert_eq!(rest[0].key["id"], Value::Integer(2));
    assert_eq!(rest[0].position, changes[1].position);
}

#[test]
fn rows_read_in_one_go_are_the_rows_read_one_by_one() {
    let _settings = shared_settings();
    let db = MyDatabase::create("readrows");
    db.exec(
        "CREATE TABLE parts (code VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci, \
         amount DECIMAL(12,3), label TEXT, \
         PRIMARY KEY (code, amount)) ENGINE = InnoDB",
    );
    db.exec(
        "INSERT INTO parts VALUES ('plain', 1.5, 'a'), ('with \\'quotes\\', commas', 2, 'b'), \
         ('Mixed Case', 3.25, 'c'), ('', 0, 'empty code')",
    );
    let mut writer = MysqlWriter::open(options(&db));
    let key = |code: &str, amount: &str| {
        row(&[
            ("code", text(code)),
            ("amount", Value::Decimal(amount.into())),
        ])
    };
    let keys = vec![
        key("Mixed Case", "3.25"),
        key("missing", "1"),
        key("plain", "1.500"),
        key("with 'quotes', commas", "2"),
        key("", "0"),
        // The column's collation ignores case: the same row as the first key, found only
        // by the server's comparison.
        key("MIXED CASE", "3.25"),
        row(&[
            ("code", Value::Null),
            ("amount", Value::Decimal("1".into())),
        ]),
        key("plain", "1.5"),
    ];
    let together = writer.read_rows("parts", &keys).unwrap();
    let one_by_one: Vec<Option<RowImage>> = keys
        .iter()
        .map(|key| writer.read_row("parts", key).unwrap())
        .collect();
    assert_eq!(together, one_by_one);
    let labels: Vec<Option<&Value>> = together
        .iter()
        .map(|found| found.as_ref().map(|row| &row["label"]))
        .collect();
    assert_eq!(
        labels,
        vec![
            Some(&text("c")),
            None,
            Some(&text("a")),
            Some(&text("b")),
            Some(&text("empty code")),
            Some(&text("c")),
            None,
            Some(&text("a")),
        ]
    );
}
