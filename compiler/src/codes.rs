//! The diagnostic codes: a stable id, a kebab-case name, a default severity, a one-line summary
//! and an explanation page (`compiler/explain/<ID>.md`, shown by `journeyc explain`).
//!
//! **Invariant:** a code, once released, keeps its id and meaning; retired codes are not reused.

use crate::diagnostic::Severity;

macro_rules! codes {
    ($( $variant:ident = $id:literal, $name:literal, $severity:ident, $summary:literal; )*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $( $variant, )*
        }

        impl Code {
            /// Every code, in id order.
            pub const ALL: &'static [Code] = &[ $( Code::$variant, )* ];

            /// The stable id, such as `E0101`.
            pub fn id(self) -> &'static str {
                match self { $( Code::$variant => $id, )* }
            }

            /// The kebab-case name, such as `syntax-error`.
            pub fn name(self) -> &'static str {
                match self { $( Code::$variant => $name, )* }
            }

            pub fn severity(self) -> Severity {
                match self { $( Code::$variant => Severity::$severity, )* }
            }

            pub fn summary(self) -> &'static str {
                match self { $( Code::$variant => $summary, )* }
            }

            /// The explanation page in Markdown: what, why, an example and the fix.
            pub fn explanation(self) -> &'static str {
                match self {
                    $( Code::$variant => include_str!(concat!("../explain/", $id, ".md")), )*
                }
            }
        }
    };
}

codes! {
    ImportNotFound = "E0001", "import-not-found", Error, "an imported file does not exist or cannot be read";
    ImportCycle = "E0002", "import-cycle", Error, "files import each other in a cycle";
    InvalidUtf8 = "E0100", "invalid-utf8", Error, "a source file is not valid UTF-8";
    SyntaxError = "E0101", "syntax-error", Error, "the text does not follow the grammar";
    UnterminatedString = "E0102", "unterminated-string", Error, "a string literal has no closing quote on its line";
    InvalidEscape = "E0103", "invalid-escape", Error, "a string contains an unknown escape sequence";
    NestingTooDeep = "E0104", "nesting-too-deep", Error, "brackets or blocks are nested deeper than the compiler allows";
    InputTooLarge = "E0105", "input-too-large", Error, "a line or a file is larger than the compiler accepts";
    ChainedComparison = "E0106", "chained-comparison", Error, "comparisons such as `a < b < c` do not chain";
    InvalidLiteral = "E0107", "invalid-literal", Error, "a duration, time, timestamp, number or percentage is out of range or malformed";
    SettingAfterStep = "E0108", "setting-after-step", Error, "a journey setting appears after the first step";
    UnknownChannel = "E0109", "unknown-channel", Error, "a channel name is not one of the language's channels";
    DuplicateSetting = "E0110", "duplicate-setting", Error, "a journey setting is given twice";
    MissingEntry = "E0111", "missing-entry", Error, "a journey has no `entry` setting";
    UnknownType = "E0112", "unknown-type", Error, "a field's type is not a type of the language";
}

impl Code {
    /// Looks a code up by id (`E0101`, any case) or name (`syntax-error`).
    pub fn parse(text: &str) -> Option<Code> {
        let text = text.trim();
        Code::ALL
            .iter()
            .copied()
            .find(|c| c.id().eq_ignore_ascii_case(text) || c.name() == text)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}
