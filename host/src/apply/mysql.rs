//! The MariaDB/MySQL connector's apply: a batch of upserts and deletes by key in one
//! transaction that first bumps the side's marker row in `_dualwrite_writes`, so the
//! capture ([`crate::capture::mysql`], which also documents the type mapping) sees the
//! marker as the transaction's first row event and drops the transaction (no echo);
//! and reads of rows by key.
//!
//! Values are bound as typed parameters of prepared statements (cached per connection
//! by the driver): decimals as their exact text, instants converted to UTC for
//! `TIMESTAMP` columns (sessions run in UTC), local date-times as they are for
//! `DATETIME`. An upsert is `INSERT ... ON DUPLICATE KEY UPDATE <listed columns>`; the
//! server reports 0 affected rows when nothing changed, so a redelivered write reports
//! [`WriteEffect::Unchanged`]. `ON DUPLICATE KEY` fires on any unique key, so each
//! assignment applies only when the row found has the write's key; a row found by
//! another unique key is left alone and the write is rejected as a collision (never an
//! update of another row). A write that leaves out a NOT NULL column without a default
//! runs as an `UPDATE` of the listed columns and, only if the row is missing, an
//! `INSERT` (which the target then rejects, as it should).
//!
//! [`ApplyBatch::apply_checked`] reads each checked row with `SELECT ... FOR UPDATE`
//! inside the write transaction, so an application's write that landed since the
//! engine read the row is never overwritten unseen.

use mysql::prelude::Queryable;
use mysql::{Params, Value as MyValue};

use super::{
    ApplyBatch, ApplyReport, CheckedApply, Expectation, RowWrite, WriteEffect, check_stored,
};
use crate::capture::mysql::values::{Codec, Source, read_value, write_value};
use crate::capture::mysql::{MySession, MysqlOptions, MysqlTable, quote_ident};
use crate::capture::{RowImage, SchemaError, SideError, TableSchema};
use crate::change::{Value, WriteOp};

/// Writes to and reads from one MariaDB/MySQL database.
pub struct MysqlWriter {
    session: MySession,
    /// The connection (by [`MySession::connected`] count) the marker table was checked
    /// on.
    marker_on: u64,
}

impl std::fmt::Debug for MysqlWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlWriter")
            .field("url", &self.session.url())
            .finish_non_exhaustive()
    }
}

/// One statement of a write: SQL and its parameters.
#[derive(Debug, Clone)]
struct Step {
    sql: String,
    params: Vec<MyValue>,
}

/// What a write runs inside the batch's transaction.
enum Plan {
    /// One statement; rows affected > 0 means the row changed.
    Single(Step),
    /// An `INSERT ... ON DUPLICATE KEY UPDATE` that changes only a row with this key;
    /// when it changed nothing, whether the row exists tells an unchanged row from a
    /// collision with another row on another unique key.
    Upsert { upsert: Step, exists: Step },
    /// A field-level update of a row with required columns the write does not list:
    /// the update, then (if nothing changed) whether the row exists, then the insert.
    Partial {
        update: Option<Step>,
        exists: Step,
        insert: Step,
    },
}

fn params(values: &[MyValue]) -> Params {
    if values.is_empty() {
        Params::Empty
    } else {
        Params::Positional(values.to_vec())
    }
}

fn rejected(index: usize, table: &str, message: String) -> SideError {
    SideError::Rejected {
        index: Some(index),
        table: table.to_owned(),
        message,
        dependency: false,
    }
}

impl MysqlWriter {
    /// A writer for the database at `options.url`, marking its transactions with the row
    /// `options.name` of `_dualwrite_writes`. Connects on first use.
    pub fn open(options: MysqlOptions) -> MysqlWriter {
        MysqlWriter {
            session: MySession::new(options),
            marker_on: 0,
        }
    }

    fn table(&mut self, table: &str) -> Result<std::sync::Arc<MysqlTable>, SideError> {
        self.session.table(table)
    }

