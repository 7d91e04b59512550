//! An exact per-word cache for Viterbi encoding (like HF tokenizers' word cache, but proven
//! to give the ids of the full-line pass, ties and f32 rounding included).
//!
//! # Why a line decomposes into words
//! When no matchable piece contains the whitespace mark "▁" (U+2581) anywhere but at its
//! first character (`Model::word_cut`; also required: prefix whitespace, not byte-level),
//! no lattice edge covers a "▁" of the prepared text except one starting there, and UNK
//! edges are one character: every "▁" position is a node that every segmentation passes
//! through. Cut the text before each "▁" into words; the edges inside a word (and their
//! order: by start, then SentencePiece's per-start order) are those of the word on its own,
//! so in exact arithmetic the line's best path is the concatenation of the words' best
//! paths, with the same first-met tie-breaking.
//!
//! # Why f32 rounding cannot flip a decision (the robustness test)
//! The pass sums f32 scores in f64 (see `viterbi`); the bound below uses `u = 2^-24` (f32
//! unit roundoff, from when it summed in f32), which only makes it more conservative for f64's
//! `2^-53`. Let `u = 2^-24` and `M` bound the magnitude of every value computed inside a word. A
//! computed value at position `p` reached by `k` edges from the word start `a` is the exact
//! `g(a) + L` (`L` the exact path sum from `a`, `g(a)` the computed value at `a`) up to
//! `k·u·M`; `max` over candidates is 1-Lipschitz, so by induction every computed position
//! value is within `ℓ·u·M` of `g(a) +` its exact local optimum (`k <= ℓ`, the word's length
//! in bytes, counting the final addition into `p`). The same holds for the local solve
//! (`g(a) = 0`). Hence if the local solve's computed winner beats every other candidate at
//! `p` by `m`, the exact winner does by `m - 2ℓuM`, and the full pass's computed winner by
//! `m - 4ℓuM`: the decision agrees whenever `m > 4ℓuM`. Only the decisions at the ends of
//! the path's edges matter (backtracking reads nothing else), so `m` is the minimum margin
//! over the path's edge ends (exact ties give 0: never robust).
//!
//! `M`: every computed value in the word is at most `(|g(a)| + ℓ·S)·(1+u)^K` in magnitude
//! (`S` = largest |edge score|, `K` edges from the line start); `|g(a)| <= A·(1+u)^K` where
//! `A` is the sum of |scores| along the (already proven identical) path so far. With
//! `K <= 8192` (we only use the cache for texts of at most `MAX_TEXT` bytes),
//! `(1+u)^K <= 1 + 2^-10`. We test `m > 8·ℓ·u·(A + ℓ·S)·(1 + 2^-10)`: twice the bound.
//!
//! # Integration
//! A line is encoded word by word only if every word is a robust cache hit (or, on a miss,
//! solved locally and robust); any other outcome (a long word, an unsegmentable word, a
//! margin too small) falls back to the ordinary full-line pass for the whole line, so the
//! output never depends on the cache's state, the thread count or the batch split.
//!
//! The cache is per thread (in the batch [`Workspace`](super::viterbi::Workspace)), keyed by
//! the word's bytes, tagged with the model's `uid` (cleared on a model change), and cleared
//! when full. `PROBCRAFT_WORD_CACHE=0` in the environment disables it (read once).
//!
//! # Performance notes (botchan / zh_fortunes, LTO wheel, `compare.py --filter "Viterbi
//! batch"`, one process per setting, `PROBCRAFT_WORD_CACHE=0` vs on, shared 2-core machine)
//!
//! - en: 53-56 MB/s -> 95-102 MB/s (2.7x -> 5.1-5.8x sentencepiece); zh: 84-94 -> 86-96 MB/s
//!   (most Chinese lines hold a "word" longer than `MAX_WORD` and take the full pass).
//! - Botchan, cold cache: ~82 % of words hit, 99.8 % of lines go word by word (the rest have
//!   a word over 48 bytes or a margin under the bound); warm: every word hits.
//! - First version indexed the table by the hash's low bits: FxHash's low product bits
//!   depend only on the low input bits, which are the mark's bytes, so words collided in
//!   long probe runs (30 % of the time on the table load, 13 % on probing). Indexing by the
//!   high bits, comparing keys with u64 loads instead of `memcmp`, and copying ids with a
//!   loop instead of `memmove` took en from ~70 to ~100 MB/s.
//! - Scanning a line's word lengths before any lookup saves the lookups of lines that
//!   fall back anyway (zh).
//! - Where AVX-512 (F, BW, DQ, VL) and BMI2 are present, a word is hashed from its
//!   zero-padded lanes by one masked load and compared by one vector compare ([`lanes`]),
//!   with no branch on its length (the byte-wise hash and comparison mispredicted on the
//!   length's classes, flushing the lookups the core had started); the index's slots are
//!   16-bit. Botchan batch Viterbi 2.69 -> 2.33 ms (alternating processes, min of 12 × 40
//!   calls; the word sampler shares both, see its notes).
//! - Not tried: per-word caching for lines with one long word (the long word would need
//!   the fast pass started from a non-zero score, which it cannot report margins for);
//!   sharing the cache between threads (a lock or a concurrent map per word would cost more
//!   than a miss on 2 cores).
//! - Checked that the margin test is needed: accepting every local result with a positive
//!   margin (exact ties excluded, rounding ignored) already fails the shared-corpora test
//!   and the tie property test; so does accepting everything.

