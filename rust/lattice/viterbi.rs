//! Viterbi decoding, exactly as SentencePiece's optimised unigram encoder computes it.
//!
//! No lattice is stored: one forward pass over start positions relaxes every edge as the trie
//! walk reports it. Scores live in a ring buffer of `max_edge + 1` slots (every edge ends within
//! that distance of where it starts), and the only per-position array is a `u16` back-pointer
//! holding the winning edge's length, so memory is 2 bytes per input byte.
//!
//! Parity details that matter for identical ids:
//! - f32 accumulation (`score + best_so_far` in float), like SentencePiece;
//! - user-defined pieces score `0.1·(len − 1)` (`len` in bytes; SentencePiece 0.2.3, the wheel
//!   the parity tests pin: it replaced the older `len·max_score − 0.1` in double, which decided
//!   near-ties differently on about half of the lines an audit tried on a trained model with a
//!   user-defined piece);
//! - SentencePiece 0.2.3 rebases the pending scores (subtracts the score at the current start
//!   from every reached position ahead) whenever that score leaves ±10⁵, which changes the f32
//!   rounding of long texts' sums: done identically ([`RESET_THRESHOLD`]);
//! - ties keep the first candidate met (strict `>`), in start-position then length order.

use super::model::{record_end, Block, Chars, Model, Pass, Scan, Winners};
use super::wordcache::WordCache;
use crate::error::Result;

/// Reusable per-thread scratch space for the single-pass algorithms.
#[derive(Default, Debug)]
pub struct Workspace {
    pub(crate) back: Vec<u16>,
    pub(crate) ring32: Vec<f32>,
    pub(crate) ring64: Vec<f64>,
    /// The decoded path as `(start, end, id)` edges in text order.
    pub path: Vec<(usize, usize, u32)>,
    /// When set, the single-pass decoders leave the path in `back` only (no `path`), and
    /// the caller emits ids straight from it with [`emit_from_back`]: 24 bytes per token
    /// less, which is what keeps a 100 MB line within a few times its size.
    pub(crate) ids_only: bool,
    /// Piece id of the edge named by `back[e]`, filled by the Viterbi pass on texts short
    /// enough (`IDS_LIMIT`) that 4 more bytes per byte do not matter: emitting then needs no
    /// second trie lookup per token. Valid only while `ids_valid` is set.
    pub(crate) ids: Vec<u32>,
    pub(crate) ids_valid: bool,
    /// Normalised text of the item being encoded (reused to avoid one allocation per text).
    pub(crate) norm: Vec<u8>,
    /// Buffers of [`Model::run_pass`].
    pub(crate) scan: Scan,
    /// Winner rings of the single-pass decoders.
    pub(crate) winners: Winners,
    /// Per-word Viterbi results ([`super::wordcache`]), used by [`super::batch`]'s Viterbi
    /// encoding.
    pub word_cache: WordCache,
    /// The sampling weights last used, for the model `weights_uid` (see `batch::weights`).
    pub(crate) weights: Option<std::sync::Arc<super::model::Weights>>,
    pub(crate) weights_uid: u64,
    /// Per-word lattices for perfect sampling ([`super::wordsample`]).
    pub word_lattices: super::wordsample::WordLattices,
    /// Disables the word cache for this workspace (reference comparisons in tests).
    pub word_cache_off: bool,
    /// The ids of the batch chunk being encoded, kept between batches (see
    /// `batch::encode_exact`).
    pub(crate) batch_ids: Vec<i32>,
}

impl Workspace {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `ids` hold `n + 1` entries. No clearing: `ids[e]` is only read where `back[e]` was
    /// set in the same pass.
    pub(crate) fn size_ids(&mut self, n: usize) {
        if self.ids.len() < n + 1 {
            self.ids.resize(n + 1, 0);
        }
    }

