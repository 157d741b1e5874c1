//! How keys and images are written into the store's columns, and read back.
//!
//! Both use the JSON form of [`Value`] (`crate::replay::value_to_json`). A key is a
//! JSON array with no spaces, so equal keys give equal text and the link indexes match
//! them exactly (`{"decimal":"10.50"}` and `{"decimal":"10.5"}` stay different); `-0.0`
//! is written as `0.0` since the two are equal values. An image is a JSON object in
//! field name order, hashed as written. Values the JSON form cannot bring back exactly
//! (a timestamp or date out of range, a decimal or JSON document that is not valid) are
//! refused on the way in rather than stored damaged.

use std::fmt::Write as _;

use serde_json::{Map, Value as Json};

use crate::change::Value;
use crate::replay::{check_decimal, value_from_json, value_to_json};

use super::types::{ConflictImages, Image, Key};

/// Checks that `value` comes back from its JSON form exactly.
fn check_value(value: &Value) -> Result<(), String> {
    match value {
        Value::Decimal(digits) => check_decimal(digits),
        Value::Timestamp(_) | Value::Date(_) => match value_from_json(&value_to_json(value)) {
            Ok(back) if back == *value => Ok(()),
            _ => Err(format!("{value:?} is out of the range the store can hold")),
        },
        Value::Json(text) => serde_json::from_str::<Json>(text)
            .map(drop)
            .map_err(|error| format!("json value is not valid JSON: {error}")),
        Value::Null
        | Value::Boolean(_)
        | Value::Integer(_)
        | Value::Float(_)
        | Value::Text(_)
        | Value::Bytes(_) => Ok(()),
    }
}

/// The canonical text of a key; refuses an empty key and values that do not round-trip.
pub(super) fn encode_key(key: &[Value]) -> Result<String, String> {
    if key.is_empty() {
        return Err("a key has at least one value".to_owned());
    }
    let mut items = Vec::with_capacity(key.len());
    for (index, value) in key.iter().enumerate() {
        check_value(value).map_err(|error| format!("key value {}: {error}", index + 1))?;
        items.push(match value {
            Value::Float(f) if *f == 0.0 => value_to_json(&Value::Float(0.0)),
            other => value_to_json(other),
        });
    }
    Ok(Json::Array(items).to_string())
}

/// Reads a key written by [`encode_key`].
pub(super) fn decode_key(text: &str) -> Result<Key, String> {
    match serde_json::from_str::<Json>(text) {
        Ok(Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                value_from_json(item).map_err(|error| format!("key value {}: {error}", index + 1))
            })
            .collect(),
        Ok(_) => Err(format!("key is not a JSON array: {text}")),
        Err(error) => Err(format!("key is not JSON ({error}): {text}")),
    }
}

/// The JSON text of an image, unchecked (what [`ImageHash::of`] hashes).
///
/// [`ImageHash::of`]: super::ImageHash::of
pub(super) fn image_json_text(image: &Image) -> String {
    // Written field by field: the same text as `image_to_json(image).to_string()`
    // without building (and hashing the names into) an intermediate JSON map.
    let mut text = String::with_capacity(2 + 40 * image.len());
    text.push('{');
    for (index, (name, value)) in image.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        // Writing into a String cannot fail.
        let _ = write!(
            text,
            "{}:{}",
            Json::String(name.clone()),
            value_to_json(value)
        );
    }
    text.push('}');
    text
}

fn image_to_json(image: &Image) -> Json {
    Json::Object(
        image
            .iter()
            .map(|(name, value)| (name.clone(), value_to_json(value)))
            .collect::<Map<_, _>>(),
    )
}

/// The JSON text of an image; refuses values that do not round-trip.
pub(super) fn encode_image(image: &Image) -> Result<String, String> {
    for (name, value) in image {
        check_value(value).map_err(|error| format!("field {name}: {error}"))?;
    }
    Ok(image_json_text(image))
}

fn image_from_json(json: &Json) -> Result<Image, String> {
    let Json::Object(fields) = json else {
        return Err(format!("image is not a JSON object: {json}"));
    };
    fields
        .iter()
        .map(|(name, value)| {
            value_from_json(value)
                .map(|value| (name.clone(), value))
                .map_err(|error| format!("field {name}: {error}"))
        })
        .collect()
}

/// Reads an image written by [`encode_image`].
pub(super) fn decode_image(text: &str) -> Result<Image, String> {
    let json = serde_json::from_str::<Json>(text)
        .map_err(|error| format!("image is not JSON ({error})"))?;
    image_from_json(&json)
}

/// The JSON text of a list of field names.
pub(super) fn encode_names(names: &[String]) -> String {
    Json::Array(names.iter().cloned().map(Json::String).collect()).to_string()
}

