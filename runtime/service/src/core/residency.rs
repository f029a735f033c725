//! Users in the store ↔ users in the engines: a user is brought into memory (every engine at
//! once) when an input, a timer, a read or a lifecycle move needs it, written back at each
//! commit that touched it, and evicted once memory holds more than `--memory-limit` allows
//! (docs/state.md).
//!
//! A user's stored record holds one section per deployment whose engine knew it:
//! `version:u8(=1) newest:uint count { deployment:uint length:uint bytes }`, each section a
//! `vm::state` record. `newest` is the newest deployment when the record was written: an
//! engine deployed after it takes in what the others know of the user (`Engine::facts_of`)
//! when the user comes back, as a deployment made while the user was in memory would have.
//!
//! **Invariant:** a user is in memory in every running engine or in none; a user in memory
//! that a command touched is written at the next commit, so an evicted user's stored record
//! is its state.

use std::collections::BTreeMap;

use journey_runtime::vm::state::{put_uint, read_uint, HistoryRow};
use journey_runtime::vm::{Engine, KeptEvents};

use super::{Core, Refusal};
use crate::store::{DueUser, UserRow};

/// The store's side of residency: what the core reads from it while applying a command.
pub trait Source {
    /// A user's record, if the store has one.
    fn user(&mut self, name: &str) -> Result<Option<Vec<u8>>, String>;
    /// A user's kept events: (deployment, row), in the order of deployments, kept types and
    /// numbers.
    fn history(&mut self, name: &str) -> Result<Vec<(i64, HistoryRow)>, String>;
    /// Up to `limit` users whose first timer's key is after `after` and due at or before
    /// `until`, in the order of their keys: (name, key).
    fn due(&mut self, after: (i64, u64), until: i64, limit: usize) -> Result<Vec<DueUser>, String>;
    /// When the first stored timer whose key is after `after` is due.
    fn first_due_after(&mut self, after: (i64, u64)) -> Result<Option<i64>, String>;
    /// The users with work (instances, pending entries) in deployment `n`, as last stored:
    /// all of them, or the first `limit`.
    fn working(&mut self, n: i64, limit: Option<usize>) -> Result<Vec<String>, String>;
}

/// A source with nothing stored (tests, and a service's first start).
pub struct Empty;

impl Source for Empty {
    fn user(&mut self, _: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }
    fn history(&mut self, _: &str) -> Result<Vec<(i64, HistoryRow)>, String> {
        Ok(Vec::new())
    }
    fn due(&mut self, _: (i64, u64), _: i64, _: usize) -> Result<Vec<DueUser>, String> {
        Ok(Vec::new())
    }
    fn first_due_after(&mut self, _: (i64, u64)) -> Result<Option<i64>, String> {
        Ok(None)
    }
    fn working(&mut self, _: i64, _: Option<usize>) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
}

/// The version of the record's envelope.
const VERSION: u8 = 1;

/// How far ahead of the time it needs, users with timers due are brought in: one query of
/// the store covers the inputs of the next hour, but for the users it reads.
const LOOKAHEAD_MS: i64 = 3_600_000;

/// The most users one query of the index of due timers reads.
const PAGE: usize = 512;

/// Per deployment (in their order) and kept type, the numbers `first..next` of a user's kept
/// events.
type Marks = Vec<(i64, Vec<(u64, u64)>)>;

/// The marks of deployment `n`.
fn marks_of(marks: &Marks, n: i64) -> &[(u64, u64)] {
    marks
        .iter()
        .find(|(m, _)| *m == n)
        .map_or(&[][..], |(_, slots)| slots.as_slice())
}

