//! SQLite values <-> [`Value`], driven by the column's declared type (the table in
//! [`super`]'s docs), and the JSON encoding the capture triggers use.
//!
//! Reading never loses or coerces: a stored value that does not fit the column's kind
//! (text in a DATE column that is not a date, 2 in a BOOLEAN column) comes out as its
//! storage class (`Text`, `Integer`, ...), so the change is kept and whatever reads it
//! sees exactly what is there. Writing binds a value by its own kind; a value SQLite
//! cannot hold exactly (NaN, a date outside years 0-9999, a malformed decimal or JSON
//! document) is refused with a message rather than stored altered.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use serde_json::Value as Json;

use crate::capture::ColumnInfo;
use crate::change::{Timestamp, Value, ValueKind};
use crate::replay::check_decimal;

/// The SQL expression a capture trigger uses to put `column` (e.g. `NEW."price"`) into
/// `json_object(...)`. Integers, text and NULL go in as plain JSON. Reals go in as
/// `{"$r": "<17 significant digits>"}` because older SQLite libraries (which other
/// writers of the file may use) print JSON reals with 15 digits and infinities as invalid
/// JSON; blobs, which JSON cannot hold, go in as `{"$b": "<hex>"}`. Only built-in
/// functions of SQLite 3.38+ are used, since the trigger runs in every writer's library.
pub(crate) fn json_encoding(column: &str) -> String {
    format!(
        "CASE typeof({column}) \
         WHEN 'real' THEN json_object('$r', printf('%!.17g', {column})) \
         WHEN 'blob' THEN json_object('$b', hex({column})) \
         ELSE {column} END"
    )
}

/// Reads one value of a trigger's JSON image back into its storage class (the inverse
/// of [`json_encoding`]).
pub(crate) fn sql_from_json(json: &Json) -> Result<SqlValue, String> {
    match json {
        Json::Null => Ok(SqlValue::Null),
        Json::Bool(flag) => Ok(SqlValue::Integer(i64::from(*flag))),
        Json::Number(number) => match number.as_i64() {
            Some(integer) => Ok(SqlValue::Integer(integer)),
            None => number
                .as_f64()
                .map(SqlValue::Real)
                .ok_or_else(|| format!("number {number} out of range")),
        },
        Json::String(text) => Ok(SqlValue::Text(text.clone())),
        Json::Object(object) => match (object.get("$r"), object.get("$b"), object.len()) {
            (Some(Json::String(real)), None, 1) => parse_real(real).map(SqlValue::Real),
            (None, Some(Json::String(hex)), 1) => hex::decode(hex)
                .map(SqlValue::Blob)
                .map_err(|error| format!("invalid hex in a blob: {error}")),
            _ => Err(format!("unexpected JSON object {json}")),
        },
        Json::Array(_) => Err(format!("unexpected JSON array {json}")),
    }
}

fn parse_real(text: &str) -> Result<f64, String> {
    match text {
        "Inf" | "inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        _ => text.parse().map_err(|_| format!("invalid real {text:?}")),
    }
}

/// The value of a stored SQLite value in a column described by `column` (`None`: a
/// column the schema does not know any more; read by storage class).
pub(crate) fn value_from_sql(column: Option<&ColumnInfo>, raw: ValueRef<'_>) -> Value {
    let (kind, scale) = column.map_or((ValueKind::Any, None), |column| (column.kind, column.scale));
    match raw {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(integer) => match kind {
            ValueKind::Boolean if integer == 0 || integer == 1 => Value::Boolean(integer == 1),
            ValueKind::Decimal => Value::Decimal(with_scale(integer.to_string(), scale)),
            _ => Value::Integer(integer),
        },
        ValueRef::Real(real) => match kind {
            // NUMERIC affinity stored "10.50" as 10.5; the declared scale brings back
            // "10.50". Rust prints the shortest text that reads back as the same double,
            // never in exponent form, so this is exact up to the 15 digits SQLite keeps.
            ValueKind::Decimal if real.is_finite() => {
                Value::Decimal(with_scale(format!("{real}"), scale))
            }
            _ => Value::Float(real),
        },
        ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => text_value(kind, text),
            // Not UTF-8: keep the exact bytes.
            Err(_) => Value::Bytes(bytes.to_vec()),
        },
        ValueRef::Blob(bytes) => Value::Bytes(bytes.to_vec()),
    }
}

