//! Reading change sets, links and rows (JSON Lines), as documented in
//! `docs/change-sets.md`.
//!
//! Every error names the file, the line and the field, and what is wrong.

use std::fmt;

use serde_json::{Map, Value as Json};

use super::json_value::value_from_json;
use crate::change::{Change, ChangeOp, Descriptor, Side, Value};

/// The change-set format version this dualwrite reads and writes.
pub const CHANGE_SET_VERSION: u64 = 1;

/// A problem in an input file, with where it is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct FormatError {
    /// The file, as named by the user.
    pub file: String,
    /// The 1-based line number, when the problem is on one line.
    pub line: Option<usize>,
    /// The field on that line (`row.CREDITLIMIT`), when the problem is one field.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

struct LineContext<'a> {
    file: &'a str,
    line: usize,
}

impl LineContext<'_> {
    fn error(&self, field: Option<&str>, message: impl Into<String>) -> FormatError {
        FormatError {
            file: self.file.to_owned(),
            line: Some(self.line),
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }
}

/// The first line of a change set.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeSetHeader {
    /// The format version (1).
    pub version: u64,
    /// The map the changes were recorded for, if said.
    pub map: Option<String>,
}

/// One recorded change, with fields still by name (bound to ids by [`bind`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedChange {
    /// Where it is in the file (1-based).
    pub line: usize,
    /// An optional label, echoed in outputs.
    pub id: Option<String>,
    /// The side it was committed on.
    pub source: Side,
    /// The entity, if the recording says.
    pub entity: Option<String>,
    /// Insert, update or delete.
    pub op: ChangeOp,
    /// Field name to JSON value.
    pub row: Map<String, Json>,
    /// Changed field names, for updates.
    pub changed: Vec<String>,
}

/// A parsed change set.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeSet {
    /// Its file name, for messages.
    pub file: String,
    /// The header line.
    pub header: ChangeSetHeader,
    /// The changes, in file order.
    pub changes: Vec<RecordedChange>,
}

