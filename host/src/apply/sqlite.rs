//! The SQLite connector's apply: a batch of upserts and deletes by key in one
//! `BEGIN IMMEDIATE` transaction, tagged with the echo marker the capture triggers skip
//! (see [`crate::capture::sqlite`], which also documents the type mapping), and reads of
//! rows by key.
//!
//! An upsert is one `INSERT ... ON CONFLICT (key) DO UPDATE SET <listed columns> WHERE
//! <any of them differs>`, so a redelivered write touches nothing. SQLite checks NOT NULL
//! before it looks for the conflicting row, so when the write leaves out a NOT NULL
//! column without a default (a field-level update of a wider row), it runs as an
//! `UPDATE` of the listed columns and, only if the row is missing, an `INSERT` (which
//! the target then rejects for the missing column, as it should). Statements are
//! prepared once per table and column set and cached.

use std::path::Path;

use rusqlite::types::ToSqlOutput;
use rusqlite::{OptionalExtension as _, params_from_iter};

use super::{
    ApplyBatch, ApplyReport, CheckedApply, Expectation, RowWrite, WriteEffect, check_stored,
};
use crate::capture::sqlite::schema::quote_ident;
use crate::capture::sqlite::values::{value_from_sql, value_to_sql};
use crate::capture::sqlite::{SqliteDatabase, SqliteOptions};
use crate::capture::{RowImage, SchemaError, SideError, TableSchema};
use crate::change::{Value, WriteOp};

/// Writes to and reads from one SQLite file.
pub struct SqliteWriter {
    db: SqliteDatabase,
    /// Whether the echo marker table exists, as of the last schema change.
    marker: Option<bool>,
}

impl SqliteWriter {
    /// Opens the database at `path` (which must exist) for writing.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<SqliteWriter, SideError> {
        Ok(SqliteWriter {
            db: SqliteDatabase::open(path.as_ref(), options)?,
            marker: None,
        })
    }

    /// The schema of `table`, reloaded when the database's schema changed.
    fn schema(&mut self, table: &str) -> Result<std::sync::Arc<TableSchema>, SideError> {
        self.db.check_file()?;
        self.db.schema_changed()?;
        self.db.table(table)
    }
}

impl std::fmt::Debug for SqliteWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteWriter").finish_non_exhaustive()
    }
}

/// Sets the echo marker (see the capture module): an upsert, so a deleted marker row
/// cannot silently turn tagging off.
const SET_MARKER: &str = "INSERT INTO _dualwrite_origin (id, active) VALUES (1, ?1) \
                          ON CONFLICT (id) DO UPDATE SET active = excluded.active";

impl ApplyBatch for SqliteWriter {
    fn table_schema(&mut self, table: &str) -> Result<TableSchema, SideError> {
        Ok((*self.schema(table)?).clone())
    }

    fn current_schema(&mut self, table: &str) -> Result<std::sync::Arc<TableSchema>, SideError> {
        self.schema(table)
    }

    fn apply(&mut self, writes: &[RowWrite]) -> Result<ApplyReport, SideError> {
        self.apply_checked(writes, &[])
            .map(|checked| checked.report)
    }

