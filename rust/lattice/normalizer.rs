//! SentencePiece's text pipeline: character normalisation by the `precompiled_charsmap` rules,
//! then whitespace handling (`remove_extra_whitespaces`, `add_dummy_prefix`,
//! `escape_whitespaces` → `▁`), reproducing `sentencepiece`'s `Normalizer::Normalize` byte for
//! byte, including the offsets map back to the input.
//!
//! The charsmap blob is `u32 trie_size (LE) | trie_size bytes of darts-clone double-array units |
//! replacement strings, each NUL-terminated`. At each input position the longest rule whose key
//! is a prefix of the remaining bytes wins and its replacement (the string starting at the
//! rule's value) is emitted; with no rule the next UTF-8 character passes through, and a
//! malformed byte becomes U+FFFD consuming one byte. The whitespace rules then run on those
//! normalised chunks, not on the input, which is why the two stages are interleaved here.
//!
//! User-defined pieces are protected: where one matches at the current position it passes
//! through unnormalised (SentencePiece's `PrefixMatcher`); build with [`Normalizer::for_vocab`]
//! to get that behaviour.

use super::vocab::{NormalizerSpec, PieceKind, VocabSpec};
use crate::error::{Error, Result};

/// The whitespace marker SentencePiece substitutes for spaces (U+2581).
pub const SPACE_MARK: char = '\u{2581}';
const SPACE_MARK_UTF8: &[u8] = "\u{2581}".as_bytes();
const REPLACEMENT_UTF8: &[u8] = "\u{FFFD}".as_bytes();

const WHAT: &str = "precompiled_charsmap";

/// A compiled charsmap: the double array plus the replacement strings. Every access is
/// bounds-checked; a slot outside the array reads as "no such transition" and a rule whose
/// value does not point at the start of a character in the replacement area is ignored, so a
/// corrupt blob can change the output but never read out of bounds or panic.
#[derive(Clone, Debug)]
struct Charsmap {
    units: Vec<u32>,
    /// The NUL-separated replacement strings (validated UTF-8 as a whole).
    replacements: String,
    root_base: usize,
    /// Whether any rule starts with this byte: lets the common case skip the trie.
    starts: [bool; 256],
}

#[inline]
fn unit_offset(u: u32) -> usize {
    ((u >> 10) << ((u & (1 << 9)) >> 6)) as usize
}

#[inline]
fn unit_label(u: u32) -> u32 {
    u & ((1 << 31) | 0xff)
}

#[inline]
fn unit_has_leaf(u: u32) -> bool {
    (u >> 8) & 1 == 1
}

#[inline]
fn unit_value(u: u32) -> usize {
    (u & 0x7fff_ffff) as usize
}

impl Charsmap {
    fn parse(blob: &[u8]) -> Result<Self> {
        if blob.len() <= 4 {
            return Err(Error::format(
                WHAT,
                Some(0),
                format!("blob of {} bytes is too short for its header", blob.len()),
            ));
        }
        let trie_size = u32::from_le_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
        if trie_size > blob.len() - 4 {
            return Err(Error::format(
                WHAT,
                Some(0),
                format!(
                    "trie size {trie_size} exceeds the {} bytes that follow the header",
                    blob.len() - 4
                ),
            ));
        }
        if trie_size == 0 || trie_size % 4 != 0 {
            return Err(Error::format(
                WHAT,
                Some(0),
                format!("trie size {trie_size} is not a positive multiple of 4"),
            ));
        }
        let units: Vec<u32> = blob[4..4 + trie_size]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let tail = &blob[4 + trie_size..];
        let replacements = match std::str::from_utf8(tail) {
            Ok(s) => s.to_string(),
            Err(e) => {
                return Err(Error::format(
                    WHAT,
                    Some(4 + trie_size + e.valid_up_to()),
                    "replacement strings are not valid UTF-8",
                ))
            }
        };
        let root_base = unit_offset(units[0]);
        let mut starts = [false; 256];
        for (b, s) in starts.iter_mut().enumerate() {
            *s = units
                .get(root_base ^ b)
                .is_some_and(|&u| unit_label(u) == b as u32);
        }
        Ok(Charsmap {
            units,
            replacements,
            root_base,
            starts,
        })
    }

    /// The replacement starting at `value`, if `value` is a valid start.
    fn replacement(&self, value: usize) -> Option<&str> {
        if value >= self.replacements.len() || !self.replacements.is_char_boundary(value) {
            return None;
        }
        let rest = &self.replacements[value..];
        Some(rest.find('\0').map_or(rest, |end| &rest[..end]))
    }

    /// Whether some rule's key starts with `bytes` (or equals them).
    fn has_prefix(&self, bytes: &[u8]) -> bool {
        let mut pos = self.root_base;
        for &b in bytes {
            pos ^= b as usize;
            let Some(&u) = self.units.get(pos) else {
                return false;
            };
            if unit_label(u) != b as u32 {
                return false;
            }
            pos ^= unit_offset(u);
        }
        true
    }

