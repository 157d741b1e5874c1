//! The PostgreSQL connector against the machine's real server: logical decoding capture
//! in commit order with before images, the engine's own writes not captured, statements
//! of many rows sharing one transaction, lossless types, a slot dropped behind the
//! engine's back, and the coded errors for what an operator must fix.

use std::collections::BTreeSet;
use std::time::Duration;

use dualwrite::apply::postgres::PostgresWriter;
use dualwrite::apply::{ApplyBatch, RowWrite, WriteEffect};
use dualwrite::capture::postgres::{PostgresCapture, PostgresOptions};
use dualwrite::capture::{CaptureStream, CaptureTable, Position, RowImage, SideError};
use dualwrite::change::{ChangeOp, Timestamp, Value};
use dualwrite_tests::servers::PgDatabase;

const CUSTOMERS: &str = "CREATE TABLE customers (
    id integer PRIMARY KEY, name text NOT NULL, balance numeric(18,2), note text)";

fn options(db: &PgDatabase) -> PostgresOptions {
    PostgresOptions::new(db.url.clone(), "side")
}

fn installed(db: &PgDatabase) -> PostgresCapture {
    let mut capture = PostgresCapture::open(options(db));
    capture
        .install(&[CaptureTable::new("customers", &["id"])])
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

/// Reads everything after `after` (waiting briefly for it), acknowledging as it goes.
fn drain(capture: &mut PostgresCapture, mut after: Position, limit: usize) -> Vec<Position> {
    let mut seen = Vec::new();
    loop {
        capture
            .wait(after, Duration::from_millis(300))
            .expect("wait");
        let changes = capture.read(after, limit).expect("read");
        if changes.is_empty() {
            return seen;
        }
        for change in &changes {
            assert!(change.position > after, "positions rise");
            after = change.position;
            seen.push(change.position);
        }
        capture.acknowledge(after).expect("acknowledge");
    }
}

#[test]
fn inserts_updates_and_deletes_arrive_in_commit_order_with_before_images() {
    let db = PgDatabase::create("order");
    let mut client = db.client();
    client.batch_execute(CUSTOMERS).unwrap();
    let mut capture = installed(&db);
    // One statement per round trip: a multi-statement string is one transaction.
    for sql in [
        "INSERT INTO customers VALUES (1, 'Ada', 10.50, 'x')",
        "BEGIN; UPDATE customers SET name = 'Ada L' WHERE id = 1;
         INSERT INTO customers VALUES (2, 'Bob', NULL, NULL); COMMIT",
        "DELETE FROM customers WHERE id = 1",
    ] {
        client.batch_execute(sql).unwrap();
    }
    assert!(
        capture
            .wait(Position::START, Duration::from_secs(5))
            .unwrap()
    );
    let changes = capture.read(Position::START, 100).unwrap();
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
    assert!(changes[0].committed_at.is_some());

    // Reading after a position skips what came before; acknowledging frees the slot.
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
fn the_engines_writes_are_not_captured_but_other_writers_are() {
    let db = PgDatabase::create("echo");
    let mut client = db.client();
    client.batch_execute(CUSTOMERS).unwrap();
    let mut capture = installed(&db);
    let mut writer = PostgresWriter::open(options(&db));
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
    client
        .batch_execute("UPDATE customers SET note = 'someone else' WHERE id = 7")
        .unwrap();
    assert!(
        capture
            .wait(Position::START, Duration::from_secs(5))
            .unwrap()
    );
    let changes = capture.read(Position::START, 100).unwrap();
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0].op, ChangeOp::Update);
    assert_eq!(
        changes[0].after.as_ref().unwrap()["note"],
        text("someone else")
    );
    assert_eq!(changes[0].before.as_ref().unwrap()["name"], text("engine"));

    // The engine's delete is not captured either, and the idle slot is confirmed past
    // it (so its WAL is not kept for the engine).
    capture.acknowledge(changes[0].position).unwrap();
    writer
        .apply(&[RowWrite::delete(
            "customers",
            row(&[("id", Value::Integer(7))]),
        )])
        .unwrap();
    let lsn = |client: &mut postgres::Client, sql: &str| -> String {
        client.query_one(sql, &[]).unwrap().get(0)
    };
    let deleted_by = lsn(&mut client, "SELECT pg_current_wal_flush_lsn()::text");
    assert!(
        !capture
            .wait(changes[0].position, Duration::from_millis(500))
            .unwrap()
    );
    assert!(capture.read(changes[0].position, 100).unwrap().is_empty());
    // The confirmation reaches the server with the stream's next status update, so the
    // slot is looked at while the capture keeps waiting. Other databases' WAL on the
    // shared server can lie past the delete; the capture confirms up to the server's
    // heartbeat every ten seconds.
    let slot = options(&db).name;
    dualwrite_tests::eventually(
        "the idle slot confirmed past the engine's delete",
        Duration::from_secs(30),
        || {
            assert!(
                !capture
                    .wait(changes[0].position, Duration::from_millis(100))
                    .unwrap(),
                "the engine's delete was captured"
            );
            client
                .query_one(
                    "SELECT confirmed_flush_lsn >= $1::text::pg_lsn FROM pg_replication_slots \
                     WHERE slot_name = $2",
                    &[&deleted_by, &slot],
                )
                .unwrap()
                .get(0)
        },
    );
    assert!(capture.slot_lag_bytes().is_ok());
}

