//! Native tests of the currencies map, through the SDK's fake host.

use dualwrite_guest::testing::{self, FakeHost, the_error, upsert, with};
use dualwrite_guest::{
    Change, ChangeOp, Direction, ErrorKind, FieldId, MapPlugin, Outcome, Side, Value, ValueKind,
    Write,
};

use super::{Currencies, crm, erp};

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

fn change(source: Side, op: ChangeOp, values: &[(FieldId, Value)], changed: &[FieldId]) -> Change {
    let width = match source {
        Side::Erp => 3,
        Side::Crm => 4,
    };
    testing::change(source, op, width, values, changed)
}

fn one(config: &str, change: Change) -> Outcome {
    // The map never calls the host: an offline one proves it.
    let host = FakeHost::new().unavailable("must not be called");
    testing::one::<Currencies>(config, change, &host)
}

fn config_path(config: &str) -> String {
    testing::config_path::<Currencies>(config)
}

fn decimal(digits: &str) -> Value {
    Value::Decimal(digits.to_owned())
}

fn erp_currency() -> Vec<(FieldId, Value)> {
    vec![
        (erp::CURRENCYCODE, text("EUR")),
        (erp::NAME, text("Euro")),
        (erp::SYMBOL, text("€")),
    ]
}

fn crm_currency() -> Vec<(FieldId, Value)> {
    vec![
        (crm::ISOCURRENCYCODE, text("CHF")),
        (crm::CURRENCYNAME, text("Swiss franc")),
        (crm::CURRENCYSYMBOL, text("Fr.")),
        (crm::EXCHANGERATE, decimal("0.9350000000")),
    ]
}

#[test]
fn describe_field_ids_match_the_consts() {
    let descriptor = Currencies.describe();
    let erp_ids = [
        ("CURRENCYCODE", erp::CURRENCYCODE),
        ("NAME", erp::NAME),
        ("SYMBOL", erp::SYMBOL),
    ];
    let crm_ids = [
        ("isocurrencycode", crm::ISOCURRENCYCODE),
        ("currencyname", crm::CURRENCYNAME),
        ("currencysymbol", crm::CURRENCYSYMBOL),
        ("exchangerate", crm::EXCHANGERATE),
    ];
    assert_eq!(descriptor.erp.fields.len(), erp_ids.len());
    assert_eq!(descriptor.crm.fields.len(), crm_ids.len());
    for (name, id) in erp_ids {
        assert_eq!(descriptor.erp.id_of(name), Some(id), "ERP {name}");
    }
    for (name, id) in crm_ids {
        assert_eq!(descriptor.crm.id_of(name), Some(id), "CRM {name}");
    }
}

