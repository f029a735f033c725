//! `journeyc graph`: the flow of every example as a Mermaid diagram, and of every
//! `tests/cases/graph/*.journey` case in both formats (Mermaid and dot), as snapshots.

mod support;

use std::path::{Path, PathBuf};

use journey_compiler::flow::{self, GraphFormat};

/// The diagram of the journeys declared in `path` (an example is checked with the shared schema).
fn diagram(path: &Path, format: GraphFormat) -> String {
    let shop = support::repo_root().join("examples/shop.journey");
    let mut inputs = vec![path.to_path_buf()];
    if path.starts_with(support::repo_root().join("examples")) && path != shop {
        inputs.insert(0, shop);
    }
    let analysis = support::analyse(&inputs);
    assert!(
        !analysis.diagnostics.iter().any(|d| d.is_error()),
        "{}",
        support::rendered_diagnostics(&analysis.workspace, &analysis.diagnostics)
    );
    let program = analysis.program.as_ref().expect("checked");
    let file = analysis
        .workspace
        .sources
        .find_path(&support::relative(path))
        .expect("loaded");
    match flow::graphs(&analysis.workspace, program, &[file], None) {
        Ok(graphs) => flow::render(&graphs, format),
        // The shared schema declares no journey: that is the error, as text.
        Err(message) => message,
    }
}

#[test]
fn example_diagrams() {
    insta::with_settings!({
        snapshot_path => "cases/graph/snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::glob!("../examples", "*.journey", |path| {
            insta::assert_snapshot!(diagram(path, GraphFormat::Mermaid));
        });
    });
}

#[test]
fn case_diagrams_in_both_formats() {
    insta::with_settings!({
        snapshot_path => "cases/graph/snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::glob!("cases/graph", "*.journey", |path| {
            let both = format!(
                "{}\n{}",
                diagram(path, GraphFormat::Mermaid),
                diagram(path, GraphFormat::Dot)
            );
            insta::assert_snapshot!(both);
        });
    });
}

/// Every edge joins nodes that exist, every node but the entry is reached, and every path ends
/// in an end node: the diagram is a faithful graph, whatever the labels.
#[test]
fn diagrams_are_connected_and_every_path_ends() {
    let files: Vec<PathBuf> = support::journey_files("examples")
        .into_iter()
        .chain(support::journey_files("tests/cases/graph"))
        .collect();
    for path in files {
        let text = diagram(&path, GraphFormat::Dot);
        if !text.starts_with("digraph") {
            continue;
        }
        let nodes: Vec<(&str, bool)> = text
            .lines()
            .filter(|l| l.contains("[shape="))
            .filter_map(|l| {
                let id = l.split_whitespace().next()?;
                let end = l.contains("shape=doubleoctagon");
                Some((id, end))
            })
            .collect();
        let edges: Vec<(&str, &str)> = text
            .lines()
            .filter(|l| l.contains(" -> "))
            .filter_map(|l| {
                let mut parts = l.trim().split(" -> ");
                let from = parts.next()?;
                let to = parts.next()?.split([' ', ';']).next()?;
                Some((from, to))
            })
            .collect();
        let known = |id: &str| nodes.iter().any(|(n, _)| *n == id);
        for (from, to) in &edges {
            assert!(
                known(from) && known(to),
                "{}: edge {from} -> {to}",
                path.display()
            );
        }
        for (id, end) in &nodes {
            let entry = id.rsplit('n').next() == Some("0");
            let reached = edges.iter().any(|(_, to)| to == id);
            let leaves = edges.iter().any(|(from, _)| from == id);
            assert!(
                entry || reached,
                "{}: {id} is never reached",
                path.display()
            );
            assert!(*end || leaves, "{}: {id} leads nowhere", path.display());
        }
    }
}
