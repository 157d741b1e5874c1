//! `dualwrite demo`: an ERP-like and a CRM-like database synced by the standard map
//! pack (`packs/standard/`, the 12 out-of-the-box dual-write maps, every one run by the
//! declarative plugin `declarative.wasm` with its pack config), seeded with realistic
//! data, merged by initial sync, then kept in step while a generator edits both sides.
//! Each side is an SQLite file in the demo folder unless a server URL is given
//! ([`store`]: `--erp postgres://...`, `--crm mysql://...`).
//!
//! The tables are made from what the configured plugin describes for each map (every
//! declared field becomes a column of the matching SQL type; the declared key becomes
//! the primary key; customers and contacts share the ERP's customer table), so the demo
//! schema is exactly what the map pack reads and writes. The ERP side is seeded in
//! dependency order ([`seed`]: companies, currencies, units, terms of payment, customer
//! and vendor groups, vendors, organization and person customers, products, sales
//! orders of both kinds of customer and their lines); part of it is also put on the CRM
//! side, as the CRM's plugin-transformed form with some values changed (so the initial
//! sync has rows to merge, the ERP as master), plus CRM-only accounts, contacts and
//! orders.

pub mod mysql;
pub mod postgres;
pub mod seed;
pub mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::apply::sqlite::SqliteWriter;
use crate::apply::{ApplyBatch, RowWrite};
use crate::capture::sqlite::SqliteOptions;
use crate::change::{Descriptor, Side, Value, ValueKind};
use crate::plugin::{LoadedPlugin, NoLookups, PluginRuntime};
use crate::sync::{Engine, EngineOptions, MapCounters};

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The folder for the databases, state and config (emptied first).
    pub dir: PathBuf,
    /// The folder holding the plugin components.
    pub plugins_dir: PathBuf,
    /// Customers seeded on the ERP side.
    pub customers: usize,
    /// How long live sync runs; `None` until Ctrl-C.
    pub duration: Option<Duration>,
    /// Edits per second the generator makes, over both sides.
    pub edit_rate: u32,
    /// Where the admin API is served during live sync; `None` for no admin API.
    pub admin_listen: Option<std::net::SocketAddr>,
    /// The ERP side's server URL (`postgres://`, `mysql://`, `mariadb://`); `None` for
    /// an SQLite file in `dir`.
    pub erp: Option<String>,
    /// The CRM side's server URL; `None` for an SQLite file in `dir`.
    pub crm: Option<String>,
}

/// The plugin every map of the demo runs.
const DECLARATIVE_PLUGIN: &str = "declarative.wasm";

/// The demo's maps, in dependency order: name and deployment-config fragment (the
/// standard pack's), whose `[maps.NAME.config]` is the map. The web UI edits them live.
const DECLARATIVE: &[(&str, &str)] = &[
    (
        "legal-entities",
        include_str!("../../../packs/standard/maps/01-legal-entities.toml"),
    ),
    (
        "currencies",
        include_str!("../../../packs/standard/maps/02-currencies.toml"),
    ),
    (
        "units",
        include_str!("../../../packs/standard/maps/03-units.toml"),
    ),
    (
        "terms-of-payment",
        include_str!("../../../packs/standard/maps/04-terms-of-payment.toml"),
    ),
    (
        "customer-groups",
        include_str!("../../../packs/standard/maps/05-customer-groups.toml"),
    ),
    (
        "vendor-groups",
        include_str!("../../../packs/standard/maps/06-vendor-groups.toml"),
    ),
    (
        "vendors",
        include_str!("../../../packs/standard/maps/07-vendors.toml"),
    ),
    (
        "customers",
        include_str!("../../../packs/standard/maps/08-customers.toml"),
    ),
    (
        "contacts",
        include_str!("../../../packs/standard/maps/09-contacts.toml"),
    ),
    (
        "products",
        include_str!("../../../packs/standard/maps/10-products.toml"),
    ),
    (
        "sales-order-headers",
        include_str!("../../../packs/standard/maps/11-sales-order-headers.toml"),
    ),
    (
        "sales-order-lines",
        include_str!("../../../packs/standard/maps/12-sales-order-lines.toml"),
    ),
];

/// The names of the demo's maps, in dependency order.
pub fn map_names() -> impl Iterator<Item = &'static str> {
    DECLARATIVE.iter().map(|(name, _)| *name)
}

