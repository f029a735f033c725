//! The journey compiler: `.journey` sources → checked programs, with diagnostics.
//!
//! Pipeline (one module per stage): `source` (files and positions) → `parse` (text → AST)
//! → `workspace` (follow imports, whole-program file set) → `check` (names, types, static
//! guarantees → `check::Program`) → later: lower, emit.
//! Every stage reports `diagnostic::Diagnostic`s; `render` turns them into text for people and
//! machines. The library does no I/O of its own: sources arrive through `workspace::SourceProvider`.

pub mod ast;
pub mod check;
pub mod codes;
pub mod diagnostic;
pub mod flow;
pub mod format;
pub mod graph;
pub mod index;
pub mod lower;
pub mod parse;
pub mod render;
pub mod simulate;
pub mod source;
pub mod suggest;
pub mod testing;
pub mod workspace;

pub use codes::Code;

use std::path::PathBuf;

/// Loads, parses and checks: the whole front end. Semantic checks run only when every file
/// parsed, so one syntax error does not cascade into unknown-name errors.
pub fn analyse(provider: &dyn workspace::SourceProvider, roots: &[PathBuf]) -> Analysis {
    analyse_with(provider, roots, &mut workspace::ParseCache::default())
}

/// `analyse`, parsing again only the files whose text changed since `cache` saw them.
pub fn analyse_with(
    provider: &dyn workspace::SourceProvider,
    roots: &[PathBuf],
    cache: &mut workspace::ParseCache,
) -> Analysis {
    let mut loaded = workspace::load_with(provider, roots, cache);
    if loaded.has_errors() {
        let diagnostics = std::mem::take(&mut loaded.diagnostics);
        // The items that parsed are checked all the same, for an editor to navigate; what the
        // check finds is left out, since everything naming an item that did not parse would
        // be reported as unknown.
        let (partial, _) = check::check(&loaded);
        return Analysis {
            workspace: loaded,
            program: None,
            partial: Some(partial),
            diagnostics,
        };
    }
    let (program, found) = check::check(&loaded);
    let mut diagnostics = std::mem::take(&mut loaded.diagnostics);
    diagnostics.extend(found);
    diagnostic::sort(&mut diagnostics);
    Analysis {
        workspace: loaded,
        program: Some(program),
        partial: None,
        diagnostics,
    }
}

/// What `analyse` found.
#[derive(Debug)]
pub struct Analysis {
    pub workspace: workspace::Workspace,
    /// The checked program, when every file parsed.
    pub program: Option<check::Program>,
    /// Otherwise, the program checked from the items that did parse (an item with a syntax
    /// error is left out): what an editor navigates while someone types. Never compiled.
    pub partial: Option<check::Program>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Analysis {
    /// The program to look names up in: the checked one, else the partial one.
    pub fn navigable(&self) -> Option<&check::Program> {
        self.program.as_ref().or(self.partial.as_ref())
    }
}
pub use diagnostic::{Diagnostic, Label, Severity};
pub use source::{FileId, SourceMap, Span};
