//! A user's whole state ↔ one record of bytes: what `Engine::evict` takes out of memory and
//! `Engine::restore` brings back (docs/state.md describes the encoding).
//!
//! A user's state is its profile, its kept history, its entry logs, its sends inside cap
//! windows, what other engines run for it, and its running instances, pending `unless` entries
//! and scheduled entries — each with the timers that will wake it, kept with their due time and
//! their place in the order timers were set, so that a restored timer fires exactly where it
//! would have. The engine with a user evicted and restored at any moment between inputs gives
//! the same timeline as the engine that kept it (tests/vm.rs checks it on random streams).
//!
//! Records are read as untrusted bytes: every count is bounded by what is left to read, every
//! index is checked against the program, and a record that does not fit is refused whole,
//! before anything of it reaches the engine.

use std::str::FromStr;
use std::sync::Arc;

use smallvec::SmallVec;

use super::{
    facts, key_tag, Engine, EntryLog, Instance, Pending, RunningIndex, Timer, TimerKey, User,
    UserId, Waiting, ENDED, MANY_INSTANCES, NO_TIMER,
};
use crate::bytecode::{Channel, Program};
use crate::value::{Str, Value};

/// The encoding's version: the first byte of every record.
pub const VERSION: u8 = 1;

/// How deep values nest in a record (lists of records of lists …); the checker allows less.
const MAX_DEPTH: usize = 32;

/// A timer's key: (due time, place in the order timers were set).
type Key = (i64, u64);

/// A user taken out of the engine: its name, its record, and when its first timer is due (the
/// store's index of due timers holds it, so that the user is brought back in time).
#[derive(Debug, Clone, PartialEq)]
pub struct Evicted {
    pub name: Str,
    pub record: Vec<u8>,
    /// Its kept history, an event a row.
    pub history: Vec<HistoryRow>,
    pub next_timer: Option<Key>,
}

/// One kept event of a user, apart from its record: the record says which of each type are
/// kept (`first..next`), a store keeps each event once, and appends the new ones.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// The kept type (the program's `history_slots`).
    pub slot: u32,
    /// Its number among the user's events of that type ever kept.
    pub ordinal: u64,
    pub at: i64,
    /// Its fields, encoded as a record's values are.
    pub fields: Vec<u8>,
}

// ------------------------------------------------------------ writing

/// Appends `n` as a LEB128 varint (the encoding's unsigned numbers; a store that wraps
/// records in its own envelope uses the same).
pub fn put_uint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a LEB128 varint at `*at` of `bytes`, moving `at` past it.
pub fn read_uint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut n: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *bytes
            .get(*at)
            .ok_or_else(|| format!("the record ends early, at byte {at}"))?;
        *at += 1;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err(format!("a number that does not end, at byte {at}"))
}

struct Writer(Vec<u8>);

impl Writer {
    fn byte(&mut self, b: u8) {
        self.0.push(b);
    }

    fn uint(&mut self, n: u64) {
        put_uint(&mut self.0, n);
    }

    fn int(&mut self, n: i64) {
        self.uint(((n << 1) ^ (n >> 63)) as u64);
    }

    fn str(&mut self, s: &str) {
        self.uint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.byte(0),
            Some(s) => {
                self.byte(1);
                self.str(s);
            }
        }
    }

    fn key(&mut self, key: Option<Key>) {
        match key {
            None => self.byte(0),
            Some((at, sequence)) => {
                self.byte(1);
                self.int(at);
                self.uint(sequence);
            }
        }
    }

    fn value(&mut self, value: &Value) {
        use crate::value::tag;
        match value {
            Value::Absent => self.byte(tag::ABSENT),
            Value::Missing => self.byte(tag::MISSING),
            Value::Bool(b) => {
                self.byte(tag::BOOL);
                self.byte(u8::from(*b));
            }
            Value::Int(n) => {
                self.byte(tag::INT);
                self.int(*n);
            }
            Value::Float(x) => {
                self.byte(tag::FLOAT);
                self.0.extend_from_slice(&x.to_bits().to_le_bytes());
            }
            Value::Short { .. } | Value::Long(_) => {
                self.byte(tag::SHORT);
                self.str(value.as_str().unwrap_or_default());
            }
            Value::Timestamp(ms) => {
                self.byte(tag::TIMESTAMP);
                self.int(*ms);
            }
            Value::Duration(ms) => {
                self.byte(tag::DURATION);
                self.int(*ms);
            }
            Value::List(items) => {
                self.byte(tag::LIST);
                self.values(items);
            }
            Value::Record(fields) => {
                self.byte(tag::RECORD);
                self.values(fields);
            }
        }
    }

    fn values(&mut self, values: &[Value]) {
        self.uint(values.len() as u64);
        values.iter().for_each(|v| self.value(v));
    }
}

