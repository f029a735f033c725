//! Hot predicate blocks → native code (cranelift), with the interpreter as the reference.
//!
//! A predicate (an entry `where`, an audience, a goal or exit condition, a branch condition, a
//! history filter: an expression block whose result is a bool) that has run `Policy::HotAfter`
//! times is compiled once to a native function over a typed frame: every value the block loads
//! (event and profile fields, slots, `now`, the entry time) is bound first as a `Bound` — a
//! presence state, 64 bits of payload, and a length for strings and lists — and the code
//! computes the block's value with the interpreter's rules (`eval`): absent and missing
//! propagate the same way, overflow and division by zero give absent, and so on. What the JIT
//! does not compile (records and `last`, lists built by `MakeList`, lists compared with `==`,
//! `date`, `lower`/`upper`) stays with the interpreter, as does any evaluation whose inputs do
//! not have the shapes the block's types promise.
//!
//! **Invariant:** for every verified program, block and context, a compiled predicate returns
//! exactly what `eval::eval` returns, or declines (`None`) and the interpreter answers.
//! `tests/jit.rs` checks it on random well-typed blocks; `fuzz/fuzz_targets/jit.rs` on random
//! verified ones.
//!
//! This module is the only place in the workspace with `unsafe` code. It is needed twice: to
//! call the generated code (a function pointer cranelift hands back as a raw address), and in
//! the helpers that code calls, which receive raw pointers. The reasoning sits next to each.

#![allow(unsafe_code)]

mod helpers;
mod lower;

use std::cell::{Cell, OnceCell};
use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};

use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::default_libcall_names;

use crate::bytecode::{types, BlockKind, TypeDesc};
use crate::eval::{Context, Prepared, Read};
use crate::value::Value;

pub use lower::Refusal;

/// When predicates are compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Never: the interpreter runs everything.
    Off,
    /// After a predicate has been evaluated this many times.
    HotAfter(u32),
}

impl Default for Policy {
    /// Compiling costs some tens of microseconds, an interpreted evaluation some tens of
    /// nanoseconds: a predicate that has run a thousand times is likely to run many more.
    fn default() -> Policy {
        Policy::HotAfter(1000)
    }
}

/// The static type of a value the generated code handles (a type id with `?` removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Bool,
    Int,
    Float,
    /// Strings and enums.
    Str,
    Timestamp,
    Duration,
    /// A list of any element type: only tested for presence, counted, or searched (`In`).
    List,
}

impl Ty {
    /// The type of values of type id `id` in `program`, if the JIT handles it.
    pub(crate) fn of(program: &crate::bytecode::Program, id: u32) -> Option<Ty> {
        match id {
            types::BOOL => Some(Ty::Bool),
            types::INT => Some(Ty::Int),
            types::FLOAT => Some(Ty::Float),
            types::STRING => Some(Ty::Str),
            types::TIMESTAMP => Some(Ty::Timestamp),
            types::DURATION => Some(Ty::Duration),
            _ => match program.type_desc(id)? {
                TypeDesc::Optional(inner) => Ty::of(program, *inner),
                TypeDesc::Enum(_) => Some(Ty::Str),
                TypeDesc::List(_) => Some(Ty::List),
                TypeDesc::Record(_) => None,
            },
        }
    }
}

/// Where a bound value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Read(Read),
    Now,
    EnteredAt,
}

/// One value the generated code reads, and the type it was compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Load {
    pub source: Source,
    pub ty: Ty,
}

/// A value as the generated code sees it. `state`: 0 present, 1 absent, 2 missing. `bits`: the
/// bool (0 or 1), the integer, the float's bits, a string's address, or a list's first item's.
/// `len`: a string's length in bytes, a list's in items.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound {
    pub state: u64,
    pub bits: u64,
    pub len: u64,
}

pub(crate) const PRESENT: u64 = 0;
pub(crate) const ABSENT: u64 = 1;
pub(crate) const MISSING: u64 = 2;

impl Bound {
    /// `value` bound as a `ty`; `None` when it has another shape (then the interpreter runs).
    /// A string's address points into `value`, which must outlive the call.
    #[inline]
    fn of(value: &Value, ty: Ty) -> Option<Bound> {
        let present = |bits: u64| Bound::present(bits, 0);
        // (By the type first: it is the same at every evaluation of a load, so the branch on
        // it is predicted; the value's variant then is mostly the one expected.)
        Some(match (ty, value) {
            (Ty::Int, Value::Int(n))
            | (Ty::Timestamp, Value::Timestamp(n))
            | (Ty::Duration, Value::Duration(n)) => present(*n as u64),
            (Ty::Str, Value::Str(s)) => {
                Bound::present(s.as_bytes().as_ptr() as u64, s.as_bytes().len() as u64)
            }
            (Ty::Float, Value::Float(x)) => present(x.to_bits()),
            (Ty::Bool, Value::Bool(b)) => present(u64::from(*b)),
            (Ty::List, Value::List(items)) => {
                Bound::present(items.as_ptr() as u64, items.len() as u64)
            }
            (_, Value::Absent) => Bound::absent(),
            (_, Value::Missing) => Bound {
                state: MISSING,
                ..Bound::absent()
            },
            _ => return None,
        })
    }

