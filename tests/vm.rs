//! The VM against the language's semantics: every `tests/cases/vm/*.journey` holds journeys and
//! in-language tests that must pass; the snapshot beside each keeps the timelines they produced.
//! The examples' own tests must pass too.

#[path = "support/stream.rs"]
mod stream;
mod support;

use std::fmt::Write;
use std::path::{Path, PathBuf};

use journey_compiler::testing::{run_tests, TestResult};
use journey_runtime::jit::Policy;

fn run(paths: &[PathBuf]) -> Vec<TestResult> {
    let analysis = support::analyse(paths);
    let errors: Vec<_> = analysis
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .cloned()
        .collect();
    assert!(
        errors.is_empty(),
        "{}",
        support::rendered_diagnostics(&analysis.workspace, &errors)
    );
    let program = journey_compiler::lower::lower(
        &analysis.workspace,
        analysis.program.as_ref().expect("checked"),
    );
    journey_runtime::bytecode::verify::verify(&program).expect("verifies");
    run_tests(&analysis.workspace, &program)
}

fn report(results: &[TestResult]) -> String {
    let mut out = String::new();
    for result in results {
        let verdict = if result.passed() { "ok" } else { "FAILED" };
        let _ = writeln!(
            out,
            "test \"{}\" ({}) ... {verdict}",
            result.name, result.journey
        );
        for failure in &result.failures {
            let _ = writeln!(out, "  ✗ {failure}");
        }
        for line in &result.timeline {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

fn case(path: &Path) -> String {
    let results = run(&[path.to_path_buf()]);
    let text = report(&results);
    assert!(!results.is_empty(), "{} has no tests", path.display());
    assert!(
        results.iter().all(TestResult::passed),
        "{}:\n{text}",
        path.display()
    );
    text
}

#[test]
fn vm_cases() {
    insta::with_settings!({
        snapshot_path => "cases/vm/snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::glob!("cases/vm", "*.journey", |path| {
            insta::assert_snapshot!(case(path));
        });
    });
}

#[test]
fn the_examples_tests_pass() {
    let results = run(&support::journey_files("examples"));
    assert!(results.len() >= 30);
    assert!(
        results.iter().all(TestResult::passed),
        "{}",
        report(&results)
    );
}

/// The timelines of each example's tests (the same lines `journeyc simulate` prints), run with
/// the shared schema, as snapshots beside the VM cases.
#[test]
fn example_timelines() {
    let shop = support::repo_root().join("examples/shop.journey");
    insta::with_settings!({
        snapshot_path => "cases/vm/snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::glob!("../examples", "*.journey", |path| {
            if path == shop {
                return;
            }
            let results = run(&[shop.clone(), path.to_path_buf()]);
            assert!(results.iter().all(TestResult::passed), "{}", report(&results));
            insta::assert_snapshot!(report(&results));
        });
    });
}

/// Runs `lines` of JSON input (all valid) through `program`.
fn run_lines<'p>(
    program: &'p journey_runtime::bytecode::Program,
    lines: &[String],
    until: Option<i64>,
) -> journey_runtime::vm::Engine<'p> {
    let mut rejected = Vec::new();
    let inputs = journey_compiler::simulate::decode_lines(
        program,
        "inline",
        &lines.join("\n"),
        &mut rejected,
    );
    assert!(rejected.is_empty(), "{rejected:?}");
    journey_compiler::simulate::run(program, inputs, until)
}

