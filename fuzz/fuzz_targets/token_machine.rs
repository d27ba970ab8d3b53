//! The token machine (`token::Refresh`) on two workers sharing one fake proxy, fed any
//! order of ticks (any clock), replies (any status and body, WeChat's or not), refused
//! calls, refused reads and other workers' writes. Nothing panics; every event ends in
//! a bounded number of questions; every state written reads back; no note, and no
//! call as `Debug` shows it, holds the AppSecret or the access token.
#![no_main]

use arbitrary::Arbitrary;
use gate::token::state::RefreshState;
use gate::token::{Ask, Cas, Clock, Effect, Event, Refresh, Shared, Slot, Written};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

const SECRET: &str = "FuzzS3cretOfTheAccount";
const TOKEN: &str = "FUZZ-ACCESS-TOKEN";

#[derive(Arbitrary, Debug)]
enum Op {
    Tick {
        worker: bool,
        seconds: u16,
        nanos: u32,
    },
    Reply {
        worker: bool,
        status: Status,
        body: Body,
    },
    /// The host refuses the next question of that kind.
    RefuseRead,
    RefuseWrite,
    RefuseCall,
    /// Another worker writes the state (its CAS changes).
    OtherWrite,
    Started {
        worker: bool,
    },
}

#[derive(Arbitrary, Debug)]
enum Status {
    Ok,
    /// Any other, or none (a reset, a timeout).
    Other(Option<u16>),
}

#[derive(Arbitrary, Debug)]
enum Body {
    Token { expires_in: u32 },
    List { broad: bool },
    Errcode(i16),
    Raw(Vec<u8>),
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Token { expires_in } => {
                format!(r#"{{"access_token":"{TOKEN}","expires_in":{expires_in}}}"#).into_bytes()
            }
            Body::List { broad: true } => br#"{"ip_list":["1.2.3.4","0.0.0.0/0"]}"#.to_vec(),
            Body::List { broad: false } => br#"{"ip_list":["1.2.3.4","10.0.0.0/24"]}"#.to_vec(),
            Body::Errcode(code) => format!(r#"{{"errcode":{code},"errmsg":"m"}}"#).into_bytes(),
            // A reply may be echoed in a note (WeChat's errmsg, skipped entries): one
            // holding the secret or the token would prove nothing.
            Body::Raw(bytes) if holds(bytes, SECRET) || holds(bytes, TOKEN) => Vec::new(),
            Body::Raw(bytes) => bytes.clone(),
        }
    }
}

fn holds(bytes: &[u8], text: &str) -> bool {
    bytes.windows(text.len()).any(|w| w == text.as_bytes())
}

#[derive(Default)]
struct Proxy {
    values: HashMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
    refuse_read: bool,
    refuse_write: bool,
    refuse_call: bool,
    next_call: u32,
}

struct Worker {
    refresh: Refresh,
    in_flight: Option<u32>,
}

fn api() -> gate::config::WechatApi {
    let json = serde_json::json!({"path": "/w", "appid": "wx0123456789abcdef", "token": "t",
        "source": {"wechat_api": {"secret": SECRET, "timeout_ms": 1000, "upstreams": [
            {"cluster": "a", "authority": "a"}, {"cluster": "b", "authority": "b"}]}}});
    gate::config::parse(json.to_string().as_bytes(), &|_| None)
        .expect("config")
        .source
        .wechat_api
        .expect("wechat_api")
}

/// Feeds `event` and answers every question, as the filter's executor does.
fn feed(proxy: &mut Proxy, w: &mut Worker, event: Event) {
    let mut next = Some(event);
    let mut questions = 0;
    while let Some(event) = next.take() {
        let turn = w.refresh.on(event);
        for effect in &turn.effects {
            if let Effect::Note(note) = effect {
                let line = note.to_string();
                assert!(!line.contains(SECRET) && !line.contains(TOKEN), "{line}");
            }
        }
        let Some(ask) = turn.ask else { break };
        questions += 1;
        assert!(questions < 64, "the machine keeps asking");
        next = Some(answer(proxy, w, ask));
    }
}

