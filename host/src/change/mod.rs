//! The domain types of a sync: values, changes, writes, plugin outcomes, descriptors.
//!
//! Pure data, no I/O. These are also the host's Rust form of the `types` interface of
//! `wit/table-map.wit`: they derive wasmtime's component traits with the WIT names, and
//! the plugin bindings use them directly (`with` in `plugin/bindings.rs`), so a batch
//! crosses into a plugin without first being converted into generated types. Keep each
//! type in step with the WIT file; the runtime type-checks them against every component
//! it loads and refuses a mismatch.

pub mod codec;
mod error;
mod meaning;

pub use error::{ErrorClass, SyncError, TrapReason};
pub use meaning::Fidelity;

use wasmtime::component::{ComponentType, Lift, Lower};

/// A field's position in its side's field list (see [`EntitySpec::fields`]).
pub type FieldId = u32;

/// One of the two systems of record a map links.
#[derive(ComponentType, Lift, Lower, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[component(enum)]
#[repr(u8)]
pub enum Side {
    /// The ERP role.
    #[component(name = "erp")]
    Erp,
    /// The CRM role.
    #[component(name = "crm")]
    Crm,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Erp => Side::Crm,
            Side::Crm => Side::Erp,
        }
    }

    /// The side's name as written in change sets and logs (`erp`, `crm`).
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Erp => "erp",
            Side::Crm => "crm",
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A date and time; `seconds`/`nanos` from 1970-01-01T00:00:00, UTC when
/// `offset_minutes` is set, a local date-time without zone otherwise.
#[derive(ComponentType, Lift, Lower, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[component(record)]
pub struct Timestamp {
    /// Seconds since the epoch.
    pub seconds: i64,
    /// Nanoseconds within the second, below 1,000,000,000.
    pub nanos: u32,
    /// The UTC offset the instant was written with, if it is an instant.
    #[component(name = "offset-minutes")]
    pub offset_minutes: Option<i16>,
}

/// One SQL value, lossless for every type the connectors read.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq)]
#[component(variant)]
pub enum Value {
    /// SQL NULL.
    #[component(name = "null")]
    Null,
    /// A boolean.
    #[component(name = "boolean")]
    Boolean(bool),
    /// A signed 64-bit integer.
    #[component(name = "integer")]
    Integer(i64),
    /// A binary float; never money.
    #[component(name = "float")]
    Float(f64),
    /// An exact decimal as canonical text (`-?[0-9]+(\.[0-9]+)?`), scale kept.
    #[component(name = "decimal")]
    Decimal(String),
    /// UTF-8 text.
    #[component(name = "text")]
    Text(String),
    /// A date and time.
    #[component(name = "timestamp")]
    Timestamp(Timestamp),
    /// Days since 1970-01-01.
    #[component(name = "date")]
    Date(i32),
    /// Raw bytes.
    #[component(name = "bytes")]
    Bytes(Vec<u8>),
    /// A JSON document as text.
    #[component(name = "json")]
    Json(String),
}

impl Value {
    /// A short name of the value's kind, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
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

    /// Whether the value fits a field declared with `kind` (null fits every kind).
    pub fn fits(&self, kind: ValueKind) -> bool {
        matches!(
            (self, kind),
            (Value::Null, _)
                | (_, ValueKind::Any)
                | (Value::Boolean(_), ValueKind::Boolean)
                | (Value::Integer(_), ValueKind::Integer)
                | (Value::Float(_), ValueKind::Float)
                | (Value::Decimal(_), ValueKind::Decimal)
                | (Value::Text(_), ValueKind::Text)
                | (Value::Timestamp(_), ValueKind::Timestamp)
                | (Value::Date(_), ValueKind::Date)
                | (Value::Bytes(_), ValueKind::Bytes)
                | (Value::Json(_), ValueKind::Json)
        )
    }
}

