//! The standard map pack (`packs/standard/maps/*.toml`, 12 declarative maps) loaded whole
//! through the real config loader and engine on two SQLite files, with the demo's tables
//! made from what the configured plugins describe: a row of every map inserted on the
//! ERP side reaches the CRM with every line transformed as its config says (copies,
//! value maps, lookups translated through the links of the maps they depend on,
//! constants), and a row of every two-way map inserted on the CRM side reaches the ERP.
//!
//! The rows are made from each map's config, so the test follows the pack when it
//! changes: a text field gets `<FIELD>-v`, a decimal `12.50`, an integer 7, a date
//! 2026-01-15, a value-mapped field the first value of its map, a lookup the code of the
//! row seeded for the map it points to, and a filter's field a value that passes. A
//! polymorphic lookup (the customer of a sales order header: an account or a contact)
//! points at the row of its first map; a second sales order header on each side points
//! at the contacts (person customers), so an order syncs with both kinds of customer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dualwrite::change::{Descriptor, Side, ValueKind};
use dualwrite::config::{self, MapPlan};
use dualwrite::demo::create_entity_tables;
use dualwrite::plugin::{Limits, NoLookups, PluginRuntime};
use dualwrite::sync::{Engine, EngineOptions};
use dualwrite_tests::{plugin_path, plugins_dir};
use rusqlite::Connection;
use rusqlite::types::Value as Sql;
use serde_json::Value as Json;

const COMPANY: &str = "USMF";

fn pack_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packs/standard/maps")
}

/// The deployment: two SQLite sides and every fragment of the pack, in file order.
fn deployment_text() -> String {
    let mut text = format!(
        "data_dir = \"state\"\nplugins_dir = {:?}\n\n[sides.erp]\nconnector = \"sqlite\"\npath = \"erp.db\"\n\n[sides.crm]\nconnector = \"sqlite\"\npath = \"crm.db\"\n",
        plugins_dir().display().to_string()
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(pack_dir())
        .expect("packs/standard/maps")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    for file in files {
        text.push('\n');
        text.push_str(&std::fs::read_to_string(&file).expect("fragment"));
    }
    text
}

/// One map of the pack: its plan, config and what the configured plugin describes.
struct PackMap<'p> {
    plan: &'p MapPlan,
    config: Json,
    descriptor: Descriptor,
}

impl PackMap<'_> {
    fn name(&self) -> &str {
        &self.plan.name
    }

    fn lines(&self) -> &[Json] {
        self.config["fields"].as_array().expect("fields")
    }

    fn kind(&self, side: Side, field: &str) -> ValueKind {
        let entity = self.descriptor.entity(side);
        let id = entity.id_of(field).expect("declared field");
        entity.fields[id as usize].kind
    }

    fn is_key(&self, side: Side, field: &str) -> bool {
        let entity = self.descriptor.entity(side);
        entity.fields[entity.id_of(field).expect("declared") as usize].key
    }
}

/// The code of the row seeded on `side` for `map` (customers and contacts share the ERP
/// table, so their codes differ).
fn code(map: &str, side: Side) -> &'static str {
    match (map, side) {
        ("contacts", Side::Erp) => "P1",
        ("contacts", Side::Crm) => "Q1",
        (_, Side::Erp) => "K1",
        (_, Side::Crm) => "C1",
    }
}

/// A value for a field that passes the map's filter, where the filter reads it.
fn filter_value(map: &str, field: &str) -> Option<Json> {
    match (map, field) {
        ("customers", "PARTYTYPE") => Some("Organization".into()),
        ("contacts", "PARTYTYPE") => Some("Person".into()),
        ("vendors", "VENDORPARTYTYPE") => Some("Organization".into()),
        _ => None,
    }
}

fn side_key(side: Side) -> &'static str {
    match side {
        Side::Erp => "erp",
        Side::Crm => "crm",
    }
}

