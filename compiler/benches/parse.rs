//! Front-end throughput (parse, check) on a generated 10k-line workspace. Method and figures:
//! docs/performance.md.
//!
//! Prints the median of several timed runs after a warm-up, for the parser alone and for the
//! whole load (decode, split, parse, imports). Run with
//! `cargo bench -p journey-compiler --bench parse`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use journey_compiler::workspace::{self, MemoryFiles};
use journey_compiler::FileId;
use journey_compiler::{check, parse};

/// A schema plus as many journeys and tests (shaped like the examples) as it takes to reach
/// `lines` lines.
fn generate(lines: usize) -> String {
    let mut text = String::from(
        "// generated for the parse benchmark\n\
         event ProductAdded { product_id: string, cart_id: string, name: string, price: float, category: string? }\n\
         event OrderCompleted { order_id: string, cart_id: string, total: float, currency: \"USD\" | \"EUR\" | \"TRY\" }\n\
         event PageViewed { url: string, utm_source: string? }\n\
         profile { plan: \"free\" | \"trial\" | \"paid\", country: string, timezone: string?, tags: list<string>, points: int = 0 }\n\
         template cart_reminder: email { product_name: string, price: float? }\n\
         segment big_spender = count(OrderCompleted within 30d) >= 2\n",
    );
    let mut n = 0;
    while text.lines().count() < lines {
        n += 1;
        text.push_str(&format!(
            r#"
/// Generated journey number {n}.
journey cart_{n} {{
  title "Cart abandonment {n}"
  entry on ProductAdded as cart where cart.price > {n} unless OrderCompleted within 1h
  audience profile.country in ["US", "CA"] and profile.plan != "free" and not big_spender
  reentry after 7d
  correlate cart.cart_id
  goal purchased: OrderCompleted where cart_id == cart.cart_id and total >= cart.price * 0.5
  timeout 14d
  timezone profile.timezone ?? "America/New_York"
  quiet hours 21:00..09:00

  reminder: send cart_reminder {{ product_name: cart.name, price: cart.price }}
  wait 1d
  if did(PageViewed where utm_source == "ads" within 1d) {{
    send email "cart_reminder_engaged"
  }} else if count(ProductAdded within 7d) > 3 {{
    split {{ a: 50% {{ send push "a" }} b: 50% {{ }} }}
  }} else {{
    send destination "facebook_custom_audiences" {{ key: "cart_abandoners" }}
  }}
  wait for OrderCompleted as order where cart_id == cart.cart_id within 2d {{
    set profile.points = profile.points + len(order.order_id)
  }} timeout {{
    add "abandoner" to profile.tags
  }}
}}

test "buyer {n}" for cart_{n} {{
  profile {{ plan: "paid", country: "US", tags: [], points: 0 }}
  at 0s ProductAdded {{ product_id: "p1", cart_id: "c1", name: "Shoe", price: 20.0 }}
  at 30m OrderCompleted {{ order_id: "o1", cart_id: "c1", total: 20.0, currency: "USD" }}
  expect not entered
}}
"#
        ));
    }
    text
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn measure(runs: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm-up
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let text = generate(10_000);
    let lines = text.lines().count();
    let bytes = text.len();
    let runs = 21;

    let (module, diagnostics) = parse::parse(FileId(0), &text);
    assert!(
        diagnostics.is_empty(),
        "the generated workspace must parse cleanly"
    );
    let items = module.items.len();

    let one_thread = measure(runs, || {
        black_box(parse::parse_with_threads(FileId(0), black_box(&text), 1));
    });
    let parse_only = measure(runs, || {
        black_box(parse::parse(FileId(0), black_box(&text)));
    });
    let mut files = MemoryFiles::new();
    files.insert("bench.journey", text.clone());
    let whole_load = measure(runs, || {
        black_box(workspace::load(&files, &["bench.journey".into()]));
    });
    let loaded = workspace::load(&files, &["bench.journey".into()]);
    let (_, found) = check::check(&loaded);
    assert!(
        found.is_empty(),
        "the generated workspace must check cleanly; first of {}: {:?}",
        found.len(),
        found.first()
    );
    let check_only = measure(runs, || {
        black_box(check::check(black_box(&loaded)));
    });
    let pipeline = measure(runs, || {
        black_box(journey_compiler::analyse(&files, &["bench.journey".into()]));
    });

    println!("input: {lines} lines, {bytes} bytes, {items} items; median of {runs} runs");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (name, time) in [
        ("parse, 1 thread".to_string(), one_thread),
        (format!("parse, {threads} threads"), parse_only),
        (format!("load, {threads} threads"), whole_load),
        ("check alone".to_string(), check_only),
        (format!("parse + check, {threads} threads"), pipeline),
    ] {
        let seconds = time.as_secs_f64();
        println!(
            "{name:<26} {:>8.2} ms  {:>10.0} lines/s  {:>6.1} MB/s",
            seconds * 1e3,
            lines as f64 / seconds,
            bytes as f64 / seconds / 1e6
        );
    }
}
