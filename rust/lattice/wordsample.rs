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
//! comparisons `u·Z <= c`. The uniforms are counter-based ([`Draws`]): the text's `k`-th
//! edge takes draw `k`, computable on its own, so a word's draws need only the count of
//! edges before it.
//!
//! # Why a word's sums can be cached
//! The sums do not depend on the draws: for a given α, edge `k` of a word always adds the
//! same `c_k` and leaves the same running total `Z_k` at its end; only the choices depend on
//! the uniforms. So the cache keeps, per word, its edges from reachable starts with the test
//! `u·Z_k <= c_k` computed once per α by the full pass's arithmetic and turned into an
//! integer threshold on the draw's 53 bits ([`threshold`]). Drawing a word is then one
//! vector pass over its edges, stored by end (eight counters mixed and compared per step: a
//! bitmap of the passing edges), and the walk back from the word's end, each token one bit
//! scan: an end's holder is its last passing edge, and the first edge into an end always
//! passes (`Z = c` there), so the highest passing edge ending at or before `t` is `t`'s
//! holder ([`holder`]).
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
//! - Where the rest went (switching parts off): the lookups-only path costs what Viterbi
//!   costs; the draws ~1.0 ms (~20 ns per word; 12 ns when hot in L1: one xoshiro step per
//!   edge, a serial chain of ~4 cycles, and a `win[end]` read-modify-write per edge chained
//!   through store forwarding); emission and the longer output ~0.9 ms.
//! - Counter-based draws (SplitMix64 per edge index, keyed by one word of the item's stream;
//!   this changed the seed → sample mapping once more). Min of 5 × 40 interleaved calls, old
//!   and new builds in alternating processes:
//!   - the same scalar loop with counter draws: 4.74 vs 5.04 ms (one noisy run);
//!   - edges stored by end, pass bitmap by AVX-512, holder = highest passing bit below the
//!     end's range limit, found per token on the walk back: *slower* (4.63 vs 4.49 ms): three
//!     dependent loads per token (range limit, bitmap, edge) and a mispredicted exit per word;
//!   - a running select by end into `win` (no loads in its chain), walk back through `win`:
//!     4.58 vs 4.72 ms;
//!   - thresholds in pass order (counters advance by 8γ per step: one 64-bit multiply fewer
//!     per eight edges), ids shifted into a register and stored once (the buffer copy
//!     reloaded 64 bytes just written by 4-byte stores: a failed store-to-load forward per
//!     word, 6 % of the profile), unmasked loads over zero padding: **4.42 vs 4.60 ms, perfect
//!     ÷ Viterbi 1.64 vs 1.72** (Viterbi 2.70 ms). Profile now: lookups 27 %, draws + walk
//!     back + emission 41 %, normaliser 11 %.
//!   - Branch-free fast paths: two fixed vector steps for words of at most 16 edges (the
//!     trip count, one or two, mispredicted), four branch-free steps of the walk back before
//!     its loop: **4.12-4.17 vs 4.38 ms, perfect ÷ Viterbi 1.58-1.63** (Viterbi 2.57 ms).
//!   - Tried and dropped: a fixed 16-step scalar `holders` for such words (4.29 vs 4.12 ms);
//!     the same by AVX-512 (prefix maximum of passing lanes, `vpermt2q`, two masked
//!     scatters into `win`): 4.98 vs 4.21 ms, scatters are slow here; software-pipelined
//!     probes (all hashes and index lines of a group, then entries, then keys): 4.81 vs
//!     4.48 ms.
//!   - The working set is not what limits it: the first 540 lines repeated 8 times (2.2k
//!     distinct words instead of 9.2k, same 50k words) take 4.24 vs 4.36 ms. What is left is
//!     per-word work: ~85 ns a word against Viterbi's ~46 (lookups ~27 % of the batch).
//!   - `lookup` forced inline (the compiler had kept it out of line inside the AVX-512 copy):
//!     3.99-4.13 vs 4.20-4.26 ms, perfect ÷ Viterbi 1.55-1.62.
//!   - Bits computed by end (each lane's counter from its pass index: one more multiply per
//!     eight edges), each token's holder by one bit scan below its start's limit (kept in the
//!     edge's `meta` word): no running select into a per-end table, no reload of it on the
//!     walk back. On a Zen 4 guest (where the old build read 1.63-1.75× Viterbi): 4.39-4.71
//!     vs 4.57-4.79 ms, min of 6 × 60 calls alternating.
//!   - The lookups were then the largest cost, and the profile put their stalls on loads
//!     that should have overlapped across the group's words: the byte-wise hash and key
//!     comparison branched on the word's length classes, and each mispredicted branch
//!     flushed the later lookups the core had started. A branch-free hash of the word's
//!     zero-padded lanes (one masked load, one multiply) and a vector comparison (the lanes
//!     against the key's masked load): **3.68-3.95 vs 4.43-4.69 ms** (shared with the
//!     Viterbi cache, which went 2.72 -> 2.40 ms).
//!   - Then (A/B of consecutive builds, min of 12 × 40 calls): a word's first 16 bytes inline
//!     in its (now 32-byte) entry, so short words need no load from the key store (~2 %);
//!     the label in the `meta` word's low half and the limit in its top bits (one shift on
//!     the walk's chain), dead walk steps without a select (~3 %); 16-bit index slots (~2-4 %,
//!     both caches); lookups handing the draws an 8-byte lattice reference instead of
//!     copying the entry into the group's buffer (3.30 vs 3.39 ms).
//!   - This session's start -> end on the same Zen 4 guest (alternating processes, min of
//!     12 × 40): Viterbi 2.69 -> 2.33 ms, perfect 4.50 -> 3.25 ms, **perfect ÷ Viterbi 1.67
//!     -> 1.40**. Per-word profile now: lookups ~15 %, pass bits ~13 %, walk back and
//!     emission ~14 % of the batch; word ends (shared with Viterbi) ~12 %, normaliser ~11 %.
//!   - Not tried yet: 4-byte thresholds (top bits, exact ones read on ties) and 4-byte edges
//!     (ids apart), and a 24-byte entry (α as a small generation number).
//! - zh_fortunes: no gain (perfect 27.8 ms with the caches vs 26.0 without; capping the
//!   word length at 16 or 24 bytes changed nothing); perfect ÷ Viterbi 1.2-1.4 (the counter
//!   draws: 25.1 vs 24.4 ms min, within the noise).

