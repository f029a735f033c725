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

/// A journey that sends on each `Go`, and again an hour later.
const TWO_SENDS: &str = r#"
event Go { n: int }
journey j {
  entry on Go as g
  send email "first" { n: g.n }
  wait 1h
  send email "second" { n: g.n }
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
    // The first goes on serving, and says when the check of its whole store beside it
    // has passed.
    ping(&first, "after", 1000);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, health) = first.json("GET", "/healthz", "");
        assert_eq!(status, 200, "{health}");
        if health["store"] == "checked" {
            break;
        }
        assert_eq!(health["store"], "checking", "{health}");
        assert!(
            Instant::now() < deadline,
            "the store is still being checked"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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

    // A damaged database is refused, with what to do, instead of every write failing later:
    // at the start where a start reads (the service's state), and by the check beside the
    // running service elsewhere (the outbox), which stops it.
    let database = data.join("journey.db");
    for leftover in ["journey.db-wal", "journey.db-shm"] {
        let _ = std::fs::remove_file(data.join(leftover));
    }
    let root = |table: &str| -> usize {
        let db = rusqlite::Connection::open_with_flags(
            &database,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("opens");
        db.query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = ?1",
            [table],
            |r| r.get(0),
        )
        .expect("a table")
    };
    let sound = std::fs::read(&database).expect("reads");
    for (table, listens) in [("outbox", true), ("meta", false)] {
        let page = root(table) - 1;
        let mut bytes = sound.clone();
        bytes[page * 4096..(page + 1) * 4096].fill(0xA5);
        std::fs::write(&database, &bytes).expect("writes");
        let (code, said) = refused_start(&data);
        assert_eq!(code, Some(2), "{table}: {said}");
        assert!(
            said.contains("is damaged") && said.contains("restore it from a backup"),
            "{table}: {said}"
        );
        assert_eq!(said.contains("listening on"), listens, "{table}: {said}");
        for leftover in ["journey.db-wal", "journey.db-shm"] {
            let _ = std::fs::remove_file(data.join(leftover));
        }
    }
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
        .prepare("SELECT body FROM commands WHERE kind = 'input'")
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

/// A data directory of schema 1 (the command log of earlier binaries) is moved into users'
/// state at the first start: the instances it built run on, the actions it delivered are not
/// delivered again, and the log is gone.
#[test]
fn a_schema_1_log_is_moved_into_users_state() {
    let dir = scratch("schema-1");
    let jbc = std::fs::read(bytecode_in(&dir, TWO_SENDS)).expect("reads");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("dir");
    let t = |hm: &str| {
        journey_runtime::vm::input::parse_time(&format!("2026-01-01T{hm}:00Z")).expect("time")
    };
    {
        let db = rusqlite::Connection::open(data.join("journey.db")).expect("opens");
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE log (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, at INTEGER NOT NULL,
                 body BLOB NOT NULL);
             CREATE TABLE outbox (n INTEGER PRIMARY KEY, id TEXT NOT NULL,
                 seq INTEGER NOT NULL REFERENCES log(seq), user TEXT NOT NULL,
                 action TEXT NOT NULL);
             CREATE INDEX outbox_by_user ON outbox(user, n);
             CREATE TABLE cursors (sink TEXT PRIMARY KEY, delivered INTEGER NOT NULL);
             PRAGMA user_version = 1;",
        )
        .expect("schema 1");
        let mut input = String::new();
        for (user, at) in [("u1", "10:00"), ("u2", "10:30")] {
            input.push_str(&format!(
                "{} {{\"type\":\"track\",\"event\":\"Go\",\"userId\":\"{user}\",\"timestamp\":\"2026-01-01T{at}:00Z\",\"properties\":{{\"n\":1}}}}\n",
                t(at)
            ));
        }
        let activate = br#"{"journey":"j","operation":"activate"}"#.to_vec();
        for (seq, kind, at, body) in [
            (1, "deploy", t("09:00"), jbc.clone()),
            (2, "state", t("09:00"), activate),
            (3, "input", t("10:30"), input.into_bytes()),
        ] {
            db.execute(
                "INSERT INTO log (seq, kind, at, body) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![seq, kind, at, body],
            )
            .expect("logs");
        }
        for (n, user, at) in [(1, "u1", "10:00"), (2, "u2", "10:30")] {
            let action = format!(
                r#"{{"id":"3-{n}","user":"{user}","template":"first","at":"2026-01-01T{at}:00Z"}}"#
            );
            db.execute(
                "INSERT INTO outbox (n, id, seq, user, action) VALUES (?1, ?2, 3, ?3, ?4)",
                rusqlite::params![n, format!("3-{n}"), user, action],
            )
            .expect("outbox");
        }
    }
    let sink = dir.join("actions.jsonl");
    let sink_name = format!("jsonl:{}", sink.display());
    {
        let db = rusqlite::Connection::open(data.join("journey.db")).expect("opens");
        db.execute(
            "INSERT INTO cursors (sink, delivered) VALUES (?1, 2)",
            [&sink_name],
        )
        .expect("cursor");
    }
    let service = Service::start(&data, &["--clock", "event", "--sink", &sink_name]);
    let (_, user) = service.json("GET", "/v1/users/u1", "");
    assert_eq!(user["instances"][0]["step"], "wait_2", "{user}");
    let (status, moved) = service.json("POST", "/v1/clock", r#"{"until":"2026-01-01T12:00:00Z"}"#);
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["actions"], 2, "{moved}");
    let said = service.stop();
    let delivered: Vec<Value> = std::fs::read_to_string(&sink)
        .expect("the sink")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let seen: Vec<(&str, &str)> = delivered
        .iter()
        .map(|a| {
            (
                a["user"].as_str().unwrap_or(""),
                a["template"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(seen, [("u1", "second"), ("u2", "second")], "{said}");
    let db = rusqlite::Connection::open(data.join("journey.db")).expect("opens");
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, 3);
    let log: bool = db
        .prepare("SELECT 1 FROM sqlite_master WHERE name = 'log'")
        .and_then(|mut q| q.exists([]))
        .expect("reads");
    assert!(!log, "the log is gone");
    let inputs: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM commands WHERE kind = 'input'",
            [],
            |r| r.get(0),
        )
        .expect("inputs");
    assert_eq!(inputs, 1, "the log's inputs are kept for audit");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A data directory of schema 2 (users' records with a row id beside the name) is rewritten
/// at the first start: the users' state is intact and runs on.
#[test]
fn a_schema_2_store_is_rewritten_with_users_keyed_by_name() {
    let dir = scratch("schema-2");
    let jbc = bytecode_in(&dir, TWO_SENDS).display().to_string();
    let data = dir.join("data");
    let service = Service::start(&data, &["--deploy", &jbc, "--clock", "event"]);
    let body = r#"{"type":"track","event":"Go","userId":"bob","timestamp":"2026-01-01T10:00:00Z","properties":{"n":1}}"#;
    let (status, answer) = service.json("POST", "/v1/track", body);
    assert_eq!(status, 200, "{answer}");
    service.stop();
    {
        // What a binary of schema 2 wrote.
        let db = rusqlite::Connection::open(data.join("journey.db")).expect("opens");
        db.execute_batch(
            "ALTER TABLE users RENAME TO users_3;
             DROP INDEX users_due;
             CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                 record BLOB NOT NULL, due_at INTEGER, due_seq INTEGER);
             INSERT INTO users (name, record, due_at, due_seq)
                 SELECT name, record, due_at, due_seq FROM users_3;
             DROP TABLE users_3;
             CREATE INDEX users_due ON users(due_at, due_seq, name) WHERE due_at IS NOT NULL;
             PRAGMA user_version = 2;",
        )
        .expect("schema 2");
    }
    let service = Service::start(&data, &["--clock", "event"]);
    let (_, user) = service.json("GET", "/v1/users/bob", "");
    assert_eq!(user["instances"][0]["step"], "wait_2", "{user}");
    let (status, moved) = service.json("POST", "/v1/clock", r#"{"until":"2026-01-01T12:00:00Z"}"#);
    assert_eq!(status, 200, "{moved}");
    assert_eq!(
        moved["actions"], 1,
        "the timer the index held fired: {moved}"
    );
    service.stop();
    let db = rusqlite::Connection::open(data.join("journey.db")).expect("opens");
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, 3);
    let row_id: bool = db
        .prepare("SELECT 1 FROM pragma_table_info('users') WHERE name = 'id'")
        .and_then(|mut q| q.exists([]))
        .expect("reads");
    assert!(!row_id, "users are keyed by name alone");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the store keeps grows with live state, not with history: inputs older than
/// `--keep-inputs` go, and so do actions every sink delivered that are as old; users' state
/// stays.
#[test]
fn old_inputs_and_delivered_actions_leave_the_store() {
    let dir = scratch("prune");
    let jbc = bytecode_in(&dir, ECHO);
    let jbc = jbc.display().to_string();
    let data = dir.join("data");
    let sink = format!("jsonl:{}", dir.join("actions.jsonl").display());
    let service = Service::start(
        &data,
        &[
            "--deploy",
            &jbc,
            "--clock",
            "event",
            "--keep-inputs",
            "1s",
            "--sink",
            &sink,
        ],
    );
    let at = |minute: u32, user: u32| {
        let (hour, minute) = (minute / 60, minute % 60);
        format!(
            r#"{{"type":"track","event":"Ping","userId":"u{user}","timestamp":"2026-01-01T{hour:02}:{minute:02}:00Z","properties":{{"n":{user}}}}}"#
        )
    };
    let old: Vec<String> = (0..50).map(|u| at(0, u)).collect();
    let (status, answer) = service.json(
        "POST",
        "/v1/batch",
        &format!(r#"{{"batch":[{}]}}"#, old.join(",")),
    );
    assert_eq!(
        (status, &answer["accepted"]),
        (200, &Value::from(50)),
        "{answer}"
    );
    let count = |table: &str| -> i64 {
        rusqlite::Connection::open(data.join("journey.db"))
            .and_then(|db| db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)))
            .expect("counts")
    };
    assert_eq!(count("outbox"), 50);
    // Ten minutes of event time later, and more than a second of the machine's (the prune's
    // interval with --keep-inputs 1s), once the sink has delivered them, the old ones go.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut minute = 10;
    // (The newest one or two stay: not delivered yet, or not a second old.)
    while count("outbox") > 2 || count("commands") > 2 {
        assert!(
            Instant::now() < deadline,
            "outbox {}, inputs {}",
            count("outbox"),
            count("commands")
        );
        std::thread::sleep(Duration::from_millis(300));
        let (status, _) = service.json("POST", "/v1/track", &at(minute, 100));
        assert_eq!(status, 200);
        minute += 1;
    }
    assert!(count("users") >= 51, "users' state stays");
    service.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A commit that fails (here: every write past a file-size limit of one byte, as a full disk
/// would fail it) is answered 503 and forgotten: the users it touched come back from the store
/// as they were, nothing is rebuilt, the error is written once, and once writes succeed again
/// the same batch is taken exactly once.
#[test]
fn a_failed_commit_forgets_its_batch_and_the_service_goes_on() {
    let dir = scratch("full-disk");
    let jbc = bytecode_in(&dir, ECHO);
    let jbc = jbc.display().to_string();
    let data = dir.join("data");
    let service = Service::start(&data, &["--deploy", &jbc, "--clock", "event"]);
    let batch = |from: u32, minute: u32| {
        let messages: Vec<String> = (from..from + 10)
            .map(|u| format!(r#"{{"type":"track","event":"Ping","userId":"u{}","timestamp":"2026-01-01T00:{minute:02}:00Z","properties":{{"n":{u}}}}}"#, u % 20))
            .collect();
        format!(r#"{{"batch":[{}]}}"#, messages.join(","))
    };
    let entered = |service: &Service| {
        service.json("GET", "/v1/journeys/echo/stats", "").1["versions"][0]["entered"]
            .as_u64()
            .unwrap_or(0)
    };
    assert_eq!(service.json("POST", "/v1/batch", &batch(0, 1)).0, 200);
    assert_eq!(entered(&service), 10);
    let limit = |size: &str| {
        let status = Command::new("prlimit")
            .args([
                "--pid",
                &service.child.id().to_string(),
                &format!("--fsize={size}"),
            ])
            .status()
            .expect("prlimit runs");
        assert!(status.success());
    };
    limit("1:");
    for _ in 0..3 {
        let (status, answer) = service.json("POST", "/v1/batch", &batch(5, 2));
        assert_eq!(status, 503, "{answer}");
        assert_eq!(answer["error"]["code"], "not-stored", "{answer}");
    }
    // Nothing of the failed batches stayed: u5's one entry, and the counts, are as stored.
    assert_eq!(entered(&service), 10);
    let (_, user) = service.json("GET", "/v1/users/u5", "");
    assert_eq!(
        user["recent_actions"].as_array().map(Vec::len),
        Some(1),
        "{user}"
    );
    limit("unlimited:");
    assert_eq!(service.json("POST", "/v1/batch", &batch(5, 2)).0, 200);
    assert_eq!(entered(&service), 20);
    let (_, user) = service.json("GET", "/v1/users/u5", "");
    assert_eq!(
        user["recent_actions"].as_array().map(Vec::len),
        Some(2),
        "{user}"
    );
    let said = service.stop();
    assert_eq!(
        said.matches("a commit failed").count(),
        1,
        "written once:\n{said}"
    );
    assert!(
        !said.contains("moving") && !said.contains("replay"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A deployment and a lifecycle move are commands like inputs: killed before the next
/// checkpoint, the service applies them again at its start, with the inputs between.
#[test]
fn a_deployment_between_checkpoints_survives_a_kill() {
    let dir = scratch("deploy-kill");
    let jbc = std::fs::read(bytecode_in(&dir, ECHO)).expect("reads");
    let data = dir.join("data");
    let args = ["--clock", "event", "--checkpoint-every", "1h"];
    let service = Service::start(&data, &args);
    let (status, answer) = service.request("PUT", "/v1/journeys", &jbc);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        service.json("POST", "/v1/journeys/echo/activate", "").0,
        200
    );
    let ping =
        r#"{"event":"Ping","userId":"u1","timestamp":"2026-01-01T00:00:00Z","properties":{"n":1}}"#;
    assert_eq!(service.json("POST", "/v1/track", ping).0, 200);
    let before = service.json("GET", "/v1/journeys/echo/stats", "").1;
    service.kill();
    let service = Service::start(&data, &args);
    let (_, journeys) = service.json("GET", "/v1/journeys", "");
    assert_eq!(
        journeys["journeys"][0]["versions"][0]["state"], "active",
        "{journeys}"
    );
    assert_eq!(service.json("GET", "/v1/journeys/echo/stats", "").1, before);
    service.stop();
    // After a clean stop, nothing is applied again (no user comes into memory): the
    // checkpoint holds it all.
    let service = Service::start(&data, &args);
    let metrics = service.request("GET", "/metrics", b"").1;
    assert!(
        metrics.contains("\njourney_users_in_memory 0\n"),
        "{metrics}"
    );
    assert_eq!(service.json("GET", "/v1/journeys/echo/stats", "").1, before);
    service.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
