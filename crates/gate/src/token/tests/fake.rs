//! A fake proxy for the machine: shared data with proxy-wasm-cpp-host's CAS rules, a
//! clock, and workers that carry out each [`Turn`] as the filter's executor does (every
//! question answered at once; a call's reply when the test gives it).

use crate::config::WechatApi;
use crate::token::state::RefreshState;
use crate::token::{
    Ask, Cas, Clock, Effect, Event, Note, Outgoing, Refresh, Shared, Slot, Written,
};
use serde_json::json;
use std::collections::HashMap;

pub(super) const SECRET: &str = "S3cretOfTheAccount";
pub(super) const TOKEN: &str = "ACCESS-TOKEN-1";
pub(super) const TOKEN_REPLY: &str = r#"{"access_token":"ACCESS-TOKEN-1","expires_in":7200}"#;
pub(super) const LIST_REPLY: &str = r#"{"ip_list":["1.2.3.4","10.0.0.0/24"]}"#;

/// A `wechat_api` with two upstreams (`wechat_api`, `wechat_api_dr`), timeout 1 s
/// (a lease of 6 × 2 × 1 + 5 = 17 s), and the keys of `extra` set.
pub(super) fn api(extra: serde_json::Value) -> WechatApi {
    let base = json!({
        "secret": SECRET,
        "timeout_ms": 1000,
        "upstreams": [
            {"cluster": "wechat_api", "authority": "api.weixin.qq.com"},
            {"cluster": "wechat_api_dr", "authority": "api2.weixin.qq.com"}
        ]
    });
    super::wechat_api("wx0123456789abcdef", base, extra)
}

/// The proxy: its shared data and clock.
#[derive(Default)]
pub(super) struct Proxy {
    values: HashMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
    pub now: i64,
    pub jitter: u32,
    /// Another worker writes each of the next this many state values just before
    /// this one does.
    pub others_write_first: u32,
    /// The host refuses the next this many calls.
    pub refuse_calls: u32,
    next_call_id: u32,
}

impl Proxy {
    pub fn at(now: i64) -> Proxy {
        Proxy {
            now,
            jitter: 500,
            ..Proxy::default()
        }
    }

    pub fn clock(&self) -> Clock {
        Clock {
            unix: self.now,
            jitter: self.jitter,
        }
    }

    pub fn get(&self, key: &str) -> Shared {
        match self.values.get(key) {
            Some((bytes, cas)) => Shared {
                bytes: Some(bytes.clone()),
                cas: Some(*cas),
            },
            None => Shared::default(),
        }
    }

    /// As proxy-wasm-cpp-host: a set on a missing key succeeds whatever the CAS; on
    /// an existing one only with its CAS (or none).
    pub fn set(&mut self, key: &str, value: Vec<u8>, cas: Cas) -> Written {
        let current = self.values.get(key).map(|(_, c)| *c);
        let matches = match (current, cas) {
            (None, _) | (_, Cas::Any) => true,
            (Some(_), Cas::Absent) => false,
            (Some(c), Cas::Is(wanted)) => c == wanted,
        };
        if !matches {
            return Written::CasMismatch;
        }
        self.last_cas += 1;
        self.values.insert(key.to_string(), (value, self.last_cas));
        Written::Done
    }

    /// The shared refresh state.
    pub fn state(&self, refresh: &Refresh) -> RefreshState {
        let bytes = self.get(refresh.key(Slot::State)).bytes.unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or_default()
    }

    /// Another worker's write of the state (the same value, a new CAS).
    fn rewrite(&mut self, key: &str) {
        let value = self.values.get(key).map(|(v, _)| v.clone());
        self.set(key, value.unwrap_or_default(), Cas::Any);
    }
}

/// One worker's machine and what it was asked.
pub(super) struct Worker {
    pub refresh: Refresh,
    /// Every call dispatched, with its id.
    pub calls: Vec<(u32, Outgoing)>,
    /// The call whose reply has not come yet.
    pub in_flight: Option<u32>,
    /// Every effect, in order.
    pub effects: Vec<Effect>,
    /// Every question asked.
    pub asked: Vec<Ask>,
}

impl Worker {
    pub fn new(api: WechatApi) -> Worker {
        Worker {
            refresh: Refresh::new(api),
            calls: Vec::new(),
            in_flight: None,
            effects: Vec::new(),
            asked: Vec::new(),
        }
    }

    pub fn tick(&mut self, proxy: &mut Proxy) -> Vec<Effect> {
        self.feed(proxy, Event::Tick(proxy.clock()))
    }

