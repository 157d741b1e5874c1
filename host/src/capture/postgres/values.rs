//! PostgreSQL values <-> [`Value`], through their text forms.
//!
//! pgoutput sends column values in text form, and the apply side binds every parameter
//! as text cast to the column's type, so one codec serves capture, reads and writes. The
//! session settings ([`super::connection`]) fix the text forms: instants in UTC, ISO
//! dates, shortest exact floats, hex bytea. A text that does not parse as its column's
//! kind (`infinity`, numeric `NaN`, a type the engine has no kind for) is kept as
//! [`Value::Text`], never dropped or altered.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};

use crate::change::{Fidelity, Timestamp, Value, ValueKind};

/// The kind and decimal scale of a column from its type as `format_type` prints it
/// (`numeric(18,2)`, `timestamp with time zone`, `character varying(40)`, ...).
pub(crate) fn kind_of_type(declared: &str) -> (ValueKind, Option<u32>) {
    let base = declared.split('(').next().unwrap_or_default().trim();
    if declared.ends_with("[]") {
        return (ValueKind::Any, None);
    }
    let kind = match base {
        "boolean" => ValueKind::Boolean,
        "smallint" | "integer" | "bigint" | "oid" => ValueKind::Integer,
        "real" | "double precision" => ValueKind::Float,
        "numeric" => {
            let scale = declared
                .split_once(',')
                .and_then(|(_, rest)| rest.trim_end_matches(')').trim().parse().ok())
                .or_else(|| declared.contains('(').then_some(0));
            return (ValueKind::Decimal, scale);
        }
        "text" | "character varying" | "character" | "name" | "uuid" | "citext" | "\"char\"" => {
            ValueKind::Text
        }
        "json" | "jsonb" => ValueKind::Json,
        "bytea" => ValueKind::Bytes,
        "date" => ValueKind::Date,
        _ if base.starts_with("timestamp") => ValueKind::Timestamp,
        _ => ValueKind::Any,
    };
    (kind, None)
}

/// How a column of the type `declared` (as `format_type` prints it, domains resolved to
/// their base type) keeps values of `kind`: `character(n)` pads with spaces, `uuid` prints
/// in lower case, `timestamp(p)` keeps `p` fractional digits (6 when not declared), JSON
/// and numbers by value (see [`Fidelity`]).
pub(crate) fn fidelity_of_type(declared: &str, kind: ValueKind) -> Fidelity {
    let base = declared.split('(').next().unwrap_or_default().trim();
    match base {
        "character" | "bpchar" => Fidelity::Padded,
        "uuid" => Fidelity::CaseInsensitive,
        _ if base.starts_with("timestamp") => Fidelity::Seconds {
            digits: declared
                .split_once('(')
                .and_then(|(_, rest)| rest.split_once(')'))
                .and_then(|(digits, _)| digits.trim().parse().ok())
                .unwrap_or(6),
        },
        _ => Fidelity::of_kind(kind),
    }
}

/// The kind of a built-in type by its oid, for columns the cached schema does not know
/// yet (added since): pgoutput's Relation message carries only the oid.
pub(crate) fn kind_of_oid(oid: u32) -> ValueKind {
    match oid {
        16 => ValueKind::Boolean,
        20 | 21 | 23 | 26 => ValueKind::Integer,
        700 | 701 => ValueKind::Float,
        1700 => ValueKind::Decimal,
        25 | 1043 | 1042 | 19 | 18 | 2950 => ValueKind::Text,
        114 | 3802 => ValueKind::Json,
        17 => ValueKind::Bytes,
        1082 => ValueKind::Date,
        1114 | 1184 => ValueKind::Timestamp,
        _ => ValueKind::Any,
    }
}

