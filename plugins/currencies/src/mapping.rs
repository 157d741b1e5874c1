//! The mapping as data, and the engine that carries one change across it.
//!
//! A map is a [`Table`]: the fields of each side ([`FieldDef`], in field-id order) and the
//! lines that relate them ([`Line`]). `transform` hands a change that passed the filters to
//! [`Table::upsert`] or [`Table::delete`], which walk the lines and build the write for the
//! other side; `describe` renders the same table, so what the admin sees is what runs.
//!
//! Every failure on bad data is an [`Outcome`] returned through `Err`, never a panic.
//!
//! Adapted from `customer-groups/src/mapping.rs` for a key of one field (no company) and
//! with constants; `legal-entities/src/mapping.rs` is the same module without constants.
//! The plugins share no crate: fix a bug in all of them.

use std::fmt;

use dualwrite_guest::{
    Change, ChangeOp, Direction, EntitySpec, FieldId, FieldMapping, FieldSpec, FieldValue, Outcome,
    Side, Value, ValueKind, Write, WriteOp,
};

/// A field of one side; its id is its position in the side's list.
pub(crate) struct FieldDef {
    /// Column name in the store.
    pub name: &'static str,
    /// The kind of values it holds.
    pub kind: ValueKind,
    /// Whether it is part of the row's key.
    pub key: bool,
}

/// A fixed value written on the target side.
#[derive(Clone, Copy)]
pub(crate) enum Constant {
    /// An exact decimal, as canonical text.
    Decimal(&'static str),
}

impl Constant {
    fn value(self) -> Value {
        match self {
            Constant::Decimal(digits) => Value::Decimal(digits.to_owned()),
        }
    }

    fn text(self) -> &'static str {
        match self {
            Constant::Decimal(digits) => digits,
        }
    }
}

/// How a line carries a value from the change's side to the other.
#[derive(Clone, Copy)]
pub(crate) enum Carry {
    /// The row's own code (the key field); always written, copied unchanged.
    Key,
    /// Copied unchanged; the value must be of the source field's kind (or null).
    Copy,
    /// A constant written on the target side. The line's source-side field is the
    /// trigger: the constant is written on inserts and when that field is touched.
    Constant(Constant),
}

impl Carry {
    /// The `transform` text of a field mapping (constants are described by
    /// [`FieldMapping::constant`]).
    fn describe(self) -> &'static str {
        match self {
            Carry::Key | Carry::Copy => "copy",
            Carry::Constant(_) => "constant",
        }
    }
}

/// One line of the mapping: an ERP field, a CRM field, which way, and how.
pub(crate) struct Line {
    /// The ERP field.
    pub erp: FieldId,
    /// The CRM field.
    pub crm: FieldId,
    /// Which way values flow. A [`Carry::Constant`] line flows one way only.
    pub direction: Direction,
    /// How the value is carried.
    pub carry: Carry,
}

impl Line {
    /// The (source, target) field ids for a change from `source`.
    fn ends(&self, source: Side) -> (FieldId, FieldId) {
        match source {
            Side::Erp => (self.erp, self.crm),
            Side::Crm => (self.crm, self.erp),
        }
    }
}

/// A whole map: both sides' fields and the lines between them.
pub(crate) struct Table {
    /// ERP fields, in id order.
    pub erp: &'static [FieldDef],
    /// CRM fields, in id order.
    pub crm: &'static [FieldDef],
    /// The ERP key field.
    pub erp_key: FieldId,
    /// The CRM key field.
    pub crm_key: FieldId,
    /// The mapping lines, in display order; exactly one is a [`Carry::Key`] line.
    pub lines: &'static [Line],
}

/// The key of a change's row, checked to be non-empty text.
pub(crate) struct RowKey<'a> {
    /// The code value (text).
    pub code: &'a Value,
    /// The code.
    pub code_text: &'a str,
}

