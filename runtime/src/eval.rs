//! Expression blocks → values: what each expression operation means (`unary`, `binary` and the
//! `Truth`-valued functions, shared with the tree interpreter in `tree`), and the stack
//! interpreter that runs them for journey bodies (`step`) and for blocks without a tree (`eval`).
//!
//! It runs only verified programs, so operands are in range and the stack never underflows;
//! where a value has an unexpected shape anyway it yields `Absent` rather than failing. No clock
//! is read here: `now` and every input come from the `Context`.
//!
//! Rules (LANGUAGE.md §3, docs/language.md): an absent operand makes arithmetic and ordering
//! absent; `==` treats absent as a value equal only to absent; a *missing* profile read passes
//! through every operation, so the condition that made it is false as a whole. Integer overflow
//! and division by zero give absent.

use std::sync::Arc;

use chrono::{Datelike, TimeZone, Timelike};

use rustc_hash::FxHashSet;
use smallvec::SmallVec;

use crate::bytecode::opcode::{decode, Instruction, Opcode};
use crate::bytecode::verify::kind;
use crate::bytecode::{Block, Constant, Program};
use crate::tree::Tree;
use crate::value::Value;

/// An expression's operand stack: on the machine stack unless the block nests deeply.
pub type Stack = SmallVec<[Value; 16]>;

/// A verified program made ready to run: every instruction decoded once (looked up by its code
/// offset) and every constant and profile default built once, so that evaluation neither
/// decodes bytes nor allocates constants.
pub struct Prepared<'p> {
    pub program: &'p Program,
    /// By code offset: the instruction that starts there.
    instructions: Vec<Option<Instruction>>,
    constants: Vec<Value>,
    /// By profile field: its value while the user's traits do not set it.
    unset_profile: Vec<Value>,
    /// By block: whether evaluating it can read local time (`hour`, `weekday`, `date`, here or
    /// in the filter of a history query it asks), so whether it needs the instance's zone.
    reads_zone: Vec<bool>,
    /// The program's string constants, shared by the inputs equal to them (see `intern`).
    strings: FxHashSet<Arc<str>>,
    /// By block: the block as a tree, the form it is interpreted in (`None`: not an
    /// expression, or too deep; `eval` runs it).
    trees: Vec<Option<Tree>>,
    /// Hot predicates as native code.
    #[cfg(feature = "jit")]
    hot: crate::jit::Hot,
}

