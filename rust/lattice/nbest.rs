//! Exact k-best segmentations for any text length.
//!
//! SentencePiece runs A* with a shrinking agenda and silently falls back to the Viterbi path on
//! long lines. Here every position keeps the k best partial paths ending there: a path in the
//! global top k has its prefix among the top k at every position it visits (otherwise k better
//! completions would exist), so merging the incoming lists position by position is exact.
//! Cost O(edges · k) time and O(L · k) memory, no cap, no fallback.
//!
//! # Performance notes
//!
//! Target: issue #3's "10-best >= 5x sentencepiece n-best" (`benches/compare.py --engine
//! lattice --filter best`: `sp.nbest_encode_as_ids(line, 10)` per line against
//! `m.nbest(line, 10)` per line, the same work and the same information out: ten id lists
//! and, for us, their scores). Both sides stay per-line calls; no batch form was added.
//!
//! Where the time went (LTO build, zh line of ~80 bytes, ~16 us per call before): about half
//! in this module, half in building the Python result (ten numpy arrays, ten tuples, the
//! list, the GC passes they trigger). Changes, in order of effect:
//! - results as flat ids + offsets + scores ([`nbest_ids`]) written straight from the
//!   back-pointers (no `Vec` per path, no edge list when the path has no UNK edge), in
//!   per-thread buffers; the binding builds every `ids` as a view into one int32 array
//!   (one numpy allocation per call, not two per result) and untracks the tuples;
//! - no exact counting pre-pass (a second trie walk) unless `(n + 1) * k` could exceed
//!   [`MAX_PARTIAL_PATHS`];
//! - push instead of pull: each edge merges its start's finished list into its end's list
//!   as the trie walk reports it (appending when it cannot beat the last entry, returning at
//!   once when the list is full, keeping the prefix that beats every candidate in place);
//!   the pull form (k-way merge of all incoming lists with `total_cmp`, one step per output
//!   scanning every source) cost ~2x the instructions;
//! - block layout: a position's list lives in a fixed block of `2^ceil(log2 k)` 16-byte
//!   entries, so merges write in place, finished lists are never copied, and the start of an
//!   edge is the predecessor index `>> shift`;
//! - the edge closure marked `#[inline(always)]` so it fuses with the trie walk (-15%
//!   instructions).
//!
//! Instructions per line (cachegrind, release, k = 10, `nbest_ids` plus id emission, model
//! load and normalisation excluded), en botchan / zh fortunes:
//!
//! | version                                         | instr en / zh   | mispredicts en / zh |
//! |-------------------------------------------------|-----------------|---------------------|
//! | before (pull merge, Vec per path, count pass)   | 92.8k / 91.1k   | 1012 / 865          |
//! | flat ids, push merge into a ring of Vec lists   | 51.9k / 47.5k   |  451 / 470          |
//! | + block layout, inlined edge closure            | 38.5k / 36.4k   |  363 / 277          |
//! | + ids read straight off the back-pointers       | 33.1k / 32.9k   |  349 / 266          |
//!
//! (The trie walk alone is ~7k / ~10k of that.) Side by side in one process (thread CPU
//! time, best of 7, same model and lines; the machine was shared, so ratios only):
//! 10-best vs sentencepiece went 3.82x -> 8.15x (en) and 3.11x -> 6.36x (zh); the same run
//! of `compare.py` gave 3.71x / 2.76x before and 7.99x / 5.90x after.
//!
//! Tried, did not help: a branch-free merge (selects on 24/16-byte entries, sentinels):
//! more instructions than the predictable-enough branchy loop; `-inf` sentinels after every
//! finished list to drop the merge loop's bounds tests (+7% instructions: worse codegen
//! around it); a fixed-capacity array per ring slot (no gain over blocks); the pull merge
//! with a branch-free argmax over the sources' heads (+20% time).
//!
//! Second round (branch `nb4`; LTO build, zh fortunes / en botchan 10-best bench lines).
//! Profile of `[m.nbest(x, 10) for x in lines]` on zh: ~57k instructions per call, of
//! which the search 33k, normalisation 2.8k, numpy views 3.6k, glibc malloc/free 4.4k
//! (numpy's per-view shape buffers and the ids buffer), the rest tuples, list, GC and the
//! interpreter; in time (perf) the search ~29%, the cycle collector ~18% (collections the
//! result tuples' allocations trigger: inherent to a list of tuples, whatever they hold),
//! malloc/free ~17%, numpy ~6%. 14% of the zh lines are text-table rules (`├────┼──…┤`):
//! 622 edges per line against 41 for the others, 61% of the search's instructions and
//! about half its time, most of it the byte-trie walk (46 dependent steps from every start
//! in a run of `─`, the model having pieces of up to 15 of them). Change:
//! - blocks per character on the character trie ([`forward_units`], `Layout::Units`) for
//!   mostly multi-byte text ([`multibyte`]): one trie step per character and positions
//!   only at character starts. Table lines 8.6 -> 5.5 us each, other zh lines and en
//!   unchanged (1.41 / 3.55 us; core-only harness, best of 10 interleaved runs); 146k ->
//!   131k instructions per table line;
//! - in the binding (`rust/python/lattice.rs`): the list and tuples built in place, the
//!   int32 descriptor looked up once per call, the model borrowed instead of cloned (no
//!   reference-count round trip), and the GIL kept when `len(text) * k <= 16384` (its
//!   release and re-acquisition, two mutex round trips, are a few percent of a short
//!   line's call): ~1.7% fewer instructions per zh call, within the timings' noise.
//!
//! Tried and reverted in that round:
//! - lazy k-best (Huang & Chiang 2005, algorithm 3: Viterbi forward keeping in-edge lists,
//!   then each position's next derivation computed on demand from a pool of in-edge
//!   candidates): 42.5k instructions per zh line against 32.4k, +40-60% time; every one of
//!   the k results asks for a new derivation all the way down its path, and a pool pop
//!   costs more than the block merge's append it replaces;
//! - the character trie for every text (the ASCII check that was to keep the byte walk for
//!   English never fires: normalised text has `▁`): en +10% time, zh non-table lines +4%
//!   (the symbol pass costs more than the trie steps it saves on short walks);
//! - one generic forward with both walks inlined into [`run`]: worse code on both paths
//!   (+17% instructions on en); hence `forward_units` is a separate, non-inlined function;
//! - replaying the previous start's recorded edges when the same bytes follow (runs of one
//!   character): -13% instructions on table lines, +20% on all others (recording every
//!   edge, a second inlined copy of the merge);
//! - appends writing all `k - a` slots from the start's whole block (a fixed trip count for
//!   the first edge into a position): -9 mispredictions per line, +1.3-2k instructions;
//! - emitting ids through a local length instead of `Vec::push`: no difference.