    pub(crate) fn present(bits: u64, len: u64) -> Bound {
        Bound {
            state: PRESENT,
            bits,
            len,
        }
    }

    pub(crate) fn absent() -> Bound {
        Bound {
            state: ABSENT,
            // A string read from an absent value is empty, never a null address.
            bits: "".as_ptr() as u64,
            len: 0,
        }
    }
}

/// What the helpers the generated code calls can reach: the context, and whether one of them
/// met a value of a shape the code was not compiled for.
pub(crate) struct Env<'c> {
    pub context: &'c dyn Context,
    pub declined: Cell<bool>,
}

/// The signature of generated code: the bound values and the environment in; 0 false, 1 true,
/// 2 absent, 3 missing out.
type Code = unsafe extern "C" fn(*const Bound, *const Env) -> u32;

/// The memory the generated code lives in, freed when the last predicate compiled into it is
/// dropped.
struct CodeMemory(Option<JITModule>);

impl Drop for CodeMemory {
    fn drop(&mut self) {
        if let Some(module) = self.0.take() {
            // SAFETY: every `Predicate` holds an `Arc` of this memory and calls into it only
            // while it lives, so when the last one is gone no code from it can run again.
            unsafe { module.free_memory() };
        }
    }
}

/// Compiles predicate blocks of one program into one region of executable memory.
pub struct Compiler {
    memory: Arc<Mutex<CodeMemory>>,
}

/// A predicate compiled to native code.
pub struct Predicate {
    code: Code,
    loads: Box<[Load]>,
    /// String constants the code compares with, by address (kept here so they live as long).
    _strings: Box<[Box<[u8]>]>,
    _memory: Arc<Mutex<CodeMemory>>,
}

impl std::fmt::Debug for Predicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Predicate")
            .field("loads", &self.loads)
            .finish()
    }
}

impl Compiler {
    /// A compiler for the machine this runs on; `None` if cranelift does not support it.
    pub fn new() -> Option<Compiler> {
        let mut flags = settings::builder();
        // Predicates are a few dozen instructions run millions of times, but what costs there is
        // binding and the calls, not code quality; compile time is what these settings buy
        // (docs/performance.md). The IR is checked by tests against the interpreter, not by
        // cranelift's verifier at every compile.
        flags.set("opt_level", "none").ok()?;
        flags.set("enable_verifier", "false").ok()?;
        flags.set("regalloc_algorithm", "single_pass").ok()?;
        // Code and helpers are in one process: plain absolute addresses.
        flags.set("use_colocated_libcalls", "false").ok()?;
        flags.set("is_pic", "false").ok()?;
        let isa = cranelift_native::builder()
            .ok()?
            .finish(settings::Flags::new(flags))
            .ok()?;
        let module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
        Some(Compiler {
            memory: Arc::new(Mutex::new(CodeMemory(Some(module)))),
        })
    }

    /// Compiles predicate block `block` of `prepared`'s program, or says why it stays with the
    /// interpreter.
    pub fn compile(&self, prepared: &Prepared, block: u32) -> Result<Predicate, Refusal> {
        let program = prepared.program;
        let desc = program
            .blocks
            .get(block as usize)
            .ok_or(Refusal::NotAPredicate)?;
        match desc.kind {
            BlockKind::Expression { result, .. } if Ty::of(program, result) == Some(Ty::Bool) => {}
            _ => return Err(Refusal::NotAPredicate),
        }
        let mut guard = self.memory.lock().map_err(|_| Refusal::Backend)?;
        let module = guard.0.as_mut().ok_or(Refusal::Backend)?;
        let lowered = lower::lower(module, prepared, desc)?;
        module
            .finalize_definitions()
            .map_err(|_| Refusal::Backend)?;
        let address = module.get_finalized_function(lowered.function);
        // SAFETY: `address` is the entry of the function just defined with the signature
        // `lower` gives it — (pointer, pointer) → u32 in the host's C convention — which is
        // `Code`. It stays valid while `self.memory` lives, which `Predicate` holds.
        let code = unsafe { std::mem::transmute::<*const u8, Code>(address) };
        Ok(Predicate {
            code,
            loads: lowered.loads.into_boxed_slice(),
            _strings: lowered.strings.into_boxed_slice(),
            _memory: self.memory.clone(),
        })
    }
}

