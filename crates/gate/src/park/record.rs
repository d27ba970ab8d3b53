//! One parked push as it is kept in a slot of the parking area: what the backend
//! would have got (POST, path and query, headers, body), where it goes, and its
//! redelivery so far. Its encoding is compact and bounded, and so is what a slot may
//! hold otherwise: nothing, or the mark that a reserved slot was given up.

use super::wire::{Reader, Writer};

/// The header every redelivery carries, its value the try (1 for the first).
pub const REDELIVERED_HEADER: &str = "x-wechat-gate-redelivered";

/// Bounds of a record's head: the account is a configuration `name` (64), the
/// cluster and authority are names, the path is WeChat's path and query (a few
/// hundred bytes), the headers those a push comes with.
pub const MAX_ACCOUNT_BYTES: usize = 64;
pub const MAX_NAME_BYTES: usize = 256;
pub const MAX_PATH_BYTES: usize = 8192;
pub const MAX_HEADERS: usize = 64;
pub const MAX_HEADER_VALUE_BYTES: usize = 8192;
/// All of the head together (cluster, authority, path, headers).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The largest body a record may hold (the area's byte bound is never larger).
pub const MAX_BODY_BYTES: usize = 64 << 20;

const RECORD: [u8; 2] = *b"WP";
const GIVEN_UP: [u8; 2] = *b"WG";
/// The fixed part of a record: tag and version, seq, parked at, tries, next try,
/// the lengths of account, cluster, authority and path, the header count, the body's
/// length.
const FIXED_BYTES: usize = 3 + 8 + 8 + 4 + 8 + 4 * 2 + 1 + 4;

/// What the caller hands in to be parked: the push as the backend would have had it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parcel {
    /// The route's cluster (`xds.cluster_name`) and the request's `:authority`.
    pub cluster: String,
    pub authority: String,
    /// `:path` as it went upstream (query included; rewritten when decrypted).
    pub path: String,
    /// The request's headers as they went upstream, the gate's included: the
    /// pseudo-headers, framing and hop-by-hop headers are left out here (see
    /// [`is_kept`]).
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The body as it went upstream (the plaintext under `decrypt`).
    pub body: Vec<u8>,
}

/// Why a parcel cannot be parked at all, whatever room there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfit {
    /// Its head (path, headers, names) is over the bounds above.
    TooLarge,
    /// A header name or value is not text (a redelivery's headers must be).
    NotText,
    /// No cluster or authority to send it to, or a path that is not one.
    NoRoute,
}

/// A push in the parking area.
#[derive(Clone, PartialEq, Eq)]
pub struct ParkedPush {
    /// Its place in the area's order: the area's `tail` when it was parked.
    pub seq: u64,
    /// The account (configuration `name`) it was parked for.
    pub account: String,
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Unix milliseconds.
    pub parked_at_ms: u64,
    /// Redeliveries tried so far.
    pub tries: u32,
    /// Unix milliseconds: not tried again before.
    pub next_try_ms: u64,
}

impl std::fmt::Debug for ParkedPush {
    /// The push's place and schedule only: its body and headers (the sender's
    /// OpenID, the message) stay out of any log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParkedPush")
            .field("seq", &self.seq)
            .field("account", &self.account)
            .field("cluster", &self.cluster)
            .field("body_bytes", &self.body.len())
            .field("parked_at_ms", &self.parked_at_ms)
            .field("tries", &self.tries)
            .field("next_try_ms", &self.next_try_ms)
            .finish()
    }
}

/// Whether a header the push went upstream with is kept for its redelivery. Left
/// out: the pseudo-headers and `host` (the call sets its own), the framing
/// (`content-length`, `transfer-encoding`: Envoy frames the call's body), the
/// hop-by-hop headers, `x-envoy-*` (Envoy's own, set again for the call), and any
/// redelivery mark (the try's own is added).
pub fn is_kept(name: &[u8]) -> bool {
    const DROPPED: [&[u8]; 11] = [
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
        b"expect",
        b"http2-settings",
    ];
    // Compared as a CGI-style backend would read it: in any case, `_` for `-`.
    let read_as: Vec<u8> = name
        .iter()
        .map(|b| match b.to_ascii_lowercase() {
            b'_' => b'-',
            other => other,
        })
        .collect();
    let dropped = read_as.starts_with(b":")
        || read_as.starts_with(b"x-envoy-")
        || read_as == REDELIVERED_HEADER.as_bytes()
        || DROPPED.contains(&read_as.as_slice());
    !(name.is_empty() || dropped)
}

