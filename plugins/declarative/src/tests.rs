//! Native tests of the declarative plugin: every feature of the config, and refusals of
//! bad configs naming the offending part.

use dualwrite_guest::testing::{FakeHost, config_path};
use dualwrite_guest::{
    Change, ChangeOp, Direction, ErrorKind, MapPlugin, Outcome, Side, Value, ValueKind, WriteOp,
};

use crate::Declarative;

/// A map of customer groups using every feature.
const GROUPS: &str = r#"{
  "name": "groups",
  "summary": "Customer groups, as data.",
  "erp": {"entity": "CustGroups", "key": ["DATAAREAID", "GROUPID"],
          "fields": [{"name": "BLOCKED", "kind": "text"}]},
  "crm": {"entity": "msdyn_groups", "key": ["msdyn_company", "msdyn_groupid"]},
  "company": {"erp": "DATAAREAID", "crm": "msdyn_company"},
  "fields": [
    {"erp": "DATAAREAID", "crm": "msdyn_company"},
    {"erp": "GROUPID", "crm": "msdyn_groupid"},
    {"erp": "DESCRIPTION", "crm": "msdyn_description"},
    {"erp": "NOTES", "crm": "msdyn_notes", "direction": "to-crm"},
    {"erp": "OWNER", "crm": "msdyn_owner", "direction": "to-erp"},
    {"erp": "TAXINCLUDED", "crm": "msdyn_taxincluded",
     "value_map": [{"erp": "no", "crm": false}, {"erp": "yes", "crm": true}]},
    {"erp": "STATUS", "crm": "msdyn_status",
     "value_map": [{"erp": "active", "crm": 806380000}, {"erp": "closed", "crm": 806380001}]},
    {"erp": "REGION", "crm": "msdyn_region", "default": "unknown"},
    {"erp": "CREDITLIMIT", "crm": "msdyn_creditlimit", "kind": "decimal", "default": "0.00"},
    {"crm": "msdyn_source", "constant": "ERP"},
    {"erp": "ORIGIN", "constant": "CRM"},
    {"erp": "PAYMENTTERMID", "crm": "msdyn_paymentterm",
     "lookup": {"map": "terms-of-payment", "erp_entity": "PaymentTerms",
                "crm_entity": "msdyn_paymentterms", "per_company": true}}
  ],
  "filters": {"erp": "BLOCKED != 'yes'", "crm": "msdyn_status != 806380001"},
  "depends_on": ["legal-entities"]
}"#;

fn plugin(config: &str) -> Declarative {
    let mut plugin = Declarative::default();
    plugin.configure(config).expect("config is valid");
    plugin
}

/// A change with fields by name (others null).
fn change(
    plugin: &Declarative,
    source: Side,
    op: ChangeOp,
    values: &[(&str, Value)],
    changed: &[&str],
) -> Change {
    let descriptor = plugin.describe();
    let entity = descriptor.entity(source);
    let mut row = vec![Value::Null; entity.fields.len()];
    for (name, value) in values {
        let id = entity
            .id_of(name)
            .unwrap_or_else(|| panic!("no field {name}"));
        row[id as usize] = value.clone();
    }
    let mut changed: Vec<u32> = changed
        .iter()
        .map(|name| entity.id_of(name).expect("changed field"))
        .collect();
    changed.sort_unstable();
    Change {
        source,
        op,
        row,
        changed,
    }
}

/// The writes of an outcome with fields by name.
fn writes(
    plugin: &Declarative,
    source: Side,
    outcome: Outcome,
) -> Vec<(WriteOp, Vec<(String, Value)>)> {
    let descriptor = plugin.describe();
    let target = descriptor.entity(source.other());
    match outcome {
        Outcome::Writes(writes) => writes
            .into_iter()
            .map(|write| {
                (
                    write.op,
                    write
                        .fields
                        .into_iter()
                        .map(|field| {
                            (
                                target.fields[field.field as usize].name.clone(),
                                field.value,
                            )
                        })
                        .collect(),
                )
            })
            .collect(),
        other => panic!("expected writes, got {other:?}"),
    }
}

