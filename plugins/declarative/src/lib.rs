//! The declarative map plugin: a table map written as data in the map's config, with no
//! code. One component serves every such map; each `[maps.X.config]` says what X does.
//!
//! The config (JSON; the TOML `[maps.X.config]` table of a deployment) holds:
//!
//! - `erp` and `crm`: each side's `entity`, its `key` fields in order, and optionally
//!   `fields` read only by filters (`{"name": ..., "kind": ...}`);
//! - `fields`: the mapping lines. A line names an `erp` and a `crm` field and a
//!   `direction` (`to-crm`, `to-erp` or `both`, the default) and carries the value by
//!   - copy (the default): unchanged, of the field's `kind` (`kind`, or `erp_kind` and
//!     `crm_kind`; default text);
//!   - `value_map`: pairs `{"erp": ..., "crm": ...}` used both ways (text compared
//!     ignoring ASCII case); a value not in the map is rejected, naming the field;
//!   - `lookup`: the value is the key of a row of another map (`erp_entity`,
//!     `crm_entity`, optionally `map` and `per_company`), translated through the
//!     engine's links by the host's `translate-key`; a row not linked yet is
//!     `dependency-missing`, which the engine retries once that map has synced it; a
//!     polymorphic lookup lists the maps it may point into (`maps`, each with its
//!     `crm_entity`) and a CRM `type_field` naming the CRM table of the one the value
//!     points into (Dataverse's customer lookups, `customerid` and `customeridtype`);
//!   - `constant`: a value always written to the one field the line names;
//!
//!   and `default`, written on the target when the source value is null;
//! - `filters`: a [CEL](https://cel.dev) expression per source side (`erp`, `crm`) over
//!   that side's fields; a change passes when it is true (see [`filter`]);
//! - `company`: each side's company field, for lookups `per_company`;
//! - `depends_on`: maps that must sync first (lookup `map`s are added); `name` and
//!   `summary` for `describe`; `resolve_lookups` (default true; false copies lookups as
//!   text, for seeding before the maps they refer to exist).
//!
//! `configure` checks all of it ([`compile`]) and refuses a bad config with the JSON
//! pointer of the offending part (`/fields/3/value_map/1/erp`) and what is wrong, a
//! filter's CEL syntax error with its line and column. `describe` reports both entities
//! (key fields first, then fields in line order), every line with its transform and the
//! config's JSON Schema, so a UI can render and edit the map.
//!
//! Changes: an insert (or an update whose changed fields are unknown, touch a key field
//! or touch a field the side's filter reads, so the row may have just entered the
//! filter) writes every line flowing that way; any other update writes the lines whose
//! source field changed, plus the key and the constants, or nothing when none changed. A
//! delete deletes the row with the translated key; a delete whose old row is unknown
//! (every non-key field the filter reads is null) passes the filter.

pub mod compile;
pub mod config;
pub mod filter;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use dualwrite_guest::{
    Change, ChangeOp, ConfigError, Descriptor, EntitySpec, FieldId, FieldMapping, FieldValue, Host,
    MapPlugin, Outcome, Side, Value, ValueKind, Write, WriteOp,
};

use compile::{Carry, Line, Lookup, Map, Polymorphic, kind_name, same};

/// The plugin's version.
pub const VERSION: &str = "1.0.0";

/// The declarative map plugin; see the crate doc. Unconfigured, it refuses every change.
pub struct Declarative {
    map: Option<Map>,
    env: Arc<cel::Env>,
}

impl Default for Declarative {
    fn default() -> Self {
        Declarative {
            map: None,
            env: Arc::new(cel::Env::stdlib()),
        }
    }
}

impl fmt::Debug for Declarative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Declarative")
            .field("map", &self.map)
            .finish()
    }
}

