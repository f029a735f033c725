//! Commands (a deployment, a lifecycle change, an input, a clock advance) → the engines' state
//! and the actions they produce. The same code applies a command live and when the log is
//! replayed at start, so both reach the same state.
//!
//! Each deployed bytecode runs in an engine of its own, and each of its journeys is a version
//! of the journey of that name: at most one version takes entries, the others' instances run
//! to their end on the version they entered on. Every engine sees every input (oldest
//! deployment first) and keeps the profile and history its program reads; the rules that span
//! versions travel between engines as facts (`journey_runtime::vm::facts`), and timers of all
//! engines fire in one order: by due time, then by the order they were set in, counted across
//! engines.
//!
//! **Invariant:** `apply` either refuses a command and changes nothing, or applies it; only
//! applied commands are logged.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use journey_runtime::bytecode::{self, Program};
use journey_runtime::jit::Policy;
use journey_runtime::vm::input::{self, Decoded};
use journey_runtime::vm::output::record_json;
use journey_runtime::vm::{Engine, Fact, JourneyState, JourneyStats, Outcome, RecordKind};
use serde_json::{json, Value as Json};

use crate::store::Action;

mod persist;
pub mod residency;

pub use residency::{Empty, Source};

/// The kinds of logged commands.
pub mod kind {
    pub const DEPLOY: &str = "deploy";
    pub const STATE: &str = "state";
    pub const INPUT: &str = "input";
    pub const ADVANCE: &str = "advance";
}

/// A journey version's place in its lifecycle (docs/runtime.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Uploaded; does nothing yet.
    Draft,
    /// Takes entries.
    Active,
    /// Takes no entries; its instances' timers are held until it is resumed.
    Paused,
    /// A newer version was activated: takes no entries; its instances run to their end.
    Replaced,
    /// Every instance ended with `archived`; for good.
    Archived,
}

impl Lifecycle {
    pub fn name(self) -> &'static str {
        match self {
            Lifecycle::Draft => "draft",
            Lifecycle::Active => "active",
            Lifecycle::Paused => "paused",
            Lifecycle::Replaced => "replaced",
            Lifecycle::Archived => "archived",
        }
    }

    fn engine_state(self) -> JourneyState {
        match self {
            Lifecycle::Draft | Lifecycle::Replaced => JourneyState::Closed,
            Lifecycle::Active => JourneyState::Live,
            Lifecycle::Paused => JourneyState::Paused,
            Lifecycle::Archived => JourneyState::Archived,
        }
    }
}

/// A lifecycle operation on a journey (`POST /v1/journeys/{name}/{operation}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Activate,
    Pause,
    Resume,
    Archive,
}

impl Operation {
    pub fn parse(text: &str) -> Option<Operation> {
        Some(match text {
            "activate" => Operation::Activate,
            "pause" => Operation::Pause,
            "resume" => Operation::Resume,
            "archive" => Operation::Archive,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Operation::Activate => "activate",
            Operation::Pause => "pause",
            Operation::Resume => "resume",
            Operation::Archive => "archive",
        }
    }
}

/// Why a command was refused: an HTTP status, a stable code and a message for people.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }
}

/// What applying a command did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Whether it changed anything (a command that did not is not logged).
    pub changed: bool,
    pub actions: Vec<Action>,
    /// For an input: some engine's program read every member of the message, so there is
    /// nothing to leave out of what is logged (`Core::kept` need not look).
    pub read_whole: bool,
}

/// A deployed bytecode and the engine running it.
struct Deployment {
    /// Its number: 1 for the first deployment, and so on (users' records name it).
    n: i64,
    /// The bytecode as uploaded (uploading the newest bytes again changes nothing).
    bytes: Vec<u8>,
    /// Leaked: the engine borrows its program for as long as the service runs, and a service
    /// deploys a handful of programs in its life (each a few kilobytes).
    program: &'static Program,
    /// `None` once retired: no version of it can take entries any more and nothing runs on
    /// it, so it no longer sees inputs.
    engine: Option<Engine<'static>>,
    /// Per journey of the program: its version number and state.
    versions: Vec<(u32, Lifecycle)>,
    /// The engine's counts, kept when it is retired.
    retired_stats: Vec<JourneyStats>,
    /// Once retired: an engine of its program that runs nothing, made when a user stored
    /// before the retirement comes back, to read what the program knew of it (`catch_up`).
    reader: Option<Box<Engine<'static>>>,
}

