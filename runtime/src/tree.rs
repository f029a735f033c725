//! Verified expression blocks → trees, and their evaluation: how the VM interprets an
//! expression block (`Prepared::run`) until the JIT compiles it.
//!
//! The stack interpreter (`eval::eval`) copies every value it touches onto its stack: each
//! load, each constant, each intermediate result is an owned `Value` pushed and popped. A tree
//! reads its operands where they are — constants inside the tree, event, profile and slot
//! values where the context holds them (`Context::lend`) — and makes a value only for what it
//! computes.
//!
//! Conditions — comparisons, `and`, `or`, `not`, `is set`, `in`: most of what runs — are built
//! into closures, each made for its node's shape: `cart.price > 10` becomes one closure that
//! borrows the price and, when it is a float, compares it with 10.0 at once; `country in ["US",
//! "CA"]` one that looks for a short string among short strings by their words; `not` works on
//! its operand's truth. A constant operand of a pure operation is computed when the tree is
//! built (`Const 100, ToFloat`). A condition asked only whether it holds (`Tree::holds`,
//! `Prepared::holds`: what the VM asks of every filter, audience, goal and exit) never
//! becomes a `Value`, and an `and` asked so (its operands kept apart, `Node::All`) stops at
//! the first operand that does not hold: `and` is true only when each operand is.
//!
//! The operations themselves are `eval`'s (`eval::unary`, `eval::binary`, `eval::make_list`
//! and, for conditions, `truth_of_unary`, `truth_of_binary` and `logic`); the closures decide
//! only the same-type comparisons themselves and pass every other pair to `truth_of_binary`.
//! tests/jit.rs checks that the two interpreters agree on random blocks, half of whose
//! comparisons are with a constant, and that `holds` is their value being `true`.
//!
//! **Invariant:** a block has a tree only if it is a pure expression (no jump, no step) of at
//! most `MAX_DEPTH` levels; every other block is run by `eval::eval`.

use std::cmp::Ordering;

use crate::bytecode::opcode::Opcode;
use crate::bytecode::verify::kind;
use crate::bytecode::Block;
use crate::eval::{
    arity, binary, gives_truth, logic, make_list, truth_of_binary, truth_of_unary, unary,
    unary_of_constant, Context, HistoryOp, Prepared, Read, Truth,
};
use crate::value::{Inline, Len, Value};

/// An expression block as a tree.
#[derive(Debug)]
pub struct Tree(Node);

#[derive(Debug)]
enum Node {
    Const(Value),
    Load(Read),
    Now,
    EnteredAt,
    History(u16, HistoryOp),
    /// An operation of `eval::arity` 1 that gives a value, with its instruction operand.
    Unary(Opcode, u32, Box<Node>),
    /// An operation of `eval::arity` 2 that gives a value, with its instruction operand.
    Binary(Opcode, u32, Box<[Node; 2]>),
    List(Box<[Node]>),
    /// An operation that gives a truth (a comparison, `or`, `not`, `is set`, …), as a closure
    /// made for its shape when the tree is built (`unary_node`, `binary_node`).
    Condition(Condition),
    /// `and` of conditions, flattened (`a and b and c` is three tests). Kept apart so that a
    /// condition asked only whether it holds (`Tree::holds`) stops at the first of them that
    /// does not; made one closure where its truth is needed (`as_test`).
    All(Vec<Condition>),
}

/// A condition compiled to a closure. Conditions are most of what runs; a closure made for
/// each one's shape (a load compared with an int, `and` of two conditions, …) does only that
/// shape's work, where walking the tree paid for the general case at every node.
struct Condition(Test);

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Condition")
    }
}

/// The deepest tree built: evaluation recurses once per level, so deeper blocks (which no
/// journey writes by hand) stay with the stack interpreter.
const MAX_DEPTH: usize = 64;

