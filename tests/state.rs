//! A user's state in and out of memory (`vm::state`): an engine whose users are evicted to
//! records at any moment between inputs, and restored when an input or a timer needs them,
//! gives exactly the timeline of the engine that kept them all; records round-trip byte for
//! byte; a damaged record is refused whole and never upsets the engine.

#[path = "support/stream.rs"]
mod stream;
mod support;

use std::collections::BTreeMap;

use journey_compiler::simulate::{decode_lines, record_json};
use journey_runtime::bytecode::Program;
use journey_runtime::vm::input::Input;
use journey_runtime::vm::state::HistoryRow;
use journey_runtime::vm::Engine;

/// A deterministic source of choices.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A stored user: its record, its history and its first timer's key.
type Stored = (Vec<u8>, Vec<HistoryRow>, Option<(i64, u64)>);

/// An engine and a store of the users it evicted, by name.
struct Evicting<'p> {
    engine: Engine<'p>,
    store: BTreeMap<String, Stored>,
    lines: Vec<String>,
    evicted: usize,
}

impl<'p> Evicting<'p> {
    fn new(program: &'p Program) -> Evicting<'p> {
        Evicting {
            engine: Engine::new(program),
            store: BTreeMap::new(),
            lines: Vec::new(),
            evicted: 0,
        }
    }

    fn restore(&mut self, name: &str) {
        if let Some((record, history, _)) = self.store.remove(name) {
            self.engine
                .restore(&record, &history)
                .expect("a record the engine wrote");
        }
    }

    /// Brings back every stored user with a timer due by `until`.
    fn bring_back(&mut self, until: i64) {
        let due: Vec<String> = self
            .store
            .iter()
            .filter(|(_, (_, _, next))| next.is_some_and(|(at, _)| at <= until))
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            self.restore(&name);
        }
    }

    fn drain(&mut self) {
        let engine = &self.engine;
        self.lines.extend(
            engine
                .timeline
                .iter()
                .map(|r| record_json(engine, r).to_string()),
        );
        self.engine.timeline.clear();
    }

    fn push(&mut self, input: Input) {
        let time = input.time().max(self.engine.now());
        self.bring_back(time);
        self.restore(input.user());
        self.engine.push(input);
        self.drain();
    }

    fn finish(&mut self, until: i64) {
        self.bring_back(until);
        self.engine.finish(Some(until));
        self.drain();
    }

    /// Evicts each user in memory with probability `1/one_in`.
    fn evict_some(&mut self, rng: &mut Rng, one_in: u64) {
        let chosen: Vec<u32> = self
            .engine
            .users_held()
            .into_iter()
            .filter(|_| rng.below(one_in) == 0)
            .collect();
        for evicted in self.engine.evict(&chosen) {
            self.evicted += 1;
            let name = evicted.name.as_str().to_string();
            assert!(
                !self.store.contains_key(&name),
                "{name} evicted while stored"
            );
            self.store
                .insert(name, (evicted.record, evicted.history, evicted.next_timer));
        }
    }
}

fn decoded(program: &Program, lines: &[String]) -> Vec<Input> {
    let mut rejected = Vec::new();
    let mut inputs = decode_lines(program, "random", &lines.join("\n"), &mut rejected);
    assert!(rejected.is_empty(), "{:?}", rejected.first());
    inputs.sort_by_key(Input::time);
    inputs
}

/// The examples over a random stream of 40 days: users evicted at random after every input
/// (and all of them every 50 inputs) give the timeline of the engine that kept them, record
/// for record, and the same counts.
#[test]
fn evicting_users_between_inputs_changes_nothing() {
    let program = support::compile_examples();
    let lines = stream::random_stream(0x5_7A7E, 3000, 60, 600);
    let until = 1_767_225_600_000 + 40 * 86_400_000;
    let mut kept = Engine::new(&program);
    for input in decoded(&program, &lines) {
        kept.push(input);
    }
    kept.finish(Some(until));
    let expected: Vec<String> = kept
        .timeline
        .iter()
        .map(|r| record_json(&kept, r).to_string())
        .collect();
    assert!(expected.len() > 500, "{} records", expected.len());

    for (seed, one_in) in [(1u64, 2u64), (2, 1), (3, 7)] {
        let mut rng = Rng(0x9E37_79B9 ^ seed);
        let mut evicting = Evicting::new(&program);
        for (n, input) in decoded(&program, &lines).into_iter().enumerate() {
            evicting.push(input);
            let one_in = if n % 50 == 49 { 1 } else { one_in };
            evicting.evict_some(&mut rng, one_in);
        }
        evicting.finish(until);
        assert!(evicting.evicted > 1000, "{} evictions", evicting.evicted);
        let first_difference = expected
            .iter()
            .zip(&evicting.lines)
            .position(|(a, b)| a != b);
        assert_eq!(
            first_difference.map(|at| (&expected[at], &evicting.lines[at])),
            None,
            "1 in {one_in}: the timelines part"
        );
        assert_eq!(expected.len(), evicting.lines.len(), "1 in {one_in}");
        assert_eq!(kept.stats, evicting.engine.stats, "1 in {one_in}");
    }
}

