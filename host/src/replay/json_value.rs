//! The JSON form of a [`Value`] in change sets, links, rows and replay output.
//!
//! Plain JSON where it is unambiguous: `null`, `true`/`false`, integers (`42`), floats
//! (`1.5`, `1.0`), text (`"abc"`). Tagged objects for the rest, so nothing is lost:
//! `{"decimal": "10.50"}`, `{"timestamp": "2024-05-01T10:00:00.5+02:00"}` (an instant
//! with its offset) or `{"timestamp": "2024-05-01T10:00:00"}` (no zone),
//! `{"date": "2024-05-01"}`, `{"bytes": "<base64>"}`, `{"json": <any JSON>}`, and
//! `{"float": "NaN" | "inf" | "-inf"}` for the floats JSON cannot write.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, SecondsFormat};
use serde_json::{Value as Json, json};

use crate::change::{Timestamp, Value};

/// Reads a value from its JSON form; the error says what is wrong with it.
pub fn value_from_json(json: &Json) -> Result<Value, String> {
    match json {
        Json::Null => Ok(Value::Null),
        Json::Bool(b) => Ok(Value::Boolean(*b)),
        Json::Number(number) => {
            if let Some(n) = number.as_i64() {
                Ok(Value::Integer(n))
            } else if number.is_f64() {
                number
                    .as_f64()
                    .map(Value::Float)
                    .ok_or_else(|| format!("{number} is not a number dualwrite can hold"))
            } else {
                Err(format!(
                    "{number} does not fit a 64-bit integer; write it as {{\"decimal\": \"{number}\"}}"
                ))
            }
        }
        Json::String(text) => Ok(Value::Text(text.clone())),
        Json::Array(_) => {
            Err("arrays are not values; write JSON documents as {\"json\": [...]}".to_owned())
        }
        Json::Object(object) => {
            let mut entries = object.iter();
            let (Some((tag, inner)), None) = (entries.next(), entries.next()) else {
                return Err(format!(
                    "a tagged value has exactly one key (decimal, timestamp, date, bytes, json, \
                     float); this object has {}",
                    object.len()
                ));
            };
            tagged_value(tag, inner)
        }
    }
}

fn tagged_value(tag: &str, inner: &Json) -> Result<Value, String> {
    let text = || {
        inner
            .as_str()
            .ok_or_else(|| format!("the value of \"{tag}\" must be a string"))
    };
    match tag {
        "decimal" => {
            let digits = text()?;
            check_decimal(digits)?;
            Ok(Value::Decimal(digits.to_owned()))
        }
        "timestamp" => parse_timestamp(text()?).map(Value::Timestamp),
        "date" => {
            let date = NaiveDate::parse_from_str(text()?, "%Y-%m-%d")
                .map_err(|error| format!("invalid date (want YYYY-MM-DD): {error}"))?;
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
            i32::try_from((date - epoch).num_days())
                .map(Value::Date)
                .map_err(|_| "date out of range".to_owned())
        }
        "bytes" => BASE64
            .decode(text()?)
            .map(Value::Bytes)
            .map_err(|error| format!("invalid base64 in bytes: {error}")),
        "json" => Ok(Value::Json(inner.to_string())),
        "float" => match inner {
            Json::Number(number) => number
                .as_f64()
                .map(Value::Float)
                .ok_or_else(|| "invalid float".to_owned()),
            Json::String(special) => match special.as_str() {
                "NaN" => Ok(Value::Float(f64::NAN)),
                "inf" => Ok(Value::Float(f64::INFINITY)),
                "-inf" => Ok(Value::Float(f64::NEG_INFINITY)),
                other => Err(format!("unknown float \"{other}\" (use NaN, inf or -inf)")),
            },
            _ => Err("the value of \"float\" must be a number or NaN/inf/-inf".to_owned()),
        },
        other => Err(format!(
            "unknown value tag \"{other}\" (known: decimal, timestamp, date, bytes, json, float)"
        )),
    }
}

/// Checks the canonical decimal grammar: `-?[0-9]+(\.[0-9]+)?`.
pub fn check_decimal(digits: &str) -> Result<(), String> {
    let unsigned = digits.strip_prefix('-').unwrap_or(digits);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if all_digits(whole) && fraction.is_none_or(all_digits) {
        Ok(())
    } else {
        Err(format!(
            "\"{digits}\" is not a canonical decimal (digits, optionally one '.', optional leading '-')"
        ))
    }
}

