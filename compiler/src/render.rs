//! Diagnostics → text: `human` (codespan-reporting), `json` (one object a line), `github`
//! (workflow commands) and `sarif` (SARIF 2.1.0).
//!
//! Positions are 1-based; columns count Unicode characters (scalar values); `end_line` and
//! `end_column` point just past the last character of the span.
//!
//! **Invariant:** the only place diagnostics are formatted.

use std::io::{self, Write};
use std::ops::Range;

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::{Error as FilesError, Files};
use codespan_reporting::term;
use serde_json::{json, Value};

use crate::check::journey_time::format_duration;
use crate::check::Program;
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Label, Severity};
use crate::source::{FileId, SourceMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
    Github,
    Sarif,
}

/// Source lines longer than this are not echoed by the human renderer (it would print them whole).
const MAX_SHOWN_LINE: usize = 1_000;

pub fn render(
    format: Format,
    sources: &SourceMap,
    diagnostics: &[Diagnostic],
    out: &mut dyn Write,
    color: bool,
) -> io::Result<()> {
    match format {
        Format::Human => {
            for diagnostic in diagnostics {
                human(sources, diagnostic, out, color)?;
            }
            Ok(())
        }
        Format::Json => {
            for diagnostic in diagnostics {
                writeln!(out, "{}", json_value(sources, diagnostic))?;
            }
            Ok(())
        }
        Format::Github => {
            for diagnostic in diagnostics {
                writeln!(out, "{}", github(sources, diagnostic))?;
            }
            Ok(())
        }
        Format::Sarif => {
            let log = sarif(sources, diagnostics);
            let text = serde_json::to_string_pretty(&log).map_err(io::Error::other)?;
            writeln!(out, "{text}")
        }
    }
}

/// A resolved position range of a label.
struct Place<'a> {
    file: &'a str,
    line: usize,
    column: usize,
    end_line: usize,
    end_column: usize,
}

fn place<'a>(sources: &'a SourceMap, label: &Label) -> Place<'a> {
    let file = sources.get(label.file);
    let start = file.line_col(label.span.start as usize);
    let end = file.line_col(label.span.end as usize);
    Place {
        file: &file.name,
        line: start.line,
        column: start.column,
        end_line: end.line,
        end_column: end.column,
    }
}

// ---------------------------------------------------------------- human

struct CodespanFiles<'a>(&'a SourceMap);