/// The kind of values a field holds.
#[derive(ComponentType, Lift, Lower, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[component(enum)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum ValueKind {
    #[component(name = "any")]
    Any,
    #[component(name = "boolean")]
    Boolean,
    #[component(name = "integer")]
    Integer,
    #[component(name = "float")]
    Float,
    #[component(name = "decimal")]
    Decimal,
    #[component(name = "text")]
    Text,
    #[component(name = "timestamp")]
    Timestamp,
    #[component(name = "date")]
    Date,
    #[component(name = "bytes")]
    Bytes,
    #[component(name = "json")]
    Json,
}

impl ValueKind {
    /// The kind's WIT name.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::Any => "any",
            ValueKind::Boolean => "boolean",
            ValueKind::Integer => "integer",
            ValueKind::Float => "float",
            ValueKind::Decimal => "decimal",
            ValueKind::Text => "text",
            ValueKind::Timestamp => "timestamp",
            ValueKind::Date => "date",
            ValueKind::Bytes => "bytes",
            ValueKind::Json => "json",
        }
    }
}

/// A row: one value per declared field of its side, in field-id order.
pub type Row = Vec<Value>;

/// What happened to a row.
#[derive(ComponentType, Lift, Lower, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[component(enum)]
#[repr(u8)]
pub enum ChangeOp {
    /// A new row.
    #[component(name = "insert")]
    Insert,
    /// A changed row.
    #[component(name = "update")]
    Update,
    /// A removed row.
    #[component(name = "delete")]
    Delete,
}

impl ChangeOp {
    /// The op's name (`insert`, `update`, `delete`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Insert => "insert",
            ChangeOp::Update => "update",
            ChangeOp::Delete => "delete",
        }
    }
}

/// One captured row event, as handed to a plugin.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq)]
#[component(record)]
pub struct Change {
    /// The side it was committed on.
    pub source: Side,
    /// Insert, update or delete.
    pub op: ChangeOp,
    /// The row after (insert, update) or as last known before (delete) the change.
    pub row: Row,
    /// For an update, the ids of the changed fields, ascending; empty when unknown.
    pub changed: Vec<FieldId>,
}

/// A field and its value, in a write.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq)]
#[component(record)]
pub struct FieldValue {
    /// The field's id on the target side.
    pub field: FieldId,
    /// Its value.
    pub value: Value,
}

/// Upsert or delete.
#[derive(ComponentType, Lift, Lower, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[component(enum)]
#[repr(u8)]
pub enum WriteOp {
    /// Insert, or update the listed fields of the row with the same key.
    #[component(name = "upsert")]
    Upsert,
    /// Delete the row with this key.
    #[component(name = "delete")]
    Delete,
}

impl WriteOp {
    /// The op's name (`upsert`, `delete`).
    pub fn as_str(self) -> &'static str {
        match self {
            WriteOp::Upsert => "upsert",
            WriteOp::Delete => "delete",
        }
    }
}

/// One row write on the side opposite to the change's source.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq)]
#[component(record)]
pub struct Write {
    /// Upsert or delete.
    pub op: WriteOp,
    /// Target-side fields by id; holds every key field.
    pub fields: Vec<FieldValue>,
}

/// Why a plugin could not handle a change.
#[derive(ComponentType, Lift, Lower, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[component(enum)]
#[repr(u8)]
pub enum ErrorKind {
    /// Invalid for this map; waits for an admin.
    #[component(name = "rejected")]
    Rejected,
    /// A passing problem; retried with backoff.
    #[component(name = "transient")]
    Transient,
    /// Refers to a row of another map that is not linked yet.
    #[component(name = "dependency-missing")]
    DependencyMissing,
}

/// A plugin's answer for one change it cannot handle.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq)]
#[component(record)]
pub struct PluginError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// A message for the admin.
    pub message: String,
    /// The field concerned, if any (a source-side field id).
    pub field: Option<FieldId>,
}