    /// The reply to the call in flight.
    pub fn reply(&mut self, proxy: &mut Proxy, status: Option<u32>, body: &str) -> Vec<Effect> {
        let call_id = self.in_flight.take().expect("a call in flight");
        let answered = Event::Answered {
            call_id,
            body_size: body.len(),
            clock: proxy.clock(),
        };
        let turn = self.refresh.on(answered);
        assert!(turn.effects.is_empty());
        match turn.ask {
            Some(Ask::ReadReply { body_bytes }) => {
                let body = body_bytes.map_or(Vec::new(), |n| body.as_bytes()[..n].to_vec());
                self.feed(proxy, Event::Reply { status, body })
            }
            other => panic!("the reply was not read: {other:?}"),
        }
    }

    /// A 200 with `body` to the call in flight.
    pub fn ok(&mut self, proxy: &mut Proxy, body: &str) -> Vec<Effect> {
        self.reply(proxy, Some(200), body)
    }

    /// Hands the machine `event` and carries out each turn, as the filter does.
    pub fn feed(&mut self, proxy: &mut Proxy, event: Event) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut next = Some(event);
        let mut questions = 0;
        while let Some(event) = next.take() {
            let turn = self.refresh.on(event);
            effects.extend(turn.effects);
            let Some(ask) = turn.ask else { break };
            questions += 1;
            assert!(questions < 100, "the machine keeps asking");
            self.asked.push(ask.clone());
            next = self.answer(proxy, ask);
        }
        self.effects.extend(effects.clone());
        effects
    }

    fn answer(&mut self, proxy: &mut Proxy, ask: Ask) -> Option<Event> {
        Some(match ask {
            Ask::Read(slot) => Event::Read {
                slot,
                value: Some(proxy.get(self.refresh.key(slot))),
            },
            Ask::Write { slot, value, cas } => {
                let key = self.refresh.key(slot).to_string();
                if slot == Slot::State && proxy.others_write_first > 0 {
                    proxy.others_write_first -= 1;
                    proxy.rewrite(&key);
                }
                Event::Written {
                    slot,
                    outcome: proxy.set(&key, value, cas),
                }
            }
            Ask::Dispatch(call) => {
                if proxy.refuse_calls > 0 {
                    proxy.refuse_calls -= 1;
                    return Some(Event::Dispatched(Err("BadArgument".into())));
                }
                proxy.next_call_id += 1;
                let id = proxy.next_call_id;
                assert_eq!(self.in_flight, None, "two calls in flight");
                self.in_flight = Some(id);
                self.calls.push((id, call));
                Event::Dispatched(Ok(id))
            }
            Ask::ReadReply { .. } => panic!("a reply read with no reply announced"),
        })
    }

    /// The path of the call in flight (or the last one).
    pub fn last_path(&self) -> String {
        let (_, call) = self.calls.last().expect("a call");
        call.header(":path").expect(":path").to_string()
    }

    pub fn last_cluster(&self) -> &str {
        &self.calls.last().expect("a call").1.cluster
    }

    /// The calls whose path starts with `prefix`.
    pub fn count_calls(&self, prefix: &str) -> usize {
        self.calls
            .iter()
            .filter(|(_, c)| c.header(":path").is_some_and(|p| p.starts_with(prefix)))
            .count()
    }

    pub fn notes(&self) -> Vec<&Note> {
        notes(&self.effects)
    }
}

/// The notes among `effects`.
pub(super) fn notes(effects: &[Effect]) -> Vec<&Note> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Note(n) => Some(n),
            _ => None,
        })
        .collect()
}

/// Whether `effects` installs a list.
pub(super) fn installs(effects: &[Effect]) -> bool {
    effects.iter().any(|e| matches!(e, Effect::Install(_)))
}

pub(super) const T0: i64 = 1_800_000_000;
/// The lease of [`api`]'s settings: 6 calls × 2 upstreams × 1 s + 5 s.
pub(super) const LEASE: i64 = 17;

/// WeChat's error reply with `code`.
pub(super) fn errcode_reply(code: i64) -> String {
    format!(r#"{{"errcode":{code},"errmsg":"errmsg of {code}"}}"#)
}

/// A worker that has fetched its first list at `proxy.now`.
pub(super) fn fetched(proxy: &mut Proxy) -> Worker {
    let mut w = Worker::new(api(json!({})));
    w.tick(proxy);
    w.ok(proxy, TOKEN_REPLY);
    assert!(installs(&w.ok(proxy, LIST_REPLY)));
    w
}

/// Answers every call of the fetch in flight with a transport failure.
pub(super) fn fail_fetch(w: &mut Worker, proxy: &mut Proxy) -> Vec<Effect> {
    let mut effects = Vec::new();
    while w.in_flight.is_some() {
        effects.extend(w.reply(proxy, None, ""));
    }
    effects
}

/// Ticks once a second until a fetch starts; how many seconds that took.
pub(super) fn seconds_to_next_fetch(w: &mut Worker, proxy: &mut Proxy) -> i64 {
    let from = proxy.now;
    while w.in_flight.is_none() {
        proxy.now += 1;
        assert!(proxy.now - from < 100_000, "no fetch");
        w.tick(proxy);
    }
    proxy.now - from
}
