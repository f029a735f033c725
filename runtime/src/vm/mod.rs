//! The VM: a verified `Program` and a stream of inputs → instances moving through journeys, and
//! the timeline of what they did (LANGUAGE.md §7).
//!
//! All time is event time: the clock is the timestamp of the input being processed, and timers
//! due at or before an input fire first, in the order they are due (then the order they were
//! set). For one input of a user the order of work is: goals, then exits, of the user's running
//! instances; then waits the event satisfies and pending `unless` entries it cancels; then the
//! entries of journeys that start on it. Nothing reads the wall clock and nothing iterates a hash
//! map into the output, so the same inputs always give the same timeline.

pub mod clock;
pub mod facts;
pub mod input;
pub mod kept;
pub mod output;
pub mod state;
mod timers;
mod user_ids;

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use self::timers::{Due, TimerQueue};
use std::str::FromStr;
use std::sync::Arc;

use crate::bytecode::opcode::{Instruction, Opcode};
use crate::bytecode::{self as bc, Channel, Program, NONE};
use crate::eval::{self, Context, Flow, HistoryOp, Prepared};
use crate::value::{Str, Value};
use input::Input;
use user_ids::UserIds;

pub use facts::{Fact, KeptEvents};

pub use user_ids::UserId;

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub at: i64,
    /// The user's id: `Engine::user_name` names it. (An id, not the name: a record for a
    /// user seen long ago would otherwise read the name's memory just to count a reference.)
    pub user: UserId,
    pub journey: u32,
    pub key: Option<Str>,
    pub kind: RecordKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RecordKind {
    Entered,
    Send {
        channel: Channel,
        template: Option<u32>,
        id: Option<u32>,
        step: u32,
        /// The send's index in its journey's table (`JourneyDesc::sends`).
        send: u16,
        args: Vec<(u32, Value)>,
    },
    Skipped {
        step: u32,
        reason: &'static str,
    },
    Exited {
        outcome: Outcome,
        name: Option<u32>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Goal,
    Exited,
    Timeout,
    Completed,
    Archived,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Goal => "goal",
            Outcome::Exited => "exited",
            Outcome::Timeout => "timeout",
            Outcome::Completed => "completed",
            Outcome::Archived => "archived",
        }
    }
}

/// What a journey may do (the service's lifecycle; `journeyc simulate` runs every journey
/// `Live`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JourneyState {
    /// Takes new entries; its instances run.
    Live,
    /// Takes no new entries; its instances run to their end (a draft, or a version that a newer
    /// one replaced).
    Closed,
    /// Takes no new entries; its instances hold: timers that come due wait for the journey to
    /// go on (then fire at once, in order), `wait for` events and conditions pass them by;
    /// goals and exits still end them.
    Paused,
    /// Every instance ended with `archived`, pending entries dropped; for good.
    Archived,
}

/// A running instance, as `Engine::user_view` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceView {
    pub journey: u32,
    pub entered_at: i64,
    /// The last step it reached (`None` before the first).
    pub step: Option<u32>,
    pub key: Option<Str>,
    /// What it waits for: `"timer"` (a `wait`, a deferred send or nothing but time), `"event"`,
    /// `"condition"`, `"events"` (a multi-arm wait), `"quiet hours"`.
    pub waiting: &'static str,
}

/// A user as the engine knows it: the profile traits set (by profile field) and the running
/// instances, in the order they entered.
#[derive(Debug, Clone, PartialEq)]
pub struct UserView {
    pub traits: Vec<(u32, Value)>,
    pub instances: Vec<InstanceView>,
    /// Entries waiting out an `unless` window: (journey, key).
    pub pending: Vec<(u32, Option<Str>)>,
}

/// An instance reached a step: (time, user, journey, step).
pub type StepReached = (i64, UserId, u32, u32);

/// Counts per journey, for stats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JourneyStats {
    pub entered: u64,
    pub outcomes: BTreeMap<Outcome, u64>,
    /// How many instances reached each step.
    pub reached: Vec<u64>,
    /// Per split: per arm, how many instances took it.
    pub split_arms: Vec<Vec<u64>>,
}

/// For a user with many instances (`User::running`): their slots by (journey, key tag), and the
/// `ENDED` marks in the user's instance list.
#[derive(Debug, Default)]
struct RunningIndex {
    by_key: FxHashMap<(u32, u32), SmallVec<[u32; 1]>>,
    /// How many entries are marks.
    ended: usize,
    /// How many entries at the front are marks: where the search for an ending one starts.
    front: usize,
}

/// An entry of a long instance list (`User::instances`) whose instance has ended: no journey,
/// no slot and no key tag match it (`User::forget_instance`: removing the entry would move
/// all the later ones, thousands for a very active user, at nearly every end).
const ENDED: (u32, u32, u32) = (u32::MAX, u32::MAX, u32::MAX);

/// A user's kept events of one type, oldest first: (time, fields); and how many were dropped
/// from the front (they left the window), so that the `dropped + k`th event of the type ever
/// kept is `events[k]` (a store keeps each once, by that number: `state`).
#[derive(Debug, Clone, Default)]
struct Kept {
    events: Vec<(i64, Arc<[Value]>)>,
    dropped: u64,
}

#[derive(Debug, Default)]
struct User {
    /// Profile traits by field index (`None`: not set).
    traits: Box<[Option<Value>]>,
    /// Events of each type the program keeps (`Engine::history_slots`), oldest first: (time,
    /// fields). Empty until the user's first kept event.
    history: Box<[Kept]>,
    /// Past entries per (journey, key), as far as reentry rules still read them.
    entries: Vec<EntryLog>,
    /// Sends that count toward caps: (time, channel).
    sends: Vec<(i64, Channel)>,
    /// This user's instances, in the order they entered: (journey, slot in `Engine::instances`),
    /// so that the instances of journeys an input cannot concern are passed over unread. Once
    /// `running` indexes them, ended ones may stay as `ENDED` marks.
    /// Inline for two: most users have no more, and one allocation less is one cache miss less.
    /// (journey, slot, key tag): the tag (`key_tag`) tells most other keys apart without
    /// reading the instance.
    instances: SmallVec<[(u32, u32, u32); 2]>,
    /// This user's pending `unless` entries, in the order they began.
    /// (id, key tag)
    pending: SmallVec<[(u64, u32); 1]>,
    /// How many of `instances` each journey has (journeys with none are left out): an input
    /// no journey here can be concerned by passes over a long instance list unread.
    journeys: SmallVec<[(u32, u32); 2]>,
    /// For a user with many instances: the slots of those with each (journey, key tag), so
    /// that an entry need not scan them all to learn whether one runs with its key.
    running: Option<Box<RunningIndex>>,
    /// Instances other engines run for this user (`Fact::Running`), when there are any.
    foreign: Option<Box<facts::Foreign>>,
}

impl User {
    /// Takes the instance in slot `index` out of the user's instance list (and its running
    /// index). Instances mostly end in the order they entered: the search from the front is
    /// short, and the list keeps the entry order. A long list (one with `running`) marks the
    /// entry `ENDED` instead of moving all the later ones, and sweeps the marks out once they
    /// are half of it.
    fn forget_instance(&mut self, index: usize) {
        let from = self.running.as_ref().map_or(0, |running| running.front);
        let Some(at) = self
            .instances
            .get(from..)
            .and_then(|live| live.iter().position(|(_, i, _)| *i as usize == index))
            .map(|at| from + at)
        else {
            return;
        };
        let Some(running) = &mut self.running else {
            self.instances.remove(at);
            return;
        };
        let (j, _, t) = std::mem::replace(&mut self.instances[at], ENDED);
        running.ended += 1;
        if running.ended * 2 >= self.instances.len() {
            self.instances.retain(|entry| *entry != ENDED);
            running.ended = 0;
            running.front = 0;
        } else if at == running.front {
            running.front += self.instances[at..]
                .iter()
                .take_while(|entry| **entry == ENDED)
                .count();
        }
        if let Some(slots) = running.by_key.get_mut(&(j, t)) {
            slots.retain(|slot| *slot as usize != index);
            if slots.is_empty() {
                running.by_key.remove(&(j, t));
            }
        }
    }
}

/// The past entries of a user into one journey with one key, as far as the journey's reentry
/// rule reads them: the last for `once` and `after`, those inside the window for `max N per`.
#[derive(Debug, Clone)]
struct EntryLog {
    journey: u32,
    /// `key_tag(key)`, compared before the key.
    tag: u32,
    key: Option<Str>,
    times: SmallVec<[i64; 2]>,
}

