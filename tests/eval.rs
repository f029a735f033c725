//! The expression evaluator against the rules of LANGUAGE.md §3–§4: each case compiles a
//! condition as a journey's audience and evaluates it over a profile, with both interpreters
//! (`eval::eval` and the block's `tree::Tree`).

use std::collections::HashMap;

use journey_compiler::workspace::MemoryFiles;
use journey_runtime::bytecode::{verify, Program};
use journey_runtime::eval::{eval, Context, HistoryOp, Prepared};
use journey_runtime::value::Value;

const PROFILE: &str = r#"
profile {
  plan: "free" | "paid"
  points: int = 0
  score: float?
  name: string?
  tags: list<string> = []
  country: string
  joined: timestamp
}
"#;

fn compile(condition: &str) -> Program {
    let source = format!("{PROFILE}\nsegment s = {condition}\njourney j {{ entry manual  audience s  timezone \"Europe/Istanbul\" }}\n");
    let mut files = MemoryFiles::new();
    files.insert("case.journey", source);
    let analysis = journey_compiler::analyse(&files, &["case.journey".into()]);
    let errors: Vec<String> = analysis
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.message.clone())
        .collect();
    assert!(errors.is_empty(), "`{condition}`: {errors:?}");
    let program = journey_compiler::lower::lower(
        &analysis.workspace,
        analysis.program.as_ref().expect("checked"),
    );
    verify::verify(&program).expect("verifies");
    program
}

struct Profile<'p> {
    program: &'p Program,
    prepared: &'p Prepared<'p>,
    traits: HashMap<&'static str, Value>,
}

impl Context for Profile<'_> {
    fn event_field(&self, _: u16) -> Value {
        Value::Absent
    }
    fn profile_field(&self, field: u16) -> Value {
        let name = self
            .program
            .record_fields(self.program.profile)
            .and_then(|f| f.get(usize::from(field)))
            .map_or("", |f| self.program.string(f.name));
        match self.traits.get(name) {
            Some(value) => value.clone(),
            None => self.prepared.unset_profile(u32::from(field)),
        }
    }
    fn slot(&self, _: u16) -> Value {
        Value::Absent
    }
    fn now(&self) -> i64 {
        1_767_225_600_000 // 2026-01-01T00:00:00Z
    }
    fn entered_at(&self) -> i64 {
        self.now()
    }
    fn history(&self, _: u16, _: HistoryOp) -> Value {
        Value::Absent
    }
    fn zone(&self) -> chrono_tz::Tz {
        chrono_tz::Europe::Istanbul
    }
}

fn evaluate(condition: &str, traits: &[(&'static str, Value)]) -> Value {
    let program = compile(condition);
    let audience = program.journeys[0].audience as usize;
    let block = program.blocks[audience];
    let prepared = Prepared::new(&program);
    let context = Profile {
        program: &program,
        prepared: &prepared,
        traits: traits.iter().cloned().collect(),
    };
    // Both interpreters follow the rules: the stack one and the tree the VM runs.
    let by_stack = eval(&prepared, &block, &context);
    let by_tree = prepared
        .tree(audience as u32)
        .map(|tree| tree.eval(&context));
    assert_eq!(
        format!("{by_tree:?}"),
        format!("{:?}", Some(&by_stack)),
        "`{condition}`: the tree and the stack disagree"
    );
    by_stack
}

/// 2026-01-01T09:00:00Z: noon in Istanbul, a Thursday.
const JOINED: i64 = 1_767_258_000_000;

/// A condition, the traits it is evaluated over, and its value.
type Case = (&'static str, Vec<(&'static str, Value)>, Value);

#[test]
fn conditions_follow_the_language_rules() {
    use Value::*;
    let cases: Vec<Case> = vec![
        // Defaults are read while the traits lack a field.
        ("profile.points > 10", vec![], Bool(false)),
        ("profile.points > 10", vec![("points", Int(11))], Bool(true)),
        // A missing field makes the whole condition false, whatever surrounds it.
        ("profile.country == \"US\"", vec![], Missing),
        ("profile.country == \"US\" or true", vec![], Missing),
        ("not (profile.country == \"US\")", vec![], Missing),
        (
            "profile.country == \"US\"",
            vec![("country", Value::str("US"))],
            Bool(true),
        ),
        // An absent optional is a value: `??` and `is set` handle it.
        ("(profile.score ?? 1.5) > 1.0", vec![], Bool(true)),
        ("profile.score == 2.0", vec![], Bool(false)),
        ("profile.name is set", vec![], Bool(false)),
        ("profile.name is not set", vec![], Bool(true)),
        ("\"vip\" in profile.tags", vec![], Bool(false)),
        (
            "\"vip\" in profile.tags",
            vec![("tags", List(vec![Value::str("vip")].into()))],
            Bool(true),
        ),
        (
            "profile.plan in [\"paid\"]",
            vec![("plan", Value::str("paid"))],
            Bool(true),
        ),
        // Time in the journey's zone.
        (
            "hour(profile.joined) == 12",
            vec![("joined", Timestamp(JOINED))],
            Bool(true),
        ),
        (
            "weekday(profile.joined) == \"thu\"",
            vec![("joined", Timestamp(JOINED))],
            Bool(true),
        ),
        (
            "date(profile.joined) == \"2026-01-01\"",
            vec![("joined", Timestamp(JOINED))],
            Bool(true),
        ),
        (
            "profile.joined - @2026-01-01 == 9h",
            vec![("joined", Timestamp(JOINED))],
            Bool(true),
        ),
        (
            "profile.joined + 1d > now",
            vec![("joined", Timestamp(JOINED))],
            Bool(true),
        ),
        // Arithmetic: int with int, `/` always float, int widened beside a float.
        (
            "profile.points * 2 + 1 == 7",
            vec![("points", Int(3))],
            Bool(true),
        ),
        (
            "profile.points / 2 == 1.5",
            vec![("points", Int(3))],
            Bool(true),
        ),
        (
            "profile.points + 0.5 > 3.2",
            vec![("points", Int(3))],
            Bool(true),
        ),
        ("-profile.points < 0", vec![("points", Int(3))], Bool(true)),
        // Overflow gives absent, and an absent comparison is not true.
        (
            "profile.points * 9223372036854775807 > 0",
            vec![("points", Int(2))],
            Absent,
        ),
        // Strings.
        (
            "len(lower(profile.name ?? \"ABC\")) == 3",
            vec![],
            Bool(true),
        ),
        (
            "starts_with(upper(profile.name ?? \"\"), \"AD\")",
            vec![("name", Value::str("ada"))],
            Bool(true),
        ),
        (
            "contains(profile.name ?? \"\", \"d\") and ends_with(profile.name ?? \"\", \"a\")",
            vec![("name", Value::str("ada"))],
            Bool(true),
        ),
    ];
    for (condition, traits, expected) in cases {
        let actual = evaluate(condition, &traits);
        assert_eq!(actual, expected, "`{condition}` over {traits:?}");
    }
}
