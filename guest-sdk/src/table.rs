//! A data-driven table map: declare the fields and mapping lines, and let the [`Table`]
//! carry changes across.
//!
//! Most maps relate one entity on each side line by line: a key, plain copies, a few value
//! maps (`no`/`yes` text to a boolean, enum text to an option-set number), lookups to rows
//! of other maps translated through the engine's links, and constants. This module is that
//! machinery once, so a plugin holds only its data and the few rules that are its own:
//!
//! - a [`Table`]: both sides' entities and fields ([`FieldDef`], in field-id order), the
//!   key of each side ([`KeyFields`]: the row's code, optionally after a company code) and
//!   the [`Line`]s that relate them, each with a [`Carry`] saying how the value crosses;
//! - [`Table::transform`] is the whole transform of a map filtered by company only; a map
//!   with filters of its own calls its steps: [`Table::row_key`] checks the change's key,
//!   [`Table::carry`] (or [`Table::delete`] and [`Table::upsert`]) builds the write for the
//!   other side. [`Table::describe`] fills a [`Descriptor`] from the same data, so what
//!   the admin sees is what runs;
//! - the common config: [`ConfigOptions`] says which of the standard options (`companies`,
//!   `resolve_lookups`) a map accepts and renders their JSON Schema, and parses the admin's
//!   JSON into a [`CommonConfig`] with errors named by JSON pointer.
//!
//! Every failure on bad data is an [`Outcome`] (a `rejected`, `transient` or
//! `dependency-missing` error naming the field), never a panic. The happy path builds no
//! maps and formats nothing: it allocates the write and the values it carries (and the
//! keys of translated lookups); messages are formatted only when a change fails.
//!
//! The same code runs natively (under `cargo test`, with [`crate::testing::FakeHost`]) and
//! inside the Wasm component.
//!
//! ```
//! use dualwrite_guest::table::{
//!     both, field, key, Carry, CommonConfig, ConfigOptions, FieldDef, KeyFields, Line, Table,
//! };
//! use dualwrite_guest::{
//!     Change, ChangeOp, ConfigError, Descriptor, Host, MapPlugin, Outcome, Side, ValueKind,
//!     Write,
//! };
//!
//! static ERP_FIELDS: [FieldDef; 3] = [
//!     key("DATAAREAID"),
//!     key("COLORID"),
//!     field("ISDEFAULT", ValueKind::Text),
//! ];
//! static CRM_FIELDS: [FieldDef; 3] = [
//!     key("company"),
//!     key("colorid"),
//!     field("isdefault", ValueKind::Boolean),
//! ];
//! static LINES: [Line; 2] = [both(1, 1, Carry::Key), both(2, 2, Carry::YesNo)];
//! static TABLE: Table = Table {
//!     erp_entity: "Colors",
//!     crm_entity: "colors",
//!     erp: &ERP_FIELDS,
//!     crm: &CRM_FIELDS,
//!     erp_key: KeyFields::company_code(0, 1),
//!     crm_key: KeyFields::company_code(0, 1),
//!     lines: &LINES,
//! };
//!
//! #[derive(Debug, Default)]
//! struct Colors {
//!     config: CommonConfig,
//! }
//!
//! impl MapPlugin for Colors {
//!     fn configure(&mut self, config: &str) -> Result<(), ConfigError> {
//!         self.config = ConfigOptions::STANDARD.parse(config)?;
//!         Ok(())
//!     }
//!     fn describe(&self) -> Descriptor {
//!         TABLE
//!             .describe(Descriptor::new("colors", "1.0.0", "Syncs colors both ways."))
//!             .config_schema(&ConfigOptions::STANDARD.schema())
//!     }
//!     fn transform(&self, change: &Change, host: &dyn Host) -> Outcome {
//!         TABLE.transform(change, host, &self.config)
//!     }
//! }
//!
//! let mut colors = Colors::default();
//! colors.configure(r#"{"companies": ["USMF"]}"#).unwrap();
//! let host = dualwrite_guest::testing::FakeHost::new();
//! let change = Change {
//!     source: Side::Erp,
//!     op: ChangeOp::Insert,
//!     row: vec!["USMF".into(), "RED".into(), "yes".into()],
//!     changed: Vec::new(),
//! };
//! assert_eq!(
//!     colors.transform(&change, &host),
//!     Outcome::write(Write::upsert().set(0, "USMF").set(1, "RED").set(2, true))
//! );
//! ```

