//! `journey-lsp`: the language server for `.journey` files, over standard input and output.
//!
//! LSP requests → the compiler's library calls → LSP responses. Only this crate knows LSP
//! types; positions cross over in `convert`.

mod complete;
mod convert;
mod documents;
mod navigate;
mod symbols;
mod tokens;

use std::collections::BTreeSet;
use std::path::PathBuf;

use journey_compiler::format::{format_text, FormatError};
use journey_compiler::source::FileId;
use journey_compiler::workspace::SourceProvider;
use tokio::sync::Mutex;
use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer, LspService, Server};

use crate::convert::LineIndex;
use crate::documents::Documents;

struct Backend {
    client: Client,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    documents: Documents,
    /// The files parsed so far: only changed files are parsed again.
    parses: journey_compiler::workspace::ParseCache,
    /// The analysis of the newest texts (timing facts for inlay hints) and its name index (of
    /// the items that parsed, while a file does not).
    analysis: Option<journey_compiler::Analysis>,
    index: Option<journey_compiler::index::Index>,
    /// While a file does not parse: the last analysis in which every file did (completion
    /// names come from it).
    last_good: Option<journey_compiler::Analysis>,
    /// Files that have diagnostics on the client, so they can be cleared.
    published: BTreeSet<PathBuf>,
}

impl Backend {
    /// Analyses the workspace and publishes every file's diagnostics (clearing the ones that
    /// have none now).
    async fn refresh(&self) {
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        let analysis = state.documents.analyse(&mut state.parses);
        let sources = &analysis.workspace.sources;
        let mut now = BTreeSet::new();
        let mut batches = Vec::new();
        for (file, source) in sources.iter() {
            let path = source.path.clone();
            let index = LineIndex::new(&source.text);
            let locate = |label: &journey_compiler::diagnostic::Label| {
                convert::location(sources, label.file, label.span)
            };
            let here = |label: &journey_compiler::diagnostic::Label| label.file == file;
            let diagnostics: Vec<Diagnostic> = analysis
                .diagnostics
                .iter()
                .filter(|d| {
                    d.labels
                        .iter()
                        .find(|l| l.primary)
                        .or(d.labels.first())
                        .is_some_and(|l| l.file == file)
                })
                .filter_map(|d| convert::diagnostic(d, &source.text, &index, &locate, &here))
                .collect();
            let version = state.documents.get(&path).map(|d| d.version);
            if !diagnostics.is_empty() || state.published.contains(&path) {
                batches.push((path.clone(), diagnostics, version));
            }
            now.insert(path);
        }
        // Files that left the workspace keep no stale diagnostics.
        for gone in state.published.difference(&now) {
            batches.push((gone.clone(), Vec::new(), None));
        }
        state.published = batches
            .iter()
            .filter(|(_, d, _)| !d.is_empty())
            .map(|(p, _, _)| p.clone())
            .collect();
        // While a file does not parse, names are looked up among the items that did.
        state.index = analysis
            .navigable()
            .map(|program| journey_compiler::index::Index::build(&analysis.workspace, program));
        if analysis.program.is_some() {
            state.last_good = None;
        } else if state.analysis.as_ref().is_some_and(|a| a.program.is_some()) {
            state.last_good = state.analysis.take();
        }
        state.analysis = Some(analysis);
        drop(guard);
        for (path, diagnostics, version) in batches {
            if let Some(uri) = convert::uri(&path) {
                self.client
                    .publish_diagnostics(uri, diagnostics, version)
                    .await;
            }
        }
    }
}

impl Backend {
    /// The state with an analysis in it: a request can come before the first analysis (the
    /// server handles messages concurrently).
    async fn analysed(&self) -> tokio::sync::MutexGuard<'_, State> {
        if self.state.lock().await.analysis.is_none() {
            self.refresh().await;
        }
        self.state.lock().await
    }

    /// Runs `ask` on the workspace's index at a position (while a file does not parse, the
    /// index holds the items that did).
    async fn navigate<T>(
        &self,
        uri: &Uri,
        position: Position,
        ask: impl FnOnce(&navigate::Navigator, FileId, u32) -> T,
    ) -> Option<T> {
        let path = journey_compiler::workspace::FileSystem.identity(&path_of(uri)?);
        let state = self.analysed().await;
        let (Some(analysis), Some(index)) = (&state.analysis, &state.index) else {
            return None;
        };
        let navigator = navigate::Navigator::new(analysis, index);
        let (file, offset) = navigator.locate(&path, position)?;
        Some(ask(&navigator, file, offset))
    }

    /// The text of a document: the open buffer, else the file on disk.
    async fn text_of(&self, uri: &Uri) -> Option<String> {
        let path = path_of(uri)?;
        match self.state.lock().await.documents.get(&path) {
            Some(document) => Some(document.text.clone()),
            None => std::fs::read_to_string(&path).ok(),
        }
    }
}

