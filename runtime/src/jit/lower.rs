//! A predicate block → a cranelift function defined in the module (`Compiler::compile`).
//!
//! Expression blocks are straight-line code over a stack (the verifier sees to it), so the
//! lowering runs the block once over an abstract stack of `Item`s: each value is an SSA triple
//! (state, payload, length) with a static `Ty`, and every rule of `eval` becomes arithmetic on
//! the triple, without branches (but for comparing a string with a constant, whose bytes are
//! read only once the lengths agree). Presence states are ordered present < absent < missing,
//! so "missing wins over absent, which wins over a value" is an unsigned maximum.

use cranelift_codegen::entity::EntityRef;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{F64, I32, I64};
use cranelift_codegen::ir::{
    self, AbiParam, InstBuilder, MemFlagsData, Signature, StackSlotData, StackSlotKind,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Module};

use super::helpers;
use std::mem::offset_of;

use super::{Bound, Env, Load, Source, Ty, ABSENT, MISSING, PRESENT};
use crate::bytecode::opcode::Opcode;
use crate::bytecode::verify::kind;
use crate::bytecode::{Block, BlockKind, TypeDesc};
use crate::eval::{Prepared, Read};
use crate::value::{self, Str, Value};

/// Why a block stays with the interpreter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The block is not an expression block whose value is a bool.
    NotAPredicate,
    /// It uses what the JIT does not compile (the opcode's name, or the kind of value).
    Unsupported(&'static str),
    /// Cranelift could not compile it, or the host is not a 64-bit one.
    Backend,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotAPredicate => f.write_str("not a predicate"),
            Refusal::Unsupported(what) => write!(f, "`{what}` is not compiled"),
            Refusal::Backend => f.write_str("the code generator failed"),
        }
    }
}

/// A function defined in the module, with what it reads and the constants it points at.
pub(super) struct Lowered {
    pub function: FuncId,
    pub loads: Vec<Load>,
    pub strings: Vec<Box<[u8]>>,
    /// Whether the code reads its `Env` (calls a helper that asks the context, or reads the
    /// clock); if not, it is called without one.
    pub uses_env: bool,
}

/// A value on the abstract stack.
#[derive(Clone, Copy)]
struct V {
    ty: Ty,
    /// I64: `PRESENT`, `ABSENT` or `MISSING`.
    state: ir::Value,
    /// F64 for floats, I64 otherwise (a bool is 0 or 1, a string or a list its address).
    a: ir::Value,
    /// I64: a string's length in bytes, a list's in items (0 for other types).
    len: ir::Value,
    /// A string constant's bytes (an index into `Lowering::strings`): compared inline.
    known: Option<usize>,
    /// A string read in place: where its value's payload is (`InPlace`).
    in_place: Option<InPlace>,
}

/// Where a string value read in place keeps its 16 payload bytes (I64), and whether they are
/// the string (I8: it is a `Value::Short`, so its bytes past its length are zero).
#[derive(Clone, Copy)]
struct InPlace {
    payload: ir::Value,
    short: ir::Value,
    /// I64: the length byte of a `Value::Short` (meaningless for another value: compare it
    /// only where `short` holds, as a compare with a constant of up to 16 bytes may, where a
    /// long string cannot be equal; it needs neither the `Arc`'s length nor a select).
    length: ir::Value,
}

enum Item {
    V(V),
    /// A constant list (only `In` reads one).
    List(Vec<Value>),
}

const BOUND_SIZE: i32 = std::mem::size_of::<Bound>() as i32;
const VALUE_SIZE: i64 = std::mem::size_of::<Value>() as i64;

/// The answer of code that met a value of another shape than it was compiled for.
pub(super) const DECLINED: i64 = 4;

// `value_at` takes a state from two bits per tag (absent's tag 0 → 1, missing's 1 → 2) and a
// decline from one bit per tag, both shifted out of a 64-bit constant.
const _: () = assert!(value::tag::ABSENT as u64 + 1 == ABSENT);
const _: () = assert!(value::tag::MISSING as u64 + 1 == MISSING);
const _: () = assert!(value::tag::LAST < 32);

/// String constants up to this long are compared inline rather than by a helper.
const INLINE_COMPARE: usize = 32;

/// Lowers `block` to a function `(event, slots, traits, env) → answer` (`super::Code`): the
/// addresses of the frame's three arrays, and of the `Env`. `defaults` is the address of the
/// profile defaults the code reads an unset trait's value from (the `Predicate`'s, which do
/// not move while the code lives).
pub(super) fn lower(
    module: &mut JITModule,
    prepared: &Prepared,
    block: &Block,
    defaults: *const Value,
) -> Result<Lowered, Refusal> {
    if module.target_config().pointer_type() != I64 {
        return Err(Refusal::Backend);
    }
    let mut signature = module.make_signature();
    signature.params.extend([AbiParam::new(I64); 4]);
    signature.returns.push(AbiParam::new(I32));
    let function = module
        .declare_anonymous_function(&signature)
        .map_err(|_| Refusal::Backend)?;
    let mut context = module.make_context();
    context.func.signature = signature;
    let mut builder_context = FunctionBuilderContext::new();
    let call_conv = module.target_config().default_call_conv;
    let (loads, strings, uses_env) = {
        let mut builder = FunctionBuilder::new(&mut context.func, &mut builder_context);
        let entry = builder.create_block();
        builder.append_block_params_for_function_params(entry);
        builder.switch_to_block(entry);
        let [event, slots, traits, env] = *builder.block_params(entry) else {
            return Err(Refusal::Backend);
        };
        let zero = builder.ins().iconst(I64, 0);
        let mut lowering = Lowering {
            b: builder,
            prepared,
            block,
            event,
            slots,
            traits,
            defaults: defaults as i64,
            declines: None,
            env,
            uses_env: false,
            out: None,
            zero,
            call_conv,
            loads: Vec::new(),
            strings: Vec::new(),
        };
        let answer = lowering.run()?;
        lowering.b.ins().return_(&[answer]);
        lowering.b.seal_all_blocks();
        lowering.b.finalize(module.target_config());
        (lowering.loads, lowering.strings, lowering.uses_env)
    };
    remove_unused(&mut context.func);
    module
        .define_function(function, &mut context)
        .map_err(|_| Refusal::Backend)?;
    module.clear_context(&mut context);
    Ok(Lowered {
        function,
        loads,
        strings,
        uses_env,
    })
}

