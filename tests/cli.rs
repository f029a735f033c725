//! `journeyc` end to end: exit codes, output formats, `explain`.

mod support;

use std::process::{Command, Output};

fn journeyc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_journeyc"))
        .args(args)
        .current_dir(support::repo_root())
        .env("NO_COLOR", "1")
        .output()
        .expect("journeyc runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const BROKEN: &str = "tests/cases/parse/recovery.journey";

#[test]
fn check_examples_exits_zero() {
    let output = journeyc(&["check", "examples/"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("0 errors, 0 warnings"));
}

#[test]
fn errors_exit_one_and_render_for_people() {
    let output = journeyc(&["check", BROKEN]);
    assert_eq!(output.status.code(), Some(1));
    insta::assert_snapshot!("human", stderr(&output));
}

#[test]
fn json_is_one_object_a_line_with_the_documented_keys() {
    let output = journeyc(&["check", "--format", "json", BROKEN]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        for key in [
            "code",
            "severity",
            "message",
            "file",
            "line",
            "column",
            "end_line",
            "end_column",
            "labels",
            "notes",
        ] {
            assert!(value.get(key).is_some(), "missing `{key}` in {line}");
        }
    }
    insta::assert_snapshot!("json", text);
}

#[test]
fn github_annotations_are_escaped_workflow_commands() {
    let output = journeyc(&["check", "--format", "github", BROKEN]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(text
        .lines()
        .all(|l| l.starts_with("::error file=tests/cases/parse/recovery.journey,line=")));
    insta::assert_snapshot!("github", text);
}

#[test]
fn sarif_is_a_2_1_0_log() {
    let output = journeyc(&["check", "--format", "sarif", BROKEN]);
    assert_eq!(output.status.code(), Some(1));
    let log: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("SARIF is JSON");
    assert_eq!(log["version"], "2.1.0");
    let results = log["runs"][0]["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["ruleId"], "E0101");
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["region"]["startLine"],
        4
    );
    insta::assert_snapshot!("sarif", stdout(&output));
}

#[test]
fn usage_and_io_errors_exit_two() {
    let missing = journeyc(&["check", "no/such/dir"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("cannot read `no/such/dir`"));
    assert_eq!(journeyc(&["check"]).status.code(), Some(2));
    assert_eq!(
        journeyc(&["check", "--format", "xml", "examples"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(journeyc(&["frobnicate"]).status.code(), Some(2));
    let empty = journeyc(&["check", "docs"]);
    assert_eq!(
        empty.status.code(),
        Some(2),
        "a directory without .journey files"
    );
}

#[test]
fn explain_prints_a_page_by_id_or_name_and_lists_codes() {
    let by_id = journeyc(&["explain", "E0101"]);
    assert_eq!(by_id.status.code(), Some(0));
    assert!(stdout(&by_id).starts_with("# E0101 syntax-error"));
    assert_eq!(
        stdout(&journeyc(&["explain", "syntax-error"])),
        stdout(&by_id)
    );
    assert_eq!(stdout(&journeyc(&["explain", "e0101"])), stdout(&by_id));
    let list = journeyc(&["explain"]);
    assert!(stdout(&list).contains("E0112  unknown-type"));
    assert_eq!(journeyc(&["explain", "E9999"]).status.code(), Some(2));
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let plain = journeyc(&["check", BROKEN]);
    assert!(!stderr(&plain).contains('\u{1b}'));
    let coloured = journeyc(&["check", "--color", "always", BROKEN]);
    assert!(stderr(&coloured).contains('\u{1b}'));
}

#[test]
fn warnings_fail_only_with_deny_warnings() {
    let warnings_only = "tests/cases/check/W0406-unused-template.fail.journey";
    let relaxed = journeyc(&["check", warnings_only]);
    assert_eq!(relaxed.status.code(), Some(0), "{}", stderr(&relaxed));
    assert!(stderr(&relaxed).contains("0 errors, 2 warnings"));
    let strict = journeyc(&["check", "--deny-warnings", warnings_only]);
    assert_eq!(strict.status.code(), Some(1));
    let examples = journeyc(&["check", "--deny-warnings", "examples/"]);
    assert_eq!(examples.status.code(), Some(0), "{}", stderr(&examples));
}

#[test]
fn summary_prints_lifetimes_sends_and_step_windows() {
    let output = journeyc(&[
        "check",
        "--summary",
        "examples/cart_abandonment.journey",
        "examples/shop.journey",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("journey cart_abandonment (examples/cart_abandonment.journey:5): lives at most 2d; ≤ 2 sends over 2d (email ≤ 2, destination ≤ 1)"),
        "{text}"
    );
    assert!(text.contains("  if_3      +1d .. +1d12h"), "{text}");
}

#[test]
fn build_writes_verified_bytecode_and_disasm_prints_it() {
    let dir = std::env::temp_dir().join(format!("journeyc-build-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let out = dir.join("examples.jbc");
    let out_arg = out.to_string_lossy().into_owned();
    let built = journeyc(&["build", "examples/", "-o", &out_arg]);
    assert_eq!(built.status.code(), Some(0), "{}", stderr(&built));
    assert!(
        stderr(&built).contains("17 journeys, 76 steps"),
        "{}",
        stderr(&built)
    );
    let listing = journeyc(&["disasm", &out_arg]);
    assert_eq!(listing.status.code(), Some(0), "{}", stderr(&listing));
    assert!(stdout(&listing).contains("journey 1 cart_abandonment"));
    assert!(stdout(&listing).contains("; examples/cart_abandonment.journey:19"));

    // A damaged file is refused with the reason; a missing one is an I/O error.
    let mut bytes = std::fs::read(&out).expect("written");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let damaged = dir.join("damaged.jbc");
    std::fs::write(&damaged, &bytes).expect("written");
    let refused = journeyc(&["disasm", &damaged.to_string_lossy()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("checksum mismatch"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(journeyc(&["disasm", "no/such.jbc"]).status.code(), Some(2));

    // Errors in the sources: nothing is written.
    let failed = journeyc(&[
        "build",
        "tests/cases/check/E0202-unknown-event.fail.journey",
        "-o",
        &out_arg,
    ]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(stderr(&failed).contains("nothing written"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn simulate_prints_the_timeline_and_refuses_bad_lines() {
    let args = [
        "simulate",
        "examples/shop.journey",
        "examples/cart_abandonment.journey",
        "--events",
        "tests/cases/simulate/cart_events.jsonl",
    ];
    let human = journeyc(&args);
    assert_eq!(human.status.code(), Some(0), "{}", stderr(&human));
    assert!(
        stderr(&human).contains("cart_events.jsonl:6: rejected: `properties.cart_id` is required"),
        "{}",
        stderr(&human)
    );
    let mut jsonl_args = args.to_vec();
    jsonl_args.extend(["--format", "jsonl"]);
    let jsonl = journeyc(&jsonl_args);
    for line in stdout(&jsonl).lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("JSON lines");
        for key in ["at", "user", "journey", "kind"] {
            assert!(value.get(key).is_some(), "missing `{key}` in {line}");
        }
    }
    insta::assert_snapshot!("simulate_human", stdout(&human));
    insta::assert_snapshot!("simulate_jsonl", stdout(&jsonl));
    let until = journeyc(&[
        "simulate",
        "examples/",
        "--events",
        "tests/cases/simulate/cart_events.jsonl",
        "--until",
        "noon",
    ]);
    assert_eq!(until.status.code(), Some(2));
}

#[test]
fn test_runs_the_in_language_tests() {
    let passing = journeyc(&["test", "examples/"]);
    assert_eq!(passing.status.code(), Some(0), "{}", stdout(&passing));
    assert!(
        stdout(&passing).ends_with("34 passed, 0 failed\n"),
        "{}",
        stdout(&passing)
    );
    let failing = journeyc(&["test", "tests/cases/simulate/failing_test.journey"]);
    assert_eq!(failing.status.code(), Some(1));
    insta::assert_snapshot!("test_failure", stdout(&failing));
}

#[test]
fn graph_draws_the_chosen_journeys_and_names_the_others() {
    let mermaid = journeyc(&["graph", "examples/", "--journey", "purchase_winback"]);
    assert_eq!(mermaid.status.code(), Some(0), "{}", stderr(&mermaid));
    let text = stdout(&mermaid);
    assert!(text.starts_with("flowchart TD\n"), "{text}");
    assert!(text.contains("\"holdout 10%\""), "{text}");
    assert!(
        !text.contains("subgraph"),
        "one journey, no subgraph: {text}"
    );

    let dot = journeyc(&[
        "graph",
        "examples/onboarding.journey",
        "examples/shop.journey",
        "--format",
        "dot",
    ]);
    assert_eq!(dot.status.code(), Some(0), "{}", stderr(&dot));
    assert!(stdout(&dot).starts_with("digraph journeys {"));
    assert!(stdout(&dot).contains("label=\"onboarding\""));

    let unknown = journeyc(&["graph", "examples/", "--journey", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("there is no journey `nope`; there are"));
    assert!(stderr(&unknown).contains("cart_abandonment"));

    let broken = journeyc(&["graph", BROKEN]);
    assert_eq!(
        broken.status.code(),
        Some(1),
        "errors are reported, not drawn"
    );
}

#[test]
fn fmt_rewrites_checks_and_leaves_broken_files_alone() {
    let dir = std::env::temp_dir().join(format!("journeyc-fmt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let messy = dir.join("messy.journey");
    std::fs::write(
        &messy,
        "event   Seen{page:string}\njourney j { entry on Seen\n  send email \"x\"   // why\n}\n",
    )
    .expect("written");
    let broken = dir.join("broken.journey");
    let broken_text = "journey j { entry on }\n";
    std::fs::write(&broken, broken_text).expect("written");
    let messy_arg = messy.display().to_string();

    let check = journeyc(&["fmt", "--check", &messy_arg]);
    assert_eq!(check.status.code(), Some(1), "{}", stderr(&check));
    assert!(stdout(&check).contains("messy.journey"));
    assert!(stderr(&check).contains("would reformat 1 of 1 file"));

    let write = journeyc(&["fmt", &messy_arg]);
    assert_eq!(write.status.code(), Some(0), "{}", stderr(&write));
    assert_eq!(
        std::fs::read_to_string(&messy).expect("read"),
        "event Seen { page: string }\njourney j {\n  entry on Seen\n\n  send email \"x\" // why\n}\n"
    );
    assert_eq!(
        journeyc(&["fmt", "--check", &messy_arg]).status.code(),
        Some(0)
    );

    let failed = journeyc(&["fmt", &broken.display().to_string()]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(stderr(&failed).contains("error[E01"), "{}", stderr(&failed));
    assert_eq!(std::fs::read_to_string(&broken).expect("read"), broken_text);

    assert_eq!(
        journeyc(&["fmt", "--check", "examples/"]).status.code(),
        Some(0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