impl Tree {
    /// The tree of `block`, if it is an expression `MAX_DEPTH` levels deep at most.
    pub fn build(prepared: &Prepared, block: &Block) -> Option<Tree> {
        let end = block.offset.checked_add(block.length)?;
        let mut stack: Vec<(Node, usize)> = Vec::new();
        let mut pc = block.offset;
        while pc < end {
            let ins = prepared.instruction(pc, end)?;
            let [a, _] = ins.operands;
            let leaf = |node| Some((node, 1));
            let made = match ins.opcode {
                Opcode::Const => leaf(Node::Const(prepared.constant(a))),
                Opcode::LoadEvent => leaf(Node::Load(Read::Event(a as u16))),
                Opcode::LoadProfile => leaf(Node::Load(Read::Profile(a as u16))),
                Opcode::LoadSlot => leaf(Node::Load(Read::Slot(a as u16))),
                Opcode::Now => leaf(Node::Now),
                Opcode::EnteredAt => leaf(Node::EnteredAt),
                Opcode::Count => leaf(Node::History(a as u16, HistoryOp::Count)),
                Opcode::Did => leaf(Node::History(a as u16, HistoryOp::Did)),
                Opcode::Last => leaf(Node::History(a as u16, HistoryOp::Last)),
                Opcode::Sum => leaf(Node::History(a as u16, HistoryOp::Sum)),
                Opcode::MakeList => {
                    let at = stack.len().checked_sub(a as usize)?;
                    let items: Vec<(Node, usize)> = stack.drain(at..).collect();
                    let depth = items.iter().map(|(_, d)| *d).max().unwrap_or(0) + 1;
                    Some((
                        Node::List(items.into_iter().map(|(n, _)| n).collect()),
                        depth,
                    ))
                }
                Opcode::Return => {
                    let (root, _) = stack.pop()?;
                    return (stack.is_empty() && ins.next == end).then_some(Tree(root));
                }
                op => match arity(op)? {
                    1 => {
                        let (arg, depth) = stack.pop()?;
                        Some((unary_node(op, a, arg), depth + 1))
                    }
                    _ => {
                        let (right, rd) = stack.pop()?;
                        let (left, ld) = stack.pop()?;
                        Some((binary_node(op, a, left, right), ld.max(rd) + 1))
                    }
                },
            };
            let (node, depth) = made?;
            if depth > MAX_DEPTH {
                return None;
            }
            stack.push((node, depth));
            pc = ins.next;
        }
        None
    }

    /// The block's value: what `eval::eval` gives.
    pub fn eval(&self, context: &dyn Context) -> Value {
        match get(&self.0, context) {
            Got::Lent(v) => v.clone(),
            Got::Made(v) => v,
        }
    }

    /// Whether the block's value is `true`: `self.eval(context).is_true()`, without making
    /// the value (what conditions ask).
    pub fn holds(&self, context: &dyn Context) -> bool {
        match &self.0 {
            Node::Condition(Condition(test)) => test(context) == Truth::True,
            // (`and` is true when each operand is, and otherwise absent, missing or false.)
            Node::All(tests) => match &tests[..] {
                // (Two operands, the commonest, without the loop.)
                [Condition(a), Condition(b)] => {
                    a(context) == Truth::True && b(context) == Truth::True
                }
                tests => each_holds(tests, context),
            },
            node => value_holds(node, context),
        }
    }
}

/// Whether each of `tests` holds, asked in turn until one does not. (This and `value_holds`
/// are out of line so that `Tree::holds` saves few registers on its common paths.)
#[inline(never)]
fn each_holds(tests: &[Condition], context: &dyn Context) -> bool {
    tests
        .iter()
        .all(|Condition(test)| test(context) == Truth::True)
}

/// Whether `node`'s value is `true`, for a node that is no condition.
#[inline(never)]
fn value_holds(node: &Node, context: &dyn Context) -> bool {
    get(node, context).is_true()
}

