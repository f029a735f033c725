//! Journeys → checked settings and steps, with each step's time window after entry and the
//! static guarantees of LANGUAGE.md §10: termination, reachability in time, split weights,
//! steps after `exit`, correlation, sends per instance, unused bindings.

use std::collections::BTreeMap;
use std::str::FromStr;

use super::expr::{Binding, Scope, SinceEntry};
use super::types::Type;
use super::Checker;
use crate::ast::{
    self, BinaryOp, Block, Channel, Entry, Expr, ExprKind, QuietMode, SendTarget, SettingKind,
    Step, StepKind, TriggerCondition,
};
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::source::{FileId, Span};
use crate::suggest::did_you_mean;

/// How long `wait until HH:MM` may sleep: a day, plus the hour a fall-back night adds.
const TIME_OF_DAY_MAX_WAIT: u64 = 25 * 3600;

/// A time after entry: `None` is unbounded.
pub type Time = Option<u64>;

/// What the checker proved about one step.
#[derive(Debug, Clone)]
pub struct StepFacts {
    /// The label, or `<kind>_<n>` with n counting the journey's steps from 1 in source order.
    pub name: String,
    pub span: Span,
    /// The earliest and latest time after entry at which the step can be reached.
    pub earliest: u64,
    pub latest: Time,
}

/// What the checker proved about one journey.
#[derive(Debug, Clone)]
pub struct JourneyFacts {
    pub name: String,
    pub file: FileId,
    pub span: Span,
    /// `entry manual`: only `start` enters it.
    pub manual: bool,
    pub steps: Vec<StepFacts>,
    /// The most time an instance can live (`None`: no bound could be proven).
    pub max_lifetime: Time,
    /// The most sends one instance can make, per channel.
    pub max_sends: BTreeMap<Channel, u32>,
    /// The most sends one instance can make in all (at most the sum of the above: the channels'
    /// maxima may lie on different paths).
    pub max_total_sends: u32,
}

/// The state of a path through the steps.
#[derive(Debug, Clone)]
struct Point {
    earliest: u64,
    latest: Time,
    /// The waits that add up to `earliest`: (step name, seconds).
    waits: Vec<(String, u64)>,
    sends: BTreeMap<Channel, u32>,
    total_sends: u32,
    /// An unreachable-after-timeout warning was given on this path.
    warned_timeout: bool,
}

impl Point {
    fn after(&self, name: &str, earliest: u64, latest: Time) -> Point {
        let mut next = self.clone();
        next.earliest = self.earliest.saturating_add(earliest);
        next.latest = match (self.latest, latest) {
            (Some(a), Some(b)) => Some(a.saturating_add(b)),
            _ => None,
        };
        if earliest > 0 {
            next.waits.push((name.to_string(), earliest));
        }
        next
    }

    /// Joins two paths that continue at the same step.
    fn join(self, other: Point) -> Point {
        let mut sends = self.sends.clone();
        for (channel, n) in &other.sends {
            let entry = sends.entry(*channel).or_insert(0);
            *entry = (*entry).max(*n);
        }
        let latest = match (self.latest, other.latest) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        let (earliest, waits) = if other.earliest < self.earliest {
            (other.earliest, other.waits)
        } else {
            (self.earliest, self.waits)
        };
        Point {
            earliest,
            latest,
            waits,
            sends,
            total_sends: self.total_sends.max(other.total_sends),
            warned_timeout: self.warned_timeout && other.warned_timeout,
        }
    }
}

fn join_all(points: impl IntoIterator<Item = Option<Point>>) -> Option<Point> {
    points.into_iter().flatten().reduce(Point::join)
}

/// Journey-wide state while its steps are walked.
struct Walk<'j> {
    journey: &'j ast::Journey,
    timeout: Option<u64>,
    quiet_defer: Option<u64>,
    step_counter: usize,
    labels: Vec<(String, Span)>,
    steps: Vec<StepFacts>,
    /// Where instances end: the latest time of each ending.
    ends: Vec<Time>,
    /// The most sends of any ending path.
    sends: BTreeMap<Channel, u32>,
    total_sends: u32,
}

impl Walk<'_> {
    fn end(&mut self, point: &Point) {
        self.ends.push(point.latest);
        self.total_sends = self.total_sends.max(point.total_sends);
        for (channel, n) in &point.sends {
            let entry = self.sends.entry(*channel).or_insert(0);
            *entry = (*entry).max(*n);
        }
    }
}