impl EntryLog {
    /// Whether `reentry` can still refuse an entry because of this log.
    fn still_read(&self, reentry: bc::Reentry, now: i64) -> bool {
        match reentry {
            bc::Reentry::Once => true,
            bc::Reentry::Always => false,
            bc::Reentry::After(ms) => self
                .times
                .last()
                .is_some_and(|t| now.saturating_sub(*t) < ms),
            bc::Reentry::MaxPer { per_ms, .. } => {
                self.times.iter().any(|t| now.saturating_sub(*t) < per_ms)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Waiting {
    /// Running, or sleeping on a timer.
    Nothing,
    Event {
        wait: u16,
    },
    Condition {
        wait: u16,
    },
    Any {
        wait: u16,
    },
    /// A send waiting for quiet hours to end (its arguments wait in `Engine::deferred`).
    Send {
        send: u16,
    },
}

#[derive(Debug, Clone)]
struct Instance {
    journey: u32,
    user: UserId,
    entered_at: i64,
    pc: u32,
    slots: Box<[Value]>,
    waiting: Waiting,
    /// Replaced at every change of state from an engine-wide counter (it would take 2³² changes
    /// for a value to come back). Timers carry the value they were set with, so a stale timer —
    /// or one for an earlier instance in a reused slot — does nothing.
    token: u32,
    zone: chrono_tz::Tz,
    /// The last step reached.
    step: u16,
    /// The key of the timer that resumes it (`NO_TIMER`: none), set with its current token.
    wake: TimerKey,
    /// The sequence of its timeout's timer (0: none); due at `entered_at` + the timeout.
    timeout: u64,
}

/// A timer's key: (due time, place in the order timers were set). Entities keep the keys of
/// their timers, so that a user's record (`state`) can say where each one stands.
type TimerKey = (i64, u64);

/// No timer (sequences start at 1).
const NO_TIMER: TimerKey = (0, 0);

#[derive(Debug, Clone)]
enum Timer {
    /// Continue the instance at its `pc` (a plain sleep, or a wait's deadline).
    Resume {
        instance: usize,
        token: u32,
        deadline: bool,
    },
    /// The journey's timeout, for the instance of that journey that entered at that moment
    /// (another instance in the same slot with the same entry would time out then too).
    Timeout {
        instance: usize,
        journey: u32,
        entered_at: i64,
    },
    /// An `unless` entry whose window passed without the cancelling event.
    Unless { pending: u64 },
    /// A time-based entry for one user.
    Tick {
        journey: u32,
        user: UserId,
        token: u64,
    },
}

/// An `entry on E unless F within D` waiting for its window to pass.
#[derive(Debug, Clone)]
struct Pending {
    journey: u32,
    user: UserId,
    key: Option<Str>,
    /// The slots the instance will start with (captured from the entry event).
    slots: Vec<Value>,
    cancelled: bool,
    /// The key of its `Unless` timer.
    unless: TimerKey,
}

/// From this many instances on, a user's running keys are indexed (`User::running`).
const MANY_INSTANCES: usize = 32;

/// A short hash of a correlation key: equal keys have equal tags, so comparing tags first spares
/// reading most other keys (which live elsewhere in memory).
fn key_tag(key: &Option<Str>) -> u32 {
    use std::hash::Hasher;
    // The bytes alone: a tag only tells keys apart before they are compared, so `None` may
    // share one with the empty key.
    let mut hasher = rustc_hash::FxHasher::default();
    hasher.write(key.as_ref().map_or(&[][..], Str::as_bytes));
    hasher.finish() as u32
}

/// `n` empty slots. (Built in place: `vec![Value::Absent; n]` clones one value `n` times,
/// which compiles to slow partial copies.)
fn absent_slots(n: usize) -> Vec<Value> {
    (0..n).map(|_| Value::Absent).collect()
}

/// Where an instance of `journey` keeps its correlation key: the slot the `correlate` block
/// reads when it reads just one (`correlate order.order_id`), else one more slot after the
/// journey's own, filled at entry. (Kept in a slot, the key costs an instance nothing more.)
fn key_slot(program: &Program, journey: &bc::JourneyDesc) -> Option<usize> {
    use crate::bytecode::opcode::decode;
    let block = program.blocks.get(journey.correlate as usize)?;
    let end = block.offset.saturating_add(block.length);
    let plain = decode(&program.code, block.offset, end)
        .ok()
        .filter(|load| load.opcode == Opcode::LoadSlot)
        .and_then(|load| {
            let ret = decode(&program.code, load.next, end).ok()?;
            (ret.opcode == Opcode::Return && ret.next == end).then_some(load.operands[0] as usize)
        });
    Some(plain.unwrap_or(journey.slots.len()))
}

/// The entry event's field that is a correlated journey's key, when its `correlate` block
/// only reads a slot captured from that field: the key is then known before the entry's
/// slots are captured.
fn key_field(program: &Program, journey: &bc::JourneyDesc) -> Option<u16> {
    let slot = key_slot(program, journey)?;
    // (The last capture into a slot is the one that stays, as in `capture_entry`.)
    journey
        .entry_captures
        .iter()
        .rev()
        .find(|c| usize::from(c.slot) == slot)
        .map(|c| c.field)
}

/// Which inputs can concern a journey's instances.
#[derive(Debug)]
struct Interest {
    /// By event type: a goal, exit or wait of the journey is on it (all types when the journey
    /// has a `when` goal or exit, which is checked at every input).
    events: Vec<bool>,
    /// It has `when` goals or exits, or condition waits: re-evaluated after a change of the
    /// profile, or of what they read (`reread_on`).
    on_change: bool,
    /// By event type: whether a condition reads its history (all, when one reads `now`).
    reread_on: Vec<bool>,
}

impl Interest {
    fn of(journey: &bc::JourneyDesc, events: usize, prepared: &Prepared) -> Interest {
        let triggers = || journey.goals.iter().chain(&journey.exits);
        // The `when` goals and exits and condition waits, re-evaluated after a change.
        let conditions: Vec<u32> = triggers()
            .filter(|t| t.event.is_none())
            .map(|t| t.block)
            .chain(journey.waits.iter().filter_map(|w| match w.kind {
                bc::WaitKind::Condition { block } => Some(block),
                bc::WaitKind::Event { .. } => None,
            }))
            .collect();
        let mut reread_on = vec![false; events];
        for block in &conditions {
            let (read, now) = prepared.block_reads(*block);
            if now {
                reread_on.iter_mut().for_each(|r| *r = true);
            }
            for event in read {
                if let Some(r) = reread_on.get_mut(event as usize) {
                    *r = true;
                }
            }
        }
        let has_when = triggers().any(|t| t.event.is_none());
        let mut interest = Interest {
            // `when` goals and exits are checked with the others at an input they may read.
            events: if has_when {
                reread_on.clone()
            } else {
                vec![false; events]
            },
            on_change: !conditions.is_empty(),
            reread_on,
        };
        let waited = journey.waits.iter().filter_map(|w| match w.kind {
            bc::WaitKind::Event { event, .. } => Some(event),
            bc::WaitKind::Condition { .. } => None,
        });
        let armed = journey
            .wait_anys
            .iter()
            .flat_map(|w| w.arms.iter().map(|a| a.event));
        for event in triggers()
            .filter_map(|t| t.event)
            .chain(waited)
            .chain(armed)
        {
            if let Some(slot) = interest.events.get_mut(event as usize) {
                *slot = true;
            }
        }
        interest
    }
}

/// The engine. Feed inputs in time order with `push`; `finish` fires what remains.
pub struct Engine<'p> {
    program: &'p Program,
    /// The program decoded once for running.
    prepared: Prepared<'p>,
    /// Users by their dense id, in the order first seen.
    users: Vec<User>,
    /// Their names, by id (apart: only records and split hashing read them).
    names: Vec<Str>,
    user_ids: UserIds,
    /// Ids of users taken out of memory (`state`), given to the next users.
    free_users: Vec<UserId>,
    /// Whether the users each input, timer, fact or lifecycle move touches are listed (for a
    /// store, which writes their records), and those listed since the last `take_touched`.
    tracking: bool,
    touched: Vec<UserId>,
    touched_mark: Vec<bool>,
    /// What tells this engine's program from others (`Engine::fingerprint`), made once.
    fingerprint: std::cell::OnceCell<u32>,
    instances: Vec<Option<Instance>>,
    pending: FxHashMap<u64, Pending>,
    next_pending: u64,
    /// Slots of `instances` that ended, reused by the next instances.
    free: Vec<usize>,
    /// The arguments of sends deferred by quiet hours, by instance slot (rare, so kept out of
    /// the instance record).
    deferred: FxHashMap<usize, Vec<(u32, Value)>>,
    next_token: u32,
    /// Timers set, due earliest (then first set) first.
    timers: TimerQueue<Timer>,
    /// Timers other than scheduled entries: while any is left, there is work to finish.
    working_timers: usize,
    now: i64,
    /// Inputs processed so far.
    pub inputs: u64,
    /// The current token of each (journey, user) entry schedule; absent while none is due.
    /// With the key of its timer (`NO_TIMER`: none is due).
    tick_tokens: FxHashMap<(u32, UserId), (u64, TimerKey)>,
    /// By event type: where a user's history keeps it (`None`: not kept), and how many are.
    history_slots: Vec<Option<usize>>,
    kept_types: usize,
    /// By event type: whether it is some journey's `unless` event.
    cancels: Vec<bool>,
    /// The longest window of a cap (0 without caps): how long a user's sends are kept.
    longest_cap: i64,
    /// Zones parsed so far, by name.
    /// (Fx hashing: only valid zone names are kept, a set no input can grow.)
    zones: FxHashMap<Str, chrono_tz::Tz>,
    /// The last zone found by name: most users of an engine share one, and comparing a name
    /// costs less than hashing it.
    last_zone: Option<(Str, chrono_tz::Tz)>,
    /// Local times of day already found (daily entries, waits, quiet hours).
    local_times: clock::LocalTimes,
    /// Per journey: which inputs can concern its instances.
    interests: Vec<Interest>,
    /// Per event type: whether some journey's goals, exits or waits are on it
    /// (`Interest::events`): an event none is on concerns no running instance.
    concerns: Vec<bool>,
    /// Per event type: whether some journey's `when` goals, exits or condition waits read it
    /// (`Interest::reread_on`): an event no condition reads has none to re-evaluate.
    reread_on: Vec<bool>,
    /// Per correlated journey: the slot of its instances that holds the key (`key_slot`).
    key_slots: Vec<Option<usize>>,
    /// Per correlated journey whose key is an entry field: that field (`key_field`).
    key_fields: Vec<Option<u16>>,
    /// Per journey: its timeout, when the body can outlast it (`bytecode::lifetime`); a
    /// timeout no instance can live to see is not armed.
    armed_timeouts: Vec<Option<i64>>,
    /// A reused buffer of instance slots (see `user_instances`).
    scratch: Vec<usize>,
    /// Per event type: the journeys with scheduled entries whose audience needs it.
    ticks_needing: Vec<Vec<u32>>,
    /// The journeys with scheduled entries (the only ones `tick_tokens` names).
    scheduled: Vec<u32>,
    /// Per event type: the journeys entered on it, in program order.
    entered_on: Vec<SmallVec<[u32; 2]>>,
    pub timeline: Vec<Record>,
    pub stats: Vec<JourneyStats>,
    /// Inputs of event types no journey knows, and timezones that fell back to UTC.
    pub ignored_events: u64,
    pub zone_fallbacks: u64,
    /// Timers fired so far (sleeps, deadlines, timeouts, scheduled entries).
    pub timers_fired: u64,
    /// When set, every step reached. For tests and traces.
    pub trace: Option<Vec<StepReached>>,
    /// When set, inputs and schedules enter users only into this journey (`start` still works).
    pub only: Option<u32>,
    /// Per journey: its lifecycle state (`Engine::set_state`).
    states: Vec<JourneyState>,
    /// Timers of paused journeys' instances that came due, in firing order: (journey, timer).
    held: Vec<(u32, Timer)>,
    /// Whether facts are recorded for other engines (`facts.rs`), and those recorded.
    reports: bool,
    facts: Vec<Fact>,
    /// How long each event type's history is kept: `None` not at all, `Some(None)` for ever,
    /// `Some(Some(ms))` for the longest window that reads it.
    retention: Vec<Option<Option<i64>>>,
}

/// What the bytecode asks to keep of each event type's history (LANGUAGE.md §7.3).
fn retention(program: &Program) -> Vec<Option<Option<i64>>> {
    // `since entry` reads back at most as far as the oldest running instance: the longest
    // timeout, or for ever if a journey has none.
    let longest_life = program
        .journeys
        .iter()
        .map(|j| j.timeout_ms)
        .try_fold(0i64, |longest, t| t.map(|t| longest.max(t)));
    let mut keep: Vec<Option<Option<i64>>> = vec![None; program.events.len()];
    let mut need = |event: u32, span: Option<i64>| {
        if let Some(slot) = keep.get_mut(event as usize) {
            *slot = Some(match (*slot, span) {
                (None, span) => span,
                (Some(None), _) | (_, None) => None,
                (Some(Some(a)), Some(b)) => Some(a.max(b)),
            });
        }
    };
    for query in &program.history {
        let span = match query.window {
            bc::Window::None => None,
            bc::Window::Within(ms) => Some(ms),
            bc::Window::SinceEntry => longest_life,
        };
        need(query.event, span);
    }
    for journey in &program.journeys {
        for wait in &journey.waits {
            if let bc::WaitKind::Event {
                event,
                since_entry: true,
                ..
            } = wait.kind
            {
                need(event, longest_life);
            }
        }
    }
    keep
}

/// A user-independent limit: how many steps one instance may run without sleeping (the
/// verifier forbids loops, so this only guards against bugs).
const MAX_RUN: usize = 100_000;

impl<'p> Engine<'p> {
    pub fn new(program: &'p Program) -> Engine<'p> {
        let stats = program
            .journeys
            .iter()
            .map(|j| JourneyStats {
                reached: vec![0; j.steps.len()],
                split_arms: j.splits.iter().map(|arms| vec![0; arms.len()]).collect(),
                ..Default::default()
            })
            .collect();
        let prepared = Prepared::new(program);
        let keep = retention(program);
        let interests: Vec<Interest> = program
            .journeys
            .iter()
            .map(|j| Interest::of(j, program.events.len(), &prepared))
            .collect();
        let concerns = (0..program.events.len())
            .map(|event| {
                interests
                    .iter()
                    .any(|i| i.events.get(event).copied().unwrap_or(false))
            })
            .collect();
        let reread_on = (0..program.events.len())
            .map(|event| {
                interests
                    .iter()
                    .any(|i| i.on_change && i.reread_on.get(event).copied().unwrap_or(true))
            })
            .collect();
        Engine {
            program,
            users: Vec::new(),
            names: Vec::new(),
            user_ids: UserIds::default(),
            free_users: Vec::new(),
            tracking: false,
            touched: Vec::new(),
            touched_mark: Vec::new(),
            fingerprint: std::cell::OnceCell::new(),
            instances: Vec::new(),
            pending: FxHashMap::default(),
            next_pending: 0,
            free: Vec::new(),
            deferred: FxHashMap::default(),
            next_token: 0,
            timers: TimerQueue::default(),
            working_timers: 0,
            now: i64::MIN,
            inputs: 0,
            tick_tokens: FxHashMap::default(),
            interests,
            concerns,
            reread_on,
            key_slots: program.journeys.iter().map(|j| key_slot(program, j)).collect(),
            key_fields: program.journeys.iter().map(|j| key_field(program, j)).collect(),
            armed_timeouts: program
                .journeys
                .iter()
                .map(|j| bc::lifetime::armed_timeout(program, j))
                .collect(),
            prepared,
            scratch: Vec::new(),
            zones: FxHashMap::default(),
            last_zone: None,
            local_times: clock::LocalTimes::default(),
            history_slots: {
                let mut next = 0;
                keep.iter()
                    .map(|kept| {
                        kept.map(|_| {
                            next += 1;
                            next - 1
                        })
                    })
                    .collect()
            },
            kept_types: keep.iter().flatten().count(),
            cancels: (0..program.events.len() as u32)
                .map(|event| {
                    program.journeys.iter().any(|j| {
                        matches!(&j.entry, bc::Entry::On { unless: Some(u), .. } if u.event == event)
                    })
                })
                .collect(),
            longest_cap: program.caps.iter().map(|c| c.window_ms).max().unwrap_or(0),
            scheduled: (0..program.journeys.len() as u32)
                .filter(|j| !matches!(program.journeys[*j as usize].entry, bc::Entry::On { .. }))
                .collect(),
            ticks_needing: {
                let mut by_event = vec![Vec::new(); program.events.len()];
                for (j, journey) in program.journeys.iter().enumerate() {
                    for &event in &journey.audience_needs {
                        if let Some(list) = by_event.get_mut(event as usize) {
                            list.push(j as u32);
                        }
                    }
                }
                by_event
            },
            entered_on: (0..program.events.len() as u32)
                .map(|event| {
                    (0..program.journeys.len() as u32)
                        .filter(|j| {
                            matches!(program.journeys[*j as usize].entry, bc::Entry::On { event: e, .. } if e == event)
                        })
                        .collect()
                })
                .collect(),
            timeline: Vec::new(),
            stats,
            ignored_events: 0,
            zone_fallbacks: 0,
            timers_fired: 0,
            trace: None,
            only: None,
            states: vec![JourneyState::Live; program.journeys.len()],
            held: Vec::new(),
            reports: false,
            facts: Vec::new(),
            retention: keep,
        }
    }

    /// Live instances and the bytes they hold: the instance record with its slots (not the
    /// user's profile and history, which are shared by all of a user's instances).
    pub fn instance_memory(&self) -> (usize, usize) {
        let live: Vec<&Instance> = self.instances.iter().flatten().collect();
        let bytes = live
            .iter()
            .map(|i| {
                std::mem::size_of::<Option<Instance>>()
                    + i.slots.len() * std::mem::size_of::<Value>()
            })
            .sum();
        (live.len(), bytes)
    }

    /// Timers waiting to fire.
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    fn set_timer(&mut self, due: Due, timer: Timer) -> TimerKey {
        if !matches!(timer, Timer::Tick { .. }) {
            self.working_timers += 1;
        }
        self.timers.push(self.now, due, timer)
    }

    /// Processes one input (inputs must come in time order; an earlier one is processed at the
    /// current time).
    pub fn push(&mut self, input: Input) {
        let hash = self.user_ids.hash(input.user());
        self.push_hashed(input, hash, None);
    }

    /// Processes inputs in order, as `push` does one by one, but looks up the users of the next
    /// few together first: their records are then fetched from memory side by side rather than
    /// one after the other, which is most of what an input of a rarely seen user costs.
    // (Never inlined: profiles and `callgrind --toggle-collect` find the engine's work here.)
    #[inline(never)]
    pub fn push_batch(&mut self, inputs: impl IntoIterator<Item = Input>) {
        /// Inputs looked ahead together: enough to overlap their fetches, few enough that the
        /// first is still in cache when its turn comes.
        const AHEAD: usize = 8;
        let mut inputs = inputs.into_iter();
        let mut group: Vec<(Input, u64, Option<UserId>)> = Vec::with_capacity(AHEAD);
        loop {
            group.extend(inputs.by_ref().take(AHEAD).map(|input| {
                let hash = self.user_ids.hash(input.user());
                (input, hash, None)
            }));
            if group.is_empty() {
                break;
            }
            for (input, hash, id) in group.iter_mut() {
                *id = self.user_ids.get(*hash, input.user());
            }
            let mut touched = 0usize;
            for (_, _, id) in &group {
                if let Some(u) = id.and_then(|id| self.users.get(id as usize)) {
                    touched ^= u.traits.len() ^ u.history.len() ^ u.instances.len();
                }
            }
            for (_, _, id) in &group {
                if let Some(u) = id.and_then(|id| self.users.get(id as usize)) {
                    touched ^= u.traits.first().map_or(0, |t| t.is_some() as usize);
                    touched ^= u.history.first().map_or(0, |k| k.events.len());
                }
            }
            std::hint::black_box(touched);
            for (input, hash, id) in group.drain(..) {
                self.push_hashed(input, hash, id);
            }
        }
    }

    /// `push`, with the hash of the user's name taken (and the id, if it was known before).
    fn push_hashed(&mut self, input: Input, hash: u64, id: Option<UserId>) {
        let time = input.time().max(self.now);
        self.fire_until(time);
        self.now = time;
        self.inputs += 1;
        // (A user first seen earlier in the batch has an id by now.)
        let user = match id {
            Some(id) => id,
            None => self.ensure_user(input.user(), hash),
        };
        if self.tracking {
            self.touch(user);
        }
        match input {
            Input::Track {
                event, mut fields, ..
            } => {
                // (Taking the fields to change them costs an atomic operation: only when a
                // long string could be shared.)
                if self.prepared.interns_strings() {
                    if let Some(fields) = Arc::get_mut(&mut fields) {
                        fields.iter_mut().for_each(|v| self.prepared.intern(v));
                    }
                }
                self.track(user, event, fields)
            }
            Input::Identify { mut traits, .. } => {
                traits.iter_mut().for_each(|(_, v)| self.prepared.intern(v));
                self.identify(user, traits)
            }
        }
    }

    /// Fires every timer due at or before `until` (all of them if `None`, except time-based
    /// entries, which would never run out).
    pub fn finish(&mut self, until: Option<i64>) {
        match until {
            Some(until) => {
                self.fire_until(until);
                self.now = self.now.max(until);
            }
            None => {
                while self.working_timers > 0 {
                    let Some(at) = self.timers.next_at() else {
                        break;
                    };
                    self.fire_until(at);
                }
            }
        }
    }

    fn fire_until(&mut self, until: i64) {
        while self.fire_next(until) {}
    }

    /// Fires the earliest timer due at or before `until`, if there is one (the service fires
    /// several engines' timers in one time order).
    pub fn fire_next(&mut self, until: i64) -> bool {
        let Some((at, timer)) = self.timers.pop_due(until) else {
            return false;
        };
        if !matches!(timer, Timer::Tick { .. }) {
            self.working_timers -= 1;
        }
        self.now = self.now.max(at);
        self.timers_fired += 1;
        self.fire(timer);
        true
    }

    fn fire(&mut self, timer: Timer) {
        if self.tracking {
            if let Some(user) = self.timer_user(&timer) {
                self.touch(user);
            }
        }
        // (Only looked into while some journey is paused: every timer passes here.)
        if self.states.contains(&JourneyState::Paused) {
            if let Some(journey) = self.timer_journey(&timer) {
                if self.state(journey) == JourneyState::Paused {
                    self.held.push((journey, timer));
                    return;
                }
            }
        }
        match timer {
            Timer::Resume {
                instance,
                token,
                deadline,
            } => {
                let Some(current) = self.instances.get(instance).and_then(Option::as_ref) else {
                    return;
                };
                if current.token != token {
                    return;
                }
                if deadline {
                    self.deadline(instance);
                } else {
                    self.resume(instance);
                }
            }
            Timer::Timeout {
                instance,
                journey,
                entered_at,
            } => {
                if self
                    .instances
                    .get(instance)
                    .and_then(Option::as_ref)
                    .is_some_and(|i| i.journey == journey && i.entered_at == entered_at)
                {
                    self.end(instance, Outcome::Timeout, None);
                }
            }
            Timer::Unless { pending } => {
                let Some(p) = self.pending.remove(&pending) else {
                    return;
                };
                if let Some(u) = self.users.get_mut(p.user as usize) {
                    u.pending.retain(|(id, _)| *id != pending);
                }
                if !p.cancelled {
                    self.report_running(p.user, p.journey, &p.key, -1);
                    self.start_instance(p.journey, p.user, p.slots, None, p.key);
                }
            }
            Timer::Tick {
                journey,
                user,
                token,
            } => {
                if self.tick_tokens.get(&(journey, user)).map(|t| t.0) != Some(token) {
                    return;
                }
                self.try_enter(journey, user, None);
                if self.has_needed_history(journey, user) {
                    self.schedule_tick(journey, user);
                } else {
                    // Scheduled again by the next event the audience needs (`track`).
                    self.tick_tokens.remove(&(journey, user));
                }
            }
        }
    }

    /// The block of the `wait until <condition>` an instance waits at, if it waits at one.
    fn waited_condition(&self, instance: &Instance) -> Option<u32> {
        let Waiting::Condition { wait } = instance.waiting else {
            return None;
        };
        match self.program.journeys[instance.journey as usize]
            .waits
            .get(usize::from(wait))?
            .kind
        {
            bc::WaitKind::Condition { block } => Some(block),
            bc::WaitKind::Event { .. } => None,
        }
    }

    /// The journey whose instance (or pending entry) a timer is for; `None` for scheduled
    /// entries, which a journey's state gates at entry, and for timers with nothing left to do.
    fn timer_journey(&self, timer: &Timer) -> Option<u32> {
        match timer {
            Timer::Resume { instance, .. } => self
                .instances
                .get(*instance)
                .and_then(Option::as_ref)
                .map(|i| i.journey),
            Timer::Timeout { journey, .. } => Some(*journey),
            Timer::Unless { pending } => self.pending.get(pending).map(|p| p.journey),
            Timer::Tick { .. } => None,
        }
    }

    /// A journey's lifecycle state.
    pub fn state(&self, journey: u32) -> JourneyState {
        self.states
            .get(journey as usize)
            .copied()
            .unwrap_or(JourneyState::Archived)
    }

    /// Moves a journey to `state` at the current time. Leaving `Paused` fires the timers held
    /// meanwhile, in the order they came due; `Archived` ends every instance with `archived`
    /// and drops pending entries. `Archived` is for good: leaving it is refused.
    pub fn set_state(&mut self, journey: u32, state: JourneyState) -> Result<(), String> {
        let was = self.state(journey);
        if self.tracking {
            let mut users: Vec<UserId> = self
                .instances
                .iter()
                .flatten()
                .filter(|i| i.journey == journey)
                .map(|i| i.user)
                .chain(
                    self.pending
                        .values()
                        .filter(|p| p.journey == journey)
                        .map(|p| p.user),
                )
                .collect();
            users.sort_unstable();
            users.dedup();
            users.into_iter().for_each(|u| self.touch(u));
        }
        let Some(slot) = self.states.get_mut(journey as usize) else {
            return Err(format!("no journey {journey}"));
        };
        if was == JourneyState::Archived && state != JourneyState::Archived {
            return Err("an archived journey stays archived".into());
        }

        *slot = state;
        if was == JourneyState::Paused && state != JourneyState::Paused {
            let (held, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
                .into_iter()
                .partition(|(j, _)| *j == journey);
            self.held = others;
            for (_, timer) in held {
                self.fire(timer);
            }
            // Conditions that came true meanwhile are seen now.
            for index in 0..self.instances.len() {
                let block = self.instances[index]
                    .as_ref()
                    .filter(|i| i.journey == journey)
                    .and_then(|i| self.waited_condition(i));
                if let Some(block) = block {
                    if self.instance_holds(block, index, None) {
                        self.resume(index);
                    }
                }
            }
        }
        if state == JourneyState::Archived && was != JourneyState::Archived {
            self.archive(journey);
        }
        Ok(())
    }

    fn archive(&mut self, journey: u32) {
        for index in 0..self.instances.len() {
            if self.instances[index]
                .as_ref()
                .is_some_and(|i| i.journey == journey)
            {
                self.end(index, Outcome::Archived, None);
            }
        }
        let mut pending: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.journey == journey)
            .map(|(id, _)| *id)
            .collect();
        pending.sort_unstable();
        for id in pending {
            if let Some(p) = self.pending.remove(&id) {
                if let Some(u) = self.users.get_mut(p.user as usize) {
                    u.pending.retain(|(other, _)| *other != id);
                }
                if !p.cancelled {
                    self.report_running(p.user, p.journey, &p.key, -1);
                }
            }
        }
        self.held.retain(|(j, _)| *j != journey);
        self.tick_tokens.retain(|(j, _), _| *j != journey);
    }

    /// The user called `name`, if the engine has seen it.
    pub fn user_view(&self, name: &str) -> Option<UserView> {
        let id = self.user_ids.get(self.user_ids.hash(name), name)?;
        let user = self.users.get(id as usize)?;
        let traits = user
            .traits
            .iter()
            .enumerate()
            .filter_map(|(field, v)| Some((field as u32, v.clone()?)))
            .collect();
        let instances = user
            .instances
            .iter()
            .filter_map(|(_, slot, _)| self.instances.get(*slot as usize)?.as_ref())
            .map(|i| InstanceView {
                journey: i.journey,
                entered_at: i.entered_at,
                step: (i.step != u16::MAX).then_some(u32::from(i.step)),
                key: self.owned_key(i),
                waiting: match i.waiting {
                    Waiting::Nothing => "timer",
                    Waiting::Event { .. } => "event",
                    Waiting::Condition { .. } => "condition",
                    Waiting::Any { .. } => "events",
                    Waiting::Send { .. } => "quiet hours",
                },
            })
            .collect();
        let pending = user
            .pending
            .iter()
            .filter_map(|(id, _)| self.pending.get(id))
            .filter(|p| !p.cancelled)
            .map(|p| (p.journey, p.key.clone()))
            .collect();
        Some(UserView {
            traits,
            instances,
            pending,
        })
    }

    /// How many users the engine holds in memory.
    pub fn user_count(&self) -> usize {
        self.users.len() - self.free_users.len()
    }

    /// The engine's time: the latest input processed or timer fired (or clock advanced to).
    pub fn now(&self) -> i64 {
        self.now
    }

    /// When the next timer is due (`None`: no timer is set).
    pub fn next_timer_at(&self) -> Option<i64> {
        self.timers.next_at()
    }

    /// The next timer's due time and its place in the order timers were set: engines that
    /// share that order (`share_timer_order`) fire their timers in one order by it.
    pub fn next_timer(&self) -> Option<(i64, u64)> {
        self.timers.next_key()
    }

    /// Numbers this engine's timers from `order`, a count shared with other engines, so that
    /// timers due at the same instant fire in the order they were set across all of them
    /// (LANGUAGE.md §7.1). Call it before any timer is set.
    pub fn share_timer_order(&mut self, order: std::sync::Arc<std::sync::atomic::AtomicU64>) {
        self.timers.share_order(order);
    }

    /// The id of the user called `name`, creating the user (and its schedules) when new.
    fn ensure_user(&mut self, name: &Arc<str>, hash: u64) -> UserId {
        if let Some(id) = self.user_ids.get(hash, name) {
            return id;
        }
        let profile_fields = self
            .program
            .record_fields(self.program.profile)
            .map_or(0, <[_]>::len);
        let user = User {
            traits: vec![None; profile_fields].into_boxed_slice(),
            ..Default::default()
        };
        let name = Str::from(name.clone());
        let id = match self.free_users.pop() {
            Some(id) => {
                self.users[id as usize] = user;
                self.names[id as usize] = name.clone();
                id
            }
            None => {
                self.users.push(user);
                self.names.push(name.clone());
                (self.users.len() - 1) as UserId
            }
        };
        self.user_ids.insert(hash, name, id);
        for k in 0..self.scheduled.len() {
            let journey = self.scheduled[k];
            if self.program.journeys[journey as usize]
                .audience_needs
                .is_empty()
            {
                self.schedule_tick(journey, id);
            }
        }
        id
    }

    /// Until when the journey's audience is false for `user` whatever else happens: the latest
    /// moment an event of a `not did(E within D)` it requires leaves its window
    /// (`i64::MIN` when none is inside).
    fn audience_blocked_until(&self, journey: u32, user: UserId) -> i64 {
        let Some(u) = self.users.get(user as usize) else {
            return i64::MIN;
        };
        self.program.journeys[journey as usize]
            .audience_blocked_by
            .iter()
            .filter_map(|(event, window_ms)| {
                let (last, _) = self.kept(u, *event).last()?;
                Some(last.saturating_add(*window_ms))
            })
            .max()
            .unwrap_or(i64::MIN)
    }

    /// What `user` has of `event`'s history, oldest first.
    fn kept<'u>(&self, user: &'u User, event: u32) -> &'u [(i64, Arc<[Value]>)] {
        self.history_slots
            .get(event as usize)
            .copied()
            .flatten()
            .and_then(|slot| user.history.get(slot))
            .map_or(&[], |kept| kept.events.as_slice())
    }

    /// Whether the user has, within what history keeps, an event the journey's audience needs
    /// (always, when it needs none). Without one the audience cannot hold, so no tick is due.
    fn has_needed_history(&self, journey: u32, user: UserId) -> bool {
        let needs = &self.program.journeys[journey as usize].audience_needs;
        let Some(u) = self.users.get(user as usize) else {
            return false;
        };
        needs.is_empty()
            || needs.iter().any(|&event| {
                let last = self.kept(u, event).last().map(|(t, _)| *t);
                match (last, self.retention.get(event as usize).copied().flatten()) {
                    (Some(t), Some(Some(span))) => t > self.now.saturating_sub(span),
                    (Some(_), _) => true,
                    (None, _) => false,
                }
            })
    }

    /// The program the engine runs.
    pub fn program(&self) -> &'p Program {
        self.program
    }

    /// When the engine compiles its hot predicates to native code (`jit::Policy`; by default
    /// after 1,000 evaluations). The answers are the same either way.
    #[cfg(feature = "jit")]
    pub fn set_jit(&mut self, policy: crate::jit::Policy) {
        self.prepared.set_jit(policy);
    }

    /// How many of the program's predicates run as native code so far.
    pub fn compiled_predicates(&self) -> usize {
        self.prepared.compiled_predicates()
    }

    /// `user_name`, as a value a `Fact` can carry.
    fn user_str(&self, user: UserId) -> Str {
        self.names.get(user as usize).cloned().unwrap_or_default()
    }

    /// The name of the user with id `user` (as inputs gave it; empty for an unknown id).
    pub fn user_name(&self, user: UserId) -> &str {
        self.names.get(user as usize).map_or("", Str::as_str)
    }

    /// Schedules the next time-based entry of `user` into `journey`, if it has one.
    fn schedule_tick(&mut self, journey: u32, user: UserId) {
        let desc = &self.program.journeys[journey as usize];
        if matches!(desc.entry, bc::Entry::On { .. })
            || self.state(journey) == JourneyState::Archived
        {
            return;
        }
        let now = self.now;
        // Ticks before the audience can hold are skipped: the next one is strictly after
        // `after`, at or after the moment the last blocking event leaves its window.
        let after = now.max(self.audience_blocked_until(journey, user).saturating_sub(1));
        let next = match &desc.entry {
            bc::Entry::EveryDay { minute } => {
                let zone = self.zone(journey, user, &[]);
                self.local_times
                    .next_time_of_day(zone, after, *minute, |_| true)
            }
            bc::Entry::EveryWeekday { weekday, minute } => {
                let zone = self.zone(journey, user, &[]);
                self.local_times
                    .next_time_of_day(zone, after, *minute, |d| d == u32::from(*weekday))
            }
            bc::Entry::Every { period_ms } => Some(*period_ms).filter(|p| *p > 0).and_then(|p| {
                after
                    .div_euclid(p)
                    .checked_add(1)
                    .and_then(|n| n.checked_mul(p))
            }),
            bc::Entry::At { timestamp_ms } => Some(*timestamp_ms).filter(|t| *t > after),
            bc::Entry::When { block } => {
                let value = self.prepared.run(
                    *block,
                    &self.outside_reader(user, None, None, chrono_tz::UTC),
                );
                match value {
                    Value::Timestamp(t) if t > now => Some(t),
                    _ => None,
                }
            }
            _ => None,
        };
        let token = {
            let entry = self
                .tick_tokens
                .entry((journey, user))
                .or_insert((0, NO_TIMER));
            *entry = (entry.0 + 1, NO_TIMER);
            entry.0
        };
        if let Some(at) = next {
            let key = self.set_timer(
                Due::At(at),
                Timer::Tick {
                    journey,
                    user,
                    token,
                },
            );
            if let Some(entry) = self.tick_tokens.get_mut(&(journey, user)) {
                entry.1 = key;
            }
        }
    }

    // ------------------------------------------------------------ inputs

    fn track(&mut self, user: UserId, event: u32, fields: Arc<[Value]>) {
        let now = self.now;
        let keep = self.retention.get(event as usize).copied().flatten();
        let slot = self.history_slots.get(event as usize).copied().flatten();
        let kept_types = self.kept_types;
        if let (Some(u), Some(span), Some(slot)) = (self.users.get_mut(user as usize), keep, slot) {
            if u.history.is_empty() {
                u.history = vec![Kept::default(); kept_types].into_boxed_slice();
            }
            if let Some(Kept {
                events: history,
                dropped,
            }) = u.history.get_mut(slot)
            {
                history.push((now, fields.clone()));
                if let Some(ms) = span {
                    // Oldest first: mostly the oldest is still inside the window. What left it
                    // goes once it is half the history: a very active user keeps thousands of
                    // events, and dropping the oldest at each new one would move all the others
                    // every time. (Every reader bounds what it reads by time, and nothing reads
                    // further back than `span`.)
                    let cutoff = now.saturating_sub(ms);
                    if history.first().is_some_and(|(t, _)| *t <= cutoff) {
                        let stale = history.partition_point(|(t, _)| *t <= cutoff);
                        if stale * 2 >= history.len() {
                            history.drain(..stale);
                            *dropped += stale as u64;
                        }
                    }
                }
            }
        }
        // Scheduled entries whose audience needs this event start ticking for the user.
        let needing = self.ticks_needing.get(event as usize).map_or(0, Vec::len);
        for k in 0..needing {
            let journey = self.ticks_needing[event as usize][k];
            if !self.tick_tokens.contains_key(&(journey, user)) {
                self.schedule_tick(journey, user);
            }
        }
        if self.concerns.get(event as usize).copied().unwrap_or(true) {
            let instances = self.user_instances(user, |interest| {
                interest
                    .events
                    .get(event as usize)
                    .copied()
                    .unwrap_or(false)
            });
            // 1. Goals, then exits.
            for &i in &instances {
                self.check_triggers(i, Some((event, &fields)));
            }
            // 2. Waits the event satisfies (then `unless` entries it cancels, below).
            for &i in &instances {
                self.check_wait(i, event, &fields);
            }
            self.scratch = instances;
        }
        let cancels = self.cancels.get(event as usize).copied().unwrap_or(false);
        let pending_ids: Vec<u64> = match self.users.get(user as usize) {
            Some(u) if cancels && !u.pending.is_empty() => {
                u.pending.iter().map(|(id, _)| *id).collect()
            }
            _ => Vec::new(),
        };
        for id in pending_ids {
            let Some(pending) = self.pending.get(&id) else {
                continue;
            };
            if pending.cancelled {
                continue;
            }
            let journey = &self.program.journeys[pending.journey as usize];
            if let bc::Entry::On {
                unless: Some(unless),
                ..
            } = &journey.entry
            {
                if unless.event == event {
                    let (pj, slots) = (pending.journey, pending.slots.clone());
                    let zone = if self.prepared.reads_zone(unless.filter) {
                        self.zone(pj, user, &slots)
                    } else {
                        chrono_tz::UTC
                    };
                    let matches = unless.filter == NONE
                        || self.prepared.holds(
                            unless.filter,
                            &self.outside_reader(
                                user,
                                Some(&fields),
                                Some((pj, &slots, now)),
                                zone,
                            ),
                        );
                    if matches {
                        if let Some(p) = self.pending.get_mut(&id) {
                            p.cancelled = true;
                            let (user, journey, key) = (p.user, p.journey, p.key.clone());
                            self.report_running(user, journey, &key, -1);
                        }
                    }
                }
            }
        }
        // 3. Entries.
        let entered = self.entered_on.get(event as usize).map_or(0, SmallVec::len);
        for k in 0..entered {
            let journey = self.entered_on[event as usize][k];
            if self.only.is_none_or(|only| only == journey) {
                self.try_enter(journey, user, Some(&fields));
            }
        }
        if self.reread_on.get(event as usize).copied().unwrap_or(true) {
            self.reevaluate(user, Some(event));
        }
    }

    fn identify(&mut self, user: UserId, traits: Vec<(u32, Value)>) {
        if let Some(u) = self.users.get_mut(user as usize) {
            for (field, value) in traits {
                if let Some(slot) = u.traits.get_mut(field as usize) {
                    *slot = Some(value);
                }
            }
        }
        for journey in 0..self.program.journeys.len() as u32 {
            if matches!(
                self.program.journeys[journey as usize].entry,
                bc::Entry::When { .. }
            ) {
                self.schedule_tick(journey, user);
            }
        }
        self.reevaluate(user, None);
    }

    /// `when` goals and exits, and condition waits, of a user's instances after a change.
    fn reevaluate(&mut self, user: UserId, event: Option<u32>) {
        let instances = self.user_instances(user, |interest| {
            interest.on_change
                && event.is_none_or(|e| interest.reread_on.get(e as usize).copied().unwrap_or(true))
        });
        for &i in &instances {
            self.check_triggers(i, None);
            let Some(instance) = self.instances.get(i).and_then(Option::as_ref) else {
                continue;
            };
            if self.state(instance.journey) == JourneyState::Paused {
                continue;
            }
            if let Some(block) = self.waited_condition(instance) {
                if self.instance_holds(block, i, None) {
                    self.resume(i);
                }
            }
        }
        self.scratch = instances;
    }

    /// The slots of a user's instances (in entry order) of the journeys `concerned` picks, in a
    /// reused buffer: hand it back to `self.scratch` when done.
    fn user_instances(
        &mut self,
        user: UserId,
        concerned: impl Fn(&Interest) -> bool,
    ) -> Vec<usize> {
        let mut list = std::mem::take(&mut self.scratch);
        list.clear();
        if let Some(u) = self.users.get(user as usize) {
            let any = u.journeys.iter().any(|(journey, _)| {
                self.interests
                    .get(*journey as usize)
                    .is_some_and(&concerned)
            });
            if !any {
                return list;
            }
            list.extend(
                u.instances
                    .iter()
                    .filter(|(journey, _, _)| {
                        self.interests
                            .get(*journey as usize)
                            .is_some_and(&concerned)
                    })
                    .map(|(_, index, _)| *index as usize),
            );
        }
        list
    }

    // ------------------------------------------------------------ entries

    fn capture_entry(&self, journey: u32, fields: &[Value]) -> Vec<Value> {
        let desc = &self.program.journeys[journey as usize];
        let mut slots = absent_slots(desc.slots.len());
        for c in &desc.entry_captures {
            if let (Some(slot), Some(value)) = (
                slots.get_mut(usize::from(c.slot)),
                fields.get(usize::from(c.field)),
            ) {
                *slot = value.clone();
            }
        }
        slots
    }

    /// Checks a journey's entry for a user (filter, audience, reentry, correlation).
    fn try_enter(&mut self, journey: u32, user: UserId, fields: Option<&Arc<[Value]>>) {
        if self.state(journey) != JourneyState::Live {
            return;
        }
        let desc = &self.program.journeys[journey as usize];
        let now = self.now;
        // The checks only read, so their order changes no outcome. Reentry, which refuses a
        // user already in the journey (the most common refusal), comes first when the key is
        // known before anything is captured: without a key, or with one that is an entry field.
        let early_key = if desc.correlate == NONE {
            Some(None)
        } else {
            match (self.key_fields[journey as usize], &fields) {
                (Some(field), Some(f)) => match f.get(usize::from(field)).and_then(Value::to_str) {
                    Some(key) => Some(Some(key)),
                    // No key, no instance: a correlated journey needs one.
                    None => return,
                },
                _ => None,
            }
        };
        if let Some(key) = &early_key {
            if !self.reentry_allows(journey, user, key) {
                return;
            }
        }
        let slots = fields.as_ref().map_or_else(
            || absent_slots(desc.slots.len()),
            |f| self.capture_entry(journey, f),
        );
        // Entry checks see local times in the zone the instance would have (found only when a
        // check reads local time: it costs a block and a profile read).
        let entry_filter = match &desc.entry {
            bc::Entry::On { filter, .. } => *filter,
            _ => NONE,
        };
        let checks = [entry_filter, desc.correlate, desc.audience];
        let found_zone = if checks.iter().any(|b| self.prepared.reads_zone(*b)) {
            Some(self.zone(journey, user, &slots))
        } else {
            None
        };
        let zone = found_zone.unwrap_or(chrono_tz::UTC);
        if let (bc::Entry::On { filter, .. }, Some(fields)) = (&desc.entry, &fields) {
            if *filter != NONE
                && !self.prepared.holds(
                    *filter,
                    &self.outside_reader(user, Some(fields), Some((journey, &slots, now)), zone),
                )
            {
                return;
            }
        }
        let key = match early_key {
            Some(key) => key,
            None => {
                let key = self.prepared.run(
                    desc.correlate,
                    &self.outside_reader(user, None, Some((journey, &slots, now)), zone),
                );
                let Some(key) = key.to_str() else {
                    // No key, no instance: a correlated journey needs one.
                    return;
                };
                let key = Some(key);
                // Reentry before the audience: the cheaper refusal.
                if !self.reentry_allows(journey, user, &key) {
                    return;
                }
                key
            }
        };
        if desc.audience != NONE
            && !self.prepared.holds(
                desc.audience,
                &self.outside_reader(user, None, Some((journey, &slots, now)), zone),
            )
        {
            return;
        }
        if let (
            bc::Entry::On {
                unless: Some(unless),
                ..
            },
            Some(_),
        ) = (&desc.entry, &fields)
        {
            // Wait out the window; a pending entry counts as being in the journey.
            self.next_pending += 1;
            let id = self.next_pending;
            let tag = key_tag(&key);
            self.report_running(user, journey, &key, 1);
            self.pending.insert(
                id,
                Pending {
                    journey,
                    user,
                    key,
                    slots,
                    cancelled: false,
                    unless: NO_TIMER,
                },
            );
            if let Some(u) = self.users.get_mut(user as usize) {
                u.pending.push((id, tag));
            }
            let key = self.set_timer(Due::After(unless.within_ms), Timer::Unless { pending: id });
            if let Some(p) = self.pending.get_mut(&id) {
                p.unless = key;
            }
            return;
        }
        self.start_instance(journey, user, slots, found_zone, key);
    }

    fn reentry_allows(&self, journey: u32, user: UserId, key: &Option<Str>) -> bool {
        let Some(u) = self.users.get(user as usize) else {
            return false;
        };
        let tag = key_tag(key);
        let runs_with_key = |slot: u32| {
            self.instances
                .get(slot as usize)
                .and_then(Option::as_ref)
                .is_some_and(|inst| {
                    inst.journey == journey && self.key(inst) == key.as_ref().map(Str::as_bytes)
                })
        };
        let running = match &u.running {
            Some(index) => index
                .by_key
                .get(&(journey, tag))
                .is_some_and(|slots| slots.iter().any(|slot| runs_with_key(*slot))),
            None => u
                .instances
                .iter()
                .any(|(j, slot, t)| *j == journey && *t == tag && runs_with_key(*slot)),
        };
        let pending = u
            .pending
            .iter()
            .filter(|(_, t)| *t == tag)
            .filter_map(|(id, _)| self.pending.get(id))
            .any(|p| p.journey == journey && p.key == *key && !p.cancelled);
        if running || pending || self.runs_elsewhere(user, journey, key) {
            return false;
        }
        let entries = u
            .entries
            .iter()
            .find(|log| log.journey == journey && log.tag == tag && log.key == *key)
            .map_or(&[][..], |log| log.times.as_slice());
        let now = self.now;
        match self.program.journeys[journey as usize].reentry {
            bc::Reentry::Once => entries.is_empty(),
            bc::Reentry::Always => true,
            bc::Reentry::After(ms) => entries
                .last()
                .is_none_or(|last| now.saturating_sub(*last) >= ms),
            bc::Reentry::MaxPer { max, per_ms } => {
                (entries
                    .iter()
                    .filter(|t| now.saturating_sub(**t) < per_ms)
                    .count() as u32)
                    < max
            }
        }
    }

    /// Starts an instance: records the entry, arms the timeout, checks `when` triggers, runs.
    /// `zone` is the instance's, when the entry checks needed it already.
    fn start_instance(
        &mut self,
        journey: u32,
        user: UserId,
        slots: Vec<Value>,
        zone: Option<chrono_tz::Tz>,
        key: Option<Str>,
    ) {
        let zone = match zone {
            Some(zone) => zone,
            None => self.zone(journey, user, &slots),
        };
        let now = self.now;
        let desc = &self.program.journeys[journey as usize];
        let body = self.program.blocks[desc.body as usize];
        self.next_token = self.next_token.wrapping_add(1);
        let token = self.next_token;
        let mut slots = slots;
        if let (Some(at), Some(key)) = (self.key_slots[journey as usize], &key) {
            if at >= slots.len() {
                slots.resize(at + 1, Value::Absent);
                slots[at] = Value::from(key.clone());
            }
        }
        let instance = Instance {
            journey,
            user,
            entered_at: now,
            pc: body.offset,
            slots: slots.into(),
            waiting: Waiting::Nothing,
            token,
            zone,
            step: u16::MAX,
            wake: NO_TIMER,
            timeout: 0,
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.instances[index] = Some(instance);
                index
            }
            None => {
                self.instances.push(Some(instance));
                self.instances.len() - 1
            }
        };
        if let Some(u) = self.users.get_mut(user as usize) {
            let tag = key_tag(&key);
            u.instances.push((journey, index as u32, tag));
            match &mut u.running {
                Some(running) => running
                    .by_key
                    .entry((journey, tag))
                    .or_default()
                    .push(index as u32),
                None if u.instances.len() > MANY_INSTANCES => {
                    // (Without an index the list has no `ENDED` marks.)
                    let mut running = RunningIndex::default();
                    for (j, slot, t) in &u.instances {
                        running.by_key.entry((*j, *t)).or_default().push(*slot);
                    }
                    u.running = Some(Box::new(running));
                }
                None => {}
            }
            match u.journeys.iter_mut().find(|(j, _)| *j == journey) {
                Some((_, count)) => *count += 1,
                None => u.journeys.push((journey, 1)),
            }
        }
        self.log_entry(user, journey, &key, now);
        self.report(|e| Fact::Entry {
            user: e.user_str(user),
            journey: e.journey_name(journey),
            key: key.clone(),
            at: now,
        });
        self.report_running(user, journey, &key, 1);
        self.stats[journey as usize].entered += 1;
        self.timeline.push(Record {
            at: now,
            user,
            journey,
            key,
            kind: RecordKind::Entered,
        });
        if let Some(timeout) = self.armed_timeouts[journey as usize] {
            let (_, sequence) = self.set_timer(
                Due::After(timeout),
                Timer::Timeout {
                    instance: index,
                    journey,
                    entered_at: now,
                },
            );
            if let Some(instance) = self.instances[index].as_mut() {
                instance.timeout = sequence;
            }
        }
        // `when` goals and exits may hold at entry (a journey without conditions has none).
        if self.interests[journey as usize].on_change {
            self.check_triggers(index, None);
        }
        if self.instances[index].is_some() {
            self.run(index);
        }
    }

