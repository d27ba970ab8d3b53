//! The one fake [`Proxy`] the exchange is tested against: the unit tests
//! (exchange/tests.rs) and the fuzz target (`fuzz/fuzz_targets/exchange.rs`). It
//! answers what its fields say and records what the exchange asked; the retry and
//! replay tables are the real ones ([`crate::tables`]) on one in-memory shard each.
//! Built for the crate's own tests and with the `testing` feature, never for the
//! filter.

use crate::config::Config;
use crate::exchange::Proxy;
use crate::park::{Area, Parcel, ParkStep, SharedData};
use crate::request::Sources;
use crate::tables::{self, Entry, Lookup, Seen, Table};
use std::collections::HashMap;
use std::rc::Rc;

/// The proxy as a test sets it up.
pub struct FakeProxy {
    /// `source.address`.
    pub source: Option<Vec<u8>>,
    pub sources: Rc<Sources>,
    /// What [`Proxy::newer_sources`] finds.
    pub newer: Option<Rc<Sources>>,
    /// The whole request body; the exchange is handed as much as it asks for.
    pub request_body: Vec<u8>,
    pub trailers: Vec<Vec<u8>>,
    /// The response's `:status`.
    pub status: Option<u32>,
    /// `response.code_details`.
    pub details: Option<Vec<u8>>,
    /// The whole response body.
    pub response_body: Vec<u8>,
    pub random: Option<[u8; 16]>,
    /// [`Proxy::reached_upstream`].
    pub reached: bool,
    /// Each table's one shard.
    pub tables: HashMap<Table, Vec<u8>>,
    /// What the exchange asked, in order (the hostcalls a test may count).
    pub asked: Vec<&'static str>,
    /// `xds.cluster_name`.
    pub cluster: Option<Vec<u8>>,
    /// The configuration's parking area, in [`FakeProxy::shared`].
    pub area: Area,
    /// The proxy's shared data as parking leaves it (no other worker writes).
    pub shared: HashMap<String, Vec<u8>>,
    /// What the exchange handed to be parked, in order.
    pub parcels: Vec<Parcel>,
    /// Unix milliseconds, parking's clock.
    pub now_ms: u64,
}

impl FakeProxy {
    /// A request from 127.0.0.2 (port 4000), `config`'s static allowlist loaded, a
    /// backend that answers `200` (`via_upstream`), randomness to seal with, and
    /// every forwarded request reaching the backend.
    pub fn new(config: &Config) -> FakeProxy {
        FakeProxy {
            source: Some(b"127.0.0.2:4000".to_vec()),
            sources: Rc::new(Sources::fixed(config.source.allow.clone())),
            newer: None,
            request_body: Vec::new(),
            trailers: Vec::new(),
            status: Some(200),
            details: Some(b"via_upstream".to_vec()),
            response_body: Vec::new(),
            random: Some([7; 16]),
            reached: true,
            tables: HashMap::new(),
            asked: Vec::new(),
            cluster: Some(b"backend".to_vec()),
            area: Area::of(config),
            shared: HashMap::new(),
            parcels: Vec::new(),
            now_ms: 1_800_000_000_000,
        }
    }
}

impl Proxy for FakeProxy {
    fn source_address(&mut self) -> Option<Vec<u8>> {
        self.asked.push("source");
        self.source.clone()
    }
    fn sources(&mut self) -> Rc<Sources> {
        self.sources.clone()
    }
    fn newer_sources(&mut self) -> Option<Rc<Sources>> {
        self.asked.push("newer_sources");
        self.newer.clone()
    }
    fn request_trailer_names(&mut self) -> Vec<Vec<u8>> {
        self.trailers.clone()
    }
    /// The first `size` bytes; `None` (as from a host that cannot read it) when the
    /// body has fewer.
    fn request_body(&mut self, size: usize) -> Option<Vec<u8>> {
        self.asked.push("request_body");
        self.request_body.get(..size).map(<[u8]>::to_vec)
    }
    fn response_status(&mut self) -> Option<u32> {
        self.asked.push("status");
        self.status
    }
    /// The first `size` bytes, or all of it if it has fewer.
    fn response_body(&mut self, size: usize) -> Option<Vec<u8>> {
        Some(
            self.response_body
                .get(..size)
                .unwrap_or(&self.response_body)
                .to_vec(),
        )
    }
    fn random16(&mut self) -> Option<[u8; 16]> {
        self.random
    }
    fn response_details(&mut self) -> Option<Vec<u8>> {
        self.asked.push("details");
        self.details.clone()
    }
    fn reached_upstream(&mut self) -> bool {
        self.reached
    }
    fn record(&mut self, table: Table, entry: Entry, now: u64) -> Seen {
        let shard = self.tables.entry(table).or_default();
        match tables::check_and_record(shard, entry, now, table.shape()) {
            Lookup::Duplicate => Seen::Duplicate,
            Lookup::TooOld => Seen::TooOld,
            Lookup::New { value, evicted } => {
                *shard = value;
                Seen::New { evicted }
            }
        }
    }
    fn forget(&mut self, table: Table, identity: u64) {
        if let Some(shard) = self.tables.get_mut(&table) {
            if let Some(value) = tables::forget(shard, identity) {
                *shard = value;
            }
        }
    }
    fn route_cluster(&mut self) -> Option<Vec<u8>> {
        self.cluster.clone()
    }
    /// The real parking, on [`FakeProxy::shared`].
    fn park(&mut self, parcel: Parcel) -> ParkStep {
        self.asked.push("park");
        self.parcels.push(parcel.clone());
        let area = self.area.clone();
        area.park(parcel, self.now_ms, &mut Memory(&mut self.shared))
    }
}

/// Shared data in memory, for one worker.
struct Memory<'a>(&'a mut HashMap<String, Vec<u8>>);

impl SharedData for Memory<'_> {
    fn read(&mut self, key: &str) -> Option<Vec<u8>> {
        Some(self.0.get(key).cloned().unwrap_or_default())
    }
    fn update(
        &mut self,
        key: &str,
        _attempts: usize,
        change: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> Option<bool> {
        let now = self.0.get(key).cloned().unwrap_or_default();
        Some(match change(&now) {
            Some(value) => {
                self.0.insert(key.to_string(), value);
                true
            }
            None => false,
        })
    }
}
