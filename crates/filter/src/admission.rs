//! The sources a worker admits ([`Sources`]: the static allowlist ∪ the live
//! callback IP list), shared by the root context (which installs each new list) and
//! its HTTP contexts (which read it per request).
//!
//! A worker's own copy of the live list arrives on its tick. Until then, the
//! exchange asks [`AdmissionCell::catch_up`] before refusing `503 unavailable`:
//! another worker may already have put the list in shared data.

use super::host::Host;
use super::live_list;
use gate::allowlist::CallbackAllowlist;
use gate::request::Sources;
use std::cell::RefCell;
use std::rc::Rc;

/// Where a worker still waiting for its first live list looks for it.
struct Pending {
    /// The shared-data key the fetching worker publishes the list under.
    list_key: String,
    static_allow: CallbackAllowlist,
}

pub struct AdmissionCell {
    current: RefCell<Rc<Sources>>,
    pending: RefCell<Option<Pending>>,
}

impl AdmissionCell {
    /// Only the static entries, ready at once (no live list configured).
    pub fn fixed(allow: CallbackAllowlist) -> AdmissionCell {
        AdmissionCell {
            current: RefCell::new(Rc::new(Sources::fixed(allow))),
            pending: RefCell::new(None),
        }
    }

    /// The static entries until the live list published under `list_key` loads.
    pub fn awaiting_live_list(static_allow: CallbackAllowlist, list_key: String) -> AdmissionCell {
        AdmissionCell {
            current: RefCell::new(Rc::new(Sources {
                allow: static_allow.clone(),
                live_list_ready: false,
            })),
            pending: RefCell::new(Some(Pending {
                list_key,
                static_allow,
            })),
        }
    }

    pub fn current(&self) -> Rc<Sources> {
        self.current.borrow().clone()
    }

    pub fn is_ready(&self) -> bool {
        self.current.borrow().live_list_ready
    }

    /// Installs a newly fetched (or picked up) live list.
    pub fn install(&self, static_allow: &CallbackAllowlist, live: &CallbackAllowlist) {
        *self.pending.borrow_mut() = None;
        *self.current.borrow_mut() = Rc::new(Sources::fixed(static_allow.union(live)));
    }

    /// Not ready yet: looks for the live list in shared data; the sources with it if
    /// it is there now.
    pub fn catch_up(&self, host: &impl Host) -> Option<Rc<Sources>> {
        let found = {
            let pending = self.pending.borrow();
            let p = pending.as_ref()?;
            p.static_allow
                .union(&live_list::read_shared_list(host, &p.list_key)?)
        };
        *self.pending.borrow_mut() = None;
        let sources = Rc::new(Sources::fixed(found));
        *self.current.borrow_mut() = sources.clone();
        Some(sources)
    }
}
