//! The JIT against its reference, the interpreter: random well-typed predicates over random
//! contexts (tests/support/predicates.rs), and every predicate of the examples, must evaluate to
//! the same value natively as interpreted.

#[path = "support/predicates.rs"]
#[allow(dead_code)]
mod predicates;
mod support;

use journey_runtime::bytecode::{disasm, verify, BlockKind, Program};
use journey_runtime::eval::{eval, Prepared};
use journey_runtime::jit::{Compiler, Policy, Refusal};
use journey_runtime::value::Value;
use predicates::{Base, Seeded};

/// `BASE` compiled and verified.
fn base() -> Base {
    let program = support::compile_inline(predicates::BASE);
    verify::verify(&program).expect("verifies");
    Base::new(program)
}

/// Evaluates `block` both ways (the JIT's value, and whether it holds); `declined`: the JIT
/// left it to the interpreter.
fn agree(
    program: &Program,
    prepared: &Prepared,
    predicate: &journey_runtime::jit::Predicate,
    block: u32,
    context: &predicates::Probe,
) -> Result<bool, String> {
    let want = eval(prepared, &program.blocks[block as usize], context);
    let holds = predicate.holds(context);
    match predicate.run(context) {
        None if holds.is_none() => Ok(true),
        Some(got) if got == want && holds == Some(want.is_true()) => Ok(false),
        got => Err(format!(
            "block {block}: the JIT gives {got:?} (holds: {holds:?}), the interpreter {want:?}\n\
             event {:?}\nprofile {:?}\nslots {:?}\nnow {} entered {} history {:?} zone {}\n{}",
            context.event,
            context.profile,
            context.slots,
            context.now,
            context.entered_at,
            context.history,
            context.zone,
            disasm::disassemble(program)
        )),
    }
}

#[test]
fn random_predicates_agree_with_the_interpreter() {
    let base = base();
    let compiler = Compiler::new().expect("cranelift supports this machine");
    let mut choose = Seeded(0x9E37_79B9_7F4A_7C15);
    let (programs, contexts) = (2_000u32, 60u32);
    let (mut cases, mut declined, mut odd_cases) = (0u64, 0u64, 0u64);
    let mut answers = std::collections::BTreeMap::new();
    for p in 0..programs {
        let (program, block) = base.predicate(&mut choose, 1 + p % 24);
        if let Err(e) = verify::verify(&program) {
            panic!("{e}\n{}", disasm::disassemble(&program));
        }
        let prepared = Prepared::new(&program);
        let predicate = compiler
            .compile(&prepared, block)
            .unwrap_or_else(|e| panic!("{e}\n{}", disasm::disassemble(&program)));
        for c in 0..contexts {
            // Every fourth context may hold a value of another shape than its type.
            let odd = c % 4 == 0;
            let context = base.context(&mut choose, odd);
            let was_declined = agree(&program, &prepared, &predicate, block, &context)
                .unwrap_or_else(|e| panic!("{e}"));
            if was_declined {
                assert!(odd, "a well-typed context was declined");
                declined += 1;
            }
            odd_cases += u64::from(odd);
            cases += 1;
            *answers
                .entry(format!(
                    "{:?}",
                    eval(&prepared, &program.blocks[block as usize], &context)
                ))
                .or_insert(0u64) += 1;
        }
    }
    assert!(cases >= 100_000, "{cases} cases");
    // The declining path is exercised, and most odd contexts still run natively.
    assert!(
        declined > 0 && declined < odd_cases,
        "{declined} of {odd_cases}"
    );
    // Every answer occurs: the predicates are not all trivially false.
    for answer in ["true", "false", "absent", "missing"] {
        assert!(
            answers.get(answer).copied().unwrap_or(0) > cases / 50,
            "{answers:?}"
        );
    }
}

