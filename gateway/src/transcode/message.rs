//! From an HTTP request to the RPC's request message (body, path variables, query parameters,
//! proto3 JSON mapping), and from the response message back to JSON.

use std::collections::HashSet;

use base64::Engine as _;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    SerializeOptions, Value,
};

use super::routes::{BodyBinding, Route};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TranscodeError {
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("field `{field}`: {reason}")]
    Field { field: String, reason: String },
    #[error("unknown query parameter `{0}`")]
    UnknownParameter(String),
    #[error("this operation takes no request body")]
    UnexpectedBody,
    #[error("this operation needs a JSON body: the `{0}`")]
    MissingBody(String),
    #[error("a request body is application/json, not `{0}`")]
    NotJson(String),
    /// A streamed body's type must be named, and never one a cross-site form can send.
    #[error("a streamed body names its content type (text/csv…), not `{0}`")]
    NotStreamable(String),
}

impl TranscodeError {
    /// The field the client should fix, for a BadRequest field violation.
    pub fn field(&self) -> String {
        match self {
            Self::Json { .. } | Self::UnexpectedBody | Self::MissingBody(_) => "body".into(),
            Self::NotJson(_) | Self::NotStreamable(_) => "content-type".into(),
            Self::Field { field, .. } => field.clone(),
            Self::UnknownParameter(p) => p.clone(),
        }
    }
}

/// Builds the request message of `route`.
pub fn request_message(
    route: &Route,
    path_vars: &[(String, String)],
    query: &str,
    body: &[u8],
) -> Result<DynamicMessage, TranscodeError> {
    let input = route.rpc.input();
    let mut message = DynamicMessage::new(input.clone());
    let body_is_empty = body.iter().all(u8::is_ascii_whitespace);
    let mut bound: HashSet<String> = path_vars.iter().map(|(f, _)| f.clone()).collect();
    match &route.body {
        BodyBinding::None if !body_is_empty => return Err(TranscodeError::UnexpectedBody),
        BodyBinding::None => {}
        BodyBinding::Whole => {
            if !body_is_empty {
                message = parse_json(input, body)?;
            }
            // With `body: "*"` every field comes from the body; the query binds nothing.
            bound.insert("*".into());
        }
        // The body streams on in messages of its own; the first carries the path's variables.
        BodyBinding::Stream(name) => {
            if !body_is_empty {
                return Err(TranscodeError::UnexpectedBody);
            }
            bound.insert(name.clone());
        }
        BodyBinding::Field(name) => {
            let field = input
                .get_field_by_name(name)
                .expect("checked when the route was built");
            // A create with nothing to create is a mistake (or a probe), never an empty row.
            if body_is_empty {
                return Err(TranscodeError::MissingBody(name.clone()));
            }
            let Kind::Message(kind) = field.kind() else {
                unreachable!("checked when the route was built")
            };
            message.set_field(&field, Value::Message(parse_json(kind, body)?));
            bound.insert(name.clone());
        }
    }
    for (path, raw) in path_vars {
        set_path(&mut message, path, raw)?;
    }
    if !query.is_empty() {
        if bound.contains("*") {
            return Err(TranscodeError::UnknownParameter(
                query.split('&').next().unwrap_or(query).to_string(),
            ));
        }
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = form_decode(key);
            let value = form_decode(value);
            if bound
                .iter()
                .any(|b| key == *b || key.starts_with(&format!("{b}.")))
            {
                return Err(TranscodeError::Field {
                    field: key,
                    reason: "already bound by the path or the body".into(),
                });
            }
            set_path(&mut message, &key, &value).map_err(|e| match e {
                TranscodeError::Field { reason, .. } if reason.starts_with("no field") => {
                    TranscodeError::UnknownParameter(key.clone())
                }
                other => other,
            })?;
        }
    }
    check_values(&message, "")?;
    Ok(message)
}

