//! The standard map config: which companies a map syncs and whether lookups are translated.

use serde_json::{Map, Value as Json};

use crate::ConfigError;

use super::RowKey;

/// The config options a map accepts, and how its JSON Schema describes them.
///
/// A map accepts `companies` and `resolve_lookups` only when it gives them a description
/// here; any other option is refused. [`parse`](Self::parse) checks the admin's JSON once
/// per `configure`, [`schema`](Self::schema) renders the JSON Schema (draft 2020-12) that
/// `describe` reports.
///
/// ```
/// use dualwrite_guest::table::ConfigOptions;
///
/// const OPTIONS: ConfigOptions = ConfigOptions {
///     companies: Some("Company codes this map syncs. Empty or absent: every company."),
///     ..ConfigOptions::NONE
/// };
/// let config = OPTIONS.parse(r#"{"companies": ["USMF"]}"#).unwrap();
/// assert!(config.syncs_company("usmf") && !config.syncs_company("DEMF"));
/// let error = OPTIONS.parse(r#"{"resolve_lookups": false}"#).unwrap_err();
/// assert_eq!(error.path, "/resolve_lookups");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigOptions {
    /// A description of the whole config, if any (e.g. why a map has no options).
    pub description: Option<&'static str>,
    /// Accept `companies` (an array of company codes; empty or absent: every company),
    /// described so.
    pub companies: Option<&'static str>,
    /// Accept `resolve_lookups` (a boolean, default true), described so.
    pub resolve_lookups: Option<&'static str>,
}

impl ConfigOptions {
    /// The usual description of `companies`.
    pub const COMPANIES: &'static str = "Company (legal entity) codes this map syncs, compared ignoring ASCII case. Empty or absent: every company.";

    /// The usual description of `resolve_lookups`.
    pub const RESOLVE_LOOKUPS: &'static str = "Translate lookup fields through the links of the maps they refer to. When false, lookup values are copied as text (useful before those maps run).";

    /// No options: only `{}` is accepted.
    pub const NONE: ConfigOptions = ConfigOptions {
        description: None,
        companies: None,
        resolve_lookups: None,
    };

    /// `companies` and `resolve_lookups`, with the usual descriptions.
    pub const STANDARD: ConfigOptions = ConfigOptions {
        description: None,
        companies: Some(ConfigOptions::COMPANIES),
        resolve_lookups: Some(ConfigOptions::RESOLVE_LOOKUPS),
    };

    /// Parses and checks the admin's JSON; unknown options are refused. Errors name the
    /// offending part by JSON pointer (`/companies/1`).
    pub fn parse(&self, text: &str) -> Result<CommonConfig, ConfigError> {
        let options = parse_object(text)?;
        let mut config = CommonConfig::new();
        for (name, value) in &options {
            match name.as_str() {
                "companies" if self.companies.is_some() => {
                    config.companies = parse_companies(value)?;
                }
                "resolve_lookups" if self.resolve_lookups.is_some() => {
                    config.resolve_lookups = value.as_bool().ok_or_else(|| {
                        ConfigError::new(
                            "/resolve_lookups",
                            format!("must be true or false, not {}", json_kind(value)),
                        )
                    })?;
                }
                other => {
                    return Err(ConfigError::new(
                        pointer_token(other),
                        format!("unknown option {other:?}; {}", self.known()),
                    ));
                }
            }
        }
        Ok(config)
    }