/// Removes the instructions whose results nothing uses and that have no effect besides them
/// (the lowering computes some parts of a value eagerly — a string's shared address and
/// length, say — that the operations on it may not read). Cranelift at `opt_level` none keeps
/// such loads, and every instruction removed is one fewer to lower, allocate and run.
fn remove_unused(func: &mut ir::Function) {
    let mut uses = vec![0u32; func.dfg.num_values()];
    let mut insts = Vec::with_capacity(func.dfg.num_insts());
    for block in func.layout.blocks() {
        for inst in func.layout.block_insts(block) {
            insts.push(inst);
            if func.dfg.insts[inst].opcode().is_branch() {
                // (A jump's block arguments are uses too.)
                for value in func.dfg.inst_values(inst) {
                    uses[func.dfg.resolve_aliases(value).index()] += 1;
                }
            } else {
                for &value in func.dfg.inst_args(inst) {
                    uses[func.dfg.resolve_aliases(value).index()] += 1;
                }
            }
        }
    }
    // In reverse, so that an instruction used only by removed ones goes too.
    for &inst in insts.iter().rev() {
        let data = &func.dfg.insts[inst];
        let opcode = data.opcode();
        let removable = match data {
            ir::InstructionData::Load { flags, .. } => func.dfg.mem_flags[*flags].notrap(),
            _ => {
                !(opcode.can_load()
                    || opcode.can_store()
                    || opcode.can_trap()
                    || opcode.is_call()
                    || opcode.is_branch()
                    || opcode.is_terminator()
                    || opcode.other_side_effects())
            }
        };
        let results = func.dfg.inst_results(inst);
        if !removable || results.is_empty() || results.iter().any(|r| uses[r.index()] > 0) {
            continue;
        }
        for &value in func.dfg.inst_args(inst) {
            let used = &mut uses[func.dfg.resolve_aliases(value).index()];
            *used = used.saturating_sub(1);
        }
        func.layout.remove_inst(inst);
    }
}

struct Lowering<'p, 'f> {
    b: FunctionBuilder<'f>,
    prepared: &'p Prepared<'p>,
    block: &'p Block,
    /// The addresses of the frame's event fields, slots and traits (the first three
    /// parameters).
    event: ir::Value,
    slots: ir::Value,
    traits: ir::Value,
    /// The address of the profile defaults (a constant).
    defaults: i64,
    /// I64 whose lowest bit is set when a value loaded so far has another shape than its
    /// type's (then the answer is `DECLINED`); `None` until a load can decline.
    declines: Option<ir::Value>,
    /// The `Env` (fourth parameter), passed on to helpers; read through `env()`.
    env: ir::Value,
    /// Whether the code reads `env`.
    uses_env: bool,
    /// Where helpers write a `Bound` result: made for the first that does, so that code
    /// calling none has no stack frame to set up.
    out: Option<ir::StackSlot>,
    zero: ir::Value,
    call_conv: cranelift_codegen::isa::CallConv,
    loads: Vec<Load>,
    strings: Vec<Box<[u8]>>,
}

