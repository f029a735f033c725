//! Hot predicate blocks → native code (cranelift), with the interpreter as the reference.
//!
//! A predicate (an entry `where`, an audience, a goal or exit condition, a branch condition, a
//! history filter: an expression block whose result is a bool) that has run `Policy::HotAfter`
//! times, and that the interpreter may have to run at least `MIN_OPERATIONS` instructions of
//! to answer, is compiled once to a native function over the context's values where it holds
//! them (`Context::frame`, its three arrays' addresses passed in registers; `Predicate::holds`
//! is generic over the context's type, so that taking the frame is no virtual call): the code
//! reads each value the block loads (event and profile fields, slots; `now` and the entry time
//! from its `Env`) in place, by `Value`'s defined layout — its tag gives a presence state,
//! its payload 64 bits and a length for strings and lists — and computes the block's value
//! with the interpreter's rules (`eval`): absent and missing propagate the same way, overflow
//! and division by zero give absent, and so on. What the JIT
//! does not compile (records and `last`, lists built by `MakeList`, lists compared with `==`,
//! `date`, `lower`/`upper`) stays with the interpreter, as does any evaluation whose inputs do
//! not have the shapes the block's types promise (a tag the type does not allow, or an absent
//! value where the schema requires the field: the code answers `DECLINED`).
//!
//! **Invariant:** for every verified program, block and context, a compiled predicate returns
//! exactly what `eval::eval` returns, or declines (`None`) and the interpreter answers.
//! `tests/jit.rs` checks it on random well-typed blocks; `fuzz/fuzz_targets/jit.rs` on random
//! verified ones.
//!
//! This module is the only place in the workspace with `unsafe` code. It is needed to call the
//! generated code (a function pointer cranelift hands back as a raw address), in the helpers
//! that code calls, which receive raw pointers, and to read off two layouts Rust does not
//! promise (`traits_in_place`, `shared_layout`: checked once, and where they differ the
//! predicates that would rely on them stay interpreted). The reasoning sits next to each.

#![allow(unsafe_code)]

mod helpers;
mod lower;

use std::cell::{Cell, OnceCell};
use std::sync::{Arc, Mutex, OnceLock};

use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::default_libcall_names;

use crate::bytecode::{types, BlockKind, TypeDesc};
use crate::eval::{Context, Frame, Prepared, Read};
use crate::value::{tag, Value};

pub use lower::Refusal;

/// When predicates are compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Never: the interpreter runs everything.
    Off,
    /// A predicate that native code answers sooner than the tree interpreter (`pays`: at
    /// least `MIN_OPERATIONS` instructions, no history question), after it has been evaluated
    /// this many times; the others stay with the interpreter.
    HotAfter(u32),
    /// Every predicate, whatever its size, after it has been evaluated this many times (tests
    /// use it to run all predicates natively).
    AllAfter(u32),
}

/// The fewest instructions (less its `Return`) a predicate has for `HotAfter` to compile it:
/// three comparisons. Native code answers `and`s and `or`s of three comparisons and more in
/// fewer instructions than the tree interpreter (109 against 139 for an `and` of three, 109
/// against 207 for an `or`), a single comparison in more (75 against 66), and two alike or in
/// more (98 against 100 for `a > 100 and b == "x"`, 168 against 149 for cart_abandonment's
/// audience, an `in` and a `!=` of strings; an `or` of two, 97 against 141, is left out with
/// them): the interpreter stops an `and` at its first operand that does not hold, native code
/// evaluates every operand. docs/performance.md has the measurements.
pub const MIN_OPERATIONS: usize = 11;

