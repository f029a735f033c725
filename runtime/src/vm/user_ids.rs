//! User names → dense user ids, with the hash taken apart from the probe so that a batch of
//! inputs can look its users up side by side (`Engine::push_batch`).

use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::value::Str;

/// A user's dense id: the index of its record, in the order users were first seen.
pub type UserId = u32;

/// User ids by name: looked up, never iterated, so no hash order reaches the output.
/// (A seeded hash, as for every map keyed by what inputs name: those keys are chosen by others.)
#[derive(Default)]
pub(super) struct UserIds {
    table: HashTable<(Str, UserId)>,
    hasher: foldhash::quality::RandomState,
}

impl UserIds {
    pub(super) fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    /// The id of `name`, whose hash is `hash`.
    pub(super) fn get(&self, hash: u64, name: &str) -> Option<UserId> {
        self.table
            // Bytes, not `as_str`: that would check the UTF-8 of every name compared.
            .find(hash, |(n, _)| n.as_bytes() == name.as_bytes())
            .map(|(_, id)| *id)
    }

    /// Forgets `name` (its user left memory; its id may be given to another).
    pub(super) fn remove(&mut self, hash: u64, name: &str) {
        if let Ok(entry) = self
            .table
            .find_entry(hash, |(n, _)| n.as_bytes() == name.as_bytes())
        {
            entry.remove();
        }
    }

    /// Records a name not seen before.
    pub(super) fn insert(&mut self, hash: u64, name: Str, id: UserId) {
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, (name, id), |(n, _)| hasher.hash_one(n.as_str()));
    }
}
