//! Language parity: the Customer groups map written in JavaScript, Python and C
//! (`plugins/customer-groups-{js,py,c}`, built from source by `build.rs`) gives exactly
//! the same answers as the Rust plugin (`plugins/customer-groups`), all four running as
//! components in the same runtime.
//!
//! The data-driven cases (`tests/cases/customer-groups-*`, `variants` in case.toml) check
//! each version against the recorded expectations; this test goes wider: a generated
//! change set that puts every kind of value (and odd text: quotes, backslashes, control
//! characters, non-ASCII) into every field from both sides, with inserts, updates
//! (touching each field, a key, or unknown fields) and deletes, lookups that are linked,
//! not linked, answered with an error (retryable or not) or with an empty key, under
//! several configs; plus `describe` and the answers of `configure` to good and bad configs.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use dualwrite::change::{Change, ChangeOp, HostError, Side, Timestamp, Value};
use dualwrite::plugin::{
    Limits, LoadedPlugin, Lookups, MapPluginRunner, PluginRuntime, StartError, TransformResult,
};
use dualwrite_tests::plugin_path;

/// The Rust plugin, the reference.
const REFERENCE: &str = "customer-groups";

/// The versions in other languages.
const LANGUAGES: [&str; 3] = [
    "customer-groups-js",
    "customer-groups-py",
    "customer-groups-c",
];

/// Entities of the terms of payment map, which the lookups translate through.
const TERMS: [(Side, &str); 2] = [
    (Side::Erp, "PaymentTerms"),
    (Side::Crm, "msdyn_paymentterms"),
];

/// Links of terms of payment, and terms the host answers for in other ways, by name.
struct ScriptedLookups {
    /// (side, entity, company, name) -> linked key.
    links: HashMap<(String, String, String, String), Vec<Value>>,
}

fn link_key(side: Side, entity: &str, key: &[Value]) -> Option<(String, String, String, String)> {
    match key {
        [Value::Text(company), Value::Text(name)] => Some((
            format!("{side:?}"),
            entity.to_owned(),
            company.clone(),
            name.clone(),
        )),
        _ => None,
    }
}

impl ScriptedLookups {
    fn new() -> ScriptedLookups {
        let mut links = HashMap::new();
        for (side, entity) in TERMS {
            for company in ["USMF", "DEMF"] {
                for (name, linked) in [("Net30", "N30"), ("Net10", "net10 ✓")] {
                    links.insert(
                        link_key(side, entity, &[text(company), text(name)]).expect("a key"),
                        vec![text(company), text(linked)],
                    );
                }
            }
        }
        ScriptedLookups { links }
    }
}

impl Lookups for ScriptedLookups {
    fn translate_key(
        &self,
        side: Side,
        entity: &str,
        key: &[Value],
    ) -> Result<Option<Vec<Value>>, HostError> {
        match key.last() {
            Some(Value::Text(name)) if name == "Offline" => Err(HostError {
                message: "the erp side is offline".to_owned(),
                retryable: true,
            }),
            Some(Value::Text(name)) if name == "Broken" => Err(HostError {
                message: "no map covers \"that\"".to_owned(),
                retryable: false,
            }),
            Some(Value::Text(name)) if name == "Empty" => Ok(Some(Vec::new())),
            _ => Ok(link_key(side, entity, key).and_then(|key| self.links.get(&key).cloned())),
        }
    }

    fn read_row(
        &self,
        _: Side,
        _: &str,
        _: &[Value],
        _: &[String],
    ) -> Result<Option<Vec<Value>>, HostError> {
        Err(HostError {
            message: "this map reads no rows".to_owned(),
            retryable: false,
        })
    }
}

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