/// Whether `HotAfter` compiles block `block`: it has at least `MIN_OPERATIONS` instructions
/// and asks no history. (Native code asks each history question through a helper that calls
/// the context, where the interpreter calls it directly: winback's audience, two questions,
/// takes 168 instructions natively against 97.) A block without a tree — deeper than any the
/// tree interpreter takes, so run on the stack — is always compiled.
fn pays(prepared: &Prepared, block: u32) -> bool {
    use crate::bytecode::opcode::Opcode::{Count, Did, Last, Return, Sum};
    let Some(desc) = prepared.program.blocks.get(block as usize) else {
        return false;
    };
    if prepared.tree(block).is_none() {
        return true;
    }
    let end = desc.offset.saturating_add(desc.length);
    let (mut pc, mut operations) = (desc.offset, 0);
    while let Some(ins) = prepared.instruction(pc, end) {
        match ins.opcode {
            Count | Did | Last | Sum => return false,
            Return => {}
            _ => operations += 1,
        }
        pc = ins.next;
    }
    operations >= MIN_OPERATIONS
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

/// A value as a helper hands it to the generated code. `state`: 0 present, 1 absent, 2
/// missing. `bits`: the bool (0 or 1), the integer, the float's bits, or a string's address.
/// `len`: a string's length in bytes.
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
    /// A history answer as a `ty` (`Int`, `Bool` or `Float`: `count`, `did`, `sum`); `None`
    /// when it has another shape (then the interpreter runs).
    #[inline]
    fn of(value: &Value, ty: Ty) -> Option<Bound> {
        Some(match (ty, value) {
            (Ty::Int, Value::Int(n)) => Bound::present(*n as u64, 0),
            (Ty::Float, Value::Float(x)) => Bound::present(x.to_bits(), 0),
            (Ty::Bool, Value::Bool(b)) => Bound::present(u64::from(*b), 0),
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

/// What the generated code reads besides the frame, and what the helpers it calls can reach:
/// the clock, the context, and whether a helper met a value of a shape the code was not
/// compiled for. Made only for code that reads it (`Lowered::uses_env`).
pub(crate) struct Env<'c> {
    pub now: i64,
    pub entered_at: i64,
    pub context: &'c dyn Context,
    pub declined: Cell<bool>,
}

/// The signature of generated code: the addresses of the frame's event fields, slots and
/// traits, and of the `Env` (null for code that does not read it), in registers; `FALSE`,
/// `TRUE`, `ABSENT_ANSWER` or `MISSING_ANSWER` out, or 4 when a value had another shape than
/// the code was compiled for. The code reads the values in place by `Value`'s defined layout
/// (a trait by `Option<Value>`'s, where `traits_in_place` holds), an unset trait's default
/// from the predicate's defaults, and each array only at indices below `Reach`, which
/// `Predicate::answer` checks the frame against.
type Code =
    unsafe extern "C" fn(*const Value, *const Value, *const Option<Value>, *const Env) -> u32;

/// The generated code's answers.
const FALSE: u32 = 0;
const TRUE: u32 = 1;
const ABSENT_ANSWER: u32 = 2;
const MISSING_ANSWER: u32 = 3;

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

/// How far into a frame a predicate reads: one past the greatest event field, slot and trait
/// it loads, and whether it reads the clock.
#[derive(Debug, Clone, Copy, Default)]
struct Reach {
    event: usize,
    slots: usize,
    traits: usize,
    now: bool,
    entered_at: bool,
}

impl Reach {
    fn of(loads: &[Load]) -> Reach {
        let mut reach = Reach::default();
        for load in loads {
            match load.source {
                Source::Read(Read::Event(f)) => reach.event = reach.event.max(usize::from(f) + 1),
                Source::Read(Read::Slot(s)) => reach.slots = reach.slots.max(usize::from(s) + 1),
                Source::Read(Read::Profile(f)) => {
                    reach.traits = reach.traits.max(usize::from(f) + 1)
                }
                Source::Now => reach.now = true,
                Source::EnteredAt => reach.entered_at = true,
            }
        }
        reach
    }

    /// Whether the code reads nothing from a frame.
    fn is_empty(&self) -> bool {
        self.event == 0 && self.slots == 0 && self.traits == 0
    }

    fn within(&self, frame: &Frame) -> bool {
        frame.event.len() >= self.event
            && frame.slots.len() >= self.slots
            && frame.traits.len() >= self.traits
    }
}

/// Whether an `Option<Value>` holds its value in place and its `None` is a tag byte above
/// `tag::LAST`, as generated code reading profile traits assumes. Rust lays it out so (the
/// tag's unused values are the option's niche) but does not promise it: were it otherwise,
/// predicates that read the profile would stay interpreted (`lower`).
pub(crate) fn traits_in_place() -> bool {
    let none: Option<Value> = None;
    std::mem::size_of::<Option<Value>>() == std::mem::size_of::<Value>()
        // SAFETY: of the same size as a `Value`, the option keeps `None` in the tag byte at
        // offset 0 (a niche is a value's invalid bit pattern), so that byte is initialised.
        && unsafe { *(&none as *const Option<Value> as *const u8) } > tag::LAST
}

/// Where generated code finds a long string's bytes or a list's items: an `Arc` of an unsized
/// type is two words, an address and a length, at offsets `address` and `length` of the
/// value's payload, and the data lies `data` bytes past the address. Rust promises none of
/// this; it is read off two probes once (`shared_layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SharedLayout {
    pub address: i32,
    pub length: i32,
    pub data: i64,
}

/// The layout of this build's `Arc<str>` and `Arc<[Value]>`, if both have the one
/// `SharedLayout` expects. Otherwise predicates reading strings or lists stay interpreted.
pub(crate) fn shared_layout() -> Option<SharedLayout> {
    static LAYOUT: OnceLock<Option<SharedLayout>> = OnceLock::new();
    *LAYOUT.get_or_init(|| {
        let text: Arc<str> = Arc::from("a probe of the layout");
        let items: Arc<[Value]> = Arc::from(vec![Value::Absent; 3]);
        let of_text = probe(&text, text.as_ptr() as usize, text.len());
        let of_items = probe(&items, items.as_ptr() as usize, items.len());
        of_text.filter(|_| of_text == of_items)
    })
}

/// `SharedLayout` of `arc`, whose data is at address `data` and `len` long.
fn probe<T: ?Sized>(arc: &Arc<T>, data: usize, len: usize) -> Option<SharedLayout> {
    if std::mem::size_of::<Arc<T>>() != std::mem::size_of::<[usize; 2]>() {
        return None;
    }
    // SAFETY: the sizes agree (checked above), and a pointer to an unsized type is two
    // initialised words: reading them as integers is sound.
    let words: [usize; 2] = unsafe { std::mem::transmute_copy(arc) };
    [(0, 1), (1, 0)].into_iter().find_map(|(address, length)| {
        let data = data.checked_sub(words[address])?;
        (words[length] == len && data <= 64).then_some(SharedLayout {
            address: address as i32 * 8,
            length: length as i32 * 8,
            data: data as i64,
        })
    })
}

/// A predicate compiled to native code.
pub struct Predicate {
    code: Code,
    loads: Box<[Load]>,
    reach: Reach,
    /// Whether the code reads its `Env` (else it is passed none).
    uses_env: bool,
    /// `Prepared::unset_profile` of every profile field: the code reads an unset trait's value
    /// here, at an address fixed when it was compiled (a boxed slice's items do not move).
    _defaults: Box<[Value]>,
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
        let profile_fields = program
            .record_fields(program.profile)
            .map_or(0, |fields| fields.len() as u32);
        let defaults: Box<[Value]> = (0..profile_fields)
            .map(|f| prepared.unset_profile(f))
            .collect();
        let mut guard = self.memory.lock().map_err(|_| Refusal::Backend)?;
        let module = guard.0.as_mut().ok_or(Refusal::Backend)?;
        let lowered = lower::lower(module, prepared, desc, defaults.as_ptr())?;
        module
            .finalize_definitions()
            .map_err(|_| Refusal::Backend)?;
        let address = module.get_finalized_function(lowered.function);
        // SAFETY: `address` is the entry of the function just defined with the signature
        // `lower` gives it — four pointers → u32 in the host's C convention — which is
        // `Code`. It stays valid while `self.memory` lives, which `Predicate` holds.
        let code = unsafe { std::mem::transmute::<*const u8, Code>(address) };
        Ok(Predicate {
            code,
            reach: Reach::of(&lowered.loads),
            uses_env: lowered.uses_env,
            _defaults: defaults,
            loads: lowered.loads.into_boxed_slice(),
            _strings: lowered.strings.into_boxed_slice(),
            _memory: self.memory.clone(),
        })
    }
}

impl Predicate {
    /// Evaluates the predicate over `context`: what `eval::eval` would return, or `None` when
    /// an input does not have the shape the code was compiled for (the interpreter answers).
    pub fn run<C: Context + ?Sized>(&self, context: &C) -> Option<Value> {
        Some(match self.answer(context)? {
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            ABSENT_ANSWER => Value::Absent,
            _ => Value::Missing,
        })
    }

    /// Whether the predicate holds over `context` (`run` giving `true`), or `None` when an
    /// input does not have the shape the code was compiled for.
    pub fn holds<C: Context + ?Sized>(&self, context: &C) -> Option<bool> {
        Some(self.answer(context)? == TRUE)
    }

    /// The code's answer over `context` (`FALSE`, `TRUE`, `ABSENT_ANSWER` or
    /// `MISSING_ANSWER`), or `None` when it declined.
    #[inline]
    fn answer<C: Context + ?Sized>(&self, context: &C) -> Option<u32> {
        match context.frame() {
            Some(frame) if self.reach.within(&frame) => self.call(context.as_context(), frame),
            // (Code that reads nothing from a frame needs none.)
            None if self.reach.is_empty() => self.call(context.as_context(), Frame::default()),
            _ => self.run_copied(context.as_context()),
        }
    }

    /// `answer` for contexts that do not hold their values in place: the values the code loads
    /// are copied into a frame of their own.
    fn run_copied(&self, context: &dyn Context) -> Option<u32> {
        let mut event = vec![Value::Absent; self.reach.event];
        let mut slots = vec![Value::Absent; self.reach.slots];
        let mut traits = vec![None; self.reach.traits];
        for load in self.loads.iter() {
            let Source::Read(read) = load.source else {
                continue;
            };
            // (Every index is below `reach`, which sized the frame.)
            let value = context.read(read);
            match read {
                Read::Event(f) => *event.get_mut(usize::from(f))? = value,
                Read::Slot(s) => *slots.get_mut(usize::from(s))? = value,
                Read::Profile(f) => *traits.get_mut(usize::from(f))? = Some(value),
            }
        }
        let frame = Frame {
            event: &event,
            slots: &slots,
            traits: &traits,
        };
        self.call(context, frame)
    }

    /// Calls the code on `frame`, which `reach` fits.
    #[inline]
    fn call(&self, context: &dyn Context, frame: Frame) -> Option<u32> {
        debug_assert!(self.reach.within(&frame));
        let (event, slots, traits) = (
            frame.event.as_ptr(),
            frame.slots.as_ptr(),
            frame.traits.as_ptr(),
        );
        if !self.uses_env {
            // SAFETY: as below; the code reads no `Env` (`Lowered::uses_env`), so it gets none.
            let answer = unsafe { (self.code)(event, slots, traits, std::ptr::null()) };
            return (answer <= MISSING_ANSWER).then_some(answer);
        }
        let env = Env {
            now: if self.reach.now { context.now() } else { 0 },
            entered_at: if self.reach.entered_at {
                context.entered_at()
            } else {
                0
            },
            context,
            declined: Cell::new(false),
        };
        // SAFETY: `code` was compiled by `lower` for exactly these loads: it reads the values
        // of `frame` at indices below `reach` (`answer` checked the frame against it, or built it
        // that large) and the defaults of the profile fields it loads (`defaults` has one per
        // field), each as a `Value`, whose layout is defined, or an `Option<Value>` where
        // `traits_in_place` holds (`lower` checked). The
        // bytes it reads through a value are its own 16 payload bytes (a short string's length
        // is a `value::Len`, at most 16) or an `Arc`'s data within its length (`shared_layout`
        // checked). It reads the clock from `env`, and its helpers dereference that pointer
        // only as the `Env` it is. Everything pointed at lives across the call: the frame's
        // slices, the environment, the predicate's own constants and defaults.
        let answer = unsafe { (self.code)(event, slots, traits, &env) };
        // (Above `MISSING_ANSWER`: a value of another shape than the code was compiled for,
        // `lower::DECLINED`.)
        (!env.declined.get() && answer <= MISSING_ANSWER).then_some(answer)
    }
}

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

    /// Block `block`'s native code, if it is compiled or just became hot and is compiled now;
    /// `None`: the interpreter must run it.
    #[inline]
    pub fn native(&self, prepared: &Prepared, block: u32) -> Option<&Predicate> {
        let (threshold, every) = match self.policy {
            Policy::Off => return None,
            Policy::HotAfter(after) => (after, false),
            Policy::AllAfter(after) => (after, true),
        };
        let (seen, compiled) = self.blocks.get(block as usize)?;
        if let Some(predicate) = compiled.get() {
            return predicate.as_ref();
        }
        if seen.get() < threshold {
            seen.set(seen.get() + 1);
            return None;
        }
        let predicate = compiled.get_or_init(|| {
            if !every && !pays(prepared, block) {
                return None;
            }
            let compiler = self.compiler.get_or_init(Compiler::new).as_ref()?;
            compiler.compile(prepared, block).ok()
        });
        predicate.as_ref()
    }

    /// How many predicates run as native code.
    pub fn compiled(&self) -> usize {
        self.blocks
            .iter()
            .filter(|(_, c)| c.get().is_some_and(Option::is_some))
            .count()
    }
}
