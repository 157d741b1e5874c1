//! MariaDB/MySQL values <-> [`Value`].
//!
//! Values arrive two ways: binlog rows (capture) and result rows of the binary protocol
//! (reads by key and scans); both are the driver's [`mysql::Value`], but binlog rows
//! carry less: no signedness (an `INT UNSIGNED` of 4294967295 arrives as -1), ENUM and
//! SET as their numbers, TIMESTAMP as seconds since the epoch. The column's [`Codec`],
//! from `information_schema`, fills that in, so both ways give the same [`Value`]:
//!
//! | column | value |
//! |---|---|
//! | `TINYINT(1)`/`BOOL` | boolean (a stored value other than 0 and 1 stays an integer) |
//! | other integers, `YEAR` | integer (an unsigned `BIGINT` above `i64::MAX`: decimal) |
//! | `DECIMAL` | decimal, exact, with the column's scale |
//! | `FLOAT`, `DOUBLE` | float (a `FLOAT` is the f32 the column holds, widened) |
//! | `CHAR`, `VARCHAR`, `TEXT`, `ENUM`, `SET`, `TIME` | text |
//! | `JSON` (MySQL), `LONGTEXT` with a `json_valid` check (MariaDB) | json |
//! | `BINARY`, `VARBINARY`, `BLOB`, `BIT` | bytes |
//! | `DATE` | date |
//! | `DATETIME` | timestamp without offset (a local date-time) |
//! | `TIMESTAMP` | timestamp with offset 0 (an instant; sessions run in UTC) |
//!
//! A text that is not UTF-8 is kept as bytes, and the zero dates MariaDB allows
//! (`0000-00-00`) as text: never dropped or altered.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use mysql::Value as MyValue;

use crate::change::{Fidelity, Timestamp, Value, ValueKind};

/// How a column's values are read and written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Codec {
    /// `TINYINT(1)`.
    Boolean,
    /// An integer type; `unsigned_bits` is the width of an unsigned one.
    Integer { unsigned_bits: Option<u32> },
    /// `YEAR`.
    Year,
    /// `DECIMAL`/`NUMERIC`.
    Decimal,
    /// `FLOAT`, `DOUBLE`.
    Float,
    /// Character types.
    Text,
    /// JSON.
    Json,
    /// Binary string types and `BIT`.
    Bytes,
    /// `DATE`.
    Date,
    /// `DATETIME`: a local date-time.
    DateTime,
    /// `TIMESTAMP`: an instant.
    Instant,
    /// `TIME`.
    Time,
    /// `ENUM` with its members in order.
    Enum(Vec<String>),
    /// `SET` with its members in order.
    Set(Vec<String>),
    /// Anything else (spatial types, `INET6`, ...): text when it is UTF-8, else bytes.
    Other,
}

impl Codec {
    /// Whether a binlog value of `family` can be this column's.
    pub(crate) fn fits(&self, family: Family) -> bool {
        matches!(
            (self, family),
            (_, Family::Other)
                | (Codec::Other, _)
                | (
                    Codec::Boolean | Codec::Integer { .. } | Codec::Year,
                    Family::Integer
                )
                | (Codec::Decimal, Family::Decimal)
                | (Codec::Float, Family::Float)
                | (
                    Codec::Text | Codec::Json | Codec::Enum(_) | Codec::Set(_),
                    Family::String
                )
                | (Codec::Bytes, Family::String | Family::Bit)
                | (Codec::Date, Family::Date)
                | (Codec::DateTime, Family::DateTime)
                | (Codec::Instant, Family::Timestamp)
                | (Codec::Time, Family::Time)
        )
    }

    /// The kind of values the column holds.
    pub(crate) fn kind(&self) -> ValueKind {
        match self {
            Codec::Boolean => ValueKind::Boolean,
            Codec::Integer { .. } | Codec::Year => ValueKind::Integer,
            Codec::Decimal => ValueKind::Decimal,
            Codec::Float => ValueKind::Float,
            Codec::Text | Codec::Time | Codec::Enum(_) | Codec::Set(_) => ValueKind::Text,
            Codec::Json => ValueKind::Json,
            Codec::Bytes => ValueKind::Bytes,
            Codec::Date => ValueKind::Date,
            Codec::DateTime | Codec::Instant => ValueKind::Timestamp,
            Codec::Other => ValueKind::Any,
        }
    }
}

