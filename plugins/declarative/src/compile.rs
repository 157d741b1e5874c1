//! From the admin's config to a checked [`Map`]: field ids per side, lines with their
//! values converted to the fields' kinds, compiled filters. Every problem is a
//! [`ConfigError`] at the JSON pointer of the offending part (`/fields/3/value_map/1/erp`).

use serde_json::Value as Json;

use dualwrite_guest::table::json_kind;
use dualwrite_guest::{ConfigError, Direction, FieldId, FieldSpec, Side, Value, ValueKind};

use crate::config::{self, DirectionConfig, FieldConfig, KindConfig, MapConfig};
use crate::filter::Filter;

/// One side of the map as compiled.
#[derive(Debug, Default)]
pub struct SideSpec {
    /// The entity.
    pub entity: String,
    /// The fields in id order (kinds resolved).
    pub fields: Vec<FieldSpec>,
    /// The key fields, in key order.
    pub key: Vec<FieldId>,
    /// The company field, for lookups per company.
    pub company: Option<FieldId>,
    /// The filter of changes from this side.
    pub filter: Option<Filter>,
}

impl SideSpec {
    /// The name of field `id`.
    pub fn name(&self, id: FieldId) -> &str {
        self.fields
            .get(id as usize)
            .map_or("?", |field| field.name.as_str())
    }

    /// The kind of field `id`.
    pub fn kind(&self, id: FieldId) -> ValueKind {
        self.fields
            .get(id as usize)
            .map_or(ValueKind::Any, |field| field.kind)
    }

    fn id_of(&self, name: &str) -> Option<FieldId> {
        self.fields
            .iter()
            .position(|field| field.name == name)
            .map(|at| at as FieldId)
    }
}

/// How a line carries its value.
#[derive(Debug)]
pub enum Carry {
    /// Copied unchanged (kind checked).
    Copy,
    /// Translated by pairs of (ERP value, CRM value).
    ValueMap(Vec<(Value, Value)>),
    /// A key of a row of another map, translated through its links.
    Lookup(Lookup),
    /// A key of a row of one of several maps, translated through the links of the one
    /// the row is linked by; a CRM type field names its CRM table.
    Polymorphic(Polymorphic),
    /// A fixed value written on the target.
    Constant(Value),
}

/// Where a lookup points.
#[derive(Debug)]
pub struct Lookup {
    /// The target map's name, if given.
    pub map: Option<String>,
    /// The target entity on the ERP side.
    pub erp_entity: String,
    /// The target entity on the CRM side.
    pub crm_entity: String,
    /// Whether the target key is (company, code).
    pub per_company: bool,
}

/// A polymorphic lookup: the value is the key of a row of one of `targets`, and the CRM
/// field `type_field` names which (by the target's CRM entity).
#[derive(Debug)]
pub struct Polymorphic {
    /// The maps the value may point into, in the order they are tried (each with
    /// `per_company` as the lookup's).
    pub targets: Vec<Lookup>,
    /// The CRM field naming the target's CRM entity.
    pub type_field: FieldId,
    /// Whether the targets' keys are (company, code), the company being this row's.
    pub per_company: bool,
}

impl Lookup {
    /// The target entity on `side`.
    pub fn entity(&self, side: Side) -> &str {
        match side {
            Side::Erp => &self.erp_entity,
            Side::Crm => &self.crm_entity,
        }
    }
}

/// One mapping line.
#[derive(Debug)]
pub struct Line {
    /// The ERP field (none for a constant written to the CRM).
    pub erp: Option<FieldId>,
    /// The CRM field (none for a constant written to the ERP).
    pub crm: Option<FieldId>,
    /// Which way it flows.
    pub direction: Direction,
    /// How.
    pub carry: Carry,
    /// Written to the ERP when the CRM value is null.
    pub default_to_erp: Option<Value>,
    /// Written to the CRM when the ERP value is null.
    pub default_to_crm: Option<Value>,
    /// The admin's remark.
    pub note: Option<String>,
}