/// The interpreter's two forms: every random expression, of every kind, has a tree, and the
/// tree gives what the stack interpreter gives (and holds where that is `true`).
#[test]
fn random_expressions_as_trees_agree_with_the_stack_interpreter() {
    let base = base();
    let mut choose = Seeded(0x2545_F491_4F6C_DD1D);
    let (mut cases, mut kinds) = (0u64, std::collections::BTreeMap::new());
    for p in 0..2_000u32 {
        let kind = predicates::KINDS[(p % 7) as usize];
        let (program, block) = base.expression(&mut choose, 1 + p % 24, kind);
        if let Err(e) = verify::verify(&program) {
            panic!("{e}\n{}", disasm::disassemble(&program));
        }
        let prepared = Prepared::new(&program);
        let tree = prepared
            .tree(block)
            .unwrap_or_else(|| panic!("no tree\n{}", disasm::disassemble(&program)));
        for c in 0..30 {
            let context = base.context(&mut choose, c % 4 == 0);
            let want = eval(&prepared, &program.blocks[block as usize], &context);
            let got = tree.eval(&context);
            // Compared as printed: a NaN equals itself there.
            assert_eq!(
                format!("{got:?}"),
                format!("{want:?}"),
                "block {block} ({kind:?})\nevent {:?}\nprofile {:?}\nslots {:?}\n{}",
                context.event,
                context.profile,
                context.slots,
                disasm::disassemble(&program)
            );
            assert_eq!(
                tree.holds(&context),
                want.is_true(),
                "holds: block {block} ({kind:?})\n{}",
                disasm::disassemble(&program)
            );
            *kinds
                .entry(format!("{kind:?} {}", variant(&want)))
                .or_insert(0u64) += 1;
            cases += 1;
        }
    }
    assert!(cases >= 60_000, "{cases} cases");
    // Each kind gives values of its own and absent ones.
    for kind in predicates::KINDS {
        for answer in ["value", "absent"] {
            assert!(
                kinds
                    .get(&format!("{kind:?} {answer}"))
                    .copied()
                    .unwrap_or(0)
                    > 100,
                "{kinds:?}"
            );
        }
    }
}

fn variant(value: &Value) -> &'static str {
    match value {
        Value::Absent => "absent",
        Value::Missing => "missing",
        _ => "value",
    }
}