/// The longest text a field of any request takes, in characters (stated in the OpenAPI document
/// as `maxLength`): a plan's section, a reason, a description fits; a denial of service does not.
pub const MAX_TEXT_CHARS: usize = 10_000;
/// The most items a list of any request takes (`maxItems` in the OpenAPI document).
pub const MAX_LIST_ITEMS: usize = 1_000;

/// Characters no text of pdp holds: NUL and the other controls but tab and line breaks (NUL is
/// refused by PostgreSQL, the others corrupt logs and exports), and the invisible formatting and
/// bidirectional controls that make a name read differently from what it is.
fn forbidden_char(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        || matches!(c,
            '\u{200B}'..='\u{200F}'   // zero-width space, joiners, LRM, RLM
            | '\u{202A}'..='\u{202E}' // bidirectional embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner and invisible operators
            | '\u{2066}'..='\u{2069}' // bidirectional isolates
            | '\u{061C}' | '\u{FEFF}')
}

/// Refuses text with characters no field holds or longer than [`MAX_TEXT_CHARS`], lists longer
/// than [`MAX_LIST_ITEMS`], and enum numbers the enum does not define, naming the field.
fn check_values(message: &DynamicMessage, prefix: &str) -> Result<(), TranscodeError> {
    for (field, value) in message.fields() {
        let name = format!("{prefix}{}", field.name());
        match value {
            Value::List(items) => {
                if items.len() > MAX_LIST_ITEMS {
                    return Err(TranscodeError::Field {
                        field: name,
                        reason: format!("at most {MAX_LIST_ITEMS} items"),
                    });
                }
                for (i, item) in items.iter().enumerate() {
                    check_value(&field, item, &format!("{name}[{i}]"))?;
                }
            }
            Value::Map(entries) => {
                for (key, item) in entries {
                    let key = match key {
                        prost_reflect::MapKey::String(k) => k.clone(),
                        other => format!("{other:?}"),
                    };
                    check_text(&key, &format!("{name}.{key}"))?;
                    check_value(&field, item, &format!("{name}.{key}"))?;
                }
            }
            single => check_value(&field, single, &name)?,
        }
    }
    Ok(())
}

fn check_value(field: &FieldDescriptor, value: &Value, name: &str) -> Result<(), TranscodeError> {
    match value {
        Value::String(text) => check_text(text, name),
        Value::Message(inner) => check_values(inner, &format!("{name}.")),
        Value::EnumNumber(number) => {
            let known = match field.kind() {
                Kind::Enum(e) => e.get_value(*number).is_some(),
                Kind::Message(entry) => match entry.map_entry_value_field().kind() {
                    Kind::Enum(e) => e.get_value(*number).is_some(),
                    _ => true,
                },
                _ => true,
            };
            if known {
                Ok(())
            } else {
                Err(TranscodeError::Field {
                    field: name.to_string(),
                    reason: format!("{number} is not a value of this enum; use its names"),
                })
            }
        }
        _ => Ok(()),
    }
}

fn check_text(text: &str, name: &str) -> Result<(), TranscodeError> {
    if let Some(c) = text.chars().find(|c| forbidden_char(*c)) {
        return Err(TranscodeError::Field {
            field: name.to_string(),
            reason: format!(
                "holds the control or invisible character U+{:04X}; text fields take none",
                u32::from(c)
            ),
        });
    }
    if text.chars().nth(MAX_TEXT_CHARS).is_some() {
        return Err(TranscodeError::Field {
            field: name.to_string(),
            reason: format!("at most {MAX_TEXT_CHARS} characters"),
        });
    }
    Ok(())
}

