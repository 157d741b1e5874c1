//! The demo's tables on a MariaDB/MySQL side: the same shape as the SQLite ones (one
//! column per declared field, the declared key as primary key), in MariaDB types.

use anyhow::Context;
use mysql::prelude::Queryable;

use super::DemoMap;
use crate::capture::mysql::quote_ident;
use crate::change::{Side, ValueKind};

/// The MariaDB type the demo gives field `name` of `kind`; `key` columns of text are
/// `VARCHAR(191)` (a primary key cannot be on `TEXT`). A decimal column has a fixed
/// scale in MariaDB, and a value reads back with that scale: rates get 10 places, every
/// other decimal (money) 2, as the demo's seed writes them.
pub fn column_type(name: &str, kind: ValueKind, key: bool) -> &'static str {
    match kind {
        ValueKind::Boolean => "BOOLEAN",
        ValueKind::Integer => "BIGINT",
        ValueKind::Float => "DOUBLE",
        ValueKind::Decimal if name.to_lowercase().contains("rate") => "DECIMAL(38,10)",
        ValueKind::Decimal => "DECIMAL(28,2)",
        ValueKind::Timestamp => "DATETIME(6)",
        ValueKind::Date => "DATE",
        ValueKind::Bytes => "LONGBLOB",
        ValueKind::Json => "JSON",
        ValueKind::Text | ValueKind::Any if key => "VARCHAR(191)",
        ValueKind::Text | ValueKind::Any => "TEXT",
    }
}

/// Creates the `side` table of each map in the MariaDB database at `url`
/// (password-less access, or the password in `password`).
pub fn create_tables(
    url: &str,
    password: Option<&str>,
    side: Side,
    maps: &[DemoMap],
) -> anyhow::Result<()> {
    let driver_url = url.replacen("mariadb://", "mysql://", 1);
    let opts = mysql::Opts::from_url(&driver_url).with_context(|| format!("parsing {url}"))?;
    let opts = mysql::OptsBuilder::from_opts(opts).pass(password);
    let mut conn = mysql::Conn::new(opts).with_context(|| format!("connecting to {url}"))?;
    let descriptors: Vec<&crate::change::Descriptor> =
        maps.iter().map(|map| &map.descriptor).collect();
    for (entity, fields) in super::entity_tables(side, &descriptors) {
        let columns: Vec<String> = fields
            .iter()
            .map(|field| {
                format!(
                    "{} {}{}",
                    quote_ident(&field.name),
                    column_type(&field.name, field.kind, field.key),
                    if field.key { " NOT NULL" } else { "" }
                )
            })
            .collect();
        let key: Vec<String> = fields
            .iter()
            .filter(|field| field.key)
            .map(|field| quote_ident(&field.name))
            .collect();
        conn.query_drop(format!(
            "CREATE TABLE {} ({}, PRIMARY KEY ({})) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 \
             COLLATE = utf8mb4_bin",
            quote_ident(entity),
            columns.join(", "),
            key.join(", ")
        ))
        .with_context(|| format!("creating {entity} in {url}"))?;
    }
    Ok(())
}
