//! The request's headers as the gate sent them upstream, kept while a push may yet be
//! parked: the host cannot be asked for them later (once a filter lets headers go on,
//! Envoy no longer hands them to it), so the exchange follows its own changes to the
//! map it was handed.

use super::Effect;
use crate::header_map::HeaderMap;

/// Header (name, value) pairs, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentHead {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl SentHead {
    pub fn of(headers: &HeaderMap) -> SentHead {
        SentHead {
            pairs: headers
                .pairs()
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect(),
        }
    }

    /// Applies the request-header changes among `effects`, in order.
    pub fn follow(&mut self, effects: &[Effect]) {
        for effect in effects {
            match effect {
                Effect::RemoveRequestHeader(name) => self.pairs.retain(|(n, _)| n != name),
                Effect::SetRequestHeader(name, value) => {
                    let name = name.as_bytes();
                    self.pairs.retain(|(n, _)| n != name);
                    self.pairs.push((name.to_vec(), value.as_bytes().to_vec()));
                }
                _ => {}
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    pub fn into_pairs(self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.pairs
    }
}
