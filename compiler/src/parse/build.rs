//! pest parse tree of one chunk → AST items, with diagnostics for what the grammar accepts but
//! the language does not (bad literals, chained comparisons, misplaced or repeated settings).

use pest::iterators::Pair;
use pest::Parser;

use super::errors;
use super::{JourneyParser, Rule, MAX_EXPRESSION_DEPTH, MAX_EXPRESSION_NODES};
use crate::ast::*;
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::source::{FileId, Span};
use crate::suggest::did_you_mean;

pub fn parse_chunk(
    file: FileId,
    text: &str,
    start: usize,
    end: usize,
    items: &mut Vec<Item>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let chunk_text = &text[start..end];
    match JourneyParser::parse(Rule::chunk, chunk_text) {
        Ok(mut pairs) => {
            let mut builder = Builder {
                file,
                text,
                offset: start,
                diagnostics,
                expression_nodes: 0,
            };
            let Some(chunk) = pairs.next() else { return };
            for pair in chunk.into_inner() {
                if let Some(item) = builder.item(pair) {
                    items.push(item);
                }
            }
        }
        Err(_) => {
            // Parse again with pest's detailed attempts, which name the punctuation that was
            // expected; they slow parsing, so only failed chunks pay for them.
            let error = errors::detailed_error(chunk_text);
            diagnostics.push(errors::syntax_error(file, text, start, end, &error));
        }
    }
}

struct Builder<'a> {
    file: FileId,
    /// The whole file: doc comments are read from it.
    text: &'a str,
    /// Where the chunk starts in the file.
    offset: usize,
    diagnostics: &'a mut Vec<Diagnostic>,
    /// Nodes built for the current top-level expression.
    expression_nodes: usize,
}

type P<'i> = Pair<'i, Rule>;

fn kids(pair: P<'_>) -> Vec<P<'_>> {
    pair.into_inner().collect()
}

fn find<'i>(kids: &[P<'i>], rule: Rule) -> Option<P<'i>> {
    kids.iter().find(|p| p.as_rule() == rule).cloned()
}

