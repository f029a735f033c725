//! `Program` ↔ bytes: the container of docs/bytecode.md. Each record type's encoding and
//! decoding sit side by side (`Codec`), so the two cannot drift apart.
//!
//! **Invariant:** `read` never panics and never allocates more than the input justifies: every
//! count is checked against the bytes left before anything is reserved.

use std::fmt;

use super::*;

const SECTION_STRINGS: u32 = 1;
const SECTION_CONSTANTS: u32 = 2;
const SECTION_TYPES: u32 = 3;
const SECTION_EVENTS: u32 = 4;
const SECTION_TEMPLATES: u32 = 5;
const SECTION_CAPS: u32 = 6;
const SECTION_HISTORY: u32 = 7;
const SECTION_BLOCKS: u32 = 8;
const SECTION_JOURNEYS: u32 = 9;
const SECTION_CODE: u32 = 10;
/// Format 1.1: the type of each send's arguments.
const SECTION_SEND_TYPES: u32 = 11;
/// Source positions; may be removed (`strip_debug`) without invalidating the file.
const SECTION_DEBUG: u32 = 100;

const HEADER_BYTES: usize = 20;

/// Why a file could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// Byte offset in the file where the problem is (0 for whole-file problems).
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

impl std::error::Error for LoadError {}

type Result<T> = std::result::Result<T, LoadError>;

// ---------------------------------------------------------------- primitives

#[derive(Default)]
struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    fn list<T: Codec>(&mut self, items: &[T]) {
        self.len(items.len());
        for item in items {
            item.put(self);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Where `bytes` starts in the file, for error offsets.
    base: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, message: impl Into<String>) -> LoadError {
        LoadError {
            offset: self.base + self.at,
            message: message.into(),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let slice = self
            .bytes
            .get(self.at..self.at.saturating_add(n))
            .ok_or_else(|| self.error("the section ends too early"))?;
        self.at += n;
        Ok(slice)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }
    fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.error(format!("expected a boolean (0 or 1), found {other}"))),
        }
    }
    /// A count of items that each take at least `min_item_bytes`: refused if the section could
    /// not hold that many, so a corrupt count never reserves memory.
    fn count(&mut self, min_item_bytes: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        let left = self.bytes.len() - self.at;
        if n.saturating_mul(min_item_bytes.max(1)) > left {
            return Err(self.error(format!(
                "a count of {n} items does not fit in the {left} bytes left"
            )));
        }
        Ok(n)
    }
    fn list<T: Codec>(&mut self) -> Result<Vec<T>> {
        let n = self.count(T::MIN_BYTES)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(T::get(self)?);
        }
        Ok(items)
    }
    fn done(&self, section: &str) -> Result<()> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(self.error(format!(
                "{} unexpected bytes at the end of the {section} section",
                self.bytes.len() - self.at
            )))
        }
    }
}

/// A record of the format: how it is written and read.
trait Codec: Sized {
    /// The fewest bytes one encoded value takes.
    const MIN_BYTES: usize;
    fn put(&self, w: &mut Writer);
    fn get(r: &mut Reader) -> Result<Self>;
}

impl Codec for u32 {
    const MIN_BYTES: usize = 4;
    fn put(&self, w: &mut Writer) {
        w.u32(*self);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        r.u32()
    }
}

impl Codec for String {
    const MIN_BYTES: usize = 4;
    fn put(&self, w: &mut Writer) {
        w.len(self.len());
        w.bytes.extend_from_slice(self.as_bytes());
    }
    fn get(r: &mut Reader) -> Result<Self> {
        let n = r.count(1)?;
        let at = r.at;
        let bytes = r.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| LoadError {
            offset: r.base + at,
            message: "a string is not valid UTF-8".into(),
        })
    }
}

impl Codec for Constant {
    const MIN_BYTES: usize = 2;
    fn put(&self, w: &mut Writer) {
        match self {
            Constant::Int(v) => {
                w.u8(0);
                w.i64(*v);
            }
            Constant::Float(v) => {
                w.u8(1);
                w.f64(*v);
            }
            Constant::String(v) => {
                w.u8(2);
                w.u32(*v);
            }
            Constant::Bool(v) => {
                w.u8(3);
                w.u8(u8::from(*v));
            }
            Constant::Duration(v) => {
                w.u8(4);
                w.i64(*v);
            }
            Constant::Timestamp(v) => {
                w.u8(5);
                w.i64(*v);
            }
            Constant::List(items) => {
                w.u8(6);
                w.list(items);
            }
        }
    }
    fn get(r: &mut Reader) -> Result<Self> {
        Ok(match r.u8()? {
            0 => Constant::Int(r.i64()?),
            1 => Constant::Float(r.f64()?),
            2 => Constant::String(r.u32()?),
            3 => Constant::Bool(r.bool()?),
            4 => Constant::Duration(r.i64()?),
            5 => Constant::Timestamp(r.i64()?),
            6 => Constant::List(r.list()?),
            tag => return Err(r.error(format!("unknown constant tag {tag}"))),
        })
    }
}

