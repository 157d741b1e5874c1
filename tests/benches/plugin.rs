//! Plugin runtime benchmark: the customers plugin per change, in Wasm and natively.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p dualwrite-tests --bench plugin`).
//! Measures, in one run:
//! - `transform/wasm/<batch>`: the customers plugin component through the runtime
//!   (sandbox limits on: fuel, epoch deadline, memory cap), batches of 1, 100, 1000;
//! - `transform/native/<batch>`: the same plugin crate compiled for the host and called
//!   through the SDK's test seam (the baseline);
//! - `lifecycle/start`: instantiate + configure + describe of a loaded plugin;
//! - `lifecycle/swap-cached`: load a new version from bytes with its compiled code
//!   cached on disk (hash, cache read, type checks) and start it: what a hot swap costs;
//! - `languages/<version>`: the Customer groups map written in Rust, JavaScript, Python
//!   and C (all Wasm components, same runtime and limits) on the same batch of 100
//!   changes (ERP inserts with two lookups each, CRM updates of the value-mapped field).
//!
//! At the end it prints per-change times and the wasm/native ratio per batch size, and
//! each language's per-change time and ratio to the Rust version, read from criterion's
//! own estimates of this run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use dualwrite::change::{Change, ChangeOp, Side, Value};
use dualwrite::plugin::{Limits, PluginRuntime};
use dualwrite::replay::{RecordedLookups, parse_links};
use dualwrite_guest::MapPlugin;
use dualwrite_guest::testing::FakeHost;
use dualwrite_tests::plugin_path;

const BATCH_SIZES: [usize; 3] = [1, 100, 1000];

const DEFAULT_CONFIG: &str = r#"{"companies": ["USMF", "DEMF"]}"#;

/// One ERP customer row: every field of the customers plugin's ERP side, by name.
fn erp_row(index: usize) -> Vec<(&'static str, Value)> {
    let text = |s: &str| Value::Text(s.to_owned());
    vec![
        (
            "DATAAREAID",
            text(if index.is_multiple_of(2) {
                "USMF"
            } else {
                "DEMF"
            }),
        ),
        ("CUSTOMERACCOUNT", Value::Text(format!("US-{index:06}"))),
        (
            "CREDITLIMIT",
            Value::Decimal(format!("{}.50", 1000 + index)),
        ),
        ("SALESCURRENCYCODE", text("USD")),
        (
            "SALESMEMO",
            Value::Text(format!("Customer number {index} of the benchmark")),
        ),
        ("CREDITLIMITISMANDATORY", text("yes")),
        ("CREDITRATING", text("A")),
        ("CUSTOMERGROUPID", text("10")),
        ("IDENTIFICATIONNUMBER", Value::Text(format!("ID{index:08}"))),
        ("INVOICEACCOUNT", Value::Text(format!("US-{index:06}"))),
        ("ISONETIMECUSTOMER", text("no")),
        ("ONHOLDSTATUS", text("invoice")),
        ("PARTYCOUNTRY", text("USA")),
        ("PARTYSTATE", text("WA")),
        ("PAYMENTDAY", text("Mon")),
        ("PAYMENTMETHOD", text("CHECK")),
        ("PAYMENTSCHEDULE", text("Monthly")),
        ("PAYMENTTERMS", text("Net30")),
        ("PAYMENTTERMSBASEDAYS", Value::Integer(30)),
        ("TAXEXEMPTNUMBER", text("TX-99")),
        ("VENDORACCOUNT", Value::Null),
        ("PARTYTYPE", text("Organization")),
        ("PARTYNUMBER", Value::Text(format!("P{index:07}"))),
        ("CONTACTPERSONID", text("CP-1")),
        ("SALESTAXGROUP", text("WA")),
    ]
}

const LINKS: &str = r#"{"side":"erp","entity":"Currencies","key":["USD"],"linked_entity":"transactioncurrencies","linked_key":["USD"]}
{"side":"erp","entity":"CustCustomerGroup","key":["USMF","10"],"linked_entity":"msdyn_customergroups","linked_key":["USMF","10"]}
{"side":"erp","entity":"CustCustomerGroup","key":["DEMF","10"],"linked_entity":"msdyn_customergroups","linked_key":["DEMF","10"]}
{"side":"erp","entity":"PaymentTerms","key":["USMF","Net30"],"linked_entity":"msdyn_paymentterms","linked_key":["USMF","Net30"]}
{"side":"erp","entity":"PaymentTerms","key":["DEMF","Net30"],"linked_entity":"msdyn_paymentterms","linked_key":["DEMF","Net30"]}"#;

