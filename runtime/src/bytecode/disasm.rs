//! `Program` → readable text: tables, then every block with offsets, mnemonics, operands
//! resolved to names and values, and source lines when the debug section is present.

use std::fmt::Write;

use super::opcode::{decode, Opcode};
use super::types::*;
use super::*;

/// Formats milliseconds in the language's duration syntax.
pub fn duration(ms: i64) -> String {
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let mut rest = ms / 1000;
    if rest == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    if rest < 0 {
        out.push('-');
        rest = -rest;
    }
    for (unit, size) in [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3600),
        ("m", 60),
        ("s", 1),
    ] {
        if rest >= size {
            let _ = write!(out, "{}{unit}", rest / size);
            rest %= size;
        }
    }
    out
}

fn minute(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

struct Names<'p> {
    p: &'p Program,
}

impl Names<'_> {
    fn s(&self, i: u32) -> String {
        if i == NONE {
            "-".into()
        } else {
            self.p.string(i).to_string()
        }
    }

    fn ty(&self, id: u32) -> String {
        match id {
            BOOL => "bool".into(),
            INT => "int".into(),
            FLOAT => "float".into(),
            STRING => "string".into(),
            TIMESTAMP => "timestamp".into(),
            DURATION => "duration".into(),
            NONE => "-".into(),
            _ => match self.p.type_desc(id) {
                Some(TypeDesc::Enum(values)) => {
                    let v: Vec<String> =
                        values.iter().map(|v| format!("{:?}", self.s(*v))).collect();
                    v.join("|")
                }
                Some(TypeDesc::List(item)) => format!("list<{}>", self.ty(*item)),
                Some(TypeDesc::Optional(inner)) => format!("{}?", self.ty(*inner)),
                Some(TypeDesc::Record(fields)) => format!("record#{id}({} fields)", fields.len()),
                None => format!("type#{id}"),
            },
        }
    }

    fn event(&self, e: u32) -> String {
        self.p
            .events
            .get(e as usize)
            .map_or_else(|| format!("event#{e}"), |d| self.s(d.name))
    }

    fn block(&self, b: u32) -> String {
        if b == NONE {
            "-".into()
        } else {
            format!("b{b}")
        }
    }

    fn constant(&self, k: u32) -> String {
        match self.p.constants.get(k as usize) {
            Some(Constant::Int(v)) => v.to_string(),
            Some(Constant::Float(v)) => format!("{v:?}"),
            Some(Constant::String(s)) => format!("{:?}", self.s(*s)),
            Some(Constant::Bool(v)) => v.to_string(),
            Some(Constant::Duration(v)) => duration(*v),
            Some(Constant::Timestamp(v)) => format!("@{v}ms"),
            Some(Constant::List(items)) => {
                let items: Vec<String> = items.iter().map(|i| self.constant(*i)).collect();
                format!("[{}]", items.join(", "))
            }
            None => format!("const#{k}"),
        }
    }

    fn field(&self, record: u32, f: u32) -> String {
        self.p
            .record_fields(record)
            .and_then(|fields| fields.get(f as usize))
            .map_or_else(|| format!("#{f}"), |field| self.s(field.name))
    }

    fn captures(&self, event: u32, captures: &[Capture]) -> String {
        let record = self.p.events.get(event as usize).map_or(NONE, |e| e.record);
        let parts: Vec<String> = captures
            .iter()
            .map(|c| format!("{}→s{}", self.field(record, u32::from(c.field)), c.slot))
            .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!(" capture {}", parts.join(" "))
        }
    }
}

fn target(t: u32) -> String {
    if t == NONE {
        "end(timeout)".into()
    } else {
        format!("{t:04}")
    }
}