#[test]
fn a_statement_of_many_rows_shares_one_transaction_and_loses_nothing_across_a_restart() {
    let db = PgDatabase::create("multirow");
    let mut client = db.client();
    client.batch_execute(CUSTOMERS).unwrap();
    let mut capture = installed(&db);
    client
        .batch_execute(
            "INSERT INTO customers SELECT n, 'c' || n, n, NULL FROM generate_series(1, 1000) n",
        )
        .unwrap();
    assert!(
        capture
            .wait(Position::START, Duration::from_secs(5))
            .unwrap()
    );
    // Read part of the transaction, acknowledge it, then "crash".
    let first = capture.read(Position::START, 300).unwrap();
    assert_eq!(first.len(), 300);
    let sequence = first[0].position.sequence;
    assert!(
        first
            .iter()
            .all(|change| change.position.sequence == sequence)
    );
    let checkpoint = first[299].position;
    capture.acknowledge(checkpoint).unwrap();
    drop(capture);

    // A new capture (a restarted engine) resumes inside the transaction.
    let mut capture = installed(&db);
    capture.acknowledge(checkpoint).unwrap();
    let rest = drain(&mut capture, checkpoint, 256);
    assert_eq!(rest.len(), 700);
    let indexes: BTreeSet<u32> = first
        .iter()
        .map(|change| change.position.index)
        .chain(rest.iter().map(|position| position.index))
        .collect();
    assert_eq!(indexes, (0..1000).collect());

    // COPY is one transaction too.
    let mut copy = client
        .copy_in("COPY customers (id, name) FROM STDIN")
        .unwrap();
    use std::io::Write as _;
    for id in 2001..=2500 {
        writeln!(copy, "{id}\tcopied").unwrap();
    }
    copy.finish().unwrap();
    let after = *rest.last().unwrap();
    let copied = drain(&mut capture, after, 5000);
    assert_eq!(copied.len(), 500);
    assert!(
        copied
            .iter()
            .all(|position| position.sequence == copied[0].sequence)
    );
}

