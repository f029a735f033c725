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

/// Cuts a line a crash left half-written at the end of a JSONL file: it was never counted as
/// delivered, so it will be written again whole.
fn drop_partial_line(path: &std::path::Path) -> Result<(), String> {
    use std::io::{Read, Seek, SeekFrom};
    let error = |e: std::io::Error| format!("`{}`: {e}", path.display());
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(error(e)),
    };
    let length = file.metadata().map_err(error)?.len();
    // Back from the end, a block at a time, to the last newline.
    let mut end = length;
    let mut block = vec![0u8; 64 * 1024];
    let keep = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start)).map_err(error)?;
        file.read_exact(chunk).map_err(error)?;
        if let Some(at) = chunk.iter().rposition(|b| *b == b'\n') {
            break start + at as u64 + 1;
        }
        end = start;
    };
    if keep == length {
        return Ok(());
    }
    file.set_len(keep)
        .and_then(|()| file.sync_data())
        .map_err(error)?;
    eprintln!(
        "journey-runtime: sink jsonl:{}: cut a half-written last line ({} bytes)",
        path.display(),
        length - keep
    );
    Ok(())
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
    if let Sink::Jsonl(path) = &sink {
        if let Err(error) = drop_partial_line(path) {
            eprintln!("journey-runtime: error: sink {name}: {error}");
        }
    }
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
