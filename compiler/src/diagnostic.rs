//! The one diagnostics model: every stage reports problems as `Diagnostic`s.
//!
//! **Invariant:** nothing outside `render` formats a diagnostic for people or machines, and only
//! the language server converts them to LSP types.

use crate::codes::Code;
use crate::source::{FileId, Span};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// A place in a file with what to say about it. The primary label is where the problem is;
/// secondary labels give context (the other definition, the import that started a cycle).
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub file: FileId,
    pub span: Span,
    pub message: String,
    pub primary: bool,
}

/// A change that fixes a diagnostic: its edits, applied together.
#[derive(Debug, Clone, PartialEq)]
pub struct Fix {
    /// What it does, in the imperative: "replace with `ProductAdded`".
    pub title: String,
    pub edits: Vec<Edit>,
}

/// Replace `span` of `file` with `text` (an empty span inserts).
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    pub file: FileId,
    pub span: Span,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    /// The first primary label is the diagnostic's location. May be empty for file-less problems.
    pub labels: Vec<Label>,
    pub notes: Vec<String>,
    pub help: Option<String>,
    /// Machine-applicable fixes (the language server offers them as quick fixes).
    pub fixes: Vec<Fix>,
}

impl Diagnostic {
    /// A diagnostic with the code's own severity.
    pub fn new(code: Code, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: code.severity(),
            message: message.into(),
            labels: Vec::new(),
            notes: Vec::new(),
            help: None,
            fixes: Vec::new(),
        }
    }

    pub fn primary(mut self, file: FileId, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            file,
            span,
            message: message.into(),
            primary: true,
        });
        self
    }

    pub fn secondary(mut self, file: FileId, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            file,
            span,
            message: message.into(),
            primary: false,
        });
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// A fix of one edit: replace `span` of `file` with `text`.
    pub fn fix(
        mut self,
        title: impl Into<String>,
        file: FileId,
        span: Span,
        text: impl Into<String>,
    ) -> Diagnostic {
        self.fixes.push(Fix {
            title: title.into(),
            edits: vec![Edit {
                file,
                span,
                text: text.into(),
            }],
        });
        self
    }

    /// "did you mean SHOWN?" with the fix that writes `replacement` over `span` (`shown` is
    /// how the suggestion reads in prose: `` `name` `` or `"value"`).
    pub fn did_you_mean(
        self,
        file: FileId,
        span: Span,
        shown: &str,
        replacement: impl Into<String>,
    ) -> Diagnostic {
        self.help(format!("did you mean {shown}?")).fix(
            format!("replace with {shown}"),
            file,
            span,
            replacement,
        )
    }

    /// The label that locates the diagnostic.
    pub fn location(&self) -> Option<&Label> {
        self.labels
            .iter()
            .find(|l| l.primary)
            .or_else(|| self.labels.first())
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Sorts diagnostics by file, position and code so output never depends on discovery order.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by_key(|d| {
        let location = d.location().map(|l| (l.file, l.span.start, l.span.end));
        (location, d.code, d.message.clone())
    });
}
