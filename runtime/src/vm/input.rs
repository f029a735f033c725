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

/// The longest user id, in bytes (UTF-8): a user's name is kept with its state for as long as
/// it has any, so its size is bounded like every other input's.
pub const MAX_USER_ID_BYTES: usize = 256;

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
    decode_with(program, message, None)
}

/// Decodes one JSON message; `default_time` is its time when it has no `timestamp` (the
/// service's wall clock), else a timestamp is required.
pub fn decode_with(
    program: &Program,
    message: &Json,
    default_time: Option<i64>,
) -> Result<Decoded, String> {
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
    if user.len() > MAX_USER_ID_BYTES {
        return Err(format!(
            "`userId` is {} bytes long: a user id is at most {MAX_USER_ID_BYTES} bytes",
            user.len()
        ));
    }
    let time = match (object.get("timestamp"), default_time) {
        (None, Some(time)) => time,
        (given, _) => {
            let time_text = given
                .and_then(Json::as_str)
                .ok_or("`timestamp` must be an RFC 3339 string")?;
            parse_time(time_text)
                .ok_or_else(|| format!("`timestamp` \"{time_text}\" is not an RFC 3339 time"))?
        }
    };
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

/// Decodes one message from its JSON text: what `decode_with` gives for the parsed text, but
/// straight from the text into typed values (no JSON tree built and dropped). A message the
/// direct way cannot take — any error, or a shape it does not expect — goes the parsed way,
/// which words the error.
pub fn decode_text(
    program: &Program,
    text: &str,
    default_time: Option<i64>,
) -> Result<Decoded, String> {
    decode_text_whole(program, text, default_time).map(|(decoded, _)| decoded)
}

/// `decode_text`, and whether the program read every member of the message: `true` only when
/// the direct way met nothing it skipped (no member outside the envelope and the schema, at
/// any depth), so that `kept::kept_text` would keep the message as it came.
pub fn decode_text_whole(
    program: &Program,
    text: &str,
    default_time: Option<i64>,
) -> Result<(Decoded, bool), String> {
    let skipped = std::cell::Cell::new(false);
    if let Some(decoded) = direct::decode(program, text, default_time, &skipped) {
        return Ok((decoded, !skipped.get()));
    }
    let message: Json =
        serde_json::from_str(text).map_err(|e| format!("the message is not JSON: {e}"))?;
    decode_with(program, &message, default_time).map(|decoded| (decoded, false))
}

/// The direct way of `decode_text` alone: `None` where it hands over to the parsed way (tests
/// check that whatever it decodes, the parsed way decodes the same).
pub fn decode_direct(program: &Program, text: &str, default_time: Option<i64>) -> Option<Decoded> {
    direct::decode(program, text, default_time, &std::cell::Cell::new(false))
}

/// The direct way of `decode_text`: serde visitors driven by the schema. `None` whenever
/// anything is not as a valid message has it.
mod direct {
    use std::borrow::Cow;
    use std::cell::Cell;
    use std::collections::BTreeMap;
    use std::fmt;
    use std::sync::Arc;

    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::value::RawValue;

    use super::{parse_duration, parse_time, Decoded, Input};
    use crate::bytecode::{types, Program, TypeDesc, NONE};
    use crate::value::Value;

    /// The top-level members a message is read by; `others` tells whether it had any other
    /// than these and `messageId`. A repeated member refuses it (the parsed way takes the last).
    #[derive(Default)]
    struct Envelope<'a> {
        kind: Option<Cow<'a, str>>,
        user: Option<&'a RawValue>,
        timestamp: Option<Cow<'a, str>>,
        event: Option<Cow<'a, str>>,
        properties: Option<&'a RawValue>,
        traits: Option<&'a RawValue>,
        others: bool,
    }

    impl<'de: 'a, 'a> serde::Deserialize<'de> for Envelope<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(EnvelopeVisitor(std::marker::PhantomData))
        }
    }

    struct EnvelopeVisitor<'a>(std::marker::PhantomData<&'a ()>);

    /// Sets a member read once; a second time is an error.
    fn once<T, E: serde::de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
        match slot.replace(value) {
            None => Ok(()),
            Some(_) => Err(no()),
        }
    }

    impl<'de: 'a, 'a> Visitor<'de> for EnvelopeVisitor<'a> {
        type Value = Envelope<'a>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a message")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'a>, A::Error> {
            let mut e = Envelope::default();
            let mut message_id = None;
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                match key.as_ref() {
                    "type" => once(&mut e.kind, map.next_value::<Cow<'de, str>>()?)?,
                    "userId" => once(&mut e.user, map.next_value::<&'de RawValue>()?)?,
                    "timestamp" => once(&mut e.timestamp, map.next_value::<Cow<'de, str>>()?)?,
                    "event" => once(&mut e.event, map.next_value::<Cow<'de, str>>()?)?,
                    "properties" => once(&mut e.properties, map.next_value::<&'de RawValue>()?)?,
                    "traits" => once(&mut e.traits, map.next_value::<&'de RawValue>()?)?,
                    "messageId" => once(&mut message_id, map.next_value::<IgnoredAny>()?)?,
                    _ => {
                        e.others = true;
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(e)
        }
    }

    /// Decodes `text`, setting `skipped` when a member was read by nothing.
    pub(super) fn decode(
        program: &Program,
        text: &str,
        default_time: Option<i64>,
        skipped: &Cell<bool>,
    ) -> Option<Decoded> {
        let envelope: Envelope = serde_json::from_str(text).ok()?;
        if envelope.others {
            skipped.set(true);
        }
        let user: Arc<str> = match envelope.user?.get() {
            quoted if quoted.starts_with('"') => {
                let name: Cow<str> = serde_json::from_str(quoted).ok()?;
                Arc::from(name.as_ref())
            }
            number => Arc::from(number.parse::<i64>().ok()?.to_string().as_str()),
        };
        if user.is_empty() || user.len() > super::MAX_USER_ID_BYTES {
            return None;
        }
        let time = match (&envelope.timestamp, default_time) {
            (None, Some(time)) => time,
            (given, _) => parse_time(given.as_deref()?)?,
        };
        match envelope.kind.as_deref()? {
            "track" => {
                let name = envelope.event?;
                let Some(event) = program
                    .events
                    .iter()
                    .position(|e| program.string(e.wire_name) == name)
                else {
                    return Some(Decoded::UnknownEvent(name.into_owned()));
                };
                let record = program.events[event].record;
                if envelope.traits.is_some() {
                    skipped.set(true);
                }
                let fields = match envelope.properties {
                    Some(raw) => {
                        let mut de = serde_json::Deserializer::from_str(raw.get());
                        RecordSeed {
                            program,
                            record,
                            skipped,
                        }
                        .deserialize(&mut de)
                        .ok()?
                    }
                    None => absent_record(program, record)?,
                };
                Some(Decoded::Input(Input::Track {
                    user,
                    time,
                    event: event as u32,
                    fields,
                }))
            }
            "identify" => {
                if envelope.properties.is_some() || envelope.event.is_some() {
                    skipped.set(true);
                }
                let traits = match envelope.traits {
                    Some(raw) => {
                        let mut de = serde_json::Deserializer::from_str(raw.get());
                        TraitsSeed { program, skipped }.deserialize(&mut de).ok()?
                    }
                    None => Vec::new(),
                };
                Some(Decoded::Input(Input::Identify { user, time, traits }))
            }
            _ => None,
        }
    }

    /// A record with no fields given: every field must be optional.
    fn absent_record(program: &Program, record: u32) -> Option<Arc<[Value]>> {
        let fields = program.record_fields(record).unwrap_or(&[]);
        fields
            .iter()
            .map(|f| optional(program, f.ty).then_some(Value::Absent))
            .collect()
    }

    fn optional(program: &Program, ty: u32) -> bool {
        matches!(program.type_desc(ty), Some(TypeDesc::Optional(_)))
    }

    /// Any failure: the parsed way will word it.
    fn no<E: serde::de::Error>() -> E {
        E::custom("not the direct way")
    }

    struct RecordSeed<'p> {
        program: &'p Program,
        record: u32,
        skipped: &'p Cell<bool>,
    }

    impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
        type Value = Arc<[Value]>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for RecordSeed<'_> {
        type Value = Arc<[Value]>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let program = self.program;
            let fields = program.record_fields(self.record).unwrap_or(&[]);
            let mut values: Vec<Option<Value>> = vec![None; fields.len()];
            while let Some(key) = map.next_key::<Cow<str>>()? {
                match fields.iter().position(|f| program.string(f.name) == key) {
                    Some(i) => {
                        let ty = fields[i].ty;
                        // A null field is absent when optional, refused otherwise.
                        let value = map.next_value_seed(ValueSeed {
                            program,
                            ty,
                            skipped: self.skipped,
                        })?;
                        values[i] = Some(value);
                    }
                    None => {
                        self.skipped.set(true);
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            fields
                .iter()
                .zip(values)
                .map(|(f, v)| match v {
                    Some(v) => Ok(v),
                    None if optional(program, f.ty) => Ok(Value::Absent),
                    None => Err(no()),
                })
                .collect()
        }
    }

    struct TraitsSeed<'p> {
        program: &'p Program,
        skipped: &'p Cell<bool>,
    }

    impl<'de> DeserializeSeed<'de> for TraitsSeed<'_> {
        type Value = Vec<(u32, Value)>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for TraitsSeed<'_> {
        type Value = Vec<(u32, Value)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let program = self.program;
            let fields = program.record_fields(program.profile).unwrap_or(&[]);
            // In key order, the last of a repeated key winning: as the parsed way has them.
            let mut traits: BTreeMap<String, (u32, Value)> = BTreeMap::new();
            while let Some(key) = map.next_key::<Cow<str>>()? {
                match fields.iter().position(|f| program.string(f.name) == key) {
                    Some(i) => {
                        let ty = fields[i].ty;
                        let value = map.next_value_seed(ValueSeed {
                            program,
                            ty,
                            skipped: self.skipped,
                        })?;
                        traits.insert(key.into_owned(), (i as u32, value));
                    }
                    None => {
                        self.skipped.set(true);
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(traits.into_values().collect())
        }
    }

    struct ValueSeed<'p> {
        program: &'p Program,
        ty: u32,
        skipped: &'p Cell<bool>,
    }

    impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            match self.ty {
                types::BOOL | types::INT | types::FLOAT => d.deserialize_any(self),
                types::STRING | types::TIMESTAMP | types::DURATION => d.deserialize_str(self),
                NONE => Err(no()),
                _ => match self.program.type_desc(self.ty) {
                    Some(TypeDesc::Optional(_)) => d.deserialize_option(self),
                    Some(TypeDesc::Enum(_)) => d.deserialize_str(self),
                    Some(TypeDesc::List(_)) => d.deserialize_seq(self),
                    Some(TypeDesc::Record(_)) => d.deserialize_map(self),
                    None => Err(no()),
                },
            }
        }
    }

    impl<'de> Visitor<'de> for ValueSeed<'_> {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a value of the schema's type")
        }
        fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Value, E> {
            match self.ty {
                types::BOOL => Ok(Value::Bool(b)),
                _ => Err(no()),
            }
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Value, E> {
            match self.ty {
                types::INT => Ok(Value::Int(n)),
                types::FLOAT => Ok(Value::Float(n as f64)),
                _ => Err(no()),
            }
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Value, E> {
            match self.ty {
                types::INT => i64::try_from(n).map(Value::Int).map_err(|_| no()),
                types::FLOAT => Ok(Value::Float(n as f64)),
                _ => Err(no()),
            }
        }
        fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Value, E> {
            match self.ty {
                types::FLOAT => Ok(Value::Float(n)),
                _ => Err(no()),
            }
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Value, E> {
            match self.ty {
                types::STRING => Ok(Value::str(text)),
                types::TIMESTAMP => parse_time(text).map(Value::Timestamp).ok_or_else(no),
                types::DURATION => parse_duration(text).map(Value::Duration).ok_or_else(no),
                _ => match self.program.type_desc(self.ty) {
                    Some(TypeDesc::Enum(values))
                        if values.iter().any(|v| self.program.string(*v) == text) =>
                    {
                        Ok(Value::str(text))
                    }
                    _ => Err(no()),
                },
            }
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
            self.visit_unit()
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
            match self.program.type_desc(self.ty) {
                Some(TypeDesc::Optional(_)) => Ok(Value::Absent),
                _ => Err(no()),
            }
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            match self.program.type_desc(self.ty) {
                Some(TypeDesc::Optional(inner)) => ValueSeed {
                    program: self.program,
                    ty: *inner,
                    skipped: self.skipped,
                }
                .deserialize(d),
                _ => Err(no()),
            }
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let Some(TypeDesc::List(item)) = self.program.type_desc(self.ty) else {
                return Err(no());
            };
            let mut items = Vec::new();
            while let Some(v) = seq.next_element_seed(ValueSeed {
                program: self.program,
                ty: *item,
                skipped: self.skipped,
            })? {
                items.push(v);
            }
            Ok(Value::List(items.into()))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
            match self.program.type_desc(self.ty) {
                Some(TypeDesc::Record(_)) => RecordSeed {
                    program: self.program,
                    record: self.ty,
                    skipped: self.skipped,
                }
                .visit_map(map)
                .map(Value::Record),
                _ => Err(no()),
            }
        }
    }
}