impl Codec for FieldDesc {
    const MIN_BYTES: usize = 8;
    fn put(&self, w: &mut Writer) {
        w.u32(self.name);
        w.u32(self.ty);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        Ok(FieldDesc {
            name: r.u32()?,
            ty: r.u32()?,
        })
    }
}

impl Codec for TypeDesc {
    const MIN_BYTES: usize = 5;
    fn put(&self, w: &mut Writer) {
        match self {
            TypeDesc::Enum(values) => {
                w.u8(0);
                w.list(values);
            }
            TypeDesc::List(item) => {
                w.u8(1);
                w.u32(*item);
            }
            TypeDesc::Record(fields) => {
                w.u8(2);
                w.list(fields);
            }
            TypeDesc::Optional(inner) => {
                w.u8(3);
                w.u32(*inner);
            }
        }
    }
    fn get(r: &mut Reader) -> Result<Self> {
        Ok(match r.u8()? {
            0 => TypeDesc::Enum(r.list()?),
            1 => TypeDesc::List(r.u32()?),
            2 => TypeDesc::Record(r.list()?),
            3 => TypeDesc::Optional(r.u32()?),
            tag => return Err(r.error(format!("unknown type tag {tag}"))),
        })
    }
}

impl Codec for EventDesc {
    const MIN_BYTES: usize = 12;
    fn put(&self, w: &mut Writer) {
        w.u32(self.name);
        w.u32(self.wire_name);
        w.u32(self.record);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        Ok(EventDesc {
            name: r.u32()?,
            wire_name: r.u32()?,
            record: r.u32()?,
        })
    }
}

fn get_channel(r: &mut Reader) -> Result<Channel> {
    let byte = r.u8()?;
    Channel::from_byte(byte).ok_or_else(|| r.error(format!("unknown channel {byte}")))
}

impl Codec for TemplateDesc {
    const MIN_BYTES: usize = 9;
    fn put(&self, w: &mut Writer) {
        w.u32(self.name);
        w.u8(self.channel as u8);
        w.u32(self.params);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        Ok(TemplateDesc {
            name: r.u32()?,
            channel: get_channel(r)?,
            params: r.u32()?,
        })
    }
}

impl Codec for CapDesc {
    const MIN_BYTES: usize = 13;
    fn put(&self, w: &mut Writer) {
        w.u8(self.channel.map_or(255, |c| c as u8));
        w.u32(self.limit);
        w.i64(self.window_ms);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        let channel = match r.u8()? {
            255 => None,
            byte => Some(
                Channel::from_byte(byte)
                    .ok_or_else(|| r.error(format!("unknown channel {byte}")))?,
            ),
        };
        Ok(CapDesc {
            channel,
            limit: r.u32()?,
            window_ms: r.i64()?,
        })
    }
}

fn put_window(w: &mut Writer, window: Window) {
    match window {
        Window::None => w.u8(0),
        Window::Within(ms) => {
            w.u8(1);
            w.i64(ms);
        }
        Window::SinceEntry => w.u8(2),
    }
}

fn get_window(r: &mut Reader) -> Result<Window> {
    Ok(match r.u8()? {
        0 => Window::None,
        1 => Window::Within(r.i64()?),
        2 => Window::SinceEntry,
        tag => return Err(r.error(format!("unknown window tag {tag}"))),
    })
}

impl Codec for HistoryQuery {
    const MIN_BYTES: usize = 13;
    fn put(&self, w: &mut Writer) {
        w.u32(self.event);
        w.u32(self.filter);
        put_window(w, self.window);
        w.u32(self.field);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        Ok(HistoryQuery {
            event: r.u32()?,
            filter: r.u32()?,
            window: get_window(r)?,
            field: r.u32()?,
        })
    }
}

