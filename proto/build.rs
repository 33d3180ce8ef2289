//! Compiles every `.proto` under this crate with protox (pure Rust, no system `protoc`), generates
//! the prost/tonic code, and writes the descriptor set that the gateway transcodes from.
//!
//! From the messages marked with the `pdp.events.v1.event_type` option it also generates, per
//! package, the constants that tie each event type to its message (`PLAN_APPROVED`), and the
//! AsyncAPI document: `asyncapi/template.yaml` with each type's message and JSON Schema added. The
//! committed `asyncapi/pdp.yaml` must equal it (a test says so; `make asyncapi` rewrites it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost_reflect::{
    DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, Value,
};
use serde_json::{Map, Value as Json, json};

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let mut files = Vec::new();
    collect_protos(&root.join("pdp"), &mut files)?;
    // The HTTP rule types are generated too: the gateway reads them from method options.
    files.push(root.join("google/api/annotations.proto"));
    files.sort();

    let mut compiler = protox::Compiler::new([&root])?;
    compiler
        .include_imports(true)
        .include_source_info(true)
        .open_files(&files)?;
    // Encoded by protox itself, so method and message options keep their extensions (prost_types
    // would drop them as unknown fields).
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let encoded = compiler.encode_file_descriptor_set();
    std::fs::write(out.join("pdp_descriptor.bin"), &encoded)?;
    let fds = compiler.file_descriptor_set();

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;

    let pool = DescriptorPool::decode(encoded.as_slice())?;
    let payloads = event_payloads(&pool)?;
    write_event_types(&out, &pool, &payloads)?;
    let template = std::fs::read_to_string(root.join("asyncapi/template.yaml"))?;
    std::fs::write(out.join("asyncapi.yaml"), asyncapi(&template, &payloads)?)?;

    println!("cargo:rerun-if-changed=pdp");
    println!("cargo:rerun-if-changed=google");
    println!("cargo:rerun-if-changed=asyncapi/template.yaml");
    Ok(())
}

fn collect_protos(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            files.push(path);
        }
    }
    Ok(())
}

/// A message that is the data of event types.
struct Payload {
    message: MessageDescriptor,
    types: Vec<String>,
    /// The `pdp.events.v1.topic` option: where its events go when not on the service's topic.
    topic: Option<String>,
}

fn event_payloads(pool: &DescriptorPool) -> Result<Vec<Payload>, Error> {
    let option = pool
        .get_extension_by_name("pdp.events.v1.event_type")
        .ok_or("pdp/events/v1/events.proto defines no event_type option")?;
    let mut payloads = Vec::new();
    for message in pool.all_messages() {
        let options = message.options();
        if !options.has_extension(&option) {
            continue;
        }
        let Value::List(values) = options.get_extension(&option).into_owned() else {
            return Err(format!("{}: event_type is not a list", message.full_name()).into());
        };
        let types: Vec<String> = values
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let package = message.package_name();
        for ty in &types {
            let service = package
                .strip_prefix("pdp.")
                .and_then(|p| p.split('.').next())
                .unwrap_or_default();
            let parts: Vec<&str> = ty.split('.').collect();
            if parts.len() != 4 || parts[0] != "pdp" || parts[1] != service {
                return Err(format!(
                    "{}: event type `{ty}` is not pdp.{service}.<aggregate>.<verb>",
                    message.full_name()
                )
                .into());
            }
        }
        let topic = pool
            .get_extension_by_name("pdp.events.v1.topic")
            .filter(|t| options.has_extension(t))
            .and_then(|t| options.get_extension(&t).as_str().map(str::to_string));
        payloads.push(Payload {
            message,
            types,
            topic,
        });
    }
    let mut seen = BTreeMap::new();
    for p in &payloads {
        for ty in &p.types {
            if let Some(other) = seen.insert(ty.clone(), p.message.full_name().to_string()) {
                return Err(format!(
                    "event type `{ty}` is the data of {other} and of {}",
                    p.message.full_name()
                )
                .into());
            }
        }
    }
    Ok(payloads)
}

/// `pdp.planning.plan.became_effective` → `PLAN_BECAME_EFFECTIVE`.
fn constant_name(ty: &str) -> String {
    ty.splitn(3, '.')
        .nth(2)
        .unwrap_or(ty)
        .replace('.', "_")
        .to_uppercase()
}

/// `pdp.planning.plan.became_effective` → `planBecameEffective`.
fn message_key(ty: &str) -> String {
    let rest = ty.splitn(3, '.').nth(2).unwrap_or(ty);
    let mut key = String::new();
    let mut upper = false;
    for c in rest.chars() {
        if c == '.' || c == '_' {
            upper = true;
        } else if upper {
            key.extend(c.to_uppercase());
            upper = false;
        } else {
            key.push(c);
        }
    }
    key
}

