//! Random well-typed predicate blocks, and random contexts to evaluate them in: the inputs of
//! the JIT's agreement tests (tests/jit.rs) and of its fuzz target (fuzz/fuzz_targets/jit.rs).
//!
//! A predicate is generated as an expression tree of a wanted type, emitted in postfix order as
//! an expression block appended to `BASE` compiled (which supplies an event, a profile and a
//! journey's slots with a field of every scalar type). Every opcode the JIT compiles appears,
//! with operands of matching and of mismatched types where the verifier allows them (`==` of an
//! int and a string, `??` of an absent value).

use journey_runtime::bytecode::opcode::{encode, Opcode};
use journey_runtime::bytecode::verify::kind;
use journey_runtime::bytecode::{
    types, Block, BlockKind, Constant, HistoryQuery, Program, TypeDesc, Window, NONE,
};
use journey_runtime::eval::{Context, Frame, HistoryOp, Prepared, Read};
use journey_runtime::value::Value;

/// An event, a profile and a journey with slots, a field of each scalar type in each.
pub const BASE: &str = r#"
event Probe {
  b: bool?
  i: int?
  f: float?
  s: string?
  e: "a" | "bb" | "ccc"
  t: timestamp?
  d: duration?
  l: list<int>?
}

profile {
  pb: bool?
  pi: int?
  pf: float?
  ps: string?
  pe: "a" | "bb" | "ccc"
  pt: timestamp?
  pd: duration?
  pn: int
  tags: list<string>
}

journey j {
  entry on Probe as p where b is set or i is set or f is set or s is set or e == "a" or t is set or d is set or 1 in l
  audience profile.pb is set or profile.pi is set or profile.pf is set or profile.ps is set or profile.pe == "a" or profile.pt is set or profile.pd is set or profile.pn == 1 or "x" in profile.tags
  goal g: Probe where b == p.b and i == p.i and f == p.f and s == p.s and e == p.e and t == p.t and d == p.d and 2 in p.l
  wait 1d
}
"#;

/// The scalar types the generator builds values of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    Float,
    Str,
    Enum,
    Timestamp,
    Duration,
    /// Lists (never in `KINDS`: only loads give them, for `in` and `len`).
    IntList,
    StrList,
}

pub const KINDS: [Kind; 7] = [
    Kind::Bool,
    Kind::Int,
    Kind::Float,
    Kind::Str,
    Kind::Enum,
    Kind::Timestamp,
    Kind::Duration,
];

fn kind_of(program: &Program, ty: u32) -> Option<Kind> {
    match ty {
        types::BOOL => Some(Kind::Bool),
        types::INT => Some(Kind::Int),
        types::FLOAT => Some(Kind::Float),
        types::STRING => Some(Kind::Str),
        types::TIMESTAMP => Some(Kind::Timestamp),
        types::DURATION => Some(Kind::Duration),
        _ => match program.type_desc(ty)? {
            TypeDesc::Optional(inner) => kind_of(program, *inner),
            TypeDesc::Enum(_) => Some(Kind::Enum),
            TypeDesc::List(item) => match kind_of(program, *item)? {
                Kind::Int => Some(Kind::IntList),
                Kind::Str | Kind::Enum => Some(Kind::StrList),
                _ => None,
            },
            TypeDesc::Record(_) => None,
        },
    }
}

/// Where choices come from: a seeded generator in tests, the fuzzer's bytes in fuzzing.
pub trait Choose {
    /// A number below `n` (`n` > 0).
    fn below(&mut self, n: u32) -> u32;
}

/// xorshift64: deterministic for a seed.
pub struct Seeded(pub u64);

impl Choose for Seeded {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % u64::from(n.max(1))) as u32
    }
}

/// The fuzzer's bytes, two at a time; zeros once they run out.
pub struct Bytes<'a>(pub &'a [u8]);

impl Choose for Bytes<'_> {
    fn below(&mut self, n: u32) -> u32 {
        let (head, rest) = self.0.split_at(self.0.len().min(2));
        self.0 = rest;
        let word = head.iter().fold(0u32, |w, b| (w << 8) | u32::from(*b));
        word % n.max(1)
    }
}

/// `BASE` compiled, with what its loads give.
pub struct Base {
    pub program: Program,
    /// The program's profile defaults, by field (`Prepared::unset_profile`).
    pub defaults: Vec<Value>,
    /// Whether each field of the event is required (`record_required`).
    pub required: Vec<bool>,
    /// (field index, kind) of the event's, the profile's and the journey's slots.
    pub event: Vec<(u32, Kind)>,
    pub profile: Vec<(u32, Kind)>,
    pub slots: Vec<(u32, Kind)>,
}

