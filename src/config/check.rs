//! Structural check of a parsed TOML document against the JSON Schema of
//! the raw types (`raw.rs`): unknown keys, wrong types, values outside an
//! `enum`, integers out of bounds and missing required keys, every one with
//! its position. Offending entries are removed so that the document that is
//! left deserializes into `RawConfig`, and the semantic checks can run on
//! it too: the user sees every problem at once.
//!
//! Only the schema keywords schemars emits for our types are interpreted:
//! `$ref`, `type`, `enum`, `const`, `anyOf`/`oneOf`, `properties`,
//! `additionalProperties`, `required`, `items`, `minimum`, `maximum`,
//! `exclusiveMinimum`, `exclusiveMaximum` and integer `format`s. `pattern`
//! is for editors only; the same rule is enforced when converting.

use std::collections::HashMap;
use std::ops::Range;

use serde_json::Value;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

/// A problem found by the checker: path, byte span, message.
pub(crate) struct Problem {
    pub path: String,
    pub span: Range<usize>,
    pub message: String,
}

/// Byte spans of every value of the document, by key path
/// (`backends[0].name`), to place the errors of later checks.
#[derive(Default)]
pub(crate) struct Positions {
    spans: HashMap<String, Range<usize>>,
}

impl Positions {
    /// The span of `path`, or of its nearest enclosing value that is in the
    /// document; the start of the file when none is.
    pub fn span(&self, path: &str) -> Range<usize> {
        let mut path = path;
        loop {
            if let Some(span) = self.spans.get(path) {
                return span.clone();
            }
            match parent(path) {
                Some(up) => path = up,
                None => return 0..0,
            }
        }
    }
}

/// `a.b[2]` → `a.b`, `a.b` → `a`, `a` → `` and `` → None. Quoted keys
/// (`headers."a.b"`) are skipped over.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let mut cut = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in path.char_indices() {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '.' | '[' => cut = i,
            _ => {}
        }
    }
    path.get(..cut)
}

/// `path` extended by the table key `key`, quoted unless it is a bare key.
pub(crate) fn join_key(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// `path` extended by the array index `index`.
pub(crate) fn join_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// Checks `root` against `schema`, returning what is left of the document
/// once the offending entries are removed, the problems, and the positions
/// of every value.
pub(crate) fn check<'i>(
    schema: &Value,
    root: Spanned<DeTable<'i>>,
) -> (Spanned<DeTable<'i>>, Vec<Problem>, Positions) {
    let mut checker = Checker {
        root: schema,
        problems: Vec::new(),
        positions: Positions::default(),
    };
    let span = root.span();
    let value = Spanned::new(span.clone(), DeValue::Table(root.into_inner()));
    let table = match checker.value(schema, value, "") {
        Some(value) => match value.into_inner() {
            DeValue::Table(table) => table,
            _ => DeTable::default(),
        },
        None => DeTable::default(),
    };
    (
        Spanned::new(span, table),
        checker.problems,
        checker.positions,
    )
}

struct Checker<'s> {
    root: &'s Value,
    problems: Vec<Problem>,
    positions: Positions,
}

impl<'s> Checker<'s> {
    fn problem(&mut self, path: &str, span: Range<usize>, message: String) {
        self.problems.push(Problem {
            path: path.to_owned(),
            span,
            message,
        });
    }

    /// Follows `$ref`s into `$defs`.
    fn resolve(&self, mut schema: &'s Value) -> &'s Value {
        // Bounded: a cycle of references would otherwise loop forever.
        for _ in 0..32 {
            let Some(target) = schema.get("$ref").and_then(Value::as_str) else {
                break;
            };
            let Some(name) = target.strip_prefix("#/$defs/") else {
                break;
            };
            match self.root.get("$defs").and_then(|defs| defs.get(name)) {
                Some(def) => schema = def,
                None => break,
            }
        }
        schema
    }

    /// Checks one value; `None` when it must be removed.
    fn value<'i>(
        &mut self,
        schema: &'s Value,
        value: Spanned<DeValue<'i>>,
        path: &str,
    ) -> Option<Spanned<DeValue<'i>>> {
        let schema = self.resolve(schema);
        let span = value.span();
        self.positions.spans.insert(path.to_owned(), span.clone());