impl Codec for Block {
    const MIN_BYTES: usize = 13;
    fn put(&self, w: &mut Writer) {
        match self.kind {
            BlockKind::Expression {
                result,
                event,
                journey,
            } => {
                w.u8(0);
                w.u32(result);
                w.u32(event);
                w.u32(journey);
            }
            BlockKind::Body { journey } => {
                w.u8(1);
                w.u32(journey);
            }
        }
        w.u32(self.offset);
        w.u32(self.length);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        let kind = match r.u8()? {
            0 => BlockKind::Expression {
                result: r.u32()?,
                event: r.u32()?,
                journey: r.u32()?,
            },
            1 => BlockKind::Body { journey: r.u32()? },
            tag => return Err(r.error(format!("unknown block kind {tag}"))),
        };
        Ok(Block {
            kind,
            offset: r.u32()?,
            length: r.u32()?,
        })
    }
}

impl Codec for Capture {
    const MIN_BYTES: usize = 4;
    fn put(&self, w: &mut Writer) {
        w.u16(self.field);
        w.u16(self.slot);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        Ok(Capture {
            field: r.u16()?,
            slot: r.u16()?,
        })
    }
}

impl Codec for Trigger {
    const MIN_BYTES: usize = 12;
    fn put(&self, w: &mut Writer) {
        w.u32(self.name);
        w.u32(self.event.unwrap_or(NONE));
        w.u32(self.block);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        let name = r.u32()?;
        let event = Some(r.u32()?).filter(|e| *e != NONE);
        Ok(Trigger {
            name,
            event,
            block: r.u32()?,
        })
    }
}

impl Codec for WaitDesc {
    const MIN_BYTES: usize = 10;
    fn put(&self, w: &mut Writer) {
        match &self.kind {
            WaitKind::Event {
                event,
                filter,
                since_entry,
                captures,
            } => {
                w.u8(0);
                w.u32(*event);
                w.u32(*filter);
                w.u8(u8::from(*since_entry));
                w.list(captures);
            }
            WaitKind::Condition { block } => {
                w.u8(1);
                w.u32(*block);
            }
        }
        match self.within_ms {
            Some(ms) => {
                w.u8(1);
                w.i64(ms);
            }
            None => w.u8(0),
        }
        w.u32(self.timeout_target);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        let kind = match r.u8()? {
            0 => WaitKind::Event {
                event: r.u32()?,
                filter: r.u32()?,
                since_entry: r.bool()?,
                captures: r.list()?,
            },
            1 => WaitKind::Condition { block: r.u32()? },
            tag => return Err(r.error(format!("unknown wait kind {tag}"))),
        };
        let within_ms = if r.bool()? { Some(r.i64()?) } else { None };
        Ok(WaitDesc {
            kind,
            within_ms,
            timeout_target: r.u32()?,
        })
    }
}

impl Codec for WaitArm {
    const MIN_BYTES: usize = 16;
    fn put(&self, w: &mut Writer) {
        w.u32(self.event);
        w.u32(self.filter);
        w.list(&self.captures);
        w.u32(self.target);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        Ok(WaitArm {
            event: r.u32()?,
            filter: r.u32()?,
            captures: r.list()?,
            target: r.u32()?,
        })
    }
}

impl Codec for WaitAnyDesc {
    const MIN_BYTES: usize = 16;
    fn put(&self, w: &mut Writer) {
        w.i64(self.within_ms);
        w.list(&self.arms);
        w.u32(self.timeout_target);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        Ok(WaitAnyDesc {
            within_ms: r.i64()?,
            arms: r.list()?,
            timeout_target: r.u32()?,
        })
    }
}

impl Codec for SendDesc {
    const MIN_BYTES: usize = 14;
    fn put(&self, w: &mut Writer) {
        w.u8(self.channel as u8);
        w.u32(self.template);
        w.u32(self.id);
        w.u8(u8::from(self.transactional));
        w.list(&self.args);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        Ok(SendDesc {
            channel: get_channel(r)?,
            template: r.u32()?,
            id: r.u32()?,
            transactional: r.bool()?,
            args: r.list()?,
            // (Section 11.)
            arg_types: Vec::new(),
        })
    }
}

impl Codec for SplitArm {
    const MIN_BYTES: usize = 10;
    fn put(&self, w: &mut Writer) {
        w.u32(self.name);
        w.u16(self.tenths);
        w.u32(self.target);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        Ok(SplitArm {
            name: r.u32()?,
            tenths: r.u16()?,
            target: r.u32()?,
        })
    }
}

