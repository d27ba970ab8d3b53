//! The request's headers as the gate sent them upstream, kept while a push may yet be
//! parked: the host cannot be asked for them later (once a filter lets headers go on,
//! Envoy no longer hands them to it), so the exchange keeps the map it was handed and
//! the changes it made to it. Kept cheaply (the map's one buffer, the few changes the
//! gate makes), since every push keeps one until its response; the headers as sent
//! are worked out only for a push that is parked.

use super::Effect;
use crate::header_map::HeaderMap;

#[derive(Clone)]
pub struct SentHead {
    /// The headers as the request came.
    came: HeaderMap,
    /// The gate's changes, in order: a header set (`Some`) or removed (`None`).
    changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Default for SentHead {
    fn default() -> Self {
        SentHead {
            came: HeaderMap::from_pairs(&[]),
            changes: Vec::new(),
        }
    }
}

impl SentHead {
    pub fn of(headers: &HeaderMap) -> SentHead {
        SentHead {
            came: headers.clone(),
            changes: Vec::new(),
        }
    }

    /// Notes the request-header changes among `effects`, in order.
    pub fn follow(&mut self, effects: &[Effect]) {
        for effect in effects {
            match effect {
                Effect::RemoveRequestHeader(name) => self.changes.push((name.clone(), None)),
                Effect::SetRequestHeader(name, value) => self
                    .changes
                    .push((name.as_bytes().to_vec(), Some(value.as_bytes().to_vec()))),
                _ => {}
            }
        }
    }

    /// The value of `name` as sent.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        match self
            .changes
            .iter()
            .rev()
            .find(|(n, _)| n == name.as_bytes())
        {
            Some((_, value)) => value.as_deref(),
            None => self.came.get(name),
        }
    }

    /// Every header as sent: those that came, changed as the gate changed them.
    pub fn into_pairs(self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = self
            .came
            .pairs()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        for (name, value) in self.changes {
            pairs.retain(|(n, _)| *n != name);
            if let Some(value) = value {
                pairs.push((name, value));
            }
        }
        pairs
    }
}
