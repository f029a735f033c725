//! pest's parse failures → one syntax diagnostic in the language's own words.
//!
//! pest reports the rules and tokens it tried at the furthest position it reached. Each rule is
//! described as the thing a user writes ("a duration such as `15m`"); groups of keywords and
//! operators collapse into one phrase, so a message lists a handful of choices, never rule names.

use pest::error::{Error, ErrorVariant, InputLocation};

use std::sync::Mutex;

use pest::Parser;

use super::{JourneyParser, Rule};
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::source::{FileId, Span};

/// What a rule stands for when it was expected.
fn describe(rule: Rule) -> Option<&'static str> {
    use Rule::*;
    Some(match rule {
        ident | word | name | label => "a name",
        string => "a string",
        int => "a whole number",
        float => "a number",
        duration => "a duration such as `15m` or `1d`",
        time_of_day => "a time of day such as `09:00`",
        timestamp => "a timestamp such as `@2026-12-01T09:00:00Z`",
        percent => "a percentage such as `50%`",
        weekday => "a weekday (`mon` to `sun`)",
        outcome => "an outcome (`goal`, `exited`, `timeout`, `completed` or `archived`)",
        channel | channel_send => {
            "a channel (`email`, `sms`, `push`, `in_app`, `webhook` or `destination`)"
        }
        template_send => "a template name",
        setting => "a setting",
        step | step_kind => "a step",
        test_line => "a test line (`at`, `expect`, `profile`, `start` or `until`)",
        record_type => "`{` and the fields",
        field_decl => "a field such as `name: string`",
        type_expr | type_name | enum_type | list_type => "a type",
        record | record_entry => "`{` and the values",
        block => "`{` and the steps",
        timeout_block => "`timeout {`",
        expr | paren | list | call | history_call | neg => "an expression",
        cmp_op | add_op | mul_op | coalesce_op | is_set | k_is | member | k_and | k_or | k_in => {
            OPERATOR
        }
        entry_on | entry_every | entry_at | entry_when | entry_manual => {
            "an entry rule (`on`, `every`, `at`, `when` or `manual`)"
        }
        trigger | when_trigger | event_trigger => "an event name or `when`",
        wait_for | wait_until | wait_any => "`for`, `until`, `within` or a duration",
        k_import | k_event | k_profile | k_template | k_segment | k_cap | k_journey | k_test => {
            DECLARATION
        }
        EOI => "the end of the file",
        _ => return keyword(rule),
    })
}

const OPERATOR: &str = "an operator";
const DECLARATION: &str =
    "a declaration (`import`, `event`, `profile`, `template`, `segment`, `cap`, `journey` or `test`)";

/// Keyword rules read as the keyword itself.
fn keyword(rule: Rule) -> Option<&'static str> {
    use Rule::*;
    Some(match rule {
        k_wait => "`wait`",
        k_send => "`send`",
        k_set => "`set`",
        k_add => "`add`",
        k_remove => "`remove`",
        k_if => "`if`",
        k_else => "`else`",
        k_branch => "`branch`",
        k_split => "`split`",
        k_start => "`start`",
        k_exit => "`exit`",
        k_not => "`not`",
        k_as => "`as`",
        k_where => "`where`",
        k_within => "`within`",
        k_since => "`since`",
        k_unless => "`unless`",
        k_when => "`when`",
        k_schema => "`schema`",
        k_entry => "`entry`",
        k_timeout => "`timeout`",
        k_hours => "`hours`",
        k_defer | k_skip => "`defer` or `skip`",
        k_on => "`on`",
        k_every => "`every`",
        k_day => "`day`",
        k_at | at_time => "`at`",
        k_per => "`per`",
        k_local => "`local`",
        k_until => "`until`",
        k_for => "`for`",
        k_to => "`to`",
        k_from => "`from`",
        k_transactional => "`transactional`",
        k_list => "`list`",
        k_identify => "`identify`",
        k_no => "`no`",
        k_sends => "`sends`",
        k_entered => "`entered`",
        k_once | k_always | reentry_after | reentry_max => "`once`, `always`, `after` or `max`",
        binding => "`as`",
        where_clause => "`where`",
        within_clause => "`within`",
        since_entry => "`since entry`",
        unless_clause => "`unless`",
        wire_name => "a string",
        else_if | else_block => "`else`",
        field_default => "`=`",
        optional_mark => "`?`",
        _ => return None,
    })
}

/// Punctuation pest tried, as the user would type it. Tokens inside literals (digits, quotes)
/// are left out: the literal's own description covers them.
fn describe_token(token: &str) -> Option<&'static str> {
    Some(match token {
        "{" => "`{`",
        "}" => "`}`",
        "(" => "`(`",
        ")" => "`)`",
        "[" => "`[`",
        "]" => "`]`",
        ":" => "`:`",
        "=" => "`=`",
        ".." => "`..`",
        "|" => "`|`",
        "." | "??" => OPERATOR,
        _ => return None,
    })
}

/// The chunk's parse error with pest's detailed attempts. pest reads its global detail switch
/// when a parse starts; the lock keeps concurrent detailed parses from switching it off under
/// each other (other parses only run slower while it is on).
pub fn detailed_error(chunk_text: &str) -> Error<Rule> {
    static DETAIL: Mutex<()> = Mutex::new(());
    let _guard = DETAIL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    pest::set_error_detail(true);
    let result = JourneyParser::parse(Rule::chunk, chunk_text);
    pest::set_error_detail(false);
    match result {
        Err(error) => error,
        // A parse is deterministic: what failed once fails again.
        Ok(_) => Error::new_from_pos(
            ErrorVariant::CustomError {
                message: "the parser disagreed with itself".into(),
            },
            pest::Position::from_start(chunk_text),
        ),
    }
}

