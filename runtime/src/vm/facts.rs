//! What one engine reports for the rules that span versions → what other engines mirror.
//!
//! The service runs one engine per deployed bytecode, each version of a journey in the engine
//! of its deployment. Some rules span them all: a user is in a journey at most once at a time
//! (per key) whatever versions run, reentry rules count entries into every version, caps count
//! sends of every journey, a profile update is seen by every version, and `start` enters the
//! version that takes entries. An engine that reports records these as `Fact`s, named (user,
//! journey and field names, since ids differ between programs); the service hands each to the
//! other engines' `mirror`. `journeyc simulate` runs one engine and reports nothing.
//!
//! An engine deployed later catches up on a user once: the facts that describe it now
//! (`facts_of`) and the events the older engine keeps of it (`history_of` → `take_history`,
//! fields matched by name).

use std::sync::Arc;

use super::{bc, key_tag, Engine, EntryLog, Kept, UserId};
use crate::bytecode::{types, Channel, Program, TypeDesc};
use crate::value::{Str, Value};

/// A user's kept events of one type, as one engine keeps them, for another to take in
/// (`Engine::history_of`, `Engine::take_history`).
#[derive(Debug, Clone)]
pub struct KeptEvents {
    /// The event type's name on the wire (what tells types apart between programs).
    pub event: String,
    /// Its record's type in the program that kept them.
    pub record: u32,
    /// (time, fields), oldest first.
    pub events: Vec<(i64, Arc<[Value]>)>,
}

/// A fact about a user, by name.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// The user entered the journey (with the key) at `at`: reentry rules count it.
    Entry {
        user: Str,
        journey: Str,
        key: Option<Str>,
        at: i64,
    },
    /// The user's instances (and pending `unless` entries) of the journey with the key went
    /// up or down by one.
    Running {
        user: Str,
        journey: Str,
        key: Option<Str>,
        change: i32,
    },
    /// A send that counts toward caps.
    Sent {
        user: Str,
        channel: Channel,
        at: i64,
    },
    /// A journey set a profile field.
    Profile { user: Str, field: Str, value: Value },
    /// An instance ran `start` of a journey that does not take entries in its engine.
    Start { user: Str, journey: Str },
}

/// Instances of other engines, per (journey, key): how many run there (more than none), in
/// the order of (journey, key), so that a user running thousands of keys finds one at once.
pub(super) type Foreign = Vec<(u32, Option<Str>, i32)>;

/// Where (journey, key) is in `foreign`, or where it would go.
fn find_foreign(foreign: &Foreign, journey: u32, key: &Option<Str>) -> Result<usize, usize> {
    foreign.binary_search_by(|(j, k, _)| (*j, k).cmp(&(journey, key)))
}