fn fields(pairs: &[(&str, Value)]) -> Vec<(String, Value)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect()
}

fn host() -> FakeHost {
    FakeHost::new()
        .link(
            Side::Erp,
            "PaymentTerms",
            vec!["USMF".into(), "Net30".into()],
            vec!["USMF".into(), "Net30".into()],
        )
        .link(
            Side::Crm,
            "msdyn_paymentterms",
            vec!["USMF".into(), "Net30".into()],
            vec!["USMF".into(), "Net30".into()],
        )
}

fn erp_group(extra: &[(&str, Value)]) -> Vec<(&'static str, Value)> {
    let mut row: Vec<(&'static str, Value)> = vec![
        ("DATAAREAID", "USMF".into()),
        ("GROUPID", "10".into()),
        ("DESCRIPTION", "Wholesale".into()),
        ("NOTES", "internal".into()),
        ("OWNER", "erp-owner".into()),
        ("TAXINCLUDED", "Yes".into()),
        ("STATUS", "active".into()),
        ("REGION", "West".into()),
        ("CREDITLIMIT", Value::Decimal("1500.50".into())),
        ("ORIGIN", "ERP".into()),
        ("PAYMENTTERMID", "Net30".into()),
    ];
    for (name, value) in extra {
        row.retain(|(known, _)| known != name);
        let name: &'static str = Box::leak(name.to_string().into_boxed_str());
        row.push((name, value.clone()));
    }
    row
}

#[test]
fn an_erp_insert_carries_every_line_flowing_to_the_crm() {
    let plugin = plugin(GROUPS);
    let change = change(&plugin, Side::Erp, ChangeOp::Insert, &erp_group(&[]), &[]);
    let outcome = plugin.transform(&change, &host());
    assert_eq!(
        writes(&plugin, Side::Erp, outcome),
        vec![(
            WriteOp::Upsert,
            fields(&[
                ("msdyn_company", "USMF".into()),
                ("msdyn_groupid", "10".into()),
                ("msdyn_description", "Wholesale".into()),
                ("msdyn_notes", "internal".into()),
                ("msdyn_taxincluded", true.into()),
                ("msdyn_status", 806_380_000.into()),
                ("msdyn_region", "West".into()),
                ("msdyn_creditlimit", Value::Decimal("1500.50".into())),
                ("msdyn_source", "ERP".into()),
                ("msdyn_paymentterm", "Net30".into()),
            ])
        )],
        "OWNER flows to the ERP only, ORIGIN is the ERP's constant"
    );
}

#[test]
fn a_crm_insert_carries_the_lines_flowing_to_the_erp_and_maps_values_back() {
    let plugin = plugin(GROUPS);
    let change = change(
        &plugin,
        Side::Crm,
        ChangeOp::Insert,
        &[
            ("msdyn_company", "USMF".into()),
            ("msdyn_groupid", "20".into()),
            ("msdyn_description", "Retail".into()),
            ("msdyn_notes", "ignored".into()),
            ("msdyn_owner", "crm-owner".into()),
            ("msdyn_taxincluded", false.into()),
            ("msdyn_status", 806_380_000.into()),
            ("msdyn_paymentterm", "Net30".into()),
        ],
        &[],
    );
    let outcome = plugin.transform(&change, &host());
    assert_eq!(
        writes(&plugin, Side::Crm, outcome),
        vec![(
            WriteOp::Upsert,
            fields(&[
                ("DATAAREAID", "USMF".into()),
                ("GROUPID", "20".into()),
                ("DESCRIPTION", "Retail".into()),
                ("OWNER", "crm-owner".into()),
                ("TAXINCLUDED", "no".into()),
                ("STATUS", "active".into()),
                ("REGION", "unknown".into()),
                ("CREDITLIMIT", Value::Decimal("0.00".into())),
                ("ORIGIN", "CRM".into()),
                ("PAYMENTTERMID", "Net30".into()),
            ])
        )],
        "defaults fill null sources; notes flow to the CRM only"
    );
}

