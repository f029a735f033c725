//! The journey runtime library: the bytecode format (which it owns), its loader and verifier,
//! a disassembler, the values of the VM and the evaluator of expression blocks. The compiler
//! emits this format; the runtime is the only reader.
//!
//! **Invariant:** this crate depends on nothing of the compiler; the compiler depends on it.

pub mod bytecode;
pub mod eval;
#[cfg(feature = "jit")]
pub mod jit;
pub mod tree;
pub mod value;
pub mod vm;
