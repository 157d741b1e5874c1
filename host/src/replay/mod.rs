//! Replaying recorded change sets through a plugin, with no database.
//!
//! Changes come in as a change set (`format.rs`, documented in `docs/change-sets.md`);
//! the plugin's lookups are answered from recorded links and rows
//! ([`RecordedLookups`]); each change's result leaves as one JSON record
//! ([`result_record`]). [`compare`] diffs two record lists, for `--expect` (expected vs
//! actual) and `--against` (old plugin vs new). `dualwrite replay` and the data-driven
//! test cases of `tests/cases` both run through [`replay`]; [`record`] writes the
//! engine's recorded traffic as a change set.

mod format;
mod json_value;
pub mod record;
pub mod self_test;

use serde_json::{Map, Value as Json, json};

pub use format::{
    CHANGE_SET_VERSION, ChangeSet, ChangeSetHeader, FormatError, LinkRecord, RecordedChange,
    RowRecord, bind, parse_change_set, parse_links, parse_rows,
};
pub use json_value::{check_decimal, value_from_json, value_to_json};

use crate::change::{Descriptor, HostError, Side, Value, Write};
use crate::plugin::{Lookups, MapPluginRunner, TransformResult};

/// Answers a plugin's lookups from recorded links and rows.
#[derive(Debug, Clone, Default)]
pub struct RecordedLookups {
    links: Vec<LinkRecord>,
    rows: Vec<RowRecord>,
}

impl RecordedLookups {
    /// Lookups over these links and rows.
    pub fn new(links: Vec<LinkRecord>, rows: Vec<RowRecord>) -> RecordedLookups {
        RecordedLookups { links, rows }
    }
}

impl Lookups for RecordedLookups {
    fn translate_key(
        &self,
        side: Side,
        entity: &str,
        key: &[Value],
    ) -> Result<Option<Vec<Value>>, HostError> {
        let forward = self
            .links
            .iter()
            .find(|link| link.side == side && link.entity == entity && link.key == key)
            .map(|link| link.linked_key.clone());
        let backward = || {
            self.links
                .iter()
                .find(|link| {
                    link.side == side.other()
                        && link.linked_entity.as_deref() == Some(entity)
                        && link.linked_key == key
                })
                .map(|link| link.key.clone())
        };
        Ok(forward.or_else(backward))
    }