fn native_host() -> FakeHost {
    let text = |s: &str| dualwrite_guest::Value::Text(s.to_owned());
    let mut host = FakeHost::new().link(
        dualwrite_guest::Side::Erp,
        "Currencies",
        vec![text("USD")],
        vec![text("USD")],
    );
    for company in ["USMF", "DEMF"] {
        host = host
            .link(
                dualwrite_guest::Side::Erp,
                "CustCustomerGroup",
                vec![text(company), text("10")],
                vec![text(company), text("10")],
            )
            .link(
                dualwrite_guest::Side::Erp,
                "PaymentTerms",
                vec![text(company), text("Net30")],
                vec![text(company), text("Net30")],
            );
    }
    host
}

fn to_guest(value: &Value) -> dualwrite_guest::Value {
    use dualwrite_guest::Value as G;
    match value {
        Value::Null => G::Null,
        Value::Boolean(b) => G::Boolean(*b),
        Value::Integer(n) => G::Integer(*n),
        Value::Float(f) => G::Float(*f),
        Value::Decimal(d) => G::Decimal(d.clone()),
        Value::Text(t) => G::Text(t.clone()),
        Value::Date(d) => G::Date(*d),
        Value::Bytes(b) => G::Bytes(b.clone()),
        Value::Json(j) => G::Json(j.clone()),
        Value::Timestamp(t) => G::Timestamp(dualwrite_guest::Timestamp {
            seconds: t.seconds,
            nanos: t.nanos,
            offset_minutes: t.offset_minutes,
        }),
    }
}

