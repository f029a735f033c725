//! `journey-lsp` end to end: the built binary over stdio, spoken to by a JSON-RPC client with
//! the protocol's framing (`Content-Length` headers).

#[path = "support/lsp_client.rs"]
mod lsp_client;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use lsp_client::Client;

fn start() -> Client {
    Client::start(env!("CARGO_BIN_EXE_journey-lsp"))
}

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// A fresh folder with the files given.
fn workspace(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("journey-lsp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (file, text) in files {
        std::fs::write(dir.join(file), text).expect("written");
    }
    std::fs::canonicalize(&dir).expect("canonical")
}

/// Opens `text` as version 1 of the document `file`.
fn open(client: &mut Client, file: &str, text: &str) {
    client.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": file, "languageId": "journey", "version": 1, "text": text } }),
    );
}

fn initialize(client: &mut Client, folder: &Path) {
    let result = client.request(
        "initialize",
        json!({
            "processId": null,
            "capabilities": {},
            "workspaceFolders": [{ "uri": uri(folder), "name": "w" }],
        }),
    );
    assert_eq!(result["capabilities"]["documentFormattingProvider"], true);
    client.notify("initialized", json!({}));
}

/// A server on a fresh folder of `schema.journey` and `j.journey`: the client and the two
/// files' URIs.
fn serve_schema_and_journey(name: &str, schema: &str, journey: &str) -> (Client, String, String) {
    let folder = workspace(name, &[("schema.journey", schema), ("j.journey", journey)]);
    let mut client = start();
    initialize(&mut client, &folder);
    let schema_uri = uri(&folder.join("schema.journey"));
    (client, schema_uri, uri(&folder.join("j.journey")))
}

/// The parameters of a request at `line`, `character` of `file`.
fn position(file: &str, line: u32, character: u32) -> Value {
    json!({ "textDocument": { "uri": file }, "position": { "line": line, "character": character } })
}

/// Asserts that go-to-definition at `params` lands in `uri` at (`line`, `character`).
fn assert_definition(client: &mut Client, params: Value, uri: &str, line: u32, character: u32) {
    let definition = client.request("textDocument/definition", params);
    assert_eq!(definition["uri"], uri, "{definition}");
    assert_eq!(
        definition["range"]["start"],
        json!({ "line": line, "character": character }),
        "{definition}"
    );
}

/// The error message of a rename to `new_name` at `params` that the server refuses.
fn refused_rename(client: &mut Client, mut params: Value, new_name: &str) -> String {
    params["newName"] = json!(new_name);
    let refused = client.answer("textDocument/rename", params);
    refused["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("the rename should be refused: {refused}"))
        .to_string()
}

/// How many references `textDocument/references` finds at `params`.
fn reference_count(client: &mut Client, mut params: Value, include_declaration: bool) -> usize {
    params["context"] = json!({ "includeDeclaration": include_declaration });
    let references = client.request("textDocument/references", params);
    references
        .as_array()
        .map(Vec::len)
        .unwrap_or_else(|| panic!("references: {references}"))
}

const SCHEMA: &str = "event Seen { page: string }\n";

/// Diagnostics come for the files on disk at start, at the right UTF-16 column past non-ASCII
/// text; an open buffer then wins over the disk, and an older version never wins over a newer.
#[test]
fn diagnostics_follow_the_buffers_newest_version() {
    // `é` and `😀` are one and two UTF-16 units: the unknown name `Sen` starts at UTF-16
    // column 41 (character 40, byte 44).
    let broken = "journey j { entry on Seen where \"é😀\" == Sen }\n";
    let folder = workspace(
        "diagnostics",
        &[("schema.journey", SCHEMA), ("j.journey", broken)],
    );
    let file = uri(&folder.join("j.journey"));
    let mut client = start();
    initialize(&mut client, &folder);

    let published = client.diagnostics_for(&file);
    let diagnostics = published["diagnostics"].as_array().expect("a list");
    assert_eq!(diagnostics.len(), 1, "{published}");
    assert_eq!(diagnostics[0]["code"], "E0205");
    let start = &diagnostics[0]["range"]["start"];
    assert_eq!(
        (start["line"].clone(), start["character"].clone()),
        (json!(0), json!(41))
    );

    // The fixed text, unsaved: the buffer wins.
    let fixed = "journey j { entry on Seen where page == \"é😀\" }\n";
    open(&mut client, &file, fixed);
    let published = client.diagnostics_for(&file);
    assert_eq!(published["diagnostics"], json!([]), "{published}");
    assert_eq!(published["version"], 1);

    // Version 3 breaks it; version 2 arrives late and is ignored.
    let change = |version: i64, text: &str| {
        json!({
            "textDocument": { "uri": file, "version": version },
            "contentChanges": [{ "text": text }],
        })
    };
    client.notify(
        "textDocument/didChange",
        change(3, "journey j { entry on Nope }\n"),
    );
    let published = client.diagnostics_for(&file);
    assert_eq!(published["version"], 3);
    assert_eq!(published["diagnostics"][0]["code"], "E0202", "{published}");
    client.notify("textDocument/didChange", change(2, fixed));
    let symbols = client.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": file } }),
    );
    assert_eq!(symbols[0]["name"], "j");
    assert!(
        !client
            .notifications
            .iter()
            .any(|m| m["params"]["version"] == 2),
        "the stale version was analysed"
    );
    client.stop();
}