impl Line {
    /// The CRM type field of a polymorphic lookup, written next to the CRM field and
    /// read with it.
    pub fn type_field(&self) -> Option<FieldId> {
        match &self.carry {
            Carry::Polymorphic(polymorphic) => Some(polymorphic.type_field),
            _ => None,
        }
    }

    /// The field of `side`.
    pub fn field(&self, side: Side) -> Option<FieldId> {
        match side {
            Side::Erp => self.erp,
            Side::Crm => self.crm,
        }
    }

    /// The default written to the side opposite to `source`.
    pub fn default_from(&self, source: Side) -> Option<&Value> {
        match source {
            Side::Erp => self.default_to_crm.as_ref(),
            Side::Crm => self.default_to_erp.as_ref(),
        }
    }
}

/// A configured map.
#[derive(Debug, Default)]
pub struct Map {
    /// The plugin name `describe` reports.
    pub name: String,
    /// The summary `describe` reports.
    pub summary: String,
    /// The ERP side.
    pub erp: SideSpec,
    /// The CRM side.
    pub crm: SideSpec,
    /// The lines, in config order.
    pub lines: Vec<Line>,
    /// Maps that must sync first.
    pub depends_on: Vec<String>,
    /// Whether lookups are translated.
    pub resolve_lookups: bool,
}

impl Map {
    /// The spec of `side`.
    pub fn side(&self, side: Side) -> &SideSpec {
        match side {
            Side::Erp => &self.erp,
            Side::Crm => &self.crm,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut SideSpec {
        match side {
            Side::Erp => &mut self.erp,
            Side::Crm => &mut self.crm,
        }
    }
}

fn side_key(side: Side) -> &'static str {
    match side {
        Side::Erp => "erp",
        Side::Crm => "crm",
    }
}

fn error(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::new(path, message)
}

/// The fields of one side while they are declared: kinds may still be open.
#[derive(Default)]
struct Fields {
    names: Vec<String>,
    kinds: Vec<Option<(ValueKind, String)>>,
    keys: Vec<bool>,
}

impl Fields {
    /// The id of `name`, declaring it if new; `kind` (if known) must agree with what an
    /// earlier declaration said. `path` is where this declaration is written.
    fn declare(
        &mut self,
        name: &str,
        kind: Option<ValueKind>,
        path: &str,
    ) -> Result<FieldId, ConfigError> {
        if name.is_empty() {
            return Err(error(path, "a field name must not be empty"));
        }
        let id = match self.names.iter().position(|known| known == name) {
            Some(at) => at,
            None => {
                self.names.push(name.to_owned());
                self.kinds.push(None);
                self.keys.push(false);
                self.names.len() - 1
            }
        };
        if let Some(kind) = kind {
            match &self.kinds[id] {
                Some((earlier, at)) if *earlier != kind => {
                    return Err(error(
                        path,
                        format!(
                            "{name} is {} here but {} at {at}; a field has one kind",
                            kind_name(kind),
                            kind_name(*earlier)
                        ),
                    ));
                }
                Some(_) => {}
                None => self.kinds[id] = Some((kind, path.to_owned())),
            }
        }
        Ok(id as FieldId)
    }

    fn kind(&self, id: FieldId) -> Option<ValueKind> {
        self.kinds[id as usize].as_ref().map(|(kind, _)| *kind)
    }

