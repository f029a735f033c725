//! The compiler's byte offsets and `Diagnostic`s → LSP positions (UTF-16 code units, as the
//! protocol counts by default) and LSP diagnostics; LSP positions → byte offsets.

use journey_compiler::diagnostic::{Diagnostic, Severity};
use journey_compiler::source::{FileId, SourceMap, Span};
use tower_lsp_server::ls_types::{
    self as lsp, DiagnosticRelatedInformation, DiagnosticSeverity, Location, NumberOrString,
    Position, Range, Uri,
};

/// Where each line of a text starts, for converting offsets both ways.
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// The LSP position of byte `offset` (clamped to the text, and to a character boundary).
    pub fn position(&self, text: &str, offset: usize) -> Position {
        let offset = offset.min(text.len());
        let line = self
            .starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1);
        let start = self.starts.get(line).copied().unwrap_or(0);
        let mut boundary = offset;
        while !text.is_char_boundary(boundary) {
            boundary -= 1;
        }
        let column: usize = text
            .get(start..boundary)
            .map_or(0, |s| s.chars().map(char::len_utf16).sum());
        Position::new(line as u32, column as u32)
    }

    /// The byte offset of an LSP position (a column past the line's end is its end).
    pub fn offset(&self, text: &str, position: Position) -> usize {
        let Some(&start) = self.starts.get(position.line as usize) else {
            return text.len();
        };
        let end = self
            .starts
            .get(position.line as usize + 1)
            .map_or(text.len(), |next| next - 1);
        let line = text.get(start..end).unwrap_or("");
        let mut units = 0u32;
        for (i, c) in line.char_indices() {
            if units >= position.character {
                return start + i;
            }
            units += c.len_utf16() as u32;
        }
        end
    }

    pub fn range(&self, text: &str, start: usize, end: usize) -> Range {
        Range::new(self.position(text, start), self.position(text, end))
    }
}

/// A compiler diagnostic as the LSP's, for the file `uri` whose text is `text`. Labels in
/// other files become related information at `locate`'s locations.
pub fn diagnostic(
    diagnostic: &Diagnostic,
    text: &str,
    index: &LineIndex,
    locate: &dyn Fn(&journey_compiler::diagnostic::Label) -> Option<Location>,
    in_this_file: &dyn Fn(&journey_compiler::diagnostic::Label) -> bool,
) -> Option<lsp::Diagnostic> {
    let primary = diagnostic
        .labels
        .iter()
        .find(|l| l.primary && in_this_file(l))
        .or_else(|| diagnostic.labels.iter().find(|l| in_this_file(l)))?;
    let range = index.range(text, primary.span.start as usize, primary.span.end as usize);
    let mut message = diagnostic.message.clone();
    if !primary.message.is_empty() {
        message.push_str(&format!("\n{}", primary.message));
    }
    for note in &diagnostic.notes {
        message.push_str(&format!("\nnote: {note}"));
    }
    if let Some(help) = &diagnostic.help {
        message.push_str(&format!("\nhelp: {help}"));
    }
    let related: Vec<DiagnosticRelatedInformation> = diagnostic
        .labels
        .iter()
        .filter(|l| !std::ptr::eq(*l, primary))
        .filter_map(|l| {
            Some(DiagnosticRelatedInformation {
                location: locate(l)?,
                message: if l.message.is_empty() {
                    "here".into()
                } else {
                    l.message.clone()
                },
            })
        })
        .collect();
    Some(lsp::Diagnostic {
        range,
        severity: Some(match diagnostic.severity {
            Severity::Error => DiagnosticSeverity::ERROR,
            Severity::Warning => DiagnosticSeverity::WARNING,
        }),
        code: Some(NumberOrString::String(diagnostic.code.id().to_string())),
        source: Some("journey".into()),
        message,
        related_information: (!related.is_empty()).then_some(related),
        ..Default::default()
    })
}

/// The URI of a file path (made absolute: URIs need one).
pub fn uri(path: &std::path::Path) -> Option<Uri> {
    Uri::from_file_path(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// Where `span` of `file` is, as the protocol says it.
pub fn location(sources: &SourceMap, file: FileId, span: Span) -> Option<Location> {
    let source = sources.get(file);
    let index = LineIndex::new(&source.text);
    let range = index.range(&source.text, span.start as usize, span.end as usize);
    Some(Location::new(uri(&source.path)?, range))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns count UTF-16 code units: `ç` is one, `😀` two.
    #[test]
    fn positions_count_utf16_units_both_ways() {
        let text = "ab\nçé 😀x\n";
        let index = LineIndex::new(text);
        let x = text.find('x').expect("x");
        assert_eq!(index.position(text, x), Position::new(1, 5));
        assert_eq!(index.offset(text, Position::new(1, 5)), x);
        // Past the end of a line: the line's end; past the last line: the text's end.
        assert_eq!(index.offset(text, Position::new(0, 99)), 2);
        assert_eq!(index.offset(text, Position::new(9, 0)), text.len());
        assert_eq!(index.position(text, 0), Position::new(0, 0));
        // Inside a character: its start.
        let inside = text.find('😀').expect("emoji") + 1;
        assert_eq!(index.position(text, inside), Position::new(1, 3));
    }
}
