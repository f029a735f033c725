//! Loaded `Program` → accepted, or the first reason it is unsafe to run.
//!
//! The verifier checks every index against its table, every type reference against the type
//! table (which may only refer backwards, so types are finite), and every code block by abstract
//! interpretation: operands in range, jumps forward and onto instruction boundaries, the stack
//! never underflowing, operand kinds agreeing with each opcode, an empty stack wherever an
//! instance may sleep, and every path ending properly.
//!
//! **Invariant:** a program that passes `verify` cannot make the VM index out of bounds, loop,
//! or pop an empty stack.

use std::collections::BTreeMap;
use std::fmt;

use super::opcode::{decode, Opcode};
use super::types::*;
use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    pub message: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for VerifyError {}

type Result<T> = std::result::Result<T, VerifyError>;

/// A stated duration (a window, a timeout, a delay) must not be negative: the compiler never
/// writes one, and the VM's clock arithmetic assumes it.
fn duration(ms: i64, what: &str, name: &str) -> Result<()> {
    if ms < 0 {
        return fail(format!("{what} has a negative {name} ({ms} ms)"));
    }
    Ok(())
}

fn fail<T>(message: impl Into<String>) -> Result<T> {
    Err(VerifyError {
        message: message.into(),
    })
}

/// A value's kind on the abstract stack: a type id with `?` removed, or one of these.
const ANY: u32 = u32::MAX - 1;
const ANY_LIST: u32 = u32::MAX - 2;

/// Arithmetic and comparison kinds (the `kind` operand).
pub mod kind {
    pub const INT: u32 = 0;
    pub const FLOAT: u32 = 1;
    pub const DURATION: u32 = 2;
    pub const TIMESTAMP_DURATION: u32 = 3;
    pub const TIMESTAMP_TIMESTAMP: u32 = 4;
    pub const DURATION_FLOAT: u32 = 5;
    pub const STRING: u32 = 6;
    pub const TIMESTAMP: u32 = 7;
}

pub fn verify(program: &Program) -> Result<()> {
    Verifier { program }.run()
}

struct Verifier<'p> {
    program: &'p Program,
}