#[test]
fn an_update_carries_only_the_changed_lines_and_nothing_when_none_flows() {
    let plugin = plugin(GROUPS);
    let update = change(
        &plugin,
        Side::Erp,
        ChangeOp::Update,
        &erp_group(&[("DESCRIPTION", "Bulk".into())]),
        &["DESCRIPTION"],
    );
    assert_eq!(
        writes(&plugin, Side::Erp, plugin.transform(&update, &host())),
        vec![(
            WriteOp::Upsert,
            fields(&[
                ("msdyn_company", "USMF".into()),
                ("msdyn_groupid", "10".into()),
                ("msdyn_description", "Bulk".into()),
                ("msdyn_source", "ERP".into()),
            ])
        )]
    );
    let owner_only = change(
        &plugin,
        Side::Erp,
        ChangeOp::Update,
        &erp_group(&[]),
        &["OWNER"],
    );
    assert_eq!(
        plugin.transform(&owner_only, &host()),
        Outcome::Writes(Vec::new()),
        "OWNER does not flow to the CRM"
    );
}

#[test]
fn an_update_of_a_field_the_filter_reads_carries_the_whole_row() {
    let plugin = plugin(GROUPS);
    let unblocked = change(
        &plugin,
        Side::Erp,
        ChangeOp::Update,
        &erp_group(&[("BLOCKED", "no".into())]),
        &["BLOCKED"],
    );
    let written = writes(&plugin, Side::Erp, plugin.transform(&unblocked, &host()));
    assert_eq!(
        written[0].1.len(),
        10,
        "the row may have just entered the filter"
    );
}

#[test]
fn filters_exclude_changes_on_each_side() {
    let plugin = plugin(GROUPS);
    let blocked = change(
        &plugin,
        Side::Erp,
        ChangeOp::Insert,
        &erp_group(&[("BLOCKED", "yes".into())]),
        &[],
    );
    assert_eq!(plugin.transform(&blocked, &host()), Outcome::Filtered);
    let closed = change(
        &plugin,
        Side::Crm,
        ChangeOp::Insert,
        &[
            ("msdyn_company", "USMF".into()),
            ("msdyn_groupid", "20".into()),
            ("msdyn_status", 806_380_001.into()),
        ],
        &[],
    );
    assert_eq!(plugin.transform(&closed, &host()), Outcome::Filtered);
}

#[test]
fn a_delete_whose_old_row_is_unknown_passes_the_filter() {
    let plugin = plugin(GROUPS);
    let delete = change(
        &plugin,
        Side::Crm,
        ChangeOp::Delete,
        &[
            ("msdyn_company", "USMF".into()),
            ("msdyn_groupid", "20".into()),
        ],
        &[],
    );
    assert_eq!(
        writes(&plugin, Side::Crm, plugin.transform(&delete, &host())),
        vec![(
            WriteOp::Delete,
            fields(&[("DATAAREAID", "USMF".into()), ("GROUPID", "20".into())])
        )]
    );
}

#[test]
fn a_value_not_in_the_value_map_is_rejected_naming_the_field() {
    let plugin = plugin(GROUPS);
    let change = change(
        &plugin,
        Side::Erp,
        ChangeOp::Insert,
        &erp_group(&[("STATUS", "archived".into())]),
        &[],
    );
    let Outcome::Failed(error) = plugin.transform(&change, &host()) else {
        panic!("expected a rejection");
    };
    assert_eq!(error.kind, ErrorKind::Rejected);
    assert_eq!(
        error.message,
        "STATUS: \"archived\" is not in the value map (\"active\", \"closed\")"
    );
}

