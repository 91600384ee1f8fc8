//! A short-lived cache of insert lists. A parcel is looked at several times in a minute (the
//! scan, the card, the confirmation, a rescan), and stations ask in bursts at shift start;
//! answering those from memory keeps the store's read pool for the rest.
//!
//! What may be stale, and for how long (`[http] cache_ttl_ms`): this instance forgets an
//! entry itself when it decides the order or records its confirmation, so its own answers are
//! current; a change made elsewhere (another instance's confirmation, `packwell forget`)
//! shows after at most the time to live. "No such order" is cached too, so that a hidden
//! order of another warehouse and a missing one take the same path and the same time.
//!
//! A hit is on every station request, so it is kept to a hash, one uncontended lock and two
//! reference counts: the entries live in shards of plain hash maps, each behind its own
//! mutex, and an entry carries the instant it expires. (A general-purpose cache with
//! frequency sketches and read logs cost a station request more than its routing did.)

use axum::body::Bytes;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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

/// Enough shards that the runtime's workers rarely meet on one lock.
const SHARDS: usize = 32;

pub struct InsertListCache {
    /// `None`: caching is off.
    shards: Option<Box<[Mutex<Shard>]>>,
    ttl: Duration,
    /// Most entries one shard keeps: `[http] cache_entries` shared out (at least one each).
    per_shard: usize,
    /// Random keys (SipHash): order ids come from callers, who cannot aim at one shard.
    hasher: RandomState,
    /// Moves on with every forget; a load that saw another generation before it started
    /// does not store what it read (it may predate the change).
    generation: AtomicU64,
}

struct Entry {
    value: Cached,
    expires: Instant,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<String, Entry>,
}

impl Shard {
    /// Makes room for at least one entry in a full shard: the expired entries go, and if
    /// that frees less than an eighth, arbitrary others too, so that a full shard of live
    /// entries is not scanned again at the next insert.
    fn make_room(&mut self, per_shard: usize, now: Instant) {
        self.entries.retain(|_, e| e.expires > now);
        let target = per_shard - per_shard.div_ceil(8);
        let excess = self.entries.len().saturating_sub(target);
        if excess > 0 {
            let victims: Vec<String> = self.entries.keys().take(excess).cloned().collect();
            for key in victims {
                self.entries.remove(&key);
            }
        }
    }
}

impl InsertListCache {
    /// No cache when `ttl` or `capacity` is zero.
    pub fn new(ttl: Duration, capacity: u64) -> InsertListCache {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        let on = !ttl.is_zero() && capacity > 0;
        InsertListCache {
            shards: on.then(|| (0..SHARDS).map(|_| Mutex::default()).collect()),
            ttl,
            per_shard: (capacity / SHARDS).max(1),
            hasher: RandomState::new(),
            generation: AtomicU64::new(0),
        }
    }

    fn shard(&self, order_id: &str) -> Option<MutexGuard<'_, Shard>> {
        let shards = self.shards.as_ref()?;
        let index = usize::try_from(self.hasher.hash_one(order_id) % SHARDS as u64).unwrap_or(0);
        // A panic while holding a shard left a map that is still whole: keep using it.
        Some(shards[index].lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn get(&self, order_id: &str) -> Option<Cached> {
        let mut shard = self.shard(order_id)?;
        let entry = shard.entries.get(order_id)?;
        if entry.expires > Instant::now() {
            return Some(entry.value.clone());
        }
        shard.entries.remove(order_id);
        None
    }

    /// The generation to hand back to [`InsertListCache::put`] after loading.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Stores what a load read, unless something was forgotten since it started.
    pub fn put(&self, order_id: &str, value: Cached, loaded_at: u64) {
        let Some(mut shard) = self.shard(order_id) else {
            return;
        };
        // Checked under the shard's lock, which `forget` takes after moving the generation
        // on: either the forget's removal comes after this insert, or this sees it.
        if self.generation() != loaded_at {
            return;
        }
        let now = Instant::now();
        if shard.entries.len() >= self.per_shard && !shard.entries.contains_key(order_id) {
            shard.make_room(self.per_shard, now);
        }
        shard.entries.insert(
            order_id.to_string(),
            Entry {
                value,
                expires: now + self.ttl,
            },
        );
    }

    /// The order changed: the next request reads the store.
    pub fn forget(&self, order_id: &str) {
        if self.shards.is_none() {
            return;
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(mut shard) = self.shard(order_id) {
            shard.entries.remove(order_id);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.as_ref().map_or(0, |shards| {
            shards
                .iter()
                .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).entries.len())
                .sum()
        })
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

    #[test]
    fn an_entry_is_not_answered_past_its_time_to_live() {
        let ttl = Duration::from_millis(30);
        let cache = InsertListCache::new(ttl, 100);
        cache.put("O-1", present(), cache.generation());
        let stored = Instant::now();
        assert!(cache.get("O-1").is_some() || stored.elapsed() > ttl);
        // Polled rather than slept: the entry must be gone once the time to live has passed
        // since it was stored, however late this thread runs.
        loop {
            let age = stored.elapsed();
            let hit = cache.get("O-1").is_some();
            if age > ttl {
                assert!(!hit, "answered {age:?} after being stored");
                break;
            }
            std::thread::yield_now();
        }
    }

    #[test]
    fn the_capacity_bounds_the_entries() {
        let cache = InsertListCache::new(Duration::from_secs(60), 200);
        for i in 0..10_000 {
            cache.put(&format!("O-{i}"), Cached::Absent, cache.generation());
        }
        assert!(cache.len() <= 200, "{} entries", cache.len());
        // What was stored last is there.
        assert!(cache.get("O-9999").is_some());
    }
}