use super::model::Model;
use super::viterbi::push_token_back;
use crate::rng::{mix64, GOLDEN};

/// Longest word (bytes) looked up; longer words make the line take the full pass.
pub(crate) const MAX_WORD: usize = 48;
// Entries store word and id-list lengths in a byte.
const _: () = assert!(MAX_WORD <= u8::MAX as usize);
/// Longest text (bytes) encoded word by word (keeps `(1+u)^K <= 1 + 2^-10`, see above).
const MAX_TEXT: usize = 8192;
/// Entries before the cache is cleared.
const MAX_ENTRIES: usize = 1 << 15;
/// Most entries a [`WordIndex`] numbers (its 16-bit slots, one value reserved as empty).
pub(crate) const MAX_INDEXED: usize = u16::MAX as usize;
const EMPTY: u16 = u16::MAX;
const _: () = assert!(MAX_ENTRIES <= MAX_INDEXED);
/// Largest open-addressing table (power of two, at least twice `MAX_ENTRIES`).
const TABLE: usize = 1 << 16;
/// Smallest table (8 KiB): grown by doubling while more than half full.
const TABLE_MIN: usize = 1 << 12;

const MARK: [u8; 3] = [0xE2, 0x96, 0x81];

/// Whether the word cache is enabled by the environment (`PROBCRAFT_WORD_CACHE=0` disables).
pub fn enabled_by_env() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        !matches!(
            std::env::var("PROBCRAFT_WORD_CACHE").as_deref(),
            Ok("0") | Ok("off") | Ok("false")
        )
    })
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// High half of the word's hash.
    hash: u32,
    key_off: u32,
    ids_off: u32,
    /// Minimum decision margin over the path's edge ends, rounded down to f32 (+inf with no
    /// competitor; negative means "no segmentation": never usable).
    margin: f32,
    /// Sum of |score| along the word's path, rounded up to f32.
    abs: f32,
    key_len: u8,
    ids_len: u8,
    /// The path's first / last edge is an UNK edge that merges with neighbours.
    first_unk: bool,
    last_unk: bool,
}

/// Counters for tuning (hits, misses = local solves, lines encoded word by word, lines that
/// fell back to the full pass).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub hits: u64,
    pub misses: u64,
    pub lines: u64,
    pub fallbacks: u64,
}

/// A per-thread word -> ids cache for one model at a time.
#[derive(Debug, Default)]
pub struct WordCache {
    uid: u64,
    index: WordIndex,
    entries: Vec<Entry>,
    keys: Vec<u8>,
    ids: Vec<i32>,
    pub stats: Stats,
    // Local-solve scratch.
    best: Vec<f32>,
    second: Vec<f64>,
    back: Vec<u16>,
    lab: Vec<u32>,
    cuts: Vec<u32>,
    /// Tests: take the portable lookups even where AVX-512 is present.
    scalar: bool,
}

/// Per-lane constants of [`word_hash`] (xor keys, odd multipliers).
const LANE_KEY: [u64; 8] = [
    0x243F_6A88_85A3_08D3,
    0x1319_8A2E_0370_7344,
    0xA409_3822_299F_31D0,
    0x082E_FA98_EC4E_6C89,
    0x4528_21E6_38D0_1377,
    0xBE54_66CF_34E9_0C6C,
    0xC0AC_29B7_C97C_50DD,
    0x3F84_D5B5_B547_0917,
];
const LANE_MUL: [u64; 8] = [
    0x9E37_79B9_7F4A_7C15,
    0xBF58_476D_1CE4_E5B9,
    0x94D0_49BB_1331_11EB,
    0xD6E8_FEB8_6659_FD93,
    0xA076_1D64_78BD_642F,
    0xE703_7ED1_A0B4_28DB,
    0x8EBC_6AF0_9C88_C6E3,
    0x5899_65CC_7537_4CC3,
];