fn answer(proxy: &mut Proxy, w: &mut Worker, ask: Ask) -> Event {
    match ask {
        Ask::Read(slot) => {
            let value = if std::mem::take(&mut proxy.refuse_read) {
                None
            } else {
                Some(match proxy.values.get(w.refresh.key(slot)) {
                    Some((bytes, cas)) => Shared {
                        bytes: Some(bytes.clone()),
                        cas: Some(*cas),
                    },
                    None => Shared::default(),
                })
            };
            Event::Read { slot, value }
        }
        Ask::Write { slot, value, cas } => {
            if slot == Slot::State {
                serde_json::from_slice::<RefreshState>(&value).expect("a state written reads");
            }
            let key = w.refresh.key(slot).to_string();
            let current = proxy.values.get(&key).map(|(_, c)| *c);
            let outcome = if std::mem::take(&mut proxy.refuse_write) {
                Written::Failed
            } else if match (current, cas) {
                (None, _) | (_, Cas::Any) => true,
                (Some(_), Cas::Absent) => false,
                (Some(c), Cas::Is(wanted)) => c == wanted,
            } {
                proxy.last_cas += 1;
                proxy.values.insert(key, (value, proxy.last_cas));
                Written::Done
            } else {
                Written::CasMismatch
            };
            Event::Written { slot, outcome }
        }
        Ask::Dispatch(call) => {
            let shown = format!("{call:?}");
            assert!(!shown.contains(SECRET) && !shown.contains(TOKEN), "{shown}");
            if std::mem::take(&mut proxy.refuse_call) {
                return Event::Dispatched(Err("BadArgument".into()));
            }
            proxy.next_call += 1;
            w.in_flight = Some(proxy.next_call);
            Event::Dispatched(Ok(proxy.next_call))
        }
        Ask::ReadReply { .. } => panic!("a reply read with no reply announced"),
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut proxy = Proxy::default();
    let mut workers = [false, true].map(|_| Worker {
        refresh: Refresh::new(api()),
        in_flight: None,
    });
    let mut now = 1_800_000_000u64;
    for op in ops.into_iter().take(200) {
        match op {
            Op::Tick {
                worker,
                seconds,
                nanos,
            } => {
                now += u64::from(seconds);
                let clock = Clock::at(std::time::Duration::new(now, nanos));
                feed(
                    &mut proxy,
                    &mut workers[usize::from(worker)],
                    Event::Tick(clock),
                );
            }
            Op::Reply {
                worker,
                status,
                body,
            } => {
                let w = &mut workers[usize::from(worker)];
                let Some(call_id) = w.in_flight.take() else {
                    continue;
                };
                let body = body.bytes();
                let clock = Clock::at(std::time::Duration::from_secs(now));
                let turn = w.refresh.on(Event::Answered {
                    call_id,
                    body_size: body.len(),
                    clock,
                });
                let Some(Ask::ReadReply { body_bytes }) = turn.ask else {
                    continue;
                };
                let body = body_bytes.map_or(Vec::new(), |n| body[..n.min(body.len())].to_vec());
                let status = match status {
                    Status::Ok => Some(200),
                    Status::Other(status) => status.map(u32::from),
                };
                let reply = Event::Reply { status, body };
                feed(&mut proxy, w, reply);
            }
            Op::RefuseRead => proxy.refuse_read = true,
            Op::RefuseWrite => proxy.refuse_write = true,
            Op::RefuseCall => proxy.refuse_call = true,
            Op::OtherWrite => {
                if let Some((_, cas)) = proxy.values.values_mut().next() {
                    proxy.last_cas += 1;
                    *cas = proxy.last_cas;
                }
            }
            Op::Started { worker } => feed(
                &mut proxy,
                &mut workers[usize::from(worker)],
                Event::Started,
            ),
        }
    }
});