impl<'p> Prepared<'p> {
    pub fn new(program: &'p Program) -> Prepared<'p> {
        let mut instructions = vec![None; program.code.len()];
        for block in &program.blocks {
            let end = block.offset.saturating_add(block.length);
            let mut pc = block.offset;
            while pc < end {
                let Ok(ins) = decode(&program.code, pc, end) else {
                    break;
                };
                if let Some(slot) = instructions.get_mut(pc as usize) {
                    *slot = Some(ins);
                }
                pc = ins.next;
            }
        }
        let profile_fields = program.record_fields(program.profile).map_or(0, <[_]>::len);
        let constants: Vec<Value> = (0..program.constants.len() as u32)
            .map(|i| constant(program, i))
            .collect();
        let mut strings = FxHashSet::default();
        for value in &constants {
            let items = match value {
                Value::List(items) => &items[..],
                single => std::slice::from_ref(single),
            };
            for item in items {
                if let Value::Long(s) = item {
                    strings.insert(s.clone());
                }
            }
        }
        let mut prepared = Prepared {
            program,
            instructions,
            reads_zone: Vec::new(),
            trees: Vec::new(),
            strings,
            constants,
            unset_profile: (0..profile_fields as u32)
                .map(|f| unset_profile_field(program, f))
                .collect(),
            #[cfg(feature = "jit")]
            hot: crate::jit::Hot::new(program.blocks.len()),
        };
        prepared.reads_zone = (0..program.blocks.len() as u32)
            .map(|b| prepared.block_reads_zone(b, 0))
            .collect();
        prepared.trees = program
            .blocks
            .iter()
            .map(|block| Tree::build(&prepared, block))
            .collect();
        prepared
    }

    /// Evaluates block `block`: as native code once it is a hot predicate (the `jit` feature),
    /// else by the interpreter (its tree, else `eval`). All give the same value.
    /// Generic over the context's type, so that native code takes its `Frame` without a
    /// virtual call.
    #[inline]
    pub fn run<C: Context + ?Sized>(&self, block: u32, context: &C) -> Value {
        let Some(b) = self.program.blocks.get(block as usize) else {
            return Value::Absent;
        };
        #[cfg(feature = "jit")]
        if let Some(value) = self.hot.native(self, block).and_then(|p| p.run(context)) {
            return value;
        }
        let context = context.as_context();
        match self.trees.get(block as usize) {
            Some(Some(tree)) => tree.eval(context),
            _ => eval(self, b, context),
        }
    }

    /// Whether block `block`'s value is `true`: `self.run(block, context).is_true()`, without
    /// making the value where native code or the interpreter's tree runs it (what conditions
    /// ask).
    #[inline]
    pub fn holds<C: Context + ?Sized>(&self, block: u32, context: &C) -> bool {
        let Some(b) = self.program.blocks.get(block as usize) else {
            return false;
        };
        #[cfg(feature = "jit")]
        if let Some(holds) = self.hot.native(self, block).and_then(|p| p.holds(context)) {
            return holds;
        }
        let context = context.as_context();
        match self.trees.get(block as usize) {
            Some(Some(tree)) => tree.holds(context),
            _ => eval(self, b, context).is_true(),
        }
    }

    /// Block `block` as a tree (`None`: `eval` runs it).
    pub fn tree(&self, block: u32) -> Option<&Tree> {
        self.trees.get(block as usize)?.as_ref()
    }

    /// When hot predicates are compiled (by default after 1,000 evaluations).
    #[cfg(feature = "jit")]
    pub fn set_jit(&mut self, policy: crate::jit::Policy) {
        self.hot.set_policy(policy);
    }

    /// How many predicates run as native code so far.
    pub fn compiled_predicates(&self) -> usize {
        #[cfg(feature = "jit")]
        return self.hot.compiled();
        #[cfg(not(feature = "jit"))]
        0
    }

    fn block_reads_zone(&self, block: u32, depth: usize) -> bool {
        let Some(b) = self.program.blocks.get(block as usize) else {
            return false;
        };
        let end = b.offset.saturating_add(b.length);
        let mut pc = b.offset;
        while let Some(ins) = self.instruction(pc, end) {
            let reads = match ins.opcode {
                Opcode::Hour | Opcode::Weekday | Opcode::Date => true,
                Opcode::Count | Opcode::Did | Opcode::Last | Opcode::Sum => {
                    // Filters do not ask history (the checker sees to it); depth guards anyway.
                    depth < 4
                        && self
                            .program
                            .history
                            .get(ins.operands[0] as usize)
                            .is_some_and(|q| self.block_reads_zone(q.filter, depth + 1))
                }
                _ => false,
            };
            if reads {
                return true;
            }
            pc = ins.next;
        }
        false
    }

    /// What evaluating `block` reads that inputs change: the event types of its history
    /// queries (their filters included), and whether it reads `now` (then every input may
    /// change it).
    pub fn block_reads(&self, block: u32) -> (Vec<u32>, bool) {
        let mut events = Vec::new();
        let mut now = false;
        let mut blocks = vec![block];
        let mut seen = Vec::new();
        while let Some(b) = blocks.pop() {
            if seen.contains(&b) {
                continue;
            }
            seen.push(b);
            let Some(desc) = self.program.blocks.get(b as usize) else {
                continue;
            };
            let end = desc.offset.saturating_add(desc.length);
            let mut pc = desc.offset;
            while let Some(ins) = self.instruction(pc, end) {
                match ins.opcode {
                    Opcode::Now => now = true,
                    Opcode::Count | Opcode::Did | Opcode::Last | Opcode::Sum => {
                        if let Some(q) = self.program.history.get(ins.operands[0] as usize) {
                            events.push(q.event);
                            blocks.push(q.filter);
                        }
                    }
                    _ => {}
                }
                pc = ins.next;
            }
        }
        (events, now)
    }

    /// Whether evaluating `block` can read local time (`NONE` reads nothing).
    pub fn reads_zone(&self, block: u32) -> bool {
        self.reads_zone
            .get(block as usize)
            .copied()
            .unwrap_or(false)
    }

    /// The instruction at `pc`, if one starts there before `end`.
    pub fn instruction(&self, pc: u32, end: u32) -> Option<Instruction> {
        self.instructions
            .get(pc as usize)
            .copied()
            .flatten()
            .filter(|_| pc < end)
    }

    pub fn constant(&self, index: u32) -> Value {
        self.constants
            .get(index as usize)
            .cloned()
            .unwrap_or(Value::Absent)
    }

    /// Whether the program has long string constants for inputs to share (`intern`).
    pub fn interns_strings(&self) -> bool {
        !self.strings.is_empty()
    }

    /// Makes a long input string that equals a constant of the program share the constant's
    /// storage. Such strings are the ones code compares (`plan == "enterprise-annual"`):
    /// shared, they compare by pointer, and millions of users' copies become one. (Short
    /// strings are kept in place, `Value::Short`, and need no sharing.)
    pub fn intern(&self, value: &mut Value) {
        if let Value::Long(s) = value {
            if let Some(shared) = self.strings.get(&**s) {
                *s = shared.clone();
            }
        }
    }

    /// The value of profile field `field` while the user's traits do not set it.
    pub fn unset_profile(&self, field: u32) -> Value {
        self.unset_profile_ref(field)
            .cloned()
            .unwrap_or(Value::Missing)
    }

    /// `unset_profile`, borrowed (`None`: no such field).
    pub fn unset_profile_ref(&self, field: u32) -> Option<&Value> {
        self.unset_profile.get(field as usize)
    }
}

/// The history functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryOp {
    Count,
    Did,
    Last,
    Sum,
}

