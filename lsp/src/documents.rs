//! Open documents (editor buffers) + the workspace folders → one analysis of the workspace, its
//! diagnostics per file. No LSP types here but file paths.
//!
//! The workspace is every `.journey` file below the workspace folders plus every open document
//! (what `journeyc check FOLDER` sees), with imports followed. An open document's text wins over
//! the file on disk, saved or not.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use journey_compiler::workspace::{self, FileSystem, ParseCache, SourceProvider};
use journey_compiler::Analysis;

/// An editor buffer.
#[derive(Debug, Clone)]
pub struct Document {
    pub version: i32,
    pub text: String,
}

/// The open documents, by file identity (canonical path).
#[derive(Debug, Default)]
pub struct Documents {
    open: BTreeMap<PathBuf, Document>,
    folders: Vec<PathBuf>,
}

impl Documents {
    pub fn set_folders(&mut self, folders: Vec<PathBuf>) {
        self.folders = folders;
    }

    /// Opens or replaces a document. A version older than the one held is ignored (changes that
    /// raced): returns whether the text was taken.
    pub fn update(&mut self, path: &Path, version: i32, text: String) -> bool {
        let key = FileSystem.identity(path);
        if self.open.get(&key).is_some_and(|d| d.version > version) {
            return false;
        }
        self.open.insert(key, Document { version, text });
        true
    }

    pub fn close(&mut self, path: &Path) {
        self.open.remove(&FileSystem.identity(path));
    }

    pub fn get(&self, path: &Path) -> Option<&Document> {
        self.open.get(&FileSystem.identity(path))
    }

    /// Loads, parses (what `cache` does not hold already) and checks the workspace with the
    /// buffers over the disk.
    pub fn analyse(&self, cache: &mut ParseCache) -> Analysis {
        let mut roots: Vec<PathBuf> = self
            .folders
            .iter()
            .filter_map(|folder| workspace::expand_paths(std::slice::from_ref(folder)).ok())
            .flatten()
            .map(|p| FileSystem.identity(&p))
            .collect();
        for path in self.open.keys() {
            if !roots.contains(path) && path.extension().is_some_and(|e| e == "journey") {
                roots.push(path.clone());
            }
        }
        roots.sort();
        roots.dedup();
        journey_compiler::analyse_with(self, &roots, cache)
    }
}

impl SourceProvider for Documents {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        match self.open.get(&FileSystem.identity(path)) {
            Some(document) => Ok(document.text.clone().into_bytes()),
            None => FileSystem.read(path),
        }
    }

    fn identity(&self, path: &Path) -> PathBuf {
        FileSystem.identity(path)
    }
}