/// The history queries the generator appends: `count`/`did` of Probe, `sum(Probe.f)`.
const COUNT_QUERY: usize = 0;
const SUM_QUERY: usize = 1;

impl Base {
    pub fn new(program: Program) -> Base {
        let fields = |record: u32| -> Vec<(u32, Kind)> {
            program
                .record_fields(record)
                .unwrap_or_default()
                .iter()
                .enumerate()
                .filter_map(|(i, f)| Some((i as u32, kind_of(&program, f.ty)?)))
                .collect()
        };
        let event = fields(program.events[0].record);
        let profile = fields(program.profile);
        let slots = program.journeys[0]
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, ty)| Some((i as u32, kind_of(&program, *ty)?)))
            .collect();
        Base {
            defaults: profile_defaults(&program),
            required: record_required(&program, program.events[0].record),
            event,
            profile,
            slots,
            program,
        }
    }

    /// The base program with one more block, a random predicate of about `size` operations
    /// over the event and the journey; returns it with the block's index.
    pub fn predicate(&self, choose: &mut dyn Choose, size: u32) -> (Program, u32) {
        self.expression(choose, size, Kind::Bool)
    }

    /// As `predicate`, for an expression of any kind in `KINDS`.
    pub fn expression(&self, choose: &mut dyn Choose, size: u32, kind: Kind) -> (Program, u32) {
        let mut program = self.program.clone();
        let first_query = program.history.len();
        let f = self
            .event
            .iter()
            .find(|(_, k)| *k == Kind::Float)
            .map(|(i, _)| *i);
        program.history.push(HistoryQuery {
            event: 0,
            filter: NONE,
            window: Window::None,
            field: NONE,
        });
        program.history.push(HistoryQuery {
            event: 0,
            filter: NONE,
            window: Window::Within(86_400_000),
            field: f.unwrap_or(NONE),
        });
        let offset = program.code.len() as u32;
        let mut emitter = Emitter {
            base: self,
            program: &mut program,
            choose,
            first_query: first_query as u32,
            budget: size,
        };
        emitter.value(kind);
        encode(&mut emitter.program.code, Opcode::Return, &[]);
        let result = match kind {
            Kind::Bool => types::BOOL,
            Kind::Int => types::INT,
            Kind::Float => types::FLOAT,
            Kind::Str | Kind::Enum => types::STRING,
            Kind::Timestamp => types::TIMESTAMP,
            Kind::Duration => types::DURATION,
            Kind::IntList | Kind::StrList => panic!("{kind:?} blocks are not generated"),
        };
        let length = program.code.len() as u32 - offset;
        program.blocks.push(Block {
            kind: BlockKind::Expression {
                result,
                event: 0,
                journey: 0,
            },
            offset,
            length,
        });
        let block = program.blocks.len() as u32 - 1;
        (program, block)
    }

    /// A random context for the predicates (see `random_context`).
    pub fn context(&self, choose: &mut dyn Choose, odd: bool) -> Probe {
        let kinds =
            |fields: &[(u32, Kind)]| fields.iter().map(|(_, k)| Some(*k)).collect::<Vec<_>>();
        random_context(
            choose,
            [
                &kinds(&self.event),
                &kinds(&self.profile),
                &kinds(&self.slots),
            ],
            &self.required,
            &self.defaults,
            odd,
        )
    }
}

/// Whether each field of record type `record` is required (its type is not optional).
pub fn record_required(program: &Program, record: u32) -> Vec<bool> {
    program
        .record_fields(record)
        .unwrap_or_default()
        .iter()
        .map(|f| !matches!(program.type_desc(f.ty), Some(TypeDesc::Optional(_))))
        .collect()
}

/// What each profile field of `program` is while unset (`Prepared::unset_profile`).
pub fn profile_defaults(program: &Program) -> Vec<Value> {
    let prepared = Prepared::new(program);
    let fields = program.record_fields(program.profile).unwrap_or_default();
    (0..fields.len() as u32)
        .map(|f| prepared.unset_profile(f))
        .collect()
}

/// The kind of each field of record type `record` (`None`: not a scalar).
pub fn record_kinds(program: &Program, record: u32) -> Vec<Option<Kind>> {
    program
        .record_fields(record)
        .unwrap_or_default()
        .iter()
        .map(|f| kind_of(program, f.ty))
        .collect()
}