    fn into_specs(self) -> Vec<FieldSpec> {
        self.names
            .into_iter()
            .zip(self.kinds)
            .zip(self.keys)
            .map(|((name, kind), key)| FieldSpec {
                name,
                kind: kind.map_or(ValueKind::Text, |(kind, _)| kind),
                key,
            })
            .collect()
    }
}

/// The name of a kind as the config writes it.
pub fn kind_name(kind: ValueKind) -> &'static str {
    match kind {
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

/// Converts a literal of the config to a value of `kind` (inferred from the JSON when
/// `None`). Errors are messages.
pub fn literal(json: &Json, kind: Option<ValueKind>) -> Result<Value, String> {
    let wrong = |what: &str| {
        Err(format!(
            "{json} is {what}, not a {} value",
            kind.map_or("?", kind_name)
        ))
    };
    match (json, kind) {
        (Json::Null, _) => Ok(Value::Null),
        (_, Some(ValueKind::Any)) => literal(json, None),
        (Json::Bool(flag), None | Some(ValueKind::Boolean)) => Ok(Value::Boolean(*flag)),
        (Json::Bool(_), _) => wrong("a boolean"),
        (Json::Number(number), None | Some(ValueKind::Integer)) if number.is_i64() => {
            Ok(Value::Integer(number.as_i64().unwrap_or_default()))
        }
        (Json::Number(number), Some(ValueKind::Decimal)) if number.is_i64() => {
            Ok(Value::Decimal(number.to_string()))
        }
        (Json::Number(_), Some(ValueKind::Decimal)) => Err(
            "write a decimal with a fraction as a string (\"1.50\") so no digit is lost".to_owned(),
        ),
        (Json::Number(number), None | Some(ValueKind::Float)) => number
            .as_f64()
            .map(Value::Float)
            .ok_or_else(|| format!("{number} is out of range")),
        (Json::Number(_), _) => wrong("a number"),
        (Json::String(text), None | Some(ValueKind::Text)) => Ok(Value::Text(text.clone())),
        (Json::String(text), Some(ValueKind::Decimal)) => decimal(text),
        (Json::String(_), _) => wrong("a string"),
        (Json::Object(object), None | Some(ValueKind::Decimal)) if object.len() == 1 => {
            match object.get("decimal") {
                Some(Json::String(text)) => decimal(text),
                _ => Err("an object literal must be {\"decimal\": \"1.50\"}".to_owned()),
            }
        }
        (other, _) => Err(format!(
            "{} is not a value (use a string, number, boolean, null or {{\"decimal\": \"1.50\"}})",
            json_kind(other)
        )),
    }
}

/// `text` as an exact decimal, checked against the value model's syntax.
fn decimal(text: &str) -> Result<Value, String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (digits, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if all_digits(whole) && fraction.is_none_or(all_digits) {
        Ok(Value::Decimal(text.to_owned()))
    } else {
        Err(format!(
            "{text:?} is not a decimal (digits, optionally a '.' and digits, optionally a leading '-')"
        ))
    }
}

/// Whether two values match for a value map: text ignoring ASCII case, others equal.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Text(a), Value::Text(b)) => a.eq_ignore_ascii_case(b),
        _ => a == b,
    }
}

/// Reads and checks the config text.
pub fn compile(text: &str) -> Result<Map, ConfigError> {
    let config = config::read(text)?;
    compile_config(config)
}

fn direction_of(line: &FieldConfig, at: &str) -> Result<Direction, ConfigError> {
    let implied = if line.constant.is_some() {
        match (&line.erp, &line.crm) {
            (None, Some(_)) => Some(DirectionConfig::ToCrm),
            (Some(_), None) => Some(DirectionConfig::ToErp),
            (Some(_), Some(_)) => {
                return Err(error(
                    at,
                    "a constant names only the field it is written to: crm for a constant written to the CRM, erp for one written to the ERP",
                ));
            }
            (None, None) => None,
        }
    } else {
        None
    };
    let direction = match (line.direction, implied) {
        (Some(given), Some(implied)) if given != implied => {
            return Err(error(
                format!("{at}/direction"),
                "a constant flows toward the field it names; drop direction or make it match",
            ));
        }
        (given, implied) => implied.or(given).unwrap_or(DirectionConfig::Both),
    };
    Ok(match direction {
        DirectionConfig::Both => Direction::Both,
        DirectionConfig::ToCrm => Direction::ToCrm,
        DirectionConfig::ToErp => Direction::ToErp,
    })
}

