//! Source text → `ast::Module` and syntax diagnostics.
//!
//! The stage runs in three steps: `split` cuts the text into top-level items and rejects what
//! is unsafe to parse; pest parses each item with `grammar/journey.pest`; `build` turns the parse
//! tree into the typed AST, and `errors` turns pest's failures into diagnostics in the language's
//! own words.
//!
//! **Invariant:** pest types never leave this module; the rest of the compiler sees only `ast`.
//! **Invariant:** parsing never panics and never overflows the stack, whatever the input.

mod build;
mod errors;
mod split;

use pest_derive::Parser;

use crate::ast::Module;
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::source::{FileId, Span, MAX_FILE_BYTES};

pub use split::{MAX_LINE_BYTES, MAX_NESTING};

#[derive(Parser)]
#[grammar = "../grammar/journey.pest"]
struct JourneyParser;

/// Words that are never a name (LANGUAGE.md §1); the grammar's `reserved` rule lists the same.
pub const RESERVED_WORDS: [&str; 32] = [
    "import", "event", "profile", "template", "segment", "cap", "journey", "test", "wait", "send",
    "set", "add", "remove", "if", "else", "branch", "split", "start", "exit", "and", "or", "not",
    "in", "as", "where", "within", "since", "unless", "when", "true", "false", "now",
];

/// Expressions may have at most this many nodes: it bounds the depth of every later recursion.
pub const MAX_EXPRESSION_NODES: usize = 1024;

/// Parses one file. Always returns a module: the items that parsed, with diagnostics for the rest.
pub fn parse(file: FileId, text: &str) -> (Module, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut module = Module {
        file,
        items: Vec::new(),
    };
    if text.len() > MAX_FILE_BYTES {
        diagnostics.push(
            Diagnostic::new(
                Code::InputTooLarge,
                format!(
                    "this file is {} bytes long; files may be at most {MAX_FILE_BYTES} bytes",
                    text.len()
                ),
            )
            .primary(file, Span::at(0), "the file starts here"),
        );
        return (module, diagnostics);
    }
    // Detailed attempts name the punctuation that was expected (`}`, `:`); set every time so the
    // result never depends on which thread parsed first.
    pest::set_error_detail(true);
    for chunk in split::split(file, text, &mut diagnostics) {
        if chunk.skip {
            continue;
        }
        build::parse_chunk(file, text, chunk.start, chunk.end, &mut module.items, &mut diagnostics);
    }
    (module, diagnostics)
}

/// Bytes → text, or a diagnostic naming the first invalid byte's line and column.
pub fn decode(file: FileId, bytes: Vec<u8>) -> Result<String, (String, Diagnostic)> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(error) => {
            let valid_up_to = error.utf8_error().valid_up_to();
            let bytes = error.into_bytes();
            let byte = bytes[valid_up_to];
            // Keep the valid prefix so the diagnostic can show where the bad byte is.
            let prefix = String::from_utf8_lossy(&bytes[..valid_up_to]).into_owned();
            let line = prefix.matches('\n').count() + 1;
            let column = prefix.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            let diagnostic = Diagnostic::new(
                Code::InvalidUtf8,
                format!(
                    "this file is not valid UTF-8: byte 0x{byte:02X} at line {line}, column {column} (byte offset {valid_up_to})"
                ),
            )
            .primary(file, Span::at(valid_up_to), "the invalid byte is here")
            .help("save the file as UTF-8");
            Err((prefix, diagnostic))
        }
    }
}
