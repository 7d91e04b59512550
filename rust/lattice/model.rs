//! The compiled unigram model: a [`VocabSpec`] turned into a trie plus per-piece lattice scores.
//!
//! The lattice of a (normalised) text has an edge `(s, e)` for every matchable piece equal to
//! `text[s..e]`, plus SentencePiece's unknown-character edges. Matchable pieces are NORMAL and
//! USER_DEFINED ones (CONTROL, UNUSED, UNKNOWN and BYTE pieces never match text, as in
//! SentencePiece). Scores follow SentencePiece's unigram encoder exactly:
//! - USER_DEFINED pieces score `0.1·(len − 1)` (SentencePiece 0.2.3; `len` in bytes for
//!   Viterbi, in characters for the lattice methods, as there), which makes them win against
//!   any split of them into log-probabilities;
//! - where no single-character piece starts, an UNK edge of one character with score
//!   `min_score − 10` (SentencePiece `kUnkPenalty`); after decoding, consecutive UNKs merge into
//!   one token, or, with `byte_fallback`, each UNK character becomes its `<0xXX>` byte pieces.
//!
//! jieba models follow jieba's own rule instead: the one-character fallback edge exists only
//! where no dictionary word starts at all, and scores the UNK piece's own score (the jieba
//! loader gives it `ln(1/total)`, jieba's weight for an unseen character).
//!
//! Positions are byte offsets of the normalised text; for non-byte-level models every piece is
//! UTF-8 so edges start and end on character boundaries only.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock};

use super::normalizer::Normalizer;
use super::trie::{CharTrie, Trie, LANES, NO_SYMBOL};
use super::vocab::{PieceKind, UnknownRule, VocabSpec};
use crate::error::{Error, Result};

/// SentencePiece's `kUnkPenalty`.
pub const UNK_PENALTY: f32 = 10.0;

/// Longest piece we accept, so that edge lengths fit the `u16` back-pointers that keep
/// Viterbi and sampling at 2 bytes of memory per input byte.
pub const MAX_PIECE_BYTES: usize = u16::MAX as usize;

/// Largest `|score|` accepted. Scores are log-probabilities (real models: tens, at most a few
/// hundred thousand for BPE-converted ones); beyond this, sums over a text leave too few
/// significant bits in f64 for the partition function, marginals and entropy (a fuzzed score
/// of −1.8e21 made `entropy` return inf, one of 4.5e15 an edge probability of e³).
pub const MAX_ABS_SCORE: f32 = 1e7;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnkRule {
    /// SentencePiece: an UNK edge wherever no single-character piece starts.
    NoSingleChar,
    /// jieba: a single-character edge wherever no piece starts at all.
    NoPieceStarts,
}

/// Per-piece weights `exp(α·v)` for one α, cached because every sampler needs them per edge.
#[derive(Debug)]
pub struct Weights {
    pub alpha: f64,
    /// `exp(α·v(id))` for every id (0 for pieces that never match).
    pub w: Vec<f64>,
    /// `α·v(id)`.
    pub log_w: Vec<f64>,
    /// True when every `|α·v| <= 150`, so that linear-domain sums with per-position rescaling
    /// cannot underflow; otherwise samplers run in the log domain.
    pub linear_ok: bool,
}

#[derive(Debug)]
pub struct Model {
    spec: VocabSpec,
    normalizer: Normalizer,
    trie: Trie,
    /// Lattice score per id as SentencePiece's encoder uses it (f32 sums).
    score32: Vec<f32>,
    /// The same in f64 for the probabilistic algorithms (user-defined bonus computed in f64).
    score64: Vec<f64>,
    is_user: Vec<bool>,
    has_user: bool,
    matchable: Vec<bool>,
    unk_id: Option<u32>,
    /// Label of UNK edges: `unk_id`, or the virtual id `vocab_size` for jieba dictionaries,
    /// which have no UNK piece (such tokens are reported as id -1).
    unk_edge: Option<u32>,
    unk_rule: UnkRule,
    byte_pieces: Option<Box<[u32; 256]>>,
    byte_level: bool,
    /// Longest edge in bytes (pieces, or one character / byte for UNK edges).
    max_edge: usize,
    /// Matchable ids sorted by their bytes (prefix queries for token healing).
    sorted: Vec<u32>,
    index: std::collections::HashMap<Vec<u8>, u32>,
    min_score: f32,
    max_score: f32,
    weights: Mutex<Option<Arc<Weights>>>,
    /// The character-level trie of the matchable pieces (byte-level for byte-level
    /// models), built on first use by a single-pass decoder: model rebuilds that only build
    /// lattices (EM steps) never pay for it.
    chars: OnceLock<std::result::Result<Chars, Error>>,
    /// Unique per constructed model: tags per-thread caches (the word cache) so a workspace
    /// used with another model never returns this one's results.
    uid: u64,
    /// Whether every "▁" of a prepared text is a cut point every segmentation passes
    /// through (see [`super::wordcache`]): no matchable piece has "▁" after its first
    /// character, whitespace is a prefix mark, and the model is not byte-level.
    word_cut: bool,
    /// Viterbi in f64 without rebasing, as HF tokenizers (models loaded from its JSON).
    hf: bool,
    /// Added tokens cut out of the raw text first (HF), if the vocabulary has any.
    splitter: Option<super::added::Splitter>,
    /// Largest |lattice score| of any edge label (pieces, user-defined bonus, UNK).
    max_abs_score: f64,
}

/// A single-pass decoder's view of the lattice ([`Model::run_pass`]), in units (characters;
/// bytes for byte-level models) counted from the start of the current window.
///
/// Edges come grouped by start, starts in increasing order, each start's edges in
/// [`Model::edges_at`] order, labelled by the node of the character trie where their piece
/// ends (`Chars::values` / `Chars::score32` give its id and score). A pass keeps its
/// per-unit values in rings of [`Chars::ring`] slots (`unit & (ring - 1)`; windows are a
/// multiple of that long, so slots carry over from one window to the next). `done(u)` comes
/// once the edges of start `u` are relaxed, and `end(u, pos)` once unit `u` is an end no
/// later edge reaches: `pos[u + max_len]` is its byte offset, and `pos` goes back
/// `max_len` units before the window (the start of any edge into it).
pub(crate) trait Pass {
    fn edge(&mut self, su: usize, eu: usize, node: u32);
    fn done(&mut self, su: usize);
    /// Start `su` is a word cut (see [`Chars::cut_sym`]): called by the one-start-at-a-time
    /// walk before its edges; the lockstep walk marks cuts in [`Block::cuts`] instead.
    #[inline(always)]
    fn cut(&mut self, _su: usize) {}
    fn end(&mut self, u: usize, pos: &[usize]);

    /// A lockstep block: its edges in order, then `done` for its starts and `end` for the
    /// ends it made final. Passes override this with loops over their fields held in
    /// locals, which the compiler cannot do through `&mut self` across the stores.
    #[inline(always)]
    fn block(&mut self, b: &Block<'_>) {
        for &x in b.list {
            let (su, eu, node) = b.edge(x);
            self.edge(su, eu, node);
        }
        for u in b.j0..b.j0 + b.lanes {
            self.done(u);
        }
        for u in b.j0 + 1..=b.j0 + b.lanes {
            self.end(u, b.pos);
        }
    }
}

