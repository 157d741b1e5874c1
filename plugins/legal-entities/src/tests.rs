//! Native tests of the legal entities map, through the SDK's fake host.

use dualwrite_guest::testing::{self, FakeHost, the_error, upsert, with};
use dualwrite_guest::{
    Change, ChangeOp, Direction, ErrorKind, FieldId, MapPlugin, Outcome, Side, Value, ValueKind,
    Write,
};

use super::{LegalEntities, crm, erp};

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

fn change(source: Side, op: ChangeOp, values: &[(FieldId, Value)], changed: &[FieldId]) -> Change {
    testing::change(source, op, 2, values, changed)
}

fn one(config: &str, change: Change) -> Outcome {
    // The map never calls the host: an offline one proves it.
    let host = FakeHost::new().unavailable("must not be called");
    testing::one::<LegalEntities>(config, change, &host)
}

fn config_path(config: &str) -> String {
    testing::config_path::<LegalEntities>(config)
}

fn erp_company() -> Vec<(FieldId, Value)> {
    vec![
        (erp::LEGALENTITYID, text("USMF")),
        (erp::NAME, text("Contoso Entertainment System USA")),
    ]
}

fn crm_company() -> Vec<(FieldId, Value)> {
    vec![
        (crm::CDM_COMPANYCODE, text("USMF")),
        (crm::CDM_NAME, text("Contoso USA")),
    ]
}

#[test]
fn describe_field_ids_match_the_consts() {
    let descriptor = LegalEntities::default().describe();
    let erp_ids = [("LEGALENTITYID", erp::LEGALENTITYID), ("NAME", erp::NAME)];
    let crm_ids = [
        ("cdm_companycode", crm::CDM_COMPANYCODE),
        ("cdm_name", crm::CDM_NAME),
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
    let descriptor = LegalEntities::default().describe();
    assert_eq!(descriptor.name, "legal-entities");
    assert_eq!(descriptor.version, "1.0.0");
    assert_eq!(descriptor.erp.entity, "CompanyInfo");
    assert_eq!(descriptor.crm.entity, "cdm_companies");
    for (entity, key) in [
        (&descriptor.erp, "LEGALENTITYID"),
        (&descriptor.crm, "cdm_companycode"),
    ] {
        let keys: Vec<&str> = entity
            .fields
            .iter()
            .filter(|field| field.key)
            .map(|field| field.name.as_str())
            .collect();
        assert_eq!(keys, [key]);
        assert!(
            entity
                .fields
                .iter()
                .all(|field| field.kind == ValueKind::Text)
        );
    }
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
            (Some("NAME"), Some("cdm_name"), Direction::ToCrm, "copy"),
            (
                Some("LEGALENTITYID"),
                Some("cdm_companycode"),
                Direction::ToCrm,
                "copy"
            ),
        ]
    );
    let schema: serde_json::Value = serde_json::from_str(&descriptor.config_schema).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["properties"]["companies"]["type"], "array");
    assert_eq!(schema["properties"].as_object().unwrap().len(), 1);
}

#[test]
fn erp_insert_writes_every_field_to_crm() {
    let outcome = one(
        "{}",
        change(Side::Erp, ChangeOp::Insert, &erp_company(), &[]),
    );
    assert_eq!(
        outcome,
        upsert(&[
            (crm::CDM_COMPANYCODE, text("USMF")),
            (crm::CDM_NAME, text("Contoso Entertainment System USA")),
        ])
    );
}

#[test]
fn erp_updates_write_touched_fields() {
    let outcome = one(
        "{}",
        change(Side::Erp, ChangeOp::Update, &erp_company(), &[erp::NAME]),
    );
    assert_eq!(
        outcome,
        upsert(&[
            (crm::CDM_COMPANYCODE, text("USMF")),
            (crm::CDM_NAME, text("Contoso Entertainment System USA")),
        ])
    );
    // Unknown changed fields, or a key change: the whole row.
    for changed in [vec![], vec![erp::LEGALENTITYID]] {
        let outcome = one(
            "{}",
            change(
                Side::Erp,
                ChangeOp::Update,
                &with(erp_company(), erp::NAME, Value::Null),
                &changed,
            ),
        );
        assert_eq!(
            outcome,
            upsert(&[
                (crm::CDM_COMPANYCODE, text("USMF")),
                (crm::CDM_NAME, Value::Null),
            ])
        );
    }
}