// ------------------------------------------------------------ reading

struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

type Read<T> = Result<T, String>;

impl<'b> Reader<'b> {
    fn byte(&mut self) -> Read<u8> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| format!("the record ends early, at byte {}", self.at))?;
        self.at += 1;
        Ok(b)
    }

    fn uint(&mut self) -> Read<u64> {
        read_uint(self.bytes, &mut self.at)
    }

    fn int(&mut self) -> Read<i64> {
        let n = self.uint()?;
        Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    fn u32(&mut self, what: &str) -> Read<u32> {
        u32::try_from(self.uint()?).map_err(|_| format!("{what} out of range"))
    }

    /// A count of things each at least one byte long: never more than what is left.
    fn count(&mut self) -> Read<usize> {
        let n = self.uint()?;
        let left = (self.bytes.len() - self.at) as u64;
        if n > left {
            return Err(format!(
                "a count of {n} with {left} bytes left, at byte {}",
                self.at
            ));
        }
        Ok(n as usize)
    }

    fn str(&mut self) -> Read<&'b str> {
        let n = self.count()?;
        let bytes = &self.bytes[self.at..self.at + n];
        self.at += n;
        std::str::from_utf8(bytes).map_err(|e| format!("a string that is not UTF-8: {e}"))
    }

    fn opt_str(&mut self) -> Read<Option<Str>> {
        Ok(match self.byte()? {
            0 => None,
            _ => Some(Str::new(self.str()?)),
        })
    }

    fn key(&mut self) -> Read<Option<Key>> {
        Ok(match self.byte()? {
            0 => None,
            _ => Some((self.int()?, self.uint()?)),
        })
    }

    fn value(&mut self, depth: usize) -> Read<Value> {
        use crate::value::tag;
        if depth > MAX_DEPTH {
            return Err(format!("values nested deeper than {MAX_DEPTH}"));
        }
        Ok(match self.byte()? {
            tag::ABSENT => Value::Absent,
            tag::MISSING => Value::Missing,
            tag::BOOL => Value::Bool(self.byte()? != 0),
            tag::INT => Value::Int(self.int()?),
            tag::FLOAT => {
                let end = self.at + 8;
                let bytes: [u8; 8] = self
                    .bytes
                    .get(self.at..end)
                    .and_then(|b| b.try_into().ok())
                    .ok_or("the record ends inside a number")?;
                self.at = end;
                Value::Float(f64::from_bits(u64::from_le_bytes(bytes)))
            }
            tag::SHORT | tag::LONG => Value::str(self.str()?),
            tag::TIMESTAMP => Value::Timestamp(self.int()?),
            tag::DURATION => Value::Duration(self.int()?),
            tag::LIST => Value::List(self.values(depth + 1)?.into()),
            tag::RECORD => Value::Record(self.values(depth + 1)?.into()),
            other => return Err(format!("no value has tag {other}")),
        })
    }

    fn values(&mut self, depth: usize) -> Read<Vec<Value>> {
        let n = self.count()?;
        (0..n).map(|_| self.value(depth)).collect()
    }
}

// ------------------------------------------------------------ a record, read

/// An instance as its record has it (its slot, token and user are the engine's to give).
struct InstanceRecord {
    journey: u32,
    entered_at: i64,
    pc: u32,
    slots: Vec<Value>,
    waiting: Waiting,
    zone: chrono_tz::Tz,
    step: u16,
    deferred: Option<Vec<(u32, Value)>>,
    /// Its `Resume` timer, and whether it is a deadline.
    resume: Option<(Key, bool)>,
    timeout: Option<Key>,
}

struct PendingRecord {
    journey: u32,
    key: Option<Str>,
    slots: Vec<Value>,
    cancelled: bool,
    unless: Option<Key>,
}

struct TickRecord {
    journey: u32,
    token: u64,
    timer: Option<Key>,
}

/// A whole record, read and checked against the program before any of it is applied.
struct UserRecord {
    name: Str,
    traits: Vec<Option<Value>>,
    /// Per kept type: how many were dropped before the first kept, and how many are kept.
    history: Vec<(u64, usize)>,
    entries: Vec<EntryLog>,
    sends: Vec<(i64, Channel)>,
    foreign: Option<Box<facts::Foreign>>,
    instances: Vec<InstanceRecord>,
    pending: Vec<PendingRecord>,
    ticks: Vec<TickRecord>,
}

