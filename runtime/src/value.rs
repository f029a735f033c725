//! The values the VM computes with.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A value on the VM's stack, in a slot, a profile or an event.
///
/// **Invariant:** the layout is defined (`repr(u8)`): a tag byte at offset 0 (`tag`), then the
/// variant's fields laid out as a `repr(C)` struct after it — a payload word at offset 8, a
/// short string's length at offset 1 and its bytes at 8..24. Compiled predicates read values
/// in place by it (`jit`), and telling the variant is one byte compare (a niche-encoded
/// `Value` took 18 instructions). A string of up to `Str::INLINE` bytes is always `Short`,
/// a longer one always `Long`: `Value::str` and `From<Str>` choose.
#[derive(Clone, PartialEq)]
#[repr(u8)]
pub enum Value {
    /// An optional without a value.
    Absent = tag::ABSENT,
    /// A profile field the user never set and that has no default: a condition that reads one
    /// is false as a whole (LANGUAGE.md §3.1), so every operation passes it on.
    Missing = tag::MISSING,
    Bool(bool) = tag::BOOL,
    Int(i64) = tag::INT,
    Float(f64) = tag::FLOAT,
    /// A string of up to `Str::INLINE` bytes, in place: the first `len` of `bytes`, the rest
    /// zero (so that equal strings have equal words).
    Short {
        len: Len,
        bytes: Inline,
    } = tag::SHORT,
    /// A string longer than `Str::INLINE` bytes, shared.
    Long(Arc<str>) = tag::LONG,
    /// Milliseconds since the Unix epoch.
    Timestamp(i64) = tag::TIMESTAMP,
    /// Milliseconds.
    Duration(i64) = tag::DURATION,
    List(Arc<[Value]>) = tag::LIST,
    /// A record's fields in the order of its type.
    Record(Arc<[Value]>) = tag::RECORD,
}

/// `Value`'s tags: the byte at offset 0 of every value.
pub mod tag {
    pub const ABSENT: u8 = 0;
    pub const MISSING: u8 = 1;
    pub const BOOL: u8 = 2;
    pub const INT: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const SHORT: u8 = 5;
    pub const LONG: u8 = 6;
    pub const TIMESTAMP: u8 = 7;
    pub const DURATION: u8 = 8;
    pub const LIST: u8 = 9;
    pub const RECORD: u8 = 10;
    /// The greatest tag: a byte above it at a value's place is not a value (an `Option`'s
    /// `None`, for instance).
    pub const LAST: u8 = RECORD;
}

/// The bytes of a short string, 8-aligned so that a `Value` is copied and compared as a tag, a
/// length and whole words. (With the bytes from offset 2, every clone went through a misaligned
/// copy that stalled store forwarding, some 8 ns a clone.)
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(align(8))]
pub struct Inline([u8; Str::INLINE]);

/// A short string's length, 0 to `Str::INLINE`: a type that holds no other, so that no
/// `Value::Short`, however made, claims more bytes than it has (compiled predicates read that
/// many from its place).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
#[rustfmt::skip]
pub enum Len {
    L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12, L13, L14, L15, L16,
}

impl Len {
    const ALL: [Len; Str::INLINE + 1] = {
        use Len::*;
        [
            L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12, L13, L14, L15, L16,
        ]
    };
}

