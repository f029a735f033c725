//! The workspace's name index → go to definition, find references, rename and hover.

use std::collections::HashMap;

use journey_compiler::check::journey_time::format_duration;
use journey_compiler::index::{Index, Occurrence, Symbol};
use journey_compiler::parse::RESERVED_WORDS;
use journey_compiler::source::{FileId, Span};
use journey_compiler::Analysis;
use tower_lsp_server::ls_types::{
    Hover, HoverContents, Location, MarkupContent, MarkupKind, Position, TextEdit, Uri,
    WorkspaceEdit,
};

use crate::convert::{self, LineIndex};

/// A checked workspace with its index: what position-based requests read.
pub struct Navigator<'a> {
    analysis: &'a Analysis,
    index: &'a Index,
}

impl<'a> Navigator<'a> {
    pub fn new(analysis: &'a Analysis, index: &'a Index) -> Navigator<'a> {
        Navigator { analysis, index }
    }

    fn text(&self, file: FileId) -> &'a str {
        &self.analysis.workspace.sources.get(file).text
    }

    /// The file of a path and the byte offset of a position in it.
    pub fn locate(&self, path: &std::path::Path, position: Position) -> Option<(FileId, u32)> {
        let file = self.analysis.workspace.sources.find_path(path)?;
        let text = self.text(file);
        let offset = LineIndex::new(text).offset(text, position);
        Some((file, offset as u32))
    }

    fn location(&self, occurrence: &Occurrence) -> Option<Location> {
        convert::location(
            &self.analysis.workspace.sources,
            occurrence.file,
            occurrence.span,
        )
    }

    pub fn definition(&self, file: FileId, offset: u32) -> Option<Location> {
        let here = self.index.at(file, offset)?;
        self.location(self.index.declaration(&here.symbol)?)
    }

    pub fn references(&self, file: FileId, offset: u32, declaration: bool) -> Vec<Location> {
        let Some(here) = self.index.at(file, offset) else {
            return Vec::new();
        };
        self.index
            .occurrences_of(&here.symbol)
            .filter(|o| declaration || !o.declaration)
            .filter_map(|o| self.location(o))
            .collect()
    }

    /// The edits renaming the name at `offset` everywhere, or why it cannot be renamed.
    pub fn rename(
        &self,
        file: FileId,
        offset: u32,
        new_name: &str,
    ) -> Result<WorkspaceEdit, String> {
        let here = self
            .index
            .at(file, offset)
            .ok_or("there is no name here to rename")?;
        if self.analysis.program.is_none() {
            // The index holds only the items that parse: a rename now would miss the uses
            // inside the others.
            return Err(
                "a file has a syntax error: fix it first, or the rename would miss the \
                        names inside it"
                    .to_string(),
            );
        }
        let valid = new_name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && new_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "`{new_name}` is not a name: letters, digits and `_`, not starting with a digit"
            ));
        }
        if RESERVED_WORDS.contains(&new_name) {
            return Err(format!("`{new_name}` is a reserved word"));
        }
        let mut changes: HashMap<Uri, Vec<TextEdit>> = HashMap::new();
        for occurrence in self.index.occurrences_of(&here.symbol) {
            let source = self.analysis.workspace.sources.get(occurrence.file);
            if source.path.extension().is_none_or(|e| e != "journey") {
                return Err(format!(
                    "`{}` is declared in the tracking plan `{}`: rename it there",
                    self.text(occurrence.file)
                        .get(occurrence.span.start as usize..occurrence.span.end as usize)
                        .unwrap_or("it"),
                    source.name
                ));
            }
            let location = self.location(occurrence).ok_or("a file has no URI")?;
            changes
                .entry(location.uri)
                .or_default()
                .push(TextEdit::new(location.range, new_name.to_string()));
        }
        Ok(WorkspaceEdit {
            changes: Some(changes),
            ..WorkspaceEdit::default()
        })
    }

    /// What the name at `offset` is; else the expression there (its type, and a duration in
    /// words); else the step there (when it can be reached after entry).
    pub fn hover(&self, file: FileId, offset: u32) -> Option<Hover> {
        let source = self.text(file);
        // A duration literal, wherever it is (a wait, a window, an expression): in words.
        if let Some((word, span)) = word_at(source, offset) {
            if let Some(words) = duration_in_words(word) {
                let index = LineIndex::new(source);
                return Some(Hover {
                    contents: HoverContents::Markup(MarkupContent {
                        kind: MarkupKind::Markdown,
                        value: format!("```journey\nduration\n```\n\n{words}"),
                    }),
                    range: Some(index.range(source, span.start as usize, span.end as usize)),
                });
            }
        }
        let (text, span) = match self.index.at(file, offset) {
            Some(here) => (self.describe(&here.symbol)?, here.span),
            None => self
                .expression(file, offset)
                .or_else(|| self.step(file, offset))?,
        };
        let index = LineIndex::new(source);
        Some(Hover {
            contents: HoverContents::Markup(MarkupContent {
                kind: MarkupKind::Markdown,
                value: text,
            }),
            range: Some(index.range(source, span.start as usize, span.end as usize)),
        })
    }

    /// The innermost typed expression around `offset`: its type.
    fn expression(&self, file: FileId, offset: u32) -> Option<(String, Span)> {
        let (_, span, ty) = self
            .analysis
            .navigable()?
            .expression_types
            .iter()
            .filter(|(f, s, _)| *f == file && s.start <= offset && offset <= s.end)
            .min_by_key(|(_, s, _)| s.end - s.start)?;
        Some((format!("```journey\n{ty}\n```"), *span))
    }

    /// The innermost step around `offset` and when it can be reached after entry.
    fn step(&self, file: FileId, offset: u32) -> Option<(String, Span)> {
        let program = self.analysis.navigable()?;
        let step = program
            .journeys
            .iter()
            .filter(|j| j.file == file)
            .flat_map(|j| &j.steps)
            .filter(|s| s.span.start <= offset && offset <= s.span.end)
            .min_by_key(|s| s.span.end - s.span.start)?;
        let latest = step.latest.map_or("no proven bound".to_string(), |t| {
            format!("+{}", format_duration(t))
        });
        Some((
            format!(
                "step `{}`: reached +{} .. {latest} after entry",
                step.name,
                format_duration(step.earliest)
            ),
            step.span,
        ))
    }

    /// The `///` doc of the journey, template or segment a symbol names.
    fn declared_doc(&self, symbol: &Symbol) -> Option<String> {
        use journey_compiler::ast::Item;
        self.analysis
            .workspace
            .modules
            .iter()
            .flat_map(|m| &m.items)
            .find_map(|item| match (item, symbol) {
                (Item::Journey(j), Symbol::Journey(name)) if j.name.name == *name => j.doc.clone(),
                (Item::Template(t), Symbol::Template(name)) if t.name.name == *name => {
                    t.doc.clone()
                }
                (Item::Segment(s), Symbol::Segment(name)) if s.name.name == *name => s.doc.clone(),
                _ => None,
            })
    }

    fn describe(&self, symbol: &Symbol) -> Option<String> {
        let program = self.analysis.navigable()?;
        let code = |s: String| format!("```journey\n{s}\n```");
        let doc = |d: &Option<String>| d.as_ref().map(|d| format!("\n\n{d}")).unwrap_or_default();
        Some(match symbol {
            Symbol::Event(name) => {
                let event = program.events.get(name)?;
                let fields: Vec<String> = event
                    .fields
                    .fields
                    .iter()
                    .map(|f| format!("  {}: {}", f.name, f.ty))
                    .collect();
                let wire = if event.wire_name == event.name {
                    String::new()
                } else {
                    format!("\"{}\" as ", event.wire_name)
                };
                format!(
                    "{}{}",
                    code(format!("event {wire}{name} {{\n{}\n}}", fields.join("\n"))),
                    doc(&event.doc)
                )
            }
            Symbol::EventField { event, field } => {
                let info = program.events.get(event)?;
                let f = info.fields.fields.iter().find(|f| f.name == *field)?;
                format!(
                    "{}{}",
                    code(format!("{event}.{field}: {}", f.ty)),
                    doc(&f.doc)
                )
            }
            Symbol::ProfileField(field) => {
                let f = program.profile.fields.iter().find(|f| f.name == *field)?;
                format!(
                    "{}{}",
                    code(format!("profile.{field}: {}", f.ty)),
                    doc(&f.doc)
                )
            }
            Symbol::Template(name) => {
                let t = program.templates.get(name)?;
                let params: Vec<String> = t
                    .params
                    .fields
                    .iter()
                    .map(|f| format!("{}: {}", f.name, f.ty))
                    .collect();
                format!(
                    "{}{}",
                    code(format!(
                        "template {name}: {} {{ {} }}",
                        t.channel.as_str(),
                        params.join(", ")
                    )),
                    doc(&self.declared_doc(symbol))
                )
            }
            Symbol::TemplateParam { template, param } => {
                let t = program.templates.get(template)?;
                let f = t.params.fields.iter().find(|f| f.name == *param)?;
                code(format!("{template} {{ {param}: {} }}", f.ty))
            }
            Symbol::Segment(name) => {
                let s = program.segments.get(name)?;
                let source = self.text(s.file);
                let text = source.get(s.span.start as usize..s.span.end as usize)?;
                format!(
                    "{}{}",
                    code(text.to_string()),
                    doc(&self.declared_doc(symbol))
                )
            }
            Symbol::Journey(name) => {
                let facts = program.journeys.iter().find(|j| j.name == *name)?;
                let lifetime = facts
                    .max_lifetime
                    .map_or("no proven bound".to_string(), |t| {
                        format!("at most {}", format_duration(t))
                    });
                format!(
                    "{}{}\n\nlives {lifetime}; at most {} sends",
                    code(format!("journey {name}")),
                    doc(&self.declared_doc(symbol)),
                    facts.max_total_sends
                )
            }
            Symbol::Label { journey, label } => {
                let facts = program.journeys.iter().find(|j| j.name == *journey)?;
                let step = facts.steps.iter().find(|s| s.name == *label)?;
                let latest = step.latest.map_or("no bound".to_string(), |t| {
                    format!("+{}", format_duration(t))
                });
                format!(
                    "{}\n\nreached +{} .. {latest} after entry",
                    code(format!("step {label}")),
                    format_duration(step.earliest)
                )
            }
            Symbol::Outcome { journey, name } => code(format!("{journey}: goal or exit `{name}`")),
            Symbol::Binding { name, event, .. } => {
                code(format!("{name}: {event} (an event bound with `as {name}`)"))
            }
        })
    }
}

/// `1d12h` → "1 day 12 hours" (`None` when `literal` is not a duration).
fn duration_in_words(literal: &str) -> Option<String> {
    let mut words = Vec::new();
    let mut digits = String::new();
    for c in literal.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'w' => "week",
            'd' => "day",
            'h' => "hour",
            'm' => "minute",
            's' => "second",
            _ => return None,
        };
        let n: u64 = digits.parse().ok()?;
        digits.clear();
        words.push(format!("{n} {unit}{}", if n == 1 { "" } else { "s" }));
    }
    (digits.is_empty() && !words.is_empty()).then(|| words.join(" "))
}

/// The run of letters and digits around `offset`, and where it is.
fn word_at(text: &str, offset: u32) -> Option<(&str, Span)> {
    let mut offset = (offset as usize).min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let start = text[..offset]
        .char_indices()
        .rev()
        .find(|(_, c)| !is_word(*c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let end = text[offset..]
        .char_indices()
        .find(|(_, c)| !is_word(*c))
        .map_or(text.len(), |(i, _)| offset + i);
    (end > start).then(|| {
        (
            &text[start..end],
            Span {
                start: start as u32,
                end: end as u32,
            },
        )
    })
}
