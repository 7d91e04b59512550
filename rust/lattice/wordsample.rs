//! Perfect sampling word by word from a per-thread cache of word lattices: the sampling
//! counterpart of [`super::wordcache`], giving the full-line pass's draws bit for bit.
//!
//! # Why the draws are the same
//! Where the model cuts words (`Chars::cut_sym`), every "▁" unit is a node all
//! segmentations pass through, so `p_α` of a line is the product of its words' `p_α`.
//! The linear-domain perfect sampler ([`super::sample`]) renormalises its running sum to
//! exactly 1 at each such cut (no other sum is pending there), so from a cut on it
//! computes, for that word, exactly what a pass over the word alone computes from 1: the
//! same edges in the same order (by start, then [`Model::edges_at`] order), one uniform per
//! edge from a reachable start, the same products, sums and rescalings, and the same
//! comparisons `u·Z <= c`.
//!
//! # Why a word's sums can be cached
//! The sums do not depend on the draws: for a given α, edge `k` of a word always adds the
//! same `c_k` and leaves the same running total `Z_k` at its end; only the choices depend on
//! the uniforms. So the cache keeps, per word, its edges from reachable starts with `(c_k,
//! Z_k)` computed once per α by the full pass's arithmetic, and a draw is one uniform, one
//! product and one compare per edge — no chain through the sums. The first edge into an
//! end always wins (`u < 1`), so the winners need no clearing between words.
//!
//! The output therefore never depends on the cache's state, the thread count or the batch
//! split; tests compare ids and the stream's position with the full pass bit for bit.
//! Used only by batch/single `encode` with `method="perfect"` and linear-domain weights
//! (every `|α·v| <= 150`), which discard `log Z`; any other case — a word over `MAX_WORD`
//! bytes, a word with no segmentation, no cuts in the model — takes the full pass (with the
//! stream rewound). `PROBCRAFT_WORD_CACHE=0` disables it with the Viterbi word cache.
//!
//! # Performance notes (botchan, 4288 lines, ~50.7k words of ~8.9 edges; LTO wheel, batch
//! encode one thread, min of 60-100 interleaved calls; shared 2-core VM, often loaded by
//! other jobs, so ranges)
//!
//! - Before this module: perfect (full pass) 6.6-8.4 ms vs Viterbi (word cache) ~3.2 ms,
//!   perfect ÷ Viterbi ~2.
//! - First version replayed the reservoir pass over cached edges (sums recomputed per
//!   draw): 6.0-6.8 ms vs 2.75 ms: ~34 ns per word, a chain through the sums
//!   (store-forward, multiply, add per start), a mispredicted exit per word, and a per-word
//!   `ln` for `log Z` (4 %).
//! - Cached sums as exact integer thresholds (16-byte edges): 4.7-5.2 ms vs 2.9-3.0 ms.
//! - Then: a 4-byte packed draw view (the 16-byte edges cost ~3 cache lines per word, and
//!   the working set of ~5k words no longer fit L2), group lookups with prefetches, the
//!   draw loop out of line (the stream's state was spilled inside the batch loop), a
//!   buffer-and-copy emission for words without UNK edges, the index shrunk and the hash's
//!   `memcpy` removed (shared with Viterbi, which got faster too): 4.6-4.8 ms vs 2.5-2.75 ms,
//!   **perfect ÷ Viterbi 1.73-1.84** (a quiet run: 4.76 / 2.75 ms).
//! - Where the rest goes (switching parts off): the lookups-only path costs what Viterbi
//!   costs; the draws ~1.0 ms (~20 ns per word; 12 ns when hot in L1: one xoshiro step per
//!   edge, a serial chain of ~4 cycles); emission and the longer output ~0.9 ms.
//! - zh_fortunes: no gain (perfect 27.8 ms with the caches vs 26.0 without; capping the
//!   word length at 16 or 24 bytes changed nothing); perfect ÷ Viterbi 1.2-1.4.
//! - Not tried: a counter-based generator for the perfect sampler (e.g. SplitMix steps
//!   `mix64(key + k·γ)` per edge, keyed once per text from the item's stream) would remove
//!   the serial chain (estimated 2x faster draws) but changes the seed → draw mapping again.

use super::model::{Model, Weights};
use super::viterbi::push_token_back;
use super::wordcache::{find_mark, hash, same, WordIndex, MAX_WORD};
use crate::rng::Stream;