/// The whole program as text. Deterministic: the same program always prints the same text.
pub fn disassemble(p: &Program) -> String {
    let n = Names { p };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "; journey bytecode {MAJOR}.{MINOR}: {} journeys, {} blocks, {} bytes of code, {} strings, {} constants",
        p.journeys.len(),
        p.blocks.len(),
        p.code.len(),
        p.strings.len(),
        p.constants.len()
    );
    for (i, e) in p.events.iter().enumerate() {
        let fields: Vec<String> = p
            .record_fields(e.record)
            .unwrap_or(&[])
            .iter()
            .map(|f| format!("{}: {}", n.s(f.name), n.ty(f.ty)))
            .collect();
        let _ = writeln!(
            out,
            "event {i} {} (\"{}\") {{ {} }}",
            n.s(e.name),
            n.s(e.wire_name),
            fields.join(", ")
        );
    }
    if p.profile != NONE {
        let fields: Vec<String> = p
            .record_fields(p.profile)
            .unwrap_or(&[])
            .iter()
            .map(|f| format!("{}: {}", n.s(f.name), n.ty(f.ty)))
            .collect();
        let _ = writeln!(out, "profile {{ {} }}", fields.join(", "));
        for (field, constant) in &p.profile_defaults {
            let _ = writeln!(
                out,
                "  default {} = {}",
                n.field(p.profile, *field),
                n.constant(*constant)
            );
        }
    }
    for (i, t) in p.templates.iter().enumerate() {
        let _ = writeln!(
            out,
            "template {i} {}: {} {}",
            n.s(t.name),
            t.channel.name(),
            n.ty(t.params)
        );
    }
    for cap in &p.caps {
        let scope = cap.channel.map_or("all", Channel::name);
        let _ = writeln!(
            out,
            "cap {scope} {} per {}",
            cap.limit,
            duration(cap.window_ms)
        );
    }
    for (i, q) in p.history.iter().enumerate() {
        let window = match q.window {
            Window::None => String::new(),
            Window::Within(ms) => format!(" within {}", duration(ms)),
            Window::SinceEntry => " since entry".into(),
        };
        let record = p.events.get(q.event as usize).map_or(NONE, |e| e.record);
        let field = if q.field == NONE {
            String::new()
        } else {
            format!(".{}", n.field(record, q.field))
        };
        let _ = writeln!(
            out,
            "history q{i} {}{field} filter {}{window}",
            n.event(q.event),
            n.block(q.filter)
        );
    }
    for (j, journey) in p.journeys.iter().enumerate() {
        let _ = writeln!(out, "\njourney {j} {}", n.s(journey.name));
        let entry = match &journey.entry {
            Entry::On {
                event,
                filter,
                unless,
            } => {
                let unless = unless.as_ref().map_or(String::new(), |u| {
                    format!(
                        " unless {} filter {} within {}",
                        n.event(u.event),
                        n.block(u.filter),
                        duration(u.within_ms)
                    )
                });
                format!(
                    "on {} filter {}{unless}{}",
                    n.event(*event),
                    n.block(*filter),
                    n.captures(*event, &journey.entry_captures)
                )
            }
            Entry::EveryDay { minute: m } => format!("every day at {}", minute(*m)),
            Entry::EveryWeekday { weekday, minute: m } => {
                let day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                    .get(*weekday as usize)
                    .unwrap_or(&"?");
                format!("every {day} at {}", minute(*m))
            }
            Entry::Every { period_ms } => format!("every {}", duration(*period_ms)),
            Entry::At { timestamp_ms } => format!("at @{timestamp_ms}ms"),
            Entry::When { block } => format!("when {}", n.block(*block)),
            Entry::Manual => "manual".into(),
        };
        let _ = writeln!(out, "  entry {entry}");
        let reentry = match journey.reentry {
            Reentry::Once => "once".into(),
            Reentry::Always => "always".into(),
            Reentry::After(ms) => format!("after {}", duration(ms)),
            Reentry::MaxPer { max, per_ms } => format!("max {max} per {}", duration(per_ms)),
        };
        let _ = writeln!(
            out,
            "  audience {}  reentry {reentry}  correlate {}  timezone {}",
            n.block(journey.audience),
            n.block(journey.correlate),
            n.block(journey.timezone)
        );
        if !journey.audience_needs.is_empty() {
            let needs: Vec<String> = journey.audience_needs.iter().map(|e| n.event(*e)).collect();
            let _ = writeln!(out, "  audience needs one of: {}", needs.join(", "));
        }
        for (event, window_ms) in &journey.audience_blocked_by {
            let _ = writeln!(
                out,
                "  audience false while {} within {}",
                n.event(*event),
                duration(*window_ms)
            );
        }
        for (kind, triggers) in [("goal", &journey.goals), ("exit", &journey.exits)] {
            for t in triggers {
                let on = t.event.map_or_else(
                    || format!("when {}", n.block(t.block)),
                    |e| format!("on {} filter {}", n.event(e), n.block(t.block)),
                );
                let _ = writeln!(out, "  {kind} {}: {on}", n.s(t.name));
            }
        }
        if let Some(ms) = journey.timeout_ms {
            let run = match super::lifetime::longest_run(p, journey) {
                Some(run) if run < ms => format!("body ends within {}: not armed", duration(run)),
                Some(run) => format!("body can run {}: armed", duration(run)),
                None => "body has no bound: armed".to_string(),
            };
            let _ = writeln!(out, "  timeout {} ({run})", duration(ms));
        }
        if let Some(q) = journey.quiet {
            let mode = if q.skip { "skip" } else { "defer" };
            let _ = writeln!(
                out,
                "  quiet hours {}..{} {mode}",
                minute(q.start_minute),
                minute(q.end_minute)
            );
        }
        let slots: Vec<String> = journey
            .slots
            .iter()
            .enumerate()
            .map(|(i, t)| format!("s{i}: {}", n.ty(*t)))
            .collect();
        let _ = writeln!(
            out,
            "  slots [{}]  body {}",
            slots.join(", "),
            n.block(journey.body)
        );
        let steps: Vec<String> = journey
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{i}:{}", n.s(s.name)))
            .collect();
        let _ = writeln!(out, "  steps {}", steps.join(" "));
        for (i, w) in journey.waits.iter().enumerate() {
            let what = match &w.kind {
                WaitKind::Event {
                    event,
                    filter,
                    since_entry,
                    captures,
                } => format!(
                    "for {} filter {}{}{}",
                    n.event(*event),
                    n.block(*filter),
                    if *since_entry { " since entry" } else { "" },
                    n.captures(*event, captures)
                ),
                WaitKind::Condition { block } => format!("until {}", n.block(*block)),
            };
            let within = w
                .within_ms
                .map_or(String::new(), |ms| format!(" within {}", duration(ms)));
            let _ = writeln!(
                out,
                "  wait w{i} {what}{within} timeout→{}",
                target(w.timeout_target)
            );
        }
        for (i, w) in journey.wait_anys.iter().enumerate() {
            let arms: Vec<String> = w
                .arms
                .iter()
                .map(|a| {
                    format!(
                        "{} filter {}{}→{}",
                        n.event(a.event),
                        n.block(a.filter),
                        n.captures(a.event, &a.captures),
                        target(a.target)
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "  wait-any a{i} within {} [{}] timeout→{}",
                duration(w.within_ms),
                arms.join("; "),
                target(w.timeout_target)
            );
        }
        for (i, s) in journey.sends.iter().enumerate() {
            let to = if s.template == NONE {
                format!("{} {:?}", s.channel.name(), n.s(s.id))
            } else {
                let name = p
                    .templates
                    .get(s.template as usize)
                    .map_or(NONE, |t| t.name);
                format!("{} ({})", n.s(name), s.channel.name())
            };
            // `name: type` (format 1.1), or the name alone (1.0).
            let args: Vec<String> = s
                .args
                .iter()
                .enumerate()
                .map(|(i, a)| match s.arg_types.get(i) {
                    Some(ty) => format!("{}: {}", n.s(*a), n.ty(*ty)),
                    None => n.s(*a),
                })
                .collect();
            let transactional = if s.transactional {
                " transactional"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  send x{i} {to} args [{}]{transactional}",
                args.join(", ")
            );
        }
        for (i, arms) in journey.splits.iter().enumerate() {
            let arms: Vec<String> = arms
                .iter()
                .map(|a| {
                    format!(
                        "{} {}.{}%→{}",
                        n.s(a.name),
                        a.tenths / 10,
                        a.tenths % 10,
                        target(a.target)
                    )
                })
                .collect();
            let _ = writeln!(out, "  split p{i} [{}]", arms.join(", "));
        }
    }
    for (i, block) in p.blocks.iter().enumerate() {
        let what = match block.kind {
            BlockKind::Body { journey } => {
                format!(
                    "body of {}",
                    p.journeys
                        .get(journey as usize)
                        .map_or("?".into(), |j| n.s(j.name))
                )
            }
            BlockKind::Expression { result, event, .. } => {
                let over = if event == NONE {
                    String::new()
                } else {
                    format!(" over {}", n.event(event))
                };
                format!("expression → {}{over}", n.ty(result))
            }
        };
        let _ = writeln!(out, "\nb{i}: {what}");
        disassemble_block(p, &n, block, &mut out);
    }
    out
}

fn disassemble_block(p: &Program, n: &Names, block: &Block, out: &mut String) {
    let journey = match block.kind {
        BlockKind::Body { journey } | BlockKind::Expression { journey, .. } => {
            p.journeys.get(journey as usize)
        }
    };
    let event_record = match block.kind {
        BlockKind::Expression { event, .. } => {
            p.events.get(event as usize).map_or(NONE, |e| e.record)
        }
        BlockKind::Body { .. } => NONE,
    };
    let end = block.offset + block.length;
    let mut pc = block.offset;
    let mut last_line: Option<(u16, u32)> = None;
    while pc < end {
        let Ok(ins) = decode(&p.code, pc, end) else {
            let _ = writeln!(out, "  {pc:04}  <undecodable>");
            return;
        };
        let [a, b] = ins.operands;
        use Opcode::*;
        let operands = match ins.opcode {
            Const | Wait => n.constant(a),
            LoadEvent => n.field(event_record, a),
            LoadProfile | SetProfile | AddProfile | RemoveProfile => {
                format!("profile.{}", n.field(p.profile, a))
            }
            LoadSlot => format!("s{a}"),
            GetField | MakeList => a.to_string(),
            Add | Sub | Mul | Div | Neg | Lt | Le | Gt | Ge => [
                "int",
                "float",
                "duration",
                "timestamp,duration",
                "timestamp,timestamp",
                "duration,float",
                "string",
                "timestamp",
            ]
            .get(a as usize)
            .map_or_else(|| format!("kind#{a}"), |k| k.to_string()),
            Count | Did | Last | Sum => format!("q{a}"),
            Jump | JumpIfFalse => format!("{a:04}"),
            Step => journey
                .and_then(|j| j.steps.get(a as usize))
                .map_or(a.to_string(), |s| format!("{a} ({})", n.s(s.name))),
            WaitUntilTime => format!("{}{}", minute(a as u16), if b == 1 { " local" } else { "" }),
            WaitFor => format!("w{a}"),
            WaitAny => format!("a{a}"),
            Send => format!("x{a}"),
            Split => format!("p{a}"),
            Start => p
                .journeys
                .get(a as usize)
                .map_or(a.to_string(), |j| n.s(j.name)),
            _ => String::new(),
        };
        let source = p
            .debug
            .as_ref()
            .and_then(|d| {
                let at = d.lines.partition_point(|(offset, _, _)| *offset <= pc);
                at.checked_sub(1)
                    .and_then(|i| d.lines.get(i))
                    .map(|(_, file, line)| (*file, *line, d))
            })
            .filter(|(file, line, _)| last_line != Some((*file, *line)))
            .map(|(file, line, d)| {
                last_line = Some((file, line));
                let name = d.files.get(file as usize).map_or("?".into(), |f| n.s(*f));
                format!("; {name}:{line}")
            })
            .unwrap_or_default();
        let text = format!("{} {operands}", ins.opcode.name());
        let _ = writeln!(out, "  {pc:04}  {:<36}{source}", text.trim_end()).map(|_| ());
        pc = ins.next;
    }
}
