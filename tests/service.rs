//! `journey-runtime serve` end to end: the HTTP API, the lifecycle, restarts, and the same
//! actions as `journeyc simulate` for the same stream.

#[path = "support/service.rs"]
mod service;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use service::{scratch, Service};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The examples compiled to bytecode.
fn examples_bytecode() -> (journey_runtime::bytecode::Program, Vec<u8>) {
    let dir = repo_root().join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "journey"))
        .collect();
    files.sort();
    let analysis = journey_compiler::analyse(&journey_compiler::workspace::FileSystem, &files);
    let program = journey_compiler::lower::lower(
        &analysis.workspace,
        analysis.program.as_ref().expect("the examples check"),
    );
    let bytes = journey_runtime::bytecode::write(&program);
    (program, bytes)
}

/// The lines of a JSONL file, waiting up to 10 s for there to be at least `at_least`.
fn jsonl(path: &Path, at_least: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        if lines.len() >= at_least || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const PROFILE: &str = r#""plan":"paid","country":"US","lifetime_value":0.0,"signed_up_at":"2026-01-01T00:00:00Z","tags":[],"timezone":"Europe/Istanbul""#;

fn added(user: &str, at: &str, cart: &str) -> String {
    format!(
        r#"{{"type":"track","event":"ProductAdded","userId":"{user}","timestamp":"{at}","properties":{{"product_id":"p1","cart_id":"{cart}","name":"Shoe","price":20.0,"product":{{"sku":"s1"}}}}}}"#
    )
}

#[test]
fn the_api_end_to_end() {
    let dir = scratch("api");
    let (_, bytes) = examples_bytecode();
    let sink = dir.join("actions.jsonl");
    let sink_arg = format!("jsonl:{}", sink.display());
    let args = [
        "--token",
        "s3cret",
        "--clock",
        "event",
        "--sink",
        &sink_arg,
        "--max-body",
        "65536",
    ];
    let service = Service::start(&dir.join("data"), &args);

    // Authentication, routes, bodies.
    let (status, body) = service::http(&service.address, "GET", "/v1/journeys", "", b"");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let (status, _) = service::http(
        &service.address,
        "GET",
        "/v1/journeys",
        "Authorization: Bearer wrong\r\n",
        b"",
    );
    assert_eq!(status, 401);
    assert_eq!(service.request("GET", "/healthz", b"").0, 200);
    assert_eq!(service.json("GET", "/v1/nowhere", "").0, 404);
    assert_eq!(
        service.json("GET", "/v1/journeys", "").1,
        json!({ "journeys": [] })
    );
    let (status, body) = service.json(
        "POST",
        "/v1/track",
        &added("u1", "2026-01-01T10:00:00Z", "c1"),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("nothing-deployed"))
    );

    // Deploying: garbage is refused, bytecode lands as drafts.
    let (status, body) = service.json("PUT", "/v1/journeys", "not bytecode");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad-bytecode")),
        "{body}"
    );
    let (status, text) = service.request("PUT", "/v1/journeys", &bytes);
    assert_eq!(status, 200, "{text}");
    let (_, journeys) = service.json("GET", "/v1/journeys", "");
    let states: Vec<&str> = journeys["journeys"]
        .as_array()
        .expect("journeys")
        .iter()
        .filter_map(|j| j["versions"][0]["state"].as_str())
        .collect();
    assert!(
        states.len() > 10 && states.iter().all(|s| *s == "draft"),
        "{states:?}"
    );
    let (status, body) = service.json("PUT", "/v1/journeys", &"x".repeat(70_000));
    assert_eq!(status, 413, "{body}");

    // A draft takes no entries; an active journey does.
    let identify =
        format!(r#"{{"userId":"u1","timestamp":"2026-01-01T00:00:00Z","traits":{{{PROFILE}}}}}"#);
    assert_eq!(
        service.json("POST", "/v1/identify", &identify),
        (200, json!({ "accepted": true }))
    );
    assert_eq!(
        service
            .json(
                "POST",
                "/v1/track",
                &added("u1", "2026-01-01T09:00:00Z", "c0")
            )
            .0,
        200
    );
    let (status, stats) = service.json("POST", "/v1/journeys/cart_abandonment/activate", "");
    assert_eq!(
        (status, stats["versions"][0]["state"].as_str()),
        (200, Some("active"))
    );
    assert_eq!(
        stats["versions"][0]["entered"], 0,
        "the draft took no entry"
    );

    // A batch: each message on its own.
    let batch = format!(
        r#"{{"batch":[{},{},{},{}]}}"#,
        added("u1", "2026-01-01T10:00:00Z", "c1"),
        r#"{"type":"track","event":"ProductAdded","userId":"u2","timestamp":"2026-01-01T10:00:00Z","properties":{"product_id":"p1","cart_id":"c2","name":"Shoe","price":"cheap"}}"#,
        r#"{"type":"track","event":"NoSuchEvent","userId":"u2","timestamp":"2026-01-01T10:00:00Z"}"#,
        r#"{"type":"identify","userId":"u2","timestamp":"2026-01-01T10:00:00Z","traits":{"plan":"paid"}}"#,
    );
    let (status, result) = service.json("POST", "/v1/batch", &batch);
    assert_eq!(status, 200, "{result}");
    assert_eq!(
        (result["accepted"].as_u64(), result["ignored"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(result["refused"][0]["index"], 1);
    assert!(
        result["refused"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("properties.price") && m.contains("number")),
        "{result}"
    );
    let (status, body) = service.json("POST", "/v1/track", "{not json");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad-json"))
    );
    let (status, body) = service.json("POST", "/v1/batch", r#"{"messages":[]}"#);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad-batch"))
    );

    // Event time moves on: the reminder an hour later, the follow-up a day after that.
    let (status, moved) = service.json("POST", "/v1/clock", r#"{"until":"2026-01-03T00:00:00Z"}"#);
    assert_eq!(
        (status, moved["actions"].as_u64()),
        (200, Some(2)),
        "{moved}"
    );
    assert_eq!(
        service
            .json("POST", "/v1/clock", r#"{"until":"2026-01-02T00:00:00Z"}"#)
            .0,
        409
    );
    let delivered = jsonl(&sink, 2);
    let kinds: Vec<(&str, &str, &str)> = delivered
        .iter()
        .map(|a| {
            (
                a["at"].as_str().unwrap_or(""),
                a["template"].as_str().unwrap_or(""),
                a["id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(kinds.len(), 2, "{delivered:?}");
    assert_eq!(kinds[0].0, "2026-01-01T11:00:00Z");
    assert_eq!(kinds[0].1, "cart_reminder");
    assert_eq!(kinds[1].1, "facebook_custom_audiences");
    assert_ne!(kinds[0].2, kinds[1].2, "each action has its own id");

    let (status, user) = service.json("GET", "/v1/users/u1", "");
    assert_eq!(status, 200);
    assert_eq!(user["profile"]["plan"], "paid");
    assert_eq!(user["recent_actions"].as_array().map(Vec::len), Some(2));
    assert_eq!(service.json("GET", "/v1/users/nobody", "").0, 404);

    // Lifecycle: pause, resume, archive; refused moves say why.
    let stats_before = service
        .json("GET", "/v1/journeys/cart_abandonment/stats", "")
        .1;
    assert_eq!(stats_before["versions"][0]["entered"], 1);
    assert_eq!(
        service
            .json("POST", "/v1/journeys/cart_abandonment/pause", "")
            .0,
        200
    );
    let (status, body) = service.json("POST", "/v1/journeys/cart_abandonment/pause", "");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("bad-transition"))
    );
    assert_eq!(
        service
            .json("POST", "/v1/journeys/cart_abandonment/resume", "")
            .0,
        200
    );
    assert_eq!(
        service
            .json("POST", "/v1/journeys/cart_abandonment/explode", "")
            .0,
        404
    );
    assert_eq!(service.json("POST", "/v1/journeys/nope/pause", "").0, 404);
    assert_eq!(
        service
            .json(
                "POST",
                "/v1/track",
                &added("u1", "2026-01-10T10:00:00Z", "c9")
            )
            .0,
        200
    );
    // c9 enters after its `unless` hour, is reminded, and waits a day when archived.
    let (_, moved) = service.json("POST", "/v1/clock", r#"{"until":"2026-01-10T12:00:00Z"}"#);
    assert_eq!(moved["actions"], 1);
    let (status, archived) = service.json("POST", "/v1/journeys/cart_abandonment/archive", "");
    assert_eq!(status, 200);
    assert_eq!(
        archived["versions"][0]["outcomes"]["archived"], 1,
        "{archived}"
    );
    assert_eq!(archived["versions"][0]["running"], 0);
    assert_eq!(
        service
            .json("POST", "/v1/journeys/cart_abandonment/activate", "")
            .0,
        409
    );

    let metrics = service.request("GET", "/metrics", b"").1;
    assert!(
        metrics.contains("journey_inputs_accepted_total 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("journey_inputs_refused_total 2"),
        "{metrics}"
    );

    // A restart rebuilds the same state from the log and delivers nothing twice.
    let stats = service
        .json("GET", "/v1/journeys/cart_abandonment/stats", "")
        .1;
    let user = service.json("GET", "/v1/users/u1", "").1;
    let said = service.stop();
    assert!(said.contains("stopping"), "{said}");
    let service = Service::start(&dir.join("data"), &args);
    assert_eq!(
        service
            .json("GET", "/v1/journeys/cart_abandonment/stats", "")
            .1,
        stats
    );
    assert_eq!(service.json("GET", "/v1/users/u1", "").1, user);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(jsonl(&sink, 0).len(), 3, "nothing delivered twice");
    service.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The LANGUAGE.md §9 stream through the service (event clock) gives the same sends as
/// `journeyc simulate` gives for it: thousands of random events for every example journey.
#[test]
fn the_service_and_simulate_agree() {
    let (program, bytes) = examples_bytecode();
    let dir = scratch("equivalence");
    let jbc = dir.join("examples.jbc");
    std::fs::write(&jbc, &bytes).expect("writes");
    let sink = dir.join("actions.jsonl");
    let sink_arg = format!("jsonl:{}", sink.display());
    let jbc_arg = jbc.display().to_string();
    let service = Service::start(
        &dir.join("data"),
        &[
            "--deploy", &jbc_arg, "--clock", "event", "--sink", &sink_arg,
        ],
    );
    let lines = random_stream(2000);
    for chunk in lines.chunks(100) {
        let (status, result) = service.json(
            "POST",
            "/v1/batch",
            &format!(r#"{{"batch":[{}]}}"#, chunk.join(",")),
        );
        assert_eq!(status, 200);
        assert_eq!(result["refused"], json!([]), "{result}");
    }
    let until = 1_767_225_600_000i64 + 40 * 86_400_000;
    let until_text = journey_runtime::vm::output::rfc3339(until);
    let (status, _) = service.json(
        "POST",
        "/v1/clock",
        &format!(r#"{{"until":"{until_text}"}}"#),
    );
    assert_eq!(status, 200);

    let mut rejected = Vec::new();
    let inputs = journey_compiler::simulate::decode_lines(
        &program,
        "stream",
        &lines.join("\n"),
        &mut rejected,
    );
    assert!(rejected.is_empty());
    let engine = journey_compiler::simulate::run(&program, inputs, Some(until));
    let expected: Vec<Value> = engine
        .timeline
        .iter()
        .filter(|r| matches!(r.kind, journey_runtime::vm::RecordKind::Send { .. }))
        .map(|r| journey_runtime::vm::output::record_json(&engine, r))
        .collect();
    assert!(
        expected.len() > 100,
        "the stream should make sends: {}",
        expected.len()
    );
    let mut delivered = jsonl(&sink, expected.len());
    for action in &mut delivered {
        action.as_object_mut().map(|a| a.remove("id"));
    }
    assert_eq!(delivered.len(), expected.len());
    assert_eq!(delivered, expected);
    service.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A deterministic stream of messages for the examples' schema, in time order.
fn random_stream(count: u64) -> Vec<String> {
    let mut seed: u64 = 0x5E7_71CE;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut lines = Vec::new();
    for i in 0..count {
        let user = format!("u{}", next(30));
        let at = 1_767_225_600 + i * 900 + next(900);
        let time = journey_runtime::vm::output::rfc3339(at as i64 * 1000);
        let cart = format!("c{}", next(4));
        lines.push(match next(7) {
            0 => format!(
                r#"{{"type":"identify","userId":"{user}","timestamp":"{time}","traits":{{"plan":"{}","country":"US","lifetime_value":{}.0,"signed_up_at":"2026-01-01T00:00:00Z","tags":[],"timezone":"Europe/Istanbul","push_enabled":true}}}}"#,
                ["free", "trial", "paid"][next(3) as usize],
                next(400)
            ),
            1 | 2 => added(&user, &time, &cart),
            3 => format!(
                r#"{{"type":"track","event":"OrderCompleted","userId":"{user}","timestamp":"{time}","properties":{{"order_id":"o{i}","cart_id":"{cart}","total":{}.0,"currency":"USD"}}}}"#,
                next(300)
            ),
            4 => format!(
                r#"{{"type":"track","event":"PageViewed","userId":"{user}","timestamp":"{time}","properties":{{"url":"/","utm_source":"ads"}}}}"#
            ),
            5 => format!(
                r#"{{"type":"track","event":"AccountCreated","userId":"{user}","timestamp":"{time}","properties":{{"method":"email"}}}}"#
            ),
            _ => format!(
                r#"{{"type":"track","event":"AppOpened","userId":"{user}","timestamp":"{time}","properties":{{"platform":"ios"}}}}"#
            ),
        });
    }
    lines
}