/// Words looked up together before their draws (see `sample_words`).
const GROUP: usize = 32;

/// Asks for the cache line of `v[i]` (a word's draw data, read a group of words later).
#[inline(always)]
fn prefetch<T>(v: &[T], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if i < v.len() {
        // SAFETY: a prefetch of an in-bounds address has no side effects (SSE, baseline on
        // x86-64).
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(v.as_ptr().add(i) as *const i8);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (v, i);
}

/// Entries before the cache is cleared.
const MAX_ENTRIES: usize = 1 << 15;
/// Cached edges before the cache is cleared (16 bytes each).
const MAX_EDGES: usize = 1 << 21;

/// One lattice edge of a word from a reachable start: byte offsets in the word, the piece id
/// (or UNK label), and for the entry's α the reservoir test as an integer threshold: the
/// full pass replaces the end's holder when `u·Z <= c` with `u = k·2^-53` (`k` the stream's
/// 53 bits); the rounded product is monotone in `k`, so that holds exactly when
/// `k <= take` ([`threshold`]).
#[derive(Clone, Copy, Debug)]
struct WordEdge {
    take: u64,
    id: u32,
    start: u8,
    end: u8,
}

/// Marks an edge from an unreachable start (no draw; dropped from the cache).
const UNREACHED: u64 = u64::MAX;

/// The largest `k < 2^53` with `fl(k·2^-53 · z) <= c` (see [`WordEdge`]); `z >= c > 0`, so
/// `k = 0` always qualifies. The quotient's estimate is within a few units of it; the loops
/// settle it by the exact test.
fn threshold(c: f64, z: f64) -> u64 {
    const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
    const MAX: u64 = (1 << 53) - 1;
    let test = |k: u64| (k as f64 * SCALE) * z <= c;
    let mut k = ((c / z) * (1u64 << 53) as f64).clamp(0.0, MAX as f64) as u64;
    while k < MAX && test(k + 1) {
        k += 1;
    }
    while k > 0 && !test(k) {
        k -= 1;
    }
    k
}

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    /// α (bits) the edges' sums were computed for.
    alpha: u64,
    /// High half of the word's hash.
    hash: u32,
    key_off: u32,
    edges_off: u32,
    edges_len: u16,
    key_len: u8,
    /// The word has a segmentation (its end is reachable).
    ok: bool,
    /// No cached edge is an UNK edge: its ids are emitted as they are.
    plain: bool,
}

/// Counters for tuning and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub hits: u64,
    pub misses: u64,
    /// Hits whose sums were recomputed for another α.
    pub refreshed: u64,
    pub lines: u64,
    pub fallbacks: u64,
}

/// A per-thread word -> lattice cache for one model at a time.
#[derive(Debug, Default)]
pub struct WordLattices {
    uid: u64,
    index: WordIndex,
    entries: Vec<Entry>,
    keys: Vec<u8>,
    /// Per cached edge (a word's from `Entry::edges_off`): the draw's view, `pack(take,
    /// start, end)` (4 bytes, so a word's draws read one cache line where 16-byte edges
    /// read three), the piece id (read for the winners only) and the exact threshold (read
    /// on a tie of the packed one's top bits, about once per 2^20 edges).
    packed: Vec<u32>,
    ids: Vec<u32>,
    exact: Vec<u64>,
    pub stats: Stats,
    /// Incremented by every clear.
    generation: u64,
    cuts: Vec<u32>,
    /// Scratch: every edge of a word being inserted.
    all: Vec<WordEdge>,
    takes: Vec<u64>,
}

/// The full pass's sums over a word's edges from `z[0] = 1` (see [`super::sample`]'s
/// `Linear`, whose arithmetic this repeats: products, sums and rescaling by `1/zs` when a
/// start's sum leaves `[1e-100, 1e100]`), written into the edges. Edges from unreachable
/// starts get [`UNREACHED`]. Returns whether the word's end (`len`) is reached.
fn sums(
    n: usize,
    edge: impl Fn(usize) -> (usize, usize, u32),
    mut set: impl FnMut(usize, u64),
    weights: &[f64],
    len: usize,
) -> bool {
    let mut z = [0f64; 64];
    let mut reached = [false; 64];
    reached[0] = true;
    z[0] = 1.0;
    for k in 0..n {
        let (s, t, id) = edge(k);
        let (s, t) = (s & 63, t & 63);
        if !reached[s] {
            set(k, UNREACHED);
            continue;
        }
        let mut zs = z[s];
        if !(1e-100..=1e100).contains(&zs) {
            // The full pass's `rescale` (finished entries are scaled too, harmlessly).
            let f = 1.0 / zs;
            for v in z.iter_mut() {
                *v *= f;
            }
            z[s] = 1.0;
            zs = 1.0;
        }
        let c = zs * weights[id as usize];
        let zt = z[t] + c;
        z[t] = zt;
        reached[t] = true;
        set(k, threshold(c, zt));
    }
    reached[len & 63]
}