impl Codec for Vec<SplitArm> {
    const MIN_BYTES: usize = 4;
    fn put(&self, w: &mut Writer) {
        w.list(self);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        r.list()
    }
}

impl Codec for StepDesc {
    const MIN_BYTES: usize = 4;
    fn put(&self, w: &mut Writer) {
        w.u32(self.name);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        Ok(StepDesc { name: r.u32()? })
    }
}

fn put_entry(w: &mut Writer, entry: &Entry) {
    match entry {
        Entry::On {
            event,
            filter,
            unless,
        } => {
            w.u8(0);
            w.u32(*event);
            w.u32(*filter);
            match unless {
                Some(u) => {
                    w.u8(1);
                    w.u32(u.event);
                    w.u32(u.filter);
                    w.i64(u.within_ms);
                }
                None => w.u8(0),
            }
        }
        Entry::EveryDay { minute } => {
            w.u8(1);
            w.u16(*minute);
        }
        Entry::EveryWeekday { weekday, minute } => {
            w.u8(2);
            w.u8(*weekday);
            w.u16(*minute);
        }
        Entry::Every { period_ms } => {
            w.u8(3);
            w.i64(*period_ms);
        }
        Entry::At { timestamp_ms } => {
            w.u8(4);
            w.i64(*timestamp_ms);
        }
        Entry::When { block } => {
            w.u8(5);
            w.u32(*block);
        }
        Entry::Manual => w.u8(6),
    }
}

fn get_entry(r: &mut Reader) -> Result<Entry> {
    Ok(match r.u8()? {
        0 => {
            let event = r.u32()?;
            let filter = r.u32()?;
            let unless = if r.bool()? {
                Some(Unless {
                    event: r.u32()?,
                    filter: r.u32()?,
                    within_ms: r.i64()?,
                })
            } else {
                None
            };
            Entry::On {
                event,
                filter,
                unless,
            }
        }
        1 => Entry::EveryDay { minute: r.u16()? },
        2 => Entry::EveryWeekday {
            weekday: r.u8()?,
            minute: r.u16()?,
        },
        3 => Entry::Every {
            period_ms: r.i64()?,
        },
        4 => Entry::At {
            timestamp_ms: r.i64()?,
        },
        5 => Entry::When { block: r.u32()? },
        6 => Entry::Manual,
        tag => return Err(r.error(format!("unknown entry kind {tag}"))),
    })
}

impl Codec for JourneyDesc {
    const MIN_BYTES: usize = 60;
    fn put(&self, w: &mut Writer) {
        w.u32(self.name);
        w.u32(self.title);
        w.u32(self.description);
        put_entry(w, &self.entry);
        w.list(&self.entry_captures);
        w.u32(self.audience);
        match self.reentry {
            Reentry::Once => w.u8(0),
            Reentry::Always => w.u8(1),
            Reentry::After(ms) => {
                w.u8(2);
                w.i64(ms);
            }
            Reentry::MaxPer { max, per_ms } => {
                w.u8(3);
                w.u32(max);
                w.i64(per_ms);
            }
        }
        w.list(&self.audience_needs);
        w.list(&self.audience_blocked_by);
        w.u32(self.correlate);
        w.list(&self.goals);
        w.list(&self.exits);
        w.i64(self.timeout_ms.unwrap_or(-1));
        w.u32(self.timezone);
        match self.quiet {
            Some(q) => {
                w.u8(if q.skip { 2 } else { 1 });
                w.u16(q.start_minute);
                w.u16(q.end_minute);
            }
            None => w.u8(0),
        }
        w.u32(self.body);
        w.list(&self.slots);
        w.list(&self.steps);
        w.list(&self.waits);
        w.list(&self.wait_anys);
        w.list(&self.sends);
        w.list(&self.splits);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        let name = r.u32()?;
        let title = r.u32()?;
        let description = r.u32()?;
        let entry = get_entry(r)?;
        let entry_captures = r.list()?;
        let audience = r.u32()?;
        let reentry = match r.u8()? {
            0 => Reentry::Once,
            1 => Reentry::Always,
            2 => Reentry::After(r.i64()?),
            3 => Reentry::MaxPer {
                max: r.u32()?,
                per_ms: r.i64()?,
            },
            tag => return Err(r.error(format!("unknown reentry kind {tag}"))),
        };
        let audience_needs = r.list()?;
        let audience_blocked_by = r.list()?;
        let correlate = r.u32()?;
        let goals = r.list()?;
        let exits = r.list()?;
        let timeout_ms = Some(r.i64()?).filter(|t| *t >= 0);
        let timezone = r.u32()?;
        let quiet = match r.u8()? {
            0 => None,
            kind @ (1 | 2) => Some(Quiet {
                start_minute: r.u16()?,
                end_minute: r.u16()?,
                skip: kind == 2,
            }),
            tag => return Err(r.error(format!("unknown quiet-hours kind {tag}"))),
        };
        Ok(JourneyDesc {
            name,
            title,
            description,
            entry,
            entry_captures,
            audience,
            audience_needs,
            audience_blocked_by,
            reentry,
            correlate,
            goals,
            exits,
            timeout_ms,
            timezone,
            quiet,
            body: r.u32()?,
            slots: r.list()?,
            steps: r.list()?,
            waits: r.list()?,
            wait_anys: r.list()?,
            sends: r.list()?,
            splits: r.list()?,
        })
    }
}

