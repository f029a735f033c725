//! Verified expression blocks → trees, and their evaluation: how the VM interprets an
//! expression block (`Prepared::run`) until the JIT compiles it.
//!
//! The stack interpreter (`eval::eval`) copies every value it touches onto its stack: each
//! load, each constant, each intermediate result is an owned `Value` pushed and popped. A tree
//! reads its operands where they are — constants inside the tree, event, profile and slot
//! values where the context holds them (`Context::lend`) — and makes a value only for what it
//! computes. The operations themselves are `eval`'s (`eval::unary`, `eval::binary`,
//! `eval::make_list` and, for conditions, `truth_of_unary`, `truth_of_binary` and `logic`), so
//! the two interpreters cannot disagree on what an operation means; tests/jit.rs checks that
//! they agree on random blocks.
//!
//! **Invariant:** a block has a tree only if it is a pure expression (no jump, no step) of at
//! most `MAX_DEPTH` levels; every other block is run by `eval::eval`.

use crate::bytecode::opcode::Opcode;
use crate::bytecode::Block;
use crate::eval::{
    arity, binary, gives_truth, logic, make_list, truth_of_binary, truth_of_unary, unary, Context,
    HistoryOp, Prepared, Read, Truth,
};
use crate::value::Value;

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
    /// An operation of `eval::arity` 1, with its instruction operand.
    Unary(Opcode, u32, Box<Node>),
    /// An operation of `eval::arity` 2, with its instruction operand.
    Binary(Opcode, u32, Box<[Node; 2]>),
    List(Box<[Node]>),
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
                        Some((Node::Unary(op, a, Box::new(arg)), depth + 1))
                    }
                    _ => {
                        let (right, rd) = stack.pop()?;
                        let (left, ld) = stack.pop()?;
                        Some((Node::Binary(op, a, Box::new([left, right])), ld.max(rd) + 1))
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
        if self.0.gives_truth() {
            return truth(&self.0, context).into();
        }
        match get(&self.0, context) {
            Got::Lent(v) => v.clone(),
            Got::Made(v) => v,
        }
    }
}

impl Node {
    fn gives_truth(&self) -> bool {
        match self {
            Node::Unary(op, ..) | Node::Binary(op, ..) => gives_truth(*op),
            _ => false,
        }
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

/// A condition's outcome, without making a `Value` of it: conditions are most of what runs,
/// and a `Value` made only to be read back costs more than the comparison (its bytes, stored
/// one by one, are then reloaded as words, which stalls store forwarding).
fn truth(node: &Node, context: &dyn Context) -> Truth {
    match node {
        Node::Unary(op, _, arg) if gives_truth(*op) => match arg.gives_truth() {
            true => truth_of_unary(*op, &truth(arg, context).into()),
            false => truth_of_unary(*op, &operand(arg, context)),
        },
        Node::Binary(op @ (Opcode::And | Opcode::Or), _, args) => {
            let [left, right] = &**args;
            logic(*op, truth(left, context), truth(right, context))
        }
        Node::Binary(op, k, args) if gives_truth(*op) => {
            let [left, right] = &**args;
            truth_of_binary(*op, *k, &operand(left, context), &operand(right, context))
        }
        other => Truth::of(&operand(other, context)),
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
    if node.gives_truth() {
        return Got::Made(truth(node, context).into());
    }
    match node {
        Node::Const(v) => Got::Lent(v),
        Node::Load(read) => load(*read, context),
        Node::Now => Got::Made(Value::Timestamp(context.now())),
        Node::EnteredAt => Got::Made(Value::Timestamp(context.entered_at())),
        Node::History(query, op) => Got::Made(context.history(*query, *op)),
        Node::Unary(op, a, arg) => Got::Made(unary(*op, *a, &operand(arg, context), context)),
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
    }
}
