//! The demo's tables on a PostgreSQL side: the same shape as the SQLite ones (one column
//! per declared field, the declared key as primary key), in PostgreSQL types.

use anyhow::Context;

use super::DemoMap;
use crate::capture::postgres::quote_ident;
use crate::change::{Side, ValueKind};

/// The PostgreSQL type the demo gives a field of `kind`. Decimals are unconstrained
/// `numeric`, so a value keeps the scale it was written with, as on the SQLite side.
pub fn column_type(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Boolean => "boolean",
        ValueKind::Integer => "bigint",
        ValueKind::Float => "double precision",
        ValueKind::Decimal => "numeric",
        ValueKind::Timestamp => "timestamp",
        ValueKind::Date => "date",
        ValueKind::Bytes => "bytea",
        ValueKind::Json => "jsonb",
        ValueKind::Text | ValueKind::Any => "text",
    }
}

/// Creates the `side` table of each map in the PostgreSQL database at `url` (trust or
/// password-less access); maps sharing an entity share its table.
pub fn create_tables(url: &str, side: Side, maps: &[DemoMap]) -> anyhow::Result<()> {
    let mut client = postgres::Client::connect(url, postgres::NoTls)
        .with_context(|| format!("connecting to {url}"))?;
    create_tables_with(&mut client, url, side, maps)
}

/// Creates the `side` table of each map through `client`, connected to `url`.
pub fn create_tables_with(
    client: &mut postgres::Client,
    url: &str,
    side: Side,
    maps: &[DemoMap],
) -> anyhow::Result<()> {
    let descriptors: Vec<&crate::change::Descriptor> =
        maps.iter().map(|map| &map.descriptor).collect();
    for (entity, fields) in super::entity_tables(side, &descriptors) {
        let columns: Vec<String> = fields
            .iter()
            .map(|field| {
                format!(
                    "{} {}{}",
                    quote_ident(&field.name),
                    column_type(field.kind),
                    if field.key { " NOT NULL" } else { "" }
                )
            })
            .collect();
        let key: Vec<String> = fields
            .iter()
            .filter(|field| field.key)
            .map(|field| quote_ident(&field.name))
            .collect();
        client
            .batch_execute(&format!(
                "CREATE TABLE {} ({}, PRIMARY KEY ({}))",
                quote_ident(entity),
                columns.join(", "),
                key.join(", ")
            ))
            .with_context(|| format!("creating {entity} in {url}"))?;
    }
    Ok(())
}