    /// The options this map accepts, for the unknown-option message.
    fn known(&self) -> &'static str {
        match (self.companies.is_some(), self.resolve_lookups.is_some()) {
            (true, true) => r#"the options are "companies" and "resolve_lookups""#,
            (true, false) => r#"the only option is "companies""#,
            (false, true) => r#"the only option is "resolve_lookups""#,
            (false, false) => "this map has no options (use {})",
        }
    }

    /// The JSON Schema (draft 2020-12) of the config, as `describe` reports it.
    pub fn schema(&self) -> String {
        let mut schema = String::from(
            "{\n  \"$schema\": \"https://json-schema.org/draft/2020-12/schema\",\n  \"title\": \"Map config\",\n",
        );
        if let Some(description) = self.description {
            schema.push_str("  \"description\": ");
            push_json_string(&mut schema, description);
            schema.push_str(",\n");
        }
        schema.push_str("  \"type\": \"object\",\n");
        let properties = [
            (
                "companies",
                self.companies,
                "      \"type\": \"array\",\n      \"items\": { \"type\": \"string\", \"minLength\": 1 },\n      \"default\": []\n",
            ),
            (
                "resolve_lookups",
                self.resolve_lookups,
                "      \"type\": \"boolean\",\n      \"default\": true\n",
            ),
        ];
        let mut first = true;
        schema.push_str("  \"properties\": {");
        for (name, description, rest) in properties {
            let Some(description) = description else {
                continue;
            };
            schema.push_str(if first { "\n    \"" } else { ",\n    \"" });
            first = false;
            schema.push_str(name);
            schema.push_str("\": {\n      \"description\": ");
            push_json_string(&mut schema, description);
            schema.push_str(",\n");
            schema.push_str(rest);
            schema.push_str("    }");
        }
        schema.push_str(if first { "},\n" } else { "\n  },\n" });
        schema.push_str("  \"additionalProperties\": false\n}");
        schema
    }
}

/// The parsed standard config; the default syncs every company and translates lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonConfig {
    /// Company codes synced; empty means all.
    companies: Vec<String>,
    /// Whether lookups are translated through links.
    resolve_lookups: bool,
}

impl Default for CommonConfig {
    fn default() -> Self {
        CommonConfig::new()
    }
}

impl CommonConfig {
    /// The config of `{}`: every company, lookups translated. Allocates nothing.
    pub const fn new() -> CommonConfig {
        CommonConfig {
            companies: Vec::new(),
            resolve_lookups: true,
        }
    }

    /// The company codes synced; empty means all.
    pub fn companies(&self) -> &[String] {
        &self.companies
    }

    /// Whether lookups are translated through links; when not, lookup values are copied
    /// as text.
    pub fn resolve_lookups(&self) -> bool {
        self.resolve_lookups
    }

    /// Whether the map syncs rows of company `code` (compared ignoring ASCII case).
    pub fn syncs_company(&self, code: &str) -> bool {
        self.companies.is_empty()
            || self
                .companies
                .iter()
                .any(|company| company.eq_ignore_ascii_case(code))
    }

    /// Whether the map syncs the row with this key: [`syncs_company`](Self::syncs_company)
    /// of its company. A key without a company passes.
    pub fn syncs(&self, key: &RowKey<'_>) -> bool {
        key.company_code()
            .is_none_or(|company| self.syncs_company(company))
    }
}

/// Appends `text` as a JSON string literal, escaped as `serde_json` writes it.
pub(super) fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let byte = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[byte >> 4]));
                out.push(char::from(HEX[byte & 0xf]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn parse_companies(value: &Json) -> Result<Vec<String>, ConfigError> {
    let Json::Array(items) = value else {
        return Err(ConfigError::new(
            "/companies",
            format!(
                "must be an array of company codes, not {}",
                json_kind(value)
            ),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Json::String(code) if !code.is_empty() => Ok(code.clone()),
            Json::String(_) => Err(ConfigError::new(
                format!("/companies/{index}"),
                "a company code must not be empty",
            )),
            other => Err(ConfigError::new(
                format!("/companies/{index}"),
                format!("a company code must be a string, not {}", json_kind(other)),
            )),
        })
        .collect()
}

/// Parses a config document that must be a JSON object: its options, or an error at `""`
/// (`not valid JSON: ...`, `must be a JSON object, not an array`). For maps with options
/// of their own.
pub fn parse_object(text: &str) -> Result<Map<String, Json>, ConfigError> {
    let document: Json = serde_json::from_str(text)
        .map_err(|error| ConfigError::new("", format!("not valid JSON: {error}")))?;
    match document {
        Json::Object(options) => Ok(options),
        other => Err(ConfigError::new(
            "",
            format!("must be a JSON object, not {}", json_kind(&other)),
        )),
    }
}

/// `/name` as a JSON pointer (RFC 6901): `~` and `/` escaped.
pub fn pointer_token(name: &str) -> String {
    format!("/{}", name.replace('~', "~0").replace('/', "~1"))
}

/// What a JSON value is, for messages: `null`, `a boolean`, `a number`, `a string`, `an
/// array` or `an object`.
pub fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}
