//! Any bytes → read, verify and (when verified) disassemble a bytecode file, then run it on a
//! few inputs: nothing may panic, and a verified program cannot make the VM fail.
//!
//! Each input is tried twice: as it is, and re-sealed with a valid checksum (the CRC would
//! otherwise turn away nearly every mutation before the reader's structure checks and the
//! verifier see it).
#![no_main]

#[path = "../../tests/support/exercise.rs"]
mod exercise;

use journey_runtime::bytecode::{disasm, read, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= 16 {
        let mut sealed = data.to_vec();
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&sealed[..12]);
        hasher.update(&sealed[16..]);
        sealed[12..16].copy_from_slice(&hasher.finalize().to_le_bytes());
        check(&sealed);
    }
});

fn check(data: &[u8]) {
    let Ok(program) = read(data) else {
        return;
    };
    if verify::verify(&program).is_ok() {
        let _ = disasm::disassemble(&program);
        exercise::exercise(&program);
    }
}
