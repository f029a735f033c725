//! The text before the cursor + the last checked program → completions.
//!
//! The context is read from the text itself, not the tree: while someone types, the file seldom
//! parses. Names come from the last analysis in which every file parsed, else (a file was broken
//! from the start) from the items that parse.

use journey_compiler::check::{Program, RecordType, Type};
use tower_lsp_server::ls_types::{CompletionItem, CompletionItemKind};

/// Keywords that start a top-level item.
const ITEMS: [&str; 8] = [
    "import", "event", "profile", "template", "segment", "cap", "journey", "test",
];
/// Keywords that start a journey setting.
pub const SETTINGS: [&str; 11] = [
    "title",
    "description",
    "entry",
    "audience",
    "reentry",
    "correlate",
    "goal",
    "exit",
    "timeout",
    "timezone",
    "quiet hours",
];
/// Keywords that start a step.
pub const STEPS: [&str; 11] = [
    "wait", "send", "set", "add", "remove", "if", "branch", "split", "start", "exit", "else",
];
const CHANNELS: [&str; 6] = ["email", "sms", "push", "in_app", "webhook", "destination"];

/// What to offer at byte `offset` of `text`.
pub fn complete(text: &str, offset: usize, program: Option<&Program>) -> Vec<CompletionItem> {
    let offset = floor_boundary(text, offset);
    let before = &text[..offset];
    // The word being typed, and what comes before it.
    let word_start = word_start(before);
    let head = &before[..word_start];
    let trimmed = head.trim_end();
    let Some(program) = program else {
        return keywords(before, word_start);
    };
    let item = |label: &str, kind, detail: Option<String>| CompletionItem {
        label: label.to_string(),
        kind: Some(kind),
        detail,
        ..CompletionItem::default()
    };
    let events = || {
        program
            .events
            .values()
            .map(|e| item(&e.name, CompletionItemKind::EVENT, e.doc.clone()))
            .collect::<Vec<_>>()
    };
    let fields = |record: &RecordType| {
        record
            .fields
            .iter()
            .map(|f| item(&f.name, CompletionItemKind::FIELD, Some(f.ty.to_string())))
            .collect::<Vec<_>>()
    };

    // `profile.` and `binding.`: fields.
    if let Some(base) = head.strip_suffix('.') {
        let base_word = last_word(base);
        if base_word == "profile" {
            return fields(&program.profile);
        }
        if let Some(event) = binding_event(before, base_word) {
            return program
                .events
                .get(&event)
                .map_or(Vec::new(), |e| fields(&e.fields));
        }
        // `last(E).` and `sum(E.`: the event's fields.
        let event = base
            .strip_suffix(')')
            .and_then(|inner| inner.rsplit('(').next())
            .map(|inner| last_word(inner.split_whitespace().next().unwrap_or("")))
            .unwrap_or(base_word);
        return program
            .events
            .get(event)
            .map_or(Vec::new(), |e| fields(&e.fields));
    }
    // Event names: after `on`, `for`, `unless`, and inside `count(` `did(` `last(` `sum(`.
    let previous = last_word(trimmed);
    if matches!(previous, "on" | "for" | "unless")
        || ["count(", "did(", "last(", "sum("]
            .iter()
            .any(|f| trimmed.ends_with(f))
    {
        // `test "…" for` names a journey.
        if previous == "for" && line_of(head).trim_start().starts_with("test ") {
            return journeys(program, false);
        }
        return events();
    }
    if previous == "start" {
        return journeys(program, true);
    }
    if previous == "send" {
        let mut items: Vec<CompletionItem> = program
            .templates
            .values()
            .map(|t| {
                let detail = format!("template: {}", t.channel.as_str());
                item(&t.name, CompletionItemKind::STRUCT, Some(detail))
            })
            .collect();
        items.extend(
            CHANNELS
                .iter()
                .map(|c| item(c, CompletionItemKind::KEYWORD, None)),
        );
        return items;
    }
    // Enum values after `==` / `!=`: the type of what is compared.
    if trimmed.ends_with("==") || trimmed.ends_with("!=") || trimmed.ends_with("\"") {
        let lhs = trimmed
            .trim_end_matches('"')
            .trim_end()
            .trim_end_matches("==")
            .trim_end_matches("!=")
            .trim_end();
        if let Some(Type::Enum(values)) =
            operand_type(before, lhs, program).map(|t| t.required().clone())
        {
            return values
                .iter()
                .map(|v| item(&format!("\"{v}\""), CompletionItemKind::ENUM_MEMBER, None))
                .collect();
        }
    }
    // Inside `send template { … }`: the template's parameters.
    if let Some(template) = open_send_arguments(before) {
        if let Some(t) = program.templates.get(&template) {
            return fields(&t.params);
        }
    }
    // Inside `where` of an event: its fields, then segments and bindings as anywhere.
    let mut items = Vec::new();
    if let Some(event) = where_event(line_of(head)) {
        if let Some(e) = program.events.get(&event) {
            items.extend(fields(&e.fields));
        }
    }
    if items.is_empty() && !at_line_start(head) {
        items.extend(
            program
                .segments
                .keys()
                .map(|s| item(s, CompletionItemKind::VARIABLE, Some("segment".into()))),
        );
        items.extend(
            [
                "profile", "now", "journey", "count", "did", "last", "sum", "hour", "weekday",
                "date",
            ]
            .iter()
            .map(|k| item(k, CompletionItemKind::KEYWORD, None)),
        );
        return items;
    }
    if items.is_empty() {
        return keywords(before, word_start);
    }
    items
}