        if let Some(alternatives) = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Value::as_array)
        {
            return self.alternatives(alternatives, value, path);
        }

        let expected = expected_types(schema);
        let found = json_type(value.get_ref());
        if !expected.is_empty()
            && !expected
                .iter()
                .any(|t| *t == found || (*t == "number" && found == "integer"))
        {
            let wanted = expected
                .iter()
                .map(|t| with_article(t))
                .collect::<Vec<_>>()
                .join(" or ");
            let message = format!("expected {wanted}, found {}", describe(value.get_ref()));
            self.problem(path, span, message);
            return None;
        }

        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.iter().any(|a| equals(value.get_ref(), a))
        {
            let list = allowed
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let found = describe(value.get_ref());
            self.problem(path, span, format!("expected one of {list}, found {found}"));
            return None;
        }
        if let Some(constant) = schema.get("const")
            && !equals(value.get_ref(), constant)
        {
            let found = describe(value.get_ref());
            self.problem(path, span, format!("expected {constant}, found {found}"));
            return None;
        }

        let (value_span, value) = (span.clone(), value.into_inner());
        let value = match value {
            DeValue::Integer(int) => {
                if let Err(message) = integer_in_bounds(schema, int.as_str(), int.radix()) {
                    self.problem(path, value_span, message);
                    return None;
                }
                DeValue::Integer(int)
            }
            DeValue::Table(table) => DeValue::Table(self.table(schema, table, path, &value_span)),
            DeValue::Array(array) => DeValue::Array(self.array(schema, array, path)),
            other => other,
        };
        Some(Spanned::new(value_span, value))
    }

    /// `anyOf`/`oneOf`: the first alternative that accepts the value wins;
    /// when none does, the problems of the first alternative of the right
    /// type (or else of the first one) are reported.
    fn alternatives<'i>(
        &mut self,
        alternatives: &'s [Value],
        value: Spanned<DeValue<'i>>,
        path: &str,
    ) -> Option<Spanned<DeValue<'i>>> {
        for alternative in alternatives {
            let mut trial = Checker {
                root: self.root,
                problems: Vec::new(),
                positions: Positions::default(),
            };
            let result = trial.value(alternative, value.clone(), path);
            if trial.problems.is_empty() {
                self.positions.spans.extend(trial.positions.spans);
                return result;
            }
        }
        let found = json_type(value.get_ref());
        let closest = alternatives
            .iter()
            .find(|a| expected_types(self.resolve(a)).contains(&found))
            .or_else(|| alternatives.first());
        match closest {
            Some(alternative) => self.value(alternative, value, path),
            None => Some(value),
        }
    }

    fn table<'i>(
        &mut self,
        schema: &'s Value,
        table: DeTable<'i>,
        path: &str,
        span: &Range<usize>,
    ) -> DeTable<'i> {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        let mut kept = DeTable::default();
        let mut present = Vec::new();
        for (key, value) in table {
            let name: &str = key.get_ref();
            let key_path = join_key(path, name);
            present.push(name.to_owned());
            let sub = properties
                .and_then(|p| p.get(name))
                .or_else(|| additional.filter(|a| a.is_object()));
            match sub {
                Some(sub) => {
                    if let Some(value) = self.value(sub, value, &key_path) {
                        kept.insert(key, value);
                    }
                }
                None if additional == Some(&Value::Bool(false)) => {
                    let known: Vec<&str> = properties
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    let message = unknown_key_message(name, &known);
                    self.positions.spans.insert(key_path.clone(), key.span());
                    self.problem(&key_path, key.span(), message);
                }
                None => {
                    kept.insert(key, value);
                }
            }
        }
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !present.iter().any(|p| p == name) {
                    let key_path = join_key(path, name);
                    self.problem(&key_path, span.clone(), "required key is missing".into());
                }
            }
        }
        kept
    }

    fn array<'i>(&mut self, schema: &'s Value, array: DeArray<'i>, path: &str) -> DeArray<'i> {
        let Some(items) = schema.get("items") else {
            return array;
        };
        let items_are_tables = expected_types(self.resolve(items)) == ["object"];
        let mut kept = DeArray::new();
        for (i, item) in array.into_iter().enumerate() {
            let span = item.span();
            match self.value(items, item, &join_index(path, i)) {
                Some(item) => kept.push(item),
                // Keep the indices of tables stable, so that later messages
                // about `backends[3]` point at the right one.
                None if items_are_tables => {
                    kept.push(Spanned::new(span, DeValue::Table(DeTable::default())));
                }
                None => {}
            }
        }
        kept
    }
}

/// The JSON types a schema allows; empty when it does not say.
fn expected_types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The JSON type a TOML value deserializes as; datetimes match none.
fn json_type(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "string",
        DeValue::Integer(_) => "integer",
        DeValue::Float(_) => "number",
        DeValue::Boolean(_) => "boolean",
        DeValue::Datetime(_) => "datetime",
        DeValue::Array(_) => "array",
        DeValue::Table(_) => "object",
    }
}