/// What a binlog column type says about a column, coarsely: enough to tell that a row
/// logged before an `ALTER TABLE` no longer fits the table's columns by position, when
/// the log does not name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Integer,
    Decimal,
    Float,
    String,
    Date,
    DateTime,
    Timestamp,
    Time,
    Bit,
    Other,
}

/// The family of a binlog column type (the real type, for ENUM and SET).
pub(crate) fn family_of_type(column_type: mysql::consts::ColumnType) -> Family {
    use mysql::consts::ColumnType::*;
    match column_type {
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG
        | MYSQL_TYPE_LONGLONG | MYSQL_TYPE_YEAR => Family::Integer,
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => Family::Decimal,
        MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => Family::Float,
        MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_STRING
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_JSON
        | MYSQL_TYPE_ENUM
        | MYSQL_TYPE_SET => Family::String,
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => Family::Date,
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => Family::DateTime,
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => Family::Timestamp,
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => Family::Time,
        MYSQL_TYPE_BIT => Family::Bit,
        _ => Family::Other,
    }
}

/// The codec of a column from `information_schema.COLUMNS` (`DATA_TYPE`,
/// `COLUMN_TYPE`) and whether a `json_valid` check guards it.
pub(crate) fn codec_of(data_type: &str, column_type: &str, json: bool) -> Codec {
    let original = column_type;
    let data_type = data_type.to_ascii_lowercase();
    let column_type = column_type.to_ascii_lowercase();
    let unsigned = column_type.contains("unsigned");
    let bits = |bits| Codec::Integer {
        unsigned_bits: unsigned.then_some(bits),
    };
    match data_type.as_str() {
        "tinyint" if column_type.starts_with("tinyint(1)") && !unsigned => Codec::Boolean,
        "tinyint" => bits(8),
        "smallint" => bits(16),
        "mediumint" => bits(24),
        "int" | "integer" => bits(32),
        "bigint" => bits(64),
        "year" => Codec::Year,
        "decimal" | "numeric" => Codec::Decimal,
        "float" | "double" | "real" | "double precision" => Codec::Float,
        "json" => Codec::Json,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" if json => Codec::Json,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "uuid" => {
            Codec::Text
        }
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "bit" => {
            Codec::Bytes
        }
        "date" => Codec::Date,
        "datetime" => Codec::DateTime,
        "timestamp" => Codec::Instant,
        "time" => Codec::Time,
        "enum" => Codec::Enum(members(original)),
        "set" => Codec::Set(members(original)),
        _ => Codec::Other,
    }
}

/// How a column (`DATA_TYPE`, `COLUMN_TYPE`) keeps values of `kind`: `CHAR(n)` drops
/// trailing spaces, `DATETIME(p)` and `TIMESTAMP(p)` keep `p` fractional digits (0 when
/// not declared), `UUID` prints in lower case, JSON and numbers by value (see
/// [`Fidelity`]).
pub(crate) fn fidelity_of_type(data_type: &str, column_type: &str, kind: ValueKind) -> Fidelity {
    let digits = || {
        column_type
            .split_once('(')
            .and_then(|(_, rest)| rest.split_once(')'))
            .and_then(|(digits, _)| digits.trim().parse().ok())
            .unwrap_or(0)
    };
    match data_type.to_ascii_lowercase().as_str() {
        "char" if kind == ValueKind::Text => Fidelity::Padded,
        "uuid" => Fidelity::CaseInsensitive,
        "datetime" | "timestamp" => Fidelity::Seconds { digits: digits() },
        _ => Fidelity::of_kind(kind),
    }
}

/// The members of `enum('a','b''c')`, unquoted.
fn members(column_type: &str) -> Vec<String> {
    let Some(open) = column_type.find('(') else {
        return Vec::new();
    };
    let inner = column_type[open + 1..].trim_end_matches(')');
    let mut members = Vec::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut member = String::new();
        loop {
            match chars.next() {
                Some('\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                    member.push('\'');
                }
                Some('\'') | None => break,
                Some('\\') => {
                    if let Some(next) = chars.next() {
                        member.push(next);
                    }
                }
                Some(other) => member.push(other),
            }
        }
        members.push(member);
    }
    members
}

