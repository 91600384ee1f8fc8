//! An in-memory history: the profiles and orders `simulate`, `test` and `preview` fold events
//! into, as the store keeps them in tables.

use super::{Folded, OrderSummary, Profile, fold};
use crate::event::{Event, Rejected};
use std::collections::{HashMap, HashSet};

/// The part of a [`History`] one event may change, kept to undo a failed step.
#[derive(Debug, Clone)]
pub struct HistorySnapshot {
    event_id: String,
    seen: bool,
    customer_id: String,
    profile: Option<Profile>,
    order_id: Option<String>,
    order: Option<OrderSummary>,
}

/// An in-memory history, for `simulate` and `backtest` (the store keeps the same in tables).
#[derive(Debug, Default)]
pub struct History {
    pub profiles: HashMap<String, Profile>,
    pub orders: HashMap<String, OrderSummary>,
    seen: HashSet<String>,
}

impl History {
    /// Folds an event; `None` when its event id was seen before (a replay changes nothing).
    /// An event that cannot be held exactly is an error and changes nothing (its id counts as
    /// seen, as the service records it as processed when it sets it aside).
    pub fn fold(&mut self, event: &Event) -> Result<Option<Folded>, Rejected> {
        if !self.seen.insert(event.event_id.clone()) {
            return Ok(None);
        }
        let customer = event.customer_id();
        let order = event.order_id().and_then(|id| self.orders.get_mut(id));
        let (folded, new_order) = match self.profiles.get_mut(customer) {
            Some(profile) => fold(profile, order, event)?,
            None => {
                // A customer's first event: the profile exists only once it folded.
                let mut profile = Profile::new(customer);
                let folded = fold(&mut profile, order, event)?;
                self.profiles.insert(customer.to_string(), profile);
                folded
            }
        };
        if let Some(o) = new_order {
            self.orders.insert(o.id.clone(), o);
        }
        Ok(Some(folded))
    }

    /// What folding `event` may change: its id's mark, its customer's profile and its order.
    /// A step that fails midway is undone with [`History::restore`].
    pub fn snapshot(&self, event: &Event) -> HistorySnapshot {
        HistorySnapshot {
            event_id: event.event_id.clone(),
            seen: self.seen.contains(&event.event_id),
            customer_id: event.customer_id().to_string(),
            profile: self.profiles.get(event.customer_id()).cloned(),
            order_id: event.order_id().map(str::to_string),
            order: event.order_id().and_then(|id| self.orders.get(id)).cloned(),
        }
    }

    /// Puts back what [`History::snapshot`] saw.
    pub fn restore(&mut self, s: HistorySnapshot) {
        if !s.seen {
            self.seen.remove(&s.event_id);
        }
        match s.profile {
            Some(p) => self.profiles.insert(s.customer_id, p),
            None => self.profiles.remove(&s.customer_id),
        };
        if let Some(id) = s.order_id {
            match s.order {
                Some(o) => self.orders.insert(id, o),
                None => self.orders.remove(&id),
            };
        }
    }

    pub fn profile(&self, customer_id: &str) -> Option<&Profile> {
        self.profiles.get(customer_id)
    }

    pub fn profile_mut(&mut self, customer_id: &str) -> Option<&mut Profile> {
        self.profiles.get_mut(customer_id)
    }
}
