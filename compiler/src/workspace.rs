//! Root paths → every file of one compilation, parsed, with imports followed and checked.
//!
//! Files are read through a `SourceProvider`, so the command line reads the disk while the
//! language server can serve unsaved buffers and tests can serve strings.
//!
//! **Invariant:** each file is loaded once, however many times and however it is imported;
//! `modules[i]` is the parse of file `FileId(i)` (schema files have an empty module).

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::ast::{ImportKind, Item, Module};
use crate::codes::Code;
use crate::diagnostic::{self, Diagnostic};
use crate::parse;
use crate::source::{FileId, SourceMap, Span};

/// Where source files come from.
pub trait SourceProvider {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// A key that is the same for every spelling of the same file.
    fn identity(&self, path: &Path) -> PathBuf {
        normalize(path)
    }
}

/// Reads files from the disk.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileSystem;

impl SourceProvider for FileSystem {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        if path.is_dir() {
            return Err(io::Error::other("it is a directory"));
        }
        std::fs::read(path)
    }

    fn identity(&self, path: &Path) -> PathBuf {
        std::fs::canonicalize(path).unwrap_or_else(|_| normalize(path))
    }
}

/// Serves files from memory (tests, examples in docs, editor buffers).
#[derive(Debug, Default, Clone)]
pub struct MemoryFiles {
    files: BTreeMap<PathBuf, Vec<u8>>,
}

impl MemoryFiles {
    pub fn new() -> MemoryFiles {
        MemoryFiles::default()
    }

    pub fn insert(&mut self, path: impl AsRef<Path>, contents: impl Into<Vec<u8>>) {
        self.files.insert(normalize(path.as_ref()), contents.into());
    }
}

impl SourceProvider for MemoryFiles {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files
            .get(&normalize(path))
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }
}

