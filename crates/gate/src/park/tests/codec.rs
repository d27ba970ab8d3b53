//! What is parked, and its bytes: kept whole, bounded, and read back from any
//! damaged value without a panic.

use super::*;
use index::{Index, Lease, Leaving};
use record::{is_kept, Slot, MAX_HEADERS, MAX_PATH_BYTES};

fn record(n: u32) -> ParkedPush {
    let mut p = ParkedPush::new(parcel(n), 42, ACCOUNT, T0, T0 + 1_000).expect("parkable");
    p.tries = 3;
    p
}

fn index() -> Index {
    let (index, _) = Index::default()
        .reserve(500, &limits(10, 1 << 20, 600))
        .expect("room");
    index
}

fn lease() -> Lease {
    Lease {
        holder: 7,
        until_ms: T0,
        not_before_ms: T0 + 5,
    }
}

/// A small deterministic generator (xorshift64*), so a failure repeats.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn value(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn a_record_keeps_what_the_backend_would_have_got_and_reads_back_whole() {
    let p = record(1);
    assert_eq!(p.path, "/wechat?signature=s&timestamp=1&nonce=1&openid=o_1");
    assert_eq!(
        p.headers,
        [
            ("content-type".to_string(), "text/xml".to_string()),
            ("x-wechat-gate-verified".to_string(), "1".to_string()),
            ("x-wechat-gate-openid".to_string(), "o_1".to_string()),
        ],
        "the gate's headers kept, framing, pseudo, Envoy's and old marks left out"
    );
    assert_eq!(
        (p.account.as_str(), p.cluster.as_str()),
        (ACCOUNT, "backend")
    );
    let value = p.encode();
    assert_eq!(value.len() as u64, p.encoded_len());
    assert_eq!(Slot::decode(&value), Slot::Parked(p.clone()));
    let tried = ParkedPush {
        tries: u32::MAX,
        next_try_ms: u64::MAX,
        ..p.clone()
    };
    assert_eq!(
        tried.encoded_len(),
        p.encoded_len(),
        "a try never changes its size"
    );
    assert_eq!(Slot::decode(&Slot::given_up(9)), Slot::GivenUp(9));
    assert_eq!(Slot::decode(b""), Slot::Empty);
}

#[test]
fn only_headers_a_redelivery_may_carry_are_kept() {
    for name in [
        "content-type",
        "user-agent",
        "x-wechat-gate-verified",
        "x-forwarded-for",
    ] {
        assert!(is_kept(name.as_bytes()), "{name}");
    }
    for name in [
        ":authority",
        "host",
        "Content-Length",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
        "x-envoy-expected-rq-timeout-ms",
        "X_Envoy_Internal",
        "x-wechat-gate-redelivered",
        "X_WECHAT_GATE_REDELIVERED",
        "",
    ] {
        assert!(!is_kept(name.as_bytes()), "{name}");
    }
}

#[test]
fn a_parcel_that_can_never_be_redelivered_is_unfit() {
    let unfit = |change: &dyn Fn(&mut Parcel)| {
        let mut p = parcel(1);
        change(&mut p);
        ParkedPush::new(p, 0, ACCOUNT, T0, T0).map(|_| ())
    };
    assert_eq!(unfit(&|_| {}), Ok(()));
    assert_eq!(
        unfit(&|p| p.headers.push((b"x-a".to_vec(), vec![0xff]))),
        Err(Unfit::NotText)
    );
    assert_eq!(unfit(&|p| p.cluster.clear()), Err(Unfit::NoRoute));
    assert_eq!(unfit(&|p| p.authority.clear()), Err(Unfit::NoRoute));
    assert_eq!(unfit(&|p| p.path = "wechat".into()), Err(Unfit::NoRoute));
    assert_eq!(
        unfit(&|p| p.path = format!("/{}", "a".repeat(MAX_PATH_BYTES))),
        Err(Unfit::TooLarge)
    );
    assert_eq!(
        unfit(&|p| p.headers = (0..=MAX_HEADERS)
            .map(|i| (format!("x-{i}").into_bytes(), b"v".to_vec()))
            .collect()),
        Err(Unfit::TooLarge)
    );
    assert_eq!(
        unfit(&|p| p.headers = (0..MAX_HEADERS)
            .map(|i| (format!("x-{i}").into_bytes(), vec![b'v'; 300]))
            .collect()),
        Err(Unfit::TooLarge),
        "the head as a whole is bounded too"
    );
}

#[test]
fn every_truncation_reads_as_not_that_value_and_never_panics() {
    let record = record(1).encode();
    for cut in 0..record.len() {
        let read = Slot::decode(&record[..cut]);
        let expected = if cut == 0 {
            Slot::Empty
        } else {
            Slot::Unreadable
        };
        assert_eq!(read, expected, "record cut at {cut}");
    }
    let given_up = Slot::given_up(3);
    for cut in 1..given_up.len() {
        assert_eq!(
            Slot::decode(&given_up[..cut]),
            Slot::Unreadable,
            "cut at {cut}"
        );
    }
    let index = index().encode();
    for cut in 1..index.len() {
        assert_eq!(Index::decode(&index[..cut]), None, "index cut at {cut}");
    }
    let lease = lease().encode();
    for cut in 0..lease.len() {
        assert_eq!(
            Lease::decode(&lease[..cut]),
            Lease::default(),
            "lease cut at {cut}"
        );
    }
}