/// A context as a trait object, for code generic over the context's type (which takes its
/// `Frame` without a virtual call) to hand on. Every `Context` is one.
pub trait AsContext {
    fn as_context(&self) -> &dyn Context;
}

impl<C: Context> AsContext for C {
    fn as_context(&self) -> &dyn Context {
        self
    }
}

/// What an expression can read.
pub trait Context: AsContext {
    /// Field `field` of the block's event.
    fn event_field(&self, field: u16) -> Value;
    /// Profile field `field`: the trait, else its default, else `Value::Missing`.
    fn profile_field(&self, field: u16) -> Value;
    /// Slot `slot` of the instance.
    fn slot(&self, slot: u16) -> Value;
    /// The current time (event time, never the wall clock).
    fn now(&self) -> i64;
    fn entered_at(&self) -> i64;
    /// Answers history query `query`.
    fn history(&self, query: u16, op: HistoryOp) -> Value;
    /// The zone that `hour`, `weekday` and `date` use.
    fn zone(&self) -> chrono_tz::Tz;

    /// The value `event_field`, `profile_field` or `slot` would give, borrowed where the context
    /// holds it: compiled predicates bind it in place instead of copying it (`None`: they copy).
    fn lend(&self, _source: Read) -> Option<&Value> {
        None
    }

    /// The values the context holds in place, for compiled predicates to read without a call
    /// per value (`None`: they ask `read`).
    fn frame(&self) -> Option<Frame<'_>> {
        None
    }

    /// The value `read` names, copied (`event_field`, `profile_field` or `slot`).
    fn read(&self, read: Read) -> Value {
        match read {
            Read::Event(f) => self.event_field(f),
            Read::Profile(f) => self.profile_field(f),
            Read::Slot(s) => self.slot(s),
        }
    }
}

/// What a context holds in place (`Context::frame`): the values `event_field`, `slot` and
/// `profile_field` give, as slices.
#[derive(Debug, Clone, Copy, Default)]
pub struct Frame<'a> {
    pub event: &'a [Value],
    pub slots: &'a [Value],
    /// The user's profile traits by field; `None` where unset (the program's default, else
    /// `Value::Missing`, applies: `Prepared::unset_profile`).
    pub traits: &'a [Option<Value>],
}