/// Bits of the threshold kept in the packed edge (its top 20 of 53).
const PACK_SHIFT: u32 = 33;

/// The draw's view of an edge: the threshold's top 20 bits, start and end (6 bits each).
#[inline(always)]
fn pack(take: u64, start: usize, end: usize) -> u32 {
    ((take >> PACK_SHIFT) as u32) << 12 | (start as u32 & 63) << 6 | (end as u32 & 63)
}

/// `bits <= take` for a packed edge `x` whose exact threshold is `exact()`: the top 20 bits
/// decide unless equal.
#[inline(always)]
fn decide(bits: u64, x: u32, exact: impl FnOnce() -> u64) -> bool {
    let (hi, top) = ((bits >> PACK_SHIFT) as u32, x >> 12);
    if hi == top {
        bits <= exact()
    } else {
        hi < top
    }
}

/// Appends the drawn path of a word without UNK edges: ids collected walking back from the
/// end into a buffer, then one 64-byte copy. The general loop (UNK merging, byte fallback,
/// a push per token) cost about as much as the draw itself.
#[inline(always)]
fn emit_plain(
    packed: &[u32],
    ids: &[u32],
    win: &[u16; 64],
    len: usize,
    buf: &mut [i32; 80],
    out: &mut Vec<i32>,
) {
    // `buf`: a word has at most `MAX_WORD` tokens, and 16 more entries keep a fixed 16-entry
    // copy from any start inside. Kept by the caller: zeroing it per word was a `memset`
    // call per word (2 % of a batch).
    let mut m = 64;
    let mut t = len;
    while t > 0 {
        let k = win[t & 63] as usize;
        m -= 1;
        buf[m] = ids[k] as i32;
        t = (packed[k] >> 6) as usize & 63;
    }
    let count = 64 - m;
    if count <= 16 {
        out.reserve(16);
        // SAFETY: `out` has room for 16 more entries (reserved) and `buf[m..m + 16]` is
        // inside `buf` (`m <= 64`); only the first `count` copied entries are kept.
        unsafe {
            let end = out.len();
            std::ptr::copy_nonoverlapping(buf.as_ptr().add(m), out.as_mut_ptr().add(end), 16);
            out.set_len(end + count);
        }
    } else {
        out.extend_from_slice(&buf[m..64]);
    }
}

/// One draw over a word's cached edges: the stream's next 53 bits per edge, the holder of
/// its end replaced when they are at most the edge's threshold (the first edge into an end
/// always wins). `win[e]`: winning edge index.
///
/// Not inlined: inside the batch loop the stream's state was spilled to the stack.
#[inline(never)]
fn draw(packed: &[u32], exact: &[u64], win: &mut [u16; 64], rng: &mut Stream) {
    // The stream in a local, so that it stays in registers.
    let mut r = rng.clone();
    for (k, &x) in packed.iter().enumerate() {
        let t = x as usize & 63;
        // The bits `Stream::next_f64` turns into `u`.
        let bits = r.next_u64() >> 11;
        let take = decide(bits, x, || exact[k]);
        win[t] = std::hint::select_unpredictable(take, k as u16, win[t]);
    }
    *rng = r;
}

impl WordLattices {
    fn clear(&mut self) {
        self.generation += 1;
        self.index.clear();
        self.entries.clear();
        self.keys.clear();
        self.packed.clear();
        self.ids.clear();
        self.exact.clear();
    }

