//! Input messages (LANGUAGE.md §9) → typed inputs: each `track` decoded once against its event's
//! schema, each `identify` against the profile. A message that does not match is refused with
//! the field and the expectation; it changes nothing.

use std::sync::Arc;

use serde_json::Value as Json;

use crate::bytecode::{types, Program, TypeDesc, NONE};
use crate::value::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Track {
        user: Arc<str>,
        time: i64,
        event: u32,
        fields: Arc<[Value]>,
    },
    Identify {
        user: Arc<str>,
        time: i64,
        traits: Vec<(u32, Value)>,
    },
}

impl Input {
    pub fn time(&self) -> i64 {
        match self {
            Input::Track { time, .. } | Input::Identify { time, .. } => *time,
        }
    }

    /// The same input at `time` (the service decides when an input is processed).
    pub fn at(mut self, time: i64) -> Input {
        match &mut self {
            Input::Track { time: t, .. } | Input::Identify { time: t, .. } => *t = time,
        }
        self
    }

    pub fn user(&self) -> &Arc<str> {
        match self {
            Input::Track { user, .. } | Input::Identify { user, .. } => user,
        }
    }
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Input(Input),
    /// A `track` of an event no loaded schema declares: ignored (and counted).
    UnknownEvent(String),
}

/// Parses an RFC 3339 timestamp into milliseconds since the epoch.
pub fn parse_time(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Parses a duration in the language's syntax (`"1h30m"`) into milliseconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut digits = String::new();
    let mut any = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            'w' => 604_800_000,
            _ => return None,
        };
        let n: i64 = digits.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        digits.clear();
        any = true;
    }
    (any && digits.is_empty()).then_some(total)
}

/// Decodes one JSON message.
pub fn decode(program: &Program, message: &Json) -> Result<Decoded, String> {
    let object = message
        .as_object()
        .ok_or("a message must be a JSON object")?;
    let kind = object
        .get("type")
        .and_then(Json::as_str)
        .ok_or("`type` must be \"track\" or \"identify\"")?;
    let user = object
        .get("userId")
        .and_then(|u| {
            u.as_str()
                .map(String::from)
                .or_else(|| u.as_i64().map(|n| n.to_string()))
        })
        .filter(|u| !u.is_empty())
        .ok_or("`userId` must be a non-empty string")?;
    let time_text = object
        .get("timestamp")
        .and_then(Json::as_str)
        .ok_or("`timestamp` must be an RFC 3339 string")?;
    let time = parse_time(time_text)
        .ok_or_else(|| format!("`timestamp` \"{time_text}\" is not an RFC 3339 time"))?;
    let user: Arc<str> = Arc::from(user.as_str());
    match kind {
        "track" => {
            let name = object
                .get("event")
                .and_then(Json::as_str)
                .ok_or("a track needs `event`, the event's name")?;
            let Some(event) = program
                .events
                .iter()
                .position(|e| program.string(e.wire_name) == name)
            else {
                return Ok(Decoded::UnknownEvent(name.to_string()));
            };
            let empty = serde_json::Map::new();
            let properties = match object.get("properties") {
                None | Some(Json::Null) => &empty,
                Some(Json::Object(map)) => map,
                Some(_) => return Err("`properties` must be an object".into()),
            };
            let record = program.events[event].record;
            let fields = record_value(program, record, properties, &Place::Root("properties"))?;
            Ok(Decoded::Input(Input::Track {
                user,
                time,
                event: event as u32,
                fields,
            }))
        }
        "identify" => {
            let empty = serde_json::Map::new();
            let traits = match object.get("traits") {
                None | Some(Json::Null) => &empty,
                Some(Json::Object(map)) => map,
                Some(_) => return Err("`traits` must be an object".into()),
            };
            let fields = program.record_fields(program.profile).unwrap_or(&[]);
            let mut decoded = Vec::new();
            let mut keys: Vec<&String> = traits.keys().collect();
            keys.sort();
            for key in keys {
                // Traits the program never reads are accepted and not kept.
                let Some(index) = fields.iter().position(|f| program.string(f.name) == key) else {
                    continue;
                };
                let value = value(
                    program,
                    fields[index].ty,
                    &traits[key],
                    &Place::Field(&Place::Root("traits"), key),
                )?;
                decoded.push((index as u32, value));
            }
            Ok(Decoded::Input(Input::Identify {
                user,
                time,
                traits: decoded,
            }))
        }
        other => Err(format!(
            "`type` must be \"track\" or \"identify\", not \"{other}\""
        )),
    }
}