impl Lowering<'_, '_> {
    /// Lowers the block; returns the I32 answer (0 false, 1 true, 2 absent, 3 missing).
    fn run(&mut self) -> Result<ir::Value, Refusal> {
        let end = self.block.offset.saturating_add(self.block.length);
        let mut stack: Vec<Item> = Vec::new();
        let mut pc = self.block.offset;
        while let Some(ins) = self.prepared.instruction(pc, end) {
            let [a, _] = ins.operands;
            use Opcode::*;
            let pushed = match ins.opcode {
                Const => self.constant(a)?,
                LoadEvent => {
                    let (ty, required) = self.event_field_ty(a)?;
                    Item::V(self.load(Source::Read(Read::Event(a as u16)), ty, required)?)
                }
                LoadProfile => {
                    let program = self.prepared.program;
                    let field = program
                        .record_fields(program.profile)
                        .and_then(|f| f.get(a as usize))
                        .ok_or(Refusal::Unsupported("LoadProfile"))?;
                    let ty = Ty::of(program, field.ty).ok_or(Refusal::Unsupported("a record"))?;
                    Item::V(self.load(Source::Read(Read::Profile(a as u16)), ty, false)?)
                }
                LoadSlot => {
                    let BlockKind::Expression { journey, .. } = self.block.kind else {
                        return Err(Refusal::NotAPredicate);
                    };
                    let program = self.prepared.program;
                    let ty = program
                        .journeys
                        .get(journey as usize)
                        .and_then(|j| j.slots.get(a as usize))
                        .and_then(|ty| Ty::of(program, *ty))
                        .ok_or(Refusal::Unsupported("LoadSlot"))?;
                    Item::V(self.load(Source::Read(Read::Slot(a as u16)), ty, false)?)
                }
                Now => Item::V(self.load(Source::Now, Ty::Timestamp, true)?),
                EnteredAt => Item::V(self.load(Source::EnteredAt, Ty::Timestamp, true)?),
                Add | Sub | Mul | Div => {
                    let y = pop(&mut stack)?;
                    let x = pop(&mut stack)?;
                    Item::V(self.arithmetic(ins.opcode, a, x, y))
                }
                Neg => {
                    let x = pop(&mut stack)?;
                    Item::V(self.negate(x))
                }
                ToFloat => {
                    let x = pop(&mut stack)?;
                    Item::V(if x.ty == Ty::Int {
                        let a = self.b.ins().fcvt_from_sint(F64, x.a);
                        V {
                            ty: Ty::Float,
                            a,
                            ..x
                        }
                    } else {
                        x
                    })
                }
                Eq | Ne => {
                    let y = pop(&mut stack)?;
                    let x = pop(&mut stack)?;
                    Item::V(self.equality(ins.opcode == Eq, x, y))
                }
                Lt | Le | Gt | Ge => {
                    let y = pop(&mut stack)?;
                    let x = pop(&mut stack)?;
                    Item::V(self.order(ins.opcode, a, x, y)?)
                }
                Not => {
                    let x = pop(&mut stack)?;
                    Item::V(if x.ty == Ty::Bool {
                        let a = self.b.ins().bxor_imm_s(x.a, 1);
                        V { a, ..x }
                    } else {
                        self.never_present(Ty::Bool, x.state)
                    })
                }
                And | Or => {
                    let y = pop(&mut stack)?;
                    let x = pop(&mut stack)?;
                    let state = self.max_state(x.state, y.state);
                    Item::V(if x.ty == Ty::Bool && y.ty == Ty::Bool {
                        let a = if ins.opcode == And {
                            self.b.ins().band(x.a, y.a)
                        } else {
                            self.b.ins().bor(x.a, y.a)
                        };
                        self.bool(state, a)
                    } else {
                        self.never_present(Ty::Bool, state)
                    })
                }
                IsSet => {
                    let x = pop_any(&mut stack)?;
                    let state = self.missing_else_present(x.state);
                    let set = self.is_present(x.state);
                    let a = self.b.ins().uextend(I64, set);
                    Item::V(self.bool(state, a))
                }
                Coalesce => {
                    let y = pop_any(&mut stack)?;
                    let x = pop_any(&mut stack)?;
                    if x.ty != y.ty {
                        return Err(Refusal::Unsupported("Coalesce"));
                    }
                    let take_y = self
                        .b
                        .ins()
                        .icmp_imm_s(IntCC::Equal, x.state, ABSENT as i64);
                    let state = self.b.ins().select(take_y, y.state, x.state);
                    let a = self.b.ins().select(take_y, y.a, x.a);
                    let len = self.b.ins().select(take_y, y.len, x.len);
                    let in_place = match (x.in_place, y.in_place) {
                        (Some(x), Some(y)) => Some(InPlace {
                            payload: self.b.ins().select(take_y, y.payload, x.payload),
                            short: self.b.ins().select(take_y, y.short, x.short),
                            length: self.b.ins().select(take_y, y.length, x.length),
                        }),
                        _ => None,
                    };
                    Item::V(V {
                        ty: x.ty,
                        state,
                        a,
                        len,
                        known: None,
                        in_place,
                    })
                }
                In => match stack.pop() {
                    Some(Item::List(items)) => {
                        let x = pop(&mut stack)?;
                        Item::V(self.member(x, &items)?)
                    }
                    Some(Item::V(list)) if list.ty == Ty::List => {
                        let x = pop(&mut stack)?;
                        Item::V(self.contains(x, list))
                    }
                    _ => return Err(Refusal::Unsupported("In")),
                },
                StartsWith | EndsWith | Contains => {
                    let p = pop(&mut stack)?;
                    let s = pop(&mut stack)?;
                    let state = self.max_state(s.state, p.state);
                    Item::V(if s.ty == Ty::Str && p.ty == Ty::Str {
                        let op = match ins.opcode {
                            StartsWith => helpers::STARTS_WITH,
                            EndsWith => helpers::ENDS_WITH,
                            _ => helpers::CONTAINS,
                        };
                        let op = self.b.ins().iconst(I32, i64::from(op));
                        let found = self.call(
                            helpers::str_test as *const (),
                            &[I32, I64, I64, I64, I64],
                            Some(I32),
                            &[op, s.a, s.len, p.a, p.len],
                        );
                        let a = self.b.ins().uextend(I64, found);
                        self.bool(state, a)
                    } else {
                        self.never_present(Ty::Bool, state)
                    })
                }
                Len => {
                    let s = pop_any(&mut stack)?;
                    let a = match s.ty {
                        // A list's length is bound with it.
                        Ty::List => s.len,
                        Ty::Str => self.call(
                            helpers::str_len as *const (),
                            &[I64, I64],
                            Some(I64),
                            &[s.a, s.len],
                        ),
                        _ => return Err(Refusal::Unsupported("Len")),
                    };
                    Item::V(self.scalar(Ty::Int, s.state, a))
                }
                Count | Did | Sum => {
                    let (helper, ty) = match ins.opcode {
                        Count => (helpers::history::<{ helpers::COUNT }> as *const (), Ty::Int),
                        Did => (helpers::history::<{ helpers::DID }> as *const (), Ty::Bool),
                        _ => (helpers::history::<{ helpers::SUM }> as *const (), Ty::Float),
                    };
                    let query = self.b.ins().iconst(I32, i64::from(a));
                    let env = self.env();
                    Item::V(self.call_pair(helper, &[env, query], ty))
                }
                Hour | Weekday => {
                    let x = pop(&mut stack)?;
                    let ty = if ins.opcode == Hour { Ty::Int } else { Ty::Str };
                    Item::V(if x.ty == Ty::Timestamp {
                        let op = if ins.opcode == Hour {
                            helpers::HOUR
                        } else {
                            helpers::WEEKDAY
                        };
                        let op = self.b.ins().iconst(I32, i64::from(op));
                        let env = self.env();
                        let r = self.call_out(
                            helpers::calendar as *const (),
                            &[I64, I32, I64],
                            &[env, op, x.a],
                            ty,
                        );
                        // Absent and missing pass through; a time without a single local
                        // reading is absent.
                        self.where_present(x.state, r)
                    } else {
                        self.never_present(ty, x.state)
                    })
                }
                Return => {
                    let x = pop(&mut stack)?;
                    if x.ty != Ty::Bool {
                        return Err(Refusal::NotAPredicate);
                    }
                    // 0/1 when present, else 2 (absent) or 3 (missing).
                    let answer = if x.state == self.zero {
                        x.a
                    } else {
                        let present = self.b.ins().icmp_imm_s(IntCC::Equal, x.state, 0);
                        let shifted = self.b.ins().iadd_imm_s(x.state, 1);
                        self.b.ins().select(present, x.a, shifted)
                    };
                    let answer = match self.declines {
                        Some(declines) => {
                            let declined = self.c(DECLINED);
                            let declines = self.b.ins().band_imm_s(declines, 1);
                            self.b.ins().select(declines, declined, answer)
                        }
                        None => answer,
                    };
                    return Ok(self.b.ins().ireduce(I32, answer));
                }
                other => return Err(Refusal::Unsupported(other.name())),
            };
            stack.push(pushed);
            pc = ins.next;
        }
        Err(Refusal::NotAPredicate)
    }