/// [`value_from_sql`] for an owned value.
pub(crate) fn value_from_owned(column: Option<&ColumnInfo>, raw: &SqlValue) -> Value {
    value_from_sql(column, ValueRef::from(raw))
}

fn text_value(kind: ValueKind, text: &str) -> Value {
    let parsed = match kind {
        ValueKind::Decimal => check_decimal(text)
            .ok()
            .map(|()| Value::Decimal(text.to_owned())),
        ValueKind::Date => parse_date(text).map(Value::Date),
        ValueKind::Timestamp => parse_timestamp(text).map(Value::Timestamp),
        ValueKind::Json => serde_json::from_str::<serde::de::IgnoredAny>(text)
            .ok()
            .map(|_| Value::Json(text.to_owned())),
        _ => None,
    };
    parsed.unwrap_or_else(|| Value::Text(text.to_owned()))
}

/// Pads `digits` with zeros to `scale` fraction digits; never cuts digits off.
fn with_scale(mut digits: String, scale: Option<u32>) -> String {
    let Some(scale) = scale.filter(|scale| *scale > 0) else {
        return digits;
    };
    let fraction = digits
        .split_once('.')
        .map_or(0, |(_, fraction)| fraction.len());
    if fraction == 0 && !digits.contains('.') {
        digits.push('.');
    }
    for _ in fraction..scale as usize {
        digits.push('0');
    }
    digits
}

/// How `value` is bound in SQLite: NULL, 0/1, integer, real, exact decimal text, text,
/// ISO-8601 text, `YYYY-MM-DD`, blob, JSON text. Errors say why the value cannot be
/// stored exactly.
pub(crate) fn value_to_sql(value: &Value) -> Result<ToSqlOutput<'_>, String> {
    Ok(match value {
        Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
        Value::Boolean(flag) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*flag))),
        Value::Integer(integer) => ToSqlOutput::Borrowed(ValueRef::Integer(*integer)),
        Value::Float(real) if real.is_nan() => {
            return Err("NaN cannot be stored in SQLite (it would become NULL)".to_owned());
        }
        Value::Float(real) => ToSqlOutput::Borrowed(ValueRef::Real(*real)),
        Value::Decimal(digits) => {
            check_decimal(digits)?;
            ToSqlOutput::Borrowed(ValueRef::Text(digits.as_bytes()))
        }
        Value::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
        Value::Timestamp(timestamp) => {
            ToSqlOutput::Owned(SqlValue::Text(format_timestamp(timestamp)?))
        }
        Value::Date(days) => ToSqlOutput::Owned(SqlValue::Text(format_date(*days)?)),
        Value::Bytes(bytes) => ToSqlOutput::Borrowed(ValueRef::Blob(bytes)),
        Value::Json(text) => {
            serde_json::from_str::<serde::de::IgnoredAny>(text)
                .map_err(|error| format!("not a valid JSON document: {error}"))?;
            ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes()))
        }
    })
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

/// SQLite's date functions read years 0000-9999 only.
fn in_sqlite_range(date: NaiveDate) -> bool {
    use chrono::Datelike as _;
    (0..=9999).contains(&date.year())
}

/// `YYYY-MM-DD`.
pub(crate) fn format_date(days: i32) -> Result<String, String> {
    epoch()
        .checked_add_signed(chrono::Duration::days(i64::from(days)))
        .filter(|date| in_sqlite_range(*date))
        .map(|date| date.format("%Y-%m-%d").to_string())
        .ok_or_else(|| format!("date {days} days from 1970-01-01 is outside years 0-9999"))
}

/// A `YYYY-MM-DD` text as days since 1970-01-01; nothing else is a date.
pub(crate) fn parse_date(text: &str) -> Option<i32> {
    let bytes = text.as_bytes();
    let shape = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(index, byte)| index == 4 || index == 7 || byte.is_ascii_digit());
    if !shape {
        return None;
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    i32::try_from((date - epoch()).num_days()).ok()
}

