//! Parsed workspace → checked `Program`: names resolved across files, every expression typed
//! against the schemas, and the static guarantees of LANGUAGE.md §10 proven or reported.
//!
//! The stage is pure: it reads the `Workspace` (sources arrive through a `SourceProvider`) and
//! returns the program with its diagnostics.
//!
//! **Invariant:** after a check without errors, every name in the program resolves, every
//! expression has a type other than `Type::Error`, and every journey has timing facts.

mod arms;
mod expr;
mod journey;
pub mod json;
mod json_schema;
mod test_blocks;
pub mod types;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::ast::{self, Channel, Item};
use crate::codes::Code;
use crate::diagnostic::{self, Diagnostic};
use crate::source::{FileId, Span};
use crate::suggest::did_you_mean;
use crate::workspace::Workspace;

pub use journey::{JourneyFacts, StepFacts, Time};

/// Durations in the language's own syntax, for messages and summaries.
pub mod journey_time {
    pub use super::journey::format_duration;
}
pub use types::{Field, RecordType, Type};

/// An event type: declared in a `.journey` file or imported from a JSON-Schema tracking plan.
#[derive(Debug, Clone)]
pub struct EventInfo {
    pub name: String,
    /// The name `track` messages carry.
    pub wire_name: String,
    pub fields: Arc<RecordType>,
    pub doc: Option<String>,
    pub file: FileId,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct TemplateInfo {
    pub name: String,
    pub channel: Channel,
    pub params: Arc<RecordType>,
    pub file: FileId,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct SegmentInfo {
    pub name: String,
    pub file: FileId,
    pub span: Span,
}

/// The checked program: what later stages (bytecode, language server) read.
#[derive(Debug, Default)]
pub struct Program {
    pub events: BTreeMap<String, EventInfo>,
    pub profile: Arc<RecordType>,
    pub templates: BTreeMap<String, TemplateInfo>,
    pub segments: BTreeMap<String, SegmentInfo>,
    pub journeys: Vec<JourneyFacts>,
    /// The type of every expression checked, by position.
    pub expression_types: Vec<(FileId, Span, Type)>,
}

/// The bare names an expression mentions (outside `where` filters, whose names are fields).
fn collect_names<'a>(expr: &'a ast::Expr, out: &mut Vec<&'a ast::Ident>) {
    use ast::ExprKind;
    match &expr.kind {
        ExprKind::Name(name) => out.push(name),
        ExprKind::Field { base, .. } => collect_names(base, out),
        ExprKind::Unary { operand, .. } | ExprKind::IsSet { operand, .. } => {
            collect_names(operand, out)
        }
        ExprKind::Binary { lhs, rhs, .. } => {
            collect_names(lhs, out);
            collect_names(rhs, out);
        }
        ExprKind::List(items) | ExprKind::Call { args: items, .. } => {
            for item in items {
                collect_names(item, out);
            }
        }
        _ => {}
    }
}

/// Where a declaration lives, for "defined here" labels.
#[derive(Debug, Clone, Copy)]
struct Place {
    file: FileId,
    span: Span,
}

/// The checker's state: the program as it is being built, and what was found.
pub(crate) struct Checker<'w> {
    workspace: &'w Workspace,
    program: Program,
    diagnostics: Vec<Diagnostic>,
    journeys: BTreeMap<String, (FileId, &'w ast::Journey)>,
    segment_bodies: BTreeMap<String, (FileId, &'w ast::SegmentDecl)>,
    used_templates: Vec<String>,
    used_segments: Vec<String>,
    /// `start` edges between journeys, for the cycle check: (from, to, file, span).
    starts: Vec<(String, String, FileId, Span)>,
}

/// Checks a loaded workspace. Diagnostics from loading are not repeated here.
pub fn check(workspace: &Workspace) -> (Program, Vec<Diagnostic>) {
    let mut checker = Checker {
        workspace,
        program: Program::default(),
        diagnostics: Vec::new(),
        journeys: BTreeMap::new(),
        segment_bodies: BTreeMap::new(),
        used_templates: Vec::new(),
        used_segments: Vec::new(),
        starts: Vec::new(),
    };
    checker.collect();
    checker.check_segments();
    checker.check_journeys();
    checker.check_tests();
    checker.check_starts();
    checker.report_unused();
    let mut diagnostics = checker.diagnostics;
    diagnostic::sort(&mut diagnostics);
    (checker.program, diagnostics)
}

impl<'w> Checker<'w> {
    fn error(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn duplicate(&mut self, what: &str, name: &str, first: Place, again: Place) {
        self.error(
            Diagnostic::new(
                Code::DuplicateName,
                format!("the {what} `{name}` is defined twice"),
            )
            .primary(again.file, again.span, "defined again here")
            .secondary(first.file, first.span, "first defined here")
            .help(format!(
                "{what} names are global across the files compiled together: rename one"
            )),
        );
    }

    /// Gathers every declaration of every file, reporting duplicates at both places.
    fn collect(&mut self) {
        let workspace = self.workspace;
        let mut profile: Option<Place> = None;
        let mut profile_fields = RecordType::default();
        for module in &workspace.modules {
            let file = module.file;
            for item in &module.items {
                match item {
                    Item::Import(import) if import.kind == ast::ImportKind::Schema => {
                        let target = workspace
                            .imports
                            .iter()
                            .find(|e| e.from == file && e.span == import.path.span)
                            .map(|e| e.to);
                        if let Some(target) = target {
                            let plan = json_schema::import(workspace.sources.get(target), target);
                            self.diagnostics.extend(plan.diagnostics);
                            for event in plan.events {
                                self.add_event(event);
                            }
                            if let Some(fields) = plan.profile {
                                let place = Place {
                                    file: target,
                                    span: Span::at(0),
                                };
                                self.add_profile(&mut profile, &mut profile_fields, place, fields);
                            }
                        }
                    }
                    Item::Event(event) => {
                        let fields = self.record_type(file, &event.fields);
                        self.no_defaults(file, &event.fields, "an event");
                        self.add_event(EventInfo {
                            name: event.name.name.clone(),
                            wire_name: event
                                .wire_name
                                .as_ref()
                                .map_or_else(|| event.name.name.clone(), |w| w.value.clone()),
                            fields: Arc::new(fields),
                            doc: event.doc.clone(),
                            file,
                            span: event.name.span,
                        });
                    }
                    Item::Profile(decl) => {
                        let fields = self.record_type(file, &decl.fields);
                        self.check_defaults(file, &decl.fields, &fields);
                        let place = Place {
                            file,
                            span: decl.span,
                        };
                        self.add_profile(&mut profile, &mut profile_fields, place, fields);
                    }
                    Item::Template(template) => {
                        let name = template.name.name.clone();
                        let place = Place {
                            file,
                            span: template.name.span,
                        };
                        if let Some(first) = self.program.templates.get(&name) {
                            let first = Place {
                                file: first.file,
                                span: first.span,
                            };
                            self.duplicate("template", &name, first, place);
                            continue;
                        }
                        let params = self.record_type(file, &template.params);
                        self.no_defaults(file, &template.params, "a template");
                        self.program.templates.insert(
                            name.clone(),
                            TemplateInfo {
                                name,
                                channel: template.channel,
                                params: Arc::new(params),
                                file,
                                span: template.name.span,
                            },
                        );
                    }
                    Item::Segment(segment) => {
                        let name = segment.name.name.clone();
                        let place = Place {
                            file,
                            span: segment.name.span,
                        };
                        if let Some(first) = self.program.segments.get(&name) {
                            let first = Place {
                                file: first.file,
                                span: first.span,
                            };
                            self.duplicate("segment", &name, first, place);
                            continue;
                        }
                        self.program.segments.insert(
                            name.clone(),
                            SegmentInfo {
                                name: name.clone(),
                                file,
                                span: segment.name.span,
                            },
                        );
                        self.segment_bodies.insert(name, (file, segment));
                    }
                    Item::Journey(journey) => {
                        let name = journey.name.name.clone();
                        if let Some((first_file, first)) = self.journeys.get(&name) {
                            let first = Place {
                                file: *first_file,
                                span: first.name.span,
                            };
                            let again = Place {
                                file,
                                span: journey.name.span,
                            };
                            self.duplicate("journey", &name, first, again);
                            continue;
                        }
                        self.journeys.insert(name, (file, journey));
                    }
                    _ => {}
                }
            }
        }
        self.program.profile = Arc::new(profile_fields);
    }

    fn add_event(&mut self, event: EventInfo) {
        if let Some(first) = self.program.events.get(&event.name) {
            let first = Place {
                file: first.file,
                span: first.span,
            };
            let again = Place {
                file: event.file,
                span: event.span,
            };
            self.duplicate("event", &event.name.clone(), first, again);
            return;
        }
        if let Some(clash) = self
            .program
            .events
            .values()
            .find(|e| e.wire_name == event.wire_name)
        {
            let first = Place {
                file: clash.file,
                span: clash.span,
            };
            let name = format!("{} (wire name \"{}\")", event.name, event.wire_name);
            self.duplicate(
                "event",
                &name,
                first,
                Place {
                    file: event.file,
                    span: event.span,
                },
            );
            return;
        }
        self.program.events.insert(event.name.clone(), event);
    }

    fn add_profile(
        &mut self,
        profile: &mut Option<Place>,
        fields: &mut RecordType,
        place: Place,
        new: RecordType,
    ) {
        if let Some(first) = *profile {
            self.duplicate("profile", "profile", first, place);
            return;
        }
        *profile = Some(place);
        *fields = new;
    }

    /// Defaults are literals of their field's type.
    fn check_defaults(&mut self, file: FileId, decls: &[ast::FieldDecl], fields: &RecordType) {
        let mut scope = expr::Scope::new(file);
        for decl in decls {
            let (Some(default), Some(field)) = (&decl.default, fields.field(&decl.name.name))
            else {
                continue;
            };
            let literal = matches!(
                default.kind,
                ast::ExprKind::Int(_)
                    | ast::ExprKind::Float(_)
                    | ast::ExprKind::String(_)
                    | ast::ExprKind::Bool(_)
                    | ast::ExprKind::Duration(_)
                    | ast::ExprKind::Timestamp(_)
                    | ast::ExprKind::List(_)
            );
            if !literal {
                self.error(
                    Diagnostic::new(Code::TypeMismatch, "a default must be a literal value")
                        .primary(file, default.span, "not a literal")
                        .help("write the value itself, such as `0`, `\"free\"` or `[]`"),
                );
                continue;
            }
            let what = format!("the default of `{}`", decl.name.name);
            let ty = field.ty.clone();
            self.expect(default, &mut scope, &ty, &what);
        }
    }

    /// Only profile fields have defaults (an event field is present or it is not).
    fn no_defaults(&mut self, file: FileId, decls: &[ast::FieldDecl], what: &str) {
        for decl in decls {
            if let Some(default) = &decl.default {
                self.error(
                    Diagnostic::new(Code::TypeMismatch, format!("{what} field cannot have a default"))
                        .primary(file, default.span, "only profile fields have defaults")
                        .help("make the field optional with `?` and give the default where it is read: `x ?? 0`"),
                );
            }
        }
    }

    /// Declared fields → a record type, reporting duplicate field names.
    pub(crate) fn record_type(&mut self, file: FileId, fields: &[ast::FieldDecl]) -> RecordType {
        let mut record = RecordType::default();
        for field in fields {
            if let Some(first) = record.field(&field.name.name) {
                let first = Place {
                    file: first.file,
                    span: first.span,
                };
                self.duplicate(
                    "field",
                    &field.name.name,
                    first,
                    Place {
                        file,
                        span: field.name.span,
                    },
                );
                continue;
            }
            let ty = self.type_of_decl(file, &field.ty);
            record.fields.push(Field {
                name: field.name.name.clone(),
                ty,
                has_default: field.default.is_some(),
                doc: field.doc.clone(),
                file,
                span: field.name.span,
            });
        }
        record
    }

    fn type_of_decl(&mut self, file: FileId, ty: &ast::TypeExpr) -> Type {
        let base = match &ty.kind {
            ast::TypeKind::Bool => Type::Bool,
            ast::TypeKind::Int => Type::Int,
            ast::TypeKind::Float => Type::Float,
            ast::TypeKind::String => Type::String,
            ast::TypeKind::Timestamp => Type::Timestamp,
            ast::TypeKind::Duration => Type::Duration,
            ast::TypeKind::Enum(values) => {
                let mut seen: Vec<String> = Vec::new();
                for value in values {
                    if seen.contains(&value.value) {
                        self.error(
                            Diagnostic::new(
                                Code::DuplicateName,
                                format!("the enum value \"{}\" is listed twice", value.value),
                            )
                            .primary(
                                file,
                                value.span,
                                "listed again here",
                            ),
                        );
                    } else {
                        seen.push(value.value.clone());
                    }
                }
                Type::Enum(seen.into())
            }
            ast::TypeKind::List(item) => Type::List(Box::new(self.type_of_decl(file, item))),
            ast::TypeKind::Record(fields) => Type::Record(Arc::new(self.record_type(file, fields))),
        };
        if ty.optional {
            base.optional()
        } else {
            base
        }
    }

    /// An "unknown X" diagnostic with a did-you-mean over `known`.
    fn unknown<'a>(
        &mut self,
        code: Code,
        what: &str,
        name: &ast::Ident,
        file: FileId,
        known: impl IntoIterator<Item = &'a str> + Clone,
    ) {
        let mut diagnostic = Diagnostic::new(code, format!("there is no {what} `{}`", name.name))
            .primary(file, name.span, format!("unknown {what}"));
        if let Some(suggestion) = did_you_mean(&name.name, known.clone()) {
            diagnostic =
                diagnostic.did_you_mean(file, name.span, &format!("`{suggestion}`"), suggestion);
        } else {
            let mut all: Vec<&str> = known.into_iter().collect();
            all.sort_unstable();
            if !all.is_empty() && all.len() <= 12 {
                let list: Vec<String> = all.iter().map(|n| format!("`{n}`")).collect();
                diagnostic = diagnostic.note(format!("known: {}", list.join(", ")));
            }
        }
        self.error(diagnostic);
    }

    /// The fields of the event `name`, reporting it (with a did-you-mean) when it is unknown.
    pub(crate) fn event_fields(
        &mut self,
        name: &ast::Ident,
        file: FileId,
    ) -> Option<Arc<RecordType>> {
        if let Some(event) = self.program.events.get(&name.name) {
            return Some(event.fields.clone());
        }
        let known: Vec<String> = self.program.events.keys().cloned().collect();
        self.unknown(
            Code::UnknownEvent,
            "event",
            name,
            file,
            known.iter().map(String::as_str),
        );
        None
    }

    fn check_segments(&mut self) {
        let bodies: Vec<(FileId, &ast::SegmentDecl)> =
            self.segment_bodies.values().copied().collect();
        for (file, segment) in bodies {
            let mut scope = expr::Scope::new(file);
            scope.since_entry = expr::SinceEntry::Forbidden("segments");
            self.condition(&segment.condition, &mut scope, "a segment");
        }
        self.check_segment_cycles();
    }

    /// A segment may use other segments, but not itself, directly or through others.
    fn check_segment_cycles(&mut self) {
        let names: Vec<&String> = self.segment_bodies.keys().collect();
        let mut edges = Vec::new();
        let mut uses = Vec::new();
        for (from, name) in names.iter().enumerate() {
            let Some((file, segment)) = self.segment_bodies.get(*name) else {
                continue;
            };
            let mut found = Vec::new();
            collect_names(&segment.condition, &mut found);
            for used in found {
                if let Some(to) = names.iter().position(|n| **n == used.name) {
                    edges.push((from, to));
                    uses.push((*file, used.span));
                }
            }
        }
        let mut cycles = Vec::new();
        for (edge, cycle) in crate::graph::cycles(names.len(), &edges) {
            let (file, span) = uses[edge];
            let path: Vec<String> = cycle.iter().map(|i| format!("`{}`", names[*i])).collect();
            cycles.push(
                Diagnostic::new(Code::SegmentCycle, "segments use each other in a cycle")
                    .primary(file, span, "this use closes the cycle")
                    .note(format!("the cycle: {}", path.join(" → ")))
                    .help("a segment must be defined without itself; break the cycle"),
            );
        }
        self.diagnostics.extend(cycles);
    }

    fn check_journeys(&mut self) {
        let journeys: Vec<(FileId, &ast::Journey)> = self.journeys.values().copied().collect();
        let mut facts = Vec::new();
        for (file, journey) in journeys {
            facts.push(self.journey(file, journey));
        }
        // Report in source order.
        facts.sort_by_key(|f: &JourneyFacts| (f.file, f.span.start));
        self.program.journeys = facts;
    }

    /// `start`s may not form a cycle (a user could loop through the journeys forever).
    fn check_starts(&mut self) {
        let names: Vec<&String> = self.journeys.keys().collect();
        let index = |name: &str| names.iter().position(|n| *n == name).unwrap_or(0);
        let edges: Vec<(usize, usize)> = self
            .starts
            .iter()
            .map(|(from, to, _, _)| (index(from), index(to)))
            .collect();
        let mut found = Vec::new();
        for (edge, cycle) in crate::graph::cycles(names.len(), &edges) {
            let (_, _, file, span) = &self.starts[edge];
            let cycle: Vec<String> = cycle.iter().map(|i| format!("`{}`", names[*i])).collect();
            found.push(
                Diagnostic::new(Code::StartCycle, "journeys start each other in a cycle")
                    .primary(*file, *span, "this `start` closes the cycle")
                    .note(format!("the cycle: {}", cycle.join(" → ")))
                    .help("a user could loop through these journeys forever; break the cycle"),
            );
        }
        self.diagnostics.extend(found);
    }

    fn report_unused(&mut self) {
        let unused_templates: Vec<(String, FileId, Span)> = self
            .program
            .templates
            .values()
            .filter(|t| !self.used_templates.contains(&t.name))
            .map(|t| (t.name.clone(), t.file, t.span))
            .collect();
        for (name, file, span) in unused_templates {
            self.error(
                Diagnostic::new(
                    Code::UnusedTemplate,
                    format!("the template `{name}` is never sent"),
                )
                .primary(file, span, "declared here")
                .help("send it from a journey, or remove it"),
            );
        }
        let unused_segments: Vec<(String, FileId, Span)> = self
            .program
            .segments
            .values()
            .filter(|s| !self.used_segments.contains(&s.name))
            .map(|s| (s.name.clone(), s.file, s.span))
            .collect();
        for (name, file, span) in unused_segments {
            self.error(
                Diagnostic::new(
                    Code::UnusedSegment,
                    format!("the segment `{name}` is never used"),
                )
                .primary(file, span, "declared here")
                .help("use it in a condition, or remove it"),
            );
        }
    }
}