impl Verifier<'_> {
    fn string(&self, index: u32, what: &str) -> Result<()> {
        if (index as usize) < self.program.strings.len() {
            Ok(())
        } else {
            fail(format!(
                "{what} names string {index}, but there are {}",
                self.program.strings.len()
            ))
        }
    }

    fn optional_string(&self, index: u32, what: &str) -> Result<()> {
        if index == NONE {
            Ok(())
        } else {
            self.string(index, what)
        }
    }

    fn type_id(&self, id: u32, what: &str) -> Result<()> {
        if id < BUILTIN + self.program.types.len() as u32 {
            Ok(())
        } else {
            fail(format!("{what} has type {id}, which does not exist"))
        }
    }

    fn record(&self, id: u32, what: &str) -> Result<&[FieldDesc]> {
        self.program.record_fields(id).map_or_else(
            || fail(format!("{what} must be a record type, found type {id}")),
            Ok,
        )
    }

    fn event(&self, event: u32, what: &str) -> Result<&[FieldDesc]> {
        let Some(desc) = self.program.events.get(event as usize) else {
            return fail(format!(
                "{what} names event {event}, but there are {}",
                self.program.events.len()
            ));
        };
        self.record(desc.record, "an event")
    }

    /// The kind of a type id, with `?` removed.
    fn base(&self, id: u32) -> u32 {
        match self.program.type_desc(id) {
            Some(TypeDesc::Optional(inner)) => self.base(*inner),
            _ => id,
        }
    }

    fn is_list(&self, id: u32) -> bool {
        id == ANY_LIST || id == ANY || matches!(self.program.type_desc(id), Some(TypeDesc::List(_)))
    }

    fn is_string_like(&self, id: u32) -> bool {
        id == STRING || id == ANY || matches!(self.program.type_desc(id), Some(TypeDesc::Enum(_)))
    }

    /// A block reference of the right kind (`NONE` allowed when `optional`).
    fn block(&self, block: u32, result: u32, event: u32, optional: bool, what: &str) -> Result<()> {
        if block == NONE && optional {
            return Ok(());
        }
        match self.program.blocks.get(block as usize).map(|b| b.kind) {
            Some(BlockKind::Expression { result: r, event: e, .. }) if self.base(r) == self.base(result) && e == event => Ok(()),
            Some(_) => fail(format!("{what} refers to block {block}, which is not an expression of the right type over the right event")),
            None => fail(format!("{what} refers to block {block}, which does not exist")),
        }
    }

    fn run(&self) -> Result<()> {
        let p = self.program;
        for (i, ty) in p.types.iter().enumerate() {
            let own = BUILTIN + i as u32;
            let refs: Vec<u32> = match ty {
                TypeDesc::Enum(values) => {
                    for v in values {
                        self.string(*v, "an enum value")?;
                    }
                    Vec::new()
                }
                TypeDesc::List(item) | TypeDesc::Optional(item) => vec![*item],
                TypeDesc::Record(fields) => {
                    for f in fields {
                        self.string(f.name, "a field")?;
                    }
                    fields.iter().map(|f| f.ty).collect()
                }
            };
            if let Some(bad) = refs.iter().find(|r| **r >= own) {
                return fail(format!(
                    "type {own} refers to type {bad}: types may only refer to earlier ones"
                ));
            }
        }
        for (i, c) in p.constants.iter().enumerate() {
            match c {
                Constant::String(s) => self.string(*s, &format!("constant {i}"))?,
                Constant::List(items) if items.iter().any(|item| *item as usize >= i) => {
                    return fail(format!(
                        "constant {i} lists a constant that does not come before it"
                    ));
                }
                _ => {}
            }
        }
        for e in &p.events {
            self.string(e.name, "an event")?;
            self.string(e.wire_name, "an event")?;
            self.record(e.record, "an event's fields")?;
        }
        if p.profile != NONE {
            let fields = self.record(p.profile, "the profile")?;
            for (field, constant) in &p.profile_defaults {
                if *field as usize >= fields.len() || *constant as usize >= p.constants.len() {
                    return fail(format!("a profile default names field {field} or constant {constant}, which do not exist"));
                }
            }
        } else if !p.profile_defaults.is_empty() {
            return fail("profile defaults without a profile");
        }
        for t in &p.templates {
            self.string(t.name, "a template")?;
            self.record(t.params, "a template's parameters")?;
        }
        for (i, cap) in p.caps.iter().enumerate() {
            duration(cap.window_ms, &format!("cap {i}"), "window")?;
        }
        for (i, q) in p.history.iter().enumerate() {
            let fields = self.event(q.event, &format!("history query {i}"))?;
            if let Window::Within(ms) = q.window {
                duration(ms, &format!("history query {i}"), "window")?;
            }
            self.block(q.filter, BOOL, q.event, true, &format!("history query {i}"))?;
            if q.field != NONE {
                let field = fields.get(q.field as usize).map(|f| self.base(f.ty));
                if !matches!(field, Some(INT | FLOAT)) {
                    return fail(format!(
                        "history query {i} sums field {}, which is not a number",
                        q.field
                    ));
                }
            }
        }
        for (i, b) in p.blocks.iter().enumerate() {
            let end = b.offset as usize + b.length as usize;
            if end > p.code.len() || b.length == 0 {
                return fail(format!("block {i} lies outside the code"));
            }
            match b.kind {
                BlockKind::Expression {
                    result,
                    event,
                    journey,
                } => {
                    self.type_id(result, &format!("block {i}"))?;
                    if event != NONE {
                        self.event(event, &format!("block {i}"))?;
                    }
                    if journey != NONE && journey as usize >= p.journeys.len() {
                        return fail(format!(
                            "block {i} belongs to journey {journey}, which does not exist"
                        ));
                    }
                }
                BlockKind::Body { journey } => {
                    if p.journeys
                        .get(journey as usize)
                        .is_none_or(|j| j.body != i as u32)
                    {
                        return fail(format!(
                            "block {i} claims to be the body of journey {journey}"
                        ));
                    }
                }
            }
        }
        for (j, journey) in p.journeys.iter().enumerate() {
            self.journey(j as u32, journey)?;
        }
        for (i, block) in p.blocks.iter().enumerate() {
            self.code(i as u32, block)?;
        }
        Ok(())
    }

    fn captures(&self, event: u32, captures: &[Capture], slots: &[u32], what: &str) -> Result<()> {
        let fields = self.event(event, what)?;
        for c in captures {
            let field = fields.get(c.field as usize).map_or_else(
                || {
                    fail(format!(
                        "{what} captures field {}, which the event lacks",
                        c.field
                    ))
                },
                Ok,
            )?;
            match slots.get(c.slot as usize) {
                Some(slot) if *slot == field.ty => {}
                _ => {
                    return fail(format!(
                        "{what} captures into slot {}, which does not exist or has another type",
                        c.slot
                    ))
                }
            }
        }
        Ok(())
    }

    fn journey(&self, j: u32, journey: &JourneyDesc) -> Result<()> {
        let what = format!("journey {j}");
        self.string(journey.name, &what)?;
        self.optional_string(journey.title, &what)?;
        self.optional_string(journey.description, &what)?;
        for slot in &journey.slots {
            self.type_id(*slot, &what)?;
        }
        match &journey.entry {
            Entry::On {
                event,
                filter,
                unless,
            } => {
                self.event(*event, &what)?;
                self.block(*filter, BOOL, *event, true, &what)?;
                self.captures(*event, &journey.entry_captures, &journey.slots, &what)?;
                if let Some(u) = unless {
                    self.event(u.event, &what)?;
                    duration(u.within_ms, &what, "`unless` window")?;
                    self.block(u.filter, BOOL, u.event, true, &what)?;
                }
            }
            Entry::When { block } => self.block(*block, TIMESTAMP, NONE, false, &what)?,
            Entry::EveryDay { minute } | Entry::EveryWeekday { minute, .. } if *minute >= 1440 => {
                return fail(format!("{what} enters at minute {minute} of a day"));
            }
            Entry::EveryWeekday { weekday, .. } if *weekday > 6 => {
                return fail(format!("{what} enters on weekday {weekday}"))
            }
            Entry::Every { period_ms } if *period_ms <= 0 => {
                return fail(format!("{what} has an entry period of {period_ms} ms"))
            }
            _ => {}
        }
        if !journey.entry_captures.is_empty() && !matches!(journey.entry, Entry::On { .. }) {
            return fail(format!(
                "{what} captures from an entry event it does not have"
            ));
        }
        self.block(journey.audience, BOOL, NONE, true, &what)?;
        for event in &journey.audience_needs {
            self.event(*event, &what)?;
        }
        for (event, window_ms) in &journey.audience_blocked_by {
            self.event(*event, &what)?;
            if *window_ms <= 0 {
                return fail(format!("{what} is blocked by a window of {window_ms} ms"));
            }
        }
        match journey.reentry {
            Reentry::After(ms) => duration(ms, &what, "reentry delay")?,
            Reentry::MaxPer { per_ms, .. } => duration(per_ms, &what, "reentry window")?,
            Reentry::Once | Reentry::Always => {}
        }
        if let Some(ms) = journey.timeout_ms {
            duration(ms, &what, "timeout")?;
        }
        self.block(journey.correlate, STRING, NONE, true, &what)?;
        self.block(journey.timezone, STRING, NONE, true, &what)?;
        for trigger in journey.goals.iter().chain(&journey.exits) {
            self.string(trigger.name, &what)?;
            match trigger.event {
                Some(event) => self.block(trigger.block, BOOL, event, true, &what)?,
                None => self.block(trigger.block, BOOL, NONE, false, &what)?,
            }
        }
        if let Some(q) = journey.quiet {
            if q.start_minute >= 1440 || q.end_minute >= 1440 {
                return fail(format!("{what} has quiet hours outside a day"));
            }
        }
        if !matches!(self.program.blocks.get(journey.body as usize).map(|b| b.kind), Some(BlockKind::Body { journey: owner }) if owner == j)
        {
            return fail(format!("{what} has no body block of its own"));
        }
        for step in &journey.steps {
            self.string(step.name, &what)?;
        }
        for (w, wait) in journey.waits.iter().enumerate() {
            let what = format!("wait {w} of journey {j}");
            if let Some(ms) = wait.within_ms {
                duration(ms, &what, "deadline")?;
            }
            match &wait.kind {
                WaitKind::Event {
                    event,
                    filter,
                    captures,
                    ..
                } => {
                    self.block(*filter, BOOL, *event, true, &what)?;
                    self.captures(*event, captures, &journey.slots, &what)?;
                }
                WaitKind::Condition { block } => self.block(*block, BOOL, NONE, false, &what)?,
            }
        }
        for (w, wait) in journey.wait_anys.iter().enumerate() {
            let what = format!("multi-arm wait {w} of journey {j}");
            duration(wait.within_ms, &what, "deadline")?;
            for arm in &wait.arms {
                self.block(arm.filter, BOOL, arm.event, true, &what)?;
                self.captures(arm.event, &arm.captures, &journey.slots, &what)?;
            }
        }
        for (s, send) in journey.sends.iter().enumerate() {
            let what = format!("send {s} of journey {j}");
            if send.template == NONE {
                self.string(send.id, &what)?;
            } else if send.template as usize >= self.program.templates.len() {
                return fail(format!(
                    "{what} names template {}, which does not exist",
                    send.template
                ));
            }
            for arg in &send.args {
                self.string(*arg, &what)?;
            }
            if !send.arg_types.is_empty() && send.arg_types.len() != send.args.len() {
                return fail(format!(
                    "{what} has {} arguments but {} argument types",
                    send.args.len(),
                    send.arg_types.len()
                ));
            }
            for ty in &send.arg_types {
                self.type_id(*ty, &what)?;
            }
        }
        for (s, arms) in journey.splits.iter().enumerate() {
            let total: u32 = arms.iter().map(|a| u32::from(a.tenths)).sum();
            if total != 1000 || arms.is_empty() {
                return fail(format!("split {s} of journey {j} has weights adding up to {total} tenths of a percent, not 1000"));
            }
            for arm in arms {
                self.string(arm.name, "a split arm")?;
            }
        }
        Ok(())
    }

    /// Abstract interpretation of one block. Jumps only go forward, so one pass in code order
    /// sees every way into an instruction before the instruction itself.
    fn code(&self, index: u32, block: &Block) -> Result<()> {
        let p = self.program;
        let start = block.offset;
        let end = block.offset + block.length;
        let (is_body, journey, event, result) = match block.kind {
            BlockKind::Body { journey } => (true, journey, NONE, NONE),
            BlockKind::Expression {
                result,
                event,
                journey,
            } => (false, journey, event, result),
        };
        let journey_desc = p.journeys.get(journey as usize);
        let event_fields = if event == NONE {
            None
        } else {
            Some(self.event(event, "a block")?)
        };
        let at = |offset: u32, message: String| VerifyError {
            message: format!("block {index}, offset {offset}: {message}"),
        };

        // Stacks expected at forward targets, by offset.
        let mut incoming: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let mut stack: Option<Vec<u32>> = Some(Vec::new());
        let mut pc = start;
        let mut boundaries = Vec::new();
        while pc < end {
            let ins = decode(&p.code, pc, end).map_err(|e| at(pc, e.to_string()))?;
            boundaries.push(pc);
            // Merge every way into this instruction.
            if let Some(target) = incoming.remove(&pc) {
                stack = Some(match stack {
                    None => target,
                    Some(current) => merge(&current, &target)
                        .ok_or_else(|| at(pc, "paths arrive with different stack depths".into()))?,
                });
            }
            let Some(mut s) = stack.take() else {
                // Unreachable code: decoded, not interpreted.
                pc = ins.next;
                continue;
            };
            let [a, b] = ins.operands;
            let pop = |s: &mut Vec<u32>, n: usize| -> Result<Vec<u32>> {
                if s.len() < n {
                    return Err(at(
                        pc,
                        format!(
                            "`{}` needs {n} values but the stack holds {}",
                            ins.opcode.name(),
                            s.len()
                        ),
                    ));
                }
                Ok(s.split_off(s.len() - n))
            };
            let body_only = |op: Opcode| -> Result<()> {
                if is_body {
                    Ok(())
                } else {
                    Err(at(
                        pc,
                        format!("`{}` may only appear in a journey's body", op.name()),
                    ))
                }
            };
            let mut falls_through = true;
            let mut sleeps = false;
            use Opcode::*;
            match ins.opcode {
                Const => {
                    let c = p
                        .constants
                        .get(a as usize)
                        .ok_or_else(|| at(pc, format!("constant {a} does not exist")))?;
                    s.push(match c {
                        Constant::Int(_) => INT,
                        Constant::Float(_) => FLOAT,
                        Constant::String(_) => STRING,
                        Constant::Bool(_) => BOOL,
                        Constant::Duration(_) => DURATION,
                        Constant::Timestamp(_) => TIMESTAMP,
                        Constant::List(_) => ANY_LIST,
                    });
                }
                LoadEvent => {
                    let fields = event_fields.ok_or_else(|| {
                        at(pc, "`LoadEvent` outside a block over an event".into())
                    })?;
                    let f = fields
                        .get(a as usize)
                        .ok_or_else(|| at(pc, format!("the event has no field {a}")))?;
                    s.push(self.base(f.ty));
                }
                LoadProfile => {
                    let fields = p
                        .record_fields(p.profile)
                        .ok_or_else(|| at(pc, "`LoadProfile` without a profile".into()))?;
                    let f = fields
                        .get(a as usize)
                        .ok_or_else(|| at(pc, format!("the profile has no field {a}")))?;
                    s.push(self.base(f.ty));
                }
                LoadSlot => {
                    let ty = journey_desc
                        .and_then(|j| j.slots.get(a as usize))
                        .ok_or_else(|| at(pc, format!("slot {a} does not exist here")))?;
                    s.push(self.base(*ty));
                }
                Now => s.push(TIMESTAMP),
                EnteredAt => {
                    journey_desc.ok_or_else(|| at(pc, "`EnteredAt` outside a journey".into()))?;
                    s.push(TIMESTAMP);
                }
                GetField => {
                    let v = pop(&mut s, 1)?[0];
                    if v == ANY {
                        s.push(ANY);
                    } else {
                        let fields = p.record_fields(v).ok_or_else(|| {
                            at(pc, "`GetField` on a value that is not a record".into())
                        })?;
                        let f = fields
                            .get(a as usize)
                            .ok_or_else(|| at(pc, format!("the record has no field {a}")))?;
                        s.push(self.base(f.ty));
                    }
                }
                MakeList => {
                    pop(&mut s, a as usize)?;
                    s.push(ANY_LIST);
                }
                Add | Sub | Mul | Div | Neg => {
                    let arity = if ins.opcode == Neg { 1 } else { 2 };
                    let args = pop(&mut s, arity)?;
                    let result = arithmetic(ins.opcode, a, &args).ok_or_else(|| {
                        at(
                            pc,
                            format!(
                                "`{}` of kind {a} does not apply to these operands",
                                ins.opcode.name()
                            ),
                        )
                    })?;
                    s.push(result);
                }
                ToFloat => {
                    let v = pop(&mut s, 1)?;
                    expect(&v, &[INT], || at(pc, "`ToFloat` needs an int".into()))?;
                    s.push(FLOAT);
                }
                Eq | Ne => {
                    pop(&mut s, 2)?;
                    s.push(BOOL);
                }
                Lt | Le | Gt | Ge => {
                    let args = pop(&mut s, 2)?;
                    let want = match a {
                        kind::INT => INT,
                        kind::FLOAT => FLOAT,
                        kind::STRING => STRING,
                        kind::TIMESTAMP => TIMESTAMP,
                        kind::DURATION => DURATION,
                        _ => return Err(at(pc, format!("no ordering of kind {a}"))),
                    };
                    for v in args {
                        let ok =
                            v == ANY || v == want || (want == STRING && self.is_string_like(v));
                        if !ok {
                            return Err(at(
                                pc,
                                format!("`{}` compares a value of another kind", ins.opcode.name()),
                            ));
                        }
                    }
                    s.push(BOOL);
                }
                Not => {
                    expect(&pop(&mut s, 1)?, &[BOOL], || {
                        at(pc, "`Not` needs a bool".into())
                    })?;
                    s.push(BOOL);
                }
                And | Or => {
                    expect(&pop(&mut s, 2)?, &[BOOL], || {
                        at(pc, format!("`{}` needs bools", ins.opcode.name()))
                    })?;
                    s.push(BOOL);
                }
                IsSet => {
                    pop(&mut s, 1)?;
                    s.push(BOOL);
                }
                Coalesce => {
                    let args = pop(&mut s, 2)?;
                    s.push(if args[0] == ANY { args[1] } else { args[0] });
                }
                In => {
                    let args = pop(&mut s, 2)?;
                    if !self.is_list(args[1]) {
                        return Err(at(pc, "`In` needs a list".into()));
                    }
                    s.push(BOOL);
                }
                Count | Did | Last | Sum => {
                    let q = p
                        .history
                        .get(a as usize)
                        .ok_or_else(|| at(pc, format!("history query {a} does not exist")))?;
                    s.push(match ins.opcode {
                        Count => INT,
                        Did => BOOL,
                        Sum => {
                            if q.field == NONE {
                                return Err(at(pc, "`Sum` of a query without a field".into()));
                            }
                            FLOAT
                        }
                        _ => p.events.get(q.event as usize).map_or(ANY, |e| e.record),
                    });
                }
                Hour | Weekday | Date => {
                    expect(&pop(&mut s, 1)?, &[TIMESTAMP], || {
                        at(pc, format!("`{}` needs a timestamp", ins.opcode.name()))
                    })?;
                    s.push(if ins.opcode == Hour { INT } else { STRING });
                }
                Lower | Upper => {
                    let v = pop(&mut s, 1)?[0];
                    if !self.is_string_like(v) {
                        return Err(at(pc, format!("`{}` needs a string", ins.opcode.name())));
                    }
                    s.push(STRING);
                }
                StartsWith | EndsWith | Contains => {
                    if !pop(&mut s, 2)?.iter().all(|v| self.is_string_like(*v)) {
                        return Err(at(pc, format!("`{}` needs strings", ins.opcode.name())));
                    }
                    s.push(BOOL);
                }
                Len => {
                    let v = pop(&mut s, 1)?[0];
                    if !self.is_string_like(v) && !self.is_list(v) {
                        return Err(at(pc, "`Len` needs a string or a list".into()));
                    }
                    s.push(INT);
                }
                Jump | JumpIfFalse => {
                    if ins.opcode == JumpIfFalse {
                        expect(&pop(&mut s, 1)?, &[BOOL], || {
                            at(pc, "`JumpIfFalse` needs a bool".into())
                        })?;
                    }
                    self.target(a, pc, end, &s, &mut incoming)
                        .map_err(|m| at(pc, m))?;
                    falls_through = ins.opcode == JumpIfFalse;
                }
                Return => {
                    if is_body {
                        return Err(at(pc, "`Return` in a journey's body".into()));
                    }
                    let v = pop(&mut s, 1)?[0];
                    if !s.is_empty() {
                        return Err(at(pc, format!("`Return` leaves {} values behind", s.len())));
                    }
                    let want = self.base(result);
                    let ok = v == ANY
                        || v == want
                        || (v == ANY_LIST && self.is_list(want))
                        || (want == STRING && self.is_string_like(v));
                    if !ok {
                        return Err(at(
                            pc,
                            format!("the block returns type {v}, not type {want}"),
                        ));
                    }
                    falls_through = false;
                }
                Step => {
                    body_only(Step)?;
                    if journey_desc.is_none_or(|j| a as usize >= j.steps.len()) {
                        return Err(at(pc, format!("step {a} does not exist")));
                    }
                }
                Wait => {
                    body_only(Wait)?;
                    if !matches!(p.constants.get(a as usize), Some(Constant::Duration(_))) {
                        return Err(at(
                            pc,
                            format!("`Wait` needs a duration constant; constant {a} is not one"),
                        ));
                    }
                    sleeps = true;
                }
                WaitUntilTime => {
                    body_only(WaitUntilTime)?;
                    if a >= 1440 || b > 1 {
                        return Err(at(
                            pc,
                            format!("`WaitUntilTime` at minute {a} (local flag {b})"),
                        ));
                    }
                    sleeps = true;
                }
                WaitUntil => {
                    body_only(WaitUntil)?;
                    expect(&pop(&mut s, 1)?, &[TIMESTAMP], || {
                        at(pc, "`WaitUntil` needs a timestamp".into())
                    })?;
                    sleeps = true;
                }
                WaitFor => {
                    body_only(WaitFor)?;
                    let wait = journey_desc
                        .and_then(|j| j.waits.get(a as usize))
                        .ok_or_else(|| at(pc, format!("wait {a} does not exist")))?;
                    if wait.timeout_target != NONE {
                        self.target(wait.timeout_target, pc, end, &[], &mut incoming)
                            .map_err(|m| at(pc, m))?;
                    }
                    sleeps = true;
                }
                WaitAny => {
                    body_only(WaitAny)?;
                    let wait = journey_desc
                        .and_then(|j| j.wait_anys.get(a as usize))
                        .ok_or_else(|| at(pc, format!("multi-arm wait {a} does not exist")))?;
                    for target in wait
                        .arms
                        .iter()
                        .map(|arm| arm.target)
                        .chain([wait.timeout_target])
                    {
                        self.target(target, pc, end, &[], &mut incoming)
                            .map_err(|m| at(pc, m))?;
                    }
                    sleeps = true;
                    falls_through = false;
                }
                Send => {
                    body_only(Send)?;
                    let send = journey_desc
                        .and_then(|j| j.sends.get(a as usize))
                        .ok_or_else(|| at(pc, format!("send {a} does not exist")))?;
                    pop(&mut s, send.args.len())?;
                }
                SetProfile | AddProfile | RemoveProfile => {
                    body_only(ins.opcode)?;
                    let fields = p
                        .record_fields(p.profile)
                        .ok_or_else(|| at(pc, "a profile update without a profile".into()))?;
                    let field = fields
                        .get(a as usize)
                        .ok_or_else(|| at(pc, format!("the profile has no field {a}")))?;
                    pop(&mut s, 1)?;
                    if ins.opcode != SetProfile && !self.is_list(self.base(field.ty)) {
                        return Err(at(
                            pc,
                            format!("`{}` on a field that is not a list", ins.opcode.name()),
                        ));
                    }
                }
                Split => {
                    body_only(Split)?;
                    let arms = journey_desc
                        .and_then(|j| j.splits.get(a as usize))
                        .ok_or_else(|| at(pc, format!("split {a} does not exist")))?;
                    for arm in arms {
                        self.target(arm.target, pc, end, &[], &mut incoming)
                            .map_err(|m| at(pc, m))?;
                    }
                    sleeps = true;
                    falls_through = false;
                }
                Start => {
                    body_only(Start)?;
                    if !matches!(
                        p.journeys.get(a as usize).map(|j| &j.entry),
                        Some(Entry::Manual)
                    ) {
                        return Err(at(
                            pc,
                            format!("`Start` of journey {a}, which is not a manual journey"),
                        ));
                    }
                }
                Exit => {
                    body_only(Exit)?;
                    sleeps = true;
                    falls_through = false;
                }
            }
            if sleeps && !s.is_empty() {
                return Err(at(
                    pc,
                    format!(
                        "`{}` with {} values on the stack",
                        ins.opcode.name(),
                        s.len()
                    ),
                ));
            }
            stack = falls_through.then_some(s);
            pc = ins.next;
        }
        if stack.is_some() {
            return fail(format!("block {index} can run past its end"));
        }
        if let Some((target, _)) = incoming.iter().next() {
            return fail(format!("block {index}: a jump to offset {target}, which is not the start of an instruction"));
        }
        let _ = boundaries;
        Ok(())
    }

    /// Registers a forward jump target with the stack that arrives there.
    fn target(
        &self,
        target: u32,
        from: u32,
        end: u32,
        stack: &[u32],
        incoming: &mut BTreeMap<u32, Vec<u32>>,
    ) -> std::result::Result<(), String> {
        if target <= from || target >= end {
            return Err(format!(
                "a jump to offset {target}, which is not forward within the block"
            ));
        }
        match incoming.get(&target) {
            Some(existing) => {
                let merged = merge(existing, stack)
                    .ok_or_else(|| "paths arrive with different stack depths".to_string())?;
                incoming.insert(target, merged);
            }
            None => {
                incoming.insert(target, stack.to_vec());
            }
        }
        Ok(())
    }
}

