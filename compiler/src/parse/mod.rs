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

/// Expressions may have at most this many nodes (bounds the work of building and dropping one).
pub const MAX_EXPRESSION_NODES: usize = 1024;
/// Expressions may nest at most this deep (bounds the recursion of every later stage).
pub const MAX_EXPRESSION_DEPTH: usize = 256;

/// Parses one file. Always returns a module: the items that parsed, with diagnostics for the rest.
pub fn parse(file: FileId, text: &str) -> (Module, Vec<Diagnostic>) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    parse_with_threads(file, text, threads)
}

/// Files with at least this many items are parsed on several threads.
const PARALLEL_CHUNKS: usize = 64;
/// Files nested deeper than this are parsed on threads with `PARSE_STACK_BYTES` of stack:
/// pest descends about a dozen rules per bracket, and deep (but allowed) nesting could exhaust
/// a small stack, such as a test thread's 2 MiB in a debug build.
const SHALLOW_NESTING: usize = 12;
const PARSE_STACK_BYTES: usize = 64 << 20;

/// `parse` with at most `threads` threads. Items are independent, so large files are split
/// into contiguous runs of items parsed side by side and joined in order: the result is the
/// same for any number of threads.
pub fn parse_with_threads(file: FileId, text: &str, threads: usize) -> (Module, Vec<Diagnostic>) {
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
    let chunks: Vec<split::Chunk> = split::split(file, text, &mut diagnostics)
        .into_iter()
        .filter(|c| !c.skip)
        .collect();
    let parse_run = |run: &[split::Chunk]| {
        let mut items = Vec::new();
        let mut found = Vec::new();
        for chunk in run {
            build::parse_chunk(file, text, chunk.start, chunk.end, &mut items, &mut found);
        }
        (items, found)
    };
    let deep = chunks.iter().any(|c| c.depth > SHALLOW_NESTING);
    let workers = if chunks.len() >= PARALLEL_CHUNKS {
        threads.clamp(1, 16)
    } else {
        1
    };
    if workers == 1 && !deep {
        let (items, found) = parse_run(&chunks);
        module.items = items;
        diagnostics.extend(found);
        return (module, diagnostics);
    }
    let run_length = chunks.len().div_ceil(workers).max(1);
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .chunks(run_length)
            .map(|run| {
                let spawned = std::thread::Builder::new()
                    .name("journey-parse".into())
                    .stack_size(PARSE_STACK_BYTES)
                    .spawn_scoped(scope, move || parse_run(run));
                (run, spawned)
            })
            .collect();
        handles
            .into_iter()
            .map(|(run, spawned)| match spawned {
                Ok(handle) => handle.join().unwrap_or_else(|_| parse_run(run)),
                // No thread to be had: parse here, as deep as this stack allows.
                Err(_) => parse_run(run),
            })
            .collect()
    });
    for (items, found) in results {
        module.items.extend(items);
        diagnostics.extend(found);
    }
    (module, diagnostics)
}

/// A file's bytes as text.
pub struct Decoded {
    /// The whole text, or the valid prefix when the file is not UTF-8.
    pub text: String,
    /// Names the first invalid byte's line and column.
    pub error: Option<Diagnostic>,
}

/// Bytes → text; a file that is not UTF-8 keeps its valid prefix, so the diagnostic can show
/// where the bad byte is.
pub fn decode(file: FileId, bytes: Vec<u8>) -> Decoded {
    let error = match String::from_utf8(bytes) {
        Ok(text) => return Decoded { text, error: None },
        Err(error) => error,
    };
    let valid_up_to = error.utf8_error().valid_up_to();
    let bytes = error.into_bytes();
    let byte = bytes.get(valid_up_to).copied().unwrap_or_default();
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
    Decoded {
        text: prefix,
        error: Some(diagnostic),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grammar's `reserved` rule and `RESERVED_WORDS` list the same words.
    #[test]
    fn reserved_words_match_the_grammar() {
        for word in RESERVED_WORDS {
            let (_, diagnostics) = parse(FileId(0), &format!("segment {word} = true"));
            assert_eq!(diagnostics.len(), 1, "`{word}` must be reserved");
            for longer in [format!("{word}x"), format!("{word}_1"), format!("x{word}")] {
                let (_, diagnostics) = parse(FileId(0), &format!("segment {longer} = true"));
                assert!(diagnostics.is_empty(), "`{longer}` must be a name");
            }
        }
        for word in [
            "timezone", "email", "list", "title", "entry", "in_app", "count",
        ] {
            let (_, diagnostics) = parse(FileId(0), &format!("segment {word} = true"));
            assert!(
                diagnostics.is_empty(),
                "`{word}` is only a keyword in its position"
            );
        }
    }
}
