//! Any bytes → decode, split, parse, check (the items that parse, even when others do not) and
//! render every diagnostic in every format: nothing may panic, and every label must point inside
//! its file. A program that checks without errors is compiled: its bytecode must verify, survive
//! writing and reading back, and run on a few inputs.
#![no_main]

#[path = "../../tests/support/exercise.rs"]
mod exercise;

use journey_compiler::render::{self, Format};
use journey_compiler::workspace::MemoryFiles;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut files = MemoryFiles::new();
    files.insert("fuzz.journey", data.to_vec());
    let analysis = journey_compiler::analyse(&files, &["fuzz.journey".into()]);
    let loaded = &analysis.workspace;
    for diagnostic in &analysis.diagnostics {
        for label in &diagnostic.labels {
            let text = &loaded.sources.get(label.file).text;
            let (start, end) = (label.span.start as usize, label.span.end as usize);
            assert!(start <= end && end <= text.len());
            assert!(text.is_char_boundary(start) && text.is_char_boundary(end));
        }
    }
    for format in [Format::Human, Format::Json, Format::Github, Format::Sarif] {
        render::render(format, &loaded.sources, &analysis.diagnostics, &mut std::io::sink(), false)
            .expect("rendering into a sink succeeds");
    }
    if let Some(program) = analysis.program.as_ref().filter(|_| !analysis.diagnostics.iter().any(|d| d.is_error())) {
        let bytecode = journey_compiler::lower::lower(loaded, program);
        journey_runtime::bytecode::verify::verify(&bytecode).expect("compiled bytecode verifies");
        let read = journey_runtime::bytecode::read(&journey_runtime::bytecode::write(&bytecode))
            .expect("written bytecode reads back");
        assert_eq!(read, bytecode);
        exercise::exercise(&bytecode);
    }
});