/// Values of every kind, and text that tests escaping and case rules.
fn palette() -> Vec<Value> {
    vec![
        Value::Null,
        text(""),
        text("Net30"),
        text("Net10"),
        text("Net60"),
        text("Offline"),
        text("Broken"),
        text("Empty"),
        text("yes"),
        text("No"),
        text("YES"),
        text("maybe"),
        text("usmf"),
        text(
            "quote \" backslash \\ tab \t newline \n return \r nul \0 bell \u{7} del \u{7f} c1 \u{85}",
        ),
        text("Großhandel ü 😀 ÿ"),
        Value::Boolean(true),
        Value::Boolean(false),
        Value::Integer(-42),
        Value::Integer(9_007_199_254_740_991),
        Value::Float(1.5),
        Value::Float(-0.1),
        Value::Float(1e21),
        Value::Float(1.0e-7),
        Value::Float(3.0),
        Value::Float(f64::NAN),
        Value::Float(f64::INFINITY),
        Value::Decimal("10.50".to_owned()),
        Value::Timestamp(Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
            offset_minutes: Some(60),
        }),
        Value::Date(19_000),
        Value::Bytes(vec![0, 1, 255]),
        Value::Json("{\"a\": 1}".to_owned()),
    ]
}

fn erp_row(company: &str) -> Vec<Value> {
    vec![
        text(company),
        text("10"),
        text("Wholesale"),
        text("yes"),
        text("Net30"),
        text("Net10"),
    ]
}

fn crm_row(company: &str) -> Vec<Value> {
    vec![
        text(company),
        text("10"),
        text("Wholesale"),
        Value::Boolean(false),
        text("Net30"),
        text("Net10"),
    ]
}

/// Every palette value in every field from both sides, as insert, update of that field,
/// update with unknown changed fields, and delete; plus whole rows per company.
fn changes() -> Vec<Change> {
    let mut changes = Vec::new();
    for (source, row) in [
        (Side::Erp, erp_row as fn(&str) -> Vec<Value>),
        (Side::Crm, crm_row),
    ] {
        for company in ["USMF", "DEMF", "GBSI", "usmf"] {
            for op in [ChangeOp::Insert, ChangeOp::Update, ChangeOp::Delete] {
                changes.push(Change {
                    source,
                    op,
                    row: row(company),
                    changed: Vec::new(),
                });
            }
        }
        for field in 0..6u32 {
            for value in palette() {
                let mut values = row("USMF");
                values[field as usize] = value;
                for (op, changed) in [
                    (ChangeOp::Insert, vec![]),
                    (ChangeOp::Update, vec![field]),
                    (ChangeOp::Update, vec![]),
                    (ChangeOp::Delete, vec![]),
                ] {
                    changes.push(Change {
                        source,
                        op,
                        row: values.clone(),
                        changed,
                    });
                }
            }
        }
        // Updates touching fields other than the one that changed, and several at once.
        for changed in [vec![2], vec![3, 5], vec![0], vec![1, 4], vec![2, 3, 4, 5]] {
            changes.push(Change {
                source,
                op: ChangeOp::Update,
                row: row("DEMF"),
                changed,
            });
        }
    }
    changes
}

/// Every version, loaded (compiled) once for all tests of this binary.
fn loaded(name: &str) -> &'static LoadedPlugin {
    // The runtime stays alive with the plugins (it runs their deadline clock).
    static PLUGINS: OnceLock<(PluginRuntime, HashMap<&'static str, LoadedPlugin>)> =
        OnceLock::new();
    let (_, plugins) = PLUGINS.get_or_init(|| {
        let runtime = PluginRuntime::new(
            Limits {
                max_instances: 16,
                ..Limits::default()
            },
            None,
        )
        .expect("runtime");
        let plugins = std::iter::once(REFERENCE)
            .chain(LANGUAGES)
            .map(|name| {
                let bytes = std::fs::read(plugin_path(name)).unwrap_or_else(|error| {
                    panic!("the plugin {name} was built by build.rs: {error}")
                });
                let plugin = runtime
                    .load_bytes(&format!("{name}.wasm"), &bytes)
                    .unwrap_or_else(|error| panic!("{name} loads: {error}"));
                (name, plugin)
            })
            .collect();
        (runtime, plugins)
    });
    &plugins[name]
}

fn start(name: &str, config: &str) -> Result<MapPluginRunner, StartError> {
    loaded(name).start(config, Arc::new(ScriptedLookups::new()))
}

