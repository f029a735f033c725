//! A JSON-Schema tracking plan (draft-07 or 2020-12) → events and a profile (LANGUAGE.md §3.2).
//!
//! Entries under `events`, and `$defs`/`definitions` entries marked `"x-journey": "event"`,
//! become events; an entry named `profile` (or marked `"x-journey": "profile"`) becomes the
//! profile. Whatever cannot be mapped is a diagnostic at its line and column in the JSON file.

use std::sync::Arc;

use super::json::{self, Json, Value};
use super::types::{Field, RecordType, Type};
use super::EventInfo;
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::source::{FileId, SourceFile, Span};

/// What a tracking plan declares.
#[derive(Debug, Default)]
pub struct Plan {
    pub events: Vec<EventInfo>,
    pub profile: Option<RecordType>,
    pub diagnostics: Vec<Diagnostic>,
}

/// `$ref` chains longer than this are taken to be cycles.
const MAX_REF_HOPS: usize = 32;
/// Nested objects and arrays deeper than this are refused.
const MAX_SCHEMA_DEPTH: usize = 32;

pub fn import(source: &SourceFile, file: FileId) -> Plan {
    let mut plan = Plan::default();
    let root = match json::parse(&source.text) {
        Ok(root) => root,
        Err(error) => {
            plan.diagnostics.push(
                Diagnostic::new(
                    Code::InvalidJson,
                    format!("the tracking plan is not valid JSON: {}", error.message),
                )
                .primary(file, Span::at(error.offset), "here"),
            );
            return plan;
        }
    };
    let mut importer = Importer {
        root: &root,
        file,
        diagnostics: Vec::new(),
    };
    let mut entries: Vec<(&str, Span, &Json, Kind)> = Vec::new();
    if let Some(events) = root.get("events") {
        match &events.value {
            Value::Object(members) => {
                entries.extend(
                    members
                        .iter()
                        .map(|(name, span, schema)| (name.as_str(), *span, schema, Kind::Event)),
                );
            }
            _ => importer.unmappable(
                events.span,
                "`events` must be an object of event name → schema",
            ),
        }
    }
    for definitions in ["$defs", "definitions"] {
        if let Some(Json {
            value: Value::Object(members),
            ..
        }) = root.get(definitions)
        {
            for (name, span, schema) in members {
                let marker = schema.get("x-journey").and_then(Json::as_str);
                let kind = match (marker, name.as_str()) {
                    (Some("event"), _) => Kind::Event,
                    (Some("profile"), _) | (None, "profile") => Kind::Profile,
                    _ => continue,
                };
                entries.push((name.as_str(), *span, schema, kind));
            }
        }
    }
    if let Some(profile) = root.get("profile") {
        entries.push(("profile", profile.span, profile, Kind::Profile));
    }
    let mut names: Vec<(String, Span)> = Vec::new();
    for (name, span, schema, kind) in entries {
        let Some(fields) = importer.record(schema, 0) else {
            continue;
        };
        match kind {
            Kind::Profile => {
                if plan.profile.is_some() {
                    importer.unmappable(span, "the plan declares the profile twice");
                }
                plan.profile = Some(fields);
            }
            Kind::Event => {
                let identifier = event_identifier(name);
                if let Some((_, first)) = names.iter().find(|(n, _)| *n == identifier) {
                    let first = *first;
                    importer.diagnostics.push(
                        Diagnostic::new(
                            Code::DuplicateName,
                            format!("two events of the plan map to the name `{identifier}`"),
                        )
                        .primary(file, span, format!("\"{name}\" becomes `{identifier}`"))
                        .secondary(file, first, "so does this one")
                        .help("rename one of them in the tracking plan"),
                    );
                    continue;
                }
                names.push((identifier.clone(), span));
                plan.events.push(EventInfo {
                    name: identifier,
                    wire_name: name.to_string(),
                    fields: Arc::new(fields),
                    doc: schema
                        .get("description")
                        .and_then(Json::as_str)
                        .map(String::from),
                    file,
                    span,
                });
            }
        }
    }
    plan.diagnostics.extend(importer.diagnostics);
    plan
}