fn compile_config(config: MapConfig) -> Result<Map, ConfigError> {
    let mut fields = [Fields::default(), Fields::default()];
    let index = |side: Side| usize::from(side == Side::Crm);
    let mut map = Map {
        name: config
            .name
            .clone()
            .unwrap_or_else(|| "declarative".to_owned()),
        summary: config.summary.clone().unwrap_or_else(|| {
            format!(
                "Syncs {} and {} as the declarative config says.",
                config.erp.entity, config.crm.entity
            )
        }),
        resolve_lookups: config.resolve_lookups,
        ..Map::default()
    };
    // Keys first, so key fields get the first ids.
    let mut keys: [Vec<FieldId>; 2] = [Vec::new(), Vec::new()];
    for side in [Side::Erp, Side::Crm] {
        let entity = match side {
            Side::Erp => &config.erp,
            Side::Crm => &config.crm,
        };
        let path = format!("/{}", side_key(side));
        if entity.entity.is_empty() {
            return Err(error(
                format!("{path}/entity"),
                "the entity name must not be empty",
            ));
        }
        if entity.key.is_empty() {
            return Err(error(
                format!("{path}/key"),
                "a key needs at least one field",
            ));
        }
        let side_fields = &mut fields[index(side)];
        for (at, name) in entity.key.iter().enumerate() {
            let key_path = format!("{path}/key/{at}");
            if side_fields.names.contains(name) {
                return Err(error(key_path, format!("{name} is in the key twice")));
            }
            let id = side_fields.declare(name, None, &key_path)?;
            side_fields.keys[id as usize] = true;
            keys[index(side)].push(id);
        }
    }

    for (at, line) in config.fields.iter().enumerate() {
        let path = format!("/fields/{at}");
        let compiled = compile_line(line, &path, &mut fields, &config)?;
        map.lines.push(compiled);
    }
    if map.lines.is_empty() {
        return Err(error("/fields", "a map needs at least one line"));
    }

    for side in [Side::Erp, Side::Crm] {
        let entity = match side {
            Side::Erp => &config.erp,
            Side::Crm => &config.crm,
        };
        for (at, extra) in entity.fields.iter().enumerate() {
            fields[index(side)].declare(
                &extra.name,
                Some(extra.kind.map_or(ValueKind::Text, KindConfig::kind)),
                &format!("/{}/fields/{at}", side_key(side)),
            )?;
        }
    }

    check_targets(&map, &fields, &keys)?;

    let company = match &config.company {
        Some(company) => {
            let mut ids = [0; 2];
            for (side, name) in [(Side::Erp, &company.erp), (Side::Crm, &company.crm)] {
                let side_fields = &fields[index(side)];
                ids[index(side)] = side_fields
                    .names
                    .iter()
                    .position(|known| known == name)
                    .ok_or_else(|| {
                        error(
                            format!("/company/{}", side_key(side)),
                            format!(
                                "{name} is not a field of {}; map it or list it as a key",
                                match side {
                                    Side::Erp => &config.erp.entity,
                                    Side::Crm => &config.crm.entity,
                                }
                            ),
                        )
                    })? as FieldId;
            }
            Some(ids)
        }
        None => None,
    };

    let [erp_fields, crm_fields] = fields;
    let [erp_key, crm_key] = keys;
    map.erp = SideSpec {
        entity: config.erp.entity.clone(),
        fields: erp_fields.into_specs(),
        key: erp_key,
        company: company.map(|ids| ids[0]),
        filter: None,
    };
    map.crm = SideSpec {
        entity: config.crm.entity.clone(),
        fields: crm_fields.into_specs(),
        key: crm_key,
        company: company.map(|ids| ids[1]),
        filter: None,
    };

    for (side, source) in [
        (Side::Erp, &config.filters.erp),
        (Side::Crm, &config.filters.crm),
    ] {
        let Some(source) = source else { continue };
        let spec = map.side(side);
        let known: Vec<&str> = spec
            .fields
            .iter()
            .map(|field| field.name.as_str())
            .collect();
        let filter = Filter::compile(source, |name| spec.id_of(name), &known.join(", "))
            .map_err(|message| error(format!("/filters/{}", side_key(side)), message))?;
        map.side_mut(side).filter = Some(filter);
    }

    let mut depends_on: Vec<String> = Vec::new();
    let lookups = map.lines.iter().flat_map(|line| match &line.carry {
        Carry::Lookup(lookup) => lookup.map.iter().cloned().collect(),
        Carry::Polymorphic(polymorphic) => polymorphic
            .targets
            .iter()
            .filter_map(|target| target.map.clone())
            .collect(),
        _ => Vec::new(),
    });
    for name in config.depends_on.iter().cloned().chain(lookups) {
        if name != map.name && !depends_on.contains(&name) {
            depends_on.push(name);
        }
    }
    map.depends_on = depends_on;
    Ok(map)
}

