//! The sources a worker admits: the static allowlist ∪ the live callback IP list,
//! shared by the root context (which installs each new list) and its HTTP contexts
//! (which read it per request).
//!
//! A worker's own copy of the live list arrives on its tick. Until then, a request
//! that would be refused `503 unavailable` first looks in shared data, where another
//! worker may already have put the list: no worker answers 503 after any has loaded it.

use super::live_list;
use crate::allowlist::CallbackAllowlist;
use std::cell::RefCell;
use std::rc::Rc;

/// The sources a request is checked against.
pub struct Admission {
    pub allow: CallbackAllowlist,
    /// False until the live list (if configured) has loaded.
    pub live_list_ready: bool,
}

/// Where a worker still waiting for its first live list looks for it.
struct Pending {
    /// The shared-data key the fetching worker publishes the list under.
    list_key: String,
    static_allow: CallbackAllowlist,
}

pub struct AdmissionCell {
    current: RefCell<Rc<Admission>>,
    pending: RefCell<Option<Pending>>,
}

impl AdmissionCell {
    /// Only the static entries, ready at once (no live list configured).
    pub fn fixed(allow: CallbackAllowlist) -> AdmissionCell {
        AdmissionCell {
            current: RefCell::new(Rc::new(Admission {
                allow,
                live_list_ready: true,
            })),
            pending: RefCell::new(None),
        }
    }

    /// The static entries until the live list published under `list_key` loads.
    pub fn awaiting_live_list(static_allow: CallbackAllowlist, list_key: String) -> AdmissionCell {
        AdmissionCell {
            current: RefCell::new(Rc::new(Admission {
                allow: static_allow.clone(),
                live_list_ready: false,
            })),
            pending: RefCell::new(Some(Pending {
                list_key,
                static_allow,
            })),
        }
    }

    pub fn current(&self) -> Rc<Admission> {
        self.current.borrow().clone()
    }

    pub fn is_ready(&self) -> bool {
        self.current.borrow().live_list_ready
    }

    /// Installs a newly fetched (or picked up) live list.
    pub fn install(&self, static_allow: &CallbackAllowlist, live: &CallbackAllowlist) {
        *self.pending.borrow_mut() = None;
        *self.current.borrow_mut() = Rc::new(Admission {
            allow: static_allow.union(live),
            live_list_ready: true,
        });
    }

    /// Not ready yet: looks for the live list in shared data; true if it is there now.
    pub fn catch_up(&self) -> bool {
        let found = {
            let pending = self.pending.borrow();
            let Some(p) = pending.as_ref() else {
                return self.is_ready();
            };
            match live_list::read_shared_list(&p.list_key) {
                Some(live) => p.static_allow.union(&live),
                None => return false,
            }
        };
        *self.pending.borrow_mut() = None;
        *self.current.borrow_mut() = Rc::new(Admission {
            allow: found,
            live_list_ready: true,
        });
        true
    }
}
