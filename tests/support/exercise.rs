//! A verified program run on a few inputs: one user identified, every event type once (its
//! fields absent), then 400 days of timers. Shared by the bytecode fuzz target and the test
//! that replays what it found: a verified program must never make the VM fail.

use std::sync::Arc;

use journey_runtime::bytecode::Program;
use journey_runtime::value::Value;
use journey_runtime::vm::input::Input;
use journey_runtime::vm::Engine;

pub fn exercise(program: &Program) -> Engine<'_> {
    let start = 1_767_225_600_000i64;
    let user: Arc<str> = Arc::from("u1");
    let mut engine = Engine::new(program);
    engine.push(Input::Identify {
        user: user.clone(),
        time: start,
        traits: Vec::new(),
    });
    for (event, desc) in program.events.iter().enumerate() {
        let fields = program.record_fields(desc.record).map_or(0, <[_]>::len);
        engine.push(Input::Track {
            user: user.clone(),
            time: start + 60_000 * (event as i64 + 1),
            event: event as u32,
            fields: vec![Value::Absent; fields].into(),
        });
    }
    engine.finish(Some(start + 400 * 86_400_000));
    engine
}