/// The word caches' hash: the word (at most `MAX_WORD < 64` bytes) zero-padded to eight
/// little-endian lanes, `Σ (lane_i ^ key_i)·mul_i`, then SplitMix64's mixer with the length.
/// The AVX-512 path computes it from one masked load and one multiply
/// ([`lanes::word_lanes`]), keeps the lanes for the key comparison, and branches on
/// nothing: the byte-wise hash and comparison branched on the length's classes, and every
/// mispredicted branch there flushed the later lookups the core had started (the word
/// sampler's perfect draws on botchan: 3.68-3.95 vs 4.43-4.69 ms).
pub(crate) fn word_hash(word: &[u8]) -> u64 {
    let mut b = [0u8; 64];
    b[..word.len()].copy_from_slice(word);
    let mut h = 0u64;
    for (i, lane) in b.chunks_exact(8).enumerate() {
        let x = u64::from_le_bytes(lane.try_into().unwrap());
        h = h.wrapping_add((x ^ LANE_KEY[i]).wrapping_mul(LANE_MUL[i]));
    }
    mix64(h ^ (word.len() as u64).wrapping_mul(GOLDEN))
}

/// Whether the word caches look words up by the AVX-512 kernels ([`lanes`]).
pub(crate) fn vector_lookups() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::simd::level() == crate::simd::Level::Avx512
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("bmi2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The AVX-512 word hash and key comparison (see [`word_hash`]).
#[cfg(target_arch = "x86_64")]
pub(crate) mod lanes {
    use super::{LANE_KEY, LANE_MUL, MAX_WORD};
    use crate::rng::{mix64, GOLDEN};
    use std::arch::x86_64::*;

    /// The word's bytes, zero past its end (at most `MAX_WORD`), and its
    /// [`super::word_hash`]. The masked load reads only the word's own bytes.
    ///
    /// # Safety
    /// The CPU has AVX-512F, AVX-512BW, AVX-512DQ and BMI2.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,bmi2")]
    pub(crate) unsafe fn word_lanes(word: &[u8]) -> (__m512i, u64) {
        let n = word.len();
        assert!(n <= MAX_WORD);
        // SAFETY: the mask covers the word's `n` bytes only (masked-off bytes are not read);
        // the constants are eight lanes each.
        let (w, key, mul) = unsafe {
            (
                _mm512_maskz_loadu_epi8(_bzhi_u64(u64::MAX, n as u32), word.as_ptr() as *const i8),
                _mm512_loadu_si512(LANE_KEY.as_ptr() as *const _),
                _mm512_loadu_si512(LANE_MUL.as_ptr() as *const _),
            )
        };
        let h = _mm512_reduce_add_epi64(_mm512_mullo_epi64(_mm512_xor_si512(w, key), mul));
        (w, mix64(h as u64 ^ (n as u64).wrapping_mul(GOLDEN)))
    }

    /// Whether `key` equals the word whose lanes are `w` (`key.len()` its length).
    ///
    /// # Safety
    /// The CPU has AVX-512F, AVX-512BW and BMI2.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,bmi2")]
    pub(crate) unsafe fn same_word(w: __m512i, key: &[u8]) -> bool {
        assert!(key.len() <= MAX_WORD);
        // SAFETY: the mask covers the key's own bytes only (masked-off bytes are not read).
        let k = unsafe {
            _mm512_maskz_loadu_epi8(
                _bzhi_u64(u64::MAX, key.len() as u32),
                key.as_ptr() as *const i8,
            )
        };
        _mm512_cmpneq_epi8_mask(w, k) == 0
    }

    /// Whether the first 16 bytes of the word whose lanes are `w` equal `head` (a key's first
    /// bytes, zero past its end, kept in its cache entry: no load from the key store).
    ///
    /// # Safety
    /// The CPU has AVX-512F, AVX-512BW and AVX-512VL.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(crate) unsafe fn same_head(w: __m512i, head: &[u8; 16]) -> bool {
        // SAFETY: `head` is 16 bytes.
        let h = unsafe { _mm_loadu_si128(head.as_ptr() as *const __m128i) };
        _mm_cmpneq_epi8_mask(_mm512_castsi512_si128(w), h) == 0
    }
}

