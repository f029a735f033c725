//! The typed syntax tree of one file. Built by `parse`; read by every later stage.
//!
//! **Invariant:** every node carries the byte span of the text it came from, in the file of its
//! `Module`. No pest type appears here.

use std::fmt;

use crate::source::{FileId, Span};

#[derive(Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// `name@12..16`
impl fmt::Debug for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{:?}", self.name, self.span)
    }
}

/// A string literal with its escapes resolved.
#[derive(Clone, PartialEq)]
pub struct StringLit {
    pub value: String,
    pub span: Span,
}

/// `"value"@12..19`
impl fmt::Debug for StringLit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@{:?}", self.value, self.span)
    }
}

/// A duration literal in whole seconds (`1d` = 86 400 s: exact time, never a calendar day).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DurationLit {
    pub seconds: u64,
    pub span: Span,
}

/// `3600s@12..14`
impl fmt::Debug for DurationLit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s@{:?}", self.seconds, self.span)
    }
}

/// A time of day, `H:MM` or `HH:MM`, 24-hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay {
    pub hour: u8,
    pub minute: u8,
    pub span: Span,
}

/// An instant, `@2026-12-01T09:00:00Z`, as milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampLit {
    pub millis: i64,
    pub span: Span,
}

/// A split weight in tenths of a percent (`12.5%` = 125).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percent {
    pub tenths: u32,
    pub span: Span,
}

/// The text of the `///` lines right above a declaration, field or step.
pub type Doc = Option<String>;