fn has(kids: &[P<'_>], rule: Rule) -> bool {
    kids.iter().any(|p| p.as_rule() == rule)
}

impl<'a> Builder<'a> {
    /// The pair's span without trailing whitespace and comments. (pest includes the trivia it
    /// skipped before an optional part that then did not match.)
    fn span(&self, pair: &P<'_>) -> Span {
        let span = pair.as_span();
        let start = self.offset + span.start();
        Span::new(
            start,
            trim_trivia(self.text, start, self.offset + span.end()),
        )
    }

    fn error(
        &mut self,
        code: Code,
        message: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) {
        self.diagnostics
            .push(Diagnostic::new(code, message).primary(self.file, span, label));
    }

    /// The `///` lines directly above the text at `pair`.
    fn doc(&self, pair: &P<'_>) -> Doc {
        let start = self.offset + pair.as_span().start();
        let before = &self.text[..start];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        if !before[line_start..].trim().is_empty() {
            return None;
        }
        let mut lines = Vec::new();
        for line in before[..line_start].lines().rev() {
            let trimmed = line.trim();
            match trimmed.strip_prefix("///") {
                Some(rest) if !rest.starts_with('/') => lines.push(
                    rest.strip_prefix(' ')
                        .unwrap_or(rest)
                        .trim_end()
                        .to_string(),
                ),
                _ => break,
            }
        }
        if lines.is_empty() {
            return None;
        }
        lines.reverse();
        Some(lines.join("\n"))
    }

    fn ident(&self, pair: &P<'_>) -> Ident {
        Ident {
            name: pair.as_str().to_string(),
            span: self.span(pair),
        }
    }

    /// The first child of `rule`, which the grammar guarantees is there.
    fn ident_in(&self, kids: &[P<'_>], rule: Rule) -> Ident {
        match find(kids, rule) {
            Some(pair) => self.ident(&pair),
            None => Ident {
                name: String::new(),
                span: Span::default(),
            },
        }
    }

    // ------------------------------------------------------------ items

    fn item(&mut self, pair: P<'_>) -> Option<Item> {
        let span = self.span(&pair);
        let doc = self.doc(&pair);
        let rule = pair.as_rule();
        let kids = kids(pair);
        Some(match rule {
            Rule::import_decl => Item::Import(Import {
                kind: if has(&kids, Rule::k_schema) {
                    ImportKind::Schema
                } else {
                    ImportKind::Journey
                },
                path: self.string(&find(&kids, Rule::string)?),
                span,
            }),
            Rule::event_decl => Item::Event(EventDecl {
                doc,
                wire_name: find(&kids, Rule::wire_name)
                    .and_then(|w| w.into_inner().find(|p| p.as_rule() == Rule::string))
                    .map(|s| self.string(&s)),
                name: self.ident_in(&kids, Rule::ident),
                fields: self.record_type(find(&kids, Rule::record_type)?),
                span,
            }),
            Rule::profile_decl => Item::Profile(ProfileDecl {
                doc,
                fields: self.record_type(find(&kids, Rule::record_type)?),
                span,
            }),
            Rule::template_decl => {
                let channel_pair = find(&kids, Rule::channel)?;
                Item::Template(TemplateDecl {
                    doc,
                    name: self.ident_in(&kids, Rule::ident),
                    channel: self.channel(&channel_pair)?,
                    channel_span: self.span(&channel_pair),
                    params: self.record_type(find(&kids, Rule::record_type)?),
                    span,
                })
            }
            Rule::segment_decl => Item::Segment(SegmentDecl {
                doc,
                name: self.ident_in(&kids, Rule::ident),
                condition: self.root_expr(find(&kids, Rule::expr)?),
                span,
            }),
            Rule::cap_decl => {
                let scope_pair = find(&kids, Rule::channel)?;
                let scope = if scope_pair.as_str() == "all" {
                    CapScope::All
                } else {
                    CapScope::Channel(self.channel(&scope_pair)?)
                };
                Item::Cap(CapDecl {
                    doc,
                    scope,
                    limit: self.int(&find(&kids, Rule::int)?)?,
                    window: self.duration(&find(&kids, Rule::duration)?)?,
                    span,
                })
            }
            Rule::journey_decl => Item::Journey(self.journey(kids, doc, span)),
            Rule::test_decl => Item::Test(TestDecl {
                doc,
                name: self.string(&find(&kids, Rule::string)?),
                journey: self.ident_in(&kids, Rule::ident),
                lines: kids
                    .into_iter()
                    .filter(|p| p.as_rule() == Rule::test_line)
                    .filter_map(|p| self.test_line(p))
                    .collect(),
                span,
            }),
            _ => return None,
        })
    }

    fn channel(&mut self, pair: &P<'_>) -> Option<Channel> {
        let word = pair.as_str();
        let channel = Channel::parse(word);
        if channel.is_none() {
            let names: Vec<&str> = Channel::ALL.iter().map(|c| c.as_str()).collect();
            let mut diagnostic =
                Diagnostic::new(Code::UnknownChannel, format!("`{word}` is not a channel"))
                    .primary(self.file, self.span(pair), "unknown channel")
                    .note(format!("the channels are {}", quoted_list(&names)));
            if let Some(suggestion) = did_you_mean(word, names.iter().copied()) {
                diagnostic = diagnostic.help(format!("did you mean `{suggestion}`?"));
            }
            self.diagnostics.push(diagnostic);
        }
        channel
    }

    fn record_type(&mut self, pair: P<'_>) -> Vec<FieldDecl> {
        pair.into_inner()
            .filter(|p| p.as_rule() == Rule::field_decl)
            .filter_map(|p| self.field_decl(p))
            .collect()
    }

    fn field_decl(&mut self, pair: P<'_>) -> Option<FieldDecl> {
        let span = self.span(&pair);
        let doc = self.doc(&pair);
        let kids = kids(pair);
        Some(FieldDecl {
            doc,
            name: self.ident_in(&kids, Rule::word),
            ty: self.type_expr(find(&kids, Rule::type_expr)?)?,
            default: match find(&kids, Rule::field_default) {
                Some(default) => Some(self.root_expr(default.into_inner().next()?)),
                None => None,
            },
            span,
        })
    }

    fn type_expr(&mut self, pair: P<'_>) -> Option<TypeExpr> {
        let span = self.span(&pair);
        let kids = kids(pair);
        let optional = has(&kids, Rule::optional_mark);
        let first = kids.first()?.clone();
        let kind = match first.as_rule() {
            Rule::enum_type => {
                TypeKind::Enum(first.into_inner().map(|s| self.string(&s)).collect())
            }
            Rule::list_type => {
                let inner = first
                    .into_inner()
                    .find(|p| p.as_rule() == Rule::type_expr)?;
                TypeKind::List(Box::new(self.type_expr(inner)?))
            }
            Rule::record_type => TypeKind::Record(self.record_type(first)),
            Rule::type_name => match first.as_str() {
                "bool" => TypeKind::Bool,
                "int" => TypeKind::Int,
                "float" => TypeKind::Float,
                "string" => TypeKind::String,
                "timestamp" => TypeKind::Timestamp,
                "duration" => TypeKind::Duration,
                other => {
                    const TYPES: [&str; 6] =
                        ["bool", "int", "float", "string", "timestamp", "duration"];
                    let mut diagnostic =
                        Diagnostic::new(Code::UnknownType, format!("`{other}` is not a type"))
                            .primary(self.file, self.span(&first), "unknown type")
                            .note(format!(
                                "the types are {}, string enums `\"a\" | \"b\"`, `list<T>`, records `{{ ... }}` and `T?` for optional",
                                quoted_list(&TYPES)
                            ));
                    if let Some(suggestion) = did_you_mean(other, TYPES) {
                        diagnostic = diagnostic.help(format!("did you mean `{suggestion}`?"));
                    }
                    self.diagnostics.push(diagnostic);
                    return None;
                }
            },
            _ => return None,
        };
        Some(TypeExpr {
            kind,
            optional,
            span,
        })
    }

    // ------------------------------------------------------------ journeys

    fn journey(&mut self, kids: Vec<P<'_>>, doc: Doc, span: Span) -> Journey {
        let name = self.ident_in(&kids, Rule::ident);
        let mut settings: Vec<Setting> = Vec::new();
        let mut steps = Vec::new();
        for pair in kids {
            match pair.as_rule() {
                Rule::setting => {
                    let Some(setting) = self.setting(pair) else {
                        continue;
                    };
                    if let Some(first_step) = steps.first() {
                        let first_step: &Step = first_step;
                        let keyword = setting.kind.keyword();
                        self.diagnostics.push(
                            Diagnostic::new(
                                Code::SettingAfterStep,
                                format!("the setting `{keyword}` comes after the first step"),
                            )
                            .primary(self.file, setting.span, "setting after a step")
                            .secondary(self.file, first_step.span, "the steps start here")
                            .help("move the setting above the first step"),
                        );
                        continue;
                    }
                    let repeatable =
                        matches!(setting.kind, SettingKind::Goal(_) | SettingKind::Exit(_));
                    let previous = settings
                        .iter()
                        .find(|s| s.kind.keyword() == setting.kind.keyword());
                    if let (false, Some(previous)) = (repeatable, previous) {
                        let keyword = setting.kind.keyword();
                        self.diagnostics.push(
                            Diagnostic::new(
                                Code::DuplicateSetting,
                                format!("the setting `{keyword}` is given twice"),
                            )
                            .primary(self.file, setting.span, "given again here")
                            .secondary(self.file, previous.span, "first given here")
                            .help("a journey takes each setting once (only `goal` and `exit` may repeat)"),
                        );
                        continue;
                    }
                    settings.push(setting);
                }
                Rule::step => {
                    if let Some(step) = self.step(pair) {
                        steps.push(step);
                    }
                }
                _ => {}
            }
        }
        if !settings
            .iter()
            .any(|s| matches!(s.kind, SettingKind::Entry(_)))
        {
            self.diagnostics.push(
                Diagnostic::new(
                    Code::MissingEntry,
                    format!("the journey `{}` has no `entry`", name.name),
                )
                .primary(self.file, name.span, "this journey never starts")
                .help("add an entry rule such as `entry on SignedUp` or `entry manual`"),
            );
        }
        Journey {
            doc,
            name,
            settings,
            steps,
            span,
        }
    }

    fn setting(&mut self, pair: P<'_>) -> Option<Setting> {
        let span = self.span(&pair);
        let doc = self.doc(&pair);
        let inner = pair.into_inner().next()?;
        let rule = inner.as_rule();
        let kids = kids(inner);
        let kind = match rule {
            Rule::title_setting => SettingKind::Title(self.string(&find(&kids, Rule::string)?)),
            Rule::description_setting => {
                SettingKind::Description(self.string(&find(&kids, Rule::string)?))
            }
            Rule::entry_setting => SettingKind::Entry(self.entry(kids.get(1)?.clone())?),
            Rule::audience_setting => {
                SettingKind::Audience(self.root_expr(find(&kids, Rule::expr)?))
            }
            Rule::correlate_setting => {
                SettingKind::Correlate(self.root_expr(find(&kids, Rule::expr)?))
            }
            Rule::timezone_setting => {
                SettingKind::Timezone(self.root_expr(find(&kids, Rule::expr)?))
            }
            Rule::reentry_setting => {
                let rule = kids.get(1)?.clone();
                SettingKind::Reentry(match rule.as_rule() {
                    Rule::k_once => Reentry::Once,
                    Rule::k_always => Reentry::Always,
                    Rule::reentry_after => {
                        Reentry::After(self.duration(&rule.into_inner().nth(1)?)?)
                    }
                    _ => {
                        let kids = self::kids(rule);
                        Reentry::MaxPer {
                            max: self.int(&find(&kids, Rule::int)?)?,
                            per: self.duration(&find(&kids, Rule::duration)?)?,
                        }
                    }
                })
            }
            Rule::goal_setting | Rule::exit_setting => {
                let trigger = Trigger {
                    name: self.ident_in(&kids, Rule::ident),
                    condition: self.trigger(find(&kids, Rule::trigger)?)?,
                };
                if rule == Rule::goal_setting {
                    SettingKind::Goal(trigger)
                } else {
                    SettingKind::Exit(trigger)
                }
            }
            Rule::timeout_setting => {
                SettingKind::Timeout(self.duration(&find(&kids, Rule::duration)?)?)
            }
            Rule::quiet_setting => {
                let times: Vec<_> = kids
                    .iter()
                    .filter(|p| p.as_rule() == Rule::time_of_day)
                    .collect();
                SettingKind::QuietHours(QuietHours {
                    start: self.time_of_day(times.first()?)?,
                    end: self.time_of_day(times.get(1)?)?,
                    mode: if has(&kids, Rule::k_skip) {
                        QuietMode::Skip
                    } else {
                        QuietMode::Defer
                    },
                })
            }
            _ => return None,
        };
        Some(Setting { doc, kind, span })
    }

    fn entry(&mut self, pair: P<'_>) -> Option<Entry> {
        let rule = pair.as_rule();
        let kids = kids(pair);
        Some(match rule {
            Rule::entry_on => Entry::On {
                event: self.ident_in(&kids, Rule::ident),
                binding: self.binding(&kids),
                filter: self.where_clause(&kids),
                unless: match find(&kids, Rule::unless_clause) {
                    Some(unless) => {
                        let span = self.span(&unless);
                        let kids = self::kids(unless);
                        Some(Box::new(Unless {
                            event: self.ident_in(&kids, Rule::ident),
                            filter: self.where_clause(&kids),
                            within: self.duration(&find(&kids, Rule::duration)?)?,
                            span,
                        }))
                    }
                    None => None,
                },
            },
            Rule::entry_every => {
                let what = kids.get(1)?.clone();
                match what.as_rule() {
                    Rule::every_day => {
                        let kids = self::kids(what);
                        Entry::EveryDay {
                            at: self.time_of_day(&find(&kids, Rule::time_of_day)?)?,
                        }
                    }
                    Rule::every_weekday => {
                        let kids = self::kids(what);
                        let weekday = find(&kids, Rule::weekday)?;
                        Entry::EveryWeekday {
                            weekday: Weekday::parse(weekday.as_str())?,
                            weekday_span: self.span(&weekday),
                            at: self.time_of_day(&find(&kids, Rule::time_of_day)?)?,
                        }
                    }
                    _ => Entry::Every(self.duration(&what)?),
                }
            }
            Rule::entry_at => Entry::At(self.timestamp(&find(&kids, Rule::timestamp)?)?),
            Rule::entry_when => Entry::When(self.root_expr(find(&kids, Rule::expr)?)),
            _ => Entry::Manual,
        })
    }

    fn trigger(&mut self, pair: P<'_>) -> Option<TriggerCondition> {
        let inner = pair.into_inner().next()?;
        let rule = inner.as_rule();
        let kids = kids(inner);
        Some(if rule == Rule::when_trigger {
            TriggerCondition::When(self.root_expr(find(&kids, Rule::expr)?))
        } else {
            TriggerCondition::Event {
                event: self.ident_in(&kids, Rule::ident),
                filter: self.where_clause(&kids),
            }
        })
    }

    fn binding(&self, kids: &[P<'_>]) -> Option<Ident> {
        let binding = find(kids, Rule::binding)?;
        let ident = binding.into_inner().find(|p| p.as_rule() == Rule::ident)?;
        Some(self.ident(&ident))
    }

    fn where_clause(&mut self, kids: &[P<'_>]) -> Option<Expr> {
        let clause = find(kids, Rule::where_clause)?;
        let expr = clause.into_inner().find(|p| p.as_rule() == Rule::expr)?;
        Some(self.root_expr(expr))
    }

    fn within(&mut self, kids: &[P<'_>]) -> Option<DurationLit> {
        let clause = find(kids, Rule::within_clause)?;
        let duration = clause
            .into_inner()
            .find(|p| p.as_rule() == Rule::duration)?;
        self.duration(&duration)
    }

    // ------------------------------------------------------------ steps

    fn block(&mut self, pair: P<'_>) -> Block {
        let span = self.span(&pair);
        Block {
            steps: pair
                .into_inner()
                .filter(|p| p.as_rule() == Rule::step)
                .filter_map(|p| self.step(p))
                .collect(),
            span,
        }
    }

    fn optional_block(&mut self, kids: &[P<'_>]) -> Option<Block> {
        find(kids, Rule::block).map(|b| self.block(b))
    }

    fn timeout_block(&mut self, kids: &[P<'_>]) -> Option<Block> {
        let timeout = find(kids, Rule::timeout_block)?;
        let block = timeout.into_inner().find(|p| p.as_rule() == Rule::block)?;
        Some(self.block(block))
    }

    fn step(&mut self, pair: P<'_>) -> Option<Step> {
        let span = self.span(&pair);
        let doc = self.doc(&pair);
        let kids = kids(pair);
        let label = find(&kids, Rule::label).map(|l| self.ident_in(&self::kids(l), Rule::ident));
        let body = kids
            .iter()
            .find(|p| p.as_rule() == Rule::step_kind)?
            .clone()
            .into_inner()
            .next()?;
        let rule = body.as_rule();
        let kids = self::kids(body);
        let kind = match rule {
            Rule::wait_step => self.wait(kids.get(1)?.clone())?,
            Rule::send_step => StepKind::Send(Send {
                target: self.send_target(&kids)?,
                args: find(&kids, Rule::record).map(|r| self.record(r)),
                transactional: has(&kids, Rule::k_transactional),
            }),
            Rule::set_step => StepKind::Set {
                field: self.profile_field(&kids)?,
                value: self.root_expr(find(&kids, Rule::expr)?),
            },
            Rule::add_step => StepKind::Add {
                value: self.root_expr(find(&kids, Rule::expr)?),
                field: self.profile_field(&kids)?,
            },
            Rule::remove_step => StepKind::Remove {
                value: self.root_expr(find(&kids, Rule::expr)?),
                field: self.profile_field(&kids)?,
            },
            Rule::if_step => {
                let mut arms = Vec::new();
                let mut otherwise = None;
                let first_condition = self.root_expr(find(&kids, Rule::expr)?);
                let first_block = self.block(find(&kids, Rule::block)?);
                arms.push((first_condition, first_block));
                for kid in kids {
                    match kid.as_rule() {
                        Rule::else_if => {
                            let kids = self::kids(kid);
                            let condition = self.root_expr(find(&kids, Rule::expr)?);
                            arms.push((condition, self.block(find(&kids, Rule::block)?)));
                        }
                        Rule::else_block => otherwise = Some(self.block(kid.into_inner().nth(1)?)),
                        _ => {}
                    }
                }
                StepKind::If { arms, otherwise }
            }
            Rule::branch_step => {
                let mut arms = Vec::new();
                let mut otherwise = None;
                for kid in kids {
                    match kid.as_rule() {
                        Rule::branch_arm => {
                            let span = self.span(&kid);
                            let kids = self::kids(kid);
                            arms.push(BranchArm {
                                name: self.ident_in(&kids, Rule::ident),
                                condition: self.root_expr(find(&kids, Rule::expr)?),
                                block: self.block(find(&kids, Rule::block)?),
                                span,
                            });
                        }
                        Rule::else_block => otherwise = Some(self.block(kid.into_inner().nth(1)?)),
                        _ => {}
                    }
                }
                StepKind::Branch { arms, otherwise }
            }
            Rule::split_step => {
                let mut arms = Vec::new();
                for kid in kids.into_iter().filter(|k| k.as_rule() == Rule::split_arm) {
                    let span = self.span(&kid);
                    let kids = self::kids(kid);
                    arms.push(SplitArm {
                        name: self.ident_in(&kids, Rule::ident),
                        weight: self.percent(&find(&kids, Rule::percent)?)?,
                        block: self.block(find(&kids, Rule::block)?),
                        span,
                    });
                }
                StepKind::Split { arms }
            }
            Rule::start_step => StepKind::Start(self.ident_in(&kids, Rule::ident)),
            _ => StepKind::Exit,
        };
        Some(Step {
            doc,
            label,
            kind,
            span,
        })
    }

    fn wait(&mut self, pair: P<'_>) -> Option<StepKind> {
        let rule = pair.as_rule();
        if rule == Rule::duration {
            return Some(StepKind::Wait(self.duration(&pair)?));
        }
        let kids = kids(pair);
        Some(match rule {
            Rule::wait_for => StepKind::WaitFor {
                event: self.ident_in(&kids, Rule::ident),
                binding: self.binding(&kids),
                filter: self.where_clause(&kids),
                within: self.within(&kids),
                since_entry: has(&kids, Rule::since_entry),
                then: self.optional_block(&kids),
                on_timeout: self.timeout_block(&kids),
            },
            Rule::wait_until => {
                let target = kids.get(1)?.clone();
                let is_time = target.as_rule() == Rule::until_time;
                let kids = self::kids(target);
                if is_time {
                    StepKind::WaitUntilTime {
                        time: self.time_of_day(&find(&kids, Rule::time_of_day)?)?,
                        local: has(&kids, Rule::k_local),
                    }
                } else {
                    StepKind::WaitUntil {
                        target: self.root_expr(find(&kids, Rule::expr)?),
                        within: self.within(&kids),
                        then: self.optional_block(&kids),
                        on_timeout: self.timeout_block(&kids),
                    }
                }
            }
            _ => {
                let mut arms = Vec::new();
                for arm in kids.iter().filter(|k| k.as_rule() == Rule::wait_arm) {
                    let span = self.span(arm);
                    let kids = self::kids(arm.clone());
                    arms.push(WaitArm {
                        event: self.ident_in(&kids, Rule::ident),
                        binding: self.binding(&kids),
                        filter: self.where_clause(&kids),
                        block: self.block(find(&kids, Rule::block)?),
                        span,
                    });
                }
                StepKind::WaitAny {
                    within: self.duration(&find(&kids, Rule::duration)?)?,
                    arms,
                    on_timeout: self.timeout_block(&kids),
                }
            }
        })
    }

    fn send_target(&mut self, kids: &[P<'_>]) -> Option<SendTarget> {
        if let Some(channel_send) = find(kids, Rule::channel_send) {
            let kids = self::kids(channel_send);
            let channel_pair = find(&kids, Rule::channel)?;
            return Some(SendTarget::Channel {
                channel: self.channel(&channel_pair)?,
                channel_span: self.span(&channel_pair),
                id: self.string(&find(&kids, Rule::string)?),
            });
        }
        let template = find(kids, Rule::template_send)?;
        Some(SendTarget::Template(
            self.ident_in(&self::kids(template), Rule::ident),
        ))
    }

    fn profile_field(&self, kids: &[P<'_>]) -> Option<Ident> {
        let field = find(kids, Rule::profile_field)?;
        Some(self.ident_in(&self::kids(field), Rule::word))
    }

    // ------------------------------------------------------------ tests

    fn test_line(&mut self, pair: P<'_>) -> Option<TestLine> {
        let span = self.span(&pair);
        let inner = pair.into_inner().next()?;
        let rule = inner.as_rule();
        let kids = kids(inner);
        let kind = match rule {
            Rule::test_start => {
                TestLineKind::Start(self.timestamp(&find(&kids, Rule::timestamp)?)?)
            }
            Rule::test_profile => TestLineKind::Profile(self.record(find(&kids, Rule::record)?)),
            Rule::test_until => {
                let time = kids.get(1)?;
                TestLineKind::Until(if time.as_rule() == Rule::duration {
                    TestTime::After(self.duration(time)?)
                } else {
                    TestTime::At(self.timestamp(time)?)
                })
            }
            Rule::test_input => {
                let at = self.duration(&find(&kids, Rule::duration)?)?;
                let input = kids.get(2)?.clone();
                let is_identify = input.as_rule() == Rule::identify_input;
                let kids = self::kids(input);
                if is_identify {
                    TestLineKind::Identify {
                        at,
                        traits: self.record(find(&kids, Rule::record)?),
                    }
                } else {
                    TestLineKind::Track {
                        at,
                        event: self.ident_in(&kids, Rule::ident),
                        properties: find(&kids, Rule::record).map(|r| self.record(r)),
                    }
                }
            }
            _ => TestLineKind::Expect(self.expectation(kids.get(1)?.clone())?),
        };
        Some(TestLine { kind, span })
    }

    fn at_time(&mut self, kids: &[P<'_>]) -> Option<DurationLit> {
        let at = find(kids, Rule::at_time)?;
        let duration = at.into_inner().find(|p| p.as_rule() == Rule::duration)?;
        self.duration(&duration)
    }

    fn expectation(&mut self, pair: P<'_>) -> Option<Expectation> {
        let rule = pair.as_rule();
        let kids = kids(pair);
        Some(match rule {
            Rule::expect_send => Expectation::Send {
                target: self.send_target(&kids)?,
                at: self.at_time(&kids),
            },
            Rule::expect_no_send => Expectation::NoSend,
            Rule::expect_sends => Expectation::Sends(self.int(&find(&kids, Rule::int)?)?),
            Rule::expect_exit => Expectation::Exit {
                outcome: Outcome::parse(find(&kids, Rule::outcome)?.as_str())?,
                name: find(&kids, Rule::ident).map(|i| self.ident(&i)),
                at: self.at_time(&kids),
            },
            Rule::expect_not_entered => Expectation::NotEntered,
            _ => Expectation::At {
                label: self.ident_in(&kids, Rule::ident),
                at: self.at_time(&kids)?,
            },
        })
    }

    // ------------------------------------------------------------ literals

    fn string(&mut self, pair: &P<'_>) -> StringLit {
        let span = self.span(pair);
        let raw = pair.as_str();
        let body = &raw[1..raw.len() - 1];
        let mut value = String::with_capacity(body.len());
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '\\' {
                value.push(c);
                continue;
            }
            let escape_start = span.start as usize + 1 + i;
            let escaped = chars.next().map(|(_, e)| e);
            match escaped {
                Some('"') => value.push('"'),
                Some('\\') => value.push('\\'),
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some('u') => {
                    let rest = &body[i + 2..];
                    let decoded = rest
                        .strip_prefix('{')
                        .and_then(|r| r.split_once('}'))
                        .filter(|(hex, _)| (1..=6).contains(&hex.len()))
                        .and_then(|(hex, _)| {
                            u32::from_str_radix(hex, 16).ok().map(|n| (hex.len(), n))
                        })
                        .and_then(|(len, n)| char::from_u32(n).map(|c| (len, c)));
                    match decoded {
                        Some((len, decoded)) => {
                            value.push(decoded);
                            for _ in 0..len + 2 {
                                chars.next();
                            }
                        }
                        None => self.error(
                            Code::InvalidEscape,
                            "invalid unicode escape",
                            Span::new(escape_start, escape_start + 2),
                            "expected `\\u{...}` with 1 to 6 hex digits of a Unicode scalar value",
                        ),
                    }
                }
                other => {
                    let width = other.map_or(0, char::len_utf8);
                    let shown = other.map_or(String::new(), |c| c.to_string());
                    self.diagnostics.push(
                        Diagnostic::new(Code::InvalidEscape, format!("unknown escape `\\{shown}`"))
                            .primary(
                                self.file,
                                Span::new(escape_start, escape_start + 1 + width),
                                "unknown escape",
                            )
                            .note("strings know the escapes `\\\"`, `\\\\`, `\\n`, `\\t` and `\\u{...}`"),
                    );
                }
            }
        }
        StringLit { value, span }
    }

    fn int(&mut self, pair: &P<'_>) -> Option<u64> {
        match pair.as_str().parse::<u64>() {
            Ok(n) if n <= i64::MAX as u64 => Some(n),
            _ => {
                let span = self.span(pair);
                self.error(
                    Code::InvalidLiteral,
                    "this number is too large",
                    span,
                    format!("numbers go up to {}", i64::MAX),
                );
                None
            }
        }
    }

    fn duration(&mut self, pair: &P<'_>) -> Option<DurationLit> {
        let span = self.span(pair);
        let text = pair.as_str();
        let mut seconds: u64 = 0;
        let mut previous_rank = usize::MAX;
        let mut digits_start = 0;
        for (i, c) in text.char_indices() {
            if c.is_ascii_digit() {
                continue;
            }
            const UNITS: [(char, u64); 5] = [
                ('s', 1),
                ('m', 60),
                ('h', 3600),
                ('d', 86_400),
                ('w', 604_800),
            ];
            let rank = UNITS.iter().position(|(u, _)| *u == c)?;
            if rank >= previous_rank {
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::InvalidLiteral,
                        format!("the units of the duration `{text}` are out of order"),
                    )
                    .primary(self.file, span, "units must go from largest to smallest")
                    .help("write each unit once, largest first: `w`, `d`, `h`, `m`, `s` (for example `1h30m`)"),
                );
                return None;
            }
            previous_rank = rank;
            let amount = text[digits_start..i].parse::<u64>().ok();
            let part = amount.and_then(|a| a.checked_mul(UNITS[rank].1));
            match part.and_then(|p| seconds.checked_add(p)) {
                Some(total) if total <= i64::MAX as u64 / 1000 => seconds = total,
                _ => {
                    self.error(
                        Code::InvalidLiteral,
                        format!("the duration `{text}` is too long"),
                        span,
                        "too long",
                    );
                    return None;
                }
            }
            digits_start = i + 1;
        }
        Some(DurationLit { seconds, span })
    }

    fn time_of_day(&mut self, pair: &P<'_>) -> Option<TimeOfDay> {
        let span = self.span(pair);
        let (hour, minute) = pair.as_str().split_once(':')?;
        let (hour, minute) = (hour.parse::<u8>().ok()?, minute.parse::<u8>().ok()?);
        if hour > 23 || minute > 59 {
            self.diagnostics.push(
                Diagnostic::new(
                    Code::InvalidLiteral,
                    format!("`{}` is not a time of day", pair.as_str()),
                )
                .primary(
                    self.file,
                    span,
                    "hours go from 0 to 23, minutes from 00 to 59",
                )
                .help("times of day are 24-hour: `00:00` to `23:59`"),
            );
            return None;
        }
        Some(TimeOfDay { hour, minute, span })
    }

    fn timestamp(&mut self, pair: &P<'_>) -> Option<TimestampLit> {
        let span = self.span(pair);
        let text = &pair.as_str()[1..];
        let millis = if text.len() == 10 {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc().timestamp_millis())
        } else {
            chrono::DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.timestamp_millis())
        };
        if millis.is_none() {
            self.diagnostics.push(
                Diagnostic::new(
                    Code::InvalidLiteral,
                    format!("`{}` is not a valid timestamp", pair.as_str()),
                )
                .primary(self.file, span, "no such date or time")
                .help("write `@YYYY-MM-DD` or `@YYYY-MM-DDTHH:MM:SSZ` (or with an offset such as `+03:00`)"),
            );
        }
        Some(TimestampLit {
            millis: millis?,
            span,
        })
    }

    fn percent(&mut self, pair: &P<'_>) -> Option<Percent> {
        let span = self.span(pair);
        let text = pair.as_str().trim_end_matches('%');
        let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
        let valid = fraction.len() == 1;
        let tenths = whole
            .parse::<u32>()
            .ok()
            .filter(|w| *w <= 100)
            .and_then(|w| Some(w * 10 + fraction.parse::<u32>().ok()?))
            .filter(|t| valid && *t <= 1000);
        if tenths.is_none() {
            self.diagnostics.push(
                Diagnostic::new(
                    Code::InvalidLiteral,
                    format!("`{}` is not a valid split weight", pair.as_str()),
                )
                .primary(self.file, span, "invalid percentage")
                .help("a weight is a percentage from 0% to 100% with at most one decimal, such as `50%` or `12.5%`"),
            );
        }
        Some(Percent {
            tenths: tenths?,
            span,
        })
    }

    // ------------------------------------------------------------ expressions

    /// An expression outside any other: its node budget starts afresh.
    fn root_expr(&mut self, pair: P<'_>) -> Expr {
        self.expression_nodes = 0;
        let expr = self.expr(pair);
        self.bounded_depth(expr)
    }

    /// The expression, or a placeholder and a diagnostic if it nests deeper than later stages
    /// may recurse. Measured without recursion.
    fn bounded_depth(&mut self, expr: Expr) -> Expr {
        if self.expression_nodes > MAX_EXPRESSION_NODES {
            // Already reported as too large.
            return self.placeholder(expr.span);
        }
        let mut deepest = 0;
        let mut stack = vec![(&expr, 1usize)];
        while let Some((node, depth)) = stack.pop() {
            deepest = deepest.max(depth);
            for child in children(node) {
                stack.push((child, depth + 1));
            }
        }
        if deepest <= MAX_EXPRESSION_DEPTH {
            return expr;
        }
        self.diagnostics.push(
            Diagnostic::new(
                Code::NestingTooDeep,
                format!("this expression nests {deepest} levels deep; the limit is {MAX_EXPRESSION_DEPTH}"),
            )
            .primary(self.file, expr.span, "too deep")
            .help("split it into `segment`s"),
        );
        self.placeholder(expr.span)
    }

    /// Counts a node against the budget; false (and one diagnostic) once it is exhausted.
    fn budget(&mut self, span: Span) -> bool {
        self.expression_nodes += 1;
        if self.expression_nodes == MAX_EXPRESSION_NODES + 1 {
            self.diagnostics.push(
                Diagnostic::new(
                    Code::NestingTooDeep,
                    format!("this expression has more than {MAX_EXPRESSION_NODES} parts"),
                )
                .primary(self.file, span, "the expression grows too large here")
                .help("split it into `segment`s"),
            );
        }
        self.expression_nodes <= MAX_EXPRESSION_NODES
    }

    /// An `expr` pair: its flat operands and operators, arranged by precedence.
    fn expr(&mut self, pair: P<'_>) -> Expr {
        let span = self.span(&pair);
        let tokens: Vec<P<'_>> = pair.into_inner().collect();
        if tokens.len() > 2 * MAX_EXPRESSION_NODES {
            // Too large to arrange without deep recursion; report it without building it.
            self.expression_nodes = MAX_EXPRESSION_NODES;
            self.budget(span);
            return self.placeholder(span);
        }
        let mut position = 0;
        self.pratt(&tokens, &mut position, 0)
    }

    /// Precedence climbing over `tokens[*position..]`, taking operators that bind at least as
    /// tightly as `min_power`. Recursion is bounded by the number of tokens (checked by `expr`).
    fn pratt(&mut self, tokens: &[P<'_>], position: &mut usize, min_power: u8) -> Expr {
        let Some(first) = tokens.get(*position) else {
            return self.placeholder(Span::default());
        };
        *position += 1;
        let mut lhs = match first.as_rule() {
            Rule::k_not | Rule::neg => {
                let (op, power) = if first.as_rule() == Rule::k_not {
                    (UnaryOp::Not, NOT_POWER)
                } else {
                    (UnaryOp::Neg, NEG_POWER)
                };
                let start = self.span(first);
                let operand = self.pratt(tokens, position, power);
                if !self.budget(start) {
                    return operand;
                }
                Expr {
                    span: start.to(operand.span),
                    kind: ExprKind::Unary {
                        op,
                        operand: Box::new(operand),
                    },
                }
            }
            _ => {
                let mut operand = self.primary(first.clone());
                while let Some(member) = tokens
                    .get(*position)
                    .filter(|t| t.as_rule() == Rule::member)
                {
                    *position += 1;
                    if !self.budget(operand.span) {
                        continue;
                    }
                    let Some(word) = member.clone().into_inner().next() else {
                        continue;
                    };
                    let field = self.ident(&word);
                    operand = Expr {
                        span: operand.span.to(field.span),
                        kind: ExprKind::Field {
                            base: Box::new(operand),
                            field,
                        },
                    };
                }
                operand
            }
        };
        // Comparisons do not associate: remember whether `lhs` is one.
        let mut lhs_is_comparison = false;
        while let Some(op) = tokens.get(*position) {
            let (left_power, right_power) = binding_power(op);
            if left_power < min_power {
                break;
            }
            *position += 1;
            let is_comparison = left_power == COMPARISON_POWER;
            if is_comparison && lhs_is_comparison {
                let op_span = self.span(op);
                self.diagnostics.push(
                    Diagnostic::new(Code::ChainedComparison, "comparisons cannot be chained")
                        .primary(self.file, op_span, "a second comparison")
                        .secondary(self.file, lhs.span, "after this comparison")
                        .help("compare twice and join with `and`: `a < b and b < c`"),
                );
            }
            if op.as_rule() == Rule::is_set {
                let end = self.span(op);
                let negated = op.clone().into_inner().any(|p| p.as_rule() == Rule::k_not);
                if self.budget(end) {
                    lhs = Expr {
                        span: lhs.span.to(end),
                        kind: ExprKind::IsSet {
                            operand: Box::new(lhs),
                            negated,
                        },
                    };
                }
                lhs_is_comparison = true;
                continue;
            }
            let rhs = self.pratt(tokens, position, right_power);
            if self.budget(lhs.span) {
                lhs = binary(binary_op(op), lhs, rhs);
            }
            lhs_is_comparison = is_comparison;
        }
        lhs
    }

    fn primary(&mut self, pair: P<'_>) -> Expr {
        let span = self.span(&pair);
        if !self.budget(span) {
            return self.placeholder(span);
        }
        let rule = pair.as_rule();
        let text = pair.as_str();
        let kind = match rule {
            Rule::int => match text.parse::<i64>() {
                Ok(n) => ExprKind::Int(n),
                Err(_) => {
                    self.error(
                        Code::InvalidLiteral,
                        "this number is too large",
                        span,
                        format!("numbers go up to {}", i64::MAX),
                    );
                    ExprKind::Int(0)
                }
            },
            Rule::float => match text.parse::<f64>() {
                Ok(n) if n.is_finite() => ExprKind::Float(n),
                _ => {
                    self.error(
                        Code::InvalidLiteral,
                        "this number is too large",
                        span,
                        "not a finite number",
                    );
                    ExprKind::Float(0.0)
                }
            },
            Rule::string => ExprKind::String(self.string(&pair).value),
            Rule::duration => match self.duration(&pair) {
                Some(duration) => ExprKind::Duration(duration.seconds),
                None => return self.placeholder(span),
            },
            Rule::timestamp => match self.timestamp(&pair) {
                Some(timestamp) => ExprKind::Timestamp(timestamp.millis),
                None => return self.placeholder(span),
            },
            Rule::k_true => ExprKind::Bool(true),
            Rule::k_false => ExprKind::Bool(false),
            Rule::k_now => ExprKind::Now,
            Rule::k_profile => ExprKind::Profile,
            Rule::k_journey => ExprKind::Journey,
            Rule::name => match pair.into_inner().next() {
                Some(ident) => ExprKind::Name(self.ident(&ident)),
                None => return self.placeholder(span),
            },
            Rule::list => {
                let mut items = Vec::new();
                for kid in pair.into_inner() {
                    items.push(self.expr(kid));
                }
                ExprKind::List(items)
            }
            Rule::call => {
                let mut kids = pair.into_inner();
                let Some(function) = kids.next() else {
                    return self.placeholder(span);
                };
                let function = self.ident(&function);
                let args = kids.map(|k| self.expr(k)).collect();
                ExprKind::Call { function, args }
            }
            Rule::history_call => return self.history(kids(pair), span),
            Rule::paren => {
                let Some(inner) = pair.into_inner().next() else {
                    return self.placeholder(span);
                };
                let mut expr = self.expr(inner);
                expr.span = span;
                return expr;
            }
            _ => return self.placeholder(span),
        };
        Expr { kind, span }
    }

    fn history(&mut self, kids: Vec<P<'_>>, span: Span) -> Expr {
        let function = match kids.first().map(|k| k.as_str()) {
            Some("count") => HistoryFn::Count,
            Some("did") => HistoryFn::Did,
            Some("last") => HistoryFn::Last,
            _ => HistoryFn::Sum,
        };
        let event = self.ident_in(&kids, Rule::ident);
        let field = find(&kids, Rule::word).map(|w| self.ident(&w));
        let filter = find(&kids, Rule::where_clause)
            .and_then(|w| w.into_inner().find(|p| p.as_rule() == Rule::expr))
            .map(|e| Box::new(self.expr(e)));
        let window = if let Some(since) = find(&kids, Rule::since_entry) {
            Some(Window::SinceEntry(self.span(&since)))
        } else {
            self.within(&kids).map(Window::Within)
        };
        Expr {
            kind: ExprKind::History(History {
                function,
                event,
                field,
                filter,
                window,
            }),
            span,
        }
    }

    /// Stands in for an expression that could not be built (a diagnostic was reported).
    fn placeholder(&self, span: Span) -> Expr {
        Expr {
            kind: ExprKind::Bool(false),
            span,
        }
    }

    fn record(&mut self, pair: P<'_>) -> Record {
        let span = self.span(&pair);
        self.expression_nodes = 0;
        self.record_from_kids(kids(pair), span)
    }

    fn record_from_kids(&mut self, kids: Vec<P<'_>>, span: Span) -> Record {
        let mut entries = Vec::new();
        for entry in kids {
            let mut parts = entry.into_inner();
            let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
                continue;
            };
            let key = self.ident(&key);
            let value = if value.as_rule() == Rule::record {
                let span = self.span(&value);
                Expr {
                    kind: ExprKind::Record(self.record_from_kids(self::kids(value), span)),
                    span,
                }
            } else {
                self.expr(value)
            };
            entries.push(RecordEntry { key, value });
        }
        Record { entries, span }
    }
}

/// Binding powers (LANGUAGE.md §4, loosest first): `or`; `and`; `not`; comparisons, `in` and
/// `is set`; `+ -`; `* /`; unary `-`; `??` (right-associative); then `.field`.
const NOT_POWER: u8 = 6;
const COMPARISON_POWER: u8 = 8;
const NEG_POWER: u8 = 14;

/// (left, right) binding power of an operator token; (0, 0) ends an expression.
fn binding_power(op: &P<'_>) -> (u8, u8) {
    match op.as_rule() {
        Rule::k_or => (2, 3),
        Rule::k_and => (4, 5),
        Rule::cmp_op | Rule::k_in | Rule::is_set => (COMPARISON_POWER, COMPARISON_POWER + 1),
        Rule::add_op => (10, 11),
        Rule::mul_op => (12, 13),
        Rule::coalesce_op => (16, 15),
        _ => (0, 0),
    }
}

fn binary_op(op: &P<'_>) -> BinaryOp {
    match op.as_str() {
        "or" => BinaryOp::Or,
        "and" => BinaryOp::And,
        "==" => BinaryOp::Eq,
        "!=" => BinaryOp::Ne,
        "<" => BinaryOp::Lt,
        "<=" => BinaryOp::Le,
        ">" => BinaryOp::Gt,
        ">=" => BinaryOp::Ge,
        "in" => BinaryOp::In,
        "+" => BinaryOp::Add,
        "-" => BinaryOp::Sub,
        "*" => BinaryOp::Mul,
        "/" => BinaryOp::Div,
        _ => BinaryOp::Coalesce,
    }
}

/// `end` moved back over whitespace and `//` comments, but not before `start`.
fn trim_trivia(text: &str, start: usize, mut end: usize) -> usize {
    let bytes = text.as_bytes();
    loop {
        while end > start && bytes[end - 1].is_ascii_whitespace() {
            end -= 1;
        }
        let line_start = text[..end].rfind('\n').map_or(0, |i| i + 1).max(start);
        match comment_start(&text[line_start..end]) {
            Some(comment) => end = line_start + comment,
            None => return end,
        }
    }
}

/// Where a `//` comment starts in one line, ignoring `//` inside strings.
fn comment_start(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The direct sub-expressions of an expression.
fn children(expr: &Expr) -> Vec<&Expr> {
    match &expr.kind {
        ExprKind::List(items) => items.iter().collect(),
        ExprKind::Record(record) => record.entries.iter().map(|e| &e.value).collect(),
        ExprKind::Field { base, .. } => vec![base],
        ExprKind::Unary { operand, .. } | ExprKind::IsSet { operand, .. } => vec![operand],
        ExprKind::Binary { lhs, rhs, .. } => vec![lhs, rhs],
        ExprKind::History(history) => history.filter.iter().map(|f| &**f).collect(),
        ExprKind::Call { args, .. } => args.iter().collect(),
        _ => Vec::new(),
    }
}

fn binary(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
    Expr {
        span: lhs.span.to(rhs.span),
        kind: ExprKind::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        },
    }
}

/// `a`, `b` and `c` → "`a`, `b` and `c`"
pub fn quoted_list(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}
