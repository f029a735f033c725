//! A parsed file (AST + its text) → the same file in the one canonical layout (`journeyc fmt`,
//! and the language server's formatting).
//!
//! The layout: two-space indentation; items, settings and steps one per line, keeping a blank
//! line where the source had one (never two); declarations with their fields on one line when
//! that fits in 100 columns with at most four fields, else one field a line; blocks always open
//! a line; single spaces around operators and parentheses only where precedence needs them.
//! Literals are written exactly as in the source (`24h` stays `24h`). Comments stay where they
//! were: on their own line above what follows them, or after the code of their line (trailing
//! comments of neighbouring lines aligned). A construct with a comment inside it is laid out on
//! several lines so the comment keeps its place.
//!
//! **Invariant:** formatting changes only whitespace, commas, optional parentheses and the
//! default `defer` of quiet hours: the formatted text parses to the same AST (spans aside) and
//! formatting it again gives it back unchanged (a test checks both on every fixture).

use std::fmt::Write;

use crate::ast::{
    self, BinaryOp, Block, Entry, Expectation, Expr, ExprKind, FieldDecl, Item, Record, Reentry,
    SendTarget, Setting, SettingKind, Step, StepKind, TestLine, TestLineKind, TestTime,
    TriggerCondition, TypeExpr, TypeKind, UnaryOp,
};
use crate::diagnostic::Diagnostic;
use crate::parse;
use crate::source::{FileId, Span};

/// Lines longer than this are laid out on several lines where the construct allows it.
pub const WIDTH: usize = 100;

/// At most this many fields go on one line.
const ONE_LINE_FIELDS: usize = 4;

/// Separates the code of an output line from its trailing comment until they are aligned.
const TRAILING: char = '\u{1}';

/// Why a file was not formatted.
#[derive(Debug)]
pub enum FormatError {
    /// The file does not parse: these are its errors.
    Syntax(Vec<Diagnostic>),
    /// The formatted text would not parse back to the same tree (a bug of the formatter; the
    /// file is left as it is).
    Unstable,
}

/// Parses `text` and returns it in the canonical layout, checked to parse back to the same
/// tree.
pub fn format_text(file: FileId, text: &str) -> Result<String, FormatError> {
    let (module, diagnostics) = parse::parse(file, text);
    let errors: Vec<Diagnostic> = diagnostics
        .into_iter()
        .filter(Diagnostic::is_error)
        .collect();
    if !errors.is_empty() {
        return Err(FormatError::Syntax(errors));
    }
    let formatted = format(text, &module);
    let (again, diagnostics) = parse::parse(file, &formatted);
    if diagnostics.iter().any(Diagnostic::is_error) || !same_tree(&module, &again) {
        return Err(FormatError::Unstable);
    }
    Ok(formatted)
}

/// Whether two modules are the same tree, spans aside.
pub fn same_tree(a: &ast::Module, b: &ast::Module) -> bool {
    without_spans(&format!("{a:?}")) == without_spans(&format!("{b:?}"))
}

/// A tree dump with every `start..end` span taken out.
fn without_spans(dump: &str) -> String {
    let bytes = dump.as_bytes();
    let mut out = String::with_capacity(dump.len());
    let mut i = 0;
    while i < bytes.len() {
        // A span is digits, `..`, digits.
        let digits = |from: usize| {
            bytes[from..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
        };
        let first = digits(i);
        if first > 0 && (i == 0 || !bytes[i - 1].is_ascii_digit()) {
            let dots = i + first;
            if bytes.get(dots) == Some(&b'.') && bytes.get(dots + 1) == Some(&b'.') {
                let second = digits(dots + 2);
                if second > 0 {
                    i = dots + 2 + second;
                    continue;
                }
            }
            out.push_str(&dump[i..i + first]);
            i += first;
            continue;
        }
        let c = dump[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Formats a module parsed without errors from `text`.
pub fn format(text: &str, module: &ast::Module) -> String {
    let mut printer = Printer {
        text,
        comments: comments(text),
        next_comment: 0,
        lines: Vec::new(),
        indent: 0,
    };
    let mut previous_end = None;
    for item in &module.items {
        printer.leading(previous_end, item.span().start, true);
        printer.item(item);
        previous_end = Some(item.span().end);
    }
    printer.leading(previous_end, text.len() as u32, false);
    align_trailing(&printer.lines)
}

/// A `//` comment (doc comments included: they are kept as written) and where it is.
#[derive(Debug, Clone)]
struct Comment {
    start: u32,
    end: u32,
}

/// The comments of `text`, outside string literals, in order.
fn comments(text: &str) -> Vec<Comment> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                let start = i;
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                let end = text[start..i].trim_end().len() + start;
                found.push(Comment {
                    start: start as u32,
                    end: end as u32,
                });
            }
            _ => i += 1,
        }
    }
    found
}