/// The open-addressing index of a word cache: slots hold entry numbers in 16 bits (at most
/// [`MAX_INDEXED`] entries; `u16::MAX`: empty, half the footprint of 32-bit slots),
/// found from the top bits of the word's [`word_hash`]; each entry keeps the hash's high half,
/// so growing needs no keys. It starts at 8 KiB and doubles while more than half full: a
/// corpus with a few thousand distinct words keeps its index in L1/L2 instead of a fixed
/// 256 KiB table whose probes missed L2 (with the sampler's cached edges, 27 % of a perfect
/// sampling batch on botchan went to the first probe's load).
#[derive(Debug, Default)]
pub(crate) struct WordIndex {
    slots: Vec<u16>,
    bits: u32,
}

impl WordIndex {
    pub fn clear(&mut self) {
        self.slots.clear();
        self.slots.resize(TABLE_MIN, EMPTY);
        self.bits = TABLE_MIN.trailing_zeros();
    }

    pub fn is_ready(&self) -> bool {
        !self.slots.is_empty()
    }

    #[inline(always)]
    fn first(&self, hi: u32) -> usize {
        (hi >> (32 - self.bits)) as usize
    }

    /// The entry of `word`, whose hash's high half is `hi`; `key(x)` gives entry `x`'s hash
    /// half and key.
    #[inline(always)]
    pub fn find_word<'k>(
        &self,
        hi: u32,
        word: &[u8],
        key: impl Fn(u32) -> (u32, &'k [u8]),
    ) -> Option<u32> {
        self.find(hi, |x| {
            let (h, k) = key(x);
            h == hi && same(k, word)
        })
    }

    /// The entry of `word` (`key(x)` gives entry `x`'s hash half and key), its hash
    /// computed here: by [`lanes`] in `VECTOR` code (only inside AVX-512 code, where
    /// [`vector_lookups`] holds), else by [`word_hash`]; both give the same bits.
    #[inline(always)]
    pub fn find_key<'k, const VECTOR: bool>(
        &self,
        word: &[u8],
        key: impl Fn(u32) -> (u32, &'k [u8]),
    ) -> Option<u32> {
        #[cfg(target_arch = "x86_64")]
        if VECTOR {
            // SAFETY: `VECTOR` code runs only where the CPU has AVX-512F, BW, DQ and BMI2
            // (`vector_lookups`).
            let (w, h) = unsafe { lanes::word_lanes(word) };
            let hi = (h >> 32) as u32;
            return self.find(hi, |x| {
                let (eh, k) = key(x);
                // SAFETY: as above.
                eh == hi && k.len() == word.len() && unsafe { lanes::same_word(w, k) }
            });
        }
        self.find_word((word_hash(word) >> 32) as u32, word, key)
    }

    /// The entry whose hash's high half is `hi` and for which `is` holds.
    #[inline(always)]
    pub fn find(&self, hi: u32, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut i = self.first(hi);
        loop {
            let x = self.slots[i];
            if x == EMPTY {
                return None;
            }
            let x = x as u32;
            if is(x) {
                return Some(x);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds entry `x` (the `count`-th) with hash high half `hi`; `hash_of(y)` gives entry
    /// `y`'s, for regrowing.
    pub fn insert(&mut self, hi: u32, x: u32, count: usize, hash_of: impl Fn(u32) -> u32) {
        if 2 * (count + 1) > self.slots.len() && self.slots.len() < TABLE {
            let old = std::mem::take(&mut self.slots);
            self.slots.resize(old.len() * 2, EMPTY);
            self.bits += 1;
            for y in old.into_iter().filter(|&y| y != EMPTY).map(u32::from) {
                self.put(hash_of(y), y);
            }
        }
        self.put(hi, x);
    }

    fn put(&mut self, hi: u32, x: u32) {
        let mask = self.slots.len() - 1;
        let mut i = self.first(hi);
        while self.slots[i] != EMPTY {
            i = (i + 1) & mask;
        }
        // Callers clear their cache before `MAX_INDEXED` entries (asserted at compile time).
        self.slots[i] = u16::try_from(x).expect("word cache entry number past 16 bits");
    }
}

/// Byte equality of two short slices without a `memcmp` call.
#[inline(always)]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        if u64::from_le_bytes(x.try_into().unwrap()) != u64::from_le_bytes(y.try_into().unwrap()) {
            return false;
        }
    }
    ca.remainder()
        .iter()
        .zip(cb.remainder())
        .all(|(x, y)| x == y)
}

