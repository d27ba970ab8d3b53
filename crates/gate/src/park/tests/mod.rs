//! Parking's rules, one test each, against a fake of the proxy's shared data that
//! behaves as Envoy's does (a CAS per value, a missing key reads as empty) and can
//! let "another worker" write between a read and its write, as Envoy's threads do.

mod codec;
mod parking;
mod redelivery;

use super::*;
use std::collections::{HashMap, HashSet, VecDeque};

/// Unix ms at the start of every test.
const T0: u64 = 1_800_000_000_000;
const ACCOUNT: &str = "acct";

/// Another worker's doing, run between a read and the write that follows it.
type Interloper = Box<dyn FnOnce(&mut Store)>;

#[derive(Default)]
struct Store {
    values: HashMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
    interlopers: HashMap<String, VecDeque<Interloper>>,
    /// Keys the host refuses to write.
    refused: HashSet<String>,
    /// Keys written, in order.
    writes: Vec<String>,
}

impl Store {
    /// Before the next write to `key` (after its read), `other` runs.
    fn interlope(&mut self, key: &str, other: impl FnOnce(&mut Store) + 'static) {
        self.interlopers
            .entry(key.to_string())
            .or_default()
            .push_back(Box::new(other));
    }

    fn get(&self, key: &str) -> Vec<u8> {
        self.values
            .get(key)
            .map(|v| v.0.clone())
            .unwrap_or_default()
    }

    fn put(&mut self, key: &str, value: Vec<u8>) {
        self.last_cas += 1;
        self.values.insert(key.to_string(), (value, self.last_cas));
    }

    fn index(&self, area: &Area) -> index::Index {
        index::Index::decode(&self.get(&area.index_key())).expect("a readable index")
    }

    fn lease(&self, area: &Area) -> index::Lease {
        index::Lease::decode(&self.get(&area.lease_key()))
    }

    /// The bodies of the pushes parked now, oldest first.
    fn parked(&self, area: &Area) -> Vec<String> {
        let index = self.index(area);
        (index.head..index.tail)
            .filter_map(|seq| {
                let slot = record::Slot::decode(&self.get(&area.slot_key(seq, index.ring)));
                slot.holds(seq).map(|p| text(&p.body))
            })
            .collect()
    }
}

impl SharedData for Store {
    fn read(&mut self, key: &str) -> Option<Vec<u8>> {
        Some(self.get(key))
    }

    fn update(
        &mut self,
        key: &str,
        attempts: usize,
        change: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> Option<bool> {
        if self.refused.contains(key) {
            return None;
        }
        for _ in 0..attempts {
            let (value, cas) = self.values.get(key).cloned().unwrap_or_default();
            let Some(new) = change(&value) else {
                return Some(false);
            };
            if let Some(other) = self.interlopers.get_mut(key).and_then(VecDeque::pop_front) {
                // The other worker's own writes meet no interloper: they are its.
                let rest = self.interlopers.remove(key);
                other(self);
                if let Some(rest) = rest {
                    self.interlopers.insert(key.to_string(), rest);
                }
            }
            if self.values.get(key).map_or(0, |v| v.1) != cas {
                continue;
            }
            self.put(key, new);
            self.writes.push(key.to_string());
            return Some(true);
        }
        None
    }
}

fn limits(max_messages: u32, max_bytes: u64, max_seconds: u64) -> Limits {
    Limits {
        max_messages,
        max_bytes,
        max_seconds,
    }
}

fn area() -> Area {
    Area::new(ACCOUNT, limits(10, 1 << 20, 600))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Push `n` as it went upstream: the gate's headers, some the redelivery leaves out.
fn parcel(n: u32) -> Parcel {
    let h = |n: &str, v: &str| (n.as_bytes().to_vec(), v.as_bytes().to_vec());
    Parcel {
        cluster: "backend".into(),
        authority: "app.example".into(),
        path: format!("/wechat?signature=s&timestamp=1&nonce={n}&openid=o_1"),
        headers: vec![
            h(":path", "/elsewhere"),
            h("content-type", "text/xml"),
            h("content-length", "999"),
            h("x-wechat-gate-verified", "1"),
            h("X-WeChat-Gate-OpenID", "o_1"),
            h("x-envoy-attempt-count", "2"),
            h("x_wechat_gate_redelivered", "7"),
        ],
        body: body(n).into_bytes(),
    }
}

fn body(n: u32) -> String {
    format!("<xml><MsgId>{n}</MsgId></xml>")
}

/// Parks push `n` at `now`, which must succeed.
fn park(area: &Area, n: u32, now: u64, store: &mut Store) {
    let step = area.park(parcel(n), now, store);
    assert_eq!(
        step.outcome,
        Outcome::Parked,
        "push {n}: {:?}",
        step.effects
    );
}

/// Hands `r` the answer to the try it has out.
fn reply(
    r: &mut Redeliverer,
    area: &Area,
    answer: Answer,
    now: u64,
    jitter: u32,
    store: &mut Store,
) -> Vec<Effect> {
    let id = r.waiting_for().expect("a try is out");
    r.on_answer(area, id, answer, now, jitter, store)
}

/// `r` ticks at `now` and answers 2xx to each call it makes at once; the bodies
/// it delivered, in order.
fn drain(area: &Area, r: &mut Redeliverer, now: u64, store: &mut Store) -> Vec<String> {
    let mut delivered = Vec::new();
    let mut effects = r.on_tick(area, now, store);
    while let Some(call) = calls(&effects).pop() {
        delivered.push(text(&call.body));
        effects = reply(r, area, Answer::Status(200), now, 500, store);
    }
    delivered
}

fn calls(effects: &[Effect]) -> Vec<&Call> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Dispatch(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// The one call among `effects`: its body and its try's mark.
fn the_call(effects: &[Effect]) -> (String, String) {
    let calls = calls(effects);
    assert_eq!(calls.len(), 1, "{effects:?}");
    (text(&calls[0].body), header(calls[0], REDELIVERED_HEADER))
}

fn header(call: &Call, name: &str) -> String {
    let values: Vec<&str> = call
        .headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(values.len(), 1, "{name}: {:?}", call.headers);
    values[0].to_string()
}

fn counted(effects: &[Effect], counter: Counter) -> usize {
    effects
        .iter()
        .filter(|e| **e == Effect::Count(counter))
        .count()
}

fn notes(effects: &[Effect]) -> Vec<&Note> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Note(n) => Some(n),
            _ => None,
        })
        .collect()
}

/// The last `parked_now` the effects set.
fn gauge(effects: &[Effect]) -> Option<u64> {
    effects.iter().rev().find_map(|e| match e {
        Effect::Set(Gauge::ParkedNow, n) => Some(*n),
        _ => None,
    })
}