/// Ring of a pass's winner per pending end: the trie node of its piece (whose length in
/// units is `Chars::node_len`), or 0 (the root, no piece) while there is none.
#[derive(Debug, Default)]
pub(crate) struct Winners {
    pub node: Vec<u32>,
}

impl Winners {
    pub fn reset(&mut self, size: usize) {
        self.node.clear();
        self.node.resize(size, 0);
    }
}

/// [`Pass::end`] for the passes that record one winner per end (`node`: ring of its trie
/// node): writes its byte length to `back` (0: unreached) and, with `ids`, its piece id,
/// at the end's byte offset (`pos[ch.trie.max_len + u]`), and frees the slot.
#[inline(always)]
pub(crate) fn record_end(
    ch: &Chars,
    u: usize,
    pos: &[usize],
    slot: usize,
    node: &mut [u32],
    back: &mut [u16],
    ids: Option<&mut [u32]>,
) {
    let nd = node[slot] as usize;
    let h = ch.trie.max_len + u;
    let e = pos[h];
    back[e] = (e - pos[h - ch.trie.node_len[nd] as usize]) as u16;
    if let Some(ids) = ids {
        ids[e] = ch.values[nd];
    }
    node[slot] = 0;
}

/// The edges of one block of `lanes` consecutive starts `j0..` found by the lockstep walk.
pub(crate) struct Block<'a> {
    pub j0: usize,
    pub lanes: usize,
    /// `rows[d][k]`: node of lane `k` at depth `d + 1`.
    pub rows: &'a [[u32; LANES]; super::trie::MAX_LOCKSTEP_DEPTH],
    /// The edges in pass order as `k | d << 4`: from unit `j0 + k` to `j0 + k + d + 1`.
    pub list: &'a [u16],
    /// Bit `k` set: start `j0 + k` is a word cut (see [`Chars::cut_sym`]).
    pub cuts: u32,
    /// Byte offsets of the units, from `max_len` units before the window (see [`Pass`]).
    pub pos: &'a [usize],
}

impl Block<'_> {
    /// Start unit, end unit and node of list entry `x`.
    #[inline(always)]
    pub fn edge(&self, x: u16) -> (usize, usize, u32) {
        let k = (x & 15) as usize;
        // Depths are below MAX_LOCKSTEP_DEPTH = 64 by construction; the mask lets the
        // compiler drop the bounds check.
        let d = (x >> 4) as usize & (super::trie::MAX_LOCKSTEP_DEPTH - 1);
        (self.j0 + k, self.j0 + k + d + 1, self.rows[d][k])
    }
}

/// For each byte `b`: the positions of its set bits, lowest first, as `position << 4` in
/// the successive 16-bit lanes of a `u128` (entries of a [`Block`] list for lane 0), the
/// rest zero.
static BIT_LISTS: [u128; 256] = {
    let mut t = [0u128; 256];
    let mut b = 0;
    while b < 256 {
        let mut n = 0;
        let mut i = 0;
        while i < 8 {
            if b & (1 << i) != 0 {
                t[b] |= ((i as u128) << 4) << (16 * n);
                n += 1;
            }
            i += 1;
        }
        b += 1;
    }
    t
};

/// The character-level trie and what the passes read per node.
#[derive(Debug)]
pub(crate) struct Chars {
    pub trie: CharTrie,
    /// Piece id of each node (then the UNK label, see `CharTrie::add_label`).
    pub values: Vec<u32>,
    /// Lattice score (f32) of each node's piece; 0 where none ends.
    pub score32: Vec<f32>,
    /// Ring slots the passes use (a power of two): an end is pending at most `max_len`
    /// units after a start whose block is not done, starts of a block `LANES` apart.
    pub ring: usize,
    /// Units per window: a multiple of `ring`.
    window: usize,
    /// Symbol of "▁" when the model cuts words (`Model::word_cut`) and some piece holds the
    /// mark: every unit with this symbol is a node all segmentations pass through. The
    /// perfect sampler renormalises there, so its draws decompose into independent words
    /// (see `super::wordsample`).
    pub cut_sym: Option<u32>,
}

/// Reusable buffers of [`Model::run_pass`].
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Symbols of the window's units, then `LANES` `NO_SYMBOL`s.
    sym: Vec<u32>,
    /// Byte offsets: of the `max_len` units before the window (zeros in the first), of the
    /// window's units, and where the last one ends.
    pos: Vec<usize>,
    /// Lockstep walk output of two blocks, `rows[d][k]` then `rows[MAX_LOCKSTEP_DEPTH +
    /// d][k]`.
    rows: Vec<[u32; LANES]>,
    /// One block's edge list (see [`Block`]).
    list: Vec<u16>,
}

/// Units (characters) whose symbols are computed at a time (at least): the walks need
/// `max_len` more after the last start, so windows keep the buffers small on long texts.
const WINDOW: usize = 2048;

/// Writes a block's edge list (see [`Block`]) from the lanes' hit bits and returns its
/// length: each lane's pieces shortest first, then its UNK edge when it needs one (`unk`:
/// the UNK label's node; its lane's `rows[0]` entry, unused by any piece, is set to it).
/// Branch-free per lane: table lookups by byte of the hit bits, 16-byte stores of eight
/// entries that the next ones overwrite, counts by popcount.
///
/// # Safety
/// The CPU must support AVX-512F and POPCNT; `list` has room for the entries plus 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
unsafe fn list_edges(
    bits: &[u64],
    rows: &mut [[u32; LANES]],
    unk: Option<u32>,
    single_rule: bool,
    list: &mut [u16],
) -> usize {
    use std::arch::x86_64::*;
    let mut n = 0usize;
    let table = BIT_LISTS.as_ptr() as *const __m128i;
    for (k, &b) in bits.iter().enumerate() {
        let lo = (b & 0xFF) as usize;
        let hi = ((b >> 8) & 0xFF) as usize;
        // SAFETY: the table has 256 entries, `list` room for `n + 8` (contract; n grows by
        // at most the number of entries written so far).
        unsafe {
            let lane = _mm_set1_epi16(k as i16);
            let a = _mm_add_epi16(_mm_loadu_si128(table.add(lo)), lane);
            _mm_storeu_si128(list.as_mut_ptr().add(n) as *mut __m128i, a);
            n += lo.count_ones() as usize;
            // Pieces of more than 8 units are rare: mostly skipped, predictably.
            if hi != 0 {
                let h = _mm_add_epi16(
                    _mm_loadu_si128(table.add(hi)),
                    _mm_set1_epi16((k | 8 << 4) as i16),
                );
                _mm_storeu_si128(list.as_mut_ptr().add(n) as *mut __m128i, h);
                n += hi.count_ones() as usize;
            }
        }
        let mut rest = b >> 16;
        while rest != 0 {
            // Pieces of more than 16 characters: rare, one at a time.
            let d = rest.trailing_zeros() as u16 + 16;
            rest &= rest - 1;
            list[n] = k as u16 | d << 4;
            n += 1;
        }
        if let Some(u) = unk {
            let need = if single_rule { b & 1 == 0 } else { b == 0 };
            let r = &mut rows[0][k];
            *r = if need { u } else { *r };
            list[n] = k as u16;
            n += need as usize;
        }
    }
    n
}