/// `YYYY-MM-DD HH:MM:SS[.fff]` for a local date-time, with `Z` or `+HH:MM` appended for
/// an instant: SQLite's own format, which its date functions read and which sorts as
/// text among values written with the same offset.
pub(crate) fn format_timestamp(timestamp: &Timestamp) -> Result<String, String> {
    let utc = DateTime::from_timestamp(timestamp.seconds, timestamp.nanos)
        .filter(|utc| in_sqlite_range(utc.date_naive()))
        .ok_or_else(|| format!("timestamp {timestamp:?} is outside years 0-9999"))?;
    const FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f";
    match timestamp.offset_minutes {
        None => Ok(utc.naive_utc().format(FORMAT).to_string()),
        Some(minutes) => {
            let offset = FixedOffset::east_opt(i32::from(minutes) * 60)
                .ok_or_else(|| format!("UTC offset of {minutes} minutes is out of range"))?;
            let local = utc.with_timezone(&offset);
            if !in_sqlite_range(local.date_naive()) {
                return Err(format!("timestamp {timestamp:?} is outside years 0-9999"));
            }
            let zone = if minutes == 0 {
                "Z".to_owned()
            } else {
                local.format("%:z").to_string()
            };
            Ok(format!("{}{zone}", local.format(FORMAT)))
        }
    }
}

/// Reads the ISO-8601 forms SQLite's date functions read: `YYYY-MM-DD`, then optionally
/// ` ` or `T`, `HH:MM[:SS[.fff]]`, then optionally `Z` or `+HH:MM`/`-HH:MM`. With a zone
/// the result is an instant with its offset; without, a local date-time.
pub(crate) fn parse_timestamp(text: &str) -> Option<Timestamp> {
    let (local, offset_minutes) = split_zone(text)?;
    let date = NaiveDate::parse_from_str(local.get(..10)?, "%Y-%m-%d").ok()?;
    parse_date(local.get(..10)?)?;
    let time = match local.get(10..) {
        Some("") if offset_minutes.is_none() => NaiveTime::MIN,
        Some(rest) => {
            let rest = rest.strip_prefix([' ', 'T'])?;
            NaiveTime::parse_from_str(rest, "%H:%M:%S%.f")
                .or_else(|_| NaiveTime::parse_from_str(rest, "%H:%M"))
                .ok()?
        }
        None => return None,
    };
    let naive = NaiveDateTime::new(date, time);
    let utc = match offset_minutes {
        Some(minutes) => naive - chrono::Duration::minutes(i64::from(minutes)),
        None => naive,
    }
    .and_utc();
    let nanos = utc.timestamp_subsec_nanos();
    // chrono keeps a leap second as nanos >= 1e9; Timestamp cannot.
    (nanos < 1_000_000_000).then_some(Timestamp {
        seconds: utc.timestamp(),
        nanos,
        offset_minutes,
    })
}

