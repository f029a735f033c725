//! A checked workspace (its files' ASTs and the checker's `Program`) → where every name is
//! declared and used: events and their fields, the profile's fields, templates and their
//! parameters, segments, journeys, step labels, goals and exits, and bindings. The language
//! server answers go-to-definition, references, rename and hover from it.

use crate::ast::{
    self, Entry, Expectation, Expr, ExprKind, Item, SendTarget, SettingKind, Step, StepKind,
    TestLineKind, TriggerCondition,
};
use crate::check::Program;
use crate::source::{FileId, Span};
use crate::workspace::Workspace;

/// What a name stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Symbol {
    Event(String),
    EventField {
        event: String,
        field: String,
    },
    ProfileField(String),
    Template(String),
    TemplateParam {
        template: String,
        param: String,
    },
    Segment(String),
    Journey(String),
    Label {
        journey: String,
        label: String,
    },
    /// A goal or exit of a journey.
    Outcome {
        journey: String,
        name: String,
    },
    /// `as name`, told apart by where it is declared; `event` is the event it binds.
    Binding {
        name: String,
        event: String,
        file: FileId,
        declared: Span,
    },
}

/// One place a name is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    pub file: FileId,
    pub span: Span,
    pub symbol: Symbol,
    pub declaration: bool,
}

#[derive(Debug, Default)]
pub struct Index {
    /// By file, then position.
    pub occurrences: Vec<Occurrence>,
}

impl Index {
    pub fn build(workspace: &Workspace, program: &Program) -> Index {
        let mut walker = Walker {
            program,
            file: FileId(0),
            out: Vec::new(),
        };
        for module in &workspace.modules {
            walker.file = module.file;
            for item in &module.items {
                walker.item(item);
            }
        }
        // Events and fields declared in JSON-Schema tracking plans (not in any AST).
        let in_ast: std::collections::BTreeSet<String> = walker
            .out
            .iter()
            .filter(|o| o.declaration)
            .filter_map(|o| match &o.symbol {
                Symbol::Event(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        for event in program.events.values() {
            if !in_ast.contains(&event.name) {
                walker.out.push(Occurrence {
                    file: event.file,
                    span: event.span,
                    symbol: Symbol::Event(event.name.clone()),
                    declaration: true,
                });
                for field in &event.fields.fields {
                    walker.out.push(Occurrence {
                        file: field.file,
                        span: field.span,
                        symbol: Symbol::EventField {
                            event: event.name.clone(),
                            field: field.name.clone(),
                        },
                        declaration: true,
                    });
                }
            }
        }
        let mut occurrences = walker.out;
        occurrences.sort_by_key(|o| (o.file, o.span.start, o.span.end));
        occurrences.dedup();
        Index { occurrences }
    }

    /// The name at byte `offset` of `file` (its end included: the cursor after a name).
    pub fn at(&self, file: FileId, offset: u32) -> Option<&Occurrence> {
        self.occurrences
            .iter()
            .filter(|o| o.file == file && o.span.start <= offset && offset <= o.span.end)
            .min_by_key(|o| o.span.end - o.span.start)
    }

    pub fn declaration(&self, symbol: &Symbol) -> Option<&Occurrence> {
        self.occurrences
            .iter()
            .find(|o| o.declaration && o.symbol == *symbol)
    }

    /// Every place the symbol is written, its declaration included.
    pub fn occurrences_of<'a>(
        &'a self,
        symbol: &'a Symbol,
    ) -> impl Iterator<Item = &'a Occurrence> {
        self.occurrences.iter().filter(move |o| o.symbol == *symbol)
    }
}

/// The bindings in scope and the event a `where` clause matches.
#[derive(Clone, Default)]
struct Scope {
    journey: String,
    /// (name, event, declared)
    bindings: Vec<(String, String, Span)>,
    matching: Option<String>,
}

struct Walker<'p> {
    program: &'p Program,
    file: FileId,
    out: Vec<Occurrence>,
}

