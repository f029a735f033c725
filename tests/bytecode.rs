//! The bytecode: goldens of the disassembly of every example (each with the shared schema) and
//! of `tests/cases/bytecode/*.journey`; every opcode appears in one; files round-trip; damaged
//! files are refused with a message, never a panic; what the fuzzer found stays fixed.

#[path = "support/exercise.rs"]
mod exercise;
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use journey_runtime::bytecode::opcode::{decode, Opcode};
use journey_runtime::bytecode::{self, disasm, verify, Program};

/// Compiles the files (with the shared schema for examples) into a verified program.
fn compile(paths: &[PathBuf]) -> Program {
    let analysis = support::analyse(paths);
    // An example alone leaves some of the shared templates unused: warnings are fine here.
    assert!(
        !analysis.diagnostics.iter().any(|d| d.is_error()),
        "{}",
        support::rendered_diagnostics(&analysis.workspace, &analysis.diagnostics)
    );
    let program = analysis.program.as_ref().expect("checked");
    let bytecode = journey_compiler::lower::lower(&analysis.workspace, program);
    verify::verify(&bytecode).expect("every compiled program verifies");
    bytecode
}

fn inputs(path: &Path) -> Vec<PathBuf> {
    let shop = support::repo_root().join("examples/shop.journey");
    if path.starts_with(support::repo_root().join("examples")) && path != shop {
        vec![shop, path.to_path_buf()]
    } else {
        vec![path.to_path_buf()]
    }
}

#[test]
fn example_goldens() {
    insta::with_settings!({
        snapshot_path => "cases/bytecode/snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::glob!("../examples", "*.journey", |path| {
            insta::assert_snapshot!(disasm::disassemble(&compile(&inputs(path))));
        });
    });
}

#[test]
fn case_goldens() {
    insta::with_settings!({
        snapshot_path => "cases/bytecode/snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::glob!("cases/bytecode", "*.journey", |path| {
            insta::assert_snapshot!(disasm::disassemble(&compile(&inputs(path))));
        });
    });
}

fn programs() -> Vec<Program> {
    support::journey_files("examples")
        .iter()
        .chain(support::journey_files("tests/cases/bytecode").iter())
        .map(|p| compile(&inputs(p)))
        .collect()
}

#[test]
fn every_opcode_appears_in_a_golden() {
    let mut seen = BTreeSet::new();
    for program in programs() {
        for block in &program.blocks {
            let mut pc = block.offset;
            while pc < block.offset + block.length {
                let ins = decode(&program.code, pc, block.offset + block.length).expect("decodes");
                seen.insert(ins.opcode);
                pc = ins.next;
            }
        }
    }
    let missing: Vec<&str> = Opcode::ALL
        .iter()
        .filter(|o| !seen.contains(o))
        .map(|o| o.name())
        .collect();
    assert!(missing.is_empty(), "opcodes in no golden: {missing:?}");
}

#[test]
fn files_round_trip_and_debug_info_strips() {
    for program in programs() {
        let bytes = bytecode::write(&program);
        assert_eq!(bytecode::read(&bytes).expect("reads back"), program);
        let stripped =
            bytecode::read(&bytecode::strip_debug(&program)).expect("a stripped file reads");
        assert!(stripped.debug.is_none());
        verify::verify(&stripped).expect("a stripped file verifies");
    }
}

#[test]
fn truncated_and_bit_flipped_files_are_refused() {
    for program in programs() {
        let bytes = bytecode::write(&program);
        for length in (0..bytes.len()).step_by(7) {
            assert!(
                bytecode::read(&bytes[..length]).is_err(),
                "a file cut at {length} bytes was accepted"
            );
        }
        for position in (0..bytes.len()).step_by(11) {
            for bit in [0, 3, 7] {
                let mut damaged = bytes.clone();
                damaged[position] ^= 1 << bit;
                let error = bytecode::read(&damaged).expect_err("a flipped bit is detected");
                assert!(!error.message.is_empty());
            }
        }
    }
}

/// Re-seals a damaged file with a valid checksum: now only the reader's structure checks and
/// the verifier stand between the damage and the VM.
fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() >= 16 {
        let covered: Vec<u8> = bytes[..12].iter().chain(&bytes[16..]).copied().collect();
        let crc = crc32(&covered);
        bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    }
    bytes
}