/// The plugin's result for one change.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq)]
#[component(variant)]
pub enum Outcome {
    /// Excluded by the map's filter.
    #[component(name = "filtered")]
    Filtered,
    /// Writes to apply on the other side (possibly none).
    #[component(name = "writes")]
    Writes(Vec<Write>),
    /// The change cannot be handled.
    #[component(name = "failed")]
    Failed(PluginError),
}

/// Which way a mapped field flows.
#[derive(ComponentType, Lift, Lower, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[component(enum)]
#[repr(u8)]
pub enum Direction {
    /// ERP to CRM only.
    #[component(name = "to-crm")]
    ToCrm,
    /// CRM to ERP only.
    #[component(name = "to-erp")]
    ToErp,
    /// Both ways.
    #[component(name = "both")]
    Both,
}

impl Direction {
    /// The direction's WIT name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ToCrm => "to-crm",
            Direction::ToErp => "to-erp",
            Direction::Both => "both",
        }
    }
}

/// A field of one side that a plugin reads or writes.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq)]
#[component(record)]
pub struct FieldSpec {
    /// Column name.
    pub name: String,
    /// Expected kind of values.
    pub kind: ValueKind,
    /// Part of the row's key on this side.
    pub key: bool,
}

/// The entity a map covers on one side, with its fields in field-id order.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq, Default)]
#[component(record)]
pub struct EntitySpec {
    /// Table or entity name.
    pub entity: String,
    /// Fields in field-id order.
    pub fields: Vec<FieldSpec>,
}

impl EntitySpec {
    /// The id of the field named `name`.
    pub fn id_of(&self, name: &str) -> Option<FieldId> {
        self.fields
            .iter()
            .position(|field| field.name == name)
            .map(|index| index as FieldId)
    }

    /// The ids of the key fields, in declaration order.
    pub fn key_ids(&self) -> Vec<FieldId> {
        self.fields
            .iter()
            .enumerate()
            .filter(|(_, field)| field.key)
            .map(|(index, _)| index as FieldId)
            .collect()
    }
}

/// How a field of one side relates to one of the other, for display.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq)]
#[component(record)]
pub struct FieldMapping {
    /// ERP field, if any.
    #[component(name = "erp-field")]
    pub erp_field: Option<String>,
    /// CRM field, if any.
    #[component(name = "crm-field")]
    pub crm_field: Option<String>,
    /// Which way values flow.
    pub direction: Direction,
    /// `copy`, `value-map`, `lookup`, `constant`, `default`, or a description.
    pub transform: String,
}

/// What a configured plugin says about itself.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq)]
#[component(record)]
pub struct Descriptor {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// One sentence on what the map does.
    pub summary: String,
    /// ERP entity and fields.
    pub erp: EntitySpec,
    /// CRM entity and fields.
    pub crm: EntitySpec,
    /// Field mappings.
    pub mappings: Vec<FieldMapping>,
    /// Maps that must sync first.
    #[component(name = "depends-on")]
    pub depends_on: Vec<String>,
    /// JSON Schema of the config.
    #[component(name = "config-schema")]
    pub config_schema: String,
}

impl Descriptor {
    /// The entity of `side`.
    pub fn entity(&self, side: Side) -> &EntitySpec {
        match side {
            Side::Erp => &self.erp,
            Side::Crm => &self.crm,
        }
    }
}

/// Why `configure` refused a config.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq)]
#[component(record)]
pub struct ConfigError {
    /// JSON pointer of the offending part.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Severity of a plugin log line.
#[derive(ComponentType, Lift, Lower, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[component(enum)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum LogLevel {
    #[component(name = "trace")]
    Trace,
    #[component(name = "debug")]
    Debug,
    #[component(name = "info")]
    Info,
    #[component(name = "warn")]
    Warn,
    #[component(name = "error")]
    Error,
}

/// Why a host call could not answer a plugin.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq)]
#[component(record)]
pub struct HostError {
    /// What went wrong.
    pub message: String,
    /// Whether the same call may succeed later.
    pub retryable: bool,
}