#[test]
fn every_language_gives_the_same_outcomes_as_rust() {
    let changes = changes();
    for config in [
        "{}",
        r#"{"companies": ["usmf", "DEMF"]}"#,
        r#"{"resolve_lookups": false, "companies": []}"#,
    ] {
        let expected = start(REFERENCE, config)
            .expect("the Rust plugin starts")
            .transform(&changes);
        assert_eq!(expected.len(), changes.len());
        // The reference answers every way the map can; parity over fewer would say less.
        let count =
            |wanted: fn(&TransformResult) -> bool| expected.iter().filter(|r| wanted(r)).count();
        assert!(count(|r| matches!(r, TransformResult::Writes(w) if !w.is_empty())) > 50);
        assert!(count(|r| matches!(r, TransformResult::Failed(_))) > 50);
        // GBSI rows are outside the listed companies.
        if config.contains("usmf") {
            assert!(
                count(|r| matches!(r, TransformResult::Filtered)) > 0,
                "{config}"
            );
        }
        for language in LANGUAGES {
            let actual = start(language, config)
                .unwrap_or_else(|error| panic!("{language} starts with {config}: {error}"))
                .transform(&changes);
            assert_eq!(actual.len(), changes.len(), "{language}");
            for (index, ((expected, actual), change)) in
                expected.iter().zip(&actual).zip(&changes).enumerate()
            {
                assert_eq!(
                    actual, expected,
                    "{language} differs from Rust on change {index} with config {config}: {change:?}"
                );
            }
        }
    }
}

#[test]
fn every_language_describes_the_same_map() {
    let expected = start(REFERENCE, "{}")
        .expect("the Rust plugin starts")
        .descriptor()
        .clone();
    for language in LANGUAGES {
        let runner = start(language, "{}").expect("starts");
        assert_eq!(runner.descriptor(), &expected, "{language}");
    }
}

/// What `configure` answered: accepted, or the path and message of the refusal.
fn configured(name: &str, config: &str) -> Result<(), (String, String)> {
    match start(name, config) {
        Ok(_) => Ok(()),
        Err(StartError::Config { error, .. }) => Err((error.path, error.message)),
        Err(other) => panic!("{name} failed to start with {config:?} for another reason: {other}"),
    }
}

#[test]
fn every_language_accepts_and_refuses_the_same_configs() {
    let configs = [
        "{}",
        " { } ",
        r#"{"companies": ["USMF"], "resolve_lookups": true}"#,
        r#"{"companies": []}"#,
        r#"{"companies": ["USMF"], "companies": ["DEMF"]}"#,
        r#"{"companies": "USMF"}"#,
        r#"{"companies": [1]}"#,
        r#"{"companies": ["USMF", ""]}"#,
        r#"{"companies": ["USMF", null]}"#,
        r#"{"companies": {}}"#,
        r#"{"resolve_lookups": 1}"#,
        r#"{"resolve_lookups": "no"}"#,
        r#"{"company": ["USMF"]}"#,
        r#"{"zzz": 1, "companies": 5}"#,
        r#"{"a/b~c": 1}"#,
        r#"{"quote\"d\n": 1}"#,
        r#"{"10": 1, "companies": []}"#,
        "null",
        "[]",
        "\"text\"",
        "42",
        "true",
    ];
    for config in configs {
        let expected = configured(REFERENCE, config);
        for language in LANGUAGES {
            assert_eq!(
                configured(language, config),
                expected,
                "{language} with config {config}"
            );
        }
    }
    // Not JSON at all: every version refuses the whole document; the parser's own words
    // after `not valid JSON` differ by language.
    for config in [
        "not json",
        "{",
        "{\"companies\": [}",
        "{} {}",
        "{\"a\": NaN}",
        "",
    ] {
        for name in std::iter::once(REFERENCE).chain(LANGUAGES) {
            match configured(name, config) {
                Err((path, message)) => {
                    assert_eq!(path, "", "{name} with {config:?}");
                    assert!(
                        message.starts_with("not valid JSON"),
                        "{name} with {config:?}: {message}"
                    );
                }
                Ok(()) => panic!("{name} accepted {config:?}"),
            }
        }
    }
}
