//! What a value means in a column: when two values are the same thing there.
//!
//! Columns normalize what they are given: SQLite's `NUMERIC` affinity keeps `'12.50'` as
//! the number 12.5 (and `'100.00'` as the integer 100), PostgreSQL's `numeric(10,2)` and
//! MariaDB's `DECIMAL(10,2)` pad to their scale, `CHAR(n)` pads with spaces, `timestamp(0)`
//! keeps whole seconds, `jsonb` reorders keys. A sync that compared values as written
//! would see such a row as changed forever on that side (and make every later change
//! from the other side a conflict). So every comparison the engine makes between a row
//! as a side holds it and a value that travelled (the link's last synced image, a write
//! a plugin asks for, the row read back after a write) goes through [`Fidelity::same`]
//! with the column's [`Fidelity`], which each connector derives from the declared type
//! when it introspects a table.
//!
//! The same rule tells a normalization from a loss: a write whose value the target keeps
//! as something that is not [`Fidelity::same`] (a 20-digit decimal in a column that keeps
//! 15, a decimal rounded to the column's scale, text cut to a column's length) was
//! altered, and the connectors refuse it rather than store it (see
//! [`crate::apply::check_stored`]).

use super::{Timestamp, Value, ValueKind};

/// How a column keeps the values written to it, and so which values mean the same there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fidelity {
    /// Kept exactly as written: equal values are equal.
    #[default]
    Exact,
    /// A number kept by its value: `12.5`, `12.50` and the integer or float of the same
    /// value are the same; the scale and the form (decimal text, integer, float) are not
    /// meaning.
    Numeric,
    /// Fixed-length text (`CHAR(n)`): trailing spaces are padding, not meaning.
    Padded,
    /// A JSON document: the same JSON value whatever the spacing and key order.
    Json,
    /// Text compared without regard to ASCII case (`uuid`, which the store prints in
    /// lower case).
    CaseInsensitive,
    /// An instant kept to `digits` fractional-second digits (0 to 9): two instants less
    /// than one such unit apart are the same (stores round or cut the rest), whatever
    /// offset they are written with.
    Seconds {
        /// Fractional-second digits the column keeps.
        digits: u8,
    },
}

impl Fidelity {
    /// Whether `a` and `b` are the same value in a column of this fidelity. Values of
    /// different kinds are the same only where the fidelity says so (a number's forms);
    /// NULL is the same only as NULL.
    pub fn same(self, a: &Value, b: &Value) -> bool {
        if a == b {
            return true;
        }
        match (self, a, b) {
            (_, Value::Null, _) | (_, _, Value::Null) => false,
            (Fidelity::Exact, _, _) => false,
            (Fidelity::Numeric, a, b) => match (number_of(a), number_of(b)) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
            (Fidelity::Padded, Value::Text(a), Value::Text(b)) => {
                a.trim_end_matches(' ') == b.trim_end_matches(' ')
            }
            (Fidelity::Json, Value::Json(a) | Value::Text(a), Value::Json(b) | Value::Text(b)) => {
                match (
                    serde_json::from_str::<serde_json::Value>(a),
                    serde_json::from_str::<serde_json::Value>(b),
                ) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => false,
                }
            }
            (Fidelity::CaseInsensitive, Value::Text(a), Value::Text(b)) => {
                a.eq_ignore_ascii_case(b)
            }
            (Fidelity::Seconds { digits }, Value::Timestamp(a), Value::Timestamp(b)) => {
                let unit = 10_i128.pow(9 - u32::from(digits.min(9)));
                (nanos_of(a) - nanos_of(b)).abs() < unit
            }
            _ => false,
        }
    }

    /// The fidelity of a column that holds `kind` when its declared type says nothing
    /// more: numbers by value, JSON documents as documents, instants to the nanosecond,
    /// everything else exactly.
    pub fn of_kind(kind: ValueKind) -> Fidelity {
        match kind {
            ValueKind::Decimal => Fidelity::Numeric,
            ValueKind::Json => Fidelity::Json,
            ValueKind::Timestamp => Fidelity::Seconds { digits: 9 },
            _ => Fidelity::Exact,
        }
    }
}

/// Nanoseconds since the epoch of an instant (or of a local date-time read as UTC).
fn nanos_of(timestamp: &Timestamp) -> i128 {
    i128::from(timestamp.seconds) * 1_000_000_000 + i128::from(timestamp.nanos)
}

/// A number in canonical form: sign, integer digits without leading zeros, fraction
/// digits without trailing zeros (`-0` is `0`). Decimal text, integers and finite floats
/// (by their shortest exact decimal form) take part; anything else is not a number.
#[derive(Debug, PartialEq, Eq)]
struct Number {
    negative: bool,
    integer: String,
    fraction: String,
}