use super::model::Model;
use super::viterbi::ring_size;
use crate::error::{Error, Result};

/// Largest `k` accepted (memory is O(L·k)).
pub const MAX_K: usize = 1 << 20;

/// Largest number of kept partial paths (24 bytes each: 1.5 GiB). The arena grows as
/// `Σ_positions min(k, paths ending there)`, so long texts with large `k` are refused here
/// with a clear error instead of exhausting memory; u32 arena indices stay far from overflow.
pub const MAX_PARTIAL_PATHS: usize = 1 << 26;

/// Largest block arena (entries of 16 bytes: 32 MiB); bigger requests use the compact one.
const BLOCK_LIMIT: usize = 1 << 21;

/// Largest `k` for the block layout: a block reserves room for `k` paths at every position,
/// which for a large `k` is mostly unused (a short text has few segmentations) and would
/// cost more to clear than the search itself.
const BLOCK_MAX_K: usize = 256;

/// One segmentation as `(start, end, id)` edges, and its score `Σ v`.
pub type Scored = (Vec<(usize, usize, u32)>, f64);

/// The k best segmentations as output ids, flat: result `i` is
/// `ids[offsets[i]..offsets[i + 1]]` with score `scores[i]`, best first. Reusing one across
/// calls keeps the per-text cost free of allocations.
#[derive(Default, Debug, Clone)]
pub struct NBestIds {
    pub ids: Vec<i32>,
    /// `scores.len() + 1` entries, starting at 0.
    pub offsets: Vec<usize>,
    pub scores: Vec<f64>,
}

impl NBestIds {
    pub fn len(&self) -> usize {
        self.scores.len()
    }
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
    /// Ids and score of result `i`.
    pub fn get(&self, i: usize) -> (&[i32], f64) {
        (
            &self.ids[self.offsets[i]..self.offsets[i + 1]],
            self.scores[i],
        )
    }
    fn clear(&mut self) {
        self.ids.clear();
        self.offsets.clear();
        self.offsets.push(0);
        self.scores.clear();
    }
}

/// The `k` highest-scoring segmentations, best first. Ties keep SentencePiece's edge order
/// (earlier starts first), so the first result is the Viterbi path up to f32-vs-f64 rounding.
pub fn nbest(model: &Model, text: &[u8], k: usize) -> Result<Vec<Scored>> {
    let mut out = Paths(Vec::new());
    run(model, text, k, None, &mut out)?;
    Ok(out.0)
}

/// As [`nbest`], writing output ids (UNK merging and byte fallback as
/// [`Model::emit_ids`]) into `out`, which is cleared first.
pub fn nbest_ids(model: &Model, text: &[u8], k: usize, out: &mut NBestIds) -> Result<()> {
    out.clear();
    run(model, text, k, None, &mut Ids { model, text, out })
}

/// Where [`run`] delivers the results, best first.
trait Sink {
    fn path(&mut self, path: &[(usize, usize, u32)], score: f64);
    /// Takes block entry `r` (a path ending at the last position) straight from the
    /// back-pointers; `false` when this sink needs the edges ([`Sink::path`]) instead.
    fn block_path(&mut self, _nodes: &[Node], _r: u32, _score: f64) -> bool {
        false
    }
}

struct Paths(Vec<Scored>);