/// Splits a trailing `Z` or `+HH:MM` zone off; `Some((text, None))` without one.
fn split_zone(text: &str) -> Option<(&str, Option<i16>)> {
    if let Some(local) = text.strip_suffix(['Z', 'z']) {
        return Some((local, Some(0)));
    }
    let bytes = text.as_bytes();
    if bytes.len() > 16 {
        let zone = &text[text.len() - 6..];
        let zone_bytes = zone.as_bytes();
        if (zone_bytes[0] == b'+' || zone_bytes[0] == b'-') && zone_bytes[3] == b':' {
            let hours: i16 = zone.get(1..3)?.parse().ok()?;
            let minutes: i16 = zone.get(4..6)?.parse().ok()?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let total = hours * 60 + minutes;
            let signed = if zone_bytes[0] == b'-' { -total } else { total };
            return Some((&text[..text.len() - 6], Some(signed)));
        }
    }
    Some((text, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(declared: &str, kind: ValueKind, scale: Option<u32>) -> ColumnInfo {
        ColumnInfo {
            fidelity: crate::change::Fidelity::of_kind(kind),
            capacity: crate::capture::Capacity::default(),
            name: "c".to_owned(),
            declared_type: declared.to_owned(),
            kind,
            scale,
            not_null: false,
            has_default: false,
            generated: false,
        }
    }

    #[test]
    fn decimals_take_the_declared_scale_back_from_numeric_storage() {
        let money = column("DECIMAL(18,2)", ValueKind::Decimal, Some(2));
        let read = |raw| value_from_sql(Some(&money), raw);
        assert_eq!(read(ValueRef::Real(10.5)), Value::Decimal("10.50".into()));
        assert_eq!(read(ValueRef::Integer(10)), Value::Decimal("10.00".into()));
        assert_eq!(
            read(ValueRef::Real(-0.125)),
            Value::Decimal("-0.125".into())
        );
        assert_eq!(
            read(ValueRef::Real(1e20)),
            Value::Decimal("100000000000000000000.00".into())
        );
        assert_eq!(read(ValueRef::Text(b"10.5")), Value::Decimal("10.5".into()));
        assert_eq!(read(ValueRef::Text(b"n/a")), Value::Text("n/a".into()));
        assert_eq!(
            read(ValueRef::Real(f64::INFINITY)),
            Value::Float(f64::INFINITY)
        );
    }

    #[test]
    fn values_that_do_not_fit_the_kind_keep_their_storage_class() {
        let flag = column("BOOLEAN", ValueKind::Boolean, None);
        assert_eq!(
            value_from_sql(Some(&flag), ValueRef::Integer(1)),
            Value::Boolean(true)
        );
        assert_eq!(
            value_from_sql(Some(&flag), ValueRef::Integer(2)),
            Value::Integer(2)
        );
        let day = column("DATE", ValueKind::Date, None);
        assert_eq!(
            value_from_sql(Some(&day), ValueRef::Text(b"2024-05-01")),
            Value::Date(19844)
        );
        assert_eq!(
            value_from_sql(Some(&day), ValueRef::Text(b"2024-5-1")),
            Value::Text("2024-5-1".into())
        );
        let doc = column("JSON", ValueKind::Json, None);
        assert_eq!(
            value_from_sql(Some(&doc), ValueRef::Text(b"{\"a\":1}")),
            Value::Json("{\"a\":1}".into())
        );
        assert_eq!(
            value_from_sql(Some(&doc), ValueRef::Text(b"{oops")),
            Value::Text("{oops".into())
        );
        assert_eq!(
            value_from_sql(None, ValueRef::Text(b"\xff")),
            Value::Bytes(vec![0xff])
        );
    }

    #[test]
    fn timestamps_read_sqlite_forms_and_write_sqlite_form() {
        let instant = parse_timestamp("2024-05-01T10:00:00.5+02:00").expect("instant");
        assert_eq!(instant.offset_minutes, Some(120));
        assert_eq!(instant.nanos, 500_000_000);
        assert_eq!(
            format_timestamp(&instant).unwrap(),
            "2024-05-01 10:00:00.500+02:00"
        );
        assert_eq!(
            parse_timestamp("2024-05-01 10:00:00.500+02:00"),
            Some(instant)
        );

        let local = parse_timestamp("2024-05-01 08:00").expect("local");
        assert_eq!(local.offset_minutes, None);
        assert_eq!(format_timestamp(&local).unwrap(), "2024-05-01 08:00:00");
        let utc = parse_timestamp("2024-05-01T08:00:00Z").expect("utc");
        assert_eq!((utc.seconds, utc.offset_minutes), (local.seconds, Some(0)));
        assert_eq!(format_timestamp(&utc).unwrap(), "2024-05-01 08:00:00Z");
        assert_eq!(
            parse_timestamp("2024-05-01").map(|t| t.seconds),
            Some(1_714_521_600)
        );
        for bad in [
            "yesterday",
            "2024-05-01 25:00",
            "2024-05-01X10:00",
            "2024-05-01 10:00+25:00",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn values_sqlite_cannot_hold_exactly_are_refused() {
        assert!(
            value_to_sql(&Value::Float(f64::NAN))
                .unwrap_err()
                .contains("NaN")
        );
        assert!(value_to_sql(&Value::Decimal("1e5".into())).is_err());
        assert!(
            value_to_sql(&Value::Json("{".into()))
                .unwrap_err()
                .contains("JSON")
        );
        assert!(
            value_to_sql(&Value::Date(3_000_000))
                .unwrap_err()
                .contains("0-9999")
        );
    }

    #[test]
    fn trigger_json_decodes_reals_and_blobs_exactly() {
        let json: Json = serde_json::from_str(
            r#"{"r":{"$r":"0.30000000000000004"},"i":{"$r":"-Inf"},"b":{"$b":"00FF"},"n":7,"t":"x"}"#,
        )
        .unwrap();
        let get = |name: &str| sql_from_json(&json[name]).unwrap();
        assert_eq!(get("r"), SqlValue::Real(0.1 + 0.2));
        assert_eq!(get("i"), SqlValue::Real(f64::NEG_INFINITY));
        assert_eq!(get("b"), SqlValue::Blob(vec![0, 255]));
        assert_eq!(get("n"), SqlValue::Integer(7));
        assert_eq!(get("t"), SqlValue::Text("x".into()));
        assert!(sql_from_json(&serde_json::json!({"$x": 1})).is_err());
    }
}