use super::model::{Model, Weights};
use super::viterbi::push_token_back;
use super::wordcache::{word_ends, word_hash, WordIndex, MAX_WORD};
use crate::rng::{Draws, Stream};

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
const _: () = assert!(MAX_ENTRIES <= super::wordcache::MAX_INDEXED);
/// Cached edges before the cache is cleared (16 bytes each).
const MAX_EDGES: usize = 1 << 21;

/// One lattice edge of a word from a reachable start: byte offsets in the word, the piece id
/// (or UNK label), and for the entry's α the reservoir test as an integer threshold: the
/// full pass replaces the end's holder when `u·Z <= c` with `u = k·2^-53` (`k` the stream's
/// 53 bits); the rounded product is monotone in `k`, so that holds exactly when
/// `k <= take` ([`threshold`]).
#[derive(Clone, Copy, Debug, Default)]
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

/// A cached word, in 32 bytes: its first 16 bytes inline, so that the vector lookup of a word
/// of at most 16 bytes (~95 % of botchan's) compares it without a third dependent load from
/// the key store (that load was the lookups' largest stall).
#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    /// The word's first 16 bytes, zero past its end.
    head: [u8; 16],
    /// High half of the word's hash.
    hash: u32,
    key_off: u32,
    lat: Lattice,
}

/// Where a cached word's lattice is and what it holds: what a lookup hands the draws (8
/// bytes a word in the group's buffer, not the 32-byte entry).
#[derive(Clone, Copy, Debug, Default)]
struct Lattice {
    edges_off: u32,
    /// `edges_len | key_len << 10 | ok << 16 | plain << 17 | α generation << 18`; `ok`: the
    /// word can be drawn from the cache (its end is reachable, else the line has no
    /// segmentation through it, and it fits the storage); `plain`: no cached edge is an UNK
    /// edge (its ids are emitted as they are); the α generation: the cache's α count when
    /// the thresholds were computed.
    packed: u32,
}

/// α generations before the cache is cleared (the entry's 14 bits).
const ALPHA_GENS: u32 = 1 << 14;
const _: () = assert!(MAX_WORD < 64 && MAX_WORD_EDGES <= 1 << 10);

impl Entry {
    fn new(word: &[u8], hash: u32, key_off: u32, edges_off: u32, ok: bool, plain: bool) -> Self {
        let mut head = [0u8; 16];
        let key_len = word.len();
        head[..key_len.min(16)].copy_from_slice(&word[..key_len.min(16)]);
        Entry {
            head,
            hash,
            key_off,
            lat: Lattice {
                edges_off,
                packed: (key_len as u32) << 10 | (ok as u32) << 16 | (plain as u32) << 17,
            },
        }
    }
}

impl Lattice {
    #[inline(always)]
    fn edges_len(self) -> usize {
        (self.packed & 0x3ff) as usize
    }

    #[inline(always)]
    fn key_len(self) -> usize {
        (self.packed >> 10 & 63) as usize
    }

    #[inline(always)]
    fn ok(self) -> bool {
        self.packed >> 16 & 1 != 0
    }

    #[inline(always)]
    fn plain(self) -> bool {
        self.packed >> 17 & 1 != 0
    }

    #[inline(always)]
    fn alpha_gen(self) -> u32 {
        self.packed >> 18
    }