/// A duration in the language's syntax (`1d12h`).
pub fn format_duration(seconds: u64) -> String {
    journey_runtime::bytecode::disasm::duration(
        i64::try_from(seconds)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000),
    )
}

impl Checker<'_> {
    pub(crate) fn journey(&mut self, file: FileId, journey: &ast::Journey) -> JourneyFacts {
        let mut scope = Scope::new(file);
        let mut trigger_names: Vec<(String, Span)> = Vec::new();
        let mut entry_binding = false;

        // The entry comes first: its binding is visible in every other setting.
        if let Some(Entry::On {
            event,
            binding,
            filter,
            unless,
        }) = journey.entry()
        {
            let fields = self.event_fields(event, file);
            if let (Some(binding), Some(fields)) = (binding, &fields) {
                scope.bindings.push(Binding {
                    name: binding.name.clone(),
                    fields: fields.clone(),
                    span: binding.span,
                    used: false,
                });
                entry_binding = true;
            }
            if let Some(filter) = filter {
                self.filter(filter, &event.name, &mut scope);
            }
            if let Some(unless) = unless {
                self.event_fields(&unless.event, file);
                if let Some(filter) = &unless.filter {
                    self.filter(filter, &unless.event.name, &mut scope);
                }
            }
        }

        let mut quiet_defer = None;
        for setting in &journey.settings {
            match &setting.kind {
                SettingKind::Entry(Entry::When(expr)) => {
                    self.expect(
                        expr,
                        &mut scope,
                        &Type::Timestamp.optional(),
                        "`entry when`",
                    );
                }
                SettingKind::Audience(expr) => {
                    let mut audience = scope.clone();
                    audience.since_entry = SinceEntry::Forbidden("`audience`");
                    self.condition(expr, &mut audience, "`audience`");
                    self.merge_used(&mut scope, &audience);
                }
                SettingKind::Reentry(ast::Reentry::MaxPer { max: 0, per }) => self.error(
                    Diagnostic::new(Code::TypeMismatch, "`reentry max 0` lets nobody enter")
                        .primary(file, per.span.to(setting.span), "use at least 1"),
                ),
                SettingKind::Correlate(expr) => {
                    self.expect(expr, &mut scope, &Type::String, "`correlate`");
                }
                SettingKind::Goal(trigger) | SettingKind::Exit(trigger) => {
                    let message = format!("`{}` names two goals or exits", trigger.name.name);
                    self.unique(&mut trigger_names, &trigger.name, message, file);
                    match &trigger.condition {
                        TriggerCondition::Event { event, filter } => {
                            self.event_fields(event, file);
                            if let Some(filter) = filter {
                                self.filter(filter, &event.name, &mut scope);
                            }
                        }
                        TriggerCondition::When(expr) => {
                            self.condition(expr, &mut scope, "a `when` condition")
                        }
                    }
                }
                SettingKind::Timezone(expr) => {
                    self.expect(expr, &mut scope, &Type::String, "`timezone`");
                    self.check_zone_literals(expr, file);
                }
                SettingKind::QuietHours(quiet) => {
                    let start =
                        u64::from(quiet.start.hour) * 3600 + u64::from(quiet.start.minute) * 60;
                    let end = u64::from(quiet.end.hour) * 3600 + u64::from(quiet.end.minute) * 60;
                    if start == end {
                        self.error(
                            Diagnostic::new(
                                Code::TypeMismatch,
                                "quiet hours that start when they end are empty",
                            )
                            .primary(
                                file,
                                setting.span,
                                "an empty window",
                            ),
                        );
                    }
                    if quiet.mode == QuietMode::Defer {
                        quiet_defer = Some((end + 86_400 - start) % 86_400);
                    }
                }
                _ => {}
            }
        }

        let mut walk = Walk {
            journey,
            timeout: journey.timeout().map(|d| d.seconds),
            quiet_defer,
            step_counter: 0,
            labels: Vec::new(),
            steps: Vec::new(),
            ends: Vec::new(),
            sends: BTreeMap::new(),
            total_sends: 0,
        };
        let start = Point {
            earliest: 0,
            latest: Some(0),
            waits: Vec::new(),
            sends: BTreeMap::new(),
            total_sends: 0,
            warned_timeout: false,
        };
        if let Some(end) = self.steps(&journey.steps, start, &mut scope, &mut walk) {
            walk.end(&end);
        }
        if entry_binding {
            self.report_unused_bindings(&scope.bindings[..1], file);
        }
        self.check_correlation(file, journey);

        let longest = walk
            .ends
            .iter()
            .copied()
            .try_fold(0u64, |acc, t| t.map(|t| acc.max(t)));
        let max_lifetime = match (walk.timeout, longest) {
            (Some(timeout), Some(longest)) => Some(timeout.min(longest)),
            (Some(timeout), None) => Some(timeout),
            (None, longest) => longest,
        };
        JourneyFacts {
            name: journey.name.name.clone(),
            file,
            span: journey.name.span,
            manual: matches!(journey.entry(), Some(Entry::Manual)),
            steps: walk.steps,
            max_lifetime,
            max_sends: walk.sends,
            max_total_sends: walk.total_sends,
        }
    }

    /// A `where` filter: bare names are fields of `event`.
    fn filter(&mut self, filter: &Expr, event: &str, scope: &mut Scope) {
        let mut inner = scope.clone();
        inner.matched = self
            .program
            .events
            .get(event)
            .map(|e| (e.name.clone(), e.fields.clone()));
        if inner.matched.is_none() {
            // The unknown event was reported; check the filter's other names only.
            let _ = self.expr(filter, &mut inner);
        } else {
            self.condition(filter, &mut inner, "a `where` filter");
        }
        self.merge_used(scope, &inner);
    }

    /// String literals a `timezone` can evaluate to must be IANA zone names.
    fn check_zone_literals(&mut self, expr: &Expr, file: FileId) {
        match &expr.kind {
            ExprKind::String(zone) if chrono_tz::Tz::from_str(zone).is_err() => {
                let mut diagnostic = Diagnostic::new(
                    Code::InvalidTimezone,
                    format!("\"{zone}\" is not an IANA time zone"),
                )
                .primary(file, expr.span, "unknown zone")
                .note("zones are IANA names such as \"Europe/Istanbul\" or \"America/New_York\"");
                let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
                if let Some(suggestion) = did_you_mean(zone, names) {
                    diagnostic = diagnostic.help(format!("did you mean \"{suggestion}\"?"));
                }
                self.error(diagnostic);
            }
            ExprKind::Binary {
                op: BinaryOp::Coalesce,
                lhs,
                rhs,
            } => {
                self.check_zone_literals(lhs, file);
                self.check_zone_literals(rhs, file);
            }
            _ => {}
        }
    }

    fn report_unused_bindings(&mut self, bindings: &[Binding], file: FileId) {
        for binding in bindings.iter().filter(|b| !b.used) {
            self.error(
                Diagnostic::new(
                    Code::UnusedBinding,
                    format!("the binding `{}` is never read", binding.name),
                )
                .primary(file, binding.span, "bound here")
                .help("remove `as ...`, or read its fields"),
            );
        }
    }

    /// Walks a block from `point`; returns where it continues, or `None` if every path ended.
    fn steps(
        &mut self,
        steps: &[Step],
        mut point: Point,
        scope: &mut Scope,
        walk: &mut Walk,
    ) -> Option<Point> {
        let scope_depth = scope.bindings.len();
        let mut reachable = true;
        let mut reported_unreachable = false;
        for step in steps {
            if !reachable {
                if !reported_unreachable {
                    reported_unreachable = true;
                    self.error(
                    Diagnostic::new(Code::UnreachableAfterExit, "this step can never run")
                        .primary(scope.file, step.span, "unreachable")
                        .note("every path before it ends the instance (`exit`, or a wait whose deadline ends it)"),
                    );
                }
                // Check the rest for errors, but report unreachability once.
                let mut ghost = point.clone();
                ghost.warned_timeout = true;
                let _ = self.step(step, ghost, scope, walk);
                continue;
            }
            match self.step(step, point.clone(), scope, walk) {
                Some(next) => point = next,
                None => reachable = false,
            }
        }
        let bound_here: Vec<Binding> = scope.bindings.drain(scope_depth..).collect();
        self.report_unused_bindings(&bound_here, scope.file);
        reachable.then_some(point)
    }

    fn step(
        &mut self,
        step: &Step,
        mut point: Point,
        scope: &mut Scope,
        walk: &mut Walk,
    ) -> Option<Point> {
        let file = scope.file;
        walk.step_counter += 1;
        let name = match &step.label {
            Some(label) => {
                let message = format!("the label `{}` is used twice", label.name);
                self.unique(&mut walk.labels, label, message, file);
                label.name.clone()
            }
            None => format!("{}_{}", step.kind.kind_name(), walk.step_counter),
        };
        // No instance lives past its timeout, so a reachable step is reached by then.
        let latest = match (point.latest, walk.timeout) {
            (latest, Some(timeout)) if point.earliest <= timeout => {
                Some(latest.map_or(timeout, |l| l.min(timeout)))
            }
            (latest, _) => latest,
        };
        walk.steps.push(StepFacts {
            name: name.clone(),
            span: step.span,
            earliest: point.earliest,
            latest,
        });
        if let Some(timeout) = walk.timeout {
            if point.earliest > timeout && !point.warned_timeout {
                point.warned_timeout = true;
                let waits: Vec<String> = point
                    .waits
                    .iter()
                    .map(|(step, seconds)| format!("`{step}` ({})", format_duration(*seconds)))
                    .collect();
                self.error(
                    Diagnostic::new(
                        Code::UnreachableAfterTimeout,
                        format!(
                            "this step is reached {} after entry at the earliest, past the journey's `timeout {}`",
                            format_duration(point.earliest),
                            format_duration(timeout)
                        ),
                    )
                    .primary(file, step.span, "never reached before the timeout")
                    .note(format!("the waits before it add up: {}", waits.join(" + ")))
                    .help("shorten the waits or lengthen the `timeout`"),
                );
            }
        }
        let has_timeout = walk.timeout.is_some();
        match &step.kind {
            StepKind::Wait(duration) => {
                Some(point.after(&name, duration.seconds, Some(duration.seconds)))
            }
            StepKind::WaitUntilTime { .. } => {
                Some(point.after(&name, 0, Some(TIME_OF_DAY_MAX_WAIT)))
            }
            StepKind::WaitUntil {
                target,
                within,
                then,
                on_timeout,
            } => {
                let ty = self.expr(target, scope);
                match ty.required() {
                    Type::Timestamp => {
                        if within.is_some() || then.is_some() || on_timeout.is_some() {
                            self.error(
                                Diagnostic::new(
                                    Code::InvalidWait,
                                    "`wait until <timestamp>` takes no `within` or blocks",
                                )
                                .primary(file, step.span, "a wait for a moment")
                                .help("`within` and blocks belong to `wait until <condition>`"),
                            );
                        }
                        Some(point.after(&name, 0, None))
                    }
                    Type::Bool | Type::Error => {
                        if ty.is_optional() {
                            self.condition(target, scope, "`wait until`");
                        }
                        self.require_within(
                            *within,
                            has_timeout,
                            file,
                            step.span,
                            target.span.end,
                            "wait until <condition>",
                        );
                        self.wait_blocks(
                            &name,
                            point,
                            within.map(|w| w.seconds),
                            then.as_ref(),
                            on_timeout.as_ref(),
                            scope,
                            walk,
                            None,
                            step.span,
                        )
                    }
                    other => {
                        let other = other.clone();
                        self.error(
                            Diagnostic::new(Code::TypeMismatch, format!("`wait until` needs a timestamp or a condition, found `{other}`"))
                                .primary(file, target.span, format!("this is `{other}`")),
                        );
                        Some(point)
                    }
                }
            }
            StepKind::WaitFor {
                event,
                binding,
                filter,
                within,
                then,
                on_timeout,
                ..
            } => {
                let fields = self.event_fields(event, file);
                if let Some(filter) = filter {
                    self.filter(filter, &event.name, scope);
                }
                let header_end = [
                    Some(event.span.end),
                    binding.as_ref().map(|b| b.span.end),
                    filter.as_ref().map(|f| f.span.end),
                ]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or(event.span.end);
                self.require_within(
                    *within,
                    has_timeout,
                    file,
                    step.span,
                    header_end,
                    "wait for",
                );
                let bound = match (binding, fields) {
                    (Some(b), Some(fields)) => Some(Binding {
                        name: b.name.clone(),
                        fields,
                        span: b.span,
                        used: false,
                    }),
                    _ => None,
                };
                if then.is_none() && on_timeout.is_none() {
                    // Arrival continues after the step, where the binding is visible; the deadline ends the instance.
                    if let Some(bound) = bound {
                        scope.bindings.push(bound);
                    }
                    let deadline = within.map(|w| w.seconds);
                    if let Some(d) = deadline {
                        let ended = point.after(&name, d, Some(d));
                        walk.end(&ended);
                    }
                    return Some(point.after(&name, 0, deadline));
                }
                self.wait_blocks(
                    &name,
                    point,
                    within.map(|w| w.seconds),
                    then.as_ref(),
                    on_timeout.as_ref(),
                    scope,
                    walk,
                    bound,
                    step.span,
                )
            }
            StepKind::WaitAny {
                within,
                arms,
                on_timeout,
            } => {
                let d = within.seconds;
                let mut ends = Vec::new();
                for arm in arms {
                    let fields = self.event_fields(&arm.event, file);
                    if let Some(filter) = &arm.filter {
                        self.filter(filter, &arm.event.name, scope);
                    }
                    let depth = scope.bindings.len();
                    if let (Some(b), Some(fields)) = (&arm.binding, fields) {
                        scope.bindings.push(Binding {
                            name: b.name.clone(),
                            fields,
                            span: b.span,
                            used: false,
                        });
                    }
                    ends.push(self.steps(
                        &arm.block.steps,
                        point.after(&name, 0, Some(d)),
                        scope,
                        walk,
                    ));
                    let bound: Vec<Binding> = scope.bindings.drain(depth..).collect();
                    self.report_unused_bindings(&bound, file);
                }
                let deadline = point.after(&name, d, Some(d));
                ends.push(match on_timeout {
                    Some(block) => self.steps(&block.steps, deadline, scope, walk),
                    None => Some(deadline),
                });
                join_all(ends)
            }
            StepKind::Send(send) => {
                let channel = match &send.target {
                    SendTarget::Channel { channel, .. } => {
                        if let Some(args) = &send.args {
                            for entry in &args.entries {
                                self.expr(&entry.value, scope);
                            }
                        }
                        Some(*channel)
                    }
                    SendTarget::Template(template) => {
                        self.send_template(template, send.args.as_ref(), scope)
                    }
                };
                if let Some(channel) = channel {
                    *point.sends.entry(channel).or_insert(0) += 1;
                    point.total_sends += 1;
                }
                match walk.quiet_defer {
                    Some(window) if !send.transactional => {
                        Some(point.after(&name, 0, Some(window)))
                    }
                    _ => Some(point),
                }
            }
            StepKind::Set { field, value } => {
                if let Some(ty) = self.profile_field(field, file) {
                    self.expect(value, scope, &ty, &format!("`profile.{}`", field.name));
                }
                Some(point)
            }
            StepKind::Add { value, field } | StepKind::Remove { value, field } => {
                if let Some(ty) = self.profile_field(field, file) {
                    match ty.required() {
                        Type::List(item) => {
                            let item = (**item).clone();
                            self.expect(
                                value,
                                scope,
                                &item,
                                &format!("an item of `profile.{}`", field.name),
                            );
                        }
                        _ => {
                            self.expr(value, scope);
                            self.error(
                                Diagnostic::new(
                                    Code::TypeMismatch,
                                    format!("`profile.{}` is a `{ty}`, not a list", field.name),
                                )
                                .primary(
                                    file,
                                    field.span,
                                    "`add` and `remove` work on lists",
                                ),
                            );
                        }
                    }
                }
                Some(point)
            }
            StepKind::If { arms, otherwise } => {
                for (condition, _) in arms {
                    self.condition(condition, scope, "an `if` condition");
                }
                let conditions: Vec<(&Expr, Span)> =
                    arms.iter().map(|(c, _)| (c, c.span)).collect();
                self.check_arms(&conditions, file);
                let mut ends: Vec<Option<Point>> = arms
                    .iter()
                    .map(|(_, block)| self.steps(&block.steps, point.clone(), scope, walk))
                    .collect();
                ends.push(self.optional_block(otherwise.as_ref(), point, scope, walk));
                join_all(ends)
            }
            StepKind::Branch { arms, otherwise } => {
                let mut names: Vec<(String, Span)> = Vec::new();
                for arm in arms {
                    self.unique(
                        &mut names,
                        &arm.name,
                        format!("two arms are named `{}`", arm.name.name),
                        file,
                    );
                    self.condition(&arm.condition, scope, "a branch condition");
                }
                let conditions: Vec<(&Expr, Span)> =
                    arms.iter().map(|a| (&a.condition, a.name.span)).collect();
                self.check_arms(&conditions, file);
                let mut ends: Vec<Option<Point>> = arms
                    .iter()
                    .map(|arm| self.steps(&arm.block.steps, point.clone(), scope, walk))
                    .collect();
                ends.push(self.optional_block(otherwise.as_ref(), point, scope, walk));
                join_all(ends)
            }
            StepKind::Split { arms } => {
                let mut names: Vec<(String, Span)> = Vec::new();
                let mut total = 0;
                for arm in arms {
                    self.unique(
                        &mut names,
                        &arm.name,
                        format!("two arms are named `{}`", arm.name.name),
                        file,
                    );
                    total += arm.weight.tenths;
                }
                if total != 1000 {
                    let weights: Vec<String> = arms
                        .iter()
                        .map(|a| format!("{}%", f64::from(a.weight.tenths) / 10.0))
                        .collect();
                    self.error(
                        Diagnostic::new(
                            Code::SplitWeights,
                            format!(
                                "the split's weights add up to {}%, not 100%",
                                f64::from(total) / 10.0
                            ),
                        )
                        .primary(
                            file,
                            step.span,
                            format!("{} = {}%", weights.join(" + "), f64::from(total) / 10.0),
                        )
                        .help("make the weights sum to exactly 100% (an empty arm is a holdout)"),
                    );
                }
                let ends: Vec<Option<Point>> = arms
                    .iter()
                    .map(|arm| self.steps(&arm.block.steps, point.clone(), scope, walk))
                    .collect();
                join_all(ends)
            }
            StepKind::Start(target) => {
                match self.journeys.get(&target.name).copied() {
                    None => {
                        let known: Vec<String> = self.journeys.keys().cloned().collect();
                        self.unknown(
                            Code::UnknownJourney,
                            "journey",
                            target,
                            file,
                            known.iter().map(String::as_str),
                        );
                    }
                    Some((target_file, target_journey)) => {
                        if !matches!(target_journey.entry(), Some(Entry::Manual)) {
                            self.error(
                                Diagnostic::new(
                                    Code::StartNotManual,
                                    format!("`start` needs a journey with `entry manual`; `{}` has another entry", target.name),
                                )
                                .primary(file, target.span, "started here")
                                .secondary(target_file, target_journey.name.span, "declared here")
                                .help("give the started journey `entry manual`"),
                            );
                        }
                        self.starts.push((
                            walk.journey.name.name.clone(),
                            target.name.clone(),
                            file,
                            target.span,
                        ));
                    }
                }
                Some(point)
            }
            StepKind::Exit => {
                walk.end(&point);
                None
            }
        }
    }

    fn optional_block(
        &mut self,
        block: Option<&Block>,
        point: Point,
        scope: &mut Scope,
        walk: &mut Walk,
    ) -> Option<Point> {
        match block {
            Some(block) => self.steps(&block.steps, point, scope, walk),
            None => Some(point),
        }
    }

    /// Reports `name` if `seen` has it already (at both places), else records it.
    fn unique(
        &mut self,
        seen: &mut Vec<(String, Span)>,
        name: &ast::Ident,
        message: String,
        file: FileId,
    ) {
        match seen.iter().find(|(n, _)| *n == name.name) {
            Some((_, first)) => {
                let first = *first;
                self.error(
                    Diagnostic::new(Code::DuplicateName, message)
                        .primary(file, name.span, "named again here")
                        .secondary(file, first, "first named here"),
                );
            }
            None => seen.push((name.name.clone(), name.span)),
        }
    }

    /// The blocks of `wait for` / `wait until <condition>`: the first runs on arrival within
    /// the window, the `timeout` block at the deadline; both continue after the step.
    #[allow(clippy::too_many_arguments)]
    fn wait_blocks(
        &mut self,
        name: &str,
        point: Point,
        within: Option<u64>,
        then: Option<&Block>,
        on_timeout: Option<&Block>,
        scope: &mut Scope,
        walk: &mut Walk,
        binding: Option<Binding>,
        span: Span,
    ) -> Option<Point> {
        let arrival = point.after(name, 0, within);
        let depth = scope.bindings.len();
        if let Some(binding) = binding {
            if then.is_some() {
                scope.bindings.push(binding);
            } else {
                // Only a `timeout` block: the binding is never visible.
                self.report_unused_bindings(&[binding], scope.file);
            }
        }
        let after_arrival = match then {
            Some(block) => self.steps(&block.steps, arrival, scope, walk),
            None => Some(arrival),
        };
        let bound: Vec<Binding> = scope.bindings.drain(depth..).collect();
        self.report_unused_bindings(&bound, scope.file);
        let after_deadline = match (within, on_timeout) {
            (Some(d), Some(block)) => {
                self.steps(&block.steps, point.after(name, d, Some(d)), scope, walk)
            }
            (None, Some(_)) => {
                self.error(
                    Diagnostic::new(Code::InvalidWait, "a `timeout { }` block needs a `within`")
                        .primary(scope.file, span, "no deadline for the timeout block")
                        .help("add `within D` to say when the timeout block runs"),
                );
                None
            }
            (Some(d), None) if then.is_some() => Some(point.after(name, d, Some(d))),
            (Some(d), None) => {
                let ended = point.after(name, d, Some(d));
                walk.end(&ended);
                None
            }
            (None, None) => None,
        };
        join_all([after_arrival, after_deadline])
    }

    /// E0401 unless the wait has a `within` or the journey a `timeout`; `insert_at` is where a
    /// `within` would go (the fix offered).
    fn require_within(
        &mut self,
        within: Option<ast::DurationLit>,
        has_timeout: bool,
        file: FileId,
        span: Span,
        insert_at: u32,
        what: &str,
    ) {
        if within.is_none() && !has_timeout {
            self.error(
                Diagnostic::new(
                    Code::MissingWithin,
                    format!("this `{what}` may wait forever"),
                )
                .primary(file, span, "no `within`, and the journey has no `timeout`")
                .help("add `within D` to the wait, or a `timeout D` to the journey")
                .fix(
                    "add `within 1d`",
                    file,
                    Span {
                        start: insert_at,
                        end: insert_at,
                    },
                    " within 1d",
                ),
            );
        }
    }

    fn profile_field(&mut self, field: &ast::Ident, file: FileId) -> Option<Type> {
        let profile = self.program.profile.clone();
        match profile.field(&field.name) {
            Some(found) => Some(found.ty.clone()),
            None => {
                self.unknown(
                    Code::UnknownField,
                    "profile field",
                    field,
                    file,
                    profile.names(),
                );
                None
            }
        }
    }

    /// `send template { args }`: every required parameter, no unknown one, each of its type.
    pub(crate) fn send_template(
        &mut self,
        template: &ast::Ident,
        args: Option<&ast::Record>,
        scope: &mut Scope,
    ) -> Option<Channel> {
        let file = scope.file;
        let Some(info) = self.program.templates.get(&template.name).cloned() else {
            let known: Vec<String> = self.program.templates.keys().cloned().collect();
            self.unknown(
                Code::UnknownTemplate,
                "template",
                template,
                file,
                known.iter().map(String::as_str),
            );
            return None;
        };
        if !self.used_templates.contains(&info.name) {
            self.used_templates.push(info.name.clone());
        }
        let what = format!("the template `{}`", info.name);
        match args {
            Some(args) => self.record(args, &info.params, scope, &what, &|f| !f.ty.is_optional()),
            None => {
                let required: Vec<String> = info
                    .params
                    .fields
                    .iter()
                    .filter(|f| !f.ty.is_optional())
                    .map(|f| format!("`{}: {}`", f.name, f.ty))
                    .collect();
                if !required.is_empty() {
                    self.error(
                        Diagnostic::new(
                            Code::MissingArgument,
                            format!("{what} is missing {}", required.join(", ")),
                        )
                        .primary(file, template.span, "no arguments")
                        .help(format!("pass them: `send {} {{ ... }}`", info.name)),
                    );
                }
            }
        }
        Some(info.channel)
    }

    /// A correlated journey should compare its key in its event goals, exits or waits, or every
    /// instance of the user reacts to one event.
    fn check_correlation(&mut self, file: FileId, journey: &ast::Journey) {
        let Some((key, key_span)) = journey.settings.iter().find_map(|s| match &s.kind {
            SettingKind::Correlate(expr) => Some((expr, s.span)),
            _ => None,
        }) else {
            return;
        };
        let mut filters: Vec<Option<&Expr>> = Vec::new();
        for setting in &journey.settings {
            if let SettingKind::Goal(trigger) | SettingKind::Exit(trigger) = &setting.kind {
                if let TriggerCondition::Event { filter, .. } = &trigger.condition {
                    filters.push(filter.as_ref());
                }
            }
        }
        collect_wait_filters(&journey.steps, &mut filters);
        if filters.is_empty() || filters.iter().flatten().any(|f| compares_with(f, key)) {
            return;
        }
        self.error(
            Diagnostic::new(
                Code::UncorrelatedTrigger,
                "no goal, exit or wait of this correlated journey compares the correlation key",
            )
            .primary(file, key_span, "instances are keyed by this")
            .note(
                "one event would then end or advance every instance of the user, whatever its key",
            )
            .help("compare the key in a filter, e.g. `goal done: E where id == <key>`"),
        );
    }
}

