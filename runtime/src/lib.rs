//! The journey runtime library: the bytecode format (which it owns), its loader and verifier,
//! and a disassembler. The compiler emits this format; the runtime is the only reader.
//!
//! **Invariant:** this crate depends on nothing of the compiler; the compiler depends on it.

pub mod bytecode;