/// Reads a list written by [`encode_names`].
pub(super) fn decode_names(text: &str) -> Result<Vec<String>, String> {
    serde_json::from_str::<Vec<String>>(text)
        .map_err(|error| format!("field list is not a JSON array of names ({error})"))
}

const CONFLICT_PARTS: [&str; 4] = ["erp_base", "crm_base", "erp", "crm"];

/// The JSON text of a conflict's images: an object with the parts that are known.
pub(super) fn encode_conflict(conflict: &ConflictImages) -> Result<String, String> {
    let parts = [
        &conflict.erp_base,
        &conflict.crm_base,
        &conflict.erp,
        &conflict.crm,
    ];
    let mut object = Map::new();
    for (name, image) in CONFLICT_PARTS.into_iter().zip(parts) {
        if let Some(image) = image {
            for (field, value) in image {
                check_value(value).map_err(|error| format!("{name} field {field}: {error}"))?;
            }
            object.insert(name.to_owned(), image_to_json(image));
        }
    }
    Ok(Json::Object(object).to_string())
}

/// Reads conflict images written by [`encode_conflict`].
pub(super) fn decode_conflict(text: &str) -> Result<ConflictImages, String> {
    let json = serde_json::from_str::<Json>(text)
        .map_err(|error| format!("conflict images are not JSON ({error})"))?;
    let Json::Object(object) = json else {
        return Err("conflict images are not a JSON object".to_owned());
    };
    if let Some(unknown) = object
        .keys()
        .find(|key| !CONFLICT_PARTS.contains(&key.as_str()))
    {
        return Err(format!("unknown conflict image \"{unknown}\""));
    }
    let part = |name: &str| {
        object
            .get(name)
            .map(|json| image_from_json(json).map_err(|error| format!("{name}: {error}")))
            .transpose()
    };
    Ok(ConflictImages {
        erp_base: part("erp_base")?,
        crm_base: part("crm_base")?,
        erp: part("erp")?,
        crm: part("crm")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Timestamp;

    #[test]
    fn keys_round_trip_and_keep_decimal_scale() {
        let key = vec![
            Value::Decimal("10.50".into()),
            Value::Text("A-1".into()),
            Value::Integer(-3),
        ];
        let text = encode_key(&key).expect("encodable");
        assert_eq!(text, r#"[{"decimal":"10.50"},"A-1",-3]"#);
        assert_eq!(decode_key(&text), Ok(key));
        assert_ne!(
            encode_key(&[Value::Decimal("10.5".into())]),
            encode_key(&[Value::Decimal("10.50".into())])
        );
    }

    #[test]
    fn negative_zero_keys_match_zero() {
        assert_eq!(
            encode_key(&[Value::Float(-0.0)]),
            encode_key(&[Value::Float(0.0)])
        );
    }

    #[test]
    fn values_that_cannot_come_back_are_refused() {
        let bad_timestamp = Value::Timestamp(Timestamp {
            seconds: 0,
            nanos: 2_000_000_000,
            offset_minutes: None,
        });
        for (value, needle) in [
            (Value::Decimal("1e5".into()), "canonical decimal"),
            (Value::Json("{oops".into()), "not valid JSON"),
            (bad_timestamp, "out of the range"),
            (Value::Date(i32::MAX), "out of the range"),
        ] {
            let error = encode_key(std::slice::from_ref(&value)).expect_err("refused");
            assert!(error.contains(needle), "{error}");
            let image = Image::from([("f".to_owned(), value)]);
            let error = encode_image(&image).expect_err("refused");
            assert!(error.starts_with("field f: "), "{error}");
        }
        assert!(encode_key(&[]).is_err());
    }

    #[test]
    fn images_are_written_as_their_json_object() {
        let image = Image::from([
            ("b \"quoted\"".to_owned(), Value::Decimal("1.50".into())),
            ("a".to_owned(), Value::Json(r#"{"x": [1, 2]}"#.into())),
        ]);
        let text = encode_image(&image).expect("encodable");
        assert_eq!(text, image_to_json(&image).to_string());
        assert_eq!(
            text,
            r#"{"a":{"json":{"x":[1,2]}},"b \"quoted\"":{"decimal":"1.50"}}"#
        );
        assert_eq!(image_json_text(&Image::new()), "{}");
    }

    #[test]
    fn conflicts_round_trip() {
        let image = Image::from([("name".to_owned(), Value::Text("x".into()))]);
        let conflict = ConflictImages {
            erp_base: Some(image.clone()),
            crm_base: None,
            erp: Some(Image::new()),
            crm: Some(image),
        };
        let text = encode_conflict(&conflict).expect("encodable");
        assert_eq!(decode_conflict(&text), Ok(conflict));
        assert!(decode_conflict(r#"{"theirs": {}}"#).is_err());
    }
}
