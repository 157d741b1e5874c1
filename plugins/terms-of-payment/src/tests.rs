//! Native tests of the terms of payment map, through the SDK's fake host.

use dualwrite_guest::testing::{self, FakeHost, the_error, upsert, with};
use dualwrite_guest::{
    Change, ChangeOp, Direction, ErrorKind, FieldId, MapPlugin, Outcome, Side, Value, ValueKind,
    Write,
};

use super::{TermsOfPayment, crm, erp};

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

fn change(source: Side, op: ChangeOp, values: &[(FieldId, Value)], changed: &[FieldId]) -> Change {
    testing::change(source, op, 14, values, changed)
}

fn one(config: &str, change: Change) -> Outcome {
    // The map never calls the host (its lookups are carried as text): an offline one
    // proves it.
    let host = FakeHost::new().unavailable("must not be called");
    testing::one::<TermsOfPayment>(config, change, &host)
}

fn config_path(config: &str) -> String {
    testing::config_path::<TermsOfPayment>(config)
}

fn erp_terms() -> Vec<(FieldId, Value)> {
    vec![
        (erp::DATAAREAID, text("USMF")),
        (erp::NAME, text("Net30")),
        (erp::DESCRIPTION, text("Net 30 days")),
        (erp::NUMBEROFMONTHS, Value::Integer(0)),
        (erp::CUTOFFDAYOFMONTH, Value::Integer(0)),
        (erp::ISCASHPAYMENT, text("no")),
        (erp::NUMBEROFDAYS, Value::Integer(30)),
        (erp::ISCERTIFIEDCOMPANYCHECK, text("no")),
        (erp::ISDEFAULTPAYMENTTERM, text("yes")),
        (erp::CREDITCARDPAYMENTTYPE, text("na")),
        (erp::CREDITCARDCREDITCHECKTYPE, text("normal")),
        (erp::PAYMENTDAYNAME, text("Fri")),
        (erp::PAYMENTMETHODTYPE, text("net")),
        (erp::PAYMENTSCHEDULENAME, text("3 payments")),
    ]
}

fn crm_terms() -> Vec<(FieldId, Value)> {
    vec![
        (crm::MSDYN_COMPANY, text("USMF")),
        (crm::MSDYN_NAME, text("CardNow")),
        (crm::MSDYN_DESCRIPTION, text("Credit card, current month")),
        (crm::MSDYN_NUMBEROFMONTH, Value::Integer(1)),
        (crm::MSDYN_CUTOFFDAYOFMONTH, Value::Integer(25)),
        (crm::MSDYN_ISCASHPAYMENT, Value::Boolean(true)),
        (crm::MSDYN_DAYS, Value::Integer(0)),
        (crm::MSDYN_ISCERTIFIEDCOMPANYCHECK, Value::Boolean(true)),
        (crm::MSDYN_ISDEFAULTPAYMENTTERM, Value::Boolean(false)),
        (
            crm::MSDYN_CREDITCARDPAYMENTTYPE,
            Value::Integer(806_380_999),
        ),
        (
            crm::MSDYN_CREDITCARDCREDITCHECKTYPE,
            Value::Integer(806_380_001),
        ),
        (crm::MSDYN_PAYMENTDAYNAME, Value::Null),
        (crm::MSDYN_PAYMENTMETHODTYPE, Value::Integer(806_380_992)),
        (crm::MSDYN_PAYMENTSCHEDULENAME, text("Monthly")),
    ]
}

/// The upsert an ERP update of one field writes to CRM.
fn erp_update(id: FieldId, value: Value) -> Outcome {
    one(
        "{}",
        change(
            Side::Erp,
            ChangeOp::Update,
            &with(erp_terms(), id, value),
            &[id],
        ),
    )
}

/// The upsert a CRM update of one field writes to ERP.
fn crm_update(id: FieldId, value: Value) -> Outcome {
    one(
        "{}",
        change(
            Side::Crm,
            ChangeOp::Update,
            &with(crm_terms(), id, value),
            &[id],
        ),
    )
}

