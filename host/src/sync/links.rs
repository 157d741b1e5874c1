//! An in-memory cache of the links the engine looks up for every change (echo and
//! conflict checks).
//!
//! The engine is the only writer of its state store, so a write-through cache is exact:
//! entries come from store reads (committed state) and are updated from each batch only
//! after the store has committed it ([`LinkCache::apply`]). A link is cached under both
//! of its keys at once, so a link that is replaced or deleted is always found and removed
//! under both; a lookup that found no link is cached under its key alone. When the cache
//! grows past its capacity it starts over empty.

use std::collections::HashMap;
use std::sync::Arc;

use crate::change::Side;
use crate::state::{BatchCommit, Image, Key, LinkChange};

/// One link, both sides.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CachedLink {
    pub(crate) erp_key: Key,
    pub(crate) crm_key: Key,
    pub(crate) erp_image: Image,
    pub(crate) crm_image: Image,
}

impl CachedLink {
    pub(crate) fn key(&self, side: Side) -> &Key {
        match side {
            Side::Erp => &self.erp_key,
            Side::Crm => &self.crm_key,
        }
    }

    pub(crate) fn image(&self, side: Side) -> &Image {
        match side {
            Side::Erp => &self.erp_image,
            Side::Crm => &self.crm_image,
        }
    }
}

type Slot = (String, Side, String);

/// Links by (map, side, key); a link is shared by its two entries.
pub(crate) struct LinkCache {
    entries: HashMap<Slot, Option<Arc<CachedLink>>>,
    capacity: usize,
}

impl LinkCache {
    pub(crate) fn new(capacity: usize) -> LinkCache {
        LinkCache {
            entries: HashMap::new(),
            capacity,
        }
    }

    /// The cached answer for the link of `key` on `side` of `map`: `None` when not
    /// cached, `Some(None)` when cached as "no link".
    pub(crate) fn get(&self, map: &str, side: Side, key: &Key) -> Option<Option<Arc<CachedLink>>> {
        self.entries
            .get(&(map.to_owned(), side, key_id(key)))
            .cloned()
    }

    /// Remembers what the store answered for `key` on `side`.
    pub(crate) fn remember(
        &mut self,
        map: &str,
        side: Side,
        key: &Key,
        link: Option<Arc<CachedLink>>,
    ) {
        self.make_room();
        match link {
            Some(link) => self.put(map, link),
            None => {
                self.entries
                    .insert((map.to_owned(), side, key_id(key)), None);
            }
        }
    }

    /// Brings the cache in line with a batch the store has committed.
    pub(crate) fn apply(&mut self, commit: &BatchCommit) {
        for change in &commit.links {
            match change {
                LinkChange::Upsert(upsert) => {
                    // A link that held either key is replaced (the store does the same).
                    for side in [Side::Erp, Side::Crm] {
                        let key = match side {
                            Side::Erp => &upsert.erp_key,
                            Side::Crm => &upsert.crm_key,
                        };
                        self.forget(&upsert.map, side, key);
                    }
                    self.make_room();
                    self.put(
                        &upsert.map,
                        Arc::new(CachedLink {
                            erp_key: upsert.erp_key.clone(),
                            crm_key: upsert.crm_key.clone(),
                            erp_image: upsert.erp_image.clone(),
                            crm_image: upsert.crm_image.clone(),
                        }),
                    );
                }
                LinkChange::Delete(delete) => {
                    let slot = (delete.map.clone(), delete.side, key_id(&delete.key));
                    match self.entries.get(&slot) {
                        Some(_) => self.forget(&delete.map, delete.side, &delete.key),
                        // Not cached: its other key may be. Start over to stay exact.
                        None => self.entries.clear(),
                    }
                }
            }
        }
    }

    fn put(&mut self, map: &str, link: Arc<CachedLink>) {
        for side in [Side::Erp, Side::Crm] {
            self.entries.insert(
                (map.to_owned(), side, key_id(link.key(side))),
                Some(Arc::clone(&link)),
            );
        }
    }

    /// Forgets the link of `key` on `side`, under both of its keys.
    fn forget(&mut self, map: &str, side: Side, key: &Key) {
        if let Some(Some(old)) = self.entries.remove(&(map.to_owned(), side, key_id(key))) {
            self.entries
                .remove(&(map.to_owned(), side.other(), key_id(old.key(side.other()))));
        }
    }

    fn make_room(&mut self) {
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
    }
}

/// A key as a map key: its values' JSON form, exact for every kind.
pub(crate) fn key_id(key: &Key) -> String {
    serde_json::Value::Array(key.iter().map(crate::replay::value_to_json).collect()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Value;
    use crate::state::{LinkDelete, LinkUpsert};

    fn key(text: &str) -> Key {
        vec![Value::Text(text.to_owned())]
    }

    fn upsert(erp: &str, crm: &str) -> LinkChange {
        LinkChange::Upsert(LinkUpsert {
            map: "m".into(),
            erp_key: key(erp),
            crm_key: key(crm),
            erp_image: Image::new(),
            crm_image: Image::new(),
            plugin_version: "v".into(),
        })
    }

    #[test]
    fn a_replaced_link_is_forgotten_under_both_keys() {
        let mut cache = LinkCache::new(100);
        cache.apply(&BatchCommit {
            links: vec![upsert("K1", "C1")],
            ..BatchCommit::default()
        });
        assert_eq!(
            cache
                .get("m", Side::Crm, &key("C1"))
                .flatten()
                .map(|l| l.erp_key.clone()),
            Some(key("K1"))
        );
        // K1 now links to C2: C1 must not still point at K1.
        cache.apply(&BatchCommit {
            links: vec![upsert("K1", "C2")],
            ..BatchCommit::default()
        });
        assert_eq!(cache.get("m", Side::Crm, &key("C1")), None);
        assert_eq!(
            cache
                .get("m", Side::Erp, &key("K1"))
                .flatten()
                .map(|l| l.crm_key.clone()),
            Some(key("C2"))
        );
        cache.apply(&BatchCommit {
            links: vec![LinkChange::Delete(LinkDelete {
                map: "m".into(),
                side: Side::Crm,
                key: key("C2"),
            })],
            ..BatchCommit::default()
        });
        assert_eq!(cache.get("m", Side::Erp, &key("K1")), None);
    }

    #[test]
    fn a_delete_of_an_uncached_link_empties_the_cache() {
        let mut cache = LinkCache::new(100);
        cache.remember("m", Side::Erp, &key("K9"), None);
        cache.apply(&BatchCommit {
            links: vec![LinkChange::Delete(LinkDelete {
                map: "m".into(),
                side: Side::Crm,
                key: key("C1"),
            })],
            ..BatchCommit::default()
        });
        assert_eq!(cache.get("m", Side::Erp, &key("K9")), None);
    }
}