/// Formatting answers with the canonical text; the outline lists declarations and steps, even
/// while another item of the file has a syntax error.
#[test]
fn formatting_and_outline() {
    let messy = "event   Seen{page:string}\njourney j { entry on Seen\n  first: wait 1d\n  if page == \"/\" { send email \"x\" } }\njourney broken { entry on }\n";
    let folder = workspace("format", &[("j.journey", messy)]);
    let file = uri(&folder.join("j.journey"));
    let mut client = start();
    initialize(&mut client, &folder);
    open(&mut client, &file, messy);

    // The outline while `broken` does not parse: the event and `j` with its steps.
    let symbols = client.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": file } }),
    );
    let names: Vec<&str> = symbols
        .as_array()
        .expect("symbols")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["Seen", "j"], "{symbols}");
    let steps: Vec<&str> = symbols[1]["children"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(steps, ["first", "if_2", "send_3"]);
    assert_eq!(symbols[0]["children"][0]["name"], "page");

    // A file with a syntax error is not formatted.
    let none = client.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": file }, "options": { "tabSize": 2, "insertSpaces": true } }),
    );
    assert_eq!(none, Value::Null);

    let fixed = messy.replace("journey broken { entry on }\n", "");
    client.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": file, "version": 2 }, "contentChanges": [{ "text": fixed }] }),
    );
    let edits = client.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": file }, "options": { "tabSize": 2, "insertSpaces": true } }),
    );
    assert_eq!(edits.as_array().map(Vec::len), Some(1), "{edits}");
    assert_eq!(
        edits[0]["newText"],
        "event Seen { page: string }\njourney j {\n  entry on Seen\n\n  first: wait 1d\n  if page == \"/\" {\n    send email \"x\"\n  }\n}\n"
    );
    assert_eq!(
        edits[0]["range"]["start"],
        json!({ "line": 0, "character": 0 })
    );
    client.stop();
}