impl Deployment {
    /// Whether it can be retired as far as memory tells: no version that may take entries,
    /// and nothing runs on it for the users in memory (the store tells for the others).
    fn retirable(&self) -> bool {
        self.versions
            .iter()
            .all(|(_, state)| matches!(state, Lifecycle::Replaced | Lifecycle::Archived))
            && self.engine.as_ref().is_some_and(Engine::is_idle)
    }

    fn journey(&self, name: &str) -> Option<usize> {
        self.program
            .journeys
            .iter()
            .position(|j| self.program.string(j.name) == name)
    }
}

/// How many rounds of facts one command may set off between engines (each round is what the
/// last one's mirroring made happen); a bound, so that versions that keep answering each other
/// cannot hold the service.
const MAX_FACT_ROUNDS: usize = 64;

/// The service's state: the deployments and their engines, and the users in memory.
#[derive(Default)]
pub struct Core {
    /// Users in memory, by name (`residency`; looked up, never iterated into the output).
    /// (A seeded hash: names are chosen by whoever sends events.)
    resident:
        std::collections::HashMap<String, residency::Resident, foldhash::quality::RandomState>,
    /// What they are reckoned to take in memory.
    resident_bytes: usize,
    /// A count of uses of users in memory: the least recently used are evicted first.
    uses: u64,
    /// Every stored user whose first timer's key is at or before this one is in memory.
    loaded_until: (i64, u64),
    /// Whether the service's own state changed since the last commit.
    changed: bool,
    /// Oldest first.
    deployments: Vec<Deployment>,
    /// Timers fired by engines since retired.
    retired_timers: u64,
    /// Where action ids come from (`ActionIds`).
    ids: ActionIds,
    /// When the engines compile hot predicates to native code.
    jit: Policy,
    /// The order timers are set in, shared by every engine: timers due at the same instant
    /// fire in it, whichever engine set them (LANGUAGE.md §7.1).
    timer_order: Arc<AtomicU64>,
}

/// Appends one line of a `kind::INPUT` command's body to `body`: the time the message was
/// applied at, then the message (JSON on one line).
pub fn push_input_line(body: &mut String, at: i64, message: &str) {
    use std::fmt::Write;
    let _ = write!(body, "{at} ");
    body.push_str(message);
    body.push('\n');
}

/// The (time, message) lines of a `kind::INPUT` command's body.
fn input_lines(body: &[u8]) -> impl Iterator<Item = Result<(i64, &str), String>> + '_ {
    body.split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let line = std::str::from_utf8(line).map_err(|e| e.to_string())?;
            let (at, message) = line.split_once(' ').unwrap_or((line, ""));
            let at = at.parse().map_err(|_| "an input line without its time")?;
            Ok((at, message))
        })
}

/// When an input is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// At this time (the wall clock, or the time the log recorded); the message's own
    /// `timestamp` may be left out.
    At(i64),
    /// At the message's `timestamp`, or now if that is earlier (event time); a timestamp
    /// after `latest` is refused (`--max-skew`: one input from the far future would otherwise
    /// move the clock there for every user).
    Stamped { latest: i64 },
}

/// Action ids: `{run}-{n}`, where `run` is 64 random bits drawn at each start and `n` counts
/// the actions made since. An id is written to the outbox with its action and read from there
/// at every delivery, so a re-delivered action keeps it; a new start draws a new `run`, so
/// actions made after restoring a backup never take an id that was handed out after the backup
/// was taken.
///
/// **Invariant:** no two actions ever get the same id (up to a collision of two 64-bit random
/// numbers), whatever backups are restored.
#[derive(Debug, Default)]
pub struct ActionIds {
    run: u64,
    made: u64,
}