    /// Longest rule matching a prefix of `input`: (bytes consumed, replacement).
    #[inline]
    fn longest(&self, input: &[u8]) -> Option<(usize, &str)> {
        if !self.starts[input[0] as usize] {
            return None;
        }
        let mut pos = self.root_base;
        let mut best = None;
        for (i, &b) in input.iter().enumerate() {
            pos ^= b as usize;
            let Some(&u) = self.units.get(pos) else { break };
            if unit_label(u) != b as u32 {
                break;
            }
            pos ^= unit_offset(u);
            if unit_has_leaf(u) {
                if let Some(r) = self
                    .units
                    .get(pos)
                    .and_then(|&leaf| self.replacement(unit_value(leaf)))
                {
                    best = Some((i + 1, r));
                }
            }
        }
        best
    }
}

/// Longest-prefix matcher over the user-defined pieces, bucketed by first byte.
#[derive(Clone, Debug, Default)]
struct Protected {
    /// For each first byte, the pieces starting with it, longest first.
    by_first: Vec<Vec<Box<[u8]>>>,
}

impl Protected {
    fn new<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Option<Self> {
        let mut by_first: Vec<Vec<Box<[u8]>>> = vec![Vec::new(); 256];
        let mut any = false;
        for p in pieces {
            if let Some(&b) = p.first() {
                by_first[b as usize].push(p.into());
                any = true;
            }
        }
        for v in &mut by_first {
            v.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
            v.dedup();
        }
        any.then_some(Protected { by_first })
    }

    #[inline]
    fn longest(&self, input: &[u8]) -> Option<usize> {
        self.by_first[input[0] as usize]
            .iter()
            .find(|p| input.starts_with(p))
            .map(|p| p.len())
    }
}

/// Whether `s` starts with a well-formed `n`-byte UTF-8 character, given that `s[0]` is a
/// lead byte of that length: the same acceptance as [`utf8_char_len`] (no overlongs,
/// surrogates or code points above U+10FFFF) without a call into `str::from_utf8`.
#[inline(always)]
fn well_formed_tail(s: &[u8], n: usize) -> bool {
    if s.len() < n {
        return false;
    }
    let (lo, hi) = match s[0] {
        0xE0 => (0xA0, 0xBF),
        0xED => (0x80, 0x9F),
        0xF0 => (0x90, 0xBF),
        0xF4 => (0x80, 0x8F),
        _ => (0x80, 0xBF),
    };
    (lo..=hi).contains(&s[1]) && s[2..n].iter().all(|&c| (0x80..=0xBF).contains(&c))
}