fn crc32(bytes: &[u8]) -> u32 {
    // The IEEE CRC-32, bit by bit (a test must not trust the code it tests).
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn damage_with_a_valid_checksum_never_panics() {
    let mut rejected = 0;
    let mut total = 0;
    for program in programs() {
        let bytes = bytecode::write(&program);
        for position in (16..bytes.len()).step_by(5) {
            for value in [0x00, 0xFF, 0x01, 0x80] {
                let mut damaged = bytes.clone();
                if damaged[position] == value {
                    continue;
                }
                damaged[position] = value;
                total += 1;
                let outcome = bytecode::read(&reseal(damaged))
                    .map_err(|e| e.to_string())
                    .and_then(|p| verify::verify(&p).map_err(|e| e.to_string()));
                if outcome.is_err() {
                    rejected += 1;
                }
            }
        }
    }
    // Most damage is caught; the rest changed a value (a constant, a duration) harmlessly.
    assert!(
        rejected * 2 > total,
        "only {rejected} of {total} damaged files were refused"
    );
}

/// Where section `kind` starts in a file, read from its section table.
fn section_offset(bytes: &[u8], kind: u32) -> Option<usize> {
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    (0..word(16) as usize)
        .map(|i| 20 + 12 * i)
        .find(|at| word(*at) == kind)
        .map(|at| word(at + 4) as usize)
}

#[test]
fn send_argument_types_are_checked_and_optional() {
    let program = compile(&inputs(
        &support::repo_root().join("examples/cart_abandonment.journey"),
    ));
    let send = &program.journeys[0].sends[0];
    assert_eq!(send.args.len(), 2, "cart_reminder's two arguments");
    assert_eq!(send.arg_types.len(), 2);
    // A file of format 1.0 has no section 11: it loads, its sends without argument types.
    let mut older = program.clone();
    for send in older.journeys.iter_mut().flat_map(|j| &mut j.sends) {
        send.arg_types.clear();
    }
    let bytes = bytecode::write(&older);
    assert_eq!(section_offset(&bytes, 11), None);
    let read = bytecode::read(&bytes).expect("a file without argument types loads");
    assert!(read.journeys[0].sends[0].arg_types.is_empty());
    verify::verify(&read).expect("and verifies");
    // A section 11 that disagrees with the sends is refused, naming where.
    let mut bytes = bytecode::write(&program);
    let at = section_offset(&bytes, 11).expect("section 11");
    bytes[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
    let error = bytecode::read(&reseal(bytes)).expect_err("one type for two arguments");
    assert!(
        error.message.contains("2 arguments but 1 argument types"),
        "{error}"
    );
    assert_eq!(error.offset, at);
}

#[test]
fn the_verifier_names_what_is_wrong() {
    let program = compile(&inputs(
        &support::repo_root().join("examples/cart_abandonment.journey"),
    ));
    let body = program.journeys[0].body as usize;
    let block = program.blocks[body];
    let check = |mutate: &dyn Fn(&mut Program), expected: &str| {
        let mut broken = program.clone();
        mutate(&mut broken);
        let error = verify::verify(&broken).expect_err(expected).to_string();
        assert!(
            error.contains(expected),
            "expected `{expected}` in: {error}"
        );
    };
    check(
        &|p| p.code[block.offset as usize] = 0xEE,
        "unknown opcode 0xEE",
    );
    check(&|p| p.blocks[body].length = 1, "runs past the end");
    check(&|p| p.constants.clear(), "constant");
    check(&|p| p.journeys[0].steps.clear(), "step 0 does not exist");
    check(&|p| p.journeys[0].splits.push(Vec::new()), "not 1000");
    check(
        &|p| p.types.push(bytecode::TypeDesc::List(9999)),
        "may only refer to earlier ones",
    );
    check(&|p| p.history[0].event = 999, "event 999");
    // Durations the compiler never writes: the VM's clock arithmetic assumes none is negative.
    check(&|p| p.journeys[0].timeout_ms = Some(-1), "negative timeout");
    check(
        &|p| p.journeys[0].reentry = bytecode::Reentry::After(-5),
        "negative reentry delay",
    );
    check(
        &|p| p.history[0].window = bytecode::Window::Within(-1),
        "negative window",
    );
    check(&|p| p.caps[0].window_ms = -1, "negative window");
    check(
        &|p| p.journeys[0].sends[0].arg_types.push(bytecode::types::BOOL),
        "argument types",
    );
    check(
        &|p| p.journeys[0].sends[0].arg_types[0] = 9999,
        "type 9999, which does not exist",
    );
    // A jump backwards would loop.
    let jump = (block.offset..block.offset + block.length).find(|pc| {
        program.code[*pc as usize] == Opcode::Jump as u8
            && decode(&program.code, *pc, block.offset + block.length).is_ok()
    });
    if let Some(at) = jump {
        check(
            &|p| {
                p.code[at as usize + 1..at as usize + 5]
                    .copy_from_slice(&block.offset.to_le_bytes())
            },
            "not forward",
        );
    }
    let mut newer = bytecode::write(&program);
    newer[8] = 9;
    let error = bytecode::read(&reseal(newer)).expect_err("a newer major version");
    assert!(
        error
            .message
            .contains(&format!("version 9.{} is not supported", bytecode::MINOR)),
        "{error}"
    );
}

#[test]
fn docs_list_every_opcode_with_its_byte() {
    let doc = std::fs::read_to_string(support::repo_root().join("docs/bytecode.md"))
        .expect("docs/bytecode.md");
    for opcode in Opcode::ALL {
        let row = format!("| `0x{:02X}` | `{}", *opcode as u8, opcode.name());
        assert!(
            doc.contains(&row),
            "docs/bytecode.md lacks the row for {} (`{row}`)",
            opcode.name()
        );
    }
}

/// Files the bytecode fuzz target (`fuzz/fuzz_targets/load.rs`) once broke the runtime with,
/// kept in `tests/cases/bytecode/fuzzed/`: each must now be refused, or verify and run.
#[test]
fn fuzzed_files_are_refused_or_run() {
    let dir = support::repo_root().join("tests/cases/bytecode/fuzzed");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the fuzzed cases")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jbc"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no cases in {}", dir.display());
    for file in files {
        let bytes = std::fs::read(&file).expect("readable");
        let Ok(program) = bytecode::read(&bytes) else {
            continue;
        };
        if verify::verify(&program).is_ok() {
            let engine = exercise::exercise(&program);
            assert!(engine.inputs > 0, "{}", file.display());
        }
    }
}
