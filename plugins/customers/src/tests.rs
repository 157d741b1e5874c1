//! Native tests of the customers map, through the SDK's fake host.

use dualwrite_guest::testing::{FakeHost, run};
use dualwrite_guest::{
    Change, ChangeOp, Direction, ErrorKind, FieldId, FieldValue, Host, HostError, LogLevel,
    MapPlugin, Outcome, PluginError, Side, Value, ValueKind, Write, WriteOp,
};

use super::{CRM_ENTITY, Customers, ERP_ENTITY, crm, erp};

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

fn decimal(value: &str) -> Value {
    Value::Decimal(value.to_owned())
}

fn row(values: &[(FieldId, Value)]) -> Vec<Value> {
    let mut row = vec![Value::Null; 25];
    for (id, value) in values {
        row[*id as usize] = value.clone();
    }
    row
}

fn change(source: Side, op: ChangeOp, values: &[(FieldId, Value)], changed: &[FieldId]) -> Change {
    Change {
        source,
        op,
        row: row(values),
        changed: changed.to_vec(),
    }
}

/// A complete ERP organization customer.
fn erp_customer() -> Vec<(FieldId, Value)> {
    vec![
        (erp::DATAAREAID, text("USMF")),
        (erp::CUSTOMERACCOUNT, text("US-001")),
        (erp::CREDITLIMIT, decimal("10000.50")),
        (erp::SALESCURRENCYCODE, text("USD")),
        (erp::SALESMEMO, text("memo")),
        (erp::CREDITLIMITISMANDATORY, text("yes")),
        (erp::CREDITRATING, text("AA")),
        (erp::CUSTOMERGROUPID, text("10")),
        (erp::IDENTIFICATIONNUMBER, text("ID-9")),
        (erp::INVOICEACCOUNT, text("US-002")),
        (erp::ISONETIMECUSTOMER, text("no")),
        (erp::ONHOLDSTATUS, text("invoice")),
        (erp::PARTYCOUNTRY, text("USA")),
        (erp::PARTYSTATE, text("WA")),
        (erp::PAYMENTDAY, text("Monday")),
        (erp::PAYMENTMETHOD, text("CHECK")),
        (erp::PAYMENTSCHEDULE, text("3 months")),
        (erp::PAYMENTTERMS, text("Net30")),
        (erp::PAYMENTTERMSBASEDAYS, Value::Integer(30)),
        (erp::TAXEXEMPTNUMBER, text("TX-1")),
        (erp::VENDORACCOUNT, text("V-100")),
        (erp::PARTYTYPE, text("Organization")),
        (erp::PARTYNUMBER, text("P-7")),
        (erp::CONTACTPERSONID, text("C-3")),
        (erp::SALESTAXGROUP, text("WA")),
    ]
}

/// The same customer as a CRM account.
fn crm_account() -> Vec<(FieldId, Value)> {
    vec![
        (crm::MSDYN_COMPANY, text("USMF")),
        (crm::ACCOUNTNUMBER, text("US-001")),
        (crm::CREDITLIMIT, decimal("10000.50")),
        (crm::TRANSACTIONCURRENCYID, text("USD")),
        (crm::DESCRIPTION, text("memo")),
        (crm::MSDYN_CREDITLIMITISMANDATORY, Value::Boolean(true)),
        (crm::MSDYN_CREDITRATING, text("AA")),
        (crm::MSDYN_CUSTOMERGROUPID, text("10")),
        (crm::MSDYN_IDENTIFICATIONNUMBER, text("ID-9")),
        (crm::MSDYN_BILLINGACCOUNT, text("US-002")),
        (crm::MSDYN_ONETIMECUSTOMER, Value::Boolean(false)),
        (crm::MSDYN_ONHOLDSTATUS, Value::Integer(806_380_001)),
        (crm::MSDYN_PARTYCOUNTRY, text("USA")),
        (crm::MSDYN_PARTYSTATEPROVINCE, text("WA")),
        (crm::MSDYN_PAYMENTDAY, text("Monday")),
        (crm::MSDYN_CUSTOMERPAYMENTMETHOD, text("CHECK")),
        (crm::MSDYN_PAYMENTSCHEDULE, text("3 months")),
        (crm::MSDYN_PAYMENTTERM, text("Net30")),
        (crm::MSDYN_PAYMENTTERMSBASEDAYS, Value::Integer(30)),
        (crm::MSDYN_TAXEXEMPTNUMBER, text("TX-1")),
        (crm::MSDYN_VENDOR, text("V-100")),
        (crm::CUSTOMERTYPECODE, Value::Integer(3)),
        (crm::MSDYN_PARTYID, text("P-7")),
        (crm::MSDYN_PRIMARYCONTACT, text("C-3")),
        (crm::MSDYN_SALESTAXGROUP, text("WA")),
    ]
}

fn with(mut values: Vec<(FieldId, Value)>, id: FieldId, value: Value) -> Vec<(FieldId, Value)> {
    values.retain(|(field, _)| *field != id);
    values.push((id, value));
    values
}