/// Reads a value in PostgreSQL's text form as `kind`.
pub(crate) fn value_from_text(kind: ValueKind, text: &str) -> Value {
    let parsed = match kind {
        ValueKind::Boolean => match text {
            "t" | "true" => Some(Value::Boolean(true)),
            "f" | "false" => Some(Value::Boolean(false)),
            _ => None,
        },
        ValueKind::Integer => text.parse().ok().map(Value::Integer),
        ValueKind::Float => parse_float(text).map(Value::Float),
        ValueKind::Decimal => is_canonical_decimal(text).then(|| Value::Decimal(text.to_owned())),
        ValueKind::Json => Some(Value::Json(text.to_owned())),
        ValueKind::Bytes => text
            .strip_prefix("\\x")
            .and_then(|hex| hex::decode(hex).ok())
            .map(Value::Bytes),
        ValueKind::Date => parse_date(text).map(Value::Date),
        ValueKind::Timestamp => parse_timestamp(text).map(Value::Timestamp),
        ValueKind::Text | ValueKind::Any => None,
    };
    parsed.unwrap_or_else(|| Value::Text(text.to_owned()))
}

/// The text to bind for `value` in a column of `kind` (`None` for NULL), or why the
/// column cannot hold it.
pub(crate) fn value_to_text(value: &Value, kind: ValueKind) -> Result<Option<String>, String> {
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::Boolean(value) => value.to_string(),
        Value::Integer(value) => value.to_string(),
        Value::Float(value) if value.is_nan() => "NaN".to_owned(),
        Value::Float(value) if value.is_infinite() && *value > 0.0 => "Infinity".to_owned(),
        Value::Float(value) if value.is_infinite() => "-Infinity".to_owned(),
        // Debug prints the shortest text that reads back as the same f64.
        Value::Float(value) => format!("{value:?}"),
        Value::Decimal(text) | Value::Text(text) | Value::Json(text) => text.clone(),
        Value::Bytes(bytes) => format!("\\x{}", hex::encode(bytes)),
        Value::Date(days) => format_date(*days)?,
        Value::Timestamp(timestamp) => format_timestamp(timestamp, kind)?,
    }))
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// `-?[0-9]+(\.[0-9]+)?`: what [`Value::Decimal`] holds.
fn is_canonical_decimal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (digits, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    all_digits(whole) && fraction.is_none_or(all_digits)
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

fn parse_date(text: &str) -> Option<i32> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    i32::try_from((date - epoch()).num_days()).ok()
}

