//! The compact binary form of values, keys and rows: what the state store keeps for a
//! link's keys and images, and what the engine hashes and compares keys by.
//!
//! A value is a tag byte and its payload; integers are LEB128 (signed ones zigzag), so
//! small numbers take a byte or two:
//!
//! | tag | value | payload |
//! |---:|---|---|
//! | 0 | null | - |
//! | 1, 2 | false, true | - |
//! | 3 | integer | zigzag LEB128 |
//! | 4 | float | 8 bytes, IEEE 754 bits little-endian |
//! | 5 | decimal | LEB128 length, ASCII digits |
//! | 6 | text | LEB128 length, UTF-8 |
//! | 7 | timestamp | zigzag LEB128 seconds, LEB128 nanos, 0 or 1 then zigzag LEB128 offset minutes |
//! | 8 | date | zigzag LEB128 days |
//! | 9 | bytes | LEB128 length, bytes |
//! | 10 | json | LEB128 length, UTF-8 |
//!
//! A sequence of values ([`encode_values`]) is a LEB128 count followed by the values; a
//! stored image starts with the format byte [`FORMAT`] so a later format can be told
//! apart. The encoding is canonical (minimal LEB128, one form per value; a key's `-0.0`
//! is written as `0.0`, the value it equals), so equal keys have equal bytes and the
//! bytes can serve as the key's identity. Decoding checks everything (lengths, UTF-8,
//! decimal text, nanos, trailing bytes) and says what is wrong; it never panics on
//! damaged input.

use super::{Timestamp, Value};

/// The format byte that starts an encoded image ([`encode_image`]).
pub const FORMAT: u8 = 1;

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const INTEGER: u8 = 3;
const FLOAT: u8 = 4;
const DECIMAL: u8 = 5;
const TEXT: u8 = 6;
const TIMESTAMP: u8 = 7;
const DATE: u8 = 8;
const BYTES: u8 = 9;
const JSON: u8 = 10;

/// Appends `value` to `out`.
pub fn encode_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(NULL),
        Value::Boolean(false) => out.push(FALSE),
        Value::Boolean(true) => out.push(TRUE),
        Value::Integer(integer) => {
            out.push(INTEGER);
            put_signed(out, *integer);
        }
        Value::Float(float) => {
            out.push(FLOAT);
            out.extend_from_slice(&float.to_bits().to_le_bytes());
        }
        Value::Decimal(text) => put_text(out, DECIMAL, text.as_bytes()),
        Value::Text(text) => put_text(out, TEXT, text.as_bytes()),
        Value::Timestamp(timestamp) => {
            out.push(TIMESTAMP);
            put_signed(out, timestamp.seconds);
            put_unsigned(out, u64::from(timestamp.nanos));
            match timestamp.offset_minutes {
                None => out.push(0),
                Some(offset) => {
                    out.push(1);
                    put_signed(out, i64::from(offset));
                }
            }
        }
        Value::Date(days) => {
            out.push(DATE);
            put_signed(out, i64::from(*days));
        }
        Value::Bytes(bytes) => put_text(out, BYTES, bytes),
        Value::Json(text) => put_text(out, JSON, text.as_bytes()),
    }
}

/// Appends a count and `values` to `out`.
pub fn encode_values<'a>(values: impl ExactSizeIterator<Item = &'a Value>, out: &mut Vec<u8>) {
    put_unsigned(out, values.len() as u64);
    for value in values {
        encode_value(value, out);
    }
}

/// The canonical bytes of a key: its values in key order, `-0.0` as `0.0`.
pub fn encode_key(key: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 12 * key.len());
    put_unsigned(&mut out, key.len() as u64);
    for value in key {
        match value {
            Value::Float(float) if *float == 0.0 => encode_value(&Value::Float(0.0), &mut out),
            other => encode_value(other, &mut out),
        }
    }
    out
}

/// The stored form of an image: [`FORMAT`], then its values.
pub fn encode_image<'a>(values: impl ExactSizeIterator<Item = &'a Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 16 * values.len());
    out.push(FORMAT);
    encode_values(values, &mut out);
    out
}