/// The users an engine lists as touched are all whose records changed: a copy of every
/// user's record, refreshed only for those, stays equal to the engine's own records.
#[test]
fn the_touched_users_are_all_that_changed() {
    let program = support::compile_examples();
    let lines = stream::random_stream(0x70_0C4E, 2500, 50, 700);
    let mut engine = Engine::new(&program);
    engine.track_touched(true);
    let mut copies: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut refreshed = 0;
    for (n, input) in decoded(&program, &lines).into_iter().enumerate() {
        let user = input.user().to_string();
        engine.push(input);
        let touched = engine.take_touched();
        assert!(
            touched.contains(&engine.user_id(&user).expect("in memory")),
            "the input's user is touched"
        );
        for id in touched {
            refreshed += 1;
            copies.insert(engine.user_name(id).to_string(), engine.record(id).0);
        }
        if n % 100 == 99 {
            for id in engine.users_held() {
                let name = engine.user_name(id).to_string();
                assert_eq!(
                    copies.get(&name),
                    Some(&engine.record(id).0),
                    "{name} changed untouched by input {n}"
                );
            }
        }
    }
    assert!(refreshed > 2500, "{refreshed}");
}

/// A record restored and evicted again is the same bytes; a damaged one (cut short, a byte
/// changed) is refused or restores a user, never upsets the engine, and a refusal leaves
/// nothing behind.
#[test]
fn records_round_trip_and_damaged_ones_are_refused_whole() {
    let program = support::compile_examples();
    let lines = stream::random_stream(0xB17E5, 1500, 30, 900);
    let mut engine = Engine::new(&program);
    for input in decoded(&program, &lines) {
        engine.push(input);
    }
    engine.timeline.clear();
    let ids = engine.users_held();
    let records: Vec<_> = ids.iter().map(|id| engine.record(*id)).collect();
    for (id, (_, next)) in ids.iter().zip(&records) {
        assert_eq!(&engine.next_timer_of(*id), next);
    }
    let evicted = engine.evict(&ids);
    for (e, (record, next)) in evicted.iter().zip(&records) {
        assert_eq!(&e.record, record, "`record` gives what `evict` takes");
        assert_eq!(&e.next_timer, next);
    }
    assert_eq!(evicted.len(), 30);
    assert_eq!(engine.user_count(), 0);
    assert_eq!(engine.pending_timers(), 0, "every timer left with its user");
    for e in &evicted {
        let id = engine.restore(&e.record, &e.history).expect("restores");
        assert!(
            engine.restore(&e.record, &e.history).is_err(),
            "already in memory"
        );
        let again = engine.evict(&[id]);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].record, e.record, "{}", e.name.as_str());
        assert_eq!(again[0].history, e.history, "{}", e.name.as_str());
        assert_eq!(again[0].next_timer, e.next_timer);
    }
    assert!(
        evicted.iter().map(|e| e.history.len()).sum::<usize>() > 100,
        "the users keep history"
    );
    let mut rng = Rng(0x00DA_4A6E);
    let mut refused = 0;
    for e in &evicted {
        for _ in 0..40 {
            let mut damaged = e.record.clone();
            let mut history = e.history.clone();
            match rng.below(4) {
                0 => damaged.truncate(rng.below(damaged.len() as u64) as usize),
                1 if !history.is_empty() => {
                    let row = rng.below(history.len() as u64) as usize;
                    if rng.below(2) == 0 {
                        history.remove(row);
                    } else {
                        let fields = &mut history[row].fields;
                        let at = rng.below(fields.len() as u64) as usize;
                        fields[at] ^= 1 << rng.below(8);
                    }
                }
                _ => {
                    let at = rng.below(damaged.len() as u64) as usize;
                    damaged[at] ^= 1 << rng.below(8);
                }
            }
            let timers = engine.pending_timers();
            match engine.restore(&damaged, &history) {
                Ok(id) => {
                    let out = engine.evict(&[id]);
                    assert_eq!(out.len(), 1);
                }
                Err(_) => {
                    refused += 1;
                    assert_eq!(engine.user_count(), 0);
                    assert_eq!(engine.pending_timers(), timers);
                }
            }
        }
    }
    assert!(refused > 300, "{refused} refused");
    // Another program's record is refused.
    let other =
        support::compile_inline("event E { }\njourney j {\n  entry on E\n  send email \"x\"\n}\n");
    let mut stranger = Engine::new(&other);
    assert_eq!(
        stranger.restore(&evicted[0].record, &evicted[0].history),
        Err("a user record of another program".to_string())
    );
}
