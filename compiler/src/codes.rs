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
    DuplicateName = "E0201", "duplicate-name", Error, "a name is defined twice where it must be unique";
    UnknownEvent = "E0202", "unknown-event", Error, "an event name is not declared or imported";
    UnknownField = "E0203", "unknown-field", Error, "a record, event or profile has no such field";
    UnknownTemplate = "E0204", "unknown-template", Error, "a template name is not declared";
    UnknownName = "E0205", "unknown-name", Error, "a name is not a binding, segment, field, goal, exit or step in scope";
    UnknownJourney = "E0206", "unknown-journey", Error, "a journey name is not declared";
    UnknownFunction = "E0207", "unknown-function", Error, "a function is not one of the built-in functions";
    MissingArgument = "E0208", "missing-argument", Error, "a template argument or required field is missing";
    UnknownArgument = "E0209", "unknown-argument", Error, "a template argument or record field is not declared";
    TypeMismatch = "E0301", "type-mismatch", Error, "a value has a type other than the one needed";
    EnumValue = "E0302", "enum-value", Error, "a string is compared with or given to an enum that does not have it";
    OptionalValue = "E0303", "optional-value", Error, "a value that may be absent is used where a value is needed";
    InvalidTimezone = "E0304", "invalid-timezone", Error, "a time zone literal is not an IANA zone name";
    SinceEntryNotAllowed = "E0305", "since-entry-not-allowed", Error, "`since entry` is used where there is no entry";
    InvalidWait = "E0306", "invalid-wait", Error, "a wait has a `within` or blocks it cannot use";
    StartNotManual = "E0307", "start-not-manual", Error, "`start` names a journey without `entry manual`";
    StartCycle = "E0308", "start-cycle", Error, "journeys start each other in a cycle";
    UnmappableSchema = "E0309", "unmappable-schema", Error, "a JSON-Schema construct has no type in the language";
    InvalidJson = "E0310", "invalid-json", Error, "a tracking plan is not valid JSON";
    SegmentCycle = "E0311", "segment-cycle", Error, "segments are defined in terms of each other in a cycle";
    MissingWithin = "E0401", "missing-within", Error, "a wait may wait forever: no `within` and no journey `timeout`";
    SplitWeights = "E0402", "split-weights", Error, "the weights of a split do not add up to 100%";
    UnreachableAfterTimeout = "W0401", "unreachable-after-timeout", Warning, "a step is reached only after the journey's timeout";
    UnreachableArm = "W0402", "unreachable-arm", Warning, "a branch arm is implied by earlier arms and never taken";
    OverlappingArms = "W0403", "overlapping-arms", Warning, "two branch arms can both hold; the first wins";
    UnreachableAfterExit = "W0404", "unreachable-after-exit", Warning, "a step comes after every path has ended";
    UncorrelatedTrigger = "W0405", "uncorrelated-trigger", Warning, "a correlated journey never compares its key in goals, exits or waits";
    UnusedTemplate = "W0406", "unused-template", Warning, "a template is never sent";
    UnusedSegment = "W0407", "unused-segment", Warning, "a segment is never used";
    UnusedBinding = "W0408", "unused-binding", Warning, "an `as` binding is never read";
    FieldShadowsName = "W0409", "field-shadows-name", Warning, "inside `where`, a field hides a binding or segment of the same name";
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
