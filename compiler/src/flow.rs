//! Checked journeys (AST + timing facts) → their flow as a diagram, Mermaid or Graphviz dot
//! (`journeyc graph`).
//!
//! One node per step (labelled with its name, what it does and when it can be reached after
//! entry), a decision node per `if`, `branch` and `split` with an edge per arm (its condition or
//! weight), waits with their durations and an edge for each way they end, and end nodes: the
//! journey completing, `exit` steps, and the goals, exits and timeout that can end it at any
//! time (dashed edges from the entry).

use std::collections::HashMap;
use std::fmt::Write;

use crate::ast::{self, Entry, SendTarget, SettingKind, Step, StepKind, TriggerCondition};
use crate::check::journey_time::format_duration;
use crate::check::{JourneyFacts, Program};
use crate::source::{FileId, SourceFile, Span};
use crate::workspace::Workspace;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The entry.
    Start,
    Step,
    Decision,
    /// A way for an instance to end.
    End,
}

#[derive(Debug)]
struct Node {
    /// Lines of the label.
    label: Vec<String>,
    shape: Shape,
}

impl Node {
    /// The label's lines, each escaped, joined by `separator`.
    fn label(&self, escape: impl Fn(&str) -> String, separator: &str) -> String {
        self.label
            .iter()
            .map(|l| escape(l))
            .collect::<Vec<_>>()
            .join(separator)
    }
}

#[derive(Debug)]
struct Edge {
    from: usize,
    to: usize,
    label: Option<String>,
    /// Not a step-to-step move: an end that can come at any time.
    dashed: bool,
}

/// The flow of one journey.
#[derive(Debug)]
pub struct Graph {
    pub journey: String,
    nodes: Vec<Node>,
    edges: Vec<Edge>,
}

/// Where control can go on from: a node and the label of the edge that leaves it.
type Ends = Vec<(usize, Option<String>)>;

/// The graphs of the journeys declared in `files`, in file then source order (only the one
/// called `only`, when given). An error names the journeys there are instead.
pub fn graphs(
    workspace: &Workspace,
    program: &Program,
    files: &[FileId],
    only: Option<&str>,
) -> Result<Vec<Graph>, String> {
    let journeys: Vec<(FileId, &ast::Journey)> = files
        .iter()
        .flat_map(|file| workspace.modules.iter().filter(move |m| m.file == *file))
        .flat_map(|m| m.items.iter().map(move |item| (m.file, item)))
        .filter_map(|(file, item)| match item {
            ast::Item::Journey(j) => Some((file, j)),
            _ => None,
        })
        .collect();
    let chosen: Vec<(FileId, &ast::Journey)> = journeys
        .iter()
        .copied()
        .filter(|(_, j)| only.is_none_or(|name| j.name.name == name))
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = journeys.iter().map(|(_, j)| j.name.name.as_str()).collect();
        return Err(match only {
            _ if names.is_empty() => "the files declare no journey".to_string(),
            Some(name) => format!(
                "there is no journey `{name}`; there are {}",
                names.join(", ")
            ),
            None => "the files declare no journey".to_string(),
        });
    }
    Ok(chosen
        .into_iter()
        .filter_map(|(file, journey)| {
            let facts = program
                .journeys
                .iter()
                .find(|f| f.file == file && f.name == journey.name.name)?;
            Some(journey_graph(workspace.sources.get(file), journey, facts))
        })
        .collect())
}

/// Builds the graph of `journey`, whose source is `file` and timing facts `facts`.
pub fn journey_graph(file: &SourceFile, journey: &ast::Journey, facts: &JourneyFacts) -> Graph {
    let mut builder = Builder {
        file,
        timing: facts
            .steps
            .iter()
            .map(|s| (s.span, (s.name.clone(), s.earliest, s.latest)))
            .collect(),
        graph: Graph {
            journey: journey.name.name.clone(),
            nodes: Vec::new(),
            edges: Vec::new(),
        },
    };
    let entry = builder.node(vec![entry_label(file, journey)], Shape::Start);
    // Goals, exits and the timeout can end an instance whatever step it is at.
    for setting in &journey.settings {
        let (kind, trigger) = match &setting.kind {
            SettingKind::Goal(t) => ("goal", t),
            SettingKind::Exit(t) => ("exit", t),
            _ => continue,
        };
        let on = match &trigger.condition {
            TriggerCondition::Event { event, filter } => match filter {
                Some(f) => format!("{} where {}", event.name, builder.text(f.span)),
                None => event.name.clone(),
            },
            TriggerCondition::When(condition) => format!("when {}", builder.text(condition.span)),
        };
        let end = builder.node(
            vec![format!("{kind} {}", trigger.name.name), on],
            Shape::End,
        );
        builder.edge(entry, end, Some("any time".into()), true);
    }
    if let Some(timeout) = journey.timeout() {
        let end = builder.node(
            vec![format!("timeout {}", format_duration(timeout.seconds))],
            Shape::End,
        );
        builder.edge(entry, end, Some("any time".into()), true);
    }
    let ends = builder.steps(&journey.steps, vec![(entry, None)]);
    if !ends.is_empty() {
        let completed = builder.node(vec!["completed".into()], Shape::End);
        builder.join(ends, completed);
    }
    builder.graph
}

