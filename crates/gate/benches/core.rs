//! Micro-benchmarks of the pure core, natively (`make bench-micro`, also run by
//! `make bench`): what one request costs before Envoy and the Wasm VM are counted.
//! Measurement times are short so the whole `make bench` stays within its budget.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use gate::allowlist::CallbackAllowlist;
use gate::query::parse_query;
use gate::request::{decide, RequestHead, Sources};
use gate::safe_mode::cipher::{self, AesKey};
use gate::signature::{request_signature, signature_matches};
use wechat::wechat::signed_query;

const TOKEN: &str = "bench-token-0123456789";
const TIMESTAMP: &str = "1714036504";
const NONCE: &str = "1514711492";
const APPID: &str = "wx0123456789abcdef";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

fn signature(c: &mut Criterion) {
    let given = request_signature(TOKEN, TIMESTAMP, NONCE);
    c.bench_function("signature check", |b| {
        b.iter(|| {
            let expected =
                request_signature(black_box(TOKEN), black_box(TIMESTAMP), black_box(NONCE));
            signature_matches(&expected, black_box(&given))
        })
    });
}

fn query(c: &mut Criterion) {
    let q = signed_query(
        TOKEN,
        TIMESTAMP,
        NONCE,
        &[("openid", "o_bench_user_000000000001")],
    );
    c.bench_function("query parse", |b| {
        b.iter(|| parse_query(black_box(q.as_bytes())))
    });
}

/// `n` disjoint /28 blocks in 10.0.0.0/8, none adjacent (so merging keeps them apart),
/// like WeChat's callback list of single addresses and small blocks.
fn allowlist_of(n: usize) -> CallbackAllowlist {
    let entries: Vec<String> = (0..n)
        .map(|i| {
            let [a, b, c] = block_of(i);
            format!("10.{a}.{b}.{c}/28")
        })
        .collect();
    CallbackAllowlist::parse(entries.iter().map(String::as_str)).unwrap_or_default()
}

/// The second, third and fourth octets of block `i`: eight /28 blocks per /24, 16 apart.
fn block_of(i: usize) -> [u8; 3] {
    [
        (i / 2048) as u8,
        ((i / 8) % 256) as u8,
        ((i % 8) * 32) as u8,
    ]
}

fn allowlist(cr: &mut Criterion) {
    for n in [50usize, 10_000] {
        let list = allowlist_of(n);
        assert_eq!(list.entries(), n);
        let [a, b, c] = block_of(n / 2);
        let hit = IpAddr::V4(Ipv4Addr::new(10, a, b, c + 3));
        let miss = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
        assert!(list.contains(hit) && !list.contains(miss));
        cr.bench_function(&format!("allowlist lookup {n} entries (hit)"), |b| {
            b.iter(|| list.contains(black_box(hit)))
        });
        cr.bench_function(&format!("allowlist lookup {n} entries (miss)"), |b| {
            b.iter(|| list.contains(black_box(miss)))
        });
    }
}

fn verdict(c: &mut Criterion) {
    let config = gate::config::parse(
        format!(
            r#"{{"path": "/wechat", "token": "{TOKEN}", "source": {{"allow": ["127.0.0.1"]}}}}"#
        )
        .as_bytes(),
        &|_| None,
    )
    .unwrap_or_else(|e| panic!("bench config: {e}"));
    let sources = Sources::fixed(config.source.allow.clone());
    let path = format!(
        "/wechat?{}",
        signed_query(
            TOKEN,
            TIMESTAMP,
            NONCE,
            &[("openid", "o_bench_user_000000000001")]
        )
    );
    let now: i64 = TIMESTAMP.parse().unwrap_or_default();
    c.bench_function("verdict (verify::decide, verified POST)", |b| {
        b.iter(|| {
            decide(
                &RequestHead {
                    method: b"POST",
                    path: Some(black_box(path.as_bytes())),
                    source: Some(black_box(b"127.0.0.1:40000")),
                },
                &config,
                &sources,
                black_box(now),
            )
        })
    });
}

fn aes(c: &mut Criterion) {
    let key = AesKey::from_encoding_aes_key(AES_KEY).unwrap_or_else(|e| panic!("bench key: {e}"));
    let msg = vec![b'x'; 1024];
    let random16 = [7u8; 16];
    let encrypted = cipher::encrypt(&key, APPID, &msg, &random16);
    assert_eq!(
        cipher::decrypt(&key, APPID, &encrypted).as_deref(),
        Ok(&msg[..])
    );
    c.bench_function("AES decrypt 1 KiB", |b| {
        b.iter(|| cipher::decrypt(&key, APPID, black_box(&encrypted)))
    });
    c.bench_function("AES encrypt 1 KiB", |b| {
        b.iter(|| cipher::encrypt(&key, APPID, black_box(&msg), &random16))
    });
}

fn short() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1000))
        .sample_size(30)
}

criterion_group! {
    name = core;
    config = short();
    targets = signature, query, allowlist, verdict, aes
}
criterion_main!(core);
