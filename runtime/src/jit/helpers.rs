//! Rust functions the generated code calls for what is not worth inlining: string operations,
//! history queries, local time, and duration × float (which rounds as `f64::round` does).
//!
//! Each takes raw pointers from the generated code. `lower` passes only what `Predicate::call`
//! set up: string addresses and lengths (into live values — a short string's bytes in its
//! value, a long one's behind its `Arc` — or the predicate's constants; a string that is not
//! present has length 0, and its address may be null, which `bytes` reads as the empty
//! string), the `Env` of the call, and the address of a `Bound` in the generated
//! function's own stack frame for results (the history helpers return theirs, a `Pair`, in two
//! registers instead).

use chrono::{Datelike, TimeZone, Timelike};

use super::{Bound, Env, Ty, ABSENT, PRESENT};
use crate::eval::HistoryOp;
use crate::value::Value;

/// # Safety
/// `ptr` and `len` describe a live UTF-8 string, or `ptr` is null (a string as above).
unsafe fn bytes<'a>(ptr: *const u8, len: u64) -> &'a [u8] {
    if ptr.is_null() {
        return &[];
    }
    // SAFETY: per the function's contract.
    unsafe { std::slice::from_raw_parts(ptr, len as usize) }
}

/// Byte-wise equality of two strings: 1 or 0.
pub(super) unsafe extern "C" fn str_eq(a: *const u8, a_len: u64, b: *const u8, b_len: u64) -> u32 {
    // SAFETY: both are strings as the module's contract describes.
    u32::from(unsafe { bytes(a, a_len) == bytes(b, b_len) })
}

/// The order of two strings (UTF-8 byte order is character order): −1, 0 or 1.
pub(super) unsafe extern "C" fn str_cmp(a: *const u8, a_len: u64, b: *const u8, b_len: u64) -> i32 {
    // SAFETY: both are strings as the module's contract describes.
    unsafe { bytes(a, a_len).cmp(bytes(b, b_len)) as i32 }
}

pub(super) const STARTS_WITH: u32 = 0;
pub(super) const ENDS_WITH: u32 = 1;
pub(super) const CONTAINS: u32 = 2;

/// `starts_with`, `ends_with` or `contains` of two strings: 1 or 0.
pub(super) unsafe extern "C" fn str_test(
    op: u32,
    s: *const u8,
    s_len: u64,
    p: *const u8,
    p_len: u64,
) -> u32 {
    // SAFETY: both are strings as the module's contract describes.
    let (s, p) = unsafe { (bytes(s, s_len), bytes(p, p_len)) };
    u32::from(match op {
        STARTS_WITH => s.starts_with(p),
        ENDS_WITH => s.ends_with(p),
        // Substring search on UTF-8 bytes finds exactly the character substrings.
        _ => p.is_empty() || s.windows(p.len()).any(|w| w == p),
    })
}

/// The length of a string in characters, as `len` counts it.
pub(super) unsafe extern "C" fn str_len(s: *const u8, s_len: u64) -> i64 {
    // SAFETY: a string as the module's contract describes.
    let s = unsafe { bytes(s, s_len) };
    s.iter().filter(|b| (**b & 0xC0) != 0x80).count() as i64
}

pub(super) const HOUR: u32 = 0;
pub(super) const WEEKDAY: u32 = 1;

/// `hour` (an int) or `weekday` (a string) of timestamp `ms` in the context's zone, into `out`.
pub(super) unsafe extern "C" fn calendar(env: *const Env, op: u32, ms: i64, out: *mut Bound) {
    // SAFETY: `env` is the `Env` of the running call; `out` a `Bound` in the caller's frame.
    let (env, out) = unsafe { (&*env, &mut *out) };
    let zone = env.context.zone();
    *out = match zone.timestamp_millis_opt(ms).single() {
        None => Bound::absent(),
        Some(local) if op == HOUR => Bound::present(i64::from(local.hour()) as u64, 0),
        Some(local) => {
            let day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                [local.weekday().num_days_from_monday() as usize];
            // A static string: its address outlives everything.
            Bound::present(day.as_ptr() as u64, day.len() as u64)
        }
    };
}

pub(super) const COUNT: u32 = 0;
pub(super) const DID: u32 = 1;
pub(super) const SUM: u32 = 2;

/// A history answer as `history` hands it back: a `Bound` without a length, two words, which
/// the C convention returns in two registers (`lower::call_pair` declares it so).
#[repr(C)]
pub(super) struct Pair {
    pub state: u64,
    pub bits: u64,
}

