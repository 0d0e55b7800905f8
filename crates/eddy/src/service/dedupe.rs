//! The dedupe window: event ids recently handled, and those being handled,
//! so that a copy of an event (a publish retried after a lost reply
//! carries the same id) is acknowledged without running its handler again.

use std::sync::Arc;

/// Keyed by event ids, looked up per delivery: foldhash, not SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// Recently handled event ids, and the ones being handled, for dropping
/// duplicates (a publish retried after a lost reply carries the same id).
///
/// Handled ids are kept in two generations: new ones go into the current
/// set, and when it holds `cap` ids it becomes the previous set and the
/// old previous set is dropped whole. So the window remembers at least the
/// last `cap` handled ids and at most `2 * cap`. An exact sliding window
/// has to find and remove its oldest id on every insert: a lookup in a
/// long-cold part of the table, on every delivery. Ids being handled are
/// kept apart, in a map that
/// is never rotated, so a handler that runs for a long time keeps its copies
/// out however many events finish meanwhile.
///
/// Ids in eddy's own form (a lowercase hyphenated UUID) are kept as the
/// 128-bit number they spell: no allocation, and nothing to follow when a
/// generation is dropped. Any other id is kept as its text.
pub(super) struct Seen {
    /// Handled ids: `[current, previous]`.
    handled: [Generation; 2],
    /// Ids being handled, and through which stream entry.
    in_flight: HashMap<IdKey, crate::EntryId>,
    cap: usize,
}

#[derive(Default)]
struct Generation {
    uuids: HashSet<u128>,
    texts: HashSet<Arc<str>>,
}

impl Generation {
    fn len(&self) -> usize {
        self.uuids.len() + self.texts.len()
    }

    fn contains(&self, key: &IdKey) -> bool {
        match key {
            IdKey::Uuid(n) => self.uuids.contains(n),
            IdKey::Text(t) => self.texts.contains(t),
        }
    }

    fn insert(&mut self, key: &IdKey) {
        match key {
            IdKey::Uuid(n) => self.uuids.insert(*n),
            IdKey::Text(t) => self.texts.insert(t.clone()),
        };
    }

    fn clear(&mut self) {
        self.uuids.clear();
        self.texts.clear();
    }
}

/// An event id as the window keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum IdKey {
    Uuid(u128),
    Text(Arc<str>),
}

/// The number a lowercase hyphenated UUID spells; `None` for any other
/// text (other forms of the same UUID are other ids: ids compare as text).
fn uuid_number(id: &str) -> Option<u128> {
    if id.len() != 36 || id.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    uuid::Uuid::try_parse(id).ok().map(|u| u.as_u128())
}

impl Seen {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            handled: Default::default(),
            in_flight: HashMap::default(),
            cap,
        }
    }

    fn was_handled(&self, key: &IdKey) -> bool {
        self.handled.iter().any(|g| g.contains(key))
    }

    /// Whether this delivery duplicates an event handled or being handled
    /// through another entry; if not, it is now in flight, under the key
    /// returned (none when the window is off). A redelivery of the same
    /// entry is never a duplicate: acknowledging it would settle the copy
    /// in hand too.
    pub(super) fn admit(&mut self, event_id: &str, entry: crate::EntryId) -> Verdict {
        if self.cap == 0 {
            return Verdict::Fresh(None);
        }
        let key = match uuid_number(event_id) {
            Some(n) => IdKey::Uuid(n),
            None => IdKey::Text(Arc::from(event_id)),
        };
        if self.was_handled(&key) {
            return Verdict::Duplicate;
        }
        match self.in_flight.get(&key) {
            Some(other) if *other != entry => Verdict::Duplicate,
            Some(_) => Verdict::Fresh(Some(key)),
            None => {
                self.in_flight.insert(key.clone(), entry);
                Verdict::Fresh(Some(key))
            }
        }
    }

    /// The handler of `entry` is done with the event admitted under `key`:
    /// remember it if it was handled; either way it is no longer in flight
    /// through `entry` (a failed one may be tried again by a later
    /// delivery). The in-flight mark of another entry stays: a failed
    /// redelivery must not clear the mark of a copy still being handled.
    pub(super) fn done(&mut self, key: &IdKey, entry: crate::EntryId, handled: bool) {
        if self.in_flight.get(key) == Some(&entry) {
            self.in_flight.remove(key);
        }
        if !handled {
            return;
        }
        // (An id handled twice, by two copies in flight at once, is only
        // kept in the current generation again: no need to look first.)
        let [current, previous] = &mut self.handled;
        if current.len() >= self.cap {
            // Keeps the emptied set's allocation for the next generation.
            std::mem::swap(current, previous);
            current.clear();
        }
        current.insert(key);
    }
}

