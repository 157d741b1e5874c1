//! The PostgreSQL connector's apply: a batch of upserts and deletes by key in one
//! transaction on a session tagged with the side's replication origin, so the capture
//! ([`crate::capture::postgres`], which also documents the type mapping) drops it (no
//! echo); and reads of rows by key.
//!
//! Every parameter is bound as text and cast to the column's declared type
//! (`CAST($1 AS numeric(18,2))`), the same text forms the capture reads, so values
//! round-trip exactly. An upsert is `INSERT ... ON CONFLICT (key) DO UPDATE SET <listed
//! columns> WHERE <any of them is distinct>`, so a redelivered write touches nothing
//! and reports [`WriteEffect::Unchanged`]. PostgreSQL checks NOT NULL before it looks
//! for the conflicting row, so a write that leaves out a NOT NULL column without a
//! default runs as an `UPDATE` of the listed columns and, only if the row is missing, an
//! `INSERT` (which the target then rejects, as it should). Statements are prepared once
//! per connection and cached.
//!
//! A batch runs in one `REPEATABLE READ` transaction: each write whose row the engine
//! decided on is first read `FOR UPDATE` and skipped as stale when it is no longer as the
//! engine saw it; each upsert is read back and refused when the row does not hold what
//! it set ([`super::check_stored`]). A row an application changes after the
//! transaction's snapshot fails the statement (serialization failure, or a unique key
//! where the engine expected no row) rather than being overwritten unseen, and the batch
//! runs again, so its checks see the change.
//!
//! The origin is set up on each new connection (`pg_replication_origin_session_setup`,
//! which needs superuser or an explicit grant on PostgreSQL 15); a connection still
//! holding it (a previous session not yet gone) reads as an unavailable side and is
//! retried.

use std::collections::HashMap;

use postgres::Statement;
use postgres::error::SqlState;
use postgres::types::Type;

use super::{
    ApplyBatch, ApplyReport, CheckedApply, Expectation, RowWrite, WriteEffect, check_stored,
};
use crate::capture::postgres::values::{value_from_text, value_to_text};
use crate::capture::postgres::{PgSession, PostgresOptions, quote_ident};
use crate::capture::{ColumnInfo, RowImage, SchemaError, SideError, TableSchema};
use crate::change::{Value, ValueKind, WriteOp};

/// Writes to and reads from one PostgreSQL database.
pub struct PostgresWriter {
    session: PgSession,
    statements: HashMap<String, Statement>,
    /// The connection (by [`PgSession::connected`] count) the statements and the origin
    /// belong to.
    prepared_on: u64,
    origin_on: u64,
}

impl std::fmt::Debug for PostgresWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresWriter")
            .field("url", &self.session.url())
            .finish_non_exhaustive()
    }
}

/// One statement of a write: SQL and its text parameters.
struct Step {
    sql: String,
    params: Vec<Option<String>>,
}

/// What a write runs inside the batch's transaction.
enum Plan {
    /// One statement; rows affected > 0 means the row changed.
    Single(Step),
    /// A field-level update of a row with required columns the write does not list:
    /// the update, then (if nothing changed) whether the row exists, then the insert.
    Partial {
        update: Option<Step>,
        exists: Step,
        insert: Step,
    },
}

impl PostgresWriter {
    /// A writer for the database at `options.url`, tagging its writes with the origin
    /// `options.name`. Connects on first use.
    pub fn open(options: PostgresOptions) -> PostgresWriter {
        PostgresWriter {
            session: PgSession::new(options),
            statements: HashMap::new(),
            prepared_on: 0,
            origin_on: 0,
        }
    }

    fn schema(&mut self, table: &str) -> Result<std::sync::Arc<TableSchema>, SideError> {
        self.session.table(table)
    }

