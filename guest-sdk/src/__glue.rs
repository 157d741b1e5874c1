//! Wasm-only glue between the generated bindings and the SDK types. Used by
//! [`crate::export_plugin!`]; not part of the public API.
//!
//! Conversions move strings and vectors instead of copying them: the generated types and
//! the SDK types have the same shapes, so a batch changes type without reallocating.

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::thread::LocalKey;

use crate::{
    Change, ChangeOp, ConfigError, Descriptor, Direction, EntitySpec, ErrorKind, FieldMapping,
    FieldSpec, FieldValue, Host, HostError, LogLevel, MapPlugin, Outcome, Side, Timestamp, Value,
    ValueKind, Write, WriteOp,
};

#[allow(missing_docs)]
#[allow(unsafe_code)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "dualwrite:table-map/map-plugin@0.1.0",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "dualwrite_guest::__glue::bindings",
    });
}

pub use bindings::export;
pub use bindings::exports::dualwrite::table_map::plugin::Guest;

use bindings::dualwrite::table_map::host as wit_host;
use bindings::dualwrite::table_map::types as wit;

pub type WitConfigError = wit::ConfigError;
pub type WitDescriptor = wit::Descriptor;
pub type WitChange = wit::Change;
pub type WitOutcome = wit::Outcome;

/// The host as seen from inside the component: every call is a host import, except
/// repeated key translations within one `transform` call, which are answered from a
/// memo. Links do not change while a batch is being transformed (the engine applies the
/// writes afterwards), so the memo never answers differently than the host would, and
/// a batch whose rows share a customer group or currency crosses the boundary once per
/// distinct key instead of once per row.
#[derive(Default)]
struct ImportedHost {
    translations: RefCell<HashMap<u64, Vec<Translation>>>,
}

struct Translation {
    side: Side,
    entity: String,
    key: Vec<Value>,
    answer: Result<Option<Vec<Value>>, HostError>,
}

fn translation_hash(side: Side, entity: &str, key: &[Value]) -> u64 {
    let mut hasher = DefaultHasher::new();
    side.hash(&mut hasher);
    entity.hash(&mut hasher);
    for value in key {
        std::mem::discriminant(value).hash(&mut hasher);
        match value {
            Value::Null => {}
            Value::Boolean(b) => b.hash(&mut hasher),
            Value::Integer(n) => n.hash(&mut hasher),
            Value::Float(f) => f.to_bits().hash(&mut hasher),
            Value::Decimal(text) | Value::Text(text) | Value::Json(text) => text.hash(&mut hasher),
            Value::Timestamp(t) => t.hash(&mut hasher),
            Value::Date(d) => d.hash(&mut hasher),
            Value::Bytes(b) => b.hash(&mut hasher),
        }
    }
    hasher.finish()
}

impl Host for ImportedHost {
    fn log(&self, level: LogLevel, message: &str) {
        wit_host::log(level.into(), message);
    }

    fn translate_key(
        &self,
        side: Side,
        entity: &str,
        key: &[Value],
    ) -> Result<Option<Vec<Value>>, HostError> {
        let hash = translation_hash(side, entity, key);
        if let Some(known) = self.translations.borrow().get(&hash).and_then(|entries| {
            entries
                .iter()
                .find(|entry| entry.side == side && entry.entity == entity && entry.key == key)
        }) {
            return known.answer.clone();
        }
        let wit_key: Vec<wit::Value> = key.iter().cloned().map(Into::into).collect();
        let answer = wit_host::translate_key(side.into(), entity, &wit_key)
            .map(|found| found.map(|values| values.into_iter().map(Into::into).collect()))
            .map_err(Into::into);
        self.translations
            .borrow_mut()
            .entry(hash)
            .or_default()
            .push(Translation {
                side,
                entity: entity.to_owned(),
                key: key.to_vec(),
                answer: answer.clone(),
            });
        answer
    }