fn parse_timestamp(text: &str) -> Result<Timestamp, String> {
    if let Ok(instant) = DateTime::<FixedOffset>::parse_from_rfc3339(text) {
        let offset_minutes = i16::try_from(instant.offset().local_minus_utc() / 60)
            .map_err(|_| "offset out of range".to_owned())?;
        return Ok(Timestamp {
            seconds: instant.timestamp(),
            nanos: instant.timestamp_subsec_nanos(),
            offset_minutes: Some(offset_minutes),
        });
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|local| {
            let utc = local.and_utc();
            Timestamp {
                seconds: utc.timestamp(),
                nanos: utc.timestamp_subsec_nanos(),
                offset_minutes: None,
            }
        })
        .map_err(|_| {
            format!(
                "invalid timestamp \"{text}\" (want RFC 3339 like 2024-05-01T10:00:00Z, or \
                 2024-05-01T10:00:00 without a zone)"
            )
        })
}

/// Writes a value in its JSON form (the inverse of [`value_from_json`]).
pub fn value_to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(n) => json!(n),
        Value::Float(f) if f.is_nan() => json!({"float": "NaN"}),
        Value::Float(f) if f.is_infinite() => {
            json!({"float": if *f > 0.0 { "inf" } else { "-inf" }})
        }
        Value::Float(f) => json!(f),
        Value::Decimal(digits) => json!({ "decimal": digits }),
        Value::Text(text) => json!(text),
        Value::Timestamp(timestamp) => json!({ "timestamp": format_timestamp(timestamp) }),
        Value::Date(days) => {
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
            let date = epoch
                .checked_add_signed(chrono::Duration::days(i64::from(*days)))
                .map(|date| date.format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| format!("day {days}"));
            json!({ "date": date })
        }
        Value::Bytes(bytes) => json!({ "bytes": BASE64.encode(bytes) }),
        Value::Json(text) => match serde_json::from_str::<Json>(text) {
            Ok(document) => json!({ "json": document }),
            // Not valid JSON (a broken plugin or store); keep the text visible.
            Err(_) => json!({ "json-text": text }),
        },
    }
}

fn format_timestamp(timestamp: &Timestamp) -> String {
    let Some(utc) = DateTime::from_timestamp(timestamp.seconds, timestamp.nanos) else {
        return format!("{}s+{}ns", timestamp.seconds, timestamp.nanos);
    };
    match timestamp
        .offset_minutes
        .and_then(|minutes| FixedOffset::east_opt(i32::from(minutes) * 60))
    {
        Some(offset) => utc
            .with_timezone(&offset)
            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => utc.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(json: Json) -> Json {
        value_to_json(&value_from_json(&json).expect("valid value"))
    }

    #[test]
    fn every_kind_round_trips_through_json() {
        for json in [
            json!(null),
            json!(true),
            json!(-42),
            json!(1.5),
            json!(1.0),
            json!("text"),
            json!({"decimal": "-10.50"}),
            json!({"timestamp": "2024-05-01T10:00:00.250+02:00"}),
            json!({"timestamp": "2024-05-01T10:00:00Z"}),
            json!({"timestamp": "2024-05-01T10:00:00"}),
            json!({"date": "1969-12-31"}),
            json!({"bytes": "AAEC"}),
            json!({"json": {"a": [1, 2]}}),
            json!({"float": "NaN"}),
            json!({"float": "-inf"}),
        ] {
            assert_eq!(round_trip(json.clone()), json);
        }
    }

    #[test]
    fn decimals_keep_their_scale_and_never_become_floats() {
        assert_eq!(
            value_from_json(&json!({"decimal": "10.50"})),
            Ok(Value::Decimal("10.50".into()))
        );
        assert_ne!(
            value_from_json(&json!({"decimal": "10.50"})),
            value_from_json(&json!({"decimal": "10.5"}))
        );
    }

    #[test]
    fn bad_values_are_named() {
        for (json, needle) in [
            (json!({"decimal": "1e5"}), "canonical decimal"),
            (json!({"decimal": 10}), "must be a string"),
            (json!({"money": "1"}), "unknown value tag \"money\""),
            (json!({"date": "2024-13-01"}), "invalid date"),
            (json!({"timestamp": "yesterday"}), "invalid timestamp"),
            (json!([1]), "arrays are not values"),
            (json!({"a": 1, "b": 2}), "exactly one key"),
            (
                json!(18446744073709551615u64),
                "does not fit a 64-bit integer",
            ),
        ] {
            let error = value_from_json(&json).expect_err("invalid value");
            assert!(
                error.contains(needle),
                "{error:?} should mention {needle:?}"
            );
        }
    }
}