#[test]
fn describe_field_ids_match_the_consts() {
    let descriptor = TermsOfPayment::default().describe();
    let erp_ids = [
        ("DATAAREAID", erp::DATAAREAID),
        ("NAME", erp::NAME),
        ("DESCRIPTION", erp::DESCRIPTION),
        ("NUMBEROFMONTHS", erp::NUMBEROFMONTHS),
        ("CUTOFFDAYOFMONTH", erp::CUTOFFDAYOFMONTH),
        ("ISCASHPAYMENT", erp::ISCASHPAYMENT),
        ("NUMBEROFDAYS", erp::NUMBEROFDAYS),
        ("ISCERTIFIEDCOMPANYCHECK", erp::ISCERTIFIEDCOMPANYCHECK),
        ("ISDEFAULTPAYMENTTERM", erp::ISDEFAULTPAYMENTTERM),
        ("CREDITCARDPAYMENTTYPE", erp::CREDITCARDPAYMENTTYPE),
        ("CREDITCARDCREDITCHECKTYPE", erp::CREDITCARDCREDITCHECKTYPE),
        ("PAYMENTDAYNAME", erp::PAYMENTDAYNAME),
        ("PAYMENTMETHODTYPE", erp::PAYMENTMETHODTYPE),
        ("PAYMENTSCHEDULENAME", erp::PAYMENTSCHEDULENAME),
    ];
    let crm_ids = [
        ("msdyn_company", crm::MSDYN_COMPANY),
        ("msdyn_name", crm::MSDYN_NAME),
        ("msdyn_description", crm::MSDYN_DESCRIPTION),
        ("msdyn_numberofmonth", crm::MSDYN_NUMBEROFMONTH),
        ("msdyn_cutoffdayofmonth", crm::MSDYN_CUTOFFDAYOFMONTH),
        ("msdyn_iscashpayment", crm::MSDYN_ISCASHPAYMENT),
        ("msdyn_days", crm::MSDYN_DAYS),
        (
            "msdyn_iscertifiedcompanycheck",
            crm::MSDYN_ISCERTIFIEDCOMPANYCHECK,
        ),
        (
            "msdyn_isdefaultpaymentterm",
            crm::MSDYN_ISDEFAULTPAYMENTTERM,
        ),
        (
            "msdyn_creditcardpaymenttype",
            crm::MSDYN_CREDITCARDPAYMENTTYPE,
        ),
        (
            "msdyn_creditcardcreditchecktype",
            crm::MSDYN_CREDITCARDCREDITCHECKTYPE,
        ),
        ("msdyn_paymentdayname", crm::MSDYN_PAYMENTDAYNAME),
        ("msdyn_paymentmethodtype", crm::MSDYN_PAYMENTMETHODTYPE),
        ("msdyn_paymentschedulename", crm::MSDYN_PAYMENTSCHEDULENAME),
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
    let descriptor = TermsOfPayment::default().describe();
    assert_eq!(descriptor.name, "terms-of-payment");
    assert_eq!(descriptor.version, "1.0.0");
    assert_eq!(descriptor.erp.entity, "PaymentTerms");
    assert_eq!(descriptor.crm.entity, "msdyn_paymentterms");
    for (entity, keys) in [
        (&descriptor.erp, ["DATAAREAID", "NAME"]),
        (&descriptor.crm, ["msdyn_company", "msdyn_name"]),
    ] {
        let declared: Vec<&str> = entity
            .fields
            .iter()
            .filter(|field| field.key)
            .map(|field| field.name.as_str())
            .collect();
        assert_eq!(declared, keys);
    }
    assert!(
        descriptor
            .erp
            .fields
            .iter()
            .all(|field| field.kind != ValueKind::Float && field.kind != ValueKind::Boolean)
    );
    assert_eq!(
        descriptor.crm.fields[crm::MSDYN_ISCASHPAYMENT as usize].kind,
        ValueKind::Boolean
    );
    assert_eq!(
        descriptor.crm.fields[crm::MSDYN_PAYMENTMETHODTYPE as usize].kind,
        ValueKind::Integer
    );
    assert_eq!(descriptor.depends_on, ["legal-entities"]);
    let lines: Vec<(&str, &str, &str)> = descriptor
        .mappings
        .iter()
        .map(|mapping| {
            (
                mapping.erp_field.as_deref().unwrap(),
                mapping.crm_field.as_deref().unwrap(),
                mapping.transform.as_str(),
            )
        })
        .collect();
    let payment_day = "copy (lookup to Payment days CDS, a map outside the standard pack: the key is carried as plain text)";
    let payment_schedule = "copy (lookup to Payment schedule, a map outside the standard pack: the key is carried as plain text)";
    assert_eq!(
        lines,
        [
            ("DESCRIPTION", "msdyn_description", "copy"),
            ("NAME", "msdyn_name", "copy"),
            ("NUMBEROFMONTHS", "msdyn_numberofmonth", "copy"),
            ("CUTOFFDAYOFMONTH", "msdyn_cutoffdayofmonth", "copy"),
            ("ISCASHPAYMENT", "msdyn_iscashpayment", "value-map"),
            ("NUMBEROFDAYS", "msdyn_days", "copy"),
            (
                "ISCERTIFIEDCOMPANYCHECK",
                "msdyn_iscertifiedcompanycheck",
                "value-map"
            ),
            (
                "ISDEFAULTPAYMENTTERM",
                "msdyn_isdefaultpaymentterm",
                "value-map"
            ),
            (
                "CREDITCARDPAYMENTTYPE",
                "msdyn_creditcardpaymenttype",
                "value-map"
            ),
            (
                "CREDITCARDCREDITCHECKTYPE",
                "msdyn_creditcardcreditchecktype",
                "value-map"
            ),
            ("PAYMENTDAYNAME", "msdyn_paymentdayname", payment_day),
            ("PAYMENTMETHODTYPE", "msdyn_paymentmethodtype", "value-map"),
            (
                "PAYMENTSCHEDULENAME",
                "msdyn_paymentschedulename",
                payment_schedule
            ),
        ]
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
    let outcome = one("{}", change(Side::Erp, ChangeOp::Insert, &erp_terms(), &[]));
    assert_eq!(
        outcome,
        upsert(&[
            (crm::MSDYN_COMPANY, text("USMF")),
            (crm::MSDYN_NAME, text("Net30")),
            (crm::MSDYN_DESCRIPTION, text("Net 30 days")),
            (crm::MSDYN_NUMBEROFMONTH, Value::Integer(0)),
            (crm::MSDYN_CUTOFFDAYOFMONTH, Value::Integer(0)),
            (crm::MSDYN_ISCASHPAYMENT, Value::Boolean(false)),
            (crm::MSDYN_DAYS, Value::Integer(30)),
            (crm::MSDYN_ISCERTIFIEDCOMPANYCHECK, Value::Boolean(false)),
            (crm::MSDYN_ISDEFAULTPAYMENTTERM, Value::Boolean(true)),
            (
                crm::MSDYN_CREDITCARDPAYMENTTYPE,
                Value::Integer(806_380_998)
            ),
            (
                crm::MSDYN_CREDITCARDCREDITCHECKTYPE,
                Value::Integer(806_380_000)
            ),
            (crm::MSDYN_PAYMENTDAYNAME, text("Fri")),
            (crm::MSDYN_PAYMENTMETHODTYPE, Value::Integer(806_380_991)),
            (crm::MSDYN_PAYMENTSCHEDULENAME, text("3 payments")),
        ])
    );
}

#[test]
fn crm_insert_writes_every_field_to_erp() {
    let outcome = one("{}", change(Side::Crm, ChangeOp::Insert, &crm_terms(), &[]));
    assert_eq!(
        outcome,
        upsert(&[
            (erp::DATAAREAID, text("USMF")),
            (erp::NAME, text("CardNow")),
            (erp::DESCRIPTION, text("Credit card, current month")),
            (erp::NUMBEROFMONTHS, Value::Integer(1)),
            (erp::CUTOFFDAYOFMONTH, Value::Integer(25)),
            (erp::ISCASHPAYMENT, text("yes")),
            (erp::NUMBEROFDAYS, Value::Integer(0)),
            (erp::ISCERTIFIEDCOMPANYCHECK, text("yes")),
            (erp::ISDEFAULTPAYMENTTERM, text("no")),
            (erp::CREDITCARDPAYMENTTYPE, text("creditCard")),
            (erp::CREDITCARDCREDITCHECKTYPE, text("byPass")),
            (erp::PAYMENTDAYNAME, Value::Null),
            (erp::PAYMENTMETHODTYPE, text("currentMth")),
            (erp::PAYMENTSCHEDULENAME, text("Monthly")),
        ])
    );
}

#[test]
fn yes_no_value_maps_both_ways() {
    for (erp_id, crm_id) in [
        (erp::ISCASHPAYMENT, crm::MSDYN_ISCASHPAYMENT),
        (
            erp::ISCERTIFIEDCOMPANYCHECK,
            crm::MSDYN_ISCERTIFIEDCOMPANYCHECK,
        ),
        (erp::ISDEFAULTPAYMENTTERM, crm::MSDYN_ISDEFAULTPAYMENTTERM),
    ] {
        for (erp_text, flag) in [("no", false), ("yes", true), ("Yes", true)] {
            assert_eq!(
                erp_update(erp_id, text(erp_text)),
                upsert(&[
                    (crm::MSDYN_COMPANY, text("USMF")),
                    (crm::MSDYN_NAME, text("Net30")),
                    (crm_id, Value::Boolean(flag)),
                ])
            );
        }
        for (flag, erp_text) in [(false, "no"), (true, "yes")] {
            assert_eq!(
                crm_update(crm_id, Value::Boolean(flag)),
                upsert(&[
                    (erp::DATAAREAID, text("USMF")),
                    (erp::NAME, text("CardNow")),
                    (erp_id, text(erp_text)),
                ])
            );
        }
        let error = the_error(erp_update(erp_id, text("maybe")));
        assert_eq!(error.kind, ErrorKind::Rejected);
        assert_eq!(error.field, Some(erp_id));
        assert!(
            error
                .message
                .ends_with("\"maybe\" is not in the value map (no, yes)"),
            "{}",
            error.message
        );
        let error = the_error(crm_update(crm_id, text("true")));
        assert_eq!(error.kind, ErrorKind::Rejected);
        assert_eq!(error.field, Some(crm_id));
    }
}

/// An option-set value map as the reference lists it: (ERP enum name, CRM code).
type ValueMap = &'static [(&'static str, i64)];