/// What older engines know of a user, for newer ones to take in (`catch_up`).
#[derive(Default)]
struct Known {
    facts: Vec<journey_runtime::vm::Fact>,
    kept: Vec<(&'static journey_runtime::bytecode::Program, Vec<KeptEvents>)>,
}

/// A user in memory.
#[derive(Debug)]
pub(super) struct Resident {
    /// When it was last used (the core's count of uses): the least recent go first.
    pub last_used: u64,
    /// The deployments (numbers, in order) in which it has work, as last stored.
    pub work: Vec<i64>,
    /// What it is reckoned to take in memory.
    pub bytes: usize,
    /// The newest deployment whose engine knows what the others know of it: a newer one
    /// takes that in when the user is next used (`catch_up`).
    pub newest: i64,
    /// Per deployment and kept type, the kept events the store holds: numbers `first..next`.
    pub history: Marks,
}

/// What memory a user in memory is reckoned to take, from the size of its record and how
/// many events it keeps (a kept event is about 48 bytes stored): values (24 bytes each in
/// memory) take a few bytes each stored, and a user's maps and lists, and its entry here, have
/// their own overhead. Calibrated on W-cart's users: 1,000,000 of them, all in memory, took
/// 1,850 MiB (docs/performance.md).
pub(super) fn reckoned(record_bytes: usize, kept_events: u64) -> usize {
    1024 + 6 * (record_bytes + 48 * kept_events as usize)
}

/// How many events marks (`first..next` per kept type and deployment) say are kept.
fn kept_events(marks: &Marks) -> u64 {
    marks
        .iter()
        .flat_map(|(_, slots)| slots)
        .map(|(first, next)| next - first)
        .sum()
}

fn store_error(e: String) -> Refusal {
    Refusal::new(503, "store", format!("the store could not be read: {e}"))
}

/// Reads a stored record's sections: (newest deployment then, sections by deployment).
fn sections(bytes: &[u8]) -> Result<(i64, BTreeMap<i64, &[u8]>), String> {
    let mut at = 0usize;
    let uint = |at: &mut usize| read_uint(bytes, at);
    let version = *bytes.first().ok_or("an empty user record")?;
    at += 1;
    if version != VERSION {
        return Err(format!("a user record of version {version}"));
    }
    let newest = uint(&mut at)? as i64;
    let count = uint(&mut at)?;
    let mut out = BTreeMap::new();
    for _ in 0..count {
        let deployment = uint(&mut at)? as i64;
        let length = uint(&mut at)? as usize;
        let end = at
            .checked_add(length)
            .filter(|end| *end <= bytes.len())
            .ok_or("a user record ends early")?;
        out.insert(deployment, &bytes[at..end]);
        at = end;
    }
    if at != bytes.len() {
        return Err("a user record with bytes after its end".into());
    }
    Ok((newest, out))
}

impl Core {
    /// Brings `name` into memory if it is not (and marks it used). With `new`, a user the
    /// store does not have is counted in memory as a new one (an input is about to make it).
    pub(super) fn ensure_resident(
        &mut self,
        name: &str,
        new: bool,
        src: &mut dyn Source,
    ) -> Result<(), Refusal> {
        self.uses += 1;
        let newest = self.newest();
        if let Some(resident) = self.resident.get_mut(name) {
            resident.last_used = self.uses;
            if resident.newest < newest {
                let since = std::mem::replace(&mut resident.newest, newest);
                self.catch_up(name, since, Known::default());
            }
            return Ok(());
        }
        // A user an engine made since the last checkpoint is not stored yet.
        if self.engines().any(|e| e.user_id(name).is_some()) {
            self.count_new(name, newest);
            return Ok(());
        }
        let record = src.user(name).map_err(store_error)?;
        let Some(record) = record else {
            if new {
                self.count_new(name, newest);
            }
            return Ok(());
        };
        let history = src.history(name).map_err(store_error)?;
        if let Err(refusal) = self.restore_user(name, &record, history) {
            // Nothing of a record that cannot be read stays in memory.
            self.forget(&[name.to_string()]);
            return Err(refusal);
        }
        Ok(())
    }

    /// Counts a user the store does not have as in memory.
    fn count_new(&mut self, name: &str, newest: i64) {
        self.resident.insert(
            name.to_string(),
            Resident {
                last_used: self.uses,
                work: Vec::new(),
                bytes: reckoned(0, 0),
                newest,
                history: Vec::new(),
            },
        );
        self.resident_bytes += reckoned(0, 0);
    }