/// Where a value comes from: the two carry some types differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A binlog row.
    Binlog,
    /// A result row of a query.
    Query,
}

/// Reads a driver value of a column with `codec`.
pub(crate) fn read_value(codec: &Codec, value: MyValue, source: Source) -> Value {
    match (codec, value) {
        (_, MyValue::NULL) => Value::Null,
        (Codec::Boolean, MyValue::Int(0)) => Value::Boolean(false),
        (Codec::Boolean, MyValue::Int(1)) => Value::Boolean(true),
        (Codec::Integer { unsigned_bits }, MyValue::Int(number)) => {
            match (unsigned_bits, number < 0) {
                (Some(bits), true) => {
                    let wrapped = (number as i128) + (1_i128 << bits);
                    match i64::try_from(wrapped) {
                        Ok(number) => Value::Integer(number),
                        Err(_) => Value::Decimal(wrapped.to_string()),
                    }
                }
                _ => Value::Integer(number),
            }
        }
        (_, MyValue::UInt(number)) => match i64::try_from(number) {
            Ok(number) => Value::Integer(number),
            Err(_) => Value::Decimal(number.to_string()),
        },
        (Codec::Year, MyValue::Bytes(bytes)) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            text.parse().map_or(Value::Text(text), Value::Integer)
        }
        (_, MyValue::Int(number)) => match codec {
            Codec::Enum(labels) if source == Source::Binlog => match number {
                0 => Value::Text(String::new()),
                _ => usize::try_from(number - 1)
                    .ok()
                    .and_then(|at| labels.get(at))
                    .map_or(Value::Integer(number), |label| Value::Text(label.clone())),
            },
            Codec::Instant if source == Source::Binlog => instant_from_epoch(number, 0),
            _ => Value::Integer(number),
        },
        (Codec::Float, MyValue::Float(number)) => Value::Float(f64::from(number)),
        (Codec::Float, MyValue::Double(number)) => Value::Float(number),
        (_, MyValue::Float(number)) => Value::Float(f64::from(number)),
        (_, MyValue::Double(number)) => Value::Float(number),
        (Codec::Decimal, MyValue::Bytes(bytes)) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if is_canonical_decimal(&text) {
                Value::Decimal(text)
            } else {
                Value::Text(text)
            }
        }
        (Codec::Bytes, MyValue::Bytes(bytes)) => Value::Bytes(bytes),
        (Codec::Json, MyValue::Bytes(bytes)) => match String::from_utf8(bytes) {
            Ok(text) => Value::Json(text),
            Err(error) => Value::Bytes(error.into_bytes()),
        },
        (Codec::Set(labels), MyValue::Bytes(bytes)) if source == Source::Binlog => {
            let chosen: Vec<&str> = labels
                .iter()
                .enumerate()
                .filter(|(at, _)| {
                    bytes
                        .get(at / 8)
                        .is_some_and(|byte| byte & (1 << (at % 8)) != 0)
                })
                .map(|(_, label)| label.as_str())
                .collect();
            Value::Text(chosen.join(","))
        }
        (Codec::Instant, MyValue::Bytes(bytes)) if source == Source::Binlog => {
            // TIMESTAMP2: "seconds[.micros]" since the epoch.
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let (seconds, micros) = text.split_once('.').unwrap_or((&text, "0"));
            match (seconds.parse::<i64>(), micros.parse::<u32>()) {
                (Ok(seconds), Ok(micros)) => instant_from_epoch(seconds, micros),
                _ => Value::Text(text),
            }
        }
        (_, MyValue::Bytes(bytes)) => match String::from_utf8(bytes) {
            Ok(text) => Value::Text(text),
            Err(error) => Value::Bytes(error.into_bytes()),
        },
        (_, MyValue::Date(year, month, day, hour, minute, second, micros)) => {
            let date = NaiveDate::from_ymd_opt(i32::from(year), u32::from(month), u32::from(day));
            let time = chrono::NaiveTime::from_hms_micro_opt(
                u32::from(hour),
                u32::from(minute),
                u32::from(second),
                micros,
            );
            let (Some(date), Some(time)) = (date, time) else {
                return Value::Text(format_zero_date(
                    codec, year, month, day, hour, minute, second, micros,
                ));
            };
            match codec {
                Codec::Date => Value::Date(days_since_epoch(date)),
                Codec::Instant => timestamp(NaiveDateTime::new(date, time), Some(0)),
                _ => timestamp(NaiveDateTime::new(date, time), None),
            }
        }
        (_, MyValue::Time(negative, days, hours, minutes, seconds, micros)) => {
            let hours = u64::from(days) * 24 + u64::from(hours);
            let mut text = format!(
                "{}{hours:02}:{minutes:02}:{seconds:02}",
                if negative { "-" } else { "" }
            );
            if micros != 0 {
                text.push_str(&format!(".{micros:06}"));
            }
            Value::Text(text)
        }
    }
}

