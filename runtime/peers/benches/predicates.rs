//! Predicates, one run, same predicates and data: a native Rust closure, our JIT, our
//! interpreter, cel-interpreter, rhai and evalexpr, in ns per evaluation including binding the
//! event; then compile time per predicate. Beside them, the predicate written by hand in Rust
//! over the VM's `Context`: the least that any code the VM calls through it can cost, so the
//! floor under the JIT.
//!
//! `cargo bench --manifest-path runtime/peers/Cargo.toml` (`PEERS_EVALS` sets the evaluations
//! per timing, 200,000 by default; each timing is taken 7 times and the median printed;
//! `PEERS_ONLY=native|jit|by-hand|interpreter|stack|cel|rhai|evalexpr` times one engine alone and
//! `PEERS_CASE=text` only the predicates whose name contains it, for profiling).
//!
//! Every engine starts from the same decoded event: a `[Value]` as the VM holds it (short
//! strings in place, no allocation). Binding is what each engine needs before it can evaluate:
//! for ours, reading the fields the predicate loads through the VM's `Context`; for the peers,
//! making their values and setting their variables (cel: a child scope of a root context made
//! once; rhai: a `Scope`; evalexpr: one `HashMapContext`, reused). History answers (`count`,
//! `did`) come precomputed to every engine, as variables for the peers.

use std::hint::black_box;
use std::time::Instant;

use journey_compiler::workspace::MemoryFiles;
use journey_runtime::bytecode::{verify, Entry, Program, Window};
use journey_runtime::eval::{eval, Context, Frame, HistoryOp, Prepared, Read};
use journey_runtime::jit::Compiler;
use journey_runtime::value::Value;

/// One event (and profile) of the data set, decoded.
#[derive(Clone)]
struct Sample {
    a: i64,
    b: Value,
    country: Value,
    plan: Value,
    ltv: f64,
    orders_30d: i64,
    did_365: bool,
    did_60: bool,
}

/// How many samples the data set has: a power of two, so that picking one is a mask, not a
/// division (which would cost more than some predicates).
const SAMPLES: usize = 64;

