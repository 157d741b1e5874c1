//! Native tests of the customer groups map, through the SDK's fake host.

use dualwrite_guest::testing::{self, FakeHost, the_error, upsert, with};
use dualwrite_guest::{
    Change, ChangeOp, Direction, ErrorKind, FieldId, MapPlugin, Outcome, Side, Value, ValueKind,
    Write,
};

use super::{CustomerGroups, crm, erp};

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

fn change(source: Side, op: ChangeOp, values: &[(FieldId, Value)], changed: &[FieldId]) -> Change {
    testing::change(source, op, 6, values, changed)
}

fn one(config: &str, change: Change, host: &FakeHost) -> Outcome {
    testing::one::<CustomerGroups>(config, change, host)
}

fn config_path(config: &str) -> String {
    testing::config_path::<CustomerGroups>(config)
}

fn erp_group() -> Vec<(FieldId, Value)> {
    vec![
        (erp::DATAAREAID, text("USMF")),
        (erp::CUSTOMERGROUPID, text("10")),
        (erp::DESCRIPTION, text("Wholesale")),
        (erp::ISSALESTAXINCLUDEDINPRICE, text("yes")),
        (erp::PAYMENTTERMID, text("Net30")),
        (erp::CLEARINGPERIODPAYMENTTERMNAME, text("Net10")),
    ]
}

fn crm_group() -> Vec<(FieldId, Value)> {
    vec![
        (crm::MSDYN_COMPANY, text("USMF")),
        (crm::MSDYN_GROUPID, text("10")),
        (crm::MSDYN_DESCRIPTION, text("Wholesale")),
        (crm::MSDYN_ISSALESTAXINCLUDEDINPRICE, Value::Boolean(false)),
        (crm::MSDYN_PAYMENTTERMID, text("Net30")),
        (crm::MSDYN_CLEARINGPERIODPAYMENTTERMNAME, text("Net10")),
    ]
}

/// Links for both terms of payment, both sides; linked names differ in case so a test
/// sees the translated value was used.
fn linked() -> FakeHost {
    let mut host = FakeHost::new();
    for (side, entity) in [
        (Side::Erp, "PaymentTerms"),
        (Side::Crm, "msdyn_paymentterms"),
    ] {
        for name in ["Net30", "Net10"] {
            host = host.link(
                side,
                entity,
                vec![text("USMF"), text(name)],
                vec![text("USMF"), text(&name.to_lowercase())],
            );
        }
    }
    host
}

#[test]
fn describe_field_ids_match_the_consts() {
    let descriptor = CustomerGroups::default().describe();
    let erp_ids = [
        ("DATAAREAID", erp::DATAAREAID),
        ("CUSTOMERGROUPID", erp::CUSTOMERGROUPID),
        ("DESCRIPTION", erp::DESCRIPTION),
        ("ISSALESTAXINCLUDEDINPRICE", erp::ISSALESTAXINCLUDEDINPRICE),
        ("PAYMENTTERMID", erp::PAYMENTTERMID),
        (
            "CLEARINGPERIODPAYMENTTERMNAME",
            erp::CLEARINGPERIODPAYMENTTERMNAME,
        ),
    ];
    let crm_ids = [
        ("msdyn_company", crm::MSDYN_COMPANY),
        ("msdyn_groupid", crm::MSDYN_GROUPID),
        ("msdyn_description", crm::MSDYN_DESCRIPTION),
        (
            "msdyn_issalestaxincludedinprice",
            crm::MSDYN_ISSALESTAXINCLUDEDINPRICE,
        ),
        ("msdyn_paymenttermid", crm::MSDYN_PAYMENTTERMID),
        (
            "msdyn_clearingperiodpaymenttermname",
            crm::MSDYN_CLEARINGPERIODPAYMENTTERMNAME,
        ),
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
    let descriptor = CustomerGroups::default().describe();
    assert_eq!(descriptor.name, "customer-groups");
    assert_eq!(descriptor.version, "1.0.0");
    assert_eq!(descriptor.erp.entity, "CustCustomerGroup");
    assert_eq!(descriptor.crm.entity, "msdyn_customergroups");
    let keys: Vec<&str> = descriptor
        .erp
        .fields
        .iter()
        .filter(|field| field.key)
        .map(|field| field.name.as_str())
        .collect();
    assert_eq!(keys, ["DATAAREAID", "CUSTOMERGROUPID"]);
    assert_eq!(
        descriptor.crm.fields[crm::MSDYN_ISSALESTAXINCLUDEDINPRICE as usize].kind,
        ValueKind::Boolean
    );
    assert_eq!(
        descriptor.depends_on,
        ["terms-of-payment", "legal-entities"]
    );
    let transforms: Vec<&str> = descriptor
        .mappings
        .iter()
        .map(|mapping| mapping.transform.as_str())
        .collect();
    assert_eq!(
        transforms,
        ["copy", "copy", "value-map", "lookup", "lookup"]
    );
    assert!(
        descriptor
            .mappings
            .iter()
            .all(|mapping| mapping.direction == Direction::Both)
    );
    let schema: serde_json::Value = serde_json::from_str(&descriptor.config_schema).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["properties"]["companies"]["type"], "array");
    assert_eq!(schema["properties"]["resolve_lookups"]["type"], "boolean");
}