/// The entry setting in words.
fn entry_label(file: &SourceFile, journey: &ast::Journey) -> String {
    let text = |span: Span| clip(file.slice(span));
    match journey.entry() {
        Some(Entry::On {
            event,
            filter,
            unless,
            ..
        }) => {
            let mut label = format!("entry on {}", event.name);
            if let Some(f) = filter {
                let _ = write!(label, " where {}", text(f.span));
            }
            if let Some(u) = unless {
                let _ = write!(
                    label,
                    " unless {} within {}",
                    u.event.name,
                    format_duration(u.within.seconds)
                );
            }
            label
        }
        Some(Entry::EveryDay { at }) => {
            format!("entry every day at {:02}:{:02}", at.hour, at.minute)
        }
        Some(Entry::EveryWeekday {
            weekday_span, at, ..
        }) => format!(
            "entry every {} at {:02}:{:02}",
            file.slice(*weekday_span),
            at.hour,
            at.minute
        ),
        Some(Entry::Every(d)) => format!("entry every {}", format_duration(d.seconds)),
        Some(Entry::At(t)) => format!("entry at {}", text(t.span)),
        Some(Entry::When(e)) => format!("entry when {}", text(e.span)),
        Some(Entry::Manual) | None => "entry manual".into(),
    }
}

/// Long source text shortened for a label.
fn clip(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    const MAX: usize = 60;
    if flat.chars().count() <= MAX {
        flat
    } else {
        let cut: String = flat.chars().take(MAX - 1).collect();
        format!("{cut}…")
    }
}

struct Builder<'a> {
    file: &'a SourceFile,
    /// By step span: its name and earliest / latest time after entry.
    timing: HashMap<Span, (String, u64, Option<u64>)>,
    graph: Graph,
}

