//! An accepted message's text → the part of it worth keeping: its envelope (`type`, `userId`,
//! `timestamp`, `event`, `messageId`) and the properties or traits that some program's schema
//! declares, down to nested records; whatever no program reads (an SDK's `context`,
//! `integrations`, undeclared fields) is dropped. Decoding the kept text gives every program
//! exactly what decoding the whole message gives it.
//!
//! Works on borrowed raw JSON: nothing of a kept value is parsed further than the schema
//! reaches into it, and a message with nothing to drop is kept as it came.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::bytecode::{Program, TypeDesc};

/// The top-level keys kept.
const ENVELOPE: [&str; 5] = ["type", "userId", "timestamp", "event", "messageId"];

/// A JSON object's members, borrowed (a repeated key keeps its last value, as serde_json's
/// parser and so the decoder have it).
type Members<'a> = BTreeMap<&'a str, &'a RawValue>;

/// The text of `message` with what none of `programs` reads left out: `None` when nothing is
/// (the message is kept as it came), or when it is not a JSON object.
pub fn kept_text(programs: &[&Program], message: &str) -> Option<String> {
    let members: Members = serde_json::from_str(message).ok()?;
    let event = members
        .get("event")
        .and_then(|raw| serde_json::from_str::<&str>(raw.get()).ok());
    let mut out: Vec<(&str, String)> = Vec::new();
    let mut dropped = false;
    for (key, raw) in &members {
        let kept = match *key {
            k if ENVELOPE.contains(&k) => Some(raw.get().to_string()),
            "properties" => {
                let types: Vec<(&Program, u32)> = programs
                    .iter()
                    .filter_map(|p| {
                        let event = event?;
                        let desc = p.events.iter().find(|e| p.string(e.wire_name) == event)?;
                        Some((*p, desc.record))
                    })
                    .collect();
                Some(prune(raw, &types, &mut dropped))
            }
            "traits" => {
                let types: Vec<(&Program, u32)> =
                    programs.iter().map(|p| (*p, p.profile)).collect();
                Some(prune(raw, &types, &mut dropped))
            }
            _ => None,
        };
        match kept {
            Some(text) => out.push((key, text)),
            None => dropped = true,
        }
    }
    dropped.then(|| {
        let mut text = String::from("{");
        for (n, (key, value)) in out.iter().enumerate() {
            if n > 0 {
                text.push(',');
            }
            // (A key that needs escaping is written as serde_json writes it.)
            text.push_str(&serde_json::to_string(key).unwrap_or_default());
            text.push(':');
            text.push_str(value);
        }
        text.push('}');
        text
    })
}

/// `raw` with the members of records none of `types` declares left out: kept whole unless
/// every type says it is a record (or a list of them), so a value some program reads in
/// another shape — or one the decoder will refuse — is never changed.
fn prune(raw: &RawValue, types: &[(&Program, u32)], dropped: &mut bool) -> String {
    let whole = || raw.get().to_string();
    if types.is_empty() {
        // No program declares the event: the message is ignored, not kept.
        return whole();
    }
    let resolved: Option<Vec<(&Program, &TypeDesc)>> = types
        .iter()
        .map(|(p, ty)| Some((*p, strip_optional(p, *ty)?)))
        .collect();
    let Some(resolved) = resolved else {
        return whole();
    };
    if resolved
        .iter()
        .all(|(_, t)| matches!(t, TypeDesc::Record(_)))
    {
        let Ok(members) = serde_json::from_str::<Members>(raw.get()) else {
            return whole();
        };
        let mut text = String::from("{");
        let mut first = true;
        for (key, value) in &members {
            let declared: Vec<(&Program, u32)> = resolved
                .iter()
                .filter_map(|(p, t)| match t {
                    TypeDesc::Record(fields) => fields
                        .iter()
                        .find(|f| p.string(f.name) == *key)
                        .map(|f| (*p, f.ty)),
                    _ => None,
                })
                .collect();
            if declared.is_empty() {
                *dropped = true;
                continue;
            }
            if !first {
                text.push(',');
            }
            first = false;
            text.push_str(&serde_json::to_string(key).unwrap_or_default());
            text.push(':');
            text.push_str(&prune(value, &declared, dropped));
        }
        text.push('}');
        return text;
    }
    if resolved.iter().all(|(_, t)| matches!(t, TypeDesc::List(_))) {
        let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
            return whole();
        };
        let element: Vec<(&Program, u32)> = resolved
            .iter()
            .filter_map(|(p, t)| match t {
                TypeDesc::List(element) => Some((*p, *element)),
                _ => None,
            })
            .collect();
        let parts: Vec<String> = items
            .iter()
            .map(|item| prune(item, &element, dropped))
            .collect();
        return format!("[{}]", parts.join(","));
    }
    whole()
}

/// The type `ty` stands for once optional wrappers are taken off: `None` for a built-in type
/// (a scalar, kept whole).
fn strip_optional(program: &Program, mut ty: u32) -> Option<&TypeDesc> {
    loop {
        match program.type_desc(ty)? {
            TypeDesc::Optional(inner) => ty = *inner,
            other => return Some(other),
        }
    }
}