    /// The zone of an instance of `journey` for `user` with `slots`: the journey's `timezone`
    /// block, parsed (once per zone name: parsed zones are kept), UTC when it names none.
    fn zone(&mut self, journey: u32, user: UserId, slots: &[Value]) -> chrono_tz::Tz {
        let block = self.program.journeys[journey as usize].timezone;
        if block == NONE {
            return chrono_tz::UTC;
        }
        let name = self.prepared.run(
            block,
            &self.outside_reader(user, None, Some((journey, slots, self.now)), chrono_tz::UTC),
        );
        let Some(name) = name.to_str() else {
            return chrono_tz::UTC;
        };
        if let Some((last, zone)) = &self.last_zone {
            if *last == name {
                return *zone;
            }
        }
        let zone = match self.zones.get(&name) {
            Some(zone) => *zone,
            None => match chrono_tz::Tz::from_str(&name) {
                Ok(zone) => {
                    // Only valid names are kept, so inputs cannot grow the map without bound.
                    self.zones.insert(name.clone(), zone);
                    zone
                }
                Err(_) => {
                    self.zone_fallbacks += 1;
                    return chrono_tz::UTC;
                }
            },
        };
        self.last_zone = Some((name, zone));
        zone
    }

    // ------------------------------------------------------------ goals, exits, waits