    fn read_row(
        &self,
        side: Side,
        entity: &str,
        key: &[Value],
        fields: &[&str],
    ) -> Result<Option<Vec<Value>>, HostError> {
        let key: Vec<wit::Value> = key.iter().cloned().map(Into::into).collect();
        let fields: Vec<String> = fields.iter().map(|name| (*name).to_owned()).collect();
        wit_host::read_row(side.into(), entity, &key, &fields)
            .map(|found| found.map(|values| values.into_iter().map(Into::into).collect()))
            .map_err(Into::into)
    }
}

pub fn configure<P: MapPlugin>(
    plugin: &'static LocalKey<RefCell<P>>,
    config: String,
) -> Result<(), WitConfigError> {
    plugin.with_borrow_mut(|plugin| {
        // Configure a fresh value so a refused config leaves the previous one in force.
        let mut candidate = P::default();
        candidate
            .configure(&config)
            .map_err(|error| wit::ConfigError {
                path: error.path,
                message: error.message,
            })?;
        *plugin = candidate;
        Ok(())
    })
}

pub fn describe<P: MapPlugin>(plugin: &'static LocalKey<RefCell<P>>) -> WitDescriptor {
    plugin.with_borrow(|plugin| plugin.describe().into())
}

pub fn transform<P: MapPlugin>(
    plugin: &'static LocalKey<RefCell<P>>,
    batch: Vec<WitChange>,
) -> Vec<WitOutcome> {
    let batch: Vec<Change> = batch.into_iter().map(Into::into).collect();
    plugin.with_borrow(|plugin| {
        plugin
            .transform_batch(&batch, &ImportedHost::default())
            .into_iter()
            .map(Into::into)
            .collect()
    })
}

impl From<wit::Side> for Side {
    fn from(side: wit::Side) -> Self {
        match side {
            wit::Side::Erp => Side::Erp,
            wit::Side::Crm => Side::Crm,
        }
    }
}

impl From<Side> for wit::Side {
    fn from(side: Side) -> Self {
        match side {
            Side::Erp => wit::Side::Erp,
            Side::Crm => wit::Side::Crm,
        }
    }
}

impl From<wit::Value> for Value {
    fn from(value: wit::Value) -> Self {
        match value {
            wit::Value::Null => Value::Null,
            wit::Value::Boolean(b) => Value::Boolean(b),
            wit::Value::Integer(n) => Value::Integer(n),
            wit::Value::Float(f) => Value::Float(f),
            wit::Value::Decimal(d) => Value::Decimal(d),
            wit::Value::Text(t) => Value::Text(t),
            wit::Value::Timestamp(t) => Value::Timestamp(Timestamp {
                seconds: t.seconds,
                nanos: t.nanos,
                offset_minutes: t.offset_minutes,
            }),
            wit::Value::Date(d) => Value::Date(d),
            wit::Value::Bytes(b) => Value::Bytes(b),
            wit::Value::Json(j) => Value::Json(j),
        }
    }
}

impl From<Value> for wit::Value {
    fn from(value: Value) -> Self {
        match value {
            Value::Null => wit::Value::Null,
            Value::Boolean(b) => wit::Value::Boolean(b),
            Value::Integer(n) => wit::Value::Integer(n),
            Value::Float(f) => wit::Value::Float(f),
            Value::Decimal(d) => wit::Value::Decimal(d),
            Value::Text(t) => wit::Value::Text(t),
            Value::Timestamp(t) => wit::Value::Timestamp(wit::Timestamp {
                seconds: t.seconds,
                nanos: t.nanos,
                offset_minutes: t.offset_minutes,
            }),
            Value::Date(d) => wit::Value::Date(d),
            Value::Bytes(b) => wit::Value::Bytes(b),
            Value::Json(j) => wit::Value::Json(j),
        }
    }
}

impl From<wit::Change> for Change {
    fn from(change: wit::Change) -> Self {
        Change {
            source: change.source.into(),
            op: match change.op {
                wit::ChangeOp::Insert => ChangeOp::Insert,
                wit::ChangeOp::Update => ChangeOp::Update,
                wit::ChangeOp::Delete => ChangeOp::Delete,
            },
            row: change.row.into_iter().map(Into::into).collect(),
            changed: change.changed,
        }
    }
}