/// Pads the code of runs of neighbouring lines with trailing comments to one column.
fn align_trailing(lines: &[String]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].contains(TRAILING) {
            out.push_str(&lines[i]);
            out.push('\n');
            i += 1;
            continue;
        }
        let run_end = (i..lines.len())
            .find(|&j| !lines[j].contains(TRAILING))
            .unwrap_or(lines.len());
        let width = lines[i..run_end]
            .iter()
            .filter_map(|l| l.split_once(TRAILING))
            .map(|(code, _)| code.chars().count())
            .max()
            .unwrap_or(0);
        for line in &lines[i..run_end] {
            if let Some((code, comment)) = line.split_once(TRAILING) {
                let pad = width - code.chars().count();
                let _ = writeln!(out, "{code}{} {comment}", " ".repeat(pad));
            }
        }
        i = run_end;
    }
    out
}

struct Printer<'t> {
    text: &'t str,
    comments: Vec<Comment>,
    next_comment: usize,
    lines: Vec<String>,
    indent: usize,
}

impl Printer<'_> {
    fn slice(&self, span: Span) -> &str {
        self.text
            .get(span.start as usize..span.end as usize)
            .unwrap_or("")
    }

    /// Whether the source between `from` and `to` holds an empty line.
    fn blank_between(&self, from: u32, to: u32) -> bool {
        let Some(between) = self.text.get(from as usize..to as usize) else {
            return false;
        };
        let mut lines = between.split('\n');
        // The first piece ends the line `from` is on, the last begins the line of `to`.
        lines.next();
        let mut middle: Vec<&str> = lines.collect();
        middle.pop();
        middle.iter().any(|l| l.trim().is_empty())
    }

    /// Whether a comment lies inside `span`.
    fn has_comment_in(&self, span: Span) -> bool {
        self.comments[self.next_comment..]
            .iter()
            .any(|c| c.start >= span.start && c.start < span.end)
    }

    fn push_line(&mut self, code: String) {
        let line = if code.is_empty() {
            String::new()
        } else {
            format!("{}{code}", "  ".repeat(self.indent))
        };
        self.lines.push(line);
    }

    fn blank_line(&mut self) {
        if self.lines.last().is_some_and(|l| !l.is_empty()) {
            self.lines.push(String::new());
        }
    }

    /// Writes a line of code that ends at source offset `end`, with the comment that follows
    /// it on the same source line, if any.
    fn line(&mut self, code: String, end: u32) {
        let trailing = self.comments.get(self.next_comment).and_then(|c| {
            let between = self.text.get(end as usize..c.start as usize)?;
            (!between.contains('\n') && between.trim().is_empty()).then(|| c.clone())
        });
        match trailing {
            Some(comment) => {
                self.next_comment += 1;
                let text = self.slice(Span {
                    start: comment.start,
                    end: comment.end,
                });
                let code = format!("{code}{TRAILING}{text}");
                self.push_line(code);
            }
            None => self.push_line(code),
        }
    }

    /// Writes the comments before `next` on lines of their own, keeping one blank line where
    /// the source had any (between `previous` and the first, between comments, and before
    /// `next` when `blank_before_next`).
    fn leading(&mut self, previous: Option<u32>, next: u32, blank_before_next: bool) {
        let mut last = previous;
        while let Some(comment) = self.comments.get(self.next_comment).cloned() {
            if comment.start >= next {
                break;
            }
            self.next_comment += 1;
            if last.is_some_and(|end| self.blank_between(end, comment.start)) {
                self.blank_line();
            }
            let text = self.slice(Span {
                start: comment.start,
                end: comment.end,
            });
            let text = text.to_string();
            self.push_line(text);
            last = Some(comment.end);
        }
        if blank_before_next && last.is_some_and(|end| self.blank_between(end, next)) {
            self.blank_line();
        }
    }

    // ------------------------------------------------------------ items

    fn item(&mut self, item: &Item) {
        match item {
            Item::Import(import) => {
                let kind = match import.kind {
                    ast::ImportKind::Journey => "",
                    ast::ImportKind::Schema => "schema ",
                };
                let code = format!("import {kind}{}", self.slice(import.path.span));
                self.line(code, import.span.end);
            }
            Item::Event(event) => {
                let wire = event
                    .wire_name
                    .as_ref()
                    .map(|w| format!("{} as ", self.slice(w.span)))
                    .unwrap_or_default();
                let head = format!("event {wire}{}", event.name.name);
                self.fields(&head, &event.fields, event.span);
            }
            Item::Profile(profile) => self.fields("profile", &profile.fields, profile.span),
            Item::Template(template) => {
                let head = format!(
                    "template {}: {}",
                    template.name.name,
                    self.slice(template.channel_span)
                );
                self.fields(&head, &template.params, template.span);
            }
            Item::Segment(segment) => {
                let code = format!(
                    "segment {} = {}",
                    segment.name.name,
                    self.expr(&segment.condition)
                );
                self.line(code, segment.span.end);
            }
            Item::Cap(cap) => {
                let scope = match cap.scope {
                    ast::CapScope::Channel(channel) => channel.as_str(),
                    ast::CapScope::All => "all",
                };
                let code = format!(
                    "cap {scope} {} per {}",
                    cap.limit,
                    self.slice(cap.window.span)
                );
                self.line(code, cap.span.end);
            }
            Item::Journey(journey) => self.journey(journey),
            Item::Test(test) => self.test(test),
        }
    }

    /// `head { a: T, b: T }` on one line when it fits, else one field a line.
    fn fields(&mut self, head: &str, fields: &[FieldDecl], span: Span) {
        if let Some(one_line) = self.fields_inline(fields, span) {
            let code = format!("{head} {one_line}");
            if self.fits(&code) {
                self.line(code, span.end);
                return;
            }
        }
        if fields.is_empty() {
            self.line(format!("{head} {{ }}"), span.end);
            return;
        }
        let open = fields.first().map_or(span.end, |f| f.span.start);
        self.line(format!("{head} {{"), open);
        self.field_lines(fields, span);
    }

    /// The fields one a line, then the closing brace of `span`.
    fn field_lines(&mut self, fields: &[FieldDecl], span: Span) {
        self.indent += 1;
        let mut previous = None;
        for field in fields {
            self.leading(previous, field.span.start, true);
            let ty = &field.ty;
            let head = format!("{}: ", field.name.name);
            let default = field
                .default
                .as_ref()
                .map(|d| format!(" = {}", self.expr(d)))
                .unwrap_or_default();
            match (&ty.kind, self.type_inline(ty)) {
                (TypeKind::Record(inner), None) => {
                    // A nested record type that cannot go on one line.
                    let open = inner.first().map_or(ty.span.end, |f| f.span.start);
                    self.line(format!("{head}{{"), open);
                    self.field_lines(inner, ty.span);
                    if let Some(last) = self.lines.last_mut() {
                        if ty.optional {
                            last.push('?');
                        }
                        last.push_str(&default);
                    }
                }
                (_, inline) => {
                    let text = inline.unwrap_or_default();
                    self.line(format!("{head}{text}{default}"), field.span.end);
                }
            }
            previous = Some(field.span.end);
        }
        let close = span.end.saturating_sub(1);
        self.leading(previous, close, false);
        self.indent -= 1;
        self.line("}".into(), span.end);
    }

    fn fits(&self, code: &str) -> bool {
        2 * self.indent + code.chars().count() <= WIDTH
    }

    /// `{ a: T, b: T }`, unless a field has a doc or comment or there are too many.
    fn fields_inline(&self, fields: &[FieldDecl], span: Span) -> Option<String> {
        if fields.len() > ONE_LINE_FIELDS
            || fields.iter().any(|f| f.doc.is_some())
            || self.has_comment_in(span)
        {
            return None;
        }
        if fields.is_empty() {
            return Some("{ }".into());
        }
        let mut parts = Vec::new();
        for field in fields {
            let ty = self.type_inline(&field.ty)?;
            let default = field
                .default
                .as_ref()
                .map(|d| format!(" = {}", self.expr(d)))
                .unwrap_or_default();
            parts.push(format!("{}: {ty}{default}", field.name.name));
        }
        Some(format!("{{ {} }}", parts.join(", ")))
    }

    /// A type on one line (`None`: a record type that needs several).
    fn type_inline(&self, ty: &TypeExpr) -> Option<String> {
        let base = match &ty.kind {
            TypeKind::Bool => "bool".to_string(),
            TypeKind::Int => "int".to_string(),
            TypeKind::Float => "float".to_string(),
            TypeKind::String => "string".to_string(),
            TypeKind::Timestamp => "timestamp".to_string(),
            TypeKind::Duration => "duration".to_string(),
            TypeKind::Enum(values) => values
                .iter()
                .map(|v| self.slice(v.span).to_string())
                .collect::<Vec<_>>()
                .join(" | "),
            TypeKind::List(item) => format!("list<{}>", self.type_inline(item)?),
            TypeKind::Record(fields) => self.fields_inline(fields, ty.span)?,
        };
        Some(if ty.optional {
            format!("{base}?")
        } else {
            base
        })
    }

    // ------------------------------------------------------------ journeys

    fn journey(&mut self, journey: &ast::Journey) {
        let open = journey
            .settings
            .first()
            .map(|s| s.span.start)
            .or_else(|| journey.steps.first().map(|s| s.span.start))
            .unwrap_or(journey.span.end);
        self.line(format!("journey {} {{", journey.name.name), open);
        self.indent += 1;
        let mut previous = None;
        for setting in &journey.settings {
            self.leading(previous, setting.span.start, previous.is_some());
            self.setting(setting);
            previous = Some(setting.span.end);
        }
        if let (Some(_), Some(first)) = (previous, journey.steps.first()) {
            // Settings, then a blank line, then the steps (and the comments above the first).
            self.blank_line();
            self.leading(None, first.span.start, true);
            self.steps_from(&journey.steps, None);
        } else {
            self.steps_from(&journey.steps, previous);
        }
        let close = journey.span.end.saturating_sub(1);
        let last = journey
            .steps
            .last()
            .map(|s| s.span.end)
            .or(journey.settings.last().map(|s| s.span.end));
        self.leading(last, close, false);
        self.indent -= 1;
        self.line("}".into(), journey.span.end);
    }

    fn setting(&mut self, setting: &Setting) {
        let code = match &setting.kind {
            SettingKind::Title(t) => format!("title {}", self.slice(t.span)),
            SettingKind::Description(d) => format!("description {}", self.slice(d.span)),
            SettingKind::Entry(entry) => format!("entry {}", self.entry(entry)),
            SettingKind::Audience(e) => format!("audience {}", self.expr(e)),
            SettingKind::Reentry(r) => match r {
                Reentry::Once => "reentry once".into(),
                Reentry::Always => "reentry always".into(),
                Reentry::After(d) => format!("reentry after {}", self.slice(d.span)),
                Reentry::MaxPer { max, per } => {
                    format!("reentry max {max} per {}", self.slice(per.span))
                }
            },
            SettingKind::Correlate(e) => format!("correlate {}", self.expr(e)),
            SettingKind::Goal(t) => format!("goal {}", self.trigger(t)),
            SettingKind::Exit(t) => format!("exit {}", self.trigger(t)),
            SettingKind::Timeout(d) => format!("timeout {}", self.slice(d.span)),
            SettingKind::Timezone(e) => format!("timezone {}", self.expr(e)),
            SettingKind::QuietHours(q) => {
                let skip = if q.mode == ast::QuietMode::Skip {
                    " skip"
                } else {
                    ""
                };
                format!(
                    "quiet hours {}..{}{skip}",
                    self.slice(q.start.span),
                    self.slice(q.end.span)
                )
            }
        };
        self.line(code, setting.span.end);
    }

    fn entry(&self, entry: &Entry) -> String {
        match entry {
            Entry::On {
                event,
                binding,
                filter,
                unless,
            } => {
                let mut out = format!("on {}", event.name);
                if let Some(b) = binding {
                    let _ = write!(out, " as {}", b.name);
                }
                if let Some(f) = filter {
                    let _ = write!(out, " where {}", self.expr(f));
                }
                if let Some(u) = unless {
                    let _ = write!(out, " unless {}", u.event.name);
                    if let Some(f) = &u.filter {
                        let _ = write!(out, " where {}", self.expr(f));
                    }
                    let _ = write!(out, " within {}", self.slice(u.within.span));
                }
                out
            }
            Entry::EveryDay { at } => format!("every day at {}", self.slice(at.span)),
            Entry::EveryWeekday {
                weekday_span, at, ..
            } => format!(
                "every {} at {}",
                self.slice(*weekday_span),
                self.slice(at.span)
            ),
            Entry::Every(d) => format!("every {}", self.slice(d.span)),
            Entry::At(t) => format!("at {}", self.slice(t.span)),
            Entry::When(e) => format!("when {}", self.expr(e)),
            Entry::Manual => "manual".into(),
        }
    }

    fn trigger(&self, trigger: &ast::Trigger) -> String {
        let on = match &trigger.condition {
            TriggerCondition::Event { event, filter } => match filter {
                Some(f) => format!("{} where {}", event.name, self.expr(f)),
                None => event.name.clone(),
            },
            TriggerCondition::When(e) => format!("when {}", self.expr(e)),
        };
        format!("{}: {on}", trigger.name.name)
    }

    // ------------------------------------------------------------ steps

    /// Steps one a line, keeping blank lines; `previous` is where the code before them ends
    /// (`None` right after an opening brace).
    fn steps_from(&mut self, steps: &[Step], mut previous: Option<u32>) {
        for step in steps {
            self.leading(previous, step.span.start, previous.is_some());
            self.step(step);
            previous = Some(step.span.end);
        }
    }

    /// ` {`, the block's steps, and its closing brace written by the caller's `close`.
    fn block_body(&mut self, block: &Block) {
        self.indent += 1;
        self.steps_from(&block.steps, None);
        let last = block.steps.last().map(|s| s.span.end);
        self.leading(last, block.span.end.saturating_sub(1), false);
        self.indent -= 1;
    }

    /// Whether a block can be written `{ }`.
    fn empty(&self, block: &Block) -> bool {
        block.steps.is_empty() && !self.has_comment_in(block.span)
    }

    /// A chain of blocks: `head { a } k1 { b } k2 { c }`. Only the last block may be written
    /// `{ }` when empty, so that `} else {` always closes the block before it.
    fn chain(&mut self, head: String, blocks: Vec<(Option<String>, &Block)>) {
        let mut prefix = head;
        for (i, (_, block)) in blocks.iter().enumerate() {
            let next = blocks.get(i + 1);
            if next.is_none() && self.empty(block) {
                self.line(format!("{prefix} {{ }}"), block.span.end);
                return;
            }
            // The opening brace is where the block's span starts.
            self.line(format!("{prefix} {{"), block.span.start + 1);
            self.block_body(block);
            match next {
                Some((keyword, _)) => {
                    prefix = format!("}} {}", keyword.clone().unwrap_or_default());
                }
                None => self.line("}".into(), block.span.end),
            }
        }
    }

    fn step(&mut self, step: &Step) {
        let label = step
            .label
            .as_ref()
            .map(|l| format!("{}: ", l.name))
            .unwrap_or_default();
        match &step.kind {
            StepKind::Wait(d) => {
                let code = format!("{label}wait {}", self.slice(d.span));
                self.line(code, step.span.end);
            }
            StepKind::WaitUntilTime { time, local } => {
                let local = if *local { " local" } else { "" };
                let code = format!("{label}wait until {}{local}", self.slice(time.span));
                self.line(code, step.span.end);
            }
            StepKind::WaitUntil {
                target,
                within,
                then,
                on_timeout,
            } => {
                let mut head = format!("{label}wait until {}", self.expr(target));
                if let Some(w) = within {
                    let _ = write!(head, " within {}", self.slice(w.span));
                }
                self.wait_blocks(head, then, on_timeout, step.span.end);
            }
            StepKind::WaitFor {
                event,
                binding,
                filter,
                within,
                since_entry,
                then,
                on_timeout,
            } => {
                let mut head = format!("{label}wait for {}", event.name);
                if let Some(b) = binding {
                    let _ = write!(head, " as {}", b.name);
                }
                if let Some(f) = filter {
                    let _ = write!(head, " where {}", self.expr(f));
                }
                if let Some(w) = within {
                    let _ = write!(head, " within {}", self.slice(w.span));
                }
                if *since_entry {
                    head.push_str(" since entry");
                }
                self.wait_blocks(head, then, on_timeout, step.span.end);
            }
            StepKind::WaitAny {
                within,
                arms,
                on_timeout,
            } => {
                let open = arms.first().map_or(step.span.end, |a| a.span.start);
                self.line(
                    format!("{label}wait within {} {{", self.slice(within.span)),
                    open,
                );
                self.indent += 1;
                let mut previous = None;
                for arm in arms {
                    self.leading(previous, arm.span.start, previous.is_some());
                    let mut head = format!("on {}", arm.event.name);
                    if let Some(b) = &arm.binding {
                        let _ = write!(head, " as {}", b.name);
                    }
                    if let Some(f) = &arm.filter {
                        let _ = write!(head, " where {}", self.expr(f));
                    }
                    self.chain(head, vec![(None, &arm.block)]);
                    previous = Some(arm.span.end);
                }
                if let Some(block) = on_timeout {
                    self.leading(previous, block.span.start, previous.is_some());
                    self.chain("timeout".into(), vec![(None, block)]);
                    previous = Some(block.span.end);
                }
                self.leading(previous, step.span.end.saturating_sub(1), false);
                self.indent -= 1;
                self.line("}".into(), step.span.end);
            }
            StepKind::Send(send) => {
                let target = match &send.target {
                    SendTarget::Channel {
                        channel_span, id, ..
                    } => {
                        format!("{} {}", self.slice(*channel_span), self.slice(id.span))
                    }
                    SendTarget::Template(name) => name.name.clone(),
                };
                let transactional = if send.transactional {
                    " transactional"
                } else {
                    ""
                };
                let head = format!("{label}send {target}");
                match &send.args {
                    Some(record) => self.record_line(&head, record, transactional, step.span.end),
                    None => self.line(format!("{head}{transactional}"), step.span.end),
                }
            }
            StepKind::Set { field, value } => {
                let code = format!("{label}set profile.{} = {}", field.name, self.expr(value));
                self.line(code, step.span.end);
            }
            StepKind::Add { value, field } => {
                let code = format!("{label}add {} to profile.{}", self.expr(value), field.name);
                self.line(code, step.span.end);
            }
            StepKind::Remove { value, field } => {
                let code = format!(
                    "{label}remove {} from profile.{}",
                    self.expr(value),
                    field.name
                );
                self.line(code, step.span.end);
            }
            StepKind::If { arms, otherwise } => {
                let mut blocks: Vec<(Option<String>, &Block)> = Vec::new();
                let mut head = String::new();
                for (i, (condition, block)) in arms.iter().enumerate() {
                    if i == 0 {
                        head = format!("{label}if {}", self.expr(condition));
                        blocks.push((None, block));
                    } else {
                        blocks.push((Some(format!("else if {}", self.expr(condition))), block));
                    }
                }
                if let Some(block) = otherwise {
                    blocks.push((Some("else".into()), block));
                }
                self.chain(head, blocks);
            }
            StepKind::Branch { arms, otherwise } => {
                let open = arms.first().map_or(step.span.end, |a| a.span.start);
                self.line(format!("{label}branch {{"), open);
                self.indent += 1;
                let mut previous = None;
                for arm in arms {
                    self.leading(previous, arm.span.start, previous.is_some());
                    let head = format!("{}: when {}", arm.name.name, self.expr(&arm.condition));
                    self.chain(head, vec![(None, &arm.block)]);
                    previous = Some(arm.span.end);
                }
                if let Some(block) = otherwise {
                    self.leading(previous, block.span.start, previous.is_some());
                    self.chain("else".into(), vec![(None, block)]);
                    previous = Some(block.span.end);
                }
                self.leading(previous, step.span.end.saturating_sub(1), false);
                self.indent -= 1;
                self.line("}".into(), step.span.end);
            }
            StepKind::Split { arms } => {
                let open = arms.first().map_or(step.span.end, |a| a.span.start);
                self.line(format!("{label}split {{"), open);
                self.indent += 1;
                let mut previous = None;
                for arm in arms {
                    self.leading(previous, arm.span.start, previous.is_some());
                    let head = format!("{}: {}", arm.name.name, self.slice(arm.weight.span));
                    self.chain(head, vec![(None, &arm.block)]);
                    previous = Some(arm.span.end);
                }
                self.leading(previous, step.span.end.saturating_sub(1), false);
                self.indent -= 1;
                self.line("}".into(), step.span.end);
            }
            StepKind::Start(journey) => {
                self.line(format!("{label}start {}", journey.name), step.span.end)
            }
            StepKind::Exit => self.line(format!("{label}exit"), step.span.end),
        }
    }

    fn wait_blocks(
        &mut self,
        head: String,
        then: &Option<Block>,
        on_timeout: &Option<Block>,
        end: u32,
    ) {
        match (then, on_timeout) {
            (None, None) => self.line(head, end),
            (Some(then), None) => self.chain(head, vec![(None, then)]),
            (None, Some(timeout)) => self.chain(format!("{head} timeout"), vec![(None, timeout)]),
            (Some(then), Some(timeout)) => {
                self.chain(head, vec![(None, then), (Some("timeout".into()), timeout)])
            }
        }
    }

    // ------------------------------------------------------------ records

    /// `head { k: v, ... }rest` on one line when it fits and holds no comment, else one entry
    /// a line.
    fn record_line(&mut self, head: &str, record: &Record, rest: &str, end: u32) {
        if let Some(inline) = self.record_inline(record) {
            let code = format!("{head} {inline}{rest}");
            if self.fits(&code) {
                self.line(code, end);
                return;
            }
        }
        self.record_lines(&format!("{head} "), record, rest, end);
    }

    /// `{ k: v, ... }` on one line, unless it holds a comment.
    fn record_inline(&self, record: &Record) -> Option<String> {
        if self.has_comment_in(record.span) {
            return None;
        }
        if record.entries.is_empty() {
            return Some("{ }".into());
        }
        let mut parts = Vec::new();
        for entry in &record.entries {
            let value = match &entry.value.kind {
                ExprKind::Record(inner) => self.record_inline(inner)?,
                _ => self.expr(&entry.value),
            };
            parts.push(format!("{}: {value}", entry.key.name));
        }
        Some(format!("{{ {} }}", parts.join(", ")))
    }

    /// `prefix{`, an entry a line, `}rest`.
    fn record_lines(&mut self, prefix: &str, record: &Record, rest: &str, end: u32) {
        let open = record
            .entries
            .first()
            .map_or(record.span.end.saturating_sub(1), |e| e.key.span.start);
        self.line(format!("{prefix}{{"), open);
        self.indent += 1;
        let mut previous = None;
        for entry in &record.entries {
            self.leading(previous, entry.key.span.start, previous.is_some());
            let head = format!("{}:", entry.key.name);
            match &entry.value.kind {
                ExprKind::Record(inner) => self.record_line(&head, inner, "", entry.value.span.end),
                _ => {
                    let code = format!("{head} {}", self.expr(&entry.value));
                    self.line(code, entry.value.span.end);
                }
            }
            previous = Some(entry.value.span.end);
        }
        self.leading(previous, record.span.end.saturating_sub(1), false);
        self.indent -= 1;
        self.line(format!("}}{rest}"), end);
    }

    // ------------------------------------------------------------ tests

    fn test(&mut self, test: &ast::TestDecl) {
        let open = test.lines.first().map_or(test.span.end, |l| l.span.start);
        self.line(
            format!(
                "test {} for {} {{",
                self.slice(test.name.span),
                test.journey.name
            ),
            open,
        );
        self.indent += 1;
        let mut previous = None;
        for line in &test.lines {
            self.leading(previous, line.span.start, previous.is_some());
            self.test_line(line);
            previous = Some(line.span.end);
        }
        self.leading(previous, test.span.end.saturating_sub(1), false);
        self.indent -= 1;
        self.line("}".into(), test.span.end);
    }

    fn test_line(&mut self, line: &TestLine) {
        let end = line.span.end;
        match &line.kind {
            TestLineKind::Start(t) => self.line(format!("start {}", self.slice(t.span)), end),
            TestLineKind::Profile(record) => self.record_line("profile", record, "", end),
            TestLineKind::Until(time) => {
                let span = match time {
                    TestTime::After(d) => d.span,
                    TestTime::At(t) => t.span,
                };
                self.line(format!("until {}", self.slice(span)), end);
            }
            TestLineKind::Track {
                at,
                event,
                properties,
            } => {
                let head = format!("at {} {}", self.slice(at.span), event.name);
                match properties {
                    Some(record) => self.record_line(&head, record, "", end),
                    None => self.line(head, end),
                }
            }
            TestLineKind::Identify { at, traits } => {
                let head = format!("at {} identify", self.slice(at.span));
                self.record_line(&head, traits, "", end);
            }
            TestLineKind::Expect(expectation) => {
                let at = |d: &Option<ast::DurationLit>| {
                    d.map(|d| format!(" at {}", self.slice(d.span)))
                        .unwrap_or_default()
                };
                let code = match expectation {
                    Expectation::Send { target, at: when } => {
                        let target = match target {
                            SendTarget::Channel {
                                channel_span, id, ..
                            } => format!("{} {}", self.slice(*channel_span), self.slice(id.span)),
                            SendTarget::Template(name) => name.name.clone(),
                        };
                        format!("expect send {target}{}", at(when))
                    }
                    Expectation::NoSend => "expect no send".into(),
                    Expectation::Sends(n) => format!("expect sends {n}"),
                    Expectation::Exit {
                        outcome,
                        name,
                        at: when,
                    } => {
                        let name = name
                            .as_ref()
                            .map(|n| format!(" {}", n.name))
                            .unwrap_or_default();
                        format!("expect exit {}{name}{}", outcome.as_str(), at(when))
                    }
                    Expectation::NotEntered => "expect not entered".into(),
                    Expectation::At { label, at: when } => {
                        format!("expect at {} at {}", label.name, self.slice(when.span))
                    }
                };
                self.line(code, end);
            }
        }
    }

    // ------------------------------------------------------------ expressions

    fn expr(&self, expr: &Expr) -> String {
        match &expr.kind {
            ExprKind::Int(_)
            | ExprKind::Float(_)
            | ExprKind::String(_)
            | ExprKind::Duration(_)
            | ExprKind::Timestamp(_) => self.slice(expr.span).to_string(),
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::List(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(|i| self.expr(i))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ExprKind::Record(record) => self.record_inline(record).unwrap_or_else(|| {
                // Only reached for a record with a comment inside, in an expression position
                // the grammar does not have; keep the source.
                self.slice(record.span).to_string()
            }),
            ExprKind::Name(name) => name.name.clone(),
            ExprKind::Profile => "profile".into(),
            ExprKind::Journey => "journey".into(),
            ExprKind::Now => "now".into(),
            ExprKind::Field { base, field } => {
                let base_text = self.expr(base);
                if level(base) < ATOM {
                    format!("({base_text}).{}", field.name)
                } else {
                    format!("{base_text}.{}", field.name)
                }
            }
            ExprKind::Unary { op, operand } => {
                let (word, power) = match op {
                    UnaryOp::Not => ("not ", NOT),
                    UnaryOp::Neg => ("-", NEG),
                };
                format!("{word}{}", self.operand(operand, power))
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let (left, right) = powers(*op);
                format!(
                    "{} {} {}",
                    self.operand(lhs, left),
                    op.as_str(),
                    self.operand(rhs, right)
                )
            }
            ExprKind::IsSet { operand, negated } => {
                let not = if *negated { "not " } else { "" };
                format!("{} is {not}set", self.operand(operand, COMPARISON + 1))
            }
            ExprKind::History(h) => {
                let function = h.function.as_str();
                let mut inner = h.event.name.clone();
                if let Some(field) = &h.field {
                    let _ = write!(inner, ".{}", field.name);
                }
                if let Some(f) = &h.filter {
                    let _ = write!(inner, " where {}", self.expr(f));
                }
                match &h.window {
                    Some(ast::Window::Within(d)) => {
                        let _ = write!(inner, " within {}", self.slice(d.span));
                    }
                    Some(ast::Window::SinceEntry(_)) => inner.push_str(" since entry"),
                    None => {}
                }
                format!("{function}({inner})")
            }
            ExprKind::Call { function, args } => format!(
                "{}({})",
                function.name,
                args.iter()
                    .map(|a| self.expr(a))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// An operand that must bind at least as tightly as `power`, in parentheses if it does not
    /// (or if the source put it in parentheses: they often say what the author meant).
    fn operand(&self, expr: &Expr, power: u8) -> String {
        let text = self.expr(expr);
        if level(expr) < power || (level(expr) < ATOM && self.parenthesized(expr.span)) {
            format!("({text})")
        } else {
            text
        }
    }
}

impl Printer<'_> {
    /// Whether the source text of `span` is one parenthesised expression: `(a + b)`, not
    /// `(a) + (b)`.
    fn parenthesized(&self, span: Span) -> bool {
        let text = self.slice(span).as_bytes();
        if text.first() != Some(&b'(') || text.last() != Some(&b')') {
            return false;
        }
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for (i, byte) in text.iter().enumerate() {
            if in_string {
                match (escaped, byte) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'(' => depth += 1,
                b')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return i + 1 == text.len();
                    }
                }
                _ => {}
            }
        }
        false
    }
}

