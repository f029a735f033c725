//! Helpers shared by the data-driven tests.
#![allow(dead_code)]

use std::io;
use std::path::{Path, PathBuf};

use journey_compiler::render::{self, Format};
use journey_compiler::workspace::{self, SourceProvider, Workspace};

/// The repository root (tests run with the compiler crate as working directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Reads files below the repository root by repository-relative paths, so file names in
/// diagnostics (and so in snapshots) do not depend on where the checkout is.
pub struct RepoFiles;

impl SourceProvider for RepoFiles {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let full = repo_root().join(path);
        if full.is_dir() {
            return Err(io::Error::other("it is a directory"));
        }
        std::fs::read(full)
    }
}

/// A repository-relative path with forward slashes.
pub fn relative(path: &Path) -> PathBuf {
    path.strip_prefix(repo_root()).unwrap_or(path).to_path_buf()
}

pub fn load(paths: &[PathBuf]) -> Workspace {
    let relative: Vec<PathBuf> = paths.iter().map(|p| relative(p)).collect();
    workspace::load(&RepoFiles, &relative)
}

/// Loads, parses and checks, reading repository-relative paths.
pub fn analyse(paths: &[PathBuf]) -> journey_compiler::Analysis {
    let relative: Vec<PathBuf> = paths.iter().map(|p| relative(p)).collect();
    journey_compiler::analyse(&RepoFiles, &relative)
}

/// Some diagnostics rendered for people, without colour.
pub fn rendered_diagnostics(
    workspace: &Workspace,
    diagnostics: &[journey_compiler::Diagnostic],
) -> String {
    let mut out = Vec::new();
    render::render(
        Format::Human,
        &workspace.sources,
        diagnostics,
        &mut out,
        false,
    )
    .expect("rendering into memory cannot fail");
    String::from_utf8(out).expect("renderers write UTF-8")
}

/// Diagnostics rendered for people, without colour.
pub fn human(workspace: &Workspace) -> String {
    rendered(workspace, Format::Human)
}

pub fn rendered(workspace: &Workspace, format: Format) -> String {
    let mut out = Vec::new();
    render::render(
        format,
        &workspace.sources,
        &workspace.diagnostics,
        &mut out,
        false,
    )
    .expect("rendering into memory cannot fail");
    String::from_utf8(out).expect("renderers write UTF-8")
}

/// Every `*.journey` file below `dir` (repository-relative), sorted.
pub fn journey_files(dir: &str) -> Vec<PathBuf> {
    let root = repo_root().join(dir);
    workspace::expand_paths(&[root]).expect("the directory exists")
}

/// Compiles the bundled examples, which must check.
pub fn compile_examples() -> journey_runtime::bytecode::Program {
    let analysis = analyse(&journey_files("examples"));
    journey_compiler::lower::lower(
        &analysis.workspace,
        analysis.program.as_ref().expect("the examples check"),
    )
}

/// Compiles one inline source, which must check.
pub fn compile_inline(source: &str) -> journey_runtime::bytecode::Program {
    let mut files = workspace::MemoryFiles::new();
    files.insert("inline.journey", source);
    let analysis = journey_compiler::analyse(&files, &["inline.journey".into()]);
    assert!(
        !analysis.diagnostics.iter().any(|d| d.is_error()),
        "{:?}",
        analysis.diagnostics
    );
    journey_compiler::lower::lower(
        &analysis.workspace,
        analysis.program.as_ref().expect("checked"),
    )
}