#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    pub file: FileId,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Import(Import),
    Event(EventDecl),
    Profile(ProfileDecl),
    Template(TemplateDecl),
    Segment(SegmentDecl),
    Cap(CapDecl),
    Journey(Journey),
    Test(TestDecl),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Import(i) => i.span,
            Item::Event(i) => i.span,
            Item::Profile(i) => i.span,
            Item::Template(i) => i.span,
            Item::Segment(i) => i.span,
            Item::Cap(i) => i.span,
            Item::Journey(i) => i.span,
            Item::Test(i) => i.span,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    /// `import "other.journey"`
    Journey,
    /// `import schema "plan.json"`
    Schema,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    pub kind: ImportKind,
    pub path: StringLit,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventDecl {
    pub doc: Doc,
    /// `event "Order Completed" as OrderCompleted`: the name `track` messages carry.
    pub wire_name: Option<StringLit>,
    pub name: Ident,
    pub fields: Vec<FieldDecl>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProfileDecl {
    pub doc: Doc,
    pub fields: Vec<FieldDecl>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldDecl {
    pub doc: Doc,
    pub name: Ident,
    pub ty: TypeExpr,
    /// `points: int = 0` (profiles only; checked later).
    pub default: Option<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TypeExpr {
    pub kind: TypeKind,
    pub optional: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TypeKind {
    Bool,
    Int,
    Float,
    String,
    Timestamp,
    Duration,
    Enum(Vec<StringLit>),
    List(Box<TypeExpr>),
    Record(Vec<FieldDecl>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Email,
    Sms,
    Push,
    InApp,
    Webhook,
    Destination,
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

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
            Channel::InApp => "in_app",
            Channel::Webhook => "webhook",
            Channel::Destination => "destination",
        }
    }

    pub fn parse(word: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == word)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateDecl {
    pub doc: Doc,
    pub name: Ident,
    pub channel: Channel,
    pub channel_span: Span,
    pub params: Vec<FieldDecl>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SegmentDecl {
    pub doc: Doc,
    pub name: Ident,
    pub condition: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapScope {
    Channel(Channel),
    /// `cap all ...`: sends of every channel.
    All,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CapDecl {
    pub doc: Doc,
    pub scope: CapScope,
    pub limit: u64,
    pub window: DurationLit,
    pub span: Span,
}

// ---------------------------------------------------------------- journeys

#[derive(Debug, Clone, PartialEq)]
pub struct Journey {
    pub doc: Doc,
    pub name: Ident,
    /// In source order; `parse` has checked each appears at most once (but `goal`/`exit`).
    pub settings: Vec<Setting>,
    pub steps: Vec<Step>,
    pub span: Span,
}

impl Journey {
    pub fn entry(&self) -> Option<&Entry> {
        self.settings.iter().find_map(|s| match &s.kind {
            SettingKind::Entry(entry) => Some(entry),
            _ => None,
        })
    }

    pub fn timeout(&self) -> Option<DurationLit> {
        self.settings.iter().find_map(|s| match &s.kind {
            SettingKind::Timeout(d) => Some(*d),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub doc: Doc,
    pub kind: SettingKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SettingKind {
    Title(StringLit),
    Description(StringLit),
    Entry(Entry),
    Audience(Expr),
    Reentry(Reentry),
    Correlate(Expr),
    Goal(Trigger),
    Exit(Trigger),
    Timeout(DurationLit),
    Timezone(Expr),
    QuietHours(QuietHours),
}

impl SettingKind {
    /// The keyword that introduces the setting.
    pub fn keyword(&self) -> &'static str {
        match self {
            SettingKind::Title(_) => "title",
            SettingKind::Description(_) => "description",
            SettingKind::Entry(_) => "entry",
            SettingKind::Audience(_) => "audience",
            SettingKind::Reentry(_) => "reentry",
            SettingKind::Correlate(_) => "correlate",
            SettingKind::Goal(_) => "goal",
            SettingKind::Exit(_) => "exit",
            SettingKind::Timeout(_) => "timeout",
            SettingKind::Timezone(_) => "timezone",
            SettingKind::QuietHours(_) => "quiet hours",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// `entry on E [as b] [where p] [unless F [where q] within D]`
    On {
        event: Ident,
        binding: Option<Ident>,
        filter: Option<Expr>,
        unless: Option<Box<Unless>>,
    },
    /// `entry every day at HH:MM`
    EveryDay { at: TimeOfDay },
    /// `entry every mon at HH:MM`
    EveryWeekday {
        weekday: Weekday,
        weekday_span: Span,
        at: TimeOfDay,
    },
    /// `entry every D`
    Every(DurationLit),
    /// `entry at @timestamp`
    At(TimestampLit),
    /// `entry when <timestamp expr>`
    When(Expr),
    /// `entry manual`
    Manual,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Unless {
    pub event: Ident,
    pub filter: Option<Expr>,
    pub within: DurationLit,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    pub fn parse(word: &str) -> Option<Weekday> {
        Some(match word {
            "mon" => Weekday::Mon,
            "tue" => Weekday::Tue,
            "wed" => Weekday::Wed,
            "thu" => Weekday::Thu,
            "fri" => Weekday::Fri,
            "sat" => Weekday::Sat,
            "sun" => Weekday::Sun,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reentry {
    Once,
    Always,
    After(DurationLit),
    MaxPer { max: u64, per: DurationLit },
}

/// What a goal or exit watches for.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub name: Ident,
    pub condition: TriggerCondition,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TriggerCondition {
    /// `E [where p]`
    Event { event: Ident, filter: Option<Expr> },
    /// `when <bool>`
    When(Expr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuietMode {
    Defer,
    Skip,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QuietHours {
    pub start: TimeOfDay,
    pub end: TimeOfDay,
    pub mode: QuietMode,
}

// ---------------------------------------------------------------- steps

#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub steps: Vec<Step>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub doc: Doc,
    pub label: Option<Ident>,
    pub kind: StepKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// `wait D`
    Wait(DurationLit),
    /// `wait until HH:MM [local]`
    WaitUntilTime {
        time: TimeOfDay,
        local: bool,
    },
    /// `wait until <expr> [within D] [{...}] [timeout {...}]`: a timestamp or a condition.
    WaitUntil {
        target: Expr,
        within: Option<DurationLit>,
        then: Option<Block>,
        on_timeout: Option<Block>,
    },
    /// `wait for E [as b] [where p] [within D] [since entry] [{...}] [timeout {...}]`
    WaitFor {
        event: Ident,
        binding: Option<Ident>,
        filter: Option<Expr>,
        within: Option<DurationLit>,
        since_entry: bool,
        then: Option<Block>,
        on_timeout: Option<Block>,
    },
    /// `wait within D { on E ... { } ... [timeout { }] }`
    WaitAny {
        within: DurationLit,
        arms: Vec<WaitArm>,
        on_timeout: Option<Block>,
    },
    Send(Send),
    /// `set profile.f = <expr>`
    Set {
        field: Ident,
        value: Expr,
    },
    /// `add <expr> to profile.f`
    Add {
        value: Expr,
        field: Ident,
    },
    /// `remove <expr> from profile.f`
    Remove {
        value: Expr,
        field: Ident,
    },
    /// `if c { } else if c { } else { }`
    If {
        arms: Vec<(Expr, Block)>,
        otherwise: Option<Block>,
    },
    /// `branch { name: when c { } ... else { } }`
    Branch {
        arms: Vec<BranchArm>,
        otherwise: Option<Block>,
    },
    /// `split { name: 50% { } ... }`
    Split {
        arms: Vec<SplitArm>,
    },
    /// `start other_journey`
    Start(Ident),
    /// `exit`
    Exit,
}

impl StepKind {
    /// The `<kind>` of an unlabelled step's name `<kind>_<n>`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            StepKind::Wait(_)
            | StepKind::WaitUntilTime { .. }
            | StepKind::WaitUntil { .. }
            | StepKind::WaitFor { .. }
            | StepKind::WaitAny { .. } => "wait",
            StepKind::Send(_) => "send",
            StepKind::Set { .. } => "set",
            StepKind::Add { .. } => "add",
            StepKind::Remove { .. } => "remove",
            StepKind::If { .. } => "if",
            StepKind::Branch { .. } => "branch",
            StepKind::Split { .. } => "split",
            StepKind::Start(_) => "start",
            StepKind::Exit => "exit",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct WaitArm {
    pub event: Ident,
    pub binding: Option<Ident>,
    pub filter: Option<Expr>,
    pub block: Block,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BranchArm {
    pub name: Ident,
    pub condition: Expr,
    pub block: Block,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SplitArm {
    pub name: Ident,
    pub weight: Percent,
    pub block: Block,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SendTarget {
    /// `send email "some_id"`: a template the compiler does not know.
    Channel {
        channel: Channel,
        channel_span: Span,
        id: StringLit,
    },
    /// `send cart_reminder { ... }`: a declared template.
    Template(Ident),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Send {
    pub target: SendTarget,
    pub args: Option<Record>,
    pub transactional: bool,
}

// ---------------------------------------------------------------- tests

#[derive(Debug, Clone, PartialEq)]
pub struct TestDecl {
    pub doc: Doc,
    pub name: StringLit,
    pub journey: Ident,
    pub lines: Vec<TestLine>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TestLine {
    pub kind: TestLineKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TestLineKind {
    /// `start @...`: the test's clock origin.
    Start(TimestampLit),
    /// `profile { ... }`: the traits at the start.
    Profile(Record),
    /// `until T`
    Until(TestTime),
    /// `at T Event { ... }`
    Track {
        at: DurationLit,
        event: Ident,
        properties: Option<Record>,
    },
    /// `at T identify { ... }`
    Identify {
        at: DurationLit,
        traits: Record,
    },
    Expect(Expectation),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestTime {
    After(DurationLit),
    At(TimestampLit),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Goal,
    Exited,
    Timeout,
    Completed,
    Archived,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Goal,
        Outcome::Exited,
        Outcome::Timeout,
        Outcome::Completed,
        Outcome::Archived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Goal => "goal",
            Outcome::Exited => "exited",
            Outcome::Timeout => "timeout",
            Outcome::Completed => "completed",
            Outcome::Archived => "archived",
        }
    }

    pub fn parse(word: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == word)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    Send {
        target: SendTarget,
        at: Option<DurationLit>,
    },
    NoSend,
    Sends(u64),
    Exit {
        outcome: Outcome,
        name: Option<Ident>,
        at: Option<DurationLit>,
    },
    NotEntered,
    At {
        label: Ident,
        at: DurationLit,
    },
}

// ---------------------------------------------------------------- expressions

/// `{ key: value, ... }` in send arguments, test events, traits and profiles.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub entries: Vec<RecordEntry>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordEntry {
    pub key: Ident,
    pub value: Expr,
}

#[derive(Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

/// A fully parenthesised S-expression, so dumps show precedence at a glance:
/// `(and (> profile.x 1) (not b))@4..30`.
impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{:?}", SExpr(self), self.span)
    }
}

impl Expr {
    /// The expression as a fully parenthesised S-expression, without spans: equal for
    /// expressions written the same way.
    pub fn to_sexpr(&self) -> String {
        SExpr(self).to_string()
    }
}

struct SExpr<'a>(&'a Expr);

impl fmt::Display for SExpr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.kind {
            ExprKind::Int(n) => write!(f, "{n}"),
            ExprKind::Float(n) => write!(f, "{n:?}"),
            ExprKind::String(s) => write!(f, "{s:?}"),
            ExprKind::Bool(b) => write!(f, "{b}"),
            ExprKind::Duration(s) => write!(f, "{s}s"),
            ExprKind::Timestamp(ms) => write!(f, "@{ms}ms"),
            ExprKind::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{}", SExpr(item))?;
                }
                f.write_str("]")
            }
            ExprKind::Record(record) => {
                f.write_str("{")?;
                for (i, entry) in record.entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{}: {}", entry.key.name, SExpr(&entry.value))?;
                }
                f.write_str("}")
            }
            ExprKind::Name(ident) => f.write_str(&ident.name),
            ExprKind::Profile => f.write_str("profile"),
            ExprKind::Journey => f.write_str("journey"),
            ExprKind::Now => f.write_str("now"),
            ExprKind::Field { base, field } => write!(f, "{}.{}", SExpr(base), field.name),
            ExprKind::Unary { op, operand } => {
                let op = match op {
                    UnaryOp::Not => "not",
                    UnaryOp::Neg => "-",
                };
                write!(f, "({op} {})", SExpr(operand))
            }
            ExprKind::Binary { op, lhs, rhs } => {
                write!(f, "({} {} {})", op.as_str(), SExpr(lhs), SExpr(rhs))
            }
            ExprKind::IsSet { operand, negated } => {
                let op = if *negated { "is-not-set" } else { "is-set" };
                write!(f, "({op} {})", SExpr(operand))
            }
            ExprKind::History(h) => {
                write!(f, "({} {}", h.function.as_str(), h.event.name)?;
                if let Some(field) = &h.field {
                    write!(f, ".{}", field.name)?;
                }
                if let Some(filter) = &h.filter {
                    write!(f, " where {}", SExpr(filter))?;
                }
                match h.window {
                    Some(Window::Within(d)) => write!(f, " within {}s", d.seconds)?,
                    Some(Window::SinceEntry(_)) => f.write_str(" since-entry")?,
                    None => {}
                }
                f.write_str(")")
            }
            ExprKind::Call { function, args } => {
                write!(f, "({}", function.name)?;
                for arg in args {
                    write!(f, " {}", SExpr(arg))?;
                }
                f.write_str(")")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    String(String),
    Bool(bool),
    Duration(u64),
    Timestamp(i64),
    List(Vec<Expr>),
    /// A nested record value (only inside records).
    Record(Record),
    /// A bare name: a binding, a segment, or (inside `where`) a field of the matched event.
    Name(Ident),
    /// `profile`, the root of `profile.field`.
    Profile,
    /// `journey`, the root of `journey.entered_at`.
    Journey,
    Now,
    Field {
        base: Box<Expr>,
        field: Ident,
    },
    Unary {
        op: UnaryOp,
        operand: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `x is set` / `x is not set`
    IsSet {
        operand: Box<Expr>,
        negated: bool,
    },
    /// `count/did/last/sum(E[.field] [where p] [within D | since entry])`
    History(History),
    /// `hour(t)`, `lower(s)`, ...
    Call {
        function: Ident,
        args: Vec<Expr>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Not,
    Neg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Add,
    Sub,
    Mul,
    Div,
    Coalesce,
}

impl BinaryOp {
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::In => "in",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Coalesce => "??",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryFn {
    Count,
    Did,
    Last,
    Sum,
}

impl HistoryFn {
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryFn::Count => "count",
            HistoryFn::Did => "did",
            HistoryFn::Last => "last",
            HistoryFn::Sum => "sum",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Within(DurationLit),
    SinceEntry(Span),
}

#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub function: HistoryFn,
    pub event: Ident,
    /// `sum(E.field ...)`
    pub field: Option<Ident>,
    pub filter: Option<Box<Expr>>,
    pub window: Option<Window>,
}