    fn c(&mut self, n: i64) -> ir::Value {
        self.b.ins().iconst(I64, n)
    }

    /// A computed value that is not a string or a list (length 0, no known bytes).
    fn scalar(&self, ty: Ty, state: ir::Value, a: ir::Value) -> V {
        V {
            ty,
            state,
            a,
            len: self.zero,
            known: None,
            in_place: None,
        }
    }

    fn bool(&self, state: ir::Value, a: ir::Value) -> V {
        self.scalar(Ty::Bool, state, a)
    }

    /// A value that cannot be present (its operands have the wrong shape): missing if an
    /// operand is, else absent.
    fn never_present(&mut self, ty: Ty, state: ir::Value) -> V {
        let one = self.c(ABSENT as i64);
        let state = self.b.ins().umax(state, one);
        let a = match ty {
            Ty::Float => self.b.ins().f64const(0.0),
            _ => self.zero,
        };
        self.scalar(ty, state, a)
    }

    /// I8: whether `state` is present.
    fn is_present(&mut self, state: ir::Value) -> ir::Value {
        self.b.ins().icmp_imm_s(IntCC::Equal, state, PRESENT as i64)
    }

    /// The state of a bool that an absent operand makes false: missing if `state` is, else
    /// present.
    fn missing_else_present(&mut self, state: ir::Value) -> ir::Value {
        if state == self.zero {
            return self.zero;
        }
        let missing = self.b.ins().icmp_imm_s(IntCC::Equal, state, MISSING as i64);
        let two = self.c(MISSING as i64);
        self.b.ins().select(missing, two, self.zero)
    }

    /// The greater of two states (missing over absent over present), without an instruction
    /// when one is a constant's (present).
    fn max_state(&mut self, x: ir::Value, y: ir::Value) -> ir::Value {
        if x == self.zero {
            y
        } else if y == self.zero {
            x
        } else {
            self.b.ins().umax(x, y)
        }
    }

    /// `state`, made absent where `bad` holds and it was present.
    fn absent_if(&mut self, bad: ir::Value, state: ir::Value) -> ir::Value {
        let one = self.c(ABSENT as i64);
        let at_least_absent = self.b.ins().umax(state, one);
        self.b.ins().select(bad, at_least_absent, state)
    }

    /// The type of field `field` of the block's event, and whether the field is required
    /// (not optional: an event that matches its schema always has it).
    fn event_field_ty(&self, field: u32) -> Result<(Ty, bool), Refusal> {
        let BlockKind::Expression { event, .. } = self.block.kind else {
            return Err(Refusal::NotAPredicate);
        };
        let program = self.prepared.program;
        let ty = program
            .events
            .get(event as usize)
            .and_then(|e| program.record_fields(e.record))
            .and_then(|fields| fields.get(field as usize))
            .map(|f| f.ty)
            .ok_or(Refusal::Unsupported("LoadEvent"))?;
        let required = !matches!(program.type_desc(ty), Some(TypeDesc::Optional(_)));
        Ok((
            Ty::of(program, ty).ok_or(Refusal::Unsupported("LoadEvent"))?,
            required,
        ))
    }

    /// The value of `source` as a `ty`, read in place from the frame; `required`: it
    /// is present whenever it has its type's shape.
    fn load(&mut self, source: Source, ty: Ty, required: bool) -> Result<V, Refusal> {
        if !self.loads.iter().any(|l| l.source == source) {
            self.loads.push(Load { source, ty });
        }
        let flags = MemFlagsData::trusted();
        let at = |index: u16| i64::from(index) * VALUE_SIZE;
        let address = match source {
            Source::Now | Source::EnteredAt => {
                let offset = if source == Source::Now {
                    offset_of!(Env, now)
                } else {
                    offset_of!(Env, entered_at)
                };
                let env = self.env();
                let a = self.b.ins().load(I64, flags, env, offset as i32);
                return Ok(self.scalar(Ty::Timestamp, self.zero, a));
            }
            Source::Read(Read::Event(f)) => self.offset(self.event, at(f)),
            Source::Read(Read::Slot(s)) => self.offset(self.slots, at(s)),
            Source::Read(Read::Profile(f)) => {
                if !super::traits_in_place() {
                    return Err(Refusal::Unsupported("profile fields in this build"));
                }
                // The trait if it is set, else the program's default.
                let set = self.offset(self.traits, at(f));
                let default = self.c(self.defaults.wrapping_add(at(f)));
                let tag = self.b.ins().uload8(I64, flags, set, 0);
                let unset = self.b.ins().icmp_imm_s(
                    IntCC::UnsignedGreaterThan,
                    tag,
                    i64::from(value::tag::LAST),
                );
                self.b.ins().select(unset, default, set)
            }
        };
        self.value_at(address, ty, required)
    }

    /// `base + bytes`.
    fn offset(&mut self, base: ir::Value, bytes: i64) -> ir::Value {
        if bytes == 0 {
            base
        } else {
            self.b.ins().iadd_imm_s(base, bytes)
        }
    }