    /// Goals then exits of one instance: on an event (not its own entry event), or `when`
    /// conditions (always re-checked).
    fn check_triggers(&mut self, index: usize, event: Option<(u32, &Arc<[Value]>)>) {
        let Some(instance) = self.instances.get(index).and_then(Option::as_ref) else {
            return;
        };
        let desc = &self.program.journeys[instance.journey as usize];
        for (outcome, triggers) in [(Outcome::Goal, &desc.goals), (Outcome::Exited, &desc.exits)] {
            for trigger in triggers {
                let fires = match (trigger.event, event) {
                    (Some(e), Some((got, fields))) if e == got => {
                        trigger.block == NONE
                            || self.instance_holds(trigger.block, index, Some(fields))
                    }
                    (None, _) => self.instance_holds(trigger.block, index, None),
                    _ => false,
                };
                if fires {
                    self.end(index, outcome, Some(trigger.name));
                    return;
                }
            }
        }
    }

    fn check_wait(&mut self, index: usize, event: u32, fields: &Arc<[Value]>) {
        let Some(instance) = self.instances.get(index).and_then(Option::as_ref) else {
            return;
        };
        if self.state(instance.journey) == JourneyState::Paused {
            return;
        }
        let desc = &self.program.journeys[instance.journey as usize];
        match instance.waiting {
            Waiting::Event { wait } => {
                let w = &desc.waits[wait as usize];
                if let bc::WaitKind::Event {
                    event: e,
                    filter,
                    captures,
                    ..
                } = &w.kind
                {
                    if *e == event
                        && (*filter == NONE || self.instance_holds(*filter, index, Some(fields)))
                    {
                        let captures = captures.clone();
                        self.capture(index, &captures, fields);
                        self.resume(index);
                    }
                }
            }
            Waiting::Any { wait } => {
                let w = &desc.wait_anys[wait as usize];
                let arm = w.arms.iter().find(|arm| {
                    arm.event == event
                        && (arm.filter == NONE
                            || self.instance_holds(arm.filter, index, Some(fields)))
                });
                if let Some(arm) = arm.cloned() {
                    self.capture(index, &arm.captures, fields);
                    if let Some(instance) = self.instances[index].as_mut() {
                        instance.pc = arm.target;
                    }
                    self.resume(index);
                }
            }
            _ => {}
        }
    }

