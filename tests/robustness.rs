//! The parser never panics, never overflows the stack and always points inside the file:
//! thousands of mutated examples, and the pathological inputs named in the brief.

#[path = "support/rng.rs"]
mod rng;
mod support;

use journey_compiler::render::{self, Format};
use journey_compiler::workspace::{self, MemoryFiles, Workspace};
use journey_compiler::Code;
use rng::Rng;

const FRAGMENTS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "\"",
    "\\",
    "//",
    "///",
    ":",
    ",",
    "?",
    "??",
    "..",
    "=",
    "==",
    "<",
    "@",
    "@2026-",
    "1d",
    "15",
    "9:",
    "%",
    "wait",
    "wait for",
    "within",
    "entry",
    "journey j {",
    "test",
    "not",
    "and",
    "é",
    "😀",
    "\n",
    "\t",
    "\r\n",
    "\u{0}",
    "\u{feff}",
    "exit",
    "send email",
    "import \"x.journey\"",
    "profile.",
    ".",
    "-",
    "0.",
    "@2026-13-45T99:99:99Z",
    "\\u{",
    "is not",
];

fn mutate(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    if rng.below(2) == 0 {
        // A mild mutation that usually still parses: one letter of a name or keyword changes,
        // which exercises the checker rather than the parser.
        for _ in 0..8 {
            let at = rng.below(bytes.len());
            if bytes.get(at).is_some_and(u8::is_ascii_lowercase) {
                bytes[at] = b'a' + rng.below(26) as u8;
                break;
            }
        }
        return bytes;
    }
    for _ in 0..=rng.below(3) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            0 => {
                let end = (at + 1 + rng.below(40)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            1 => {
                let fragment = FRAGMENTS[rng.below(FRAGMENTS.len())].as_bytes();
                bytes.splice(at..at, fragment.iter().copied());
            }
            2 => {
                let end = (at + rng.below(80)).min(bytes.len());
                let copy = bytes[at.min(end)..end].to_vec();
                let to = rng.below(bytes.len() + 1);
                bytes.splice(to..to, copy);
            }
            3 if at < bytes.len() => bytes[at] = rng.next() as u8,
            4 => bytes.truncate(at),
            _ => {
                let depth = rng.below(200);
                let open = ["(", "[", "{"][rng.below(3)].repeat(depth);
                bytes.splice(at..at, open.into_bytes());
            }
        }
    }
    bytes
}

/// Checks every label points inside its file on character boundaries, and that every renderer
/// accepts the diagnostics.
fn assert_well_formed(workspace: &Workspace) {
    for diagnostic in &workspace.diagnostics {
        for label in &diagnostic.labels {
            let text = &workspace.sources.get(label.file).text;
            let (start, end) = (label.span.start as usize, label.span.end as usize);
            assert!(
                start <= end && end <= text.len(),
                "{diagnostic:?} is outside the file"
            );
            assert!(
                text.is_char_boundary(start) && text.is_char_boundary(end),
                "{diagnostic:?} splits a character"
            );
        }
    }
    for format in [Format::Human, Format::Json, Format::Github, Format::Sarif] {
        render::render(
            format,
            &workspace.sources,
            &workspace.diagnostics,
            &mut std::io::sink(),
            true,
        )
        .expect("rendering succeeds");
    }
}

fn load_bytes(bytes: Vec<u8>) -> Workspace {
    let mut files = MemoryFiles::new();
    files.insert("input.journey", bytes);
    workspace::load(&files, &["input.journey".into()])
}

/// Loads and, when it parses, checks; returns the workspace with every diagnostic.
fn analyse_bytes(bytes: Vec<u8>) -> Workspace {
    let mut files = MemoryFiles::new();
    files.insert("input.journey", bytes);
    let analysis = journey_compiler::analyse(&files, &["input.journey".into()]);
    let mut workspace = analysis.workspace;
    workspace.diagnostics = analysis.diagnostics;
    workspace
}

#[test]
fn thousands_of_mutated_examples_never_panic() {
    // Each example together with the shared schema, so that mutants which still parse exercise
    // the checker too; and every parse and check case.
    let read = |p: &std::path::PathBuf| std::fs::read(p).expect("readable");
    let schema = read(&support::repo_root().join("examples/shop.journey"));
    let mut originals: Vec<Vec<u8>> = support::journey_files("examples")
        .iter()
        .map(|p| [schema.clone(), read(p)].concat())
        .collect();
    for dir in ["tests/cases/parse", "tests/cases/check"] {
        originals.extend(support::journey_files(dir).iter().map(read));
    }
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let (mut with_errors, mut checked) = (0, 0);
    const MUTANTS: usize = 4000;
    for _ in 0..MUTANTS {
        let original = &originals[rng.below(originals.len())];
        let workspace = analyse_bytes(mutate(&mut rng, original));
        if workspace.has_errors() {
            with_errors += 1;
        }
        let parsed = !workspace
            .diagnostics
            .iter()
            .any(|d| d.is_error() && d.code.id() < "E0200");
        if parsed {
            checked += 1;
        }
        assert_well_formed(&workspace);
    }
    // The mutations must break things, and reach the checker, or this test proves nothing.
    assert!(
        with_errors > MUTANTS / 2,
        "only {with_errors} of {MUTANTS} mutants had errors"
    );
    assert!(
        checked > MUTANTS / 5,
        "only {checked} of {MUTANTS} mutants reached the checker"
    );
}

fn codes(workspace: &Workspace) -> Vec<Code> {
    workspace.diagnostics.iter().map(|d| d.code).collect()
}