fn with_article(json_type: &str) -> &'static str {
    match json_type {
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "a boolean",
        "array" => "an array",
        "object" => "a table",
        "null" => "nothing",
        _ => "a value",
    }
}

/// A short description of a value for messages: `"x"`, `42`, `a table`.
fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => {
            let mut shown: String = s.chars().take(40).collect();
            if shown.len() < s.len() {
                shown.push('…');
            }
            format!("{shown:?}")
        }
        DeValue::Integer(i) => format!("integer {i}"),
        DeValue::Float(f) => format!("float {f}"),
        DeValue::Boolean(b) => format!("boolean {b}"),
        DeValue::Datetime(d) => format!("datetime {d}"),
        DeValue::Array(_) => "an array".into(),
        DeValue::Table(_) => "a table".into(),
    }
}

/// Whether a scalar TOML value equals a JSON `enum`/`const` entry.
fn equals(value: &DeValue<'_>, json: &Value) -> bool {
    match (value, json) {
        (DeValue::String(s), Value::String(j)) => s.as_ref() == j.as_str(),
        (DeValue::Boolean(b), Value::Bool(j)) => b == j,
        (DeValue::Integer(i), Value::Number(j)) => {
            let parsed = i128::from_str_radix(i.as_str(), i.radix()).ok();
            parsed.is_some_and(|p| {
                j.as_i64().map(i128::from) == Some(p) || j.as_u64().map(i128::from) == Some(p)
            })
        }
        _ => false,
    }
}

/// Checks an integer against `minimum`, `maximum`, their exclusive forms
/// and the range implied by an integer `format` (`uint64`, `int32`, …).
fn integer_in_bounds(schema: &Value, digits: &str, radix: u32) -> Result<(), String> {
    let Ok(n) = i128::from_str_radix(digits, radix) else {
        return Err("integer is out of range".into());
    };
    let (mut min, mut max): (Option<i128>, Option<i128>) =
        match schema.get("format").and_then(Value::as_str) {
            Some("uint8") => (Some(0), Some(u8::MAX.into())),
            Some("uint16") => (Some(0), Some(u16::MAX.into())),
            Some("uint32") => (Some(0), Some(u32::MAX.into())),
            Some("uint64" | "uint") => (Some(0), Some(u64::MAX.into())),
            Some("int8") => (Some(i8::MIN.into()), Some(i8::MAX.into())),
            Some("int16") => (Some(i16::MIN.into()), Some(i16::MAX.into())),
            Some("int32") => (Some(i32::MIN.into()), Some(i32::MAX.into())),
            Some("int64" | "int") => (Some(i64::MIN.into()), Some(i64::MAX.into())),
            _ => (None, None),
        };
    let bound = |key: &str| schema.get(key).and_then(json_integer);
    if let Some(m) = bound("minimum") {
        min = Some(min.map_or(m, |x| x.max(m)));
    }
    if let Some(m) = bound("exclusiveMinimum") {
        min = Some(min.map_or(m + 1, |x| x.max(m + 1)));
    }
    if let Some(m) = bound("maximum") {
        max = Some(max.map_or(m, |x| x.min(m)));
    }
    if let Some(m) = bound("exclusiveMaximum") {
        max = Some(max.map_or(m - 1, |x| x.min(m - 1)));
    }
    if let Some(min) = min.filter(|min| n < *min) {
        return Err(format!("must be at least {min}, found {n}"));
    }
    if let Some(max) = max.filter(|max| n > *max) {
        return Err(format!("must be at most {max}, found {n}"));
    }
    Ok(())
}

fn json_integer(value: &Value) -> Option<i128> {
    value
        .as_i64()
        .map(i128::from)
        .or_else(|| value.as_u64().map(i128::from))
        // Float bounds (schemars writes `1.0` for some types) are whole
        // numbers here; truncation is intended.
        .or_else(|| value.as_f64().map(|f| f as i128))
}

fn unknown_key_message(name: &str, known: &[&str]) -> String {
    let close = known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len())
        .min();
    match close {
        Some((_, k)) => format!("unknown key (did you mean {k:?}?)"),
        None if known.is_empty() => "unknown key".into(),
        None => format!("unknown key (expected one of: {})", known.join(", ")),
    }
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for ((cb, diagonal), above) in b.iter().zip(&previous).zip(previous.iter().skip(1)) {
            let left = current.last().copied().unwrap_or(0);
            let cost = diagonal + usize::from(ca != *cb);
            current.push(cost.min(above + 1).min(left + 1));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(0)
}