    /// Creates the marker table once per connection (a capture may not be installed
    /// yet, and the table may have been dropped).
    fn ensure_marker(&mut self) -> Result<(), SideError> {
        self.session.conn()?;
        if self.marker_on == self.session.connected {
            return Ok(());
        }
        self.session
            .run(|conn| conn.query_drop(crate::capture::mysql::CREATE_MARKER_TABLE))?;
        self.marker_on = self.session.connected;
        Ok(())
    }

    /// Turns a statement's failure into the batch's error: connectivity faults make the
    /// side unavailable, what an operator must fix is refused, anything else the server
    /// refused rejects write `index`.
    fn write_failure(
        &mut self,
        error: &mysql::Error,
        index: Option<usize>,
        table: &str,
    ) -> SideError {
        let classified = self.session.fault(error);
        match (error, classified) {
            (_, unavailable @ SideError::Unavailable { .. }) => unavailable,
            (
                _,
                refused @ SideError::Refused {
                    code: "mysql.missing_privilege" | "mysql.bad_credentials",
                    ..
                },
            ) => refused,
            (mysql::Error::MySqlError(server), _) => SideError::Rejected {
                index,
                table: if index.is_some() {
                    table.to_owned()
                } else {
                    String::new()
                },
                message: format!("{} (error {})", server.message, server.code),
                dependency: server.code == 1452,
            },
            (_, other) => other,
        }
    }

    /// Runs a read and decodes the rows by the table's columns.
    fn query_rows(
        &mut self,
        sql: &str,
        values: Vec<MyValue>,
        table: &MysqlTable,
    ) -> Result<Vec<RowImage>, SideError> {
        let rows: Vec<mysql::Row> = self.session.run(|conn| conn.exec(sql, params(&values)))?;
        Ok(rows.into_iter().map(|row| decode_row(table, row)).collect())
    }
}

fn decode_row(table: &MysqlTable, row: mysql::Row) -> RowImage {
    table
        .schema
        .columns
        .iter()
        .zip(&table.codecs)
        .zip(row.unwrap())
        .map(|((column, codec), value)| {
            (column.name.clone(), read_value(codec, value, Source::Query))
        })
        .collect()
}

/// The parameters for `values` in `columns` (by name) of `table`.
fn bind<'a>(
    table: &MysqlTable,
    pairs: impl Iterator<Item = (&'a String, &'a Value)>,
    index: usize,
) -> Result<Vec<MyValue>, SideError> {
    pairs
        .map(|(name, value)| {
            let codec = codec(table, name);
            write_value(value, codec).map_err(|message| {
                rejected(
                    index,
                    &table.schema.table,
                    format!("column {name}: {message}"),
                )
            })
        })
        .collect()
}

fn codec<'a>(table: &'a MysqlTable, column: &str) -> &'a Codec {
    static OTHER: Codec = Codec::Other;
    table
        .schema
        .columns
        .iter()
        .position(|info| info.name == column)
        .map_or(&OTHER, |at| &table.codecs[at])
}

/// Keys read by one statement of [`MysqlWriter::read_rows`] at most.
const READ_ROWS_CHUNK: usize = 500;

