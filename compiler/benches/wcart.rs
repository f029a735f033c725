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

use journey_compiler::workspace::FileSystem;
use journey_runtime::value::Value;
use journey_runtime::vm::input::Input;
use journey_runtime::vm::Engine;

/// The allocator journeyc runs the VM with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

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
    let users: usize = std::env::var("WCART_USERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let events: usize = std::env::var("WCART_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(users * 3);
    // `WCART_ONE_BY_ONE=1`: `Engine::push` for each input rather than `push_batch`.
    let one_by_one = std::env::var_os("WCART_ONE_BY_ONE").is_some();
    // `WCART_JIT=off`: every predicate interpreted (by default hot ones run as native code).
    let jit = std::env::var("WCART_JIT").map_or(true, |v| v != "off");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let files: Vec<PathBuf> = [
        "shop",
        "cart_abandonment",
        "winback",
        "onboarding",
        "trial_to_paid",
        "post_purchase",
    ]
    .iter()
    .map(|f| root.join("examples").join(format!("{f}.journey")))
    .collect();
    let analysis = journey_compiler::analyse(&FileSystem, &files);
    let program = journey_compiler::lower::lower(
        &analysis.workspace,
        analysis.program.as_ref().expect("the examples check"),
    );
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

    let start = 1_767_225_600_000i64; // 2026-01-01T00:00:00Z
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

    let mut rng = Rng(0x5EED_CA27);
    let span = 30 * 86_400_000i64;
    let step = (span / events as i64).max(1);
    let currency = Value::str("USD");
    let before_timers = engine.pending_timers();
    let fired_before = engine.timers_fired;
    let started = Instant::now();
    let mut chunk: Vec<Input> = Vec::with_capacity(100_000);
    let mut generating = std::time::Duration::ZERO;
    let mut i = 0;
    let mut sends = 0;
    engine.timeline.clear();
    while i < events {
        let generate = Instant::now();
        chunk.clear();
        for _ in 0..100_000.min(events - i) {
            // Log-uniform rank: a Zipf-like skew towards the first users.
            let rank = ((users as f64).powf(rng.unit()) as usize).min(users) - 1;
            let user = names[rank].clone();
            let time = start + i as i64 * step;
            let cart = Value::str(&format!("c{rank}-{}", i / 50_000));
            let kind = rng.next() % 10;
            let (event, fields): (u32, Vec<Value>) = if kind < 6 {
                let price = 5.0 + (rng.next() % 9500) as f64 / 100.0;
                (
                    added,
                    vec![
                        Value::str("p1"),
                        cart,
                        Value::str("Shoe"),
                        Value::Float(price),
                        Value::Record(vec![Value::str("s1"), Value::Absent].into()),
                    ],
                )
            } else if kind < 9 {
                (
                    viewed,
                    vec![
                        Value::str("/shop"),
                        if kind == 8 {
                            Value::str("ads")
                        } else {
                            Value::Absent
                        },
                    ],
                )
            } else {
                (
                    completed,
                    vec![
                        Value::str(&format!("o{i}")),
                        cart,
                        Value::Float(20.0),
                        currency.clone(),
                    ],
                )
            };
            chunk.push(Input::Track {
                user,
                time,
                event,
                fields: fields.into(),
            });
            i += 1;
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
