//! Recorded traffic as a change set: turns the captured changes the engine keeps (see
//! `[admin] record_changes`) into the replay format of `docs/change-sets.md`, so a
//! partner can run real traffic against a new plugin version with `dualwrite replay`.
//!
//! A captured row holds every column of its table; a change set may only name the
//! fields the plugin declares for the source side, so rows are cut down to those. A
//! delete whose row image was not captured keeps its key fields.

use serde_json::{Map, Value as Json, json};

use super::json_value::value_to_json;
use crate::change::{ChangeOp, Side};
use crate::state::{CapturedRecord, Image};

/// What a map declares, per side (`[erp, crm]`): its fields and its key columns.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MapShape {
    /// The fields the plugin declares, ERP side then CRM side.
    pub fields: [Vec<String>; 2],
    /// The key columns, ERP side then CRM side.
    pub key: [Vec<String>; 2],
}

impl MapShape {
    fn index(side: Side) -> usize {
        match side {
            Side::Erp => 0,
            Side::Crm => 1,
        }
    }

    /// The fields declared for `side`.
    pub fn fields(&self, side: Side) -> &[String] {
        &self.fields[Self::index(side)]
    }

    /// The key columns of `side`.
    pub fn key(&self, side: Side) -> &[String] {
        &self.key[Self::index(side)]
    }
}

/// The header line of a recorded change set for `map`.
pub fn header(map: &str, recorded_at: chrono::DateTime<chrono::Utc>) -> Json {
    json!({
        "dualwrite": "change-set",
        "version": 1,
        "map": map,
        "recorded_at": recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// One recorded change as a change set line; `shape` is its map's.
pub fn change_line(record: &CapturedRecord, shape: &MapShape) -> Json {
    let change = &record.change;
    let declared = shape.fields(change.side);
    let image = match change.op {
        ChangeOp::Delete => change.before.as_ref(),
        ChangeOp::Insert | ChangeOp::Update => change.after.as_ref(),
    };
    let mut row = Map::new();
    match image {
        Some(image) => put_declared(&mut row, image, declared),
        None => {
            for (column, value) in shape.key(change.side).iter().zip(&change.key) {
                row.insert(column.clone(), value_to_json(value));
            }
        }
    }
    let mut line = Map::new();
    line.insert("id".to_owned(), json!(format!("r{}", record.id)));
    line.insert("source".to_owned(), json!(change.side.as_str()));
    line.insert("entity".to_owned(), json!(change.entity));
    line.insert("op".to_owned(), json!(change.op.as_str()));
    line.insert("row".to_owned(), Json::Object(row));
    if change.op == ChangeOp::Update {
        let changed: Vec<&String> = change
            .changed
            .iter()
            .filter(|name| declared.contains(name))
            .collect();
        // Changed columns none of which the plugin declares: say "unknown" (absent)
        // rather than "nothing changed".
        if !changed.is_empty() {
            line.insert("changed".to_owned(), json!(changed));
        }
    }
    line.insert("position".to_owned(), json!(change.position.to_string()));
    if let Some(at) = change.committed_at {
        line.insert(
            "committed_at".to_owned(),
            json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
    }
    Json::Object(line)
}

fn put_declared(row: &mut Map<String, Json>, image: &Image, declared: &[String]) {
    for name in declared {
        if let Some(value) = image.get(name) {
            row.insert(name.clone(), value_to_json(value));
        }
    }
}