fn collect_wait_filters<'a>(steps: &'a [Step], out: &mut Vec<Option<&'a Expr>>) {
    for step in steps {
        match &step.kind {
            StepKind::WaitFor {
                filter,
                then,
                on_timeout,
                ..
            } => {
                out.push(filter.as_ref());
                for block in [then, on_timeout].into_iter().flatten() {
                    collect_wait_filters(&block.steps, out);
                }
            }
            StepKind::WaitAny {
                arms, on_timeout, ..
            } => {
                for arm in arms {
                    out.push(arm.filter.as_ref());
                    collect_wait_filters(&arm.block.steps, out);
                }
                if let Some(block) = on_timeout {
                    collect_wait_filters(&block.steps, out);
                }
            }
            StepKind::WaitUntil {
                then, on_timeout, ..
            } => {
                for block in [then, on_timeout].into_iter().flatten() {
                    collect_wait_filters(&block.steps, out);
                }
            }
            StepKind::If { arms, otherwise } => {
                for (_, block) in arms {
                    collect_wait_filters(&block.steps, out);
                }
                if let Some(block) = otherwise {
                    collect_wait_filters(&block.steps, out);
                }
            }
            StepKind::Branch { arms, otherwise } => {
                for arm in arms {
                    collect_wait_filters(&arm.block.steps, out);
                }
                if let Some(block) = otherwise {
                    collect_wait_filters(&block.steps, out);
                }
            }
            StepKind::Split { arms } => {
                for arm in arms {
                    collect_wait_filters(&arm.block.steps, out);
                }
            }
            _ => {}
        }
    }
}