#[test]
fn option_set_value_maps_both_ways() {
    let tables: [(FieldId, FieldId, ValueMap); 3] = [
        (
            erp::CREDITCARDPAYMENTTYPE,
            crm::MSDYN_CREDITCARDPAYMENTTYPE,
            &[("na", 806_380_998), ("creditCard", 806_380_999)],
        ),
        (
            erp::CREDITCARDCREDITCHECKTYPE,
            crm::MSDYN_CREDITCARDCREDITCHECKTYPE,
            &[("normal", 806_380_000), ("byPass", 806_380_001)],
        ),
        (
            erp::PAYMENTMETHODTYPE,
            crm::MSDYN_PAYMENTMETHODTYPE,
            &[
                ("net", 806_380_991),
                ("currentMth", 806_380_992),
                ("currentQuart", 806_380_993),
                ("currentYear", 806_380_994),
                ("currentWeek", 806_380_995),
                ("cod", 806_380_996),
                ("cutOffDate", 806_380_997),
            ],
        ),
    ];
    for (erp_id, crm_id, pairs) in tables {
        for &(name, code) in pairs {
            assert_eq!(
                erp_update(erp_id, text(name)),
                upsert(&[
                    (crm::MSDYN_COMPANY, text("USMF")),
                    (crm::MSDYN_NAME, text("Net30")),
                    (crm_id, Value::Integer(code)),
                ]),
                "{name}"
            );
            assert_eq!(
                crm_update(crm_id, Value::Integer(code)),
                upsert(&[
                    (erp::DATAAREAID, text("USMF")),
                    (erp::NAME, text("CardNow")),
                    (erp_id, text(name)),
                ]),
                "{code}"
            );
        }
        // ERP enum names match ignoring case; CRM gets the code, ERP the canonical name.
        let (name, code) = pairs[pairs.len() - 1];
        assert_eq!(
            erp_update(erp_id, text(&name.to_uppercase())),
            upsert(&[
                (crm::MSDYN_COMPANY, text("USMF")),
                (crm::MSDYN_NAME, text("Net30")),
                (crm_id, Value::Integer(code)),
            ])
        );
        let error = the_error(erp_update(erp_id, text("other")));
        assert_eq!(error.kind, ErrorKind::Rejected);
        assert_eq!(error.field, Some(erp_id));
        let error = the_error(crm_update(crm_id, Value::Integer(1)));
        assert_eq!(error.kind, ErrorKind::Rejected);
        assert_eq!(error.field, Some(crm_id));
        assert!(
            error.message.contains("1 is not in the value map"),
            "{}",
            error.message
        );
    }
    let error = the_error(erp_update(erp::PAYMENTMETHODTYPE, text("weekly")));
    assert_eq!(
        error.message,
        "PAYMENTMETHODTYPE: \"weekly\" is not in the value map (net, currentMth, currentQuart, currentYear, currentWeek, cod, cutOffDate)"
    );
}

