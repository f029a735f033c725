//! Checked workspace → bytecode `Program` (the format the runtime owns, docs/bytecode.md).
//!
//! Expressions become blocks of stack code; a journey's steps become one body block whose waits,
//! sends and splits point into per-journey tables. Binding fields are copied into instance slots
//! only when something reads them, and events keep only the fields the program reads or requires.
//!
//! **Invariant:** lowering runs only on a workspace that checked without errors, and everything
//! it emits passes `journey_runtime::bytecode::verify::verify` (a test verifies every example).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use journey_runtime::bytecode::opcode::{encode, Opcode};
use journey_runtime::bytecode::verify::kind;
use journey_runtime::bytecode::{self as bc, types as ty, NONE};

use crate::ast::{self, BinaryOp, Expr, ExprKind, HistoryFn, Item, StepKind, UnaryOp};
use crate::check::{self, Type};
use crate::source::{FileId, SourceMap, Span};

/// Compiles a checked workspace.
pub fn lower(workspace: &crate::workspace::Workspace, checked: &check::Program) -> bc::Program {
    let mut lowering = Lowering::new(&workspace.sources, checked);
    for module in &workspace.modules {
        for item in &module.items {
            match item {
                Item::Segment(segment) => {
                    lowering.segments.insert(
                        segment.name.name.clone(),
                        (module.file, segment.condition.clone()),
                    );
                }
                Item::Journey(journey) => {
                    lowering
                        .journey_asts
                        .insert(journey.name.name.clone(), (module.file, journey.clone()));
                }
                Item::Profile(profile) => {
                    lowering.profile_defaults = profile
                        .fields
                        .iter()
                        .filter_map(|f| f.default.clone().map(|d| (f.name.name.clone(), d)))
                        .collect();
                }
                Item::Cap(cap) => lowering.program.caps.push(bc::CapDesc {
                    channel: match cap.scope {
                        ast::CapScope::All => None,
                        ast::CapScope::Channel(c) => Some(channel(c)),
                    },
                    limit: u32::try_from(cap.limit).unwrap_or(u32::MAX),
                    window_ms: millis(cap.window.seconds),
                }),
                _ => {}
            }
        }
    }
    lowering.run();
    lowering.finish()
}

fn millis(seconds: u64) -> i64 {
    i64::try_from(seconds)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000)
}

fn channel(c: ast::Channel) -> bc::Channel {
    match c {
        ast::Channel::Email => bc::Channel::Email,
        ast::Channel::Sms => bc::Channel::Sms,
        ast::Channel::Push => bc::Channel::Push,
        ast::Channel::InApp => bc::Channel::InApp,
        ast::Channel::Webhook => bc::Channel::Webhook,
        ast::Channel::Destination => bc::Channel::Destination,
    }
}

/// Where the captures of a binding go: the table entry of the event it binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Sink {
    Entry,
    Wait(usize),
    WaitArm(usize, usize),
}

#[derive(Debug, Clone)]
struct Binding {
    name: String,
    event: u32,
    sink: Sink,
}

/// What names mean while an expression is lowered.
#[derive(Debug, Clone, Default)]
struct Scope {
    file: FileId,
    bindings: Vec<Binding>,
    /// The block's own event (bare names in `where` are its fields)...
    event: Option<u32>,
    /// ...and the binding that names it (read with `LoadEvent`, not from a slot).
    event_binding: Option<String>,
    journey: Option<usize>,
}

/// A code buffer with relative offsets; jump operands are patched when it is placed.
#[derive(Default)]
struct Code {
    bytes: Vec<u8>,
    /// Offsets of u32 jump operands (relative targets).
    jumps: Vec<usize>,
    /// Offsets of u16 `LoadEvent` operands, with the event whose field they index.
    event_fields: Vec<(usize, u32)>,
    lines: Vec<(u32, u16, u32)>,
}

impl Code {
    fn op(&mut self, opcode: Opcode, operands: &[u32]) -> u32 {
        encode(&mut self.bytes, opcode, operands)
    }
    fn here(&self) -> u32 {
        self.bytes.len() as u32
    }
    /// Emits a jump whose target is set later by `patch`.
    fn jump(&mut self, opcode: Opcode) -> usize {
        let at = self.op(opcode, &[0]) as usize + 1;
        self.jumps.push(at);
        at
    }
    fn patch(&mut self, operand: usize, target: u32) {
        self.bytes[operand..operand + 4].copy_from_slice(&target.to_le_bytes());
    }
}

struct JourneyState {
    desc: bc::JourneyDesc,
    /// (binding identity, field) → slot.
    slots: HashMap<(String, Sink, u32), u16>,
    step_counter: usize,
    /// Table targets (relative to the body) to rebase: waits, wait-any arms, splits.
    pending_targets: Vec<TargetRef>,
}

#[derive(Clone, Copy)]
enum TargetRef {
    WaitTimeout(usize),
    WaitAnyArm(usize, usize),
    WaitAnyTimeout(usize),
    SplitArm(usize, usize),
}

struct Lowering<'a> {
    sources: &'a SourceMap,
    checked: &'a check::Program,
    program: bc::Program,
    strings: HashMap<String, u32>,
    constants: Vec<(bc::Constant, u32)>,
    types: HashMap<bc::TypeDesc, u32>,
    expression_types: HashMap<(FileId, u32, u32), Type>,
    event_ids: BTreeMap<String, u32>,
    /// Fields of each event as declared (before pruning), and which are read.
    event_fields: Vec<Vec<check::Field>>,
    fields_read: Vec<Vec<bool>>,
    /// Event-field references in tables, to renumber after pruning: (journey, sink, capture).
    segments: BTreeMap<String, (FileId, Expr)>,
    journey_asts: BTreeMap<String, (FileId, ast::Journey)>,
    journey_ids: BTreeMap<String, u32>,
    journeys: Vec<JourneyState>,
    profile_fields: Vec<check::Field>,
    debug_files: HashMap<FileId, u16>,
    /// Code offsets of `LoadEvent` operands and their event, renumbered after pruning.
    patch_sites: Vec<(usize, u32)>,
    /// `points: int = 0`: the literal defaults of profile fields, by field name.
    profile_defaults: Vec<(String, Expr)>,
}