#[test]
fn a_lookup_not_linked_yet_is_dependency_missing() {
    let plugin = plugin(GROUPS);
    let change = change(
        &plugin,
        Side::Erp,
        ChangeOp::Insert,
        &erp_group(&[("PAYMENTTERMID", "Net10".into())]),
        &[],
    );
    let Outcome::Failed(error) = plugin.transform(&change, &host()) else {
        panic!("expected an error");
    };
    assert_eq!(error.kind, ErrorKind::DependencyMissing);
    assert_eq!(
        error.message,
        "PAYMENTTERMID: \"Net10\" of company USMF (PaymentTerms on the erp side) is not linked yet"
    );
}

#[test]
fn a_wrong_kind_is_rejected() {
    let plugin = plugin(GROUPS);
    let change = change(
        &plugin,
        Side::Erp,
        ChangeOp::Insert,
        &erp_group(&[("CREDITLIMIT", Value::Float(1.5))]),
        &[],
    );
    let Outcome::Failed(error) = plugin.transform(&change, &host()) else {
        panic!("expected a rejection");
    };
    assert_eq!(
        error.message,
        "CREDITLIMIT: expected decimal, got float 1.5"
    );
}

#[test]
fn describe_reports_the_entities_every_line_and_the_schema() {
    let descriptor = plugin(GROUPS).describe();
    assert_eq!(descriptor.name, "groups");
    let names: Vec<&str> = descriptor
        .erp
        .fields
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "DATAAREAID",
            "GROUPID",
            "DESCRIPTION",
            "NOTES",
            "OWNER",
            "TAXINCLUDED",
            "STATUS",
            "REGION",
            "CREDITLIMIT",
            "ORIGIN",
            "PAYMENTTERMID",
            "BLOCKED"
        ]
    );
    assert!(descriptor.erp.fields[0].key && descriptor.erp.fields[1].key);
    assert!(!descriptor.erp.fields[2].key);
    assert_eq!(descriptor.crm.fields[5].name, "msdyn_taxincluded");
    assert_eq!(descriptor.crm.fields[5].kind, ValueKind::Boolean);
    assert_eq!(descriptor.crm.fields[6].kind, ValueKind::Integer);
    assert_eq!(descriptor.erp.fields[8].kind, ValueKind::Decimal);
    assert_eq!(descriptor.mappings.len(), 12);
    let status = &descriptor.mappings[6];
    assert_eq!(
        status.transform,
        "value-map (\"active\" = 806380000, \"closed\" = 806380001)"
    );
    assert_eq!(descriptor.mappings[9].erp_field, None);
    assert_eq!(descriptor.mappings[9].direction, Direction::ToCrm);
    assert_eq!(descriptor.mappings[9].transform, "constant \"ERP\"");
    assert_eq!(
        descriptor.mappings[7].transform,
        "copy; default to crm \"unknown\"; default to erp \"unknown\""
    );
    assert_eq!(
        descriptor.mappings[11].transform,
        "lookup (terms-of-payment: PaymentTerms <-> msdyn_paymentterms, per company)"
    );
    assert_eq!(
        descriptor.depends_on,
        ["legal-entities", "terms-of-payment"]
    );
    let schema: serde_json::Value =
        serde_json::from_str(&descriptor.config_schema).expect("the schema is JSON");
    assert_eq!(
        schema["required"],
        serde_json::json!(["erp", "crm", "fields"])
    );
}

/// The path and message at which `config` is refused.
fn refusal(config: &str) -> (String, String) {
    let error = Declarative::default()
        .configure(config)
        .expect_err("config is refused");
    (error.path, error.message)
}

fn groups_with(from: &str, to: &str) -> String {
    assert!(GROUPS.contains(from), "{from}");
    GROUPS.replacen(from, to, 1)
}