/// A value an expression reads from its context (`Context::lend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Event(u16),
    Profile(u16),
    Slot(u16),
}

/// Evaluates the expression block at `block`.
pub fn eval(prepared: &Prepared, block: &Block, context: &dyn Context) -> Value {
    let end = block.offset + block.length;
    let mut stack = Stack::new();
    let mut pc = block.offset;
    while pc < end {
        let Some(ins) = prepared.instruction(pc, end) else {
            return Value::Absent;
        };
        match step(prepared, ins.opcode, ins.operands, &mut stack, context) {
            Flow::Next => pc = ins.next,
            Flow::Return(value) => return value,
            // Jumps and steps do not occur in expression blocks (the verifier sees to it).
            Flow::NotAnExpression => return Value::Absent,
        }
    }
    Value::Absent
}

/// What an instruction did to an expression's evaluation.
pub enum Flow {
    Next,
    Return(Value),
    /// A control or step instruction: the caller (the body interpreter) handles it.
    NotAnExpression,
}

/// Executes one expression instruction on `stack`. (Generic over the context, so that a caller
/// holding a concrete one — the body interpreter — reads it without a dynamic call.)
pub fn step<C: Context + ?Sized>(
    prepared: &Prepared,
    opcode: Opcode,
    operands: [u32; 2],
    stack: &mut Stack,
    context: &C,
) -> Flow {
    let [a, _] = operands;
    use Opcode::*;
    match opcode {
        Const => stack.push(prepared.constant(a)),
        LoadEvent => stack.push(context.event_field(a as u16)),
        LoadProfile => stack.push(context.profile_field(a as u16)),
        LoadSlot => stack.push(context.slot(a as u16)),
        Now => stack.push(Value::Timestamp(context.now())),
        EnteredAt => stack.push(Value::Timestamp(context.entered_at())),
        MakeList => {
            let at = stack.len().saturating_sub(a as usize);
            let list = make_list(&stack[at..]);
            stack.truncate(at);
            stack.push(list);
        }
        Count => stack.push(context.history(a as u16, HistoryOp::Count)),
        Did => stack.push(context.history(a as u16, HistoryOp::Did)),
        Last => stack.push(context.history(a as u16, HistoryOp::Last)),
        Sum => stack.push(context.history(a as u16, HistoryOp::Sum)),
        op if arity(op) == Some(1) => {
            let v = pop(stack);
            stack.push(unary(op, a, &v, || context.zone()));
        }
        op if arity(op) == Some(2) => {
            let b = pop(stack);
            let a_value = pop(stack);
            stack.push(binary(op, a, &a_value, &b));
        }
        Return => return Flow::Return(pop(stack)),
        _ => return Flow::NotAnExpression,
    }
    Flow::Next
}

/// How many operands an operation pops (`None`: it is not an operation on popped values —
/// a load, a constant, a history query, `MakeList`, control or a step).
pub(crate) fn arity(opcode: Opcode) -> Option<usize> {
    use Opcode::*;
    match opcode {
        GetField | Neg | ToFloat | Not | IsSet | Hour | Weekday | Date | Lower | Upper | Len => {
            Some(1)
        }
        Add | Sub | Mul | Div | Eq | Ne | Lt | Le | Gt | Ge | And | Or | Coalesce | In
        | StartsWith | EndsWith | Contains => Some(2),
        _ => None,
    }
}

/// The value of a one-operand operation (`arity` 1) with operand `a` on `v`.
pub(crate) fn unary(opcode: Opcode, a: u32, v: &Value, zone: impl Fn() -> chrono_tz::Tz) -> Value {
    use Opcode::*;
    match (opcode, v) {
        (_, Value::Missing) => Value::Missing,
        (GetField, Value::Record(fields)) => {
            fields.get(a as usize).cloned().unwrap_or(Value::Absent)
        }
        (Neg, Value::Int(n)) => n.checked_neg().map_or(Value::Absent, Value::Int),
        (Neg, Value::Float(n)) => Value::Float(-n),
        (Neg, Value::Duration(n)) => n.checked_neg().map_or(Value::Absent, Value::Duration),
        (ToFloat, Value::Int(n)) => Value::Float(*n as f64),
        (ToFloat, other) => other.clone(),
        (Not | IsSet, _) => truth_of_unary(opcode, v).into(),
        (Hour | Weekday | Date, Value::Timestamp(ms)) => calendar(opcode, *ms, zone()),
        (Lower, Value::Short { .. } | Value::Long(_)) => Value::str(&text(v).to_lowercase()),
        (Upper, Value::Short { .. } | Value::Long(_)) => Value::str(&text(v).to_uppercase()),
        (Len, Value::Short { .. } | Value::Long(_)) => Value::Int(text(v).chars().count() as i64),
        (Len, Value::List(items)) => Value::Int(items.len() as i64),
        _ => Value::Absent,
    }
}