impl Builder<'_> {
    fn text(&self, span: Span) -> String {
        clip(self.file.slice(span))
    }

    fn node(&mut self, label: Vec<String>, shape: Shape) -> usize {
        self.graph.nodes.push(Node { label, shape });
        self.graph.nodes.len() - 1
    }

    fn edge(&mut self, from: usize, to: usize, label: Option<String>, dashed: bool) {
        self.graph.edges.push(Edge {
            from,
            to,
            label,
            dashed,
        });
    }

    fn join(&mut self, ends: Ends, to: usize) {
        for (from, label) in ends {
            self.edge(from, to, label, false);
        }
    }

    /// A block's steps after `ends`; returns where control goes on from after the last.
    fn steps(&mut self, steps: &[Step], mut ends: Ends) -> Ends {
        for step in steps {
            ends = self.step(step, ends);
        }
        ends
    }

    /// A block that may be absent: without one, control goes on with `label`.
    fn arm(&mut self, from: usize, label: String, block: Option<&ast::Block>) -> Ends {
        match block {
            Some(block) => self.steps(&block.steps, vec![(from, Some(label))]),
            None => vec![(from, Some(label))],
        }
    }

    /// The ways a `wait for` / `wait until` ends (LANGUAGE.md §6): with blocks, arrival runs the
    /// first and the deadline the `timeout` block, each then going on; with none, arrival goes
    /// on and the deadline ends the instance (outcome `timeout`); without `within`, only the
    /// journey's timeout ends the wait.
    fn wait_ends(
        &mut self,
        node: usize,
        arrived: String,
        within: Option<ast::DurationLit>,
        then: &Option<ast::Block>,
        on_timeout: &Option<ast::Block>,
    ) -> Ends {
        let mut out = self.arm(node, arrived, then.as_ref());
        match within {
            None => {}
            Some(within) if then.is_none() && on_timeout.is_none() => {
                let end = self.node(vec!["timeout".into()], Shape::End);
                let label = format!("after {}", format_duration(within.seconds));
                self.edge(node, end, Some(label), false);
            }
            Some(_) => out.extend(self.arm(node, "timeout".into(), on_timeout.as_ref())),
        }
        out
    }

    fn step(&mut self, step: &Step, ends: Ends) -> Ends {
        let (what, shape) = self.describe(&step.kind);
        let mut label = vec![];
        if let Some((name, earliest, latest)) = self.timing.get(&step.span) {
            label.push(format!("{name} · {}", when(*earliest, *latest)));
        }
        label.push(what);
        let node = self.node(label, shape);
        self.join(ends, node);
        match &step.kind {
            StepKind::WaitFor {
                event,
                within,
                then,
                on_timeout,
                ..
            } => self.wait_ends(node, event.name.clone(), *within, then, on_timeout),
            StepKind::WaitUntil {
                within,
                then,
                on_timeout,
                ..
            } => self.wait_ends(node, "reached".into(), *within, then, on_timeout),
            StepKind::WaitAny {
                arms, on_timeout, ..
            } => {
                let mut out = Vec::new();
                for arm in arms {
                    let label = match &arm.filter {
                        Some(f) => format!("{} where {}", arm.event.name, self.text(f.span)),
                        None => arm.event.name.clone(),
                    };
                    out.extend(self.steps(&arm.block.steps, vec![(node, Some(label))]));
                }
                out.extend(self.arm(node, "timeout".into(), on_timeout.as_ref()));
                out
            }
            StepKind::If { arms, otherwise } => {
                let mut out = Vec::new();
                for (condition, block) in arms {
                    let label = self.text(condition.span);
                    out.extend(self.steps(&block.steps, vec![(node, Some(label))]));
                }
                out.extend(self.arm(node, "else".into(), otherwise.as_ref()));
                out
            }
            StepKind::Branch { arms, otherwise } => {
                let mut out = Vec::new();
                for arm in arms {
                    let label = format!("{}: {}", arm.name.name, self.text(arm.condition.span));
                    out.extend(self.steps(&arm.block.steps, vec![(node, Some(label))]));
                }
                out.extend(self.arm(node, "else".into(), otherwise.as_ref()));
                out
            }
            StepKind::Split { arms } => {
                let mut out = Vec::new();
                for arm in arms {
                    let label = format!("{} {}", arm.name.name, percent(arm.weight.tenths));
                    out.extend(self.steps(&arm.block.steps, vec![(node, Some(label))]));
                }
                out
            }
            // `exit` ends the instance here: nothing follows.
            StepKind::Exit => Vec::new(),
            _ => vec![(node, None)],
        }
    }

    /// What a step does, in a line, and its node's shape.
    fn describe(&self, kind: &StepKind) -> (String, Shape) {
        let text = |span: Span| self.text(span);
        let line = match kind {
            StepKind::Wait(d) => format!("wait {}", format_duration(d.seconds)),
            StepKind::WaitUntilTime { time, local } => format!(
                "wait until {:02}:{:02}{}",
                time.hour,
                time.minute,
                if *local { " local" } else { "" }
            ),
            StepKind::WaitUntil { target, within, .. } => {
                format!("wait until {}{}", text(target.span), within_text(*within))
            }
            StepKind::WaitFor {
                event,
                filter,
                within,
                since_entry,
                ..
            } => format!(
                "wait for {}{}{}{}",
                event.name,
                filter
                    .as_ref()
                    .map(|f| format!(" where {}", text(f.span)))
                    .unwrap_or_default(),
                within_text(*within),
                if *since_entry { " since entry" } else { "" }
            ),
            StepKind::WaitAny { within, .. } => {
                format!("wait within {}", format_duration(within.seconds))
            }
            StepKind::Send(send) => {
                let target = match &send.target {
                    SendTarget::Channel { channel, id, .. } => {
                        format!("{} \"{}\"", channel.as_str(), id.value)
                    }
                    SendTarget::Template(name) => name.name.clone(),
                };
                let transactional = if send.transactional {
                    " (transactional)"
                } else {
                    ""
                };
                format!("send {target}{transactional}")
            }
            StepKind::Set { field, value } => {
                format!("set profile.{} = {}", field.name, text(value.span))
            }
            StepKind::Add { value, field } => {
                format!("add {} to profile.{}", text(value.span), field.name)
            }
            StepKind::Remove { value, field } => {
                format!("remove {} from profile.{}", text(value.span), field.name)
            }
            StepKind::If { .. } => return ("if".into(), Shape::Decision),
            StepKind::Branch { .. } => return ("branch".into(), Shape::Decision),
            StepKind::Split { .. } => return ("split".into(), Shape::Decision),
            StepKind::Start(journey) => format!("start {}", journey.name),
            StepKind::Exit => return ("exit".into(), Shape::End),
        };
        (line, Shape::Step)
    }
}

