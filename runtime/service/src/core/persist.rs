//! The core's own state ↔ JSON in the store: the clock, the order of timers, each deployment's
//! versions, lifecycle and counts. Users are not in it (`residency`); a start reads this and
//! the deployments' bytecode, and is ready.

use std::sync::atomic::Ordering;

use journey_runtime::bytecode::{self, Program};
use journey_runtime::jit::Policy;
use journey_runtime::vm::{JourneyStats, Outcome};
use serde_json::{json, Value as Json};

use super::{Core, Deployment, Lifecycle};

/// The version of the state's layout.
const VERSION: u64 = 1;

const OUTCOMES: [Outcome; 5] = [
    Outcome::Goal,
    Outcome::Exited,
    Outcome::Timeout,
    Outcome::Completed,
    Outcome::Archived,
];

const LIFECYCLES: [Lifecycle; 5] = [
    Lifecycle::Draft,
    Lifecycle::Active,
    Lifecycle::Paused,
    Lifecycle::Replaced,
    Lifecycle::Archived,
];

fn stats_json(stats: &[JourneyStats]) -> Json {
    Json::Array(
        stats
            .iter()
            .map(|s| {
                let outcomes: serde_json::Map<String, Json> = s
                    .outcomes
                    .iter()
                    .map(|(o, n)| (o.name().to_string(), json!(n)))
                    .collect();
                json!({
                    "entered": s.entered,
                    "outcomes": outcomes,
                    "reached": s.reached,
                    "split_arms": s.split_arms,
                })
            })
            .collect(),
    )
}

/// Counts read back onto `stats` (the engine's, shaped by its program): a count the state
/// lacks stays zero.
fn read_stats(json: &Json, stats: &mut [JourneyStats]) {
    let Some(list) = json.as_array() else {
        return;
    };
    for (s, j) in stats.iter_mut().zip(list) {
        s.entered = j["entered"].as_u64().unwrap_or(0);
        for outcome in OUTCOMES {
            if let Some(n) = j["outcomes"][outcome.name()].as_u64() {
                s.outcomes.insert(outcome, n);
            }
        }
        for (r, n) in s
            .reached
            .iter_mut()
            .zip(j["reached"].as_array().into_iter().flatten())
        {
            *r = n.as_u64().unwrap_or(0);
        }
        let arms = j["split_arms"].as_array().into_iter().flatten();
        for (split, counts) in s.split_arms.iter_mut().zip(arms) {
            for (a, n) in split
                .iter_mut()
                .zip(counts.as_array().into_iter().flatten())
            {
                *a = n.as_u64().unwrap_or(0);
            }
        }
    }
}

impl Core {
    /// The core's own state, to store; `next_seq` is the service's next command number.
    pub fn state(&self, next_seq: i64) -> Vec<u8> {
        let deployments: Vec<Json> = self
            .deployments
            .iter()
            .map(|d| {
                let versions: Vec<Json> = d
                    .versions
                    .iter()
                    .map(|(v, state)| json!([v, state.name()]))
                    .collect();
                match &d.engine {
                    Some(engine) => json!({
                        "n": d.n,
                        "versions": versions,
                        "retired": false,
                        "stats": stats_json(&engine.stats),
                        "timers_fired": engine.timers_fired,
                        "inputs": engine.inputs,
                        "ignored_events": engine.ignored_events,
                        "zone_fallbacks": engine.zone_fallbacks,
                    }),
                    None => json!({
                        "n": d.n,
                        "versions": versions,
                        "retired": true,
                        "stats": stats_json(&d.retired_stats),
                    }),
                }
            })
            .collect();
        json!({
            "version": VERSION,
            "next_seq": next_seq,
            "now": self.now(),
            "timer_order": self.timer_order.load(Ordering::Relaxed),
            "retired_timers": self.retired_timers,
            "deployments": deployments,
        })
        .to_string()
        .into_bytes()
    }

    /// Whether the state changed since the last `saved`.
    pub fn state_changed(&self) -> bool {
        self.changed
    }

    /// The state was stored.
    pub fn saved(&mut self) {
        self.changed = false;
    }

    /// A core from its stored state and the deployments' bytecode (number, bytes), no user in
    /// memory; and the service's next command number.
    pub fn load(
        jit: Policy,
        state: Option<&[u8]>,
        deployments: Vec<(i64, Vec<u8>)>,
    ) -> Result<(Core, i64), String> {
        let mut core = Core::new(jit);
        let Some(state) = state else {
            if deployments.is_empty() {
                return Ok((core, 1));
            }
            return Err("the store holds deployments but not the service's state".into());
        };
        let state: Json = serde_json::from_slice(state)
            .map_err(|e| format!("the service's stored state is not JSON: {e}"))?;
        if state["version"].as_u64() != Some(VERSION) {
            return Err(format!(
                "the service's stored state is of version {}; this binary reads {VERSION}",
                state["version"]
            ));
        }
        core.timer_order.store(
            state["timer_order"].as_u64().unwrap_or(0),
            Ordering::Relaxed,
        );
        core.retired_timers = state["retired_timers"].as_u64().unwrap_or(0);
        let now = state["now"].as_i64().unwrap_or(i64::MIN);
        let described = state["deployments"].as_array().cloned().unwrap_or_default();
        if described.len() != deployments.len() {
            return Err(format!(
                "the service's stored state describes {} deployments, the store holds {}",
                described.len(),
                deployments.len()
            ));
        }
        for ((n, bytes), desc) in deployments.into_iter().zip(described) {
            if desc["n"].as_i64() != Some(n) {
                return Err(format!("deployment {n} is not the one the state describes"));
            }
            let program = bytecode::read(&bytes)
                .map_err(|e| format!("deployment {n} is not valid bytecode: {e}"))?;
            bytecode::verify::verify(&program)
                .map_err(|e| format!("deployment {n} fails verification: {e}"))?;
            let program: &'static Program = Box::leak(Box::new(program));
            let versions: Vec<(u32, Lifecycle)> = desc["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    let state = LIFECYCLES
                        .into_iter()
                        .find(|l| v[1].as_str() == Some(l.name()))
                        .unwrap_or(Lifecycle::Archived);
                    (v[0].as_u64().unwrap_or(0) as u32, state)
                })
                .collect();
            if versions.len() != program.journeys.len() {
                return Err(format!(
                    "deployment {n}'s journeys are not the ones the state describes"
                ));
            }
            let mut deployment = Deployment {
                n,
                bytes,
                program,
                engine: None,
                versions,
                retired_stats: Vec::new(),
                reader: None,
            };
            let mut engine = core.engine_for(program);
            if desc["retired"].as_bool() == Some(true) {
                read_stats(&desc["stats"], &mut engine.stats);
                deployment.retired_stats = engine.stats;
            } else {
                for (j, (_, state)) in deployment.versions.iter().enumerate() {
                    let _ = engine.set_state(j as u32, state.engine_state());
                }
                read_stats(&desc["stats"], &mut engine.stats);
                engine.timers_fired = desc["timers_fired"].as_u64().unwrap_or(0);
                engine.inputs = desc["inputs"].as_u64().unwrap_or(0);
                engine.ignored_events = desc["ignored_events"].as_u64().unwrap_or(0);
                engine.zone_fallbacks = desc["zone_fallbacks"].as_u64().unwrap_or(0);
                engine.set_now(now);
                deployment.engine = Some(engine);
            }
            core.deployments.push(deployment);
        }
        core.share_facts();
        core.loaded_until = (i64::MIN, 0);
        let next_seq = state["next_seq"].as_i64().unwrap_or(1);
        Ok((core, next_seq))
    }
}