impl Declarative {
    /// The configured map, if `configure` succeeded.
    pub fn map(&self) -> Option<&Map> {
        self.map.as_ref()
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Erp => "erp",
        Side::Crm => "crm",
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

/// The `transform` text of a line, for `describe`.
fn describe_line(line: &Line, type_field_name: &str) -> String {
    let mut text = match &line.carry {
        Carry::Copy => "copy".to_owned(),
        Carry::ValueMap(pairs) => {
            let pairs: Vec<String> = pairs
                .iter()
                .map(|(erp, crm)| format!("{} = {}", Shown(erp), Shown(crm)))
                .collect();
            format!("value-map ({})", pairs.join(", "))
        }
        Carry::Lookup(lookup) => {
            let map = lookup
                .map
                .as_deref()
                .map(|map| format!("{map}: "))
                .unwrap_or_default();
            format!(
                "lookup ({map}{} <-> {}{})",
                lookup.erp_entity,
                lookup.crm_entity,
                if lookup.per_company {
                    ", per company"
                } else {
                    ""
                }
            )
        }
        Carry::Polymorphic(polymorphic) => {
            let targets: Vec<String> = polymorphic
                .targets
                .iter()
                .map(|target| {
                    let map = target
                        .map
                        .as_deref()
                        .map(|map| format!("{map}: "))
                        .unwrap_or_default();
                    format!("{map}{} <-> {}", target.erp_entity, target.crm_entity)
                })
                .collect();
            format!(
                "polymorphic lookup ({}{}; the CRM table in {})",
                targets.join(" | "),
                if polymorphic.per_company {
                    ", per company"
                } else {
                    ""
                },
                type_field_name
            )
        }
        Carry::Constant(value) => format!("constant {}", Shown(value)),
    };
    for (label, default) in [
        ("to crm", &line.default_to_crm),
        ("to erp", &line.default_to_erp),
    ] {
        if let Some(default) = default {
            text.push_str(&format!("; default {label} {}", Shown(default)));
        }
    }
    if let Some(note) = &line.note {
        text.push_str(&format!(" ({note})"));
    }
    text
}

impl Map {
    /// Whether any line flows from `source`.
    fn carries_from(&self, source: Side) -> bool {
        self.lines
            .iter()
            .any(|line| line.direction.flows_from(source))
    }

    fn wrong_kind(&self, side: Side, id: FieldId, value: &Value) -> Outcome {
        let spec = self.side(side);
        Outcome::rejected(
            format!(
                "{}: expected {}, got {} {}",
                spec.name(id),
                kind_name(spec.kind(id)),
                value.kind_name(),
                Shown(value)
            ),
            Some(id),
        )
    }

    /// Checks the key fields of the change's row: set and not empty text.
    fn check_key(&self, change: &Change) -> Result<(), Outcome> {
        let spec = self.side(change.source);
        for &id in &spec.key {
            let problem = match change.get(id) {
                Value::Null => "null",
                Value::Text(text) if text.is_empty() => "empty",
                _ => continue,
            };
            return Err(Outcome::rejected(
                format!("{}: key field is {problem}", spec.name(id)),
                Some(id),
            ));
        }
        Ok(())
    }

    /// Whether the change passes its side's filter.
    fn passes(&self, env: &Arc<cel::Env>, change: &Change) -> Result<bool, Outcome> {
        let spec = self.side(change.source);
        let Some(filter) = &spec.filter else {
            return Ok(true);
        };
        if change.is_delete()
            && filter
                .reads()
                .all(|id| spec.key.contains(&id) || change.get(id).is_null())
        {
            // The old row is unknown; deleting a row that is not there is harmless.
            return Ok(true);
        }
        filter.passes(env, change).map_err(|message| {
            Outcome::rejected(
                format!("filters.{}: {message}", side_name(change.source)),
                None,
            )
        })
    }

    fn transform(&self, env: &Arc<cel::Env>, change: &Change, host: &dyn Host) -> Outcome {
        if let Err(failed) = self.check_key(change) {
            return failed;
        }
        match self.passes(env, change) {
            Ok(true) => {}
            Ok(false) => return Outcome::Filtered,
            Err(failed) => return failed,
        }
        let source = change.source;
        if !self.carries_from(source) {
            return Outcome::Writes(Vec::new());
        }
        let target = source.other();
        let source_spec = self.side(source);
        let target_key = &self.side(target).key;
        if change.is_delete() {
            let mut fields = Vec::with_capacity(target_key.len());
            for line in &self.lines {
                let Some(to) = line.field(target) else {
                    continue;
                };
                if !line.direction.flows_from(source) || !target_key.contains(&to) {
                    continue;
                }
                if let Err(failed) = self.carry_into(line, to, change, host, &mut fields) {
                    return failed;
                }
            }
            return Outcome::write(Write {
                op: WriteOp::Delete,
                fields,
            });
        }
        let full = change.op != ChangeOp::Update
            || change.changed.is_empty()
            || source_spec.key.iter().any(|&id| change.touches(id))
            || source_spec
                .filter
                .as_ref()
                .is_some_and(|filter| filter.reads().any(|id| change.touches(id)));
        let mut fields = Vec::with_capacity(if full {
            self.lines.len()
        } else {
            change.changed.len() + target_key.len() + 1
        });
        let mut carried = 0;
        for line in &self.lines {
            let Some(to) = line.field(target) else {
                continue;
            };
            if !line.direction.flows_from(source) {
                continue;
            }
            let is_key = target_key.contains(&to);
            let is_constant = matches!(line.carry, Carry::Constant(_));
            if !full && !is_key && !is_constant {
                let touched = line.field(source).is_some_and(|from| change.touches(from))
                    || (source == Side::Crm
                        && line.type_field().is_some_and(|id| change.touches(id)));
                if !touched {
                    continue;
                }
            }
            if !is_key && !is_constant {
                carried += 1;
            }
            if let Err(failed) = self.carry_into(line, to, change, host, &mut fields) {
                return failed;
            }
        }
        if !full && carried == 0 {
            return Outcome::Writes(Vec::new());
        }
        Outcome::write(Write {
            op: WriteOp::Upsert,
            fields,
        })
    }

    /// Adds the target value(s) of one line for a change to `fields`: the value of its
    /// target field `to`, and for a polymorphic lookup written to the CRM its type field.
    fn carry_into(
        &self,
        line: &Line,
        to: FieldId,
        change: &Change,
        host: &dyn Host,
        fields: &mut Vec<FieldValue>,
    ) -> Result<(), Outcome> {
        if let Carry::Polymorphic(polymorphic) = &line.carry {
            let (value, table) = self.polymorphic(polymorphic, line, change, host)?;
            fields.push(FieldValue { field: to, value });
            if change.source == Side::Erp {
                fields.push(FieldValue {
                    field: polymorphic.type_field,
                    value: table,
                });
            }
            return Ok(());
        }
        let value = self.carry(line, change, host)?;
        fields.push(FieldValue { field: to, value });
        Ok(())
    }

    /// The target value of one line for a change.
    fn carry(&self, line: &Line, change: &Change, host: &dyn Host) -> Result<Value, Outcome> {
        let source = change.source;
        if let Carry::Constant(value) = &line.carry {
            return Ok(value.clone());
        }
        let Some(from) = line.field(source) else {
            return Ok(Value::Null);
        };
        let value = change.get(from);
        let empty_text = matches!(value, Value::Text(text) if text.is_empty());
        if value.is_null() || (empty_text && matches!(line.carry, Carry::Lookup(_))) {
            return Ok(line.default_from(source).cloned().unwrap_or(Value::Null));
        }
        let spec = self.side(source);
        match &line.carry {
            Carry::Constant(_) => unreachable!("handled above"),
            Carry::Copy => {
                let kind = spec.kind(from);
                if kind == ValueKind::Any || value.kind() == Some(kind) {
                    Ok(value.clone())
                } else {
                    Err(self.wrong_kind(source, from, value))
                }
            }
            Carry::ValueMap(pairs) => {
                let found = pairs.iter().find_map(|(erp, crm)| {
                    let (read, written) = match source {
                        Side::Erp => (erp, crm),
                        Side::Crm => (crm, erp),
                    };
                    same(read, value).then(|| written.clone())
                });
                found.ok_or_else(|| {
                    let known: Vec<String> = pairs
                        .iter()
                        .map(|(erp, crm)| {
                            Shown(match source {
                                Side::Erp => erp,
                                Side::Crm => crm,
                            })
                            .to_string()
                        })
                        .collect();
                    Outcome::rejected(
                        format!(
                            "{}: {} is not in the value map ({})",
                            spec.name(from),
                            Shown(value),
                            known.join(", ")
                        ),
                        Some(from),
                    )
                })
            }
            Carry::Lookup(lookup) => self.lookup(lookup, change, from, host),
            Carry::Polymorphic(polymorphic) => self
                .polymorphic(polymorphic, line, change, host)
                .map(|(value, _)| value),
        }
    }

    /// The key a lookup from field `from` translates: the value, after this row's
    /// company for a lookup per company; and the words naming the company in messages.
    fn lookup_key(
        &self,
        per_company: bool,
        change: &Change,
        from: FieldId,
    ) -> Result<(Vec<Value>, String), Outcome> {
        let spec = self.side(change.source);
        let value = change.get(from);
        if !per_company {
            return Ok((vec![value.clone()], String::new()));
        }
        let Some(company_field) = spec.company else {
            return Err(Outcome::rejected(
                "the map has no company field for a lookup per company",
                Some(from),
            ));
        };
        match change.get(company_field) {
            Value::Text(company) if !company.is_empty() => Ok((
                vec![Value::Text(company.clone()), value.clone()],
                format!(" of company {company}"),
            )),
            other => Err(Outcome::rejected(
                format!(
                    "{}: the lookup is per company, but {} is {}",
                    spec.name(from),
                    spec.name(company_field),
                    Shown(other)
                ),
                Some(company_field),
            )),
        }
    }

    /// A host error of a lookup as the outcome: transient when retryable.
    fn lookup_failed(
        message: String,
        error: &dualwrite_guest::HostError,
        from: FieldId,
    ) -> Outcome {
        let message = format!("{message}: {}", error.message);
        if error.retryable {
            Outcome::transient(message, Some(from))
        } else {
            Outcome::rejected(message, Some(from))
        }
    }

    /// Translates a polymorphic lookup: the target value and, for a change from the ERP,
    /// the CRM table it points into (for the type field).
    ///
    /// From the ERP, the value's row is translated through the targets' ERP entities
    /// (one row of a shared ERP entity is linked by one map at most), and the map that
    /// links it is the target whose CRM entity translates the linked key back to it.
    /// From the CRM, the type field names the target (when it is null, the one target
    /// that links the value).
    fn polymorphic(
        &self,
        polymorphic: &Polymorphic,
        line: &Line,
        change: &Change,
        host: &dyn Host,
    ) -> Result<(Value, Value), Outcome> {
        let source = change.source;
        let spec = self.side(source);
        let Some(from) = line.field(source) else {
            return Ok((Value::Null, Value::Null));
        };
        let value = change.get(from);
        if value.is_null() || matches!(value, Value::Text(text) if text.is_empty()) {
            let default = line.default_from(source).cloned().unwrap_or(Value::Null);
            return Ok((default, Value::Null));
        }
        let Value::Text(text) = value else {
            return Err(self.wrong_kind(source, from, value));
        };
        if !self.resolve_lookups {
            return Ok((value.clone(), Value::Null));
        }
        let (key, of_company) = self.lookup_key(polymorphic.per_company, change, from)?;
        let field = spec.name(from);
        let type_name = self.crm.name(polymorphic.type_field);
        let tables = || {
            polymorphic
                .targets
                .iter()
                .map(|target| target.crm_entity.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let translate = |side: Side, entity: &str, key: &[Value]| {
            host.translate_key(side, entity, key).map_err(|error| {
                Self::lookup_failed(
                    format!("{field}: could not look up {text:?}{of_company} ({entity})"),
                    &error,
                    from,
                )
            })
        };
        let last = |mut linked: Vec<Value>, entity: &str| {
            linked.pop().ok_or_else(|| {
                Outcome::rejected(
                    format!("{field}: the host translated {text:?}{of_company} ({entity}) to an empty key"),
                    Some(from),
                )
            })
        };
        match source {
            Side::Erp => {
                let mut entities: Vec<&str> = Vec::new();
                let mut linked_elsewhere = false;
                for target in &polymorphic.targets {
                    if !entities.contains(&target.erp_entity.as_str()) {
                        entities.push(&target.erp_entity);
                    }
                    let Some(linked) = translate(Side::Erp, &target.erp_entity, &key)? else {
                        continue;
                    };
                    let back = translate(Side::Crm, &target.crm_entity, &linked)?;
                    let is_ours = back.is_some_and(|back| {
                        back.len() == key.len() && back.iter().zip(&key).all(|(a, b)| same(a, b))
                    });
                    if is_ours {
                        let code = last(linked, &target.crm_entity)?;
                        return Ok((code, Value::Text(target.crm_entity.clone())));
                    }
                    linked_elsewhere = true;
                }
                if linked_elsewhere {
                    return Err(Outcome::rejected(
                        format!(
                            "{field}: {text:?}{of_company} ({}) is linked, but not to any of the lookup's tables ({})",
                            entities.join(" or "),
                            tables()
                        ),
                        Some(from),
                    ));
                }
                Err(Outcome::dependency_missing(
                    format!(
                        "{field}: {text:?}{of_company} ({} on the erp side) is not linked yet",
                        entities.join(" or ")
                    ),
                    Some(from),
                ))
            }
            Side::Crm => {
                let named = match change.get(polymorphic.type_field) {
                    Value::Null => None,
                    Value::Text(table) if table.is_empty() => None,
                    Value::Text(table) => {
                        let Some(target) = polymorphic
                            .targets
                            .iter()
                            .find(|target| target.crm_entity.eq_ignore_ascii_case(table))
                        else {
                            return Err(Outcome::rejected(
                                format!(
                                    "{type_name}: {table:?} is not one of the tables {field} may point into ({})",
                                    tables()
                                ),
                                Some(polymorphic.type_field),
                            ));
                        };
                        Some(target)
                    }
                    other => {
                        return Err(self.wrong_kind(Side::Crm, polymorphic.type_field, other));
                    }
                };
                let candidates: Vec<&Lookup> = match named {
                    Some(target) => vec![target],
                    None => polymorphic.targets.iter().collect(),
                };
                let mut found: Option<(Value, &str)> = None;
                for target in &candidates {
                    let Some(linked) = translate(Side::Crm, &target.crm_entity, &key)? else {
                        continue;
                    };
                    let code = last(linked, &target.crm_entity)?;
                    if let Some((_, first)) = &found {
                        return Err(Outcome::rejected(
                            format!(
                                "{field}: {text:?}{of_company} is linked in both {first} and {}; {type_name} must name the table",
                                target.crm_entity
                            ),
                            Some(polymorphic.type_field),
                        ));
                    }
                    found = Some((code, &target.crm_entity));
                }
                match found {
                    Some((code, _)) => Ok((code, Value::Null)),
                    None => {
                        let names: Vec<&str> = candidates
                            .iter()
                            .map(|target| target.crm_entity.as_str())
                            .collect();
                        Err(Outcome::dependency_missing(
                            format!(
                                "{field}: {text:?}{of_company} ({} on the crm side) is not linked yet",
                                names.join(" or ")
                            ),
                            Some(from),
                        ))
                    }
                }
            }
        }
    }

    /// Translates a lookup through the host's links: the target value is the last
    /// element (the non-company part) of the linked row's key.
    fn lookup(
        &self,
        lookup: &Lookup,
        change: &Change,
        from: FieldId,
        host: &dyn Host,
    ) -> Result<Value, Outcome> {
        let source = change.source;
        let spec = self.side(source);
        let value = change.get(from);
        let Value::Text(text) = value else {
            return Err(self.wrong_kind(source, from, value));
        };
        if !self.resolve_lookups {
            return Ok(value.clone());
        }
        let entity = lookup.entity(source);
        let company = if lookup.per_company {
            let Some(company_field) = spec.company else {
                return Err(Outcome::rejected(
                    "the map has no company field for a lookup per company",
                    Some(from),
                ));
            };
            match change.get(company_field) {
                Value::Text(company) if !company.is_empty() => Some(company.as_str()),
                other => {
                    return Err(Outcome::rejected(
                        format!(
                            "{}: the lookup is per company, but {} is {}",
                            spec.name(from),
                            spec.name(company_field),
                            Shown(other)
                        ),
                        Some(company_field),
                    ));
                }
            }
        } else {
            None
        };
        // A row that refers to itself needs no link: its own key is carried by the map.
        if entity == spec.entity
            && let Some(&code) = spec.key.last()
            && matches!(change.get(code), Value::Text(own) if own.eq_ignore_ascii_case(text))
        {
            return Ok(value.clone());
        }
        let key: Vec<Value> = match company {
            Some(company) => vec![Value::Text(company.to_owned()), value.clone()],
            None => vec![value.clone()],
        };
        let of_company = company
            .map(|company| format!(" of company {company}"))
            .unwrap_or_default();
        let field = spec.name(from);
        match host.translate_key(source, entity, &key) {
            Ok(Some(mut linked)) => linked.pop().ok_or_else(|| {
                Outcome::rejected(
                    format!("{field}: the host translated {text:?}{of_company} ({entity}) to an empty key"),
                    Some(from),
                )
            }),
            Ok(None) => Err(Outcome::dependency_missing(
                format!(
                    "{field}: {text:?}{of_company} ({entity} on the {} side) is not linked yet",
                    side_name(source)
                ),
                Some(from),
            )),
            Err(error) => {
                let message =
                    format!("{field}: could not look up {text:?}{of_company} ({entity}): {}", error.message);
                Err(if error.retryable {
                    Outcome::transient(message, Some(from))
                } else {
                    Outcome::rejected(message, Some(from))
                })
            }
        }
    }

    fn descriptor(&self) -> Descriptor {
        let entity = |side: Side| {
            let spec = self.side(side);
            let mut entity = EntitySpec::new(&spec.entity);
            entity.fields = spec.fields.clone();
            entity
        };
        let mut descriptor = Descriptor::new(&self.name, VERSION, &self.summary)
            .erp(entity(Side::Erp))
            .crm(entity(Side::Crm))
            .config_schema(config::SCHEMA);
        for line in &self.lines {
            descriptor = descriptor.mapping(FieldMapping {
                erp_field: line.erp.map(|id| self.erp.name(id).to_owned()),
                crm_field: line.crm.map(|id| self.crm.name(id).to_owned()),
                direction: line.direction,
                transform: describe_line(
                    line,
                    line.type_field().map_or("", |id| self.crm.name(id)),
                ),
            });
        }
        for map in &self.depends_on {
            descriptor = descriptor.depends_on(map);
        }
        descriptor
    }
}

impl MapPlugin for Declarative {
    fn configure(&mut self, config: &str) -> Result<(), ConfigError> {
        self.map = Some(compile::compile(config)?);
        Ok(())
    }

    fn describe(&self) -> Descriptor {
        match &self.map {
            Some(map) => map.descriptor(),
            None => Descriptor::new(
                "declarative",
                VERSION,
                "A table map written as data in the map's config (not configured yet).",
            )
            .config_schema(config::SCHEMA),
        }
    }

    fn transform(&self, change: &Change, host: &dyn Host) -> Outcome {
        match &self.map {
            Some(map) => map.transform(&self.env, change, host),
            None => Outcome::rejected("the declarative map has no config", None),
        }
    }
}

dualwrite_guest::export_plugin!(Declarative);
