//! A short-lived cache of insert lists. A parcel is looked at several times in a minute (the
//! scan, the card, the confirmation, a rescan), and stations ask in bursts at shift start;
//! answering those from memory keeps the store's read pool for the rest.
//!
//! What may be stale, and for how long (`[http] cache_ttl_ms`): this instance forgets an
//! entry itself when it decides the order or records its confirmation, so its own answers are
//! current; a change made elsewhere (another instance's confirmation, `packwell forget`)
//! shows after at most the time to live. "No such order" is cached too, so that a hidden
//! order of another warehouse and a missing one take the same path and the same time.

use axum::body::Bytes;
use moka::sync::Cache;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What the store said about an order.
#[derive(Debug, Clone)]
pub enum Cached {
    Absent,
    /// The insert list as JSON, and the warehouse that may see it.
    Present {
        warehouse: Arc<str>,
        body: Bytes,
    },
}

pub struct InsertListCache {
    cache: Option<Cache<String, Cached>>,
    /// Moves on with every forget; a load that saw another generation before it started
    /// does not store what it read (it may predate the change).
    generation: AtomicU64,
}

impl InsertListCache {
    /// No cache when `ttl` or `capacity` is zero.
    pub fn new(ttl: Duration, capacity: u64) -> InsertListCache {
        let cache = (!ttl.is_zero() && capacity > 0).then(|| {
            Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build()
        });
        InsertListCache {
            cache,
            generation: AtomicU64::new(0),
        }
    }

    pub fn get(&self, order_id: &str) -> Option<Cached> {
        self.cache.as_ref()?.get(order_id)
    }

    /// The generation to hand back to [`InsertListCache::put`] after loading.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Stores what a load read, unless something was forgotten since it started.
    pub fn put(&self, order_id: &str, value: Cached, loaded_at: u64) {
        let Some(cache) = &self.cache else { return };
        if self.generation() != loaded_at {
            return;
        }
        cache.insert(order_id.to_string(), value);
        // A forget between the check and the insert: undo, it may have been about this order.
        if self.generation() != loaded_at {
            cache.invalidate(order_id);
        }
    }

    /// The order changed: the next request reads the store.
    pub fn forget(&self, order_id: &str) {
        let Some(cache) = &self.cache else { return };
        self.generation.fetch_add(1, Ordering::AcqRel);
        cache.invalidate(order_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn present() -> Cached {
        Cached::Present {
            warehouse: "WH-BER".into(),
            body: Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn a_load_that_raced_a_forget_is_not_stored() {
        let cache = InsertListCache::new(Duration::from_secs(60), 100);
        let before = cache.generation();
        cache.forget("O-1");
        cache.put("O-1", present(), before);
        assert!(cache.get("O-1").is_none());
        cache.put("O-1", present(), cache.generation());
        assert!(matches!(cache.get("O-1"), Some(Cached::Present { .. })));
        cache.forget("O-1");
        assert!(cache.get("O-1").is_none());
    }

    #[test]
    fn a_zero_time_to_live_caches_nothing() {
        let cache = InsertListCache::new(Duration::ZERO, 100);
        cache.put("O-1", Cached::Absent, cache.generation());
        assert!(cache.get("O-1").is_none());
    }
}