/// The node of operation `op` (operand `a`) on `arg`.
fn unary_node(op: Opcode, a: u32, arg: Node) -> Node {
    // (`Const 100, ToFloat` is how `price > 100` reads for a float price.)
    if let Node::Const(v) = &arg {
        if let Some(folded) = unary_of_constant(op, a, v) {
            return Node::Const(folded);
        }
    }
    if !gives_truth(op) {
        return Node::Unary(op, a, Box::new(arg));
    }
    condition(match arg {
        // (`not` of a condition on its truth, not on it made a value: `not x` is
        // `Truth::of(x).negated()` for every value `x`.)
        Node::Condition(_) | Node::All(_) if op == Opcode::Not => {
            let arg = as_test(arg);
            Box::new(move |cx| arg(cx).negated())
        }
        Node::Condition(Condition(arg)) => Box::new(move |cx| truth_of_unary(op, &arg(cx).into())),
        arg => on_value(arg, move |v| truth_of_unary(op, v)),
    })
}

/// The node of operation `op` (operand `k`) on `left` and `right`.
fn binary_node(op: Opcode, k: u32, left: Node, right: Node) -> Node {
    use Opcode::*;
    if !gives_truth(op) {
        return Node::Binary(op, k, Box::new([left, right]));
    }
    if op == And {
        let mut tests = conjuncts(left);
        tests.extend(conjuncts(right));
        return Node::All(tests);
    }
    condition(match (left, right) {
        (left, right) if op == Or => {
            let (l, r) = (as_test(left), as_test(right));
            Box::new(move |cx| logic(op, l(cx), r(cx)))
        }
        (left, Node::Const(c)) if matches!(op, Eq | Ne | Lt | Le | Gt | Ge) => {
            compare_with(op, k, left, c)
        }
        (left, Node::Const(list @ Value::List(_))) if op == In => in_list(k, left, list),
        (left, Node::Const(c)) => on_value(left, move |v| truth_of_binary(op, k, v, &c)),
        (left, right) => {
            Box::new(move |cx| truth_of_binary(op, k, &operand(&left, cx), &operand(&right, cx)))
        }
    })
}

fn condition(test: Test) -> Node {
    Node::Condition(Condition(test))
}

type Test = Box<dyn Fn(&dyn Context) -> Truth + Send + Sync>;

/// The operands of `and` that `node` gives: its own if it is an `and`, else itself.
fn conjuncts(node: Node) -> Vec<Condition> {
    match node {
        Node::All(tests) => tests,
        node => vec![Condition(as_test(node))],
    }
}

/// `and` of `tests`: `logic` over them in turn (which does not depend on how `and`s nest:
/// missing if any is, else absent if any is, else whether all are true).
fn all(tests: &[Condition], context: &dyn Context) -> Truth {
    tests.iter().fold(Truth::True, |truth, Condition(test)| {
        logic(Opcode::And, truth, test(context))
    })
}

/// `node` read as a condition (an operand of `and`, `or`).
fn as_test(node: Node) -> Test {
    match node {
        Node::Condition(Condition(test)) => test,
        Node::All(tests) => Box::new(move |cx| all(&tests, cx)),
        Node::History(query, op) => Box::new(move |cx| Truth::of(&cx.history(query, op))),
        node => on_value(node, Truth::of),
    }
}

/// A test of `node`'s value. A load's value is tested where the context holds it; a history
/// answer as the context gives it.
fn on_value<T>(node: Node, test: T) -> Test
where
    T: Fn(&Value) -> Truth + Send + Sync + 'static,
{
    match node {
        Node::Load(read) => {
            let loaded = Loaded { read, test };
            Box::new(move |cx| loaded.tested(cx))
        }
        Node::History(query, op) => Box::new(move |cx| test(&cx.history(query, op))),
        node => Box::new(move |cx| test(&operand(&node, cx))),
    }
}