/// Links for every lookup of the sample rows, both sides. Linked keys differ in case
/// from the source keys so a test sees the translated value was used.
fn linked() -> FakeHost {
    let usmf = || text("USMF");
    FakeHost::new()
        .link(
            Side::Erp,
            "Currencies",
            vec![text("USD")],
            vec![text("usd")],
        )
        .link(
            Side::Erp,
            "CustCustomerGroup",
            vec![usmf(), text("10")],
            vec![usmf(), text("g10")],
        )
        .link(
            Side::Erp,
            ERP_ENTITY,
            vec![usmf(), text("US-002")],
            vec![usmf(), text("us-002")],
        )
        .link(
            Side::Erp,
            "PaymentTerms",
            vec![usmf(), text("Net30")],
            vec![usmf(), text("net30")],
        )
        .link(
            Side::Erp,
            "VendVendorV2Entity",
            vec![usmf(), text("V-100")],
            vec![usmf(), text("v-100")],
        )
        .link(
            Side::Crm,
            "transactioncurrencies",
            vec![text("USD")],
            vec![text("usd")],
        )
        .link(
            Side::Crm,
            "msdyn_customergroups",
            vec![usmf(), text("10")],
            vec![usmf(), text("g10")],
        )
        .link(
            Side::Crm,
            CRM_ENTITY,
            vec![usmf(), text("US-002")],
            vec![usmf(), text("us-002")],
        )
        .link(
            Side::Crm,
            "msdyn_paymentterms",
            vec![usmf(), text("Net30")],
            vec![usmf(), text("net30")],
        )
        .link(
            Side::Crm,
            "msdyn_vendors",
            vec![usmf(), text("V-100")],
            vec![usmf(), text("v-100")],
        )
}

fn one(config: &str, change: Change, host: &FakeHost) -> Outcome {
    let mut outcomes = run::<Customers>(config, &[change], host).expect("config is valid");
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0)
}

fn the_write(outcome: Outcome) -> Write {
    match outcome {
        Outcome::Writes(mut writes) if writes.len() == 1 => writes.remove(0),
        other => panic!("expected one write, got {other:?}"),
    }
}