#[test]
fn erp_insert_writes_every_field_to_crm() {
    let outcome = one(
        "{}",
        change(Side::Erp, ChangeOp::Insert, &erp_group(), &[]),
        &linked(),
    );
    assert_eq!(
        outcome,
        upsert(&[
            (crm::MSDYN_COMPANY, text("USMF")),
            (crm::MSDYN_GROUPID, text("10")),
            (crm::MSDYN_DESCRIPTION, text("Wholesale")),
            (crm::MSDYN_ISSALESTAXINCLUDEDINPRICE, Value::Boolean(true)),
            (crm::MSDYN_PAYMENTTERMID, text("net30")),
            (crm::MSDYN_CLEARINGPERIODPAYMENTTERMNAME, text("net10")),
        ])
    );
}

#[test]
fn crm_insert_writes_every_field_to_erp() {
    let outcome = one(
        "{}",
        change(Side::Crm, ChangeOp::Insert, &crm_group(), &[]),
        &linked(),
    );
    assert_eq!(
        outcome,
        upsert(&[
            (erp::DATAAREAID, text("USMF")),
            (erp::CUSTOMERGROUPID, text("10")),
            (erp::DESCRIPTION, text("Wholesale")),
            (erp::ISSALESTAXINCLUDEDINPRICE, text("no")),
            (erp::PAYMENTTERMID, text("net30")),
            (erp::CLEARINGPERIODPAYMENTTERMNAME, text("net10")),
        ])
    );
}

