//! `journey-runtime serve` end to end: the HTTP API, the lifecycle, restarts, and the same
//! actions as `journeyc simulate` for the same stream.

#[path = "support/service.rs"]
mod service;
#[path = "support/stream.rs"]
mod stream;

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

/// Tracks `added(user, at, cart)`; the answer's status.
fn track_added(service: &Service, user: &str, at: &str, cart: &str) -> u16 {
    service.json("POST", "/v1/track", &added(user, at, cart)).0
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
        track_added(&service, "u1", "2026-01-01T09:00:00Z", "c0"),
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
        track_added(&service, "u1", "2026-01-10T10:00:00Z", "c9"),
        200
    );
    // c9 waits out its `unless` hour, then enters, is reminded, and waits a day when archived.
    let (_, user) = service.json("GET", "/v1/users/u1", "");
    assert_eq!(
        user["pending"],
        json!([{ "journey": "cart_abandonment", "version": 1, "key": "c9" }])
    );
    let (_, moved) = service.json("POST", "/v1/clock", r#"{"until":"2026-01-10T12:00:00Z"}"#);
    assert_eq!(moved["actions"], 1);
    let (_, user) = service.json("GET", "/v1/users/u1", "");
    assert_eq!(user["pending"], json!([]));
    assert_eq!(user["instances"][0]["journey"], "cart_abandonment");
    assert_eq!(user["instances"][0]["waiting_for"], "timer");
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
    assert!(
        metrics.contains("# TYPE journey_predicates_native gauge\njourney_predicates_native "),
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
/// With every predicate compiled at its first evaluation (`--jit all --jit-after 0`) and with
/// none (`--jit off`); and with every user evicted from memory after every commit
/// (`--memory-limit 1`) and the service restarted every 500 events, a restart bringing no
/// user into memory.
#[test]
fn the_service_and_simulate_agree() {
    for jit in ["all", "off"] {
        the_service_and_simulate_agree_with(jit, Restarts::None);
    }
}

#[test]
fn the_service_and_simulate_agree_with_users_out_of_memory_and_restarts() {
    the_service_and_simulate_agree_with("on", Restarts::Evicting);
}

/// Killed (SIGKILL) every 500 events, between checkpoints: the start applies the commands
/// after the last checkpoint again, and the actions are the same, each once in the outbox
/// (a sink may hand the last few over again, with their ids).
#[test]
fn the_service_and_simulate_agree_across_crashes() {
    the_service_and_simulate_agree_with("on", Restarts::Killed);
}

/// How the equivalence test restarts the service.
#[derive(Clone, Copy, PartialEq)]
enum Restarts {
    None,
    /// Every user evicted after every commit, a SIGTERM stop and a start every 500 events.
    Evicting,
    /// A SIGKILL and a start every 500 events.
    Killed,
}

/// A gauge or counter of `/metrics`.
fn metric(service: &Service, name: &str) -> u64 {
    let metrics = service.request("GET", "/metrics", b"").1;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

fn the_service_and_simulate_agree_with(jit: &str, restarts: Restarts) {
    let (program, bytes) = examples_bytecode();
    let evicting = restarts == Restarts::Evicting;
    let dir = scratch(&format!("equivalence-jit-{jit}-{}", restarts as u8));
    let jbc = dir.join("examples.jbc");
    std::fs::write(&jbc, &bytes).expect("writes");
    let sink = dir.join("actions.jsonl");
    let sink_arg = format!("jsonl:{}", sink.display());
    let jbc_arg = jbc.display().to_string();
    let mut args = vec![
        "--deploy",
        &jbc_arg,
        "--clock",
        "event",
        "--sink",
        &sink_arg,
        "--jit",
        jit,
        "--jit-after",
        "0",
    ];
    if evicting {
        args.extend(["--memory-limit", "1", "--checkpoint-every", "0s"]);
    }
    let mut service = Service::start(&dir.join("data"), &args);
    let lines = stream::random_stream(0x5E7_71CE, 2000, 30, 900);
    let mut evicted = 0;
    for (n, chunk) in lines.chunks(100).enumerate() {
        if restarts != Restarts::None && n % 5 == 4 {
            if evicting {
                evicted += metric(&service, "journey_users_evicted_total");
                service.stop();
            } else {
                service.kill();
            }
            service = Service::start(&dir.join("data"), &args);
            if evicting {
                // (After a clean stop: nothing to apply again, no user in memory.)
                assert_eq!(metric(&service, "journey_users_in_memory"), 0);
            }
        }
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
    // (After a kill, a sink hands over again what it had not marked delivered.)
    let mut ids = std::collections::BTreeSet::new();
    delivered.retain(|a| ids.insert(a["id"].as_str().unwrap_or_default().to_string()));
    for action in &mut delivered {
        if let Some(action) = action.as_object_mut() {
            // What the service adds: the action's id and its journey's version.
            assert!(action.remove("id").is_some() && action.remove("version") == Some(json!(1)));
        }
    }
    assert_eq!(delivered.len(), expected.len());
    assert_eq!(delivered, expected);
    if evicting {
        evicted += metric(&service, "journey_users_evicted_total");
        assert!(evicted >= 400, "{evicted} users evicted");
    }
    let metrics = service.request("GET", "/metrics", b"").1;
    let native: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("journey_predicates_native "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    if jit != "on" {
        assert_eq!(
            native > 10,
            jit == "all",
            "{native} predicates native with --jit {jit}"
        );
    }
    service.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGKILL at random moments under load, again and again: every input answered 2xx keeps its
/// instance, every timer fires (the overdue ones after the restart), and every action in the
/// outbox reaches the sink (at least once, by its id).
#[test]
fn killed_again_and_again_nothing_is_lost() {
    let dir = scratch("crash");
    let source = r#"
event Ping { n: int }
journey echo {
  entry on Ping as p
  reentry always
  send email "now" { n: p.n }
  wait 1s
  send email "later" { n: p.n }
}
"#;
    let mut files = journey_compiler::workspace::MemoryFiles::new();
    files.insert("echo.journey", source);
    let analysis = journey_compiler::analyse(&files, &["echo.journey".into()]);
    let program = journey_compiler::lower::lower(
        &analysis.workspace,
        analysis.program.as_ref().expect("checks"),
    );
    let jbc = dir.join("echo.jbc");
    std::fs::write(&jbc, journey_runtime::bytecode::write(&program)).expect("writes");
    let sink = dir.join("actions.jsonl");
    let sink_arg = format!("jsonl:{}", sink.display());
    let jbc_arg = jbc.display().to_string();
    let args = ["--deploy", jbc_arg.as_str(), "--sink", sink_arg.as_str()];
    let data = dir.join("data");

    let mut seed: u64 = 0xC4A5_11ED;
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut acknowledged: Vec<u64> = Vec::new();
    let mut next = 0u64;
    let mut kills = 0;
    let mut overdue_cycle: Option<(Vec<u64>, i64, i64, Duration)> = None;
    for cycle in 0..12 {
        let service = Service::start(&data, &args);
        let address = service.address.clone();
        // A client sends batches of pings as fast as they are answered, from its own thread,
        // until the connection fails; it reports what was answered 200.
        let first = next;
        let client = std::thread::spawn(move || {
            let mut answered = Vec::new();
            let mut n = first;
            loop {
                let batch: Vec<String> = (n..n + 20)
                    .map(|k| {
                        format!(r#"{{"type":"track","event":"Ping","userId":"u{k}","properties":{{"n":{k}}}}}"#)
                    })
                    .collect();
                let body = format!(r#"{{"batch":[{}]}}"#, batch.join(","));
                let sent = Instant::now();
                match service::try_http(&address, "POST", "/v1/batch", "", body.as_bytes()) {
                    Ok((200, text)) if text.contains(r#""accepted":20"#) => {
                        answered.extend((n..n + 20).map(|k| (k, sent)));
                        n += 20;
                        // Load, not a flood: the log each restart replays stays a few
                        // thousand commands long.
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    _ => return (answered, n),
                }
            }
        });
        std::thread::sleep(Duration::from_millis(100 + random(400)));
        service.kill();
        kills += 1;
        let killed_at = Instant::now();
        let (answered, reached) = client.join().expect("the client");
        next = reached + 20; // a batch in flight may or may not have landed: use new numbers
        if cycle == 5 {
            // Down for longer than the wait: the timers of pings sent less than a second
            // before the kill could not fire before it, and are overdue at the restart.
            std::thread::sleep(Duration::from_millis(1500));
            let back = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            // The last command logged before the kill: what comes after ran after the restart.
            let logged: i64 = rusqlite::Connection::open(data.join("journey.db"))
                .and_then(|db| {
                    db.query_row(
                        "SELECT MAX((SELECT COALESCE(MAX(seq), 0) FROM commands WHERE kind = 'input'),
                                    (SELECT COALESCE(MAX(seq), 0) FROM outbox))",
                        [],
                        |r| r.get(0),
                    )
                })
                .expect("the store");
            let late: Vec<u64> = answered
                .iter()
                .filter(|(_, sent)| killed_at.duration_since(*sent) < Duration::from_millis(900))
                .map(|(n, _)| *n)
                .collect();
            overdue_cycle = Some((late, back, logged, killed_at.elapsed()));
        }
        acknowledged.extend(answered.into_iter().map(|(n, _)| n));
    }
    assert!(
        acknowledged.len() > 500,
        "load: {} pings answered",
        acknowledged.len()
    );
    // A last run lets every timer fire, then stops cleanly so the sink drains.
    let service = Service::start(&data, &args);
    std::thread::sleep(Duration::from_millis(2500));
    let stats = service.json("GET", "/v1/journeys/echo/stats", "").1;
    service.stop();

    let delivered = jsonl(&sink, 0);
    let mut sent: std::collections::BTreeMap<(String, u64), usize> = Default::default();
    let mut ids = std::collections::BTreeSet::new();
    let mut duplicates = 0;
    for action in &delivered {
        let template = action["template"].as_str().unwrap_or("").to_string();
        let n = action["args"]["n"].as_u64().expect("n");
        *sent.entry((template, n)).or_default() += 1;
        if !ids.insert(action["id"].as_str().unwrap_or("").to_string()) {
            duplicates += 1;
        }
    }
    let mut missing = Vec::new();
    for n in &acknowledged {
        for template in ["now", "later"] {
            if !sent.contains_key(&(template.to_string(), *n)) {
                missing.push(format!("{template} {n}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} actions lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // Every instance ended by completing: none vanished, none is stuck.
    let version = &stats["versions"][0];
    assert_eq!(version["running"], 0, "{stats}");
    assert_eq!(
        version["outcomes"]["completed"], version["entered"],
        "{stats}"
    );
    assert!(version["entered"].as_u64() >= Some(acknowledged.len() as u64));
    // Every action in the outbox reached the sink.
    let db = rusqlite::Connection::open(data.join("journey.db")).expect("the store");
    let outbox: Vec<String> = db
        .prepare("SELECT id FROM outbox")
        .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
        .expect("the outbox");
    let undelivered: Vec<&String> = outbox.iter().filter(|id| !ids.contains(*id)).collect();
    assert!(undelivered.is_empty(), "not delivered: {undelivered:?}");
    assert_eq!(
        outbox.len(),
        ids.len(),
        "the sink holds only outbox actions"
    );
    // The timers that came due while the service was down fired after it came back: they
    // were due (an action's `at` is when it was due) before the restart, and the command that
    // fired them was logged after it.
    let (pings, back, logged, outage) = overdue_cycle.expect("the long cycle ran");
    assert!(outage >= Duration::from_millis(1500));
    assert!(
        !pings.is_empty(),
        "pings were answered in the last 0.9 s before the long outage"
    );
    for n in &pings {
        let later = delivered
            .iter()
            .find(|a| a["template"] == "later" && a["args"]["n"] == *n)
            .expect("delivered");
        let due = later["at"]
            .as_str()
            .and_then(journey_runtime::vm::input::parse_time)
            .expect("at");
        // The command that made it: the outbox keeps each action with its command's seq.
        let fired_by: i64 = rusqlite::Connection::open(data.join("journey.db"))
            .and_then(|db| {
                db.query_row(
                    "SELECT seq FROM outbox WHERE id = ?1",
                    [later["id"].as_str().unwrap_or("")],
                    |r| r.get(0),
                )
            })
            .expect("the action's command");
        assert!(
            due < back,
            "ping {n}'s timer was due at {due}, after the restart at {back}"
        );
        assert!(
            fired_by > logged,
            "ping {n}'s timer fired by command {fired_by}, before the kill (last logged {logged})"
        );
    }
    eprintln!(
        "{kills} kills; {} pings answered, {} entered; {} actions delivered, {duplicates} twice",
        acknowledged.len(),
        version["entered"],
        delivered.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a webhook receiver saw: (Idempotency-Key, status answered, body) of each request.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, u16, Value)>>>;

/// A receiver of webhooks on a local port: answers 500 to the first `failures` requests, then
/// 200; records (Idempotency-Key, status answered, body) of each.
fn webhook_receiver(failures: usize) -> (String, Received) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let address = listener.local_addr().expect("address").to_string();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let (mut length, mut key) = (0usize, String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("idempotency-key:") {
                    key = line["idempotency-key:".len()..].trim().to_string();
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut seen = record.lock().expect("lock");
            let status = if seen.len() < failures { 500 } else { 200 };
            seen.push((
                key,
                status,
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            ));
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    (address, seen)
}

#[test]
fn webhooks_retry_with_the_same_idempotency_key_and_only_allowed_hosts() {
    let (_, bytes) = examples_bytecode();
    let dir = scratch("webhook");
    let jbc = dir.join("examples.jbc");
    std::fs::write(&jbc, &bytes).expect("writes");
    let jbc_arg = jbc.display().to_string();

    // A host that is not allow-listed stops the start, saying which flag to add.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_journey-runtime"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sink",
            "webhook:https://hooks.example.com/x",
        ])
        .arg("--data")
        .arg(dir.join("refused"))
        .output()
        .expect("runs");
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("--allow-host hooks.example.com"), "{said}");

    let (address, seen) = webhook_receiver(2);
    let sink = format!("webhook:http://{address}/hook");
    let service = Service::start(
        &dir.join("data"),
        &[
            "--deploy",
            &jbc_arg,
            "--clock",
            "event",
            "--sink",
            &sink,
            "--allow-host",
            "127.0.0.1",
        ],
    );
    let identify =
        format!(r#"{{"userId":"u1","timestamp":"2026-01-01T00:00:00Z","traits":{{{PROFILE}}}}}"#);
    assert_eq!(service.json("POST", "/v1/identify", &identify).0, 200);
    assert_eq!(
        track_added(&service, "u1", "2026-01-01T10:00:00Z", "c1"),
        200
    );
    let (_, moved) = service.json("POST", "/v1/clock", r#"{"until":"2026-01-03T00:00:00Z"}"#);
    let expected = moved["actions"].as_u64().expect("actions") as usize;
    assert!(expected >= 2, "{moved}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let received = loop {
        let received = seen.lock().expect("lock").clone();
        if received.iter().filter(|(_, s, _)| *s == 200).count() >= expected
            || Instant::now() > deadline
        {
            break received;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let delivered: Vec<&(String, u16, Value)> =
        received.iter().filter(|(_, s, _)| *s == 200).collect();
    assert_eq!(delivered.len(), expected, "{received:?}");
    // The two refused attempts were of the first action, which came again with its key.
    assert_eq!(received[0].0, received[1].0);
    assert_eq!(received[1].0, received[2].0);
    for (key, _, body) in &received {
        assert_eq!(
            body["id"].as_str(),
            Some(key.as_str()),
            "the key is the action's id"
        );
        assert_eq!(body["kind"], "send");
    }
    let metrics = service.request("GET", "/metrics", b"").1;
    assert!(
        metrics.contains(&format!(
            "journey_delivery_failures_total{{sink=\"webhook:http://{address}/hook\"}} 2"
        )),
        "{metrics}"
    );
    service.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Tracks a `Go` (the event of `versioned`'s journey) of `user` at `at` (HH:MM on 2026-01-01).
fn track_go(service: &Service, user: &str, at: &str) {
    track_event(service, "Go", user, at);
}

/// Tracks `event` (whose one field is `n: int`) of `user` at `at` (HH:MM on 2026-01-01).
fn track_event(service: &Service, event: &str, user: &str, at: &str) {
    let body = format!(
        r#"{{"event":"{event}","userId":"{user}","timestamp":"2026-01-01T{at}:00Z","properties":{{"n":1}}}}"#
    );
    let (status, answer) = service.json("POST", "/v1/track", &body);
    assert_eq!(status, 200, "{answer}");
}

/// Deploys `versioned(version, wait)`.
fn deploy_version(service: &Service, version: u32, wait: &str) {
    let (status, body) = service.request("PUT", "/v1/journeys", &versioned(version, wait));
    assert_eq!(status, 200, "{body}");
}

/// A journey's source in two versions (the sends name the version).
fn versioned(version: u32, wait: &str) -> Vec<u8> {
    let source = format!(
        r#"
event Go {{ n: int }}
event Buy {{ n: int }}
cap email 3 per 1d
journey j {{
  entry on Go
  reentry always
  goal bought: Buy
  send email "v{version}-first"
  wait {wait}
  send email "v{version}-second"
}}
"#
    );
    bytecode_of(&source)
}

/// `source` (one file that checks) compiled to bytecode.
fn bytecode_of(source: &str) -> Vec<u8> {
    let mut files = journey_compiler::workspace::MemoryFiles::new();
    files.insert("j.journey", source);
    let analysis = journey_compiler::analyse(&files, &["j.journey".into()]);
    let program = journey_compiler::lower::lower(
        &analysis.workspace,
        analysis.program.as_ref().expect("checks"),
    );
    journey_runtime::bytecode::write(&program)
}

/// Timers of different deployments due at the same instant fire in the order they were set
/// (LANGUAGE.md §7.1), not deployment by deployment: here the later deployment's timer, set
/// an hour earlier, fires first, and so takes the one send a shared cap allows.
#[test]
fn timers_of_different_deployments_fire_in_the_order_they_were_set() {
    let dir = scratch("timer-order");
    let sink = dir.join("actions.jsonl");
    let sink_arg = format!("jsonl:{}", sink.display());
    let service = Service::start(
        &dir.join("data"),
        &["--clock", "event", "--sink", sink_arg.as_str()],
    );
    let program = |journey: &str, event: &str, wait: &str| {
        bytecode_of(&format!(
            "event Go {{ n: int }}\nevent Come {{ n: int }}\ncap email 1 per 1d\n\
             journey {journey} {{\n  entry on {event}\n  wait {wait}\n  send email \"{journey}\"\n}}\n"
        ))
    };
    for (journey, event, wait) in [("early", "Go", "1h"), ("late", "Come", "2h")] {
        let (status, body) = service.request("PUT", "/v1/journeys", &program(journey, event, wait));
        assert_eq!(status, 200, "{body}");
        let path = format!("/v1/journeys/{journey}/activate");
        assert_eq!(service.json("POST", &path, "").0, 200);
    }
    let track = |event: &str, at: &str| track_event(&service, event, "u1", at);
    // `late` (second deployment) sets its timer for 12:00 at 10:00; `early` (first
    // deployment) sets its own for 12:00 at 11:00.
    track("Come", "10:00");
    track("Go", "11:00");
    let (status, _) = service.json("POST", "/v1/clock", r#"{"until":"2026-01-01T13:00:00Z"}"#);
    assert_eq!(status, 200);
    service.stop();
    let sent: Vec<String> = jsonl(&sink, 0)
        .iter()
        .map(|a| a["template"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        sent,
        ["late"],
        "the cap lets one send through: the first set's"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A version deployed later sees the events the earlier one kept: its audience counts the
/// orders made before it was deployed, as `journeyc simulate` (which reads every input) would
/// — with the user in memory at the deployment, and with every user out of memory between
/// commands.
#[test]
fn a_new_version_sees_the_history_kept_before_it() {
    let program = |version: u32| {
        bytecode_of(&format!(
            "event Go {{ n: int }}\nevent Buy {{ n: int }}\n\
             journey vip {{\n  entry on Go\n  reentry always\n  \
             audience count(Buy within 30d) >= 2\n  send email \"v{version}\"\n}}\n"
        ))
    };
    for (case, extra) in [
        ("in-memory", &[][..]),
        (
            "evicted",
            &["--memory-limit", "1", "--checkpoint-every", "0s"][..],
        ),
    ] {
        let dir = scratch(&format!("history-handover-{case}"));
        let sink = dir.join("actions.jsonl");
        let sink_arg = format!("jsonl:{}", sink.display());
        let mut args = vec!["--clock", "event", "--sink", sink_arg.as_str()];
        args.extend_from_slice(extra);
        let service = Service::start(&dir.join("data"), &args);
        let deploy = |version: u32| {
            let (status, body) = service.request("PUT", "/v1/journeys", &program(version));
            assert_eq!(status, 200, "{body}");
            assert_eq!(service.json("POST", "/v1/journeys/vip/activate", "").0, 200);
        };
        deploy(1);
        for (user, at) in [("u1", "00:00"), ("u1", "00:10"), ("u2", "00:20")] {
            track_event(&service, "Buy", user, at);
        }
        deploy(2);
        track_go(&service, "u1", "01:00");
        track_go(&service, "u2", "01:00");
        service.stop();
        let sent: Vec<(String, String)> = jsonl(&sink, 0)
            .iter()
            .map(|a| {
                let field = |k: &str| a[k].as_str().unwrap_or_default().to_string();
                (field("user"), field("template"))
            })
            .collect();
        assert_eq!(
            sent,
            [("u1".to_string(), "v2".to_string())],
            "{case}: u1 bought twice before version 2, u2 once"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Versions side by side: instances in flight stay on the version they entered on, new
/// entries take the active one, a user is in the journey once whatever the version, caps
/// count the sends of every version, and a restart rebuilds it all.
#[test]
fn versions_run_side_by_side() {
    let dir = scratch("versions");
    let sink = dir.join("actions.jsonl");
    let sink_arg = format!("jsonl:{}", sink.display());
    let args = ["--clock", "event", "--sink", sink_arg.as_str()];
    let service = Service::start(&dir.join("data"), &args);
    let go = |user: &str, at: &str| track_go(&service, user, at);
    deploy_version(&service, 1, "1h");
    assert_eq!(service.json("POST", "/v1/journeys/j/activate", "").0, 200);
    go("u1", "00:00");
    deploy_version(&service, 2, "2h");
    // The same bytes again change nothing.
    deploy_version(&service, 2, "2h");
    let (_, journeys) = service.json("GET", "/v1/journeys", "");
    assert_eq!(
        journeys["journeys"][0]["versions"],
        json!([
            { "version": 1, "state": "active", "deployment": 1, "retired": false },
            { "version": 2, "state": "draft", "deployment": 2, "retired": false },
        ])
    );
    go("u2", "00:10"); // version 1: version 2 is a draft
    assert_eq!(service.json("POST", "/v1/journeys/j/activate", "").0, 200);
    go("u1", "00:20"); // refused: u1 is in the journey, on version 1
    go("u3", "00:30"); // version 2
    let (_, moved) = service.json("POST", "/v1/clock", r#"{"until":"2026-01-01T03:00:00Z"}"#);
    assert_eq!(moved["actions"], 3, "{moved}");
    // Version 1's last instance ended at 01:10: its engine is retired (sees no more inputs).
    let (_, journeys) = service.json("GET", "/v1/journeys", "");
    assert_eq!(
        journeys["journeys"][0]["versions"][0]["retired"], true,
        "{journeys}"
    );
    assert_eq!(journeys["journeys"][0]["versions"][1]["retired"], false);
    go("u1", "03:10"); // u1's version-1 instance ended at 01:00: version 2 now
                       // A third version catches up on the two before it: u2's two emails count once each, so
                       // its third still goes.
    deploy_version(&service, 3, "3h");
    assert_eq!(service.json("POST", "/v1/journeys/j/activate", "").0, 200);
    go("u2", "03:20");
    let (_, moved) = service.json("POST", "/v1/clock", r#"{"until":"2026-01-01T06:00:00Z"}"#);
    assert_eq!(
        moved["actions"], 0,
        "u1's fourth email of the day is capped: {moved}"
    );

    let sent: Vec<String> = jsonl(&sink, 8)
        .iter()
        .map(|a| {
            format!(
                "{} {} {} v{}",
                &a["at"].as_str().unwrap_or("")[11..16],
                a["user"].as_str().unwrap_or(""),
                a["template"].as_str().unwrap_or(""),
                a["version"]
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            "00:00 u1 v1-first v1",
            "00:10 u2 v1-first v1",
            "00:30 u3 v2-first v2",
            "01:00 u1 v1-second v1",
            "01:10 u2 v1-second v1",
            "02:30 u3 v2-second v2",
            "03:10 u1 v2-first v2",
            "03:20 u2 v3-first v3",
        ]
        .map(String::from)
    );
    let (_, stats) = service.json("GET", "/v1/journeys/j/stats", "");
    let summary: Vec<(u64, &str, u64, u64)> = stats["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap_or(0),
                v["state"].as_str().unwrap_or(""),
                v["entered"].as_u64().unwrap_or(0),
                v["running"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "replaced", 2, 0),
            (2, "replaced", 2, 0),
            (3, "active", 1, 1)
        ]
    );

    // A restart replays both deployments to the same state.
    let user = service.json("GET", "/v1/users/u1", "").1;
    service.stop();
    let service = Service::start(&dir.join("data"), &args);
    assert_eq!(service.json("GET", "/v1/journeys/j/stats", "").1, stats);
    assert_eq!(service.json("GET", "/v1/users/u1", "").1, user);
    // Archiving ends every version (u2's last email went at 06:20, on the way to 07:00).
    let body =
        r#"{"event":"Go","userId":"u9","timestamp":"2026-01-01T07:00:00Z","properties":{"n":1}}"#;
    assert_eq!(service.json("POST", "/v1/track", body).0, 200);
    let (_, archived) = service.json("POST", "/v1/journeys/j/archive", "");
    assert_eq!(
        archived["versions"][2]["outcomes"]["archived"], 1,
        "{archived}"
    );
    assert_eq!(archived["versions"][0]["state"], "archived");
    service.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Mangled requests get 4xx answers in the error shape and change nothing; the service stays
/// healthy and keeps taking good ones.
#[test]
fn mangled_requests_are_refused_and_nothing_breaks() {
    let (_, bytes) = examples_bytecode();
    let dir = scratch("mangled");
    let jbc = dir.join("examples.jbc");
    std::fs::write(&jbc, &bytes).expect("writes");
    let jbc_arg = jbc.display().to_string();
    let service = Service::start(
        &dir.join("data"),
        &["--deploy", &jbc_arg, "--clock", "event"],
    );
    let good = added("u1", "2026-01-01T10:00:00Z", "c1");
    let batch = format!(r#"{{"batch":[{good},{good}]}}"#);
    let mut seed: u64 = 0xBAD_F00D;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut refused = 0;
    for round in 0..300 {
        let (path, original) = if round % 2 == 0 {
            ("/v1/track", good.as_bytes())
        } else {
            ("/v1/batch", batch.as_bytes())
        };
        let mut body = original.to_vec();
        for _ in 0..1 + next(4) {
            let at = next(body.len() as u64) as usize;
            match next(3) {
                0 => body[at] = next(256) as u8,
                1 => {
                    body.remove(at);
                }
                _ => body.insert(at, b"{}[]\",:0e\\"[next(10) as usize]),
            }
        }
        let (status, text) = service.request("POST", path, &body);
        assert!(
            status == 200 || (400..500).contains(&status),
            "{status} for {}: {text}",
            String::from_utf8_lossy(&body)
        );
        if status != 200 {
            refused += 1;
            let answer: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
            assert!(
                answer["error"]["code"].is_string() && answer["error"]["message"].is_string(),
                "{text}"
            );
        }
    }
    assert!(refused > 100, "{refused} refused");
    assert_eq!(service.request("GET", "/healthz", b"").0, 200);
    let (status, answer) = service.json(
        "POST",
        "/v1/track",
        &added("u2", "2026-01-02T00:00:00Z", "c2"),
    );
    assert_eq!((status, answer), (200, json!({ "accepted": true })));
    service.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stderr nobody reads any more loses the service's lines, not the service: it still
/// answers, and a SIGTERM still stops it cleanly (exit 0, checked by `stop`).
/// The `stdout` sink: each action one JSON line on the service's stdout, nothing else there
/// (the service's own messages go to stderr).
#[test]
fn the_stdout_sink_prints_one_line_per_action() {
    let dir = scratch("stdout-sink");
    let service =
        Service::start_with_stdout(&dir.join("data"), &["--clock", "event", "--sink", "stdout"]);
    deploy_version(&service, 1, "1h");
    assert_eq!(service.json("POST", "/v1/journeys/j/activate", "").0, 200);
    for (user, at) in [("u1", "00:00"), ("u2", "00:30"), ("u1", "03:00")] {
        track_go(&service, user, at);
    }
    // A stop drains the outbox into the sink first.
    let stdout = service.stop_with_stdout();
    let sends: Vec<(String, String, String)> = stdout
        .lines()
        .map(|line| {
            let action: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{stdout}"));
            let field = |k: &str| action[k].as_str().unwrap_or_default().to_string();
            (field("user"), field("template"), field("at"))
        })
        .collect();
    // The first sends at 00:00 and 00:30; the 03:00 input first fires the waits that ended at
    // 01:00 and 01:30 (event clock), then u1 enters again.
    let has = |user: &str, template: &str, at: &str| {
        sends
            .iter()
            .any(|s| s == &(user.to_string(), template.to_string(), at.to_string()))
    };
    assert!(has("u1", "v1-first", "2026-01-01T00:00:00Z"), "{stdout}");
    assert!(has("u1", "v1-second", "2026-01-01T01:00:00Z"), "{stdout}");
    assert!(has("u2", "v1-first", "2026-01-01T00:30:00Z"), "{stdout}");
    assert!(has("u2", "v1-second", "2026-01-01T01:30:00Z"), "{stdout}");
    assert!(has("u1", "v1-first", "2026-01-01T03:00:00Z"), "{stdout}");
    assert_eq!(sends.len(), 5, "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_closed_stderr_does_not_stop_the_service() {
    let dir = scratch("stderr");
    let mut service = Service::start(&dir.join("data"), &["--clock", "event"]);
    service.close_stderr();
    let (status, _) = service.json("POST", "/v1/track", "{not json");
    assert_eq!(status, 400);
    assert_eq!(service.request("GET", "/healthz", b"").0, 200);
    service.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A client that never finishes its request does not hold a stop up: SIGTERM stops the
/// service (exit 0) once the grace for open requests (10 s) is over.
#[test]
fn a_stalled_client_does_not_hold_a_stop_up() {
    use std::io::Write as _;
    let dir = scratch("stalled");
    let service = Service::start(&dir.join("data"), &["--clock", "event"]);
    let mut stalled = std::net::TcpStream::connect(&service.address).expect("connects");
    stalled
        .write_all(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"type\"")
        .expect("writes");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let started = std::time::Instant::now();
    service.stop();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the stop took {:?}",
        started.elapsed()
    );
    drop(stalled);
    let _ = std::fs::remove_dir_all(&dir);
}