/// The `[maps.NAME]` table of a demo map's fragment (without its config), parsed.
fn pack_map_table(name: &str) -> Option<toml::Table> {
    let (_, fragment) = DECLARATIVE.iter().find(|(map, _)| *map == name)?;
    let document: toml::Table = toml::from_str(fragment).ok()?;
    let mut table = document.get("maps")?.get(name)?.as_table()?.clone();
    table.remove("config");
    Some(table)
}

/// The plugin config of a map of the demo (the pack's), as JSON; `None` for a map the
/// pack does not have.
pub fn declarative_config(name: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let (_, fragment) = DECLARATIVE.iter().find(|(map, _)| *map == name)?;
    let document: toml::Table = toml::from_str(fragment).ok()?;
    let config = document.get("maps")?.get(name)?.get("config")?;
    match serde_json::to_value(config).ok()? {
        serde_json::Value::Object(config) => Some(config),
        _ => None,
    }
}

/// The `[maps.NAME.config]` part of a declarative map's fragment, as written there.
fn declarative_config_text(name: &str) -> Option<&'static str> {
    let (_, fragment) = DECLARATIVE.iter().find(|(map, _)| *map == name)?;
    let start = fragment.find(&format!("[maps.{name}.config]"))?;
    Some(&fragment[start..])
}

/// A map's plugin and what it describes.
#[derive(Clone)]
pub struct DemoMap {
    /// The map's name in the config.
    pub name: &'static str,
    /// The plugin's file name inside the plugins folder.
    pub plugin_file: &'static str,
    /// The loaded plugin.
    pub plugin: LoadedPlugin,
    /// What the plugin describes with the map's config (the default config for a
    /// plugin of its own).
    pub descriptor: Descriptor,
}

impl DemoMap {
    /// The key columns of the map's entity on `side`, as the plugin declares them.
    pub fn key(&self, side: Side) -> Vec<String> {
        self.descriptor
            .entity(side)
            .fields
            .iter()
            .filter(|field| field.key)
            .map(|field| field.name.clone())
            .collect()
    }
}

/// The standard pack's maps named `names` (in the pack's dependency order), each on
/// the declarative plugin of the plugins folder `plugins` with its pack config.
pub fn pack_maps(
    runtime: &PluginRuntime,
    plugins: &cap_std::fs::Dir,
    names: &[&str],
) -> anyhow::Result<Vec<DemoMap>> {
    let plugin = runtime
        .load(plugins, DECLARATIVE_PLUGIN)
        .with_context(|| format!("loading the {DECLARATIVE_PLUGIN} plugin"))?;
    let mut maps = Vec::new();
    for name in map_names().filter(|name| names.contains(name)) {
        let config = declarative_config(name)
            .with_context(|| format!("the pack's fragment of {name} has no config"))?;
        let descriptor = plugin
            .start(
                &serde_json::Value::Object(config).to_string(),
                Arc::new(NoLookups),
            )
            .with_context(|| format!("configuring the {name} map"))?
            .descriptor()
            .clone();
        maps.push(DemoMap {
            name,
            plugin_file: DECLARATIVE_PLUGIN,
            plugin: plugin.clone(),
            descriptor,
        });
    }
    Ok(maps)
}

