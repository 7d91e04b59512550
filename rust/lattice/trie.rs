//! A byte-wise double-array trie mapping piece bytes to piece ids.
//!
//! The lattice hot loop is "for each start position, walk the trie over the following bytes and
//! report every piece that ends": [`Trie::common_prefixes`] does that with one array read and
//! one compare per byte, no allocation and no hashing. Units pack `base`, `check` and `value`
//! together so a transition touches one cache line.

use crate::error::{Error, Result};

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Unit {
    /// Children of this node live at `base + byte`.
    base: u32,
    /// Parent node index (`NONE` for free units and for the root).
    check: u32,
    /// Piece id ending here, or `NONE`.
    value: u32,
}

#[derive(Clone, Debug)]
pub struct Trie {
    units: Vec<Unit>,
}

impl Trie {
    /// Builds the trie from `(bytes, id)` pairs. Keys must be non-empty and distinct.
    pub fn build(keys: &[(&[u8], u32)]) -> Result<Trie> {
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_unstable_by(|&a, &b| keys[a].0.cmp(keys[b].0));
        for w in order.windows(2) {
            if keys[w[0]].0 == keys[w[1]].0 {
                return Err(Error::invalid("duplicate key in trie"));
            }
        }
        let sorted: Vec<(&[u8], u32)> = order.iter().map(|&i| keys[i]).collect();
        let mut b = Builder {
            units: vec![Unit {
                base: 1,
                check: NONE,
                value: NONE,
            }],
            used: vec![true],
            first_free: 1,
            skip: vec![1],
        };
        // Explicit stack instead of recursion: (node, key range, depth).
        let mut stack = vec![(0u32, 0usize, sorted.len(), 0usize)];
        let mut labels: Vec<(u8, usize, usize)> = Vec::new();
        while let Some((node, mut lo, hi, depth)) = stack.pop() {
            if lo < hi && sorted[lo].0.len() == depth {
                b.units[node as usize].value = sorted[lo].1;
                lo += 1;
            }
            if lo >= hi {
                continue;
            }
            labels.clear();
            let mut i = lo;
            while i < hi {
                let c = sorted[i].0[depth];
                let mut j = i + 1;
                while j < hi && sorted[j].0[depth] == c {
                    j += 1;
                }
                labels.push((c, i, j));
                i = j;
            }
            let base = b.find_base(&labels);
            b.units[node as usize].base = base;
            for &(c, l, h) in &labels {
                let child = base + c as u32;
                b.occupy(child, node);
                stack.push((child, l, h, depth + 1));
            }
        }
        let mut units = b.units;
        // Pad so that `base + byte` is always in bounds: the walk then needs no length test
        // beyond the `check` compare.
        let max_base = units.iter().map(|u| u.base as usize).max().unwrap_or(0);
        if units.len() < max_base + 256 {
            units.resize(
                max_base + 256,
                Unit {
                    base: 0,
                    check: NONE,
                    value: NONE,
                },
            );
        }
        if units.len() >= NONE as usize {
            return Err(Error::Limit("vocabulary too large for the trie".into()));
        }
        Ok(Trie { units })
    }

    /// Calls `f(length, id)` for every key that is a prefix of `text`, shortest first.
    #[inline(always)]
    pub fn common_prefixes(&self, text: &[u8], mut f: impl FnMut(usize, u32)) {
        let units = &self.units[..];
        let mut node = 0usize;
        for (i, &c) in text.iter().enumerate() {
            // SAFETY: `node` is always a valid unit index (the root, or a `next` that passed
            // the check below), and `build` padded `units` to `max(base) + 256` entries, so
            // `base + c` is in bounds for every unit.
            let next = unsafe { units.get_unchecked(node).base } as usize + c as usize;
            // SAFETY: as above, `next <= max(base) + 255 < units.len()`.
            let u = unsafe { *units.get_unchecked(next) };
            if u.check as usize != node {
                return;
            }
            node = next;
            if u.value != NONE {
                f(i + 1, u.value);
            }
        }
    }