/// The kind of each slot of journey `journey` (`None`: not a scalar).
pub fn slot_kinds(program: &Program, journey: u32) -> Vec<Option<Kind>> {
    program
        .journeys
        .get(journey as usize)
        .map(|j| j.slots.iter().map(|ty| kind_of(program, *ty)).collect())
        .unwrap_or_default()
}

/// A random context whose event fields, profile fields and slots have the given kinds: values
/// of those kinds (absent often, missing sometimes in the profile), or with `odd` set, now and
/// then one of another shape. Fields that are not scalars are absent; so is, with `odd`, now
/// and then an event field that `required` says the schema requires (an event always has
/// those). A profile field is unset now and then: it has its default then (`defaults`, the
/// program's by field; missing past them).
pub fn random_context(
    choose: &mut dyn Choose,
    kinds: [&[Option<Kind>]; 3],
    required: &[bool],
    defaults: &[Value],
    odd: bool,
) -> Probe {
    let mut value = |kind: Option<Kind>, profile: bool, required: bool| -> Value {
        let Some(kind) = kind else {
            return Value::Absent;
        };
        match choose.below(24) {
            0..=3 if !required || odd => Value::Absent,
            4 if profile => Value::Missing,
            5 if odd => {
                let other = KINDS[choose.below(7) as usize];
                random_value(choose, other)
            }
            _ => random_value(choose, kind),
        }
    };
    let [event, profile, slots] = kinds;
    let event = event
        .iter()
        .enumerate()
        .map(|(f, k)| value(*k, false, required.get(f) == Some(&true)))
        .collect();
    let traits: Vec<Option<Value>> = profile
        .iter()
        .map(|k| value(*k, true, false))
        .map(Some)
        .collect();
    let slots = slots.iter().map(|k| value(*k, false, false)).collect();
    let traits: Vec<Option<Value>> = traits
        .into_iter()
        .map(|t| if choose.below(5) == 0 { None } else { t })
        .collect();
    let profile = traits
        .iter()
        .enumerate()
        .map(|(f, t)| match t {
            Some(v) => v.clone(),
            None => defaults.get(f).cloned().unwrap_or(Value::Missing),
        })
        .collect();
    let history = [
        Value::Int(i64::from(choose.below(5))),
        Value::Bool(choose.below(2) == 1),
        random_value(choose, Kind::Float),
    ];
    Probe {
        event,
        profile,
        traits,
        slots,
        now: timestamp(choose),
        entered_at: timestamp(choose),
        history,
        zone: [
            chrono_tz::UTC,
            chrono_tz::Europe::Istanbul,
            chrono_tz::America::New_York,
        ][choose.below(3) as usize],
        lends: choose.below(2) == 1,
    }
}

fn timestamp(choose: &mut dyn Choose) -> i64 {
    match choose.below(10) {
        0 => 0,
        1 => i64::MAX,
        2 => i64::MIN,
        3 => -86_400_000,
        _ => 1_767_225_600_000 + i64::from(choose.below(1 << 30)) * 97,
    }
}

pub fn random_value(choose: &mut dyn Choose, kind: Kind) -> Value {
    let mut pick = |n: u32| choose.below(n) as usize;
    match kind {
        Kind::Bool => Value::Bool(pick(2) == 1),
        Kind::Int => Value::Int(
            [
                0,
                1,
                -1,
                2,
                7,
                100,
                101,
                -100,
                i64::MAX,
                i64::MIN,
                i64::MAX / 2,
                3_037_000_500,
            ][pick(12)],
        ),
        Kind::Float => Value::Float(
            [
                0.0,
                -0.0,
                1.5,
                -2.25,
                100.0,
                100.5,
                7.0,
                1e308,
                -1e308,
                f64::NAN,
                f64::INFINITY,
                0.1,
            ][pick(12)],
        ),
        Kind::Str => Value::str(
            [
                "",
                "a",
                "bb",
                "ccc",
                "x",
                "ab",
                "çağrı",
                "a string longer than twenty-two bytes",
                "a string longer than twenty-two bytes!",
                "ğr",
                // The longest string kept in place, and the shortest shared one.
                "exactly sixteen!",
                "seventeen bytes!!",
            ][pick(12)],
        ),
        Kind::Enum => Value::str(["a", "bb", "ccc"][pick(3)]),
        Kind::Timestamp => Value::Timestamp(timestamp(choose)),
        Kind::Duration => {
            Value::Duration([0, 1000, 3_600_000, -5, 86_400_000, i64::MAX, i64::MIN, 7][pick(8)])
        }
        Kind::IntList | Kind::StrList => {
            let item = if kind == Kind::IntList {
                Kind::Int
            } else {
                Kind::Str
            };
            let items: Vec<Value> = (0..choose.below(4))
                .map(|_| match choose.below(8) {
                    // Now and then an item of another shape, or none.
                    0 => random_value(choose, Kind::Float),
                    1 => Value::Absent,
                    _ => random_value(choose, item),
                })
                .collect();
            Value::List(items.into())
        }
    }
}