fn samples() -> Vec<Sample> {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    (0..SAMPLES)
        .map(|_| Sample {
            a: next(200) as i64,
            b: Value::str(["x", "y", "xx"][next(3) as usize]),
            country: Value::str(["US", "CA", "TR", "DE"][next(4) as usize]),
            plan: Value::str(["free", "trial", "paid"][next(3) as usize]),
            ltv: next(300) as f64 + 0.5,
            orders_30d: next(4) as i64,
            did_365: next(2) == 1,
            did_60: next(3) == 1,
        })
        .collect()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// A predicate, as each engine writes it.
struct Case {
    name: &'static str,
    /// A journey source whose entry filter or audience is the predicate.
    journey: &'static str,
    native: fn(&Sample) -> bool,
    /// Over the VM's `Context` as the JIT reads it, as tight as Rust writes it: the frame
    /// taken once (a static call, as `Predicate::holds` takes it from a context of known type),
    /// each value matched in place, each history answer asked through `&dyn Context` (as the
    /// helpers native code calls must). Fields are indexed in the order the journey declares
    /// them.
    by_hand: fn(&Decoded, &Queries) -> bool,
    cel: &'static str,
    rhai: &'static str,
    evalexpr: &'static str,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "a > 100 && b == \"x\"",
            journey: "event E { a: int, b: string }\n\
                      journey j { entry on E where a > 100 and b == \"x\" }",
            native: |s| s.a > 100 && text(&s.b) == "x",
            by_hand: |d, _| {
                let Some(f) = d.frame() else { return false };
                matches!(f.event.first(), Some(Value::Int(a)) if *a > 100)
                    && f.event.get(1).and_then(Value::str_bytes) == Some(b"x")
            },
            cel: "a > 100 && b == \"x\"",
            rhai: "a > 100 && b == \"x\"",
            evalexpr: "a > 100 && b == \"x\"",
        },
        Case {
            name: "cart_abandonment audience",
            journey: "profile { country: string, plan: \"free\" | \"trial\" | \"paid\" }\n\
                      journey j { entry manual\n\
                      audience profile.country in [\"US\", \"CA\"] and profile.plan != \"free\" }",
            native: |s| matches!(text(&s.country), "US" | "CA") && text(&s.plan) != "free",
            by_hand: |d, _| {
                let Some(f) = d.frame() else { return false };
                fn string(t: Option<&Option<Value>>) -> Option<&[u8]> {
                    t?.as_ref()?.str_bytes()
                }
                matches!(string(f.traits.first()), Some(b"US" | b"CA"))
                    && string(f.traits.get(1)).is_some_and(|plan| plan != b"free")
            },
            cel: "country in [\"US\", \"CA\"] && plan != \"free\"",
            rhai: "country in [\"US\", \"CA\"] && plan != \"free\"",
            evalexpr: "(country == \"US\" || country == \"CA\") && plan != \"free\"",
        },
        Case {
            name: "shop high_value segment",
            journey: "event OrderCompleted { total: float }\n\
                      profile { lifetime_value: float }\n\
                      journey j { entry manual\n\
                      audience profile.lifetime_value > 100 and count(OrderCompleted within 30d) >= 2 }",
            native: |s| s.ltv > 100.0 && s.orders_30d >= 2,
            by_hand: |d, q| {
                let Some(f) = d.frame() else { return false };
                let c: &dyn Context = black_box(d);
                matches!(f.traits.first(), Some(Some(Value::Float(x))) if *x > 100.0)
                    && matches!(c.history(q.orders_30d, HistoryOp::Count), Value::Int(n) if n >= 2)
            },
            cel: "ltv > 100.0 && orders_30d >= 2",
            rhai: "ltv > 100.0 && orders_30d >= 2",
            evalexpr: "ltv > 100.0 && orders_30d >= 2",
        },
        Case {
            name: "winback audience",
            journey: "event OrderCompleted { total: float }\n\
                      journey j { entry manual\n\
                      audience did(OrderCompleted within 365d) and not did(OrderCompleted within 60d) }",
            native: |s| s.did_365 && !s.did_60,
            by_hand: |d, q| {
                let c: &dyn Context = black_box(d);
                matches!(c.history(q.did_365, HistoryOp::Did), Value::Bool(true))
                    && matches!(c.history(q.did_60, HistoryOp::Did), Value::Bool(false))
            },
            cel: "did_365 && !did_60",
            rhai: "did_365 && !did_60",
            evalexpr: "did_365 && !did_60",
        },
    ]
}

fn compile(source: &str) -> Program {
    let mut files = MemoryFiles::new();
    files.insert("bench.journey", source.to_string());
    let analysis = journey_compiler::analyse(&files, &["bench.journey".into()]);
    assert!(
        !analysis.diagnostics.iter().any(|d| d.is_error()),
        "{source}: {:?}",
        analysis
            .diagnostics
            .iter()
            .map(|d| &d.message)
            .collect::<Vec<_>>()
    );
    let program = journey_compiler::lower::lower(
        &analysis.workspace,
        analysis.program.as_ref().expect("checked"),
    );
    verify::verify(&program).expect("verifies");
    program
}

/// The history queries of a case's program, by what they ask (each is 0 where the program has
/// no such query).
struct Queries {
    orders_30d: u16,
    did_365: u16,
    did_60: u16,
}

impl Queries {
    fn of(program: &Program) -> Queries {
        let within = |days: i64| {
            program
                .history
                .iter()
                .position(|q| q.window == Window::Within(days * 86_400_000))
                .map_or(0, |i| i as u16)
        };
        Queries {
            orders_30d: within(30),
            did_365: within(365),
            did_60: within(60),
        }
    }
}

/// The predicate's block: the entry filter, else the audience.
fn predicate_block(program: &Program) -> u32 {
    match program.journeys[0].entry {
        Entry::On { filter, .. } => filter,
        _ => program.journeys[0].audience,
    }
}

/// A sample as the VM's context: the event's and the profile's fields by the program's
/// records, history answers by query.
struct Decoded {
    event: Vec<Value>,
    /// The profile's traits, all set.
    profile: Vec<Option<Value>>,
    history: Vec<Answer>,
}