use std::fmt;

use crate::{
    Change, ChangeOp, Descriptor, Direction, EntitySpec, FieldId, FieldMapping, FieldSpec,
    FieldValue, Host, Outcome, Side, Value, ValueKind, Write, WriteOp,
};

mod config;
#[cfg(test)]
mod tests;

pub use config::{CommonConfig, ConfigOptions, json_kind, parse_object, pointer_token};

/// A field of one side; its id is its position in the side's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldDef {
    /// Column name in the store.
    pub name: &'static str,
    /// The kind of values it holds.
    pub kind: ValueKind,
    /// Whether it is part of the row's key.
    pub key: bool,
}

/// A key field: text, part of the row's key.
pub const fn key(name: &'static str) -> FieldDef {
    FieldDef {
        name,
        kind: ValueKind::Text,
        key: true,
    }
}

/// A non-key field holding values of `kind`.
pub const fn field(name: &'static str, kind: ValueKind) -> FieldDef {
    FieldDef {
        name,
        kind,
        key: false,
    }
}

/// Which fields of one side make up a row's key: the row's own code, optionally after the
/// code of the company the row belongs to. Every key field holds non-empty text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyFields {
    /// The company code field, for a map striped by company; `None` when the code alone
    /// is the key.
    pub company: Option<FieldId>,
    /// The row's own code field.
    pub code: FieldId,
}

impl KeyFields {
    /// A key of the code alone, e.g. a currency code.
    pub const fn code(code: FieldId) -> KeyFields {
        KeyFields {
            company: None,
            code,
        }
    }

    /// A key of (company, code): rows are per company.
    pub const fn company_code(company: FieldId, code: FieldId) -> KeyFields {
        KeyFields {
            company: Some(company),
            code,
        }
    }

    /// The number of key fields (1 or 2).
    fn len(self) -> usize {
        1 + usize::from(self.company.is_some())
    }
}

/// The entity of another map that a lookup field refers to by key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// What one of its rows is called in messages, e.g. `customer group`.
    pub what: &'static str,
    /// The entity on the ERP side.
    pub erp_entity: &'static str,
    /// The entity on the CRM side.
    pub crm_entity: &'static str,
    /// Whether its key is `(company, code)`, the company being that of the change's row;
    /// otherwise it is `(code)` alone.
    pub per_company: bool,
}

impl Target {
    /// The target entity on `side`.
    pub fn entity(&self, side: Side) -> &'static str {
        match side {
            Side::Erp => self.erp_entity,
            Side::Crm => self.crm_entity,
        }
    }
}

/// A fixed value written on the target side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Constant {
    /// A boolean.
    Boolean(bool),
    /// An integer (e.g. an option-set value).
    Integer(i64),
    /// An exact decimal, as canonical text.
    Decimal(&'static str),
    /// A text.
    Text(&'static str),
}

impl Constant {
    /// The value written.
    pub fn value(self) -> Value {
        match self {
            Constant::Boolean(flag) => Value::Boolean(flag),
            Constant::Integer(number) => Value::Integer(number),
            Constant::Decimal(digits) => Value::Decimal(digits.to_owned()),
            Constant::Text(text) => Value::Text(text.to_owned()),
        }
    }
}

impl fmt::Display for Constant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Constant::Boolean(flag) => write!(f, "{flag}"),
            Constant::Integer(number) => write!(f, "{number}"),
            Constant::Decimal(text) | Constant::Text(text) => f.write_str(text),
        }
    }
}

