//! Reading request fields with errors that name the field and say what was expected.
use serde_json::{Map, Value};
use std::ops::RangeInclusive;

pub type Body = Map<String, Value>;

/// An integer field within `range`, or `default` when absent.
pub fn integer(body: &Body, name: &str, default: u64, range: RangeInclusive<u64>) -> Result<u64, String> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => integer_value(name, value, &range),
    }
}

/// An optional integer field within `range`.
pub fn integer_opt(body: &Body, name: &str, range: RangeInclusive<u64>) -> Result<Option<u64>, String> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => integer_value(name, value, &range).map(Some),
    }
}

fn integer_value(name: &str, value: &Value, range: &RangeInclusive<u64>) -> Result<u64, String> {
    let expected = || {
        format!(
            "{name}: must be an integer from {} to {}, got {value}",
            range.start(),
            range.end()
        )
    };
    let n = value.as_u64().ok_or_else(expected)?;
    if range.contains(&n) { Ok(n) } else { Err(expected()) }
}

/// An optional number field within `range` (fractions allowed).
pub fn number_opt(body: &Body, name: &str, range: RangeInclusive<f64>) -> Result<Option<f64>, String> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_f64() {
            Some(x) if range.contains(&x) => Ok(Some(x)),
            _ => Err(format!(
                "{name}: must be a number from {} to {}, got {value}",
                range.start(),
                range.end()
            )),
        },
    }
}

/// A boolean field, or `default` when absent.
pub fn boolean(body: &Body, name: &str, default: bool) -> Result<bool, String> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(value) => Err(format!("{name}: must be true or false, got {value}")),
    }
}

/// An optional string field.
pub fn string_opt<'a>(body: &'a Body, name: &str) -> Result<Option<&'a str>, String> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(value) => Err(format!("{name}: must be a string, got {value}")),
    }
}

/// A string field that must be present.
pub fn string<'a>(body: &'a Body, name: &str) -> Result<&'a str, String> {
    string_opt(body, name)?.ok_or_else(|| format!("{name}: missing"))
}

/// An optional list of at most `max_len` strings.
pub fn string_list(body: &Body, name: &str, max_len: usize) -> Result<Option<Vec<String>>, String> {
    let items = match body.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) if items.len() <= max_len => items,
        Some(value) => {
            return Err(format!(
                "{name}: must be a list of at most {max_len} strings, got {value}"
            ));
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!("{name}[{i}]: must be a string, got {other}")),
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// An optional non-empty list of integers, each within `range`, at most `max_len` long.
pub fn integer_list(
    body: &Body,
    name: &str,
    range: RangeInclusive<u64>,
    max_len: usize,
) -> Result<Option<Vec<u64>>, String> {
    let items = match body.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(value) => return Err(format!("{name}: must be a list of integers, got {value}")),
    };
    if items.is_empty() || items.len() > max_len {
        return Err(format!("{name}: must hold 1 to {max_len} entries, got {}", items.len()));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| integer_value(&format!("{name}[{i}]"), item, &range))
        .collect::<Result<_, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Body {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn integers_are_checked_and_named() {
        let b = body(json!({"n": 5, "neg": -1, "frac": 1.5, "text": "7", "zero": 0}));
        assert_eq!(integer(&b, "n", 1, 1..=10), Ok(5));
        assert_eq!(integer(&b, "absent", 3, 1..=10), Ok(3));
        for field in ["neg", "frac", "text", "zero"] {
            let err = integer(&b, field, 1, 1..=10).unwrap_err();
            assert!(err.starts_with(&format!("{field}:")), "{err}");
        }
        assert!(integer(&b, "n", 1, 1..=4).unwrap_err().contains("from 1 to 4"));
    }

    #[test]
    fn lists_name_the_bad_entry() {
        let b = body(json!({"levels": [1, 0, 3], "empty": [], "scalar": 3}));
        assert_eq!(
            integer_list(&b, "levels", 1..=10, 8).unwrap_err(),
            "levels[1]: must be an integer from 1 to 10, got 0"
        );
        assert!(integer_list(&b, "empty", 1..=10, 8).unwrap_err().starts_with("empty:"));
        assert!(
            integer_list(&b, "scalar", 1..=10, 8)
                .unwrap_err()
                .starts_with("scalar:")
        );
        assert_eq!(integer_list(&b, "absent", 1..=10, 8), Ok(None));
    }

    #[test]
    fn numbers_and_strings() {
        let b = body(json!({"rate": 100.5, "bad": "x", "s": "hi", "n": 1}));
        assert_eq!(number_opt(&b, "rate", 1.0..=1e6), Ok(Some(100.5)));
        assert!(number_opt(&b, "bad", 1.0..=1e6).unwrap_err().starts_with("bad:"));
        assert_eq!(string(&b, "s"), Ok("hi"));
        assert!(string(&b, "n").unwrap_err().starts_with("n:"));
        assert_eq!(string(&b, "absent").unwrap_err(), "absent: missing");
    }

    #[test]
    fn booleans() {
        let b = body(json!({"yes": true, "text": "true"}));
        assert_eq!(boolean(&b, "yes", false), Ok(true));
        assert_eq!(boolean(&b, "absent", false), Ok(false));
        assert_eq!(
            boolean(&b, "text", false).unwrap_err(),
            "text: must be true or false, got \"true\""
        );
    }
}
