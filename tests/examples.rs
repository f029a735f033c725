//! The bundled examples and the examples in every `journeyc explain` page.

mod support;

use journey_compiler::workspace::MemoryFiles;
use journey_compiler::Code;

#[test]
fn every_example_checks_clean() {
    let files = support::journey_files("examples");
    assert!(files.len() >= 13, "the examples are missing: {files:?}");
    let analysis = support::analyse(&files);
    assert!(
        analysis.diagnostics.is_empty(),
        "examples have diagnostics (warnings count too):\n{}",
        support::rendered_diagnostics(&analysis.workspace, &analysis.diagnostics)
    );
    let workspace = &analysis.workspace;
    let journeys = workspace
        .journey_files()
        .flat_map(|(_, m)| &m.items)
        .filter(|i| matches!(i, journey_compiler::ast::Item::Journey(_)))
        .count();
    assert!(
        journeys >= 15,
        "expected every use case as a journey, found {journeys}"
    );
}

#[test]
fn every_example_opens_with_a_comment_saying_what_it_does() {
    for path in support::journey_files("examples") {
        let text = std::fs::read_to_string(&path).expect("readable");
        assert!(
            text.starts_with("// "),
            "{} must open with a comment that says what it does",
            path.display()
        );
    }
}

/// Expands the markup explain pages use for what cannot be typed: `\xNN` for a raw byte and
/// `<<repeat N "text">>` for long runs.
fn expand(example: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = example;
    while !rest.is_empty() {
        if let Some(hex) = rest
            .strip_prefix("\\x")
            .filter(|r| r.len() >= 2 && r.is_char_boundary(2))
        {
            if let Ok(byte) = u8::from_str_radix(&hex[..2], 16) {
                out.push(byte);
                rest = &hex[2..];
                continue;
            }
        }
        if let Some(directive) = rest.strip_prefix("<<repeat ") {
            let end = directive.find(">>").expect("an unclosed <<repeat>>");
            let (count, text) = directive[..end]
                .split_once(' ')
                .expect("<<repeat N \"text\">>");
            let count: usize = count.parse().expect("a repeat count");
            let text = text.trim_matches('"');
            out.extend(text.repeat(count).into_bytes());
            rest = &directive[end + 2..];
            continue;
        }
        let c = rest.chars().next().expect("not empty");
        let mut buffer = [0; 4];
        out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The first ```journey block after the heading.
fn block_after<'a>(page: &'a str, heading: &str) -> &'a str {
    let section = page
        .split_once(heading)
        .unwrap_or_else(|| panic!("the page has no `{heading}`"))
        .1;
    let start = section.find("```journey\n").expect("a ```journey block") + "```journey\n".len();
    let end = section[start..].find("```").expect("a closed block");
    &section[start..start + end]
}

/// Checks an example as a file of its own. A first line `// file: NAME` names it; lines
/// `// NAME.json: TEXT` provide a JSON file beside it.
fn codes_reported(source: &str) -> Vec<Code> {
    let name = source
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("// file: "))
        .unwrap_or("example.journey")
        .to_string();
    let mut files = MemoryFiles::new();
    for line in source.lines() {
        if let Some((json_name, text)) = line
            .strip_prefix("// ")
            .and_then(|l| l.split_once(".json: "))
        {
            files.insert(format!("{json_name}.json"), text);
        }
    }
    files.insert(&name, expand(source));
    let analysis = journey_compiler::analyse(&files, &[name.into()]);
    analysis.diagnostics.iter().map(|d| d.code).collect()
}

#[test]
fn every_code_has_an_explain_page_whose_examples_hold() {
    for code in Code::ALL {
        let page = code.explanation();
        let title = format!("# {} {}\n", code.id(), code.name());
        assert!(
            page.starts_with(&title),
            "{code}: the page must start with `{title}`"
        );
        for section in ["## Why", "## Example", "## Fix"] {
            assert!(
                page.contains(section),
                "{code}: the page has no `{section}`"
            );
        }
        let reported = codes_reported(block_after(page, "## Example"));
        assert!(
            reported.contains(code),
            "{code}: its example reports {reported:?}, not {code}"
        );
        let fixed = codes_reported(block_after(page, "## Fix"));
        assert!(
            !fixed.contains(code),
            "{code}: its fix still reports {code}"
        );
    }
}

#[test]
fn codes_are_unique_and_well_formed() {
    let mut ids: Vec<&str> = Code::ALL.iter().map(|c| c.id()).collect();
    let mut names: Vec<&str> = Code::ALL.iter().map(|c| c.name()).collect();
    ids.dedup();
    names.sort();
    names.dedup();
    assert_eq!(
        ids.len(),
        Code::ALL.len(),
        "codes must be listed in id order, once each"
    );
    assert_eq!(names.len(), Code::ALL.len(), "names must be unique");
    for code in Code::ALL {
        assert!(code.id().len() == 5 && (code.id().starts_with('E') || code.id().starts_with('W')));
        assert!(code
            .name()
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        assert_eq!(Code::parse(code.id()), Some(*code));
        assert_eq!(Code::parse(code.name()), Some(*code));
    }
}

/// The name index of the examples: every name used has its declaration, and each kind of name
/// is declared (events, fields, profile fields, templates and parameters, segments, journeys,
/// labels, goals and exits, bindings) and all but labels (no example test names one) are used.
#[test]
fn every_name_in_the_examples_has_its_declaration() {
    use journey_compiler::index::{Index, Symbol};
    use std::collections::BTreeSet;
    let analysis = support::analyse(&support::journey_files("examples"));
    let program = analysis.program.as_ref().expect("the examples check");
    let index = Index::build(&analysis.workspace, program);
    let (mut declared, mut used) = (BTreeSet::new(), BTreeSet::new());
    for occurrence in &index.occurrences {
        let text = &analysis.workspace.sources.get(occurrence.file).text
            [occurrence.span.start as usize..occurrence.span.end as usize];
        assert!(
            index.declaration(&occurrence.symbol).is_some(),
            "`{text}` ({:?}) has no declaration",
            occurrence.symbol
        );
        let (kind, name) = match &occurrence.symbol {
            Symbol::Event(n) => ("event", n.as_str()),
            Symbol::EventField { field, .. } => ("event field", field.as_str()),
            Symbol::ProfileField(n) => ("profile field", n.as_str()),
            Symbol::Template(n) => ("template", n.as_str()),
            Symbol::TemplateParam { param, .. } => ("template parameter", param.as_str()),
            Symbol::Segment(n) => ("segment", n.as_str()),
            Symbol::Journey(n) => ("journey", n.as_str()),
            Symbol::Label { label, .. } => ("label", label.as_str()),
            Symbol::Outcome { name, .. } => ("goal or exit", name.as_str()),
            Symbol::Binding { name, .. } => ("binding", name.as_str()),
        };
        // The span covers exactly the name.
        assert_eq!(text, name, "{kind} at {:?}", occurrence.span);
        if occurrence.declaration {
            declared.insert(kind);
        } else {
            used.insert(kind);
        }
    }
    assert_eq!(declared.len(), 10, "declared: {declared:?}");
    assert_eq!(used.len(), 9, "used: {used:?}");
}