fn floor_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Where the identifier that `text` ends with starts (`text.len()` when it ends otherwise).
fn word_start(text: &str) -> usize {
    text.char_indices()
        .rev()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map_or(0, |(i, c)| i + c.len_utf8())
}

/// The last identifier of `text` (empty when it ends otherwise).
fn last_word(text: &str) -> &str {
    &text[word_start(text)..]
}

/// The line `head` ends on.
fn line_of(head: &str) -> &str {
    head.rsplit('\n').next().unwrap_or(head)
}

fn at_line_start(head: &str) -> bool {
    line_of(head).trim().is_empty()
}

/// Keywords by position: items at the top level, settings and steps inside a journey.
fn keywords(before: &str, word_start: usize) -> Vec<CompletionItem> {
    let depth = before[..word_start].chars().fold(0i32, |d, c| match c {
        '{' => d + 1,
        '}' => d - 1,
        _ => d,
    });
    let words: Vec<&str> = match depth {
        0 => ITEMS.to_vec(),
        1 if in_journey(before) => SETTINGS.iter().chain(STEPS.iter()).copied().collect(),
        _ => STEPS.to_vec(),
    };
    words
        .into_iter()
        .map(|w| CompletionItem {
            label: w.to_string(),
            kind: Some(CompletionItemKind::KEYWORD),
            ..CompletionItem::default()
        })
        .collect()
}

/// Whether the innermost top-level item around the end of `before` is a journey.
fn in_journey(before: &str) -> bool {
    before
        .lines()
        .rev()
        .find(|l| !l.starts_with([' ', '\t']) && !l.trim().is_empty())
        .is_some_and(|l| l.starts_with("journey "))
}

fn journeys(program: &Program, manual_only: bool) -> Vec<CompletionItem> {
    program
        .journeys
        .iter()
        .filter(|j| !manual_only || j.manual)
        .map(|j| CompletionItem {
            label: j.name.clone(),
            kind: Some(CompletionItemKind::MODULE),
            ..CompletionItem::default()
        })
        .collect()
}

/// The event bound by `as name` in the text before the cursor (the nearest such binding).
fn binding_event(before: &str, name: &str) -> Option<String> {
    let words: Vec<&str> = before
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    words.windows(4).rev().find_map(|w| {
        (matches!(w[0], "on" | "for") && w[2] == "as" && w[3] == name).then(|| w[1].to_string())
    })
}

/// The event a `where` on this line matches: `on E … where`, `for E … where`, `E where`.
fn where_event(line: &str) -> Option<String> {
    let at = line.rfind(" where ")?;
    let words: Vec<&str> = line[..at]
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    // `on E as b where`: skip the binding.
    let mut rest = words.as_slice();
    if rest.len() >= 2 && rest[rest.len() - 2] == "as" {
        rest = &rest[..rest.len() - 2];
    }
    rest.last().map(|e| e.to_string())
}

