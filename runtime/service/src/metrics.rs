//! Counters → the Prometheus text format of `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

#[derive(Default)]
pub struct Metrics {
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub ignored: AtomicU64,
    pub actions: AtomicU64,
    pub timers_fired: AtomicU64,
    pub commits: AtomicU64,
    pub commit_micros: AtomicU64,
    pub http_errors: AtomicU64,
    /// Predicates the running engines run as native code (a gauge).
    pub predicates_native: AtomicU64,
    /// Users taken out of memory to stay under `--memory-limit`.
    pub evicted: AtomicU64,
    /// Users in memory, and what they are reckoned to take (gauges).
    pub users_in_memory: AtomicU64,
    pub memory_reckoned: AtomicU64,
    /// Whether the check of the whole store the start left to the running service has passed.
    pub store_checked: std::sync::atomic::AtomicBool,
    /// Per sink: (name, delivered, failed attempts), in the order of the configuration.
    pub sinks: Mutex<Vec<(String, u64, u64)>>,
}

impl Metrics {
    pub fn sink(&self, name: &str, delivered: u64, failed: u64) {
        if let Ok(mut sinks) = self.sinks.lock() {
            match sinks.iter_mut().find(|(n, _, _)| n == name) {
                Some(entry) => {
                    entry.1 += delivered;
                    entry.2 += failed;
                }
                None => sinks.push((name.to_string(), delivered, failed)),
            }
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "journey_inputs_accepted_total",
            "Track and identify messages applied.",
            self.accepted.load(Relaxed),
        );
        counter(
            "journey_inputs_refused_total",
            "Messages refused (schema mismatch, bad JSON).",
            self.refused.load(Relaxed),
        );
        counter(
            "journey_inputs_ignored_total",
            "Tracks of event types no deployed schema declares.",
            self.ignored.load(Relaxed),
        );
        counter(
            "journey_actions_total",
            "Actions written to the outbox.",
            self.actions.load(Relaxed),
        );
        counter(
            "journey_timers_fired_total",
            "Timers fired by the engines.",
            self.timers_fired.load(Relaxed),
        );
        counter(
            "journey_commits_total",
            "Transactions committed.",
            self.commits.load(Relaxed),
        );
        counter(
            "journey_commit_microseconds_total",
            "Time spent committing.",
            self.commit_micros.load(Relaxed),
        );
        counter(
            "journey_users_evicted_total",
            "Users taken out of memory to stay under --memory-limit.",
            self.evicted.load(Relaxed),
        );
        counter(
            "journey_http_errors_total",
            "Requests answered with an error.",
            self.http_errors.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP journey_users_in_memory Users held in memory.\n\
             # TYPE journey_users_in_memory gauge\njourney_users_in_memory {}\n\
             # HELP journey_users_memory_bytes What the users in memory are reckoned to take.\n\
             # TYPE journey_users_memory_bytes gauge\njourney_users_memory_bytes {}",
            self.users_in_memory.load(Relaxed),
            self.memory_reckoned.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP journey_store_checked Whether the whole store was checked since the start (1) or is being checked (0).\n\
             # TYPE journey_store_checked gauge\njourney_store_checked {}",
            u8::from(self.store_checked.load(Relaxed))
        );
        let _ = writeln!(
            out,
            "# HELP journey_predicates_native Predicates the running engines run as native code.\n\
             # TYPE journey_predicates_native gauge\njourney_predicates_native {}",
            self.predicates_native.load(Relaxed)
        );
        if let Ok(sinks) = self.sinks.lock() {
            let _ = writeln!(out, "# HELP journey_delivered_total Actions delivered, per sink.\n# TYPE journey_delivered_total counter");
            for (name, delivered, _) in sinks.iter() {
                let _ = writeln!(
                    out,
                    "journey_delivered_total{{sink=\"{name}\"}} {delivered}"
                );
            }
            let _ = writeln!(out, "# HELP journey_delivery_failures_total Failed delivery attempts, per sink.\n# TYPE journey_delivery_failures_total counter");
            for (name, _, failed) in sinks.iter() {
                let _ = writeln!(
                    out,
                    "journey_delivery_failures_total{{sink=\"{name}\"}} {failed}"
                );
            }
        }
        out
    }
}
