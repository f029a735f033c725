//! The outbox → where actions go: standard output or a JSONL file, each sink with its own
//! cursor in the store.
//!
//! **Invariant:** a sink's cursor moves past an action only after the action was handed over
//! (written and flushed, for a file: synced), so delivery is at least once; an action handed
//! over again after a crash carries the same `id`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::store::{Outgoing, Store, Sync};

/// Where actions are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// One JSON object a line on standard output.
    Stdout,
    /// One JSON object a line appended to a file.
    Jsonl(PathBuf),
}

impl Sink {
    /// `stdout` or `jsonl:PATH`.
    pub fn parse(text: &str) -> Result<Sink, String> {
        if text == "stdout" {
            return Ok(Sink::Stdout);
        }
        if let Some(path) = text.strip_prefix("jsonl:") {
            if path.is_empty() {
                return Err("`jsonl:` needs a file path: `jsonl:actions.jsonl`".into());
            }
            return Ok(Sink::Jsonl(PathBuf::from(path)));
        }
        Err(format!(
            "unknown sink `{text}`: use `stdout` or `jsonl:PATH`"
        ))
    }

    /// The name its cursor is stored under.
    pub fn name(&self) -> String {
        match self {
            Sink::Stdout => "stdout".into(),
            Sink::Jsonl(path) => format!("jsonl:{}", path.display()),
        }
    }

    fn hand_over(&self, actions: &[Outgoing]) -> Result<(), String> {
        let mut text = String::new();
        for action in actions {
            text.push_str(&action.json);
            text.push('\n');
        }
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes())
                    .and_then(|()| out.flush())
                    .map_err(|e| format!("stdout: {e}"))
            }
            Sink::Jsonl(path) => {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("`{}`: {e}", path.display()))?;
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_data())
                    .map_err(|e| format!("`{}`: {e}", path.display()))
            }
        }
    }
}

/// A sink's signals: new actions were committed; the service is stopping.
#[derive(Default)]
pub struct Signals {
    pub committed: Notify,
    pub stopping: AtomicBool,
}

/// Delivers the outbox to `sink` until the service stops (and the outbox is drained).
/// Runs on a thread of its own: the store and the sinks block.
pub fn deliver(
    sink: Sink,
    data: PathBuf,
    sync: Sync,
    signals: Arc<Signals>,
    metrics: Arc<Metrics>,
    runtime: tokio::runtime::Handle,
) {
    let name = sink.name();
    let store = match Store::open(&data, sync) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("journey-runtime: error: sink {name}: {error}");
            return;
        }
    };
    metrics.sink(&name, 0, 0);
    let mut backoff = Duration::from_millis(100);
    loop {
        let pending = store
            .cursor(&name)
            .and_then(|cursor| store.outbox_after(cursor, 512));
        let actions = match pending {
            Ok(actions) => actions,
            Err(error) => {
                eprintln!("journey-runtime: error: sink {name}: reading the outbox: {error}");
                std::thread::sleep(backoff);
                continue;
            }
        };
        let Some(last) = actions.last().map(|a| a.n) else {
            if signals.stopping.load(Ordering::SeqCst) {
                return;
            }
            runtime.block_on(async {
                let _ =
                    tokio::time::timeout(Duration::from_millis(200), signals.committed.notified())
                        .await;
            });
            continue;
        };
        match sink
            .hand_over(&actions)
            .and_then(|()| store.set_cursor(&name, last))
        {
            Ok(()) => {
                metrics.sink(&name, actions.len() as u64, 0);
                backoff = Duration::from_millis(100);
            }
            Err(error) => {
                metrics.sink(&name, 0, 1);
                eprintln!(
                    "journey-runtime: error: sink {name}: {error} (retrying in {} ms)",
                    backoff.as_millis()
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