fn compile_line(
    line: &FieldConfig,
    path: &str,
    fields: &mut [Fields; 2],
    config: &MapConfig,
) -> Result<Line, ConfigError> {
    let how_many = [
        line.value_map.is_some(),
        line.lookup.is_some(),
        line.constant.is_some(),
    ]
    .into_iter()
    .filter(|set| *set)
    .count();
    if how_many > 1 {
        return Err(error(
            path,
            "value_map, lookup and constant exclude each other; a line carries its value one way",
        ));
    }
    if line.erp.is_none() && line.crm.is_none() {
        return Err(error(
            path,
            "a line names an erp field, a crm field or both",
        ));
    }
    let direction = direction_of(line, path)?;
    if line.constant.is_none() {
        for (side, name) in [(Side::Erp, &line.erp), (Side::Crm, &line.crm)] {
            if name.is_none() {
                return Err(error(
                    path,
                    format!(
                        "the line names no {} field; only a constant names one side",
                        side_key(side)
                    ),
                ));
            }
        }
    }
    if line.constant.is_some() && line.default.is_some() {
        return Err(error(
            format!("{path}/default"),
            "a constant is always written; it takes no default",
        ));
    }
    let erp_kind = line.erp_kind.or(line.kind).map(KindConfig::kind);
    let crm_kind = line.crm_kind.or(line.kind).map(KindConfig::kind);

    let (carry, erp_kind, crm_kind) = if let Some(pairs) = &line.value_map {
        let (pairs, erp_kind, crm_kind) =
            compile_value_map(pairs, erp_kind, crm_kind, direction, path)?;
        (Carry::ValueMap(pairs), Some(erp_kind), Some(crm_kind))
    } else if let Some(lookup) = &line.lookup {
        for (side, kind) in [(Side::Erp, erp_kind), (Side::Crm, crm_kind)] {
            if kind.is_some_and(|kind| kind != ValueKind::Text) {
                return Err(error(
                    format!("{path}/{}_kind", side_key(side)),
                    "a lookup carries a key as text",
                ));
            }
        }
        if lookup.per_company && config.company.is_none() {
            return Err(error(
                format!("{path}/lookup/per_company"),
                "a lookup per company needs the map's company fields (\"company\": {\"erp\": ..., \"crm\": ...})",
            ));
        }
        let carry = match &lookup.maps {
            None => Carry::Lookup(compile_lookup(lookup, path)?),
            Some(targets) => Carry::Polymorphic(compile_polymorphic(lookup, targets, line, path)?),
        };
        (carry, Some(ValueKind::Text), Some(ValueKind::Text))
    } else if let Some(constant) = &line.constant {
        let target_kind = if direction == Direction::ToCrm {
            crm_kind
        } else {
            erp_kind
        };
        let value = literal(constant, target_kind)
            .map_err(|message| error(format!("{path}/constant"), message))?;
        let kind = target_kind.or(value.kind());
        if direction == Direction::ToCrm {
            (Carry::Constant(value), None, kind)
        } else {
            (Carry::Constant(value), kind, None)
        }
    } else {
        let kind = match (erp_kind, crm_kind) {
            (Some(erp), Some(crm))
                if erp != crm && erp != ValueKind::Any && crm != ValueKind::Any =>
            {
                return Err(error(
                    path,
                    format!(
                        "a copy carries one kind, but erp_kind is {} and crm_kind is {}; use a value_map to convert",
                        kind_name(erp),
                        kind_name(crm)
                    ),
                ));
            }
            (erp, crm) => erp.or(crm),
        };
        (Carry::Copy, erp_kind.or(kind), crm_kind.or(kind))
    };

    let erp = match &line.erp {
        Some(name) => Some(fields[0].declare(name, erp_kind, &format!("{path}/erp"))?),
        None => None,
    };
    let crm = match &line.crm {
        Some(name) => Some(fields[1].declare(name, crm_kind, &format!("{path}/crm"))?),
        None => None,
    };

    let mut carry = carry;
    if let (Carry::Polymorphic(polymorphic), Some(lookup)) = (&mut carry, &line.lookup)
        && let Some(type_name) = &lookup.type_field
    {
        polymorphic.type_field = fields[1].declare(
            type_name,
            Some(ValueKind::Text),
            &format!("{path}/lookup/type_field"),
        )?;
    }
    let mut compiled = Line {
        erp,
        crm,
        direction,
        carry,
        default_to_erp: None,
        default_to_crm: None,
        note: line.note.clone(),
    };
    if let Some(default) = &line.default {
        for target in [Side::Erp, Side::Crm] {
            if !direction.flows_from(target.other()) {
                continue;
            }
            let kind = compiled
                .field(target)
                .and_then(|id| fields[usize::from(target == Side::Crm)].kind(id));
            let value = literal(default, kind).map_err(|message| {
                error(
                    format!("{path}/default"),
                    format!("as a {} value: {message}", side_key(target)),
                )
            })?;
            match target {
                Side::Erp => compiled.default_to_erp = Some(value),
                Side::Crm => compiled.default_to_crm = Some(value),
            }
        }
    }
    Ok(compiled)
}

