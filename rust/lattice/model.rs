//! The compiled unigram model: a [`VocabSpec`] turned into a trie plus per-piece lattice scores.
//!
//! The lattice of a (normalised) text has an edge `(s, e)` for every matchable piece equal to
//! `text[s..e]`, plus SentencePiece's unknown-character edges. Matchable pieces are NORMAL and
//! USER_DEFINED ones (CONTROL, UNUSED, UNKNOWN and BYTE pieces never match text, as in
//! SentencePiece). Scores follow SentencePiece's unigram encoder exactly:
//! - USER_DEFINED pieces score `byte_len · max_score − 0.1` (`max_score` over NORMAL pieces, with
//!   SentencePiece's `FLT_MIN` floor), which makes them win against any split;
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
use std::sync::{Arc, Mutex};

use super::normalizer::Normalizer;
use super::trie::Trie;
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
        let normalizer = Normalizer::new(&spec.normalizer)?;
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
                let s = (p.piece.len() as f32 * max_score) as f64 - 0.1;
                score64[i] = s;
                score32[i] = s as f32;
            } else if matchable[i] {
                score32[i] = p.score;
                score64[i] = p.score as f64;
            }
        }
        if let Some(u) = unk_edge {
            score32[u as usize] = unk_score;
            score64[u as usize] = unk_score as f64;
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
        Ok(Model {
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

    /// Decodes ids back to bytes (SentencePiece's rules): pieces concatenate, `▁` becomes a
    /// space, the dummy-prefix space is dropped, byte pieces contribute their byte, control
    /// pieces nothing, and UNK `" ⁇ "`.
    pub fn decode(&self, ids: &[i64]) -> Result<Vec<u8>> {
        let n = self.spec.pieces.len();
        let mut out = Vec::new();
        let escape = !self.byte_level && self.spec.normalizer.escape_whitespaces;
        for (k, &id) in ids.iter().enumerate() {
            if id < 0 || id as u64 >= n as u64 {
                return Err(Error::invalid(format!(
                    "id {id} at position {k} is out of range for a vocabulary of {n} pieces"
                )));
            }
            let p = &self.spec.pieces[id as usize];
            match p.kind {
                PieceKind::Control => {}
                PieceKind::Unknown if !self.byte_level => {
                    out.extend_from_slice(" \u{2047} ".as_bytes());
                }
                PieceKind::Byte => match parse_byte_piece(&p.piece) {
                    Some(b) => out.push(b),
                    None => out.extend_from_slice(&p.piece),
                },
                _ => out.extend_from_slice(&p.piece),
            }
        }
        if escape {
            let s = String::from_utf8_lossy(&out).replace('\u{2581}', " ");
            out = s.into_bytes();
            let nz = &self.spec.normalizer;
            if nz.add_dummy_prefix {
                if nz.treat_whitespace_as_suffix {
                    if out.last() == Some(&b' ') {
                        out.pop();
                    }
                } else if out.first() == Some(&b' ') {
                    out.remove(0);
                }
            }
        }
        Ok(out)
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
