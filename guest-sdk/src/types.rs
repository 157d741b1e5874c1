//! The contract's data types, as plain Rust values with helpers.
//!
//! Each type mirrors one type of `wit/table-map.wit` (see there for the full contract); the
//! Wasm glue converts between these and the generated bindings by moving, never by
//! copying strings.

/// A field's position in its side's field list, agreed in [`Descriptor`].
pub type FieldId = u32;

/// One of the two systems of record a map links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The ERP role.
    Erp,
    /// The CRM role.
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
}

/// A date and time; see `timestamp` in `wit/table-map.wit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00 (UTC when `offset_minutes` is set).
    pub seconds: i64,
    /// Nanoseconds within the second, below 1,000,000,000.
    pub nanos: u32,
    /// The UTC offset the instant was written with; `None` for a local date-time.
    pub offset_minutes: Option<i16>,
}

/// One SQL value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A boolean.
    Boolean(bool),
    /// A signed 64-bit integer.
    Integer(i64),
    /// A binary floating-point number; never used for money.
    Float(f64),
    /// An exact decimal as canonical text (`-?[0-9]+(\.[0-9]+)?`), scale kept.
    Decimal(String),
    /// UTF-8 text.
    Text(String),
    /// A date and time.
    Timestamp(Timestamp),
    /// Days since 1970-01-01.
    Date(i32),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A JSON document as text.
    Json(String),
}

impl Value {
    /// Whether this is SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The text of a `Text` value.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The integer of an `Integer` value.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Value::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// The boolean of a `Boolean` value.
    pub fn as_boolean(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The canonical text of a `Decimal` value.
    pub fn as_decimal(&self) -> Option<&str> {
        match self {
            Value::Decimal(digits) => Some(digits),
            _ => None,
        }
    }

    /// The value's kind; `None` for null, which fits every kind.
    pub fn kind(&self) -> Option<ValueKind> {
        Some(match self {
            Value::Null => return None,
            Value::Boolean(_) => ValueKind::Boolean,
            Value::Integer(_) => ValueKind::Integer,
            Value::Float(_) => ValueKind::Float,
            Value::Decimal(_) => ValueKind::Decimal,
            Value::Text(_) => ValueKind::Text,
            Value::Timestamp(_) => ValueKind::Timestamp,
            Value::Date(_) => ValueKind::Date,
            Value::Bytes(_) => ValueKind::Bytes,
            Value::Json(_) => ValueKind::Json,
        })
    }

    /// A short name of the value's kind, for error messages.
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
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Text(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Text(text)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Integer(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

/// The kind of values a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// Any kind.
    Any,
    /// Booleans.
    Boolean,
    /// Integers.
    Integer,
    /// Floats.
    Float,
    /// Exact decimals.
    Decimal,
    /// Text.
    Text,
    /// Timestamps.
    Timestamp,
    /// Dates.
    Date,
    /// Bytes.
    Bytes,
    /// JSON.
    Json,
}

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeOp {
    /// A new row.
    Insert,
    /// A changed row.
    Update,
    /// A removed row.
    Delete,
}

/// One captured row event on one side.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The side the change was committed on; writes go to the other side.
    pub source: Side,
    /// Insert, update or delete.
    pub op: ChangeOp,
    /// One value per declared field of the source side, in field-id order. For a
    /// delete, the last known row (at least the key fields).
    pub row: Vec<Value>,
    /// For an update, the ids of the changed fields, ascending; empty when unknown.
    pub changed: Vec<FieldId>,
}

static NULL: Value = Value::Null;

impl Change {
    /// The value of a field; `Null` for an id past the end of the row.
    pub fn get(&self, field: FieldId) -> &Value {
        self.row.get(field as usize).unwrap_or(&NULL)
    }

    /// The text of a field, if it holds text.
    pub fn text(&self, field: FieldId) -> Option<&str> {
        self.get(field).as_text()
    }

    /// Whether this change deletes the row.
    pub fn is_delete(&self) -> bool {
        self.op == ChangeOp::Delete
    }

    /// Whether `field` may have changed: true for inserts, deletes, and updates whose
    /// changed-field list is empty (unknown) or names the field.
    pub fn touches(&self, field: FieldId) -> bool {
        self.op != ChangeOp::Update
            || self.changed.is_empty()
            || self.changed.binary_search(&field).is_ok()
    }
}

/// A field and its value, in a write.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldValue {
    /// The field's id on the target side.
    pub field: FieldId,
    /// Its new value.
    pub value: Value,
}

/// Upsert or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteOp {
    /// Insert, or update the listed fields of an existing row with the same key.
    Upsert,
    /// Delete the row with this key; a missing row is not an error.
    Delete,
}

