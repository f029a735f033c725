//! Data-driven tests. Every `tests/cases/parse/*.journey` is parsed and every
//! `tests/cases/check/*.journey` is checked; the snapshot beside each holds the rendered
//! diagnostics (parse cases without any: the AST; check cases without errors: the summary of
//! what the compiler proved). Add a case by dropping a file in the folder and running
//! `INSTA_UPDATE=always cargo test --test cases` (or `cargo insta review`).

mod support;

use std::path::Path;

use journey_compiler::render;
use journey_compiler::Code;

fn parse_case(path: &Path) -> String {
    let workspace = support::load(&[path.to_path_buf()]);
    if workspace.diagnostics.is_empty() {
        let modules: Vec<_> = workspace.journey_files().map(|(_, m)| m).collect();
        format!("{modules:#?}\n")
    } else {
        support::human(&workspace)
    }
}

fn check_case(path: &Path) -> String {
    let analysis = support::analyse(&[path.to_path_buf()]);
    let mut out = support::rendered_diagnostics(&analysis.workspace, &analysis.diagnostics);
    if let Some(program) = &analysis.program {
        if !analysis.diagnostics.iter().any(|d| d.is_error()) {
            out.push_str(&render::summary(&analysis.workspace.sources, program));
        }
    }
    out
}

#[test]
fn parse_cases() {
    insta::with_settings!({
        snapshot_path => "cases/parse/snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::glob!("cases/parse", "*.journey", |path| {
            insta::assert_snapshot!(parse_case(path));
        });
    });
}

#[test]
fn check_cases() {
    insta::with_settings!({
        snapshot_path => "cases/check/snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::glob!("cases/check", "*.journey", |path| {
            insta::assert_snapshot!(check_case(path));
        });
    });
}

fn codes_of(path: &Path) -> Vec<Code> {
    support::analyse(&[path.to_path_buf()])
        .diagnostics
        .iter()
        .map(|d| d.code)
        .collect()
}

/// Every code has a case that reports it: parse and loading codes among the parse cases,
/// every other code as `<ID>-<name>.fail.journey` beside a clean `<ID>-<name>.pass.journey`.
#[test]
fn every_code_has_a_failing_and_a_passing_case() {
    let parse_cases = support::journey_files("tests/cases/parse");
    let parse_codes: Vec<Code> = parse_cases
        .iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("parse")))
        .flat_map(|p| codes_of(p))
        .collect();
    let root = support::repo_root().join("tests/cases/check");
    for code in Code::ALL {
        if code.id() < "E0200" {
            assert!(parse_codes.contains(code), "no parse case reports {code}");
            continue;
        }
        let stem = format!("{}-{}", code.id(), code.name());
        let fail = root.join(format!("{stem}.fail.journey"));
        let pass = root.join(format!("{stem}.pass.journey"));
        assert!(
            fail.exists() && pass.exists(),
            "{code}: add {stem}.fail.journey and {stem}.pass.journey"
        );
        assert!(
            codes_of(&fail).contains(code),
            "{stem}.fail.journey does not report {code}"
        );
        let clean = codes_of(&pass);
        assert!(
            clean.is_empty(),
            "{stem}.pass.journey must be clean, but reports {clean:?}"
        );
    }
}

/// Every fix a check case's diagnostics offer removes its diagnostic: applied to the text (one
/// fix at a time), the file no longer reports that code there. Each kind of fix is seen.
#[test]
fn fixes_remove_their_diagnostics() {
    use journey_compiler::workspace::MemoryFiles;
    let mut fixed_codes = std::collections::BTreeSet::new();
    for path in support::journey_files("tests/cases/check") {
        let analysis = support::analyse(std::slice::from_ref(&path));
        for diagnostic in &analysis.diagnostics {
            for fix in &diagnostic.fixes {
                let Some(location) = diagnostic.location() else {
                    continue;
                };
                let source = analysis.workspace.sources.get(location.file);
                let mut text = source.text.clone();
                let mut edits: Vec<_> = fix
                    .edits
                    .iter()
                    .filter(|e| e.file == location.file)
                    .collect();
                edits.sort_by_key(|e| std::cmp::Reverse(e.span.start));
                for edit in edits {
                    text.replace_range(
                        edit.span.start as usize..edit.span.end as usize,
                        &edit.text,
                    );
                }
                let mut files = MemoryFiles::new();
                files.insert(&source.path, text.clone());
                let again = journey_compiler::analyse(&files, std::slice::from_ref(&source.path));
                let still = again.diagnostics.iter().any(|d| {
                    d.code == diagnostic.code
                        && d.location().map(|l| l.span.start) == Some(location.span.start)
                });
                assert!(
                    !still,
                    "{}: \"{}\" did not fix {} ({}):\n{text}",
                    path.display(),
                    fix.title,
                    diagnostic.code.id(),
                    diagnostic.message
                );
                fixed_codes.insert(diagnostic.code.id());
            }
        }
    }
    assert!(fixed_codes.len() >= 4, "fixes seen: {fixed_codes:?}");
}
