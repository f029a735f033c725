//! Expressions → types (LANGUAGE.md §3.3, §4), with names resolved in their scope.

use std::sync::Arc;

use super::types::{Field, RecordType, Type};
use super::Checker;
use crate::ast::{BinaryOp, Expr, ExprKind, HistoryFn, Ident, Record, UnaryOp, Window};
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::source::{FileId, Span};
use crate::suggest::did_you_mean;

/// Whether `since entry` may appear (not in `audience` or segments).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum SinceEntry {
    Allowed,
    Forbidden(&'static str),
}

/// An event bound with `as b`.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub name: String,
    pub fields: Arc<RecordType>,
    pub span: Span,
    pub used: bool,
}

/// What names mean where an expression is checked.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub file: FileId,
    /// Visible bindings, innermost last.
    pub bindings: Vec<Binding>,
    /// Inside `E where ...`: the event whose fields bare names are.
    pub matched: Option<(String, Arc<RecordType>)>,
    pub since_entry: SinceEntry,
}

impl Scope {
    pub fn new(file: FileId) -> Scope {
        Scope {
            file,
            bindings: Vec::new(),
            matched: None,
            since_entry: SinceEntry::Allowed,
        }
    }
}

/// String literals written where an enum is wanted take the enum's type (whether each is one of
/// its values is checked separately, with a message that lists them).
fn literal_for_enum(expr: &Expr, expected: &Type) -> Option<Type> {
    match (&expr.kind, expected.required()) {
        (ExprKind::String(_), Type::Enum(_)) => Some(expected.required().clone()),
        (ExprKind::List(items), Type::List(item)) if matches!(**item, Type::Enum(_)) => items
            .iter()
            .all(|i| matches!(i.kind, ExprKind::String(_)))
            .then(|| expected.required().clone()),
        _ => None,
    }
}

/// The fields of `journey`: `journey.entered_at`.
fn journey_record(file: FileId) -> Arc<RecordType> {
    Arc::new(RecordType {
        fields: vec![Field {
            name: "entered_at".into(),
            ty: Type::Timestamp,
            has_default: true,
            doc: Some("The moment the instance entered the journey.".into()),
            file,
            span: Span::default(),
        }],
    })
}

/// The weekday names `weekday(t)` returns.
pub(crate) fn weekday_type() -> Type {
    Type::Enum(
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .map(String::from)
            .to_vec()
            .into(),
    )
}