fn flows_to(line: &Json, target: Side) -> bool {
    if line.get("constant").is_some() {
        return line.get(side_key(target)).is_some();
    }
    match line
        .get("direction")
        .and_then(Json::as_str)
        .unwrap_or("both")
    {
        "both" => true,
        "to-crm" => target == Side::Crm,
        "to-erp" => target == Side::Erp,
        other => panic!("direction {other}"),
    }
}

/// A value for `field` of `side` in the row seeded for `map` on `side`.
fn seed_value(map: &PackMap<'_>, side: Side, line: &Json, field: &str) -> Json {
    if let Some(value) = filter_value(map.name(), field) {
        return value;
    }
    let kind = map.kind(side, field);
    if map.is_key(side, field) {
        let company_field = map.config["company"][side_key(side)].as_str();
        return if company_field == Some(field) {
            COMPANY.into()
        } else if kind == ValueKind::Integer {
            Json::from(if side == Side::Erp { 1 } else { 2 })
        } else {
            code(map.name(), side).into()
        };
    }
    if let Some(pairs) = line.get("value_map") {
        return pairs[0][side_key(side)].clone();
    }
    if let Some(lookup) = line.get("lookup") {
        // Lookups point at the rows seeded on the ERP side, synced before this one; a
        // polymorphic lookup at its first map's.
        let map = match lookup.get("maps") {
            Some(maps) => &maps[0]["map"],
            None => &lookup["map"],
        };
        return code(map.as_str().expect("lookup map"), Side::Erp).into();
    }
    if line.get("constant").is_some() {
        // A constant the map writes to this side: the row holds what the map would
        // write (its filter on this side usually reads it).
        return line["constant"].clone();
    }
    match kind {
        ValueKind::Decimal => "12.50".into(),
        ValueKind::Integer => 7.into(),
        ValueKind::Date => "2026-01-15".into(),
        ValueKind::Boolean => true.into(),
        _ => format!("{field}-v").into(),
    }
}

/// The target of a polymorphic lookup (`line`'s) that `value` points into: the map whose
/// rows seeded on either side have that code.
fn polymorphic_target<'l>(line: &'l Json, value: &Json) -> Option<&'l Json> {
    let maps = line.get("lookup")?.get("maps")?.as_array()?;
    Some(
        maps.iter()
            .find(|target| {
                let map = target["map"].as_str().expect("target map");
                [Side::Erp, Side::Crm]
                    .iter()
                    .any(|&side| value.as_str() == Some(code(map, side)))
            })
            .unwrap_or_else(|| panic!("{value} is the code of none of {maps:?}")),
    )
}

/// The CRM type field of a polymorphic lookup line and the table `value` points into.
fn polymorphic_type(line: &Json, value: &Json) -> Option<(String, Json)> {
    let target = polymorphic_target(line, value)?;
    let type_field = line["lookup"]["type_field"].as_str().expect("type_field");
    Some((type_field.to_owned(), target["crm_entity"].clone()))
}

/// The row of `map` seeded on `side`: every field of that side any line names (and the
/// type fields of polymorphic lookups on the CRM side).
fn seed_row(map: &PackMap<'_>, side: Side) -> Vec<(String, Json)> {
    let mut row: Vec<(String, Json)> = Vec::new();
    for line in map.lines() {
        let Some(field) = line.get(side_key(side)).and_then(Json::as_str) else {
            continue;
        };
        if !row.iter().any(|(name, _)| name == field) {
            let value = seed_value(map, side, line, field);
            if side == Side::Crm
                && let Some(typed) = polymorphic_type(line, &value)
            {
                row.push(typed);
            }
            row.push((field.to_owned(), value));
        }
    }
    row
}

