//! A repeating error → one line per interval: the first occurrence at once, then at most one
//! line each `interval` saying how many more came (a disk that stays full, a sink that stays
//! down, must not fill the operator's log at the rate of retries).

use std::time::{Duration, Instant};

/// How often a repeating error is written.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The lines of one source of errors (a sink, the checkpoints, the commits).
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    /// When the last line was written, and how many errors came since it.
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    pub fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            last: None,
            held: 0,
        }
    }

    /// The line to write for an error now, if one is due: `None` while the interval since the
    /// last line runs (the error is counted).
    pub fn line(&mut self, now: Instant, error: &str) -> Option<String> {
        match self.last {
            Some(last) if now.duration_since(last) < self.interval => {
                self.held += 1;
                None
            }
            _ => {
                let more = std::mem::take(&mut self.held);
                self.last = Some(now);
                Some(if more == 0 {
                    error.to_string()
                } else {
                    format!(
                        "{error} (and {more} more errors in the last {} s)",
                        self.interval.as_secs()
                    )
                })
            }
        }
    }

    /// Writes `error` to stderr unless a line was written less than an interval ago.
    pub fn say(&mut self, error: &str) {
        if let Some(line) = self.line(Instant::now(), error) {
            say!("{line}");
        }
    }

    /// The errors are over: the next one is written at once.
    pub fn reset(&mut self) {
        self.last = None;
        self.held = 0;
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_of_the_rest() {
        let mut throttle = Throttle::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(
            throttle.line(at(0), "disk full").as_deref(),
            Some("disk full")
        );
        assert_eq!(throttle.line(at(1), "disk full"), None);
        assert_eq!(throttle.line(at(9), "disk full"), None);
        assert_eq!(
            throttle.line(at(10), "disk full").as_deref(),
            Some("disk full (and 2 more errors in the last 10 s)")
        );
        assert_eq!(throttle.line(at(11), "disk full"), None);
        throttle.reset();
        assert_eq!(throttle.line(at(12), "again").as_deref(), Some("again"));
    }
}