impl<'a> Lowering<'a> {
    fn new(sources: &'a SourceMap, checked: &'a check::Program) -> Lowering<'a> {
        let expression_types = checked
            .expression_types
            .iter()
            .map(|(file, span, ty)| ((*file, span.start, span.end), ty.clone()))
            .collect();
        Lowering {
            sources,
            checked,
            program: bc::Program {
                profile: NONE,
                debug: Some(bc::DebugInfo::default()),
                ..Default::default()
            },
            strings: HashMap::new(),
            constants: Vec::new(),
            types: HashMap::new(),
            expression_types,
            event_ids: BTreeMap::new(),
            event_fields: Vec::new(),
            fields_read: Vec::new(),
            segments: BTreeMap::new(),
            journey_asts: BTreeMap::new(),
            journey_ids: BTreeMap::new(),
            journeys: Vec::new(),
            profile_fields: checked.profile.fields.clone(),
            debug_files: HashMap::new(),
            patch_sites: Vec::new(),
            profile_defaults: Vec::new(),
        }
    }

    fn string(&mut self, s: &str) -> u32 {
        if let Some(id) = self.strings.get(s) {
            return *id;
        }
        let id = self.program.strings.len() as u32;
        self.program.strings.push(s.to_string());
        self.strings.insert(s.to_string(), id);
        id
    }

    fn constant(&mut self, c: bc::Constant) -> u32 {
        if let Some((_, id)) = self.constants.iter().find(|(k, _)| constant_eq(k, &c)) {
            return *id;
        }
        let id = self.program.constants.len() as u32;
        self.program.constants.push(c.clone());
        self.constants.push((c, id));
        id
    }

    fn intern_type(&mut self, desc: bc::TypeDesc) -> u32 {
        if let Some(id) = self.types.get(&desc) {
            return *id;
        }
        let id = ty::BUILTIN + self.program.types.len() as u32;
        self.program.types.push(desc.clone());
        self.types.insert(desc, id);
        id
    }

    /// A checker type → a type id (children first, so types only refer backwards).
    fn type_id(&mut self, t: &Type) -> u32 {
        match t {
            Type::Bool => ty::BOOL,
            Type::Int => ty::INT,
            Type::Float => ty::FLOAT,
            Type::String | Type::Error => ty::STRING,
            Type::Timestamp => ty::TIMESTAMP,
            Type::Duration => ty::DURATION,
            Type::Enum(values) => {
                let ids = values.iter().map(|v| self.string(v)).collect();
                self.intern_type(bc::TypeDesc::Enum(ids))
            }
            Type::List(item) => {
                let item = self.type_id(item);
                self.intern_type(bc::TypeDesc::List(item))
            }
            Type::EmptyList => self.intern_type(bc::TypeDesc::List(ty::STRING)),
            Type::Record(record) => self.record_type(&record.fields),
            Type::Optional(inner) => {
                let inner = self.type_id(inner);
                self.intern_type(bc::TypeDesc::Optional(inner))
            }
        }
    }

    fn record_type(&mut self, fields: &[check::Field]) -> u32 {
        let fields = fields
            .iter()
            .map(|f| bc::FieldDesc {
                name: self.string(&f.name),
                ty: self.type_id(&f.ty),
            })
            .collect();
        self.intern_type(bc::TypeDesc::Record(fields))
    }

    fn type_of(&self, file: FileId, span: Span) -> Type {
        self.expression_types
            .get(&(file, span.start, span.end))
            .cloned()
            .unwrap_or(Type::Error)
    }

    fn debug_file(&mut self, file: FileId) -> u16 {
        if let Some(id) = self.debug_files.get(&file) {
            return *id;
        }
        let name = self.string(&self.sources.get(file).name.clone());
        let debug = self.program.debug.get_or_insert_with(Default::default);
        let id = debug.files.len() as u16;
        debug.files.push(name);
        self.debug_files.insert(file, id);
        id
    }

    fn line(&mut self, code: &mut Code, file: FileId, span: Span) {
        let line = self.sources.get(file).line_col(span.start as usize).line as u32;
        let file = self.debug_file(file);
        code.lines.push((code.here(), file, line));
    }

    /// Appends a finished block; returns its index.
    fn place(&mut self, kind: bc::BlockKind, mut code: Code) -> u32 {
        let base = self.program.code.len() as u32;
        for at in std::mem::take(&mut code.jumps) {
            let relative = u32::from_le_bytes([
                code.bytes[at],
                code.bytes[at + 1],
                code.bytes[at + 2],
                code.bytes[at + 3],
            ]);
            code.patch(at, relative + base);
        }
        for (at, event) in &code.event_fields {
            self.patch_sites.push((base as usize + at, *event));
        }
        if let Some(debug) = &mut self.program.debug {
            debug
                .lines
                .extend(code.lines.iter().map(|(o, f, l)| (o + base, *f, *l)));
        }
        let index = self.program.blocks.len() as u32;
        self.program.blocks.push(bc::Block {
            kind,
            offset: base,
            length: code.bytes.len() as u32,
        });
        self.program.code.extend_from_slice(&code.bytes);
        index
    }
}

impl Lowering<'_> {
    /// A literal (a profile default, a list of literals) as a constant; `float` widens an int.
    fn literal(&mut self, expr: &Expr, float: bool) -> Option<u32> {
        let constant = match &expr.kind {
            ExprKind::Int(n) if float => bc::Constant::Float(*n as f64),
            ExprKind::Int(n) => bc::Constant::Int(*n),
            ExprKind::Float(n) => bc::Constant::Float(*n),
            ExprKind::String(s) => bc::Constant::String(self.string(s)),
            ExprKind::Bool(b) => bc::Constant::Bool(*b),
            ExprKind::Duration(s) => bc::Constant::Duration(millis(*s)),
            ExprKind::Timestamp(ms) => bc::Constant::Timestamp(*ms),
            ExprKind::List(items) => {
                let items = items
                    .iter()
                    .map(|i| self.literal(i, float))
                    .collect::<Option<Vec<u32>>>()?;
                bc::Constant::List(items)
            }
            _ => return None,
        };
        Some(self.constant(constant))
    }
}