    fn apply_checked(
        &mut self,
        writes: &[RowWrite],
        expected: &[Expectation],
    ) -> Result<CheckedApply, SideError> {
        if writes.is_empty() {
            return Ok(CheckedApply::default());
        }
        self.db.check_file()?;
        let marker = &mut self.marker;
        self.db.immediate(|db| {
            if db.schema_changed()? || marker.is_none() {
                let exists: bool = db
                    .conn
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM sqlite_schema \
                         WHERE type = 'table' AND name = '_dualwrite_origin')",
                        [],
                        |row| row.get(0),
                    )
                    .map_err(|error| db.failure(error))?;
                *marker = Some(exists);
            }
            let tagged = *marker == Some(true);
            if tagged {
                set_marker(db, true)?;
            }
            let mut checked = CheckedApply::default();
            for (index, write) in writes.iter().enumerate() {
                if let Some(Some(expectation)) = expected.get(index) {
                    let now = read_in(db, &write.table, &write.key)?;
                    let as_expected = match (expectation, &now) {
                        (None, None) => true,
                        (Some(fields), Some(now)) => fields
                            .iter()
                            .all(|(column, value)| now.get(column) == Some(value)),
                        _ => false,
                    };
                    if !as_expected {
                        checked.stale.push(index);
                        checked.report.effects.push(WriteEffect::Unchanged);
                        checked.stored.push(None);
                        continue;
                    }
                }
                checked.report.effects.push(apply_one(db, index, write)?);
                let stored = match write.op {
                    WriteOp::Delete => None,
                    WriteOp::Upsert => {
                        let stored = read_in(db, &write.table, &write.key)?;
                        let schema = db.table(&write.table)?;
                        check_stored(&schema, index, write, stored.as_ref())?;
                        stored
                    }
                };
                checked.stored.push(stored);
            }
            if tagged {
                set_marker(db, false)?;
            }
            Ok(checked)
        })
    }

    fn read_row(&mut self, table: &str, key: &RowImage) -> Result<Option<RowImage>, SideError> {
        self.db.check_file()?;
        self.db.schema_changed()?;
        read_in(&mut self.db, table, key)
    }

    fn count_rows(&mut self, table: &str) -> Result<u64, SideError> {
        self.schema(table)?;
        let sql = format!("SELECT count(*) FROM {}", quote_ident(table));
        let count = self
            .db
            .conn
            .query_row(&sql, [], |row| row.get::<_, i64>(0))
            .map_err(|error| self.db.failure(error))?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    fn scan(
        &mut self,
        table: &str,
        key_columns: &[String],
        after: Option<&RowImage>,
        limit: usize,
    ) -> Result<Vec<RowImage>, SideError> {
        let schema = self.schema(table)?;
        schema.check_key(key_columns)?;
        let quoted: Vec<String> = key_columns
            .iter()
            .map(|column| quote_ident(column))
            .collect();
        let mut conditions: Vec<String> = quoted
            .iter()
            .map(|column| format!("{column} IS NOT NULL"))
            .collect();
        let mut params = Vec::new();
        if let Some(after) = after {
            let values = key_columns
                .iter()
                .map(|column| after.get(column).unwrap_or(&Value::Null));
            params = bind_all(values, 0, table)?;
            let placeholders: Vec<String> =
                (1..=key_columns.len()).map(|at| format!("?{at}")).collect();
            conditions.push(format!(
                "({}) > ({})",
                quoted.join(", "),
                placeholders.join(", ")
            ));
        }
        let sql = format!(
            "SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT {}",
            select_list(&schema),
            quote_ident(table),
            conditions.join(" AND "),
            quoted.join(", "),
            i64::try_from(limit).unwrap_or(i64::MAX)
        );
        query_rows(&self.db, &sql, params, &schema)
    }
}

/// The whole row of `table` with this `key` (see [`ApplyBatch::read_row`]), on `db` as
/// it is: inside the caller's transaction when there is one.
fn read_in(
    db: &mut SqliteDatabase,
    table: &str,
    key: &RowImage,
) -> Result<Option<RowImage>, SideError> {
    let schema = db.table(table)?;
    schema.check_columns(key.keys().map(String::as_str), false)?;
    if key.is_empty() {
        return Err(SchemaError::EmptyKey {
            table: table.to_owned(),
        }
        .into());
    }
    if key.values().any(|value| *value == Value::Null) {
        return Ok(None);
    }
    let condition: Vec<String> = key
        .keys()
        .enumerate()
        .map(|(at, column)| format!("{} = ?{}", quote_ident(column), at + 1))
        .collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE {} LIMIT 2",
        select_list(&schema),
        quote_ident(table),
        condition.join(" AND ")
    );
    let params = bind_all(key.values(), 0, table)?;
    let mut rows = query_rows(db, &sql, params, &schema)?;
    if rows.len() > 1 {
        return Err(SchemaError::KeyNotUnique {
            table: table.to_owned(),
            key: key.keys().cloned().collect(),
            unique_keys: schema.unique_keys.clone(),
        }
        .into());
    }
    Ok(rows.pop())
}