    fn capture(&mut self, index: usize, captures: &[bc::Capture], fields: &[Value]) {
        if let Some(instance) = self.instances.get_mut(index).and_then(Option::as_mut) {
            for c in captures {
                if let (Some(slot), Some(value)) = (
                    instance.slots.get_mut(usize::from(c.slot)),
                    fields.get(usize::from(c.field)),
                ) {
                    *slot = value.clone();
                }
            }
        }
    }

    /// A wait's deadline: continue at its timeout target, or end with `timeout`.
    fn deadline(&mut self, index: usize) {
        let Some(instance) = self.instances.get(index).and_then(Option::as_ref) else {
            return;
        };
        let desc = &self.program.journeys[instance.journey as usize];
        let target = match instance.waiting {
            Waiting::Event { wait } | Waiting::Condition { wait } => {
                desc.waits[wait as usize].timeout_target
            }
            Waiting::Any { wait } => desc.wait_anys[wait as usize].timeout_target,
            _ => return self.resume(index),
        };
        if target == NONE {
            self.end(index, Outcome::Timeout, None);
            return;
        }
        if let Some(instance) = self.instances[index].as_mut() {
            instance.pc = target;
        }
        self.resume(index);
    }

    fn resume(&mut self, index: usize) {
        let pending_send = match self.instances.get_mut(index).and_then(Option::as_mut) {
            Some(instance) => {
                self.next_token = self.next_token.wrapping_add(1);
                instance.token = self.next_token;
                instance.wake = NO_TIMER;
                match std::mem::replace(&mut instance.waiting, Waiting::Nothing) {
                    Waiting::Send { send } => Some(send),
                    _ => None,
                }
            }
            None => return,
        };
        if let Some(send) = pending_send {
            let args = self.deferred.remove(&index).unwrap_or_default();
            self.deliver(index, send, args);
        }
        self.run(index);
    }

