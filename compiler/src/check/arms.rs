//! Branch arms → warnings for arms implied by earlier arms (never taken) and arms that overlap
//! an earlier one, for conditions that compare one expression with literals: numeric intervals,
//! string and enum sets and booleans, under `and`, `or` and `not`.

use std::collections::BTreeSet;

use super::types::Type;
use super::Checker;
use crate::ast::{BinaryOp, Expr, ExprKind, UnaryOp};
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::source::{FileId, Span};

/// An interval of the real line; `None` bounds are infinite.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Interval {
    low: Option<(f64, bool)>,
    high: Option<(f64, bool)>,
}

/// The values of the subject for which a condition holds.
#[derive(Debug, Clone, PartialEq)]
enum Values {
    /// Disjoint intervals, in order.
    Numbers(Vec<Interval>),
    /// A finite set of strings, or (negated) everything but them.
    Strings {
        negated: bool,
        values: BTreeSet<String>,
    },
}

fn everything() -> Vec<Interval> {
    vec![Interval {
        low: None,
        high: None,
    }]
}

fn is_empty(interval: &Interval) -> bool {
    match (interval.low, interval.high) {
        (Some((low, low_in)), Some((high, high_in))) => {
            low > high || (low == high && !(low_in && high_in))
        }
        _ => false,
    }
}

fn intersect_numbers(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            let low = match (x.low, y.low) {
                (None, other) | (other, None) => other,
                (Some(p), Some(q)) => Some(if p.0 > q.0 || (p.0 == q.0 && !p.1) {
                    p
                } else {
                    q
                }),
            };
            let high = match (x.high, y.high) {
                (None, other) | (other, None) => other,
                (Some(p), Some(q)) => Some(if p.0 < q.0 || (p.0 == q.0 && !p.1) {
                    p
                } else {
                    q
                }),
            };
            let interval = Interval { low, high };
            if !is_empty(&interval) {
                out.push(interval);
            }
        }
    }
    out
}

fn complement_numbers(a: &[Interval]) -> Vec<Interval> {
    // The complement of a union is the intersection of the complements of its parts.
    let mut out = everything();
    for interval in a {
        let mut parts = Vec::new();
        if let Some((low, inclusive)) = interval.low {
            parts.push(Interval {
                low: None,
                high: Some((low, !inclusive)),
            });
        }
        if let Some((high, inclusive)) = interval.high {
            parts.push(Interval {
                low: Some((high, !inclusive)),
                high: None,
            });
        }
        out = intersect_numbers(&out, &parts);
    }
    out
}

impl Values {
    fn complement(&self) -> Values {
        match self {
            Values::Numbers(n) => Values::Numbers(complement_numbers(n)),
            Values::Strings { negated, values } => Values::Strings {
                negated: !negated,
                values: values.clone(),
            },
        }
    }

    fn intersect(&self, other: &Values) -> Option<Values> {
        Some(match (self, other) {
            (Values::Numbers(a), Values::Numbers(b)) => Values::Numbers(intersect_numbers(a, b)),
            (
                Values::Strings {
                    negated: false,
                    values: a,
                },
                Values::Strings {
                    negated: false,
                    values: b,
                },
            ) => Values::Strings {
                negated: false,
                values: a.intersection(b).cloned().collect(),
            },
            (
                Values::Strings {
                    negated: false,
                    values: a,
                },
                Values::Strings {
                    negated: true,
                    values: b,
                },
            )
            | (
                Values::Strings {
                    negated: true,
                    values: b,
                },
                Values::Strings {
                    negated: false,
                    values: a,
                },
            ) => Values::Strings {
                negated: false,
                values: a.difference(b).cloned().collect(),
            },
            (Values::Strings { values: a, .. }, Values::Strings { values: b, .. }) => {
                Values::Strings {
                    negated: true,
                    values: a.union(b).cloned().collect(),
                }
            }
            _ => return None,
        })
    }

    fn union(&self, other: &Values) -> Option<Values> {
        Some(
            self.complement()
                .intersect(&other.complement())?
                .complement(),
        )
    }

    fn is_empty(&self) -> bool {
        match self {
            Values::Numbers(n) => n.is_empty(),
            Values::Strings { negated, values } => !negated && values.is_empty(),
        }
    }

    /// Restricts a negated set to a finite universe (enums, booleans).
    fn within(self, universe: Option<&BTreeSet<String>>) -> Values {
        match (self, universe) {
            (
                Values::Strings {
                    negated: true,
                    values,
                },
                Some(universe),
            ) => Values::Strings {
                negated: false,
                values: universe.difference(&values).cloned().collect(),
            },
            (values, _) => values,
        }
    }
}

