//! The retry and replay tables' shards (`gate::tables`) as shared data may hold them:
//! any stored bytes, any entry and clock. Nothing panics; a shard never grows past
//! its capacity; what was just recorded is a duplicate until it expires, and gone
//! once forgotten.
#![no_main]

use arbitrary::Arbitrary;
use gate::tables::{check_and_record, forget, replay, retry, Entry, Lookup, Shape};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    stored: Vec<u8>,
    shape: u8,
    entries: Vec<(u64, u64, u64, u64)>,
    forget: Option<u64>,
}

fuzz_target!(|i: Input| {
    let shape = match i.shape % 3 {
        0 => retry::SHAPE,
        1 => replay::SHAPE,
        n => Shape {
            shards: u64::from(n),
            capacity: usize::from(i.shape / 3 % 8),
        },
    };
    if let Some(id) = i.forget {
        if let Some(value) = forget(&i.stored, id) {
            assert!(value.len() <= i.stored.len());
        }
    }
    let _ = shape.shard_of(i.entries.first().map_or(0, |e| e.0));
    let mut stored = i.stored;
    for &(identity, stamp, expires_at, now) in i.entries.iter().take(64) {
        let entry = Entry {
            identity,
            stamp,
            expires_at,
        };
        match check_and_record(&stored, entry, now, shape) {
            Lookup::New { value, evicted } => {
                assert!(value.len() <= 8 + 16 * shape.capacity);
                let secs = |t: u64| u32::try_from(t).unwrap_or(u32::MAX);
                if secs(expires_at) > secs(now) {
                    // Just recorded: a duplicate now, unless a full shard made room
                    // with it at once, and then it is too old to be told apart.
                    match check_and_record(&value, entry, now, shape) {
                        Lookup::Duplicate => {
                            let gone = forget(&value, identity).expect("it is there");
                            assert_ne!(
                                check_and_record(&gone, entry, now, shape),
                                Lookup::Duplicate
                            );
                        }
                        Lookup::TooOld => assert!(evicted),
                        Lookup::New { .. } => panic!("recorded, yet new again"),
                    }
                }
                stored = value;
            }
            Lookup::Duplicate | Lookup::TooOld => {}
        }
    }
});