    /// The `Env` parameter, noting that the code reads it.
    fn env(&mut self) -> ir::Value {
        self.uses_env = true;
        self.env
    }

    /// The `Value` at `address`, as a `ty`. Its state is its tag's (absent, missing, else
    /// present); a tag of another type declines the evaluation (`declines`). The payload is
    /// read whatever the tag: where the value is not present it is never used, but for a
    /// string's, which is then empty at a valid address.
    fn value_at(&mut self, address: ir::Value, ty: Ty, required: bool) -> Result<V, Refusal> {
        let flags = MemFlagsData::trusted();
        let tag = self.b.ins().uload8(I64, flags, address, 0);
        let allowed = |tag: u8| 1u64 << tag;
        let (state, mut fine) = if required {
            // Present, as a constant: what it takes part in is folded (`max_state`).
            (self.zero, 0)
        } else {
            // The state, from two bits per tag: absent (tag 0) → 1, missing (1) → 2, else 0.
            let twice = self.b.ins().iadd(tag, tag);
            let states = self.c(0b10_01);
            let states = self.b.ins().ushr(states, twice);
            let state = self.b.ins().band_imm_s(states, 3);
            (
                state,
                allowed(value::tag::ABSENT) | allowed(value::tag::MISSING),
            )
        };
        // The tags a `ty` may have, a bit each; `wrong`'s bit `tag` is set for the others.
        fine |= match ty {
            Ty::Bool => allowed(value::tag::BOOL),
            Ty::Int => allowed(value::tag::INT),
            Ty::Float => allowed(value::tag::FLOAT),
            Ty::Str => allowed(value::tag::SHORT) | allowed(value::tag::LONG),
            Ty::Timestamp => allowed(value::tag::TIMESTAMP),
            Ty::Duration => allowed(value::tag::DURATION),
            Ty::List => allowed(value::tag::LIST),
        };
        let wrong = self.c(!fine as i64);
        let wrong = self.b.ins().ushr(wrong, tag);
        self.declines = Some(match self.declines {
            Some(declines) => self.b.ins().bor(declines, wrong),
            None => wrong,
        });
        let (a, len, in_place) = match ty {
            Ty::Bool => (self.b.ins().uload8(I64, flags, address, 1), self.zero, None),
            Ty::Float => (self.b.ins().load(F64, flags, address, 8), self.zero, None),
            Ty::Int | Ty::Timestamp | Ty::Duration => {
                (self.b.ins().load(I64, flags, address, 8), self.zero, None)
            }
            Ty::Str => {
                let payload = self.b.ins().iadd_imm_s(address, 8);
                let short =
                    self.b
                        .ins()
                        .icmp_imm_s(IntCC::Equal, tag, i64::from(value::tag::SHORT));
                let length = self.b.ins().uload8(I64, flags, address, 1);
                let in_place = InPlace {
                    payload,
                    short,
                    length,
                };
                let (a, len) = self.shared_at(address, tag, Some(in_place))?;
                (a, len, Some(in_place))
            }
            Ty::List => {
                let (a, len) = self.shared_at(address, tag, None)?;
                (a, len, None)
            }
        };
        Ok(V {
            ty,
            state,
            a,
            len,
            known: None,
            in_place,
        })
    }

    /// The address and length of the string (`string`: where it is in place) or the list at
    /// `address` with tag `tag`: a short string's bytes in place, a long string's or a list's
    /// where its `Arc` points (`shared_layout`). Any other value is empty, at the address of
    /// its payload (16 readable bytes).
    fn shared_at(
        &mut self,
        address: ir::Value,
        tag: ir::Value,
        string: Option<InPlace>,
    ) -> Result<(ir::Value, ir::Value), Refusal> {
        let layout = super::shared_layout().ok_or(Refusal::Unsupported("strings in this build"))?;
        let flags = MemFlagsData::trusted();
        let (a, len, shared_tag) = match string {
            Some(InPlace {
                payload,
                short,
                length,
            }) => {
                let length = self.b.ins().select(short, length, self.zero);
                (payload, length, value::tag::LONG)
            }
            None => {
                let payload = self.b.ins().iadd_imm_s(address, 8);
                (payload, self.zero, value::tag::LIST)
            }
        };
        let shared = self
            .b
            .ins()
            .icmp_imm_s(IntCC::Equal, tag, i64::from(shared_tag));
        // (Read whatever the tag: the words are only used where it is `shared_tag`.)
        let start = self.b.ins().load(I64, flags, address, 8 + layout.address);
        let data = self.b.ins().iadd_imm_s(start, layout.data);
        let count = self.b.ins().load(I64, flags, address, 8 + layout.length);
        let a = self.b.ins().select(shared, data, a);
        let len = self.b.ins().select(shared, count, len);
        Ok((a, len))
    }

    /// Calls helper `f` with `args` (of types `params`) and, last, the address of the result
    /// slot; returns the `Bound` it wrote there, as a `ty`.
    fn call_out(&mut self, f: *const (), params: &[ir::Type], args: &[ir::Value], ty: Ty) -> V {
        let slot = match self.out {
            Some(slot) => slot,
            None => {
                let slot = self.b.create_sized_stack_slot(StackSlotData::new(
                    StackSlotKind::ExplicitSlot,
                    BOUND_SIZE as u32,
                    3,
                ));
                self.out = Some(slot);
                slot
            }
        };
        let out = self.b.ins().stack_addr(I64, slot, 0);
        let params: Vec<ir::Type> = params.iter().copied().chain([I64]).collect();
        let args: Vec<ir::Value> = args.iter().copied().chain([out]).collect();
        self.call(f, &params, None, &args);
        self.read_bound(out, 0, ty)
    }