fn main() {
    // DUALWRITE_BENCH_CONFIG overrides the plugin config, to measure variants.
    let config_override = std::env::var("DUALWRITE_BENCH_CONFIG").ok();
    let config: &'static str = match config_override {
        Some(text) => Box::leak(text.into_boxed_str()),
        None => DEFAULT_CONFIG,
    };
    let runtime_limits = Limits {
        meter_fuel: std::env::var_os("DUALWRITE_BENCH_NO_FUEL").is_none(),
        ..Limits::default()
    };
    let cache_dir =
        std::env::temp_dir().join(format!("dualwrite-bench-cache-{}", std::process::id()));
    let runtime = PluginRuntime::new(runtime_limits, Some(cache_dir.clone())).expect("runtime");
    let bytes =
        std::fs::read(plugin_path("customers")).expect("customers plugin built by build.rs");
    let plugin = runtime
        .load_bytes("customers.wasm", &bytes)
        .expect("load customers");
    let links = parse_links("links", LINKS).expect("links");
    let lookups = Arc::new(RecordedLookups::new(links, Vec::new()));
    let mut runner = plugin
        .start(config, lookups.clone())
        .expect("start customers");
    let descriptor = runner.descriptor().clone();

    // The same rows for both paths, in field-id order of the plugin's ERP side.
    let make_row = |index: usize| -> Vec<Value> {
        let named = erp_row(index);
        descriptor
            .erp
            .fields
            .iter()
            .map(|field| {
                named
                    .iter()
                    .find(|(name, _)| *name == field.name)
                    .map(|(_, value)| value.clone())
                    .unwrap_or(Value::Null)
            })
            .collect()
    };
    let host_batch = |size: usize| -> Vec<Change> {
        (0..size)
            .map(|index| Change {
                source: Side::Erp,
                op: ChangeOp::Insert,
                row: make_row(index),
                changed: Vec::new(),
            })
            .collect()
    };
    let guest_batch = |batch: &[Change]| -> Vec<dualwrite_guest::Change> {
        batch
            .iter()
            .map(|change| dualwrite_guest::Change {
                source: dualwrite_guest::Side::Erp,
                op: dualwrite_guest::ChangeOp::Insert,
                row: change.row.iter().map(to_guest).collect(),
                changed: Vec::new(),
            })
            .collect()
    };

    let mut native = customers::Customers::default();
    native.configure(config).expect("native configure");
    let fake_host = native_host();

    // Both paths must agree before their speed means anything.
    let probe = host_batch(3);
    let wasm_out = runner.transform(&probe);
    let native_out = native.transform_batch(&guest_batch(&probe), &fake_host);
    assert_eq!(wasm_out.len(), native_out.len());
    for (wasm, native) in wasm_out.iter().zip(&native_out) {
        let wasm_writes = match wasm {
            dualwrite::plugin::TransformResult::Writes(writes) => writes.len(),
            other => panic!("wasm plugin did not write: {other:?}"),
        };
        let native_writes = match native {
            dualwrite_guest::Outcome::Writes(writes) => writes.len(),
            other => panic!("native plugin did not write: {other:?}"),
        };
        assert_eq!(wasm_writes, native_writes);
    }

    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    {
        let mut group = criterion.benchmark_group("transform");
        for size in BATCH_SIZES {
            let batch = host_batch(size);
            let guest = guest_batch(&batch);
            group.throughput(Throughput::Elements(size as u64));
            group.bench_function(format!("wasm/{size}"), |b| {
                b.iter(|| runner.transform(&batch))
            });
            group.bench_function(format!("native/{size}"), |b| {
                b.iter(|| native.transform_batch(&guest, &fake_host))
            });
            // The native path given owned copies, as a plugin gets them inside Wasm.
            group.bench_function(format!("native-owned/{size}"), |b| {
                b.iter_batched(
                    || guest_batch(&batch),
                    |owned| native.transform_batch(&owned, &fake_host),
                    BatchSize::LargeInput,
                )
            });
        }
        group.finish();
    }
    {
        let mut group = criterion.benchmark_group("lifecycle");
        group.bench_function("start", |b| {
            b.iter(|| plugin.start(config, lookups.clone()).expect("start"))
        });
        group.bench_function("swap-cached", |b| {
            b.iter(|| {
                let loaded = runtime
                    .load_bytes("customers.wasm", &bytes)
                    .expect("load from cache");
                loaded.start(config, lookups.clone()).expect("start")
            })
        });
        let uncached = PluginRuntime::new(runtime_limits, None).expect("runtime");
        group.sample_size(10);
        group.bench_function("load-uncached", |b| {
            b.iter(|| {
                uncached
                    .load_bytes("customers.wasm", &bytes)
                    .expect("compile")
            })
        });
        group.finish();
    }
    bench_languages(&mut criterion, &runtime);
    criterion.final_summary();
    print_ratios();
    print_language_ratios();
    let _ = std::fs::remove_dir_all(cache_dir);
}

/// Reads criterion's estimates of this run and prints per-change times and ratios.
fn print_ratios() {
    let root = criterion_dir();
    let mean_ns = |group: &str, name: &str| -> Option<f64> {
        let path = root.join(group).join(name).join("new/estimates.json");
        let text = std::fs::read_to_string(path).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json["mean"]["point_estimate"].as_f64()
    };
    println!("\nplugin benchmark summary (mean of this run)");
    println!(
        "{:>6} {:>16} {:>16} {:>20} {:>10} {:>16}",
        "batch",
        "wasm us/change",
        "native us/change",
        "native-owned us/chg",
        "wasm/native",
        "wasm/native-owned"
    );
    for size in BATCH_SIZES {
        let (Some(wasm), Some(native), Some(owned)) = (
            mean_ns("transform", &format!("wasm_{size}")),
            mean_ns("transform", &format!("native_{size}")),
            mean_ns("transform", &format!("native-owned_{size}")),
        ) else {
            println!("{size:>6} (no estimates found under {})", root.display());
            continue;
        };
        let per = |ns: f64| ns / size as f64 / 1000.0;
        println!(
            "{size:>6} {:>16.3} {:>16.3} {:>20.3} {:>10.2} {:>16.2}",
            per(wasm),
            per(native),
            per(owned),
            wasm / native,
            wasm / owned
        );
    }
    for name in ["start", "swap-cached", "load-uncached"] {
        if let Some(ns) = mean_ns("lifecycle", name) {
            println!("lifecycle {name}: {:.3} ms", ns / 1e6);
        }
    }
}

fn criterion_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion")
}