#[inline(always)]
pub(crate) fn utf8_len(lead: u8) -> usize {
    // SentencePiece's OneCharLen table; continuation bytes count as 1 (never reached for
    // valid UTF-8 because we only start at character boundaries).
    const T: [u8; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4];
    T[(lead >> 4) as usize] as usize
}

impl Model {
    /// Compiles a vocabulary. Cost is one sort plus one trie build over the piece bytes, so
    /// rebuilding per EM iteration is cheap; [`Model::with_scores`] skips even that.
    pub fn from_spec(spec: VocabSpec) -> Result<Model> {
        spec.validate()?;
        // User-defined pieces pass through the normaliser untouched, as SentencePiece builds
        // it: without that, `ＡＢ` as a user-defined piece was NFKC'd to `AB` before the
        // lattice saw it and never matched.
        let normalizer = Normalizer::for_vocab(&spec)?;
        let n = spec.pieces.len();
        let mut keys: Vec<(&[u8], u32)> = Vec::with_capacity(n);
        let mut matchable = vec![false; n];
        let mut is_user = vec![false; n];
        let mut min_score = f32::MAX;
        let mut max_score = f32::MIN_POSITIVE;
        let mut unk_id = spec.unk_id;
        for (i, p) in spec.pieces.iter().enumerate() {
            if p.score.abs() > MAX_ABS_SCORE {
                return Err(Error::Limit(format!(
                    "piece {i} has score {}; scores are log-probabilities and must lie \
                     within ±{MAX_ABS_SCORE:e}",
                    p.score
                )));
            }
            if p.piece.len() > MAX_PIECE_BYTES {
                return Err(Error::Limit(format!(
                    "piece {i} is {} bytes long; the limit is {MAX_PIECE_BYTES}",
                    p.piece.len()
                )));
            }
            match p.kind {
                PieceKind::Normal => {
                    min_score = min_score.min(p.score);
                    max_score = max_score.max(p.score);
                    keys.push((&p.piece, i as u32));
                    matchable[i] = true;
                }
                PieceKind::UserDefined => {
                    keys.push((&p.piece, i as u32));
                    matchable[i] = true;
                    is_user[i] = true;
                }
                PieceKind::Unknown if unk_id.is_none() => {
                    unk_id = Some(i as u32);
                }
                _ => {}
            }
        }
        // SentencePiece initialises max with FLT_MIN (the smallest positive float) and maps
        // the untouched initial values to 0; reproduce both quirks for identical scores.
        if min_score == f32::MAX {
            min_score = 0.0;
        }
        if max_score == f32::MIN_POSITIVE {
            max_score = 0.0;
        }
        let (unk_rule, unk_score, unk_edge) = match spec.unknown {
            UnknownRule::SentencePiece => (UnkRule::NoSingleChar, min_score - UNK_PENALTY, unk_id),
            UnknownRule::JiebaChar { score } => (
                UnkRule::NoPieceStarts,
                score,
                Some(unk_id.unwrap_or(n as u32)),
            ),
        };
        // One extra slot for the virtual UNK edge label.
        let mut score32 = vec![0f32; n + 1];
        let mut score64 = vec![0f64; n + 1];
        for (i, p) in spec.pieces.iter().enumerate() {
            if is_user[i] {
                // SentencePiece 0.2.3's `GetUserDefinedScore(length)`: a float `0.1·(len − 1)`,
                // where its Viterbi counts `len` in bytes and its lattice (sampling, k-best,
                // marginals) in characters; the two differ for non-ASCII pieces, as there.
                let bytes = p.piece.len();
                let chars = std::str::from_utf8(&p.piece).map_or(bytes, |t| t.chars().count());
                score32[i] = (0.1 * (bytes as f64 - 1.0)) as f32;
                score64[i] = (0.1 * (chars as f64 - 1.0)) as f32 as f64;
            } else if matchable[i] {
                score32[i] = p.score;
                score64[i] = p.score as f64;
            }
        }
        // HF tokenizers' Unigram runs SentencePiece's optimised Viterbi in f64 without the
        // rebasing, its UNK scoring `min − 10` in f64 with the minimum over every vocabulary
        // entry: the models it wrote decode that way here too (see `viterbi`).
        let hf = spec.source == "hf";
        if let Some(u) = unk_edge {
            score32[u as usize] = unk_score;
            let all_min = spec
                .pieces
                .iter()
                .map(|p| p.score as f64)
                .fold(f64::INFINITY, f64::min);
            score64[u as usize] = if hf && spec.unknown == UnknownRule::SentencePiece {
                all_min - UNK_PENALTY as f64
            } else {
                unk_score as f64
            };
        }
        let trie = Trie::build(&keys)?;
        let byte_pieces = if spec.byte_fallback {
            let mut t = Box::new([unk_id.unwrap_or(u32::MAX); 256]);
            for (i, p) in spec.pieces.iter().enumerate() {
                if p.kind == PieceKind::Byte {
                    if let Some(b) = parse_byte_piece(&p.piece) {
                        t[b as usize] = i as u32;
                    }
                }
            }
            if t.contains(&u32::MAX) {
                return Err(Error::invalid(
                    "byte_fallback is set but some <0xXX> byte pieces are missing and there is no UNK piece",
                ));
            }
            Some(t)
        } else {
            None
        };
        let max_piece = keys.iter().map(|k| k.0.len()).max().unwrap_or(1);
        let max_edge = max_piece.max(if spec.byte_level { 1 } else { 4 });
        let mut sorted: Vec<u32> = keys.iter().map(|k| k.1).collect();
        sorted.sort_unstable_by(|&a, &b| {
            spec.pieces[a as usize]
                .piece
                .cmp(&spec.pieces[b as usize].piece)
        });
        let index = spec
            .pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (p.piece.clone(), i as u32))
            .collect();
        let word_cut = !spec.byte_level
            && !spec.normalizer.treat_whitespace_as_suffix
            && keys.iter().all(|k| {
                let mark = "\u{2581}".as_bytes();
                // A piece is valid UTF-8 (trie keys of non-byte-level models), so the mark's
                // bytes only occur as the mark; allowed only at offset 0.
                !k.0.windows(3).skip(1).any(|w| w == mark)
            });
        let max_abs_score = keys
            .iter()
            .map(|k| score32[k.1 as usize].abs() as f64)
            .chain(keys.iter().map(|k| score64[k.1 as usize].abs()))
            .chain(unk_edge.map(|u| score32[u as usize].abs() as f64))
            .fold(0.0f64, f64::max);
        static NEXT_UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let uid = NEXT_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Model {
            uid,
            hf,
            splitter: super::added::Splitter::new(&spec),
            word_cut,
            max_abs_score,
            byte_level: spec.byte_level,
            normalizer,
            trie,
            score32,
            score64,
            has_user: is_user.iter().any(|&u| u),
            is_user,
            matchable,
            unk_id,
            unk_edge,
            unk_rule,
            byte_pieces,
            max_edge,
            sorted,
            index,
            min_score,
            max_score,
            weights: Mutex::new(None),
            chars: OnceLock::new(),
            spec,
        })
    }

    /// The same pieces with new log-probabilities (EM M-step): reuses nothing but is the
    /// single entry point trainers should call; scores must be finite.
    pub fn with_scores(&self, scores: &[f32]) -> Result<Model> {
        if scores.len() != self.spec.pieces.len() {
            return Err(Error::invalid(format!(
                "expected {} scores, got {}",
                self.spec.pieces.len(),
                scores.len()
            )));
        }
        let mut spec = self.spec.clone();
        for (p, &s) in spec.pieces.iter_mut().zip(scores) {
            p.score = s;
        }
        Model::from_spec(spec)
    }

    pub fn spec(&self) -> &VocabSpec {
        &self.spec
    }
    pub fn vocab_size(&self) -> usize {
        self.spec.pieces.len()
    }
    pub fn byte_level(&self) -> bool {
        self.byte_level
    }
    pub fn byte_fallback(&self) -> bool {
        self.byte_pieces.is_some()
    }
    pub fn unk_id(&self) -> Option<u32> {
        self.unk_id
    }
    /// The label of UNK edges (see the field); `None` when the model has no unknown rule.
    pub fn unk_edge(&self) -> Option<u32> {
        self.unk_edge
    }
    /// The output id of an edge label: the virtual UNK label becomes -1.
    #[inline]
    pub fn out_id(&self, id: u32) -> i32 {
        if id as usize == self.spec.pieces.len() {
            -1
        } else {
            id as i32
        }
    }
    pub fn unk_rule(&self) -> UnkRule {
        self.unk_rule
    }
    /// Whether consecutive UNK tokens merge into one (SentencePiece) or stay one per
    /// character (jieba).
    pub fn merges_unk(&self) -> bool {
        self.unk_rule == UnkRule::NoSingleChar
    }
    /// Identity of this model instance (unique within the process).
    pub(crate) fn uid(&self) -> u64 {
        self.uid
    }
    /// Whether the word cache's decomposition holds for this model (see the field).
    /// The added-token splitter, when the vocabulary has tokens matched in the raw text.
    pub fn splitter(&self) -> Option<&super::added::Splitter> {
        self.splitter.as_ref()
    }

    /// Whether Viterbi follows HF tokenizers' arithmetic (f64 sums, no rebasing) instead of
    /// SentencePiece 0.2.3's (f32 sums, rebased).
    pub(crate) fn hf_viterbi(&self) -> bool {
        self.hf
    }

    pub(crate) fn word_cut(&self) -> bool {
        self.word_cut
    }
    /// Largest |score| of any edge label.
    pub(crate) fn max_abs_score(&self) -> f64 {
        self.max_abs_score
    }
    pub fn max_edge(&self) -> usize {
        self.max_edge
    }
    pub fn min_score(&self) -> f32 {
        self.min_score
    }
    pub fn max_score(&self) -> f32 {
        self.max_score
    }
    pub fn normalizer(&self) -> &Normalizer {
        &self.normalizer
    }
    pub fn is_matchable(&self, id: u32) -> bool {
        self.matchable.get(id as usize).copied().unwrap_or(false)
    }
    pub fn has_user_defined(&self) -> bool {
        self.has_user
    }
    #[inline(always)]
    pub fn is_user_defined(&self, id: u32) -> bool {
        self.is_user.get(id as usize).copied().unwrap_or(false)
    }
    pub fn piece(&self, id: u32) -> Option<&[u8]> {
        self.spec
            .pieces
            .get(id as usize)
            .map(|p| p.piece.as_slice())
    }
    pub fn kind(&self, id: u32) -> Option<PieceKind> {
        self.spec.pieces.get(id as usize).map(|p| p.kind)
    }
    pub(crate) fn byte_piece(&self, b: u8) -> Option<u32> {
        self.byte_pieces.as_ref().map(|t| t[b as usize])
    }
    pub fn piece_to_id(&self, piece: &[u8]) -> Option<u32> {
        self.index.get(piece).copied()
    }
    pub(crate) fn sorted_ids(&self) -> &[u32] {
        &self.sorted
    }

    /// Lattice score of an edge labelled `id` (f32, as SentencePiece's encoder sums it).
    #[inline(always)]
    pub fn score32(&self, id: u32) -> f32 {
        self.score32[id as usize]
    }
    /// Lattice score of an edge labelled `id`.
    #[inline(always)]
    pub fn score(&self, id: u32) -> f64 {
        self.score64[id as usize]
    }
    pub fn scores(&self) -> &[f64] {
        &self.score64
    }

    /// The text the lattice runs over: normalised UTF-8, or the raw bytes for byte-level
    /// models.
    pub fn prepare<'a>(&self, text: &'a [u8]) -> Result<Cow<'a, [u8]>> {
        if self.byte_level {
            return Ok(Cow::Borrowed(text));
        }
        let s = check_utf8(text)?;
        if self.normalizer.is_identity() {
            return Ok(Cow::Borrowed(text));
        }
        Ok(Cow::Owned(self.normalizer.normalize(s).into_bytes()))
    }

    /// As [`Self::prepare`], normalising into `buf` when needed (reused across a batch).
    pub fn prepare_into<'a>(&self, text: &'a [u8], buf: &'a mut Vec<u8>) -> Result<&'a [u8]> {
        if self.byte_level {
            return Ok(text);
        }
        self.prepare_str_into(check_utf8(text)?, buf)
    }

    /// As [`Self::prepare_into`] for text already known to be UTF-8 (a Python `str`): skips
    /// the validation pass, which costs about as much as a plain-ASCII normalisation.
    pub fn prepare_str_into<'a>(&self, text: &'a str, buf: &'a mut Vec<u8>) -> Result<&'a [u8]> {
        if self.byte_level || self.normalizer.is_identity() {
            return Ok(text.as_bytes());
        }
        self.normalizer.normalize_into(text, buf);
        Ok(&buf[..])
    }

    /// Length of the lattice unit starting at `s` (one character, or one byte when
    /// byte-level).
    #[inline(always)]
    pub fn unit_len(&self, text: &[u8], s: usize) -> usize {
        if self.byte_level {
            1
        } else {
            utf8_len(text[s]).min(text.len() - s)
        }
    }

    /// Calls `f(end, id)` for every edge starting at `s`, in SentencePiece's order (pieces by
    /// increasing length, then the UNK edge). Returns false when no edge starts at `s`.
    #[inline(always)]
    pub fn edges_at(&self, text: &[u8], s: usize, mut f: impl FnMut(usize, u32)) -> bool {
        let unit = self.unit_len(text, s);
        let mut single = false;
        let mut any = false;
        self.trie.common_prefixes(&text[s..], |len, id| {
            any = true;
            single |= len == unit;
            f(s + len, id);
        });
        let need_unk = match self.unk_rule {
            UnkRule::NoSingleChar => !single,
            UnkRule::NoPieceStarts => !any,
        };
        if need_unk {
            if let Some(u) = self.unk_edge {
                f(s + unit, u);
                return true;
            }
        }
        any
    }

    /// The character-level trie (built on first use).
    pub(crate) fn chars(&self) -> Result<&Chars> {
        self.chars
            .get_or_init(|| {
                let keys: Vec<(&[u8], u32)> = self
                    .matchable
                    .iter()
                    .enumerate()
                    .filter(|&(_, &m)| m)
                    .map(|(i, _)| (self.spec.pieces[i].piece.as_slice(), i as u32))
                    .collect();
                let mut trie = if self.byte_level {
                    CharTrie::build_bytes(&keys)?
                } else {
                    CharTrie::build(&keys)?
                };
                trie.unk_node = self.unk_edge.map(|u| trie.add_label(u));
                let values = trie.values.clone();
                let score32 = values
                    .iter()
                    .map(|&v| self.score32.get(v as usize).copied().unwrap_or(0.0))
                    .collect();
                let ring = (trie.max_len + 2 * LANES + 1).next_power_of_two();
                let cut_sym = Some(trie.symbol(0x2581))
                    .filter(|&s| self.word_cut && !self.byte_level && s != NO_SYMBOL);
                Ok(Chars {
                    cut_sym,
                    window: ring.max(WINDOW),
                    trie,
                    values,
                    score32,
                    ring,
                })
            })
            .as_ref()
            .map_err(|e| e.clone())
    }

    /// Runs `pass` over the lattice of `text` (see [`Pass`]): the same edges as
    /// [`Self::edges_at`] at every unit start, found character by character, with AVX-512
    /// `LANES` starts at a time.
    /// Returns the unit index (in the last window) of the end of the text.
    #[inline(always)]
    pub(crate) fn run_pass<P: Pass>(
        &self,
        ch: &Chars,
        text: &[u8],
        scan: &mut Scan,
        pass: &mut P,
    ) -> usize {
        #[cfg(test)]
        if tests::FORCE_SCALAR.with(|f| f.get()) {
            return self.run_pass_scalar(ch, text, scan, pass);
        }
        #[cfg(target_arch = "x86_64")]
        if ch.trie.max_len <= super::trie::MAX_LOCKSTEP_DEPTH
            && crate::simd::level() == crate::simd::Level::Avx512
            && std::arch::is_x86_feature_detected!("popcnt")
        {
            // SAFETY: the level is Avx512 only after run-time detection of AVX-512F, and
            // POPCNT was detected.
            return unsafe { self.run_pass_avx512(ch, text, scan, pass) };
        }
        self.run_pass_scalar(ch, text, scan, pass)
    }

    /// Symbols of the next window from byte `from`: fills `scan.sym` and `scan.pos` (see
    /// [`Scan`]); `prev` is how many units the previous window started (`None` for the
    /// first). Returns how many of the units are starts of this window and where the next
    /// window begins.
    #[inline(always)]
    fn window(
        &self,
        ch: &Chars,
        text: &[u8],
        from: usize,
        prev: Option<usize>,
        scan: &mut Scan,
    ) -> (usize, usize) {
        let ct = &ch.trie;
        let h = ct.max_len;
        match prev {
            // The previous window's last `h` starts become this one's history.
            Some(starts) => {
                scan.pos.copy_within(starts..starts + h, 0);
                scan.pos.truncate(h);
            }
            None => {
                scan.pos.clear();
                scan.pos.resize(h, 0);
            }
        }
        scan.sym.clear();
        let end = ct.symbols(text, from, ch.window + h, &mut scan.sym, &mut scan.pos);
        let m = scan.sym.len();
        scan.pos.push(end);
        scan.sym.extend_from_slice(&[NO_SYMBOL; LANES]);
        if m > ch.window {
            (ch.window, scan.pos[h + ch.window])
        } else {
            (m, text.len())
        }
    }

    /// The UNK edge's label if a start with these matches needs one: `single` says a piece
    /// of exactly one unit starts there, `any` that some piece does.
    #[inline(always)]
    fn needs_unk(&self, single: bool, any: bool) -> bool {
        match self.unk_rule {
            UnkRule::NoSingleChar => !single,
            UnkRule::NoPieceStarts => !any,
        }
    }

    /// Calls `f(len, node)` for every edge starting at unit `j` of `sym` (symbols from
    /// `ch.trie.symbols`): length in units, label as a node of `ch` (`ch.values` gives its
    /// id). The same edges in the same order as [`Self::edges_at`] at that unit's byte
    /// offset, one trie step per character instead of per byte.
    #[inline(always)]
    pub(crate) fn unit_edges(
        &self,
        ch: &Chars,
        sym: &[u32],
        j: usize,
        mut f: impl FnMut(usize, u32),
    ) {
        let ct = &ch.trie;
        let mut single = false;
        let mut any = false;
        ct.common_prefixes(&sym[j..], |len, node| {
            single |= len == 1;
            any = true;
            f(len, node);
        });
        if let Some(u) = ct.unk_node.filter(|_| self.needs_unk(single, any)) {
            f(1, u);
        }
    }

    /// One start at a time (no AVX-512, or pieces longer than the lockstep walk handles).
    #[inline(always)]
    fn run_pass_scalar<P: Pass>(
        &self,
        ch: &Chars,
        text: &[u8],
        scan: &mut Scan,
        pass: &mut P,
    ) -> usize {
        let ct = &ch.trie;
        let mut from = 0;
        let mut prev = None;
        let mut last = 0;
        while from < text.len() {
            let (starts, next) = self.window(ch, text, from, prev, scan);
            let (sym, pos) = (&scan.sym[..], &scan.pos[..]);
            for j in 0..starts {
                if Some(sym[j]) == ch.cut_sym {
                    pass.cut(j);
                }
                let mut single = false;
                let mut any = false;
                ct.common_prefixes(&sym[j..], |len, node| {
                    single |= len == 1;
                    any = true;
                    pass.edge(j, j + len, node);
                });
                if let Some(u) = ct.unk_node.filter(|_| self.needs_unk(single, any)) {
                    pass.edge(j, j + 1, u);
                }
                pass.done(j);
                pass.end(j + 1, pos);
            }
            from = next;
            prev = Some(starts);
            last = starts;
        }
        last
    }

    /// The lockstep pass: `LANES` starts walked at once by AVX-512 gathers (two blocks
    /// interleaved), each block's edges then listed in pass order (table lookups on the hit
    /// bits, no branch per start) and relaxed in one loop: a loop per start would
    /// mispredict its exit about once per start, which is what the per-start walk's end
    /// cost before.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and POPCNT, and `max_len <= MAX_LOCKSTEP_DEPTH`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,popcnt")]
    unsafe fn run_pass_avx512<P: Pass>(
        &self,
        ch: &Chars,
        text: &[u8],
        scan: &mut Scan,
        pass: &mut P,
    ) -> usize {
        use super::trie::MAX_LOCKSTEP_DEPTH;
        let ct = &ch.trie;
        if scan.rows.len() < 2 * MAX_LOCKSTEP_DEPTH {
            scan.rows.resize(2 * MAX_LOCKSTEP_DEPTH, [0; LANES]);
        }
        // A block has at most LANES * (max_len + 1) edges; eight-entry stores write up to
        // seven past the last.
        let cap = LANES * (MAX_LOCKSTEP_DEPTH + 1) + 8;
        if scan.list.len() < cap {
            scan.list.resize(cap, 0);
        }
        let unk = ct.unk_node;
        let single_rule = self.unk_rule == UnkRule::NoSingleChar;
        let mut bits = [[0u64; LANES]; 2];
        let mut from = 0;
        let mut prev = None;
        let mut last = 0;
        while from < text.len() {
            let (starts, next) = self.window(ch, text, from, prev, scan);
            let Scan {
                sym,
                pos,
                rows,
                list,
            } = &mut *scan;
            let (rows0, rows1) = rows.split_at_mut(MAX_LOCKSTEP_DEPTH);
            let mut j0 = 0;
            while j0 < starts {
                // Two blocks walked together (the second may be empty).
                let lanes = [
                    (starts - j0).min(LANES),
                    (starts - j0).saturating_sub(LANES).min(LANES),
                ];
                let [bits0, bits1] = &mut bits;
                // SAFETY: AVX-512F is available (caller); `sym` holds the window's symbols
                // then `LANES` `NO_SYMBOL`s, which is what the walks read from `j0` and
                // `j0 + LANES` (`j0 + LANES <= sym.len()` as `j0 < starts`).
                unsafe {
                    ct.walk_avx512(
                        [&sym[j0..], &sym[j0 + LANES..]],
                        lanes,
                        [&mut *rows0, &mut *rows1],
                        [bits0, bits1],
                    )
                };
                for blk in 0..2 {
                    let lanes = lanes[blk];
                    if lanes == 0 {
                        break;
                    }
                    let rows: &mut [[u32; LANES]; MAX_LOCKSTEP_DEPTH] =
                        (if blk == 0 { &mut *rows0 } else { &mut *rows1 })
                            .try_into()
                            .expect("rows of one block");
                    // SAFETY: AVX-512F and POPCNT (caller); `list` has `cap` entries.
                    let n =
                        unsafe { list_edges(&bits[blk][..lanes], rows, unk, single_rule, list) };
                    let jb = j0 + blk * LANES;
                    let cuts = match ch.cut_sym {
                        // SAFETY: AVX-512F (caller); `sym` holds `LANES` entries from `jb`
                        // (`jb < starts`, then the `NO_SYMBOL` padding).
                        Some(c) => unsafe {
                            use std::arch::x86_64::*;
                            let v = _mm512_loadu_si512(sym[jb..jb + LANES].as_ptr() as *const _);
                            let m = _mm512_cmpeq_epi32_mask(v, _mm512_set1_epi32(c as i32));
                            m as u32 & ((1u32 << lanes) - 1)
                        },
                        None => 0,
                    };
                    pass.block(&Block {
                        j0: jb,
                        lanes,
                        rows,
                        list: &list[..n],
                        pos,
                        cuts,
                    });
                }
                j0 += 2 * LANES;
            }
            from = next;
            prev = Some(starts);
            last = starts;
        }
        last
    }

    /// Whether an UNK edge starts at `s` (for parsing id sequences back into paths).
    pub fn unk_edge_at(&self, text: &[u8], s: usize) -> bool {
        if self.unk_edge.is_none() || s >= text.len() {
            return false;
        }
        let unit = self.unit_len(text, s);
        let mut single = false;
        let mut any = false;
        self.trie.common_prefixes(&text[s..], |len, _| {
            any = true;
            single |= len == unit;
        });
        match self.unk_rule {
            UnkRule::NoSingleChar => !single,
            UnkRule::NoPieceStarts => !any,
        }
    }

    /// The piece id labelling edge `(s, e)` (pieces are unique, and an UNK edge only exists
    /// where no piece has the same span).
    pub fn edge_id(&self, text: &[u8], s: usize, e: usize) -> Option<u32> {
        if let Some(id) = self.trie.get(&text[s..e]) {
            return Some(id);
        }
        if self.unk_edge_at(text, s) && s + self.unit_len(text, s) == e {
            return self.unk_edge;
        }
        None
    }

    /// Error for a text that has no segmentation (only possible without an UNK piece).
    pub fn unsegmentable(&self, text: &[u8], at: usize) -> Error {
        let shown = String::from_utf8_lossy(&text[at..(at + 4).min(text.len())]).into_owned();
        Error::invalid(format!(
            "the text cannot be segmented: no piece covers normalised byte offset {at} ({shown:?}) \
             and the model has no UNK piece"
        ))
    }

    /// `exp(α·v)` for every piece, cached for the most recent α.
    pub fn weights(&self, alpha: f64) -> Arc<Weights> {
        let mut g = self.weights.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = g.as_ref() {
            if w.alpha.to_bits() == alpha.to_bits() {
                return w.clone();
            }
        }
        let log_w: Vec<f64> = self
            .score64
            .iter()
            .map(|&v| if alpha == 0.0 { 0.0 } else { alpha * v })
            .collect();
        let linear_ok = log_w.iter().all(|x| x.abs() <= 150.0);
        let w = log_w.iter().map(|x| x.exp()).collect();
        let arc = Arc::new(Weights {
            alpha,
            w,
            log_w,
            linear_ok,
        });
        *g = Some(arc.clone());
        arc
    }

    /// Turns a path (edges as `(start, end, id)` in text order) into output ids: consecutive
    /// UNKs merge into one, and with byte fallback each UNK character becomes byte pieces.
    pub fn emit_ids(&self, text: &[u8], path: &[(usize, usize, u32)], out: &mut Vec<i32>) {
        // jieba keeps unknown characters as separate tokens; SentencePiece merges them.
        let merge = self.merges_unk();
        let mut prev_unk = false;
        for &(s, e, id) in path {
            if Some(id) == self.unk_edge {
                if let Some(t) = &self.byte_pieces {
                    out.extend(text[s..e].iter().map(|&b| t[b as usize] as i32));
                    prev_unk = false;
                    continue;
                }
                if !(prev_unk && merge) {
                    out.push(self.out_id(id));
                }
                prev_unk = true;
            } else {
                out.push(id as i32);
                prev_unk = false;
            }
        }
    }

    /// The input span of each id [`Self::emit_ids`] gives for the same path, as SentencePiece
    /// reports them (`begin`/`end` of its `SentencePieceText`): an edge over prepared bytes
    /// `s..e` came from input bytes `off(s)..off(e)` (`off`: the normaliser's offsets); merged
    /// UNKs extend the previous span; the byte pieces of a byte-fallback character all start
    /// where it starts and only the last one ends where it ends.
    pub fn emit_spans(
        &self,
        path: &[(usize, usize, u32)],
        off: impl Fn(usize) -> usize,
        out: &mut Vec<[usize; 2]>,
    ) {
        let merge = self.merges_unk();
        let mut prev_unk = false;
        for &(s, e, id) in path {
            let (b, f) = (off(s), off(e));
            if Some(id) == self.unk_edge {
                if self.byte_pieces.is_some() {
                    out.extend(std::iter::repeat_n([b, b], e - s - 1));
                    out.push([b, f]);
                    prev_unk = false;
                    continue;
                }
                match out.last_mut() {
                    Some(last) if prev_unk && merge => last[1] = f,
                    _ => out.push([b, f]),
                }
                prev_unk = true;
            } else {
                out.push([b, f]);
                prev_unk = false;
            }
        }
    }

    /// Surface strings of a path with the same merging as [`Self::emit_ids`]; byte-fallback
    /// tokens are shown as their `<0xXX>` piece names, everything else as the text it covers.
    pub fn emit_pieces(&self, text: &[u8], path: &[(usize, usize, u32)]) -> Vec<Vec<u8>> {
        let merge = self.merges_unk();
        let mut out: Vec<Vec<u8>> = Vec::with_capacity(path.len());
        let mut prev_unk = false;
        for &(s, e, id) in path {
            if Some(id) == self.unk_edge {
                if let Some(t) = &self.byte_pieces {
                    for &b in &text[s..e] {
                        out.push(self.spec.pieces[t[b as usize] as usize].piece.clone());
                    }
                    prev_unk = false;
                    continue;
                }
                if prev_unk && merge {
                    if let Some(last) = out.last_mut() {
                        last.extend_from_slice(&text[s..e]);
                    }
                } else {
                    out.push(text[s..e].to_vec());
                }
                prev_unk = true;
            } else {
                out.push(text[s..e].to_vec());
                prev_unk = false;
            }
        }
        out
    }

    /// Decodes ids back to bytes. Models that escape whitespace (SentencePiece's) follow
    /// `sentencepiece` 0.2.3's `Decode` (see [`Self::decode_spm`]); the others concatenate
    /// their pieces, byte pieces giving their byte and UNK `" ⁇ "`.
    pub fn decode(&self, ids: &[i64]) -> Result<Vec<u8>> {
        let n = self.spec.pieces.len();
        if let Some((k, &id)) = ids
            .iter()
            .enumerate()
            .find(|&(_, &id)| id < 0 || id as u64 >= n as u64)
        {
            return Err(Error::invalid(format!(
                "id {id} at position {k} is out of range for a vocabulary of {n} pieces"
            )));
        }
        if !self.byte_level && self.spec.normalizer.escape_whitespaces {
            return Ok(self.decode_spm(ids));
        }
        let mut out = Vec::new();
        for &id in ids {
            let p = &self.spec.pieces[id as usize];
            match p.kind {
                PieceKind::Control => {}
                PieceKind::Unknown if !self.byte_level => out.extend_from_slice(UNK_SURFACE),
                PieceKind::Byte => match parse_byte_piece(&p.piece) {
                    Some(b) => out.push(b),
                    None => out.extend_from_slice(&p.piece),
                },
                _ => out.extend_from_slice(&p.piece),
            }
        }
        Ok(out)
    }

    /// SentencePiece's decoding (ids already checked): control pieces vanish, UNK is
    /// `" ⁇ "`, each run of byte pieces is read as UTF-8 with every invalid byte a U+FFFD,
    /// and `▁` becomes a space, except that the first piece's leading `▁` (the dummy prefix)
    /// is dropped, and with `remove_extra_whitespaces` the leading `▁` of every piece until
    /// some text has been produced. Not done: a model's own `unk_surface` and denormaliser
    /// rules (the default surface and none are what nearly every model has).
    fn decode_spm(&self, ids: &[i64]) -> Vec<u8> {
        const SPACE: &[u8] = "\u{2581}".as_bytes();
        let nz = &self.spec.normalizer;
        let strip_bos = nz.add_dummy_prefix || nz.remove_extra_whitespaces;
        let mut text = Vec::new();
        let mut run = Vec::new();
        let (mut is_bos_ws, mut bos_ws_seen) = (true, false);
        for &id in ids {
            let p = &self.spec.pieces[id as usize];
            if p.kind == PieceKind::Byte {
                if let Some(b) = parse_byte_piece(&p.piece) {
                    run.push(b);
                    continue;
                }
            }
            push_utf8_or_replacement(&mut text, &run);
            run.clear();
            if bos_ws_seen || !text.is_empty() {
                is_bos_ws = false;
            }
            bos_ws_seen = match p.kind {
                PieceKind::Control => false,
                PieceKind::Unknown => {
                    text.extend_from_slice(UNK_SURFACE);
                    false
                }
                _ => {
                    let mut piece = &p.piece[..];
                    let mut consumed = false;
                    if is_bos_ws && strip_bos {
                        if let Some(rest) = piece.strip_prefix(SPACE) {
                            piece = rest;
                            consumed = !nz.remove_extra_whitespaces;
                        }
                    }
                    while let Some(at) = find(piece, SPACE) {
                        text.extend_from_slice(&piece[..at]);
                        text.push(b' ');
                        piece = &piece[at + SPACE.len()..];
                    }
                    text.extend_from_slice(piece);
                    consumed
                }
            };
        }
        push_utf8_or_replacement(&mut text, &run);
        text
    }
}