#[test]
fn sales_tax_included_value_map_both_ways_and_a_miss() {
    for (erp_text, flag) in [("no", false), ("yes", true), ("NO", false)] {
        let outcome = one(
            "{}",
            change(
                Side::Erp,
                ChangeOp::Update,
                &with(erp_group(), erp::ISSALESTAXINCLUDEDINPRICE, text(erp_text)),
                &[erp::ISSALESTAXINCLUDEDINPRICE],
            ),
            &linked(),
        );
        assert_eq!(
            outcome,
            upsert(&[
                (crm::MSDYN_COMPANY, text("USMF")),
                (crm::MSDYN_GROUPID, text("10")),
                (crm::MSDYN_ISSALESTAXINCLUDEDINPRICE, Value::Boolean(flag)),
            ])
        );
    }
    for (flag, erp_text) in [(false, "no"), (true, "yes")] {
        let outcome = one(
            "{}",
            change(
                Side::Crm,
                ChangeOp::Update,
                &with(
                    crm_group(),
                    crm::MSDYN_ISSALESTAXINCLUDEDINPRICE,
                    Value::Boolean(flag),
                ),
                &[crm::MSDYN_ISSALESTAXINCLUDEDINPRICE],
            ),
            &linked(),
        );
        assert_eq!(
            outcome,
            upsert(&[
                (erp::DATAAREAID, text("USMF")),
                (erp::CUSTOMERGROUPID, text("10")),
                (erp::ISSALESTAXINCLUDEDINPRICE, text(erp_text)),
            ])
        );
    }
    let error = the_error(one(
        "{}",
        change(
            Side::Erp,
            ChangeOp::Insert,
            &with(erp_group(), erp::ISSALESTAXINCLUDEDINPRICE, text("maybe")),
            &[],
        ),
        &linked(),
    ));
    assert_eq!(error.kind, ErrorKind::Rejected);
    assert_eq!(error.field, Some(erp::ISSALESTAXINCLUDEDINPRICE));
    assert!(
        error.message.contains("ISSALESTAXINCLUDEDINPRICE"),
        "{}",
        error.message
    );
    assert!(error.message.contains("\"maybe\""), "{}", error.message);
    let error = the_error(one(
        "{}",
        change(
            Side::Crm,
            ChangeOp::Insert,
            &with(
                crm_group(),
                crm::MSDYN_ISSALESTAXINCLUDEDINPRICE,
                Value::Integer(1),
            ),
            &[],
        ),
        &linked(),
    ));
    assert_eq!(error.kind, ErrorKind::Rejected);
    assert_eq!(error.field, Some(crm::MSDYN_ISSALESTAXINCLUDEDINPRICE));
}

#[test]
fn lookup_not_linked_is_dependency_missing() {
    let host = FakeHost::new().link(
        Side::Crm,
        "msdyn_paymentterms",
        vec![text("USMF"), text("Net30")],
        vec![text("USMF"), text("Net30")],
    );
    let error = the_error(one(
        "{}",
        change(Side::Crm, ChangeOp::Insert, &crm_group(), &[]),
        &host,
    ));
    assert_eq!(error.kind, ErrorKind::DependencyMissing);
    assert_eq!(error.field, Some(crm::MSDYN_CLEARINGPERIODPAYMENTTERMNAME));
    for part in [
        "msdyn_clearingperiodpaymenttermname",
        "msdyn_paymentterms",
        "\"Net10\"",
        "USMF",
    ] {
        assert!(error.message.contains(part), "{part} in {}", error.message);
    }
}

#[test]
fn lookup_with_host_unavailable_is_transient() {
    let error = the_error(one(
        "{}",
        change(Side::Erp, ChangeOp::Insert, &erp_group(), &[]),
        &FakeHost::new().unavailable("erp side offline"),
    ));
    assert_eq!(error.kind, ErrorKind::Transient);
    assert_eq!(error.field, Some(erp::PAYMENTTERMID));
}

#[test]
fn empty_lookups_write_null_and_resolve_lookups_false_copies() {
    let values = with(
        with(erp_group(), erp::PAYMENTTERMID, text("")),
        erp::CLEARINGPERIODPAYMENTTERMNAME,
        Value::Null,
    );
    let offline = FakeHost::new().unavailable("must not be called");
    let outcome = one(
        "{}",
        change(
            Side::Erp,
            ChangeOp::Update,
            &values,
            &[erp::PAYMENTTERMID, erp::CLEARINGPERIODPAYMENTTERMNAME],
        ),
        &offline,
    );
    assert_eq!(
        outcome,
        upsert(&[
            (crm::MSDYN_COMPANY, text("USMF")),
            (crm::MSDYN_GROUPID, text("10")),
            (crm::MSDYN_PAYMENTTERMID, Value::Null),
            (crm::MSDYN_CLEARINGPERIODPAYMENTTERMNAME, Value::Null),
        ])
    );
    let outcome = one(
        r#"{"resolve_lookups": false}"#,
        change(
            Side::Erp,
            ChangeOp::Update,
            &erp_group(),
            &[erp::PAYMENTTERMID],
        ),
        &offline,
    );
    assert_eq!(
        outcome,
        upsert(&[
            (crm::MSDYN_COMPANY, text("USMF")),
            (crm::MSDYN_GROUPID, text("10")),
            (crm::MSDYN_PAYMENTTERMID, text("Net30")),
        ])
    );
}

