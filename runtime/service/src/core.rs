//! Commands (a deployment, a lifecycle change, an input, a clock advance) → the engine's state
//! and the actions they produce. The same code applies a command live and when the log is
//! replayed at start, so both reach the same state.
//!
//! **Invariant:** `apply` either refuses a command and changes nothing, or applies it; only
//! applied commands are logged.

use journey_runtime::bytecode::{self, Program};
use journey_runtime::vm::input::{self, Decoded};
use journey_runtime::vm::output::record_json;
use journey_runtime::vm::{Engine, JourneyState, Outcome, RecordKind};
use serde_json::{json, Value as Json};

use crate::store::Action;

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
    /// Every instance ended with `archived`; for good.
    Archived,
}

impl Lifecycle {
    pub fn name(self) -> &'static str {
        match self {
            Lifecycle::Draft => "draft",
            Lifecycle::Active => "active",
            Lifecycle::Paused => "paused",
            Lifecycle::Archived => "archived",
        }
    }

    fn engine_state(self) -> JourneyState {
        match self {
            Lifecycle::Draft => JourneyState::Closed,
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

    /// Where the operation takes a journey from `from`, if it may.
    fn target(self, from: Lifecycle) -> Option<Lifecycle> {
        use Lifecycle::*;
        match (self, from) {
            (Operation::Activate, Draft | Paused) => Some(Active),
            (Operation::Pause, Active) => Some(Paused),
            (Operation::Resume, Paused) => Some(Active),
            (Operation::Archive, Draft | Active | Paused) => Some(Archived),
            _ => None,
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
}

/// The deployed bytecode and the engine running it.
struct Deployment {
    /// The bytecode as uploaded (a second upload of the same bytes changes nothing).
    bytes: Vec<u8>,
    /// Leaked: the engine borrows its program for as long as the service runs, and a service
    /// deploys a handful of programs in its life (each a few kilobytes).
    program: &'static Program,
    engine: Engine<'static>,
    lifecycle: Vec<Lifecycle>,
}

/// The service's state: what the log's commands built.
#[derive(Default)]
pub struct Core {
    deployment: Option<Deployment>,
    /// Inputs of event types no deployed schema declares (ignored, counted; not logged).
    pub ignored: u64,
    /// Timers fired, inputs applied and actions produced since start (replay included).
    pub inputs: u64,
    pub actions: u64,
}

impl Core {
    pub fn new() -> Core {
        Core::default()
    }

    /// The engine's time: what it has processed reaches up to here.
    pub fn now(&self) -> i64 {
        self.deployment
            .as_ref()
            .map_or(i64::MIN, |d| d.engine.now())
    }

    /// When the next timer is due, if one is set.
    pub fn next_timer_at(&self) -> Option<i64> {
        self.deployment.as_ref()?.engine.next_timer_at()
    }

    pub fn timers_fired(&self) -> u64 {
        self.deployment
            .as_ref()
            .map_or(0, |d| d.engine.timers_fired)
    }

    /// Applies a logged command (`kind`, body) at engine time `at`; `seq` numbers its actions.
    pub fn apply(
        &mut self,
        seq: i64,
        kind: &str,
        at: i64,
        body: &[u8],
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
                self.operate(seq, journey, operation)
            }
            kind::INPUT => {
                let message: Json = serde_json::from_slice(body)
                    .map_err(|e| Refusal::new(400, "bad-json", e.to_string()))?;
                self.input(seq, &message, at)
            }
            kind::ADVANCE => Ok(self.advance(seq, at)),
            other => Err(Refusal::new(
                500,
                "bad-log",
                format!("the log holds a command of unknown kind `{other}`"),
            )),
        }
    }

    fn deploy(&mut self, bytes: &[u8]) -> Result<Applied, Refusal> {
        if let Some(current) = &self.deployment {
            if current.bytes == bytes {
                return Ok(Applied::default());
            }
            return Err(Refusal::new(
                409,
                "versions-unsupported",
                "a bytecode is deployed already, and running a second version of its journeys \
                 beside the first is not supported yet: archive nothing, redeploy the same file, \
                 or start with a fresh data directory",
            ));
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
        let mut engine = Engine::new(program);
        for journey in 0..program.journeys.len() as u32 {
            // Cannot fail: the journey exists and nothing is archived yet.
            let _ = engine.set_state(journey, JourneyState::Closed);
        }
        self.deployment = Some(Deployment {
            bytes: bytes.to_vec(),
            program,
            lifecycle: vec![Lifecycle::Draft; program.journeys.len()],
            engine,
        });
        Ok(Applied {
            changed: true,
            actions: Vec::new(),
        })
    }

    fn find(&self, journey: &str) -> Result<(usize, &Deployment), Refusal> {
        let deployment = self
            .deployment
            .as_ref()
            .ok_or_else(|| Refusal::new(404, "no-journey", "nothing is deployed"))?;
        let program = deployment.program;
        let index = program
            .journeys
            .iter()
            .position(|j| program.string(j.name) == journey)
            .ok_or_else(|| {
                Refusal::new(
                    404,
                    "no-journey",
                    format!("no journey `{journey}` is deployed"),
                )
            })?;
        Ok((index, deployment))
    }

    fn operate(
        &mut self,
        seq: i64,
        journey: &str,
        operation: Operation,
    ) -> Result<Applied, Refusal> {
        let (index, deployment) = self.find(journey)?;
        let from = deployment.lifecycle[index];
        let to = operation.target(from).ok_or_else(|| {
            Refusal::new(
                409,
                "bad-transition",
                format!(
                    "journey `{journey}` is {}: it cannot {}",
                    from.name(),
                    operation.name()
                ),
            )
        })?;
        let Some(deployment) = self.deployment.as_mut() else {
            return Ok(Applied::default());
        };
        deployment
            .engine
            .set_state(index as u32, to.engine_state())
            .map_err(|e| Refusal::new(409, "bad-transition", e))?;
        deployment.lifecycle[index] = to;
        Ok(Applied {
            changed: true,
            actions: self.take_actions(seq),
        })
    }

    /// Applies an input message (the body of a `kind::INPUT` command, parsed) at `at`.
    pub fn input(&mut self, seq: i64, message: &Json, at: i64) -> Result<Applied, Refusal> {
        let Some(deployment) = self.deployment.as_mut() else {
            return Err(Refusal::new(
                409,
                "nothing-deployed",
                "no bytecode is deployed: PUT /v1/journeys first",
            ));
        };
        match input::decode(deployment.program, message) {
            Ok(Decoded::Input(input)) => {
                deployment.engine.push(input.at(at));
                self.inputs += 1;
                Ok(Applied {
                    changed: true,
                    actions: self.take_actions(seq),
                })
            }
            Ok(Decoded::UnknownEvent(_)) => {
                self.ignored += 1;
                Ok(Applied::default())
            }
            Err(message) => Err(Refusal::new(400, "schema-mismatch", message)),
        }
    }

    fn advance(&mut self, seq: i64, until: i64) -> Applied {
        let Some(deployment) = self.deployment.as_mut() else {
            return Applied::default();
        };
        deployment.engine.finish(Some(until));
        Applied {
            changed: true,
            actions: self.take_actions(seq),
        }
    }

    /// The sends the last command produced, as outbox actions with ids `{seq}-{n}`; the rest
    /// of the timeline (entries, exits, skips) is counted in the stats.
    fn take_actions(&mut self, seq: i64) -> Vec<Action> {
        let Some(deployment) = self.deployment.as_mut() else {
            return Vec::new();
        };
        let engine = &mut deployment.engine;
        if engine.timeline.is_empty() {
            return Vec::new();
        }
        // (Taken and handed back emptied: the buffer keeps its room for the next command.)
        let mut records = std::mem::take(&mut engine.timeline);
        let mut actions = Vec::new();
        for record in records.drain(..) {
            if !matches!(record.kind, RecordKind::Send { .. }) {
                continue;
            }
            let id = format!("{seq}-{}", actions.len() + 1);
            let mut json = record_json(engine, &record);
            if let Some(object) = json.as_object_mut() {
                object.insert("id".into(), json!(id));
            }
            actions.push(Action {
                id,
                seq,
                user: engine.user_name(record.user).to_string(),
                json: json.to_string(),
            });
        }
        engine.timeline = records;
        self.actions += actions.len() as u64;
        actions
    }

    // ------------------------------------------------------------ reads

    /// The names of the deployed journeys.
    pub fn journey_names(&self) -> Vec<String> {
        self.deployment.as_ref().map_or_else(Vec::new, |d| {
            d.program
                .journeys
                .iter()
                .map(|j| d.program.string(j.name).to_string())
                .collect()
        })
    }

    /// Every deployed journey with its version and state.
    pub fn journeys(&self) -> Json {
        let Some(deployment) = &self.deployment else {
            return json!({ "journeys": [] });
        };
        let program = deployment.program;
        let journeys: Vec<Json> = program
            .journeys
            .iter()
            .zip(&deployment.lifecycle)
            .map(|(j, state)| {
                json!({
                    "name": program.string(j.name),
                    "title": (j.title != bytecode::NONE).then(|| program.string(j.title)),
                    "versions": [{ "version": 1, "state": state.name() }],
                })
            })
            .collect();
        json!({ "journeys": journeys })
    }

    /// A journey's counts per version: entries, outcomes, conversion, steps and split arms.
    pub fn stats(&self, journey: &str) -> Result<Json, Refusal> {
        let (index, deployment) = self.find(journey)?;
        let program = deployment.program;
        let desc = &program.journeys[index];
        let stats = &deployment.engine.stats[index];
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
        Ok(json!({
            "journey": journey,
            "versions": [{
                "version": 1,
                "state": deployment.lifecycle[index].name(),
                "entered": stats.entered,
                "running": stats.entered.saturating_sub(ended),
                "outcomes": outcomes,
                "conversion": if stats.entered == 0 { 0.0 } else { goals as f64 / stats.entered as f64 },
                "steps": steps,
                "splits": splits,
            }],
        }))
    }

    /// A user's profile and running instances (`None`: not seen).
    pub fn user(&self, name: &str) -> Option<Json> {
        let deployment = self.deployment.as_ref()?;
        let program = deployment.program;
        let view = deployment.engine.user_view(name)?;
        let fields = program.record_fields(program.profile).unwrap_or_default();
        let profile: serde_json::Map<String, Json> = view
            .traits
            .iter()
            .filter_map(|(field, value)| {
                let desc = fields.get(*field as usize)?;
                Some((
                    program.string(desc.name).to_string(),
                    journey_runtime::vm::output::value_json(program, value, Some(desc.ty)),
                ))
            })
            .collect();
        let instances: Vec<Json> = view
            .instances
            .iter()
            .map(|i| {
                let desc = &program.journeys[i.journey as usize];
                let mut object = json!({
                    "journey": program.string(desc.name),
                    "version": 1,
                    "entered_at": journey_runtime::vm::output::rfc3339(i.entered_at),
                    "step": i.step.and_then(|s| desc.steps.get(s as usize)).map(|s| program.string(s.name)),
                    "waiting_for": i.waiting,
                });
                if let (Some(key), Some(object)) = (&i.key, object.as_object_mut()) {
                    object.insert("key".into(), json!(key.as_str()));
                }
                object
            })
            .collect();
        Some(json!({ "user": name, "profile": profile, "instances": instances }))
    }
}