    fn with_alpha_gen(self, g: u32) -> Self {
        Lattice {
            packed: self.packed & ((1 << 18) - 1) | g << 18,
            ..self
        }
    }

    fn with_edges_len(self, n: usize) -> Self {
        Lattice {
            packed: self.packed & !0x3ff | n as u32,
            ..self
        }
    }
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
    /// Per cached edge, a word's from `Entry::edges_off`: its reservoir threshold, in pass
    /// order (`takes`), and the edge ([`META_INDEX`]), by end and then pass order (`meta`).
    draws: Vec<u64>,
    meta: Vec<u64>,
    pub stats: Stats,
    /// Incremented by every clear.
    generation: u64,
    /// The α (bits) of the last draw, and its generation (entries whose thresholds were
    /// computed for another α carry another).
    alpha: Option<u64>,
    alpha_gen: u32,
    cuts: Vec<u32>,
    /// Tests: take the portable pass-bit loop even where AVX-512 is present.
    scalar: bool,
    /// Scratch: every edge of a word being inserted, its reachable ones in pass order.
    all: Vec<WordEdge>,
    takes: Vec<u64>,
    reach: Vec<WordEdge>,
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

/// Most edges (from reachable starts) a cached word may have: a pass index's and a limit's
/// 10 bits in a `meta` word.
const MAX_WORD_EDGES: usize = 1 << 10;
/// Words of a word's pass bitmap (one bit per edge, by end).
const BITMAP_WORDS: usize = MAX_WORD_EDGES / 64;
/// A cached edge's `meta` word: `limit << META_LIM | pass index << META_INDEX | end << META_END
/// | start << META_START | label`. Edges are stored by end (then pass order); the pass index is
/// the edge's place among the word's edges in pass order (which draw it takes), and the limit
/// is the number of the word's edges ending at or before its start (where the walk back looks
/// for the holder of that start). The label is the low half (a token's id is the word as it
/// is) and the limit the top bits (one shift): both sit on the walk back's chain.
const META_START: u32 = 32;
const META_END: u32 = 38;
const META_INDEX: u32 = 44;
const META_LIM: u32 = 54;
const _: () = assert!(MAX_WORD_EDGES == 1 << (64 - META_LIM));
/// Zeros kept after the last word's thresholds and edges, so that vector loads (two of eight
/// lanes at least) never need a mask.
const PAD: usize = 15;

/// The pass index of a `meta` word.
#[inline(always)]
fn pass_index(x: u64) -> usize {
    (x >> META_INDEX) as usize & (MAX_WORD_EDGES - 1)
}

/// The limit of a `meta` word: its start's holder is the last passing edge below it.
#[inline(always)]
fn limit(x: u64) -> usize {
    (x >> META_LIM) as usize
}

#[inline(always)]
fn start_of(x: u64) -> usize {
    (x >> META_START) as usize & 63
}

/// The label (piece id or UNK label) of a `meta` word.
#[inline(always)]
fn label(x: u64) -> u32 {
    x as u32
}

#[inline(always)]
fn end_of(x: u64) -> usize {
    (x >> META_END) as usize & 63
}

/// Sets bit `j` of `bits` (whole words: `bits[..ceil(n/64)]` is overwritten) when edge `j`
/// (by end) passes: it takes the text's draw `base + pass_index(meta[j])`
/// (`Draws::bits_at`), and passes when those 53 bits are at most its threshold `takes[j]` —
/// the full pass's `u·Z <= c` ([`threshold`]). Both slices hold `PAD` entries past `n`.
/// `VECTOR`: only inside `avx512` code.
#[inline(always)]
fn pass_bits<const VECTOR: bool>(
    takes: &[u64],
    meta: &[u64],
    n: usize,
    base: Draws,
    bits: &mut [u64; BITMAP_WORDS],
) {
    assert!(takes.len() >= n + PAD && meta.len() >= n + PAD && n <= MAX_WORD_EDGES);
    #[cfg(target_arch = "x86_64")]
    if VECTOR {
        // SAFETY: `VECTOR` code runs only where the CPU has AVX-512F and AVX-512DQ
        // (`WordLattices::sample`); both slices hold `PAD` entries past `n` (asserted).
        unsafe { avx512::pass_bits(takes, meta, n, base.raw(), bits) };
        return;
    }
    for (c, (t, m)) in takes[..n].chunks(64).zip(meta[..n].chunks(64)).enumerate() {
        let mut w = 0u64;
        for (j, (&take, &x)) in t.iter().zip(m).enumerate() {
            let pass = base.bits_at(pass_index(x) as u64) <= take;
            w |= (pass as u64) << j;
        }
        bits[c] = w;
    }
}

/// The holder of a position: the last passing edge (by end) below `lim`, the number of edges
/// ending at or before it (`lim >= 1`). By end, the holder of end `t` is its last passing
/// edge, and every end's first edge passes (`Z = c` there), so the highest passing edge
/// ending at or before `t` is `t`'s own holder: one bit scan, no per-end table.
#[inline(always)]
fn holder(bits: &[u64; BITMAP_WORDS], lim: usize) -> usize {
    let mut w = (lim - 1) / 64;
    let below = lim - 64 * w;
    let mut m = if below == 64 {
        bits[w]
    } else {
        bits[w] & ((1u64 << below) - 1)
    };
    while m == 0 {
        // Unreachable for a reachable end (its first edge passes); kept in bounds anyway.
        if w == 0 {
            return 0;
        }
        w -= 1;
        m = bits[w];
    }
    64 * w + 63 - m.leading_zeros() as usize
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{limit, BITMAP_WORDS, MAX_WORD_EDGES, META_INDEX};
    use crate::rng::{GOLDEN, MIX1, MIX2};
    use std::arch::x86_64::*;

    /// [`super::pass_bits`], eight edges per step: each edge's counter from its pass index
    /// (one 64-bit multiply), SplitMix64's mixer on eight counters (two more, AVX-512DQ) and
    /// one unsigned compare into a mask. Computing the bits by end (not in pass order) lets
    /// the walk back find each end's holder by a bit scan: no select over the edges into a
    /// per-end table, whose stores the walk then reloaded.
    ///
    /// # Safety
    /// The CPU has AVX-512F and AVX-512DQ.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    pub(super) unsafe fn pass_bits(
        takes: &[u64],
        meta: &[u64],
        n: usize,
        base: u64,
        bits: &mut [u64; BITMAP_WORDS],
    ) {
        let c1 = _mm512_set1_epi64(MIX1 as i64);
        let c2 = _mm512_set1_epi64(MIX2 as i64);
        let g = _mm512_set1_epi64(GOLDEN as i64);
        let first = _mm512_set1_epi64(base.wrapping_add(GOLDEN) as i64);
        let index = _mm512_set1_epi64(MAX_WORD_EDGES as i64 - 1);
        // Edges `j..j + 8` (by end) mixed and tested against their thresholds in the `lanes`
        // kept: draw `k` mixes `base + (k + 1)·γ`.
        let test = |j: usize, lanes: __mmask8| {
            // SAFETY: `j + 8 <= n + PAD <= len` of both slices (the caller's contract): lanes
            // past `n` read the next word's or the padding's entries, which the compare's mask
            // drops.
            let (take, m) = unsafe {
                (
                    _mm512_loadu_epi64(takes.as_ptr().add(j) as *const i64),
                    _mm512_loadu_epi64(meta.as_ptr().add(j) as *const i64),
                )
            };
            let k = _mm512_and_si512(_mm512_srli_epi64::<META_INDEX>(m), index);
            let mut x = _mm512_add_epi64(first, _mm512_mullo_epi64(k, g));
            x = _mm512_mullo_epi64(_mm512_xor_si512(x, _mm512_srli_epi64::<30>(x)), c1);
            x = _mm512_mullo_epi64(_mm512_xor_si512(x, _mm512_srli_epi64::<27>(x)), c2);
            x = _mm512_xor_si512(x, _mm512_srli_epi64::<31>(x));
            _mm512_mask_cmple_epu64_mask(lanes, _mm512_srli_epi64::<11>(x), take)
        };
        if n <= 16 {
            // Most words: two steps always, no loop (its trip count, one or two, was a
            // mispredicted branch per word).
            let lanes = (1u32 << n) - 1;
            let p0 = test(0, lanes as u8);
            let p1 = test(8, (lanes >> 8) as u8);
            bits[0] = p0 as u64 | (p1 as u64) << 8;
            return;
        }
        for (c, word) in bits.iter_mut().enumerate().take(n.div_ceil(64)) {
            let mut w = 0u64;
            let in_chunk = (n - 64 * c).min(64);
            for v in 0..in_chunk.div_ceil(8) {
                let j = 64 * c + 8 * v;
                let lanes: __mmask8 = if n - j >= 8 {
                    0xff
                } else {
                    ((1u32 << (n - j)) - 1) as u8
                };
                w |= (test(j, lanes) as u64) << (8 * v);
            }
            *word = w;
        }
    }

