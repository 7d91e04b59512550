//! The training lattice and the EM steps.
//!
//! Every edge (piece occurrence) of every distinct word is found once, with the seed
//! vocabulary, by walking a sorted piece table; afterwards vocabulary changes only delete
//! pieces, so each round just drops the dead edges. The E-step is a forward–backward pass per
//! word in log space (one `exp` per edge per pass, one `ln` per position), weighted by the
//! word's count, parallel over fixed chunks of words whose partial sums are merged in chunk
//! order, so the result is bit-identical for every thread count.

use rayon::prelude::*;

use super::seed::{Units, SEP, UNK};
use super::Interrupt;
use crate::error::Result;
use crate::parallel;

/// Sentinel piece id of the unknown-character edge.
pub const UNK_PIECE: u32 = u32::MAX;

/// Pieces as code sequences, sorted lexicographically so that all pieces sharing a prefix are
/// one contiguous range (a trie without pointers).
pub struct PieceTable {
    pub units: Vec<u32>,
    pub off: Vec<u32>,
}

impl PieceTable {
    pub fn new(mut pieces: Vec<Vec<u32>>) -> (PieceTable, Vec<u32>) {
        // Returns the table and, for each input piece, its id in the table.
        let mut order: Vec<u32> = (0..pieces.len() as u32).collect();
        order.sort_unstable_by(|&x, &y| pieces[x as usize].cmp(&pieces[y as usize]));
        let mut units = Vec::new();
        let mut off = vec![0u32];
        let mut id_of = vec![0u32; pieces.len()];
        for (new, &old) in order.iter().enumerate() {
            units.extend_from_slice(&pieces[old as usize]);
            off.push(units.len() as u32);
            id_of[old as usize] = new as u32;
        }
        pieces.clear();
        (PieceTable { units, off }, id_of)
    }