/// The pack maps `name` depends on (its `depends_on`), directly.
pub fn pack_dependencies(name: &str) -> Vec<String> {
    pack_map_table(name)
        .and_then(|table| table.get("depends_on").cloned())
        .and_then(|value| value.as_array().cloned())
        .map(|values| {
            values
                .iter()
                .filter_map(|value| value.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the demo; see the module doc.
pub fn run(options: &DemoOptions, runtime: &PluginRuntime) -> anyhow::Result<()> {
    prepare_dir(&options.dir)?;
    let plugins =
        cap_std::fs::Dir::open_ambient_dir(&options.plugins_dir, cap_std::ambient_authority())
            .with_context(|| {
                format!(
                    "opening the plugins folder {}",
                    options.plugins_dir.display()
                )
            })?;
    let maps = pack_maps(runtime, &plugins, &map_names().collect::<Vec<_>>())?;

    let erp = store::DemoStore::new(options.erp.as_deref(), &options.dir, Side::Erp)?;
    let crm = store::DemoStore::new(options.crm.as_deref(), &options.dir, Side::Crm)?;
    for (store, side) in [(&erp, Side::Erp), (&crm, Side::Crm)] {
        store
            .create_tables(side, &maps)
            .with_context(|| format!("making the {side} tables in {}", store.describe()))?;
    }
    eprintln!(
        "seeding {} customers, their orders and the reference data of {} maps (ERP: {}, CRM: {}) ...",
        options.customers,
        maps.len(),
        erp.describe(),
        crm.describe()
    );
    let seeded = seed::seed(&maps, &erp, &crm, options.customers)?;
    eprintln!(
        "seeded: ERP {} rows, CRM {} rows (of which {} differ from the ERP and {} are CRM-only)",
        seeded.erp_rows, seeded.crm_rows, seeded.crm_changed, seeded.crm_only
    );

    let config_path = options.dir.join("dualwrite.toml");
    std::fs::write(
        &config_path,
        config_text(
            "# Written by `dualwrite demo`.\n",
            &maps,
            &options.plugins_dir.display().to_string(),
            &erp,
            &crm,
        ),
    )
    .with_context(|| format!("writing {}", config_path.display()))?;
    let plan = crate::config::load(&config_path).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let mut engine = Engine::open(&plan, runtime, EngineOptions::default())?;

    let started = Instant::now();
    let mut merged_rows = 0;
    for map in &maps {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>16} [{bar:30}] {pos}/{len} rows, {per_sec}, ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(map.name);
        let status = engine.initial_sync(map.name, 2_000, "demo", &mut |status| {
            bar.set_length(status.rows_total);
            bar.set_position(status.rows_done);
        })?;
        merged_rows += status.rows_done;
        bar.finish_with_message("merged");
    }
    let elapsed = started.elapsed();
    eprintln!(
        "initial sync: {merged_rows} rows in {:.2} s ({:.0} rows/s)",
        elapsed.as_secs_f64(),
        merged_rows as f64 / elapsed.as_secs_f64().max(1e-9)
    );

    let mut operations = match options.admin_listen {
        Some(listen) => {
            let operations = crate::admin::start(
                &plan,
                &engine,
                crate::admin::OperationsOptions {
                    listen: Some(listen),
                    ..Default::default()
                },
            )?;
            eprintln!(
                "admin API on {} (try: curl -H \"Authorization: Bearer $DUALWRITE_TOKEN\" {}/api/v1/maps)",
                operations.server.url(),
                operations.server.url()
            );
            eprintln!(
                "web UI: open {}/ui/ and log in with the admin token",
                operations.server.url()
            );
            if let Some(token) = &operations.generated_token {
                eprintln!(
                    "admin token for this run: {} (export DUALWRITE_TOKEN=... for the CLI)",
                    token.expose()
                );
            }
            Some(operations)
        }
        None => None,
    };
    live(
        &mut engine,
        operations.as_mut(),
        options,
        (&erp, &crm),
        &config_path,
    )
}

fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let is_demo =
            dir.join("dualwrite.toml").exists() || std::fs::read_dir(dir)?.next().is_none();
        if !is_demo {
            bail!(
                "{} exists and is not a demo folder (no dualwrite.toml); choose another --dir",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// The SQL column type for a declared kind; decimals are text so no digit is lost.
fn column_type(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Boolean => "BOOLEAN",
        ValueKind::Integer => "INTEGER",
        ValueKind::Float => "REAL",
        ValueKind::Decimal => "TEXT DECIMAL(19,4)",
        ValueKind::Timestamp => "DATETIME",
        ValueKind::Date => "DATE",
        ValueKind::Bytes => "BLOB",
        ValueKind::Json => "JSON",
        ValueKind::Text | ValueKind::Any => "TEXT",
    }
}

/// Creates the `side` table of each map in the database at `path` (made if missing, in
/// WAL mode): one column per declared field, the declared key as primary key.
pub fn create_tables(path: &Path, side: Side, maps: &[DemoMap]) -> anyhow::Result<()> {
    let descriptors: Vec<&Descriptor> = maps.iter().map(|map| &map.descriptor).collect();
    create_entity_tables(path, side, &descriptors)
}

/// Creates the `side` table of each described map in the database at `path` (made if
/// missing, in WAL mode). Maps that share an entity on this side (the standard pack's
/// customers and contacts both map the ERP's customers) get one table with every field
/// any of them declares (the first declaration of a field wins).
pub fn create_entity_tables(
    path: &Path,
    side: Side,
    descriptors: &[&Descriptor],
) -> anyhow::Result<()> {
    let db =
        rusqlite::Connection::open(path).with_context(|| format!("creating {}", path.display()))?;
    db.execute_batch("PRAGMA journal_mode = WAL;")?;
    for (entity, fields) in entity_tables(side, descriptors) {
        let columns: Vec<String> = fields
            .iter()
            .map(|field| {
                format!(
                    "\"{}\" {}{}",
                    field.name,
                    column_type(field.kind),
                    if field.key { " NOT NULL" } else { "" }
                )
            })
            .collect();
        let key: Vec<String> = fields
            .iter()
            .filter(|field| field.key)
            .map(|field| format!("\"{}\"", field.name))
            .collect();
        db.execute_batch(&format!(
            "CREATE TABLE \"{entity}\" ({}, PRIMARY KEY ({}));",
            columns.join(", "),
            key.join(", ")
        ))?;
    }
    Ok(())
}

/// The tables of `side` the described maps need: each entity once, with every field any
/// of the maps declares for it (the first declaration of a field wins), in map order.
pub fn entity_tables<'d>(
    side: Side,
    descriptors: &[&'d Descriptor],
) -> Vec<(&'d str, Vec<&'d crate::change::FieldSpec>)> {
    let mut tables: Vec<(&str, Vec<&crate::change::FieldSpec>)> = Vec::new();
    for descriptor in descriptors {
        let entity = descriptor.entity(side);
        let at = match tables.iter().position(|(name, _)| *name == entity.entity) {
            Some(at) => at,
            None => {
                tables.push((&entity.entity, Vec::new()));
                tables.len() - 1
            }
        };
        for field in &entity.fields {
            if !tables[at].1.iter().any(|known| known.name == field.name) {
                tables[at].1.push(field);
            }
        }
    }
    tables
}

/// A deployment config for `maps` (pack maps) between `erp` and `crm`, starting with
/// `header` (comment lines).
pub fn config_text(
    header: &str,
    maps: &[DemoMap],
    plugins_dir: &str,
    erp: &store::DemoStore,
    crm: &store::DemoStore,
) -> String {
    let names: Vec<&str> = maps.iter().map(|map| map.name).collect();
    let mut text = format!(
        "{header}data_dir = \"state\"\nplugins_dir = {plugins_dir:?}\n\n\
         [sides.erp]\n{}\n[sides.crm]\n{}",
        erp.config(Side::Erp),
        crm.config(Side::Crm)
    );
    for map in maps {
        let depends: Vec<String> = map
            .descriptor
            .depends_on
            .iter()
            .filter(|name| names.contains(&name.as_str()) && name.as_str() != map.name)
            .map(|name| format!("{name:?}"))
            .collect();
        let key = |side| {
            map.key(side)
                .iter()
                .map(|name| format!("{name:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // A one-way map of the pack stays one-way; the others let the ERP win conflicts.
        let flow = match pack_map_table(map.name)
            .as_ref()
            .and_then(|table| table.get("direction"))
            .and_then(toml::Value::as_str)
        {
            Some(direction) => format!("direction = {direction:?}"),
            None => "conflict = { policy = \"side-wins\", winner = \"erp\" }".to_owned(),
        };
        text.push_str(&format!(
            "\n[maps.{}]\nplugin = {:?}\nerp = {{ side = \"erp\", entity = {:?}, key = [{}] }}\n\
             crm = {{ side = \"crm\", entity = {:?}, key = [{}] }}\n\
             depends_on = [{}]\n{flow}\n\
             initial_sync = {{ master = \"erp\" }}\nbatch_size = 1000\n",
            map.name,
            map.plugin_file,
            map.descriptor.erp.entity,
            key(Side::Erp),
            map.descriptor.crm.entity,
            key(Side::Crm),
            depends.join(", ")
        ));
        if map.plugin_file == DECLARATIVE_PLUGIN
            && let Some(config) = declarative_config_text(map.name)
        {
            text.push('\n');
            text.push_str(config);
        }
    }
    text
}

/// Live sync with the generator editing both sides; prints a summary every second.
fn live(
    engine: &mut Engine,
    mut operations: Option<&mut crate::admin::Operations>,
    options: &DemoOptions,
    (erp, crm): (&store::DemoStore, &store::DemoStore),
    config_path: &Path,
) -> anyhow::Result<()> {
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = shutdown.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .context("installing the Ctrl-C handler")?;
    let edits = Arc::new(AtomicU64::new(0));
    let generator = seed::Generator::new(erp, crm, options.customers)?;
    let generator_thread = {
        let shutdown = shutdown.clone();
        let edits = edits.clone();
        let rate = options.edit_rate;
        std::thread::spawn(move || generator.run(rate, &shutdown, &edits))
    };
    eprintln!(
        "live sync: the generator edits both sides ({} edits/s); the config is {}{}",
        options.edit_rate,
        config_path.display(),
        match options.duration {
            Some(duration) => format!("; stopping after {} s", duration.as_secs()),
            None => "; Ctrl-C stops".to_owned(),
        }
    );
    // A plugin file dropped into the plugins folder is swapped in (or refused) live.
    let mut plugin_folder = match crate::sync::PluginFolder::watch(&options.plugins_dir) {
        Ok(folder) => {
            eprintln!(
                "plugins folder {} is watched: a changed plugin file is swapped in live",
                options.plugins_dir.display()
            );
            Some(folder)
        }
        Err(error) => {
            eprintln!("the plugins folder is not watched: {error:#}");
            None
        }
    };
    let lag = LagProbe::open(erp.sqlite_path(), crm.sqlite_path())?;
    let started = Instant::now();
    let mut last = Instant::now();
    // Rates count from here: the initial sync's writes are not live traffic.
    let mut previous: HashMap<String, MapCounters> = engine.counters().into_iter().collect();
    while !shutdown.load(Ordering::Relaxed)
        && options
            .duration
            .is_none_or(|duration| started.elapsed() < duration)
    {
        let report = engine.step()?;
        if let Some(operations) = operations.as_deref_mut() {
            operations.control.tick(engine)?;
        }
        if let Some(folder) = &mut plugin_folder {
            for outcome in folder.poll(engine) {
                eprintln!("{outcome}");
            }
        }
        if report.captured == 0 {
            engine.wait_for_changes();
        }
        if last.elapsed() >= Duration::from_secs(1) {
            let seconds = last.elapsed().as_secs_f64();
            last = Instant::now();
            let totals = total(&engine.counters());
            let before = total(
                &previous
                    .values()
                    .cloned()
                    .map(|c| (String::new(), c))
                    .collect::<Vec<_>>(),
            );
            println!(
                "[{:>4.0}s] erp->crm {:>6.0}/s  crm->erp {:>6.0}/s  lag erp {:>4} ms crm {:>4} ms  conflicts {}  errors {}  edits made {}{}",
                started.elapsed().as_secs_f64(),
                (totals.written_to_crm - before.written_to_crm) as f64 / seconds,
                (totals.written_to_erp - before.written_to_erp) as f64 / seconds,
                lag.pending_age_ms(Side::Erp),
                lag.pending_age_ms(Side::Crm),
                totals.conflicts,
                totals.errors,
                edits.load(Ordering::Relaxed),
                offline_note(engine),
            );
            previous = engine.counters().into_iter().collect();
        }
    }
    shutdown.store(true, Ordering::Relaxed);
    let _ = generator_thread.join();
    // Let the last edits through, then report.
    let settle_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < settle_until && engine.step()?.captured > 0 {}
    let totals = total(&engine.counters());
    println!(
        "done: {} rows written to the CRM, {} to the ERP, {} filtered, {} no-op, {} conflicts, {} errors",
        totals.written_to_crm,
        totals.written_to_erp,
        totals.filtered,
        totals.no_ops,
        totals.conflicts,
        totals.errors
    );
    println!(
        "the databases and the config are in {}",
        options.dir.display()
    );
    Ok(())
}

fn offline_note(engine: &Engine) -> String {
    engine
        .offline_sides()
        .iter()
        .map(|(side, reason)| format!("  [{side} offline: {reason}]"))
        .collect()
}

fn total(counters: &[(String, MapCounters)]) -> MapCounters {
    counters
        .iter()
        .fold(MapCounters::default(), |mut sum, (_, c)| {
            sum.captured_from_erp += c.captured_from_erp;
            sum.captured_from_crm += c.captured_from_crm;
            sum.written_to_crm += c.written_to_crm;
            sum.written_to_erp += c.written_to_erp;
            sum.filtered += c.filtered;
            sum.no_ops += c.no_ops;
            sum.conflicts += c.conflicts;
            sum.errors += c.errors;
            sum
        })
}

/// Reads how old the oldest not-yet-synced change of each SQLite side is: the sync
/// lag (a server side, whose change log is its server's, shows 0).
struct LagProbe {
    erp: Option<rusqlite::Connection>,
    crm: Option<rusqlite::Connection>,
}

impl LagProbe {
    fn open(erp: Option<&Path>, crm: Option<&Path>) -> anyhow::Result<LagProbe> {
        Ok(LagProbe {
            erp: erp.map(rusqlite::Connection::open).transpose()?,
            crm: crm.map(rusqlite::Connection::open).transpose()?,
        })
    }

    fn pending_age_ms(&self, side: Side) -> i64 {
        let db = match side {
            Side::Erp => &self.erp,
            Side::Crm => &self.crm,
        };
        let Some(db) = db else {
            return 0;
        };
        let oldest: Option<i64> = db
            .query_row("SELECT min(at) FROM _dualwrite_changes", [], |row| {
                row.get(0)
            })
            .unwrap_or(None);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as i64)
            .unwrap_or_default();
        oldest.map_or(0, |at| (now - at).max(0))
    }
}

/// Writes rows through a writer (one transaction per 5,000 rows).
pub fn write_rows(path: &Path, writes: &[RowWrite]) -> anyhow::Result<()> {
    let mut writer = SqliteWriter::open(path, SqliteOptions::default())?;
    for chunk in writes.chunks(5_000) {
        writer.apply(chunk)?;
    }
    Ok(())
}

/// Runs a row of `map`'s ERP entity through its plugin (lookups copied as text) and
/// returns the CRM row it becomes, by column name (`None` when the plugin filters it).
pub fn to_crm(
    map: &DemoMap,
    rows: &[crate::capture::RowImage],
) -> anyhow::Result<Vec<Option<crate::capture::RowImage>>> {
    let config = match map.plugin_file {
        DECLARATIVE_PLUGIN => declarative_config(map.name),
        _ => None,
    };
    let mut runner = match config {
        Some(mut config) => {
            config.insert("resolve_lookups".into(), serde_json::Value::Bool(false));
            map.plugin.start(
                &serde_json::Value::Object(config).to_string(),
                Arc::new(NoLookups),
            )?
        }
        None => map
            .plugin
            .start(r#"{"resolve_lookups": false}"#, Arc::new(NoLookups))
            .or_else(|_| map.plugin.start("{}", Arc::new(NoLookups)))?,
    };
    let erp = &map.descriptor.erp;
    let crm = &map.descriptor.crm;
    let changes: Vec<crate::change::Change> = rows
        .iter()
        .map(|row| crate::change::Change {
            source: Side::Erp,
            op: crate::change::ChangeOp::Insert,
            row: erp
                .fields
                .iter()
                .map(|field| row.get(&field.name).cloned().unwrap_or(Value::Null))
                .collect(),
            changed: Vec::new(),
        })
        .collect();
    let mut out = Vec::with_capacity(rows.len());
    for chunk in changes.chunks(1_000) {
        for result in runner.transform(chunk) {
            out.push(match result {
                crate::plugin::TransformResult::Writes(writes) => writes.first().map(|write| {
                    write
                        .fields
                        .iter()
                        .filter_map(|field| {
                            crm.fields
                                .get(field.field as usize)
                                .map(|spec| (spec.name.clone(), field.value.clone()))
                        })
                        .collect()
                }),
                _ => None,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_runs_every_map_of_the_pack_in_dependency_order() {
        let names: Vec<&str> = map_names().collect();
        let pack = std::fs::read_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../packs/standard/maps"
        ))
        .expect("the pack's maps")
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|entry| entry.path().extension().is_some_and(|ext| ext == "toml"))
        })
        .count();
        assert_eq!(names.len(), pack, "{names:?}");
        for (at, name) in names.iter().enumerate() {
            let table = pack_map_table(name).unwrap_or_else(|| panic!("{name}'s fragment"));
            assert_eq!(
                table.get("plugin").and_then(toml::Value::as_str),
                Some(DECLARATIVE_PLUGIN)
            );
            assert!(declarative_config(name).is_some(), "{name} has a config");
            let depends = table
                .get("depends_on")
                .and_then(toml::Value::as_array)
                .cloned()
                .unwrap_or_default();
            for dependency in depends {
                let dependency = dependency.as_str().expect("a map name");
                assert!(
                    names[..at].contains(&dependency),
                    "{name} depends on {dependency}, which the demo seeds and syncs later"
                );
            }
        }
    }
}
