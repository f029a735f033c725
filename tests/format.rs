//! `journeyc fmt`: each `tests/cases/format/*.journey` formatted (snapshots beside them), and
//! every fixture of the repository — examples and test cases — formatted twice: the first pass
//! keeps the tree (spans aside), the second changes nothing. The examples are formatted.

mod support;

use std::path::PathBuf;

use journey_compiler::format::{format_text, same_tree, FormatError};
use journey_compiler::parse;
use journey_compiler::source::FileId;

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path).expect("readable UTF-8")
}

/// The text of a fixture, unless it is not UTF-8 (broken on purpose).
fn text_of(path: &PathBuf) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

#[test]
fn format_cases() {
    insta::with_settings!({
        snapshot_path => "cases/format/snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::glob!("cases/format", "*.journey", |path| {
            let formatted = format_text(FileId(0), &read(&path.to_path_buf()))
                .expect("the case parses and formats");
            insta::assert_snapshot!(formatted);
        });
    });
}

/// Every `.journey` file below `examples/` and `tests/cases/` that parses.
fn fixtures() -> Vec<PathBuf> {
    let mut files = support::journey_files("examples");
    files.extend(support::journey_files("tests/cases"));
    files
}

#[test]
fn formatting_keeps_the_tree_and_is_a_fixed_point() {
    let mut formatted_files = 0;
    for path in fixtures() {
        let Some(text) = text_of(&path) else {
            continue;
        };
        let first = match format_text(FileId(0), &text) {
            Ok(first) => first,
            // Broken on purpose (parse cases): nothing to format.
            Err(FormatError::Syntax(_)) => continue,
            Err(FormatError::Unstable) => panic!("{}: formatting changes the tree", path.display()),
        };
        let (before, _) = parse::parse(FileId(0), &text);
        let (after, _) = parse::parse(FileId(0), &first);
        assert!(
            same_tree(&before, &after),
            "{}: the tree changed",
            path.display()
        );
        let second = format_text(FileId(0), &first).expect("formatted text parses");
        assert_eq!(
            first,
            second,
            "{}: a second pass changed it",
            path.display()
        );
        formatted_files += 1;
    }
    assert!(
        formatted_files > 60,
        "only {formatted_files} fixtures parse"
    );
}

#[test]
fn the_examples_are_formatted() {
    for path in support::journey_files("examples") {
        let text = read(&path);
        let formatted = format_text(FileId(0), &text).expect("examples parse");
        assert!(
            formatted == text,
            "{} is not formatted: run `journeyc fmt examples/`",
            path.display()
        );
    }
}

/// The tree comparison sees a real change: it is not vacuous.
#[test]
fn a_changed_tree_is_told_apart() {
    let (a, _) = parse::parse(FileId(0), "segment s = a and b\n");
    let (b, _) = parse::parse(FileId(0), "segment s = (a and b)\n");
    let (c, _) = parse::parse(FileId(0), "segment s = a or b\n");
    assert!(same_tree(&a, &b));
    assert!(!same_tree(&a, &c));
}