/// A history answer, made into a `Value` when asked, as the VM's context makes its answers
/// (it counts; it does not clone a stored value).
#[derive(Clone, Copy)]
enum Answer {
    Count(i64),
    Did(bool),
}

impl Decoded {
    fn new(program: &Program, s: &Sample) -> Decoded {
        let field = |name: &str| -> Value {
            match name {
                "a" => Value::Int(s.a),
                "b" => s.b.clone(),
                "country" => s.country.clone(),
                "plan" => s.plan.clone(),
                "lifetime_value" => Value::Float(s.ltv),
                _ => Value::Absent,
            }
        };
        let record = |id: u32| -> Vec<Value> {
            program
                .record_fields(id)
                .unwrap_or_default()
                .iter()
                .map(|f| field(program.string(f.name)))
                .collect()
        };
        let event = program
            .events
            .first()
            .map(|e| record(e.record))
            .unwrap_or_default();
        let history = program
            .history
            .iter()
            .map(|q| match q.window {
                Window::Within(ms) if ms == 30 * 86_400_000 => Answer::Count(s.orders_30d),
                Window::Within(ms) if ms == 365 * 86_400_000 => Answer::Did(s.did_365),
                _ => Answer::Did(s.did_60),
            })
            .collect();
        Decoded {
            event,
            profile: record(program.profile).into_iter().map(Some).collect(),
            history,
        }
    }
}

impl Context for Decoded {
    fn event_field(&self, field: u16) -> Value {
        self.event
            .get(usize::from(field))
            .cloned()
            .unwrap_or(Value::Absent)
    }
    fn profile_field(&self, field: u16) -> Value {
        self.profile
            .get(usize::from(field))
            .cloned()
            .flatten()
            .unwrap_or(Value::Missing)
    }
    fn slot(&self, _: u16) -> Value {
        Value::Absent
    }
    fn now(&self) -> i64 {
        1_767_225_600_000
    }
    fn entered_at(&self) -> i64 {
        self.now()
    }
    fn history(&self, query: u16, _: HistoryOp) -> Value {
        match self.history.get(usize::from(query)) {
            Some(Answer::Count(n)) => Value::Int(*n),
            Some(Answer::Did(b)) => Value::Bool(*b),
            None => Value::Absent,
        }
    }
    fn zone(&self) -> chrono_tz::Tz {
        chrono_tz::UTC
    }
    /// Holds its values in place, as the VM's contexts do.
    fn frame(&self) -> Option<Frame<'_>> {
        Some(Frame {
            event: &self.event,
            slots: &[],
            traits: &self.profile,
        })
    }
    fn lend(&self, read: Read) -> Option<&Value> {
        match read {
            Read::Event(f) => self.event.get(usize::from(f)),
            Read::Profile(f) => self.profile.get(usize::from(f))?.as_ref(),
            Read::Slot(_) => None,
        }
    }
}

/// Ns per evaluation of `evaluate` over `evals` evaluations.
/// Generic, not `dyn`: each engine's loop calls it directly, so the harness adds no call of its own.
fn time(evals: usize, mut evaluate: impl FnMut(usize) -> bool) -> f64 {
    let started = Instant::now();
    let mut trues = 0usize;
    for i in 0..evals {
        trues += usize::from(black_box(evaluate(i)));
    }
    black_box(trues);
    started.elapsed().as_nanos() as f64 / evals as f64
}

/// Median ns per evaluation of each engine: 7 rounds, each engine timed once a round in turn
/// (so that a machine slowing down mid-run slows every engine alike). An engine is its timing
/// loop: `time` over its evaluation. With `PEERS_ONLY=name` only that engine runs (for
/// profiling it); the others show NaN.
fn time_engines(engines: &mut [(&str, &mut dyn FnMut() -> f64)]) -> Vec<f64> {
    let only = std::env::var("PEERS_ONLY").ok();
    let mut timings = vec![Vec::new(); engines.len()];
    for _ in 0..7 {
        for (i, (name, engine)) in engines.iter_mut().enumerate() {
            let runs = only.as_deref().is_none_or(|only| only == *name);
            timings[i].push(if runs { engine() } else { f64::NAN });
        }
    }
    timings
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect()
}

