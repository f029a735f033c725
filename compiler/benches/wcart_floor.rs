//! W-cart's floor: the memory work of W-cart's stream with none of the journeys' semantics, to
//! tell how much of the engine's time per event the machine's memory alone takes. Method and
//! figures: docs/performance.md ("W-cart's floor").
//!
//! The same users (`WCART_USERS`, 1,000,000 by default), the same events (`WCART_EVENTS`, 3 per
//! user), made the same way in chunks of 1,000, as `wcart.rs`. For each event: the user is
//! found by name (names kept in place in the table, hashed with foldhash, as the engine's id
//! table does), the user's record (168 bytes, the engine's size) is read and written, the
//! event is kept in the user's history of its type; a `ProductAdded` starts an instance (a
//! 48-byte record in a slab, the engine's size) with a timer an hour later, an
//! `OrderCompleted` two with timers a day and a week later — about as many timers as W-cart
//! fires. Before each event the timers due fire, each reading its instance and its user's
//! record and freeing the instance. No entry rule, condition, send, clock or timeline:
//! whatever an engine does for the journeys comes on top of this. The fetches overlap as the
//! engine's do, and more: the users of 8 events are looked up together, and each timer reads
//! ahead the instance and user of the one 8 places on in its lane.
//!
//! `WCART_FLOOR=lookup` stops after the user's record, `WCART_FLOOR=history` after the history;
//! `WCART_FLOOR=packed` lays a user out as tightly as can be — history and instances inside
//! the record, so that each event and each timer reaches one record and nothing else.
//! Then it times random reads over a buffer the size of W-cart's heap (`WCART_LATENCY_MIB`).

use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use journey_runtime::value::Value;

#[path = "../../tests/support/wcart.rs"]
mod wcart;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A user name kept in place in the table (the engine keeps names of up to 22 bytes so).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Name([u8; 16]);

impl Name {
    fn of(name: &str) -> Name {
        let mut bytes = [0; 16];
        let len = name.len().min(16);
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        Name(bytes)
    }
}

type Kept = Vec<(i64, Arc<[Value]>)>;

/// A tracked event as pushed: (user, time, event type, fields).
type Event = (Arc<str>, i64, usize, Arc<[Value]>);

/// The engine's user record is 168 bytes: the history by type, the instance list, and room
/// for the rest (traits, entry logs, sends, pending entries), untouched here.
struct User {
    history: [Kept; 3],
    instances: Vec<u32>,
    seen: u64,
    _rest: [u64; 8],
}

/// The engine's instance record is 48 bytes.
#[derive(Clone, Copy, Default)]
struct Instance {
    user: u32,
    entered: i64,
    _rest: [u64; 4],
}

/// Events older than this leave a user's history (W-cart's longest window is 30 days).
const WINDOW_MS: i64 = 30 * 86_400_000;

struct Floor {
    ids: HashMap<Name, u32, foldhash::quality::RandomState>,
    users: Vec<User>,
    instances: Vec<Instance>,
    free: Vec<u32>,
    /// Timer lanes per delay, each in time order: (due, instance).
    lanes: [VecDeque<(i64, u32)>; 3],
    fired: u64,
    depth: Depth,
}

/// How much of the work the floor does (`WCART_FLOOR`).
#[derive(Clone, Copy, PartialEq)]
enum Depth {
    /// `lookup`: users found and their records touched, no more.
    Lookup,
    /// `history`: and their events kept.
    History,
    /// By default: and instances started, their timers fired.
    Full,
    /// `packed`: as if a user's history and instances lived inside its record: the record
    /// touched at each event and each timer, and nothing else.
    Packed,
}

const HOUR_MS: i64 = 3_600_000;
const DELAYS: [i64; 3] = [HOUR_MS, 24 * HOUR_MS, 7 * 24 * HOUR_MS];

impl Floor {
    fn user(&mut self, name: &str) -> u32 {
        let next = self.users.len() as u32;
        let id = *self.ids.entry(Name::of(name)).or_insert(next);
        if id == next {
            self.users.push(User {
                history: Default::default(),
                instances: Vec::new(),
                seen: 0,
                _rest: [0; 8],
            });
        }
        id
    }

    fn fire_until(&mut self, time: i64) {
        loop {
            let Some((lane, _)) = self
                .lanes
                .iter()
                .enumerate()
                .filter_map(|(l, lane)| lane.front().map(|(at, _)| (l, *at)))
                .filter(|(_, at)| *at <= time)
                .min_by_key(|(_, at)| *at)
            else {
                return;
            };
            let Some((_, index)) = self.lanes[lane].pop_front() else {
                return;
            };
            self.fired += 1;
            if self.depth == Depth::Packed {
                // (`index` is the user.)
                if let Some((_, ahead)) = self.lanes[lane].get(8) {
                    black_box(self.users[*ahead as usize].seen);
                }
                self.users[index as usize].seen += 1;
                continue;
            }
            // The instance of the timer 8 places on in the lane, and its user, read ahead:
            // the lanes say which instances fire next.
            if let Some((_, ahead)) = self.lanes[lane].get(8) {
                let user = self.instances[*ahead as usize].user;
                black_box(self.users[user as usize].instances.len());
            }
            let instance = self.instances[index as usize];
            let user = &mut self.users[instance.user as usize];
            user.seen += instance.entered as u64 & 1;
            if let Some(at) = user.instances.iter().position(|i| *i == index) {
                user.instances.swap_remove(at);
            }
            self.free.push(index);
        }
    }