/// A time after entry as an inlay hint shows it: `+1d 1h`, `+1h .. +2d`, `+1h ..` (unbounded).
fn timing(earliest: u64, latest: Option<u64>) -> String {
    let at = |seconds: u64| {
        let words = journey_compiler::check::journey_time::format_duration(seconds);
        // `1d1h` → `1d 1h`: a space after each unit that another follows.
        let mut spaced = String::new();
        let mut chars = words.chars().peekable();
        while let Some(c) = chars.next() {
            spaced.push(c);
            if c.is_ascii_alphabetic() && chars.peek().is_some_and(char::is_ascii_digit) {
                spaced.push(' ');
            }
        }
        format!("+{spaced}")
    };
    match latest {
        Some(latest) if latest == earliest => at(earliest),
        Some(latest) => format!("{} .. {}", at(earliest), at(latest)),
        None => format!("{} ..", at(earliest)),
    }
}

fn path_of(uri: &Uri) -> Option<PathBuf> {
    uri.to_file_path().map(|p| p.into_owned())
}

impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        #[allow(deprecated)]
        let folders: Vec<PathBuf> = match params.workspace_folders {
            Some(folders) => folders.iter().filter_map(|f| path_of(&f.uri)).collect(),
            None => params.root_uri.iter().filter_map(path_of).collect(),
        };
        self.state.lock().await.documents.set_folders(folders);
        Ok(InitializeResult {
            server_info: Some(ServerInfo {
                name: "journey-lsp".into(),
                version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
            capabilities: ServerCapabilities {
                text_document_sync: Some(TextDocumentSyncCapability::Kind(
                    TextDocumentSyncKind::FULL,
                )),
                document_formatting_provider: Some(OneOf::Left(true)),
                document_symbol_provider: Some(OneOf::Left(true)),
                folding_range_provider: Some(FoldingRangeProviderCapability::Simple(true)),
                inlay_hint_provider: Some(OneOf::Left(true)),
                definition_provider: Some(OneOf::Left(true)),
                references_provider: Some(OneOf::Left(true)),
                rename_provider: Some(OneOf::Left(true)),
                hover_provider: Some(HoverProviderCapability::Simple(true)),
                code_action_provider: Some(CodeActionProviderCapability::Simple(true)),
                semantic_tokens_provider: Some(
                    SemanticTokensServerCapabilities::SemanticTokensOptions(
                        SemanticTokensOptions {
                            legend: tokens::legend(),
                            full: Some(SemanticTokensFullOptions::Bool(true)),
                            ..SemanticTokensOptions::default()
                        },
                    ),
                ),
                completion_provider: Some(CompletionOptions {
                    trigger_characters: Some(vec![".".into(), " ".into(), "(".into()]),
                    ..CompletionOptions::default()
                }),
                ..ServerCapabilities::default()
            },
            ..InitializeResult::default()
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        self.refresh().await;
    }

    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        let document = params.text_document;
        if let Some(path) = path_of(&document.uri) {
            self.state
                .lock()
                .await
                .documents
                .update(&path, document.version, document.text);
            self.refresh().await;
        }
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        // Full synchronisation: the last change holds the whole text.
        let Some(change) = params.content_changes.into_iter().last() else {
            return;
        };
        if let Some(path) = path_of(&params.text_document.uri) {
            let taken = self.state.lock().await.documents.update(
                &path,
                params.text_document.version,
                change.text,
            );
            if taken {
                self.refresh().await;
            }
        }
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        if let Some(path) = path_of(&params.text_document.uri) {
            self.state.lock().await.documents.close(&path);
            self.refresh().await;
        }
    }

    async fn formatting(&self, params: DocumentFormattingParams) -> Result<Option<Vec<TextEdit>>> {
        let Some(path) = path_of(&params.text_document.uri) else {
            return Ok(None);
        };
        let text = match self.state.lock().await.documents.get(&path) {
            Some(document) => document.text.clone(),
            None => return Ok(None),
        };
        match format_text(FileId(0), &text) {
            Ok(formatted) if formatted != text => {
                let index = LineIndex::new(&text);
                Ok(Some(vec![TextEdit::new(
                    index.range(&text, 0, text.len()),
                    formatted,
                )]))
            }
            Ok(_) => Ok(Some(Vec::new())),
            // A file that does not parse is not formatted; its errors are already shown.
            Err(FormatError::Syntax(_)) | Err(FormatError::Unstable) => Ok(None),
        }
    }

    async fn goto_definition(
        &self,
        params: GotoDefinitionParams,
    ) -> Result<Option<GotoDefinitionResponse>> {
        let at = params.text_document_position_params;
        Ok(self
            .navigate(&at.text_document.uri, at.position, |n, file, offset| {
                n.definition(file, offset)
            })
            .await
            .flatten()
            .map(GotoDefinitionResponse::Scalar))
    }

    async fn references(&self, params: ReferenceParams) -> Result<Option<Vec<Location>>> {
        let at = params.text_document_position;
        let declaration = params.context.include_declaration;
        Ok(self
            .navigate(&at.text_document.uri, at.position, |n, file, offset| {
                n.references(file, offset, declaration)
            })
            .await)
    }

    async fn rename(&self, params: RenameParams) -> Result<Option<WorkspaceEdit>> {
        let at = params.text_document_position;
        let name = params.new_name;
        match self
            .navigate(&at.text_document.uri, at.position, |n, file, offset| {
                n.rename(file, offset, &name)
            })
            .await
        {
            Some(Ok(edit)) => Ok(Some(edit)),
            Some(Err(reason)) => Err(tower_lsp_server::jsonrpc::Error::invalid_params(reason)),
            None => Ok(None),
        }
    }

    async fn hover(&self, params: HoverParams) -> Result<Option<Hover>> {
        let at = params.text_document_position_params;
        Ok(self
            .navigate(&at.text_document.uri, at.position, |n, file, offset| {
                n.hover(file, offset)
            })
            .await
            .flatten())
    }

    async fn completion(&self, params: CompletionParams) -> Result<Option<CompletionResponse>> {
        let at = params.text_document_position;
        let Some(text) = self.text_of(&at.text_document.uri).await else {
            return Ok(None);
        };
        let offset = LineIndex::new(&text).offset(&text, at.position);
        let state = self.analysed().await;
        // The names of the newest complete check, else of the last one (it still has the item
        // being typed), else of the items that parse now (a file was broken from the start).
        let program = state
            .analysis
            .as_ref()
            .and_then(|a| a.program.as_ref())
            .or_else(|| state.last_good.as_ref().and_then(|a| a.program.as_ref()))
            .or_else(|| state.analysis.as_ref().and_then(|a| a.partial.as_ref()));
        Ok(Some(CompletionResponse::Array(complete::complete(
            &text, offset, program,
        ))))
    }

    /// The quick fixes of the diagnostics in the range: did-you-mean replacements, a missing
    /// `within`, missing template arguments.
    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        let Some(path) = path_of(&params.text_document.uri) else {
            return Ok(None);
        };
        let path = journey_compiler::workspace::FileSystem.identity(&path);
        let state = self.analysed().await;
        let Some(analysis) = &state.analysis else {
            return Ok(None);
        };
        let sources = &analysis.workspace.sources;
        let Some(file) = sources.find_path(&path) else {
            return Ok(None);
        };
        let text = &sources.get(file).text;
        let index = LineIndex::new(text);
        let mut actions = Vec::new();
        for diagnostic in &analysis.diagnostics {
            let Some(location) = diagnostic.location().filter(|l| l.file == file) else {
                continue;
            };
            let range = index.range(
                text,
                location.span.start as usize,
                location.span.end as usize,
            );
            if range.end < params.range.start || range.start > params.range.end {
                continue;
            }
            for fix in &diagnostic.fixes {
                let mut changes: std::collections::HashMap<Uri, Vec<TextEdit>> =
                    std::collections::HashMap::new();
                for edit in &fix.edits {
                    if let Some(at) = convert::location(sources, edit.file, edit.span) {
                        let change = TextEdit::new(at.range, edit.text.clone());
                        changes.entry(at.uri).or_default().push(change);
                    }
                }
                actions.push(CodeActionOrCommand::CodeAction(CodeAction {
                    title: fix.title.clone(),
                    kind: Some(CodeActionKind::QUICKFIX),
                    is_preferred: Some(diagnostic.fixes.len() == 1),
                    edit: Some(WorkspaceEdit {
                        changes: Some(changes),
                        ..WorkspaceEdit::default()
                    }),
                    ..CodeAction::default()
                }));
            }
        }
        Ok(Some(actions))
    }

    async fn semantic_tokens_full(
        &self,
        params: SemanticTokensParams,
    ) -> Result<Option<SemanticTokensResult>> {
        let uri = params.text_document.uri;
        let Some(text) = self.text_of(&uri).await else {
            return Ok(None);
        };
        let state = self.analysed().await;
        // Names are told apart only when the analysis is of this very text.
        let index = path_of(&uri).and_then(|path| {
            let path = journey_compiler::workspace::FileSystem.identity(&path);
            let analysis = state.analysis.as_ref()?;
            let file = analysis.workspace.sources.find_path(&path)?;
            (analysis.workspace.sources.get(file).text == text)
                .then_some((state.index.as_ref()?, file))
        });
        Ok(Some(SemanticTokensResult::Tokens(SemanticTokens {
            result_id: None,
            data: tokens::tokens(&text, index),
        })))
    }

    async fn folding_range(&self, params: FoldingRangeParams) -> Result<Option<Vec<FoldingRange>>> {
        let Some(text) = self.text_of(&params.text_document.uri).await else {
            return Ok(None);
        };
        let (module, _) = journey_compiler::parse::parse(FileId(0), &text);
        Ok(Some(symbols::folding(&text, &module)))
    }

    /// Before each step, when it can be reached after entry (`+1d 1h`, or `+1h .. +2d`).
    async fn inlay_hint(&self, params: InlayHintParams) -> Result<Option<Vec<InlayHint>>> {
        let Some(path) = path_of(&params.text_document.uri) else {
            return Ok(None);
        };
        let state = self.analysed().await;
        let Some(analysis) = &state.analysis else {
            return Ok(None);
        };
        let (Some(program), Some(file)) = (
            analysis.navigable(),
            analysis
                .workspace
                .sources
                .find_path(&journey_compiler::workspace::FileSystem.identity(&path)),
        ) else {
            return Ok(None);
        };
        let source = analysis.workspace.sources.get(file);
        let index = LineIndex::new(&source.text);
        let hints = program
            .journeys
            .iter()
            .filter(|j| j.file == file)
            .flat_map(|j| &j.steps)
            .filter_map(|step| {
                let position = index.position(&source.text, step.span.start as usize);
                let inside = position >= params.range.start && position <= params.range.end;
                inside.then(|| InlayHint {
                    position,
                    label: InlayHintLabel::String(timing(step.earliest, step.latest)),
                    kind: None,
                    text_edits: None,
                    tooltip: Some(InlayHintTooltip::String(format!(
                        "`{}` is reached this long after entry",
                        step.name
                    ))),
                    padding_left: None,
                    padding_right: Some(true),
                    data: None,
                })
            })
            .collect();
        Ok(Some(hints))
    }

    async fn document_symbol(
        &self,
        params: DocumentSymbolParams,
    ) -> Result<Option<DocumentSymbolResponse>> {
        let Some(text) = self.text_of(&params.text_document.uri).await else {
            return Ok(None);
        };
        let (module, _) = journey_compiler::parse::parse(FileId(0), &text);
        Ok(Some(DocumentSymbolResponse::Nested(symbols::outline(
            &text, &module,
        ))))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (stdin, stdout) = (tokio::io::stdin(), tokio::io::stdout());
    let (service, socket) = LspService::new(|client| Backend {
        client,
        state: Mutex::new(State::default()),
    });
    Server::new(stdin, stdout, socket).serve(service).await;
}