/// History query `query` asked as `count` (int), `did` (bool) or `sum` (float) — `OP` is
/// `COUNT`, `DID` or `SUM`. A value of another shape declines the evaluation. One function per
/// question, so that the conversion of its answer is compiled for its type.
pub(super) unsafe extern "C" fn history<const OP: u32>(env: *const Env, query: u32) -> Pair {
    // SAFETY: `env` is the `Env` of the running call.
    let env = unsafe { &*env };
    let (op, ty) = match OP {
        COUNT => (HistoryOp::Count, Ty::Int),
        DID => (HistoryOp::Did, Ty::Bool),
        _ => (HistoryOp::Sum, Ty::Float),
    };
    let value = env.context.history(query as u16, op);
    // Not a string: `value` may drop when this returns.
    let bound = Bound::of(&value, ty).unwrap_or_else(|| {
        env.declined.set(true);
        Bound::absent()
    });
    Pair {
        state: bound.state,
        bits: bound.bits,
    }
}

/// How `list_contains` is told an item's type.
pub(super) fn ty_code(ty: Ty) -> u32 {
    match ty {
        Ty::Bool => 0,
        Ty::Int => 1,
        Ty::Float => 2,
        Ty::Str => 3,
        Ty::Timestamp => 4,
        Ty::Duration => 5,
        Ty::List => 6,
    }
}

/// Whether the `len` values at `list` hold the item (`ty` its `ty_code`, then its state,
/// payload and length), by `eval::equal`'s rules: 1 or 0. An absent item is found only as an
/// absent value.
pub(super) unsafe extern "C" fn list_contains(
    list: *const Value,
    len: u64,
    ty: u32,
    state: u64,
    bits: u64,
    item_len: u64,
) -> u32 {
    if len == 0 {
        return 0;
    }
    // SAFETY: `list` and `len` are the items of a `Value::List` read in place, which lives
    // across the call (`lower::shared_at`: a value that is not a list has length 0 and is not
    // read).
    let items = unsafe { std::slice::from_raw_parts(list, len as usize) };
    let found = |v: &Value| -> bool {
        if state == ABSENT {
            return matches!(v, Value::Absent);
        }
        if state != PRESENT {
            return false;
        }
        match (ty, v) {
            (0, Value::Bool(b)) => u64::from(*b) == bits,
            (1, Value::Int(n)) => *n == bits as i64,
            (1, Value::Float(f)) => (bits as i64) as f64 == *f,
            (2, Value::Float(f)) => *f == f64::from_bits(bits),
            (2, Value::Int(n)) => *n as f64 == f64::from_bits(bits),
            // SAFETY: a present string, as the module's contract describes.
            (3, Value::Short { .. } | Value::Long(_)) => {
                v.as_str().unwrap_or_default().as_bytes()
                    == unsafe { bytes(bits as *const u8, item_len) }
            }
            (4, Value::Timestamp(t)) => *t == bits as i64,
            (5, Value::Duration(d)) => *d == bits as i64,
            _ => false,
        }
    };
    u32::from(items.iter().any(found))
}

pub(super) const MUL: u32 = 0;
pub(super) const DIV: u32 = 1;

/// Duration `x` (ms) multiplied (`MUL`) or divided by float `y`, rounded to a whole
/// millisecond as the interpreter does; absent when the result is not finite or too large.
pub(super) unsafe extern "C" fn duration_float(op: u32, x: i64, y: f64, out: *mut Bound) {
    // SAFETY: `out` is a `Bound` in the caller's frame.
    let out = unsafe { &mut *out };
    let ms = if op == MUL {
        Some(x as f64 * y)
    } else {
        (y != 0.0).then(|| x as f64 / y)
    };
    *out = match ms.filter(|ms| ms.is_finite() && ms.abs() < 9.0e15) {
        Some(ms) => Bound::present(ms.round() as i64 as u64, 0),
        None => Bound::absent(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_helpers_agree_with_str() {
        let cases = [
            ("", ""),
            ("abc", "ab"),
            ("ab", "abc"),
            ("çağrı", "ğr"),
            ("x", ""),
        ];
        for (s, p) in cases {
            let (sp, sl, pp, pl) = (s.as_ptr(), s.len() as u64, p.as_ptr(), p.len() as u64);
            // SAFETY: live strings.
            unsafe {
                assert_eq!(str_eq(sp, sl, pp, pl) == 1, s == p);
                assert_eq!(str_cmp(sp, sl, pp, pl), s.cmp(p) as i32);
                assert_eq!(str_test(STARTS_WITH, sp, sl, pp, pl) == 1, s.starts_with(p));
                assert_eq!(str_test(ENDS_WITH, sp, sl, pp, pl) == 1, s.ends_with(p));
                assert_eq!(str_test(CONTAINS, sp, sl, pp, pl) == 1, s.contains(p));
                assert_eq!(str_len(sp, sl), s.chars().count() as i64);
            }
        }
        // SAFETY: null with length 0 is the empty string here.
        unsafe { assert_eq!(str_len(std::ptr::null(), 0), 0) };
    }
}