    /// Calls a history helper with the environment and the query: its answer comes back as a
    /// `helpers::Pair` in two registers, not through memory.
    fn call_pair(&mut self, f: *const (), args: &[ir::Value], ty: Ty) -> V {
        let mut signature = Signature::new(self.call_conv);
        signature
            .params
            .extend([AbiParam::new(I64), AbiParam::new(I32)]);
        signature
            .returns
            .extend([AbiParam::new(I64), AbiParam::new(I64)]);
        let signature = self.b.import_signature(signature);
        let callee = self.c(f as i64);
        let call = self.b.ins().call_indirect(signature, callee, args);
        let (state, bits) = match self.b.inst_results(call) {
            [state, bits] => (*state, *bits),
            _ => (self.c(ABSENT as i64), self.zero),
        };
        self.helper_answer(ty, state, bits, self.zero)
    }

    /// A helper's answer (a `Bound`'s words) as a `ty`.
    fn helper_answer(&mut self, ty: Ty, state: ir::Value, bits: ir::Value, len: ir::Value) -> V {
        let a = if ty == Ty::Float {
            self.b.ins().bitcast(F64, MemFlagsData::new(), bits)
        } else {
            bits
        };
        V {
            ty,
            state,
            a,
            len,
            known: None,
            in_place: None,
        }
    }

    /// `r` where the operands' `state` is present; else that state (absent or missing passes
    /// through a helper's result).
    fn where_present(&mut self, state: ir::Value, r: V) -> V {
        let present = self.is_present(state);
        let state = self.b.ins().select(present, r.state, state);
        V { state, ..r }
    }

    /// The `Bound` at `address + offset`, as a `ty`.
    fn read_bound(&mut self, address: ir::Value, offset: i32, ty: Ty) -> V {
        let flags = MemFlagsData::trusted();
        let state = self.b.ins().load(I64, flags, address, offset);
        let bits = self.b.ins().load(I64, flags, address, offset + 8);
        let len = self.b.ins().load(I64, flags, address, offset + 16);
        self.helper_answer(ty, state, bits, len)
    }

    fn constant(&mut self, index: u32) -> Result<Item, Refusal> {
        Ok(match self.prepared.constant(index) {
            Value::List(items) => Item::List(items.to_vec()),
            value => Item::V(self.constant_value(&value)?),
        })
    }

    fn constant_value(&mut self, value: &Value) -> Result<V, Refusal> {
        let zero = self.zero;
        let (ty, a, len, known) = match value {
            Value::Bool(b) => (Ty::Bool, self.c(i64::from(*b)), zero, None),
            Value::Int(n) => (Ty::Int, self.c(*n), zero, None),
            Value::Timestamp(n) => (Ty::Timestamp, self.c(*n), zero, None),
            Value::Duration(n) => (Ty::Duration, self.c(*n), zero, None),
            Value::Float(x) => (Ty::Float, self.b.ins().f64const(*x), zero, None),
            Value::Short { .. } | Value::Long(_) => {
                let bytes: Box<[u8]> = value.as_str().unwrap_or_default().as_bytes().into();
                // The boxed bytes do not move when the box does: the address stays valid
                // while the `Predicate` that owns them lives.
                let address = self.c(bytes.as_ptr() as i64);
                let len = self.c(bytes.len() as i64);
                self.strings.push(bytes);
                (Ty::Str, address, len, Some(self.strings.len() - 1))
            }
            _ => return Err(Refusal::Unsupported("a constant record")),
        };
        Ok(V {
            ty,
            state: zero,
            a,
            len,
            known,
            in_place: None,
        })
    }

    /// Calls helper `f` with `args` of types `params`; its result, if it has one.
    fn call(
        &mut self,
        f: *const (),
        params: &[ir::Type],
        returns: Option<ir::Type>,
        args: &[ir::Value],
    ) -> ir::Value {
        let mut signature = Signature::new(self.call_conv);
        signature
            .params
            .extend(params.iter().map(|t| AbiParam::new(*t)));
        signature.returns.extend(returns.map(AbiParam::new));
        let signature = self.b.import_signature(signature);
        let callee = self.c(f as i64);
        let call = self.b.ins().call_indirect(signature, callee, args);
        self.b
            .inst_results(call)
            .first()
            .copied()
            .unwrap_or(self.zero)
    }

    fn str_eq(&mut self, x: V, y: V) -> ir::Value {
        match (x.known, y.known) {
            (_, Some(k)) if self.strings[k].len() <= INLINE_COMPARE => {
                return self.str_eq_known(x, k);
            }
            (Some(k), _) if self.strings[k].len() <= INLINE_COMPARE => {
                return self.str_eq_known(y, k);
            }
            _ => {}
        }
        let r = self.call(
            helpers::str_eq as *const (),
            &[I64, I64, I64, I64],
            Some(I32),
            &[x.a, x.len, y.a, y.len],
        );
        self.b.ins().icmp_imm_s(IntCC::NotEqual, r, 0)
    }

    /// Whether string `x` equals constant `k`, compared inline: the lengths, then (only when
    /// they agree, so no byte past `x`'s end is read) the bytes a word at a time.
    fn str_eq_known(&mut self, x: V, k: usize) -> ir::Value {
        let bytes = self.strings[k].clone();
        if let Some(in_place) = x.in_place.filter(|_| bytes.len() <= Str::INLINE) {
            return self.str_eq_in_place(in_place, &bytes);
        }
        let same_length = self
            .b
            .ins()
            .icmp_imm_s(IntCC::Equal, x.len, bytes.len() as i64);
        let compare = self.b.create_block();
        let done = self.b.create_block();
        let answer = self.b.append_block_param(done, ir::types::I8);
        let no = self.b.ins().iconst(ir::types::I8, 0);
        self.b
            .ins()
            .brif(same_length, compare, &[], done, &[ir::BlockArg::Value(no)]);
        self.b.switch_to_block(compare);
        let mut equal = self.b.ins().iconst(ir::types::I8, 1);
        let mut offset = 0usize;
        for width in [8usize, 4, 2, 1] {
            while bytes.len() - offset >= width {
                let chunk = &bytes[offset..offset + width];
                let (ty, want) = match width {
                    8 => (
                        I64,
                        i64::from_ne_bytes(chunk.try_into().unwrap_or_default()),
                    ),
                    4 => (
                        I32,
                        i64::from(i32::from_ne_bytes(chunk.try_into().unwrap_or_default())),
                    ),
                    2 => (
                        ir::types::I16,
                        i64::from(i16::from_ne_bytes(chunk.try_into().unwrap_or_default())),
                    ),
                    _ => (ir::types::I8, i64::from(chunk[0] as i8)),
                };
                let got = self
                    .b
                    .ins()
                    .load(ty, MemFlagsData::new(), x.a, offset as i32);
                let same = self.b.ins().icmp_imm_s(IntCC::Equal, got, want);
                equal = self.b.ins().band(equal, same);
                offset += width;
            }
        }
        self.b.ins().jump(done, &[ir::BlockArg::Value(equal)]);
        self.b.switch_to_block(done);
        answer
    }