fn merge(a: &[u32], b: &[u32]) -> Option<Vec<u32>> {
    (a.len() == b.len()).then(|| {
        a.iter()
            .zip(b)
            .map(|(x, y)| if x == y { *x } else { ANY })
            .collect()
    })
}

fn expect(values: &[u32], allowed: &[u32], error: impl Fn() -> VerifyError) -> Result<()> {
    if values.iter().all(|v| *v == ANY || allowed.contains(v)) {
        Ok(())
    } else {
        Err(error())
    }
}

/// The result kind of an arithmetic opcode, if its operands fit its kind.
fn arithmetic(op: Opcode, kind: u32, args: &[u32]) -> Option<u32> {
    let fits = |want: &[u32]| args.iter().zip(want).all(|(v, w)| *v == ANY || v == w);
    let (want, result): (&[u32], u32) = match (op, kind) {
        (Opcode::Add | Opcode::Sub | Opcode::Mul, kind::INT) => (&[INT, INT], INT),
        (Opcode::Add | Opcode::Sub | Opcode::Mul | Opcode::Div, kind::FLOAT) => {
            (&[FLOAT, FLOAT], FLOAT)
        }
        (Opcode::Add | Opcode::Sub, kind::DURATION) => (&[DURATION, DURATION], DURATION),
        (Opcode::Add | Opcode::Sub, kind::TIMESTAMP_DURATION) => {
            (&[TIMESTAMP, DURATION], TIMESTAMP)
        }
        (Opcode::Sub, kind::TIMESTAMP_TIMESTAMP) => (&[TIMESTAMP, TIMESTAMP], DURATION),
        (Opcode::Mul | Opcode::Div, kind::DURATION_FLOAT) => (&[DURATION, FLOAT], DURATION),
        (Opcode::Neg, kind::INT) => (&[INT], INT),
        (Opcode::Neg, kind::FLOAT) => (&[FLOAT], FLOAT),
        (Opcode::Neg, kind::DURATION) => (&[DURATION], DURATION),
        _ => return None,
    };
    fits(want).then_some(result)
}
