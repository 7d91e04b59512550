//! Double-array tries mapping pieces to piece ids.
//!
//! The lattice hot loop is "for each start position, walk the trie over the following symbols
//! and report every piece that ends". [`Trie`] walks bytes: [`Trie::common_prefixes`] does one
//! array read and one compare per byte, no allocation and no hashing. [`CharTrie`] walks
//! whole characters (the text first becomes one dense symbol per character), so a CJK
//! character is one dependent step instead of three; it is what Viterbi and perfect sampling
//! run on. Units pack `base`, `check` and `value` together so a transition touches one cache
//! line.

use crate::error::{Error, Result};

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct Unit {
    /// Children of this node live at `base + label`.
    pub(crate) base: u32,
    /// Parent node index (`NONE` for free units and for the root).
    pub(crate) check: u32,
    /// Piece id ending here, or `NONE`.
    pub(crate) value: u32,
}

/// Builds the double array of `keys` (label sequences with their ids) over labels
/// `0..alphabet`; returns the units, padded so that `base + label` is in bounds for every
/// unit's `base` and every label below `alphabet`.
fn build_units<L: Copy + Ord + Into<u32>>(
    keys: &[(&[L], u32)],
    alphabet: usize,
) -> Result<Vec<Unit>> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_unstable_by(|&a, &b| keys[a].0.cmp(keys[b].0));
    for w in order.windows(2) {
        if keys[w[0]].0 == keys[w[1]].0 {
            return Err(Error::invalid("duplicate key in trie"));
        }
    }
    let sorted: Vec<(&[L], u32)> = order.iter().map(|&i| keys[i]).collect();
    let mut b = Builder::new(alphabet);
    // Explicit stack instead of recursion: (node, key range, depth).
    let mut stack = vec![(0u32, 0usize, sorted.len(), 0usize)];
    let mut labels: Vec<(u32, usize, usize)> = Vec::new();
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
            labels.push((c.into(), i, j));
            i = j;
        }
        let base = b.find_base(&labels);
        b.units[node as usize].base = base;
        for &(c, l, h) in &labels {
            let child = base + c;
            b.occupy(child, node);
            stack.push((child, l, h, depth + 1));
        }
    }
    let mut units = b.units;
    // Pad so that `base + label` is always in bounds: the walks then need no length test
    // beyond the `check` compare.
    let max_base = units.iter().map(|u| u.base as usize).max().unwrap_or(0);
    if units.len() < max_base + alphabet {
        units.resize(
            max_base + alphabet,
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
    Ok(units)
}

#[derive(Clone, Debug)]
pub struct Trie {
    units: Vec<Unit>,
}

impl Trie {
    /// Builds the trie from `(bytes, id)` pairs. Keys must be non-empty and distinct.
    pub fn build(keys: &[(&[u8], u32)]) -> Result<Trie> {
        Ok(Trie {
            units: build_units(keys, 256)?,
        })
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

/// Starts walked together by [`CharTrie::walk_avx512`] (one per 32-bit lane of a 512-bit
/// register).
pub(crate) const LANES: usize = 16;

/// Deepest walk (in characters) the lockstep walk records (one bit per depth in a `u64`);
/// models with longer pieces take the one-start-at-a-time walk.
pub(crate) const MAX_LOCKSTEP_DEPTH: usize = 64;

/// Flag bit of a packed unit's base word: a piece ends at this node.
const TERMINAL: u32 = 1 << 31;

/// Symbol of a character no piece contains, and of the padding after a text: no node has a
/// child with this label, so a walk reaching it ends.
pub(crate) const NO_SYMBOL: u32 = 0;

/// A trie over whole characters of UTF-8 pieces.
///
/// Each character occurring in some piece gets a dense symbol `1..=K` (the most frequent
/// first, so a node's children sit close together); [`CharTrie::symbols`] turns a text into
/// one symbol per lattice unit, and the walks then take one step per character.
#[derive(Clone, Debug)]
pub struct CharTrie {
    /// Packed units: `base | (has value) << 31` in the low word, `check` in the high word
    /// (8 bytes: one 64-bit gather per lane and step in the lockstep walk).
    pub(crate) units: Vec<u64>,
    /// Piece id of each node (`NONE` where no piece ends), then extra labels
    /// ([`CharTrie::add_label`]).
    pub(crate) values: Vec<u32>,
    /// Length in units of the piece ending at each node (0 where none; 1 for extra labels).
    pub(crate) node_len: Vec<u16>,
    /// Longest key, in characters.
    pub(crate) max_len: usize,
    /// Index in `values` of the UNK edge's label, when the model has one (set by the model).
    pub(crate) unk_node: Option<u32>,
    /// Byte-level: every byte is a unit and its own symbol (`byte + 1`).
    bytes: bool,
    /// Symbols of ASCII characters.
    ascii: [u32; 128],
    /// Two-level map of the other code points: `pages[cp >> 8]` is the offset in `page_syms`
    /// of the 256 symbols of that page (offset 0: a page of `NO_SYMBOL`).
    pages: Vec<u32>,
    page_syms: Vec<u32>,
}

impl CharTrie {
    /// Builds the trie from `(piece, id)` pairs; every piece must be non-empty, distinct,
    /// well-formed UTF-8.
    pub fn build(keys: &[(&[u8], u32)]) -> Result<CharTrie> {
        let mut strs = Vec::with_capacity(keys.len());
        for &(k, id) in keys {
            let s = std::str::from_utf8(k)
                .map_err(|_| Error::invalid("a character trie key is not valid UTF-8"))?;
            strs.push((s, id));
        }
        // Symbols by decreasing frequency over the keys (ties by code point, for determinism).
        let mut freq: std::collections::HashMap<char, u64> = std::collections::HashMap::new();
        for (s, _) in &strs {
            for ch in s.chars() {
                *freq.entry(ch).or_default() += 1;
            }
        }
        let mut chars: Vec<(char, u64)> = freq.into_iter().collect();
        chars.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut ascii = [NO_SYMBOL; 128];
        let mut pages = vec![0u32; 0x1100];
        let mut page_syms = vec![NO_SYMBOL; 256];
        let mut sym_of = std::collections::HashMap::with_capacity(chars.len());
        for (i, &(ch, _)) in chars.iter().enumerate() {
            let sym = i as u32 + 1;
            sym_of.insert(ch, sym);
            let cp = ch as u32;
            if cp < 128 {
                ascii[cp as usize] = sym;
            } else {
                let page = (cp >> 8) as usize;
                if pages[page] == 0 {
                    pages[page] = page_syms.len() as u32;
                    page_syms.resize(page_syms.len() + 256, NO_SYMBOL);
                }
                page_syms[pages[page] as usize + (cp & 0xff) as usize] = sym;
            }
        }
        let seqs: Vec<Vec<u32>> = strs
            .iter()
            .map(|(s, _)| s.chars().map(|c| sym_of[&c]).collect())
            .collect();
        let pairs: Vec<(&[u32], u32)> = seqs
            .iter()
            .zip(&strs)
            .map(|(q, &(_, id))| (q.as_slice(), id))
            .collect();
        let max_len = seqs.iter().map(|q| q.len()).max().unwrap_or(0);
        let mut t = CharTrie::from_sequences(&pairs, chars.len() + 1, max_len, false)?;
        t.ascii = ascii;
        t.pages = pages;
        t.page_syms = page_syms;
        Ok(t)
    }

    /// The byte-level variant: every byte is a unit, its symbol `byte + 1`; keys are any
    /// non-empty distinct byte strings.
    pub fn build_bytes(keys: &[(&[u8], u32)]) -> Result<CharTrie> {
        let seqs: Vec<Vec<u32>> = keys
            .iter()
            .map(|(k, _)| k.iter().map(|&b| b as u32 + 1).collect())
            .collect();
        let pairs: Vec<(&[u32], u32)> = seqs
            .iter()
            .zip(keys)
            .map(|(q, &(_, id))| (q.as_slice(), id))
            .collect();
        let max_len = keys.iter().map(|k| k.0.len()).max().unwrap_or(0);
        CharTrie::from_sequences(&pairs, 257, max_len, true)
    }

    fn from_sequences(
        pairs: &[(&[u32], u32)],
        alphabet: usize,
        max_len: usize,
        bytes: bool,
    ) -> Result<CharTrie> {
        let built = build_units(pairs, alphabet)?;
        if built.len() >= TERMINAL as usize {
            return Err(Error::Limit("vocabulary too large for the trie".into()));
        }
        let units = built
            .iter()
            .map(|u| {
                let flag = if u.value != NONE { TERMINAL } else { 0 };
                ((u.check as u64) << 32) | (u.base | flag) as u64
            })
            .collect();
        let values: Vec<u32> = built.iter().map(|u| u.value).collect();
        let mut node_len = vec![0u16; values.len()];
        for &(seq, _) in pairs {
            let mut node = 0usize;
            for &c in seq {
                node = (built[node].base + c) as usize;
            }
            // Pieces are at most u16::MAX bytes, so at most that many units.
            node_len[node] = seq.len() as u16;
        }
        Ok(CharTrie {
            units,
            values,
            node_len,
            max_len,
            unk_node: None,
            bytes,
            ascii: [NO_SYMBOL; 128],
            pages: Vec::new(),
            page_syms: Vec::new(),
        })
    }

    /// Symbol of code point `cp`.
    #[inline(always)]
    pub(crate) fn symbol(&self, cp: u32) -> u32 {
        if cp < 128 {
            return self.ascii[cp as usize];
        }
        match self.pages.get((cp >> 8) as usize) {
            Some(&off) => self.page_syms[off as usize + (cp & 0xff) as usize],
            None => NO_SYMBOL,
        }
    }

    /// Appends the lattice units of `text[from..]` to `sym` (their symbols) and `pos` (their
    /// byte offsets), stopping after `max_units` units or at the end of the text; returns
    /// the offset where the last appended unit ends.
    ///
    /// A unit is one character as SentencePiece steps over the text (the length its first
    /// byte announces, cut at the end of the text), so on malformed UTF-8 these are exactly
    /// the positions the byte-wise lattice can reach; a unit that is not a well-formed
    /// character gets `NO_SYMBOL`, like a character no piece contains.
    #[inline]
    pub(crate) fn symbols(
        &self,
        text: &[u8],
        from: usize,
        max_units: usize,
        sym: &mut Vec<u32>,
        pos: &mut Vec<usize>,
    ) -> usize {
        let n = text.len();
        if self.bytes {
            let end = n.min(from + max_units);
            sym.extend(text[from..end].iter().map(|&b| b as u32 + 1));
            pos.extend(from..end);
            return end;
        }
        let cap = max_units.min(n - from);
        sym.reserve(cap);
        pos.reserve(cap);
        let (s0, p0) = (sym.len(), pos.len());
        let sbuf = &mut sym.spare_capacity_mut()[..cap];
        let pbuf = &mut pos.spare_capacity_mut()[..cap];
        let mut k = 0;
        let mut p = from;
        while k < cap {
            let b = text[p];
            if b < 0x80 {
                sbuf[k].write(self.ascii[b as usize]);
                pbuf[k].write(p);
                k += 1;
                p += 1;
            } else if (0xE0..0xF0).contains(&b) && p + 3 <= n {
                // Three-byte characters (CJK, U+2581) decoded inline.
                let (b1, b2) = (text[p + 1], text[p + 2]);
                let cp = ((b as u32 & 0x0F) << 12) | ((b1 as u32 & 0x3F) << 6) | (b2 as u32 & 0x3F);
                let ok = b1 & 0xC0 == 0x80
                    && b2 & 0xC0 == 0x80
                    && cp >= 0x800
                    && !(0xD800..0xE000).contains(&cp);
                sbuf[k].write(if ok { self.symbol(cp) } else { NO_SYMBOL });
                pbuf[k].write(p);
                k += 1;
                p += 3;
            } else {
                let len = super::model::utf8_len(b).min(n - p);
                let cp = decode(&text[p..p + len]);
                sbuf[k].write(cp.map_or(NO_SYMBOL, |cp| self.symbol(cp)));
                pbuf[k].write(p);
                k += 1;
                p += len;
            }
            if p == n {
                break;
            }
        }
        // SAFETY: entries `..k` of both spare capacities were written above.
        unsafe {
            sym.set_len(s0 + k);
            pos.set_len(p0 + k);
        }
        p
    }

    pub fn memory_bytes(&self) -> usize {
        self.units.len() * std::mem::size_of::<Unit>()
            + (self.pages.len() + self.page_syms.len()) * 4
    }

    /// Adds a label that no node carries (the UNK edge's) and returns the node-like index
    /// that [`CharTrie::walk_avx512`]'s users can store for it: `values[index]` is `id`.
    pub(crate) fn add_label(&mut self, id: u32) -> u32 {
        self.values.push(id);
        self.node_len.push(1);
        (self.values.len() - 1) as u32
    }

    /// Calls `f(length, node)` for every key that is a prefix of `sym` (lengths in symbols;
    /// the key's id is `values[node]`), shortest first. The walk ends at the first
    /// `NO_SYMBOL` at the latest.
    #[inline(always)]
    pub(crate) fn common_prefixes(&self, sym: &[u32], mut f: impl FnMut(usize, u32)) {
        let units = &self.units[..];
        let mut node = 0usize;
        let mut base = units[0] as u32 & !TERMINAL;
        for (i, &c) in sym.iter().enumerate() {
            let next = base as usize + c as usize;
            // SAFETY: `base` is the root's or that of a unit that passed the check below, and
            // `build_units` padded the units to `max(base) + alphabet` entries; symbols are
            // below the alphabet size, so `next` is in bounds.
            let u = unsafe { *units.get_unchecked(next) };
            if (u >> 32) as usize != node {
                return;
            }
            node = next;
            base = u as u32 & !TERMINAL;
            if u as u32 & TERMINAL != 0 {
                f(i + 1, node as u32);
            }
        }
    }

    /// Walks two blocks of starts in lockstep, one symbol of every lane per step: block
    /// `i` has its starts at `syms[i][0..lanes[i]]` (`lanes[i] <= LANES`, 0 for none), and
    /// gets `rows[i][d][k]`, lane `k`'s node at depth `d + 1`, with bit `d` of `bits[i][k]`
    /// saying whether a piece ends there (a key of `d + 1` symbols starting at `k`; its id
    /// is `values[rows[i][d][k]]`). Lanes from `lanes[i]` on get no bits. Returns, per
    /// block, the number of steps that found a node in some lane (later rows are stale).
    ///
    /// Why: a walk is a chain of dependent loads ending in a mispredicted branch. Sixteen
    /// walks as vector lanes overlap their loads (two 64-bit gathers per step) and end the
    /// loop once for all of them; two independent blocks keep two such chains in flight.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `max_len <= MAX_LOCKSTEP_DEPTH`, each `rows[i]` has
    /// `MAX_LOCKSTEP_DEPTH` entries, and each `syms[i]` continues with at least `LANES`
    /// `NO_SYMBOL`s after the last symbol a walk can reach (a lane alive at step `d` read
    /// symbol `k + d - 1`, so `d` never passes that padding's start).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn walk_avx512(
        &self,
        syms: [&[u32]; 2],
        lanes: [usize; 2],
        rows: [&mut [[u32; LANES]]; 2],
        bits: [&mut [u64; LANES]; 2],
    ) -> [usize; 2] {
        use std::arch::x86_64::*;
        debug_assert!(self.max_len <= MAX_LOCKSTEP_DEPTH);
        debug_assert!(rows.iter().all(|r| r.len() >= MAX_LOCKSTEP_DEPTH));
        let root = _mm512_set1_epi32((self.units[0] as u32 & !TERMINAL) as i32);
        let mask = |l: usize| -> __mmask16 {
            if l >= LANES {
                0xFFFF
            } else {
                (1u16 << l) - 1
            }
        };
        let mut st = [
            Lanes::new(root, mask(lanes[0])),
            Lanes::new(root, mask(lanes[1])),
        ];
        let [rows0, rows1] = rows;
        loop {
            let mut any = false;
            // SAFETY: forwarded contract.
            unsafe {
                if st[0].alive != 0 {
                    any |= self.step(&mut st[0], syms[0], rows0);
                }
                if st[1].alive != 0 {
                    any |= self.step(&mut st[1], syms[1], rows1);
                }
            }
            if !any {
                break;
            }
        }
        let [b0, b1] = bits;
        // SAFETY: AVX-512F (contract); each `bits` is 16 u64s, two 512-bit stores.
        unsafe {
            for (s, b) in st.iter().zip([b0, b1]) {
                _mm512_storeu_si512(b.as_mut_ptr() as *mut _, s.lo);
                _mm512_storeu_si512(b.as_mut_ptr().add(8) as *mut _, s.hi);
            }
        }
        [st[0].depth, st[1].depth]
    }

    /// One step of a lockstep walk; returns whether some lane is still alive.
    ///
    /// # Safety
    /// As [`CharTrie::walk_avx512`], for this block.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn step(&self, st: &mut Lanes, sym: &[u32], rows: &mut [[u32; LANES]]) -> bool {
        use std::arch::x86_64::*;
        let up = self.units.as_ptr() as *const i64;
        let zero = _mm512_setzero_si512();
        // Word permutations joining the low (base) and high (check) words of two vectors of
        // eight units into one vector of sixteen.
        let lows = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let highs = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let flag = _mm512_set1_epi32(TERMINAL as i32);
        let d = st.depth;
        debug_assert!(d + LANES <= sym.len());
        // SAFETY: see the contract: `sym[d..d + LANES]` is in bounds while a lane is alive.
        let c = unsafe { _mm512_loadu_si512(sym.as_ptr().add(d) as *const _) };
        let next = _mm512_add_epi32(st.base, c);
        // SAFETY: `next = base + symbol` of a live node is within the padded units (see
        // `common_prefixes`), and masked-off lanes load nothing.
        let (u0, u1) = unsafe {
            (
                _mm512_mask_i32gather_epi64::<8>(
                    zero,
                    st.alive as u8,
                    _mm512_castsi512_si256(next),
                    up,
                ),
                _mm512_mask_i32gather_epi64::<8>(
                    zero,
                    (st.alive >> 8) as u8,
                    _mm512_extracti64x4_epi64::<1>(next),
                    up,
                ),
            )
        };
        let check = _mm512_permutex2var_epi32(u0, highs, u1);
        let ok = _mm512_mask_cmpeq_epi32_mask(st.alive, check, st.node);
        st.alive = ok;
        if ok == 0 {
            return false;
        }
        let word = _mm512_permutex2var_epi32(u0, lows, u1);
        // A live lane is at depth d + 1 <= max_len <= MAX_LOCKSTEP_DEPTH.
        let hit = _mm512_mask_test_epi32_mask(ok, word, flag);
        // SAFETY: `d < MAX_LOCKSTEP_DEPTH <= rows.len()`.
        unsafe { _mm512_storeu_si512(rows.get_unchecked_mut(d).as_mut_ptr() as *mut _, next) };
        st.lo = _mm512_mask_or_epi64(st.lo, hit as u8, st.lo, st.bit);
        st.hi = _mm512_mask_or_epi64(st.hi, (hit >> 8) as u8, st.hi, st.bit);
        st.bit = _mm512_slli_epi64::<1>(st.bit);
        st.node = next;
        st.base = _mm512_andnot_si512(flag, word);
        st.depth = d + 1;
        true
    }
}

/// State of one block of lockstep walks ([`CharTrie::walk_avx512`]).
#[cfg(target_arch = "x86_64")]
struct Lanes {
    node: std::arch::x86_64::__m512i,
    base: std::arch::x86_64::__m512i,
    alive: std::arch::x86_64::__mmask16,
    /// Hit bits of lanes 0..8 and 8..16 (one u64 per lane).
    lo: std::arch::x86_64::__m512i,
    hi: std::arch::x86_64::__m512i,
    /// `1 << depth` in every u64.
    bit: std::arch::x86_64::__m512i,
    depth: usize,
}

#[cfg(target_arch = "x86_64")]
impl Lanes {
    #[target_feature(enable = "avx512f")]
    fn new(root: std::arch::x86_64::__m512i, alive: std::arch::x86_64::__mmask16) -> Lanes {
        use std::arch::x86_64::*;
        Lanes {
            node: _mm512_setzero_si512(),
            base: root,
            alive,
            lo: _mm512_setzero_si512(),
            hi: _mm512_setzero_si512(),
            bit: _mm512_set1_epi64(1),
            depth: 0,
        }
    }
}

/// The code point of `c` when it is exactly one well-formed UTF-8 character of 2 to 4 bytes
/// (no overlongs, surrogates or code points above U+10FFFF).
#[inline(always)]
fn decode(c: &[u8]) -> Option<u32> {
    let cont = |b: u8| (b & 0xC0 == 0x80).then_some((b & 0x3F) as u32);
    match *c {
        [a @ 0xC2..=0xDF, b] => Some(((a as u32 & 0x1F) << 6) | cont(b)?),
        [a @ 0xE0..=0xEF, b, c] => {
            let cp = ((a as u32 & 0x0F) << 12) | (cont(b)? << 6) | cont(c)?;
            (cp >= 0x800 && !(0xD800..=0xDFFF).contains(&cp)).then_some(cp)
        }
        [a @ 0xF0..=0xF4, b, c, d] => {
            let cp = ((a as u32 & 0x07) << 18) | (cont(b)? << 12) | (cont(c)? << 6) | cont(d)?;
            (0x10000..=0x10FFFF).contains(&cp).then_some(cp)
        }
        _ => None,
    }
}

struct Builder {
    units: Vec<Unit>,
    used: Vec<bool>,
    /// Doubly linked list of free slots still worth trying as a first child position.
    next: Vec<u32>,
    prev: Vec<u32>,
    in_list: Vec<bool>,
    head: u32,
    tail: u32,
    /// Number of labels: a base reserves `alphabet` slots after it.
    alphabet: usize,
    /// One past the highest occupied slot.
    frontier: usize,
}

/// Free slots further than this behind the highest occupied slot are dropped from the search
/// list (as darts-clone closes old blocks): they cost a scan for every later node and rarely
/// fit, which made large dictionaries (jieba: 350k words) quadratic to build. Measured from
/// the occupied frontier, not the array's end, because the array runs a whole alphabet past
/// the last base (257 slots for bytes, thousands for characters).
const SEARCH_WINDOW: usize = 4096;

impl Builder {
    fn new(alphabet: usize) -> Builder {
        let mut b = Builder {
            units: Vec::new(),
            used: Vec::new(),
            next: Vec::new(),
            prev: Vec::new(),
            in_list: Vec::new(),
            head: NONE,
            tail: NONE,
            alphabet,
            frontier: 0,
        };
        b.ensure(1);
        b.occupy(0, NONE);
        b.units[0].base = 1;
        b
    }
    fn ensure(&mut self, n: usize) {
        while self.units.len() < n {
            let i = self.units.len() as u32;
            self.units.push(Unit {
                base: 0,
                check: NONE,
                value: NONE,
            });
            self.used.push(false);
            self.in_list.push(true);
            self.next.push(NONE);
            self.prev.push(self.tail);
            if self.tail == NONE {
                self.head = i;
            } else {
                self.next[self.tail as usize] = i;
            }
            self.tail = i;
        }
    }

    fn unlink(&mut self, at: usize) {
        if !self.in_list[at] {
            return;
        }
        self.in_list[at] = false;
        let (p, n) = (self.prev[at], self.next[at]);
        if p == NONE {
            self.head = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NONE {
            self.tail = p;
        } else {
            self.prev[n as usize] = p;
        }
    }

    fn occupy(&mut self, at: u32, parent: u32) {
        let at = at as usize;
        self.ensure(at + 1);
        self.used[at] = true;
        self.frontier = self.frontier.max(at + 1);
        self.units[at].check = parent;
        self.unlink(at);
    }

    /// Smallest base >= 1 (among the searched free slots) whose slots `base + label` are all
    /// free.
    fn find_base(&mut self, labels: &[(u32, usize, usize)]) -> u32 {
        let c0 = labels[0].0 as usize;
        while self.head != NONE && (self.head as usize) + SEARCH_WINDOW < self.frontier {
            self.unlink(self.head as usize);
        }
        let mut p = self.head;
        loop {
            if p == NONE {
                // Nothing fits: place the first child just past the end.
                let pos = self.units.len().max(c0 + 1);
                let base = pos - c0;
                self.ensure(base + self.alphabet + 1);
                return base as u32;
            }
            let pos = p as usize;
            if pos > c0 {
                let base = pos - c0;
                self.ensure(base + self.alphabet + 1);
                if labels
                    .iter()
                    .all(|&(c, _, _)| !self.used[base + c as usize])
                {
                    return base as u32;
                }
            }
            p = self.next[pos];
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