    /// Whether the string read in place at `in_place` equals `bytes` (at most 16), without a
    /// branch: it is a short string (a long one is longer, `Value`'s invariant), of the same
    /// length, and its payload's words are those of `bytes` padded with zeros.
    fn str_eq_in_place(&mut self, in_place: InPlace, bytes: &[u8]) -> ir::Value {
        let mut padded = [0u8; Str::INLINE];
        padded[..bytes.len()].copy_from_slice(bytes);
        let same_length =
            self.b
                .ins()
                .icmp_imm_s(IntCC::Equal, in_place.length, bytes.len() as i64);
        let mut equal = self.b.ins().band(in_place.short, same_length);
        // (A string of up to 8 bytes has zeros in the second word: its length decides.)
        let words = if bytes.len() <= 8 { 1 } else { 2 };
        for (i, word) in padded.chunks_exact(8).take(words).enumerate() {
            let want = i64::from_ne_bytes(word.try_into().unwrap_or_default());
            let got =
                self.b
                    .ins()
                    .load(I64, MemFlagsData::trusted(), in_place.payload, i as i32 * 8);
            let same = self.b.ins().icmp_imm_s(IntCC::Equal, got, want);
            equal = self.b.ins().band(equal, same);
        }
        equal
    }

    /// `eval::equal` of two present values: I8 1 or 0.
    fn present_equal(&mut self, x: V, y: V) -> ir::Value {
        match (x.ty, y.ty) {
            (Ty::Int, Ty::Float) => {
                let xf = self.b.ins().fcvt_from_sint(F64, x.a);
                self.b.ins().fcmp(FloatCC::Equal, xf, y.a)
            }
            (Ty::Float, Ty::Int) => {
                let yf = self.b.ins().fcvt_from_sint(F64, y.a);
                self.b.ins().fcmp(FloatCC::Equal, x.a, yf)
            }
            (Ty::Float, Ty::Float) => self.b.ins().fcmp(FloatCC::Equal, x.a, y.a),
            (Ty::Str, Ty::Str) => self.str_eq(x, y),
            (t, u) if t == u => self.b.ins().icmp(IntCC::Equal, x.a, y.a),
            _ => self.b.ins().iconst(ir::types::I8, 0),
        }
    }

    /// `==` (or `!=`): missing if either is; otherwise absent equals only absent.
    fn equality(&mut self, eq: bool, x: V, y: V) -> V {
        let (x, y) = if x.state == self.zero { (y, x) } else { (x, y) };
        let (state, equal) = if y.state == self.zero {
            // Against a constant (present): equal only if present and the values are.
            let values_equal = self.present_equal(x, y);
            let equal = if x.state == self.zero {
                values_equal
            } else {
                let present = self.is_present(x.state);
                self.b.ins().band(present, values_equal)
            };
            (self.missing_else_present(x.state), equal)
        } else {
            let top = self.max_state(x.state, y.state);
            let state = self.missing_else_present(top);
            let same_state = self.b.ins().icmp(IntCC::Equal, x.state, y.state);
            let x_absent = self
                .b
                .ins()
                .icmp_imm_s(IntCC::Equal, x.state, ABSENT as i64);
            let both_absent = self.b.ins().band(same_state, x_absent);
            let x_present = self.is_present(x.state);
            let both_present = self.b.ins().band(same_state, x_present);
            let values_equal = self.present_equal(x, y);
            let present_equal = self.b.ins().band(both_present, values_equal);
            (state, self.b.ins().bor(both_absent, present_equal))
        };
        let equal = if eq {
            equal
        } else {
            self.b.ins().bxor_imm_s(equal, 1)
        };
        let a = self.b.ins().uextend(I64, equal);
        self.bool(state, a)
    }

    /// `x in [constants]`: missing if `x` is; an absent `x` is in no list of constants.
    fn member(&mut self, x: V, items: &[Value]) -> Result<V, Refusal> {
        let mut found = self.b.ins().iconst(ir::types::I8, 0);
        for item in items {
            let y = self.constant_value(item)?;
            let equal = self.present_equal(x, y);
            found = self.b.ins().bor(found, equal);
        }
        if x.state != self.zero {
            let present = self.is_present(x.state);
            found = self.b.ins().band(found, present);
        }
        let state = self.missing_else_present(x.state);
        let a = self.b.ins().uextend(I64, found);
        Ok(self.bool(state, a))
    }

    /// `x in list` over a list value: missing if either is, absent if the list is; the items
    /// are compared by a helper (`eval::equal`'s rules).
    fn contains(&mut self, x: V, list: V) -> V {
        let from_x = self.missing_else_present(x.state);
        let state = self.max_state(from_x, list.state);
        let ty = self.b.ins().iconst(I32, i64::from(helpers::ty_code(x.ty)));
        let bits = match x.ty {
            Ty::Float => self.b.ins().bitcast(I64, MemFlagsData::new(), x.a),
            _ => x.a,
        };
        let found = self.call(
            helpers::list_contains as *const (),
            &[I64, I64, I32, I64, I64, I64],
            Some(I32),
            &[list.a, list.len, ty, x.state, bits, x.len],
        );
        let a = self.b.ins().uextend(I64, found);
        self.bool(state, a)
    }