impl Engine<'_> {
    /// Whether the engine records `Fact`s for other engines (off by default).
    pub fn report_facts(&mut self, on: bool) {
        self.reports = on;
    }

    /// The facts recorded since the last call, in the order they happened.
    pub fn take_facts(&mut self) -> Vec<Fact> {
        std::mem::take(&mut self.facts)
    }

    /// Records a fact, if the engine reports.
    pub(super) fn report(&mut self, fact: impl FnOnce(&Self) -> Fact) {
        if self.reports {
            let fact = fact(self);
            self.facts.push(fact);
        }
    }

    pub(super) fn journey_name(&self, journey: u32) -> Str {
        Str::new(
            self.program
                .journeys
                .get(journey as usize)
                .map_or("", |j| self.program.string(j.name)),
        )
    }

    fn journey_named(&self, name: &str) -> Option<u32> {
        self.program
            .journeys
            .iter()
            .position(|j| self.program.string(j.name) == name)
            .map(|j| j as u32)
    }

    /// The longest a send is kept for caps, in milliseconds.
    pub fn send_memory(&self) -> i64 {
        self.longest_cap
    }

    /// Keeps sends at least `ms` (another version's caps may look further back).
    pub fn keep_sends_for(&mut self, ms: i64) {
        self.longest_cap = self.longest_cap.max(ms);
    }

    /// Takes in a fact another engine reported.
    pub fn mirror(&mut self, fact: &Fact) {
        let now = self.now;
        match fact {
            Fact::Entry {
                user,
                journey,
                key,
                at,
            } => {
                let Some(journey) = self.journey_named(journey) else {
                    return;
                };
                let user = self.user_named(user);
                self.log_entry(user, journey, key, *at.min(&now));
            }
            Fact::Running {
                user,
                journey,
                key,
                change,
            } => {
                let Some(journey) = self.journey_named(journey) else {
                    return;
                };
                let user = self.user_named(user);
                if let Some(u) = self.users.get_mut(user as usize) {
                    let foreign = u.foreign.get_or_insert_with(Default::default);
                    match find_foreign(foreign, journey, key) {
                        Ok(at) => {
                            foreign[at].2 += change;
                            if foreign[at].2 <= 0 {
                                foreign.remove(at);
                            }
                        }
                        Err(at) if *change > 0 => {
                            foreign.insert(at, (journey, key.clone(), *change))
                        }
                        Err(_) => {}
                    }
                    if foreign.is_empty() {
                        u.foreign = None;
                    }
                }
            }
            Fact::Sent { user, channel, at } => {
                if self.longest_cap == 0 {
                    return;
                }
                let user = self.user_named(user);
                let memory = self.longest_cap;
                if let Some(u) = self.users.get_mut(user as usize) {
                    let stale = u
                        .sends
                        .partition_point(|(t, _)| now.saturating_sub(*t) >= memory);
                    u.sends.drain(..stale);
                    // Kept in time order: another engine's timers may have run behind ours.
                    let at_or_after = u.sends.partition_point(|(t, _)| *t <= *at);
                    u.sends.insert(at_or_after, (*at, *channel));
                }
            }
            Fact::Profile { user, field, value } => {
                let Some(fields) = self.program.record_fields(self.program.profile) else {
                    return;
                };
                let Some(index) = fields
                    .iter()
                    .position(|f| self.program.string(f.name) == field.as_str())
                else {
                    return;
                };
                // A field another version types differently is left alone.
                if !fits(self.program, fields[index].ty, value) {
                    return;
                }
                let user = self.user_named(user);
                let Some(slot) = self
                    .users
                    .get_mut(user as usize)
                    .and_then(|u| u.traits.get_mut(index))
                else {
                    return;
                };
                *slot = Some(value.clone());
                // Seen at once, as this engine's own update would be (`update_profile`): the
                // `when` goals and exits and condition waits that read the profile are
                // evaluated again.
                self.reevaluate(user, None);
            }
            Fact::Start { user, journey } => {
                if let Some(journey) = self.journey_named(journey) {
                    let user = self.user_named(user);
                    self.try_enter(journey, user, None);
                }
            }
        }
    }

    /// The events the engine keeps of a user, per type (types with none left out), for an
    /// engine that starts beside it (`take_history`).
    pub fn history_of(&self, id: UserId) -> Vec<KeptEvents> {
        let Some(u) = self.users.get(id as usize) else {
            return Vec::new();
        };
        self.history_slots
            .iter()
            .enumerate()
            .filter_map(|(event, slot)| {
                let kept = u.history.get((*slot)?)?;
                let desc = self.program.events.get(event)?;
                (!kept.events.is_empty()).then(|| KeptEvents {
                    event: self.program.string(desc.wire_name).to_string(),
                    record: desc.record,
                    events: kept.events.clone(),
                })
            })
            .collect()
    }

    /// Takes in the events another engine (running `from`) kept of `user`, as if this engine
    /// had seen them: for each type this program keeps under the same name, those inside its
    /// window whose fields convert to its declaration of them (fields matched by name; one it
    /// declares that `from` lacks is absent if optional, else the event is left out). Only a
    /// user keeping none of that type here yet takes them in: a new engine catching up.
    pub fn take_history(&mut self, user: &str, from: &Program, kept: &[KeptEvents]) {
        let program = self.program;
        let now = self.now;
        let mut id = None;
        for theirs in kept {
            let Some(event) = program
                .events
                .iter()
                .position(|e| program.string(e.wire_name) == theirs.event)
            else {
                continue;
            };
            let (Some(slot), Some(Some(span))) = (
                self.history_slots.get(event).copied().flatten(),
                self.retention.get(event).copied(),
            ) else {
                continue;
            };
            let record = program.events[event].record;
            let cutoff = span.map_or(i64::MIN, |ms| now.saturating_sub(ms));
            // (Mostly the same declaration in both: the values are shared as they are.)
            let same = same_shape(from, theirs.record, program, record);
            let events: Vec<(i64, Arc<[Value]>)> = theirs
                .events
                .iter()
                .filter(|(at, _)| *at > cutoff)
                .filter_map(|(at, fields)| {
                    if same {
                        return Some((*at, fields.clone()));
                    }
                    let value = Value::Record(fields.clone());
                    match convert(from, theirs.record, program, record, &value)? {
                        Value::Record(fields) => Some((*at, fields)),
                        _ => None,
                    }
                })
                .collect();
            if events.is_empty() {
                continue;
            }
            let user = *id.get_or_insert_with(|| self.user_named(user));
            let kept_types = self.kept_types;
            let Some(u) = self.users.get_mut(user as usize) else {
                continue;
            };
            if u.history.is_empty() {
                u.history = vec![Kept::default(); kept_types].into_boxed_slice();
            }
            match u.history.get_mut(slot) {
                Some(mine) if mine.events.is_empty() => mine.events = events,
                _ => continue,
            }
            // Scheduled entries whose audience needs this type start ticking, as at an event.
            let needing = self.ticks_needing.get(event).map_or(0, Vec::len);
            for k in 0..needing {
                let journey = self.ticks_needing[event][k];
                if !self.tick_tokens.contains_key(&(journey, user)) {
                    self.schedule_tick(journey, user);
                }
            }
        }
    }

    /// The facts that describe the engine's users now, for an engine that starts beside it:
    /// entries reentry rules still read, running instances and pending entries, sends kept
    /// for caps, and every profile field set.
    pub fn facts_now(&self) -> Vec<Fact> {
        (0..self.users.len() as UserId)
            .flat_map(|id| self.facts_of(id))
            .collect()
    }

    /// `facts_now` for one user: what another engine takes in of it (the service does when a
    /// user comes back into memory after a newer engine was deployed).
    pub fn facts_of(&self, id: UserId) -> Vec<Fact> {
        let mut facts = Vec::new();
        let profile = self
            .program
            .record_fields(self.program.profile)
            .unwrap_or_default();
        let Some(u) = self.users.get(id as usize) else {
            return facts;
        };
        {
            let user = self.names.get(id as usize).cloned().unwrap_or_default();
            for log in &u.entries {
                for at in &log.times {
                    facts.push(Fact::Entry {
                        user: user.clone(),
                        journey: self.journey_name(log.journey),
                        key: log.key.clone(),
                        at: *at,
                    });
                }
            }
            for (journey, slot, _) in u.instances.iter().filter(|entry| **entry != super::ENDED) {
                let key = self
                    .instances
                    .get(*slot as usize)
                    .and_then(Option::as_ref)
                    .and_then(|i| self.owned_key(i));
                facts.push(Fact::Running {
                    user: user.clone(),
                    journey: self.journey_name(*journey),
                    key,
                    change: 1,
                });
            }
            for (id, _) in &u.pending {
                if let Some(p) = self.pending.get(id).filter(|p| !p.cancelled) {
                    facts.push(Fact::Running {
                        user: user.clone(),
                        journey: self.journey_name(p.journey),
                        key: p.key.clone(),
                        change: 1,
                    });
                }
            }
            for (at, channel) in &u.sends {
                facts.push(Fact::Sent {
                    user: user.clone(),
                    channel: *channel,
                    at: *at,
                });
            }
            for (field, value) in u.traits.iter().enumerate() {
                if let (Some(value), Some(desc)) = (value, profile.get(field)) {
                    facts.push(Fact::Profile {
                        user: user.clone(),
                        field: Str::new(self.program.string(desc.name)),
                        value: value.clone(),
                    });
                }
            }
        }
        facts
    }

    /// Whether the journey has instances (or pending entries) running, here or (as mirrored)
    /// in other engines, for the user with the key.
    pub(super) fn runs_elsewhere(&self, user: UserId, journey: u32, key: &Option<Str>) -> bool {
        self.users
            .get(user as usize)
            .and_then(|u| u.foreign.as_ref())
            .is_some_and(|f| find_foreign(f, journey, key).is_ok_and(|at| f[at].2 > 0))
    }

    /// Adds an entry time to the user's log of the journey, as far as its reentry rule reads
    /// it.
    pub(super) fn log_entry(&mut self, user: UserId, journey: u32, key: &Option<Str>, at: i64) {
        let program = self.program;
        let reentry = program.journeys[journey as usize].reentry;
        if reentry == bc::Reentry::Always {
            return;
        }
        let now = self.now;
        let tag = key_tag(key);
        let Some(u) = self.users.get_mut(user as usize) else {
            return;
        };
        // Only what reentry rules still read is kept of past entries.
        u.entries
            .retain(|log| log.still_read(program.journeys[log.journey as usize].reentry, now));
        let per_ms = match reentry {
            bc::Reentry::MaxPer { per_ms, .. } => per_ms,
            _ => 0,
        };
        match u
            .entries
            .iter_mut()
            .find(|log| log.journey == journey && log.tag == tag && log.key == *key)
        {
            Some(log) => {
                log.times.retain(|t| now.saturating_sub(*t) < per_ms);
                let at_or_after = log.times.partition_point(|t| *t <= at);
                log.times.insert(at_or_after, at);
            }
            None => u.entries.push(EntryLog {
                journey,
                tag,
                key: key.clone(),
                times: smallvec::smallvec![at],
            }),
        }
    }

    /// The id of the user called `name`, created if new.
    fn user_named(&mut self, name: &str) -> UserId {
        let hash = self.user_ids.hash(name);
        let id = match self.user_ids.get(hash, name) {
            Some(id) => id,
            None => self.ensure_user(&std::sync::Arc::from(name), hash),
        };
        if self.tracking {
            self.touch(id);
        }
        id
    }

    /// Whether nothing runs here: no instance, no pending entry, no timer held or set other
    /// than scheduled entries (the service retires a deployment's engine once no version of it
    /// can take entries and it is idle).
    pub fn is_idle(&self) -> bool {
        self.working_timers == 0
            && self.pending.is_empty()
            && self.held.is_empty()
            && self.instances.iter().all(Option::is_none)
    }
}