    /// Releases buffers grown by a huge input so a thread does not keep them forever.
    pub fn trim(&mut self) {
        const KEEP: usize = 1 << 22;
        if self.back.capacity() > KEEP {
            self.back = Vec::new();
        }
        if self.path.capacity() > KEEP {
            self.path = Vec::new();
        }
        if self.ids.capacity() > KEEP {
            self.ids = Vec::new();
        }
        if self.norm.capacity() > KEEP {
            self.norm = Vec::new();
        }
    }
}

/// Longest text (bytes) for which the Viterbi pass records edge ids per position.
pub(crate) const IDS_LIMIT: usize = 1 << 20;

pub(crate) fn ring_size(model: &Model) -> usize {
    (model.max_edge() + 1).next_power_of_two()
}

/// Fills `ws.path` with the Viterbi segmentation of the prepared text.
pub fn viterbi(model: &Model, text: &[u8], ws: &mut Workspace) -> Result<()> {
    let ch = model.chars()?;
    let ids = text.len() <= IDS_LIMIT;
    if model.hf_viterbi() {
        if ids {
            forward_f64::<true>(model, text, ws)
        } else {
            forward_f64::<false>(model, text, ws)
        }
    } else if ids {
        forward::<true>(model, ch, text, ws)
    } else {
        forward::<false>(model, ch, text, ws)
    }
    ws.ids_valid = ids;
    backtrack(model, text, ws)
}

/// SentencePiece 0.2.3's `kScoreResetThreshold`: when the best score at the start being
/// expanded leaves `±RESET_THRESHOLD`, it is subtracted from every pending position's score.
pub(crate) const RESET_THRESHOLD: f32 = 100_000.0;

fn forward<const IDS: bool>(model: &Model, ch: &Chars, text: &[u8], ws: &mut Workspace) {
    let n = text.len();
    let size = ch.ring;
    ws.back.clear();
    ws.back.resize(n + 1, 0);
    // Unreached units hold -inf, so the first candidate always wins (strict `>`) without a
    // separate "first edge here" test, and edges from unreachable starts change nothing; a
    // slot is reset to -inf when its start is done.
    ws.ring32.clear();
    ws.ring32.resize(size, f32::NEG_INFINITY);
    ws.ring32[0] = 0.0;
    ws.winners.reset(size);
    if IDS {
        ws.size_ids(n);
    }
    // Bound on one edge's |score|, with a margin for rounding (see `Forward::budget`).
    let step = model.max_abs_score() * (1.0 + 1e-6) + 1e-30;
    let mut pass = Forward::<IDS> {
        step,
        // The ring holds only the start's 0: the budget without a scan.
        budget: ((RESET_THRESHOLD as f64 * (1.0 - 1e-6) / step) as usize).saturating_sub(1),
        ch,
        back: &mut ws.back[..],
        ids: &mut ws.ids[..],
        ring: &mut ws.ring32[..],
        node: &mut ws.winners.node[..],
        mask: size - 1,
    };
    model.run_pass(ch, text, &mut ws.scan, &mut pass);
}

/// The Viterbi relaxation in units: best score and winning edge per pending end, in rings.
struct Forward<'a, const IDS: bool> {
    /// Bound on one edge's |score| (see [`forward`]).
    step: f64,
    /// Starts that can still be expanded without a rebasing check: every score is a pending
    /// one (at most `m` in magnitude when the ring was last scanned) plus one edge per start
    /// expanded since, so after `k` starts none exceeds `m + k·step`. Scanning the ring per
    /// 16-start block instead cost 10% of a zh_fortunes batch.
    budget: usize,
    ch: &'a Chars,
    back: &'a mut [u16],
    ids: &'a mut [u32],
    ring: &'a mut [f32],
    node: &'a mut [u32],
    mask: usize,
}