/// The text MariaDB prints for a date that is not a calendar date (`0000-00-00`).
#[allow(clippy::too_many_arguments)]
fn format_zero_date(
    codec: &Codec,
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    micros: u32,
) -> String {
    let date = format!("{year:04}-{month:02}-{day:02}");
    if *codec == Codec::Date {
        return date;
    }
    let mut text = format!("{date} {hour:02}:{minute:02}:{second:02}");
    if micros != 0 {
        text.push_str(&format!(".{micros:06}"));
    }
    text
}

fn instant_from_epoch(seconds: i64, micros: u32) -> Value {
    if seconds == 0 && micros == 0 {
        // TIMESTAMP's zero value: MariaDB's '0000-00-00 00:00:00'.
        return Value::Text("0000-00-00 00:00:00".to_owned());
    }
    Value::Timestamp(Timestamp {
        seconds,
        nanos: micros.saturating_mul(1_000).min(999_999_999),
        offset_minutes: Some(0),
    })
}

fn timestamp(wall: NaiveDateTime, offset_minutes: Option<i16>) -> Value {
    let utc = wall.and_utc();
    Value::Timestamp(Timestamp {
        seconds: utc.timestamp(),
        nanos: utc.timestamp_subsec_nanos().min(999_999_999),
        offset_minutes,
    })
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

fn days_since_epoch(date: NaiveDate) -> i32 {
    i32::try_from((date - epoch()).num_days()).unwrap_or(i32::MAX)
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

/// The parameter to bind for `value` in a column with `codec`, or why the column cannot
/// hold it.
pub(crate) fn write_value(value: &Value, codec: &Codec) -> Result<MyValue, String> {
    Ok(match value {
        Value::Null => MyValue::NULL,
        Value::Boolean(value) => MyValue::Int(i64::from(*value)),
        Value::Integer(value) => MyValue::Int(*value),
        Value::Float(value) if !value.is_finite() => {
            return Err(format!(
                "{value} cannot be stored: MariaDB floats are finite"
            ));
        }
        Value::Float(value) if *codec == Codec::Decimal || codec.kind() == ValueKind::Text => {
            // Debug prints the shortest text that reads back as the same f64.
            MyValue::Bytes(format!("{value:?}").into_bytes())
        }
        Value::Float(value) => MyValue::Double(*value),
        Value::Decimal(text) | Value::Text(text) | Value::Json(text) => {
            MyValue::Bytes(text.clone().into_bytes())
        }
        Value::Bytes(bytes) => MyValue::Bytes(bytes.clone()),
        Value::Date(days) => {
            let date = epoch()
                .checked_add_signed(chrono::Duration::days(i64::from(*days)))
                .ok_or_else(|| format!("date {days} days from 1970-01-01 is out of range"))?;
            date_value(date, None)?
        }
        Value::Timestamp(timestamp) => {
            let utc = chrono::DateTime::from_timestamp(timestamp.seconds, timestamp.nanos)
                .ok_or_else(|| format!("timestamp {timestamp:?} is out of range"))?;
            // A TIMESTAMP column stores the instant (the session is in UTC); a DATETIME
            // stores the local date-time at the value's own offset.
            let minutes = match codec {
                Codec::Instant => 0,
                _ => timestamp.offset_minutes.unwrap_or(0),
            };
            let offset = chrono::FixedOffset::east_opt(i32::from(minutes) * 60)
                .ok_or_else(|| format!("UTC offset of {minutes} minutes is out of range"))?;
            let wall = utc.with_timezone(&offset).naive_local();
            if codec.kind() == ValueKind::Text {
                MyValue::Bytes(wall.format("%Y-%m-%d %H:%M:%S%.f").to_string().into_bytes())
            } else {
                date_value(wall.date(), Some(wall.time()))?
            }
        }
    })
}

fn date_value(date: NaiveDate, time: Option<chrono::NaiveTime>) -> Result<MyValue, String> {
    let year = u16::try_from(date.year())
        .ok()
        .filter(|year| (1..=9999).contains(year))
        .ok_or_else(|| format!("{date} is outside the years 1 to 9999"))?;
    let time = time.unwrap_or_default();
    Ok(MyValue::Date(
        year,
        date.month() as u8,
        date.day() as u8,
        time.hour() as u8,
        time.minute() as u8,
        time.second() as u8,
        time.nanosecond() / 1_000,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_types_map_to_codecs() {
        assert_eq!(codec_of("tinyint", "tinyint(1)", false), Codec::Boolean);
        assert_eq!(
            codec_of("int", "int(10) unsigned", false),
            Codec::Integer {
                unsigned_bits: Some(32)
            }
        );
        assert_eq!(codec_of("longtext", "longtext", true), Codec::Json);
        assert_eq!(codec_of("longtext", "longtext", false), Codec::Text);
        assert_eq!(
            codec_of("enum", "enum('a','it''s','c')", false),
            Codec::Enum(vec!["a".into(), "it's".into(), "c".into()])
        );
        assert_eq!(codec_of("timestamp", "timestamp(6)", false), Codec::Instant);
        assert_eq!(
            codec_of("geometry", "geometry", false).kind(),
            ValueKind::Any
        );
        assert!(Codec::Decimal.fits(Family::Decimal));
        assert!(Codec::Bytes.fits(Family::Bit));
        assert!(!Codec::Date.fits(Family::String));
        assert!(!Codec::Instant.fits(Family::DateTime));
    }

    #[test]
    fn binlog_values_get_what_the_binlog_leaves_out() {
        let unsigned = Codec::Integer {
            unsigned_bits: Some(32),
        };
        assert_eq!(
            read_value(&unsigned, MyValue::Int(-1), Source::Binlog),
            Value::Integer(4_294_967_295)
        );
        let big = Codec::Integer {
            unsigned_bits: Some(64),
        };
        assert_eq!(
            read_value(&big, MyValue::Int(-1), Source::Binlog),
            Value::Decimal("18446744073709551615".into())
        );
        let labels = Codec::Enum(vec!["x".into(), "y".into()]);
        assert_eq!(
            read_value(&labels, MyValue::Int(2), Source::Binlog),
            Value::Text("y".into())
        );
        let set = Codec::Set(vec!["a".into(), "b".into(), "c".into()]);
        assert_eq!(
            read_value(&set, MyValue::Bytes(vec![0b101]), Source::Binlog),
            Value::Text("a,c".into())
        );
        assert_eq!(
            read_value(
                &Codec::Instant,
                MyValue::Bytes(b"1709287200.500000".to_vec()),
                Source::Binlog
            ),
            Value::Timestamp(Timestamp {
                seconds: 1_709_287_200,
                nanos: 500_000_000,
                offset_minutes: Some(0)
            })
        );
        assert_eq!(
            read_value(&Codec::Boolean, MyValue::Int(7), Source::Binlog),
            Value::Integer(7)
        );
    }

    #[test]
    fn written_values_read_back_the_same() {
        let local = Value::Timestamp(Timestamp {
            seconds: 1_709_287_200,
            nanos: 123_456_000,
            offset_minutes: None,
        });
        let written = write_value(&local, &Codec::DateTime).unwrap();
        assert_eq!(read_value(&Codec::DateTime, written, Source::Query), local);
        let instant = Value::Timestamp(Timestamp {
            seconds: 1_709_287_200,
            nanos: 0,
            offset_minutes: Some(0),
        });
        let written = write_value(&instant, &Codec::Instant).unwrap();
        assert_eq!(read_value(&Codec::Instant, written, Source::Query), instant);
        let date = Value::Date(-719_162);
        let written = write_value(&date, &Codec::Date).unwrap();
        assert_eq!(read_value(&Codec::Date, written, Source::Query), date);
        assert!(write_value(&Value::Float(f64::NAN), &Codec::Float).is_err());
        assert_eq!(
            read_value(&Codec::Text, MyValue::Bytes(vec![0xff]), Source::Query),
            Value::Bytes(vec![0xff])
        );
    }
}
