use super::*;
use crate::testing::FakeHost;
use crate::{ErrorKind, PluginError};

static ERP_FIELDS: [FieldDef; 8] = [
    key("COMPANY"),
    key("CODE"),
    field("AMOUNT", ValueKind::Decimal),
    field("ACTIVE", ValueKind::Text),
    field("STATUS", ValueKind::Text),
    field("GROUP", ValueKind::Text),
    field("PARENT", ValueKind::Text),
    field("TYPE", ValueKind::Text),
];

static CRM_FIELDS: [FieldDef; 8] = [
    key("company"),
    key("code"),
    field("amount", ValueKind::Decimal),
    field("active", ValueKind::Boolean),
    field("status", ValueKind::Integer),
    field("group", ValueKind::Text),
    field("parent", ValueKind::Text),
    field("kind", ValueKind::Integer),
];

static STATUS: [(&str, i64); 2] = [("open", 10), ("closed", 20)];

static GROUPS: Target = Target {
    what: "group",
    erp_entity: "Groups",
    crm_entity: "groups",
    per_company: true,
};

static THINGS: Target = Target {
    what: "parent",
    erp_entity: "Things",
    crm_entity: "things",
    per_company: true,
};

static LINES: [Line; 8] = [
    both(1, 1, Carry::Key),
    both(2, 2, Carry::Copy),
    both(3, 3, Carry::YesNo),
    both(4, 4, Carry::OptionSet(&STATUS)),
    both(5, 5, Carry::Lookup(&GROUPS)),
    both(6, 6, Carry::OwnLookup(&THINGS)),
    to_crm(7, 7, Carry::Constant(Constant::Integer(3))),
    to_erp(7, 7, Carry::ShownConstant(Constant::Text("thing"))),
];

static TABLE: Table = Table {
    erp_entity: "Things",
    crm_entity: "things",
    erp: &ERP_FIELDS,
    crm: &CRM_FIELDS,
    erp_key: KeyFields::company_code(0, 1),
    crm_key: KeyFields::company_code(0, 1),
    lines: &LINES,
};

static CODES_ERP: [FieldDef; 2] = [key("CODE"), field("NAME", ValueKind::Text)];
static CODES_CRM: [FieldDef; 2] = [key("code"), field("name", ValueKind::Text)];
static CODES_LINES: [Line; 2] = [to_crm(0, 0, Carry::Key), to_crm(1, 1, Carry::Copy)];
static CODES: Table = Table {
    erp_entity: "Codes",
    crm_entity: "codes",
    erp: &CODES_ERP,
    crm: &CODES_CRM,
    erp_key: KeyFields::code(0),
    crm_key: KeyFields::code(0),
    lines: &CODES_LINES,
};

fn change(source: Side, op: ChangeOp, row: Vec<Value>, changed: &[FieldId]) -> Change {
    Change {
        source,
        op,
        row,
        changed: changed.to_vec(),
    }
}

fn erp_row() -> Vec<Value> {
    vec![
        "USMF".into(),
        "T1".into(),
        Value::Decimal("1.50".into()),
        "Yes".into(),
        "OPEN".into(),
        "G1".into(),
        "t1".into(),
        "thing".into(),
    ]
}

fn run(table: &Table, change: &Change, host: &FakeHost, config: &CommonConfig) -> Outcome {
    match table.row_key(change) {
        Ok(key) => table.carry(change, &key, host, config),
        Err(failed) => failed,
    }
}