    fn order(&mut self, op: Opcode, k: u32, x: V, y: V) -> Result<V, Refusal> {
        let want = match k {
            kind::INT => Ty::Int,
            kind::FLOAT => Ty::Float,
            kind::STRING => Ty::Str,
            kind::TIMESTAMP => Ty::Timestamp,
            kind::DURATION => Ty::Duration,
            _ => return Err(Refusal::Unsupported("an ordering kind")),
        };
        let state = self.max_state(x.state, y.state);
        if x.ty != want || y.ty != want {
            return Ok(self.never_present(Ty::Bool, state));
        }
        let (signed, float) = match op {
            Opcode::Lt => (IntCC::SignedLessThan, FloatCC::LessThan),
            Opcode::Le => (IntCC::SignedLessThanOrEqual, FloatCC::LessThanOrEqual),
            Opcode::Gt => (IntCC::SignedGreaterThan, FloatCC::GreaterThan),
            _ => (IntCC::SignedGreaterThanOrEqual, FloatCC::GreaterThanOrEqual),
        };
        let (holds, state) = match want {
            Ty::Float => {
                let holds = self.b.ins().fcmp(float, x.a, y.a);
                let unordered = self.b.ins().fcmp(FloatCC::Unordered, x.a, y.a);
                (holds, self.absent_if(unordered, state))
            }
            Ty::Str => {
                let order = self.call(
                    helpers::str_cmp as *const (),
                    &[I64, I64, I64, I64],
                    Some(I32),
                    &[x.a, x.len, y.a, y.len],
                );
                (self.b.ins().icmp_imm_s(signed, order, 0), state)
            }
            _ => (self.b.ins().icmp(signed, x.a, y.a), state),
        };
        let a = self.b.ins().uextend(I64, holds);
        Ok(self.bool(state, a))
    }

    fn arithmetic(&mut self, op: Opcode, k: u32, x: V, y: V) -> V {
        use Opcode::{Add, Div, Mul, Sub};
        use Ty::{Duration, Float, Int, Timestamp};
        let state = self.max_state(x.state, y.state);
        let checked = match (op, k, x.ty, y.ty) {
            (Add | Sub | Mul, kind::INT, Int, Int) => Some(Int),
            (Add | Sub, kind::DURATION, Duration, Duration) => Some(Duration),
            (Add | Sub, kind::TIMESTAMP_DURATION, Timestamp, Duration) => Some(Timestamp),
            (Sub, kind::TIMESTAMP_TIMESTAMP, Timestamp, Timestamp) => Some(Duration),
            _ => None,
        };
        if let Some(ty) = checked {
            let (a, overflow) = match op {
                Add => self.b.ins().sadd_overflow(x.a, y.a),
                Sub => self.b.ins().ssub_overflow(x.a, y.a),
                _ => self.b.ins().smul_overflow(x.a, y.a),
            };
            let state = self.absent_if(overflow, state);
            return self.scalar(ty, state, a);
        }
        match (op, k, x.ty, y.ty) {
            (Add | Sub | Mul | Div, kind::FLOAT, Float, Float) => {
                let a = match op {
                    Add => self.b.ins().fadd(x.a, y.a),
                    Sub => self.b.ins().fsub(x.a, y.a),
                    Mul => self.b.ins().fmul(x.a, y.a),
                    _ => self.b.ins().fdiv(x.a, y.a),
                };
                // Not finite (this also catches NaN) or a division by zero: absent.
                let magnitude = self.b.ins().fabs(a);
                let infinity = self.b.ins().f64const(f64::INFINITY);
                let finite = self.b.ins().fcmp(FloatCC::LessThan, magnitude, infinity);
                let mut bad = self.b.ins().bxor_imm_s(finite, 1);
                if op == Div {
                    let zero = self.b.ins().f64const(0.0);
                    let by_zero = self.b.ins().fcmp(FloatCC::Equal, y.a, zero);
                    bad = self.b.ins().bor(bad, by_zero);
                }
                let state = self.absent_if(bad, state);
                self.scalar(Float, state, a)
            }
            (Mul | Div, kind::DURATION_FLOAT, Duration, Float) => {
                let op = if op == Mul {
                    helpers::MUL
                } else {
                    helpers::DIV
                };
                let op = self.b.ins().iconst(I32, i64::from(op));
                let r = self.call_out(
                    helpers::duration_float as *const (),
                    &[I32, I64, F64],
                    &[op, x.a, y.a],
                    Duration,
                );
                self.where_present(state, r)
            }
            _ => self.never_present(x.ty, state),
        }
    }

    fn negate(&mut self, x: V) -> V {
        match x.ty {
            Ty::Int | Ty::Duration => {
                let min = self.b.ins().icmp_imm_s(IntCC::Equal, x.a, i64::MIN);
                let a = self.b.ins().ineg(x.a);
                let state = self.absent_if(min, x.state);
                V { a, state, ..x }
            }
            Ty::Float => {
                let a = self.b.ins().fneg(x.a);
                V { a, ..x }
            }
            ty => self.never_present(ty, x.state),
        }
    }
}

/// Pops a scalar: only `IsSet`, `Coalesce`, `In` and `Len` take a list (`pop_any`).
fn pop(stack: &mut Vec<Item>) -> Result<V, Refusal> {
    match pop_any(stack)? {
        V { ty: Ty::List, .. } => Err(Refusal::Unsupported("a list")),
        v => Ok(v),
    }
}

fn pop_any(stack: &mut Vec<Item>) -> Result<V, Refusal> {
    match stack.pop() {
        Some(Item::V(v)) => Ok(v),
        Some(Item::List(_)) => Err(Refusal::Unsupported("a list")),
        None => Err(Refusal::NotAPredicate),
    }
}