impl Predicate {
    /// Evaluates the predicate over `context`: what `eval::eval` would return, or `None` when
    /// an input does not have the shape the code was compiled for (the interpreter answers).
    pub fn run(&self, context: &dyn Context) -> Option<Value> {
        if self.loads.len() > INLINE_LOADS {
            return self.run_copied(context);
        }
        if self.loads.is_empty() {
            return self.call(context, &[]);
        }
        // The common case: a few values, bound in place where the context lends them. (Only
        // the slots the code reads are written: clearing all of them cost more than the rest.)
        let mut bound = [const { MaybeUninit::<Bound>::uninit() }; INLINE_LOADS];
        for (slot, load) in bound.iter_mut().zip(self.loads.iter()) {
            slot.write(match load.source {
                Source::Read(read) => match context.lend(read) {
                    Some(value) => Bound::of(value, load.ty)?,
                    None => return self.run_copied(context),
                },
                Source::Now => Bound::of(&Value::Timestamp(context.now()), load.ty)?,
                Source::EnteredAt => Bound::of(&Value::Timestamp(context.entered_at()), load.ty)?,
            });
        }
        let bound = &bound[..self.loads.len()];
        // SAFETY: the loop above wrote the first `loads.len()` slots (it returns early
        // otherwise): `zip` stops at the shorter, and `loads.len() <= INLINE_LOADS` here.
        // `MaybeUninit<Bound>` has `Bound`'s layout.
        let bound = unsafe { &*(bound as *const [MaybeUninit<Bound>] as *const [Bound]) };
        self.call(context, bound)
    }

    /// `run` for contexts that do not lend their values, and for predicates reading many.
    fn run_copied(&self, context: &dyn Context) -> Option<Value> {
        let values: Vec<Value> = self
            .loads
            .iter()
            .map(|load| match load.source {
                Source::Read(read) => context.read(read),
                Source::Now => Value::Timestamp(context.now()),
                Source::EnteredAt => Value::Timestamp(context.entered_at()),
            })
            .collect();
        // The values stay here, borrowed by their bindings, until the call returns.
        let bound = values
            .iter()
            .zip(self.loads.iter())
            .map(|(value, load)| Bound::of(value, load.ty))
            .collect::<Option<Vec<Bound>>>()?;
        self.call(context, &bound)
    }

    /// Calls the code on `bound`, the values of `loads`.
    #[inline]
    fn call(&self, context: &dyn Context, bound: &[Bound]) -> Option<Value> {
        debug_assert_eq!(bound.len(), self.loads.len());
        let env = Env {
            context,
            declined: Cell::new(false),
        };
        // SAFETY: `code` was compiled by `lower` for exactly these loads: it reads
        // `loads.len()` `Bound`s from the first pointer (`bound` has that many), and its helpers
        // dereference the second only as the `Env` it is. String addresses in `bound` point
        // into values the context or the caller holds across this call, or the predicate's own
        // constants; absent strings are empty.
        let answer = unsafe { (self.code)(bound.as_ptr(), &env) };
        if env.declined.get() {
            return None;
        }
        Some(match answer {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            2 => Value::Absent,
            _ => Value::Missing,
        })
    }
}

/// Predicates reading up to this many values bind them on the stack.
const INLINE_LOADS: usize = 8;

/// The predicates of one program as it runs: each counted until hot, then compiled once.
pub(crate) struct Hot {
    policy: Policy,
    /// By block: evaluations so far, then the compiled code (or `None`: it stays interpreted).
    blocks: Vec<(Cell<u32>, OnceCell<Option<Predicate>>)>,
    compiler: OnceCell<Option<Compiler>>,
}

impl Hot {
    pub fn new(blocks: usize) -> Hot {
        Hot {
            policy: Policy::default(),
            blocks: (0..blocks)
                .map(|_| (Cell::new(0), OnceCell::new()))
                .collect(),
            compiler: OnceCell::new(),
        }
    }

    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// Runs block `block` natively if it is compiled (compiling it if it just became hot);
    /// `None`: the interpreter must.
    #[inline]
    pub fn run(&self, prepared: &Prepared, block: u32, context: &dyn Context) -> Option<Value> {
        let Policy::HotAfter(threshold) = self.policy else {
            return None;
        };
        let (seen, compiled) = self.blocks.get(block as usize)?;
        if let Some(predicate) = compiled.get() {
            return predicate.as_ref()?.run(context);
        }
        if seen.get() < threshold {
            seen.set(seen.get() + 1);
            return None;
        }
        let predicate = compiled.get_or_init(|| {
            let compiler = self.compiler.get_or_init(Compiler::new).as_ref()?;
            compiler.compile(prepared, block).ok()
        });
        predicate.as_ref()?.run(context)
    }

    /// How many predicates run as native code.
    pub fn compiled(&self) -> usize {
        self.blocks
            .iter()
            .filter(|(_, c)| c.get().is_some_and(Option::is_some))
            .count()
    }
}