fn failure(outcome: Outcome) -> (ErrorKind, String, Option<FieldId>) {
    match outcome {
        Outcome::Failed(PluginError {
            kind,
            message,
            field,
        }) => (kind, message, field),
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn linked_host() -> FakeHost {
    FakeHost::new().link(
        Side::Erp,
        "Groups",
        vec!["USMF".into(), "G1".into()],
        vec!["USMF".into(), "g-1".into()],
    )
}

#[test]
fn insert_carries_every_line_that_flows_this_way() {
    let insert = change(Side::Erp, ChangeOp::Insert, erp_row(), &[]);
    let outcome = run(&TABLE, &insert, &linked_host(), &CommonConfig::new());
    assert_eq!(
        outcome,
        Outcome::write(
            Write::upsert()
                .set(0, "USMF")
                .set(1, "T1")
                .set(2, Value::Decimal("1.50".into()))
                .set(3, true)
                .set(4, 10)
                .set(5, "g-1")
                .set(6, "T1")
                .set(7, 3)
        )
    );
}

#[test]
fn crm_insert_maps_values_back_and_writes_the_other_constant() {
    let row = vec![
        "USMF".into(),
        "T1".into(),
        Value::Null,
        false.into(),
        Value::Integer(20),
        Value::Null,
        "".into(),
        Value::Integer(3),
    ];
    let insert = change(Side::Crm, ChangeOp::Insert, row, &[]);
    let outcome = run(&TABLE, &insert, &FakeHost::new(), &CommonConfig::new());
    assert_eq!(
        outcome,
        Outcome::write(
            Write::upsert()
                .set(0, "USMF")
                .set(1, "T1")
                .set(2, Value::Null)
                .set(3, "no")
                .set(4, "closed")
                .set(5, Value::Null)
                .set(6, Value::Null)
                .set(7, "thing")
        )
    );
}

#[test]
fn update_carries_touched_lines_only_and_nothing_when_none_flow() {
    let update = change(Side::Erp, ChangeOp::Update, erp_row(), &[2]);
    assert_eq!(
        run(&TABLE, &update, &FakeHost::new(), &CommonConfig::new()),
        Outcome::write(
            Write::upsert()
                .set(0, "USMF")
                .set(1, "T1")
                .set(2, Value::Decimal("1.50".into()))
        )
    );
    let untouched = change(Side::Erp, ChangeOp::Update, erp_row(), &[9]);
    assert_eq!(
        run(&TABLE, &untouched, &FakeHost::new(), &CommonConfig::new()),
        Outcome::Writes(Vec::new())
    );
}

#[test]
fn entered_filter_and_key_changes_carry_the_whole_row() {
    let update = change(Side::Erp, ChangeOp::Update, erp_row(), &[2]);
    let key = TABLE.row_key(&update).unwrap();
    let Outcome::Writes(writes) =
        TABLE.upsert(&update, &key, &linked_host(), &CommonConfig::new(), true)
    else {
        panic!("expected writes")
    };
    assert_eq!(writes[0].fields.len(), 8);
    let rekey = change(Side::Erp, ChangeOp::Update, erp_row(), &[0]);
    let Outcome::Writes(writes) = run(&TABLE, &rekey, &linked_host(), &CommonConfig::new()) else {
        panic!("expected writes")
    };
    assert_eq!(writes[0].fields.len(), 8);
}

#[test]
fn delete_writes_the_key() {
    let delete = change(
        Side::Crm,
        ChangeOp::Delete,
        vec!["USMF".into(), "T1".into()],
        &[],
    );
    assert_eq!(
        run(&TABLE, &delete, &FakeHost::new(), &CommonConfig::new()),
        Outcome::write(Write::delete().set(0, "USMF").set(1, "T1"))
    );
}

#[test]
fn bad_keys_and_values_are_rejected_naming_the_field() {
    let host = FakeHost::new();
    let config = CommonConfig::new();
    let mut row = erp_row();
    row[0] = Value::Null;
    let (kind, message, field) = failure(run(
        &TABLE,
        &change(Side::Erp, ChangeOp::Insert, row, &[]),
        &host,
        &config,
    ));
    assert_eq!(
        (kind, message.as_str(), field),
        (ErrorKind::Rejected, "COMPANY: key field is null", Some(0))
    );
    let mut row = erp_row();
    row[1] = "".into();
    let (_, message, _) = failure(run(
        &TABLE,
        &change(Side::Erp, ChangeOp::Insert, row, &[]),
        &host,
        &config,
    ));
    assert_eq!(message, "CODE: key field is empty");
    let mut row = erp_row();
    row[2] = Value::Float(0.5);
    let (_, message, field) = failure(run(
        &TABLE,
        &change(Side::Erp, ChangeOp::Update, row, &[2]),
        &host,
        &config,
    ));
    assert_eq!(
        (message.as_str(), field),
        (
            "AMOUNT: 0.5 is a float; money must be an exact decimal",
            Some(2)
        )
    );
    let mut row = erp_row();
    row[3] = "maybe".into();
    let (_, message, _) = failure(run(
        &TABLE,
        &change(Side::Erp, ChangeOp::Update, row, &[3]),
        &host,
        &config,
    ));
    assert_eq!(
        message,
        "ACTIVE: \"maybe\" is not in the value map (no, yes)"
    );
    let mut row = erp_row();
    row[4] = Value::Integer(10);
    let (_, message, _) = failure(run(
        &TABLE,
        &change(Side::Erp, ChangeOp::Update, row, &[4]),
        &host,
        &config,
    ));
    assert_eq!(message, "STATUS: expected text, got integer 10");
    let row = vec![
        "USMF".into(),
        "T1".into(),
        Value::Null,
        Value::Null,
        Value::Integer(11),
    ];
    let (_, message, _) = failure(run(
        &TABLE,
        &change(Side::Crm, ChangeOp::Update, row, &[4]),
        &host,
        &config,
    ));
    assert_eq!(message, "status: 11 is not in the value map (10, 20)");
}

#[test]
fn lookups_are_translated_or_fail_by_kind() {
    let config = CommonConfig::new();
    let update = change(Side::Erp, ChangeOp::Update, erp_row(), &[5]);
    let (kind, message, field) = failure(run(&TABLE, &update, &FakeHost::new(), &config));
    assert_eq!(
        (kind, message.as_str(), field),
        (
            ErrorKind::DependencyMissing,
            "GROUP: group \"G1\" of company USMF (Groups on the erp side) is not linked yet",
            Some(5)
        )
    );
    let offline = FakeHost::new().unavailable("ERP offline");
    let (kind, message, _) = failure(run(&TABLE, &update, &offline, &config));
    assert_eq!(
        (kind, message.as_str()),
        (
            ErrorKind::Transient,
            "GROUP: could not look up group \"G1\" of company USMF (Groups): ERP offline"
        )
    );
    let empty = FakeHost::new().link(
        Side::Erp,
        "Groups",
        vec!["USMF".into(), "G1".into()],
        Vec::new(),
    );
    let (kind, message, _) = failure(run(&TABLE, &update, &empty, &config));
    assert_eq!(
        (kind, message.as_str()),
        (
            ErrorKind::Rejected,
            "GROUP: the host translated group \"G1\" of company USMF (Groups) to an empty key"
        )
    );
    let as_text = ConfigOptions::STANDARD
        .parse(r#"{"resolve_lookups": false}"#)
        .unwrap();
    assert_eq!(
        run(&TABLE, &update, &FakeHost::new(), &as_text),
        Outcome::write(Write::upsert().set(0, "USMF").set(1, "T1").set(5, "G1"))
    );
    // A row that is its own parent needs no link; another parent does.
    let own = change(Side::Erp, ChangeOp::Update, erp_row(), &[6]);
    assert_eq!(
        run(&TABLE, &own, &FakeHost::new(), &config),
        Outcome::write(Write::upsert().set(0, "USMF").set(1, "T1").set(6, "T1"))
    );
    let mut row = erp_row();
    row[6] = "T2".into();
    let other = change(Side::Erp, ChangeOp::Update, row, &[6]);
    let (kind, _, field) = failure(run(&TABLE, &other, &FakeHost::new(), &config));
    assert_eq!((kind, field), (ErrorKind::DependencyMissing, Some(6)));
}

#[test]
fn a_one_way_table_keyed_by_code_ignores_the_other_side() {
    let host = FakeHost::new();
    let config = CommonConfig::new();
    let insert = change(
        Side::Erp,
        ChangeOp::Insert,
        vec!["A".into(), "Aa".into()],
        &[],
    );
    assert_eq!(
        run(&CODES, &insert, &host, &config),
        Outcome::write(Write::upsert().set(0, "A").set(1, "Aa"))
    );
    let delete = change(Side::Erp, ChangeOp::Delete, vec!["A".into()], &[]);
    assert_eq!(
        run(&CODES, &delete, &host, &config),
        Outcome::write(Write::delete().set(0, "A"))
    );
    for op in [ChangeOp::Insert, ChangeOp::Update, ChangeOp::Delete] {
        let back = change(Side::Crm, op, vec!["A".into(), "Aa".into()], &[]);
        assert_eq!(
            run(&CODES, &back, &host, &config),
            Outcome::Writes(Vec::new())
        );
    }
    let key = CODES.row_key(&insert).unwrap();
    assert_eq!((key.company(), key.code_text()), (None, "A"));
    assert!(config.syncs(&key));
}

#[test]
fn describe_renders_the_table() {
    let descriptor = TABLE.describe(Descriptor::new("things", "1.0.0", "Things."));
    assert_eq!(descriptor.erp.entity, "Things");
    assert_eq!(descriptor.crm.fields.len(), 8);
    assert!(descriptor.crm.fields[1].key && !descriptor.crm.fields[2].key);
    let mappings: Vec<(Option<&str>, Option<&str>, Direction, &str)> = descriptor
        .mappings
        .iter()
        .map(|m| {
            (
                m.erp_field.as_deref(),
                m.crm_field.as_deref(),
                m.direction,
                m.transform.as_str(),
            )
        })
        .collect();
    assert_eq!(
        mappings[3..],
        [
            (Some("STATUS"), Some("status"), Direction::Both, "value-map"),
            (Some("GROUP"), Some("group"), Direction::Both, "lookup"),
            (Some("PARENT"), Some("parent"), Direction::Both, "lookup"),
            (None, Some("kind"), Direction::ToCrm, "constant"),
            (Some("TYPE"), None, Direction::ToErp, "constant thing"),
        ]
    );
    assert_eq!(
        Carry::Unlinked("Payment days").describe(),
        "copy (lookup to Payment days, a map outside the standard pack: the key is carried as plain text)"
    );
}

#[test]
fn config_parses_the_standard_options() {
    let config = ConfigOptions::STANDARD
        .parse(r#"{"companies": ["USMF", "demf"], "resolve_lookups": false}"#)
        .unwrap();
    assert_eq!(config.companies(), ["USMF", "demf"]);
    assert!(!config.resolve_lookups());
    assert!(config.syncs_company("DEMF") && !config.syncs_company("FRRT"));
    assert_eq!(
        ConfigOptions::STANDARD.parse("{}").unwrap(),
        CommonConfig::default()
    );
    assert!(CommonConfig::new().syncs_company("ANY"));
}

#[test]
fn config_errors_name_the_part_by_json_pointer() {
    let error = |options: ConfigOptions, text: &str| {
        let error = options.parse(text).unwrap_err();
        (error.path, error.message)
    };
    let standard = ConfigOptions::STANDARD;
    assert_eq!(
        error(standard, "[]").1,
        "must be a JSON object, not an array"
    );
    assert!(error(standard, "{").1.starts_with("not valid JSON: "));
    assert_eq!(
        error(standard, r#"{"companies": "USMF"}"#),
        (
            "/companies".to_owned(),
            "must be an array of company codes, not a string".to_owned()
        )
    );
    assert_eq!(
        error(standard, r#"{"companies": ["A", ""]}"#),
        (
            "/companies/1".to_owned(),
            "a company code must not be empty".to_owned()
        )
    );
    assert_eq!(
        error(standard, r#"{"companies": [1]}"#).1,
        "a company code must be a string, not a number"
    );
    assert_eq!(
        error(standard, r#"{"resolve_lookups": "no"}"#),
        (
            "/resolve_lookups".to_owned(),
            "must be true or false, not a string".to_owned()
        )
    );
    assert_eq!(
        error(standard, r#"{"a/b~": 1}"#),
        (
            "/a~1b~0".to_owned(),
            r#"unknown option "a/b~"; the options are "companies" and "resolve_lookups""#
                .to_owned()
        )
    );
    let companies = ConfigOptions {
        companies: Some("Codes."),
        ..ConfigOptions::NONE
    };
    assert_eq!(
        error(companies, r#"{"resolve_lookups": true}"#).1,
        r#"unknown option "resolve_lookups"; the only option is "companies""#
    );
    assert_eq!(
        error(ConfigOptions::NONE, r#"{"companies": []}"#).1,
        r#"unknown option "companies"; this map has no options (use {})"#
    );
}

#[test]
fn schema_is_json_schema_for_the_accepted_options() {
    let standard: serde_json::Value =
        serde_json::from_str(&ConfigOptions::STANDARD.schema()).unwrap();
    assert_eq!(standard["additionalProperties"], false);
    assert_eq!(
        standard["properties"]["companies"]["description"],
        ConfigOptions::COMPANIES
    );
    assert_eq!(standard["properties"]["resolve_lookups"]["default"], true);
    let none = ConfigOptions {
        description: Some("No \"options\"."),
        ..ConfigOptions::NONE
    };
    let none: serde_json::Value = serde_json::from_str(&none.schema()).unwrap();
    assert_eq!(none["description"], "No \"options\".");
    assert_eq!(none["properties"], serde_json::json!({}));
    assert!(ConfigOptions::STANDARD.schema().starts_with(
        "{\n  \"$schema\": \"https://json-schema.org/draft/2020-12/schema\",\n  \"title\": \"Map config\",\n  \"type\": \"object\",\n  \"properties\": {\n    \"companies\": {\n"
    ));
}

#[test]
fn transform_filters_by_company_after_checking_the_key() {
    let config = ConfigOptions::STANDARD
        .parse(r#"{"companies": ["demf"]}"#)
        .unwrap();
    let host = linked_host();
    let usmf = change(Side::Erp, ChangeOp::Insert, erp_row(), &[]);
    assert_eq!(TABLE.transform(&usmf, &host, &config), Outcome::Filtered);
    let mut row = erp_row();
    row[0] = "DEMF".into();
    let demf = change(Side::Erp, ChangeOp::Update, row, &[2]);
    assert_eq!(
        TABLE.transform(&demf, &host, &config),
        Outcome::write(
            Write::upsert()
                .set(0, "DEMF")
                .set(1, "T1")
                .set(2, Value::Decimal("1.50".into()))
        )
    );
    let mut row = erp_row();
    row[1] = Value::Integer(1);
    let (kind, message, _) = failure(TABLE.transform(
        &change(Side::Erp, ChangeOp::Insert, row, &[]),
        &host,
        &config,
    ));
    assert_eq!(
        (kind, message.as_str()),
        (ErrorKind::Rejected, "CODE: expected text, got integer 1")
    );
}

#[test]
fn schema_descriptions_are_escaped_as_serde_json_writes_them() {
    for text in [
        "plain",
        "quote \" backslash \\ slash /",
        "controls \n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}",
        "unicode é € 🦀",
    ] {
        let mut escaped = String::new();
        config::push_json_string(&mut escaped, text);
        assert_eq!(
            escaped,
            serde_json::Value::from(text).to_string(),
            "{text:?}"
        );
    }
}