pub fn syntax_error(
    file: FileId,
    text: &str,
    start: usize,
    end: usize,
    error: &Error<Rule>,
) -> Diagnostic {
    let position = match error.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((p, _)) => p,
    };
    let offset = (start + position).min(text.len());
    let mut expected: Vec<&'static str> = Vec::new();
    if let ErrorVariant::ParsingError { positives, .. } = &error.variant {
        expected.extend(positives.iter().filter_map(|r| describe(*r)));
    }
    if let Some(attempts) = error.parse_attempts() {
        for token in attempts.expected_tokens() {
            expected.extend(describe_token(&token.to_string()));
        }
    }
    // A declaration is only worth naming when nothing more specific was expected.
    if expected
        .iter()
        .any(|e| *e != DECLARATION && *e != "the end of the file")
    {
        expected.retain(|e| *e != DECLARATION && *e != "the end of the file");
    }
    if expected.iter().any(|e| e.starts_with("`{` and")) {
        expected.retain(|e| *e != "`{`");
    }
    let mut seen = Vec::new();
    expected.retain(|e| {
        let new = !seen.contains(e);
        seen.push(*e);
        new
    });
    // Operators could always continue an expression; name them last.
    if let Some(i) = expected.iter().position(|e| *e == OPERATOR) {
        let operator = expected.remove(i);
        expected.push(operator);
    }

    let chunk_ended = position >= end - start;
    let found = found_at(text, offset);
    let expectation = join_or(&expected);
    let bare_number = found
        .text
        .as_deref()
        .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()));

    let (message, help) = if expected.contains(&"a duration such as `15m` or `1d`") && bare_number {
        let number = found.text.clone().unwrap_or_default();
        (
            format!("expected a duration such as `15m` or `1d`, found `{number}`"),
            Some(format!(
                "a duration needs a unit: `{number}s`, `{number}m`, `{number}h`, `{number}d` or `{number}w`"
            )),
        )
    } else if expected.is_empty() {
        (format!("unexpected {}", found.describe()), None)
    } else {
        (
            format!("expected {expectation}, found {}", found.describe()),
            None,
        )
    };
    let label = if help.is_some() {
        "a duration needs a unit".to_string()
    } else if expected.is_empty() {
        "not expected here".to_string()
    } else {
        short(&expected)
    };
    let mut diagnostic =
        Diagnostic::new(Code::SyntaxError, message).primary(file, found.span, label);
    if let Some(help) = help {
        diagnostic = diagnostic.help(help);
    } else if let Some(word) = found.text.as_deref().filter(|w| is_reserved(w)) {
        if expected.contains(&"a name") {
            diagnostic = diagnostic.note(format!(
                "`{word}` is a reserved keyword and cannot be used as a name"
            ));
        }
    } else if found.text.as_deref() == Some("=") && expected.contains(&OPERATOR) {
        diagnostic = diagnostic.help("to compare, write `==`");
    }
    if chunk_ended && offset < text.len() {
        diagnostic =
            diagnostic.note("a new declaration starts here; is a closing `}` missing above?");
    }
    diagnostic
}

/// The label under the code: the expectation when there is one, else a plain pointer.
fn short(expected: &[&str]) -> String {
    match expected {
        [one] => format!("expected {one}"),
        _ => "not expected here".to_string(),
    }
}

fn join_or(items: &[&str]) -> String {
    match items.split_last() {
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

struct Found {
    text: Option<String>,
    span: Span,
    end_of_file: bool,
}

impl Found {
    fn describe(&self) -> String {
        match &self.text {
            Some(text) if text.starts_with(['\n', '\r']) => "a line break".to_string(),
            Some(text) => format!("`{text}`"),
            None if self.end_of_file => "the end of the file".to_string(),
            None => "nothing".to_string(),
        }
    }
}

/// The token at `offset`: a word, a number with its unit, a string, or one punctuation mark.
fn found_at(text: &str, offset: usize) -> Found {
    let rest = &text[offset..];
    let Some(first) = rest.chars().next() else {
        return Found {
            text: None,
            span: Span::at(offset),
            end_of_file: true,
        };
    };
    let length = if first.is_ascii_alphanumeric() || first == '_' {
        rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len())
    } else if first == '"' {
        rest[1..]
            .find(['"', '\n'])
            .map_or(rest.len(), |i| i + 2)
            .min(rest.find('\n').unwrap_or(rest.len()))
    } else if ["==", "!=", "<=", ">=", "??", ".."]
        .iter()
        .any(|op| rest.starts_with(op))
    {
        2
    } else {
        first.len_utf8()
    };
    let mut shown = &rest[..length];
    if shown.chars().count() > 40 {
        let cut = shown.char_indices().nth(40).map_or(shown.len(), |(i, _)| i);
        shown = &shown[..cut];
    }
    Found {
        text: Some(shown.to_string()),
        span: Span::new(offset, offset + length),
        end_of_file: false,
    }
}

fn is_reserved(word: &str) -> bool {
    super::RESERVED_WORDS.contains(&word)
}