impl ParkedPush {
    /// The parcel as a record, first tried at `next_try_ms`; `Err` if it can never be
    /// parked.
    pub fn new(
        parcel: Parcel,
        seq: u64,
        account: &str,
        parked_at_ms: u64,
        next_try_ms: u64,
    ) -> Result<ParkedPush, Unfit> {
        let mut headers = Vec::new();
        for (name, value) in parcel.headers.into_iter().filter(|(n, _)| is_kept(n)) {
            match (String::from_utf8(name), String::from_utf8(value)) {
                (Ok(n), Ok(v)) => headers.push((n.to_ascii_lowercase(), v)),
                _ => return Err(Unfit::NotText),
            }
        }
        if parcel.cluster.is_empty() || parcel.authority.is_empty() || !parcel.path.starts_with('/')
        {
            return Err(Unfit::NoRoute);
        }
        let record = ParkedPush {
            seq,
            account: account.to_string(),
            cluster: parcel.cluster,
            authority: parcel.authority,
            path: parcel.path,
            headers,
            body: parcel.body,
            parked_at_ms,
            tries: 0,
            next_try_ms,
        };
        match record.within_bounds() {
            true => Ok(record),
            false => Err(Unfit::TooLarge),
        }
    }

    fn head_bytes(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum();
        self.cluster.len() + self.authority.len() + self.path.len() + headers
    }

    fn within_bounds(&self) -> bool {
        self.account.len() <= MAX_ACCOUNT_BYTES
            && self.cluster.len() <= MAX_NAME_BYTES
            && self.authority.len() <= MAX_NAME_BYTES
            && self.path.len() <= MAX_PATH_BYTES
            && self.headers.len() <= MAX_HEADERS
            && self
                .headers
                .iter()
                .all(|(n, v)| n.len() <= MAX_NAME_BYTES && v.len() <= MAX_HEADER_VALUE_BYTES)
            && self.head_bytes() <= MAX_HEAD_BYTES
            && self.body.len() <= MAX_BODY_BYTES
    }

    /// The length of [`ParkedPush::encode`]'s value: what the record costs the area's
    /// byte bound. Tries and times are fixed-width, so it never changes.
    pub fn encoded_len(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum();
        let len = FIXED_BYTES
            + self.account.len()
            + self.cluster.len()
            + self.authority.len()
            + self.path.len()
            + headers
            + self.body.len();
        u64::try_from(len).unwrap_or(u64::MAX)
    }

    /// The slot's value. Within bounds by construction ([`ParkedPush::new`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(RECORD, usize::try_from(self.encoded_len()).unwrap_or(0));
        w.u64(self.seq);
        w.u64(self.parked_at_ms);
        w.u32(self.tries);
        w.u64(self.next_try_ms);
        w.short(self.account.as_bytes());
        w.short(self.cluster.as_bytes());
        w.short(self.authority.as_bytes());
        w.short(self.path.as_bytes());
        w.u8(u8::try_from(self.headers.len()).unwrap_or(u8::MAX));
        for (name, value) in &self.headers {
            w.short(name.as_bytes());
            w.short(value.as_bytes());
        }
        w.long(&self.body);
        w.done()
    }

    fn decode(value: &[u8]) -> Option<ParkedPush> {
        let mut r = Reader::open(value, RECORD)?;
        let (seq, parked_at_ms, tries, next_try_ms) = (r.u64()?, r.u64()?, r.u32()?, r.u64()?);
        let account = r.text(MAX_ACCOUNT_BYTES)?;
        let cluster = r.text(MAX_NAME_BYTES)?;
        let authority = r.text(MAX_NAME_BYTES)?;
        let path = r.text(MAX_PATH_BYTES)?;
        let count = usize::from(r.u8()?);
        if count > MAX_HEADERS {
            return None;
        }
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            headers.push((r.text(MAX_NAME_BYTES)?, r.text(MAX_HEADER_VALUE_BYTES)?));
        }
        let body = r.long(MAX_BODY_BYTES)?.to_vec();
        r.end()?;
        let record = ParkedPush {
            seq,
            account,
            cluster,
            authority,
            path,
            headers,
            body,
            parked_at_ms,
            tries,
            next_try_ms,
        };
        record.within_bounds().then_some(record)
    }
}

/// What a slot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// Nothing: never written, or emptied once its push was delivered or dropped.
    Empty,
    Parked(ParkedPush),
    /// Reserved for `seq` but never written, and given up by the redeliverer: the
    /// parker that reserved it must not write it any more.
    GivenUp(u64),
    /// A value this layout cannot read.
    Unreadable,
}

impl Slot {
    pub fn decode(value: &[u8]) -> Slot {
        if value.is_empty() {
            return Slot::Empty;
        }
        if let Some(record) = ParkedPush::decode(value) {
            return Slot::Parked(record);
        }
        let given_up = Reader::open(value, GIVEN_UP).and_then(|mut r| {
            let seq = r.u64()?;
            r.end().map(|()| seq)
        });
        given_up.map_or(Slot::Unreadable, Slot::GivenUp)
    }

    pub fn given_up(seq: u64) -> Vec<u8> {
        let mut w = Writer::new(GIVEN_UP, 8);
        w.u64(seq);
        w.done()
    }

    /// The push parked under `seq`, if this slot holds it (a slot is reused every
    /// `ring` pushes: an older push's leftover is not it).
    pub fn holds(&self, seq: u64) -> Option<&ParkedPush> {
        match self {
            Slot::Parked(p) if p.seq == seq => Some(p),
            _ => None,
        }
    }
}