/// The engine counts entries, outcomes, steps reached and split arms per journey.
#[test]
fn stats_per_journey_step_outcome_and_split_arm() {
    use journey_runtime::vm::Outcome;
    let source = r#"
event Go { n: int }
journey counted {
  entry on Go
  reentry always
  goal big: Go where n > 100
  timeout 1d
  split {
    a: 100% { send email "a" }
    b: 0% { }
  }
  wait 2h
  send email "later"
}
"#;
    let lines: Vec<String> = [
        r#"{"type":"track","event":"Go","userId":"u1","timestamp":"2026-01-01T00:00:00Z","properties":{"n":1}}"#,
        r#"{"type":"track","event":"Go","userId":"u2","timestamp":"2026-01-01T00:00:00Z","properties":{"n":1}}"#,
        r#"{"type":"track","event":"Go","userId":"u1","timestamp":"2026-01-01T01:00:00Z","properties":{"n":500}}"#,
    ]
    .map(String::from)
    .into();
    let program = support::compile_inline(source);
    let engine = run_lines(&program, &lines, None);
    let stats = &engine.stats[0];
    // u1's big order ends its instance with the goal (step 1 of §7.2) and, `reentry always`,
    // enters it again (step 3): three entries.
    assert_eq!(stats.entered, 3);
    assert_eq!(stats.outcomes.get(&Outcome::Goal), Some(&1));
    assert_eq!(stats.outcomes.get(&Outcome::Completed), Some(&2));
    assert_eq!(stats.split_arms, vec![vec![3, 0]]);
    // Steps in order: split_1, send_2 (arm a), wait_3, send_4 (not reached by the converted one).
    assert_eq!(stats.reached, vec![3, 3, 3, 2]);
}

/// The same inputs give the same timeline, and no stream of valid inputs upsets the engine:
/// thousands of random events for the examples, run twice on fresh engines (and once more
/// pushed one by one rather than in batches, and with hot predicates compiled or not).
#[test]
fn random_streams_are_deterministic() {
    use journey_compiler::simulate::{decode_lines, record_json, run};
    let program = support::compile_examples();
    let lines = stream::random_stream(0x0DD_BA11, 3000, 40, 600);
    let text = lines.join("\n");
    let until = 1_767_225_600_000 + 40 * 86_400_000;
    let decoded = || {
        let mut rejected = Vec::new();
        let inputs = decode_lines(&program, "random", &text, &mut rejected);
        assert!(rejected.is_empty(), "{:?}", rejected.first());
        inputs
    };
    let lines_of = |engine: &journey_runtime::vm::Engine| {
        engine
            .timeline
            .iter()
            .map(|r| record_json(engine, r).to_string())
            .collect::<Vec<_>>()
    };
    let first = lines_of(&run(&program, decoded(), Some(until)));
    assert!(
        first.len() > 500,
        "the stream should make the journeys work: {} records",
        first.len()
    );
    assert_eq!(first, lines_of(&run(&program, decoded(), Some(until))));
    // `run` pushes in batches; one input at a time gives the same timeline.
    let mut one_by_one = journey_runtime::vm::Engine::new(&program);
    let mut inputs = decoded();
    inputs.sort_by_key(journey_runtime::vm::input::Input::time);
    for input in inputs {
        one_by_one.push(input);
    }
    one_by_one.finish(Some(until));
    assert_eq!(first, lines_of(&one_by_one));
    // Every predicate compiled at its first evaluation, or none ever: the same timeline again.
    for (policy, compiled) in [(Policy::AllAfter(0), true), (Policy::Off, false)] {
        let mut engine = journey_runtime::vm::Engine::new(&program);
        engine.set_jit(policy);
        let mut inputs = decoded();
        inputs.sort_by_key(journey_runtime::vm::input::Input::time);
        engine.push_batch(inputs);
        engine.finish(Some(until));
        assert_eq!(engine.compiled_predicates() > 10, compiled, "{policy:?}");
        assert_eq!(first, lines_of(&engine), "{policy:?}");
    }
}

