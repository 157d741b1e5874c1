//! Table introspection for SQLite: columns, declared types, primary and unique keys.

use rusqlite::{Connection, OptionalExtension as _};

use crate::capture::{Capacity, ColumnInfo, SchemaError, TableSchema};
use crate::change::{Fidelity, ValueKind};

/// Names dualwrite reserves in a side's database (its change log, triggers, marker).
pub(crate) const RESERVED_PREFIX: &str = "_dualwrite_";

/// `name` as a quoted SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a quoted SQL string literal.
pub(crate) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The kind of values a declared type holds, and a decimal's scale (see the type table
/// in [`super`]). The order of the checks follows SQLite's affinity rules where they
/// overlap (`BIGINT` is an integer, `DATETIME` is not a date).
pub(crate) fn classify(declared: &str) -> (ValueKind, Option<u32>) {
    let upper = declared.to_ascii_uppercase();
    let has = |word: &str| upper.contains(word);
    let kind = if has("BOOL") {
        ValueKind::Boolean
    } else if has("INT") {
        ValueKind::Integer
    } else if has("DATETIME") || has("TIMESTAMP") {
        ValueKind::Timestamp
    } else if has("DATE") {
        ValueKind::Date
    } else if has("DEC") || has("NUMERIC") || has("MONEY") {
        ValueKind::Decimal
    } else if has("JSON") {
        ValueKind::Json
    } else if has("REAL") || has("FLOA") || has("DOUB") {
        ValueKind::Float
    } else if has("CHAR") || has("CLOB") || has("TEXT") {
        ValueKind::Text
    } else if has("BLOB") {
        ValueKind::Bytes
    } else {
        ValueKind::Any
    };
    let scale = (kind == ValueKind::Decimal)
        .then(|| decimal_scale(&upper))
        .flatten();
    (kind, scale)
}

/// `DECIMAL(18,2)` -> 2, `NUMERIC(10)` -> 0, `DECIMAL` -> none.
fn decimal_scale(declared: &str) -> Option<u32> {
    let inside = declared.rsplit_once('(')?.1.split_once(')')?.0;
    match inside.split_once(',') {
        Some((_, scale)) => scale.trim().parse().ok(),
        None => inside.trim().parse::<u32>().ok().map(|_| 0),
    }
}

