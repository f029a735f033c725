//! The instruction set: one byte of opcode, then fixed-width little-endian operands.
//!
//! Expression blocks compute one value and `Return` it; a journey's body block runs its steps and
//! ends every path with `Exit` or a wait whose deadline ends the instance. Jumps go forward only,
//! so every block terminates.

use std::fmt;

/// The width of an operand in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    U8,
    U16,
    U32,
}

impl Width {
    pub fn bytes(self) -> usize {
        match self {
            Width::U8 => 1,
            Width::U16 => 2,
            Width::U32 => 4,
        }
    }
}

macro_rules! opcodes {
    ($( $(#[doc = $doc:literal])+ $name:ident = $byte:literal, [$($width:ident),*]; )*) => {
        /// An operation of the journey VM.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Opcode {
            $( $(#[doc = $doc])+ $name = $byte, )*
        }

        impl Opcode {
            /// Every opcode, in byte order.
            pub const ALL: &'static [Opcode] = &[ $( Opcode::$name, )* ];

            pub fn from_byte(byte: u8) -> Option<Opcode> {
                match byte {
                    $( $byte => Some(Opcode::$name), )*
                    _ => None,
                }
            }

            /// The mnemonic the disassembler prints.
            pub fn name(self) -> &'static str {
                match self { $( Opcode::$name => stringify!($name), )* }
            }

            /// The operands that follow the opcode byte.
            pub fn operands(self) -> &'static [Width] {
                match self { $( Opcode::$name => &[$(Width::$width),*], )* }
            }

            /// The one-line documentation: operands and effect.
            pub fn doc(self) -> &'static str {
                match self { $( Opcode::$name => concat!($($doc),+).trim_ascii(), )* }
            }
        }
    };
}

opcodes! {
    /// `Const k:u16` — push constant `k`.
    Const = 0x01, [U16];
    /// `LoadEvent f:u16` — push field `f` of the block's event (absent if the event lacks it).
    LoadEvent = 0x03, [U16];
    /// `LoadProfile f:u16` — push profile field `f` (its default, or *missing* if unset).
    LoadProfile = 0x04, [U16];
    /// `LoadSlot s:u16` — push captured value `s` of the instance.
    LoadSlot = 0x05, [U16];
    /// `Now` — push the instance's current time.
    Now = 0x06, [];
    /// `EnteredAt` — push the moment the instance entered.
    EnteredAt = 0x07, [];
    /// `GetField f:u16` — pop a record, push its field `f` (absent stays absent).
    GetField = 0x08, [U16];
    /// `MakeList n:u16` — pop `n` values, push them as a list (first pushed first).
    MakeList = 0x09, [U16];
    /// `Add kind:u8` — pop b, a; push a + b (kinds: int, float, duration, timestamp+duration).
    Add = 0x10, [U8];
    /// `Sub kind:u8` — pop b, a; push a − b (kinds: int, float, duration, timestamp−duration, timestamp−timestamp).
    Sub = 0x11, [U8];
    /// `Mul kind:u8` — pop b, a; push a × b (kinds: int, float, duration×float).
    Mul = 0x12, [U8];
    /// `Div kind:u8` — pop b, a; push a ÷ b (kinds: float, duration÷float; ÷0 gives absent).
    Div = 0x13, [U8];
    /// `Neg kind:u8` — pop a, push −a (kinds: int, float, duration).
    Neg = 0x14, [U8];
    /// `ToFloat` — pop an int, push it as a float.
    ToFloat = 0x15, [];
    /// `Eq` — pop b, a; push a == b (absent equals only absent).
    Eq = 0x18, [];
    /// `Ne` — pop b, a; push a != b.
    Ne = 0x19, [];
    /// `Lt kind:u8` — pop b, a; push a < b (kinds: int, float, string, timestamp, duration).
    Lt = 0x1A, [U8];
    /// `Le kind:u8` — pop b, a; push a <= b.
    Le = 0x1B, [U8];
    /// `Gt kind:u8` — pop b, a; push a > b.
    Gt = 0x1C, [U8];
    /// `Ge kind:u8` — pop b, a; push a >= b.
    Ge = 0x1D, [U8];
    /// `Not` — pop a bool, push its negation.
    Not = 0x20, [];
    /// `And` — pop b, a; push a and b (both evaluated: a missing read makes a condition false).
    And = 0x21, [];
    /// `Or` — pop b, a; push a or b (both evaluated).
    Or = 0x22, [];
    /// `IsSet` — pop a, push whether it has a value.
    IsSet = 0x23, [];
    /// `Coalesce` — pop b, a; push a if it has a value, else b.
    Coalesce = 0x24, [];
    /// `In` — pop a list, then a value; push whether the list contains it.
    In = 0x25, [];
    /// `Count q:u16` — push how many events match history query `q`.
    Count = 0x30, [U16];
    /// `Did q:u16` — push whether any event matches history query `q`.
    Did = 0x31, [U16];
    /// `Last q:u16` — push the latest event matching query `q` as a record (absent if none).
    Last = 0x32, [U16];
    /// `Sum q:u16` — push the sum of query `q`'s field over the matching events, as a float.
    Sum = 0x33, [U16];
    /// `Hour` — pop a timestamp, push its hour (0..23) in the journey's zone.
    Hour = 0x38, [];
    /// `Weekday` — pop a timestamp, push its weekday ("mon".."sun") in the journey's zone.
    Weekday = 0x39, [];
    /// `Date` — pop a timestamp, push its date "YYYY-MM-DD" in the journey's zone.
    Date = 0x3A, [];
    /// `Lower` — pop a string, push it in lower case.
    Lower = 0x3B, [];
    /// `Upper` — pop a string, push it in upper case.
    Upper = 0x3C, [];
    /// `StartsWith` — pop p, s; push whether s starts with p.
    StartsWith = 0x3D, [];
    /// `EndsWith` — pop p, s; push whether s ends with p.
    EndsWith = 0x3E, [];
    /// `Contains` — pop p, s; push whether s contains p.
    Contains = 0x3F, [];
    /// `Len` — pop a string or a list, push its length.
    Len = 0x40, [];
    /// `Jump t:u32` — continue at code offset `t` (forward only).
    Jump = 0x48, [U32];
    /// `JumpIfFalse t:u32` — pop a bool; continue at `t` if it is false or missing.
    JumpIfFalse = 0x49, [U32];
    /// `Return` — end an expression block with the value on top of the stack.
    Return = 0x4A, [];
    /// `Step n:u16` — the instance reaches step `n` (for stats and traces).
    Step = 0x50, [U16];
    /// `Wait k:u16` — sleep for the duration constant `k`.
    Wait = 0x51, [U16];
    /// `WaitUntilTime minute:u16 local:u8` — sleep to the next such time of day, strictly after now.
    WaitUntilTime = 0x52, [U16, U8];
    /// `WaitUntil` — pop a timestamp; sleep until it (no sleep if absent or past).
    WaitUntil = 0x53, [];
    /// `WaitFor w:u16` — wait per wait-table entry `w`: arrival continues here, the deadline jumps.
    WaitFor = 0x54, [U16];
    /// `WaitAny w:u16` — wait for the first arm of multi-arm entry `w`; each arm jumps to its block.
    WaitAny = 0x55, [U16];
    /// `Send s:u16` — pop send `s`'s arguments and emit the send (subject to caps and quiet hours).
    Send = 0x58, [U16];
    /// `SetProfile f:u16` — pop a value into profile field `f`.
    SetProfile = 0x59, [U16];
    /// `AddProfile f:u16` — pop a value and add it to the list in profile field `f`.
    AddProfile = 0x5A, [U16];
    /// `RemoveProfile f:u16` — pop a value and remove it from the list in profile field `f`.
    RemoveProfile = 0x5B, [U16];
    /// `Split s:u16` — jump to the arm of split `s` that the hash of (user, key, journey, step) picks.
    Split = 0x5C, [U16];
    /// `Start j:u16` — enter the user into journey `j` (which has `entry manual`).
    Start = 0x5D, [U16];
    /// `Exit` — end the instance with outcome `completed`.
    Exit = 0x5E, [];
}