/// Scheduled entries cost nothing for users whose audience cannot hold: no tick for a user
/// without the event the audience needs, none while a `not did(E within D)` blocks it. Over 30
/// days, 100 users of whom one bought once: that user's ticks resume after the two blocked
/// days (28 of them); the others never tick.
#[test]
fn scheduled_entries_tick_only_when_the_audience_can_hold() {
    let source = r#"
event Bought { total: float }
event Seen { }
journey lapsed {
  entry every day at 09:00
  audience did(Bought within 30d) and not did(Bought within 2d)
  reentry always
  send email "come back"
}
"#;
    let mut lines: Vec<String> = (0..100)
        .map(|u| {
            format!(r#"{{"type":"track","event":"Seen","userId":"u{u}","timestamp":"2026-01-01T00:00:00Z","properties":{{}}}}"#)
        })
        .collect();
    lines.push(r#"{"type":"track","event":"Bought","userId":"u7","timestamp":"2026-01-01T01:00:00Z","properties":{"total":5.0}}"#.into());
    // 2026-01-31T00:00:00Z: ticks at 09:00 from 01-03 to 01-30 enter u7 (the purchase on 01-01
    // is within 30 days of each).
    let program = support::compile_inline(source);
    let engine = run_lines(&program, &lines, Some(1_769_817_600_000));
    assert_eq!(engine.stats[0].entered, 28);
    assert_eq!(engine.timers_fired, 28);
}

/// Orders followed up per order id, for the tests of a user with many instances.
const FOLLOW_UP: &str = r#"
event Ordered { id: string }
event Reviewed { id: string }
journey follow_up {
  entry on Ordered as o
  reentry always
  correlate o.id
  goal reviewed: Reviewed where id == o.id
  wait 30d
  send email "how was it"
}
"#;

/// A `FOLLOW_UP` input line: user u1's `event` (`Ordered` or `Reviewed`) of order `o{id}`,
/// `minute` minutes after 2026-01-01T00:00Z.
fn follow_up_line(event: &str, minute: usize, id: usize) -> String {
    format!(
        r#"{{"type":"track","event":"{event}","userId":"u1","timestamp":"2026-01-01T{:02}:{:02}:00Z","properties":{{"id":"o{id}"}}}}"#,
        minute / 60,
        minute % 60
    )
}

/// A user with many running instances (past the point where the engine indexes them by key)
/// is still refused a second instance with a running key, and admitted with a new one; and an
/// ended instance's key is free again.
#[test]
fn correlation_keys_hold_for_users_with_many_instances() {
    // 50 orders, then the first 50 ids again (all still running: refused), a review of o7
    // (ends it), o7 once more (admitted) and a new id (admitted).
    let mut lines: Vec<String> = (0..50).map(|n| follow_up_line("Ordered", n, n)).collect();
    lines.extend((0..50).map(|n| follow_up_line("Ordered", 60 + n, n)));
    lines.push(follow_up_line("Reviewed", 120, 7));
    lines.push(follow_up_line("Ordered", 121, 7));
    lines.push(follow_up_line("Ordered", 122, 50));
    let program = support::compile_inline(FOLLOW_UP);
    let engine = run_lines(&program, &lines, Some(1_767_312_000_000));
    assert_eq!(engine.stats[0].entered, 52);
    assert_eq!(
        engine.stats[0].outcomes.values().sum::<u64>(),
        1,
        "only the reviewed one ended"
    );
}

/// A user with many instances whose instances end mostly in the order they entered (the
/// engine marks their entries ended and sweeps the marks out later): each goal reaches its own
/// instance, ended keys are free again and running ones are not, and what the engine reports
/// of the user (its view, its facts) holds the running instances only.
#[test]
fn a_user_with_many_instances_ending_in_order_keeps_them_apart() {
    // 50 orders; reviews of o0..o29 in order and of o45 (31 ends, most from the front, past
    // the point where the marks are swept); every id ordered again (the 31 ended admitted, the
    // 19 running refused); then a review of o3's second instance.
    let mut lines: Vec<String> = (0..50).map(|n| follow_up_line("Ordered", n, n)).collect();
    lines.extend((0..30).map(|n| follow_up_line("Reviewed", 60 + n, n)));
    lines.push(follow_up_line("Reviewed", 95, 45));
    lines.extend((0..50).map(|n| follow_up_line("Ordered", 100 + n, n)));
    lines.push(follow_up_line("Reviewed", 200, 3));
    let program = support::compile_inline(FOLLOW_UP);
    let engine = run_lines(&program, &lines, Some(1_767_312_000_000));
    assert_eq!(engine.stats[0].entered, 81);
    assert_eq!(engine.stats[0].outcomes.values().sum::<u64>(), 32);
    let view = engine.user_view("u1").expect("u1 was seen");
    assert_eq!(view.instances.len(), 49, "81 entered, 32 ended");
    let mut keys: Vec<String> = view
        .instances
        .iter()
        .filter_map(|i| Some(i.key.as_ref()?.to_string()))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 49, "one running instance per key but o3");
    let running = engine
        .facts_now()
        .into_iter()
        .filter(|f| matches!(f, journey_runtime::vm::facts::Fact::Running { .. }))
        .count();
    assert_eq!(running, 49);
}

/// A tracked `event` (whose one field is `n: int`) of `user`, `minute` minutes after
/// 2026-01-01T00:00Z, decoded for `program`.
fn track(
    program: &journey_runtime::bytecode::Program,
    event: &str,
    user: &str,
    minute: i64,
) -> journey_runtime::vm::input::Input {
    use journey_runtime::vm::input::{decode, Decoded};
    let line = format!(
        r#"{{"type":"track","event":"{event}","userId":"{user}","timestamp":"{}","properties":{{"n":1}}}}"#,
        journey_runtime::vm::output::rfc3339(1_767_225_600_000 + minute * 60_000)
    );
    match decode(program, &serde_json::from_str(&line).expect("json")) {
        Ok(Decoded::Input(input)) => input,
        other => panic!("{other:?}"),
    }
}

/// The lifecycle states the service drives: a closed journey takes no entries but its
/// instances run on; a paused one holds their timers (fired in order when it goes on) and lets
/// `wait for` events pass; goals still end paused instances; archiving ends them all.
#[test]
fn lifecycle_states_close_pause_and_archive() {
    use journey_runtime::vm::output::record_json;
    use journey_runtime::vm::{Engine, JourneyState};
    let source = r#"
event Go { n: int }
event Buy { n: int }
event Tap { n: int }
journey j {
  entry on Go
  reentry always
  goal bought: Buy
  first: send email "first"
  wait 1h
  send email "second"
  wait for Tap within 1d
  send email "tapped"
}
"#;
    let program = support::compile_inline(source);
    let input = |event: &str, user: &str, minute: i64| track(&program, event, user, minute);
    let mut engine = Engine::new(&program);
    let mut lines = Vec::new();
    let mut take = |engine: &mut Engine| {
        for record in std::mem::take(&mut engine.timeline) {
            let json = record_json(engine, &record);
            lines.push(format!(
                "{} {} {}",
                &json["at"].as_str().unwrap_or("")[11..16],
                json["user"].as_str().unwrap_or(""),
                [
                    json["kind"].as_str(),
                    json["template"].as_str(),
                    json["outcome"].as_str()
                ]
                .iter()
                .flatten()
                .copied()
                .collect::<Vec<_>>()
                .join(" ")
            ));
        }
    };
    engine.push(input("Go", "a", 0));
    engine.push(input("Go", "b", 0));
    assert_eq!(engine.set_state(0, JourneyState::Paused), Ok(()));
    engine.push(input("Go", "c", 10)); // refused: paused
    engine.push(input("Buy", "b", 20)); // a goal still ends b
    engine.finish(Some(1_767_225_600_000 + 90 * 60_000)); // a's 1h timer comes due, held
    take(&mut engine);
    assert_eq!(engine.set_state(0, JourneyState::Closed), Ok(())); // fires the held timer
    engine.push(input("Go", "d", 100)); // refused: closed
    engine.push(input("Tap", "a", 110)); // a runs on while closed
    take(&mut engine);
    engine.push(input("Go", "e", 120)); // refused
    assert_eq!(engine.set_state(0, JourneyState::Live), Ok(()));
    engine.push(input("Go", "e", 130));
    engine.push(input("Go", "f", 130));
    engine.push(input("Tap", "e", 130)); // e is not waiting yet: nothing
    assert_eq!(engine.set_state(0, JourneyState::Archived), Ok(()));
    engine.push(input("Go", "g", 140)); // refused for good
    engine.finish(None);
    take(&mut engine);
    assert!(engine.set_state(0, JourneyState::Live).is_err());
    assert_eq!(
        lines,
        [
            "00:00 a entered",
            "00:00 a send first",
            "00:00 b entered",
            "00:00 b send first",
            "00:20 b exited goal",
            "01:30 a send second",
            "01:50 a send tapped",
            "01:50 a exited completed",
            "02:10 e entered",
            "02:10 e send first",
            "02:10 f entered",
            "02:10 f send first",
            "02:10 e exited archived",
            "02:10 f exited archived",
        ]
    );
    assert_eq!(
        engine.pending_timers(),
        0,
        "archived instances leave no timers that work"
    );
}

/// Decoding a message straight from its text gives what decoding the parsed JSON gives, for
/// valid messages (which must take the direct way) and for every mutation of them: each
/// property replaced by a value of another JSON type, removed, repeated, or joined by an
/// unknown one.
#[test]
fn decoding_text_agrees_with_decoding_json() {
    use journey_runtime::vm::input::{decode, decode_direct, decode_text, decode_text_whole};
    use journey_runtime::vm::kept::kept_text;
    use serde_json::{json, Value};
    let program = support::compile_examples();
    // What no schema declares is not kept: an SDK's context, an unknown trait.
    assert_eq!(
        kept_text(
            &[&program],
            r#"{"type":"identify","userId":"u1","context":{"ip":"1"},"traits":{"plan":"paid","shoe_size":9}}"#
        )
        .as_deref(),
        Some(r#"{"traits":{"plan":"paid"},"type":"identify","userId":"u1"}"#)
    );
    let plain =
        r#"{"type":"track","event":"AppOpened","userId":"u1","properties":{"platform":"ios"}}"#;
    assert_eq!(kept_text(&[&program], plain), None, "nothing to drop");
    // A user id is at most 256 bytes, both ways.
    let long = format!(r#"{{"type":"identify","userId":"{}"}}"#, "x".repeat(257));
    assert!(decode_direct(&program, &long, Some(0)).is_none());
    assert_eq!(
        decode_text(&program, &long, Some(0)),
        Err("`userId` is 257 bytes long: a user id is at most 256 bytes".into())
    );
    let longest = format!(r#"{{"type":"identify","userId":"{}"}}"#, "x".repeat(256));
    assert!(decode_direct(&program, &longest, Some(0)).is_some());
    let valid = [
        r#"{"type":"track","event":"ProductAdded","userId":"u1","timestamp":"2026-01-01T00:00:00Z","properties":{"product_id":"p1","cart_id":"c1","name":"Sh\u00f6e \"x\"","price":20,"product":{"sku":"s1","brand":null}}}"#,
        r#"{"type":"track","event":"OrderCompleted","userId":42,"timestamp":"2026-01-01T00:00:00+03:00","properties":{"order_id":"o1","cart_id":"c1","total":20.5,"currency":"USD"},"context":{"ip":"1"}}"#,
        r#"{"type":"track","event":"PageViewed","userId":"u1","timestamp":"2026-01-01T00:00:00Z","properties":{"url":"/"}}"#,
        r#"{"type":"track","event":"AppOpened","userId":"u1","timestamp":"2026-01-01T00:00:00Z","properties":{"platform":"ios"}}"#,
        r#"{"type":"track","event":"Unsubscribed","userId":"u1","timestamp":"2026-01-01T00:00:00Z"}"#,
        r#"{"type":"track","event":"NoSuchEvent","userId":"u1","timestamp":"2026-01-01T00:00:00Z","properties":{"a":1}}"#,
        r#"{"type":"identify","userId":"u1","timestamp":"2026-01-01T00:00:00Z","traits":{"plan":"trial","country":"US","lifetime_value":3,"signed_up_at":"2026-01-01T00:00:00Z","tags":["a","b"],"timezone":"Europe/Istanbul","trial_ends_at":null,"points":3,"unknown":{"x":[1]}}}"#,
        r#"{"type":"track","event":"TrialStarted","userId":"u1","timestamp":"2026-01-01T00:00:00Z","properties":{"plan":"pro","trial_days":14}}"#,
        r#"{"type":"identify","userId":"u1","timestamp":"2026-01-01T00:00:00Z"}"#,
    ];
    let wholes = std::cell::Cell::new(0);
    let same = |text: &str| {
        let parsed = serde_json::from_str::<Value>(text)
            .map_err(|e| format!("the message is not JSON: {e}"))
            .and_then(|m| decode(&program, &m));
        assert_eq!(decode_text(&program, text, None), parsed, "{text}");
        if let Some(direct) = decode_direct(&program, text, None) {
            assert_eq!(Ok(direct), parsed, "{text}");
        }
        // What the log keeps of an accepted message decodes to the same input; a message the
        // decoder read whole is kept as it came.
        if let Ok(accepted) = &parsed {
            let whole = decode_text_whole(&program, text, None).is_ok_and(|(_, whole)| whole);
            if whole {
                wholes.set(wholes.get() + 1);
                assert_eq!(kept_text(&[&program], text), None, "read whole: {text}");
            }
            if let Some(kept) = kept_text(&[&program], text) {
                assert!(kept.len() < text.len(), "{kept} from {text}");
                assert_eq!(
                    decode_text(&program, &kept, None).as_ref(),
                    Ok(accepted),
                    "{kept} from {text}"
                );
            }
        }
    };
    let others = [
        json!(null),
        json!(true),
        json!(-3),
        json!(18446744073709551615u64),
        json!(2.5),
        json!("x"),
        json!("2026-01-01T00:00:00Z"),
        json!("15m"),
        json!("ios"),
        json!([]),
        json!(["a", 1]),
        json!({}),
        json!({"sku": "s"}),
    ];
    let mut variants = 0;
    for text in valid {
        assert!(
            decode_direct(&program, text, None).is_some(),
            "a valid message takes the direct way: {text}"
        );
        same(text);
        let message: Value = serde_json::from_str(text).expect("json");
        for part in ["properties", "traits", ""] {
            let keys: Vec<String> = match if part.is_empty() {
                Some(&message)
            } else {
                message.get(part)
            } {
                Some(Value::Object(map)) => map.keys().cloned().collect(),
                _ => continue,
            };
            for key in keys {
                let mut edit = |change: &dyn Fn(&mut serde_json::Map<String, Value>)| {
                    let mut m = message.clone();
                    let target = if part.is_empty() {
                        Some(&mut m)
                    } else {
                        m.get_mut(part)
                    };
                    if let Some(Value::Object(map)) = target {
                        change(map);
                    }
                    same(&m.to_string());
                    variants += 1;
                };
                for other in &others {
                    edit(&|map| {
                        map.insert(key.clone(), other.clone());
                    });
                }
                edit(&|map| {
                    map.remove(&key);
                });
                edit(&|map| {
                    map.insert(format!("{key}_unknown"), json!(1));
                });
            }
        }
        // A repeated key: the last one counts, both ways.
        let repeated = text.replacen("\"userId\":", "\"userId\":\"first\",\"userId\":", 1);
        same(&repeated);
    }
    assert!(variants > 300, "{variants} variants");
    assert!(wholes.get() > 100, "{} read whole", wholes.get());
    assert_eq!(
        decode_text_whole(&program, plain, Some(0)).map(|(_, whole)| whole),
        Ok(true)
    );
    assert_eq!(
        decode_text_whole(&program, valid[1], None).map(|(_, whole)| whole),
        Ok(false),
        "its `context` is skipped"
    );
    // Without a timestamp, the default time is taken, both ways.
    let untimed =
        r#"{"type":"track","event":"AppOpened","userId":"u1","properties":{"platform":"web"}}"#;
    let message: Value = serde_json::from_str(untimed).expect("json");
    assert_eq!(
        decode_text(&program, untimed, Some(7)),
        journey_runtime::vm::input::decode_with(&program, &message, Some(7))
    );
    assert!(decode_direct(&program, untimed, Some(7)).is_some());
    assert!(decode_text(&program, untimed, None).is_err());
}

/// A profile update one engine makes is seen by another engine's conditions at once, as the
/// same engine's would be (LANGUAGE.md §7: `when` goals and exits are re-evaluated when what
/// they read changes), not at the user's next input: the service runs one engine per
/// deployment, and a journey's versions and other journeys can sit in different ones.
#[test]
fn a_mirrored_profile_update_is_seen_at_once() {
    use journey_runtime::vm::output::record_json;
    use journey_runtime::vm::Engine;
    let schema = "event Go { n: int }\nprofile { plan: string? }\n";
    let upgrader = support::compile_inline(&format!(
        "{schema}journey upgrader {{\n  entry on Go\n  set profile.plan = \"paid\"\n}}\n"
    ));
    let nag = support::compile_inline(&format!(
        "{schema}journey nag {{\n  entry on Go\n  exit upgraded: when profile.plan == \"paid\"\n  \
         wait 1h\n  send email \"nag\"\n}}\n"
    ));
    let go = |program, minute| track(program, "Go", "u1", minute);
    let (mut first, mut second) = (Engine::new(&nag), Engine::new(&upgrader));
    first.report_facts(true);
    second.report_facts(true);
    // As the service does: the input to every engine, then each one's facts to the others.
    first.push(go(&nag, 0));
    second.push(go(&upgrader, 0));
    for fact in second.take_facts() {
        first.mirror(&fact);
    }
    let lines: Vec<String> = first
        .timeline
        .iter()
        .map(|r| record_json(&first, r).to_string())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains(r#""kind":"entered""#), "{lines:#?}");
    assert!(
        lines[1].contains(r#""outcome":"exited""#)
            && lines[1].contains(r#""name":"upgraded""#)
            && lines[1].contains(r#""at":"2026-01-01T00:00:00Z""#),
        "{lines:#?}"
    );
    // Nothing is left to send later.
    first.timeline.clear();
    first.finish(None);
    assert!(first.timeline.is_empty(), "{:?}", first.timeline);
}

/// A new engine takes in the events an older one kept of a user, field by field: a field it
/// adds as optional is absent, and an event it cannot read as its own declaration (a required
/// field the older program lacks, a field of another type) is left out rather than guessed.
#[test]
fn kept_events_pass_to_a_newer_program_by_field_names() {
    use journey_runtime::vm::Engine;
    let with = |buy: &str| {
        support::compile_inline(&format!(
            "event Go {{ n: int }}\nevent Buy {{ {buy} }}\n\
             journey vip {{\n  entry on Go\n  audience count(Buy within 30d) >= 2\n  \
             send email \"vip\"\n}}\n"
        ))
    };
    let old = with("n: int");
    let mut engine = Engine::new(&old);
    for minute in [0, 10] {
        engine.push(track(&old, "Buy", "u1", minute));
    }
    let id = engine.user_id("u1").expect("u1");
    let kept = engine.history_of(id);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].event, "Buy");
    assert_eq!(kept[0].events.len(), 2);
    for (buy, taken) in [
        ("n: int", 2),
        ("n: int, coupon: string?", 2),
        ("coupon: string?", 2),
        ("n: int, total: float", 0),
        ("n: string", 0),
    ] {
        let newer = with(buy);
        let mut next = Engine::new(&newer);
        next.take_history("u1", &old, &kept);
        let held = next.user_id("u1").map_or(0, |id| {
            next.history_of(id).iter().map(|k| k.events.len()).sum()
        });
        assert_eq!(held, taken, "Buy {{ {buy} }}");
        if taken > 0 {
            // What it took counts as its own history: the audience holds at the next entry.
            next.push(track(&newer, "Go", "u1", 20));
            assert!(
                next.timeline
                    .iter()
                    .any(|r| matches!(r.kind, journey_runtime::vm::RecordKind::Send { .. })),
                "Buy {{ {buy} }}: {:?}",
                next.timeline
            );
        }
    }
}