    /// The cached prepared statement for `sql` with `count` text parameters.
    fn prepare(&mut self, sql: &str, count: usize) -> Result<Statement, SideError> {
        self.session.client()?;
        if self.prepared_on != self.session.connected {
            self.statements.clear();
            self.prepared_on = self.session.connected;
        }
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let types = vec![Type::TEXT; count];
        let statement = self
            .session
            .run(|client| client.prepare_typed(sql, &types))?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Tags this connection's transactions with the side's replication origin.
    fn ensure_origin(&mut self) -> Result<(), SideError> {
        self.session.client()?;
        if self.origin_on == self.session.connected {
            return Ok(());
        }
        let name = self.session.options.name.clone();
        self.session.run(|client| {
            client.execute(
                "SELECT pg_replication_origin_create($1) \
                 WHERE pg_replication_origin_oid($1) IS NULL",
                &[&name],
            )?;
            client.execute("SELECT pg_replication_origin_session_setup($1)", &[&name])
        })?;
        self.origin_on = self.session.connected;
        Ok(())
    }

    /// Runs a read and decodes the rows by the table's columns.
    fn query_rows(
        &mut self,
        sql: &str,
        params: Vec<Option<String>>,
        schema: &TableSchema,
    ) -> Result<Vec<RowImage>, SideError> {
        let statement = self.prepare(sql, params.len())?;
        let rows = self.session.run(|client| {
            let params: Vec<&(dyn postgres::types::ToSql + Sync)> = params
                .iter()
                .map(|param| param as &(dyn postgres::types::ToSql + Sync))
                .collect();
            client.query(&statement, &params)
        })?;
        Ok(rows.iter().map(|row| row_image(row, schema)).collect())
    }

    /// Turns a statement's failure into the batch's error: connectivity faults make the
    /// side unavailable, anything else the server refused rejects write `index`.
    fn write_failure(
        &mut self,
        error: &postgres::Error,
        index: Option<usize>,
        table: &str,
    ) -> SideError {
        let classified = self.session.fault(error);
        match (error.as_db_error(), classified) {
            (_, unavailable @ SideError::Unavailable { .. }) => unavailable,
            (Some(db), _) => SideError::Rejected {
                index,
                table: if index.is_some() {
                    table.to_owned()
                } else {
                    String::new()
                },
                message: db.message().to_owned(),
                dependency: *db.code() == SqlState::FOREIGN_KEY_VIOLATION,
            },
            (None, other) => other,
        }
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

/// `CAST($n AS <declared type>)`.
fn cast(at: usize, column: &ColumnInfo) -> String {
    format!("CAST(${at} AS {})", column.declared_type)
}

/// `a IS DISTINCT FROM b`, comparing as text for types without equality (json, xml,
/// and those the engine does not know).
fn distinct(column: &ColumnInfo, left: &str, right: &str) -> String {
    if matches!(column.kind, ValueKind::Any) || column.declared_type == "json" {
        format!("{left}::text IS DISTINCT FROM {right}::text")
    } else {
        format!("{left} IS DISTINCT FROM {right}")
    }
}

fn texts<'a>(
    values: impl Iterator<Item = (&'a ColumnInfo, &'a Value)>,
    index: usize,
    table: &str,
) -> Result<Vec<Option<String>>, SideError> {
    values
        .map(|(column, value)| {
            value_to_text(value, column.kind).map_err(|message| {
                rejected(index, table, format!("column {}: {message}", column.name))
            })
        })
        .collect()
}

/// The statements of one write.
fn plan_write(schema: &TableSchema, index: usize, write: &RowWrite) -> Result<Plan, SideError> {
    let table = write.table.as_str();
    let key_columns: Vec<String> = write.key.keys().cloned().collect();
    schema.check_key(&key_columns)?;
    if let Some((column, _)) = write.key.iter().find(|(_, value)| **value == Value::Null) {
        return Err(rejected(
            index,
            table,
            format!("key column {column} is NULL"),
        ));
    }
    let column = |name: &str| schema.column(name).expect("checked above");
    let quoted_table = quote_ident(table);
    let key_infos: Vec<&ColumnInfo> = key_columns.iter().map(|name| column(name)).collect();
    let key_params = texts(
        key_infos.iter().copied().zip(write.key.values()),
        index,
        table,
    )?;
    let key_condition: Vec<String> = key_infos
        .iter()
        .enumerate()
        .map(|(at, info)| format!("{} = {}", quote_ident(&info.name), cast(at + 1, info)))
        .collect();
    let key_condition = key_condition.join(" AND ");

    if write.op == WriteOp::Delete {
        return Ok(Plan::Single(Step {
            sql: format!("DELETE FROM {quoted_table} WHERE {key_condition}"),
            params: key_params,
        }));
    }

    let mut fields: Vec<(&String, &Value)> = Vec::with_capacity(write.fields.len());
    for (name, value) in &write.fields {
        match write.key.get(name) {
            Some(key_value) if key_value == value => {}
            Some(_) => {
                return Err(rejected(
                    index,
                    table,
                    format!(
                        "field {name} differs from the key; a key changes by delete and upsert"
                    ),
                ));
            }
            None => fields.push((name, value)),
        }
    }
    schema.check_columns(fields.iter().map(|(name, _)| name.as_str()), true)?;
    let field_infos: Vec<&ColumnInfo> = fields.iter().map(|(name, _)| column(name)).collect();
    let field_params = texts(
        field_infos
            .iter()
            .copied()
            .zip(fields.iter().map(|(_, value)| *value)),
        index,
        table,
    )?;
    let offset = key_infos.len();
    let all: Vec<&ColumnInfo> = key_infos.iter().chain(&field_infos).copied().collect();
    let params: Vec<Option<String>> = key_params.iter().chain(&field_params).cloned().collect();
    let insert = format!(
        "INSERT INTO {quoted_table} ({}) VALUES ({})",
        all.iter()
            .map(|info| quote_ident(&info.name))
            .collect::<Vec<_>>()
            .join(", "),
        all.iter()
            .enumerate()
            .map(|(at, info)| cast(at + 1, info))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let listed = |name: &str| write.key.contains_key(name) || write.fields.contains_key(name);
    let complete = schema.columns.iter().all(|column| {
        !column.not_null || column.has_default || column.generated || listed(&column.name)
    });
    let quoted_keys: Vec<String> = key_infos
        .iter()
        .map(|info| quote_ident(&info.name))
        .collect();

    if complete {
        let conflict = if field_infos.is_empty() {
            format!("ON CONFLICT ({}) DO NOTHING", quoted_keys.join(", "))
        } else {
            let set: Vec<String> = field_infos
                .iter()
                .map(|info| {
                    let name = quote_ident(&info.name);
                    format!("{name} = EXCLUDED.{name}")
                })
                .collect();
            let differs: Vec<String> = field_infos
                .iter()
                .map(|info| {
                    let name = quote_ident(&info.name);
                    distinct(
                        info,
                        &format!("{quoted_table}.{name}"),
                        &format!("EXCLUDED.{name}"),
                    )
                })
                .collect();
            format!(
                "ON CONFLICT ({}) DO UPDATE SET {} WHERE {}",
                quoted_keys.join(", "),
                set.join(", "),
                differs.join(" OR ")
            )
        };
        return Ok(Plan::Single(Step {
            sql: format!("{insert} {conflict}"),
            params,
        }));
    }

    let update = (!field_infos.is_empty()).then(|| {
        let set: Vec<String> = field_infos
            .iter()
            .enumerate()
            .map(|(at, info)| {
                format!(
                    "{} = {}",
                    quote_ident(&info.name),
                    cast(offset + at + 1, info)
                )
            })
            .collect();
        let differs: Vec<String> = field_infos
            .iter()
            .enumerate()
            .map(|(at, info)| {
                distinct(info, &quote_ident(&info.name), &cast(offset + at + 1, info))
            })
            .collect();
        Step {
            sql: format!(
                "UPDATE {quoted_table} SET {} WHERE {key_condition} AND ({})",
                set.join(", "),
                differs.join(" OR ")
            ),
            params: params.clone(),
        }
    });
    Ok(Plan::Partial {
        update,
        exists: Step {
            sql: format!("SELECT 1 FROM {quoted_table} WHERE {key_condition}"),
            params: key_params,
        },
        insert: Step {
            sql: insert,
            params,
        },
    })
}

/// `SELECT <row> FROM <table> WHERE <key>` for `write`'s key, and its parameters.
fn key_read(
    schema: &TableSchema,
    index: usize,
    write: &RowWrite,
) -> Result<(String, Vec<Option<String>>), SideError> {
    let table = write.table.as_str();
    let infos: Vec<&ColumnInfo> = write
        .key
        .keys()
        .map(|name| {
            schema.column(name).ok_or_else(|| {
                SideError::Schema(SchemaError::MissingColumns {
                    table: table.to_owned(),
                    missing: vec![name.clone()],
                    available: schema.column_names(),
                })
            })
        })
        .collect::<Result<_, _>>()?;
    let condition: Vec<String> = infos
        .iter()
        .enumerate()
        .map(|(at, info)| format!("{} = {}", quote_ident(&info.name), cast(at + 1, info)))
        .collect();
    let params = texts(infos.iter().copied().zip(write.key.values()), index, table)?;
    Ok((
        format!(
            "SELECT {} FROM {} WHERE {}",
            select_list(schema),
            quote_ident(table),
            condition.join(" AND ")
        ),
        params,
    ))
}

/// A planned write of a batch: its statements, its table, the keyed read that checks its
/// row first (locked, when the engine expects something of it) and the one that reads it
/// back after an upsert.
struct Planned {
    plan: Plan,
    statements: Vec<Statement>,
    schema: std::sync::Arc<TableSchema>,
    /// `SELECT <row> ... WHERE <key> FOR UPDATE` and what the row must hold.
    check: Option<(Statement, Option<RowImage>)>,
    /// `SELECT <row> ... WHERE <key>`, for an upsert.
    readback: Option<Statement>,
    key_params: Vec<Option<String>>,
}

/// Why a batch's transaction did not commit.
enum BatchFailure {
    /// The server refused a statement (of write `index`, or at begin or commit).
    Statement(postgres::Error, Option<usize>),
    /// A write's row does not hold what it set ([`check_stored`]).
    Altered(SideError),
    /// A row the batch checks or writes changed after the transaction's snapshot: run it
    /// again, so its checks see the change.
    Concurrent,
}

/// Runs the planned writes in one `REPEATABLE READ` transaction: each write's row is
/// checked (locked) against what the engine expects, then written, then read back. In
/// that isolation a row an application changes between the snapshot and our write fails
/// the statement instead of being overwritten unseen ([`BatchFailure::Concurrent`]).
fn run_checked(
    client: &mut postgres::Client,
    planned: &[Planned],
    writes: &[RowWrite],
) -> Result<CheckedApply, BatchFailure> {
    let mut transaction = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .map_err(|error| BatchFailure::Statement(error, None))?;
    let mut checked = CheckedApply::default();
    for (index, planned) in planned.iter().enumerate() {
        // A conflict with a row an application wrote since the snapshot: either the
        // server's serialization failure, or (for a row the engine expects to be absent)
        // the unique key it now collides with.
        let failed = |error: postgres::Error| match error.code() {
            Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE => BatchFailure::Concurrent,
            Some(code)
                if *code == SqlState::UNIQUE_VIOLATION
                    && matches!(planned.check, Some((_, None))) =>
            {
                BatchFailure::Concurrent
            }
            _ => BatchFailure::Statement(error, Some(index)),
        };
        if let Some((statement, expected)) = &planned.check {
            let now = transaction
                .query_opt(statement, &bind(&planned.key_params))
                .map_err(failed)?
                .map(|row| row_image(&row, &planned.schema));
            let as_expected = match (expected, &now) {
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
        let statements = &planned.statements;
        let changed = match &planned.plan {
            Plan::Single(step) => transaction
                .execute(&statements[0], &bind(&step.params))
                .map(|rows| rows > 0),
            Plan::Partial {
                update,
                exists,
                insert,
            } => (|| {
                let mut at = 0;
                if let Some(update) = update {
                    at = 1;
                    if transaction.execute(&statements[0], &bind(&update.params))? > 0 {
                        return Ok(true);
                    }
                }
                if transaction
                    .query_opt(&statements[at], &bind(&exists.params))?
                    .is_some()
                {
                    return Ok(false);
                }
                transaction
                    .execute(&statements[at + 1], &bind(&insert.params))
                    .map(|rows| rows > 0)
            })(),
        }
        .map_err(failed)?;
        checked.report.effects.push(if changed {
            WriteEffect::Changed
        } else {
            WriteEffect::Unchanged
        });
        let stored = match &planned.readback {
            None => None,
            Some(statement) => {
                let stored = transaction
                    .query_opt(statement, &bind(&planned.key_params))
                    .map_err(failed)?
                    .map(|row| row_image(&row, &planned.schema));
                check_stored(&planned.schema, index, &writes[index], stored.as_ref())
                    .map_err(BatchFailure::Altered)?;
                stored
            }
        };
        checked.stored.push(stored);
    }
    transaction.commit().map_err(|error| match error.code() {
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE => BatchFailure::Concurrent,
        _ => BatchFailure::Statement(error, None),
    })?;
    Ok(checked)
}

/// How many times a batch runs again after a concurrent change of one of its rows
/// before the conflict is reported as the target refusing it.
const CONCURRENT_RETRIES: usize = 5;

fn select_list(schema: &TableSchema) -> String {
    schema
        .columns
        .iter()
        .map(|column| format!("{}::text", quote_ident(&column.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A row read with [`select_list`] (its first columns) as an image.
fn row_image(row: &postgres::Row, schema: &TableSchema) -> RowImage {
    schema
        .columns
        .iter()
        .enumerate()
        .map(|(at, column)| {
            let text: Option<String> = row.get(at);
            let value = text.map_or(Value::Null, |text| value_from_text(column.kind, &text));
            (column.name.clone(), value)
        })
        .collect()
}

/// Appends `text` to an array literal as one quoted element.
fn push_array_element(literal: &mut String, text: &str) {
    literal.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            literal.push('\\');
        }
        literal.push(c);
    }
    literal.push('"');
}

/// Keys read by one statement of [`PostgresWriter::read_rows`] at most.
const READ_ROWS_CHUNK: usize = 1_000;

type Params<'a> = Vec<&'a (dyn postgres::types::ToSql + Sync)>;

fn bind(params: &[Option<String>]) -> Params<'_> {
    params
        .iter()
        .map(|param| param as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

impl ApplyBatch for PostgresWriter {
    fn table_schema(&mut self, table: &str) -> Result<TableSchema, SideError> {
        self.session.forget_schemas();
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
        self.ensure_origin()?;
        // Plan and prepare everything before the transaction opens.
        let mut planned = Vec::with_capacity(writes.len());
        for (index, write) in writes.iter().enumerate() {
            let schema = self.schema(&write.table)?;
            let plan = plan_write(&schema, index, write)?;
            let prepare = |writer: &mut PostgresWriter, step: &Step| {
                writer.prepare(&step.sql, step.params.len())
            };
            let statements = match &plan {
                Plan::Single(step) => vec![prepare(self, step)?],
                Plan::Partial {
                    update,
                    exists,
                    insert,
                } => {
                    let mut statements = Vec::new();
                    if let Some(update) = update {
                        statements.push(prepare(self, update)?);
                    }
                    statements.push(prepare(self, exists)?);
                    statements.push(prepare(self, insert)?);
                    statements
                }
            };
            let (read, key_params) = key_read(&schema, index, write)?;
            let check = match expected.get(index) {
                Some(Some(expected)) => Some((
                    self.prepare(&format!("{read} FOR UPDATE"), key_params.len())?,
                    expected.clone(),
                )),
                _ => None,
            };
            let readback = match write.op {
                WriteOp::Upsert => Some(self.prepare(&read, key_params.len())?),
                WriteOp::Delete => None,
            };
            planned.push(Planned {
                plan,
                statements,
                schema,
                check,
                readback,
                key_params,
            });
        }
        let mut attempt = 0;
        loop {
            let client = self.session.client()?;
            let failure = match run_checked(client, &planned, writes) {
                Ok(checked) => return Ok(checked),
                Err(BatchFailure::Concurrent) if attempt < CONCURRENT_RETRIES => {
                    attempt += 1;
                    continue;
                }
                Err(BatchFailure::Concurrent) => {
                    return Err(SideError::Rejected {
                        index: None,
                        table: String::new(),
                        message: format!(
                            "rows of the batch kept changing under it ({} attempts)",
                            attempt + 1
                        ),
                        dependency: false,
                    });
                }
                Err(BatchFailure::Altered(error)) => return Err(error),
                Err(BatchFailure::Statement(error, index)) => (error, index),
            };
            let (error, index) = failure;
            let table = index.map_or("", |index| writes[index].table.as_str());
            return Err(self.write_failure(&error, index, table));
        }
    }

    fn read_row(&mut self, table: &str, key: &RowImage) -> Result<Option<RowImage>, SideError> {
        let schema = self.schema(table)?;
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
        let infos: Vec<&ColumnInfo> = key
            .keys()
            .map(|name| schema.column(name).expect("checked above"))
            .collect();
        let condition: Vec<String> = infos
            .iter()
            .enumerate()
            .map(|(at, info)| format!("{} = {}", quote_ident(&info.name), cast(at + 1, info)))
            .collect();
        let params = texts(infos.iter().copied().zip(key.values()), 0, table).map_err(|error| {
            SchemaError::Unsupported {
                table: table.to_owned(),
                reason: format!("the key cannot be read: {error}"),
            }
        })?;
        let sql = format!(
            "SELECT {} FROM {} WHERE {} LIMIT 2",
            select_list(&schema),
            quote_ident(table),
            condition.join(" AND ")
        );
        let mut rows = self.query_rows(&sql, params, &schema)?;
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

    /// One statement per [`READ_ROWS_CHUNK`] keys: the keys go in as one array per key
    /// column, `unnest ... WITH ORDINALITY` joined to the table, and the ordinal says
    /// which key a row belongs to.
    fn read_rows(
        &mut self,
        table: &str,
        keys: &[RowImage],
    ) -> Result<Vec<Option<RowImage>>, SideError> {
        let Some(key_columns) = super::shared_key_columns(keys) else {
            return keys.iter().map(|key| self.read_row(table, key)).collect();
        };
        let schema = self.schema(table)?;
        schema.check_columns(key_columns.iter().map(|name| name.as_str()), false)?;
        let infos: Vec<&ColumnInfo> = key_columns
            .iter()
            .map(|name| schema.column(name).expect("checked above"))
            .collect();
        let unreadable = |error: SideError| SchemaError::Unsupported {
            table: table.to_owned(),
            reason: format!("the key cannot be read: {error}"),
        };
        let names: Vec<String> = (0..infos.len()).map(|at| format!("_dw_k{at}")).collect();
        let arrays: Vec<String> = infos
            .iter()
            .enumerate()
            .map(|(at, info)| format!("CAST(${} AS {}[])", at + 1, info.declared_type))
            .collect();
        let joined: Vec<String> = infos
            .iter()
            .zip(&names)
            .map(|(info, name)| format!("t.{} = k.{name}", quote_ident(&info.name)))
            .collect();
        let columns: Vec<String> = schema
            .columns
            .iter()
            .map(|column| format!("t.{}::text", quote_ident(&column.name)))
            .collect();
        let sql = format!(
            "SELECT {}, k._dw_ord FROM unnest({}) WITH ORDINALITY AS k({}, _dw_ord) \
             JOIN {} t ON {}",
            columns.join(", "),
            arrays.join(", "),
            names.join(", "),
            quote_ident(table),
            joined.join(" AND ")
        );
        let mut found: Vec<Option<RowImage>> = vec![None; keys.len()];
        // A key with a NULL matches no row.
        let readable: Vec<usize> = (0..keys.len())
            .filter(|&at| keys[at].values().all(|value| *value != Value::Null))
            .collect();
        for chunk in readable.chunks(READ_ROWS_CHUNK) {
            let mut literals = vec![String::from("{"); infos.len()];
            for (n, &at) in chunk.iter().enumerate() {
                let texts = texts(infos.iter().copied().zip(keys[at].values()), 0, table)
                    .map_err(unreadable)?;
                for (literal, text) in literals.iter_mut().zip(texts) {
                    if n > 0 {
                        literal.push(',');
                    }
                    push_array_element(literal, text.as_deref().unwrap_or_default());
                }
            }
            let params: Vec<Option<String>> = literals
                .into_iter()
                .map(|mut literal| {
                    literal.push('}');
                    Some(literal)
                })
                .collect();
            let statement = self.prepare(&sql, params.len())?;
            let rows = self
                .session
                .run(|client| client.query(&statement, &bind(&params)))?;
            for row in rows {
                let ordinal: i64 = row.get(schema.columns.len());
                let Some(&at) = usize::try_from(ordinal - 1).ok().and_then(|n| chunk.get(n)) else {
                    continue;
                };
                if found[at].is_some() {
                    return Err(SchemaError::KeyNotUnique {
                        table: table.to_owned(),
                        key: key_columns.iter().map(|name| (*name).clone()).collect(),
                        unique_keys: schema.unique_keys.clone(),
                    }
                    .into());
                }
                found[at] = Some(row_image(&row, &schema));
            }
        }
        Ok(found)
    }

    fn count_rows(&mut self, table: &str) -> Result<u64, SideError> {
        self.schema(table)?;
        let sql = format!("SELECT count(*) FROM {}", quote_ident(table));
        let count: i64 = self
            .session
            .run(|client| client.query_one(&sql, &[]).map(|row| row.get(0)))?;
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
        let infos: Vec<&ColumnInfo> = key_columns
            .iter()
            .map(|name| schema.column(name).expect("checked above"))
            .collect();
        let quoted: Vec<String> = key_columns.iter().map(|name| quote_ident(name)).collect();
        let mut conditions: Vec<String> = quoted
            .iter()
            .map(|column| format!("{column} IS NOT NULL"))
            .collect();
        let mut params = Vec::new();
        if let Some(after) = after {
            let values = key_columns
                .iter()
                .map(|column| after.get(column).unwrap_or(&Value::Null));
            params = texts(infos.iter().copied().zip(values), 0, table).map_err(|error| {
                SchemaError::Unsupported {
                    table: table.to_owned(),
                    reason: format!("the scan position cannot be written: {error}"),
                }
            })?;
            let casts: Vec<String> = infos
                .iter()
                .enumerate()
                .map(|(at, info)| cast(at + 1, info))
                .collect();
            conditions.push(format!("({}) > ({})", quoted.join(", "), casts.join(", ")));
        }
        let sql = format!(
            "SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT {}",
            select_list(&schema),
            quote_ident(table),
            conditions.join(" AND "),
            quoted.join(", "),
            i64::try_from(limit).unwrap_or(i64::MAX)
        );
        self.query_rows(&sql, params, &schema)
    }

    fn disconnect(&mut self) {
        // A new session drops the old one's client; it counts connections on from the
        // old one, so the statements and the origin are set up again on the next.
        let mut fresh = PgSession::new(self.session.options.clone());
        fresh.connected = self.session.connected;
        self.session = fresh;
    }
}