#[test]
fn describe_declares_the_map() {
    let descriptor = Currencies.describe();
    assert_eq!(descriptor.name, "currencies");
    assert_eq!(descriptor.version, "1.0.0");
    assert_eq!(descriptor.erp.entity, "Currencies");
    assert_eq!(descriptor.crm.entity, "transactioncurrencies");
    for (entity, key) in [
        (&descriptor.erp, "CURRENCYCODE"),
        (&descriptor.crm, "isocurrencycode"),
    ] {
        let keys: Vec<&str> = entity
            .fields
            .iter()
            .filter(|field| field.key)
            .map(|field| field.name.as_str())
            .collect();
        assert_eq!(keys, [key]);
    }
    assert_eq!(
        descriptor.crm.fields[crm::EXCHANGERATE as usize].kind,
        ValueKind::Decimal
    );
    assert!(descriptor.depends_on.is_empty());
    let lines: Vec<(Option<&str>, Option<&str>, Direction, &str)> = descriptor
        .mappings
        .iter()
        .map(|mapping| {
            (
                mapping.erp_field.as_deref(),
                mapping.crm_field.as_deref(),
                mapping.direction,
                mapping.transform.as_str(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (
                Some("CURRENCYCODE"),
                Some("isocurrencycode"),
                Direction::Both,
                "copy"
            ),
            (Some("NAME"), Some("currencyname"), Direction::Both, "copy"),
            (
                Some("SYMBOL"),
                Some("currencysymbol"),
                Direction::Both,
                "copy"
            ),
            (
                None,
                Some("exchangerate"),
                Direction::ToCrm,
                "constant 1.0000000000"
            ),
        ]
    );
    let schema: serde_json::Value = serde_json::from_str(&descriptor.config_schema).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["properties"], serde_json::json!({}));
}

#[test]
fn erp_insert_writes_every_field_and_the_exchange_rate() {
    let outcome = one(
        "{}",
        change(Side::Erp, ChangeOp::Insert, &erp_currency(), &[]),
    );
    assert_eq!(
        outcome,
        upsert(&[
            (crm::ISOCURRENCYCODE, text("EUR")),
            (crm::CURRENCYNAME, text("Euro")),
            (crm::CURRENCYSYMBOL, text("€")),
            (crm::EXCHANGERATE, decimal("1.0000000000")),
        ])
    );
}

#[test]
fn erp_field_level_update_leaves_the_exchange_rate_alone() {
    let outcome = one(
        "{}",
        change(Side::Erp, ChangeOp::Update, &erp_currency(), &[erp::SYMBOL]),
    );
    assert_eq!(
        outcome,
        upsert(&[
            (crm::ISOCURRENCYCODE, text("EUR")),
            (crm::CURRENCYSYMBOL, text("€")),
        ])
    );
    // Unknown changed fields: the whole row, constant included.
    let outcome = one(
        "{}",
        change(Side::Erp, ChangeOp::Update, &erp_currency(), &[]),
    );
    assert!(
        matches!(&outcome, Outcome::Writes(writes) if writes[0].fields.len() == 4),
        "{outcome:?}"
    );
}

#[test]
fn crm_insert_writes_every_field_to_erp_but_no_exchange_rate() {
    let outcome = one(
        "{}",
        change(Side::Crm, ChangeOp::Insert, &crm_currency(), &[]),
    );
    assert_eq!(
        outcome,
        upsert(&[
            (erp::CURRENCYCODE, text("CHF")),
            (erp::NAME, text("Swiss franc")),
            (erp::SYMBOL, text("Fr.")),
        ])
    );
}

#[test]
fn crm_update_of_the_exchange_rate_only_has_no_effect() {
    let outcome = one(
        "{}",
        change(
            Side::Crm,
            ChangeOp::Update,
            &crm_currency(),
            &[crm::EXCHANGERATE],
        ),
    );
    assert_eq!(outcome, Outcome::Writes(Vec::new()));
    let outcome = one(
        "{}",
        change(
            Side::Crm,
            ChangeOp::Update,
            &with(crm_currency(), crm::CURRENCYNAME, text("Franc suisse")),
            &[crm::CURRENCYNAME, crm::EXCHANGERATE],
        ),
    );
    assert_eq!(
        outcome,
        upsert(&[
            (erp::CURRENCYCODE, text("CHF")),
            (erp::NAME, text("Franc suisse")),
        ])
    );
}

#[test]
fn source_filter_excludes_erp_currency_999_only() {
    for op in [ChangeOp::Insert, ChangeOp::Update, ChangeOp::Delete] {
        let outcome = one(
            "{}",
            change(
                Side::Erp,
                op,
                &with(erp_currency(), erp::CURRENCYCODE, text("999")),
                &[],
            ),
        );
        assert_eq!(outcome, Outcome::Filtered, "{op:?}");
    }
    // Codes that merely contain 999 pass.
    let outcome = one(
        "{}",
        change(
            Side::Erp,
            ChangeOp::Insert,
            &with(erp_currency(), erp::CURRENCYCODE, text("9999")),
            &[],
        ),
    );
    assert!(matches!(outcome, Outcome::Writes(_)));
    // The reference has no reversed filter: CRM currency 999 goes to the ERP.
    let outcome = one(
        "{}",
        change(
            Side::Crm,
            ChangeOp::Insert,
            &with(crm_currency(), crm::ISOCURRENCYCODE, text("999")),
            &[],
        ),
    );
    assert!(
        matches!(&outcome, Outcome::Writes(writes) if writes[0].fields[0].value == text("999")),
        "{outcome:?}"
    );
}

#[test]
fn deletes_write_the_target_key() {
    let outcome = one(
        "{}",
        change(
            Side::Crm,
            ChangeOp::Delete,
            &[(crm::ISOCURRENCYCODE, text("CHF"))],
            &[],
        ),
    );
    assert_eq!(
        outcome,
        Outcome::write(Write::delete().set(erp::CURRENCYCODE, "CHF"))
    );
    let outcome = one(
        "{}",
        change(Side::Erp, ChangeOp::Delete, &erp_currency(), &[]),
    );
    assert_eq!(
        outcome,
        Outcome::write(Write::delete().set(crm::ISOCURRENCYCODE, "EUR"))
    );
}

#[test]
fn bad_keys_and_kinds_are_rejected() {
    for (id, value) in [
        (erp::CURRENCYCODE, Value::Null),
        (erp::CURRENCYCODE, text("")),
        (erp::NAME, Value::Integer(5)),
        (erp::SYMBOL, Value::Boolean(true)),
    ] {
        let error = the_error(one(
            "{}",
            change(
                Side::Erp,
                ChangeOp::Insert,
                &with(erp_currency(), id, value),
                &[],
            ),
        ));
        assert_eq!(error.kind, ErrorKind::Rejected);
        assert_eq!(error.field, Some(id));
    }
    let error = the_error(one(
        "{}",
        change(
            Side::Crm,
            ChangeOp::Update,
            &with(crm_currency(), crm::ISOCURRENCYCODE, Value::Integer(756)),
            &[crm::CURRENCYNAME],
        ),
    ));
    assert_eq!(error.kind, ErrorKind::Rejected);
    assert_eq!(error.field, Some(crm::ISOCURRENCYCODE));
    assert_eq!(
        error.message,
        "isocurrencycode: expected text, got integer 756"
    );
}

#[test]
fn configs() {
    assert!(Currencies.configure("{}").is_ok());
    assert_eq!(config_path(r#"{"companies": ["USMF"]}"#), "/companies");
    assert_eq!(
        config_path(r#"{"resolve_lookups": true}"#),
        "/resolve_lookups"
    );
    assert_eq!(config_path(r#"{"exchange~rate": 1}"#), "/exchange~0rate");
    assert_eq!(config_path("null"), "");
    assert_eq!(config_path("not json"), "");
}
