//! The values the VM computes with.

use std::fmt;
use std::sync::Arc;

/// A value on the VM's stack, in a slot, a profile or an event.
#[derive(Clone, PartialEq)]
pub enum Value {
    /// An optional without a value.
    Absent,
    /// A profile field the user never set and that has no default: a condition that reads one
    /// is false as a whole (LANGUAGE.md §3.1), so every operation passes it on.
    Missing,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Arc<str>),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    /// Milliseconds.
    Duration(i64),
    List(Arc<[Value]>),
    /// A record's fields in the order of its type.
    Record(Arc<[Value]>),
}

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Str(Arc::from(s))
    }

    /// Whether the value is there (neither absent nor missing).
    pub fn is_present(&self) -> bool {
        !matches!(self, Value::Absent | Value::Missing)
    }

    /// A condition's outcome: only `true` is true (absent and missing are false).
    pub fn is_true(&self) -> bool {
        matches!(self, Value::Bool(true))
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Absent => f.write_str("absent"),
            Value::Missing => f.write_str("missing"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(n) => write!(f, "{n:?}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Timestamp(ms) => write!(f, "@{ms}ms"),
            Value::Duration(ms) => write!(f, "{ms}ms"),
            Value::List(items) => f.debug_list().entries(items.iter()).finish(),
            Value::Record(fields) => {
                f.write_str("{")?;
                for (i, v) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v:?}")?;
                }
                f.write_str("}")
            }
        }
    }
}