impl Walker<'_> {
    fn add(&mut self, span: Span, symbol: Symbol, declaration: bool) {
        self.out.push(Occurrence {
            file: self.file,
            span,
            symbol,
            declaration,
        });
    }

    fn has_field(&self, event: &str, field: &str) -> bool {
        self.program
            .events
            .get(event)
            .is_some_and(|e| e.fields.fields.iter().any(|f| f.name == field))
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Import(_) | Item::Cap(_) => {}
            Item::Event(e) => {
                self.add(e.name.span, Symbol::Event(e.name.name.clone()), true);
                for f in &e.fields {
                    let symbol = Symbol::EventField {
                        event: e.name.name.clone(),
                        field: f.name.name.clone(),
                    };
                    self.add(f.name.span, symbol, true);
                }
            }
            Item::Profile(p) => {
                for f in &p.fields {
                    self.add(f.name.span, Symbol::ProfileField(f.name.name.clone()), true);
                    if let Some(default) = &f.default {
                        self.expr(default, &Scope::default());
                    }
                }
            }
            Item::Template(t) => {
                self.add(t.name.span, Symbol::Template(t.name.name.clone()), true);
                for p in &t.params {
                    let symbol = Symbol::TemplateParam {
                        template: t.name.name.clone(),
                        param: p.name.name.clone(),
                    };
                    self.add(p.name.span, symbol, true);
                }
            }
            Item::Segment(s) => {
                self.add(s.name.span, Symbol::Segment(s.name.name.clone()), true);
                self.expr(&s.condition, &Scope::default());
            }
            Item::Journey(j) => self.journey(j),
            Item::Test(t) => self.test(t),
        }
    }

    fn journey(&mut self, journey: &ast::Journey) {
        let name = journey.name.name.clone();
        self.add(journey.name.span, Symbol::Journey(name.clone()), true);
        let mut scope = Scope {
            journey: name.clone(),
            ..Scope::default()
        };
        if let Some(Entry::On {
            event,
            binding: Some(binding),
            ..
        }) = journey.entry()
        {
            scope
                .bindings
                .push((binding.name.clone(), event.name.clone(), binding.span));
        }
        for setting in &journey.settings {
            match &setting.kind {
                SettingKind::Entry(entry) => self.entry(entry, &scope),
                SettingKind::Audience(e) | SettingKind::Correlate(e) | SettingKind::Timezone(e) => {
                    self.expr(e, &scope)
                }
                SettingKind::Goal(t) | SettingKind::Exit(t) => {
                    let symbol = Symbol::Outcome {
                        journey: name.clone(),
                        name: t.name.name.clone(),
                    };
                    self.add(t.name.span, symbol, true);
                    match &t.condition {
                        TriggerCondition::Event { event, filter } => {
                            self.event_ref(event);
                            if let Some(f) = filter {
                                self.matching(f, &scope, &event.name);
                            }
                        }
                        TriggerCondition::When(e) => self.expr(e, &scope),
                    }
                }
                _ => {}
            }
        }
        self.steps(&journey.steps, &mut scope);
    }

    fn entry(&mut self, entry: &Entry, scope: &Scope) {
        match entry {
            Entry::On {
                event,
                binding,
                filter,
                unless,
            } => {
                self.event_ref(event);
                if let Some(b) = binding {
                    self.add(b.span, self.binding_symbol(b, &event.name), true);
                }
                if let Some(f) = filter {
                    self.matching(f, scope, &event.name);
                }
                if let Some(u) = unless {
                    self.event_ref(&u.event);
                    if let Some(f) = &u.filter {
                        self.matching(f, scope, &u.event.name);
                    }
                }
            }
            Entry::When(e) => self.expr(e, scope),
            _ => {}
        }
    }

    fn binding_symbol(&self, binding: &ast::Ident, event: &str) -> Symbol {
        Symbol::Binding {
            name: binding.name.clone(),
            event: event.to_string(),
            file: self.file,
            declared: binding.span,
        }
    }

    fn event_ref(&mut self, event: &ast::Ident) {
        self.add(event.span, Symbol::Event(event.name.clone()), false);
    }

    /// A `where` clause over `event`.
    fn matching(&mut self, filter: &Expr, scope: &Scope, event: &str) {
        let inner = Scope {
            matching: Some(event.to_string()),
            ..scope.clone()
        };
        self.expr(filter, &inner);
    }

    fn steps(&mut self, steps: &[Step], scope: &mut Scope) {
        for step in steps {
            if let Some(label) = &step.label {
                let symbol = Symbol::Label {
                    journey: scope.journey.clone(),
                    label: label.name.clone(),
                };
                self.add(label.span, symbol, true);
            }
            self.step(step, scope);
        }
    }

    fn block(&mut self, block: &Option<ast::Block>, scope: &Scope) {
        if let Some(block) = block {
            let mut inner = scope.clone();
            self.steps(&block.steps, &mut inner);
        }
    }

    fn step(&mut self, step: &Step, scope: &mut Scope) {
        match &step.kind {
            StepKind::Wait(_) | StepKind::WaitUntilTime { .. } | StepKind::Exit => {}
            StepKind::WaitUntil {
                target,
                then,
                on_timeout,
                ..
            } => {
                self.expr(target, scope);
                self.block(then, scope);
                self.block(on_timeout, scope);
            }
            StepKind::WaitFor {
                event,
                binding,
                filter,
                then,
                on_timeout,
                ..
            } => {
                self.event_ref(event);
                if let Some(f) = filter {
                    self.matching(f, scope, &event.name);
                }
                let mut inner = scope.clone();
                if let Some(b) = binding {
                    self.add(b.span, self.binding_symbol(b, &event.name), true);
                    inner
                        .bindings
                        .push((b.name.clone(), event.name.clone(), b.span));
                }
                self.block(then, &inner);
                self.block(on_timeout, scope);
                if then.is_none() && on_timeout.is_none() {
                    // Without blocks the binding is visible after the step.
                    *scope = inner;
                }
            }
            StepKind::WaitAny {
                arms, on_timeout, ..
            } => {
                for arm in arms {
                    self.event_ref(&arm.event);
                    if let Some(f) = &arm.filter {
                        self.matching(f, scope, &arm.event.name);
                    }
                    let mut inner = scope.clone();
                    if let Some(b) = &arm.binding {
                        self.add(b.span, self.binding_symbol(b, &arm.event.name), true);
                        inner
                            .bindings
                            .push((b.name.clone(), arm.event.name.clone(), b.span));
                    }
                    self.steps(&arm.block.steps, &mut inner);
                }
                self.block(on_timeout, scope);
            }
            StepKind::Send(send) => {
                let template = match &send.target {
                    SendTarget::Template(name) => {
                        self.add(name.span, Symbol::Template(name.name.clone()), false);
                        Some(name.name.clone())
                    }
                    SendTarget::Channel { .. } => None,
                };
                if let Some(args) = &send.args {
                    self.record(args, scope, template.as_deref());
                }
            }
            StepKind::Set { field, value }
            | StepKind::Add { value, field }
            | StepKind::Remove { value, field } => {
                self.add(field.span, Symbol::ProfileField(field.name.clone()), false);
                self.expr(value, scope);
            }
            StepKind::If { arms, otherwise } => {
                for (condition, block) in arms {
                    self.expr(condition, scope);
                    self.block(&Some(block.clone()), scope);
                }
                self.block(otherwise, scope);
            }
            StepKind::Branch { arms, otherwise } => {
                for arm in arms {
                    self.expr(&arm.condition, scope);
                    self.block(&Some(arm.block.clone()), scope);
                }
                self.block(otherwise, scope);
            }
            StepKind::Split { arms } => {
                for arm in arms {
                    self.block(&Some(arm.block.clone()), scope);
                }
            }
            StepKind::Start(journey) => {
                self.add(journey.span, Symbol::Journey(journey.name.clone()), false)
            }
        }
    }

    /// Send arguments (keys are the template's parameters) or record values.
    fn record(&mut self, record: &ast::Record, scope: &Scope, template: Option<&str>) {
        for entry in &record.entries {
            if let Some(template) = template {
                let symbol = Symbol::TemplateParam {
                    template: template.to_string(),
                    param: entry.key.name.clone(),
                };
                self.add(entry.key.span, symbol, false);
            }
            self.expr(&entry.value, scope);
        }
    }

    fn expr(&mut self, expr: &Expr, scope: &Scope) {
        match &expr.kind {
            ExprKind::Name(name) => {
                if let Some(event) = &scope.matching {
                    if self.has_field(event, &name.name) {
                        let symbol = Symbol::EventField {
                            event: event.clone(),
                            field: name.name.clone(),
                        };
                        self.add(name.span, symbol, false);
                        return;
                    }
                }
                if let Some((_, event, declared)) = scope
                    .bindings
                    .iter()
                    .rev()
                    .find(|(n, _, _)| *n == name.name)
                {
                    let symbol = Symbol::Binding {
                        name: name.name.clone(),
                        event: event.clone(),
                        file: self.file,
                        declared: *declared,
                    };
                    self.add(name.span, symbol, false);
                } else if self.program.segments.contains_key(&name.name) {
                    self.add(name.span, Symbol::Segment(name.name.clone()), false);
                }
            }
            ExprKind::Field { base, field } => {
                match &base.kind {
                    ExprKind::Profile => {
                        self.add(field.span, Symbol::ProfileField(field.name.clone()), false)
                    }
                    ExprKind::Name(name) => {
                        let event = scope
                            .bindings
                            .iter()
                            .rev()
                            .find(|(n, _, _)| *n == name.name)
                            .map(|(_, e, _)| e.clone());
                        if let Some(event) = event {
                            let symbol = Symbol::EventField {
                                event,
                                field: field.name.clone(),
                            };
                            self.add(field.span, symbol, false);
                        }
                    }
                    ExprKind::History(h) if h.function == ast::HistoryFn::Last => {
                        let symbol = Symbol::EventField {
                            event: h.event.name.clone(),
                            field: field.name.clone(),
                        };
                        self.add(field.span, symbol, false);
                    }
                    _ => {}
                }
                self.expr(base, scope);
            }
            ExprKind::History(h) => {
                self.event_ref(&h.event);
                if let Some(field) = &h.field {
                    let symbol = Symbol::EventField {
                        event: h.event.name.clone(),
                        field: field.name.clone(),
                    };
                    self.add(field.span, symbol, false);
                }
                if let Some(f) = &h.filter {
                    self.matching(f, scope, &h.event.name);
                }
            }
            ExprKind::Unary { operand, .. } | ExprKind::IsSet { operand, .. } => {
                self.expr(operand, scope)
            }
            ExprKind::Binary { lhs, rhs, .. } => {
                self.expr(lhs, scope);
                self.expr(rhs, scope);
            }
            ExprKind::Call { args, .. } => {
                for a in args {
                    self.expr(a, scope);
                }
            }
            ExprKind::List(items) => {
                for i in items {
                    self.expr(i, scope);
                }
            }
            ExprKind::Record(record) => self.record(record, scope, None),
            _ => {}
        }
    }

    fn test(&mut self, test: &ast::TestDecl) {
        let journey = test.journey.name.clone();
        self.add(test.journey.span, Symbol::Journey(journey.clone()), false);
        let profile_keys = |walker: &mut Walker, record: &ast::Record| {
            for entry in &record.entries {
                let symbol = Symbol::ProfileField(entry.key.name.clone());
                walker.add(entry.key.span, symbol, false);
            }
        };
        for line in &test.lines {
            match &line.kind {
                TestLineKind::Profile(record) | TestLineKind::Identify { traits: record, .. } => {
                    profile_keys(self, record)
                }
                TestLineKind::Track {
                    event, properties, ..
                } => {
                    self.event_ref(event);
                    for entry in properties.iter().flat_map(|p| &p.entries) {
                        let symbol = Symbol::EventField {
                            event: event.name.clone(),
                            field: entry.key.name.clone(),
                        };
                        self.add(entry.key.span, symbol, false);
                    }
                }
                TestLineKind::Expect(Expectation::Send {
                    target: SendTarget::Template(name),
                    ..
                }) => self.add(name.span, Symbol::Template(name.name.clone()), false),
                TestLineKind::Expect(Expectation::Exit {
                    name: Some(name), ..
                }) => {
                    let symbol = Symbol::Outcome {
                        journey: journey.clone(),
                        name: name.name.clone(),
                    };
                    self.add(name.span, symbol, false);
                }
                TestLineKind::Expect(Expectation::At { label, .. }) => {
                    let symbol = Symbol::Label {
                        journey: journey.clone(),
                        label: label.name.clone(),
                    };
                    self.add(label.span, symbol, false);
                }
                _ => {}
            }
        }
    }
}
