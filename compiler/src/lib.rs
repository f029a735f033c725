//! The journey compiler: `.journey` sources → checked programs, with diagnostics.
//!
//! Pipeline (one module per stage): `source` (files and positions) → `parse` (text → AST)
//! → `workspace` (follow imports, whole-program file set) → later: check, lower, emit.
//! Every stage reports `diagnostic::Diagnostic`s; `render` turns them into text for people and
//! machines. The library does no I/O of its own: sources arrive through `workspace::SourceProvider`.

pub mod ast;
pub mod codes;
pub mod diagnostic;
pub mod parse;
pub mod render;
pub mod source;
pub mod suggest;
pub mod workspace;

pub use codes::Code;
pub use diagnostic::{Diagnostic, Label, Severity};
pub use source::{FileId, SourceMap, Span};