impl ActionIds {
    /// Ids for a new run: `run` should be random (`ActionIds::random`).
    pub fn new(run: u64) -> ActionIds {
        ActionIds { run, made: 0 }
    }

    /// Ids from 64 bits of the operating system's randomness.
    pub fn random() -> Result<ActionIds, String> {
        getrandom::u64()
            .map(ActionIds::new)
            .map_err(|e| format!("cannot draw a random run id: {e}"))
    }

    fn next(&mut self) -> String {
        self.made += 1;
        format!("{:016x}-{}", self.run, self.made)
    }
}

impl Core {
    /// Takes the ids back (a rebuild hands them to the new core).
    pub fn take_action_ids(&mut self) -> ActionIds {
        std::mem::take(&mut self.ids)
    }

    /// Gives the actions made from now on ids from `ids`.
    pub fn set_action_ids(&mut self, ids: ActionIds) {
        self.ids = ids;
    }

    /// A core without deployments whose engines compile hot predicates as `jit` says.
    pub fn new(jit: Policy) -> Core {
        Core {
            jit,
            loaded_until: (i64::MIN, 0),
            ..Core::default()
        }
    }

    /// When the engines compile hot predicates.
    pub fn jit(&self) -> Policy {
        self.jit
    }

    /// How many predicates the running engines run as native code.
    pub fn compiled_predicates(&self) -> usize {
        self.engines().map(Engine::compiled_predicates).sum()
    }

    /// The bytecode of the deployments after number `n`: (number, bytes).
    pub fn deployments_after(&self, n: i64) -> Vec<(i64, Vec<u8>)> {
        self.deployments
            .iter()
            .filter(|d| d.n > n)
            .map(|d| (d.n, d.bytes.clone()))
            .collect()
    }

    /// The newest deployment's number (0: none).
    pub fn newest(&self) -> i64 {
        self.deployments.last().map_or(0, |d| d.n)
    }

