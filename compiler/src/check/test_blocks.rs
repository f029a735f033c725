//! `test` blocks → checked against their journey and the schemas (LANGUAGE.md §8).

use super::expr::Scope;
use super::Checker;
use crate::ast::{self, Expectation, Item, Outcome, SendTarget, SettingKind, TestLineKind};
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::source::{FileId, Span};

impl Checker<'_> {
    pub(crate) fn check_tests(&mut self) {
        let workspace = self.workspace;
        let mut names: Vec<(String, FileId, Span)> = Vec::new();
        for module in &workspace.modules {
            for item in &module.items {
                if let Item::Test(test) = item {
                    let key = format!("{}/{}", test.journey.name, test.name.value);
                    if let Some((_, file, span)) = names.iter().find(|(k, _, _)| *k == key) {
                        let (file, span) = (*file, *span);
                        self.error(
                            Diagnostic::new(
                                Code::DuplicateName,
                                format!(
                                    "two tests of `{}` are named \"{}\"",
                                    test.journey.name, test.name.value
                                ),
                            )
                            .primary(module.file, test.name.span, "named again here")
                            .secondary(file, span, "first named here"),
                        );
                    }
                    names.push((key, module.file, test.name.span));
                    self.test(module.file, test);
                }
            }
        }
    }

    fn test(&mut self, file: FileId, test: &ast::TestDecl) {
        let journey = self.journeys.get(&test.journey.name).map(|(_, j)| *j);
        if journey.is_none() {
            let known: Vec<String> = self.journeys.keys().cloned().collect();
            self.unknown(
                Code::UnknownJourney,
                "journey",
                &test.journey,
                file,
                known.iter().map(String::as_str),
            );
        }
        let mut scope = Scope::new(file);
        let profile = self.program.profile.clone();
        for line in &test.lines {
            match &line.kind {
                TestLineKind::Profile(record) => {
                    self.record(record, &profile, &mut scope, "the profile", &|_| false);
                }
                TestLineKind::Identify { traits, .. } => {
                    self.record(traits, &profile, &mut scope, "the profile", &|_| false);
                }
                TestLineKind::Track {
                    event, properties, ..
                } => {
                    let Some(fields) = self.event_fields(event, file) else {
                        continue;
                    };
                    let what = format!("the event `{}`", event.name);
                    let empty = ast::Record {
                        entries: Vec::new(),
                        span: event.span,
                    };
                    self.record(
                        properties.as_ref().unwrap_or(&empty),
                        &fields,
                        &mut scope,
                        &what,
                        &|f| !f.ty.is_optional(),
                    );
                }
                TestLineKind::Expect(expectation) => self.expectation(file, expectation, journey),
                TestLineKind::Start(_) | TestLineKind::Until(_) => {}
            }
        }
    }

    fn expectation(
        &mut self,
        file: FileId,
        expectation: &Expectation,
        journey: Option<&ast::Journey>,
    ) {
        match expectation {
            Expectation::Send {
                target: SendTarget::Template(template),
                ..
            } if !self.program.templates.contains_key(&template.name) => {
                let known: Vec<String> = self.program.templates.keys().cloned().collect();
                self.unknown(
                    Code::UnknownTemplate,
                    "template",
                    template,
                    file,
                    known.iter().map(String::as_str),
                );
            }
            Expectation::Exit {
                outcome,
                name: Some(name),
                ..
            } => {
                let Some(journey) = journey else { return };
                let names: Vec<&str> = journey
                    .settings
                    .iter()
                    .filter_map(|s| match (&s.kind, outcome) {
                        (SettingKind::Goal(t), Outcome::Goal)
                        | (SettingKind::Exit(t), Outcome::Exited) => Some(t.name.name.as_str()),
                        _ => None,
                    })
                    .collect();
                if !names.contains(&name.name.as_str()) {
                    let what = if *outcome == Outcome::Goal {
                        "goal"
                    } else {
                        "exit"
                    };
                    self.unknown(Code::UnknownName, what, name, file, names);
                }
            }
            Expectation::At { label, .. } => {
                let Some(facts) = self
                    .program
                    .journeys
                    .iter()
                    .find(|f| journey.is_some_and(|j| j.name.name == f.name))
                else {
                    return;
                };
                let steps: Vec<String> = facts.steps.iter().map(|s| s.name.clone()).collect();
                if !steps.contains(&label.name) {
                    self.unknown(
                        Code::UnknownName,
                        "step",
                        label,
                        file,
                        steps.iter().map(String::as_str),
                    );
                }
            }
            _ => {}
        }
    }
}