    fn end(&mut self, index: usize, outcome: Outcome, name: Option<u32>) {
        let Some(instance) = self.instances.get_mut(index).and_then(Option::take) else {
            return;
        };
        self.free.push(index);
        // (Only a send waiting out quiet hours has its arguments kept.)
        if matches!(instance.waiting, Waiting::Send { .. }) {
            self.deferred.remove(&index);
        }
        if let Some(u) = self.users.get_mut(instance.user as usize) {
            u.forget_instance(index);
            if let Some(at) = u.journeys.iter().position(|(j, _)| *j == instance.journey) {
                u.journeys[at].1 -= 1;
                if u.journeys[at].1 == 0 {
                    u.journeys.swap_remove(at);
                }
            }
        }
        let key = self.owned_key(&instance);
        self.report_running(instance.user, instance.journey, &key, -1);
        *self.stats[instance.journey as usize]
            .outcomes
            .entry(outcome)
            .or_insert(0) += 1;
        self.timeline.push(Record {
            at: self.now,
            user: instance.user,
            journey: instance.journey,
            key,
            kind: RecordKind::Exited { outcome, name },
        });
    }

    // ------------------------------------------------------------ running a body

    /// Runs an instance from its `pc` until it sleeps or ends.
    fn run(&mut self, index: usize) {
        /// Why the expression instructions stopped.
        enum Stop {
            /// At an instruction that acts on the engine.
            Acts(Instruction),
            /// At the body's end or its `Return`.
            Ended,
            /// After `MAX_RUN` instructions.
            OutOfBudget,
        }
        let mut stack = eval::Stack::new();
        let mut budget = MAX_RUN;
        while budget > 0 {
            let Some(instance) = self.instances.get(index).and_then(Option::as_ref) else {
                return;
            };
            let journey = instance.journey;
            let body = self.program.blocks[self.program.journeys[journey as usize].body as usize];
            let end = body.offset.saturating_add(body.length);
            // Expression instructions, jumps and step marks run here, the instance read once
            // for all of them; the loop leaves at the first instruction that acts on the engine
            // (or the body's end). The steps marked on the way are counted after it, before
            // that instruction acts (a send records its step).
            let mut pc = instance.pc;
            let mut marked: SmallVec<[u32; 4]> = SmallVec::new();
            let stop = {
                let Some(context) = self.reader(index, None) else {
                    return;
                };
                loop {
                    budget -= 1;
                    let Some(ins) = self.prepared.instruction(pc, end) else {
                        break Stop::Ended;
                    };
                    let [a, _] = ins.operands;
                    pc = match ins.opcode {
                        Opcode::Step => {
                            marked.push(a);
                            ins.next
                        }
                        Opcode::Jump => a,
                        Opcode::JumpIfFalse => {
                            let condition = stack.pop().unwrap_or(Value::Absent);
                            if condition.is_true() {
                                ins.next
                            } else {
                                a
                            }
                        }
                        _ => match eval::step(
                            &self.prepared,
                            ins.opcode,
                            ins.operands,
                            &mut stack,
                            &context,
                        ) {
                            Flow::Next => ins.next,
                            Flow::Return(_) => break Stop::Ended,
                            Flow::NotAnExpression => break Stop::Acts(ins),
                        },
                    };
                    if budget == 0 {
                        break Stop::OutOfBudget;
                    }
                }
            };
            self.set_pc(index, pc);
            self.mark_steps(index, journey, &marked);
            let ins = match stop {
                Stop::Acts(ins) => ins,
                Stop::OutOfBudget => return,
                Stop::Ended => return self.end(index, Outcome::Completed, None),
            };
            let next = ins.next;
            let [a, b] = ins.operands;
            let now = self.now;
            match ins.opcode {
                Opcode::Wait => {
                    let ms = match self.prepared.constant(a) {
                        Value::Duration(ms) => ms,
                        _ => 0,
                    };
                    return self.sleep(index, next, Due::After(ms));
                }
                Opcode::WaitUntilTime => {
                    let zone = if b == 1 {
                        self.instances[index]
                            .as_ref()
                            .map_or(chrono_tz::UTC, |i| i.zone)
                    } else {
                        chrono_tz::UTC
                    };
                    let at = self
                        .local_times
                        .next_time_of_day(zone, now, a as u16, |_| true)
                        .unwrap_or(now);
                    return self.sleep(index, next, Due::At(at));
                }
                Opcode::WaitUntil => match stack.pop() {
                    Some(Value::Timestamp(at)) if at > now => {
                        return self.sleep(index, next, Due::At(at))
                    }
                    _ => self.set_pc(index, next),
                },
                Opcode::WaitFor => {
                    let wait = self.program.journeys[journey as usize].waits[a as usize].clone();
                    self.set_pc(index, next);
                    match &wait.kind {
                        bc::WaitKind::Condition { block } => {
                            if self.instance_holds(*block, index, None) {
                                continue;
                            }
                            self.set_waiting(index, Waiting::Condition { wait: a as u16 });
                        }
                        bc::WaitKind::Event {
                            event,
                            filter,
                            since_entry,
                            captures,
                        } => {
                            if *since_entry {
                                if let Some(fields) = self.since_entry_match(index, *event, *filter)
                                {
                                    self.capture(index, captures, &fields);
                                    continue;
                                }
                            }
                            self.set_waiting(index, Waiting::Event { wait: a as u16 });
                        }
                    }
                    if let Some(within) = wait.within_ms {
                        self.wake_at(index, Due::After(within), true);
                    }
                    return;
                }
                Opcode::WaitAny => {
                    let within =
                        self.program.journeys[journey as usize].wait_anys[a as usize].within_ms;
                    self.set_waiting(index, Waiting::Any { wait: a as u16 });
                    self.wake_at(index, Due::After(within), true);
                    return;
                }
                Opcode::Send => {
                    // Named as the timeline records them, in one allocation.
                    let names = &self.program.journeys[journey as usize].sends[a as usize].args;
                    let args: Vec<(u32, Value)> = names
                        .iter()
                        .copied()
                        .zip(stack.drain(stack.len().saturating_sub(names.len())..))
                        .collect();
                    self.set_pc(index, next);
                    if let Some(defer_until) = self.quiet_deferral(index, a as u16) {
                        self.set_waiting(index, Waiting::Send { send: a as u16 });
                        self.deferred.insert(index, args);
                        self.wake_at(index, Due::At(defer_until), false);
                        return;
                    }
                    self.deliver(index, a as u16, args);
                }
                Opcode::SetProfile | Opcode::AddProfile | Opcode::RemoveProfile => {
                    let value = stack.pop().unwrap_or(Value::Absent);
                    self.set_pc(index, next);
                    self.update_profile(index, ins.opcode, a, value);
                }
                Opcode::Split => {
                    let arms = self.program.journeys[journey as usize].splits[a as usize].clone();
                    let arm = self.split_arm(index, &arms);
                    if let Some(count) = self.stats[journey as usize]
                        .split_arms
                        .get_mut(a as usize)
                        .and_then(|s| s.get_mut(arm))
                    {
                        *count += 1;
                    }
                    self.set_pc(index, arms[arm].target);
                }
                Opcode::Start => {
                    self.set_pc(index, next);
                    let user = self.instances[index].as_ref().map(|i| i.user);
                    if let Some(user) = user {
                        if self.state(a) == JourneyState::Live {
                            self.try_enter(a, user, None);
                        } else {
                            // Another version may take the entry.
                            self.report(|e| Fact::Start {
                                user: e.user_str(user),
                                journey: e.journey_name(a),
                            });
                        }
                    }
                }
                _ => return self.end(index, Outcome::Completed, None),
            }
        }
    }

