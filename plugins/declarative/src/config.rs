//! The map's config as the admin writes it: serde structs that refuse unknown keys, read
//! with the path of every error kept (`/fields/3/value_map`), before `compile` checks
//! what serde cannot.

use serde::Deserialize;
use serde_json::Value as Json;

use dualwrite_guest::ConfigError;

/// The whole config of one declarative map.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapConfig {
    /// The plugin name `describe` reports (usually the map's name); default `declarative`.
    pub name: Option<String>,
    /// One sentence on what the map does, for `describe`.
    pub summary: Option<String>,
    /// The ERP entity.
    pub erp: EntityConfig,
    /// The CRM entity.
    pub crm: EntityConfig,
    /// The company (legal entity) field of each side, for lookups per company.
    pub company: Option<CompanyConfig>,
    /// The mapping lines.
    pub fields: Vec<FieldConfig>,
    /// A CEL expression per source side; a change passes when it is true.
    #[serde(default)]
    pub filters: FiltersConfig,
    /// Maps that must sync first, beyond those named by lookups.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Translate lookups through links (default); when false they are copied as text.
    #[serde(default = "yes")]
    pub resolve_lookups: bool,
}

fn yes() -> bool {
    true
}

/// One side's entity.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityConfig {
    /// The table name.
    pub entity: String,
    /// The key fields, in order.
    pub key: Vec<String>,
    /// Fields read by filters only (not mapped).
    #[serde(default)]
    pub fields: Vec<ExtraField>,
}

/// A field declared without a mapping line, for filters to read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraField {
    /// The column name.
    pub name: String,
    /// Its kind; default text.
    pub kind: Option<KindConfig>,
}

/// The company field of each side.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompanyConfig {
    /// The ERP company field.
    pub erp: String,
    /// The CRM company field.
    pub crm: String,
}

/// The filters, one per source side.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiltersConfig {
    /// Applied to changes from the ERP side.
    pub erp: Option<String>,
    /// Applied to changes from the CRM side.
    pub crm: Option<String>,
}

/// One mapping line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    /// The ERP field.
    pub erp: Option<String>,
    /// The CRM field.
    pub crm: Option<String>,
    /// Which way the value flows; default `both` (a constant's is implied by its field).
    pub direction: Option<DirectionConfig>,
    /// The kind of both fields.
    pub kind: Option<KindConfig>,
    /// The kind of the ERP field (overrides `kind`).
    pub erp_kind: Option<KindConfig>,
    /// The kind of the CRM field (overrides `kind`).
    pub crm_kind: Option<KindConfig>,
    /// Pairs of values that correspond, used both ways.
    pub value_map: Option<Vec<ValuePair>>,
    /// Written on the target when the source value is null.
    pub default: Option<Json>,
    /// Always written on the target; the line names only the target field.
    pub constant: Option<Json>,
    /// The value is the key of a row of another map, translated through its links.
    pub lookup: Option<LookupConfig>,
    /// A remark for the admin, shown with the line's transform (e.g. why a lookup to a
    /// map outside the pack is carried as text).
    pub note: Option<String>,
}

/// One pair of a value map.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValuePair {
    /// The ERP value.
    pub erp: Json,
    /// The CRM value.
    pub crm: Json,
}

/// Where a lookup points: one map (`erp_entity`, `crm_entity`, optionally `map`), or, for
/// a polymorphic lookup, several (`maps`, each naming its CRM table) with a CRM
/// `type_field` naming the table the value points into.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// The map whose rows it refers to (added to `depends_on`).
    pub map: Option<String>,
    /// That map's ERP entity (for `maps`, the default of each target's).
    pub erp_entity: Option<String>,
    /// That map's CRM entity (not with `maps`: each target names its own).
    pub crm_entity: Option<String>,
    /// Whether that map's key is (company, code), the company being this row's.
    #[serde(default)]
    pub per_company: bool,
    /// A polymorphic lookup: the maps the value may point into, tried in order.
    pub maps: Option<Vec<LookupTargetConfig>>,
    /// For `maps`: the CRM field naming the CRM table the value points into (one of the
    /// targets' `crm_entity`).
    pub type_field: Option<String>,
}

/// One map a polymorphic lookup may point into.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupTargetConfig {
    /// The map (added to `depends_on`).
    pub map: Option<String>,
    /// Its ERP entity (default: the lookup's `erp_entity`).
    pub erp_entity: Option<String>,
    /// Its CRM entity, also the value of the type field naming it.
    pub crm_entity: String,
}

/// A direction as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirectionConfig {
    /// ERP to CRM.
    ToCrm,
    /// CRM to ERP.
    ToErp,
    /// Both ways.
    Both,
}

/// A value kind as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KindConfig {
    /// Anything.
    Any,
    /// Boolean.
    Boolean,
    /// 64-bit integer.
    Integer,
    /// Binary float.
    Float,
    /// Exact decimal.
    Decimal,
    /// Text.
    Text,
    /// Timestamp.
    Timestamp,
    /// Date.
    Date,
    /// Bytes.
    Bytes,
    /// JSON document.
    Json,
}

impl KindConfig {
    /// The SDK's kind.
    pub fn kind(self) -> dualwrite_guest::ValueKind {
        use dualwrite_guest::ValueKind;
        match self {
            KindConfig::Any => ValueKind::Any,
            KindConfig::Boolean => ValueKind::Boolean,
            KindConfig::Integer => ValueKind::Integer,
            KindConfig::Float => ValueKind::Float,
            KindConfig::Decimal => ValueKind::Decimal,
            KindConfig::Text => ValueKind::Text,
            KindConfig::Timestamp => ValueKind::Timestamp,
            KindConfig::Date => ValueKind::Date,
            KindConfig::Bytes => ValueKind::Bytes,
            KindConfig::Json => ValueKind::Json,
        }
    }
}

/// Reads the config text; structural errors name their place by JSON pointer.
pub fn read(text: &str) -> Result<MapConfig, ConfigError> {
    let document: Json = serde_json::from_str(text)
        .map_err(|error| ConfigError::new("", format!("not valid JSON: {error}")))?;
    if !document.is_object() {
        return Err(ConfigError::new(
            "",
            "must be a JSON object describing the map (erp, crm, fields, ...)",
        ));
    }
    serde_path_to_error::deserialize(document).map_err(|error| {
        let mut pointer = String::new();
        for segment in error.path().iter() {
            use serde_path_to_error::Segment;
            match segment {
                Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
                Segment::Map { key } => {
                    pointer.push_str(&dualwrite_guest::table::pointer_token(key))
                }
                Segment::Enum { variant } => {
                    pointer.push_str(&dualwrite_guest::table::pointer_token(variant))
                }
                Segment::Unknown => {}
            }
        }
        ConfigError::new(pointer, error.into_inner().to_string())
    })
}

/// The JSON Schema (draft 2020-12) of the config, as `describe` reports it.
pub const SCHEMA: &str = include_str!("schema.json");
