//! Language-server latency on a 10k-line workspace: keystroke → diagnostics, and completion.
//! Method and figures: docs/performance.md. Run with `cargo bench -p journey-lsp --bench latency`.
//!
//! The built server runs as an editor would run it (stdio, JSON-RPC framing). The workspace is
//! 20 files of about 500 lines (a schema and journeys shaped like the examples). One file is
//! open; each keystroke is a full-text change of it, timed from sending the change to receiving
//! the diagnostics published for that version (the file keeps one warning, so every analysis
//! publishes). Completion is timed from request to response at several kinds of position.

#[path = "../../tests/support/lsp_client.rs"]
mod lsp_client;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use lsp_client::Client;

const FILES: usize = 20;
const KEYSTROKES: usize = 60;
const COMPLETIONS: usize = 60;

fn journeys(file: usize, lines: usize) -> String {
    let mut text = String::new();
    let mut n = 0;
    while text.lines().count() < lines {
        n += 1;
        text.push_str(&format!(
            r#"
/// Generated journey {file}.{n}.
journey cart_{file}_{n} {{
  entry on ProductAdded as cart where cart.price > {n} unless OrderCompleted within 1h
  audience profile.country in ["US", "CA"] and profile.plan != "free" and not big_spender
  reentry after 7d
  correlate cart.cart_id
  goal purchased: OrderCompleted where cart_id == cart.cart_id
  timeout 14d
  timezone profile.timezone ?? "America/New_York"
  quiet hours 21:00..09:00

  reminder: send cart_reminder {{ product_name: cart.name, price: cart.price }}
  wait 1d
  if did(PageViewed where utm_source == "ads" within 1d) {{
    send email "cart_reminder_engaged"
  }} else {{
    send destination "facebook_custom_audiences" {{ key: "cart_abandoners" }}
  }}
  wait for OrderCompleted as order where cart_id == cart.cart_id within 2d {{
    set profile.points = profile.points + 1
  }} timeout {{
    add "abandoner" to profile.tags
  }}
}}
"#
        ));
    }
    text
}

const SCHEMA: &str = "event ProductAdded { product_id: string, cart_id: string, name: string, price: float }\n\
event OrderCompleted { order_id: string, cart_id: string, total: float }\n\
event PageViewed { url: string, utm_source: string? }\n\
profile { plan: \"free\" | \"trial\" | \"paid\", country: string, timezone: string?, tags: list<string> = [], points: int = 0 }\n\
template cart_reminder: email { product_name: string, price: float? }\n\
segment big_spender = count(OrderCompleted within 30d) >= 2\n";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "{what}: n={}, p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.95).as_secs_f64() * 1e3,
        times.last().map_or(0.0, |t| t.as_secs_f64() * 1e3)
    );
}

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

fn main() {
    let dir = std::env::temp_dir().join(format!("journey-lsp-latency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let dir = std::fs::canonicalize(&dir).expect("canonical");
    std::fs::write(dir.join("schema.journey"), SCHEMA).expect("written");
    let mut total_lines = SCHEMA.lines().count();
    for file in 0..FILES {
        let text = journeys(file, 500);
        total_lines += text.lines().count();
        std::fs::write(dir.join(format!("j{file:02}.journey")), text).expect("written");
    }
    // The open file keeps a warning (an unused binding) so that each analysis publishes it.
    let open_path = dir.join("j00.journey");
    let base = std::fs::read_to_string(&open_path).expect("read")
        + "\njourney edited { entry on PageViewed as unused\n  send email \"x\" // 0\n}\n";
    let file = uri(&open_path);

    let mut client = Client::start(env!("CARGO_BIN_EXE_journey-lsp"));
    client.request(
        "initialize",
        json!({ "processId": null, "capabilities": {}, "workspaceFolders": [{ "uri": uri(&dir), "name": "w" }] }),
    );
    client.notify("initialized", json!({}));
    client.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": file, "languageId": "journey", "version": 1, "text": base } }),
    );
    let _ = client.diagnostics_for(&file);

    // Keystrokes: the comment on the edited journey's send grows a character at a time.
    let mut keystrokes = Vec::new();
    let mut text = base.clone();
    for version in 2..(2 + KEYSTROKES as i64) {
        text = text.replacen(" // ", " // x", 1);
        let started = Instant::now();
        client.notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": file, "version": version }, "contentChanges": [{ "text": text }] }),
        );
        loop {
            let published = client.diagnostics_for(&file);
            if published["version"] == json!(version) {
                break;
            }
        }
        keystrokes.push(started.elapsed());
    }

    // Completions at several kinds of position in the open file.
    let lines = text.lines().count() as u32;
    let positions = [
        (lines - 3, 23), // after `entry on ` of the edited journey: events
        (5, 14),         // `audience profile.`: profile fields
        (4, 50),         // inside a `where`: event fields
        (lines - 2, 2),  // the start of a step: keywords
    ];
    let mut completions = Vec::new();
    for i in 0..COMPLETIONS {
        let (line, character) = positions[i % positions.len()];
        let started = Instant::now();
        let result = client.request(
            "textDocument/completion",
            json!({ "textDocument": { "uri": file }, "position": { "line": line, "character": character } }),
        );
        completions.push(started.elapsed());
        assert!(result.is_array(), "{result}");
    }
    client.stop();
    let _ = std::fs::remove_dir_all(&dir);

    println!("workspace: {} files, {total_lines} lines", FILES + 1);
    report("keystroke -> diagnostics", keystrokes);
    report("completion", completions);
}
