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