/// A lookup to one map.
fn compile_lookup(lookup: &config::LookupConfig, path: &str) -> Result<Lookup, ConfigError> {
    if let Some(type_field) = &lookup.type_field {
        return Err(error(
            format!("{path}/lookup/type_field"),
            format!(
                "{type_field} would name the table of a polymorphic lookup, but the lookup names one map; list the maps it may point into in maps"
            ),
        ));
    }
    let mut entities = [String::new(), String::new()];
    for (slot, (name, value)) in [
        ("erp_entity", &lookup.erp_entity),
        ("crm_entity", &lookup.crm_entity),
    ]
    .into_iter()
    .enumerate()
    {
        match value {
            None => {
                return Err(error(
                    format!("{path}/lookup"),
                    format!(
                        "missing field `{name}`: a lookup names the erp_entity and crm_entity of the map it points into (or maps, for a polymorphic lookup)"
                    ),
                ));
            }
            Some(value) if value.is_empty() => {
                return Err(error(
                    format!("{path}/lookup/{name}"),
                    "the entity name must not be empty",
                ));
            }
            Some(value) => entities[slot] = value.clone(),
        }
    }
    let [erp_entity, crm_entity] = entities;
    Ok(Lookup {
        map: lookup.map.clone(),
        erp_entity,
        crm_entity,
        per_company: lookup.per_company,
    })
}

