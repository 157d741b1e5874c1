//! {{name}}: a dualwrite map plugin (a Wasm component of the world
//! `dualwrite:table-map/map-plugin@0.1.0`, see wit/table-map.wit).
//!
//! The sample map links customers of the ERP (`Customers`) with accounts of the CRM
//! (`accounts`), both ways:
//!
//! | ERP field (id)  | CRM field (id)     | how                                           |
//! |-----------------|--------------------|-----------------------------------------------|
//! | ACCOUNTNUM (0)  | accountnumber (0)  | the key, copied                               |
//! | NAME (1)        | name (1)           | copied                                        |
//! | BLOCKED (2)     | isactive (2)       | value map: `no` <-> true, `yes` <-> false     |
//!
//! Filter: accounts whose number starts with `TEST-` are test data and are not synced.
//! Updates carry only the fields that changed (field-level writes); deletes delete the
//! linked row. The map takes no options: its config must be `{}`.
//!
//! Change the entities, fields and rules to your own; `cases/` holds a change set with
//! the outcomes this map gives (rerun `dualwrite replay ... --bless` after a change and
//! review the diff).

wit_bindgen::generate!({
    path: "wit",
    world: "dualwrite:table-map/map-plugin@0.1.0",
});

use dualwrite::table_map::types::{
    Change, ChangeOp, ConfigError, Descriptor, Direction, EntitySpec, ErrorKind, FieldMapping,
    FieldSpec, FieldValue, Outcome, PluginError, Side, Value, ValueKind, Write, WriteOp,
};
use exports::dualwrite::table_map::plugin::Guest;

/// The plugin's name, as `dualwrite plugin check` shows it.
const NAME: &str = "{{name}}";
const ERP_ENTITY: &str = "Customers";
const CRM_ENTITY: &str = "accounts";
/// Field names in field-id order, both sides: the key, the name, the blocked flag.
const ERP_FIELDS: [&str; 3] = ["ACCOUNTNUM", "NAME", "BLOCKED"];
const CRM_FIELDS: [&str; 3] = ["accountnumber", "name", "isactive"];
const KEY: u32 = 0;
const FULL_NAME: u32 = 1;
const BLOCKED: u32 = 2;
/// Accounts whose number starts with this are not synced.
const TEST_PREFIX: &str = "TEST-";

const CONFIG_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Map config",
  "description": "This map takes no options.",
  "type": "object",
  "additionalProperties": false
}"#;

struct Plugin;

impl Guest for Plugin {
    fn configure(config: String) -> Result<(), ConfigError> {
        let inner = config.trim_matches(json_space);
        let empty_object = inner
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
            .is_some_and(|between| between.trim_matches(json_space).is_empty());
        if empty_object {
            Ok(())
        } else {
            Err(ConfigError {
                path: String::new(),
                message: "this map takes no options; the config must be {}".to_owned(),
            })
        }
    }

    fn describe() -> Descriptor {
        let fields = |names: [&str; 3], blocked_kind| {
            names
                .iter()
                .enumerate()
                .map(|(id, name)| FieldSpec {
                    name: (*name).to_owned(),
                    kind: if id == BLOCKED as usize {
                        blocked_kind
                    } else {
                        ValueKind::Text
                    },
                    key: id == KEY as usize,
                })
                .collect()
        };
        let mapping = |id: u32, transform: &str| FieldMapping {
            erp_field: Some(ERP_FIELDS[id as usize].to_owned()),
            crm_field: Some(CRM_FIELDS[id as usize].to_owned()),
            direction: Direction::Both,
            transform: transform.to_owned(),
        };
        Descriptor {
            name: NAME.to_owned(),
            version: "0.1.0".to_owned(),
            summary: "Syncs ERP Customers with CRM accounts both ways (a template map)."
                .to_owned(),
            erp: EntitySpec {
                entity: ERP_ENTITY.to_owned(),
                fields: fields(ERP_FIELDS, ValueKind::Text),
            },
            crm: EntitySpec {
                entity: CRM_ENTITY.to_owned(),
                fields: fields(CRM_FIELDS, ValueKind::Boolean),
            },
            mappings: vec![
                mapping(KEY, "copy"),
                mapping(FULL_NAME, "copy"),
                mapping(BLOCKED, "value-map"),
            ],
            depends_on: Vec::new(),
            config_schema: CONFIG_SCHEMA.to_owned(),
        }
    }