    fn start(&mut self, user: u32, journey: u32, time: i64) {
        let due = time + DELAYS[journey as usize];
        if self.depth == Depth::Packed {
            self.users[user as usize].seen += 1;
            self.lanes[journey as usize].push_back((due, user));
            return;
        }
        let instance = Instance {
            user,
            entered: time,
            _rest: [0; 4],
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.instances[index as usize] = instance;
                index
            }
            None => {
                self.instances.push(instance);
                self.instances.len() as u32 - 1
            }
        };
        self.users[user as usize].instances.push(index);
        self.lanes[journey as usize].push_back((due, index));
    }

    fn track(&mut self, id: u32, time: i64, event: usize, fields: Arc<[Value]>) {
        self.fire_until(time);
        let user = &mut self.users[id as usize];
        user.seen += 1;
        if self.depth == Depth::Lookup {
            return;
        }
        if self.depth != Depth::Packed {
            let history = &mut user.history[event];
            if history.first().is_some_and(|(t, _)| *t < time - WINDOW_MS) {
                let stale = history.partition_point(|(t, _)| *t < time - WINDOW_MS);
                history.drain(..stale);
            }
            history.push((time, fields));
        }
        if self.depth == Depth::History {
            return;
        }
        match event {
            0 => self.start(id, 0, time),
            2 => {
                self.start(id, 1, time);
                self.start(id, 2, time);
            }
            _ => {}
        }
    }
}

fn main() {
    let users = wcart::setting("WCART_USERS", 1_000_000);
    let events = wcart::setting("WCART_EVENTS", users * 3);
    // The engine's bench compiles the journeys first; so does this one, for the same heap.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    black_box(wcart::program(&root));
    let names: Vec<Arc<str>> = (0..users)
        .map(|u| Arc::from(format!("u{u}").as_str()))
        .collect();
    let parts = std::env::var("WCART_FLOOR").unwrap_or_default();
    let mut floor = Floor {
        ids: HashMap::default(),
        users: Vec::new(),
        instances: Vec::new(),
        free: Vec::new(),
        lanes: Default::default(),
        fired: 0,
        depth: match parts.as_str() {
            "lookup" => Depth::Lookup,
            "history" => Depth::History,
            "packed" => Depth::Packed,
            _ => Depth::Full,
        },
    };
    for name in &names {
        floor.user(name);
    }
    let currency = Value::str("USD");
    let started = Instant::now();
    let mut generating = std::time::Duration::ZERO;
    let mut stream = wcart::stream(users, events).peekable();
    let mut chunk: Vec<Event> = Vec::with_capacity(1_000);
    while stream.peek().is_some() {
        let generate = Instant::now();
        for tracked in stream.by_ref().take(1_000) {
            let event = match tracked.kind {
                wcart::Kind::Added { .. } => 0,
                wcart::Kind::Viewed { .. } => 1,
                wcart::Kind::Completed => 2,
            };
            chunk.push((
                names[tracked.rank].clone(),
                tracked.at_ms,
                event,
                tracked.fields(&currency).into(),
            ));
        }
        generating += generate.elapsed();
        // As `Engine::push_batch` does: the users of 8 events looked up together, their
        // records and histories read side by side, then the events run.
        for group in chunk.chunks_mut(8) {
            let mut ids = [0; 8];
            for (id, (name, ..)) in ids.iter_mut().zip(group.iter()) {
                *id = floor.user(name);
            }
            let mut touched = 0;
            for (id, (_, _, event, _)) in ids.iter().zip(group.iter()) {
                let user = &floor.users[*id as usize];
                touched ^= user.history[*event].len() ^ user.instances.len();
            }
            black_box(touched);
            for (id, (_, time, event, fields)) in ids.iter().zip(group.iter_mut()) {
                floor.track(*id, *time, *event, std::mem::take(fields));
            }
        }
        chunk.clear();
    }
    let total = started.elapsed() - generating;
    println!(
        "floor: users {users}, tracked events {events}: {:.2} s = {:.0} events/s on one core; {} timers fired",
        total.as_secs_f64(),
        events as f64 / total.as_secs_f64(),
        floor.fired
    );
    black_box(floor.users.iter().map(|u| u.seen).sum::<u64>());
    drop(floor);
    memory_latency();
}

/// The time a read at a random place in a buffer the size of W-cart's heap at a million users
/// (`WCART_LATENCY_MIB`, 1,024 by default) takes when it depends on the one before (one chain
/// of reads), and when eight independent chains run side by side.
fn memory_latency() {
    let mib = wcart::setting("WCART_LATENCY_MIB", 1_024).max(1);
    // One place per cache line; `next[line]` is the line read after `line`: a single cycle
    // through all of them in random order (Sattolo's shuffle), so no read is predictable.
    let lines = (mib << 20) / 64;
    let mut order: Vec<u32> = (0..lines as u32).collect();
    let mut rng = wcart::rng::Rng(0x1A7E_5C1E);
    for i in (1..lines).rev() {
        order.swap(i, rng.next() as usize % i);
    }
    let mut next = vec![[0u32; 16]; lines];
    for (k, &line) in order.iter().enumerate() {
        next[line as usize][0] = order[(k + 1) % lines];
    }
    drop(order);
    const READS: usize = 4_000_000;
    for chains in [1, 8] {
        let mut at: Vec<u32> = (0..chains).map(|c| (c * lines / chains) as u32).collect();
        let started = Instant::now();
        for _ in 0..READS / chains {
            for line in at.iter_mut() {
                *line = next[*line as usize][0];
            }
        }
        let ns = started.elapsed().as_nanos() as f64 / READS as f64;
        black_box(&at);
        println!(
            "memory ({mib} MiB): {chains} chain(s) of dependent random reads: {ns:.1} ns per read"
        );
    }
}