    /// Restores a stored user into every running engine.
    fn restore_user(
        &mut self,
        name: &str,
        record: &[u8],
        history: Vec<(i64, HistoryRow)>,
    ) -> Result<(), Refusal> {
        let mut work = Vec::new();
        let mut marks = Vec::new();
        let mut by_deployment: BTreeMap<i64, Vec<HistoryRow>> = BTreeMap::new();
        for (n, row) in history {
            by_deployment.entry(n).or_default().push(row);
        }
        {
            let bad = |e: String| {
                Refusal::new(
                    500,
                    "bad-record",
                    format!("the stored state of user `{name}` cannot be read: {e}"),
                )
            };
            let (newest, sections) = sections(record).map_err(bad)?;
            let behind = newest < self.newest();
            let mut retired = Known::default();
            for deployment in &mut self.deployments {
                let Some(section) = sections.get(&deployment.n) else {
                    continue;
                };
                let Some(engine) = deployment.engine.as_mut() else {
                    // A deployment retired since the record was written: what it knew of the
                    // user still reaches the engines deployed since (read in an engine of its
                    // program that runs nothing).
                    if behind {
                        let rows = by_deployment
                            .get(&deployment.n)
                            .map_or(&[][..], Vec::as_slice);
                        let program = deployment.program;
                        let reader = deployment
                            .reader
                            .get_or_insert_with(|| Box::new(Engine::new(program)));
                        let id = reader.restore(section, rows).map_err(bad)?;
                        retired.facts.extend(reader.facts_of(id));
                        retired.kept.push((program, reader.history_of(id)));
                        reader.drop_users(&[id]);
                    }
                    continue;
                };
                let rows = by_deployment.remove(&deployment.n).unwrap_or_default();
                let id = engine.restore(section, &rows).map_err(bad)?;
                if engine.user_has_work(id) {
                    work.push(deployment.n);
                }
                marks.push((deployment.n, engine.history_marks(id)));
            }
            // Engines deployed since the record was written take in what the others know.
            self.catch_up(name, newest, retired);
        }
        // (Rows of retired deployments are still stored: the next write drops them.)
        for n in by_deployment.keys() {
            marks.push((*n, Vec::new()));
        }
        marks.sort_unstable_by_key(|(n, _)| *n);
        let bytes = reckoned(record.len(), kept_events(&marks));
        self.resident.insert(
            name.to_string(),
            Resident {
                last_used: self.uses,
                work,
                bytes,
                newest: self.newest(),
                history: marks,
            },
        );
        self.resident_bytes += bytes;
        Ok(())
    }

    /// The engines deployed after `since` take in what the older ones know of `name` (and
    /// `retired`, what retired ones knew): the facts of the rules that span versions, and the
    /// events they keep (the oldest engine that keeps a type has seen the most of it).
    fn catch_up(&mut self, name: &str, since: i64, retired: Known) {
        let mut known = retired;
        for d in self.deployments.iter().filter(|d| d.n <= since) {
            let Some(engine) = d.engine.as_ref() else {
                continue;
            };
            let Some(id) = engine.user_id(name) else {
                continue;
            };
            known.facts.extend(engine.facts_of(id));
            let events = engine.history_of(id);
            if !events.is_empty() {
                known.kept.push((d.program, events));
            }
        }
        if known.facts.is_empty() && known.kept.iter().all(|(_, k)| k.is_empty()) {
            return;
        }
        for deployment in self.deployments.iter_mut().filter(|d| d.n > since) {
            if let Some(engine) = deployment.engine.as_mut() {
                known.facts.iter().for_each(|f| engine.mirror(f));
                for (program, events) in &known.kept {
                    engine.take_history(name, program, events);
                }
                engine.timeline.clear();
            }
        }
    }

    /// Catches up every user in memory whose newest engine knowing it is deployment `n` or
    /// a later one, but not the newest: before `n`'s engine goes.
    pub(super) fn catch_up_resident(&mut self, n: i64) {
        let newest = self.newest();
        let mut behind: Vec<(String, i64)> = self
            .resident
            .iter()
            .filter(|(_, r)| r.newest < newest && r.newest >= n)
            .map(|(name, r)| (name.clone(), r.newest))
            .collect();
        // (In name order: catching up may set timers, whose order is shared.)
        behind.sort_unstable();
        for (name, since) in behind {
            self.catch_up(&name, since, Known::default());
            if let Some(r) = self.resident.get_mut(&name) {
                r.newest = newest;
            }
        }
    }

    /// Brings into memory every stored user with a timer due at or before `until`.
    pub(super) fn ensure_due(&mut self, until: i64, src: &mut dyn Source) -> Result<(), Refusal> {
        if until <= self.loaded_until.0 {
            return Ok(());
        }
        // A page of the index at a time, from where the last read stopped (every stored user
        // whose key is before that is in memory already): until the page that passes `until`.
        let horizon = until.saturating_add(LOOKAHEAD_MS);
        loop {
            let page = src
                .due(self.loaded_until, horizon, PAGE)
                .map_err(store_error)?;
            for (name, _) in &page {
                self.ensure_resident(name, false, src)?;
            }
            match page.last() {
                Some((_, last)) if page.len() == PAGE => {
                    self.loaded_until = *last;
                    if last.0 > until {
                        return Ok(());
                    }
                }
                _ => {
                    self.loaded_until = (horizon, u64::MAX);
                    return Ok(());
                }
            }
        }
    }

