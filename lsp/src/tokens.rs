//! A document's text (+ the workspace's name index) → semantic tokens: comments, strings,
//! numbers, keywords, and names by what they stand for.

use journey_compiler::index::{Index, Symbol};
use journey_compiler::parse::RESERVED_WORDS;
use journey_compiler::source::FileId;
use tower_lsp_server::ls_types::{SemanticToken, SemanticTokenType, SemanticTokensLegend};

use crate::complete;
use crate::convert::LineIndex;

/// The token types, in the order of the legend (a token's type is its index here).
pub const TYPES: [SemanticTokenType; 12] = [
    SemanticTokenType::COMMENT,
    SemanticTokenType::STRING,
    SemanticTokenType::NUMBER,
    SemanticTokenType::KEYWORD,
    SemanticTokenType::EVENT,
    SemanticTokenType::PROPERTY,
    SemanticTokenType::STRUCT,
    SemanticTokenType::VARIABLE,
    SemanticTokenType::CLASS,
    SemanticTokenType::ENUM_MEMBER,
    SemanticTokenType::PARAMETER,
    SemanticTokenType::FUNCTION,
];

const COMMENT: u32 = 0;
const STRING: u32 = 1;
const NUMBER: u32 = 2;
const KEYWORD: u32 = 3;

pub fn legend() -> SemanticTokensLegend {
    SemanticTokensLegend {
        token_types: TYPES.to_vec(),
        token_modifiers: Vec::new(),
    }
}

/// Words that are keywords where they stand, besides the reserved ones and the settings and
/// steps that completion offers.
const CONTEXTUAL: [&str; 39] = [
    "quiet",
    "hours",
    "on",
    "every",
    "day",
    "at",
    "manual",
    "once",
    "always",
    "after",
    "max",
    "per",
    "until",
    "local",
    "for",
    "to",
    "from",
    "defer",
    "skip",
    "schema",
    "transactional",
    "expect",
    "identify",
    "sends",
    "no",
    "entered",
    "completed",
    "exited",
    "archived",
    "mon",
    "tue",
    "wed",
    "thu",
    "fri",
    "sat",
    "sun",
    "is",
    "set",
    "profile",
];

fn is_keyword(word: &str) -> bool {
    RESERVED_WORDS.contains(&word)
        || CONTEXTUAL.contains(&word)
        || complete::SETTINGS.contains(&word)
        || complete::STEPS.contains(&word)
}

fn token_type(symbol: &Symbol) -> u32 {
    match symbol {
        Symbol::Event(_) => 4,
        Symbol::EventField { .. } | Symbol::ProfileField(_) | Symbol::TemplateParam { .. } => 5,
        Symbol::Template(_) => 6,
        Symbol::Segment(_) => 7,
        Symbol::Journey(_) => 8,
        Symbol::Outcome { .. } => 9,
        Symbol::Binding { .. } => 10,
        Symbol::Label { .. } => 11,
    }
}

/// The tokens of `text` (file `file` of the index, when there is one), encoded as the protocol
/// wants them: each relative to the previous one, positions in UTF-16 units.
pub fn tokens(text: &str, index: Option<(&Index, FileId)>) -> Vec<SemanticToken> {
    let names: Vec<(u32, u32, u32)> = index
        .map(|(index, file)| {
            index
                .occurrences
                .iter()
                .filter(|o| o.file == file)
                .map(|o| (o.span.start, o.span.end, token_type(&o.symbol)))
                .collect()
        })
        .unwrap_or_default();
    let bytes = text.as_bytes();
    let mut found: Vec<(usize, usize, u32)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                found.push((start, i, COMMENT));
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(bytes.len());
                while !text.is_char_boundary(i) {
                    i += 1;
                }
                found.push((start, i, STRING));
            }
            b'@' | b'0'..=b'9' => {
                i += 1;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || b".:%-+".contains(&bytes[i]))
                {
                    i += 1;
                }
                found.push((start, i, NUMBER));
            }
            b if b.is_ascii_alphabetic() || b == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &text[start..i];
                let named = names
                    .iter()
                    .find(|(s, e, _)| *s as usize == start && *e as usize == i)
                    .map(|(_, _, t)| *t);
                match named {
                    Some(kind) => found.push((start, i, kind)),
                    None if is_keyword(word) => found.push((start, i, KEYWORD)),
                    None => {}
                }
            }
            _ => {
                // Any other character, whole (it may be longer than a byte).
                i += text[i..].chars().next().map_or(1, char::len_utf8);
            }
        }
    }
    let lines = LineIndex::new(text);
    let mut out = Vec::with_capacity(found.len());
    let (mut line, mut column) = (0, 0);
    for (start, end, kind) in found {
        let from = lines.position(text, start);
        let to = lines.position(text, end.min(text.len()));
        // Tokens do not span lines (comments and strings end at the line's end).
        let length = if to.line == from.line {
            to.character - from.character
        } else {
            continue;
        };
        let delta_line = from.line - line;
        let delta_start = if delta_line == 0 {
            from.character - column
        } else {
            from.character
        };
        out.push(SemanticToken {
            delta_line,
            delta_start,
            length,
            token_type: kind,
            token_modifiers_bitset: 0,
        });
        (line, column) = (from.line, from.character);
    }
    out
}