#[test]
fn out_of_pack_lookups_are_copied_as_text_whatever_resolve_lookups_says() {
    for config in [
        "{}",
        r#"{"resolve_lookups": true}"#,
        r#"{"resolve_lookups": false}"#,
    ] {
        let mut outcomes = testing::run::<TermsOfPayment>(
            config,
            &[change(
                Side::Erp,
                ChangeOp::Update,
                &erp_terms(),
                &[erp::PAYMENTDAYNAME, erp::PAYMENTSCHEDULENAME],
            )],
            &FakeHost::new().unavailable("must not be called"),
        )
        .expect("config is valid");
        assert_eq!(
            outcomes.remove(0),
            upsert(&[
                (crm::MSDYN_COMPANY, text("USMF")),
                (crm::MSDYN_NAME, text("Net30")),
                (crm::MSDYN_PAYMENTDAYNAME, text("Fri")),
                (crm::MSDYN_PAYMENTSCHEDULENAME, text("3 payments")),
            ]),
            "{config}"
        );
    }
    assert_eq!(
        crm_update(crm::MSDYN_PAYMENTSCHEDULENAME, text("Quarterly")),
        upsert(&[
            (erp::DATAAREAID, text("USMF")),
            (erp::NAME, text("CardNow")),
            (erp::PAYMENTSCHEDULENAME, text("Quarterly")),
        ])
    );
    let error = the_error(crm_update(crm::MSDYN_PAYMENTDAYNAME, Value::Integer(5)));
    assert_eq!(error.kind, ErrorKind::Rejected);
    assert_eq!(error.field, Some(crm::MSDYN_PAYMENTDAYNAME));
}