/// One row write on the side opposite to the change's source. Must hold every key field
/// of the target side.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// Upsert or delete.
    pub op: WriteOp,
    /// The fields to write, by target-side id, each at most once.
    pub fields: Vec<FieldValue>,
}

impl Write {
    /// An empty upsert.
    pub fn upsert() -> Write {
        Write {
            op: WriteOp::Upsert,
            fields: Vec::new(),
        }
    }

    /// An empty delete; add the key fields with [`set`](Self::set).
    pub fn delete() -> Write {
        Write {
            op: WriteOp::Delete,
            fields: Vec::new(),
        }
    }

    /// Adds a field (builder style).
    pub fn set(mut self, field: FieldId, value: impl Into<Value>) -> Write {
        self.fields.push(FieldValue {
            field,
            value: value.into(),
        });
        self
    }

    /// Adds a field in place.
    pub fn push(&mut self, field: FieldId, value: impl Into<Value>) {
        self.fields.push(FieldValue {
            field,
            value: value.into(),
        });
    }
}

/// Why a plugin could not handle a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Invalid for this map; waits for an admin.
    Rejected,
    /// A passing problem; retried with backoff.
    Transient,
    /// Refers to a row of another map that is not linked yet; retried after it syncs.
    DependencyMissing,
}

/// A plugin's answer for one change it cannot handle.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginError {
    /// Rejected, transient or dependency-missing.
    pub kind: ErrorKind,
    /// A message for the admin.
    pub message: String,
    /// The field the problem is about, if one is.
    pub field: Option<FieldId>,
}

/// The result for one change.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Excluded by the map's filter.
    Filtered,
    /// Writes to apply on the other side (possibly none).
    Writes(Vec<Write>),
    /// The change cannot be handled.
    Failed(PluginError),
}

impl Outcome {
    /// A single write.
    pub fn write(write: Write) -> Outcome {
        Outcome::Writes(vec![write])
    }

    /// A `rejected` error.
    pub fn rejected(message: impl Into<String>, field: Option<FieldId>) -> Outcome {
        Outcome::Failed(PluginError {
            kind: ErrorKind::Rejected,
            message: message.into(),
            field,
        })
    }

    /// A `dependency-missing` error.
    pub fn dependency_missing(message: impl Into<String>, field: Option<FieldId>) -> Outcome {
        Outcome::Failed(PluginError {
            kind: ErrorKind::DependencyMissing,
            message: message.into(),
            field,
        })
    }

    /// A `transient` error.
    pub fn transient(message: impl Into<String>, field: Option<FieldId>) -> Outcome {
        Outcome::Failed(PluginError {
            kind: ErrorKind::Transient,
            message: message.into(),
            field,
        })
    }
}

/// Which way a mapped field flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// ERP to CRM only.
    ToCrm,
    /// CRM to ERP only.
    ToErp,
    /// Both ways.
    Both,
}

impl Direction {
    /// Whether values flow from `source` to the other side.
    pub fn flows_from(self, source: Side) -> bool {
        matches!(
            (self, source),
            (Direction::Both, _) | (Direction::ToCrm, Side::Erp) | (Direction::ToErp, Side::Crm)
        )
    }
}

/// A field of one side that the plugin reads or writes.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    /// Column name.
    pub name: String,
    /// Expected kind of values.
    pub kind: ValueKind,
    /// Part of the row's key on this side.
    pub key: bool,
}

/// The entity a map covers on one side and the fields it uses, in field-id order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntitySpec {
    /// Table or entity name.
    pub entity: String,
    /// Fields, in field-id order.
    pub fields: Vec<FieldSpec>,
}

impl EntitySpec {
    /// An entity with no fields yet.
    pub fn new(entity: impl Into<String>) -> EntitySpec {
        EntitySpec {
            entity: entity.into(),
            fields: Vec::new(),
        }
    }

    /// Adds a key field (builder style); its id is the number of fields before it.
    pub fn key(mut self, name: impl Into<String>, kind: ValueKind) -> EntitySpec {
        self.fields.push(FieldSpec {
            name: name.into(),
            kind,
            key: true,
        });
        self
    }

