//! Reading request fields with errors that name the field and say what was expected.
use serde_json::{Map, Value};

pub type Body = Map<String, Value>;

/// An optional non-negative integer field (its bounds are the rulebook's:
/// [`profiler::plan`]).
pub fn unsigned_opt(body: &Body, name: &str) -> Result<Option<u64>, String> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => unsigned(name, value).map(Some),
    }
}

fn unsigned(name: &str, value: &Value) -> Result<u64, String> {
    value
        .as_u64()
        .ok_or_else(|| format!("{name}: must be a non-negative integer, got {value}"))
}

/// An optional number field (fractions allowed).
pub fn number_opt(body: &Body, name: &str) -> Result<Option<f64>, String> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("{name}: must be a number, got {value}")),
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
    list(body, name, max_len, "strings", |entry, value| {
        value
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{entry}: must be a string, got {value}"))
    })
}

/// An optional list of at most `max_len` non-negative integers.
pub fn unsigned_list(body: &Body, name: &str, max_len: usize) -> Result<Option<Vec<u64>>, String> {
    list(body, name, max_len, "non-negative integers", unsigned)
}

/// An optional list of at most `max_len` `what`, each entry read by `entry` (named `name[i]`).
fn list<T>(
    body: &Body,
    name: &str,
    max_len: usize,
    what: &str,
    entry: impl Fn(&str, &Value) -> Result<T, String>,
) -> Result<Option<Vec<T>>, String> {
    let items = match body.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) if items.len() <= max_len => items,
        Some(value) => {
            return Err(format!(
                "{name}: must be a list of at most {max_len} {what}, got {value}"
            ));
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| entry(&format!("{name}[{i}]"), item))
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
    fn integers_are_read_by_type_and_named() {
        let b = body(json!({"n": 5, "neg": -1, "frac": 1.5, "text": "7", "zero": 0}));
        assert_eq!(unsigned_opt(&b, "n"), Ok(Some(5)));
        assert_eq!(unsigned_opt(&b, "zero"), Ok(Some(0)));
        assert_eq!(unsigned_opt(&b, "absent"), Ok(None));
        for field in ["neg", "frac", "text"] {
            let err = unsigned_opt(&b, field).unwrap_err();
            assert!(err.starts_with(&format!("{field}:")), "{err}");
        }
    }

    #[test]
    fn lists_name_the_bad_entry() {
        let b = body(json!({"levels": [1, -2, 3], "long": [1, 2, 3], "scalar": 3}));
        assert_eq!(
            unsigned_list(&b, "levels", 8).unwrap_err(),
            "levels[1]: must be a non-negative integer, got -2"
        );
        assert!(unsigned_list(&b, "long", 2).unwrap_err().starts_with("long:"));
        assert!(unsigned_list(&b, "scalar", 8).unwrap_err().starts_with("scalar:"));
        assert_eq!(unsigned_list(&b, "absent", 8), Ok(None));
    }

    #[test]
    fn numbers_and_strings() {
        let b = body(json!({"rate": 100.5, "bad": "x", "s": "hi", "n": 1}));
        assert_eq!(number_opt(&b, "rate"), Ok(Some(100.5)));
        assert!(number_opt(&b, "bad").unwrap_err().starts_with("bad:"));
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