/// Length of the UTF-8 character at the start of `s`, or `None` if it is malformed (the same
/// acceptance rules as SentencePiece's `DecodeUTF8`: no overlongs, surrogates or code points
/// above U+10FFFF).
#[inline]
fn utf8_char_len(s: &[u8]) -> Option<usize> {
    let b0 = s[0];
    let n = match b0 {
        0x00..=0x7f => return Some(1),
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    let c = s.get(..n)?;
    std::str::from_utf8(c).ok().map(|_| n)
}

#[derive(Clone, Debug)]
pub struct Normalizer {
    spec: NormalizerSpec,
    charsmap: Option<Charsmap>,
    protected: Option<Protected>,
    /// Bytes that always pass through as themselves: ASCII, not a space, starting no charsmap
    /// rule and no protected piece. Runs of them are copied in one go.
    plain: [bool; 256],
    /// For an ASCII byte that starts charsmap rules (NFKC composes `e` + U+0301, so most
    /// letters do) but is not a rule by itself and starts no protected piece: the trie
    /// position after it, so that one look at the next byte tells whether any rule can
    /// continue. `usize::MAX` otherwise.
    after_ascii: [usize; 128],
    /// A space starts no rule and no protected piece.
    plain_space: bool,
    /// For a UTF-8 lead byte (0xC2..=0xF4) that starts no charsmap rule and no protected
    /// piece: the length of its character, which then passes through unchanged when well
    /// formed (most CJK text). 0 otherwise.
    plain_lead: [u8; 256],
    /// ASCII bytes that pass through whenever the next byte is ASCII too: plain ones, and
    /// letters with `after_ascii` whose rules never continue with an ASCII byte (the
    /// continuations are combining marks). One table look per byte over English text.
    ascii_pass: [bool; 256],
    /// One bit per code point below U+10000 whose lead byte starts charsmap rules (and no
    /// protected piece): set when no rule starts with this character, so that it passes
    /// through unchanged (box drawing, most punctuation under a lead byte shared with
    /// NFKC-mapped characters). Empty without a charsmap.
    plain_cp: Vec<u64>,
    /// Per ASCII byte, for [`Normalizer::ascii_fast`]: 1 passes through (`ascii_pass`), 2 is
    /// a space that becomes the escape mark (`plain_space` with `escape_whitespaces`), 0
    /// stops the fast loop. All 0 when the fast loop does not apply.
    fast_class: [u8; 128],
    /// Some entry of `fast_class` is not 0.
    has_fast: bool,
}

impl Normalizer {
    /// Compiles `spec`; a malformed `precompiled_charsmap` is an [`Error::Format`].
    pub fn new(spec: &NormalizerSpec) -> Result<Self> {
        let charsmap = if spec.precompiled_charsmap.is_empty() {
            None
        } else {
            Some(Charsmap::parse(&spec.precompiled_charsmap)?)
        };
        Ok(Normalizer {
            spec: spec.clone(),
            charsmap,
            protected: None,
            plain: [false; 256],
            after_ascii: [usize::MAX; 128],
            plain_space: false,
            plain_lead: [0; 256],
            ascii_pass: [false; 256],
            plain_cp: Vec::new(),
            fast_class: [0; 128],
            has_fast: false,
        }
        .with_plain_table())
    }

    /// Like [`Normalizer::new`], but `pieces` (SentencePiece's user-defined symbols) pass
    /// through unnormalised wherever one of them matches at the current position, longest
    /// first.
    pub fn with_user_defined<'a>(
        spec: &NormalizerSpec,
        pieces: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Self> {
        let mut n = Self::new(spec)?;
        n.protected = Protected::new(pieces);
        Ok(n.with_plain_table())
    }

    /// The normaliser exactly as SentencePiece builds it for a model: `vocab`'s normaliser with
    /// its `USER_DEFINED` pieces protected.
    pub fn for_vocab(vocab: &VocabSpec) -> Result<Self> {
        Self::with_user_defined(
            &vocab.normalizer,
            vocab
                .pieces
                .iter()
                .filter(|p| p.kind == PieceKind::UserDefined)
                .map(|p| p.piece.as_slice()),
        )
    }

    fn with_plain_table(mut self) -> Self {
        for b in 0..0x80u8 {
            let i = b as usize;
            let protected = self
                .protected
                .as_ref()
                .is_some_and(|p| !p.by_first[i].is_empty());
            let starts_rule = self.charsmap.as_ref().is_some_and(|c| c.starts[i]);
            if b == b' ' {
                self.plain_space = !protected && !starts_rule;
                continue;
            }
            self.plain[i] = !protected && !starts_rule;
            self.after_ascii[i] = usize::MAX;
            if let Some(cm) = self.charsmap.as_ref().filter(|_| starts_rule && !protected) {
                if cm.longest(&[b]).is_none() {
                    let node = cm.root_base ^ i;
                    if let Some(&u) = cm.units.get(node) {
                        self.after_ascii[i] = node ^ unit_offset(u);
                    }
                }
            }
        }
        for b in 0xC2..=0xF4u8 {
            let i = b as usize;
            let protected = self
                .protected
                .as_ref()
                .is_some_and(|p| !p.by_first[i].is_empty());
            let starts_rule = self.charsmap.as_ref().is_some_and(|c| c.starts[i]);
            self.plain_lead[i] = if protected || starts_rule {
                0
            } else {
                match b {
                    0xC2..=0xDF => 2,
                    0xE0..=0xEF => 3,
                    _ => 4,
                }
            };
        }
        self.ascii_pass = [false; 256];
        for b in 0..0x80usize {
            let base = self.after_ascii[b];
            let letter =
                base != usize::MAX && !(0..0x80u32).any(|n| self.continues_with(base, n as u8));
            self.ascii_pass[b] = self.plain[b] || letter;
        }
        self.plain_cp = Vec::new();
        if let Some(cm) = &self.charsmap {
            let mut bits = vec![0u64; 0x10000 / 64];
            let mut set = |cp: u32| bits[cp as usize / 64] |= 1 << (cp % 64);
            for lead in 0xC2..=0xEFu8 {
                let protected = self
                    .protected
                    .as_ref()
                    .is_some_and(|p| !p.by_first[lead as usize].is_empty());
                if protected || !cm.starts[lead as usize] {
                    continue;
                }
                // The code points this lead byte starts.
                let (lo, len) = if lead < 0xE0 {
                    ((lead as u32 & 0x1F) << 6, 64)
                } else {
                    ((lead as u32 & 0x0F) << 12, 4096)
                };
                let mut buf = [0u8; 3];
                for cp in lo..lo + len {
                    let Some(ch) = char::from_u32(cp) else {
                        continue;
                    };
                    let bytes = ch.encode_utf8(&mut buf).as_bytes();
                    if bytes[0] == lead && !cm.has_prefix(bytes) {
                        set(cp);
                    }
                }
            }
            self.plain_cp = bits;
        }
        self.fast_class = [0; 128];
        for b in 0..0x80usize {
            self.fast_class[b] = if self.ascii_pass[b] {
                1
            } else if b == b' ' as usize && self.plain_space && self.spec.escape_whitespaces {
                2
            } else {
                0
            };
        }
        self.has_fast = self.fast_class.iter().any(|&c| c != 0);
        self
    }

    /// The common case of [`Normalizer::run`]'s main loop on ASCII text, in one branch-light
    /// loop: bytes that pass through (`ascii_pass`, each followed by an ASCII byte or the
    /// end) are copied, plain spaces become the escape mark (dropped after a space when
    /// collapsing). Stops at the first byte that needs the general path; returns the input
    /// bytes consumed. `prev_space` is `run`'s state, updated.
    ///
    /// Same output as the general path, which copies the same runs with one
    /// `extend_from_slice` per word and one push per space: on English that was a call,
    /// a capacity check and a mispredicted run end per word (12 % of batch Viterbi time on
    /// botchan, 6 cycles a byte); this loop writes four bytes per input byte
    /// unconditionally and advances by 0, 1 or 3.
    #[inline]
    fn ascii_fast(&self, input: &[u8], out: &mut Vec<u8>, prev_space: &mut bool) -> usize {
        let n = input.len();
        // Room for 3 output bytes per input byte plus the 4-byte store's overhang.
        out.reserve(3 * n + 4);
        let base = out.len();
        let collapse = self.spec.remove_extra_whitespaces;
        let mut prev = *prev_space;
        let mut o = 0usize;
        let mut i = 0usize;
        // SAFETY: `out` has room for `3 * n + 4` more bytes; each input byte appends at most
        // 3, so every 4-byte store at `base + o` (o <= 3 * i) stays within that room.
        unsafe {
            let dst = out.as_mut_ptr().add(base);
            while i < n {
                let b = input[i];
                if b >= 0x80 || (i + 1 < n && input[i + 1] >= 0x80) {
                    break;
                }
                let cls = self.fast_class[b as usize];
                if cls == 0 {
                    break;
                }
                let space = cls == 2;
                // U+2581 is E2 96 81; the fourth byte is overwritten by the next store.
                let v: u32 = if space { 0x0081_96E2 } else { b as u32 };
                std::ptr::write_unaligned(dst.add(o) as *mut u32, v);
                let drop = space & prev;
                o += (if space { 3 } else { 1 }) & !(drop as usize).wrapping_neg();
                prev = space & collapse;
                i += 1;
            }
            out.set_len(base + o);
        }
        if i > 0 {
            *prev_space = prev;
        }
        i
    }

    /// Whether some charsmap rule continues from trie position `base` with byte `n`.
    #[inline(always)]
    fn continues_with(&self, base: usize, n: u8) -> bool {
        self.charsmap.as_ref().is_some_and(|cm| {
            cm.units
                .get(base ^ n as usize)
                .is_some_and(|&u| unit_label(u) == u32::from(n))
        })
    }

    /// Whether the well-formed 2- or 3-byte character at the start of `input` (lead byte
    /// `b`) is in `plain_cp`; returns its length if so.
    #[inline(always)]
    fn plain_char(&self, input: &[u8], b: u8) -> Option<usize> {
        let (n, cp) = match b {
            0xC2..=0xDF if well_formed_tail(input, 2) => {
                (2, ((b as u32 & 0x1F) << 6) | (input[1] as u32 & 0x3F))
            }
            0xE0..=0xEF if well_formed_tail(input, 3) => (
                3,
                ((b as u32 & 0x0F) << 12)
                    | ((input[1] as u32 & 0x3F) << 6)
                    | (input[2] as u32 & 0x3F),
            ),
            _ => return None,
        };
        let w = *self.plain_cp.get(cp as usize / 64)?;
        (w >> (cp % 64) & 1 != 0).then_some(n)
    }

    /// Length of the run at the start of `input` of characters that pass through unchanged
    /// and are not spaces (see `plain`, `after_ascii`, `ascii_pass` and `plain_cp`).
    #[inline]
    fn plain_run(&self, input: &[u8]) -> usize {
        let mut i = 0;
        loop {
            // ASCII letters and plain bytes; a letter is only in doubt before a non-ASCII
            // byte, checked below.
            while let Some(&b) = input.get(i) {
                if !self.ascii_pass[b as usize] {
                    break;
                }
                i += 1;
            }
            let Some(&b) = input.get(i) else {
                return i;
            };
            if b >= 0x80 {
                if i > 0 {
                    let p = input[i - 1] as usize;
                    if p < 0x80
                        && !self.plain[p]
                        && self.after_ascii[p] != usize::MAX
                        && self.continues_with(self.after_ascii[p], b)
                    {
                        // A rule may join that letter with what follows: it is not plain.
                        return i - 1;
                    }
                }
                // No rule starts with this lead byte: a well-formed character is copied as
                // is, exactly what `prefix` would return for it; anything else stops the run.
                let n = self.plain_lead[b as usize] as usize;
                if n != 0 && well_formed_tail(&input[i..], n) {
                    i += n;
                    continue;
                }
                // Rules start with this lead byte, but none with this character.
                if let Some(n) = self.plain_char(&input[i..], b) {
                    i += n;
                    continue;
                }
                return i;
            }
            if self.plain[b as usize] {
                i += 1;
                continue;
            }
            let base = self.after_ascii[b as usize];
            if base == usize::MAX {
                return i;
            }
            if input
                .get(i + 1)
                .is_some_and(|&n| self.continues_with(base, n))
            {
                return i;
            }
            i += 1;
        }
    }

    pub fn spec(&self) -> &NormalizerSpec {
        &self.spec
    }

    /// True when `normalize` returns its input unchanged.
    pub fn is_identity(&self) -> bool {
        let s = &self.spec;
        self.charsmap.is_none()
            && !s.add_dummy_prefix
            && !s.remove_extra_whitespaces
            && !s.escape_whitespaces
    }

    pub fn normalize(&self, text: &str) -> String {
        if self.is_identity() {
            return text.to_string();
        }
        let mut out = Vec::with_capacity(text.len() + 8);
        self.run(text.as_bytes(), &mut out, None);
        into_string(out)
    }

    /// As [`Normalizer::normalize`], into a caller-owned buffer (cleared first) so that batch
    /// loops reuse one allocation.
    pub fn normalize_into(&self, text: &str, out: &mut Vec<u8>) {
        out.clear();
        if self.is_identity() {
            out.extend_from_slice(text.as_bytes());
            return;
        }
        self.run(text.as_bytes(), out, None);
    }

    /// The normalised text and, for each of its bytes, the offset of the input byte it came
    /// from, plus one final entry: the input offset where the normalised text ends (so
    /// `offsets.len() == normalized.len() + 1`, and a normalised span `a..b` came from input
    /// `offsets[a]..offsets[b]`). These are SentencePiece's `norm_to_orig` values, except that
    /// an empty result still carries its final entry.
    pub fn normalize_with_offsets(&self, text: &str) -> (String, Vec<usize>) {
        self.normalize_bytes_with_offsets(text.as_bytes())
    }

    /// As [`Normalizer::normalize`] for input that may be malformed UTF-8: each malformed byte
    /// becomes U+FFFD, as SentencePiece does.
    pub fn normalize_bytes(&self, input: &[u8]) -> String {
        let mut out = Vec::with_capacity(input.len() + 8);
        self.run(input, &mut out, None);
        into_string(out)
    }

    pub fn normalize_bytes_with_offsets(&self, input: &[u8]) -> (String, Vec<usize>) {
        let mut out = Vec::with_capacity(input.len() + 8);
        let mut offsets = Vec::with_capacity(input.len() + 9);
        self.run(input, &mut out, Some(&mut offsets));
        (into_string(out), offsets)
    }

    /// SentencePiece's `NormalizePrefix`: the normalised form of the next unit of `input` and
    /// how many input bytes it consumes. `input` is non-empty.
    #[inline]
    fn prefix<'a>(&'a self, input: &'a [u8]) -> (&'a [u8], usize) {
        if let Some(p) = &self.protected {
            if let Some(n) = p.longest(input) {
                return (&input[..n], n);
            }
        }
        if let Some(cm) = &self.charsmap {
            if let Some((n, r)) = cm.longest(input) {
                return (r.as_bytes(), n);
            }
        }
        match utf8_char_len(input) {
            Some(n) => (&input[..n], n),
            None => (REPLACEMENT_UTF8, 1),
        }
    }

    fn run(&self, mut input: &[u8], out: &mut Vec<u8>, mut offsets: Option<&mut Vec<usize>>) {
        let s = &self.spec;
        let mut consumed = 0usize;
        if s.remove_extra_whitespaces {
            while !input.is_empty() {
                let (chunk, n) = self.prefix(input);
                if chunk != b" " {
                    break;
                }
                input = &input[n..];
                consumed += n;
            }
        }
        if input.is_empty() {
            if let Some(o) = offsets {
                o.push(consumed);
            }
            return;
        }
        let space: &[u8] = if s.escape_whitespaces {
            SPACE_MARK_UTF8
        } else {
            b" "
        };
        if s.add_dummy_prefix && !s.treat_whitespace_as_suffix {
            push(out, &mut offsets, space, consumed);
        }
        let mut prev_space = s.remove_extra_whitespaces;
        let fast = offsets.is_none() && self.has_fast;
        while !input.is_empty() {
            if fast {
                let k = self.ascii_fast(input, out, &mut prev_space);
                if k > 0 {
                    consumed += k;
                    input = &input[k..];
                    continue;
                }
            }
            let run = self.plain_run(input);
            if run > 0 {
                // Equivalent to one chunk per character, each from its own offset.
                out.extend_from_slice(&input[..run]);
                if let Some(o) = offsets.as_deref_mut() {
                    // Every byte of a character maps to where that character starts.
                    let mut from = consumed;
                    for (j, &b) in input[..run].iter().enumerate() {
                        if b & 0xC0 != 0x80 {
                            from = consumed + j;
                        }
                        o.push(from);
                    }
                }
                prev_space = false;
                consumed += run;
                input = &input[run..];
                continue;
            }
            if input[0] == b' ' && self.plain_space {
                // A one-space chunk: dropped after a space when collapsing, else kept.
                if !prev_space {
                    let mark = if s.escape_whitespaces {
                        SPACE_MARK_UTF8
                    } else {
                        b" "
                    };
                    push(out, &mut offsets, mark, consumed);
                }
                prev_space = s.remove_extra_whitespaces;
                consumed += 1;
                input = &input[1..];
                continue;
            }
            let (mut chunk, n) = self.prefix(input);
            if prev_space {
                while let Some(rest) = chunk.strip_prefix(b" ") {
                    chunk = rest;
                }
            }
            if let Some(&last) = chunk.last() {
                if s.escape_whitespaces {
                    // Split the chunk at its spaces so the plain runs are copied in one go.
                    for (k, run) in chunk.split(|&b| b == b' ').enumerate() {
                        if k > 0 {
                            push(out, &mut offsets, SPACE_MARK_UTF8, consumed);
                        }
                        push(out, &mut offsets, run, consumed);
                    }
                } else {
                    push(out, &mut offsets, chunk, consumed);
                }
                prev_space = last == b' ';
            }
            consumed += n;
            input = &input[n..];
            if !s.remove_extra_whitespaces {
                prev_space = false;
            }
        }
        if s.remove_extra_whitespaces {
            // (A byte loop, not `ends_with`: that is a `memcmp` call per text.)
            let ends_with_space = |out: &[u8]| {
                out.len() >= space.len()
                    && out
                        .iter()
                        .rev()
                        .zip(space.iter().rev())
                        .all(|(a, b)| a == b)
            };
            while ends_with_space(out) {
                let len = out.len() - space.len();
                out.truncate(len);
                if let Some(o) = offsets.as_deref_mut() {
                    consumed = o[len];
                    o.truncate(len);
                }
            }
        }
        if s.add_dummy_prefix && s.treat_whitespace_as_suffix {
            out.extend_from_slice(space);
            if let Some(o) = offsets.as_deref_mut() {
                o.extend(std::iter::repeat_n(consumed, space.len()));
            }
        }
        if let Some(o) = offsets {
            o.push(consumed);
        }
    }
}