/// Whether `filter` contains `x == key` or `key == x` (with `key` written the same way).
fn compares_with(filter: &Expr, key: &Expr) -> bool {
    match &filter.kind {
        ExprKind::Binary {
            op: BinaryOp::Eq,
            lhs,
            rhs,
        } => same(lhs, key) || same(rhs, key),
        ExprKind::Binary { lhs, rhs, .. } => compares_with(lhs, key) || compares_with(rhs, key),
        ExprKind::Unary { operand, .. } => compares_with(operand, key),
        _ => false,
    }
}

/// Structural equality, ignoring spans.
pub(crate) fn same(a: &Expr, b: &Expr) -> bool {
    match (&a.kind, &b.kind) {
        (ExprKind::Name(x), ExprKind::Name(y)) => x.name == y.name,
        (ExprKind::Field { base: a, field: x }, ExprKind::Field { base: b, field: y }) => {
            x.name == y.name && same(a, b)
        }
        (ExprKind::Profile, ExprKind::Profile)
        | (ExprKind::Journey, ExprKind::Journey)
        | (ExprKind::Now, ExprKind::Now) => true,
        (ExprKind::Int(x), ExprKind::Int(y)) => x == y,
        (ExprKind::String(x), ExprKind::String(y)) => x == y,
        (ExprKind::Bool(x), ExprKind::Bool(y)) => x == y,
        (
            ExprKind::Call {
                function: f,
                args: x,
            },
            ExprKind::Call {
                function: g,
                args: y,
            },
        ) => f.name == g.name && x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (
            ExprKind::Binary {
                op: o,
                lhs: a1,
                rhs: a2,
            },
            ExprKind::Binary {
                op: p,
                lhs: b1,
                rhs: b2,
            },
        ) => o == p && same(a1, b1) && same(a2, b2),
        _ => false,
    }
}
