//! journey-runtime, the service: HTTP inputs → the VM → a durable log and outbox → sinks.
//!
//! `store` keeps the command log and the outbox in SQLite; `core` applies commands to the
//! engine (live and in replay); `server` runs the core on its own thread with the clock and
//! group commits; `http` is the API; `sinks` deliver the outbox.

/// A line for the operator on standard error. A closed or full stderr loses the line rather
/// than stopping the service (`eprintln!` would panic).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod core;
pub mod datadir;
pub mod http;
pub mod metrics;
pub mod server;
pub mod sinks;
pub mod store;
pub mod throttle;

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || format!("{ms}ms"),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}