pub(super) enum Verdict {
    Duplicate,
    Fresh(Option<IdKey>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EntryId;

    fn fresh(v: Verdict) -> Option<IdKey> {
        match v {
            Verdict::Fresh(key) => key,
            Verdict::Duplicate => None,
        }
    }

    #[test]
    fn the_dedupe_window_drops_copies_and_forgets_the_oldest() {
        let (e1, e2) = (EntryId::new(1, 0), EntryId::new(2, 0));
        let mut seen = Seen::new(2);
        let a = fresh(seen.admit("a", e1)).unwrap();
        // Another copy while the first is being handled; a redelivery of
        // the same entry is not a copy.
        assert!(matches!(seen.admit("a", e2), Verdict::Duplicate));
        assert!(fresh(seen.admit("a", e1)).is_some());
        seen.done(&a, e1, true);
        assert!(matches!(seen.admit("a", e2), Verdict::Duplicate));
        // A failed handler is forgotten: the next copy runs.
        let b = fresh(seen.admit("b", e1)).unwrap();
        seen.done(&b, e1, false);
        let b = fresh(seen.admit("b", e2)).unwrap();
        seen.done(&b, e2, true);
        // A window of two remembers at least the last two handled ids and
        // at most four: a third starts a new generation, and a fifth drops
        // the generation of the first two.
        let handle = |seen: &mut Seen, id: &str, n: u64| {
            let e = EntryId::new(9, n);
            let k = fresh(seen.admit(id, e)).unwrap();
            seen.done(&k, e, true);
        };
        handle(&mut seen, "c", 0);
        assert!(matches!(seen.admit("a", e2), Verdict::Duplicate));
        handle(&mut seen, "d", 1);
        handle(&mut seen, "e", 2);
        assert!(fresh(seen.admit("a", e2)).is_some());
        assert!(fresh(seen.admit("b", e2)).is_some());
        for id in ["c", "d", "e"] {
            assert!(matches!(seen.admit(id, e1), Verdict::Duplicate), "{id}");
        }
        assert!(seen.handled.iter().all(|g| g.len() <= 2));
        // eddy's own ids are kept as numbers; other spellings of the same
        // UUID are other ids, as their text differs.
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        let k = fresh(seen.admit(id, e1)).unwrap();
        assert_eq!(k, IdKey::Uuid(uuid_number(id).unwrap()));
        seen.done(&k, e1, true);
        assert!(matches!(seen.admit(id, e2), Verdict::Duplicate));
        let upper = id.to_uppercase();
        assert!(matches!(
            seen.admit(&upper, e2),
            Verdict::Fresh(Some(IdKey::Text(_)))
        ));
        for other in [
            "x",
            "67e5504410b1426f9247bb680e5fe0c8",
            "{67e55044-10b1-426f-9247-bb680e5fe0c8}",
        ] {
            assert_eq!(uuid_number(other), None, "{other}");
        }
        // Three more handled ids push the UUID out of the window.
        for (n, t) in ["f1", "f2", "f3"].into_iter().enumerate() {
            handle(&mut seen, t, 10 + n as u64);
        }
        assert!(seen.handled.iter().all(|g| g.uuids.is_empty()));
        assert!(fresh(seen.admit(id, e2)).is_some());
        // An event still being handled stays in however many others finish
        // meanwhile; a failed copy leaves it to be tried again.
        let slow = fresh(seen.admit("slow", e1)).unwrap();
        for n in 0..10 {
            handle(&mut seen, &format!("g{n}"), 20 + n);
        }
        assert!(matches!(seen.admit("slow", e2), Verdict::Duplicate));
        seen.done(&slow, e1, false);
        assert!(fresh(seen.admit("slow", e2)).is_some());
        // A copy handled through one entry while another entry's copy is
        // in flight: the id is handled, and stays so when the other copy
        // then fails, until the generations move past it.
        // (Entry 3 is redelivered while its first delivery runs; the first
        // fails, entry 4's copy is admitted, then 3's redelivery succeeds.)
        let (e3, e4) = (EntryId::new(3, 0), EntryId::new(4, 0));
        let first = fresh(seen.admit("h", e3)).unwrap();
        let again = fresh(seen.admit("h", e3)).unwrap();
        seen.done(&first, e3, false);
        let h4 = fresh(seen.admit("h", e4)).unwrap();
        seen.done(&again, e3, true);
        assert!(matches!(
            seen.admit("h", EntryId::new(5, 0)),
            Verdict::Duplicate
        ));
        seen.done(&h4, e4, false);
        assert!(matches!(
            seen.admit("h", EntryId::new(5, 0)),
            Verdict::Duplicate
        ));
        for n in 0..4 {
            handle(&mut seen, &format!("k{n}"), 40 + n);
        }
        assert!(fresh(seen.admit("h", EntryId::new(5, 0))).is_some());
        // A failed redelivery of entry 1 finishing after its copy in entry
        // 2 was admitted leaves entry 2's mark alone.
        let mut seen = Seen::new(4);
        let k1 = fresh(seen.admit("r", e1)).unwrap();
        let again = fresh(seen.admit("r", e1)).unwrap();
        seen.done(&k1, e1, false);
        let k2 = fresh(seen.admit("r", e2)).unwrap();
        seen.done(&again, e1, false);
        assert!(matches!(
            seen.admit("r", EntryId::new(3, 0)),
            Verdict::Duplicate
        ));
        seen.done(&k2, e2, true);
        assert!(matches!(
            seen.admit("r", EntryId::new(3, 0)),
            Verdict::Duplicate
        ));
        // Off: nothing is remembered.
        let mut off = Seen::new(0);
        assert!(matches!(off.admit("a", e1), Verdict::Fresh(None)));
        assert!(matches!(off.admit("a", e2), Verdict::Fresh(None)));
    }
}