impl<'a> Files<'a> for CodespanFiles<'a> {
    type FileId = FileId;
    type Name = &'a str;
    type Source = &'a str;

    fn name(&'a self, id: FileId) -> Result<&'a str, FilesError> {
        Ok(&self.0.get(id).name)
    }

    fn source(&'a self, id: FileId) -> Result<&'a str, FilesError> {
        Ok(&self.0.get(id).text)
    }

    fn line_index(&'a self, id: FileId, byte_index: usize) -> Result<usize, FilesError> {
        Ok(self.0.get(id).line_index(byte_index))
    }

    fn line_range(&'a self, id: FileId, line_index: usize) -> Result<Range<usize>, FilesError> {
        let file = self.0.get(id);
        let range = file
            .line_range(line_index)
            .ok_or(FilesError::LineTooLarge {
                given: line_index,
                max: file.line_count(),
            })?;
        // codespan wants the range including the line break.
        let end = file.text[range.end..]
            .find('\n')
            .map_or(file.text.len(), |i| range.end + i + 1);
        Ok(range.start..end)
    }
}

fn human(
    sources: &SourceMap,
    diagnostic: &Diagnostic,
    out: &mut dyn Write,
    color: bool,
) -> io::Result<()> {
    let severity = match diagnostic.severity {
        Severity::Error => cs::Severity::Error,
        Severity::Warning => cs::Severity::Warning,
    };
    let mut notes = Vec::new();
    let mut labels = Vec::new();
    for label in &diagnostic.labels {
        let file = sources.get(label.file);
        let line = file.line_index(file.clamp(label.span.start as usize));
        let too_long = file
            .line_range(line)
            .is_some_and(|range| range.len() > MAX_SHOWN_LINE);
        if too_long {
            let at = place(sources, label);
            notes.push(format!(
                "{}:{}:{}: {}",
                at.file, at.line, at.column, label.message
            ));
            continue;
        }
        let style = if label.primary {
            cs::LabelStyle::Primary
        } else {
            cs::LabelStyle::Secondary
        };
        let range = file.clamp(label.span.start as usize)..file.clamp(label.span.end as usize);
        labels.push(cs::Label::new(style, label.file, range).with_message(&label.message));
    }
    notes.extend(diagnostic.notes.iter().map(|n| format!("note: {n}")));
    if let Some(help) = &diagnostic.help {
        notes.push(format!("help: {help}"));
    }
    let rendered = cs::Diagnostic::new(severity)
        .with_code(diagnostic.code.id())
        .with_message(&diagnostic.message)
        .with_labels(labels)
        .with_notes(notes);
    let config = term::Config::default();
    let files = CodespanFiles(sources);
    let mut buffer = Vec::new();
    let result = if color {
        let mut writer = term::termcolor::Ansi::new(&mut buffer);
        term::emit_to_write_style(&mut writer, &config, &files, &rendered)
    } else {
        term::emit_to_io_write(&mut buffer, &config, &files, &rendered)
    };
    result.map_err(io::Error::other)?;
    out.write_all(&buffer)
}

// ---------------------------------------------------------------- summary

/// `+1d 1h`, or `∞` for unbounded.
fn offset(time: Option<u64>) -> String {
    match time {
        Some(seconds) => format!("+{}", format_duration(seconds)),
        None => "unbounded".to_string(),
    }
}

/// What `journeyc check --summary` prints: per journey, its maximum lifetime, its most sends
/// per channel, and each step's window of time after entry.
pub fn summary(sources: &SourceMap, program: &Program) -> String {
    let mut out = String::new();
    for journey in &program.journeys {
        let file = sources.get(journey.file);
        let at = file.line_col(journey.span.start as usize);
        let lifetime = match journey.max_lifetime {
            Some(0) => "ends as it enters".to_string(),
            Some(seconds) => format!("lives at most {}", format_duration(seconds)),
            None => "no bound on its lifetime".to_string(),
        };
        let total = journey.max_total_sends;
        let per_channel: Vec<String> = journey
            .max_sends
            .iter()
            .map(|(channel, n)| format!("{} ≤ {n}", channel.as_str()))
            .collect();
        let over = match journey.max_lifetime {
            Some(seconds) if seconds > 0 => format!(" over {}", format_duration(seconds)),
            _ => String::new(),
        };
        let sends = if total == 0 {
            "sends nothing".to_string()
        } else {
            let noun = if total == 1 { "send" } else { "sends" };
            format!("≤ {total} {noun}{over} ({})", per_channel.join(", "))
        };
        out.push_str(&format!(
            "journey {} ({}:{}): {lifetime}; {sends}\n",
            journey.name, file.name, at.line
        ));
        let width = journey
            .steps
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(0);
        for step in &journey.steps {
            let window = if Some(step.earliest) == step.latest {
                offset(step.latest)
            } else {
                format!("{} .. {}", offset(Some(step.earliest)), offset(step.latest))
            };
            out.push_str(&format!("  {:<width$}  {window}\n", step.name));
        }
    }
    out
}

// ---------------------------------------------------------------- json

fn label_json(sources: &SourceMap, label: &Label) -> Value {
    let at = place(sources, label);
    json!({
        "file": at.file,
        "line": at.line,
        "column": at.column,
        "end_line": at.end_line,
        "end_column": at.end_column,
        "message": label.message,
        "primary": label.primary,
    })
}

pub fn json_value(sources: &SourceMap, diagnostic: &Diagnostic) -> Value {
    let location = diagnostic.location().map(|l| place(sources, l));
    json!({
        "code": diagnostic.code.id(),
        "name": diagnostic.code.name(),
        "severity": diagnostic.severity.as_str(),
        "message": diagnostic.message,
        "file": location.as_ref().map(|l| l.file),
        "line": location.as_ref().map(|l| l.line),
        "column": location.as_ref().map(|l| l.column),
        "end_line": location.as_ref().map(|l| l.end_line),
        "end_column": location.as_ref().map(|l| l.end_column),
        "labels": diagnostic.labels.iter().map(|l| label_json(sources, l)).collect::<Vec<_>>(),
        "notes": diagnostic.notes,
        "help": diagnostic.help,
    })
}

// ---------------------------------------------------------------- github

/// Escapes per the workflow-command rules: data escapes `% \r \n`, properties also `: ,`.
fn escape_github(text: &str, property: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            ':' if property => out.push_str("%3A"),
            ',' if property => out.push_str("%2C"),
            c => out.push(c),
        }
    }
    out
}