    /// Number of cached words.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Draws a segmentation of the prepared `text` by the perfect sampler word by word and
    /// appends its ids to `out` (true); or returns false with `out` and `rng` as they were
    /// when the line must take the full pass.
    pub(crate) fn sample(
        &mut self,
        model: &Model,
        text: &[u8],
        w: &Weights,
        rng: &mut Stream,
        out: &mut Vec<i32>,
    ) -> bool {
        let n = text.len();
        if n == 0 || !w.linear_ok || !model.word_cut() {
            return false;
        }
        match model.chars() {
            Ok(ch) if ch.cut_sym.is_some() => {}
            _ => return false,
        }
        if self.uid != model.uid() || !self.index.is_ready() {
            self.clear();
            self.uid = model.uid();
        }
        let mut cuts = std::mem::take(&mut self.cuts);
        cuts.clear();
        let mut a = 0;
        while a < n {
            let b = find_mark(text, a + 1).unwrap_or(n);
            if b - a > MAX_WORD {
                self.cuts = cuts;
                self.stats.fallbacks += 1;
                return false;
            }
            cuts.push(b as u32);
            a = b;
        }
        let saved = rng.clone();
        let start_len = out.len();
        let ok = self.sample_words(model, text, &cuts, w, rng, out);
        self.cuts = cuts;
        if ok {
            self.stats.lines += 1;
        } else {
            *rng = saved;
            out.truncate(start_len);
            self.stats.fallbacks += 1;
        }
        ok
    }

    fn sample_words(
        &mut self,
        model: &Model,
        text: &[u8],
        cuts: &[u32],
        w: &Weights,
        rng: &mut Stream,
        out: &mut Vec<i32>,
    ) -> bool {
        let merge = model.merges_unk() && !model.byte_fallback();
        let unk = model.unk_edge();
        let mut win = [0u16; 64];
        let mut buf = [0i32; 80];
        let mut prev_unk = false;
        let mut found = [Entry::default(); GROUP];
        let mut a = 0;
        for group in cuts.chunks(GROUP) {
            // All lookups of a group first: independent chains of loads (index, entry, key)
            // the core overlaps, instead of one per word between the draws' mispredicted
            // loop exits. A clear of the cache (full) invalidates the group's earlier
            // entries: look them up again (a group always fits in an empty cache).
            loop {
                let generation = self.generation;
                let mut x = a;
                for (f, &b) in found.iter_mut().zip(group) {
                    *f = self.find_or_insert(model, &text[x..b as usize], w);
                    // Ask for the word's draw data now: it is read a group later.
                    let (o, n) = (f.edges_off as usize, f.edges_len as usize);
                    prefetch(&self.packed, o);
                    prefetch(&self.packed, o + n.saturating_sub(1));
                    prefetch(&self.ids, o);
                    prefetch(&self.ids, o + n.saturating_sub(1));
                    x = b as usize;
                }
                if generation == self.generation {
                    break;
                }
            }
            if found[..group.len()].iter().any(|e| !e.ok) {
                return false;
            }
            for (e, &b) in found.iter().zip(group) {
                let b = b as usize;
                let word = &text[a..b];
                let len = word.len();
                let range = e.edges_off as usize..e.edges_off as usize + e.edges_len as usize;
                let (packed, ids) = (&self.packed[range.clone()], &self.ids[range.clone()]);
                draw(packed, &self.exact[range], &mut win, rng);
                if e.plain {
                    emit_plain(packed, ids, &win, len, &mut buf, out);
                    prev_unk = false;
                    a = b;
                    continue;
                }
                // Emit the word's path (walking back from its end, then reversed), merging UNK
                // tokens as `viterbi::emit_from_back` does.
                let first = out.len();
                let mut t = len;
                let mut next_unk = false;
                let mut first_unk = false;
                let last_unk = merge && Some(ids[win[len & 63] as usize]) == unk;
                while t > 0 {
                    let k = win[t & 63] as usize;
                    let (s, id) = ((packed[k] >> 6) as usize & 63, ids[k]);
                    next_unk = push_token_back(model, id, unk, merge, &word[s..t], next_unk, out);
                    if s == 0 {
                        first_unk = next_unk && merge;
                    }
                    t = s;
                }
                out[first..].reverse();
                if prev_unk && first_unk {
                    // The previous word ended with an UNK token: SentencePiece merges them.
                    out.remove(first);
                }
                prev_unk = last_unk;
                a = b;
            }
        }
        true
    }

