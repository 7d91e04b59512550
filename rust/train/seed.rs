//! The unit alphabet (characters, or bytes for byte-level models), character coverage, and the
//! seed vocabulary: every single unit plus the most frequent repeated substrings, found as the
//! internal nodes of the suffix tree of the word list (suffix array + LCP) and scored by
//! frequency × length as SentencePiece does.

use std::collections::HashMap;

use unicode_script::{Script, UnicodeScript};

use super::corpus::Corpus;
use super::suffix::{for_each_interval, lcp_array, suffix_array};
use super::Interrupt;
use crate::error::Result;
use crate::lattice::normalizer::SPACE_MARK;

/// Code of the word separator in [`Units::a`].
pub const SEP: u32 = 0;
/// Code of every character outside the required set (character coverage).
pub const UNK: u32 = 1;

// Unit classes for the piece-validity rules. Scripts use `unicode_script::Script as u8`
// (all below 0xF0 except Common/Inherited/Unknown = 0xFE/0xFD/0xFF).
const C_SEP: u8 = 0xF0;
const C_UNK: u8 = 0xF1;
const C_WS: u8 = 0xF2;
const C_INHERITED: u8 = Script::Inherited as u8;

/// The corpus as one array of unit codes: the words one after another, each followed by
/// [`SEP`]; codes `2..` are the known units, [`UNK`] stands for any uncovered character.
pub struct Units {
    pub byte_level: bool,
    /// Code → the unit's bytes (empty for SEP and UNK).
    pub alphabet: Vec<Vec<u8>>,
    pub a: Vec<u32>,
    /// Validity class of each position of `a`.
    pub class: Vec<u8>,
    /// (start in `a`, length in units, count) of each distinct word.
    pub words: Vec<(u32, u32, u64)>,
    /// Weighted occurrences of each code.
    pub code_counts: Vec<u64>,
    /// Number of characters dropped to UNK by the coverage rule (distinct).
    pub n_uncovered: usize,
}

fn script_class(c: char) -> u8 {
    if c == SPACE_MARK {
        return C_WS;
    }
    let s = c.script();
    // SentencePiece treats kana (and the prolonged sound mark) as Han so that Japanese words
    // mixing them can become pieces.
    if matches!(s, Script::Hiragana | Script::Katakana) || c == '\u{30FC}' {
        Script::Han as u8
    } else {
        s as u8
    }
}

impl Units {
    pub fn build(corpus: &Corpus, byte_level: bool, character_coverage: f64) -> Units {
        let mut alphabet: Vec<Vec<u8>> = vec![Vec::new(), Vec::new()];
        let mut char_code: HashMap<char, u32> = HashMap::new();
        let mut n_uncovered = 0;
        if byte_level {
            alphabet.extend((0..=255u8).map(|b| vec![b]));
        } else {
            let mut counts: HashMap<char, u64> = HashMap::new();
            for (w, n) in &corpus.words {
                // NUL is never a unit (so it is unknown text and in no piece), as in
                // SentencePiece's trainer: its model loader refuses any piece containing NUL,
                // so a NUL piece would make the model impossible to export. It does not count
                // towards character coverage either, as there.
                for c in w.chars().filter(|&c| c != '\0') {
                    *counts.entry(c).or_insert(0) += n;
                }
            }
            let total: u64 = counts.values().sum();
            let mut sorted: Vec<(char, u64)> = counts.into_iter().collect();
            sorted.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut acc = 0u64;
            for (i, &(c, n)) in sorted.iter().enumerate() {
                // Same rule as SentencePiece: stop once the characters taken so far reach the
                // coverage (so coverage 1.0 takes all of them).
                if (acc as f64) >= character_coverage * total as f64 && i > 0 {
                    n_uncovered = sorted.len() - i;
                    break;
                }
                acc += n;
                char_code.insert(c, alphabet.len() as u32);
                alphabet.push(c.to_string().into_bytes());
            }
        }
        let total_units: usize = corpus
            .words
            .iter()
            .map(|(w, _)| {
                if byte_level {
                    w.len()
                } else {
                    w.chars().count()
                }
            })
            .sum::<usize>()
            + corpus.words.len();
        let mut a = Vec::with_capacity(total_units);
        let mut class = Vec::with_capacity(total_units);
        let mut words = Vec::with_capacity(corpus.words.len());
        let mut code_counts = vec![0u64; alphabet.len()];
        for (w, n) in &corpus.words {
            let start = a.len() as u32;
            for c in w.chars() {
                let cl = script_class(c);
                if byte_level {
                    let mut buf = [0u8; 4];
                    for &b in c.encode_utf8(&mut buf).as_bytes() {
                        a.push(b as u32 + 2);
                        class.push(cl);
                        code_counts[b as usize + 2] += n;
                    }
                } else {
                    match char_code.get(&c) {
                        Some(&code) => {
                            a.push(code);
                            class.push(cl);
                            code_counts[code as usize] += n;
                        }
                        None => {
                            a.push(UNK);
                            class.push(C_UNK);
                        }
                    }
                }
            }
            words.push((start, a.len() as u32 - start, *n));
            a.push(SEP);
            class.push(C_SEP);
        }
        Units {
            byte_level,
            alphabet,
            a,
            class,
            words,
            code_counts,
            n_uncovered,
        }
    }