impl<const IDS: bool> Forward<'_, IDS> {
    /// SentencePiece 0.2.3's rebasing, run before the first edge of start `su`: when the
    /// score there left `±RESET_THRESHOLD`, it is subtracted (in f32) from every pending
    /// position. Unreached slots and those of finished starts hold −∞ and stay so, so the
    /// whole ring can be shifted.
    #[inline]
    fn rebase(ring: &mut [f32], mask: usize, su: usize) {
        let v = ring[su & mask];
        if v.is_finite() && !(-RESET_THRESHOLD..=RESET_THRESHOLD).contains(&v) {
            for r in ring.iter_mut() {
                *r -= v;
            }
        }
    }

    /// A fresh [`Forward::budget`] from a scan of the ring.
    #[cold]
    fn refill(ring: &[f32], step: f64) -> usize {
        let mut m = 0f32;
        for &r in ring {
            if r.is_finite() {
                m = m.max(r.abs());
            }
        }
        let room = RESET_THRESHOLD as f64 * (1.0 - 1e-6) - m as f64;
        ((room / step).max(0.0) as usize).saturating_sub(1)
    }

    /// The f32 relaxation, branch-free: whether a later edge beats the holder is
    /// data-dependent (the first edge into a position always does), so a branch here
    /// mispredicts often. The best score is a `max`; the winner's node is stored
    /// unconditionally, chosen by `select_unpredictable` (a `cmov`), which only feeds that
    /// store, off the chain of dependent scores. (It used to be a mask through `black_box`,
    /// which kept LLVM from turning the select back into a branch but cost a stack store
    /// and reload per edge; the `cmov` made batch Viterbi ~8 % faster on botchan.)
    ///
    /// # Safety
    /// `ring` and `node` have `mask + 1` entries.
    #[inline(always)]
    unsafe fn relax32(
        ring: &mut [f32],
        node: &mut [u32],
        mask: usize,
        score: f32,
        su: usize,
        eu: usize,
        nd: u32,
    ) {
        debug_assert!(ring.len() == mask + 1 && node.len() == mask + 1);
        let slot = eu & mask;
        // SAFETY: masked indices are below `mask + 1`, the slices' length (contract).
        unsafe {
            let cand = score + *ring.get_unchecked(su & mask);
            let old = ring.get_unchecked_mut(slot);
            let better = cand > *old;
            *old = if better { cand } else { *old };
            let n = node.get_unchecked_mut(slot);
            *n = std::hint::select_unpredictable(better, nd, *n);
        }
    }
}

impl<const IDS: bool> Pass for Forward<'_, IDS> {
    #[inline(always)]
    fn edge(&mut self, su: usize, eu: usize, nd: u32) {
        let score = self.ch.score32[nd as usize];
        assert!(self.ring.len() == self.mask + 1 && self.node.len() == self.mask + 1);
        // SAFETY: both rings have `mask + 1` entries (asserted).
        unsafe { Self::relax32(self.ring, self.node, self.mask, score, su, eu, nd) };
    }

    #[inline(always)]
    fn done(&mut self, su: usize) {
        self.ring[su & self.mask] = f32::NEG_INFINITY;
        // The next start's score is final now (every edge into it starts at or before `su`).
        if self.budget > 0 {
            self.budget -= 1;
        } else {
            Self::rebase(self.ring, self.mask, su + 1);
            self.budget = Self::refill(self.ring, self.step);
        }
    }

    #[inline(always)]
    fn end(&mut self, u: usize, pos: &[usize]) {
        let ids = if IDS { Some(&mut *self.ids) } else { None };
        record_end(self.ch, u, pos, u & self.mask, self.node, self.back, ids);
    }

    #[inline(always)]
    fn block(&mut self, b: &Block<'_>) {
        let mask = self.mask;
        if self.budget < b.lanes {
            self.budget = Self::refill(self.ring, self.step);
        }
        if self.budget < b.lanes {
            // Near the threshold: each start checked before its first edge (every start has
            // one: a single-character piece or the UNK edge).
            let mut cur = usize::MAX;
            for &x in b.list {
                let (su, eu, nd) = b.edge(x);
                if su != cur {
                    cur = su;
                    Self::rebase(self.ring, mask, su);
                }
                self.edge(su, eu, nd);
            }
            self.budget = 0;
        } else {
            self.budget -= b.lanes;
            // The same with the fields in locals (see `Pass::block`).
            let (ring, node) = (&mut *self.ring, &mut *self.node);
            let score32 = &self.ch.score32[..];
            assert!(ring.len() == mask + 1 && node.len() == mask + 1);
            for &x in b.list {
                let (su, eu, nd) = b.edge(x);
                // SAFETY: both rings have `mask + 1` entries (asserted).
                unsafe { Self::relax32(ring, node, mask, score32[nd as usize], su, eu, nd) };
            }
        }
        for u in b.j0..b.j0 + b.lanes {
            self.ring[u & mask] = f32::NEG_INFINITY;
        }
        if self.budget == 0 {
            // The next start may come from the one-start walk, which checks in `done` only
            // (the start after): check it here, its score being final.
            Self::rebase(self.ring, mask, b.j0 + b.lanes);
        }
        for u in b.j0 + 1..=b.j0 + b.lanes {
            self.end(u, b.pos);
        }
    }
}