    /// The word's cache entry, its sums refreshed for `w` if they were for another α;
    /// inserted on a miss.
    #[inline(always)]
    fn find_or_insert(&mut self, model: &Model, word: &[u8], w: &Weights) -> Entry {
        match self.lookup(word) {
            Some(i) => {
                self.stats.hits += 1;
                let e = self.entries[i];
                if e.alpha != w.alpha.to_bits() {
                    self.stats.refreshed += 1;
                    let (o, n) = (e.edges_off as usize, e.edges_len as usize);
                    let (packed, ids) = (&self.packed[o..o + n], &self.ids[o..o + n]);
                    let edge = |k: usize| {
                        let p = packed[k] as usize;
                        (p >> 6 & 63, p & 63, ids[k])
                    };
                    let mut takes = std::mem::take(&mut self.takes);
                    takes.clear();
                    takes.resize(n, 0);
                    sums(n, edge, |k, take| takes[k] = take, &w.w, word.len());
                    for (k, &take) in takes.iter().enumerate() {
                        let p = self.packed[o + k] as usize;
                        self.packed[o + k] = pack(take, p >> 6 & 63, p & 63);
                        self.exact[o + k] = take;
                    }
                    self.takes = takes;
                    self.entries[i].alpha = w.alpha.to_bits();
                }
                e
            }
            None => {
                self.stats.misses += 1;
                self.insert(model, word, w)
            }
        }
    }

    fn lookup(&self, word: &[u8]) -> Option<usize> {
        let hi = (hash(word) >> 32) as u32;
        let (entries, keys) = (&self.entries, &self.keys);
        self.index
            .find(hi, |x| {
                let e = &entries[x as usize];
                e.hash == hi && same(&keys[e.key_off as usize..][..e.key_len as usize], word)
            })
            .map(|x| x as usize)
    }