impl Codec for (u32, i64) {
    const MIN_BYTES: usize = 12;
    fn put(&self, w: &mut Writer) {
        w.u32(self.0);
        w.i64(self.1);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        Ok((r.u32()?, r.i64()?))
    }
}

impl Codec for (u32, u32) {
    const MIN_BYTES: usize = 8;
    fn put(&self, w: &mut Writer) {
        w.u32(self.0);
        w.u32(self.1);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        Ok((r.u32()?, r.u32()?))
    }
}

impl Codec for (u32, u16, u32) {
    const MIN_BYTES: usize = 10;
    fn put(&self, w: &mut Writer) {
        w.u32(self.0);
        w.u16(self.1);
        w.u32(self.2);
    }
    fn get(r: &mut Reader) -> Result<Self> {
        Ok((r.u32()?, r.u16()?, r.u32()?))
    }
}

// ---------------------------------------------------------------- container

/// Encodes a program as a file.
pub fn write(program: &Program) -> Vec<u8> {
    let mut sections: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut section = |kind: u32, fill: &dyn Fn(&mut Writer)| {
        let mut w = Writer::default();
        fill(&mut w);
        sections.push((kind, w.bytes));
    };
    section(SECTION_STRINGS, &|w| w.list(&program.strings));
    section(SECTION_CONSTANTS, &|w| w.list(&program.constants));
    section(SECTION_TYPES, &|w| w.list(&program.types));
    section(SECTION_EVENTS, &|w| {
        w.list(&program.events);
        w.u32(program.profile);
        w.list(&program.profile_defaults);
    });
    section(SECTION_TEMPLATES, &|w| w.list(&program.templates));
    section(SECTION_CAPS, &|w| w.list(&program.caps));
    section(SECTION_HISTORY, &|w| w.list(&program.history));
    section(SECTION_BLOCKS, &|w| w.list(&program.blocks));
    section(SECTION_JOURNEYS, &|w| w.list(&program.journeys));
    section(SECTION_CODE, &|w| w.bytes.extend_from_slice(&program.code));
    // (Left out when some send lacks its types, as a program of format 1.0 read back does.)
    let sends = || program.journeys.iter().flat_map(|j| &j.sends);
    if sends().all(|s| s.arg_types.len() == s.args.len()) {
        section(SECTION_SEND_TYPES, &|w| {
            for send in sends() {
                w.list(&send.arg_types);
            }
        });
    }
    if let Some(debug) = &program.debug {
        section(SECTION_DEBUG, &|w| {
            w.list(&debug.files);
            w.list(&debug.lines);
        });
    }
    let table_bytes = sections.len() * 12;
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&MAJOR.to_le_bytes());
    out.extend_from_slice(&MINOR.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // crc32, filled in below
    out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    let mut offset = HEADER_BYTES + table_bytes;
    for (kind, bytes) in &sections {
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&(offset as u32).to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        offset += bytes.len();
    }
    for (_, bytes) in &sections {
        out.extend_from_slice(bytes);
    }
    let crc = checksum(&out);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    out
}

/// CRC-32 of the whole file but the checksum field itself (so the version is covered too).
fn checksum(bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[..12]);
    hasher.update(&bytes[16..]);
    hasher.finalize()
}