/// HF tokenizers' Viterbi (its `encode_optimized`, used for models loaded from its JSON):
/// SentencePiece's pass in f64 (`score64`, the UNK edge at `min − 10` over every entry) with
/// no rebasing, the first candidate kept on ties. Near-ties are decided by the rounding of
/// the sums: f32 and f64 split 288 zh_fortunes lines (0.9%) differently. Byte-wise per start
/// like the reference below: batches of the shared models loaded from HF JSON take 7 % (en)
/// and 10 % (zh) more thread-CPU time than loaded from the `.model` (median of 15 alternating
/// runs; most en lines go through the word cache either way).
fn forward_f64<const IDS: bool>(model: &Model, text: &[u8], ws: &mut Workspace) {
    let n = text.len();
    let size = ring_size(model);
    let mask = size - 1;
    ws.back.clear();
    ws.back.resize(n + 1, 0);
    ws.ring64.clear();
    ws.ring64.resize(size, f64::NEG_INFINITY);
    ws.ring64[0] = 0.0;
    if IDS {
        ws.size_ids(n);
    }
    let back = &mut ws.back[..];
    let ring = &mut ws.ring64[..];
    let ids = &mut ws.ids[..];
    for s in 0..n {
        if s != 0 && back[s] == 0 {
            continue;
        }
        let here = ring[s & mask];
        model.edges_at(text, s, |e, id| {
            let slot = e & mask;
            let cand = model.score(id) + here;
            if back[e] == 0 || cand > ring[slot] {
                ring[slot] = cand;
                back[e] = (e - s) as u16;
                if IDS {
                    ids[e] = id;
                }
            }
        });
        ring[s & mask] = f64::NEG_INFINITY;
    }
}

/// The per-start, byte-wise forward pass the character-wise one replaced, kept as the
/// reference it is tested against.
#[cfg(test)]
pub(crate) fn forward_reference<const IDS: bool>(model: &Model, text: &[u8], ws: &mut Workspace) {
    let n = text.len();
    let size = ring_size(model);
    let mask = size - 1;
    ws.back.clear();
    ws.back.resize(n + 1, 0);
    ws.ring32.clear();
    ws.ring32.resize(size, f32::NEG_INFINITY);
    ws.ring32[0] = 0.0;
    if IDS {
        ws.size_ids(n);
    }
    let back = &mut ws.back[..];
    let ring = &mut ws.ring32[..];
    let ids = &mut ws.ids[..];
    for s in 0..n {
        if s != 0 && back[s] == 0 {
            continue;
        }
        // SentencePiece 0.2.3's rebasing (see `RESET_THRESHOLD`).
        let v = ring[s & mask];
        if !(-RESET_THRESHOLD..=RESET_THRESHOLD).contains(&v) {
            for r in ring.iter_mut() {
                *r -= v;
            }
        }
        let here = ring[s & mask];
        model.edges_at(text, s, |e, id| {
            let slot = e & mask;
            let len = (e - s) as u16;
            let cand = model.score32(id) + here;
            if back[e] == 0 || cand > ring[slot] {
                ring[slot] = cand;
                back[e] = len;
                if IDS {
                    ids[e] = id;
                }
            }
        });
        ring[s & mask] = f32::NEG_INFINITY;
    }
}