impl Table {
    fn fields(&self, side: Side) -> &'static [FieldDef] {
        match side {
            Side::Erp => self.erp,
            Side::Crm => self.crm,
        }
    }

    fn key(&self, side: Side) -> FieldId {
        match side {
            Side::Erp => self.erp_key,
            Side::Crm => self.crm_key,
        }
    }

    /// The name of field `id` of `side`, for messages.
    pub(crate) fn name(&self, side: Side, id: FieldId) -> &'static str {
        self.fields(side)
            .get(id as usize)
            .map_or("(unknown field)", |field| field.name)
    }

    fn kind(&self, side: Side, id: FieldId) -> ValueKind {
        self.fields(side)
            .get(id as usize)
            .map_or(ValueKind::Any, |field| field.kind)
    }

    /// Whether rows flow from `source` at all: the key line's direction. A change on a
    /// side the map does not carry from has no effect on the other side.
    fn carries_from(&self, source: Side) -> bool {
        self.lines
            .iter()
            .any(|line| matches!(line.carry, Carry::Key) && line.direction.flows_from(source))
    }

    /// The entity spec of `side` for `describe`.
    pub(crate) fn entity_spec(&self, side: Side, entity: &str) -> EntitySpec {
        EntitySpec {
            entity: entity.to_owned(),
            fields: self
                .fields(side)
                .iter()
                .map(|field| FieldSpec {
                    name: field.name.to_owned(),
                    kind: field.kind,
                    key: field.key,
                })
                .collect(),
        }
    }

    /// The field mappings for `describe`, one per line.
    pub(crate) fn mappings(&self) -> Vec<FieldMapping> {
        self.lines
            .iter()
            .map(|line| match (line.carry, line.direction) {
                // A constant has no source field; the line's source id is only its trigger.
                (Carry::Constant(constant), Direction::ToCrm) => FieldMapping::constant(
                    Side::Crm,
                    self.name(Side::Crm, line.crm),
                    constant.text(),
                ),
                (Carry::Constant(constant), _) => FieldMapping::constant(
                    Side::Erp,
                    self.name(Side::Erp, line.erp),
                    constant.text(),
                ),
                (carry, direction) => FieldMapping::new(
                    self.name(Side::Erp, line.erp),
                    self.name(Side::Crm, line.crm),
                    direction,
                    carry.describe(),
                ),
            })
            .collect()
    }

    /// The code of the change's row; rejects a null, empty or non-text key.
    pub(crate) fn row_key<'a>(&self, change: &'a Change) -> Result<RowKey<'a>, Outcome> {
        let id = self.key(change.source);
        let value = change.get(id);
        match value {
            Value::Text(text) if !text.is_empty() => Ok(RowKey {
                code: value,
                code_text: text,
            }),
            Value::Text(_) | Value::Null => Err(Outcome::rejected(
                format!(
                    "{}: key field is {}",
                    self.name(change.source, id),
                    if value.is_null() { "null" } else { "empty" }
                ),
                Some(id),
            )),
            other => Err(self.wrong_kind(change.source, id, other)),
        }
    }

    /// The delete of the linked row on the other side, by key; no write when the map
    /// does not carry rows from the change's side.
    pub(crate) fn delete(&self, change: &Change, key: &RowKey<'_>) -> Outcome {
        if !self.carries_from(change.source) {
            return Outcome::Writes(Vec::new());
        }
        Outcome::write(Write {
            op: WriteOp::Delete,
            fields: vec![FieldValue {
                field: self.key(change.source.other()),
                value: key.code.clone(),
            }],
        })
    }

    /// The upsert of the row on the other side, for an insert or update that passed the
    /// filters.
    ///
    /// An insert carries every line that flows this way. An update carries the lines
    /// whose source field it touched (field-level deltas), plus the key; an update that
    /// touched none of them has no effect (an empty write list). An update that touched
    /// the key field, or whose changed fields are unknown, is carried like an insert. A
    /// change on a side the map does not carry from has no effect.
    pub(crate) fn upsert(&self, change: &Change, key: &RowKey<'_>) -> Outcome {
        let source = change.source;
        if !self.carries_from(source) {
            return Outcome::Writes(Vec::new());
        }
        let full = change.op != ChangeOp::Update || change.touches(self.key(source));
        let mut fields = Vec::with_capacity(self.lines.len());
        fields.push(FieldValue {
            field: self.key(source.other()),
            value: key.code.clone(),
        });
        for line in self.lines {
            if matches!(line.carry, Carry::Key) || !line.direction.flows_from(source) {
                continue;
            }
            let (from, to) = line.ends(source);
            if !full && !change.touches(from) {
                continue;
            }
            match self.carry(line.carry, change, from) {
                Ok(value) => fields.push(FieldValue { field: to, value }),
                Err(failed) => return failed,
            }
        }
        if !full && fields.len() == 1 {
            return Outcome::Writes(Vec::new());
        }
        Outcome::write(Write {
            op: WriteOp::Upsert,
            fields,
        })
    }

    /// The target value of one line.
    fn carry(&self, carry: Carry, change: &Change, from: FieldId) -> Result<Value, Outcome> {
        let source = change.source;
        let value = change.get(from);
        match carry {
            Carry::Key | Carry::Copy => self.copy(source, from, value, self.kind(source, from)),
            Carry::Constant(constant) => Ok(constant.value()),
        }
    }

    fn copy(
        &self,
        source: Side,
        from: FieldId,
        value: &Value,
        kind: ValueKind,
    ) -> Result<Value, Outcome> {
        if value.is_null() || kind == ValueKind::Any || kind_of(value) == kind {
            Ok(value.clone())
        } else {
            Err(self.wrong_kind(source, from, value))
        }
    }

    /// The rejection of a value of the wrong kind for field `id` of `side`.
    pub(crate) fn wrong_kind(&self, side: Side, id: FieldId, value: &Value) -> Outcome {
        let name = self.name(side, id);
        let expected = self.kind(side, id);
        let message = if expected == ValueKind::Decimal && matches!(value, Value::Float(_)) {
            format!(
                "{name}: {} is a float; money must be an exact decimal",
                Shown(value)
            )
        } else {
            format!(
                "{name}: expected {}, got {} {}",
                kind_label(expected),
                value.kind_name(),
                Shown(value)
            )
        };
        Outcome::rejected(message, Some(id))
    }
}

