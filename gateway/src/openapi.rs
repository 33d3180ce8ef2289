//! The OpenAPI 3.1 document of the REST API, generated from the same descriptors and HTTP rules
//! the gateway routes by, so the document cannot drift from what the gateway serves.

use std::collections::{BTreeMap, BTreeSet};

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Value, json};

use crate::transcode::routes::{BodyBinding, Route, RouteTable, field_at};

const WELL_KNOWN: &str = "google.protobuf.";

/// The document for `routes`.
pub fn document(routes: &RouteTable, version: &str) -> Value {
    let mut paths: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    let mut messages: BTreeSet<String> = BTreeSet::new();
    let mut pending: Vec<MessageDescriptor> = Vec::new();
    for route in routes.routes() {
        let (operation, used) = operation(route);
        pending.extend(used);
        paths
            .entry(route.template.openapi_path())
            .or_default()
            .insert(route.method.as_str().to_lowercase(), operation);
    }
    paths.entry("/api/v1/tenants".into()).or_default().insert(
        "get".into(),
        json!({
            "operationId": "Gateway_ListTenants",
            "tags": ["gateway"],
            "summary": "The province and its cities, by GB/T 2260 code",
            "security": [],
            "responses": {"200": {
                "description": "OK",
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {"tenants": {"type": "array", "items": {
                        "type": "object",
                        "properties": {
                            "code": {"type": "string", "pattern": "^[0-9]{6}$"},
                            "name_zh": {"type": "string"},
                            "name_en": {"type": "string"},
                            "parent": {"type": "string"},
                        },
                    }}},
                }}},
            }},
        }),
    );
    let mut schemas = serde_json::Map::new();
    while let Some(message) = pending.pop() {
        if !messages.insert(message.full_name().to_string()) {
            continue;
        }
        let (schema, used) = message_schema(&message);
        schemas.insert(message.full_name().to_string(), schema);
        pending.extend(used);
    }
    schemas.insert("google.rpc.Status".into(), status_schema());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "pdp — Heilongjiang public data authorized-operation platform",
            "version": version,
            "description": "Every route is transcoded to a gRPC method. Errors are google.rpc.Status \
                            bodies; validation failures list every field in a BadRequest detail.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
        "security": [{"bearerAuth": []}],
    })
}

fn reference(message: &MessageDescriptor) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", message.full_name()) })
}

fn operation(route: &Route) -> (Value, Vec<MessageDescriptor>) {
    let input = route.rpc.input();
    let output = route.rpc.output();
    let mut used = vec![output.clone()];
    let bound: BTreeSet<String> = route.template.fields().map(str::to_string).collect();
    let mut parameters = Vec::new();
    for field_path in route.template.fields() {
        let schema = field_at(&input, field_path)
            .ok()
            .map(|f| scalar_schema(&f))
            .unwrap_or_else(|| json!({"type": "string"}));
        parameters.push(json!({
            "name": field_path,
            "in": "path",
            "required": true,
            "schema": schema,
        }));
    }
    let mut body = None;
    let mut streamed = false;
    match &route.body {
        BodyBinding::Whole => {
            used.push(input.clone());
            body = Some(reference(&input));
        }
        BodyBinding::Field(name) => {
            if let Some(field) = input.get_field_by_name(name)
                && let Kind::Message(m) = field.kind()
            {
                used.push(m.clone());
                body = Some(reference(&m));
            }
            parameters.extend(query_parameters(&input, &bound, Some(name)));
        }
        BodyBinding::None => parameters.extend(query_parameters(&input, &bound, None)),
        BodyBinding::Stream(name) => {
            streamed = true;
            parameters.extend(query_parameters(&input, &bound, Some(name)));
        }
    }
    // A `google.api.HttpBody` answer is its own content (a printable page), not JSON.
    let answer = if output.full_name() == crate::transcode::routes::HTTP_BODY {
        used.clear();
        json!({"text/html": {"schema": {"type": "string"}}})
    } else {
        json!({"application/json": {"schema": reference(&output)}})
    };
    let mut op = json!({
        "operationId": format!("{}_{}", route.rpc.parent_service().name(), route.rpc.name()),
        "tags": [route.rpc.parent_service().full_name()],
        "summary": route.operation(),
        "parameters": parameters,
        "responses": {
            "200": {
                "description": "OK",
                "content": answer,
            },
            "default": {
                "description": "An error: google.rpc.Status",
                "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/google.rpc.Status"}
                }},
            },
        },
    });
    if let Some(schema) = body {
        op["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": schema}},
        });
    }
    if streamed {
        op["requestBody"] = json!({
            "required": true,
            "description": "The raw body, streamed to the service as it arrives; the \
                            operation's description says which content types it takes.",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        });
    }
    if route.is_public() {
        op["security"] = json!([]);
    }
    (op, used)
}