#[test]
fn the_examples_predicates_agree_with_the_interpreter() {
    let program = support::compile_examples();
    let prepared = Prepared::new(&program);
    let compiler = Compiler::new().expect("cranelift supports this machine");
    let mut choose = Seeded(7);
    let (mut compiled, mut refused) = (0, Vec::new());
    for (index, block) in program.blocks.iter().enumerate() {
        let BlockKind::Expression { event, journey, .. } = block.kind else {
            continue;
        };
        let predicate = match compiler.compile(&prepared, index as u32) {
            Ok(p) => p,
            Err(Refusal::NotAPredicate) => continue,
            Err(reason) => {
                refused.push(format!("b{index}: {reason}"));
                continue;
            }
        };
        compiled += 1;
        let event_kinds = program
            .events
            .get(event as usize)
            .map(|e| predicates::record_kinds(&program, e.record))
            .unwrap_or_default();
        let profile_kinds = predicates::record_kinds(&program, program.profile);
        let defaults = predicates::profile_defaults(&program);
        let required = program
            .events
            .get(event as usize)
            .map(|e| predicates::record_required(&program, e.record))
            .unwrap_or_default();
        let slot_kinds = predicates::slot_kinds(&program, journey);
        for c in 0..500 {
            let context = predicates::random_context(
                &mut choose,
                [&event_kinds, &profile_kinds, &slot_kinds],
                &required,
                &defaults,
                c % 4 == 0,
            );
            agree(&program, &prepared, &predicate, index as u32, &context)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    // The examples' predicates are what the JIT is for: all of them compile.
    assert!(compiled >= 20, "{compiled} compiled");
    assert!(refused.is_empty(), "refused: {refused:?}");
}

/// `source` compiled and verified, and its first journey's entry filter.
fn entry_filter(source: &str) -> (Program, u32) {
    let program = support::compile_inline(source);
    verify::verify(&program).expect("verifies");
    let block = match program.journeys[0].entry {
        journey_runtime::bytecode::Entry::On { filter, .. } => filter,
        _ => unreachable!("an entry on an event"),
    };
    (program, block)
}

/// A block deeper than a tree is built for has none: the stack interpreter runs it, with the
/// answers the language gives.
#[test]
fn a_block_too_deep_for_a_tree_runs_on_the_stack() {
    // `a + 1 + 1 + …`: one level per `+`, a hundred levels.
    let ones = vec!["1"; 100].join(" + ");
    let (program, block) = entry_filter(&format!(
        "event E {{ a: int }}\njourney j {{ entry on E where a + {ones} > 150 }}\n"
    ));
    let mut prepared = Prepared::new(&program);
    prepared.set_jit(Policy::Off);
    assert!(prepared.tree(block).is_none(), "a tree 100 levels deep");
    for (a, want) in [
        (Some(50), "false"),
        (Some(51), "true"),
        (Some(i64::MAX), "absent"),
        (None, "absent"),
    ] {
        let context = predicates::Probe::of_event(vec![a.map_or(Value::Absent, Value::Int)]);
        assert_eq!(
            format!("{:?}", prepared.run(block, &context)),
            want,
            "a = {a:?}"
        );
    }
}

#[test]
fn a_hot_predicate_is_compiled_once_and_gives_the_same_answers() {
    let base = base();
    let mut choose = Seeded(42);
    let (program, block) = base.predicate(&mut choose, 12);
    let mut prepared = Prepared::new(&program);
    prepared.set_jit(Policy::AllAfter(10));
    for i in 0..50 {
        assert_eq!(prepared.compiled_predicates(), usize::from(i > 10));
        let context = base.context(&mut choose, false);
        let want = eval(&prepared, &program.blocks[block as usize], &context);
        assert_eq!(prepared.run(block, &context), want);
    }
    let mut off = Prepared::new(&program);
    off.set_jit(Policy::Off);
    let context = base.context(&mut choose, false);
    for _ in 0..50 {
        let _ = off.run(block, &context);
    }
    assert_eq!(off.compiled_predicates(), 0);
}

/// The default policy (`jit::pays`) compiles a predicate of three comparisons and more, and
/// leaves to the interpreter one of two and one that asks history, which the interpreter
/// answers as soon or sooner; all answer as the stack interpreter does.
#[test]
fn the_default_policy_compiles_only_predicates_native_code_answers_sooner() {
    // (condition, whether it is compiled)
    let cases = [
        // Three comparisons and more: native code answers sooner.
        ("a > 100 and b == \"x\" and a < 190 and b != \"y\"", 1),
        ("a > 190 or b == \"y\" or a < 10", 1),
        // Two: about alike, left to the interpreter.
        ("a > 100 and b == \"x\"", 0),
        ("a > 190 or b == \"y\"", 0),
        // A history question costs native code a helper's call more.
        (
            "a > 100 and b == \"x\" and a < 190 and count(E within 1d) == 0",
            0,
        ),
    ];
    for (condition, compiled) in cases {
        let (program, block) = entry_filter(&format!(
            "event E {{ a: int, b: string }}\njourney j {{ entry on E where {condition} }}\n"
        ));
        let mut prepared = Prepared::new(&program);
        prepared.set_jit(Policy::HotAfter(2));
        for (a, b) in (0..12).map(|i| (i * 20, ["x", "y", "z"][i as usize % 3])) {
            let context = predicates::Probe::of_event(vec![Value::Int(a), Value::str(b)]);
            let want = eval(&prepared, &program.blocks[block as usize], &context);
            let got = prepared.run(block, &context);
            assert_eq!(got, want, "{condition}, a = {a}, b = {b}");
        }
        assert_eq!(prepared.compiled_predicates(), compiled, "{condition}");
    }
}

/// Values made by hand rather than by `Value::str` — a short string kept as a shared one —
/// are read safely in place: the code compares them with a constant of up to 16 bytes without
/// reading past the string, and agrees with the interpreter (or declines).
#[test]
fn strings_made_by_hand_are_read_within_their_bytes() {
    let (program, block) = entry_filter(
        "event E { b: string }\njourney j { entry on E where b == \"x\" or b == \"a longer one, shared\" }\n",
    );
    let prepared = Prepared::new(&program);
    let compiler = Compiler::new().expect("cranelift supports this machine");
    let predicate = compiler.compile(&prepared, block).expect("compiles");
    for b in [
        Value::str("x"),
        Value::Long(std::sync::Arc::from("x")),
        Value::Long(std::sync::Arc::from("")),
        Value::str("a longer one, shared"),
        Value::Long(std::sync::Arc::from("a longer one, shared")),
        Value::str("y"),
    ] {
        let context = predicates::Probe::of_event(vec![b.clone()]);
        let want = eval(&prepared, &program.blocks[block as usize], &context);
        if let Some(got) = predicate.run(&context) {
            assert_eq!(got, want, "b = {b:?}");
        }
    }
}