fn github(sources: &SourceMap, diagnostic: &Diagnostic) -> String {
    let command = match diagnostic.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut properties = Vec::new();
    if let Some(at) = diagnostic.location().map(|l| place(sources, l)) {
        properties.push(format!("file={}", escape_github(at.file, true)));
        properties.push(format!("line={}", at.line));
        properties.push(format!("col={}", at.column));
        properties.push(format!("endLine={}", at.end_line));
        properties.push(format!("endColumn={}", at.end_column));
    }
    properties.push(format!(
        "title={}",
        escape_github(
            &format!("{} {}", diagnostic.code.id(), diagnostic.code.name()),
            true
        )
    ));
    let mut message = diagnostic.message.clone();
    for note in &diagnostic.notes {
        message.push_str(&format!("\nnote: {note}"));
    }
    if let Some(help) = &diagnostic.help {
        message.push_str(&format!("\nhelp: {help}"));
    }
    format!(
        "::{command} {}::{}",
        properties.join(","),
        escape_github(&message, false)
    )
}

// ---------------------------------------------------------------- sarif

/// A relative path as a URI reference: forward slashes, reserved characters percent-encoded.
fn uri(path: &str) -> String {
    let mut out = String::new();
    for byte in path.replace('\\', "/").bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

fn sarif_location(sources: &SourceMap, label: &Label) -> Value {
    let at = place(sources, label);
    json!({
        "physicalLocation": {
            "artifactLocation": { "uri": uri(at.file) },
            "region": {
                "startLine": at.line,
                "startColumn": at.column,
                "endLine": at.end_line,
                "endColumn": at.end_column,
            }
        },
        "message": { "text": label.message },
    })
}

pub fn sarif(sources: &SourceMap, diagnostics: &[Diagnostic]) -> Value {
    let mut used: Vec<Code> = diagnostics.iter().map(|d| d.code).collect();
    used.sort();
    used.dedup();
    let rules: Vec<Value> = used
        .iter()
        .map(|code| {
            json!({
                "id": code.id(),
                "name": code.name(),
                "shortDescription": { "text": code.summary() },
                "fullDescription": { "text": code.summary() },
                "help": { "text": format!("run `journeyc explain {}`", code.id()), "markdown": code.explanation() },
                "defaultConfiguration": { "level": sarif_level(code.severity()) },
            })
        })
        .collect();
    let results: Vec<Value> = diagnostics
        .iter()
        .map(|d| {
            let mut text = d.message.clone();
            if let Some(help) = &d.help {
                text.push_str(&format!("\nhelp: {help}"));
            }
            let primary: Vec<Value> = d
                .labels
                .iter()
                .filter(|l| l.primary)
                .take(1)
                .map(|l| sarif_location(sources, l))
                .collect();
            let related: Vec<Value> = d
                .labels
                .iter()
                .filter(|l| !l.primary)
                .enumerate()
                .map(|(i, l)| {
                    let mut location = sarif_location(sources, l);
                    location["id"] = json!(i);
                    location
                })
                .collect();
            json!({
                "ruleId": d.code.id(),
                "ruleIndex": used.iter().position(|c| *c == d.code),
                "level": sarif_level(d.severity),
                "message": { "text": text },
                "locations": primary,
                "relatedLocations": related,
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "journeyc",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    })
}

fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_escapes_properties_and_data() {
        assert_eq!(escape_github("a:b,c%\nd", true), "a%3Ab%2Cc%25%0Ad");
        assert_eq!(escape_github("a:b,c%\nd", false), "a:b,c%25%0Ad");
    }

    #[test]
    fn uri_encodes_spaces() {
        assert_eq!(uri("my dir\\a.journey"), "my%20dir/a.journey");
    }
}
