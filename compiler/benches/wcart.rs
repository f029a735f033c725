//! W-cart: the VM under a shop's event stream. Method and figures: docs/performance.md.
//!
//! Users (1,000,000 by default; `WCART_USERS` to change) are identified, then tracked events
//! arrive over 30 days of event time: 60% ProductAdded, 30% PageViewed, 10% OrderCompleted, the
//! user drawn from a Zipf-like (log-uniform rank) distribution, so a few users are very active.
//! Five example journeys run (cart abandonment, winback, onboarding, trial-to-paid,
//! post-purchase), their timers firing along the way. One thread. Prints events per second
//! (tracks plus the timers they fire), peak RSS, bytes per live instance, and how many
//! predicates ran as native code (`WCART_JIT=off`: none).

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use journey_runtime::value::Value;
use journey_runtime::vm::input::Input;
use journey_runtime::vm::Engine;

#[path = "../../tests/support/wcart.rs"]
mod wcart;

/// The allocator journeyc runs the VM with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(String::from)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let users = wcart::setting("WCART_USERS", 1_000_000);
    let events = wcart::setting("WCART_EVENTS", users * 3);
    // `WCART_ONE_BY_ONE=1`: `Engine::push` for each input rather than `push_batch`.
    let one_by_one = std::env::var_os("WCART_ONE_BY_ONE").is_some();
    // `WCART_JIT=off`: every predicate interpreted (by default hot ones run as native code).
    let jit = std::env::var("WCART_JIT").map_or(true, |v| v != "off");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let program = wcart::program(&root);
    journey_runtime::bytecode::verify::verify(&program).expect("verifies");
    let event = |name: &str| {
        program
            .events
            .iter()
            .position(|e| program.string(e.name) == name)
            .expect("event") as u32
    };
    let (added, viewed, completed) = (
        event("ProductAdded"),
        event("PageViewed"),
        event("OrderCompleted"),
    );
    let profile = program.record_fields(program.profile).expect("a profile");
    let field = |name: &str| {
        profile
            .iter()
            .position(|f| program.string(f.name) == name)
            .expect("field") as u32
    };

    let start = wcart::START_MS;
    let names: Vec<Arc<str>> = (0..users)
        .map(|u| Arc::from(format!("u{u}").as_str()))
        .collect();
    let mut engine = Engine::new(&program);
    if !jit {
        engine.set_jit(journey_runtime::jit::Policy::Off);
    }
    let identify_started = Instant::now();
    for user in &names {
        engine.push(Input::Identify {
            user: user.clone(),
            time: start,
            traits: vec![
                (field("plan"), Value::str("paid")),
                (field("country"), Value::str("US")),
                (field("lifetime_value"), Value::Float(250.0)),
                (field("signed_up_at"), Value::Timestamp(start)),
                (field("tags"), Value::List(Vec::new().into())),
                (field("timezone"), Value::str("America/New_York")),
            ],
        });
    }
    let identify_time = identify_started.elapsed();

    let currency = Value::str("USD");
    let before_timers = engine.pending_timers();
    let fired_before = engine.timers_fired;
    let started = Instant::now();
    let mut stream = wcart::stream(users, events).peekable();
    // Inputs are made and pushed a chunk at a time (`WCART_CHUNK`, 1,000 by default), as a
    // service decodes a batch and pushes it: the inputs are fresh in cache when the engine
    // reads them. (Chunks of 100,000, as until 2026-11-30, leave each input's fields to be
    // fetched from memory again, a cost no caller that decodes what it pushes pays.)
    let chunk_size = wcart::setting("WCART_CHUNK", 1_000).max(1);
    let mut chunk: Vec<Input> = Vec::with_capacity(chunk_size);
    let mut generating = std::time::Duration::ZERO;
    let mut sends = 0;
    engine.timeline.clear();
    while stream.peek().is_some() {
        let generate = Instant::now();
        chunk.clear();
        for tracked in stream.by_ref().take(chunk_size) {
            let event = match tracked.kind {
                wcart::Kind::Added { .. } => added,
                wcart::Kind::Viewed { .. } => viewed,
                wcart::Kind::Completed => completed,
            };
            chunk.push(Input::Track {
                user: names[tracked.rank].clone(),
                time: tracked.at_ms,
                event,
                fields: tracked.fields(&currency).into(),
            });
        }
        generating += generate.elapsed();
        if one_by_one {
            for input in chunk.drain(..) {
                engine.push(black_box(input));
            }
        } else {
            engine.push_batch(chunk.drain(..));
        }
        // A consumer takes the timeline as it grows (a service streams it out).
        sends += engine
            .timeline
            .drain(..)
            .filter(|r| matches!(r.kind, journey_runtime::vm::RecordKind::Send { .. }))
            .count();
    }
    let total = started.elapsed() - generating;
    let (live, bytes) = engine.instance_memory();
    let timers_left = engine.pending_timers();
    let entered: u64 = engine.stats.iter().map(|s| s.entered).sum();
    let ended: u64 = engine.stats.iter().flat_map(|s| s.outcomes.values()).sum();
    println!(
        "users {users}, tracked events {events}, journeys {}",
        program.journeys.len()
    );
    println!(
        "identify: {:.2} s ({:.0} per second)",
        identify_time.as_secs_f64(),
        users as f64 / identify_time.as_secs_f64()
    );
    let fired = engine.timers_fired - fired_before;
    println!(
        "track: {:.2} s = {:.0} events/s on one core (generation excluded); {fired} timers fired on the way ({:.0} events + timers per second)",
        total.as_secs_f64(),
        events as f64 / total.as_secs_f64(),
        (events as u64 + fired) as f64 / total.as_secs_f64()
    );
    println!("instances entered {entered}, ended {ended}, live {live}; sends {sends}; timers {before_timers} before, {timers_left} after");
    println!(
        "live instance memory: {} bytes each on average (record + slots; profile and history are per user)",
        bytes.checked_div(live).unwrap_or(0)
    );
    println!("peak RSS: {} MiB", peak_rss_kib() / 1024);
    println!(
        "JIT {}: {} predicates ran as native code",
        if jit { "on" } else { "off" },
        engine.compiled_predicates()
    );
}