/// Follows the `u16` back-pointers from the end and recovers each edge's piece id.
pub(crate) fn backtrack(model: &Model, text: &[u8], ws: &mut Workspace) -> Result<()> {
    let n = text.len();
    ws.path.clear();
    if n == 0 {
        return Ok(());
    }
    if ws.back[n] == 0 {
        let furthest = (0..n)
            .rev()
            .find(|&i| i == 0 || ws.back[i] != 0)
            .unwrap_or(0);
        return Err(model.unsegmentable(text, furthest));
    }
    if ws.ids_only {
        return Ok(());
    }
    let ids = ws.ids_valid.then_some(&ws.ids[..]);
    let mut e = n;
    while e > 0 {
        let s = e - ws.back[e] as usize;
        let id = edge_at(model, text, ids, s, e)?;
        ws.path.push((s, e, id));
        e = s;
    }
    ws.path.reverse();
    Ok(())
}

/// The id of the path edge `s..e`: recorded by the forward pass, or looked up again.
#[inline(always)]
fn edge_at(model: &Model, text: &[u8], ids: Option<&[u32]>, s: usize, e: usize) -> Result<u32> {
    if let Some(ids) = ids {
        return Ok(ids[e]);
    }
    model.edge_id(text, s, e).ok_or_else(|| {
        crate::Error::Internal(format!("no edge for span {s}..{e} during backtracking"))
    })
}

/// Appends the output ids of the path held in `ws.back` (after a single-pass decoder ran
/// with `ids_only`), with the same UNK merging and byte fallback as [`Model::emit_ids`].
pub(crate) fn emit_from_back(
    model: &Model,
    text: &[u8],
    ws: &Workspace,
    out: &mut Vec<i32>,
) -> Result<()> {
    let back = &ws.back[..];
    let ids = ws.ids_valid.then_some(&ws.ids[..]);
    let start = out.len();
    let merge = model.merges_unk();
    let unk = model.unk_edge();
    // Walking backwards: `next_unk` says whether the token after this one was an UNK.
    let mut next_unk = false;
    let mut e = text.len();
    while e > 0 {
        let s = e - back[e] as usize;
        let id = edge_at(model, text, ids, s, e)?;
        next_unk = push_token_back(model, id, unk, merge, &text[s..e], next_unk, out);
        e = s;
    }
    out[start..].reverse();
    Ok(())
}