fn parse_json(desc: MessageDescriptor, body: &[u8]) -> Result<DynamicMessage, TranscodeError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let message =
        DynamicMessage::deserialize_with_options(desc, &mut de, &DeserializeOptions::new())
            .and_then(|m| de.end().map(|()| m))
            .map_err(|e| TranscodeError::Json {
                line: e.line(),
                column: e.column(),
                message: strip_position(&e.to_string()),
            })?;
    Ok(message)
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Sets a (possibly nested, possibly repeated) field from its string form.
fn set_path(message: &mut DynamicMessage, path: &str, raw: &str) -> Result<(), TranscodeError> {
    let fail = |reason: String| TranscodeError::Field {
        field: path.to_string(),
        reason,
    };
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let desc = message.descriptor();
    let field = desc
        .get_field_by_name(head)
        .or_else(|| desc.get_field_by_json_name(head))
        .ok_or_else(|| fail(format!("no field `{head}` in {}", desc.full_name())))?;
    match rest {
        Some(rest) => {
            let Kind::Message(_) = field.kind() else {
                return Err(fail(format!("`{head}` is not a message")));
            };
            if field.is_list() || field.is_map() {
                return Err(fail(format!("`{head}` is repeated")));
            }
            let Value::Message(child) = message.get_field_mut(&field) else {
                unreachable!("a message field holds a message")
            };
            set_path(child, rest, raw).map_err(|e| match e {
                TranscodeError::Field { reason, .. } => fail(reason),
                other => other,
            })
        }
        None => {
            let value = scalar(&field, raw).map_err(fail)?;
            if field.is_list() {
                match message.get_field_mut(&field) {
                    Value::List(items) => items.push(value),
                    _ => unreachable!("a repeated field holds a list"),
                }
            } else if field.is_map() {
                return Err(fail("maps cannot be set from a path or query".into()));
            } else {
                message.set_field(&field, value);
            }
            Ok(())
        }
    }
}

fn scalar(field: &FieldDescriptor, raw: &str) -> Result<Value, String> {
    let bad = |what: &str| format!("`{raw}` is not {what}");
    Ok(match field.kind() {
        Kind::String => Value::String(raw.to_string()),
        Kind::Bool => Value::Bool(raw.parse().map_err(|_| bad("true or false"))?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(raw.parse().map_err(|_| bad("a 32-bit integer"))?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(raw.parse().map_err(|_| bad("a 64-bit integer"))?)
        }
        Kind::Uint32 | Kind::Fixed32 => {
            Value::U32(raw.parse().map_err(|_| bad("an unsigned 32-bit integer"))?)
        }
        Kind::Uint64 | Kind::Fixed64 => {
            Value::U64(raw.parse().map_err(|_| bad("an unsigned 64-bit integer"))?)
        }
        Kind::Float => Value::F32(raw.parse().map_err(|_| bad("a number"))?),
        Kind::Double => Value::F64(raw.parse().map_err(|_| bad("a number"))?),
        Kind::Bytes => Value::Bytes(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(raw.trim_end_matches('='))
                .or_else(|_| base64::engine::general_purpose::STANDARD.decode(raw))
                .map_err(|_| bad("base64"))?
                .into(),
        ),
        Kind::Enum(e) => {
            let value = e
                .get_value_by_name(raw)
                .or_else(|| raw.parse().ok().and_then(|n| e.get_value(n)))
                .ok_or_else(|| {
                    let names: Vec<_> = e.values().map(|v| v.name().to_string()).collect();
                    format!("`{raw}` is not one of {}", names.join(", "))
                })?;
            Value::EnumNumber(value.number())
        }
        // Well-known types (Timestamp, Duration, wrappers) have a JSON string form.
        Kind::Message(m) => {
            let json = serde_json::Value::String(raw.to_string());
            Value::Message(
                DynamicMessage::deserialize(m, json).map_err(|e| format!("`{raw}`: {e}"))?,
            )
        }
    })
}

/// Query strings encode spaces as `+` and everything else as `%XX`.
fn form_decode(s: &str) -> String {
    let replaced = s.replace('+', " ");
    let bytes = replaced.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The response message as proto3 JSON, every field present so front ends see the whole shape.
pub fn response_json(message: &DynamicMessage) -> Vec<u8> {
    let mut out = serde_json::Serializer::new(Vec::new());
    message
        .serialize_with_options(
            &mut out,
            &SerializeOptions::new().skip_default_fields(false),
        )
        .expect("a dynamic message serializes to JSON");
    out.into_inner()
}
