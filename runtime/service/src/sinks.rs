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
use crate::throttle::Throttle;

/// Where actions are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// One JSON object a line on standard output.
    Stdout,
    /// One JSON object a line appended to a file.
    Jsonl(PathBuf),
    /// Each action POSTed as JSON, with its id in the `Idempotency-Key` header.
    Webhook(String),
}

impl Sink {
    /// `stdout`, `jsonl:PATH` or `webhook:URL`.
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
        if let Some(url) = text.strip_prefix("webhook:") {
            webhook_host(url)?;
            return Ok(Sink::Webhook(url.to_string()));
        }
        Err(format!(
            "unknown sink `{text}`: use `stdout`, `jsonl:PATH` or `webhook:URL`"
        ))
    }

    /// The name its cursor is stored under.
    pub fn name(&self) -> String {
        match self {
            Sink::Stdout => "stdout".into(),
            Sink::Jsonl(path) => format!("jsonl:{}", path.display()),
            Sink::Webhook(url) => format!("webhook:{url}"),
        }
    }

    /// Hands actions over in order: how many went, and the error that stopped the rest.
    fn hand_over(&self, actions: &[Outgoing], agent: &ureq::Agent) -> (usize, Option<String>) {
        let all = || {
            let mut text = String::new();
            for action in actions {
                text.push_str(&action.json);
                text.push('\n');
            }
            text
        };
        let whole = |result: Result<(), String>| match result {
            Ok(()) => (actions.len(), None),
            Err(error) => (0, Some(error)),
        };
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                whole(
                    out.write_all(all().as_bytes())
                        .and_then(|()| out.flush())
                        .map_err(|e| format!("stdout: {e}")),
                )
            }
            Sink::Jsonl(path) => whole((|| {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("`{}`: {e}", path.display()))?;
                file.write_all(all().as_bytes())
                    .and_then(|()| file.sync_data())
                    .map_err(|e| format!("`{}`: {e}", path.display()))
            })()),
            Sink::Webhook(url) => {
                for (done, action) in actions.iter().enumerate() {
                    if let Err(error) = post(agent, url, action) {
                        return (done, Some(error));
                    }
                }
                (actions.len(), None)
            }
        }
    }
}

/// The host of a webhook URL (`http://` or `https://` only).
pub fn webhook_host(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("webhook URL `{url}` must start with https:// or http://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return Err(format!("webhook URL `{url}` has no host"));
    }
    Ok(host.to_ascii_lowercase())
}

/// One action to a webhook: 2xx is delivered; anything else is an error to retry.
fn post(agent: &ureq::Agent, url: &str, action: &Outgoing) -> Result<(), String> {
    let response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", &action.id)
        .send(action.json.as_str())
        .map_err(|e| format!("POST {url} (action {}): {e}", action.id))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let mut body = response.into_body();
    let text = body
        .with_config()
        .limit(512)
        .read_to_string()
        .unwrap_or_default();
    Err(format!(
        "POST {url} (action {}): {status} {}",
        action.id,
        text.trim()
    ))
}

/// The client webhooks are posted with: no redirects (a redirect could lead off the
/// allow-list), statuses as answers, a 30 s limit a call.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .user_agent(concat!("journey-runtime/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
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
    say!(
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
    /// Set once the HTTP side has stopped: the core commits what it has taken and returns,
    /// even if a request's sender were somehow still alive.
    pub core_stop: AtomicBool,
    /// What the store may forget, set by the core after a checkpoint and done on the
    /// checkpoint thread (deleting many rows would hold the core up): (inputs made before,
    /// the last command the checkpoint holds).
    pub prune: std::sync::Mutex<Option<(i64, i64)>>,
}