struct Emitter<'a> {
    base: &'a Base,
    program: &'a mut Program,
    choose: &'a mut dyn Choose,
    first_query: u32,
    /// Operations left to emit; at 0 only leaves follow.
    budget: u32,
}

impl Emitter<'_> {
    fn below(&mut self, n: u32) -> u32 {
        self.choose.below(n)
    }

    fn op(&mut self, opcode: Opcode, operands: &[u32]) {
        encode(&mut self.program.code, opcode, operands);
    }

    fn constant(&mut self, constant: Constant) -> u32 {
        self.program.constants.push(constant);
        self.program.constants.len() as u32 - 1
    }

    fn constant_of(&mut self, value: &Value) -> u32 {
        let constant = match value {
            Value::Bool(b) => Constant::Bool(*b),
            Value::Int(n) => Constant::Int(*n),
            // Constants are finite: the compiler writes no others.
            Value::Float(x) if x.is_finite() => Constant::Float(*x),
            Value::Float(_) => Constant::Float(3.5),
            Value::Short { .. } | Value::Long(_) => {
                let s = value.as_str().unwrap_or_default();
                self.program.strings.push(s.to_string());
                Constant::String(self.program.strings.len() as u32 - 1)
            }
            Value::Timestamp(t) => Constant::Timestamp(*t),
            Value::Duration(d) => Constant::Duration(*d),
            _ => Constant::Bool(false),
        };
        self.constant(constant)
    }

    /// Emits code that pushes a value of `kind`.
    fn value(&mut self, kind: Kind) {
        if self.budget == 0 || self.below(5) == 0 {
            return self.leaf(kind);
        }
        self.budget -= 1;
        let any = |e: &mut Self| KINDS[e.below(7) as usize];
        use Kind::{Bool, Duration, Float, Int, Str, Timestamp};
        use Opcode::*;
        match kind {
            Kind::IntList | Kind::StrList => self.list(),
            Bool => match self.below(12) {
                0 => self.apply(&[Bool], Not, &[]),
                1 | 2 => {
                    let op = self.pick(&[And, Or]);
                    self.apply(&[Bool, Bool], op, &[]);
                }
                3 | 4 => {
                    let x = any(self);
                    // Mostly a kind that compares with it; sometimes any other.
                    let y = match (x, self.below(4)) {
                        (_, 0) => any(self),
                        (Int, 1) => Float,
                        (Float, 1) => Int,
                        (Str, 1) => Kind::Enum,
                        _ => x,
                    };
                    let op = self.pick(&[Eq, Ne]);
                    self.compare(x, y, op, &[]);
                }
                5 | 6 => {
                    let (x, k) = [
                        (Int, kind::INT),
                        (Float, kind::FLOAT),
                        (Str, kind::STRING),
                        (Kind::Enum, kind::STRING),
                        (Timestamp, kind::TIMESTAMP),
                        (Duration, kind::DURATION),
                    ][self.below(6) as usize];
                    let y = if x == Kind::Enum { Str } else { x };
                    let op = self.pick(&[Lt, Le, Gt, Ge]);
                    self.compare(x, y, op, &[k]);
                }
                7 => {
                    let x = any(self);
                    self.apply(&[x], IsSet, &[]);
                }
                8 if self.below(3) == 0 && self.has_lists() => {
                    let x = any(self);
                    self.value(x);
                    self.list();
                    self.op(In, &[]);
                }
                8 => {
                    let x = any(self);
                    self.value(x);
                    let mut items = Vec::new();
                    for _ in 0..self.below(4) {
                        // Mostly the item's kind; an int list may meet a float.
                        let k = if self.below(4) == 0 { any(self) } else { x };
                        let item = random_value(self.choose, k);
                        items.push(self.constant_of(&item));
                    }
                    let list = self.constant(Constant::List(items));
                    self.op(Const, &[list]);
                    self.op(In, &[]);
                }
                9 => {
                    let op = self.pick(&[StartsWith, EndsWith, Contains]);
                    self.apply(&[Str, Str], op, &[]);
                }
                _ => self.apply(&[Bool, Bool], Coalesce, &[]),
            },
            Int => match self.below(6) {
                0 | 1 => {
                    let op = self.pick(&[Add, Sub, Mul]);
                    self.apply(&[Int, Int], op, &[kind::INT]);
                }
                2 => self.apply(&[Int], Neg, &[kind::INT]),
                3 if self.below(2) == 0 && self.has_lists() => {
                    self.list();
                    self.op(Len, &[]);
                }
                3 => self.apply(&[Str], Len, &[]),
                4 => self.apply(&[Timestamp], Hour, &[]),
                _ => self.apply(&[Int, Int], Coalesce, &[]),
            },
            Float => match self.below(5) {
                0 | 1 => {
                    let op = self.pick(&[Add, Sub, Mul, Div]);
                    self.apply(&[Float, Float], op, &[kind::FLOAT]);
                }
                2 => self.apply(&[Int], ToFloat, &[]),
                3 => self.apply(&[Float], Neg, &[kind::FLOAT]),
                _ => self.apply(&[Float, Float], Coalesce, &[]),
            },
            Str | Kind::Enum => match self.below(2) {
                0 => self.apply(&[Timestamp], Weekday, &[]),
                _ => self.apply(&[Str, Str], Coalesce, &[]),
            },
            Timestamp => match self.below(3) {
                0 | 1 => {
                    let op = self.pick(&[Add, Sub]);
                    self.apply(&[Timestamp, Duration], op, &[kind::TIMESTAMP_DURATION]);
                }
                _ => self.apply(&[Timestamp, Timestamp], Coalesce, &[]),
            },
            Duration => match self.below(6) {
                0 => self.apply(&[Timestamp, Timestamp], Sub, &[kind::TIMESTAMP_TIMESTAMP]),
                1 | 2 => {
                    let op = self.pick(&[Add, Sub]);
                    self.apply(&[Duration, Duration], op, &[kind::DURATION]);
                }
                3 => {
                    let op = self.pick(&[Mul, Div]);
                    self.apply(&[Duration, Float], op, &[kind::DURATION_FLOAT]);
                }
                4 => self.apply(&[Duration], Neg, &[kind::DURATION]),
                _ => self.apply(&[Duration, Duration], Coalesce, &[]),
            },
        }
    }

    /// Emits values of `operands`, in order, then `op` with `immediates`.
    fn apply(&mut self, operands: &[Kind], op: Opcode, immediates: &[u32]) {
        for kind in operands {
            self.value(*kind);
        }
        self.op(op, immediates);
    }

    /// `x op y`; in half of them `y` is a constant, the commonest comparison in journeys
    /// (`cart.price > 10`), which the tree evaluates by a path of its own.
    fn compare(&mut self, x: Kind, y: Kind, op: Opcode, immediates: &[u32]) {
        if self.below(2) == 0 {
            return self.apply(&[x, y], op, immediates);
        }
        self.value(x);
        let value = random_value(self.choose, y);
        let constant = self.constant_of(&value);
        self.op(Opcode::Const, &[constant]);
        self.op(op, immediates);
    }

    /// One of `ops`.
    fn pick(&mut self, ops: &[Opcode]) -> Opcode {
        ops[self.below(ops.len() as u32) as usize]
    }

    /// Every load (of the event, the profile or a slot) of a field whose kind `wanted` takes.
    fn loads(&self, wanted: impl Fn(Kind) -> bool) -> Vec<(Opcode, u32)> {
        [
            (Opcode::LoadEvent, &self.base.event),
            (Opcode::LoadProfile, &self.base.profile),
            (Opcode::LoadSlot, &self.base.slots),
        ]
        .into_iter()
        .flat_map(|(op, fields)| {
            fields
                .iter()
                .filter(|(_, k)| wanted(*k))
                .map(move |(i, _)| (op, *i))
                .collect::<Vec<_>>()
        })
        .collect()
    }

    fn list_loads(&self) -> Vec<(Opcode, u32)> {
        self.loads(|k| matches!(k, Kind::IntList | Kind::StrList))
    }

    fn has_lists(&self) -> bool {
        !self.list_loads().is_empty()
    }

    /// Emits a load of a list, or `a ?? b` of two loads of the same list type.
    fn list(&mut self) {
        let loads = self.list_loads();
        let (op, index) = loads[self.below(loads.len() as u32) as usize];
        self.op(op, &[index]);
        if self.below(6) == 0 {
            self.op(op, &[index]);
            self.op(Opcode::Coalesce, &[]);
        }
    }

    /// Emits a load, a constant, `now`, the entry time or a history answer of `kind`.
    fn leaf(&mut self, kind: Kind) {
        let loads = self.loads(|k| k == kind || (kind == Kind::Str && k == Kind::Enum));
        let (count, sum) = (
            self.first_query + COUNT_QUERY as u32,
            self.first_query + SUM_QUERY as u32,
        );
        match (kind, self.below(8)) {
            (_, 0..=2) => {
                let value = random_value(self.choose, kind);
                let constant = self.constant_of(&value);
                self.op(Opcode::Const, &[constant]);
            }
            (Kind::Bool, 3) => self.op(Opcode::Did, &[count]),
            (Kind::Int, 3) => self.op(Opcode::Count, &[count]),
            (Kind::Float, 3) => self.op(Opcode::Sum, &[sum]),
            (Kind::Timestamp, 3) => self.op(Opcode::Now, &[]),
            (Kind::Timestamp, 4) => self.op(Opcode::EnteredAt, &[]),
            _ if loads.is_empty() => {
                let value = random_value(self.choose, kind);
                let constant = self.constant_of(&value);
                self.op(Opcode::Const, &[constant]);
            }
            _ => {
                let (op, index) = loads[self.below(loads.len() as u32) as usize];
                self.op(op, &[index]);
            }
        }
    }
}