    /// Adds a non-key field (builder style); its id is the number of fields before it.
    pub fn field(mut self, name: impl Into<String>, kind: ValueKind) -> EntitySpec {
        self.fields.push(FieldSpec {
            name: name.into(),
            kind,
            key: false,
        });
        self
    }

    /// The id of the field named `name`.
    pub fn id_of(&self, name: &str) -> Option<FieldId> {
        self.fields
            .iter()
            .position(|field| field.name == name)
            .map(|index| index as FieldId)
    }
}

/// How a field of one side relates to a field of the other, for display.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMapping {
    /// ERP field, or `None` when set from a constant.
    pub erp_field: Option<String>,
    /// CRM field, or `None` when set from a constant.
    pub crm_field: Option<String>,
    /// Which way values flow.
    pub direction: Direction,
    /// `copy`, `value-map`, `lookup`, `constant`, `default`, or a short description.
    pub transform: String,
}

impl FieldMapping {
    /// A field of `side` set from a constant when writing to that side.
    pub fn constant(side: Side, field: &str, value: &str) -> FieldMapping {
        let (erp_field, crm_field, direction) = match side {
            Side::Erp => (Some(field.to_owned()), None, Direction::ToErp),
            Side::Crm => (None, Some(field.to_owned()), Direction::ToCrm),
        };
        FieldMapping {
            erp_field,
            crm_field,
            direction,
            transform: format!("constant {value}"),
        }
    }

    /// A mapping between two named fields.
    pub fn new(
        erp_field: &str,
        crm_field: &str,
        direction: Direction,
        transform: &str,
    ) -> FieldMapping {
        FieldMapping {
            erp_field: Some(erp_field.to_owned()),
            crm_field: Some(crm_field.to_owned()),
            direction,
            transform: transform.to_owned(),
        }
    }
}

/// What the host and the admin need to know about a configured plugin.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Descriptor {
    /// Plugin name.
    pub name: String,
    /// Plugin version (semver).
    pub version: String,
    /// One sentence on what the map does.
    pub summary: String,
    /// The ERP entity and fields.
    pub erp: EntitySpec,
    /// The CRM entity and fields.
    pub crm: EntitySpec,
    /// Field mappings, for display.
    pub mappings: Vec<FieldMapping>,
    /// Names of maps that must sync first.
    pub depends_on: Vec<String>,
    /// JSON Schema of the config.
    pub config_schema: String,
}

impl Descriptor {
    /// A descriptor with a name, version and summary; a config schema of `{}`.
    pub fn new(name: &str, version: &str, summary: &str) -> Descriptor {
        Descriptor {
            name: name.to_owned(),
            version: version.to_owned(),
            summary: summary.to_owned(),
            config_schema: "{}".to_owned(),
            ..Descriptor::default()
        }
    }

    /// Sets the ERP entity (builder style).
    pub fn erp(mut self, entity: EntitySpec) -> Descriptor {
        self.erp = entity;
        self
    }

    /// Sets the CRM entity (builder style).
    pub fn crm(mut self, entity: EntitySpec) -> Descriptor {
        self.crm = entity;
        self
    }

    /// Adds a field mapping (builder style).
    pub fn mapping(mut self, mapping: FieldMapping) -> Descriptor {
        self.mappings.push(mapping);
        self
    }

    /// Adds a dependency on another map (builder style).
    pub fn depends_on(mut self, map: &str) -> Descriptor {
        self.depends_on.push(map.to_owned());
        self
    }

    /// Sets the config JSON Schema (builder style).
    pub fn config_schema(mut self, schema: &str) -> Descriptor {
        self.config_schema = schema.to_owned();
        self
    }

    /// The entity of `side`.
    pub fn entity(&self, side: Side) -> &EntitySpec {
        match side {
            Side::Erp => &self.erp,
            Side::Crm => &self.crm,
        }
    }
}

/// Why `configure` refused a config.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// JSON pointer of the offending part (`""` for the whole document).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error about the part of the config at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogLevel {
    /// Very detailed.
    Trace,
    /// Detailed.
    Debug,
    /// Normal.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something is wrong.
    Error,
}

/// Why a host call could not answer.
#[derive(Debug, Clone, PartialEq)]
pub struct HostError {
    /// What went wrong.
    pub message: String,
    /// Whether the same call may succeed later.
    pub retryable: bool,
}