/// Sleeps for `duration`, or less if the service stops meanwhile: whether it is stopping.
pub fn sleep_unless_stopping(signals: &Signals, duration: Duration) -> bool {
    let until = std::time::Instant::now() + duration;
    loop {
        if signals.stopping.load(Ordering::SeqCst) {
            return true;
        }
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Delivers the outbox to `sink` until the service stops (and the outbox is drained, unless
/// the sink is failing: what is left is delivered after the next start).
/// Runs on a thread of its own: the store and the sinks block.
///
/// **Invariant:** every wait of the loop ends within 50 ms of the stop, so a failing sink or
/// store never holds a stop up; errors are written at most once per `throttle::INTERVAL`.
pub fn deliver(
    sink: Sink,
    data: PathBuf,
    sync: Sync,
    signals: Arc<Signals>,
    metrics: Arc<Metrics>,
    runtime: tokio::runtime::Handle,
) {
    let name = sink.name();
    let store = match Store::attach(&data, sync) {
        Ok(store) => store,
        Err(error) => {
            say!("journey-runtime: error: sink {name}: {error}");
            return;
        }
    };
    metrics.sink(&name, 0, 0);
    if let Sink::Jsonl(path) = &sink {
        if let Err(error) = drop_partial_line(path) {
            say!("journey-runtime: error: sink {name}: {error}");
        }
    }
    let mut backoff = Duration::from_millis(100);
    let mut errors = Throttle::default();
    let agent = agent();
    loop {
        let pending = store
            .cursor(&name)
            .and_then(|cursor| store.outbox_after(cursor, 512));
        let failure = match pending {
            Ok(actions) if actions.is_empty() => {
                if signals.stopping.load(Ordering::SeqCst) {
                    return;
                }
                runtime.block_on(async {
                    let _ = tokio::time::timeout(
                        Duration::from_millis(200),
                        signals.committed.notified(),
                    )
                    .await;
                });
                continue;
            }
            Ok(actions) => {
                let (done, failed) = sink.hand_over(&actions, &agent);
                let delivered = done.checked_sub(1).and_then(|last| actions.get(last));
                let moved = match delivered.map(|a| a.n) {
                    Some(delivered) => store.set_cursor(&name, delivered),
                    None => Ok(()),
                };
                metrics.sink(&name, done as u64, u64::from(failed.is_some()));
                failed.map_or(moved, Err).err()
            }
            Err(error) => Some(format!("reading the outbox: {error}")),
        };
        let Some(error) = failure else {
            backoff = Duration::from_millis(100);
            errors.reset();
            continue;
        };
        if signals.stopping.load(Ordering::SeqCst) {
            say!("journey-runtime: error: sink {name}: {error} (left for the next start)");
            return;
        }
        errors.say(&format!(
            "journey-runtime: error: sink {name}: {error} (retrying, every {} ms now)",
            backoff.as_millis()
        ));
        if sleep_unless_stopping(&signals, backoff) {
            say!("journey-runtime: sink {name}: stopping while failing: what is left is delivered after the next start");
            return;
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinks_parse_and_webhook_hosts_are_found() {
        assert_eq!(Sink::parse("stdout"), Ok(Sink::Stdout));
        assert_eq!(
            Sink::parse("jsonl:out/actions.jsonl"),
            Ok(Sink::Jsonl(PathBuf::from("out/actions.jsonl")))
        );
        assert!(Sink::parse("jsonl:").is_err());
        assert!(Sink::parse("kafka:topic").is_err_and(|e| e.contains("webhook:URL")));
        assert!(Sink::parse("webhook:ftp://x/y").is_err());
        for (url, host) in [
            ("https://Hooks.Example.com/x?y=1", "hooks.example.com"),
            ("http://127.0.0.1:8080/hook", "127.0.0.1"),
            ("https://user:secret@api.example.org", "api.example.org"),
            ("http://[::1]:9000/h", "::1"),
        ] {
            assert_eq!(webhook_host(url).as_deref(), Ok(host), "{url}");
        }
        assert!(webhook_host("https:///path").is_err());
    }
}