/// A test of a loaded value (`on_value`).
struct Loaded<T> {
    read: Read,
    test: T,
}

impl<T: Fn(&Value) -> Truth> Loaded<T> {
    /// The test of the value, borrowed where the context holds it.
    #[inline(always)]
    fn tested(&self, context: &dyn Context) -> Truth {
        match context.lend(self.read) {
            Some(v) => (self.test)(v),
            None => self.tested_copy(context),
        }
    }

    /// The test of a copy of the value, for contexts that do not lend it. (Out of line and
    /// given only `self`, so that the common path keeps fewer registers across its call.)
    #[cold]
    #[inline(never)]
    fn tested_copy(&self, context: &dyn Context) -> Truth {
        (self.test)(&context.read(self.read))
    }
}

/// `left op constant` for a comparison, the commonest condition (`cart.price > 10`,
/// `profile.plan != "free"`, `count(…) >= 2`). The closure is made for the constant's type and
/// the operation, so that an operand of that type is compared at once; any other goes to
/// `eval::truth_of_binary`.
fn compare_with(op: Opcode, k: u32, left: Node, constant: Value) -> Test {
    use Opcode::*;
    // An ordering compares only the kind its operand names; equality any two values.
    let for_kind = |of: u32| !matches!(op, Lt | Le | Gt | Ge) || k == of;
    match constant {
        Value::Int(c) if for_kind(kind::INT) => by_order(op, k, left, constant, move |v| match v {
            Value::Int(x) => Some(x.cmp(&c)),
            _ => None,
        }),
        Value::Float(c) if for_kind(kind::FLOAT) => {
            // (NaN has no order: `eval::truth_of_binary` decides.)
            by_order(op, k, left, constant, move |v| match v {
                Value::Float(x) => x.partial_cmp(&c),
                _ => None,
            })
        }
        Value::Timestamp(c) if for_kind(kind::TIMESTAMP) => {
            by_order(op, k, left, constant, move |v| match v {
                Value::Timestamp(x) => Some(x.cmp(&c)),
                _ => None,
            })
        }
        Value::Duration(c) if for_kind(kind::DURATION) => {
            by_order(op, k, left, constant, move |v| match v {
                Value::Duration(x) => Some(x.cmp(&c)),
                _ => None,
            })
        }
        // (Strings only for `==` and `!=`: "unequal" is told as `Less`. A short string never
        // equals a long one, `Value`'s invariant.)
        Value::Short {
            len: c_len,
            bytes: c_bytes,
        } if matches!(op, Eq | Ne) => by_order(op, k, left, constant, move |v| match v {
            Value::Short { len, bytes } if *len == c_len && *bytes == c_bytes => {
                Some(Ordering::Equal)
            }
            Value::Short { .. } | Value::Long(_) => Some(Ordering::Less),
            _ => None,
        }),
        Value::Long(ref c) if matches!(op, Eq | Ne) => {
            let c = c.clone();
            by_order(op, k, left, constant, move |v| match v {
                Value::Long(x) if *x == c => Some(Ordering::Equal),
                Value::Short { .. } | Value::Long(_) => Some(Ordering::Less),
                _ => None,
            })
        }
        constant => on_value(left, move |v| truth_of_binary(op, k, v, &constant)),
    }
}

/// `left in [ … ]` for a constant list (`profile.country in ["US", "CA"]`). When every item is a
/// short string, a short string operand is looked for by its words, and a long one is in no
/// such list (a long string never equals a short one: `Value`'s invariant); any other operand
/// goes to `eval::truth_of_binary`.
fn in_list(k: u32, left: Node, list: Value) -> Test {
    let shorts: Option<Vec<(Len, Inline)>> = match &list {
        Value::List(items) => items
            .iter()
            .map(|item| match item {
                Value::Short { len, bytes } => Some((*len, *bytes)),
                _ => None,
            })
            .collect(),
        _ => None,
    };
    match shorts {
        Some(shorts) => on_value(left, move |v| match v {
            // (Every item compared, without a branch on each: which one matches, if any, is
            // data, and a mispredicted exit costs more than the compares it saves.)
            Value::Short { len, bytes } => Truth::from(
                shorts
                    .iter()
                    .fold(false, |found, (l, b)| found | ((l == len) & (b == bytes))),
            ),
            Value::Long(_) => Truth::False,
            v => truth_of_binary(Opcode::In, k, v, &list),
        }),
        None => on_value(left, move |v| truth_of_binary(Opcode::In, k, v, &list)),
    }
}