#[test]
fn every_type_round_trips_losslessly() {
    let db = PgDatabase::create("types");
    let mut client = db.client();
    client
        .batch_execute(
            "CREATE TABLE things (
                id bigint PRIMARY KEY, small smallint, big bigint, amount numeric(30,10),
                ratio double precision, label varchar(20), flag boolean,
                at timestamptz, local timestamp, day date, ref uuid, doc jsonb,
                raw bytea, body text)",
        )
        .unwrap();
    let mut capture = PostgresCapture::open(options(&db));
    capture
        .install(&[CaptureTable::new("things", &["id"])])
        .unwrap();
    let fields = row(&[
        ("small", Value::Integer(-32768)),
        ("big", Value::Integer(i64::MAX)),
        (
            "amount",
            Value::Decimal("12345678901234567890.1234567890".into()),
        ),
        ("ratio", Value::Float(0.1)),
        ("label", text("naïve ☃")),
        ("flag", Value::Boolean(true)),
        (
            "at",
            Value::Timestamp(Timestamp {
                seconds: 1_709_287_200,
                nanos: 123_456_000,
                offset_minutes: Some(0),
            }),
        ),
        (
            "local",
            Value::Timestamp(Timestamp {
                seconds: 1_709_287_200,
                nanos: 0,
                offset_minutes: None,
            }),
        ),
        ("day", Value::Date(19_783)),
        ("ref", text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
        ("doc", Value::Json(r#"{"a": [1, 2.5, "x"]}"#.into())),
        ("raw", Value::Bytes(vec![0, 1, 2, 255])),
        ("body", Value::Null),
    ]);
    let key = row(&[("id", Value::Integer(1))]);
    let mut writer = PostgresWriter::open(options(&db));
    writer
        .apply(&[RowWrite::upsert("things", key.clone(), fields.clone())])
        .unwrap();
    let mut expected = fields.clone();
    expected.insert("id".into(), Value::Integer(1));
    assert_eq!(
        writer.read_row("things", &key).unwrap(),
        Some(expected.clone())
    );

    // Another writer's copy of the same values is captured exactly.
    client
        .batch_execute("INSERT INTO things SELECT 2, small, big, amount, ratio, label, flag, at, local, day, ref, doc, raw, body FROM things WHERE id = 1")
        .unwrap();
    assert!(
        capture
            .wait(Position::START, Duration::from_secs(5))
            .unwrap()
    );
    let changes = capture.read(Position::START, 10).unwrap();
    assert_eq!(changes.len(), 1);
    let mut captured = changes[0].after.clone().unwrap();
    captured.insert("id".into(), Value::Integer(1));
    assert_eq!(captured, expected);

    // Writing the captured values back is a no-op: nothing was altered on the way.
    let report = writer
        .apply(&[RowWrite::upsert("things", key.clone(), captured)])
        .unwrap();
    assert_eq!(report.effects, [WriteEffect::Unchanged]);

    // Rows are scanned in key order.
    let scanned = writer
        .scan("things", &["id".to_owned()], Some(&key), 10)
        .unwrap();
    assert_eq!(scanned.len(), 1);
    assert_eq!(scanned[0]["id"], Value::Integer(2));
    assert_eq!(writer.count_rows("things").unwrap(), 2);
}

#[test]
fn a_refused_write_rolls_the_batch_back_and_is_named() {
    let db = PgDatabase::create("rejected");
    let mut client = db.client();
    client
        .batch_execute(&format!(
            "{CUSTOMERS}; CREATE TABLE orders (id integer PRIMARY KEY, \
             customer integer NOT NULL REFERENCES customers (id))"
        ))
        .unwrap();
    let mut writer = PostgresWriter::open(options(&db));
    let error = writer
        .apply(&[
            RowWrite::upsert(
                "customers",
                row(&[("id", Value::Integer(1))]),
                row(&[("name", text("kept?"))]),
            ),
            RowWrite::upsert(
                "orders",
                row(&[("id", Value::Integer(1))]),
                row(&[("customer", Value::Integer(99))]),
            ),
        ])
        .unwrap_err();
    match &error {
        SideError::Rejected {
            index,
            table,
            dependency,
            ..
        } => {
            assert_eq!(
                (*index, table.as_str(), *dependency),
                (Some(1), "orders", true)
            );
        }
        other => panic!("{other:?}"),
    }
    let count: i64 = client
        .query_one("SELECT count(*) FROM customers", &[])
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "the batch was rolled back");
    // The writer goes on working after a rejection.
    let report = writer
        .apply(&[RowWrite::upsert(
            "customers",
            row(&[("id", Value::Integer(1))]),
            row(&[("name", text("kept"))]),
        )])
        .unwrap();
    assert_eq!(report.effects, [WriteEffect::Changed]);
}

#[test]
fn a_slot_dropped_behind_the_engines_back_is_reported_not_skipped() {
    let db = PgDatabase::create("slotlost");
    let mut client = db.client();
    client.batch_execute(CUSTOMERS).unwrap();
    let mut capture = installed(&db);
    let slot = options(&db).name;
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .unwrap();
    client
        .batch_execute("INSERT INTO customers VALUES (1, 'lost', NULL, NULL)")
        .unwrap();
    let error = capture.read(Position::START, 10).unwrap_err();
    assert!(
        matches!(
            error,
            SideError::Refused {
                code: "pg.slot_lost",
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("initial sync"), "{error}");
    // A restart does not quietly make a new slot either.
    let mut again = PostgresCapture::open(options(&db));
    let error = again
        .install(&[CaptureTable::new("customers", &["id"])])
        .unwrap_err();
    assert!(
        matches!(
            error,
            SideError::Refused {
                code: "pg.slot_lost",
                ..
            }
        ),
        "{error}"
    );
    // A slot recreated by someone else (further on) is reported as moved.
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .unwrap();
    let error = capture.read(Position::START, 10).unwrap_err();
    assert!(
        matches!(
            error,
            SideError::Refused {
                code: "pg.slot_moved",
                ..
            }
        ),
        "{error}"
    );
    // The way out: uninstall, install anew (then an initial sync).
    again.uninstall().unwrap();
    let info = again
        .install(&[CaptureTable::new("customers", &["id"])])
        .unwrap();
    assert!(!info.stream_id.is_empty());
}

#[test]
fn a_connection_killed_by_the_server_is_unavailable_then_catches_up() {
    let db = PgDatabase::create("killed");
    let mut client = db.client();
    client.batch_execute(CUSTOMERS).unwrap();
    let mut capture = installed(&db);
    let mut writer = PostgresWriter::open(options(&db));
    writer
        .apply(&[RowWrite::upsert(
            "customers",
            row(&[("id", Value::Integer(1))]),
            row(&[("name", text("first"))]),
        )])
        .unwrap();
    client
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid();
             INSERT INTO customers VALUES (2, 'meanwhile', NULL, NULL);",
        )
        .unwrap();
    let error = capture.read(Position::START, 10).unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    let error = writer
        .apply(&[RowWrite::upsert(
            "customers",
            row(&[("id", Value::Integer(3))]),
            row(&[("name", text("engine"))]),
        )])
        .unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    // Next calls connect again; the slot kept the change made meanwhile, and the
    // writer's new session is tagged again (its write is not captured).
    writer
        .apply(&[RowWrite::upsert(
            "customers",
            row(&[("id", Value::Integer(3))]),
            row(&[("name", text("engine"))]),
        )])
        .unwrap();
    let changes = capture.read(Position::START, 10).unwrap();
    let ids: Vec<&Value> = changes.iter().map(|change| &change.key["id"]).collect();
    assert_eq!(ids, vec![&Value::Integer(2)]);
}

#[test]
fn what_an_operator_must_fix_is_reported_with_a_code() {
    let db = PgDatabase::create("codes");
    let mut client = db.client();
    client
        .batch_execute("CREATE TABLE nokey (id integer, name text)")
        .unwrap();

    // Nothing listens on port 1.
    let mut refused = PostgresCapture::open(PostgresOptions::new(
        "postgres://postgres@127.0.0.1:1/postgres",
        "side",
    ));
    let error = refused
        .install(&[CaptureTable::new("nokey", &["id"])])
        .unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    assert!(error.to_string().contains("connection refused"), "{error}");

    // An unknown role.
    let url = db.url.replace("postgres@", "nobody_here@");
    let mut stranger = PostgresCapture::open(PostgresOptions::new(url, "side"));
    let error = stranger
        .install(&[CaptureTable::new("nokey", &["id"])])
        .unwrap_err();
    assert!(
        matches!(
            error,
            SideError::Refused {
                code: "pg.bad_credentials",
                ..
            }
        ),
        "{error}"
    );

    // A table without a primary key.
    let mut capture = PostgresCapture::open(options(&db));
    let error = capture
        .install(&[CaptureTable::new("nokey", &["id"])])
        .unwrap_err();
    assert!(
        matches!(
            error,
            SideError::Refused {
                code: "pg.no_primary_key",
                ..
            }
        ),
        "{error}"
    );

    // A role without the REPLICATION attribute that does not own the table.
    let role = format!("{}_weak", db.name);
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; GRANT CONNECT ON DATABASE {db} TO {role}; \
             CREATE TABLE owned (id integer PRIMARY KEY); GRANT SELECT ON owned TO {role};",
            db = db.name
        ))
        .unwrap();
    let url = db.url.replace("postgres@", &format!("{role}@"));
    let mut weak = PostgresCapture::open(PostgresOptions::new(url, "side"));
    let error = weak
        .install(&[CaptureTable::new("owned", &["id"])])
        .unwrap_err();
    assert!(
        matches!(
            error,
            SideError::Refused {
                code: "pg.missing_privilege",
                ..
            }
        ),
        "{error}"
    );
    drop(weak);
    client
        .batch_execute(&format!(
            "DROP TABLE owned; DROP OWNED BY {role}; DROP ROLE {role}"
        ))
        .unwrap();
}