/// One analysable condition: its subject (written canonically) and the values it accepts.
struct Analysed {
    subject: String,
    values: Values,
}

impl Checker<'_> {
    /// The type recorded for the expression at `span` (the condition was just checked).
    fn recorded_type(&self, file: FileId, span: Span) -> Option<&Type> {
        self.program
            .expression_types
            .iter()
            .rev()
            .take(4096)
            .find(|(f, s, _)| *f == file && *s == span)
            .map(|(_, _, ty)| ty)
    }

    fn universe(&self, file: FileId, subject: &Expr) -> Option<BTreeSet<String>> {
        match self.recorded_type(file, subject.span)?.required() {
            Type::Enum(values) => Some(values.iter().cloned().collect()),
            Type::Bool => Some(["true".to_string(), "false".to_string()].into()),
            _ => None,
        }
    }

    fn is_int(&self, file: FileId, subject: &Expr) -> bool {
        matches!(
            self.recorded_type(file, subject.span).map(Type::required),
            Some(Type::Int)
        )
    }

    fn analyse(&self, file: FileId, condition: &Expr) -> Option<Analysed> {
        match &condition.kind {
            ExprKind::Binary {
                op: op @ (BinaryOp::And | BinaryOp::Or),
                lhs,
                rhs,
            } => {
                let (a, b) = (self.analyse(file, lhs)?, self.analyse(file, rhs)?);
                if a.subject != b.subject {
                    return None;
                }
                let values = if *op == BinaryOp::And {
                    a.values.intersect(&b.values)?
                } else {
                    a.values.union(&b.values)?
                };
                Some(Analysed {
                    subject: a.subject,
                    values,
                })
            }
            ExprKind::Unary {
                op: UnaryOp::Not,
                operand,
            } => {
                let inner = self.analyse(file, operand)?;
                let universe = self.universe_of(file, operand);
                Some(Analysed {
                    subject: inner.subject,
                    values: inner.values.complement().within(universe.as_ref()),
                })
            }
            ExprKind::Binary {
                op: BinaryOp::In,
                lhs,
                rhs,
            } if literal(lhs).is_none() => {
                let ExprKind::List(items) = &rhs.kind else {
                    return None;
                };
                let mut strings = BTreeSet::new();
                let mut numbers = Vec::new();
                for item in items {
                    match literal(item)? {
                        Literal::Number(n) => numbers.push(Interval {
                            low: Some((n, true)),
                            high: Some((n, true)),
                        }),
                        Literal::Text(s) => {
                            strings.insert(s);
                        }
                    }
                }
                let values = match (strings.is_empty(), numbers.is_empty()) {
                    (false, true) => Values::Strings {
                        negated: false,
                        values: strings,
                    },
                    (true, _) => Values::Numbers(numbers),
                    _ => return None,
                };
                Some(Analysed {
                    subject: lhs.to_sexpr(),
                    values,
                })
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let (subject, op, value) = match (literal(lhs), literal(rhs)) {
                    (None, Some(value)) => (lhs, *op, value),
                    (Some(value), None) => (rhs, flip(*op)?, value),
                    _ => return None,
                };
                let values = match value {
                    Literal::Text(text) => {
                        let values: BTreeSet<String> = [text].into();
                        match op {
                            BinaryOp::Eq => Values::Strings {
                                negated: false,
                                values,
                            },
                            BinaryOp::Ne => Values::Strings {
                                negated: true,
                                values,
                            },
                            _ => return None,
                        }
                    }
                    Literal::Number(n) => {
                        let int = self.is_int(file, subject);
                        // For integers, strict bounds become inclusive ones: x > 3 is x >= 4.
                        let (above, below) = if int && n.fract() == 0.0 {
                            (n + 1.0, n - 1.0)
                        } else {
                            (n, n)
                        };
                        let strict = !int || n.fract() != 0.0;
                        let point = Interval {
                            low: Some((n, true)),
                            high: Some((n, true)),
                        };
                        Values::Numbers(match op {
                            BinaryOp::Eq => vec![point],
                            BinaryOp::Ne => complement_numbers(&[point]),
                            BinaryOp::Lt => vec![Interval {
                                low: None,
                                high: Some((below, !strict)),
                            }],
                            BinaryOp::Le => vec![Interval {
                                low: None,
                                high: Some((n, true)),
                            }],
                            BinaryOp::Gt => vec![Interval {
                                low: Some((above, !strict)),
                                high: None,
                            }],
                            BinaryOp::Ge => vec![Interval {
                                low: Some((n, true)),
                                high: None,
                            }],
                            _ => return None,
                        })
                    }
                };
                let universe = self.universe(file, subject);
                Some(Analysed {
                    subject: subject.to_sexpr(),
                    values: values.within(universe.as_ref()),
                })
            }
            ExprKind::Name(_) | ExprKind::Field { .. } | ExprKind::Call { .. }
                if matches!(self.recorded_type(file, condition.span), Some(Type::Bool)) =>
            {
                Some(Analysed {
                    subject: condition.to_sexpr(),
                    values: Values::Strings {
                        negated: false,
                        values: ["true".to_string()].into(),
                    },
                })
            }
            _ => None,
        }
    }

    /// The universe of the subject inside a negated condition, if it has one.
    fn universe_of(&self, file: FileId, condition: &Expr) -> Option<BTreeSet<String>> {
        match &condition.kind {
            ExprKind::Binary { lhs, rhs, .. } => {
                let subject = if literal(lhs).is_none() { lhs } else { rhs };
                self.universe(file, subject)
                    .or_else(|| self.universe_of(file, lhs))
            }
            ExprKind::Unary { operand, .. } => self.universe_of(file, operand),
            _ => self.universe(file, condition),
        }
    }

    /// Warns about arms that can never be taken, and arms that overlap an earlier one.
    pub(crate) fn check_arms(&mut self, arms: &[(&Expr, Span)], file: FileId) {
        let analysed: Vec<Option<Analysed>> =
            arms.iter().map(|(c, _)| self.analyse(file, c)).collect();
        for (i, current) in analysed.iter().enumerate() {
            let Some(current) = current else { continue };
            let earlier: Vec<(usize, &Analysed)> = analysed[..i]
                .iter()
                .enumerate()
                .filter_map(|(j, a)| {
                    a.as_ref()
                        .filter(|a| a.subject == current.subject)
                        .map(|a| (j, a))
                })
                .collect();
            let Some(covered) = earlier
                .iter()
                .try_fold(None::<Values>, |acc, (_, a)| match acc {
                    None => Some(Some(a.values.clone())),
                    Some(acc) => acc.union(&a.values).map(Some),
                })
                .flatten()
            else {
                continue;
            };
            let uncovered = covered.complement().intersect(&current.values);
            if uncovered.is_some_and(|u| u.is_empty()) {
                let mut diagnostic =
                    Diagnostic::new(Code::UnreachableArm, "this arm can never be taken").primary(
                        file,
                        arms[i].1,
                        "every case it matches is taken by an earlier arm",
                    );
                for (j, _) in &earlier {
                    diagnostic = diagnostic.secondary(file, arms[*j].1, "taken first");
                }
                self.error(diagnostic.help("remove the arm, or reorder the arms from the most specific to the most general"));
                continue;
            }
            if let Some((j, _)) = earlier.iter().find(|(_, a)| {
                a.values
                    .intersect(&current.values)
                    .is_some_and(|v| !v.is_empty())
            }) {
                self.error(
                    Diagnostic::new(Code::OverlappingArms, "this arm overlaps an earlier one")
                        .primary(file, arms[i].1, "some cases match both")
                        .secondary(file, arms[*j].1, "the earlier arm wins them")
                        .help("the first matching arm wins; make the conditions exclusive to say what you mean"),
                );
            }
        }
    }
}

enum Literal {
    Number(f64),
    Text(String),
}

fn literal(expr: &Expr) -> Option<Literal> {
    match &expr.kind {
        ExprKind::Int(n) => Some(Literal::Number(*n as f64)),
        ExprKind::Float(n) => Some(Literal::Number(*n)),
        ExprKind::String(s) => Some(Literal::Text(s.clone())),
        ExprKind::Bool(b) => Some(Literal::Text(b.to_string())),
        ExprKind::Unary {
            op: UnaryOp::Neg,
            operand,
        } => match literal(operand)? {
            Literal::Number(n) => Some(Literal::Number(-n)),
            Literal::Text(_) => None,
        },
        _ => None,
    }
}

/// `3 < x` is `x > 3`.
fn flip(op: BinaryOp) -> Option<BinaryOp> {
    Some(match op {
        BinaryOp::Eq => BinaryOp::Eq,
        BinaryOp::Ne => BinaryOp::Ne,
        BinaryOp::Lt => BinaryOp::Gt,
        BinaryOp::Le => BinaryOp::Ge,
        BinaryOp::Gt => BinaryOp::Lt,
        BinaryOp::Ge => BinaryOp::Le,
        _ => return None,
    })
}
