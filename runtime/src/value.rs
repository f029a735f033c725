//! The values the VM computes with.

use std::fmt;
use std::hash::{Hash, Hasher};
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
    Str(Str),
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
        Value::Str(Str::new(s))
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

/// A string value. Up to `Str::INLINE` bytes it is kept in place — no allocation, no reference
/// count, no pointer to follow: most strings a journey reads (ids, plans, countries, cart keys)
/// are that short. Longer ones are shared behind an `Arc`.
#[derive(Clone)]
pub struct Str(Repr);

#[derive(Clone)]
enum Repr {
    Inline(Inline),
    Shared(Arc<str>),
}

/// `len` bytes of UTF-8 at the start of `bytes`.
///
/// The bytes start 8-aligned, and nothing lies between the value's tag and them but `len`: a
/// `Value` is then copied as a tag, a length and whole words. (With 22 bytes from offset 2, as
/// before, every `Value` clone went through a misaligned copy that stalled store forwarding,
/// some 8 ns a clone.) `len` is an enum so that its unused values leave `Value` room for its
/// own tag: a `Value` stays 24 bytes.
#[derive(Clone, Copy)]
struct Inline {
    len: Len,
    bytes: Aligned,
}

#[derive(Clone, Copy)]
#[repr(align(8))]
struct Aligned([u8; Str::INLINE]);

/// A length of 0 to `Str::INLINE` bytes.
#[derive(Clone, Copy)]
#[repr(u8)]
#[rustfmt::skip]
enum Len {
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

impl Str {
    /// The longest string kept in place (so that a `Value` stays 24 bytes).
    pub const INLINE: usize = 16;

    pub fn new(s: &str) -> Str {
        if s.len() <= Str::INLINE {
            let mut bytes = [0; Str::INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Str(Repr::Inline(Inline {
                len: Len::ALL[s.len()],
                bytes: Aligned(bytes),
            }))
        } else {
            Str(Repr::Shared(Arc::from(s)))
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline(Inline { len, bytes }) => bytes.0.get(..*len as usize).unwrap_or_default(),
            Repr::Shared(s) => s.as_bytes(),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Always valid: the bytes were copied from a `str` (`Str::new`).
            Repr::Inline(_) => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            Repr::Shared(s) => s,
        }
    }

    /// The shared storage of a string too long to keep in place.
    pub fn shared(&self) -> Option<&Arc<str>> {
        match &self.0 {
            Repr::Inline(_) => None,
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
            // (`Str::new`), so equal strings have equal arrays.
            (Repr::Inline(a), Repr::Inline(b)) => {
                a.len as u8 == b.len as u8 && a.bytes.0 == b.bytes.0
            }
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
        }
        assert_eq!(std::mem::size_of::<Value>(), 24);
        assert!(Str::new("a") < Str::new("b") && Str::new("ab") > Str::new("a"));
        assert!(
            Str::new("é") > Str::new("z"),
            "byte order is character order"
        );
    }
}