fn waiting_code(waiting: &Waiting) -> (u8, u16) {
    match waiting {
        Waiting::Nothing => (0, 0),
        Waiting::Event { wait } => (1, *wait),
        Waiting::Condition { wait } => (2, *wait),
        Waiting::Any { wait } => (3, *wait),
        Waiting::Send { send } => (4, *send),
    }
}

impl Engine<'_> {
    /// The id of the user called `name`, if it is in memory.
    pub fn user_id(&self, name: &str) -> Option<UserId> {
        self.user_ids.get(self.user_ids.hash(name), name)
    }

    /// Lists the users that inputs, timers, facts and lifecycle moves touch from now on
    /// (`take_touched`): a store writes their records.
    pub fn track_touched(&mut self, on: bool) {
        self.tracking = on;
    }

    /// The users touched since the last call, in id order.
    pub fn take_touched(&mut self) -> Vec<UserId> {
        let mut touched = std::mem::take(&mut self.touched);
        for user in &touched {
            if let Some(mark) = self.touched_mark.get_mut(*user as usize) {
                *mark = false;
            }
        }
        touched.sort_unstable();
        touched
    }

    pub(super) fn touch(&mut self, user: UserId) {
        let u = user as usize;
        if self.touched_mark.len() <= u {
            self.touched_mark.resize(u + 1, false);
        }
        if !self.touched_mark[u] {
            self.touched_mark[u] = true;
            self.touched.push(user);
        }
    }

    /// Whether the user has instances or pending entries here (timers other than scheduled
    /// entries belong to those).
    pub fn user_has_work(&self, user: UserId) -> bool {
        self.users
            .get(user as usize)
            .is_some_and(|u| u.instances.iter().any(|e| *e != ENDED) || !u.pending.is_empty())
    }

    /// Sets the engine's clock (a service restoring its state; the clock never goes back).
    pub fn set_now(&mut self, now: i64) {
        self.now = self.now.max(now);
    }

    /// The users in memory, by id (each once, in id order).
    pub fn users_held(&self) -> Vec<UserId> {
        let free: std::collections::BTreeSet<UserId> = self.free_users.iter().copied().collect();
        (0..self.users.len() as UserId)
            .filter(|id| !free.contains(id))
            .collect()
    }

    /// Takes `users` out of memory, each as its record (in the order given): its instances,
    /// pending entries and schedules with their timers, its profile and history. Ids not in
    /// memory are left out of the answer. Call it between inputs, with the timeline and the facts taken: records
    /// name users by id.
    pub fn evict(&mut self, users: &[UserId]) -> Vec<Evicted> {
        self.take_out(users, true)
    }

    /// `evict` for users whose records are stored already: they leave memory, and only their
    /// names and the keys of their first timers are answered (nothing is encoded).
    pub fn drop_users(&mut self, users: &[UserId]) -> Vec<(Str, Option<Key>)> {
        self.take_out(users, false)
            .into_iter()
            .map(|e| (e.name, e.next_timer))
            .collect()
    }

    /// Takes users out of memory, with their records if `encode`.
    fn take_out(&mut self, users: &[UserId], encode: bool) -> Vec<Evicted> {
        let mut chosen = vec![false; self.users.len()];
        for user in users {
            if let Some(c) = chosen.get_mut(*user as usize) {
                *c = true;
            }
        }
        // (Ids free already are no one's.)
        for free in &self.free_users {
            if let Some(c) = chosen.get_mut(*free as usize) {
                *c = false;
            }
        }
        if !chosen.contains(&true) {
            return Vec::new();
        }
        // Timers a paused journey holds go too: the record keeps each one's key, and a
        // restored one, overdue, is held again as soon as it fires.
        if !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            self.held = held
                .into_iter()
                .filter(|(_, timer)| {
                    !self
                        .timer_user(timer)
                        .is_some_and(|u| chosen.get(u as usize).copied().unwrap_or(false))
                })
                .collect();
        }
        // Their timers leave the queue in one pass, stale ones of theirs too (each live one's
        // key is kept by what it wakes, and goes into the record).
        let taken = {
            let (instances, pending) = (&self.instances, &self.pending);
            let owner = |timer: &Timer| -> Option<UserId> {
                match timer {
                    Timer::Resume { instance, .. } | Timer::Timeout { instance, .. } => {
                        instances.get(*instance)?.as_ref().map(|i| i.user)
                    }
                    Timer::Unless { pending: id } => pending.get(id).map(|p| p.user),
                    Timer::Tick { user, .. } => Some(*user),
                }
            };
            self.timers.extract(|timer| {
                owner(timer).is_some_and(|u| chosen.get(u as usize).copied().unwrap_or(false))
            })
        };
        self.working_timers -= taken
            .iter()
            .filter(|(_, t)| !matches!(t, Timer::Tick { .. }))
            .count();
        let mut out = Vec::new();
        for &user in users {
            let u = user as usize;
            if !chosen.get(u).copied().unwrap_or(false) {
                continue;
            }
            chosen[u] = false;
            let (record, next_timer) = if encode {
                self.record(user)
            } else {
                (Vec::new(), self.next_timer_of(user))
            };
            let history = if encode {
                self.history_rows(user, &[])
            } else {
                Vec::new()
            };
            let name = self.forget_user(user);
            out.push(Evicted {
                name,
                record,
                history,
                next_timer,
            });
        }
        out
    }

    /// The key of an instance's timeout timer, if one is set: due at its entry plus the
    /// journey's armed timeout.
    fn timeout_key(&self, instance: &Instance) -> Option<Key> {
        let ms = self
            .armed_timeouts
            .get(instance.journey as usize)
            .copied()??;
        (instance.timeout != 0).then(|| (instance.entered_at.saturating_add(ms), instance.timeout))
    }

    /// The key of a user's first timer (what `record` answers beside the record).
    pub fn next_timer_of(&self, user: UserId) -> Option<Key> {
        let u = self.users.get(user as usize)?;
        let mut next: Option<Key> = None;
        let mut due = |key: Key| next = Some(next.map_or(key, |n| n.min(key)));
        for (_, slot, _) in u.instances.iter().filter(|entry| **entry != ENDED) {
            let Some(instance) = self.instances.get(*slot as usize).and_then(Option::as_ref) else {
                continue;
            };
            if instance.wake != NO_TIMER {
                due(instance.wake);
            }
            if let Some(key) = self.timeout_key(instance) {
                due(key);
            }
        }
        for (id, _) in &u.pending {
            if let Some(p) = self.pending.get(id).filter(|p| p.unless != NO_TIMER) {
                due(p.unless);
            }
        }
        for journey in &self.scheduled {
            if let Some((_, key)) = self.tick_tokens.get(&(*journey, user)) {
                if *key != NO_TIMER {
                    due(*key);
                }
            }
        }
        next
    }

    /// Whose timer `timer` is.
    pub(super) fn timer_user(&self, timer: &Timer) -> Option<UserId> {
        match timer {
            Timer::Resume { instance, .. } | Timer::Timeout { instance, .. } => {
                self.instances.get(*instance)?.as_ref().map(|i| i.user)
            }
            Timer::Unless { pending } => self.pending.get(pending).map(|p| p.user),
            Timer::Tick { user, .. } => Some(*user),
        }
    }

    /// The record of a user in memory, and its first timer's key: what the store keeps of
    /// it. (The user stays; its record is what `evict` would give now.)
    pub fn record(&self, user: UserId) -> (Vec<u8>, Option<Key>) {
        let empty = User::default();
        let u = self.users.get(user as usize).unwrap_or(&empty);
        let name = self.names.get(user as usize).map_or("", Str::as_str);
        let mut w = Writer(Vec::with_capacity(256));
        w.byte(VERSION);
        w.uint(u64::from(self.fingerprint()));
        w.str(name);
        let set: Vec<(usize, &Value)> = u
            .traits
            .iter()
            .enumerate()
            .filter_map(|(f, v)| Some((f, v.as_ref()?)))
            .collect();
        w.uint(set.len() as u64);
        for (field, value) in set {
            w.uint(field as u64);
            w.value(value);
        }
        w.uint(u.history.len() as u64);
        for kept in u.history.iter() {
            w.uint(kept.dropped);
            w.uint(kept.events.len() as u64);
        }
        w.uint(u.entries.len() as u64);
        for log in &u.entries {
            w.uint(u64::from(log.journey));
            w.opt_str(log.key.as_deref());
            w.uint(log.times.len() as u64);
            log.times.iter().for_each(|t| w.int(*t));
        }
        w.uint(u.sends.len() as u64);
        for (at, channel) in &u.sends {
            w.int(*at);
            w.byte(*channel as u8);
        }
        let foreign = u.foreign.as_deref().map_or(&[][..], |f| f.as_slice());
        w.uint(foreign.len() as u64);
        for (journey, key, count) in foreign {
            w.uint(u64::from(*journey));
            w.opt_str(key.as_deref());
            w.int(i64::from(*count));
        }
        let live: Vec<(usize, &Instance)> = u
            .instances
            .iter()
            .filter(|entry| **entry != ENDED)
            .filter_map(|(_, slot, _)| {
                let slot = *slot as usize;
                Some((slot, self.instances.get(slot)?.as_ref()?))
            })
            .collect();
        w.uint(live.len() as u64);
        for (slot, instance) in live {
            w.uint(u64::from(instance.journey));
            w.int(instance.entered_at);
            w.uint(u64::from(instance.pc));
            w.values(&instance.slots);
            let (kind, index) = waiting_code(&instance.waiting);
            w.byte(kind);
            w.uint(u64::from(index));
            w.str(instance.zone.name());
            w.uint(u64::from(instance.step));
            match self.deferred.get(&slot) {
                Some(args) if matches!(instance.waiting, Waiting::Send { .. }) => {
                    w.byte(1);
                    w.uint(args.len() as u64);
                    for (field, value) in args {
                        w.uint(u64::from(*field));
                        w.value(value);
                    }
                }
                _ => w.byte(0),
            }
            if instance.wake == NO_TIMER {
                w.byte(0);
            } else {
                // (A wait with a deadline is the only kind woken by one.)
                let deadline = matches!(
                    instance.waiting,
                    Waiting::Event { .. } | Waiting::Condition { .. } | Waiting::Any { .. }
                );
                w.byte(1 + u8::from(deadline));
                w.int(instance.wake.0);
                w.uint(instance.wake.1);
            }
            w.key(self.timeout_key(instance));
        }
        let pending: Vec<&Pending> = u
            .pending
            .iter()
            .filter_map(|(id, _)| self.pending.get(id))
            .collect();
        w.uint(pending.len() as u64);
        for p in pending {
            w.uint(u64::from(p.journey));
            w.opt_str(p.key.as_deref());
            w.values(&p.slots);
            w.byte(u8::from(p.cancelled));
            w.key(Some(p.unless).filter(|k| *k != NO_TIMER));
        }
        let schedules: Vec<(u32, u64, TimerKey)> = self
            .scheduled
            .iter()
            .filter_map(|&j| {
                let (token, key) = self.tick_tokens.get(&(j, user))?;
                Some((j, *token, *key))
            })
            .collect();
        w.uint(schedules.len() as u64);
        for (journey, token, key) in schedules {
            w.uint(u64::from(journey));
            w.uint(token);
            w.key(Some(key).filter(|k| *k != NO_TIMER));
        }
        (w.0, self.next_timer_of(user))
    }

    /// Removes a user from memory, its instances, pending entries and schedules (their timers
    /// left the queue already); its id goes to the next user. Answers its name.
    fn forget_user(&mut self, user: UserId) -> Str {
        let u = std::mem::take(&mut self.users[user as usize]);
        let name = std::mem::take(&mut self.names[user as usize]);
        for (_, slot, _) in u.instances.iter().filter(|entry| **entry != ENDED) {
            let slot = *slot as usize;
            if self
                .instances
                .get_mut(slot)
                .and_then(Option::take)
                .is_some()
            {
                self.free.push(slot);
                self.deferred.remove(&slot);
            }
        }
        for (id, _) in &u.pending {
            self.pending.remove(id);
        }
        for journey in &self.scheduled {
            self.tick_tokens.remove(&(*journey, user));
        }
        let hash = self.user_ids.hash(name.as_str());
        self.user_ids.remove(hash, name.as_str());
        self.free_users.push(user);
        if let Some(mark) = self.touched_mark.get_mut(user as usize) {
            if *mark {
                *mark = false;
                self.touched.retain(|u| *u != user);
            }
        }
        name
    }

    /// A number that tells this engine's program from others: records carry it, and a record
    /// of another program is refused.
    pub fn fingerprint(&self) -> u32 {
        *self
            .fingerprint
            .get_or_init(|| crc32fast::hash(&crate::bytecode::write(self.program)))
    }

    /// Brings a user back from its record (`evict`): its state as it was, its timers where
    /// they were in the order of all timers. A record that does not fit this engine's program,
    /// or names a user in memory, is refused and changes nothing.
    pub fn restore(&mut self, record: &[u8], history: &[HistoryRow]) -> Result<UserId, String> {
        let r = self.read_record(record)?;
        if self.user_id(r.name.as_str()).is_some() {
            return Err(format!("user `{}` is in memory already", r.name.as_str()));
        }
        let history = self.read_history(&r.history, history)?;
        let hash = self.user_ids.hash(r.name.as_str());
        let id = match self.free_users.pop() {
            Some(id) => id,
            None => {
                self.users.push(User::default());
                self.names.push(Str::default());
                (self.users.len() - 1) as UserId
            }
        };
        self.user_ids.insert(hash, r.name.clone(), id);
        self.names[id as usize] = r.name;
        let mut user = User {
            traits: r.traits.into_boxed_slice(),
            history: history.into_boxed_slice(),
            entries: r.entries,
            sends: r.sends,
            foreign: r.foreign,
            ..User::default()
        };
        for i in r.instances {
            self.next_token = self.next_token.wrapping_add(1);
            let token = self.next_token;
            let instance = Instance {
                journey: i.journey,
                user: id,
                entered_at: i.entered_at,
                pc: i.pc,
                slots: i.slots.into(),
                waiting: i.waiting,
                token,
                zone: i.zone,
                step: i.step,
                wake: i.resume.map_or(NO_TIMER, |(key, _)| key),
                timeout: i.timeout.map_or(0, |(_, sequence)| sequence),
            };
            let tag = key_tag(&self.owned_key(&instance));
            let slot = match self.free.pop() {
                Some(slot) => {
                    self.instances[slot] = Some(instance);
                    slot
                }
                None => {
                    self.instances.push(Some(instance));
                    self.instances.len() - 1
                }
            };
            user.instances.push((i.journey, slot as u32, tag));
            match user.journeys.iter_mut().find(|(j, _)| *j == i.journey) {
                Some((_, count)) => *count += 1,
                None => user.journeys.push((i.journey, 1)),
            }
            if let Some(args) = i.deferred {
                self.deferred.insert(slot, args);
            }
            if let Some(((at, sequence), deadline)) = i.resume {
                self.working_timers += 1;
                self.timers.restore(
                    at,
                    sequence,
                    Timer::Resume {
                        instance: slot,
                        token,
                        deadline,
                    },
                );
            }
            if let Some((at, sequence)) = i.timeout {
                self.working_timers += 1;
                self.timers.restore(
                    at,
                    sequence,
                    Timer::Timeout {
                        instance: slot,
                        journey: i.journey,
                        entered_at: i.entered_at,
                    },
                );
            }
        }
        if user.instances.len() > MANY_INSTANCES {
            let mut running = RunningIndex::default();
            for (j, slot, t) in &user.instances {
                running.by_key.entry((*j, *t)).or_default().push(*slot);
            }
            user.running = Some(Box::new(running));
        }
        for p in r.pending {
            self.next_pending += 1;
            let pending = self.next_pending;
            user.pending.push((pending, key_tag(&p.key)));
            self.pending.insert(
                pending,
                Pending {
                    journey: p.journey,
                    user: id,
                    key: p.key,
                    slots: p.slots,
                    cancelled: p.cancelled,
                    unless: p.unless.unwrap_or(NO_TIMER),
                },
            );
            if let Some((at, sequence)) = p.unless {
                self.working_timers += 1;
                self.timers.restore(at, sequence, Timer::Unless { pending });
            }
        }
        // (Records written before event-entered journeys stopped getting a schedule name them
        // with no timer: passed over.)
        for t in r
            .ticks
            .into_iter()
            .filter(|t| self.scheduled.contains(&t.journey))
        {
            self.tick_tokens
                .insert((t.journey, id), (t.token, t.timer.unwrap_or(NO_TIMER)));
            if let Some((at, sequence)) = t.timer {
                self.timers.restore(
                    at,
                    sequence,
                    Timer::Tick {
                        journey: t.journey,
                        user: id,
                        token: t.token,
                    },
                );
            }
        }
        self.users[id as usize] = user;
        Ok(id)
    }

    /// The kept events of a record (`marks`: per kept type, how many were dropped and how
    /// many are kept) from its history rows, which must be exactly those.
    fn read_history(
        &self,
        marks: &[(u64, usize)],
        rows: &[HistoryRow],
    ) -> Result<Vec<super::Kept>, String> {
        let program: &Program = self.program;
        // The field count of each kept type.
        let mut widths = vec![0usize; marks.len()];
        for (event, slot) in self.history_slots.iter().enumerate() {
            if let (Some(width), Some(desc)) = (
                slot.and_then(|slot| widths.get_mut(slot)),
                program.events.get(event),
            ) {
                *width = program.record_fields(desc.record).map_or(0, <[_]>::len);
            }
        }
        let mut rows = rows.iter().peekable();
        let mut history = Vec::with_capacity(marks.len());
        for (slot, ((dropped, kept), width)) in marks.iter().zip(widths).enumerate() {
            let mut events = Vec::with_capacity((*kept).min(rows.len()));
            for k in 0..*kept as u64 {
                let row = rows
                    .next_if(|row| row.slot as usize == slot)
                    .filter(|row| row.ordinal == dropped + k)
                    .ok_or("the record's history is not all there")?;
                let mut reader = Reader {
                    bytes: &row.fields,
                    at: 0,
                };
                let mut fields = reader.values(0)?;
                if fields.len() != width || reader.at != row.fields.len() {
                    return Err("a kept event of another shape".into());
                }
                fields.iter_mut().for_each(|v| self.prepared.intern(v));
                events.push((row.at, Arc::from(fields)));
            }
            history.push(super::Kept {
                events,
                dropped: *dropped,
            });
        }
        if rows.next().is_some() {
            return Err("history rows the record does not keep".into());
        }
        Ok(history)
    }

    /// A user's kept events from the `from[slot]`th of each type on (all of them for a type
    /// `from` does not reach), in the order of types then numbers.
    pub fn history_rows(&self, user: UserId, from: &[u64]) -> Vec<HistoryRow> {
        let Some(u) = self.users.get(user as usize) else {
            return Vec::new();
        };
        let mut rows = Vec::new();
        for (slot, kept) in u.history.iter().enumerate() {
            let from = from.get(slot).copied().unwrap_or(0);
            for (k, (at, fields)) in kept.events.iter().enumerate() {
                let ordinal = kept.dropped + k as u64;
                if ordinal < from {
                    continue;
                }
                let mut w = Writer(Vec::with_capacity(8 * fields.len() + 2));
                w.values(fields);
                rows.push(HistoryRow {
                    slot: slot as u32,
                    ordinal,
                    at: *at,
                    fields: w.0,
                });
            }
        }
        rows
    }

    /// Per kept type of a user: the number of its first kept event and of the next to come
    /// (a store holds those in between).
    pub fn history_marks(&self, user: UserId) -> Vec<(u64, u64)> {
        self.users.get(user as usize).map_or_else(Vec::new, |u| {
            u.history
                .iter()
                .map(|k| (k.dropped, k.dropped + k.events.len() as u64))
                .collect()
        })
    }

    /// Reads a record and checks every index in it against the program.
    fn read_record(&self, bytes: &[u8]) -> Result<UserRecord, String> {
        let program: &Program = self.program;
        let mut r = Reader { bytes, at: 0 };
        let version = r.byte()?;
        if version != VERSION {
            return Err(format!(
                "a user record of version {version}; this engine reads version {VERSION}"
            ));
        }
        let fingerprint = r.uint()?;
        if fingerprint != u64::from(self.fingerprint()) {
            return Err("a user record of another program".into());
        }
        let name = Str::new(r.str()?);
        let journey = |r: &mut Reader| -> Read<u32> {
            let j = r.u32("a journey")?;
            if (j as usize) < program.journeys.len() {
                Ok(j)
            } else {
                Err(format!("journey {j} is not in the program"))
            }
        };
        let profile_fields = program.record_fields(program.profile).map_or(0, <[_]>::len);
        let mut traits: Vec<Option<Value>> = vec![None; profile_fields];
        for _ in 0..r.count()? {
            let field = r.uint()? as usize;
            let mut value = r.value(0)?;
            self.prepared.intern(&mut value);
            *traits
                .get_mut(field)
                .ok_or_else(|| format!("profile field {field} is not in the program"))? =
                Some(value);
        }
        // (A user's history is empty until its first kept event.)
        let kept_types = r.count()?;
        if kept_types != 0 && kept_types != self.kept_types {
            return Err("a history of other event types".into());
        }
        let mut history = Vec::with_capacity(kept_types);
        for _ in 0..kept_types {
            let dropped = r.uint()?;
            let kept = usize::try_from(r.uint()?).map_err(|_| "a history out of range")?;
            history.push((dropped, kept));
        }
        let mut entries = Vec::new();
        for _ in 0..r.count()? {
            let journey = journey(&mut r)?;
            let key = r.opt_str()?;
            let times: SmallVec<[i64; 2]> =
                (0..r.count()?).map(|_| r.int()).collect::<Read<_>>()?;
            entries.push(EntryLog {
                journey,
                tag: key_tag(&key),
                key,
                times,
            });
        }
        let mut sends = Vec::new();
        for _ in 0..r.count()? {
            let at = r.int()?;
            let channel =
                Channel::from_byte(r.byte()?).ok_or("a send on no channel the VM knows")?;
            sends.push((at, channel));
        }
        let mut foreign: facts::Foreign = Vec::new();
        for _ in 0..r.count()? {
            let journey = journey(&mut r)?;
            let key = r.opt_str()?;
            let count = i32::try_from(r.int()?).map_err(|_| "a count out of range")?;
            foreign.push((journey, key, count));
        }
        // (In the order `facts` looks them up in, whatever order wrote them.)
        foreign.sort_by(|(j, k, _), (i, l, _)| (j, k).cmp(&(i, l)));
        let mut instances = Vec::new();
        for _ in 0..r.count()? {
            let journey = journey(&mut r)?;
            let desc = &program.journeys[journey as usize];
            let entered_at = r.int()?;
            let pc = r.u32("a pc")?;
            let body = program
                .blocks
                .get(desc.body as usize)
                .ok_or("a journey without a body")?;
            if pc < body.offset || pc > body.offset.saturating_add(body.length) {
                return Err(format!("pc {pc} is outside its journey's body"));
            }
            let mut slots = r.values(0)?;
            if slots.len() < desc.slots.len() || slots.len() > desc.slots.len() + 1 {
                return Err("an instance with slots of another journey".into());
            }
            slots.iter_mut().for_each(|v| self.prepared.intern(v));
            let kind = r.byte()?;
            let index = u16::try_from(r.uint()?).map_err(|_| "a wait out of range")?;
            let waits = desc.waits.len();
            let waiting = match kind {
                0 => Waiting::Nothing,
                1 | 2 if usize::from(index) < waits => {
                    if kind == 1 {
                        Waiting::Event { wait: index }
                    } else {
                        Waiting::Condition { wait: index }
                    }
                }
                3 if usize::from(index) < desc.wait_anys.len() => Waiting::Any { wait: index },
                4 if usize::from(index) < desc.sends.len() => Waiting::Send { send: index },
                _ => {
                    return Err(format!(
                        "an instance waiting at {kind}/{index}, not in its journey"
                    ))
                }
            };
            let zone_name = r.str()?;
            let zone = chrono_tz::Tz::from_str(zone_name)
                .map_err(|_| format!("no time zone `{zone_name}`"))?;
            let step = u16::try_from(r.uint()?).map_err(|_| "a step out of range")?;
            if step != u16::MAX && usize::from(step) >= desc.steps.len() {
                return Err(format!("step {step} is not in its journey"));
            }
            let deferred = match r.byte()? {
                0 => None,
                _ => {
                    let mut args = Vec::new();
                    for _ in 0..r.count()? {
                        let field = r.u32("an argument")?;
                        let mut value = r.value(0)?;
                        self.prepared.intern(&mut value);
                        args.push((field, value));
                    }
                    Some(args)
                }
            };
            let resume = match r.byte()? {
                0 => None,
                kind => Some(((r.int()?, r.uint()?), kind == 2)),
            };
            let timeout = r.key()?;
            instances.push(InstanceRecord {
                journey,
                entered_at,
                pc,
                slots,
                waiting,
                zone,
                step,
                deferred,
                resume,
                timeout,
            });
        }
        let mut pending = Vec::new();
        for _ in 0..r.count()? {
            let journey = journey(&mut r)?;
            let key = r.opt_str()?;
            let mut slots = r.values(0)?;
            if slots.len() != program.journeys[journey as usize].slots.len() {
                return Err("a pending entry with slots of another journey".into());
            }
            slots.iter_mut().for_each(|v| self.prepared.intern(v));
            let cancelled = r.byte()? != 0;
            let unless = r.key()?;
            pending.push(PendingRecord {
                journey,
                key,
                slots,
                cancelled,
                unless,
            });
        }
        let mut ticks = Vec::new();
        for _ in 0..r.count()? {
            let journey = journey(&mut r)?;
            let token = r.uint()?;
            let timer = r.key()?;
            ticks.push(TickRecord {
                journey,
                token,
                timer,
            });
        }
        if r.at != bytes.len() {
            return Err(format!(
                "{} bytes after the end of the record",
                bytes.len() - r.at
            ));
        }
        Ok(UserRecord {
            name,
            traits,
            history,
            entries,
            sends,
            foreign: (!foreign.is_empty()).then(|| Box::new(foreign)),
            instances,
            pending,
            ticks,
        })
    }
}
