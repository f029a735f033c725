//! A parsed file → its outline (declarations, and in journeys their goals, exits and steps)
//! and its folding ranges (declarations and blocks over several lines).
//!
//! Built from whatever parsed: items with syntax errors are missing, the others are listed
//! (the parser recovers at item boundaries), so the outline keeps working while a file is
//! being edited.

use journey_compiler::ast::{self, Item, SettingKind, Step, StepKind};
use journey_compiler::source::Span;
#[allow(deprecated)]
use tower_lsp_server::ls_types::{DocumentSymbol, FoldingRange, SymbolKind};

use crate::convert::LineIndex;

pub fn outline(text: &str, module: &ast::Module) -> Vec<DocumentSymbol> {
    let index = LineIndex::new(text);
    let symbol = |name: String, detail: Option<String>, kind, span: Span, selection: Span| {
        #[allow(deprecated)]
        DocumentSymbol {
            name,
            detail,
            kind,
            tags: None,
            deprecated: None,
            range: index.range(text, span.start as usize, span.end as usize),
            selection_range: index.range(text, selection.start as usize, selection.end as usize),
            children: None,
        }
    };
    let fields = |fields: &[ast::FieldDecl]| -> Option<Vec<DocumentSymbol>> {
        let list: Vec<DocumentSymbol> = fields
            .iter()
            .map(|f| {
                let ty = text
                    .get(f.ty.span.start as usize..f.ty.span.end as usize)
                    .map(String::from);
                symbol(
                    f.name.name.clone(),
                    ty,
                    SymbolKind::FIELD,
                    f.span,
                    f.name.span,
                )
            })
            .collect();
        (!list.is_empty()).then_some(list)
    };
    module
        .items
        .iter()
        .filter_map(|item| {
            Some(match item {
                Item::Import(_) => return None,
                Item::Event(e) => DocumentSymbol {
                    children: fields(&e.fields),
                    ..symbol(
                        e.name.name.clone(),
                        Some("event".into()),
                        SymbolKind::EVENT,
                        e.span,
                        e.name.span,
                    )
                },
                Item::Profile(p) => DocumentSymbol {
                    children: fields(&p.fields),
                    ..symbol("profile".into(), None, SymbolKind::STRUCT, p.span, p.span)
                },
                Item::Template(t) => DocumentSymbol {
                    children: fields(&t.params),
                    ..symbol(
                        t.name.name.clone(),
                        Some(format!("template: {}", t.channel.as_str())),
                        SymbolKind::INTERFACE,
                        t.span,
                        t.name.span,
                    )
                },
                Item::Segment(s) => symbol(
                    s.name.name.clone(),
                    Some("segment".into()),
                    SymbolKind::CONSTANT,
                    s.span,
                    s.name.span,
                ),
                Item::Cap(c) => symbol(
                    "cap".into(),
                    text.get(c.span.start as usize..c.span.end as usize)
                        .map(String::from),
                    SymbolKind::PROPERTY,
                    c.span,
                    c.span,
                ),
                Item::Journey(j) => {
                    let mut children: Vec<DocumentSymbol> = j
                        .settings
                        .iter()
                        .filter_map(|s| match &s.kind {
                            SettingKind::Goal(t) | SettingKind::Exit(t) => Some(symbol(
                                t.name.name.clone(),
                                Some(s.kind.keyword().into()),
                                SymbolKind::KEY,
                                s.span,
                                t.name.span,
                            )),
                            _ => None,
                        })
                        .collect();
                    let mut counter = 0;
                    steps(&j.steps, &mut counter, &mut children, &symbol);
                    DocumentSymbol {
                        children: (!children.is_empty()).then_some(children),
                        ..symbol(
                            j.name.name.clone(),
                            Some("journey".into()),
                            SymbolKind::CLASS,
                            j.span,
                            j.name.span,
                        )
                    }
                }
                Item::Test(t) => symbol(
                    t.name.value.clone(),
                    Some(format!("test for {}", t.journey.name)),
                    SymbolKind::METHOD,
                    t.span,
                    t.name.span,
                ),
            })
        })
        .collect()
}

/// The steps of a block and of the blocks inside it, in source order, named as the timeline
/// names them: the label, else `<kind>_<n>`.
fn steps(
    list: &[Step],
    counter: &mut usize,
    out: &mut Vec<DocumentSymbol>,
    symbol: &dyn Fn(String, Option<String>, SymbolKind, Span, Span) -> DocumentSymbol,
) {
    for step in list {
        *counter += 1;
        let (name, selection) = match &step.label {
            Some(label) => (label.name.clone(), label.span),
            None => (format!("{}_{counter}", step.kind.kind_name()), step.span),
        };
        out.push(symbol(
            name,
            Some(step.kind.kind_name().into()),
            SymbolKind::FUNCTION,
            step.span,
            selection,
        ));
        for block in blocks(&step.kind) {
            steps(&block.steps, counter, out, symbol);
        }
    }
}

/// The blocks a step holds, in source order.
fn blocks(kind: &StepKind) -> Vec<&ast::Block> {
    match kind {
        StepKind::WaitUntil {
            then, on_timeout, ..
        }
        | StepKind::WaitFor {
            then, on_timeout, ..
        } => then.iter().chain(on_timeout.iter()).collect(),
        StepKind::WaitAny {
            arms, on_timeout, ..
        } => arms
            .iter()
            .map(|a| &a.block)
            .chain(on_timeout.iter())
            .collect(),
        StepKind::If { arms, otherwise } => arms
            .iter()
            .map(|(_, b)| b)
            .chain(otherwise.iter())
            .collect(),
        StepKind::Branch { arms, otherwise } => arms
            .iter()
            .map(|a| &a.block)
            .chain(otherwise.iter())
            .collect(),
        StepKind::Split { arms } => arms.iter().map(|a| &a.block).collect(),
        _ => Vec::new(),
    }
}

/// Declarations and blocks that span several lines.
pub fn folding(text: &str, module: &ast::Module) -> Vec<FoldingRange> {
    let index = LineIndex::new(text);
    let mut spans: Vec<Span> = Vec::new();
    for item in &module.items {
        spans.push(item.span());
        if let Item::Journey(j) = item {
            let mut stack: Vec<&Step> = j.steps.iter().collect();
            while let Some(step) = stack.pop() {
                for block in blocks(&step.kind) {
                    spans.push(block.span);
                    stack.extend(block.steps.iter());
                }
            }
        }
    }
    let mut ranges: Vec<FoldingRange> = spans
        .into_iter()
        .filter_map(|span| {
            let start = index.position(text, span.start as usize).line;
            let end = index.position(text, span.end as usize).line;
            (end > start).then_some(FoldingRange {
                start_line: start,
                end_line: end,
                ..FoldingRange::default()
            })
        })
        .collect();
    ranges.sort_by_key(|r| (r.start_line, r.end_line));
    ranges
}