/// Each step shows when it can be reached after entry (never later than the timeout);
/// declarations and blocks fold.
#[test]
fn inlay_hints_give_step_timing_and_blocks_fold() {
    let text = "event Seen { page: string }\njourney j {\n  entry on Seen\n  timeout 3d\n\n  wait 1d\n  wait 1h\n  if page == \"/\" {\n    wait for Seen within 2d\n  }\n  send email \"x\"\n}\n";
    let folder = workspace("hints", &[("j.journey", text)]);
    let file = uri(&folder.join("j.journey"));
    let mut client = start();
    initialize(&mut client, &folder);
    open(&mut client, &file, text);
    let _ = client.diagnostics_for(&file);
    let hints = client.request(
        "textDocument/inlayHint",
        json!({
            "textDocument": { "uri": file },
            "range": { "start": { "line": 0, "character": 0 }, "end": { "line": 20, "character": 0 } },
        }),
    );
    let shown: Vec<(u64, String)> = hints
        .as_array()
        .expect("hints")
        .iter()
        .map(|h| {
            (
                h["position"]["line"].as_u64().unwrap_or(99),
                h["label"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (5, "+0s".to_string()),
            (6, "+1d".to_string()),
            (7, "+1d 1h".to_string()),
            (8, "+1d 1h".to_string()),
            (10, "+1d 1h .. +3d".to_string()),
        ],
        "{hints}"
    );
    let folds = client.request(
        "textDocument/foldingRange",
        json!({ "textDocument": { "uri": file } }),
    );
    let lines: Vec<(u64, u64)> = folds
        .as_array()
        .expect("folds")
        .iter()
        .map(|f| {
            (
                f["startLine"].as_u64().unwrap_or(0),
                f["endLine"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(lines, [(1, 11), (7, 9)]);
    client.stop();
}

/// Go to definition across files, references of a binding, rename across files (refusing a
/// reserved word), hover on names and on expressions.
#[test]
fn navigation_rename_and_hover() {
    let schema = "/// Someone looked at a page.\nevent Seen { page: string }\nprofile { visits: int = 0 }\ntemplate note: email { text: string }\n";
    let journey = "/// Greets visitors.\njourney j {\n  entry on Seen as s where s.page == \"/\"\n\n  send note { text: s.page }\n  set profile.visits = profile.visits + 1\n  wait 1d12h\n}\n";
    let (mut client, schema_uri, file) = serve_schema_and_journey("navigate", schema, journey);
    let at = |line, character| position(&file, line, character);

    // `Seen` in `entry on Seen` → its declaration in the other file.
    assert_definition(&mut client, at(2, 12), &schema_uri, 1, 6);

    // The binding `s`: declared once, read twice.
    assert_eq!(reference_count(&mut client, at(2, 20), false), 2);

    // Renaming the template from its use renames its declaration too.
    let mut params = at(4, 8);
    params["newName"] = json!("memo");
    let edit = client.request("textDocument/rename", params);
    let changes = &edit["changes"];
    assert_eq!(changes[&file][0]["newText"], "memo", "{edit}");
    assert_eq!(
        changes[&schema_uri][0]["range"]["start"],
        json!({ "line": 3, "character": 9 })
    );
    let refused = refused_rename(&mut client, at(4, 8), "journey");
    assert!(refused.contains("reserved"), "{refused}");

    // Hover: a profile field's type, an event with its doc, an expression's type.
    let hover = client.request("textDocument/hover", at(5, 16));
    let text = hover["contents"]["value"].as_str().unwrap_or("");
    assert!(text.contains("profile.visits: int"), "{hover}");
    let hover = client.request("textDocument/hover", at(2, 12));
    let text = hover["contents"]["value"].as_str().unwrap_or("");
    assert!(
        text.contains("event Seen") && text.contains("Someone looked at a page."),
        "{hover}"
    );
    let hover = client.request("textDocument/hover", at(5, 38));
    let text = hover["contents"]["value"].as_str().unwrap_or("");
    assert!(text.contains("int"), "{hover}");
    // A duration in words; a step's timing.
    let hover = client.request("textDocument/hover", at(6, 8));
    let text = hover["contents"]["value"].as_str().unwrap_or("");
    assert!(text.contains("1 day 12 hours"), "{hover}");
    let hover = client.request("textDocument/hover", at(4, 4));
    let text = hover["contents"]["value"].as_str().unwrap_or("");
    assert!(
        text.contains("step `send_1`: reached +0s .. +0s"),
        "{hover}"
    );
    client.stop();
}

/// While one journey of a file has a syntax error (since the server started), the declarations
/// that parse can still be navigated, hovered, completed and hinted (but not renamed: the uses
/// in the broken journey would be missed), and the file reports only the syntax error (nothing
/// that names the broken journey is reported unknown).
#[test]
fn navigation_while_a_file_does_not_parse() {
    let schema = "/// Someone looked at a page.\nevent Seen { page: string }\n";
    let text = "journey broken {\n  entry on Seen where page ==\n}\n\njourney ok {\n  entry on Seen as v where v.page == \"/\"\n  start broken\n  wait 1d\n}\n";
    let (mut client, schema_uri, file) = serve_schema_and_journey("partial", schema, text);
    let published = client.diagnostics_for(&file);
    let diagnostics = published["diagnostics"].as_array().expect("a list");
    assert_eq!(diagnostics.len(), 1, "{published}");
    assert_eq!(diagnostics[0]["code"], "E0101", "{published}");

    let at = |line, character| position(&file, line, character);
    // `Seen` in the journey that parses → its declaration in the other file.
    assert_definition(&mut client, at(5, 12), &schema_uri, 1, 6);
    // The binding `v`: declared once, read once.
    assert_eq!(reference_count(&mut client, at(5, 20), true), 2);
    let hover = client.request("textDocument/hover", at(5, 12));
    let hover_text = hover["contents"]["value"].as_str().unwrap_or("");
    assert!(hover_text.contains("Someone looked at a page."), "{hover}");
    // A rename would miss the uses inside the journey that does not parse: refused.
    let refused = refused_rename(&mut client, at(5, 12), "Viewed");
    assert!(refused.contains("syntax error"), "{refused}");
    // Nothing is found inside the journey that does not parse.
    let inside = client.request("textDocument/definition", at(1, 12));
    assert_eq!(inside, Value::Null, "{inside}");
    // The journey that parses shows its steps' timing.
    let hints = client.request(
        "textDocument/inlayHint",
        json!({
            "textDocument": { "uri": file },
            "range": { "start": { "line": 0, "character": 0 }, "end": { "line": 9, "character": 0 } },
        }),
    );
    let shown: Vec<(u64, &str)> = hints
        .as_array()
        .expect("hints")
        .iter()
        .map(|h| {
            (
                h["position"]["line"].as_u64().unwrap_or(99),
                h["label"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(shown, [(6, "+0s"), (7, "+0s")], "{hints}");
    // No analysis ever had every file parse; completion takes the names that parse now.
    let events = client.request("textDocument/completion", at(1, 11));
    assert_eq!(events[0]["label"], "Seen", "{events}");
    client.stop();
}

/// Completion while the file is being typed (it does not parse): event names after `on`, from
/// the last analysis in which the files parsed; profile fields after `profile.`.
#[test]
fn completion_while_typing() {
    let schema = "event Seen { page: string }\nevent Bought { total: float }\nprofile { plan: \"free\" | \"pro\" = \"free\" }\n";
    let good = "journey j {\n  entry manual\n  send email \"x\"\n}\n";
    let folder = workspace(
        "complete",
        &[("schema.journey", schema), ("j.journey", good)],
    );
    let file = uri(&folder.join("j.journey"));
    let mut client = start();
    initialize(&mut client, &folder);
    open(&mut client, &file, good);
    let typing = "journey j {\n  entry on \n  audience profile.\n}\n";
    client.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": file, "version": 2 }, "contentChanges": [{ "text": typing }] }),
    );
    let labels = |result: &Value| -> Vec<String> {
        let items = result
            .as_array()
            .or(result["items"].as_array())
            .cloned()
            .unwrap_or_default();
        items
            .iter()
            .filter_map(|i| i["label"].as_str().map(String::from))
            .collect()
    };
    let events = client.request(
        "textDocument/completion",
        json!({ "textDocument": { "uri": file }, "position": { "line": 1, "character": 11 } }),
    );
    assert_eq!(labels(&events), ["Bought", "Seen"], "{events}");
    let fields = client.request(
        "textDocument/completion",
        json!({ "textDocument": { "uri": file }, "position": { "line": 2, "character": 19 } }),
    );
    assert_eq!(labels(&fields), ["plan"], "{fields}");
    client.stop();
}

/// Quick fixes: a did-you-mean replacement, a missing `within`, missing template arguments.
#[test]
fn quick_fixes() {
    let text = "event Seen { page: string }\ntemplate note: email { text: string, n: int }\njourney j {\n  entry on Sen\n  wait for Seen\n  send note { text: \"hi\" }\n}\n";
    let folder = workspace("fixes", &[("j.journey", text)]);
    let file = uri(&folder.join("j.journey"));
    let mut client = start();
    initialize(&mut client, &folder);
    let titles_and_edits = |client: &mut Client, line: u32| -> Vec<(String, String)> {
        let actions = client.request(
            "textDocument/codeAction",
            json!({
                "textDocument": { "uri": file },
                "range": { "start": { "line": line, "character": 0 }, "end": { "line": line, "character": 40 } },
                "context": { "diagnostics": [] },
            }),
        );
        actions
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|a| {
                (
                    a["title"].as_str().unwrap_or("").to_string(),
                    a["edit"]["changes"][&file][0]["newText"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        titles_and_edits(&mut client, 3),
        [("replace with `Seen`".to_string(), "Seen".to_string())]
    );
    assert_eq!(
        titles_and_edits(&mut client, 4),
        [("add `within 1d`".to_string(), " within 1d".to_string())]
    );
    assert_eq!(
        titles_and_edits(&mut client, 5),
        [("fill in `n: int`".to_string(), ", n: 0".to_string())]
    );
    client.stop();
}

/// Hundreds of random edits (inserting and deleting characters, some outside ASCII, anywhere)
/// each followed by requests at random positions: every request is answered without an
/// error, and the server shuts down cleanly.
#[test]
fn random_edit_sequences_never_break_the_server() {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cart_abandonment.journey"),
    )
    .expect("an example");
    let shop = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/shop.journey"),
    )
    .expect("the schema");
    let folder = workspace(
        "random",
        &[("shop.journey", &shop), ("cart.journey", &example)],
    );
    let file = uri(&folder.join("cart.journey"));
    let mut client = start();
    initialize(&mut client, &folder);
    open(&mut client, &file, &example);
    let mut text: Vec<char> = example.chars().collect();
    let mut seed: u64 = 0x5EED_1234;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n.max(1) as u64) as usize
    };
    let pieces = [
        "{", "}", "\"", "é", "😀", " ", "\n", "where ", "wait ", ".", "1d", "profile.", "(", "//",
    ];
    for version in 2..260 {
        let at = next(text.len() + 1);
        if next(3) == 0 && !text.is_empty() {
            let end = (at + next(8)).min(text.len());
            text.drain(at.min(end)..end);
        } else {
            let piece = pieces[next(pieces.len())];
            for (i, c) in piece.chars().enumerate() {
                text.insert(at.min(text.len()) + i, c);
            }
        }
        let current: String = text.iter().collect();
        client.notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": file, "version": version }, "contentChanges": [{ "text": current }] }),
        );
        let lines = current.lines().count().max(1);
        let position = json!({ "line": next(lines + 2), "character": next(90) });
        let method = [
            "textDocument/hover",
            "textDocument/completion",
            "textDocument/definition",
            "textDocument/documentSymbol",
            "textDocument/formatting",
            "textDocument/foldingRange",
            "textDocument/semanticTokens/full",
            "textDocument/inlayHint",
        ][next(8)];
        let params = json!({
            "textDocument": { "uri": file },
            "position": position,
            "options": { "tabSize": 2, "insertSpaces": true },
            "range": { "start": { "line": 0, "character": 0 }, "end": position },
        });
        // `request` asserts the answer is not an error.
        client.request(method, params);
    }
    client.stop();
}

/// Semantic tokens: each decoded token has the type its text calls for.
#[test]
fn semantic_tokens_tell_names_apart() {
    let text = "// a note\nevent Seen { page: string }\nsegment home = did(Seen where page == \"/\")\njourney j {\n  entry on Seen as s\n  wait 1d\n  first: send email \"x\"\n}\n";
    let folder = workspace("tokens", &[("j.journey", text)]);
    let file = uri(&folder.join("j.journey"));
    let mut client = start();
    let result = client.request(
        "initialize",
        json!({ "processId": null, "capabilities": {}, "workspaceFolders": [{ "uri": uri(&folder), "name": "w" }] }),
    );
    let legend: Vec<String> = result["capabilities"]["semanticTokensProvider"]["legend"]
        ["tokenTypes"]
        .as_array()
        .expect("a legend")
        .iter()
        .filter_map(|t| t.as_str().map(String::from))
        .collect();
    client.notify("initialized", json!({}));
    let tokens = client.request(
        "textDocument/semanticTokens/full",
        json!({ "textDocument": { "uri": file } }),
    );
    let data: Vec<u64> = tokens["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    // Decode (delta line, delta start, length, type, modifiers) into (text, type name).
    let lines: Vec<&str> = text.lines().collect();
    let (mut line, mut column) = (0usize, 0usize);
    let mut decoded = Vec::new();
    for token in data.chunks(5) {
        line += token[0] as usize;
        column = if token[0] == 0 {
            column + token[1] as usize
        } else {
            token[1] as usize
        };
        let word: String = lines[line]
            .chars()
            .skip(column)
            .take(token[2] as usize)
            .collect();
        decoded.push((word, legend[token[3] as usize].clone()));
    }
    let has = |word: &str, kind: &str| decoded.iter().any(|(w, k)| w == word && k == kind);
    assert!(has("// a note", "comment"), "{decoded:?}");
    assert!(has("event", "keyword") && has("Seen", "event") && has("page", "property"));
    assert!(has("home", "variable") && has("\"/\"", "string") && has("1d", "number"));
    assert!(has("j", "class") && has("s", "parameter") && has("first", "function"));
    client.stop();
}

/// Diagnostics follow imports: an unsaved change to an imported file (outside the workspace
/// folder) shows up as an error in the file that imports it.
#[test]
fn diagnostics_follow_imports_and_their_unsaved_buffers() {
    let shared = workspace(
        "imported",
        &[("schema.journey", "event Seen { page: string }\n")],
    );
    let importer = format!(
        "import \"{}\"\njourney j {{ entry on Seen }}\n",
        shared.join("schema.journey").display()
    );
    let folder = workspace("importer", &[("j.journey", &importer)]);
    let (file, schema) = (
        uri(&folder.join("j.journey")),
        uri(&shared.join("schema.journey")),
    );
    let mut client = start();
    initialize(&mut client, &folder);
    // Renaming the event in the imported buffer, unsaved, breaks the importer.
    open(&mut client, &schema, "event Viewed { page: string }\n");
    let published = client.diagnostics_for(&file);
    assert_eq!(published["diagnostics"][0]["code"], "E0202", "{published}");
    assert!(published["diagnostics"][0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("Seen")));
    client.stop();
}
