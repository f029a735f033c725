//! Timeline records → JSON objects with the normative keys of LANGUAGE.md §9 (`journeyc
//! simulate --format jsonl` prints them; the service's outbox stores its sends in this form).

use serde_json::{json, Map, Value as Json};

use super::{Engine, Record, RecordKind};
use crate::bytecode::{disasm, Program, TypeDesc};
use crate::value::Value;

/// Milliseconds since the epoch as RFC 3339 UTC, to the second.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || format!("{ms}ms"),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// A value as JSON. `ty` is its type id when known: records then print as objects with their
/// field names (the VM's records are positional); without it, as arrays of their fields.
pub fn value_json(program: &Program, value: &Value, ty: Option<u32>) -> Json {
    let ty = ty.map(|t| match program.type_desc(t) {
        Some(TypeDesc::Optional(inner)) => *inner,
        _ => t,
    });
    match value {
        Value::Absent | Value::Missing => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(n) => json!(n),
        Value::Float(n) => json!(n),
        Value::Short { .. } | Value::Long(_) => json!(value.as_str()),
        Value::Timestamp(ms) => json!(rfc3339(*ms)),
        Value::Duration(ms) => json!(disasm::duration(*ms)),
        Value::List(items) => {
            let item = ty.and_then(|t| match program.type_desc(t) {
                Some(TypeDesc::List(item)) => Some(*item),
                _ => None,
            });
            Json::Array(items.iter().map(|v| value_json(program, v, item)).collect())
        }
        Value::Record(values) => match ty.and_then(|t| program.record_fields(t)) {
            Some(fields) if fields.len() == values.len() => Json::Object(
                fields
                    .iter()
                    .zip(values.iter())
                    .map(|(f, v)| {
                        let name = program.string(f.name).to_string();
                        (name, value_json(program, v, Some(f.ty)))
                    })
                    .collect(),
            ),
            _ => Json::Array(
                values
                    .iter()
                    .map(|v| value_json(program, v, None))
                    .collect(),
            ),
        },
    }
}

fn step_name(program: &Program, record: &Record, step: u32) -> String {
    program
        .journeys
        .get(record.journey as usize)
        .and_then(|j| j.steps.get(step as usize))
        .map_or_else(String::new, |s| program.string(s.name).to_string())
}

/// One record of `engine`'s timeline as a JSON object with the normative keys.
pub fn record_json(engine: &Engine, record: &Record) -> Json {
    let program = engine.program();
    let mut object = Map::new();
    object.insert("at".into(), json!(rfc3339(record.at)));
    object.insert("user".into(), json!(engine.user_name(record.user)));
    let journey = program
        .journeys
        .get(record.journey as usize)
        .map_or("", |j| program.string(j.name));
    object.insert("journey".into(), json!(journey));
    if let Some(key) = &record.key {
        object.insert("key".into(), json!(&**key));
    }
    match &record.kind {
        RecordKind::Entered => {
            object.insert("kind".into(), json!("entered"));
        }
        RecordKind::Send {
            channel,
            template,
            id,
            step,
            send,
            args,
        } => {
            object.insert("kind".into(), json!("send"));
            object.insert("channel".into(), json!(channel.name()));
            let name = match (template, id) {
                (Some(t), _) => program
                    .templates
                    .get(*t as usize)
                    .map_or("", |t| program.string(t.name)),
                (None, Some(id)) => program.string(*id),
                (None, None) => "",
            };
            object.insert("template".into(), json!(name));
            object.insert("step".into(), json!(step_name(program, record, *step)));
            // The arguments' types, so that records print with their field names: the send's
            // own (format 1.1), else its template's parameters (a file of format 1.0).
            let types = program
                .journeys
                .get(record.journey as usize)
                .and_then(|j| j.sends.get(usize::from(*send)))
                .map_or(&[][..], |s| s.arg_types.as_slice());
            let params = template
                .and_then(|t| program.templates.get(t as usize))
                .and_then(|t| program.record_fields(t.params))
                .unwrap_or_default();
            let args: Map<String, Json> = args
                .iter()
                .enumerate()
                .map(|(i, (k, v))| {
                    let ty = types
                        .get(i)
                        .copied()
                        .or_else(|| params.iter().find(|p| p.name == *k).map(|p| p.ty));
                    (program.string(*k).to_string(), value_json(program, v, ty))
                })
                .collect();
            object.insert("args".into(), Json::Object(args));
        }
        RecordKind::Skipped { step, reason } => {
            object.insert("kind".into(), json!("skipped"));
            object.insert("step".into(), json!(step_name(program, record, *step)));
            object.insert("reason".into(), json!(reason));
        }
        RecordKind::Exited { outcome, name } => {
            object.insert("kind".into(), json!("exited"));
            object.insert("outcome".into(), json!(outcome.name()));
            if let Some(name) = name {
                object.insert("name".into(), json!(program.string(*name)));
            }
        }
    }
    Json::Object(object)
}
