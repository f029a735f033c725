//! The types of the language (LANGUAGE.md §3): what the checker infers for every expression.

use std::fmt;
use std::sync::Arc;

use crate::source::{FileId, Span};

#[derive(Clone, PartialEq)]
pub enum Type {
    Bool,
    Int,
    Float,
    String,
    Timestamp,
    Duration,
    /// A string enum: its allowed values, in declaration order.
    Enum(Arc<[String]>),
    List(Box<Type>),
    Record(Arc<RecordType>),
    Optional(Box<Type>),
    /// The type of `[]`: a list of anything.
    EmptyList,
    /// A previous error: accepted everywhere so one mistake gives one diagnostic.
    Error,
}

/// The fields of an event, the profile, a nested record or a template's parameters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordType {
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub ty: Type,
    /// A profile default (`points: int = 0`): never missing.
    pub has_default: bool,
    pub doc: Option<String>,
    pub file: FileId,
    pub span: Span,
}

impl RecordType {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> + Clone {
        self.fields.iter().map(|f| f.name.as_str())
    }

    /// Whether the two are the same record type wherever they were declared: the same field
    /// names in the same order (the VM's records are positional), of the same types.
    pub fn same_shape(&self, other: &RecordType) -> bool {
        self.fields.len() == other.fields.len()
            && self
                .fields
                .iter()
                .zip(&other.fields)
                .all(|(a, b)| a.name == b.name && a.ty.same_type(&b.ty))
    }
}

impl Type {
    pub fn optional(self) -> Type {
        match self {
            Type::Optional(_) | Type::Error => self,
            other => Type::Optional(Box::new(other)),
        }
    }

    pub fn is_optional(&self) -> bool {
        matches!(self, Type::Optional(_))
    }

    /// The type without its `?`.
    pub fn required(&self) -> &Type {
        match self {
            Type::Optional(inner) => inner,
            other => other,
        }
    }

    pub fn is_numeric(&self) -> bool {
        matches!(self, Type::Int | Type::Float | Type::Error)
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Type::Error)
    }

    /// Whether a value of type `self` may be used where `expected` is wanted: the same type,
    /// `int` for `float`, `T` for `T?`, an enum for a string, a subset enum for an enum.
    pub fn assignable_to(&self, expected: &Type) -> bool {
        match (self, expected) {
            (Type::Error, _) | (_, Type::Error) => true,
            (Type::Optional(a), Type::Optional(b)) => a.assignable_to(b),
            (a, Type::Optional(b)) => a.assignable_to(b),
            (Type::Int, Type::Float) => true,
            (Type::Enum(_), Type::String) => true,
            (Type::Enum(a), Type::Enum(b)) => a.iter().all(|v| b.contains(v)),
            (Type::EmptyList, Type::List(_)) => true,
            (Type::List(a), Type::List(b)) => a.assignable_to(b),
            (Type::Record(a), Type::Record(b)) => a.same_shape(b),
            (a, b) => a == b,
        }
    }

    /// Whether the two are the same type (records compared by shape, not by declaration).
    pub fn same_type(&self, other: &Type) -> bool {
        match (self, other) {
            (Type::List(a), Type::List(b)) | (Type::Optional(a), Type::Optional(b)) => {
                a.same_type(b)
            }
            (Type::Record(a), Type::Record(b)) => a.same_shape(b),
            (a, b) => a == b,
        }
    }

    /// Whether two values can be compared with `==`: same type up to optionality and widening.
    pub fn comparable_with(&self, other: &Type) -> bool {
        let (a, b) = (self.required(), other.required());
        a.assignable_to(b) || b.assignable_to(a) || matches!((a, b), (Type::String, Type::Enum(_)))
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Bool => f.write_str("bool"),
            Type::Int => f.write_str("int"),
            Type::Float => f.write_str("float"),
            Type::String => f.write_str("string"),
            Type::Timestamp => f.write_str("timestamp"),
            Type::Duration => f.write_str("duration"),
            Type::Enum(values) => {
                let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
                f.write_str(&quoted.join(" | "))
            }
            Type::List(item) => write!(f, "list<{item}>"),
            Type::Record(record) => {
                f.write_str("{ ")?;
                for (i, field) in record.fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}: {}", field.name, field.ty)?;
                }
                f.write_str(" }")
            }
            Type::Optional(inner) if matches!(**inner, Type::Enum(_)) => write!(f, "({inner})?"),
            Type::Optional(inner) => write!(f, "{inner}?"),
            Type::EmptyList => f.write_str("list"),
            Type::Error => f.write_str("unknown"),
        }
    }
}

impl fmt::Debug for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[(&str, Type)], file: u32) -> Type {
        Type::Record(Arc::new(RecordType {
            fields: fields
                .iter()
                .map(|(name, ty)| Field {
                    name: name.to_string(),
                    ty: ty.clone(),
                    has_default: false,
                    doc: Some(format!("declared in file {file}")),
                    file: FileId(file),
                    span: Span::new(file as usize, file as usize + 1),
                })
                .collect(),
        }))
    }

    #[test]
    fn records_are_the_same_type_by_shape_not_by_declaration() {
        let item = |file| {
            record(
                &[("sku", Type::String), ("brand", Type::String.optional())],
                file,
            )
        };
        assert!(item(0).assignable_to(&item(1)));
        assert!(Type::List(Box::new(item(0))).assignable_to(&Type::List(Box::new(item(2)))));
        let reordered = record(
            &[("brand", Type::String.optional()), ("sku", Type::String)],
            1,
        );
        assert!(!item(0).assignable_to(&reordered), "records are positional");
        let widened = record(&[("sku", Type::String), ("brand", Type::Int)], 1);
        assert!(!item(0).assignable_to(&widened));
    }
}