/// Reads the values written by [`encode_key`] (or [`encode_values`]): all of `bytes`.
pub fn decode_values(bytes: &[u8]) -> Result<Vec<Value>, String> {
    let mut reader = Reader { bytes, at: 0 };
    let values = reader.values()?;
    reader.end()?;
    Ok(values)
}

/// Reads an image written by [`encode_image`].
pub fn decode_image(bytes: &[u8]) -> Result<Vec<Value>, String> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => decode_values(rest).map_err(|error| format!("image: {error}")),
        Some((other, _)) => Err(format!("image: unknown format {other}")),
        None => Err("image: empty".to_owned()),
    }
}

fn put_unsigned(out: &mut Vec<u8>, mut number: u64) {
    loop {
        let byte = (number & 0x7f) as u8;
        number >>= 7;
        if number == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_signed(out: &mut Vec<u8>, number: i64) {
    put_unsigned(out, ((number << 1) ^ (number >> 63)) as u64);
}

fn put_text(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    put_unsigned(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let byte = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| format!("ends early at byte {}", self.at))?;
        self.at += 1;
        Ok(byte)
    }

    fn take(&mut self, count: u64) -> Result<&'a [u8], String> {
        let count = usize::try_from(count).map_err(|_| "a length too large".to_owned())?;
        let end = self
            .at
            .checked_add(count)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "a length of {count} at byte {} runs past the end ({} bytes)",
                    self.at,
                    self.bytes.len()
                )
            })?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn unsigned(&mut self) -> Result<u64, String> {
        let start = self.at;
        let mut number = 0_u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(format!("a number at byte {start} overflows 64 bits"));
            }
            number |= bits << shift;
            if byte & 0x80 == 0 {
                // Canonical: no trailing zero groups.
                if byte == 0 && self.at - start > 1 {
                    return Err(format!("a number at byte {start} is not minimally encoded"));
                }
                return Ok(number);
            }
        }
        Err(format!("a number at byte {start} is longer than 10 bytes"))
    }

    fn signed(&mut self) -> Result<i64, String> {
        let zigzag = self.unsigned()?;
        Ok(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64))
    }

    fn text(&mut self, what: &str) -> Result<String, String> {
        let length = self.unsigned()?;
        let at = self.at;
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| format!("the {what} at byte {at} is not UTF-8"))
    }

    fn value(&mut self) -> Result<Value, String> {
        let at = self.at;
        Ok(match self.byte()? {
            NULL => Value::Null,
            FALSE => Value::Boolean(false),
            TRUE => Value::Boolean(true),
            INTEGER => Value::Integer(self.signed()?),
            FLOAT => {
                let bytes = self.take(8)?;
                let mut bits = [0_u8; 8];
                bits.copy_from_slice(bytes);
                Value::Float(f64::from_bits(u64::from_le_bytes(bits)))
            }
            DECIMAL => {
                let text = self.text("decimal")?;
                if !is_decimal(&text) {
                    return Err(format!("the decimal at byte {at} is not one: {text:?}"));
                }
                Value::Decimal(text)
            }
            TEXT => Value::Text(self.text("text")?),
            TIMESTAMP => {
                let seconds = self.signed()?;
                let nanos = u32::try_from(self.unsigned()?)
                    .ok()
                    .filter(|nanos| *nanos < 1_000_000_000)
                    .ok_or_else(|| {
                        format!("the timestamp at byte {at} has nanos of 1e9 or more")
                    })?;
                let offset_minutes = match self.byte()? {
                    0 => None,
                    1 => Some(
                        i16::try_from(self.signed()?)
                            .map_err(|_| format!("the timestamp at byte {at} has a bad offset"))?,
                    ),
                    other => {
                        return Err(format!(
                            "the timestamp at byte {at} has offset flag {other}"
                        ));
                    }
                };
                Value::Timestamp(Timestamp {
                    seconds,
                    nanos,
                    offset_minutes,
                })
            }
            DATE => Value::Date(
                i32::try_from(self.signed()?)
                    .map_err(|_| format!("the date at byte {at} is out of range"))?,
            ),
            BYTES => {
                let length = self.unsigned()?;
                Value::Bytes(self.take(length)?.to_vec())
            }
            JSON => Value::Json(self.text("json")?),
            other => return Err(format!("unknown value tag {other} at byte {at}")),
        })
    }

    fn values(&mut self) -> Result<Vec<Value>, String> {
        let count = self.unsigned()?;
        // Every value takes at least a byte: a count beyond what is left is damage.
        if count > (self.bytes.len() - self.at) as u64 {
            return Err(format!(
                "a count of {count} values with {} bytes left",
                self.bytes.len() - self.at
            ));
        }
        (0..count).map(|_| self.value()).collect()
    }

    fn end(&self) -> Result<(), String> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(format!(
                "{} bytes left over after the values",
                self.bytes.len() - self.at
            ))
        }
    }
}

