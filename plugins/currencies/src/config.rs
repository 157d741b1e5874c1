//! The map's config. Currencies are shared by every company and the map has no lookups,
//! so it has no options: only `{}` is accepted.
//!
//! The admin writes it as JSON (see [`SCHEMA`]); [`Config::parse`] checks it once per
//! `configure`.
//!
//! Trimmed from `customer-groups/src/config.rs` (the plugins share no crate): fix a bug in
//! both.

use dualwrite_guest::ConfigError;
use serde_json::Value as Json;

/// The JSON Schema (draft 2020-12) of the config, as `describe` reports it.
pub(crate) const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Map config",
  "description": "The currencies map has no options: currencies are not per company and the map has no lookups.",
  "type": "object",
  "properties": {},
  "additionalProperties": false
}"#;

/// The parsed config (empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Config;

impl Config {
    /// Parses and checks the admin's JSON; every option is unknown. Errors name the
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
        if let Some(name) = options.keys().next() {
            return Err(ConfigError::new(
                pointer_token(name),
                format!("unknown option {name:?}; this map has no options (use {{}})"),
            ));
        }
        Ok(Config)
    }
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
