//! Any bytes → a random well-typed predicate and contexts (the bytes make every choice of
//! tests/support/predicates.rs) → the JIT's value must equal the interpreter's, or the JIT must
//! decline a context whose values do not have their types' shapes; and the block's tree must
//! give what the stack interpreter gives (and hold where that is `true`).
#![no_main]

#[path = "../../tests/support/predicates.rs"]
#[allow(dead_code)]
mod predicates;

use std::sync::OnceLock;

use journey_compiler::workspace::MemoryFiles;
use journey_runtime::bytecode::verify;
use journey_runtime::eval::{eval, Prepared};
use journey_runtime::jit::Compiler;
use libfuzzer_sys::fuzz_target;
use predicates::{Base, Bytes};

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut files = MemoryFiles::new();
        files.insert("base.journey", predicates::BASE.to_string());
        let analysis = journey_compiler::analyse(&files, &["base.journey".into()]);
        let program = analysis.program.as_ref().expect("the base checks");
        Base::new(journey_compiler::lower::lower(&analysis.workspace, program))
    })
}

fuzz_target!(|data: &[u8]| {
    let base = base();
    let mut choose = Bytes(data);
    let (program, block) = base.predicate(&mut choose, 32);
    verify::verify(&program).expect("generated predicates verify");
    let prepared = Prepared::new(&program);
    let Some(compiler) = Compiler::new() else {
        return;
    };
    let predicate = compiler
        .compile(&prepared, block)
        .expect("generated predicates compile");
    for odd in [false, true, false, true] {
        let context = base.context(&mut choose, odd);
        let want = eval(&prepared, &program.blocks[block as usize], &context);
        let tree = prepared.tree(block).map(|t| t.eval(&context));
        assert_eq!(format!("{tree:?}"), format!("{:?}", Some(&want)));
        let holds = prepared.tree(block).map(|t| t.holds(&context));
        assert_eq!(holds, Some(want.is_true()));
        match predicate.run(&context) {
            Some(got) => assert_eq!(got, want),
            None => assert!(odd, "a well-typed context was declined"),
        }
        let holds = predicate.holds(&context);
        assert!(holds.is_none() || holds == Some(want.is_true()));
    }
});