/// Describes table `table` (exact name), or says why it cannot be synced.
pub(crate) fn introspect(conn: &Connection, table: &str) -> Result<TableSchema, IntrospectError> {
    if table.starts_with(RESERVED_PREFIX) || table.to_ascii_lowercase().starts_with("sqlite_") {
        return Err(SchemaError::Unsupported {
            table: table.to_owned(),
            reason: "the name is reserved for SQLite and dualwrite".to_owned(),
        }
        .into());
    }
    let found: Option<(String, String, Option<String>)> = conn
        .prepare_cached(
            "SELECT type, name, sql FROM sqlite_schema \
             WHERE name = ?1 COLLATE NOCASE AND type IN ('table', 'view')",
        )?
        .query_row([table], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    let Some((kind, name, sql)) = found else {
        return Err(SchemaError::MissingTable {
            table: table.to_owned(),
            hint: None,
        }
        .into());
    };
    if name != table {
        return Err(SchemaError::MissingTable {
            table: table.to_owned(),
            hint: Some(format!("did you mean {name}? names are matched exactly")),
        }
        .into());
    }
    if kind == "view" {
        return Err(SchemaError::Unsupported {
            table: table.to_owned(),
            reason: "it is a view; capture and writes need a table".to_owned(),
        }
        .into());
    }
    if sql.is_some_and(|sql| sql.to_ascii_uppercase().starts_with("CREATE VIRTUAL")) {
        return Err(SchemaError::Unsupported {
            table: table.to_owned(),
            reason: "it is a virtual table, which cannot have triggers".to_owned(),
        }
        .into());
    }

    let mut columns = Vec::new();
    let mut primary_key: Vec<(i64, String)> = Vec::new();
    let mut statement = conn.prepare_cached(
        "SELECT name, type, \"notnull\", dflt_value IS NOT NULL, pk, hidden \
         FROM pragma_table_xinfo(?1) ORDER BY cid",
    )?;
    let mut rows = statement.query([table])?;
    while let Some(row) = rows.next()? {
        let hidden: i64 = row.get(5)?;
        // 1: a virtual table's hidden column; 2 and 3: generated columns.
        if hidden == 1 {
            continue;
        }
        let name: String = row.get(0)?;
        let declared_type: String = row.get(1)?;
        let (kind, scale) = classify(&declared_type);
        let pk: i64 = row.get(4)?;
        if pk > 0 {
            primary_key.push((pk, name.clone()));
        }
        columns.push(ColumnInfo {
            name,
            declared_type,
            kind,
            scale,
            // SQLite keeps text and blobs as given and numbers by value (NUMERIC affinity
            // turns '12.50' into 12.5); its timestamps are ISO text.
            fidelity: Fidelity::of_kind(kind),
            // SQLite enforces no declared length or precision.
            capacity: Capacity::default(),
            not_null: row.get(2)?,
            has_default: row.get(3)?,
            generated: hidden >= 2,
        });
    }
    primary_key.sort();
    let primary_key: Vec<String> = primary_key.into_iter().map(|(_, name)| name).collect();

    let mut unique_keys = Vec::new();
    if !primary_key.is_empty() {
        unique_keys.push(primary_key.clone());
    }
    let indexes: Vec<String> = conn
        .prepare_cached(
            "SELECT name FROM pragma_index_list(?1) WHERE \"unique\" AND NOT partial ORDER BY name",
        )?
        .query_map([table], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for index in indexes {
        let names: Vec<Option<String>> = conn
            .prepare_cached("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")?
            .query_map([&index], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        // An index on an expression has no column name; it is not a column key.
        let Some(key) = names.into_iter().collect::<Option<Vec<String>>>() else {
            continue;
        };
        if !key.is_empty() && !unique_keys.contains(&key) {
            unique_keys.push(key);
        }
    }

    Ok(TableSchema {
        table: name,
        columns,
        primary_key,
        unique_keys,
    })
}

/// Why introspection failed: the schema does not fit, or SQLite failed.
#[derive(Debug)]
pub(crate) enum IntrospectError {
    /// The table cannot be used as asked.
    Schema(SchemaError),
    /// SQLite failed while reading the schema.
    Sql(rusqlite::Error),
}

impl From<SchemaError> for IntrospectError {
    fn from(error: SchemaError) -> Self {
        IntrospectError::Schema(error)
    }
}

impl From<rusqlite::Error> for IntrospectError {
    fn from(error: rusqlite::Error) -> Self {
        IntrospectError::Sql(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_map_to_kinds() {
        for (declared, kind, scale) in [
            ("INTEGER", ValueKind::Integer, None),
            ("bigint", ValueKind::Integer, None),
            ("BOOLEAN", ValueKind::Boolean, None),
            ("DECIMAL(18,2)", ValueKind::Decimal, Some(2)),
            ("TEXT DECIMAL(18, 4)", ValueKind::Decimal, Some(4)),
            ("NUMERIC(10)", ValueKind::Decimal, Some(0)),
            ("MONEY", ValueKind::Decimal, None),
            ("DATE", ValueKind::Date, None),
            ("DATETIME", ValueKind::Timestamp, None),
            ("TIMESTAMP", ValueKind::Timestamp, None),
            ("JSON", ValueKind::Json, None),
            ("DOUBLE PRECISION", ValueKind::Float, None),
            ("VARCHAR(40)", ValueKind::Text, None),
            ("BLOB", ValueKind::Bytes, None),
            ("", ValueKind::Any, None),
            ("UUID", ValueKind::Any, None),
        ] {
            assert_eq!(classify(declared), (kind, scale), "{declared}");
        }
    }

    #[test]
    fn keys_views_and_names_are_introspected() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, code TEXT NOT NULL, co TEXT DEFAULT 'x',
                 n TEXT, g TEXT AS (code || co), UNIQUE (code, co));
             CREATE UNIQUE INDEX t_n ON t (n) WHERE n IS NOT NULL;
             CREATE UNIQUE INDEX t_lower ON t (lower(code));
             CREATE VIEW v AS SELECT * FROM t;",
        )
        .unwrap();
        let schema = introspect(&conn, "t").unwrap();
        assert_eq!(schema.primary_key, vec!["id"]);
        assert_eq!(
            schema.unique_keys,
            vec![
                vec!["id".to_owned()],
                vec!["code".to_owned(), "co".to_owned()]
            ]
        );
        let names: Vec<_> = schema
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.not_null, c.has_default, c.generated))
            .collect();
        assert_eq!(
            names,
            vec![
                ("id", false, false, false),
                ("code", true, false, false),
                ("co", false, true, false),
                ("n", false, false, false),
                ("g", false, false, true)
            ]
        );
        let message = |table| match introspect(&conn, table) {
            Err(IntrospectError::Schema(error)) => error.to_string(),
            other => panic!("{other:?}"),
        };
        assert!(message("T").contains("did you mean t?"));
        assert!(message("v").contains("is a view"));
        assert!(message("nope").contains("table nope does not exist"));
        assert!(message("_dualwrite_changes").contains("reserved"));
    }
}