/// The kind of a value.
fn kind_of(value: &Value) -> ValueKind {
    match value {
        Value::Null => ValueKind::Any,
        Value::Boolean(_) => ValueKind::Boolean,
        Value::Integer(_) => ValueKind::Integer,
        Value::Float(_) => ValueKind::Float,
        Value::Decimal(_) => ValueKind::Decimal,
        Value::Text(_) => ValueKind::Text,
        Value::Timestamp(_) => ValueKind::Timestamp,
        Value::Date(_) => ValueKind::Date,
        Value::Bytes(_) => ValueKind::Bytes,
        Value::Json(_) => ValueKind::Json,
    }
}

fn kind_label(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Any => "any value",
        ValueKind::Boolean => "a boolean",
        ValueKind::Integer => "an integer",
        ValueKind::Float => "a float",
        ValueKind::Decimal => "a decimal",
        ValueKind::Text => "text",
        ValueKind::Timestamp => "a timestamp",
        ValueKind::Date => "a date",
        ValueKind::Bytes => "bytes",
        ValueKind::Json => "JSON",
    }
}

/// A value as written in messages: text quoted, numbers bare, others by kind.
struct Shown<'a>(&'a Value);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::Null => f.write_str("null"),
            Value::Boolean(flag) => write!(f, "{flag}"),
            Value::Integer(number) => write!(f, "{number}"),
            Value::Float(number) => write!(f, "{number}"),
            Value::Decimal(digits) => f.write_str(digits),
            Value::Text(text) => write!(f, "{text:?}"),
            other => write!(f, "({})", other.kind_name()),
        }
    }
}