fn select_list(schema: &TableSchema) -> String {
    schema
        .columns
        .iter()
        .map(|column| quote_ident(&column.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `k1 = ? AND k2 = ?` over the key's columns and their parameters.
fn key_condition(
    table: &MysqlTable,
    key: &RowImage,
    index: usize,
) -> Result<(String, Vec<MyValue>), SideError> {
    let condition: Vec<String> = key
        .keys()
        .map(|name| format!("{} = ?", quote_ident(name)))
        .collect();
    Ok((condition.join(" AND "), bind(table, key.iter(), index)?))
}

/// The statements of one write.
fn plan_write(table: &MysqlTable, index: usize, write: &RowWrite) -> Result<Plan, SideError> {
    let schema = &table.schema;
    let name = write.table.as_str();
    let key_columns: Vec<String> = write.key.keys().cloned().collect();
    schema.check_key(&key_columns)?;
    if let Some((column, _)) = write.key.iter().find(|(_, value)| **value == Value::Null) {
        return Err(rejected(
            index,
            name,
            format!("key column {column} is NULL"),
        ));
    }
    let quoted_table = quote_ident(name);
    let (condition, key_params) = key_condition(table, &write.key, index)?;
    if write.op == WriteOp::Delete {
        return Ok(Plan::Single(Step {
            sql: format!("DELETE FROM {quoted_table} WHERE {condition}"),
            params: key_params,
        }));
    }
    let mut fields: Vec<(&String, &Value)> = Vec::with_capacity(write.fields.len());
    for (column, value) in &write.fields {
        match write.key.get(column) {
            Some(key_value) if key_value == value => {}
            Some(_) => {
                return Err(rejected(
                    index,
                    name,
                    format!(
                        "field {column} differs from the key; a key changes by delete and upsert"
                    ),
                ));
            }
            None => fields.push((column, value)),
        }
    }
    schema.check_columns(fields.iter().map(|(column, _)| column.as_str()), true)?;
    let field_params = bind(table, fields.iter().copied(), index)?;
    let all: Vec<String> = write
        .key
        .keys()
        .chain(fields.iter().map(|(column, _)| *column))
        .map(|column| quote_ident(column))
        .collect();
    let values: Vec<MyValue> = key_params.iter().chain(&field_params).cloned().collect();
    let insert = format!(
        "INSERT INTO {quoted_table} ({}) VALUES ({})",
        all.join(", "),
        vec!["?"; all.len()].join(", ")
    );
    let listed = |column: &str| write.key.contains_key(column) || write.fields.contains_key(column);
    let complete = schema.columns.iter().all(|column| {
        !column.not_null || column.has_default || column.generated || listed(&column.name)
    });
    if complete {
        // ON DUPLICATE KEY fires on any unique key: a row found by another key (an
        // insert colliding with a different row) must not be changed, so every
        // assignment applies only when the found row has this key.
        let same_key: Vec<String> = write
            .key
            .keys()
            .map(|column| {
                let column = quote_ident(column);
                format!("{column} <=> VALUES({column})")
            })
            .collect();
        let same_key = same_key.join(" AND ");
        let update: Vec<String> = if fields.is_empty() {
            let first = quote_ident(&key_columns[0]);
            vec![format!("{first} = {first}")]
        } else {
            fields
                .iter()
                .map(|(column, _)| {
                    let column = quote_ident(column);
                    format!("{column} = IF({same_key}, VALUES({column}), {column})")
                })
                .collect()
        };
        return Ok(Plan::Upsert {
            upsert: Step {
                sql: format!("{insert} ON DUPLICATE KEY UPDATE {}", update.join(", ")),
                params: values,
            },
            exists: Step {
                sql: format!("SELECT 1 FROM {quoted_table} WHERE {condition}"),
                params: key_params,
            },
        });
    }
    let update = (!fields.is_empty()).then(|| {
        let set: Vec<String> = fields
            .iter()
            .map(|(column, _)| format!("{} = ?", quote_ident(column)))
            .collect();
        Step {
            sql: format!(
                "UPDATE {quoted_table} SET {} WHERE {condition}",
                set.join(", ")
            ),
            params: field_params.iter().chain(&key_params).cloned().collect(),
        }
    });
    Ok(Plan::Partial {
        update,
        exists: Step {
            sql: format!("SELECT 1 FROM {quoted_table} WHERE {condition}"),
            params: key_params,
        },
        insert: Step {
            sql: insert,
            params: values,
        },
    })
}

/// What one planned write did.
enum Outcome {
    Changed,
    Unchanged,
    /// The insert hit another row on a unique key other than the write's.
    Collided,
}

/// Runs one planned write.
fn run_plan(conn: &mut mysql::Conn, plan: &Plan) -> Result<Outcome, mysql::Error> {
    let changed = |changed: bool| {
        if changed {
            Outcome::Changed
        } else {
            Outcome::Unchanged
        }
    };
    match plan {
        Plan::Single(step) => {
            conn.exec_drop(&step.sql, params(&step.params))?;
            Ok(changed(conn.affected_rows() > 0))
        }
        Plan::Upsert { upsert, exists } => {
            conn.exec_drop(&upsert.sql, params(&upsert.params))?;
            if conn.affected_rows() > 0 {
                return Ok(Outcome::Changed);
            }
            let found: Option<i64> = conn.exec_first(&exists.sql, params(&exists.params))?;
            Ok(if found.is_some() {
                Outcome::Unchanged
            } else {
                Outcome::Collided
            })
        }
        Plan::Partial {
            update,
            exists,
            insert,
        } => {
            if let Some(update) = update {
                conn.exec_drop(&update.sql, params(&update.params))?;
                if conn.affected_rows() > 0 {
                    return Ok(Outcome::Changed);
                }
            }
            let found: Option<i64> = conn.exec_first(&exists.sql, params(&exists.params))?;
            if found.is_some() {
                return Ok(Outcome::Unchanged);
            }
            conn.exec_drop(&insert.sql, params(&insert.params))?;
            Ok(changed(conn.affected_rows() > 0))
        }
    }
}

/// A row check inside the transaction: the current row by key, locked.
struct Check {
    sql: String,
    params: Vec<MyValue>,
    table: std::sync::Arc<MysqlTable>,
    expected: Option<RowImage>,
}

impl ApplyBatch for MysqlWriter {
    fn table_schema(&mut self, table: &str) -> Result<TableSchema, SideError> {
        self.session.forget_tables();
        Ok(self.table(table)?.schema.clone())
    }

    fn current_schema(&mut self, table: &str) -> Result<std::sync::Arc<TableSchema>, SideError> {
        Ok(std::sync::Arc::new(self.table(table)?.schema.clone()))
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
        self.ensure_marker()?;
        // Plan everything before the transaction opens.
        let mut plans = Vec::with_capacity(writes.len());
        for (index, write) in writes.iter().enumerate() {
            let table = self.table(&write.table)?;
            let plan = plan_write(&table, index, write)?;
            let readback = match write.op {
                WriteOp::Delete => None,
                WriteOp::Upsert => {
                    let (condition, values) = key_condition(&table, &write.key, index)?;
                    Some(Check {
                        sql: format!(
                            "SELECT {} FROM {} WHERE {condition}",
                            select_list(&table.schema),
                            quote_ident(&write.table)
                        ),
                        params: values,
                        table: table.clone(),
                        expected: None,
                    })
                }
            };
            let check = match expected.get(index) {
                Some(Some(expectation)) => {
                    let (condition, values) = key_condition(&table, &write.key, index)?;
                    Some(Check {
                        sql: format!(
                            "SELECT {} FROM {} WHERE {condition} FOR UPDATE",
                            select_list(&table.schema),
                            quote_ident(&write.table)
                        ),
                        params: values,
                        table: table.clone(),
                        expected: expectation.clone(),
                    })
                }
                _ => None,
            };
            plans.push((plan, check, readback));
        }
        let name = self.session.options.name.clone();
        let conn = self.session.conn()?;
        let mut checked = CheckedApply::default();
        let mut failure: Option<(mysql::Error, Option<usize>)> = None;
        let mut collided: Option<usize> = None;
        let mut altered: Option<SideError> = None;
        if let Err(error) = conn.query_drop("START TRANSACTION").and_then(|()| {
            conn.exec_drop(
                "INSERT INTO _dualwrite_writes (name, writes) VALUES (?, 1) \
                 ON DUPLICATE KEY UPDATE writes = writes + 1",
                (&name,),
            )
        }) {
            failure = Some((error, None));
        }
        if failure.is_none() {
            for (index, (plan, check, readback)) in plans.iter().enumerate() {
                if let Some(check) = check {
                    let rows: Vec<mysql::Row> = match conn.exec(&check.sql, params(&check.params)) {
                        Ok(rows) => rows,
                        Err(error) => {
                            failure = Some((error, Some(index)));
                            break;
                        }
                    };
                    let now = rows
                        .into_iter()
                        .next()
                        .map(|row| decode_row(&check.table, row));
                    let as_expected = match (&check.expected, &now) {
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
                match run_plan(conn, plan) {
                    Ok(Outcome::Changed) => checked.report.effects.push(WriteEffect::Changed),
                    Ok(Outcome::Unchanged) => checked.report.effects.push(WriteEffect::Unchanged),
                    Ok(Outcome::Collided) => {
                        collided = Some(index);
                        break;
                    }
                    Err(error) => {
                        failure = Some((error, Some(index)));
                        break;
                    }
                }
                let Some(readback) = readback else {
                    checked.stored.push(None);
                    continue;
                };
                let rows: Vec<mysql::Row> = match conn.exec(&readback.sql, params(&readback.params))
                {
                    Ok(rows) => rows,
                    Err(error) => {
                        failure = Some((error, Some(index)));
                        break;
                    }
                };
                let stored = rows
                    .into_iter()
                    .next()
                    .map(|row| decode_row(&readback.table, row));
                if let Err(error) = check_stored(
                    &readback.table.schema,
                    index,
                    &writes[index],
                    stored.as_ref(),
                ) {
                    altered = Some(error);
                    break;
                }
                checked.stored.push(stored);
            }
        }
        if let Some(error) = altered {
            let _ = conn.query_drop("ROLLBACK");
            return Err(error);
        }
        if let Some(index) = collided {
            let _ = conn.query_drop("ROLLBACK");
            let write = &writes[index];
            let key: Vec<&str> = write.key.keys().map(String::as_str).collect();
            return Err(rejected(
                index,
                &write.table,
                format!(
                    "the row collides with another row of {} on a unique key other than \
                     ({})",
                    write.table,
                    key.join(", ")
                ),
            ));
        }
        if failure.is_none()
            && let Err(error) = conn.query_drop("COMMIT")
        {
            failure = Some((error, None));
        }
        match failure {
            None => Ok(checked),
            Some((error, index)) => {
                let _ = conn.query_drop("ROLLBACK");
                let table = index.map_or("", |index| writes[index].table.as_str());
                Err(self.write_failure(&error, index, table))
            }
        }
    }

    fn read_row(&mut self, table: &str, key: &RowImage) -> Result<Option<RowImage>, SideError> {
        let found = self.table(table)?;
        found
            .schema
            .check_columns(key.keys().map(String::as_str), false)?;
        if key.is_empty() {
            return Err(SchemaError::EmptyKey {
                table: table.to_owned(),
            }
            .into());
        }
        if key.values().any(|value| *value == Value::Null) {
            return Ok(None);
        }
        let (condition, values) =
            key_condition(&found, key, 0).map_err(|error| SchemaError::Unsupported {
                table: table.to_owned(),
                reason: format!("the key cannot be read: {error}"),
            })?;
        let sql = format!(
            "SELECT {} FROM {} WHERE {condition} LIMIT 2",
            select_list(&found.schema),
            quote_ident(table)
        );
        let mut rows = self.query_rows(&sql, values, &found)?;
        if rows.len() > 1 {
            return Err(SchemaError::KeyNotUnique {
                table: table.to_owned(),
                key: key.keys().cloned().collect(),
                unique_keys: found.schema.unique_keys.clone(),
            }
            .into());
        }
        Ok(rows.pop())
    }

    /// One statement per [`READ_ROWS_CHUNK`] keys (`WHERE (k1, k2) IN ((?, ?), ...)`).
    /// The server compares by the columns' collations (a text key may match another
    /// case), so a row answers a key only when its key values are exactly the key's;
    /// a key no row answered that way is read on its own, with `read_row`'s answer.
    fn read_rows(
        &mut self,
        table: &str,
        keys: &[RowImage],
    ) -> Result<Vec<Option<RowImage>>, SideError> {
        let Some(key_columns) = super::shared_key_columns(keys) else {
            return keys.iter().map(|key| self.read_row(table, key)).collect();
        };
        let found = self.table(table)?;
        found
            .schema
            .check_columns(key_columns.iter().map(|name| name.as_str()), false)?;
        let exact = |image: &RowImage| -> String {
            let values: Vec<Option<&Value>> = key_columns
                .iter()
                .map(|column| image.get(*column))
                .collect();
            format!("{values:?}")
        };
        let tuple = format!("({})", vec!["?"; key_columns.len()].join(", "));
        let columns: Vec<String> = key_columns.iter().map(|name| quote_ident(name)).collect();
        let mut answers: Vec<Option<RowImage>> = vec![None; keys.len()];
        let readable: Vec<usize> = (0..keys.len())
            .filter(|&at| keys[at].values().all(|value| *value != Value::Null))
            .collect();
        for chunk in readable.chunks(READ_ROWS_CHUNK) {
            let mut values = Vec::with_capacity(chunk.len() * key_columns.len());
            for &at in chunk {
                values.extend(bind(&found, keys[at].iter(), 0).map_err(|error| {
                    SchemaError::Unsupported {
                        table: table.to_owned(),
                        reason: format!("the key cannot be read: {error}"),
                    }
                })?);
            }
            let sql = format!(
                "SELECT {} FROM {} WHERE ({}) IN ({})",
                select_list(&found.schema),
                quote_ident(table),
                columns.join(", "),
                vec![tuple.as_str(); chunk.len()].join(", ")
            );
            let mut by_key: std::collections::HashMap<String, Vec<RowImage>> =
                std::collections::HashMap::new();
            for row in self.query_rows(&sql, values, &found)? {
                by_key.entry(exact(&row)).or_default().push(row);
            }
            for &at in chunk {
                match by_key.get(&exact(&keys[at])).map(Vec::as_slice) {
                    Some([row]) => answers[at] = Some(row.clone()),
                    // Several rows, or none with exactly this key: as read_row says.
                    _ => answers[at] = self.read_row(table, &keys[at])?,
                }
            }
        }
        Ok(answers)
    }

    fn count_rows(&mut self, table: &str) -> Result<u64, SideError> {
        self.table(table)?;
        let sql = format!("SELECT COUNT(*) FROM {}", quote_ident(table));
        let count: Option<u64> = self.session.run(|conn| conn.query_first(&sql))?;
        Ok(count.unwrap_or_default())
    }

    fn scan(
        &mut self,
        table: &str,
        key_columns: &[String],
        after: Option<&RowImage>,
        limit: usize,
    ) -> Result<Vec<RowImage>, SideError> {
        let found = self.table(table)?;
        found.schema.check_key(key_columns)?;
        let quoted: Vec<String> = key_columns.iter().map(|name| quote_ident(name)).collect();
        let mut conditions: Vec<String> = quoted
            .iter()
            .map(|column| format!("{column} IS NOT NULL"))
            .collect();
        let mut values = Vec::new();
        if let Some(after) = after {
            // (k1, k2) > (a, b) spelled out, so the server uses the key's index.
            let mut alternatives = Vec::new();
            for at in 0..key_columns.len() {
                let mut parts = Vec::new();
                for (before, column) in quoted[..at].iter().enumerate() {
                    parts.push(format!("{column} = ?"));
                    values.push(key_columns[before].clone());
                }
                parts.push(format!("{} > ?", quoted[at]));
                values.push(key_columns[at].clone());
                alternatives.push(format!("({})", parts.join(" AND ")));
            }
            conditions.push(format!("({})", alternatives.join(" OR ")));
            let pairs: Vec<(String, Value)> = values
                .iter()
                .map(|column| {
                    (
                        column.clone(),
                        after.get(column).cloned().unwrap_or(Value::Null),
                    )
                })
                .collect();
            let bound = bind(
                &found,
                pairs.iter().map(|(column, value)| (column, value)),
                0,
            )
            .map_err(|error| SchemaError::Unsupported {
                table: table.to_owned(),
                reason: format!("the scan position cannot be written: {error}"),
            })?;
            let sql = format!(
                "SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT {limit}",
                select_list(&found.schema),
                quote_ident(table),
                conditions.join(" AND "),
                quoted.join(", ")
            );
            return self.query_rows(&sql, bound, &found);
        }
        let sql = format!(
            "SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT {limit}",
            select_list(&found.schema),
            quote_ident(table),
            conditions.join(" AND "),
            quoted.join(", ")
        );
        self.query_rows(&sql, Vec::new(), &found)
    }

    fn disconnect(&mut self) {
        // A new session drops the old one's connection; it counts connections on from
        // the old one, so the marker table is checked again on the next.
        let mut fresh = MySession::new(self.session.options.clone());
        fresh.connected = self.session.connected;
        self.session = fresh;
    }
}