/// Median microseconds of `compile`, taken `times` times.
fn compile_time(times: usize, mut compile: impl FnMut()) -> f64 {
    let mut timings: Vec<f64> = (0..times)
        .map(|_| {
            let started = Instant::now();
            compile();
            started.elapsed().as_nanos() as f64 / 1000.0
        })
        .collect();
    timings.sort_by(f64::total_cmp);
    timings[timings.len() / 2]
}

fn main() {
    let evals: usize = std::env::var("PEERS_EVALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let samples = samples();
    let compiler = Compiler::new().expect("cranelift supports this machine");
    println!(
        "ns per evaluation, binding included (median of 7 rounds; a round times each engine in \
         turn, {evals} evaluations, the peers a tenth of that)\n"
    );
    println!(
        "| predicate | native | JIT | by hand over `Context` | interpreter | stack interpreter | cel-interpreter | rhai | evalexpr | cel ÷ JIT | rhai ÷ JIT |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut compile_rows = Vec::new();
    let only_case = std::env::var("PEERS_CASE").ok();
    for case in cases() {
        if only_case.as_deref().is_some_and(|c| !case.name.contains(c)) {
            continue;
        }
        let program = compile(case.journey);
        let block = predicate_block(&program);
        let prepared = Prepared::new(&program);
        let predicate = compiler
            .compile(&prepared, block)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let decoded: Vec<Decoded> = samples.iter().map(|s| Decoded::new(&program, s)).collect();
        let code = &program.blocks[block as usize];
        let queries = Queries::of(&program);

        // Every engine must agree with the native closure on every sample first.
        let cel_program = cel_interpreter::Program::compile(case.cel).expect("cel compiles");
        let cel_root = cel_interpreter::Context::default();
        let cel = |s: &Sample| -> bool {
            let mut scope = cel_root.new_inner_scope();
            scope.add_variable_from_value("a", s.a);
            scope.add_variable_from_value("b", text(&s.b).to_string());
            scope.add_variable_from_value("country", text(&s.country).to_string());
            scope.add_variable_from_value("plan", text(&s.plan).to_string());
            scope.add_variable_from_value("ltv", s.ltv);
            scope.add_variable_from_value("orders_30d", s.orders_30d);
            scope.add_variable_from_value("did_365", s.did_365);
            scope.add_variable_from_value("did_60", s.did_60);
            matches!(
                cel_program.execute(&scope),
                Ok(cel_interpreter::Value::Bool(true))
            )
        };
        let rhai_engine = rhai::Engine::new();
        let rhai_ast = rhai_engine.compile(case.rhai).expect("rhai compiles");
        let rhai = |s: &Sample| -> bool {
            let mut scope = rhai::Scope::new();
            scope.push("a", s.a);
            scope.push("b", text(&s.b).to_string());
            scope.push("country", text(&s.country).to_string());
            scope.push("plan", text(&s.plan).to_string());
            scope.push("ltv", s.ltv);
            scope.push("orders_30d", s.orders_30d);
            scope.push("did_365", s.did_365);
            scope.push("did_60", s.did_60);
            rhai_engine
                .eval_ast_with_scope::<bool>(&mut scope, &rhai_ast)
                .unwrap_or(false)
        };
        let evalexpr_tree: evalexpr::Node =
            evalexpr::build_operator_tree(case.evalexpr).expect("evalexpr compiles");
        let evalexpr_context = std::cell::RefCell::new(evalexpr::HashMapContext::new());
        let evalexpr = |s: &Sample| -> bool {
            use evalexpr::{ContextWithMutableVariables, Value as V};
            let mut c = evalexpr_context.borrow_mut();
            let _ = c.set_value("a".into(), V::Int(s.a));
            let _ = c.set_value("b".into(), V::String(text(&s.b).to_string()));
            let _ = c.set_value("country".into(), V::String(text(&s.country).to_string()));
            let _ = c.set_value("plan".into(), V::String(text(&s.plan).to_string()));
            let _ = c.set_value("ltv".into(), V::Float(s.ltv));
            let _ = c.set_value("orders_30d".into(), V::Int(s.orders_30d));
            let _ = c.set_value("did_365".into(), V::Boolean(s.did_365));
            let _ = c.set_value("did_60".into(), V::Boolean(s.did_60));
            evalexpr_tree
                .eval_boolean_with_context(&*c)
                .unwrap_or(false)
        };
        for (s, d) in samples.iter().zip(&decoded) {
            let want = (case.native)(s);
            assert_eq!(
                predicate.run(d),
                Some(Value::Bool(want)),
                "{}: JIT",
                case.name
            );
            assert_eq!(predicate.holds(d), Some(want), "{}: JIT holds", case.name);
            assert_eq!((case.by_hand)(d, &queries), want, "{}: by hand", case.name);
            assert_eq!(
                eval(&prepared, code, d),
                Value::Bool(want),
                "{}: stack interpreter",
                case.name
            );
            assert_eq!(
                prepared.tree(block).map(|t| t.eval(d)),
                Some(Value::Bool(want)),
                "{}: interpreter",
                case.name
            );
            assert_eq!(cel(s), want, "{}: cel", case.name);
            assert_eq!(rhai(s), want, "{}: rhai", case.name);
            assert_eq!(evalexpr(s), want, "{}: evalexpr", case.name);
        }

        let mut native = |i: usize| (case.native)(black_box(&samples[i % SAMPLES]));
        let mut jit = |i: usize| predicate.holds(black_box(&decoded[i % SAMPLES])) == Some(true);
        let mut by_hand = |i: usize| (case.by_hand)(black_box(&decoded[i % SAMPLES]), &queries);
        let tree = prepared.tree(block).expect("an expression has a tree");
        let mut interpreter = |i: usize| tree.holds(black_box(&decoded[i % SAMPLES]));
        let mut stack =
            |i: usize| eval(&prepared, code, black_box(&decoded[i % SAMPLES])).is_true();
        let mut cel = |i: usize| cel(black_box(&samples[i % SAMPLES]));
        let mut rhai = |i: usize| rhai(black_box(&samples[i % SAMPLES]));
        let mut evalexpr = |i: usize| evalexpr(black_box(&samples[i % SAMPLES]));
        let peers = evals / 10;
        let ns = time_engines(&mut [
            ("native", &mut || time(evals, &mut native)),
            ("jit", &mut || time(evals, &mut jit)),
            ("by-hand", &mut || time(evals, &mut by_hand)),
            ("interpreter", &mut || time(evals, &mut interpreter)),
            ("stack", &mut || time(evals, &mut stack)),
            ("cel", &mut || time(peers, &mut cel)),
            ("rhai", &mut || time(peers, &mut rhai)),
            ("evalexpr", &mut || time(peers, &mut evalexpr)),
        ]);
        let [native, jit, by_hand, interpreter, stack, cel_ns, rhai_ns, evalexpr_ns] = ns[..]
        else {
            unreachable!("eight engines");
        };
        println!(
            "| `{}` | {native:.1} | {jit:.1} | {by_hand:.1} | {interpreter:.1} | {stack:.1} | {cel_ns:.0} | {rhai_ns:.0} | {evalexpr_ns:.0} | {:.0}× | {:.0}× |",
            case.name,
            cel_ns / jit,
            rhai_ns / jit,
        );

        let jit_us = compile_time(101, || {
            black_box(compiler.compile(&prepared, block).is_ok());
        });
        let cel_us = compile_time(101, || {
            black_box(cel_interpreter::Program::compile(case.cel).is_ok());
        });
        let rhai_us = compile_time(101, || {
            black_box(rhai_engine.compile(case.rhai).is_ok());
        });
        let evalexpr_us = compile_time(101, || {
            black_box(
                evalexpr::build_operator_tree::<evalexpr::DefaultNumericTypes>(case.evalexpr)
                    .is_ok(),
            );
        });
        compile_rows.push(format!(
            "| `{}` | {jit_us:.0} | {cel_us:.1} | {rhai_us:.1} | {evalexpr_us:.1} |",
            case.name
        ));
    }
    println!("\ncompile time per predicate, µs (median of 101)\n");
    println!("| predicate | our JIT (cranelift) | cel-interpreter parse | rhai compile | evalexpr parse |");
    println!("|---|---:|---:|---:|---:|");
    for row in compile_rows {
        println!("{row}");
    }
}