/// Sets `field` of a seeded row to `value`, keeping the type field of a polymorphic
/// lookup on the CRM side in step.
fn set(map: &PackMap<'_>, side: Side, row: &mut [(String, Json)], field: &str, value: &str) {
    let value = Json::from(value);
    for (name, slot) in row.iter_mut() {
        if name == field {
            *slot = value.clone();
        }
    }
    if side == Side::Crm {
        for line in map.lines() {
            if line["crm"].as_str() == Some(field)
                && let Some((type_field, table)) = polymorphic_type(line, &value)
            {
                for (name, slot) in row.iter_mut() {
                    if *name == type_field {
                        *slot = table.clone();
                    }
                }
            }
        }
    }
}

/// What the row seeded on `source` must become on the other side: the value of every
/// field a line writes that way.
fn expected_row(map: &PackMap<'_>, source: Side, seeded: &[(String, Json)]) -> Vec<(String, Json)> {
    let target = source.other();
    let mut row = Vec::new();
    for line in map.lines() {
        if !flows_to(line, target) {
            continue;
        }
        let to = line[side_key(target)]
            .as_str()
            .expect("target field")
            .to_owned();
        let value = if let Some(constant) = line.get("constant") {
            constant.clone()
        } else {
            let from = line[side_key(source)].as_str().expect("source field");
            let value = seeded
                .iter()
                .find(|(name, _)| name == from)
                .map(|(_, value)| value.clone())
                .expect("seeded source field");
            match line.get("value_map") {
                Some(pairs) => pairs
                    .as_array()
                    .expect("pairs")
                    .iter()
                    .find(|pair| same(&pair[side_key(source)], &value))
                    .map(|pair| pair[side_key(target)].clone())
                    .expect("value in the map"),
                // Codes are the same on both sides, so copies and lookups carry them.
                None => value,
            }
        };
        if target == Side::Crm
            && let Some(typed) = polymorphic_type(line, &value)
        {
            row.push(typed);
        }
        row.push((to, value));
    }
    row
}

fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::String(a), Json::String(b)) => a.eq_ignore_ascii_case(b),
        _ => a == b,
    }
}

/// A JSON value as SQLite stores it in the demo's tables.
fn sql(value: &Json) -> Sql {
    match value {
        Json::Null => Sql::Null,
        Json::Bool(flag) => Sql::Integer(i64::from(*flag)),
        Json::Number(number) => number
            .as_i64()
            .map(Sql::Integer)
            .unwrap_or_else(|| Sql::Real(number.as_f64().expect("number"))),
        Json::String(text) => Sql::Text(text.clone()),
        other => panic!("no SQL form for {other}"),
    }
}

fn insert(db: &Connection, table: &str, row: &[(String, Json)]) {
    let columns: Vec<String> = row.iter().map(|(name, _)| format!("\"{name}\"")).collect();
    let marks: Vec<String> = (1..=row.len()).map(|at| format!("?{at}")).collect();
    let values: Vec<Sql> = row.iter().map(|(_, value)| sql(value)).collect();
    db.execute(
        &format!(
            "INSERT INTO \"{table}\" ({}) VALUES ({})",
            columns.join(", "),
            marks.join(", ")
        ),
        rusqlite::params_from_iter(values),
    )
    .unwrap_or_else(|error| panic!("insert into {table}: {error}"));
}

/// The row of `table` whose `key` columns hold `key`, as the named columns, if present.
fn read(
    db: &Connection,
    table: &str,
    key: &[(String, Json)],
    columns: &[String],
) -> Option<Vec<Sql>> {
    let select: Vec<String> = columns.iter().map(|name| format!("\"{name}\"")).collect();
    let filter: Vec<String> = key
        .iter()
        .enumerate()
        .map(|(at, (name, _))| format!("\"{name}\" = ?{}", at + 1))
        .collect();
    let values: Vec<Sql> = key.iter().map(|(_, value)| sql(value)).collect();
    let mut statement = db
        .prepare(&format!(
            "SELECT {} FROM \"{table}\" WHERE {}",
            select.join(", "),
            filter.join(" AND ")
        ))
        .expect("select");
    let mut rows = statement
        .query(rusqlite::params_from_iter(values))
        .expect("query");
    let row = rows.next().expect("row")?;
    Some(
        (0..columns.len())
            .map(|at| row.get::<_, Sql>(at).expect("cell"))
            .collect(),
    )
}