    /// The id of exactly `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<u32> {
        let mut node = 0usize;
        for &c in key {
            let next = self.units[node].base as usize + c as usize;
            if self.units[next].check as usize != node {
                return None;
            }
            node = next;
        }
        let v = self.units[node].value;
        (v != NONE && !key.is_empty()).then_some(v)
    }

    pub fn memory_bytes(&self) -> usize {
        self.units.len() * std::mem::size_of::<Unit>()
    }
}

struct Builder {
    units: Vec<Unit>,
    used: Vec<bool>,
    /// Every unit below this index is occupied.
    first_free: usize,
    /// `skip[i]` leads (through path-compressed links) to the first free unit `>= i`:
    /// `find_base` jumps over occupied runs instead of testing them one by one, which made
    /// the build quadratic (a 32k-piece vocabulary of random words took 20 s).
    skip: Vec<u32>,
}

impl Builder {
    fn ensure(&mut self, n: usize) {
        if self.units.len() < n {
            self.units.resize(
                n,
                Unit {
                    base: 0,
                    check: NONE,
                    value: NONE,
                },
            );
            self.used.resize(n, false);
            let from = self.skip.len();
            self.skip.extend(from as u32..n as u32);
        }
    }

    /// The first free unit at or after `p` (union-find with path compression).
    fn free_from(&mut self, p: usize) -> usize {
        self.ensure(p + 1);
        let mut r = p;
        while self.skip[r] as usize != r {
            r = self.skip[r] as usize;
            self.ensure(r + 1);
        }
        let mut q = p;
        while q != r {
            let next = self.skip[q] as usize;
            self.skip[q] = r as u32;
            q = next;
        }
        r
    }

    fn occupy(&mut self, at: u32, parent: u32) {
        let at = at as usize;
        self.ensure(at + 2);
        self.used[at] = true;
        self.skip[at] = at as u32 + 1;
        self.units[at].check = parent;
        while self.first_free < self.used.len() && self.used[self.first_free] {
            self.first_free += 1;
        }
    }

    /// Smallest base >= 1 whose slots `base + label` are all free.
    fn find_base(&mut self, labels: &[(u8, usize, usize)]) -> u32 {
        let c0 = labels[0].0 as usize;
        // Only free units can hold the first label, so candidates come from `free_from`.
        let mut pos = self.free_from(self.first_free.max(c0 + 1));
        loop {
            self.ensure(pos + 257);
            let base = pos - c0;
            if labels
                .iter()
                .all(|&(c, _, _)| !self.used[base + c as usize])
            {
                return base as u32;
            }
            pos = self.free_from(pos + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_all_prefixes() {
        let keys: Vec<(&[u8], u32)> =
            vec![(b"a", 0), (b"ab", 1), (b"abc", 2), (b"b", 3), (b"\xff", 4)];
        let t = Trie::build(&keys).unwrap();
        let mut got = vec![];
        t.common_prefixes(b"abcd", |l, id| got.push((l, id)));
        assert_eq!(got, vec![(1, 0), (2, 1), (3, 2)]);
        assert_eq!(t.get(b"b"), Some(3));
        assert_eq!(t.get(b"\xff"), Some(4));
        assert_eq!(t.get(b"c"), None);
        assert_eq!(t.get(b""), None);
    }

    proptest! {
        #[test]
        fn matches_naive(keys in proptest::collection::btree_set(proptest::collection::vec(0u8..6, 1..5), 1..40),
                         text in proptest::collection::vec(0u8..6, 0..12)) {
            let keys: Vec<Vec<u8>> = keys.into_iter().collect();
            let pairs: Vec<(&[u8], u32)> = keys.iter().enumerate().map(|(i, k)| (k.as_slice(), i as u32)).collect();
            let t = Trie::build(&pairs).unwrap();
            let mut got = vec![];
            t.common_prefixes(&text, |l, id| got.push((l, id)));
            let mut want = vec![];
            for (i, k) in keys.iter().enumerate() {
                if text.starts_with(k) { want.push((k.len(), i as u32)); }
            }
            want.sort();
            prop_assert_eq!(got, want);
            for (i, k) in keys.iter().enumerate() {
                prop_assert_eq!(t.get(k), Some(i as u32));
            }
        }
    }
}
