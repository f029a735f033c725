//! `test` blocks (LANGUAGE.md §8) → runs on the VM → pass, or the expectations that failed with
//! the timeline that happened instead.

use journey_runtime::bytecode::Program;
use journey_runtime::vm::input::{self, Decoded, Input};
use journey_runtime::vm::{Engine, RecordKind};
use serde_json::{json, Map, Value as Json};

use crate::ast::{self, Expectation, ExprKind, Item, SendTarget, TestLineKind, TestTime};
use crate::simulate::{record_text, rfc3339};
use crate::workspace::Workspace;

/// The user every test runs as.
const USER: &str = "test-user";
/// When a test starts unless it says `start @...`: 2026-01-01T00:00:00Z.
const DEFAULT_START: i64 = 1_767_225_600_000;

#[derive(Debug, Clone, PartialEq)]
pub struct TestResult {
    pub name: String,
    pub journey: String,
    pub file: String,
    pub line: usize,
    /// The expectations that did not hold, in words.
    pub failures: Vec<String>,
    /// What happened, one line per record (for the diff).
    pub timeline: Vec<String>,
}

impl TestResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs every test of the workspace against the compiled program.
pub fn run_tests(workspace: &Workspace, program: &Program) -> Vec<TestResult> {
    let mut results = Vec::new();
    for module in &workspace.modules {
        for item in &module.items {
            if let Item::Test(test) = item {
                let file = workspace.sources.get(module.file);
                let line = file.line_col(test.span.start as usize).line;
                results.push(run_test(program, test, file.name.clone(), line));
            }
        }
    }
    results
}

fn literal(expr: &ast::Expr) -> Result<Json, String> {
    Ok(match &expr.kind {
        ExprKind::Int(n) => json!(n),
        ExprKind::Float(n) => json!(n),
        ExprKind::String(s) => json!(s),
        ExprKind::Bool(b) => json!(b),
        ExprKind::Timestamp(ms) => json!(rfc3339(*ms)),
        ExprKind::Duration(seconds) => json!(journey_runtime::bytecode::disasm::duration(
            *seconds as i64 * 1000
        )),
        ExprKind::List(items) => Json::Array(items.iter().map(literal).collect::<Result<_, _>>()?),
        ExprKind::Record(record) => record_json(record)?,
        ExprKind::Unary {
            op: ast::UnaryOp::Neg,
            operand,
        } => match literal(operand)? {
            Json::Number(n) if n.is_i64() => json!(-n.as_i64().unwrap_or_default()),
            Json::Number(n) => json!(-n.as_f64().unwrap_or_default()),
            _ => return Err("`-` applies to numbers".into()),
        },
        _ => return Err("test records hold literal values only".into()),
    })
}

fn record_json(record: &ast::Record) -> Result<Json, String> {
    let mut object = Map::new();
    for entry in &record.entries {
        object.insert(entry.key.name.clone(), literal(&entry.value)?);
    }
    Ok(Json::Object(object))
}

fn run_test(program: &Program, test: &ast::TestDecl, file: String, line: usize) -> TestResult {
    let mut result = TestResult {
        name: test.name.value.clone(),
        journey: test.journey.name.clone(),
        file,
        line,
        failures: Vec::new(),
        timeline: Vec::new(),
    };
    let Some(journey) = program
        .journeys
        .iter()
        .position(|j| program.string(j.name) == test.journey.name)
    else {
        result
            .failures
            .push(format!("there is no journey `{}`", test.journey.name));
        return result;
    };
    let start = test
        .lines
        .iter()
        .find_map(|l| match &l.kind {
            TestLineKind::Start(t) => Some(t.millis),
            _ => None,
        })
        .unwrap_or(DEFAULT_START);
    let mut until = None;
    let mut inputs: Vec<Input> = Vec::new();
    let timestamp = |ms: i64| json!(rfc3339(ms));
    for line in &test.lines {
        let message = match &line.kind {
            TestLineKind::Profile(record) => record_json(record).map(|traits| {
                json!({"type": "identify", "userId": USER, "timestamp": timestamp(start), "traits": traits})
            }),
            TestLineKind::Identify { at, traits } => record_json(traits).map(|traits| {
                json!({"type": "identify", "userId": USER, "timestamp": timestamp(start + at.seconds as i64 * 1000), "traits": traits})
            }),
            TestLineKind::Track { at, event, properties } => {
                let properties = properties.as_ref().map_or(Ok(json!({})), record_json);
                let wire = program
                    .events
                    .iter()
                    .find(|e| program.string(e.name) == event.name)
                    .map_or(event.name.as_str(), |e| program.string(e.wire_name));
                properties.map(|properties| {
                    json!({"type": "track", "event": wire, "userId": USER, "timestamp": timestamp(start + at.seconds as i64 * 1000), "properties": properties})
                })
            }
            TestLineKind::Until(time) => {
                until = Some(match time {
                    TestTime::After(d) => start + d.seconds as i64 * 1000,
                    TestTime::At(t) => t.millis,
                });
                continue;
            }
            _ => continue,
        };
        match message.and_then(|m| input::decode(program, &m)) {
            Ok(Decoded::Input(input)) => inputs.push(input),
            Ok(Decoded::UnknownEvent(name)) => result
                .failures
                .push(format!("the event `{name}` is not in the program")),
            Err(message) => result
                .failures
                .push(format!("an input is invalid: {message}")),
        }
    }
    inputs.sort_by_key(Input::time);
    let mut engine = Engine::new(program);
    engine.only = Some(journey as u32);
    engine.trace = Some(Vec::new());
    for input in inputs {
        engine.push(input);
    }
    engine.finish(until);
    check_expectations(program, test, journey as u32, start, &engine, &mut result);
    let journeys = started_from(program, journey as u32);
    result.timeline = engine
        .timeline
        .iter()
        .filter(|r| journeys.contains(&r.journey))
        .map(|r| record_text(&engine, r))
        .collect();
    result
}

