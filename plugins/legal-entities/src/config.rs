//! The map's config: which legal entities it syncs.
//!
//! The admin writes it as JSON (see [`SCHEMA`]); [`Config::parse`] checks it once per
//! `configure`, so `transform` only reads the parsed form.
//!
//! Trimmed from `customer-groups/src/config.rs` (the plugins share no crate): this map has
//! no lookups, so no `resolve_lookups`. Fix a bug in both.

use dualwrite_guest::ConfigError;
use serde_json::Value as Json;

/// The JSON Schema (draft 2020-12) of the config, as `describe` reports it.
pub(crate) const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Map config",
  "type": "object",
  "properties": {
    "companies": {
      "description": "Legal entity codes (LEGALENTITYID, cdm_companycode) this map syncs, compared ignoring ASCII case. Empty or absent: every legal entity.",
      "type": "array",
      "items": { "type": "string", "minLength": 1 },
      "default": []
    }
  },
  "additionalProperties": false
}"#;

/// The parsed config.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Config {
    /// Legal entity codes synced; empty means all.
    companies: Vec<String>,
}

impl Config {
    /// Parses and checks the admin's JSON; unknown options are refused. Errors name the
    /// offending part by JSON pointer.
    pub(crate) fn parse(text: &str) -> Result<Config, ConfigError> {
        let document: Json = serde_json::from_str(text)
            .map_err(|error| ConfigError::new("", format!("not valid JSON: {error}")))?;
        let Json::Object(options) = document else {
            return Err(ConfigError::new(
                "",
                format!("must be a JSON object, not {}", json_kind(&document)),
            ));
        };
        let mut config = Config::default();
        for (name, value) in &options {
            match name.as_str() {
                "companies" => config.companies = parse_companies(value)?,
                other => {
                    return Err(ConfigError::new(
                        pointer_token(other),
                        format!("unknown option {other:?}; the only option is \"companies\""),
                    ));
                }
            }
        }
        Ok(config)
    }

    /// Whether the map syncs the legal entity `code`.
    pub(crate) fn syncs_company(&self, code: &str) -> bool {
        self.companies.is_empty()
            || self
                .companies
                .iter()
                .any(|company| company.eq_ignore_ascii_case(code))
    }
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

/// `/name` as a JSON pointer (RFC 6901): `~` and `/` escaped.
fn pointer_token(name: &str) -> String {
    format!("/{}", name.replace('~', "~0").replace('/', "~1"))
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}