fn format_date(days: i32) -> Result<String, String> {
    epoch()
        .checked_add_signed(chrono::Duration::days(i64::from(days)))
        .filter(|date| chrono::Datelike::year(date) >= 1)
        .map(|date| date.format("%Y-%m-%d").to_string())
        .ok_or_else(|| format!("date {days} days from 1970-01-01 is before year 1"))
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM[:SS]]]`: with a zone (timestamptz) an instant,
/// without (timestamp) a local date-time.
fn parse_timestamp(text: &str) -> Option<Timestamp> {
    let (local, offset_minutes) = match text.get(19..).and_then(|rest| rest.find(['+', '-'])) {
        Some(at) => {
            let at = 19 + at;
            let zone = &text[at + 1..];
            let mut parts = zone.split(':').map(|part| part.parse::<i16>().ok());
            let hours = parts.next().flatten()?;
            let minutes = parts.next().flatten().unwrap_or(0);
            if parts.next().is_some() {
                // Offsets with seconds (historic local mean time) do not fit.
                return None;
            }
            let sign = if text.as_bytes()[at] == b'-' { -1 } else { 1 };
            (&text[..at], Some(sign * (hours * 60 + minutes)))
        }
        None => (text, None),
    };
    let naive = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S%.f").ok()?;
    let utc = match offset_minutes {
        Some(minutes) => naive - chrono::Duration::minutes(i64::from(minutes)),
        None => naive,
    }
    .and_utc();
    Some(Timestamp {
        seconds: utc.timestamp(),
        nanos: utc.timestamp_subsec_nanos().min(999_999_999),
        offset_minutes,
    })
}

/// The text of `timestamp` for a column of `kind`. An instant keeps its offset (a
/// `timestamptz` stores the instant); a local date-time written to a `timestamptz` is
/// read as UTC, and an instant written to a `timestamp` (without time zone) is stored as
/// its local date-time at its own offset.
fn format_timestamp(timestamp: &Timestamp, kind: ValueKind) -> Result<String, String> {
    const FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f";
    let utc = DateTime::from_timestamp(timestamp.seconds, timestamp.nanos)
        .ok_or_else(|| format!("timestamp {timestamp:?} is out of range"))?;
    let minutes = timestamp.offset_minutes.unwrap_or(0);
    let offset = FixedOffset::east_opt(i32::from(minutes) * 60)
        .ok_or_else(|| format!("UTC offset of {minutes} minutes is out of range"))?;
    let local = utc.with_timezone(&offset);
    let wall = local.format(FORMAT).to_string();
    if timestamp.offset_minutes.is_none() && kind == ValueKind::Timestamp {
        // Without an offset the text names no zone: timestamptz columns read it in the
        // session's zone, which is UTC.
        return Ok(wall);
    }
    Ok(format!("{wall}{}", local.format("%:z")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_map_to_kinds_with_decimal_scale() {
        assert_eq!(kind_of_type("numeric(18,2)"), (ValueKind::Decimal, Some(2)));
        assert_eq!(kind_of_type("numeric(10)"), (ValueKind::Decimal, Some(0)));
        assert_eq!(kind_of_type("numeric"), (ValueKind::Decimal, None));
        assert_eq!(
            kind_of_type("timestamp with time zone").0,
            ValueKind::Timestamp
        );
        assert_eq!(kind_of_type("character varying(40)").0, ValueKind::Text);
        assert_eq!(kind_of_type("integer[]").0, ValueKind::Any);
        assert_eq!(kind_of_type("interval").0, ValueKind::Any);
    }

    #[test]
    fn text_forms_read_back_exactly() {
        assert_eq!(
            value_from_text(ValueKind::Decimal, "-12345678901234567890.120"),
            Value::Decimal("-12345678901234567890.120".into())
        );
        assert_eq!(
            value_from_text(ValueKind::Decimal, "NaN"),
            Value::Text("NaN".into())
        );
        assert_eq!(
            value_from_text(ValueKind::Bytes, "\\x00ff"),
            Value::Bytes(vec![0, 255])
        );
        assert_eq!(value_from_text(ValueKind::Float, "0.1"), Value::Float(0.1));
        let instant = value_from_text(ValueKind::Timestamp, "2024-03-01 10:00:00.5+00");
        assert_eq!(
            instant,
            Value::Timestamp(Timestamp {
                seconds: 1_709_287_200,
                nanos: 500_000_000,
                offset_minutes: Some(0)
            })
        );
        let local = value_from_text(ValueKind::Timestamp, "2024-03-01 10:00:00");
        assert!(matches!(
            local,
            Value::Timestamp(Timestamp {
                offset_minutes: None,
                ..
            })
        ));
        assert_eq!(
            value_from_text(ValueKind::Timestamp, "infinity"),
            Value::Text("infinity".into())
        );
        assert_eq!(
            value_from_text(ValueKind::Date, "1970-01-02"),
            Value::Date(1)
        );
    }

    #[test]
    fn values_write_as_text_the_server_reads_back_the_same() {
        for value in [
            Value::Float(0.1),
            Value::Float(1e300),
            Value::Float(-2.5e-300),
            Value::Date(-719_162),
            Value::Bytes(vec![1, 2, 254]),
        ] {
            let kind = match value {
                Value::Float(_) => ValueKind::Float,
                Value::Date(_) => ValueKind::Date,
                _ => ValueKind::Bytes,
            };
            let text = value_to_text(&value, kind).unwrap().unwrap();
            assert_eq!(value_from_text(kind, &text), value, "{text}");
        }
        let instant = Timestamp {
            seconds: 1_709_287_200,
            nanos: 0,
            offset_minutes: Some(120),
        };
        assert_eq!(
            value_to_text(&Value::Timestamp(instant), ValueKind::Timestamp).unwrap(),
            Some("2024-03-01 12:00:00+02:00".to_owned())
        );
        assert_eq!(value_to_text(&Value::Null, ValueKind::Text).unwrap(), None);
    }
}