    /// Lists the word's edges in pass order, computes their sums for `w`, and caches those
    /// from reachable starts.
    fn insert(&mut self, model: &Model, word: &[u8], w: &Weights) -> Entry {
        if self.entries.len() >= MAX_ENTRIES || self.packed.len() > MAX_EDGES {
            self.clear();
        }
        let mut all = std::mem::take(&mut self.all);
        all.clear();
        let mut s = 0;
        while s < word.len() {
            model.edges_at(word, s, |end, id| {
                all.push(WordEdge {
                    take: 0,
                    id,
                    start: s as u8,
                    end: end as u8,
                })
            });
            s += super::model::utf8_len(word[s]).min(word.len() - s);
        }
        let ok = {
            let copy = |k: usize| (all[k].start as usize, all[k].end as usize, all[k].id);
            let mut takes = std::mem::take(&mut self.takes);
            takes.clear();
            takes.resize(all.len(), 0);
            let ok = sums(all.len(), copy, |k, take| takes[k] = take, &w.w, word.len());
            for (x, &take) in all.iter_mut().zip(&takes) {
                x.take = take;
            }
            self.takes = takes;
            ok
        };
        let h = hash(word);
        let e = Entry {
            alpha: w.alpha.to_bits(),
            hash: (h >> 32) as u32,
            key_off: self.keys.len() as u32,
            key_len: word.len() as u8,
            edges_off: self.packed.len() as u32,
            // At most `MAX_WORD` starts of at most `MAX_WORD` edges each.
            edges_len: all.iter().filter(|x| x.take != UNREACHED).count() as u16,
            ok,
            plain: all
                .iter()
                .all(|x| x.take == UNREACHED || Some(x.id) != model.unk_edge()),
        };
        self.keys.extend_from_slice(word);
        for x in all.iter().filter(|x| x.take != UNREACHED) {
            self.packed
                .push(pack(x.take, x.start as usize, x.end as usize));
            self.ids.push(x.id);
            self.exact.push(x.take);
        }
        self.all = all;
        let entries = &self.entries;
        self.index
            .insert(e.hash, entries.len() as u32, entries.len(), |y| {
                entries[y as usize].hash
            });
        self.entries.push(e);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lattice::model::tests::{arb_model, spm_like};
    use crate::lattice::sample::perfect;
    use crate::lattice::viterbi::{emit_from_back, Workspace};
    use proptest::prelude::*;

    /// The full pass's ids and the stream's next word after it.
    fn full_pass(m: &Model, prepared: &[u8], alpha: f64, seed: u64) -> (Vec<i32>, u64) {
        let w = m.weights(alpha);
        let mut ws = Workspace::new();
        let mut rng = Stream::new(seed, 3);
        ws.ids_only = true;
        perfect(m, prepared, &w, &mut rng, &mut ws).unwrap();
        let mut out = vec![];
        emit_from_back(m, prepared, &ws, &mut out).unwrap();
        (out, rng.next_u64())
    }

    /// The word-wise sampler's result (None: it declined), twice over one cache (cold, warm).
    fn word_wise(
        c: &mut WordLattices,
        m: &Model,
        prepared: &[u8],
        alpha: f64,
        seed: u64,
    ) -> Option<(Vec<i32>, u64)> {
        let w = m.weights(alpha);
        let mut rng = Stream::new(seed, 3);
        let mut out = vec![7];
        match c.sample(m, prepared, &w, &mut rng, &mut out) {
            true => Some((out[1..].to_vec(), rng.next_u64())),
            false => {
                // Declined: nothing written, nothing drawn.
                assert_eq!(out, vec![7]);
                assert_eq!(rng.next_u64(), Stream::new(seed, 3).next_u64());
                None
            }
        }
    }

    fn check(m: &Model, text: &[u8], alpha: f64, seed: u64) -> bool {
        let Ok(prepared) = m.prepare(text) else {
            return false;
        };
        let full = perfect_ok(m, &prepared, alpha);
        let mut c = WordLattices::default();
        let mut used = false;
        // Cold, warm, warm after the sums were refreshed for another α.
        for round in 0..3 {
            if round == 2 {
                word_wise(&mut c, m, &prepared, alpha + 0.5, seed);
            }
            if let Some(got) = word_wise(&mut c, m, &prepared, alpha, seed) {
                assert!(full, "word-wise succeeded where the full pass fails");
                assert_eq!(
                    got,
                    full_pass(m, &prepared, alpha, seed),
                    "{text:?} α={alpha}"
                );
                used = true;
            }
        }
        used
    }

    fn perfect_ok(m: &Model, prepared: &[u8], alpha: f64) -> bool {
        let w = m.weights(alpha);
        let mut ws = Workspace::new();
        perfect(m, prepared, &w, &mut Stream::new(0, 0), &mut ws).is_ok()
    }

    /// Word-cutting vocabularies ("▁" only as a first character) with UNK and ties.
    fn arb_cut_model() -> impl Strategy<Value = Model> {
        let chars = ["a", "b", "é", "中"];
        let piece = (
            any::<bool>(),
            proptest::collection::vec(0..chars.len(), 0..4),
        )
            .prop_map(move |(mark, v)| {
                let body: String = v.iter().map(|&i| chars[i]).collect();
                if mark || body.is_empty() {
                    format!("▁{body}")
                } else {
                    body
                }
            });
        (
            proptest::collection::btree_map(
                piece,
                prop_oneof![-12.0f32..-0.5, Just(-2.0f32)],
                1..20,
            ),
            any::<bool>(),
        )
            .prop_map(|(pieces, unk)| {
                let v: Vec<(String, f32)> = pieces.into_iter().collect();
                let refs: Vec<(&str, f32)> = v.iter().map(|(p, s)| (p.as_str(), *s)).collect();
                let m = spm_like(&refs);
                if unk {
                    m
                } else {
                    // Without an UNK piece some words cannot be segmented: the full pass
                    // must be taken (and fail the same way).
                    let mut spec = m.spec().clone();
                    spec.pieces
                        .retain(|p| p.kind != crate::lattice::vocab::PieceKind::Unknown);
                    spec.unk_id = None;
                    Model::from_spec(spec).unwrap_or(m)
                }
            })
    }

    fn arb_words() -> impl Strategy<Value = String> {
        let parts = vec!["a", "b", "é", "中", " ", "x", "ab", "  "];
        proptest::collection::vec(proptest::sample::select(parts), 0..30).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn word_wise_equals_the_full_pass(
            m in arb_cut_model(), text in arb_words(), seed in any::<u64>(),
            alpha in prop_oneof![Just(0.0), Just(0.1), Just(1.0), Just(7.0)]
        ) {
            check(&m, text.as_bytes(), alpha, seed);
        }

        #[test]
        fn word_wise_equals_the_full_pass_on_any_model(
            m in arb_model(4), text in arb_words(), seed in any::<u64>()
        ) {
            check(&m, text.as_bytes(), 0.5, seed);
        }
    }

    /// The integer threshold is exactly the float test, at the threshold, one above it and
    /// at random points, for random sums (and the first edge's `c == z`).
    #[test]
    fn threshold_is_the_float_test() {
        let mut r = Stream::new(5, 5);
        let test = |k: u64, c: f64, z: f64| (k as f64 / (1u64 << 53) as f64) * z <= c;
        for i in 0..20000 {
            let z = (r.next_f64() * 600.0 - 300.0).exp2();
            let c = if i % 10 == 0 {
                z
            } else {
                z * r.next_f64().max(1e-300)
            };
            let k = threshold(c, z);
            assert!(k < 1 << 53 && test(k, c, z), "{c} {z} {k}");
            assert!(k == (1 << 53) - 1 || !test(k + 1, c, z), "{c} {z} {k}");
            let j = r.next_u64() >> 11;
            assert_eq!(j <= k, test(j, c, z));
        }
        assert_eq!(threshold(1.0, 1.0), (1 << 53) - 1);
    }

    /// The packed decision is the exact one, ties of the top bits included.
    #[test]
    fn packed_decision_is_exact() {
        let mut r = Stream::new(6, 6);
        for i in 0..100000 {
            let take = if i % 7 == 0 {
                (1 << 53) - 1
            } else {
                r.next_u64() >> 11
            };
            // Half the draws share the threshold's top bits.
            let bits = if i % 2 == 0 {
                (take & !((1 << PACK_SHIFT) - 1)) | (r.next_u64() & ((1 << PACK_SHIFT) - 1))
            } else {
                r.next_u64() >> 11
            };
            let x = pack(take, 5, 9);
            assert_eq!(decide(bits, x, || take), bits <= take, "{bits} {take}");
            assert_eq!((x >> 6 & 63, x & 63), (5, 9));
        }
    }

    /// Sums pushed out of range inside long words (the in-word rescaling path), and words at
    /// the length limit.
    #[test]
    fn rescaling_and_long_words_match() {
        let m = spm_like(&[
            ("▁", -1.0),
            ("a", -140.0),
            ("b", -0.5),
            ("ab", -2.0),
            ("▁ab", -3.0),
        ]);
        let mut used = 0;
        for word in [
            "a".repeat(47),
            "a".repeat(48),
            "a".repeat(60),
            "ab".repeat(20),
        ] {
            let text = format!("{word} b {word} ab");
            for seed in 0..20 {
                used += check(&m, text.as_bytes(), 1.0, seed) as usize;
            }
        }
        assert!(used > 0);
    }

    #[test]
    fn used_on_a_word_cutting_model() {
        let m = spm_like(&[
            ("▁", -1.0),
            ("a", -2.0),
            ("b", -2.5),
            ("ab", -2.2),
            ("▁ab", -2.0),
        ]);
        assert!(check(&m, b"ab ba  abab", 0.3, 1));
        let mut c = WordLattices::default();
        let p = m.prepare(b"ab ab ab").unwrap();
        word_wise(&mut c, &m, &p, 0.3, 1).unwrap();
        assert_eq!((c.stats.misses, c.stats.hits, c.len()), (1, 2, 1));
        word_wise(&mut c, &m, &p, 0.4, 1).unwrap();
        assert_eq!((c.stats.hits, c.stats.refreshed), (5, 1));
    }

    /// Every line of both corpora with both shared models, two seeds, cold then warm cache.
    #[test]
    fn shared_corpora_match_the_full_pass() {
        for (model, corpus) in [
            ("spm_en_botchan_1k.model", "botchan.txt"),
            ("spm_zh_fortunes_8k.model", "zh_fortunes.txt"),
        ] {
            let Some((m, text)) = crate::lattice::model::tests::shared_pair(model, corpus) else {
                continue;
            };
            let mut c = WordLattices::default();
            let mut used = 0;
            for (i, line) in text.lines().enumerate() {
                let p = m.prepare(line.as_bytes()).unwrap();
                for alpha in [0.1, 1.0] {
                    if let Some(got) = word_wise(&mut c, &m, &p, alpha, i as u64) {
                        assert_eq!(got, full_pass(&m, &p, alpha, i as u64), "{model}: {line:?}");
                        used += 1;
                    }
                }
            }
            eprintln!(
                "{model} on {corpus}: {used} draws word by word, {:?}",
                c.stats
            );
            if model.starts_with("spm_en") {
                assert!(used > 8000, "{used}");
            }
        }
    }
}