fn set_marker(db: &SqliteDatabase, active: bool) -> Result<(), SideError> {
    db.conn
        .prepare_cached(SET_MARKER)
        .and_then(|mut statement| statement.execute([active]))
        .map(drop)
        .map_err(|error| db.failure(error))
}

fn select_list(schema: &TableSchema) -> String {
    schema
        .columns
        .iter()
        .map(|column| quote_ident(&column.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs a `SELECT` of [`select_list`] and reads the rows by the columns' types.
fn query_rows(
    db: &SqliteDatabase,
    sql: &str,
    params: Vec<ToSqlOutput<'_>>,
    schema: &TableSchema,
) -> Result<Vec<RowImage>, SideError> {
    let read = || -> rusqlite::Result<Vec<RowImage>> {
        let mut statement = db.conn.prepare_cached(sql)?;
        let mut rows = statement.query(params_from_iter(params))?;
        let mut images = Vec::new();
        while let Some(row) = rows.next()? {
            let mut image = RowImage::new();
            for (at, column) in schema.columns.iter().enumerate() {
                image.insert(
                    column.name.clone(),
                    value_from_sql(Some(column), row.get_ref(at)?),
                );
            }
            images.push(image);
        }
        Ok(images)
    };
    read().map_err(|error| db.failure(error))
}

/// Binds values for a statement; a value SQLite cannot hold exactly rejects the write.
fn bind_all<'a>(
    values: impl Iterator<Item = &'a Value>,
    index: usize,
    table: &str,
) -> Result<Vec<ToSqlOutput<'a>>, SideError> {
    values
        .map(|value| {
            value_to_sql(value).map_err(|message| SideError::Rejected {
                index: Some(index),
                table: table.to_owned(),
                message,
                dependency: false,
            })
        })
        .collect()
}

fn rejected(index: usize, table: &str, message: String) -> SideError {
    SideError::Rejected {
        index: Some(index),
        table: table.to_owned(),
        message,
        dependency: false,
    }
}

/// Applies one write inside the batch's transaction.
fn apply_one(
    db: &mut SqliteDatabase,
    index: usize,
    write: &RowWrite,
) -> Result<WriteEffect, SideError> {
    let table = write.table.as_str();
    let schema = db.table(table)?;
    let key_columns: Vec<String> = write.key.keys().cloned().collect();
    schema.check_key(&key_columns)?;
    if let Some((column, _)) = write.key.iter().find(|(_, value)| **value == Value::Null) {
        return Err(rejected(
            index,
            table,
            format!("key column {column} is NULL"),
        ));
    }
    let quoted_table = quote_ident(table);
    let key_condition: Vec<String> = key_columns
        .iter()
        .enumerate()
        .map(|(at, column)| format!("{} = ?{}", quote_ident(column), at + 1))
        .collect();
    let key_condition = key_condition.join(" AND ");
    let key_params = bind_all(write.key.values(), index, table)?;
    let run = |sql: &str, params: Vec<&ToSqlOutput<'_>>| -> Result<usize, SideError> {
        db.conn
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute(params_from_iter(params)))
            .map_err(|error| db.write_failure(error, Some(index), table))
    };

    if write.op == WriteOp::Delete {
        let sql = format!("DELETE FROM {quoted_table} WHERE {key_condition}");
        return Ok(effect(run(&sql, key_params.iter().collect())?));
    }

    // The fields to set, without the key columns (which must agree with the key).
    let mut fields: Vec<(&String, &Value)> = Vec::with_capacity(write.fields.len());
    for (column, value) in &write.fields {
        match write.key.get(column) {
            Some(key_value) if key_value == value => {}
            Some(_) => {
                return Err(rejected(
                    index,
                    table,
                    format!(
                        "field {column} differs from the key; a key changes by delete and upsert"
                    ),
                ));
            }
            None => fields.push((column, value)),
        }
    }
    schema.check_columns(fields.iter().map(|(column, _)| column.as_str()), true)?;
    let field_params = bind_all(fields.iter().map(|(_, value)| *value), index, table)?;

    let all_columns: Vec<String> = key_columns
        .iter()
        .chain(fields.iter().map(|(column, _)| *column))
        .map(|column| quote_ident(column))
        .collect();
    let placeholders: Vec<String> = (1..=all_columns.len()).map(|at| format!("?{at}")).collect();
    let insert = format!(
        "INSERT INTO {quoted_table} ({}) VALUES ({})",
        all_columns.join(", "),
        placeholders.join(", ")
    );
    let listed = |name: &str| write.key.contains_key(name) || write.fields.contains_key(name);
    let complete = schema.columns.iter().all(|column| {
        !column.not_null || column.has_default || column.generated || listed(&column.name)
    });
    let quoted_fields: Vec<String> = fields
        .iter()
        .map(|(column, _)| quote_ident(column))
        .collect();
    let params = || key_params.iter().chain(&field_params).collect();

    if complete {
        let conflict = if quoted_fields.is_empty() {
            format!(
                "ON CONFLICT ({}) DO NOTHING",
                all_columns[..key_columns.len()].join(", ")
            )
        } else {
            let set: Vec<String> = quoted_fields
                .iter()
                .map(|column| format!("{column} = excluded.{column}"))
                .collect();
            let differs: Vec<String> = quoted_fields
                .iter()
                .map(|column| format!("{column} IS NOT excluded.{column}"))
                .collect();
            format!(
                "ON CONFLICT ({}) DO UPDATE SET {} WHERE {}",
                all_columns[..key_columns.len()].join(", "),
                set.join(", "),
                differs.join(" OR ")
            )
        };
        return Ok(effect(run(&format!("{insert} {conflict}"), params())?));
    }

    // Field-level update of a row with required columns the write does not list.
    if !quoted_fields.is_empty() {
        let offset = key_columns.len();
        let set: Vec<String> = quoted_fields
            .iter()
            .enumerate()
            .map(|(at, column)| format!("{column} = ?{}", offset + at + 1))
            .collect();
        let differs: Vec<String> = quoted_fields
            .iter()
            .enumerate()
            .map(|(at, column)| format!("{column} IS NOT ?{}", offset + at + 1))
            .collect();
        let update = format!(
            "UPDATE {quoted_table} SET {} WHERE {key_condition} AND ({})",
            set.join(", "),
            differs.join(" OR ")
        );
        if run(&update, params())? > 0 {
            return Ok(WriteEffect::Changed);
        }
    }
    let exists_sql = format!("SELECT EXISTS (SELECT 1 FROM {quoted_table} WHERE {key_condition})");
    let exists: bool = db
        .conn
        .prepare_cached(&exists_sql)
        .and_then(|mut statement| {
            statement
                .query_row(params_from_iter(&key_params), |row| row.get(0))
                .optional()
        })
        .map_err(|error| db.failure(error))?
        .unwrap_or(false);
    if exists {
        return Ok(WriteEffect::Unchanged);
    }
    Ok(effect(run(&insert, params())?))
}