fn constant_eq(a: &bc::Constant, b: &bc::Constant) -> bool {
    match (a, b) {
        (bc::Constant::Float(x), bc::Constant::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

impl Lowering<'_> {
    fn run(&mut self) {
        // Events in name order, profile, templates: the tables every block refers to.
        for (i, (name, info)) in self.checked.events.iter().enumerate() {
            self.event_ids.insert(name.clone(), i as u32);
            self.event_fields.push(info.fields.fields.clone());
            self.fields_read.push(vec![false; info.fields.fields.len()]);
        }
        let templates: Vec<check::TemplateInfo> =
            self.checked.templates.values().cloned().collect();
        for template in &templates {
            let desc = bc::TemplateDesc {
                name: self.string(&template.name),
                channel: channel(template.channel),
                params: self.record_type(&template.params.fields),
            };
            self.program.templates.push(desc);
        }
        let facts: Vec<check::JourneyFacts> = self.checked.journeys.clone();
        for (i, journey) in facts.iter().enumerate() {
            self.journey_ids.insert(journey.name.clone(), i as u32);
        }
        for journey in &facts {
            let Some((file, ast)) = self.journey_asts.get(&journey.name).cloned() else {
                continue;
            };
            self.journey(file, &ast);
        }
    }

    fn finish(mut self) -> bc::Program {
        // Events keep the fields that are read and the ones input must carry (required).
        let mut remaps: Vec<Vec<u32>> = Vec::new();
        for (e, fields) in self.event_fields.clone().iter().enumerate() {
            let mut kept = Vec::new();
            let mut remap = vec![NONE; fields.len()];
            for (i, field) in fields.iter().enumerate() {
                if self.fields_read[e][i] || !field.ty.is_optional() {
                    remap[i] = kept.len() as u32;
                    kept.push(field.clone());
                }
            }
            remaps.push(remap);
            let (name, wire) = self
                .checked
                .events
                .values()
                .nth(e)
                .map(|info| (info.name.clone(), info.wire_name.clone()))
                .unwrap_or_default();
            let record = self.record_type(&kept);
            let desc = bc::EventDesc {
                name: self.string(&name),
                wire_name: self.string(&wire),
                record,
            };
            self.program.events.push(desc);
        }
        let remap = |event: u32, field: u32| {
            remaps
                .get(event as usize)
                .and_then(|r| r.get(field as usize))
                .copied()
                .unwrap_or(NONE)
        };
        for (at, event) in std::mem::take(&mut self.patch_sites) {
            let old = u32::from(u16::from_le_bytes([
                self.program.code[at],
                self.program.code[at + 1],
            ]));
            let new = remap(event, old) as u16;
            self.program.code[at..at + 2].copy_from_slice(&new.to_le_bytes());
        }
        for query in &mut self.program.history {
            if query.field != NONE {
                query.field = remap(query.event, query.field);
            }
        }
        let fix = |event: u32, captures: &mut Vec<bc::Capture>| {
            for c in captures {
                c.field = remap(event, u32::from(c.field)) as u16;
            }
        };
        let mut journeys = Vec::new();
        for mut state in std::mem::take(&mut self.journeys) {
            if let bc::Entry::On { event, .. } = state.desc.entry {
                fix(event, &mut state.desc.entry_captures);
            }
            for wait in &mut state.desc.waits {
                if let bc::WaitKind::Event {
                    event, captures, ..
                } = &mut wait.kind
                {
                    fix(*event, captures);
                }
            }
            for wait in &mut state.desc.wait_anys {
                for arm in &mut wait.arms {
                    fix(arm.event, &mut arm.captures);
                }
            }
            journeys.push(state.desc);
        }
        self.program.journeys = journeys;
        if !self.profile_fields.is_empty() {
            let fields = self.profile_fields.clone();
            self.program.profile = self.record_type(&fields);
            for (name, default) in std::mem::take(&mut self.profile_defaults) {
                let Some(index) = fields.iter().position(|f| f.name == name) else {
                    continue;
                };
                let float = matches!(fields[index].ty.required(), Type::Float);
                if let Some(constant) = self.literal(&default, float) {
                    self.program.profile_defaults.push((index as u32, constant));
                }
            }
        }
        if let Some(debug) = &mut self.program.debug {
            debug.lines.sort_by_key(|(offset, _, _)| *offset);
        }
        self.program
    }
}

// ---------------------------------------------------------------- journeys

impl Lowering<'_> {
    fn event_id(&self, name: &str) -> u32 {
        self.event_ids.get(name).copied().unwrap_or(NONE)
    }

    fn journey(&mut self, file: FileId, journey: &ast::Journey) {
        let index = self.journeys.len();
        let name = self.string(&journey.name.name);
        let mut desc = bc::JourneyDesc {
            name,
            title: NONE,
            description: NONE,
            entry: bc::Entry::Manual,
            entry_captures: Vec::new(),
            audience: NONE,
            audience_needs: Vec::new(),
            audience_blocked_by: Vec::new(),
            reentry: bc::Reentry::Once,
            correlate: NONE,
            goals: Vec::new(),
            exits: Vec::new(),
            timeout_ms: journey.timeout().map(|d| millis(d.seconds)),
            timezone: NONE,
            quiet: None,
            body: NONE,
            slots: Vec::new(),
            steps: Vec::new(),
            waits: Vec::new(),
            wait_anys: Vec::new(),
            sends: Vec::new(),
            splits: Vec::new(),
        };
        // Filled in as settings are lowered (entry first: its binding is used by the others).
        self.journeys.push(JourneyState {
            desc: desc.clone(),
            slots: HashMap::new(),
            step_counter: 0,
            pending_targets: Vec::new(),
        });
        let mut scope = Scope {
            file,
            journey: Some(index),
            ..Default::default()
        };
        if let Some(ast::Entry::On {
            event,
            binding: Some(binding),
            ..
        }) = journey.entry()
        {
            scope.bindings.push(Binding {
                name: binding.name.clone(),
                event: self.event_id(&event.name),
                sink: Sink::Entry,
            });
        }
        for setting in &journey.settings {
            match &setting.kind {
                ast::SettingKind::Title(t) => desc.title = self.string(&t.value),
                ast::SettingKind::Description(d) => desc.description = self.string(&d.value),
                ast::SettingKind::Entry(entry) => desc.entry = self.entry(entry, &scope),
                ast::SettingKind::Audience(e) => {
                    desc.audience = self.block(e, ty::BOOL, None, &scope);
                    desc.audience_needs = self.needed_events(e, 0).into_iter().collect();
                    self.blocking_windows(e, 0, &mut desc.audience_blocked_by);
                }
                ast::SettingKind::Reentry(r) => {
                    desc.reentry = match r {
                        ast::Reentry::Once => bc::Reentry::Once,
                        ast::Reentry::Always => bc::Reentry::Always,
                        ast::Reentry::After(d) => bc::Reentry::After(millis(d.seconds)),
                        ast::Reentry::MaxPer { max, per } => bc::Reentry::MaxPer {
                            max: u32::try_from(*max).unwrap_or(u32::MAX),
                            per_ms: millis(per.seconds),
                        },
                    }
                }
                ast::SettingKind::Correlate(e) => {
                    desc.correlate = self.block(e, ty::STRING, None, &scope)
                }
                ast::SettingKind::Goal(t) | ast::SettingKind::Exit(t) => {
                    let trigger = self.trigger(t, &scope);
                    if matches!(setting.kind, ast::SettingKind::Goal(_)) {
                        desc.goals.push(trigger);
                    } else {
                        desc.exits.push(trigger);
                    }
                }
                ast::SettingKind::Timeout(_) => {}
                ast::SettingKind::Timezone(e) => {
                    desc.timezone = self.block(e, ty::STRING, None, &scope)
                }
                ast::SettingKind::QuietHours(q) => {
                    desc.quiet = Some(bc::Quiet {
                        start_minute: u16::from(q.start.hour) * 60 + u16::from(q.start.minute),
                        end_minute: u16::from(q.end.hour) * 60 + u16::from(q.end.minute),
                        skip: q.mode == ast::QuietMode::Skip,
                    })
                }
            }
        }
        if !matches!(
            desc.entry,
            bc::Entry::EveryDay { .. }
                | bc::Entry::EveryWeekday { .. }
                | bc::Entry::Every { .. }
                | bc::Entry::At { .. }
        ) {
            desc.audience_needs.clear();
            desc.audience_blocked_by.clear();
        }
        let mut code = Code::default();
        self.steps(&journey.steps, &mut code, &mut scope);
        code.op(Opcode::Exit, &[]);
        let base = self.program.code.len() as u32;
        let body = self.place(
            bc::BlockKind::Body {
                journey: index as u32,
            },
            code,
        );
        // Settings were lowered into `desc`; steps, slots and tables into the journey state.
        let state = &mut self.journeys[index];
        for target in std::mem::take(&mut state.pending_targets) {
            let slot = match target {
                TargetRef::WaitTimeout(w) => &mut state.desc.waits[w].timeout_target,
                TargetRef::WaitAnyArm(w, a) => &mut state.desc.wait_anys[w].arms[a].target,
                TargetRef::WaitAnyTimeout(w) => &mut state.desc.wait_anys[w].timeout_target,
                TargetRef::SplitArm(s, a) => &mut state.desc.splits[s][a].target,
            };
            if *slot != NONE {
                *slot += base;
            }
        }
        desc.body = body;
        desc.slots = std::mem::take(&mut state.desc.slots);
        desc.steps = std::mem::take(&mut state.desc.steps);
        desc.waits = std::mem::take(&mut state.desc.waits);
        desc.wait_anys = std::mem::take(&mut state.desc.wait_anys);
        desc.sends = std::mem::take(&mut state.desc.sends);
        desc.splits = std::mem::take(&mut state.desc.splits);
        desc.entry_captures = std::mem::take(&mut state.desc.entry_captures);
        state.desc = desc;
    }

    /// Event types of which a user must have one in history for `condition` to hold; empty when
    /// no such need is proven. `did(E …)` and `count(E …) > n` need `E`; `a and b` needs what
    /// either side needs (the smaller set); `a or b` needs the union when both sides need
    /// something; a segment needs what its condition needs. Nothing else is assumed: a `not`
    /// proves nothing. Segments cannot be cyclic (E0311); `depth` guards regardless.
    fn needed_events(&self, condition: &Expr, depth: usize) -> BTreeSet<u32> {
        const NOTHING: BTreeSet<u32> = BTreeSet::new();
        if depth > 64 {
            return NOTHING;
        }
        let history_event = |e: &Expr, function: HistoryFn| match &e.kind {
            ExprKind::History(h) if h.function == function => Some(self.event_id(&h.event.name)),
            _ => None,
        };
        let at_least = |e: &Expr| match e.kind {
            ExprKind::Int(n) => Some(n),
            _ => None,
        };
        let single = |event: u32| {
            if event == NONE {
                NOTHING
            } else {
                BTreeSet::from([event])
            }
        };
        match &condition.kind {
            ExprKind::History(h) if h.function == HistoryFn::Did => {
                single(self.event_id(&h.event.name))
            }
            ExprKind::Binary { op, lhs, rhs } => match op {
                BinaryOp::And => {
                    let (l, r) = (
                        self.needed_events(lhs, depth + 1),
                        self.needed_events(rhs, depth + 1),
                    );
                    if l.is_empty() || (!r.is_empty() && r.len() < l.len()) {
                        r
                    } else {
                        l
                    }
                }
                BinaryOp::Or => {
                    let l = self.needed_events(lhs, depth + 1);
                    let r = self.needed_events(rhs, depth + 1);
                    if l.is_empty() || r.is_empty() {
                        NOTHING
                    } else {
                        l.union(&r).copied().collect()
                    }
                }
                // count(E) > n (n ≥ 0), count(E) >= n (n ≥ 1), and the same mirrored.
                BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Lt | BinaryOp::Le => {
                    let (count, bound, strict) = match op {
                        BinaryOp::Gt => (lhs, rhs, true),
                        BinaryOp::Ge => (lhs, rhs, false),
                        BinaryOp::Lt => (rhs, lhs, true),
                        _ => (rhs, lhs, false),
                    };
                    match (history_event(count, HistoryFn::Count), at_least(bound)) {
                        (Some(event), Some(n)) if (strict && n >= 0) || (!strict && n >= 1) => {
                            single(event)
                        }
                        _ => NOTHING,
                    }
                }
                _ => NOTHING,
            },
            ExprKind::Name(name) => match self.segments.get(&name.name) {
                Some((_, segment)) => self.needed_events(segment, depth + 1),
                None => NOTHING,
            },
            _ => NOTHING,
        }
    }

    /// The `not did(E within D)` (no `where`) that `condition` requires, through `and` and
    /// segments: while an `E` is inside `D`, the condition is false.
    fn blocking_windows(&self, condition: &Expr, depth: usize, out: &mut Vec<(u32, i64)>) {
        if depth > 64 {
            return;
        }
        match &condition.kind {
            ExprKind::Binary {
                op: BinaryOp::And,
                lhs,
                rhs,
            } => {
                self.blocking_windows(lhs, depth + 1, out);
                self.blocking_windows(rhs, depth + 1, out);
            }
            ExprKind::Unary {
                op: UnaryOp::Not,
                operand,
            } => {
                if let ExprKind::History(ast::History {
                    function: HistoryFn::Did,
                    event,
                    filter: None,
                    window: Some(ast::Window::Within(d)),
                    ..
                }) = &operand.kind
                {
                    let event = self.event_id(&event.name);
                    if event != NONE && d.seconds > 0 && !out.contains(&(event, millis(d.seconds)))
                    {
                        out.push((event, millis(d.seconds)));
                    }
                }
            }
            ExprKind::Name(name) => {
                if let Some((_, segment)) = self.segments.get(&name.name) {
                    self.blocking_windows(segment, depth + 1, out);
                }
            }
            _ => {}
        }
    }

    fn entry(&mut self, entry: &ast::Entry, scope: &Scope) -> bc::Entry {
        match entry {
            ast::Entry::On {
                event,
                binding,
                filter,
                unless,
            } => {
                let id = self.event_id(&event.name);
                let own = binding.as_ref().map(|b| b.name.clone());
                let filter = filter
                    .as_ref()
                    .map_or(NONE, |f| self.filter_block(f, id, own, scope));
                let unless = unless.as_ref().map(|u| {
                    let event = self.event_id(&u.event.name);
                    bc::Unless {
                        event,
                        filter: u
                            .filter
                            .as_ref()
                            .map_or(NONE, |f| self.filter_block(f, event, None, scope)),
                        within_ms: millis(u.within.seconds),
                    }
                });
                bc::Entry::On {
                    event: id,
                    filter,
                    unless,
                }
            }
            ast::Entry::EveryDay { at } => bc::Entry::EveryDay {
                minute: u16::from(at.hour) * 60 + u16::from(at.minute),
            },
            ast::Entry::EveryWeekday { weekday, at, .. } => bc::Entry::EveryWeekday {
                weekday: *weekday as u8,
                minute: u16::from(at.hour) * 60 + u16::from(at.minute),
            },
            ast::Entry::Every(d) => bc::Entry::Every {
                period_ms: millis(d.seconds),
            },
            ast::Entry::At(t) => bc::Entry::At {
                timestamp_ms: t.millis,
            },
            ast::Entry::When(e) => bc::Entry::When {
                block: self.block(e, ty::TIMESTAMP, None, scope),
            },
            ast::Entry::Manual => bc::Entry::Manual,
        }
    }

    fn trigger(&mut self, trigger: &ast::Trigger, scope: &Scope) -> bc::Trigger {
        let name = self.string(&trigger.name.name);
        match &trigger.condition {
            ast::TriggerCondition::Event { event, filter } => {
                let id = self.event_id(&event.name);
                let block = filter
                    .as_ref()
                    .map_or(NONE, |f| self.filter_block(f, id, None, scope));
                bc::Trigger {
                    name,
                    event: Some(id),
                    block,
                }
            }
            ast::TriggerCondition::When(e) => bc::Trigger {
                name,
                event: None,
                block: self.block(e, ty::BOOL, None, scope),
            },
        }
    }

    /// A `where` filter over `event`; `own` is the binding that names that same event.
    fn filter_block(
        &mut self,
        filter: &Expr,
        event: u32,
        own: Option<String>,
        scope: &Scope,
    ) -> u32 {
        let mut inner = scope.clone();
        inner.event = Some(event);
        inner.event_binding = own;
        self.block(filter, ty::BOOL, Some(event), &inner)
    }

    /// An expression block returning `result`.
    fn block(&mut self, expr: &Expr, result: u32, event: Option<u32>, scope: &Scope) -> u32 {
        let mut scope = scope.clone();
        if event.is_none() {
            scope.event = None;
            scope.event_binding = None;
        }
        let mut code = Code::default();
        self.line(&mut code, scope.file, expr.span);
        self.expr(expr, &mut code, &scope);
        code.op(Opcode::Return, &[]);
        let kind = bc::BlockKind::Expression {
            result,
            event: event.unwrap_or(NONE),
            journey: scope.journey.map_or(NONE, |j| j as u32),
        };
        self.place(kind, code)
    }

    /// The slot holding `binding.field`, allocated (and captured) on first use.
    fn slot(&mut self, binding: &Binding, field: u32, journey: usize) -> u16 {
        let key = (binding.name.clone(), binding.sink, field);
        if let Some(slot) = self.journeys[journey].slots.get(&key) {
            return *slot;
        }
        let field_type = self
            .event_fields
            .get(binding.event as usize)
            .and_then(|f| f.get(field as usize))
            .map(|f| f.ty.clone())
            .unwrap_or(Type::Error);
        let slot_type = self.type_id(&field_type);
        if let Some(read) = self
            .fields_read
            .get_mut(binding.event as usize)
            .and_then(|r| r.get_mut(field as usize))
        {
            *read = true;
        }
        let state = &mut self.journeys[journey];
        let slot = state.desc.slots.len() as u16;
        state.desc.slots.push(slot_type);
        state.slots.insert(key, slot);
        let capture = bc::Capture {
            field: field as u16,
            slot,
        };
        match binding.sink {
            Sink::Entry => state.desc.entry_captures.push(capture),
            Sink::Wait(w) => {
                if let Some(bc::WaitKind::Event { captures, .. }) =
                    state.desc.waits.get_mut(w).map(|w| &mut w.kind)
                {
                    captures.push(capture);
                }
            }
            Sink::WaitArm(w, a) => {
                if let Some(arm) = state
                    .desc
                    .wait_anys
                    .get_mut(w)
                    .and_then(|w| w.arms.get_mut(a))
                {
                    arm.captures.push(capture);
                }
            }
        }
        slot
    }
}

// ---------------------------------------------------------------- expressions

/// The base (non-optional) checker type.
fn base(t: &Type) -> &Type {
    t.required()
}

impl Lowering<'_> {
    fn expr_type(&self, scope: &Scope, expr: &Expr) -> Type {
        self.type_of(scope.file, expr.span)
    }

    /// Emits `expr`; if `to_float`, an int result is widened.
    fn operand(&mut self, expr: &Expr, code: &mut Code, scope: &Scope, to_float: bool) {
        self.expr(expr, code, scope);
        if to_float && matches!(base(&self.expr_type(scope, expr)), Type::Int) {
            code.op(Opcode::ToFloat, &[]);
        }
    }

    fn expr(&mut self, expr: &Expr, code: &mut Code, scope: &Scope) {
        match &expr.kind {
            ExprKind::Int(n) => {
                let k = self.constant(bc::Constant::Int(*n));
                code.op(Opcode::Const, &[k]);
            }
            ExprKind::Float(n) => {
                let k = self.constant(bc::Constant::Float(*n));
                code.op(Opcode::Const, &[k]);
            }
            ExprKind::String(s) => {
                let s = self.string(s);
                let k = self.constant(bc::Constant::String(s));
                code.op(Opcode::Const, &[k]);
            }
            ExprKind::Bool(b) => {
                let k = self.constant(bc::Constant::Bool(*b));
                code.op(Opcode::Const, &[k]);
            }
            ExprKind::Duration(seconds) => {
                let k = self.constant(bc::Constant::Duration(millis(*seconds)));
                code.op(Opcode::Const, &[k]);
            }
            ExprKind::Timestamp(ms) => {
                let k = self.constant(bc::Constant::Timestamp(*ms));
                code.op(Opcode::Const, &[k]);
            }
            ExprKind::Now => {
                code.op(Opcode::Now, &[]);
            }
            ExprKind::List(items) => {
                let element_float = matches!(self.expr_type(scope, expr).required(), Type::List(item) if **item == Type::Float);
                // A list of literals is one constant, built once by the runtime.
                if let Some(constant) = self.literal(expr, element_float) {
                    code.op(Opcode::Const, &[constant]);
                    return;
                }
                for item in items {
                    self.operand(item, code, scope, element_float);
                }
                code.op(Opcode::MakeList, &[items.len() as u32]);
            }
            ExprKind::Name(name) => self.name(name, code, scope),
            ExprKind::Field {
                base: object,
                field,
            } => self.field(object, field, code, scope),
            ExprKind::Unary { op, operand } => {
                self.expr(operand, code, scope);
                match op {
                    UnaryOp::Not => code.op(Opcode::Not, &[]),
                    UnaryOp::Neg => {
                        let k = match base(&self.expr_type(scope, operand)) {
                            Type::Float => kind::FLOAT,
                            Type::Duration => kind::DURATION,
                            _ => kind::INT,
                        };
                        code.op(Opcode::Neg, &[k])
                    }
                };
            }
            ExprKind::IsSet { operand, negated } => {
                self.expr(operand, code, scope);
                code.op(Opcode::IsSet, &[]);
                if *negated {
                    code.op(Opcode::Not, &[]);
                }
            }
            ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, code, scope),
            ExprKind::History(history) => self.history(history, code, scope),
            ExprKind::Call { function, args } => {
                for arg in args {
                    self.expr(arg, code, scope);
                }
                let op = match function.name.as_str() {
                    "hour" => Opcode::Hour,
                    "weekday" => Opcode::Weekday,
                    "date" => Opcode::Date,
                    "lower" => Opcode::Lower,
                    "upper" => Opcode::Upper,
                    "starts_with" => Opcode::StartsWith,
                    "ends_with" => Opcode::EndsWith,
                    "contains" => Opcode::Contains,
                    _ => Opcode::Len,
                };
                code.op(op, &[]);
            }
            // Not values on their own (the checker rejects them): never reached.
            ExprKind::Profile | ExprKind::Journey | ExprKind::Record(_) => self.unreachable(code),
        }
    }

    /// A bare name: a field of the block's event, or a segment (bindings appear under a field).
    fn name(&mut self, name: &ast::Ident, code: &mut Code, scope: &Scope) {
        if let Some(event) = scope.event {
            if let Some(field) = self.event_field_index(event, &name.name) {
                self.load_event(event, field, code);
                return;
            }
        }
        if let Some((file, condition)) = self.segments.get(&name.name).cloned() {
            let inner = Scope {
                file,
                journey: scope.journey,
                ..Default::default()
            };
            self.expr(&condition, code, &inner);
            return;
        }
        self.unreachable(code);
    }

    /// What the checker has ruled out; emits a value the verifier will reject in context, so a
    /// compiler bug surfaces as a verification failure at build time, not as wrong behaviour.
    fn unreachable(&mut self, code: &mut Code) {
        let k = self.constant(bc::Constant::Bool(false));
        code.op(Opcode::Const, &[k]);
    }

    fn event_field_index(&self, event: u32, name: &str) -> Option<u32> {
        self.event_fields
            .get(event as usize)?
            .iter()
            .position(|f| f.name == name)
            .map(|i| i as u32)
    }

    fn load_event(&mut self, event: u32, field: u32, code: &mut Code) {
        if let Some(read) = self
            .fields_read
            .get_mut(event as usize)
            .and_then(|r| r.get_mut(field as usize))
        {
            *read = true;
        }
        let at = code.op(Opcode::LoadEvent, &[field]) as usize + 1;
        code.event_fields.push((at, event));
    }

    fn field(&mut self, object: &Expr, field: &ast::Ident, code: &mut Code, scope: &Scope) {
        match &object.kind {
            ExprKind::Profile => {
                let index = self
                    .profile_fields
                    .iter()
                    .position(|f| f.name == field.name)
                    .unwrap_or(0);
                code.op(Opcode::LoadProfile, &[index as u32]);
                return;
            }
            ExprKind::Journey => {
                code.op(Opcode::EnteredAt, &[]);
                return;
            }
            ExprKind::Name(name) => {
                let is_field_of_event = scope
                    .event
                    .is_some_and(|e| self.event_field_index(e, &name.name).is_some());
                let binding = scope
                    .bindings
                    .iter()
                    .rev()
                    .find(|b| b.name == name.name)
                    .cloned();
                if let (false, Some(binding)) = (is_field_of_event, binding) {
                    let index = self
                        .event_field_index(binding.event, &field.name)
                        .unwrap_or(0);
                    if scope.event_binding.as_deref() == Some(binding.name.as_str())
                        && scope.event == Some(binding.event)
                    {
                        // The binding names the block's own event: read it directly.
                        self.load_event(binding.event, index, code);
                    } else if let Some(journey) = scope.journey {
                        let slot = self.slot(&binding, index, journey);
                        code.op(Opcode::LoadSlot, &[u32::from(slot)]);
                    } else {
                        self.unreachable(code);
                    }
                    return;
                }
            }
            _ => {}
        }
        // A field of a record value: find its index in the record's type.
        let record_type = self.expr_type(scope, object);
        let index = match base(&record_type) {
            Type::Record(record) => record
                .fields
                .iter()
                .position(|f| f.name == field.name)
                .unwrap_or(0),
            _ => 0,
        };
        self.expr(object, code, scope);
        code.op(Opcode::GetField, &[index as u32]);
    }

    fn history(&mut self, history: &ast::History, code: &mut Code, scope: &Scope) {
        let event = self.event_id(&history.event.name);
        let filter = match &history.filter {
            Some(filter) => self.filter_block(filter, event, None, scope),
            None => NONE,
        };
        let field = match &history.field {
            Some(field) => {
                let index = self.event_field_index(event, &field.name).unwrap_or(0);
                if let Some(read) = self
                    .fields_read
                    .get_mut(event as usize)
                    .and_then(|r| r.get_mut(index as usize))
                {
                    *read = true;
                }
                index
            }
            None => NONE,
        };
        let window = match history.window {
            None => bc::Window::None,
            Some(ast::Window::Within(d)) => bc::Window::Within(millis(d.seconds)),
            Some(ast::Window::SinceEntry(_)) => bc::Window::SinceEntry,
        };
        let query = self.program.history.len() as u32;
        self.program.history.push(bc::HistoryQuery {
            event,
            filter,
            window,
            field,
        });
        let op = match history.function {
            HistoryFn::Count => Opcode::Count,
            HistoryFn::Did => Opcode::Did,
            HistoryFn::Last => Opcode::Last,
            HistoryFn::Sum => Opcode::Sum,
        };
        code.op(op, &[query]);
    }

    fn binary(&mut self, op: BinaryOp, lhs: &Expr, rhs: &Expr, code: &mut Code, scope: &Scope) {
        let (l, r) = (self.expr_type(scope, lhs), self.expr_type(scope, rhs));
        let (l, r) = (base(&l).clone(), base(&r).clone());
        let numeric = |t: &Type| matches!(t, Type::Int | Type::Float);
        let float = (numeric(&l) && numeric(&r)) && (l == Type::Float || r == Type::Float);
        match op {
            BinaryOp::And | BinaryOp::Or | BinaryOp::Coalesce | BinaryOp::In => {
                let widen = op == BinaryOp::Coalesce && float;
                self.operand(lhs, code, scope, widen);
                self.operand(rhs, code, scope, widen);
                let opcode = match op {
                    BinaryOp::And => Opcode::And,
                    BinaryOp::Or => Opcode::Or,
                    BinaryOp::Coalesce => Opcode::Coalesce,
                    _ => Opcode::In,
                };
                code.op(opcode, &[]);
            }
            BinaryOp::Eq | BinaryOp::Ne => {
                self.operand(lhs, code, scope, float);
                self.operand(rhs, code, scope, float);
                code.op(
                    if op == BinaryOp::Eq {
                        Opcode::Eq
                    } else {
                        Opcode::Ne
                    },
                    &[],
                );
            }
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                let k = match (&l, &r) {
                    (Type::Int, Type::Int) => kind::INT,
                    _ if numeric(&l) => kind::FLOAT,
                    (Type::Timestamp, _) => kind::TIMESTAMP,
                    (Type::Duration, _) => kind::DURATION,
                    _ => kind::STRING,
                };
                let widen = k == kind::FLOAT;
                self.operand(lhs, code, scope, widen);
                self.operand(rhs, code, scope, widen);
                let opcode = match op {
                    BinaryOp::Lt => Opcode::Lt,
                    BinaryOp::Le => Opcode::Le,
                    BinaryOp::Gt => Opcode::Gt,
                    _ => Opcode::Ge,
                };
                code.op(opcode, &[k]);
            }
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div => {
                use Type::*;
                // (kind, swap the operands (commutative ops only), widen both to float)
                let (k, swap, widen) = match (op, &l, &r) {
                    (BinaryOp::Div, _, _) if numeric(&l) => (kind::FLOAT, false, true),
                    (_, Int, Int) => (kind::INT, false, false),
                    _ if numeric(&l) && numeric(&r) => (kind::FLOAT, false, true),
                    (BinaryOp::Add, Duration, Timestamp) => (kind::TIMESTAMP_DURATION, true, false),
                    (_, Timestamp, Duration) => (kind::TIMESTAMP_DURATION, false, false),
                    (_, Timestamp, Timestamp) => (kind::TIMESTAMP_TIMESTAMP, false, false),
                    (_, Duration, Duration) => (kind::DURATION, false, false),
                    (BinaryOp::Mul, n, Duration) if numeric(n) => {
                        (kind::DURATION_FLOAT, true, false)
                    }
                    _ => (kind::DURATION_FLOAT, false, false),
                };
                let (first, second) = if swap { (rhs, lhs) } else { (lhs, rhs) };
                let second_float = widen || k == kind::DURATION_FLOAT;
                self.operand(first, code, scope, widen);
                self.operand(second, code, scope, second_float);
                let opcode = match op {
                    BinaryOp::Add => Opcode::Add,
                    BinaryOp::Sub => Opcode::Sub,
                    BinaryOp::Mul => Opcode::Mul,
                    _ => Opcode::Div,
                };
                code.op(opcode, &[k]);
            }
        }
    }
}