impl WordCache {
    fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
        self.keys.clear();
        self.ids.clear();
    }

    /// Number of cached words.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the ids of the prepared `text` to `out` word by word and returns true, or
    /// returns false (with `out` as it was) when the line must take the full pass.
    pub(crate) fn encode(&mut self, model: &Model, text: &[u8], out: &mut Vec<i32>) -> bool {
        let n = text.len();
        // A line whose path scores could reach SentencePiece's rebasing threshold takes the
        // full pass, which rebases as SentencePiece does (the bound below assumes none).
        let rebasing = n as f64 * model.max_abs_score() >= super::viterbi::RESET_THRESHOLD as f64;
        if !model.word_cut() || n > MAX_TEXT || rebasing {
            return false;
        }
        if self.uid != model.uid() || !self.index.is_ready() {
            self.clear();
            self.uid = model.uid();
        }
        // Word ends first: a line with a long word (most Chinese lines) takes the full pass
        // without paying for lookups of its other words.
        let mut cuts = std::mem::take(&mut self.cuts);
        if !word_ends(text, &mut cuts) {
            self.cuts = cuts;
            self.stats.fallbacks += 1;
            return false;
        }
        let r = match !self.scalar && vector_lookups() {
            // SAFETY: `vector_lookups` checked AVX-512F, BW, DQ and VL, and BMI2.
            #[cfg(target_arch = "x86_64")]
            true => unsafe { self.encode_words_avx512(model, text, &cuts, out) },
            _ => self.encode_words::<false>(model, text, &cuts, out),
        };
        self.cuts = cuts;
        r
    }

    /// [`Self::encode_words`] compiled for AVX-512 (the vector lookups inlined).
    ///
    /// # Safety
    /// The CPU has AVX-512F, AVX-512BW, AVX-512DQ and BMI2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,bmi2")]
    unsafe fn encode_words_avx512(
        &mut self,
        model: &Model,
        text: &[u8],
        cuts: &[u32],
        out: &mut Vec<i32>,
    ) -> bool {
        self.encode_words::<true>(model, text, cuts, out)
    }

    #[inline(always)]
    fn encode_words<const VECTOR: bool>(
        &mut self,
        model: &Model,
        text: &[u8],
        cuts: &[u32],
        out: &mut Vec<i32>,
    ) -> bool {
        let start_len = out.len();
        let merge = model.merges_unk() && !model.byte_fallback();
        let s_max = model.max_abs_score();
        const U: f64 = 1.0 / 16_777_216.0; // 2^-24
        let mut abs_sum = 0f64;
        let mut prev_unk = false;
        let mut a = 0;
        for &b in cuts {
            let b = b as usize;
            let word = &text[a..b];
            let e = match self.lookup::<VECTOR>(word) {
                Some(e) => {
                    self.stats.hits += 1;
                    e
                }
                None => {
                    self.stats.misses += 1;
                    self.solve_and_insert(model, word)
                }
            };
            let l = word.len() as f64;
            let bound = 8.0 * l * U * (abs_sum + l * s_max) * (1.0 + 1.0 / 1024.0);
            // (A NaN margin, impossible with finite scores, would also fall back.)
            if (e.margin as f64).partial_cmp(&bound) != Some(std::cmp::Ordering::Greater) {
                out.truncate(start_len);
                self.stats.fallbacks += 1;
                return false;
            }
            let ids = &self.ids[e.ids_off as usize..e.ids_off as usize + e.ids_len as usize];
            let skip = (merge && prev_unk && e.first_unk) as usize;
            // Mostly one or two ids: a loop, not a `memmove` call.
            for &x in &ids[skip..] {
                out.push(x);
            }
            prev_unk = e.last_unk;
            abs_sum += e.abs as f64;
            a = b;
        }
        self.stats.lines += 1;
        true
    }

    #[inline(always)]
    fn lookup<const VECTOR: bool>(&self, word: &[u8]) -> Option<Entry> {
        let (entries, keys) = (&self.entries, &self.keys);
        self.index
            .find_key::<VECTOR>(word, |x| {
                let e = &entries[x as usize];
                (e.hash, &keys[e.key_off as usize..][..e.key_len as usize])
            })
            .map(|x| entries[x as usize])
    }

    fn solve_and_insert(&mut self, model: &Model, word: &[u8]) -> Entry {
        if self.entries.len() >= MAX_ENTRIES || self.keys.len() > (1 << 24) {
            self.clear();
        }
        let h = word_hash(word);
        let mut e = Entry {
            hash: (h >> 32) as u32,
            key_off: self.keys.len() as u32,
            key_len: word.len() as u8,
            ids_off: self.ids.len() as u32,
            ids_len: 0,
            margin: -1.0,
            abs: 0.0,
            first_unk: false,
            last_unk: false,
        };
        self.keys.extend_from_slice(word);
        if let Some((margin, abs, first_unk, last_unk)) = self.solve(model, word) {
            // Conservative roundings: the margin down, the score sum up.
            let m = margin as f32;
            e.margin = if m as f64 > margin { m.next_down() } else { m };
            let a = abs as f32;
            e.abs = if (a as f64) < abs { a.next_up() } else { a };
            e.first_unk = first_unk;
            e.last_unk = last_unk;
        } else {
            self.ids.truncate(e.ids_off as usize);
        }
        // At most one id per byte (byte fallback) of a word of at most `MAX_WORD` bytes.
        e.ids_len = (self.ids.len() as u32 - e.ids_off) as u8;
        let entries = &self.entries;
        self.index
            .insert(e.hash, entries.len() as u32, entries.len(), |y| {
                entries[y as usize].hash
            });
        self.entries.push(e);
        e
    }

    /// The word's Viterbi path on its own (the same f32 / f64 arithmetic and candidate order
    /// as the full pass), its ids appended to `self.ids`; returns the minimum margin over the
    /// path's edge ends, the sum of |score| along it, and whether its first / last edges are
    /// UNK. None when the word has no segmentation.
    fn solve(&mut self, model: &Model, word: &[u8]) -> Option<(f64, f64, bool, bool)> {
        let n = word.len();
        self.best.clear();
        self.best.resize(n + 1, f32::NEG_INFINITY);
        self.second.clear();
        self.second.resize(n + 1, f64::NEG_INFINITY);
        self.back.clear();
        self.back.resize(n + 1, 0);
        self.lab.clear();
        self.lab.resize(n + 1, 0);
        self.best[0] = 0.0;
        let (best, second, back, lab) = (
            &mut self.best[..],
            &mut self.second[..],
            &mut self.back[..],
            &mut self.lab[..],
        );
        for s in 0..n {
            if s != 0 && back[s] == 0 {
                continue;
            }
            let here = best[s];
            model.edges_at(word, s, |e, id| {
                let (cand, better) = if model.is_user_defined(id) {
                    let c = model.score(id) + here as f64;
                    (c, c > best[e] as f64)
                } else {
                    let c = model.score32(id) + here;
                    (c as f64, c > best[e])
                };
                if better {
                    // The displaced holder (if any) becomes a competitor.
                    if back[e] != 0 {
                        second[e] = second[e].max(best[e] as f64);
                    }
                    best[e] = cand as f32;
                    back[e] = (e - s) as u16;
                    lab[e] = id;
                } else {
                    second[e] = second[e].max(cand);
                }
            });
        }
        if back[n] == 0 {
            return None;
        }
        let unk = model.unk_edge();
        let mut margin = f64::INFINITY;
        let mut abs = 0f64;
        let mut e = n;
        let start = self.ids.len();
        let mut first_unk = false;
        let last_unk = Some(lab[n]) == unk;
        let merge = model.merges_unk();
        let mut next_unk = false;
        while e > 0 {
            margin = margin.min(best[e] as f64 - second[e]);
            let s = e - back[e] as usize;
            let id = lab[e];
            abs += model.score(id).abs().max(model.score32(id).abs() as f64);
            next_unk = push_token_back(model, id, unk, merge, &word[s..e], next_unk, &mut self.ids);
            if s == 0 {
                first_unk = Some(id) == unk;
            }
            e = s;
        }
        self.ids[start..].reverse();
        Some((margin, abs, first_unk, last_unk))
    }
}