#[test]
fn a_hundred_thousand_nested_parentheses() {
    // On one line (too long as well) and spread over lines.
    let text = format!(
        "segment s = {}true{}",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    let workspace = load_bytes(text.into_bytes());
    assert_eq!(
        codes(&workspace),
        vec![Code::InputTooLarge, Code::NestingTooDeep]
    );
    assert_well_formed(&workspace);
    let text = format!(
        "segment s = {}true{}",
        "(\n".repeat(100_000),
        ")\n".repeat(100_000)
    );
    assert_eq!(
        codes(&load_bytes(text.into_bytes())),
        vec![Code::NestingTooDeep]
    );
}

#[test]
fn a_hundred_thousand_nested_blocks_and_prefix_operators() {
    let blocks = format!(
        "journey j {{ entry manual {} }}",
        "if x {\n".repeat(100_000)
    );
    assert!(codes(&load_bytes(blocks.into_bytes())).contains(&Code::NestingTooDeep));

    let nots = format!("segment s = {}true", "not\n".repeat(100_000));
    assert_eq!(
        codes(&load_bytes(nots.into_bytes())),
        vec![Code::NestingTooDeep]
    );

    let negations = format!("segment s = {}1 > 0", "-\n".repeat(100_000));
    assert_eq!(
        codes(&load_bytes(negations.into_bytes())),
        vec![Code::NestingTooDeep]
    );
}

#[test]
fn a_long_chain_of_operators_is_bounded() {
    // 30k terms keeps each line under the line limit; the expression budget stops it.
    let terms = vec!["1"; 30_000].join(" +\n");
    let workspace = load_bytes(format!("segment s = {terms} > 0").into_bytes());
    assert_eq!(codes(&workspace), vec![Code::NestingTooDeep]);
}

#[test]
fn a_fifty_megabyte_line() {
    let text = format!(
        "segment s = \"{}\" == \"\"\nsegment t = wait\n",
        "a".repeat(50 << 20)
    );
    let workspace = load_bytes(text.into_bytes());
    assert_eq!(
        codes(&workspace),
        vec![Code::InputTooLarge, Code::SyntaxError]
    );
    // The human report names the line without echoing 50 MB.
    let mut out = Vec::new();
    render::render(
        Format::Human,
        &workspace.sources,
        &workspace.diagnostics,
        &mut out,
        false,
    )
    .expect("renders");
    assert!(out.len() < 4_000, "the report is {} bytes", out.len());
    assert!(String::from_utf8_lossy(&out).contains("input.journey:1:1"));
}

#[test]
fn invalid_utf8_names_line_and_column() {
    let workspace = load_bytes(b"segment a = true\nsegment b\xff = true\n".to_vec());
    assert_eq!(codes(&workspace), vec![Code::InvalidUtf8]);
    assert!(workspace.diagnostics[0]
        .message
        .contains("line 2, column 10"));
    assert_well_formed(&workspace);
}

#[test]
fn empty_and_whitespace_only_files_are_fine() {
    for text in ["", "\n\n", "// only a comment", "   \t  "] {
        assert!(
            codes(&load_bytes(text.as_bytes().to_vec())).is_empty(),
            "{text:?}"
        );
    }
}

#[test]
fn the_deepest_allowed_nesting_parses_on_a_small_stack() {
    // 63 blocks inside the journey's braces and 64 parentheses: just within the limit.
    let blocks = format!(
        "journey j {{\nentry manual\n{}wait 1d\n{}}}\nsegment s = {}true{}\n",
        "if x {\n".repeat(63),
        "}\n".repeat(63),
        "(".repeat(64),
        ")".repeat(64)
    );
    let parsed = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || codes(&load_bytes(blocks.into_bytes())))
        .expect("a thread")
        .join()
        .expect("no stack overflow");
    assert_eq!(parsed, vec![]);
}

#[test]
fn parallel_parsing_gives_the_same_result_as_one_thread() {
    use journey_compiler::{parse, FileId};
    let mut text = String::new();
    for n in 0..200 {
        text.push_str(&format!(
            "journey j{n} {{\n  entry manual\n  wait {}\n}}\n",
            if n % 7 == 0 { "15" } else { "1d" }
        ));
        text.push_str(&format!(
            "segment s{n} = (profile.points > {n}) and not did(A within 1d)\n"
        ));
    }
    let one = parse::parse_with_threads(FileId(0), &text, 1);
    let errors = one.1.len();
    assert_eq!(
        errors, 29,
        "every seventh journey has a duration without a unit"
    );
    for threads in [2, 3, 8] {
        let many = parse::parse_with_threads(FileId(0), &text, threads);
        assert_eq!(
            format!("{:?}", many),
            format!("{:?}", one),
            "{threads} threads"
        );
    }
}

#[test]
fn mutated_tracking_plans_never_panic() {
    let plan =
        std::fs::read(support::repo_root().join("tests/cases/check/plans/shop-tracking-plan.json"))
            .expect("the plan exists");
    let mut rng = Rng(0x7A5C_0001_BEEF_0002);
    let mut rejected = 0;
    const MUTANTS: usize = 1500;
    for _ in 0..MUTANTS {
        let mut files = MemoryFiles::new();
        files.insert("main.journey", "import schema \"plan.json\"\n");
        files.insert("plan.json", mutate(&mut rng, &plan));
        let analysis = journey_compiler::analyse(&files, &["main.journey".into()]);
        if analysis.diagnostics.iter().any(|d| d.is_error()) {
            rejected += 1;
        }
        let mut workspace = analysis.workspace;
        workspace.diagnostics = analysis.diagnostics;
        assert_well_formed(&workspace);
    }
    assert!(
        rejected > MUTANTS / 4,
        "only {rejected} of {MUTANTS} mutated plans were rejected"
    );
}
