//! The exchange's notes: the `once` ones are said once per VM (a hint for the
//! operator, not a line per request), each note its own; the others every time.

use super::{config, past_the_deadline, Gate};
use crate::host::fake::Stream;
use gate::exchange::Note;

/// The host gives no byte count for the push: its body mode cannot be learnt.
fn no_byte_count(stream: &mut Stream) {
    stream.properties.remove("request.total_size");
}

fn said(gate: &Gate, note: Note) -> usize {
    gate.host.logged(&note.to_string())
}

#[test]
fn a_once_note_is_said_once_per_vm() {
    let mut gate = Gate::configured(&config(""));
    gate.push_where(no_byte_count);
    gate.tick();
    assert_eq!(said(&gate, Note::NoByteCount), 1);
    gate.push_where(no_byte_count);
    gate.tick();
    gate.tick();
    assert_eq!(said(&gate, Note::NoByteCount), 1);
    // Another root context in the same VM (another filter sharing it).
    let mut other = Gate::on(gate.host.clone(), 2, &config(""));
    other.push_where(no_byte_count);
    other.tick();
    assert_eq!(said(&gate, Note::NoByteCount), 1);
}

#[test]
fn each_once_note_is_said_once_of_its_own() {
    let mut gate = Gate::configured(&config(""));
    for _ in 0..2 {
        let (id, _) = gate.push_where(no_byte_count);
        gate.tick();
        gate.host.advance(past_the_deadline());
        gate.tick();
        assert_eq!(gate.replies(id), [408]);
    }
    assert_eq!(said(&gate, Note::NoByteCount), 1);
    assert_eq!(said(&gate, Note::BodyNeverCame), 1);
}

#[test]
fn a_note_not_said_once_is_said_every_time() {
    let mut gate = Gate::configured(&config(""));
    for _ in 0..3 {
        gate.handshake("used");
    }
    assert_eq!(gate.host.logged("a signed query used before"), 2);
}