fn the_error(outcome: Outcome) -> PluginError {
    match outcome {
        Outcome::Failed(error) => error,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn upsert(fields: &[(FieldId, Value)]) -> Write {
    Write {
        op: WriteOp::Upsert,
        fields: fields
            .iter()
            .map(|(field, value)| FieldValue {
                field: *field,
                value: value.clone(),
            })
            .collect(),
    }
}

fn value_of(write: &Write, id: FieldId) -> Option<&Value> {
    write
        .fields
        .iter()
        .find(|field| field.field == id)
        .map(|field| &field.value)
}

fn ids(write: &Write) -> Vec<FieldId> {
    write.fields.iter().map(|field| field.field).collect()
}

fn config_error(config: &str) -> (String, String) {
    let mut plugin = Customers::default();
    let error = plugin.configure(config).expect_err("config is refused");
    (error.path, error.message)
}

// describe

#[test]
fn describe_field_ids_match_the_consts() {
    let descriptor = Customers::default().describe();
    let erp_ids = [
        ("DATAAREAID", erp::DATAAREAID),
        ("CUSTOMERACCOUNT", erp::CUSTOMERACCOUNT),
        ("CREDITLIMIT", erp::CREDITLIMIT),
        ("SALESCURRENCYCODE", erp::SALESCURRENCYCODE),
        ("SALESMEMO", erp::SALESMEMO),
        ("CREDITLIMITISMANDATORY", erp::CREDITLIMITISMANDATORY),
        ("CREDITRATING", erp::CREDITRATING),
        ("CUSTOMERGROUPID", erp::CUSTOMERGROUPID),
        ("IDENTIFICATIONNUMBER", erp::IDENTIFICATIONNUMBER),
        ("INVOICEACCOUNT", erp::INVOICEACCOUNT),
        ("ISONETIMECUSTOMER", erp::ISONETIMECUSTOMER),
        ("ONHOLDSTATUS", erp::ONHOLDSTATUS),
        ("PARTYCOUNTRY", erp::PARTYCOUNTRY),
        ("PARTYSTATE", erp::PARTYSTATE),
        ("PAYMENTDAY", erp::PAYMENTDAY),
        ("PAYMENTMETHOD", erp::PAYMENTMETHOD),
        ("PAYMENTSCHEDULE", erp::PAYMENTSCHEDULE),
        ("PAYMENTTERMS", erp::PAYMENTTERMS),
        ("PAYMENTTERMSBASEDAYS", erp::PAYMENTTERMSBASEDAYS),
        ("TAXEXEMPTNUMBER", erp::TAXEXEMPTNUMBER),
        ("VENDORACCOUNT", erp::VENDORACCOUNT),
        ("PARTYTYPE", erp::PARTYTYPE),
        ("PARTYNUMBER", erp::PARTYNUMBER),
        ("CONTACTPERSONID", erp::CONTACTPERSONID),
        ("SALESTAXGROUP", erp::SALESTAXGROUP),
    ];
    let crm_ids = [
        ("msdyn_company", crm::MSDYN_COMPANY),
        ("accountnumber", crm::ACCOUNTNUMBER),
        ("creditlimit", crm::CREDITLIMIT),
        ("transactioncurrencyid", crm::TRANSACTIONCURRENCYID),
        ("description", crm::DESCRIPTION),
        (
            "msdyn_creditlimitismandatory",
            crm::MSDYN_CREDITLIMITISMANDATORY,
        ),
        ("msdyn_creditrating", crm::MSDYN_CREDITRATING),
        ("msdyn_customergroupid", crm::MSDYN_CUSTOMERGROUPID),
        (
            "msdyn_identificationnumber",
            crm::MSDYN_IDENTIFICATIONNUMBER,
        ),
        ("msdyn_billingaccount", crm::MSDYN_BILLINGACCOUNT),
        ("msdyn_onetimecustomer", crm::MSDYN_ONETIMECUSTOMER),
        ("msdyn_onholdstatus", crm::MSDYN_ONHOLDSTATUS),
        ("msdyn_partycountry", crm::MSDYN_PARTYCOUNTRY),
        ("msdyn_partystateprovince", crm::MSDYN_PARTYSTATEPROVINCE),
        ("msdyn_paymentday", crm::MSDYN_PAYMENTDAY),
        (
            "msdyn_customerpaymentmethod",
            crm::MSDYN_CUSTOMERPAYMENTMETHOD,
        ),
        ("msdyn_paymentschedule", crm::MSDYN_PAYMENTSCHEDULE),
        ("msdyn_paymentterm", crm::MSDYN_PAYMENTTERM),
        (
            "msdyn_paymenttermsbasedays",
            crm::MSDYN_PAYMENTTERMSBASEDAYS,
        ),
        ("msdyn_taxexemptnumber", crm::MSDYN_TAXEXEMPTNUMBER),
        ("msdyn_vendor", crm::MSDYN_VENDOR),
        ("customertypecode", crm::CUSTOMERTYPECODE),
        ("msdyn_partyid", crm::MSDYN_PARTYID),
        ("msdyn_primarycontact", crm::MSDYN_PRIMARYCONTACT),
        ("msdyn_salestaxgroup", crm::MSDYN_SALESTAXGROUP),
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
fn describe_declares_entities_keys_and_kinds() {
    let descriptor = Customers::default().describe();
    assert_eq!(descriptor.name, "customers");
    assert_eq!(descriptor.version, "1.0.0");
    assert_eq!(descriptor.erp.entity, "CustCustomerV3Entity");
    assert_eq!(descriptor.crm.entity, "accounts");
    let keys = |fields: &[dualwrite_guest::FieldSpec]| -> Vec<String> {
        fields
            .iter()
            .filter(|field| field.key)
            .map(|field| field.name.clone())
            .collect()
    };
    assert_eq!(
        keys(&descriptor.erp.fields),
        ["DATAAREAID", "CUSTOMERACCOUNT"]
    );
    assert_eq!(
        keys(&descriptor.crm.fields),
        ["msdyn_company", "accountnumber"]
    );
    let erp_kind = |id: FieldId| descriptor.erp.fields[id as usize].kind;
    let crm_kind = |id: FieldId| descriptor.crm.fields[id as usize].kind;
    assert_eq!(erp_kind(erp::CREDITLIMIT), ValueKind::Decimal);
    assert_eq!(crm_kind(crm::CREDITLIMIT), ValueKind::Decimal);
    assert_eq!(erp_kind(erp::PAYMENTTERMSBASEDAYS), ValueKind::Integer);
    assert_eq!(crm_kind(crm::MSDYN_ONHOLDSTATUS), ValueKind::Integer);
    assert_eq!(crm_kind(crm::CUSTOMERTYPECODE), ValueKind::Integer);
    assert_eq!(crm_kind(crm::MSDYN_ONETIMECUSTOMER), ValueKind::Boolean);
    assert_eq!(erp_kind(erp::ISONETIMECUSTOMER), ValueKind::Text);
    assert_eq!(
        descriptor.depends_on,
        [
            "legal-entities",
            "currencies",
            "customer-groups",
            "terms-of-payment",
            "vendors"
        ]
    );
}

#[test]
fn describe_has_one_mapping_per_reference_line() {
    let descriptor = Customers::default().describe();
    assert_eq!(descriptor.mappings.len(), 25);
    let line = |erp: Option<&str>, crm: Option<&str>| {
        descriptor
            .mappings
            .iter()
            .find(|m| m.erp_field.as_deref() == erp && m.crm_field.as_deref() == crm)
            .unwrap_or_else(|| panic!("no mapping {erp:?} - {crm:?}"))
    };
    let constant_to_crm = line(None, Some("customertypecode"));
    assert_eq!(
        (
            constant_to_crm.direction,
            constant_to_crm.transform.as_str()
        ),
        (Direction::ToCrm, "constant")
    );
    let constant_to_erp = line(Some("PARTYTYPE"), None);
    assert_eq!(
        (
            constant_to_erp.direction,
            constant_to_erp.transform.as_str()
        ),
        (Direction::ToErp, "constant")
    );
    assert_eq!(
        line(Some("ONHOLDSTATUS"), Some("msdyn_onholdstatus")).transform,
        "value-map"
    );
    assert_eq!(
        line(Some("INVOICEACCOUNT"), Some("msdyn_billingaccount")).transform,
        "lookup"
    );
    assert_eq!(
        line(Some("CREDITLIMIT"), Some("creditlimit")).transform,
        "copy"
    );
    assert!(
        line(Some("PAYMENTDAY"), Some("msdyn_paymentday"))
            .transform
            .contains("plain text")
    );
    // Every mapped field exists in the entity specs.
    for mapping in &descriptor.mappings {
        if let Some(name) = &mapping.erp_field {
            assert!(descriptor.erp.id_of(name).is_some(), "{name}");
        }
        if let Some(name) = &mapping.crm_field {
            assert!(descriptor.crm.id_of(name).is_some(), "{name}");
        }
    }
}

#[test]
fn describe_config_schema_is_json_schema_for_the_options() {
    let schema: serde_json::Value =
        serde_json::from_str(&Customers::default().describe().config_schema).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["properties"]["companies"]["type"], "array");
    assert_eq!(schema["properties"]["companies"]["items"]["type"], "string");
    assert_eq!(schema["properties"]["resolve_lookups"]["type"], "boolean");
    assert_eq!(schema["properties"].as_object().unwrap().len(), 2);
}

// both directions

#[test]
fn erp_insert_writes_every_field_to_crm() {
    let write = the_write(one(
        "{}",
        change(Side::Erp, ChangeOp::Insert, &erp_customer(), &[]),
        &linked(),
    ));
    let expected = upsert(&[
        (crm::MSDYN_COMPANY, text("USMF")),
        (crm::ACCOUNTNUMBER, text("US-001")),
        (crm::CREDITLIMIT, decimal("10000.50")),
        (crm::TRANSACTIONCURRENCYID, text("usd")),
        (crm::DESCRIPTION, text("memo")),
        (crm::MSDYN_CREDITLIMITISMANDATORY, Value::Boolean(true)),
        (crm::MSDYN_CREDITRATING, text("AA")),
        (crm::MSDYN_CUSTOMERGROUPID, text("g10")),
        (crm::MSDYN_IDENTIFICATIONNUMBER, text("ID-9")),
        (crm::MSDYN_BILLINGACCOUNT, text("us-002")),
        (crm::MSDYN_ONETIMECUSTOMER, Value::Boolean(false)),
        (crm::MSDYN_ONHOLDSTATUS, Value::Integer(806_380_001)),
        (crm::MSDYN_PARTYCOUNTRY, text("USA")),
        (crm::MSDYN_PARTYSTATEPROVINCE, text("WA")),
        (crm::MSDYN_PAYMENTDAY, text("Monday")),
        (crm::MSDYN_CUSTOMERPAYMENTMETHOD, text("CHECK")),
        (crm::MSDYN_PAYMENTSCHEDULE, text("3 months")),
        (crm::MSDYN_PAYMENTTERM, text("net30")),
        (crm::MSDYN_PAYMENTTERMSBASEDAYS, Value::Integer(30)),
        (crm::MSDYN_TAXEXEMPTNUMBER, text("TX-1")),
        (crm::MSDYN_VENDOR, text("v-100")),
        (crm::CUSTOMERTYPECODE, Value::Integer(3)),
        (crm::MSDYN_PARTYID, text("P-7")),
        (crm::MSDYN_PRIMARYCONTACT, text("C-3")),
        (crm::MSDYN_SALESTAXGROUP, text("WA")),
    ]);
    assert_eq!(write, expected);
}

#[test]
fn crm_insert_writes_every_field_to_erp() {
    let write = the_write(one(
        "{}",
        change(Side::Crm, ChangeOp::Insert, &crm_account(), &[]),
        &linked(),
    ));
    let expected = upsert(&[
        (erp::DATAAREAID, text("USMF")),
        (erp::CUSTOMERACCOUNT, text("US-001")),
        (erp::CREDITLIMIT, decimal("10000.50")),
        (erp::SALESCURRENCYCODE, text("usd")),
        (erp::SALESMEMO, text("memo")),
        (erp::CREDITLIMITISMANDATORY, text("yes")),
        (erp::CREDITRATING, text("AA")),
        (erp::CUSTOMERGROUPID, text("g10")),
        (erp::IDENTIFICATIONNUMBER, text("ID-9")),
        (erp::INVOICEACCOUNT, text("us-002")),
        (erp::ISONETIMECUSTOMER, text("no")),
        (erp::ONHOLDSTATUS, text("invoice")),
        (erp::PARTYCOUNTRY, text("USA")),
        (erp::PARTYSTATE, text("WA")),
        (erp::PAYMENTDAY, text("Monday")),
        (erp::PAYMENTMETHOD, text("CHECK")),
        (erp::PAYMENTSCHEDULE, text("3 months")),
        (erp::PAYMENTTERMS, text("net30")),
        (erp::PAYMENTTERMSBASEDAYS, Value::Integer(30)),
        (erp::TAXEXEMPTNUMBER, text("TX-1")),
        (erp::VENDORACCOUNT, text("v-100")),
        (erp::PARTYTYPE, text("Organization")),
        (erp::PARTYNUMBER, text("P-7")),
        (erp::CONTACTPERSONID, text("C-3")),
        (erp::SALESTAXGROUP, text("WA")),
    ]);
    assert_eq!(write, expected);
}

// value maps

#[test]
fn yes_no_maps_both_ways() {
    for (erp_text, flag) in [("no", false), ("yes", true), ("Yes", true)] {
        let write = the_write(one(
            "{}",
            change(
                Side::Erp,
                ChangeOp::Insert,
                &with(erp_customer(), erp::ISONETIMECUSTOMER, text(erp_text)),
                &[],
            ),
            &linked(),
        ));
        assert_eq!(
            value_of(&write, crm::MSDYN_ONETIMECUSTOMER),
            Some(&Value::Boolean(flag))
        );
    }
    for (flag, erp_text) in [(false, "no"), (true, "yes")] {
        let write = the_write(one(
            "{}",
            change(
                Side::Crm,
                ChangeOp::Insert,
                &with(
                    crm_account(),
                    crm::MSDYN_CREDITLIMITISMANDATORY,
                    Value::Boolean(flag),
                ),
                &[],
            ),
            &linked(),
        ));
        assert_eq!(
            value_of(&write, erp::CREDITLIMITISMANDATORY),
            Some(&text(erp_text))
        );
    }
}

#[test]
fn yes_no_miss_and_wrong_kind_are_rejected() {
    let error = the_error(one(
        "{}",
        change(
            Side::Erp,
            ChangeOp::Insert,
            &with(erp_customer(), erp::CREDITLIMITISMANDATORY, text("maybe")),
            &[],
        ),
        &linked(),
    ));
    assert_eq!(error.kind, ErrorKind::Rejected);
    assert_eq!(error.field, Some(erp::CREDITLIMITISMANDATORY));
    assert!(
        error.message.contains("CREDITLIMITISMANDATORY"),
        "{}",
        error.message
    );
    assert!(error.message.contains("\"maybe\""), "{}", error.message);

    let error = the_error(one(
        "{}",
        change(
            Side::Crm,
            ChangeOp::Insert,
            &with(crm_account(), crm::MSDYN_ONETIMECUSTOMER, text("true")),
            &[],
        ),
        &linked(),
    ));
    assert_eq!(error.kind, ErrorKind::Rejected);
    assert_eq!(error.field, Some(crm::MSDYN_ONETIMECUSTOMER));
    assert!(
        error.message.contains("msdyn_onetimecustomer"),
        "{}",
        error.message
    );
}

#[test]
fn on_hold_status_maps_every_value_both_ways() {
    let pairs = [
        ("no", 806_380_000),
        ("invoice", 806_380_001),
        ("all", 806_380_002),
        ("payment", 806_380_003),
        ("requisition", 806_380_004),
        ("never", 806_380_005),
    ];
    for (name, code) in pairs {
        let to_crm = the_write(one(
            "{}",
            change(
                Side::Erp,
                ChangeOp::Insert,
                &with(erp_customer(), erp::ONHOLDSTATUS, text(name)),
                &[],
            ),
            &linked(),
        ));
        assert_eq!(
            value_of(&to_crm, crm::MSDYN_ONHOLDSTATUS),
            Some(&Value::Integer(code))
        );
        let to_erp = the_write(one(
            "{}",
            change(
                Side::Crm,
                ChangeOp::Insert,
                &with(crm_account(), crm::MSDYN_ONHOLDSTATUS, Value::Integer(code)),
                &[],
            ),
            &linked(),
        ));
        assert_eq!(value_of(&to_erp, erp::ONHOLDSTATUS), Some(&text(name)));
    }
}

#[test]
fn on_hold_status_miss_is_rejected_both_ways() {
    let error = the_error(one(
        "{}",
        change(
            Side::Erp,
            ChangeOp::Insert,
            &with(erp_customer(), erp::ONHOLDSTATUS, text("maybe")),
            &[],
        ),
        &linked(),
    ));
    assert_eq!(error.kind, ErrorKind::Rejected);
    assert_eq!(error.field, Some(erp::ONHOLDSTATUS));
    assert!(error.message.contains("ONHOLDSTATUS"), "{}", error.message);
    assert!(error.message.contains("\"maybe\""), "{}", error.message);

    let error = the_error(one(
        "{}",
        change(
            Side::Crm,
            ChangeOp::Insert,
            &with(
                crm_account(),
                crm::MSDYN_ONHOLDSTATUS,
                Value::Integer(806_380_009),
            ),
            &[],
        ),
        &linked(),
    ));
    assert_eq!(error.kind, ErrorKind::Rejected);
    assert_eq!(error.field, Some(crm::MSDYN_ONHOLDSTATUS));
    assert!(error.message.contains("806380009"), "{}", error.message);
}

#[test]
fn null_value_mapped_fields_stay_null() {
    let write = the_write(one(
        "{}",
        change(
            Side::Erp,
            ChangeOp::Insert,
            &with(erp_customer(), erp::ONHOLDSTATUS, Value::Null),
            &[],
        ),
        &linked(),
    ));
    assert_eq!(
        value_of(&write, crm::MSDYN_ONHOLDSTATUS),
        Some(&Value::Null)
    );
}

// money and kinds

#[test]
fn credit_limit_is_an_exact_decimal_and_a_float_is_rejected() {
    let write = the_write(one(
        "{}",
        change(
            Side::Crm,
            ChangeOp::Insert,
            &with(crm_account(), crm::CREDITLIMIT, decimal("0.10")),
            &[],
        ),
        &linked(),
    ));
    assert_eq!(value_of(&write, erp::CREDITLIMIT), Some(&decimal("0.10")));

    for source in [Side::Erp, Side::Crm] {
        let values = match source {
            Side::Erp => with(erp_customer(), erp::CREDITLIMIT, Value::Float(0.1)),
            Side::Crm => with(crm_account(), crm::CREDITLIMIT, Value::Float(0.1)),
        };
        let error = the_error(one(
            "{}",
            change(source, ChangeOp::Insert, &values, &[]),
            &linked(),
        ));
        assert_eq!(error.kind, ErrorKind::Rejected);
        assert_eq!(error.field, Some(2));
        assert!(
            error.message.contains("money must be an exact decimal"),
            "{}",
            error.message
        );
        assert!(
            error.message.to_lowercase().contains("creditlimit"),
            "{}",
            error.message
        );
    }
}

#[test]
fn wrong_kinds_and_bad_keys_are_rejected_not_panics() {
    let cases = [
        (erp::PAYMENTTERMSBASEDAYS, text("30")),
        (erp::SALESMEMO, Value::Integer(1)),
        (erp::CUSTOMERGROUPID, Value::Integer(10)),
        (erp::PARTYTYPE, Value::Integer(1)),
        (erp::CUSTOMERACCOUNT, Value::Null),
        (erp::CUSTOMERACCOUNT, text("")),
        (erp::DATAAREAID, Value::Integer(1)),
    ];
    for (id, value) in cases {
        let error = the_error(one(
            "{}",
            change(
                Side::Erp,
                ChangeOp::Insert,
                &with(erp_customer(), id, value.clone()),
                &[],
            ),
            &linked(),
        ));
        assert_eq!(error.kind, ErrorKind::Rejected, "{value:?}");
        assert_eq!(error.field, Some(id), "{value:?}");
    }
    // A short row (fewer values than fields) reads the missing ones as null.
    let short = Change {
        source: Side::Crm,
        op: ChangeOp::Insert,
        row: vec![text("USMF")],
        changed: vec![],
    };
    let error = the_error(one("{}", short, &linked()));
    assert_eq!(error.field, Some(crm::ACCOUNTNUMBER));
}

// constants and filters

#[test]
fn constants_are_written_on_insert_and_when_the_filter_field_changes() {
    let insert = the_write(one(
        "{}",
        change(Side::Erp, ChangeOp::Insert, &erp_customer(), &[]),
        &linked(),
    ));
    assert_eq!(
        value_of(&insert, crm::CUSTOMERTYPECODE),
        Some(&Value::Integer(3))
    );

    let memo_update = the_write(one(
        "{}",
        change(
            Side::Erp,
            ChangeOp::Update,
            &erp_customer(),
            &[erp::SALESMEMO],
        ),
        &linked(),
    ));
    assert_eq!(value_of(&memo_update, crm::CUSTOMERTYPECODE), None);

    // A row whose filter field changed may have just entered the map (a person became
    // an organization): the whole row goes, exactly as for an insert.
    let became_organization = the_write(one(
        "{}",
        change(
            Side::Erp,
            ChangeOp::Update,
            &erp_customer(),
            &[erp::PARTYTYPE],
        ),
        &linked(),
    ));
    assert_eq!(became_organization, insert);

    let crm_insert = the_write(one(
        "{}",
        change(Side::Crm, ChangeOp::Insert, &crm_account(), &[]),
        &linked(),
    ));
    let crm_type_set = the_write(one(
        "{}",
        change(
            Side::Crm,
            ChangeOp::Update,
            &crm_account(),
            &[crm::CUSTOMERTYPECODE],
        ),
        &linked(),
    ));
    assert_eq!(crm_type_set, crm_insert);
    assert_eq!(
        value_of(&crm_type_set, erp::PARTYTYPE),
        Some(&text("Organization"))
    );
}

#[test]
fn erp_filter_keeps_organizations_only() {
    for party_type in [text("Person"), Value::Null] {
        let outcome = one(
            "{}",
            change(
                Side::Erp,
                ChangeOp::Insert,
                &with(erp_customer(), erp::PARTYTYPE, party_type),
                &[],
            ),
            &linked(),
        );
        assert_eq!(outcome, Outcome::Filtered);
    }
    let person_delete = one(
        "{}",
        change(
            Side::Erp,
            ChangeOp::Delete,
            &with(erp_customer(), erp::PARTYTYPE, text("Person")),
            &[],
        ),
        &linked(),
    );
    assert_eq!(person_delete, Outcome::Filtered);
}

#[test]
fn crm_filter_keeps_customer_type_3_only() {
    for code in [Value::Integer(1), Value::Null] {
        let outcome = one(
            "{}",
            change(
                Side::Crm,
                ChangeOp::Update,
                &with(crm_account(), crm::CUSTOMERTYPECODE, code),
                &[],
            ),
            &linked(),
        );
        assert_eq!(outcome, Outcome::Filtered);
    }
    let error = the_error(one(
        "{}",
        change(
            Side::Crm,
            ChangeOp::Insert,
            &with(crm_account(), crm::CUSTOMERTYPECODE, text("3")),
            &[],
        ),
        &linked(),
    ));
    assert_eq!(error.field, Some(crm::CUSTOMERTYPECODE));
}

#[test]
fn company_filter_uses_the_configured_companies() {
    let config = r#"{"companies": ["usmf", "USRT"]}"#;
    let outcome = one(
        config,
        change(
            Side::Erp,
            ChangeOp::Insert,
            &with(erp_customer(), erp::DATAAREAID, text("DEMF")),
            &[],
        ),
        &linked(),
    );
    assert_eq!(outcome, Outcome::Filtered);
    let crm_outcome = one(
        config,
        change(
            Side::Crm,
            ChangeOp::Delete,
            &with(crm_account(), crm::MSDYN_COMPANY, text("DEMF")),
            &[],
        ),
        &linked(),
    );
    assert_eq!(crm_outcome, Outcome::Filtered);
    // Company codes compare ignoring ASCII case.
    let write = the_write(one(
        config,
        change(Side::Erp, ChangeOp::Insert, &erp_customer(), &[]),
        &linked(),
    ));
    assert_eq!(value_of(&write, crm::MSDYN_COMPANY), Some(&text("USMF")));
    // An empty list syncs every company.
    let all = one(
        r#"{"companies": [], "resolve_lookups": false}"#,
        change(
            Side::Erp,
            ChangeOp::Insert,
            &with(erp_customer(), erp::DATAAREAID, text("DEMF")),
            &[],
        ),
        &linked(),
    );
    assert!(matches!(all, Outcome::Writes(_)));
}

// lookups

#[test]
fn lookup_not_linked_is_dependency_missing() {
    let host = FakeHost::new()
        .link(
            Side::Erp,
            "Currencies",
            vec![text("USD")],
            vec![text("USD")],
        )
        .link(
            Side::Erp,
            ERP_ENTITY,
            vec![text("USMF"), text("US-002")],
            vec![text("USMF"), text("US-002")],
        );
    let error = the_error(one(
        "{}",
        change(Side::Erp, ChangeOp::Insert, &erp_customer(), &[]),
        &host,
    ));
    assert_eq!(error.kind, ErrorKind::DependencyMissing);
    assert_eq!(error.field, Some(erp::CUSTOMERGROUPID));
    for part in ["CUSTOMERGROUPID", "CustCustomerGroup", "\"10\"", "USMF"] {
        assert!(error.message.contains(part), "{part} in {}", error.message);
    }

    let error = the_error(one(
        "{}",
        change(Side::Crm, ChangeOp::Insert, &crm_account(), &[]),
        &FakeHost::new(),
    ));
    assert_eq!(error.kind, ErrorKind::DependencyMissing);
    assert_eq!(error.field, Some(crm::TRANSACTIONCURRENCYID));
    assert!(
        error.message.contains("transactioncurrencies"),
        "{}",
        error.message
    );
}

#[test]
fn lookup_with_host_unavailable_is_transient() {
    let error = the_error(one(
        "{}",
        change(Side::Crm, ChangeOp::Insert, &crm_account(), &[]),
        &FakeHost::new().unavailable("crm side offline"),
    ));
    assert_eq!(error.kind, ErrorKind::Transient);
    assert_eq!(error.field, Some(crm::TRANSACTIONCURRENCYID));
    assert!(
        error.message.contains("crm side offline"),
        "{}",
        error.message
    );
}

/// A host whose lookups fail for good, as when no map covers the entity.
struct NoMapHost;

impl Host for NoMapHost {
    fn log(&self, _level: LogLevel, _message: &str) {}

    fn translate_key(
        &self,
        _side: Side,
        entity: &str,
        _key: &[Value],
    ) -> Result<Option<Vec<Value>>, HostError> {
        Err(HostError {
            message: format!("no map covers {entity}"),
            retryable: false,
        })
    }

    fn read_row(
        &self,
        _side: Side,
        _entity: &str,
        _key: &[Value],
        _fields: &[&str],
    ) -> Result<Option<Vec<Value>>, HostError> {
        Ok(None)
    }
}

#[test]
fn lookup_with_a_permanent_host_error_is_rejected() {
    let plugin = Customers::default();
    let outcome = plugin.transform(
        &change(Side::Erp, ChangeOp::Insert, &erp_customer(), &[]),
        &NoMapHost,
    );
    let error = the_error(outcome);
    assert_eq!(error.kind, ErrorKind::Rejected);
    assert!(
        error.message.contains("no map covers Currencies"),
        "{}",
        error.message
    );
}

#[test]
fn empty_and_null_lookups_write_null_without_asking_the_host() {
    let mut values = erp_customer();
    for (id, value) in [
        (erp::SALESCURRENCYCODE, text("")),
        (erp::CUSTOMERGROUPID, Value::Null),
        (erp::INVOICEACCOUNT, text("")),
        (erp::PAYMENTTERMS, Value::Null),
        (erp::VENDORACCOUNT, Value::Null),
    ] {
        values = with(values, id, value);
    }
    // Any host call would fail as transient.
    let write = the_write(one(
        "{}",
        change(Side::Erp, ChangeOp::Insert, &values, &[]),
        &FakeHost::new().unavailable("must not be called"),
    ));
    for id in [
        crm::TRANSACTIONCURRENCYID,
        crm::MSDYN_CUSTOMERGROUPID,
        crm::MSDYN_BILLINGACCOUNT,
        crm::MSDYN_PAYMENTTERM,
        crm::MSDYN_VENDOR,
    ] {
        assert_eq!(value_of(&write, id), Some(&Value::Null), "field {id}");
    }
}

#[test]
fn own_invoice_account_needs_no_link() {
    for (source, values, target) in [
        (
            Side::Erp,
            with(erp_customer(), erp::INVOICEACCOUNT, text("US-001")),
            crm::MSDYN_BILLINGACCOUNT,
        ),
        (
            Side::Crm,
            with(crm_account(), crm::MSDYN_BILLINGACCOUNT, text("US-001")),
            erp::INVOICEACCOUNT,
        ),
    ] {
        // Everything but the invoice account is linked.
        let write = the_write(one(
            "{}",
            change(source, ChangeOp::Insert, &values, &[]),
            &linked(),
        ));
        assert_eq!(value_of(&write, target), Some(&text("US-001")));
    }
}

#[test]
fn resolve_lookups_false_copies_lookup_values_as_text() {
    let write = the_write(one(
        r#"{"resolve_lookups": false}"#,
        change(Side::Erp, ChangeOp::Insert, &erp_customer(), &[]),
        &FakeHost::new().unavailable("must not be called"),
    ));
    assert_eq!(
        value_of(&write, crm::TRANSACTIONCURRENCYID),
        Some(&text("USD"))
    );
    assert_eq!(
        value_of(&write, crm::MSDYN_CUSTOMERGROUPID),
        Some(&text("10"))
    );
    assert_eq!(
        value_of(&write, crm::MSDYN_BILLINGACCOUNT),
        Some(&text("US-002"))
    );
    assert_eq!(
        value_of(&write, crm::MSDYN_PAYMENTTERM),
        Some(&text("Net30"))
    );
    assert_eq!(value_of(&write, crm::MSDYN_VENDOR), Some(&text("V-100")));
}

// deletes and updates

#[test]
fn deletes_write_the_target_key() {
    let erp_delete = one(
        "{}",
        change(
            Side::Erp,
            ChangeOp::Delete,
            &[
                (erp::DATAAREAID, text("USMF")),
                (erp::CUSTOMERACCOUNT, text("US-001")),
            ],
            &[],
        ),
        &FakeHost::new().unavailable("must not be called"),
    );
    assert_eq!(
        the_write(erp_delete),
        Write::delete()
            .set(crm::MSDYN_COMPANY, "USMF")
            .set(crm::ACCOUNTNUMBER, "US-001")
    );
    let crm_delete = one(
        "{}",
        change(Side::Crm, ChangeOp::Delete, &crm_account(), &[]),
        &FakeHost::new(),
    );
    assert_eq!(
        the_write(crm_delete),
        Write::delete()
            .set(erp::DATAAREAID, "USMF")
            .set(erp::CUSTOMERACCOUNT, "US-001")
    );
}

#[test]
fn update_writes_only_touched_fields_and_the_key() {
    let write = the_write(one(
        "{}",
        change(
            Side::Erp,
            ChangeOp::Update,
            &erp_customer(),
            &[erp::CREDITLIMIT, erp::CUSTOMERGROUPID, erp::ONHOLDSTATUS],
        ),
        &linked(),
    ));
    assert_eq!(
        write,
        upsert(&[
            (crm::MSDYN_COMPANY, text("USMF")),
            (crm::ACCOUNTNUMBER, text("US-001")),
            (crm::CREDITLIMIT, decimal("10000.50")),
            (crm::MSDYN_CUSTOMERGROUPID, text("g10")),
            (crm::MSDYN_ONHOLDSTATUS, Value::Integer(806_380_001)),
        ])
    );
    // An untouched lookup is not resolved, so a missing link elsewhere does not block.
    let write = the_write(one(
        "{}",
        change(
            Side::Crm,
            ChangeOp::Update,
            &crm_account(),
            &[crm::DESCRIPTION],
        ),
        &FakeHost::new(),
    ));
    assert_eq!(
        ids(&write),
        [erp::DATAAREAID, erp::CUSTOMERACCOUNT, erp::SALESMEMO]
    );
}

#[test]
fn update_of_unmapped_fields_has_no_effect() {
    // Every declared field is carried (the filter fields trigger the constants), so use
    // an id the map does not carry at all.
    let outcome = one(
        "{}",
        change(Side::Crm, ChangeOp::Update, &crm_account(), &[99]),
        &linked(),
    );
    assert_eq!(outcome, Outcome::Writes(Vec::new()));
}

#[test]
fn update_with_unknown_changes_or_a_key_change_is_carried_in_full() {
    for changed in [vec![], vec![erp::CUSTOMERACCOUNT]] {
        let write = the_write(one(
            "{}",
            change(Side::Erp, ChangeOp::Update, &erp_customer(), &changed),
            &linked(),
        ));
        assert_eq!(write.fields.len(), 25, "changed {changed:?}");
    }
}

#[test]
fn a_batch_gets_one_outcome_per_change_in_order() {
    let batch = [
        change(Side::Erp, ChangeOp::Insert, &erp_customer(), &[]),
        change(
            Side::Erp,
            ChangeOp::Insert,
            &with(erp_customer(), erp::PARTYTYPE, text("Person")),
            &[],
        ),
        change(
            Side::Erp,
            ChangeOp::Insert,
            &with(erp_customer(), erp::ONHOLDSTATUS, text("maybe")),
            &[],
        ),
        change(Side::Crm, ChangeOp::Delete, &crm_account(), &[]),
    ];
    let outcomes = run::<Customers>("{}", &batch, &linked()).unwrap();
    assert_eq!(outcomes.len(), 4);
    assert!(matches!(outcomes[0], Outcome::Writes(_)));
    assert_eq!(outcomes[1], Outcome::Filtered);
    assert!(matches!(outcomes[2], Outcome::Failed(_)));
    assert!(matches!(&outcomes[3], Outcome::Writes(w) if w[0].op == WriteOp::Delete));
}

// config

#[test]
fn valid_configs_are_accepted() {
    for config in [
        "{}",
        r#"{"companies": []}"#,
        r#"{"companies": ["USMF"], "resolve_lookups": false}"#,
        r#"{"resolve_lookups": true}"#,
    ] {
        assert!(Customers::default().configure(config).is_ok(), "{config}");
    }
}

#[test]
fn invalid_configs_name_the_offending_part() {
    let cases = [
        (r#"{"colour": "blue"}"#, "/colour"),
        (r#"{"a/b~c": 1}"#, "/a~1b~0c"),
        (r#"{"companies": "USMF"}"#, "/companies"),
        (r#"{"companies": null}"#, "/companies"),
        (r#"{"companies": ["USMF", 7]}"#, "/companies/1"),
        (r#"{"companies": [""]}"#, "/companies/0"),
        (r#"{"resolve_lookups": "no"}"#, "/resolve_lookups"),
        ("[]", ""),
        ("{", ""),
        ("", ""),
    ];
    for (config, path) in cases {
        let (got, message) = config_error(config);
        assert_eq!(got, path, "{config}: {message}");
        assert!(!message.is_empty());
    }
    let (_, message) = config_error(r#"{"colour": "blue"}"#);
    assert!(message.contains("colour"), "{message}");
}

#[test]
fn a_refused_config_leaves_the_previous_one() {
    let mut plugin = Customers::default();
    plugin.configure(r#"{"companies": ["DEMF"]}"#).unwrap();
    assert!(plugin.configure(r#"{"companies": 1}"#).is_err());
    let outcome = plugin.transform(
        &change(Side::Erp, ChangeOp::Insert, &erp_customer(), &[]),
        &linked(),
    );
    assert_eq!(outcome, Outcome::Filtered);
}