/// A polymorphic lookup: several target maps and the CRM type field naming which.
fn compile_polymorphic(
    lookup: &config::LookupConfig,
    targets: &[config::LookupTargetConfig],
    line: &FieldConfig,
    path: &str,
) -> Result<Polymorphic, ConfigError> {
    let at = format!("{path}/lookup");
    for (name, given) in [
        ("map", lookup.map.is_some()),
        ("crm_entity", lookup.crm_entity.is_some()),
    ] {
        if given {
            return Err(error(
                format!("{at}/{name}"),
                format!(
                    "a polymorphic lookup names the {name} of each map it may point into in maps, not once for all"
                ),
            ));
        }
    }
    if targets.len() < 2 {
        return Err(error(
            format!("{at}/maps"),
            "a polymorphic lookup points into at least two maps; a lookup to one map names its erp_entity and crm_entity",
        ));
    }
    let Some(type_name) = &lookup.type_field else {
        return Err(error(
            format!("{at}/type_field"),
            format!(
                "a polymorphic lookup needs type_field, the CRM field next to {} naming the CRM table the value points into",
                line.crm.as_deref().unwrap_or("the lookup")
            ),
        ));
    };
    if line.crm.as_deref() == Some(type_name.as_str()) {
        return Err(error(
            format!("{at}/type_field"),
            format!(
                "{type_name} is the lookup's own CRM field; the type goes in a field of its own"
            ),
        ));
    }
    if let Some(erp_entity) = &lookup.erp_entity
        && erp_entity.is_empty()
    {
        return Err(error(
            format!("{at}/erp_entity"),
            "the entity name must not be empty",
        ));
    }
    let mut compiled: Vec<Lookup> = Vec::with_capacity(targets.len());
    for (index, target) in targets.iter().enumerate() {
        let here = format!("{at}/maps/{index}");
        let Some(erp_entity) = target.erp_entity.as_ref().or(lookup.erp_entity.as_ref()) else {
            return Err(error(
                format!("{here}/erp_entity"),
                "the target's ERP entity is not given, here or as the lookup's erp_entity",
            ));
        };
        if erp_entity.is_empty() {
            return Err(error(
                format!("{here}/erp_entity"),
                "the entity name must not be empty",
            ));
        }
        if target.crm_entity.is_empty() {
            return Err(error(
                format!("{here}/crm_entity"),
                "the entity name must not be empty",
            ));
        }
        if let Some(earlier) = compiled
            .iter()
            .position(|known| known.crm_entity.eq_ignore_ascii_case(&target.crm_entity))
        {
            return Err(error(
                format!("{here}/crm_entity"),
                format!(
                    "{} is also the CRM entity of maps/{earlier}; {type_name} names the target by its CRM entity, so each target needs its own",
                    target.crm_entity
                ),
            ));
        }
        compiled.push(Lookup {
            map: target.map.clone(),
            erp_entity: erp_entity.clone(),
            crm_entity: target.crm_entity.clone(),
            per_company: lookup.per_company,
        });
    }
    Ok(Polymorphic {
        targets: compiled,
        // Declared after the line's own fields (see `compile_line`), so it follows them.
        type_field: FieldId::MAX,
        per_company: lookup.per_company,
    })
}

type Pairs = Vec<(Value, Value)>;

fn compile_value_map(
    pairs: &[config::ValuePair],
    erp_kind: Option<ValueKind>,
    crm_kind: Option<ValueKind>,
    direction: Direction,
    path: &str,
) -> Result<(Pairs, ValueKind, ValueKind), ConfigError> {
    if pairs.is_empty() {
        return Err(error(
            format!("{path}/value_map"),
            "a value map needs at least one pair",
        ));
    }
    let mut kinds = [erp_kind, crm_kind];
    let mut out: Pairs = Vec::with_capacity(pairs.len());
    for (at, pair) in pairs.iter().enumerate() {
        let mut values = [Value::Null, Value::Null];
        for (slot, (side, json)) in [(Side::Erp, &pair.erp), (Side::Crm, &pair.crm)]
            .into_iter()
            .enumerate()
        {
            let here = format!("{path}/value_map/{at}/{}", side_key(side));
            if json.is_null() {
                return Err(error(
                    here,
                    "a value map pairs values; null maps to null by itself",
                ));
            }
            let value = literal(json, kinds[slot]).map_err(|message| error(&here, message))?;
            let kind = value.kind();
            match kinds[slot] {
                None => kinds[slot] = kind,
                Some(ValueKind::Any) => {}
                Some(expected) if Some(expected) != kind => {
                    return Err(error(
                        here,
                        format!(
                            "{} is a {} but the other {} values are {}",
                            json,
                            kind.map_or("null", kind_name),
                            side_key(side),
                            kind_name(expected)
                        ),
                    ));
                }
                Some(_) => {}
            }
            if direction.flows_from(side)
                && let Some(earlier) = out.iter().position(|pair| {
                    let earlier = if slot == 0 { &pair.0 } else { &pair.1 };
                    same(earlier, &value)
                })
            {
                return Err(error(
                    here,
                    format!(
                        "{json} is also in pair {earlier}; a value read from the {} side must map to one value",
                        side_key(side)
                    ),
                ));
            }
            values[slot] = value;
        }
        let [erp, crm] = values;
        out.push((erp, crm));
    }
    Ok((
        out,
        kinds[0].unwrap_or(ValueKind::Text),
        kinds[1].unwrap_or(ValueKind::Text),
    ))
}