    /// The instance reached steps `marked`, in that order: counted, traced, and the last is
    /// where it is now.
    fn mark_steps(&mut self, index: usize, journey: u32, marked: &[u32]) {
        let Some(&last) = marked.last() else {
            return;
        };
        let Some(instance) = self.instances.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        instance.step = last as u16;
        let user = instance.user;
        let stats = &mut self.stats[journey as usize];
        for step in marked {
            if let Some(reached) = stats.reached.get_mut(*step as usize) {
                *reached += 1;
            }
            if let Some(trace) = &mut self.trace {
                trace.push((self.now, user, journey, *step));
            }
        }
    }

    fn set_pc(&mut self, index: usize, pc: u32) {
        if let Some(instance) = self.instances.get_mut(index).and_then(Option::as_mut) {
            instance.pc = pc;
        }
    }

    /// Sets a timer that resumes the instance (or ends its wait, for a deadline) when `due`,
    /// unless it changes state first.
    fn wake_at(&mut self, index: usize, due: Due, deadline: bool) {
        let token = self
            .instances
            .get(index)
            .and_then(Option::as_ref)
            .map_or(0, |i| i.token);
        let key = self.set_timer(
            due,
            Timer::Resume {
                instance: index,
                token,
                deadline,
            },
        );
        if let Some(instance) = self.instances.get_mut(index).and_then(Option::as_mut) {
            instance.wake = key;
        }
    }

    fn set_waiting(&mut self, index: usize, waiting: Waiting) {
        if let Some(instance) = self.instances.get_mut(index).and_then(Option::as_mut) {
            instance.waiting = waiting;
            self.next_token = self.next_token.wrapping_add(1);
            instance.token = self.next_token;
            instance.wake = NO_TIMER;
        }
    }

    fn sleep(&mut self, index: usize, pc: u32, due: Due) {
        self.set_pc(index, pc);
        self.set_waiting(index, Waiting::Nothing);
        self.wake_at(index, due, false);
    }

    /// The latest event of `event` since entry that passes `filter`, for `since entry` waits.
    fn since_entry_match(&self, index: usize, event: u32, filter: u32) -> Option<Arc<[Value]>> {
        let instance = self.instances.get(index)?.as_ref()?;
        self.kept(self.users.get(instance.user as usize)?, event)
            .iter()
            .filter(|(t, _)| *t > instance.entered_at)
            .find(|(_, fields)| filter == NONE || self.instance_holds(filter, index, Some(fields)))
            .map(|(_, fields)| fields.clone())
    }

    /// Quiet hours: when a send must wait, the moment the window ends.
    fn quiet_deferral(&mut self, index: usize, send: u16) -> Option<i64> {
        let instance = self.instances.get(index)?.as_ref()?;
        let desc = &self.program.journeys[instance.journey as usize];
        let quiet = desc.quiet?;
        if desc.sends.get(usize::from(send))?.transactional || quiet.skip {
            return None;
        }
        let zone = instance.zone;
        let minute = self.local_times.minute(zone, self.now)?;
        if !clock::in_window(minute, quiet.start_minute, quiet.end_minute) {
            return None;
        }
        self.local_times
            .next_time_of_day(zone, self.now, quiet.end_minute, |_| true)
    }