#[test]
fn company_filter() {
    let config = r#"{"companies": ["DEMF"]}"#;
    for source_change in [
        change(Side::Erp, ChangeOp::Insert, &erp_terms(), &[]),
        change(Side::Crm, ChangeOp::Update, &crm_terms(), &[]),
        change(Side::Crm, ChangeOp::Delete, &crm_terms(), &[]),
    ] {
        assert_eq!(one(config, source_change), Outcome::Filtered);
    }
    let outcome = one(
        r#"{"companies": ["usmf"]}"#,
        change(Side::Erp, ChangeOp::Insert, &erp_terms(), &[]),
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
                (crm::MSDYN_NAME, text("CardNow")),
            ],
            &[],
        ),
    );
    assert_eq!(
        outcome,
        Outcome::write(
            Write::delete()
                .set(erp::DATAAREAID, "USMF")
                .set(erp::NAME, "CardNow")
        )
    );
    // A delete carries the key only, even when the old row holds bad values.
    let outcome = one(
        "{}",
        change(
            Side::Erp,
            ChangeOp::Delete,
            &with(erp_terms(), erp::ISCASHPAYMENT, text("maybe")),
            &[],
        ),
    );
    assert_eq!(
        outcome,
        Outcome::write(
            Write::delete()
                .set(crm::MSDYN_COMPANY, "USMF")
                .set(crm::MSDYN_NAME, "Net30")
        )
    );
}