fn effect(changes: usize) -> WriteEffect {
    if changes > 0 {
        WriteEffect::Changed
    } else {
        WriteEffect::Unchanged
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rusqlite::Connection;

    use super::*;
    use crate::capture::sqlite::{SqliteCapture, test_database};
    use crate::capture::{CaptureStream, CaptureTable, Position};
    use crate::change::{ChangeOp, Timestamp};

    const SCHEMA: &str = "
        CREATE TABLE groups (code TEXT PRIMARY KEY, name TEXT);
        CREATE TABLE customers (
            id INTEGER PRIMARY KEY,
            account TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            email TEXT UNIQUE,
            grp TEXT REFERENCES groups (code),
            credit_limit DECIMAL(18,2),
            touched INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE kinds (
            k TEXT PRIMARY KEY,
            flag BOOLEAN,
            n BIGINT,
            f DOUBLE,
            money DECIMAL(18,2),
            exact TEXT DECIMAL(38,2),
            plain TEXT,
            at DATETIME,
            day DATE,
            data BLOB,
            doc JSON,
            anything,
            touched INTEGER NOT NULL DEFAULT 0);";

    fn options() -> SqliteOptions {
        SqliteOptions {
            busy_timeout: Duration::from_millis(100),
            ..SqliteOptions::default()
        }
    }

    fn setup() -> (tempfile::TempDir, std::path::PathBuf, SqliteWriter) {
        let (dir, path) = test_database(SCHEMA);
        let writer = SqliteWriter::open(&path, options()).expect("open");
        (dir, path, writer)
    }

    fn row(pairs: &[(&str, Value)]) -> RowImage {
        pairs
            .iter()
            .map(|(column, value)| ((*column).to_owned(), value.clone()))
            .collect()
    }

    fn text(text: &str) -> Value {
        Value::Text(text.to_owned())
    }

    fn customer(account: &str, name: &str) -> RowWrite {
        RowWrite::upsert(
            "customers",
            row(&[("account", text(account))]),
            row(&[("name", text(name))]),
        )
    }

    /// Every row of a table, for comparing whole tables.
    fn dump(path: &Path, table: &str) -> Vec<Vec<String>> {
        let conn = Connection::open(path).unwrap();
        let mut statement = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
            .unwrap();
        let columns = statement.column_count();
        statement
            .query_map([], |row| {
                (0..columns)
                    .map(|at| row.get_ref(at).map(|value| format!("{value:?}")))
                    .collect()
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn every_kind() -> RowImage {
        row(&[
            ("k", text("all")),
            ("flag", Value::Boolean(true)),
            ("n", Value::Integer(i64::MIN)),
            ("f", Value::Float(0.1 + 0.2)),
            ("money", Value::Decimal("10.50".into())),
            (
                "exact",
                Value::Decimal("-123456789012345678901234567890.10".into()),
            ),
            ("plain", text("naïve \"quoted\" 'text'")),
            (
                "at",
                Value::Timestamp(Timestamp {
                    seconds: 1_714_557_600,
                    nanos: 123_000_000,
                    offset_minutes: Some(120),
                }),
            ),
            ("day", Value::Date(-1)),
            ("data", Value::Bytes(vec![0, 1, 254, 255])),
            ("doc", Value::Json(r#"{"a":[1,2.5,null]}"#.into())),
            ("anything", Value::Null),
            ("touched", Value::Integer(0)),
        ])
    }

    #[test]
    fn every_value_kind_round_trips_through_apply_then_capture() {
        let (_dir, path, mut writer) = setup();
        let mut capture = SqliteCapture::open(&path, options()).unwrap();
        capture
            .install(&[CaptureTable::new("kinds", &["k"])])
            .unwrap();
        let mut expected = every_kind();
        let key = row(&[("k", text("all"))]);
        writer
            .apply(&[RowWrite::upsert("kinds", key.clone(), expected.clone())])
            .unwrap();
        assert_eq!(
            writer.read_row("kinds", &key).unwrap().as_ref(),
            Some(&expected)
        );

        // Another writer touches the row: the captured image is what apply stored.
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE kinds SET touched = 1", [])
            .unwrap();
        let changes = capture.read(Position::START, 10).unwrap();
        assert_eq!(
            changes.len(),
            1,
            "the apply itself was captured: {changes:#?}"
        );
        assert_eq!(changes[0].before.as_ref(), Some(&expected));
        expected.insert("touched".into(), Value::Integer(1));
        assert_eq!(changes[0].after.as_ref(), Some(&expected));
        assert_eq!(changes[0].changed_columns(), ["touched"]);
    }

    #[test]
    fn decimals_keep_their_scale_and_local_timestamps_stay_local() {
        let (_dir, _path, mut writer) = setup();
        let key = row(&[("k", text("d"))]);
        let local = Timestamp {
            seconds: 1_714_557_600,
            nanos: 0,
            offset_minutes: None,
        };
        // DECIMAL(18,2) has NUMERIC affinity: its declared scale is what comes back.
        // TEXT DECIMAL(38,2) has TEXT affinity: the text as written comes back.
        for (money, scaled, exact) in [
            ("10.5", "10.50", "10.5"),
            ("0.00", "0.00", "0.00"),
            ("-7", "-7.00", "-7"),
            ("0.125", "0.125", "99999999999999999999.999"),
        ] {
            let fields = row(&[
                ("money", Value::Decimal(money.into())),
                ("exact", Value::Decimal(exact.into())),
                ("at", Value::Timestamp(local)),
            ]);
            writer
                .apply(&[RowWrite::upsert("kinds", key.clone(), fields)])
                .unwrap();
            let stored = writer.read_row("kinds", &key).unwrap().unwrap();
            assert_eq!(stored["money"], Value::Decimal(scaled.into()));
            assert_eq!(stored["exact"], Value::Decimal(exact.into()));
            assert_eq!(stored["at"], Value::Timestamp(local));
        }
    }

    #[test]
    fn applying_the_same_batch_twice_changes_nothing() {
        let (_dir, path, mut writer) = setup();
        let batch = vec![
            customer("C-1", "Ada"),
            customer("C-2", "Grace"),
            RowWrite::upsert("kinds", row(&[("k", text("all"))]), every_kind()),
            RowWrite::delete("customers", row(&[("account", text("C-2"))])),
            customer("C-3", "Edsger"),
        ];
        let first = writer.apply(&batch).unwrap();
        assert_eq!(first.changed(), 5);
        let tables = (dump(&path, "customers"), dump(&path, "kinds"));
        let second = writer.apply(&batch).unwrap();
        assert_eq!((dump(&path, "customers"), dump(&path, "kinds")), tables);
        // The re-upsert of C-2 inserts it again before the delete removes it again.
        assert_eq!(
            second.effects,
            [
                WriteEffect::Unchanged,
                WriteEffect::Changed,
                WriteEffect::Unchanged,
                WriteEffect::Changed,
                WriteEffect::Unchanged
            ]
        );
    }

    #[test]
    fn a_checked_write_whose_row_changed_since_it_was_read_is_skipped() {
        let (_dir, path, mut writer) = setup();
        writer
            .apply(&[customer("C-1", "Ada"), customer("C-2", "Grace")])
            .unwrap();
        let name = |value: &str| Some(Some(row(&[("name", text(value))])));
        let batch = vec![
            // As read: applied.
            customer("C-1", "Ada Lovelace"),
            // An application renamed C-2 after the engine read it: skipped.
            customer("C-2", "Grace Hopper"),
            // Expected absent, and absent: applied.
            customer("C-3", "Edsger"),
            // Expected absent, but an application created it: skipped.
            customer("C-4", "Barbara"),
            // Expected present, and present: deleted.
            RowWrite::delete("customers", row(&[("account", text("C-1"))])),
        ];
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "UPDATE customers SET name = 'Grace (app)' WHERE account = 'C-2';
                 INSERT INTO customers (account, name) VALUES ('C-4', 'Barbara (app)');",
            )
            .unwrap();
        let expected = vec![
            name("Ada"),
            name("Grace"),
            Some(None),
            Some(None),
            name("Ada Lovelace"),
        ];
        let checked = writer.apply_checked(&batch, &expected).unwrap();
        assert_eq!(checked.stale, [1, 3]);
        assert_eq!(
            checked.report.effects,
            [
                WriteEffect::Changed,
                WriteEffect::Unchanged,
                WriteEffect::Changed,
                WriteEffect::Unchanged,
                WriteEffect::Changed
            ]
        );
        let app = Connection::open(&path).unwrap();
        let mut statement = app
            .prepare("SELECT account, name FROM customers ORDER BY account")
            .unwrap();
        let rows: Vec<(String, String)> = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected_rows = [
            ("C-2", "Grace (app)"),
            ("C-3", "Edsger"),
            ("C-4", "Barbara (app)"),
        ]
        .map(|(account, name)| (account.to_owned(), name.to_owned()));
        assert_eq!(rows, expected_rows);
    }

    #[test]
    fn an_upsert_sets_only_the_listed_fields() {
        let (_dir, path, mut writer) = setup();
        let app = Connection::open(&path).unwrap();
        app.execute_batch(
            "INSERT INTO customers (account, name, email, credit_limit, touched)
             VALUES ('C-1', 'Ada', 'ada@example.com', 100, 7);",
        )
        .unwrap();
        let key = row(&[("account", text("C-1"))]);
        // `name` is NOT NULL without a default: the write does not list it.
        let report = writer
            .apply(&[RowWrite::upsert(
                "customers",
                key.clone(),
                row(&[("email", text("a@example.org")), ("account", text("C-1"))]),
            )])
            .unwrap();
        assert_eq!(report.effects, [WriteEffect::Changed]);
        let stored = writer.read_row("customers", &key).unwrap().unwrap();
        assert_eq!(stored["email"], text("a@example.org"));
        assert_eq!(stored["name"], text("Ada"));
        assert_eq!(stored["credit_limit"], Value::Decimal("100.00".into()));
        assert_eq!(stored["touched"], Value::Integer(7));

        // The same partial write again: nothing to do.
        let again = writer
            .apply(&[RowWrite::upsert(
                "customers",
                key,
                row(&[("email", text("a@example.org"))]),
            )])
            .unwrap();
        assert_eq!(again.effects, [WriteEffect::Unchanged]);

        // A new row lacking a required column is the target's to refuse.
        let error = writer
            .apply(&[RowWrite::upsert(
                "customers",
                row(&[("account", text("C-9"))]),
                row(&[("email", text("x@example.org"))]),
            )])
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("NOT NULL constraint failed: customers.name"),
            "{error}"
        );
    }

    #[test]
    fn the_engines_writes_are_not_captured_but_other_writers_are() {
        let (_dir, path, mut writer) = setup();
        let mut capture = SqliteCapture::open(&path, options()).unwrap();
        capture
            .install(&[CaptureTable::new("customers", &["account"])])
            .unwrap();
        let app = Connection::open(&path).unwrap();
        writer
            .apply(&[customer("E-1", "engine"), customer("E-2", "engine")])
            .unwrap();
        app.execute(
            "INSERT INTO customers (account, name) VALUES ('A-1', 'app')",
            [],
        )
        .unwrap();
        writer
            .apply(&[
                customer("A-1", "engine renames"),
                RowWrite::delete("customers", row(&[("account", text("E-1"))])),
            ])
            .unwrap();
        app.execute(
            "UPDATE customers SET name = 'app again' WHERE account = 'E-2'",
            [],
        )
        .unwrap();

        let marker: i64 = app
            .query_row("SELECT active FROM _dualwrite_origin", [], |row| row.get(0))
            .unwrap();
        assert_eq!(marker, 0, "the marker stayed set after the apply");
        let seen: Vec<(ChangeOp, Value)> = capture
            .read(Position::START, 100)
            .unwrap()
            .into_iter()
            .map(|change| (change.op, change.key["account"].clone()))
            .collect();
        assert_eq!(
            seen,
            [
                (ChangeOp::Insert, text("A-1")),
                (ChangeOp::Update, text("E-2"))
            ]
        );
    }

    #[test]
    fn a_refused_write_rolls_the_batch_back_and_is_named() {
        let (_dir, path, mut writer) = setup();
        writer.apply(&[customer("C-1", "Ada")]).unwrap();
        let before = dump(&path, "customers");
        let mut taken = customer("C-2", "Grace");
        taken.fields.insert("email".into(), text("dup@example.com"));
        let mut duplicate = customer("C-3", "Edsger");
        duplicate
            .fields
            .insert("email".into(), text("dup@example.com"));
        let error = writer
            .apply(&[customer("C-1", "Ada B."), taken, duplicate])
            .unwrap_err();
        match &error {
            SideError::Rejected {
                index,
                table,
                message,
                dependency,
            } => {
                assert_eq!(
                    (*index, table.as_str(), *dependency),
                    (Some(2), "customers", false)
                );
                assert!(
                    message.contains("UNIQUE constraint failed: customers.email"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            error.class(),
            Some(crate::change::ErrorClass::TargetRejected)
        );
        assert_eq!(dump(&path, "customers"), before);

        // A reference to a row not synced yet is a dependency, retryable later.
        let mut orphan = customer("C-4", "Niklaus");
        orphan.fields.insert("grp".into(), text("NOPE"));
        let error = writer.apply(&[orphan]).unwrap_err();
        assert!(
            matches!(
                error,
                SideError::Rejected {
                    index: Some(0),
                    dependency: true,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.class(),
            Some(crate::change::ErrorClass::DependencyMissing)
        );

        // Values SQLite cannot hold, and NULL keys, are refused before SQLite sees them.
        let nan = RowWrite::upsert(
            "kinds",
            row(&[("k", text("x"))]),
            row(&[("f", Value::Float(f64::NAN))]),
        );
        let null_key = RowWrite::delete("groups", row(&[("code", Value::Null)]));
        for (write, needle) in [(nan, "NaN"), (null_key, "is NULL")] {
            let error = writer.apply(&[customer("C-5", "x"), write]).unwrap_err();
            assert!(
                matches!(error, SideError::Rejected { index: Some(1), .. }),
                "{error:?}"
            );
            assert!(error.to_string().contains(needle), "{error}");
        }
        assert_eq!(dump(&path, "customers"), before);
    }

    #[test]
    fn writes_that_do_not_fit_the_schema_are_configuration_errors() {
        let (_dir, _path, mut writer) = setup();
        let cases = [
            (
                RowWrite::delete("custmers", row(&[("id", Value::Integer(1))])),
                "table custmers does not exist",
            ),
            (
                RowWrite::upsert(
                    "customers",
                    row(&[("account", text("C"))]),
                    row(&[("phone", text("1"))]),
                ),
                "has no column phone",
            ),
            (
                RowWrite::delete("customers", row(&[("name", text("Ada"))])),
                "is not unique",
            ),
        ];
        for (write, needle) in cases {
            let error = writer.apply(&[write]).unwrap_err();
            assert!(matches!(error, SideError::Schema(_)), "{error:?}");
            assert!(error.to_string().contains(needle), "{error}");
            assert_eq!(error.class(), None);
        }
        let schema = writer.table_schema("customers").unwrap();
        assert_eq!(schema.primary_key, ["id"]);
        assert!(schema.is_unique_key(&["email".to_owned()]));
        assert_eq!(
            schema.column("credit_limit").map(|c| c.scale),
            Some(Some(2))
        );
    }

    #[test]
    fn rows_are_read_by_key_and_scanned_in_key_order() {
        let (_dir, _path, mut writer) = setup();
        let batch: Vec<RowWrite> = (1..=5)
            .map(|at| customer(&format!("C-{at}"), &format!("name {at}")))
            .collect();
        writer.apply(&batch).unwrap();
        let key = row(&[("account", text("C-3"))]);
        let found = writer.read_row("customers", &key).unwrap().unwrap();
        assert_eq!(found["name"], text("name 3"));
        assert_eq!(
            writer
                .read_row("customers", &row(&[("account", text("none"))]))
                .unwrap(),
            None
        );
        let error = writer
            .read_row("customers", &row(&[("touched", Value::Integer(0))]))
            .unwrap_err();
        assert!(error.to_string().contains("not unique"), "{error}");

        let keys = ["account".to_owned()];
        let mut seen = Vec::new();
        let mut after: Option<RowImage> = None;
        loop {
            let chunk = writer.scan("customers", &keys, after.as_ref(), 2).unwrap();
            let Some(last) = chunk.last() else { break };
            after = Some(row(&[("account", last["account"].clone())]));
            seen.extend(chunk.iter().map(|row| row["account"].clone()));
        }
        assert_eq!(
            seen,
            (1..=5)
                .map(|at| text(&format!("C-{at}")))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_locked_or_vanished_database_is_unavailable() {
        let (dir, path, mut writer) = setup();
        let app = Connection::open(&path).unwrap();
        app.execute_batch("BEGIN IMMEDIATE; INSERT INTO groups VALUES ('G', 'g');")
            .unwrap();
        let error = writer.apply(&[customer("C-1", "Ada")]).unwrap_err();
        assert!(error.is_unavailable(), "{error:?}");
        assert_eq!(
            error.class(),
            Some(crate::change::ErrorClass::TargetUnavailable)
        );
        app.execute_batch("COMMIT").unwrap();
        writer.apply(&[customer("C-1", "Ada")]).unwrap();

        std::fs::rename(&path, dir.path().join("moved.db")).unwrap();
        let error = writer.apply(&[customer("C-2", "Grace")]).unwrap_err();
        assert!(error.is_unavailable(), "{error:?}");
        let missing = SqliteWriter::open(&path, options()).unwrap_err();
        assert!(missing.is_unavailable(), "{missing:?}");
        assert!(!path.exists(), "opening created the file");
    }
}
