//! A journey's body → the longest time an instance can spend running it (`None`: no bound).
//!
//! A bound the VM uses and the disassembler shows.
//!
//! The VM arms a journey's `timeout` only when the body can outlast it: an instance whose every
//! path ends before the timeout would only ever meet a stale timer, and in a busy engine those
//! are most of the timers. The bound is taken over every path of the body, which the verifier
//! guarantees is a DAG (jumps go forward only), so one pass in code order finds it.

use crate::bytecode::opcode::{decode, Opcode};
use crate::bytecode::{Constant, JourneyDesc, Program, NONE};

/// The longest a `wait until HH:MM` can sleep: a day, plus an hour for a DST change.
const TIME_OF_DAY_MS: i64 = 25 * 3_600_000;
/// The longest quiet hours can hold a send back: a whole day's window, plus an hour for DST.
const QUIET_DEFERRAL_MS: i64 = 25 * 3_600_000;

/// The journey's timeout, when its body can outlast it: the only timeouts worth a timer.
pub fn armed_timeout(program: &Program, journey: &JourneyDesc) -> Option<i64> {
    journey
        .timeout_ms
        .filter(|timeout| longest_run(program, journey).is_none_or(|run| run >= *timeout))
}

/// The longest an instance of `journey` can run from entry until it ends by itself (completed,
/// or a wait's deadline without a timeout branch), or `None` when a path has no bound (a wait
/// without `within`, `wait until` a computed moment) or the code cannot be read.
pub fn longest_run(program: &Program, journey: &JourneyDesc) -> Option<i64> {
    let body = program.blocks.get(journey.body as usize)?;
    let (start, end) = (body.offset, body.offset.saturating_add(body.length));
    // By offset from `start`: the longest time to reach that instruction (`None`: unreached).
    let mut reach: Vec<Option<i64>> = vec![None; body.length as usize + 1];
    reach[0] = Some(0);
    let mut longest = 0i64;
    let mut pc = start;
    while pc < end {
        let ins = decode(&program.code, pc, end).ok()?;
        let Some(at) = reach[(pc - start) as usize] else {
            pc = ins.next;
            continue;
        };
        let [a, _] = ins.operands;
        // (target, time taken to get there); a target outside the body ends the instance.
        let mut next: Vec<(u32, i64)> = Vec::new();
        match ins.opcode {
            Opcode::Return | Opcode::Exit => longest = longest.max(at),
            Opcode::Jump => next.push((a, 0)),
            Opcode::JumpIfFalse => next.extend([(a, 0), (ins.next, 0)]),
            Opcode::Wait => match program.constants.get(a as usize)? {
                Constant::Duration(ms) => next.push((ins.next, *ms)),
                _ => return None,
            },
            Opcode::WaitUntilTime => next.push((ins.next, TIME_OF_DAY_MS)),
            Opcode::WaitUntil => return None,
            Opcode::WaitFor => {
                let wait = journey.waits.get(a as usize)?;
                let within = wait.within_ms?;
                next.push((ins.next, within));
                if wait.timeout_target != NONE {
                    next.push((wait.timeout_target, within));
                }
            }
            Opcode::WaitAny => {
                let wait = journey.wait_anys.get(a as usize)?;
                next.extend(wait.arms.iter().map(|arm| (arm.target, wait.within_ms)));
                if wait.timeout_target != NONE {
                    next.push((wait.timeout_target, wait.within_ms));
                }
            }
            Opcode::Send => {
                let send = journey.sends.get(a as usize)?;
                let deferred = journey.quiet.is_some_and(|q| !q.skip) && !send.transactional;
                next.push((ins.next, if deferred { QUIET_DEFERRAL_MS } else { 0 }));
            }
            Opcode::Split => next.extend(
                journey
                    .splits
                    .get(a as usize)?
                    .iter()
                    .map(|arm| (arm.target, 0)),
            ),
            _ => next.push((ins.next, 0)),
        }
        for (target, took) in next {
            let arrival = at.saturating_add(took);
            match target
                .checked_sub(start)
                .and_then(|t| reach.get_mut(t as usize))
            {
                // Falling off the end of the body completes the instance.
                Some(slot) if target < end => {
                    *slot = Some(slot.map_or(arrival, |s| s.max(arrival)))
                }
                _ => longest = longest.max(arrival),
            }
        }
        pc = ins.next;
    }
    Some(longest)
}