/// Non-empty lines with their 1-based numbers, each parsed as a JSON object.
fn json_lines<'a>(
    file: &'a str,
    text: &'a str,
) -> impl Iterator<Item = Result<(LineContext<'a>, Map<String, Json>), FormatError>> + 'a {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(move |(index, line)| {
            let context = LineContext {
                file,
                line: index + 1,
            };
            match serde_json::from_str::<Json>(line) {
                Ok(Json::Object(object)) => Ok((context, object)),
                Ok(_) => Err(context.error(None, "each line must be a JSON object")),
                Err(error) => Err(context.error(None, format!("not valid JSON: {error}"))),
            }
        })
}

fn take_str(
    context: &LineContext,
    object: &mut Map<String, Json>,
    field: &str,
    required: bool,
) -> Result<Option<String>, FormatError> {
    match object.remove(field) {
        Some(Json::String(text)) => Ok(Some(text)),
        Some(other) => Err(context.error(
            Some(field),
            format!("must be a string, found {}", json_kind(&other)),
        )),
        None if required => Err(context.error(Some(field), "is missing")),
        None => Ok(None),
    }
}

fn json_kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn parse_side(context: &LineContext, field: &str, text: &str) -> Result<Side, FormatError> {
    match text {
        "erp" => Ok(Side::Erp),
        "crm" => Ok(Side::Crm),
        other => Err(context.error(
            Some(field),
            format!("unknown side \"{other}\" (use \"erp\" or \"crm\")"),
        )),
    }
}

fn reject_unknown(
    context: &LineContext,
    object: &Map<String, Json>,
    known: &str,
) -> Result<(), FormatError> {
    match object.keys().next() {
        Some(key) => {
            Err(context.error(Some(key), format!("unknown field (known fields: {known})")))
        }
        None => Ok(()),
    }
}

/// Parses a change set: a header line, then one change per line.
pub fn parse_change_set(file: &str, text: &str) -> Result<ChangeSet, FormatError> {
    let mut lines = json_lines(file, text);
    let Some(first) = lines.next() else {
        return Err(FormatError {
            file: file.to_owned(),
            line: None,
            field: None,
            message: format!(
                "empty change set; the first line must be the header {{\"dualwrite\": \"change-set\", \"version\": {CHANGE_SET_VERSION}}}"
            ),
        });
    };
    let (context, mut object) = first?;
    let header = parse_header(&context, &mut object)?;
    let changes = lines
        .map(|line| {
            let (context, object) = line?;
            parse_change(&context, object)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ChangeSet {
        file: file.to_owned(),
        header,
        changes,
    })
}

fn parse_header(
    context: &LineContext,
    object: &mut Map<String, Json>,
) -> Result<ChangeSetHeader, FormatError> {
    match take_str(context, object, "dualwrite", false)?.as_deref() {
        Some("change-set") => {}
        Some(other) => {
            return Err(context.error(
                Some("dualwrite"),
                format!("this file is a \"{other}\", not a \"change-set\""),
            ));
        }
        None => {
            return Err(context.error(
                None,
                format!(
                    "the first line must be the header {{\"dualwrite\": \"change-set\", \"version\": {CHANGE_SET_VERSION}}}"
                ),
            ));
        }
    }
    let version = match object.remove("version") {
        Some(Json::Number(number)) => number.as_u64().unwrap_or(0),
        Some(other) => {
            return Err(context.error(
                Some("version"),
                format!("must be a number, found {}", json_kind(&other)),
            ));
        }
        None => return Err(context.error(Some("version"), "is missing")),
    };
    if version != CHANGE_SET_VERSION {
        return Err(context.error(
            Some("version"),
            format!("format version {version} is not supported (this dualwrite reads version {CHANGE_SET_VERSION})"),
        ));
    }
    let map = take_str(context, object, "map", false)?;
    object.remove("recorded_at");
    reject_unknown(context, object, "dualwrite, version, map, recorded_at")?;
    Ok(ChangeSetHeader { version, map })
}

fn parse_change(
    context: &LineContext,
    mut object: Map<String, Json>,
) -> Result<RecordedChange, FormatError> {
    let id = match object.remove("id") {
        None => None,
        Some(Json::String(id)) => Some(id),
        Some(Json::Number(number)) => Some(number.to_string()),
        Some(other) => {
            return Err(context.error(
                Some("id"),
                format!("must be a string or number, found {}", json_kind(&other)),
            ));
        }
    };
    let source_text = take_str(context, &mut object, "source", true)?.unwrap_or_default();
    let source = parse_side(context, "source", &source_text)?;
    let entity = take_str(context, &mut object, "entity", false)?;
    let op = match take_str(context, &mut object, "op", true)?.as_deref() {
        Some("insert") => ChangeOp::Insert,
        Some("update") => ChangeOp::Update,
        Some("delete") => ChangeOp::Delete,
        other => {
            return Err(context.error(
                Some("op"),
                format!(
                    "unknown op \"{}\" (use insert, update or delete)",
                    other.unwrap_or_default()
                ),
            ));
        }
    };
    let row = match object.remove("row") {
        Some(Json::Object(row)) => row,
        Some(other) => {
            return Err(context.error(
                Some("row"),
                format!(
                    "must be an object of field: value, found {}",
                    json_kind(&other)
                ),
            ));
        }
        None => return Err(context.error(Some("row"), "is missing")),
    };
    let changed = match object.remove("changed") {
        None => Vec::new(),
        Some(Json::Array(names)) => names
            .into_iter()
            .map(|name| match name {
                Json::String(name) => Ok(name),
                other => Err(context.error(
                    Some("changed"),
                    format!("must list field names, found {}", json_kind(&other)),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(context.error(
                Some("changed"),
                format!(
                    "must be an array of field names, found {}",
                    json_kind(&other)
                ),
            ));
        }
    };
    // Informational fields a recording may carry.
    object.remove("position");
    object.remove("committed_at");
    reject_unknown(
        context,
        &object,
        "id, source, entity, op, row, changed, position, committed_at",
    )?;
    Ok(RecordedChange {
        line: context.line,
        id,
        source,
        entity,
        op,
        row,
        changed,
    })
}

/// Binds a recorded change to the plugin's field ids: every field must be one the
/// plugin declares for the source side; fields not given are null.
pub fn bind(
    file: &str,
    recorded: &RecordedChange,
    descriptor: &Descriptor,
) -> Result<Change, FormatError> {
    let context = LineContext {
        file,
        line: recorded.line,
    };
    let spec = descriptor.entity(recorded.source);
    if let Some(entity) = &recorded.entity
        && entity != &spec.entity
    {
        return Err(context.error(
            Some("entity"),
            format!(
                "the plugin maps {} on the {} side, not {entity}",
                spec.entity, recorded.source
            ),
        ));
    }
    let mut row = vec![Value::Null; spec.fields.len()];
    for (name, json) in &recorded.row {
        let Some(id) = spec.id_of(name) else {
            return Err(context.error(
                Some(&format!("row.{name}")),
                format!(
                    "{} has no field {name} in the plugin's description (fields: {})",
                    spec.entity,
                    field_names(descriptor, recorded.source)
                ),
            ));
        };
        row[id as usize] = value_from_json(json)
            .map_err(|message| context.error(Some(&format!("row.{name}")), message))?;
    }
    let mut changed = recorded
        .changed
        .iter()
        .map(|name| {
            spec.id_of(name).ok_or_else(|| {
                context.error(
                    Some("changed"),
                    format!(
                        "{} has no field {name} in the plugin's description",
                        spec.entity
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    changed.sort_unstable();
    changed.dedup();
    Ok(Change {
        source: recorded.source,
        op: recorded.op,
        row,
        changed,
    })
}

fn field_names(descriptor: &Descriptor, side: Side) -> String {
    descriptor
        .entity(side)
        .fields
        .iter()
        .map(|field| field.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A recorded link: the row of `entity` on `side` with `key` is linked to the row with
/// `linked_key` (of `linked_entity`, if given) on the other side.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRecord {
    /// The side of `key`.
    pub side: Side,
    /// The entity on `side`.
    pub entity: String,
    /// Its key values.
    pub key: Vec<Value>,
    /// The linked row's entity on the other side, for reverse translation.
    pub linked_entity: Option<String>,
    /// The linked row's key values.
    pub linked_key: Vec<Value>,
}

/// A recorded row, for `read-row` lookups.
#[derive(Debug, Clone, PartialEq)]
pub struct RowRecord {
    /// The side it lives on.
    pub side: Side,
    /// Its entity.
    pub entity: String,
    /// Its key values.
    pub key: Vec<Value>,
    /// Its fields by name.
    pub fields: Vec<(String, Value)>,
}

fn skip_optional_header(
    context: &LineContext,
    object: &Map<String, Json>,
    kind: &str,
) -> Result<bool, FormatError> {
    match object.get("dualwrite") {
        None => Ok(false),
        Some(Json::String(found)) if found == kind => Ok(true),
        Some(other) => Err(context.error(
            Some("dualwrite"),
            format!("expected a \"{kind}\" header, found {other}"),
        )),
    }
}

fn take_values(
    context: &LineContext,
    object: &mut Map<String, Json>,
    field: &str,
) -> Result<Vec<Value>, FormatError> {
    match object.remove(field) {
        Some(Json::Array(values)) => values
            .iter()
            .enumerate()
            .map(|(index, json)| {
                value_from_json(json)
                    .map_err(|message| context.error(Some(&format!("{field}[{index}]")), message))
            })
            .collect(),
        Some(other) => Err(context.error(
            Some(field),
            format!(
                "must be an array of key values, found {}",
                json_kind(&other)
            ),
        )),
        None => Err(context.error(Some(field), "is missing")),
    }
}

/// Parses a links file: one [`LinkRecord`] per line, after an optional
/// `{"dualwrite": "links", "version": 1}` header.
pub fn parse_links(file: &str, text: &str) -> Result<Vec<LinkRecord>, FormatError> {
    let mut links = Vec::new();
    for line in json_lines(file, text) {
        let (context, mut object) = line?;
        if skip_optional_header(&context, &object, "links")? {
            continue;
        }
        let side_text = take_str(&context, &mut object, "side", true)?.unwrap_or_default();
        let side = parse_side(&context, "side", &side_text)?;
        let entity = take_str(&context, &mut object, "entity", true)?.unwrap_or_default();
        let key = take_values(&context, &mut object, "key")?;
        let linked_entity = take_str(&context, &mut object, "linked_entity", false)?;
        let linked_key = take_values(&context, &mut object, "linked_key")?;
        reject_unknown(
            &context,
            &object,
            "side, entity, key, linked_entity, linked_key",
        )?;
        links.push(LinkRecord {
            side,
            entity,
            key,
            linked_entity,
            linked_key,
        });
    }
    Ok(links)
}

/// Parses a rows file: one [`RowRecord`] per line, after an optional
/// `{"dualwrite": "rows", "version": 1}` header.
pub fn parse_rows(file: &str, text: &str) -> Result<Vec<RowRecord>, FormatError> {
    let mut rows = Vec::new();
    for line in json_lines(file, text) {
        let (context, mut object) = line?;
        if skip_optional_header(&context, &object, "rows")? {
            continue;
        }
        let side_text = take_str(&context, &mut object, "side", true)?.unwrap_or_default();
        let side = parse_side(&context, "side", &side_text)?;
        let entity = take_str(&context, &mut object, "entity", true)?.unwrap_or_default();
        let key = take_values(&context, &mut object, "key")?;
        let fields = match object.remove("row") {
            Some(Json::Object(row)) => row
                .iter()
                .map(|(name, json)| {
                    value_from_json(json)
                        .map(|value| (name.clone(), value))
                        .map_err(|message| context.error(Some(&format!("row.{name}")), message))
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(other) => {
                return Err(context.error(
                    Some("row"),
                    format!("must be an object, found {}", json_kind(&other)),
                ));
            }
            None => return Err(context.error(Some("row"), "is missing")),
        };
        reject_unknown(&context, &object, "side, entity, key, row")?;
        rows.push(RowRecord {
            side,
            entity,
            key,
            fields,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_set_needs_its_header() {
        let error = parse_change_set("c.jsonl", r#"{"source":"erp","op":"insert","row":{}}"#)
            .expect_err("no header");
        assert_eq!(error.line, Some(1));
        assert!(error.message.contains("header"), "{error}");
        let error = parse_change_set("c.jsonl", r#"{"dualwrite":"change-set","version":7}"#)
            .expect_err("future version");
        assert!(
            error.to_string().contains("version 7 is not supported"),
            "{error}"
        );
    }

    #[test]
    fn bad_lines_name_the_line_and_field() {
        let text = concat!(
            "{\"dualwrite\":\"change-set\",\"version\":1}\n",
            "{\"source\":\"erp\",\"op\":\"insert\",\"row\":{}}\n",
            "\n",
            "{\"source\":\"erp\",\"op\":\"upsert\",\"row\":{}}\n",
        );
        let error = parse_change_set("c.jsonl", text).expect_err("bad op");
        assert_eq!(
            error.to_string(),
            "c.jsonl:4: field `op`: unknown op \"upsert\" (use insert, update or delete)"
        );
        let text = "{\"dualwrite\":\"change-set\",\"version\":1}\n{\"source\":\"erp\",\"op\":\"insert\",\"row\":{},\"colour\":1}";
        let error = parse_change_set("c.jsonl", text).expect_err("unknown field");
        assert_eq!(error.line, Some(2));
        assert_eq!(error.field.as_deref(), Some("colour"));
        let error = parse_change_set(
            "c.jsonl",
            "{\"dualwrite\":\"change-set\",\"version\":1}\n{oops",
        )
        .expect_err("bad json");
        assert!(
            error.to_string().starts_with("c.jsonl:2: not valid JSON"),
            "{error}"
        );
    }

    #[test]
    fn links_and_rows_parse_with_or_without_header() {
        let links = parse_links(
            "l.jsonl",
            "{\"dualwrite\":\"links\",\"version\":1}\n{\"side\":\"erp\",\"entity\":\"G\",\"key\":[\"USMF\",\"10\"],\"linked_key\":[\"USMF\",\"10\"]}",
        )
        .expect("links");
        assert_eq!(links.len(), 1);
        assert_eq!(
            links[0].key,
            vec![Value::Text("USMF".into()), Value::Text("10".into())]
        );
        let rows = parse_rows(
            "r.jsonl",
            "{\"side\":\"crm\",\"entity\":\"accounts\",\"key\":[1],\"row\":{\"name\":\"A\"}}",
        )
        .expect("rows");
        assert_eq!(
            rows[0].fields,
            vec![("name".to_owned(), Value::Text("A".into()))]
        );
        let error = parse_rows("r.jsonl", "{\"side\":\"erp\",\"entity\":\"x\",\"key\":{}}")
            .expect_err("bad key");
        assert_eq!(error.field.as_deref(), Some("key"));
    }
}