    /// Brings into memory every user with work in deployment `d` (a lifecycle move acts on
    /// all of its instances).
    pub(super) fn ensure_working(&mut self, d: usize, src: &mut dyn Source) -> Result<(), Refusal> {
        let n = self.deployments[d].n;
        for name in src.working(n, None).map_err(store_error)? {
            self.ensure_resident(&name, false, src)?;
        }
        Ok(())
    }

    /// The users the engines touched since the last call, by name, in order, once each.
    fn take_touched(&mut self) -> Vec<String> {
        let mut names = Vec::new();
        for engine in self
            .deployments
            .iter_mut()
            .filter_map(|d| d.engine.as_mut())
        {
            let touched = engine.take_touched();
            names.extend(
                touched
                    .into_iter()
                    .map(|id| engine.user_name(id).to_string()),
            );
        }
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The stored form of a user in memory, against the kept events the store holds of it
    /// (`stored`: its marks as last written): its row, and the deployments in which it has
    /// work and its marks now.
    fn stored_form(&self, name: &str, newest: i64, stored: &Marks) -> (UserRow, Vec<i64>, Marks) {
        let mut record = vec![VERSION];
        put_uint(&mut record, newest as u64);
        let mut parts: Vec<(i64, Vec<u8>)> = Vec::new();
        let mut due: Option<(i64, u64)> = None;
        let mut work = Vec::new();
        let mut history = Vec::new();
        let mut history_drops = Vec::new();
        let mut marks = Vec::new();
        for deployment in &self.deployments {
            let Some(engine) = deployment.engine.as_ref() else {
                continue;
            };
            let Some(id) = engine.user_id(name) else {
                continue;
            };
            let (section, next) = engine.record(id);
            if let Some(next) = next {
                due = Some(due.map_or(next, |d| d.min(next)));
            }
            if engine.user_has_work(id) {
                work.push(deployment.n);
            }
            parts.push((deployment.n, section));
            // Kept events: the new ones since the store's, and the ones that left.
            let now = engine.history_marks(id);
            let before = marks_of(stored, deployment.n);
            let from: Vec<u64> = (0..now.len())
                .map(|slot| before.get(slot).map_or(0, |(_, next)| *next))
                .collect();
            for (slot, (first, _)) in now.iter().enumerate() {
                if before.get(slot).is_some_and(|(was, _)| first > was) {
                    history_drops.push((deployment.n, slot as u32, Some(*first)));
                }
            }
            history.extend(
                engine
                    .history_rows(id, &from)
                    .into_iter()
                    .map(|row| (deployment.n, row)),
            );
            marks.push((deployment.n, now));
        }
        // Deployments retired since: all of their rows go.
        for (n, _) in stored {
            if !marks.iter().any(|(m, _)| m == n) {
                history_drops.push((*n, 0, None));
            }
        }
        record.reserve(parts.iter().map(|(_, s)| s.len() + 20).sum());
        put_uint(&mut record, parts.len() as u64);
        for (n, section) in parts {
            put_uint(&mut record, n as u64);
            put_uint(&mut record, section.len() as u64);
            record.extend_from_slice(&section);
        }
        let row = UserRow {
            name: name.to_string(),
            record,
            due,
            history,
            history_drops,
        };
        (row, work, marks)
    }

    /// The users touched since the last checkpoint, as rows to write (with the kept events
    /// the store does not have yet, and those it may drop), and the changes of which
    /// deployments they have work in. Their reckoned memory is brought up to date.
    pub fn take_writes(&mut self) -> (Vec<UserRow>, Vec<(i64, String, bool)>) {
        let dirty = self.take_touched();
        let mut rows = Vec::with_capacity(dirty.len());
        let mut work_changes = Vec::new();
        let newest = self.newest();
        for name in dirty {
            let (stored, newest) = match self.resident.get_mut(&name) {
                Some(resident) => (std::mem::take(&mut resident.history), resident.newest),
                None => {
                    // (A user an engine made by itself: a mirrored fact, say.)
                    self.count_new(&name, newest);
                    (Vec::new(), newest)
                }
            };
            let (row, work, marks) = self.stored_form(&name, newest, &stored);
            let bytes = reckoned(row.record.len(), kept_events(&marks));
            if let Some(resident) = self.resident.get_mut(&name) {
                for n in resident.work.iter().filter(|n| !work.contains(n)) {
                    work_changes.push((*n, name.clone(), false));
                }
                for n in work.iter().filter(|n| !resident.work.contains(n)) {
                    work_changes.push((*n, name.clone(), true));
                }
                self.resident_bytes = self.resident_bytes - resident.bytes + bytes;
                resident.bytes = bytes;
                resident.work = work;
                resident.history = marks;
            }
            rows.push(row);
        }
        (rows, work_changes)
    }

    /// Takes users out of memory, least recently used first, until what memory is reckoned
    /// to hold is under `limit` (to three quarters of it, so that evictions come in batches).
    /// Call it right after a commit: every user in memory is then as stored. Answers how many
    /// went.
    pub fn evict_over(&mut self, limit: usize) -> usize {
        if self.resident_bytes <= limit {
            return 0;
        }
        let target = limit / 4 * 3;
        let mut by_use: Vec<(u64, &String, usize)> = self
            .resident
            .iter()
            .map(|(name, r)| (r.last_used, name, r.bytes))
            .collect();
        by_use.sort_unstable();
        let mut freed = 0usize;
        let mut going: Vec<String> = Vec::new();
        for (_, name, bytes) in by_use {
            if self.resident_bytes - freed <= target {
                break;
            }
            freed += bytes;
            going.push(name.clone());
        }
        self.forget(&going);
        going.len()
    }

    /// Takes `names` out of memory in every engine (what they were is as stored, or is to
    /// be forgotten: a commit that failed).
    pub(super) fn forget(&mut self, names: &[String]) {
        for deployment in &mut self.deployments {
            if let Some(engine) = deployment.engine.as_mut() {
                let ids: Vec<u32> = names.iter().filter_map(|n| engine.user_id(n)).collect();
                engine.take_touched();
                for (_, next_timer) in engine.drop_users(&ids) {
                    if let Some((at, sequence)) = next_timer {
                        self.loaded_until = self.loaded_until.min((at, sequence.saturating_sub(1)));
                    }
                }
            }
        }
        for name in names {
            if let Some(r) = self.resident.remove(name) {
                self.resident_bytes -= r.bytes;
            }
        }
    }

    /// Whether no user has work in deployment `n`: none in memory (its engine is idle), and
    /// every user the store lists with work there is in memory (the store's list is as of
    /// the last commit). A store that cannot answer says no.
    pub(super) fn idle_everywhere(&self, n: i64, src: &mut dyn Source) -> bool {
        const CHECKED: usize = 1024;
        match src.working(n, Some(CHECKED)) {
            Ok(names) => {
                names.len() < CHECKED && names.iter().all(|name| self.resident.contains_key(name))
            }
            Err(_) => false,
        }
    }

    /// How many users are in memory, and what they are reckoned to take.
    pub fn residents(&self) -> (usize, usize) {
        (self.resident.len(), self.resident_bytes)
    }

    /// When the next timer of a user in memory or in the store is due.
    pub fn next_timer_due(&self, src: &mut dyn Source) -> Option<i64> {
        let stored = src.first_due_after(self.loaded_until).ok().flatten();
        let engines = self.engines().filter_map(Engine::next_timer_at).min();
        match (stored, engines) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_round_trip_and_damage_is_refused() {
        let mut out = vec![VERSION];
        put_uint(&mut out, 3);
        put_uint(&mut out, 2);
        for (n, bytes) in [(1u64, &b"abc"[..]), (3, &[0xffu8; 200][..])] {
            put_uint(&mut out, n);
            put_uint(&mut out, bytes.len() as u64);
            out.extend_from_slice(bytes);
        }
        let (newest, parts) = sections(&out).expect("reads");
        assert_eq!(newest, 3);
        assert_eq!(parts.get(&1).copied(), Some(&b"abc"[..]));
        assert_eq!(parts.get(&3).map(|s| s.len()), Some(200));
        for cut in 0..out.len() {
            assert!(sections(&out[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = out.clone();
        longer.push(0);
        assert!(sections(&longer).is_err());
    }
}