    /// Number of units at `a[p..]` (at most `max_len`) that form a valid piece: no separator
    /// or uncovered character, the whitespace mark only as a prefix, one script (Common counts
    /// as a script of its own, so punctuation and digits do not glue to words), as
    /// SentencePiece's `split_by_whitespace` / `split_by_unicode_script` rules.
    pub fn valid_prefix(&self, p: usize, max_len: usize) -> usize {
        let mut prev: Option<u8> = None;
        let ws_max = if self.byte_level {
            SPACE_MARK.len_utf8()
        } else {
            1
        };
        for k in 0..max_len {
            let Some(&c) = self.class.get(p + k) else {
                return k;
            };
            match c {
                C_SEP | C_UNK => return k,
                C_WS => {
                    if prev.is_some() || k >= ws_max {
                        return k;
                    }
                }
                _ => {
                    let s = if c == C_INHERITED {
                        prev.unwrap_or(c)
                    } else {
                        c
                    };
                    if prev.is_some_and(|q| q != s) {
                        return k;
                    }
                    prev = Some(s);
                }
            }
        }
        max_len
    }
}

/// Seed pieces as code sequences with their frequency × length scores (single units first,
/// then the substrings by decreasing score); at most `seed_size` in all, but never fewer than
/// the single units.
pub fn seed_pieces(units: &Units, max_len: usize, seed_size: usize) -> Vec<(Vec<u32>, f64)> {
    // Only the check can fail, and this one never does.
    seed_pieces_interruptible(units, max_len, seed_size, &|| Ok(())).unwrap_or_default()
}