#[test]
fn crm_changes_are_not_carried_to_erp() {
    for op in [ChangeOp::Insert, ChangeOp::Update, ChangeOp::Delete] {
        let changed = if op == ChangeOp::Update {
            vec![crm::CDM_NAME]
        } else {
            vec![]
        };
        let outcome = one("{}", change(Side::Crm, op, &crm_company(), &changed));
        assert_eq!(outcome, Outcome::Writes(Vec::new()), "{op:?}");
    }
}

#[test]
fn erp_delete_writes_the_crm_key() {
    let outcome = one(
        "{}",
        change(
            Side::Erp,
            ChangeOp::Delete,
            &[(erp::LEGALENTITYID, text("USMF"))],
            &[],
        ),
    );
    assert_eq!(
        outcome,
        Outcome::write(Write::delete().set(crm::CDM_COMPANYCODE, "USMF"))
    );
}

#[test]
fn company_filter() {
    let config = r#"{"companies": ["DEMF"]}"#;
    for source_change in [
        change(Side::Erp, ChangeOp::Insert, &erp_company(), &[]),
        change(Side::Erp, ChangeOp::Delete, &erp_company(), &[]),
        change(Side::Crm, ChangeOp::Insert, &crm_company(), &[]),
    ] {
        assert_eq!(one(config, source_change), Outcome::Filtered);
    }
    let outcome = one(
        r#"{"companies": ["usmf"]}"#,
        change(Side::Erp, ChangeOp::Insert, &erp_company(), &[]),
    );
    assert!(matches!(outcome, Outcome::Writes(writes) if writes.len() == 1));
}

#[test]
fn bad_keys_and_kinds_are_rejected() {
    for (id, value) in [
        (erp::LEGALENTITYID, Value::Null),
        (erp::LEGALENTITYID, text("")),
        (erp::LEGALENTITYID, Value::Integer(1)),
        (erp::NAME, Value::Integer(5)),
    ] {
        let error = the_error(one(
            "{}",
            change(
                Side::Erp,
                ChangeOp::Insert,
                &with(erp_company(), id, value),
                &[],
            ),
        ));
        assert_eq!(error.kind, ErrorKind::Rejected);
        assert_eq!(error.field, Some(id));
    }
    let error = the_error(one("{}", change(Side::Crm, ChangeOp::Delete, &[], &[])));
    assert_eq!(error.kind, ErrorKind::Rejected);
    assert_eq!(error.field, Some(crm::CDM_COMPANYCODE));
    assert_eq!(error.message, "cdm_companycode: key field is null");
}

#[test]
fn configs() {
    for config in ["{}", r#"{"companies": []}"#, r#"{"companies": ["USMF"]}"#] {
        assert!(
            LegalEntities::default().configure(config).is_ok(),
            "{config}"
        );
    }
    assert_eq!(config_path(r#"{"company": ["USMF"]}"#), "/company");
    assert_eq!(
        config_path(r#"{"resolve_lookups": false}"#),
        "/resolve_lookups"
    );
    assert_eq!(config_path(r#"{"companies": [1]}"#), "/companies/0");
    assert_eq!(
        config_path(r#"{"companies": ["USMF", ""]}"#),
        "/companies/1"
    );
    assert_eq!(config_path(r#"{"companies": "USMF"}"#), "/companies");
    assert_eq!(config_path(r#"{"a/b": 1}"#), "/a~1b");
    assert_eq!(config_path("[]"), "");
    assert_eq!(config_path("not json"), "");
}
