//! Any bytes → read, verify and (when verified) disassemble a bytecode file: nothing may panic.
#![no_main]

use journey_runtime::bytecode::{disasm, read, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(program) = read(data) {
        if verify::verify(&program).is_ok() {
            let _ = disasm::disassemble(&program);
        }
    }
});