// Binding strengths, as the parser's (`parse/build.rs`): or < and < not < comparisons (which do
// not chain) < + - < * / < unary minus < ?? (right-associative) < everything else.
const OR: u8 = 2;
const AND: u8 = 4;
const NOT: u8 = 6;
const COMPARISON: u8 = 8;
const ADD: u8 = 10;
const MUL: u8 = 12;
const NEG: u8 = 14;
const COALESCE: u8 = 16;
const ATOM: u8 = 100;

/// How tightly an expression binds.
fn level(expr: &Expr) -> u8 {
    match &expr.kind {
        ExprKind::Binary { op, .. } => match op {
            BinaryOp::Or => OR,
            BinaryOp::And => AND,
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge
            | BinaryOp::In => COMPARISON,
            BinaryOp::Add | BinaryOp::Sub => ADD,
            BinaryOp::Mul | BinaryOp::Div => MUL,
            BinaryOp::Coalesce => COALESCE,
        },
        ExprKind::Unary { op, .. } => match op {
            UnaryOp::Not => NOT,
            UnaryOp::Neg => NEG,
        },
        ExprKind::IsSet { .. } => COMPARISON,
        _ => ATOM,
    }
}

/// The least binding strength an operator's left and right operands need to go without
/// parentheses: one more on the side that does not associate.
fn powers(op: BinaryOp) -> (u8, u8) {
    match level_of(op) {
        // Comparisons do not chain: both sides must bind more tightly.
        COMPARISON => (COMPARISON + 1, COMPARISON + 1),
        // Right-associative: `a ?? b ?? c` is `a ?? (b ?? c)`.
        COALESCE => (COALESCE + 1, COALESCE),
        // Left-associative.
        power => (power, power + 1),
    }
}

fn level_of(op: BinaryOp) -> u8 {
    match op {
        BinaryOp::Or => OR,
        BinaryOp::And => AND,
        BinaryOp::Add | BinaryOp::Sub => ADD,
        BinaryOp::Mul | BinaryOp::Div => MUL,
        BinaryOp::Coalesce => COALESCE,
        _ => COMPARISON,
    }
}