/// A context with every value given.
pub struct Probe {
    pub event: Vec<Value>,
    /// The profile's fields as `Context::profile_field` gives them: the trait if it is set,
    /// else the program's default.
    pub profile: Vec<Value>,
    /// The traits set (`None`: unset), as a frame holds them (`Context::frame`).
    pub traits: Vec<Option<Value>>,
    pub slots: Vec<Value>,
    pub now: i64,
    pub entered_at: i64,
    /// Answers of `count`, `did` and `sum`.
    pub history: [Value; 3],
    pub zone: chrono_tz::Tz,
    /// Whether it holds its values in place (`Context::frame`, `Context::lend`), as the VM
    /// does, or only copies them.
    pub lends: bool,
}

impl Probe {
    /// A context of just an event's fields, held in place; nothing else is set.
    pub fn of_event(event: Vec<Value>) -> Probe {
        Probe {
            event,
            profile: Vec::new(),
            traits: Vec::new(),
            slots: Vec::new(),
            now: 0,
            entered_at: 0,
            history: [Value::Absent, Value::Absent, Value::Absent],
            zone: chrono_tz::UTC,
            lends: true,
        }
    }
}

impl Context for Probe {
    fn event_field(&self, field: u16) -> Value {
        self.event
            .get(usize::from(field))
            .cloned()
            .unwrap_or(Value::Absent)
    }
    fn profile_field(&self, field: u16) -> Value {
        self.profile
            .get(usize::from(field))
            .cloned()
            .unwrap_or(Value::Missing)
    }
    fn slot(&self, slot: u16) -> Value {
        self.slots
            .get(usize::from(slot))
            .cloned()
            .unwrap_or(Value::Absent)
    }
    fn now(&self) -> i64 {
        self.now
    }
    fn entered_at(&self) -> i64 {
        self.entered_at
    }
    fn history(&self, _: u16, op: HistoryOp) -> Value {
        match op {
            HistoryOp::Count => self.history[0].clone(),
            HistoryOp::Did => self.history[1].clone(),
            HistoryOp::Sum => self.history[2].clone(),
            HistoryOp::Last => Value::Absent,
        }
    }
    fn zone(&self) -> chrono_tz::Tz {
        self.zone
    }
    fn frame(&self) -> Option<Frame<'_>> {
        self.lends.then_some(Frame {
            event: &self.event,
            slots: &self.slots,
            traits: &self.traits,
        })
    }
    fn lend(&self, read: Read) -> Option<&Value> {
        if !self.lends {
            return None;
        }
        match read {
            Read::Event(f) => self.event.get(usize::from(f)),
            Read::Profile(f) => self.profile.get(usize::from(f)),
            Read::Slot(s) => self.slots.get(usize::from(s)),
        }
    }
}