/// Removes `.` and folds `dir/..` without touching the disk.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                let last_is_normal =
                    matches!(out.components().next_back(), Some(Component::Normal(_)));
                if last_is_normal {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// One `import` edge between two loaded files.
#[derive(Debug, Clone)]
pub struct ImportEdge {
    pub from: FileId,
    pub span: Span,
    pub to: FileId,
    pub kind: ImportKind,
}

/// Everything loaded for one compilation.
#[derive(Debug, Default)]
pub struct Workspace {
    pub sources: SourceMap,
    pub modules: Vec<Module>,
    pub imports: Vec<ImportEdge>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Workspace {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The `.journey` files (not JSON schemas) in load order.
    pub fn journey_files(&self) -> impl Iterator<Item = (FileId, &Module)> {
        let schemas: Vec<FileId> = self
            .imports
            .iter()
            .filter(|e| e.kind == ImportKind::Schema)
            .map(|e| e.to)
            .collect();
        self.modules
            .iter()
            .filter(move |m| !schemas.contains(&m.file))
            .map(|m| (m.file, m))
    }
}

/// Loads the root files and everything they import, parses them and checks the import graph.
pub fn load(provider: &dyn SourceProvider, roots: &[PathBuf]) -> Workspace {
    load_with(provider, roots, &mut ParseCache::default())
}

/// Files parsed by earlier loads: a file whose text has not changed since is not parsed again
/// (the language server loads the workspace at every keystroke).
#[derive(Debug, Default)]
pub struct ParseCache {
    /// By file identity: the text, its module and its syntax diagnostics.
    entries: BTreeMap<PathBuf, (String, Module, Vec<Diagnostic>)>,
}

impl ParseCache {
    /// The module and syntax diagnostics of `text`, parsed as file `file`: from the cache when
    /// `identity` last had this text.
    fn parse(&mut self, identity: &Path, file: FileId, text: &str) -> (Module, Vec<Diagnostic>) {
        if let Some((cached, module, diagnostics)) = self.entries.get(identity) {
            if cached == text {
                // Only the file id differs: spans are offsets in the file.
                let mut module = module.clone();
                module.file = file;
                let mut diagnostics = diagnostics.clone();
                for label in diagnostics.iter_mut().flat_map(|d| d.labels.iter_mut()) {
                    label.file = file;
                }
                return (module, diagnostics);
            }
        }
        let (module, diagnostics) = parse::parse(file, text);
        self.entries.insert(
            identity.to_path_buf(),
            (text.to_string(), module.clone(), diagnostics.clone()),
        );
        (module, diagnostics)
    }
}

/// `load`, reusing the parses of `cache` and keeping this load's in it.
pub fn load_with(
    provider: &dyn SourceProvider,
    roots: &[PathBuf],
    cache: &mut ParseCache,
) -> Workspace {
    let mut workspace = Workspace::default();
    let mut identities: Vec<PathBuf> = Vec::new();
    let mut queue: Vec<FileId> = Vec::new();

    for root in roots {
        match read_source(
            provider,
            &mut workspace,
            &mut identities,
            cache,
            root,
            ImportKind::Journey,
        ) {
            Ok((file, true)) => queue.push(file),
            Ok((_, false)) => {}
            Err(error) => workspace.diagnostics.push(Diagnostic::new(
                Code::ImportNotFound,
                format!("cannot read `{}`: {}", root.display(), describe_io(&error)),
            )),
        }
    }

    let mut next = 0;
    while next < queue.len() {
        let file = queue[next];
        next += 1;
        let imports: Vec<(ImportKind, String, Span)> = workspace.modules[file.0 as usize]
            .items
            .iter()
            .filter_map(|item| match item {
                Item::Import(import) => {
                    Some((import.kind, import.path.value.clone(), import.path.span))
                }
                _ => None,
            })
            .collect();
        let base = workspace
            .sources
            .get(file)
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        for (kind, target, span) in imports {
            let path = normalize(&base.join(&target));
            let loaded = read_source(
                provider,
                &mut workspace,
                &mut identities,
                cache,
                &path,
                kind,
            );
            match loaded {
                Ok((to, is_new)) => {
                    workspace.imports.push(ImportEdge {
                        from: file,
                        span,
                        to,
                        kind,
                    });
                    if is_new && kind == ImportKind::Journey {
                        queue.push(to);
                    }
                }
                Err(error) => workspace.diagnostics.push(
                    Diagnostic::new(
                        Code::ImportNotFound,
                        format!("cannot import `{target}`: {}", describe_io(&error)),
                    )
                    .primary(file, span, format!("looked for `{}`", path.display()))
                    .note("import paths are relative to the file that imports them"),
                ),
            }
        }
    }

    check_cycles(&mut workspace);
    diagnostic::sort(&mut workspace.diagnostics);
    workspace
}

/// An I/O error in words that do not depend on the operating system's wording.
fn describe_io(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "the file does not exist".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => error.to_string(),
    }
}

/// Reads and decodes a file unless it is loaded already, and parses it when it is a `.journey`
/// file (a JSON-Schema tracking plan is only loaded, so its diagnostics can point into it).
/// Returns its id and whether it is new.
fn read_source(
    provider: &dyn SourceProvider,
    workspace: &mut Workspace,
    identities: &mut Vec<PathBuf>,
    cache: &mut ParseCache,
    path: &Path,
    kind: ImportKind,
) -> io::Result<(FileId, bool)> {
    let identity = provider.identity(path);
    if let Some(index) = identities.iter().position(|known| *known == identity) {
        return Ok((FileId(index as u32), false));
    }
    let bytes = provider.read(path)?;
    let decoded = parse::decode(FileId(workspace.sources.len() as u32), bytes);
    let file = workspace
        .sources
        .add(path.display().to_string(), path, decoded.text);
    identities.push(identity.clone());
    let mut module = Module {
        file,
        items: Vec::new(),
    };
    match decoded.error {
        Some(diagnostic) => workspace.diagnostics.push(diagnostic),
        None if kind == ImportKind::Journey => {
            let (parsed, diagnostics) =
                cache.parse(&identity, file, &workspace.sources.get(file).text);
            module = parsed;
            workspace.diagnostics.extend(diagnostics);
        }
        None => {}
    }
    workspace.modules.push(module);
    Ok((file, true))
}

/// Reports each import that closes a cycle, at that import, with the whole cycle in a note.
fn check_cycles(workspace: &mut Workspace) {
    let journey_imports: Vec<&ImportEdge> = workspace
        .imports
        .iter()
        .filter(|e| e.kind == ImportKind::Journey)
        .collect();
    let edges: Vec<(usize, usize)> = journey_imports
        .iter()
        .map(|e| (e.from.0 as usize, e.to.0 as usize))
        .collect();
    let mut found = Vec::new();
    for (edge, cycle) in crate::graph::cycles(workspace.sources.len(), &edges) {
        let names: Vec<String> = cycle
            .iter()
            .map(|f| format!("`{}`", workspace.sources.get(FileId(*f as u32)).name))
            .collect();
        let edge = journey_imports[edge];
        found.push(
            Diagnostic::new(Code::ImportCycle, "this import closes an import cycle")
                .primary(edge.from, edge.span, "imports a file that imports this one")
                .note(format!("the cycle: {}", names.join(" → ")))
                .help("move what the files share into a third file that both import"),
        );
    }
    workspace.diagnostics.extend(found);
}

/// Expands command-line paths: files as given, directories to every `*.journey` below them
/// (sorted, so output order never depends on the file system).
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        let metadata = std::fs::metadata(path)
            .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
        if metadata.is_dir() {
            let before = files.len();
            walk(path, &mut files)
                .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
            files[before..].sort();
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "journey") {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cached load is the same as a fresh one, with the changed file parsed again (its new
    /// error found) and the file ids of the others as this load gives them.
    #[test]
    fn cached_loads_equal_fresh_ones() {
        let mut files = MemoryFiles::new();
        files.insert("a.journey", "event A { x: int }\n");
        files.insert(
            "b.journey",
            "import \"a.journey\"\njourney j { entry on A }\n",
        );
        let roots = [PathBuf::from("b.journey")];
        let mut cache = ParseCache::default();
        let first = load_with(&files, &roots, &mut cache);
        assert_eq!(first.modules, load(&files, &roots).modules);
        files.insert(
            "b.journey",
            "import \"a.journey\"\njourney j { entry on }\n",
        );
        let cached = load_with(&files, &roots, &mut cache);
        let fresh = load(&files, &roots);
        assert_eq!(cached.modules, fresh.modules);
        assert_eq!(cached.diagnostics, fresh.diagnostics);
        assert!(
            !cached.diagnostics.is_empty(),
            "the new syntax error is reported"
        );
    }

    #[test]
    fn normalize_folds_dots() {
        assert_eq!(normalize(Path::new("a/./b/../c")), PathBuf::from("a/c"));
        assert_eq!(normalize(Path::new("../a")), PathBuf::from("../a"));
    }
}