/// [`seed_pieces`], calling `check` between its phases (seconds each on a large corpus).
pub fn seed_pieces_interruptible(
    units: &Units,
    max_len: usize,
    seed_size: usize,
    check: Interrupt,
) -> Result<Vec<(Vec<u32>, f64)>> {
    let mut out: Vec<(Vec<u32>, f64)> = Vec::new();
    for (code, &n) in units.code_counts.iter().enumerate().skip(2) {
        // Byte-level models keep all 256 bytes even when absent from the corpus.
        if n > 0 || units.byte_level {
            out.push((vec![code as u32], n as f64));
        }
    }
    if max_len < 2 || units.a.is_empty() {
        return Ok(out);
    }
    let a = &units.a;
    let sa = suffix_array(a, units.alphabet.len());
    check()?;
    let lcp = lcp_array(a, &sa);
    check()?;
    // Occurrences are weighted by the count of the word they fall in.
    let mut pos_weight = vec![0u64; a.len()];
    for &(s, l, n) in &units.words {
        pos_weight[s as usize..(s + l) as usize].fill(n);
    }
    let mut cum = Vec::with_capacity(a.len() + 1);
    cum.push(0u64);
    let mut t = 0u64;
    for &p in &sa {
        t += pos_weight[p as usize];
        cum.push(t);
    }
    drop(pos_weight);
    check()?;
    // (score, SA rank of the first occurrence, length). A substring determines its occurrence
    // interval, so each candidate comes from exactly one interval (or leaf) and needs no
    // de-duplication.
    let mut cands: Vec<(f64, u32, u32)> = Vec::new();
    for_each_interval(&lcp, |iv| {
        let p = sa[iv.lb as usize] as usize;
        // SentencePiece drops nodes longer than the maximum piece length or crossing a
        // boundary; we keep their longest valid prefix when it has the same occurrences.
        let vp = units.valid_prefix(p, (iv.len as usize).min(max_len));
        if vp >= 2 && vp as u32 > iv.parent_len {
            let freq = cum[iv.rb as usize + 1] - cum[iv.lb as usize];
            if freq >= 2 {
                cands.push((freq as f64 * vp as f64, iv.lb, vp as u32));
            }
        }
    });
    check()?;
    // Leaves: a substring found in one distinct word only is still repeated in the corpus when
    // that word occurs at least twice (SentencePiece seeds from whole sentences, where it
    // would be an internal node).
    for (i, &p) in sa.iter().enumerate() {
        let parent = lcp[i].max(lcp.get(i + 1).copied().unwrap_or(0));
        let vp = units.valid_prefix(p as usize, max_len);
        let freq = cum[i + 1] - cum[i];
        if vp >= 2 && vp as u32 > parent && freq >= 2 {
            cands.push((freq as f64 * vp as f64, i as u32, vp as u32));
        }
    }
    check()?;
    cands.sort_unstable_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let room = seed_size.saturating_sub(out.len());
    for &(score, lb, len) in cands.iter().take(room) {
        let p = sa[lb as usize] as usize;
        out.push((a[p..p + len as usize].to_vec(), score));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::corpus::CorpusBuilder;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn units_of(lines: &[&str], byte_level: bool) -> Units {
        let mut b = CorpusBuilder::new(&[], None, 0).unwrap();
        for l in lines {
            b.add(l);
        }
        Units::build(&b.finish(), byte_level, 1.0)
    }

    /// Brute force: every valid substring of 2..=max_len units with its weighted frequency
    /// (counted at every occurrence, times the word's count).
    fn brute(units: &Units, max_len: usize) -> BTreeMap<Vec<u32>, u64> {
        let mut m = BTreeMap::new();
        for &(s, l, n) in &units.words {
            for i in s..s + l {
                let vp = units.valid_prefix(i as usize, max_len);
                for len in 2..=vp {
                    *m.entry(units.a[i as usize..i as usize + len].to_vec())
                        .or_insert(0) += n;
                }
            }
        }
        m
    }

    proptest! {
        #[test]
        fn seed_scores_are_true_frequencies(
            lines in prop::collection::vec("[ab cé中文,1]{0,12}", 1..12),
            max_len in 1usize..6,
            byte_level in any::<bool>(),
        ) {
            let refs: Vec<&str> = lines.iter().map(|s| s.as_str()).collect();
            let units = units_of(&refs, byte_level);
            let seed = seed_pieces(&units, max_len, usize::MAX);
            let truth = brute(&units, max_len);
            let mut seen = std::collections::HashSet::new();
            for (p, score) in &seed {
                prop_assert!(seen.insert(p.clone()), "duplicate seed piece");
                if p.len() == 1 {
                    prop_assert_eq!(*score, units.code_counts[p[0] as usize] as f64);
                    continue;
                }
                let f = truth.get(p).copied();
                prop_assert!(f.is_some(), "seed piece {:?} is not a valid substring", p);
                prop_assert!(f.unwrap() >= 2, "seed piece {:?} is not repeated", p);
                prop_assert_eq!(*score, (f.unwrap() * p.len() as u64) as f64);
            }
            // Every valid substring repeated in the corpus (counting word multiplicity) and
            // right-branching (followed by different units, or at a valid-span end) is in the
            // seed.
            let mut follow: BTreeMap<Vec<u32>, std::collections::BTreeSet<Option<u32>>> =
                BTreeMap::new();
            let mut occ: BTreeMap<Vec<u32>, u64> = BTreeMap::new();
            for &(s, l, n) in &units.words {
                for i in s..s + l {
                    let vp = units.valid_prefix(i as usize, max_len);
                    for len in 2..=vp {
                        let sub = units.a[i as usize..i as usize + len].to_vec();
                        let next = if len < vp { Some(units.a[i as usize + len]) } else { None };
                        follow.entry(sub.clone()).or_default().insert(next);
                        *occ.entry(sub).or_insert(0) += n;
                    }
                }
            }
            for (sub, nexts) in follow {
                if occ[&sub] >= 2 && (nexts.len() >= 2 || nexts.contains(&None)) {
                    prop_assert!(seen.contains(&sub), "missing seed piece {:?}", sub);
                }
            }
        }
    }

    #[test]
    fn pieces_do_not_cross_words_scripts_or_uncovered_chars() {
        let u = units_of(&["ab,ab, 中文ab"], false);
        // "▁ab,ab," : ▁ a b , a b ,  then SEP, ▁ 中 文 a b SEP
        assert_eq!(u.valid_prefix(0, 16), 3); // "▁ab" stops at the comma (Common)
        assert_eq!(u.valid_prefix(3, 16), 1); // "," then Latin
        assert_eq!(u.valid_prefix(4, 16), 2); // "ab" then the comma
                                              // The second word "▁中文ab" starts after the separator at 7: Han then Latin.
        assert_eq!(u.valid_prefix(8, 16), 3);
        assert_eq!(u.valid_prefix(6, 16), 1); // the separator stops everything after ","
    }
}