/// Each direction writes a target field at most once, and every key field of a side
/// the map writes to, from a key field of the source (a delete carries only the key).
fn check_targets(
    map: &Map,
    fields: &[Fields; 2],
    keys: &[Vec<FieldId>; 2],
) -> Result<(), ConfigError> {
    for source in [Side::Erp, Side::Crm] {
        let target = source.other();
        let target_index = usize::from(target == Side::Crm);
        let source_index = usize::from(source == Side::Crm);
        let mut written: Vec<(FieldId, usize)> = Vec::new();
        for (at, line) in map.lines.iter().enumerate() {
            if !line.direction.flows_from(source) {
                continue;
            }
            let Some(to) = line.field(target) else {
                continue;
            };
            let path = format!("/fields/{at}/{}", side_key(target));
            if let Some((_, earlier)) = written.iter().find(|(field, _)| *field == to) {
                return Err(error(
                    path,
                    format!(
                        "{} is written by fields[{earlier}] too, in the same direction",
                        fields[target_index].names[to as usize]
                    ),
                ));
            }
            written.push((to, at));
            if let (Side::Crm, Some(type_field)) = (target, line.type_field()) {
                let path = format!("/fields/{at}/lookup/type_field");
                if keys[target_index].contains(&type_field) {
                    return Err(error(
                        path,
                        format!(
                            "{} is a key field of the crm side; a lookup's type field is written from the lookup",
                            fields[target_index].names[type_field as usize]
                        ),
                    ));
                }
                if let Some((_, earlier)) = written.iter().find(|(field, _)| *field == type_field) {
                    return Err(error(
                        path,
                        format!(
                            "{} is written by fields[{earlier}] too, in the same direction",
                            fields[target_index].names[type_field as usize]
                        ),
                    ));
                }
                written.push((type_field, at));
            }
            let target_is_key = keys[target_index].contains(&to);
            let from_key = line
                .field(source)
                .is_some_and(|from| keys[source_index].contains(&from));
            if target_is_key && !from_key && !matches!(line.carry, Carry::Constant(_)) {
                return Err(error(
                    format!("/fields/{at}/{}", side_key(source)),
                    format!(
                        "{} is a key field of the {} side, so it must come from a key field of the {} side (a delete carries only the key)",
                        fields[target_index].names[to as usize],
                        side_key(target),
                        side_key(source)
                    ),
                ));
            }
        }
        if written.is_empty() {
            continue;
        }
        for (at, key) in keys[target_index].iter().enumerate() {
            if !written.iter().any(|(field, _)| field == key) {
                return Err(error(
                    format!("/{}/key/{at}", side_key(target)),
                    format!(
                        "key field {} is written by no line flowing to the {} side; every write needs the whole key",
                        fields[target_index].names[*key as usize],
                        side_key(target)
                    ),
                ));
            }
        }
    }
    Ok(())
}