#[derive(Clone, Copy)]
enum Kind {
    Event,
    Profile,
}

struct Importer<'a> {
    root: &'a Json,
    file: FileId,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Importer<'a> {
    fn unmappable(&mut self, span: Span, message: &str) {
        self.diagnostics.push(
            Diagnostic::new(Code::UnmappableSchema, format!("cannot import this schema: {message}"))
                .primary(self.file, span, "here")
                .note("the language maps string, integer, number, boolean, enums of strings, arrays, objects, `format: date-time`, nullable types and `$ref` within the file"),
        );
    }

    /// Follows `$ref`s within the document.
    fn resolve(&mut self, mut schema: &'a Json) -> Option<&'a Json> {
        for _ in 0..MAX_REF_HOPS {
            let Some(reference) = schema.get("$ref") else {
                return Some(schema);
            };
            let Some(pointer) = reference.as_str() else {
                self.unmappable(reference.span, "`$ref` must be a string");
                return None;
            };
            let Some(path) = pointer.strip_prefix('#') else {
                self.unmappable(reference.span, &format!("`$ref` \"{pointer}\" points outside this file; only references within the file (\"#/...\") are followed"));
                return None;
            };
            let mut target = self.root;
            for part in path.split('/').filter(|p| !p.is_empty()) {
                let part = part.replace("~1", "/").replace("~0", "~");
                let next = match &target.value {
                    Value::Object(_) => target.get(&part),
                    Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
                    _ => None,
                };
                match next {
                    Some(next) => target = next,
                    None => {
                        self.unmappable(
                            reference.span,
                            &format!("`$ref` \"{pointer}\" points at nothing"),
                        );
                        return None;
                    }
                }
            }
            schema = target;
        }
        self.unmappable(schema.span, "`$ref`s form a cycle");
        None
    }

    /// An object schema → its fields.
    fn record(&mut self, schema: &'a Json, depth: usize) -> Option<RecordType> {
        let schema = self.resolve(schema)?;
        if depth > MAX_SCHEMA_DEPTH {
            self.unmappable(schema.span, "objects nest too deeply");
            return None;
        }
        let required: Vec<&str> = match schema.get("required").map(|r| &r.value) {
            Some(Value::Array(items)) => items.iter().filter_map(Json::as_str).collect(),
            _ => Vec::new(),
        };
        let mut record = RecordType::default();
        let Some(properties) = schema.get("properties") else {
            return Some(record);
        };
        let Value::Object(members) = &properties.value else {
            self.unmappable(properties.span, "`properties` must be an object");
            return None;
        };
        for (name, span, property) in members {
            let Some(ty) = self.type_of(property, depth + 1) else {
                continue;
            };
            let identifier = field_identifier(name);
            if let Some(first) = record.field(&identifier) {
                let first = first.span;
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::DuplicateName,
                        format!("two properties map to the field name `{identifier}`"),
                    )
                    .primary(
                        self.file,
                        *span,
                        format!("\"{name}\" becomes `{identifier}`"),
                    )
                    .secondary(self.file, first, "so does this one"),
                );
                continue;
            }
            let ty = if required.contains(&name.as_str()) {
                ty
            } else {
                ty.optional()
            };
            record.fields.push(Field {
                name: identifier,
                ty,
                has_default: false,
                doc: property
                    .get("description")
                    .and_then(Json::as_str)
                    .map(String::from),
                file: self.file,
                span: *span,
            });
        }
        Some(record)
    }

    fn type_of(&mut self, schema: &'a Json, depth: usize) -> Option<Type> {
        let schema = self.resolve(schema)?;
        for combinator in ["anyOf", "oneOf"] {
            if let Some(Json {
                value: Value::Array(options),
                span,
            }) = schema.get(combinator)
            {
                // `anyOf: [X, {"type": "null"}]` is a nullable X; anything else has no mapping.
                let (nulls, others): (Vec<&Json>, Vec<&Json>) = options
                    .iter()
                    .partition(|o| o.get("type").and_then(Json::as_str) == Some("null"));
                if others.len() == 1 {
                    let ty = self.type_of(others[0], depth)?;
                    return Some(if nulls.is_empty() { ty } else { ty.optional() });
                }
                self.unmappable(
                    *span,
                    &format!(
                        "`{combinator}` with several alternatives has no type in the language"
                    ),
                );
                return None;
            }
        }
        if let Some(all_of) = schema.get("allOf") {
            self.unmappable(all_of.span, "`allOf` has no type in the language");
            return None;
        }
        let (types, nullable): (Vec<&str>, bool) = match schema.get("type").map(|t| &t.value) {
            Some(Value::String(t)) => (vec![t.as_str()], false),
            Some(Value::Array(items)) => {
                let names: Vec<&str> = items.iter().filter_map(Json::as_str).collect();
                let nullable = names.contains(&"null");
                (
                    names.into_iter().filter(|t| *t != "null").collect(),
                    nullable,
                )
            }
            Some(_) => {
                self.unmappable(
                    schema.span,
                    "`type` must be a string or an array of strings",
                );
                return None;
            }
            None => (Vec::new(), false),
        };
        let base = if let Some(Json {
            value: Value::Array(values),
            span,
        }) = schema.get("enum")
        {
            let mut strings = Vec::new();
            let mut has_null = false;
            for value in values {
                match &value.value {
                    Value::String(s) => strings.push(s.clone()),
                    Value::Null => has_null = true,
                    _ => {
                        self.unmappable(*span, "only enums of strings map to the language");
                        return None;
                    }
                }
            }
            let ty = Type::Enum(strings.into());
            return Some(if nullable || has_null {
                ty.optional()
            } else {
                ty
            });
        } else {
            match types.as_slice() {
                ["string"] => match schema.get("format").and_then(Json::as_str) {
                    Some("date-time") => Type::Timestamp,
                    _ => Type::String,
                },
                ["integer"] => Type::Int,
                ["number"] => Type::Float,
                ["boolean"] => Type::Bool,
                ["array"] => {
                    let Some(items) = schema.get("items") else {
                        self.unmappable(schema.span, "an array needs `items` to say what it holds");
                        return None;
                    };
                    Type::List(Box::new(self.type_of(items, depth + 1)?.required().clone()))
                }
                ["object"] => Type::Record(Arc::new(self.record(schema, depth)?)),
                [] => {
                    self.unmappable(schema.span, "a property needs a `type` (or an `enum`)");
                    return None;
                }
                [one] => {
                    self.unmappable(schema.span, &format!("the type \"{one}\" has no mapping"));
                    return None;
                }
                _ => {
                    self.unmappable(schema.span, "a property may have one type (plus \"null\")");
                    return None;
                }
            }
        };
        Some(if nullable { base.optional() } else { base })
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// "Order Completed" and "order.completed" → `OrderCompleted`; identifiers are kept.
pub fn event_identifier(name: &str) -> String {
    if is_identifier(name) {
        return name.to_string();
    }
    let mut out = String::new();
    for word in name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert(0, 'E');
    }
    out
}

/// Every character that cannot be in an identifier becomes `_`.
pub fn field_identifier(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_identifiers() {
        assert_eq!(event_identifier("Order Completed"), "OrderCompleted");
        assert_eq!(event_identifier("order.completed"), "OrderCompleted");
        assert_eq!(event_identifier("OrderCompleted"), "OrderCompleted");
        assert_eq!(event_identifier("2fa enabled"), "E2faEnabled");
        assert_eq!(field_identifier("utm-source"), "utm_source");
        assert_eq!(field_identifier("1st"), "_1st");
    }
}