    /// The engines still running, oldest first.
    fn engines(&self) -> impl Iterator<Item = &Engine<'static>> {
        self.deployments.iter().filter_map(|d| d.engine.as_ref())
    }

    /// The engines' time: what they have processed reaches up to here.
    pub fn now(&self) -> i64 {
        self.engines().map(Engine::now).max().unwrap_or(i64::MIN)
    }

    /// When the next timer of any engine is due, if one is set.
    pub fn next_timer_at(&self) -> Option<i64> {
        self.engines().filter_map(Engine::next_timer_at).min()
    }

    pub fn timers_fired(&self) -> u64 {
        self.retired_timers + self.engines().map(|e| e.timers_fired).sum::<u64>()
    }

    /// Retires the engines of deployments that can no longer matter (`Deployment::retirable`),
    /// keeping their counts. Checked after every input, lifecycle move and clock advance: a
    /// deployment with no version that may take entries, idle for the users in memory, and
    /// with no user in the store that has work in it.
    fn retire(&mut self, src: &mut dyn Source) {
        let newest = self.deployments.len().saturating_sub(1);
        for d in 0..newest {
            let deployment = &self.deployments[d];
            if !(deployment.retirable() && self.idle_everywhere(deployment.n, src)) {
                continue;
            }
            // What it knows reaches the newer engines first (users in the store will take it
            // in from their records).
            self.catch_up_resident(deployment.n);
            let deployment = &mut self.deployments[d];
            {
                if let Some(engine) = deployment.engine.take() {
                    self.retired_timers += engine.timers_fired;
                    deployment.retired_stats = engine.stats;
                    self.changed = true;
                }
            }
        }
    }

    /// Applies a command of schema 1's log (`kind`, body) at engine time `at` (a start moves
    /// such a log into users' state, once).
    pub fn apply(
        &mut self,
        seq: i64,
        kind: &str,
        at: i64,
        body: &[u8],
        src: &mut dyn Source,
    ) -> Result<Applied, Refusal> {
        match kind {
            kind::DEPLOY => self.deploy(body),
            kind::STATE => {
                let command: Json = serde_json::from_slice(body)
                    .map_err(|e| Refusal::new(400, "bad-command", e.to_string()))?;
                let journey = command["journey"].as_str().unwrap_or_default();
                let operation = command["operation"]
                    .as_str()
                    .and_then(Operation::parse)
                    .ok_or_else(|| Refusal::new(400, "bad-command", "no operation"))?;
                self.operate(seq, journey, operation, src)
            }
            // The messages one request brought, each with the time it was applied at.
            kind::INPUT => {
                let mut applied = Applied::default();
                for line in input_lines(body) {
                    let (at, message) = line.map_err(|e| Refusal::new(500, "bad-log", e))?;
                    let (mut one, _) = self.input(seq, message, When::At(at), src)?;
                    applied.changed |= one.changed;
                    applied.actions.append(&mut one.actions);
                }
                Ok(applied)
            }
            kind::ADVANCE => self.advance(seq, at, src),
            other => Err(Refusal::new(
                500,
                "bad-log",
                format!("the log holds a command of unknown kind `{other}`"),
            )),
        }
    }

    /// Deploys a bytecode: a new engine, empty. It replays nothing: a user comes into it as
    /// its inputs do, and what the other engines know of a user it takes in when the user is
    /// next used (`residency`).
    pub fn deploy(&mut self, bytes: &[u8]) -> Result<Applied, Refusal> {
        if self.deployments.last().is_some_and(|d| d.bytes == bytes) {
            return Ok(Applied::default());
        }
        let program = bytecode::read(bytes)
            .map_err(|e| Refusal::new(400, "bad-bytecode", format!("not valid bytecode: {e}")))?;
        bytecode::verify::verify(&program).map_err(|e| {
            Refusal::new(
                400,
                "bad-bytecode",
                format!("the bytecode fails verification: {e}"),
            )
        })?;
        let program: &'static Program = Box::leak(Box::new(program));
        let mut engine = self.engine_for(program);
        engine.set_now(self.now());
        for journey in 0..program.journeys.len() as u32 {
            // Cannot fail: the journey exists and nothing is archived yet.
            let _ = engine.set_state(journey, JourneyState::Closed);
        }
        let names: Vec<&str> = program
            .journeys
            .iter()
            .map(|j| program.string(j.name))
            .collect();
        let versions = names
            .iter()
            .map(|name| {
                let before = self
                    .deployments
                    .iter()
                    .filter(|d| d.journey(name).is_some())
                    .count();
                (before as u32 + 1, Lifecycle::Draft)
            })
            .collect();
        let n = self.deployments.last().map_or(1, |d| d.n + 1);
        self.deployments.push(Deployment {
            n,
            bytes: bytes.to_vec(),
            program,
            engine: Some(engine),
            versions,
            retired_stats: Vec::new(),
            reader: None,
        });
        self.share_facts();
        self.changed = true;
        Ok(Applied {
            changed: true,
            ..Applied::default()
        })
    }

    /// An engine for `program` as the core runs them: its JIT policy, the shared order of
    /// timers, touched users listed.
    fn engine_for(&self, program: &'static Program) -> Engine<'static> {
        let mut engine = Engine::new(program);
        engine.set_jit(self.jit);
        engine.share_timer_order(self.timer_order.clone());
        engine.track_touched(true);
        engine
    }

    /// With more than one engine, every engine reports facts and keeps sends as long as any
    /// version's caps look back.
    fn share_facts(&mut self) {
        if self.engines().count() > 1 {
            let memory = self.engines().map(Engine::send_memory).max().unwrap_or(0);
            for engine in self
                .deployments
                .iter_mut()
                .filter_map(|d| d.engine.as_mut())
            {
                engine.report_facts(true);
                engine.keep_sends_for(memory);
            }
        }
    }

    /// Every version of a journey: (deployment, journey index), oldest first.
    fn versions_of(&self, journey: &str) -> Result<Vec<(usize, usize)>, Refusal> {
        let found: Vec<(usize, usize)> = self
            .deployments
            .iter()
            .enumerate()
            .filter_map(|(d, deployment)| Some((d, deployment.journey(journey)?)))
            .collect();
        if found.is_empty() {
            return Err(Refusal::new(
                404,
                "no-journey",
                format!("no journey `{journey}` is deployed"),
            ));
        }
        Ok(found)
    }

    fn state_of(&self, (d, j): (usize, usize)) -> Lifecycle {
        self.deployments[d].versions[j].1
    }

    fn set(
        &mut self,
        (d, j): (usize, usize),
        to: Lifecycle,
        src: &mut dyn Source,
    ) -> Result<(), Refusal> {
        // Archiving ends every instance, and leaving a pause looks at every waiting one: the
        // users with work there come into memory first.
        let from = self.state_of((d, j));
        if to == Lifecycle::Archived || (from == Lifecycle::Paused && to != Lifecycle::Paused) {
            self.ensure_working(d, src)?;
        }
        self.changed = true;
        let deployment = &mut self.deployments[d];
        // (A retired engine had nothing left to end.)
        if let Some(engine) = deployment.engine.as_mut() {
            engine
                .set_state(j as u32, to.engine_state())
                .map_err(|e| Refusal::new(409, "bad-transition", e))?;
        }
        deployment.versions[j].1 = to;
        Ok(())
    }

    pub fn operate(
        &mut self,
        seq: i64,
        journey: &str,
        operation: Operation,
        src: &mut dyn Source,
    ) -> Result<Applied, Refusal> {
        let versions = self.versions_of(journey)?;
        let with = |state: Lifecycle| {
            versions
                .iter()
                .rev()
                .copied()
                .find(|v| self.state_of(*v) == state)
        };
        let refuse = |what: &str| {
            Refusal::new(
                409,
                "bad-transition",
                format!("journey `{journey}` cannot {}: {what}", operation.name()),
            )
        };
        match operation {
            Operation::Activate => {
                if let Some(draft) = with(Lifecycle::Draft) {
                    // The version that took entries until now stops taking them, and older
                    // drafts will never take any.
                    for v in versions.iter().copied().filter(|v| *v != draft) {
                        if matches!(
                            self.state_of(v),
                            Lifecycle::Active | Lifecycle::Paused | Lifecycle::Draft
                        ) {
                            self.set(v, Lifecycle::Replaced, src)?;
                        }
                    }
                    self.set(draft, Lifecycle::Active, src)?;
                } else if let Some(paused) = with(Lifecycle::Paused) {
                    self.set(paused, Lifecycle::Active, src)?;
                } else {
                    return Err(refuse("no version of it is a draft or paused"));
                }
            }
            Operation::Pause => {
                let active =
                    with(Lifecycle::Active).ok_or_else(|| refuse("no version of it is active"))?;
                self.set(active, Lifecycle::Paused, src)?;
            }
            Operation::Resume => {
                let paused =
                    with(Lifecycle::Paused).ok_or_else(|| refuse("no version of it is paused"))?;
                self.set(paused, Lifecycle::Active, src)?;
            }
            Operation::Archive => {
                let live: Vec<(usize, usize)> = versions
                    .iter()
                    .copied()
                    .filter(|v| self.state_of(*v) != Lifecycle::Archived)
                    .collect();
                if live.is_empty() {
                    return Err(refuse("it is archived already"));
                }
                for v in live {
                    self.set(v, Lifecycle::Archived, src)?;
                }
            }
        }
        self.settle();
        let actions = self.take_actions(seq);
        self.retire(src);
        Ok(Applied {
            changed: true,
            actions,
            ..Applied::default()
        })
    }

    /// Applies an input message (its JSON text), decoded against every deployment's schema
    /// first (a refusal by any refuses it whole), then pushed to each engine, oldest first.
    /// Answers what it did and the time it was applied at.
    pub fn input(
        &mut self,
        seq: i64,
        message: &str,
        when: When,
        src: &mut dyn Source,
    ) -> Result<(Applied, i64), Refusal> {
        if self.deployments.is_empty() {
            return Err(Refusal::new(
                409,
                "nothing-deployed",
                "no bytecode is deployed: PUT /v1/journeys first",
            ));
        }
        let default_time = match when {
            When::At(at) => Some(at),
            When::Stamped { .. } => None,
        };
        let mut decoded = Vec::with_capacity(self.deployments.len());
        let mut read_whole = false;
        for deployment in &self.deployments {
            if deployment.engine.is_none() {
                decoded.push(None);
                continue;
            }
            match input::decode_text_whole(deployment.program, message, default_time) {
                Ok((Decoded::Input(input), whole)) => {
                    read_whole |= whole;
                    decoded.push(Some(input));
                }
                Ok((Decoded::UnknownEvent(_), _)) => decoded.push(None),
                Err(message) => return Err(Refusal::new(400, "schema-mismatch", message)),
            }
        }
        let Some(stamped) = decoded.iter().flatten().next().map(|i| i.time()) else {
            return Ok((Applied::default(), self.now()));
        };
        let at = match when {
            When::At(at) => at,
            When::Stamped { latest } if stamped > latest => {
                return Err(Refusal::new(
                    400,
                    "too-far-ahead",
                    format!(
                        "`timestamp` {} is after {}, the latest this service takes now (--max-skew past its clock)",
                        crate::rfc3339_ms(stamped),
                        crate::rfc3339_ms(latest)
                    ),
                ))
            }
            When::Stamped { .. } => stamped.max(self.now()),
        };
        // The user, and every user with a timer due by then, into memory first.
        if let Some(input) = decoded.iter().flatten().next() {
            let name = input.user().clone();
            self.ensure_resident(&name, true, src)?;
        }
        self.ensure_due(at, src)?;
        self.fire_until(at);
        for (d, input) in decoded.into_iter().enumerate() {
            if let (Some(input), Some(engine)) = (input, self.deployments[d].engine.as_mut()) {
                engine.push(input.at(at));
                self.settle();
            }
        }
        let applied = Applied {
            changed: true,
            actions: self.take_actions(seq),
            read_whole,
        };
        self.changed = true;
        self.retire(src);
        Ok((applied, at))
    }

    /// Moves time on to `until`, firing what comes due (the users whose timers those are
    /// come into memory first). Changes nothing when nothing fires and the clock is there.
    pub fn advance(
        &mut self,
        seq: i64,
        until: i64,
        src: &mut dyn Source,
    ) -> Result<Applied, Refusal> {
        if self.deployments.is_empty() {
            return Ok(Applied::default());
        }
        self.ensure_due(until, src)?;
        let (fired, now) = (self.timers_fired(), self.now());
        self.fire_until(until);
        for engine in self
            .deployments
            .iter_mut()
            .filter_map(|d| d.engine.as_mut())
        {
            engine.finish(Some(until));
        }
        let actions = self.take_actions(seq);
        let changed = self.timers_fired() != fired || self.now() != now || !actions.is_empty();
        self.changed |= changed;
        self.retire(src);
        Ok(Applied {
            changed,
            actions,
            ..Applied::default()
        })
    }

    /// Fires every engine's timers due by `until` in one order — by due time, then by the
    /// order they were set in, which the engines share — the facts of each settled before the
    /// next.
    fn fire_until(&mut self, until: i64) {
        if self.engines().count() == 1 {
            if let Some(engine) = self.deployments.iter_mut().find_map(|d| d.engine.as_mut()) {
                engine.finish(Some(until));
            }
            return;
        }
        loop {
            let next = self
                .deployments
                .iter()
                .enumerate()
                .filter_map(|(d, deployment)| {
                    let (due, set) = deployment.engine.as_ref()?.next_timer()?;
                    Some((due, set, d)).filter(|_| due <= until)
                })
                .min();
            let Some((_, _, d)) = next else {
                return;
            };
            if let Some(engine) = self.deployments[d].engine.as_mut() {
                engine.fire_next(until);
            }
            self.settle();
        }
    }

    /// Hands each engine's facts to the others until none are left.
    fn settle(&mut self) {
        if self.engines().count() < 2 {
            return;
        }
        for _ in 0..MAX_FACT_ROUNDS {
            let facts: Vec<(usize, Vec<Fact>)> = self
                .deployments
                .iter_mut()
                .enumerate()
                .filter_map(|(d, deployment)| Some((d, deployment.engine.as_mut()?.take_facts())))
                .filter(|(_, facts)| !facts.is_empty())
                .collect();
            if facts.is_empty() {
                return;
            }
            for (from, facts) in facts {
                for (d, deployment) in self.deployments.iter_mut().enumerate() {
                    if let (true, Some(engine)) = (d != from, deployment.engine.as_mut()) {
                        facts.iter().for_each(|f| engine.mirror(f));
                    }
                }
            }
        }
    }

    /// The sends the last command produced, as outbox actions with fresh ids (`ActionIds`), each
    /// with its journey's version; the rest of the timeline (entries, exits, skips) is
    /// counted in the stats.
    fn take_actions(&mut self, seq: i64) -> Vec<Action> {
        let mut actions = Vec::new();
        for deployment in &mut self.deployments {
            let Some(engine) = deployment.engine.as_mut() else {
                continue;
            };
            if engine.timeline.is_empty() {
                continue;
            }
            // (Taken and handed back emptied: the buffer keeps its room for the next command.)
            let mut records = std::mem::take(&mut engine.timeline);
            for record in records.drain(..) {
                if !matches!(record.kind, RecordKind::Send { .. }) {
                    continue;
                }
                let id = self.ids.next();
                let mut json = record_json(engine, &record);
                if let Some(object) = json.as_object_mut() {
                    object.insert("id".into(), json!(id));
                    let version = deployment.versions.get(record.journey as usize);
                    object.insert("version".into(), json!(version.map_or(0, |v| v.0)));
                }
                actions.push(Action {
                    id,
                    seq,
                    at: record.at,
                    user: engine.user_name(record.user).to_string(),
                    // (Straight into a buffer: `Display` goes through a formatter.)
                    json: serde_json::to_string(&json).unwrap_or_default(),
                });
            }
            engine.timeline = records;
        }
        actions
    }

    /// What the log keeps of an accepted message: the text with what no running engine's
    /// schema declares left out (`vm::kept`), or `None` to keep it as it came.
    pub fn kept(&self, message: &str) -> Option<String> {
        let programs: Vec<&Program> = self
            .deployments
            .iter()
            .filter(|d| d.engine.is_some())
            .map(|d| d.program)
            .collect();
        journey_runtime::vm::kept::kept_text(&programs, message)
    }

    // ------------------------------------------------------------ reads

    /// The names of the journeys of the newest deployment.
    pub fn newest_journeys(&self) -> Vec<String> {
        self.deployments.last().map_or_else(Vec::new, |d| {
            d.program
                .journeys
                .iter()
                .map(|j| d.program.string(j.name).to_string())
                .collect()
        })
    }

    /// Every deployed journey with its versions and their states, in order of first upload.
    pub fn journeys(&self) -> Json {
        let mut names: Vec<&str> = Vec::new();
        for d in &self.deployments {
            for j in &d.program.journeys {
                let name = d.program.string(j.name);
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        let journeys: Vec<Json> = names
            .iter()
            .map(|name| {
                let mut title = None;
                let versions: Vec<Json> = self
                    .deployments
                    .iter()
                    .enumerate()
                    .filter_map(|(n, d)| {
                        let j = d.journey(name)?;
                        let desc = &d.program.journeys[j];
                        if desc.title != bytecode::NONE {
                            title = Some(d.program.string(desc.title));
                        }
                        let (version, state) = d.versions[j];
                        Some(json!({
                            "version": version,
                            "state": state.name(),
                            "deployment": n + 1,
                            "retired": d.engine.is_none(),
                        }))
                    })
                    .collect();
                json!({ "name": name, "title": title, "versions": versions })
            })
            .collect();
        json!({ "journeys": journeys })
    }

    /// A journey's counts per version: entries, outcomes, conversion, steps and split arms.
    pub fn stats(&self, journey: &str) -> Result<Json, Refusal> {
        let versions: Vec<Json> = self
            .versions_of(journey)?
            .into_iter()
            .map(|(d, index)| {
                let deployment = &self.deployments[d];
                let program = deployment.program;
                let desc = &program.journeys[index];
                let stats = match &deployment.engine {
                    Some(engine) => &engine.stats[index],
                    None => &deployment.retired_stats[index],
                };
                let goals = stats.outcomes.get(&Outcome::Goal).copied().unwrap_or(0);
                let outcomes: serde_json::Map<String, Json> = stats
                    .outcomes
                    .iter()
                    .map(|(o, n)| (o.name().to_string(), json!(n)))
                    .collect();
                let steps: Vec<Json> = desc
                    .steps
                    .iter()
                    .zip(&stats.reached)
                    .map(|(s, n)| json!({ "step": program.string(s.name), "reached": n }))
                    .collect();
                let splits: Vec<Json> = desc
                    .splits
                    .iter()
                    .zip(&stats.split_arms)
                    .map(|(arms, counts)| {
                        json!(arms
                            .iter()
                            .zip(counts)
                            .map(|(a, n)| json!({ "arm": program.string(a.name), "count": n }))
                            .collect::<Vec<_>>())
                    })
                    .collect();
                let ended: u64 = stats.outcomes.values().sum();
                let (version, state) = deployment.versions[index];
                json!({
                    "version": version,
                    "state": state.name(),
                    "entered": stats.entered,
                    "running": stats.entered.saturating_sub(ended),
                    "outcomes": outcomes,
                    "conversion": if stats.entered == 0 { 0.0 } else { goals as f64 / stats.entered as f64 },
                    "steps": steps,
                    "splits": splits,
                })
            })
            .collect();
        Ok(json!({ "journey": journey, "versions": versions }))
    }

    /// A user's profile (as the newest deployment reads it) and running instances of every
    /// version (`None`: not seen).
    pub fn user(&mut self, name: &str, src: &mut dyn Source) -> Result<Option<Json>, Refusal> {
        self.ensure_resident(name, false, src)?;
        Ok(self.user_view(name))
    }

    fn user_view(&self, name: &str) -> Option<Json> {
        let mut profile = serde_json::Map::new();
        let mut instances = Vec::new();
        let mut pending = Vec::new();
        let mut seen = false;
        for deployment in &self.deployments {
            let program = deployment.program;
            let Some(view) = deployment.engine.as_ref().and_then(|e| e.user_view(name)) else {
                continue;
            };
            seen = true;
            let fields = program.record_fields(program.profile).unwrap_or_default();
            for (field, value) in &view.traits {
                if let Some(desc) = fields.get(*field as usize) {
                    profile.insert(
                        program.string(desc.name).to_string(),
                        journey_runtime::vm::output::value_json(program, value, Some(desc.ty)),
                    );
                }
            }
            for i in &view.instances {
                let desc = &program.journeys[i.journey as usize];
                let mut object = json!({
                    "journey": program.string(desc.name),
                    "version": deployment.versions[i.journey as usize].0,
                    "entered_at": journey_runtime::vm::output::rfc3339(i.entered_at),
                    "step": i.step.and_then(|s| desc.steps.get(s as usize)).map(|s| program.string(s.name)),
                    "waiting_for": i.waiting,
                });
                if let (Some(key), Some(object)) = (&i.key, object.as_object_mut()) {
                    object.insert("key".into(), json!(key.as_str()));
                }
                instances.push(object);
            }
            for (journey, key) in &view.pending {
                let desc = &program.journeys[*journey as usize];
                let mut object = json!({
                    "journey": program.string(desc.name),
                    "version": deployment.versions[*journey as usize].0,
                });
                if let (Some(key), Some(object)) = (key, object.as_object_mut()) {
                    object.insert("key".into(), json!(key.as_str()));
                }
                pending.push(object);
            }
        }
        seen.then(|| {
            json!({ "user": name, "profile": profile, "instances": instances, "pending": pending })
        })
    }
}