// ---------------------------------------------------------------- steps

impl Lowering<'_> {
    fn journey_state(&mut self, scope: &Scope) -> &mut JourneyState {
        let index = scope.journey.unwrap_or(0);
        &mut self.journeys[index]
    }

    fn steps(&mut self, steps: &[ast::Step], code: &mut Code, scope: &mut Scope) {
        let depth = scope.bindings.len();
        for step in steps {
            self.step(step, code, scope);
        }
        scope.bindings.truncate(depth);
    }

    fn steps_in_block(&mut self, block: Option<&ast::Block>, code: &mut Code, scope: &mut Scope) {
        if let Some(block) = block {
            self.steps(&block.steps, code, scope);
        }
    }

    fn step(&mut self, step: &ast::Step, code: &mut Code, scope: &mut Scope) {
        let state = self.journey_state(scope);
        state.step_counter += 1;
        let name = match &step.label {
            Some(label) => label.name.clone(),
            None => format!("{}_{}", step.kind.kind_name(), state.step_counter),
        };
        let name = self.string(&name);
        let state = self.journey_state(scope);
        let index = state.desc.steps.len() as u32;
        state.desc.steps.push(bc::StepDesc { name });
        self.line(code, scope.file, step.span);
        code.op(Opcode::Step, &[index]);
        match &step.kind {
            StepKind::Wait(d) => {
                let k = self.constant(bc::Constant::Duration(millis(d.seconds)));
                code.op(Opcode::Wait, &[k]);
            }
            StepKind::WaitUntilTime { time, local } => {
                let minute = u32::from(time.hour) * 60 + u32::from(time.minute);
                code.op(Opcode::WaitUntilTime, &[minute, u32::from(*local)]);
            }
            StepKind::WaitUntil {
                target,
                within,
                then,
                on_timeout,
            } => {
                if matches!(base(&self.expr_type(scope, target)), Type::Timestamp) {
                    self.expr(target, code, scope);
                    code.op(Opcode::WaitUntil, &[]);
                } else {
                    let block = self.block(target, ty::BOOL, None, scope);
                    let kind = bc::WaitKind::Condition { block };
                    self.wait(
                        kind,
                        within.map(|w| millis(w.seconds)),
                        then.as_ref(),
                        on_timeout.as_ref(),
                        None,
                        code,
                        scope,
                    );
                }
            }
            StepKind::WaitFor {
                event,
                binding,
                filter,
                within,
                since_entry,
                then,
                on_timeout,
            } => {
                let id = self.event_id(&event.name);
                let own = binding.as_ref().map(|b| b.name.clone());
                let filter = filter
                    .as_ref()
                    .map_or(NONE, |f| self.filter_block(f, id, own, scope));
                let kind = bc::WaitKind::Event {
                    event: id,
                    filter,
                    since_entry: *since_entry,
                    captures: Vec::new(),
                };
                let bound = binding.as_ref().map(|b| (b.name.clone(), id));
                self.wait(
                    kind,
                    within.map(|w| millis(w.seconds)),
                    then.as_ref(),
                    on_timeout.as_ref(),
                    bound,
                    code,
                    scope,
                );
            }
            StepKind::WaitAny {
                within,
                arms,
                on_timeout,
            } => {
                let mut desc = bc::WaitAnyDesc {
                    within_ms: millis(within.seconds),
                    arms: Vec::new(),
                    timeout_target: NONE,
                };
                for arm in arms {
                    let id = self.event_id(&arm.event.name);
                    let own = arm.binding.as_ref().map(|b| b.name.clone());
                    let filter = arm
                        .filter
                        .as_ref()
                        .map_or(NONE, |f| self.filter_block(f, id, own, scope));
                    desc.arms.push(bc::WaitArm {
                        event: id,
                        filter,
                        captures: Vec::new(),
                        target: NONE,
                    });
                }
                let state = self.journey_state(scope);
                let w = state.desc.wait_anys.len();
                state.desc.wait_anys.push(desc);
                code.op(Opcode::WaitAny, &[w as u32]);
                let mut ends = Vec::new();
                for (a, arm) in arms.iter().enumerate() {
                    let target = code.here();
                    let state = self.journey_state(scope);
                    state.desc.wait_anys[w].arms[a].target = target;
                    state.pending_targets.push(TargetRef::WaitAnyArm(w, a));
                    let depth = scope.bindings.len();
                    if let Some(b) = &arm.binding {
                        scope.bindings.push(Binding {
                            name: b.name.clone(),
                            event: self.event_id(&arm.event.name),
                            sink: Sink::WaitArm(w, a),
                        });
                    }
                    self.steps(&arm.block.steps, code, scope);
                    scope.bindings.truncate(depth);
                    ends.push(code.jump(Opcode::Jump));
                }
                let target = code.here();
                let state = self.journey_state(scope);
                state.desc.wait_anys[w].timeout_target = target;
                state.pending_targets.push(TargetRef::WaitAnyTimeout(w));
                self.steps_in_block(on_timeout.as_ref(), code, scope);
                let after = code.here();
                for end in ends {
                    code.patch(end, after);
                }
            }
            StepKind::Send(send) => {
                let (template, id, channel, names) = match &send.target {
                    ast::SendTarget::Channel { channel: c, id, .. } => {
                        let id = self.string(&id.value);
                        (NONE, id, channel(*c), Vec::new())
                    }
                    ast::SendTarget::Template(t) => {
                        let index = self
                            .checked
                            .templates
                            .keys()
                            .position(|n| *n == t.name)
                            .map_or(NONE, |i| i as u32);
                        let channel = self
                            .checked
                            .templates
                            .get(&t.name)
                            .map_or(bc::Channel::Email, |i| channel(i.channel));
                        (index, NONE, channel, Vec::new())
                    }
                };
                let mut args = names;
                let mut arg_types = Vec::new();
                if let Some(record) = &send.args {
                    for entry in &record.entries {
                        self.expr(&entry.value, code, scope);
                        args.push(self.string(&entry.key.name));
                        let ty = self.expr_type(scope, &entry.value);
                        arg_types.push(self.type_id(&ty));
                    }
                }
                let state = self.journey_state(scope);
                let s = state.desc.sends.len() as u32;
                state.desc.sends.push(bc::SendDesc {
                    channel,
                    template,
                    id,
                    transactional: send.transactional,
                    args,
                    arg_types,
                });
                code.op(Opcode::Send, &[s]);
            }
            StepKind::Set { field, value }
            | StepKind::Add { value, field }
            | StepKind::Remove { value, field } => {
                let index = self
                    .profile_fields
                    .iter()
                    .position(|f| f.name == field.name)
                    .unwrap_or(0) as u32;
                let widen = matches!(
                    self.profile_fields
                        .get(index as usize)
                        .map(|f| f.ty.required()),
                    Some(Type::Float)
                );
                self.operand(value, code, scope, widen);
                let op = match step.kind {
                    StepKind::Set { .. } => Opcode::SetProfile,
                    StepKind::Add { .. } => Opcode::AddProfile,
                    _ => Opcode::RemoveProfile,
                };
                code.op(op, &[index]);
            }
            StepKind::If { arms, otherwise } => {
                let arms: Vec<(&Expr, &[ast::Step])> =
                    arms.iter().map(|(c, b)| (c, &b.steps[..])).collect();
                self.conditional(&arms, otherwise.as_ref(), code, scope);
            }
            StepKind::Branch { arms, otherwise } => {
                let arms: Vec<(&Expr, &[ast::Step])> = arms
                    .iter()
                    .map(|a| (&a.condition, &a.block.steps[..]))
                    .collect();
                self.conditional(&arms, otherwise.as_ref(), code, scope);
            }
            StepKind::Split { arms } => {
                let mut table = Vec::new();
                for arm in arms {
                    let name = self.string(&arm.name.name);
                    table.push(bc::SplitArm {
                        name,
                        tenths: u16::try_from(arm.weight.tenths).unwrap_or(0),
                        target: NONE,
                    });
                }
                let state = self.journey_state(scope);
                let s = state.desc.splits.len();
                state.desc.splits.push(table);
                code.op(Opcode::Split, &[s as u32]);
                let mut ends = Vec::new();
                for (a, arm) in arms.iter().enumerate() {
                    let target = code.here();
                    let state = self.journey_state(scope);
                    state.desc.splits[s][a].target = target;
                    state.pending_targets.push(TargetRef::SplitArm(s, a));
                    self.steps(&arm.block.steps, code, scope);
                    ends.push(code.jump(Opcode::Jump));
                }
                let after = code.here();
                for end in ends {
                    code.patch(end, after);
                }
            }
            StepKind::Start(target) => {
                let j = self.journey_ids.get(&target.name).copied().unwrap_or(NONE);
                code.op(Opcode::Start, &[j]);
            }
            StepKind::Exit => {
                code.op(Opcode::Exit, &[]);
            }
        }
    }

    /// `if`/`else if`/`else` and `branch`: each condition in turn, the first that holds runs its
    /// steps, then all continue after the construct.
    fn conditional(
        &mut self,
        arms: &[(&Expr, &[ast::Step])],
        otherwise: Option<&ast::Block>,
        code: &mut Code,
        scope: &mut Scope,
    ) {
        let mut ends = Vec::new();
        for (condition, steps) in arms {
            self.expr(condition, code, scope);
            let next = code.jump(Opcode::JumpIfFalse);
            self.steps(steps, code, scope);
            ends.push(code.jump(Opcode::Jump));
            let here = code.here();
            code.patch(next, here);
        }
        self.steps_in_block(otherwise, code, scope);
        let after = code.here();
        for end in ends {
            code.patch(end, after);
        }
    }

    /// `wait for` / `wait until <condition>`: arrival continues after `WaitFor` (through the
    /// first block), the deadline jumps to the timeout block, or ends the instance when the
    /// wait has no blocks.
    #[allow(clippy::too_many_arguments)]
    fn wait(
        &mut self,
        kind: bc::WaitKind,
        within_ms: Option<i64>,
        then: Option<&ast::Block>,
        on_timeout: Option<&ast::Block>,
        binding: Option<(String, u32)>,
        code: &mut Code,
        scope: &mut Scope,
    ) {
        let state = self.journey_state(scope);
        let w = state.desc.waits.len();
        state.desc.waits.push(bc::WaitDesc {
            kind,
            within_ms,
            timeout_target: NONE,
        });
        code.op(Opcode::WaitFor, &[w as u32]);
        let bind = |scope: &mut Scope| {
            if let Some((name, event)) = &binding {
                scope.bindings.push(Binding {
                    name: name.clone(),
                    event: *event,
                    sink: Sink::Wait(w),
                });
            }
        };
        if then.is_none() && on_timeout.is_none() {
            // The binding stays visible after the step; the deadline ends the instance.
            bind(scope);
            return;
        }
        let depth = scope.bindings.len();
        if then.is_some() {
            bind(scope);
        }
        self.steps_in_block(then, code, scope);
        scope.bindings.truncate(depth);
        let skip = on_timeout.map(|_| code.jump(Opcode::Jump));
        let timeout_target = code.here();
        self.steps_in_block(on_timeout, code, scope);
        let after = code.here();
        if let Some(skip) = skip {
            code.patch(skip, after);
        }
        let state = self.journey_state(scope);
        state.desc.waits[w].timeout_target = timeout_target;
        state.pending_targets.push(TargetRef::WaitTimeout(w));
    }
}