    /// Emits a send with its arguments `(name, value)`, or records it as skipped (quiet hours
    /// with `skip`, or a cap).
    fn deliver(&mut self, index: usize, send: u16, args: Vec<(u32, Value)>) {
        let Some(instance) = self.instances.get(index).and_then(Option::as_ref) else {
            return;
        };
        let (journey, user, key, step, zone) = (
            instance.journey,
            instance.user,
            self.owned_key(instance),
            if instance.step == u16::MAX {
                NONE
            } else {
                u32::from(instance.step)
            },
            instance.zone,
        );
        let desc = &self.program.journeys[journey as usize];
        let Some(s) = desc.sends.get(usize::from(send)) else {
            return;
        };
        let now = self.now;
        let skip = |reason: &'static str| Record {
            at: now,
            user,
            journey,
            key: key.clone(),
            kind: RecordKind::Skipped { step, reason },
        };
        if !s.transactional {
            if let Some(quiet) = desc.quiet.filter(|q| q.skip) {
                if self
                    .local_times
                    .minute(zone, now)
                    .is_some_and(|m| clock::in_window(m, quiet.start_minute, quiet.end_minute))
                {
                    self.timeline.push(skip("quiet_hours"));
                    return;
                }
            }
            let sends = self
                .users
                .get(user as usize)
                .map_or(&[][..], |u| u.sends.as_slice());
            let capped = self
                .program
                .caps
                .iter()
                .filter(|cap| cap.channel.is_none_or(|channel| channel == s.channel))
                .any(|cap| {
                    // Sends are kept oldest first: count back from the newest.
                    let counted = sends
                        .iter()
                        .rev()
                        .take_while(|(t, _)| now.saturating_sub(*t) < cap.window_ms)
                        .filter(|(_, c)| cap.channel.is_none_or(|channel| channel == *c))
                        .count();
                    counted as u32 >= cap.limit
                });
            if capped {
                self.timeline.push(skip("capped"));
                return;
            }
            if let Some(u) = self.users.get_mut(user as usize) {
                // Only sends inside the longest cap's window can count again.
                let stale = u
                    .sends
                    .partition_point(|(t, _)| now.saturating_sub(*t) >= self.longest_cap);
                if stale > 0 {
                    u.sends.drain(..stale);
                }
                if self.longest_cap > 0 {
                    u.sends.push((now, s.channel));
                }
            }
            let channel = s.channel;
            self.report(|e| Fact::Sent {
                user: e.user_str(user),
                channel,
                at: now,
            });
        }
        let record = RecordKind::Send {
            channel: s.channel,
            template: Some(s.template).filter(|t| *t != NONE),
            id: Some(s.id).filter(|i| *i != NONE),
            step,
            send,
            args,
        };
        self.timeline.push(Record {
            at: now,
            user,
            journey,
            key,
            kind: record,
        });
    }

    fn update_profile(&mut self, index: usize, opcode: Opcode, field: u32, value: Value) {
        let Some(user) = self
            .instances
            .get(index)
            .and_then(Option::as_ref)
            .map(|i| i.user)
        else {
            return;
        };
        let current = self.profile_value(user, field);
        let new = match opcode {
            Opcode::SetProfile => value,
            _ => {
                let mut items: Vec<Value> = match current {
                    Value::List(items) => items.to_vec(),
                    _ => Vec::new(),
                };
                if opcode == Opcode::AddProfile {
                    if !items.contains(&value) {
                        items.push(value);
                    }
                } else {
                    items.retain(|v| *v != value);
                }
                Value::List(items.into())
            }
        };
        // A `set` that reads a missing field does nothing.
        if matches!(new, Value::Missing) {
            return;
        }
        self.report(|e| Fact::Profile {
            user: e.user_str(user),
            field: Str::new(
                e.program
                    .record_fields(e.program.profile)
                    .and_then(|f| f.get(field as usize))
                    .map_or("", |f| e.program.string(f.name)),
            ),
            value: new.clone(),
        });
        if let Some(slot) = self
            .users
            .get_mut(user as usize)
            .and_then(|u| u.traits.get_mut(field as usize))
        {
            *slot = Some(new);
        }
        self.reevaluate(user, None);
    }

    /// Reports that the user's instances of the journey with the key went up or down by one.
    fn report_running(&mut self, user: UserId, journey: u32, key: &Option<Str>, change: i32) {
        self.report(|e| Fact::Running {
            user: e.user_str(user),
            journey: e.journey_name(journey),
            key: key.clone(),
            change,
        });
    }

    fn profile_value(&self, user: UserId, field: u32) -> Value {
        match self
            .users
            .get(user as usize)
            .and_then(|u| u.traits.get(field as usize))
            .cloned()
            .flatten()
        {
            Some(value) => value,
            None => self.prepared.unset_profile(field),
        }
    }

    /// An instance's correlation key (`key_slot`), as bytes: what comparing and hashing need
    /// (without the UTF-8 check of `Value::as_str`).
    fn key<'i>(&self, instance: &'i Instance) -> Option<&'i [u8]> {
        self.key_value(instance)?.str_bytes()
    }

    /// `key`, kept apart from the instance.
    fn owned_key(&self, instance: &Instance) -> Option<Str> {
        self.key_value(instance)?.to_str()
    }

    fn key_value<'i>(&self, instance: &'i Instance) -> Option<&'i Value> {
        let at = (*self.key_slots.get(instance.journey as usize)?)?;
        instance.slots.get(at)
    }

    /// The split arm for an instance: a hash of (user, key, journey, step), so a replay agrees.
    fn split_arm(&self, index: usize, arms: &[bc::SplitArm]) -> usize {
        let Some(instance) = self.instances.get(index).and_then(Option::as_ref) else {
            return 0;
        };
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for byte in bytes {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
            hash ^= 0xff;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        };
        feed(self.user_name(instance.user).as_bytes());
        feed(self.key(instance).unwrap_or_default());
        feed(
            self.program
                .string(self.program.journeys[instance.journey as usize].name)
                .as_bytes(),
        );
        feed(&u32::from(instance.step).to_le_bytes());
        let point = (hash % 1000) as u16;
        let mut cumulative = 0;
        for (i, arm) in arms.iter().enumerate() {
            cumulative += arm.tenths;
            if point < cumulative {
                return i;
            }
        }
        arms.len().saturating_sub(1)
    }

    // ------------------------------------------------------------ evaluation

    /// What a running instance's expressions read.
    fn reader<'e>(&'e self, index: usize, event: Option<&'e [Value]>) -> Option<Reader<'e, 'p>> {
        let instance = self.instances.get(index)?.as_ref()?;
        Some(Reader {
            engine: self,
            user: instance.user,
            event,
            instance: Some((instance.journey, &instance.slots, instance.entered_at)),
            zone: instance.zone,
        })
    }

    /// Whether condition `block` holds for instance `index` (and `event`, if given).
    fn instance_holds(&self, block: u32, index: usize, event: Option<&Arc<[Value]>>) -> bool {
        self.reader(index, event.map(|e| &e[..]))
            .is_some_and(|reader| self.prepared.holds(block, &reader))
    }

    /// What a block evaluated outside a running instance reads (entry filters, audience,
    /// correlation, zone, `entry when`).
    fn outside_reader<'e>(
        &'e self,
        user: UserId,
        event: Option<&'e Arc<[Value]>>,
        instance: Option<(u32, &'e [Value], i64)>,
        zone: chrono_tz::Tz,
    ) -> Reader<'e, 'p> {
        Reader {
            engine: self,
            user,
            event: event.map(|e| &e[..]),
            instance,
            zone,
        }
    }

    /// Answers a history query for what `reader` reads (its user, entry, slots and zone).
    fn history(&self, reader: &Reader, query: u16, op: HistoryOp) -> Value {
        let user = reader.user;
        let entered_at = reader.instance.map(|(_, _, at)| at);
        let Some(q) = self.program.history.get(usize::from(query)) else {
            return Value::Absent;
        };
        let Some(u) = self.users.get(user as usize) else {
            return Value::Absent;
        };
        let events = self.kept(u, q.event);
        let now = self.now;
        // Events are in time order: start at the first one inside the window.
        let first = match q.window {
            bc::Window::None => 0,
            bc::Window::Within(ms) => events.partition_point(|(t, _)| *t <= now.saturating_sub(ms)),
            bc::Window::SinceEntry => match entered_at {
                Some(entered) => events.partition_point(|(t, _)| *t <= entered),
                None => events.len(),
            },
        };
        // History is appended as inputs come, so nothing kept is later than `now`.
        let events = &events[first..];
        let mut matching = events.iter().filter(|(_, fields)| {
            let context = Reader {
                event: Some(fields),
                ..*reader
            };
            q.filter == NONE || self.prepared.holds(q.filter, &context)
        });
        match op {
            // Unfiltered, the window's bounds are the answer.
            HistoryOp::Count if q.filter == NONE => Value::Int(events.len() as i64),
            HistoryOp::Count => Value::Int(matching.count() as i64),
            HistoryOp::Did => Value::Bool(matching.next().is_some()),
            HistoryOp::Last => matching
                .next_back()
                .map_or(Value::Absent, |(_, fields)| Value::Record(fields.clone())),
            HistoryOp::Sum => Value::Float(
                matching
                    .map(|(_, fields)| number(fields.get(q.field as usize)))
                    .sum(),
            ),
        }
    }
}

/// A field summed by `sum(E.f …)`: its number, 0 when absent.
fn number(value: Option<&Value>) -> f64 {
    match value {
        Some(Value::Int(n)) => *n as f64,
        Some(Value::Float(n)) => *n,
        _ => 0.0,
    }
}

/// What an expression reads: the user, the event being matched (if any), the journey, slots and
/// entry moment of the instance (or of the one about to enter), and the zone for local times.
struct Reader<'e, 'p> {
    engine: &'e Engine<'p>,
    user: UserId,
    event: Option<&'e [Value]>,
    instance: Option<(u32, &'e [Value], i64)>,
    zone: chrono_tz::Tz,
}

impl Context for Reader<'_, '_> {
    fn event_field(&self, field: u16) -> Value {
        self.event
            .and_then(|e| e.get(usize::from(field)))
            .cloned()
            .unwrap_or(Value::Absent)
    }
    fn profile_field(&self, field: u16) -> Value {
        self.engine.profile_value(self.user, u32::from(field))
    }
    fn slot(&self, slot: u16) -> Value {
        self.instance
            .and_then(|(_, slots, _)| slots.get(usize::from(slot)).cloned())
            .unwrap_or(Value::Absent)
    }
    fn now(&self) -> i64 {
        self.engine.now
    }
    fn entered_at(&self) -> i64 {
        self.instance.map_or(self.engine.now, |(_, _, at)| at)
    }
    fn history(&self, query: u16, op: HistoryOp) -> Value {
        self.engine.history(self, query, op)
    }
    fn zone(&self) -> chrono_tz::Tz {
        self.zone
    }
    fn frame(&self) -> Option<eval::Frame<'_>> {
        Some(eval::Frame {
            event: self.event.unwrap_or_default(),
            slots: self.instance.map_or(&[][..], |(_, slots, _)| slots),
            traits: self
                .engine
                .users
                .get(self.user as usize)
                .map_or(&[][..], |u| &u.traits[..]),
        })
    }
    fn lend(&self, source: eval::Read) -> Option<&Value> {
        match source {
            eval::Read::Event(f) => self.event?.get(usize::from(f)),
            eval::Read::Slot(s) => self.instance?.1.get(usize::from(s)),
            eval::Read::Profile(f) => {
                let set = self
                    .engine
                    .users
                    .get(self.user as usize)?
                    .traits
                    .get(usize::from(f));
                match set {
                    Some(Some(value)) => Some(value),
                    _ => self.engine.prepared.unset_profile_ref(u32::from(f)),
                }
            }
        }
    }
}