fn within_text(within: Option<ast::DurationLit>) -> String {
    within
        .map(|d| format!(" within {}", format_duration(d.seconds)))
        .unwrap_or_default()
}

fn percent(tenths: u32) -> String {
    if tenths.is_multiple_of(10) {
        format!("{}%", tenths / 10)
    } else {
        format!("{}.{}%", tenths / 10, tenths % 10)
    }
}

/// When a step can be reached after entry: `+1d`, or `+1h .. +1d`, or `+1h ..` unbounded.
fn when(earliest: u64, latest: Option<u64>) -> String {
    let at = |s: u64| format!("+{}", format_duration(s));
    match latest {
        Some(latest) if latest == earliest => at(earliest),
        Some(latest) => format!("{} .. {}", at(earliest), at(latest)),
        None => format!("{} ..", at(earliest)),
    }
}

// ---------------------------------------------------------------- rendering

/// Renders graphs as one diagram: a Mermaid flowchart or a dot digraph, one subgraph per
/// journey when there are several.
pub fn render(graphs: &[Graph], format: GraphFormat) -> String {
    match format {
        GraphFormat::Mermaid => mermaid(graphs),
        GraphFormat::Dot => dot(graphs),
    }
}

fn mermaid(graphs: &[Graph]) -> String {
    // Mermaid labels are quoted; quotes and angle brackets become entities.
    let escape = |s: &str| {
        s.replace('"', "#quot;")
            .replace('<', "#lt;")
            .replace('>', "#gt;")
    };
    let mut out = String::from("flowchart TD\n");
    let nested = graphs.len() > 1;
    for (g, graph) in graphs.iter().enumerate() {
        let indent = if nested { "    " } else { "  " };
        if nested {
            let _ = writeln!(out, "  subgraph j{g}[\"{}\"]", escape(&graph.journey));
        }
        for (n, node) in graph.nodes.iter().enumerate() {
            let label = node.label(escape, "<br/>");
            let (open, close) = match node.shape {
                Shape::Start | Shape::End => ("([", "])"),
                Shape::Step => ("[", "]"),
                Shape::Decision => ("{", "}"),
            };
            let _ = writeln!(out, "{indent}j{g}n{n}{open}\"{label}\"{close}");
        }
        for edge in &graph.edges {
            let arrow = if edge.dashed { "-.->" } else { "-->" };
            let label = edge
                .label
                .as_ref()
                .map(|l| format!("|\"{}\"|", escape(l)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{indent}j{g}n{} {arrow}{label} j{g}n{}",
                edge.from, edge.to
            );
        }
        if nested {
            out.push_str("  end\n");
        }
    }
    out
}

fn dot(graphs: &[Graph]) -> String {
    let escape = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::from(
        "digraph journeys {\n  node [fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n",
    );
    for (g, graph) in graphs.iter().enumerate() {
        let _ = writeln!(
            out,
            "  subgraph cluster_{g} {{\n    label=\"{}\";",
            escape(&graph.journey)
        );
        for (n, node) in graph.nodes.iter().enumerate() {
            let label = node.label(escape, "\\n");
            let shape = match node.shape {
                Shape::Start => "oval",
                Shape::Step => "box",
                Shape::Decision => "diamond",
                Shape::End => "doubleoctagon",
            };
            let _ = writeln!(out, "    j{g}n{n} [shape={shape}, label=\"{label}\"];");
        }
        for edge in &graph.edges {
            let mut attributes = Vec::new();
            if let Some(label) = &edge.label {
                attributes.push(format!("label=\"{}\"", escape(label)));
            }
            if edge.dashed {
                attributes.push("style=dashed".into());
            }
            let attributes = if attributes.is_empty() {
                String::new()
            } else {
                format!(" [{}]", attributes.join(", "))
            };
            let _ = writeln!(
                out,
                "    j{g}n{} -> j{g}n{}{attributes};",
                edge.from, edge.to
            );
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    out
}