#[test]
fn rows_read_in_one_go_are_the_rows_read_one_by_one() {
    let db = PgDatabase::create("readrows");
    let mut client = db.client();
    client
        .batch_execute(
            "CREATE TABLE parts (code text, amount numeric(12,3), label text, \
             PRIMARY KEY (code, amount));
             INSERT INTO parts VALUES ('plain', 1.5, 'a'), ('with \"quotes\", commas', 2, 'b'),
                 ('back\\slash {braces}', 3.25, 'c'), ('', 0, 'empty code'), ('NULL', 4, 'd');",
        )
        .unwrap();
    let mut writer = PostgresWriter::open(options(&db));
    let key = |code: &str, amount: &str| {
        row(&[
            ("code", text(code)),
            ("amount", Value::Decimal(amount.into())),
        ])
    };
    let keys = vec![
        key("back\\slash {braces}", "3.25"),
        key("missing", "1"),
        key("plain", "1.5"),
        key("with \"quotes\", commas", "2"),
        key("", "0"),
        key("NULL", "4"),
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
            Some(&text("d")),
            None,
            Some(&text("a")),
        ]
    );
    // Keys of different columns are read one by one, with the same answers.
    let mixed = vec![key("plain", "1.5"), row(&[("label", text("b"))])];
    let found = writer.read_rows("parts", &mixed).unwrap();
    assert_eq!(found[0].as_ref().unwrap()["label"], text("a"));
    assert_eq!(
        found[1].as_ref().unwrap()["code"],
        text("with \"quotes\", commas")
    );
}