/// The string `v` is; empty when it is none (callers have matched a string first).
fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// `unary` on a constant, computed once: for the operations that read nothing else (all but
/// the calendar ones, which read the context's zone).
pub(crate) fn unary_of_constant(opcode: Opcode, a: u32, v: &Value) -> Option<Value> {
    use Opcode::*;
    match opcode {
        Hour | Weekday | Date => None,
        _ => Some(unary(opcode, a, v, || chrono_tz::UTC)),
    }
}

/// The value of a two-operand operation (`arity` 2) with operand `k` on `a` and `b`.
pub(crate) fn binary(opcode: Opcode, k: u32, a: &Value, b: &Value) -> Value {
    use Opcode::*;
    match opcode {
        Add | Sub | Mul | Div => arithmetic(opcode, k, a, b),
        Coalesce => match a {
            Value::Absent => b.clone(),
            other => other.clone(),
        },
        _ => truth_of_binary(opcode, k, a, b).into(),
    }
}

/// The outcome of a condition: a bool, or why there is none. (Ordered so that `logic` can
/// combine them as numbers: the bools first, then absent below missing, which dominates.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Truth {
    False,
    True,
    /// An operand was absent, or not of the operation's type.
    Absent,
    /// An operand was a missing profile read (LANGUAGE.md §3.1).
    Missing,
}

impl Truth {
    /// A value read as a condition: `Bool`, `Missing`, else `Absent`.
    pub fn of(value: &Value) -> Truth {
        match value {
            Value::Bool(b) => Truth::from(*b),
            Value::Missing => Truth::Missing,
            _ => Truth::Absent,
        }
    }

    /// `not`: the bools swapped, absent and missing kept.
    pub fn negated(self) -> Truth {
        match self {
            Truth::False => Truth::True,
            Truth::True => Truth::False,
            other => other,
        }
    }
}

impl From<bool> for Truth {
    fn from(b: bool) -> Truth {
        if b {
            Truth::True
        } else {
            Truth::False
        }
    }
}

impl From<Truth> for Value {
    fn from(t: Truth) -> Value {
        match t {
            Truth::False => Value::Bool(false),
            Truth::True => Value::Bool(true),
            Truth::Absent => Value::Absent,
            Truth::Missing => Value::Missing,
        }
    }
}

/// Whether `opcode` gives a condition (`truth_of_unary`, `truth_of_binary`).
pub(crate) fn gives_truth(opcode: Opcode) -> bool {
    use Opcode::*;
    matches!(
        opcode,
        Not | IsSet
            | Eq
            | Ne
            | Lt
            | Le
            | Gt
            | Ge
            | And
            | Or
            | In
            | StartsWith
            | EndsWith
            | Contains
    )
}

/// `Not` or `IsSet` on `v`.
pub(crate) fn truth_of_unary(opcode: Opcode, v: &Value) -> Truth {
    match (opcode, v) {
        (_, Value::Missing) => Truth::Missing,
        (Opcode::IsSet, other) => Truth::from(other.is_present()),
        (Opcode::Not, v) => Truth::of(v).negated(),
        _ => Truth::Absent,
    }
}

/// `And` or `Or` on two conditions (both evaluated: a missing read on either side makes the
/// whole missing).
#[inline]
pub(crate) fn logic(opcode: Opcode, a: Truth, b: Truth) -> Truth {
    // Missing over absent over the bools (`Truth`'s order).
    if a.max(b) >= Truth::Absent {
        return a.max(b);
    }
    match opcode {
        Opcode::And => a.min(b),
        _ => a.max(b),
    }
}