/// `-?[0-9]+(\.[0-9]+)?`, the canonical text of [`Value::Decimal`].
fn is_decimal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (integer, fraction) = match digits.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (digits, None),
    };
    !integer.is_empty()
        && integer.bytes().all(|b| b.is_ascii_digit())
        && fraction.is_none_or(|fraction| {
            !fraction.is_empty() && fraction.bytes().all(|b| b.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn value_strategy() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Boolean),
            any::<i64>().prop_map(Value::Integer),
            any::<f64>()
                .prop_filter("NaN has many bit patterns", |f| !f.is_nan())
                .prop_map(Value::Float),
            "-?[0-9]{1,20}(\\.[0-9]{1,10})?".prop_map(Value::Decimal),
            ".{0,20}".prop_map(Value::Text),
            (
                any::<i64>(),
                0..1_000_000_000_u32,
                proptest::option::of(any::<i16>())
            )
                .prop_map(|(seconds, nanos, offset_minutes)| {
                    Value::Timestamp(Timestamp {
                        seconds,
                        nanos,
                        offset_minutes,
                    })
                }),
            any::<i32>().prop_map(Value::Date),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes),
            "\\{\"[a-z]{0,5}\": [0-9]{1,3}\\}".prop_map(Value::Json),
        ]
    }

    proptest! {
        #[test]
        fn images_round_trip(values in proptest::collection::vec(value_strategy(), 0..12)) {
            let bytes = encode_image(values.iter());
            prop_assert_eq!(decode_image(&bytes).expect("decodes"), values);
        }

        #[test]
        fn equal_keys_have_equal_bytes_and_different_keys_different(
            a in proptest::collection::vec(value_strategy(), 1..4),
            b in proptest::collection::vec(value_strategy(), 1..4),
        ) {
            prop_assert_eq!(encode_key(&a) == encode_key(&b), a == b);
        }

        #[test]
        fn damaged_bytes_are_an_error_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_image(&bytes);
            let _ = decode_values(&bytes);
        }
    }

    #[test]
    fn small_values_are_small_and_zero_keys_are_one_key() {
        assert_eq!(encode_key(&[Value::Integer(5)]), vec![1, INTEGER, 10]);
        assert_eq!(
            encode_key(&[Value::Float(-0.0)]),
            encode_key(&[Value::Float(0.0)])
        );
        assert_eq!(
            encode_key(&[Value::Text("ab".to_owned())]),
            vec![1, TEXT, 2, b'a', b'b']
        );
    }

    #[test]
    fn damage_is_named() {
        assert!(
            decode_image(&[2, 0])
                .unwrap_err()
                .contains("unknown format 2")
        );
        let mut bytes = encode_image([Value::Text("abc".to_owned())].iter());
        bytes.pop();
        assert!(
            decode_image(&bytes)
                .unwrap_err()
                .contains("runs past the end")
        );
        let mut bytes = encode_image([Value::Integer(1)].iter());
        bytes.push(0);
        assert!(decode_image(&bytes).unwrap_err().contains("left over"));
        assert!(
            decode_values(&[1, DECIMAL, 2, b'1', b'x'])
                .unwrap_err()
                .contains("not one")
        );
        assert!(
            decode_values(&[1, INTEGER, 0x80, 0x00])
                .unwrap_err()
                .contains("minimally")
        );
        assert!(
            decode_values(&[5, NULL])
                .unwrap_err()
                .contains("a count of 5 values")
        );
    }
}
