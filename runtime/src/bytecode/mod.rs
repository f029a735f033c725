//! The bytecode format: an in-memory `Program`, its file encoding (`write`, `read`), the
//! `verify`er that every loaded program passes before it runs, and the disassembler.
//! The layout is documented in docs/bytecode.md.

mod container;
pub mod disasm;
pub mod lifetime;
pub mod opcode;
pub mod verify;

pub use container::{read, strip_debug, write, LoadError};

pub use opcode::{Instruction, Opcode};

/// "No such thing" in a `u32` index operand or field (no filter, no title, no block).
pub const NONE: u32 = u32::MAX;
/// The format version this build writes and reads. A newer major version is refused.
pub const MAJOR: u16 = 1;
pub const MINOR: u16 = 1;
pub const MAGIC: [u8; 8] = *b"JRNYBC\r\n";

/// Built-in type ids; the schema's own types follow them in `Program::types`.
pub mod types {
    pub const BOOL: u32 = 0;
    pub const INT: u32 = 1;
    pub const FLOAT: u32 = 2;
    pub const STRING: u32 = 3;
    pub const TIMESTAMP: u32 = 4;
    pub const DURATION: u32 = 5;
    /// How many ids are built in.
    pub const BUILTIN: u32 = 6;
}

/// A type of the schema, referred to by its index (after the built-in ids).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TypeDesc {
    /// The allowed values (string indices).
    Enum(Vec<u32>),
    List(u32),
    Record(Vec<FieldDesc>),
    Optional(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldDesc {
    /// String index.
    pub name: u32,
    /// Type id.
    pub ty: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Constant {
    Int(i64),
    Float(f64),
    /// A string index.
    String(u32),
    Bool(bool),
    /// Milliseconds.
    Duration(i64),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    /// A list of earlier constants (profile defaults such as `[]`).
    List(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventDesc {
    pub name: u32,
    pub wire_name: u32,
    /// A record type id: the fields the program reads or requires.
    pub record: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Email = 0,
    Sms = 1,
    Push = 2,
    InApp = 3,
    Webhook = 4,
    Destination = 5,
}

impl Channel {
    pub const ALL: [Channel; 6] = [
        Channel::Email,
        Channel::Sms,
        Channel::Push,
        Channel::InApp,
        Channel::Webhook,
        Channel::Destination,
    ];

    pub fn from_byte(byte: u8) -> Option<Channel> {
        Channel::ALL.get(byte as usize).copied()
    }

    pub fn name(self) -> &'static str {
        ["email", "sms", "push", "in_app", "webhook", "destination"][self as usize]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateDesc {
    pub name: u32,
    pub channel: Channel,
    /// A record type id: the parameters.
    pub params: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CapDesc {
    /// `None` for `cap all`.
    pub channel: Option<Channel>,
    pub limit: u32,
    pub window_ms: i64,
}

/// What a code block is for: it fixes the block's inputs and how it must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Computes a value of type `result` and `Return`s it. `event` is the event whose fields
    /// `LoadEvent` reads (filters), `journey` the instance whose slots `LoadSlot` reads.
    Expression {
        result: u32,
        event: u32,
        journey: u32,
    },
    /// A journey's steps.
    Body { journey: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub kind: BlockKind,
    pub offset: u32,
    pub length: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    None,
    Within(i64),
    SinceEntry,
}

/// A history function's question: which events, filtered how, over which window.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryQuery {
    pub event: u32,
    /// An expression block over the event (`NONE`: every event).
    pub filter: u32,
    pub window: Window,
    /// For `sum`: the field added up (`NONE` otherwise).
    pub field: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    On {
        event: u32,
        filter: u32,
        unless: Option<Unless>,
    },
    EveryDay {
        minute: u16,
    },
    EveryWeekday {
        weekday: u8,
        minute: u16,
    },
    Every {
        period_ms: i64,
    },
    At {
        timestamp_ms: i64,
    },
    /// A block computing the entry moment from the profile.
    When {
        block: u32,
    },
    Manual,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Unless {
    pub event: u32,
    pub filter: u32,
    pub within_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reentry {
    Once,
    Always,
    After(i64),
    MaxPer { max: u32, per_ms: i64 },
}

/// A goal or an exit.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub name: u32,
    /// `Some(event)` for `E [where p]` (block is the filter or `NONE`); `None` for `when` (block
    /// is the condition).
    pub event: Option<u32>,
    pub block: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quiet {
    pub start_minute: u16,
    pub end_minute: u16,
    pub skip: bool,
}

/// Copies a field of an arriving event into an instance slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capture {
    pub field: u16,
    pub slot: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WaitKind {
    Event {
        event: u32,
        filter: u32,
        since_entry: bool,
        captures: Vec<Capture>,
    },
    /// A condition block, re-evaluated when what it reads changes.
    Condition { block: u32 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct WaitDesc {
    pub kind: WaitKind,
    /// The deadline after the wait starts (`None`: until the journey's timeout).
    pub within_ms: Option<i64>,
    /// Where the deadline continues; `NONE` ends the instance with outcome `timeout`.
    pub timeout_target: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WaitArm {
    pub event: u32,
    pub filter: u32,
    pub captures: Vec<Capture>,
    pub target: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WaitAnyDesc {
    pub within_ms: i64,
    pub arms: Vec<WaitArm>,
    pub timeout_target: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SendDesc {
    pub channel: Channel,
    /// A template index, or `NONE` for `send channel "id"`.
    pub template: u32,
    /// The id string of `send channel "id"` (`NONE` for templates).
    pub id: u32,
    pub transactional: bool,
    /// The argument names (string indices), in the order `Send` pops their values.
    pub args: Vec<u32>,
    /// The arguments' type ids, in the order of `args` (section 11, format 1.1), so that a
    /// record prints with its field names. Empty for a file of format 1.0.
    pub arg_types: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SplitArm {
    pub name: u32,
    pub tenths: u16,
    pub target: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepDesc {
    pub name: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JourneyDesc {
    pub name: u32,
    pub title: u32,
    pub description: u32,
    pub entry: Entry,
    /// Entry-event fields copied into slots at entry.
    pub entry_captures: Vec<Capture>,
    pub audience: u32,
    /// For a scheduled entry (every day/weekday/period, at): event types of which the audience
    /// needs one in the user's history to hold (empty: no such need). The runtime schedules
    /// entry ticks only for users who have one, rather than for every known user.
    pub audience_needs: Vec<u32>,
    /// For a scheduled entry: (event type, window) for each `not did(E within D)` the audience
    /// requires. While the user's latest `E` is inside `D` the audience cannot hold, so the
    /// runtime skips the ticks until it leaves the window.
    pub audience_blocked_by: Vec<(u32, i64)>,
    pub reentry: Reentry,
    pub correlate: u32,
    pub goals: Vec<Trigger>,
    pub exits: Vec<Trigger>,
    pub timeout_ms: Option<i64>,
    pub timezone: u32,
    pub quiet: Option<Quiet>,
    pub body: u32,
    /// Slot types (type ids): what an instance holds besides its position and timers.
    pub slots: Vec<u32>,
    pub steps: Vec<StepDesc>,
    pub waits: Vec<WaitDesc>,
    pub wait_anys: Vec<WaitAnyDesc>,
    pub sends: Vec<SendDesc>,
    pub splits: Vec<Vec<SplitArm>>,
}

/// Source positions, for disassembly and traces; strippable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DebugInfo {
    /// File names (string indices).
    pub files: Vec<u32>,
    /// (code offset, file index, 1-based line), sorted by offset.
    pub lines: Vec<(u32, u16, u32)>,
}

/// A whole compiled program.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Program {
    pub strings: Vec<String>,
    pub constants: Vec<Constant>,
    pub types: Vec<TypeDesc>,
    pub events: Vec<EventDesc>,
    /// A record type id (`NONE` when there is no profile).
    pub profile: u32,
    /// Profile defaults: (field index, constant index), read while the user's traits lack it.
    pub profile_defaults: Vec<(u32, u32)>,
    pub templates: Vec<TemplateDesc>,
    pub caps: Vec<CapDesc>,
    pub history: Vec<HistoryQuery>,
    pub blocks: Vec<Block>,
    pub journeys: Vec<JourneyDesc>,
    pub code: Vec<u8>,
    pub debug: Option<DebugInfo>,
}

impl Program {
    pub fn string(&self, index: u32) -> &str {
        self.strings.get(index as usize).map_or("?", String::as_str)
    }

    /// The type description of a non-built-in type id.
    pub fn type_desc(&self, id: u32) -> Option<&TypeDesc> {
        id.checked_sub(types::BUILTIN)
            .and_then(|i| self.types.get(i as usize))
    }

    /// The fields of a record type id.
    pub fn record_fields(&self, id: u32) -> Option<&[FieldDesc]> {
        match self.type_desc(id) {
            Some(TypeDesc::Record(fields)) => Some(fields),
            _ => None,
        }
    }
}