    fn transform(batch: Vec<Change>) -> Vec<Outcome> {
        batch
            .into_iter()
            .map(|change| transform_one(change).unwrap_or_else(|error| Outcome::Failed(error)))
            .collect()
    }
}

export!(Plugin);

fn json_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn field_name(side: Side, id: u32) -> &'static str {
    match side {
        Side::Erp => ERP_FIELDS[id as usize],
        Side::Crm => CRM_FIELDS[id as usize],
    }
}

fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Boolean(_) => "boolean",
        Value::Integer(_) => "integer",
        Value::Float(_) => "float",
        Value::Decimal(_) => "decimal",
        Value::Text(_) => "text",
        Value::Timestamp(_) => "timestamp",
        Value::Date(_) => "date",
        Value::Bytes(_) => "bytes",
        Value::Json(_) => "json",
    }
}

fn rejected(side: Side, id: u32, problem: &str) -> PluginError {
    PluginError {
        kind: ErrorKind::Rejected,
        message: format!("{}: {problem}", field_name(side, id)),
        field: Some(id),
    }
}

fn wrong_kind(side: Side, id: u32, expected: &str, value: &Value) -> PluginError {
    rejected(
        side,
        id,
        &format!("expected {expected}, got {}", kind_name(value)),
    )
}

fn transform_one(change: Change) -> Result<Outcome, PluginError> {
    let source = change.source;
    let at = |id: u32| change.row.get(id as usize).cloned().unwrap_or(Value::Null);
    let key = match at(KEY) {
        Value::Text(key) if !key.is_empty() => key,
        Value::Text(_) => return Err(rejected(source, KEY, "key field is empty")),
        Value::Null => return Err(rejected(source, KEY, "key field is null")),
        other => return Err(wrong_kind(source, KEY, "text", &other)),
    };
    if key.starts_with(TEST_PREFIX) {
        return Ok(Outcome::Filtered);
    }
    let mut fields = vec![FieldValue {
        field: KEY,
        value: Value::Text(key),
    }];
    if change.op == ChangeOp::Delete {
        return Ok(Outcome::Writes(vec![Write {
            op: WriteOp::Delete,
            fields,
        }]));
    }
    // An update names the fields that changed; empty means "maybe all".
    let touched = |id: u32| {
        change.op != ChangeOp::Update || change.changed.is_empty() || change.changed.contains(&id)
    };
    let full = touched(KEY);
    if full || touched(FULL_NAME) {
        let value = match at(FULL_NAME) {
            value @ (Value::Null | Value::Text(_)) => value,
            other => return Err(wrong_kind(source, FULL_NAME, "text", &other)),
        };
        fields.push(FieldValue {
            field: FULL_NAME,
            value,
        });
    }
    if full || touched(BLOCKED) {
        let value = match (source, at(BLOCKED)) {
            (_, Value::Null) => Value::Null,
            // ERP BLOCKED no/yes (any ASCII case) -> CRM isactive true/false.
            (Side::Erp, Value::Text(text)) if text.eq_ignore_ascii_case("no") => {
                Value::Boolean(true)
            }
            (Side::Erp, Value::Text(text)) if text.eq_ignore_ascii_case("yes") => {
                Value::Boolean(false)
            }
            (Side::Erp, Value::Text(text)) => {
                return Err(rejected(
                    source,
                    BLOCKED,
                    &format!("\"{text}\" is not in the value map (no, yes)"),
                ));
            }
            (Side::Erp, other) => return Err(wrong_kind(source, BLOCKED, "text", &other)),
            // CRM isactive true/false -> ERP BLOCKED no/yes.
            (Side::Crm, Value::Boolean(active)) => {
                Value::Text(if active { "no" } else { "yes" }.to_owned())
            }
            (Side::Crm, other) => return Err(wrong_kind(source, BLOCKED, "a boolean", &other)),
        };
        fields.push(FieldValue {
            field: BLOCKED,
            value,
        });
    }
    if fields.len() == 1 {
        // Only fields this map does not carry changed.
        return Ok(Outcome::Writes(Vec::new()));
    }
    Ok(Outcome::Writes(vec![Write {
        op: WriteOp::Upsert,
        fields,
    }]))
}