/// Whether `value` is a value of type `ty` (mirrored profile fields must fit).
/// `ty` without its optional wrapper.
fn required(program: &Program, ty: u32) -> u32 {
    match program.type_desc(ty) {
        Some(TypeDesc::Optional(inner)) => *inner,
        _ => ty,
    }
}

/// Whether type `a` of `p` and type `b` of `q` are declared alike (records with the same
/// fields in the same order, enums with the same values): a value of one is a value of the
/// other as it is.
fn same_shape(p: &Program, a: u32, q: &Program, b: u32) -> bool {
    if a < types::BUILTIN || b < types::BUILTIN {
        return a == b;
    }
    match (p.type_desc(a), q.type_desc(b)) {
        (Some(TypeDesc::Optional(x)), Some(TypeDesc::Optional(y)))
        | (Some(TypeDesc::List(x)), Some(TypeDesc::List(y))) => same_shape(p, *x, q, *y),
        (Some(TypeDesc::Enum(xs)), Some(TypeDesc::Enum(ys))) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .zip(ys.iter())
                    .all(|(x, y)| p.string(*x) == q.string(*y))
        }
        (Some(TypeDesc::Record(_)), Some(TypeDesc::Record(_))) => {
            match (p.record_fields(a), q.record_fields(b)) {
                (Some(xs), Some(ys)) => {
                    xs.len() == ys.len()
                        && xs.iter().zip(ys.iter()).all(|(x, y)| {
                            p.string(x.name) == q.string(y.name) && same_shape(p, x.ty, q, y.ty)
                        })
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// `value`, of type `from_ty` in `from`, as a value of type `to_ty` in `to`: records matched
/// by their fields' names (a field `to` declares and `from` lacks is absent if optional), the
/// rest as `fits` has it. `None`: it does not convert.
fn convert(from: &Program, from_ty: u32, to: &Program, to_ty: u32, value: &Value) -> Option<Value> {
    let from_ty = required(from, from_ty);
    match (to.type_desc(to_ty), value) {
        (Some(TypeDesc::Optional(_)), Value::Absent) => Some(Value::Absent),
        (Some(TypeDesc::Optional(inner)), v) => convert(from, from_ty, to, *inner, v),
        (Some(TypeDesc::List(item)), Value::List(items)) => {
            let Some(TypeDesc::List(their_item)) = from.type_desc(from_ty) else {
                return None;
            };
            let items = items
                .iter()
                .map(|v| convert(from, *their_item, to, *item, v))
                .collect::<Option<Vec<Value>>>()?;
            Some(Value::List(items.into()))
        }
        (Some(TypeDesc::Record(_)), Value::Record(values)) => {
            let mine = to.record_fields(to_ty)?;
            let theirs = from.record_fields(from_ty)?;
            let values = mine
                .iter()
                .map(|f| {
                    match theirs
                        .iter()
                        .position(|g| from.string(g.name) == to.string(f.name))
                    {
                        Some(i) => convert(from, theirs[i].ty, to, f.ty, values.get(i)?),
                        None => matches!(to.type_desc(f.ty), Some(TypeDesc::Optional(_)))
                            .then_some(Value::Absent),
                    }
                })
                .collect::<Option<Vec<Value>>>()?;
            Some(Value::Record(values.into()))
        }
        _ => fits(to, to_ty, value).then(|| value.clone()),
    }
}

fn fits(program: &Program, ty: u32, value: &Value) -> bool {
    match (ty, value) {
        (types::BOOL, Value::Bool(_))
        | (types::INT, Value::Int(_))
        | (types::FLOAT, Value::Float(_))
        | (types::STRING, Value::Short { .. } | Value::Long(_))
        | (types::TIMESTAMP, Value::Timestamp(_))
        | (types::DURATION, Value::Duration(_)) => true,
        (types::BOOL | types::INT | types::FLOAT | types::STRING, _)
        | (types::TIMESTAMP | types::DURATION, _) => false,
        _ => match (program.type_desc(ty), value) {
            (Some(TypeDesc::Optional(_)), Value::Absent) => true,
            (Some(TypeDesc::Optional(inner)), v) => fits(program, *inner, v),
            (Some(TypeDesc::Enum(values)), Value::Short { .. } | Value::Long(_)) => values
                .iter()
                .any(|v| Some(program.string(*v)) == value.as_str()),
            (Some(TypeDesc::List(item)), Value::List(items)) => {
                items.iter().all(|v| fits(program, *item, v))
            }
            (Some(TypeDesc::Record(_)), Value::Record(values)) => {
                program.record_fields(ty).is_some_and(|fields| {
                    fields.len() == values.len()
                        && fields
                            .iter()
                            .zip(values.iter())
                            .all(|(f, v)| fits(program, f.ty, v))
                })
            }
            _ => false,
        },
    }
}