/// SentencePiece's default surface of an UNK piece in decoded text.
const UNK_SURFACE: &[u8] = " \u{2047} ".as_bytes();

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Appends `bytes` read as UTF-8 the way SentencePiece reads a run of byte pieces: each
/// character that decodes (no overlong forms, surrogates or values past U+10FFFF) as itself,
/// every other byte as U+FFFD on its own (Rust's and Python's lossy decoders replace a whole
/// truncated sequence by one U+FFFD instead).
fn push_utf8_or_replacement(out: &mut Vec<u8>, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let n = utf8_len(bytes[0]).min(bytes.len());
        match std::str::from_utf8(&bytes[..n]) {
            Ok(c) if n == utf8_len(bytes[0]) => {
                out.extend_from_slice(c.as_bytes());
                bytes = &bytes[n..];
            }
            _ => {
                out.extend_from_slice("\u{FFFD}".as_bytes());
                bytes = &bytes[1..];
            }
        }
    }
}

/// `<0xXX>` → the byte.
pub fn parse_byte_piece(p: &[u8]) -> Option<u8> {
    if p.len() == 6 && p.starts_with(b"<0x") && p[5] == b'>' {
        let h = std::str::from_utf8(&p[3..5]).ok()?;
        return u8::from_str_radix(h, 16).ok();
    }
    None
}

