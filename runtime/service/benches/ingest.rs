//! Durable ingest: the `journey-runtime` binary under W-cart's journeys and event mix, over
//! HTTP, with every batch committed to SQLite (`--sync full`) before it is answered; then the
//! timers those events set, fired by moving event time on. Method and figures:
//! docs/performance.md.
//!
//! `INGEST_USERS` (20,000 by default) users are identified, then `INGEST_EVENTS` tracked events
//! (3 per user by default) are sent in `/v1/batch` requests of `INGEST_BATCH` (1,000) messages
//! from `INGEST_CLIENTS` (2) connections at a time. Request bodies are built before the clock
//! starts. "Per core" divides by the CPU time the service process used (user + system, from
//! /proc), not by wall time. Then: a deployment while a client keeps sending (the longest a
//! batch waited), the store's size, and a restart (how long until the service listens).
//!
//! `INGEST_BINARY` runs another `journey-runtime` binary (an older build, to compare), and
//! `INGEST_ARGS` adds flags to `serve` (`--memory-limit 256MiB`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../../tests/support/wcart.rs"]
mod wcart;

/// A request that must be answered 200; the whole response.
fn request(method: &str, address: &str, path: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).expect("connects");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("writes");
    stream.write_all(body).expect("writes");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reads");
    assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
    response
}

fn post(address: &str, path: &str, body: &[u8]) -> String {
    request("POST", address, path, body)
}

/// The service's CPU time so far (user + system), in seconds.
fn cpu_seconds(child: &Child) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 14th field.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SC_CLK_TCK is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

fn metric(address: &str, name: &str) -> f64 {
    let mut stream = TcpStream::connect(address).expect("connects");
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .expect("writes");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("reads");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Sends bodies from `clients` connections at a time; returns the wall time.
fn send_all(address: &str, bodies: Vec<String>, clients: usize) -> Duration {
    let started = Instant::now();
    let queue = std::sync::Mutex::new(bodies.into_iter());
    std::thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(|| loop {
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some(body) = next else { return };
                post(address, "/v1/batch", body.as_bytes());
            });
        }
    });
    started.elapsed()
}

/// Starts the service on the data directory: the child, its address, and what it said before
/// listening.
fn start_service(dir: &std::path::Path, jbc: &std::path::Path) -> (Child, String, String) {
    let binary = std::env::var("INGEST_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_journey-runtime").into());
    let extra = std::env::var("INGEST_ARGS").unwrap_or_default();
    let mut child = Command::new(binary)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--clock",
            "event",
            "--sync",
            "full",
        ])
        .arg("--data")
        .arg(dir.join("data"))
        .arg("--deploy")
        .arg(jbc)
        .args(extra.split_whitespace())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("starts");
    let Some(stderr) = child.stderr.take() else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no stderr");
    };
    let mut stderr = std::io::BufReader::new(stderr);
    let mut said = String::new();
    loop {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap_or(0) == 0 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the service stopped: {said}");
        }
        if let Some(at) = line
            .trim()
            .strip_prefix("journey-runtime: listening on http://")
        {
            return (child, at.to_string(), said);
        }
        said.push_str(&line);
    }
}