#[test]
fn bad_configs_are_refused_naming_the_part_and_the_problem() {
    assert_eq!(config_path::<Declarative>("{}"), "");
    assert_eq!(refusal("[]").0, "");
    let (path, message) = refusal(&groups_with(
        r#"{"erp": "yes", "crm": true}"#,
        r#"{"erp": "yes", "crm": 1}"#,
    ));
    assert_eq!(path, "/fields/5/value_map/1/crm");
    assert_eq!(message, "1 is a number, not a boolean value");
    let (path, message) = refusal(&groups_with(
        r#"{"erp": "yes", "crm": true}"#,
        r#"{"erp": "NO", "crm": true}"#,
    ));
    assert_eq!(path, "/fields/5/value_map/1/erp");
    assert!(message.contains("is also in pair 0"), "{message}");
    let (path, message) = refusal(&groups_with("BLOCKED != 'yes'", "BLOCKED != 'yes' &&"));
    assert_eq!(path, "/filters/erp");
    assert!(
        message.starts_with("CEL syntax error at line 1, column"),
        "{message}"
    );
    let (path, message) = refusal(&groups_with("BLOCKED != 'yes'", "BLOKED != 'yes'"));
    assert_eq!(path, "/filters/erp");
    assert!(
        message.starts_with("\"BLOKED\" is not a field of this side"),
        "{message}"
    );
    let (path, message) = refusal(&groups_with(
        r#""direction": "to-crm""#,
        r#""direction": "up""#,
    ));
    assert_eq!(path, "/fields/3/direction");
    assert!(message.contains("unknown variant `up`"), "{message}");
    let (path, message) = refusal(&groups_with(
        r#""default": "unknown""#,
        r#""defualt": "unknown""#,
    ));
    assert_eq!(path, "/fields/7/defualt");
    assert!(message.starts_with("unknown field `defualt`"), "{message}");
    let (path, message) = refusal(&groups_with(r#""default": "0.00""#, r#""default": "zero""#));
    assert_eq!(path, "/fields/8/default");
    assert!(message.contains("\"zero\" is not a decimal"), "{message}");
    let (path, message) = refusal(&groups_with(
        r#"{"erp": "GROUPID", "crm": "msdyn_groupid"},"#,
        "",
    ));
    assert_eq!(path, "/crm/key/1");
    assert!(
        message.contains("key field msdyn_groupid is written by no line"),
        "{message}"
    );
    let (path, message) = refusal(&groups_with(
        r#"{"erp": "DESCRIPTION", "crm": "msdyn_description"}"#,
        r#"{"erp": "DESCRIPTION", "crm": "msdyn_region"}"#,
    ));
    assert_eq!(path, "/fields/7/crm");
    assert!(message.contains("written by fields[2] too"), "{message}");
    let (path, message) = refusal(&groups_with(
        r#"{"crm": "msdyn_source", "constant": "ERP"}"#,
        r#"{"erp": "SOURCE", "crm": "msdyn_source", "constant": "ERP"}"#,
    ));
    assert_eq!(path, "/fields/9");
    assert!(
        message.starts_with("a constant names only the field"),
        "{message}"
    );
}

#[test]
fn a_refused_config_leaves_the_previous_one_in_force() {
    let mut plugin = plugin(GROUPS);
    assert!(plugin.configure(r#"{"erp": 1}"#).is_err());
    assert_eq!(plugin.describe().name, "groups");
}

#[test]
fn without_resolve_lookups_lookups_are_copied_as_text() {
    let config = groups_with(
        r#""depends_on""#,
        r#""resolve_lookups": false, "depends_on""#,
    );
    let plugin = plugin(&config);
    let change = change(
        &plugin,
        Side::Erp,
        ChangeOp::Insert,
        &erp_group(&[("PAYMENTTERMID", "Net10".into())]),
        &[],
    );
    let written = writes(
        &plugin,
        Side::Erp,
        plugin.transform(&change, &FakeHost::new()),
    );
    assert!(
        written[0]
            .1
            .contains(&("msdyn_paymentterm".to_owned(), "Net10".into()))
    );
}

#[test]
fn filters_may_use_macros_with_their_own_variables() {
    let config = groups_with(
        "BLOCKED != 'yes'",
        "!['yes', 'hold'].exists(state, state == BLOCKED) && DESCRIPTION in ['Wholesale', 'Retail']",
    );
    let plugin = plugin(&config);
    let held = change(
        &plugin,
        Side::Erp,
        ChangeOp::Insert,
        &erp_group(&[("BLOCKED", "hold".into())]),
        &[],
    );
    assert_eq!(plugin.transform(&held, &host()), Outcome::Filtered);
    let open = change(&plugin, Side::Erp, ChangeOp::Insert, &erp_group(&[]), &[]);
    assert!(matches!(
        plugin.transform(&open, &host()),
        Outcome::Writes(_)
    ));
}

#[test]
fn a_filter_that_does_not_give_a_boolean_rejects_the_change() {
    let plugin = plugin(&groups_with("BLOCKED != 'yes'", "DESCRIPTION"));
    let change = change(&plugin, Side::Erp, ChangeOp::Insert, &erp_group(&[]), &[]);
    let Outcome::Failed(error) = plugin.transform(&change, &host()) else {
        panic!("expected a rejection");
    };
    assert_eq!(error.kind, ErrorKind::Rejected);
    assert!(
        error
            .message
            .starts_with("filters.erp: the filter \"DESCRIPTION\" gave"),
        "{}",
        error.message
    );
}

/// Sales orders whose customer is an account or a contact (a polymorphic lookup).
const ORDERS: &str = r#"{
  "name": "orders",
  "erp": {"entity": "SalesOrders", "key": ["DATAAREAID", "SALESORDERNUMBER"]},
  "crm": {"entity": "salesorders", "key": ["msdyn_company", "msdyn_salesordernumber"]},
  "company": {"erp": "DATAAREAID", "crm": "msdyn_company"},
  "fields": [
    {"erp": "DATAAREAID", "crm": "msdyn_company"},
    {"erp": "SALESORDERNUMBER", "crm": "msdyn_salesordernumber"},
    {"erp": "CUSTOMER", "crm": "customerid",
     "lookup": {"erp_entity": "Customers", "per_company": true, "type_field": "customeridtype",
                "maps": [{"map": "customers", "crm_entity": "accounts"},
                         {"map": "contacts", "crm_entity": "contacts"}]}},
    {"erp": "NAME", "crm": "name"}
  ]
}"#;

fn orders_with(from: &str, to: &str) -> String {
    assert!(ORDERS.contains(from), "{from}");
    ORDERS.replacen(from, to, 1)
}

#[test]
fn a_polymorphic_lookup_is_described_with_its_maps_and_type_field() {
    let descriptor = plugin(ORDERS).describe();
    let crm: Vec<(&str, ValueKind)> = descriptor
        .crm
        .fields
        .iter()
        .map(|field| (field.name.as_str(), field.kind))
        .collect();
    assert_eq!(
        crm,
        [
            ("msdyn_company", ValueKind::Text),
            ("msdyn_salesordernumber", ValueKind::Text),
            ("customerid", ValueKind::Text),
            ("customeridtype", ValueKind::Text),
            ("name", ValueKind::Text),
        ]
    );
    assert_eq!(descriptor.depends_on, ["customers", "contacts"]);
    assert_eq!(
        descriptor.mappings[2].transform,
        "polymorphic lookup (customers: Customers <-> accounts | contacts: Customers <-> contacts, per company; the CRM table in customeridtype)"
    );
}

#[test]
fn bad_polymorphic_lookups_are_refused_naming_the_part() {
    let cases = [
        (
            r#""type_field": "customeridtype","#,
            "",
            "/fields/2/lookup/type_field",
            "a polymorphic lookup needs type_field",
        ),
        (
            r#""type_field": "customeridtype""#,
            r#""type_field": "customerid""#,
            "/fields/2/lookup/type_field",
            "customerid is the lookup's own CRM field",
        ),
        (
            r#""type_field": "customeridtype""#,
            r#""type_field": "name""#,
            "/fields/3/crm",
            "name is written by fields[2] too",
        ),
        (
            r#""type_field": "customeridtype""#,
            r#""type_field": "msdyn_company""#,
            "/fields/2/lookup/type_field",
            "msdyn_company is a key field of the crm side",
        ),
        (
            r#"{"map": "contacts", "crm_entity": "contacts"}"#,
            r#"{"map": "contacts", "crm_entity": "ACCOUNTS"}"#,
            "/fields/2/lookup/maps/1/crm_entity",
            "ACCOUNTS is also the CRM entity of maps/0",
        ),
        (
            r#",
                         {"map": "contacts", "crm_entity": "contacts"}"#,
            "",
            "/fields/2/lookup/maps",
            "a polymorphic lookup points into at least two maps",
        ),
        (
            r#""erp_entity": "Customers", "#,
            "",
            "/fields/2/lookup/maps/0/erp_entity",
            "the target's ERP entity is not given",
        ),
        (
            r#""per_company": true,"#,
            r#""per_company": true, "crm_entity": "accounts","#,
            "/fields/2/lookup/crm_entity",
            "a polymorphic lookup names the crm_entity of each map",
        ),
    ];
    for (from, to, want_path, want_message) in cases {
        let (path, message) = refusal(&orders_with(from, to));
        assert_eq!(path, want_path, "{message}");
        assert!(message.starts_with(want_message), "{message}");
    }
    let (path, message) = refusal(&groups_with(
        r#""per_company": true}"#,
        r#""per_company": true, "type_field": "msdyn_type"}"#,
    ));
    assert_eq!(path, "/fields/11/lookup/type_field");
    assert!(message.contains("the lookup names one map"), "{message}");
    let (path, message) = refusal(&groups_with(r#""erp_entity": "PaymentTerms","#, ""));
    assert_eq!(path, "/fields/11/lookup");
    assert!(
        message.starts_with("missing field `erp_entity`"),
        "{message}"
    );
}

#[test]
fn a_polymorphic_lookup_writes_the_linked_table_and_reads_it_back() {
    let plugin = plugin(ORDERS);
    let text = |value: &str| Value::Text(value.to_owned());
    let host = FakeHost::new()
        .link(
            Side::Erp,
            "Customers",
            vec![text("USMF"), text("P-1")],
            vec![text("USMF"), text("CON-1")],
        )
        .link(
            Side::Crm,
            "contacts",
            vec![text("USMF"), text("CON-1")],
            vec![text("USMF"), text("P-1")],
        );
    let erp = change(
        &plugin,
        Side::Erp,
        ChangeOp::Insert,
        &[
            ("DATAAREAID", text("USMF")),
            ("SALESORDERNUMBER", text("SO-1")),
            ("CUSTOMER", text("P-1")),
        ],
        &[],
    );
    let written = writes(&plugin, Side::Erp, plugin.transform(&erp, &host));
    assert!(
        written[0]
            .1
            .contains(&("customeridtype".to_owned(), text("contacts"))),
        "{written:?}"
    );
    assert!(
        written[0]
            .1
            .contains(&("customerid".to_owned(), text("CON-1"))),
        "{written:?}"
    );
    let unlinked = change(
        &plugin,
        Side::Erp,
        ChangeOp::Insert,
        &[
            ("DATAAREAID", text("USMF")),
            ("SALESORDERNUMBER", text("SO-2")),
            ("CUSTOMER", text("P-2")),
        ],
        &[],
    );
    match plugin.transform(&unlinked, &host) {
        Outcome::Failed(error) => assert_eq!(error.kind, ErrorKind::DependencyMissing),
        other => panic!("{other:?}"),
    }
}