/// Validates UTF-8, naming the offset of the first bad byte.
pub fn check_utf8(text: &[u8]) -> Result<&str> {
    std::str::from_utf8(text).map_err(|e| {
        let at = e.valid_up_to();
        Error::invalid(format!(
            "text is not valid UTF-8: invalid byte 0x{:02x} at byte offset {at}",
            text[at]
        ))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::lattice::vocab::PieceSpec;
    use proptest::prelude::*;

    thread_local! {
        /// Makes [`Model::run_pass`] take the one-start-at-a-time walk on this thread (the
        /// global SIMD level would affect tests running in parallel).
        pub(crate) static FORCE_SCALAR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Runs `f` once with the lockstep walk (where the CPU has it) and once forced scalar.
    pub(crate) fn both_walks<T>(mut f: impl FnMut() -> T) -> [T; 2] {
        let a = f();
        FORCE_SCALAR.with(|x| x.set(true));
        let b = f();
        FORCE_SCALAR.with(|x| x.set(false));
        [a, b]
    }

    /// A random vocabulary over a few one- to four-byte characters, pieces up to `max_chars`
    /// characters, with the options the single-pass decoders treat differently.
    pub(crate) fn arb_model(max_chars: usize) -> impl Strategy<Value = Model> {
        arb_model_scored(max_chars, -12.0, -0.5)
    }

    /// [`arb_model`] with piece scores drawn from `lo..hi`.
    pub(crate) fn arb_model_scored(
        max_chars: usize,
        lo: f32,
        hi: f32,
    ) -> impl Strategy<Value = Model> {
        let chars = ["a", "b", "é", "中", "▁", "😀"];
        let piece = proptest::collection::vec(0..chars.len(), 1..=max_chars)
            .prop_map(move |v| v.iter().map(|&i| chars[i]).collect::<String>());
        (
            proptest::collection::btree_map(piece, lo..hi, 1..24),
            any::<bool>(),
            0u8..3,
            proptest::collection::vec(any::<bool>(), 24),
            any::<bool>(),
        )
            .prop_map(|(pieces, unk, rule, user, byte_level)| {
                let mut v = VocabSpec::from_pieces(
                    pieces
                        .into_iter()
                        .map(|(p, s)| (p.into_bytes(), s))
                        .collect(),
                );
                for (p, &u) in v.pieces.iter_mut().zip(&user) {
                    if u && rule == 2 {
                        p.kind = PieceKind::UserDefined;
                    }
                }
                if unk {
                    v.pieces.insert(
                        0,
                        PieceSpec {
                            piece: b"<unk>".to_vec(),
                            score: 0.0,
                            kind: PieceKind::Unknown,
                        },
                    );
                    v.unk_id = Some(0);
                }
                if rule == 1 {
                    v.unknown = UnknownRule::JiebaChar { score: -15.0 };
                }
                v.byte_level = byte_level && rule == 0;
                Model::from_spec(v).unwrap()
            })
    }

    /// Texts over the same characters plus unknown ones and stray bytes.
    pub(crate) fn arb_text(max: usize) -> impl Strategy<Value = Vec<u8>> {
        let parts: Vec<&'static [u8]> = vec![
            b"a",
            b"b",
            "é".as_bytes(),
            "中".as_bytes(),
            "▁".as_bytes(),
            "😀".as_bytes(),
            b"x",
            "ж".as_bytes(),
            b"\xE4",
            b"\xB8",
            b"\xC3",
        ];
        proptest::collection::vec(proptest::sample::select(parts), 0..max).prop_map(|v| v.concat())
    }

    /// `../shared` (models and corpora) when present: tests that use it skip without it.
    pub(crate) fn shared_dir() -> Option<std::path::PathBuf> {
        ["/work/shared", "../shared", "../../shared"]
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.join("models").is_dir() && p.join("corpora").is_dir())
    }

    /// A shared SentencePiece model and corpus text, or None (with a note) when absent.
    pub(crate) fn shared_pair(model: &str, corpus: &str) -> Option<(Model, String)> {
        let Some(dir) = shared_dir() else {
            eprintln!("shared models/corpora absent: skipped");
            return None;
        };
        let (Ok(mb), Ok(text)) = (
            std::fs::read(dir.join("models").join(model)),
            std::fs::read_to_string(dir.join("corpora").join(corpus)),
        ) else {
            eprintln!("{model} / {corpus} absent: skipped");
            return None;
        };
        let m = Model::from_spec(crate::lattice::spm::load(&mb).unwrap()).unwrap();
        Some((m, text))
    }

    /// A tiny SentencePiece-like model: dummy prefix, whitespace escaping, UNK at id 0.
    pub fn spm_like(pieces: &[(&str, f32)]) -> Model {
        let mut v = VocabSpec::from_pieces(
            pieces
                .iter()
                .map(|(p, s)| (p.as_bytes().to_vec(), *s))
                .collect(),
        );
        v.pieces.insert(
            0,
            PieceSpec {
                piece: b"<unk>".to_vec(),
                score: 0.0,
                kind: PieceKind::Unknown,
            },
        );
        v.unk_id = Some(0);
        v.source = "sentencepiece".into();
        v.normalizer.add_dummy_prefix = true;
        v.normalizer.escape_whitespaces = true;
        v.normalizer.remove_extra_whitespaces = true;
        Model::from_spec(v).unwrap()
    }

    #[test]
    fn unk_edges_follow_sentencepiece() {
        let m = spm_like(&[("ab", -1.0), ("a", -2.0), ("▁", -1.0)]);
        // 'b' has no single-character piece: UNK edge there; 'a' has one: none.
        let t = "ab".as_bytes();
        let mut e = vec![];
        m.edges_at(t, 0, |end, id| e.push((end, id)));
        assert_eq!(e, vec![(1, 2), (2, 1)]);
        let mut e = vec![];
        m.edges_at(t, 1, |end, id| e.push((end, id)));
        assert_eq!(e, vec![(2, 0)]);
        assert_eq!(m.score32(0), -2.0 - UNK_PENALTY);
    }

    #[test]
    fn decode_rules() {
        let m = spm_like(&[("▁ab", -1.0), ("c", -2.0)]);
        assert_eq!(m.decode(&[1, 2, 0]).unwrap(), "abc \u{2047} ".as_bytes());
        assert!(m.decode(&[5]).is_err());
        assert!(m.decode(&[-1]).is_err());
        // A leading UNK keeps its spaces; the dummy prefix goes with the first piece only
        // (remove_extra_whitespaces: every piece's until text appears).
        assert_eq!(m.decode(&[0, 1]).unwrap(), " \u{2047}  ab".as_bytes());
        assert_eq!(m.decode(&[1, 1]).unwrap(), "ab ab".as_bytes());
        // Byte pieces: each run read as UTF-8, every invalid byte one U+FFFD.
        let mut v = m.spec().clone();
        for b in [0xE2u8, 0x98, 0x83, b'x'] {
            v.pieces.push(PieceSpec {
                piece: format!("<0x{b:02X}>").into_bytes(),
                score: 0.0,
                kind: PieceKind::Byte,
            });
        }
        let mb = Model::from_spec(v).unwrap();
        assert_eq!(
            mb.decode(&[3, 4, 5, 2, 3, 4, 6]).unwrap(),
            "☃c\u{FFFD}\u{FFFD}x".as_bytes()
        );
    }

    #[test]
    fn byte_piece_names() {
        assert_eq!(parse_byte_piece(b"<0x0A>"), Some(10));
        assert_eq!(parse_byte_piece(b"<0xzz>"), None);
        assert!(check_utf8(b"ab\xffc")
            .unwrap_err()
            .to_string()
            .contains("offset 2"));
    }
}