#[test]
fn the_slot_lag_grows_with_what_is_not_acknowledged_and_shrinks_after() {
    let db = PgDatabase::create("slotlag");
    let mut client = db.client();
    client.batch_execute(CUSTOMERS).unwrap();
    let mut capture = installed(&db);
    let idle = capture.retained_bytes().unwrap().expect("a slot lag");
    client
        .batch_execute(
            "INSERT INTO customers SELECT n, repeat('x', 200), n, NULL \
             FROM generate_series(1, 2000) n",
        )
        .unwrap();
    let behind = capture.retained_bytes().unwrap().expect("a slot lag");
    assert!(
        behind > idle + 2000 * 200,
        "2,000 rows of 200 bytes not read: {behind} bytes kept (idle {idle})"
    );
    let read = drain(&mut capture, Position::START, 500);
    assert_eq!(read.len(), 2000);
    // Acknowledged: the slot is confirmed (with the stream's next status update) and
    // the lag falls back below what the rows took.
    dualwrite_tests::eventually("the slot confirmed", Duration::from_secs(30), || {
        capture
            .wait(*read.last().unwrap(), Duration::from_millis(100))
            .unwrap();
        capture.retained_bytes().unwrap().expect("a slot lag") < 2000 * 200
    });
}

#[test]
fn a_slot_dropped_while_it_streams_is_reported_not_skipped() {
    let db = PgDatabase::create("slotgone");
    let mut client = db.client();
    client.batch_execute(CUSTOMERS).unwrap();
    let mut capture = installed(&db);
    client
        .batch_execute("INSERT INTO customers VALUES (1, 'seen', NULL, NULL)")
        .unwrap();
    let seen = drain(&mut capture, Position::START, 10);
    assert_eq!(seen.len(), 1);
    // The stream holds the slot: someone ends its walsender and drops the slot, then
    // writes on.
    let slot = options(&db).name;
    client
        .execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
             WHERE slot_name = $1 AND active_pid IS NOT NULL",
            &[&slot],
        )
        .unwrap();
    dualwrite_tests::eventually("the slot dropped", Duration::from_secs(20), || {
        client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .is_ok()
    });
    client
        .batch_execute("INSERT INTO customers VALUES (2, 'lost', NULL, NULL)")
        .unwrap();
    // The broken stream is a connectivity fault first; the next call finds the slot
    // gone and says so.
    let mut errors = Vec::new();
    for _ in 0..3 {
        match capture.wait(seen[0], Duration::from_millis(500)) {
            Ok(found) => assert!(!found, "a change read from a dropped slot"),
            Err(error) => errors.push(error),
        }
    }
    assert!(
        errors.iter().any(|error| matches!(
            error,
            SideError::Refused {
                code: "pg.slot_lost",
                ..
            }
        )),
        "{errors:?}"
    );
    assert!(
        errors.iter().all(|error| error.is_unavailable()
            || matches!(
                error,
                SideError::Refused {
                    code: "pg.slot_lost",
                    ..
                }
            )),
        "{errors:?}"
    );
}