/// Appends the ids of one path edge, labelled `id` over `bytes`, for a walk along the path
/// from its end (the caller reverses them): an UNK edge (`unk`) becomes its byte pieces with
/// byte fallback, else one UNK id, dropped when the token after it was an UNK and the model
/// merges them (`merge`). `next_unk`: the token after this one was such an UNK; returns
/// whether this one is.
#[inline(always)]
pub(crate) fn push_token_back(
    model: &Model,
    id: u32,
    unk: Option<u32>,
    merge: bool,
    bytes: &[u8],
    next_unk: bool,
    out: &mut Vec<i32>,
) -> bool {
    if Some(id) != unk {
        out.push(model.out_id(id));
        return false;
    }
    if model.byte_fallback() {
        for &b in bytes.iter().rev() {
            out.push(model.byte_piece(b).unwrap_or(id) as i32);
        }
        return false;
    }
    if !(next_unk && merge) {
        out.push(model.out_id(id));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lattice::model::tests::{
        arb_model, arb_model_scored, arb_text, both_walks, spm_like,
    };
    use proptest::prelude::*;

    /// `back` and (where recorded) the winning ids of the character-wise pass, per walk,
    /// against the byte-wise reference.
    fn check_against_reference(m: &Model, text: &[u8]) {
        let mut rws = Workspace::new();
        forward_reference::<true>(m, text, &mut rws);
        let reached: Vec<(usize, u16, u32)> = (1..=text.len())
            .filter(|&e| rws.back[e] != 0)
            .map(|e| (e, rws.back[e], rws.ids[e]))
            .collect();
        for got in both_walks(|| {
            let mut ws = Workspace::new();
            let r = viterbi(m, text, &mut ws);
            let reached: Vec<(usize, u16, u32)> = (1..=text.len())
                .filter(|&e| ws.back[e] != 0)
                .map(|e| (e, ws.back[e], ws.ids[e]))
                .collect();
            (r.is_ok(), reached, ws.path.clone())
        }) {
            assert_eq!(got.1, reached);
            assert_eq!(got.0, text.is_empty() || rws.back[text.len()] != 0);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn matches_the_bytewise_reference(m in arb_model(4), text in arb_text(40)) {
            check_against_reference(&m, &text);
        }

        #[test]
        fn matches_the_bytewise_reference_with_long_pieces(m in arb_model(24), text in arb_text(80)) {
            check_against_reference(&m, &text);
        }

        /// Scores of ~10⁴ per piece: paths cross SentencePiece's ±10⁵ rebasing threshold
        /// several times per text, with f32 near-ties (ulp 2⁻⁷ there) everywhere.
        #[test]
        fn matches_the_reference_across_rebasing(
            m in arb_model_scored(4, -30_000.0, -3_000.0),
            text in arb_text(160),
        ) {
            check_against_reference(&m, &text);
        }
    }

    #[test]
    fn long_texts_cross_windows() {
        // Several windows of units, with pieces that straddle their borders.
        let m = spm_like(&[
            ("▁", -1.0),
            ("a", -2.0),
            ("b", -2.5),
            ("中", -3.0),
            ("ab", -2.2),
            ("▁a", -1.5),
            ("b中a", -2.0),
            ("a中a中a中a中", -4.0),
        ]);
        let unit = "ab中a▁a中b".repeat(1500);
        for text in [unit.clone(), format!("x{unit}"), format!("中{unit}ab")] {
            check_against_reference(&m, text.as_bytes());
        }
        // Pieces longer than the lockstep walk records (the one-start walk then).
        let long = "a".repeat(70);
        let m = spm_like(&[("a", -1.0), (long.as_str(), -5.0), ("aa", -1.5)]);
        check_against_reference(&m, "a".repeat(300).as_bytes());
    }

    fn pieces(m: &Model, t: &str) -> Vec<String> {
        let text = m.prepare(t.as_bytes()).unwrap();
        let mut ws = Workspace::new();
        viterbi(m, &text, &mut ws).unwrap();
        m.emit_pieces(&text, &ws.path)
            .into_iter()
            .map(|p| String::from_utf8(p).unwrap())
            .collect()
    }

    #[test]
    fn best_path_and_unk_merge() {
        let m = spm_like(&[
            ("▁", -1.0),
            ("a", -2.0),
            ("b", -2.0),
            ("ab", -3.0),
            ("▁a", -2.5),
        ]);
        assert_eq!(pieces(&m, "ab"), vec!["▁", "ab"]);
        // 'x' and 'y' are unknown: one merged UNK token.
        assert_eq!(pieces(&m, "axyb"), vec!["▁a", "xy", "b"]);
        let text = m.prepare(b"axyb").unwrap();
        let mut ws = Workspace::new();
        viterbi(&m, &text, &mut ws).unwrap();
        let mut ids = vec![];
        m.emit_ids(&text, &ws.path, &mut ids);
        assert_eq!(ids, vec![5, 0, 3]);
        assert!(pieces(&m, "").is_empty());
    }

    #[test]
    fn ties_keep_first_candidate() {
        // "▁"+"ab" and "▁"+"a"+"b" both score -3; start 3 relaxes "ab" into the end before
        // start 4 offers "b" with the same total, so "ab" is kept.
        let m = spm_like(&[
            ("▁", -1.0),
            ("a", -1.0),
            ("b", -1.0),
            ("ab", -2.0),
            ("▁ab", -3.5),
        ]);
        assert_eq!(pieces(&m, "ab"), vec!["▁", "ab"]);
    }
}