impl Sink for Paths {
    fn path(&mut self, path: &[(usize, usize, u32)], score: f64) {
        self.0.push((path.to_vec(), score));
    }
}

struct Ids<'a> {
    model: &'a Model,
    text: &'a [u8],
    out: &'a mut NBestIds,
}

impl Ids<'_> {
    fn push(&mut self, score: f64) {
        self.out.offsets.push(self.out.ids.len());
        self.out.scores.push(score);
    }
}

impl Sink for Ids<'_> {
    fn path(&mut self, path: &[(usize, usize, u32)], score: f64) {
        self.model.emit_ids(self.text, path, &mut self.out.ids);
        self.push(score);
    }

    /// Without UNK edges a path's output ids are its edge ids: read them backwards off the
    /// back-pointers and reverse, skipping the edge list (a third of the cost of a short
    /// line's 10-best). A path with an UNK edge (merging, byte fallback) takes the general
    /// route.
    fn block_path(&mut self, nodes: &[Node], r: u32, score: f64) -> bool {
        let ids = &mut self.out.ids;
        let start = ids.len();
        let unk = self.model.unk_edge().unwrap_or(u32::MAX);
        let mut h = nodes[r as usize];
        while h.prev != u32::MAX {
            if h.id == unk {
                ids.truncate(start);
                return false;
            }
            ids.push(h.id as i32);
            h = nodes[h.prev as usize];
        }
        ids[start..].reverse();
        self.push(score);
        true
    }
}

/// How the partial paths are stored (see [`Scratch`]).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    /// Blocks per byte, edges from the byte trie.
    Blocks,
    /// Blocks per character, edges from the character trie ([`forward_units`]).
    Units,
    Compact,
}

/// Delivers the k best segmentations to `sink`, best first. `layout` forces a storage
/// layout (tests); `None` picks blocks for `k <= BLOCK_MAX_K` whenever they fit
/// [`BLOCK_LIMIT`], per character for mostly multi-byte text ([`multibyte`]).
fn run(
    model: &Model,
    text: &[u8],
    k: usize,
    layout: Option<Layout>,
    sink: &mut impl Sink,
) -> Result<()> {
    if !check(model, text, k)? {
        if k > 0 {
            sink.path(&[], 0.0);
        }
        return Ok(());
    }
    let n = text.len();
    let shift = k.next_power_of_two().trailing_zeros();
    let layout = layout.unwrap_or(if k <= BLOCK_MAX_K && n < BLOCK_LIMIT >> shift {
        if multibyte(model, text) {
            Layout::Units
        } else {
            Layout::Blocks
        }
    } else {
        Layout::Compact
    });
    with_scratch(|sc| {
        match layout {
            Layout::Blocks | Layout::Units => {
                let units = layout == Layout::Units;
                let m = if units {
                    forward_units(model, text, k, shift, sc)?
                } else {
                    forward_blocks(model, text, k, shift, sc)?;
                    n
                };
                let base = (m << shift) as u32;
                for r in base..base + sc.cnt[m] {
                    let score = sc.nodes[r as usize].score;
                    if !sink.block_path(&sc.nodes, r, score) {
                        let pos = if units { Some(&sc.pos[..]) } else { None };
                        backtrack_blocks(&sc.nodes, r, m, shift, pos, &mut sc.path);
                        sink.path(&sc.path, score);
                    }
                }
            }
            Layout::Compact => {
                let (off, len) = forward_compact(model, text, k, sc)?;
                for r in off..off + len {
                    let score = backtrack_compact(&sc.arena, r, n, &mut sc.path);
                    sink.path(&sc.path, score);
                }
            }
        }
        Ok(())
    })
}

/// Readies the per-position k-best lists for `positions` positions of `1 << shift` slots
/// each: every list empty but the first, which holds the empty path. Entries past `cnt[p]`
/// are never read, so the buffer is grown but not cleared.
fn reset_lists(
    nodes: &mut Vec<Node>,
    cnt: &mut Vec<u32>,
    tail: &mut Vec<Node>,
    positions: usize,
    shift: u32,
    k: usize,
) {
    let need = positions << shift;
    if nodes.len() < need {
        nodes.resize(need, NO_NODE);
    }
    if tail.len() < k {
        tail.resize(k, NO_NODE);
    }
    cnt.clear();
    cnt.resize(positions, 0);
    cnt[0] = 1;
    nodes[0] = Node {
        score: 0.0,
        prev: u32::MAX,
        id: u32::MAX,
    };
}