/// A comparison, `And`/`Or`, `In` or a string test on `a` and `b` (operand `k`).
pub(crate) fn truth_of_binary(opcode: Opcode, k: u32, a: &Value, b: &Value) -> Truth {
    use Opcode::*;
    if matches!(a, Value::Missing) || matches!(b, Value::Missing) {
        return Truth::Missing;
    }
    match opcode {
        Eq | Ne => Truth::from(equal(a, b) == (opcode == Eq)),
        Lt | Le | Gt | Ge => order(opcode, k, a, b),
        And | Or => logic(opcode, Truth::of(a), Truth::of(b)),
        In => match b {
            Value::List(items) => Truth::from(items.iter().any(|v| equal(v, a))),
            _ => Truth::Absent,
        },
        StartsWith | EndsWith | Contains => match (a.as_str(), b.as_str()) {
            (Some(s), Some(p)) => Truth::from(match opcode {
                StartsWith => s.starts_with(p),
                EndsWith => s.ends_with(p),
                _ => s.contains(p),
            }),
            _ => Truth::Absent,
        },
        _ => Truth::Absent,
    }
}

/// `MakeList` over `items`: missing if any item is.
pub(crate) fn make_list(items: &[Value]) -> Value {
    if items.iter().any(|v| matches!(v, Value::Missing)) {
        Value::Missing
    } else {
        Value::List(items.iter().cloned().collect())
    }
}

fn pop(stack: &mut Stack) -> Value {
    stack.pop().unwrap_or(Value::Absent)
}

/// The value of a profile field the user's traits do not set: its default, else absent for an
/// optional field, else missing (LANGUAGE.md §3.1).
fn unset_profile_field(program: &Program, field: u32) -> Value {
    if let Some((_, constant_index)) = program.profile_defaults.iter().find(|(f, _)| *f == field) {
        return constant(program, *constant_index);
    }
    let optional = program
        .record_fields(program.profile)
        .and_then(|fields| fields.get(field as usize))
        .is_some_and(|f| {
            matches!(
                program.type_desc(f.ty),
                Some(crate::bytecode::TypeDesc::Optional(_))
            )
        });
    if optional {
        Value::Absent
    } else {
        Value::Missing
    }
}

fn constant(program: &Program, index: u32) -> Value {
    match program.constants.get(index as usize) {
        Some(Constant::Int(n)) => Value::Int(*n),
        Some(Constant::Float(n)) => Value::Float(*n),
        Some(Constant::String(s)) => Value::str(program.string(*s)),
        Some(Constant::Bool(b)) => Value::Bool(*b),
        Some(Constant::Duration(ms)) => Value::Duration(*ms),
        Some(Constant::Timestamp(ms)) => Value::Timestamp(*ms),
        Some(Constant::List(items)) => {
            Value::List(items.iter().map(|i| constant(program, *i)).collect())
        }
        None => Value::Absent,
    }
}

/// `==` on values: absent equals only absent; numbers compare across int and float.
pub fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => (*x as f64) == *y,
        _ => a == b,
    }
}

