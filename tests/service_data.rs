//! `journey-runtime` and its data directory, end to end: one process a directory, a database
//! that is not ours or is damaged refused untouched, backups taken while serving and restored
//! without reusing an action id, bounded inputs, and stops that a failing sink cannot hold up.

#[path = "support/service.rs"]
#[allow(dead_code)] // (what the other service tests use of it)
mod service;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use service::{scratch, Service};

/// A journey that sends at once on each `Ping`.
const ECHO: &str = r#"
event Ping { n: int }
journey echo {
  entry on Ping as p
  reentry always
  send email "now" { n: p.n }
}
"#;

/// `source` compiled to bytecode in `dir`; the file's path.
fn bytecode_in(dir: &Path, source: &str) -> PathBuf {
    let mut files = journey_compiler::workspace::MemoryFiles::new();
    files.insert("j.journey", source);
    let analysis = journey_compiler::analyse(&files, &["j.journey".into()]);
    let program = journey_compiler::lower::lower(
        &analysis.workspace,
        analysis.program.as_ref().expect("checks"),
    );
    let path = dir.join("j.jbc");
    std::fs::write(&path, journey_runtime::bytecode::write(&program)).expect("writes");
    path
}

fn ping(service: &Service, user: &str, n: u64) {
    let body = format!(r#"{{"event":"Ping","userId":"{user}","properties":{{"n":{n}}}}}"#);
    let (status, answer) = service.json("POST", "/v1/track", &body);
    assert_eq!(status, 200, "{answer}");
}

/// `journey-runtime ARGS…` run to its end: (exit code, stderr).
fn run(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_journey-runtime"))
        .args(args)
        .env_remove("JOURNEY_TOKEN")
        .output()
        .expect("runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `serve` on `data`, expected to refuse to start: (exit code, stderr).
fn refused_start(data: &Path) -> (Option<i32>, String) {
    let data = data.display().to_string();
    run(&["serve", "--data", &data, "--listen", "127.0.0.1:0"])
}

/// The outbox's actions: (id, user, template).
fn outbox(database: &Path) -> Vec<(String, String, String)> {
    let db = rusqlite::Connection::open(database).expect("the store");
    db.prepare("SELECT id, user, action FROM outbox ORDER BY n")
        .and_then(|mut q| {
            q.query_map([], |r| {
                let action: String = r.get(2)?;
                let action: Value = serde_json::from_str(&action).unwrap_or_default();
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    action["template"].as_str().unwrap_or("").to_string(),
                ))
            })?
            .collect()
        })
        .expect("the outbox")
}

#[test]
fn the_data_directory_is_guarded() {
    let dir = scratch("guard");
    let jbc = bytecode_in(&dir, ECHO);
    let jbc = jbc.display().to_string();
    let data = dir.join("data");

    // One directory, one process: a second exits 2 and says who holds it.
    let first = Service::start(&data, &["--deploy", &jbc]);
    for n in 0..200 {
        ping(&first, &format!("u{n}"), n);
    }
    let (code, said) = refused_start(&data);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("is in use by another journey-runtime")
            && said.contains(&format!("pid {}", first.child.id())),
        "{said}"
    );
    // The first goes on serving.
    ping(&first, "after", 1000);
    first.stop();

    // A SQLite file of someone else's is refused before anything touches it.
    let foreign = dir.join("foreign");
    std::fs::create_dir_all(&foreign).expect("dir");
    {
        let db = rusqlite::Connection::open(foreign.join("journey.db")).expect("opens");
        db.execute_batch("CREATE TABLE people (name TEXT); INSERT INTO people VALUES ('ada');")
            .expect("writes");
    }
    let before = std::fs::read(foreign.join("journey.db")).expect("reads");
    let (code, said) = refused_start(&foreign);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("is not a journey-runtime database"), "{said}");
    assert_eq!(
        std::fs::read(foreign.join("journey.db")).expect("reads"),
        before
    );
    assert!(!foreign.join("journey.db-wal").exists());

    // So is a file that is not a database at all.
    let text = dir.join("text");
    std::fs::create_dir_all(&text).expect("dir");
    std::fs::write(text.join("journey.db"), "name,plan\nada,paid\n").expect("writes");
    let (code, said) = refused_start(&text);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("is not a journey-runtime database"), "{said}");
    assert_eq!(
        std::fs::read_to_string(text.join("journey.db")).expect("reads"),
        "name,plan\nada,paid\n"
    );

    // A damaged database is refused at the start, with what to do, instead of every write
    // failing later.
    let database = data.join("journey.db");
    for leftover in ["journey.db-wal", "journey.db-shm"] {
        let _ = std::fs::remove_file(data.join(leftover));
    }
    let mut bytes = std::fs::read(&database).expect("reads");
    let pages = bytes.len() / 4096;
    assert!(pages > 4, "{pages} pages");
    let last = (pages - 1) * 4096;
    bytes[last..last + 4096].fill(0xA5);
    std::fs::write(&database, &bytes).expect("writes");
    let (code, said) = refused_start(&data);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("is damaged") && said.contains("restore it from a backup"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A backup taken while serving, restored: the action the backup holds is delivered with the
/// id it had, and actions made after the restore never take an id handed out after the backup
/// (a receiver that deduplicates by id would drop real mail).
#[test]
fn a_backup_restored_never_reuses_an_action_id() {
    let dir = scratch("backup");
    let jbc = bytecode_in(&dir, ECHO);
    let jbc = jbc.display().to_string();
    let data = dir.join("data");
    let copy = dir.join("backup.db");
    let database = data.join("journey.db");

    let service = Service::start(&data, &["--deploy", &jbc]);
    ping(&service, "bob", 1);
    let (code, said) = run(&[
        "backup",
        "--data",
        &data.display().to_string(),
        &copy.display().to_string(),
    ]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("bytes, checked"), "{said}");
    // A backup never overwrites.
    let (code, said) = run(&[
        "backup",
        "--data",
        &data.display().to_string(),
        &copy.display().to_string(),
    ]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("exists already"), "{said}");
    ping(&service, "carol", 2);
    service.stop();
    let before_restore = outbox(&database);
    let id_of = |actions: &[(String, String, String)], user: &str| {
        actions
            .iter()
            .find(|(_, u, _)| u == user)
            .map(|(id, _, _)| id.clone())
            .unwrap_or_else(|| panic!("{user}'s action in {actions:?}"))
    };
    let (bob, carol) = (
        id_of(&before_restore, "bob"),
        id_of(&before_restore, "carol"),
    );
    assert_ne!(bob, carol);

    // Restore: the service stopped, the copy in place of the database.
    for leftover in ["journey.db-wal", "journey.db-shm"] {
        let _ = std::fs::remove_file(data.join(leftover));
    }
    std::fs::copy(&copy, &database).expect("restores");
    let sink = dir.join("actions.jsonl");
    let sink_arg = format!("jsonl:{}", sink.display());
    let service = Service::start(&data, &["--deploy", &jbc, "--sink", &sink_arg]);
    ping(&service, "dave", 3);
    service.stop();
    let delivered: Vec<Value> = std::fs::read_to_string(&sink)
        .expect("the sink")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let delivered_id = |user: &str| {
        delivered
            .iter()
            .find(|a| a["user"] == user)
            .and_then(|a| a["id"].as_str())
            .unwrap_or_else(|| panic!("{user}'s action in {delivered:?}"))
            .to_string()
    };
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    assert_eq!(
        delivered_id("bob"),
        bob,
        "a re-delivered action keeps its id"
    );
    let dave = delivered_id("dave");
    assert_ne!(
        dave, carol,
        "an id handed out after the backup is not reused"
    );
    assert_ne!(dave, bob);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn inputs_are_bounded_and_only_what_is_read_is_kept() {
    let dir = scratch("bounded");
    let jbc = bytecode_in(&dir, ECHO);
    let jbc = jbc.display().to_string();
    let data = dir.join("data");
    let service = Service::start(&data, &["--deploy", &jbc, "--clock", "event"]);
    let track = |user: &str, at: &str, extra: &str| {
        service.json(
            "POST",
            "/v1/track",
            &format!(
                r#"{{"event":"Ping","userId":"{user}","timestamp":"{at}","properties":{{"n":1,"note":"x"}}{extra}}}"#
            ),
        )
    };
    // A user id of more than 256 bytes.
    let (status, answer) = track(&"u".repeat(257), "2026-01-01T00:00:00Z", "");
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "schema-mismatch");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("at most 256 bytes")),
        "{answer}"
    );
    // A message over 32 KiB, alone or in a batch.
    let context = format!(r#","context":{{"page":"{}"}}"#, "p".repeat(40_000));
    let (status, answer) = track("u1", "2026-01-01T00:00:00Z", &context);
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "too-large");
    let big = format!(
        r#"{{"type":"track","event":"Ping","userId":"u1","timestamp":"2026-01-01T00:00:00Z","properties":{{"n":1}}{context}}}"#
    );
    let (status, answer) = service.json(
        "POST",
        "/v1/batch",
        &format!(
            r#"{{"batch":[{big},{{"type":"track","event":"Ping","userId":"u2","timestamp":"2026-01-01T00:00:00Z","properties":{{"n":2}}}}]}}"#
        ),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(answer["refused"][0]["code"], "too-large", "{answer}");
    // A payload no schema declares is accepted and not kept.
    let context = format!(r#","context":{{"page":"{}"}}"#, "q".repeat(20_000));
    let (status, answer) = track("u3", "2026-01-01T00:00:01Z", &context);
    assert_eq!(status, 200, "{answer}");
    // A timestamp a day and more past the machine's clock would pin the clock there.
    let (status, answer) = track("u4", "2099-01-01T00:00:00Z", "");
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "too-far-ahead", "{answer}");
    let (_, user) = service.json("GET", "/v1/users/u4", "");
    assert_eq!(
        user["error"]["code"], "no-user",
        "nothing of it was applied"
    );
    service.stop();

    let db = rusqlite::Connection::open(data.join("journey.db")).expect("the store");
    let logged: Vec<Vec<u8>> = db
        .prepare("SELECT body FROM inputs")
        .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
        .expect("the inputs kept");
    let logged: Vec<String> = logged
        .into_iter()
        .map(|b| String::from_utf8(b).expect("UTF-8"))
        .collect();
    assert_eq!(logged.len(), 2, "{logged:?}");
    for body in &logged {
        assert!(
            !body.contains("context") && !body.contains("note") && body.len() < 200,
            "{body}"
        );
    }
    drop(db);

    // A wider skew takes it.
    let service = Service::start(
        &data,
        &["--deploy", &jbc, "--clock", "event", "--max-skew", "30000d"],
    );
    let (status, answer) = service.json(
        "POST",
        "/v1/track",
        r#"{"event":"Ping","userId":"u4","timestamp":"2099-01-01T00:00:00Z","properties":{"n":1}}"#,
    );
    assert_eq!(status, 200, "{answer}");
    service.stop();
    let (code, said) = run(&[
        "serve",
        "--data",
        &data.display().to_string(),
        "--max-skew",
        "soon",
    ]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("is not a duration"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A sink that keeps failing backs off (up to a minute between tries) and writes its error at
/// most once per interval; a SIGTERM in the middle of a long backoff still stops the service
/// in well under 5 s, leaving the action for the next start.
#[test]
fn a_failing_sink_neither_floods_the_log_nor_holds_up_a_stop() {
    let dir = scratch("failing-sink");
    let jbc = bytecode_in(&dir, ECHO);
    let jbc = jbc.display().to_string();
    // Nothing listens there: every delivery fails at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let sink = format!("webhook:http://127.0.0.1:{port}/hook");
    let service = Service::start(
        &dir.join("data"),
        &[
            "--deploy",
            &jbc,
            "--sink",
            &sink,
            "--allow-host",
            "127.0.0.1",
        ],
    );
    ping(&service, "u1", 1);
    // 0.1 + 0.2 + … + 3.2 s of backoff: the next wait is 6.4 s long.
    std::thread::sleep(Duration::from_millis(7_000));
    let metrics = service.request("GET", "/metrics", b"").1;
    let failures: u64 = metrics
        .lines()
        .find(|l| l.starts_with("journey_delivery_failures_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(failures >= 5, "{metrics}");
    let stopping = Instant::now();
    let said = service.stop();
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(5), "the stop took {took:?}");
    let lines = said.lines().filter(|l| l.contains("retrying")).count();
    assert!(lines <= 2, "{failures} failures in {lines} lines:\n{said}");
    assert!(
        said.contains("left for the next start") || said.contains("stopping while failing"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