/// `compare_with` for a constant of a type `order` compares: one closure per operation.
fn by_order<O>(op: Opcode, k: u32, left: Node, constant: Value, order: O) -> Test
where
    O: Fn(&Value) -> Option<Ordering> + Send + Sync + 'static,
{
    fn tested<O, H>(op: Opcode, k: u32, left: Node, constant: Value, order: O, holds: H) -> Test
    where
        O: Fn(&Value) -> Option<Ordering> + Send + Sync + 'static,
        H: Fn(Ordering) -> bool + Send + Sync + 'static,
    {
        on_value(left, move |v| match order(v) {
            Some(ordering) => Truth::from(holds(ordering)),
            // (Not inlined: every other pair of operands, rare in a block of these types.)
            None => truth_of_binary(op, k, v, &constant),
        })
    }
    match op {
        Opcode::Eq => tested(op, k, left, constant, order, Ordering::is_eq),
        Opcode::Ne => tested(op, k, left, constant, order, Ordering::is_ne),
        Opcode::Lt => tested(op, k, left, constant, order, Ordering::is_lt),
        Opcode::Le => tested(op, k, left, constant, order, Ordering::is_le),
        Opcode::Gt => tested(op, k, left, constant, order, Ordering::is_gt),
        _ => tested(op, k, left, constant, order, Ordering::is_ge),
    }
}

/// An operand: borrowed where it already is, else made.
enum Got<'a> {
    Lent(&'a Value),
    Made(Value),
}

impl std::ops::Deref for Got<'_> {
    type Target = Value;
    fn deref(&self) -> &Value {
        match self {
            Got::Lent(v) => v,
            Got::Made(v) => v,
        }
    }
}

/// `get`, with constants and loads (most operands) taken here rather than by a call.
#[inline(always)]
fn operand<'a>(node: &'a Node, context: &'a dyn Context) -> Got<'a> {
    match node {
        Node::Const(v) => Got::Lent(v),
        Node::Load(read) => load(*read, context),
        other => get(other, context),
    }
}

fn load(read: Read, context: &dyn Context) -> Got<'_> {
    match context.lend(read) {
        Some(v) => Got::Lent(v),
        None => Got::Made(context.read(read)),
    }
}

fn get<'a>(node: &'a Node, context: &'a dyn Context) -> Got<'a> {
    match node {
        Node::Const(v) => Got::Lent(v),
        Node::Load(read) => load(*read, context),
        Node::Now => Got::Made(Value::Timestamp(context.now())),
        Node::EnteredAt => Got::Made(Value::Timestamp(context.entered_at())),
        Node::History(query, op) => Got::Made(context.history(*query, *op)),
        Node::Unary(op, a, arg) => {
            Got::Made(unary(*op, *a, &operand(arg, context), || context.zone()))
        }
        Node::Binary(op, k, args) => {
            let [left, right] = &**args;
            Got::Made(binary(
                *op,
                *k,
                &operand(left, context),
                &operand(right, context),
            ))
        }
        Node::List(items) => {
            let items: Vec<Value> = items.iter().map(|n| get(n, context).clone()).collect();
            Got::Made(make_list(&items))
        }
        Node::Condition(Condition(test)) => Got::Made(test(context).into()),
        Node::All(tests) => Got::Made(all(tests, context).into()),
    }
}