/// Buffers reused across calls on one thread (one allocation set per thread, not per text).
///
/// Two layouts of the kept partial paths:
/// - blocks (the usual case): position `p`'s list lives at `nodes[p << shift..]`, room for
///   `2^shift >= k` entries, `cnt[p]` of them used. Edges merge straight into the list of
///   their end, nothing is copied when a position is finished, an entry is 16 bytes, and
///   the start of an edge is its predecessor's index `>> shift`;
/// - compact (for `k` over [`BLOCK_MAX_K`], or when `(n + 1) · 2^shift` entries would
///   exceed [`BLOCK_LIMIT`], i.e. very long texts): lists are packed in `arena` in position order, each position's
///   pending list is merged in a ring of `slots` and appended to the arena when the pass
///   reaches it; memory is then exactly the kept paths, 24 bytes each.
#[derive(Default)]
struct Scratch {
    nodes: Vec<Node>,
    cnt: Vec<u32>,
    /// Merge buffer (the displaced tail of a list), both layouts.
    tail: Vec<Node>,
    slots: Vec<Vec<Hyp>>,
    tmp: Vec<Hyp>,
    arena: Vec<Hyp>,
    span: Vec<(u32, u32)>,
    path: Vec<(usize, usize, u32)>,
    /// Block layout by characters: the text's units as character-trie symbols, and their
    /// byte offsets (then the text's length).
    sym: Vec<u32>,
    pos: Vec<usize>,
}