/// The journey and those it `start`s, directly or through others: a test of a journey sees
/// what the journeys it starts do.
fn started_from(program: &Program, journey: u32) -> Vec<u32> {
    use journey_runtime::bytecode::opcode::{decode, Opcode};
    let mut found = vec![journey];
    let mut next = 0;
    while next < found.len() {
        let j = found[next];
        next += 1;
        let Some(body) = program
            .journeys
            .get(j as usize)
            .and_then(|d| program.blocks.get(d.body as usize))
        else {
            continue;
        };
        let end = body.offset + body.length;
        let mut pc = body.offset;
        while let Ok(ins) = decode(&program.code, pc, end) {
            if ins.opcode == Opcode::Start && !found.contains(&ins.operands[0]) {
                found.push(ins.operands[0]);
            }
            pc = ins.next;
        }
    }
    found
}

fn check_expectations(
    program: &Program,
    test: &ast::TestDecl,
    journey: u32,
    start: i64,
    engine: &Engine,
    result: &mut TestResult,
) {
    let journeys = started_from(program, journey);
    let records: Vec<_> = engine
        .timeline
        .iter()
        .filter(|r| journeys.contains(&r.journey))
        .collect();
    let sends: Vec<_> = records
        .iter()
        .filter(|r| matches!(r.kind, RecordKind::Send { .. }))
        .collect();
    let at_text = |at: Option<ast::DurationLit>| {
        at.map_or(String::new(), |d| {
            format!(
                " at +{}",
                journey_runtime::bytecode::disasm::duration(d.seconds as i64 * 1000)
            )
        })
    };
    let when = |at: Option<ast::DurationLit>, time: i64| {
        at.is_none_or(|d| time == start + d.seconds as i64 * 1000)
    };
    for line in &test.lines {
        let TestLineKind::Expect(expectation) = &line.kind else {
            continue;
        };
        let (holds, what) = match expectation {
            Expectation::Send { target, at } => {
                let (name, channel) = match target {
                    SendTarget::Template(t) => (t.name.clone(), None),
                    SendTarget::Channel { channel, id, .. } => {
                        (id.value.clone(), Some(channel.as_str()))
                    }
                };
                let holds = sends.iter().any(|r| {
                    let RecordKind::Send {
                        channel: c,
                        template,
                        id,
                        ..
                    } = &r.kind
                    else {
                        return false;
                    };
                    let sent = match (template, id) {
                        (Some(t), _) => program
                            .templates
                            .get(*t as usize)
                            .map_or("", |t| program.string(t.name)),
                        (None, Some(i)) => program.string(*i),
                        _ => "",
                    };
                    sent == name && channel.is_none_or(|ch| ch == c.name()) && when(*at, r.at)
                });
                (
                    holds,
                    format!("expected a send of `{name}`{}", at_text(*at)),
                )
            }
            Expectation::NoSend => (sends.is_empty(), "expected no send".to_string()),
            Expectation::Sends(n) => (
                sends.len() as u64 == *n,
                format!("expected {n} sends, found {}", sends.len()),
            ),
            Expectation::Exit { outcome, name, at } => {
                let wanted = outcome.as_str();
                let holds = records.iter().any(|r| {
                    let RecordKind::Exited {
                        outcome: o,
                        name: n,
                    } = &r.kind
                    else {
                        return false;
                    };
                    o.name() == wanted
                        && name
                            .as_ref()
                            .is_none_or(|name| n.is_some_and(|n| program.string(n) == name.name))
                        && when(*at, r.at)
                });
                let named = name
                    .as_ref()
                    .map_or(String::new(), |n| format!(" {}", n.name));
                (
                    holds,
                    format!("expected an exit `{wanted}{named}`{}", at_text(*at)),
                )
            }
            Expectation::NotEntered => (
                !records
                    .iter()
                    .any(|r| matches!(r.kind, RecordKind::Entered)),
                "expected the user not to enter".to_string(),
            ),
            Expectation::At { label, at } => {
                let steps = &program.journeys[journey as usize].steps;
                let step = steps
                    .iter()
                    .position(|s| program.string(s.name) == label.name)
                    .map(|s| s as u32);
                let holds = engine.trace.as_ref().is_some_and(|trace| {
                    trace.iter().any(|(t, _, j, s)| {
                        *j == journey && Some(*s) == step && when(Some(*at), *t)
                    })
                });
                (
                    holds,
                    format!("expected to reach `{}`{}", label.name, at_text(Some(*at))),
                )
            }
        };
        if !holds {
            result.failures.push(what);
        }
    }
}