/// How `s` is held: in place (length, bytes) when it is short, else shared.
fn hold(s: &str) -> Result<(Len, Inline), Arc<str>> {
    match Len::ALL.get(s.len()) {
        Some(len) => {
            let mut bytes = [0; Str::INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Ok((*len, Inline(bytes)))
        }
        None => Err(Arc::from(s)),
    }
}

/// The first `len` of `bytes`.
#[inline]
fn inline_bytes(len: Len, bytes: &Inline) -> &[u8] {
    bytes.0.get(..len as usize).unwrap_or_default()
}

/// `inline_bytes` as a string. Always valid UTF-8: the bytes were copied from a `str`
/// (`hold`). (Checked all the same, which costs: callers that only compare or hash take
/// `inline_bytes`.)
fn inline_str(len: Len, bytes: &Inline) -> &str {
    std::str::from_utf8(inline_bytes(len, bytes)).unwrap_or_default()
}

impl Value {
    pub fn str(s: &str) -> Value {
        match hold(s) {
            Ok((len, bytes)) => Value::Short { len, bytes },
            Err(shared) => Value::Long(shared),
        }
    }

    /// The string this value is, if it is one.
    #[inline]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Short { len, bytes } => Some(inline_str(*len, bytes)),
            Value::Long(s) => Some(s),
            _ => None,
        }
    }

    /// The UTF-8 bytes of the string this value is, if it is one.
    #[inline]
    pub fn str_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Short { len, bytes } => Some(inline_bytes(*len, bytes)),
            Value::Long(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// The string this value is, as a `Str`.
    pub fn to_str(&self) -> Option<Str> {
        match self {
            Value::Short { len, bytes } => Some(Str(Repr::Inline(*len, *bytes))),
            Value::Long(s) => Some(Str(Repr::Shared(s.clone()))),
            _ => None,
        }
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

impl From<Str> for Value {
    fn from(s: Str) -> Value {
        match s.0 {
            Repr::Inline(len, bytes) => Value::Short { len, bytes },
            Repr::Shared(s) => Value::Long(s),
        }
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
            Value::Short { .. } | Value::Long(_) => write!(f, "{:?}", self.as_str().unwrap_or("")),
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

/// A string kept apart from a `Value` (user ids, journey names, keys): the same two forms.
/// Up to `Str::INLINE` bytes it is kept in place — no allocation, no reference count, no
/// pointer to follow: most strings a journey reads (ids, plans, countries, cart keys) are that
/// short. Longer ones are shared behind an `Arc`.
#[derive(Clone)]
pub struct Str(Repr);

#[derive(Clone)]
enum Repr {
    Inline(Len, Inline),
    Shared(Arc<str>),
}

impl Str {
    /// The longest string kept in place (so that a `Value` stays 24 bytes).
    pub const INLINE: usize = 16;

    pub fn new(s: &str) -> Str {
        Str(match hold(s) {
            Ok((len, bytes)) => Repr::Inline(len, bytes),
            Err(shared) => Repr::Shared(shared),
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline(len, bytes) => inline_bytes(*len, bytes),
            Repr::Shared(s) => s.as_bytes(),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline(len, bytes) => inline_str(*len, bytes),
            Repr::Shared(s) => s,
        }
    }

    /// The shared storage of a string too long to keep in place.
    pub fn shared(&self) -> Option<&Arc<str>> {
        match &self.0 {
            Repr::Inline(..) => None,
            Repr::Shared(s) => Some(s),
        }
    }
}

impl Default for Str {
    fn default() -> Str {
        Str::new("")
    }
}

impl From<Arc<str>> for Str {
    fn from(s: Arc<str>) -> Str {
        if s.len() <= Str::INLINE {
            Str::new(&s)
        } else {
            Str(Repr::Shared(s))
        }
    }
}

impl std::ops::Deref for Str {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Str {
    fn eq(&self, other: &Str) -> bool {
        match (&self.0, &other.0) {
            // Word compares, no `memcmp` call: in-place bytes past the length are zero
            // (`hold`), so equal strings have equal arrays.
            (Repr::Inline(a, x), Repr::Inline(b, y)) => a == b && x == y,
            (Repr::Shared(a), Repr::Shared(b)) if Arc::ptr_eq(a, b) => true,
            _ => self.as_bytes() == other.as_bytes(),
        }
    }
}

impl Eq for Str {}

impl PartialOrd for Str {
    fn partial_cmp(&self, other: &Str) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Str {
    /// UTF-8 byte order is the order of the characters.
    fn cmp(&self, other: &Str) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

/// Hashed as its `str` is, so that maps keyed by `Str` are looked up by `&str`.
impl Hash for Str {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for Str {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_are_kept_in_place_and_long_ones_shared() {
        for s in [
            "",
            "US",
            "exactly-twenty-two-by",
            "twenty-three bytes long",
            "çok güzel",
        ] {
            let value = Str::new(s);
            assert_eq!(value.as_str(), s);
            assert_eq!(value.shared().is_some(), s.len() > Str::INLINE, "{s}");
            assert_eq!(Str::from(Arc::<str>::from(s)), value);
            let as_value = Value::str(s);
            assert_eq!(as_value.as_str(), Some(s));
            assert_eq!(
                matches!(as_value, Value::Long(_)),
                s.len() > Str::INLINE,
                "{s}"
            );
            assert_eq!(Value::from(value.clone()), as_value);
            assert_eq!(as_value.to_str(), Some(value));
        }
        assert_eq!(std::mem::size_of::<Value>(), 24);
        // An unset profile field costs no more than a set one.
        assert_eq!(std::mem::size_of::<Option<Value>>(), 24);
        assert!(Str::new("a") < Str::new("b") && Str::new("ab") > Str::new("a"));
        assert!(
            Str::new("é") > Str::new("z"),
            "byte order is character order"
        );
    }
}