/// Decodes a file. Structure only: `verify` must accept the program before it runs.
pub fn read(bytes: &[u8]) -> Result<Program> {
    let whole = |message: String| LoadError { offset: 0, message };
    if bytes.len() < HEADER_BYTES {
        return Err(whole(format!(
            "the file is {} bytes long, shorter than a header ({HEADER_BYTES} bytes)",
            bytes.len()
        )));
    }
    if bytes[..8] != MAGIC {
        return Err(whole(
            "not a journey bytecode file (bad magic number)".into(),
        ));
    }
    let stored = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    let actual = checksum(bytes);
    if stored != actual {
        return Err(LoadError {
            offset: 12,
            message: format!("checksum mismatch (stored {stored:08x}, computed {actual:08x}): the file is damaged"),
        });
    }
    let major = u16::from_le_bytes([bytes[8], bytes[9]]);
    let minor = u16::from_le_bytes([bytes[10], bytes[11]]);
    if major != MAJOR {
        return Err(LoadError {
            offset: 8,
            message: format!(
                "format version {major}.{minor} is not supported; this runtime reads {MAJOR}.x"
            ),
        });
    }
    let mut header = Reader {
        bytes,
        at: 16,
        base: 0,
    };
    let count = header.count(12)?;
    let mut sections: Vec<(u32, &[u8], usize)> = Vec::with_capacity(count);
    for _ in 0..count {
        let at = header.at;
        let (kind, offset, length) = (
            header.u32()?,
            header.u32()? as usize,
            header.u32()? as usize,
        );
        let body = bytes
            .get(offset..offset.saturating_add(length))
            .ok_or(LoadError {
                offset: at,
                message: format!("section {kind} lies outside the file"),
            })?;
        if sections.iter().any(|(k, _, _)| *k == kind) {
            return Err(LoadError {
                offset: at,
                message: format!("section {kind} appears twice"),
            });
        }
        sections.push((kind, body, offset));
    }
    let section = |kind: u32, name: &str| -> Result<Reader> {
        sections
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map(|(_, body, offset)| Reader {
                bytes: body,
                at: 0,
                base: *offset,
            })
            .ok_or_else(|| whole(format!("the {name} section is missing")))
    };
    let mut program = Program::default();
    let mut r = section(SECTION_STRINGS, "strings")?;
    program.strings = r.list()?;
    r.done("strings")?;
    let mut r = section(SECTION_CONSTANTS, "constants")?;
    program.constants = r.list()?;
    r.done("constants")?;
    let mut r = section(SECTION_TYPES, "types")?;
    program.types = r.list()?;
    r.done("types")?;
    let mut r = section(SECTION_EVENTS, "events")?;
    program.events = r.list()?;
    program.profile = r.u32()?;
    program.profile_defaults = r.list()?;
    r.done("events")?;
    let mut r = section(SECTION_TEMPLATES, "templates")?;
    program.templates = r.list()?;
    r.done("templates")?;
    let mut r = section(SECTION_CAPS, "caps")?;
    program.caps = r.list()?;
    r.done("caps")?;
    let mut r = section(SECTION_HISTORY, "history")?;
    program.history = r.list()?;
    r.done("history")?;
    let mut r = section(SECTION_BLOCKS, "blocks")?;
    program.blocks = r.list()?;
    r.done("blocks")?;
    let mut r = section(SECTION_JOURNEYS, "journeys")?;
    program.journeys = r.list()?;
    r.done("journeys")?;
    program.code = section(SECTION_CODE, "code")?.bytes.to_vec();
    // Absent from files of format 1.0, whose sends then have no argument types.
    if let Ok(mut r) = section(SECTION_SEND_TYPES, "send argument types") {
        for send in program.journeys.iter_mut().flat_map(|j| &mut j.sends) {
            let at = r.base + r.at;
            send.arg_types = r.list()?;
            if send.arg_types.len() != send.args.len() {
                return Err(LoadError {
                    offset: at,
                    message: format!(
                        "a send has {} arguments but {} argument types",
                        send.args.len(),
                        send.arg_types.len()
                    ),
                });
            }
        }
        r.done("send argument types")?;
    }
    if let Ok(mut r) = section(SECTION_DEBUG, "debug") {
        let files = r.list()?;
        let lines = r.list()?;
        r.done("debug")?;
        program.debug = Some(DebugInfo { files, lines });
    }
    Ok(program)
}

/// The file without its debug section (source positions).
pub fn strip_debug(program: &Program) -> Vec<u8> {
    let mut stripped = program.clone();
    stripped.debug = None;
    write(&stripped)
}