#[test]
fn garbage_never_panics_and_whatever_reads_is_written_back_the_same() {
    let mut gen = Bytes(0x9e37_79b9_7f4a_7c15);
    let valid = [
        record(1).encode(),
        index().encode(),
        lease().encode(),
        Slot::given_up(1),
    ];
    let mut values: Vec<Vec<u8>> = (0..20_000)
        .map(|i| {
            let len = (gen.next() % 160) as usize;
            let mut v = gen.value(len);
            // Half of them start like a real value, so the reader goes past the tag.
            if i % 2 == 0 && v.len() >= 3 {
                v[..3].copy_from_slice(&valid[i % valid.len()][..3]);
            }
            v
        })
        .collect();
    // Every byte of every real value changed, one at a time.
    for v in &valid {
        for at in 0..v.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = v.clone();
                bad[at] ^= flip;
                values.push(bad);
            }
        }
    }
    for v in &values {
        if let Slot::Parked(p) = Slot::decode(v) {
            assert_eq!(
                &p.encode(),
                v,
                "a record reads back only from its own bytes"
            );
        }
        if let Some(i) = Index::decode(v).filter(|_| !v.is_empty()) {
            assert_eq!(&i.encode(), v);
            assert!(i.head <= i.tail && i.count() <= u64::from(i.ring));
        }
        let _ = Lease::decode(v);
    }
}

#[test]
fn a_length_beyond_the_value_or_the_bounds_is_refused_without_allocating_it() {
    let mut value = record(1).encode();
    // The body's length is the last field's prefix: claim 4 GiB.
    let body_at = value.len() - record(1).body.len() - 4;
    value[body_at..body_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(Slot::decode(&value), Slot::Unreadable);
}

#[test]
fn an_index_that_does_not_add_up_is_unreadable() {
    let good = index();
    assert_eq!(Index::decode(&good.encode()), Some(good));
    let backwards = Index {
        head: good.tail + 1,
        ..good
    };
    assert_eq!(Index::decode(&backwards.encode()), None);
    let over_ring = Index {
        tail: good.head + u64::from(good.ring) + 1,
        ..good
    };
    assert_eq!(Index::decode(&over_ring.encode()), None);
}

#[test]
fn an_index_takes_a_push_only_once_and_only_from_the_head() {
    let l = limits(10, 1 << 20, 600);
    let (i, first) = Index::default().reserve(100, &l).expect("room");
    let (i, second) = i.reserve(50, &l).expect("room");
    assert_eq!((first, second, i.count(), i.bytes), (0, 1, 2, 150));
    assert_eq!(
        i.drop_head(1, 50, Leaving::Delivered),
        None,
        "not the oldest"
    );
    let (i, _) = i.drop_head(0, 100, Leaving::Delivered).expect("the oldest");
    assert_eq!((i.head, i.bytes), (1, 50));
    assert_eq!(
        i.drop_head(0, 100, Leaving::Delivered),
        None,
        "gone already"
    );
    let (i, _) = i.drop_head(1, 50, Leaving::Delivered).expect("the oldest");
    assert_eq!((i.count(), i.bytes), (0, 0));
    assert_eq!(i.drop_head(2, 1, Leaving::Delivered), None, "empty");
}

#[test]
fn debug_output_never_shows_a_pushs_body_headers_or_path() {
    let mut p = parcel(1);
    p.body = b"<xml>SECRET-BODY</xml>".to_vec();
    p.path = "/wechat?openid=SECRET-OPENID".into();
    p.headers
        .push((b"x-wechat-gate-openid".to_vec(), b"SECRET-OPENID".to_vec()));
    let record = ParkedPush::new(p, 0, ACCOUNT, T0, T0).expect("parkable");
    let lines = [
        format!("{record:?}"),
        format!("{:?}", redeliver_call(record)),
    ];
    for line in lines {
        assert!(!line.contains("SECRET"), "{line}");
    }
}

/// The call a push's first try makes, through the machine.
fn redeliver_call(record: ParkedPush) -> Call {
    let area = area();
    let mut store = Store::default();
    let parcel = Parcel {
        cluster: record.cluster,
        authority: record.authority,
        path: record.path,
        headers: record
            .headers
            .into_iter()
            .map(|(n, v)| (n.into_bytes(), v.into_bytes()))
            .collect(),
        body: record.body,
    };
    assert_eq!(area.park(parcel, T0, &mut store).outcome, Outcome::Parked);
    let effects = Redeliverer::new(1).on_tick(&area, T0 + 1_000, &mut store);
    calls(&effects).pop().expect("a call").clone()
}