    /// Appends the ids of a word of at most 64 edges without UNK edges, walking back from its
    /// end (whose limit is `n`, all the edges) through the holders found in `bits`, the pass
    /// bitmap by end; false (nothing written) past 16 tokens. The ids are shifted into a
    /// register from the bottom lane, so they end in order, and leave in one store: the
    /// buffer-and-copy of the portable path reloaded 64 bytes just written by 4-byte stores,
    /// a failed store-to-load forward per word (~6 % of a batch).
    ///
    /// # Safety
    /// The CPU has AVX-512F, BMI2 and LZCNT.
    #[inline]
    #[target_feature(enable = "avx512f,bmi2,lzcnt")]
    pub(super) unsafe fn emit_plain(meta: &[u64], bits: u64, n: usize, out: &mut Vec<i32>) -> bool {
        let mut acc = _mm512_setzero_si512();
        let mut count = 0;
        let mut lim = n as u32;
        // One token: its holder is the highest passing edge below `lim` (one bit scan, one
        // load); a step at the word's start (`lim == 0`) keeps everything as it is. There the
        // scan finds bit 0 (the `| 1`, which never moves a highest bit), edge 0 by end, whose
        // start is the word's start (the first end is reached from 0 only): its limit is 0.
        let step = |lim: u32, acc: __m512i, count: usize| {
            let live = lim > 0;
            let j = (63 ^ (_bzhi_u64(bits, lim) | 1).leading_zeros()) as usize;
            let x = meta[j];
            let pushed = _mm512_alignr_epi32::<15>(acc, _mm512_set1_epi32(x as i32));
            (
                limit(x) as u32,
                _mm512_mask_blend_epi32(if live { 0xffff } else { 0 }, acc, pushed),
                count + live as usize,
            )
        };
        // Four steps without a branch (a word's token count, ~3 on average, made the loop's
        // exit a mispredicted branch per word).
        for _ in 0..4 {
            (lim, acc, count) = step(lim, acc, count);
        }
        while lim > 0 {
            if count == 16 {
                return false;
            }
            (lim, acc, count) = step(lim, acc, count);
        }
        out.reserve(16);
        // SAFETY: `out` has room for 16 more entries (reserved); only `count` are kept.
        unsafe {
            let end = out.len();
            _mm512_storeu_si512(out.as_mut_ptr().add(end) as *mut __m512i, acc);
            out.set_len(end + count);
        }
        true
    }
}