#[inline]
pub(crate) fn find_mark(text: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 3 <= text.len() {
        // Only 0xE2 can start the mark.
        match text[i..].iter().position(|&b| b == 0xE2) {
            None => return None,
            Some(k) => {
                i += k;
                if i + 3 <= text.len() && text[i..i + 3] == MARK {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

/// Fills `cuts` with the end of every word of a prepared text (each word but the first starts
/// at a "▁" mark); false when a word is longer than `MAX_WORD` (the line takes the full pass).
pub(crate) fn word_ends(text: &[u8], cuts: &mut Vec<u32>) -> bool {
    cuts.clear();
    let n = text.len();
    let mut a = 0;
    while a < n {
        // The next mark after `a` (continuation bytes are never 0xE2, so none starts at
        // a + 1 or a + 2 when one starts at a).
        let b = find_mark(text, a + 1).unwrap_or(n);
        if b - a > MAX_WORD {
            return false;
        }
        cuts.push(b as u32);
        a = b;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lattice::batch::{encode, Mode};
    use crate::lattice::model::tests::spm_like;
    use crate::lattice::viterbi::Workspace;
    use crate::rng::Stream;
    use proptest::prelude::*;

    fn enc(m: &Model, text: &[u8], ws: &mut Workspace) -> Vec<i32> {
        let mut out = vec![];
        encode(m, text, Mode::Viterbi, &mut Stream::fixed(), ws, &mut out).unwrap();
        out
    }

    fn reference(m: &Model, text: &[u8]) -> Vec<i32> {
        let mut ws = Workspace::new();
        ws.word_cache_off = true;
        let r = enc(m, text, &mut ws);
        assert_eq!(ws.word_cache.stats, Stats::default());
        r
    }

    /// The vector word hash equals the portable one at every length (NUL bytes included),
    /// and the vector comparison tells a key from the same bytes with one changed.
    #[test]
    fn vector_word_hash_and_comparison_agree() {
        let mut r = Stream::new(9, 9);
        let mut seen = std::collections::HashSet::new();
        for n in 0..=MAX_WORD {
            for round in 0..50 {
                let word: Vec<u8> = (0..n)
                    .map(|_| {
                        if round % 5 == 0 {
                            0
                        } else {
                            r.next_u64() as u8
                        }
                    })
                    .collect();
                let h = word_hash(&word);
                seen.insert(h);
                if !vector_lookups() {
                    continue;
                }
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `vector_lookups` checked the features.
                unsafe {
                    let (w, hv) = lanes::word_lanes(&word);
                    assert_eq!(hv, h, "n = {n}");
                    assert!(lanes::same_word(w, &word));
                    let mut head = [0u8; 16];
                    head[..n.min(16)].copy_from_slice(&word[..n.min(16)]);
                    assert!(lanes::same_head(w, &head));
                    if n > 0 {
                        let k = r.below(n.min(16) as u64) as usize;
                        head[k] ^= 0x80;
                        assert!(!lanes::same_head(w, &head));
                    }
                    if n > 0 {
                        let mut other = word.clone();
                        let k = r.below(n as u64) as usize;
                        other[k] ^= 1 << r.below(8);
                        assert!(!lanes::same_word(w, &other));
                        assert!(!lanes::same_word(w, &word[..n - 1]) || word[n - 1] == 0);
                    }
                }
            }
        }
        // Lengths are hashed: all-zero words of every length differ.
        let zeros: std::collections::HashSet<u64> =
            (0..=MAX_WORD).map(|n| word_hash(&vec![0; n])).collect();
        assert_eq!(zeros.len(), MAX_WORD + 1);
        assert!(seen.len() > 40 * (MAX_WORD + 1));
    }

    /// Every line of both corpora with both shared models: cached (twice, cold then warm)
    /// against the full pass.
    #[test]
    fn shared_corpora_match_the_full_pass() {
        for (model, corpus) in [
            ("spm_en_botchan_1k.model", "botchan.txt"),
            ("spm_zh_fortunes_8k.model", "zh_fortunes.txt"),
            ("spm_en_botchan_1k.model", "zh_fortunes.txt"),
            ("spm_zh_fortunes_8k.model", "botchan.txt"),
        ] {
            let Some((m, text)) = crate::lattice::model::tests::shared_pair(model, corpus) else {
                continue;
            };
            // The portable lookups (a cache of their own), then the vector ones where present.
            let mut ws = Workspace::new();
            ws.word_cache.scalar = true;
            for scalar in [true, false] {
                if !scalar {
                    ws = Workspace::new();
                }
                for round in 0..2 {
                    for line in text.lines() {
                        let want = reference(&m, line.as_bytes());
                        assert_eq!(
                            enc(&m, line.as_bytes(), &mut ws),
                            want,
                            "{model} {corpus} round {round} scalar {scalar}: {line:?}"
                        );
                    }
                }
            }
            let s = ws.word_cache.stats;
            eprintln!(
                "{model} on {corpus}: word_cut {}, {:?}, hit rate {:.4}, lines word by word {:.4}",
                m.word_cut(),
                s,
                s.hits as f64 / (s.hits + s.misses).max(1) as f64,
                s.lines as f64 / (s.lines + s.fallbacks).max(1) as f64
            );
            if m.word_cut() && corpus == "botchan.txt" && model.contains("en") {
                // The cache must actually be in use on the case it is for.
                assert!(s.lines > s.fallbacks * 10, "{s:?}");
            }
        }
    }

    #[test]
    fn inner_mark_disables_the_cache() {
        let ok = spm_like(&[("▁", -1.0), ("a", -2.0), ("▁a", -1.5), ("b", -2.0)]);
        assert!(ok.word_cut());
        let bad = spm_like(&[("▁", -1.0), ("a", -2.0), ("a▁b", -1.5), ("b", -2.0)]);
        assert!(!bad.word_cut());
        let mut ws = Workspace::new();
        for t in ["a b", "ab a b", "a b a b"] {
            assert_eq!(
                enc(&bad, t.as_bytes(), &mut ws),
                reference(&bad, t.as_bytes())
            );
            assert_eq!(
                enc(&ok, t.as_bytes(), &mut ws),
                reference(&ok, t.as_bytes())
            );
        }
        // "a▁b" spans a cut: the cache would have split it.
        assert_eq!(enc(&bad, b"a b", &mut ws), vec![1, 3]);
        assert!(ws.word_cache.stats.lines > 0);
        // Whitespace as suffix: disabled too.
        let mut spec = ok.spec().clone();
        spec.normalizer.treat_whitespace_as_suffix = true;
        assert!(!Model::from_spec(spec).unwrap().word_cut());
    }

    #[test]
    fn alternating_models_on_one_thread_never_mix() {
        // Same pieces, opposite preferences: "ab" whole in one, "a" + "b" in the other.
        let m1 = spm_like(&[("▁", -1.0), ("a", -2.0), ("b", -2.0), ("ab", -1.0)]);
        let m2 = spm_like(&[("▁", -1.0), ("a", -1.0), ("b", -1.0), ("ab", -5.0)]);
        let mut ws = Workspace::new();
        for _ in 0..3 {
            for m in [&m1, &m2] {
                for t in ["ab", "ab ab", "b ab a"] {
                    assert_eq!(enc(m, t.as_bytes(), &mut ws), reference(m, t.as_bytes()));
                }
            }
        }
        assert_eq!(enc(&m1, b"ab", &mut ws), vec![1, 4]);
        assert_eq!(enc(&m2, b"ab", &mut ws), vec![1, 2, 3]);
        assert!(ws.word_cache.stats.hits > 0);
    }

    /// Tiny vocabularies whose scores make exact and near ties common (sums like
    /// 0.1 + 0.2 against 0.3 in f32), texts of many words so the running score is large.
    fn arb_tie_model() -> impl Strategy<Value = Model> {
        let chars = ["a", "b", "▁", "é"];
        let piece = proptest::collection::vec(0..chars.len(), 1..=4)
            .prop_map(move |v| v.iter().map(|&i| chars[i]).collect::<String>());
        let score = proptest::sample::select(vec![
            -0.1f32, -0.2, -0.3, -0.6, -1.0, -2.0, -3.0, -0.3000001, -1.5, -4.5,
        ]);
        (
            proptest::collection::btree_map(piece, score, 1..16),
            any::<bool>(),
        )
            .prop_map(|(pieces, user)| {
                let v: Vec<(String, f32)> = pieces.into_iter().collect();
                let refs: Vec<(&str, f32)> = v.iter().map(|(p, s)| (p.as_str(), *s)).collect();
                let m = spm_like(&refs);
                if user {
                    let mut spec = m.spec().clone();
                    if let Some(p) = spec.pieces.get_mut(1) {
                        p.kind = crate::lattice::vocab::PieceKind::UserDefined;
                    }
                    Model::from_spec(spec).unwrap()
                } else {
                    m
                }
            })
    }

    fn arb_words() -> impl Strategy<Value = String> {
        let parts = vec!["a", "b", "ab", "ba", "é", "x", " ", " ", "aab", "abab"];
        proptest::collection::vec(proptest::sample::select(parts), 0..200).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn cached_equals_uncached_with_ties(m in arb_tie_model(), texts in proptest::collection::vec(arb_words(), 1..6)) {
            let mut ws = Workspace::new();
            for _ in 0..2 {
                for t in &texts {
                    prop_assert_eq!(enc(&m, t.as_bytes(), &mut ws), reference(&m, t.as_bytes()));
                }
            }
        }
    }
}