#[test]
fn company_filter() {
    let config = r#"{"companies": ["DEMF"]}"#;
    for source_change in [
        change(Side::Erp, ChangeOp::Insert, &erp_group(), &[]),
        change(Side::Crm, ChangeOp::Delete, &crm_group(), &[]),
    ] {
        assert_eq!(one(config, source_change, &linked()), Outcome::Filtered);
    }
    let outcome = one(
        r#"{"companies": ["usmf"]}"#,
        change(Side::Erp, ChangeOp::Insert, &erp_group(), &[]),
        &linked(),
    );
    assert!(matches!(outcome, Outcome::Writes(_)));
}

#[test]
fn deletes_write_the_target_key() {
    let outcome = one(
        "{}",
        change(
            Side::Crm,
            ChangeOp::Delete,
            &[
                (crm::MSDYN_COMPANY, text("USMF")),
                (crm::MSDYN_GROUPID, text("10")),
            ],
            &[],
        ),
        &FakeHost::new(),
    );
    assert_eq!(
        outcome,
        Outcome::write(
            Write::delete()
                .set(erp::DATAAREAID, "USMF")
                .set(erp::CUSTOMERGROUPID, "10")
        )
    );
    let outcome = one(
        "{}",
        change(Side::Erp, ChangeOp::Delete, &erp_group(), &[]),
        &FakeHost::new(),
    );
    assert_eq!(
        outcome,
        Outcome::write(
            Write::delete()
                .set(crm::MSDYN_COMPANY, "USMF")
                .set(crm::MSDYN_GROUPID, "10")
        )
    );
}

#[test]
fn update_writes_only_touched_fields() {
    let outcome = one(
        "{}",
        change(
            Side::Crm,
            ChangeOp::Update,
            &crm_group(),
            &[crm::MSDYN_DESCRIPTION],
        ),
        &FakeHost::new(),
    );
    assert_eq!(
        outcome,
        upsert(&[
            (erp::DATAAREAID, text("USMF")),
            (erp::CUSTOMERGROUPID, text("10")),
            (erp::DESCRIPTION, text("Wholesale")),
        ])
    );
}

#[test]
fn bad_keys_and_kinds_are_rejected() {
    for (id, value) in [
        (erp::DATAAREAID, Value::Null),
        (erp::CUSTOMERGROUPID, text("")),
        (erp::DESCRIPTION, Value::Integer(5)),
        (erp::PAYMENTTERMID, Value::Boolean(true)),
    ] {
        let error = the_error(one(
            "{}",
            change(
                Side::Erp,
                ChangeOp::Insert,
                &with(erp_group(), id, value),
                &[],
            ),
            &linked(),
        ));
        assert_eq!(error.kind, ErrorKind::Rejected);
        assert_eq!(error.field, Some(id));
    }
}

#[test]
fn configs() {
    for config in ["{}", r#"{"companies": ["USMF"], "resolve_lookups": true}"#] {
        assert!(
            CustomerGroups::default().configure(config).is_ok(),
            "{config}"
        );
    }
    assert_eq!(config_path(r#"{"company": ["USMF"]}"#), "/company");
    assert_eq!(config_path(r#"{"companies": [1]}"#), "/companies/0");
    assert_eq!(config_path(r#"{"companies": {}}"#), "/companies");
    assert_eq!(config_path(r#"{"resolve_lookups": 1}"#), "/resolve_lookups");
    assert_eq!(config_path("null"), "");
    assert_eq!(config_path("not json"), "");
}