impl Checker<'_> {
    /// Checks a condition: it must be a (non-optional) `bool`.
    pub(crate) fn condition(&mut self, expr: &Expr, scope: &mut Scope, what: &str) {
        let ty = self.expr(expr, scope);
        match ty {
            Type::Bool | Type::Error => {}
            Type::Optional(inner) if *inner == Type::Bool => self.error(
                Diagnostic::new(
                    Code::OptionalValue,
                    format!("{what} must be a `bool`, not `bool?`"),
                )
                .primary(scope.file, expr.span, "may be absent")
                .help("say what absence means: `x ?? false`"),
            ),
            other => self.error(
                Diagnostic::new(
                    Code::TypeMismatch,
                    format!("{what} must be a `bool`, found `{other}`"),
                )
                .primary(scope.file, expr.span, format!("this is `{other}`")),
            ),
        }
    }

    /// Checks that `expr` can be used where `expected` is wanted.
    pub(crate) fn expect(
        &mut self,
        expr: &Expr,
        scope: &mut Scope,
        expected: &Type,
        what: &str,
    ) -> Type {
        let mut ty = self.expr(expr, scope);
        self.check_enum_literal(expr, expected, scope.file);
        if let Some(fitted) = literal_for_enum(expr, expected) {
            ty = fitted;
        }
        if !ty.assignable_to(expected) {
            let diagnostic = if ty.is_optional() && ty.required().assignable_to(expected) {
                Diagnostic::new(
                    Code::OptionalValue,
                    format!("{what} needs a value of type `{expected}`, but this may be absent (`{ty}`)"),
                )
                .primary(scope.file, expr.span, "may be absent")
                .help("give a default with `??`, such as `x ?? 0`")
            } else {
                Diagnostic::new(
                    Code::TypeMismatch,
                    format!("{what} needs a value of type `{expected}`, found `{ty}`"),
                )
                .primary(scope.file, expr.span, format!("this is `{ty}`"))
            };
            self.error(diagnostic);
        }
        ty
    }

    /// A string literal used where an enum is wanted must be one of its values.
    fn check_enum_literal(&mut self, expr: &Expr, expected: &Type, file: FileId) {
        let Type::Enum(values) = expected.required() else {
            return;
        };
        let literals: Vec<(&str, Span)> = match &expr.kind {
            ExprKind::String(s) => vec![(s.as_str(), expr.span)],
            ExprKind::List(items) => items
                .iter()
                .filter_map(|i| match &i.kind {
                    ExprKind::String(s) => Some((s.as_str(), i.span)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        for (literal, span) in literals {
            if values.iter().any(|v| v == literal) {
                continue;
            }
            let allowed: Vec<String> = values.iter().map(|v| format!("\"{v}\"")).collect();
            let mut diagnostic = Diagnostic::new(
                Code::EnumValue,
                format!("\"{literal}\" is not one of the values of `{expected}`"),
            )
            .primary(file, span, "not an allowed value")
            .note(format!("the allowed values are {}", allowed.join(", ")));
            if let Some(suggestion) = did_you_mean(literal, values.iter().map(String::as_str)) {
                let quoted = format!("{suggestion:?}");
                diagnostic = diagnostic.did_you_mean(file, span, &quoted, quoted.clone());
            }
            self.error(diagnostic);
        }
    }

    pub(crate) fn expr(&mut self, expr: &Expr, scope: &mut Scope) -> Type {
        let ty = self.infer(expr, scope);
        self.program
            .expression_types
            .push((scope.file, expr.span, ty.clone()));
        ty
    }

    fn infer(&mut self, expr: &Expr, scope: &mut Scope) -> Type {
        let file = scope.file;
        match &expr.kind {
            ExprKind::Int(_) => Type::Int,
            ExprKind::Float(_) => Type::Float,
            ExprKind::String(_) => Type::String,
            ExprKind::Bool(_) => Type::Bool,
            ExprKind::Duration(_) => Type::Duration,
            ExprKind::Timestamp(_) => Type::Timestamp,
            ExprKind::Now => Type::Timestamp,
            ExprKind::Profile | ExprKind::Journey => {
                let word = if matches!(expr.kind, ExprKind::Profile) {
                    "profile"
                } else {
                    "journey"
                };
                self.error(
                    Diagnostic::new(
                        Code::TypeMismatch,
                        format!("`{word}` is not a value on its own"),
                    )
                    .primary(file, expr.span, "read one of its fields")
                    .help(format!("write `{word}.field`")),
                );
                Type::Error
            }
            ExprKind::List(items) => self.list(items, scope),
            ExprKind::Record(record) => {
                self.error(
                    Diagnostic::new(Code::TypeMismatch, "a record is not a value here")
                        .primary(file, record.span, "record")
                        .note("records appear as send arguments and in test events, traits and profiles"),
                );
                Type::Error
            }
            ExprKind::Name(name) => self.name(name, scope),
            ExprKind::Field { base, field } => {
                let base_type = self.record_base(base, scope);
                self.field(&base_type, field, file)
            }
            ExprKind::Unary { op, operand } => {
                let ty = self.expr(operand, scope);
                match op {
                    UnaryOp::Not => {
                        if !matches!(ty, Type::Bool | Type::Error) {
                            self.mismatch(file, operand.span, "`not` needs a `bool`", &ty);
                        }
                        Type::Bool
                    }
                    UnaryOp::Neg => match ty.required() {
                        Type::Int | Type::Float | Type::Duration | Type::Error => ty,
                        _ => {
                            self.mismatch(
                                file,
                                operand.span,
                                "`-` needs a number or a duration",
                                &ty,
                            );
                            Type::Error
                        }
                    },
                }
            }
            ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, scope, expr.span),
            ExprKind::IsSet { operand, .. } => {
                self.expr(operand, scope);
                Type::Bool
            }
            ExprKind::History(history) => {
                let Some(fields) = self.event_fields(&history.event, file) else {
                    if let Some(filter) = &history.filter {
                        // Still check the filter's own names, without event fields.
                        let mut inner = scope.clone();
                        inner.matched = None;
                        let _ = self.expr(filter, &mut inner);
                    }
                    return Type::Error;
                };
                if let Some(filter) = &history.filter {
                    let mut inner = scope.clone();
                    inner.matched = Some((history.event.name.clone(), fields.clone()));
                    self.condition(filter, &mut inner, "a `where` filter");
                    self.merge_used(scope, &inner);
                }
                if let Some(Window::SinceEntry(span)) = history.window {
                    if let super::expr::SinceEntry::Forbidden(place) = scope.since_entry {
                        self.error(
                            Diagnostic::new(
                                Code::SinceEntryNotAllowed,
                                format!("`since entry` is not allowed in {place}"),
                            )
                            .primary(file, span, "no entry to count from here")
                            .help("use a window such as `within 7d`"),
                        );
                    }
                }
                match history.function {
                    HistoryFn::Count => Type::Int,
                    HistoryFn::Did => Type::Bool,
                    HistoryFn::Last => Type::Record(fields.clone()).optional(),
                    HistoryFn::Sum => {
                        match &history.field {
                            None => self.error(
                                Diagnostic::new(
                                    Code::TypeMismatch,
                                    "`sum` needs a numeric field: `sum(E.field ...)`",
                                )
                                .primary(
                                    file,
                                    history.event.span,
                                    "which field?",
                                ),
                            ),
                            Some(field) => {
                                let ty = self.field(&Type::Record(fields.clone()), field, file);
                                if !ty.required().is_numeric() {
                                    self.mismatch(
                                        file,
                                        field.span,
                                        "`sum` adds up a number field",
                                        &ty,
                                    );
                                }
                            }
                        }
                        Type::Float
                    }
                }
            }
            ExprKind::Call { function, args } => self.call(function, args, scope),
        }
    }

    /// The type of the base of `base.field`: `profile`, `journey` and bindings are records here
    /// (and only here).
    fn record_base(&mut self, base: &Expr, scope: &mut Scope) -> Type {
        let ty = match &base.kind {
            ExprKind::Profile => Type::Record(self.program.profile.clone()),
            ExprKind::Journey => Type::Record(journey_record(scope.file)),
            ExprKind::Name(name) => {
                let shadowed = scope
                    .matched
                    .as_ref()
                    .is_some_and(|(_, fields)| fields.field(&name.name).is_some());
                match scope.bindings.iter().rposition(|b| b.name == name.name) {
                    Some(index) if !shadowed => {
                        scope.bindings[index].used = true;
                        Type::Record(scope.bindings[index].fields.clone())
                    }
                    _ => return self.expr(base, scope),
                }
            }
            _ => return self.expr(base, scope),
        };
        self.program
            .expression_types
            .push((scope.file, base.span, ty.clone()));
        ty
    }

    /// Marks in `outer` the bindings that an inner scope (a copy) used.
    pub(crate) fn merge_used(&self, outer: &mut Scope, inner: &Scope) {
        for (outer, inner) in outer.bindings.iter_mut().zip(&inner.bindings) {
            outer.used |= inner.used;
        }
    }

    fn mismatch(&mut self, file: FileId, span: Span, what: &str, found: &Type) {
        if found.is_error() {
            return;
        }
        self.error(
            Diagnostic::new(Code::TypeMismatch, format!("{what}, found `{found}`")).primary(
                file,
                span,
                format!("this is `{found}`"),
            ),
        );
    }

    fn list(&mut self, items: &[Expr], scope: &mut Scope) -> Type {
        let mut element: Option<Type> = None;
        for item in items {
            let ty = self.expr(item, scope);
            element = Some(match element {
                None => ty,
                Some(so_far) if ty.assignable_to(&so_far) => so_far,
                Some(so_far) if so_far.assignable_to(&ty) => ty,
                Some(so_far) => {
                    self.mismatch(
                        scope.file,
                        item.span,
                        &format!("list items must share a type (`{so_far}`)"),
                        &ty,
                    );
                    so_far
                }
            });
        }
        match element {
            Some(Type::Enum(_)) => Type::List(Box::new(Type::String)),
            Some(ty) => Type::List(Box::new(ty)),
            None => Type::EmptyList,
        }
    }

    fn name(&mut self, name: &Ident, scope: &mut Scope) -> Type {
        let file = scope.file;
        let binding = scope.bindings.iter().rposition(|b| b.name == name.name);
        let segment = self.program.segments.contains_key(&name.name);
        if let Some((event, fields)) = &scope.matched {
            if let Some(field) = fields.field(&name.name) {
                if binding.is_some() || segment {
                    let what = if binding.is_some() {
                        "binding"
                    } else {
                        "segment"
                    };
                    self.error(
                        Diagnostic::new(
                            Code::FieldShadowsName,
                            format!("`{}` is a field of `{event}` here, not the {what} of that name", name.name),
                        )
                        .primary(file, name.span, format!("the field `{event}.{}`", name.name))
                        .help(format!("inside `where`, bare names are fields of the event; rename the {what} to reach it")),
                    );
                }
                return field.ty.clone();
            }
        }
        if let Some(index) = binding {
            scope.bindings[index].used = true;
            let binding = &scope.bindings[index];
            self.error(
                Diagnostic::new(
                    Code::TypeMismatch,
                    format!(
                        "`{}` is an event bound with `as`, not a value on its own",
                        binding.name
                    ),
                )
                .primary(file, name.span, "read one of its fields")
                .help(format!("write `{}.field`", binding.name)),
            );
            return Type::Error;
        }
        if segment {
            if !self.used_segments.contains(&name.name) {
                self.used_segments.push(name.name.clone());
            }
            return Type::Bool;
        }
        let mut known: Vec<String> = scope.bindings.iter().map(|b| b.name.clone()).collect();
        known.extend(self.program.segments.keys().cloned());
        if let Some((_, fields)) = &scope.matched {
            known.extend(fields.names().map(String::from));
        }
        let what = if scope.matched.is_some() {
            "field, binding or segment"
        } else {
            "binding or segment"
        };
        self.unknown(
            Code::UnknownName,
            what,
            name,
            file,
            known.iter().map(String::as_str),
        );
        Type::Error
    }

    /// The type of `base.field`.
    pub(crate) fn field(&mut self, base: &Type, field: &Ident, file: FileId) -> Type {
        let (record, optional) = match base {
            Type::Record(record) => (record.clone(), false),
            Type::Optional(inner) => match &**inner {
                Type::Record(record) => (record.clone(), true),
                _ => {
                    self.mismatch(file, field.span, "only records have fields", base);
                    return Type::Error;
                }
            },
            Type::Error => return Type::Error,
            other => {
                self.mismatch(file, field.span, "only records have fields", other);
                return Type::Error;
            }
        };
        match record.field(&field.name) {
            Some(found) if optional => found.ty.clone().optional(),
            Some(found) => found.ty.clone(),
            None => {
                self.unknown(Code::UnknownField, "field", field, file, record.names());
                Type::Error
            }
        }
    }

    fn binary(
        &mut self,
        op: BinaryOp,
        lhs: &Expr,
        rhs: &Expr,
        scope: &mut Scope,
        span: Span,
    ) -> Type {
        let file = scope.file;
        let left = self.expr(lhs, scope);
        let right = self.expr(rhs, scope);
        if left.is_error() || right.is_error() {
            return match op {
                BinaryOp::Or
                | BinaryOp::And
                | BinaryOp::Eq
                | BinaryOp::Ne
                | BinaryOp::Lt
                | BinaryOp::Le
                | BinaryOp::Gt
                | BinaryOp::Ge
                | BinaryOp::In => Type::Bool,
                _ => Type::Error,
            };
        }
        match op {
            BinaryOp::Or | BinaryOp::And => {
                for (side, ty) in [(lhs, &left), (rhs, &right)] {
                    if *ty != Type::Bool {
                        let word = op.as_str();
                        if ty.is_optional() && *ty.required() == Type::Bool {
                            self.error(
                                Diagnostic::new(
                                    Code::OptionalValue,
                                    format!("`{word}` needs a `bool`, not `bool?`"),
                                )
                                .primary(file, side.span, "may be absent")
                                .help("say what absence means: `x ?? false`"),
                            );
                        } else {
                            self.mismatch(
                                file,
                                side.span,
                                &format!("`{word}` needs `bool` operands"),
                                ty,
                            );
                        }
                    }
                }
                Type::Bool
            }
            BinaryOp::Eq | BinaryOp::Ne => {
                if !left.comparable_with(&right) {
                    self.error(
                        Diagnostic::new(
                            Code::TypeMismatch,
                            format!("cannot compare `{left}` with `{right}`"),
                        )
                        .primary(file, span, "these never compare equal"),
                    );
                } else {
                    self.check_enum_literal(rhs, &left, file);
                    self.check_enum_literal(lhs, &right, file);
                }
                Type::Bool
            }
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                for (side, ty) in [(lhs, &left), (rhs, &right)] {
                    if ty.is_optional() {
                        self.error(
                            Diagnostic::new(
                                Code::OptionalValue,
                                format!(
                                    "`{}` needs a value, but this may be absent (`{ty}`)",
                                    op.as_str()
                                ),
                            )
                            .primary(file, side.span, "may be absent")
                            .help("give a default with `??`, such as `x ?? 0`"),
                        );
                    }
                }
                let (a, b) = (left.required(), right.required());
                let ordered = (a.is_numeric() && b.is_numeric())
                    || (a == b && matches!(a, Type::Timestamp | Type::Duration | Type::String));
                if !ordered {
                    self.error(
                        Diagnostic::new(
                            Code::TypeMismatch,
                            format!("cannot order `{left}` and `{right}`"),
                        )
                        .primary(file, span, "not comparable with `<`, `<=`, `>`, `>=`")
                        .note("numbers, timestamps, durations and strings can be ordered"),
                    );
                }
                Type::Bool
            }
            BinaryOp::In => {
                match right.required() {
                    Type::List(item) => {
                        if !left.required().comparable_with(item) {
                            self.error(
                                Diagnostic::new(
                                    Code::TypeMismatch,
                                    format!("cannot look for `{left}` in `{right}`"),
                                )
                                .primary(
                                    file,
                                    span,
                                    "the types differ",
                                ),
                            );
                        }
                        self.check_enum_literal(rhs, &left, file);
                    }
                    Type::EmptyList => {}
                    _ => self.mismatch(file, rhs.span, "`in` needs a list on its right", &right),
                }
                Type::Bool
            }
            BinaryOp::Coalesce => {
                let wanted = left.required().clone();
                let right = literal_for_enum(rhs, &wanted).unwrap_or(right);
                if !right.assignable_to(&wanted) && !wanted.assignable_to(right.required()) {
                    self.error(
                        Diagnostic::new(
                            Code::TypeMismatch,
                            format!("the default of `??` must be a `{wanted}`, found `{right}`"),
                        )
                        .primary(
                            file,
                            rhs.span,
                            format!("this is `{right}`"),
                        ),
                    );
                }
                self.check_enum_literal(rhs, &wanted, file);
                let result = if wanted == Type::Int && *right.required() == Type::Float {
                    Type::Float
                } else {
                    wanted
                };
                if right.is_optional() {
                    result.optional()
                } else {
                    result
                }
            }
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div => {
                let optional = left.is_optional() || right.is_optional();
                let (a, b) = (left.required(), right.required());
                use Type::*;
                let result = match (op, a, b) {
                    (BinaryOp::Div, x, y) if x.is_numeric() && y.is_numeric() => Some(Float),
                    (_, Int, Int) => Some(Int),
                    (_, x, y) if x.is_numeric() && y.is_numeric() => Some(Float),
                    (BinaryOp::Add, Timestamp, Duration) | (BinaryOp::Add, Duration, Timestamp) => {
                        Some(Timestamp)
                    }
                    (BinaryOp::Sub, Timestamp, Duration) => Some(Timestamp),
                    (BinaryOp::Sub, Timestamp, Timestamp) => Some(Duration),
                    (BinaryOp::Add | BinaryOp::Sub, Duration, Duration) => Some(Duration),
                    (BinaryOp::Mul, Duration, n) | (BinaryOp::Mul, n, Duration)
                        if n.is_numeric() =>
                    {
                        Some(Duration)
                    }
                    (BinaryOp::Div, Duration, n) if n.is_numeric() => Some(Duration),
                    _ => None,
                };
                match result {
                    Some(ty) if optional => ty.optional(),
                    Some(ty) => ty,
                    None => {
                        self.error(
                            Diagnostic::new(
                                Code::TypeMismatch,
                                format!("cannot apply `{}` to `{left}` and `{right}`", op.as_str()),
                            )
                            .primary(file, span, "no such operation")
                            .note("arithmetic works on numbers; timestamps and durations add and subtract"),
                        );
                        Type::Error
                    }
                }
            }
        }
    }

    fn call(&mut self, function: &Ident, args: &[Expr], scope: &mut Scope) -> Type {
        use Type::*;
        let file = scope.file;
        let (params, result): (&[Type], Type) = match function.name.as_str() {
            "hour" => (&[Timestamp], Int),
            "weekday" => (&[Timestamp], weekday_type()),
            "date" => (&[Timestamp], String),
            "lower" | "upper" => (&[String], String),
            "starts_with" | "ends_with" | "contains" => (&[String, String], Bool),
            "len" => {
                if args.len() == 1 {
                    let ty = self.expr(&args[0], scope);
                    if !matches!(
                        ty.required(),
                        String | List(_) | EmptyList | Enum(_) | Error
                    ) {
                        self.mismatch(file, args[0].span, "`len` needs a string or a list", &ty);
                    }
                    return if ty.is_optional() {
                        Int.optional()
                    } else {
                        Int
                    };
                }
                (&[String], Int)
            }
            _ => {
                const FUNCTIONS: [&str; 13] = [
                    "count",
                    "did",
                    "last",
                    "sum",
                    "hour",
                    "weekday",
                    "date",
                    "lower",
                    "upper",
                    "starts_with",
                    "ends_with",
                    "contains",
                    "len",
                ];
                self.unknown(Code::UnknownFunction, "function", function, file, FUNCTIONS);
                for arg in args {
                    self.expr(arg, scope);
                }
                return Error;
            }
        };
        if args.len() != params.len() {
            self.error(
                Diagnostic::new(
                    Code::TypeMismatch,
                    format!(
                        "`{}` takes {} argument{}, found {}",
                        function.name,
                        params.len(),
                        if params.len() == 1 { "" } else { "s" },
                        args.len()
                    ),
                )
                .primary(file, function.span, "wrong number of arguments"),
            );
            for arg in args {
                self.expr(arg, scope);
            }
            return result;
        }
        let mut optional = false;
        for (arg, param) in args.iter().zip(params) {
            let ty = self.expr(arg, scope);
            optional |= ty.is_optional();
            if !ty.required().assignable_to(param) {
                self.mismatch(
                    file,
                    arg.span,
                    &format!("`{}` needs a `{param}`", function.name),
                    &ty,
                );
            }
        }
        if optional {
            result.optional()
        } else {
            result
        }
    }

    /// Checks a record literal against a record type: unknown keys, value types, and (when
    /// `required`) that every required field is present.
    pub(crate) fn record(
        &mut self,
        record: &Record,
        expected: &RecordType,
        scope: &mut Scope,
        what: &str,
        required: &dyn Fn(&Field) -> bool,
    ) {
        let file = scope.file;
        let mut seen: Vec<&str> = Vec::new();
        for entry in &record.entries {
            let key = &entry.key;
            if seen.contains(&key.name.as_str()) {
                self.error(
                    Diagnostic::new(
                        Code::DuplicateName,
                        format!("`{}` is given twice", key.name),
                    )
                    .primary(file, key.span, "given again here"),
                );
                continue;
            }
            seen.push(&key.name);
            let Some(field) = expected.field(&key.name) else {
                let mut diagnostic = Diagnostic::new(
                    Code::UnknownArgument,
                    format!("{what} has no field `{}`", key.name),
                )
                .primary(file, key.span, "unknown field");
                if let Some(suggestion) = did_you_mean(&key.name, expected.names()) {
                    let shown = format!("`{suggestion}`");
                    diagnostic = diagnostic.did_you_mean(file, key.span, &shown, suggestion);
                } else {
                    let names: Vec<String> = expected.names().map(|n| format!("`{n}`")).collect();
                    if !names.is_empty() {
                        diagnostic =
                            diagnostic.note(format!("its fields are {}", names.join(", ")));
                    }
                }
                self.error(diagnostic);
                self.expr(&entry.value, scope);
                continue;
            };
            match (&entry.value.kind, field.ty.required()) {
                (ExprKind::Record(nested), Type::Record(nested_type)) => {
                    let nested_type = nested_type.clone();
                    let label = format!("`{}`", key.name);
                    self.record(nested, &nested_type, scope, &label, &|f| {
                        !f.ty.is_optional()
                    });
                }
                _ => {
                    let label = format!("`{}`", key.name);
                    self.expect(&entry.value, scope, &field.ty, &label);
                }
            }
        }
        let missing: Vec<&Field> = expected
            .fields
            .iter()
            .filter(|f| required(f) && !seen.contains(&f.name.as_str()))
            .collect();
        if !missing.is_empty() {
            let names: Vec<String> = missing
                .iter()
                .map(|f| format!("`{}: {}`", f.name, f.ty))
                .collect();
            // The fix: each missing field with a placeholder of its type, after the last entry.
            let added: Vec<String> = missing
                .iter()
                .map(|f| format!("{}: {}", f.name, placeholder(&f.ty)))
                .collect();
            let (at, text) = match record.entries.last() {
                Some(last) => (last.value.span.end, format!(", {}", added.join(", "))),
                None => (record.span.start + 1, format!(" {} ", added.join(", "))),
            };
            self.error(
                Diagnostic::new(
                    Code::MissingArgument,
                    format!("{what} is missing {}", names.join(", ")),
                )
                .primary(file, record.span, "incomplete")
                .help("add the missing fields (optional ones, with `?`, may be left out)")
                .fix(
                    format!("fill in {}", names.join(", ")),
                    file,
                    Span { start: at, end: at },
                    text,
                ),
            );
        }
    }
}

/// A value of type `ty` to start from, written in the language.
fn placeholder(ty: &Type) -> String {
    match ty.required() {
        Type::Bool => "false".into(),
        Type::Int => "0".into(),
        Type::Float => "0.0".into(),
        Type::Timestamp => "now".into(),
        Type::Duration => "1d".into(),
        Type::Enum(values) => values.first().map_or("\"\"".into(), |v| format!("{v:?}")),
        Type::List(_) | Type::EmptyList => "[]".into(),
        Type::Record(record) => {
            let fields: Vec<String> = record
                .fields
                .iter()
                .filter(|f| !f.ty.is_optional())
                .map(|f| format!("{}: {}", f.name, placeholder(&f.ty)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        _ => "\"\"".into(),
    }
}