    fn read_row(
        &self,
        side: Side,
        entity: &str,
        key: &[Value],
        fields: &[String],
    ) -> Result<Option<Vec<Value>>, HostError> {
        let Some(row) = self
            .rows
            .iter()
            .find(|row| row.side == side && row.entity == entity && row.key == key)
        else {
            return Ok(None);
        };
        fields
            .iter()
            .map(|wanted| {
                row.fields
                    .iter()
                    .find(|(name, _)| name == wanted)
                    .map(|(_, value)| value.clone())
                    .ok_or_else(|| HostError {
                        message: format!("the recorded row of {entity} has no field {wanted}"),
                        retryable: false,
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// Runs every change of `changes` through `runner` in batches of `batch_size` and
/// returns one result record per change, in order.
pub fn replay(
    runner: &mut MapPluginRunner,
    changes: &ChangeSet,
    batch_size: usize,
) -> Result<Vec<Json>, FormatError> {
    let descriptor = runner.descriptor().clone();
    let bound = changes
        .changes
        .iter()
        .map(|recorded| bind(&changes.file, recorded, &descriptor))
        .collect::<Result<Vec<_>, _>>()?;
    let mut records = Vec::with_capacity(bound.len());
    for (batch_index, batch) in bound.chunks(batch_size.max(1)).enumerate() {
        let results = runner.transform(batch);
        let first = batch_index * batch_size.max(1);
        for (offset, (change, result)) in batch.iter().zip(&results).enumerate() {
            let recorded = &changes.changes[first + offset];
            records.push(result_record(
                first + offset + 1,
                recorded.id.as_deref(),
                &descriptor,
                change.source.other(),
                result,
            ));
        }
    }
    Ok(records)
}

/// The JSON record of one change's result: `change` (1-based number in the set), `id`
/// (if the change had one), `outcome` (`filtered`, `writes` or `error`) and, for
/// `writes`, the writes with fields by name; for `error`, its class, reason, message,
/// field and whether it is retried.
pub fn result_record(
    number: usize,
    id: Option<&str>,
    descriptor: &Descriptor,
    target: Side,
    result: &TransformResult,
) -> Json {
    let mut record = Map::new();
    record.insert("change".into(), json!(number));
    if let Some(id) = id {
        record.insert("id".into(), json!(id));
    }
    match result {
        TransformResult::Filtered => {
            record.insert("outcome".into(), json!("filtered"));
        }
        TransformResult::Writes(writes) => {
            record.insert("outcome".into(), json!("writes"));
            let entity = descriptor.entity(target);
            let writes: Vec<Json> = writes
                .iter()
                .map(|write| write_record(&entity.entity, target, entity, write))
                .collect();
            record.insert("writes".into(), Json::Array(writes));
        }
        TransformResult::Failed(error) => {
            record.insert("outcome".into(), json!("error"));
            record.insert("class".into(), json!(error.class.as_str()));
            if let Some(reason) = error.reason {
                record.insert("reason".into(), json!(reason.as_str()));
            }
            record.insert("message".into(), json!(error.message));
            if let Some(field) = &error.field {
                record.insert("field".into(), json!(field));
            }
            record.insert("retryable".into(), json!(error.retryable));
        }
    }
    Json::Object(record)
}

fn write_record(
    entity_name: &str,
    side: Side,
    entity: &crate::change::EntitySpec,
    write: &Write,
) -> Json {
    let fields: Map<String, Json> = write
        .fields
        .iter()
        .map(|field| {
            let name = entity
                .fields
                .get(field.field as usize)
                .map_or_else(|| format!("#{}", field.field), |spec| spec.name.clone());
            (name, value_to_json(&field.value))
        })
        .collect();
    json!({
        "op": write.op.as_str(),
        "side": side.as_str(),
        "entity": entity_name,
        "fields": fields,
    })
}

/// One record that differs between two lists.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordDiff {
    /// The 1-based change number.
    pub change: usize,
    /// The record on the left (expected, or the old plugin's), if any.
    pub left: Option<Json>,
    /// The record on the right (actual, or the new plugin's), if any.
    pub right: Option<Json>,
    /// Each difference as `path: left -> right`.
    pub details: Vec<String>,
}

/// Compares two record lists position by position.
pub fn compare(left: &[Json], right: &[Json]) -> Vec<RecordDiff> {
    let count = left.len().max(right.len());
    (0..count)
        .filter_map(|index| {
            let (l, r) = (left.get(index), right.get(index));
            if l == r {
                return None;
            }
            let mut details = Vec::new();
            match (l, r) {
                (Some(l), Some(r)) => diff_json("", l, r, &mut details),
                (Some(_), None) => details.push("missing on the right".to_owned()),
                (None, Some(_)) => details.push("missing on the left".to_owned()),
                (None, None) => {}
            }
            Some(RecordDiff {
                change: index + 1,
                left: l.cloned(),
                right: r.cloned(),
                details,
            })
        })
        .collect()
}

fn diff_json(path: &str, left: &Json, right: &Json, out: &mut Vec<String>) {
    match (left, right) {
        (Json::Object(l), Json::Object(r)) => {
            for (key, lv) in l {
                let child = format!("{path}/{key}");
                match r.get(key) {
                    Some(rv) => diff_json(&child, lv, rv, out),
                    None => out.push(format!("{child}: {lv} -> (absent)")),
                }
            }
            for (key, rv) in r {
                if !l.contains_key(key) {
                    out.push(format!("{path}/{key}: (absent) -> {rv}"));
                }
            }
        }
        (Json::Array(l), Json::Array(r)) => {
            for index in 0..l.len().max(r.len()) {
                let child = format!("{path}/{index}");
                match (l.get(index), r.get(index)) {
                    (Some(lv), Some(rv)) => diff_json(&child, lv, rv, out),
                    (Some(lv), None) => out.push(format!("{child}: {lv} -> (absent)")),
                    (None, Some(rv)) => out.push(format!("{child}: (absent) -> {rv}")),
                    (None, None) => {}
                }
            }
        }
        _ if left != right => out.push(format!(
            "{}: {left} -> {right}",
            if path.is_empty() { "/" } else { path }
        )),
        _ => {}
    }
}

/// Renders differences for people: one block per record, with the change's line.
pub fn render_diffs(diffs: &[RecordDiff], left_name: &str, right_name: &str) -> String {
    let mut text = String::new();
    for diff in diffs {
        text.push_str(&format!("change {}:\n", diff.change));
        for (name, record) in [(left_name, &diff.left), (right_name, &diff.right)] {
            let shown = record
                .as_ref()
                .map_or_else(|| "(none)".to_owned(), Json::to_string);
            text.push_str(&format!("  {name:>8}: {shown}\n"));
        }
        for detail in &diff.details {
            text.push_str(&format!("  - {detail}\n"));
        }
    }
    text
}

/// Parses a file of result records (one JSON object per line), for `--expect`.
pub fn parse_records(file: &str, text: &str) -> Result<Vec<Json>, FormatError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str::<Json>(line).map_err(|error| FormatError {
                file: file.to_owned(),
                line: Some(index + 1),
                field: None,
                message: format!("not valid JSON: {error}"),
            })
        })
        .collect()
}

/// Writes records as JSON Lines.
pub fn records_to_jsonl(records: &[Json]) -> String {
    records.iter().map(|record| format!("{record}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_reports_each_differing_path() {
        let left = vec![
            json!({"change": 1, "outcome": "filtered"}),
            json!({"change": 2, "outcome": "writes", "writes": [{"fields": {"a": 1}}]}),
        ];
        let right = vec![
            json!({"change": 1, "outcome": "filtered"}),
            json!({"change": 2, "outcome": "writes", "writes": [{"fields": {"a": 2}}]}),
            json!({"change": 3}),
        ];
        let diffs = compare(&left, &right);
        assert_eq!(diffs.len(), 2);
        assert_eq!(diffs[0].change, 2);
        assert_eq!(diffs[0].details, vec!["/writes/0/fields/a: 1 -> 2"]);
        assert_eq!(diffs[1].details, vec!["missing on the left"]);
    }

    #[test]
    fn links_translate_both_ways() {
        let lookups = RecordedLookups::new(
            vec![LinkRecord {
                side: Side::Erp,
                entity: "G".into(),
                key: vec![Value::Text("10".into())],
                linked_entity: Some("g".into()),
                linked_key: vec![Value::Text("X".into())],
            }],
            Vec::new(),
        );
        assert_eq!(
            lookups.translate_key(Side::Erp, "G", &[Value::Text("10".into())]),
            Ok(Some(vec![Value::Text("X".into())]))
        );
        assert_eq!(
            lookups.translate_key(Side::Crm, "g", &[Value::Text("X".into())]),
            Ok(Some(vec![Value::Text("10".into())]))
        );
        assert_eq!(
            lookups.translate_key(Side::Erp, "G", &[Value::Text("11".into())]),
            Ok(None)
        );
    }
}