impl From<FieldValue> for wit::FieldValue {
    fn from(field: FieldValue) -> Self {
        wit::FieldValue {
            field: field.field,
            value: field.value.into(),
        }
    }
}

impl From<Write> for wit::Write {
    fn from(write: Write) -> Self {
        wit::Write {
            op: match write.op {
                WriteOp::Upsert => wit::WriteOp::Upsert,
                WriteOp::Delete => wit::WriteOp::Delete,
            },
            fields: write.fields.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Outcome> for wit::Outcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Filtered => wit::Outcome::Filtered,
            Outcome::Writes(writes) => {
                wit::Outcome::Writes(writes.into_iter().map(Into::into).collect())
            }
            Outcome::Failed(error) => wit::Outcome::Failed(wit::PluginError {
                kind: match error.kind {
                    ErrorKind::Rejected => wit::ErrorKind::Rejected,
                    ErrorKind::Transient => wit::ErrorKind::Transient,
                    ErrorKind::DependencyMissing => wit::ErrorKind::DependencyMissing,
                },
                message: error.message,
                field: error.field,
            }),
        }
    }
}

impl From<ValueKind> for wit::ValueKind {
    fn from(kind: ValueKind) -> Self {
        match kind {
            ValueKind::Any => wit::ValueKind::Any,
            ValueKind::Boolean => wit::ValueKind::Boolean,
            ValueKind::Integer => wit::ValueKind::Integer,
            ValueKind::Float => wit::ValueKind::Float,
            ValueKind::Decimal => wit::ValueKind::Decimal,
            ValueKind::Text => wit::ValueKind::Text,
            ValueKind::Timestamp => wit::ValueKind::Timestamp,
            ValueKind::Date => wit::ValueKind::Date,
            ValueKind::Bytes => wit::ValueKind::Bytes,
            ValueKind::Json => wit::ValueKind::Json,
        }
    }
}

impl From<FieldSpec> for wit::FieldSpec {
    fn from(field: FieldSpec) -> Self {
        wit::FieldSpec {
            name: field.name,
            kind: field.kind.into(),
            key: field.key,
        }
    }
}

impl From<EntitySpec> for wit::EntitySpec {
    fn from(entity: EntitySpec) -> Self {
        wit::EntitySpec {
            entity: entity.entity,
            fields: entity.fields.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<FieldMapping> for wit::FieldMapping {
    fn from(mapping: FieldMapping) -> Self {
        wit::FieldMapping {
            erp_field: mapping.erp_field,
            crm_field: mapping.crm_field,
            direction: match mapping.direction {
                Direction::ToCrm => wit::Direction::ToCrm,
                Direction::ToErp => wit::Direction::ToErp,
                Direction::Both => wit::Direction::Both,
            },
            transform: mapping.transform,
        }
    }
}

impl From<Descriptor> for wit::Descriptor {
    fn from(descriptor: Descriptor) -> Self {
        wit::Descriptor {
            name: descriptor.name,
            version: descriptor.version,
            summary: descriptor.summary,
            erp: descriptor.erp.into(),
            crm: descriptor.crm.into(),
            mappings: descriptor.mappings.into_iter().map(Into::into).collect(),
            depends_on: descriptor.depends_on,
            config_schema: descriptor.config_schema,
        }
    }
}

impl From<LogLevel> for wit::LogLevel {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Trace => wit::LogLevel::Trace,
            LogLevel::Debug => wit::LogLevel::Debug,
            LogLevel::Info => wit::LogLevel::Info,
            LogLevel::Warn => wit::LogLevel::Warn,
            LogLevel::Error => wit::LogLevel::Error,
        }
    }
}

impl From<wit::HostError> for HostError {
    fn from(error: wit::HostError) -> Self {
        HostError {
            message: error.message,
            retryable: error.retryable,
        }
    }
}

impl From<ConfigError> for wit::ConfigError {
    fn from(error: ConfigError) -> Self {
        wit::ConfigError {
            path: error.path,
            message: error.message,
        }
    }
}