#[test]
fn updates_write_only_touched_fields() {
    assert_eq!(
        erp_update(erp::NUMBEROFDAYS, Value::Integer(45)),
        upsert(&[
            (crm::MSDYN_COMPANY, text("USMF")),
            (crm::MSDYN_NAME, text("Net30")),
            (crm::MSDYN_DAYS, Value::Integer(45)),
        ])
    );
    // Changed fields the map does not carry: none here, so an empty changed list means
    // "unknown" and carries the whole row.
    let outcome = one("{}", change(Side::Crm, ChangeOp::Update, &crm_terms(), &[]));
    assert!(
        matches!(&outcome, Outcome::Writes(writes) if writes[0].fields.len() == 14),
        "{outcome:?}"
    );
}

#[test]
fn bad_keys_and_kinds_are_rejected() {
    for (id, value) in [
        (erp::DATAAREAID, Value::Null),
        (erp::NAME, text("")),
        (erp::DESCRIPTION, Value::Integer(5)),
        (erp::NUMBEROFDAYS, Value::Decimal("30".to_owned())),
        (erp::NUMBEROFMONTHS, Value::Float(1.0)),
        (erp::CUTOFFDAYOFMONTH, text("25")),
        (erp::CREDITCARDPAYMENTTYPE, Value::Integer(806_380_998)),
        (erp::PAYMENTSCHEDULENAME, Value::Boolean(true)),
    ] {
        let error = the_error(one(
            "{}",
            change(
                Side::Erp,
                ChangeOp::Insert,
                &with(erp_terms(), id, value),
                &[],
            ),
        ));
        assert_eq!(error.kind, ErrorKind::Rejected);
        assert_eq!(error.field, Some(id));
    }
    let error = the_error(crm_update(crm::MSDYN_DAYS, text("30")));
    assert_eq!(error.field, Some(crm::MSDYN_DAYS));
    assert_eq!(
        error.message,
        "msdyn_days: expected an integer, got text \"30\""
    );
}

#[test]
fn configs() {
    for config in ["{}", r#"{"companies": ["USMF"], "resolve_lookups": false}"#] {
        assert!(
            TermsOfPayment::default().configure(config).is_ok(),
            "{config}"
        );
    }
    assert_eq!(config_path(r#"{"company": ["USMF"]}"#), "/company");
    assert_eq!(config_path(r#"{"companies": [1]}"#), "/companies/0");
    assert_eq!(
        config_path(r#"{"companies": ["USMF", ""]}"#),
        "/companies/1"
    );
    assert_eq!(config_path(r#"{"companies": {}}"#), "/companies");
    assert_eq!(
        config_path(r#"{"resolve_lookups": "no"}"#),
        "/resolve_lookups"
    );
    assert_eq!(config_path("null"), "");
    assert_eq!(config_path("not json"), "");
}
