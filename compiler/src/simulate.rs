//! Events (JSONL) through the VM → the timeline, for people or as JSONL (LANGUAGE.md §9).
//!
//! The library part: decoding the input lines, running the engine, formatting records. Reading
//! files and printing stay in `main.rs`.

use journey_runtime::bytecode::Program;
use journey_runtime::vm::input::{self, Decoded, Input};
use journey_runtime::vm::{Engine, Record, RecordKind};
use serde_json::Value as Json;

pub use journey_runtime::vm::output::{record_json, rfc3339};

/// A line of input that was refused: its 1-based number and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Decodes JSONL messages; refused lines are reported and change nothing.
pub fn decode_lines(
    program: &Program,
    file: &str,
    text: &str,
    rejected: &mut Vec<Rejected>,
) -> Vec<Input> {
    let mut inputs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let refuse = |message: String| Rejected {
            file: file.to_string(),
            line: i + 1,
            message,
        };
        let message: Json = match serde_json::from_str(line) {
            Ok(message) => message,
            Err(error) => {
                rejected.push(refuse(format!("not JSON: {error}")));
                continue;
            }
        };
        match input::decode(program, &message) {
            Ok(Decoded::Input(input)) => inputs.push(input),
            Ok(Decoded::UnknownEvent(_)) => {}
            Err(message) => rejected.push(refuse(message)),
        }
    }
    inputs
}

/// Runs inputs (stably ordered by time) through a fresh engine.
pub fn run(program: &Program, mut inputs: Vec<Input>, until: Option<i64>) -> Engine<'_> {
    inputs.sort_by_key(Input::time);
    if let Some(until) = until {
        inputs.truncate(inputs.partition_point(|i| i.time() <= until));
    }
    let mut engine = Engine::new(program);
    engine.push_batch(inputs);
    engine.finish(until);
    engine
}

/// One record of `engine`'s timeline for people: `time  user  journey  what`.
pub fn record_text(engine: &Engine, record: &Record) -> String {
    let object = record_json(engine, record);
    let get = |key: &str| {
        object
            .get(key)
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string()
    };
    let what = match &record.kind {
        RecordKind::Entered => "entered".to_string(),
        RecordKind::Send { .. } => {
            let args = object.get("args").map_or(String::new(), |a| {
                if a.as_object().is_some_and(|o| o.is_empty()) {
                    String::new()
                } else {
                    format!(" {a}")
                }
            });
            format!(
                "send {} {} (step {}){args}",
                get("channel"),
                get("template"),
                get("step")
            )
        }
        RecordKind::Skipped { .. } => format!("skipped step {}: {}", get("step"), get("reason")),
        RecordKind::Exited { .. } => {
            let name = get("name");
            if name.is_empty() {
                format!("exited: {}", get("outcome"))
            } else {
                format!("exited: {} {name}", get("outcome"))
            }
        }
    };
    let key = record
        .key
        .as_ref()
        .map_or(String::new(), |k| format!(" [{k}]"));
    format!(
        "{}  {}  {}{key}  {what}",
        get("at"),
        engine.user_name(record.user),
        get("journey")
    )
}

/// The engine's counts for people: per journey its entries, outcomes and conversion (goals /
/// entered), each step's reach and each split's arms.
pub fn stats_text(program: &Program, engine: &Engine) -> String {
    let mut out = String::new();
    for (j, stats) in engine.stats.iter().enumerate() {
        let Some(journey) = program.journeys.get(j) else {
            continue;
        };
        if stats.entered == 0 {
            continue;
        }
        let outcomes: Vec<String> = stats
            .outcomes
            .iter()
            .map(|(o, n)| format!("{} {n}", o.name()))
            .collect();
        let goals = stats
            .outcomes
            .get(&journey_runtime::vm::Outcome::Goal)
            .copied()
            .unwrap_or(0);
        out.push_str(&format!(
            "journey {}: entered {}, {}; conversion {:.1}%\n",
            program.string(journey.name),
            stats.entered,
            if outcomes.is_empty() {
                "none ended".to_string()
            } else {
                outcomes.join(", ")
            },
            goals as f64 * 100.0 / stats.entered as f64
        ));
        for (step, reached) in journey.steps.iter().zip(&stats.reached) {
            out.push_str(&format!(
                "  {:<24} reached {reached}\n",
                program.string(step.name)
            ));
        }
        for (arms, counts) in journey.splits.iter().zip(&stats.split_arms) {
            let arms: Vec<String> = arms
                .iter()
                .zip(counts)
                .map(|(a, n)| format!("{} {n}", program.string(a.name)))
                .collect();
            out.push_str(&format!("  split: {}\n", arms.join(", ")));
        }
    }
    out
}
