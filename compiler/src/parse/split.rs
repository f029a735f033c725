//! Source text → item chunks, before pest sees anything.
//!
//! Splitting at top-level declarations gives error recovery at item boundaries: one broken journey
//! does not hide the errors of the next. The same scan catches what would make a recursive-descent
//! parser misbehave (deep nesting, giant lines) and what it would report badly (unterminated
//! strings), so pest only ever parses chunks that are safe to parse.

use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::source::{FileId, Span};

/// Brackets and braces nest at most this deep in one item.
pub const MAX_NESTING: usize = 64;
/// Lines longer than this are refused (a journey line is rarely over 200 bytes).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The words that start a top-level declaration.
const ITEM_KEYWORDS: [&str; 8] = [
    "import", "event", "profile", "template", "segment", "cap", "journey", "test",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub start: usize,
    pub end: usize,
    /// A problem was found and reported: the chunk is not parsed.
    pub skip: bool,
    /// The deepest bracket nesting in the chunk.
    pub depth: usize,
}

/// Splits `text` into chunks that each start at a top-level keyword (the first chunk may start
/// with anything), reporting lexical problems. Chunks cover the whole text, in order.
pub fn split(file: FileId, text: &str, diagnostics: &mut Vec<Diagnostic>) -> Vec<Chunk> {
    let bytes = text.as_bytes();
    let mut chunks = vec![Chunk {
        start: 0,
        end: text.len(),
        skip: false,
        depth: 0,
    }];
    let mut depth = 0usize;
    let mut line_start = 0usize;
    let mut i = 0usize;
    let mut at_line_start = true;

    while i < bytes.len() {
        if at_line_start {
            at_line_start = false;
            let indent = bytes[i..]
                .iter()
                .take_while(|b| **b == b' ' || **b == b'\t')
                .count();
            if let Some(keyword) = item_keyword_at(bytes, i + indent) {
                // Inside braces, only an unindented keyword starts a new item (a `}` is probably
                // missing above it); `profile` also opens a test's initial traits, so it must be
                // at depth 0.
                if depth == 0 || (indent == 0 && keyword != "profile") {
                    if let Some(current) = chunks.last_mut() {
                        current.end = i;
                    }
                    if chunks.last().is_some_and(|c| c.start == c.end) {
                        chunks.pop();
                    }
                    chunks.push(Chunk {
                        start: i,
                        end: text.len(),
                        skip: false,
                        depth: 0,
                    });
                    depth = 0;
                }
            }
        }
        match bytes[i] {
            b'\n' => {
                check_line(file, text, line_start, i, &mut chunks, diagnostics);
                line_start = i + 1;
                at_line_start = true;
                i += 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i += bytes[i..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .unwrap_or(bytes.len() - i);
            }
            b'"' => i = skip_string(file, text, i, &mut chunks, diagnostics),
            b'{' | b'(' | b'[' => {
                depth += 1;
                if let Some(chunk) = chunks.last_mut() {
                    chunk.depth = chunk.depth.max(depth);
                }
                if depth == MAX_NESTING + 1 {
                    poison(&mut chunks);
                    diagnostics.push(
                        Diagnostic::new(
                            Code::NestingTooDeep,
                            format!("brackets are nested more than {MAX_NESTING} deep"),
                        )
                        .primary(file, Span::new(i, i + 1), "this bracket is too deep")
                        .help("split the expression or the block into smaller parts, for example with a `segment`"),
                    );
                }
                i += 1;
            }
            b'}' | b')' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    check_line(file, text, line_start, text.len(), &mut chunks, diagnostics);
    chunks
}

fn item_keyword_at(bytes: &[u8], at: usize) -> Option<&'static str> {
    let rest = &bytes[at.min(bytes.len())..];
    ITEM_KEYWORDS.into_iter().find(|keyword| {
        rest.starts_with(keyword.as_bytes())
            && matches!(
                rest.get(keyword.len()),
                Some(b' ' | b'\t' | b'{' | b'"' | b'\r' | b'\n') | None
            )
    })
}

fn poison(chunks: &mut [Chunk]) {
    if let Some(chunk) = chunks.last_mut() {
        chunk.skip = true;
    }
}

/// Skips a string literal starting at the quote at `start`; returns the offset after it.
fn skip_string(
    file: FileId,
    text: &str,
    start: usize,
    chunks: &mut [Chunk],
    diagnostics: &mut Vec<Diagnostic>,
) -> usize {
    let bytes = text.as_bytes();
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if i + 1 < bytes.len() && bytes[i + 1] != b'\n' => i += 2,
            b'"' => return i + 1,
            b'\n' => break,
            _ => i += 1,
        }
    }
    poison(chunks);
    let end = text[start..i].trim_end_matches('\r').len() + start;
    diagnostics.push(
        Diagnostic::new(Code::UnterminatedString, "this string has no closing quote")
            .primary(file, Span::new(start, end), "the string starts here")
            .help("close it with `\"` on the same line; write a line break as `\\n`"),
    );
    i
}

fn check_line(
    file: FileId,
    text: &str,
    start: usize,
    end: usize,
    chunks: &mut [Chunk],
    diagnostics: &mut Vec<Diagnostic>,
) {
    let length = end - start;
    if length > MAX_LINE_BYTES {
        poison(chunks);
        let mut label_end = (start + 1).min(end);
        while !text.is_char_boundary(label_end) {
            label_end += 1;
        }
        diagnostics.push(
            Diagnostic::new(
                Code::InputTooLarge,
                format!(
                    "this line is {length} bytes long; lines may be at most {MAX_LINE_BYTES} bytes"
                ),
            )
            .primary(file, Span::new(start, label_end), "the line starts here")
            .help("break the line; long lists and records may span many lines"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(text: &str) -> Vec<usize> {
        let mut diagnostics = Vec::new();
        split(FileId(0), text, &mut diagnostics)
            .iter()
            .map(|c| c.start)
            .collect()
    }

    #[test]
    fn splits_at_top_level_keywords_only() {
        let text = "event A { x: int }\njourney j {\n  profile {}\n}\nsegment s = true\n";
        assert_eq!(starts(text), vec![0, 19, 46]);
    }

    #[test]
    fn an_unindented_keyword_inside_braces_starts_a_new_item() {
        let text = "journey j {\n  wait 1d\njourney k {\n}\n";
        assert_eq!(starts(text), vec![0, 22]);
    }

    #[test]
    fn deep_nesting_is_reported_once_and_skipped() {
        let text = format!("segment s = {}1{}", "(".repeat(100), ")".repeat(100));
        let mut diagnostics = Vec::new();
        let chunks = split(FileId(0), &text, &mut diagnostics);
        assert_eq!(diagnostics.len(), 1);
        assert!(chunks[0].skip);
    }
}
