//! Data-driven parser tests: every `tests/cases/parse/*.journey` is parsed; the snapshot beside
//! it holds the rendered diagnostics, or the AST when there are none. Add a case by dropping a
//! file in the folder and running `cargo insta review` (or `INSTA_UPDATE=always cargo test`).

mod support;

use std::path::Path;

fn parse_case(path: &Path) -> String {
    let workspace = support::load(&[path.to_path_buf()]);
    if workspace.diagnostics.is_empty() {
        let modules: Vec<_> = workspace.journey_files().map(|(_, m)| m).collect();
        format!("{modules:#?}\n")
    } else {
        support::human(&workspace)
    }
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