fn number_of(value: &Value) -> Option<Number> {
    match value {
        Value::Integer(integer) => canonical(&integer.to_string()),
        Value::Decimal(text) => canonical(text),
        // Rust prints the shortest text that reads back as the same double, never in
        // exponent form.
        Value::Float(float) if float.is_finite() => canonical(&format!("{float}")),
        _ => None,
    }
}

fn canonical(text: &str) -> Option<Number> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (integer, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if (integer.is_empty() && fraction.is_empty())
        || !integer.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let integer = integer.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    let zero = integer.is_empty() && fraction.is_empty();
    Some(Number {
        negative: negative && !zero,
        integer: integer.to_owned(),
        fraction: fraction.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimal(text: &str) -> Value {
        Value::Decimal(text.to_owned())
    }

    fn text(text: &str) -> Value {
        Value::Text(text.to_owned())
    }

    fn at(seconds: i64, nanos: u32, offset_minutes: Option<i16>) -> Value {
        Value::Timestamp(Timestamp {
            seconds,
            nanos,
            offset_minutes,
        })
    }

    #[test]
    fn numbers_are_the_same_by_value_whatever_their_scale_or_form() {
        let numeric = Fidelity::Numeric;
        assert!(numeric.same(&decimal("12.50"), &decimal("12.5")));
        assert!(numeric.same(&decimal("100.00"), &Value::Integer(100)));
        assert!(numeric.same(&decimal("12.5"), &Value::Float(12.5)));
        assert!(numeric.same(&decimal("-0.00"), &decimal("0")));
        assert!(numeric.same(&decimal("007.10"), &decimal("7.1")));
        assert!(!numeric.same(&decimal("12.5"), &decimal("12.05")));
        assert!(!numeric.same(&decimal("-1"), &decimal("1")));
        // SQLite NUMERIC keeps a double: 20 digits come back altered.
        assert!(!numeric.same(
            &decimal("12345678901234567890.12"),
            &Value::Float(12_345_678_901_234_567_890.12)
        ));
        assert!(!numeric.same(&decimal("12.345"), &decimal("12.35")));
        assert!(!numeric.same(&decimal("1"), &text("1")));
        assert!(!numeric.same(&Value::Null, &decimal("0")));
        assert!(numeric.same(&Value::Null, &Value::Null));
        // Exact columns keep the form.
        assert!(!Fidelity::Exact.same(&decimal("12.50"), &decimal("12.5")));
    }

    #[test]
    fn padded_text_ignores_trailing_spaces_only() {
        let padded = Fidelity::Padded;
        assert!(padded.same(&text("ab"), &text("ab   ")));
        assert!(!padded.same(&text(" ab"), &text("ab")));
        assert!(!padded.same(&text("abc"), &text("ab")));
        assert!(!Fidelity::Exact.same(&text("ab"), &text("ab   ")));
    }

    #[test]
    fn instants_are_the_same_within_the_column_precision() {
        let whole = Fidelity::Seconds { digits: 0 };
        assert!(whole.same(&at(10, 700_000_000, None), &at(11, 0, None)));
        assert!(whole.same(&at(10, 300_000_000, Some(0)), &at(10, 0, None)));
        assert!(!whole.same(&at(10, 0, None), &at(11, 0, None)));
        let millis = Fidelity::Seconds { digits: 3 };
        assert!(millis.same(&at(10, 123_400_000, None), &at(10, 123_000_000, None)));
        assert!(!millis.same(&at(10, 124_000_000, None), &at(10, 123_000_000, None)));
        let exact = Fidelity::Seconds { digits: 9 };
        assert!(exact.same(&at(10, 5, Some(60)), &at(10, 5, None)));
        assert!(!exact.same(&at(10, 5, None), &at(10, 6, None)));
    }

    #[test]
    fn json_compares_documents_and_case_insensitive_text_ignores_case() {
        let json = Fidelity::Json;
        assert!(json.same(
            &Value::Json(r#"{"b":1,"a":[2, 3]}"#.to_owned()),
            &Value::Json(r#"{"a": [2,3], "b": 1}"#.to_owned())
        ));
        assert!(!json.same(
            &Value::Json(r#"{"a":1}"#.to_owned()),
            &Value::Json(r#"{"a":2}"#.to_owned())
        ));
        assert!(Fidelity::CaseInsensitive.same(&text("ABC-def"), &text("abc-DEF")));
        assert!(!Fidelity::CaseInsensitive.same(&text("abc"), &text("abd")));
    }
}