/// Appends `bytes`, all of which came from input offset `from`.
#[inline]
fn push(out: &mut Vec<u8>, offsets: &mut Option<&mut Vec<usize>>, bytes: &[u8], from: usize) {
    out.extend_from_slice(bytes);
    if let Some(o) = offsets.as_deref_mut() {
        o.extend(std::iter::repeat_n(from, bytes.len()));
    }
}

/// Every chunk `run` emits is a whole UTF-8 character sequence (input characters checked by
/// `utf8_char_len`, replacements validated at parse time, U+FFFD, or protected pieces that
/// matched valid UTF-8), so this never takes the lossy branch; it exists so that a bug here
/// could not produce an invalid `String`.
fn into_string(out: Vec<u8>) -> String {
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ws(add: bool, remove: bool, escape: bool, suffix: bool) -> NormalizerSpec {
        NormalizerSpec {
            name: "test".into(),
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: add,
            remove_extra_whitespaces: remove,
            escape_whitespaces: escape,
            treat_whitespace_as_suffix: suffix,
        }
    }

    /// Builds a darts-clone double array for `rules` the simple way (each node's children in
    /// a fresh 256-unit block), so the tests exercise the reader on a blob we control.
    pub(crate) fn build_charsmap(rules: &[(&str, &str)]) -> Vec<u8> {
        let mut repl = Vec::new();
        let mut values = Vec::new();
        for (_, to) in rules {
            values.push(repl.len() as u32);
            repl.extend_from_slice(to.as_bytes());
            repl.push(0);
        }
        // Trie of keys: node -> children map; leaf value.
        #[derive(Default)]
        struct Node {
            kids: std::collections::BTreeMap<u8, usize>,
            value: Option<u32>,
        }
        let mut nodes = vec![Node::default()];
        for ((from, _), &v) in rules.iter().zip(&values) {
            let mut cur = 0;
            for &b in from.as_bytes() {
                cur = match nodes[cur].kids.get(&b) {
                    Some(&k) => k,
                    None => {
                        nodes.push(Node::default());
                        let k = nodes.len() - 1;
                        nodes[cur].kids.insert(b, k);
                        k
                    }
                };
            }
            nodes[cur].value = Some(v);
        }
        // Every node's children (plus a leaf unit under label 0) get their own 256-unit block;
        // offsets are multiples of 256 below 2^21, which darts encodes without the extension bit.
        let mut units = vec![0u32; 256];
        fn place(
            nodes: &[Node],
            n: usize,
            at: usize,
            units: &mut Vec<u32>,
            label: u32,
            has_leaf: bool,
        ) {
            let base = units.len();
            units.resize(base + 256, 0);
            let offset = (at ^ base) as u32;
            assert!(offset < (1 << 21));
            units[at] = (offset << 10) | label | if has_leaf { 1 << 8 } else { 0 };
            if let Some(v) = nodes[n].value {
                units[base] = (1 << 31) | v;
            }
            for (&b, &k) in &nodes[n].kids {
                place(
                    nodes,
                    k,
                    base ^ b as usize,
                    units,
                    b as u32,
                    nodes[k].value.is_some(),
                );
            }
        }
        place(&nodes, 0, 0, &mut units, 0, false);
        let mut blob = ((units.len() * 4) as u32).to_le_bytes().to_vec();
        for u in &units {
            blob.extend_from_slice(&u.to_le_bytes());
        }
        blob.extend_from_slice(&repl);
        blob
    }

    fn with_rules(rules: &[(&str, &str)]) -> Normalizer {
        let mut spec = ws(true, true, true, false);
        spec.precompiled_charsmap = build_charsmap(rules);
        Normalizer::new(&spec).unwrap()
    }

    #[test]
    fn whitespace_pipeline_matches_sentencepiece() {
        let n = Normalizer::new(&ws(true, true, true, false)).unwrap();
        assert_eq!(n.normalize("  Hello   world  "), "▁Hello▁world");
        assert_eq!(n.normalize("   "), "");
        assert_eq!(n.normalize(""), "");
        let n = Normalizer::new(&ws(true, true, true, true)).unwrap();
        assert_eq!(n.normalize(" a  b "), "a▁b▁");
        let n = Normalizer::new(&ws(false, false, false, false)).unwrap();
        assert!(n.is_identity());
        assert_eq!(n.normalize(" a  b "), " a  b ");
        let n = Normalizer::new(&ws(true, false, true, false)).unwrap();
        assert_eq!(n.normalize(" a  b "), "▁▁a▁▁b▁");
    }

    #[test]
    fn longest_rule_wins_and_unmatched_characters_pass_through() {
        let n = with_rules(&[
            ("a", "x"),
            ("ab", "YZ"),
            ("é", "e"),
            ("\u{3000}", " "),
            ("z", ""),
        ]);
        assert_eq!(n.normalize("abac"), "▁YZxc");
        assert_eq!(n.normalize("café"), "▁cxfe");
        // Rules that produce spaces feed the whitespace rules.
        assert_eq!(n.normalize("\u{3000}b\u{3000}\u{3000}c\u{3000}"), "▁b▁c");
        // Deletions.
        assert_eq!(n.normalize("zbz"), "▁b");
    }

    #[test]
    fn offsets_point_back_into_the_input() {
        let n = with_rules(&[("ab", "YZ"), ("é", "e")]);
        let (s, o) = n.normalize_with_offsets("  ab é ");
        assert_eq!(s, "▁YZ▁e");
        assert_eq!(o.len(), s.len() + 1);
        // ▁ (3 bytes) from offset 2, Y Z from 2, ▁ from 4, e from 5, end at 7 (after é).
        assert_eq!(o, vec![2, 2, 2, 2, 2, 4, 4, 4, 5, 7]);
        let (s, o) = n.normalize_with_offsets("   ");
        assert_eq!((s.as_str(), o), ("", vec![3]));
    }

    #[test]
    fn malformed_utf8_becomes_replacement_characters() {
        let n = Normalizer::new(&ws(false, false, false, false)).unwrap();
        let (s, o) = n.normalize_bytes_with_offsets(b"a\xff\xe2\x96b");
        assert_eq!(s, "a\u{FFFD}\u{FFFD}\u{FFFD}b");
        assert_eq!(o[..1], [0]);
        assert_eq!(o[1..4], [1, 1, 1]);
        assert_eq!(*o.last().unwrap(), 5);
    }

    #[test]
    fn user_defined_pieces_are_not_normalized() {
        let mut spec = ws(true, true, true, false);
        spec.precompiled_charsmap = build_charsmap(&[("Ａ", "A")]);
        let n = Normalizer::with_user_defined(&spec, [b"\xef\xbc\xa1B".as_slice()]).unwrap();
        assert_eq!(n.normalize("ＡＡB"), "▁AＡB");
    }

    #[test]
    fn malformed_blobs_are_format_errors() {
        let good = build_charsmap(&[("a", "b")]);
        for blob in [
            vec![1, 2, 3],
            vec![0, 0, 0, 0, 0],
            vec![255, 255, 255, 255, 0, 0],
            vec![3, 0, 0, 0, 1, 2, 3, 0],
        ] {
            let mut spec = ws(true, true, true, false);
            spec.precompiled_charsmap = blob;
            assert!(matches!(Normalizer::new(&spec), Err(Error::Format { .. })));
        }
        let mut bad_utf8 = good.clone();
        bad_utf8.push(0xff);
        let mut spec = ws(true, true, true, false);
        spec.precompiled_charsmap = bad_utf8;
        assert!(matches!(Normalizer::new(&spec), Err(Error::Format { .. })));
    }

    /// The same normaliser with the fast paths off: every unit goes through `prefix`.
    fn slow(n: &Normalizer) -> Normalizer {
        let mut n = n.clone();
        n.plain = [false; 256];
        n.after_ascii = [usize::MAX; 128];
        n.plain_space = false;
        n.plain_lead = [0; 256];
        n.ascii_pass = [false; 256];
        n.plain_cp = Vec::new();
        n.fast_class = [0; 128];
        n.has_fast = false;
        n
    }

    /// The output without offsets (the path that can take `ascii_fast`).
    fn bare(n: &Normalizer, text: &str) -> Vec<u8> {
        let mut out = vec![b'#'; 3];
        n.normalize_into(text, &mut out);
        out
    }

    /// A line with spaces doubled, trimmed and leading, for the whitespace collapsing.
    fn corpus_line_variants(line: &str) -> Vec<String> {
        vec![
            line.trim().to_string(),
            line.replace(' ', "  "),
            format!("   {}", line.trim_end()),
        ]
    }

    #[test]
    fn fast_paths_agree_with_the_reference_loop_on_real_models() {
        let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
        let Ok(corpus) = std::fs::read_to_string(shared.join("corpora/botchan.txt")) else {
            eprintln!("shared corpora absent; skipped");
            return;
        };
        let zh = std::fs::read_to_string(shared.join("corpora/zh_fortunes.txt")).unwrap();
        for m in ["spm_en_botchan_1k", "spm_zh_fortunes_8k"] {
            let bytes = std::fs::read(shared.join(format!("models/{m}.model"))).unwrap();
            let fast = Normalizer::for_vocab(&super::super::spm::load(&bytes).unwrap()).unwrap();
            let reference = slow(&fast);
            for line in corpus.lines().chain(zh.lines().take(3000)) {
                let line = format!(" {line}  e\u{301}x\t ");
                let (want, offsets) = reference.normalize_with_offsets(&line);
                assert_eq!(fast.normalize_with_offsets(&line), (want.clone(), offsets));
                assert_eq!(bare(&fast, &line), want.as_bytes());
                for v in corpus_line_variants(&line) {
                    assert_eq!(bare(&fast, &v), bare(&reference, &v), "{v:?}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn fast_paths_agree_with_the_reference_loop(
            text in "[ ab\u{301}\u{3000}éx]{0,40}",
            remove in any::<bool>(), escape in any::<bool>(), protect in any::<bool>()
        ) {
            let mut spec = ws(true, remove, escape, false);
            spec.precompiled_charsmap = build_charsmap(&[
                ("a\u{301}", "á"), ("b", "B"), ("\u{3000}", " "), ("é", "e"), ("x ", "X"),
            ]);
            let protected: &[&[u8]] = if protect { &[b"ab", b" x"] } else { &[] };
            let n = Normalizer::with_user_defined(&spec, protected.iter().copied()).unwrap();
            prop_assert_eq!(n.normalize_with_offsets(&text), slow(&n).normalize_with_offsets(&text));
            prop_assert_eq!(bare(&n, &text), bare(&slow(&n), &text));
        }

        #[test]
        fn ascii_fast_loop_agrees_with_the_reference_loop(
            text in "[ ab.\t\u{301}\u{3000}éx]{0,40}",
            remove in any::<bool>(), escape in any::<bool>(), add in any::<bool>(),
            charsmap in any::<bool>()
        ) {
            let mut spec = ws(add, remove, escape, false);
            if charsmap {
                spec.precompiled_charsmap = build_charsmap(&[
                    ("a\u{301}", "á"), ("b", "B"), ("\u{3000}", " "), ("\t", " "), ("x ", "X"),
                ]);
            }
            let n = Normalizer::new(&spec).unwrap();
            prop_assert_eq!(bare(&n, &text), bare(&slow(&n), &text));
            prop_assert_eq!(bare(&n, &text), n.normalize_with_offsets(&text).0.into_bytes());
        }

        #[test]
        fn fast_paths_agree_on_malformed_utf8(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "中".as_bytes(), "é".as_bytes(), "\u{3000}".as_bytes(), "😀".as_bytes(), b"a",
                b" ", b"\xE4", b"\xB8\xAD", b"\xE0\x80\x80", b"\xED\xA0\x80", b"\xF4\x90\x80\x80",
                b"\xF0\x8F\xBF\xBF", b"\xC1\xBF", b"\xF5", b"\xC3",
            ]), 0..16)
        ) {
            let bytes = parts.concat();
            let mut spec = ws(true, true, true, false);
            spec.precompiled_charsmap = build_charsmap(&[("é", "e"), ("\u{3000}", " ")]);
            let n = Normalizer::new(&spec).unwrap();
            prop_assert_eq!(
                n.normalize_bytes_with_offsets(&bytes),
                slow(&n).normalize_bytes_with_offsets(&bytes)
            );
        }

        #[test]
        fn arbitrary_blobs_never_panic(blob in proptest::collection::vec(any::<u8>(), 0..600),
                                       text in "\\PC{0,40}") {
            let mut spec = ws(true, true, true, false);
            spec.precompiled_charsmap = blob;
            if let Ok(n) = Normalizer::new(&spec) {
                let (s, o) = n.normalize_with_offsets(&text);
                prop_assert_eq!(o.len(), s.len() + 1);
            }
        }

        #[test]
        fn corrupted_real_blobs_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
                                            text in "[a-c é\u{3000}]{0,30}") {
            let mut blob = build_charsmap(&[("a", "x"), ("ab", "YZ"), ("é", "e"), ("\u{3000}", " ")]);
            for (i, b) in flips {
                let k = 4 + i % (blob.len() - 4);
                blob[k] = b;
            }
            let mut spec = ws(true, true, true, false);
            spec.precompiled_charsmap = blob;
            if let Ok(n) = Normalizer::new(&spec) {
                let (s, o) = n.normalize_with_offsets(&text);
                prop_assert_eq!(o.len(), s.len() + 1);
                prop_assert!(o.windows(2).all(|w| w[0] <= w[1]));
            }
        }

        #[test]
        fn offsets_are_monotone_and_bounded(text in "[ a-c\u{3000}é]{0,40}", suffix in any::<bool>()) {
            let mut spec = ws(true, true, true, suffix);
            spec.precompiled_charsmap = build_charsmap(&[("ab", "YZ"), ("é", "e"), ("\u{3000}", " ")]);
            let n = Normalizer::new(&spec).unwrap();
            let (s, o) = n.normalize_with_offsets(&text);
            prop_assert_eq!(&s, &n.normalize(&text));
            prop_assert_eq!(o.len(), s.len() + 1);
            prop_assert!(o.windows(2).all(|w| w[0] <= w[1]));
            prop_assert!(*o.last().unwrap() <= text.len());
        }
    }
}