/// The type of a simple operand: `profile.f`, `b.f` (a binding), or a bare field in `where`.
fn operand_type(before: &str, operand: &str, program: &Program) -> Option<Type> {
    let path = operand
        .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .next()?;
    let field_of = |record: &RecordType, name: &str| {
        record
            .fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.ty.clone())
    };
    match path.split_once('.') {
        Some(("profile", field)) => field_of(&program.profile, field),
        Some((binding, field)) => {
            let event = binding_event(before, binding)?;
            field_of(&program.events.get(&event)?.fields, field)
        }
        None => {
            let event = where_event(line_of(before))?;
            field_of(&program.events.get(&event)?.fields, path)
        }
    }
}

/// The template whose `send name {` arguments the cursor is inside.
fn open_send_arguments(before: &str) -> Option<String> {
    let open = before.rfind('{')?;
    if before[open..].contains('}') {
        return None;
    }
    let words: Vec<&str> = before[..open].split_whitespace().collect();
    match words.as_slice() {
        [.., "send", name] => Some(name.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use journey_compiler::workspace::MemoryFiles;

    const SCHEMA: &str = r#"
event Seen { page: string, kind: "a" | "b" }
profile { plan: "free" | "pro" = "free", visits: int = 0 }
template note: email { text: string, n: int }
segment busy = profile.visits > 3
journey other { entry manual send email "x" }
journey main { entry on Seen as s send email "y" }
"#;

    fn program() -> Program {
        let mut files = MemoryFiles::new();
        files.insert("s.journey", SCHEMA);
        let analysis = journey_compiler::analyse(&files, &["s.journey".into()]);
        analysis.program.expect("checks")
    }

    /// The labels offered where the cursor (`|`) is.
    fn labels(text_with_cursor: &str) -> Vec<String> {
        let offset = text_with_cursor.find('|').expect("a cursor");
        let text = text_with_cursor.replace('|', "");
        let program = program();
        complete(&text, offset, Some(&program))
            .into_iter()
            .map(|i| i.label)
            .collect()
    }

    #[test]
    fn each_context_offers_its_names() {
        assert_eq!(labels("journey j {\n  entry on |"), ["Seen"]);
        assert_eq!(labels("journey j {\n  wait for S|"), ["Seen"]);
        assert_eq!(labels("segment x = count(|"), ["Seen"]);
        assert_eq!(
            labels("journey j {\n  audience profile.|"),
            ["plan", "visits"]
        );
        assert_eq!(
            labels("journey j {\n  entry on Seen as s where s.|"),
            ["page", "kind"]
        );
        assert_eq!(
            labels("journey j {\n  entry on Seen where p|"),
            ["page", "kind"]
        );
        assert_eq!(
            labels("journey j {\n  audience profile.plan == |"),
            ["\"free\"", "\"pro\""]
        );
        assert_eq!(
            labels("journey j {\n  entry on Seen as s where s.kind != |"),
            ["\"a\"", "\"b\""]
        );
        assert_eq!(labels("journey j {\n  start |"), ["other"]);
        assert_eq!(labels("test \"t\" for |"), ["other", "main"]);
        assert_eq!(labels("journey j {\n  send note { t|"), ["text", "n"]);
        let send = labels("journey j {\n  send |");
        assert!(send.contains(&"note".to_string()) && send.contains(&"email".to_string()));
        let top = labels("ev|");
        assert!(top.contains(&"event".to_string()) && !top.contains(&"wait".to_string()));
        let inside = labels("journey j {\n  entry manual\n  w|");
        assert!(inside.contains(&"wait".to_string()) && inside.contains(&"timeout".to_string()));
        let expression = labels("journey j {\n  audience b|");
        assert!(expression.contains(&"busy".to_string()));
        // Text outside ASCII before the cursor.
        assert_eq!(
            labels("journey j {\n  entry on Seen where \"é😀\" == \"x\" and p|"),
            ["page", "kind"]
        );
        assert!(!labels("// é\njourney j {\n  entry on Sé|").is_empty());
    }
}