impl Scratch {
    /// Drops the buffers of a huge text so a thread does not keep them alive.
    fn trim(&mut self) {
        const KEEP: usize = 1 << 18;
        if self.nodes.len() > KEEP
            || self.arena.capacity() > KEEP
            || self.span.capacity() > KEEP
            || self.cnt.capacity() > KEEP
            || self.path.capacity() > KEEP
            || self.sym.capacity() > KEEP
            || self.pos.capacity() > KEEP
            || self.tmp.capacity() > KEEP / 16
            || self.tail.len() > KEEP / 16
            || self.slots.iter().any(|s| s.capacity() > KEEP / 16)
        {
            *self = Scratch::default();
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    SCRATCH.with(|c| match c.try_borrow_mut() {
        Ok(mut sc) => {
            let r = f(&mut sc);
            sc.trim();
            r
        }
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Validates the request; `Ok(false)` for the trivial cases (`k == 0`, empty text).
fn check(model: &Model, text: &[u8], k: usize) -> Result<bool> {
    if k > MAX_K {
        return Err(Error::Limit(format!("k={k} exceeds the limit of {MAX_K}")));
    }
    let n = text.len();
    if k == 0 || n == 0 {
        return Ok(false);
    }
    if n >= u32::MAX as usize {
        return Err(Error::Limit(format!(
            "text of {n} bytes exceeds the 4 GiB limit"
        )));
    }
    // The arena will hold exactly `Σ_e min(k, Σ_{s→e} kept(s))` entries, at most
    // `(n + 1) · k`: only when that bound is over the limit, count them exactly (one trie
    // pass, 8 bytes per position) so an oversized request is refused before any of it is
    // allocated.
    if (n as u64 + 1).saturating_mul(k as u64) <= MAX_PARTIAL_PATHS as u64 {
        return Ok(true);
    }
    let mut kept = vec![0u64; n + 1];
    kept[0] = 1;
    let mut total = 1u64;
    for s in 0..n {
        let c = kept[s];
        if c > 0 {
            model.edges_at(text, s, |e, _| kept[e] = (kept[e] + c).min(k as u64));
        }
        total += kept[s + 1];
        if total > MAX_PARTIAL_PATHS as u64 {
            return Err(Error::Limit(format!(
                "k-best search needs more than {MAX_PARTIAL_PATHS} partial paths (about text \
                 length × k); use a smaller k or a shorter text"
            )));
        }
    }
    Ok(true)
}

/// A kept partial path in the block layout: its score, the index of the path it extends
/// (`u32::MAX` at the root) and the id of its last edge.
#[derive(Clone, Copy, Debug)]
struct Node {
    score: f64,
    prev: u32,
    id: u32,
}

const NO_NODE: Node = Node {
    score: f64::NEG_INFINITY,
    prev: 0,
    id: 0,
};

/// Block layout: fills every position's best `k` (see [`Scratch`]).
///
/// No lattice is built: like Viterbi, one pass over start positions relaxes every edge as
/// the trie walk reports it, merging the start's finished list into its end's list. Starts
/// are visited in increasing order, so merging with ties going to what is already there
/// keeps SentencePiece's edge order.
fn forward_blocks(
    model: &Model,
    text: &[u8],
    k: usize,
    shift: u32,
    sc: &mut Scratch,
) -> Result<()> {
    let n = text.len();
    let Scratch {
        nodes, cnt, tail, ..
    } = sc;
    reset_lists(nodes, cnt, tail, n + 1, shift, k);
    for s in 0..n {
        let len = cnt[s] as usize;
        if len == 0 {
            continue;
        }
        let off = s << shift;
        model.edges_at(
            text,
            s,
            #[inline(always)]
            |e, id| relax_into(model, nodes, cnt, tail, (shift, k), (off, len), e, id),
        );
    }
    if cnt[n] == 0 {
        let furthest = (0..n).rev().find(|&i| cnt[i] > 0).unwrap_or(0);
        return Err(model.unsegmentable(text, furthest));
    }
    Ok(())
}

/// Relaxes edge `id` into end `e` (both layouts): merges the start's finished list (`len`
/// entries at `off` in `nodes`) into `e`'s list of at most `k` (`e`'s slot at `e << shift`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn relax_into(
    model: &Model,
    nodes: &mut [Node],
    cnt: &mut [u32],
    tail: &mut [Node],
    (shift, k): (u32, usize),
    (off, len): (usize, usize),
    e: usize,
    id: u32,
) {
    let (lo, hi) = nodes.split_at_mut(e << shift);
    let src = Cands {
        src: &lo[off..off + len],
        off: off as u32,
        v: model.score(id),
        id,
    };
    let a = cnt[e] as usize;
    cnt[e] = merge_into(&mut hi[..k], a, tail, &src) as u32;
}

/// Whether the block layout walks `text` by characters ([`forward_units`]): when it is
/// mostly multi-byte characters (at least two bytes per character on average), where that
/// saves trie steps and positions. Byte-level models' units are bytes; a model whose
/// character trie cannot be built keeps the byte walk.
fn multibyte(model: &Model, text: &[u8]) -> bool {
    let chars = text.iter().filter(|&&b| (b as i8) >= -0x40).count();
    !model.byte_level() && text.len() >= 2 * chars && model.chars().is_ok()
}

/// [`forward_blocks`] over units (characters) on the character trie: one trie step per
/// character instead of per byte, and positions only at character starts; block `u` is
/// the list of unit `u`, which starts at byte `sc.pos[u]`. Returns the number of units.
#[inline(never)]
fn forward_units(
    model: &Model,
    text: &[u8],
    k: usize,
    shift: u32,
    sc: &mut Scratch,
) -> Result<usize> {
    let n = text.len();
    let ch = model.chars()?;
    let Scratch {
        nodes,
        cnt,
        tail,
        sym,
        pos,
        ..
    } = sc;
    sym.clear();
    pos.clear();
    let end = ch.trie.symbols(text, 0, n, sym, pos);
    debug_assert_eq!(end, n);
    pos.push(n);
    let m = sym.len();
    reset_lists(nodes, cnt, tail, m + 1, shift, k);
    let values = &ch.values[..];
    for s in 0..m {
        let len = cnt[s] as usize;
        if len == 0 {
            continue;
        }
        let off = s << shift;
        model.unit_edges(
            ch,
            sym,
            s,
            #[inline(always)]
            |l, node| {
                let id = values[node as usize];
                relax_into(model, nodes, cnt, tail, (shift, k), (off, len), s + l, id)
            },
        );
    }
    if cnt[m] == 0 {
        let furthest = (0..m).rev().find(|&u| cnt[u] > 0).map_or(0, |u| pos[u]);
        return Err(model.unsegmentable(text, furthest));
    }
    Ok(m)
}

/// The extensions of a finished list `src` (at `nodes[off..]`) by one edge: candidate `j`
/// scores `src[j].score + v`.
struct Cands<'a> {
    src: &'a [Node],
    off: u32,
    v: f64,
    id: u32,
}

impl Cands<'_> {
    #[inline(always)]
    fn node(&self, j: usize, score: f64) -> Node {
        Node {
            score,
            prev: self.off + j as u32,
            id: self.id,
        }
    }
}

/// Merges the candidates into the list `acc[..a]` (best first), keeping the best
/// `acc.len()` (= k); returns the new length. Equal scores keep `acc`'s entries first (the
/// earlier edge), then the candidates' rank order: the order a stable sort of the
/// concatenation gives. `tail` needs room for `k` entries.
///
/// Scores are finite (bounded piece scores), so plain comparisons agree with `total_cmp`
/// (no NaN, and no `-0.0`: sums start from `+0.0`).
#[inline(always)]
fn merge_into(acc: &mut [Node], a: usize, tail: &mut [Node], c: &Cands) -> usize {
    let k = acc.len();
    let src = c.src;
    let b = src.len().min(k);
    let first = src[0].score + c.v;
    if a == 0 || first <= acc[a - 1].score {
        // Every candidate goes after the current entries: append while room remains (the
        // first edge into a position; nothing when the list is full).
        let take = (k - a).min(b);
        for (j, (slot, x)) in acc[a..a + take].iter_mut().zip(src).enumerate() {
            *slot = c.node(j, x.score + c.v);
        }
        return a + take;
    }
    // Entries at least as good as the best candidate keep their places (a branch-free
    // count: the list is sorted, so it is the insertion point); the rest move to `tail` and
    // are merged back with the candidates.
    let i0 = acc[..a].iter().filter(|x| x.score >= first).count();
    let total = k.min(a + b);
    let t = a - i0;
    let tail = &mut tail[..t];
    for (d, x) in tail.iter_mut().zip(&acc[i0..a]) {
        *d = *x;
    }
    let src = &src[..b];
    let (mut o, mut i, mut j) = (i0, 0, 0);
    while o < total && i < t && j < b {
        let cs = src[j].score + c.v;
        if tail[i].score < cs {
            acc[o] = c.node(j, cs);
            j += 1;
        } else {
            acc[o] = tail[i];
            i += 1;
        }
        o += 1;
    }
    // One side ran out (or the list is full): the other fills what room remains.
    while o < total && j < b {
        acc[o] = c.node(j, src[j].score + c.v);
        j += 1;
        o += 1;
    }
    while o < total && i < t {
        acc[o] = tail[i];
        i += 1;
        o += 1;
    }
    total
}

/// Follows the back-pointers of block entry `r` (a path ending at position `m`) into
/// `path` (text order, byte offsets: position `u` starts at `pos[u]`, or at `u` without
/// `pos`); returns its score.
fn backtrack_blocks(
    nodes: &[Node],
    r: u32,
    m: usize,
    shift: u32,
    pos: Option<&[usize]>,
    path: &mut Vec<(usize, usize, u32)>,
) -> f64 {
    path.clear();
    let at = |u: usize| pos.map_or(u, |p| p[u]);
    let mut h = nodes[r as usize];
    let score = h.score;
    let mut e = m;
    while h.prev != u32::MAX {
        let s = (h.prev >> shift) as usize;
        path.push((at(s), at(e), h.id));
        e = s;
        h = nodes[h.prev as usize];
    }
    path.reverse();
    score
}

/// A kept partial path in the compact layout (as [`Node`], plus the start of its last edge,
/// which the arena index no longer gives).
#[derive(Clone, Copy, Debug)]
struct Hyp {
    score: f64,
    /// Arena index of the partial path this one extends (`u32::MAX` at the root).
    prev: u32,
    /// Start of the last edge (its end is the position whose list holds this entry).
    s: u32,
    id: u32,
}

/// Compact layout: fills `sc.arena` with every position's best `k` partial paths; returns
/// the `(offset, count)` of the final position's list.
fn forward_compact(model: &Model, text: &[u8], k: usize, sc: &mut Scratch) -> Result<(u32, u32)> {
    let n = text.len();
    let size = ring_size(model);
    let mask = size - 1;
    let Scratch {
        slots,
        tmp,
        arena,
        span,
        ..
    } = sc;
    slots.resize_with(size.max(slots.len()), Vec::new);
    for p in slots.iter_mut() {
        p.clear();
    }
    arena.clear();
    arena.push(Hyp {
        score: 0.0,
        prev: u32::MAX,
        s: 0,
        id: u32::MAX,
    });
    span.clear();
    span.resize(n + 1, (0, 0));
    span[0] = (0, 1);
    for s in 0..=n {
        if s > 0 {
            let pending = &mut slots[s & mask];
            if pending.is_empty() {
                continue;
            }
            let begin = arena.len();
            arena.extend_from_slice(pending);
            pending.clear();
            if arena.len() >= u32::MAX as usize {
                return Err(Error::Limit(
                    "k-best search exceeds 2**32 partial paths".into(),
                ));
            }
            span[s] = (begin as u32, (arena.len() - begin) as u32);
        }
        if s == n {
            break;
        }
        let (off, len) = span[s];
        let src = &arena[off as usize..(off + len) as usize];
        model.edges_at(text, s, |e, id| {
            relax(
                &mut slots[e & mask],
                tmp,
                src,
                off,
                model.score(id),
                s as u32,
                id,
                k,
            );
        });
    }
    let (off, len) = span[n];
    if len == 0 {
        let furthest = (0..n).rev().find(|&i| span[i].1 > 0).unwrap_or(0);
        return Err(model.unsegmentable(text, furthest));
    }
    Ok((off, len))
}

/// Merges the extensions of `src` (a finished list at arena offset `off`, best first) by
/// edge `(s, id)` of score `v` into `acc`, keeping the best `k`; equal scores keep `acc`'s
/// entries first (the earlier edge), then `src`'s rank order.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn relax(
    acc: &mut Vec<Hyp>,
    tmp: &mut Vec<Hyp>,
    src: &[Hyp],
    off: u32,
    v: f64,
    s: u32,
    id: u32,
    k: usize,
) {
    let a = acc.len();
    let first = src[0].score + v;
    let hyp = |r: usize| Hyp {
        score: src[r].score + v,
        prev: off + r as u32,
        s,
        id,
    };
    if a > 0 && first > acc[a - 1].score {
        // Some extension beats the pending list's last entry: a real merge.
        tmp.clear();
        let (mut i, mut j) = (0usize, 0usize);
        let b = src.len();
        while tmp.len() < k {
            if j == b {
                let take = (a - i).min(k - tmp.len());
                tmp.extend_from_slice(&acc[i..i + take]);
                break;
            }
            let c = src[j].score + v;
            if i < a && acc[i].score >= c {
                tmp.push(acc[i]);
                i += 1;
            } else {
                tmp.push(Hyp {
                    score: c,
                    prev: off + j as u32,
                    s,
                    id,
                });
                j += 1;
            }
        }
        std::mem::swap(acc, tmp);
        return;
    }
    // Every extension scores at most the pending list's last entry (or nothing is pending):
    // they go after it, as far as room remains.
    let take = (k - a).min(src.len());
    acc.extend((0..take).map(hyp));
}

/// Follows the back-pointers of arena entry `r` (a path ending at `n`) into `path` (text
/// order); returns its score.
fn backtrack_compact(arena: &[Hyp], r: u32, n: usize, path: &mut Vec<(usize, usize, u32)>) -> f64 {
    path.clear();
    let mut h = arena[r as usize];
    let score = h.score;
    let mut e = n;
    while h.prev != u32::MAX {
        path.push((h.s as usize, e, h.id));
        e = h.s as usize;
        h = arena[h.prev as usize];
    }
    path.reverse();
    score
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lattice::model::tests::spm_like;
    use proptest::prelude::*;

    /// The previous implementation (pull-style k-way merge of every incoming list with
    /// `total_cmp`), kept as the oracle for exact agreement, ties included.
    fn reference(model: &Model, text: &[u8], k: usize) -> Vec<Scored> {
        #[derive(Clone, Copy)]
        struct Src {
            off: u32,
            len: u32,
            v: f64,
            s: u32,
            id: u32,
        }
        let n = text.len();
        if k == 0 {
            return vec![];
        }
        if n == 0 {
            return vec![(vec![], 0.0)];
        }
        let mut pools: Vec<Vec<Src>> = vec![Vec::new(); n + 1];
        let mut arena = vec![Hyp {
            score: 0.0,
            prev: u32::MAX,
            s: 0,
            id: u32::MAX,
        }];
        let mut span = vec![(0u32, 0u32); n + 1];
        span[0] = (0, 1);
        for s in 0..=n {
            if s > 0 {
                let pool = std::mem::take(&mut pools[s]);
                let begin = arena.len();
                let mut heads = vec![0u32; pool.len()];
                for _ in 0..k {
                    let mut best: Option<(usize, f64)> = None;
                    for (j, src) in pool.iter().enumerate() {
                        if heads[j] >= src.len {
                            continue;
                        }
                        let sc = arena[(src.off + heads[j]) as usize].score + src.v;
                        if best.is_none_or(|(_, b)| sc.total_cmp(&b).is_gt()) {
                            best = Some((j, sc));
                        }
                    }
                    let Some((j, sc)) = best else { break };
                    let src = pool[j];
                    arena.push(Hyp {
                        score: sc,
                        prev: src.off + heads[j],
                        s: src.s,
                        id: src.id,
                    });
                    heads[j] += 1;
                }
                span[s] = (begin as u32, (arena.len() - begin) as u32);
            }
            if s == n {
                break;
            }
            let (off, len) = span[s];
            if len == 0 {
                continue;
            }
            model.edges_at(text, s, |e, id| {
                pools[e].push(Src {
                    off,
                    len,
                    v: model.score(id),
                    s: s as u32,
                    id,
                })
            });
        }
        let (off, len) = span[n];
        let mut path = Vec::new();
        (off..off + len)
            .map(|r| {
                let sc = backtrack_compact(&arena, r, n, &mut path);
                (path.clone(), sc)
            })
            .collect()
    }

    /// Every segmentation by brute force, as `(path, score)`.
    fn all_paths(model: &Model, text: &[u8]) -> Vec<Scored> {
        fn go(
            m: &Model,
            t: &[u8],
            s: usize,
            cur: &mut Vec<(usize, usize, u32)>,
            sc: f64,
            out: &mut Vec<Scored>,
        ) {
            if s == t.len() {
                out.push((cur.clone(), sc));
                return;
            }
            let mut edges = vec![];
            m.edges_at(t, s, |e, id| edges.push((e, id)));
            for (e, id) in edges {
                cur.push((s, e, id));
                go(m, t, e, cur, sc + m.score(id), out);
                cur.pop();
            }
        }
        let mut out = vec![];
        go(model, text, 0, &mut vec![], 0.0, &mut out);
        out
    }

    fn model(scores: &[f32]) -> Model {
        let pieces = ["a", "b", "ab", "ba", "aba", "bb", "▁", "▁a", "abab", "c"];
        let p: Vec<(&str, f32)> = pieces
            .iter()
            .zip(scores.iter().cycle())
            .map(|(p, s)| (*p, *s))
            .collect();
        spm_like(&p)
    }

    fn with_layout(m: &Model, text: &[u8], k: usize, layout: Layout) -> Vec<Scored> {
        let mut out = Paths(Vec::new());
        run(m, text, k, Some(layout), &mut out).unwrap();
        out.0
    }

    fn ids_with_layout(m: &Model, text: &[u8], k: usize, layout: Layout) -> NBestIds {
        let mut out = NBestIds::default();
        out.clear();
        run(
            m,
            text,
            k,
            Some(layout),
            &mut Ids {
                model: m,
                text,
                out: &mut out,
            },
        )
        .unwrap();
        out
    }

    /// Both layouts and the flat-ids form agree exactly (paths, tie order, score bits) with
    /// the reference implementation.
    fn check_all(m: &Model, raw: &str, k: usize) {
        let text = m.prepare(raw.as_bytes()).unwrap();
        let want = reference(m, &text, k);
        let got = nbest(m, &text, k).unwrap();
        for got in [
            &got,
            &with_layout(m, &text, k, Layout::Blocks),
            &with_layout(m, &text, k, Layout::Units),
            &with_layout(m, &text, k, Layout::Compact),
        ] {
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.0, w.0, "{raw:?} k={k}");
                assert_eq!(g.1.to_bits(), w.1.to_bits(), "{raw:?} k={k}");
            }
        }
        let mut flat = NBestIds::default();
        nbest_ids(m, &text, k, &mut flat).unwrap();
        for flat in [
            &flat,
            &ids_with_layout(m, &text, k, Layout::Blocks),
            &ids_with_layout(m, &text, k, Layout::Units),
            &ids_with_layout(m, &text, k, Layout::Compact),
        ] {
            assert_eq!(flat.len(), got.len());
            assert_eq!(flat.offsets.len(), got.len() + 1);
            for (i, (p, s)) in got.iter().enumerate() {
                let mut ids = vec![];
                m.emit_ids(&text, p, &mut ids);
                assert_eq!(flat.get(i), (&ids[..], *s));
            }
        }
    }

    #[test]
    fn matches_brute_force() {
        let m = model(&[-1.0, -1.5, -2.0, -2.5, -3.0, -1.25, -0.5, -2.0, -4.0, -1.0]);
        for raw in ["abab", "ab ba", "abcab", "aabbx", "baba abab"] {
            let text = m.prepare(raw.as_bytes()).unwrap();
            let mut all = all_paths(&m, &text);
            all.sort_by(|a, b| b.1.total_cmp(&a.1));
            for k in [1, 2, 3, 7, 50, 10_000] {
                let got = nbest(&m, &text, k).unwrap();
                assert_eq!(got.len(), all.len().min(k), "{raw:?} k={k}");
                let scores: Vec<f64> = got.iter().map(|g| g.1).collect();
                let want: Vec<f64> = all.iter().take(k).map(|g| g.1).collect();
                assert_eq!(scores, want, "{raw:?} k={k}");
                let mut seen = std::collections::HashSet::new();
                for (p, s) in &got {
                    assert!(seen.insert(p.clone()), "repeated path");
                    let a = all.iter().find(|a| &a.0 == p).expect("not a segmentation");
                    assert_eq!(a.1, *s);
                }
                check_all(&m, raw, k);
            }
        }
    }

    #[test]
    fn trivial_cases() {
        let m = model(&[-1.0]);
        assert!(nbest(&m, b"", 0).unwrap().is_empty());
        assert_eq!(nbest(&m, b"", 3).unwrap(), vec![(vec![], 0.0)]);
        let mut flat = NBestIds::default();
        nbest_ids(&m, b"", 3, &mut flat).unwrap();
        assert_eq!((flat.len(), flat.get(0)), (1, (&[][..], 0.0)));
        nbest_ids(&m, b"ab", 0, &mut flat).unwrap();
        assert!(flat.is_empty() && flat.ids.is_empty() && flat.offsets == [0]);
        assert!(nbest(&m, b"a", MAX_K + 1).is_err());
    }

    #[test]
    fn long_line_with_ties() {
        // Equal scores everywhere: the tie order decides which paths make the cut.
        let m = model(&[-1.0]);
        check_all(&m, &"ab ".repeat(300), 10);
        check_all(&m, &"abab".repeat(200), 64);
    }

    /// Multi-byte text (runs of one character, as in text tables, and CJK), UNK edges
    /// included: the per-character walk agrees with the byte walk and the reference.
    #[test]
    fn multibyte_text() {
        let m = multibyte_model(&[-1.0, -1.5, -2.2, -1.0, -2.0, -2.0, -3.0, -0.5, -1.0]);
        for raw in [
            "────────",
            "├──┼────┤",
            "你好你好 a你",
            "──a──",
            "x你y",
            "  ─  ",
        ] {
            for k in [1, 3, 10, 40] {
                check_all(&m, raw, k);
            }
        }
        let text = m.prepare("────────".as_bytes()).unwrap();
        assert!(multibyte(&m, &text));
    }

    fn multibyte_model(scores: &[f32]) -> Model {
        let pieces = ["─", "──", "───", "┼", "你", "好", "你好", "▁", "a"];
        let p: Vec<(&str, f32)> = pieces
            .iter()
            .zip(scores.iter().cycle())
            .map(|(p, s)| (*p, *s))
            .collect();
        spm_like(&p)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn multibyte_agrees_with_reference(
            scores in proptest::collection::vec(prop_oneof![Just(-1.0f32), Just(-2.0f32), -5.0f32..-0.1], 1..9),
            raw in "[─┼你好ax ]{0,30}",
            k in 1usize..40,
        ) {
            check_all(&multibyte_model(&scores), &raw, k);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn agrees_with_reference(
            scores in proptest::collection::vec(prop_oneof![Just(-1.0f32), Just(-2.0f32), -5.0f32..-0.1], 1..10),
            raw in "[abcx ]{0,40}",
            k in 1usize..40,
        ) {
            check_all(&model(&scores), &raw, k);
        }
    }
}