impl WordLattices {
    fn clear(&mut self) {
        self.generation += 1;
        self.index.clear();
        self.entries.clear();
        self.keys.clear();
        self.draws.clear();
        self.draws.resize(PAD, 0);
        self.meta.clear();
        self.meta.resize(PAD, 0);
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
        if self.alpha != Some(w.alpha.to_bits()) {
            // A new α: every entry's thresholds are stale (refreshed when next drawn).
            self.alpha = Some(w.alpha.to_bits());
            self.alpha_gen += 1;
            if self.alpha_gen == ALPHA_GENS {
                // Generations would repeat: start afresh.
                self.clear();
                self.alpha_gen = 0;
            }
        }
        let mut cuts = std::mem::take(&mut self.cuts);
        if !word_ends(text, &mut cuts) {
            self.cuts = cuts;
            self.stats.fallbacks += 1;
            return false;
        }
        let saved = rng.clone();
        let start_len = out.len();
        // The full pass keys its draws the same way (`sample::perfect`).
        let mut d = Draws::new(rng);
        let ok = match !self.scalar && vector_draws() {
            // SAFETY: `vector_draws` checked AVX-512F, BW, DQ and VL, BMI2 and LZCNT.
            #[cfg(target_arch = "x86_64")]
            true => unsafe { self.sample_words_avx512(model, text, &cuts, w, &mut d, out) },
            _ => self.sample_words::<false>(model, text, &cuts, w, &mut d, out),
        };
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

    /// [`Self::sample_words`] compiled for AVX-512 (vector draws inlined).
    ///
    /// # Safety
    /// The CPU has AVX-512F, AVX-512BW, AVX-512DQ, AVX-512VL, BMI2 and LZCNT.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,bmi2,lzcnt")]
    unsafe fn sample_words_avx512(
        &mut self,
        model: &Model,
        text: &[u8],
        cuts: &[u32],
        w: &Weights,
        rng: &mut Draws,
        out: &mut Vec<i32>,
    ) -> bool {
        self.sample_words::<true>(model, text, cuts, w, rng, out)
    }

    #[inline(always)]
    fn sample_words<const VECTOR: bool>(
        &mut self,
        model: &Model,
        text: &[u8],
        cuts: &[u32],
        w: &Weights,
        rng: &mut Draws,
        out: &mut Vec<i32>,
    ) -> bool {
        let merge = model.merges_unk() && !model.byte_fallback();
        let unk = model.unk_edge();
        let mut bits = [0u64; BITMAP_WORDS];
        let mut buf = [0i32; 80];
        let mut prev_unk = false;
        let mut found = [Lattice::default(); GROUP];
        let mut a = 0;
        for group in cuts.chunks(GROUP) {
            // All lookups of a group first: independent chains of loads (index, entry, key)
            // the core overlaps, instead of one per word between the draws. A clear of the
            // cache (full) invalidates the group's earlier entries: look them up again (a
            // group always fits in an empty cache).
            loop {
                let generation = self.generation;
                let misses = self.stats.misses;
                let mut x = a;
                for (f, &b) in found.iter_mut().zip(group) {
                    *f = self.find_or_insert::<VECTOR>(model, &text[x..b as usize], w);
                    // Ask for the word's draw data now: it is read a group later.
                    let (o, n) = (f.edges_off as usize, f.edges_len());
                    prefetch(&self.draws, o);
                    prefetch(&self.draws, o + n.saturating_sub(1));
                    prefetch(&self.meta, o);
                    prefetch(&self.meta, o + n.saturating_sub(1));
                    x = b as usize;
                }
                // Counted here, not per word (a read-modify-write in memory per word).
                self.stats.hits += (group.len() as u64) - (self.stats.misses - misses);
                if generation == self.generation {
                    break;
                }
            }
            if found[..group.len()].iter().any(|e| !e.ok()) {
                return false;
            }
            for (e, &b) in found.iter().zip(group) {
                let b = b as usize;
                let word = &text[a..b];
                let len = word.len();
                let (o, n) = (e.edges_off as usize, e.edges_len());
                let (takes, meta) = (&self.draws[o..o + n + PAD], &self.meta[o..o + n + PAD]);
                pass_bits::<VECTOR>(takes, meta, n, *rng, &mut bits);
                rng.skip(n as u64);
                #[cfg(target_arch = "x86_64")]
                if VECTOR && e.plain() && n <= 64 {
                    // SAFETY: `VECTOR` code runs only where the CPU has AVX-512F, BMI2 and
                    // LZCNT (`vector_draws`).
                    if unsafe { avx512::emit_plain(meta, bits[0], n, out) } {
                        prev_unk = false;
                        a = b;
                        continue;
                    }
                }
                if e.plain() {
                    // Ids walking back from the end into a buffer, then one 16-entry copy
                    // (the general loop below cost about as much as the draws).
                    let mut m = 64;
                    let mut lim = n;
                    while lim > 0 {
                        let x = meta[holder(&bits, lim)];
                        m -= 1;
                        buf[m] = label(x) as i32;
                        lim = limit(x);
                    }
                    append(&buf, m, out);
                    prev_unk = false;
                    a = b;
                    continue;
                }
                // Emit the word's path (walking back from its end, then reversed), merging UNK
                // tokens as `viterbi::emit_from_back` does.
                let first = out.len();
                let mut t = len;
                let mut lim = n;
                let mut next_unk = false;
                let mut first_unk = false;
                let mut last_unk = None;
                while lim > 0 {
                    let x = meta[holder(&bits, lim)];
                    let (s, id) = (start_of(x), label(x));
                    last_unk.get_or_insert(merge && Some(id) == unk);
                    next_unk = push_token_back(model, id, unk, merge, &word[s..t], next_unk, out);
                    if s == 0 {
                        first_unk = next_unk && merge;
                    }
                    t = s;
                    lim = limit(x);
                }
                out[first..].reverse();
                if prev_unk && first_unk {
                    // The previous word ended with an UNK token: SentencePiece merges them.
                    out.remove(first);
                }
                prev_unk = last_unk.unwrap_or(false);
                a = b;
            }
        }
        true
    }

    /// The word's cache entry, its thresholds refreshed for `w` if they were for another α;
    /// inserted on a miss.
    #[inline(always)]
    fn find_or_insert<const VECTOR: bool>(
        &mut self,
        model: &Model,
        word: &[u8],
        w: &Weights,
    ) -> Lattice {
        match self.lookup::<VECTOR>(word) {
            Some(i) => {
                let e = self.entries[i].lat;
                if e.ok() && e.alpha_gen() != self.alpha_gen {
                    self.stats.refreshed += 1;
                    self.refresh(e, word.len(), w);
                    self.entries[i].lat = e.with_alpha_gen(self.alpha_gen);
                }
                e
            }
            None => {
                self.stats.misses += 1;
                self.insert(model, word, w)
            }
        }
    }

    /// Recomputes a cached word's thresholds for `w`: its edges back in pass order (the draw
    /// index), the sums over them, the thresholds written back in place.
    #[cold]
    fn refresh(&mut self, e: Lattice, len: usize, w: &Weights) {
        let (o, n) = (e.edges_off as usize, e.edges_len());
        let mut reach = std::mem::take(&mut self.reach);
        reach.clear();
        reach.resize(n, WordEdge::default());
        for &x in &self.meta[o..o + n] {
            reach[pass_index(x)] = WordEdge {
                take: 0,
                id: label(x),
                start: start_of(x) as u8,
                end: end_of(x) as u8,
            };
        }
        let mut takes = std::mem::take(&mut self.takes);
        takes.clear();
        takes.resize(n, 0);
        let edge = |k: usize| (reach[k].start as usize, reach[k].end as usize, reach[k].id);
        sums(n, edge, |k, take| takes[k] = take, &w.w, len);
        // Back by end, as the edges are stored.
        for (d, &x) in self.draws[o..o + n].iter_mut().zip(&self.meta[o..o + n]) {
            *d = takes[pass_index(x)];
        }
        self.takes = takes;
        self.reach = reach;
    }

    // Inlined into the group loop: out of line (the compiler's choice inside the AVX-512
    // copy) the call's argument and result traffic sat on every lookup's path.
    #[inline(always)]
    fn lookup<const VECTOR: bool>(&self, word: &[u8]) -> Option<usize> {
        let (entries, keys) = (&self.entries, &self.keys);
        #[cfg(target_arch = "x86_64")]
        if VECTOR {
            use super::wordcache::lanes;
            // SAFETY: `VECTOR` code runs only where the CPU has AVX-512F, BW, DQ and VL, and
            // BMI2 (`vector_lookups`).
            let (w, h) = unsafe { lanes::word_lanes(word) };
            let (hi, n) = ((h >> 32) as u32, word.len());
            return self
                .index
                .find(hi, |x| {
                    let e = &entries[x as usize];
                    // SAFETY: as above. Words past 16 bytes compare the rest from the store.
                    e.hash == hi
                        && e.lat.key_len() == n
                        && unsafe { lanes::same_head(w, &e.head) }
                        && (n <= 16
                            || unsafe { lanes::same_word(w, &keys[e.key_off as usize..][..n]) })
                })
                .map(|x| x as usize);
        }
        self.index
            .find_key::<VECTOR>(word, |x| {
                let e = &entries[x as usize];
                (e.hash, &keys[e.key_off as usize..][..e.lat.key_len()])
            })
            .map(|x| x as usize)
    }

    /// Lists the word's edges in pass order, computes their thresholds for `w`, and caches
    /// those from reachable starts sorted by end.
    fn insert(&mut self, model: &Model, word: &[u8], w: &Weights) -> Lattice {
        if self.entries.len() >= MAX_ENTRIES || self.draws.len() > MAX_EDGES {
            self.clear();
        }
        let len = word.len();
        let mut all = std::mem::take(&mut self.all);
        all.clear();
        let mut s = 0;
        while s < len {
            model.edges_at(word, s, |end, id| {
                all.push(WordEdge {
                    take: 0,
                    id,
                    start: s as u8,
                    end: end as u8,
                })
            });
            s += super::model::utf8_len(word[s]).min(len - s);
        }
        let mut takes = std::mem::take(&mut self.takes);
        takes.clear();
        takes.resize(all.len(), 0);
        let copy = |k: usize| (all[k].start as usize, all[k].end as usize, all[k].id);
        let reached = sums(all.len(), copy, |k, take| takes[k] = take, &w.w, len);
        // The draws' order: edges from reachable starts, in pass order.
        let mut reach = std::mem::take(&mut self.reach);
        reach.clear();
        for (x, &take) in all.iter().zip(&takes) {
            if take != UNREACHED {
                reach.push(WordEdge { take, ..*x });
            }
        }
        let fits = reach.len() < MAX_WORD_EDGES;
        let h = word_hash(word);
        let mut e = Entry::new(
            word,
            (h >> 32) as u32,
            self.keys.len() as u32,
            (self.draws.len() - PAD) as u32,
            reached && fits,
            reach.iter().all(|x| Some(x.id) != model.unk_edge()),
        );
        e.lat = e.lat.with_alpha_gen(self.alpha_gen);
        self.keys.extend_from_slice(word);
        if e.lat.ok() {
            // Counting sort by end, pass order kept within an end: `first[t]` edges end
            // before `t`.
            e.lat = e.lat.with_edges_len(reach.len());
            let mut first = [0u16; MAX_WORD + 2];
            for x in reach.iter() {
                first[x.end as usize + 1] += 1;
            }
            for t in 1..=len + 1 {
                first[t] += first[t - 1];
            }
            let mut next = first;
            let o = self.draws.len() - PAD;
            self.draws.resize(o + reach.len() + PAD, 0);
            self.meta.resize(o + reach.len() + PAD, 0);
            for (k, x) in reach.iter().enumerate() {
                let (s, t) = (x.start as usize, x.end as usize);
                let j = o + next[t] as usize;
                next[t] += 1;
                self.draws[j] = x.take;
                self.meta[j] = (first[s + 1] as u64) << META_LIM
                    | (k as u64) << META_INDEX
                    | (t as u64) << META_END
                    | (s as u64) << META_START
                    | x.id as u64;
            }
            // The walk back's dead steps rely on it (`avx512::emit_plain`): the first edge by
            // end starts at the word's start, so its limit is 0.
            assert_eq!(limit(self.meta[o]), 0);
        }
        self.all = all;
        self.takes = takes;
        self.reach = reach;
        let entries = &self.entries;
        self.index
            .insert(e.hash, entries.len() as u32, entries.len(), |y| {
                entries[y as usize].hash
            });
        self.entries.push(e);
        e.lat
    }
}

/// Appends `buf[m..64]` to `out`: a fixed 16-entry copy when it fits (a word's tokens are at
/// most `MAX_WORD`, and `buf` has 16 entries of slack past 64).
#[inline(always)]
fn append(buf: &[i32; 80], m: usize, out: &mut Vec<i32>) {
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

/// Whether the CPU runs the `avx512` kernels (and the SIMD level allows it).
fn vector_draws() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::wordcache::vector_lookups() && std::arch::is_x86_feature_detected!("lzcnt")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
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
        let mut used = false;
        // Both pass-bit kernels; cold, warm, warm after the sums were refreshed for another α.
        for scalar in [false, true] {
            let mut c = WordLattices {
                scalar,
                ..Default::default()
            };
            for round in 0..3 {
                if round == 2 {
                    word_wise(&mut c, m, &prepared, alpha + 0.5, seed);
                }
                if let Some(got) = word_wise(&mut c, m, &prepared, alpha, seed) {
                    assert!(full, "word-wise succeeded where the full pass fails");
                    assert_eq!(
                        got,
                        full_pass(m, &prepared, alpha, seed),
                        "{text:?} α={alpha} scalar={scalar}"
                    );
                    used = true;
                }
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

    /// The vector pass bits equal the portable ones (thresholds at, just below and just above
    /// the drawn bits, any length up to the limit, edges by end with their pass indices
    /// permuted), each bit is its edge's test, and `holder` finds each end's last passing
    /// edge from the limit of the end.
    #[test]
    fn pass_bits_agree_and_holders_are_the_last_passing_edges() {
        let mut r = Stream::new(8, 8);
        for n in [1usize, 7, 8, 9, 16, 17, 63, 64, 65, 200, MAX_WORD_EDGES - 1] {
            let base = Draws::new(&mut r);
            // Pass order `k` -> an end (1..=48); stored by end, then pass order.
            let ends: Vec<usize> = (0..n).map(|k| 1 + (k * 7919) % n * 48 / n).collect();
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by_key(|&k| (ends[k], k));
            // Each end's first edge in pass order always passes (as `Z = c` there).
            let takes: Vec<u64> = order
                .iter()
                .map(|&k| {
                    let drawn = base.bits_at(k as u64);
                    match r.next_u64() % 4 {
                        _ if !ends[..k].contains(&ends[k]) => (1 << 53) - 1,
                        0 => drawn,
                        1 => drawn.saturating_sub(1),
                        2 => (1 << 53) - 1,
                        _ => r.next_u64() >> 11,
                    }
                })
                .collect();
            let lim_at = |t: usize| order.iter().filter(|&&k| ends[k] <= t).count();
            let mut meta: Vec<u64> = order
                .iter()
                .map(|&k| {
                    (lim_at(ends[k] - 1) as u64) << META_LIM
                        | (k as u64) << META_INDEX
                        | (ends[k] as u64) << META_END
                        | k as u64
                })
                .collect();
            // Padding that would pass: the vector lanes past `n` must not count.
            let mut padded = takes.clone();
            padded.extend([(1 << 53) - 1; PAD]);
            meta.extend([0; PAD]);
            let (mut a, mut b) = ([0u64; BITMAP_WORDS], [0u64; BITMAP_WORDS]);
            pass_bits::<false>(&padded, &meta, n, base, &mut a);
            if vector_draws() {
                // SAFETY: checked just above.
                unsafe { vector_pass_bits(&padded, &meta, n, base, &mut b) };
            } else {
                b = a;
            }
            let words = n.div_ceil(64);
            assert_eq!(a[..words], b[..words], "n = {n}");
            let passes = |j: usize| (a[j / 64] >> (j % 64)) & 1 == 1;
            for (j, &k) in order.iter().enumerate() {
                assert_eq!(passes(j), base.bits_at(k as u64) <= takes[j], "n = {n}");
                assert_eq!(pass_index(meta[j]), k);
                assert_eq!(end_of(meta[j]), ends[k]);
            }
            for t in 1..=48usize {
                let want = (0..n).rev().find(|&j| ends[order[j]] == t && passes(j));
                if let Some(j) = want {
                    assert_eq!(holder(&a, lim_at(t)), j, "n = {n}, t = {t}");
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512dq")]
    unsafe fn vector_pass_bits(
        t: &[u64],
        m: &[u64],
        n: usize,
        base: Draws,
        bits: &mut [u64; BITMAP_WORDS],
    ) {
        pass_bits::<true>(t, m, n, base, bits)
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn vector_pass_bits(
        t: &[u64],
        m: &[u64],
        n: usize,
        base: Draws,
        bits: &mut [u64; BITMAP_WORDS],
    ) {
        pass_bits::<false>(t, m, n, base, bits)
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