/// How a line carries a value from the change's side to the other.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Carry {
    /// The row's own code (the key's code field); always written, copied unchanged. A
    /// table has exactly one such line, and its direction says which way rows flow at all.
    Key,
    /// Copied unchanged; the value must be of the source field's kind (or null).
    Copy,
    /// ERP `no`/`yes` text (any ASCII case) <-> CRM boolean.
    YesNo,
    /// ERP enum text (any ASCII case) <-> CRM option-set integer, by this table of pairs.
    OptionSet(&'static [(&'static str, i64)]),
    /// The key of a row of another map, translated through the engine's links (unless the
    /// config's `resolve_lookups` is off, when the text is copied). The target value is the
    /// last element (the non-company part) of the linked row's key; a row not linked yet is
    /// `dependency-missing`.
    Lookup(&'static Target),
    /// Like [`Carry::Lookup`] into this map's own entity; a row that refers to itself
    /// (ignoring ASCII case) needs no link.
    OwnLookup(&'static Target),
    /// A lookup whose target map has no links to translate through (named here, e.g. a map
    /// outside the pack): the key is carried as plain text, as [`Carry::Copy`] of text.
    Unlinked(&'static str),
    /// A constant written on the target side, described as `constant`. The line flows one
    /// way; its source-side field is the trigger: the constant is written with the whole
    /// row and on updates that touch that field.
    Constant(Constant),
    /// Like [`Carry::Constant`], but described with its value (`constant 1.0000000000`).
    ShownConstant(Constant),
}

impl Carry {
    /// The `transform` text of a field mapping.
    fn describe(self) -> String {
        match self {
            Carry::Key | Carry::Copy => "copy".to_owned(),
            Carry::YesNo | Carry::OptionSet(_) => "value-map".to_owned(),
            Carry::Lookup(_) | Carry::OwnLookup(_) => "lookup".to_owned(),
            Carry::Unlinked(map) => format!(
                "copy (lookup to {map}, a map outside the standard pack: the key is carried as plain text)"
            ),
            Carry::Constant(_) => "constant".to_owned(),
            Carry::ShownConstant(constant) => format!("constant {constant}"),
        }
    }

    fn is_constant(self) -> bool {
        matches!(self, Carry::Constant(_) | Carry::ShownConstant(_))
    }
}

/// One line of the mapping: an ERP field, a CRM field, which way, and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    /// The ERP field.
    pub erp: FieldId,
    /// The CRM field.
    pub crm: FieldId,
    /// Which way values flow. A constant line flows one way only.
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

/// A line flowing both ways.
pub const fn both(erp: FieldId, crm: FieldId, carry: Carry) -> Line {
    Line {
        erp,
        crm,
        direction: Direction::Both,
        carry,
    }
}

/// A line flowing from ERP to CRM only.
pub const fn to_crm(erp: FieldId, crm: FieldId, carry: Carry) -> Line {
    Line {
        erp,
        crm,
        direction: Direction::ToCrm,
        carry,
    }
}

/// A line flowing from CRM to ERP only.
pub const fn to_erp(erp: FieldId, crm: FieldId, carry: Carry) -> Line {
    Line {
        erp,
        crm,
        direction: Direction::ToErp,
        carry,
    }
}

/// A whole map: both sides' entities, fields and keys, and the lines between them.
#[derive(Debug)]
pub struct Table {
    /// The ERP entity.
    pub erp_entity: &'static str,
    /// The CRM entity.
    pub crm_entity: &'static str,
    /// ERP fields, in id order.
    pub erp: &'static [FieldDef],
    /// CRM fields, in id order.
    pub crm: &'static [FieldDef],
    /// The ERP key.
    pub erp_key: KeyFields,
    /// The CRM key.
    pub crm_key: KeyFields,
    /// The mapping lines, in display order; exactly one is a [`Carry::Key`] line.
    pub lines: &'static [Line],
}

/// The key of a change's row, checked to be non-empty text; see [`Table::row_key`].
#[derive(Debug, Clone, Copy)]
pub struct RowKey<'a> {
    company: Option<(&'a Value, &'a str)>,
    code: &'a Value,
    code_text: &'a str,
}

impl<'a> RowKey<'a> {
    /// The company value (text), when the key is per company.
    pub fn company(&self) -> Option<&'a Value> {
        self.company.map(|(value, _)| value)
    }

    /// The company code, when the key is per company.
    pub fn company_code(&self) -> Option<&'a str> {
        self.company.map(|(_, text)| text)
    }

    /// The row's own code value (text).
    pub fn code(&self) -> &'a Value {
        self.code
    }

    /// The row's own code.
    pub fn code_text(&self) -> &'a str {
        self.code_text
    }
}