/// One `<package>.events.rs` per pdp package: each payload's `EventPayload` impl and a constant
/// per type.
fn write_event_types(out: &Path, pool: &DescriptorPool, payloads: &[Payload]) -> Result<(), Error> {
    let packages: std::collections::BTreeSet<String> = pool
        .files()
        .map(|f| f.package_name().to_string())
        .filter(|p| p.starts_with("pdp."))
        .collect();
    for package in &packages {
        let mut code = String::from(
            "// Generated by pdp-proto's build from the `pdp.events.v1.event_type` options.\n",
        );
        for p in payloads
            .iter()
            .filter(|p| p.message.package_name() == package)
        {
            let name = p.message.name();
            let types: Vec<String> = p.types.iter().map(|t| format!("{t:?}")).collect();
            let full_name = p.message.full_name();
            let types = types.join(", ");
            code.push_str(&format!("impl crate::EventPayload for {name} {{\n"));
            code.push_str(&format!(
                "    const FULL_NAME: &'static str = {full_name:?};\n"
            ));
            code.push_str(&format!(
                "    const TYPES: &'static [&'static str] = &[{types}];\n}}\n"
            ));
            for ty in &p.types {
                let constant = constant_name(ty);
                code.push_str(&format!("/// `{ty}`, whose data is [`{name}`].\n"));
                code.push_str(&format!(
                    "pub const {constant}: crate::EventType<{name}> =\n"
                ));
                code.push_str(&format!("    crate::EventType::new({ty:?});\n"));
            }
        }
        std::fs::write(out.join(format!("{package}.events.rs")), code)?;
    }
    Ok(())
}

/// The comment in front of the element at `path` of its file, folded onto one line.
fn comment(file: &prost_reflect::FileDescriptor, path: &[i32]) -> Option<String> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info.location.iter().find(|l| l.path == path)?;
    let text = location.leading_comments.as_deref()?;
    let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!folded.is_empty()).then_some(folded)
}

fn enum_names(e: &EnumDescriptor) -> Vec<Json> {
    e.values()
        .map(|v| Json::String(v.name().to_string()))
        .collect()
}

/// The JSON Schema of a field's value in proto3 JSON, as pdp writes it (proto field names, every
/// field present, enums by name, 64-bit integers as strings).
fn field_schema(field: &FieldDescriptor) -> Json {
    let one = match field.kind() {
        Kind::String => json!({"type": "string"}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Kind::Uint32 | Kind::Fixed32 => {
            json!({"type": "integer", "minimum": 0, "format": "uint32"})
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
            json!({"type": "string", "pattern": "^-?[0-9]+$", "description": "a 64-bit integer"})
        }
        Kind::Double | Kind::Float => json!({"type": "number"}),
        Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Kind::Enum(e) => json!({"type": "string", "enum": enum_names(&e)}),
        Kind::Message(m) if m.full_name() == "google.protobuf.Timestamp" => {
            json!({"type": "string", "format": "date-time"})
        }
        Kind::Message(m) => json!({"$ref": format!("#/components/schemas/{}", m.name())}),
    };
    let mut schema = if field.is_list() {
        json!({"type": "array", "items": one})
    } else {
        one
    };
    if let Some(text) = comment(&field.parent_file(), field.path()) {
        schema["description"] = Json::String(text);
    }
    schema
}

fn message_schema(message: &MessageDescriptor) -> Json {
    let mut properties = Map::new();
    for field in message.fields() {
        properties.insert(field.name().to_string(), field_schema(&field));
    }
    let required: Vec<Json> = message
        .fields()
        .map(|f| Json::String(f.name().to_string()))
        .collect();
    let mut schema = json!({
        "type": "object",
        "required": required,
        "properties": properties,
    });
    if let Some(text) = comment(&message.parent_file(), message.path()) {
        schema["description"] = Json::String(text);
    }
    schema
}

const GENERATED: &str = "\
# Generated from proto/asyncapi/template.yaml and the event messages of proto/ (the
# `pdp.events.v1.event_type` option) by pdp-proto's build: edit those, then `make asyncapi`.
";

/// The template with every event type's message and its payload's schema added, and each type
/// listed in the channel of its service's topic.
fn asyncapi(template: &str, payloads: &[Payload]) -> Result<String, Error> {
    let mut doc: Json = serde_yaml::from_str(template)?;
    for p in payloads {
        let name = p.message.name().to_string();
        doc["components"]["schemas"][&name] = message_schema(&p.message);
        for ty in &p.types {
            let key = message_key(ty);
            let topic = p
                .topic
                .clone()
                .unwrap_or_else(|| ty.rsplitn(3, '.').nth(2).unwrap_or_default().to_string());
            let mut message = json!({
                "name": ty,
                "payload": {"$ref": format!("#/components/schemas/{name}")},
            });
            if let Some(text) = comment(&p.message.parent_file(), p.message.path()) {
                message["summary"] = Json::String(text);
            }
            doc["components"]["messages"][&key] = message;
            let channels = doc["channels"]
                .as_object_mut()
                .ok_or("asyncapi/template.yaml has no channels")?;
            let channel = channels
                .values_mut()
                .find(|c| c["address"] == Json::String(topic.clone()))
                .ok_or_else(|| {
                    format!("asyncapi/template.yaml has no channel for `{topic}` ({ty})")
                })?;
            channel["messages"][&key] = json!({"$ref": format!("#/components/messages/{key}")});
        }
    }
    let body = serde_yaml::to_string(&doc)?;
    Ok(format!("{GENERATED}{body}"))
}
