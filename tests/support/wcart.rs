//! W-cart's workload, shared by the engine's bench (`compiler/benches/wcart.rs`), its floor
//! (`compiler/benches/wcart_floor.rs`) and the service's (`runtime/service/benches/ingest.rs`):
//! the journeys it runs and the events it tracks. The engine's benches push the events' decoded
//! values (`Tracked::fields`); the service's renders the same values as JSON for HTTP.

use std::path::{Path, PathBuf};

use journey_runtime::value::Value;

#[path = "rng.rs"]
pub mod rng;

use rng::Rng;

/// The shop's schema and W-cart's five journeys, as `examples/` files under `root`.
pub fn files(root: &Path) -> Vec<PathBuf> {
    [
        "shop",
        "cart_abandonment",
        "winback",
        "onboarding",
        "trial_to_paid",
        "post_purchase",
    ]
    .iter()
    .map(|f| root.join("examples").join(format!("{f}.journey")))
    .collect()
}

/// W-cart's journeys (`files`) compiled.
pub fn program(root: &Path) -> journey_runtime::bytecode::Program {
    let analysis =
        journey_compiler::analyse(&journey_compiler::workspace::FileSystem, &files(root));
    journey_compiler::lower::lower(
        &analysis.workspace,
        analysis.program.as_ref().expect("the examples check"),
    )
}

/// A bench's numeric setting: the environment variable `name`, or `default` when it is unset
/// or not a number.
pub fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The first moment of the stream: 2026-01-01T00:00:00Z, in milliseconds.
pub const START_MS: i64 = 1_767_225_600_000;

/// The stream spans 30 days of event time.
pub const SPAN_MS: i64 = 30 * 86_400_000;

/// What a tracked event is: 60% ProductAdded, 30% PageViewed (a third of them from ads), 10%
/// OrderCompleted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Added { price: f64 },
    Viewed { from_ads: bool },
    Completed,
}

/// One tracked event: the `index`-th of the stream, of user `u{rank}`, at `at_ms`, for the
/// cart `c{rank}-{cart}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tracked {
    pub index: usize,
    pub rank: usize,
    pub at_ms: i64,
    pub cart: usize,
    pub kind: Kind,
}

/// `events` tracked events of `users` users, spread evenly over `SPAN_MS`; the user is drawn
/// from a Zipf-like (log-uniform rank) distribution, so a few users are very active. The same
/// arguments give the same stream.
pub fn stream(users: usize, events: usize) -> impl Iterator<Item = Tracked> {
    let mut rng = Rng(0x5EED_CA27);
    let step = (SPAN_MS / events.max(1) as i64).max(1);
    (0..events).map(move |index| {
        let rank = ((users as f64).powf(rng.unit()) as usize).min(users) - 1;
        let kind = match rng.next() % 10 {
            0..=5 => Kind::Added {
                price: 5.0 + (rng.next() % 9500) as f64 / 100.0,
            },
            k @ 6..=8 => Kind::Viewed { from_ads: k == 8 },
            _ => Kind::Completed,
        };
        Tracked {
            index,
            rank,
            at_ms: START_MS + index as i64 * step,
            cart: index / 50_000,
            kind,
        }
    })
}

impl Tracked {
    /// The event's fields decoded, in the order of the shop schema's fields (the engine's
    /// benches push these; the service's renders the same values as JSON). `currency` is the
    /// one currency of every order, shared.
    #[allow(dead_code)]
    pub fn fields(&self, currency: &Value) -> Vec<Value> {
        let cart = Value::str(&format!("c{}-{}", self.rank, self.cart));
        match self.kind {
            Kind::Added { price } => vec![
                Value::str("p1"),
                cart,
                Value::str("Shoe"),
                Value::Float(price),
                Value::Record(vec![Value::str("s1"), Value::Absent].into()),
            ],
            Kind::Viewed { from_ads } => vec![
                Value::str("/shop"),
                if from_ads {
                    Value::str("ads")
                } else {
                    Value::Absent
                },
            ],
            Kind::Completed => vec![
                Value::str(&format!("o{}", self.index)),
                cart,
                Value::Float(20.0),
                currency.clone(),
            ],
        }
    }
}