impl Table {
    /// The fields of `side`, in id order.
    pub fn fields(&self, side: Side) -> &'static [FieldDef] {
        match side {
            Side::Erp => self.erp,
            Side::Crm => self.crm,
        }
    }

    /// The key of `side`.
    pub fn key(&self, side: Side) -> KeyFields {
        match side {
            Side::Erp => self.erp_key,
            Side::Crm => self.crm_key,
        }
    }

    /// The entity of `side`.
    pub fn entity(&self, side: Side) -> &'static str {
        match side {
            Side::Erp => self.erp_entity,
            Side::Crm => self.crm_entity,
        }
    }

    /// The name of field `id` of `side`, for messages.
    pub fn name(&self, side: Side, id: FieldId) -> &'static str {
        self.fields(side)
            .get(id as usize)
            .map_or("(unknown field)", |field| field.name)
    }

    /// The kind of field `id` of `side`; [`ValueKind::Any`] for an unknown id.
    pub fn kind(&self, side: Side, id: FieldId) -> ValueKind {
        self.fields(side)
            .get(id as usize)
            .map_or(ValueKind::Any, |field| field.kind)
    }

    /// Whether rows flow from `source` at all: the [`Carry::Key`] line's direction. A
    /// change on a side the map does not carry from has no effect on the other side.
    pub fn carries_from(&self, source: Side) -> bool {
        self.lines
            .iter()
            .any(|line| matches!(line.carry, Carry::Key) && line.direction.flows_from(source))
    }

    /// The entity spec of `side`, for `describe`.
    pub fn entity_spec(&self, side: Side) -> EntitySpec {
        EntitySpec {
            entity: self.entity(side).to_owned(),
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

    /// The field mappings, for `describe`: one per line, in order. A constant line names
    /// only its target field (its source field is just the trigger).
    pub fn mappings(&self) -> Vec<FieldMapping> {
        self.lines
            .iter()
            .map(|line| {
                let erp = Some(self.name(Side::Erp, line.erp).to_owned());
                let crm = Some(self.name(Side::Crm, line.crm).to_owned());
                let (erp_field, crm_field) = match line.direction {
                    Direction::ToCrm if line.carry.is_constant() => (None, crm),
                    Direction::ToErp if line.carry.is_constant() => (erp, None),
                    _ => (erp, crm),
                };
                FieldMapping {
                    erp_field,
                    crm_field,
                    direction: line.direction,
                    transform: line.carry.describe(),
                }
            })
            .collect()
    }

    /// Fills in `descriptor`'s entities ([`entity_spec`](Self::entity_spec)) and field
    /// mappings ([`mappings`](Self::mappings)) from the table.
    pub fn describe(&self, descriptor: Descriptor) -> Descriptor {
        let mut descriptor = descriptor
            .erp(self.entity_spec(Side::Erp))
            .crm(self.entity_spec(Side::Crm));
        descriptor.mappings = self.mappings();
        descriptor
    }

    /// The key of the change's row (company first, then code); rejects a null, empty or
    /// non-text key field.
    pub fn row_key<'a>(&self, change: &'a Change) -> Result<RowKey<'a>, Outcome> {
        let fields = self.key(change.source);
        let company = match fields.company {
            Some(id) => Some(self.key_text(change, id)?),
            None => None,
        };
        let (code, code_text) = self.key_text(change, fields.code)?;
        Ok(RowKey {
            company,
            code,
            code_text,
        })
    }

    fn key_text<'a>(
        &self,
        change: &'a Change,
        id: FieldId,
    ) -> Result<(&'a Value, &'a str), Outcome> {
        let value = change.get(id);
        match value {
            Value::Text(text) if !text.is_empty() => Ok((value, text)),
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

    /// Appends the key fields of `side` with the values of `key`.
    fn push_key(&self, side: Side, key: &RowKey<'_>, fields: &mut Vec<FieldValue>) {
        let to = self.key(side);
        if let (Some(field), Some((company, _))) = (to.company, key.company) {
            fields.push(FieldValue {
                field,
                value: company.clone(),
            });
        }
        fields.push(FieldValue {
            field: to.code,
            value: key.code.clone(),
        });
    }

    /// The whole transform of a map filtered by company only: checks the key
    /// ([`row_key`](Self::row_key)), filters by the config's companies
    /// ([`CommonConfig::syncs`]) and [`carry`](Self::carry)s the change. A map with
    /// filters of its own calls those steps itself.
    pub fn transform(&self, change: &Change, host: &dyn Host, config: &CommonConfig) -> Outcome {
        let key = match self.row_key(change) {
            Ok(key) => key,
            Err(failed) => return failed,
        };
        if !config.syncs(&key) {
            return Outcome::Filtered;
        }
        self.carry(change, &key, host, config)
    }

    /// Carries a change that passed the map's filters: [`delete`](Self::delete) for a
    /// delete, otherwise [`upsert`](Self::upsert) (with no row entering a filter).
    pub fn carry(
        &self,
        change: &Change,
        key: &RowKey<'_>,
        host: &dyn Host,
        config: &CommonConfig,
    ) -> Outcome {
        if change.is_delete() {
            self.delete(change, key)
        } else {
            self.upsert(change, key, host, config, false)
        }
    }

    /// The delete of the linked row on the other side, by key; no write when the map does
    /// not carry rows from the change's side.
    pub fn delete(&self, change: &Change, key: &RowKey<'_>) -> Outcome {
        if !self.carries_from(change.source) {
            return Outcome::Writes(Vec::new());
        }
        let target = change.source.other();
        let mut fields = Vec::with_capacity(self.key(target).len());
        self.push_key(target, key, &mut fields);
        Outcome::write(Write {
            op: WriteOp::Delete,
            fields,
        })
    }

    /// The upsert of the row on the other side, for an insert or update that passed the
    /// filters.
    ///
    /// An insert carries every line that flows this way. An update carries the lines
    /// whose source field it touched (field-level deltas), plus the key; an update that
    /// touched none of them has no effect (an empty write list). The whole row goes when it
    /// is new to the other side: an insert, an update that touched a key field or whose
    /// changed fields are unknown, or an update that may have just brought the row into the
    /// map's filter (`entered_filter`). A change on a side the map does not carry from has
    /// no effect. Lookups are translated through `host` unless `config` says otherwise.
    pub fn upsert(
        &self,
        change: &Change,
        key: &RowKey<'_>,
        host: &dyn Host,
        config: &CommonConfig,
        entered_filter: bool,
    ) -> Outcome {
        let source = change.source;
        if !self.carries_from(source) {
            return Outcome::Writes(Vec::new());
        }
        let from_key = self.key(source);
        let full = change.op != ChangeOp::Update
            || entered_filter
            || from_key.company.is_some_and(|id| change.touches(id))
            || change.touches(from_key.code);
        let target = source.other();
        let key_len = self.key(target).len();
        // Every line but the key line, plus the key fields.
        let most = self.lines.len() + key_len - 1;
        let capacity = if full {
            most
        } else {
            (change.changed.len() + key_len + 1).min(most)
        };
        let mut fields = Vec::with_capacity(capacity);
        self.push_key(target, key, &mut fields);
        let keyed = fields.len();
        for line in self.lines {
            if matches!(line.carry, Carry::Key) || !line.direction.flows_from(source) {
                continue;
            }
            let (from, to) = line.ends(source);
            if !full && !change.touches(from) {
                continue;
            }
            match self.carry_line(line.carry, change, from, key, config, host) {
                Ok(value) => fields.push(FieldValue { field: to, value }),
                Err(failed) => return failed,
            }
        }
        if !full && fields.len() == keyed {
            return Outcome::Writes(Vec::new());
        }
        Outcome::write(Write {
            op: WriteOp::Upsert,
            fields,
        })
    }

    /// The target value of one line.
    fn carry_line(
        &self,
        carry: Carry,
        change: &Change,
        from: FieldId,
        key: &RowKey<'_>,
        config: &CommonConfig,
        host: &dyn Host,
    ) -> Result<Value, Outcome> {
        let source = change.source;
        let value = change.get(from);
        match carry {
            Carry::Key | Carry::Copy => self.copy(source, from, value, self.kind(source, from)),
            Carry::Unlinked(_) => self.copy(source, from, value, ValueKind::Text),
            Carry::YesNo => self.yes_no(source, from, value),
            Carry::OptionSet(pairs) => self.option_set(source, from, value, pairs),
            Carry::Lookup(target) => self.lookup(change, from, key, target, config, host),
            Carry::OwnLookup(target) => {
                if let Value::Text(text) = value
                    && text.eq_ignore_ascii_case(key.code_text)
                {
                    // The row refers to itself: the target row is this row.
                    return Ok(key.code.clone());
                }
                self.lookup(change, from, key, target, config, host)
            }
            Carry::Constant(constant) | Carry::ShownConstant(constant) => Ok(constant.value()),
        }
    }

    fn copy(
        &self,
        source: Side,
        from: FieldId,
        value: &Value,
        kind: ValueKind,
    ) -> Result<Value, Outcome> {
        if value.is_null() || kind == ValueKind::Any || value.kind() == Some(kind) {
            Ok(value.clone())
        } else {
            Err(self.wrong_kind(source, from, value))
        }
    }

    fn yes_no(&self, source: Side, from: FieldId, value: &Value) -> Result<Value, Outcome> {
        match (source, value) {
            (_, Value::Null) => Ok(Value::Null),
            (Side::Erp, Value::Text(text)) if text.eq_ignore_ascii_case("yes") => {
                Ok(Value::Boolean(true))
            }
            (Side::Erp, Value::Text(text)) if text.eq_ignore_ascii_case("no") => {
                Ok(Value::Boolean(false))
            }
            (Side::Erp, Value::Text(_)) => Err(Outcome::rejected(
                format!(
                    "{}: {} is not in the value map (no, yes)",
                    self.name(source, from),
                    Shown(value)
                ),
                Some(from),
            )),
            (Side::Crm, Value::Boolean(flag)) => {
                Ok(Value::Text((if *flag { "yes" } else { "no" }).to_owned()))
            }
            _ => Err(self.wrong_kind(source, from, value)),
        }
    }

    fn option_set(
        &self,
        source: Side,
        from: FieldId,
        value: &Value,
        pairs: &[(&'static str, i64)],
    ) -> Result<Value, Outcome> {
        let found = match (source, value) {
            (_, Value::Null) => return Ok(Value::Null),
            (Side::Erp, Value::Text(text)) => pairs
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(text))
                .map(|&(_, code)| Value::Integer(code)),
            (Side::Crm, Value::Integer(number)) => pairs
                .iter()
                .find(|(_, code)| code == number)
                .map(|&(name, _)| Value::Text(name.to_owned())),
            _ => return Err(self.wrong_kind(source, from, value)),
        };
        found.ok_or_else(|| {
            let known: Vec<String> = pairs
                .iter()
                .map(|(name, code)| match source {
                    Side::Erp => (*name).to_owned(),
                    Side::Crm => code.to_string(),
                })
                .collect();
            Outcome::rejected(
                format!(
                    "{}: {} is not in the value map ({})",
                    self.name(source, from),
                    Shown(value),
                    known.join(", ")
                ),
                Some(from),
            )
        })
    }

    /// Resolves a lookup: the source value is the key of a row of `target` on the source
    /// side; the target value is the last element (the non-company part) of the linked
    /// row's key.
    fn lookup(
        &self,
        change: &Change,
        from: FieldId,
        key: &RowKey<'_>,
        target: &Target,
        config: &CommonConfig,
        host: &dyn Host,
    ) -> Result<Value, Outcome> {
        let source = change.source;
        let value = change.get(from);
        let text = match value {
            Value::Null => return Ok(Value::Null),
            Value::Text(text) if text.is_empty() => return Ok(Value::Null),
            Value::Text(text) => text,
            other => return Err(self.wrong_kind(source, from, other)),
        };
        if !config.resolve_lookups() {
            return Ok(value.clone());
        }
        let entity = target.entity(source);
        let company = key.company.filter(|_| target.per_company);
        let answer = match company {
            Some((company, _)) => {
                host.translate_key(source, entity, &[company.clone(), value.clone()])
            }
            None => host.translate_key(source, entity, std::slice::from_ref(value)),
        };
        let field = self.name(source, from);
        let company = Company(company.map(|(_, code)| code));
        match answer {
            Ok(Some(mut linked)) => linked.pop().ok_or_else(|| {
                Outcome::rejected(
                    format!(
                        "{field}: the host translated {} {text:?}{company} ({entity}) to an empty key",
                        target.what
                    ),
                    Some(from),
                )
            }),
            Ok(None) => Err(Outcome::dependency_missing(
                format!(
                    "{field}: {} {text:?}{company} ({entity} on the {} side) is not linked yet",
                    target.what,
                    side_name(source)
                ),
                Some(from),
            )),
            Err(error) => {
                let message = format!(
                    "{field}: could not look up {} {text:?}{company} ({entity}): {}",
                    target.what, error.message
                );
                Err(if error.retryable {
                    Outcome::transient(message, Some(from))
                } else {
                    Outcome::rejected(message, Some(from))
                })
            }
        }
    }

    /// The rejection of a value of the wrong kind for field `id` of `side`: `NAME:
    /// expected text, got integer 3` (a float where a decimal is expected is called out
    /// as money that must be exact).
    pub fn wrong_kind(&self, side: Side, id: FieldId, value: &Value) -> Outcome {
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

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Erp => "erp",
        Side::Crm => "crm",
    }
}

/// ` of company X` when the looked-up key is per company.
struct Company<'a>(Option<&'a str>);

impl fmt::Display for Company<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(code) => write!(f, " of company {code}"),
            None => Ok(()),
        }
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