fn main() {
    let users = wcart::setting("INGEST_USERS", 20_000);
    let batch = wcart::setting("INGEST_BATCH", 1_000);
    let clients = wcart::setting("INGEST_CLIENTS", 2).max(1);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let program = wcart::program(&root);
    let dir = std::env::temp_dir().join(format!("journey-ingest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    let jbc = dir.join("wcart.jbc");
    std::fs::write(&jbc, journey_runtime::bytecode::write(&program)).expect("writes");

    // Bodies first: identifies, then tracks over 30 days of event time.
    let time = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default()
    };
    let start = time(wcart::START_MS);
    let identifies: Vec<String> = (0..users)
        .map(|u| format!(r#"{{"type":"identify","userId":"u{u}","timestamp":"{start}","traits":{{"plan":"paid","country":"US","lifetime_value":250.0,"signed_up_at":"{start}","tags":[],"timezone":"America/New_York"}}}}"#))
        .collect();
    let events = wcart::setting("INGEST_EVENTS", users * 3);
    let tracks: Vec<String> = wcart::stream(users, events)
        .map(|t| {
            let (i, rank, at) = (t.index, t.rank, time(t.at_ms));
            let cart = format!("c{rank}-{}", t.cart);
            match t.kind {
                wcart::Kind::Added { price } => format!(r#"{{"type":"track","event":"ProductAdded","userId":"u{rank}","timestamp":"{at}","properties":{{"product_id":"p1","cart_id":"{cart}","name":"Shoe","price":{price:.2},"product":{{"sku":"s1"}}}}}}"#),
                wcart::Kind::Viewed { from_ads: true } => format!(r#"{{"type":"track","event":"PageViewed","userId":"u{rank}","timestamp":"{at}","properties":{{"url":"/shop","utm_source":"ads"}}}}"#),
                wcart::Kind::Viewed { from_ads: false } => format!(r#"{{"type":"track","event":"PageViewed","userId":"u{rank}","timestamp":"{at}","properties":{{"url":"/shop"}}}}"#),
                wcart::Kind::Completed => format!(r#"{{"type":"track","event":"OrderCompleted","userId":"u{rank}","timestamp":"{at}","properties":{{"order_id":"o{i}","cart_id":"{cart}","total":20.0,"currency":"USD"}}}}"#),
            }
        })
        .collect();
    let bodies = |messages: &[String]| -> Vec<String> {
        messages
            .chunks(batch)
            .map(|c| format!(r#"{{"batch":[{}]}}"#, c.join(",")))
            .collect()
    };
    let (identify_bodies, track_bodies) = (bodies(&identifies), bodies(&tracks));
    let bytes: usize = track_bodies.iter().map(String::len).sum();

    let (mut child, address, _) = start_service(&dir, &jbc);
    let rss = |child: &Child, key: &str| -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    let cpu = cpu_seconds(&child);
    let wall = send_all(&address, identify_bodies, clients);
    let identify_cpu = cpu_seconds(&child) - cpu;
    println!(
        "identify: {users} users in {:.2} s = {:.0}/s wall, {:.0}/s per service CPU-second",
        wall.as_secs_f64(),
        users as f64 / wall.as_secs_f64(),
        users as f64 / identify_cpu.max(1e-9)
    );

    let (commits, micros) = (
        metric(&address, "journey_commits_total"),
        metric(&address, "journey_commit_microseconds_total"),
    );
    let timers = metric(&address, "journey_timers_fired_total");
    let cpu = cpu_seconds(&child);
    let wall = send_all(&address, track_bodies, clients);
    let track_cpu = cpu_seconds(&child) - cpu;
    let commits = metric(&address, "journey_commits_total") - commits;
    let micros = metric(&address, "journey_commit_microseconds_total") - micros;
    let fired = metric(&address, "journey_timers_fired_total") - timers;
    println!(
        "track: {events} events ({:.1} MB of JSON) in {:.2} s = {:.0} events/s wall, {:.0} per service CPU-second ({:.2} CPU-s); {commits} commits, {:.2} ms each on average; {fired} timers fired on the way",
        bytes as f64 / 1e6,
        wall.as_secs_f64(),
        events as f64 / wall.as_secs_f64(),
        events as f64 / track_cpu.max(1e-9),
        track_cpu,
        micros / commits.max(1.0) / 1000.0
    );

    println!(
        "memory: {:.0} MiB resident now, {:.0} MiB at the most; {} users in memory",
        rss(&child, "VmRSS:"),
        rss(&child, "VmHWM:"),
        metric(&address, "journey_users_in_memory")
    );

    // A deployment while a client sends batches of 100 events: the longest a batch waited.
    let second = {
        let mut other = program.clone();
        other.strings.push("another deployment".into());
        journey_runtime::bytecode::write(&other)
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    // (The stream's last events again: at the clock, so processed at once.)
    let small: Vec<String> = tracks.iter().rev().take(100).cloned().collect();
    let small = format!(r#"{{"batch":[{}]}}"#, small.join(","));
    let (deploy, latencies) = std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            let mut latencies = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sent = Instant::now();
                post(&address, "/v1/batch", small.as_bytes());
                latencies.push(sent.elapsed());
            }
            latencies
        });
        std::thread::sleep(Duration::from_millis(500));
        let started = Instant::now();
        request("PUT", &address, "/v1/journeys", &second);
        let deploy = started.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (deploy, sender.join().unwrap_or_default())
    });
    let mut sorted = latencies.clone();
    sorted.sort();
    let p99 = sorted
        .get(sorted.len().saturating_mul(99) / 100)
        .copied()
        .unwrap_or_default();
    println!(
        "deploy: answered in {:.1} ms at {events} events; {} batches of 100 meanwhile, p99 {:.1} ms, the longest {:.1} ms; {:.0} MiB resident after",
        deploy.as_secs_f64() * 1000.0,
        latencies.len(),
        p99.as_secs_f64() * 1000.0,
        sorted.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        rss(&child, "VmRSS:"),
    );

    // Timers: move event time 60 days on; everything left fires, durably, in one command.
    let (timers, actions) = (
        metric(&address, "journey_timers_fired_total"),
        metric(&address, "journey_actions_total"),
    );
    let cpu = cpu_seconds(&child);
    let started = Instant::now();
    post(
        &address,
        "/v1/clock",
        format!(
            r#"{{"until":"{}"}}"#,
            time(wcart::START_MS + 90 * 86_400_000)
        )
        .as_bytes(),
    );
    let wall = started.elapsed();
    let timer_cpu = cpu_seconds(&child) - cpu;
    let fired = metric(&address, "journey_timers_fired_total") - timers;
    let actions = metric(&address, "journey_actions_total") - actions;
    println!(
        "timers: {fired} fired ({actions} actions to the outbox) in {:.2} s = {:.0} timers/s wall, {:.0} per service CPU-second",
        wall.as_secs_f64(),
        fired / wall.as_secs_f64(),
        fired / timer_cpu.max(1e-9)
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let size = std::fs::metadata(dir.join("data").join("journey.db")).map_or(0, |m| m.len())
        + std::fs::metadata(dir.join("data").join("journey.db-wal")).map_or(0, |m| m.len());
    println!(
        "store: {:.1} MB, {:.0} bytes per user, {:.0} per event",
        size as f64 / 1e6,
        size as f64 / users as f64,
        size as f64 / (users + events) as f64
    );

    // A restart: how long until the service answers again.
    let started = Instant::now();
    let (mut child, _, said) = start_service(&dir, &jbc);
    let restart = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "restart: listening again after {:.3} s ({} messages before it; {})",
        restart.as_secs_f64(),
        users + events,
        said.trim()
    );
    if std::env::var_os("INGEST_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("kept: {}", dir.display());
    }
}