/// The key of the row `expected` on `side`, by the map's key fields there.
fn key_of(map: &PackMap<'_>, side: Side, row: &[(String, Json)]) -> Vec<(String, Json)> {
    map.plan
        .endpoint(side)
        .key
        .iter()
        .map(|name| {
            let value = row
                .iter()
                .find(|(field, _)| field == name)
                .map(|(_, value)| value.clone())
                .unwrap_or_else(|| panic!("map {}: key field {name} not in the row", map.name()));
            (name.clone(), value)
        })
        .collect()
}

/// Steps the engine until every expected row is on its side with its values, or fails
/// naming what is missing or different.
fn sync_until(
    engine: &mut Engine,
    db: &Connection,
    side: Side,
    expected: &[(&PackMap<'_>, Vec<(String, Json)>)],
) {
    let started = Instant::now();
    loop {
        engine.step().expect("step");
        let mut missing = Vec::new();
        for (map, row) in expected {
            let table = &map.descriptor.entity(side).entity;
            let columns: Vec<String> = row.iter().map(|(name, _)| name.clone()).collect();
            let want: Vec<Sql> = row.iter().map(|(_, value)| sql(value)).collect();
            match read(db, table, &key_of(map, side, row), &columns) {
                Some(got) if got == want => {}
                Some(got) => missing.push(format!(
                    "{}: {table} differs: {:?}",
                    map.name(),
                    columns
                        .iter()
                        .zip(want.iter().zip(&got))
                        .filter(|(_, (want, got))| want != got)
                        .map(|(name, (want, got))| format!("{name}: want {want:?}, got {got:?}"))
                        .collect::<Vec<_>>()
                )),
                None => missing.push(format!("{}: no row in {table}", map.name())),
            }
        }
        if missing.is_empty() {
            return;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let errors: Vec<String> = expected
                .iter()
                .map(|(map, _)| {
                    format!(
                        "{}: {} open errors",
                        map.name(),
                        engine.store().open_error_count(map.name()).unwrap_or(0)
                    )
                })
                .collect();
            panic!(
                "rows did not reach the {side} side:\n{}\n{}",
                missing.join("\n"),
                errors.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_standard_pack_loads_and_syncs_a_row_of_every_map_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = PluginRuntime::new(
        Limits {
            max_instances: 32,
            ..Limits::default()
        },
        Some(dir.path().join("code-cache")),
    )
    .expect("runtime");
    let plan = config::parse(&deployment_text(), "standard-pack.toml", dir.path())
        .unwrap_or_else(|errors| panic!("the pack's config is refused:\n{errors}"));
    assert_eq!(plan.maps.len(), 12, "the pack has the 12 standard maps");

    let bytes = std::fs::read(plugin_path("declarative")).expect("declarative.wasm");
    let plugin = runtime
        .load_bytes("declarative.wasm", &bytes)
        .expect("load");
    let maps: Vec<PackMap<'_>> = plan
        .maps
        .iter()
        .map(|map| {
            let config = map.plugin_config_json();
            let runner = plugin
                .start(&config, Arc::new(NoLookups))
                .unwrap_or_else(|error| panic!("map {}: {error}", map.name));
            PackMap {
                plan: map,
                config: serde_json::from_str(&config).expect("config JSON"),
                descriptor: runner.descriptor().clone(),
            }
        })
        .collect();
    let erp_path = dir.path().join("erp.db");
    let crm_path = dir.path().join("crm.db");
    let descriptors: Vec<&Descriptor> = maps.iter().map(|map| &map.descriptor).collect();
    create_entity_tables(&erp_path, Side::Erp, &descriptors).expect("ERP tables");
    create_entity_tables(&crm_path, Side::Crm, &descriptors).expect("CRM tables");

    let mut engine = Engine::open(
        &plan,
        &runtime,
        EngineOptions {
            first_retry: Duration::from_millis(1),
            retry_scan: Duration::from_millis(1),
            ..EngineOptions::default()
        },
    )
    .expect("engine");
    let erp = Connection::open(&erp_path).expect("erp");
    let crm = Connection::open(&crm_path).expect("crm");

    // ERP -> CRM: a row of every map, parents first.
    let mut expected = Vec::new();
    for map in &maps {
        let row = seed_row(map, Side::Erp);
        insert(&erp, &map.descriptor.erp.entity, &row);
        expected.push((map, expected_row(map, Side::Erp, &row)));
    }
    // A second sales order whose ordering and invoice customers are a person (a CRM
    // contact), where the first order's are an organization (a CRM account).
    let headers = maps
        .iter()
        .find(|map| map.name() == "sales-order-headers")
        .expect("sales order headers");
    let mut row = seed_row(headers, Side::Erp);
    set(headers, Side::Erp, &mut row, "SALESORDERNUMBER", "K2");
    for field in [
        "ORDERINGCUSTOMERACCOUNTNUMBER",
        "INVOICECUSTOMERACCOUNTNUMBER",
    ] {
        set(
            headers,
            Side::Erp,
            &mut row,
            field,
            code("contacts", Side::Erp),
        );
    }
    insert(&erp, &headers.descriptor.erp.entity, &row);
    let person_order = expected_row(headers, Side::Erp, &row);
    for (field, table) in [
        ("customeridtype", "contacts"),
        ("msdyn_invoicecustomeridtype", "contacts"),
    ] {
        assert!(
            person_order.contains(&(field.to_owned(), table.into())),
            "{field} names {table}: {person_order:?}"
        );
    }
    expected.push((headers, person_order));
    let organization_order = &expected
        .iter()
        .find(|(map, _)| map.name() == "sales-order-headers")
        .expect("first order")
        .1;
    assert!(
        organization_order.contains(&("customeridtype".to_owned(), "accounts".into())),
        "{organization_order:?}"
    );
    sync_until(&mut engine, &crm, Side::Crm, &expected);

    // CRM -> ERP: a row of every two-way map.
    let mut expected = Vec::new();
    for map in maps.iter().filter(|map| map.plan.flows_from(Side::Crm)) {
        let row = seed_row(map, Side::Crm);
        insert(&crm, &map.descriptor.crm.entity, &row);
        expected.push((map, expected_row(map, Side::Crm, &row)));
    }
    assert_eq!(
        expected.len(),
        9,
        "every map but legal entities, units and products flows both ways"
    );
    // A second order on the CRM side for a contact: the one seeded there (its customer
    // type names contacts) and, as the invoice customer, the one synced from the ERP.
    let mut row = seed_row(headers, Side::Crm);
    set(headers, Side::Crm, &mut row, "msdyn_salesordernumber", "C2");
    set(
        headers,
        Side::Crm,
        &mut row,
        "customerid",
        code("contacts", Side::Crm),
    );
    set(
        headers,
        Side::Crm,
        &mut row,
        "msdyn_invoicecustomerid",
        code("contacts", Side::Erp),
    );
    assert!(row.contains(&("customeridtype".to_owned(), "contacts".into())));
    insert(&crm, &headers.descriptor.crm.entity, &row);
    expected.push((headers, expected_row(headers, Side::Crm, &row)));
    sync_until(&mut engine, &erp, Side::Erp, &expected);

    for map in &maps {
        assert_eq!(
            engine.store().open_error_count(map.name()).expect("errors"),
            0,
            "map {} has open errors",
            map.name()
        );
    }
}