/// One decoded instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instruction {
    pub opcode: Opcode,
    pub operands: [u32; 2],
    /// The code offset of the opcode byte.
    pub offset: u32,
    /// The offset of the next instruction.
    pub next: u32,
}

/// Why an instruction could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    UnknownOpcode { offset: u32, byte: u8 },
    Truncated { offset: u32, opcode: Opcode },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownOpcode { offset, byte } => {
                write!(f, "unknown opcode 0x{byte:02X} at code offset {offset}")
            }
            DecodeError::Truncated { offset, opcode } => {
                write!(
                    f,
                    "`{}` at code offset {offset} runs past the end of its block",
                    opcode.name()
                )
            }
        }
    }
}

/// Decodes the instruction at `offset`; `end` bounds its block.
pub fn decode(code: &[u8], offset: u32, end: u32) -> Result<Instruction, DecodeError> {
    let at = offset as usize;
    let end = (end as usize).min(code.len());
    let byte = *code
        .get(at)
        .filter(|_| at < end)
        .ok_or(DecodeError::UnknownOpcode { offset, byte: 0 })?;
    let opcode = Opcode::from_byte(byte).ok_or(DecodeError::UnknownOpcode { offset, byte })?;
    let mut operands = [0u32; 2];
    let mut cursor = at + 1;
    for (i, width) in opcode.operands().iter().enumerate() {
        let bytes = code
            .get(cursor..cursor + width.bytes())
            .filter(|_| cursor + width.bytes() <= end)
            .ok_or(DecodeError::Truncated { offset, opcode })?;
        let mut value = 0u32;
        for (shift, byte) in bytes.iter().enumerate() {
            value |= u32::from(*byte) << (8 * shift);
        }
        if let Some(slot) = operands.get_mut(i) {
            *slot = value;
        }
        cursor += width.bytes();
    }
    Ok(Instruction {
        opcode,
        operands,
        offset,
        next: cursor as u32,
    })
}

/// Appends an instruction to `code`; returns its offset.
pub fn encode(code: &mut Vec<u8>, opcode: Opcode, operands: &[u32]) -> u32 {
    let offset = code.len() as u32;
    code.push(opcode as u8);
    for (width, value) in opcode.operands().iter().zip(operands) {
        code.extend_from_slice(&value.to_le_bytes()[..width.bytes()]);
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_opcode_round_trips_and_has_a_doc() {
        for opcode in Opcode::ALL {
            let mut code = Vec::new();
            let operands = [0x1234_5678u32, 0xAB];
            encode(&mut code, *opcode, &operands);
            let decoded = decode(&code, 0, code.len() as u32).expect("decodes");
            assert_eq!(decoded.opcode, *opcode);
            assert_eq!(decoded.next as usize, code.len());
            assert!(opcode.doc().starts_with('`'), "{}", opcode.name());
        }
        assert!(decode(&[0xFF], 0, 1).is_err());
        assert!(decode(&[Opcode::Jump as u8, 1, 2], 0, 3).is_err());
    }
}