fn arithmetic(op: Opcode, k: u32, a: &Value, b: &Value) -> Value {
    use Value::*;
    match (a, b) {
        (Missing, _) | (_, Missing) => return Missing,
        (Absent, _) | (_, Absent) => return Absent,
        _ => {}
    }
    let result = match (op, k, a, b) {
        (Opcode::Add, kind::INT, &Int(x), &Int(y)) => x.checked_add(y).map(Int),
        (Opcode::Sub, kind::INT, &Int(x), &Int(y)) => x.checked_sub(y).map(Int),
        (Opcode::Mul, kind::INT, &Int(x), &Int(y)) => x.checked_mul(y).map(Int),
        (Opcode::Add, kind::FLOAT, &Float(x), &Float(y)) => Some(Float(x + y)),
        (Opcode::Sub, kind::FLOAT, &Float(x), &Float(y)) => Some(Float(x - y)),
        (Opcode::Mul, kind::FLOAT, &Float(x), &Float(y)) => Some(Float(x * y)),
        (Opcode::Div, kind::FLOAT, &Float(x), &Float(y)) => (y != 0.0).then(|| Float(x / y)),
        (Opcode::Add, kind::DURATION, &Duration(x), &Duration(y)) => x.checked_add(y).map(Duration),
        (Opcode::Sub, kind::DURATION, &Duration(x), &Duration(y)) => x.checked_sub(y).map(Duration),
        (Opcode::Add, kind::TIMESTAMP_DURATION, &Timestamp(x), &Duration(y)) => {
            x.checked_add(y).map(Timestamp)
        }
        (Opcode::Sub, kind::TIMESTAMP_DURATION, &Timestamp(x), &Duration(y)) => {
            x.checked_sub(y).map(Timestamp)
        }
        (Opcode::Sub, kind::TIMESTAMP_TIMESTAMP, &Timestamp(x), &Timestamp(y)) => {
            x.checked_sub(y).map(Duration)
        }
        (Opcode::Mul, kind::DURATION_FLOAT, &Duration(x), &Float(y)) => {
            finite_ms(x as f64 * y).map(Duration)
        }
        (Opcode::Div, kind::DURATION_FLOAT, &Duration(x), &Float(y)) => (y != 0.0)
            .then(|| finite_ms(x as f64 / y))
            .flatten()
            .map(Duration),
        _ => None,
    };
    result
        .filter(|v| !matches!(v, Float(f) if !f.is_finite()))
        .unwrap_or(Absent)
}

fn finite_ms(ms: f64) -> Option<i64> {
    (ms.is_finite() && ms.abs() < 9.0e15).then(|| ms.round() as i64)
}

fn order(op: Opcode, k: u32, a: &Value, b: &Value) -> Truth {
    use std::cmp::Ordering;
    let ordering = match (a, b) {
        (Value::Missing, _) | (_, Value::Missing) => return Truth::Missing,
        (Value::Int(x), Value::Int(y)) if k == kind::INT => x.cmp(y),
        (Value::Float(x), Value::Float(y)) if k == kind::FLOAT => match x.partial_cmp(y) {
            Some(o) => o,
            None => return Truth::Absent,
        },
        // (UTF-8 byte order is the order of the characters.)
        (Value::Short { .. } | Value::Long(_), Value::Short { .. } | Value::Long(_))
            if k == kind::STRING =>
        {
            a.str_bytes().cmp(&b.str_bytes())
        }
        (Value::Timestamp(x), Value::Timestamp(y)) if k == kind::TIMESTAMP => x.cmp(y),
        (Value::Duration(x), Value::Duration(y)) if k == kind::DURATION => x.cmp(y),
        _ => return Truth::Absent,
    };
    Truth::from(match op {
        Opcode::Lt => ordering == Ordering::Less,
        Opcode::Le => ordering != Ordering::Greater,
        Opcode::Gt => ordering == Ordering::Greater,
        _ => ordering != Ordering::Less,
    })
}

fn calendar(op: Opcode, ms: i64, zone: chrono_tz::Tz) -> Value {
    let Some(local) = zone.timestamp_millis_opt(ms).single() else {
        return Value::Absent;
    };
    match op {
        Opcode::Hour => Value::Int(i64::from(local.hour())),
        Opcode::Weekday => {
            let day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                [local.weekday().num_days_from_monday() as usize];
            Value::str(day)
        }
        _ => Value::str(&local.format("%Y-%m-%d").to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_swaps_the_bools_and_keeps_absent_and_missing() {
        let cases = [
            (Value::Bool(false), Truth::True),
            (Value::Bool(true), Truth::False),
            (Value::Absent, Truth::Absent),
            (Value::Missing, Truth::Missing),
            (Value::Int(1), Truth::Absent),
            (Value::str("x"), Truth::Absent),
        ];
        for (value, want) in cases {
            assert_eq!(truth_of_unary(Opcode::Not, &value), want, "not {value:?}");
            assert_eq!(Truth::of(&value).negated(), want, "negated {value:?}");
        }
    }
}