/// The Customer groups map in each language, by plugin name, as shown in the summary.
const LANGUAGE_VERSIONS: [(&str, &str); 4] = [
    ("rust", "customer-groups"),
    ("javascript", "customer-groups-js"),
    ("python", "customer-groups-py"),
    ("c", "customer-groups-c"),
];

/// Changes per call in the language comparison.
const LANGUAGE_BATCH: usize = 100;

/// Half ERP inserts of whole rows (two terms of payment lookups each), half CRM updates
/// of the value-mapped field only.
fn customer_group_batch() -> Vec<Change> {
    let text = |s: &str| Value::Text(s.to_owned());
    (0..LANGUAGE_BATCH)
        .map(|index| {
            let company = if index.is_multiple_of(4) {
                "DEMF"
            } else {
                "USMF"
            };
            if index.is_multiple_of(2) {
                Change {
                    source: Side::Erp,
                    op: ChangeOp::Insert,
                    row: vec![
                        text(company),
                        Value::Text(format!("G{index:04}")),
                        Value::Text(format!("Customer group {index}")),
                        text(if index.is_multiple_of(3) { "yes" } else { "No" }),
                        text("Net30"),
                        text("Net30"),
                    ],
                    changed: Vec::new(),
                }
            } else {
                Change {
                    source: Side::Crm,
                    op: ChangeOp::Update,
                    row: vec![
                        text(company),
                        Value::Text(format!("G{index:04}")),
                        Value::Text(format!("Customer group {index}")),
                        Value::Boolean(index.is_multiple_of(3)),
                        text("Net30"),
                        Value::Null,
                    ],
                    changed: vec![3],
                }
            }
        })
        .collect()
}

/// `languages/<language>`: the same batch through each version; all must agree first.
fn bench_languages(criterion: &mut Criterion, runtime: &PluginRuntime) {
    let links = parse_links("links", LINKS).expect("links");
    let lookups = Arc::new(RecordedLookups::new(links, Vec::new()));
    let batch = customer_group_batch();
    let mut runners: Vec<_> = LANGUAGE_VERSIONS
        .iter()
        .map(|(language, name)| {
            let bytes = std::fs::read(plugin_path(name)).expect("plugin built by build.rs");
            let runner = runtime
                .load_bytes(&format!("{name}.wasm"), &bytes)
                .unwrap_or_else(|error| panic!("load {name}: {error}"))
                .start(DEFAULT_CONFIG, lookups.clone())
                .unwrap_or_else(|error| panic!("start {name}: {error}"));
            (*language, runner)
        })
        .collect();
    let reference = runners[0].1.transform(&batch);
    assert!(
        reference.iter().all(
            |result| matches!(result, dualwrite::plugin::TransformResult::Writes(w) if w.len() == 1)
        ),
        "every change of the language batch writes: {reference:?}"
    );
    for (language, runner) in &mut runners[1..] {
        assert_eq!(
            runner.transform(&batch),
            reference,
            "{language} agrees with rust"
        );
    }
    let mut group = criterion.benchmark_group("languages");
    group.throughput(Throughput::Elements(LANGUAGE_BATCH as u64));
    for (language, runner) in &mut runners {
        group.bench_function(*language, |b| b.iter(|| runner.transform(&batch)));
    }
    group.finish();
}

/// Per-change time of each language version and its ratio to the Rust version.
fn print_language_ratios() {
    let root = criterion_dir().join("languages");
    let mean_ns = |name: &str| -> Option<f64> {
        let text = std::fs::read_to_string(root.join(name).join("new/estimates.json")).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json["mean"]["point_estimate"].as_f64()
    };
    println!("\ncustomer groups map per language (batch of {LANGUAGE_BATCH}, mean of this run)");
    println!("{:>12} {:>12} {:>10}", "language", "us/change", "x rust");
    let Some(rust) = mean_ns("rust") else {
        println!("(no estimates found under {})", root.display());
        return;
    };
    for (language, _) in LANGUAGE_VERSIONS {
        if let Some(ns) = mean_ns(language) {
            println!(
                "{language:>12} {:>12.3} {:>10.2}",
                ns / LANGUAGE_BATCH as f64 / 1000.0,
                ns / rust
            );
        }
    }
}