    pub fn len(&self) -> usize {
        self.off.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn piece(&self, id: u32) -> &[u32] {
        &self.units[self.off[id as usize] as usize..self.off[id as usize + 1] as usize]
    }

    /// Calls `f(len, id)` for every piece that is a prefix of `text` (shortest first).
    #[inline]
    pub fn prefixes(&self, text: &[u32], mut f: impl FnMut(usize, u32)) {
        let (mut lo, mut hi) = (0usize, self.len());
        for (d, &c) in text.iter().enumerate() {
            if c == SEP {
                return;
            }
            // Pieces of length exactly d sort first in the range: step over that one.
            if lo < hi && (self.off[lo + 1] - self.off[lo]) as usize == d {
                lo += 1;
            }
            let unit = |i: usize| self.units[self.off[i] as usize + d];
            let first = lo + partition(hi - lo, |k| unit(lo + k) < c);
            let last = first + partition(hi - first, |k| unit(first + k) <= c);
            if first == last {
                return;
            }
            lo = first;
            hi = last;
            if (self.off[lo + 1] - self.off[lo]) as usize == d + 1 {
                f(d + 1, lo as u32);
            }
        }
    }
}

/// Number of leading indices in `0..n` for which `pred` holds (pred is monotone).
#[inline]
fn partition(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[derive(Clone, Copy, Debug)]
pub struct Edge {
    pub start: u32,
    pub end: u32,
    pub piece: u32,
}

/// All words' edges, each word's sorted by start position.
pub struct Lattices {
    pub edges: Vec<Edge>,
    /// Edge range of word `w`: `word_off[w]..word_off[w + 1]`.
    pub word_off: Vec<usize>,
    pub word_len: Vec<u32>,
    pub word_count: Vec<f64>,
    /// Fixed chunks of words (independent of the thread count).
    pub chunks: Vec<(usize, usize)>,
}

/// Target number of edges per work chunk: large enough to amortise the merge, small enough to
/// balance threads.
const CHUNK_EDGES: usize = 1 << 16;

/// Blocks of 256 words built between two interrupt checks: about 0.1–0.3 s of work on one
/// core, and enough blocks to keep every thread of a large machine busy.
const CHECK_BLOCKS: usize = 512;

impl Lattices {
    pub fn build(units: &Units, table: &PieceTable, threads: Option<usize>) -> Result<Lattices> {
        Self::build_interruptible(units, table, threads, &|| Ok(()))
    }

    /// [`build`](Self::build), calling `check` after each group of [`CHECK_BLOCKS`] blocks
    /// (the whole build takes seconds on a large corpus). The result does not depend on it.
    pub fn build_interruptible(
        units: &Units,
        table: &PieceTable,
        threads: Option<usize>,
        check: Interrupt,
    ) -> Result<Lattices> {
        let n = units.words.len();
        let block = 256;
        let blocks: Vec<(usize, usize)> = (0..n)
            .step_by(block)
            .map(|s| (s, (s + block).min(n)))
            .collect();
        let mut parts: Vec<(Vec<Edge>, Vec<usize>)> = Vec::with_capacity(blocks.len());
        for group in blocks.chunks(CHECK_BLOCKS) {
            check()?;
            parts.extend(Self::build_blocks(units, table, threads, group)?);
        }
        let total: usize = parts.iter().map(|p| p.0.len()).sum();
        let mut edges = Vec::with_capacity(total);
        let mut word_off = Vec::with_capacity(n + 1);
        word_off.push(0);
        for (e, counts) in parts {
            edges.extend_from_slice(&e);
            for c in counts {
                word_off.push(word_off.last().unwrap() + c);
            }
        }
        let mut lat = Lattices {
            edges,
            word_off,
            word_len: units.words.iter().map(|w| w.1).collect(),
            word_count: units.words.iter().map(|w| w.2 as f64).collect(),
            chunks: Vec::new(),
        };
        lat.rechunk();
        Ok(lat)
    }

    /// The edges (and per-word edge counts) of each block of words, in block order.
    fn build_blocks(
        units: &Units,
        table: &PieceTable,
        threads: Option<usize>,
        blocks: &[(usize, usize)],
    ) -> Result<Vec<(Vec<Edge>, Vec<usize>)>> {
        parallel::run(threads, blocks.len(), |par| {
            parallel::map(par, blocks.len(), |b| {
                let (b0, b1) = blocks[b];
                let mut edges = Vec::new();
                let mut counts = Vec::with_capacity(b1 - b0);
                for &(s, l, _) in &units.words[b0..b1] {
                    let before = edges.len();
                    let text = &units.a[s as usize..(s + l) as usize + 1];
                    for i in 0..l as usize {
                        if text[i] == UNK {
                            edges.push(Edge {
                                start: i as u32,
                                end: i as u32 + 1,
                                piece: UNK_PIECE,
                            });
                            continue;
                        }
                        table.prefixes(&text[i..], |len, id| {
                            edges.push(Edge {
                                start: i as u32,
                                end: (i + len) as u32,
                                piece: id,
                            })
                        });
                    }
                    counts.push(edges.len() - before);
                }
                (edges, counts)
            })
        })
    }

    fn rechunk(&mut self) {
        self.chunks.clear();
        let n = self.word_len.len();
        let mut s = 0;
        while s < n {
            let mut e = s + 1;
            while e < n && self.word_off[e] - self.word_off[s] < CHUNK_EDGES {
                e += 1;
            }
            self.chunks.push((s, e));
            s = e;
        }
    }

    /// Drops the edges of dead pieces (vocabulary only ever shrinks).
    pub fn retain(&mut self, alive: &[bool]) {
        let mut w = 0;
        let mut new_off = Vec::with_capacity(self.word_off.len());
        new_off.push(0);
        for word in 0..self.word_len.len() {
            for i in self.word_off[word]..self.word_off[word + 1] {
                let e = self.edges[i];
                if e.piece == UNK_PIECE || alive[e.piece as usize] {
                    self.edges[w] = e;
                    w += 1;
                }
            }
            new_off.push(w);
        }
        self.edges.truncate(w);
        self.edges.shrink_to_fit();
        self.word_off = new_off;
        self.rechunk();
    }

    /// Runs `per_word` over every word with chunk-local dense scratch and merges the sparse
    /// per-chunk results in chunk order. Returns (dense per-piece totals, scalar total).
    fn map_reduce<F>(
        &self,
        n_pieces: usize,
        threads: Option<usize>,
        per_word: F,
    ) -> Result<(Vec<f64>, f64)>
    where
        F: Fn(usize, &mut Scratch) -> f64 + Sync,
    {
        let chunk = |sc: &mut Scratch, &(w0, w1): &(usize, usize)| {
            let mut total = 0.0;
            for w in w0..w1 {
                total += per_word(w, sc);
            }
            (sc.acc.drain(), total)
        };
        let parts: Vec<(Vec<(u32, f64)>, f64)> =
            parallel::run(threads, self.chunks.len(), |par| {
                if par {
                    self.chunks
                        .par_iter()
                        .map_init(|| Scratch::new(n_pieces), chunk)
                        .collect()
                } else {
                    let mut sc = Scratch::new(n_pieces);
                    self.chunks.iter().map(|c| chunk(&mut sc, c)).collect()
                }
            })?;
        let mut acc = vec![0.0f64; n_pieces];
        let mut total = 0.0;
        for (sparse, t) in parts {
            for (p, v) in sparse {
                acc[p as usize] += v;
            }
            total += t;
        }
        Ok((acc, total))
    }

    /// E-step: expected count of every piece over the corpus (weighted by word counts) and
    /// the corpus log-likelihood `Σ count · log Z(word)`.
    pub fn expected_counts(
        &self,
        scores: &[f64],
        unk_score: f64,
        threads: Option<usize>,
    ) -> Result<(Vec<f64>, f64)> {
        self.map_reduce(scores.len(), threads, |w, sc| {
            let edges = &self.edges[self.word_off[w]..self.word_off[w + 1]];
            let n = self.word_len[w] as usize;
            let count = self.word_count[w];
            let score = |p: u32| {
                if p == UNK_PIECE {
                    unk_score
                } else {
                    scores[p as usize]
                }
            };
            let Scratch {
                acc,
                a_max: am,
                a_sum: asum,
                alpha,
                beta,
                ..
            } = sc;
            am.clear();
            am.resize(n + 1, f64::NEG_INFINITY);
            asum.clear();
            asum.resize(n + 1, 0.0);
            alpha.clear();
            alpha.resize(n + 1, f64::NEG_INFINITY);
            alpha[0] = 0.0;
            am[0] = 0.0;
            asum[0] = 1.0;
            let mut done = 0usize; // alpha[..=done] final
            for e in edges {
                let s = e.start as usize;
                while done < s {
                    done += 1;
                    alpha[done] = am[done] + asum[done].ln();
                }
                let x = alpha[s] + score(e.piece);
                let t = e.end as usize;
                // Online log-sum-exp: one exp per edge.
                if x <= am[t] {
                    asum[t] += (x - am[t]).exp();
                } else {
                    asum[t] = asum[t] * (am[t] - x).exp() + 1.0;
                    am[t] = x;
                }
            }
            while done < n {
                done += 1;
                alpha[done] = am[done] + asum[done].ln();
            }
            let log_z = alpha[n];
            beta.clear();
            beta.resize(n + 1, f64::NEG_INFINITY);
            beta[n] = 0.0;
            // Backward over groups of edges sharing a start (edges are sorted by start).
            let mut j = edges.len();
            while j > 0 {
                let s = edges[j - 1].start;
                let mut i = j;
                while i > 0 && edges[i - 1].start == s {
                    i -= 1;
                }
                let group = &edges[i..j];
                let m = group
                    .iter()
                    .map(|e| score(e.piece) + beta[e.end as usize])
                    .fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = group
                    .iter()
                    .map(|e| (score(e.piece) + beta[e.end as usize] - m).exp())
                    .sum();
                beta[s as usize] = m + sum.ln();
                for e in group {
                    if e.piece != UNK_PIECE {
                        let lp =
                            alpha[e.start as usize] + score(e.piece) + beta[e.end as usize] - log_z;
                        acc.add(e.piece, count * lp.exp());
                    }
                }
                j = i;
            }
            count * log_z
        })
    }

    /// Viterbi segmentation of every word: count-weighted frequency of each piece on the best
    /// paths, and the total number of tokens. Ties keep the first candidate in start order.
    pub fn viterbi_counts(
        &self,
        scores: &[f64],
        unk_score: f64,
        threads: Option<usize>,
    ) -> Result<(Vec<f64>, f64)> {
        self.map_reduce(scores.len(), threads, |w, sc| {
            let edges = &self.edges[self.word_off[w]..self.word_off[w + 1]];
            let n = self.word_len[w] as usize;
            let count = self.word_count[w];
            let Scratch {
                acc,
                alpha: best,
                back,
                ..
            } = sc;
            best.clear();
            best.resize(n + 1, f64::NEG_INFINITY);
            best[0] = 0.0;
            back.clear();
            back.resize(n + 1, usize::MAX);
            for (k, e) in edges.iter().enumerate() {
                let v = if e.piece == UNK_PIECE {
                    unk_score
                } else {
                    scores[e.piece as usize]
                };
                let x = best[e.start as usize] + v;
                if x > best[e.end as usize] {
                    best[e.end as usize] = x;
                    back[e.end as usize] = k;
                }
            }
            let mut pos = n;
            let mut tokens = 0.0;
            while pos > 0 {
                let e = edges[back[pos]];
                if e.piece != UNK_PIECE {
                    acc.add(e.piece, count);
                }
                tokens += count;
                pos = e.start as usize;
            }
            tokens
        })
    }
}

/// Per-thread dense accumulator with a list of touched entries (so draining is sparse).
struct Scratch {
    acc: Acc,
    a_max: Vec<f64>,
    a_sum: Vec<f64>,
    alpha: Vec<f64>,
    beta: Vec<f64>,
    back: Vec<usize>,
}

impl Scratch {
    fn new(n: usize) -> Scratch {
        Scratch {
            acc: Acc {
                dense: vec![0.0; n],
                touched: Vec::new(),
            },
            a_max: Vec::new(),
            a_sum: Vec::new(),
            alpha: Vec::new(),
            beta: Vec::new(),
            back: Vec::new(),
        }
    }
}

struct Acc {
    dense: Vec<f64>,
    touched: Vec<u32>,
}

impl Acc {
    #[inline]
    fn add(&mut self, p: u32, v: f64) {
        let d = &mut self.dense[p as usize];
        if *d == 0.0 {
            self.touched.push(p);
        }
        *d += v;
    }

    fn drain(&mut self) -> Vec<(u32, f64)> {
        let out = self
            .touched
            .iter()
            .map(|&p| (p, std::mem::replace(&mut self.dense[p as usize], 0.0)))
            .collect();
        self.touched.clear();
        out
    }
}

/// Digamma function (asymptotic series after shifting the argument above 10).
pub fn digamma(mut x: f64) -> f64 {
    let mut r = 0.0;
    while x < 10.0 {
        r -= 1.0 / x;
        x += 1.0;
    }
    let f = 1.0 / (x * x);
    let t = f
        * (-1.0 / 12.0
            + f * (1.0 / 120.0 + f * (-1.0 / 252.0 + f * (1.0 / 240.0 + f * (-1.0 / 132.0)))));
    r + x.ln() - 0.5 / x + t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digamma_matches_known_values() {
        // ψ(1) = −γ, ψ(0.5) = −γ − 2 ln 2, ψ(x+1) = ψ(x) + 1/x.
        let g = 0.577_215_664_901_532_9;
        assert!((digamma(1.0) + g).abs() < 1e-12);
        assert!((digamma(0.5) + g + 2.0 * 2f64.ln()).abs() < 1e-12);
        for x in [0.1, 2.5, 17.0, 1e4] {
            assert!((digamma(x + 1.0) - digamma(x) - 1.0 / x).abs() < 1e-10);
        }
    }

    #[test]
    fn piece_table_finds_all_prefixes() {
        let pieces = vec![vec![2, 3], vec![2], vec![2, 3, 4], vec![3], vec![2, 4]];
        let (t, ids) = PieceTable::new(pieces.clone());
        let mut got = Vec::new();
        t.prefixes(&[2, 3, 4, 5, 0], |len, id| got.push((len, id)));
        assert_eq!(got, vec![(1, ids[1]), (2, ids[0]), (3, ids[2])]);
        for (i, p) in pieces.iter().enumerate() {
            assert_eq!(t.piece(ids[i]), &p[..]);
        }
    }
}

#[cfg(test)]
mod lattice_tests {
    use super::*;
    use crate::train::corpus::CorpusBuilder;
    use proptest::prelude::*;

    /// All segmentations of `word` (positions `0..n`) over `edges`, with their log weights.
    fn paths(edges: &[Edge], n: usize, score: &dyn Fn(u32) -> f64) -> Vec<(Vec<u32>, f64)> {
        let mut out = Vec::new();
        let mut stack = vec![(0usize, Vec::new(), 0.0)];
        while let Some((pos, ids, w)) = stack.pop() {
            if pos == n {
                out.push((ids, w));
                continue;
            }
            for e in edges.iter().filter(|e| e.start as usize == pos) {
                let mut ids2: Vec<u32> = ids.clone();
                ids2.push(e.piece);
                stack.push((e.end as usize, ids2, w + score(e.piece)));
            }
        }
        out
    }

    proptest! {
        #[test]
        fn expected_counts_match_enumeration(
            lines in prop::collection::vec("[ab aé]{1,7}", 1..5),
            raw in prop::collection::vec(-3.0f64..0.0, 64),
        ) {
            let mut b = CorpusBuilder::new(&[], None, 0).unwrap();
            for l in &lines {
                b.add(l);
            }
            let corpus = b.finish();
            prop_assume!(!corpus.words.is_empty());
            let units = Units::build(&corpus, false, 1.0);
            let seeds = crate::train::seed::seed_pieces(&units, 4, 1000);
            let (table, _) = PieceTable::new(seeds.into_iter().map(|s| s.0).collect());
            let scores: Vec<f64> = (0..table.len()).map(|i| raw[i % raw.len()]).collect();
            let lat = Lattices::build(&units, &table, Some(1)).unwrap();
            let (exp, ll) = lat.expected_counts(&scores, -20.0, Some(1)).unwrap();
            let (vit, _) = lat.viterbi_counts(&scores, -20.0, Some(1)).unwrap();
            let mut want = vec![0.0; table.len()];
            let mut want_vit = vec![0.0; table.len()];
            let mut want_ll = 0.0;
            let score = |p: u32| if p == UNK_PIECE { -20.0 } else { scores[p as usize] };
            for w in 0..lat.word_len.len() {
                let edges = &lat.edges[lat.word_off[w]..lat.word_off[w + 1]];
                let ps = paths(edges, lat.word_len[w] as usize, &score);
                let lz = ps.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = ps.iter().map(|p| (p.1 - lz).exp()).sum();
                let log_z = lz + z.ln();
                let c = lat.word_count[w];
                want_ll += c * log_z;
                for (ids, lw) in &ps {
                    for &id in ids {
                        want[id as usize] += c * (lw - log_z).exp();
                    }
                }
                let best = ps.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
                let bp = ps.iter().find(|p| p.1 == best).unwrap();
                for &id in &bp.0 {
                    want_vit[id as usize] += c;
                }
            }
            prop_assert!((ll - want_ll).abs() < 1e-9 * want_ll.abs().max(1.0));
            for i in 0..table.len() {
                prop_assert!((exp[i] - want[i]).abs() < 1e-9 * want[i].max(1.0), "piece {}", i);
            }
            // Viterbi totals agree (ties may pick different paths, so compare sums only).
            prop_assert!((vit.iter().sum::<f64>() > 0.0) == (want_vit.iter().sum::<f64>() > 0.0));
        }
    }
}