/// Query parameters: the top-level scalar and repeated-scalar fields not bound elsewhere.
fn query_parameters(
    input: &MessageDescriptor,
    bound: &BTreeSet<String>,
    body_field: Option<&str>,
) -> Vec<Value> {
    input
        .fields()
        .filter(|f| !bound.contains(f.name()) && Some(f.name()) != body_field)
        .filter(|f| !f.is_map())
        .filter(|f| match f.kind() {
            Kind::Message(m) => m.full_name().starts_with(WELL_KNOWN),
            _ => true,
        })
        .map(|f| {
            json!({
                "name": f.name(),
                "in": "query",
                "required": false,
                "schema": field_schema(&f).0,
            })
        })
        .collect()
}

fn message_schema(message: &MessageDescriptor) -> (Value, Vec<MessageDescriptor>) {
    let mut properties = serde_json::Map::new();
    let mut used = Vec::new();
    for field in message.fields() {
        let (schema, nested) = field_schema(&field);
        used.extend(nested);
        properties.insert(field.json_name().to_string(), schema);
    }
    (json!({ "type": "object", "properties": properties }), used)
}

/// The proto3 JSON mapping of a field as a JSON Schema.
fn field_schema(field: &FieldDescriptor) -> (Value, Vec<MessageDescriptor>) {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            unreachable!("a map field is a message of entries")
        };
        let value = entry.map_entry_value_field();
        let (schema, used) = kind_schema(&value);
        return (
            json!({"type": "object", "additionalProperties": schema}),
            used,
        );
    }
    let (schema, used) = kind_schema(field);
    if field.is_list() {
        let max = crate::transcode::message::MAX_LIST_ITEMS;
        (
            json!({"type": "array", "items": schema, "maxItems": max}),
            used,
        )
    } else {
        (schema, used)
    }
}

fn scalar_schema(field: &FieldDescriptor) -> Value {
    kind_schema(field).0
}

fn kind_schema(field: &FieldDescriptor) -> (Value, Vec<MessageDescriptor>) {
    let schema = match field.kind() {
        Kind::Double | Kind::Float => json!({"type": "number"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Kind::Uint32 | Kind::Fixed32 => json!({"type": "integer", "format": "int32", "minimum": 0}),
        // 64-bit integers are strings in proto3 JSON, so no precision is lost in JavaScript.
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => json!({"type": "string", "format": "int64"}),
        Kind::Uint64 | Kind::Fixed64 => json!({"type": "string", "format": "uint64"}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::String => {
            json!({"type": "string", "maxLength": crate::transcode::message::MAX_TEXT_CHARS})
        }
        Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Kind::Enum(e) => {
            let names: Vec<String> = e.values().map(|v| v.name().to_string()).collect();
            json!({"type": "string", "enum": names})
        }
        Kind::Message(m) => {
            return match well_known(&m) {
                Some(schema) => (schema, Vec::new()),
                None => (reference(&m), vec![m]),
            };
        }
    };
    (schema, Vec::new())
}

fn well_known(message: &MessageDescriptor) -> Option<Value> {
    let name = message.full_name().strip_prefix(WELL_KNOWN)?;
    Some(match name {
        "Timestamp" => json!({"type": "string", "format": "date-time"}),
        "Duration" => json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$"}),
        "FieldMask" => json!({"type": "string"}),
        "Empty" => json!({"type": "object"}),
        "Struct" => json!({"type": "object"}),
        "Value" => json!({}),
        "ListValue" => json!({"type": "array"}),
        "StringValue" | "BytesValue" => json!({"type": ["string", "null"]}),
        "BoolValue" => json!({"type": ["boolean", "null"]}),
        "Int32Value" | "UInt32Value" => json!({"type": ["integer", "null"]}),
        "Int64Value" | "UInt64Value" => json!({"type": ["string", "null"]}),
        "FloatValue" | "DoubleValue" => json!({"type": ["number", "null"]}),
        _ => json!({"type": "object"}),
    })
}

/// The error body every failure carries (see kit's `status_to_http`).
fn status_schema() -> Value {
    json!({
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "integer", "description": "google.rpc.Code"},
            "status": {"type": "string", "description": "the code's name"},
            "message": {"type": "string"},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"@type": {"type": "string"}},
                    "additionalProperties": true,
                },
                "description": "google.rpc.ErrorInfo, BadRequest (fieldViolations), PreconditionFailure (violations)",
            },
        },
    })
}