/// Where a value sits in a message (`properties.item.sku`, `traits.tags[2]`), put into words
/// only when an error names it.
#[derive(Clone, Copy)]
enum Place<'a> {
    Root(&'a str),
    Field(&'a Place<'a>, &'a str),
    Item(&'a Place<'a>, usize),
}

impl std::fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Root(name) => f.write_str(name),
            Place::Field(outer, name) => write!(f, "{outer}.{name}"),
            Place::Item(outer, i) => write!(f, "{outer}[{i}]"),
        }
    }
}

fn record_value(
    program: &Program,
    record: u32,
    object: &serde_json::Map<String, Json>,
    place: &Place,
) -> Result<Arc<[Value]>, String> {
    let fields = program.record_fields(record).unwrap_or(&[]);
    let mut values = Vec::with_capacity(fields.len());
    for field in fields {
        let name = program.string(field.name);
        let here = Place::Field(place, name);
        values.push(match object.get(name) {
            None | Some(Json::Null) => {
                if matches!(program.type_desc(field.ty), Some(TypeDesc::Optional(_))) {
                    Value::Absent
                } else {
                    return Err(format!("`{here}` is required"));
                }
            }
            Some(json) => value(program, field.ty, json, &here)?,
        });
    }
    Ok(values.into())
}

fn value(program: &Program, ty: u32, json: &Json, place: &Place) -> Result<Value, String> {
    let wrong = |what: &str| Err(format!("`{place}` must be {what}, found {json}"));
    Ok(match ty {
        types::BOOL => match json.as_bool() {
            Some(b) => Value::Bool(b),
            None => return wrong("true or false"),
        },
        types::INT => match json.as_i64() {
            Some(n) => Value::Int(n),
            None => return wrong("a whole number"),
        },
        types::FLOAT => match json.as_f64() {
            Some(n) => Value::Float(n),
            None => return wrong("a number"),
        },
        types::STRING => match json.as_str() {
            Some(s) => Value::str(s),
            None => return wrong("a string"),
        },
        types::TIMESTAMP => match json.as_str().and_then(parse_time) {
            Some(ms) => Value::Timestamp(ms),
            None => return wrong("an RFC 3339 time"),
        },
        types::DURATION => match json.as_str().and_then(parse_duration) {
            Some(ms) => Value::Duration(ms),
            None => return wrong("a duration such as \"15m\""),
        },
        NONE => return wrong("nothing"),
        _ => match program.type_desc(ty) {
            Some(TypeDesc::Optional(inner)) => {
                if json.is_null() {
                    Value::Absent
                } else {
                    value(program, *inner, json, place)?
                }
            }
            Some(TypeDesc::Enum(values)) => match json.as_str() {
                Some(s) if values.iter().any(|v| program.string(*v) == s) => Value::str(s),
                _ => {
                    let allowed: Vec<String> = values
                        .iter()
                        .map(|v| format!("\"{}\"", program.string(*v)))
                        .collect();
                    return wrong(&format!("one of {}", allowed.join(", ")));
                }
            },
            Some(TypeDesc::List(item)) => match json.as_array() {
                Some(items) => {
                    let mut out = Vec::with_capacity(items.len());
                    for (i, item_json) in items.iter().enumerate() {
                        out.push(value(program, *item, item_json, &Place::Item(place, i))?);
                    }
                    Value::List(out.into())
                }
                None => return wrong("a list"),
            },
            Some(TypeDesc::Record(_)) => match json.as_object() {
                Some(object) => Value::Record(record_value(program, ty, object, place)?),
                None => return wrong("an object"),
            },
            None => return wrong("a known type"),
        },
    })
}
