//! Events (JSONL) through the VM → the timeline, for people or as JSONL (LANGUAGE.md §9).
//!
//! The library part: decoding the input lines, running the engine, formatting records. Reading
//! files and printing stay in `main.rs`.

use journey_runtime::bytecode::{disasm, Program, TypeDesc};
use journey_runtime::value::Value;
use journey_runtime::vm::input::{self, Decoded, Input};
use journey_runtime::vm::{Engine, Record, RecordKind};
use serde_json::{json, Map, Value as Json};

/// A line of input that was refused: its 1-based number and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Decodes JSONL messages; refused lines are reported and change nothing.
pub fn decode_lines(
    program: &Program,
    file: &str,
    text: &str,
    rejected: &mut Vec<Rejected>,
) -> Vec<Input> {
    let mut inputs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let refuse = |message: String| Rejected {
            file: file.to_string(),
            line: i + 1,
            message,
        };
        let message: Json = match serde_json::from_str(line) {
            Ok(message) => message,
            Err(error) => {
                rejected.push(refuse(format!("not JSON: {error}")));
                continue;
            }
        };
        match input::decode(program, &message) {
            Ok(Decoded::Input(input)) => inputs.push(input),
            Ok(Decoded::UnknownEvent(_)) => {}
            Err(message) => rejected.push(refuse(message)),
        }
    }
    inputs
}

/// Runs inputs (stably ordered by time) through a fresh engine.
pub fn run(program: &Program, mut inputs: Vec<Input>, until: Option<i64>) -> Engine<'_> {
    inputs.sort_by_key(Input::time);
    if let Some(until) = until {
        inputs.truncate(inputs.partition_point(|i| i.time() <= until));
    }
    let mut engine = Engine::new(program);
    engine.push_batch(inputs);
    engine.finish(until);
    engine
}

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || format!("{ms}ms"),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// A value as JSON. `ty` is its type id when known: records then print as objects with their
/// field names (the VM's records are positional); without it, as arrays of their fields.
fn value_json(program: &Program, value: &Value, ty: Option<u32>) -> Json {
    let ty = ty.map(|t| match program.type_desc(t) {
        Some(TypeDesc::Optional(inner)) => *inner,
        _ => t,
    });
    match value {
        Value::Absent | Value::Missing => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(n) => json!(n),
        Value::Float(n) => json!(n),
        Value::Str(s) => json!(&**s),
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
            // A template's parameters give the arguments' types (untemplated sends have none).
            let params = template
                .and_then(|t| program.templates.get(t as usize))
                .and_then(|t| program.record_fields(t.params))
                .unwrap_or_default();
            let args: Map<String, Json> = args
                .iter()
                .map(|(k, v)| {
                    let ty = params.iter().find(|p| p.name == *k).map(|p| p.ty);
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

/// One record of `engine`'s timeline for people: `time  user  journey  what`.
pub fn record_text(engine: &Engine, record: &Record) -> String {
    let object = record_json(engine, record);
    let get = |key: &str| {
        object
            .get(key)
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string()
    };
    let what = match &record.kind {
        RecordKind::Entered => "entered".to_string(),
        RecordKind::Send { .. } => {
            let args = object.get("args").map_or(String::new(), |a| {
                if a.as_object().is_some_and(|o| o.is_empty()) {
                    String::new()
                } else {
                    format!(" {a}")
                }
            });
            format!(
                "send {} {} (step {}){args}",
                get("channel"),
                get("template"),
                get("step")
            )
        }
        RecordKind::Skipped { .. } => format!("skipped step {}: {}", get("step"), get("reason")),
        RecordKind::Exited { .. } => {
            let name = get("name");
            if name.is_empty() {
                format!("exited: {}", get("outcome"))
            } else {
                format!("exited: {} {name}", get("outcome"))
            }
        }
    };
    let key = record
        .key
        .as_ref()
        .map_or(String::new(), |k| format!(" [{k}]"));
    format!(
        "{}  {}  {}{key}  {what}",
        get("at"),
        engine.user_name(record.user),
        get("journey")
    )
}

/// The engine's counts for people: per journey its entries, outcomes and conversion (goals /
/// entered), each step's reach and each split's arms.
pub fn stats_text(program: &Program, engine: &Engine) -> String {
    let mut out = String::new();
    for (j, stats) in engine.stats.iter().enumerate() {
        let Some(journey) = program.journeys.get(j) else {
            continue;
        };
        if stats.entered == 0 {
            continue;
        }
        let outcomes: Vec<String> = stats
            .outcomes
            .iter()
            .map(|(o, n)| format!("{} {n}", o.name()))
            .collect();
        let goals = stats
            .outcomes
            .get(&journey_runtime::vm::Outcome::Goal)
            .copied()
            .unwrap_or(0);
        out.push_str(&format!(
            "journey {}: entered {}, {}; conversion {:.1}%\n",
            program.string(journey.name),
            stats.entered,
            if outcomes.is_empty() {
                "none ended".to_string()
            } else {
                outcomes.join(", ")
            },
            goals as f64 * 100.0 / stats.entered as f64
        ));
        for (step, reached) in journey.steps.iter().zip(&stats.reached) {
            out.push_str(&format!(
                "  {:<24} reached {reached}\n",
                program.string(step.name)
            ));
        }
        for (arms, counts) in journey.splits.iter().zip(&stats.split_arms) {
            let arms: Vec<String> = arms
                .iter()
                .zip(counts)
                .map(|(a, n)| format!("{} {n}", program.string(a.name)))
                .collect();
            out.push_str(&format!("  split: {}\n", arms.join(", ")));
        }
    }
    out
}
